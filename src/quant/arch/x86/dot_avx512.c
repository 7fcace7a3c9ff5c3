/*
 * dot_avx512.c - 512-bit AVX-512 dot-product kernels: F32, F16 and BF16
 * (AVX512 F/BW/VL), and Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q4_K, Q5_K
 * Q6_K, Q2_K, Q3_K and IQ4_XS, which also need AVX512-VNNI: every weight
 * type ember reads.  On a CPU without VNNI the integer formats keep their
 * AVX2 kernels.
 *
 * The build gives this file no ISA flags (the CMake rule adds them only
 * to *avx2* files), so each function carries a target attribute instead,
 * which gcc and clang both honour; dispatch.c calls into it only after
 * the CPU check in src/core/cpu.c.  Every helper needs the same attribute, or
 * it could not be inlined into the kernels.
 *
 * What 512 bits and VNNI buy over the AVX2 kernels:
 *  - Twice the bytes per instruction; a 512-bit vector holds two whole
 *    32-element blocks, two Q4_K/Q5_K groups of 32, or four Q6_K groups of
 *    16 (one per 128-bit lane, so group scales are per-lane constants).
 *  - vpdpbusd (unsigned x signed bytes, four products summed into int32,
 *    no int16 saturation) replaces maddubs + madd for the formats with one
 *    scale per block; vpdpwssd fuses the K-quants' int16 x scale step with
 *    the accumulation.
 *  - AVX-512 has no vpsignb, so signed x signed products use |x| and y
 *    negated under the mask of x's sign bits.
 *
 * BF16 weights are widened to float and FMA-ed like F16: the activations
 * are F32, and vdpbf16ps would first round them to bf16, an error of
 * 2^-9 per element that the "agree with the scalar kernel" contract does
 * not allow.  The conversion is a shift, so the kernel is memory-bound
 * anyway.
 *
 * The integer parts are exact as in the AVX2 kernels; activation quants
 * are in [-127, 127].
 */
#include "quant/arch/x86/dot_x86.h"

#if defined(EM_HAVE_X86_KERNELS)

#include "quant/arch/x86/kscales.h"
#include "quant/blocks.h"
#include "core/core.h"

#include <immintrin.h>

#define EM_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define EM_AVX512_VNNI \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

/* ------------------------------------------------------------ floats */

/* A masked head first brings the weight pointer to an ALIGN-byte boundary
 * (at most 15 elements), so that the weight loads of the main loop never
 * straddle two cache lines: a split 64-byte load costs about as much as
 * two, and halved the in-cache speed of the F32 kernel when the rows were
 * only 16-byte aligned.  Then four accumulators over 64 elements, one over
 * 16, and a masked tail (masked-off lanes are neither read nor able to
 * fault). */
#define EM_FLOAT_DOT_512(LOADW, LOADW_MASKED, ALIGN)                                       \
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();                         \
    __m512 acc2 = _mm512_setzero_ps(), acc3 = _mm512_setzero_ps();                         \
    int64_t i = (int64_t)(((ALIGN) - ((uintptr_t)w & ((ALIGN) - 1))) & ((ALIGN) - 1)) /    \
                (int64_t)sizeof *w;                                                        \
    if (i > n) i = n;                                                                      \
    if (i > 0) {                                                                           \
        const __mmask16 m = (__mmask16)((1u << i) - 1);                                    \
        acc3 = _mm512_mul_ps(LOADW_MASKED(m, w), _mm512_maskz_loadu_ps(m, a));               \
    }                                                                                      \
    for (; i + 64 <= n; i += 64) {                                                         \
        acc0 = _mm512_fmadd_ps(LOADW(w + i), _mm512_loadu_ps(a + i), acc0);                \
        acc1 = _mm512_fmadd_ps(LOADW(w + i + 16), _mm512_loadu_ps(a + i + 16), acc1);      \
        acc2 = _mm512_fmadd_ps(LOADW(w + i + 32), _mm512_loadu_ps(a + i + 32), acc2);      \
        acc3 = _mm512_fmadd_ps(LOADW(w + i + 48), _mm512_loadu_ps(a + i + 48), acc3);      \
    }                                                                                      \
    for (; i + 16 <= n; i += 16)                                                           \
        acc0 = _mm512_fmadd_ps(LOADW(w + i), _mm512_loadu_ps(a + i), acc0);                \
    if (i < n) {                                                                           \
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);                              \
        acc1 = _mm512_fmadd_ps(LOADW_MASKED(m, w + i), _mm512_maskz_loadu_ps(m, a + i), acc1); \
    }                                                                                      \
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)))

#define EM_LOAD_F32(p) _mm512_loadu_ps(p)
#define EM_LOAD_F32_M(m, p) _mm512_maskz_loadu_ps((m), (p))
#define EM_LOAD_F16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define EM_LOAD_F16_M(m, p) _mm512_cvtph_ps(_mm256_maskz_loadu_epi16((m), (p)))
#define EM_LOAD_BF16(p) \
    _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16))
#define EM_LOAD_BF16_M(m, p) \
    _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16((m), (p))), 16))

EM_AVX512 float em_vec_dot_f32_avx512(int64_t n, const void *wv, const void *av) {
    const float *w = wv, *a = av;
    EM_FLOAT_DOT_512(EM_LOAD_F32, EM_LOAD_F32_M, 64);
}

EM_AVX512 float em_vec_dot_f16_avx512(int64_t n, const void *wv, const void *av) {
    const uint16_t *w = wv;
    const float *a = av;
    EM_FLOAT_DOT_512(EM_LOAD_F16, EM_LOAD_F16_M, 32);
}

EM_AVX512 float em_vec_dot_bf16_avx512(int64_t n, const void *wv, const void *av) {
    const uint16_t *w = wv;
    const float *a = av;
    EM_FLOAT_DOT_512(EM_LOAD_BF16, EM_LOAD_BF16_M, 32);
}

/* ------------------------------------------------------------ helpers */

EM_AVX512_VNNI static inline float fp16(uint16_t h) { return _cvtsh_ss(h); }

EM_AVX512_VNNI static inline float hsum_256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ------------------------------------------------ 32-element formats */

/*
 * The fp16 fields at byte `off` of eight consecutive blocks of `stride`
 * bytes (16 <= stride <= 64, both even), as eight int16 lanes.  Converting
 * block scales one at a time costs as many instructions as the dot itself,
 * so they are picked out of four 64-byte loads with two vpermt2w (int16
 * index (j * stride + off) / 2) and converted at once.  Blocks 0-3 come
 * from the first 128 bytes, blocks 4-7 from 128 bytes that end at the end
 * of block 7 (or start at block 4 when blocks are 32 bytes or more), so
 * nothing past the eight blocks is read.  stride and off are constants
 * after inlining, so are the index vectors.
 */
EM_AVX512_VNNI static inline __m128i halves8(const void *base, int stride, int off) {
    const uint8_t *p = base;
    const int b2 = stride >= 32 ? 4 * stride : 8 * stride - 128;
    const int o2 = 4 * stride + off - b2;
    const __m512i i1 = _mm512_set_epi16(
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        (short)((3 * stride + off) / 2), (short)((2 * stride + off) / 2),
        (short)((stride + off) / 2), (short)(off / 2));
    const __m512i i2 = _mm512_set_epi16(
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        (short)((3 * stride + o2) / 2), (short)((2 * stride + o2) / 2),
        (short)((stride + o2) / 2), (short)(o2 / 2));
    const __m512i lo = _mm512_permutex2var_epi16(_mm512_loadu_si512(p), i1, _mm512_loadu_si512(p + 64));
    const __m512i hi =
        _mm512_permutex2var_epi16(_mm512_loadu_si512(p + b2), i2, _mm512_loadu_si512(p + b2 + 64));
    return _mm_unpacklo_epi64(_mm512_castsi512_si128(lo), _mm512_castsi512_si128(hi));
}

/* The products of the fp16 fields at xoff / yoff of eight blocks of x and y. */
#define EM_SCALES8(xp, yp, xoff, yoff)                                                    \
    _mm256_mul_ps(_mm256_cvtph_ps(halves8((xp), (int)sizeof *(xp), (xoff))),               \
                  _mm256_cvtph_ps(halves8((yp), (int)sizeof *(yp), (yoff))))

/* Scale 2p in the low 8 lanes and 2p + 1 in the high 8, from 8 scales. */
EM_AVX512_VNNI static inline __m512 scale_pair(__m256 s8, int p) {
    const __m512i idx = _mm512_inserti64x4(_mm512_set1_epi32(2 * p), _mm256_set1_epi32(2 * p + 1), 1);
    return _mm512_permutexvar_ps(idx, _mm512_castps256_ps512(s8));
}

/* A vector of d0 in the low 8 lanes and d1 in the high 8. */
EM_AVX512_VNNI static inline __m512 scale_2(float d0, float d1) {
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_set1_ps(d0)),
                                               _mm256_castps_pd(_mm256_set1_ps(d1)), 1));
}

/* Blocks p0 and p1's 32 bytes as one vector (p0 in the low half). */
EM_AVX512_VNNI static inline __m512i load_2x32(const void *p0, const void *p1) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)p0)),
                              _mm256_loadu_si256((const __m256i *)p1), 1);
}

/* Signed x signed bytes, four products per int32 lane. */
EM_AVX512_VNNI static inline __m512i dot_i8_512(__m512i x, __m512i y) {
    const __m512i sy = _mm512_mask_sub_epi8(y, _mm512_movepi8_mask(x), _mm512_setzero_si512(), y);
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(x), sy);
}

EM_AVX512_VNNI static inline __m256i dot_i8_256(__m256i x, __m256i y) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(x, x),
                               _mm256_sign_epi8(y, x));
}

/* Two blocks' 16 bytes of nibbles as 64 levels in element order: block
 * p0's low nibbles, its high nibbles, then p1's. */
EM_AVX512_VNNI static inline __m512i nibbles_2x16(const uint8_t *p0, const uint8_t *p1) {
    const __m256i t = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)p0)),
        _mm_loadu_si128((const __m128i *)p1), 1);
    /* 128-bit chunks: p0 lo, p1 lo, p0 hi, p1 hi; reorder to p0 lo, p0 hi,
     * p1 lo, p1 hi. */
    const __m512i u = _mm512_inserti64x4(_mm512_castsi256_si512(t), _mm256_srli_epi16(t, 4), 1);
    return _mm512_and_si512(_mm512_shuffle_i64x2(u, u, 0xd8), _mm512_set1_epi8(15));
}

EM_AVX512_VNNI static inline __m256i nibbles_16(const uint8_t *p) {
    const __m128i b = _mm_loadu_si128((const __m128i *)p);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), _mm256_set1_epi8(15));
}

/*
 * The 32-element kernels share a loop: LEVELS2(i) gives blocks i and
 * i + 1's levels as one 512-bit vector, LEVELS1(i) block i's as 256 bits,
 * and DOT2/DOT1 their int32 dot with the activation quants.  Eight blocks per iteration in two
 * accumulators, then pairs, then a last odd block, the last two with
 * scalar scale conversion.  Leaves the total in `sum`.
 */
#define EM_BLOCK32_LOOP(LEVELS2, DOT2, LEVELS1, DOT1)                                      \
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();                         \
    int64_t i = 0;                                                                         \
    for (; i + 8 <= nb; i += 8) {                                                          \
        const __m256 s8 = EM_SCALES8(&x[i], &y[i], 0, 0);                                  \
        for (int p = 0; p < 4; p += 2) {                                                   \
            const __m512i d0 = DOT2(LEVELS2(i + 2 * p), load_2x32(y[i + 2 * p].qs, y[i + 2 * p + 1].qs)); \
            const __m512i d1 =                                                             \
                DOT2(LEVELS2(i + 2 * p + 2), load_2x32(y[i + 2 * p + 2].qs, y[i + 2 * p + 3].qs)); \
            acc0 = _mm512_fmadd_ps(scale_pair(s8, p), _mm512_cvtepi32_ps(d0), acc0);        \
            acc1 = _mm512_fmadd_ps(scale_pair(s8, p + 1), _mm512_cvtepi32_ps(d1), acc1);    \
        }                                                                                  \
    }                                                                                      \
    for (; i + 2 <= nb; i += 2) {                                                          \
        const __m512i d01 = DOT2(LEVELS2(i), load_2x32(y[i].qs, y[i + 1].qs));             \
        acc0 = _mm512_fmadd_ps(scale_2(fp16(x[i].d) * fp16(y[i].d),                        \
                                       fp16(x[i + 1].d) * fp16(y[i + 1].d)),               \
                               _mm512_cvtepi32_ps(d01), acc0);                             \
    }                                                                                      \
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));                           \
    if (i < nb) {                                                                          \
        const __m256i d = DOT1(LEVELS1(i), _mm256_loadu_si256((const __m256i *)y[i].qs));  \
        const __m256 p = _mm256_mul_ps(_mm256_set1_ps(fp16(x[i].d) * fp16(y[i].d)),        \
                                       _mm256_cvtepi32_ps(d));                             \
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(p), _mm256_extractf128_ps(p, 1));     \
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));                                            \
        s = _mm_add_ss(s, _mm_movehdup_ps(s));                                             \
        sum += _mm_cvtss_f32(s);                                                           \
    }

/* Unsigned levels u with a constant bias: (u - bias) . y = u . y - bias . y,
 * the second term one more vpdpbusd on a constant. */
EM_AVX512_VNNI static inline __m512i dot_biased2(__m512i u, __m512i y, char bias) {
    return _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u, y),
                            _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(bias), y));
}

EM_AVX512_VNNI static inline __m256i dot_biased1(__m256i u, __m256i y, char bias) {
    return _mm256_sub_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, y),
                            _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(bias), y));
}

EM_AVX512_VNNI static inline __m512i dot_u2(__m512i u, __m512i y) {
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, y);
}

EM_AVX512_VNNI static inline __m256i dot_u1(__m256i u, __m256i y) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, y);
}

EM_AVX512_VNNI float em_vec_dot_q8_0_avx512(int64_t n, const void *wv, const void *av) {
    const em_block_q8_0 *x = wv;
    const em_block_q8_0 *y = av;
    const int64_t nb = n / EM_QK8_0;
#define EM_L2(i) load_2x32(x[i].qs, x[(i) + 1].qs)
#define EM_L1(i) _mm256_loadu_si256((const __m256i *)x[i].qs)
    EM_BLOCK32_LOOP(EM_L2, dot_i8_512, EM_L1, dot_i8_256);
#undef EM_L2
#undef EM_L1
    return sum;
}

/* The levels of blocks i and i + 1 (L2) or of block i (L1) of x: the bare
 * nibbles (Q4_0, Q4_1) or nibble + 16 * fifth bit (Q5_0, Q5_1, with
 * q5_levels2/1 below). */
#define EM_NIB_L2(i) nibbles_2x16(x[i].qs, x[(i) + 1].qs)
#define EM_NIB_L1(i) nibbles_16(x[i].qs)
#define EM_Q5_L2(i) q5_levels2(x[i].qs, x[i].qh, x[(i) + 1].qs, x[(i) + 1].qh)
#define EM_Q5_L1(i) q5_levels1(x[i].qs, x[i].qh)

/* Q4_0: levels q - 8, with the -8 taken out as 8 * sum(a) by a second
 * vpdpbusd (dot_biased2, below) rather than by making the levels signed. */
#define EM_DOT_B8_2(u, y) dot_biased2((u), (y), 8)
#define EM_DOT_B8_1(u, y) dot_biased1((u), (y), 8)

EM_AVX512_VNNI float em_vec_dot_q4_0_avx512(int64_t n, const void *wv, const void *av) {
    const em_block_q4_0 *x = wv;
    const em_block_q8_0 *y = av;
    const int64_t nb = n / EM_QK4_0;
    EM_BLOCK32_LOOP(EM_NIB_L2, EM_DOT_B8_2, EM_NIB_L1, EM_DOT_B8_1);
    return sum;
}

/* IQ4_NL: table lookup of the nibbles (vpshufb works per 128-bit lane, so
 * the 16-entry table is repeated in every lane). */
EM_AVX512_VNNI float em_vec_dot_iq4_nl_avx512(int64_t n, const void *wv, const void *av) {
    const em_block_iq4_nl *x = wv;
    const em_block_q8_0 *y = av;
    const int64_t nb = n / EM_QK4_NL;
    const __m128i t128 = _mm_loadu_si128((const __m128i *)em_iq4nl_values);
    const __m512i table = _mm512_broadcast_i32x4(t128);
    const __m256i table256 = _mm256_broadcastsi128_si256(t128);
#define EM_L2(i) _mm512_shuffle_epi8(table, nibbles_2x16(x[i].qs, x[(i) + 1].qs))
#define EM_L1(i) _mm256_shuffle_epi8(table256, nibbles_16(x[i].qs))
    EM_BLOCK32_LOOP(EM_L2, dot_i8_512, EM_L1, dot_i8_256);
#undef EM_L2
#undef EM_L1
    return sum;
}

/* Q5_0/Q5_1 levels nibble + 16 * bit in 0..31: the 32 fifth bits of a
 * block are a ready-made byte mask for a masked add. */
EM_AVX512_VNNI static inline __m512i q5_levels2(const uint8_t *qs0, const uint8_t *qh0,
                                               const uint8_t *qs1, const uint8_t *qh1) {
    uint32_t h0, h1;
    memcpy(&h0, qh0, 4);
    memcpy(&h1, qh1, 4);
    const __m512i q = nibbles_2x16(qs0, qs1);
    return _mm512_mask_add_epi8(q, (__mmask64)((uint64_t)h0 | (uint64_t)h1 << 32), q,
                                _mm512_set1_epi8(16));
}

EM_AVX512_VNNI static inline __m256i q5_levels1(const uint8_t *qs, const uint8_t *qh) {
    uint32_t h;
    memcpy(&h, qh, 4);
    const __m256i q = nibbles_16(qs);
    return _mm256_mask_add_epi8(q, (__mmask32)h, q, _mm256_set1_epi8(16));
}

/* The offset terms of Q4_1/Q5_1: sum of m * s over the blocks (m at byte
 * 2 of a weight block, s at byte 2 of a Q8_1 block). */
#define EM_OFFSETS_Q8_1()                                                                 \
    do {                                                                                  \
        __m256 macc = _mm256_setzero_ps();                                                \
        int64_t j = 0;                                                                    \
        for (; j + 8 <= nb; j += 8) macc = _mm256_add_ps(macc, EM_SCALES8(&x[j], &y[j], 2, 2)); \
        sum += hsum_256(macc);                                                            \
        for (; j < nb; j++) sum += fp16(x[j].m) * fp16(y[j].s);                           \
    } while (0)

#define EM_DOT_B16_2(u, y) dot_biased2((u), (y), 16)
#define EM_DOT_B16_1(u, y) dot_biased1((u), (y), 16)

EM_AVX512_VNNI float em_vec_dot_q4_1_avx512(int64_t n, const void *wv, const void *av) {
    const em_block_q4_1 *x = wv;
    const em_block_q8_1 *y = av;
    const int64_t nb = n / EM_QK4_1;
    EM_BLOCK32_LOOP(EM_NIB_L2, dot_u2, EM_NIB_L1, dot_u1);
    EM_OFFSETS_Q8_1();
    return sum;
}

EM_AVX512_VNNI float em_vec_dot_q5_0_avx512(int64_t n, const void *wv, const void *av) {
    const em_block_q5_0 *x = wv;
    const em_block_q8_0 *y = av;
    const int64_t nb = n / EM_QK5_0;
    EM_BLOCK32_LOOP(EM_Q5_L2, EM_DOT_B16_2, EM_Q5_L1, EM_DOT_B16_1);
    return sum;
}

EM_AVX512_VNNI float em_vec_dot_q5_1_avx512(int64_t n, const void *wv, const void *av) {
    const em_block_q5_1 *x = wv;
    const em_block_q8_1 *y = av;
    const int64_t nb = n / EM_QK5_1;
    EM_BLOCK32_LOOP(EM_Q5_L2, dot_u2, EM_Q5_L1, dot_u1);
    EM_OFFSETS_Q8_1();
    return sum;
}

/* ------------------------------------------- 256-element super-blocks */

/* The shuffle control that spreads int16 scale g0 over the low 256 bits
 * and g1 over the high 256 bits of a vector whose every 128-bit lane
 * holds the eight scales. */
EM_AVX512_VNNI static inline __m512i scale_pair_ctl(int g0, int g1) {
    return _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_set1_epi16((short)((2 * g0) | ((2 * g0 + 1) << 8)))),
        _mm256_set1_epi16((short)((2 * g1) | ((2 * g1 + 1) << 8))), 1);
}

/* Element e of a scale vector takes group e / 8 (plus a base added by the
 * caller): one 16-element group per 128-bit lane. */
EM_AVX512_VNNI static inline __m512i lane_groups(int base) {
    return _mm512_add_epi16(_mm512_set_epi64(0x0003000300030003, 0x0003000300030003,
                                             0x0002000200020002, 0x0002000200020002,
                                             0x0001000100010001, 0x0001000100010001, 0, 0),
                            _mm512_set1_epi16((short)base));
}

/* sumi plus half h of a super-block: levels qa for elements 128h .. 128h +
 * 63 and qb for the next 64, against the activation quants at yq (128h of
 * the block), each 128-bit lane of 16 products times its group's scale
 * taken from the int16 scales in the low 256 bits of s512 (Q2_K, Q3_K,
 * Q6_K). */
EM_AVX512_VNNI static inline __m512i add_half(__m512i sumi, __m512i qa, __m512i qb,
                                             const int8_t *yq, __m512i s512, int h) {
    const __m512i sa = _mm512_permutexvar_epi16(lane_groups(8 * h), s512);
    const __m512i sb = _mm512_permutexvar_epi16(lane_groups(8 * h + 4), s512);
    sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(qa, _mm512_loadu_si512(yq)), sa);
    return _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(qb, _mm512_loadu_si512(yq + 64)), sb);
}

/* The start of a super-block's sum for levels with a constant bias of
 * -2^shift (Q3_K's -4, Q6_K's -32): -2^shift * sum_g scale_g * bsum_g,
 * exact in int32, in the low 256 bits. */
EM_AVX512_VNNI static inline __m512i bias_bsums_512(__m256i s16, const int16_t *bsums,
                                                   int shift) {
    const __m256i bias = _mm256_slli_epi32(
        _mm256_madd_epi16(s16, _mm256_loadu_si256((const __m256i *)bsums)), shift);
    return _mm512_inserti64x4(_mm512_setzero_si512(),
                              _mm256_sub_epi32(_mm256_setzero_si256(), bias), 0);
}

/* Q4_K/Q5_K super-block: chunk k of qs gives groups 2k and 2k + 1, i.e.
 * the 64 activation quants at 64k, as [low nibbles | high nibbles].  For
 * Q5_K, qh2 holds qh in its low half and qh >> 1 in its high half, so bit
 * 2k of either half is bit 4 of the levels of group 2k / 2k + 1.  Returns
 * the int32 level sums (scaled) and stores the 8 int32 min sums. */
EM_AVX512_VNNI static inline __m512i q45k_block_512(const uint8_t *scales, const uint8_t *qs,
                                                   const uint8_t *qh, const em_block_q8_k *y,
                                                   __m256i *msum) {
    uint64_t sc64, mn64;
    em_q4k_scales8(scales, &sc64, &mn64);
    const __m128i mn16 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mn64));
    *msum = _mm256_madd_epi16(
        _mm256_set_m128i(_mm_unpackhi_epi16(mn16, mn16), _mm_unpacklo_epi16(mn16, mn16)),
        _mm256_loadu_si256((const __m256i *)y->bsums));
    const __m512i sc16 =
        _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc64)));
    const __m512i low4 = _mm512_set1_epi8(15), b4 = _mm512_set1_epi8(16);
    __m512i qh2 = _mm512_setzero_si512();
    if (qh) {
        const __m256i h = _mm256_loadu_si256((const __m256i *)qh);
        qh2 = _mm512_inserti64x4(_mm512_castsi256_si512(h), _mm256_srli_epi16(h, 1), 1);
    }
    __m512i acc = _mm512_setzero_si512();
    for (int k = 0; k < 4; k++) {
        const __m256i c = _mm256_loadu_si256((const __m256i *)(qs + 32 * k));
        __m512i q = _mm512_and_si512(
            _mm512_inserti64x4(_mm512_castsi256_si512(c), _mm256_srli_epi16(c, 4), 1), low4);
        if (qh) {
            /* Bit 2k to bit 4: 16-bit shifts by at most 4 keep it in its byte. */
            const __m512i hb = k == 0   ? _mm512_slli_epi16(qh2, 4)
                               : k == 1 ? _mm512_slli_epi16(qh2, 2)
                               : k == 2 ? qh2
                                        : _mm512_srli_epi16(qh2, 2);
            q = _mm512_or_si512(q, _mm512_and_si512(hb, b4));
        }
        const __m512i p = _mm512_maddubs_epi16(q, _mm512_loadu_si512(y->qs + 64 * k));
        acc = _mm512_dpwssd_epi32(acc, p, _mm512_shuffle_epi8(sc16, scale_pair_ctl(2 * k, 2 * k + 1)));
    }
    return acc;
}

/* The loop over the super-blocks of Q4_K and Q5_K: QH is the block's qh
 * for Q5_K, NULL for Q4_K. */
#define EM_Q45K_LOOP_512(QH)                                                              \
    const int64_t nb = n / EM_QK_K;                                                       \
    __m512 acc = _mm512_setzero_ps();                                                     \
    __m256 accm = _mm256_setzero_ps();                                                    \
    for (int64_t i = 0; i < nb; i++) {                                                    \
        __m256i msum;                                                                     \
        const __m512i s = q45k_block_512(x[i].scales, x[i].qs, (QH), &y[i], &msum);      \
        acc = _mm512_fmadd_ps(_mm512_set1_ps(y[i].d * fp16(x[i].d)), _mm512_cvtepi32_ps(s), acc); \
        accm = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * fp16(x[i].dmin)),                   \
                               _mm256_cvtepi32_ps(msum), accm);                           \
    }                                                                                     \
    return _mm512_reduce_add_ps(acc) - hsum_256(accm)

EM_AVX512_VNNI float em_vec_dot_q4_k_avx512(int64_t n, const void *wv, const void *av) {
    const em_block_q4_k *x = wv;
    const em_block_q8_k *y = av;
    EM_Q45K_LOOP_512(NULL);
}

EM_AVX512_VNNI float em_vec_dot_q5_k_avx512(int64_t n, const void *wv, const void *av) {
    const em_block_q5_k *x = wv;
    const em_block_q8_k *y = av;
    EM_Q45K_LOOP_512(x[i].qh);
}

#undef EM_Q45K_LOOP_512

/*
 * Q6_K: the 64 elements 128h .. 128h + 63 are the low nibbles of ql[64h ..
 * 64h + 63] with qh bits 0-1 (first 32) and 2-3 (next 32) on top; elements
 * 128h + 64 .. 127 the high nibbles with bits 4-5 and 6-7.  With qh2 =
 * [qh | qh >> 2], the high bits are (qh2 << 4) & 0x30 and qh2 & 0x30.  Each
 * 128-bit lane of 16 levels is one group, so the signed group scales are
 * spread one per lane with vpermw.  The -32 bias comes back through bsums.
 */
EM_AVX512_VNNI float em_vec_dot_q6_k_avx512(int64_t n, const void *wv, const void *av) {
    const em_block_q6_k *x = wv;
    const em_block_q8_k *y = av;
    const int64_t nb = n / EM_QK_K;
    const __m512i low4 = _mm512_set1_epi8(15), hi2 = _mm512_set1_epi8(0x30);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));
        __m512i sumi = bias_bsums_512(s16, y[i].bsums, 5);
        const __m512i s512 = _mm512_castsi256_si512(s16);
        for (int h = 0; h < 2; h++) {
            const __m512i ql = _mm512_loadu_si512(x[i].ql + 64 * h);
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(x[i].qh + 32 * h));
            const __m512i qh2 =
                _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
            const __m512i qa = _mm512_or_si512(_mm512_and_si512(ql, low4),
                                               _mm512_and_si512(_mm512_slli_epi16(qh2, 4), hi2));
            const __m512i qb = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), low4),
                                               _mm512_and_si512(qh2, hi2));
            sumi = add_half(sumi, qa, qb, y[i].qs + 128 * h, s512, h);
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(y[i].d * fp16(x[i].d)), _mm512_cvtepi32_ps(sumi),
                              acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/*
 * Q2_K: the 64 elements 128h .. 128h + 63 are bits 0-1 (first 32) and 2-3
 * (next 32) of qs[32h ..], the next 64 bits 4-5 and 6-7: with q2 =
 * [qs | qs >> 2], q2 & 3 and (q2 >> 4) & 3.  Groups of 16 are 128-bit
 * lanes, as in Q6_K; the mins multiply the bsums as in the AVX2 kernel.
 */
EM_AVX512_VNNI float em_vec_dot_q2_k_avx512(int64_t n, const void *wv, const void *av) {
    const em_block_q2_k *x = wv;
    const em_block_q8_k *y = av;
    const int64_t nb = n / EM_QK_K;
    const __m512i m3 = _mm512_set1_epi8(3);
    __m512 acc = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m128i sc8 = _mm_loadu_si128((const __m128i *)x[i].scales);
        const __m256i msum = _mm256_madd_epi16(
            _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc8, 4), _mm_set1_epi8(15))),
            _mm256_loadu_si256((const __m256i *)y[i].bsums));
        const __m512i s512 =
            _mm512_castsi256_si512(_mm256_cvtepu8_epi16(_mm_and_si128(sc8, _mm_set1_epi8(15))));
        __m512i sumi = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
            const __m512i q2 =
                _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 2), 1);
            const __m512i qa = _mm512_and_si512(q2, m3);
            const __m512i qb = _mm512_and_si512(_mm512_srli_epi16(q2, 4), m3);
            sumi = add_half(sumi, qa, qb, y[i].qs + 128 * h, s512, h);
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(y[i].d * fp16(x[i].d)), _mm512_cvtepi32_ps(sumi), acc);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * fp16(x[i].dmin)), _mm256_cvtepi32_ps(msum),
                               accm);
    }
    return _mm512_reduce_add_ps(acc) - hsum_256(accm);
}

/* The sixteen Q3_K group scales (biased by +32), group g in byte g. */
EM_AVX512_VNNI static inline __m128i q3k_scales_vec(const uint8_t *scales) {
    uint32_t w[4];
    em_q3k_scales16(scales, w);
    return _mm_set_epi32((int)w[3], (int)w[2], (int)w[1], (int)w[0]);
}

/*
 * Q3_K: Q2_K's layout for the low two bits, plus bit 2 of the level for
 * element 128h + 32k + l in bit 4h + k of hmask[l].  With hm2 = [hmask |
 * hmask >> 1], bit 4h (k = 0, 1) and bit 4h + 2 (k = 2, 3) of hm2 hold
 * them for a 64-element half.  Levels enter unsigned (0..7); the -4 comes
 * back as -4 * sum_g scale_g * bsum_g.
 */
EM_AVX512_VNNI float em_vec_dot_q3_k_avx512(int64_t n, const void *wv, const void *av) {
    const em_block_q3_k *x = wv;
    const em_block_q8_k *y = av;
    const int64_t nb = n / EM_QK_K;
    const __m512i m3 = _mm512_set1_epi8(3), b2 = _mm512_set1_epi8(4);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m256i s16 = _mm256_cvtepi8_epi16(
            _mm_sub_epi8(q3k_scales_vec(x[i].scales), _mm_set1_epi8(32)));
        __m512i sumi = bias_bsums_512(s16, y[i].bsums, 2);
        const __m512i s512 = _mm512_castsi256_si512(s16);
        const __m256i hm = _mm256_loadu_si256((const __m256i *)x[i].hmask);
        const __m512i hm2 =
            _mm512_inserti64x4(_mm512_castsi256_si512(hm), _mm256_srli_epi16(hm, 1), 1);
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
            const __m512i q2 =
                _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 2), 1);
            /* Bit 4h to bit 2, and bit 4h + 2 to bit 2 (16-bit shifts by at
             * most 4 keep every bit in its byte). */
            const __m512i ha = h == 0 ? _mm512_slli_epi16(hm2, 2) : _mm512_srli_epi16(hm2, 2);
            const __m512i hb = h == 0 ? hm2 : _mm512_srli_epi16(hm2, 4);
            const __m512i qa = _mm512_or_si512(_mm512_and_si512(q2, m3), _mm512_and_si512(ha, b2));
            const __m512i qb = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(q2, 4), m3),
                                               _mm512_and_si512(hb, b2));
            sumi = add_half(sumi, qa, qb, y[i].qs + 128 * h, s512, h);
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(y[i].d * fp16(x[i].d)), _mm512_cvtepi32_ps(sumi), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/*
 * IQ4_XS: 32 bytes of qs are groups 2j and 2j + 1 (16 bytes each, packed
 * as IQ4_NL blocks), i.e. the 64 activation quants at 64j once the nibbles
 * are put in element order; table lookup, signed x signed products via
 * |v| and the sign-adjusted activation, group scale in vpdpwssd.
 */
EM_AVX512_VNNI float em_vec_dot_iq4_xs_avx512(int64_t n, const void *wv, const void *av) {
    const em_block_iq4_xs *x = wv;
    const em_block_q8_k *y = av;
    const int64_t nb = n / EM_QK_K;
    const __m512i table = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)em_iq4nl_values));
    const __m512i low4 = _mm512_set1_epi8(15);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m128i ls = _mm_sub_epi8(_mm_cvtsi64_si128((long long)em_iq4xs_scales8(&x[i])),
                                        _mm_set1_epi8(32));
        const __m512i s16 = _mm512_broadcast_i32x4(_mm_cvtepi8_epi16(ls));
        __m512i sumi = _mm512_setzero_si512();
        for (int j = 0; j < 4; j++) {
            const __m256i t = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * j));
            const __m512i u = _mm512_inserti64x4(_mm512_castsi256_si512(t), _mm256_srli_epi16(t, 4), 1);
            const __m512i v = _mm512_shuffle_epi8(
                table, _mm512_and_si512(_mm512_shuffle_i64x2(u, u, 0xd8), low4));
            const __m512i yv = _mm512_loadu_si512(y[i].qs + 64 * j);
            const __m512i sy = _mm512_mask_sub_epi8(yv, _mm512_movepi8_mask(v), _mm512_setzero_si512(), yv);
            sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(_mm512_abs_epi8(v), sy),
                                       _mm512_shuffle_epi8(s16, scale_pair_ctl(2 * j, 2 * j + 1)));
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(y[i].d * fp16(x[i].d)), _mm512_cvtepi32_ps(sumi), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

#else

/* Not x86-64: nothing to compile here (ISO C wants a declaration). */
typedef int em_dot_avx512_unused;

#endif /* EM_HAVE_X86_KERNELS */
