/*
 * gemm_avx2.c - register-tiled GEMM kernels for x86-64: an AVX2 set
 * (AVX2, FMA, F16C: the flags this file is compiled with) and an AVX-512
 * set (F, BW, VL, DQ and VNNI, enabled per function with target
 * attributes), each for F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K and Q6_K
 * weights.  gemm_generic.c calls them only after checking the CPU.
 *
 * Every kernel has the same shape.  The weight rows are taken RM at a
 * time and the activation rows RN at a time; for each block of the row
 * (32 elements, a 256-element super-block, or one vector of floats) the RM
 * weight blocks are loaded and unpacked into registers once and then
 * multiplied with the matching block of each of the RN activation rows,
 * so unpacking and loading cost 1/RN per product and each activation
 * block is loaded once per RM weight rows.  RM x RN float accumulators
 * stay in registers for the whole row; at the end each is summed across
 * its lanes into one output.  The tile functions are written once with RM
 * and RN as parameters and forced inline into callers that pass
 * constants, so the compiler unrolls them into straight-line code (this
 * is C's version of a template).  A last partial group of activation rows
 * gets its own smaller instance; a last partial group of weight rows
 * repeats its final row and stores only the real outputs.
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
 */
#include "quant/gemm.h"

#if defined(EM_HAVE_X86_GEMM)

#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "gemm_avx2.c must be compiled with -mavx2 -mfma -mf16c"
#endif

#include "quant/blocks.h"

#include <immintrin.h>
#include <stddef.h>

#define AI __attribute__((always_inline))
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))

/* ------------------------------------------------------------ helpers */

static inline uint16_t ld16(const void *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static inline float ldf32(const void *p) {
    float v;
    memcpy(&v, p, 4);
    return v;
}

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

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

/* Generates the exported kernel: loops over RM x RN tiles and calls the
 * instance of TILE for the number of activation rows left (1..RNMAX <= 6).
 * TILE has the signature (RN, k, wrows[RM], arows[RN], out, ldo, rm);
 * TGT is the target attribute of the set. */
#define EM_GEMM_DRIVER(name, TGT, TILE, RM, RNMAX)                                                       \
    TGT void name(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, size_t as, int64_t na, \
                  float *out, int64_t ldo) {                                                             \
        for (int64_t j0 = 0; j0 < nw; j0 += RM) {                                                        \
            const int rm = (int)EM_MIN((int64_t)RM, nw - j0);                                            \
            const uint8_t *wr[RM];                                                                       \
            tile_rows(wr, RM, w, ws, j0, rm);                                                            \
            for (int64_t r0 = 0; r0 < na; r0 += RNMAX) {                                                 \
                const int rn = (int)EM_MIN((int64_t)RNMAX, na - r0);                                     \
                const uint8_t *ar[RNMAX];                                                                \
                tile_rows(ar, RNMAX, a, as, r0, rn);                                                     \
                float *o = out + r0 * ldo + j0;                                                          \
                if (rn == RNMAX) TILE(RNMAX, k, wr, ar, o, ldo, rm);                                     \
                else if (RNMAX > 5 && rn == 5) TILE(5, k, wr, ar, o, ldo, rm);                           \
                else if (RNMAX > 4 && rn == 4) TILE(4, k, wr, ar, o, ldo, rm);                           \
                else if (RNMAX > 3 && rn == 3) TILE(3, k, wr, ar, o, ldo, rm);                           \
                else if (RNMAX > 2 && rn == 2) TILE(2, k, wr, ar, o, ldo, rm);                           \
                else TILE(1, k, wr, ar, o, ldo, rm);                                                     \
            }                                                                                            \
        }                                                                                                \
    }

/* ==================================================================== */
/*                               AVX2 set                               */
/* ==================================================================== */

/* ------------------------------------------------------------ floats */

/* Loads 8 weights of a float row as floats: F32, F16 or BF16. */
#define WF32 0
#define WF16 1
#define WBF16 2

static inline AI __m256 load_w8(const int kind, const uint8_t *p) {
    if (kind == WF32) return _mm256_loadu_ps((const float *)(const void *)p);
    const __m128i h = _mm_loadu_si128((const __m128i *)(const void *)p);
    if (kind == WF16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static inline float w_scalar(const int kind, const uint8_t *row, int64_t i) {
    if (kind == WF32) return ldf32(row + 4 * i);
    if (kind == WF16) return _cvtsh_ss(ld16(row + 2 * i));
    return em_bf16_to_fp32(ld16(row + 2 * i));
}

/* RM = 4 weight rows x RN activation rows of floats, 8 elements a step;
 * the k % 8 tail is added in scalar code. */
static inline AI void tile_float_avx2(const int kind, const int RN, int64_t k, const uint8_t *const *wr,
                                      const uint8_t *const *ar, float *out, int64_t ldo, int rm) {
    const size_t es = kind == WF32 ? 4 : 2;
    __m256 acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < RN; j++) acc[i][j] = _mm256_setzero_ps();
    int64_t e = 0;
    for (; e + 8 <= k; e += 8) {
        __m256 wv[4];
        for (int i = 0; i < 4; i++) wv[i] = load_w8(kind, wr[i] + e * es);
        for (int j = 0; j < RN; j++) {
            const __m256 av = _mm256_loadu_ps((const float *)(const void *)ar[j] + e);
            for (int i = 0; i < 4; i++) acc[i][j] = _mm256_fmadd_ps(wv[i], av, acc[i][j]);
        }
    }
    for (int j = 0; j < RN; j++)
        for (int i = 0; i < rm; i++) {
            float s = hsum8(acc[i][j]);
            for (int64_t t = e; t < k; t++) s += w_scalar(kind, wr[i], t) * ldf32(ar[j] + 4 * t);
            out[j * ldo + i] = s;
        }
}

#define TILE_F32_AVX2(RN, k, wr, ar, o, ldo, rm) tile_float_avx2(WF32, RN, k, wr, ar, o, ldo, rm)
#define TILE_F16_AVX2(RN, k, wr, ar, o, ldo, rm) tile_float_avx2(WF16, RN, k, wr, ar, o, ldo, rm)
#define TILE_BF16_AVX2(RN, k, wr, ar, o, ldo, rm) tile_float_avx2(WBF16, RN, k, wr, ar, o, ldo, rm)
EM_GEMM_DRIVER(em_gemm_f32_avx2, , TILE_F32_AVX2, 4, 3)
EM_GEMM_DRIVER(em_gemm_f16_avx2, , TILE_F16_AVX2, 4, 3)
EM_GEMM_DRIVER(em_gemm_bf16_avx2, , TILE_BF16_AVX2, 4, 3)

/* ------------------------------------------------- Q8_0 and Q4_0 (x Q8_0) */

#define WQ8_0 0
#define WQ4_0 1

/* RM = 4 weight rows x RN activation rows of 32-element blocks.  For Q8_0
 * the registers hold |q| and the sign goes onto the activation; for Q4_0
 * they hold the unsigned nibbles and 8 * (pairwise sums of a) is taken
 * off the 16-bit products (both fit easily in 16 bits). */
static inline AI void tile_q8_avx2(const int kind, const int RN, int64_t k, const uint8_t *const *wr,
                                   const uint8_t *const *ar, float *out, int64_t ldo, int rm) {
    const size_t wbs = kind == WQ8_0 ? sizeof(em_block_q8_0) : sizeof(em_block_q4_0);
    const int64_t nb = k / 32;
    const __m256i ones = _mm256_set1_epi16(1), m4 = _mm256_set1_epi8(15), eight = _mm256_set1_epi8(8);
    __m256 acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < RN; j++) acc[i][j] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m256i wq[4];
        __m256 wd[4];
        for (int i = 0; i < 4; i++) {
            const uint8_t *x = wr[i] + (size_t)b * wbs;
            if (kind == WQ8_0) {
                wq[i] = _mm256_loadu_si256((const __m256i *)(const void *)(x + 2));
            } else {
                const __m128i q = _mm_loadu_si128((const __m128i *)(const void *)(x + 2));
                wq[i] = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4);
            }
            wd[i] = _mm256_set1_ps(_cvtsh_ss(ld16(x)));
        }
        for (int j = 0; j < RN; j++) {
            const uint8_t *y = ar[j] + (size_t)b * sizeof(em_block_q8_0);
            const __m256i av = _mm256_loadu_si256((const __m256i *)(const void *)(y + 2));
            const __m256 ad = _mm256_set1_ps(_cvtsh_ss(ld16(y)));
            const __m256i bias = kind == WQ4_0 ? _mm256_maddubs_epi16(eight, av) : _mm256_setzero_si256();
            for (int i = 0; i < 4; i++) {
                __m256i p16;
                if (kind == WQ8_0)
                    p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(wq[i], wq[i]), _mm256_sign_epi8(av, wq[i]));
                else
                    p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(wq[i], av), bias);
                const __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
                acc[i][j] = _mm256_fmadd_ps(p, _mm256_mul_ps(wd[i], ad), acc[i][j]);
            }
        }
    }
    for (int j = 0; j < RN; j++)
        for (int i = 0; i < rm; i++) out[j * ldo + i] = hsum8(acc[i][j]);
}

#define TILE_Q8_0_AVX2(RN, k, wr, ar, o, ldo, rm) tile_q8_avx2(WQ8_0, RN, k, wr, ar, o, ldo, rm)
#define TILE_Q4_0_AVX2(RN, k, wr, ar, o, ldo, rm) tile_q8_avx2(WQ4_0, RN, k, wr, ar, o, ldo, rm)
EM_GEMM_DRIVER(em_gemm_q8_0_avx2, , TILE_Q8_0_AVX2, 4, 2)
EM_GEMM_DRIVER(em_gemm_q4_0_avx2, , TILE_Q4_0_AVX2, 4, 2)

/* ------------------------------------------ Q4_K, Q5_K, Q6_K (x Q8_K) */

#define WQ4_K 0
#define WQ5_K 1
#define WQ6_K 2

/* Per super-block state of one weight row for the AVX2 K-quant tile. */
typedef struct kq_row {
    __m256i sc16[8];  /* [8] group scales, each as 16 int16 lanes (Q4/5_K); Q6_K: see below */
    __m256i mins16;   /* 16 int16: Q4/5_K mins paired with bsums; Q6_K: 32 * scale per bsum */
    float d, dmin;    /* super-block scales as floats (dmin unused by Q6_K)                */
} kq_row;

/* The 32 unsigned levels of elements 32g .. 32g+31 of a K-quant block. */
static inline AI __m256i kq_levels_avx2(const int kind, const uint8_t *x, int g) {
    const __m256i m4 = _mm256_set1_epi8(15);
    if (kind == WQ6_K) {
        const em_block_q6_k *q = (const em_block_q6_k *)(const void *)x;
        /* g = 4h + kk: low bits from ql[64h + 32(kk&1) ..], nibble kk>>1;
         * high bits 2kk..2kk+1 of qh[32h ..]. */
        const int h = g >> 2, kk = g & 3;
        const __m256i ql = _mm256_loadu_si256((const __m256i *)(const void *)(q->ql + 64 * h + 32 * (kk & 1)));
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)(q->qh + 32 * h));
        const __m256i lo = _mm256_and_si256(kk >> 1 ? _mm256_srli_epi16(ql, 4) : ql, m4);
        const __m256i hi = _mm256_and_si256(_mm256_slli_epi16(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * kk)), 4),
                                            _mm256_set1_epi8(0x30));
        return _mm256_or_si256(lo, hi);
    }
    /* Q4_K/Q5_K: group g = 2kk + half is nibble `half` of qs[32kk ..]. */
    const uint8_t *qs = kind == WQ4_K ? ((const em_block_q4_k *)(const void *)x)->qs
                                      : ((const em_block_q5_k *)(const void *)x)->qs;
    const __m256i raw = _mm256_loadu_si256((const __m256i *)(const void *)(qs + 32 * (g >> 1)));
    __m256i lv = _mm256_and_si256((g & 1) ? _mm256_srli_epi16(raw, 4) : raw, m4);
    if (kind == WQ5_K) {
        const __m256i qh = _mm256_loadu_si256(
            (const __m256i *)(const void *)((const em_block_q5_k *)(const void *)x)->qh);
        /* bit g of each qh byte becomes bit 4 of the level. */
        const __m256i hb = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(g)), _mm256_set1_epi8(1));
        lv = _mm256_or_si256(lv, _mm256_slli_epi16(hb, 4));
    }
    return lv;
}

static inline AI void kq_row_avx2(const int kind, const uint8_t *x, kq_row *r) {
    if (kind == WQ6_K) {
        const em_block_q6_k *q = (const em_block_q6_k *)(const void *)x;
        /* Q6_K: 16 groups of 16, two per 32-element step: sc16[s] holds
         * scale 2s in the low 128 bits and 2s+1 in the high. */
        const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)q->scales));
        for (int s = 0; s < 8; s++) {
            const __m256i lo = _mm256_set1_epi16((int16_t)q->scales[2 * s]);
            const __m256i hi = _mm256_set1_epi16((int16_t)q->scales[2 * s + 1]);
            r->sc16[s] = _mm256_blend_epi32(lo, hi, 0xf0);
        }
        r->mins16 = _mm256_slli_epi16(s16, 5); /* 32 * scale: the bias of 32 per level */
        r->d = _cvtsh_ss(ld16(x + offsetof(em_block_q6_k, d)));
        r->dmin = 0;
        return;
    }
    const uint8_t *s12 = kind == WQ4_K ? ((const em_block_q4_k *)(const void *)x)->scales
                                       : ((const em_block_q5_k *)(const void *)x)->scales;
    uint64_t sc, mn;
    unpack_k_scales(s12, &sc, &mn);
    for (int g = 0; g < 8; g++) r->sc16[g] = _mm256_set1_epi16((int16_t)((sc >> (8 * g)) & 0xff));
    const __m128i m8 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mn));
    r->mins16 = _mm256_set_m128i(_mm_unpackhi_epi16(m8, m8), _mm_unpacklo_epi16(m8, m8));
    r->d = _cvtsh_ss(ld16(x));
    r->dmin = _cvtsh_ss(ld16(x + 2));
}

/* RM = 2 weight rows x RN activation rows, one 256-element super-block a
 * step, 32 elements (one Q4/5_K group, two Q6_K groups) a sub-step. */
static inline AI void tile_kq_avx2(const int kind, const int RN, int64_t k, const uint8_t *const *wr,
                                   const uint8_t *const *ar, float *out, int64_t ldo, int rm) {
    const size_t wbs = kind == WQ4_K ? sizeof(em_block_q4_k)
                       : kind == WQ5_K ? sizeof(em_block_q5_k) : sizeof(em_block_q6_k);
    const int64_t nb = k / EM_QK_K;
    __m256 acc[2][4];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < RN; j++) acc[i][j] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        kq_row row[2];
        for (int i = 0; i < 2; i++) kq_row_avx2(kind, wr[i] + (size_t)b * wbs, &row[i]);
        __m256i isum[2][4];
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < RN; j++) isum[i][j] = _mm256_setzero_si256();
        for (int g = 0; g < 8; g++) {
            __m256i lv[2];
            for (int i = 0; i < 2; i++) lv[i] = kq_levels_avx2(kind, wr[i] + (size_t)b * wbs, g);
            for (int j = 0; j < RN; j++) {
                const em_block_q8_k *y = (const em_block_q8_k *)(const void *)(ar[j]) + b;
                const __m256i av = _mm256_loadu_si256((const __m256i *)(const void *)(y->qs + 32 * g));
                for (int i = 0; i < 2; i++) {
                    const __m256i p16 = _mm256_maddubs_epi16(lv[i], av);
                    isum[i][j] = _mm256_add_epi32(isum[i][j], _mm256_madd_epi16(p16, row[i].sc16[g]));
                }
            }
        }
        for (int j = 0; j < RN; j++) {
            const em_block_q8_k *y = (const em_block_q8_k *)(const void *)(ar[j]) + b;
            const __m256i bs = _mm256_loadu_si256((const __m256i *)(const void *)y->bsums);
            const float yd = ldf32(&y->d);
            for (int i = 0; i < 2; i++) {
                const __m256i ms = _mm256_madd_epi16(row[i].mins16, bs);
                if (kind == WQ6_K) {
                    const __m256 t = _mm256_cvtepi32_ps(_mm256_sub_epi32(isum[i][j], ms));
                    acc[i][j] = _mm256_fmadd_ps(t, _mm256_set1_ps(row[i].d * yd), acc[i][j]);
                } else {
                    acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[i][j]), _mm256_set1_ps(row[i].d * yd),
                                                acc[i][j]);
                    acc[i][j] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(ms), _mm256_set1_ps(row[i].dmin * yd),
                                                 acc[i][j]);
                }
            }
        }
    }
    for (int j = 0; j < RN; j++)
        for (int i = 0; i < rm; i++) out[j * ldo + i] = hsum8(acc[i][j]);
}

#define TILE_Q4_K_AVX2(RN, k, wr, ar, o, ldo, rm) tile_kq_avx2(WQ4_K, RN, k, wr, ar, o, ldo, rm)
#define TILE_Q5_K_AVX2(RN, k, wr, ar, o, ldo, rm) tile_kq_avx2(WQ5_K, RN, k, wr, ar, o, ldo, rm)
#define TILE_Q6_K_AVX2(RN, k, wr, ar, o, ldo, rm) tile_kq_avx2(WQ6_K, RN, k, wr, ar, o, ldo, rm)
EM_GEMM_DRIVER(em_gemm_q4_k_avx2, , TILE_Q4_K_AVX2, 2, 3)
EM_GEMM_DRIVER(em_gemm_q5_k_avx2, , TILE_Q5_K_AVX2, 2, 3)
EM_GEMM_DRIVER(em_gemm_q6_k_avx2, , TILE_Q6_K_AVX2, 2, 3)

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

/* RM = 4 weight rows x RN activation rows, 16 elements a step; the tail
 * of k % 16 elements uses masked loads (masked-off lanes read as 0). */
static inline AI T512 void tile_float_512(const int kind, const int RN, int64_t k, const uint8_t *const *wr,
                                          const uint8_t *const *ar, float *out, int64_t ldo, int rm) {
    const size_t es = kind == WF32 ? 4 : 2;
    __m512 acc[4][6];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < RN; j++) acc[i][j] = _mm512_setzero_ps();
    for (int64_t e = 0; e < k; e += 16) {
        const __mmask16 m = k - e >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (k - e)) - 1);
        __m512 wv[4];
        for (int i = 0; i < 4; i++) wv[i] = load_w16(kind, wr[i] + e * es, m);
        for (int j = 0; j < RN; j++) {
            const __m512 av = _mm512_maskz_loadu_ps(m, (const float *)(const void *)ar[j] + e);
            for (int i = 0; i < 4; i++) acc[i][j] = _mm512_fmadd_ps(wv[i], av, acc[i][j]);
        }
    }
    for (int j = 0; j < RN; j++)
        for (int i = 0; i < rm; i++) out[j * ldo + i] = _mm512_reduce_add_ps(acc[i][j]);
}

#define TILE_F32_512(RN, k, wr, ar, o, ldo, rm) tile_float_512(WF32, RN, k, wr, ar, o, ldo, rm)
#define TILE_F16_512(RN, k, wr, ar, o, ldo, rm) tile_float_512(WF16, RN, k, wr, ar, o, ldo, rm)
#define TILE_BF16_512(RN, k, wr, ar, o, ldo, rm) tile_float_512(WBF16, RN, k, wr, ar, o, ldo, rm)
EM_GEMM_DRIVER(em_gemm_f32_avx512, T512, TILE_F32_512, 4, 6)
EM_GEMM_DRIVER(em_gemm_f16_avx512, T512, TILE_F16_512, 4, 6)
EM_GEMM_DRIVER(em_gemm_bf16_avx512, T512, TILE_BF16_512, 4, 6)

/* ------------------------------------------------- Q8_0 and Q4_0 (x Q8_0) */

/* RM = 8 weight rows as 4 register pairs x RN activation rows.  Pair p
 * holds block b of rows 2p (low half) and 2p+1 (high half) as unsigned
 * bytes; the activation block is broadcast to both halves.  Each int32
 * lane of vpdpbusd starts from -bias * (sum of its 4 activation bytes),
 * which removes the weights' offset exactly. */
static inline AI T512 void tile_q8_512(const int kind, const int RN, int64_t k, const uint8_t *const *wr,
                                       const uint8_t *const *ar, float *out, int64_t ldo, int rm) {
    const size_t wbs = kind == WQ8_0 ? sizeof(em_block_q8_0) : sizeof(em_block_q4_0);
    const int64_t nb = k / 32;
    const __m512i bias = _mm512_set1_epi8(kind == WQ8_0 ? (char)0x80 : 8);
    const __m512i m4 = _mm512_set1_epi8(15);
    const __m512i nib_shift = _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0);
    /* Two fp16 scales (row 2p in bytes 0-1, row 2p+1 in bytes 2-3 of each
     * dword) spread to 8 halves each, for one vcvtph2ps. */
    const __m256i d_spread = _mm256_set_epi8(3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2,
                                             1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0);
    __m512 acc[4][4];
    for (int p = 0; p < 4; p++)
        for (int j = 0; j < RN; j++) acc[p][j] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m512i wq[4];
        __m512 wd[4];
        for (int p = 0; p < 4; p++) {
            const uint8_t *x0 = wr[2 * p] + (size_t)b * wbs, *x1 = wr[2 * p + 1] + (size_t)b * wbs;
            if (kind == WQ8_0) {
                const __m512i v = _mm512_inserti64x4(
                    _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)(x0 + 2))),
                    _mm256_loadu_si256((const __m256i *)(const void *)(x1 + 2)), 1);
                wq[p] = _mm512_xor_si512(v, bias);
            } else {
                const __m512i z = _mm512_mask_blend_epi64(
                    0xf0, _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)(x0 + 2))),
                    _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)(x1 + 2))));
                wq[p] = _mm512_and_si512(_mm512_srlv_epi64(z, nib_shift), m4);
            }
            const uint32_t dd = (uint32_t)ld16(x0) | (uint32_t)ld16(x1) << 16;
            wd[p] = _mm512_cvtph_ps(_mm256_shuffle_epi8(_mm256_set1_epi32((int)dd), d_spread));
        }
        for (int j = 0; j < RN; j++) {
            const uint8_t *y = ar[j] + (size_t)b * sizeof(em_block_q8_0);
            const __m512i av = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)(y + 2)));
            const __m512i start = _mm512_sub_epi32(_mm512_setzero_si512(),
                                                   _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, av));
            const __m512 ad = _mm512_set1_ps(_cvtsh_ss(ld16(y)));
            for (int p = 0; p < 4; p++) {
                const __m512 s = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(start, wq[p], av));
                acc[p][j] = _mm512_fmadd_ps(s, _mm512_mul_ps(wd[p], ad), acc[p][j]);
            }
        }
    }
    for (int j = 0; j < RN; j++)
        for (int p = 0; p < 4; p++) {
            if (2 * p < rm) out[j * ldo + 2 * p] = hsum8(_mm512_castps512_ps256(acc[p][j]));
            if (2 * p + 1 < rm) out[j * ldo + 2 * p + 1] = hsum8(_mm512_extractf32x8_ps(acc[p][j], 1));
        }
}

#define TILE_Q8_0_512(RN, k, wr, ar, o, ldo, rm) tile_q8_512(WQ8_0, RN, k, wr, ar, o, ldo, rm)
#define TILE_Q4_0_512(RN, k, wr, ar, o, ldo, rm) tile_q8_512(WQ4_0, RN, k, wr, ar, o, ldo, rm)
EM_GEMM_DRIVER(em_gemm_q8_0_avx512, T512, TILE_Q8_0_512, 8, 4)
EM_GEMM_DRIVER(em_gemm_q4_0_avx512, T512, TILE_Q4_0_512, 8, 4)

/* ------------------------------------------ Q4_K, Q5_K, Q6_K (x Q8_K) */

/* Per super-block state of one weight row for the AVX-512 K-quant tile. */
typedef struct kq_row512 {
    __m512i sc;      /* group scales as int16 in the low lanes, for vpermw     */
    __m256i mins16;  /* 16 int16 paired with bsums: Q4/5_K mins, Q6_K 32*scale */
    float d, dmin;   /* super-block scales (dmin unused by Q6_K)               */
} kq_row512;

static inline AI T512 void kq_row_512(const int kind, const uint8_t *x, kq_row512 *r) {
    if (kind == WQ6_K) {
        const __m256i s16 =
            _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(x + offsetof(em_block_q6_k, scales))));
        r->sc = _mm512_castsi256_si512(s16);
        r->mins16 = _mm256_slli_epi16(s16, 5);
        r->d = _cvtsh_ss(ld16(x + offsetof(em_block_q6_k, d)));
        r->dmin = 0;
        return;
    }
    uint64_t sc, mn;
    unpack_k_scales(x + 4, &sc, &mn);
    r->sc = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc)));
    const __m256i pair_idx = _mm256_set_epi16(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    r->mins16 = _mm256_permutexvar_epi16(pair_idx, _mm256_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mn)));
    r->d = _cvtsh_ss(ld16(x));
    r->dmin = _cvtsh_ss(ld16(x + 2));
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
    const __m512i nib_shift = _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0);
    __m512i lv = _mm512_and_si512(_mm512_srlv_epi64(raw, nib_shift), m4);
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

/* RM = 2 weight rows x RN activation rows, one super-block a step and 64
 * elements a sub-step. */
static inline AI T512 void tile_kq_512(const int kind, const int RN, int64_t k, const uint8_t *const *wr,
                                       const uint8_t *const *ar, float *out, int64_t ldo, int rm) {
    const size_t wbs = kind == WQ4_K ? sizeof(em_block_q4_k)
                       : kind == WQ5_K ? sizeof(em_block_q5_k) : sizeof(em_block_q6_k);
    const int64_t nb = k / EM_QK_K;
    __m512 acc[2][4];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < RN; j++) acc[i][j] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        kq_row512 row[2];
        for (int i = 0; i < 2; i++) kq_row_512(kind, wr[i] + (size_t)b * wbs, &row[i]);
        __m512i isum[2][4];
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < RN; j++) isum[i][j] = _mm512_setzero_si512();
        for (int s = 0; s < 4; s++) {
            __m512i lv[2], sc[2];
            for (int i = 0; i < 2; i++) {
                lv[i] = kq_levels_512(kind, wr[i] + (size_t)b * wbs, s);
                sc[i] = kq_scales_512(kind, row[i].sc, s);
            }
            for (int j = 0; j < RN; j++) {
                const uint8_t *y = ar[j] + (size_t)b * sizeof(em_block_q8_k);
                const __m512i av = _mm512_loadu_si512(y + offsetof(em_block_q8_k, qs) + 64 * s);
                for (int i = 0; i < 2; i++)
                    isum[i][j] = _mm512_dpwssd_epi32(isum[i][j], _mm512_maddubs_epi16(lv[i], av), sc[i]);
            }
        }
        for (int j = 0; j < RN; j++) {
            const uint8_t *y = ar[j] + (size_t)b * sizeof(em_block_q8_k);
            const __m256i bs = _mm256_loadu_si256((const __m256i *)(const void *)(y + offsetof(em_block_q8_k, bsums)));
            const float yd = ldf32(y);
            for (int i = 0; i < 2; i++) {
                const __m512i ms = _mm512_zextsi256_si512(_mm256_madd_epi16(row[i].mins16, bs));
                if (kind == WQ6_K) {
                    const __m512 t = _mm512_cvtepi32_ps(_mm512_sub_epi32(isum[i][j], ms));
                    acc[i][j] = _mm512_fmadd_ps(t, _mm512_set1_ps(row[i].d * yd), acc[i][j]);
                } else {
                    acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[i][j]), _mm512_set1_ps(row[i].d * yd),
                                                acc[i][j]);
                    acc[i][j] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(ms), _mm512_set1_ps(row[i].dmin * yd),
                                                 acc[i][j]);
                }
            }
        }
    }
    for (int j = 0; j < RN; j++)
        for (int i = 0; i < rm; i++) out[j * ldo + i] = _mm512_reduce_add_ps(acc[i][j]);
}

#define TILE_Q4_K_512(RN, k, wr, ar, o, ldo, rm) tile_kq_512(WQ4_K, RN, k, wr, ar, o, ldo, rm)
#define TILE_Q5_K_512(RN, k, wr, ar, o, ldo, rm) tile_kq_512(WQ5_K, RN, k, wr, ar, o, ldo, rm)
#define TILE_Q6_K_512(RN, k, wr, ar, o, ldo, rm) tile_kq_512(WQ6_K, RN, k, wr, ar, o, ldo, rm)
EM_GEMM_DRIVER(em_gemm_q4_k_avx512, T512, TILE_Q4_K_512, 2, 4)
EM_GEMM_DRIVER(em_gemm_q5_k_avx512, T512, TILE_Q5_K_512, 2, 4)
EM_GEMM_DRIVER(em_gemm_q6_k_avx512, T512, TILE_Q6_K_512, 2, 4)

#endif /* EM_HAVE_X86_GEMM */
