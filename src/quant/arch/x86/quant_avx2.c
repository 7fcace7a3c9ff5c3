/*
 * quant_avx2.c - AVX2 versions of the three activation quantizers (Q8_0,
 * Q8_1, Q8_K), which run once per matmul input row and per KV-cache row,
 * and an AVX-512 Q8_0 one (em_quantize_q8_0_avx512, with a target
 * attribute, installed by the AVX-512 set) with the same arithmetic.
 *
 * They write exactly the bytes the scalar quantizers in quantize.c write,
 * for every input including NaN, infinities and ties, so that switching
 * kernel sets never changes a result.  That takes three pieces of care:
 *
 *  - Rounding.  Q8_0/Q8_1 round half away from zero (C's roundf), which no
 *    single AVX instruction does: the value is truncated and then moved one
 *    step away from zero when the dropped fraction is at least 1/2 (the
 *    fraction v - trunc(v) is exact in floating point).  Q8_K rounds to
 *    nearest even in the current rounding mode (lrintf), which is what
 *    vcvtps2dq does under the same MXCSR.
 *  - Saturation.  The scalar code clamps the float to +-1e6 (NaN becoming
 *    -1e6), rounds, then clamps the integer to [-127, 127].  Because
 *    rounding is monotonic and +-127 are integers, clamping the float to
 *    [-127, 127] first gives the same integer; _mm256_max_ps(v, -127)
 *    returns its second operand when v is NaN, which maps NaN to -127 just
 *    as the scalar code does.
 *  - The block maximum.  max over |x| is order-independent unless a NaN is
 *    present, where the scalar loop's "a > b ? a : b" result depends on the
 *    NaN's position.  Q8_0/Q8_1 blocks that contain a NaN are therefore
 *    reduced in the scalar loop's order; Q8_K's "if (|x| > amax)" simply
 *    skips NaNs, as _mm256_max_ps(|x|, m) does with m never NaN.  Q8_K
 *    also needs the sign of the first element of largest magnitude, found
 *    with one compare per 8 elements after the maximum is known.
 *
 * The fp16 scales are converted with the same em_fp32_to_fp16 as the
 * scalar code (one call per 32 elements).
 */
#include "quant/arch/x86/dot_x86.h"

#if defined(EM_HAVE_X86_KERNELS)

#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "quant_avx2.c must be compiled with -mavx2 -mfma -mf16c"
#endif

#include "quant/blocks.h"
#include "core/core.h"

#include <immintrin.h>
#include <math.h>

/* ------------------------------------------------------------ helpers */

/* The scalar quantizer's fp16 scale: saturated at the largest half. */
static inline uint16_t scale_to_fp16(float d) {
    if (d > 65504.0f) d = 65504.0f;
    if (d < -65504.0f) d = -65504.0f;
    return em_fp32_to_fp16(d);
}

static inline __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

static inline float hmax_ps(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* v clamped to [-127, 127], NaN to -127 (see the file comment). */
static inline __m256 clamp127(__m256 v) {
    return _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
}

/* roundf: half away from zero, exactly. */
static inline __m256i round_away_epi32(__m256 v) {
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 frac = abs_ps(_mm256_sub_ps(v, t));
    const __m256 away = _mm256_or_ps(_mm256_and_ps(v, _mm256_set1_ps(-0.0f)), _mm256_set1_ps(1.0f));
    const __m256 step = _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ), away);
    return _mm256_cvttps_epi32(_mm256_add_ps(t, step));
}

/* Four vectors of 8 int32 (each in [-127, 127]) to 32 int8 in order. */
static inline __m256i pack_i8(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    /* packs works per lane: the 32-bit groups come out as a0 b0 c0 d0
     * a1 b1 c1 d1; the permute restores a b c d order. */
    return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd),
                                       _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static inline int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/*
 * One 32-element block of Q8_0/Q8_1: stores the 32 quants at qs, returns
 * the scale d (before fp16 conversion) and the sum of the quants.
 */
static inline float q8_32(const float *x, int8_t *qs, int32_t *sum) {
    __m256 v[4];
    for (int k = 0; k < 4; k++) v[k] = _mm256_loadu_ps(x + 8 * k);
    const __m256 nan = _mm256_or_ps(
        _mm256_or_ps(_mm256_cmp_ps(v[0], v[0], _CMP_UNORD_Q), _mm256_cmp_ps(v[1], v[1], _CMP_UNORD_Q)),
        _mm256_or_ps(_mm256_cmp_ps(v[2], v[2], _CMP_UNORD_Q), _mm256_cmp_ps(v[3], v[3], _CMP_UNORD_Q)));
    float amax;
    if (_mm256_movemask_ps(nan)) {
        amax = 0;
        for (int j = 0; j < 32; j++) amax = EM_MAX(amax, fabsf(x[j]));
    } else {
        amax = hmax_ps(_mm256_max_ps(_mm256_max_ps(abs_ps(v[0]), abs_ps(v[1])),
                                     _mm256_max_ps(abs_ps(v[2]), abs_ps(v[3]))));
    }
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    const __m256 vid = _mm256_set1_ps(id);
    __m256i q[4];
    for (int k = 0; k < 4; k++) q[k] = round_away_epi32(clamp127(_mm256_mul_ps(v[k], vid)));
    _mm256_storeu_si256((__m256i *)qs, pack_i8(q[0], q[1], q[2], q[3]));
    *sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
    return d;
}

/* ------------------------------------------------------------ kernels */

void em_quantize_q8_0_avx2(const float *x, void *yv, int64_t n) {
    em_block_q8_0 *y = yv;
    const int64_t nb = n / EM_QK8_0;
    for (int64_t b = 0; b < nb; b++) {
        int32_t sum;
        const float d = q8_32(x + 32 * b, y[b].qs, &sum);
        y[b].d = scale_to_fp16(d);
    }
}

void em_quantize_q8_1_avx2(const float *x, void *yv, int64_t n) {
    em_block_q8_1 *y = yv;
    const int64_t nb = n / EM_QK8_1;
    for (int64_t b = 0; b < nb; b++) {
        int32_t sum;
        const float d = q8_32(x + 32 * b, y[b].qs, &sum);
        y[b].d = scale_to_fp16(d);
        y[b].s = scale_to_fp16((float)sum * d);
    }
}

/* Q8_0 with AVX-512 F/BW: a block is two 512-bit vectors, and every
 * lane computes what q8_32 computes (the same multiply, clamp, truncation
 * and step away from zero; the maximum over |x| is exact in any order
 * while there is no NaN, and a block with one is reduced in the scalar
 * loop's order as above), so the bytes are the same.  vpmovsdb narrows
 * the int32 quants in order (they lie in [-127, 127], so its saturation
 * never acts), and the quants' sum, which Q8_0 does not store, is not
 * formed.  Activation quantization was 4-5% of a 128-row prompt step of
 * the serve model (dim 768) with q8_32, which spent that time in its
 * element-wise work at 256 bits. */
#define EM_Q512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

EM_Q512 static inline __m512i round_away_512(__m512 v) {
    const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m512 frac = _mm512_abs_ps(_mm512_sub_ps(v, t));
    const __m512 away = _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000u)),
        _mm512_castps_si512(_mm512_set1_ps(1.0f))));
    const __mmask16 ge = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    return _mm512_cvttps_epi32(_mm512_add_ps(t, _mm512_maskz_mov_ps(ge, away)));
}

EM_Q512 void em_quantize_q8_0_avx512(const float *x, void *yv, int64_t n) {
    em_block_q8_0 *y = yv;
    const int64_t nb = n / EM_QK8_0;
    const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    /* Sixteen blocks at a time: their maxima first, then their scales and
     * inverse scales in one vector division each (correctly rounded, as
     * the scalar divisions are), so that no block waits on the latency of
     * its own two divisions; then the quants. */
    for (int64_t b0 = 0; b0 < nb; b0 += 16, x += 16 * 32) {
        const int nk = (int)EM_MIN((int64_t)16, nb - b0);
        float amax[16] = {0};
        for (int k = 0; k < nk; k++) {
            const float *xb = x + 32 * k;
            const __m512 v0 = _mm512_loadu_ps(xb), v1 = _mm512_loadu_ps(xb + 16);
            if (_mm512_cmp_ps_mask(v0, v0, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(v1, v1, _CMP_UNORD_Q)) {
                float m = 0;
                for (int j = 0; j < 32; j++) m = EM_MAX(m, fabsf(xb[j]));
                amax[k] = m;
            } else {
                amax[k] = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
            }
        }
        float d[16], id[16];
        const __m512 vd = _mm512_div_ps(_mm512_loadu_ps(amax), _mm512_set1_ps(127.0f));
        const __mmask16 nz = _mm512_cmp_ps_mask(vd, _mm512_setzero_ps(), _CMP_NEQ_UQ);
        _mm512_storeu_ps(d, vd);
        _mm512_storeu_ps(id, _mm512_maskz_div_ps(nz, _mm512_set1_ps(1.0f), vd));
        for (int k = 0; k < nk; k++) {
            const float *xb = x + 32 * k;
            const __m512 vid = _mm512_set1_ps(id[k]);
            const __m512i q0 = round_away_512(_mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(_mm512_loadu_ps(xb), vid), lo), hi));
            const __m512i q1 =
                round_away_512(_mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(_mm512_loadu_ps(xb + 16), vid), lo), hi));
            em_block_q8_0 *yb = y + b0 + k;
            _mm_storeu_si128((__m128i *)(void *)yb->qs, _mm512_cvtsepi32_epi8(q0));
            _mm_storeu_si128((__m128i *)(void *)(yb->qs + 16), _mm512_cvtsepi32_epi8(q1));
            yb->d = scale_to_fp16(d[k]);
        }
    }
}

/* Q8_K: the first element of largest magnitude maps to -127; bsums are
 * the sums of each 16 quants, from the int32 values before packing. */
void em_quantize_q8_k_avx2(const float *x, void *yv, int64_t n) {
    em_block_q8_k *y = yv;
    const int64_t nb = n / EM_QK_K;
    for (int64_t b = 0; b < nb; b++, x += EM_QK_K, y++) {
        __m256 m = _mm256_setzero_ps();
        for (int k = 0; k < 32; k++) m = _mm256_max_ps(abs_ps(_mm256_loadu_ps(x + 8 * k)), m);
        const float amax = hmax_ps(m);
        if (!(amax > 0)) {
            y->d = 0;
            memset(y->qs, 0, sizeof y->qs);
            memset(y->bsums, 0, sizeof y->bsums);
            continue;
        }
        float vmax = 0;
        const __m256 vam = _mm256_set1_ps(amax);
        for (int k = 0; k < 32; k++) {
            const int hit = _mm256_movemask_ps(
                _mm256_cmp_ps(abs_ps(_mm256_loadu_ps(x + 8 * k)), vam, _CMP_EQ_OQ));
            if (hit) {
                vmax = x[8 * k + __builtin_ctz((unsigned)hit)];
                break;
            }
        }
        const float iscale = -127.0f / vmax;
        const __m256 vis = _mm256_set1_ps(iscale);
        __m256i gsum[16];
        for (int c = 0; c < 8; c++) { /* 32 elements: groups 2c and 2c + 1 */
            __m256i q[4];
            for (int k = 0; k < 4; k++)
                q[k] = _mm256_cvtps_epi32(
                    clamp127(_mm256_mul_ps(_mm256_loadu_ps(x + 32 * c + 8 * k), vis)));
            _mm256_storeu_si256((__m256i *)(y->qs + 32 * c), pack_i8(q[0], q[1], q[2], q[3]));
            gsum[2 * c] = _mm256_add_epi32(q[0], q[1]);
            gsum[2 * c + 1] = _mm256_add_epi32(q[2], q[3]);
        }
        /* Sixteen 8-lane sums to sixteen totals: two rounds of hadd fold
         * four vectors into one whose lanes hold halves of four totals. */
        for (int g = 0; g < 16; g += 4) {
            const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(gsum[g], gsum[g + 1]),
                                                _mm256_hadd_epi32(gsum[g + 2], gsum[g + 3]));
            const __m128i t =
                _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
            _mm_storel_epi64((__m128i *)(y->bsums + g), _mm_packs_epi32(t, t));
        }
        y->d = 1.0f / iscale;
    }
}

#else

/* Not x86-64: nothing to compile here (ISO C wants a declaration). */
typedef int em_quant_avx2_unused;

#endif /* EM_HAVE_X86_KERNELS */
