// Lookup-GEMM and dense GEMM kernels for any4 explorer: y[m, rows] = x[m, cols] · Wᵀ (+ bias).
//
// Each kernel has a portable scalar version (the reference the tests hold the fast ones to) and,
// on x86-64, an AVX2 + FMA + F16C version chosen at run time (any4_cpu_has_avx2). All kernels
// work on a row range [row_begin, row_end) so the caller can spread rows over threads.
//
// The files, one pair per family as in ggml (the scalar reference apart from the SIMD version):
//   lut_gemm_{scalar,avx2}.c   the lookup GEMM, exact and fast paths
//   quantize_{scalar,avx2}.c   activations to int8 per group (the fast path's and the int8 head's)
//   dense_{scalar,avx2}.c      dense GEMM on f32, f16 or bf16 weights
//   q8_{scalar,avx2}.c         the int8 × int8 decode head (and its weight quantizer)
//   attend_{scalar,avx2}.c     one attention row
//   dequant_{scalar,avx2}.c    packed rows back to f32 (bit for bit the quantized matrix's values)
//   lut_gemm_avx512.c, q8_avx512.c  the fast lookup path and the int8 head with AVX-512 VNNI
//                              (bit for bit their AVX2 versions, except the fast path from 16
//                              activation rows: tiles of 16 rows, equal to float rounding)
//   dispatch.c                 the public entry points: the AVX2 version when use_avx2 (and the build
//                              targets x86-64), else the scalar one; tests pass use_avx2 = 0 to run
//                              the scalar twin and compare. The two families with an AVX-512
//                              version take a level `simd` instead (0 scalar, 1 AVX2, 2 AVX-512 VNNI, 3 with VBMI).
//   cpu.c                      any4_cpu_has_avx2 and any4_cpu_simd_level, which the Swift side
//                              reads once
//   kernel_order.c, triad.c    the activation reordering and the bandwidth probe (no SIMD twin)
// Helpers shared by several families, and the variants' declarations, are in kernels_internal.h
// (private to this target); every kernel file includes it first, so all are compiled with FP_CONTRACT OFF.
//
// Packed 4-bit layout (built by the Swift side). A group of `group_size` columns (a multiple of
// 32) shares one scale and one zero: w = table[q] * scale + zero. Each row is cols_padded / 2 bytes
// in two parts:
//   * super-blocks of 8 groups (the first super_blocks × 8 × group_size columns): chunk i (32
//     bytes, i < group_size / 8) of a super-block holds, in bytes 4·j .. 4·j + 3, columns
//     8·i .. 8·i + 3 (low nibbles) and 8·i + 4 .. 8·i + 7 (high nibbles) of its group j. A 32-bit
//     lane of a SIMD register then only ever sees one group, so one accumulator carries the sums
//     of 8 groups and one multiply applies their 8 scales.
//   * the tail (the remaining groups): blocks of B = block_cols columns (64 when the group size
//     allows, else 32); byte j (0..B/2-1) holds column j in its low nibble and column j + B/2 in
//     its high nibble, so one load and two masks give two runs of consecutive columns.
// The AVX2 kernels read activations in the matching "kernel order" (any4_kernel_order: within a
// super-block, chunk i's 64 values are the 32 low-nibble columns then the 32 high-nibble ones);
// the scalar kernels read them in natural order.
#ifndef ANY4_KERNELS_H
#define ANY4_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// 1 when the CPU has AVX2, FMA and F16C (and the OS saves YMM state).
int any4_cpu_has_avx2(void);

/// The best kernel level this CPU runs: 3 with AVX-512 F/BW/VL/DQ, VNNI and VBMI (and the OS
/// saving ZMM state), 2 without VBMI, 1 with AVX2 (any4_cpu_has_avx2), else 0.
int any4_cpu_simd_level(void);

typedef struct {
    const uint8_t *codes;     // rows × cols_padded/2
    const float *table;       // per-row float tables (rows × 16), or one shared table (table_stride 0)
    int table_stride;         // 16 for per-row tables, 0 for a shared table
    const int8_t *table_i8;   // int8 tables, same stride, for the fast path
    const float *table_i8_scale; // per-row factor: table ≈ table_i8 × factor (stride 1, or 0 if shared)
    int table_i8_scale_stride;
    const float *scales;      // rows × groups
    const float *zeros;       // rows × groups, or NULL
    // The fast path reads scales and zeros as f16 (half the bytes of f32), each relative to a
    // per-row factor so that small rows keep f16's full precision: scale = scales_f16 × factor[2r],
    // zero = zeros_f16 × factor[2r + 1]. The exact path reads the f32 arrays above.
    const uint16_t *scales_f16; // rows × groups
    const uint16_t *zeros_f16;  // rows × groups, or NULL (when zeros is NULL)
    const float *f16_factors;   // rows × 2
    int rows;
    int cols_padded;
    int block_cols;           // 32 or 64
    int group_size;           // multiple of block_cols
    int groups;               // groups per row
    int super_blocks;         // 8-group super-blocks at the start of each row (see above)
} any4_packed;

/// Packs rows [row_begin, row_end) of codes (one per byte, rows × cols, low nibble used) into `out`
/// (rows × cols_padded/2 bytes) in w's layout (only cols_padded, block_cols, group_size and
/// super_blocks are read); padding columns get code 0.
void any4_pack_codes(const any4_packed *w, const uint8_t *codes, int cols, uint8_t *out, int row_begin, int row_end);

/// The factor f of an int8 table (table ≈ round(t / f) · f) for n entries: 1/d when every entry is
/// a multiple of 1/d (d = 1, 2, 4, 8, 16) that fits int8; else, of the 128 factors
/// max|t|/127 · (1 + j/512), the first with the least squared rounding error (half away from zero,
/// as roundf; the AVX2 search gives the same factor).
float any4_int8_factor(const float *t, int n, int use_avx2);

/// Reorders activations (m rows of cols_padded values of elem_size bytes) from natural order into the
/// kernel order of `w`'s layout (the tail stays as it is). src and dst must not overlap.
void any4_kernel_order(const any4_packed *w, const void *src, void *dst, int m, int elem_size);

/// Exact path: float tables, float activations, f32 accumulation.
/// x: m × cols_padded (padding columns must be 0; kernel order when use_avx2); group_sums: m × groups (Σ x over each group);
/// y: m × rows (row stride y_stride); bias: rows or NULL.
void any4_lut_gemm_exact(const any4_packed *w, const float *x, const float *group_sums, int m,
                         float *y, int y_stride, const float *bias, int row_begin, int row_end, int use_avx2);

/// Fast path: int8 tables, int8 activations quantized per group (xq: m × cols_padded, in kernel
/// order when simd ≥ 1, and then for simd 2 rearranged by any4_fast_activations_wide, or for simd 2
/// with any4_fast_uses_tiles the buffer of any4_fast_activations_tiles; x_scale:
/// m × groups, x ≈ xq × x_scale), int32 accumulation within a group, f16 scales and zeros
/// (scales_f16, zeros_f16, f16_factors). All levels give the same integer sums; levels 1 and 2
/// give identical results, except on tiles (level 2, m ≥ 16), where each group's integer sum is
/// converted once per output and the float steps are ordered differently (equal to float rounding).
void any4_lut_gemm_fast(const any4_packed *w, const int8_t *xq, const float *x_scale, const float *group_sums, int m,
                        float *y, int y_stride, const float *bias, int row_begin, int row_end, int simd);

/// The fast path's activations for level 2, in place: from kernel order, the middle 32 bytes of
/// each 128-value span of the super-blocks, which the AVX-512 kernel reads with one load, are
/// swapped, and every byte is offset by
/// 128 (vpdpbusd takes one unsigned operand).
void any4_fast_activations_wide(const any4_packed *w, int8_t *xq, int m);

/// Activation rows from which the level-2 fast path reads its activations as tiles of 16 rows
/// (any4_fast_activations_tiles) instead of any4_fast_activations_wide's rows.
#define ANY4_TILE_MIN_M 16

/// 1 when any4_lut_gemm_fast at level `simd` with m activation rows on w reads tiles
/// (any4_fast_activations_tiles): level 2, m ≥ ANY4_TILE_MIN_M and group_size ≤ 1024.
int any4_fast_uses_tiles(const any4_packed *w, int m, int simd);

/// Bytes any4_fast_activations_tiles writes for m activation rows.
size_t any4_fast_tiles_bytes(const any4_packed *w, int m);

/// The level-2 fast path's activations when any4_fast_uses_tiles: from xq in natural order (m ×
/// cols_padded, as any4_quantize_activations wrote it), its scales xs and group sums gsum (m ×
/// groups), one buffer of any4_fast_tiles_bytes(w, m) bytes, passed to any4_lut_gemm_fast as xq
/// (which then ignores its xs and gsum). Its first byte gives the offset of the data (64-byte aligned
/// when written); then, for each tile of 16 activation rows (m padded with rows of 0 and scale 0), the
/// activations offset by 128: for each 4 columns c4, 64 bytes, row k's columns 4·c4..4·c4+3 at 4·k;
/// then per tile and group the 16 rows' scales, then likewise their group sums. When m % 16 is 4 or
/// less, those last rows are not in tiles but follow, as any4_fast_activations_wide has them (the
/// row kernel takes them: a tile costs as much whatever rows it holds).
void any4_fast_activations_tiles(const any4_packed *w, const int8_t *xq, const float *xs, const float *gsum, int m,
                                 int8_t *dst);

/// Offsets n int8 activations by 128 in place (x ^ 0x80: the unsigned bytes of x + 128), as the
/// level-2 int8 head reads them.
void any4_offset_activations(int8_t *x, size_t n);

/// Quantizes activations per group and computes group sums: xq = round(x / s) (to nearest even),
/// s = max|x| / 127 over each group; x, xq: m × cols_padded. With
/// sum_preserving, the codes that were rounded furthest are nudged by one until Σ xq is the
/// rounded Σ x / s (the lookup kernel needs it; see the definition). The AVX2 version (group sizes
/// that are multiples of 32) gives exactly the scalar version's codes and sums.
void any4_quantize_activations(const float *x, int m, int cols_padded, int group_size, int groups,
                               int8_t *xq, float *x_scale, float *group_sums, int sum_preserving, int use_avx2);

/// Int8 weights with one f32 scale per 32 columns (row-major, cols a multiple of 32), as the dense
/// kernel reads them with dtype 3: each weight is code × scale, exact in f32, so the product is the
/// one over the same weights decoded to f32.
typedef struct {
    const int8_t *codes;
    const float *scales;
} any4_q8_view;

/// Dense y = x · Wᵀ for W stored as f32 (dtype 0), f16 (1), bf16 (2) or an any4_q8_view (3),
/// rows × cols, row-major.
void any4_dense_gemm(const void *w, int dtype, int cols, const float *x, int m, float *y, int y_stride,
                     const float *bias, int row_begin, int row_end, int use_avx2);

/// Int8 weights with one f32 scale per 32 columns (w ≈ wq · ws), times activations quantized the
/// same way (any4_quantize_activations with group 32): y[k, r] = Σ_blocks ws·xs·Σ wq·xq.
/// cols must be a multiple of 32. For a bandwidth-bound decode step over a large dense layer.
/// simd: 0 scalar, 1 AVX2, 2 AVX-512 VNNI (xq then offset by any4_offset_activations).
void any4_q8_gemm(const int8_t *wq, const float *ws, int cols, const int8_t *xq, const float *xs, int m,
                  float *y, int y_stride, int row_begin, int row_end, int simd);

/// Quantizes rows of f32 weights to int8 with one scale per 32 columns (round to nearest).
void any4_q8_quantize_rows(const float *w, int cols, int8_t *wq, float *ws, int row_begin, int row_end);

/// One attention row: out[hd] = softmax(scale · q·K[j], j < n) · V, with K row j at k + j·k_stride and
/// V row j at v + j·v_stride; scratch holds n floats (the probabilities on return). The AVX2 version
/// takes head dims that are multiples of 8 up to 256 and hands others to the scalar one.
void any4_attend(const float *q, const float *k, int k_stride, const float *v, int v_stride, int n, int hd,
                 float scale, float *scratch, float *out, int use_avx2);

/// any4_attend over keys and values stored as f16 (strides in elements): the f16 KV cache.
void any4_attend_f16(const float *q, const uint16_t *k, int k_stride, const uint16_t *v, int v_stride, int n, int hd,
                     float scale, float *scratch, float *out, int use_avx2);

/// What any4_dequantize reads: a packed layer's codes and layout (`layout`: only codes, cols_padded,
/// block_cols, group_size, groups and super_blocks are read), and the values as the quantized matrix
/// held them (not the kernels' centred, folded or f16 copies).
typedef struct {
    const any4_packed *layout;
    int cols;                 // logical columns (≤ cols_padded)
    const float *table;       // table_size entries per row (table_stride = table_size), or one shared table (stride 0)
    int table_size;           // ≤ 16; a code at or past it reads 0
    int table_stride;
    const float *scales;      // rows × groups
    const float *zeros;       // rows × groups, or NULL (then +0 is added, as by QuantizedMatrix.dequantize)
    float tensor_scale;
} any4_dequant_args;

/// Rows [row_begin, row_end) as f32, cols floats per row from out[0]: (table[q] · scale + zero) ·
/// tensor_scale, a multiply, an add and a multiply each rounded to f32 (no fused multiply-add): bit
/// for bit QuantizedMatrix.dequantize. The AVX2 version gives the scalar one's bits.
void any4_dequantize(const any4_dequant_args *args, float *out, int row_begin, int row_end, int use_avx2);

/// STREAM-triad-like probe: a[i] = b[i] + s * c[i] over [begin, end).
void any4_triad(float *a, const float *b, const float *c, float s, size_t begin, size_t end);

#ifdef __cplusplus
}
#endif
#endif
