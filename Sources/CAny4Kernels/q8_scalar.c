// Int8 x int8 GEMM for the decode head (weights int8 with a scale per 32 columns): weight
// quantization and the scalar reference.
#include "kernels_internal.h"

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

void any4_q8_scalar(const int8_t *wq, const float *ws, int cols, const int8_t *xq, const float *xs, int m, float *y,
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
