// Int8 x int8 GEMM for the decode head, AVX-512 VNNI version: bit for bit the AVX2 one.
// The activations come offset by 128 (unsigned, any4_offset_activations); Σ (x + 128)·w over a
// lane's 4 bytes minus 128·Σ w (a weights-only vpdpbusd, shared by the activation rows) is the
// AVX2 lane's integer, and the float steps are the same.
#include "kernels_internal.h"

#if ANY4_X86
VNNI void any4_q8_avx512(const int8_t *wq, const float *ws, int cols, const uint8_t *xu, const float *xs, int m, float *y,
                         int ys, int r0, int r1) {
    const int nb = cols / 32;
    const __m256i c80 = _mm256_set1_epi8((char)0x80);
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
