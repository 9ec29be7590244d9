// One attention row, AVX2 version (head dims that are multiples of 8, up to 256; others run the
// scalar reference), over keys and values in f32 or f16 (F16C converts 8 at a time as they load).
#include "kernels_internal.h"

#if ANY4_X86
/// 8 cache values from element i of a row held in f32 (f16 = 0) or f16.
INLINE_AVX2 __m256 load8_kv(const void *row, int i, const int f16) {
    return f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + i)))
               : _mm256_loadu_ps((const float *)row + i);
}

/// One row with NV = hd / 8 known at compile time (1..32), so that q and the output stay in
/// registers (with a run-time count the output lived on the stack: a store and a load per key and
/// register, the hot spot of a decode step's attention). Keys are scored 4 at a time for independent
/// chains; each key's score is still its own fmadd chain and hsum256, in the same order.
INLINE_AVX2 void attend_row(const float *q, const void *k, int ks, const void *v, int vs, int n, float scale,
                            float *p, float *out, const int f16, const int nv) {
    const size_t width = f16 ? 2 : 4;
    float mx = -INFINITY;
    __m256 qv[32];
    for (int i = 0; i < nv; i++) qv[i] = _mm256_loadu_ps(q + 8 * i);
    int j = 0;
    for (; j + 4 <= n; j += 4) {
        __m256 acc[4];
        for (int u = 0; u < 4; u++) acc[u] = _mm256_setzero_ps();
        for (int i = 0; i < nv; i++)
            for (int u = 0; u < 4; u++)
                acc[u] = _mm256_fmadd_ps(qv[i], load8_kv((const char *)k + (size_t)(j + u) * ks * width, 8 * i, f16), acc[u]);
        for (int u = 0; u < 4; u++) {
            p[j + u] = hsum256(acc[u]) * scale;
            mx = p[j + u] > mx ? p[j + u] : mx;
        }
    }
    for (; j < n; j++) {
        const void *kj = (const char *)k + (size_t)j * ks * width;
        __m256 acc = _mm256_setzero_ps();
        for (int i = 0; i < nv; i++) acc = _mm256_fmadd_ps(qv[i], load8_kv(kj, 8 * i, f16), acc);
        p[j] = hsum256(acc) * scale;
        mx = p[j] > mx ? p[j] : mx;
    }
    float sum = 0;
    for (j = 0; j < n; j++) { p[j] = expf(p[j] - mx); sum += p[j]; }
    const float inv = 1.0f / sum;
    __m256 o[32];
    for (int i = 0; i < nv; i++) o[i] = _mm256_setzero_ps();
    for (j = 0; j < n; j++) {
        p[j] *= inv;
        const __m256 pj = _mm256_set1_ps(p[j]);
        const void *vj = (const char *)v + (size_t)j * vs * width;
        for (int i = 0; i < nv; i++) o[i] = _mm256_fmadd_ps(pj, load8_kv(vj, 8 * i, f16), o[i]);
    }
    for (int i = 0; i < nv; i++) _mm256_storeu_ps(out + 8 * i, o[i]);
}

/// attend_row for the head dimensions of the models we run (64, 128) with NV fixed, else at run time.
#define ATTEND_DIMS(F16)                                                                                     \
    switch (hd) {                                                                                            \
    case 64: attend_row(q, k, ks, v, vs, n, scale, p, out, F16, 8); break;                                    \
    case 128: attend_row(q, k, ks, v, vs, n, scale, p, out, F16, 16); break;                                  \
    default: attend_row(q, k, ks, v, vs, n, scale, p, out, F16, hd / 8); break;                              \
    }

AVX2 void any4_attend_avx2(const float *q, const void *k, int ks, const void *v, int vs, int n, int hd, float scale,
                           float *p, float *out, int kv_f16) {
    if (hd % 8 != 0 || hd > 256) { any4_attend_scalar(q, k, ks, v, vs, n, hd, scale, p, out, kv_f16); return; }
    if (kv_f16) {
        ATTEND_DIMS(1)
    } else {
        ATTEND_DIMS(0)
    }
}
#endif
