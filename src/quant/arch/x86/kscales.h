/*
 * kscales.h - unpacking the packed sub-block scales of Q4_K/Q5_K, Q3_K and
 * IQ4_XS into one byte per group, shared by the AVX2 and AVX-512 kernels.
 *
 * The packings (see blocks.h) spread 6-bit values over nibbles and 2-bit
 * fields of different bytes; the scalar code in dot_generic.c unpacks them
 * one group at a time.  Here whole 32-bit words are masked and shifted at
 * once, which takes a dozen integer instructions per block instead of a
 * loop, and the result (group g in byte g of a little-endian word) loads
 * straight into a vector register.  Plain C: no ISA needed.
 */
#ifndef EM_QUANT_KSCALES_H
#define EM_QUANT_KSCALES_H

#include "quant/blocks.h"

#include <string.h>

/* Q4_K/Q5_K: the eight 6-bit scales and the eight 6-bit mins. */
static inline void em_q4k_scales8(const uint8_t *scales, uint64_t *sc, uint64_t *mn) {
    uint32_t a0, a1, a2;
    memcpy(&a0, scales, 4);
    memcpy(&a1, scales + 4, 4);
    memcpy(&a2, scales + 8, 4);
    /* Groups 4-7 take their top two bits from the top of bytes 0-3 (scales)
     * and 4-7 (mins): (byte >> 6) << 4 is (byte >> 2) & 0x30 per byte. */
    const uint32_t sc_hi = (a2 & 0x0f0f0f0fu) | ((a0 >> 2) & 0x30303030u);
    const uint32_t mn_hi = ((a2 >> 4) & 0x0f0f0f0fu) | ((a1 >> 2) & 0x30303030u);
    *sc = (a0 & 0x3f3f3f3fu) | (uint64_t)sc_hi << 32;
    *mn = (a1 & 0x3f3f3f3fu) | (uint64_t)mn_hi << 32;
}

/* Q3_K: the sixteen 6-bit group scales, still biased by +32: w[0] holds
 * groups 0-3, ..., w[3] groups 12-15.  Low nibbles come from bytes 0-7
 * (groups 0-7) and their high nibbles (groups 8-15); the top two bits of
 * group g are bits 2 * (g / 4) of byte 8 + g % 4. */
static inline void em_q3k_scales16(const uint8_t *scales, uint32_t w[4]) {
    uint32_t a0, a1, a2;
    memcpy(&a0, scales, 4);
    memcpy(&a1, scales + 4, 4);
    memcpy(&a2, scales + 8, 4);
    const uint32_t m4 = 0x0f0f0f0fu, m2 = 0x03030303u;
    w[0] = (a0 & m4) | ((a2 & m2) << 4);
    w[1] = (a1 & m4) | (((a2 >> 2) & m2) << 4);
    w[2] = ((a0 >> 4) & m4) | (((a2 >> 4) & m2) << 4);
    w[3] = ((a1 >> 4) & m4) | (((a2 >> 6) & m2) << 4);
}

/* IQ4_XS: the eight 6-bit group scales, still biased by +32.  The nibbles
 * of scales_l and the 2-bit fields of scales_h are spread to one byte
 * each by shift-and-mask steps that halve the field width. */
static inline uint64_t em_iq4xs_scales8(const em_block_iq4_xs *b) {
    uint32_t l32;
    memcpy(&l32, b->scales_l, 4);
    uint64_t lo = l32;
    lo = (lo | lo << 16) & 0x0000ffff0000ffffull;
    lo = (lo | lo << 8) & 0x00ff00ff00ff00ffull;
    lo = (lo | lo << 4) & 0x0f0f0f0f0f0f0f0full;
    uint64_t hi = b->scales_h;
    hi = (hi | hi << 24) & 0x000000ff000000ffull;
    hi = (hi | hi << 12) & 0x000f000f000f000full;
    hi = (hi | hi << 6) & 0x0303030303030303ull;
    return lo | hi << 4;
}

#endif /* EM_QUANT_KSCALES_H */
