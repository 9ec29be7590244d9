// Building a packed layer fast: the codes' placement and the int8 table factor (no SIMD twin; the
// factor search runs its AVX2 version when it can, which gives exactly the scalar one's factor).
#include "kernels_internal.h"

void any4_pack_codes(const any4_packed *w, const uint8_t *codes, int cols, uint8_t *out, int r0, int r1) {
    const int G = w->group_size, cp = w->cols_padded, B = w->block_cols, h = B / 2, main = w->super_blocks * 8 * G;
    for (int r = r0; r < r1; r++) {
        const uint8_t *in = codes + (size_t)r * cols;
        uint8_t *row = out + (size_t)r * (cp / 2);
        memset(row, 0, (size_t)cp / 2);
        const int sb_end = main < cols ? main : cols;
        for (int c = 0; c < sb_end; c++) {  // super-blocks: see the layout in any4_kernels.h
            const int s = c / (8 * G), j = (c / G) % 8, cc = c % G;
            const uint8_t code = in[c] & 0xF;
            row[(size_t)s * 4 * G + 32 * (cc / 8) + 4 * j + cc % 4] |= (cc % 8) >= 4 ? (uint8_t)(code << 4) : code;
        }
        for (int c = sb_end; c < cols; c++) {  // the tail: blocks of B columns, j and j + B/2 share byte j
            const int t = c - main, b = t % B;
            const uint8_t code = in[c] & 0xF;
            row[main / 2 + (t / B) * h + b % h] |= b >= h ? (uint8_t)(code << 4) : code;
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
