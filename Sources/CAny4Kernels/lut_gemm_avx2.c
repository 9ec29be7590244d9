// Lookup GEMM, AVX2 versions of the exact and fast paths.
#include "kernels_internal.h"

#if ANY4_X86
/// 8 table entries for 8 indices (0..15) from a 16-entry float table held in two registers.
AVX2 static inline __m256 lookup16(__m256 lo, __m256 hi, __m256i idx) {
    __m256 a = _mm256_permutevar8x32_ps(lo, idx), b = _mm256_permutevar8x32_ps(hi, idx);
    return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

/// Σ z[g]·gs[g] over n groups, 8 at a time (the zero term of a row).
AVX2 static inline float dot_avx2(const float *z, const float *gs, int n) {
    __m256 acc = _mm256_setzero_ps();
    int g = 0;
    for (; g + 8 <= n; g += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(z + g), _mm256_loadu_ps(gs + g), acc);
    float v = hsum256(acc);
    for (; g < n; g++) v += z[g] * gs[g];
    return v;
}

/// 8 codes' table values, the low and high nibbles of 8 bytes at p: two runs of 8 columns.
AVX2 static inline void lookup8x2(const uint8_t *p, __m256 tlo, __m256 thi, __m256 *wl, __m256 *wh) {
    const __m256i raw = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
    *wl = lookup16(tlo, thi, _mm256_and_si256(raw, _mm256_set1_epi32(15)));
    *wh = lookup16(tlo, thi, _mm256_srli_epi32(raw, 4));
}

/// One row of the exact path for KT (1..4) activation rows. In the super-blocks each 8-byte load
/// covers two groups (lanes 0-3 and 4-7), so the decoded values are scaled there (one multiply,
/// shared by the KT rows); in the tail one accumulator per group is scaled at its end.
INLINE_AVX2 void lut_exact_row(const any4_packed *w, int r, const float *x, const float *gsum, int k0, const int KT,
                               float *y, int ys, const float *bias) {
    const int cp = w->cols_padded, G = w->group_size, B = w->block_cols, h = B / 2, main = w->super_blocks * 8 * G;
    const uint8_t *q = w->codes + (size_t)r * (cp / 2);
    const float *t = w->table + (size_t)r * w->table_stride;
    const __m256 tlo = _mm256_loadu_ps(t), thi = _mm256_loadu_ps(t + 8);
    const float *sc = w->scales + (size_t)r * w->groups;
    __m256 total[TILE];
    for (int k = 0; k < KT; k++) total[k] = _mm256_setzero_ps();
    for (int s = 0; s < w->super_blocks; s++) {
        __m256 sv[4];  // [scale of group 2j] × 4, [scale of group 2j + 1] × 4
        for (int j = 0; j < 4; j++)
            sv[j] = _mm256_set_m128(_mm_set1_ps(sc[8 * s + 2 * j + 1]), _mm_set1_ps(sc[8 * s + 2 * j]));
        for (int i = 0; i < G / 8; i++) {
            const uint8_t *qc = q + (size_t)s * 4 * G + 32 * i;
            for (int j = 0; j < 4; j++) {
                __m256 wl, wh;
                lookup8x2(qc + 8 * j, tlo, thi, &wl, &wh);
                wl = _mm256_mul_ps(wl, sv[j]);
                wh = _mm256_mul_ps(wh, sv[j]);
                for (int k = 0; k < KT; k++) {
                    const float *xb = x + (size_t)(k0 + k) * cp + s * 8 * G + 64 * i + 8 * j;
                    total[k] = _mm256_fmadd_ps(wl, _mm256_loadu_ps(xb), total[k]);
                    total[k] = _mm256_fmadd_ps(wh, _mm256_loadu_ps(xb + 32), total[k]);
                }
            }
        }
    }
    for (int g = 8 * w->super_blocks; g < w->groups; g++) {
        __m256 acc[TILE];
        for (int k = 0; k < KT; k++) acc[k] = _mm256_setzero_ps();
        const int end = (g + 1) * G < cp ? (g + 1) * G : cp;
        for (int c = g * G; c < end; c += B) {
            for (int j = 0; j < h; j += 8) {
                __m256 wl, wh;
                lookup8x2(q + main / 2 + (c - main) / 2 + j, tlo, thi, &wl, &wh);
                for (int k = 0; k < KT; k++) {
                    const float *xb = x + (size_t)(k0 + k) * cp + c + j;
                    acc[k] = _mm256_fmadd_ps(wl, _mm256_loadu_ps(xb), acc[k]);
                    acc[k] = _mm256_fmadd_ps(wh, _mm256_loadu_ps(xb + h), acc[k]);
                }
            }
        }
        const __m256 sg = _mm256_set1_ps(sc[g]);
        for (int k = 0; k < KT; k++) total[k] = _mm256_fmadd_ps(acc[k], sg, total[k]);
    }
    for (int k = 0; k < KT; k++) {
        float v = hsum256(total[k]);
        if (w->zeros) v += dot_avx2(w->zeros + (size_t)r * w->groups, gsum + (size_t)(k0 + k) * w->groups, w->groups);
        y[(size_t)(k0 + k) * ys + r] = v + (bias ? bias[r] : 0);
    }
}

AVX2 void any4_lut_exact_avx2(const any4_packed *w, const float *x, const float *gsum, int m, float *y, int ys,
                              const float *bias, int r0, int r1) {
    for (int r = r0; r < r1; r++) {
        for (int k0 = 0; k0 < m; k0 += TILE) {
            switch (m - k0 < TILE ? m - k0 : TILE) {
            case 1: lut_exact_row(w, r, x, gsum, k0, 1, y, ys, bias); break;
            case 2: lut_exact_row(w, r, x, gsum, k0, 2, y, ys, bias); break;
            case 3: lut_exact_row(w, r, x, gsum, k0, 3, y, ys, bias); break;
            default: lut_exact_row(w, r, x, gsum, k0, 4, y, ys, bias); break;
            }
        }
    }
}

/// 64 packed columns (32 bytes at p) decoded: the low-nibble values w[0] (columns 0..31 of the
/// block), the high-nibble values w[1] (32..63), and their magnitudes a[0], a[1].
typedef struct { __m256i w[2], a[2]; } decoded64;

INLINE_AVX2 decoded64 decode64(const uint8_t *p, __m256i lut, __m256i m4) {
    const __m256i raw = _mm256_loadu_si256((const __m256i *)p);
    decoded64 d;
    d.w[0] = _mm256_shuffle_epi8(lut, _mm256_and_si256(raw, m4));
    d.w[1] = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4));
    d.a[0] = _mm256_sign_epi8(d.w[0], d.w[0]);
    d.a[1] = _mm256_sign_epi8(d.w[1], d.w[1]);
    return d;
}

/// Σ over the 64 columns of a decoded block for one activation row (x: its 64 values).
INLINE_AVX2 __m256i dot64_lut(decoded64 d, const int8_t *x, __m256i ones) {
    return _mm256_add_epi32(dot32_lut(d.w[0], d.a[0], load32(x), ones), dot32_lut(d.w[1], d.a[1], load32(x + 32), ones));
}

INLINE_AVX2 __m256i row_lut(const any4_packed *w, int r) {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(w->table_i8 + (size_t)r * w->table_stride)));
}

/// The tail groups of row r (after the super-blocks) for KT activation rows, added to total[k];
/// `once`: this is the only pass over the row (see prefetch_codes).
INLINE_AVX2 void fast_tail(const any4_packed *w, int r, __m256i lut, const int8_t *x0, const float *xs, int k0, const int KT,
                           const int once, __m256 *total) {
    const int cp = w->cols_padded, G = w->group_size, B = w->block_cols, main = w->super_blocks * 8 * G;
    // B is 32 or 64 and divides G and cp - main: shifts, not the integer divisions that cost as
    // much as the work of a 576-wide row (per row, in decode).
    const int lb = B == 64 ? 6 : 5, bpg = G >> lb, nb = (cp - main) >> lb, first = 8 * w->super_blocks;
    const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
    const uint8_t *q = w->codes + (size_t)r * (cp / 2) + main / 2;
    const uint16_t *sc = w->scales_f16 + (size_t)r * w->groups + first;
    const float *xsk[TILE];
    const int8_t *xk[TILE];
    for (int k = 0; k < KT; k++) { xk[k] = x0 + (size_t)k * cp + main; xsk[k] = xs + (size_t)(k0 + k) * w->groups + first; }
    for (int t = 0; t < w->groups - first; t++) {
        __m256i acc[TILE];
        for (int k = 0; k < KT; k++) acc[k] = _mm256_setzero_si256();
        const int bend = (t + 1) * bpg < nb ? (t + 1) * bpg : nb;
        if (B == 64) {
            for (int b = t * bpg; b < bend; b++) {
                prefetch_codes(q + b * 32 + 2048, once);
                const decoded64 d = decode64(q + b * 32, lut, m4);
                for (int k = 0; k < KT; k++) acc[k] = _mm256_add_epi32(acc[k], dot64_lut(d, xk[k] + b * 64, ones));
            }
        } else {
            for (int b = t * bpg; b < bend; b++) {
                const __m128i raw = _mm_loadu_si128((const __m128i *)(q + b * 16));
                const __m256i wv = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), m4));
                const __m256i wa = _mm256_sign_epi8(wv, wv);
                for (int k = 0; k < KT; k++) acc[k] = _mm256_add_epi32(acc[k], dot32_lut(wv, wa, load32(xk[k] + b * 32), ones));
            }
        }
        for (int k = 0; k < KT; k++)
            total[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[k]), _mm256_set1_ps(half1(sc[t]) * xsk[k][t]), total[k]);
    }
}

/// One row of the fast path for KT (1..4) activation rows: KT is a compile-time constant at each
/// call site, so the accumulators stay in registers. Each block of weights is decoded once for
/// all KT rows. In the super-blocks a lane of an accumulator belongs to one group, so 8 groups
/// end with one conversion and one multiply-add; the tail ends each group on its own. `once`:
/// this is the only pass over the row (see prefetch_codes).
INLINE_AVX2 void lut_fast_row(const any4_packed *w, int r, const int8_t *xq, const float *xs, const float *gsum, int k0,
                              const int KT, const int once, float *y, int ys, const float *bias) {
    const int cp = w->cols_padded, G = w->group_size;
    const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1), lut = row_lut(w, r);
    const uint8_t *q = w->codes + (size_t)r * (cp / 2);
    const uint16_t *sc = w->scales_f16 + (size_t)r * w->groups;
    const int8_t *x0 = xq + (size_t)k0 * cp;
    __m256 total[TILE];
    for (int k = 0; k < KT; k++) total[k] = _mm256_setzero_ps();
    for (int s = 0; s < w->super_blocks; s++) {
        __m256i acc[TILE];
        for (int k = 0; k < KT; k++) acc[k] = _mm256_setzero_si256();
        const uint8_t *qs = q + (size_t)s * 4 * G;
        for (int i = 0; i < G / 8; i++) {
            prefetch_codes(qs + 32 * i + 2048, once);
            const decoded64 d = decode64(qs + 32 * i, lut, m4);
            for (int k = 0; k < KT; k++) acc[k] = _mm256_add_epi32(acc[k], dot64_lut(d, x0 + (size_t)k * cp + (size_t)s * 8 * G + 64 * i, ones));
        }
        const __m256 sv = load8_f16(sc + 8 * s);
        for (int k = 0; k < KT; k++) {
            const __m256 f = _mm256_mul_ps(sv, _mm256_loadu_ps(xs + (size_t)(k0 + k) * w->groups + 8 * s));
            total[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[k]), f, total[k]);
        }
    }
    fast_tail(w, r, lut, x0, xs, k0, KT, once, total);
    for (int k = 0; k < KT; k++) y[(size_t)(k0 + k) * ys + r] = fast_epilogue(w, r, k0 + k, total[k], gsum, bias);
}

/// Rows r and r + 1 of the fast path for KT (1..4) activation rows: in the super-blocks the two
/// rows share each load of the activations. For batches (with one activation row the single-row
/// loop does as much work per weight with fewer registers, and is faster). Prefetches `lines`
/// cache lines from `ahead`, one per block.
INLINE_AVX2 void lut_fast_pair(const any4_packed *w, int r, const int8_t *xq, const float *xs, const float *gsum, int k0,
                               const int KT, float *y, int ys, const float *bias, const char *ahead, int lines) {
    const int cp = w->cols_padded, G = w->group_size;
    const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1), la = row_lut(w, r), lb = row_lut(w, r + 1);
    const uint8_t *qa = w->codes + (size_t)r * (cp / 2), *qb = qa + cp / 2;
    const uint16_t *sa = w->scales_f16 + (size_t)r * w->groups, *sb = sa + w->groups;
    const int8_t *x0 = xq + (size_t)k0 * cp;
    __m256 ta[TILE], tb[TILE];
    for (int k = 0; k < KT; k++) { ta[k] = _mm256_setzero_ps(); tb[k] = _mm256_setzero_ps(); }
    for (int s = 0; s < w->super_blocks; s++) {
        __m256i ca[TILE], cb[TILE];
        for (int k = 0; k < KT; k++) { ca[k] = _mm256_setzero_si256(); cb[k] = _mm256_setzero_si256(); }
        const uint8_t *pa = qa + (size_t)s * 4 * G, *pb = qb + (size_t)s * 4 * G;
        for (int i = 0; i < G / 8; i++) {
            if (lines > 0) { _mm_prefetch(ahead, _MM_HINT_T0); ahead += 64; lines--; }
            const decoded64 da = decode64(pa + 32 * i, la, m4), db = decode64(pb + 32 * i, lb, m4);
            for (int k = 0; k < KT; k++) {
                const int8_t *xk = x0 + (size_t)k * cp + (size_t)s * 8 * G + 64 * i;
                const __m256i x0v = load32(xk), x1v = load32(xk + 32);  // shared by the two rows
                ca[k] = _mm256_add_epi32(ca[k], _mm256_add_epi32(dot32_lut(da.w[0], da.a[0], x0v, ones),
                                                                 dot32_lut(da.w[1], da.a[1], x1v, ones)));
                cb[k] = _mm256_add_epi32(cb[k], _mm256_add_epi32(dot32_lut(db.w[0], db.a[0], x0v, ones),
                                                                 dot32_lut(db.w[1], db.a[1], x1v, ones)));
            }
        }
        const __m256 sva = load8_f16(sa + 8 * s), svb = load8_f16(sb + 8 * s);
        for (int k = 0; k < KT; k++) {
            const __m256 xk = _mm256_loadu_ps(xs + (size_t)(k0 + k) * w->groups + 8 * s);
            ta[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ca[k]), _mm256_mul_ps(sva, xk), ta[k]);
            tb[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(cb[k]), _mm256_mul_ps(svb, xk), tb[k]);
        }
    }
    fast_tail(w, r, la, x0, xs, k0, KT, 0, ta);
    fast_tail(w, r + 1, lb, x0, xs, k0, KT, 0, tb);
    for (int k = 0; k < KT; k++) {
        y[(size_t)(k0 + k) * ys + r] = fast_epilogue(w, r, k0 + k, ta[k], gsum, bias);
        y[(size_t)(k0 + k) * ys + r + 1] = fast_epilogue(w, r + 1, k0 + k, tb[k], gsum, bias);
    }
}

AVX2 void any4_lut_fast_avx2(const any4_packed *w, const int8_t *xq, const float *xs, const float *gsum, int m, float *y,
                             int ys, const float *bias, int r0, int r1) {
    int r = r0;
    if (w->super_blocks > 0 && m > 1) {
        // Rows in pairs, up to four activation rows at a time in passes of even size (m = 5 is 3 + 2;
        // four rows beat two by 5-10 % although some constants then live in memory). A pair comes
        // from memory in its first pass and from cache in the others, so each pass prefetches its
        // share of the next pair's codes: memory stays busy all along rather than in bursts (5-17 %
        // faster at m = 2..8 than prefetching 2 KiB ahead within the pair).
        const int passes = (m + TILE - 1) / TILE;
        for (; r + 2 <= r1; r += 2) {
            for (int k0 = 0, p = 0; k0 < m; p++) {
                const int kt = even_pass(m, passes, p, k0);
                const char *ahead;
                const int n = pass_prefetch(w, r, r1, passes, p, &ahead);
                switch (kt) {
                case 1: lut_fast_pair(w, r, xq, xs, gsum, k0, 1, y, ys, bias, ahead, n); break;
                case 2: lut_fast_pair(w, r, xq, xs, gsum, k0, 2, y, ys, bias, ahead, n); break;
                case 3: lut_fast_pair(w, r, xq, xs, gsum, k0, 3, y, ys, bias, ahead, n); break;
                default: lut_fast_pair(w, r, xq, xs, gsum, k0, 4, y, ys, bias, ahead, n); break;
                }
                k0 += kt;
            }
        }
    }
    const int once = m <= TILE;  // each row in a single pass
    for (; r < r1; r++) {
        for (int k0 = 0; k0 < m; k0 += TILE) {
            switch (m - k0 < TILE ? m - k0 : TILE) {
            case 1: lut_fast_row(w, r, xq, xs, gsum, k0, 1, once, y, ys, bias); break;
            case 2: lut_fast_row(w, r, xq, xs, gsum, k0, 2, once, y, ys, bias); break;
            case 3: lut_fast_row(w, r, xq, xs, gsum, k0, 3, once, y, ys, bias); break;
            default: lut_fast_row(w, r, xq, xs, gsum, k0, 4, once, y, ys, bias); break;
            }
        }
    }
}
#endif
