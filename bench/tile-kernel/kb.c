// Harness: the old AVX-512 fast path (d1f4157) against the new one (tiles for m >= 16), 2 threads,
// cycled weight copies, interleaved repetitions; accuracy against level 1 (AVX2) and an f64
// reference of the same int8 computation.
// Usage: ./kbc ROWS COLS M [G] [RUNS] [REPS] [ZEROS]
#include "any4_kernels.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
void old_any4_lut_fast_avx512(const any4_packed *w, const uint8_t *xu, const float *xs, const float *gsum, int m, float *y,
                              int ys, const float *bias, int r0, int r1);
static double now() { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
typedef struct { uint8_t *codes; int8_t *ti8; float *tsc; uint16_t *sc, *zf; float *fac; any4_packed p; } W;
static uint16_t f2h(void) { return (uint16_t)(0x3c00 + (rand() % 200)); }
static uint16_t zh(void) { return (uint16_t)((rand() & 1 ? 0x8000 : 0) | (0x2000 + rand() % 0x1000)); }
static W make(int rows, int cols, int G, int zeros) {
    W w; int B = G % 64 == 0 ? 64 : 32; int cp = (cols + B - 1) / B * B; int groups = (cp + G - 1) / G; int sb = groups / 8;
    size_t bytes = (size_t)rows * cp / 2;
    w.codes = aligned_alloc(2 << 20, (bytes + (2 << 20)) & ~((size_t)(2 << 20) - 1));
    for (size_t i = 0; i < bytes; i++) w.codes[i] = rand();
    w.ti8 = malloc(rows * 16); for (int i = 0; i < rows * 16; i++) w.ti8[i] = (rand() % 255) - 127;
    w.tsc = malloc(rows * 4); for (int i = 0; i < rows; i++) w.tsc[i] = 0.01f;
    w.sc = malloc((size_t)rows * groups * 2); for (size_t i = 0; i < (size_t)rows * groups; i++) w.sc[i] = f2h();
    w.zf = malloc((size_t)rows * groups * 2); for (size_t i = 0; i < (size_t)rows * groups; i++) w.zf[i] = zh();
    w.fac = malloc(rows * 8); for (int i = 0; i < 2 * rows; i++) w.fac[i] = 1;
    any4_packed p = {0}; p.codes = w.codes; p.table_stride = 16; p.table_i8 = w.ti8; p.table_i8_scale = w.tsc; p.table_i8_scale_stride = 1;
    p.scales_f16 = w.sc; p.zeros_f16 = zeros ? w.zf : NULL; p.f16_factors = w.fac; p.rows = rows; p.cols_padded = cp; p.block_cols = B;
    p.group_size = G; p.groups = groups; p.super_blocks = sb;
    w.p = p; return w;
}
static int code_at(const any4_packed *w, const uint8_t *row, int c) {
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
static float h2f(uint16_t h) { _Float16 v; memcpy(&v, &h, 2); return (float)v; }
int main(int argc, char **argv) {
    int rows = atoi(argv[1]), cols = atoi(argv[2]), m = atoi(argv[3]), G = argc > 4 ? atoi(argv[4]) : 128;
    int runs = argc > 5 ? atoi(argv[5]) : 30, reps = argc > 6 ? atoi(argv[6]) : 3, zeros = argc > 7 ? atoi(argv[7]) : 1;
    srand(1);
    W w0 = make(rows, cols, G, zeros); int cp = w0.p.cols_padded, groups = w0.p.groups;
    size_t bytes = (size_t)rows * cp / 2; int copies = bytes > 128 << 20 ? 1 : (int)((128 << 20) / bytes) + 1; if (copies > 16) copies = 16;
    W *ws = malloc(sizeof(W) * copies); ws[0] = w0;
    for (int c = 1; c < copies; c++) {
        ws[c] = w0; ws[c].codes = aligned_alloc(2 << 20, (bytes + (2 << 20)) & ~((size_t)(2 << 20) - 1));
        memcpy(ws[c].codes, w0.codes, bytes); ws[c].p.codes = ws[c].codes;
    }
    float *x = malloc((size_t)m * cp * 4);
    for (int k = 0; k < m; k++) for (int c = 0; c < cp; c++) x[(size_t)k * cp + c] = c < cols ? (rand() / (float)RAND_MAX - 0.5f) : 0;
    int8_t *xq = malloc((size_t)m * cp), *xo = malloc((size_t)m * cp), *xw = malloc((size_t)m * cp);
    float *xs = malloc((size_t)m * groups * 4), *gs = malloc((size_t)m * groups * 4);
    any4_quantize_activations(x, m, cp, G, groups, xq, xs, gs, 1, 1);
    if (w0.p.super_blocks > 0) any4_kernel_order(&w0.p, xq, xo, m, 1); else memcpy(xo, xq, (size_t)m * cp);
    memcpy(xw, xo, (size_t)m * cp); any4_fast_activations_wide(&w0.p, xw, m);
    const int tiles = any4_fast_uses_tiles(&w0.p, m, 2);
    int8_t *xt = malloc(any4_fast_tiles_bytes(&w0.p, m) + 1) + 1;  // deliberately not aligned
    double tprep = 1e9;
    for (int i = 0; i < 5; i++) {
        double t0 = now();
        if (tiles) any4_fast_activations_tiles(&w0.p, xq, xs, gs, m, xt);
        double t = now() - t0; if (t < tprep) tprep = t;
    }
    if (tiles) {  // the tile bytes against their definition
        const int rest = m % 16 <= 4 ? m % 16 : 0, mt = m - rest;
        const uint8_t *xb = (const uint8_t *)xt + (uint8_t)xt[0]; size_t wrong = 0; int ntl = (mt + 15) / 16;
        for (int t = 0; t < ntl; t++) for (int u = 0; u < cp / 4; u++) for (int k = 0; k < 16; k++) for (int b = 0; b < 4; b++) {
            int row = 16 * t + k; uint8_t want = row < mt ? (uint8_t)(xq[(size_t)row * cp + 4 * u + b] ^ 0x80) : 0x80;
            if (xb[((size_t)t * (cp / 4) + u) * 64 + 4 * k + b] != want) wrong++;
        }
        const float *sb = (const float *)(xb + (size_t)ntl * 16 * cp), *zb = sb + (size_t)ntl * groups * 16;
        for (int t = 0; t < ntl; t++) for (int g = 0; g < groups; g++) for (int k = 0; k < 16; k++) {
            int row = 16 * t + k;
            if (sb[(t * groups + g) * 16 + k] != (row < mt ? xs[row * groups + g] : 0)) wrong++;
            if (zb[(t * groups + g) * 16 + k] != (row < mt ? gs[row * groups + g] : 0)) wrong++;
        }
        if (rest && memcmp(zb + (size_t)ntl * groups * 16, xw + (size_t)mt * cp, (size_t)rest * cp)) wrong++;
        if (wrong) printf("TILE BYTES WRONG: %zu\n", wrong);
    }
    // An old-path prep for comparison: kernel order + wide.
    double toldprep = 1e9;
    for (int i = 0; i < 5; i++) {
        double t0 = now();
        if (w0.p.super_blocks > 0) any4_kernel_order(&w0.p, xq, xo, m, 1); else memcpy(xo, xq, (size_t)m * cp);
        memcpy(xw, xo, (size_t)m * cp); any4_fast_activations_wide(&w0.p, xw, m);
        double t = now() - t0; if (t < toldprep) toldprep = t;
    }
    float *y1 = malloc((size_t)m * rows * 4), *yo = malloc((size_t)m * rows * 4), *yn = malloc((size_t)m * rows * 4);
    float *bias = malloc(rows * 4); for (int r = 0; r < rows; r++) bias[r] = 0.01f * r;
    double ts[2000]; int nthreads = getenv("KB_THREADS") ? atoi(getenv("KB_THREADS")) : 2;
    // lv 1 = AVX2, 3 = old AVX-512, 2 = new.
    double res[3][16], mins[3][16];
    for (int rep = 0; rep < reps; rep++) {
        for (int which = 0; which < 3; which++) {
            if (which == 0 && rep > 0) continue;
            int nt = 0;
            for (int it = 0; it < runs + 3; it++) {
                W *w = &ws[it % copies];
                double t0 = now();
#pragma omp parallel num_threads(nthreads)
                {
                    int chunk = (rows + 7) / 8;
#pragma omp for schedule(dynamic, 1)
                    for (int t = 0; t < 8; t++) {
                        int r0 = t * chunk, r1 = r0 + chunk < rows ? r0 + chunk : rows;
                        if (r0 >= r1) continue;
                        if (which == 0) any4_lut_gemm_fast(&w->p, xo, xs, gs, m, y1, rows, bias, r0, r1, 1);
                        else if (which == 1) old_any4_lut_fast_avx512(&w->p, (const uint8_t *)xw, xs, gs, m, yo, rows, bias, r0, r1);
                        else any4_lut_gemm_fast(&w->p, tiles ? xt : xw, xs, gs, m, yn, rows, bias, r0, r1, 2);
                    }
                }
                double t = now() - t0; if (it >= 3) ts[nt++] = t;
            }
            for (int i = 0; i < nt; i++) for (int j = i + 1; j < nt; j++) if (ts[j] < ts[i]) { double q = ts[i]; ts[i] = ts[j]; ts[j] = q; }
            res[which][rep] = ts[nt / 2]; mins[which][rep] = ts[0];
        }
    }
    printf("%dx%d m=%d G=%d%s: prep new %.1f us (old %.1f us)\n", rows, cols, m, G, tiles ? " tiles" : " (no tiles)", tprep * 1e6, toldprep * 1e6);
    printf("  avx2 %.1f us\n", res[0][0] * 1e6);
    for (int rep = 0; rep < reps; rep++)
        printf("  rep %d: min old %.1f us new %.1f us (%.0f -> %.0f GOPS) new/old %.3f | median old %.1f new %.1f\n", rep,
               mins[1][rep] * 1e6, mins[2][rep] * 1e6, 2.0 * rows * cols * m / mins[1][rep] / 1e9, 2.0 * rows * cols * m / mins[2][rep] / 1e9,
               mins[2][rep] / mins[1][rep], res[1][rep] * 1e6, res[2][rep] * 1e6);
    // Accuracy.
    double num = 0, den = 0, maxrel = 0; size_t bad = 0, n = (size_t)m * rows;
    int oldbits = memcmp(y1, yo, n * 4) == 0;
    double *ref = NULL;
    if ((double)rows * cp * m < 3e8) {
        ref = malloc(n * 8);
        for (int r = 0; r < rows; r++) {
            const uint8_t *q = w0.codes + (size_t)r * (cp / 2);
            double f = (double)w0.tsc[r] * w0.fac[2 * r];
            for (int k = 0; k < m; k++) {
                double tot = 0, z = 0;
                for (int g = 0; g < groups; g++) {
                    long acc = 0; int end = (g + 1) * G < cp ? (g + 1) * G : cp;
                    for (int c = g * G; c < end; c++) acc += (long)w0.ti8[r * 16 + code_at(&w0.p, q, c)] * xq[(size_t)k * cp + c];
                    tot += (double)acc * h2f(w0.sc[(size_t)r * groups + g]) * xs[(size_t)k * groups + g];
                    if (zeros) z += (double)h2f(w0.zf[(size_t)r * groups + g]) * gs[(size_t)k * groups + g];
                }
                ref[(size_t)k * rows + r] = tot * f + z * w0.fac[2 * r + 1] + bias[r];
            }
        }
    }
    double refnum = 0, refrel = 0, maxabs = 0, avx2ref = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)yn[i] - y1[i]); num += d * d; den += (double)y1[i] * y1[i];
        double rel = d / fabs(y1[i]); if (d > maxabs) maxabs = d;
        if (rel > maxrel) maxrel = rel;
        int ok = rel <= 1e-5;
        if (ref) {
            double dr = fabs((double)yn[i] - ref[i]); refnum += dr * dr;
            double r2 = dr / fabs(ref[i]); if (r2 > refrel) refrel = r2;
            ok = ok || r2 <= 1e-5;
            double a2 = fabs((double)y1[i] - ref[i]) / fabs(ref[i]); if (a2 > avx2ref) avx2ref = a2;
        }
        if (!ok) bad++;
    }
    printf("  old == avx2 bit for bit: %s; new vs avx2: rel L2 %.3g, max elem rel %.3g, max abs %.3g; vs f64 ref: max elem rel %.3g (avx2's %.3g); outputs off by >1e-5 of both: %zu/%zu\n",
           oldbits ? "yes" : "NO", sqrt(num / den), maxrel, maxabs, ref ? refrel : -1.0, avx2ref, bad, n);
    return 0;
}
