/*
 * math_avx2.h - exp and horizontal sum of eight floats for the AVX2/FMA
 * kernels (attention's softmax, SwiGLU, and the dot and GEMM kernels of
 * src/quant/arch/x86).  It lives in core, below both src/ops and
 * src/quant, so that neither kernel layer includes the other.  Include
 * only from files compiled with -mavx2 -mfma.
 */
#ifndef EM_CORE_MATH_AVX2_H
#define EM_CORE_MATH_AVX2_H

#include "core/arch/x86/math_exp.h"

#include <immintrin.h>

/* The sum of the eight lanes of v. */
static inline float em_hsum8_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* exp(x) on eight lanes (the reduction and the series: math_exp.h).
 * Below -87.3, where e^x leaves the normal floats, the result is 0 (also
 * for -inf); above 88.7 it is +inf. */
static inline __m256 em_exp8_avx2(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.3f);
    const __m256 keep = _mm256_cmp_ps(x, lo, _CMP_GE_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(88.8f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 e;
    EM_EXP_REDUCED(256, x, n, e);
    return _mm256_and_ps(e, keep);
}

#endif
