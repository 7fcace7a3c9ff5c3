/*
 * rows_avx512.c - AVX-512 versions of the per-row operations of
 * rows_avx2.c: SwiGLU and the conversion of new keys and values to the F16
 * cache, sixteen lanes at a time.  Each lane computes exactly what the
 * AVX2 version computes (the same exp, division and rounding), so the
 * forward pass gives the same results with either; test_gemm checks them
 * against the scalar twins and against the AVX2 versions.
 */
#include "ops/ops.h"

#if defined(__x86_64__) && defined(__GNUC__)

#include "core/arch/x86/math_avx512.h"

#include <math.h>

EM_A512 void em_swiglu_avx512(float *out, const float *gate, const float *up, int64_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    int64_t i = 0;
    /* The last n % 16 >= 8 elements go through the lanes too (masked), as
     * the AVX2 version takes them in a vector of eight; only the n % 8
     * after those are scalar in both. */
    const int64_t n8 = n & ~(int64_t)7;
    for (; i < n8; i += 16) {
        const __mmask16 k = i + 16 <= n8 ? (__mmask16)0xFFFF : (__mmask16)0x00FF;
        const __m512 g = _mm512_maskz_loadu_ps(k, gate + i);
        /* silu(g) = g / (1 + e^-g); e^-g = inf for g < -88.7 gives -0. */
        const __m512 e = em_exp16_avx512(_mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(g), sign)));
        const __m512 s = _mm512_div_ps(g, _mm512_add_ps(one, e));
        _mm512_mask_storeu_ps(out + i, k, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(k, up + i)));
    }
    for (i = n8; i < n; i++) {
        const float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

EM_A512 void em_f32_to_f16_avx512(uint16_t *dst, const float *src, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(void *)(dst + i),
                            _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++) dst[i] = em_fp32_to_fp16(src[i]);
}

#endif
