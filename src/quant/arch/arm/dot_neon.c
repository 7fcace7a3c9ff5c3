/*
 * dot_neon.c - aarch64 NEON dot-product kernels for every weight type
 * ember reads: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL (32-
 * element blocks) and Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS (256-element
 * super-blocks).
 *
 * Each kernel computes what its scalar twin in dot_generic.c computes.
 * Weight levels are unpacked sixteen at a time into signed bytes, exactly
 * as the format defines them, and multiplied with the activation quants
 * into int32; group scales are applied in integer arithmetic too.  So the
 * integer part of every block is exact in both, and the results differ
 * only in the order in which the per-block float products are summed.
 *
 * The baseline is ARMv8.0 Advanced SIMD, which every aarch64 CPU has.  The
 * one place where a later extension pays is the int8 dot product: with
 * __ARM_FEATURE_DOTPROD (ARMv8.2 SDOT, enabled by -march=armv8.2-a+dotprod
 * or later) dot16 is a single instruction; without it the same int32
 * partial sums come from widening multiplies (int8 x int8 fits int16
 * exactly, even -128 x -128) and pairwise widening adds into int32.
 *
 * Bit 4 of Q5 levels and bit 2 of Q3_K levels are stored one bit per
 * element; they are spread to bytes with VTST against a per-byte bit mask,
 * which sets a byte to all ones exactly when its bit is set.
 */
#include "quant/arch/arm/dot_arm.h"

#if defined(EM_HAVE_ARM_KERNELS)

#include "quant/blocks.h"
#include "core/core.h"

#include <arm_neon.h>

/* ------------------------------------------------------------ helpers */

/* acc + the products of 16 signed bytes, as 4 int32 partial sums. */
static inline int32x4_t dot16(int32x4_t acc, int8x16_t x, int8x16_t y) {
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(acc, x, y);
#else
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(x), vget_low_s8(y)));
    return vpadalq_s16(acc, vmull_high_s8(x, y));
#endif
}

/* Products of 32 levels (two vectors of 16) with 32 activation quants. */
static inline int32x4_t dot32(int8x16_t x0, int8x16_t x1, const int8_t *y) {
    return dot16(dot16(vdupq_n_s32(0), x0, vld1q_s8(y)), x1, vld1q_s8(y + 16));
}

/* IEEE half to float with the FCVT instruction (baseline on aarch64). */
static inline float fp16(uint16_t h) {
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

static inline int8x16_t s8(uint8x16_t v) { return vreinterpretq_s8_u8(v); }

/* Byte j of this mask is 1 << (j % 8): VTST of eight copies of one byte
 * against it tests that byte's bits in element order. */
static const uint8_t em_neon_bit_mask[16] = {1, 2, 4, 8, 16, 32, 64, 128,
                                             1, 2, 4, 8, 16, 32, 64, 128};

/* The fifth bits of a Q5_0/Q5_1 block as 16 (set) or 0 per element:
 * *h0 for elements 0..15, *h1 for elements 16..31. */
static inline void q5_high_bits(const uint8_t qh[4], uint8x16_t *h0, uint8x16_t *h1) {
    const uint8x16_t mask = vld1q_u8(em_neon_bit_mask);
    const uint8x16_t sixteen = vdupq_n_u8(16);
    const uint8x16_t b0 = vcombine_u8(vdup_n_u8(qh[0]), vdup_n_u8(qh[1]));
    const uint8x16_t b1 = vcombine_u8(vdup_n_u8(qh[2]), vdup_n_u8(qh[3]));
    *h0 = vandq_u8(vtstq_u8(b0, mask), sixteen);
    *h1 = vandq_u8(vtstq_u8(b1, mask), sixteen);
}

/* ------------------------------------------------------------ floats */

/* Four independent accumulators keep the FMA pipelines busy. */
static float dot_f32_neon(int64_t n, const void *wv, const void *av) {
    const float *w = wv, *a = av;
    float32x4_t acc0 = vdupq_n_f32(0), acc1 = vdupq_n_f32(0);
    float32x4_t acc2 = vdupq_n_f32(0), acc3 = vdupq_n_f32(0);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = vfmaq_f32(acc0, vld1q_f32(w + i), vld1q_f32(a + i));
        acc1 = vfmaq_f32(acc1, vld1q_f32(w + i + 4), vld1q_f32(a + i + 4));
        acc2 = vfmaq_f32(acc2, vld1q_f32(w + i + 8), vld1q_f32(a + i + 8));
        acc3 = vfmaq_f32(acc3, vld1q_f32(w + i + 12), vld1q_f32(a + i + 12));
    }
    for (; i + 4 <= n; i += 4) acc0 = vfmaq_f32(acc0, vld1q_f32(w + i), vld1q_f32(a + i));
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(acc0, acc1), vaddq_f32(acc2, acc3)));
    for (; i < n; i++) sum += w[i] * a[i];
    return sum;
}

static float dot_f16_neon(int64_t n, const void *wv, const void *av) {
    const uint16_t *w = wv;
    const float *a = av;
    float32x4_t acc0 = vdupq_n_f32(0), acc1 = vdupq_n_f32(0);
    float32x4_t acc2 = vdupq_n_f32(0), acc3 = vdupq_n_f32(0);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const float16x8_t h0 = vreinterpretq_f16_u16(vld1q_u16(w + i));
        const float16x8_t h1 = vreinterpretq_f16_u16(vld1q_u16(w + i + 8));
        acc0 = vfmaq_f32(acc0, vcvt_f32_f16(vget_low_f16(h0)), vld1q_f32(a + i));
        acc1 = vfmaq_f32(acc1, vcvt_high_f32_f16(h0), vld1q_f32(a + i + 4));
        acc2 = vfmaq_f32(acc2, vcvt_f32_f16(vget_low_f16(h1)), vld1q_f32(a + i + 8));
        acc3 = vfmaq_f32(acc3, vcvt_high_f32_f16(h1), vld1q_f32(a + i + 12));
    }
    for (; i + 4 <= n; i += 4) {
        const float16x4_t h = vreinterpret_f16_u16(vld1_u16(w + i));
        acc0 = vfmaq_f32(acc0, vcvt_f32_f16(h), vld1q_f32(a + i));
    }
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(acc0, acc1), vaddq_f32(acc2, acc3)));
    for (; i < n; i++) sum += fp16(w[i]) * a[i];
    return sum;
}

/* bfloat16 is the top half of a float: widening by a 16-bit shift left
 * is the exact conversion. */
static float dot_bf16_neon(int64_t n, const void *wv, const void *av) {
    const uint16_t *w = wv;
    const float *a = av;
    float32x4_t acc0 = vdupq_n_f32(0), acc1 = vdupq_n_f32(0);
    float32x4_t acc2 = vdupq_n_f32(0), acc3 = vdupq_n_f32(0);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const uint16x8_t h0 = vld1q_u16(w + i), h1 = vld1q_u16(w + i + 8);
        const float32x4_t w0 = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h0), 16));
        const float32x4_t w1 = vreinterpretq_f32_u32(vshll_high_n_u16(h0, 16));
        const float32x4_t w2 = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h1), 16));
        const float32x4_t w3 = vreinterpretq_f32_u32(vshll_high_n_u16(h1, 16));
        acc0 = vfmaq_f32(acc0, w0, vld1q_f32(a + i));
        acc1 = vfmaq_f32(acc1, w1, vld1q_f32(a + i + 4));
        acc2 = vfmaq_f32(acc2, w2, vld1q_f32(a + i + 8));
        acc3 = vfmaq_f32(acc3, w3, vld1q_f32(a + i + 12));
    }
    for (; i + 4 <= n; i += 4) {
        const float32x4_t w0 = vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(w + i), 16));
        acc0 = vfmaq_f32(acc0, w0, vld1q_f32(a + i));
    }
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(acc0, acc1), vaddq_f32(acc2, acc3)));
    for (; i < n; i++) sum += em_bf16_to_fp32(w[i]) * a[i];
    return sum;
}

/* ------------------------------------------------ 32-element formats */

/* In these, a block's 32 int32 products are exact in float (far below
 * 2^24), so the partial sums are converted lane-wise and scaled by the
 * block's d_w * d_a in one fused multiply-add per block.  Each format
 * gives the int32 dot of one block with its 32 activation quants
 * (BLOCK_DOT, the *_block_dot helpers below); PER_BLOCK is a statement
 * run for block i after it (Q4_1/Q5_1's minimum term).  Leaves the
 * scaled sums in acc. */
#define EM_BLOCK32_LOOP(QK, BLOCK_DOT, PER_BLOCK)                                          \
    const int64_t nb = n / (QK);                                                          \
    float32x4_t acc = vdupq_n_f32(0);                                                     \
    for (int64_t i = 0; i < nb; i++) {                                                    \
        const int32x4_t s = BLOCK_DOT(&x[i], y[i].qs);                                    \
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(s), fp16(x[i].d) * fp16(y[i].d));            \
        PER_BLOCK;                                                                        \
    }

/* Q4_0: levels nibble - 8. */
static inline int32x4_t q4_0_block_dot(const em_block_q4_0 *b, const int8_t *y) {
    const uint8x16_t q = vld1q_u8(b->qs), low4 = vdupq_n_u8(15);
    const int8x16_t eight = vdupq_n_s8(8);
    const int8x16_t q0 = vsubq_s8(s8(vandq_u8(q, low4)), eight);
    const int8x16_t q1 = vsubq_s8(s8(vshrq_n_u8(q, 4)), eight);
    return dot32(q0, q1, y);
}

/* Q4_1/Q5_1 levels are 0..31, so they fit signed bytes unchanged; the
 * block minimum enters as m * s, s being d_a * sum(a quants) from Q8_1. */
static inline int32x4_t q4_1_block_dot(const em_block_q4_1 *b, const int8_t *y) {
    const uint8x16_t q = vld1q_u8(b->qs);
    return dot32(s8(vandq_u8(q, vdupq_n_u8(15))), s8(vshrq_n_u8(q, 4)), y);
}

/* Q5_0: levels nibble + 16 * fifth bit - 16. */
static inline int32x4_t q5_0_block_dot(const em_block_q5_0 *b, const int8_t *y) {
    uint8x16_t h0, h1;
    q5_high_bits(b->qh, &h0, &h1);
    const uint8x16_t q = vld1q_u8(b->qs), low4 = vdupq_n_u8(15);
    const int8x16_t sixteen = vdupq_n_s8(16);
    const int8x16_t q0 = vsubq_s8(s8(vorrq_u8(vandq_u8(q, low4), h0)), sixteen);
    const int8x16_t q1 = vsubq_s8(s8(vorrq_u8(vshrq_n_u8(q, 4), h1)), sixteen);
    return dot32(q0, q1, y);
}

static inline int32x4_t q5_1_block_dot(const em_block_q5_1 *b, const int8_t *y) {
    uint8x16_t h0, h1;
    q5_high_bits(b->qh, &h0, &h1);
    const uint8x16_t q = vld1q_u8(b->qs);
    const int8x16_t q0 = s8(vorrq_u8(vandq_u8(q, vdupq_n_u8(15)), h0));
    const int8x16_t q1 = s8(vorrq_u8(vshrq_n_u8(q, 4), h1));
    return dot32(q0, q1, y);
}

static inline int32x4_t q8_0_block_dot(const em_block_q8_0 *b, const int8_t *y) {
    return dot32(vld1q_s8(b->qs), vld1q_s8(b->qs + 16), y);
}

/* IQ4_NL: the 16 non-linear levels fit one table register: TBL maps each
 * index nibble to its level in one instruction. */
static inline int32x4_t iq4_nl_block_dot(const em_block_iq4_nl *b, const int8_t *y) {
    const int8x16_t levels = vld1q_s8(em_iq4nl_values);
    const uint8x16_t q = vld1q_u8(b->qs);
    const int8x16_t q0 = vqtbl1q_s8(levels, vandq_u8(q, vdupq_n_u8(15)));
    const int8x16_t q1 = vqtbl1q_s8(levels, vshrq_n_u8(q, 4));
    return dot32(q0, q1, y);
}

/* The kernels: NAME dots blocks of type W with activation blocks of type
 * A, by BLOCK_DOT; the _MIN ones (Q4_1, Q5_1) add each block's minimum
 * term m * s. */
#define EM_DOT32_KERNEL(NAME, W, A, QK, BLOCK_DOT)                                         \
    static float NAME(int64_t n, const void *wv, const void *av) {                        \
        const W *x = wv;                                                                  \
        const A *y = av;                                                                  \
        EM_BLOCK32_LOOP(QK, BLOCK_DOT, (void)0);                                          \
        return vaddvq_f32(acc);                                                           \
    }
#define EM_DOT32_KERNEL_MIN(NAME, W, A, QK, BLOCK_DOT)                                     \
    static float NAME(int64_t n, const void *wv, const void *av) {                        \
        const W *x = wv;                                                                  \
        const A *y = av;                                                                  \
        float mins = 0;                                                                   \
        EM_BLOCK32_LOOP(QK, BLOCK_DOT, mins += fp16(x[i].m) * fp16(y[i].s));              \
        return vaddvq_f32(acc) + mins;                                                    \
    }

EM_DOT32_KERNEL(dot_q4_0_neon, em_block_q4_0, em_block_q8_0, EM_QK4_0, q4_0_block_dot)
EM_DOT32_KERNEL_MIN(dot_q4_1_neon, em_block_q4_1, em_block_q8_1, EM_QK4_1, q4_1_block_dot)
EM_DOT32_KERNEL(dot_q5_0_neon, em_block_q5_0, em_block_q8_0, EM_QK5_0, q5_0_block_dot)
EM_DOT32_KERNEL_MIN(dot_q5_1_neon, em_block_q5_1, em_block_q8_1, EM_QK5_1, q5_1_block_dot)
EM_DOT32_KERNEL(dot_q8_0_neon, em_block_q8_0, em_block_q8_0, EM_QK8_0, q8_0_block_dot)
EM_DOT32_KERNEL(dot_iq4_nl_neon, em_block_iq4_nl, em_block_q8_0, EM_QK4_NL, iq4_nl_block_dot)

#undef EM_BLOCK32_LOOP
#undef EM_DOT32_KERNEL
#undef EM_DOT32_KERNEL_MIN

/* ------------------------------------------- 256-element super-blocks */

/* In these, each group's int32 partial sums are multiplied by the integer
 * group scale lane-wise (VMLA), the lanes are added once per super-block,
 * and that exact integer is scaled in float just as the scalar code does.
 * Mins are folded in through Q8_K's bsums (sums of 16 activation quants),
 * widened to int32 before any addition so that no input can wrap. */

static float dot_q2_k_neon(int64_t n, const void *wv, const void *av) {
    const em_block_q2_k *x = wv;
    const em_block_q8_k *y = av;
    const int64_t nb = n / EM_QK_K;
    const uint8x16_t two = vdupq_n_u8(3);
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *sc = x[i].scales;
        /* msum = sum over the 16 groups of min[g] * bsums[g]. */
        const uint8x16_t mn = vshrq_n_u8(vld1q_u8(sc), 4);
        const int16x8_t mn0 = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(mn)));
        const int16x8_t mn1 = vreinterpretq_s16_u16(vmovl_high_u8(mn));
        const int16x8_t bs0 = vld1q_s16(y[i].bsums), bs1 = vld1q_s16(y[i].bsums + 8);
        int32x4_t m = vmull_s16(vget_low_s16(mn0), vget_low_s16(bs0));
        m = vmlal_high_s16(m, mn0, bs0);
        m = vmlal_s16(m, vget_low_s16(mn1), vget_low_s16(bs1));
        m = vmlal_high_s16(m, mn1, bs1);
        const int32_t msum = vaddvq_s32(m);

        /* Elements 128h + 32k + l are bits 2k of qs[32h + l]: bytes
         * 0..15 of a 32-byte half give group 8h + 2k, bytes 16..31 the
         * next group. */
        int32x4_t sumi = vdupq_n_s32(0);
        for (int h = 0; h < 2; h++) {
            uint8x16_t qa = vld1q_u8(x[i].qs + 32 * h), qb = vld1q_u8(x[i].qs + 32 * h + 16);
            for (int k = 0; k < 4; k++) {
                const int g = 8 * h + 2 * k;
                const int8_t *q8 = y[i].qs + 128 * h + 32 * k;
                const int32x4_t zero = vdupq_n_s32(0);
                const int32x4_t s0 = dot16(zero, s8(vandq_u8(qa, two)), vld1q_s8(q8));
                const int32x4_t s1 = dot16(zero, s8(vandq_u8(qb, two)), vld1q_s8(q8 + 16));
                sumi = vmlaq_n_s32(sumi, s0, sc[g] & 15);
                sumi = vmlaq_n_s32(sumi, s1, sc[g + 1] & 15);
                qa = vshrq_n_u8(qa, 2);
                qb = vshrq_n_u8(qb, 2);
            }
        }
        const float d = y[i].d * fp16(x[i].d);
        const float dmin = y[i].d * fp16(x[i].dmin);
        sum += d * (float)vaddvq_s32(sumi) - dmin * (float)msum;
    }
    return sum;
}

/* Q3_K: the level is (2 low bits) - 4, plus 4 where the hmask bit is set;
 * so 4 is subtracted exactly where VTST finds the bit clear. */
static float dot_q3_k_neon(int64_t n, const void *wv, const void *av) {
    const em_block_q3_k *x = wv;
    const em_block_q8_k *y = av;
    const int64_t nb = n / EM_QK_K;
    const uint8x16_t two = vdupq_n_u8(3), four = vdupq_n_u8(4);
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        int8_t sc[16];
        em_q3k_scales(x[i].scales, sc);
        const uint8x16_t hm0 = vld1q_u8(x[i].hmask), hm1 = vld1q_u8(x[i].hmask + 16);
        int32x4_t sumi = vdupq_n_s32(0);
        for (int h = 0; h < 2; h++) {
            uint8x16_t qa = vld1q_u8(x[i].qs + 32 * h), qb = vld1q_u8(x[i].qs + 32 * h + 16);
            for (int k = 0; k < 4; k++) {
                /* Element 128h + 32k + l: its high bit is bit 4h + k of hmask[l]. */
                const uint8x16_t bit = vdupq_n_u8((uint8_t)(1u << (4 * h + k)));
                const uint8x16_t sub0 = vbicq_u8(four, vtstq_u8(hm0, bit));
                const uint8x16_t sub1 = vbicq_u8(four, vtstq_u8(hm1, bit));
                const int8x16_t l0 = vsubq_s8(s8(vandq_u8(qa, two)), s8(sub0));
                const int8x16_t l1 = vsubq_s8(s8(vandq_u8(qb, two)), s8(sub1));
                const int g = 8 * h + 2 * k;
                const int8_t *q8 = y[i].qs + 128 * h + 32 * k;
                const int32x4_t zero = vdupq_n_s32(0);
                sumi = vmlaq_n_s32(sumi, dot16(zero, l0, vld1q_s8(q8)), sc[g]);
                sumi = vmlaq_n_s32(sumi, dot16(zero, l1, vld1q_s8(q8 + 16)), sc[g + 1]);
                qa = vshrq_n_u8(qa, 2);
                qb = vshrq_n_u8(qb, 2);
            }
        }
        sum += fp16(x[i].d) * y[i].d * (float)vaddvq_s32(sumi);
    }
    return sum;
}

/* One Q4_K or Q5_K super-block (qh NULL for Q4_K).  Group 2k is the low
 * nibbles of qs[32k .. 32k+31], group 2k+1 their high nibbles; a Q5_K
 * level's bit 4 is bit (group) of qh[l]. */
static inline float q45_k_block(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh,
                                uint16_t dh, uint16_t dminh, const em_block_q8_k *y) {
    uint8_t sc[8], mn[8];
    for (int g = 0; g < 8; g++) em_q4k_scale_min(scales, g, &sc[g], &mn[g]);

    /* msum = sum over the 8 groups of min[g] * (bsums[2g] + bsums[2g+1]). */
    const int32x4_t gs0 = vpaddlq_s16(vld1q_s16(y->bsums));
    const int32x4_t gs1 = vpaddlq_s16(vld1q_s16(y->bsums + 8));
    const uint16x8_t mn16 = vmovl_u8(vld1_u8(mn));
    const int32x4_t mn0 = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(mn16)));
    const int32x4_t mn1 = vreinterpretq_s32_u32(vmovl_high_u16(mn16));
    const int32_t msum = vaddvq_s32(vmlaq_s32(vmulq_s32(mn0, gs0), mn1, gs1));

    const uint8x16_t low4 = vdupq_n_u8(15), sixteen = vdupq_n_u8(16);
    uint8x16_t qh0 = vdupq_n_u8(0), qh1 = vdupq_n_u8(0);
    if (qh) {
        qh0 = vld1q_u8(qh);
        qh1 = vld1q_u8(qh + 16);
    }
    int32x4_t sumi = vdupq_n_s32(0);
    for (int k = 0; k < 4; k++) {
        const uint8x16_t qa = vld1q_u8(qs + 32 * k), qb = vld1q_u8(qs + 32 * k + 16);
        uint8x16_t l0a = vandq_u8(qa, low4), l0b = vandq_u8(qb, low4);
        uint8x16_t l1a = vshrq_n_u8(qa, 4), l1b = vshrq_n_u8(qb, 4);
        if (qh) {
            const uint8x16_t bit0 = vdupq_n_u8((uint8_t)(1u << (2 * k)));
            const uint8x16_t bit1 = vdupq_n_u8((uint8_t)(2u << (2 * k)));
            l0a = vorrq_u8(l0a, vandq_u8(vtstq_u8(qh0, bit0), sixteen));
            l0b = vorrq_u8(l0b, vandq_u8(vtstq_u8(qh1, bit0), sixteen));
            l1a = vorrq_u8(l1a, vandq_u8(vtstq_u8(qh0, bit1), sixteen));
            l1b = vorrq_u8(l1b, vandq_u8(vtstq_u8(qh1, bit1), sixteen));
        }
        const int8_t *q8 = y->qs + 64 * k;
        sumi = vmlaq_n_s32(sumi, dot32(s8(l0a), s8(l0b), q8), sc[2 * k]);
        sumi = vmlaq_n_s32(sumi, dot32(s8(l1a), s8(l1b), q8 + 32), sc[2 * k + 1]);
    }
    const float d = y->d * fp16(dh);
    const float dmin = y->d * fp16(dminh);
    return d * (float)vaddvq_s32(sumi) - dmin * (float)msum;
}

static float dot_q4_k_neon(int64_t n, const void *wv, const void *av) {
    const em_block_q4_k *x = wv;
    const em_block_q8_k *y = av;
    const int64_t nb = n / EM_QK_K;
    float sum = 0;
    for (int64_t i = 0; i < nb; i++)
        sum += q45_k_block(x[i].scales, x[i].qs, NULL, x[i].d, x[i].dmin, &y[i]);
    return sum;
}

static float dot_q5_k_neon(int64_t n, const void *wv, const void *av) {
    const em_block_q5_k *x = wv;
    const em_block_q8_k *y = av;
    const int64_t nb = n / EM_QK_K;
    float sum = 0;
    for (int64_t i = 0; i < nb; i++)
        sum += q45_k_block(x[i].scales, x[i].qs, x[i].qh, x[i].d, x[i].dmin, &y[i]);
    return sum;
}

/* Q6_K: for e = 128h + 32k + l the low nibble comes from ql[64h + 32(k&1)
 * + l] (low nibble for k < 2, high for k >= 2) and the top two bits from
 * bits 2k of qh[32h + l]; bytes l < 16 belong to group 8h + 2k, the rest
 * to the next group. */
static float dot_q6_k_neon(int64_t n, const void *wv, const void *av) {
    const em_block_q6_k *x = wv;
    const em_block_q8_k *y = av;
    const int64_t nb = n / EM_QK_K;
    const uint8x16_t low4 = vdupq_n_u8(15), two = vdupq_n_u8(3), bits45 = vdupq_n_u8(0x30);
    const int8x16_t bias = vdupq_n_s8(32);
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        int32x4_t sumi = vdupq_n_s32(0);
        for (int h = 0; h < 2; h++) {
            for (int half = 0; half < 2; half++) {
                const uint8_t *ql = x[i].ql + 64 * h + 16 * half;
                const uint8x16_t la = vld1q_u8(ql), lb = vld1q_u8(ql + 32);
                const uint8x16_t hb = vld1q_u8(x[i].qh + 32 * h + 16 * half);
                int8x16_t q[4];
                q[0] = s8(vorrq_u8(vandq_u8(la, low4), vshlq_n_u8(vandq_u8(hb, two), 4)));
                q[1] = s8(vorrq_u8(vandq_u8(lb, low4), vandq_u8(vshlq_n_u8(hb, 2), bits45)));
                q[2] = s8(vorrq_u8(vshrq_n_u8(la, 4), vandq_u8(hb, bits45)));
                q[3] = s8(vorrq_u8(vshrq_n_u8(lb, 4), vandq_u8(vshrq_n_u8(hb, 2), bits45)));
                for (int k = 0; k < 4; k++) {
                    const int g = 8 * h + 2 * k + half;
                    const int8x16_t a = vld1q_s8(y[i].qs + 128 * h + 32 * k + 16 * half);
                    const int32x4_t s = dot16(vdupq_n_s32(0), vsubq_s8(q[k], bias), a);
                    sumi = vmlaq_n_s32(sumi, s, x[i].scales[g]);
                }
            }
        }
        sum += fp16(x[i].d) * y[i].d * (float)vaddvq_s32(sumi);
    }
    return sum;
}

/* IQ4_XS: eight IQ4_NL-packed groups of 32 with 6-bit signed scales. */
static float dot_iq4_xs_neon(int64_t n, const void *wv, const void *av) {
    const em_block_iq4_xs *x = wv;
    const em_block_q8_k *y = av;
    const int64_t nb = n / EM_QK_K;
    const int8x16_t levels = vld1q_s8(em_iq4nl_values);
    const uint8x16_t low4 = vdupq_n_u8(15);
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        int32x4_t sumi = vdupq_n_s32(0);
        for (int g = 0; g < 8; g++) {
            const uint8x16_t q = vld1q_u8(x[i].qs + 16 * g);
            const int8x16_t q0 = vqtbl1q_s8(levels, vandq_u8(q, low4));
            const int8x16_t q1 = vqtbl1q_s8(levels, vshrq_n_u8(q, 4));
            sumi = vmlaq_n_s32(sumi, dot32(q0, q1, y[i].qs + 32 * g), em_iq4xs_scale(&x[i], g));
        }
        sum += fp16(x[i].d) * y[i].d * (float)vaddvq_s32(sumi);
    }
    return sum;
}

/* ------------------------------------------------------------ entry */

void em_dot_select_arm(em_dot_fn *table, const char **isa) {
    table[EM_TYPE_F32] = dot_f32_neon;
    table[EM_TYPE_F16] = dot_f16_neon;
    table[EM_TYPE_BF16] = dot_bf16_neon;
    table[EM_TYPE_Q4_0] = dot_q4_0_neon;
    table[EM_TYPE_Q4_1] = dot_q4_1_neon;
    table[EM_TYPE_Q5_0] = dot_q5_0_neon;
    table[EM_TYPE_Q5_1] = dot_q5_1_neon;
    table[EM_TYPE_Q8_0] = dot_q8_0_neon;
    table[EM_TYPE_IQ4_NL] = dot_iq4_nl_neon;
    table[EM_TYPE_Q2_K] = dot_q2_k_neon;
    table[EM_TYPE_Q3_K] = dot_q3_k_neon;
    table[EM_TYPE_Q4_K] = dot_q4_k_neon;
    table[EM_TYPE_Q5_K] = dot_q5_k_neon;
    table[EM_TYPE_Q6_K] = dot_q6_k_neon;
    table[EM_TYPE_IQ4_XS] = dot_iq4_xs_neon;
#if defined(__ARM_FEATURE_DOTPROD)
    *isa = "neon-dotprod";
#else
    *isa = "neon";
#endif
}

#endif /* EM_HAVE_ARM_KERNELS */
