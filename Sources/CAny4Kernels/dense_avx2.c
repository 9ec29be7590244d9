// Dense GEMM (f32, f16 or bf16 weights), AVX2 version.
#include "kernels_internal.h"

#if ANY4_X86
AVX2 static inline __m256 load8(const void *w, int dtype, size_t i) {
    if (dtype == 0) return _mm256_loadu_ps((const float *)w + i);
    if (dtype == 3) {  // 8 codes of one 32-column block (i is a multiple of 8) times its scale: exact
        const any4_q8_view *v = (const any4_q8_view *)w;
        const __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(v->codes + i))));
        return _mm256_mul_ps(q, _mm256_set1_ps(v->scales[i / 32]));
    }
    const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
    if (dtype == 1) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

INLINE_AVX2 void dense_rows(const void *w, int dtype, int cols, const float *x, int k0, const int KT, float *y, int ys,
                            const float *bias, int r) {
    const int c8 = cols / 8 * 8;
    const size_t base = (size_t)r * cols;
    __m256 acc[TILE], acc2[TILE];
    for (int k = 0; k < KT; k++) { acc[k] = _mm256_setzero_ps(); acc2[k] = _mm256_setzero_ps(); }
    int c = 0;
    for (; c + 16 <= c8; c += 16) {
        const __m256 wa = load8(w, dtype, base + c), wb = load8(w, dtype, base + c + 8);
        for (int k = 0; k < KT; k++) {
            const float *xk = x + (size_t)(k0 + k) * cols + c;
            acc[k] = _mm256_fmadd_ps(wa, _mm256_loadu_ps(xk), acc[k]);
            acc2[k] = _mm256_fmadd_ps(wb, _mm256_loadu_ps(xk + 8), acc2[k]);
        }
    }
    for (; c < c8; c += 8) {
        const __m256 wa = load8(w, dtype, base + c);
        for (int k = 0; k < KT; k++) acc[k] = _mm256_fmadd_ps(wa, _mm256_loadu_ps(x + (size_t)(k0 + k) * cols + c), acc[k]);
    }
    for (int k = 0; k < KT; k++) {
        float v = hsum256(_mm256_add_ps(acc[k], acc2[k]));
        const float *xk = x + (size_t)(k0 + k) * cols;
        for (int t = c8; t < cols; t++) v += dense_at(w, dtype, base + t) * xk[t];
        y[(size_t)(k0 + k) * ys + r] = v + (bias ? bias[r] : 0);
    }
}

/// Rows r and r + 1 for KT (1..4) activation rows: each weight vector feeds KT multiply-adds and each
/// activation vector two, one accumulator per (row, activation row). For batches.
INLINE_AVX2 void dense_pair(const void *w, int dtype, int cols, const float *x, int k0, const int KT, float *y, int ys,
                            const float *bias, int r) {
    const int c8 = cols / 8 * 8;
    const size_t base = (size_t)r * cols;
    __m256 a[TILE], b[TILE];
    for (int k = 0; k < KT; k++) { a[k] = _mm256_setzero_ps(); b[k] = _mm256_setzero_ps(); }
    for (int c = 0; c < c8; c += 8) {
        const __m256 wa = load8(w, dtype, base + c), wb = load8(w, dtype, base + cols + c);
        for (int k = 0; k < KT; k++) {
            const __m256 xv = _mm256_loadu_ps(x + (size_t)(k0 + k) * cols + c);
            a[k] = _mm256_fmadd_ps(wa, xv, a[k]);
            b[k] = _mm256_fmadd_ps(wb, xv, b[k]);
        }
    }
    for (int k = 0; k < KT; k++) {
        const float *xk = x + (size_t)(k0 + k) * cols;
        for (int j = 0; j < 2; j++) {
            float v = hsum256(j ? b[k] : a[k]);
            for (int t = c8; t < cols; t++) v += dense_at(w, dtype, base + (size_t)j * cols + t) * xk[t];
            y[(size_t)(k0 + k) * ys + r + j] = v + (bias ? bias[r + j] : 0);
        }
    }
}

AVX2 void any4_dense_avx2(const void *w, int dtype, int cols, const float *x, int m, float *y, int ys, const float *bias,
                          int r0, int r1) {
    int r = r0;
    if (m > 1) {  // rows in pairs, passes of up to four activation rows (as the lookup kernel's batches)
        const int passes = (m + TILE - 1) / TILE;
        for (; r + 2 <= r1; r += 2) {
            for (int k0 = 0, p = 0; k0 < m; p++) {
                const int kt = even_pass(m, passes, p, k0);
                switch (kt) {
                case 1: dense_pair(w, dtype, cols, x, k0, 1, y, ys, bias, r); break;
                case 2: dense_pair(w, dtype, cols, x, k0, 2, y, ys, bias, r); break;
                case 3: dense_pair(w, dtype, cols, x, k0, 3, y, ys, bias, r); break;
                default: dense_pair(w, dtype, cols, x, k0, 4, y, ys, bias, r); break;
                }
                k0 += kt;
            }
        }
    }
    for (; r < r1; r++) {
        for (int k0 = 0; k0 < m; k0 += TILE) {
            switch (m - k0 < TILE ? m - k0 : TILE) {
            case 1: dense_rows(w, dtype, cols, x, k0, 1, y, ys, bias, r); break;
            case 2: dense_rows(w, dtype, cols, x, k0, 2, y, ys, bias, r); break;
            case 3: dense_rows(w, dtype, cols, x, k0, 3, y, ys, bias, r); break;
            default: dense_rows(w, dtype, cols, x, k0, 4, y, ys, bias, r); break;
            }
        }
    }
}
#endif
