/*
 * weights_avx512.c - the sampler's tempered softmax weights and block sums
 * (sample/weights.h) sixteen lanes at a time, with the exp of the
 * attention kernels; each weight and each block sum is the AVX2 kernel's
 * and the scalar twin's to the bit.
 */
#include "sample/weights.h"

#if defined(__x86_64__) && defined(__GNUC__)

#include "core/arch/x86/math_avx512.h"

#include <float.h>

EM_A512 void em_draw_weights_avx512(const float *x, int64_t nblk, float mx, float scale, float *w, float *bsum) {
    const __m512 vmax = _mm512_set1_ps(FLT_MAX), vmx = _mm512_set1_ps(mx), vs = _mm512_set1_ps(scale);
    for (int64_t b = 0; b < nblk; b++, x += EM_DRAW_BLOCK, w += EM_DRAW_BLOCK) {
        __m512 s = _mm512_setzero_ps();
        for (int v = 0; v < 4; v++) {
            /* min(FLT_MAX, l) keeps a NaN l (the second operand wins). */
            const __m512 l = _mm512_min_ps(vmax, _mm512_loadu_ps(x + 16 * v));
            const __m512 e = em_exp16_avx512(_mm512_mul_ps(_mm512_sub_ps(l, vmx), vs));
            _mm512_storeu_ps(w + 16 * v, e);
            s = v == 0 ? e : _mm512_add_ps(s, e);
        }
        /* Lanes j and j + 8, then the AVX2 kernel's eight-lane sum. */
        const __m256 t = _mm256_add_ps(_mm512_castps512_ps256(s),
                                       _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s), 1)));
        __m128 q = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
        q = _mm_add_ps(q, _mm_movehl_ps(q, q));
        q = _mm_add_ss(q, _mm_movehdup_ps(q));
        bsum[b] = _mm_cvtss_f32(q);
    }
}

EM_A512 float em_row_max_avx512(const float *x, int64_t nv, float m) {
    /* Four running maxima, so that the loop is not one dependency chain;
     * max(x, m) returns m, the second operand, for a NaN x. */
    __m512 a[4];
    for (int k = 0; k < 4; k++) a[k] = _mm512_set1_ps(m);
    int64_t v = 0;
    for (; v + 4 <= nv; v += 4)
        for (int k = 0; k < 4; k++) a[k] = _mm512_max_ps(_mm512_loadu_ps(x + 16 * (v + k)), a[k]);
    for (; v < nv; v++) a[0] = _mm512_max_ps(_mm512_loadu_ps(x + 16 * v), a[0]);
    return _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(a[0], a[1]), _mm512_max_ps(a[2], a[3])));
}

#endif
