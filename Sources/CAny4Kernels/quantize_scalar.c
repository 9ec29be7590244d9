// Activation quantization (int8 per group, optionally sum-preserving), scalar reference.
#include "kernels_internal.h"

/// Σ x over n values (n % 8 == 0) in eight interleaved lanes reduced as hsum256 does, so that the
/// scalar and AVX2 quantizers get the same float and hence the same codes.
static float lane_sum(const float *x, int n) {
    float l[8] = {0};
    for (int c = 0; c < n; c += 8) for (int i = 0; i < 8; i++) l[i] += x[c + i];
    return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

/// The sum-preserving step: moves the codes that were rounded furthest (first index on ties) by
/// one until Σ xq = round(Σ x / s), so that Σ xq·s is within s/2 of Σ x. Per-group weight means
/// (any table whose values do not average to zero over a row's codes) make the product sensitive to
/// the common-mode part of the rounding error; this removes it. xf: x / s (as the codes saw it).
void any4_preserve_sum(const float *x, float inv, int n, int8_t *xq, int residual) {
    while (residual != 0) {
        const int dir = residual > 0 ? 1 : -1;
        int best = -1;
        float bestGap = -1;
        for (int c = 0; c < n; c++) {
            const float gap = (x[c] * inv - xq[c]) * dir;  // how far below (above) the value the code is
            if (gap > bestGap && xq[c] + dir <= 127 && xq[c] + dir >= -127) { bestGap = gap; best = c; }
        }
        if (best < 0) break;
        xq[best] = (int8_t)(xq[best] + dir);
        residual -= dir;
    }
}

/// Activations of one group to int8, the portable version.
void any4_quantize_group_scalar(const float *x, int n, int8_t *xq, float *scale, float *sum, int preserve) {
    float amax = 0;
    for (int c = 0; c < n; c++) amax = fabsf(x[c]) > amax ? fabsf(x[c]) : amax;
    float s = 0;
    if (n % 8 == 0) s = lane_sum(x, n);
    else for (int c = 0; c < n; c++) s += x[c];
    const float inv = amax > 0 ? 127.0f / amax : 0.0f;
    int qsum = 0;
    for (int c = 0; c < n; c++) {
        xq[c] = (int8_t)lrintf(x[c] * inv);
        qsum += xq[c];
    }
    if (preserve) any4_preserve_sum(x, inv, n, xq, (int)lrintf(s * inv) - qsum);
    *scale = amax / 127.0f;
    *sum = s;
}
