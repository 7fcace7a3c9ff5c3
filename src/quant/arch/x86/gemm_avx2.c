/*
 * gemm_avx2.c - register-tiled GEMM kernels for x86-64: an AVX2 set
 * (AVX2, FMA, F16C: the flags this file is compiled with) and an AVX-512
 * set (F, BW, VL and VNNI, enabled per function with target
 * attributes), each for F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K and Q6_K
 * weights.  gemm_generic.c calls them only after checking the CPU.  Float
 * weights (F32, F16, BF16) with two or more activation rows are handed on
 * to the converted-panel kernels of gemm_float_avx2.c and
 * gemm_float_avx512.c; their matrix-vector products stay here.
 *
 * Every kernel has the same shape.  The weight rows are taken RM at a
 * time and the activation rows RN at a time; for each block of the row
 * (32 elements, a 256-element super-block, or one vector of floats) the RM
 * weight blocks are loaded and unpacked into registers once and then
 * multiplied with the matching block of each of the RN activation rows,
 * so unpacking and loading cost 1/RN per product and each activation
 * block is loaded once per RM weight rows.  RM x RN float accumulators
 * stay in registers for the whole row; at the end each is summed across
 * its lanes into one output.  The tile functions are written once with RN
 * as a parameter and forced inline into callers that pass constants, so
 * the compiler unrolls them into straight-line code (this is C's version
 * of a template).  Accumulators are named variables (c<i><j>), not
 * arrays: compilers keep named vectors in registers, while an array of
 * them tends to be written back to the stack on every update.  A last
 * partial group of activation rows gets its own smaller instance; a last
 * partial group of weight rows repeats its final row and stores only the
 * real outputs.
 *
 * The driver also blocks the activation rows into panels of about
 * EM_GEMM_PANEL_BYTES, so that a panel stays in the L2 cache while every
 * weight tile of the call passes over it.
 *
 * Integer products.  Quantized blocks are multiplied as integers, exactly
 * as the scalar reference does.  The x86 multiply-add instructions for
 * bytes (vpmaddubsw, vpdpbusd) take one unsigned and one signed operand,
 * so weights are fed as unsigned levels and the bias is taken back out:
 *   Q4_0: levels q in 0..15 mean q - 8, so q.a - 8 * sum(a);
 *   Q8_0: signed q becomes q + 128 (one xor), so q.a + 128 * sum(a) comes
 *         out, and the AVX-512 kernels start each accumulator at
 *         -128 * sum(a) instead of zero (vpdpbusd adds into it);
 *   K-quants: levels are unsigned already; Q6_K's bias of 32 is removed
 *         with the activation's group sums (Q8_K's bsums), as are the
 *         mins of Q4_K and Q5_K.
 * The AVX2 Q8_0 kernel instead moves the weight's sign onto the
 * activation (vpsignb), because vpmaddubsw's 16-bit sums could overflow
 * with levels up to 255.  Group scales of the K-quants are applied with a
 * 16-bit multiply-add (vpmaddwd / vpdpwssd) so each super-block's integer
 * sum is exact before its one conversion to float.
 *
 * The AVX-512 Q8_0/Q4_0 kernels put two weight rows in one 512-bit
 * register (one 32-element block each, in the two 256-bit halves) against
 * the activation block broadcast to both halves; the K-quant kernels put
 * 64 consecutive elements of one row in a register.
 *
 * Matrix-vector products (one activation row: generation) are bound by
 * memory, and on the machines measured the hardware prefetchers alone
 * served the short weight rows poorly, so every kernel prefetches the
 * rows ahead of it linearly (prefetch_plan).  For F32/F16/BF16, Q8_0 and
 * Q4_0 the AVX-512 set also has dedicated matrix-vector kernels that read
 * one row at a time in address order with activation-side work done once
 * per call; the Q4_0 one multiplies the nibbles where they lie (a 16-bit
 * permute gathers four blocks, low and high nibbles meet elements 0-15
 * and 16-31), which halves its instruction count.  The AVX2 set hands
 * every one of its types but Q5_K to such kernels too (gemv_avx2.c) when
 * there is one activation row.
 */
#include "quant/gemm.h"

#if defined(EM_HAVE_X86_GEMM)

#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "gemm_avx2.c must be compiled with -mavx2 -mfma -mf16c"
#endif

#include "quant/arch/x86/gemv_common.h"
#include "core/arch/x86/math_avx2.h"
#include "quant/blocks.h"

#include <immintrin.h>
#include <stddef.h>

#define AI __attribute__((always_inline))
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

/* ------------------------------------------------------------ helpers */

#define ld16 em_gemv_ld16
#define ldf32 em_gemv_ldf32

/* Row pointers of one tile: the rm real rows, then the last one repeated
 * so that a partial tile runs the full-size code. */
static inline void tile_rows(const uint8_t **p, int n, const void *base, size_t stride, int64_t first, int real) {
    for (int i = 0; i < n; i++) p[i] = (const uint8_t *)base + (size_t)(first + (i < real ? i : real - 1)) * stride;
}

/* The twelve bytes of Q4_K/Q5_K group scales as eight 6-bit scales and
 * eight 6-bit mins, one byte each (see blocks.h), with 32-bit word
 * operations instead of eight separate lookups. */
static inline void unpack_k_scales(const uint8_t *s12, uint64_t *sc, uint64_t *mn) {
    uint32_t u0, u1, u2;
    memcpy(&u0, s12, 4);
    memcpy(&u1, s12 + 4, 4);
    memcpy(&u2, s12 + 8, 4);
    const uint32_t lo_sc = u0 & 0x3f3f3f3fu, lo_mn = u1 & 0x3f3f3f3fu;
    const uint32_t hi_sc = (u2 & 0x0f0f0f0fu) | (((u0 >> 6) & 0x03030303u) << 4);
    const uint32_t hi_mn = ((u2 >> 4) & 0x0f0f0f0fu) | (((u1 >> 6) & 0x03030303u) << 4);
    *sc = (uint64_t)lo_sc | (uint64_t)hi_sc << 32;
    *mn = (uint64_t)lo_mn | (uint64_t)hi_mn << 32;
}

/* Weight rows are read RM at a time, each only a few hundred bytes to a
 * few kilobytes long: too short a stream for the hardware prefetchers to
 * ramp up on, which halves the bandwidth of a matrix-vector product.  So
 * while a tile is computed (on its first pass over the activation rows)
 * the next tile's rows, which follow in memory, are prefetched linearly:
 * at block step b of nb, the b-th nb-th of that region. */
#ifndef EM_PF_HINT
#define EM_PF_HINT _MM_HINT_T0
#endif
static inline AI void prefetch_part(const uint8_t *pf, size_t len, int64_t b, size_t step) {
    const size_t lo = (size_t)b * step, hi = EM_MIN(lo + step, len);
    for (size_t o = lo & ~(size_t)63; o < hi; o += 64) _mm_prefetch((const char *)pf + o, EM_PF_HINT);
}

/* The region tile j0 (of rm rows) prefetches: em_gemv_prefetch_plan's
 * (gemv_common.h), the tile EM_GEMV_PF_BYTES or more ahead, so that short
 * tiles (two K-quant rows are only a few kilobytes) still look far enough
 * ahead; NULL for none.  The region may run past the matrix: a prefetch
 * does not fault, and that way a chunk's last rows already fetch the next
 * chunk's first ones.  The matrix-vector kernels group rows by
 * em_gemv_prefetch_rows. */
static inline void prefetch_plan(const void *w, size_t ws, int64_t j0, int64_t rm, const uint8_t **pf, size_t *pfl) {
    uintptr_t at;
    em_gemv_prefetch_plan(w, ws, j0, rm, &at, pfl);
    *pf = (const uint8_t *)at;
}

/* A matrix-vector call starts by asking for its first prefetch group at
 * once: the plan above only looks ahead of the group being computed. */
static inline void prefetch_start(const void *w, size_t len) {
    for (size_t o = 0; o < len; o += 64) _mm_prefetch((const char *)w + o, EM_PF_HINT);
}

/* Bytes of the prefetch region to cover per step so that n_steps steps
 * cover all len bytes; 0 (nothing to prefetch) without a region. */
static inline size_t prefetch_step(const uint8_t *pf, size_t len, int64_t n_steps) {
    return pf && n_steps > 0 ? (len + (size_t)n_steps - 1) / (size_t)n_steps : 0;
}

/* Generates the exported kernel: for each panel of activation rows, for
 * each group of RM weight rows, for each group of RN (<= RNMAX <= 6)
 * activation rows, one call of the TILE instance for that many rows.
 * TILE has the signature (RN, k, wrows[RM], arows[RN], out, ldo, rm, pf,
 * pf_len): pf/pf_len is the region to prefetch (NULL for none).  TGT is
 * the target attribute of the set. */
#define EM_GEMM_PANEL_BYTES (256 * 1024)
#define EM_GEMM_DRIVER(name, TGT, TILE, RM, RNMAX)                                                       \
    TGT void name(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, size_t as, int64_t na, \
                  float *out, int64_t ldo) {                                                             \
        const int64_t fit = as > 0 ? (int64_t)(EM_GEMM_PANEL_BYTES / as) : na;                           \
        const int64_t panel = EM_MAX((int64_t)RNMAX, fit / RNMAX * RNMAX);                               \
        for (int64_t p0 = 0; p0 < na; p0 += panel) {                                                     \
            const int64_t p1 = EM_MIN(na, p0 + panel);                                                   \
            for (int64_t j0 = 0; j0 < nw; j0 += RM) {                                                    \
                const int rm = (int)EM_MIN((int64_t)RM, nw - j0);                                        \
                const uint8_t *wr[RM];                                                                   \
                tile_rows(wr, RM, w, ws, j0, rm);                                                        \
                for (int64_t r0 = p0; r0 < p1; r0 += RNMAX) {                                            \
                    const int rn = (int)EM_MIN((int64_t)RNMAX, p1 - r0);                                 \
                    const uint8_t *ar[RNMAX];                                                            \
                    tile_rows(ar, RNMAX, a, as, r0, rn);                                                 \
                    float *o = out + r0 * ldo + j0;                                                      \
                    const uint8_t *pf = NULL;                                                            \
                    size_t pfl = 0;                                                                      \
                    if (r0 == 0) prefetch_plan(w, ws, j0, RM, &pf, &pfl);                            \
                    if (rn == RNMAX) TILE(RNMAX, k, wr, ar, o, ldo, rm, pf, pfl);                        \
                    else if (RNMAX > 5 && rn == 5) TILE(5, k, wr, ar, o, ldo, rm, pf, pfl);              \
                    else if (RNMAX > 4 && rn == 4) TILE(4, k, wr, ar, o, ldo, rm, pf, pfl);              \
                    else if (RNMAX > 3 && rn == 3) TILE(3, k, wr, ar, o, ldo, rm, pf, pfl);              \
                    else if (RNMAX > 2 && rn == 2) TILE(2, k, wr, ar, o, ldo, rm, pf, pfl);              \
                    else TILE(1, k, wr, ar, o, ldo, rm, pf, pfl);                                        \
                }                                                                                        \
            }                                                                                            \
        }                                                                                                \
    }

/* Expands X(j) for j = 0..5 (FOR_J) or 0..3 (FOR_J4); in a tile, the
 * statements for j >= RN are dead code the compiler removes. */
#define FOR_J(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define FOR_J4(X) X(0) X(1) X(2) X(3)

/* ==================================================================== */
/*                               AVX2 set                               */
/* ==================================================================== */

/* ------------------------------------------------------------ floats */

#define WF32 0
#define WF16 1
#define WBF16 2

/* With one activation row (generation) every AVX2 entry hands the product
 * to its dedicated matrix-vector kernel in gemv_avx2.c, which streams the
 * rows in address order; maxk bounds the rows its stack records serve. */
#define GEMV_ENTRY_AVX2(name, gemv, tiles, maxk)                                                               \
    void name(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, size_t as, int64_t na, float *out, \
              int64_t ldo) {                                                                                   \
        if (na == 1 && k <= (maxk))                                                                            \
            gemv(k, w, ws, nw, a, out);                                                                        \
        else                                                                                                   \
            tiles(k, w, ws, nw, a, as, na, out, ldo);                                                          \
    }
/* Float weights with two or more activation rows go to the converted-
 * panel kernels of gemm_float_avx2.c (each weight converted once per call,
 * and a row's result the same whatever the batch). */
#define FLOAT_ENTRY_AVX2(name, gemv, panels)                                                                   \
    void name(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, size_t as, int64_t na, float *out, \
              int64_t ldo) {                                                                                   \
        if (na == 1)                                                                                           \
            gemv(k, w, ws, nw, a, out);                                                                        \
        else                                                                                                   \
            panels(k, w, ws, nw, a, as, na, out, ldo);                                                         \
    }
FLOAT_ENTRY_AVX2(em_gemm_f32_avx2, em_gemv_f32_avx2, em_gemm_f32_panels_avx2)
FLOAT_ENTRY_AVX2(em_gemm_f16_avx2, em_gemv_f16_avx2, em_gemm_f16_panels_avx2)
FLOAT_ENTRY_AVX2(em_gemm_bf16_avx2, em_gemv_bf16_avx2, em_gemm_bf16_panels_avx2)

/* ------------------------------------------------- Q8_0 and Q4_0 (x Q8_0) */

#define WQ8_0 0
#define WQ4_0 1

/* The 32 levels of weight block x: Q8_0 as stored (signed), Q4_0 as the
 * unsigned nibbles 0..15 in element order. */
static inline AI __m256i q8_levels_avx2(const int kind, const uint8_t *x) {
    if (kind == WQ8_0) return _mm256_loadu_si256((const __m256i *)(const void *)(x + 2));
    const __m128i q = _mm_loadu_si128((const __m128i *)(const void *)(x + 2));
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(15));
}

/* The integer dot of weight levels q with activation quants a as 8 int32
 * lanes.  Q8_0: |q| times a carrying q's sign (vpsignb), so the unsigned
 * operand stays below 128; Q4_0: the nibbles times a, less 8 * a (bias8
 * holds the pairwise sums 8 * (a_2i + a_2i+1)). */
static inline AI __m256i q8_dot_avx2(const int kind, __m256i q, __m256i a, __m256i bias8) {
    __m256i p16;
    if (kind == WQ8_0)
        p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(a, q));
    else
        p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(q, a), bias8);
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

#define Q8A_DECL(j) __m256 c0##j = _mm256_setzero_ps(), c1##j = c0##j, c2##j = c0##j, c3##j = c0##j;
#define Q8A_PAIR(i, j) \
    c##i##j = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q8_dot_avx2(kind, q##i, av, b8)), _mm256_set1_ps(d##i * ad), c##i##j);
#define Q8A_ROW(j)                                                                                \
    if (RN > j) {                                                                                 \
        const uint8_t *y = ar[j] + (size_t)b * sizeof(em_block_q8_0);                             \
        const __m256i av = _mm256_loadu_si256((const __m256i *)(const void *)(y + 2));            \
        const float ad = _cvtsh_ss(ld16(y));                                                      \
        const __m256i b8 = kind == WQ4_0 ? _mm256_maddubs_epi16(_mm256_set1_epi8(8), av) : av;   \
        Q8A_PAIR(0, j) Q8A_PAIR(1, j) Q8A_PAIR(2, j) Q8A_PAIR(3, j)                               \
    }
#define Q8A_STORE(j)                                                                              \
    if (RN > j) {                                                                                 \
        out[j * ldo] = em_hsum8_avx2(c0##j);                                                              \
        if (rm > 1) out[j * ldo + 1] = em_hsum8_avx2(c1##j);                                              \
        if (rm > 2) out[j * ldo + 2] = em_hsum8_avx2(c2##j);                                              \
        if (rm > 3) out[j * ldo + 3] = em_hsum8_avx2(c3##j);                                              \
    }

/* RM = 4 weight rows x RN <= 2 activation rows of 32-element blocks. */
static inline AI void tile_q8_avx2(const int kind, const int RN, int64_t k, const uint8_t *const *wr,
                                   const uint8_t *const *ar, float *out, int64_t ldo, int rm, const uint8_t *pf,
                                   size_t pfl) {
    const size_t wbs = kind == WQ8_0 ? sizeof(em_block_q8_0) : sizeof(em_block_q4_0);
    const int64_t nb = k / 32;
    FOR_J4(Q8A_DECL)
    const size_t pfs = prefetch_step(pf, pfl, nb);
    for (int64_t b = 0; b < nb; b++) {
        prefetch_part(pf, pfl, b, pfs);
        const uint8_t *x0 = wr[0] + (size_t)b * wbs, *x1 = wr[1] + (size_t)b * wbs;
        const uint8_t *x2 = wr[2] + (size_t)b * wbs, *x3 = wr[3] + (size_t)b * wbs;
        const __m256i q0 = q8_levels_avx2(kind, x0), q1 = q8_levels_avx2(kind, x1);
        const __m256i q2 = q8_levels_avx2(kind, x2), q3 = q8_levels_avx2(kind, x3);
        const float d0 = _cvtsh_ss(ld16(x0)), d1 = _cvtsh_ss(ld16(x1));
        const float d2 = _cvtsh_ss(ld16(x2)), d3 = _cvtsh_ss(ld16(x3));
        FOR_J4(Q8A_ROW)
    }
    FOR_J4(Q8A_STORE)
}

#define TILE_Q8_0_AVX2(RN, k, wr, ar, o, ldo, rm, pf, pfl) tile_q8_avx2(WQ8_0, RN, k, wr, ar, o, ldo, rm, pf, pfl)
#define TILE_Q4_0_AVX2(RN, k, wr, ar, o, ldo, rm, pf, pfl) tile_q8_avx2(WQ4_0, RN, k, wr, ar, o, ldo, rm, pf, pfl)
EM_GEMM_DRIVER(q8_0_tiles_avx2, static, TILE_Q8_0_AVX2, 4, 2)
EM_GEMM_DRIVER(q4_0_tiles_avx2, static, TILE_Q4_0_AVX2, 4, 2)
GEMV_ENTRY_AVX2(em_gemm_q8_0_avx2, em_gemv_q8_0_avx2, q8_0_tiles_avx2, EM_GEMV_AVX2_MAX_K)
GEMV_ENTRY_AVX2(em_gemm_q4_0_avx2, em_gemv_q4_0_avx2, q4_0_tiles_avx2, EM_GEMV_AVX2_MAX_K)

/* ------------------------------------------ Q4_K, Q5_K, Q6_K (x Q8_K) */

#define WQ4_K 0
#define WQ5_K 1
#define WQ6_K 2

/* Per super-block state of one weight row for the AVX2 K-quant tile. */
typedef struct kq_row {
    __m256i sc[8];     /* [8] per 32-element step, 16 int16 multipliers: Q4/5_K
                        * the group scale, Q6_K two group scales (8 each) */
    __m256i mins16;    /* 16 int16 paired with bsums: Q4/5_K mins, Q6_K 32 * scale */
    float d, dmin;     /* super-block scales as floats (dmin unused by Q6_K) */
} kq_row;

/* The 32 unsigned levels of elements 32g .. 32g+31 of a K-quant block. */
static inline AI __m256i kq_levels_avx2(const int kind, const uint8_t *x, int g) {
    const __m256i m4 = _mm256_set1_epi8(15);
    if (kind == WQ6_K) {
        /* g = 4h + kk: low bits from ql[64h + 32(kk&1) ..], nibble kk>>1;
         * high bits 2kk..2kk+1 of qh[32h ..]. */
        const int h = g >> 2, kk = g & 3;
        const __m256i ql = _mm256_loadu_si256(
            (const __m256i *)(const void *)(x + offsetof(em_block_q6_k, ql) + 64 * h + 32 * (kk & 1)));
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)(x + offsetof(em_block_q6_k, qh) + 32 * h));
        const __m256i lo = _mm256_and_si256(kk >> 1 ? _mm256_srli_epi16(ql, 4) : ql, m4);
        const __m256i hi = _mm256_and_si256(_mm256_slli_epi16(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * kk)), 4),
                                            _mm256_set1_epi8(0x30));
        return _mm256_or_si256(lo, hi);
    }
    /* Q4_K/Q5_K: group g = 2kk + half is nibble `half` of qs[32kk ..]. */
    const size_t qs_off = kind == WQ4_K ? offsetof(em_block_q4_k, qs) : offsetof(em_block_q5_k, qs);
    const __m256i raw = _mm256_loadu_si256((const __m256i *)(const void *)(x + qs_off + 32 * (g >> 1)));
    __m256i lv = _mm256_and_si256((g & 1) ? _mm256_srli_epi16(raw, 4) : raw, m4);
    if (kind == WQ5_K) {
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)(x + offsetof(em_block_q5_k, qh)));
        /* bit g of each qh byte becomes bit 4 of the level. */
        const __m256i hb = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(g)), _mm256_set1_epi8(1));
        lv = _mm256_or_si256(lv, _mm256_slli_epi16(hb, 4));
    }
    return lv;
}

static inline AI void kq_row_avx2(const int kind, const uint8_t *x, kq_row *r) {
    if (kind == WQ6_K) {
        const int8_t *s8 = (const int8_t *)(x + offsetof(em_block_q6_k, scales));
        for (int g = 0; g < 8; g++)
            r->sc[g] = _mm256_blend_epi32(_mm256_set1_epi16(s8[2 * g]), _mm256_set1_epi16(s8[2 * g + 1]), 0xf0);
        const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)s8));
        r->mins16 = _mm256_slli_epi16(s16, 5); /* 32 * scale: the bias of 32 per level */
        r->d = _cvtsh_ss(ld16(x + offsetof(em_block_q6_k, d)));
        r->dmin = 0;
        return;
    }
    uint64_t sc, mn;
    unpack_k_scales(x + 4, &sc, &mn);
    for (int g = 0; g < 8; g++) r->sc[g] = _mm256_set1_epi16((int16_t)((sc >> (8 * g)) & 0xff));
    const __m128i m8 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mn));
    r->mins16 = _mm256_set_m128i(_mm_unpackhi_epi16(m8, m8), _mm_unpacklo_epi16(m8, m8));
    r->d = _cvtsh_ss(ld16(x));
    r->dmin = _cvtsh_ss(ld16(x + 2));
}

#define KA_DECL(j) __m256 c0##j = _mm256_setzero_ps(), c1##j = c0##j;
#define KA_IDECL(j) __m256i s0##j = _mm256_setzero_si256(), s1##j = s0##j;
#define KA_DOT(j)                                                                                          \
    if (RN > j) {                                                                                          \
        const __m256i av = _mm256_loadu_si256(                                                             \
            (const __m256i *)(const void *)(ar[j] + (size_t)b * sizeof(em_block_q8_k) + offsetof(em_block_q8_k, qs) + 32 * g)); \
        s0##j = _mm256_add_epi32(s0##j, _mm256_madd_epi16(_mm256_maddubs_epi16(l0, av), sc0));            \
        s1##j = _mm256_add_epi32(s1##j, _mm256_madd_epi16(_mm256_maddubs_epi16(l1, av), sc1));            \
    }
#define KA_FOLD1(i, j)                                                                                     \
    {                                                                                                      \
        const __m256i ms = _mm256_madd_epi16(r##i.mins16, bs);                                             \
        if (kind == WQ6_K) {                                                                               \
            c##i##j = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(s##i##j, ms)),                   \
                                      _mm256_set1_ps(r##i.d * yd), c##i##j);                               \
        } else {                                                                                           \
            c##i##j = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s##i##j), _mm256_set1_ps(r##i.d * yd), c##i##j);  \
            c##i##j = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(ms), _mm256_set1_ps(r##i.dmin * yd), c##i##j);   \
        }                                                                                                  \
    }
#define KA_FOLD(j)                                                                                         \
    if (RN > j) {                                                                                          \
        const uint8_t *y = ar[j] + (size_t)b * sizeof(em_block_q8_k);                                      \
        const __m256i bs = _mm256_loadu_si256((const __m256i *)(const void *)(y + offsetof(em_block_q8_k, bsums))); \
        const float yd = ldf32(y);                                                                         \
        KA_FOLD1(0, j) KA_FOLD1(1, j)                                                                      \
    }
#define KA_STORE(j)                                                                                        \
    if (RN > j) {                                                                                          \
        out[j * ldo] = em_hsum8_avx2(c0##j);                                                                       \
        if (rm > 1) out[j * ldo + 1] = em_hsum8_avx2(c1##j);                                                       \
    }

/* RM = 2 weight rows x RN <= 3 activation rows, one 256-element super-block
 * a step, 32 elements (one Q4/5_K group, two Q6_K groups) a sub-step. */
static inline AI void tile_kq_avx2(const int kind, const int RN, int64_t k, const uint8_t *const *wr,
                                   const uint8_t *const *ar, float *out, int64_t ldo, int rm, const uint8_t *pf,
                                   size_t pfl) {
    const size_t wbs = kind == WQ4_K ? sizeof(em_block_q4_k)
                       : kind == WQ5_K ? sizeof(em_block_q5_k) : sizeof(em_block_q6_k);
    const int64_t nb = k / EM_QK_K;
    FOR_J4(KA_DECL)
    const size_t pfs = prefetch_step(pf, pfl, nb);
    for (int64_t b = 0; b < nb; b++) {
        prefetch_part(pf, pfl, b, pfs);
        const uint8_t *x0 = wr[0] + (size_t)b * wbs, *x1 = wr[1] + (size_t)b * wbs;
        kq_row r0, r1;
        kq_row_avx2(kind, x0, &r0);
        kq_row_avx2(kind, x1, &r1);
        FOR_J4(KA_IDECL)
        for (int g = 0; g < 8; g++) {
            const __m256i l0 = kq_levels_avx2(kind, x0, g), l1 = kq_levels_avx2(kind, x1, g);
            const __m256i sc0 = r0.sc[g], sc1 = r1.sc[g];
            FOR_J4(KA_DOT)
        }
        FOR_J4(KA_FOLD)
    }
    FOR_J4(KA_STORE)
}

#define TILE_Q4_K_AVX2(RN, k, wr, ar, o, ldo, rm, pf, pfl) tile_kq_avx2(WQ4_K, RN, k, wr, ar, o, ldo, rm, pf, pfl)
#define TILE_Q5_K_AVX2(RN, k, wr, ar, o, ldo, rm, pf, pfl) tile_kq_avx2(WQ5_K, RN, k, wr, ar, o, ldo, rm, pf, pfl)
#define TILE_Q6_K_AVX2(RN, k, wr, ar, o, ldo, rm, pf, pfl) tile_kq_avx2(WQ6_K, RN, k, wr, ar, o, ldo, rm, pf, pfl)
EM_GEMM_DRIVER(q4_k_tiles_avx2, static, TILE_Q4_K_AVX2, 2, 3)
EM_GEMM_DRIVER(em_gemm_q5_k_avx2, , TILE_Q5_K_AVX2, 2, 3)
EM_GEMM_DRIVER(q6_k_tiles_avx2, static, TILE_Q6_K_AVX2, 2, 3)
GEMV_ENTRY_AVX2(em_gemm_q4_k_avx2, em_gemv_q4_k_avx2, q4_k_tiles_avx2, INT64_MAX)

/* Q6_K with more activation rows than one tile takes.  Its levels cost
 * the most unpacking of the K-quants (two loads, three shifts and three
 * masks per 32 elements), and tile_kq_avx2 repeats that for every group
 * of RN activation rows.  Here the two weight rows of a tile are instead
 * unpacked once per panel into q6k_buf (levels, scale vectors, bias terms
 * and d of all their super-blocks, about 1 KiB per super-block), and the
 * tiles of all the panel's activation rows read them from the L1 cache:
 * the same integer products in the same order as tile_kq_avx2, so the
 * outputs are the same to the bit.  Rows longer than Q6B_MAX super-blocks
 * go to tile_kq_avx2. */
#define Q6B_MAX 24 /* super-blocks per row the buffer holds: k <= 6144 */
#define Q6B_RN 4   /* activation rows per tile */
typedef struct q6k_buf {
    __m256i lv[Q6B_MAX][2][8]; /* [block][row][g] unsigned levels of elements 32g .. 32g+31 */
    __m256i sc[Q6B_MAX][2][8]; /* [block][row][g] int16 group scales, as kq_row.sc        */
    __m256i mins16[Q6B_MAX][2]; /* [block][row] 16 int16: 32 * scale, paired with bsums   */
    float d[Q6B_MAX][2];        /* [block][row] super-block scale                          */
} q6k_buf;

static inline void q6k_unpack_avx2(int64_t nb, const uint8_t *const *wr, q6k_buf *u, const uint8_t *pf, size_t pfl) {
    const size_t pfs = prefetch_step(pf, pfl, nb);
    for (int64_t b = 0; b < nb; b++) {
        prefetch_part(pf, pfl, b, pfs);
        for (int i = 0; i < 2; i++) {
            const uint8_t *x = wr[i] + (size_t)b * sizeof(em_block_q6_k);
            kq_row r;
            kq_row_avx2(WQ6_K, x, &r);
            for (int g = 0; g < 8; g++) {
                u->lv[b][i][g] = kq_levels_avx2(WQ6_K, x, g);
                u->sc[b][i][g] = r.sc[g];
            }
            u->mins16[b][i] = r.mins16;
            u->d[b][i] = r.d;
        }
    }
}

/* RN activation rows times the two unpacked weight rows of u. */
static inline AI void tile_q6b_avx2(const int RN, int64_t nb, const q6k_buf *u, const uint8_t *const *ar, float *out,
                                    int64_t ldo, int rm) {
    const int kind = WQ6_K;
    FOR_J4(KA_DECL)
    for (int64_t b = 0; b < nb; b++) {
        const struct {
            __m256i mins16;
            float d, dmin;
        } r0 = {u->mins16[b][0], u->d[b][0], 0}, r1 = {u->mins16[b][1], u->d[b][1], 0};
        FOR_J4(KA_IDECL)
        for (int g = 0; g < 8; g++) {
            const __m256i l0 = u->lv[b][0][g], l1 = u->lv[b][1][g];
            const __m256i sc0 = u->sc[b][0][g], sc1 = u->sc[b][1][g];
            FOR_J4(KA_DOT)
        }
        FOR_J4(KA_FOLD)
    }
    FOR_J4(KA_STORE)
}

void em_gemm_q6_k_avx2(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, size_t as, int64_t na,
                       float *out, int64_t ldo) {
    const int64_t nb = k / EM_QK_K;
    if (na == 1) {
        em_gemv_q6_k_avx2(k, w, ws, nw, a, out);
        return;
    }
    if (na <= Q6B_RN || nb > Q6B_MAX) {
        q6_k_tiles_avx2(k, w, ws, nw, a, as, na, out, ldo);
        return;
    }
    q6k_buf u;
    const int64_t fit = (int64_t)(EM_GEMM_PANEL_BYTES / as);
    const int64_t panel = EM_MAX((int64_t)Q6B_RN, fit / Q6B_RN * Q6B_RN);
    for (int64_t p0 = 0; p0 < na; p0 += panel) {
        const int64_t p1 = EM_MIN(na, p0 + panel);
        for (int64_t j0 = 0; j0 < nw; j0 += 2) {
            const int rm = (int)EM_MIN((int64_t)2, nw - j0);
            const uint8_t *wr[2], *pf = NULL;
            size_t pfl = 0;
            tile_rows(wr, 2, w, ws, j0, rm);
            prefetch_plan(w, ws, j0, 2, &pf, &pfl);
            q6k_unpack_avx2(nb, wr, &u, pf, pfl);
            for (int64_t r0 = p0; r0 < p1; r0 += Q6B_RN) {
                const int rn = (int)EM_MIN((int64_t)Q6B_RN, p1 - r0);
                const uint8_t *ar[Q6B_RN];
                tile_rows(ar, Q6B_RN, a, as, r0, rn);
                float *o = out + r0 * ldo + j0;
                if (rn == Q6B_RN) tile_q6b_avx2(Q6B_RN, nb, &u, ar, o, ldo, rm);
                else if (rn == 3) tile_q6b_avx2(3, nb, &u, ar, o, ldo, rm);
                else if (rn == 2) tile_q6b_avx2(2, nb, &u, ar, o, ldo, rm);
                else tile_q6b_avx2(1, nb, &u, ar, o, ldo, rm);
            }
        }
    }
}

/* ==================================================================== */
/*                              AVX-512 set                             */
/* ==================================================================== */

/* ------------------------------------------------------------ floats */

static inline AI T512 __m512 load_w16(const int kind, const uint8_t *p, __mmask16 m) {
    if (kind == WF32) return _mm512_maskz_loadu_ps(m, p);
    const __m256i h = _mm256_maskz_loadu_epi16(m, p);
    if (kind == WF16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}


/* Float matrix-vector product (one activation row): each weight row is
 * read on its own, in address order, 64 elements a step into four
 * accumulators.  Unlike the quantized kernels it asks for no software
 * prefetch: with a load per 32 bytes and one multiply-add each, the
 * out-of-order window alone runs far enough ahead to keep the hardware
 * prefetchers streaming, and measured here the explicit prefetches only
 * took the miss buffers those need (49 against 55 GB/s, 2 threads). */
static inline AI T512 void float_gemv_cols(const int kind, int64_t e0, int64_t e1, const uint8_t *w, size_t ws,
                                           int64_t nw, const float *a, float *out, bool add) {
    const size_t es = kind == WF32 ? 4 : 2;
    const int64_t e64 = e0 + ((e1 - e0) & ~(int64_t)63);
    for (int64_t r = 0; r < nw; r++) {
        const uint8_t *row = w + (size_t)r * ws;
        __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
        int64_t e = e0;
        for (; e < e64; e += 64) {
            c0 = _mm512_fmadd_ps(load_w16(kind, row + e * es, 0xffff), _mm512_loadu_ps(a + e), c0);
            c1 = _mm512_fmadd_ps(load_w16(kind, row + (e + 16) * es, 0xffff), _mm512_loadu_ps(a + e + 16), c1);
            c2 = _mm512_fmadd_ps(load_w16(kind, row + (e + 32) * es, 0xffff), _mm512_loadu_ps(a + e + 32), c2);
            c3 = _mm512_fmadd_ps(load_w16(kind, row + (e + 48) * es, 0xffff), _mm512_loadu_ps(a + e + 48), c3);
        }
        for (; e < e1; e += 16) {
            const __mmask16 m = e1 - e >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (e1 - e)) - 1);
            c0 = _mm512_fmadd_ps(load_w16(kind, row + e * es, m), _mm512_maskz_loadu_ps(m, a + e), c0);
        }
        const float v = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)));
        out[r] = add ? out[r] + v : v;
    }
}

static inline AI T512 void float_gemv_512(const int kind, int64_t k, const uint8_t *w, size_t ws, int64_t nw,
                                          const float *a, float *out) {
    float_gemv_cols(kind, 0, k, w, ws, nw, a, out, false);
}

/* As in the AVX2 set, two or more activation rows go to the converted-
 * panel kernels (gemm_float_avx512.c). */
#define FLOAT_GEMV_ENTRY(name, kind, panels)                                                                   \
    T512 void name(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, size_t as, int64_t na,       \
                   float *out, int64_t ldo) {                                                                  \
        if (na == 1)                                                                                           \
            float_gemv_512(kind, k, w, ws, nw, a, out);                                                        \
        else                                                                                                   \
            panels(k, w, ws, nw, a, as, na, out, ldo);                                                         \
    }
FLOAT_GEMV_ENTRY(em_gemm_f32_avx512, WF32, em_gemm_f32_panels_avx512)
FLOAT_GEMV_ENTRY(em_gemm_f16_avx512, WF16, em_gemm_f16_panels_avx512)
FLOAT_GEMV_ENTRY(em_gemm_bf16_avx512, WBF16, em_gemm_bf16_panels_avx512)

/* ------------------------------------------------- Q8_0 and Q4_0 (x Q8_0) */

/* Block b of weight rows x0 (low half) and x1 (high half) as unsigned
 * levels: Q8_0 plus 128, Q4_0 the nibbles. */
static inline AI T512 __m512i q8_pair_levels_512(const int kind, const uint8_t *x0, const uint8_t *x1) {
    if (kind == WQ8_0) {
        const __m512i v = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)(x0 + 2))),
            _mm256_loadu_si256((const __m256i *)(const void *)(x1 + 2)), 1);
        return _mm512_xor_si512(v, _mm512_set1_epi8((char)0x80));
    }
    /* Each row's 16 bytes go to two 128-bit lanes; the second of each pair
     * is shifted by 4 so that masking leaves low nibbles then high ones. */
    const __m512i z = _mm512_mask_blend_epi64(0xf0,
                                              _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)(x0 + 2))),
                                              _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)(x1 + 2))));
    return _mm512_and_si512(_mm512_srlv_epi64(z, _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0)), _mm512_set1_epi8(15));
}

/* The two rows' fp16 scales as 8 + 8 halves, and as 8 + 8 float lanes. */
static inline AI T512 __m256i q8_pair_scales16(const uint8_t *x0, const uint8_t *x1) {
    const __m256i spread = _mm256_set_epi8(3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2,
                                           1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0);
    const uint32_t dd = (uint32_t)ld16(x0) | (uint32_t)ld16(x1) << 16;
    return _mm256_shuffle_epi8(_mm256_set1_epi32((int)dd), spread);
}
static inline AI T512 __m512 q8_pair_scales_512(const uint8_t *x0, const uint8_t *x1) {
    return _mm512_cvtph_ps(q8_pair_scales16(x0, x1));
}

#define Q85_DECL(j) __m512 c0##j = _mm512_setzero_ps(), c1##j = c0##j, c2##j = c0##j, c3##j = c0##j;
#define Q85_PAIR(p, j) \
    c##p##j = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(st, q##p, av)), _mm512_mul_ps(d##p, ad), c##p##j);
#define Q85_ROW(j)                                                                                \
    if (RN > j) {                                                                                 \
        const uint8_t *y = ar[j] + (size_t)b * sizeof(em_block_q8_0);                             \
        const __m512i av = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)(y + 2))); \
        const __m512i st = _mm512_sub_epi32(_mm512_setzero_si512(),                               \
                                            _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, av)); \
        const __m512 ad = _mm512_set1_ps(_cvtsh_ss(ld16(y)));                                     \
        Q85_PAIR(0, j) Q85_PAIR(1, j) Q85_PAIR(2, j) Q85_PAIR(3, j)                               \
    }
#define Q85_HALF(v, h) em_hsum8_avx2(h ? _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)) : _mm512_castps512_ps256(v))
#define Q85_STORE(j)                                                                              \
    if (RN > j) {                                                                                 \
        float *o = out + j * ldo;                                                                 \
        o[0] = Q85_HALF(c0##j, 0);                                                                \
        if (rm > 1) o[1] = Q85_HALF(c0##j, 1);                                                    \
        if (rm > 2) o[2] = Q85_HALF(c1##j, 0);                                                    \
        if (rm > 3) o[3] = Q85_HALF(c1##j, 1);                                                    \
        if (rm > 4) o[4] = Q85_HALF(c2##j, 0);                                                    \
        if (rm > 5) o[5] = Q85_HALF(c2##j, 1);                                                    \
        if (rm > 6) o[6] = Q85_HALF(c3##j, 0);                                                    \
        if (rm > 7) o[7] = Q85_HALF(c3##j, 1);                                                    \
    }

/* RM = 8 weight rows as 4 register pairs x RN <= 4 activation rows.  Pair
 * p holds block b of rows 2p (low half) and 2p+1 (high half) as unsigned
 * bytes; the activation block is broadcast to both halves.  Each int32
 * lane of vpdpbusd starts from -bias * (sum of its 4 activation bytes),
 * which removes the weights' offset exactly. */
static inline AI T512 void tile_q8_512(const int kind, const int RN, int64_t k, const uint8_t *const *wr,
                                       const uint8_t *const *ar, float *out, int64_t ldo, int rm,
                                       const uint8_t *pf, size_t pfl) {
    const size_t wbs = kind == WQ8_0 ? sizeof(em_block_q8_0) : sizeof(em_block_q4_0);
    const int64_t nb = k / 32;
    const __m512i bias = _mm512_set1_epi8(kind == WQ8_0 ? (char)0x80 : 8);
    FOR_J4(Q85_DECL)
    const size_t pfs = prefetch_step(pf, pfl, nb);
    for (int64_t b = 0; b < nb; b++) {
        prefetch_part(pf, pfl, b, pfs);
        const size_t o = (size_t)b * wbs;
        const __m512i q0 = q8_pair_levels_512(kind, wr[0] + o, wr[1] + o);
        const __m512i q1 = q8_pair_levels_512(kind, wr[2] + o, wr[3] + o);
        const __m512i q2 = q8_pair_levels_512(kind, wr[4] + o, wr[5] + o);
        const __m512i q3 = q8_pair_levels_512(kind, wr[6] + o, wr[7] + o);
        const __m512 d0 = q8_pair_scales_512(wr[0] + o, wr[1] + o), d1 = q8_pair_scales_512(wr[2] + o, wr[3] + o);
        const __m512 d2 = q8_pair_scales_512(wr[4] + o, wr[5] + o), d3 = q8_pair_scales_512(wr[6] + o, wr[7] + o);
        FOR_J4(Q85_ROW)
    }
    FOR_J4(Q85_STORE)
}

#define TILE_Q8_0_512(RN, k, wr, ar, o, ldo, rm, pf, pfl) tile_q8_512(WQ8_0, RN, k, wr, ar, o, ldo, rm, pf, pfl)
#define TILE_Q4_0_512(RN, k, wr, ar, o, ldo, rm, pf, pfl) tile_q8_512(WQ4_0, RN, k, wr, ar, o, ldo, rm, pf, pfl)
EM_GEMM_DRIVER(q8_0_tiles_512, static T512, TILE_Q8_0_512, 8, 4)

/* Q8_0 matrix-vector product (one activation row), AVX-512: one weight
 * row at a time in address order, two blocks per register (low and high
 * halves), against activation pairs prepared once per call (q8_gemv_act),
 * with the rows ahead prefetched as in the Q4_0 kernel below. */
typedef struct q8_gemv_act {
    __m512i q;    /* 2 x 32 quants of blocks 2i and 2i+1                  */
    __m256i ns;   /* 2 x 8 int16: -(the 4 quants each lane takes)         */
    __m256i d;    /* 2 x 8 halves: each block's scale                     */
} q8_gemv_act;

#define EM_GEMV_MAX_K 16384 /* longest row the stack records serve */

static T512 void q8_0_gemv_512(int64_t k, const uint8_t *w, size_t ws, int64_t nw, const uint8_t *a, float *out) {
    const int64_t nb = k / 32, np = nb / 2;
    q8_gemv_act act[EM_GEMV_MAX_K / 64];
    const __m512i ones = _mm512_set1_epi8(1);
    for (int64_t i = 0; i < np; i++) {
        const uint8_t *y0 = a + (size_t)(2 * i) * sizeof(em_block_q8_0), *y1 = y0 + sizeof(em_block_q8_0);
        act[i].q = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)(y0 + 2))),
                                      _mm256_loadu_si256((const __m256i *)(const void *)(y1 + 2)), 1);
        /* Kept in 16 bits (|sum| <= 512) to keep the records small: a
         * row of 8192 elements then has 16 KiB of them, not 24. */
        act[i].ns = _mm512_cvtepi32_epi16(
            _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, act[i].q)));
        act[i].d = q8_pair_scales16(y0, y1);
    }
    const int64_t spr = np > 0 ? np : 1; /* prefetch steps per row */
    const int64_t prm = em_gemv_prefetch_rows(ws);
    prefetch_start(w, (size_t)prm * ws);
    for (int64_t r = 0; r < nw; r++) {
        const uint8_t *row = w + (size_t)r * ws;
        const int64_t r0 = r - r % prm;
        const uint8_t *pf;
        size_t pfl;
        prefetch_plan(w, ws, r0, prm, &pf, &pfl);
        const size_t pfs = prefetch_step(pf, pfl, prm * spr);
        __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0;
        for (int64_t i = 0; i < np; i++) {
            const uint8_t *x0 = row + (size_t)(2 * i) * sizeof(em_block_q8_0), *x1 = x0 + sizeof(em_block_q8_0);
            if (pf) prefetch_part(pf, pfl, (r - r0) * spr + i, pfs);
            const __m512i q = q8_pair_levels_512(WQ8_0, x0, x1);
            const __m512i st = _mm512_slli_epi32(_mm512_cvtepi16_epi32(act[i].ns), 7); /* -128 * sum */
            const __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(st, q, act[i].q)),
                                           _mm512_mul_ps(q8_pair_scales_512(x0, x1), _mm512_cvtph_ps(act[i].d)));
            if (i & 1)
                acc1 = _mm512_add_ps(acc1, t);
            else
                acc0 = _mm512_add_ps(acc0, t);
        }
        float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
        if (nb & 1) { /* an odd last block */
            const uint8_t *x = row + (size_t)(nb - 1) * sizeof(em_block_q8_0), *y = a + (size_t)(nb - 1) * sizeof(em_block_q8_0);
            const __m256i av = _mm256_loadu_si256((const __m256i *)(const void *)(y + 2));
            const __m256i dot = q8_dot_avx2(WQ8_0, q8_levels_avx2(WQ8_0, x), av, av);
            sum += em_hsum8_avx2(_mm256_cvtepi32_ps(dot)) * (_cvtsh_ss(ld16(x)) * _cvtsh_ss(ld16(y)));
        }
        out[r] = sum;
    }
}

T512 void em_gemm_q8_0_avx512(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, size_t as, int64_t na,
                              float *out, int64_t ldo) {
    if (na == 1 && k <= EM_GEMV_MAX_K) {
        q8_0_gemv_512(k, w, ws, nw, a, out);
        return;
    }
    q8_0_tiles_512(k, w, ws, nw, a, as, na, out, ldo);
}
EM_GEMM_DRIVER(q4_0_tiles_512, static T512, TILE_Q4_0_512, 8, 4)

/* Q4_0 matrix-vector product (one activation row), AVX-512.
 *
 * With a single activation row there is nothing to share across rows, so
 * this kernel instead reads one weight row after another, in address
 * order, and takes four blocks (72 bytes) at a time: two loads and a
 * 16-bit permute (vpermt2w) gather the four blocks' 64 bytes of nibbles
 * into one register and their four scales into another, and the nibbles
 * are multiplied in place, low ones against elements 0-15 of each
 * activation block and high ones against 16-31 (vpdpbusd twice).  The
 * activation side of that layout (its quants regrouped to match, the
 * -8 * sum corrections and the block scales) is built once per call in
 * q4_gemv_act records on the stack, so the per-row work is ten vector
 * instructions per 128 products. */
typedef struct q4_gemv_act {
    __m512i lo;   /* 4 x 16 quants: elements 0-15 of each of 4 blocks        */
    __m512i hi;   /* 4 x 16 quants: elements 16-31                           */
    __m256i st;   /* 4 x 4 int16: -8 * (the 8 quants each lane multiplies)   */
    __m256i d;    /* 4 x 4 halves: each block's scale                        */
} q4_gemv_act;


static T512 void q4_0_gemv_512(int64_t k, const uint8_t *w, size_t ws, int64_t nw, const uint8_t *a, float *out) {
    const int64_t nb = k / 32, ng = nb / 4;
    q4_gemv_act act[EM_GEMV_MAX_K / 128];
    const __m512i eight = _mm512_set1_epi8(8), m4 = _mm512_set1_epi8(15);
    for (int64_t g = 0; g < ng; g++) {
        const uint8_t *y = a + (size_t)g * 4 * sizeof(em_block_q8_0);
        __m512i lo = _mm512_setzero_si512(), hi = lo;
        uint16_t d[16];
        for (int i = 0; i < 4; i++) {
            const uint8_t *yb = y + i * sizeof(em_block_q8_0);
            lo = _mm512_mask_broadcast_i32x4(lo, (__mmask16)(0xfu << (4 * i)), _mm_loadu_si128((const __m128i *)(const void *)(yb + 2)));
            hi = _mm512_mask_broadcast_i32x4(hi, (__mmask16)(0xfu << (4 * i)), _mm_loadu_si128((const __m128i *)(const void *)(yb + 18)));
            d[4 * i] = d[4 * i + 1] = d[4 * i + 2] = d[4 * i + 3] = ld16(yb);
        }
        act[g].lo = lo;
        act[g].hi = hi;
        /* |-8 * (8 quants)| <= 8192: exact in 16 bits. */
        act[g].st = _mm512_cvtepi32_epi16(_mm512_sub_epi32(
            _mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), eight, lo), eight, hi)));
        act[g].d = _mm256_loadu_si256((const __m256i *)(const void *)d);
    }
    /* Words of 4 blocks (9 words each: scale, then 8 words of nibbles):
     * the nibbles of block i to words 8i..8i+7, and each scale 4 times. */
    const __m512i idx_q = _mm512_set_epi16(35, 34, 33, 32, 31, 30, 29, 28, 26, 25, 24, 23, 22, 21, 20, 19,
                                           17, 16, 15, 14, 13, 12, 11, 10, 8, 7, 6, 5, 4, 3, 2, 1);
    const __m512i idx_d = _mm512_set_epi16(27, 27, 27, 27, 18, 18, 18, 18, 9, 9, 9, 9, 0, 0, 0, 0,
                                           27, 27, 27, 27, 18, 18, 18, 18, 9, 9, 9, 9, 0, 0, 0, 0);
    /* Rows go in groups of 8 (as the tile kernels take them), and while a
     * group is computed one further ahead is prefetched linearly (see
     * prefetch_plan): the hardware prefetchers alone do not keep up with
     * rows this short. */
    const int64_t prm = em_gemv_prefetch_rows(ws);
    prefetch_start(w, (size_t)prm * ws);
    const int64_t spr = ng > 0 ? ng : 1; /* prefetch steps per row */
    for (int64_t r = 0; r < nw; r++) {
        const uint8_t *row = w + (size_t)r * ws;
        const int64_t r0 = r - r % prm;
        const uint8_t *pf;
        size_t pfl;
        prefetch_plan(w, ws, r0, prm, &pf, &pfl);
        const size_t pfs = prefetch_step(pf, pfl, prm * spr);
        __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0;
        int64_t g = 0;
        for (; g < ng; g++) {
            const uint8_t *p = row + (size_t)g * 4 * sizeof(em_block_q4_0);
            if (pf) prefetch_part(pf, pfl, (r - r0) * spr + g, pfs);
            const __m512i x0 = _mm512_loadu_si512(p), x1 = _mm512_maskz_loadu_epi8(0xff, p + 64);
            const __m512i q = _mm512_permutex2var_epi16(x0, idx_q, x1);
            const __m512 dw = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutex2var_epi16(x0, idx_d, x1)));
            __m512i s = _mm512_dpbusd_epi32(_mm512_cvtepi16_epi32(act[g].st), _mm512_and_si512(q, m4), act[g].lo);
            s = _mm512_dpbusd_epi32(s, _mm512_and_si512(_mm512_srli_epi16(q, 4), m4), act[g].hi);
            const __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_cvtph_ps(act[g].d)));
            if (g & 1)
                acc1 = _mm512_add_ps(acc1, t);
            else
                acc0 = _mm512_add_ps(acc0, t);
        }
        float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
        /* Blocks past the last whole group of four, one at a time. */
        for (int64_t b = 4 * ng; b < nb; b++) {
            const uint8_t *x = row + (size_t)b * sizeof(em_block_q4_0), *y = a + (size_t)b * sizeof(em_block_q8_0);
            const __m256i q = q8_levels_avx2(WQ4_0, x);
            const __m256i av = _mm256_loadu_si256((const __m256i *)(const void *)(y + 2));
            const __m256i dot = q8_dot_avx2(WQ4_0, q, av, _mm256_maddubs_epi16(_mm256_set1_epi8(8), av));
            sum += em_hsum8_avx2(_mm256_cvtepi32_ps(dot)) * (_cvtsh_ss(ld16(x)) * _cvtsh_ss(ld16(y)));
        }
        out[r] = sum;
    }
}

T512 void em_gemm_q4_0_avx512(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, size_t as, int64_t na,
                              float *out, int64_t ldo) {
    if (na == 1 && k <= EM_GEMV_MAX_K) {
        q4_0_gemv_512(k, w, ws, nw, a, out);
        return;
    }
    q4_0_tiles_512(k, w, ws, nw, a, as, na, out, ldo);
}

/* ------------------------------------------ Q4_K, Q5_K, Q6_K (x Q8_K) */

/* Per super-block state of one weight row for the AVX-512 K-quant tile. */
typedef struct kq_row512 {
    __m512i sc;      /* group scales as int16 in the low lanes, for vpermw     */
    __m256i mins16;  /* 16 int16 paired with bsums: Q4/5_K mins, Q6_K 32*scale */
    float d, dmin;   /* super-block scales (dmin unused by Q6_K)               */
} kq_row512;

static inline AI T512 kq_row512 kq_row_512(const int kind, const uint8_t *x) {
    kq_row512 r;
    if (kind == WQ6_K) {
        const __m256i s16 =
            _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(x + offsetof(em_block_q6_k, scales))));
        r.sc = _mm512_castsi256_si512(s16);
        r.mins16 = _mm256_slli_epi16(s16, 5);
        r.d = _cvtsh_ss(ld16(x + offsetof(em_block_q6_k, d)));
        r.dmin = 0;
        return r;
    }
    uint64_t sc, mn;
    unpack_k_scales(x + 4, &sc, &mn);
    r.sc = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc)));
    const __m256i pair_idx = _mm256_set_epi16(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    r.mins16 = _mm256_permutexvar_epi16(pair_idx, _mm256_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mn)));
    r.d = _cvtsh_ss(ld16(x));
    r.dmin = _cvtsh_ss(ld16(x + 2));
    return r;
}

/* The 64 unsigned levels of elements 64s .. 64s+63 of a K-quant block. */
static inline AI T512 __m512i kq_levels_512(const int kind, const uint8_t *x, int s) {
    const __m512i m4 = _mm512_set1_epi8(15);
    if (kind == WQ6_K) {
        /* Elements 128h + 64m + (0..63): low bits from ql[64h .. 64h+63],
         * nibble m; high bits 4m..4m+1 (first 32) and 4m+2..4m+3 (last
         * 32) of qh[32h .. 32h+31]. */
        const int h = s >> 1, m = s & 1;
        const __m512i ql = _mm512_loadu_si512(x + offsetof(em_block_q6_k, ql) + 64 * h);
        const __m512i lo = _mm512_and_si512(m ? _mm512_srli_epi16(ql, 4) : ql, m4);
        const __m512i qh = _mm512_broadcast_i64x4(
            _mm256_loadu_si256((const __m256i *)(const void *)(x + offsetof(em_block_q6_k, qh) + 32 * h)));
        const __m512i sh = _mm512_set_epi64(4 * m + 2, 4 * m + 2, 4 * m + 2, 4 * m + 2, 4 * m, 4 * m, 4 * m, 4 * m);
        const __m512i hi = _mm512_and_si512(_mm512_srlv_epi64(qh, sh), _mm512_set1_epi8(3));
        return _mm512_or_si512(lo, _mm512_slli_epi16(hi, 4));
    }
    /* Q4_K/Q5_K: the low nibbles of qs[32s ..] are elements 64s .. 64s+31,
     * the high nibbles the next 32. */
    const size_t qs_off = kind == WQ4_K ? offsetof(em_block_q4_k, qs) : offsetof(em_block_q5_k, qs);
    const __m512i raw = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)(x + qs_off + 32 * s)));
    __m512i lv = _mm512_and_si512(_mm512_srlv_epi64(raw, _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0)), m4);
    if (kind == WQ5_K) {
        /* Bit 2s (first 32 elements) or 2s+1 (last 32) of qh[0..31] is
         * bit 4 of the level. */
        const __m512i qh = _mm512_broadcast_i64x4(
            _mm256_loadu_si256((const __m256i *)(const void *)(x + offsetof(em_block_q5_k, qh))));
        const __m512i sh = _mm512_set_epi64(2 * s + 1, 2 * s + 1, 2 * s + 1, 2 * s + 1, 2 * s, 2 * s, 2 * s, 2 * s);
        const __m512i hb = _mm512_and_si512(_mm512_srlv_epi64(qh, sh), _mm512_set1_epi8(1));
        lv = _mm512_or_si512(lv, _mm512_slli_epi16(hb, 4));
    }
    return lv;
}

/* The int16 multipliers of step s (64 elements): Q4/5_K groups 2s (lanes
 * 0-15) and 2s+1 (lanes 16-31); Q6_K groups 4s .. 4s+3, 8 lanes each. */
static inline AI T512 __m512i kq_scales_512(const int kind, __m512i sc, int s) {
    __m512i idx;
    if (kind == WQ6_K)
        idx = _mm512_add_epi16(_mm512_set1_epi16((short)(4 * s)),
                               _mm512_srli_epi16(_mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18,
                                                                  17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2,
                                                                  1, 0),
                                                 3));
    else
        idx = _mm512_mask_blend_epi16(0xffff0000u, _mm512_set1_epi16((short)(2 * s)),
                                      _mm512_set1_epi16((short)(2 * s + 1)));
    return _mm512_permutexvar_epi16(idx, sc);
}

#define K5_DECL(j) __m512 c0##j = _mm512_setzero_ps(), c1##j = c0##j;
#define K5_IDECL(j) __m512i s0##j = _mm512_setzero_si512(), s1##j = s0##j;
#define K5_DOT(j)                                                                                          \
    if (RN > j) {                                                                                          \
        const __m512i av =                                                                                 \
            _mm512_loadu_si512(ar[j] + (size_t)b * sizeof(em_block_q8_k) + offsetof(em_block_q8_k, qs) + 64 * s); \
        s0##j = _mm512_dpwssd_epi32(s0##j, _mm512_maddubs_epi16(l0, av), sc0);                            \
        s1##j = _mm512_dpwssd_epi32(s1##j, _mm512_maddubs_epi16(l1, av), sc1);                            \
    }
#define K5_FOLD1(i, j)                                                                                     \
    {                                                                                                      \
        const __m512i ms = _mm512_zextsi256_si512(_mm256_madd_epi16(r##i.mins16, bs));                     \
        if (kind == WQ6_K) {                                                                               \
            c##i##j = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(s##i##j, ms)),                   \
                                      _mm512_set1_ps(r##i.d * yd), c##i##j);                               \
        } else {                                                                                           \
            c##i##j = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s##i##j), _mm512_set1_ps(r##i.d * yd), c##i##j);  \
            c##i##j = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(ms), _mm512_set1_ps(r##i.dmin * yd), c##i##j);   \
        }                                                                                                  \
    }
#define K5_FOLD(j)                                                                                         \
    if (RN > j) {                                                                                          \
        const uint8_t *y = ar[j] + (size_t)b * sizeof(em_block_q8_k);                                      \
        const __m256i bs = _mm256_loadu_si256((const __m256i *)(const void *)(y + offsetof(em_block_q8_k, bsums))); \
        const float yd = ldf32(y);                                                                         \
        K5_FOLD1(0, j) K5_FOLD1(1, j)                                                                      \
    }
#define K5_STORE(j)                                                                                        \
    if (RN > j) {                                                                                          \
        out[j * ldo] = _mm512_reduce_add_ps(c0##j);                                                        \
        if (rm > 1) out[j * ldo + 1] = _mm512_reduce_add_ps(c1##j);                                        \
    }

/* RM = 2 weight rows x RN <= 4 activation rows, one super-block a step and
 * 64 elements a sub-step. */
static inline AI T512 void tile_kq_512(const int kind, const int RN, int64_t k, const uint8_t *const *wr,
                                       const uint8_t *const *ar, float *out, int64_t ldo, int rm,
                                       const uint8_t *pf, size_t pfl) {
    const size_t wbs = kind == WQ4_K ? sizeof(em_block_q4_k)
                       : kind == WQ5_K ? sizeof(em_block_q5_k) : sizeof(em_block_q6_k);
    const int64_t nb = k / EM_QK_K;
    FOR_J4(K5_DECL)
    const size_t pfs = prefetch_step(pf, pfl, nb);
    for (int64_t b = 0; b < nb; b++) {
        prefetch_part(pf, pfl, b, pfs);
        const uint8_t *x0 = wr[0] + (size_t)b * wbs, *x1 = wr[1] + (size_t)b * wbs;
        const kq_row512 r0 = kq_row_512(kind, x0), r1 = kq_row_512(kind, x1);
        FOR_J4(K5_IDECL)
        for (int s = 0; s < 4; s++) {
            const __m512i l0 = kq_levels_512(kind, x0, s), l1 = kq_levels_512(kind, x1, s);
            const __m512i sc0 = kq_scales_512(kind, r0.sc, s), sc1 = kq_scales_512(kind, r1.sc, s);
            FOR_J4(K5_DOT)
        }
        FOR_J4(K5_FOLD)
    }
    FOR_J4(K5_STORE)
}

#define TILE_Q4_K_512(RN, k, wr, ar, o, ldo, rm, pf, pfl) tile_kq_512(WQ4_K, RN, k, wr, ar, o, ldo, rm, pf, pfl)
#define TILE_Q5_K_512(RN, k, wr, ar, o, ldo, rm, pf, pfl) tile_kq_512(WQ5_K, RN, k, wr, ar, o, ldo, rm, pf, pfl)
#define TILE_Q6_K_512(RN, k, wr, ar, o, ldo, rm, pf, pfl) tile_kq_512(WQ6_K, RN, k, wr, ar, o, ldo, rm, pf, pfl)
EM_GEMM_DRIVER(q4_k_tiles_512, static T512, TILE_Q4_K_512, 2, 4)
EM_GEMM_DRIVER(q5_k_tiles_512, static T512, TILE_Q5_K_512, 2, 4)
EM_GEMM_DRIVER(q6_k_tiles_512, static T512, TILE_Q6_K_512, 2, 4)

/* With one activation row, Q4_K, Q5_K and Q6_K go to their dedicated
 * matrix-vector kernels (gemv_q4k_avx512.c, gemv_q6k_avx512.c), which
 * stream the rows in address order. */
#define KQ_GEMM_ENTRY(name, gemv, tiles)                                                                       \
    T512 void name(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, size_t as, int64_t na,       \
                   float *out, int64_t ldo) {                                                                  \
        if (na == 1)                                                                                           \
            gemv(k, w, ws, nw, a, out);                                                                        \
        else                                                                                                   \
            tiles(k, w, ws, nw, a, as, na, out, ldo);                                                          \
    }
KQ_GEMM_ENTRY(em_gemm_q4_k_avx512, em_gemv_q4_k_avx512, q4_k_tiles_512)
KQ_GEMM_ENTRY(em_gemm_q5_k_avx512, em_gemv_q5_k_avx512, q5_k_tiles_512)
KQ_GEMM_ENTRY(em_gemm_q6_k_avx512, em_gemv_q6_k_avx512, q6_k_tiles_512)

#endif /* EM_HAVE_X86_GEMM */
