/*
 * dot_generic.c - the scalar reference dot products of a weight row with
 * an activation row (em_vec_dot_generic).
 *
 * Quantized pairs work as ggml's do: inside a block the integer levels of
 * weight and activation are multiplied and summed exactly in int32, the
 * integer group scales are applied in integer arithmetic too, and only the
 * block total is multiplied by the two float scales and added to a float
 * accumulator.  Mins (Q4_1/Q5_1, Q2_K/Q4_K/Q5_K) are folded in through the
 * activation sums stored with the activation (Q8_1's s, Q8_K's bsums):
 * sum_i (d q_i - m) a_i = d * sum q_i a_i - m * sum a_i.
 *
 * Every routine first unpacks a weight block into plain integer levels,
 * which keeps each one short and obviously equal to the format's
 * definition; the SIMD kernels are tested against these.
 */
#include "quant/quant.h"
#include "quant/blocks.h"

/* ------------------------------------------------------------ floats */

/* Float weights: accumulate in double, so the reference is as exact as
 * the float inputs allow. */
static float dot_f32(int64_t n, const float *w, const float *a) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)w[i] * a[i];
    return (float)s;
}

static float dot_f16(int64_t n, const uint16_t *w, const float *a) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)em_fp16_to_fp32(w[i]) * a[i];
    return (float)s;
}

static float dot_bf16(int64_t n, const uint16_t *w, const float *a) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)em_bf16_to_fp32(w[i]) * a[i];
    return (float)s;
}

/* ------------------------------------------------ 32-element formats */

/* Integer dot of 32 levels with 32 activation quants. */
static inline int32_t idot32(const int8_t *q, const int8_t *a) {
    int32_t s = 0;
    for (int j = 0; j < 32; j++) s += (int32_t)q[j] * a[j];
    return s;
}

/* Unpacks 16 bytes of nibbles into 32 levels (low nibbles first) minus bias. */
static inline void unpack_nibbles(const uint8_t *qs, int bias, int8_t *q) {
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)((qs[j] & 15) - bias);
        q[j + 16] = (int8_t)((qs[j] >> 4) - bias);
    }
}

/* Adds the fifth bits of a Q5 block to nibble levels, then removes bias. */
static inline void add_q5_high(const uint8_t qh[4], int bias, int8_t *q) {
    const uint32_t h = (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 |
                       (uint32_t)qh[3] << 24;
    for (int j = 0; j < 32; j++) q[j] = (int8_t)(q[j] + (int)((h >> j) & 1) * 16 - bias);
}

/* The 16 bytes of IQ4_NL-packed nibbles at qs as 32 table levels (low
 * nibbles first): IQ4_NL blocks and IQ4_XS groups. */
static inline void unpack_iq4(const uint8_t *qs, int8_t *q) {
    for (int j = 0; j < 16; j++) {
        q[j] = em_iq4nl_values[qs[j] & 15];
        q[j + 16] = em_iq4nl_values[qs[j] >> 4];
    }
}

/* A block's float term: its exact integer dot s times the product of the
 * weight's and the activation's fp16 scales.  These two are macros, not
 * functions, so that each kernel's whole sum stays one C expression: with
 * clang's default -ffp-contract=on a multiply is fused into an add only
 * within one expression, and the reference's last bits must not depend on
 * whether a helper was inlined. */
#define BLOCK_TERM(s, dx, dy) ((float)(s) * (em_fp16_to_fp32(dx) * em_fp16_to_fp32(dy)))

/* The minimum term of a Q4_1/Q5_1 block: m * s, s = d_a * sum(a quants). */
#define MIN_TERM(m, s) (em_fp16_to_fp32(m) * em_fp16_to_fp32(s))

static float dot_q4_0(int64_t nb, const em_block_q4_0 *x, const em_block_q8_0 *y) {
    float sum = 0;
    int8_t q[32];
    for (int64_t i = 0; i < nb; i++) {
        unpack_nibbles(x[i].qs, 8, q);
        sum += BLOCK_TERM(idot32(q, y[i].qs), x[i].d, y[i].d);
    }
    return sum;
}

static float dot_q4_1(int64_t nb, const em_block_q4_1 *x, const em_block_q8_1 *y) {
    float sum = 0;
    int8_t q[32];
    for (int64_t i = 0; i < nb; i++) {
        unpack_nibbles(x[i].qs, 0, q);
        sum += BLOCK_TERM(idot32(q, y[i].qs), x[i].d, y[i].d) + MIN_TERM(x[i].m, y[i].s);
    }
    return sum;
}

static float dot_q5_0(int64_t nb, const em_block_q5_0 *x, const em_block_q8_0 *y) {
    float sum = 0;
    int8_t q[32];
    for (int64_t i = 0; i < nb; i++) {
        unpack_nibbles(x[i].qs, 0, q);
        add_q5_high(x[i].qh, 16, q);
        sum += BLOCK_TERM(idot32(q, y[i].qs), x[i].d, y[i].d);
    }
    return sum;
}

static float dot_q5_1(int64_t nb, const em_block_q5_1 *x, const em_block_q8_1 *y) {
    float sum = 0;
    int8_t q[32];
    for (int64_t i = 0; i < nb; i++) {
        unpack_nibbles(x[i].qs, 0, q);
        add_q5_high(x[i].qh, 0, q);
        sum += BLOCK_TERM(idot32(q, y[i].qs), x[i].d, y[i].d) + MIN_TERM(x[i].m, y[i].s);
    }
    return sum;
}

static float dot_q8_0(int64_t nb, const em_block_q8_0 *x, const em_block_q8_0 *y) {
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        sum += BLOCK_TERM(idot32(x[i].qs, y[i].qs), x[i].d, y[i].d);
    }
    return sum;
}

static float dot_iq4_nl(int64_t nb, const em_block_iq4_nl *x, const em_block_q8_0 *y) {
    float sum = 0;
    int8_t q[32];
    for (int64_t i = 0; i < nb; i++) {
        unpack_iq4(x[i].qs, q);
        sum += BLOCK_TERM(idot32(q, y[i].qs), x[i].d, y[i].d);
    }
    return sum;
}

/* ------------------------------------------- 256-element super-blocks */

/* Integer dot of n levels with n activation quants. */
static inline int32_t idot(const int8_t *q, const int8_t *a, int n) {
    int32_t s = 0;
    for (int j = 0; j < n; j++) s += (int32_t)q[j] * a[j];
    return s;
}

/* The 2-bit fields of a Q2_K/Q3_K qs array, as levels 0..3 in element order. */
static inline void unpack_2bit(const uint8_t *qs, int8_t *q) {
    for (int e = 0; e < EM_QK_K; e++)
        q[e] = (int8_t)((qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3);
}

static float dot_q2_k(int64_t nb, const em_block_q2_k *x, const em_block_q8_k *y) {
    float sum = 0;
    int8_t q[EM_QK_K];
    for (int64_t i = 0; i < nb; i++) {
        unpack_2bit(x[i].qs, q);
        int32_t isum = 0, msum = 0;
        for (int g = 0; g < 16; g++) {
            isum += (x[i].scales[g] & 15) * idot(q + 16 * g, y[i].qs + 16 * g, 16);
            msum += (x[i].scales[g] >> 4) * y[i].bsums[g];
        }
        const float d = y[i].d * em_fp16_to_fp32(x[i].d);
        const float dmin = y[i].d * em_fp16_to_fp32(x[i].dmin);
        sum += d * (float)isum - dmin * (float)msum;
    }
    return sum;
}

static float dot_q3_k(int64_t nb, const em_block_q3_k *x, const em_block_q8_k *y) {
    float sum = 0;
    int8_t q[EM_QK_K], sc[16];
    for (int64_t i = 0; i < nb; i++) {
        unpack_2bit(x[i].qs, q);
        for (int e = 0; e < EM_QK_K; e++)
            if (!(x[i].hmask[e % 32] & (1u << (e / 32)))) q[e] = (int8_t)(q[e] - 4);
        em_q3k_scales(x[i].scales, sc);
        int32_t isum = 0;
        for (int g = 0; g < 16; g++) isum += sc[g] * idot(q + 16 * g, y[i].qs + 16 * g, 16);
        sum += em_fp16_to_fp32(x[i].d) * y[i].d * (float)isum;
    }
    return sum;
}

/* Q4_K and Q5_K share everything but the fifth bit. */
static float dot_q45_k(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh,
                       uint16_t dh, uint16_t dminh, const em_block_q8_k *y) {
    int8_t q[EM_QK_K];
    for (int k = 0; k < 4; k++) {
        for (int l = 0; l < 32; l++) {
            q[64 * k + l] = (int8_t)(qs[32 * k + l] & 15);
            q[64 * k + 32 + l] = (int8_t)(qs[32 * k + l] >> 4);
        }
    }
    if (qh)
        for (int e = 0; e < EM_QK_K; e++) q[e] = (int8_t)(q[e] + ((qh[e % 32] >> (e / 32)) & 1) * 16);
    int32_t isum = 0, msum = 0;
    for (int g = 0; g < 8; g++) {
        uint8_t sc, mn;
        em_q4k_scale_min(scales, g, &sc, &mn);
        isum += sc * idot(q + 32 * g, y->qs + 32 * g, 32);
        msum += mn * (y->bsums[2 * g] + y->bsums[2 * g + 1]);
    }
    const float d = y->d * em_fp16_to_fp32(dh);
    const float dmin = y->d * em_fp16_to_fp32(dminh);
    return d * (float)isum - dmin * (float)msum;
}

static float dot_q4_k(int64_t nb, const em_block_q4_k *x, const em_block_q8_k *y) {
    float sum = 0;
    for (int64_t i = 0; i < nb; i++)
        sum += dot_q45_k(x[i].scales, x[i].qs, NULL, x[i].d, x[i].dmin, &y[i]);
    return sum;
}

static float dot_q5_k(int64_t nb, const em_block_q5_k *x, const em_block_q8_k *y) {
    float sum = 0;
    for (int64_t i = 0; i < nb; i++)
        sum += dot_q45_k(x[i].scales, x[i].qs, x[i].qh, x[i].d, x[i].dmin, &y[i]);
    return sum;
}

static float dot_q6_k(int64_t nb, const em_block_q6_k *x, const em_block_q8_k *y) {
    float sum = 0;
    int8_t q[EM_QK_K];
    for (int64_t i = 0; i < nb; i++) {
        /* e = 128h + 32k + l: see blocks.h. */
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
            int8_t *qq = q + 128 * h;
            for (int l = 0; l < 32; l++) {
                qq[l] = (int8_t)(((ql[l] & 15) | ((qh[l] & 3) << 4)) - 32);
                qq[l + 32] = (int8_t)(((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32);
                qq[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                qq[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
        }
        int32_t isum = 0;
        for (int g = 0; g < 16; g++)
            isum += x[i].scales[g] * idot(q + 16 * g, y[i].qs + 16 * g, 16);
        sum += em_fp16_to_fp32(x[i].d) * y[i].d * (float)isum;
    }
    return sum;
}

static float dot_iq4_xs(int64_t nb, const em_block_iq4_xs *x, const em_block_q8_k *y) {
    float sum = 0;
    int8_t q[32];
    for (int64_t i = 0; i < nb; i++) {
        int32_t isum = 0;
        for (int g = 0; g < 8; g++) {
            unpack_iq4(x[i].qs + 16 * g, q);
            isum += em_iq4xs_scale(&x[i], g) * idot32(q, y[i].qs + 32 * g);
        }
        sum += em_fp16_to_fp32(x[i].d) * y[i].d * (float)isum;
    }
    return sum;
}

/* ------------------------------------------------------------ entry */

float em_vec_dot_generic(em_type t, int64_t n, const void *w, const void *a) {
    const em_type_traits *tr = em_get_type_traits(t);
    if (!tr || n < 0 || n % tr->block_size != 0) {
        em_error(EM_ERR_INVALID_ARG, "vec_dot: bad type %d or length %lld", (int)t, (long long)n);
        return 0.0f;
    }
    const int64_t nb = n / tr->block_size;
    switch (t) {
    case EM_TYPE_F32: return dot_f32(n, w, a);
    case EM_TYPE_F16: return dot_f16(n, w, a);
    case EM_TYPE_BF16: return dot_bf16(n, w, a);
    case EM_TYPE_Q4_0: return dot_q4_0(nb, w, a);
    case EM_TYPE_Q4_1: return dot_q4_1(nb, w, a);
    case EM_TYPE_Q5_0: return dot_q5_0(nb, w, a);
    case EM_TYPE_Q5_1: return dot_q5_1(nb, w, a);
    case EM_TYPE_Q8_0: return dot_q8_0(nb, w, a);
    case EM_TYPE_IQ4_NL: return dot_iq4_nl(nb, w, a);
    case EM_TYPE_Q2_K: return dot_q2_k(nb, w, a);
    case EM_TYPE_Q3_K: return dot_q3_k(nb, w, a);
    case EM_TYPE_Q4_K: return dot_q4_k(nb, w, a);
    case EM_TYPE_Q5_K: return dot_q5_k(nb, w, a);
    case EM_TYPE_Q6_K: return dot_q6_k(nb, w, a);
    case EM_TYPE_IQ4_XS: return dot_iq4_xs(nb, w, a);
    default:
        em_error(EM_ERR_UNSUPPORTED, "vec_dot: no kernel for %s", tr->name);
        return 0.0f;
    }
}
