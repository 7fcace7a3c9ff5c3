/*
 * rows_avx2.c - AVX2/FMA/F16C versions of two per-row operations of the
 * forward pass: SwiGLU (whose exp dominates the feed-forward's row work)
 * and the conversion of new keys and values to the F16 cache.  Their
 * scalar twins are em_swiglu (ops.c) and em_fp32_to_fp16 (core.c); the
 * forward pass picks these only after checking the CPU.
 */
#include "ops/ops.h"

#if defined(__x86_64__) && defined(__GNUC__)

#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "rows_avx2.c must be compiled with -mavx2 -mfma -mf16c"
#endif

#include "core/arch/x86/math_avx2.h"

#include <math.h>

void em_swiglu_avx2(float *out, const float *gate, const float *up, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        /* silu(g) = g / (1 + e^-g); e^-g = inf for g < -88.7 gives -0. */
        const __m256 e = em_exp8_avx2(_mm256_xor_ps(g, sign));
        const __m256 s = _mm256_div_ps(g, _mm256_add_ps(one, e));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++) {
        const float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void em_f32_to_f16_avx2(uint16_t *dst, const float *src, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(void *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++) dst[i] = em_fp32_to_fp16(src[i]);
}

#endif
