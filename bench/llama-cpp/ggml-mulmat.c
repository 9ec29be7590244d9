// Times ggml's CPU MUL_MAT y[n, m] = x[n, k]·W[m, k]ᵀ the way test-backend-ops' perf mode builds it
// (W of the given type, x and y f32; the CPU backend quantizes x to W's dot type inside the op),
// but with a chosen thread count (test-backend-ops uses half the cores) and, as `any4 bench` does,
// cycling through copies of W whose total exceeds --cycle-mib (so W streams from memory instead of
// staying in the last-level cache). --repack stores W in the CPU backend's repacking buffer type
// (the layout llama-bench's model loading uses for q4_0/iq4_nl/q4_K where the CPU has one).
//
//   ggml-mulmat TYPE M K N [--threads T] [--runs R] [--cycle-mib C] [--repack]
// prints one JSON object: type, m, k, n, threads, repack (the buffer type used), copies, runs,
// median_us, p10_us, p90_us (per product), weight_bytes.
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/// A Student-t(5)-like weight (deterministic), scaled as a trained layer's.
static float weight(uint64_t *s) {
    double acc = 0;
    for (int i = 0; i < 4; i++) {
        *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
        acc += (double)(*s >> 11) / 9007199254740992.0 - 0.5;
    }
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    double u = (double)(*s >> 11) / 9007199254740992.0 + 1e-12;
    return (float)(0.02 * acc * sqrt(3.0) / sqrt(fmax(0.2, -log(u))));
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s TYPE M K N [--threads T] [--runs R] [--cycle-mib C] [--repack]\n", argv[0]);
        return 2;
    }
    const char *type_name = argv[1];
    const int64_t m = atoll(argv[2]), k = atoll(argv[3]), n = atoll(argv[4]);
    int threads = 2, runs = 20, repack = 0;
    int64_t cycle_mib = 256;
    for (int i = 5; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--cycle-mib") && i + 1 < argc) cycle_mib = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--repack")) repack = 1;
        else {
            fprintf(stderr, "ggml-mulmat: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    enum ggml_type type = GGML_TYPE_COUNT;
    for (int t = 0; t < GGML_TYPE_COUNT; t++) {
        const char *name = ggml_type_name((enum ggml_type)t);
        if (name && !strcmp(name, type_name)) type = (enum ggml_type)t;
    }
    if (type == GGML_TYPE_COUNT || m <= 0 || k <= 0 || n <= 0 || threads <= 0 || runs <= 0) {
        fprintf(stderr, "ggml-mulmat: bad type or size (%s %lld %lld %lld)\n", type_name, (long long)m, (long long)k, (long long)n);
        return 2;
    }
    ggml_time_init();
    ggml_cpu_init();
    ggml_backend_t backend = ggml_backend_cpu_init();
    ggml_backend_cpu_set_n_threads(backend, threads);

    const size_t row_bytes = ggml_row_size(type, k);
    const size_t w_bytes = row_bytes * (size_t)m;
    int copies = (int)(((size_t)cycle_mib << 20) / w_bytes) + 1;
    if (copies > 64) copies = 64;

    // Weights: one context (its own buffer, possibly the repacking type), activations another.
    struct ggml_init_params wp = {ggml_tensor_overhead() * (copies + 4), NULL, true};
    struct ggml_context *wctx = ggml_init(wp);
    struct ggml_tensor **w = calloc((size_t)copies, sizeof *w);
    for (int c = 0; c < copies; c++) w[c] = ggml_new_tensor_2d(wctx, type, k, m);
    ggml_backend_buffer_type_t buft = ggml_backend_get_default_buffer_type(backend);
    const char *buft_name = "CPU";
    if (repack) {
        ggml_backend_dev_t dev = ggml_backend_get_device(backend);
        ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
        ggml_backend_dev_get_extra_bufts_t get = (ggml_backend_dev_get_extra_bufts_t)ggml_backend_reg_get_proc_address(reg, "ggml_backend_dev_get_extra_bufts");
        ggml_backend_buffer_type_t *extra = get ? get(dev) : NULL;
        // The first extra type that takes this op (the CPU backend lists its repacker first).
        for (; extra && *extra; extra++) {
            if (strstr(ggml_backend_buft_name(*extra), "REPACK")) {
                buft = *extra;
                buft_name = ggml_backend_buft_name(*extra);
                break;
            }
        }
    }
    ggml_backend_buffer_t wbuf = ggml_backend_alloc_ctx_tensors_from_buft(wctx, buft);
    if (!wbuf) {
        fprintf(stderr, "ggml-mulmat: cannot allocate %d copies of %zu bytes\n", copies, w_bytes);
        return 1;
    }
    ggml_backend_buffer_set_usage(wbuf, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    {
        float *f = malloc(sizeof(float) * (size_t)(m * k));
        uint64_t s = 0x5eed;
        for (int64_t i = 0; i < m * k; i++) f[i] = weight(&s);
        void *q = malloc(w_bytes);
        if (type == GGML_TYPE_F32) memcpy(q, f, w_bytes);
        else if (type == GGML_TYPE_F16) {
            for (int64_t i = 0; i < m * k; i++) ((ggml_fp16_t *)q)[i] = ggml_fp32_to_fp16(f[i]);
        } else {
            ggml_quantize_chunk(type, f, q, 0, m, k, NULL);
        }
        for (int c = 0; c < copies; c++) ggml_backend_tensor_set(w[c], q, 0, w_bytes);
        free(q);
        free(f);
    }

    // One product per copy in one graph; the output of each is its own tensor.
    struct ggml_init_params ap = {ggml_tensor_overhead() * (2 * copies + 4) + ggml_graph_overhead(), NULL, true};
    struct ggml_context *actx = ggml_init(ap);
    struct ggml_tensor *x = ggml_new_tensor_2d(actx, GGML_TYPE_F32, k, n);
    struct ggml_cgraph *gf = ggml_new_graph(actx);
    for (int c = 0; c < copies; c++) ggml_build_forward_expand(gf, ggml_mul_mat(actx, w[c], x));
    ggml_backend_buffer_t abuf = ggml_backend_alloc_ctx_tensors(actx, backend);
    {
        float *xv = malloc(sizeof(float) * (size_t)(n * k));
        uint64_t s = 0xacc;
        for (int64_t i = 0; i < n * k; i++) xv[i] = 50 * weight(&s);
        ggml_backend_tensor_set(x, xv, 0, sizeof(float) * (size_t)(n * k));
        free(xv);
    }
    if (ggml_backend_graph_compute(backend, gf) != GGML_STATUS_SUCCESS) {  // warm-up
        fprintf(stderr, "ggml-mulmat: graph compute failed\n");
        return 1;
    }
    int64_t *t = malloc(sizeof(int64_t) * (size_t)runs);
    for (int r = 0; r < runs; r++) {
        const int64_t t0 = ggml_time_us();
        ggml_backend_graph_compute(backend, gf);
        t[r] = ggml_time_us() - t0;
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_i64);
    const double per = 1.0 / copies;
    printf("{\"type\": \"%s\", \"m\": %lld, \"k\": %lld, \"n\": %lld, \"threads\": %d, \"buffer\": \"%s\", \"copies\": %d, "
           "\"runs\": %d, \"median_us\": %.2f, \"p10_us\": %.2f, \"p90_us\": %.2f, \"weight_bytes\": %zu}\n",
           type_name, (long long)m, (long long)k, (long long)n, threads, buft_name, copies, runs, t[runs / 2] * per,
           t[runs / 10] * per, t[(runs * 9) / 10] * per, w_bytes);
    free(t);
    ggml_backend_buffer_free(abuf);
    ggml_backend_buffer_free(wbuf);
    ggml_free(actx);
    ggml_free(wctx);
    free(w);
    ggml_backend_free(backend);
    return 0;
}
