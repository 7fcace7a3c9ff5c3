/*
 * dot_avx2.c - AVX2/FMA/F16C dot-product kernels for every weight format
 * ember reads: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, Q2_K,
 * Q3_K, Q4_K, Q5_K, Q6_K and IQ4_XS.
 *
 * Each kernel computes exactly what its scalar twin in dot_generic.c
 * computes: the integer parts (levels times activation quants, times the
 * integer group scales, minus the integer bias and min terms) are exact in
 * both, so results differ only in the order in which the per-block float
 * products are summed.  The build compiles this file with -mavx2 -mfma
 * -mf16c; dispatch.c calls into it only after checking that the CPU has
 * all three.
 *
 * The central trick for int8 x int8 products: _mm256_maddubs_epi16 takes
 * one unsigned and one signed operand, so |x| (unsigned) is multiplied
 * with y carrying x's sign; adjacent pairs are summed into int16 (which
 * cannot overflow for these ranges: |x|, |y| <= 128 and 127) and
 * _mm256_madd_epi16 then sums pairs of those into int32, multiplying by
 * an int16 group scale on the way where the format has one.  Formats whose
 * levels are non-negative (Q4_1, Q5_1, the K-quants' unsigned levels) go
 * straight into maddubs; a constant bias on the levels (Q3_K's -4, Q6_K's
 * -32) is taken out afterwards with the activation's precomputed group
 * sums (Q8_K's bsums), as are the K-quants' mins.
 *
 * Activation quants are in [-127, 127] (the activation quantizers clamp
 * there), which the int16 bounds above rely on.
 */
#include "quant/arch/x86/dot_x86.h"

#if defined(EM_HAVE_X86_KERNELS)

#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "dot_avx2.c must be compiled with -mavx2 -mfma -mf16c"
#endif

#include "quant/arch/x86/kscales.h"
#include "core/arch/x86/math_avx2.h"
#include "quant/blocks.h"
#include "core/core.h"

#include <immintrin.h>

/* ------------------------------------------------------------ helpers */

/* Sum of products of 32 signed bytes, as 8 int32 partial sums. */
static inline __m256i dot_i8(__m256i x, __m256i y) {
    const __m256i ax = _mm256_sign_epi8(x, x);
    const __m256i sy = _mm256_sign_epi8(y, x);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1));
}

/* Sum of products of 32 unsigned bytes u (each < 128) with signed y. */
static inline __m256i dot_u8(__m256i u, __m256i y) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, y), _mm256_set1_epi16(1));
}

/* 16 bytes of nibbles as 32 levels in element order (low nibbles are
 * elements 0..15, high nibbles 16..31): one broadcast load, a shift of the
 * upper lane only, one mask. */
static inline __m256i nibbles_32(const uint8_t *p) {
    const __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    return _mm256_and_si256(_mm256_srlv_epi32(b, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)),
                            _mm256_set1_epi8(15));
}

/* The 32 fifth bits of a Q5_0/Q5_1 block (bit e of qh is element e) as
 * bytes: 0xff where the bit is set, 0 elsewhere.  Each byte first gets a
 * copy of the qh byte holding its bit, then is tested against its bit. */
static inline __m256i q5_high_mask(const uint8_t qh[4]) {
    uint32_t h;
    memcpy(&h, qh, 4);
    const __m256i spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32((int)h),
        _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
}

/* v holds eight int16 values in each lane (both lanes alike); returns
 * value g (0..7) repeated over all 16 slots.  g is a constant after the
 * callers' loops unroll, so the shuffle control is a constant. */
static inline __m256i bcast_i16(__m256i v, int g) {
    return _mm256_shuffle_epi8(v, _mm256_set1_epi16((short)((2 * g) | ((2 * g + 1) << 8))));
}

/* s16h holds the eight int16 group scales of one half super-block in both
 * lanes (lane_bcast below); returns scale 2j in the low lane and 2j + 1 in
 * the high lane, the layout of 32 quants covering two groups of 16. */
static inline __m256i pair_i16(__m256i s16h, int j) {
    const short lo = (short)((4 * j) | ((4 * j + 1) << 8));
    const short hi = (short)((4 * j + 2) | ((4 * j + 3) << 8));
    return _mm256_shuffle_epi8(s16h, _mm256_set_m128i(_mm_set1_epi16(hi), _mm_set1_epi16(lo)));
}

/* Lane h (0 or 1) of v copied into both lanes. */
static inline __m256i lane_bcast(__m256i v, int h) {
    return h ? _mm256_permute4x64_epi64(v, 0xee) : _mm256_permute4x64_epi64(v, 0x44);
}

static inline float fp16(uint16_t h) { return _cvtsh_ss(h); }

/* The sixteen Q3_K group scales (biased by +32), group g in byte g. */
static inline __m128i q3k_scales_vec(const uint8_t *scales) {
    uint32_t w[4];
    em_q3k_scales16(scales, w);
    return _mm_set_epi32((int)w[3], (int)w[2], (int)w[1], (int)w[0]);
}

/* sumi plus the dot of 32 unsigned levels qk with the activation quants at
 * yq, the first 16 products scaled by group scale 2k of s16h and the rest
 * by 2k + 1 (pair_i16): one quarter of a half super-block. */
static inline __m256i add_quarter(__m256i sumi, __m256i qk, const int8_t *yq, __m256i s16h,
                                  int k) {
    const __m256i yk = _mm256_loadu_si256((const __m256i *)yq);
    return _mm256_add_epi32(sumi,
                            _mm256_madd_epi16(_mm256_maddubs_epi16(qk, yk), pair_i16(s16h, k)));
}

/* -2^shift * sum_g scale_g * bsum_g, exact in int32: a constant bias of
 * -2^shift on the levels (Q3_K's -4, Q6_K's -32), taken out through the
 * activation's group sums. */
static inline __m256i bias_bsums(__m256i s16, const int16_t *bsums, int shift) {
    const __m256i sb = _mm256_madd_epi16(s16, _mm256_loadu_si256((const __m256i *)bsums));
    return _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(sb, shift));
}

/* acc plus a block's eight int32 partial sums times its scale d.  A macro:
 * as an inline function it moved gcc's scheduling of the K-quant loops. */
#define EM_FMA_SUMS(acc, d, sumi) \
    _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), (acc))

/* ------------------------------------------------------------ floats */

/* Four accumulators over 32 elements, one over 8, then a scalar tail.
 * LOADW(p) widens eight weights at p to float; WSCALAR(e) is weight e as a
 * float for the tail. */
#define EM_FLOAT_DOT(LOADW, WSCALAR)                                                      \
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();                        \
    __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();                        \
    int64_t i = 0;                                                                        \
    for (; i + 32 <= n; i += 32) {                                                        \
        acc0 = _mm256_fmadd_ps(LOADW(w + i), _mm256_loadu_ps(a + i), acc0);               \
        acc1 = _mm256_fmadd_ps(LOADW(w + i + 8), _mm256_loadu_ps(a + i + 8), acc1);       \
        acc2 = _mm256_fmadd_ps(LOADW(w + i + 16), _mm256_loadu_ps(a + i + 16), acc2);     \
        acc3 = _mm256_fmadd_ps(LOADW(w + i + 24), _mm256_loadu_ps(a + i + 24), acc3);     \
    }                                                                                     \
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(LOADW(w + i), _mm256_loadu_ps(a + i), acc0); \
    float sum = em_hsum8_avx2(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3))); \
    for (; i < n; i++) sum += WSCALAR(w[i]) * a[i];                                       \
    return sum

#define EM_F32_SCALAR(v) (v)
#define EM_LOADH(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
/* bf16 is the top half of a float: widening is a zero-extend and a shift. */
#define EM_LOADB(p)                                                                         \
    _mm256_castsi256_ps(_mm256_slli_epi32(                                                  \
        _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))

float em_vec_dot_f32_avx2(int64_t n, const void *wv, const void *av) {
    const float *w = wv, *a = av;
    EM_FLOAT_DOT(_mm256_loadu_ps, EM_F32_SCALAR);
}

float em_vec_dot_f16_avx2(int64_t n, const void *wv, const void *av) {
    const uint16_t *w = wv;
    const float *a = av;
    EM_FLOAT_DOT(EM_LOADH, fp16);
}

float em_vec_dot_bf16_avx2(int64_t n, const void *wv, const void *av) {
    const uint16_t *w = wv;
    const float *a = av;
    EM_FLOAT_DOT(EM_LOADB, em_bf16_to_fp32);
}

#undef EM_FLOAT_DOT
#undef EM_F32_SCALAR
#undef EM_LOADH
#undef EM_LOADB

/* ------------------------------------------------ 32-element formats */

/*
 * The 32-element kernels share one shape: per block, 32 levels as bytes,
 * an int32 dot with the 32 activation quants, and one FMA with the product
 * of the two fp16 block scales.  These kernels are bound by the number of
 * instructions per block (the in-cache speed is below DRAM bandwidth), and
 * converting the two scales of each block separately (load, move to a
 * vector register, vcvtph2ps, twice, multiply, broadcast) costs about as
 * many instructions as the dot itself.  So the scales of eight blocks are
 * gathered with one vpinsrw each into two vectors, converted and
 * multiplied once, and each block's product is then picked out with one
 * vpermps.
 */
static inline __m256 scale8(const uint8_t *xp, size_t xs, const uint8_t *yp, size_t ys) {
    __m128i hx = _mm_setzero_si128(), hy = _mm_setzero_si128();
#define EM_INS(j)                                                                          \
    do {                                                                                   \
        uint16_t a_, b_;                                                                   \
        memcpy(&a_, xp + (j) * xs, 2);                                                     \
        memcpy(&b_, yp + (j) * ys, 2);                                                     \
        hx = _mm_insert_epi16(hx, a_, j);                                                  \
        hy = _mm_insert_epi16(hy, b_, j);                                                  \
    } while (0)
    EM_INS(0); EM_INS(1); EM_INS(2); EM_INS(3); EM_INS(4); EM_INS(5); EM_INS(6); EM_INS(7);
#undef EM_INS
    return _mm256_mul_ps(_mm256_cvtph_ps(hx), _mm256_cvtph_ps(hy));
}

/* Lane j of v in all eight lanes. */
#define EM_LANE_PS(v, j) _mm256_permutevar8x32_ps((v), _mm256_set1_epi32(j))

/* The loop over blocks: DOT(i) is block i's int32 dot (8 partial sums).
 * Eight blocks per iteration into two accumulators, then single blocks.
 * The scale fields sit at byte 0 of every block of both operands. */
#define EM_BLOCK32_LOOP(DOT)                                                              \
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();                        \
    int64_t i = 0;                                                                        \
    for (; i + 8 <= nb; i += 8) {                                                         \
        const __m256 s8 = scale8((const uint8_t *)&x[i], sizeof *x, (const uint8_t *)&y[i], \
                                 sizeof *y);                                              \
        for (int j = 0; j < 8; j += 2) {                                                  \
            acc0 = _mm256_fmadd_ps(EM_LANE_PS(s8, j), _mm256_cvtepi32_ps(DOT(i + j)), acc0); \
            acc1 = _mm256_fmadd_ps(EM_LANE_PS(s8, j + 1), _mm256_cvtepi32_ps(DOT(i + j + 1)), \
                                   acc1);                                                 \
        }                                                                                 \
    }                                                                                     \
    for (; i < nb; i++)                                                                   \
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(fp16(x[i].d) * fp16(y[i].d)),               \
                               _mm256_cvtepi32_ps(DOT(i)), acc0);                         \
    float sum = em_hsum8_avx2(_mm256_add_ps(acc0, acc1))

/* The offset terms of Q4_1/Q5_1: sum over blocks of m * s, eight at a time
 * (m at byte 2 of the weight block, s at byte 2 of the Q8_1 block). */
static inline float offsets_q8_1(const uint8_t *xb, size_t xs, const em_block_q8_1 *y,
                                 int64_t nb) {
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= nb; i += 8)
        acc = _mm256_add_ps(acc, scale8(xb + (size_t)i * xs + 2, xs, (const uint8_t *)&y[i] + 2,
                                        sizeof *y));
    float sum = em_hsum8_avx2(acc);
    for (; i < nb; i++) {
        uint16_t m;
        memcpy(&m, xb + (size_t)i * xs + 2, 2);
        sum += fp16(m) * fp16(y[i].s);
    }
    return sum;
}

/* Dot of unsigned levels u (< 16) minus 8 with signed y: u.y - 8.y, both
 * within int16 per pair. */
static inline __m256i dot_u4_minus8(__m256i u, __m256i y) {
    const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(u, y),
                                       _mm256_maddubs_epi16(_mm256_set1_epi8(8), y));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

float em_vec_dot_q8_0_avx2(int64_t n, const void *wv, const void *av) {
    const em_block_q8_0 *x = wv;
    const em_block_q8_0 *y = av;
    const int64_t nb = n / EM_QK8_0;
#define EM_DOT(i) dot_i8(_mm256_loadu_si256((const __m256i *)x[i].qs), \
                         _mm256_loadu_si256((const __m256i *)y[i].qs))
    EM_BLOCK32_LOOP(EM_DOT);
#undef EM_DOT
    return sum;
}

/* Q4_0: levels q - 8 with q the nibble; the nibbles go into maddubs
 * unsigned and the -8 is a second maddubs. */
float em_vec_dot_q4_0_avx2(int64_t n, const void *wv, const void *av) {
    const em_block_q4_0 *x = wv;
    const em_block_q8_0 *y = av;
    const int64_t nb = n / EM_QK4_0;
#define EM_DOT(i) dot_u4_minus8(nibbles_32(x[i].qs), _mm256_loadu_si256((const __m256i *)y[i].qs))
    EM_BLOCK32_LOOP(EM_DOT);
#undef EM_DOT
    return sum;
}

/* Q4_1: levels are the bare nibbles; the offset m enters through the
 * activation's s = d_a * sum(a). */
float em_vec_dot_q4_1_avx2(int64_t n, const void *wv, const void *av) {
    const em_block_q4_1 *x = wv;
    const em_block_q8_1 *y = av;
    const int64_t nb = n / EM_QK4_1;
#define EM_DOT(i) dot_u8(nibbles_32(x[i].qs), _mm256_loadu_si256((const __m256i *)y[i].qs))
    EM_BLOCK32_LOOP(EM_DOT);
#undef EM_DOT
    return sum + offsets_q8_1((const uint8_t *)x, sizeof *x, y, nb);
}

/* Q5_0: level = nibble + 16 * bit - 16, i.e. the nibble when the fifth bit
 * is set and nibble - 16 (the nibble with 0xf0 or-ed in, as int8) when not. */
float em_vec_dot_q5_0_avx2(int64_t n, const void *wv, const void *av) {
    const em_block_q5_0 *x = wv;
    const em_block_q8_0 *y = av;
    const int64_t nb = n / EM_QK5_0;
    const __m256i f0 = _mm256_set1_epi8((char)0xf0);
#define EM_DOT(i)                                                                           \
    dot_i8(_mm256_or_si256(nibbles_32(x[i].qs), _mm256_andnot_si256(q5_high_mask(x[i].qh), f0)), \
           _mm256_loadu_si256((const __m256i *)y[i].qs))
    EM_BLOCK32_LOOP(EM_DOT);
#undef EM_DOT
    return sum;
}

/* Q5_1: level = nibble + 16 * bit, in 0..31, plus the offset as in Q4_1. */
float em_vec_dot_q5_1_avx2(int64_t n, const void *wv, const void *av) {
    const em_block_q5_1 *x = wv;
    const em_block_q8_1 *y = av;
    const int64_t nb = n / EM_QK5_1;
    const __m256i b4 = _mm256_set1_epi8(16);
#define EM_DOT(i)                                                                           \
    dot_u8(_mm256_or_si256(nibbles_32(x[i].qs), _mm256_and_si256(q5_high_mask(x[i].qh), b4)), \
           _mm256_loadu_si256((const __m256i *)y[i].qs))
    EM_BLOCK32_LOOP(EM_DOT);
#undef EM_DOT
    return sum + offsets_q8_1((const uint8_t *)x, sizeof *x, y, nb);
}

/* IQ4_NL: the nibble indexes the 16-entry level table, one pshufb. */
float em_vec_dot_iq4_nl_avx2(int64_t n, const void *wv, const void *av) {
    const em_block_iq4_nl *x = wv;
    const em_block_q8_0 *y = av;
    const int64_t nb = n / EM_QK4_NL;
    const __m256i table =
        _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)em_iq4nl_values));
#define EM_DOT(i) dot_i8(_mm256_shuffle_epi8(table, nibbles_32(x[i].qs)), \
                         _mm256_loadu_si256((const __m256i *)y[i].qs))
    EM_BLOCK32_LOOP(EM_DOT);
#undef EM_DOT
    return sum;
}

/* ------------------------------------------- 256-element super-blocks */

/*
 * Q2_K: 32 consecutive elements 128h + 32k + l are bits 2k..2k+1 of
 * qs[32h + l]; their first 16 are group 8h + 2k, the rest group 8h + 2k + 1.
 * Scales are the low nibbles of scales[], mins the high ones; the mins
 * multiply the activation's bsums.
 */
float em_vec_dot_q2_k_avx2(int64_t n, const void *wv, const void *av) {
    const em_block_q2_k *x = wv;
    const em_block_q8_k *y = av;
    const int64_t nb = n / EM_QK_K;
    const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(15);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m256i sc8 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)x[i].scales));
        const __m256i mins = _mm256_cvtepu8_epi16(
            _mm_and_si128(_mm_srli_epi16(_mm256_castsi256_si128(sc8), 4), _mm_set1_epi8(15)));
        const __m256i msum =
            _mm256_madd_epi16(mins, _mm256_loadu_si256((const __m256i *)y[i].bsums));
        const __m256i s16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm256_castsi256_si128(sc8),
                                                               _mm256_castsi256_si128(m4)));
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
            const __m256i s16h = lane_bcast(s16, h);
            for (int k = 0; k < 4; k++) {
                const __m256i qk = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m3);
                sumi = add_quarter(sumi, qk, y[i].qs + 128 * h + 32 * k, s16h, k);
            }
        }
        const float yd = y[i].d;
        acc = EM_FMA_SUMS(acc, yd * fp16(x[i].d), sumi);
        accm = EM_FMA_SUMS(accm, yd * fp16(x[i].dmin), msum);
    }
    return em_hsum8_avx2(acc) - em_hsum8_avx2(accm);
}

/*
 * Q3_K: level = (2 low bits, as Q2_K) + 4 * hbit - 4, where hbit for
 * element 128h + 32k + l is bit 4h + k of hmask[l].  The quants enter
 * maddubs as the unsigned 0..7; the -4 comes back as -4 * scale * bsum.
 */
float em_vec_dot_q3_k_avx2(int64_t n, const void *wv, const void *av) {
    const em_block_q3_k *x = wv;
    const em_block_q8_k *y = av;
    const int64_t nb = n / EM_QK_K;
    const __m256i m3 = _mm256_set1_epi8(3), b2 = _mm256_set1_epi8(4);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m128i sc8 = _mm_sub_epi8(q3k_scales_vec(x[i].scales), _mm_set1_epi8(32));
        const __m256i s16 = _mm256_cvtepi8_epi16(sc8);
        __m256i sumi = bias_bsums(s16, y[i].bsums, 2);
        const __m256i hm = _mm256_loadu_si256((const __m256i *)x[i].hmask);
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
            const __m256i s16h = lane_bcast(s16, h);
            /* hbit j = 4h + k moved to bit 2, one 16-bit shift per quarter:
             * right by j - 2 or left by 2 - j. */
            for (int k = 0; k < 4; k++) {
                const int j = 4 * h + k;
                const __m256i hb = j >= 2 ? _mm256_srli_epi16(hm, j - 2)
                                          : _mm256_slli_epi16(hm, 2 - j);
                const __m256i qk = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m3),
                                                   _mm256_and_si256(hb, b2));
                sumi = add_quarter(sumi, qk, y[i].qs + 128 * h + 32 * k, s16h, k);
            }
        }
        acc = EM_FMA_SUMS(acc, y[i].d * fp16(x[i].d), sumi);
    }
    return em_hsum8_avx2(acc);
}

/*
 * Q4_K and Q5_K: 32 bytes of qs hold groups 2k (low nibbles) and 2k + 1
 * (high nibbles); each group of 32 has one 6-bit scale, applied in the
 * int16 -> int32 step.  The mins multiply pairs of bsums: the min of group
 * g is repeated for bsums 2g and 2g + 1.  qh (Q5_K only, else NULL) holds
 * bit 4 of group g's levels at bit g.  Returns the scaled level sums and
 * the min sums, each as 8 int32 partial sums.
 */
static inline void q45k_block(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh,
                              const em_block_q8_k *y, __m256i *sumi_out, __m256i *msum_out) {
    uint64_t sc64, mn64;
    em_q4k_scales8(scales, &sc64, &mn64);
    const __m128i mn16 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mn64));
    const __m256i mn_pairs =
        _mm256_set_m128i(_mm_unpackhi_epi16(mn16, mn16), _mm_unpacklo_epi16(mn16, mn16));
    *msum_out = _mm256_madd_epi16(mn_pairs, _mm256_loadu_si256((const __m256i *)y->bsums));
    const __m256i sc16 =
        _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc64)));
    const __m256i low4 = _mm256_set1_epi8(15), b4 = _mm256_set1_epi8(16);
    const __m256i hv = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
    __m256i sumi = _mm256_setzero_si256();
    for (int k = 0; k < 4; k++) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * k));
        __m256i q0 = _mm256_and_si256(q, low4);
        __m256i q1 = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
        if (qh) {
            /* Bits 2k and 2k + 1 of each qh byte moved to bit 4 (16-bit
             * shifts by at most 4 keep every byte's bit in its byte). */
            const int g = 2 * k;
            const __m256i h0 = g <= 4 ? _mm256_slli_epi16(hv, 4 - g) : _mm256_srli_epi16(hv, g - 4);
            const __m256i h1 =
                g + 1 <= 4 ? _mm256_slli_epi16(hv, 3 - g) : _mm256_srli_epi16(hv, g - 3);
            q0 = _mm256_or_si256(q0, _mm256_and_si256(h0, b4));
            q1 = _mm256_or_si256(q1, _mm256_and_si256(h1, b4));
        }
        const __m256i y0 = _mm256_loadu_si256((const __m256i *)(y->qs + 64 * k));
        const __m256i y1 = _mm256_loadu_si256((const __m256i *)(y->qs + 64 * k + 32));
        const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(q0, y0), bcast_i16(sc16, 2 * k));
        const __m256i p1 =
            _mm256_madd_epi16(_mm256_maddubs_epi16(q1, y1), bcast_i16(sc16, 2 * k + 1));
        sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
    }
    *sumi_out = sumi;
}

/* The loop over the super-blocks of Q4_K and Q5_K: QH is the block's qh
 * for Q5_K, NULL for Q4_K. */
#define EM_Q45K_LOOP(QH)                                                                  \
    const int64_t nb = n / EM_QK_K;                                                       \
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();                         \
    for (int64_t i = 0; i < nb; i++) {                                                    \
        __m256i sumi, msum;                                                               \
        q45k_block(x[i].scales, x[i].qs, (QH), &y[i], &sumi, &msum);                      \
        acc = EM_FMA_SUMS(acc, y[i].d * fp16(x[i].d), sumi);                              \
        accm = EM_FMA_SUMS(accm, y[i].d * fp16(x[i].dmin), msum);                         \
    }                                                                                     \
    return em_hsum8_avx2(acc) - em_hsum8_avx2(accm)

float em_vec_dot_q4_k_avx2(int64_t n, const void *wv, const void *av) {
    const em_block_q4_k *x = wv;
    const em_block_q8_k *y = av;
    EM_Q45K_LOOP(NULL);
}

float em_vec_dot_q5_k_avx2(int64_t n, const void *wv, const void *av) {
    const em_block_q5_k *x = wv;
    const em_block_q8_k *y = av;
    EM_Q45K_LOOP(x[i].qh);
}

#undef EM_Q45K_LOOP

/*
 * Q6_K: level = q - 32 with q = 4 low bits from ql, 2 high bits from qh
 * (see blocks.h); q in 0..63 goes into maddubs unsigned and the -32 comes
 * back as -32 * sum_g scale_g * bsum_g.  Quarter k of half h is 32
 * elements covering groups 8h + 2k and 8h + 2k + 1.
 */
float em_vec_dot_q6_k_avx2(int64_t n, const void *wv, const void *av) {
    const em_block_q6_k *x = wv;
    const em_block_q8_k *y = av;
    const int64_t nb = n / EM_QK_K;
    const __m256i low4 = _mm256_set1_epi8(15), hi2 = _mm256_set1_epi8(0x30);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));
        __m256i sumi = bias_bsums(s16, y[i].bsums, 5);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[i].ql + 64 * h;
            const __m256i lo0 = _mm256_loadu_si256((const __m256i *)ql);
            const __m256i lo1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            const __m256i hi = _mm256_loadu_si256((const __m256i *)(x[i].qh + 32 * h));
            const __m256i s16h = lane_bcast(s16, h);
            /* Low 4 bits of quarter k: lo0/lo1 by k & 1, nibble by k >> 1;
             * high 2 bits: bits 2k..2k+1 of hi, moved to bits 4..5. */
            __m256i q[4];
            q[0] = _mm256_and_si256(lo0, low4);
            q[1] = _mm256_and_si256(lo1, low4);
            q[2] = _mm256_and_si256(_mm256_srli_epi16(lo0, 4), low4);
            q[3] = _mm256_and_si256(_mm256_srli_epi16(lo1, 4), low4);
            const __m256i hk[4] = {_mm256_slli_epi16(hi, 4), _mm256_slli_epi16(hi, 2), hi,
                                   _mm256_srli_epi16(hi, 2)};
            for (int k = 0; k < 4; k++) {
                const __m256i qk = _mm256_or_si256(q[k], _mm256_and_si256(hk[k], hi2));
                sumi = add_quarter(sumi, qk, y[i].qs + 128 * h + 32 * k, s16h, k);
            }
        }
        acc = EM_FMA_SUMS(acc, y[i].d * fp16(x[i].d), sumi);
    }
    return em_hsum8_avx2(acc);
}

/* IQ4_XS: IQ4_NL's table lookup per group of 32, with a signed 6-bit
 * group scale applied in the int16 -> int32 step. */
float em_vec_dot_iq4_xs_avx2(int64_t n, const void *wv, const void *av) {
    const em_block_iq4_xs *x = wv;
    const em_block_q8_k *y = av;
    const int64_t nb = n / EM_QK_K;
    const __m256i table =
        _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)em_iq4nl_values));
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m128i ls =
            _mm_sub_epi8(_mm_cvtsi64_si128((long long)em_iq4xs_scales8(&x[i])), _mm_set1_epi8(32));
        const __m256i s16 = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(ls));
        __m256i sumi = _mm256_setzero_si256();
        for (int g = 0; g < 8; g++) {
            const __m256i q = _mm256_shuffle_epi8(table, nibbles_32(x[i].qs + 16 * g));
            const __m256i yg = _mm256_loadu_si256((const __m256i *)(y[i].qs + 32 * g));
            const __m256i p =
                _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(yg, q));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, bcast_i16(s16, g)));
        }
        acc = EM_FMA_SUMS(acc, y[i].d * fp16(x[i].d), sumi);
    }
    return em_hsum8_avx2(acc);
}

#else

/* Not x86-64: nothing to compile here (ISO C wants a declaration). */
typedef int em_dot_avx2_unused;

#endif /* EM_HAVE_X86_KERNELS */
