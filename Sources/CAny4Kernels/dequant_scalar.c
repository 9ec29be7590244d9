// Dequantization of packed rows back to f32 (the engine's tiles for prompt-sized products, the
// checks of a loaded layer): the layout walk shared with the AVX2 version, and the scalar reference.
#include "kernels_internal.h"

void any4_dequant_scalar(const any4_dequant_args *a, float *out, int r0, int r1) {
    const any4_packed *w = a->layout;
    const int G = w->group_size, B = w->block_cols, h = B / 2, cols = a->cols;
    const int main_cols = w->super_blocks * 8 * G;
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = w->codes + (size_t)r * (w->cols_padded / 2);
        float t[16];
        dequant_row_table(a, r, t);
        const float *sr = a->scales + (size_t)r * w->groups;
        const float *zr = a->zeros ? a->zeros + (size_t)r * w->groups : NULL;
        float *o = out + (size_t)(r - r0) * cols;
        const float ts = a->tensor_scale;
        // Super-blocks: chunk k of group j is bytes 32k + 4j .. 32k + 4j + 3 (low nibbles: columns
        // 8k .. 8k + 3 of the group, high nibbles: 8k + 4 .. 8k + 7).
        for (int s = 0; s < w->super_blocks; s++) {
            const uint8_t *sb = row + (size_t)s * 4 * G;
            for (int j = 0; j < 8; j++) {
                const int g = s * 8 + j, c0 = g * G;
                const float sc = sr[g], z = zr ? zr[g] : 0.0f;
                for (int k = 0; k < G / 8; k++) {
                    const uint8_t *p = sb + 32 * k + 4 * j;
                    float v[8];
                    for (int i = 0; i < 4; i++) {
                        v[i] = dequant_one(t[p[i] & 0xF], sc, z, ts);
                        v[i + 4] = dequant_one(t[p[i] >> 4], sc, z, ts);
                    }
                    const int c = c0 + 8 * k, n = cols - c < 8 ? cols - c : 8;
                    for (int i = 0; i < n; i++) o[c + i] = v[i];
                }
            }
        }
        // Tail blocks of B columns: byte i holds column i (low nibble) and i + B/2 (high nibble).
        for (int c0 = main_cols; c0 < cols; c0 += B) {
            const uint8_t *p = row + main_cols / 2 + (size_t)(c0 - main_cols) / 2;
            const int g = c0 / G;
            const float sc = sr[g], z = zr ? zr[g] : 0.0f;
            for (int i = 0; i < h && c0 + i < cols; i++) o[c0 + i] = dequant_one(t[p[i] & 0xF], sc, z, ts);
            for (int i = 0; i < h && c0 + h + i < cols; i++) o[c0 + h + i] = dequant_one(t[p[i] >> 4], sc, z, ts);
        }
    }
}
