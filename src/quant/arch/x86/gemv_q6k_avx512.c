/*
 * gemv_q6k_avx512.c - the AVX-512 (VNNI) matrix-vector product of Q6_K
 * weight rows with one Q8_K activation row: the product that generation
 * (one token at a time) spends its time in, bound by memory bandwidth.
 *
 * The rows are read one after another in address order, with the rows
 * about 8 KiB ahead prefetched in software as in the other matrix-vector
 * kernels of gemm_avx2.c: rows of a few kilobytes are too short a stream
 * for the hardware prefetchers alone.
 *
 * Layout trick.  A Q6_K super-block (256 elements) is unpacked into four
 * registers of 64 unsigned 6-bit levels in ELEMENT order, so that each is
 * multiplied with 64 consecutive activation quants loaded straight from
 * the Q8_K block: no activation records need to be built or kept in L1
 * next to the weight stream.  Register s (elements 64s .. 64s+63, with
 * h = s / 2) takes its low four bits from ql[64h .. 64h+63], the low
 * nibbles for even s and the high ones for odd s, and its high two bits
 * from qh[32h .. 32h+31] broadcast to both 256-bit halves: one 64-bit
 * variable shift moves the two-bit fields of the upper half down by two,
 * after which, in both halves, bits 0-1 of each byte are the field for
 * even s and bits 4-5 the field for odd s; a mask keeps just those (one
 * shift and one mask serve both registers of a half).  One ternary-logic
 * instruction per register then takes bits 0-3 from the nibbles and bits
 * 4-7 from the high bits (moved up by four for even s).
 *
 * Each register is multiplied with vpdpbusd (u8 levels x s8 quants) into
 * 16 int32 sums of four elements; a sum of four is at most 4 * 63 * 128
 * in magnitude, so two such registers pack into one of 32 int16 without
 * loss (vpackssdw), and one vpdpwssd applies the 16-element groups'
 * scales to 32 of those sums at once.  The packing interleaves the two
 * registers per 128-bit lane, which only fixes the order in which the
 * group scales are permuted (vpermw) from the block's sixteen.  Q6_K's
 * bias of 32 is taken out per group with the activation's group sums:
 * sum_g scale_g * 32 * bsums_g, one vpmaddwd per super-block.  Every
 * integer part is exact; each super-block's sum is converted to float
 * once and scaled by the two block scales, as the scalar reference does.
 */
#if defined(__x86_64__) && defined(__GNUC__)

#include "quant/blocks.h"
#include "quant/gemm.h"
#include "quant/arch/x86/gemv_common.h"

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define Q6V_TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define Q6V_INLINE static inline __attribute__((always_inline)) Q6V_TGT

/* ------------------------------------------------------------- kernel */

/* The 64 unsigned levels of elements 64s .. 64s+63 (s = 2h + odd) of a
 * block: the low (odd = 0) or high (odd = 1) nibbles of ql[64h ..] below
 * the two high bits from hb, q6v_high's result for half h, whose bits
 * 0-1 hold the fields for even s, bits 4-5 those for odd s, and the
 * other bits are zero. */
Q6V_INLINE __m512i q6v_levels(__m512i ql, __m512i hb, int odd) {
    /* The 16-bit shifts move bits within each byte where it matters: bits
     * 4-7 of a byte after a left shift by 4 come from its own bits 0-3,
     * and bits 0-3 after a right shift by 4 from its own bits 4-7.  Bits
     * 4-7 of hb (odd) or of hb << 4 (even) are then exactly the two high
     * bits of the level with two zero bits above them. */
    const __m512i lo = odd ? _mm512_srli_epi16(ql, 4) : ql;
    const __m512i hi = odd ? hb : _mm512_slli_epi16(hb, 4);
    /* Bits 0-3 from lo, bits 4-7 from hi: imm 0xE4 is C ? A : B with
     * A = lo, B = hi and the constant C = 0x0f in every byte. */
    return _mm512_ternarylogic_epi32(lo, hi, _mm512_set1_epi8(0x0f), 0xE4);
}

/* qh[32h .. 32h+31] in both 256-bit halves, the upper half shifted right
 * by 2: then bits 0-1 of each byte hold the field of elements 64s + l
 * (s = 2h, lower half) or 64s + 32 + l (upper half), and bits 4-5 those
 * of 64s + 64 + l and 64s + 96 + l; the other bits are cleared. */
Q6V_INLINE __m512i q6v_high(const uint8_t *qh) {
    const __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)qh));
    return _mm512_and_si512(_mm512_srlv_epi64(q, _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0)), _mm512_set1_epi8(0x33));
}

Q6V_TGT void em_gemv_q6_k_avx512(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, float *out) {
    if (nw <= 0) return; /* nothing to read: not even the first prefetch */
    const int64_t nb = k / EM_QK_K;
    const uint8_t *wb = w;
    /* Group scales for vpdpwssd after vpackssdw of the int32 sums of
     * registers s and s + 1: 128-bit lane c holds four sums of register
     * s's lanes 4c .. 4c+3 (group 4s + c), then four of register s + 1's
     * (group 4s + 4 + c). */
    const __m512i idx01 = _mm512_set_epi16(7, 7, 7, 7, 3, 3, 3, 3, 6, 6, 6, 6, 2, 2, 2, 2,
                                           5, 5, 5, 5, 1, 1, 1, 1, 4, 4, 4, 4, 0, 0, 0, 0);
    const __m512i idx23 = _mm512_add_epi16(idx01, _mm512_set1_epi16(8));
    const int64_t prm = em_gemv_prefetch_rows(ws);
    /* The first group is asked for at once: the plan only looks ahead of
     * the group being computed. */
    em_gemv_prefetch_first(w, (size_t)prm * ws);
    for (int64_t r = 0; r < nw; r++) {
        const uint8_t *row = wb + (size_t)r * ws;
        const int64_t r0 = r - r % prm;
        uintptr_t pf;
        size_t pfl;
        em_gemv_prefetch_plan(w, ws, r0, prm, &pf, &pfl);
        const int64_t steps = prm * nb; /* prefetch steps per group */
        const size_t pfs = pf ? (pfl + (size_t)steps - 1) / (size_t)steps : 0;
        __m512 acc = _mm512_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *x = row + (size_t)b * sizeof(em_block_q6_k);
            const uint8_t *y = (const uint8_t *)a + (size_t)b * sizeof(em_block_q8_k);
            const uint8_t *yq = y + offsetof(em_block_q8_k, qs);
            if (pf) em_gemv_prefetch_part(pf, pfl, (r - r0) * nb + b, pfs);
            const __m512i ql0 = _mm512_loadu_si512(x + offsetof(em_block_q6_k, ql));
            const __m512i ql1 = _mm512_loadu_si512(x + offsetof(em_block_q6_k, ql) + 64);
            const __m512i qb0 = q6v_high(x + offsetof(em_block_q6_k, qh));
            const __m512i qb1 = q6v_high(x + offsetof(em_block_q6_k, qh) + 32);
            const __m512i z = _mm512_setzero_si512();
            const __m512i p0 = _mm512_dpbusd_epi32(z, q6v_levels(ql0, qb0, 0), _mm512_loadu_si512(yq));
            const __m512i p1 = _mm512_dpbusd_epi32(z, q6v_levels(ql0, qb0, 1), _mm512_loadu_si512(yq + 64));
            const __m512i p2 = _mm512_dpbusd_epi32(z, q6v_levels(ql1, qb1, 0), _mm512_loadu_si512(yq + 128));
            const __m512i p3 = _mm512_dpbusd_epi32(z, q6v_levels(ql1, qb1, 1), _mm512_loadu_si512(yq + 192));
            /* The sixteen scales as int16 in the low half (natural order);
             * the upper half is left undefined and never used: vpermw
             * picks from lanes 0-15 only, and the bias below multiplies
             * it by the zero upper half of the group sums. */
            const __m512i sc = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(
                _mm_loadu_si128((const __m128i *)(const void *)(x + offsetof(em_block_q6_k, scales)))));
            /* The bias: sum_g (-32 * scale_g) * bsums_g, with -32 * scale
             * (at most 4096 in magnitude) from one 16-bit multiply. */
            const __m256i bs = _mm256_loadu_si256((const __m256i *)(const void *)(y + offsetof(em_block_q8_k, bsums)));
            __m512i s = _mm512_madd_epi16(_mm512_mullo_epi16(sc, _mm512_set1_epi16(-32)), _mm512_zextsi256_si512(bs));
            s = _mm512_dpwssd_epi32(s, _mm512_packs_epi32(p0, p1), _mm512_permutexvar_epi16(idx01, sc));
            s = _mm512_dpwssd_epi32(s, _mm512_packs_epi32(p2, p3), _mm512_permutexvar_epi16(idx23, sc));
            /* d_w (fp16) in every lane, times d_a: one super-block's
             * products take longer than the addition's latency, so one
             * accumulator does not hold the loop up. */
            const __m512 dw = _mm512_cvtph_ps(_mm256_set1_epi16((short)em_gemv_ld16(x + offsetof(em_block_q6_k, d))));
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_set1_ps(em_gemv_ldf32(y))), acc);
        }
        out[r] = _mm512_reduce_add_ps(acc);
    }
}

#endif /* __x86_64__ && __GNUC__ */
