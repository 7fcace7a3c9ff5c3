/*
 * gemv_avx2.c - the AVX2 matrix-vector products (one activation row: the
 * products generation spends its time in, bound by memory bandwidth) of
 * Q4_0, Q8_0, Q4_K, Q6_K, F16, F32 and BF16 weights.  The AVX2
 * entries of gemm_avx2.c call them when na == 1; the register tiles there
 * serve several activation rows.
 *
 * Why not the tiles with one activation row: a tile interleaves the loads
 * of two to four weight rows, which makes as many short streams with
 * their ends in different pages, and it does its per-block activation
 * work (Q4_0's -8 * sum corrections, scale conversions) once per tile
 * instead of once per call.  Here, as in the AVX-512 kernels:
 *   - the rows are read one after another in address order;
 *   - the rows about EM_GEMV_PF_BYTES ahead are prefetched in software,
 *     a part at each step (gemv_common.h), since rows of a few kilobytes
 *     are too short a stream for the hardware prefetchers alone; the float
 *     F16 and BF16 kernels, whose rows are one run of addresses, prefetch
 *     the line EM_GEMV_PF_BYTES ahead at each step (gv_float), F32 does
 *     without;
 *   - what depends on the activation row only is prepared once per call:
 *     for Q4_0 each block's 16-bit -8 * (pair sums) and its scale as a
 *     float, for Q8_0 the scales as floats.  The K-quant kernels read the
 *     Q8_K blocks as they are: their scales are floats already and their
 *     group sums (bsums) are the mins' corrections.
 *
 * Q5_K stays on its tile kernel: a version of the Q4_K kernel here with
 * the fifth bit merged in measured about 10% slower than the two-row tile
 * on the loaded 2-core Zen 5 VM, in L2 and from memory alike.
 *
 * The integer arithmetic is that of the tile kernels and of the scalar
 * reference: every block's (super-block's) integer sum is exact before
 * its one conversion to float, so results differ from em_gemm_generic
 * only in the order of float additions.
 *
 * Compiled with -mavx2 -mfma -mf16c (the *avx2*.c rule of CMakeLists.txt).
 */
#include "quant/gemm.h"

#if defined(EM_HAVE_X86_GEMM)

#include "core/arch/x86/math_avx2.h"
#include "quant/arch/x86/gemv_common.h"
#include "quant/arch/x86/kscales.h"
#include "quant/blocks.h"

#include <immintrin.h>
#include <stddef.h>

#define GV_INLINE static inline __attribute__((always_inline))

/* The kinds of weight row, constants after inlining. */
enum { GV_Q4_0, GV_Q8_0, GV_Q4_K, GV_Q6_K };

/* What one call prepares from its activation row for Q4_0 and Q8_0. */
typedef struct gv_act {
    const __m256i *bias; /* [nb] Q4_0: 16 int16, 8 * (a_2i + a_2i+1); NULL for Q8_0 */
    const float *d;      /* [nb] each activation block's scale as a float         */
} gv_act;

/* Longest row the stack records serve; longer rows take the tiles. */
#define GV_MAX_BLOCKS (EM_GEMV_AVX2_MAX_K / 32)

/* ---------------------------------------------------- Q4_0 and Q8_0 */

/* Block x of a Q4_0 (Q8_0) row times activation block i: the exact
 * integer dot as 8 int32 lanes.  Q4_0: the nibbles (low ones are elements
 * 0-15, high ones 16-31) times a, less the prepared 8 * a; Q8_0: |q|
 * times a carrying q's sign, so that vpmaddubsw's unsigned operand stays
 * at most 128 and its pair sums within int16. */
GV_INLINE __m256i gv_q_dot(const int kind, const uint8_t *x, const uint8_t *y, const __m256i *bias) {
    const __m256i av = _mm256_loadu_si256((const __m256i *)(const void *)(y + offsetof(em_block_q8_0, qs)));
    __m256i p16;
    if (kind == GV_Q4_0) {
        const __m128i q = _mm_loadu_si128((const __m128i *)(const void *)(x + offsetof(em_block_q4_0, qs)));
        const __m256i lv = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(15));
        p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(lv, av), _mm256_load_si256(bias));
    } else {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(x + offsetof(em_block_q8_0, qs)));
        p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(av, q));
    }
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

/* acc += dot(block b) * d_w * d_a. */
#define GV_Q_BLOCK(bb, acc)                                                                               \
    do {                                                                                                  \
        const uint8_t *xb = x + (size_t)(bb) * wbs;                                                       \
        const __m256i s = gv_q_dot(kind, xb, a + (size_t)(bb) * sizeof(em_block_q8_0),                   \
                                   kind == GV_Q4_0 ? act->bias + (bb) : NULL);                            \
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(_cvtsh_ss(em_gemv_ld16(xb)) * act->d[bb]), \
                              acc);                                                                       \
    } while (0)

/* One Q4_0 or Q8_0 row x (nb blocks) with the activation row a: blocks go
 * four at a time (one prefetch step each), into two accumulators so that
 * consecutive multiply-adds do not wait on each other. */
GV_INLINE float gv_q_row(const int kind, int64_t nb, const uint8_t *x, const uint8_t *a, const gv_act *act,
                         uintptr_t pf, size_t pfl, size_t pfs, int64_t step0) {
    const size_t wbs = kind == GV_Q4_0 ? sizeof(em_block_q4_0) : sizeof(em_block_q8_0);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    int64_t b = 0;
    if (pf && nb < 4) em_gemv_prefetch_part(pf, pfl, step0, pfs);
    for (; b + 4 <= nb; b += 4) {
        if (pf) em_gemv_prefetch_part(pf, pfl, step0 + b / 4, pfs);
        GV_Q_BLOCK(b, acc0);
        GV_Q_BLOCK(b + 1, acc1);
        GV_Q_BLOCK(b + 2, acc0);
        GV_Q_BLOCK(b + 3, acc1);
    }
    for (; b < nb; b++) GV_Q_BLOCK(b, acc0);
    return em_hsum8_avx2(_mm256_add_ps(acc0, acc1));
}

/* -------------------------------------------------------- Q4_K, Q6_K */

/* For vpshufb: int16 lane g of each 128-bit half to all eight lanes of
 * that half (lo == hi), or lane lo to the lower half and hi to the upper. */
GV_INLINE __m256i gv_pick16(int lo, int hi) {
    const __m128i l = _mm_set1_epi16((short)((2 * lo + 1) << 8 | 2 * lo));
    const __m128i h = _mm_set1_epi16((short)((2 * hi + 1) << 8 | 2 * hi));
    return _mm256_set_m128i(h, l);
}

/* For vpshufb: int16 lanes a (four times) then b of each 128-bit half's
 * source in the lower half, c then d in the upper half. */
GV_INLINE __m256i gv_pick4(int a, int b, int c, int d) {
    const __m128i l = _mm_setr_epi16((short)((2 * a + 1) << 8 | 2 * a), (short)((2 * a + 1) << 8 | 2 * a),
                                     (short)((2 * a + 1) << 8 | 2 * a), (short)((2 * a + 1) << 8 | 2 * a),
                                     (short)((2 * b + 1) << 8 | 2 * b), (short)((2 * b + 1) << 8 | 2 * b),
                                     (short)((2 * b + 1) << 8 | 2 * b), (short)((2 * b + 1) << 8 | 2 * b));
    const __m128i h = _mm_setr_epi16((short)((2 * c + 1) << 8 | 2 * c), (short)((2 * c + 1) << 8 | 2 * c),
                                     (short)((2 * c + 1) << 8 | 2 * c), (short)((2 * c + 1) << 8 | 2 * c),
                                     (short)((2 * d + 1) << 8 | 2 * d), (short)((2 * d + 1) << 8 | 2 * d),
                                     (short)((2 * d + 1) << 8 | 2 * d), (short)((2 * d + 1) << 8 | 2 * d));
    return _mm256_set_m128i(h, l);
}

/* One Q4_K super-block x with the Q8_K block y: adds the scaled
 * integer sum to acc and the mins' sum to accm, each times its scale. */
GV_INLINE void gv_q4k_block(const uint8_t *x, const uint8_t *y, __m256 *acc, __m256 *accm) {
    const __m256i m4 = _mm256_set1_epi8(15);
    const uint8_t *qs = x + offsetof(em_block_q4_k, qs);
    const uint8_t *yq = y + offsetof(em_block_q8_k, qs);
    uint64_t sc, mn;
    em_q4k_scales8(x + offsetof(em_block_q4_k, scales), &sc, &mn);
    /* The eight scales as int16 in both halves; the mins each in two
     * lanes, to pair with the sixteen bsums. */
    const __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc)));
    const __m128i m8 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mn));
    const __m256i mins16 = _mm256_set_m128i(_mm_unpackhi_epi16(m8, m8), _mm_unpacklo_epi16(m8, m8));
    __m256i s0 = _mm256_setzero_si256(), s1 = s0;
    /* Groups 2j (low nibbles of qs[32j ..]) and 2j + 1 (high nibbles):
     * written out, so that every shift count and pick is a constant. */
#define GV_Q4K_PAIR(j)                                                                                    \
    {                                                                                                     \
        const __m256i raw = _mm256_loadu_si256((const __m256i *)(const void *)(qs + 32 * (j)));          \
        const __m256i l0 = _mm256_and_si256(raw, m4), l1 = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4); \
        const __m256i a0 = _mm256_loadu_si256((const __m256i *)(const void *)(yq + 64 * (j)));           \
        const __m256i a1 = _mm256_loadu_si256((const __m256i *)(const void *)(yq + 64 * (j) + 32));      \
        s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(_mm256_maddubs_epi16(l0, a0),                         \
                                                    _mm256_shuffle_epi8(sc16, gv_pick16(2 * (j), 2 * (j))))); \
        s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(_mm256_maddubs_epi16(l1, a1),                         \
                                                    _mm256_shuffle_epi8(sc16, gv_pick16(2 * (j) + 1, 2 * (j) + 1)))); \
    }
    GV_Q4K_PAIR(0) GV_Q4K_PAIR(1) GV_Q4K_PAIR(2) GV_Q4K_PAIR(3)
#undef GV_Q4K_PAIR
    const __m256i bs = _mm256_loadu_si256((const __m256i *)(const void *)(y + offsetof(em_block_q8_k, bsums)));
    const __m256i ms = _mm256_madd_epi16(mins16, bs);
    const float yd = em_gemv_ldf32(y + offsetof(em_block_q8_k, d));
    const float d = _cvtsh_ss(em_gemv_ld16(x + offsetof(em_block_q4_k, d)));
    const float dmin = _cvtsh_ss(em_gemv_ld16(x + offsetof(em_block_q4_k, dmin)));
    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1)), _mm256_set1_ps(d * yd), *acc);
    *accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ms), _mm256_set1_ps(dmin * yd), *accm);
}

/* One Q6_K super-block x with the Q8_K block y.  Levels are unsigned
 * (0..63); the bias of 32 comes off with the bsums: 32 * scale * bsum. */
GV_INLINE void gv_q6k_block(const uint8_t *x, const uint8_t *y, __m256 *acc) {
    const __m256i m4 = _mm256_set1_epi8(15), m30 = _mm256_set1_epi8(0x30);
    const uint8_t *ql = x + offsetof(em_block_q6_k, ql), *qhp = x + offsetof(em_block_q6_k, qh);
    const uint8_t *yq = y + offsetof(em_block_q8_k, qs);
    const __m256i s16 =
        _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(x + offsetof(em_block_q6_k, scales))));
    /* Scales 0-7 (groups of 32 number 0-3) and 8-15 (4-7) in both halves. */
    const __m256i sca = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(s16));
    const __m256i scb = _mm256_broadcastsi128_si256(_mm256_extracti128_si256(s16, 1));
    __m256i s0 = _mm256_setzero_si256(), s1 = s0;
    /* Group g = 4h + k of 32 elements: low bits nibble k >> 1 of
     * ql[64h + 32(k & 1) ..], high bits 2k..2k+1 of qh[32h ..]; its first
     * 16 elements take scale 2g, the next 16 scale 2g + 1. */
#define GV_Q6K_LEVELS(k, src)                                                                             \
    _mm256_or_si256(_mm256_and_si256((k) >> 1 ? _mm256_srli_epi16(src, 4) : src, m4),                     \
                    _mm256_and_si256((k) == 0   ? _mm256_slli_epi16(qh, 4)                                 \
                                     : (k) == 1 ? _mm256_slli_epi16(qh, 2)                                 \
                                     : (k) == 2 ? qh                                                       \
                                                : _mm256_srli_epi16(qh, 2),                                \
                                     m30))
#define GV_Q6K_PROD(h, k, src)                                                                            \
    _mm256_maddubs_epi16(GV_Q6K_LEVELS(k, src),                                                           \
                         _mm256_loadu_si256((const __m256i *)(const void *)(yq + 32 * (4 * (h) + (k)))))
    /* Groups k and k + 1 of a half share one scale step: vphaddw of their
     * products leaves sums of 4 (|x| <= 4 * 63 * 128 = 32256, within
     * int16), lanes [k's first 16 | k+1's first 16] in the low half and
     * the second 16s in the high half, against scales [2k, 2k+2 | 2k+1,
     * 2k+3] of the half's eight. */
#define GV_Q6K_HALF(h)                                                                                    \
    {                                                                                                     \
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)(qhp + 32 * (h)));          \
        const __m256i q0 = _mm256_loadu_si256((const __m256i *)(const void *)(ql + 64 * (h)));           \
        const __m256i q1 = _mm256_loadu_si256((const __m256i *)(const void *)(ql + 64 * (h) + 32));      \
        const __m256i sc = (h) ? scb : sca;                                                               \
        s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(_mm256_hadd_epi16(GV_Q6K_PROD(h, 0, q0), GV_Q6K_PROD(h, 1, q1)), \
                                                    _mm256_shuffle_epi8(sc, gv_pick4(0, 2, 1, 3))));        \
        s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(_mm256_hadd_epi16(GV_Q6K_PROD(h, 2, q0), GV_Q6K_PROD(h, 3, q1)), \
                                                    _mm256_shuffle_epi8(sc, gv_pick4(4, 6, 5, 7))));        \
    }
    GV_Q6K_HALF(0) GV_Q6K_HALF(1)
#undef GV_Q6K_HALF
#undef GV_Q6K_PROD
#undef GV_Q6K_LEVELS
    const __m256i bs = _mm256_loadu_si256((const __m256i *)(const void *)(y + offsetof(em_block_q8_k, bsums)));
    const __m256i ms = _mm256_madd_epi16(_mm256_slli_epi16(s16, 5), bs);
    const float yd = em_gemv_ldf32(y + offsetof(em_block_q8_k, d));
    const float d = _cvtsh_ss(em_gemv_ld16(x + offsetof(em_block_q6_k, d)));
    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_add_epi32(s0, s1), ms)),
                           _mm256_set1_ps(d * yd), *acc);
}

/* One K-quant row x (nb super-blocks, one prefetch step each). */
GV_INLINE float gv_k_row(const int kind, int64_t nb, const uint8_t *x, const uint8_t *a, uintptr_t pf, size_t pfl,
                         size_t pfs, int64_t step0) {
    const size_t wbs = kind == GV_Q4_K ? sizeof(em_block_q4_k) : sizeof(em_block_q6_k);
    __m256 acc = _mm256_setzero_ps(), accm = acc;
    for (int64_t b = 0; b < nb; b++) {
        if (pf) em_gemv_prefetch_part(pf, pfl, step0 + b, pfs);
        const uint8_t *xb = x + (size_t)b * wbs, *y = a + (size_t)b * sizeof(em_block_q8_k);
        if (kind == GV_Q6_K)
            gv_q6k_block(xb, y, &acc);
        else
            gv_q4k_block(xb, y, &acc, &accm);
    }
    return em_hsum8_avx2(_mm256_sub_ps(acc, accm));
}

/* ------------------------------------------------------ the row loop */

/* Every row of the matrix in address order, in prefetch groups of
 * em_gemv_prefetch_rows rows: the plan is made once per group (its
 * divisions would cost as much as a short row's work if made per row). */
GV_INLINE void gv_rows(const int kind, int64_t k, const uint8_t *w, size_t ws, int64_t nw, const uint8_t *a,
                       const gv_act *act, float *out) {
    if (nw <= 0) return; /* nothing to read: not even the first prefetch */
    const bool kq = kind == GV_Q4_K || kind == GV_Q6_K;
    const int64_t nb = kq ? k / EM_QK_K : k / 32;
    const int64_t steps_row = kq ? EM_MAX(nb, (int64_t)1) : EM_MAX(nb / 4, (int64_t)1);
    const int64_t prm = em_gemv_prefetch_rows(ws);
    em_gemv_prefetch_first(w, (size_t)prm * ws);
    for (int64_t r0 = 0; r0 < nw; r0 += prm) {
        uintptr_t pf;
        size_t pfl;
        em_gemv_prefetch_plan(w, ws, r0, prm, &pf, &pfl);
        const int64_t steps = prm * steps_row;
        const size_t pfs = pf ? (pfl + (size_t)steps - 1) / (size_t)steps : 0;
        const int64_t r1 = EM_MIN(r0 + prm, nw);
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *row = w + (size_t)r * ws;
            const int64_t step0 = (r - r0) * steps_row;
            out[r] = kq ? gv_k_row(kind, nb, row, a, pf, pfl, pfs, step0)
                        : gv_q_row(kind, nb, row, a, act, pf, pfl, pfs, step0);
        }
    }
}

/* ----------------------------------------------------- the entries */

void em_gemv_q4_0_avx2(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, float *out) {
    const int64_t nb = k / 32;
    __m256i bias[GV_MAX_BLOCKS];
    float d[GV_MAX_BLOCKS];
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *y = (const uint8_t *)a + (size_t)b * sizeof(em_block_q8_0);
        const __m256i av = _mm256_loadu_si256((const __m256i *)(const void *)(y + offsetof(em_block_q8_0, qs)));
        /* |8 * (a + a')| <= 2048: exact in 16 bits. */
        bias[b] = _mm256_maddubs_epi16(_mm256_set1_epi8(8), av);
        d[b] = _cvtsh_ss(em_gemv_ld16(y));
    }
    const gv_act act = {bias, d};
    gv_rows(GV_Q4_0, k, w, ws, nw, a, &act, out);
}

void em_gemv_q8_0_avx2(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, float *out) {
    const int64_t nb = k / 32;
    float d[GV_MAX_BLOCKS];
    for (int64_t b = 0; b < nb; b++) d[b] = _cvtsh_ss(em_gemv_ld16((const uint8_t *)a + (size_t)b * sizeof(em_block_q8_0)));
    const gv_act act = {NULL, d};
    gv_rows(GV_Q8_0, k, w, ws, nw, a, &act, out);
}

void em_gemv_q4_k_avx2(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, float *out) {
    gv_rows(GV_Q4_K, k, w, ws, nw, a, NULL, out);
}

void em_gemv_q6_k_avx2(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, float *out) {
    gv_rows(GV_Q6_K, k, w, ws, nw, a, NULL, out);
}

/* ----------------------------------------------------------- floats */

enum { GV_F32, GV_F16, GV_BF16 };

/* Eight weights of a float row as floats. */
GV_INLINE __m256 gv_w8(const int kind, const uint8_t *p) {
    if (kind == GV_F32) return _mm256_loadu_ps((const float *)(const void *)p);
    const __m128i h = _mm_loadu_si128((const __m128i *)(const void *)p);
    if (kind == GV_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

GV_INLINE float gv_w1(const int kind, const uint8_t *p) {
    if (kind == GV_F32) return em_gemv_ldf32(p);
    if (kind == GV_F16) return _cvtsh_ss(em_gemv_ld16(p));
    return em_bf16_to_fp32(em_gemv_ld16(p));
}

/* Each row on its own, 32 elements a step into four accumulators (a
 * multiply-add's latency covers four of them), then 8 at a time, then the
 * k % 8 tail in scalar code.
 *
 * The rows are one run of addresses.  For the 2-byte types (F16, BF16)
 * each 32-element step prefetches the line EM_GEMV_PF_BYTES further on,
 * the distance the quantized kernels look ahead, and the first
 * EM_GEMV_PF_BYTES are asked for at once.  Left to the hardware
 * prefetchers, the AVX2 F16 product streamed at 83-90% of the read test
 * in bench_stream (1.1B shapes, two threads), with the prefetch at
 * 96-103%; BF16 from memory gained 1.1-1.25x (bench_gemm, one row).  F32
 * rows, twice as many lines a step, are left to the hardware: two
 * prefetches a step made them 0.92x (7 alternating pairs).  A prefetch
 * past the last row is harmless (gemv_common.h) and usually the start of
 * the thread's next chunk; the address stays an integer. */
GV_INLINE void gv_float(const int kind, int64_t k, const uint8_t *w, size_t ws, int64_t nw, const float *a,
                        float *out) {
    const size_t es = kind == GV_F32 ? 4 : 2;
    if (nw <= 0) return;
    if (es == 2) em_gemv_prefetch_first(w, EM_MIN((size_t)EM_GEMV_PF_BYTES, (size_t)nw * ws));
    for (int64_t r = 0; r < nw; r++) {
        const uint8_t *row = w + (size_t)r * ws;
        const uintptr_t pf = (uintptr_t)row + EM_GEMV_PF_BYTES;
        __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
        int64_t e = 0;
        for (; e + 32 <= k; e += 32) {
            if (es == 2) _mm_prefetch((const char *)(pf + (size_t)e * es), EM_GEMV_PF_HINT);
            c0 = _mm256_fmadd_ps(gv_w8(kind, row + e * es), _mm256_loadu_ps(a + e), c0);
            c1 = _mm256_fmadd_ps(gv_w8(kind, row + (e + 8) * es), _mm256_loadu_ps(a + e + 8), c1);
            c2 = _mm256_fmadd_ps(gv_w8(kind, row + (e + 16) * es), _mm256_loadu_ps(a + e + 16), c2);
            c3 = _mm256_fmadd_ps(gv_w8(kind, row + (e + 24) * es), _mm256_loadu_ps(a + e + 24), c3);
        }
        for (; e + 8 <= k; e += 8) c0 = _mm256_fmadd_ps(gv_w8(kind, row + e * es), _mm256_loadu_ps(a + e), c0);
        float s = em_hsum8_avx2(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)));
        for (; e < k; e++) s += gv_w1(kind, row + e * es) * a[e];
        out[r] = s;
    }
}

void em_gemv_f32_avx2(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, float *out) {
    gv_float(GV_F32, k, w, ws, nw, a, out);
}

void em_gemv_f16_avx2(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, float *out) {
    gv_float(GV_F16, k, w, ws, nw, a, out);
}

void em_gemv_bf16_avx2(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, float *out) {
    gv_float(GV_BF16, k, w, ws, nw, a, out);
}

#endif /* EM_HAVE_X86_GEMM */
