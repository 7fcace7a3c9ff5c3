/*
 * math_exp.h - the part of the vector exp that the AVX2 and the AVX-512
 * versions (math_avx2.h, math_avx512.h) share, written once so that the
 * two stay the same operation for operation and so give every lane the
 * same result to the bit.  Only the clamp, the rounding and the final
 * masking differ between the two instruction sets; they stay with each.
 * EM_EXP_REDUCED reads x and n more than once: pass plain variables.
 */
#ifndef EM_CORE_MATH_EXP_H
#define EM_CORE_MATH_EXP_H

/* Ends em_exp8_avx2 / em_exp16_avx512 for vectors of W bits (256 or 512):
 * x is the clamped input and n = round(x log2 e).  x = n ln2 + r with
 * |r| <= ln2/2 (ln2 split in two so that n ln2 is exact), e^r by its
 * Taylor series to r^7 (truncation error below 6e-9 relative), times 2^n
 * built in the exponent bits, in two factors so that n = 128 (x near
 * 88.7) still has a representable 2^(n-1) and the product rounds to inf
 * only beyond.  Stores e^x, not yet masked, in OUT. */
#define EM_EXP_REDUCED(W, x, n, OUT)                                                          \
    do {                                                                                      \
        __m##W r_ = _mm##W##_fnmadd_ps((n), _mm##W##_set1_ps(0.693145751953125f), (x));       \
        r_ = _mm##W##_fnmadd_ps((n), _mm##W##_set1_ps(1.428606765330187045e-06f), r_);        \
        __m##W y_ = _mm##W##_set1_ps(1.0f / 5040);                                            \
        y_ = _mm##W##_fmadd_ps(y_, r_, _mm##W##_set1_ps(1.0f / 720));                         \
        y_ = _mm##W##_fmadd_ps(y_, r_, _mm##W##_set1_ps(1.0f / 120));                         \
        y_ = _mm##W##_fmadd_ps(y_, r_, _mm##W##_set1_ps(1.0f / 24));                          \
        y_ = _mm##W##_fmadd_ps(y_, r_, _mm##W##_set1_ps(1.0f / 6));                           \
        y_ = _mm##W##_fmadd_ps(y_, r_, _mm##W##_set1_ps(0.5f));                               \
        y_ = _mm##W##_fmadd_ps(y_, r_, _mm##W##_set1_ps(1.0f));                               \
        y_ = _mm##W##_fmadd_ps(y_, r_, _mm##W##_set1_ps(1.0f));                               \
        const __m##W##i ni_ = _mm##W##_cvtps_epi32(n);                                        \
        const __m##W##i h1_ = _mm##W##_srai_epi32(ni_, 1);                                    \
        const __m##W##i h2_ = _mm##W##_sub_epi32(ni_, h1_);                                   \
        const __m##W##i bias_ = _mm##W##_set1_epi32(127);                                     \
        const __m##W p1_ =                                                                    \
            _mm##W##_castsi##W##_ps(_mm##W##_slli_epi32(_mm##W##_add_epi32(h1_, bias_), 23)); \
        const __m##W p2_ =                                                                    \
            _mm##W##_castsi##W##_ps(_mm##W##_slli_epi32(_mm##W##_add_epi32(h2_, bias_), 23)); \
        (OUT) = _mm##W##_mul_ps(_mm##W##_mul_ps(y_, p1_), p2_);                               \
    } while (0)

#endif
