/*
 * dequant.c - converting rows of every readable format back to float.
 *
 * Each routine reproduces the format's definition (see blocks.h) with the
 * same float operations in the same order as ggml's reference code, so the
 * results are bit-identical to llama.cpp's: integer quants are combined
 * with their integer scales first and only then multiplied by the float
 * super-block scale.  Floating-point contraction into FMA is disabled for
 * the same reason: a fused multiply-add would round differently.
 *
 * Source rows must be aligned as their blocks are (2 bytes, 4 for Q8_K and
 * F32), which GGUF's tensor alignment guarantees.
 */
#include "quant/quant.h"
#include "quant/blocks.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* ------------------------------------------------------------ floats */

static void dequant_f32(const void *src, float *y, int64_t n) {
    memcpy(y, src, (size_t)n * sizeof(float));
}

static void dequant_f16(const void *src, float *y, int64_t n) {
    const uint16_t *x = src;
    for (int64_t i = 0; i < n; i++) y[i] = em_fp16_to_fp32(x[i]);
}

static void dequant_bf16(const void *src, float *y, int64_t n) {
    const uint16_t *x = src;
    for (int64_t i = 0; i < n; i++) y[i] = em_bf16_to_fp32(x[i]);
}

/* ------------------------------------------------ 32-element formats */

static void dequant_q4_0(const em_block_q4_0 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = em_fp16_to_fp32(x[i].d);
        for (int j = 0; j < 16; j++) {
            const int q0 = (x[i].qs[j] & 15) - 8;
            const int q1 = (x[i].qs[j] >> 4) - 8;
            y[j] = (float)q0 * d;
            y[j + 16] = (float)q1 * d;
        }
    }
}

static void dequant_q4_1(const em_block_q4_1 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = em_fp16_to_fp32(x[i].d);
        const float m = em_fp16_to_fp32(x[i].m);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)(x[i].qs[j] & 15) * d + m;
            y[j + 16] = (float)(x[i].qs[j] >> 4) * d + m;
        }
    }
}

/* The 32 fifth bits of a Q5 block, read byte by byte (little-endian). */
static inline uint32_t q5_high_bits(const uint8_t qh[4]) {
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 |
           (uint32_t)qh[3] << 24;
}

static void dequant_q5_0(const em_block_q5_0 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = em_fp16_to_fp32(x[i].d);
        const uint32_t qh = q5_high_bits(x[i].qh);
        for (int j = 0; j < 16; j++) {
            const int h0 = (int)((qh >> j) & 1) << 4;
            const int h1 = (int)((qh >> (j + 16)) & 1) << 4;
            const int q0 = ((x[i].qs[j] & 15) | h0) - 16;
            const int q1 = ((x[i].qs[j] >> 4) | h1) - 16;
            y[j] = (float)q0 * d;
            y[j + 16] = (float)q1 * d;
        }
    }
}

static void dequant_q5_1(const em_block_q5_1 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = em_fp16_to_fp32(x[i].d);
        const float m = em_fp16_to_fp32(x[i].m);
        const uint32_t qh = q5_high_bits(x[i].qh);
        for (int j = 0; j < 16; j++) {
            const int q0 = (x[i].qs[j] & 15) | ((int)((qh >> j) & 1) << 4);
            const int q1 = (x[i].qs[j] >> 4) | ((int)((qh >> (j + 16)) & 1) << 4);
            y[j] = (float)q0 * d + m;
            y[j + 16] = (float)q1 * d + m;
        }
    }
}

static void dequant_q8_0(const em_block_q8_0 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = em_fp16_to_fp32(x[i].d);
        for (int j = 0; j < 32; j++) y[j] = (float)x[i].qs[j] * d;
    }
}

static void dequant_q8_1(const em_block_q8_1 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = em_fp16_to_fp32(x[i].d);
        for (int j = 0; j < 32; j++) y[j] = (float)x[i].qs[j] * d;
    }
}

static void dequant_iq4_nl(const em_block_iq4_nl *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = em_fp16_to_fp32(x[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)em_iq4nl_values[x[i].qs[j] & 15];
            y[j + 16] = d * (float)em_iq4nl_values[x[i].qs[j] >> 4];
        }
    }
}

/* ------------------------------------------- 256-element super-blocks */

static void dequant_q2_k(const em_block_q2_k *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = em_fp16_to_fp32(x[i].d);
        const float dmin = em_fp16_to_fp32(x[i].dmin);
        for (int e = 0; e < EM_QK_K; e += 16, y += 16) {
            const int g = e / 16;
            const float dl = d * (float)(x[i].scales[g] & 15);
            const float ml = dmin * (float)(x[i].scales[g] >> 4);
            /* e = 128h + 32k + l: byte 32h + l, bits 2k. */
            const uint8_t *q = x[i].qs + 32 * (e / 128) + (e % 32);
            const int shift = 2 * ((e % 128) / 32);
            for (int l = 0; l < 16; l++) y[l] = dl * (float)((q[l] >> shift) & 3) - ml;
        }
    }
}

static void dequant_q3_k(const em_block_q3_k *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = em_fp16_to_fp32(x[i].d);
        int8_t sc[16];
        em_q3k_scales(x[i].scales, sc);
        for (int e = 0; e < EM_QK_K; e += 16, y += 16) {
            const float dl = d * (float)sc[e / 16];
            const uint8_t *q = x[i].qs + 32 * (e / 128) + (e % 32);
            const int shift = 2 * ((e % 128) / 32);
            const uint8_t *hm = x[i].hmask + (e % 32);
            const uint8_t bit = (uint8_t)(1u << (e / 32));
            for (int l = 0; l < 16; l++) {
                const int v = ((q[l] >> shift) & 3) - ((hm[l] & bit) ? 0 : 4);
                y[l] = dl * (float)v;
            }
        }
    }
}

/* One Q4_K or Q5_K super-block: 8 groups of 32 weights, each level times
 * its group's 6-bit scale minus its 6-bit min. Q5_K adds a fifth bit per
 * weight from qh (bit 2k for the low nibbles of run k, 2k + 1 for the high
 * ones); Q4_K passes qh = NULL. y: [256] floats. */
static void dequant_k4_block(uint16_t d16, uint16_t dmin16, const uint8_t *scales, const uint8_t *qs,
                             const uint8_t *qh, float *y) {
    const float d = em_fp16_to_fp32(d16);
    const float dmin = em_fp16_to_fp32(dmin16);
    for (int k = 0; k < 4; k++, y += 64) {
        uint8_t sc0, mn0, sc1, mn1;
        em_q4k_scale_min(scales, 2 * k, &sc0, &mn0);
        em_q4k_scale_min(scales, 2 * k + 1, &sc1, &mn1);
        const float d0 = d * (float)sc0, m0 = dmin * (float)mn0;
        const float d1 = d * (float)sc1, m1 = dmin * (float)mn1;
        const uint8_t *q = qs + 32 * k;
        const uint8_t b0 = (uint8_t)(1u << (2 * k)), b1 = (uint8_t)(1u << (2 * k + 1));
        for (int l = 0; l < 32; l++) {
            const int v = (q[l] & 15) + ((qh && (qh[l] & b0)) ? 16 : 0);
            y[l] = d0 * (float)v - m0;
        }
        for (int l = 0; l < 32; l++) {
            const int v = (q[l] >> 4) + ((qh && (qh[l] & b1)) ? 16 : 0);
            y[l + 32] = d1 * (float)v - m1;
        }
    }
}

static void dequant_q4_k(const em_block_q4_k *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += 256) dequant_k4_block(x[i].d, x[i].dmin, x[i].scales, x[i].qs, NULL, y);
}

static void dequant_q5_k(const em_block_q5_k *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += 256) dequant_k4_block(x[i].d, x[i].dmin, x[i].scales, x[i].qs, x[i].qh, y);
}

static void dequant_q6_k(const em_block_q6_k *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = em_fp16_to_fp32(x[i].d);
        for (int h = 0; h < 2; h++, y += 128) {
            const uint8_t *ql = x[i].ql + 64 * h;
            const uint8_t *qh = x[i].qh + 32 * h;
            const int8_t *sc = x[i].scales + 8 * h;
            for (int l = 0; l < 32; l++) {
                const int s = l / 16;
                const int q0 = ((ql[l] & 15) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q1 = ((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q2 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q3 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * (float)sc[s] * (float)q0;
                y[l + 32] = d * (float)sc[s + 2] * (float)q1;
                y[l + 64] = d * (float)sc[s + 4] * (float)q2;
                y[l + 96] = d * (float)sc[s + 6] * (float)q3;
            }
        }
    }
}

static void dequant_q8_k(const em_block_q8_k *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += EM_QK_K) {
        for (int j = 0; j < EM_QK_K; j++) y[j] = x[i].d * (float)x[i].qs[j];
    }
}

static void dequant_iq4_xs(const em_block_iq4_xs *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = em_fp16_to_fp32(x[i].d);
        for (int g = 0; g < 8; g++, y += 32) {
            const float dl = d * (float)em_iq4xs_scale(&x[i], g);
            const uint8_t *q = x[i].qs + 16 * g;
            for (int j = 0; j < 16; j++) {
                y[j] = dl * (float)em_iq4nl_values[q[j] & 15];
                y[j + 16] = dl * (float)em_iq4nl_values[q[j] >> 4];
            }
        }
    }
}

/* ------------------------------------------------------------ entry */

em_status em_dequantize_row(em_type t, const void *src, float *dst, int64_t n) {
    const em_type_traits *tr = em_get_type_traits(t);
    if (!tr) return em_error(EM_ERR_INVALID_ARG, "dequantize: unknown tensor type id %d", (int)t);
    if (!tr->can_dequant)
        return em_error(EM_ERR_UNSUPPORTED, "dequantize: type %s is not supported", tr->name);
    if (n < 0 || n % tr->block_size != 0)
        return em_error(EM_ERR_INVALID_ARG,
                        "dequantize: %lld elements is not a multiple of %s's block of %lld",
                        (long long)n, tr->name, (long long)tr->block_size);
    if (n == 0) return EM_OK;
    if (!src || !dst) return em_error(EM_ERR_INVALID_ARG, "dequantize: NULL buffer");

    const int64_t nb = n / tr->block_size;
    switch (t) {
    case EM_TYPE_F32: dequant_f32(src, dst, n); break;
    case EM_TYPE_F16: dequant_f16(src, dst, n); break;
    case EM_TYPE_BF16: dequant_bf16(src, dst, n); break;
    case EM_TYPE_Q4_0: dequant_q4_0(src, dst, nb); break;
    case EM_TYPE_Q4_1: dequant_q4_1(src, dst, nb); break;
    case EM_TYPE_Q5_0: dequant_q5_0(src, dst, nb); break;
    case EM_TYPE_Q5_1: dequant_q5_1(src, dst, nb); break;
    case EM_TYPE_Q8_0: dequant_q8_0(src, dst, nb); break;
    case EM_TYPE_Q8_1: dequant_q8_1(src, dst, nb); break;
    case EM_TYPE_Q2_K: dequant_q2_k(src, dst, nb); break;
    case EM_TYPE_Q3_K: dequant_q3_k(src, dst, nb); break;
    case EM_TYPE_Q4_K: dequant_q4_k(src, dst, nb); break;
    case EM_TYPE_Q5_K: dequant_q5_k(src, dst, nb); break;
    case EM_TYPE_Q6_K: dequant_q6_k(src, dst, nb); break;
    case EM_TYPE_Q8_K: dequant_q8_k(src, dst, nb); break;
    case EM_TYPE_IQ4_NL: dequant_iq4_nl(src, dst, nb); break;
    case EM_TYPE_IQ4_XS: dequant_iq4_xs(src, dst, nb); break;
    default:
        return em_error(EM_ERR_INTERNAL, "dequantize: no routine for %s", tr->name);
    }
    return EM_OK;
}
