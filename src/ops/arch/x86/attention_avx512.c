/*
 * attention_avx512.c - the AVX-512 forms of attention's inner loops
 * (q.k against a block of keys, the weighted add of a block of values),
 * chosen over the AVX2 set where the CPU has AVX-512: sixteen floats per
 * register, and 32 registers that hold the sums of four query heads at
 * once.  Same contracts as the scalar twins in attention.c, against which
 * test_gemm checks them; the scaling and masking of scores are the AVX2
 * set's.
 *
 * Each function carries its target ISA as an attribute, so this file is
 * built without global ISA flags and used only after the CPU check.
 *
 * Same results as the AVX2 set, to the bit: a score q.k_j is summed in
 * eight lanes (two keys share a 16-lane register, one per half), each lane
 * adding its elements in the same order as the AVX2 kernel's, and reduced
 * with the same tree; each element of a weighted sum adds the keys in
 * order, one FMA each, in every path.  So the two sets are interchangeable
 * (test_gemm compares them) and a model's logits do not depend on which
 * one the CPU gets.
 */
#include "ops/attention.h"

#if defined(__x86_64__) && defined(__GNUC__)

#include "core/arch/x86/math_avx512.h"

#include <immintrin.h>

#define A512 EM_A512
#define A512_INLINE static inline __attribute__((always_inline)) A512

A512_INLINE __m512 load16_f32(const float *p) { return _mm512_loadu_ps(p); }
A512_INLINE __m512 load16_f16(const uint16_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)p));
}
A512_INLINE float load1_f32(const float *p) { return *p; }
A512_INLINE float load1_f16(const uint16_t *p) { return _cvtsh_ss(*p); }

/* Lane j = the total of a_j (the AVX2 set's tree). */
A512_INLINE __m256 reduce8(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5, __m256 a6, __m256 a7) {
    const __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    const __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(a4, a5), _mm256_hadd_ps(a6, a7));
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

A512_INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Eight elements of keys j and j + 1 side by side in one register (j in
 * the low half), as floats. */
A512_INLINE __m512 pair_f32(const float *a, const float *b) {
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(_mm256_loadu_ps(a))),
                                               _mm256_castps_pd(_mm256_loadu_ps(b)), 1));
}
A512_INLINE __m512 pair_f16(const uint16_t *a, const uint16_t *b) {
    const __m256i h = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)a)),
                                              _mm_loadu_si128((const __m128i *)(const void *)b), 1);
    return _mm512_cvtph_ps(h);
}
A512_INLINE __m256 load8_f32(const float *p) { return _mm256_loadu_ps(p); }
A512_INLINE __m256 load8_f16(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
}
/* The query's eight elements in both halves. */
A512_INLINE __m512 qdup(const float *p) {
    return _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(_mm256_loadu_ps(p))));
}
A512_INLINE __m256 lo8(__m512 a) { return _mm512_castps512_ps256(a); }
A512_INLINE __m256 hi8(__m512 a) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)); }

/* Pairwise sums of neighbouring lanes within each 128-bit lane: what
 * vhaddps does on 256 bits, on all four 128-bit lanes. */
A512_INLINE __m512 hadd512(__m512 a, __m512 b) {
    return _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x88), _mm512_shuffle_ps(a, b, 0xDD));
}

/* The totals of eight keys' sums, z0 = keys 0 and 1 (one per half), z1 =
 * keys 2 and 3, ...: each key's eight lanes summed by reduce8's tree,
 * ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7)), with three 512-bit
 * pair additions instead of six 256-bit ones.  After them the 128-bit
 * lanes hold [k0 k2 k4 k6] low sums, the same high sums, [k1 k3 k5 k7]
 * low sums, high sums; low + high, then interleaved into key order. */
A512_INLINE __m256 reduce_pairs(__m512 z0, __m512 z1, __m512 z2, __m512 z3) {
    const __m512 g = hadd512(hadd512(z0, z1), hadd512(z2, z3));
    const __m512 t = _mm512_add_ps(g, _mm512_shuffle_f32x4(g, g, _MM_SHUFFLE(3, 3, 1, 1)));
    const __m128 even = _mm512_castps512_ps128(t), odd = _mm512_extractf32x4_ps(t, 2);
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_unpacklo_ps(even, odd)), _mm_unpackhi_ps(even, odd), 1);
}

/* Heads h..h+3 (NH = 4) or h alone (NH = 1) against keys j..j+7, each
 * accumulator holding two keys; the eight sums of a head are reduced as
 * the AVX2 set reduces them, and the n % 8 tail is added after, as there. */
#define QK_NX8(NH, T, PAIR, LOAD1)                                                               \
    do {                                                                                         \
        const T *k0 = k[j], *k1 = k[j + 1], *k2 = k[j + 2], *k3 = k[j + 3];                     \
        const T *k4 = k[j + 4], *k5 = k[j + 5], *k6 = k[j + 6], *k7 = k[j + 7];                 \
        __m512 a[NH][4];                                                                         \
        for (int hh = 0; hh < NH; hh++)                                                          \
            for (int u = 0; u < 4; u++) a[hh][u] = _mm512_setzero_ps();                          \
        for (int64_t i = 0; i < n8; i += 8) {                                                    \
            const __m512 p0 = PAIR(k0 + i, k1 + i), p1 = PAIR(k2 + i, k3 + i);                   \
            const __m512 p2 = PAIR(k4 + i, k5 + i), p3 = PAIR(k6 + i, k7 + i);                   \
            for (int hh = 0; hh < NH; hh++) {                                                    \
                const __m512 x = qdup(q + (h + hh) * n + i);                                     \
                a[hh][0] = _mm512_fmadd_ps(x, p0, a[hh][0]);                                     \
                a[hh][1] = _mm512_fmadd_ps(x, p1, a[hh][1]);                                     \
                a[hh][2] = _mm512_fmadd_ps(x, p2, a[hh][2]);                                     \
                a[hh][3] = _mm512_fmadd_ps(x, p3, a[hh][3]);                                     \
            }                                                                                    \
        }                                                                                        \
        for (int hh = 0; hh < NH; hh++) {                                                        \
            const float *qh = q + (h + hh) * n;                                                  \
            float *sh = s + (h + hh) * s_stride;                                                 \
            _mm256_storeu_ps(sh + j, reduce_pairs(a[hh][0], a[hh][1], a[hh][2], a[hh][3]));      \
            for (int jj = j; jj < j + 8; jj++)                                                   \
                for (int64_t i = n8; i < n; i++) sh[jj] += qh[i] * LOAD1(k[jj] + i);             \
        }                                                                                        \
    } while (0)

/* Head h alone against keys j..j+7, in eight-lane registers: the AVX2
 * kernel itself (pairing keys in one register costs more than it saves
 * when no other head shares the loads). */
#define QK_1X8(T, LOAD8, LOAD1)                                                                  \
    do {                                                                                         \
        const float *qh = q + h * n;                                                             \
        float *sh = s + h * s_stride;                                                            \
        __m256 a[8];                                                                             \
        for (int u = 0; u < 8; u++) a[u] = _mm256_setzero_ps();                                  \
        for (int64_t i = 0; i < n8; i += 8) {                                                    \
            const __m256 x = _mm256_loadu_ps(qh + i);                                            \
            for (int u = 0; u < 8; u++) a[u] = _mm256_fmadd_ps(x, LOAD8(k[j + u] + i), a[u]);    \
        }                                                                                        \
        _mm256_storeu_ps(sh + j, reduce8(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]));       \
        for (int jj = j; jj < j + 8; jj++)                                                       \
            for (int64_t i = n8; i < n; i++) sh[jj] += qh[i] * LOAD1(k[jj] + i);                 \
    } while (0)

/* Heads in fours (then one by one) over the keys in eights; the keys
 * after nk & ~7 one at a time, eight elements a step, as the AVX2 set
 * does, so every score is the AVX2 set's to the bit. */
#define QK_BODY(T, PAIR, LOAD8, LOAD1)                                                           \
    const int64_t n8 = n & ~(int64_t)7;                                                          \
    const int nk8 = nk & ~7;                                                                     \
    int h = 0;                                                                                   \
    for (; h + 4 <= n_q; h += 4)                                                                 \
        for (int j = 0; j < nk8; j += 8) QK_NX8(4, T, PAIR, LOAD1);                              \
    for (; h < n_q; h++)                                                                         \
        for (int j = 0; j < nk8; j += 8) QK_1X8(T, LOAD8, LOAD1);                                \
    for (h = 0; h < n_q; h++)                                                                    \
        for (int j = nk8; j < nk; j++) {                                                         \
            const float *qh = q + h * n;                                                         \
            __m256 a0 = _mm256_setzero_ps();                                                     \
            for (int64_t i = 0; i < n8; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qh + i), LOAD8(k[j] + i), a0); \
            float t = hsum8(a0);                                                                 \
            for (int64_t i = n8; i < n; i++) t += qh[i] * LOAD1(k[j] + i);                       \
            s[h * s_stride + j] = t;                                                             \
        }

A512 static void qk_f32_avx512(const float *q, int n_q, int64_t n, const float *const *k, int nk, float *s,
                               int s_stride) {
    QK_BODY(float, pair_f32, load8_f32, load1_f32)
}

A512 static void qk_f16_avx512(const float *q, int n_q, int64_t n, const uint16_t *const *k, int nk, float *s,
                               int s_stride) {
    QK_BODY(uint16_t, pair_f16, load8_f16, load1_f16)
}

/* Four heads h..h+3, elements i..i+63: sixteen registers of sums stay put
 * while the block's value rows are added in. */
#define PV_4X64(LOAD16)                                                                          \
    do {                                                                                         \
        float *c0 = acc + h * n + i, *c1 = c0 + n, *c2 = c1 + n, *c3 = c2 + n;                   \
        const float *p0 = p + h * p_stride, *p1 = p0 + p_stride, *p2 = p1 + p_stride, *p3 = p2 + p_stride; \
        __m512 a00 = _mm512_loadu_ps(c0), a01 = _mm512_loadu_ps(c0 + 16), a02 = _mm512_loadu_ps(c0 + 32), \
               a03 = _mm512_loadu_ps(c0 + 48);                                                   \
        __m512 a10 = _mm512_loadu_ps(c1), a11 = _mm512_loadu_ps(c1 + 16), a12 = _mm512_loadu_ps(c1 + 32), \
               a13 = _mm512_loadu_ps(c1 + 48);                                                   \
        __m512 a20 = _mm512_loadu_ps(c2), a21 = _mm512_loadu_ps(c2 + 16), a22 = _mm512_loadu_ps(c2 + 32), \
               a23 = _mm512_loadu_ps(c2 + 48);                                                   \
        __m512 a30 = _mm512_loadu_ps(c3), a31 = _mm512_loadu_ps(c3 + 16), a32 = _mm512_loadu_ps(c3 + 32), \
               a33 = _mm512_loadu_ps(c3 + 48);                                                   \
        for (int j = 0; j < nv; j++) {                                                           \
            const __m512 w0 = _mm512_set1_ps(p0[j]), w1 = _mm512_set1_ps(p1[j]);                 \
            const __m512 w2 = _mm512_set1_ps(p2[j]), w3 = _mm512_set1_ps(p3[j]);                 \
            __m512 x = LOAD16(v[j] + i);                                                         \
            a00 = _mm512_fmadd_ps(w0, x, a00), a10 = _mm512_fmadd_ps(w1, x, a10);                \
            a20 = _mm512_fmadd_ps(w2, x, a20), a30 = _mm512_fmadd_ps(w3, x, a30);                \
            x = LOAD16(v[j] + i + 16);                                                           \
            a01 = _mm512_fmadd_ps(w0, x, a01), a11 = _mm512_fmadd_ps(w1, x, a11);                \
            a21 = _mm512_fmadd_ps(w2, x, a21), a31 = _mm512_fmadd_ps(w3, x, a31);                \
            x = LOAD16(v[j] + i + 32);                                                           \
            a02 = _mm512_fmadd_ps(w0, x, a02), a12 = _mm512_fmadd_ps(w1, x, a12);                \
            a22 = _mm512_fmadd_ps(w2, x, a22), a32 = _mm512_fmadd_ps(w3, x, a32);                \
            x = LOAD16(v[j] + i + 48);                                                           \
            a03 = _mm512_fmadd_ps(w0, x, a03), a13 = _mm512_fmadd_ps(w1, x, a13);                \
            a23 = _mm512_fmadd_ps(w2, x, a23), a33 = _mm512_fmadd_ps(w3, x, a33);                \
        }                                                                                        \
        _mm512_storeu_ps(c0, a00), _mm512_storeu_ps(c0 + 16, a01), _mm512_storeu_ps(c0 + 32, a02); \
        _mm512_storeu_ps(c0 + 48, a03), _mm512_storeu_ps(c1, a10), _mm512_storeu_ps(c1 + 16, a11); \
        _mm512_storeu_ps(c1 + 32, a12), _mm512_storeu_ps(c1 + 48, a13), _mm512_storeu_ps(c2, a20); \
        _mm512_storeu_ps(c2 + 16, a21), _mm512_storeu_ps(c2 + 32, a22), _mm512_storeu_ps(c2 + 48, a23); \
        _mm512_storeu_ps(c3, a30), _mm512_storeu_ps(c3 + 16, a31), _mm512_storeu_ps(c3 + 32, a32); \
        _mm512_storeu_ps(c3 + 48, a33);                                                          \
    } while (0)

/* NH heads h..h+NH-1 (one to three: the heads a group of four leaves),
 * elements i..i+63: each value vector converted once for all of them, as
 * PV_4X64 does, and added to every head's sums in key order.  A decode
 * row of a model with three query heads per KV head (the serve
 * benchmark's 12 and 4) converted each value three times before
 * (bench_attn --decode: the step's attention 6% faster). */
#define PV_NX64(NH, LOAD16)                                                                      \
    do {                                                                                         \
        __m512 a[NH][4];                                                                         \
        for (int hh = 0; hh < NH; hh++)                                                          \
            for (int u = 0; u < 4; u++) a[hh][u] = _mm512_loadu_ps(acc + (h + hh) * n + i + 16 * u); \
        for (int j = 0; j < nv; j++) {                                                           \
            __m512 w[NH];                                                                        \
            for (int hh = 0; hh < NH; hh++) w[hh] = _mm512_set1_ps(p[(h + hh) * p_stride + j]);  \
            for (int u = 0; u < 4; u++) {                                                        \
                const __m512 x = LOAD16(v[j] + i + 16 * u);                                      \
                for (int hh = 0; hh < NH; hh++) a[hh][u] = _mm512_fmadd_ps(w[hh], x, a[hh][u]);  \
            }                                                                                    \
        }                                                                                        \
        for (int hh = 0; hh < NH; hh++)                                                          \
            for (int u = 0; u < 4; u++) _mm512_storeu_ps(acc + (h + hh) * n + i + 16 * u, a[hh][u]); \
    } while (0)

/* One head h, elements i..i+15. */
#define PV_1X16(LOAD16)                                                                          \
    do {                                                                                         \
        float *c0 = acc + h * n + i;                                                             \
        const float *p0 = p + h * p_stride;                                                      \
        __m512 a0 = _mm512_loadu_ps(c0);                                                         \
        for (int j = 0; j < nv; j++) a0 = _mm512_fmadd_ps(_mm512_set1_ps(p0[j]), LOAD16(v[j] + i), a0); \
        _mm512_storeu_ps(c0, a0);                                                                \
    } while (0)

#define PV_BODY(LOAD16, LOAD8, LOAD1)                                                            \
    const int64_t n8 = n & ~(int64_t)7, n16 = n & ~(int64_t)15, n64 = n & ~(int64_t)63;          \
    int h = 0;                                                                                   \
    for (; h + 4 <= n_q; h += 4)                                                                 \
        for (int64_t i = 0; i < n64; i += 64) PV_4X64(LOAD16);                                   \
    switch (n_q - h) {                                                                           \
    case 3: for (int64_t i = 0; i < n64; i += 64) PV_NX64(3, LOAD16); break;                     \
    case 2: for (int64_t i = 0; i < n64; i += 64) PV_NX64(2, LOAD16); break;                     \
    case 1: for (int64_t i = 0; i < n64; i += 64) PV_NX64(1, LOAD16); break;                     \
    default: break;                                                                              \
    }                                                                                            \
    for (h = 0; h < n_q; h++) {                                                                  \
        for (int64_t i = n64; i < n16; i += 16) PV_1X16(LOAD16);                                 \
        for (int64_t i = n16; i < n8; i += 8) {                                                  \
            __m256 c0 = _mm256_loadu_ps(acc + h * n + i);                                        \
            for (int j = 0; j < nv; j++) c0 = _mm256_fmadd_ps(_mm256_set1_ps(p[h * p_stride + j]), LOAD8(v[j] + i), c0); \
            _mm256_storeu_ps(acc + h * n + i, c0);                                               \
        }                                                                                        \
        for (int64_t i = n8; i < n; i++) {                                                       \
            float c = acc[h * n + i];                                                            \
            for (int j = 0; j < nv; j++) c += p[h * p_stride + j] * LOAD1(v[j] + i);             \
            acc[h * n + i] = c;                                                                  \
        }                                                                                        \
    }

A512 static void pv_f32_avx512(float *acc, int n_q, int64_t n, const float *p, int p_stride,
                               const float *const *v, int nv) {
    PV_BODY(load16_f32, load8_f32, load1_f32)
}

A512 static void pv_f16_avx512(float *acc, int n_q, int64_t n, const float *p, int p_stride,
                               const uint16_t *const *v, int nv) {
    PV_BODY(load16_f16, load8_f16, load1_f16)
}

/* ---- Q8_0 keys and values, widened in registers: element e of a block
 * becomes (float)qs[e] * d, the product em_dequantize_row makes (exact),
 * and goes through the float kernels' FMAs in their order, so each score
 * and sum is the bits qk_f32 / pv_f32 give over the dequantized rows (and
 * the AVX2 set's Q8_0 kernels give).  n is a multiple of 32. */

/* Block a's scale in the low eight lanes, block b's in the high. */
A512_INLINE __m512 q8_pair_d(const em_block_q8_0 *a, const em_block_q8_0 *b) {
    const __m256i h = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16((short)a->d)),
                                              _mm_set1_epi16((short)b->d), 1);
    return _mm512_cvtph_ps(h);
}
/* Elements 8 * e .. 8 * e + 7 of blocks a (low half) and b (high half)
 * as floats, d from q8_pair_d. */
A512_INLINE __m512 q8_pair_x(const em_block_q8_0 *a, const em_block_q8_0 *b, int e, __m512 d) {
    const __m128i x = _mm_unpacklo_epi64(_mm_loadl_epi64((const __m128i *)(const void *)(a->qs + 8 * e)),
                                         _mm_loadl_epi64((const __m128i *)(const void *)(b->qs + 8 * e)));
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(x)), d);
}
/* Block b's scale in every lane (sixteen, or eight). */
A512_INLINE __m512 q8_d16(const em_block_q8_0 *b) { return _mm512_cvtph_ps(_mm256_set1_epi16((short)b->d)); }
A512_INLINE __m256 q8_d8(const em_block_q8_0 *b) { return _mm256_cvtph_ps(_mm_set1_epi16((short)b->d)); }
/* Elements 16 * e .. 16 * e + 15 (or 8 * e .. 8 * e + 7) of block b. */
A512_INLINE __m512 q8_x16(const em_block_q8_0 *b, int e, __m512 d) {
    const __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(b->qs + 16 * e));
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(x)), d);
}
A512_INLINE __m256 q8_x8(const em_block_q8_0 *b, int e, __m256 d) {
    const __m128i x = _mm_loadl_epi64((const __m128i *)(const void *)(b->qs + 8 * e));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(x)), d);
}

/* Asks for every line of the Q8_0 rows x[j0..j1) (nb blocks each): a
 * row's slice need not start on a line, so the lines are taken from its
 * start to its last byte. */
A512_INLINE void q8_prefetch(const em_block_q8_0 *const *x, int j0, int j1, int64_t nb) {
    for (int j = j0; j < j1; j++) {
        const char *r = (const char *)(const void *)x[j], *end = r + nb * (int64_t)sizeof(em_block_q8_0) - 1;
        for (const char *l = r; l < end; l += 64) _mm_prefetch(l, _MM_HINT_T0);
        _mm_prefetch(end, _MM_HINT_T0);
    }
}

/* Heads h..h+NH-1 (NH = 1 to 4) against keys j..j+7 as QK_NX8: two keys
 * a register, a block's scales and quants widened once for all NH heads
 * (a decode row of the serve benchmark's model has three), reduced with
 * reduce_pairs.  The next eight keys are asked for first: the widening
 * makes a group of keys three times the instructions of the F16 kernel's
 * first pass, so without it fewer keys' misses overlap in the window
 * (the first block of a decode row's walk is asked for only as it is
 * gathered); bench_attn --decode 16 --kv-type q8_0: 15-20% less time. */
#define QK_NX8_Q8(NH)                                                                            \
    do {                                                                                         \
        const em_block_q8_0 *k0 = k[j], *k1 = k[j + 1], *k2 = k[j + 2], *k3 = k[j + 3];         \
        const em_block_q8_0 *k4 = k[j + 4], *k5 = k[j + 5], *k6 = k[j + 6], *k7 = k[j + 7];     \
        __m512 a[NH][4];                                                                         \
        for (int hh = 0; hh < NH; hh++)                                                          \
            for (int u = 0; u < 4; u++) a[hh][u] = _mm512_setzero_ps();                          \
        q8_prefetch(k, j + 8, j + 16 < nk ? j + 16 : nk, nb);                                    \
        for (int64_t b = 0; b < nb; b++) {                                                       \
            const __m512 d0 = q8_pair_d(k0 + b, k1 + b), d1 = q8_pair_d(k2 + b, k3 + b);         \
            const __m512 d2 = q8_pair_d(k4 + b, k5 + b), d3 = q8_pair_d(k6 + b, k7 + b);         \
            for (int e = 0; e < 4; e++) {                                                        \
                const __m512 p0 = q8_pair_x(k0 + b, k1 + b, e, d0), p1 = q8_pair_x(k2 + b, k3 + b, e, d1); \
                const __m512 p2 = q8_pair_x(k4 + b, k5 + b, e, d2), p3 = q8_pair_x(k6 + b, k7 + b, e, d3); \
                for (int hh = 0; hh < NH; hh++) {                                                \
                    const __m512 x = qdup(q + (h + hh) * n + 32 * b + 8 * e);                    \
                    a[hh][0] = _mm512_fmadd_ps(x, p0, a[hh][0]);                                 \
                    a[hh][1] = _mm512_fmadd_ps(x, p1, a[hh][1]);                                 \
                    a[hh][2] = _mm512_fmadd_ps(x, p2, a[hh][2]);                                 \
                    a[hh][3] = _mm512_fmadd_ps(x, p3, a[hh][3]);                                 \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
        for (int hh = 0; hh < NH; hh++)                                                          \
            _mm256_storeu_ps(s + (h + hh) * s_stride + j, reduce_pairs(a[hh][0], a[hh][1], a[hh][2], a[hh][3])); \
    } while (0)

A512 static void qk_q8_0_avx512(const float *q, int n_q, int64_t n, const em_block_q8_0 *const *k, int nk,
                                float *s, int s_stride) {
    const int64_t nb = n / 32;
    const int nk8 = nk & ~7;
    int h = 0;
    for (; h + 4 <= n_q; h += 4)
        for (int j = 0; j < nk8; j += 8) QK_NX8_Q8(4);
    switch (n_q - h) {
    case 3: for (int j = 0; j < nk8; j += 8) QK_NX8_Q8(3); break;
    case 2: for (int j = 0; j < nk8; j += 8) QK_NX8_Q8(2); break;
    case 1: for (int j = 0; j < nk8; j += 8) QK_NX8_Q8(1); break;
    default: break;
    }
    /* The keys after nk & ~7 one at a time, eight lanes, hsum8. */
    for (h = 0; h < n_q; h++)
        for (int j = nk8; j < nk; j++) {
            const float *qh = q + h * n;
            __m256 a0 = _mm256_setzero_ps();
            for (int64_t b = 0; b < nb; b++) {
                const __m256 d = q8_d8(k[j] + b);
                for (int e = 0; e < 4; e++)
                    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qh + 32 * b + 8 * e), q8_x8(k[j] + b, e, d), a0);
            }
            s[h * s_stride + j] = hsum8(a0);
        }
}

/* NH heads h..h+NH-1 (one to four), elements i..i+63 (two blocks of each
 * value): each value vector widened once for all of them and added to
 * every head's sums in key order, as PV_4X64 / PV_NX64. */
#define PV_NX64_Q8(NH)                                                                           \
    do {                                                                                         \
        __m512 c[NH][4];                                                                         \
        for (int hh = 0; hh < NH; hh++)                                                          \
            for (int u = 0; u < 4; u++) c[hh][u] = _mm512_loadu_ps(acc + (h + hh) * n + i + 16 * u); \
        for (int j = 0; j < nv; j++) {                                                           \
            const em_block_q8_0 *vb = v[j] + i / 32;                                             \
            __m512 w[NH];                                                                        \
            for (int hh = 0; hh < NH; hh++) w[hh] = _mm512_set1_ps(p[(h + hh) * p_stride + j]);  \
            const __m512 d0 = q8_d16(vb), d1 = q8_d16(vb + 1);                                   \
            for (int u = 0; u < 4; u++) {                                                        \
                const __m512 x = q8_x16(vb + (u >> 1), u & 1, u < 2 ? d0 : d1);                  \
                for (int hh = 0; hh < NH; hh++) c[hh][u] = _mm512_fmadd_ps(w[hh], x, c[hh][u]);  \
            }                                                                                    \
        }                                                                                        \
        for (int hh = 0; hh < NH; hh++)                                                          \
            for (int u = 0; u < 4; u++) _mm512_storeu_ps(acc + (h + hh) * n + i + 16 * u, c[hh][u]); \
    } while (0)

A512 static void pv_q8_0_avx512(float *acc, int n_q, int64_t n, const float *p, int p_stride,
                                const em_block_q8_0 *const *v, int nv) {
    const int64_t n64 = n & ~(int64_t)63;
    int h = 0;
    for (; h + 4 <= n_q; h += 4)
        for (int64_t i = 0; i < n64; i += 64) PV_NX64_Q8(4);
    switch (n_q - h) {
    case 3: for (int64_t i = 0; i < n64; i += 64) PV_NX64_Q8(3); break;
    case 2: for (int64_t i = 0; i < n64; i += 64) PV_NX64_Q8(2); break;
    case 1: for (int64_t i = 0; i < n64; i += 64) PV_NX64_Q8(1); break;
    default: break;
    }
    /* A last block of 32 (n an odd multiple of 32), head by head. */
    if (n64 < n)
        for (h = 0; h < n_q; h++) {
            float *c0 = acc + h * n + n64;
            __m512 a0 = _mm512_loadu_ps(c0), a1 = _mm512_loadu_ps(c0 + 16);
            for (int j = 0; j < nv; j++) {
                const em_block_q8_0 *vb = v[j] + n64 / 32;
                const __m512 w = _mm512_set1_ps(p[h * p_stride + j]), d = q8_d16(vb);
                a0 = _mm512_fmadd_ps(w, q8_x16(vb, 0, d), a0);
                a1 = _mm512_fmadd_ps(w, q8_x16(vb, 1, d), a1);
            }
            _mm512_storeu_ps(c0, a0), _mm512_storeu_ps(c0 + 16, a1);
        }
}

/* The AVX2 set's exp_sum, sixteen exponentials at a time: the sum still
 * adds eight lanes at a time in the same order, and ends with the same
 * tree. */
A512_INLINE float exp_sum_body(float *s, int n, float m) {
    const __m512 mv = _mm512_set1_ps(m);
    __m256 acc = _mm256_setzero_ps();
    int j = 0;
    for (; j + 16 <= n; j += 16) {
        const __m512 e = em_exp16_avx512(_mm512_sub_ps(_mm512_loadu_ps(s + j), mv));
        _mm512_storeu_ps(s + j, e);
        acc = _mm256_add_ps(acc, lo8(e));
        acc = _mm256_add_ps(acc, hi8(e));
    }
    const int rem = n - j;
    if (rem > 0) {
        const __mmask16 k = (__mmask16)((1u << rem) - 1);
        const __m512 e = em_exp16_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + j), mv));
        _mm512_mask_storeu_ps(s + j, k, e);
        const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        if (rem >= 8) {
            acc = _mm256_add_ps(acc, lo8(e));
            if (rem > 8) {
                const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(rem - 8), idx);
                acc = _mm256_add_ps(acc, _mm256_and_ps(hi8(e), _mm256_castsi256_ps(mask)));
            }
        } else {
            const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(rem), idx);
            acc = _mm256_add_ps(acc, _mm256_and_ps(lo8(e), _mm256_castsi256_ps(mask)));
        }
    }
    return hsum8(acc);
}

A512 static float exp_sum_avx512(float *s, int n, float m) { return exp_sum_body(s, n, m); }

A512 static void exp_rows_avx512(float *s, int nq, int stride, int n, const float *m, float *sum) {
    for (int h = 0; h < nq; h++) sum[h] = exp_sum_body(s + (int64_t)h * stride, n, m[h]);
}

const em_attn_kernels em_attn_kernels_avx512 = {
    .qk_f32 = qk_f32_avx512,
    .qk_f16 = qk_f16_avx512,
    .pv_f32 = pv_f32_avx512,
    .pv_f16 = pv_f16_avx512,
    .qk_q8_0 = qk_q8_0_avx512,
    .pv_q8_0 = pv_q8_0_avx512,
    .exp_sum = exp_sum_avx512,
    .scale_max = em_attn_scale_max_avx2,
    .exp_rows = exp_rows_avx512,
};

#endif
