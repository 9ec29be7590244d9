// The decode path's rows (one activation row), included twice by lut_gemm_avx512.c: with the
// AVX-512 VNNI decode of the codes (and, mask, vpshufb) and with VBMI's (vpermb over the row's
// table in every 16-byte lane, which reads the code's low nibble whatever the bits above it, so
// neither nibble needs a mask). Both look up the same table entries: the results are the same
// bits. The includer defines DEC_NAME(x) (the instance's names), DEC_ATTR and DEC_INLINE (its
// target), and DEC_DECODE128 / DEC_DECODE64 (64 / 32 code bytes into the low and high nibbles'
// table values, as decode128_vnni / decode64_vnni); this file undefines them at its end.

/// The tail groups of dec_rows' NR rows (at most 8: the tail is under one super-block), added to
/// total. Two rows share each group's float steps: row i in lanes 0-7, row i + 1 in lanes 8-15
/// (the same per-lane operations as one row at a time), with the rows' factors (scale ×
/// activation scale) made once per row.
DEC_INLINE void DEC_NAME(dec_tail)(const any4_packed *w, const int NR, const __m512i *lut, const uint8_t *const *q,
                                   const uint16_t *const *sc, const int8_t *xs8, const int32_t *corr, const float *xs,
                                   dec_stream st, __m256 *total) {
    const int cp = w->cols_padded, G = w->group_size, main = w->super_blocks * 8 * G;
    const int bpg = G >> 6, nb = (cp - main) >> 6, first = 8 * w->super_blocks, ntail = w->groups - first;
    const __mmask8 tm = (__mmask8)((1u << ntail) - 1);
    const __m256 xt = _mm256_maskz_loadu_ps(tm, xs + first);
    __m512 fs[2], both[2];
    for (int p = 0; p < NR / 2; p++) {
        const __m256 f0 = _mm256_mul_ps(_mm256_cvtph_ps(_mm_maskz_loadu_epi16(tm, sc[2 * p] + first)), xt);
        const __m256 f1 = _mm256_mul_ps(_mm256_cvtph_ps(_mm_maskz_loadu_epi16(tm, sc[2 * p + 1] + first)), xt);
        fs[p] = _mm512_insertf32x8(_mm512_castps256_ps512(f0), f1, 1);
        both[p] = _mm512_insertf32x8(_mm512_castps256_ps512(total[2 * p]), total[2 * p + 1], 1);
    }
    __m512i idx = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi32(8), 1);
    for (int t = 0; t < ntail; t++, idx = _mm512_add_epi32(idx, _mm512_set1_epi32(1))) {
        const int b0 = t * bpg, b1 = b0 + bpg < nb ? b0 + bpg : nb;
        __m512i a0[4], a1[4];
        __m256i a2[4];
        for (int i = 0; i < NR; i++) { a0[i] = a1[i] = _mm512_setzero_si512(); a2[i] = _mm256_setzero_si256(); }
        int b = b0;
        for (; b + 2 <= b1; b += 2) {
            const int8_t *xb = xs8 + main + (size_t)b * 64;
            const __m512i xl = _mm512_loadu_si512((const void *)xb), xh = _mm512_loadu_si512((const void *)(xb + 64));
            for (int i = 0; i < NR; i++) {
                const uint8_t *p = q[i] + main / 2 + (size_t)b * 32;
                dec_prefetch(p, st);
                __m512i w0, w1;
                DEC_DECODE128(p, lut[i], &w0, &w1);
                a0[i] = dpbusd512(a0[i], w0, xl);
                a1[i] = dpbusd512(a1[i], w1, xh);
            }
        }
        if (b < b1) {
            const int8_t *xb = xs8 + main + (size_t)b * 64;
            const __m256i xl = load32u((const uint8_t *)xb), xh = load32u((const uint8_t *)xb + 32);
            for (int i = 0; i < NR; i++) {
                __m256i w0, w1;
                DEC_DECODE64(q[i] + main / 2 + (size_t)b * 32, _mm512_castsi512_si256(lut[i]), &w0, &w1);
                a2[i] = dpbusd256(dpbusd256(a2[i], w0, xl), w1, xh);
            }
        }
        const __m256i cv = _mm256_loadu_si256((const __m256i *)(corr + 8 * (w->super_blocks + t)));
        if (NR == 1) {
            const __m256i a = _mm256_sub_epi32(_mm256_add_epi32(fold512(_mm512_add_epi32(a0[0], a1[0])), a2[0]), cv);
            total[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a), _mm256_set1_ps(half1(sc[0][first + t]) * xs[first + t]), total[0]);
            continue;
        }
        const __m512i cv2 = _mm512_broadcast_i64x4(cv);
        for (int p = 0; p < NR / 2; p++) {
            const __m512i u = _mm512_add_epi32(a0[2 * p], a1[2 * p]), v = _mm512_add_epi32(a0[2 * p + 1], a1[2 * p + 1]);
            __m512i a = _mm512_add_epi32(_mm512_shuffle_i64x2(u, v, 0x44), _mm512_shuffle_i64x2(u, v, 0xEE));
            if (b < b1) a = _mm512_add_epi32(a, _mm512_inserti64x4(_mm512_castsi256_si512(a2[2 * p]), a2[2 * p + 1], 1));
            a = _mm512_sub_epi32(a, cv2);
            both[p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), _mm512_permutexvar_ps(idx, fs[p]), both[p]);
        }
    }
    if (NR > 1)
        for (int p = 0; p < NR / 2; p++) {
            total[2 * p] = _mm512_castps512_ps256(both[p]);
            total[2 * p + 1] = _mm512_extractf32x8_ps(both[p], 1);
        }
}

/// NR rows from r (1, 2 or 4, interleaved for the independent chains) on dec_prepare's activations.
DEC_INLINE void DEC_NAME(dec_rows)(const any4_packed *w, int r, const int NR, const int8_t *xs8, const int32_t *corr,
                          const float *xs, const float *gsum, float *y, const float *bias, dec_stream st) {
    const int cp = w->cols_padded, G = w->group_size;
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    __m512i lut[4];
    const uint8_t *q[4];
    const uint16_t *sc[4];
    __m256 total[4];
    for (int i = 0; i < NR; i++) {
        lut[i] = _mm512_xor_si512(row_lut512(w, r + i), flip);
        q[i] = w->codes + (size_t)(r + i) * (cp / 2);
        sc[i] = w->scales_f16 + (size_t)(r + i) * w->groups;
        total[i] = _mm256_setzero_ps();
    }
    for (int s = 0; s < w->super_blocks; s++) {
        __m512i a0[4], a1[4];
        for (int i = 0; i < NR; i++) a0[i] = a1[i] = _mm512_setzero_si512();
        for (int c = 0; c < G / 8; c += 2) {
            const int8_t *xb = xs8 + (size_t)s * 8 * G + 64 * c;
            const __m512i xa = _mm512_loadu_si512((const void *)xb), xh = _mm512_loadu_si512((const void *)(xb + 64));
            for (int i = 0; i < NR; i++) {
                const uint8_t *p = q[i] + (size_t)s * 4 * G + 32 * c;
                dec_prefetch(p, st);
                __m512i w0, w1;
                DEC_DECODE128(p, lut[i], &w0, &w1);
                a0[i] = dpbusd512(a0[i], w0, xa);
                a1[i] = dpbusd512(a1[i], w1, xh);
            }
        }
        const __m256 xsv = _mm256_loadu_ps(xs + 8 * s);
        const __m256i cv = _mm256_loadu_si256((const __m256i *)(corr + 8 * s));
        for (int i = 0; i < NR; i++) {
            const __m256i a = _mm256_sub_epi32(fold512(_mm512_add_epi32(a0[i], a1[i])), cv);
            total[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a), _mm256_mul_ps(load8_f16(sc[i] + 8 * s), xsv), total[i]);
        }
    }
    if (w->groups > 8 * w->super_blocks) DEC_NAME(dec_tail)(w, NR, lut, q, sc, xs8, corr, xs, st, total);
    if (NR == 4) fast_epilogue_x4(w, r, total, gsum, bias, y);
    else
        for (int i = 0; i < NR; i++) y[r + i] = fast_epilogue(w, r + i, 0, total[i], gsum, bias);
}

/// Rows r0 ..< r1 for one activation row (block_cols 64, cols_padded ≤ DEC_MAX_CP).
DEC_ATTR void DEC_NAME(dec_gemv)(const any4_packed *w, const uint8_t *xu, const float *xs, const float *gsum, float *y,
                          const float *bias, int r0, int r1) {
    int8_t xs8[DEC_MAX_CP] __attribute__((aligned(64)));
    int32_t corr[8 * (DEC_MAX_CP / 64)] __attribute__((aligned(64)));
    dec_prepare(w, xu, xs8, corr);
    const dec_stream st = dec_stream_for((size_t)w->cols_padded / 2);
    int r = r0;
    for (; r + 4 <= r1; r += 4) DEC_NAME(dec_rows)(w, r, 4, xs8, corr, xs, gsum, y, bias, st);
    for (; r + 2 <= r1; r += 2) DEC_NAME(dec_rows)(w, r, 2, xs8, corr, xs, gsum, y, bias, st);
    for (; r < r1; r++) DEC_NAME(dec_rows)(w, r, 1, xs8, corr, xs, gsum, y, bias, st);
}

#undef DEC_NAME
#undef DEC_ATTR
#undef DEC_INLINE
#undef DEC_DECODE128
#undef DEC_DECODE64
