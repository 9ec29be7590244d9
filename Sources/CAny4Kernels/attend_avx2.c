// One attention row, AVX2 version (head dims that are multiples of 8, up to 256; others run the
// scalar reference).
#include "kernels_internal.h"

#if ANY4_X86
AVX2 void any4_attend_avx2(const float *q, const float *k, int ks, const float *v, int vs, int n, int hd, float scale,
                           float *p, float *out) {
    if (hd % 8 != 0 || hd > 256) { any4_attend_scalar(q, k, ks, v, vs, n, hd, scale, p, out); return; }
    float mx = -INFINITY;
    for (int j = 0; j < n; j++) {
        const float *kj = k + (size_t)j * ks;
        __m256 acc = _mm256_setzero_ps();
        for (int i = 0; i < hd; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(kj + i), acc);
        p[j] = hsum256(acc) * scale;
        mx = p[j] > mx ? p[j] : mx;
    }
    float sum = 0;
    for (int j = 0; j < n; j++) { p[j] = expf(p[j] - mx); sum += p[j]; }
    const float inv = 1.0f / sum;
    __m256 o[32];
    const int nv = hd / 8;
    for (int i = 0; i < nv; i++) o[i] = _mm256_setzero_ps();
    for (int j = 0; j < n; j++) {
        p[j] *= inv;
        const __m256 pj = _mm256_set1_ps(p[j]);
        const float *vj = v + (size_t)j * vs;
        for (int i = 0; i < nv; i++) o[i] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 8 * i), o[i]);
    }
    for (int i = 0; i < nv; i++) _mm256_storeu_ps(out + 8 * i, o[i]);
}
#endif
