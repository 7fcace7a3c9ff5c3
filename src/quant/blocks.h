/*
 * blocks.h - the byte layout of every block format ember reads or writes.
 *
 * These structs mirror the on-disk GGUF (ggml) layouts exactly: a tensor of
 * a quantized type is a packed array of these blocks, each covering a fixed
 * number of consecutive elements of one row.  Every field is made of bytes
 * or naturally aligned 16/32-bit words, so no struct has padding; the
 * static assertions at the end pin each size to the format's definition.
 *
 * Half-precision fields are stored as raw IEEE binary16 bits (uint16_t) and
 * converted with em_fp16_to_fp32.  Multi-byte fields are little-endian in
 * the file; ember reads them on little-endian hosts only (as ggml does).
 *
 * Element numbering inside a block ("element e") is the position within
 * the block's span of the row, 0-based.
 */
#ifndef EM_QUANT_BLOCKS_H
#define EM_QUANT_BLOCKS_H

#include <stdint.h>

#define EM_QK4_0 32    /* elements per Q4_0 block                */
#define EM_QK4_1 32    /* elements per Q4_1 block                */
#define EM_QK5_0 32    /* elements per Q5_0 block                */
#define EM_QK5_1 32    /* elements per Q5_1 block                */
#define EM_QK8_0 32    /* elements per Q8_0 block                */
#define EM_QK8_1 32    /* elements per Q8_1 block                */
#define EM_QK4_NL 32   /* elements per IQ4_NL block              */
#define EM_QK_K 256    /* elements per K-quant super-block       */
#define EM_K_SCALE_SIZE 12 /* bytes of packed 6-bit scales+mins  */

/* Q4_0: x[e] = d * (q[e] - 8), q in 0..15. */
typedef struct em_block_q4_0 {
    uint16_t d;       /* fp16 scale                                            */
    uint8_t qs[16];   /* [16] nibbles: low nibble of qs[j] = q[j], high = q[j+16] */
} em_block_q4_0;

/* Q4_1: x[e] = d * q[e] + m, q in 0..15. */
typedef struct em_block_q4_1 {
    uint16_t d;       /* fp16 scale                                            */
    uint16_t m;       /* fp16 offset (the block minimum)                       */
    uint8_t qs[16];   /* [16] nibbles: low nibble of qs[j] = q[j], high = q[j+16] */
} em_block_q4_1;

/* Q5_0: x[e] = d * (q[e] - 16), q in 0..31. */
typedef struct em_block_q5_0 {
    uint16_t d;       /* fp16 scale                                            */
    uint8_t qh[4];    /* [4] 32 bits, little-endian: bit e = bit 4 of q[e]     */
    uint8_t qs[16];   /* [16] low 4 bits: low nibble of qs[j] = q[j], high = q[j+16] */
} em_block_q5_0;

/* Q5_1: x[e] = d * q[e] + m, q in 0..31. */
typedef struct em_block_q5_1 {
    uint16_t d;       /* fp16 scale                                            */
    uint16_t m;       /* fp16 offset                                           */
    uint8_t qh[4];    /* [4] 32 bits, little-endian: bit e = bit 4 of q[e]     */
    uint8_t qs[16];   /* [16] low 4 bits, packed as in Q5_0                    */
} em_block_q5_1;

/* Q8_0: x[e] = d * qs[e]. */
typedef struct em_block_q8_0 {
    uint16_t d;       /* fp16 scale                                            */
    int8_t qs[32];    /* [32] signed quants                                    */
} em_block_q8_0;

/* Q8_1 (activations for Q4_1/Q5_1): x[e] = d * qs[e]. */
typedef struct em_block_q8_1 {
    uint16_t d;       /* fp16 scale                                            */
    uint16_t s;       /* fp16 of d * sum(qs), lets the *_1 dots fold in m      */
    int8_t qs[32];    /* [32] signed quants                                    */
} em_block_q8_1;

/*
 * Q2_K: 16 groups of 16 elements; group g = e / 16.
 * x[e] = d * (scales[g] & 15) * q[e] - dmin * (scales[g] >> 4), q in 0..3.
 * q[e] for e = 128*h + 32*k + l (h in 0..1, k in 0..3, l in 0..31) is
 * bits 2k..2k+1 of qs[32*h + l].
 */
typedef struct em_block_q2_k {
    uint8_t scales[16]; /* [16] per group: low nibble scale, high nibble min  */
    uint8_t qs[64];     /* [64] 2-bit quants, 4 per byte (see above)          */
    uint16_t d;         /* fp16 super-block scale of the group scales         */
    uint16_t dmin;      /* fp16 super-block scale of the group mins           */
} em_block_q2_k;

/*
 * Q3_K: 16 groups of 16; x[e] = d * (s[g] - 32) * (q[e] - 4), q in 0..7.
 * Low 2 bits of q[e] are packed into qs as in Q2_K; bit 2 of q[e] is bit
 * (e / 32) of hmask[e % 32].  The 6-bit group scale s[g]: low 4 bits are
 * the low nibble of scales[g] for g < 8, the high nibble of scales[g - 8]
 * for g >= 8; high 2 bits are bits 2*(g/4)..+1 of scales[8 + g % 4].
 */
typedef struct em_block_q3_k {
    uint8_t hmask[32];  /* [32] bit 2 of each quant (see above)               */
    uint8_t qs[64];     /* [64] low 2 bits of each quant, 4 per byte          */
    uint8_t scales[12]; /* [12] sixteen 6-bit group scales, packed            */
    uint16_t d;         /* fp16 super-block scale                             */
} em_block_q3_k;

/*
 * Q4_K: 8 groups of 32; x[e] = d * sc[g] * q[e] - dmin * mn[g], q in 0..15.
 * e = 64*k + l (l < 32) is the low nibble of qs[32*k + l], e = 64*k + 32 + l
 * the high nibble.  sc/mn are 6-bit, packed in scales[12]: for g < 4,
 * sc = scales[g] & 63, mn = scales[g+4] & 63; for g >= 4, sc = (scales[g+4]
 * & 15) | (scales[g-4] >> 6) << 4, mn = (scales[g+4] >> 4) | (scales[g] >> 6) << 4.
 */
typedef struct em_block_q4_k {
    uint16_t d;         /* fp16 super-block scale of the group scales         */
    uint16_t dmin;      /* fp16 super-block scale of the group mins           */
    uint8_t scales[12]; /* [12] eight 6-bit scales and eight 6-bit mins       */
    uint8_t qs[128];    /* [128] 4-bit quants, two per byte (see above)       */
} em_block_q4_k;

/*
 * Q5_K: as Q4_K with 5-bit quants (q in 0..31): the low 4 bits are packed
 * exactly as Q4_K's qs, bit 4 of q[e] is bit (e / 32) of qh[e % 32].
 */
typedef struct em_block_q5_k {
    uint16_t d;         /* fp16 super-block scale of the group scales         */
    uint16_t dmin;      /* fp16 super-block scale of the group mins           */
    uint8_t scales[12]; /* [12] 6-bit scales and mins packed as in Q4_K       */
    uint8_t qh[32];     /* [32] bit 4 of each quant                           */
    uint8_t qs[128];    /* [128] low 4 bits of each quant                     */
} em_block_q5_k;

/*
 * Q6_K: 16 groups of 16; x[e] = d * scales[e/16] * (q[e] - 32), q in 0..63.
 * For e = 128*h + 32*k + l (k in 0..3, l in 0..31): the low 4 bits of q[e]
 * are the low (k < 2) or high (k >= 2) nibble of ql[64*h + 32*(k&1) + l];
 * the high 2 bits are bits 2k..2k+1 of qh[32*h + l].
 */
typedef struct em_block_q6_k {
    uint8_t ql[128];    /* [128] low 4 bits of each quant                     */
    uint8_t qh[64];     /* [64] high 2 bits of each quant, 4 per byte         */
    int8_t scales[16];  /* [16] signed 8-bit group scales                     */
    uint16_t d;         /* fp16 super-block scale                             */
} em_block_q6_k;

/* Q8_K (activations for the K-quants and IQ4_XS): x[e] = d * qs[e]. */
typedef struct em_block_q8_k {
    float d;            /* fp32 scale                                         */
    int8_t qs[256];     /* [256] signed quants                                */
    int16_t bsums[16];  /* [16] sum of qs over each group of 16 elements      */
} em_block_q8_k;

/* IQ4_NL: x[e] = d * kvalues[q[e]], q in 0..15, packed as Q4_0. */
typedef struct em_block_iq4_nl {
    uint16_t d;         /* fp16 scale                                         */
    uint8_t qs[16];     /* [16] table indices, packed as Q4_0's nibbles       */
} em_block_iq4_nl;

/*
 * IQ4_XS: 8 groups of 32; x[e] = d * (ls[g] - 32) * kvalues[q[e]].  The
 * 6-bit ls[g]: low 4 bits are nibble (g & 1) of scales_l[g / 2], high 2
 * bits are bits 2g..2g+1 of scales_h.  Indices of group g are packed as
 * an IQ4_NL block in qs[16*g .. 16*g + 15].
 */
typedef struct em_block_iq4_xs {
    uint16_t d;          /* fp16 super-block scale                            */
    uint16_t scales_h;   /* high 2 bits of the eight group scales             */
    uint8_t scales_l[4]; /* [4] low 4 bits of the group scales, two per byte  */
    uint8_t qs[128];     /* [128] table indices, two per byte                 */
} em_block_iq4_xs;

/* The 16 non-linear levels shared by IQ4_NL and IQ4_XS (ascending). */
extern const int8_t em_iq4nl_values[16];

_Static_assert(sizeof(em_block_q4_0) == 18, "Q4_0 block size");
_Static_assert(sizeof(em_block_q4_1) == 20, "Q4_1 block size");
_Static_assert(sizeof(em_block_q5_0) == 22, "Q5_0 block size");
_Static_assert(sizeof(em_block_q5_1) == 24, "Q5_1 block size");
_Static_assert(sizeof(em_block_q8_0) == 34, "Q8_0 block size");
_Static_assert(sizeof(em_block_q8_1) == 36, "Q8_1 block size");
_Static_assert(sizeof(em_block_q2_k) == 84, "Q2_K block size");
_Static_assert(sizeof(em_block_q3_k) == 110, "Q3_K block size");
_Static_assert(sizeof(em_block_q4_k) == 144, "Q4_K block size");
_Static_assert(sizeof(em_block_q5_k) == 176, "Q5_K block size");
_Static_assert(sizeof(em_block_q6_k) == 210, "Q6_K block size");
_Static_assert(sizeof(em_block_q8_k) == 292, "Q8_K block size");
_Static_assert(sizeof(em_block_iq4_nl) == 18, "IQ4_NL block size");
_Static_assert(sizeof(em_block_iq4_xs) == 136, "IQ4_XS block size");

/* Unpacks the 6-bit scale and min of group g (0..7) of a Q4_K/Q5_K block. */
static inline void em_q4k_scale_min(const uint8_t *scales, int g, uint8_t *sc,
                                    uint8_t *mn) {
    if (g < 4) {
        *sc = scales[g] & 63;
        *mn = scales[g + 4] & 63;
    } else {
        *sc = (uint8_t)((scales[g + 4] & 15) | ((scales[g - 4] >> 6) << 4));
        *mn = (uint8_t)((scales[g + 4] >> 4) | ((scales[g] >> 6) << 4));
    }
}

/* Unpacks the sixteen 6-bit Q3_K group scales, minus their bias of 32. */
static inline void em_q3k_scales(const uint8_t *scales, int8_t out[16]) {
    for (int g = 0; g < 16; g++) {
        int lo = g < 8 ? (scales[g] & 15) : (scales[g - 8] >> 4);
        int hi = (scales[8 + (g & 3)] >> (2 * (g >> 2))) & 3;
        out[g] = (int8_t)((lo | (hi << 4)) - 32);
    }
}

/* The 6-bit IQ4_XS scale of group g, minus its bias of 32. */
static inline int em_iq4xs_scale(const em_block_iq4_xs *b, int g) {
    int lo = (b->scales_l[g / 2] >> (4 * (g & 1))) & 15;
    int hi = (b->scales_h >> (2 * g)) & 3;
    return (lo | (hi << 4)) - 32;
}

#endif /* EM_QUANT_BLOCKS_H */
