// any4_gemm.cu: the GPU lookup GEMM for 4-bit weights with a 16-entry table per row, and a
// dense f16/bf16 baseline of our own, for y[m, rows] = x[m, cols] · Ŵᵀ with m = 1…16.
//
// Built at run time by NVRTC (GPUBackend.swift: --gpu-architecture=sm_XY, cubin cached); this
// file is embedded in the binary by scripts/embed-cuda-source.sh. No includes, no host code:
// f16 is converted with one PTX instruction, bf16 with a shift. Tests/CUDAHost/host_runner.cpp
// compiles this very file for the CPU (ANY4_HOST_CHECK, one thread per CUDA thread, shuffles
// through a barrier) so that the tests can run the kernels' own code on a machine without a GPU.
//
// Entry points (all extern "C", 128 threads = 4 warps a block, one block per 8 rows):
//   any4_lut_{f16,bf16}_m{1,2,4,8,16}    lookup GEMM, activations f16 or bf16
//   any4_dense_{f16,bf16}_m{1,2,4,8,16}  dense GEMM, weights and activations f16 or bf16
// The suffix m is the largest batch the entry point handles (the host picks the smallest that
// fits); y is f32, accumulation is f32 (explicit fused multiply-adds, then plain f32 adds for
// the sums of x and the warp reduction: no contraction can change the order of rounding).
//
// The lookup layout, built by GPULookupLayout.swift and read back by GPUEmulation.swift, which
// runs exactly this arithmetic in Swift so that the tests hold it to the CPU kernel:
//   k_pad  = cols rounded up to 256; rows are padded to an even count (2 rows a warp).
//   codes  u32 [rows][k_pad / 8]. A row is cut into slices of 256 columns. In slice s, lane l
//          owns one word: columns s*256 + l*8 + i, code in bits 4i..4i+3. Four slices make a
//          chunk of 1024 columns, stored lane-major: word c*128 + l*4 + j is slice 4c + j, so
//          lane l reads its four words of chunk c as one uint4 and a warp reads 512 contiguous
//          bytes. Slices after the last whole chunk follow, slice-major: word chunks*128 + t*32 + l.
//   lut    f32 [rows][16] (lut_stride 16), or one shared [16] (lut_stride 0). Lane l keeps
//          entry l % 16 in a register; a code q is looked up with __shfl_sync(…, q): lanes q
//          and q + 16 both hold it, so the shuffle index needs no mask.
//   sz     f32 pairs [rows][gpad]: (scale, zero) of group g = column / group_size, tensor scale
//          folded in; pairs past the row's groups are (0, 0).
//   x      [m][k_pad] f16 or bf16, zero past cols.
// Per word (8 columns) and batch row k the lane computes p = Σ T[q_i]·x_i and xs = Σ x_i, then
// acc = fma(scale, p, acc); acc = fma(zero, xs, acc): the group algebra of the CPU kernel. The
// 32 lanes' sums are reduced with __shfl_xor_sync (16, 8, 4, 2, 1) and lane 0 stores.

#define WARPS_PER_BLOCK 4
#define ROWS_PER_WARP 2
#define FULL_MASK 0xffffffffu

typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned long long u64;

// MARK: - Conversions

__device__ __forceinline__ float f16_to_f32(u16 h) {
#ifdef ANY4_HOST_CHECK
    return any4_host_f16_to_f32(h);  // Tests/CUDAHost/host_runner.cpp runs this file on the CPU
#else
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
#endif
}

// Eight activations (one uint4) to f32: element 2i is the low half of word i.
template <bool BF16>
__device__ __forceinline__ void unpack8(const uint4 v, float out[8]) {
    const u32 w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        if (BF16) {
            out[2 * i] = __uint_as_float(w[i] << 16);
            out[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
        } else {
            out[2 * i] = f16_to_f32((u16)(w[i] & 0xffffu));
            out[2 * i + 1] = f16_to_f32((u16)(w[i] >> 16));
        }
    }
}

__device__ __forceinline__ u32 component(const uint4 v, int j) {
    return j == 0 ? v.x : (j == 1 ? v.y : (j == 2 ? v.z : v.w));
}

// Sums each acc[r][k] over the warp; lane 0 stores the rows that exist.
template <int MT>
__device__ __forceinline__ void reduce_store(float acc[ROWS_PER_WARP][MT], float* __restrict__ y,
                                             int rows, int row0, int m, int lane) {
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; ++r) {
#pragma unroll
        for (int k = 0; k < MT; ++k) {
            if (k < m) {
                float v = acc[r][k];
                v += __shfl_xor_sync(FULL_MASK, v, 16);
                v += __shfl_xor_sync(FULL_MASK, v, 8);
                v += __shfl_xor_sync(FULL_MASK, v, 4);
                v += __shfl_xor_sync(FULL_MASK, v, 2);
                v += __shfl_xor_sync(FULL_MASK, v, 1);
                if (lane == 0 && row0 + r < rows) y[(u64)k * rows + row0 + r] = v;
            }
        }
    }
}

// MARK: - Lookup GEMM

// One slice word of each of the warp's rows: 8 codes per lane, at columns col0 … col0 + 7.
template <int MT, bool BF16>
__device__ __forceinline__ void lut_word(const u32 word[ROWS_PER_WARP], const float2 sz[ROWS_PER_WARP],
                                         const float table[ROWS_PER_WARP], const u16* __restrict__ x,
                                         int k_pad, int col0, int m, float acc[ROWS_PER_WARP][MT]) {
    float t[ROWS_PER_WARP][8];
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; ++r) {
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            // The low 5 bits select the lane: code q, or q + 16 when the next code is odd; both
            // lanes hold entry q. (Only the first shift can leave bit 31 set: mask it there.)
            const int src = i == 0 ? (int)(word[r] & 31u) : (int)(word[r] >> (4 * i));
            t[r][i] = __shfl_sync(FULL_MASK, table[r], src);
        }
    }
#pragma unroll
    for (int k = 0; k < MT; ++k) {
        if (k < m) {
            const uint4 xv = *reinterpret_cast<const uint4*>(x + (u64)k * k_pad + col0);
            float xf[8];
            unpack8<BF16>(xv, xf);
            float xs = 0.0f;
#pragma unroll
            for (int i = 0; i < 8; ++i) xs += xf[i];
#pragma unroll
            for (int r = 0; r < ROWS_PER_WARP; ++r) {
                float p = 0.0f;
#pragma unroll
                for (int i = 0; i < 8; ++i) p = __fmaf_rn(t[r][i], xf[i], p);
                acc[r][k] = __fmaf_rn(sz[r].x, p, acc[r][k]);
                acc[r][k] = __fmaf_rn(sz[r].y, xs, acc[r][k]);
            }
        }
    }
}

template <int MT, bool BF16>
__device__ __forceinline__ void lut_gemm(const u32* __restrict__ codes, const float* __restrict__ lut, int lut_stride,
                                         const float2* __restrict__ sz, int gpad, int group_size,
                                         const u16* __restrict__ x, float* __restrict__ y, int rows, int k_pad, int m) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int row0 = (blockIdx.x * WARPS_PER_BLOCK + warp) * ROWS_PER_WARP;
    if (row0 >= rows) return;  // the whole warp leaves together

    const int words_per_row = k_pad >> 3;
    const int chunks = k_pad >> 10;
    const int tail = (k_pad >> 8) & 3;
    float table[ROWS_PER_WARP];
    const u32* row_codes[ROWS_PER_WARP];
    const float2* row_sz[ROWS_PER_WARP];
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; ++r) {
        table[r] = lut[(u64)(row0 + r) * lut_stride + (lane & 15)];
        row_codes[r] = codes + (u64)(row0 + r) * words_per_row;
        row_sz[r] = sz + (u64)(row0 + r) * gpad;
    }
    float acc[ROWS_PER_WARP][MT];
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; ++r) {
#pragma unroll
        for (int k = 0; k < MT; ++k) acc[r][k] = 0.0f;
    }

    // Whole chunks, two at a time: each lane has four 16-byte code loads (and their scales) in
    // flight before it computes. (An absent second chunk is zero-filled and never used.)
    for (int c = 0; c < chunks; c += 2) {
        uint4 v[2][ROWS_PER_WARP];
        float2 s[2][4][ROWS_PER_WARP];
#pragma unroll
        for (int u = 0; u < 2; ++u) {
            if (c + u < chunks) {
#pragma unroll
                for (int r = 0; r < ROWS_PER_WARP; ++r) v[u][r] = reinterpret_cast<const uint4*>(row_codes[r])[(u64)(c + u) * 32 + lane];
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    const int g = (((c + u) * 4 + j) * 256 + lane * 8) / group_size;
#pragma unroll
                    for (int r = 0; r < ROWS_PER_WARP; ++r) s[u][j][r] = row_sz[r][g];
                }
            } else {
#pragma unroll
                for (int r = 0; r < ROWS_PER_WARP; ++r) {
                    v[u][r].x = v[u][r].y = v[u][r].z = v[u][r].w = 0u;
#pragma unroll
                    for (int j = 0; j < 4; ++j) s[u][j][r].x = s[u][j][r].y = 0.0f;
                }
            }
        }
#pragma unroll
        for (int u = 0; u < 2; ++u) {
            if (c + u < chunks) {
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    u32 w[ROWS_PER_WARP];
#pragma unroll
                    for (int r = 0; r < ROWS_PER_WARP; ++r) w[r] = component(v[u][r], j);
                    lut_word<MT, BF16>(w, s[u][j], table, x, k_pad, ((c + u) * 4 + j) * 256 + lane * 8, m, acc);
                }
            }
        }
    }
    // The slices after the last whole chunk, one 4-byte word per lane each.
    for (int t = 0; t < tail; ++t) {
        const int col0 = (chunks * 4 + t) * 256 + lane * 8;
        u32 w[ROWS_PER_WARP];
        float2 s[ROWS_PER_WARP];
#pragma unroll
        for (int r = 0; r < ROWS_PER_WARP; ++r) {
            w[r] = row_codes[r][(u64)chunks * 128 + t * 32 + lane];
            s[r] = row_sz[r][col0 / group_size];
        }
        lut_word<MT, BF16>(w, s, table, x, k_pad, col0, m, acc);
    }
    reduce_store<MT>(acc, y, rows, row0, m, lane);
}

// MARK: - Dense GEMM (the baseline)

// Weights [rows padded to even][k_pad] in the activations' type; lane l reads columns
// s*256 + l*8 … + 7 of slice s as one uint4.
template <int MT, bool BF16>
__device__ __forceinline__ void dense_gemm(const u16* __restrict__ w, const u16* __restrict__ x, float* __restrict__ y,
                                           int rows, int k_pad, int m) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int row0 = (blockIdx.x * WARPS_PER_BLOCK + warp) * ROWS_PER_WARP;
    if (row0 >= rows) return;

    const int slices = k_pad >> 8;
    const uint4* row_w[ROWS_PER_WARP];
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; ++r) row_w[r] = reinterpret_cast<const uint4*>(w + (u64)(row0 + r) * k_pad);
    float acc[ROWS_PER_WARP][MT];
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; ++r) {
#pragma unroll
        for (int k = 0; k < MT; ++k) acc[r][k] = 0.0f;
    }
    for (int s = 0; s < slices; s += 4) {
        uint4 v[4][ROWS_PER_WARP];
#pragma unroll
        for (int u = 0; u < 4; ++u) {
#pragma unroll
            for (int r = 0; r < ROWS_PER_WARP; ++r) {
                if (s + u < slices) v[u][r] = row_w[r][(u64)(s + u) * 32 + lane];
                else v[u][r].x = v[u][r].y = v[u][r].z = v[u][r].w = 0u;
            }
        }
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            if (s + u < slices) {
                const int col0 = (s + u) * 256 + lane * 8;
                float wf[ROWS_PER_WARP][8];
#pragma unroll
                for (int r = 0; r < ROWS_PER_WARP; ++r) unpack8<BF16>(v[u][r], wf[r]);
#pragma unroll
                for (int k = 0; k < MT; ++k) {
                    if (k < m) {
                        float xf[8];
                        unpack8<BF16>(*reinterpret_cast<const uint4*>(x + (u64)k * k_pad + col0), xf);
#pragma unroll
                        for (int r = 0; r < ROWS_PER_WARP; ++r) {
#pragma unroll
                            for (int i = 0; i < 8; ++i) acc[r][k] = __fmaf_rn(wf[r][i], xf[i], acc[r][k]);
                        }
                    }
                }
            }
        }
    }
    reduce_store<MT>(acc, y, rows, row0, m, lane);
}

// MARK: - Entry points

#define ANY4_LUT_ENTRY(NAME, MT, BF16)                                                                        \
    extern "C" __global__ void __launch_bounds__(WARPS_PER_BLOCK * 32)                                        \
        NAME(const u32* __restrict__ codes, const float* __restrict__ lut, int lut_stride,                    \
             const float2* __restrict__ sz, int gpad, int group_size, const u16* __restrict__ x,              \
             float* __restrict__ y, int rows, int k_pad, int m) {                                             \
        lut_gemm<MT, BF16>(codes, lut, lut_stride, sz, gpad, group_size, x, y, rows, k_pad, m);               \
    }

#define ANY4_DENSE_ENTRY(NAME, MT, BF16)                                                                      \
    extern "C" __global__ void __launch_bounds__(WARPS_PER_BLOCK * 32)                                        \
        NAME(const u16* __restrict__ w, const u16* __restrict__ x, float* __restrict__ y, int rows, int k_pad, \
             int m) {                                                                                         \
        dense_gemm<MT, BF16>(w, x, y, rows, k_pad, m);                                                        \
    }

ANY4_LUT_ENTRY(any4_lut_f16_m1, 1, false)
ANY4_LUT_ENTRY(any4_lut_f16_m2, 2, false)
ANY4_LUT_ENTRY(any4_lut_f16_m4, 4, false)
ANY4_LUT_ENTRY(any4_lut_f16_m8, 8, false)
ANY4_LUT_ENTRY(any4_lut_f16_m16, 16, false)
ANY4_LUT_ENTRY(any4_lut_bf16_m1, 1, true)
ANY4_LUT_ENTRY(any4_lut_bf16_m2, 2, true)
ANY4_LUT_ENTRY(any4_lut_bf16_m4, 4, true)
ANY4_LUT_ENTRY(any4_lut_bf16_m8, 8, true)
ANY4_LUT_ENTRY(any4_lut_bf16_m16, 16, true)

ANY4_DENSE_ENTRY(any4_dense_f16_m1, 1, false)
ANY4_DENSE_ENTRY(any4_dense_f16_m2, 2, false)
ANY4_DENSE_ENTRY(any4_dense_f16_m4, 4, false)
ANY4_DENSE_ENTRY(any4_dense_f16_m8, 8, false)
ANY4_DENSE_ENTRY(any4_dense_f16_m16, 16, false)
ANY4_DENSE_ENTRY(any4_dense_bf16_m1, 1, true)
ANY4_DENSE_ENTRY(any4_dense_bf16_m2, 2, true)
ANY4_DENSE_ENTRY(any4_dense_bf16_m4, 4, true)
ANY4_DENSE_ENTRY(any4_dense_bf16_m8, 8, true)
ANY4_DENSE_ENTRY(any4_dense_bf16_m16, 16, true)
