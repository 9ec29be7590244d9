// Activation quantization, AVX2 version: the same codes as the scalar one, bit for bit.
#include "kernels_internal.h"

#if ANY4_X86
/// preserve_sum with the same choices: the gaps are computed once into a buffer (a moved code's gap
/// drops by one; a code at ±127 cannot move further) and the largest is found 8 at a time, the
/// first index on ties. n % 8 == 0.
AVX2 static void preserve_sum_avx2(const float *x, float inv, int n, int8_t *xq, int residual) {
    if (residual == 0) return;
    if (n > 4096) { preserve_sum(x, inv, n, xq, residual); return; }
    const int dir = residual > 0 ? 1 : -1;  // the residual only ever moves towards 0
    float gap[4096] __attribute__((aligned(32)));
    const __m256 vinv = _mm256_set1_ps(inv), vdir = _mm256_set1_ps((float)dir), none = _mm256_set1_ps(-INFINITY);
    const __m256i limit = _mm256_set1_epi32(127);
    for (int c = 0; c < n; c += 8) {
        const __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(xq + c)));
        const __m256 g = _mm256_mul_ps(_mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(x + c), vinv), _mm256_cvtepi32_ps(q)), vdir);
        // a code that would leave [-127, 127] is never chosen
        const __m256i moved = _mm256_abs_epi32(_mm256_add_epi32(q, _mm256_set1_epi32(dir)));
        _mm256_store_ps(gap + c, _mm256_blendv_ps(g, none, _mm256_castsi256_ps(_mm256_cmpgt_epi32(moved, limit))));
    }
    while (residual != 0) {
        __m256 mx = none;
        for (int c = 0; c < n; c += 8) mx = _mm256_max_ps(mx, _mm256_load_ps(gap + c));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float best = _mm_cvtss_f32(m4);
        if (!(best > -1)) break;  // as the scalar search, which starts from a gap of -1
        const __m256 vb = _mm256_set1_ps(best);
        int at = -1;
        for (int c = 0; c < n && at < 0; c += 8) {
            const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_load_ps(gap + c), vb, _CMP_EQ_OQ));
            if (mask) at = c + __builtin_ctz((unsigned)mask);
        }
        xq[at] = (int8_t)(xq[at] + dir);
        residual -= dir;
        gap[at] = (xq[at] + dir > 127 || xq[at] + dir < -127) ? -INFINITY : gap[at] - 1;
    }
}

/// Activations of one group to int8 (n % 32 == 0); the same codes as any4_quantize_group_scalar.
AVX2 void any4_quantize_group_avx2(const float *x, int n, int8_t *xq, float *scale, float *sum, int preserve) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 mx = _mm256_setzero_ps(), sm = _mm256_setzero_ps();
    for (int c = 0; c < n; c += 8) {
        const __m256 v = _mm256_loadu_ps(x + c);
        mx = _mm256_max_ps(mx, _mm256_and_ps(v, absmask));
        sm = _mm256_add_ps(sm, v);
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4), total = hsum256(sm);
    const float invs = amax > 0 ? 127.0f / amax : 0.0f;
    const __m256 inv = _mm256_set1_ps(invs);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    __m256i qs = _mm256_setzero_si256();
    for (int c = 0; c < n; c += 32) {
        const __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + c), inv));
        const __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + c + 8), inv));
        const __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + c + 16), inv));
        const __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + c + 24), inv));
        qs = _mm256_add_epi32(qs, _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
        // packs interleave the 128-bit lanes; the permutation puts the 32 codes back in order.
        _mm256_storeu_si256((__m256i *)(xq + c), _mm256_permutevar8x32_epi32(
            _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3)), order));
    }
    __m128i q4 = _mm_add_epi32(_mm256_castsi256_si128(qs), _mm256_extracti128_si256(qs, 1));
    q4 = _mm_add_epi32(q4, _mm_shuffle_epi32(q4, 0x4E));
    q4 = _mm_add_epi32(q4, _mm_shuffle_epi32(q4, 0xB1));
    // The nudges are rare (a few per group) and cheap next to a group's products; the scalar
    // search keeps them identical to the portable version's.
    if (preserve) preserve_sum_avx2(x, invs, n, xq, (int)lrintf(total * invs) - _mm_cvtsi128_si32(q4));
    *scale = amax / 127.0f;
    *sum = total;
}
#endif
