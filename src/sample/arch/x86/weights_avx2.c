/*
 * weights_avx2.c - the sampler's tempered softmax weights and block sums
 * (sample/weights.h) eight lanes at a time.  The sixteen lanes of a block
 * sum are two vectors of eight, lanes 0-7 and 8-15, added in the order the
 * scalar twin (weights.c) and the AVX-512 kernel add them.
 */
#include "sample/weights.h"

#if defined(__x86_64__) && defined(__GNUC__)

#if !defined(__AVX2__) || !defined(__FMA__)
#error "weights_avx2.c must be compiled with -mavx2 -mfma"
#endif

#include "core/arch/x86/math_avx2.h"

#include <float.h>

void em_draw_weights_avx2(const float *x, int64_t nblk, float mx, float scale, float *w, float *bsum) {
    const __m256 vmax = _mm256_set1_ps(FLT_MAX), vmx = _mm256_set1_ps(mx), vs = _mm256_set1_ps(scale);
    for (int64_t b = 0; b < nblk; b++, x += EM_DRAW_BLOCK, w += EM_DRAW_BLOCK) {
        __m256 e[8];
        for (int v = 0; v < 8; v++) {
            /* min(FLT_MAX, l) keeps a NaN l (the second operand wins). */
            const __m256 l = _mm256_min_ps(vmax, _mm256_loadu_ps(x + 8 * v));
            e[v] = em_exp8_avx2(_mm256_mul_ps(_mm256_sub_ps(l, vmx), vs));
            _mm256_storeu_ps(w + 8 * v, e[v]);
        }
        const __m256 lo = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(e[0], e[2]), e[4]), e[6]);
        const __m256 hi = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(e[1], e[3]), e[5]), e[7]);
        bsum[b] = em_hsum8_avx2(_mm256_add_ps(lo, hi));
    }
}

float em_row_max_avx2(const float *x, int64_t nv, float m) {
    __m256 a = _mm256_set1_ps(m), b = a;
    for (int64_t v = 0; v < nv; v++, x += 16) {
        /* max(x, m) returns m, the second operand, for a NaN x. */
        a = _mm256_max_ps(_mm256_loadu_ps(x), a);
        b = _mm256_max_ps(_mm256_loadu_ps(x + 8), b);
    }
    float lane[8];
    _mm256_storeu_ps(lane, _mm256_max_ps(a, b));
    for (int l = 0; l < 8; l++) m = lane[l] > m ? lane[l] : m;
    return m;
}

#endif
