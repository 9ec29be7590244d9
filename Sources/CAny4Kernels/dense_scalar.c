// Dense GEMM (f32, f16 or bf16 weights), scalar reference.
#include "kernels_internal.h"

void any4_dense_scalar(const void *w, int dtype, int cols, const float *x, int m, float *y, int ys, const float *bias,
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
