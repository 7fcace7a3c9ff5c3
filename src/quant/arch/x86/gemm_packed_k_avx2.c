/*
 * gemm_packed_k_avx2.c - kernels of the Q4_K x16 packed layout (quant/pack.h)
 * times Q8_K activation rows: AVX-512 with VNNI, AVX-VNNI (256-bit) and
 * AVX2.  One kernel serves prompt processing (many activation rows) and
 * generation (one row: the matrix-vector product, which streams the
 * weights and prefetches them as gemv_common.h describes).
 *
 * The 16 rows of a group each own one int32 lane of a 512-bit register
 * (8 rows per 256-bit register: a group is then two halves).  For each
 * super-block:
 *   - the group's packed 6-bit scales and mins are unpacked, all 16 rows
 *     at once, into one int32 vector of scales per group g of 32 elements
 *     (sc[g]) and one vector of pairs of int16 mins per two groups (mp[p]:
 *     groups 2p and 2p + 1);
 *   - a 64-byte load of qs[s][q] holds four bytes of each row; masked, the
 *     low nibbles are four levels of group 2s, shifted, the high nibbles
 *     four of group 2s + 1.  vpdpbusd with the activation's matching four
 *     quants broadcast to every lane adds each row's four products to its
 *     lane, and eight such steps make the row's group sum P (at most
 *     32 * 15 * 128 in magnitude);
 *   - T += P * sc[g] (int32: at most 8 * 63 * 61440 in magnitude, exact);
 *   - the mins' integer term is M = sum_g mn_g * (bsums_2g + bsums_2g+1),
 *     four vpdpwssd of mp[p] with the activation's two group sums of p,
 *     which are found once per call (min_pairs);
 *   - acc += T * (d * d_a) - M * (dmin * d_a) in float, as the scalar
 *     reference does per block, so outputs equal it up to the order of
 *     the float additions.
 * Weight-side work (loading and unmasking the levels, unpacking scales)
 * is shared by the RN activation rows of a tile.
 *
 * Without VNNI (plain AVX2) the byte products go through vpmaddubsw into
 * int16 pairs (at most 2 * 15 * 128 each, and eight of them summed stay
 * within int16), and vpmaddwd with the scale in both halves of each lane
 * applies the group scale and finishes the sum in int32: exact as well.
 */
#include "quant/pack.h"

#if defined(EM_HAVE_X86_GEMM)

#include "quant/arch/x86/gemm_packed_k_common.h"

_Static_assert(EM_PACK_Q4K_SB == KP_QS + 4 * 8 * KP_ROWS * 4, "Q4_K x16 super-block");

/* The AVX-512 tile is tile_512 in gemm_packed_k_common.h. */

/* ===================================================== 256-bit kernels */

/* The same in 256-bit registers, for AVX2 machines: a tile is one half of
 * a group (rows 8hf .. 8hf+7, the 32-byte halves of each 64-byte run),
 * with the operations DPP, APPLY, SC16 and DMIN of one set
 * (gemm_packed_k_common.h). */

#define K16_TILE256(fname, TGT, DPP, APPLY, SC16, DMIN)                                                        \
    static inline AI TGT void fname(const int RN, int hf, int64_t nb, const uint8_t *grp, const uint8_t *ar,   \
                                    size_t as, const int32_t *mpt, float *out, int64_t ldo, uintptr_t pf,      \
                                    size_t pfl, size_t pfs) {                                                  \
        const __m256i m4 = _mm256_set1_epi8(15);                                                               \
        __m256 acc[4];                                                                                         \
        _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++) acc[j] = _mm256_setzero_ps();                      \
        for (int64_t b = 0; b < nb; b++) {                                                                     \
            KP_TILE_SB_START256(RN, EM_PACK_Q4K_SB, SC16)                                                          \
            _Pragma("GCC unroll 4") for (int s = 0; s < 4; s++) _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) { \
                __m256i W[8];                                                                                  \
                _Pragma("GCC unroll 8") for (int q = 0; q < 8; q++) {                                          \
                    const __m256i x = _mm256_loadu_si256(                                                      \
                        (const __m256i *)(const void *)(sb + KP_QS + (s * 8 + q) * 64 + 32 * hf));           \
                    W[q] = _mm256_and_si256(h ? _mm256_srli_epi16(x, 4) : x, m4);                              \
                }                                                                                              \
                _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++) {                                         \
                    const uint8_t *y = ar + (size_t)j * as + (size_t)b * sizeof(em_block_q8_k) + Q8K_QS + 64 * s + 32 * h; \
                    __m256i P = _mm256_setzero_si256();                                                        \
                    _Pragma("GCC unroll 8") for (int q = 0; q < 8; q++) DPP(P, W[q], _mm256_set1_epi32(ld32(y + 4 * q))); \
                    APPLY(T[j], P, sc[2 * s + h]);                                                             \
                }                                                                                              \
            }                                                                                                  \
            KP_TILE_SB_END256(RN, sb, hf, b, nb, mpt, mp, ar, as, T, acc, DMIN);                               \
        }                                                                                                      \
        _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++) _mm256_storeu_ps(out + j * ldo, acc[j]);          \
    }

K16_TILE256(tile_vnni, TVNNI, VNNI_P, VNNI_APPLY, VNNI_SC16, VNNI_MIN)
K16_TILE256(tile_avx2, , AVX2_P, AVX2_APPLY, AVX2_SC16, AVX2_MIN)

/* ============================================== unpacked super-blocks */

/* The levels of group 2s + h in the 32-byte half x of a run: its nibbles. */
#define K16_LEVELS(x, sb, sq, hf, h) _mm256_and_si256((h) ? _mm256_srli_epi16(x, 4) : (x), _mm256_set1_epi8(15))

/* Filling a kp_buf (gemm_packed_k_common.h) from a super-block: both
 * halves unpacked (SC16 gives the scales' form), and a tile of one
 * half hf: RN activation rows (ar: their block b, stride as; bp: their
 * min pairs of block b, stride bps) times the unpacked super-block u,
 * adding to the float sums at out (zero first when first). */

#define K16_BUF256(uname, tname, TGT, DPP, APPLY, SC16, DMIN)                                                  \
    static inline AI TGT void uname(const uint8_t *sb, kp_buf *u) { KP_BUF_FILL256(sb, u, SC16, K16_LEVELS); } \
    static inline AI TGT void tname(const int RN, int hf, const kp_buf *u, const uint8_t *ar, size_t as,      \
                                    const int32_t *bp, int64_t bps, float *out, int64_t ldo, bool first) {     \
        __m256 acc[4];                                                                                         \
        __m256i T[4];                                                                                          \
        KP_BUF_START256(RN, acc, T, out, ldo, first);                                                          \
        _Pragma("GCC unroll 4") for (int s = 0; s < 4; s++) _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) { \
            __m256i W[8];                                                                                      \
            _Pragma("GCC unroll 8") for (int q = 0; q < 8; q++)                                                \
                W[q] = _mm256_loadu_si256((const __m256i *)(const void *)(u->w[s][h][q] + 32 * hf));           \
            const __m256i sc = _mm256_loadu_si256((const __m256i *)(const void *)(u->sc[2 * s + h] + 8 * hf)); \
            _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++) {                                             \
                const uint8_t *y = ar + (size_t)j * as + Q8K_QS + 64 * s + 32 * h;                             \
                __m256i P = _mm256_setzero_si256();                                                            \
                _Pragma("GCC unroll 8") for (int q = 0; q < 8; q++) DPP(P, W[q], _mm256_set1_epi32(ld32(y + 4 * q))); \
                APPLY(T[j], P, sc);                                                                            \
            }                                                                                                  \
        }                                                                                                      \
        KP_BUF_FINISH256(RN, hf, u, ar, as, bp, bps, acc, T, out, ldo, DMIN);                                  \
    }

K16_BUF256(unpack_buf_vnni, tileb_vnni, TVNNI, VNNI_P, VNNI_APPLY, VNNI_SC16, VNNI_MIN)
static inline AI void unpack_buf_avx2(const uint8_t *sb, kp_buf *u) { KP_BUF_FILL256(sb, u, AVX2_SC16, K16_LEVELS); }
KP_BUF_TILE16_256(tileb_avx2, , AVX2_PB, AVX2_APPLY, AVX2_MIN, 8)

KP_BUF_STEP(buf_step_vnni, TVNNI, unpack_buf_vnni, tileb_vnni, 2, 2, EM_PACK_Q4K_SB)
/* Plain AVX2: the buffered tile of both halves (KP_BUF_TILE16_256) and
 * three activation rows. */
KP_BUF_STEP(buf_step_avx2, , unpack_buf_avx2, tileb_avx2, 3, 1, EM_PACK_Q4K_SB)

/* ================================================ one row, plain AVX2 */

/* KP_GEMV256 (gemm_packed_k_common.h): the matrix-vector product with
 * all 16 rows' scales unpacked as bytes, eight runs of products per group
 * scale, the pairs of groups in a loop. */
KP_GEMV256(gemv_avx2, EM_PACK_Q4K_SB, false, 8, "GCC unroll 1")

/* ============================================================ drivers */

/* KP_DRIVER (gemm_packed_k_common.h) per kernel set. */
KP_DRIVER(em_gemm_q4_kx16_avx512, T512, TILE512_Q4K, NO_BUF_STEP, 8, 1)
KP_DRIVER(em_gemm_q4_kx16_avxvnni, TVNNI, tile_vnni, buf_step_vnni, 2, 2)
KP_DRIVER(gemm_rows_avx2, static, tile_avx2, buf_step_avx2, 2, 2)

/* Plain AVX2: one activation row goes to gemv_avx2, more to the tiles. */
/* Q4_K prefetches EM_GEMV_PF_BYTES ahead at every group size: its kernel,
 * the lightest per byte, streamed faster so than one group ahead, even
 * for the 18 KiB groups of k = 2048 (in-process A/B, 2 threads, 256 MiB,
 * session 11: 1.025-1.095x at k = 2048, 1.21x at 3072, 1.44x at 4096),
 * where Q5_K and Q6_K were slower (gemv_common.h). */
KP_GEMV_DRIVER(em_gemm_q4_kx16_avx2, gemm_rows_avx2, gemv_avx2, EM_PACK_Q4K_SB, 0)

#endif /* EM_HAVE_X86_GEMM */
