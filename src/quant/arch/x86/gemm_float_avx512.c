/*
 * gemm_float_avx512.c - the AVX-512 prompt-processing product of F16,
 * BF16 and F32 weight rows with F32 activation rows: a register-blocked
 * outer-product kernel over a weight panel converted to F32 once per call.
 *
 * Why not the tile kernel of gemm_avx2.c.  That kernel takes four weight
 * rows and six activation rows along k, so every F16 weight vector it
 * loads is converted (vcvtph2ps, which shares the FMA pipes) for just six
 * multiply-adds, and its ten streams of a whole row each (40 KiB and more
 * per tile) run from L2 instead of L1: 64% of the FMA peak.  Here every
 * weight element is converted exactly once per call however many
 * activation rows there are, and the multiply-adds read it from L1.
 *
 * Blocking.  For each panel of EM_FP_NR = 32 weight rows (output columns
 * j0 .. j0 + 31) and each slice of EM_FP_KC elements of k, the panel's
 * slice is converted to F32 and transposed (F16 and BF16 as 16-bit
 * values, before widening: pack_slice16) into a thread-local buffer,
 * wp[e][j] (32 KiB, which stays in the 48 KiB L1 data cache of the
 * machines measured), so that one 64-byte load gives 16 consecutive output
 * columns at element e.  (F16 and BF16 panels stay 16-bit, 16 KiB, and
 * the microkernel widens them as it loads them.)  Then for every tile of up to
 * EM_FP_MR = 14 activation rows the microkernel keeps 14 x 2 accumulators
 * of 16 output columns in registers, and per element e loads two weight vectors and
 * broadcasts each row's a[r][e] against both: 28 multiply-adds for 16
 * loads, all from L1 except the activation lines (one new line per row
 * every 16 elements).  The slice's sums are stored (first slice) or added
 * (later slices) to the outputs.  Activation tiles are balanced (128 rows
 * are ten tiles of 12 or 13, not nine of 14 and one of 2), since a short
 * tile has too few independent accumulators to hide the FMA latency.
 *
 * Each output is a sum over its slices, each slice summed in element
 * order: the same order whichever tile or call the activation row falls
 * in, so results do not depend on the batch size (down to the bit) as
 * long as this kernel is used.  The conversions are exact (F16 and BF16
 * are subsets of F32); only the order of additions differs from the
 * scalar reference (em_vec_dot_generic), as in every other kernel.
 *
 * Compiled without ISA flags: every function carries its target
 * attribute, and em_gemm_f16_avx512 and the others call this only after
 * the CPU check of dispatch.c.
 */
#include "quant/gemm.h"
#include "quant/arch/x86/gemm_float_walk.h"

#if defined(EM_HAVE_X86_GEMM)

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#define AI __attribute__((always_inline))
#define TF __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

/* Output columns (weight rows) per panel: two vectors of 16. */
#define EM_FP_NR 32
/* Activation rows per microkernel tile: 28 accumulators, two weight
 * vectors and one broadcast use 31 of the 32 vector registers. */
#define EM_FP_MR 14
/* Elements of k per slice: the converted panel slice is
 * EM_FP_KC * EM_FP_NR * 4 bytes = 32 KiB. */
#ifndef EM_FP_KC
#define EM_FP_KC 256
#endif
/* Output columns per block (a multiple of EM_FP_NR), see gemm_panels. */
#ifndef EM_FP_NC
#define EM_FP_NC 128
#endif

/* The converted slice of one panel, wp[e * EM_FP_NR + j] = weight row
 * j0 + j at element e0 + e, as F32 (zero for rows past the matrix). */
static _Thread_local float wp_buf[EM_FP_KC * EM_FP_NR] __attribute__((aligned(64)));
/* The same for F16 and BF16 weights, transposed but still 16-bit
 * (16 KiB): the microkernel widens each vector as it loads it. */
static _Thread_local uint16_t wp16_buf[EM_FP_KC * EM_FP_NR] __attribute__((aligned(64)));
/* Elements per row of the staging copy below: a slice and one line more,
 * so that its rows (576 bytes apart) fall into different L1 sets. */
#define EM_FP_SS (EM_FP_KC + 32)
/* A slice of a 16-bit panel copied as it is, row j at stage16[j * EM_FP_SS]
 * (18 KiB). */
static _Thread_local uint16_t stage16[EM_FP_NR * EM_FP_SS] __attribute__((aligned(64)));


/* 16 weights of a row at p as floats (masked-off lanes read nothing and
 * give 0). */
static inline AI TF __m512 load16(const int kind, const uint8_t *p, __mmask16 m) {
    if (kind == EM_FLOAT_F32) return _mm512_maskz_loadu_ps(m, p);
    const __m256i h = _mm256_maskz_loadu_epi16(m, p);
    if (kind == EM_FLOAT_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

static inline AI TF __m512 unpacklo_pd_ps(__m512 a, __m512 b) {
    return _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
}
static inline AI TF __m512 unpackhi_pd_ps(__m512 a, __m512 b) {
    return _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
}

/* Transposes the 16 x 16 floats r[i][c] in place into r[c][i]: 32-bit
 * then 64-bit interleaves within 128-bit lanes leave, for each group of
 * four rows g and offset q, a vector whose lane L holds column 4L + q of
 * those rows; two rounds of 128-bit lane shuffles gather the four groups'
 * lane L into column 4L + q. */
static inline AI TF void transpose16(__m512 *r) {
    __m512 t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* u[4g + q]: rows 4g .. 4g+3, column 4L + q in lane L. */
    for (int g = 0; g < 4; g++) {
        u[4 * g + 0] = unpacklo_pd_ps(t[4 * g], t[4 * g + 2]);
        u[4 * g + 1] = unpackhi_pd_ps(t[4 * g], t[4 * g + 2]);
        u[4 * g + 2] = unpacklo_pd_ps(t[4 * g + 1], t[4 * g + 3]);
        u[4 * g + 3] = unpackhi_pd_ps(t[4 * g + 1], t[4 * g + 3]);
    }
    for (int q = 0; q < 4; q++) {
        const __m512 x0 = _mm512_shuffle_f32x4(u[q], u[4 + q], 0x44);
        const __m512 x1 = _mm512_shuffle_f32x4(u[q], u[4 + q], 0xee);
        const __m512 x2 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0x44);
        const __m512 x3 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0xee);
        r[q] = _mm512_shuffle_f32x4(x0, x2, 0x88);
        r[4 + q] = _mm512_shuffle_f32x4(x0, x2, 0xdd);
        r[8 + q] = _mm512_shuffle_f32x4(x1, x3, 0x88);
        r[12 + q] = _mm512_shuffle_f32x4(x1, x3, 0xdd);
    }
}

/* Converts elements [e0, e0 + kc) of F32 weight rows w[0 .. nr) (stride
 * ws, nr <= EM_FP_NR) into wp_buf, 16 x 16 blocks at a time.  Weight rows of
 * a power-of-two length fall into one set of the L1 cache, so the 16
 * lines under two neighbouring blocks would evict each other before the
 * second block is read: they are copied first, whole, into 16 adjacent
 * lines of a small stage, from which both blocks are converted. */
static inline AI TF void pack_slice(const int kind, const uint8_t *w, size_t ws, int nr, int64_t e0, int64_t kc) {
    const size_t es = kind == EM_FLOAT_F32 ? 4 : 2;
    const int64_t step = 64 / (int64_t)es; /* elements per line */
    uint8_t stage[16 * 64] __attribute__((aligned(64)));
    for (int h = 0; h < EM_FP_NR / 16; h++) {
        for (int64_t t1 = 0; t1 < kc; t1 += step) {
            const int64_t nl = kc - t1 < step ? kc - t1 : step;
            const __mmask64 ml = (__mmask64)(~0ull >> (64 - (size_t)nl * es));
            for (int i = 0; i < 16; i++) {
                const int row = 16 * h + i;
                const __m512i v = row < nr ? _mm512_maskz_loadu_epi8(ml, w + (size_t)row * ws + (size_t)(e0 + t1) * es)
                                           : _mm512_setzero_si512();
                _mm512_store_si512(stage + 64 * i, v);
            }
            for (int64_t t0 = t1; t0 < t1 + nl; t0 += 16) {
                const int64_t n = t1 + nl - t0 < 16 ? t1 + nl - t0 : 16;
                __m512 r[16];
                for (int i = 0; i < 16; i++) r[i] = load16(kind, stage + 64 * i + (size_t)(t0 - t1) * es, 0xffff);
                transpose16(r);
                float *d = wp_buf + t0 * EM_FP_NR + 16 * h;
                if (n == 16)
                    for (int c = 0; c < 16; c++) _mm512_store_ps(d + c * EM_FP_NR, r[c]);
                else
                    for (int c = 0; c < n; c++) _mm512_store_ps(d + c * EM_FP_NR, r[c]);
            }
        }
    }
}

/* The same for 16-bit weights (F16, BF16), by blocks of 32 rows x 32
 * elements: one 64-byte line of each row, read once and whole, is
 * transposed as 16-bit values before widening.  For each group of 8 rows
 * three rounds of interleaves within 128-bit lanes leave, for each offset
 * q, a vector whose lane L holds the group's 8 values at element 8L + q;
 * two rounds of 128-bit lane shuffles then gather the four groups' lane L
 * into element 8L + q of all 32 rows, which the microkernel widens to
 * its two vectors.  That is 160 shuffles per 1024 elements against 256
 * for the float transpose above.
 *
 * The rows are first copied as they are into stage16, a row at a time,
 * and the blocks are stored unwidened into wp16_buf.  Weight rows of 2048
 * F16 elements are 4 KiB apart, so the 32 lines of a block all fall into
 * one set of the 12-way L1 cache; read straight from the matrix the
 * block's loads missed in turn (in a test build the conversion alone took
 * 8-9% of the kernel's time at 128 activation rows, 2-3% from the stage).
 * The smaller panel leaves L1 room for the activation lines, and with one
 * conversion shared by few activation rows (batched decoding) it is
 * 1.1-1.7x faster than widening the panel here (docs/PERFORMANCE-HISTORY.md, F16
 * round 6). */
static inline AI TF void pack_slice16(const uint8_t *w, size_t ws, int nr, int64_t e0, int64_t kc) {
    /* Lines past kc are zero-filled, so the blocks below read whole lines. */
    for (int i = 0; i < nr; i++) {
        const uint8_t *src = w + (size_t)i * ws + (size_t)e0 * 2;
        uint16_t *d = stage16 + (size_t)i * EM_FP_SS;
        for (int64_t t = 0; t < kc; t += 32) {
            const __mmask32 ml = kc - t >= 32 ? ~(__mmask32)0 : (__mmask32)((1u << (kc - t)) - 1);
            _mm512_store_si512(d + t, _mm512_maskz_loadu_epi16(ml, src + (size_t)t * 2));
        }
    }
    for (int64_t t0 = 0; t0 < kc; t0 += 32) {
        const int64_t n = kc - t0 < 32 ? kc - t0 : 32;
        __m512i tr[32]; /* tr[8g + q]: rows 8g .. 8g+7 at element 8L + q in lane L */
        for (int g = 0; g < 4; g++) {
            __m512i r[8], p[8], q[8];
            for (int i = 0; i < 8; i++) {
                const int row = 8 * g + i;
                r[i] = row < nr ? _mm512_load_si512(stage16 + (size_t)row * EM_FP_SS + t0) : _mm512_setzero_si512();
            }
            /* p[2i], p[2i+1]: rows 2i, 2i+1 at elements 0-3 and 4-7 of each lane. */
            for (int i = 0; i < 4; i++) {
                p[2 * i] = _mm512_unpacklo_epi16(r[2 * i], r[2 * i + 1]);
                p[2 * i + 1] = _mm512_unpackhi_epi16(r[2 * i], r[2 * i + 1]);
            }
            /* q[4h + m]: rows 4h .. 4h+3 at elements 2m, 2m + 1 of each lane. */
            for (int h = 0; h < 2; h++) {
                q[4 * h + 0] = _mm512_unpacklo_epi32(p[4 * h], p[4 * h + 2]);
                q[4 * h + 1] = _mm512_unpackhi_epi32(p[4 * h], p[4 * h + 2]);
                q[4 * h + 2] = _mm512_unpacklo_epi32(p[4 * h + 1], p[4 * h + 3]);
                q[4 * h + 3] = _mm512_unpackhi_epi32(p[4 * h + 1], p[4 * h + 3]);
            }
            for (int m = 0; m < 4; m++) {
                tr[8 * g + 2 * m] = _mm512_unpacklo_epi64(q[m], q[4 + m]);
                tr[8 * g + 2 * m + 1] = _mm512_unpackhi_epi64(q[m], q[4 + m]);
            }
        }
        for (int q = 0; q < 8; q++) {
            const __m512i x0 = _mm512_shuffle_i64x2(tr[q], tr[8 + q], 0x44);
            const __m512i x1 = _mm512_shuffle_i64x2(tr[q], tr[8 + q], 0xee);
            const __m512i x2 = _mm512_shuffle_i64x2(tr[16 + q], tr[24 + q], 0x44);
            const __m512i x3 = _mm512_shuffle_i64x2(tr[16 + q], tr[24 + q], 0xee);
            __m512i o[4];
            o[0] = _mm512_shuffle_i64x2(x0, x2, 0x88);
            o[1] = _mm512_shuffle_i64x2(x0, x2, 0xdd);
            o[2] = _mm512_shuffle_i64x2(x1, x3, 0x88);
            o[3] = _mm512_shuffle_i64x2(x1, x3, 0xdd);
            for (int l = 0; l < 4; l++) {
                const int64_t c = 8 * l + q;
                if (c < n) _mm512_store_si512(wp16_buf + (t0 + c) * EM_FP_NR, o[l]);
            }
        }
    }
}

/* The weights a later pack_slice reads (rows w[0 .. nr), elements
 * [e0, e0 + kc)), asked for towards L2 a part at a time: the lines of row
 * piece i with (line number % parts) == part.  Short pieces of 32 rows
 * are no stream the hardware prefetchers pick up in time, and asking for
 * all of them at once would stall on the queue of outstanding misses, so
 * each activation tile asks for its share of the next slice. */
static inline AI TF void prefetch_part(const int kind, const uint8_t *w, size_t ws, int nr, int64_t e0, int64_t kc,
                                       int64_t part, int64_t parts) {
    const size_t es = kind == EM_FLOAT_F32 ? 4 : 2;
    const size_t lines = ((size_t)kc * es + 63) / 64;
    for (int i = 0; i < nr; i++) {
        const char *p = (const char *)w + (size_t)i * ws + (size_t)e0 * es;
        for (size_t l = (size_t)part; l < lines; l += (size_t)parts) _mm_prefetch(p + 64 * l, _MM_HINT_T1);
    }
}

/* The lines of the next slice that one activation tile asks for while
 * it runs: consecutive row pieces of the next panel, every line of each
 * (see gemm_panels). */
typedef struct {
    const char *p; /* the next line to ask for */
    int64_t n;     /* lines left */
    int64_t nl;    /* lines per row piece */
    int64_t l;     /* the line's number within its row piece */
    size_t skip;   /* bytes from past a row piece's last line to the next row's first */
} em_fp_ahead;

/* Elements of k between two lines a tile asks for: at 128 activation
 * rows (ten tiles, eight of them asking) a tile's 32 lines go out over
 * the first 128 of its 256 elements. */
#define EM_FP_PF_EVERY 4

/* Asks for the next line of pf towards L2 and steps past it. */
static inline AI TF void ahead_line(em_fp_ahead *pf) {
    _mm_prefetch(pf->p, _MM_HINT_T1);
    pf->p += 64;
    pf->n--;
    if (++pf->l == pf->nl) {
        pf->l = 0;
        pf->p += pf->skip;
    }
}

#define MR_DECL(r) __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = c##r##0;
#define MR_FMA(r)                                                                                  \
    if (RN > r) {                                                                                  \
        const __m512 b = _mm512_set1_ps(AROW(r));                                                  \
        c##r##0 = _mm512_fmadd_ps(w0, b, c##r##0);                                                 \
        c##r##1 = _mm512_fmadd_ps(w1, b, c##r##1);                                                 \
    }
#define MR_STORE(r)                                                                                \
    if (RN > r) {                                                                                  \
        float *o = out + r * ldo;                                                                  \
        if (!first) {                                                                              \
            c##r##0 = _mm512_add_ps(c##r##0, _mm512_maskz_loadu_ps(m0, o));                        \
            c##r##1 = _mm512_add_ps(c##r##1, _mm512_maskz_loadu_ps(m1, o + 16));                   \
        }                                                                                          \
        _mm512_mask_storeu_ps(o, m0, c##r##0);                                                     \
        _mm512_mask_storeu_ps(o + 16, m1, c##r##1);                                                \
    }
#define FOR_R(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13)

/* The 16 weights at h (16-bit, from wp16_buf) as floats. */
static inline AI TF __m512 widen16(const int kind, const uint16_t *h) {
    const __m256i v = _mm256_load_si256((const __m256i *)(const void *)h);
    if (kind == EM_FLOAT_F16) return _mm512_cvtph_ps(v);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
}

/* Activation row r of a tile at the current element: rows are reached
 * from five base pointers, one per three rows, plus 0, 1 or 2 row strides,
 * so that a tile needs six general registers for its rows instead of 14.
 * With one pointer per row, the 13- and 14-row loops ran out of registers
 * and reloaded two row pointers from the stack at every element. */
#define AROW(r) (*(const float *)(const void *)(qb[(r) / 3] + (size_t)((r) % 3) * as))

/* RN activation rows (row r at a + r * as bytes, from element e0) times
 * the converted slice (wp_buf for F32 weights, wp16_buf for the others):
 * outputs out[r * ldo + j] for the columns in masks m0 (j < 16) and m1
 * (16 <= j < 32), stored when first, else added.  Widening F16 weights
 * here, once per tile, measured faster than storing them widened (see
 * pack_slice16): vcvtph2ps does not take the FMA pipes' place on the
 * machines measured. */
static inline AI TF void micro(const int kind, const int RN, int64_t kc, const float *a, size_t as, float *out,
                               int64_t ldo, bool first, __mmask16 m0, __mmask16 m1, em_fp_ahead pf) {
    const uint8_t *qb[5];
    for (int i = 0; i < 5; i++) qb[i] = (const uint8_t *)(const void *)a + (size_t)(3 * i < RN ? 3 * i : 0) * as;
    FOR_R(MR_DECL)
    if (kind == EM_FLOAT_F32) {
        const float *wq = wp_buf;
        for (int64_t e = 0; e < kc; e++, wq += EM_FP_NR) {
            const __m512 w0 = _mm512_load_ps(wq), w1 = _mm512_load_ps(wq + 16);
            FOR_R(MR_FMA)
            for (int i = 0; i < 5; i++) qb[i] += sizeof(float);
        }
    } else {
        const uint16_t *wq = wp16_buf;
#define STEP16()                                                                                   \
    do {                                                                                           \
        const __m512 w0 = widen16(kind, wq), w1 = widen16(kind, wq + 16);                          \
        FOR_R(MR_FMA)                                                                              \
        for (int i = 0; i < 5; i++) qb[i] += sizeof(float);                                        \
        wq += EM_FP_NR;                                                                            \
    } while (0)
        /* The tile's share of the next slice's lines, one line per
         * EM_FP_PF_EVERY elements while they last; any left over (a short
         * slice) after the loop. */
        int64_t e = 0;
        for (; e + EM_FP_PF_EVERY <= kc && pf.n > 0; e += EM_FP_PF_EVERY) {
#pragma GCC unroll 8
            for (int u = 0; u < EM_FP_PF_EVERY; u++) STEP16();
            ahead_line(&pf);
        }
        for (; e < kc; e++) STEP16();
        while (pf.n > 0) ahead_line(&pf);
#undef STEP16
    }
    FOR_R(MR_STORE)
}

/* One tile of rn <= EM_FP_MR rows: the instance for that height. */
static inline AI TF void micro_rows(const int kind, int rn, int64_t kc, const float *a, size_t as, float *out,
                                    int64_t ldo, bool first, __mmask16 m0, __mmask16 m1, em_fp_ahead pf) {
    switch (rn) {
#define MR_CASE(n)                                                                                 \
    case n + 1: micro(kind, n + 1, kc, a, as, out, ldo, first, m0, m1, pf); break;
        FOR_R(MR_CASE)
#undef MR_CASE
    default: break;
    }
}

/* Columns are taken EM_FP_NC (a few panels) at a time, and within such a
 * block slice by slice, so that one slice of all activation rows
 * (na x EM_FP_KC floats: 128 KiB for 128 rows) stays in L2 while every
 * panel of the block passes over it, and the block's outputs
 * (na x EM_FP_NC floats) too.  Activation rows a multiple of 4 KiB apart
 * put a tile's lines into one L1 set: the forward pass hands batches over
 * with padded strides (model/forward.c, fpad_stride). */
static inline AI TF void gemm_panels(const int kind, int64_t k, const void *w, size_t ws, int64_t nw, const void *a,
                                     size_t as, int64_t na, float *out, int64_t ldo) {
    const int64_t n_tiles = (na + EM_FP_MR - 1) / EM_FP_MR;
    /* How the next slice's weights are asked for while the tiles of this
     * one run.  With six tiles or more (16-bit weights) each tile but the
     * last two takes whole row pieces of it and asks for a line every
     * EM_FP_PF_EVERY elements inside its loop, so every line is asked for
     * at least two tiles before pack_slice16 copies it.  Asked for in one
     * burst at each tile's start (prefetch_part, kept for fewer tiles and
     * for F32), the lines were still on their way at the copy: copying
     * from lines already in cache instead ran the kernel 1.04x, and this
     * way a 1-thread pp128 ran 1.03x (docs/PERFORMANCE.md, F16 round 13). */
    const bool spread = kind != EM_FLOAT_F32 && n_tiles >= 6;
    const int64_t n_ask = n_tiles - 2; /* the tiles that ask */
    int64_t j0 = 0, e0 = 0;
    do {
        const int nr = (int)(nw - j0 < EM_FP_NR ? nw - j0 : EM_FP_NR);
        const __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xffff : (1u << nr) - 1);
        const __mmask16 m1 = (__mmask16)(nr >= 32 ? 0xffff : nr > 16 ? (1u << (nr - 16)) - 1 : 0);
        const int64_t kc = k - e0 < EM_FP_KC ? k - e0 : EM_FP_KC;
        if (kind == EM_FLOAT_F32)
            pack_slice(kind, (const uint8_t *)w + (size_t)j0 * ws, ws, nr, e0, kc);
        else
            pack_slice16((const uint8_t *)w + (size_t)j0 * ws, ws, nr, e0, kc);
        int64_t pj = j0, pe = e0;
        const bool more = em_fp_next_slice(EM_FP_NC, EM_FP_NR, EM_FP_KC, k, nw, &pj, &pe);
        const uint8_t *pw = (const uint8_t *)w + (size_t)pj * ws;
        const int pnr = (int)(nw - pj < EM_FP_NR ? nw - pj : EM_FP_NR);
        const int64_t pkc = k - pe < EM_FP_KC ? k - pe : EM_FP_KC;
        const int64_t plines = (pkc * 2 + 63) / 64; /* lines per row piece, 16-bit weights */
        int64_t r0 = 0;
        for (int64_t t = 0; t < n_tiles; t++) {
            em_fp_ahead pf = {0};
            if (more && spread) {
                const int64_t tt = t < n_ask ? t : n_ask;
                const int64_t i0 = pnr * tt / n_ask, i1 = pnr * (tt + 1 < n_ask ? tt + 1 : n_ask) / n_ask;
                pf.p = (const char *)pw + (size_t)i0 * ws + (size_t)pe * 2;
                pf.n = (i1 - i0) * plines;
                pf.nl = plines;
                pf.skip = ws - 64 * (size_t)plines;
            } else if (more) {
                prefetch_part(kind, pw, ws, pnr, pe, pkc, t, n_tiles);
            }
            const int rn = (int)((na - r0 + (n_tiles - t) - 1) / (n_tiles - t));
            const float *ar = (const float *)(const void *)((const uint8_t *)a + (size_t)r0 * as) + e0;
            micro_rows(kind, rn, kc, ar, as, out + r0 * ldo + j0, ldo, e0 == 0, m0, m1, pf);
            r0 += rn;
        }
    } while (em_fp_next_slice(EM_FP_NC, EM_FP_NR, EM_FP_KC, k, nw, &j0, &e0));
}

TF void em_gemm_f32_panels_avx512(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, size_t as,
                                  int64_t na, float *out, int64_t ldo) {
    gemm_panels(EM_FLOAT_F32, k, w, ws, nw, a, as, na, out, ldo);
}

TF void em_gemm_f16_panels_avx512(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, size_t as,
                                  int64_t na, float *out, int64_t ldo) {
    gemm_panels(EM_FLOAT_F16, k, w, ws, nw, a, as, na, out, ldo);
}

TF void em_gemm_bf16_panels_avx512(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, size_t as,
                                   int64_t na, float *out, int64_t ldo) {
    gemm_panels(EM_FLOAT_BF16, k, w, ws, nw, a, as, na, out, ldo);
}

#endif /* EM_HAVE_X86_GEMM */
