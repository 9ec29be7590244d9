// Private to the kernel files (not in include/, so Swift never sees it): the helpers several
// families share, and the scalar and AVX2 versions of each family that dispatch.c chooses between.
// Every kernel file includes this header first.
#ifndef ANY4_KERNELS_INTERNAL_H
#define ANY4_KERNELS_INTERNAL_H

#include "any4_kernels.h"

// The AVX2 quantizer must reproduce the scalar one bit for bit: no a·b + c fused behind our back.
// (A file-scope pragma holds to the end of the including file: every kernel file is compiled so.)
#pragma STDC FP_CONTRACT OFF

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#define ANY4_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

// MARK: - Scalar helpers

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

/// Weight i of a dense matrix stored as f32 (dtype 0), f16 (1), bf16 (2) or int8 codes with an f32
/// scale per 32 (3: w points to an any4_q8_view; code × scale, exact in f32), as a float.
static inline float dense_at(const void *w, int dtype, size_t i) {
    if (dtype == 3) {
        const any4_q8_view *v = (const any4_q8_view *)w;
        return (float)v->codes[i] * v->scales[i / 32];
    }
    return dtype == 0 ? ((const float *)w)[i]
         : dtype == 1 ? half_to_float(((const uint16_t *)w)[i])
                      : bf16_to_float(((const uint16_t *)w)[i]);
}

/// The activation rows of pass p when m rows are cut into `passes` passes of even size (m = 5 in
/// two passes is 3 + 2), k0 rows being done.
static inline int even_pass(int m, int passes, int p, int k0) { return (m - k0 + passes - p - 1) / (passes - p); }

/// The sum-preserving step: moves the codes that were rounded furthest (first index on ties) by
/// one until Σ xq = round(Σ x / s), so that Σ xq·s is within s/2 of Σ x. Per-group weight means
/// (any table whose values do not average to zero over a row's codes) make the product sensitive to
/// the common-mode part of the rounding error; this removes it. xf: x / s (as the codes saw it).
/// Shared by the two quantizers (the AVX2 one falls back to it past 4096 columns).
static inline void preserve_sum(const float *x, float inv, int n, int8_t *xq, int residual) {
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

/// What pass p (of `passes` over activation rows) of the lookup kernels' row-pair loop prefetches
/// of the next pair's codes: its share of their cache lines, from *ahead; none when rows r + 2 and
/// r + 3 are not in [.., r1). Every pass of a pair thus keeps memory busy, not only the first.
static inline int pass_prefetch(const any4_packed *w, int r, int r1, int passes, int p, const char **ahead) {
    const int cp = w->cols_padded, lines = (cp + 63) / 64, share = (lines + passes - 1) / passes, from = p * share;
    *ahead = (const char *)w->codes + (size_t)(r + 2) * (cp / 2) + (size_t)64 * from;
    return r + 4 <= r1 ? (lines - from < share ? lines - from : share) : 0;
}

/// Row r's table of a dequantization, padded to 16 entries with 0 (so any nibble reads inside it).
static inline void dequant_row_table(const any4_dequant_args *a, int r, float t[16]) {
    const float *src = a->table + (size_t)r * a->table_stride;
    const int n = a->table_size < 16 ? a->table_size : 16;
    for (int i = 0; i < 16; i++) t[i] = i < n ? src[i] : 0.0f;
}

/// (t · s + z) · ts in three rounded steps.
static inline float dequant_one(float t, float s, float z, float ts) {
    float v = t * s;
    v = v + z;
    return v * ts;
}

/// How any4_fast_activations_tiles splits m activation rows: `tiles` tiles of 16 (the last padded
/// when m % 16 > ANY4_TILE_REST), and the last `rest` rows (m % 16 when at most ANY4_TILE_REST) for
/// the row kernel: a tile costs about as much whatever its rows; up to 4 rows cost that kernel less
/// (measured: 1536x576 with 1 row over 16 +25 % on the row kernel, +60 % in a tile; with 8, +110 %
/// and +60 %; at 4096x14336 the two about equal from 1 to 9).
#define ANY4_TILE_REST 4
static inline int tile_rest(int m) { return m % 16 <= ANY4_TILE_REST ? m % 16 : 0; }
static inline int tile_tiles(int m) { return (m - tile_rest(m) + 15) / 16; }

// MARK: - Scalar references (the portable versions, and the twins the tests hold the AVX2 ones to)

void any4_lut_exact_scalar(const any4_packed *w, const float *x, const float *gsum, int m, float *y, int ys,
                           const float *bias, int r0, int r1);
void any4_lut_fast_scalar(const any4_packed *w, const int8_t *xq, const float *xs, const float *gsum, int m, float *y,
                          int ys, const float *bias, int r0, int r1);
void any4_dense_scalar(const void *w, int dtype, int cols, const float *x, int m, float *y, int ys, const float *bias,
                       int r0, int r1);
void any4_quantize_group_scalar(const float *x, int n, int8_t *xq, float *scale, float *sum, int preserve);
void any4_q8_scalar(const int8_t *wq, const float *ws, int cols, const int8_t *xq, const float *xs, int m, float *y,
                    int ys, int r0, int r1);
void any4_attend_scalar(const float *q, const void *k, int ks, const void *v, int vs, int n, int hd, float scale,
                        float *p, float *out, int kv_f16);
void any4_dequant_scalar(const any4_dequant_args *a, float *out, int r0, int r1);

// MARK: - AVX2 helpers and versions

#if ANY4_X86
#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define INLINE_AVX2 __attribute__((target("avx2,fma,f16c"), always_inline)) static inline

/// Activation rows per register tile of the lookup and dense kernels.
#define TILE 4

AVX2 static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/// Σ w·x over 32 columns for one activation row, as 8 int32 lanes: maddubs needs an unsigned
/// operand, so |w| (taken once per decoded block and shared by every activation row) times x with
/// the sign of w.
INLINE_AVX2 __m256i dot32_lut(__m256i w, __m256i wabs, __m256i x, __m256i ones) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(wabs, _mm256_sign_epi8(x, w)), ones);
}

INLINE_AVX2 __m256i load32(const int8_t *x) { return _mm256_loadu_si256((const __m256i *)x); }

// Shared by the AVX2 and AVX-512 fast paths (lut_gemm_avx2.c, lut_gemm_avx512.c).

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

/// Prefetches the codes at p: non-temporal when the row is read only once (one pass over the
/// activations), so the stream does not push the activations and tables out of the caches (11-12 %
/// faster at batch 1 than an ordinary prefetch, measured A/B on 4096x14336); otherwise into every
/// level, as later passes read the row again.
INLINE_AVX2 void prefetch_codes(const uint8_t *p, int once) {
    if (once) _mm_prefetch((const char *)p, _MM_HINT_NTA);
    else _mm_prefetch((const char *)p, _MM_HINT_T0);
}

/// The end of a row of the fast path: the factor of the int8 table, the zero term and the bias.
INLINE_AVX2 float fast_epilogue(const any4_packed *w, int r, int k, __m256 total, const float *gsum, const float *bias) {
    float v = hsum256(total) * (w->table_i8_scale[(size_t)r * w->table_i8_scale_stride] * w->f16_factors[2 * r]);
    if (w->zeros_f16)
        v += dot_f16_avx2(w->zeros_f16 + (size_t)r * w->groups, gsum + (size_t)k * w->groups, w->groups) * w->f16_factors[2 * r + 1];
    return v + (bias ? bias[r] : 0);
}

AVX2 void any4_lut_exact_avx2(const any4_packed *w, const float *x, const float *gsum, int m, float *y, int ys,
                              const float *bias, int r0, int r1);
AVX2 void any4_lut_fast_avx2(const any4_packed *w, const int8_t *xq, const float *xs, const float *gsum, int m, float *y,
                             int ys, const float *bias, int r0, int r1);
AVX2 void any4_dense_avx2(const void *w, int dtype, int cols, const float *x, int m, float *y, int ys, const float *bias,
                          int r0, int r1);
/// Needs n % 32 == 0.
AVX2 void any4_quantize_group_avx2(const float *x, int n, int8_t *xq, float *scale, float *sum, int preserve);
AVX2 void any4_q8_avx2(const int8_t *wq, const float *ws, int cols, const int8_t *xq, const float *xs, int m, float *y,
                       int ys, int r0, int r1);
AVX2 void any4_attend_avx2(const float *q, const void *k, int ks, const void *v, int vs, int n, int hd, float scale,
                           float *p, float *out, int kv_f16);
AVX2 void any4_dequant_avx2(const any4_dequant_args *a, float *out, int r0, int r1);

// MARK: - AVX-512 VNNI versions (Zen 4, Ice Lake and later: F, BW, VL, DQ and VNNI)

#define VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#define INLINE_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni"), always_inline)) static inline
// The same with VBMI (vpermb: Ice Lake, Sapphire Rapids, Zen 4 and later; not Cascade Lake): level 3.
#define VBMI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512vbmi")))
#define INLINE_VBMI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512vbmi"), always_inline)) static inline

/// Activation rows per pass of the AVX-512 lookup kernel (32 registers: twice the AVX2 tile).
#define VTILE 8

INLINE_VNNI __m256i load32u(const uint8_t *x) { return _mm256_loadu_si256((const __m256i *)x); }

/// Columns up to which the decode paths (one activation row) keep their per-call activations on the stack.
#define DEC_MAX_CP 16384

/// How the decode paths prefetch rows of `row_bytes` read four at a time: `ahead` bytes on (a whole
/// number of quads of rows, at least 2 KiB, so that it is the same offset of a later row), into L2
/// and from 2 KiB nearer into L1 too, or into L2 only when the rows are `wide` (512 bytes or more:
/// a quad ahead is then too far for L1). Measured cold, 2 threads, against each other and against
/// prefetching only the nearer line: 576-column lookup rows (288 bytes) run best with both, 1536-
/// to 14336-column rows with L2 only; the int8 head's 2048-column rows (2 KiB) ran at 0.75 of the
/// old kernel's speed with both, at its speed with L2 only.
typedef struct {
    size_t ahead;
    int wide;
} dec_stream;

static inline dec_stream dec_stream_for(size_t row_bytes) {
    const size_t quad = 4 * row_bytes;
    return (dec_stream){(2048 + quad - 1) / quad * quad, row_bytes >= 512};
}

/// The decode paths' prefetch for the row bytes at p.
INLINE_VNNI void dec_prefetch(const uint8_t *p, dec_stream st) {
    if (!st.wide) _mm_prefetch((const char *)p + st.ahead, _MM_HINT_T0);
    _mm_prefetch((const char *)p + st.ahead + 2048, _MM_HINT_T1);
}

/// The fast path on activations prepared by any4_fast_activations_avx512 (x + 128, unsigned).
VNNI void any4_lut_fast_avx512(const any4_packed *w, const uint8_t *xu, const float *xs, const float *gsum, int m, float *y,
                               int ys, const float *bias, int r0, int r1, int simd);
/// Columns per row of a decoded chunk of weights in the tile kernel (the largest group it takes).
#define ANY4_TILE_WS 1024
/// The fast path on activation tiles (any4_fast_activations_tiles; m ≥ ANY4_TILE_MIN_M).
/// xs and gsum: the activations' scales and group sums (m × groups), which the rows past the tiles read.
VNNI void any4_lut_tiles_avx512(const any4_packed *w, const int8_t *tiles, const float *xs, const float *gsum, int m,
                                float *y, int ys, const float *bias, int r0, int r1);
/// The activation bytes of any4_fast_activations_tiles (x: where its data starts).
VNNI void any4_fast_tiles_x_avx512(const int8_t *xq, int m, int nt, int cp, uint8_t *x);
/// xq (m rows, AVX2 kernel order) in place into the AVX-512 kernel's order and offset.
VNNI void any4_fast_activations_avx512(const any4_packed *w, uint8_t *x, int m);
/// The int8 head on activations offset by 128 (unsigned).
VNNI void any4_q8_avx512(const int8_t *wq, const float *ws, int cols, const uint8_t *xu, const float *xs, int m, float *y,
                         int ys, int r0, int r1);
#endif

#endif
