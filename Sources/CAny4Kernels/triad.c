// The bandwidth probe's loop (BandwidthProbe.swift): a STREAM-triad-like a = b + s·c.
#include "kernels_internal.h"

void any4_triad(float *a, const float *b, const float *c, float s, size_t begin, size_t end) {
    for (size_t i = begin; i < end; i++) a[i] = b[i] + s * c[i];
}
