// Activation quantization (int8 per group, optionally sum-preserving), scalar reference.
#include "kernels_internal.h"

/// Σ x over n values (n % 8 == 0) in eight interleaved lanes reduced as hsum256 does, so that the
/// scalar and AVX2 quantizers get the same float and hence the same codes.
static float lane_sum(const float *x, int n) {
    float l[8] = {0};
    for (int c = 0; c < n; c += 8) for (int i = 0; i < 8; i++) l[i] += x[c + i];
    return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
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
    if (preserve) preserve_sum(x, inv, n, xq, (int)lrintf(s * inv) - qsum);
    *scale = amax / 127.0f;
    *sum = s;
}
