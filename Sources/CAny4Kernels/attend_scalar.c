// One attention row (softmax(scale · q·K) · V), scalar reference, over keys and values in f32 or f16.
#include "kernels_internal.h"

void any4_attend_scalar(const float *q, const void *k, int ks, const void *v, int vs, int n, int hd, float scale,
                        float *p, float *out, int kv_f16) {
    const int dtype = kv_f16 ? 1 : 0;
    float mx = -INFINITY;
    for (int j = 0; j < n; j++) {
        float d = 0;
        for (int i = 0; i < hd; i++) d += q[i] * dense_at(k, dtype, (size_t)j * ks + i);
        p[j] = d * scale;
        mx = p[j] > mx ? p[j] : mx;
    }
    float sum = 0;
    for (int j = 0; j < n; j++) { p[j] = expf(p[j] - mx); sum += p[j]; }
    const float inv = 1.0f / sum;
    for (int i = 0; i < hd; i++) out[i] = 0;
    for (int j = 0; j < n; j++) {
        p[j] *= inv;
        for (int i = 0; i < hd; i++) out[i] += p[j] * dense_at(v, dtype, (size_t)j * vs + i);
    }
}
