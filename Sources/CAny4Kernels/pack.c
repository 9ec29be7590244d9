// Building a packed layer fast: the codes' placement and the int8 table factor (no SIMD twin; the
// factor search runs its AVX2 version when it can, which gives exactly the scalar one's factor).
#include "kernels_internal.h"

/// Code of column c of a row of `cols` (0 past its end: padding).
static inline uint8_t code_or_0(const uint8_t *in, int c, int cols) { return c < cols ? (uint8_t)(in[c] & 0xF) : 0; }

void any4_pack_codes(const any4_packed *w, const uint8_t *codes, int cols, uint8_t *out, int r0, int r1) {
    const int G = w->group_size, cp = w->cols_padded, B = w->block_cols, h = B / 2, main = w->super_blocks * 8 * G;
    for (int r = r0; r < r1; r++) {
        const uint8_t *in = codes + (size_t)r * cols;
        uint8_t *row = out + (size_t)r * (cp / 2);
        // Super-blocks (see the layout in any4_kernels.h): chunk i of super-block s holds in bytes
        // 4j..4j+3 columns 8i..8i+3 (low nibbles) and 8i+4..8i+7 (high) of its group j.
        for (int s = 0; s < w->super_blocks; s++)
            for (int j = 0; j < 8; j++) {
                const int base = (8 * s + j) * G;
                uint8_t *o = row + (size_t)s * 4 * G + 4 * j;
                for (int i = 0; i < G / 8; i++)
                    for (int b = 0; b < 4; b++) {
                        const int c = base + 8 * i + b;
                        o[32 * i + b] = (uint8_t)(code_or_0(in, c, cols) | code_or_0(in, c + 4, cols) << 4);
                    }
            }
        // The tail: blocks of B columns, columns j and j + B/2 of a block share its byte j.
        for (int c0 = main; c0 < cp; c0 += B) {
            uint8_t *o = row + main / 2 + (c0 - main) / 2;
            for (int j = 0; j < h; j++) o[j] = (uint8_t)(code_or_0(in, c0 + j, cols) | code_or_0(in, c0 + h + j, cols) << 4);
        }
    }
}

/// roundf (half away from zero) without a library call: trunc(x + copysign(0.49999997, x)), exact
/// for every float (LLVM's expansion of llvm.round).
static inline float round_away(float x) {
    const float half = copysignf(0.49999997f, x);
    return truncf(x + half);
}

#if ANY4_X86
AVX2 static float int8_factor_search_avx2(const float *t, int n, float amax) {
    // Eight candidate factors per register; each lane sums its squared errors over the table in
    // table order, as the scalar loop does, so the errors (and the first least one) are the same.
    float best = amax / 127, bestError = INFINITY;
    const __m256 sign = _mm256_set1_ps(-0.0f), half = _mm256_set1_ps(0.49999997f);
    for (int j0 = 0; j0 < 128; j0 += 8) {
        float fs[8];
        for (int l = 0; l < 8; l++) fs[l] = amax / 127 * (1 + (float)(j0 + l) / 512);
        const __m256 f = _mm256_loadu_ps(fs);
        __m256 err = _mm256_setzero_ps();
        for (int i = 0; i < n; i++) {
            const __m256 v = _mm256_set1_ps(t[i]), x = _mm256_div_ps(v, f);
            const __m256 q = _mm256_round_ps(_mm256_add_ps(x, _mm256_or_ps(_mm256_and_ps(x, sign), half)),
                                             _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            const __m256 d = _mm256_sub_ps(v, _mm256_mul_ps(f, q));
            err = _mm256_add_ps(err, _mm256_mul_ps(d, d));
        }
        float e[8];
        _mm256_storeu_ps(e, err);
        for (int l = 0; l < 8; l++)
            if (e[l] < bestError) { bestError = e[l]; best = fs[l]; }
    }
    return best;
}
#endif

float any4_int8_factor(const float *t, int n, int use_avx2) {
    float amax = 0;
    for (int i = 0; i < n; i++) amax = fabsf(t[i]) > amax ? fabsf(t[i]) : amax;
    if (!(amax > 0)) return 1;
    static const float ds[5] = {1, 2, 4, 8, 16};
    for (int k = 0; k < 5; k++) {
        const float d = ds[k];
        if (!(amax * d <= 127)) continue;
        int exact = 1;
        for (int i = 0; i < n && exact; i++) exact = round_away(t[i] * d) == t[i] * d;
        if (exact) return 1 / d;
    }
#if ANY4_X86
    if (use_avx2) return int8_factor_search_avx2(t, n, amax);
#endif
    (void)use_avx2;
    float best = amax / 127, bestError = INFINITY;
    for (int j = 0; j < 128; j++) {
        const float f = amax / 127 * (1 + (float)j / 512);
        float error = 0;
        for (int i = 0; i < n; i++) {
            const float d = t[i] - f * round_away(t[i] / f);
            error += d * d;
        }
        if (error < bestError) { bestError = error; best = f; }
    }
    return best;
}
