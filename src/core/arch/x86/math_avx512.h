/*
 * math_avx512.h - exp of sixteen floats for the AVX-512 kernels of
 * src/ops (attention's softmax, SwiGLU).  The functions carry their target
 * ISA as an attribute, so the including file needs no global ISA flags,
 * but may call them only from functions with the same target (EM_A512)
 * after checking the CPU.
 */
#ifndef EM_CORE_MATH_AVX512_H
#define EM_CORE_MATH_AVX512_H

#include <immintrin.h>

#define EM_A512 __attribute__((target("avx512f,avx512vl,avx2,fma,f16c")))

/* em_exp8_avx2 (math_avx2.h) on sixteen lanes, operation for operation,
 * so that each lane's result is the same to the bit: the AVX-512 kernels
 * that use it give the AVX2 kernels' results. */
static inline __attribute__((always_inline)) EM_A512 __m512 em_exp16_avx512(__m512 x) {
    const __m512 lo = _mm512_set1_ps(-87.3f);
    const __mmask16 keep = _mm512_cmp_ps_mask(x, lo, _CMP_GE_OQ);
    x = _mm512_min_ps(_mm512_max_ps(x, lo), _mm512_set1_ps(88.8f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
    __m512 y = _mm512_set1_ps(1.0f / 5040);
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f / 720));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f / 120));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f / 24));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f / 6));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(0.5f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f));
    const __m512i ni = _mm512_cvtps_epi32(n);
    const __m512i h1 = _mm512_srai_epi32(ni, 1), h2 = _mm512_sub_epi32(ni, h1);
    const __m512 p1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(h1, _mm512_set1_epi32(127)), 23));
    const __m512 p2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(h2, _mm512_set1_epi32(127)), 23));
    return _mm512_maskz_mov_ps(keep, _mm512_mul_ps(_mm512_mul_ps(y, p1), p2));
}

#endif
