/*
 * attention.c - online-softmax attention, one task per (row, KV head),
 * and the scalar twins of its SIMD inner loops.
 *
 * For a query q and keys k_j the output is sum_j softmax(q.k_j * scale) v_j.
 * Visiting the keys once, we keep the running maximum m, the running sum of
 * exp(s_j - m) and the running weighted sum of values; when m grows, both
 * sums are rescaled by exp(m_old - m_new).  This needs O(head_dim) memory
 * per head whatever the context length.
 *
 * Keys are taken in blocks of up to EM_ATTN_BLOCK visible cache rows (these
 * blocks span the cache's blocks of EM_KV_BLOCK positions): the
 * scores of a block are computed for every query head of the group (each
 * key row is read once for all of them), the maximum and rescaling happen
 * once per block rather than once per key, the exponentials are taken
 * over the block as a vector, and then each value row is read once and
 * added into every head's sum.
 *
 * Prompts are attended a tile at a time (flash-style): up to
 * 8 to EM_ATTN_QTILE consecutive rows of one sequence (attn_qtile), with all the query heads
 * of one KV head, walk the keys together, so each block of keys and values
 * is converted and brought into L1 once per tile instead of once per row,
 * and the work per key block is spread over tile * group queries.  Keys a
 * row may not see (past its position, or outside its window) score -inf
 * in that row; a row that sees no key of a block skips the block.  The
 * blocks start where the first row's walk starts them, so without a
 * sliding window a tile gives the per-row results (with one, the blocks
 * of later rows are cut elsewhere: the same sums, rescaled at other
 * places).
 */
#include "ops/attention.h"
#include "ops/ops.h"
#include "quant/gemm.h"
#include "quant/quant.h"

#include <math.h>

#define EM_ATTN_BLOCK 32 /* visible keys scored and softmaxed together */
#define EM_ATTN_QTILE 32 /* most query rows of one sequence attended together */
#define EM_ATTN_QTILE_Q 32 /* queries per tile aimed at: rows times group */

/* Query rows per tile for a group of `group` query heads per KV head:
 * about EM_ATTN_QTILE_Q queries, at least 8 rows.  A longer tile reads
 * each block of keys and values for more queries (bench_attn, 12 heads of
 * 64, one KV head each: 32 rows attend a 512-row prompt 12% faster than
 * 8), but its queries' accumulators must stay in L1, and on the diagonal
 * of a causal prompt it scores more keys that some of its rows may not
 * see: with 8 query heads per KV head, 32 rows measured 14% slower than 8
 * on a 128-row prompt. */
static int32_t attn_qtile(int32_t group) {
    const int32_t rows = EM_ATTN_QTILE_Q / (group > 0 ? group : 1);
    return rows < 8 ? 8 : rows > EM_ATTN_QTILE ? EM_ATTN_QTILE : rows;
}

/* ------------------------------------------------------ scalar kernels */

static void qk_f32_scalar(const float *q, int n_q, int64_t n, const float *const *k, int nk, float *s, int s_stride) {
    for (int h = 0; h < n_q; h++)
        for (int j = 0; j < nk; j++) {
            const float *qh = q + h * n;
            float acc = 0;
            for (int64_t i = 0; i < n; i++) acc += qh[i] * k[j][i];
            s[h * s_stride + j] = acc;
        }
}

static void qk_f16_scalar(const float *q, int n_q, int64_t n, const uint16_t *const *k, int nk, float *s,
                          int s_stride) {
    for (int h = 0; h < n_q; h++)
        for (int j = 0; j < nk; j++) {
            const float *qh = q + h * n;
            float acc = 0;
            for (int64_t i = 0; i < n; i++) acc += qh[i] * em_fp16_to_fp32(k[j][i]);
            s[h * s_stride + j] = acc;
        }
}

/* Q8_0 keys: each element widened to the float em_dequantize_row makes,
 * fp16_to_fp32(d) * (float)q (exact: an 11-bit by 8-bit product), then
 * summed as qk_f32_scalar sums it. */
static void qk_q8_0_scalar(const float *q, int n_q, int64_t n, const em_block_q8_0 *const *k, int nk, float *s,
                           int s_stride) {
    for (int h = 0; h < n_q; h++)
        for (int j = 0; j < nk; j++) {
            const float *qh = q + h * n;
            float acc = 0;
            for (int64_t i = 0; i < n; i++) {
                const em_block_q8_0 *b = k[j] + i / EM_QK8_0;
                acc += qh[i] * ((float)b->qs[i % EM_QK8_0] * em_fp16_to_fp32(b->d));
            }
            s[h * s_stride + j] = acc;
        }
}

static void pv_f32_scalar(float *acc, int n_q, int64_t n, const float *p, int p_stride, const float *const *v,
                          int nv) {
    for (int h = 0; h < n_q; h++)
        for (int j = 0; j < nv; j++) {
            float *a = acc + h * n;
            const float w = p[h * p_stride + j];
            for (int64_t i = 0; i < n; i++) a[i] += w * v[j][i];
        }
}

static void pv_f16_scalar(float *acc, int n_q, int64_t n, const float *p, int p_stride, const uint16_t *const *v,
                          int nv) {
    for (int h = 0; h < n_q; h++)
        for (int j = 0; j < nv; j++) {
            float *a = acc + h * n;
            const float w = p[h * p_stride + j];
            for (int64_t i = 0; i < n; i++) a[i] += w * em_fp16_to_fp32(v[j][i]);
        }
}

static void pv_q8_0_scalar(float *acc, int n_q, int64_t n, const float *p, int p_stride,
                           const em_block_q8_0 *const *v, int nv) {
    for (int h = 0; h < n_q; h++)
        for (int j = 0; j < nv; j++) {
            float *a = acc + h * n;
            const float w = p[h * p_stride + j];
            for (int64_t i = 0; i < n; i++) {
                const em_block_q8_0 *b = v[j] + i / EM_QK8_0;
                a[i] += w * ((float)b->qs[i % EM_QK8_0] * em_fp16_to_fp32(b->d));
            }
        }
}

static float exp_sum_scalar(float *s, int n, float m) {
    float sum = 0;
    for (int j = 0; j < n; j++) {
        s[j] = expf(s[j] - m);
        sum += s[j];
    }
    return sum;
}

static float scale_max_scalar(float *s, int n, float scale, const int32_t *kpos, int32_t lo, int32_t hi) {
    float m = -INFINITY;
    for (int j = 0; j < n; j++) {
        s[j] *= scale;
        if (kpos && (kpos[j] < lo || kpos[j] > hi)) s[j] = -INFINITY;
        if (s[j] > m) m = s[j];
    }
    return m;
}

static void exp_rows_scalar(float *s, int nq, int stride, int n, const float *m, float *sum) {
    for (int h = 0; h < nq; h++) sum[h] = exp_sum_scalar(s + (int64_t)h * stride, n, m[h]);
}

static const em_attn_kernels kernels_scalar = {
    .qk_f32 = qk_f32_scalar,
    .qk_f16 = qk_f16_scalar,
    .pv_f32 = pv_f32_scalar,
    .pv_f16 = pv_f16_scalar,
    .qk_q8_0 = qk_q8_0_scalar,
    .pv_q8_0 = pv_q8_0_scalar,
    .exp_sum = exp_sum_scalar,
    .scale_max = scale_max_scalar,
    .exp_rows = exp_rows_scalar,
};

static int force_scalar;

const em_attn_kernels *em_attn_kernels_scalar(void) { return &kernels_scalar; }

void em_attn_kernels_force_scalar(int generic) { force_scalar = generic; }

const em_attn_kernels *em_attn_kernels_get(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (!force_scalar && (em_cpu_features() & EM_CPU_AVX512)) return &em_attn_kernels_avx512;
    if (!force_scalar && (em_cpu_features() & EM_CPU_AVX2)) return &em_attn_kernels_avx2;
#endif
    return &kernels_scalar;
}

/* -------------------------------------------------------------- tasks */

size_t em_attention_scratch(int32_t n_head, int32_t n_head_kv, int32_t head_dim, int32_t head_dim_v) {
    const int32_t group = n_head / n_head_kv;
    const size_t nq = (size_t)attn_qtile(group) * (size_t)group;
    /* For the nq queries of a tile: acc[nq][head_dim_v], m[nq], l[nq], a
     * block of keys and of values as floats (caches other than F32),
     * scores[nq][block], the queries gathered, qt[nq][head_dim], and
     * three floats per query for a block's update (mn, cf, es). */
    return nq * (size_t)(head_dim_v + 2) + (size_t)EM_ATTN_BLOCK * ((size_t)head_dim + (size_t)head_dim_v) +
           nq * EM_ATTN_BLOCK + nq * (size_t)head_dim + 3 * nq;
}

typedef struct attn_task_ctx {
    const em_attn_args *a;
    const em_attn_kernels *kn;
    int32_t group;
    float *acc;      /* [group][hdv] weighted sums of values        */
    float *mx;       /* [group] running maxima                      */
    float *sum;      /* [group] running sums of exp                 */
    float *kbuf;     /* [EM_ATTN_BLOCK][hd] the block's keys as floats */
    float *vbuf;     /* [EM_ATTN_BLOCK][hdv] its values, likewise     */
    float *sc;       /* [group][EM_ATTN_BLOCK] scores, then weights */
    float *qt;       /* [attn_qtile(group) * group][hd] a tile's queries */
    float *mn;       /* [nq] each query's maximum after the block     */
    float *cf;       /* [nq] the factor on its sums so far; < 0: none */
    float *es;       /* [nq] the sum of its block's exponentials      */
    int32_t slots[EM_ATTN_BLOCK]; /* cache rows of the block (types read by rows) */
    em_pos kpos[EM_ATTN_BLOCK];   /* their positions (tiles only)     */
    /* The block's key and value slices of the task's KV head, for the
     * types read in place (F16: k16/v16, Q8_0: k8/v8), gathered by
     * gather_run a cache block's run at a time. */
    const uint16_t *k16[EM_ATTN_BLOCK], *v16[EM_ATTN_BLOCK];
    const em_block_q8_0 *k8[EM_ATTN_BLOCK], *v8[EM_ATTN_BLOCK];
    /* A tile's rows (NULL outside tiles): query i belongs to row i / group,
     * which sees positions lo[i / group] .. hi[i / group]. */
    const em_pos *lo, *hi;
} attn_task_ctx;

/* Folds a block of nb cache rows into the running state of the nq
 * queries q (nq = group, or a tile's rows times group) of KV head g. */
static void attend_block(const attn_task_ctx *t, const float *q, int32_t nq, int32_t g, int nb) {
    const em_attn_args *a = t->a;
    const em_kv *kv = a->kv;
    const em_attn_kernels *kn = t->kn;
    const int32_t group = nq, hd = a->head_dim, hdv = a->head_dim_v;
    const int32_t layer = a->layer;
    /* This head's slice of each key, then of each value: read in place
     * (F16 and Q8_0, whose slice pointers gather_run set), or converted. */
    const float *r32[EM_ATTN_BLOCK];

    /* Scores.  F16, Q8_0 and F32 caches are read in place (the kernels
     * widen halves and Q8_0 blocks in registers, which costs less than
     * widening a block once into memory and reading it back for every
     * query); other types are converted into the block's float rows.
     * Tiles too read a Q8_0 block in place, although each group of four
     * queries widens it again: widening it once per tile into kbuf/vbuf
     * with SIMD and then running the float kernels measured no faster
     * (bench_attn, 12 heads over 4, one thread: 135 prompt rows 0.36 ms
     * either way, 512 rows about 10% slower widened, session 12). */
    if (kv->type == EM_TYPE_F16) {
        kn->qk_f16(q, group, hd, t->k16, nb, t->sc, EM_ATTN_BLOCK);
    } else if (kv->type == EM_TYPE_Q8_0) {
        kn->qk_q8_0(q, group, hd, t->k8, nb, t->sc, EM_ATTN_BLOCK);
    } else {
        for (int jj = 0; jj < nb; jj++)
            r32[jj] = em_kv_read(kv, layer, false, t->slots[jj], g, t->kbuf + (int64_t)jj * hd);
        kn->qk_f32(q, group, hd, r32, nb, t->sc, EM_ATTN_BLOCK);
    }

    /* Each query's maximum over the block, then the exponentials of all
     * of them in one call, then the running sums.  cf[h] < 0 marks a
     * query that sees none of the block: it adds nothing (its scores are
     * all -inf, so their exponentials are zeros). */
    for (int32_t h = 0; h < group; h++) {
        float *s = t->sc + h * EM_ATTN_BLOCK;
        const em_pos *kpos = t->lo ? t->kpos : NULL;
        const em_pos lo = t->lo ? t->lo[h / t->group] : 0, hi = t->lo ? t->hi[h / t->group] : 0;
        float bm;
        if (a->softcap > 0) {
            /* Scale, cap, then mask: as scale_max does without the cap. */
            for (int jj = 0; jj < nb; jj++) s[jj] *= a->scale;
            em_softcap(s, nb, a->softcap);
            bm = kn->scale_max(s, nb, 1.0f, kpos, lo, hi);
        } else {
            bm = kn->scale_max(s, nb, a->scale, kpos, lo, hi);
        }
        if (bm == -INFINITY) {
            t->mn[h] = 0;
            t->cf[h] = -1;
            continue;
        }
        /* A new maximum rescales what was summed so far (exp(0) = 1 needs
         * no call). */
        t->mn[h] = bm > t->mx[h] ? bm : t->mx[h];
        t->cf[h] = t->mn[h] == t->mx[h] ? 1.0f : expf(t->mx[h] - t->mn[h]);
    }
    kn->exp_rows(t->sc, group, EM_ATTN_BLOCK, nb, t->mn, t->es);
    for (int32_t h = 0; h < group; h++) {
        const float c = t->cf[h];
        if (c < 0) continue;
        t->mx[h] = t->mn[h];
        t->sum[h] = t->sum[h] * c + t->es[h];
        if (c != 1.0f) {
            float *acc = t->acc + (int64_t)h * hdv;
            for (int32_t i = 0; i < hdv; i++) acc[i] *= c;
        }
    }

    /* Weighted values, read as the keys were. */
    if (kv->type == EM_TYPE_F16) {
        kn->pv_f16(t->acc, group, hdv, t->sc, EM_ATTN_BLOCK, t->v16, nb);
    } else if (kv->type == EM_TYPE_Q8_0) {
        kn->pv_q8_0(t->acc, group, hdv, t->sc, EM_ATTN_BLOCK, t->v8, nb);
    } else {
        for (int jj = 0; jj < nb; jj++)
            r32[jj] = em_kv_read(kv, layer, true, t->slots[jj], g, t->vbuf + (int64_t)jj * hdv);
        kn->pv_f32(t->acc, group, hdv, t->sc, EM_ATTN_BLOCK, r32, nb);
    }
}

/* Asks for the key and value slices of KV head g at positions [q0, q1]
 * of a sequence (its block table `blocks`) to be brought into the cache.
 * A decode row's keys sit in blocks scattered over the pool, and a decode
 * step's weights evict them between two layers, so the kernels' loads
 * missed one after another; prefetched a block of EM_ATTN_BLOCK keys
 * ahead they arrive while the block before is scored and summed
 * (bench_attn --decode 16: 10-15% less time).  A head's slices of one
 * cache block are one run of bytes (kv.h, "Storage"), asked for line by
 * line from the line its first slice starts in (a Q8_0 slice, 34 bytes a
 * block, need not start on a line).  With the earlier row-major layout
 * head 0's task of a step with several rows also asked for the whole rows
 * (every head's slices, into L2, for the row's other heads' tasks that
 * mostly run next on the same thread); with head-major blocks asking for
 * the other heads' runs too measured slower decode steps (bench_steps
 * D16: without it 0.96-0.98 of the CPU time, F16 and Q8_0 caches) and is
 * left to their own tasks.  F16 and Q8_0 caches, the types read in
 * place (the others are converted row by row, em_kv_read); kb and vb are
 * the bytes of a head's key and value slice. */
static void kv_prefetch(const em_attn_args *a, const int32_t *blocks, em_pos q0, em_pos q1, int32_t g, size_t kb,
                        size_t vb) {
    const em_kv *kv = a->kv;
    for (em_pos q = q0; q <= q1;) {
        /* Positions q .. e are in one cache block, rows c .. c + e - q. */
        const em_pos e = EM_MIN(q1, q - q % EM_KV_BLOCK + EM_KV_BLOCK - 1);
        const int32_t c = blocks[q / EM_KV_BLOCK] * EM_KV_BLOCK + q % EM_KV_BLOCK, n = e - q + 1;
        const char *k = em_kv_key(kv, a->layer, c, g), *v = em_kv_value(kv, a->layer, c, g);
        for (const char *l = k - ((uintptr_t)k & 63); l < k + (size_t)n * kb; l += 64) __builtin_prefetch(l, 0, 3);
        for (const char *l = v - ((uintptr_t)v & 63); l < v + (size_t)n * vb; l += 64) __builtin_prefetch(l, 0, 3);
        q = e + 1;
    }
}

/* Puts the n cache rows cell .. cell + n - 1 (one cache block's, in
 * position order) at entries nb .. nb + n - 1 of the attention block.
 * KV head g's slices of one cache block are a run of equal slices
 * (kv.h, "Storage"), so for the types read in place a row's slice is the
 * run's first plus i slices: one address computed per cache block and an
 * addition per row.  Computing each row's address with em_kv_key and
 * em_kv_value in attend_block (a block number, an offset in it, two
 * multiplications and the cache's fields read again, 64 pointers per
 * attention block) took 14% of a 16-row decode step's attention
 * (bench_attn --decode 16: 0.86x the time without it, F16 and Q8_0). */
static void gather_run(attn_task_ctx *t, int nb, int32_t cell, int n, int32_t g) {
    const em_kv *kv = t->a->kv;
    const int32_t layer = t->a->layer;
    if (kv->type == EM_TYPE_F16 || kv->type == EM_TYPE_Q8_0) {
        const size_t kb = kv->k_slice[layer], vb = kv->v_slice[layer];
        const char *k = em_kv_key(kv, layer, cell, g), *v = em_kv_value(kv, layer, cell, g);
        if (kv->type == EM_TYPE_F16)
            for (int i = 0; i < n; i++) {
                t->k16[nb + i] = (const uint16_t *)(const void *)(k + (size_t)i * kb);
                t->v16[nb + i] = (const uint16_t *)(const void *)(v + (size_t)i * vb);
            }
        else
            for (int i = 0; i < n; i++) {
                t->k8[nb + i] = (const em_block_q8_0 *)(const void *)(k + (size_t)i * kb);
                t->v8[nb + i] = (const em_block_q8_0 *)(const void *)(v + (size_t)i * vb);
            }
    } else {
        for (int i = 0; i < n; i++) t->slots[nb + i] = cell + i;
    }
}

static void attend_task(attn_task_ctx *t, int32_t r, int32_t g) {
    const em_attn_args *a = t->a;
    const em_kv *kv = a->kv;
    const int32_t group = t->group, hd = a->head_dim, hdv = a->head_dim_v;
    const em_seq_id s = a->seq[r];
    const em_pos p = a->non_causal ? kv->seqs[a->seq[r]].len - 1 : a->pos[r];
    const float *q = a->q + ((int64_t)r * a->n_head + (int64_t)g * group) * hd;
    for (int32_t h = 0; h < group; h++) {
        t->mx[h] = -INFINITY;
        t->sum[h] = 0;
    }
    memset(t->acc, 0, (size_t)group * hdv * sizeof(float));

    /* The visible positions are lo .. p of sequence s: walk its block
     * table, a block at a time, gathering their rows in position order. */
    const int32_t *blocks = kv->seqs[s].blocks[kv->group[a->layer]];
    em_pos lo = a->n_swa > 0 && p - a->n_swa + 1 > 0 ? p - a->n_swa + 1 : 0;
    if (a->n_chunk > 0 && p - p % a->n_chunk > lo) lo = p - p % a->n_chunk;
    int nb = 0;
    const bool pf = kv->type == EM_TYPE_F16 || kv->type == EM_TYPE_Q8_0;
    const size_t kb = kv->k_slice[a->layer], vb = kv->v_slice[a->layer];
    /* The first block's rows now, then, as each cache block is
     * gathered, the rows EM_ATTN_BLOCK positions after its own. */
    if (pf) kv_prefetch(a, blocks, lo, EM_MIN(p, lo + EM_ATTN_BLOCK - 1), g, kb, vb);
    for (em_pos pj = lo; pj <= p;) {
        const int32_t base = blocks[pj / EM_KV_BLOCK] * EM_KV_BLOCK;
        const em_pos end = EM_MIN(p, pj - pj % EM_KV_BLOCK + EM_KV_BLOCK - 1);
        if (pf && pj + EM_ATTN_BLOCK <= p)
            kv_prefetch(a, blocks, pj + EM_ATTN_BLOCK, EM_MIN(p, end + EM_ATTN_BLOCK), g, kb, vb);
        while (pj <= end) {
            const int n = (int)EM_MIN((em_pos)(EM_ATTN_BLOCK - nb), end - pj + 1);
            gather_run(t, nb, base + pj % EM_KV_BLOCK, n, g);
            nb += n;
            pj += n;
            if (nb == EM_ATTN_BLOCK) {
                attend_block(t, q, group, g, nb);
                nb = 0;
            }
        }
    }
    if (nb > 0) attend_block(t, q, group, g, nb);

    for (int32_t h = 0; h < group; h++) {
        float *o = a->out + ((int64_t)r * a->n_head + (int64_t)g * group + h) * hdv;
        /* A row with no visible key (impossible when its own key is
         * stored) yields zeros rather than NaN. */
        const float inv = t->sum[h] > 0 ? 1.0f / t->sum[h] : 0.0f;
        for (int32_t i = 0; i < hdv; i++) o[i] = t->acc[(int64_t)h * hdv + i] * inv;
    }
    if (a->finish) a->finish(a->finish_ctx, r, g);
}

/* Whether row r begins a tile: the first row of a run of one sequence's
 * consecutive positions (a prompt's rows), or a position that is a
 * multiple of the tile length.  Tiles are thus fixed by the positions, not
 * by where the rows sit in the batch, so a prompt's rows get the same
 * tiles, and the same results to the bit, whatever else shares the batch. */
static bool tile_start(const em_attn_args *a, int32_t r, int32_t qtile) {
    return r == 0 || a->seq[r] != a->seq[r - 1] || a->pos[r] != a->pos[r - 1] + 1 || a->pos[r] % qtile == 0;
}

/* Rows [r0, r1) of one sequence, KV head g, attended together: the
 * tile's queries are gathered, and the keys from the first row's first
 * visible position to the last row's position are walked once. */
static void attend_tile(attn_task_ctx *t, int32_t r0, int32_t r1, int32_t g) {
    const em_attn_args *a = t->a;
    const em_kv *kv = a->kv;
    const int32_t group = t->group, hd = a->head_dim, hdv = a->head_dim_v, nr = r1 - r0, nq = nr * group;
    const em_seq_id s = a->seq[r0];
    em_pos lo[EM_ATTN_QTILE], hi[EM_ATTN_QTILE];
    for (int32_t i = 0; i < nr; i++) {
        const int32_t r = r0 + i;
        hi[i] = a->non_causal ? kv->seqs[s].len - 1 : a->pos[r];
        lo[i] = a->n_swa > 0 && hi[i] - a->n_swa + 1 > 0 ? hi[i] - a->n_swa + 1 : 0;
        if (a->n_chunk > 0 && hi[i] - hi[i] % a->n_chunk > lo[i]) lo[i] = hi[i] - hi[i] % a->n_chunk;
        memcpy(t->qt + (int64_t)i * group * hd, a->q + ((int64_t)r * a->n_head + (int64_t)g * group) * hd,
               (size_t)group * hd * sizeof(float));
    }
    for (int32_t h = 0; h < nq; h++) {
        t->mx[h] = -INFINITY;
        t->sum[h] = 0;
    }
    memset(t->acc, 0, (size_t)nq * hdv * sizeof(float));
    t->lo = lo;
    t->hi = hi;

    /* Positions are increasing over the tile, so the walk runs from the
     * first row's lo to the last row's hi (as attend_task's walk). */
    const int32_t *blocks = kv->seqs[s].blocks[kv->group[a->layer]];
    int nb = 0;
    for (em_pos pj = lo[0]; pj <= hi[nr - 1];) {
        const int32_t base = blocks[pj / EM_KV_BLOCK] * EM_KV_BLOCK;
        const em_pos end = EM_MIN(hi[nr - 1], pj - pj % EM_KV_BLOCK + EM_KV_BLOCK - 1);
        while (pj <= end) {
            const int n = (int)EM_MIN((em_pos)(EM_ATTN_BLOCK - nb), end - pj + 1);
            gather_run(t, nb, base + pj % EM_KV_BLOCK, n, g);
            for (int i = 0; i < n; i++) t->kpos[nb + i] = pj + i;
            nb += n;
            pj += n;
            if (nb == EM_ATTN_BLOCK) {
                attend_block(t, t->qt, nq, g, nb);
                nb = 0;
            }
        }
    }
    if (nb > 0) attend_block(t, t->qt, nq, g, nb);
    t->lo = t->hi = NULL;

    for (int32_t h = 0; h < nq; h++) {
        const int32_t r = r0 + h / group;
        float *o = a->out + ((int64_t)r * a->n_head + (int64_t)g * group + h % group) * hdv;
        const float inv = t->sum[h] > 0 ? 1.0f / t->sum[h] : 0.0f;
        for (int32_t i = 0; i < hdv; i++) o[i] = t->acc[(int64_t)h * hdv + i] * inv;
    }
    if (a->finish)
        for (int32_t r = r0; r < r1; r++) a->finish(a->finish_ctx, r, g);
}

void em_attention_step(em_threadpool *tp, const em_attn_args *a, int ith) {
    const int32_t group = a->n_head / a->n_head_kv, hdv = a->head_dim_v;
    float *scratch = a->scratch + (size_t)ith * em_attention_scratch(a->n_head, a->n_head_kv, a->head_dim, hdv);
    attn_task_ctx t = {.a = a, .kn = em_attn_kernels_get(), .group = group};
    /* Layers with a window keep tiles of 8 rows: their blocks are cut
     * where each tile's walk starts, so the tile length moves their
     * rounding (see the top), and their results stay as they were. */
    const int32_t qtile = a->n_swa > 0 || a->n_chunk > 0 ? 8 : attn_qtile(group);
    const size_t nq = (size_t)qtile * group; /* most queries of a task */
    t.acc = scratch;
    t.mx = t.acc + nq * hdv;
    t.sum = t.mx + nq;
    t.kbuf = t.sum + nq;
    t.vbuf = t.kbuf + (size_t)EM_ATTN_BLOCK * a->head_dim;
    t.sc = t.vbuf + (size_t)EM_ATTN_BLOCK * hdv;
    t.qt = t.sc + nq * EM_ATTN_BLOCK;
    t.mn = t.qt + nq * (size_t)a->head_dim;
    t.cf = t.mn + nq;
    t.es = t.cf + nq;

    if (a->prepare) {
        /* One-row batches: each task first stores its own key and value. */
        const int64_t n_tasks = (int64_t)a->n_rows * a->n_head_kv;
        for (int64_t task; (task = em_threadpool_next(tp, ith, n_tasks)) >= 0;) {
            const int32_t r = (int32_t)(task / a->n_head_kv), g = (int32_t)(task % a->n_head_kv);
            a->prepare(a->prepare_ctx, r, g);
            attend_task(&t, r, g);
        }
        return;
    }
    /* A task is a window of qtile rows of the batch and one KV
     * head: it attends the tiles that begin in its window (a tile may run
     * on into the next window); a lone row (a generating sequence's) is
     * attended by itself. */
    const int64_t n_windows = (a->n_rows + qtile - 1) / qtile;
    for (int64_t task; (task = em_threadpool_next(tp, ith, n_windows * a->n_head_kv)) >= 0;) {
        /* The last windows first: in a prompt their rows see the most keys,
         * and the threads then end on the cheap windows together instead
         * of one waiting while another finishes the longest. */
        const int64_t win = n_windows - 1 - task / a->n_head_kv;
        const int32_t w0 = (int32_t)win * qtile, g = (int32_t)(task % a->n_head_kv);
        const int32_t w1 = EM_MIN(a->n_rows, w0 + qtile);
        for (int32_t r0 = w0; r0 < w1; r0++) {
            if (!tile_start(a, r0, qtile)) continue;
            int32_t r1 = r0 + 1;
            while (r1 < a->n_rows && r1 - r0 < qtile && !tile_start(a, r1, qtile)) r1++;
            if (r1 - r0 > 1) attend_tile(&t, r0, r1, g);
            else attend_task(&t, r0, g);
        }
    }
}

typedef struct attn_region {
    em_threadpool *tp;
    const em_attn_args *a;
} attn_region;

static void attention_worker(void *arg, int ith, int nth) {
    const attn_region *r = arg;
    (void)nth;
    em_attention_step(r->tp, r->a, ith);
}

void em_attention(em_threadpool *tp, const em_attn_args *a) {
    attn_region r = {.tp = tp, .a = a};
    em_threadpool_run(tp, attention_worker, &r);
}
