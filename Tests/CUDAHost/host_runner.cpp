// Runs the kernels of Sources/Any4GPU/any4_gemm.cu on the CPU, so that the tests can execute
// the kernel source itself on a machine without a GPU (GPULayoutTests).
//
// Every CUDA thread of a block is a std::thread; the warp primitives (__shfl_sync,
// __shfl_xor_sync) exchange values through a per-warp barrier, so each lane sees exactly the
// values the hardware would give it. Blocks run one after another.
//
//   clang++ -std=c++17 -O1 -pthread -DANY4_HOST_CHECK -I Sources/Any4GPU host_runner.cpp -o runner
//   runner KERNEL BLOCKS DIR     (DIR holds the arguments as files, see main; writes DIR/y)
//
// Not shipped: a test tool.

#include <condition_variable>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

// MARK: - What NVRTC provides implicitly, for the host

struct dim3 { unsigned x = 0, y = 0, z = 0; };
static thread_local dim3 threadIdx, blockIdx;
struct alignas(16) uint4 { unsigned int x, y, z, w; };
struct alignas(8) float2 { float x, y; };

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)

static float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
static float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }

static float any4_host_f16_to_f32(unsigned short h) {
    const unsigned sign = (h >> 15) & 1, exponent = (h >> 10) & 31, mantissa = h & 1023;
    float v;
    if (exponent == 0) v = std::ldexp((float)mantissa, -24);
    else if (exponent == 31) v = mantissa ? NAN : INFINITY;
    else v = std::ldexp((float)(mantissa | 1024), (int)exponent - 25);
    return sign ? -v : v;
}

// One warp's exchange: every lane writes its value, all wait, each reads its source, all wait.
struct Warp {
    std::mutex mutex;
    std::condition_variable cv;
    int arrived = 0;
    unsigned long generation = 0;
    float slots[32];

    void wait() {
        std::unique_lock<std::mutex> lock(mutex);
        const unsigned long g = generation;
        if (++arrived == 32) {
            arrived = 0;
            ++generation;
            cv.notify_all();
        } else {
            cv.wait(lock, [&] { return generation != g; });
        }
    }
};
static thread_local Warp* current_warp;

static float exchange(float v, int source_lane) {
    Warp& w = *current_warp;
    w.slots[threadIdx.x & 31] = v;
    w.wait();
    const float r = w.slots[source_lane & 31];
    w.wait();
    return r;
}

static float __shfl_sync(unsigned, float v, int src) { return exchange(v, src); }
static float __shfl_xor_sync(unsigned, float v, int mask) { return exchange(v, (int)(threadIdx.x & 31) ^ mask); }

#include "any4_gemm.cu"

// MARK: - Driver

static std::vector<char> read_file(const std::string& path) {
    std::vector<char> data;
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) { std::fprintf(stderr, "cannot open %s\n", path.c_str()); std::exit(2); }
    char buffer[1 << 16];
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof buffer, f)) > 0) data.insert(data.end(), buffer, buffer + n);
    std::fclose(f);
    return data;
}

// A file's bytes in 16-byte-aligned memory (the kernels read uint4).
static void* aligned_copy(const std::vector<char>& bytes) {
    void* p = std::aligned_alloc(16, (bytes.size() + 15) / 16 * 16 + 16);
    std::memcpy(p, bytes.data(), bytes.size());
    return p;
}

static std::vector<int> ints(const std::string& path) {
    std::vector<int> out;
    FILE* f = std::fopen(path.c_str(), "r");
    if (!f) { std::fprintf(stderr, "cannot open %s\n", path.c_str()); std::exit(2); }
    int v;
    while (std::fscanf(f, "%d", &v) == 1) out.push_back(v);
    std::fclose(f);
    return out;
}

typedef void (*LutKernel)(const u32*, const float*, int, const float2*, int, int, const u16*, float*, int, int, int);
typedef void (*DenseKernel)(const u16*, const u16*, float*, int, int, int);

int main(int argc, char** argv) {
    if (argc != 4) { std::fprintf(stderr, "usage: runner KERNEL BLOCKS DIR\n"); return 2; }
    const std::string kernel = argv[1], dir = argv[3];
    const int blocks = std::atoi(argv[2]);
    const std::map<std::string, LutKernel> lut = {
        {"any4_lut_f16_m1", any4_lut_f16_m1}, {"any4_lut_f16_m2", any4_lut_f16_m2}, {"any4_lut_f16_m4", any4_lut_f16_m4},
        {"any4_lut_f16_m8", any4_lut_f16_m8}, {"any4_lut_f16_m16", any4_lut_f16_m16}, {"any4_lut_bf16_m1", any4_lut_bf16_m1},
        {"any4_lut_bf16_m2", any4_lut_bf16_m2}, {"any4_lut_bf16_m4", any4_lut_bf16_m4}, {"any4_lut_bf16_m8", any4_lut_bf16_m8},
        {"any4_lut_bf16_m16", any4_lut_bf16_m16},
    };
    const std::map<std::string, DenseKernel> dense = {
        {"any4_dense_f16_m1", any4_dense_f16_m1}, {"any4_dense_f16_m2", any4_dense_f16_m2}, {"any4_dense_f16_m4", any4_dense_f16_m4},
        {"any4_dense_f16_m8", any4_dense_f16_m8}, {"any4_dense_f16_m16", any4_dense_f16_m16}, {"any4_dense_bf16_m1", any4_dense_bf16_m1},
        {"any4_dense_bf16_m2", any4_dense_bf16_m2}, {"any4_dense_bf16_m4", any4_dense_bf16_m4}, {"any4_dense_bf16_m8", any4_dense_bf16_m8},
        {"any4_dense_bf16_m16", any4_dense_bf16_m16},
    };
    // params: lut: lut_stride gpad group_size rows k_pad m; dense: rows k_pad m
    const std::vector<int> p = ints(dir + "/params");
    const void* x = aligned_copy(read_file(dir + "/x"));
    int rows = 0, m = 0;
    const void *codes = nullptr, *table = nullptr, *sz = nullptr, *w = nullptr;
    if (lut.count(kernel)) {
        codes = aligned_copy(read_file(dir + "/codes"));
        table = aligned_copy(read_file(dir + "/table"));
        sz = aligned_copy(read_file(dir + "/sz"));
        rows = p.at(3);
        m = p.at(5);
    } else if (dense.count(kernel)) {
        w = aligned_copy(read_file(dir + "/w"));
        rows = p.at(0);
        m = p.at(2);
    } else {
        std::fprintf(stderr, "unknown kernel %s\n", kernel.c_str());
        return 2;
    }
    std::vector<float> y((size_t)m * rows, NAN);
    for (int b = 0; b < blocks; ++b) {
        Warp warps[WARPS_PER_BLOCK];
        std::vector<std::thread> threads;
        for (int t = 0; t < WARPS_PER_BLOCK * 32; ++t) {
            threads.emplace_back([&, t] {
                threadIdx.x = t;
                blockIdx.x = b;
                current_warp = &warps[t / 32];
                if (codes) {
                    lut.at(kernel)((const u32*)codes, (const float*)table, p[0], (const float2*)sz, p[1], p[2], (const u16*)x,
                                   y.data(), p[3], p[4], p[5]);
                } else {
                    dense.at(kernel)((const u16*)w, (const u16*)x, y.data(), p[0], p[1], p[2]);
                }
            });
        }
        for (auto& t : threads) t.join();
    }
    FILE* out = std::fopen((dir + "/y").c_str(), "wb");
    std::fwrite(y.data(), 4, y.size(), out);
    std::fclose(out);
    return 0;
}
