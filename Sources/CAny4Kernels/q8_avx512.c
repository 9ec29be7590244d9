// Int8 x int8 GEMM for the decode head, AVX-512 VNNI version: bit for bit the AVX2 one.
// The activations come offset by 128 (unsigned, any4_offset_activations); Σ (x + 128)·w over a
// lane's 4 bytes minus 128·Σ w (a weights-only vpdpbusd, shared by the activation rows) is the
// AVX2 lane's integer, and the float steps are the same.
#include "kernels_internal.h"

#if ANY4_X86
/// One activation row (a decode step) moves the offset to the weights, as the lookup kernel's
/// decode path does: w xor 0x80 is w + 128 (unsigned), the activations stay signed, and 128·Σ x of
/// each block is computed once per call; each lane holds the same integer again. Rows go four at a
/// time for independent chains, and each block's factor comes from 8 products made at once (the
/// same float multiplications).
INLINE_VNNI void q8_dec_rows(const int8_t *wq, const float *ws, int cols, const int8_t *x, const int32_t *corr,
                             const float *xs, float *y, int r, const int NR, dec_stream st) {
    const int nb = cols / 32;
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    const int8_t *wr[4];
    const float *sr[4];
    __m256 acc[4];
    for (int i = 0; i < NR; i++) {
        wr[i] = wq + (size_t)(r + i) * cols;
        sr[i] = ws + (size_t)(r + i) * nb;
        acc[i] = _mm256_setzero_ps();
        _mm_prefetch((const char *)sr[i] + st.ahead / 8, _MM_HINT_T0);  // the scales: 4 bytes per 32 codes
    }
#define Q8_DEC_BLOCK(bb, factor)                                                                                   \
    do {                                                                                                           \
        const __m256i xv = load32(x + (size_t)(bb) * 32);                                                          \
        const __m256i cv = _mm256_loadu_si256((const __m256i *)(corr + (size_t)(bb) * 8));                         \
        for (int i = 0; i < NR; i++) {                                                                             \
            const int8_t *p = wr[i] + (size_t)(bb) * 32;                                                           \
            if ((bb) % 2 == 0) dec_prefetch((const uint8_t *)p, st);                                              \
            const __m256i wv = _mm256_xor_si256(load32(p), flip);                                                  \
            const __m256i d = _mm256_sub_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), wv, xv), cv);           \
            acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), factor, acc[i]);                                       \
        }                                                                                                          \
    } while (0)
    int b = 0;
    for (; b + 8 <= nb; b += 8) {
        __m256 f[4];
        for (int i = 0; i < NR; i++) f[i] = _mm256_mul_ps(_mm256_loadu_ps(sr[i] + b), _mm256_loadu_ps(xs + b));
        for (int j = 0; j < 8; j++) {
            const __m256i lane = _mm256_set1_epi32(j);
            Q8_DEC_BLOCK(b + j, _mm256_permutevar8x32_ps(f[i], lane));
        }
    }
    for (; b < nb; b++) Q8_DEC_BLOCK(b, _mm256_set1_ps(sr[i][b] * xs[b]));
#undef Q8_DEC_BLOCK
    for (int i = 0; i < NR; i++) y[r + i] = hsum256(acc[i]);
}

VNNI void any4_q8_avx512(const int8_t *wq, const float *ws, int cols, const uint8_t *xu, const float *xs, int m, float *y,
                         int ys, int r0, int r1) {
    const int nb = cols / 32;
    const __m256i c80 = _mm256_set1_epi8((char)0x80);
    if (m == 1 && cols <= DEC_MAX_CP) {
        int8_t x[DEC_MAX_CP] __attribute__((aligned(64)));
        int32_t corr[8 * (DEC_MAX_CP / 32)] __attribute__((aligned(64)));
        for (int b = 0; b < nb; b++) {
            const __m256i v = _mm256_xor_si256(load32u(xu + (size_t)b * 32), c80);
            _mm256_storeu_si256((__m256i *)(x + (size_t)b * 32), v);
            _mm256_storeu_si256((__m256i *)(corr + (size_t)b * 8), _mm256_dpbusd_epi32(_mm256_setzero_si256(), c80, v));
        }
        const dec_stream st = dec_stream_for((size_t)cols);
        int r = r0;
        for (; r + 4 <= r1; r += 4) q8_dec_rows(wq, ws, cols, x, corr, xs, y, r, 4, st);
        for (; r < r1; r++) q8_dec_rows(wq, ws, cols, x, corr, xs, y, r, 1, st);
        return;
    }
    for (int r = r0; r < r1; r++) {
        const int8_t *wr = wq + (size_t)r * cols;
        const float *sr = ws + (size_t)r * nb;
        _mm_prefetch((const char *)(wr + 4 * (size_t)cols), _MM_HINT_T0);
        for (int k0 = 0; k0 < m; k0 += VTILE) {
            const int kt = m - k0 < VTILE ? m - k0 : VTILE;
            __m256 acc[VTILE];
            for (int k = 0; k < kt; k++) acc[k] = _mm256_setzero_ps();
            for (int b = 0; b < nb; b++) {
                const __m256i wv = load32(wr + b * 32);
                const __m256i corr = _mm256_dpbusd_epi32(_mm256_setzero_si256(), c80, wv);
                for (int k = 0; k < kt; k++) {
                    const uint8_t *xk = xu + (size_t)(k0 + k) * cols;
                    const __m256i d = _mm256_sub_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), load32u(xk + b * 32), wv), corr);
                    acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_set1_ps(sr[b] * xs[(size_t)(k0 + k) * nb + b]), acc[k]);
                }
            }
            for (int k = 0; k < kt; k++) y[(size_t)(k0 + k) * ys + r] = hsum256(acc[k]);
        }
    }
}
#endif
