/*
 * gemm_packed_q5k_avx2.c - kernels of the Q5_K x16 packed layout
 * (quant/pack.h) times Q8_K activation rows: AVX-512 with VNNI, AVX-VNNI
 * (256-bit) and AVX2.  They are the Q4_K x16 kernels
 * (gemm_packed_k_avx2.c, whose comment gives the whole scheme) with the
 * five-bit levels: one kernel serves prompt processing and generation (one
 * activation row, streamed with the prefetch of gemv_common.h); the 16
 * rows of a group each own an int32 lane (8 per 256-bit register); the
 * scales and mins are unpacked 16 rows at once; the mins come off through
 * the activation's group sums (vpdpwssd of min pairs with bsums pairs).
 *
 * The levels: a 64-byte load of a[s][q] holds four bytes of each row,
 * whose low five bits are four levels of group 2s, and with the run e[q]
 * four of group 2s + 1: ((a >> 5) ^ (e shifted by 3 - 2s)) & 31 (pack.h
 * gives the bits).  AVX-512 takes the xor and the mask as one ternary
 * logic op; the 256-bit kernels take them as they come (levels_256,
 * gemm_packed_k_common.h), 5 operations per 64 levels against 9 for a
 * nibble and a fifth bit.  The group sum P of level times quant is at
 * most 32 * 31 * 128 in magnitude, T = sum_g P_g * sc_g at most 8 * 63 * 126976 (int32, exact),
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

#include "quant/arch/x86/gemm_packed_k_common.h"

#define K5_A EM_Q5KX16_A /* offset of a[4][8][16][4] */
#define K5_E EM_Q5KX16_E /* offset of e[8][16][4]    */
_Static_assert(K5_A == KP_QS && EM_PACK_Q5K_SB == K5_E + 8 * KP_ROWS * 4, "Q5_K x16 super-block");

/* The AVX-512 tile is tile_512 in gemm_packed_k_common.h. */

/* ===================================================== 256-bit kernels */

/* levels_256 (the levels of a run a[s][q] with e[q]) is in
 * gemm_packed_k_common.h, shared with the one-row kernel. */

/* A tile is one half of a group (rows 8hf .. 8hf+7, the 32-byte halves of
 * each 64-byte run).  DP_P adds the byte products of four quants per row
 * to P: vpdpbusd with AVX-VNNI (int32 P), vpmaddubsw into int16 pairs with
 * plain AVX2; APPLY_P adds P times the group scale to T (vpmulld, or
 * vpmaddwd with the scale in both int16 halves of each lane, which SC16
 * makes); PRUN runs of products go into P between two APPLYs (8 with
 * VNNI, 4 with int16 pairs: see the top).  No ternary logic below
 * AVX-512: the bit-select is and/andnot. */

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
    levels_256(_mm256_loadu_si256((const __m256i *)(const void *)(sb + K5_A + (s * 8 + (q)) * 64 + 32 * hf)),  \
               _mm256_loadu_si256((const __m256i *)(const void *)(sb + K5_E + (q) * 64 + 32 * hf)), s, h)
#define BUF_WQ(q) _mm256_loadu_si256((const __m256i *)(const void *)(u->w[s][h][q] + 32 * hf))

#define K5_TILE256(fname, TGT, DPP, APPLY, SC16, DMIN, PRUN)                                                   \
    static inline AI TGT void fname(const int RN, int hf, int64_t nb, const uint8_t *grp, const uint8_t *ar,   \
                                    size_t as, const int32_t *mpt, float *out, int64_t ldo, uintptr_t pf,      \
                                    size_t pfl, size_t pfs) {                                                  \
        __m256 acc[4];                                                                                         \
        _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++) acc[j] = _mm256_setzero_ps();                      \
        for (int64_t b = 0; b < nb; b++) {                                                                     \
            KP_TILE_SB_START256(RN, EM_PACK_Q5K_SB, SC16)                                                          \
            _Pragma("GCC unroll 4") for (int s = 0; s < 4; s++) _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) { \
                K5_GROUP256(RN, TILE_WQ, ar + (size_t)b * sizeof(em_block_q8_k) + Q8K_QS + 64 * s + 32 * h, as,      \
                            sc[2 * s + h], T, DPP, APPLY, PRUN)                                                \
            }                                                                                                  \
            KP_TILE_SB_END256(RN, sb, hf, b, nb, mpt, mp, ar, as, T, acc, DMIN);                               \
        }                                                                                                      \
        _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++) _mm256_storeu_ps(out + j * ldo, acc[j]);          \
    }

K5_TILE256(tile_vnni, TVNNI, VNNI_P, VNNI_APPLY, VNNI_SC16, VNNI_MIN, 8)
K5_TILE256(tile_avx2, , AVX2_P, AVX2_APPLY, AVX2_SC16, AVX2_MIN, 4)

/* ============================================== unpacked super-blocks */

/* As for Q4_K: with more activation rows than one tile takes, each
 * super-block of the group is rebuilt once into a kp_buf
 * (gemm_packed_k_common.h), as whole levels, and the tiles of all the
 * panel's activation rows work from it, keeping their float sums in the output
 * rows between super-blocks (the same operations in the same order). */

/* The levels of group 2s + h (sq = 8s + q) in the 32-byte half x of a
 * run a[s][q], with the matching half of e[q]. */
#define K5_LEVELS(x, sb, sq, hf, h)                                                                            \
    levels_256(x, _mm256_loadu_si256((const __m256i *)(const void *)((sb) + K5_E + (sq) % 8 * 64 + 32 * (hf))), \
               (sq) / 8, h)

/* Both halves unpacked (SC16 gives the scales' form), and a tile of one
 * half hf: RN activation rows (ar: their block b, stride as; bp: their
 * min pairs of block b, stride bps) times the unpacked super-block u,
 * adding to the float sums at out (zero first when first). */

#define K5_BUF256(uname, tname, TGT, DPP, APPLY, SC16, DMIN, PRUN)                                             \
    static inline AI TGT void uname(const uint8_t *sb, kp_buf *u) { KP_BUF_FILL256(sb, u, SC16, K5_LEVELS); }  \
    static inline AI TGT void tname(const int RN, int hf, const kp_buf *u, const uint8_t *ar, size_t as,       \
                                    const int32_t *bp, int64_t bps, float *out, int64_t ldo, bool first) {     \
        __m256 acc[4];                                                                                         \
        __m256i T[4];                                                                                          \
        KP_BUF_START256(RN, acc, T, out, ldo, first);                                                          \
        _Pragma("GCC unroll 4") for (int s = 0; s < 4; s++) _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) { \
            const __m256i sc = _mm256_loadu_si256((const __m256i *)(const void *)(u->sc[2 * s + h] + 8 * hf)); \
            K5_GROUP256(RN, BUF_WQ, ar + Q8K_QS + 64 * s + 32 * h, as, sc, T, DPP, APPLY, PRUN)                     \
        }                                                                                                      \
        KP_BUF_FINISH256(RN, hf, u, ar, as, bp, bps, acc, T, out, ldo, DMIN);                                  \
    }

K5_BUF256(unpack_buf_vnni, tileb_vnni, TVNNI, VNNI_P, VNNI_APPLY, VNNI_SC16, VNNI_MIN, 8)
static inline AI void unpack_buf_avx2(const uint8_t *sb, kp_buf *u) { KP_BUF_FILL256(sb, u, AVX2_SC16, K5_LEVELS); }
KP_BUF_TILE16_256(tileb_avx2, , AVX2_PB, AVX2_APPLY, AVX2_MIN, 4)

KP_BUF_STEP(buf_step_vnni, TVNNI, unpack_buf_vnni, tileb_vnni, 2, 2, EM_PACK_Q5K_SB)
KP_BUF_STEP(buf_step_avx2, , unpack_buf_avx2, tileb_avx2, 3, 1, EM_PACK_Q5K_SB)

/* ============================================================ drivers */

/* KP_DRIVER (gemm_packed_k_common.h) per kernel set. */
KP_DRIVER(em_gemm_q5_kx16_avx512, T512, TILE512_Q5K, NO_BUF_STEP, 8, 1)
KP_DRIVER(em_gemm_q5_kx16_avxvnni, TVNNI, tile_vnni, buf_step_vnni, 2, 2)
KP_DRIVER(gemm_rows_avx2, static, tile_avx2, buf_step_avx2, 2, 2)

/* ================================================ one row, plain AVX2 */

/* KP_GEMV256 (gemm_packed_k_common.h), as for Q4_K, with the levels of
 * levels_256 and four runs of products per group scale (int16 pairs: see
 * the top); the pairs of groups unrolled, so that each run's e takes one
 * shift by a constant. */
KP_GEMV256(gemv_avx2, EM_PACK_Q5K_SB, true, 4, "GCC unroll 4")

/* Plain AVX2: one activation row goes to gemv_avx2, more to the tiles. */
KP_GEMV_DRIVER(em_gemm_q5_kx16_avx2, gemm_rows_avx2, gemv_avx2, EM_PACK_Q5K_SB, EM_GEMV_PF_NEAR_GROUP)

#endif /* EM_HAVE_X86_GEMM */
