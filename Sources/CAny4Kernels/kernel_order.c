// The activations' kernel order for the packed layout (see include/any4_kernels.h); no SIMD variant.
#include "kernels_internal.h"

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
