/*
 * attention_avx2.c - the AVX2/FMA/F16C inner loops of attention: q.k for
 * several query heads against a block of key rows, the weighted add of a
 * block of value rows into several heads' sums, and exp over a block of
 * scores.  Their
 * scalar twins (same contracts, in attention.c) are the reference they
 * are tested against.  The build compiles this file with -mavx2 -mfma
 * -mf16c; attention.c uses it only after checking the CPU.
 *
 * Half-precision rows are widened in registers (vcvtph2ps), so an F16
 * cache costs no more memory traffic than its own size.  The kernels work
 * on a block of keys at once, so that per-key costs (a horizontal sum for
 * each score, a load and store of the running sums for each value) are
 * shared by the block.
 */
#include "ops/attention.h"

#if defined(__x86_64__) && defined(__GNUC__)

#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "attention_avx2.c must be compiled with -mavx2 -mfma -mf16c"
#endif

#include "core/arch/x86/math_avx2.h"

#include <immintrin.h>
#include <math.h>

/* Eight elements of a key/value row as floats. */
static inline __m256 load8_f32(const float *p) { return _mm256_loadu_ps(p); }
static inline __m256 load8_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p)); }
static inline float load1_f32(const float *p) { return *p; }
static inline float load1_f16(const uint16_t *p) { return _cvtsh_ss(*p); }

/* The sums of eight accumulators, lane j holding the total of a_j. */
static inline __m256 reduce8(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5, __m256 a6,
                             __m256 a7) {
    const __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    const __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(a4, a5), _mm256_hadd_ps(a6, a7));
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* q.k of one head with eight keys at a time, from key j0 on: one query
 * vector load serves eight keys, and the eight sums are reduced together;
 * leftover keys go one by one, the n % 8 tail of each dot in scalar code. */
#define QK_ONE(T, LOAD8, LOAD1, h, j0)                                                           \
    do {                                                                                         \
        const float *qh = q + (h) * n;                                                           \
        float *sh = s + (h) * s_stride;                                                          \
        int j = (j0);                                                                            \
        for (; j + 8 <= nk; j += 8) {                                                            \
            const T *k0 = k[j], *k1 = k[j + 1], *k2 = k[j + 2], *k3 = k[j + 3];                 \
            const T *k4 = k[j + 4], *k5 = k[j + 5], *k6 = k[j + 6], *k7 = k[j + 7];             \
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0; \
            for (int64_t i = 0; i < n8; i += 8) {                                                \
                const __m256 qv = _mm256_loadu_ps(qh + i);                                       \
                a0 = _mm256_fmadd_ps(qv, LOAD8(k0 + i), a0);                                     \
                a1 = _mm256_fmadd_ps(qv, LOAD8(k1 + i), a1);                                     \
                a2 = _mm256_fmadd_ps(qv, LOAD8(k2 + i), a2);                                     \
                a3 = _mm256_fmadd_ps(qv, LOAD8(k3 + i), a3);                                     \
                a4 = _mm256_fmadd_ps(qv, LOAD8(k4 + i), a4);                                     \
                a5 = _mm256_fmadd_ps(qv, LOAD8(k5 + i), a5);                                     \
                a6 = _mm256_fmadd_ps(qv, LOAD8(k6 + i), a6);                                     \
                a7 = _mm256_fmadd_ps(qv, LOAD8(k7 + i), a7);                                     \
            }                                                                                    \
            _mm256_storeu_ps(sh + j, reduce8(a0, a1, a2, a3, a4, a5, a6, a7));                   \
            for (int jj = j; jj < j + 8; jj++)                                                   \
                for (int64_t i = n8; i < n; i++) sh[jj] += qh[i] * LOAD1(k[jj] + i);             \
        }                                                                                        \
        for (; j < nk; j++) {                                                                    \
            __m256 a0 = _mm256_setzero_ps();                                                     \
            for (int64_t i = 0; i < n8; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qh + i), LOAD8(k[j] + i), a0); \
            float t = em_hsum8_avx2(a0);                                                         \
            for (int64_t i = n8; i < n; i++) t += qh[i] * LOAD1(k[j] + i);                       \
            sh[j] = t;                                                                           \
        }                                                                                        \
    } while (0)

/* Heads in pairs over four keys at a time (eight sums, reduced together
 * as above), so each key vector loaded serves two heads and each query
 * vector four keys; an odd last head goes alone.  Every score is summed
 * in the same order as QK_ONE's, so the pairing changes no result. */
#define QK_BODY(T, LOAD8, LOAD1)                                                                 \
    const int64_t n8 = n & ~(int64_t)7;                                                          \
    const int nk8 = nk & ~7;                                                                     \
    int h = 0;                                                                                   \
    for (; h + 2 <= n_q; h += 2) {                                                               \
        const float *q0 = q + h * n, *q1 = q0 + n;                                               \
        float *s0 = s + h * s_stride, *s1 = s0 + s_stride;                                       \
        for (int j = 0; j < nk8; j += 4) {                                                       \
            const T *k0 = k[j], *k1 = k[j + 1], *k2 = k[j + 2], *k3 = k[j + 3];                 \
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0; \
            for (int64_t i = 0; i < n8; i += 8) {                                                \
                const __m256 qa = _mm256_loadu_ps(q0 + i), qb = _mm256_loadu_ps(q1 + i);         \
                __m256 kv = LOAD8(k0 + i);                                                       \
                a0 = _mm256_fmadd_ps(qa, kv, a0);                                                \
                b0 = _mm256_fmadd_ps(qb, kv, b0);                                                \
                kv = LOAD8(k1 + i);                                                              \
                a1 = _mm256_fmadd_ps(qa, kv, a1);                                                \
                b1 = _mm256_fmadd_ps(qb, kv, b1);                                                \
                kv = LOAD8(k2 + i);                                                              \
                a2 = _mm256_fmadd_ps(qa, kv, a2);                                                \
                b2 = _mm256_fmadd_ps(qb, kv, b2);                                                \
                kv = LOAD8(k3 + i);                                                              \
                a3 = _mm256_fmadd_ps(qa, kv, a3);                                                \
                b3 = _mm256_fmadd_ps(qb, kv, b3);                                                \
            }                                                                                    \
            const __m256 r = reduce8(a0, a1, a2, a3, b0, b1, b2, b3);                            \
            _mm_storeu_ps(s0 + j, _mm256_castps256_ps128(r));                                    \
            _mm_storeu_ps(s1 + j, _mm256_extractf128_ps(r, 1));                                  \
            for (int jj = j; jj < j + 4; jj++)                                                   \
                for (int64_t i = n8; i < n; i++) {                                               \
                    s0[jj] += q0[i] * LOAD1(k[jj] + i);                                          \
                    s1[jj] += q1[i] * LOAD1(k[jj] + i);                                          \
                }                                                                                \
        }                                                                                        \
        QK_ONE(T, LOAD8, LOAD1, h, nk8);                                                         \
        QK_ONE(T, LOAD8, LOAD1, h + 1, nk8);                                                     \
    }                                                                                            \
    if (h < n_q) QK_ONE(T, LOAD8, LOAD1, h, 0);

static void qk_f32_avx2(const float *q, int n_q, int64_t n, const float *const *k, int nk, float *s, int s_stride) {
    /* Float rows one head at a time: measured faster than the pairs here
     * (the pairs pay off where the halves' conversion is shared). */
    const int64_t n8 = n & ~(int64_t)7;
    for (int h = 0; h < n_q; h++) QK_ONE(float, load8_f32, load1_f32, h, 0);
}

static void qk_f16_avx2(const float *q, int n_q, int64_t n, const uint16_t *const *k, int nk, float *s,
                        int s_stride) {
    QK_BODY(uint16_t, load8_f16, load1_f16)
}

/* acc_h += sum_j p_hj v_j for one head h from element i0 on: 64 elements
 * of acc_h stay in eight registers while every value row of the block is
 * added in, so acc is loaded and stored once per block rather than once
 * per key. */
#define PV_ONE(LOAD8, LOAD1, h, i0)                                                              \
    do {                                                                                         \
        float *ah = acc + (h) * n;                                                               \
        const float *ph = p + (h) * p_stride;                                                    \
        int64_t i = (i0);                                                                        \
        for (; i + 64 <= n; i += 64) {                                                           \
            __m256 c0 = _mm256_loadu_ps(ah + i), c1 = _mm256_loadu_ps(ah + i + 8);               \
            __m256 c2 = _mm256_loadu_ps(ah + i + 16), c3 = _mm256_loadu_ps(ah + i + 24);         \
            __m256 c4 = _mm256_loadu_ps(ah + i + 32), c5 = _mm256_loadu_ps(ah + i + 40);         \
            __m256 c6 = _mm256_loadu_ps(ah + i + 48), c7 = _mm256_loadu_ps(ah + i + 56);         \
            for (int j = 0; j < nv; j++) {                                                       \
                const __m256 w = _mm256_broadcast_ss(ph + j);                                    \
                c0 = _mm256_fmadd_ps(w, LOAD8(v[j] + i), c0);                                    \
                c1 = _mm256_fmadd_ps(w, LOAD8(v[j] + i + 8), c1);                                \
                c2 = _mm256_fmadd_ps(w, LOAD8(v[j] + i + 16), c2);                               \
                c3 = _mm256_fmadd_ps(w, LOAD8(v[j] + i + 24), c3);                               \
                c4 = _mm256_fmadd_ps(w, LOAD8(v[j] + i + 32), c4);                               \
                c5 = _mm256_fmadd_ps(w, LOAD8(v[j] + i + 40), c5);                               \
                c6 = _mm256_fmadd_ps(w, LOAD8(v[j] + i + 48), c6);                               \
                c7 = _mm256_fmadd_ps(w, LOAD8(v[j] + i + 56), c7);                               \
            }                                                                                    \
            _mm256_storeu_ps(ah + i, c0);                                                        \
            _mm256_storeu_ps(ah + i + 8, c1);                                                    \
            _mm256_storeu_ps(ah + i + 16, c2);                                                   \
            _mm256_storeu_ps(ah + i + 24, c3);                                                   \
            _mm256_storeu_ps(ah + i + 32, c4);                                                   \
            _mm256_storeu_ps(ah + i + 40, c5);                                                   \
            _mm256_storeu_ps(ah + i + 48, c6);                                                   \
            _mm256_storeu_ps(ah + i + 56, c7);                                                   \
        }                                                                                        \
        for (; i < n8; i += 8) {                                                                 \
            __m256 c0 = _mm256_loadu_ps(ah + i);                                                 \
            for (int j = 0; j < nv; j++) c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(ph + j), LOAD8(v[j] + i), c0); \
            _mm256_storeu_ps(ah + i, c0);                                                        \
        }                                                                                        \
        for (; i < n; i++) {                                                                     \
            float c = ah[i];                                                                     \
            for (int j = 0; j < nv; j++) c += ph[j] * LOAD1(v[j] + i);                           \
            ah[i] = c;                                                                           \
        }                                                                                        \
    } while (0)

/* Heads in pairs, 32 elements of each at a time: each value vector loaded
 * serves two heads.  Every element still adds the keys in order, one FMA
 * each, as PV_ONE does. */
#define PV_BODY(LOAD8, LOAD1)                                                                    \
    const int64_t n8 = n & ~(int64_t)7, n32 = n & ~(int64_t)31;                                  \
    int h = 0;                                                                                   \
    for (; h + 2 <= n_q; h += 2) {                                                               \
        float *a0 = acc + h * n, *a1 = a0 + n;                                                   \
        const float *p0 = p + h * p_stride, *p1 = p0 + p_stride;                                 \
        for (int64_t i = 0; i < n32; i += 32) {                                                  \
            __m256 c0 = _mm256_loadu_ps(a0 + i), c1 = _mm256_loadu_ps(a0 + i + 8);               \
            __m256 c2 = _mm256_loadu_ps(a0 + i + 16), c3 = _mm256_loadu_ps(a0 + i + 24);         \
            __m256 d0 = _mm256_loadu_ps(a1 + i), d1 = _mm256_loadu_ps(a1 + i + 8);               \
            __m256 d2 = _mm256_loadu_ps(a1 + i + 16), d3 = _mm256_loadu_ps(a1 + i + 24);         \
            for (int j = 0; j < nv; j++) {                                                       \
                const __m256 w0 = _mm256_broadcast_ss(p0 + j), w1 = _mm256_broadcast_ss(p1 + j); \
                __m256 x = LOAD8(v[j] + i);                                                      \
                c0 = _mm256_fmadd_ps(w0, x, c0);                                                 \
                d0 = _mm256_fmadd_ps(w1, x, d0);                                                 \
                x = LOAD8(v[j] + i + 8);                                                         \
                c1 = _mm256_fmadd_ps(w0, x, c1);                                                 \
                d1 = _mm256_fmadd_ps(w1, x, d1);                                                 \
                x = LOAD8(v[j] + i + 16);                                                        \
                c2 = _mm256_fmadd_ps(w0, x, c2);                                                 \
                d2 = _mm256_fmadd_ps(w1, x, d2);                                                 \
                x = LOAD8(v[j] + i + 24);                                                        \
                c3 = _mm256_fmadd_ps(w0, x, c3);                                                 \
                d3 = _mm256_fmadd_ps(w1, x, d3);                                                 \
            }                                                                                    \
            _mm256_storeu_ps(a0 + i, c0);                                                        \
            _mm256_storeu_ps(a0 + i + 8, c1);                                                    \
            _mm256_storeu_ps(a0 + i + 16, c2);                                                   \
            _mm256_storeu_ps(a0 + i + 24, c3);                                                   \
            _mm256_storeu_ps(a1 + i, d0);                                                        \
            _mm256_storeu_ps(a1 + i + 8, d1);                                                    \
            _mm256_storeu_ps(a1 + i + 16, d2);                                                   \
            _mm256_storeu_ps(a1 + i + 24, d3);                                                   \
        }                                                                                        \
        PV_ONE(LOAD8, LOAD1, h, n32);                                                            \
        PV_ONE(LOAD8, LOAD1, h + 1, n32);                                                        \
    }                                                                                            \
    if (h < n_q) PV_ONE(LOAD8, LOAD1, h, 0);

static void pv_f32_avx2(float *acc, int n_q, int64_t n, const float *p, int p_stride, const float *const *v,
                        int nv) {
    const int64_t n8 = n & ~(int64_t)7;
    for (int h = 0; h < n_q; h++) PV_ONE(load8_f32, load1_f32, h, 0);
}

static void pv_f16_avx2(float *acc, int n_q, int64_t n, const float *p, int p_stride, const uint16_t *const *v,
                        int nv) {
    PV_BODY(load8_f16, load1_f16)
}

/* ---- Q8_0 keys and values, widened in registers.  Element e of a block
 * becomes (float)qs[e] * d, d the block's scale as a float: the product
 * em_dequantize_row makes (exact, so the order of the factors does not
 * matter), and it then goes through the same FMAs in the same order as
 * the float kernels' (qk_f32 sums eight lanes per key and reduces with
 * reduce8, or hsum8 for the keys after nk & ~7; pv_f32 adds the keys in
 * order, one FMA each), so a Q8_0 cache gives the bits it gave when its
 * rows were dequantized into floats first.  Heads are paired as the F16
 * kernels pair them (pairing changes no result, see QK_BODY), so a
 * block's scale and quants are widened once for two heads.  n is a
 * multiple of 32 (a Q8_0 cache's head sizes are), so there are no tails
 * within a row. */

/* Block b's scale in every lane. */
static inline __m256 q8_d8(const em_block_q8_0 *b) { return _mm256_set1_ps(_cvtsh_ss(b->d)); }
/* Elements 8 * s .. 8 * s + 7 of block b as floats, d its scale. */
static inline __m256 q8_x8(const em_block_q8_0 *b, int s, __m256 d) {
    const __m128i x = _mm_loadl_epi64((const __m128i *)(const void *)(b->qs + 8 * s));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(x)), d);
}

/* Asks for every line of the Q8_0 rows x[j0..j1) (nb blocks each), from
 * a row's start to its last byte (a slice need not start on a line).
 * The kernels ask for the next keys before widening the current ones:
 * widening makes a group of keys several times the instructions of an
 * F16 group, so fewer keys' misses would overlap in the window
 * (bench_attn --decode 16 --kv-type q8_0, EMBER_CPU=avx2: about 8% less
 * time, the AVX-512 set 15-20%). */
static inline void q8_prefetch(const em_block_q8_0 *const *x, int j0, int j1, int64_t nb) {
    for (int j = j0; j < j1; j++) {
        const char *r = (const char *)(const void *)x[j], *end = r + nb * (int64_t)sizeof(em_block_q8_0) - 1;
        for (const char *l = r; l < end; l += 64) _mm_prefetch(l, _MM_HINT_T0);
        _mm_prefetch(end, _MM_HINT_T0);
    }
}

/* q.k of head h with keys j0.. as QK_ONE: eight keys at a time (reduce8),
 * the rest one by one (hsum8). */
#define QK_ONE_Q8(h, j0)                                                                         \
    do {                                                                                         \
        const float *qh = q + (h) * n;                                                           \
        float *sh = s + (h) * s_stride;                                                          \
        int j = (j0);                                                                            \
        for (; j + 8 <= nk; j += 8) {                                                            \
            __m256 a[8];                                                                         \
            for (int u = 0; u < 8; u++) a[u] = _mm256_setzero_ps();                              \
            q8_prefetch(k, j + 8, j + 16 < nk ? j + 16 : nk, nb);                                \
            for (int64_t b = 0; b < nb; b++)                                                     \
                for (int e = 0; e < 4; e++) {                                                    \
                    const __m256 qv = _mm256_loadu_ps(qh + 32 * b + 8 * e);                      \
                    for (int u = 0; u < 8; u++) {                                                \
                        const em_block_q8_0 *kb = k[j + u] + b;                                  \
                        a[u] = _mm256_fmadd_ps(qv, q8_x8(kb, e, q8_d8(kb)), a[u]);               \
                    }                                                                            \
                }                                                                                \
            _mm256_storeu_ps(sh + j, reduce8(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]));   \
        }                                                                                        \
        for (; j < nk; j++) {                                                                    \
            __m256 a0 = _mm256_setzero_ps();                                                     \
            for (int64_t b = 0; b < nb; b++) {                                                   \
                const __m256 d = q8_d8(k[j] + b);                                                \
                for (int e = 0; e < 4; e++)                                                      \
                    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qh + 32 * b + 8 * e), q8_x8(k[j] + b, e, d), a0); \
            }                                                                                    \
            sh[j] = em_hsum8_avx2(a0);                                                           \
        }                                                                                        \
    } while (0)

static void qk_q8_0_avx2(const float *q, int n_q, int64_t n, const em_block_q8_0 *const *k, int nk, float *s,
                         int s_stride) {
    const int64_t nb = n / 32;
    const int nk8 = nk & ~7;
    int h = 0;
    for (; h + 2 <= n_q; h += 2) {
        const float *q0 = q + h * n, *q1 = q0 + n;
        float *s0 = s + h * s_stride, *s1 = s0 + s_stride;
        for (int j = 0; j < nk8; j += 4) {
            const em_block_q8_0 *k0 = k[j], *k1 = k[j + 1], *k2 = k[j + 2], *k3 = k[j + 3];
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            q8_prefetch(k, j + 4, j + 8 < nk ? j + 8 : nk, nb);
            for (int64_t b = 0; b < nb; b++) {
                const __m256 d0 = q8_d8(k0 + b), d1 = q8_d8(k1 + b), d2 = q8_d8(k2 + b), d3 = q8_d8(k3 + b);
                for (int e = 0; e < 4; e++) {
                    const int64_t i = 32 * b + 8 * e;
                    const __m256 qa = _mm256_loadu_ps(q0 + i), qb = _mm256_loadu_ps(q1 + i);
                    __m256 kv = q8_x8(k0 + b, e, d0);
                    a0 = _mm256_fmadd_ps(qa, kv, a0);
                    b0 = _mm256_fmadd_ps(qb, kv, b0);
                    kv = q8_x8(k1 + b, e, d1);
                    a1 = _mm256_fmadd_ps(qa, kv, a1);
                    b1 = _mm256_fmadd_ps(qb, kv, b1);
                    kv = q8_x8(k2 + b, e, d2);
                    a2 = _mm256_fmadd_ps(qa, kv, a2);
                    b2 = _mm256_fmadd_ps(qb, kv, b2);
                    kv = q8_x8(k3 + b, e, d3);
                    a3 = _mm256_fmadd_ps(qa, kv, a3);
                    b3 = _mm256_fmadd_ps(qb, kv, b3);
                }
            }
            const __m256 r = reduce8(a0, a1, a2, a3, b0, b1, b2, b3);
            _mm_storeu_ps(s0 + j, _mm256_castps256_ps128(r));
            _mm_storeu_ps(s1 + j, _mm256_extractf128_ps(r, 1));
        }
        QK_ONE_Q8(h, nk8);
        QK_ONE_Q8(h + 1, nk8);
    }
    if (h < n_q) QK_ONE_Q8(h, 0);
}

/* acc_h += sum_j p_hj v_j for heads h and h + 1 (NH = 2) or h alone
 * (NH = 1), 32 elements (one block of each value) at a time, as PV_BODY
 * and PV_ONE add them: each element adds the keys in order, one FMA
 * each. */
#define PV_NX32_Q8(NH)                                                                           \
    do {                                                                                         \
        for (int64_t b = 0; b < nb; b++) {                                                       \
            __m256 c[NH][4];                                                                     \
            for (int hh = 0; hh < NH; hh++)                                                      \
                for (int e = 0; e < 4; e++) c[hh][e] = _mm256_loadu_ps(acc + (h + hh) * n + 32 * b + 8 * e); \
            for (int j = 0; j < nv; j++) {                                                       \
                const em_block_q8_0 *vb = v[j] + b;                                              \
                const __m256 d = q8_d8(vb);                                                      \
                __m256 w[NH];                                                                    \
                for (int hh = 0; hh < NH; hh++) w[hh] = _mm256_broadcast_ss(p + (h + hh) * p_stride + j); \
                for (int e = 0; e < 4; e++) {                                                    \
                    const __m256 x = q8_x8(vb, e, d);                                            \
                    for (int hh = 0; hh < NH; hh++) c[hh][e] = _mm256_fmadd_ps(w[hh], x, c[hh][e]); \
                }                                                                                \
            }                                                                                    \
            for (int hh = 0; hh < NH; hh++)                                                      \
                for (int e = 0; e < 4; e++) _mm256_storeu_ps(acc + (h + hh) * n + 32 * b + 8 * e, c[hh][e]); \
        }                                                                                        \
    } while (0)

static void pv_q8_0_avx2(float *acc, int n_q, int64_t n, const float *p, int p_stride,
                         const em_block_q8_0 *const *v, int nv) {
    const int64_t nb = n / 32;
    int h = 0;
    for (; h + 2 <= n_q; h += 2) PV_NX32_Q8(2);
    if (h < n_q) PV_NX32_Q8(1);
}

static inline __attribute__((always_inline)) float exp_sum_body(float *s, int n, float m) {
    const __m256 mv = _mm256_set1_ps(m);
    __m256 acc = _mm256_setzero_ps();
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 e = em_exp8_avx2(_mm256_sub_ps(_mm256_loadu_ps(s + j), mv));
        _mm256_storeu_ps(s + j, e);
        acc = _mm256_add_ps(acc, e);
    }
    if (j < n) {
        /* The tail through a lane mask, so every score goes through the
         * same exp. */
        const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - j), idx);
        const __m256 e = em_exp8_avx2(_mm256_sub_ps(_mm256_maskload_ps(s + j, mask), mv));
        _mm256_maskstore_ps(s + j, mask, e);
        acc = _mm256_add_ps(acc, _mm256_and_ps(e, _mm256_castsi256_ps(mask)));
    }
    return em_hsum8_avx2(acc);
}

float em_attn_exp_sum_avx2(float *s, int n, float m) { return exp_sum_body(s, n, m); }

void em_attn_exp_rows_avx2(float *s, int nq, int stride, int n, const float *m, float *sum) {
    for (int h = 0; h < nq; h++) sum[h] = exp_sum_body(s + (int64_t)h * stride, n, m[h]);
}

float em_attn_scale_max_avx2(float *s, int n, float scale, const int32_t *kpos, int32_t lo, int32_t hi) {
    const __m256 sc = _mm256_set1_ps(scale), ninf = _mm256_set1_ps(-INFINITY);
    const __m256i lov = _mm256_set1_epi32(lo), hiv = _mm256_set1_epi32(hi);
    __m256 m = ninf;
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 x = _mm256_mul_ps(_mm256_loadu_ps(s + j), sc);
        if (kpos) {
            const __m256i p = _mm256_loadu_si256((const __m256i *)(const void *)(kpos + j));
            const __m256i out = _mm256_or_si256(_mm256_cmpgt_epi32(lov, p), _mm256_cmpgt_epi32(p, hiv));
            x = _mm256_blendv_ps(x, ninf, _mm256_castsi256_ps(out));
        }
        _mm256_storeu_ps(s + j, x);
        m = _mm256_max_ps(m, x);
    }
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    float mx = _mm_cvtss_f32(h);
    for (; j < n; j++) {
        s[j] *= scale;
        if (kpos && (kpos[j] < lo || kpos[j] > hi)) s[j] = -INFINITY;
        if (s[j] > mx) mx = s[j];
    }
    return mx;
}

const em_attn_kernels em_attn_kernels_avx2 = {
    .qk_f32 = qk_f32_avx2,
    .qk_f16 = qk_f16_avx2,
    .pv_f32 = pv_f32_avx2,
    .pv_f16 = pv_f16_avx2,
    .qk_q8_0 = qk_q8_0_avx2,
    .pv_q8_0 = pv_q8_0_avx2,
    .exp_sum = em_attn_exp_sum_avx2,
    .scale_max = em_attn_scale_max_avx2,
    .exp_rows = em_attn_exp_rows_avx2,
};

#endif
