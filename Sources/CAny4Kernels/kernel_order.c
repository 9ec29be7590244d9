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

// MARK: - The level-2 fast path's activation tiles (see any4_fast_activations_tiles)

size_t any4_fast_tiles_bytes(const any4_packed *w, int m) {
    const size_t nt = (size_t)tile_tiles(m), rest = (size_t)tile_rest(m);
    return 64 + nt * 16 * (size_t)w->cols_padded + 2 * nt * (size_t)w->groups * 16 * sizeof(float) + rest * w->cols_padded;
}

void any4_fast_activations_tiles(const any4_packed *w, const int8_t *xq, const float *xs, const float *gsum, int m,
                                 int8_t *dst) {
    const int cp = w->cols_padded, groups = w->groups, units = cp / 4, rest = tile_rest(m);
    const size_t nt = (size_t)tile_tiles(m);
    const int mt = m - rest;  // rows in tiles
    // Data at a 64-byte boundary, its offset (1..64) in the first byte: a copy of the buffer at
    // another alignment still reads right (only slower).
    const int off = 64 - (int)((uintptr_t)dst & 63);
    dst[0] = (int8_t)off;
    uint8_t *x = (uint8_t *)dst + off;
    float *s = (float *)(x + nt * 16 * (size_t)cp), *z = s + nt * (size_t)groups * 16;
#if ANY4_X86
    static int level = -1;  // cpuid costs microseconds (more in a VM): read once (a benign race)
    if (level < 0) level = any4_cpu_simd_level();
    if (level >= 2) any4_fast_tiles_x_avx512(xq, mt, (int)nt, cp, x);
    else
#endif
    for (size_t t = 0; t < nt; t++) {
        uint8_t *xt = x + t * 16 * (size_t)cp;
        for (int k = 0; k < 16; k++) {
            const size_t row = t * 16 + (size_t)k;
            for (int u = 0; u < units; u++) {
                uint32_t v = 0;
                if (row < (size_t)mt) memcpy(&v, (const uint8_t *)xq + row * cp + 4 * u, 4);
                v ^= 0x80808080u;
                memcpy(xt + 64 * (size_t)u + 4 * k, &v, 4);
            }
        }
    }
    for (size_t t = 0; t < nt; t++)
        for (int k = 0; k < 16; k++) {
            const size_t row = t * 16 + (size_t)k;
            for (int g = 0; g < groups; g++) {
                s[(t * groups + g) * 16 + k] = row < (size_t)mt ? xs[row * groups + g] : 0;
                z[(t * groups + g) * 16 + k] = row < (size_t)mt ? gsum[row * groups + g] : 0;
            }
        }
    // The rest rows as the row kernel reads them (any4_fast_activations_wide of the kernel order).
    if (rest > 0) {
        int8_t *r = (int8_t *)(z + nt * (size_t)groups * 16);
        const int8_t *src = xq + (size_t)mt * cp;
        if (w->super_blocks > 0) any4_kernel_order(w, src, r, rest, 1);
        else memcpy(r, src, (size_t)rest * cp);
        any4_fast_activations_wide(w, r, rest);
    }
}
