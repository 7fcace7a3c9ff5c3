/*
 * gemm_packed_q5k_avx2.c - kernels of the Q5_K x16 packed layout
 * (quant/pack.h) times Q8_K activation rows: AVX-512 with VNNI, AVX-VNNI
 * (256-bit) and AVX2.  They are the Q4_K x16 kernels
 * (gemm_packed_k_avx2.c, whose comment gives the whole scheme) with the
 * fifth bit: one kernel serves prompt processing and generation (one
 * activation row, streamed with the prefetch of gemv_common.h); the 16
 * rows of a group each own an int32 lane (8 per 256-bit register); the
 * scales and mins are unpacked 16 rows at once; the mins come off through
 * the activation's group sums (vpdpwssd of min pairs with bsums pairs).
 *
 * The levels: a 64-byte load of qs[s][q] holds four bytes of each row,
 * whose low nibbles are four levels of group 2s and high nibbles four of
 * group 2s + 1; the 64-byte run qh[q] holds the matching fifth bits, bit
 * g for group g.  AVX-512 tests bit g of each byte into a mask register
 * and adds 16 under it; the 256-bit kernels shift bit g to bit 4 and or it
 * in.  The group sum P of level times quant is at most 32 * 31 * 128 in
 * magnitude, T = sum_g P_g * sc_g at most 8 * 63 * 126976 (int32, exact),
 * and acc += T * (d * d_a) - M * (dmin * d_a) in float once per
 * super-block, as the scalar reference does per block.
 *
 * Without VNNI (plain AVX2) the byte products go through vpmaddubsw into
 * int16 pairs, at most 2 * 31 * 128 = 7936 each: four of them summed stay
 * within int16, eight would not (Q4_K's eight do), so vpmaddwd with the
 * scale in both halves of each lane applies the group scale once per four
 * runs instead of once per eight: exact as well.
 */
#include "quant/pack.h"

#if defined(EM_HAVE_X86_GEMM)

#include "quant/arch/x86/gemv_common.h"
#include "quant/blocks.h"

#include <immintrin.h>

#define AI __attribute__((always_inline))
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define TVNNI __attribute__((target("avx2,fma,f16c,avxvnni")))

#define K5_ROWS EM_PACK_ROWS_K
#define K5_SC 64    /* offset of sc[12][16] in a super-block  */
#define K5_QS 256   /* offset of qs[4][8][16][4]              */
#define K5_QH EM_Q5KX16_QH /* offset of qh[8][16][4]         */
#define Q8K_QS 4    /* offset of qs in a Q8_K block           */
#define Q8K_BS 260  /* offset of bsums                        */
_Static_assert(offsetof(em_block_q8_k, qs) == Q8K_QS && offsetof(em_block_q8_k, bsums) == Q8K_BS, "Q8_K");
_Static_assert(EM_PACK_Q5K_SB == K5_QH + 8 * K5_ROWS * 4, "Q5_K x16 super-block");

/* Int32 entries of the per-call table of the activations' group sums
 * (min_pairs), on the stack: 64 KiB, as for Q4_K. */
#define K5_TABLE 16384

/* Bytes of activation rows per panel (panel_rows): as K16_PANEL_BYTES in
 * gemm_packed_k_avx2.c. */
#ifndef K5_PANEL_BYTES
#define K5_PANEL_BYTES (256 * 1024)
#endif

/* For n activation rows (stride as) and each of their nb blocks, four
 * int32 at tbl[(r * nb + b) * 4 + p]: int16 pair (B_2p, B_2p+1) with
 * B_g = bsums[2g] + bsums[2g+1], the activation side of vpdpwssd with
 * the weights' min pairs. */
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

/* Activation rows per panel: as many as fill K5_PANEL_BYTES and whose
 * table entries fit K5_TABLE, in whole tiles of rn_max. */
static int64_t panel_rows(int64_t nb, size_t as, int64_t rn_max) {
    int64_t fit = (int64_t)(K5_PANEL_BYTES / as);
    if (fit > K5_TABLE / (nb * 4)) fit = K5_TABLE / (nb * 4);
    fit = fit / rn_max * rn_max;
    return fit < rn_max ? rn_max : fit;
}

static inline int32_t ld32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* The scales and mins of the packed bytes K[j], 16 or 8 rows at once: the
 * same unpacking as K16_UNPACK in gemm_packed_k_avx2.c (see there). */
#define K5_UNPACK(VEC, K, sc, mp, AND, SRLI, SLLI, OR, SEL, SET1)                                            \
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

/* ============================================================ AVX-512 */

#define SEL512(a, b, c) _mm512_ternarylogic_epi32(a, b, c, 0xE4)

/* Super-block sb's 16 rows: sc[8] scales and mp[4] min pairs. */
static inline AI T512 void unpack_512(const uint8_t *sb, __m512i *sc, __m512i *mp) {
    __m512i K[12];
    for (int j = 0; j < 12; j++) K[j] = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(sb + K5_SC + 16 * j)));
    K5_UNPACK(__m512i, K, sc, mp, _mm512_and_si512, _mm512_srli_epi32, _mm512_slli_epi32, _mm512_or_si512, SEL512,
              _mm512_set1_epi32);
}

/* One group (16 rows of nb super-blocks at grp) times RN activation rows
 * at ar (stride as) with their min pairs mpt[(j * nb + b) * 4 ..]:
 * out[j * ldo + i] for row i.  pf/pfl/pfs: the region to prefetch, a part
 * per super-block (pf 0: none). */
static inline AI T512 void tile_512(const int RN, int64_t nb, const uint8_t *grp, const uint8_t *ar, size_t as,
                                    const int32_t *mpt, float *out, int64_t ldo, uintptr_t pf, size_t pfl, size_t pfs) {
    const __m512i m4 = _mm512_set1_epi8(15), b4 = _mm512_set1_epi8(16);
    __m512 acc[8];
#pragma GCC unroll 8
    for (int j = 0; j < RN; j++) acc[j] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        if (pf) em_gemv_prefetch_part(pf, pfl, b, pfs);
        const uint8_t *sb = grp + (size_t)b * EM_PACK_Q5K_SB;
        __m512i sc[8], mp[4], T[8];
        unpack_512(sb, sc, mp);
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) T[j] = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int s = 0; s < 4; s++)
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                const __m512i bit = _mm512_set1_epi8((char)(1 << (2 * s + h)));
                __m512i W[8];
#pragma GCC unroll 8
                for (int q = 0; q < 8; q++) {
                    const __m512i x = _mm512_loadu_si512(sb + K5_QS + (s * 8 + q) * 64);
                    const __m512i lo = _mm512_and_si512(h ? _mm512_srli_epi16(x, 4) : x, m4);
                    const __mmask64 hi = _mm512_test_epi8_mask(_mm512_loadu_si512(sb + K5_QH + q * 64), bit);
                    W[q] = _mm512_mask_add_epi8(lo, hi, lo, b4);
                }
#pragma GCC unroll 8
                for (int j = 0; j < RN; j++) {
                    const uint8_t *y = ar + (size_t)j * as + (size_t)b * sizeof(em_block_q8_k) + Q8K_QS + 64 * s + 32 * h;
                    __m512i P = _mm512_setzero_si512();
#pragma GCC unroll 8
                    for (int q = 0; q < 8; q++) P = _mm512_dpbusd_epi32(P, W[q], _mm512_set1_epi32(ld32(y + 4 * q)));
                    T[j] = _mm512_add_epi32(T[j], _mm512_mullo_epi32(P, sc[2 * s + h]));
                }
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

/* ===================================================== 256-bit kernels */

/* The fifth bits of group g (bit g of each byte of qh) moved to bit 4 and
 * masked: a shift by a count in a register, which is a constant once the
 * loops are unrolled (and still compiles when they are not). */
static inline AI __m256i fifth_256(__m256i qh, int g, __m256i b4) {
    const __m256i t = g <= 4 ? _mm256_sll_epi16(qh, _mm_cvtsi32_si128(4 - g)) : _mm256_srl_epi16(qh, _mm_cvtsi32_si128(g - 4));
    return _mm256_and_si256(t, b4);
}

/* The levels of one 32-byte half of the runs qs[s][q] (x) and qh[q] (qh)
 * for group 2s + h. */
static inline AI __m256i levels_256(__m256i x, __m256i qh, int s, int h, __m256i m4, __m256i b4) {
    return _mm256_or_si256(_mm256_and_si256(h ? _mm256_srli_epi16(x, 4) : x, m4), fifth_256(qh, 2 * s + h, b4));
}

/* A tile is one half of a group (rows 8hf .. 8hf+7, the 32-byte halves of
 * each 64-byte run).  DP_P adds the byte products of four quants per row
 * to P: vpdpbusd with AVX-VNNI (int32 P), vpmaddubsw into int16 pairs with
 * plain AVX2; APPLY_P adds P times the group scale to T (vpmulld, or
 * vpmaddwd with the scale in both int16 halves of each lane, which SC16
 * makes); PRUN runs of products go into P between two APPLYs (8 with
 * VNNI, 4 with int16 pairs: see the top).  No ternary logic below
 * AVX-512: the bit-select is and/andnot. */
#define SEL256(a, b, m) _mm256_or_si256(_mm256_and_si256(a, m), _mm256_andnot_si256(m, b))
#define VNNI_P(P, w, y) P = _mm256_dpbusd_avx_epi32(P, w, y)
#define VNNI_APPLY(T, P, sc) T = _mm256_add_epi32(T, _mm256_mullo_epi32(P, sc))
#define VNNI_SC16(sc) (sc)
#define VNNI_MIN(M, mp, y) M = _mm256_dpwssd_avx_epi32(M, mp, y)
#define AVX2_P(P, w, y) P = _mm256_add_epi16(P, _mm256_maddubs_epi16(w, y))
#define AVX2_APPLY(T, P, sc) T = _mm256_add_epi32(T, _mm256_madd_epi16(P, sc))
#define AVX2_SC16(sc) _mm256_or_si256(sc, _mm256_slli_epi32(sc, 16))
#define AVX2_MIN(M, mp, y) M = _mm256_add_epi32(M, _mm256_madd_epi16(mp, y))

/* The group sums of RN activation rows (their quants of group 2s + h at
 * y0 + j * as) with the levels WQ(q) of the runs q = 0..7, times the scale
 * sc, added to T[j].  Each run's levels are made (or loaded) right before
 * their products, so that only one is live: eight of them, the sums and
 * the scales would not fit the 16 ymm registers. */
#define K5_GROUP256(RN, WQ, y0, as, sc, T, DPP, APPLY, PRUN)                                                   \
    _Pragma("GCC unroll 2") for (int q0 = 0; q0 < 8; q0 += PRUN) {                                             \
        __m256i P[4];                                                                                          \
        _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++) P[j] = _mm256_setzero_si256();                     \
        _Pragma("GCC unroll 8") for (int q = q0; q < q0 + PRUN; q++) {                                         \
            const __m256i w = WQ(q);                                                                           \
            _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++)                                               \
                DPP(P[j], w, _mm256_set1_epi32(ld32((y0) + (size_t)j * (as) + 4 * q)));                        \
        }                                                                                                      \
        _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++) APPLY(T[j], P[j], sc);                             \
    }

/* The levels of run q of group 2s + h for one half hf: rebuilt from the
 * super-block sb (tiles), or loaded from the buffer u (buffered tiles). */
#define TILE_WQ(q)                                                                                             \
    levels_256(_mm256_loadu_si256((const __m256i *)(const void *)(sb + K5_QS + (s * 8 + (q)) * 64 + 32 * hf)), \
               _mm256_loadu_si256((const __m256i *)(const void *)(sb + K5_QH + (q) * 64 + 32 * hf)), s, h, m4, b4)
#define BUF_WQ(q) _mm256_loadu_si256((const __m256i *)(const void *)(u->w[s][h][q] + 32 * hf))

#define K5_TILE256(fname, TGT, DPP, APPLY, SC16, DMIN, PRUN)                                                   \
    static inline AI TGT void fname(const int RN, int hf, int64_t nb, const uint8_t *grp, const uint8_t *ar,   \
                                    size_t as, const int32_t *mpt, float *out, int64_t ldo, uintptr_t pf,      \
                                    size_t pfl, size_t pfs) {                                                  \
        const __m256i m4 = _mm256_set1_epi8(15), b4 = _mm256_set1_epi8(16);                                    \
        __m256 acc[4];                                                                                         \
        _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++) acc[j] = _mm256_setzero_ps();                      \
        for (int64_t b = 0; b < nb; b++) {                                                                     \
            if (pf) em_gemv_prefetch_part(pf, pfl, b, pfs);                                                    \
            const uint8_t *sb = grp + (size_t)b * EM_PACK_Q5K_SB;                                              \
            __m256i K[12], sc[8], mp[4], T[4];                                                                 \
            _Pragma("GCC unroll 12") for (int j = 0; j < 12; j++) K[j] = _mm256_cvtepu8_epi32(                 \
                _mm_loadl_epi64((const __m128i *)(const void *)(sb + K5_SC + 16 * j + 8 * hf)));               \
            K5_UNPACK(__m256i, K, sc, mp, _mm256_and_si256, _mm256_srli_epi32, _mm256_slli_epi32,              \
                      _mm256_or_si256, SEL256, _mm256_set1_epi32);                                             \
            _Pragma("GCC unroll 8") for (int g = 0; g < 8; g++) sc[g] = SC16(sc[g]);                           \
            _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++) T[j] = _mm256_setzero_si256();                 \
            _Pragma("GCC unroll 4") for (int s = 0; s < 4; s++) _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) { \
                K5_GROUP256(RN, TILE_WQ, ar + (size_t)b * sizeof(em_block_q8_k) + Q8K_QS + 64 * s + 32 * h, as,      \
                            sc[2 * s + h], T, DPP, APPLY, PRUN)                                                \
            }                                                                                                  \
            const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(sb + 16 * hf)));  \
            const __m256 dm = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(sb + 32 + 16 * hf))); \
            _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++) {                                             \
                const int32_t *bp = mpt + ((int64_t)j * nb + b) * 4;                                           \
                __m256i M = _mm256_setzero_si256();                                                            \
                _Pragma("GCC unroll 4") for (int p = 0; p < 4; p++) DMIN(M, mp[p], _mm256_set1_epi32(bp[p]));   \
                const __m256 da = _mm256_set1_ps(em_gemv_ldf32(ar + (size_t)j * as + (size_t)b * sizeof(em_block_q8_k))); \
                acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(T[j]), _mm256_mul_ps(d, da), acc[j]);               \
                acc[j] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(M), _mm256_mul_ps(dm, da), acc[j]);                \
            }                                                                                                  \
        }                                                                                                      \
        _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++) _mm256_storeu_ps(out + j * ldo, acc[j]);          \
    }

K5_TILE256(tile_vnni, TVNNI, VNNI_P, VNNI_APPLY, VNNI_SC16, VNNI_MIN, 8)
K5_TILE256(tile_avx2, , AVX2_P, AVX2_APPLY, AVX2_SC16, AVX2_MIN, 4)

/* ============================================== unpacked super-blocks */

/* As in gemm_packed_k_avx2.c: with more activation rows than one tile
 * takes, each super-block of the group is rebuilt once into this buffer
 * (in L1), fifth bits included, and the tiles of all the panel's
 * activation rows work from it, keeping their float sums in the output
 * rows between super-blocks (the same operations in the same order). */
typedef struct k5_buf {
    uint8_t w[4][2][8][64]; /* levels 0..31 of qs[s][q]: [s][h][q][row * 4 + i], h 0: low nibbles, 1: high */
    int32_t sc[8][16];      /* group scale of each row (AVX2: in both int16 halves) */
    int32_t mp[4][16];      /* int16 pairs of mins (groups 2p, 2p + 1) of each row */
    float d[16], dm[16];    /* d and dmin of each row */
} k5_buf;

/* Both halves unpacked (SC16 gives the scales' form), and a tile of one
 * half hf: RN activation rows (ar: their block b, stride as; bp: their
 * min pairs of block b, stride bps) times the unpacked super-block u,
 * adding to the float sums at out (zero first when first). */
#define K5_BUF256(uname, tname, TGT, DPP, APPLY, SC16, DMIN, PRUN)                                             \
    static inline AI TGT void uname(const uint8_t *sb, k5_buf *u) {                                            \
        const __m256i m4 = _mm256_set1_epi8(15), b4 = _mm256_set1_epi8(16);                                    \
        for (int sq = 0; sq < 32; sq++)                                                                        \
            for (int hf = 0; hf < 2; hf++) {                                                                   \
                const int s = sq / 8, q = sq % 8;                                                              \
                const __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)(sb + K5_QS + sq * 64 + 32 * hf)); \
                const __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)(sb + K5_QH + q * 64 + 32 * hf)); \
                _mm256_storeu_si256((__m256i *)(void *)(u->w[s][0][q] + 32 * hf), levels_256(x, qh, s, 0, m4, b4)); \
                _mm256_storeu_si256((__m256i *)(void *)(u->w[s][1][q] + 32 * hf), levels_256(x, qh, s, 1, m4, b4)); \
            }                                                                                                  \
        for (int hf = 0; hf < 2; hf++) {                                                                       \
            __m256i K[12], sc[8], mp[4];                                                                       \
            for (int j = 0; j < 12; j++)                                                                       \
                K[j] = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(sb + K5_SC + 16 * j + 8 * hf))); \
            K5_UNPACK(__m256i, K, sc, mp, _mm256_and_si256, _mm256_srli_epi32, _mm256_slli_epi32,              \
                      _mm256_or_si256, SEL256, _mm256_set1_epi32);                                             \
            for (int g = 0; g < 8; g++) _mm256_storeu_si256((__m256i *)(void *)(u->sc[g] + 8 * hf), SC16(sc[g])); \
            for (int p = 0; p < 4; p++) _mm256_storeu_si256((__m256i *)(void *)(u->mp[p] + 8 * hf), mp[p]);    \
            _mm256_storeu_ps(u->d + 8 * hf, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(sb + 16 * hf)))); \
            _mm256_storeu_ps(u->dm + 8 * hf,                                                                   \
                             _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(sb + 32 + 16 * hf)))); \
        }                                                                                                      \
    }                                                                                                          \
    static inline AI TGT void tname(const int RN, int hf, const k5_buf *u, const uint8_t *ar, size_t as,       \
                                    const int32_t *bp, int64_t bps, float *out, int64_t ldo, bool first) {     \
        __m256 acc[4];                                                                                         \
        __m256i T[4];                                                                                          \
        _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++) {                                                 \
            acc[j] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(out + j * ldo);                             \
            T[j] = _mm256_setzero_si256();                                                                     \
        }                                                                                                      \
        _Pragma("GCC unroll 4") for (int s = 0; s < 4; s++) _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) { \
            const __m256i sc = _mm256_loadu_si256((const __m256i *)(const void *)(u->sc[2 * s + h] + 8 * hf)); \
            K5_GROUP256(RN, BUF_WQ, ar + Q8K_QS + 64 * s + 32 * h, as, sc, T, DPP, APPLY, PRUN)                     \
        }                                                                                                      \
        const __m256 d = _mm256_loadu_ps(u->d + 8 * hf), dm = _mm256_loadu_ps(u->dm + 8 * hf);                 \
        _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++) {                                                 \
            const int32_t *bj = bp + j * bps;                                                                  \
            __m256i M = _mm256_setzero_si256();                                                                \
            _Pragma("GCC unroll 4") for (int p = 0; p < 4; p++)                                                \
                DMIN(M, _mm256_loadu_si256((const __m256i *)(const void *)(u->mp[p] + 8 * hf)), _mm256_set1_epi32(bj[p])); \
            const __m256 da = _mm256_set1_ps(em_gemv_ldf32(ar + (size_t)j * as));                              \
            acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(T[j]), _mm256_mul_ps(d, da), acc[j]);                   \
            acc[j] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(M), _mm256_mul_ps(dm, da), acc[j]);                    \
            _mm256_storeu_ps(out + j * ldo, acc[j]);                                                           \
        }                                                                                                      \
    }

K5_BUF256(unpack_buf_vnni, tileb_vnni, TVNNI, VNNI_P, VNNI_APPLY, VNNI_SC16, VNNI_MIN, 8)
K5_BUF256(unpack_buf_avx2, tileb_avx2, , AVX2_P, AVX2_APPLY, AVX2_SC16, AVX2_MIN, 4)

/* The buffered product of one group for the panel's activation rows
 * p0 .. p1-1, if more than one tile: returns whether it was done. */
#define K5_BUF_STEP(fname, TGT, UNPACK, TILEB, RNMAX, HALVES)                                                  \
    static inline AI TGT bool fname(int64_t nb, const uint8_t *grp, uintptr_t pfa, size_t pfl, const uint8_t *a, \
                                    size_t as, int64_t p0, int64_t p1, const int32_t *tbl, float *out,        \
                                    int64_t ldo) {                                                             \
        if (p1 - p0 <= RNMAX) return false;                                                                    \
        k5_buf u;                                                                                              \
        const size_t pfs = pfa ? (pfl + (size_t)nb - 1) / (size_t)nb : 0;                                     \
        for (int64_t b = 0; b < nb; b++) {                                                                     \
            if (pfa) em_gemv_prefetch_part(pfa, pfl, b, pfs);                                                  \
            UNPACK(grp + (size_t)b * EM_PACK_Q5K_SB, &u);                                                      \
            for (int64_t r0 = p0; r0 < p1; r0 += RNMAX) {                                                      \
                const int rn = (int)EM_MIN((int64_t)RNMAX, p1 - r0);                                           \
                const uint8_t *ar = a + (size_t)r0 * as + (size_t)b * sizeof(em_block_q8_k);                   \
                const int32_t *bp = tbl + ((r0 - p0) * nb + b) * 4;                                            \
                for (int hf = 0; hf < HALVES; hf++)                                                            \
                    EM_RN_SWITCH(TILEB, RNMAX, rn, hf, &u, ar, as, bp, nb * 4, out + r0 * ldo + hf * (K5_ROWS / HALVES), \
                                 ldo, b == 0);                                                                 \
            }                                                                                                  \
        }                                                                                                      \
        return true;                                                                                           \
    }

K5_BUF_STEP(buf_step_vnni, TVNNI, unpack_buf_vnni, tileb_vnni, 2, 2)
K5_BUF_STEP(buf_step_avx2, , unpack_buf_avx2, tileb_avx2, 2, 2)
#define NO_BUF_STEP(...) false

/* ============================================================ drivers */

/* As K16_DRIVER in gemm_packed_k_avx2.c: for each panel of activation
 * rows (their min pairs found first) and each group of the call, one tile
 * per group half over all super-blocks (prefetching the group after next:
 * with one activation row, the matrix-vector product's stream), or, past
 * one tile of rows and with a BUF_STEP, each super-block rebuilt once and
 * then the tiles of all the panel's rows over it. */
#define K5_DRIVER(name, TGT, TILE, BUF_STEP, RNMAX, HALVES)                                               \
    TGT void name(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, size_t as, int64_t na,       \
                  float *out, int64_t ldo) {                                                                   \
        const int64_t nb = k / EM_QK_K;                                                                        \
        int32_t tbl[K5_TABLE];                                                                                 \
        const int64_t panel = panel_rows(nb, as, RNMAX);                                                       \
        for (int64_t p0 = 0; p0 < na; p0 += panel) {                                                           \
            const int64_t p1 = EM_MIN(na, p0 + panel);                                                         \
            min_pairs(nb, (const uint8_t *)a + (size_t)p0 * as, as, p1 - p0, tbl);                             \
            for (int64_t j0 = 0; j0 < nw; j0 += K5_ROWS) {                                                     \
                const uint8_t *grp = (const uint8_t *)w + (size_t)j0 * ws;                                     \
                uintptr_t pfa;                                                                                 \
                size_t pfl;                                                                                    \
                em_gemv_prefetch_plan(w, ws, j0, K5_ROWS, &pfa, &pfl);                                         \
                if (BUF_STEP(nb, grp, pfa, pfl, (const uint8_t *)a, as, p0, p1, tbl, out + j0, ldo)) continue; \
                const size_t pfs = pfa ? (pfl + (size_t)(nb * HALVES) - 1) / (size_t)(nb * HALVES) : 0;       \
                for (int64_t r0 = p0; r0 < p1; r0 += RNMAX) {                                                  \
                    const int rn = (int)EM_MIN((int64_t)RNMAX, p1 - r0);                                       \
                    const uint8_t *ar = (const uint8_t *)a + (size_t)r0 * as;                                  \
                    const int32_t *mt = tbl + (r0 - p0) * nb * 4;                                              \
                    for (int hf = 0; hf < HALVES; hf++) {                                                      \
                        const uintptr_t pf = pfa && r0 == p0 ? pfa + (size_t)hf * pfl / HALVES : 0;            \
                        float *o = out + r0 * ldo + j0 + hf * (K5_ROWS / HALVES);                              \
                        EM_RN_SWITCH(TILE, RNMAX, rn, hf, nb, grp, ar, as, mt, o, ldo, pf, pfl / HALVES, pfs); \
                    }                                                                                          \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
    }

#define TILE512(RN, hf, ...) tile_512(RN, __VA_ARGS__)
K5_DRIVER(em_gemm_q5_kx16_avx512, T512, TILE512, NO_BUF_STEP, 8, 1)
K5_DRIVER(em_gemm_q5_kx16_avxvnni, TVNNI, tile_vnni, buf_step_vnni, 2, 2)
K5_DRIVER(em_gemm_q5_kx16_avx2, , tile_avx2, buf_step_avx2, 2, 2)

#endif /* EM_HAVE_X86_GEMM */
