// Scalar reference kernels and their AVX2 twins; see include/any4_kernels.h for the layouts.
#include "any4_kernels.h"

// The AVX2 quantizer must reproduce the scalar one bit for bit: no a·b + c fused behind our back.
#pragma STDC FP_CONTRACT OFF

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#define ANY4_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

int any4_cpu_has_avx2(void) {
#if ANY4_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
    if (!(fma && osxsave && avx && f16c)) return 0;
    unsigned lo, hi;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 6) != 6) return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b >> 5) & 1;
#else
    return 0;
#endif
}

static inline float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else {  // subnormal: normalise
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) { man <<= 1; exp--; }
            bits = sign | (exp << 23) | ((man & 0x3FF) << 13);
        }
    } else if (exp == 31) bits = sign | 0x7F800000 | (man << 13);
    else bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline float bf16_to_float(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/// The code of column c in a packed row (see the layout in any4_kernels.h).
static inline int code_at(const any4_packed *w, const uint8_t *row, int c) {
    const int G = w->group_size, main = w->super_blocks * 8 * G;
    if (c < main) {
        const int s = c / (8 * G), j = (c / G) % 8, cc = c % G;
        const uint8_t byte = row[(size_t)s * 4 * G + 32 * (cc / 8) + 4 * j + cc % 4];
        return (cc % 8) < 4 ? (byte & 0xF) : (byte >> 4);
    }
    const int B = w->block_cols, h = B / 2, t = c - main;
    const uint8_t byte = row[main / 2 + (t / B) * h + (t % B) % h];
    return (t % B) < h ? (byte & 0xF) : (byte >> 4);
}

/// The reordering of any4_kernel_order for one element type: 4 elements move as one unit.
#define KERNEL_ORDER(T)                                                                                     \
    for (int k = 0; k < m; k++) {                                                                           \
        const T *in = (const T *)src + (size_t)k * cp;                                                      \
        T *out = (T *)dst + (size_t)k * cp;                                                                 \
        for (int s = 0; s < w->super_blocks; s++)                                                           \
            for (int j = 0; j < 8; j++) {                                                                   \
                const T *g = in + (size_t)(8 * s + j) * G;                                                  \
                T *o = out + (size_t)s * 8 * G + 4 * j;                                                     \
                for (int i = 0; i < G / 8; i++) {                                                           \
                    memcpy(o + 64 * i, g + 8 * i, 4 * sizeof(T));                                           \
                    memcpy(o + 64 * i + 32, g + 8 * i + 4, 4 * sizeof(T));                                  \
                }                                                                                           \
            }                                                                                               \
        memcpy(out + main, in + main, (size_t)(cp - main) * sizeof(T));                                     \
    }

void any4_kernel_order(const any4_packed *w, const void *src, void *dst, int m, int elem) {
    const int G = w->group_size, cp = w->cols_padded, main = w->super_blocks * 8 * G;
    if (elem == 1) { KERNEL_ORDER(uint8_t) }
    else if (elem == 4) { KERNEL_ORDER(uint32_t) }
    else {
        for (int k = 0; k < m; k++) {
            const char *in = (const char *)src + (size_t)k * cp * elem;
            char *out = (char *)dst + (size_t)k * cp * elem;
            for (int s = 0; s < w->super_blocks; s++)
                for (int j = 0; j < 8; j++)
                    for (int i = 0; i < G / 8; i++)
                        for (int h = 0; h < 2; h++)
                            memcpy(out + (size_t)(s * 8 * G + 64 * i + 32 * h + 4 * j) * elem,
                                   in + (size_t)((8 * s + j) * G + 8 * i + 4 * h) * elem, 4 * (size_t)elem);
            memcpy(out + (size_t)main * elem, in + (size_t)main * elem, (size_t)(cp - main) * elem);
        }
    }
}
#undef KERNEL_ORDER

// MARK: - Scalar references

static void lut_exact_scalar(const any4_packed *w, const float *x, const float *gsum, int m, float *y, int ys,
                             const float *bias, int r0, int r1) {
    const int cp = w->cols_padded, G = w->group_size;
    for (int r = r0; r < r1; r++) {
        const uint8_t *q = w->codes + (size_t)r * (cp / 2);
        const float *t = w->table + (size_t)r * w->table_stride;
        for (int k = 0; k < m; k++) {
            const float *xk = x + (size_t)k * cp;
            float total = 0;
            for (int g = 0; g < w->groups; g++) {
                float acc = 0;
                int end = (g + 1) * G < cp ? (g + 1) * G : cp;
                for (int c = g * G; c < end; c++) acc += t[code_at(w, q, c)] * xk[c];
                total += acc * w->scales[(size_t)r * w->groups + g];
                if (w->zeros) total += w->zeros[(size_t)r * w->groups + g] * gsum[(size_t)k * w->groups + g];
            }
            y[(size_t)k * ys + r] = total + (bias ? bias[r] : 0);
        }
    }
}

static void lut_fast_scalar(const any4_packed *w, const int8_t *xq, const float *xs, const float *gsum, int m, float *y,
                            int ys, const float *bias, int r0, int r1) {
    const int cp = w->cols_padded, G = w->group_size;
    for (int r = r0; r < r1; r++) {
        const uint8_t *q = w->codes + (size_t)r * (cp / 2);
        const int8_t *t = w->table_i8 + (size_t)r * w->table_stride;
        const float f = w->table_i8_scale[(size_t)r * w->table_i8_scale_stride] * w->f16_factors[2 * r];
        const uint16_t *sc = w->scales_f16 + (size_t)r * w->groups;
        for (int k = 0; k < m; k++) {
            float total = 0, zero = 0;
            for (int g = 0; g < w->groups; g++) {
                int32_t acc = 0;
                int end = (g + 1) * G < cp ? (g + 1) * G : cp;
                for (int c = g * G; c < end; c++) acc += (int32_t)t[code_at(w, q, c)] * xq[(size_t)k * cp + c];
                total += (float)acc * (half_to_float(sc[g]) * xs[(size_t)k * w->groups + g]);
                if (w->zeros_f16) zero += half_to_float(w->zeros_f16[(size_t)r * w->groups + g]) * gsum[(size_t)k * w->groups + g];
            }
            y[(size_t)k * ys + r] = total * f + zero * w->f16_factors[2 * r + 1] + (bias ? bias[r] : 0);
        }
    }
}

/// Weight i of a dense matrix stored as f32 (dtype 0), f16 (1) or bf16 (2), as a float.
static inline float dense_at(const void *w, int dtype, size_t i) {
    return dtype == 0 ? ((const float *)w)[i]
         : dtype == 1 ? half_to_float(((const uint16_t *)w)[i])
                      : bf16_to_float(((const uint16_t *)w)[i]);
}

/// The activation rows of pass p when m rows are cut into `passes` passes of even size (m = 5 in
/// two passes is 3 + 2), k0 rows being done.
static inline int even_pass(int m, int passes, int p, int k0) { return (m - k0 + passes - p - 1) / (passes - p); }

static void dense_scalar(const void *w, int dtype, int cols, const float *x, int m, float *y, int ys, const float *bias,
                         int r0, int r1) {
    for (int r = r0; r < r1; r++) {
        for (int k = 0; k < m; k++) {
            const float *xk = x + (size_t)k * cols;
            float acc = 0;
            for (int c = 0; c < cols; c++) acc += dense_at(w, dtype, (size_t)r * cols + c) * xk[c];
            y[(size_t)k * ys + r] = acc + (bias ? bias[r] : 0);
        }
    }
}

// MARK: - AVX2

#if ANY4_X86
#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define INLINE_AVX2 __attribute__((target("avx2,fma,f16c"), always_inline)) static inline

AVX2 static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/// 8 table entries for 8 indices (0..15) from a 16-entry float table held in two registers.
AVX2 static inline __m256 lookup16(__m256 lo, __m256 hi, __m256i idx) {
    __m256 a = _mm256_permutevar8x32_ps(lo, idx), b = _mm256_permutevar8x32_ps(hi, idx);
    return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

#define TILE 4

/// Σ z[g]·gs[g] over n groups, 8 at a time (the zero term of a row).
AVX2 static inline float dot_avx2(const float *z, const float *gs, int n) {
    __m256 acc = _mm256_setzero_ps();
    int g = 0;
    for (; g + 8 <= n; g += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(z + g), _mm256_loadu_ps(gs + g), acc);
    float v = hsum256(acc);
    for (; g < n; g++) v += z[g] * gs[g];
    return v;
}

AVX2 static inline float half1(uint16_t h) { return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h))); }

/// dot_avx2 with z in f16.
AVX2 static inline float dot_f16_avx2(const uint16_t *z, const float *gs, int n) {
    __m256 acc = _mm256_setzero_ps();
    int g = 0;
    for (; g + 8 <= n; g += 8)
        acc = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(z + g))), _mm256_loadu_ps(gs + g), acc);
    float v = hsum256(acc);
    for (; g < n; g++) v += half1(z[g]) * gs[g];
    return v;
}

/// 8 f16 scales from p as floats.
AVX2 static inline __m256 load8_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

/// 8 codes' table values, the low and high nibbles of 8 bytes at p: two runs of 8 columns.
AVX2 static inline void lookup8x2(const uint8_t *p, __m256 tlo, __m256 thi, __m256 *wl, __m256 *wh) {
    const __m256i raw = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
    *wl = lookup16(tlo, thi, _mm256_and_si256(raw, _mm256_set1_epi32(15)));
    *wh = lookup16(tlo, thi, _mm256_srli_epi32(raw, 4));
}

/// One row of the exact path for KT (1..4) activation rows. In the super-blocks each 8-byte load
/// covers two groups (lanes 0-3 and 4-7), so the decoded values are scaled there (one multiply,
/// shared by the KT rows); in the tail one accumulator per group is scaled at its end.
INLINE_AVX2 void lut_exact_row(const any4_packed *w, int r, const float *x, const float *gsum, int k0, const int KT,
                               float *y, int ys, const float *bias) {
    const int cp = w->cols_padded, G = w->group_size, B = w->block_cols, h = B / 2, main = w->super_blocks * 8 * G;
    const uint8_t *q = w->codes + (size_t)r * (cp / 2);
    const float *t = w->table + (size_t)r * w->table_stride;
    const __m256 tlo = _mm256_loadu_ps(t), thi = _mm256_loadu_ps(t + 8);
    const float *sc = w->scales + (size_t)r * w->groups;
    __m256 total[TILE];
    for (int k = 0; k < KT; k++) total[k] = _mm256_setzero_ps();
    for (int s = 0; s < w->super_blocks; s++) {
        __m256 sv[4];  // [scale of group 2j] × 4, [scale of group 2j + 1] × 4
        for (int j = 0; j < 4; j++)
            sv[j] = _mm256_set_m128(_mm_set1_ps(sc[8 * s + 2 * j + 1]), _mm_set1_ps(sc[8 * s + 2 * j]));
        for (int i = 0; i < G / 8; i++) {
            const uint8_t *qc = q + (size_t)s * 4 * G + 32 * i;
            for (int j = 0; j < 4; j++) {
                __m256 wl, wh;
                lookup8x2(qc + 8 * j, tlo, thi, &wl, &wh);
                wl = _mm256_mul_ps(wl, sv[j]);
                wh = _mm256_mul_ps(wh, sv[j]);
                for (int k = 0; k < KT; k++) {
                    const float *xb = x + (size_t)(k0 + k) * cp + s * 8 * G + 64 * i + 8 * j;
                    total[k] = _mm256_fmadd_ps(wl, _mm256_loadu_ps(xb), total[k]);
                    total[k] = _mm256_fmadd_ps(wh, _mm256_loadu_ps(xb + 32), total[k]);
                }
            }
        }
    }
    for (int g = 8 * w->super_blocks; g < w->groups; g++) {
        __m256 acc[TILE];
        for (int k = 0; k < KT; k++) acc[k] = _mm256_setzero_ps();
        const int end = (g + 1) * G < cp ? (g + 1) * G : cp;
        for (int c = g * G; c < end; c += B) {
            for (int j = 0; j < h; j += 8) {
                __m256 wl, wh;
                lookup8x2(q + main / 2 + (c - main) / 2 + j, tlo, thi, &wl, &wh);
                for (int k = 0; k < KT; k++) {
                    const float *xb = x + (size_t)(k0 + k) * cp + c + j;
                    acc[k] = _mm256_fmadd_ps(wl, _mm256_loadu_ps(xb), acc[k]);
                    acc[k] = _mm256_fmadd_ps(wh, _mm256_loadu_ps(xb + h), acc[k]);
                }
            }
        }
        const __m256 sg = _mm256_set1_ps(sc[g]);
        for (int k = 0; k < KT; k++) total[k] = _mm256_fmadd_ps(acc[k], sg, total[k]);
    }
    for (int k = 0; k < KT; k++) {
        float v = hsum256(total[k]);
        if (w->zeros) v += dot_avx2(w->zeros + (size_t)r * w->groups, gsum + (size_t)(k0 + k) * w->groups, w->groups);
        y[(size_t)(k0 + k) * ys + r] = v + (bias ? bias[r] : 0);
    }
}

AVX2 static void lut_exact_avx2(const any4_packed *w, const float *x, const float *gsum, int m, float *y, int ys,
                                const float *bias, int r0, int r1) {
    for (int r = r0; r < r1; r++) {
        for (int k0 = 0; k0 < m; k0 += TILE) {
            switch (m - k0 < TILE ? m - k0 : TILE) {
            case 1: lut_exact_row(w, r, x, gsum, k0, 1, y, ys, bias); break;
            case 2: lut_exact_row(w, r, x, gsum, k0, 2, y, ys, bias); break;
            case 3: lut_exact_row(w, r, x, gsum, k0, 3, y, ys, bias); break;
            default: lut_exact_row(w, r, x, gsum, k0, 4, y, ys, bias); break;
            }
        }
    }
}

/// The end of a row of the fast path: the factor of the int8 table, the zero term and the bias.
INLINE_AVX2 float fast_epilogue(const any4_packed *w, int r, int k, __m256 total, const float *gsum, const float *bias) {
    float v = hsum256(total) * (w->table_i8_scale[(size_t)r * w->table_i8_scale_stride] * w->f16_factors[2 * r]);
    if (w->zeros_f16)
        v += dot_f16_avx2(w->zeros_f16 + (size_t)r * w->groups, gsum + (size_t)k * w->groups, w->groups) * w->f16_factors[2 * r + 1];
    return v + (bias ? bias[r] : 0);
}

/// Σ w·x over 32 columns for one activation row, as 8 int32 lanes: maddubs needs an unsigned
/// operand, so |w| (taken once per decoded block and shared by every activation row) times x with
/// the sign of w.
INLINE_AVX2 __m256i dot32_lut(__m256i w, __m256i wabs, __m256i x, __m256i ones) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(wabs, _mm256_sign_epi8(x, w)), ones);
}

INLINE_AVX2 __m256i load32(const int8_t *x) { return _mm256_loadu_si256((const __m256i *)x); }

/// 64 packed columns (32 bytes at p) decoded: the low-nibble values w[0] (columns 0..31 of the
/// block), the high-nibble values w[1] (32..63), and their magnitudes a[0], a[1].
typedef struct { __m256i w[2], a[2]; } decoded64;

INLINE_AVX2 decoded64 decode64(const uint8_t *p, __m256i lut, __m256i m4) {
    const __m256i raw = _mm256_loadu_si256((const __m256i *)p);
    decoded64 d;
    d.w[0] = _mm256_shuffle_epi8(lut, _mm256_and_si256(raw, m4));
    d.w[1] = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4));
    d.a[0] = _mm256_sign_epi8(d.w[0], d.w[0]);
    d.a[1] = _mm256_sign_epi8(d.w[1], d.w[1]);
    return d;
}

/// Σ over the 64 columns of a decoded block for one activation row (x: its 64 values).
INLINE_AVX2 __m256i dot64_lut(decoded64 d, const int8_t *x, __m256i ones) {
    return _mm256_add_epi32(dot32_lut(d.w[0], d.a[0], load32(x), ones), dot32_lut(d.w[1], d.a[1], load32(x + 32), ones));
}

INLINE_AVX2 __m256i row_lut(const any4_packed *w, int r) {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(w->table_i8 + (size_t)r * w->table_stride)));
}

/// Prefetches the codes at p: non-temporal when the row is read only once (one pass over the
/// activations), so the stream does not push the activations and tables out of the caches (11-12 %
/// faster at batch 1 than an ordinary prefetch, measured A/B on 4096x14336); otherwise into every
/// level, as later passes read the row again.
INLINE_AVX2 void prefetch_codes(const uint8_t *p, int once) {
    if (once) _mm_prefetch((const char *)p, _MM_HINT_NTA);
    else _mm_prefetch((const char *)p, _MM_HINT_T0);
}

/// The tail groups of row r (after the super-blocks) for KT activation rows, added to total[k];
/// `once`: this is the only pass over the row (see prefetch_codes).
INLINE_AVX2 void fast_tail(const any4_packed *w, int r, __m256i lut, const int8_t *x0, const float *xs, int k0, const int KT,
                           const int once, __m256 *total) {
    const int cp = w->cols_padded, G = w->group_size, B = w->block_cols, main = w->super_blocks * 8 * G;
    const int bpg = G / B, nb = (cp - main) / B, first = 8 * w->super_blocks;
    const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
    const uint8_t *q = w->codes + (size_t)r * (cp / 2) + main / 2;
    const uint16_t *sc = w->scales_f16 + (size_t)r * w->groups + first;
    const float *xsk[TILE];
    const int8_t *xk[TILE];
    for (int k = 0; k < KT; k++) { xk[k] = x0 + (size_t)k * cp + main; xsk[k] = xs + (size_t)(k0 + k) * w->groups + first; }
    for (int t = 0; t < w->groups - first; t++) {
        __m256i acc[TILE];
        for (int k = 0; k < KT; k++) acc[k] = _mm256_setzero_si256();
        const int bend = (t + 1) * bpg < nb ? (t + 1) * bpg : nb;
        if (B == 64) {
            for (int b = t * bpg; b < bend; b++) {
                prefetch_codes(q + b * 32 + 2048, once);
                const decoded64 d = decode64(q + b * 32, lut, m4);
                for (int k = 0; k < KT; k++) acc[k] = _mm256_add_epi32(acc[k], dot64_lut(d, xk[k] + b * 64, ones));
            }
        } else {
            for (int b = t * bpg; b < bend; b++) {
                const __m128i raw = _mm_loadu_si128((const __m128i *)(q + b * 16));
                const __m256i wv = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), m4));
                const __m256i wa = _mm256_sign_epi8(wv, wv);
                for (int k = 0; k < KT; k++) acc[k] = _mm256_add_epi32(acc[k], dot32_lut(wv, wa, load32(xk[k] + b * 32), ones));
            }
        }
        for (int k = 0; k < KT; k++)
            total[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[k]), _mm256_set1_ps(half1(sc[t]) * xsk[k][t]), total[k]);
    }
}

/// One row of the fast path for KT (1..4) activation rows: KT is a compile-time constant at each
/// call site, so the accumulators stay in registers. Each block of weights is decoded once for
/// all KT rows. In the super-blocks a lane of an accumulator belongs to one group, so 8 groups
/// end with one conversion and one multiply-add; the tail ends each group on its own. `once`:
/// this is the only pass over the row (see prefetch_codes).
INLINE_AVX2 void lut_fast_row(const any4_packed *w, int r, const int8_t *xq, const float *xs, const float *gsum, int k0,
                              const int KT, const int once, float *y, int ys, const float *bias) {
    const int cp = w->cols_padded, G = w->group_size;
    const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1), lut = row_lut(w, r);
    const uint8_t *q = w->codes + (size_t)r * (cp / 2);
    const uint16_t *sc = w->scales_f16 + (size_t)r * w->groups;
    const int8_t *x0 = xq + (size_t)k0 * cp;
    __m256 total[TILE];
    for (int k = 0; k < KT; k++) total[k] = _mm256_setzero_ps();
    for (int s = 0; s < w->super_blocks; s++) {
        __m256i acc[TILE];
        for (int k = 0; k < KT; k++) acc[k] = _mm256_setzero_si256();
        const uint8_t *qs = q + (size_t)s * 4 * G;
        for (int i = 0; i < G / 8; i++) {
            prefetch_codes(qs + 32 * i + 2048, once);
            const decoded64 d = decode64(qs + 32 * i, lut, m4);
            for (int k = 0; k < KT; k++) acc[k] = _mm256_add_epi32(acc[k], dot64_lut(d, x0 + (size_t)k * cp + (size_t)s * 8 * G + 64 * i, ones));
        }
        const __m256 sv = load8_f16(sc + 8 * s);
        for (int k = 0; k < KT; k++) {
            const __m256 f = _mm256_mul_ps(sv, _mm256_loadu_ps(xs + (size_t)(k0 + k) * w->groups + 8 * s));
            total[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[k]), f, total[k]);
        }
    }
    fast_tail(w, r, lut, x0, xs, k0, KT, once, total);
    for (int k = 0; k < KT; k++) y[(size_t)(k0 + k) * ys + r] = fast_epilogue(w, r, k0 + k, total[k], gsum, bias);
}

/// Rows r and r + 1 of the fast path for KT (1..4) activation rows: in the super-blocks the two
/// rows share each load of the activations. For batches (with one activation row the single-row
/// loop does as much work per weight with fewer registers, and is faster). Prefetches `lines`
/// cache lines from `ahead`, one per block.
INLINE_AVX2 void lut_fast_pair(const any4_packed *w, int r, const int8_t *xq, const float *xs, const float *gsum, int k0,
                               const int KT, float *y, int ys, const float *bias, const char *ahead, int lines) {
    const int cp = w->cols_padded, G = w->group_size;
    const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1), la = row_lut(w, r), lb = row_lut(w, r + 1);
    const uint8_t *qa = w->codes + (size_t)r * (cp / 2), *qb = qa + cp / 2;
    const uint16_t *sa = w->scales_f16 + (size_t)r * w->groups, *sb = sa + w->groups;
    const int8_t *x0 = xq + (size_t)k0 * cp;
    __m256 ta[TILE], tb[TILE];
    for (int k = 0; k < KT; k++) { ta[k] = _mm256_setzero_ps(); tb[k] = _mm256_setzero_ps(); }
    for (int s = 0; s < w->super_blocks; s++) {
        __m256i ca[TILE], cb[TILE];
        for (int k = 0; k < KT; k++) { ca[k] = _mm256_setzero_si256(); cb[k] = _mm256_setzero_si256(); }
        const uint8_t *pa = qa + (size_t)s * 4 * G, *pb = qb + (size_t)s * 4 * G;
        for (int i = 0; i < G / 8; i++) {
            if (lines > 0) { _mm_prefetch(ahead, _MM_HINT_T0); ahead += 64; lines--; }
            const decoded64 da = decode64(pa + 32 * i, la, m4), db = decode64(pb + 32 * i, lb, m4);
            for (int k = 0; k < KT; k++) {
                const int8_t *xk = x0 + (size_t)k * cp + (size_t)s * 8 * G + 64 * i;
                const __m256i x0v = load32(xk), x1v = load32(xk + 32);  // shared by the two rows
                ca[k] = _mm256_add_epi32(ca[k], _mm256_add_epi32(dot32_lut(da.w[0], da.a[0], x0v, ones),
                                                                 dot32_lut(da.w[1], da.a[1], x1v, ones)));
                cb[k] = _mm256_add_epi32(cb[k], _mm256_add_epi32(dot32_lut(db.w[0], db.a[0], x0v, ones),
                                                                 dot32_lut(db.w[1], db.a[1], x1v, ones)));
            }
        }
        const __m256 sva = load8_f16(sa + 8 * s), svb = load8_f16(sb + 8 * s);
        for (int k = 0; k < KT; k++) {
            const __m256 xk = _mm256_loadu_ps(xs + (size_t)(k0 + k) * w->groups + 8 * s);
            ta[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ca[k]), _mm256_mul_ps(sva, xk), ta[k]);
            tb[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(cb[k]), _mm256_mul_ps(svb, xk), tb[k]);
        }
    }
    fast_tail(w, r, la, x0, xs, k0, KT, 0, ta);
    fast_tail(w, r + 1, lb, x0, xs, k0, KT, 0, tb);
    for (int k = 0; k < KT; k++) {
        y[(size_t)(k0 + k) * ys + r] = fast_epilogue(w, r, k0 + k, ta[k], gsum, bias);
        y[(size_t)(k0 + k) * ys + r + 1] = fast_epilogue(w, r + 1, k0 + k, tb[k], gsum, bias);
    }
}

AVX2 static void lut_fast_avx2(const any4_packed *w, const int8_t *xq, const float *xs, const float *gsum, int m, float *y,
                               int ys, const float *bias, int r0, int r1) {
    int r = r0;
    if (w->super_blocks > 0 && m > 1) {
        // Rows in pairs, up to four activation rows at a time in passes of even size (m = 5 is 3 + 2;
        // four rows beat two by 5-10 % although some constants then live in memory). A pair comes
        // from memory in its first pass and from cache in the others, so each pass prefetches its
        // share of the next pair's codes: memory stays busy all along rather than in bursts (5-17 %
        // faster at m = 2..8 than prefetching 2 KiB ahead within the pair).
        const int cp = w->cols_padded, passes = (m + TILE - 1) / TILE, lines = (cp + 63) / 64;
        const int share = (lines + passes - 1) / passes;
        for (; r + 2 <= r1; r += 2) {
            const char *next = (const char *)w->codes + (size_t)(r + 2) * (cp / 2);
            for (int k0 = 0, p = 0; k0 < m; p++) {
                const int kt = even_pass(m, passes, p, k0);
                const int from = p * share, n = r + 4 <= r1 ? (lines - from < share ? lines - from : share) : 0;
                const char *ahead = next + (size_t)64 * from;
                switch (kt) {
                case 1: lut_fast_pair(w, r, xq, xs, gsum, k0, 1, y, ys, bias, ahead, n); break;
                case 2: lut_fast_pair(w, r, xq, xs, gsum, k0, 2, y, ys, bias, ahead, n); break;
                case 3: lut_fast_pair(w, r, xq, xs, gsum, k0, 3, y, ys, bias, ahead, n); break;
                default: lut_fast_pair(w, r, xq, xs, gsum, k0, 4, y, ys, bias, ahead, n); break;
                }
                k0 += kt;
            }
        }
    }
    const int once = m <= TILE;  // each row in a single pass
    for (; r < r1; r++) {
        for (int k0 = 0; k0 < m; k0 += TILE) {
            switch (m - k0 < TILE ? m - k0 : TILE) {
            case 1: lut_fast_row(w, r, xq, xs, gsum, k0, 1, once, y, ys, bias); break;
            case 2: lut_fast_row(w, r, xq, xs, gsum, k0, 2, once, y, ys, bias); break;
            case 3: lut_fast_row(w, r, xq, xs, gsum, k0, 3, once, y, ys, bias); break;
            default: lut_fast_row(w, r, xq, xs, gsum, k0, 4, once, y, ys, bias); break;
            }
        }
    }
}

#endif

/// Σ x over n values (n % 8 == 0) in eight interleaved lanes reduced as hsum256 does, so that the
/// scalar and AVX2 quantizers get the same float and hence the same codes.
static float lane_sum(const float *x, int n) {
    float l[8] = {0};
    for (int c = 0; c < n; c += 8) for (int i = 0; i < 8; i++) l[i] += x[c + i];
    return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

/// The sum-preserving step: moves the codes that were rounded furthest (first index on ties) by
/// one until Σ xq = round(Σ x / s), so that Σ xq·s is within s/2 of Σ x. Per-group weight means
/// (any table whose values do not average to zero over a row's codes) make the product sensitive to
/// the common-mode part of the rounding error; this removes it. xf: x / s (as the codes saw it).
static void preserve_sum(const float *x, float inv, int n, int8_t *xq, int residual) {
    while (residual != 0) {
        const int dir = residual > 0 ? 1 : -1;
        int best = -1;
        float bestGap = -1;
        for (int c = 0; c < n; c++) {
            const float gap = (x[c] * inv - xq[c]) * dir;  // how far below (above) the value the code is
            if (gap > bestGap && xq[c] + dir <= 127 && xq[c] + dir >= -127) { bestGap = gap; best = c; }
        }
        if (best < 0) break;
        xq[best] = (int8_t)(xq[best] + dir);
        residual -= dir;
    }
}

/// Activations of one group to int8, the portable version.
static void quantize_group_scalar(const float *x, int n, int8_t *xq, float *scale, float *sum, int preserve) {
    float amax = 0;
    for (int c = 0; c < n; c++) amax = fabsf(x[c]) > amax ? fabsf(x[c]) : amax;
    float s = 0;
    if (n % 8 == 0) s = lane_sum(x, n);
    else for (int c = 0; c < n; c++) s += x[c];
    const float inv = amax > 0 ? 127.0f / amax : 0.0f;
    int qsum = 0;
    for (int c = 0; c < n; c++) {
        xq[c] = (int8_t)lrintf(x[c] * inv);
        qsum += xq[c];
    }
    if (preserve) preserve_sum(x, inv, n, xq, (int)lrintf(s * inv) - qsum);
    *scale = amax / 127.0f;
    *sum = s;
}

#if ANY4_X86
/// preserve_sum with the same choices: the gaps are computed once into a buffer (a moved code's gap
/// drops by one; a code at ±127 cannot move further) and the largest is found 8 at a time, the
/// first index on ties. n % 8 == 0.
AVX2 static void preserve_sum_avx2(const float *x, float inv, int n, int8_t *xq, int residual) {
    if (residual == 0) return;
    if (n > 4096) { preserve_sum(x, inv, n, xq, residual); return; }
    const int dir = residual > 0 ? 1 : -1;  // the residual only ever moves towards 0
    float gap[4096] __attribute__((aligned(32)));
    const __m256 vinv = _mm256_set1_ps(inv), vdir = _mm256_set1_ps((float)dir), none = _mm256_set1_ps(-INFINITY);
    const __m256i limit = _mm256_set1_epi32(127);
    for (int c = 0; c < n; c += 8) {
        const __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(xq + c)));
        const __m256 g = _mm256_mul_ps(_mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(x + c), vinv), _mm256_cvtepi32_ps(q)), vdir);
        // a code that would leave [-127, 127] is never chosen
        const __m256i moved = _mm256_abs_epi32(_mm256_add_epi32(q, _mm256_set1_epi32(dir)));
        _mm256_store_ps(gap + c, _mm256_blendv_ps(g, none, _mm256_castsi256_ps(_mm256_cmpgt_epi32(moved, limit))));
    }
    while (residual != 0) {
        __m256 mx = none;
        for (int c = 0; c < n; c += 8) mx = _mm256_max_ps(mx, _mm256_load_ps(gap + c));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float best = _mm_cvtss_f32(m4);
        if (!(best > -1)) break;  // as the scalar search, which starts from a gap of -1
        const __m256 vb = _mm256_set1_ps(best);
        int at = -1;
        for (int c = 0; c < n && at < 0; c += 8) {
            const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_load_ps(gap + c), vb, _CMP_EQ_OQ));
            if (mask) at = c + __builtin_ctz((unsigned)mask);
        }
        xq[at] = (int8_t)(xq[at] + dir);
        residual -= dir;
        gap[at] = (xq[at] + dir > 127 || xq[at] + dir < -127) ? -INFINITY : gap[at] - 1;
    }
}

/// Activations of one group to int8 (n % 32 == 0); the same codes as quantize_group_scalar.
AVX2 static void quantize_group_avx2(const float *x, int n, int8_t *xq, float *scale, float *sum, int preserve) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 mx = _mm256_setzero_ps(), sm = _mm256_setzero_ps();
    for (int c = 0; c < n; c += 8) {
        const __m256 v = _mm256_loadu_ps(x + c);
        mx = _mm256_max_ps(mx, _mm256_and_ps(v, absmask));
        sm = _mm256_add_ps(sm, v);
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4), total = hsum256(sm);
    const float invs = amax > 0 ? 127.0f / amax : 0.0f;
    const __m256 inv = _mm256_set1_ps(invs);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    __m256i qs = _mm256_setzero_si256();
    for (int c = 0; c < n; c += 32) {
        const __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + c), inv));
        const __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + c + 8), inv));
        const __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + c + 16), inv));
        const __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + c + 24), inv));
        qs = _mm256_add_epi32(qs, _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
        // packs interleave the 128-bit lanes; the permutation puts the 32 codes back in order.
        _mm256_storeu_si256((__m256i *)(xq + c), _mm256_permutevar8x32_epi32(
            _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3)), order));
    }
    __m128i q4 = _mm_add_epi32(_mm256_castsi256_si128(qs), _mm256_extracti128_si256(qs, 1));
    q4 = _mm_add_epi32(q4, _mm_shuffle_epi32(q4, 0x4E));
    q4 = _mm_add_epi32(q4, _mm_shuffle_epi32(q4, 0xB1));
    // The nudges are rare (a few per group) and cheap next to a group's products; the scalar
    // search keeps them identical to the portable version's.
    if (preserve) preserve_sum_avx2(x, invs, n, xq, (int)lrintf(total * invs) - _mm_cvtsi128_si32(q4));
    *scale = amax / 127.0f;
    *sum = total;
}
#endif

#if ANY4_X86
AVX2 static inline __m256 load8(const void *w, int dtype, size_t i) {
    if (dtype == 0) return _mm256_loadu_ps((const float *)w + i);
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

AVX2 static void dense_avx2(const void *w, int dtype, int cols, const float *x, int m, float *y, int ys, const float *bias,
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

// MARK: - Dispatch

void any4_lut_gemm_exact(const any4_packed *w, const float *x, const float *gsum, int m, float *y, int ys,
                         const float *bias, int r0, int r1, int use_avx2) {
#if ANY4_X86
    if (use_avx2) { lut_exact_avx2(w, x, gsum, m, y, ys, bias, r0, r1); return; }
#endif
    (void)use_avx2;
    lut_exact_scalar(w, x, gsum, m, y, ys, bias, r0, r1);
}

void any4_lut_gemm_fast(const any4_packed *w, const int8_t *xq, const float *xs, const float *gsum, int m, float *y, int ys,
                        const float *bias, int r0, int r1, int use_avx2) {
#if ANY4_X86
    if (use_avx2) { lut_fast_avx2(w, xq, xs, gsum, m, y, ys, bias, r0, r1); return; }
#endif
    (void)use_avx2;
    lut_fast_scalar(w, xq, xs, gsum, m, y, ys, bias, r0, r1);
}

void any4_dense_gemm(const void *w, int dtype, int cols, const float *x, int m, float *y, int ys, const float *bias,
                     int r0, int r1, int use_avx2) {
#if ANY4_X86
    if (use_avx2) { dense_avx2(w, dtype, cols, x, m, y, ys, bias, r0, r1); return; }
#endif
    (void)use_avx2;
    dense_scalar(w, dtype, cols, x, m, y, ys, bias, r0, r1);
}

void any4_quantize_activations(const float *x, int m, int cp, int G, int groups, int8_t *xq, float *xs, float *gsum,
                               int preserve, int use_avx2) {
    for (int k = 0; k < m; k++) {
        for (int g = 0; g < groups; g++) {
            const int begin = g * G, n = ((g + 1) * G < cp ? (g + 1) * G : cp) - begin;
            const size_t o = (size_t)k * cp + begin, i = (size_t)k * groups + g;
#if ANY4_X86
            if (use_avx2 && n % 32 == 0) { quantize_group_avx2(x + o, n, xq + o, xs + i, gsum + i, preserve); continue; }
#endif
            quantize_group_scalar(x + o, n, xq + o, xs + i, gsum + i, preserve);
        }
    }
    (void)use_avx2;
}

// MARK: - Int8 x int8 (decode head)

void any4_q8_quantize_rows(const float *w, int cols, int8_t *wq, float *ws, int r0, int r1) {
    const int nb = cols / 32;
    for (int r = r0; r < r1; r++) {
        for (int b = 0; b < nb; b++) {
            const float *src = w + (size_t)r * cols + b * 32;
            float amax = 0;
            for (int i = 0; i < 32; i++) amax = fabsf(src[i]) > amax ? fabsf(src[i]) : amax;
            const float s = amax / 127.0f, inv = s > 0 ? 1.0f / s : 0.0f;
            for (int i = 0; i < 32; i++) wq[(size_t)r * cols + b * 32 + i] = (int8_t)lrintf(src[i] * inv);
            ws[(size_t)r * nb + b] = s;
        }
    }
}

static void q8_scalar(const int8_t *wq, const float *ws, int cols, const int8_t *xq, const float *xs, int m, float *y,
                      int ys, int r0, int r1) {
    const int nb = cols / 32;
    for (int r = r0; r < r1; r++) {
        for (int k = 0; k < m; k++) {
            float acc = 0;
            for (int b = 0; b < nb; b++) {
                int dot = 0;
                for (int i = 0; i < 32; i++) dot += wq[(size_t)r * cols + b * 32 + i] * xq[(size_t)k * cols + b * 32 + i];
                acc += (float)dot * ws[(size_t)r * nb + b] * xs[(size_t)k * nb + b];
            }
            y[(size_t)k * ys + r] = acc;
        }
    }
}

#if ANY4_X86
AVX2 static void q8_avx2(const int8_t *wq, const float *ws, int cols, const int8_t *xq, const float *xs, int m, float *y,
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

void any4_q8_gemm(const int8_t *wq, const float *ws, int cols, const int8_t *xq, const float *xs, int m, float *y, int ys,
                  int r0, int r1, int use_avx2) {
#if ANY4_X86
    if (use_avx2) { q8_avx2(wq, ws, cols, xq, xs, m, y, ys, r0, r1); return; }
#endif
    (void)use_avx2;
    q8_scalar(wq, ws, cols, xq, xs, m, y, ys, r0, r1);
}

static void attend_scalar(const float *q, const float *k, int ks, const float *v, int vs, int n, int hd, float scale,
                          float *p, float *out) {
    float mx = -INFINITY;
    for (int j = 0; j < n; j++) {
        float d = 0;
        for (int i = 0; i < hd; i++) d += q[i] * k[(size_t)j * ks + i];
        p[j] = d * scale;
        mx = p[j] > mx ? p[j] : mx;
    }
    float sum = 0;
    for (int j = 0; j < n; j++) { p[j] = expf(p[j] - mx); sum += p[j]; }
    const float inv = 1.0f / sum;
    for (int i = 0; i < hd; i++) out[i] = 0;
    for (int j = 0; j < n; j++) {
        p[j] *= inv;
        for (int i = 0; i < hd; i++) out[i] += p[j] * v[(size_t)j * vs + i];
    }
}

#if ANY4_X86
AVX2 static void attend_avx2(const float *q, const float *k, int ks, const float *v, int vs, int n, int hd, float scale,
                             float *p, float *out) {
    if (hd % 8 != 0 || hd > 256) { attend_scalar(q, k, ks, v, vs, n, hd, scale, p, out); return; }
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

void any4_attend(const float *q, const float *k, int ks, const float *v, int vs, int n, int hd, float scale,
                 float *scratch, float *out, int use_avx2) {
#if ANY4_X86
    if (use_avx2) { attend_avx2(q, k, ks, v, vs, n, hd, scale, scratch, out); return; }
#endif
    (void)use_avx2;
    attend_scalar(q, k, ks, v, vs, n, hd, scale, scratch, out);
}

void any4_triad(float *a, const float *b, const float *c, float s, size_t begin, size_t end) {
    for (size_t i = begin; i < end; i++) a[i] = b[i] + s * c[i];
}
