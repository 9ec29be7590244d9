// One attention row (softmax(scale · q·K) · V), scalar reference.
#include "kernels_internal.h"

void any4_attend_scalar(const float *q, const float *k, int ks, const float *v, int vs, int n, int hd, float scale,
                        float *p, float *out) {
    float mx = -INFINITY;
    for (int j = 0; j < n; j++) {
        float d = 0;
        for (int i = 0; i < hd; i++) d += q[i] * k[(size_t)j * ks + i];
        p[j] = d * scale;
        mx = p[j] > mx ? p[j] : mx;
    }
    float sum = 0;
    for (int j = 0; j < n; j++) { p[j] = expf(p[j] - mx); sum += p[j]; }
    const float inv = 1.0f / sum;
    for (int i = 0; i < hd; i++) out[i] = 0;
    for (int j = 0; j < n; j++) {
        p[j] *= inv;
        for (int i = 0; i < hd; i++) out[i] += p[j] * v[(size_t)j * vs + i];
    }
}
