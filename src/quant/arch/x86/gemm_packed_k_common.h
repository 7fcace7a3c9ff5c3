/*
 * gemm_packed_k_common.h - what the kernels of the packed Q4_K and Q5_K
 * x16 layouts (quant/pack.h) share: both layouts start with the same
 * super-block head (d, dmin, the 6-bit scales and mins of 16 rows side by
 * side), then the levels in 64-byte runs at the same offset, so the
 * unpacking of scales and mins, the activation side of the min
 * correction, the buffer of one unpacked super-block and the drivers that
 * walk panels of activation rows and groups of weight rows are one code.
 * Each kernel file adds its own tiles (how a level is made: four bits, or
 * five from the runs a and e) and instantiates the drivers.
 *
 * The whole scheme is described in gemm_packed_k_avx2.c.  Included only
 * by x86 kernel files built with EM_HAVE_X86_GEMM.
 */
#ifndef EMBER_GEMM_PACKED_K_COMMON_H
#define EMBER_GEMM_PACKED_K_COMMON_H

#include "quant/arch/x86/gemv_common.h"
#include "quant/blocks.h"
#include "quant/pack.h"

#include <immintrin.h>

#define AI __attribute__((always_inline))
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define TVNNI __attribute__((target("avx2,fma,f16c,avxvnni")))

#define KP_ROWS EM_PACK_ROWS_K
#define KP_SC 64    /* offset of sc[12][16] in a super-block */
#define KP_QS 256   /* offset of qs[4][8][16][4]             */
#define Q8K_QS 4    /* offset of qs in a Q8_K block          */
#define Q8K_BS 260  /* offset of bsums                       */
_Static_assert(offsetof(em_block_q8_k, qs) == Q8K_QS && offsetof(em_block_q8_k, bsums) == Q8K_BS, "Q8_K");

/* Int32 entries of the per-call table of the activations' group sums
 * (min_pairs), which lives on the stack: 64 KiB. */
#define KP_TABLE 16384

/* Bytes of activation rows per panel (panel_rows).  Each panel streams
 * the call's weights and unpacks them again, so a prompt of 128 rows of
 * k = 2048 (2336 bytes each) takes two panels (112 + 16) at 256 KiB and
 * one at 320 KiB or more; a build may set it to measure that
 * (-DKP_PANEL_BYTES=...).  256 KiB is the whole L2 of the smallest
 * AVX2 cores (Skylake client); most have 512 KiB to 2 MiB. */
#ifndef KP_PANEL_BYTES
#define KP_PANEL_BYTES (256 * 1024)
#endif

/* For n activation rows (stride as) and each of their nb blocks, four
 * int32 at tbl[(r * nb + b) * 4 + p]: int16 pair (B_2p, B_2p+1) with
 * B_g = bsums[2g] + bsums[2g+1] (at most 32 * 128 in magnitude), the
 * activation side of vpdpwssd with the weights' min pairs. */
static void min_pairs(int64_t nb, const uint8_t *a, size_t as, int64_t n, int32_t *tbl) {
    for (int64_t r = 0; r < n; r++)
        for (int64_t b = 0; b < nb; b++) {
            int16_t bs[16];
            memcpy(bs, a + (size_t)r * as + (size_t)b * sizeof(em_block_q8_k) + Q8K_BS, sizeof bs);
            for (int p = 0; p < 4; p++) {
                const uint16_t lo = (uint16_t)(bs[4 * p] + bs[4 * p + 1]), hi = (uint16_t)(bs[4 * p + 2] + bs[4 * p + 3]);
                tbl[(r * nb + b) * 4 + p] = (int32_t)((uint32_t)lo | (uint32_t)hi << 16);
            }
        }
}

/* Activation rows per panel: as many as fill KP_PANEL_BYTES (they stay in
 * L2 while the call's groups pass over them) and whose table entries fit
 * KP_TABLE, in whole tiles of rn_max (EM_PACK_MAX_K keeps one tile's
 * within the table). */
static int64_t panel_rows(int64_t nb, size_t as, int64_t rn_max) {
    int64_t fit = (int64_t)(KP_PANEL_BYTES / as);
    if (fit > KP_TABLE / (nb * 4)) fit = KP_TABLE / (nb * 4);
    fit = fit / rn_max * rn_max;
    return fit < rn_max ? rn_max : fit;
}

static inline int32_t ld32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* The scales and mins of the packed bytes K[j] (byte j of each row's 12,
 * one row per lane), as kscales.h unpacks one row:
 *   sc g < 4: K[g] & 63;   mn g < 4: K[g + 4] & 63;
 *   sc g >= 4: (K[g + 4] & 15) | (K[g - 4] >> 6) << 4;
 *   mn g >= 4: (K[g + 4] >> 4) | (K[g] >> 6) << 4.
 * (K >> 6) << 4 is (K >> 2) & 0x30 for a byte in an int32 lane, so each
 * upper one is a shift and one bit-select (ternary logic 0xE4: bits 0-3
 * from the first operand, the rest from the second; K >> 2 has nothing
 * above bit 5).  VEC is the vector type, the ops its intrinsics. */
#define KP_UNPACK(VEC, K, sc, mp, AND, SRLI, SLLI, OR, SEL, SET1)                                            \
    do {                                                                                                    \
        const VEC m63 = SET1(63), m15 = SET1(15);                                                           \
        VEC mn[8];                                                                                          \
        for (int g = 0; g < 4; g++) {                                                                       \
            sc[g] = AND(K[g], m63);                                                                         \
            mn[g] = AND(K[g + 4], m63);                                                                     \
            sc[g + 4] = SEL(K[g + 8], SRLI(K[g], 2), m15);                                                  \
            mn[g + 4] = SEL(SRLI(K[g + 8], 4), SRLI(K[g + 4], 2), m15);                                     \
        }                                                                                                   \
        for (int p = 0; p < 4; p++) mp[p] = OR(mn[2 * p], SLLI(mn[2 * p + 1], 16));                         \
    } while (0)

#define SEL512(a, b, c) _mm512_ternarylogic_epi32(a, b, c, 0xE4)

/* Super-block sb's 16 rows: sc[8] scales and mp[4] min pairs. */
static inline AI T512 void unpack_512(const uint8_t *sb, __m512i *sc, __m512i *mp) {
    __m512i K[12];
    for (int j = 0; j < 12; j++) K[j] = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(sb + KP_SC + 16 * j)));
    KP_UNPACK(__m512i, K, sc, mp, _mm512_and_si512, _mm512_srli_epi32, _mm512_slli_epi32, _mm512_or_si512, SEL512,
              _mm512_set1_epi32);
}

/* The 256-bit sets' operations.  DP_P adds the byte products of four
 * quants per row to P: vpdpbusd with AVX-VNNI (int32 P), vpmaddubsw into
 * int16 pairs with plain AVX2; APPLY_P adds P times the group scale to T:
 * vpmulld, or vpmaddwd with the scale in both int16 halves of each lane
 * (SC16 makes that form); MIN adds a pair of mins times the activation's
 * pair of group sums.  There is no ternary logic below AVX-512: the
 * bit-select is and/andnot. */
#define SEL256(a, b, m) _mm256_or_si256(_mm256_and_si256(a, m), _mm256_andnot_si256(m, b))
#define VNNI_P(P, w, y) P = _mm256_dpbusd_avx_epi32(P, w, y)
#define VNNI_APPLY(T, P, sc) T = _mm256_add_epi32(T, _mm256_mullo_epi32(P, sc))
#define VNNI_SC16(sc) (sc)
#define VNNI_MIN(M, mp, y) M = _mm256_dpwssd_avx_epi32(M, mp, y)
#define AVX2_P(P, w, y) P = _mm256_add_epi16(P, _mm256_maddubs_epi16(w, y))
/* AVX2_PB (gemv_common.h) is AVX2_P with the sum kept in a register. */
#define AVX2_APPLY(T, P, sc) T = _mm256_add_epi32(T, _mm256_madd_epi16(P, sc))
#define AVX2_SC16(sc) _mm256_or_si256(sc, _mm256_slli_epi32(sc, 16))
#define AVX2_MIN(M, mp, y) M = _mm256_add_epi32(M, _mm256_madd_epi16(mp, y))

/* With more activation rows than one tile takes, every tile of a group
 * would unpack the same levels and scales again.  Instead each
 * super-block of the group is unpacked once into this buffer (in L1), and
 * the tiles of all the panel's activation rows work from it, keeping
 * their float sums in the output rows between super-blocks (the same
 * operations in the same order: outputs do not change).  The levels are
 * whole (Q5_K: all five bits). */
typedef struct kp_buf {
    uint8_t w[4][2][8][64]; /* levels of qs[s][q]: [s][h][q][row * 4 + i], h 0: low nibbles, 1: high */
    int32_t sc[8][16];      /* group scale of each row (AVX2: in both int16 halves) */
    int32_t mp[4][16];      /* int16 pairs of mins (groups 2p, 2p + 1) of each row */
    float d[16], dm[16];    /* d and dmin of each row */
} kp_buf;

/* The scales sc[8] and min pairs mp[4] of the 8 rows of half hf of
 * super-block sb, one row per int32 lane (the 256-bit form of unpack_512). */
#define KP_UNPACK_HALF256(sb, hf, sc, mp)                                                                      \
    do {                                                                                                       \
        __m256i K[12];                                                                                         \
        _Pragma("GCC unroll 12") for (int j = 0; j < 12; j++) K[j] = _mm256_cvtepu8_epi32(                     \
            _mm_loadl_epi64((const __m128i *)(const void *)((sb) + KP_SC + 16 * j + 8 * (hf))));               \
        KP_UNPACK(__m256i, K, sc, mp, _mm256_and_si256, _mm256_srli_epi32, _mm256_slli_epi32, _mm256_or_si256, \
                  SEL256, _mm256_set1_epi32);                                                                  \
    } while (0)

/* The end of super-block b in an unbuffered 256-bit tile of half hf: for
 * each of the RN activation rows, the mins' integer term M (DMIN of the
 * half's min pairs mp with the row's pairs in mpt), then
 * acc += T * (d * d_a) - M * (dmin * d_a) in float. */
#define KP_TILE_SB_END256(RN, sb, hf, b, nb, mpt, mp, ar, as, T, acc, DMIN)                                               \
    do {                                                                                                                  \
            const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(sb + 16 * hf)));             \
            const __m256 dm = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(sb + 32 + 16 * hf)));       \
            _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++) {                                                        \
                const int32_t *bp = mpt + ((int64_t)j * nb + b) * 4;                                                      \
                __m256i M = _mm256_setzero_si256();                                                                       \
                _Pragma("GCC unroll 4") for (int p = 0; p < 4; p++) DMIN(M, mp[p], _mm256_set1_epi32(bp[p]));             \
                const __m256 da = _mm256_set1_ps(em_gemv_ldf32(ar + (size_t)j * as + (size_t)b * sizeof(em_block_q8_k))); \
                acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(T[j]), _mm256_mul_ps(d, da), acc[j]);                         \
                acc[j] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(M), _mm256_mul_ps(dm, da), acc[j]);                          \
            }                                                                                                             \
    } while (0)

/* Filling the scale part of a kp_buf with the 256-bit sets: both 8-row
 * halves of super-block sb unpacked (SC16 gives the scales' form), with
 * d and dmin widened to float. */
#define KP_BUF_SCALES256(sb, u, SC16)                                                                                         \
    do {                                                                                                                      \
        for (int hf = 0; hf < 2; hf++) {                                                                                      \
            __m256i sc[8], mp[4];                                                                                             \
            KP_UNPACK_HALF256(sb, hf, sc, mp);                                                                                \
            for (int g = 0; g < 8; g++) _mm256_storeu_si256((__m256i *)(void *)(u->sc[g] + 8 * hf), SC16(sc[g]));             \
            for (int p = 0; p < 4; p++) _mm256_storeu_si256((__m256i *)(void *)(u->mp[p] + 8 * hf), mp[p]);                   \
            _mm256_storeu_ps(u->d + 8 * hf, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(sb + 16 * hf)))); \
            _mm256_storeu_ps(u->dm + 8 * hf,                                                                                  \
                             _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(sb + 32 + 16 * hf))));           \
        }                                                                                                                     \
    } while (0)

/* Filling a whole kp_buf with the 256-bit sets from super-block sb: the
 * levels of each 32-byte half x of each run (sq = 8s + q) of both halves
 * hf, LEVELS(x, sb, sq, hf, h) for group 2s + h (Q4_K: the nibbles; Q5_K:
 * levels_256 with the run e[q] it loads), then the scales as
 * KP_BUF_SCALES256 makes them. */
#define KP_BUF_FILL256(sb, u, SC16, LEVELS)                                                                             \
    do {                                                                                                                \
        for (int sq = 0; sq < 32; sq++)                                                                                 \
            for (int hf = 0; hf < 2; hf++) {                                                                            \
                const __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)(sb + KP_QS + sq * 64 + 32 * hf)); \
                _mm256_storeu_si256((__m256i *)(void *)(u->w[sq / 8][0][sq % 8] + 32 * hf), LEVELS(x, sb, sq, hf, 0)); \
                _mm256_storeu_si256((__m256i *)(void *)(u->w[sq / 8][1][sq % 8] + 32 * hf), LEVELS(x, sb, sq, hf, 1)); \
            }                                                                                                           \
        KP_BUF_SCALES256(sb, u, SC16);                                                                                  \
    } while (0)

/* The start of super-block b in an unbuffered 256-bit tile (SB bytes per
 * super-block of grp): declares sb, the scales sc[8] of half hf as SC16
 * makes them, its min pairs mp[4], and the integer sums T[RN] at zero,
 * after prefetching the call's share for step b (the tile's own pf, pfl,
 * pfs, grp, b and hf are used by name). */
#define KP_TILE_SB_START256(RN, SB, SC16)                                                                             \
    if (pf) em_gemv_prefetch_part(pf, pfl, b, pfs);                                                                   \
    const uint8_t *sb = grp + (size_t)b * (SB);                                                                       \
    __m256i sc[8], mp[4], T[4];                                                                                       \
    KP_UNPACK_HALF256(sb, hf, sc, mp);                                                                                \
    _Pragma("GCC unroll 8") for (int g = 0; g < 8; g++) sc[g] = SC16(sc[g]);                                          \
    _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++) T[j] = _mm256_setzero_si256();

/* The start of a buffered 256-bit tile: for each of its RN activation
 * rows, the float sum acc[j] begins at zero on a call's first super-block,
 * else at what out holds, and the integer sum T[j] at zero. */
#define KP_BUF_START256(RN, acc, T, out, ldo, first)                                                                   \
    _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++) {                                                            \
        acc[j] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(out + j * ldo);                                        \
        T[j] = _mm256_setzero_si256();                                                                                \
    }

/* The end of a buffered 256-bit tile: for each of its RN activation rows,
 * the mins' integer term M (DMIN of the row's min pairs bp + j * bps),
 * then acc += T * (d * d_a) - M * (dmin * d_a) in float, stored to out. */
#define KP_BUF_FINISH256(RN, hf, u, ar, as, bp, bps, acc, T, out, ldo, DMIN)                                               \
    do {                                                                                                                   \
        const __m256 d = _mm256_loadu_ps(u->d + 8 * hf), dm = _mm256_loadu_ps(u->dm + 8 * hf);                             \
        _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++) {                                                             \
            const int32_t *bj = bp + j * bps;                                                                              \
            __m256i M = _mm256_setzero_si256();                                                                            \
            _Pragma("GCC unroll 4") for (int p = 0; p < 4; p++)                                                            \
                DMIN(M, _mm256_loadu_si256((const __m256i *)(const void *)(u->mp[p] + 8 * hf)), _mm256_set1_epi32(bj[p])); \
            const __m256 da = _mm256_set1_ps(em_gemv_ldf32(ar + (size_t)j * as));                                          \
            acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(T[j]), _mm256_mul_ps(d, da), acc[j]);                              \
            acc[j] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(M), _mm256_mul_ps(dm, da), acc[j]);                               \
            _mm256_storeu_ps(out + j * ldo, acc[j]);                                                                       \
        }                                                                                                                  \
    } while (0)

/* A buffered 256-bit tile of both halves at once (KP_BUF_STEP with
 * HALVES 1): RN activation rows (ar: their block b, stride as; bp: their
 * min pairs of block b, stride bps) times the 16 rows of the unpacked
 * super-block u, adding to the float sums at out (zero first when first).
 * Per run q of a group, the two 32-byte halves of its levels are loaded
 * once and each activation row's quad is broadcast once for both: about
 * three instructions per vpmaddubsw (or vpdpbusd) against four and a half
 * for the tiles of one half (K16_BUF256, K5_BUF256), which broadcast the
 * same quads twice.  The loop over the eight groups stays rolled:
 * unrolled, the compiler interleaves the groups and spills their partial
 * sums.  PRUN runs go into P between two APPLYs (see VNNI_P and AVX2_PB).
 * Measured on Zen 5 (one thread, the tile alone over a buffer in L1, 112
 * activation rows): 6.5 cycles per eight vpmaddubsw against 13.0 for two
 * half tiles; rolled but one half at a time 9.3, both halves without
 * AVX2_PB's barrier 10.3.  Up to three activation rows (RNMAX 3 in
 * KP_BUF_STEP: their six sums P, six T, two weight halves and a broadcast
 * take 15 of the 16 ymm registers, no spill): 5.8-6.5 cycles against
 * 7.1-9.4 for two rows in the same minutes.  The integer sums are the
 * half tiles' (exact),
 * and the float steps the same in the same order, so outputs do not
 * change. */
#define KP_BUF_TILE16_256(tname, TGT, DPP, APPLY, DMIN, PRUN)                                                 \
    static inline AI TGT void tname(const int RN, int hf_unused, const kp_buf *u, const uint8_t *ar, size_t as, \
                                    const int32_t *bp, int64_t bps, float *out, int64_t ldo, bool first) {     \
        __m256 acc[2][4];                                                                                      \
        __m256i T[2][4];                                                                                       \
        KP_BUF_START256(RN, acc[0], T[0], out, ldo, first);                                                    \
        KP_BUF_START256(RN, acc[1], T[1], out + 8, ldo, first);                                                \
        _Pragma("GCC unroll 1") for (int g = 0; g < 8; g++) {                                                  \
            const uint8_t *wg = &u->w[0][0][0][0] + 512 * g; /* u->w[g / 2][g % 2] */                         \
            const uint8_t *yg = ar + Q8K_QS + 32 * g;                                                          \
            _Pragma("GCC unroll 2") for (int q0 = 0; q0 < 8; q0 += (PRUN)) {                                   \
                __m256i P[4][2];                                                                               \
                _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++) P[j][0] = P[j][1] = _mm256_setzero_si256(); \
                _Pragma("GCC unroll 8") for (int q = q0; q < q0 + (PRUN); q++) {                               \
                    const __m256i w0 = _mm256_loadu_si256((const __m256i *)(const void *)(wg + 64 * q));       \
                    const __m256i w1 = _mm256_loadu_si256((const __m256i *)(const void *)(wg + 64 * q + 32));  \
                    _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++) {                                     \
                        const __m256i y = _mm256_set1_epi32(ld32(yg + (size_t)j * as + 4 * q));                \
                        DPP(P[j][0], w0, y);                                                                   \
                        DPP(P[j][1], w1, y);                                                                   \
                    }                                                                                          \
                }                                                                                              \
                _Pragma("GCC unroll 2") for (int hf = 0; hf < 2; hf++) {                                       \
                    const __m256i sc = _mm256_loadu_si256((const __m256i *)(const void *)(u->sc[g] + 8 * hf)); \
                    _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++) APPLY(T[hf][j], P[j][hf], sc);        \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
        KP_BUF_FINISH256(RN, 0, u, ar, as, bp, bps, acc[0], T[0], out, ldo, DMIN);                             \
        KP_BUF_FINISH256(RN, 1, u, ar, as, bp, bps, acc[1], T[1], out + 8, ldo, DMIN);                         \
    }

/* The buffered product of one group (see KP_DRIVER) for the panel's
 * activation rows p0 .. p1-1, if more than one tile: returns whether it
 * was done.  UNPACK fills a kp_buf from one super-block of SB bytes. */
#define KP_BUF_STEP(fname, TGT, UNPACK, TILEB, RNMAX, HALVES, SB)                                              \
    static inline AI TGT bool fname(int64_t nb, const uint8_t *grp, uintptr_t pfa, size_t pfl, const uint8_t *a, \
                                    size_t as, int64_t p0, int64_t p1, const int32_t *tbl, float *out,        \
                                    int64_t ldo) {                                                             \
        if (p1 - p0 <= RNMAX) return false;                                                                    \
        kp_buf u;                                                                                              \
        const size_t pfs = pfa ? (pfl + (size_t)nb - 1) / (size_t)nb : 0;                                     \
        for (int64_t b = 0; b < nb; b++) {                                                                     \
            if (pfa) em_gemv_prefetch_part(pfa, pfl, b, pfs);                                                  \
            UNPACK(grp + (size_t)b * (SB), &u);                                                                \
            for (int64_t r0 = p0; r0 < p1; r0 += RNMAX) {                                                      \
                const int rn = (int)EM_MIN((int64_t)RNMAX, p1 - r0);                                           \
                const uint8_t *ar = a + (size_t)r0 * as + (size_t)b * sizeof(em_block_q8_k);                   \
                const int32_t *bp = tbl + ((r0 - p0) * nb + b) * 4;                                            \
                for (int hf = 0; hf < HALVES; hf++)                                                            \
                    EM_RN_SWITCH(TILEB, RNMAX, rn, hf, &u, ar, as, bp, nb * 4, out + r0 * ldo + hf * (KP_ROWS / HALVES), \
                                 ldo, b == 0);                                                                 \
            }                                                                                                  \
        }                                                                                                      \
        return true;                                                                                           \
    }
#define NO_BUF_STEP(...) false

/* For each panel of activation rows (their min pairs found first) and
 * each group of the call:
 *   - at most RNMAX activation rows: one tile per group half (HALVES 2:
 *     the 256-bit tiles of 8 rows) over all super-blocks, unpacking them
 *     as it goes.  The group after next is prefetched meanwhile
 *     (em_gemv_prefetch_plan's region): with one activation row, that is
 *     the matrix-vector product's stream;
 *   - more: with a BUF_STEP, each super-block unpacked once (kp_buf),
 *     then the tiles of all the panel's rows (and halves) over it;
 *     without (NO_BUF_STEP), tiles of RNMAX rows as above.
 * Measured (bench_gemm, 64 rows, Q4_K): the buffer makes the 256-bit
 * kernels 1.2x faster, whose tiles of two rows share little, and the
 * 512-bit one 1.3x slower, whose tiles of eight rows share the unpacking
 * already. */
#define KP_DRIVER(name, TGT, TILE, BUF_STEP, RNMAX, HALVES)                                              \
    TGT void name(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, size_t as, int64_t na,       \
                  float *out, int64_t ldo) {                                                                   \
        const int64_t nb = k / EM_QK_K;                                                                        \
        int32_t tbl[KP_TABLE];                                                                                 \
        const int64_t panel = panel_rows(nb, as, RNMAX);                                                       \
        for (int64_t p0 = 0; p0 < na; p0 += panel) {                                                           \
            const int64_t p1 = EM_MIN(na, p0 + panel);                                                         \
            min_pairs(nb, (const uint8_t *)a + (size_t)p0 * as, as, p1 - p0, tbl);                             \
            for (int64_t j0 = 0; j0 < nw; j0 += KP_ROWS) {                                                     \
                const uint8_t *grp = (const uint8_t *)w + (size_t)j0 * ws;                                     \
                uintptr_t pfa;                                                                                 \
                size_t pfl;                                                                                    \
                em_gemv_prefetch_plan(w, ws, j0, KP_ROWS, &pfa, &pfl);                                         \
                if (BUF_STEP(nb, grp, pfa, pfl, (const uint8_t *)a, as, p0, p1, tbl, out + j0, ldo)) continue; \
                const size_t pfs = pfa ? (pfl + (size_t)(nb * HALVES) - 1) / (size_t)(nb * HALVES) : 0;       \
                for (int64_t r0 = p0; r0 < p1; r0 += RNMAX) {                                                  \
                    const int rn = (int)EM_MIN((int64_t)RNMAX, p1 - r0);                                       \
                    const uint8_t *ar = (const uint8_t *)a + (size_t)r0 * as;                                  \
                    const int32_t *mt = tbl + (r0 - p0) * nb * 4;                                              \
                    for (int hf = 0; hf < HALVES; hf++) {                                                      \
                        const uintptr_t pf = pfa && r0 == p0 ? pfa + (size_t)hf * pfl / HALVES : 0;            \
                        float *o = out + r0 * ldo + j0 + hf * (KP_ROWS / HALVES);                              \
                        EM_RN_SWITCH(TILE, RNMAX, rn, hf, nb, grp, ar, as, mt, o, ldo, pf, pfl / HALVES, pfs); \
                    }                                                                                          \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
    }

/* Groups 2s and 2s + 1 of super-block sb (the runs qs[s][0..7]) times RN
 * activation rows (y: group 2s's quants of row 0, stride as), each
 * group's sums times its scale sc[2s + h] added to T[j].  For each run q
 * the weight vector is made once and the RN rows' sums P[j] take their
 * products in turn, so consecutive vpdpbusd are independent (one chain
 * per row, RN apart) and the levels are made once per run.  q5: Q5_K
 * (left: s < 2, whose fifth bits are shifted left; a constant, so each
 * loop below has one kind of shift); else Q4_K. */
static inline AI T512 void k16_runs_512(const int RN, const bool q5, const bool left, int s, const uint8_t *sb,
                                        const uint8_t *y, size_t as, const __m512i *sc, __m512i *T) {
    const __m512i m4 = _mm512_set1_epi8(15), m31 = _mm512_set1_epi8(31);
    const __m128i sh = _mm_cvtsi32_si128(left ? 3 - 2 * s : 2 * s - 3);
    /* One address register per row, each hidden from the compiler by an
     * empty asm: otherwise GCC makes the 64 offsets j * as + 4q loop
     * invariants, keeps them on the stack and loads one before each
     * vpdpbusd. */
    const uint8_t *yr[8];
#pragma GCC unroll 8
    for (int j = 0; j < RN; j++) {
        yr[j] = y + (size_t)j * as;
        __asm__("" : "+r"(yr[j]));
    }
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m512i P[8];
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) P[j] = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int q = 0; q < 8; q++) {
            const __m512i x = _mm512_loadu_si512(sb + KP_QS + (s * 8 + q) * 64);
            __m512i W;
            if (q5 && !h) {
                W = _mm512_and_si512(x, m31);
            } else if (q5) {
                /* ((a >> 5) ^ e shifted) & 31 (pack.h): ternary logic 0x28. */
                const __m512i e = _mm512_loadu_si512(sb + EM_Q5KX16_E + q * 64);
                const __m512i t = left ? _mm512_sll_epi16(e, sh) : _mm512_srl_epi16(e, sh);
                W = _mm512_ternarylogic_epi32(_mm512_srli_epi16(x, 5), t, m31, 0x28);
            } else {
                W = _mm512_and_si512(h ? _mm512_srli_epi16(x, 4) : x, m4);
            }
#pragma GCC unroll 8
            for (int j = 0; j < RN; j++) P[j] = em_gemv_dpbusd_b512(P[j], W, yr[j] + 32 * h + 4 * q);
        }
        const __m512i scg = sc[2 * s + h];
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) T[j] = _mm512_add_epi32(T[j], _mm512_mullo_epi32(P[j], scg));
    }
}

/* The AVX-512 tile for KP_DRIVER: a group is one tile (hf unused). */
/* One group (16 rows of nb super-blocks at grp) times RN activation rows
 * at ar (stride as) with their min pairs mpt[(j * nb + b) * 4 ..]:
 * out[j * ldo + i] for row i.  pf/pfl/pfs: the region to prefetch, a part
 * per super-block (pf 0: none).  q5 (a constant once inlined): Q5_K
 * super-blocks, whose levels of group 2s are the run a[s][q] and 31 and
 * those of group 2s + 1 ((a >> 5) ^ e[q] shifted) and 31 (pack.h); else
 * Q4_K.  The loop over the runs s stays rolled (k16_runs_512 is one run
 * of both groups): unrolled, GCC ordered each row's eight products as
 * one dependent chain, row after row, and spilled the sums to the stack;
 * rolled with the rows interleaved, nothing of the loop is spilled. */
static inline AI T512 void tile_512(const int RN, const bool q5, int64_t nb, const uint8_t *grp, const uint8_t *ar, size_t as,
                                    const int32_t *mpt, float *out, int64_t ldo, uintptr_t pf, size_t pfl, size_t pfs) {
    __m512 acc[8];
#pragma GCC unroll 8
    for (int j = 0; j < RN; j++) acc[j] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        if (pf) em_gemv_prefetch_part(pf, pfl, b, pfs);
        const uint8_t *sb = grp + (size_t)b * (q5 ? EM_PACK_Q5K_SB : EM_PACK_Q4K_SB);
        const uint8_t *yb = ar + (size_t)b * sizeof(em_block_q8_k) + Q8K_QS;
        __m512i sc[8], mp[4], T[8];
        unpack_512(sb, sc, mp);
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) T[j] = _mm512_setzero_si512();
        if (q5) {
#pragma GCC unroll 1
            for (int s = 0; s < 2; s++) k16_runs_512(RN, true, true, s, sb, yb + 64 * s, as, sc, T);
#pragma GCC unroll 1
            for (int s = 2; s < 4; s++) k16_runs_512(RN, true, false, s, sb, yb + 64 * s, as, sc, T);
        } else {
#pragma GCC unroll 1
            for (int s = 0; s < 4; s++) k16_runs_512(RN, false, false, s, sb, yb + 64 * s, as, sc, T);
        }
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)sb));
        const __m512 dm = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(sb + 32)));
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) {
            const int32_t *bp = mpt + ((int64_t)j * nb + b) * 4;
            __m512i M = _mm512_dpwssd_epi32(_mm512_setzero_si512(), mp[0], _mm512_set1_epi32(bp[0]));
            M = _mm512_dpwssd_epi32(M, mp[1], _mm512_set1_epi32(bp[1]));
            M = _mm512_dpwssd_epi32(M, mp[2], _mm512_set1_epi32(bp[2]));
            M = _mm512_dpwssd_epi32(M, mp[3], _mm512_set1_epi32(bp[3]));
            const __m512 da = _mm512_set1_ps(em_gemv_ldf32(ar + (size_t)j * as + (size_t)b * sizeof(em_block_q8_k)));
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(T[j]), _mm512_mul_ps(d, da), acc[j]);
            acc[j] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(M), _mm512_mul_ps(dm, da), acc[j]);
        }
    }
#pragma GCC unroll 8
    for (int j = 0; j < RN; j++) _mm512_storeu_ps(out + j * ldo, acc[j]);
}

#define TILE512_Q4K(RN, hf, ...) tile_512(RN, false, __VA_ARGS__)
#define TILE512_Q5K(RN, hf, ...) tile_512(RN, true, __VA_ARGS__)

/* ===================================== one activation row, plain AVX2 */

/* The levels of one 32-byte half of the runs a[s][q] (x) and e[q] (e) of
 * a Q5_K x16 super-block (pack.h), for group 2s + h: for h 0 the low five
 * bits of x; for h 1 the low five of (x >> 5) ^ (e shifted left by
 * 3 - 2s), by a count in a register, which is a constant once the loops
 * are unrolled (and still compiles when they are not).  Unused for h 0,
 * e's load goes away once inlined. */
static inline AI __m256i levels_256(__m256i x, __m256i e, int s, int h) {
    const __m256i m31 = _mm256_set1_epi8(31);
    if (!h) return _mm256_and_si256(x, m31);
    const __m256i t = s < 2 ? _mm256_sll_epi16(e, _mm_cvtsi32_si128(3 - 2 * s)) : _mm256_srl_epi16(e, _mm_cvtsi32_si128(2 * s - 3));
    return _mm256_and_si256(_mm256_xor_si256(_mm256_srli_epi16(x, 5), t), m31);
}

/* The matrix-vector product (one activation row) with plain AVX2.  The
 * tiles unpack each 8-row half's scales on its own, widening every packed
 * byte to an int32 lane first: about as many vector instructions per
 * super-block as the products of its levels take.  Here both halves go
 * together: byte j of the 16 rows' packed scales is one 128-bit lane, so
 * six loads hold a super-block's 12 bytes of all 16 rows and two dozen
 * byte operations unpack its scales and mins (KP_UNPACK's formulas, with
 * (K >> 6) << 4 as (K >> 2) & 0x30 per byte); they go to a small buffer,
 * from which each vector the products need (a scale in both int16 halves
 * of each row's lane, a pair of mins) is one broadcast load and one
 * vpshufb.  Each activation quad is broadcast once for both halves.
 *
 * KP_GEMV256 makes it for Q4_K (Q5 false: levels are nibbles) and Q5_K
 * (Q5 true: levels_256 from the runs a and e), PRUN runs of vpmaddubsw
 * pairs summed in int16 between two applications of the group scale (8
 * for Q4_K, 4 for Q5_K: see gemm_packed_q5k_avx2.c) and the loop over
 * the four pairs of groups unrolled SUNROLL times.  The integer sums are
 * the tiles' (exact) and the float steps the same, in the same order, so
 * outputs do not change.
 *
 * The prefetch of the next group (em_gemv_prefetch_plan's region) goes in
 * KP_GEMV_PF_PARTS parts per super-block, one at the start of each pair
 * of groups, instead of one part of 36 (Q4_K) or 44 (Q5_K) lines at the
 * start of the super-block: spread out, the requests stay behind the
 * loads of the rows being computed instead of queueing in front of them
 * all at once.  Measured streaming from memory (bench_stream, 2 threads,
 * loaded 2-core Zen 5, eight alternating pairs, median share of the read
 * test with the barriers and their prefetch): Q5_K 1.08x, Q4_K 1.09x;
 * eight parts (one per group) gave 1.03x and 0.97x in four pairs.  The
 * part is numbered by the pair s, so there are four.  Groups larger
 * than EM_GEMV_PF_NEAR_GROUP (near) prefetch EM_GEMV_PF_BYTES ahead of
 * the super-block instead, in the same four parts (gemv_common.h).
 *
 * The int16 sums go through AVX2_PB, each T[hf] is held in a register
 * after its add, and the runs e (Q5_K) are read through a pointer the
 * compiler cannot follow (se), once per pair of groups: otherwise GCC
 * keeps the sixteen e vectors of a super-block on the stack across the
 * pairs (a store and a reload each, instead of one load) and turns the
 * sums into trees of partial sums spilled to the stack, about 100 stack
 * accesses per Q5_K super-block, 8 with these.  Same integer sums (exact)
 * in another order of the int32 adds; measured in-process against the
 * previous code streaming 256 MiB with 2 threads (docs/PERFORMANCE.md,
 * session 11): Q5_K 1.023-1.051x at k = 2048 and 1.064x at 5632, Q4_K
 * 1.013-1.018x and 1.016x. */
#define KP_GEMV_PF_PARTS 4
#define KP_GEMV256(fname, SB, Q5, PRUN, SUNROLL)                                                                   \
    static inline AI void fname(int64_t nb, const uint8_t *grp, const uint8_t *ar, const int32_t *mpt, float *out, \
                                uintptr_t pf, size_t pfl, size_t pfs, bool near) {                                 \
        const __m256i m4 = _mm256_set1_epi8(15), m63 = _mm256_set1_epi8(63);                                       \
        const __m256i m30 = _mm256_set1_epi8(0x30);                                                                \
        /* Scales: bytes 0-3 (lane 0) and 4-7 (lane 1) into both int16 halves                                      \
         * of the int32 lanes.  Mins: bytes r and 8 + r into the two halves. */                                    \
        const __m256i xsc = _mm256_setr_epi8(0, -1, 0, -1, 1, -1, 1, -1, 2, -1, 2, -1, 3, -1, 3, -1, 4, -1, 4, -1, \
                                             5, -1, 5, -1, 6, -1, 6, -1, 7, -1, 7, -1);                            \
        const __m256i xmn = _mm256_setr_epi8(0, -1, 8, -1, 1, -1, 9, -1, 2, -1, 10, -1, 3, -1, 11, -1, 4, -1, 12, \
                                             -1, 5, -1, 13, -1, 6, -1, 14, -1, 7, -1, 15, -1);                     \
        _Alignas(32) uint8_t S[8][16];     /* scale of group g of row i at S[g][i] */                              \
        _Alignas(32) uint8_t MN[4][2][16]; /* [p][hf]: mins of groups 2p, 2p + 1 of rows 8hf .. 8hf + 7 */         \
        __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};                                                \
        for (int64_t b = 0; b < nb; b++) {                                                                         \
            const uint8_t *sb = grp + (size_t)b * (SB);                                                            \
            const uint8_t *y = ar + (size_t)b * sizeof(em_block_q8_k);                                             \
            __m256i K[6]; /* K[j]: packed bytes 2j (lane 0) and 2j + 1 (lane 1) of the 16 rows */                  \
            for (int j = 0; j < 6; j++) K[j] = _mm256_loadu_si256((const __m256i *)(const void *)(sb + KP_SC + 32 * j)); \
            const __m256i hi01 = _mm256_and_si256(_mm256_srli_epi16(K[0], 2), m30);                                \
            const __m256i hi23 = _mm256_and_si256(_mm256_srli_epi16(K[1], 2), m30);                                \
            const __m256i hi45 = _mm256_and_si256(_mm256_srli_epi16(K[2], 2), m30);                                \
            const __m256i hi67 = _mm256_and_si256(_mm256_srli_epi16(K[3], 2), m30);                                \
            _mm256_store_si256((__m256i *)(void *)S[0], _mm256_and_si256(K[0], m63));                              \
            _mm256_store_si256((__m256i *)(void *)S[2], _mm256_and_si256(K[1], m63));                              \
            _mm256_store_si256((__m256i *)(void *)S[4], _mm256_or_si256(_mm256_and_si256(K[4], m4), hi01));        \
            _mm256_store_si256((__m256i *)(void *)S[6], _mm256_or_si256(_mm256_and_si256(K[5], m4), hi23));        \
            const __m256i mn[4] = {                                                                                \
                _mm256_and_si256(K[2], m63),                                                                       \
                _mm256_and_si256(K[3], m63),                                                                       \
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(K[4], 4), m4), hi45),                           \
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(K[5], 4), m4), hi67),                           \
            };                                                                                                     \
            /* Lane 0 of mn[p] holds group 2p's mins of the 16 rows, lane 1                                        \
             * group 2p + 1's: quadwords 0, 2, 1, 3 put each half's together. */                                   \
            for (int p = 0; p < 4; p++)                                                                            \
                _mm256_store_si256((__m256i *)(void *)MN[p], _mm256_permute4x64_epi64(mn[p], 0xD8));               \
            __m256i T[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};                                       \
            _Pragma(SUNROLL) for (int s = 0; s < 4; s++) _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {     \
                if (near && !h)                                                                                    \
                    em_gemv_prefetch_ahead(sb, (SB), s, KP_GEMV_PF_PARTS);           \
                else if (pf && !h) em_gemv_prefetch_part(pf, pfl, b * KP_GEMV_PF_PARTS + s, pfs);                  \
                const uint8_t *se = sb;                                                                            \
                __asm__("" : "+r"(se));                                                                            \
                _Pragma("GCC unroll 2") for (int hf = 0; hf < 2; hf++) {                                           \
                    const __m256i sc = _mm256_shuffle_epi8(                                                        \
                        _mm256_broadcastq_epi64(_mm_loadl_epi64((const __m128i *)(const void *)(S[2 * s + h] + 8 * hf))), \
                        xsc);                                                                                      \
                    _Pragma("GCC unroll 2") for (int q0 = 0; q0 < 8; q0 += (PRUN)) {                               \
                        __m256i P = _mm256_setzero_si256();                                                        \
                        _Pragma("GCC unroll 8") for (int q = q0; q < q0 + (PRUN); q++) {                           \
                            const __m256i x = _mm256_loadu_si256(                                                  \
                                (const __m256i *)(const void *)(sb + KP_QS + (s * 8 + q) * 64 + 32 * hf));         \
                            const __m256i w =                                                                      \
                                (Q5) ? levels_256(x,                                                               \
                                                  _mm256_loadu_si256((const __m256i *)(const void *)(se + EM_Q5KX16_E + \
                                                                                                     q * 64 + 32 * hf)), \
                                                  s, h)                                                            \
                                     : _mm256_and_si256(h ? _mm256_srli_epi16(x, 4) : x, m4);                      \
                            AVX2_PB(P, w, _mm256_set1_epi32(ld32(y + Q8K_QS + 64 * s + 32 * h + 4 * q)));          \
                        }                                                                                          \
                        T[hf] = _mm256_add_epi32(T[hf], _mm256_madd_epi16(P, sc));                                 \
                        __asm__("" : "+x"(T[hf]));                                                                 \
                    }                                                                                              \
                }                                                                                                  \
            }                                                                                                      \
            const __m256 da = _mm256_set1_ps(em_gemv_ldf32(y));                                                    \
            const int32_t *bp = mpt + b * 4;                                                                       \
            _Pragma("GCC unroll 2") for (int hf = 0; hf < 2; hf++) {                                               \
                __m256i M = _mm256_setzero_si256();                                                                \
                _Pragma("GCC unroll 4") for (int p = 0; p < 4; p++) {                                              \
                    const __m256i mp = _mm256_shuffle_epi8(                                                        \
                        _mm256_broadcastsi128_si256(_mm_load_si128((const __m128i *)(const void *)MN[p][hf])), xmn); \
                    M = _mm256_add_epi32(M, _mm256_madd_epi16(mp, _mm256_set1_epi32(bp[p])));                      \
                }                                                                                                  \
                const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(sb + 16 * hf)));  \
                const __m256 dm = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(sb + 32 + 16 * hf))); \
                acc[hf] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(T[hf]), _mm256_mul_ps(d, da), acc[hf]);               \
                acc[hf] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(M), _mm256_mul_ps(dm, da), acc[hf]);                 \
            }                                                                                                      \
        }                                                                                                          \
        _mm256_storeu_ps(out, acc[0]);                                                                             \
        _mm256_storeu_ps(out + 8, acc[1]);                                                                         \
    }

/* The plain AVX2 entry point of a packed K type: one activation row goes
 * to GEMV (a KP_GEMV256), more to ROWS (a KP_DRIVER).  Groups larger
 * than NEAR_GROUP bytes prefetch EM_GEMV_PF_BYTES ahead instead of one
 * group (gemv_common.h). */
#define KP_GEMV_DRIVER(name, ROWS, GEMV, SB, NEAR_GROUP)                                                           \
    void name(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, size_t as, int64_t na, float *out,   \
              int64_t ldo) {                                                                                       \
        /* mpt below holds EM_PACK_MAX_K columns; wider rows take ROWS. */                                       \
        if (na != 1 || k > EM_PACK_MAX_K) {                                                                        \
            ROWS(k, w, ws, nw, a, as, na, out, ldo);                                                               \
            return;                                                                                                \
        }                                                                                                          \
        const int64_t nb = k / EM_QK_K;                                                                            \
        int32_t mpt[4 * (EM_PACK_MAX_K / EM_QK_K)];                                                                \
        min_pairs(nb, (const uint8_t *)a, as, 1, mpt);                                                             \
        /* Wide groups prefetch a constant distance ahead (gemv_common.h). */                                      \
        const bool near = (size_t)KP_ROWS * ws > (NEAR_GROUP);                                                     \
        for (int64_t j0 = 0; j0 < nw; j0 += KP_ROWS) {                                                             \
            uintptr_t pfa;                                                                                         \
            size_t pfl;                                                                                            \
            em_gemv_prefetch_plan(w, ws, j0, KP_ROWS, &pfa, &pfl);                                                 \
            const size_t pfs = pfa ? (pfl + (size_t)nb * KP_GEMV_PF_PARTS - 1) / ((size_t)nb * KP_GEMV_PF_PARTS) : 0; \
            GEMV(nb, (const uint8_t *)w + (size_t)j0 * ws, (const uint8_t *)a, mpt, out + j0, pfa, pfl, pfs, near); \
        }                                                                                                          \
    }

#endif /* EMBER_GEMM_PACKED_K_COMMON_H */
