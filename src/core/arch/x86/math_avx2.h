/*
 * math_avx2.h - exp and horizontal sum of eight floats for the AVX2/FMA
 * kernels (attention's softmax, SwiGLU, and the dot and GEMM kernels of
 * src/quant/arch/x86).  It lives in core, below both src/ops and
 * src/quant, so that neither kernel layer includes the other.  Include
 * only from files compiled with -mavx2 -mfma.
 */
#ifndef EM_CORE_MATH_AVX2_H
#define EM_CORE_MATH_AVX2_H

#include <immintrin.h>

/* The sum of the eight lanes of v. */
static inline float em_hsum8_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* exp(x): x = n ln2 + r with |r| <= ln2/2 (ln2 split in two so that
 * n ln2 is exact), e^r by its Taylor series to r^7 (truncation error
 * below 6e-9 relative), and 2^n built in the exponent bits.  Below -87.3,
 * where e^x leaves the normal floats, the result is 0 (also for -inf);
 * above 88.7 it is +inf. */
static inline __m256 em_exp8_avx2(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.3f);
    const __m256 keep = _mm256_cmp_ps(x, lo, _CMP_GE_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(88.8f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187045e-06f), r);
    __m256 y = _mm256_set1_ps(1.0f / 5040);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.0f / 720));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.0f / 120));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.0f / 24));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.0f / 6));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(0.5f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.0f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.0f));
    /* 2^n in two factors, so that n = 128 (x near 88.7) still has a
     * representable 2^(n-1) and the product rounds to inf only beyond. */
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i h1 = _mm256_srai_epi32(ni, 1), h2 = _mm256_sub_epi32(ni, h1);
    const __m256 p1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h1, _mm256_set1_epi32(127)), 23));
    const __m256 p2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h2, _mm256_set1_epi32(127)), 23));
    return _mm256_and_ps(_mm256_mul_ps(_mm256_mul_ps(y, p1), p2), keep);
}

#endif
