/*
 * gemm_packed_avx2.c - GEMM kernels of the x8 packed layouts (quant/pack.h)
 * of Q4_0 and Q8_0 weights: AVX-512 with VNNI (per function target
 * attributes; the file is compiled for AVX2 like the other *avx2*.c).
 *
 * A tile is the 8 rows of one packed group times RN activation rows.  For
 * each block the group's quants are one contiguous run (128 bytes for Q4_0,
 * 256 for Q8_0) read with full-width loads, and its 8 scales are one
 * 16-byte load, so the weight side of a block costs a few instructions and
 * no gathering, shared by the RN activation rows.
 *
 * Q4_0: a 64-byte load holds 16 bytes of each of 4 rows, one row per
 * 128-bit lane.  Masking gives the levels of elements 0-15 (low nibbles),
 * shifting and masking those of elements 16-31, and vpdpbusd multiplies
 * them with the activation's first and second 16 quants broadcast to
 * every lane: lane 4i..4i+3 of the result are partial sums of row i.
 * Q8_0: a 64-byte load holds 2 rows, one per 256-bit half, made unsigned
 * by adding 128 (xor), against the activation block in both halves.
 *
 * The weights' offsets (8 for Q4_0 levels, 128 for the unsigned Q8_0
 * ones) are taken back out exactly, each int32 lane starting at -offset
 * times the sum of the activation quants it multiplies (act_bias): those
 * are found once per call for every activation row and block, not once
 * per tile.  Each block's integer sums are then converted and multiplied
 * by the two scales into float accumulators, as in the file-layout
 * kernels (gemm_avx2.c); outputs equal the scalar reference up to the
 * order of the float additions.
 */
#include "quant/pack.h"

#if defined(EM_HAVE_X86_GEMM)

#include "quant/arch/x86/gemv_common.h"
#include "quant/blocks.h"

#include <immintrin.h>

#define AI __attribute__((always_inline))
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

/* Int32 entries of the per-call table of activation biases (act_bias),
 * which lives on the stack: 64 KiB. */
#define EM_PACK_BIAS 16384

#define FOR_J(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define FOR_J8(X) FOR_J(X) X(6) X(7)

/* The weights' offsets, removed exactly and lane by lane: each int32 lane
 * of a product starts at -offset * (the sum of the activation quants that
 * lane multiplies), so every lane holds its true partial sum and no lane
 * grows large only to cancel later in float.  For n activation rows
 * (Q8_0, stride as) and each of their nb blocks, lanes entries go to
 * bias[(r * nb + b) * lanes ...]:
 *   lanes 4 (Q4_0): lane l multiplies elements 4l..4l+3 and 16+4l..16+4l+3,
 *                   offset 8;
 *   lanes 8 (Q8_0): lane l multiplies elements 4l..4l+3, offset 128. */
static void act_bias(int lanes, int64_t nb, const uint8_t *a, size_t as, int64_t n, int32_t *bias) {
    const __m256i ones = _mm256_set1_epi8(1);
    for (int64_t r = 0; r < n; r++)
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *y = a + (size_t)r * as + (size_t)b * sizeof(em_block_q8_0);
            const __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(y + 2));
            const __m256i quad = _mm256_madd_epi16(_mm256_maddubs_epi16(ones, q), _mm256_set1_epi16(1));
            int32_t *o = bias + (r * nb + b) * lanes;
            if (lanes == 8) {
                _mm256_storeu_si256((__m256i *)(void *)o, _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(quad, 7)));
            } else {
                const __m128i s = _mm_add_epi32(_mm256_castsi256_si128(quad), _mm256_extracti128_si256(quad, 1));
                _mm_storeu_si128((__m128i *)(void *)o, _mm_sub_epi32(_mm_setzero_si128(), _mm_slli_epi32(s, 3)));
            }
        }
}

/* Rows per panel of activation rows: as many as fill about 256 KiB (they
 * stay in L2 while the call's groups pass over them) and whose biases fit
 * EM_PACK_BIAS, in whole tiles of rn_max (EM_PACK_MAX_K keeps one tile's
 * biases within the table). */
static int64_t panel_rows(int64_t nb, size_t as, int64_t rn_max, int lanes) {
    int64_t fit = (int64_t)((256 * 1024) / as);
    if (lanes > 0 && fit > EM_PACK_BIAS / (nb * lanes)) fit = EM_PACK_BIAS / (nb * lanes);
    fit = fit / rn_max * rn_max;
    return fit < rn_max ? rn_max : fit;
}

/* ---------------------------------------------------------------- Q4_0 */

#define P4_DECL(j) __m512 c0##j = _mm512_setzero_ps(), c1##j = c0##j;
#define P4_ROW(j)                                                                                           \
    if (RN > j) {                                                                                           \
        const uint8_t *y = ar + (size_t)j * as + (size_t)b * sizeof(em_block_q8_0);                         \
        const __m512i alo = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)(y + 2)));  \
        const __m512i ahi = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)(y + 18))); \
        const __m512i st = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)(bias + (j * nb + b) * 4))); \
        const __m512 ad = _mm512_set1_ps(_cvtsh_ss(em_gemv_ld16(y)));                                        \
        const __m512i s0 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(st, l0, alo), h0, ahi);                  \
        const __m512i s1 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(st, l1, alo), h1, ahi);                  \
        c0##j = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0), _mm512_mul_ps(dw0, ad), c0##j);                    \
        c1##j = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1), _mm512_mul_ps(dw1, ad), c1##j);                    \
    }
/* Row i's four lanes summed (c0 holds rows 0-3, c1 rows 4-7). */
#define P4_STORE(j)                                                                                         \
    if (RN > j) {                                                                                           \
        float t[32];                                                                                        \
        _mm512_storeu_ps(t, c0##j);                                                                         \
        _mm512_storeu_ps(t + 16, c1##j);                                                                    \
        for (int i = 0; i < 8; i++) out[j * ldo + i] = ((t[4 * i] + t[4 * i + 1]) + t[4 * i + 2]) + t[4 * i + 3]; \
    }

/* One group (8 rows of nb blocks at grp) times RN <= 8 activation rows at
 * ar (stride as) with their lane biases (bias[(j * nb + b) * 4 ..]). */
static inline AI T512 void tile_q4x8_512(const int RN, int64_t nb, const uint8_t *grp, const uint8_t *ar, size_t as,
                                         const int32_t *bias, float *out, int64_t ldo, uintptr_t pf,
                                         size_t pfl, size_t pfs) {
    const __m512i m4 = _mm512_set1_epi8(15);
    const __m512i di0 = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    const __m512i di1 = _mm512_add_epi32(di0, _mm512_set1_epi32(4));
    FOR_J8(P4_DECL)
    em_x8_at at = em_x8_first((uintptr_t)grp, nb);
    for (int64_t b = 0; b < nb; b++, em_x8_next(&at, nb, b, 16)) {
        if (pf) em_gemv_prefetch_part(pf, pfl, b, pfs);
        const __m512i x0 = _mm512_loadu_si512((const uint8_t *)at.q), x1 = _mm512_loadu_si512((const uint8_t *)at.q + 64);
        const __m512i l0 = _mm512_and_si512(x0, m4), h0 = _mm512_and_si512(_mm512_srli_epi16(x0, 4), m4);
        const __m512i l1 = _mm512_and_si512(x1, m4), h1 = _mm512_and_si512(_mm512_srli_epi16(x1, 4), m4);
        const __m512 d8 = _mm512_castps256_ps512(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)at.d)));
        const __m512 dw0 = _mm512_permutexvar_ps(di0, d8), dw1 = _mm512_permutexvar_ps(di1, d8);
        FOR_J8(P4_ROW)
    }
    FOR_J8(P4_STORE)
}

/* ---------------------------------------------------------------- Q8_0 */

#define P8_DECL(j) __m512 c0##j = _mm512_setzero_ps(), c1##j = c0##j, c2##j = c0##j, c3##j = c0##j;
#define P8_PAIR(p, j) c##p##j = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(st, q##p, av)), _mm512_mul_ps(dw##p, ad), c##p##j);
#define P8_ROW(j)                                                                                           \
    if (RN > j && RN <= 4) {                                                                                \
        const uint8_t *y = ar + (size_t)j * as + (size_t)b * sizeof(em_block_q8_0);                         \
        const __m512i av = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)(y + 2))); \
        const __m512i st = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)(bias + (j * nb + b) * 8))); \
        const __m512 ad = _mm512_set1_ps(_cvtsh_ss(em_gemv_ld16(y)));                                        \
        P8_PAIR(0, j) P8_PAIR(1, j) P8_PAIR(2, j) P8_PAIR(3, j)                                             \
    }
/* Row 2p + h is half h of accumulator p: eight lanes summed. */
#define P8_STORE(j)                                                                                         \
    if (RN > j && RN <= 4) {                                                                                \
        float t[64];                                                                                        \
        _mm512_storeu_ps(t, c0##j);                                                                         \
        _mm512_storeu_ps(t + 16, c1##j);                                                                    \
        _mm512_storeu_ps(t + 32, c2##j);                                                                    \
        _mm512_storeu_ps(t + 48, c3##j);                                                                    \
        for (int i = 0; i < 8; i++) {                                                                       \
            const float *u = t + 8 * i;                                                                     \
            out[j * ldo + i] = ((u[0] + u[1]) + (u[2] + u[3])) + ((u[4] + u[5]) + (u[6] + u[7]));           \
        }                                                                                                   \
    }

/* One group times RN <= 4 activation rows, as tile_q4x8_512. */
static inline AI T512 void tile_q8x8_512(const int RN, int64_t nb, const uint8_t *grp, const uint8_t *ar, size_t as,
                                         const int32_t *bias, float *out, int64_t ldo, uintptr_t pf,
                                         size_t pfl, size_t pfs) {
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    const __m512i di = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i two = _mm512_set1_epi32(2);
    FOR_J(P8_DECL)
    em_x8_at at = em_x8_first((uintptr_t)grp, nb);
    for (int64_t b = 0; b < nb; b++, em_x8_next(&at, nb, b, 32)) {
        if (pf) em_gemv_prefetch_part(pf, pfl, b, pfs);
        const uint8_t *x = (const uint8_t *)at.q;
        const __m512i q0 = _mm512_xor_si512(_mm512_loadu_si512(x), flip);
        const __m512i q1 = _mm512_xor_si512(_mm512_loadu_si512(x + 64), flip);
        const __m512i q2 = _mm512_xor_si512(_mm512_loadu_si512(x + 128), flip);
        const __m512i q3 = _mm512_xor_si512(_mm512_loadu_si512(x + 192), flip);
        const __m512 d8 = _mm512_castps256_ps512(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)at.d)));
        const __m512 dw0 = _mm512_permutexvar_ps(di, d8);
        const __m512 dw1 = _mm512_permutexvar_ps(_mm512_add_epi32(di, two), d8);
        const __m512 dw2 = _mm512_permutexvar_ps(_mm512_add_epi32(di, _mm512_add_epi32(two, two)), d8);
        const __m512 dw3 = _mm512_permutexvar_ps(_mm512_add_epi32(di, _mm512_set1_epi32(6)), d8);
        FOR_J(P8_ROW)
    }
    FOR_J(P8_STORE)
}

/* ------------------------------------------------------------- drivers */

/* For each panel of activation rows (their lane biases found first), each
 * group of the call, each RNMAX activation rows: one tile.  The first
 * pass of a group over the activation rows prefetches the group after
 * next (em_gemv_prefetch_plan's region, as the file-layout kernels do):
 * a group holds the bytes of 8 file rows, so the same plan applies. */
#define PACKED_DRIVER(name, TGT, TILE, RNMAX, LANES)                                                           \
    TGT void name(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, size_t as, int64_t na,       \
                   float *out, int64_t ldo) {                                                                  \
        const int64_t nb = k / 32;                                                                             \
        int32_t bias[EM_PACK_BIAS];                                                                            \
        const int64_t panel = panel_rows(nb, as, RNMAX, LANES);                                                \
        for (int64_t p0 = 0; p0 < na; p0 += panel) {                                                           \
            const int64_t p1 = EM_MIN(na, p0 + panel);                                                         \
            if (LANES) act_bias(LANES, nb, (const uint8_t *)a + (size_t)p0 * as, as, p1 - p0, bias);            \
            for (int64_t j0 = 0; j0 < nw; j0 += EM_PACK_ROWS) {                                                \
                const uint8_t *grp = (const uint8_t *)w + (size_t)j0 * ws;                                     \
                uintptr_t pfa;                                                                                 \
                size_t pfl;                                                                                    \
                em_gemv_prefetch_plan(w, ws, j0, EM_PACK_ROWS, &pfa, &pfl);                                   \
                const size_t pfs = pfa ? (pfl + (size_t)nb - 1) / (size_t)nb : 0;                             \
                for (int64_t r0 = p0; r0 < p1; r0 += RNMAX) {                                                  \
                    const int rn = (int)EM_MIN((int64_t)RNMAX, p1 - r0);                                       \
                    const uint8_t *ar = (const uint8_t *)a + (size_t)r0 * as;                                  \
                    const int32_t *sm = bias + (r0 - p0) * nb * LANES;                                         \
                    const uintptr_t pf = r0 == p0 ? pfa : 0;                                                    \
                    float *o = out + r0 * ldo + j0;                                                            \
                    if (rn == RNMAX) TILE(RNMAX, nb, grp, ar, as, sm, o, ldo, pf, pfl, pfs);                        \
                    else if (RNMAX > 7 && rn == 7) TILE(7, nb, grp, ar, as, sm, o, ldo, pf, pfl, pfs);              \
                    else if (RNMAX > 6 && rn == 6) TILE(6, nb, grp, ar, as, sm, o, ldo, pf, pfl, pfs);              \
                    else if (RNMAX > 5 && rn == 5) TILE(5, nb, grp, ar, as, sm, o, ldo, pf, pfl, pfs);              \
                    else if (RNMAX > 4 && rn == 4) TILE(4, nb, grp, ar, as, sm, o, ldo, pf, pfl, pfs);              \
                    else if (RNMAX > 3 && rn == 3) TILE(3, nb, grp, ar, as, sm, o, ldo, pf, pfl, pfs);              \
                    else if (RNMAX > 2 && rn == 2) TILE(2, nb, grp, ar, as, sm, o, ldo, pf, pfl, pfs);              \
                    else TILE(1, nb, grp, ar, as, sm, o, ldo, pf, pfl, pfs);                                        \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
    }

PACKED_DRIVER(em_gemm_q4_0x8_avx512, T512, tile_q4x8_512, 8, 4)
PACKED_DRIVER(em_gemm_q8_0x8_avx512, T512, tile_q8x8_512, 4, 8)

/* ===================================================== 256-bit kernels */

/* The same tiles in 256-bit registers, for AVX2 machines: a 32-byte load
 * holds two rows (one per 128-bit lane) of Q4_0's nibbles, or one row of
 * Q8_0's quants.  The byte products go through DP: vpdpbusd with
 * AVX-VNNI (the VEX form, which recent Intel client chips have without
 * AVX-512), or vpmaddubsw, vpmaddwd and an add with plain AVX2.  Q8_0
 * moves each weight's sign onto the activation (vpsignb) instead of
 * adding 128, since vpmaddubsw's 16-bit pair sums could overflow with
 * unsigned levels up to 255; activation quants are in -127..127 (the
 * quantizer's range), so |a| never wraps. */
#define TVNNI __attribute__((target("avx2,fma,f16c,avxvnni")))
#define DP_VNNI(acc, u, s) _mm256_dpbusd_avx_epi32(acc, u, s)
#define DP_AVX2(acc, u, s) _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)))

/* Scale vector of rows r0 (lanes 0-3 or 0-7) and r1 from the 8 scales. */
#define SCALE_IDX(r0, r1, n) _mm256_setr_epi32(r0, r0, r0, r0, (n) == 4 ? r1 : r0, (n) == 4 ? r1 : r0, (n) == 4 ? r1 : r0, (n) == 4 ? r1 : r0)

/* Q4_0: pair p (rows 2p, 2p+1) of a block, against one activation row. */
#define Q4_256_TILE(fname, TGT, DP)                                                                            \
    static inline AI TGT void fname(const int RN, int64_t nb, const uint8_t *grp, const uint8_t *ar, size_t as, \
                                    const int32_t *bias, float *out, int64_t ldo, uintptr_t pf, size_t pfl,     \
                                    size_t pfs) {                                                              \
        const __m256i m4 = _mm256_set1_epi8(15);                                                               \
        __m256 c[2][4];                                                                                        \
        for (int j = 0; j < RN; j++)                                                                           \
            for (int p = 0; p < 4; p++) c[j][p] = _mm256_setzero_ps();                                         \
        em_x8_at at = em_x8_first((uintptr_t)grp, nb);                                                         \
        for (int64_t b = 0; b < nb; b++, em_x8_next(&at, nb, b, 16)) {                                         \
            if (pf) em_gemv_prefetch_part(pf, pfl, b, pfs);                                                    \
            const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)at.d));                   \
            for (int p = 0; p < 4; p++) {                                                                      \
                const __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)((const uint8_t *)at.q + 32 * p));    \
                const __m256i l = _mm256_and_si256(x, m4), h = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4);   \
                const __m256 dw = _mm256_permutevar8x32_ps(d8, SCALE_IDX(2 * p, 2 * p + 1, 4));                 \
                for (int j = 0; j < RN; j++) {                                                                 \
                    const uint8_t *y = ar + (size_t)j * as + (size_t)b * sizeof(em_block_q8_0);                 \
                    const __m256i alo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(y + 2))); \
                    const __m256i ahi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(y + 18))); \
                    const __m256i st = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(bias + (j * nb + b) * 4))); \
                    const __m256i sv = DP(DP(st, l, alo), h, ahi);                                              \
                    const __m256 ad = _mm256_set1_ps(_cvtsh_ss(em_gemv_ld16(y)));                               \
                    c[j][p] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sv), _mm256_mul_ps(dw, ad), c[j][p]);          \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
        for (int j = 0; j < RN; j++)                                                                           \
            for (int p = 0; p < 4; p++) {                                                                      \
                float t[8];                                                                                    \
                _mm256_storeu_ps(t, c[j][p]);                                                                  \
                out[j * ldo + 2 * p] = ((t[0] + t[1]) + t[2]) + t[3];                                          \
                out[j * ldo + 2 * p + 1] = ((t[4] + t[5]) + t[6]) + t[7];                                      \
            }                                                                                                  \
    }

/* Q8_0: row i of a block, against one activation row. */
#define Q8_256_TILE(fname, TGT, DP)                                                                            \
    static inline AI TGT void fname(const int RN, int64_t nb, const uint8_t *grp, const uint8_t *ar, size_t as, \
                                    const int32_t *bias, float *out, int64_t ldo, uintptr_t pf, size_t pfl,     \
                                    size_t pfs) {                                                              \
        (void)bias;                                                                                            \
        __m256 c[2][8];                                                                                        \
        for (int j = 0; j < RN; j++)                                                                           \
            for (int i = 0; i < 8; i++) c[j][i] = _mm256_setzero_ps();                                         \
        em_x8_at at = em_x8_first((uintptr_t)grp, nb);                                                         \
        for (int64_t b = 0; b < nb; b++, em_x8_next(&at, nb, b, 32)) {                                         \
            if (pf) em_gemv_prefetch_part(pf, pfl, b, pfs);                                                    \
            const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)at.d));                   \
            for (int i = 0; i < 8; i++) {                                                                      \
                const __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)((const uint8_t *)at.q + 32 * i));    \
                const __m256i u = _mm256_sign_epi8(q, q);                                                      \
                const __m256 dw = _mm256_permutevar8x32_ps(d8, _mm256_set1_epi32(i));                          \
                for (int j = 0; j < RN; j++) {                                                                 \
                    const uint8_t *y = ar + (size_t)j * as + (size_t)b * sizeof(em_block_q8_0);                 \
                    const __m256i av = _mm256_loadu_si256((const __m256i *)(const void *)(y + 2));              \
                    const __m256i sv = DP(_mm256_setzero_si256(), u, _mm256_sign_epi8(av, q));                  \
                    const __m256 ad = _mm256_set1_ps(_cvtsh_ss(em_gemv_ld16(y)));                               \
                    c[j][i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sv), _mm256_mul_ps(dw, ad), c[j][i]);          \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
        for (int j = 0; j < RN; j++)                                                                           \
            for (int i = 0; i < 8; i++) {                                                                      \
                float t[8];                                                                                    \
                _mm256_storeu_ps(t, c[j][i]);                                                                  \
                out[j * ldo + i] = ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));           \
            }                                                                                                  \
    }

Q4_256_TILE(tile_q4x8_vnni, TVNNI, DP_VNNI)
Q8_256_TILE(tile_q8x8_vnni, TVNNI, DP_VNNI)
Q4_256_TILE(tile_q4x8_avx2, , DP_AVX2)
Q8_256_TILE(tile_q8x8_avx2, , DP_AVX2)
PACKED_DRIVER(em_gemm_q4_0x8_avxvnni, TVNNI, tile_q4x8_vnni, 2, 4)
PACKED_DRIVER(em_gemm_q8_0x8_avxvnni, TVNNI, tile_q8x8_vnni, 2, 0)
PACKED_DRIVER(em_gemm_q4_0x8_avx2, , tile_q4x8_avx2, 2, 4)
PACKED_DRIVER(em_gemm_q8_0x8_avx2, , tile_q8x8_avx2, 2, 0)

#endif /* EM_HAVE_X86_GEMM */
