/*
 * dot_avx2.c - AVX2/FMA/F16C dot-product kernels for the most used weight
 * formats: F32, F16, Q8_0, Q4_0, Q4_K and Q6_K.
 *
 * Each kernel computes exactly what its scalar twin in dot_generic.c
 * computes: the integer parts (levels times activation quants, times the
 * integer group scales) are exact in both, so results differ only in the
 * order in which the per-block float products are summed.  The build
 * compiles this file with -mavx2 -mfma -mf16c; dispatch.c calls into it
 * only after checking that the CPU has all three.
 *
 * The central trick for int8 x int8 products: _mm256_maddubs_epi16 takes
 * one unsigned and one signed operand, so |x| (unsigned) is multiplied
 * with y carrying x's sign; adjacent pairs are summed into int16 (which
 * cannot overflow for these ranges) and _mm256_madd_epi16 then sums pairs
 * of those into int32.
 */
#include "quant/arch/x86/dot_x86.h"

#if defined(EM_HAVE_X86_KERNELS)

#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "dot_avx2.c must be compiled with -mavx2 -mfma -mf16c"
#endif

#include "quant/blocks.h"
#include "core/core.h"

#include <immintrin.h>

/* ------------------------------------------------------------ helpers */

static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Sum of products of 32 signed bytes, as 8 int32 partial sums. */
static inline __m256i dot_i8(__m256i x, __m256i y) {
    const __m256i ax = _mm256_sign_epi8(x, x);
    const __m256i sy = _mm256_sign_epi8(y, x);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1));
}

/* 16 bytes of nibbles to 32 bytes: low nibbles (elements 0..15) in the
 * low lane, high nibbles (elements 16..31) in the high lane. */
static inline __m256i unpack_nibbles_32(const uint8_t *p) {
    const __m128i b = _mm_loadu_si128((const __m128i *)p);
    const __m256i both = _mm256_set_m128i(_mm_srli_epi16(b, 4), b);
    return _mm256_and_si256(both, _mm256_set1_epi8(15));
}

static inline float fp16(uint16_t h) { return _cvtsh_ss(h); }

/* ------------------------------------------------------------ floats */

float em_vec_dot_f32_avx2(int64_t n, const void *wv, const void *av) {
    const float *w = wv, *a = av;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(a + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(a + i + 8), acc1);
        acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(a + i + 16), acc2);
        acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(a + i + 24), acc3);
    }
    for (; i + 8 <= n; i += 8)
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(a + i), acc0);
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
    for (; i < n; i++) sum += w[i] * a[i];
    return sum;
}

float em_vec_dot_f16_avx2(int64_t n, const void *wv, const void *av) {
    const uint16_t *w = wv;
    const float *a = av;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    int64_t i = 0;
#define EM_LOADH(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm256_fmadd_ps(EM_LOADH(w + i), _mm256_loadu_ps(a + i), acc0);
        acc1 = _mm256_fmadd_ps(EM_LOADH(w + i + 8), _mm256_loadu_ps(a + i + 8), acc1);
        acc2 = _mm256_fmadd_ps(EM_LOADH(w + i + 16), _mm256_loadu_ps(a + i + 16), acc2);
        acc3 = _mm256_fmadd_ps(EM_LOADH(w + i + 24), _mm256_loadu_ps(a + i + 24), acc3);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(EM_LOADH(w + i), _mm256_loadu_ps(a + i), acc0);
#undef EM_LOADH
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
    for (; i < n; i++) sum += fp16(w[i]) * a[i];
    return sum;
}

/* ------------------------------------------------ 32-element formats */

float em_vec_dot_q8_0_avx2(int64_t n, const void *wv, const void *av) {
    const em_block_q8_0 *x = wv;
    const em_block_q8_0 *y = av;
    const int64_t nb = n / EM_QK8_0;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m256i qx = _mm256_loadu_si256((const __m256i *)x[i].qs);
        const __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
        const __m256 d = _mm256_set1_ps(fp16(x[i].d) * fp16(y[i].d));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8(qx, qy)), acc);
    }
    return hsum_ps(acc);
}

float em_vec_dot_q4_0_avx2(int64_t n, const void *wv, const void *av) {
    const em_block_q4_0 *x = wv;
    const em_block_q8_0 *y = av;
    const int64_t nb = n / EM_QK4_0;
    const __m256i eight = _mm256_set1_epi8(8);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m256i qx = _mm256_sub_epi8(unpack_nibbles_32(x[i].qs), eight);
        const __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
        const __m256 d = _mm256_set1_ps(fp16(x[i].d) * fp16(y[i].d));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8(qx, qy)), acc);
    }
    return hsum_ps(acc);
}

/* ------------------------------------------- 256-element super-blocks */

float em_vec_dot_q4_k_avx2(int64_t n, const void *wv, const void *av) {
    const em_block_q4_k *x = wv;
    const em_block_q8_k *y = av;
    const int64_t nb = n / EM_QK_K;
    const __m256i low4 = _mm256_set1_epi8(15);
    __m256 acc = _mm256_setzero_ps();
    float mins = 0;
    for (int64_t i = 0; i < nb; i++) {
        uint8_t sc[8], mn[8];
        int32_t msum = 0;
        for (int g = 0; g < 8; g++) {
            em_q4k_scale_min(x[i].scales, g, &sc[g], &mn[g]);
            msum += mn[g] * (y[i].bsums[2 * g] + y[i].bsums[2 * g + 1]);
        }
        __m256i sumi = _mm256_setzero_si256();
        for (int k = 0; k < 4; k++) {
            /* 32 bytes: low nibbles are group 2k, high nibbles group 2k+1. */
            const __m256i q = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * k));
            const __m256i q0 = _mm256_and_si256(q, low4);
            const __m256i q1 = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
            const __m256i y0 = _mm256_loadu_si256((const __m256i *)(y[i].qs + 64 * k));
            const __m256i y1 = _mm256_loadu_si256((const __m256i *)(y[i].qs + 64 * k + 32));
            /* Levels are 0..15, so maddubs can take them unsigned directly. */
            const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(q0, y0),
                                                 _mm256_set1_epi16(sc[2 * k]));
            const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(q1, y1),
                                                 _mm256_set1_epi16(sc[2 * k + 1]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
        }
        const float d = y[i].d * fp16(x[i].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        mins += y[i].d * fp16(x[i].dmin) * (float)msum;
    }
    return hsum_ps(acc) - mins;
}

float em_vec_dot_q6_k_avx2(int64_t n, const void *wv, const void *av) {
    const em_block_q6_k *x = wv;
    const em_block_q8_k *y = av;
    const int64_t nb = n / EM_QK_K;
    const __m256i low4 = _mm256_set1_epi8(15);
    const __m256i two = _mm256_set1_epi8(3);
    const __m256i bias = _mm256_set1_epi8(32);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[i].ql + 64 * h;
            const __m256i lo0 = _mm256_loadu_si256((const __m256i *)ql);
            const __m256i lo1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            const __m256i hi = _mm256_loadu_si256((const __m256i *)(x[i].qh + 32 * h));
            /* Quarter k of this half: low 4 bits from lo0/lo1 (k & 1), the
             * nibble chosen by k >> 1; high 2 bits at bits 2k of hi. */
            __m256i q[4];
            q[0] = _mm256_and_si256(lo0, low4);
            q[1] = _mm256_and_si256(lo1, low4);
            q[2] = _mm256_and_si256(_mm256_srli_epi16(lo0, 4), low4);
            q[3] = _mm256_and_si256(_mm256_srli_epi16(lo1, 4), low4);
            for (int k = 0; k < 4; k++) {
                const __m256i h2 = _mm256_and_si256(_mm256_srli_epi16(hi, 2 * k), two);
                const __m256i qk = _mm256_or_si256(q[k], _mm256_slli_epi16(h2, 4));
                const __m256i yk =
                    _mm256_loadu_si256((const __m256i *)(y[i].qs + 128 * h + 32 * k));
                /* (q - 32) . y = q . y - 32 . y, each product within int16. */
                const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(qk, yk),
                                                   _mm256_maddubs_epi16(bias, yk));
                /* Bytes 0..15 are group 8h+2k, bytes 16..31 group 8h+2k+1. */
                const int g = 8 * h + 2 * k;
                const __m256i s = _mm256_set_m128i(_mm_set1_epi16(x[i].scales[g + 1]),
                                                   _mm_set1_epi16(x[i].scales[g]));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, s));
            }
        }
        const float d = y[i].d * fp16(x[i].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_ps(acc);
}

#else

/* Not x86-64: nothing to compile here (ISO C wants a declaration). */
typedef int em_dot_avx2_unused;

#endif /* EM_HAVE_X86_KERNELS */
