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

#include "quant/arch/x86/gemv_common.h"
#include "quant/blocks.h"

#include <immintrin.h>

#define AI __attribute__((always_inline))
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define TVNNI __attribute__((target("avx2,fma,f16c,avxvnni")))

#define K16_ROWS EM_PACK_ROWS_K
#define K16_SC 64   /* offset of sc[12][16] in a super-block */
#define K16_QS 256  /* offset of qs[4][8][16][4]             */
#define Q8K_QS 4    /* offset of qs in a Q8_K block          */
#define Q8K_BS 260  /* offset of bsums                       */
_Static_assert(offsetof(em_block_q8_k, qs) == Q8K_QS && offsetof(em_block_q8_k, bsums) == Q8K_BS, "Q8_K");
_Static_assert(EM_PACK_Q4K_SB == K16_QS + 4 * 8 * K16_ROWS * 4, "Q4_K x16 super-block");

/* Int32 entries of the per-call table of the activations' group sums
 * (min_pairs), which lives on the stack: 64 KiB. */
#define K16_TABLE 16384

/* Bytes of activation rows per panel (panel_rows).  Each panel streams
 * the call's weights and unpacks them again, so a prompt of 128 rows of
 * k = 2048 (2336 bytes each) takes two panels (112 + 16) at 256 KiB and
 * one at 320 KiB or more; a build may set it to measure that
 * (-DK16_PANEL_BYTES=...).  256 KiB is the whole L2 of the smallest
 * AVX2 cores (Skylake client); most have 512 KiB to 2 MiB. */
#ifndef K16_PANEL_BYTES
#define K16_PANEL_BYTES (256 * 1024)
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

/* Activation rows per panel: as many as fill K16_PANEL_BYTES (they stay in
 * L2 while the call's groups pass over them) and whose table entries fit
 * K16_TABLE, in whole tiles of rn_max (EM_PACK_MAX_K keeps one tile's
 * within the table). */
static int64_t panel_rows(int64_t nb, size_t as, int64_t rn_max) {
    int64_t fit = (int64_t)(K16_PANEL_BYTES / as);
    if (fit > K16_TABLE / (nb * 4)) fit = K16_TABLE / (nb * 4);
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
#define K16_UNPACK(VEC, K, sc, mp, AND, SRLI, SLLI, OR, SEL, SET1)                                           \
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
    for (int j = 0; j < 12; j++) K[j] = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(sb + K16_SC + 16 * j)));
    K16_UNPACK(__m512i, K, sc, mp, _mm512_and_si512, _mm512_srli_epi32, _mm512_slli_epi32, _mm512_or_si512, SEL512,
               _mm512_set1_epi32);
}

/* One group (16 rows of nb super-blocks at grp) times RN activation rows
 * at ar (stride as) with their min pairs mpt[(j * nb + b) * 4 ..]:
 * out[j * ldo + i] for row i.  pf/pfl/pfs: the region to prefetch, a part
 * per super-block (pf 0: none). */
static inline AI T512 void tile_512(const int RN, int64_t nb, const uint8_t *grp, const uint8_t *ar, size_t as,
                                    const int32_t *mpt, float *out, int64_t ldo, uintptr_t pf, size_t pfl, size_t pfs) {
    const __m512i m4 = _mm512_set1_epi8(15);
    __m512 acc[8];
#pragma GCC unroll 8
    for (int j = 0; j < RN; j++) acc[j] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        if (pf) em_gemv_prefetch_part(pf, pfl, b, pfs);
        const uint8_t *sb = grp + (size_t)b * EM_PACK_Q4K_SB;
        __m512i sc[8], mp[4], T[8];
        unpack_512(sb, sc, mp);
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) T[j] = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int s = 0; s < 4; s++)
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                __m512i W[8];
#pragma GCC unroll 8
                for (int q = 0; q < 8; q++) {
                    const __m512i x = _mm512_loadu_si512(sb + K16_QS + (s * 8 + q) * 64);
                    W[q] = _mm512_and_si512(h ? _mm512_srli_epi16(x, 4) : x, m4);
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

/* The same in 256-bit registers, for AVX2 machines: a tile is one half of
 * a group (rows 8hf .. 8hf+7, the 32-byte halves of each 64-byte run).
 * DP_P adds the byte products of four quants per row to P: vpdpbusd with
 * AVX-VNNI (int32 P), vpmaddubsw into int16 pairs with plain AVX2;
 * APPLY_P adds P times the group scale to T: vpmulld, or vpmaddwd with
 * the scale in both int16 halves of each lane (SC16 makes that form).
 * There is no ternary logic below AVX-512: the bit-select is and/andnot. */
#define SEL256(a, b, m) _mm256_or_si256(_mm256_and_si256(a, m), _mm256_andnot_si256(m, b))
#define VNNI_P(P, w, y) P = _mm256_dpbusd_avx_epi32(P, w, y)
#define VNNI_APPLY(T, P, sc) T = _mm256_add_epi32(T, _mm256_mullo_epi32(P, sc))
#define VNNI_SC16(sc) (sc)
#define VNNI_MIN(M, mp, y) M = _mm256_dpwssd_avx_epi32(M, mp, y)
#define AVX2_P(P, w, y) P = _mm256_add_epi16(P, _mm256_maddubs_epi16(w, y))
#define AVX2_APPLY(T, P, sc) T = _mm256_add_epi32(T, _mm256_madd_epi16(P, sc))
#define AVX2_SC16(sc) _mm256_or_si256(sc, _mm256_slli_epi32(sc, 16))
#define AVX2_MIN(M, mp, y) M = _mm256_add_epi32(M, _mm256_madd_epi16(mp, y))

#define K16_TILE256(fname, TGT, DPP, APPLY, SC16, DMIN)                                                        \
    static inline AI TGT void fname(const int RN, int hf, int64_t nb, const uint8_t *grp, const uint8_t *ar,   \
                                    size_t as, const int32_t *mpt, float *out, int64_t ldo, uintptr_t pf,      \
                                    size_t pfl, size_t pfs) {                                                  \
        const __m256i m4 = _mm256_set1_epi8(15);                                                               \
        __m256 acc[4];                                                                                         \
        _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++) acc[j] = _mm256_setzero_ps();                      \
        for (int64_t b = 0; b < nb; b++) {                                                                     \
            if (pf) em_gemv_prefetch_part(pf, pfl, b, pfs);                                                    \
            const uint8_t *sb = grp + (size_t)b * EM_PACK_Q4K_SB;                                              \
            __m256i K[12], sc[8], mp[4], T[4];                                                                 \
            _Pragma("GCC unroll 12") for (int j = 0; j < 12; j++) K[j] = _mm256_cvtepu8_epi32(                 \
                _mm_loadl_epi64((const __m128i *)(const void *)(sb + K16_SC + 16 * j + 8 * hf)));              \
            K16_UNPACK(__m256i, K, sc, mp, _mm256_and_si256, _mm256_srli_epi32, _mm256_slli_epi32,             \
                       _mm256_or_si256, SEL256, _mm256_set1_epi32);                                            \
            _Pragma("GCC unroll 8") for (int g = 0; g < 8; g++) sc[g] = SC16(sc[g]);                           \
            _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++) T[j] = _mm256_setzero_si256();                 \
            _Pragma("GCC unroll 4") for (int s = 0; s < 4; s++) _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) { \
                __m256i W[8];                                                                                  \
                _Pragma("GCC unroll 8") for (int q = 0; q < 8; q++) {                                          \
                    const __m256i x = _mm256_loadu_si256(                                                      \
                        (const __m256i *)(const void *)(sb + K16_QS + (s * 8 + q) * 64 + 32 * hf));           \
                    W[q] = _mm256_and_si256(h ? _mm256_srli_epi16(x, 4) : x, m4);                              \
                }                                                                                              \
                _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++) {                                         \
                    const uint8_t *y = ar + (size_t)j * as + (size_t)b * sizeof(em_block_q8_k) + Q8K_QS + 64 * s + 32 * h; \
                    __m256i P = _mm256_setzero_si256();                                                        \
                    _Pragma("GCC unroll 8") for (int q = 0; q < 8; q++) DPP(P, W[q], _mm256_set1_epi32(ld32(y + 4 * q))); \
                    APPLY(T[j], P, sc[2 * s + h]);                                                             \
                }                                                                                              \
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

K16_TILE256(tile_vnni, TVNNI, VNNI_P, VNNI_APPLY, VNNI_SC16, VNNI_MIN)
K16_TILE256(tile_avx2, , AVX2_P, AVX2_APPLY, AVX2_SC16, AVX2_MIN)

/* ============================================== unpacked super-blocks */

/* With more activation rows than one tile takes, every tile of a group
 * would unpack the same levels and scales again.  Instead each
 * super-block of the group is unpacked once into this buffer (in L1), and
 * the tiles of all the panel's activation rows work from it, keeping
 * their float sums in the output rows between super-blocks (the same
 * operations in the same order: outputs do not change). */
typedef struct k16_buf {
    uint8_t w[4][2][8][64]; /* levels of qs[s][q]: [s][h][q][row * 4 + i], h 0: low nibbles, 1: high */
    int32_t sc[8][16];      /* group scale of each row (AVX2: in both int16 halves) */
    int32_t mp[4][16];      /* int16 pairs of mins (groups 2p, 2p + 1) of each row */
    float d[16], dm[16];    /* d and dmin of each row */
} k16_buf;

/* Both halves unpacked (SC16 gives the scales' form), and a tile of one
 * half hf: RN activation rows (ar: their block b, stride as; bp: their
 * min pairs of block b, stride bps) times the unpacked super-block u,
 * adding to the float sums at out (zero first when first). */
#define K16_BUF256(uname, tname, TGT, DPP, APPLY, SC16, DMIN)                                                  \
    static inline AI TGT void uname(const uint8_t *sb, k16_buf *u) {                                           \
        const __m256i m4 = _mm256_set1_epi8(15);                                                               \
        for (int sq = 0; sq < 32; sq++)                                                                        \
            for (int hf = 0; hf < 2; hf++) {                                                                   \
                const __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)(sb + K16_QS + sq * 64 + 32 * hf)); \
                _mm256_storeu_si256((__m256i *)(void *)(u->w[sq / 8][0][sq % 8] + 32 * hf), _mm256_and_si256(x, m4)); \
                _mm256_storeu_si256((__m256i *)(void *)(u->w[sq / 8][1][sq % 8] + 32 * hf),                    \
                                    _mm256_and_si256(_mm256_srli_epi16(x, 4), m4));                            \
            }                                                                                                  \
        for (int hf = 0; hf < 2; hf++) {                                                                       \
            __m256i K[12], sc[8], mp[4];                                                                       \
            for (int j = 0; j < 12; j++)                                                                       \
                K[j] = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(sb + K16_SC + 16 * j + 8 * hf))); \
            K16_UNPACK(__m256i, K, sc, mp, _mm256_and_si256, _mm256_srli_epi32, _mm256_slli_epi32,             \
                       _mm256_or_si256, SEL256, _mm256_set1_epi32);                                            \
            for (int g = 0; g < 8; g++) _mm256_storeu_si256((__m256i *)(void *)(u->sc[g] + 8 * hf), SC16(sc[g])); \
            for (int p = 0; p < 4; p++) _mm256_storeu_si256((__m256i *)(void *)(u->mp[p] + 8 * hf), mp[p]);    \
            _mm256_storeu_ps(u->d + 8 * hf, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(sb + 16 * hf)))); \
            _mm256_storeu_ps(u->dm + 8 * hf,                                                                   \
                             _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(sb + 32 + 16 * hf)))); \
        }                                                                                                      \
    }                                                                                                          \
    static inline AI TGT void tname(const int RN, int hf, const k16_buf *u, const uint8_t *ar, size_t as,      \
                                    const int32_t *bp, int64_t bps, float *out, int64_t ldo, bool first) {     \
        __m256 acc[4];                                                                                         \
        __m256i T[4];                                                                                          \
        _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++) {                                                 \
            acc[j] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(out + j * ldo);                             \
            T[j] = _mm256_setzero_si256();                                                                     \
        }                                                                                                      \
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

K16_BUF256(unpack_buf_vnni, tileb_vnni, TVNNI, VNNI_P, VNNI_APPLY, VNNI_SC16, VNNI_MIN)
K16_BUF256(unpack_buf_avx2, tileb_avx2, , AVX2_P, AVX2_APPLY, AVX2_SC16, AVX2_MIN)

/* The buffered product of one group (see K16_DRIVER) for the panel's
 * activation rows p0 .. p1-1, if more than one tile: returns whether it
 * was done. */
#define K16_BUF_STEP(fname, TGT, UNPACK, TILEB, RNMAX, HALVES)                                                 \
    static inline AI TGT bool fname(int64_t nb, const uint8_t *grp, uintptr_t pfa, size_t pfl, const uint8_t *a, \
                                    size_t as, int64_t p0, int64_t p1, const int32_t *tbl, float *out,        \
                                    int64_t ldo) {                                                             \
        if (p1 - p0 <= RNMAX) return false;                                                                    \
        k16_buf u;                                                                                             \
        const size_t pfs = pfa ? (pfl + (size_t)nb - 1) / (size_t)nb : 0;                                     \
        for (int64_t b = 0; b < nb; b++) {                                                                     \
            if (pfa) em_gemv_prefetch_part(pfa, pfl, b, pfs);                                                  \
            UNPACK(grp + (size_t)b * EM_PACK_Q4K_SB, &u);                                                      \
            for (int64_t r0 = p0; r0 < p1; r0 += RNMAX) {                                                      \
                const int rn = (int)EM_MIN((int64_t)RNMAX, p1 - r0);                                           \
                const uint8_t *ar = a + (size_t)r0 * as + (size_t)b * sizeof(em_block_q8_k);                   \
                const int32_t *bp = tbl + ((r0 - p0) * nb + b) * 4;                                            \
                for (int hf = 0; hf < HALVES; hf++)                                                            \
                    EM_RN_SWITCH(TILEB, RNMAX, rn, hf, &u, ar, as, bp, nb * 4, out + r0 * ldo + hf * (K16_ROWS / HALVES), \
                                  ldo, b == 0);                                                                \
            }                                                                                                  \
        }                                                                                                      \
        return true;                                                                                           \
    }

K16_BUF_STEP(buf_step_vnni, TVNNI, unpack_buf_vnni, tileb_vnni, 2, 2)
K16_BUF_STEP(buf_step_avx2, , unpack_buf_avx2, tileb_avx2, 2, 2)
#define NO_BUF_STEP(...) false

/* ================================================ one row, plain AVX2 */

/* The matrix-vector product (one activation row) with plain AVX2.  The
 * tiles above unpack each 8-row half's scales on its own, widening every
 * packed byte to an int32 lane first: about as many vector instructions
 * per super-block as the products of its levels take.  Here both halves
 * go together: byte j of the 16 rows' packed scales is one 128-bit lane,
 * so six loads hold a super-block's 12 bytes of all 16 rows and two dozen
 * byte operations unpack its scales and mins (K16_UNPACK's formulas, with
 * (K >> 6) << 4 as (K >> 2) & 0x30 per byte); they go to a small buffer,
 * from which each vector the products need (a scale in both int16 halves
 * of each row's lane, a pair of mins) is one broadcast load and one
 * vpshufb.  Each activation quad is broadcast once for both halves.  The
 * integer sums are the tiles' (exact) and the float steps the same, in
 * the same order, so outputs do not change. */
static inline AI void gemv_avx2(int64_t nb, const uint8_t *grp, const uint8_t *ar, const int32_t *mpt, float *out,
                                uintptr_t pf, size_t pfl, size_t pfs) {
    const __m256i m4 = _mm256_set1_epi8(15), m63 = _mm256_set1_epi8(63), m30 = _mm256_set1_epi8(0x30);
    /* Scales: bytes 0-3 (lane 0) and 4-7 (lane 1) into both int16 halves
     * of the int32 lanes.  Mins: bytes r and 8 + r into the two halves. */
    const __m256i xsc = _mm256_setr_epi8(0, -1, 0, -1, 1, -1, 1, -1, 2, -1, 2, -1, 3, -1, 3, -1, 4, -1, 4, -1, 5, -1,
                                         5, -1, 6, -1, 6, -1, 7, -1, 7, -1);
    const __m256i xmn = _mm256_setr_epi8(0, -1, 8, -1, 1, -1, 9, -1, 2, -1, 10, -1, 3, -1, 11, -1, 4, -1, 12, -1, 5,
                                         -1, 13, -1, 6, -1, 14, -1, 7, -1, 15, -1);
    _Alignas(32) uint8_t S[8][16];     /* scale of group g of row i at S[g][i]                     */
    _Alignas(32) uint8_t MN[4][2][16]; /* [p][hf]: mins of groups 2p, 2p + 1 of rows 8hf .. 8hf + 7 */
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t b = 0; b < nb; b++) {
        if (pf) em_gemv_prefetch_part(pf, pfl, b, pfs);
        const uint8_t *sb = grp + (size_t)b * EM_PACK_Q4K_SB;
        const uint8_t *y = ar + (size_t)b * sizeof(em_block_q8_k);
        __m256i K[6]; /* K[j]: packed bytes 2j (lane 0) and 2j + 1 (lane 1) of the 16 rows */
        for (int j = 0; j < 6; j++) K[j] = _mm256_loadu_si256((const __m256i *)(const void *)(sb + K16_SC + 32 * j));
        const __m256i hi01 = _mm256_and_si256(_mm256_srli_epi16(K[0], 2), m30);
        const __m256i hi23 = _mm256_and_si256(_mm256_srli_epi16(K[1], 2), m30);
        const __m256i hi45 = _mm256_and_si256(_mm256_srli_epi16(K[2], 2), m30);
        const __m256i hi67 = _mm256_and_si256(_mm256_srli_epi16(K[3], 2), m30);
        _mm256_store_si256((__m256i *)(void *)S[0], _mm256_and_si256(K[0], m63));
        _mm256_store_si256((__m256i *)(void *)S[2], _mm256_and_si256(K[1], m63));
        _mm256_store_si256((__m256i *)(void *)S[4], _mm256_or_si256(_mm256_and_si256(K[4], m4), hi01));
        _mm256_store_si256((__m256i *)(void *)S[6], _mm256_or_si256(_mm256_and_si256(K[5], m4), hi23));
        const __m256i mn[4] = {
            _mm256_and_si256(K[2], m63),
            _mm256_and_si256(K[3], m63),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(K[4], 4), m4), hi45),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(K[5], 4), m4), hi67),
        };
        /* Lane 0 of mn[p] holds group 2p's mins of the 16 rows, lane 1
         * group 2p + 1's: quadwords 0, 2, 1, 3 put each half's together. */
        for (int p = 0; p < 4; p++)
            _mm256_store_si256((__m256i *)(void *)MN[p], _mm256_permute4x64_epi64(mn[p], 0xD8));
        __m256i T[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
#pragma GCC unroll 1
        for (int s = 0; s < 4; s++)
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
#pragma GCC unroll 2
                for (int hf = 0; hf < 2; hf++) {
                    __m256i P = _mm256_setzero_si256();
#pragma GCC unroll 8
                    for (int q = 0; q < 8; q++) {
                        const __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)(sb + K16_QS + (s * 8 + q) * 64 + 32 * hf));
                        const __m256i w = _mm256_and_si256(h ? _mm256_srli_epi16(x, 4) : x, m4);
                        P = _mm256_add_epi16(P, _mm256_maddubs_epi16(w, _mm256_set1_epi32(ld32(y + Q8K_QS + 64 * s + 32 * h + 4 * q))));
                    }
                    const __m256i sc = _mm256_shuffle_epi8(
                        _mm256_broadcastq_epi64(_mm_loadl_epi64((const __m128i *)(const void *)(S[2 * s + h] + 8 * hf))), xsc);
                    T[hf] = _mm256_add_epi32(T[hf], _mm256_madd_epi16(P, sc));
                }
            }
        const __m256 da = _mm256_set1_ps(em_gemv_ldf32(y));
        const int32_t *bp = mpt + b * 4;
#pragma GCC unroll 2
        for (int hf = 0; hf < 2; hf++) {
            __m256i M = _mm256_setzero_si256();
#pragma GCC unroll 4
            for (int p = 0; p < 4; p++) {
                const __m256i mp = _mm256_shuffle_epi8(
                    _mm256_broadcastsi128_si256(_mm_load_si128((const __m128i *)(const void *)MN[p][hf])), xmn);
                M = _mm256_add_epi32(M, _mm256_madd_epi16(mp, _mm256_set1_epi32(bp[p])));
            }
            const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(sb + 16 * hf)));
            const __m256 dm = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(sb + 32 + 16 * hf)));
            acc[hf] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(T[hf]), _mm256_mul_ps(d, da), acc[hf]);
            acc[hf] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(M), _mm256_mul_ps(dm, da), acc[hf]);
        }
    }
    _mm256_storeu_ps(out, acc[0]);
    _mm256_storeu_ps(out + 8, acc[1]);
}

/* ============================================================ drivers */

/* For each panel of activation rows (their min pairs found first) and
 * each group of the call:
 *   - at most RNMAX activation rows: one tile per group half (HALVES 2:
 *     the 256-bit tiles of 8 rows) over all super-blocks, unpacking them
 *     as it goes.  The group after next is prefetched meanwhile
 *     (em_gemv_prefetch_plan's region): with one activation row, that is
 *     the matrix-vector product's stream;
 *   - more: with a BUF_STEP, each super-block unpacked once (k16_buf),
 *     then the tiles of all the panel's rows (and halves) over it;
 *     without (NO_BUF_STEP), tiles of RNMAX rows as above.
 * Measured (bench_gemm, 64 rows): the buffer makes the 256-bit kernels
 * 1.2x faster, whose tiles of two rows share little, and the 512-bit one
 * 1.3x slower, whose tiles of eight rows share the unpacking already. */
#define K16_DRIVER(name, TGT, TILE, BUF_STEP, RNMAX, HALVES)                                              \
    TGT void name(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, size_t as, int64_t na,       \
                   float *out, int64_t ldo) {                                                                  \
        const int64_t nb = k / EM_QK_K;                                                                        \
        int32_t tbl[K16_TABLE];                                                                                \
        const int64_t panel = panel_rows(nb, as, RNMAX);                                                       \
        for (int64_t p0 = 0; p0 < na; p0 += panel) {                                                           \
            const int64_t p1 = EM_MIN(na, p0 + panel);                                                         \
            min_pairs(nb, (const uint8_t *)a + (size_t)p0 * as, as, p1 - p0, tbl);                             \
            for (int64_t j0 = 0; j0 < nw; j0 += K16_ROWS) {                                                    \
                const uint8_t *grp = (const uint8_t *)w + (size_t)j0 * ws;                                     \
                uintptr_t pfa;                                                                                 \
                size_t pfl;                                                                                    \
                em_gemv_prefetch_plan(w, ws, j0, K16_ROWS, &pfa, &pfl);                                        \
                if (BUF_STEP(nb, grp, pfa, pfl, (const uint8_t *)a, as, p0, p1, tbl, out + j0, ldo)) continue; \
                const size_t pfs = pfa ? (pfl + (size_t)(nb * HALVES) - 1) / (size_t)(nb * HALVES) : 0;       \
                for (int64_t r0 = p0; r0 < p1; r0 += RNMAX) {                                                  \
                    const int rn = (int)EM_MIN((int64_t)RNMAX, p1 - r0);                                       \
                    const uint8_t *ar = (const uint8_t *)a + (size_t)r0 * as;                                  \
                    const int32_t *mt = tbl + (r0 - p0) * nb * 4;                                              \
                    for (int hf = 0; hf < HALVES; hf++) {                                                      \
                        const uintptr_t pf = pfa && r0 == p0 ? pfa + (size_t)hf * pfl / HALVES : 0;            \
                        float *o = out + r0 * ldo + j0 + hf * (K16_ROWS / HALVES);                             \
                        EM_RN_SWITCH(TILE, RNMAX, rn, hf, nb, grp, ar, as, mt, o, ldo, pf, pfl / HALVES, pfs); \
                    }                                                                                          \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
    }

#define TILE512(RN, hf, ...) tile_512(RN, __VA_ARGS__)
K16_DRIVER(em_gemm_q4_kx16_avx512, T512, TILE512, NO_BUF_STEP, 8, 1)
K16_DRIVER(em_gemm_q4_kx16_avxvnni, TVNNI, tile_vnni, buf_step_vnni, 2, 2)
K16_DRIVER(gemm_rows_avx2, static, tile_avx2, buf_step_avx2, 2, 2)

/* Plain AVX2: one activation row goes to gemv_avx2, more to the tiles. */
void em_gemm_q4_kx16_avx2(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, size_t as, int64_t na,
                          float *out, int64_t ldo) {
    if (na != 1) {
        gemm_rows_avx2(k, w, ws, nw, a, as, na, out, ldo);
        return;
    }
    const int64_t nb = k / EM_QK_K;
    int32_t mpt[4 * (EM_PACK_MAX_K / EM_QK_K)];
    min_pairs(nb, (const uint8_t *)a, as, 1, mpt);
    for (int64_t j0 = 0; j0 < nw; j0 += K16_ROWS) {
        uintptr_t pfa;
        size_t pfl;
        em_gemv_prefetch_plan(w, ws, j0, K16_ROWS, &pfa, &pfl);
        const size_t pfs = pfa ? (pfl + (size_t)nb - 1) / (size_t)nb : 0;
        gemv_avx2(nb, (const uint8_t *)w + (size_t)j0 * ws, (const uint8_t *)a, mpt, out + j0, pfa, pfl, pfs);
    }
}

#endif /* EM_HAVE_X86_GEMM */
