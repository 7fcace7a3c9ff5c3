/*
 * gemm_float_avx2.c - the AVX2 prompt-processing product of F16, BF16 and
 * F32 weight rows with F32 activation rows: the AVX2 twin of
 * gemm_float_avx512.c (read its comment first), with 16 vector registers.
 *
 * For each panel of EM_FP2_NR = 16 weight rows and each slice of
 * EM_FP2_KC elements of k, the slice is converted to F32 and transposed
 * (8 x 8 blocks) into a thread-local buffer wp[e][j] (32 KiB); the
 * microkernel then keeps EM_FP2_MR = 6 activation rows x 2 vectors of 8
 * output columns in 12 registers, and per element loads two weight
 * vectors and broadcasts each row's a[r][e]: 12 multiply-adds for 8
 * loads.  Sums per slice in element order, added slice after slice, and
 * blocks of EM_FP2_NC columns slice by slice, as in the AVX-512 kernel.
 *
 * Compiled with -mavx2 -mfma -mf16c (the *avx2*.c rule of
 * CMakeLists.txt); called only after the CPU check of dispatch.c.
 */
#include "quant/gemm.h"
#include "quant/arch/x86/gemm_float_walk.h"

#if defined(EM_HAVE_X86_GEMM)

#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "gemm_float_avx2.c must be compiled with -mavx2 -mfma -mf16c"
#endif

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define AI __attribute__((always_inline))

/* Output columns (weight rows) per panel: two vectors of 8. */
#define EM_FP2_NR 16
/* Activation rows per microkernel tile: 12 accumulators, two weight
 * vectors and a broadcast or two fill the 16 vector registers. */
#define EM_FP2_MR 6
/* Elements of k per slice: the converted slice is EM_FP2_KC * 64 bytes. */
#ifndef EM_FP2_KC
#define EM_FP2_KC 512
#endif
/* Output columns per block (a multiple of EM_FP2_NR). */
#ifndef EM_FP2_NC
#define EM_FP2_NC 64
#endif

/* wp2_buf[e * EM_FP2_NR + j] = weight row j0 + j at element e0 + e, as
 * F32 (zero for rows past the matrix). */
static _Thread_local float wp2_buf[EM_FP2_KC * EM_FP2_NR] __attribute__((aligned(32)));

/* 8 weights of a row at p as floats; n < 8 reads only the first n (the
 * rest are 0). */
static inline AI __m256 load8(const int kind, const uint8_t *p, int n) {
    const size_t es = kind == EM_FLOAT_F32 ? 4 : 2;
    uint8_t tmp[32] = {0};
    if (n < 8) {
        memcpy(tmp, p, (size_t)n * es);
        p = tmp;
    }
    if (kind == EM_FLOAT_F32) return _mm256_loadu_ps((const float *)(const void *)p);
    const __m128i h = _mm_loadu_si128((const __m128i *)(const void *)p);
    if (kind == EM_FLOAT_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* Transposes the 8 x 8 floats r[i][c] in place into r[c][i]. */
static inline AI void transpose8(__m256 *r) {
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* u[4g + q]: rows 4g .. 4g+3, column q (lane 0) and q + 4 (lane 1). */
    for (int g = 0; g < 2; g++) {
        u[4 * g + 0] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xee);
        u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xee);
    }
    for (int q = 0; q < 4; q++) {
        r[q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x20);
        r[4 + q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x31);
    }
}

/* Converts elements [e0, e0 + kc) of weight rows w[0 .. nr) (stride ws,
 * nr <= EM_FP2_NR) into wp2_buf, 8 x 8 blocks at a time. */
static inline AI void pack_slice2(const int kind, const uint8_t *w, size_t ws, int nr, int64_t e0, int64_t kc) {
    const size_t es = kind == EM_FLOAT_F32 ? 4 : 2;
    for (int h = 0; h < EM_FP2_NR / 8; h++) {
        for (int64_t t0 = 0; t0 < kc; t0 += 8) {
            const int n = (int)(kc - t0 < 8 ? kc - t0 : 8);
            __m256 r[8];
            for (int i = 0; i < 8; i++) {
                const int row = 8 * h + i;
                r[i] = row < nr ? load8(kind, w + (size_t)row * ws + (size_t)(e0 + t0) * es, n) : _mm256_setzero_ps();
            }
            transpose8(r);
            float *d = wp2_buf + t0 * EM_FP2_NR + 8 * h;
            for (int c = 0; c < n; c++) _mm256_store_ps(d + c * EM_FP2_NR, r[c]);
        }
    }
}

/* Part `part` of `parts` of the weights a later pack_slice2 reads, asked
 * for towards L2 (see prefetch_part in gemm_float_avx512.c). */
static inline AI void prefetch_part2(const int kind, const uint8_t *w, size_t ws, int nr, int64_t e0, int64_t kc,
                                     int64_t part, int64_t parts) {
    const size_t es = kind == EM_FLOAT_F32 ? 4 : 2;
    const size_t lines = ((size_t)kc * es + 63) / 64;
    for (int i = 0; i < nr; i++) {
        const char *p = (const char *)w + (size_t)i * ws + (size_t)e0 * es;
        for (size_t l = (size_t)part; l < lines; l += (size_t)parts) _mm_prefetch(p + 64 * l, _MM_HINT_T1);
    }
}

#define M2_DECL(r) __m256 c##r##0 = _mm256_setzero_ps(), c##r##1 = c##r##0;
#define M2_FMA(r)                                                                                  \
    if (RN > r) {                                                                                  \
        const __m256 b = _mm256_broadcast_ss(ar[r] + e);                                           \
        c##r##0 = _mm256_fmadd_ps(w0, b, c##r##0);                                                 \
        c##r##1 = _mm256_fmadd_ps(w1, b, c##r##1);                                                 \
    }
#define M2_STORE(r)                                                                                \
    if (RN > r) {                                                                                  \
        float *o = out + r * ldo;                                                                  \
        if (nr == EM_FP2_NR) {                                                                     \
            if (!first) {                                                                          \
                c##r##0 = _mm256_add_ps(c##r##0, _mm256_loadu_ps(o));                              \
                c##r##1 = _mm256_add_ps(c##r##1, _mm256_loadu_ps(o + 8));                          \
            }                                                                                      \
            _mm256_storeu_ps(o, c##r##0);                                                          \
            _mm256_storeu_ps(o + 8, c##r##1);                                                      \
        } else {                                                                                   \
            float v[EM_FP2_NR];                                                                    \
            _mm256_storeu_ps(v, c##r##0);                                                          \
            _mm256_storeu_ps(v + 8, c##r##1);                                                      \
            for (int j = 0; j < nr; j++) o[j] = first ? v[j] : o[j] + v[j];                        \
        }                                                                                          \
    }
#define FOR_R2(X) X(0) X(1) X(2) X(3) X(4) X(5)

/* RN activation rows (ar[r] points at element e0 of row r) times the
 * converted slice: outputs out[r * ldo + j] for j < nr, stored when
 * first, else added. */
static inline AI void micro2(const int RN, int64_t kc, const float *const *ar, float *out, int64_t ldo, bool first,
                             int nr) {
    FOR_R2(M2_DECL)
    const float *wq = wp2_buf;
    for (int64_t e = 0; e < kc; e++, wq += EM_FP2_NR) {
        const __m256 w0 = _mm256_load_ps(wq), w1 = _mm256_load_ps(wq + 8);
        FOR_R2(M2_FMA)
    }
    FOR_R2(M2_STORE)
}

static inline AI void micro2_rows(int rn, int64_t kc, const float *const *ar, float *out, int64_t ldo, bool first,
                                  int nr) {
    switch (rn) {
#define M2_CASE(n)                                                                                 \
    case n + 1: micro2(n + 1, kc, ar, out, ldo, first, nr); break;
        FOR_R2(M2_CASE)
#undef M2_CASE
    default: break;
    }
}

static inline AI void gemm_panels2(const int kind, int64_t k, const void *w, size_t ws, int64_t nw, const void *a,
                                   size_t as, int64_t na, float *out, int64_t ldo) {
    const int64_t n_tiles = (na + EM_FP2_MR - 1) / EM_FP2_MR;
    int64_t j0 = 0, e0 = 0;
    do {
        const int nr = (int)(nw - j0 < EM_FP2_NR ? nw - j0 : EM_FP2_NR);
        const int64_t kc = k - e0 < EM_FP2_KC ? k - e0 : EM_FP2_KC;
        pack_slice2(kind, (const uint8_t *)w + (size_t)j0 * ws, ws, nr, e0, kc);
        int64_t pj = j0, pe = e0;
        const bool more = em_fp_next_slice(EM_FP2_NC, EM_FP2_NR, EM_FP2_KC, k, nw, &pj, &pe);
        const uint8_t *pw = (const uint8_t *)w + (size_t)pj * ws;
        const int pnr = (int)(nw - pj < EM_FP2_NR ? nw - pj : EM_FP2_NR);
        const int64_t pkc = k - pe < EM_FP2_KC ? k - pe : EM_FP2_KC;
        int64_t r0 = 0;
        for (int64_t t = 0; t < n_tiles; t++) {
            if (more) prefetch_part2(kind, pw, ws, pnr, pe, pkc, t, n_tiles);
            const int rn = (int)((na - r0 + (n_tiles - t) - 1) / (n_tiles - t));
            const float *ar[EM_FP2_MR];
            for (int r = 0; r < EM_FP2_MR; r++)
                ar[r] = (const float *)(const void *)((const uint8_t *)a + (size_t)(r0 + (r < rn ? r : rn - 1)) * as) + e0;
            micro2_rows(rn, kc, ar, out + r0 * ldo + j0, ldo, e0 == 0, nr);
            r0 += rn;
        }
    } while (em_fp_next_slice(EM_FP2_NC, EM_FP2_NR, EM_FP2_KC, k, nw, &j0, &e0));
}

void em_gemm_f32_panels_avx2(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, size_t as, int64_t na,
                             float *out, int64_t ldo) {
    gemm_panels2(EM_FLOAT_F32, k, w, ws, nw, a, as, na, out, ldo);
}

void em_gemm_f16_panels_avx2(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, size_t as, int64_t na,
                             float *out, int64_t ldo) {
    gemm_panels2(EM_FLOAT_F16, k, w, ws, nw, a, as, na, out, ldo);
}

void em_gemm_bf16_panels_avx2(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, size_t as, int64_t na,
                              float *out, int64_t ldo) {
    gemm_panels2(EM_FLOAT_BF16, k, w, ws, nw, a, as, na, out, ldo);
}

#endif /* EM_HAVE_X86_GEMM */
