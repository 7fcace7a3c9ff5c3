/*
 * math_avx512.h - exp of sixteen floats for the AVX-512 kernels of
 * src/ops (attention's softmax, SwiGLU).  The functions carry their target
 * ISA as an attribute, so the including file needs no global ISA flags,
 * but may call them only from functions with the same target (EM_A512)
 * after checking the CPU.
 */
#ifndef EM_CORE_MATH_AVX512_H
#define EM_CORE_MATH_AVX512_H

#include "core/arch/x86/math_exp.h"

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
    __m512 e;
    EM_EXP_REDUCED(512, x, n, e);
    return _mm512_maskz_mov_ps(keep, e);
}

#endif
