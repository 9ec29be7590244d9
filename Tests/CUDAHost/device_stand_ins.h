// Stand-ins for what NVRTC declares implicitly, so that clang's CUDA front end can check
// Sources/Any4GPU/any4_gemm.cu as device code on a machine without a CUDA toolkit
// (GPULayoutTests: clang++ -x cuda --cuda-device-only -nocudainc -fsyntax-only -include this).
// Clang's front end is not NVRTC's: a clean check here makes an NVRTC failure unlikely, not
// impossible. Not shipped.
#include "__clang_cuda_builtin_vars.h"
#define __global__ __attribute__((global))
#define __device__ __attribute__((device))
#define __forceinline__ __inline__ __attribute__((always_inline))
#define __launch_bounds__(...) __attribute__((launch_bounds(__VA_ARGS__)))
struct __attribute__((aligned(16))) uint4 { unsigned int x, y, z, w; };
struct __attribute__((aligned(8))) float2 { float x, y; };
__device__ inline float __shfl_sync(unsigned mask, float v, int src, int width = 32) {
    return __nvvm_shfl_sync_idx_f32(mask, v, src, ((32 - width) << 8) | 0x1f);
}
__device__ inline float __shfl_xor_sync(unsigned mask, float v, int lane, int width = 32) {
    return __nvvm_shfl_sync_bfly_f32(mask, v, lane, ((32 - width) << 8) | 0x1f);
}
__device__ inline float __uint_as_float(unsigned u) { return __builtin_bit_cast(float, u); }
__device__ inline float __fmaf_rn(float a, float b, float c) { return __nvvm_fma_rn_f(a, b, c); }
