// Lookup GEMM, scalar references of the exact and fast paths (the twins the AVX2 versions are held to).
#include "kernels_internal.h"

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

void any4_lut_exact_scalar(const any4_packed *w, const float *x, const float *gsum, int m, float *y, int ys,
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

void any4_lut_fast_scalar(const any4_packed *w, const int8_t *xq, const float *xs, const float *gsum, int m, float *y,
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
