/*
 * gemm_lanes_avx2.c - prompt-processing GEMM kernels (two or more
 * activation rows) of the x8 packed Q4_0 and Q8_0 layouts (quant/pack.h),
 * with one whole weight row per int32 lane: AVX-512 VNNI, AVX-VNNI
 * (256-bit) and AVX2.  One activation row goes to the kernels of
 * gemm_packed_avx2.c.  Q4_0 is described here; Q8_0 (AVX-512 below, and
 * its 256-bit forms, which sum lanes instead for a few rows) follows the
 * same plan.
 *
 * In the x8 kernels a lane of vpdpbusd sums 4 of a block's 32 products,
 * so every block of every (weight row, activation row) pair leaves 4
 * partial sums, and each of them is converted to float, scaled and added:
 * three float instructions per integer one.  Here a register holds dword
 * t (bytes 4t..4t+3) of 16 weight rows (two groups; 8 rows, one group, in
 * 256-bit registers), one row per lane, so the activation operand is the
 * same 4 bytes in every lane: a broadcast straight from the activation
 * row (AVX-512's embedded broadcast; vpbroadcastd on AVX2), no shuffle.
 * Eight such products (dwords 0-3 of the low nibbles, which are elements
 * 4t..4t+3, then of the high nibbles, elements 16+4t..) leave each lane
 * holding its row's whole block sum, which is converted and scaled once:
 * per activation row and block, 8 integer instructions and 3 float ones
 * for 16 rows, against 4 and 6 for 8 rows before.  With AVX-512 the eight
 * products go into two sums of four (low and high nibbles, added at the
 * end: integers, so the same bits), which halves the chain of dependent
 * vpdpbusd per activation row; with one chain of eight the tile waited on
 * that latency (bench_gemm: 5-6% more GOP/s at k = 768).
 *
 * The weight side of a block is regrouped into that form once per tile,
 * for all its activation rows: the group's quants are loaded as they are
 * stored (16 bytes of a row per 128-bit lane) and two rounds of dword and
 * qword unpacks (vpunpck*dq) bring dword t of every row together, in the
 * lane order 4i + {0, 1, 2, 3} = rows {i, 4 + i, 8 + i, 12 + i} (AVX-512)
 * or 4h + q = row h + 2q (256-bit); the scales are permuted to the same
 * order and the sums back to row order once at the end of the tile.
 *
 * The weights' offset of 8 is taken out exactly: each activation row's
 * block sum starts at -8 times the sum of its quants, and the activation
 * scales are converted to float, both once per call for every activation
 * row and block (act_table).  With AVX2 (vpmaddubsw) the eight products of
 * a block are added as int16 before one vpmaddwd: a pair of products is at
 * most 2 * 15 * 128, and 8 pairs at most 30720, so nothing saturates.
 * Each block's sum is exact, and is multiplied by the product of the two
 * scales and added in block order, as the scalar reference does (a fused
 * multiply-add instead of a multiply and an add).
 */
#include "quant/pack.h"

#if defined(EM_HAVE_X86_GEMM)

#include "quant/arch/x86/gemv_common.h"
#include "quant/blocks.h"

#include <immintrin.h>
#include <pthread.h>
#include <stdlib.h>

#define AI __attribute__((always_inline))
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define TVNNI __attribute__((target("avx2,fma,f16c,avxvnni")))

/* Entries of each per-call activation table (bias and scale per row and
 * block), on the stack: 2 x 32 KiB.  EM_PACK_MAX_K (512 blocks) leaves
 * room for 16 rows, a whole tile of any kernel here. */
#define LANE_TAB 8192

/* The 4 bytes at p, as an int (activation quants are not aligned). */
static inline int32_t ld32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* The sums of m0..m7's eight lanes each, in lanes 0..7: two rounds of
 * unpacks and adds within 128-bit halves, then the halves added. */
static inline AI __m256i sum8_rows(__m256i m0, __m256i m1, __m256i m2, __m256i m3, __m256i m4, __m256i m5,
                                   __m256i m6, __m256i m7) {
    const __m256i t01 = _mm256_add_epi32(_mm256_unpacklo_epi32(m0, m1), _mm256_unpackhi_epi32(m0, m1));
    const __m256i t23 = _mm256_add_epi32(_mm256_unpacklo_epi32(m2, m3), _mm256_unpackhi_epi32(m2, m3));
    const __m256i t45 = _mm256_add_epi32(_mm256_unpacklo_epi32(m4, m5), _mm256_unpackhi_epi32(m4, m5));
    const __m256i t67 = _mm256_add_epi32(_mm256_unpacklo_epi32(m6, m7), _mm256_unpackhi_epi32(m6, m7));
    const __m256i g0 = _mm256_add_epi32(_mm256_unpacklo_epi64(t01, t23), _mm256_unpackhi_epi64(t01, t23));
    const __m256i g1 = _mm256_add_epi32(_mm256_unpacklo_epi64(t45, t67), _mm256_unpackhi_epi64(t45, t67));
    return _mm256_add_epi32(_mm256_permute2x128_si256(g0, g1, 0x20), _mm256_permute2x128_si256(g0, g1, 0x31));
}

/* For n activation rows at a (stride as), each of their nb blocks:
 * bias[r * nb + b] = -offset * (the sum of the block's quants), scale[...]
 * = its fp16 scale as a float.  Eight blocks at a time, their lane sums
 * added by sum8_rows, as this runs once per call for every activation
 * row (a few percent of a small call's time otherwise). */
static void act_table(int offset, int64_t nb, const uint8_t *a, size_t as, int64_t n, int32_t *bias, float *scale) {
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1), neg = _mm256_set1_epi32(-offset);
    const size_t bs = sizeof(em_block_q8_0);
#define ACT_Q(i) _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, _mm256_loadu_si256((const __m256i *)(const void *)(y + (i) * bs + 2))), ones16)
    for (int64_t r = 0; r < n; r++) {
        const uint8_t *row = a + (size_t)r * as;
        int64_t b = 0;
        for (; b + 8 <= nb; b += 8) {
            const uint8_t *y = row + (size_t)b * bs;
            const __m256i sums = sum8_rows(ACT_Q(0), ACT_Q(1), ACT_Q(2), ACT_Q(3), ACT_Q(4), ACT_Q(5), ACT_Q(6), ACT_Q(7));
            _mm256_storeu_si256((__m256i *)(void *)(bias + r * nb + b), _mm256_mullo_epi32(sums, neg));
            const __m128i d = _mm_setr_epi16((short)em_gemv_ld16(y), (short)em_gemv_ld16(y + bs), (short)em_gemv_ld16(y + 2 * bs),
                                             (short)em_gemv_ld16(y + 3 * bs), (short)em_gemv_ld16(y + 4 * bs),
                                             (short)em_gemv_ld16(y + 5 * bs), (short)em_gemv_ld16(y + 6 * bs),
                                             (short)em_gemv_ld16(y + 7 * bs));
            _mm256_storeu_ps(scale + r * nb + b, _mm256_cvtph_ps(d));
        }
        for (; b < nb; b++) {
            const uint8_t *y = row + (size_t)b * bs;
            const __m256i s8 = ACT_Q(0);
            __m128i s = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
            s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
            s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
            bias[r * nb + b] = -offset * _mm_cvtsi128_si32(s);
            scale[r * nb + b] = _cvtsh_ss(em_gemv_ld16(y));
        }
    }
#undef ACT_Q
}

/* The tables of one activation matrix, kept through a product step
 * (em_gemm_step_begin, pack.h) for the calls of its other chunks: a
 * step's chunks all read the same rows, and at 768 columns rebuilding
 * the table for every 48-row chunk was 5% of the kernel's time.  The
 * buffer is the thread's own, grown on demand up to LANE_KEEP entries
 * (8 bytes each: 4 MiB covers 512 rows of 8192 columns) and freed when
 * the thread exits; larger matrices, or a failed allocation, rebuild the
 * table per call as before.  The entries are the ones act_table writes,
 * so the products are the same bits either way. */
#define LANE_KEEP ((int64_t)1 << 19)
typedef struct lane_keep {
    uint64_t step;     /* em_gemm_step_serial() when filled, 0: empty */
    const void *a;     /* the activation rows it was built from       */
    size_t as;
    int64_t na, nb;
    int offset;
    int64_t cap;       /* entries allocated                           */
    int32_t *bias;     /* [na][nb] as act_table                       */
    float *scale;      /* [na][nb]                                    */
    uint64_t ilv_step; /* the step whose rows ilv holds, 0: none      */
    size_t ilv_cap;    /* bytes allocated                             */
    uint8_t *ilv;      /* [tile][nb][rn x LANE_ILV] (kept_interleaved) */
    bool wt_use;       /* this call's tiles read wt (set by each call) */
    const void *wt_grp; /* the group wt holds, NULL: none (reset by each call) */
    int64_t wt_nb;
    bool wt_wsum;      /* wt's corrections are -128 x the rows' quant sums (q8_transposed) */
    size_t wt_cap;     /* bytes allocated                             */
    uint8_t *wt;       /* [nb] 288 bytes: [8 dwords t][8 rows] int8, then
                        * [8 rows] int32 sign corrections (q8_transposed) */
    bool ilv_flip;     /* ilv holds the quants + 128 (xor 0x80)       */
    bool wq_on;        /* this call's AVX-512 Q8_0 tiles read wq       */
    const void *wq_ga, *wq_gb; /* the groups wq holds, NULL: none (reset by each call) */
    int64_t wq_nb;
    size_t wq_cap;     /* bytes allocated                             */
    uint8_t *wq;       /* [nb] Q8R_BLOCK bytes (q8_regrouped)          */
} lane_keep;
static _Thread_local lane_keep kept;
static pthread_key_t kept_key;
static pthread_once_t kept_once = PTHREAD_ONCE_INIT;
static bool kept_key_ok;

/* At thread exit: the thread's buffers (its lane_keep is the key's value). */
static void kept_release(void *p) {
    lane_keep *k = p;
    free(k->bias);
    free(k->scale);
    free(k->ilv);
    free(k->wt);
    free(k->wq);
    *k = (lane_keep){0};
}

static void kept_key_init(void) { kept_key_ok = pthread_key_create(&kept_key, kept_release) == 0; }

/* Room for n entries in the thread's buffers; false when there is none. */
static bool kept_reserve(lane_keep *k, int64_t n) {
    if (n <= k->cap) return true;
    pthread_once(&kept_once, kept_key_init);
    if (!kept_key_ok) return false;
    if (k->cap == 0 && pthread_setspecific(kept_key, k) != 0) return false;
    int32_t *b = malloc((size_t)n * sizeof *b);
    float *sc = malloc((size_t)n * sizeof *sc);
    if (!b || !sc) {
        free(b);
        free(sc);
        return false;
    }
    free(k->bias);
    free(k->scale);
    k->bias = b;
    k->scale = sc;
    k->cap = n;
    k->step = 0;
    k->ilv_step = 0;
    return true;
}

/* The whole table of the na rows at a (row r's block b at r * nb + b),
 * from this step's earlier call or built now; NULL outside a step, or
 * when it does not fit. */
static const int32_t *kept_table(int offset, int64_t nb, const void *a, size_t as, int64_t na, const float **scale) {
    const uint64_t step = em_gemm_step_serial();
    if (step == 0 || na * nb > LANE_KEEP) return NULL;
    lane_keep *k = &kept;
    if (k->step != step || k->a != a || k->as != as || k->na != na || k->nb != nb || k->offset != offset) {
        if (!kept_reserve(k, na * nb)) return NULL;
        k->ilv_step = 0;
        act_table(offset, nb, (const uint8_t *)a, as, na, k->bias, k->scale);
        k->step = step;
        k->a = a;
        k->as = as;
        k->na = na;
        k->nb = nb;
        k->offset = offset;
    }
    *scale = k->scale;
    return k->bias;
}

/* Rows per tile from row r0 of n (LANE_PLAN16): 16 while that many
 * are left, then up to 8. */
static inline int64_t lane_rn16(int64_t r0, int64_t n) { return n - r0 >= 16 ? 16 : EM_MIN(8, n - r0); }

/* The step's activation rows interleaved tile by tile for the 16-row
 * Q8_0 tiles (tile_q8_512 with ILV, and tile_q8_avx2_ilv): a tile of rn
 * rows from row r0 starts at byte
 * r0 * nb * LANE_ILV, and holds for each block b, in rn * LANE_ILV
 * contiguous bytes, the rn rows' 32 quants, then their table biases, then
 * their scales.  A decode step's tile then reads one sequential run per
 * block instead of 16 rows' quants and 32 table entries, each on a line
 * of its own, whose working set (16 rows of a 3072-wide input are 52 KiB)
 * outgrew L1 while the weights streamed through it, and whose 16 row
 * pointers did not fit the registers.  Built once per product step and
 * thread from the kept table, in the thread's buffer; NULL when there is
 * no kept table, no memory, or more than LANE_ILV_MAX bytes to copy, and
 * the caller reads the rows in place.  With flip the quants are stored
 * plus 128 (an xor of 0x80: unsigned bytes, for tile_q8_512_wq and
 * tile_q8_vnni_wt), and the copy is kept for calls that ask the same. */
#define LANE_ILV 40                         /* bytes per row and block: 32 quants, bias, scale */
#define LANE_ILV_MAX ((size_t)4 << 20)      /* bytes per thread, at most */
static const uint8_t *kept_interleaved(int offset, int64_t nb, const void *a, size_t as, int64_t na, bool flip) {
    const size_t need = (size_t)na * (size_t)nb * LANE_ILV;
    if (need > LANE_ILV_MAX) return NULL;
    const float *scale = NULL;
    const int32_t *bias = kept_table(offset, nb, a, as, na, &scale);
    if (!bias) return NULL;
    lane_keep *k = &kept;
    if (k->ilv_step == k->step && k->ilv_flip == flip) return k->ilv;
    if (need > k->ilv_cap) {
        uint8_t *p = malloc(need);
        if (!p) return NULL;
        free(k->ilv);
        k->ilv = p;
        k->ilv_cap = need;
    }
    const uint8_t *rows = a;
    for (int64_t r0 = 0, rn; r0 < na; r0 += rn) {
        rn = lane_rn16(r0, na);
        uint8_t *t = k->ilv + (size_t)r0 * (size_t)nb * LANE_ILV;
        for (int64_t b = 0; b < nb; b++, t += (size_t)rn * LANE_ILV)
            for (int64_t j = 0; j < rn; j++) {
                const int64_t e = (r0 + j) * nb + b;
                memcpy(t + 32 * j, rows + (size_t)(r0 + j) * as + (size_t)b * sizeof(em_block_q8_0) + 2, 32);
                memcpy(t + 32 * rn + 4 * j, &bias[e], 4);
                memcpy(t + 36 * rn + 4 * j, &scale[e], 4);
            }
    }
    if (flip) /* each tile's block holds rn x 32 quants, then 8 x rn bytes of biases and scales */
        for (int64_t r0 = 0, rn; r0 < na; r0 += rn) {
            rn = lane_rn16(r0, na);
            uint8_t *t = k->ilv + (size_t)r0 * (size_t)nb * LANE_ILV;
            for (int64_t b = 0; b < nb; b++, t += (size_t)rn * LANE_ILV)
                for (int64_t i = 0; i < 32 * rn; i++) t[i] ^= 0x80;
        }
    k->ilv_step = k->step;
    k->ilv_flip = flip;
    return k->ilv;
}

/* The table of activation rows p0..p1: the step's kept table from row
 * p0 when there is one (kbias, kscale), else built now into bias and
 * scale. Returns the bias entries and sets *pscale. */
static inline const int32_t *panel_table(int offset, int64_t nb, const void *a, size_t as, int64_t p0, int64_t p1,
                                         const int32_t *kbias, const float *kscale, int32_t *bias, float *scale,
                                         const float **pscale) {
    if (kbias) {
        *pscale = kscale + p0 * nb;
        return kbias + p0 * nb;
    }
    act_table(offset, nb, (const uint8_t *)a + (size_t)p0 * as, as, p1 - p0, bias, scale);
    *pscale = scale;
    return bias;
}

/* Activation rows per panel: those of about 256 KiB (they stay in L2
 * while the call's weight rows pass over them) whose table entries fit,
 * in whole tiles of rn_max.  With big (a plan's big_panel, when the
 * step's table is kept, so the stack's LANE_TAB does not bound it), up to
 * LANE_BIG_PANEL bytes of rows, in panels of equal size: every panel
 * transposes each weight group again and streams the weights again, so
 * a 128-row prompt at k = 2048 (272 KiB of rows) went as 120 rows and
 * then 8, whose lone tile paid a whole group's transpose and its weights'
 * trip from memory; at k = 5632, as 40, 40, 40 and 8. */
#define LANE_BIG_PANEL ((size_t)1 << 20)
static int64_t lane_panel(int64_t nb, size_t as, int64_t rn_max, int64_t na, bool big) {
    if (big) {
        int64_t fit = (int64_t)(LANE_BIG_PANEL / as) / rn_max * rn_max;
        if (fit < rn_max) fit = rn_max;
        const int64_t parts = (na + fit - 1) / fit, rows = (na + parts - 1) / parts;
        return (rows + rn_max - 1) / rn_max * rn_max;
    }
    int64_t fit = (int64_t)((256 * 1024) / as);
    if (fit > LANE_TAB / nb) fit = LANE_TAB / nb;
    fit = fit / rn_max * rn_max;
    return fit < rn_max ? rn_max : fit;
}

/* ------------------------------------------------------------ AVX-512 */

#define FOR_R(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define FOR_R16(X) FOR_R(X) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)

#define BC512(p) _mm512_set1_epi32(ld32(p))
#define L512_DECL(j) __m512 c##j = _mm512_setzero_ps();
/* One activation row j of a tile: block b's eight vpdpbusd of its quants
 * at Y against the regrouped weight registers v0..v7 as two chains of
 * four (dwords 0-3 and 4-7, added at the end: integer sums, so the result
 * is the same as one chain), which halves the latency a tile of few rows
 * waits on; the sum starts at the row's table bias BIAS; then one
 * conversion and one scaling by the weights' (dw) and the row's scale
 * SCALE. */
#define LANE_ROW8(j, Y, BIAS, SCALE, v0, v1, v2, v3, v4, v5, v6, v7)                                        \
    if (RN > j) {                                                                                           \
        const uint8_t *y = (Y);                                                                             \
        __m512i s = _mm512_set1_epi32(BIAS), t = _mm512_setzero_si512();                                    \
        s = _mm512_dpbusd_epi32(s, v0, BC512(y));                                                           \
        t = _mm512_dpbusd_epi32(t, v4, BC512(y + 16));                                                      \
        s = _mm512_dpbusd_epi32(s, v1, BC512(y + 4));                                                       \
        t = _mm512_dpbusd_epi32(t, v5, BC512(y + 20));                                                      \
        s = _mm512_dpbusd_epi32(s, v2, BC512(y + 8));                                                       \
        t = _mm512_dpbusd_epi32(t, v6, BC512(y + 24));                                                      \
        s = _mm512_dpbusd_epi32(s, v3, BC512(y + 12));                                                      \
        t = _mm512_dpbusd_epi32(t, v7, BC512(y + 28));                                                      \
        s = _mm512_add_epi32(s, t);                                                                         \
        c##j = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_set1_ps(SCALE)), c##j);      \
    }
/* Row j's quants of block b, read in place. */
#define ROW_Y(j) (ar + (size_t)j * as + (size_t)b * sizeof(em_block_q8_0) + 2)
#define L512_ROW(j)                                                                                         \
    LANE_ROW8(j, ILV ? yb + 32 * j : ROW_Y(j), ILV ? ld32(yb + 32 * RN + 4 * j) : bias[j * nb + b],             \
              ILV ? em_gemv_ldf32(yb + 36 * RN + 4 * j) : scale[j * nb + b], l0, l1, l2, l3, h0, h1, h2, h3)
#define L512_STORE(j)                                                                                       \
    if (RN > j) _mm512_mask_storeu_ps(out + j * ldo, keep, _mm512_permutexvar_ps(perm, c##j));

/* Weight rows 0-7 (group ga) and 8-15 (group gb; the same group again
 * when only 8 rows are left, keep then masks the stores to 8 lanes) of
 * nb blocks, times RN (up to 16) activation rows at ar (stride as) with
 * their table entries at bias and scale (row j's block b at j * nb + b);
 * with ILV (a constant), ar is the tile's interleaved rows
 * (kept_interleaved) as for tile_q8_512, and as, bias and scale are
 * unused.  The 16 accumulators, the 8 regrouped weight registers, the
 * scales and two broadcasts fit AVX-512's 32 registers; with tiles of 8
 * rows each block's regrouping (26 instructions) was shared by half as
 * many rows, and the 8 row pointers of an in-place tile were spilled, so
 * the 134M model's Q4_0 products ran about 15% slower than its Q8_0 ones
 * (bench_gemm --step at k = 768: 366-390 against 434-450 GOP/s). */
static inline AI T512 void tile_q4_512(const int RN, const bool ILV, int64_t nb, const uint8_t *ga, const uint8_t *gb,
                                       __mmask16 keep, const uint8_t *ar, size_t as, const int32_t *bias,
                                       const float *scale, float *out, int64_t ldo, uintptr_t pf, size_t pfl,
                                       size_t pfs) {
    const __m512i m4 = _mm512_set1_epi8(15);
    /* Lane 4i + q holds row 4q + i (see the top): the scales' and sums'
     * permutation, its own inverse. */
    const __m512i perm = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    FOR_R16(L512_DECL)
    em_x8_at at = em_x8_first(0, nb);
    for (int64_t b = 0; b < nb; b++, em_x8_next(&at, nb, b, 16)) {
        if (pf) em_gemv_prefetch_part(pf, pfl, b, pfs);
        const uint8_t *xa = ga + at.q, *xb = gb + at.q;
        const uint8_t *yb = ILV ? ar + (size_t)b * (size_t)RN * LANE_ILV : NULL;
        const __m512i a0 = _mm512_loadu_si512(xa), a1 = _mm512_loadu_si512(xa + 64);
        const __m512i b0 = _mm512_loadu_si512(xb), b1 = _mm512_loadu_si512(xb + 64);
        const __m512i ul = _mm512_unpacklo_epi32(a0, a1), vl = _mm512_unpacklo_epi32(b0, b1);
        const __m512i uh = _mm512_unpackhi_epi32(a0, a1), vh = _mm512_unpackhi_epi32(b0, b1);
        const __m512i w0 = _mm512_unpacklo_epi64(ul, vl), w1 = _mm512_unpackhi_epi64(ul, vl);
        const __m512i w2 = _mm512_unpacklo_epi64(uh, vh), w3 = _mm512_unpackhi_epi64(uh, vh);
        const __m512i l0 = _mm512_and_si512(w0, m4), h0 = _mm512_and_si512(_mm512_srli_epi16(w0, 4), m4);
        const __m512i l1 = _mm512_and_si512(w1, m4), h1 = _mm512_and_si512(_mm512_srli_epi16(w1, 4), m4);
        const __m512i l2 = _mm512_and_si512(w2, m4), h2 = _mm512_and_si512(_mm512_srli_epi16(w2, 4), m4);
        const __m512i l3 = _mm512_and_si512(w3, m4), h3 = _mm512_and_si512(_mm512_srli_epi16(w3, 4), m4);
        const __m256i d16 = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(ga + at.d))),
            _mm_loadu_si128((const __m128i *)(const void *)(gb + at.d)), 1);
        const __m512 dw = _mm512_permutexvar_ps(perm, _mm512_cvtph_ps(d16));
        FOR_R16(L512_ROW)
    }
    FOR_R16(L512_STORE)
}

/* Q8_0: a block of 16 rows is 8 registers of 2 rows each; three rounds
 * of unpacks and 128-bit lane shuffles (24 instructions, shared by the
 * tile's activation rows) turn them into w0..w7, dword t of every row, in
 * the lane order 8g + 4h + q = row 8g + 2q + h.  The quants are made
 * unsigned (+128, an xor) and 128 times the activation sums taken back
 * out (act_table).  A tile takes up to 16 activation rows (16
 * accumulators, the 8 regrouped weight registers and a few temporaries
 * fit AVX-512's 32 registers), so that a 16-row decode step regroups each
 * weight block once instead of twice; each row's eight vpdpbusd run as
 * two chains of four (LANE_ROW8). */
#define Q8_512_ROW(j)                                                                                       \
    LANE_ROW8(j, ILV ? yb + 32 * j : ROW_Y(j), ILV ? ld32(yb + 32 * RN + 4 * j) : bias[j * nb + b],             \
              ILV ? em_gemv_ldf32(yb + 36 * RN + 4 * j) : scale[j * nb + b], w0, w1, w2, w3, w4, w5, w6, w7)
#define Q8_512_STORE(j)                                                                                     \
    if (RN > j) _mm512_mask_storeu_ps(out + j * ldo, keep, _mm512_permutexvar_ps(pout, c##j));

/* Rows 0-7 of group g as two 8-row halves: x{lo,hi}{01,23} after two
 * unpack rounds hold dwords {0,4}, {1,5}, {2,6}, {3,7} (see above). */
#define Q8_512_HALF(g, x)                                                                                   \
    const __m512i g##0 = _mm512_xor_si512(_mm512_loadu_si512(x), flip);                                     \
    const __m512i g##1 = _mm512_xor_si512(_mm512_loadu_si512(x + 64), flip);                                \
    const __m512i g##2 = _mm512_xor_si512(_mm512_loadu_si512(x + 128), flip);                               \
    const __m512i g##3 = _mm512_xor_si512(_mm512_loadu_si512(x + 192), flip);                               \
    const __m512i g##ul = _mm512_unpacklo_epi32(g##0, g##1), g##vl = _mm512_unpacklo_epi32(g##2, g##3);     \
    const __m512i g##uh = _mm512_unpackhi_epi32(g##0, g##1), g##vh = _mm512_unpackhi_epi32(g##2, g##3);     \
    const __m512i g##d0 = _mm512_unpacklo_epi64(g##ul, g##vl), g##d1 = _mm512_unpackhi_epi64(g##ul, g##vl); \
    const __m512i g##d2 = _mm512_unpacklo_epi64(g##uh, g##vh), g##d3 = _mm512_unpackhi_epi64(g##uh, g##vh);

/* With ILV (a constant), ar is the tile's interleaved rows
 * (kept_interleaved): row j's quants, bias and scale of block b sit at
 * fixed offsets from one pointer, and as, bias and scale are unused. */
static inline AI T512 void tile_q8_512(const int RN, const bool ILV, int64_t nb, const uint8_t *ga, const uint8_t *gb,
                                       __mmask16 keep, const uint8_t *ar, size_t as, const int32_t *bias,
                                       const float *scale, float *out, int64_t ldo, uintptr_t pf, size_t pfl,
                                       size_t pfs) {
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    const __m512i pin = _mm512_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15);
    const __m512i pout = _mm512_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15);
    FOR_R16(L512_DECL)
    em_x8_at at = em_x8_first(0, nb);
    for (int64_t b = 0; b < nb; b++, em_x8_next(&at, nb, b, 32)) {
        if (pf) em_gemv_prefetch_part(pf, pfl, b, pfs);
        const uint8_t *xa = ga + at.q, *xb = gb + at.q;
        const uint8_t *yb = ILV ? ar + (size_t)b * (size_t)RN * LANE_ILV : NULL;
        Q8_512_HALF(A, xa)
        Q8_512_HALF(B, xb)
        const __m512i w0 = _mm512_shuffle_i32x4(Ad0, Bd0, 0x88), w4 = _mm512_shuffle_i32x4(Ad0, Bd0, 0xdd);
        const __m512i w1 = _mm512_shuffle_i32x4(Ad1, Bd1, 0x88), w5 = _mm512_shuffle_i32x4(Ad1, Bd1, 0xdd);
        const __m512i w2 = _mm512_shuffle_i32x4(Ad2, Bd2, 0x88), w6 = _mm512_shuffle_i32x4(Ad2, Bd2, 0xdd);
        const __m512i w3 = _mm512_shuffle_i32x4(Ad3, Bd3, 0x88), w7 = _mm512_shuffle_i32x4(Ad3, Bd3, 0xdd);
        const __m256i d16 = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(ga + at.d))),
            _mm_loadu_si128((const __m128i *)(const void *)(gb + at.d)), 1);
        const __m512 dw = _mm512_permutexvar_ps(pin, _mm512_cvtph_ps(d16));
        FOR_R16(Q8_512_ROW)
    }
    FOR_R16(Q8_512_STORE)
}

/* Q8_0 in prompts, where a panel's several tiles of 16 activation rows
 * meet the same two weight groups: the operands of vpdpbusd change
 * roles.  The weights stay signed (vpdpbusd's second, signed operand,
 * which may come from memory) and the activations are made unsigned
 * (+128, in the step's interleaved copy: kept_interleaved with flip),
 * so each product reads its 64 bytes of regrouped weights straight from
 * a buffer (q8_regrouped: the group pair's blocks regrouped once per
 * call, as tile_q8_512 regroups them in registers for every tile) and
 * takes its broadcast activation dword in a register.  The sum is then
 * the sum over the block of (a + 128) w, and 128 times the weights' sum
 * comes back out where tile_q8_512 took 128 times the activations' out:
 * the row's sum starts at the block's correction, -128 times each weight
 * row's quant sum (one vector per block, shared by every activation row,
 * where tile_q8_512 broadcast a table bias per row).  Both give the same
 * exact int32 block sum (sum of a w, at most 32 * 128 * 128 in
 * magnitude), converted, scaled and added as before, so the results are
 * the same bits.
 *
 * Why: the tile is bound by the two pipes that run vpdpbusd and the float
 * multiplies (Zen 5: 8 vpdpbusd, a vmulps and a vfmadd per row and block,
 * 5 cycles at 2 a cycle), yet ran at 5.6: with the 8 weight registers and
 * 16 accumulators filling the register file, a block's products cannot
 * start before its weights are in registers, and not the shuffles but
 * that is what costs (weights stored regrouped and loaded plainly into
 * the registers ran no faster); as memory operands the loads go with the
 * products.  An L1 harness of the 16-row tiles at k = 768: 5.0 (this
 * one) against 5.6 core cycles per row and block, and the regrouping
 * pass 14.5 a block, so it pays from about three tiles a group pair on
 * (Q8R_MIN_ROWS; docs/PERFORMANCE.md, session 16).
 *
 * q8_regrouped's block (Q8R_BLOCK bytes): w[8][16 lanes] int8 x 4 (dword
 * t of the 16 rows in tile_q8_512's lane order 8g + 4h + q = row
 * 8g + 2q + h), corr[16] int32, dw[16] float (the rows' scales in the
 * same order). */
#define Q8R_BLOCK 640
#define Q8_512_HALF_RAW(g, x)                                                                               \
    const __m512i g##0 = _mm512_loadu_si512(x), g##1 = _mm512_loadu_si512(x + 64);                          \
    const __m512i g##2 = _mm512_loadu_si512(x + 128), g##3 = _mm512_loadu_si512(x + 192);                   \
    const __m512i g##ul = _mm512_unpacklo_epi32(g##0, g##1), g##vl = _mm512_unpacklo_epi32(g##2, g##3);     \
    const __m512i g##uh = _mm512_unpackhi_epi32(g##0, g##1), g##vh = _mm512_unpackhi_epi32(g##2, g##3);     \
    const __m512i g##d0 = _mm512_unpacklo_epi64(g##ul, g##vl), g##d1 = _mm512_unpackhi_epi64(g##ul, g##vl); \
    const __m512i g##d2 = _mm512_unpacklo_epi64(g##uh, g##vh), g##d3 = _mm512_unpackhi_epi64(g##uh, g##vh);

/* Room for n bytes in the thread's regrouped-weights buffer. */
static bool q8_regrouped_reserve(size_t n) {
    lane_keep *k = &kept;
    if (n <= k->wq_cap) return true;
    pthread_once(&kept_once, kept_key_init);
    if (!kept_key_ok || pthread_setspecific(kept_key, k) != 0) return false;
    uint8_t *p = aligned_alloc(64, n);
    if (!p) return false;
    free(k->wq);
    k->wq = p;
    k->wq_cap = n;
    k->wq_ga = NULL;
    return true;
}

/* Groups ga and gb (rows 0-7 and 8-15) of nb blocks, regrouped into the
 * thread's buffer (reserved by the call) unless it holds them already. */
static T512 const uint8_t *q8_regrouped(const uint8_t *ga, const uint8_t *gb, int64_t nb) {
    lane_keep *k = &kept;
    if (k->wq_ga == ga && k->wq_gb == gb && k->wq_nb == nb) return k->wq;
    const __m512i pin = _mm512_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15);
    const __m512i m128 = _mm512_set1_epi8((char)0x80);
    uint8_t *o = k->wq;
    em_x8_at at = em_x8_first(0, nb);
    for (int64_t b = 0; b < nb; b++, em_x8_next(&at, nb, b, 32), o += Q8R_BLOCK) {
        const uint8_t *xa = ga + at.q, *xb = gb + at.q;
        Q8_512_HALF_RAW(A, xa)
        Q8_512_HALF_RAW(B, xb)
        const __m512i w0 = _mm512_shuffle_i32x4(Ad0, Bd0, 0x88), w4 = _mm512_shuffle_i32x4(Ad0, Bd0, 0xdd);
        const __m512i w1 = _mm512_shuffle_i32x4(Ad1, Bd1, 0x88), w5 = _mm512_shuffle_i32x4(Ad1, Bd1, 0xdd);
        const __m512i w2 = _mm512_shuffle_i32x4(Ad2, Bd2, 0x88), w6 = _mm512_shuffle_i32x4(Ad2, Bd2, 0xdd);
        const __m512i w3 = _mm512_shuffle_i32x4(Ad3, Bd3, 0x88), w7 = _mm512_shuffle_i32x4(Ad3, Bd3, 0xdd);
        _mm512_store_si512(o, w0);
        _mm512_store_si512(o + 64, w1);
        _mm512_store_si512(o + 128, w2);
        _mm512_store_si512(o + 192, w3);
        _mm512_store_si512(o + 256, w4);
        _mm512_store_si512(o + 320, w5);
        _mm512_store_si512(o + 384, w6);
        _mm512_store_si512(o + 448, w7);
        /* 128 times each row's quant sum: unsigned 128 times signed w,
         * at most 32 * 128 * 128 in magnitude. */
        __m512i c = _mm512_dpbusd_epi32(_mm512_setzero_si512(), m128, w0);
        c = _mm512_dpbusd_epi32(c, m128, w1);
        c = _mm512_dpbusd_epi32(c, m128, w2);
        c = _mm512_dpbusd_epi32(c, m128, w3);
        c = _mm512_dpbusd_epi32(c, m128, w4);
        c = _mm512_dpbusd_epi32(c, m128, w5);
        c = _mm512_dpbusd_epi32(c, m128, w6);
        c = _mm512_dpbusd_epi32(c, m128, w7);
        _mm512_store_si512(o + 512, _mm512_sub_epi32(_mm512_setzero_si512(), c));
        const __m256i d16 = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(ga + at.d))),
            _mm_loadu_si128((const __m128i *)(const void *)(gb + at.d)), 1);
        _mm512_store_ps(o + 576, _mm512_permutexvar_ps(pin, _mm512_cvtph_ps(d16)));
    }
    k->wq_ga = ga;
    k->wq_gb = gb;
    k->wq_nb = nb;
    return k->wq;
}

/* Row j of a tile_q8_512_wq tile: block b's eight products (two chains of
 * four, as LANE_ROW8) from the block's correction, then the float steps
 * of LANE_ROW8 with the row's scale. */
#define Q8W_ROW(j)                                                                                          \
    if (RN > j) {                                                                                           \
        const uint8_t *y = yb + 32 * j;                                                                     \
        __m512i s = corr, t = _mm512_setzero_si512();                                                       \
        s = _mm512_dpbusd_epi32(s, BC512(y), _mm512_load_si512(wb));                                        \
        t = _mm512_dpbusd_epi32(t, BC512(y + 16), _mm512_load_si512(wb + 256));                             \
        s = _mm512_dpbusd_epi32(s, BC512(y + 4), _mm512_load_si512(wb + 64));                               \
        t = _mm512_dpbusd_epi32(t, BC512(y + 20), _mm512_load_si512(wb + 320));                             \
        s = _mm512_dpbusd_epi32(s, BC512(y + 8), _mm512_load_si512(wb + 128));                              \
        t = _mm512_dpbusd_epi32(t, BC512(y + 24), _mm512_load_si512(wb + 384));                             \
        s = _mm512_dpbusd_epi32(s, BC512(y + 12), _mm512_load_si512(wb + 192));                             \
        t = _mm512_dpbusd_epi32(t, BC512(y + 28), _mm512_load_si512(wb + 448));                             \
        s = _mm512_add_epi32(s, t);                                                                         \
        c##j = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s),                                                      \
                               _mm512_mul_ps(dw, _mm512_set1_ps(em_gemv_ldf32(yb + 36 * RN + 4 * j))), c##j); \
    }

/* RN (up to 16) interleaved activation rows at x, their quants + 128
 * (kept_interleaved with flip), times the 16 weight rows regrouped at wq
 * (q8_regrouped); keep masks the stores to 8 lanes when the second group
 * repeats the first. */
static inline AI T512 void tile_q8_512_wq(const int RN, int64_t nb, const uint8_t *wq, __mmask16 keep,
                                          const uint8_t *x, float *out, int64_t ldo, uintptr_t pf, size_t pfl,
                                          size_t pfs) {
    const __m512i pout = _mm512_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15);
    FOR_R16(L512_DECL)
    for (int64_t b = 0; b < nb; b++) {
        if (pf) em_gemv_prefetch_part(pf, pfl, b, pfs);
        const uint8_t *wb = wq + (size_t)b * Q8R_BLOCK;
        const uint8_t *yb = x + (size_t)b * (size_t)RN * LANE_ILV;
        const __m512i corr = _mm512_load_si512(wb + 512);
        const __m512 dw = _mm512_load_ps(wb + 576);
        FOR_R16(Q8W_ROW)
    }
    FOR_R16(Q8_512_STORE)
}

/* ------------------------------------------------------------ 256-bit */

/* Lane 4h + q holds row h + 2q: the scales' permutation, and the sums'
 * way back to row order. */
#define P256_IN _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7)
#define P256_OUT _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)
#define BC256(p) _mm256_set1_epi32(ld32(p))

/* One block's sum of activation row j (at y), AVX-VNNI. */
#define SUM_VNNI(s, y)                                                                                      \
    s = _mm256_dpbusd_avx_epi32(s, l0, BC256(y));                                                           \
    s = _mm256_dpbusd_avx_epi32(s, l1, BC256(y + 4));                                                       \
    s = _mm256_dpbusd_avx_epi32(s, l2, BC256(y + 8));                                                       \
    s = _mm256_dpbusd_avx_epi32(s, l3, BC256(y + 12));                                                      \
    s = _mm256_dpbusd_avx_epi32(s, h0, BC256(y + 16));                                                      \
    s = _mm256_dpbusd_avx_epi32(s, h1, BC256(y + 20));                                                      \
    s = _mm256_dpbusd_avx_epi32(s, h2, BC256(y + 24));                                                      \
    s = _mm256_dpbusd_avx_epi32(s, h3, BC256(y + 28));
/* The same with AVX2: int16 pair sums added (at most 30720, see the top),
 * then widened once. */
#define SUM_AVX2(s, y)                                                                                      \
    {                                                                                                       \
        __m256i p = _mm256_maddubs_epi16(l0, BC256(y));                                                     \
        p = _mm256_add_epi16(p, _mm256_maddubs_epi16(l1, BC256(y + 4)));                                    \
        p = _mm256_add_epi16(p, _mm256_maddubs_epi16(l2, BC256(y + 8)));                                    \
        p = _mm256_add_epi16(p, _mm256_maddubs_epi16(l3, BC256(y + 12)));                                   \
        p = _mm256_add_epi16(p, _mm256_maddubs_epi16(h0, BC256(y + 16)));                                   \
        p = _mm256_add_epi16(p, _mm256_maddubs_epi16(h1, BC256(y + 20)));                                   \
        p = _mm256_add_epi16(p, _mm256_maddubs_epi16(h2, BC256(y + 24)));                                   \
        p = _mm256_add_epi16(p, _mm256_maddubs_epi16(h3, BC256(y + 28)));                                   \
        s = _mm256_add_epi32(s, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));                                \
    }

#define L256_TILE(fname, TGT, SUM)                                                                             \
    static inline AI TGT void fname(const int RN, int64_t nb, const uint8_t *grp, const uint8_t *ar, size_t as, \
                                    const int32_t *bias, const float *scale, float *out, int64_t ldo,          \
                                    uintptr_t pf, size_t pfl, size_t pfs) {                                    \
        const __m256i m4 = _mm256_set1_epi8(15);                                                               \
        __m256 c[8];                                                                                           \
        for (int j = 0; j < RN; j++) c[j] = _mm256_setzero_ps();                                               \
        em_x8_at at = em_x8_first((uintptr_t)grp, nb);                                                         \
        for (int64_t b = 0; b < nb; b++, em_x8_next(&at, nb, b, 16)) {                                         \
            if (pf) em_gemv_prefetch_part(pf, pfl, b, pfs);                                                    \
            const uint8_t *x = (const uint8_t *)at.q;                                                          \
            const __m256i r01 = _mm256_loadu_si256((const __m256i *)(const void *)x);                          \
            const __m256i r23 = _mm256_loadu_si256((const __m256i *)(const void *)(x + 32));                   \
            const __m256i r45 = _mm256_loadu_si256((const __m256i *)(const void *)(x + 64));                   \
            const __m256i r67 = _mm256_loadu_si256((const __m256i *)(const void *)(x + 96));                   \
            const __m256i ul = _mm256_unpacklo_epi32(r01, r23), vl = _mm256_unpacklo_epi32(r45, r67);         \
            const __m256i uh = _mm256_unpackhi_epi32(r01, r23), vh = _mm256_unpackhi_epi32(r45, r67);         \
            const __m256i w0 = _mm256_unpacklo_epi64(ul, vl), w1 = _mm256_unpackhi_epi64(ul, vl);             \
            const __m256i w2 = _mm256_unpacklo_epi64(uh, vh), w3 = _mm256_unpackhi_epi64(uh, vh);             \
            const __m256i l0 = _mm256_and_si256(w0, m4), h0 = _mm256_and_si256(_mm256_srli_epi16(w0, 4), m4); \
            const __m256i l1 = _mm256_and_si256(w1, m4), h1 = _mm256_and_si256(_mm256_srli_epi16(w1, 4), m4); \
            const __m256i l2 = _mm256_and_si256(w2, m4), h2 = _mm256_and_si256(_mm256_srli_epi16(w2, 4), m4); \
            const __m256i l3 = _mm256_and_si256(w3, m4), h3 = _mm256_and_si256(_mm256_srli_epi16(w3, 4), m4); \
            const __m256 dw = _mm256_permutevar8x32_ps(                                                        \
                _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)at.d)), P256_IN);                   \
            for (int j = 0; j < RN; j++) {                                                                     \
                const uint8_t *y = ar + (size_t)j * as + (size_t)b * sizeof(em_block_q8_0) + 2;                 \
                __m256i s = _mm256_set1_epi32(bias[j * nb + b]);                                               \
                SUM(s, y)                                                                                      \
                c[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, _mm256_set1_ps(scale[j * nb + b])), c[j]); \
            }                                                                                                  \
        }                                                                                                      \
        for (int j = 0; j < RN; j++) _mm256_storeu_ps(out + j * ldo, _mm256_permutevar8x32_ps(c[j], P256_OUT)); \
    }

L256_TILE(tile_q4_vnni, TVNNI, SUM_VNNI)
L256_TILE(tile_q4_avx2, , SUM_AVX2)

/* Adapters to one tile signature: rows 0-15 (or 0-7 when gb == ga) with
 * AVX-512, rows 0-7 of ga in 256-bit registers. */
#define TILE_ARGS                                                                                              \
    int64_t nb, const uint8_t *ga, const uint8_t *gb, const uint8_t *ar, size_t as, const int32_t *bias,      \
        const float *scale, float *out, int64_t ldo, uintptr_t pf, size_t pfl, size_t pfs
#define T512_CALL(RN) tile_q4_512(RN, false, nb, ga, gb, gb == ga ? 0xff : 0xffff, ar, as, bias, scale, out, ldo, pf, pfl, pfs)
#define Q8_512_CALL(RN) tile_q8_512(RN, false, nb, ga, gb, gb == ga ? 0xff : 0xffff, ar, as, bias, scale, out, ldo, pf, pfl, pfs)
#define TVNNI_CALL(RN) ((void)gb, tile_q4_vnni(RN, nb, ga, ar, as, bias, scale, out, ldo, pf, pfl, pfs))
#define TAVX2_CALL(RN) ((void)gb, tile_q4_avx2(RN, nb, ga, ar, as, bias, scale, out, ldo, pf, pfl, pfs))

/* ----------------------------------------------------- Q8_0, 256-bit */

/* Q8_0's rows are 32 bytes per block, 8 dwords: bringing dword t of 8
 * rows together would take 24 shuffles and 16 registers (the quants and
 * their absolute values) per block, more than AVX2 has.  Instead each
 * row's products stay in their 8 lanes (m[r]: lane l sums elements
 * 4l..4l+3 of row r) and the 8 rows' lanes are summed in integers
 * (sum8_rows: 21 unpacks, adds and lane moves, which measured faster than
 * vphaddd here) into one register of the 8 rows' block sums: converted and
 * scaled once, where
 * the x8 kernel converts, scales and adds each of the 8 registers.
 * AVX-VNNI makes the weights unsigned (+128, an xor) and takes 128 times
 * the activation sum back out (act_table), in calls of 2 to 4 rows (5 or
 * more transpose the weights instead: tile_q8_vnni_wt below); AVX2 moves the weight's sign
 * onto the activation (vpsignb) as in gemm_packed_avx2.c.  For three or
 * more activation rows AVX2, with twice the instructions per product,
 * transposes the weights instead (tile_q8_avx2 below), once per group and
 * call, and takes each block in two halves of 8 registers; for one or two
 * rows the transpose costs more than the lane sums it saves (bench_gemm,
 * 2 rows: about 0.87x, when each tile transposed its own blocks). */

#define Q8_W_VNNI(r) const __m256i w##r = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(const void *)(x + 32 * r)), flip);
#define Q8_M_VNNI(r) const __m256i m##r = _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), w##r, av);
#define Q8_W_AVX2(r) const __m256i w##r = _mm256_abs_epi8(_mm256_loadu_si256((const __m256i *)(const void *)(x + 32 * r)));
#define Q8_M_AVX2(r)                                                                                        \
    const __m256i m##r = _mm256_madd_epi16(                                                                 \
        _mm256_maddubs_epi16(w##r, _mm256_sign_epi8(av, _mm256_loadu_si256((const __m256i *)(const void *)(x + 32 * r)))), \
        _mm256_set1_epi16(1));
#define FOR_W(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)

#define Q8_256_TILE(fname, TGT, WDEF, MDEF)                                                                    \
    static inline AI TGT void fname(const int RN, int64_t nb, const uint8_t *grp, const uint8_t *ar, size_t as, \
                                    const int32_t *bias, const float *scale, float *out, int64_t ldo,          \
                                    uintptr_t pf, size_t pfl, size_t pfs) {                                    \
        const __m256i flip = _mm256_set1_epi8((char)0x80);                                                     \
        (void)flip;                                                                                            \
        __m256 c[8];                                                                                           \
        for (int j = 0; j < RN; j++) c[j] = _mm256_setzero_ps();                                               \
        em_x8_at at = em_x8_first((uintptr_t)grp, nb);                                                         \
        for (int64_t b = 0; b < nb; b++, em_x8_next(&at, nb, b, 32)) {                                         \
            if (pf) em_gemv_prefetch_part(pf, pfl, b, pfs);                                                    \
            const uint8_t *x = (const uint8_t *)at.q;                                                          \
            const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)at.d));                   \
            FOR_W(WDEF)                                                                                        \
            for (int j = 0; j < RN; j++) {                                                                     \
                const uint8_t *y = ar + (size_t)j * as + (size_t)b * sizeof(em_block_q8_0) + 2;                 \
                const __m256i av = _mm256_loadu_si256((const __m256i *)(const void *)y);                       \
                FOR_W(MDEF)                                                                                    \
                const __m256i s = _mm256_add_epi32(sum8_rows(m0, m1, m2, m3, m4, m5, m6, m7), _mm256_set1_epi32(bias[j * nb + b])); \
                c[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, _mm256_set1_ps(scale[j * nb + b])), c[j]); \
            }                                                                                                  \
        }                                                                                                      \
        for (int j = 0; j < RN; j++) _mm256_storeu_ps(out + j * ldo, c[j]);                                    \
    }

Q8_256_TILE(tile_q8_vnni, TVNNI, Q8_W_VNNI, Q8_M_VNNI)
Q8_256_TILE(tile_q8_avx2_lanes, , Q8_W_AVX2, Q8_M_AVX2)

/* The AVX2 Q8_0 tile with one weight row per lane, as the Q4_0 tiles:
 * each block's 8 weight rows are held transposed, w[t] = dword t of rows
 * 0..7 in lanes 0..7, with their absolute values u[t]; each activation
 * row's dword t is broadcast straight from memory and multiplied as
 * gemm_packed_avx2.c does (the weight's sign moved onto the activation by
 * vpsignb, the bytes multiplied by vpmaddubsw, the pairs added by
 * vpmaddwd), and the eight dwords' sums are added into the row's table
 * bias, so each lane ends with its row's whole block sum: per activation
 * row and block 8 x (sign, maddubs, maddwd, add) and 3 float
 * instructions.  The products are the same byte pairs with the same
 * signs, and the block sums the same exact integers as the lane-sum tile's
 * and the scalar reference's, so the results are the same bits.
 *
 * When a call has more than one tile of activation rows, the transposed
 * weights of a group are made once per call and thread (q8_transposed,
 * 24 unpacks and lane moves a block) into the thread's buffer, and every
 * tile of the group (a panel's 15 tiles of 8 rows in a prompt) reads them
 * from there, where each tile transposed its blocks again before
 * (bench_gemm k = 2048, 128 rows: about 1.1x; a tile alone in L1, 11.6
 * cycles per activation row and block before, 10.1 after).
 *
 * A tile does each block in two halves, dwords 0-3 and then 4-7, each
 * over all its rows, so that a half's four w[t] and four u[t] stay in
 * registers (8 of the 16) and every vpsignb takes its weights from a
 * register: with all eight dwords at once only the u[t] fitted and the
 * w[t] were memory operands, 21 loads per activation row and block on a
 * core that issues two 256-bit loads a cycle.  Now a row and block takes
 * 12 loads (8 broadcasts, the bias, the scale, the accumulator and the
 * first half's sum, kept in sh[]).  What bounds the tile then is the two
 * pipes that run vpmaddubsw, vpmaddwd and the float multiplies (2 a cycle
 * together on Zen 5, measured): 18 per row and block, 9 cycles.
 *
 * From the transposed group, the tile replaces vpsignb, which shares one
 * of those pipes (vpmaddubsw with vpsignb issue 2.9 a cycle, with vpxor
 * more than 4), by vpxor: with m = 0xff in the bytes whose weight is
 * negative and 0 elsewhere, a ^ m is a for w >= 0 and ~a = -a - 1 for
 * w < 0, so |w| * (a ^ m) = w * a - (w < 0 ? |w| : 0) for every pair of
 * int8 (vpmaddubsw takes |w| unsigned, so |-128| is 128).  The 16-bit
 * steps: each product is in [0, 128] x [-128, 127] = [-16384, 16256],
 * a pair of them in [-32768, 32512], inside int16, so vpmaddubsw never
 * saturates; vpmaddwd by 1 adds each two pairs exactly into int32.  The
 * block's 32 products of a weight row then sum to the exact sum of w * a
 * less that row's correction, the sum of |w| over its negative weights
 * (in [0, 4096]), which depends only on the weights: q8_transposed
 * computes it once per block and row and stores it after the block's
 * transposed weights, and the tile adds it to the row's bias before the
 * products, so each lane ends with the same exact int32 block sum as with
 * vpsignb (int32 sums of at most 32 * 128 * 128 + 4096 in magnitude plus
 * the bias, exact in any order) and the results are the same bits.  Per
 * row and block this costs one vpaddd, and per block 8 vpcmpgtb for the
 * masks (L1 harness: 9.34-9.45 cycles per row and block against
 * 9.68-9.78).  Calls of 3 to 8 rows, which transpose in the tile, keep
 * vpsignb: they have no buffer to hold the correction. */
#define Q8T_BLOCK 288 /* bytes per block in the transposed group: 8 x 32 weights, 8 int32 corrections */
/* Room for n bytes in the thread's transposed-group buffer. */
static bool q8_transposed_reserve(size_t n) {
    lane_keep *k = &kept;
    if (n <= k->wt_cap) return true;
    pthread_once(&kept_once, kept_key_init);
    if (!kept_key_ok || pthread_setspecific(kept_key, k) != 0) return false;
    uint8_t *p = aligned_alloc(32, n);
    if (!p) return false;
    free(k->wt);
    k->wt = p;
    k->wt_cap = n;
    k->wt_grp = NULL;
    return true;
}
static const uint8_t *q8_transposed(const uint8_t *grp, int64_t nb, bool wsum) {
    lane_keep *k = &kept;
    if (k->wt_grp == grp && k->wt_nb == nb && k->wt_wsum == wsum) return k->wt;
    if (!q8_transposed_reserve((size_t)nb * Q8T_BLOCK)) return NULL;
    uint8_t *o = k->wt;
    em_x8_at at = em_x8_first((uintptr_t)grp, nb);
    const __m256i zero = _mm256_setzero_si256(), bytes1 = _mm256_set1_epi8(1);
    for (int64_t b = 0; b < nb; b++, em_x8_next(&at, nb, b, 32), o += Q8T_BLOCK) {
        const uint8_t *x = (const uint8_t *)at.q;
#define Q8T_LD(i) const __m256i r##i = _mm256_loadu_si256((const __m256i *)(const void *)(x + 32 * (i)));
        FOR_W(Q8T_LD)
#undef Q8T_LD
        /* Rows 0-3 (u) and 4-7 (v): dwords t and t + 4 in the two halves. */
        const __m256i t0 = _mm256_unpacklo_epi32(r0, r1), t1 = _mm256_unpackhi_epi32(r0, r1);
        const __m256i t2 = _mm256_unpacklo_epi32(r2, r3), t3 = _mm256_unpackhi_epi32(r2, r3);
        const __m256i t4 = _mm256_unpacklo_epi32(r4, r5), t5 = _mm256_unpackhi_epi32(r4, r5);
        const __m256i t6 = _mm256_unpacklo_epi32(r6, r7), t7 = _mm256_unpackhi_epi32(r6, r7);
        const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
        const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
        const __m256i v0 = _mm256_unpacklo_epi64(t4, t6), v1 = _mm256_unpackhi_epi64(t4, t6);
        const __m256i v2 = _mm256_unpacklo_epi64(t5, t7), v3 = _mm256_unpackhi_epi64(t5, t7);
        __m256i *w = (__m256i *)(void *)o;
        _mm256_store_si256(w + 0, _mm256_permute2x128_si256(u0, v0, 0x20));
        _mm256_store_si256(w + 1, _mm256_permute2x128_si256(u1, v1, 0x20));
        _mm256_store_si256(w + 2, _mm256_permute2x128_si256(u2, v2, 0x20));
        _mm256_store_si256(w + 3, _mm256_permute2x128_si256(u3, v3, 0x20));
        _mm256_store_si256(w + 4, _mm256_permute2x128_si256(u0, v0, 0x31));
        _mm256_store_si256(w + 5, _mm256_permute2x128_si256(u1, v1, 0x31));
        _mm256_store_si256(w + 6, _mm256_permute2x128_si256(u2, v2, 0x31));
        _mm256_store_si256(w + 7, _mm256_permute2x128_si256(u3, v3, 0x31));
        /* The correction of each row (lane r): the sum of |w| over the
         * block's negative weights, in [0, 32 * 128 = 4096].  Per dword t,
         * |min(w, 0)| is in [0, 128] as an unsigned byte (vpabsb of -128 is
         * 0x80), vpmaddubsw by 1 adds byte pairs into int16 in [0, 256], and
         * the eight dwords' int16 sums stay in [0, 2048] before vpmaddwd adds
         * each lane's two into its int32. */
        __m256i n = zero;
        if (wsum) {
            /* With wsum (tile_q8_vnni_wt), -128 times each row's quant
             * sum: vpmaddubsw of 1 and the signed quants adds byte pairs
             * into int16 in [-256, 254], the eight dwords' sums stay in
             * [-2048, 2032], and vpmaddwd adds each lane's two into its
             * int32 (at most 4096 x 128 in magnitude after the shift). */
            for (int t = 0; t < 8; t++) n = _mm256_add_epi16(n, _mm256_maddubs_epi16(bytes1, _mm256_load_si256(w + t)));
            _mm256_store_si256(w + 8, _mm256_sub_epi32(zero, _mm256_slli_epi32(_mm256_madd_epi16(n, _mm256_set1_epi16(1)), 7)));
        } else {
            for (int t = 0; t < 8; t++)
                n = _mm256_add_epi16(n, _mm256_maddubs_epi16(_mm256_abs_epi8(_mm256_min_epi8(_mm256_load_si256(w + t), zero)), bytes1));
            _mm256_store_si256(w + 8, _mm256_madd_epi16(n, _mm256_set1_epi16(1)));
        }
    }
    k->wt_grp = grp;
    k->wt_nb = nb;
    k->wt_wsum = wsum;
    return k->wt;
}

/* A half's four w[t] (block b's dwords 4h..4h+3 of rows 0-7) and u[t]:
 * with BUF from the transposed group at wb, else transposed here from
 * the packed block at x, where the 16 bytes of rows r and r + 4 are loaded
 * into one register's two halves, so that two rounds of unpacks bring
 * dword t of rows 0-3 and 4-7 together without lane moves. */
#define Q8H_LD2(r, h)                                                                                             \
    _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(x + 16 * (h) + 32 * (r)))), \
                            _mm_loadu_si128((const __m128i *)(const void *)(x + 16 * (h) + 32 * (r) + 128)), 1)
#define Q8H_W(h)                                                                                                \
    __m256i w0, w1, w2, w3;                                                                                     \
    if (BUF) {                                                                                                  \
        w0 = _mm256_load_si256(wb + 4 * (h));                                                                   \
        w1 = _mm256_load_si256(wb + 4 * (h) + 1);                                                               \
        w2 = _mm256_load_si256(wb + 4 * (h) + 2);                                                               \
        w3 = _mm256_load_si256(wb + 4 * (h) + 3);                                                               \
    } else {                                                                                                    \
        const __m256i r0 = Q8H_LD2(0, h), r1 = Q8H_LD2(1, h), r2 = Q8H_LD2(2, h), r3 = Q8H_LD2(3, h);           \
        const __m256i t0 = _mm256_unpacklo_epi32(r0, r1), t1 = _mm256_unpackhi_epi32(r0, r1);                 \
        const __m256i t2 = _mm256_unpacklo_epi32(r2, r3), t3 = _mm256_unpackhi_epi32(r2, r3);                 \
        w0 = _mm256_unpacklo_epi64(t0, t2);                                                                     \
        w1 = _mm256_unpackhi_epi64(t0, t2);                                                                     \
        w2 = _mm256_unpacklo_epi64(t1, t3);                                                                     \
        w3 = _mm256_unpackhi_epi64(t1, t3);                                                                     \
    }                                                                                                           \
    const __m256i u0 = _mm256_abs_epi8(w0), u1 = _mm256_abs_epi8(w1);                                          \
    const __m256i u2 = _mm256_abs_epi8(w2), u3 = _mm256_abs_epi8(w3);                                          \
    if (BUF) {                                                                                                  \
        w0 = _mm256_cmpgt_epi8(zero, w0);                                                                       \
        w1 = _mm256_cmpgt_epi8(zero, w1);                                                                       \
        w2 = _mm256_cmpgt_epi8(zero, w2);                                                                       \
        w3 = _mm256_cmpgt_epi8(zero, w3);                                                                       \
    }
/* Row j's products of dword t of half h: from the buffer, the activation
 * xor the weights' sign mask (w[t] holds the mask then), else its sign
 * moved by the weights (vpsignb). */
#define Q8H_DOT(t, h)                                                                                              \
    _mm256_madd_epi16(_mm256_maddubs_epi16(u##t, BUF ? _mm256_xor_si256(BC256(y + 16 * (h) + 4 * (t)), w##t)         \
                                                     : _mm256_sign_epi8(BC256(y + 16 * (h) + 4 * (t)), w##t)),       \
                      ones)
#define Q8H_SUM(s, h) s = _mm256_add_epi32(_mm256_add_epi32(s, _mm256_add_epi32(Q8H_DOT(0, h), Q8H_DOT(1, h))), \
                                           _mm256_add_epi32(Q8H_DOT(2, h), Q8H_DOT(3, h)));
static inline AI void tile_q8_avx2_halves(const int RN, const bool BUF, const bool ILV, const uint8_t *wt, int64_t nb,
                                          const uint8_t *grp, const uint8_t *ar, size_t as, const int32_t *bias,
                                          const float *scale, float *out, int64_t ldo, uintptr_t pf, size_t pfl,
                                          size_t pfs) {
    const __m256i ones = _mm256_set1_epi16(1), zero = _mm256_setzero_si256();
    (void)zero;
    __m256 c[16];
    __m256i sh[16]; /* [row] int32 x 8 weight rows: the bias and the block's sums of dwords 0-3 */
    for (int j = 0; j < RN; j++) c[j] = _mm256_setzero_ps();
    em_x8_at at = em_x8_first((uintptr_t)grp, nb);
    for (int64_t b = 0; b < nb; b++, em_x8_next(&at, nb, b, 32)) {
        if (pf) em_gemv_prefetch_part(pf, pfl, b, pfs);
        const __m256i *wb = BUF ? (const __m256i *)(const void *)(wt + (size_t)b * Q8T_BLOCK) : NULL;
        const uint8_t *x = (const uint8_t *)at.q;
        const uint8_t *yb = ILV ? ar + (size_t)b * (size_t)RN * LANE_ILV : ar + (size_t)b * sizeof(em_block_q8_0) + 2;
        (void)wb;
        (void)x;
        {
            Q8H_W(0)
            const __m256i corr = BUF ? _mm256_load_si256(wb + 8) : zero;
            _Pragma("GCC unroll 1") for (int j = 0; j < RN; j++) {
                const uint8_t *y = ILV ? yb + 32 * j : yb + (size_t)j * as;
                __m256i s = _mm256_set1_epi32(ILV ? ld32(yb + 32 * RN + 4 * j) : bias[j * nb + b]);
                if (BUF) s = _mm256_add_epi32(s, corr);
                Q8H_SUM(s, 0)
                sh[j] = s;
            }
        }
        {
            Q8H_W(1)
            const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)at.d));
            _Pragma("GCC unroll 1") for (int j = 0; j < RN; j++) {
                const uint8_t *y = ILV ? yb + 32 * j : yb + (size_t)j * as;
                __m256i s = sh[j];
                Q8H_SUM(s, 1)
                const float sc = ILV ? em_gemv_ldf32(yb + 36 * RN + 4 * j) : scale[j * nb + b];
                c[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, _mm256_set1_ps(sc)), c[j]);
            }
        }
    }
    for (int j = 0; j < RN; j++) _mm256_storeu_ps(out + j * ldo, c[j]);
}
/* The tile: from the transposed group when this call's panels have more
 * than one tile (several tiles share its transpose), else transposing
 * each block in the tile (a call of 3 to 8 rows: bench_gemm, 3 rows, was
 * about 0.92x with the buffer, which then only adds stores and loads). */
static inline AI void tile_q8_avx2(const int RN, int64_t nb, const uint8_t *grp, const uint8_t *ar, size_t as,
                                   const int32_t *bias, const float *scale, float *out, int64_t ldo, uintptr_t pf,
                                   size_t pfl, size_t pfs) {
    const uint8_t *wt = kept.wt_use ? q8_transposed(grp, nb, false) : NULL;
    if (wt)
        tile_q8_avx2_halves(RN, true, false, wt, nb, grp, ar, as, bias, scale, out, ldo, pf, pfl, pfs);
    else
        tile_q8_avx2_halves(RN, false, false, NULL, nb, grp, ar, as, bias, scale, out, ldo, pf, pfl, pfs);
}
/* The tile over the step's interleaved rows (kept_interleaved), for
 * calls of more than 8 rows inside a product step: each block of a tile
 * is one run of rn x 40 bytes (the rows' quants, biases and scales)
 * instead of rn quants on rows 34 * nb bytes apart and 2 rn table entries
 * on lines of their own, 24 streams for a tile of 8 for the prefetchers
 * to follow next to the weights and their transposed group; with the
 * whole prompt in one panel (lane_panel), bench_gemm k = 5632, 128 rows:
 * about 1.10x, k = 2048: 1.03x (8-row tiles, quiet minutes).  The same
 * rows, table entries and arithmetic,
 * so the same bits. */
static inline AI void tile_q8_avx2_ilv(const int RN, int64_t nb, const uint8_t *grp, const uint8_t *x, float *out,
                                       int64_t ldo, uintptr_t pf, size_t pfl, size_t pfs) {
    const uint8_t *wt = kept.wt_use ? q8_transposed(grp, nb, false) : NULL;
    if (wt)
        tile_q8_avx2_halves(RN, true, true, wt, nb, grp, x, 0, NULL, NULL, out, ldo, pf, pfl, pfs);
    else
        tile_q8_avx2_halves(RN, false, true, NULL, nb, grp, x, 0, NULL, NULL, out, ldo, pf, pfl, pfs);
}
static void tile_ilv_q8_avx2(int rn, int64_t nb, const uint8_t *ga, const uint8_t *gb, const uint8_t *x, float *out,
                             int64_t ldo, uintptr_t pf, size_t pfl, size_t pfs) {
    (void)gb;
    switch (rn) {
    case 16: tile_q8_avx2_ilv(16, nb, ga, x, out, ldo, pf, pfl, pfs); return;
    case 8: tile_q8_avx2_ilv(8, nb, ga, x, out, ldo, pf, pfl, pfs); return;
    case 7: tile_q8_avx2_ilv(7, nb, ga, x, out, ldo, pf, pfl, pfs); return;
    case 6: tile_q8_avx2_ilv(6, nb, ga, x, out, ldo, pf, pfl, pfs); return;
    case 5: tile_q8_avx2_ilv(5, nb, ga, x, out, ldo, pf, pfl, pfs); return;
    case 4: tile_q8_avx2_ilv(4, nb, ga, x, out, ldo, pf, pfl, pfs); return;
    case 3: tile_q8_avx2_ilv(3, nb, ga, x, out, ldo, pf, pfl, pfs); return;
    case 2: tile_q8_avx2_ilv(2, nb, ga, x, out, ldo, pf, pfl, pfs); return;
    default: tile_q8_avx2_ilv(1, nb, ga, x, out, ldo, pf, pfl, pfs); return;
    }
}
#undef Q8H_LD2
#undef Q8H_W
#undef Q8H_DOT
#undef Q8H_SUM

/* AVX-VNNI Q8_0 in prompts: the operands of vpdpbusd change roles, as
 * tile_q8_512_wq does with AVX-512.  tile_q8_vnni keeps each weight row's
 * products in its own 8 lanes and sums them across lanes (sum8_rows, 21
 * unpacks, lane moves and adds per activation row and block, most of
 * them on the one shuffle pipe of many cores), because the weights are
 * the unsigned operand (+128) and the activations the signed one, a whole
 * 32-byte register.  Here the weights stay signed and are read from the
 * transposed group (q8_transposed with wsum: w[t] = dword t of rows 0-7,
 * one row per lane, made once per group and call), the activations are
 * made unsigned (+128, in the step's interleaved copy: kept_interleaved
 * with flip) and each of their dwords is broadcast to all lanes, so each
 * lane ends with its weight row's whole block sum after 8 vpdpbusd, with
 * no lane sums: per activation row and block 8 broadcasts, 8 vpdpbusd and
 * 3 float instructions.  The sum is then that of (a + 128) w, and 128
 * times the weights' sum comes back out where tile_q8_vnni took 128
 * times the activations' out: each row's sum starts at the block's
 * correction, -128 times each weight row's quant sum, stored after the
 * block's transposed weights.  Both are the same exact int32 block sum
 * (sum of a w, at most 32 * 128 * 128 in magnitude), converted, scaled
 * and added as before, so the results are the same bits.
 *
 * The eight products go into two sums of four, as tile_q8_512 does, to
 * halve the chain of dependent vpdpbusd; the rows' loop stays rolled (its
 * accumulators on the stack, as tile_q8_avx2_halves) so that the eight
 * weight registers, the correction and the scales stay in the sixteen
 * registers. */
static inline AI TVNNI void tile_q8_vnni_wt(const int RN, int64_t nb, const uint8_t *grp, const uint8_t *wt,
                                            const uint8_t *x, float *out, int64_t ldo, uintptr_t pf, size_t pfl,
                                            size_t pfs) {
    __m256 c[16];
    for (int j = 0; j < RN; j++) c[j] = _mm256_setzero_ps();
    em_x8_at at = em_x8_first((uintptr_t)grp, nb);
    for (int64_t b = 0; b < nb; b++, em_x8_next(&at, nb, b, 32)) {
        if (pf) em_gemv_prefetch_part(pf, pfl, b, pfs);
        const __m256i *wb = (const __m256i *)(const void *)(wt + (size_t)b * Q8T_BLOCK);
        const uint8_t *yb = x + (size_t)b * (size_t)RN * LANE_ILV;
        const __m256i w0 = _mm256_load_si256(wb), w1 = _mm256_load_si256(wb + 1);
        const __m256i w2 = _mm256_load_si256(wb + 2), w3 = _mm256_load_si256(wb + 3);
        const __m256i w4 = _mm256_load_si256(wb + 4), w5 = _mm256_load_si256(wb + 5);
        const __m256i w6 = _mm256_load_si256(wb + 6), w7 = _mm256_load_si256(wb + 7);
        const __m256i corr = _mm256_load_si256(wb + 8);
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)at.d));
        _Pragma("GCC unroll 1") for (int j = 0; j < RN; j++) {
            const uint8_t *y = yb + 32 * j;
            __m256i s = corr, t = _mm256_setzero_si256();
            s = _mm256_dpbusd_avx_epi32(s, BC256(y), w0);
            t = _mm256_dpbusd_avx_epi32(t, BC256(y + 16), w4);
            s = _mm256_dpbusd_avx_epi32(s, BC256(y + 4), w1);
            t = _mm256_dpbusd_avx_epi32(t, BC256(y + 20), w5);
            s = _mm256_dpbusd_avx_epi32(s, BC256(y + 8), w2);
            t = _mm256_dpbusd_avx_epi32(t, BC256(y + 24), w6);
            s = _mm256_dpbusd_avx_epi32(s, BC256(y + 12), w3);
            t = _mm256_dpbusd_avx_epi32(t, BC256(y + 28), w7);
            s = _mm256_add_epi32(s, t);
            c[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, _mm256_set1_ps(em_gemv_ldf32(yb + 36 * RN + 4 * j))), c[j]);
        }
    }
    for (int j = 0; j < RN; j++) _mm256_storeu_ps(out + j * ldo, c[j]);
}
#define VNNIW_CALL(RN) tile_q8_vnni_wt(RN, nb, ga, wt, x, out, ldo, pf, pfl, pfs)
/* The interleaved tile of the AVX-VNNI Q8_0 prompt driver (q8_lanes_vnni16):
 * from the transposed group, read with the flipped copy. */
static TVNNI void tile_ilv_q8_vnni(int rn, int64_t nb, const uint8_t *ga, const uint8_t *gb, const uint8_t *x,
                                   float *out, int64_t ldo, uintptr_t pf, size_t pfl, size_t pfs) {
    (void)gb;
    const uint8_t *wt = q8_transposed(ga, nb, true);
    switch (rn) {
    case 16: VNNIW_CALL(16); return;
    case 8: VNNIW_CALL(8); return;
    case 7: VNNIW_CALL(7); return;
    case 6: VNNIW_CALL(6); return;
    case 5: VNNIW_CALL(5); return;
    case 4: VNNIW_CALL(4); return;
    case 3: VNNIW_CALL(3); return;
    case 2: VNNIW_CALL(2); return;
    default: VNNIW_CALL(1); return;
    }
}
#undef VNNIW_CALL
/* The AVX-VNNI Q8_0 prompt driver's tile outside a step's interleaved
 * copy (rn up to 16 rows): tile_q8_vnni's tiles of 2 rows and 1, the
 * short driver's arithmetic, so the same bits. */
static TVNNI void tile_q8_vnni_rows(int rn, TILE_ARGS) {
    (void)gb;
    for (int i = 0; i < rn; i += 2) {
        const uintptr_t p = i == 0 ? pf : 0;
        const uint8_t *r = ar + (size_t)i * as;
        if (rn - i >= 2)
            tile_q8_vnni(2, nb, ga, r, as, bias + i * nb, scale + i * nb, out + i * ldo, ldo, p, pfl, pfs);
        else
            tile_q8_vnni(1, nb, ga, r, as, bias + i * nb, scale + i * nb, out + i * ldo, ldo, p, pfl, pfs);
    }
}
#define Q8VNNI16_CALL(RN) tile_q8_vnni_rows(RN, nb, ga, gb, ar, as, bias, scale, out, ldo, pf, pfl, pfs)
#define Q8VNNI_CALL(RN) ((void)gb, tile_q8_vnni(RN, nb, ga, ar, as, bias, scale, out, ldo, pf, pfl, pfs))
/* Activation rows per AVX2 Q8_0 tile, 16 while that many are left, then
 * up to 8 (lane_rn16, the tiles of kept_interleaved): the transpose, or
 * the weights' absolute values and sign masks made from the transposed
 * group, are paid once per block for them all, and the rows' loop stays
 * rolled, their sums and accumulators on the stack, so a taller tile
 * costs no registers (bench_gemm, 128 rows: 8 rows measured faster than
 * 4, 4 than 2, and 16 about 1.02x (k = 2048) and 1.035x (k = 5632) faster
 * than 8). */
#define Q8AVX2_RN 16
#define Q8AVX2_CALL(RN)                                                                                        \
    ((void)gb, (RN) <= 2 ? tile_q8_avx2_lanes(RN, nb, ga, ar, as, bias, scale, out, ldo, pf, pfl, pfs)           \
                         : tile_q8_avx2(RN, nb, ga, ar, as, bias, scale, out, ldo, pf, pfl, pfs))

/* ------------------------------------------------------------- drivers */

/* How a driver walks its tiles: their height (rn_max rows; with tiles16,
 * 16 rows while that many are left, then up to 8), how far ahead of the
 * weight group it computes it prefetches (pf_bytes), whether the
 * prefetches are spread over every tile of the group or all made by the
 * first (spread), whether it reads the step's interleaved rows
 * (kept_interleaved) when there are some and the call has more than
 * ilv_min rows, and whether its panels of activation rows may be large
 * (big_panel, lane_panel).  A compile-time constant in each driver, so
 * the choices fold away. */
typedef struct lane_plan {
    int rn_max;
    bool tiles16, spread, interleave, big_panel;
    int64_t ilv_min;
    size_t pf_bytes;
} lane_plan;

/* The weights the 16-row drivers prefetch ahead of the group they compute. */
#define EM_LANES_PF_BYTES (32 * 1024)

/* Tiles of at most rn rows with the weights' prefetch as
 * gemm_packed_avx2.c does it, bunched into the first tile. */
#define LANE_PLAN(rn) ((lane_plan){.rn_max = rn, .pf_bytes = EM_GEMV_PF_BYTES})
/* Tiles of 16 rows, for the batches of a serving engine's decode steps
 * (one row per sequence, often 8-32 of them).  Such a step computes
 * little per weight byte, so streaming the weights in from memory is most
 * of its time unless it overlaps the arithmetic: the prefetches reach
 * further ahead (EM_LANES_PF_BYTES, a few groups) and are spread over
 * every tile of the group instead of bunched into the first, whose
 * prefetch instructions otherwise stalled on a full miss queue (a quarter
 * of the kernel's samples in a 16-row decode step); and inside a product
 * step the tiles read the interleaved rows.  The AVX-512 drivers take it
 * for prompts too, where 16-row tiles halve the weights' regrouping. */
#define LANE_PLAN16 ((lane_plan){.rn_max = 16, .tiles16 = true, .spread = true, .interleave = true, .pf_bytes = EM_LANES_PF_BYTES})

/* The rows of the tile from row r0 of a panel ending at p1. */
static inline int64_t lane_rn(lane_plan pl, int64_t r0, int64_t p1) {
    return pl.tiles16 ? lane_rn16(r0, p1) : EM_MIN((int64_t)pl.rn_max, p1 - r0);
}

/* The tiles over n rows that share a group's prefetches. */
static inline int64_t lane_pf_tiles(lane_plan pl, int64_t n) {
    if (!pl.spread) return 1;
    return pl.tiles16 ? n / 16 + (n % 16 + 7) / 8 : (n + pl.rn_max - 1) / pl.rn_max;
}

/* em_gemv_prefetch_plan's region (the group bytes or more ahead of the
 * rm rows from r0; at r0 = 0 all groups up to it) for any distance. */
static inline void lane_prefetch_plan(const void *w, size_t ws, int64_t r0, int64_t rm, size_t bytes, uintptr_t *pf,
                                      size_t *pfl) {
    const size_t group = (size_t)rm * ws > 0 ? (size_t)rm * ws : 1;
    const int64_t ahead = (int64_t)((bytes + group - 1) / group);
    const int64_t first = r0 == 0 ? rm : r0 + ahead * rm, end = r0 + (ahead + 1) * rm;
    *pf = first < end ? (uintptr_t)w + (size_t)first * ws : 0;
    *pfl = first < end ? (size_t)(end - first) * ws : 0;
}

/* No interleaved tile (drivers whose plan does not interleave). */
#define LANE_NO_ILV(...) ((void)0)

/* One activation row goes to the x8 kernel (fallback).  Otherwise for
 * each panel of activation rows (their table first, unless the step's
 * interleaved rows are read), each GROUPS groups of weight rows, each
 * tile of activation rows (PLAN), whose rn is a compile-time constant in
 * the tile called; the weights ahead are prefetched as PLAN says. */
#define LANES_DRIVER(name, TGT, PLAN, GROUPS, OFFSET, fallback, ILV_TILE, FLIP)                                      \
    TGT void name(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, size_t as, int64_t na,       \
                  float *out, int64_t ldo) {                                                                   \
        if (na < 2) {                                                                                          \
            fallback(k, w, ws, nw, a, as, na, out, ldo);                                                       \
            return;                                                                                            \
        }                                                                                                      \
        const lane_plan pl = PLAN;                                                                             \
        const int64_t nb = k / 32, step = (int64_t)GROUPS * EM_PACK_ROWS;                                      \
        int32_t bias[LANE_TAB];                                                                                \
        float scale[LANE_TAB];                                                                                 \
        const uint8_t *ilv =                                                                                   \
            pl.interleave && na > pl.ilv_min ? kept_interleaved(OFFSET, nb, a, as, na, FLIP) : NULL;          \
        const float *kscale = NULL;                                                                            \
        const int32_t *kbias = kept_table(OFFSET, nb, a, as, na, &kscale);                                     \
        const int64_t panel = lane_panel(nb, as, pl.rn_max, na, pl.big_panel && kbias);                        \
        for (int64_t p0 = 0; p0 < na; p0 += panel) {                                                           \
            const int64_t p1 = EM_MIN(na, p0 + panel);                                                         \
            const float *pscale = NULL;                                                                        \
            const int32_t *pbias =                                                                             \
                ilv ? NULL : panel_table(OFFSET, nb, a, as, p0, p1, kbias, kscale, bias, scale, &pscale);      \
            const int64_t ntile = lane_pf_tiles(pl, p1 - p0);                                                  \
            for (int64_t j0 = 0; j0 < nw; j0 += step) {                                                        \
                const uint8_t *ga = (const uint8_t *)w + (size_t)j0 * ws;                                      \
                const uint8_t *gb = j0 + EM_PACK_ROWS < nw ? ga + (size_t)EM_PACK_ROWS * ws : ga;              \
                uintptr_t pfa;                                                                                 \
                size_t pfl;                                                                                    \
                lane_prefetch_plan(w, ws, j0, step, pl.pf_bytes, &pfa, &pfl);                                  \
                const size_t piece = (pfl / (size_t)ntile + 63) & ~(size_t)63; /* each tile's share */         \
                int64_t tile = 0;                                                                              \
                for (int64_t r0 = p0, rn; r0 < p1; r0 += rn, tile++) {                                         \
                    rn = lane_rn(pl, r0, p1);                                                                  \
                    const size_t off = (size_t)tile * piece;                                                   \
                    const size_t len = off < pfl ? EM_MIN(piece, pfl - off) : 0;                               \
                    const uintptr_t pf = len ? pfa + off : 0;                                                  \
                    const size_t pfs = (len + (size_t)nb - 1) / (size_t)nb;                                    \
                    float *o = out + r0 * ldo + j0;                                                            \
                    if (ilv) {                                                                                 \
                        ILV_TILE((int)rn, nb, ga, gb, ilv + (size_t)r0 * (size_t)nb * LANE_ILV, o, ldo, pf,   \
                                 len, pfs);                                                                    \
                        continue;                                                                              \
                    }                                                                                          \
                    tile_call_##name((int)rn, nb, ga, gb, (const uint8_t *)a + (size_t)r0 * as, as,            \
                                     pbias + (r0 - p0) * nb, pscale + (r0 - p0) * nb, o, ldo, pf, len, pfs);   \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
    }

/* The tile of rn (<= RNMAX) rows, rn a constant in each branch. */
#define TILE_SWITCH(name, TGT, CALL, RNMAX)                                                                    \
    static TGT void tile_call_##name(int rn, TILE_ARGS) {                                                     \
        switch (rn) {                                                                                          \
        case 16: if (RNMAX >= 16) { CALL(16); return; } /* fallthrough */                                      \
        case 8: if (RNMAX >= 8) { CALL(8); return; } /* fallthrough */                                         \
        case 7: if (RNMAX >= 7) { CALL(7); return; } /* fallthrough */                                         \
        case 6: if (RNMAX >= 6) { CALL(6); return; } /* fallthrough */                                         \
        case 5: if (RNMAX >= 5) { CALL(5); return; } /* fallthrough */                                         \
        case 4: if (RNMAX >= 4) { CALL(4); return; } /* fallthrough */                                         \
        case 3: if (RNMAX >= 3) { CALL(3); return; } /* fallthrough */                                         \
        case 2: if (RNMAX >= 2) { CALL(2); return; } /* fallthrough */                                         \
        default: CALL(1); return;                                                                              \
        }                                                                                                      \
    }

/* The interleaved 16-row tiles of rn rows (16, or 1 to 8): TILE is
 * tile_q8_512 or tile_q4_512, which read a step's interleaved rows. */
#define ILV_512_CALL(TILE, RN)                                                                                 \
    TILE(RN, true, nb, ga, gb, gb == ga ? 0xff : 0xffff, x, 0, NULL, NULL, out, ldo, pf, pfl, pfs)
#define ILV_512_SWITCH(NAME, TILE)                                                                             \
    static T512 void tile_ilv_##NAME(int rn, int64_t nb, const uint8_t *ga, const uint8_t *gb, const uint8_t *x, \
                                     float *out, int64_t ldo, uintptr_t pf, size_t pfl, size_t pfs) {          \
        switch (rn) {                                                                                          \
        case 16: ILV_512_CALL(TILE, 16); return;                                                               \
        case 8: ILV_512_CALL(TILE, 8); return;                                                                 \
        case 7: ILV_512_CALL(TILE, 7); return;                                                                 \
        case 6: ILV_512_CALL(TILE, 6); return;                                                                 \
        case 5: ILV_512_CALL(TILE, 5); return;                                                                 \
        case 4: ILV_512_CALL(TILE, 4); return;                                                                 \
        case 3: ILV_512_CALL(TILE, 3); return;                                                                 \
        case 2: ILV_512_CALL(TILE, 2); return;                                                                 \
        default: ILV_512_CALL(TILE, 1); return;                                                                \
        }                                                                                                      \
    }
ILV_512_SWITCH(q8_lanes_avx512, tile_q8_512)
ILV_512_SWITCH(em_gemm_q4_0x8_lanes_avx512, tile_q4_512)

/* The Q8_0 AVX-512 interleaved tile of rn rows (16, or 1 to 8): from the
 * regrouped weights when the step's copy holds the quants + 128 (the
 * call chose tile_q8_512_wq), else tile_q8_512. */
#define WQ_CALL(RN) tile_q8_512_wq(RN, nb, wq, keep, x, out, ldo, pf, pfl, pfs)
static T512 void tile_ilv_q8_512(int rn, int64_t nb, const uint8_t *ga, const uint8_t *gb, const uint8_t *x,
                                 float *out, int64_t ldo, uintptr_t pf, size_t pfl, size_t pfs) {
    if (!kept.ilv_flip) {
        tile_ilv_q8_lanes_avx512(rn, nb, ga, gb, x, out, ldo, pf, pfl, pfs);
        return;
    }
    const uint8_t *wq = q8_regrouped(ga, gb, nb);
    const __mmask16 keep = gb == ga ? 0xff : 0xffff;
    switch (rn) {
    case 16: WQ_CALL(16); return;
    case 8: WQ_CALL(8); return;
    case 7: WQ_CALL(7); return;
    case 6: WQ_CALL(6); return;
    case 5: WQ_CALL(5); return;
    case 4: WQ_CALL(4); return;
    case 3: WQ_CALL(3); return;
    case 2: WQ_CALL(2); return;
    default: WQ_CALL(1); return;
    }
}

TILE_SWITCH(em_gemm_q4_0x8_lanes_avx512, T512, T512_CALL, 16)
TILE_SWITCH(em_gemm_q4_0x8_lanes_avxvnni, TVNNI, TVNNI_CALL, 4)
TILE_SWITCH(em_gemm_q4_0x8_lanes_avx2, , TAVX2_CALL, 4)
TILE_SWITCH(q8_lanes_avx512, T512, Q8_512_CALL, 16)
TILE_SWITCH(q8_lanes_vnni, TVNNI, Q8VNNI_CALL, 2)
TILE_SWITCH(q8_lanes_vnni16, TVNNI, Q8VNNI16_CALL, 16)
TILE_SWITCH(q8_lanes_avx2, , Q8AVX2_CALL, Q8AVX2_RN)
LANES_DRIVER(em_gemm_q4_0x8_lanes_avx512, T512, LANE_PLAN16, 2, 8, em_gemm_q4_0x8_avx512,
             tile_ilv_em_gemm_q4_0x8_lanes_avx512, false)
LANES_DRIVER(em_gemm_q4_0x8_lanes_avxvnni, TVNNI, LANE_PLAN(4), 1, 8, em_gemm_q4_0x8_avxvnni, LANE_NO_ILV, false)
LANES_DRIVER(em_gemm_q4_0x8_lanes_avx2, , LANE_PLAN(4), 1, 8, em_gemm_q4_0x8_avx2, LANE_NO_ILV, false)
LANES_DRIVER(q8_lanes_avx512, static T512, LANE_PLAN16, 2, 128, em_gemm_q8_0x8_avx512, tile_ilv_q8_512,
             kept.wq_on)
LANES_DRIVER(q8_lanes_vnni, static TVNNI, LANE_PLAN(2), 1, 128, em_gemm_q8_0x8_avxvnni, LANE_NO_ILV, false)
LANES_DRIVER(q8_lanes_vnni16, static TVNNI,
             ((lane_plan){.rn_max = 16, .tiles16 = true, .pf_bytes = EM_GEMV_PF_BYTES, .big_panel = true,
                          .interleave = true}),
             1, 128, em_gemm_q8_0x8_avxvnni, tile_ilv_q8_vnni, true)
LANES_DRIVER(q8_lanes_avx2, static,
             ((lane_plan){.rn_max = Q8AVX2_RN, .tiles16 = true, .pf_bytes = EM_GEMV_PF_BYTES, .big_panel = true,
                          .interleave = true, .ilv_min = 8}),
             1, 0, em_gemm_q8_0x8_avx2, tile_ilv_q8_avx2, false)

/* The AVX2 Q8_0 driver; the thread's transposed group (q8_transposed) is
 * forgotten first, since another call's group may sit at the same address
 * with other weights.  Calls of more than 8 rows (two tiles or more)
 * read it; those of 3 to 8 transpose in their one tile. */
void em_gemm_q8_0x8_lanes_avx2(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, size_t as, int64_t na,
                               float *out, int64_t ldo) {
    kept.wt_grp = NULL;
    kept.wt_use = na > 8;
    q8_lanes_avx2(k, w, ws, nw, a, as, na, out, ldo);
}

/* The AVX-512 Q8_0 driver.  Calls of Q8R_MIN_ROWS rows or more (a
 * prompt's, whose panels hold several tiles) read the weights regrouped
 * once per group pair (tile_q8_512_wq), when the thread's buffer has
 * room; the regrouped groups are forgotten first, as another call's
 * weights may sit at the same address.  Fewer rows keep tile_q8_512: the
 * regrouping pass costs about what a tile or two gains (bench_gemm
 * --step, loaded: at 16 rows, one tile, 5-15% slower through the buffer;
 * at 20 and 32 rows even at k = 768 and up to 10% slower at k = 3072,
 * whose 96 regrouped blocks, 60 KiB, outgrow L1; at 48 even to 5% faster;
 * at 128, 7-14% faster). */
#define Q8R_MIN_ROWS 48
T512 void em_gemm_q8_0x8_lanes_avx512(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, size_t as,
                                      int64_t na, float *out, int64_t ldo) {
    kept.wq_ga = NULL;
    kept.wq_on = na >= Q8R_MIN_ROWS && q8_regrouped_reserve((size_t)(k / 32) * Q8R_BLOCK);
    q8_lanes_avx512(k, w, ws, nw, a, as, na, out, ldo);
}

/* The AVX-VNNI Q8_0 driver.  Calls of Q8W_MIN_ROWS rows or more (a
 * prompt's) take tiles of 16 rows and, inside a product step, read the
 * weights transposed once per group and call with the activations made
 * unsigned in the step's copy (tile_q8_vnni_wt), when the thread's buffer
 * has room; the transposed group is forgotten first, as another call's
 * weights may sit at the same address.  Fewer rows keep tile_q8_vnni's
 * tiles of 2: the transpose, 24 unpacks and lane moves a block, is then
 * paid for too few rows (bench_gemm --step, k = 768 and 3072, loaded, 2
 * pairs: 2 rows 0.63-0.74x, 3 rows 0.82-0.92x, 4 rows 0.96-1.08x, 5 rows
 * 1.13-1.22x, 6 rows 1.20-1.30x, 16 rows 1.57-1.78x). */
#define Q8W_MIN_ROWS 5
TVNNI void em_gemm_q8_0x8_lanes_avxvnni(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, size_t as,
                                       int64_t na, float *out, int64_t ldo) {
    kept.wt_grp = NULL;
    if (na >= Q8W_MIN_ROWS && q8_transposed_reserve((size_t)(k / 32) * Q8T_BLOCK))
        q8_lanes_vnni16(k, w, ws, nw, a, as, na, out, ldo);
    else
        q8_lanes_vnni(k, w, ws, nw, a, as, na, out, ldo);
}

#endif /* EM_HAVE_X86_GEMM */
