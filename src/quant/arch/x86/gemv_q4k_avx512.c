/*
 * gemv_q4k_avx512.c - the AVX-512 (VNNI) matrix-vector products of Q4_K
 * and Q5_K weight rows with one Q8_K activation row: the products that
 * generation (one token at a time) spends its time in, bound by memory
 * bandwidth.  The approach is that of gemv_q6k_avx512.c.
 *
 * The rows are read one after another in address order, with the rows
 * about 8 KiB ahead prefetched in software (gemv_common.h): rows of a few
 * kilobytes are too short a stream for the hardware prefetchers alone.
 *
 * Layout trick.  A super-block (256 elements, eight groups of 32) is
 * unpacked into four registers of 64 unsigned levels in ELEMENT order, so
 * that each is multiplied with 64 consecutive activation quants loaded
 * straight from the Q8_K block: no activation records need to be built or
 * kept in L1 next to the weight stream.  Register s (elements 64s ..
 * 64s+63, groups 2s and 2s+1) is qs[32s .. 32s+31] broadcast to both
 * 256-bit halves, with the upper half shifted right by four (one 64-bit
 * variable shift): masked to four bits, the lower half is then the low
 * nibbles (elements 64s .. 64s+31) and the upper half the high nibbles
 * (64s+32 .. 64s+63).  Q5_K's fifth bit of element 64s + 32j + l is bit
 * 2s + j of qh[l]: qh broadcast to both halves and rotated, per 64-bit
 * lane, by 4 - 2s (lower) or 3 - 2s (upper) puts it at bit 4 of its own
 * byte, and one ternary-logic instruction takes bits 0-3 from the
 * nibbles and bits 4-7 from there before a mask keeps bits 0-4.
 *
 * Each register is multiplied with vpdpbusd (u8 levels x s8 quants) into
 * 16 int32 sums of four elements; a sum of four is at most 4 * 31 * 128
 * in magnitude (4 * 15 * 128 for Q4_K), so two such registers pack into
 * one of 32 int16 without loss (vpackssdw), and one vpdpwssd applies the
 * groups' 6-bit scales to 32 of those sums at once.  The packing
 * interleaves the two registers per 128-bit lane, which only fixes the
 * order in which the scales are permuted (vpermw) from the block's eight.
 * The mins are taken out with the activation's sums over groups of 16:
 * sum_g mn_g * (bsums_2g + bsums_2g+1), one vpmaddwd per super-block with
 * each min spread to two 16-bit lanes.  Every integer part is exact; the
 * two integer sums of a super-block are converted to float once each and
 * scaled by d * d_a and dmin * d_a, as the scalar reference does.
 */
#if defined(__x86_64__) && defined(__GNUC__)

#include "quant/arch/x86/gemv_common.h"
#include "quant/blocks.h"
#include "quant/gemm.h"

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

/* Q4_K (Q5_K) weights, nw rows of k elements, row r at w + r * ws, times
 * one Q8_K activation row a of k elements: out[r] = dot(row r, a) for
 * r < nw.  k is a positive multiple of 256.  Need AVX-512 F, BW, VL and
 * VNNI. */
void em_gemv_q4_k_avx512(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, float *out);
void em_gemv_q5_k_avx512(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, float *out);

#define Q4V_TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define Q4V_INLINE static inline __attribute__((always_inline)) Q4V_TGT

/* Where the fields lie in a Q4_K and a Q5_K block.  They are the same but
 * for Q5_K's qh, which comes before qs. */
_Static_assert(offsetof(em_block_q4_k, d) == offsetof(em_block_q5_k, d), "Q4_K/Q5_K d");
_Static_assert(offsetof(em_block_q4_k, dmin) == offsetof(em_block_q5_k, dmin), "Q4_K/Q5_K dmin");
_Static_assert(offsetof(em_block_q4_k, scales) == offsetof(em_block_q5_k, scales), "Q4_K/Q5_K scales");
_Static_assert(offsetof(em_block_q4_k, dmin) == offsetof(em_block_q4_k, d) + 2, "Q4_K d, dmin adjacent");

/* Scale indices for vpdpwssd after vpackssdw of the int32 sums of
 * registers s and s + 1 (s = 0; add 4 for s = 2): 128-bit lane c holds
 * four sums of register s's lanes 4c .. 4c+3, which belong to group
 * 2s + c / 2, then four of register s + 1's (group 2s + 2 + c / 2). */
static const int16_t q4v_idx01[32] = {0, 0, 0, 0, 2, 2, 2, 2, 0, 0, 0, 0, 2, 2, 2, 2,
                                      1, 1, 1, 1, 3, 3, 3, 3, 1, 1, 1, 1, 3, 3, 3, 3};

/* Min indices for vpmaddwd with the sixteen bsums: mins sit in 16-bit
 * lanes 8-15 of the unpacked scales, and min g goes to lanes 2g, 2g+1. */
static const int16_t q4v_idxm[16] = {8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15};

/* The 64 levels of register s of a block: qsb is qs[32s .. 32s+31] in
 * both halves, qhb (Q5_K only) qh in both halves. */
Q4V_INLINE __m512i q4v_levels(__m512i qsb, __m512i qhb, int s, int q5) {
    /* The upper half moves down by four: its bits 0-3 of each byte are
     * then the high nibble of the same byte (the 64-bit shift brings in
     * the next byte's low bits only above bit 3). */
    const __m512i nib = _mm512_srlv_epi64(qsb, _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0));
    if (!q5) return _mm512_and_si512(nib, _mm512_set1_epi8(0x0f));
    /* Bit 2s (lower half) or 2s + 1 (upper half) of each qh byte to bit 4
     * of the same byte: a rotation by 4 - 2s or 3 - 2s (mod 64) moves
     * bit 4 - t of a byte to its bit 4, and 4 - t is within 0..7. */
    const long long tl = (4 - 2 * s) & 63, tu = (3 - 2 * s) & 63;
    const __m512i hb = _mm512_rolv_epi64(qhb, _mm512_set_epi64(tu, tu, tu, tu, tl, tl, tl, tl));
    /* Bits 0-3 from nib, bits 4-7 from hb: imm 0xE4 is C ? A : B with
     * A = nib, B = hb and the constant C = 0x0f in every byte; then only
     * bit 4 of hb's is kept. */
    const __m512i q = _mm512_ternarylogic_epi32(nib, hb, _mm512_set1_epi8(0x0f), 0xE4);
    return _mm512_and_si512(q, _mm512_set1_epi8(0x1f));
}

/* The eight 6-bit scales and eight 6-bit mins of block x as int16, scales
 * in lanes 0-7 and mins in lanes 8-15, unpacked in vector registers (the
 * scalar em_q4k_scales8 of kscales.h takes about three times as many
 * instructions, which shows in a loop this short).  One vpshufb puts in
 * lane g of each half the byte holding the low bits (low byte) and, for
 * g >= 4, the byte holding the top two bits (high byte; zero for g < 4):
 *   scale g < 4: scales[g] & 63;  min g < 4: scales[g + 4] & 63;
 *   scale g >= 4: (scales[g + 4] & 15) | (scales[g - 4] >> 6) << 4;
 *   min g >= 4: (scales[g + 4] >> 4) | (scales[g] >> 6) << 4.
 * The low bits are the lane shifted right by 0 (4 for mins g >= 4) under
 * the mask m (63 for g < 4, 15 otherwise); the top two bits are the lane
 * shifted right by 10, which puts bits 6-7 of the high byte at bits 4-5
 * and leaves nothing above bit 5, taken where m is clear.  The 16-byte
 * load reads four bytes of qs (Q4_K) or qh (Q5_K) after the scales, which
 * are part of the same block. */
Q4V_INLINE __m256i q4v_scales(const uint8_t *x) {
    const __m256i raw = _mm256_broadcastsi128_si256(
        _mm_loadu_si128((const __m128i *)(const void *)(x + offsetof(em_block_q4_k, scales))));
    const __m256i pick = _mm256_setr_epi8(0, -1, 1, -1, 2, -1, 3, -1, 8, 0, 9, 1, 10, 2, 11, 3,
                                          4, -1, 5, -1, 6, -1, 7, -1, 8, 4, 9, 5, 10, 6, 11, 7);
    const __m256i lane = _mm256_shuffle_epi8(raw, pick);
    const __m256i lo = _mm256_srlv_epi16(lane, _mm256_setr_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4));
    const __m256i m = _mm256_setr_epi16(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 15, 15, 15, 15);
    /* imm 0xE4 is C ? A : B bit by bit: A = lo, B = the top bits, C = m. */
    return _mm256_ternarylogic_epi32(lo, _mm256_srli_epi16(lane, 10), m, 0xE4);
}

/* Register s's levels times the activation quants yq[64s .. 64s+63]:
 * sixteen int32 sums of four, lanes 0-7 for group 2s, 8-15 for 2s + 1. */
Q4V_INLINE __m512i q4v_dot(const uint8_t *qs, __m512i qhb, const uint8_t *yq, int s, int q5) {
    const __m512i qsb = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)(qs + 32 * s)));
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), q4v_levels(qsb, qhb, s, q5), _mm512_loadu_si512(yq + 64 * s));
}

/* The shared body: q5 selects Q5_K (a constant after inlining). */
Q4V_INLINE void q4v_gemv(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, float *out, int q5) {
    if (nw <= 0) return; /* nothing to read: not even the first prefetch */
    const int64_t nb = k / EM_QK_K;
    const size_t bsz = q5 ? sizeof(em_block_q5_k) : sizeof(em_block_q4_k);
    const size_t qs_off = q5 ? offsetof(em_block_q5_k, qs) : offsetof(em_block_q4_k, qs);
    const uint8_t *wb = w;
    const __m512i idx01 = _mm512_loadu_si512(q4v_idx01);
    const __m512i idx23 = _mm512_add_epi16(idx01, _mm512_set1_epi16(4));
    const __m256i idxm = _mm256_loadu_si256((const __m256i *)(const void *)q4v_idxm);
    const int64_t prm = em_gemv_prefetch_rows(ws);
    em_gemv_prefetch_first(w, (size_t)prm * ws);
    /* The plan is made once per group of rows: its divisions would cost
     * as much as a super-block's work if made for every short row. */
    for (int64_t r0 = 0; r0 < nw; r0 += prm) {
        uintptr_t pf;
        size_t pfl;
        em_gemv_prefetch_plan(w, ws, r0, prm, &pf, &pfl);
        const int64_t steps = prm * nb; /* prefetch steps per group */
        const size_t pfs = pf ? (pfl + (size_t)steps - 1) / (size_t)steps : 0;
        const int64_t r1 = EM_MIN(r0 + prm, nw);
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *row = wb + (size_t)r * ws;
            __m512 acc = _mm512_setzero_ps();  /* d * d_a * scaled sums    */
            __m256 accm = _mm256_setzero_ps(); /* dmin * d_a * min sums    */
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *x = row + (size_t)b * bsz;
                const uint8_t *y = (const uint8_t *)a + (size_t)b * sizeof(em_block_q8_k);
                const uint8_t *yq = y + offsetof(em_block_q8_k, qs);
                const uint8_t *qs = x + qs_off;
                if (pf) em_gemv_prefetch_part(pf, pfl, (r - r0) * nb + b, pfs);
                __m512i qhb = _mm512_setzero_si512();
                if (q5)
                    qhb = _mm512_broadcast_i64x4(
                        _mm256_loadu_si256((const __m256i *)(const void *)(x + offsetof(em_block_q5_k, qh))));
                /* Written out rather than looped: compilers may keep a loop
                 * and spill p to the stack. */
                const __m512i p0 = q4v_dot(qs, qhb, yq, 0, q5);
                const __m512i p1 = q4v_dot(qs, qhb, yq, 1, q5);
                const __m512i p2 = q4v_dot(qs, qhb, yq, 2, q5);
                const __m512i p3 = q4v_dot(qs, qhb, yq, 3, q5);
                /* The upper half of sc is left undefined and never used:
                 * vpermw picks from lanes 0-15 only. */
                const __m256i scm = q4v_scales(x);
                const __m512i sc = _mm512_castsi256_si512(scm);
                __m512i t = _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_packs_epi32(p0, p1),
                                                _mm512_permutexvar_epi16(idx01, sc));
                t = _mm512_dpwssd_epi32(t, _mm512_packs_epi32(p2, p3), _mm512_permutexvar_epi16(idx23, sc));
                /* The mins: bsums up to 16 * 128 and mins up to 63 in
                 * magnitude, so a pair's sum fits int32 with room to spare. */
                const __m256i bs =
                    _mm256_loadu_si256((const __m256i *)(const void *)(y + offsetof(em_block_q8_k, bsums)));
                const __m256i m = _mm256_madd_epi16(bs, _mm256_permutexvar_epi16(idxm, scm));
                /* d and dmin (adjacent fp16) times d_a.  One super-block's
                 * work takes longer than the addition's latency, so one
                 * accumulator of each kind does not hold the loop up. */
                uint32_t dpair;
                memcpy(&dpair, x + offsetof(em_block_q4_k, d), 4);
                const __m128 dd =
                    _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128((int)dpair)), _mm_set1_ps(em_gemv_ldf32(y)));
                acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), _mm512_broadcastss_ps(dd), acc);
                accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(m), _mm256_broadcastss_ps(_mm_movehdup_ps(dd)), accm);
            }
            /* One reduction for both: the mins come off lanes 0-7. */
            out[r] = _mm512_reduce_add_ps(_mm512_sub_ps(acc, _mm512_zextps256_ps512(accm)));
        }
    }
}

Q4V_TGT void em_gemv_q4_k_avx512(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, float *out) {
    q4v_gemv(k, w, ws, nw, a, out, 0);
}

Q4V_TGT void em_gemv_q5_k_avx512(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, float *out) {
    q4v_gemv(k, w, ws, nw, a, out, 1);
}

#endif /* __x86_64__ && __GNUC__ */
