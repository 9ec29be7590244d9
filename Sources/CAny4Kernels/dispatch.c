// The public kernel entry points: each runs its family's AVX2 version when asked (use_avx2, which
// the Swift side sets from any4_cpu_has_avx2 and tests set to 0 to reach the scalar twin) and the
// build targets x86-64, else the scalar reference. The families with an AVX-512 VNNI version (the
// fast lookup path and the int8 head) take a level instead: 0 scalar, 1 AVX2, 2 AVX-512 VNNI,
// 3 AVX-512 VNNI + VBMI (any4_cpu_simd_level says what the CPU allows).
#include "kernels_internal.h"

void any4_lut_gemm_exact(const any4_packed *w, const float *x, const float *gsum, int m, float *y, int ys,
                         const float *bias, int r0, int r1, int use_avx2) {
#if ANY4_X86
    if (use_avx2) { any4_lut_exact_avx2(w, x, gsum, m, y, ys, bias, r0, r1); return; }
#endif
    (void)use_avx2;
    any4_lut_exact_scalar(w, x, gsum, m, y, ys, bias, r0, r1);
}

void any4_lut_gemm_fast(const any4_packed *w, const int8_t *xq, const float *xs, const float *gsum, int m, float *y, int ys,
                        const float *bias, int r0, int r1, int simd) {
#if ANY4_X86
    if (simd >= 2 && any4_fast_uses_tiles(w, m, simd)) { any4_lut_tiles_avx512(w, xq, xs, gsum, m, y, ys, bias, r0, r1); return; }
    if (simd >= 2) { any4_lut_fast_avx512(w, (const uint8_t *)xq, xs, gsum, m, y, ys, bias, r0, r1, simd); return; }
    if (simd == 1) { any4_lut_fast_avx2(w, xq, xs, gsum, m, y, ys, bias, r0, r1); return; }
#endif
    (void)simd;
    any4_lut_fast_scalar(w, xq, xs, gsum, m, y, ys, bias, r0, r1);
}

int any4_fast_uses_tiles(const any4_packed *w, int m, int simd) {
#if ANY4_X86
    return simd >= 2 && m >= ANY4_TILE_MIN_M && w->group_size <= ANY4_TILE_WS;
#else
    (void)w, (void)m, (void)simd;
    return 0;
#endif
}

void any4_fast_activations_wide(const any4_packed *w, int8_t *xq, int m) {
#if ANY4_X86
    any4_fast_activations_avx512(w, (uint8_t *)xq, m);
#else
    (void)w, (void)xq, (void)m;
#endif
}

void any4_offset_activations(int8_t *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = (int8_t)((uint8_t)x[i] ^ 0x80);
}

void any4_dense_gemm(const void *w, int dtype, int cols, const float *x, int m, float *y, int ys, const float *bias,
                     int r0, int r1, int use_avx2) {
#if ANY4_X86
    if (use_avx2) { any4_dense_avx2(w, dtype, cols, x, m, y, ys, bias, r0, r1); return; }
#endif
    (void)use_avx2;
    any4_dense_scalar(w, dtype, cols, x, m, y, ys, bias, r0, r1);
}

void any4_quantize_activations(const float *x, int m, int cp, int G, int groups, int8_t *xq, float *xs, float *gsum,
                               int preserve, int use_avx2) {
    for (int k = 0; k < m; k++) {
        for (int g = 0; g < groups; g++) {
            const int begin = g * G, n = ((g + 1) * G < cp ? (g + 1) * G : cp) - begin;
            const size_t o = (size_t)k * cp + begin, i = (size_t)k * groups + g;
#if ANY4_X86
            if (use_avx2 && n % 32 == 0) { any4_quantize_group_avx2(x + o, n, xq + o, xs + i, gsum + i, preserve); continue; }
#endif
            any4_quantize_group_scalar(x + o, n, xq + o, xs + i, gsum + i, preserve);
        }
    }
    (void)use_avx2;
}

void any4_q8_gemm(const int8_t *wq, const float *ws, int cols, const int8_t *xq, const float *xs, int m, float *y, int ys,
                  int r0, int r1, int simd) {
#if ANY4_X86
    if (simd >= 2) { any4_q8_avx512(wq, ws, cols, (const uint8_t *)xq, xs, m, y, ys, r0, r1); return; }
    if (simd == 1) { any4_q8_avx2(wq, ws, cols, xq, xs, m, y, ys, r0, r1); return; }
#endif
    (void)simd;
    any4_q8_scalar(wq, ws, cols, xq, xs, m, y, ys, r0, r1);
}

void any4_attend(const float *q, const float *k, int ks, const float *v, int vs, int n, int hd, float scale,
                 float *scratch, float *out, int use_avx2) {
#if ANY4_X86
    if (use_avx2) { any4_attend_avx2(q, k, ks, v, vs, n, hd, scale, scratch, out, 0); return; }
#endif
    (void)use_avx2;
    any4_attend_scalar(q, k, ks, v, vs, n, hd, scale, scratch, out, 0);
}

void any4_attend_f16(const float *q, const uint16_t *k, int ks, const uint16_t *v, int vs, int n, int hd, float scale,
                     float *scratch, float *out, int use_avx2) {
#if ANY4_X86
    if (use_avx2) { any4_attend_avx2(q, k, ks, v, vs, n, hd, scale, scratch, out, 1); return; }
#endif
    (void)use_avx2;
    any4_attend_scalar(q, k, ks, v, vs, n, hd, scale, scratch, out, 1);
}

void any4_dequantize(const any4_dequant_args *args, float *out, int r0, int r1, int use_avx2) {
#if ANY4_X86
    if (use_avx2) { any4_dequant_avx2(args, out, r0, r1); return; }
#endif
    (void)use_avx2;
    any4_dequant_scalar(args, out, r0, r1);
}
