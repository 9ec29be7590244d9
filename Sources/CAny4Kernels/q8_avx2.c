// Int8 x int8 GEMM for the decode head, AVX2 version.
#include "kernels_internal.h"

#if ANY4_X86
AVX2 void any4_q8_avx2(const int8_t *wq, const float *ws, int cols, const int8_t *xq, const float *xs, int m, float *y,
                       int ys, int r0, int r1) {
    const int nb = cols / 32;
    for (int r = r0; r < r1; r++) {
        const int8_t *wr = wq + (size_t)r * cols;
        const float *sr = ws + (size_t)r * nb;
        _mm_prefetch((const char *)(wr + 4 * (size_t)cols), _MM_HINT_T0);
        for (int k = 0; k < m; k++) {
            __m256 acc = _mm256_setzero_ps();
            const int8_t *xk = xq + (size_t)k * cols;
            const float *sk = xs + (size_t)k * nb;
            for (int b = 0; b < nb; b++) {
                const __m256i wv = load32(wr + b * 32);
                const __m256i d = dot32_lut(wv, _mm256_sign_epi8(wv, wv), load32(xk + b * 32), _mm256_set1_epi16(1));
                acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_set1_ps(sr[b] * sk[b]), acc);
            }
            y[(size_t)k * ys + r] = hsum256(acc);
        }
    }
}
#endif
