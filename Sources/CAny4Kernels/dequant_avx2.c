// Dequantization of packed rows back to f32, AVX2 version: 8 columns per step, the 16-entry table
// looked up with two permutes and a blend, then the scalar version's three rounded operations.
#include "kernels_internal.h"

#if ANY4_X86
/// (table[idx] · s + z) · ts for 8 codes: a multiply, an add and a multiply, each rounded (the
/// file is compiled with FP_CONTRACT OFF, and the intrinsics are separate instructions).
INLINE_AVX2 __m256 dequant8(__m256i idx, __m256 tlo, __m256 thi, __m256 s, __m256 z, __m256 ts) {
    const __m256 lo = _mm256_permutevar8x32_ps(tlo, idx), hi = _mm256_permutevar8x32_ps(thi, idx);
    const __m256 v = _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_cmpgt_epi32(idx, _mm256_set1_epi32(7))));
    return _mm256_mul_ps(_mm256_add_ps(_mm256_mul_ps(v, s), z), ts);
}

INLINE_AVX2 void store8(float *o, __m256 v, int n) {
    if (n >= 8) {
        _mm256_storeu_ps(o, v);
    } else if (n > 0) {
        float tmp[8];
        _mm256_storeu_ps(tmp, v);
        memcpy(o, tmp, (size_t)n * sizeof(float));
    }
}

AVX2 void any4_dequant_avx2(const any4_dequant_args *a, float *out, int r0, int r1) {
    const any4_packed *w = a->layout;
    const int G = w->group_size, B = w->block_cols, h = B / 2, cols = a->cols;
    const int main_cols = w->super_blocks * 8 * G;
    // Lane i takes nibble i of the 4 bytes: low nibbles of bytes 0..3, then their high nibbles.
    const __m256i shifts = _mm256_setr_epi32(0, 8, 16, 24, 4, 12, 20, 28), nibble = _mm256_set1_epi32(0xF);
    const __m256 ts = _mm256_set1_ps(a->tensor_scale);
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = w->codes + (size_t)r * (w->cols_padded / 2);
        float t[16];
        dequant_row_table(a, r, t);
        const __m256 tlo = _mm256_loadu_ps(t), thi = _mm256_loadu_ps(t + 8);
        const float *sr = a->scales + (size_t)r * w->groups;
        const float *zr = a->zeros ? a->zeros + (size_t)r * w->groups : NULL;
        float *o = out + (size_t)(r - r0) * cols;
        for (int s = 0; s < w->super_blocks; s++) {
            const uint8_t *sb = row + (size_t)s * 4 * G;
            for (int j = 0; j < 8; j++) {
                const int g = s * 8 + j, c0 = g * G;
                const __m256 sc = _mm256_set1_ps(sr[g]), z = _mm256_set1_ps(zr ? zr[g] : 0.0f);
                const int chunks = G / 8;
                if (c0 + G <= cols) {
                    for (int k = 0; k < chunks; k++) {
                        uint32_t bytes;
                        memcpy(&bytes, sb + 32 * k + 4 * j, 4);
                        const __m256i idx = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)bytes), shifts), nibble);
                        _mm256_storeu_ps(o + c0 + 8 * k, dequant8(idx, tlo, thi, sc, z, ts));
                    }
                } else {
                    for (int k = 0; k < chunks && c0 + 8 * k < cols; k++) {
                        uint32_t bytes;
                        memcpy(&bytes, sb + 32 * k + 4 * j, 4);
                        const __m256i idx = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)bytes), shifts), nibble);
                        store8(o + c0 + 8 * k, dequant8(idx, tlo, thi, sc, z, ts), cols - c0 - 8 * k);
                    }
                }
            }
        }
        for (int c0 = main_cols; c0 < cols; c0 += B) {
            const uint8_t *p = row + main_cols / 2 + (size_t)(c0 - main_cols) / 2;
            const int g = c0 / G;
            const __m256 sc = _mm256_set1_ps(sr[g]), z = _mm256_set1_ps(zr ? zr[g] : 0.0f);
            for (int i = 0; i < h; i += 8) {
                const __m256i bytes = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + i)));
                const __m256i lo = _mm256_and_si256(bytes, nibble), hi = _mm256_srli_epi32(bytes, 4);
                store8(o + c0 + i, dequant8(lo, tlo, thi, sc, z, ts), cols - c0 - i);
                store8(o + c0 + h + i, dequant8(hi, tlo, thi, sc, z, ts), cols - c0 - h - i);
            }
        }
    }
}
#endif
