// Lookup GEMM, the fast path with AVX-512 VNNI (vpdpbusd): bit for bit the AVX2 fast path below
// ANY4_TILE_MIN_M activation rows; from there the tile kernel at the end of this file.
//
// vpdpbusd multiplies unsigned bytes by signed bytes and adds each 4 products into a 32-bit lane:
// one instruction where AVX2 needs sign, maddubs, madd and add. The activations come as
// x + 128 (unsigned; any4_fast_activations), the weights as the row's int8 table, and
// Σ (x + 128)·w = Σ x·w + 128·Σ w: the second term is a weights-only sum (one more vpdpbusd per
// decoded block, shared by every activation row), subtracted lane by lane. Every 32-bit lane
// then holds exactly the integer of the AVX2 path's lane, and the float epilogue is the same
// sequence of operations, so the results are identical (the tests hold them to that).
//
// The super-blocks are read 64 bytes at a time: lanes 0-7 from one 32-byte chunk and lanes 8-15
// from the next, folded into the AVX2 path's 8 lanes at the end of the super-block; for that the
// activations' kernel order swaps the middle 32 bytes of each 128-value span there (see
// any4_fast_activations_wide). The tail is read for two rows at once: lanes 0-7 are row r's
// lanes, 8-15 row r + 1's, over the same 32 activation bytes in both halves, so the end of each
// group (convert, scale, add) serves two rows and the lanes need no folding.
#include "kernels_internal.h"

#if ANY4_X86
/// 64 packed codes' int8 table values (32 bytes at p): the low nibbles w[0] and the high w[1].
INLINE_VNNI void decode64_vnni(const uint8_t *p, __m256i lut, __m256i *w0, __m256i *w1) {
    const __m256i m4 = _mm256_set1_epi8(15), raw = _mm256_loadu_si256((const __m256i *)p);
    *w0 = _mm256_shuffle_epi8(lut, _mm256_and_si256(raw, m4));
    *w1 = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4));
}

/// The same for 128 codes (64 bytes at p, two 32-byte chunks): w0 holds the low nibbles of both.
INLINE_VNNI void decode128_vnni(const uint8_t *p, __m512i lut, __m512i *w0, __m512i *w1) {
    const __m512i m4 = _mm512_set1_epi8(15), raw = _mm512_loadu_si512((const void *)p);
    *w0 = _mm512_shuffle_epi8(lut, _mm512_and_si512(raw, m4));
    *w1 = _mm512_shuffle_epi8(lut, _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4));
}

/// Lanes 0-7 plus lanes 8-15: the 8 lanes of the AVX2 path.
INLINE_VNNI __m256i fold512(__m512i v) {
    return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}

INLINE_VNNI __m256i dpbusd256(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_epi32(acc, u, s); }
INLINE_VNNI __m512i dpbusd512(__m512i acc, __m512i u, __m512i s) { return _mm512_dpbusd_epi32(acc, u, s); }

INLINE_VNNI __m256i row_lut256(const any4_packed *w, int r) {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(w->table_i8 + (size_t)r * w->table_stride)));
}

INLINE_VNNI __m512i row_lut512(const any4_packed *w, int r) {
    return _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(w->table_i8 + (size_t)r * w->table_stride)));
}

/// The tail groups of row r (after the super-blocks) for KT activation rows (xu: unsigned, in kernel
/// order), added to total[k] as the AVX2 path's fast_tail does. `once`: this is the only pass over
/// the row (prefetch without polluting the caches).
INLINE_VNNI void vnni_tail(const any4_packed *w, int r, const uint8_t *x0, const float *xs, int k0, const int KT,
                           const int once, __m256 *total) {
    const int cp = w->cols_padded, G = w->group_size, B = w->block_cols, main = w->super_blocks * 8 * G;
    const int lb = B == 64 ? 6 : 5, bpg = G >> lb, nb = (cp - main) >> lb, first = 8 * w->super_blocks;
    const __m256i c80 = _mm256_set1_epi8((char)0x80), lut = row_lut256(w, r);
    const uint8_t *q = w->codes + (size_t)r * (cp / 2) + main / 2;
    const uint16_t *sc = w->scales_f16 + (size_t)r * w->groups + first;
    const float *xsk[VTILE];
    const uint8_t *xk[VTILE];
    for (int k = 0; k < KT; k++) { xk[k] = x0 + (size_t)k * cp + main; xsk[k] = xs + (size_t)(k0 + k) * w->groups + first; }
    for (int t = 0; t < w->groups - first; t++) {
        __m256i acc[VTILE], corr = _mm256_setzero_si256();
        for (int k = 0; k < KT; k++) acc[k] = _mm256_setzero_si256();
        const int bend = (t + 1) * bpg < nb ? (t + 1) * bpg : nb;
        if (B == 64) {
            for (int b = t * bpg; b < bend; b++) {
                prefetch_codes(q + b * 32 + 2048, once);
                __m256i w0, w1;
                decode64_vnni(q + b * 32, lut, &w0, &w1);
                corr = dpbusd256(dpbusd256(corr, c80, w0), c80, w1);
                for (int k = 0; k < KT; k++) {
                    const uint8_t *xb = xk[k] + b * 64;
                    acc[k] = dpbusd256(dpbusd256(acc[k], load32u(xb), w0), load32u(xb + 32), w1);
                }
            }
        } else {
            for (int b = t * bpg; b < bend; b++) {
                const __m128i raw = _mm_loadu_si128((const __m128i *)(q + b * 16));
                const __m256i wv = _mm256_shuffle_epi8(
                    lut, _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(15)));
                corr = dpbusd256(corr, c80, wv);
                for (int k = 0; k < KT; k++) acc[k] = dpbusd256(acc[k], load32u(xk[k] + b * 32), wv);
            }
        }
        for (int k = 0; k < KT; k++)
            total[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc[k], corr)),
                                       _mm256_set1_ps(half1(sc[t]) * xsk[k][t]), total[k]);
    }
}

/// The tail groups of rows r and r + 1 (64-column blocks) for KT activation rows: lanes 0-7 of
/// total[k] are row r's 8 lanes of vnni_tail, lanes 8-15 row r + 1's, with the same operations.
INLINE_VNNI void vnni_tail_pair(const any4_packed *w, int r, const uint8_t *x0, const float *xs, int k0, const int KT,
                                const int once, __m512 *total) {
    const int cp = w->cols_padded, G = w->group_size, main = w->super_blocks * 8 * G;
    const int bpg = G >> 6, nb = (cp - main) >> 6, first = 8 * w->super_blocks;
    const __m512i c80 = _mm512_set1_epi8((char)0x80), m4 = _mm512_set1_epi8(15);
    const __m512i lut = _mm512_inserti64x4(_mm512_castsi256_si512(row_lut256(w, r)), row_lut256(w, r + 1), 1);
    const uint8_t *qa = w->codes + (size_t)r * (cp / 2) + main / 2, *qb = qa + cp / 2;
    const uint16_t *sa = w->scales_f16 + (size_t)r * w->groups + first, *sb = sa + w->groups;
    const float *xsk[VTILE];
    const uint8_t *xk[VTILE];
    for (int k = 0; k < KT; k++) { xk[k] = x0 + (size_t)k * cp + main; xsk[k] = xs + (size_t)(k0 + k) * w->groups + first; }
    for (int t = 0; t < w->groups - first; t++) {
        __m512i acc[VTILE], corr = _mm512_setzero_si512();
        for (int k = 0; k < KT; k++) acc[k] = _mm512_setzero_si512();
        const int bend = (t + 1) * bpg < nb ? (t + 1) * bpg : nb;
        for (int b = t * bpg; b < bend; b++) {
            prefetch_codes(qa + b * 32 + 2048, once);
            prefetch_codes(qb + b * 32 + 2048, once);
            const __m512i raw = _mm512_inserti64x4(_mm512_castsi256_si512(load32u(qa + b * 32)), load32u(qb + b * 32), 1);
            const __m512i w0 = _mm512_shuffle_epi8(lut, _mm512_and_si512(raw, m4));
            const __m512i w1 = _mm512_shuffle_epi8(lut, _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4));
            corr = dpbusd512(dpbusd512(corr, c80, w0), c80, w1);
            for (int k = 0; k < KT; k++) {
                const uint8_t *xb = xk[k] + b * 64;
                const __m512i xl = _mm512_broadcast_i64x4(load32u(xb)), xh = _mm512_broadcast_i64x4(load32u(xb + 32));
                acc[k] = dpbusd512(dpbusd512(acc[k], xl, w0), xh, w1);
            }
        }
        const __m512 sv = _mm512_insertf32x8(_mm512_set1_ps(half1(sa[t])), _mm256_set1_ps(half1(sb[t])), 1);
        for (int k = 0; k < KT; k++)
            total[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[k], corr)),
                                       _mm512_mul_ps(sv, _mm512_set1_ps(xsk[k][t])), total[k]);
    }
}

/// The super-blocks of NR rows (r, r + 1, ...) for KT activation rows, added to total[i][k]: each
/// 64-byte load of the activations serves the NR rows. Prefetches `lines` cache lines from
/// `ahead` (two per 128 columns, as the AVX2 path's one per 64), or, when `once` and NR = 1, the row's own codes 2 KiB ahead.
INLINE_VNNI void vnni_super_blocks(const any4_packed *w, int r, const int NR, const uint8_t *x0, const float *xs, int k0,
                                   const int KT, const int once, const char *ahead, int lines, __m256 total[][VTILE]) {
    const int cp = w->cols_padded, G = w->group_size;
    const __m512i c80 = _mm512_set1_epi8((char)0x80);
    __m512i lut[2];
    const uint8_t *q[2];
    const uint16_t *sc[2];
    for (int i = 0; i < NR; i++) {
        lut[i] = row_lut512(w, r + i);
        q[i] = w->codes + (size_t)(r + i) * (cp / 2);
        sc[i] = w->scales_f16 + (size_t)(r + i) * w->groups;
    }
    for (int s = 0; s < w->super_blocks; s++) {
        __m512i acc[2][VTILE], corr[2];
        for (int i = 0; i < NR; i++) {
            corr[i] = _mm512_setzero_si512();
            for (int k = 0; k < KT; k++) acc[i][k] = _mm512_setzero_si512();
        }
        for (int c = 0; c < G / 8; c += 2) {
            for (int l = 0; l < 2 && lines > 0; l++, lines--) { _mm_prefetch(ahead, _MM_HINT_T0); ahead += 64; }
            __m512i w0[2], w1[2];
            for (int i = 0; i < NR; i++) {
                const uint8_t *p = q[i] + (size_t)s * 4 * G + 32 * c;
                if (NR == 1) prefetch_codes(p + 2048, once);
                decode128_vnni(p, lut[i], &w0[i], &w1[i]);
                corr[i] = dpbusd512(dpbusd512(corr[i], c80, w0[i]), c80, w1[i]);
            }
            for (int k = 0; k < KT; k++) {
                const uint8_t *xb = x0 + (size_t)k * cp + (size_t)s * 8 * G + 64 * c;
                const __m512i xa = _mm512_loadu_si512((const void *)xb), xh = _mm512_loadu_si512((const void *)(xb + 64));
                for (int i = 0; i < NR; i++) acc[i][k] = dpbusd512(dpbusd512(acc[i][k], xa, w0[i]), xh, w1[i]);
            }
        }
        for (int i = 0; i < NR; i++) {
            const __m256 sv = load8_f16(sc[i] + 8 * s);
            for (int k = 0; k < KT; k++) {
                const __m256 f = _mm256_mul_ps(sv, _mm256_loadu_ps(xs + (size_t)(k0 + k) * w->groups + 8 * s));
                const __m256i a = fold512(_mm512_sub_epi32(acc[i][k], corr[i]));
                total[i][k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a), f, total[i][k]);
            }
        }
    }
}

/// NR rows (1 or 2) from r for KT activation rows from k0.
INLINE_VNNI void vnni_rows(const any4_packed *w, int r, const int NR, const uint8_t *xu, const float *xs, const float *gsum,
                           int k0, const int KT, const int once, float *y, int ys, const float *bias, const char *ahead,
                           int lines) {
    const uint8_t *x0 = xu + (size_t)k0 * w->cols_padded;
    __m256 total[2][VTILE];
    for (int i = 0; i < NR; i++)
        for (int k = 0; k < KT; k++) total[i][k] = _mm256_setzero_ps();
    vnni_super_blocks(w, r, NR, x0, xs, k0, KT, once, ahead, lines, total);
    if (NR == 2 && w->block_cols == 64) {
        __m512 both[VTILE];
        for (int k = 0; k < KT; k++) both[k] = _mm512_insertf32x8(_mm512_castps256_ps512(total[0][k]), total[1][k], 1);
        vnni_tail_pair(w, r, x0, xs, k0, KT, once, both);
        for (int k = 0; k < KT; k++) {
            total[0][k] = _mm512_castps512_ps256(both[k]);
            total[1][k] = _mm512_extractf32x8_ps(both[k], 1);
        }
    } else {
        for (int i = 0; i < NR; i++) vnni_tail(w, r + i, x0, xs, k0, KT, NR == 1 ? once : 0, total[i]);
    }
    for (int i = 0; i < NR; i++)
        for (int k = 0; k < KT; k++) y[(size_t)(k0 + k) * ys + r + i] = fast_epilogue(w, r + i, k0 + k, total[i][k], gsum, bias);
}

// MARK: - One activation row (a decode step)
//
// With one activation row the weights-side term above costs as much as the product: two vpdpbusd
// per decoded block for one. The decode path moves the offset to the other operand: the table is
// offset instead (w + 128, unsigned: the row's int8 table xor 0x80, once per row) and the
// activations stay signed, so each lane holds Σ x·w + 128·Σ x, and the activations-only term is
// computed once per call (one vpdpbusd per 64 activation bytes) and shared by every weight row.
// Each lane then holds the same integer again, and the float steps are the AVX2 path's, in its order.
// The tail reads 64 bytes of one row per register (two 64-column blocks: lanes 0-7 the first,
// 8-15 the second, summed into the AVX2 path's 8 lanes at the group's end), for which the
// activations of each such block pair are rearranged once per call (low halves, then high halves).

/// The per-call activations of the decode path, from xu (x + 128, AVX-512 kernel order): xs8, x
/// signed in the same order except that the tail's block pairs hold their two low halves, then
/// their two high halves; corr, per super-block and then per tail group, 8 lanes of 128·Σ x.
INLINE_VNNI void dec_prepare(const any4_packed *w, const uint8_t *xu, int8_t *xs8, int32_t *corr) {
    const int cp = w->cols_padded, G = w->group_size, main = w->super_blocks * 8 * G;
    const __m512i c80 = _mm512_set1_epi8((char)0x80);
    const __m256i c80y = _mm512_castsi512_si256(c80);
    for (int c = 0; c < main; c += 64)
        _mm512_storeu_si512((void *)(xs8 + c), _mm512_xor_si512(_mm512_loadu_si512((const void *)(xu + c)), c80));
    for (int s = 0; s < w->super_blocks; s++) {
        __m512i a = _mm512_setzero_si512();
        for (int c = s * 8 * G; c < (s + 1) * 8 * G; c += 64) a = dpbusd512(a, c80, _mm512_loadu_si512((const void *)(xs8 + c)));
        _mm256_storeu_si256((__m256i *)(corr + 8 * s), fold512(a));
    }
    const int bpg = G >> 6, nb = (cp - main) >> 6, first = 8 * w->super_blocks;
    for (int t = 0; t < w->groups - first; t++) {
        const int b0 = t * bpg, b1 = b0 + bpg < nb ? b0 + bpg : nb;
        __m256i a = _mm256_setzero_si256();
        int b = b0;
        for (; b + 2 <= b1; b += 2) {
            const uint8_t *src = xu + main + (size_t)b * 64;
            int8_t *dst = xs8 + main + (size_t)b * 64;
            const __m256i l0 = _mm256_xor_si256(load32u(src), c80y);
            const __m256i h0 = _mm256_xor_si256(load32u(src + 32), c80y);
            const __m256i l1 = _mm256_xor_si256(load32u(src + 64), c80y);
            const __m256i h1 = _mm256_xor_si256(load32u(src + 96), c80y);
            _mm256_storeu_si256((__m256i *)dst, l0);
            _mm256_storeu_si256((__m256i *)(dst + 32), l1);
            _mm256_storeu_si256((__m256i *)(dst + 64), h0);
            _mm256_storeu_si256((__m256i *)(dst + 96), h1);
            a = dpbusd256(dpbusd256(dpbusd256(dpbusd256(a, c80y, l0), c80y, h0), c80y, l1), c80y, h1);
        }
        if (b < b1) {
            const uint8_t *src = xu + main + (size_t)b * 64;
            int8_t *dst = xs8 + main + (size_t)b * 64;
            const __m256i l0 = _mm256_xor_si256(load32u(src), c80y);
            const __m256i h0 = _mm256_xor_si256(load32u(src + 32), c80y);
            _mm256_storeu_si256((__m256i *)dst, l0);
            _mm256_storeu_si256((__m256i *)(dst + 32), h0);
            a = dpbusd256(dpbusd256(a, c80y, l0), c80y, h0);
        }
        _mm256_storeu_si256((__m256i *)(corr + 8 * (w->super_blocks + t)), a);
    }
}

/// The sums of the 8 lanes of 4 registers, lane r of the result row r's, each added in hsum256's
/// order: ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)).
INLINE_VNNI __m128 hsum256_x4(const __m256 v[4]) {
    __m128 s0 = _mm_add_ps(_mm256_castps256_ps128(v[0]), _mm256_extractf128_ps(v[0], 1));
    __m128 s1 = _mm_add_ps(_mm256_castps256_ps128(v[1]), _mm256_extractf128_ps(v[1], 1));
    __m128 s2 = _mm_add_ps(_mm256_castps256_ps128(v[2]), _mm256_extractf128_ps(v[2], 1));
    __m128 s3 = _mm_add_ps(_mm256_castps256_ps128(v[3]), _mm256_extractf128_ps(v[3], 1));
    _MM_TRANSPOSE4_PS(s0, s1, s2, s3);
    return _mm_add_ps(_mm_add_ps(s0, s2), _mm_add_ps(s1, s3));
}

/// fast_epilogue for rows r ..< r + 4 (activation row 0) into y[r ..< r + 4]: the same float
/// operations per row, row i in lane i.
INLINE_VNNI void fast_epilogue_x4(const any4_packed *w, int r, const __m256 total[4], const float *gsum, const float *bias,
                                  float *y) {
    const float *ts = w->table_i8_scale, *ff = w->f16_factors;
    const size_t tss = (size_t)w->table_i8_scale_stride;
    const __m128 f = _mm_mul_ps(_mm_setr_ps(ts[r * tss], ts[(r + 1) * tss], ts[(r + 2) * tss], ts[(r + 3) * tss]),
                                _mm_setr_ps(ff[2 * r], ff[2 * r + 2], ff[2 * r + 4], ff[2 * r + 6]));
    __m128 v = _mm_mul_ps(hsum256_x4(total), f);
    if (w->zeros_f16) {
        const int n = w->groups;
        const uint16_t *z = w->zeros_f16 + (size_t)r * n;
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        int g = 0;
        for (; g + 8 <= n; g += 8) {
            const __m256 gs = _mm256_loadu_ps(gsum + g);
            for (int i = 0; i < 4; i++) acc[i] = _mm256_fmadd_ps(load8_f16(z + (size_t)i * n + g), gs, acc[i]);
        }
        __m128 d = hsum256_x4(acc);
        for (; g < n; g++) {
            const __m128 zv = _mm_cvtph_ps(_mm_setr_epi16((short)z[g], (short)z[n + g], (short)z[2 * n + g], (short)z[3 * n + g], 0, 0, 0, 0));
            d = _mm_add_ps(d, _mm_mul_ps(zv, _mm_set1_ps(gsum[g])));
        }
        v = _mm_add_ps(v, _mm_mul_ps(d, _mm_setr_ps(ff[2 * r + 1], ff[2 * r + 3], ff[2 * r + 5], ff[2 * r + 7])));
    }
    _mm_storeu_ps(y + r, _mm_add_ps(v, bias ? _mm_loadu_ps(bias + r) : _mm_setzero_ps()));
}


/// 128 codes (64 bytes at p) as decode128_vnni, by vpermb: the table fills every 16-byte lane and
/// vpermb reads 6 index bits, so the bits above each nibble pick the same entry.
INLINE_VBMI void decode128_vbmi(const uint8_t *p, __m512i lut, __m512i *w0, __m512i *w1) {
    const __m512i raw = _mm512_loadu_si512((const void *)p);
    *w0 = _mm512_permutexvar_epi8(raw, lut);
    *w1 = _mm512_permutexvar_epi8(_mm512_srli_epi16(raw, 4), lut);
}

/// 64 codes (32 bytes at p) as decode64_vnni, by vpermb (5 index bits; the table fills both lanes).
INLINE_VBMI void decode64_vbmi(const uint8_t *p, __m256i lut, __m256i *w0, __m256i *w1) {
    const __m256i raw = _mm256_loadu_si256((const __m256i *)p);
    *w0 = _mm256_permutexvar_epi8(raw, lut);
    *w1 = _mm256_permutexvar_epi8(_mm256_srli_epi16(raw, 4), lut);
}

#define DEC_NAME(x) x##_vnni
#define DEC_ATTR INLINE_VNNI
#define DEC_INLINE INLINE_VNNI
#define DEC_DECODE128 decode128_vnni
#define DEC_DECODE64 decode64_vnni
#include "lut_gemm_avx512_dec.h"

// Its dec_gemv is a function of its own: a VBMI body cannot be inlined into the VNNI-only entry.
#define DEC_NAME(x) x##_vbmi
#define DEC_ATTR VBMI static
#define DEC_INLINE INLINE_VBMI
#define DEC_DECODE128 decode128_vbmi
#define DEC_DECODE64 decode64_vbmi
#include "lut_gemm_avx512_dec.h"

#define VNNI_CASES(NR, ...)                                                                                  \
    switch (kt) {                                                                                            \
    case 1: vnni_rows(w, r, NR, xu, xs, gsum, k0, 1, __VA_ARGS__); break;                                    \
    case 2: vnni_rows(w, r, NR, xu, xs, gsum, k0, 2, __VA_ARGS__); break;                                    \
    case 3: vnni_rows(w, r, NR, xu, xs, gsum, k0, 3, __VA_ARGS__); break;                                    \
    case 4: vnni_rows(w, r, NR, xu, xs, gsum, k0, 4, __VA_ARGS__); break;                                    \
    case 5: vnni_rows(w, r, NR, xu, xs, gsum, k0, 5, __VA_ARGS__); break;                                    \
    case 6: vnni_rows(w, r, NR, xu, xs, gsum, k0, 6, __VA_ARGS__); break;                                    \
    case 7: vnni_rows(w, r, NR, xu, xs, gsum, k0, 7, __VA_ARGS__); break;                                    \
    default: vnni_rows(w, r, NR, xu, xs, gsum, k0, 8, __VA_ARGS__); break;                                   \
    }

VNNI void any4_lut_fast_avx512(const any4_packed *w, const uint8_t *xu, const float *xs, const float *gsum, int m, float *y,
                               int ys, const float *bias, int r0, int r1, int simd) {
    if (m == 1 && w->block_cols == 64 && w->cols_padded <= DEC_MAX_CP) {
        if (simd >= 3) dec_gemv_vbmi(w, xu, xs, gsum, y, bias, r0, r1);
        else dec_gemv_vnni(w, xu, xs, gsum, y, bias, r0, r1);
        return;
    }
    int r = r0;
    // Rows in pairs (as the AVX2 path for batches, and here for one activation row too when the
    // tail has 64-column blocks, which the pair reads as one register), up to VTILE activation
    // rows a pass (32 registers hold twice the AVX2 tile), each pass prefetching its share of the
    // next pair's codes (in the super-blocks; the tail prefetches its own rows 2 KiB ahead).
    const int once = m <= VTILE;
    // With one activation row and no tail (every group in super-blocks), single rows with their
    // own non-temporal prefetch stream faster (7-10 % at 4096x14336, measured A/B).
    const int tail = w->groups > 8 * w->super_blocks;
    if ((w->super_blocks > 0 && m > 1) || (w->block_cols == 64 && (m > 1 || tail))) {
        const int passes = (m + VTILE - 1) / VTILE;
        for (; r + 2 <= r1; r += 2) {
            for (int k0 = 0, p = 0; k0 < m; p++) {
                const int kt = even_pass(m, passes, p, k0);
                const char *ahead;
                const int n = pass_prefetch(w, r, r1, passes, p, &ahead);
                VNNI_CASES(2, once, y, ys, bias, ahead, n)
                k0 += kt;
            }
        }
    }
    for (; r < r1; r++) {
        for (int k0 = 0; k0 < m; k0 += VTILE) {
            const int kt = m - k0 < VTILE ? m - k0 : VTILE;
            VNNI_CASES(1, once, y, ys, bias, (const char *)0, 0)
        }
    }
}
#undef VNNI_CASES

VNNI void any4_fast_activations_avx512(const any4_packed *w, uint8_t *x, int m) {
    const int cp = w->cols_padded, G = w->group_size;
    const int main = w->super_blocks * 8 * G;
    const __m512i c80 = _mm512_set1_epi8((char)0x80);
    for (int k = 0; k < m; k++) {
        uint8_t *row = x + (size_t)k * cp;
        for (int c = 0; c + 128 <= main; c += 128) {
            const __m256i a = _mm256_loadu_si256((const __m256i *)(row + c + 32));
            const __m256i b = _mm256_loadu_si256((const __m256i *)(row + c + 64));
            _mm256_storeu_si256((__m256i *)(row + c + 32), b);
            _mm256_storeu_si256((__m256i *)(row + c + 64), a);
        }
        int c = 0;
        for (; c + 64 <= cp; c += 64) {
            __m512i v = _mm512_loadu_si512((const void *)(row + c));
            _mm512_storeu_si512((void *)(row + c), _mm512_xor_si512(v, c80));
        }
        for (; c < cp; c++) row[c] ^= 0x80;
    }
}
// MARK: - Tiles: 16 activation rows in the 16 lanes (m ≥ ANY4_TILE_MIN_M)
//
// With a batch of activation rows the lanes of a register serve better as 16 activation rows than
// as partial sums over columns: each vpdpbusd multiplies 4 columns of 16 activation rows (64 bytes
// of a tile, any4_fast_activations_tiles) by the same 4 weights of one row (a broadcast from
// memory), so a group ends with one conversion and one multiply-add for 16 outputs. The weights of
// a block of rows are decoded once per call into their int8 table values (tile_decode_row), with
// each group's 128·Σ w (the accumulators start at its negative) and its scale as a float; every
// tile then reads them from the cache. Each broadcast weight serves two tiles.

/// Weight rows per pass: each 4-byte weight broadcast serves two tiles (2 × TILE_R accumulators,
/// their float totals kept in memory where registers run out). Measured on Zen 4 (one core, noisy
/// machine): 2 tiles × 8-10 rows 5-15 % faster than 1 × 12; 2 × 12 spills and runs at half speed.
/// any4_lut_tiles_avx512 has a case for each block size up to TILE_R.
#define TILE_R 10

INLINE_VNNI int32_t hsum256_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/// Blocks of R decoded rows (ANY4_TILE_WS bytes a row) for the super-block chunks c of 16 at a time.
static inline int tile_sb_blocks(int G) { return (G / 8 + 15) / 16; }

/// Row i of a block of R decoded rows at wb (ANY4_TILE_WS bytes a row in each block, so that the
/// rows lie at constant offsets). The super-blocks come first, as decoded: chunk c of super-block s
/// (64 columns: columns 8c..8c+3 of its 8 groups, then 8c+4..8c+7) at 64·(c % 16) in block
/// s·tile_sb_blocks(G) + c / 16, so that group j's 4 columns 8c..8c+3 are the dword j there, and
/// 8c+4..8c+7 the dword j 32 bytes on. Then the tail groups in natural order, gpc a block (group g
/// at ((g - first) % gpc)·G in block sbb + (g - first) / gpc). ncorr[g] = -128·Σ w over group g,
/// sf[g] its f16 scale as a float.
INLINE_VNNI void tile_decode_row(const any4_packed *w, int r, int i, int R, int gpc, int8_t *wb, int32_t *ncorr, float *sf) {
    const int cp = w->cols_padded, G = w->group_size, B = w->block_cols, main = w->super_blocks * 8 * G;
    const __m256i lut = row_lut256(w, r), m4 = _mm256_set1_epi8(15), c80 = _mm256_set1_epi8((char)0x80);
    const uint8_t *q = w->codes + (size_t)r * (cp / 2);
    const int nblk = tile_sb_blocks(G), sbb = nblk * w->super_blocks;
    for (int s = 0; s < w->super_blocks; s++) {
        __m256i cs = _mm256_setzero_si256();
        for (int c = 0; c < G / 8; c++) {
            const __m256i raw = load32u(q + (size_t)s * 4 * G + 32 * c);
            const __m256i lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(raw, m4));
            const __m256i hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4));
            cs = dpbusd256(dpbusd256(cs, c80, lo), c80, hi);
            int8_t *o = wb + ((size_t)(s * nblk + c / 16) * R + i) * ANY4_TILE_WS + 64 * (c % 16);
            _mm256_storeu_si256((__m256i *)o, lo);
            _mm256_storeu_si256((__m256i *)(o + 32), hi);
        }
        _mm256_storeu_si256((__m256i *)(ncorr + 8 * s), _mm256_sub_epi32(_mm256_setzero_si256(), cs));
    }
    const int lb = B == 64 ? 6 : 5, bpg = G >> lb, nb = (cp - main) >> lb, first = 8 * w->super_blocks;
#define GROUP_AT(g) (wb + ((size_t)(sbb + ((g) - first) / gpc) * R + i) * ANY4_TILE_WS + (size_t)(((g) - first) % gpc) * G)
    const uint8_t *qt = q + main / 2;
    for (int g = first; g < w->groups; g++) {
        int8_t *gp = GROUP_AT(g);
        __m256i cv = _mm256_setzero_si256();
        const int b0 = (g - first) * bpg, b1 = b0 + bpg < nb ? b0 + bpg : nb;
        for (int b = b0; b < b1; b++) {
            int8_t *o = gp + (size_t)(b - b0) * B;
            if (B == 64) {
                const __m256i raw = load32u(qt + (size_t)b * 32);
                const __m256i lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(raw, m4));
                const __m256i hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4));
                _mm256_storeu_si256((__m256i *)o, lo);
                _mm256_storeu_si256((__m256i *)(o + 32), hi);
                cv = dpbusd256(dpbusd256(cv, c80, lo), c80, hi);
            } else {
                const __m128i raw = _mm_loadu_si128((const __m128i *)(qt + (size_t)b * 16));
                const __m256i wv = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), m4));
                _mm256_storeu_si256((__m256i *)o, wv);
                cv = dpbusd256(cv, c80, wv);
            }
        }
        ncorr[g] = -hsum256_epi32(cv);
    }
#undef GROUP_AT
    const uint16_t *sc = w->scales_f16 + (size_t)r * w->groups;
    int g = 0;
    for (; g + 8 <= w->groups; g += 8) _mm256_storeu_ps(sf + g, load8_f16(sc + g));
    for (; g < w->groups; g++) sf[g] = half1(sc[g]);
}

/// R decoded rows from r (tile_decode_row) times NT (1 or 2) tiles of activations from xt (xst and
/// gst: their scales and group sums, 16 per group), into y for the tiles' rows from k0 (below m).
/// Prefetches `lines` cache lines from `ahead`, spread over the groups.
INLINE_VNNI void tile_rows(const any4_packed *w, int r, const int R, const int NT, int gpc, const int8_t *wb,
                           const int32_t *ncorr, const float *sf, const uint8_t *xt, const float *xst, const float *gst,
                           int k0, int m, float *y, int ys, const float *bias, const char *ahead, int lines) {
    const int cp = w->cols_padded, G = w->group_size, groups = w->groups;
    const size_t xstride = (size_t)16 * cp, sstride = (size_t)groups * 16;
    const int per = (lines + groups - 1) / groups;
    const int nblk = tile_sb_blocks(G), sbb = nblk * w->super_blocks, first = 8 * w->super_blocks;
    __m512 tot[2][TILE_R];
    for (int t = 0; t < NT; t++)
        for (int i = 0; i < R; i++) tot[t][i] = _mm512_setzero_ps();
    for (int g = 0; g < groups; g++) {
        for (int l = 0; l < per && lines > 0; l++, lines--) { _mm_prefetch(ahead, _MM_HINT_T0); ahead += 64; }
        const uint8_t *xg = xt + (size_t)g * G * 16;
        __m512i acc[2][TILE_R];
        for (int i = 0; i < R; i++) {
            acc[0][i] = _mm512_set1_epi32(ncorr[(size_t)i * groups + g]);
            if (NT == 2) acc[1][i] = acc[0][i];
        }
#define TILE_UNIT(xp, wp)                                                                                            \
    do {                                                                                                             \
        const __m512i x0 = _mm512_loadu_si512((const void *)(xp));                                                 \
        const __m512i x1 = NT == 2 ? _mm512_loadu_si512((const void *)((xp) + xstride)) : x0;                        \
        for (int i = 0; i < R; i++) {                                                                                \
            int32_t wv;                                                                                              \
            memcpy(&wv, (wp) + (size_t)i * ANY4_TILE_WS, 4);                                                         \
            const __m512i wb4 = _mm512_set1_epi32(wv);                                                               \
            acc[0][i] = _mm512_dpbusd_epi32(acc[0][i], x0, wb4);                                                     \
            if (NT == 2) acc[1][i] = _mm512_dpbusd_epi32(acc[1][i], x1, wb4);                                        \
        }                                                                                                            \
    } while (0)
        if (g < first) {
            // A super-block group: its 4-column units 2c and 2c + 1 are the dwords j of the decoded chunk c.
            const int s = g / 8, j = g % 8, chunks = G / 8;
            for (int cb = 0; cb < nblk; cb++) {
                const int8_t *wc = wb + (size_t)(s * nblk + cb) * R * ANY4_TILE_WS + 4 * j;
                const int cn = chunks - 16 * cb < 16 ? chunks - 16 * cb : 16;
                const uint8_t *xc = xg + (size_t)16 * 128 * cb;
                for (int c = 0; c < cn; c++) {
                    TILE_UNIT(xc + 128 * c, wc + 64 * c);
                    TILE_UNIT(xc + 128 * c + 64, wc + 64 * c + 32);
                }
            }
        } else {
            const int8_t *wg = wb + (size_t)(sbb + (g - first) / gpc) * R * ANY4_TILE_WS + (size_t)((g - first) % gpc) * G;
            const int n = ((g + 1) * G < cp ? G : cp - g * G) / 4;
            for (int u = 0; u < n; u++) TILE_UNIT(xg + 64 * (size_t)u, wg + 4 * u);
        }
#undef TILE_UNIT
        for (int t = 0; t < NT; t++) {
            const __m512 xsv = _mm512_loadu_ps(xst + t * sstride + 16 * (size_t)g);
            for (int i = 0; i < R; i++)
                tot[t][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[t][i]), _mm512_mul_ps(_mm512_set1_ps(sf[(size_t)i * groups + g]), xsv), tot[t][i]);
        }
    }
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(ys));
    for (int t = 0; t < NT; t++) {
        const int kt = k0 + 16 * t;
        const __mmask16 mask = m - kt >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (m - kt)) - 1);
        for (int i = 0; i < R; i++) {
            const int rr = r + i;
            __m512 v = _mm512_mul_ps(tot[t][i], _mm512_set1_ps(w->table_i8_scale[(size_t)rr * w->table_i8_scale_stride] * w->f16_factors[2 * rr]));
            if (w->zeros_f16) {
                const uint16_t *zf = w->zeros_f16 + (size_t)rr * groups;
                __m512 z = _mm512_setzero_ps();
                for (int g = 0; g < groups; g++)
                    z = _mm512_fmadd_ps(_mm512_set1_ps(half1(zf[g])), _mm512_loadu_ps(gst + t * sstride + 16 * (size_t)g), z);
                v = _mm512_add_ps(v, _mm512_mul_ps(z, _mm512_set1_ps(w->f16_factors[2 * rr + 1])));
            }
            if (bias) v = _mm512_add_ps(v, _mm512_set1_ps(bias[rr]));
            _mm512_mask_i32scatter_ps(y + (size_t)kt * ys + rr, mask, idx, v, 4);
        }
    }
}

VNNI void any4_lut_tiles_avx512(const any4_packed *w, const int8_t *tiles, const float *xs0, const float *gsum0, int m,
                                float *y, int ys, const float *bias, int r0, int r1) {
    const int cp = w->cols_padded, G = w->group_size, groups = w->groups;
    const int rest = tile_rest(m), mt = m - rest;
    const int nt = tile_tiles(m), gpc = ANY4_TILE_WS / G, first = 8 * w->super_blocks;
    const int chunks = tile_sb_blocks(G) * w->super_blocks + (groups - first + gpc - 1) / gpc;
    const uint8_t *x = (const uint8_t *)tiles + (uint8_t)tiles[0];
    const float *xs = (const float *)(x + (size_t)nt * 16 * cp), *gs = xs + (size_t)nt * groups * 16;
    int8_t *wb = aligned_alloc(64, (size_t)chunks * TILE_R * ANY4_TILE_WS);
    int32_t *ncorr = malloc(sizeof(int32_t) * TILE_R * (size_t)groups);
    float *sf = malloc(sizeof(float) * TILE_R * (size_t)groups);
    if (!wb || !ncorr || !sf) abort();
    _Static_assert(TILE_R == 10, "tile_rows's cases cover 1..TILE_R");
    // Blocks of rows of even size (11 rows are 6 + 5, not 10 + 1).
    const int blocks = (r1 - r0 + TILE_R - 1) / TILE_R;
    for (int b = 0, r = r0; r < r1; b++) {
        const int R = (r1 - r + blocks - b - 1) / (blocks - b);
        for (int i = 0; i < R; i++) tile_decode_row(w, r + i, i, R, gpc, wb, ncorr + (size_t)i * groups, sf + (size_t)i * groups);
        // The next block's codes (contiguous rows), fetched while the first tile runs.
        const int next = r1 - (r + R) < TILE_R ? r1 - (r + R) : TILE_R;
        const char *ahead = (const char *)w->codes + (size_t)(r + R) * (cp / 2);
        for (int t = 0; t < nt;) {
            const int two = t + 2 <= nt;  // tiles in pairs, the last alone when their count is odd
            const uint8_t *xt = x + (size_t)t * 16 * cp;
            const float *xst = xs + (size_t)t * groups * 16, *gst = gs + (size_t)t * groups * 16;
            const int lines = t == 0 ? (int)(((size_t)next * (cp / 2) + 63) / 64) : 0;
#define TILE_CASE(n)                                                                                                 \
    case n:                                                                                                          \
        if (two) tile_rows(w, r, n, 2, gpc, wb, ncorr, sf, xt, xst, gst, 16 * t, mt, y, ys, bias, ahead, lines);      \
        else tile_rows(w, r, n, 1, gpc, wb, ncorr, sf, xt, xst, gst, 16 * t, mt, y, ys, bias, ahead, lines);          \
        break;
            switch (R) {
            TILE_CASE(1) TILE_CASE(2) TILE_CASE(3) TILE_CASE(4) TILE_CASE(5) TILE_CASE(6) TILE_CASE(7)
            TILE_CASE(8) TILE_CASE(9)
            default: TILE_CASE(10)
            }
#undef TILE_CASE
            t += two ? 2 : 1;
        }
        r += R;
    }
    free(wb);
    free(ncorr);
    free(sf);
    // The last rows (at most ANY4_TILE_REST) on the row kernel, in the wide form after the tiles.
    if (rest > 0)
        any4_lut_fast_avx512(w, (const uint8_t *)(gs + (size_t)nt * groups * 16), xs0 + (size_t)mt * groups,
                             gsum0 + (size_t)mt * groups, rest, y + (size_t)mt * ys, ys, bias, r0, r1, 2);
}
/// The activation bytes of any4_fast_activations_tiles (x: the data, 64-byte aligned): 16 rows ×
/// 16 four-byte units transposed in registers (16 × 16 dwords), offset by 128.
VNNI void any4_fast_tiles_x_avx512(const int8_t *xq, int m, int nt, int cp, uint8_t *x) {
    const int units = cp / 4;
    const __m512i c80 = _mm512_set1_epi8((char)0x80);
    for (int t = 0; t < nt; t++) {
        uint8_t *xt = x + (size_t)t * 16 * cp;
        for (int u0 = 0; u0 < units; u0 += 16) {
            const int nu = units - u0 < 16 ? units - u0 : 16;
            const __mmask16 lm = nu == 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nu) - 1);
            __m512i rw[16];
            for (int k = 0; k < 16; k++) {
                const int row = 16 * t + k;
                rw[k] = row < m ? _mm512_xor_si512(_mm512_maskz_loadu_epi32(lm, xq + (size_t)row * cp + 4 * u0), c80) : c80;
            }
            // s[q][e], lane L: rows 4q..4q+3 of dword 4L + e.
            __m512i sq[4][4];
            for (int q = 0; q < 4; q++) {
                const __m512i t0 = _mm512_unpacklo_epi32(rw[4 * q], rw[4 * q + 1]), t1 = _mm512_unpackhi_epi32(rw[4 * q], rw[4 * q + 1]);
                const __m512i t2 = _mm512_unpacklo_epi32(rw[4 * q + 2], rw[4 * q + 3]), t3 = _mm512_unpackhi_epi32(rw[4 * q + 2], rw[4 * q + 3]);
                sq[q][0] = _mm512_unpacklo_epi64(t0, t2);
                sq[q][1] = _mm512_unpackhi_epi64(t0, t2);
                sq[q][2] = _mm512_unpacklo_epi64(t1, t3);
                sq[q][3] = _mm512_unpackhi_epi64(t1, t3);
            }
            for (int e = 0; e < 4; e++) {
                const __m512i p = _mm512_shuffle_i32x4(sq[0][e], sq[1][e], 0x44), q = _mm512_shuffle_i32x4(sq[2][e], sq[3][e], 0x44);
                const __m512i r = _mm512_shuffle_i32x4(sq[0][e], sq[1][e], 0xEE), s = _mm512_shuffle_i32x4(sq[2][e], sq[3][e], 0xEE);
                const __m512i o[4] = {_mm512_shuffle_i32x4(p, q, 0x88), _mm512_shuffle_i32x4(p, q, 0xDD),
                                      _mm512_shuffle_i32x4(r, s, 0x88), _mm512_shuffle_i32x4(r, s, 0xDD)};
                for (int l = 0; l < 4; l++)
                    if (4 * l + e < nu) _mm512_storeu_si512((void *)(xt + 64 * (size_t)(u0 + 4 * l + e)), o[l]);
            }
        }
    }
}
#endif
