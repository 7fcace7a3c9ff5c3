/*
 * gemm_packed_q6k_avx2.c - kernels of the Q6_K x16 packed layout
 * (quant/pack.h) times Q8_K activation rows: AVX-512 with VNNI, AVX-VNNI
 * (256-bit) and AVX2.  As for Q4_K x16 (gemm_packed_k_avx2.c), one kernel
 * serves prompt processing (many activation rows) and generation (one
 * row: the matrix-vector product, which streams the weights and
 * prefetches them as gemv_common.h describes).
 *
 * The 16 rows of a group each own one int32 lane of a 512-bit register
 * (8 rows per 256-bit register: a group is then two halves).  For each
 * group g = 4qd + r of 16 elements of a super-block (quad qd):
 *   - four 64-byte runs c of slot r (r < 3: bits 0-5 of each byte, one
 *     mask) or of all three slots (r = 3: their bits 6-7 gathered, Q6_L3)
 *     make four unsigned levels 0..63 of each row per run;
 *   - vpdpbusd with the activation's four matching quants broadcast to
 *     every lane adds each row's four products to its lane: four runs
 *     make the row's group sum P of level times quant (at most
 *     16 * 63 * 128 in magnitude);
 *   - T += P * sc[g] (int32: at most 16 * 129024 * 128, exact);
 * and once per super-block the -32 offset of the levels comes off through
 * the activation's group sums: M = sum_g sc[g] * bsums[g], eight vpdpwssd
 * of the stored scale pairs with the bsums pairs (read from the Q8_K
 * block as they lie), and isum = T - 32 M is the reference's integer sum
 * exactly; acc += isum * (d * d_a) in float, as the scalar reference does
 * per block, so outputs equal it up to the order of the float additions.
 * Weight-side work (loading and rebuilding the levels, widening scales)
 * is shared by the RN activation rows of a tile.
 *
 * Without VNNI (plain AVX2) the byte products go through vpmaddubsw into
 * int16 pairs (at most 2 * 63 * 128 = 16128; two runs summed stay within
 * int16, four would not), and vpmaddwd with the group scale in both
 * halves of each lane applies it and finishes the sum in int32, once per
 * two runs: exact as well.
 */
#include "quant/pack.h"

#if defined(EM_HAVE_X86_GEMM)

#include "quant/arch/x86/gemv_common.h"
#include "quant/blocks.h"

#include <immintrin.h>

#define AI __attribute__((always_inline))
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define TVNNI __attribute__((target("avx2,fma,f16c,avxvnni")))

#define Q6_ROWS EM_PACK_ROWS_K
#define Q8K_QS 4   /* offset of qs in a Q8_K block     */
#define Q8K_BS 260 /* offset of bsums                  */
_Static_assert(offsetof(em_block_q8_k, qs) == Q8K_QS && offsetof(em_block_q8_k, bsums) == Q8K_BS, "Q8_K");
_Static_assert(EM_Q6KX16_SC == 4 * EM_Q6KX16_QUAD && EM_Q6KX16_QUAD == 12 * Q6_ROWS * 4 &&
                   EM_Q6KX16_D == EM_Q6KX16_SC + 8 * Q6_ROWS * 2 && EM_PACK_Q6K_SB == EM_Q6KX16_D + 2 * Q6_ROWS,
               "Q6_K x16 super-block");

static inline int32_t ld32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Activation rows per panel: as many as fill about 256 KiB (they stay in
 * L2 while the call's groups pass over them), in whole tiles of rn_max. */
static int64_t panel_rows(size_t as, int64_t rn_max) {
    int64_t fit = (int64_t)((256 * 1024) / as) / rn_max * rn_max;
    return fit < rn_max ? rn_max : fit;
}

/* The levels of group 4qd + 3 from the three slots' runs x0, x1, x2 of
 * quad qd (bits 6-7 of each byte: the level's bits 4-5, 2-3, 0-1):
 * masked to bits 6-7 and gathered by 16-bit shifts of two, which move
 * no set bit across a byte (each shift's operand has bits 0-1 of every
 * byte clear).  OR(a, b, m) is a | (b & m): ternary logic with AVX-512. */
#define Q6_L3(x0, x1, x2, AND, OR, SRLI, mc0)                                                      \
    SRLI(OR(SRLI(OR(SRLI(AND(x2, mc0), 2), x1, mc0), 2), x0, mc0), 2)
/* Offset in a Q8_K block's qs of the activation quants of group g, run c. */
#define Y_OFF(g, c) (16 * (g) + 4 * (c))

/* ============================================================ AVX-512 */

#define OR512(a, b, m) _mm512_ternarylogic_epi32(a, b, m, 0xF8)

/* One group (16 rows of nb super-blocks at grp) times RN activation rows
 * at ar (stride as): out[j * ldo + i] for row i.  pf/pfl/pfs: the region
 * to prefetch, a part per group of 16 elements (pf 0: none): a whole
 * super-block's part at once (about 52 lines) left the matrix-vector
 * product 20% slower in cache (bench_gemm --na 1).  Per group, each run
 * c's levels are made once and the RN rows' sums P[j] take their products
 * in turn (independent vpdpbusd, the activation quad as the broadcast
 * operand, em_gemv_dpbusd_b512); the loop over the quads qd stays rolled.
 * Fully unrolled with one row's chain of four products after another,
 * the tile ran 1.25-1.46x slower (bench_gemm, session 11). */
static inline AI T512 void tile_512(const int RN, int64_t nb, const uint8_t *grp, const uint8_t *ar, size_t as,
                                    float *out, int64_t ldo, uintptr_t pf, size_t pfl, size_t pfs) {
    const __m512i m63 = _mm512_set1_epi8(63), mc0 = _mm512_set1_epi8((char)0xC0);
    __m512 acc[8];
#pragma GCC unroll 8
    for (int j = 0; j < RN; j++) acc[j] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *sb = grp + (size_t)b * EM_PACK_Q6K_SB;
        const uint8_t *yb = ar + (size_t)b * sizeof(em_block_q8_k);
        __m512i T[8];
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) T[j] = _mm512_setzero_si512();
#pragma GCC unroll 1
        for (int qd = 0; qd < 4; qd++) {
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                const int g = 4 * qd + r;
                if (pf) em_gemv_prefetch_part(pf, pfl, b * 16 + g, pfs);
                __m512i P[8];
#pragma GCC unroll 8
                for (int j = 0; j < RN; j++) P[j] = _mm512_setzero_si512();
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++) {
#define LD512(r_) _mm512_loadu_si512(sb + EM_Q6KX16_RUN(qd, r_, c))
                    const __m512i W = r < 3 ? _mm512_and_si512(LD512(r), m63)
                                            : Q6_L3(LD512(0), LD512(1), LD512(2), _mm512_and_si512, OR512, _mm512_srli_epi16, mc0);
#undef LD512
#pragma GCC unroll 8
                    for (int j = 0; j < RN; j++) P[j] = em_gemv_dpbusd_b512(P[j], W, yb + (size_t)j * as + Q8K_QS + Y_OFF(g, c));
                }
                const __m512i sp = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(sb + EM_Q6KX16_SC + (g / 2) * 32)));
                const __m512i sc = g % 2 ? _mm512_srai_epi32(sp, 16) : _mm512_srai_epi32(_mm512_slli_epi32(sp, 16), 16);
#pragma GCC unroll 8
                for (int j = 0; j < RN; j++) T[j] = _mm512_add_epi32(T[j], _mm512_mullo_epi32(P[j], sc));
            }
        }
        __m512i sp[8];
#pragma GCC unroll 8
        for (int p = 0; p < 8; p++)
            sp[p] = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(sb + EM_Q6KX16_SC + p * 32)));
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(sb + EM_Q6KX16_D)));
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) {
            const uint8_t *y = yb + (size_t)j * as;
            __m512i M = _mm512_setzero_si512();
#pragma GCC unroll 8
            for (int p = 0; p < 8; p++) M = _mm512_dpwssd_epi32(M, sp[p], _mm512_set1_epi32(ld32(y + Q8K_BS + 4 * p)));
            const __m512i isum = _mm512_sub_epi32(T[j], _mm512_slli_epi32(M, 5));
            const __m512 da = _mm512_set1_ps(em_gemv_ldf32(y));
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(d, da), acc[j]);
        }
    }
#pragma GCC unroll 8
    for (int j = 0; j < RN; j++) _mm512_storeu_ps(out + j * ldo, acc[j]);
}

/* ===================================================== 256-bit kernels */

/* The same in 256-bit registers, for AVX2 machines: a tile is one half of
 * a group (rows 8hf .. 8hf+7, the 32-byte halves of each 64-byte run).
 * GROUP adds group g's sum of the four runs W times the activation quants
 * at y, times the scale pair vector sp's scale of g, to T: vpdpbusd and
 * vpmulld with AVX-VNNI; two vpmaddubsw per vpmaddwd with plain AVX2
 * (the scale in both int16 halves of each lane).  MIN adds the scale pair
 * times a bsums pair (vpdpwssd or vpmaddwd: the same sum). */

/* vpshufb control copying the low (0x01000100) or high (0x03020302) int16
 * of each int32 lane into both its halves: one instruction for the two
 * shifts and the blend of each group's scale. */
#define Q6_DUP(x) _mm256_setr_epi32(x, x + 0x04040404, x + 0x08080808, x + 0x0C0C0C0C, x, x + 0x04040404, x + 0x08080808, x + 0x0C0C0C0C)
#define BC(y, c) _mm256_set1_epi32(ld32((y) + 4 * (c)))
#define VNNI_GROUP(T, W, y, sp, odd)                                                                            \
    do {                                                                                                       \
        __m256i P_ = _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), W[0], BC(y, 0));                          \
        P_ = _mm256_dpbusd_avx_epi32(P_, W[1], BC(y, 1));                                                      \
        P_ = _mm256_dpbusd_avx_epi32(P_, W[2], BC(y, 2));                                                      \
        P_ = _mm256_dpbusd_avx_epi32(P_, W[3], BC(y, 3));                                                      \
        const __m256i s_ = odd ? _mm256_srai_epi32(sp, 16) : _mm256_srai_epi32(_mm256_slli_epi32(sp, 16), 16); \
        T = _mm256_add_epi32(T, _mm256_mullo_epi32(P_, s_));                                                   \
    } while (0)
#define VNNI_MIN(M, sp, y) M = _mm256_dpwssd_avx_epi32(M, sp, y)
#define AVX2_GROUP(T, W, y, sp, odd)                                                                            \
    do {                                                                                                       \
        const __m256i s_ = _mm256_shuffle_epi8(sp, odd ? Q6_DUP(0x03020302) : Q6_DUP(0x01000100));          \
        const __m256i p0_ = _mm256_add_epi16(_mm256_maddubs_epi16(W[0], BC(y, 0)), _mm256_maddubs_epi16(W[1], BC(y, 1))); \
        const __m256i p1_ = _mm256_add_epi16(_mm256_maddubs_epi16(W[2], BC(y, 2)), _mm256_maddubs_epi16(W[3], BC(y, 3))); \
        T = _mm256_add_epi32(T, _mm256_add_epi32(_mm256_madd_epi16(p0_, s_), _mm256_madd_epi16(p1_, s_)));    \
    } while (0)
#define AVX2_MIN(M, sp, y) M = _mm256_add_epi32(M, _mm256_madd_epi16(sp, y))

/* Run c of group 4qd + r of super-block sb, half hf: 32 bytes of levels. */
#define Q6_LD256(sb, qd, r, c, hf) _mm256_loadu_si256((const __m256i *)(const void *)((sb) + EM_Q6KX16_RUN(qd, r, c) + 32 * (hf)))
#define Q6_OR256(a, b, m) _mm256_or_si256(a, _mm256_and_si256(b, m))
#define Q6_W256(sb, qd, r, c, hf)                                                                              \
    ((r) < 3 ? _mm256_and_si256(Q6_LD256(sb, qd, r, c, hf), m63)                                              \
             : Q6_L3(Q6_LD256(sb, qd, 0, c, hf), Q6_LD256(sb, qd, 1, c, hf), Q6_LD256(sb, qd, 2, c, hf),        \
                     _mm256_and_si256, Q6_OR256, _mm256_srli_epi16, mc0))

#define Q6_TILE256(fname, TGT, GROUP, MIN)                                                                    \
    static inline AI TGT void fname(const int RN, int hf, int64_t nb, const uint8_t *grp, const uint8_t *ar,  \
                                    size_t as, float *out, int64_t ldo, uintptr_t pf, size_t pfl, size_t pfs) {\
        const __m256i m63 = _mm256_set1_epi8(63), mc0 = _mm256_set1_epi8((char)0xC0);                          \
        __m256 acc[4];                                                                                        \
        _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++) acc[j] = _mm256_setzero_ps();                    \
        for (int64_t b = 0; b < nb; b++) {                                                                    \
            const uint8_t *sb = grp + (size_t)b * EM_PACK_Q6K_SB;                                             \
            const uint8_t *yb = ar + (size_t)b * sizeof(em_block_q8_k);                                       \
            __m256i T[4];                                                                                     \
            _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++) T[j] = _mm256_setzero_si256();               \
            _Pragma("GCC unroll 4") for (int qd = 0; qd < 4; qd++) {                                          \
                _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {                                         \
                    const int g = 4 * qd + r;                                                                 \
                    if (pf) em_gemv_prefetch_part(pf, pfl, b * 16 + g, pfs);                                  \
                    __m256i W[4];                                                                             \
                    _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) W[c] = Q6_W256(sb, qd, r, c, hf);     \
                    const __m256i sp = _mm256_cvtepi8_epi16(                                                  \
                        _mm_loadu_si128((const __m128i *)(const void *)(sb + EM_Q6KX16_SC + (g / 2) * 32 + 16 * hf)));\
                    _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++) {                                    \
                        const uint8_t *y = yb + (size_t)j * as + Q8K_QS + Y_OFF(g, 0);                        \
                        GROUP(T[j], W, y, sp, g % 2);                                                         \
                    }                                                                                         \
                }                                                                                             \
            }                                                                                                 \
            const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(sb + EM_Q6KX16_D + 16 * hf)));\
            _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++) {                                            \
                const uint8_t *y = yb + (size_t)j * as;                                                       \
                __m256i M = _mm256_setzero_si256();                                                           \
                _Pragma("GCC unroll 8") for (int p = 0; p < 8; p++) MIN(M,                                    \
                    _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(sb + EM_Q6KX16_SC + p * 32 + 16 * hf))),\
                    _mm256_set1_epi32(ld32(y + Q8K_BS + 4 * p)));                                             \
                const __m256i isum = _mm256_sub_epi32(T[j], _mm256_slli_epi32(M, 5));                         \
                const __m256 da = _mm256_set1_ps(em_gemv_ldf32(y));                                           \
                acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(d, da), acc[j]);             \
            }                                                                                                 \
        }                                                                                                     \
        _Pragma("GCC unroll 4") for (int j = 0; j < RN; j++) _mm256_storeu_ps(out + j * ldo, acc[j]);         \
    }

Q6_TILE256(tile_vnni, TVNNI, VNNI_GROUP, VNNI_MIN)
Q6_TILE256(tile_avx2, , AVX2_GROUP, AVX2_MIN)

/* =============================== unpacked super-blocks, plain AVX2 */

/* With more activation rows than a tile takes, the tiles above rebuild
 * the same levels and widen the same scales for every four rows, and
 * each half broadcasts the same activation quads.  Instead each
 * super-block is unpacked once into this buffer (in L1), and a tile of
 * both halves (16 weight rows) and two activation rows goes over it for
 * all the panel's rows, keeping its float sums in the output rows between
 * super-blocks, as the Q4_K and Q5_K kernels do (KP_BUF_TILE16_256,
 * gemm_packed_k_common.h). */
typedef struct q6_buf {
    uint8_t w[16][4][64]; /* levels 0..63 of run c of group g: [g][c][row * 4 + i] */
    int32_t sc[16][16];   /* scale of group g of each row, in both int16 halves */
    int32_t sp[8][16];    /* int16 pairs of scales (groups 2p, 2p + 1) of each row */
    float d[16];          /* d of each row */
} q6_buf;

static inline AI void q6_unpack_avx2(const uint8_t *sb, q6_buf *u) {
    const __m256i m63 = _mm256_set1_epi8(63), mc0 = _mm256_set1_epi8((char)0xC0);
    for (int qd = 0; qd < 4; qd++)
        for (int c = 0; c < 4; c++)
            for (int hf = 0; hf < 2; hf++)
                for (int r = 0; r < 4; r++)
                    _mm256_storeu_si256((__m256i *)(void *)(u->w[4 * qd + r][c] + 32 * hf), Q6_W256(sb, qd, r, c, hf));
    for (int p = 0; p < 8; p++)
        for (int hf = 0; hf < 2; hf++) {
            const __m256i sp = _mm256_cvtepi8_epi16(
                _mm_loadu_si128((const __m128i *)(const void *)(sb + EM_Q6KX16_SC + p * 32 + 16 * hf)));
            _mm256_storeu_si256((__m256i *)(void *)(u->sp[p] + 8 * hf), sp);
            _mm256_storeu_si256((__m256i *)(void *)(u->sc[2 * p] + 8 * hf), _mm256_shuffle_epi8(sp, Q6_DUP(0x01000100)));
            _mm256_storeu_si256((__m256i *)(void *)(u->sc[2 * p + 1] + 8 * hf), _mm256_shuffle_epi8(sp, Q6_DUP(0x03020302)));
        }
    for (int hf = 0; hf < 2; hf++)
        _mm256_storeu_ps(u->d + 8 * hf, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(sb + EM_Q6KX16_D + 16 * hf))));
}

/* RN (1 or 2) activation rows (ar: their block b, stride as) times the 16
 * rows of the unpacked super-block u, adding to the float sums at out
 * (zero first when first).  Per group, two runs of vpmaddubsw pairs in
 * int16 (at most 2 * 2 * 63 * 128) per vpmaddwd with the scale, as the
 * tiles above; the group loop stays rolled and AVX2_PB (an empty asm)
 * keeps each int16 sum in a register, as in KP_BUF_TILE16_256.  The
 * integer sums are the tiles' (exact; only the order of the int32
 * additions differs) and the float steps the same, in the same order. */
static inline AI void q6_tileb_avx2(const int RN, const q6_buf *u, const uint8_t *ar, size_t as, float *out,
                                    int64_t ldo, bool first) {
    __m256 acc[2][2];
    __m256i T[2][2];
#pragma GCC unroll 2
    for (int hf = 0; hf < 2; hf++)
#pragma GCC unroll 2
        for (int j = 0; j < RN; j++) {
            acc[hf][j] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(out + j * ldo + 8 * hf);
            T[hf][j] = _mm256_setzero_si256();
        }
#pragma GCC unroll 1
    for (int g = 0; g < 16; g++) {
        const uint8_t *yg = ar + Q8K_QS + Y_OFF(g, 0);
#pragma GCC unroll 2
        for (int c0 = 0; c0 < 4; c0 += 2) {
            __m256i P[2][2];
#pragma GCC unroll 2
            for (int j = 0; j < RN; j++) P[j][0] = P[j][1] = _mm256_setzero_si256();
#pragma GCC unroll 2
            for (int c = c0; c < c0 + 2; c++) {
                const __m256i w0 = _mm256_loadu_si256((const __m256i *)(const void *)u->w[g][c]);
                const __m256i w1 = _mm256_loadu_si256((const __m256i *)(const void *)(u->w[g][c] + 32));
#pragma GCC unroll 2
                for (int j = 0; j < RN; j++) {
                    const __m256i y = BC(yg + (size_t)j * as, c);
                    AVX2_PB(P[j][0], w0, y);
                    AVX2_PB(P[j][1], w1, y);
                }
            }
#pragma GCC unroll 2
            for (int hf = 0; hf < 2; hf++) {
                const __m256i sc = _mm256_loadu_si256((const __m256i *)(const void *)(u->sc[g] + 8 * hf));
#pragma GCC unroll 2
                for (int j = 0; j < RN; j++) T[hf][j] = _mm256_add_epi32(T[hf][j], _mm256_madd_epi16(P[j][hf], sc));
            }
        }
    }
#pragma GCC unroll 2
    for (int hf = 0; hf < 2; hf++) {
        const __m256 d = _mm256_loadu_ps(u->d + 8 * hf);
#pragma GCC unroll 2
        for (int j = 0; j < RN; j++) {
            const uint8_t *y = ar + (size_t)j * as;
            __m256i M = _mm256_setzero_si256();
#pragma GCC unroll 8
            for (int p = 0; p < 8; p++)
                AVX2_MIN(M, _mm256_loadu_si256((const __m256i *)(const void *)(u->sp[p] + 8 * hf)),
                         _mm256_set1_epi32(ld32(y + Q8K_BS + 4 * p)));
            const __m256i isum = _mm256_sub_epi32(T[hf][j], _mm256_slli_epi32(M, 5));
            const __m256 da = _mm256_set1_ps(em_gemv_ldf32(y));
            acc[hf][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(d, da), acc[hf][j]);
            _mm256_storeu_ps(out + j * ldo + 8 * hf, acc[hf][j]);
        }
    }
}

/* The buffered product of one group for the panel's activation rows p0 ..
 * p1-1 (more than Q6_BUF_MIN): each super-block unpacked once, then the
 * tiles of two rows over it; the group's prefetch region (pfa, pfl) a
 * part per super-block. */
#define Q6_BUF_MIN 4
static inline AI void q6_buf_step_avx2(int64_t nb, const uint8_t *grp, uintptr_t pfa, size_t pfl, const uint8_t *a,
                                       size_t as, int64_t p0, int64_t p1, float *out, int64_t ldo) {
    q6_buf u;
    const size_t pfs = pfa ? (pfl + (size_t)nb - 1) / (size_t)nb : 0;
    for (int64_t b = 0; b < nb; b++) {
        if (pfa) em_gemv_prefetch_part(pfa, pfl, b, pfs);
        q6_unpack_avx2(grp + (size_t)b * EM_PACK_Q6K_SB, &u);
        for (int64_t r0 = p0; r0 < p1; r0 += 2) {
            const uint8_t *ar = a + (size_t)r0 * as + (size_t)b * sizeof(em_block_q8_k);
            if (p1 - r0 >= 2) q6_tileb_avx2(2, &u, ar, as, out + r0 * ldo, ldo, b == 0);
            else q6_tileb_avx2(1, &u, ar, as, out + r0 * ldo, ldo, b == 0);
        }
    }
}

/* ============================================================ drivers */

/* For each panel of activation rows and each group of the call, tiles of
 * at most RNMAX activation rows, one per group half (HALVES 2: the
 * 256-bit tiles of 8 rows), over all super-blocks; with BUF (plain AVX2)
 * and more than Q6_BUF_MIN rows in the panel, q6_buf_step_avx2 instead
 * (measured, bench_gemm k 2048, 128 rows: 1.23-1.36x the tiles).  The first tile of a
 * group prefetches meanwhile, which with one activation row is the
 * matrix-vector product's stream: the 512-bit tile EM_GEMV_PF_BYTES ahead
 * of its reads (groups follow each other in memory), 1/16 of a
 * super-block per group of 16 elements; the two 256-bit halves, which
 * read the group twice, each half of the next group
 * (em_gemv_prefetch_plan's region), as the Q4_K kernels do.  Measured
 * with the weights streamed from memory (bench_gemm --rows 16384 --na 1,
 * three alternating runs each, loaded machine): the constant distance
 * 0.91-1.12x the file layout's kernel with AVX-512 and 0.85-0.95x with
 * AVX2; the next group 0.84-1.04x and 0.94-1.17x; two groups ahead
 * 0.65-0.71x and 0.80-0.85x. */
#define Q6_DRIVER(name, TGT, TILE, RNMAX, HALVES, BUF)                                                         \
    TGT void name(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, size_t as, int64_t na,       \
                  float *out, int64_t ldo) {                                                                   \
        const int64_t nb = k / EM_QK_K;                                                                        \
        const int64_t panel = panel_rows(as, RNMAX);                                                           \
        for (int64_t p0 = 0; p0 < na; p0 += panel) {                                                           \
            const int64_t p1 = EM_MIN(na, p0 + panel);                                                         \
            for (int64_t j0 = 0; j0 < nw; j0 += Q6_ROWS) {                                                     \
                const uint8_t *grp = (const uint8_t *)w + (size_t)j0 * ws;                                     \
                uintptr_t pfa;                                                                                 \
                size_t pfl, pfs;                                                                               \
                if (HALVES == 1) {                                                                             \
                    if (j0 == 0) em_gemv_prefetch_first(grp, EM_GEMV_PF_BYTES);                                \
                    pfa = (uintptr_t)grp + EM_GEMV_PF_BYTES;                                                   \
                    pfl = (size_t)nb * EM_PACK_Q6K_SB;                                                         \
                    pfs = EM_PACK_Q6K_SB / 16;                                                                 \
                } else {                                                                                       \
                    em_gemv_prefetch_plan(w, ws, j0, Q6_ROWS, &pfa, &pfl);                                     \
                    pfl /= HALVES;                                                                             \
                    pfs = pfa ? (pfl + (size_t)(nb * 16) - 1) / (size_t)(nb * 16) : 0;                         \
                }                                                                                              \
                if (BUF && p1 - p0 > Q6_BUF_MIN) {                                                             \
                    q6_buf_step_avx2(nb, grp, pfa, pfl * HALVES, (const uint8_t *)a, as, p0, p1, out + j0, ldo); \
                    continue;                                                                                  \
                }                                                                                              \
                for (int64_t r0 = p0; r0 < p1; r0 += RNMAX) {                                                  \
                    const int rn = (int)EM_MIN((int64_t)RNMAX, p1 - r0);                                       \
                    const uint8_t *ar = (const uint8_t *)a + (size_t)r0 * as;                                  \
                    for (int hf = 0; hf < HALVES; hf++) {                                                      \
                        const uintptr_t pf = r0 != p0 || !pfa ? 0 : HALVES == 1 ? pfa : pfa + (size_t)hf * pfl; \
                        float *o = out + r0 * ldo + j0 + hf * (Q6_ROWS / HALVES);                              \
                        EM_RN_SWITCH(TILE, RNMAX, rn, hf, nb, grp, ar, as, o, ldo, pf, pfl, pfs);              \
                    }                                                                                          \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
    }

#define TILE512(RN, hf, ...) tile_512(RN, __VA_ARGS__)
Q6_DRIVER(em_gemm_q6_kx16_avx512, T512, TILE512, 8, 1, false)
Q6_DRIVER(em_gemm_q6_kx16_avxvnni, TVNNI, tile_vnni, 4, 2, false)
Q6_DRIVER(q6_rows_avx2, static, tile_avx2, 4, 2, true)

/* ===================================== one activation row, plain AVX2 */

/* The matrix-vector product (one activation row) with plain AVX2.  The
 * tiles go group by group, and the fourth group of a quad rebuilds its
 * levels from the runs the other three read before: with one activation
 * row the compiler kept those 24 runs on the stack instead of loading
 * them again.  Here a quad goes run by run instead (both runs of a pair
 * c, c + 1 for its four groups, summed in int16 as the tiles do: at most
 * 2 * 2 * 63 * 128), so the three runs at c make all four groups' levels
 * in registers, and the scale pair vector that a pair of groups widens
 * for its products also makes the pair's offset term (one vpmaddwd with
 * the bsums pair).  The integer sums are the tiles' (exact; only the
 * order of the int32 additions differs) and the float steps are the
 * same, in the same order, so outputs do not change. */
static __attribute__((noinline)) void gemv_avx2(int64_t nb, const uint8_t *grp, const uint8_t *y0, float *out, uintptr_t pf, size_t pfl,
                                size_t pfs, bool near) {
    const __m256i m63 = _mm256_set1_epi8(63), mc0 = _mm256_set1_epi8((char)0xC0);
    const __m256i dup0 = Q6_DUP(0x01000100), dup1 = Q6_DUP(0x03020302);
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *sb = grp + (size_t)b * EM_PACK_Q6K_SB;
        const uint8_t *y = y0 + (size_t)b * sizeof(em_block_q8_k);
        const __m256 da = _mm256_set1_ps(em_gemv_ldf32(y));
#pragma GCC unroll 2
        for (int hf = 0; hf < 2; hf++) {
            /* The halves broadcast the same activation quads: hidden from
             * the compiler, which otherwise keeps them on the stack. */
            const uint8_t *yq = y;
            __asm__("" : "+r"(yq));
            __m256i T = _mm256_setzero_si256(), M = _mm256_setzero_si256();
#pragma GCC unroll 4
            for (int qd = 0; qd < 4; qd++) {
                __m256i sp[2]; /* scale pairs of groups 4qd, 4qd + 1 and 4qd + 2, 4qd + 3 */
#pragma GCC unroll 2
                for (int h = 0; h < 2; h++) {
                    sp[h] = _mm256_cvtepi8_epi16(
                        _mm_loadu_si128((const __m128i *)(const void *)(sb + EM_Q6KX16_SC + (2 * qd + h) * 32 + 16 * hf)));
                    M = _mm256_add_epi32(M, _mm256_madd_epi16(sp[h], _mm256_set1_epi32(ld32(y + Q8K_BS + 4 * (2 * qd + h)))));
                }
#pragma GCC unroll 2
                for (int c0 = 0; c0 < 4; c0 += 2) {
                    if (near)
                        em_gemv_prefetch_ahead(sb, EM_PACK_Q6K_SB, qd * 4 + hf * 2 + c0 / 2, 16);
                    else if (pf) em_gemv_prefetch_part(pf, pfl, b * 16 + qd * 4 + hf * 2 + c0 / 2, pfs);
                    __m256i P[4];
#pragma GCC unroll 2
                    for (int c = c0; c < c0 + 2; c++) {
                        const __m256i x0 = Q6_LD256(sb, qd, 0, c, hf), x1 = Q6_LD256(sb, qd, 1, c, hf);
                        const __m256i x2 = Q6_LD256(sb, qd, 2, c, hf);
                        const __m256i W[4] = {_mm256_and_si256(x0, m63), _mm256_and_si256(x1, m63),
                                              _mm256_and_si256(x2, m63),
                                              Q6_L3(x0, x1, x2, _mm256_and_si256, Q6_OR256, _mm256_srli_epi16, mc0)};
#pragma GCC unroll 4
                        for (int r = 0; r < 4; r++) {
                            const __m256i q = _mm256_maddubs_epi16(W[r], BC(yq + Q8K_QS + Y_OFF(4 * qd + r, c), 0));
                            P[r] = c == c0 ? q : _mm256_add_epi16(P[r], q);
                        }
                    }
#pragma GCC unroll 4
                    for (int r = 0; r < 4; r++)
                        T = _mm256_add_epi32(T, _mm256_madd_epi16(P[r], _mm256_shuffle_epi8(sp[r / 2], r % 2 ? dup1 : dup0)));
                }
            }
            const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(sb + EM_Q6KX16_D + 16 * hf)));
            const __m256i isum = _mm256_sub_epi32(T, _mm256_slli_epi32(M, 5));
            acc[hf] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(d, da), acc[hf]);
        }
    }
    _mm256_storeu_ps(out, acc[0]);
    _mm256_storeu_ps(out + 8, acc[1]);
}

/* The plain AVX2 entry point: one activation row goes to gemv_avx2 group
 * by group, each prefetching the plan's region for its group
 * (em_gemv_prefetch_plan), a part per group of 16 elements; more rows go
 * to the tiles.  Groups larger than EM_GEMV_PF_NEAR_GROUP (near)
 * prefetch EM_GEMV_PF_BYTES ahead of the super-block instead, a sixteenth
 * of a super-block per part (gemv_common.h). */
void em_gemm_q6_kx16_avx2(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, size_t as, int64_t na,
                          float *out, int64_t ldo) {
    if (na != 1) {
        q6_rows_avx2(k, w, ws, nw, a, as, na, out, ldo);
        return;
    }
    const int64_t nb = k / EM_QK_K;
    /* Wide groups prefetch a constant distance ahead (gemv_common.h). */
    const bool near = (size_t)Q6_ROWS * ws > EM_GEMV_PF_NEAR_GROUP;
    for (int64_t j0 = 0; j0 < nw; j0 += Q6_ROWS) {
        uintptr_t pfa;
        size_t pfl;
        em_gemv_prefetch_plan(w, ws, j0, Q6_ROWS, &pfa, &pfl);
        const size_t pfs = pfa ? (pfl + (size_t)(nb * 16) - 1) / (size_t)(nb * 16) : 0;
        gemv_avx2(nb, (const uint8_t *)w + (size_t)j0 * ws, (const uint8_t *)a, out + j0, pfa, pfl, pfs, near);
    }
}

#endif /* EM_HAVE_X86_GEMM */
