/*
 * forward.c - the transformer forward pass over one batch of token rows,
 * for every family under src/model/ (which describe themselves through
 * the feature fields of em_hparams and em_layer; see family.h).
 *
 * Per layer:
 *   h   = rmsnorm(x) * attn_norm
 *   q,k,v = h Wq, h Wk, h Wv   (+ biases)
 *   q,k = per-head rmsnorm (where the layer has Q/K norms), then RoPE at
 *         each row's position with the layer's table
 *   store k, v in the cache; att = attention(q, cache) with the layer's
 *         scale, window and soft-cap
 *   y   = att Wo; y = rmsnorm(y) * post_attn_norm where present; x += y
 *   h   = rmsnorm(x) * ffn_norm
 *   y   = (act(h Wgate) * (h Wup)) Wdown, act = SiLU or GELU-tanh;
 *         post-norm as above; x += y
 * then logits = (rmsnorm(x) * output_norm) Wout (soft-capped where the
 * family says) for the rows that ask.
 *
 * The whole pass is one parallel region of the context's thread pool:
 * every thread runs forward_worker, and the steps are separated by the
 * pool's barriers instead of each op starting and joining its own region.
 * Within a step the work is shared out with em_threadpool_next: weight-row
 * chunks for the matmuls, (row, KV head) tasks for attention, and whole
 * batch rows for the per-row steps (norms, RoPE, cache stores, quantizing
 * activations, the FFN activation, residual adds), which are fused so that
 * each row is visited once per step while it is in cache.
 *
 * The recipe of a layer is written once, in layer(), as a list of calls to
 * three kinds of step: rows(), products() and attend().  A walker decides
 * how a step runs.  For batches of several rows, row steps share the rows
 * out and end with a barrier.  Batches of one row (generation) walk the
 * same list differently; see "one-row batches" below.  Activations are
 * quantized once per row and format and shared by every product that
 * reads that format (Q, K and V usually share one).
 */
#include "model/context.h"
#include "ops/attention.h"
#include "ops/ops.h"
#include "quant/gemm.h"
#include "quant/quant.h"

#include <math.h>

/* The per-row operations with SIMD versions, chosen once per pass. */
typedef struct row_ops {
    void (*glu)(float *out, const float *gate, const float *up, int64_t n); /* the FFN's */
    void (*to_f16)(uint16_t *dst, const float *src, int64_t n); /* NULL: scalar */
} row_ops;

static row_ops pick_row_ops(const em_hparams *hp) {
    const bool gelu = hp->act == EM_ACT_GELU_TANH;
    row_ops r = {.glu = gelu ? em_geglu : em_swiglu, .to_f16 = NULL};
#if defined(__x86_64__) && defined(__GNUC__)
    if (em_cpu_features() & EM_CPU_AVX2) {
        if (!gelu) r.glu = em_swiglu_avx2;
        r.to_f16 = em_f32_to_f16_avx2;
    }
    if (em_cpu_features() & EM_CPU_AVX512) {
        if (!gelu) r.glu = em_swiglu_avx512;
        r.to_f16 = em_f32_to_f16_avx512;
    }
#endif
    return r;
}

/* Dequantizes the embedding row of token t into x, scaled where the
 * family scales it. */
static void embed_row(const em_model *m, em_token t, float *x) {
    const em_tensor *te = &m->tok_embd;
    const void *row = (const char *)te->data + (size_t)t * te->row_bytes;
    em_dequantize_row(te->type, row, x, m->hp.n_embd);
    if (m->hp.embd_scale != 1.0f)
        for (int64_t i = 0; i < m->hp.n_embd; i++) x[i] *= m->hp.embd_scale;
}

/* The cos/sin tables of row r: every layer and head of a row rotates by
 * the same angles, one table per RoPE set of the model. */
static void rope_table_row(em_context *c, int32_t r) {
    const int half = c->model->hp.n_rot / 2;
    const int64_t set_stride = (int64_t)c->params.n_batch * half;
    for (int t = 0; t < c->model->hp.n_rope_sets; t++) {
        const float *inv_freq = c->inv_freq + t * half;
        float *cs = c->rope_cos + t * set_stride + (int64_t)r * half;
        float *sn = c->rope_sin + t * set_stride + (int64_t)r * half;
        const int n_rot = c->model->hp.rope[t].n_rot;
        const int half_t = n_rot ? n_rot / 2 : half; /* pairs this table rotates */
        for (int i = 0; i < half_t; i++) {
            float theta = (float)c->pos[r] * inv_freq[i];
            cs[i] = cosf(theta);
            sn[i] = sinf(theta);
        }
        const float ms = c->model->hp.rope[t].mscale;
        if (ms != 1.0f)
            for (int i = 0; i < half_t; i++) cs[i] *= ms, sn[i] *= ms;
    }
}

/* ------------------------------------------------------- activations */

/* Where the products of one step find their activations: the distinct
 * activation formats of up to five weights (at most three distinct ones,
 * which the loader checks), and which buffer serves which weight.  Float
 * weights read the float rows themselves. */
typedef struct act_plan {
    int n_fmt;
    em_type fmt[3];   /* [n_fmt] distinct vec_dot_types            */
    int of[5];        /* buffer index of each weight               */
} act_plan;

static act_plan plan_acts(const em_tensor *const *ws, int n_w) {
    act_plan p = {0};
    for (int i = 0; i < n_w; i++) {
        em_type f = em_get_type_traits(ws[i]->type)->vec_dot_type;
        int b = 0;
        while (b < p.n_fmt && p.fmt[b] != f) b++;
        if (b == p.n_fmt) p.fmt[p.n_fmt++] = f;
        p.of[i] = b;
    }
    return p;
}

/* The rows a thread's row steps read and write: in a batch, the context's
 * shared buffers (row r of each); in a one-row batch, the thread's
 * private copy (row 0).  Products write shared buffers in both cases. */
typedef struct row_bufs {
    float *x;      /* [rows][n_embd] residual stream                     */
    float *h;      /* [rows][n_embd] normalised x, the products' input   */
    float *ff;     /* [rows][ff_width] FFN activation, the down product's input */
    void *qa[3];   /* quantized activations, one buffer per format       */
    float *fpad;   /* float rows with padded strides (batches), or NULL  */
    int32_t *sel;  /* [rows][n_expert_used] experts routed to (MoE)      */
    float *selw;   /* [rows][n_expert_used] their weights                */
} row_bufs;

/* Float weights (F16, BF16, F32) multiply the float rows themselves, and
 * in a batch their GEMM kernels broadcast from 12-14 rows at once.  Rows
 * of 2048 floats (the 1.1B model's Q, O, gate and up inputs) lie 8 KiB
 * apart, so those lines all fall into one set of the L1 cache, which
 * holds 12 lines (on the machines measured), two thirds of them taken by
 * the weight panel: they evict each other, and the kernel alone ran
 * 1.3-1.5x slower in the machine's slow moments (docs/PERFORMANCE-HISTORY.md, F16
 * rounds 5 and 6).  Any multiple of 256 floats (1 KiB) puts them into at
 * most four sets.  Such rows are therefore copied, in the row step that
 * writes them, into fpad with EM_FPAD floats more per row, so that a
 * tile's lines fall into neighbouring sets; the kernels take any stride,
 * so the sums are the same to the bit.  Returns the padded stride in
 * bytes, or 0 where the product reads the rows in place (one-row batches,
 * whose matrix-vector product reads one row; other widths). */
#define EM_FPAD 16
static size_t fpad_stride(const row_bufs *b, int64_t k) {
    return b->fpad && (k * (int64_t)sizeof(float)) % 1024 == 0 ? (size_t)(k + EM_FPAD) * sizeof(float) : 0;
}

/* Quantizes row r of src[.][k] into every buffer of the plan (b->qa[i]
 * holds the rows of format i), or for the float format copies it into
 * b->fpad where fpad_stride says. */
static void quantize_row_for(const row_bufs *b, const act_plan *p, const float *src, int64_t k, int32_t r) {
    for (int i = 0; i < p->n_fmt; i++) {
        if (p->fmt[i] == EM_TYPE_F32) {
            const size_t ps = fpad_stride(b, k);
            if (ps) memcpy((char *)b->fpad + (size_t)r * ps, src + (int64_t)r * k, (size_t)k * sizeof(float));
            continue;
        }
        char *dst = (char *)b->qa[i] + (size_t)r * em_row_size(p->fmt[i], k);
        em_quantize_row(p->fmt[i], src + (int64_t)r * k, dst, k, NULL);
    }
}

/* The product job of weight i of the plan over activations src[.][k],
 * quantized (where W needs it) in b->qa, or padded in b->fpad. */
static em_matmul_job job_for(const row_bufs *b, const act_plan *p, int i, const em_tensor *W, const float *src,
                             int64_t k, float *out, int64_t out_stride) {
    em_type f = p->fmt[p->of[i]];
    em_matmul_job j = {.W = W, .out = out, .out_stride = out_stride};
    if (f == EM_TYPE_F32) {
        const size_t ps = fpad_stride(b, k);
        j.x = ps ? (const void *)b->fpad : (const void *)src;
        j.x_stride = ps ? ps : (size_t)k * sizeof(float);
    } else {
        j.x = b->qa[p->of[i]];
        j.x_stride = em_row_size(f, k);
    }
    return j;
}

/* Whether the plan's products over rows of k need a row step first. */
static bool needs_quant(const row_bufs *b, const act_plan *p, int64_t k) {
    for (int i = 0; i < p->n_fmt; i++)
        if (p->fmt[i] != EM_TYPE_F32 || fpad_stride(b, k)) return true;
    return false;
}

/* ------------------------------------------------------------- steps */

typedef struct fwd_state {
    em_context *c;
    row_ops ro;
    const em_token *tokens;
    int32_t n;      /* batch rows                  */
    int32_t n_out;  /* rows that want logits       */
    bool distinct;  /* every row is of a different sequence (decode steps) */
} fwd_state;

/* Thread ith walking the steps of a pass. */
typedef struct walker {
    const fwd_state *s;
    int ith;
    int32_t n;     /* rows the steps still compute: s->n, then s->n_out  */
    bool compacted;/* the last layer moved the output rows to the front  */
    bool solo;     /* a one-row batch (see below)                        */
    bool pending;  /* the Q/K/V row step waits for attention (rows_heads) */
    const void *pf;/* one-row batch: this thread's first weights of the next */
    size_t pf_len; /* product, read while it waits at the barrier before (bytes) */
    row_bufs b;
    int32_t sel[EM_MAX_EXPERTS_USED]; /* solo: the row's experts         */
    float selw[EM_MAX_EXPERTS_USED];  /* solo: their weights             */
} walker;

/* A row step's work on row r of layer il. */
typedef void (*row_fn)(const walker *w, const em_layer *l, int il, int32_t r);

/* out = norm(x) with weight w (and bias b for LayerNorm), over n_embd. */
static void norm_row(const em_hparams *hp, float *out, const float *x, const em_tensor *w, const em_tensor *b) {
    if (hp->norm == EM_NORM_LAYER)
        em_layernorm(out, x, w->data, b ? b->data : NULL, hp->n_embd, hp->norm_eps);
    else
        em_rmsnorm(out, x, w->data, hp->n_embd, hp->norm_eps);
}

/* Iterates the batch rows thread ith claims in the current step. */
#define FOR_ROWS(tp, r, n) for (int64_t r; (r = em_threadpool_next(tp, ith, (n))) >= 0;)

static act_plan one_plan(const em_tensor *w) { return plan_acts(&w, 1); }

static act_plan qkv_plan(const em_layer *l) {
    const em_tensor *ws[3] = {&l->wq, &l->wk, &l->wv};
    return plan_acts(ws, 3);
}

/* The products that read the experts' input: the router, the gate and up
 * experts, and the shared expert's gate and up where the layer has one
 * (Llama 4). */
static act_plan expert_plan(const em_layer *l) {
    const em_tensor *ws[5] = {&l->gate_inp, &l->gate_exps, &l->up_exps, &l->gate_shexp, &l->up_shexp};
    return plan_acts(ws, l->gate_shexp.data ? 5 : 3);
}

/* The products that read the FFN input: gate and up, or with experts
 * alone (no dense FFN beside them) the experts' plan. */
static act_plan ffn_plan(const em_layer *l) {
    if (l->gate_inp.data && !l->w_gate.data) return expert_plan(l);
    if (!l->w_gate.data) return one_plan(&l->w_up);
    const em_tensor *ws[2] = {&l->w_gate, &l->w_up};
    return plan_acts(ws, 2);
}

/* The width of the layer's dense FFN: n_ff, or its own (Gemma 4's
 * feed_forward_length may be per layer; the buffers hold the widest). */
static int64_t ffn_width(const em_model *m, const em_layer *l) {
    return l->w_up.data ? l->w_up.ne[1] : m->hp.n_ff;
}

/* Expert e of a stacked expert tensor, as a 2-D weight. */
static em_tensor expert(const em_tensor *t, int32_t e) {
    em_tensor v = *t;
    v.ne[2] = 1;
    const size_t stride = t->expert_bytes ? t->expert_bytes : (size_t)t->ne[1] * t->row_bytes;
    v.data = (const char *)t->data + (size_t)e * stride;
    return v;
}


/* Row r after the Q/K/V products, for KV heads [g0, g1) and the query
 * heads that share them: biases, per-head norms, RoPE with the layer's
 * table, and the new key and value into the cache. */
static void qkv_epilogue(em_context *c, const row_ops *ro, const em_layer *l, int il, int32_t r, int g0, int g1) {
    const em_hparams *hp = &c->model->hp;
    const int hd = l->head_dim, hdv = l->head_dim_v, group = hp->n_head / l->n_head_kv;
    const int64_t q_dim = (int64_t)hp->n_head * hd;
    const bool own_kv = l->kv_src == il; /* else the layer only has queries */
    const int64_t k_dim = c->kv.k_width, v_dim = c->kv.v_width;
    float *q = c->q + r * q_dim, *k = c->k + r * k_dim, *v = c->v + r * v_dim;
    const int64_t q0 = (int64_t)g0 * group * hd, q1 = (int64_t)g1 * group * hd;
    if (l->bq.data)
        for (int64_t i = q0; i < q1; i++) q[i] += ((const float *)l->bq.data)[i];
    if (l->bk.data)
        for (int64_t i = (int64_t)g0 * hd; i < (int64_t)g1 * hd; i++) k[i] += ((const float *)l->bk.data)[i];
    if (l->bv.data)
        for (int64_t i = (int64_t)g0 * hdv; i < (int64_t)g1 * hdv; i++) v[i] += ((const float *)l->bv.data)[i];
    if (own_kv && !l->wv.data) /* values are the keys before their norm and RoPE */
        memcpy(v + (int64_t)g0 * hdv, k + (int64_t)g0 * hd, (size_t)(g1 - g0) * hd * sizeof(float));
    if (own_kv && l->v_norm)
        for (int h = g0; h < g1; h++) em_rmsnorm(v + (int64_t)h * hdv, v + (int64_t)h * hdv, NULL, hdv, hp->norm_eps);
    if (l->q_norm.data)
        for (int h = g0 * group; h < g1 * group; h++)
            em_rmsnorm(q + (int64_t)h * hd, q + (int64_t)h * hd, l->q_norm.data, hd, hp->norm_eps);
    if (own_kv && l->k_norm.data)
        for (int h = g0; h < g1; h++)
            em_rmsnorm(k + (int64_t)h * hd, k + (int64_t)h * hd, l->k_norm.data, hd, hp->norm_eps);
    if (l->rope_set >= 0) {
        const int half = hp->n_rot / 2;
        const int64_t table = (int64_t)l->rope_set * c->params.n_batch * half + (int64_t)r * half;
        const float *cs = c->rope_cos + table, *sn = c->rope_sin + table;
        em_rope(q + q0, (g1 - g0) * group, hd, l->n_rot, cs, sn, hp->rope_type);
        if (own_kv) em_rope(k + (int64_t)g0 * hd, g1 - g0, hd, l->n_rot, cs, sn, hp->rope_type);
    }
    if (l->qk_l2norm) {
        for (int h = g0 * group; h < g1 * group; h++)
            em_rmsnorm(q + (int64_t)h * hd, q + (int64_t)h * hd, NULL, hd, hp->norm_eps);
        if (own_kv)
            for (int h = g0; h < g1; h++) em_rmsnorm(k + (int64_t)h * hd, k + (int64_t)h * hd, NULL, hd, hp->norm_eps);
    }
    if (l->attn_temp) {
        /* Llama 4's temperature tuning, computed as llama.cpp does (the
         * logarithm in double precision). */
        const float fl = floorf(((float)c->pos[r] + hp->attn_temp_offset) / hp->attn_temp_floor);
        const float t = (float)(log((double)fl + 1.0) * hp->attn_temp_scale + 1.0);
        for (int64_t i = q0; i < q1; i++) q[i] *= t;
    }
    if (own_kv)
        em_kv_write(&c->kv, il, em_kv_layer_cell(&c->kv, il, c->seq[r], c->pos[r]), g0, g1, k, v, ro->to_f16);
}

/* ------------------------------------------------------ the walker
 *
 * Generation decodes one row at a time, and then the per-row steps are
 * tiny and would run on one thread while the others wait at two barriers
 * each.  Instead, in a one-row batch every thread keeps its own copy of
 * the row's residual stream and does the row steps itself, on private
 * buffers, right before the product that consumes them: the work is
 * duplicated (it is small) but half of the barriers disappear, leaving one
 * after each step whose results other threads need (each product, and
 * attention).  The Q/K/V row step moves into attention, where the task of
 * each KV head finishes its own heads and stores its own key and value
 * before attending, which is safe because no other row of the batch needs
 * them.
 */

/* A row step: fn on every row, the rows shared out; in a one-row batch,
 * every thread on its private row without a barrier. */
static void rows(walker *w, row_fn fn, const em_layer *l, int il) {
    if (w->solo) {
        fn(w, l, il, 0);
        return;
    }
    em_threadpool *tp = w->s->c->pool;
    const int ith = w->ith;
    FOR_ROWS(tp, r, w->n) fn(w, l, il, (int32_t)r);
    em_threadpool_barrier(tp);
}

/* The Q/K/V row step (qkv_epilogue) of every row and head; deferred into
 * the attention tasks in a one-row batch, and in a batch whose rows are
 * all of different sequences (a serving engine's decode step: one new
 * token per sequence), where no row attends another row's new key either,
 * so the step and its barrier go (one of about ten per layer). */
static void rows_heads(walker *w, const em_layer *l, int il) {
    if (w->solo || w->s->distinct) {
        w->pending = true;
        return;
    }
    em_context *c = w->s->c;
    em_threadpool *tp = c->pool;
    const int ith = w->ith;
    FOR_ROWS(tp, r, w->n) qkv_epilogue(c, &w->s->ro, l, il, (int32_t)r, 0, l->n_head_kv);
    em_threadpool_barrier(tp);
}

/* The barrier that ends a product or attention step; in a one-row batch
 * a thread that waits there prefetches its first weights of the next
 * product where the recipe has named them (prefetch_next). */
static void step_barrier(walker *w) {
    em_threadpool_barrier_prefetch(w->s->c->pool, w->pf, w->pf_len);
    w->pf = NULL;
    w->pf_len = 0;
}

/* Names the product that follows the next barrier: weights ws[0..n) over
 * the batch's rows, of which this thread reads its first chunk first.
 * Only in a one-row batch, where a step is a stream of weights and the
 * threads part at its barrier by up to a chunk; the prefetch changes no
 * result, only which bytes are already in the cache. */
static void prefetch_next(walker *w, const em_tensor *const *ws, int n) {
    w->pf = NULL;
    w->pf_len = 0;
    if (!w->solo) return;
    em_matmul_job jobs[EM_MATMUL_MAX_JOBS] = {{0}};
    for (int i = 0; i < n && i < EM_MATMUL_MAX_JOBS; i++) jobs[i].W = ws[i];
    em_matmul_first_chunk(jobs, EM_MIN(n, EM_MATMUL_MAX_JOBS), 1, w->ith, em_threadpool_size(w->s->c->pool),
                          EM_MATMUL_PREFETCH_BYTES, &w->pf, &w->pf_len);
}

/* prefetch_next for the step after layer il's last product: the next
 * layer's Q/K/V products (the same weights layer() gives them), or the
 * output head. */
static void prefetch_after_layer(walker *w, int il) {
    const fwd_state *s = w->s;
    const em_model *m = s->c->model;
    const em_tensor *ws[3];
    int n = 0;
    if (il + 1 < m->hp.n_layer) {
        const em_layer *l = &m->layers[il + 1];
        ws[n++] = &l->wq;
        if (l->kv_src == il + 1) ws[n++] = &l->wk;
        if (l->kv_src == il + 1 && l->wv.data) ws[n++] = &l->wv;
    } else if (s->n_out > 0) {
        ws[n++] = &m->output;
    }
    prefetch_next(w, ws, n);
}

/* A product step: up to EM_MATMUL_MAX_JOBS products over the batch rows. */
static void products(walker *w, const em_matmul_job *jobs, int n_jobs) {
    em_matmul_step(w->s->c->pool, w->ith, jobs, n_jobs, w->n);
    step_barrier(w);
}

typedef struct solo_prep {
    const fwd_state *s;
    int il;
} solo_prep;

/* em_attn_args.prepare: the Q/K/V epilogue of KV head g. */
static void solo_prepare(void *ctx, int32_t row, int32_t g) {
    const solo_prep *p = ctx;
    em_context *c = p->s->c;
    qkv_epilogue(c, &p->s->ro, &c->model->layers[p->il], p->il, row, g, g + 1);
}

/* Whether a block format of 32 elements (Q8_0, Q8_1), in which any run
 * of whole blocks of a row can be quantized apart from the rest. */
static bool blocks_of_32(em_type t) { return t == EM_TYPE_Q8_0 || t == EM_TYPE_Q8_1; }

/* The activation format in which attention itself quantizes its outputs
 * for Wo (att_finish), or EM_TYPE_COUNT where the row step does.  In a
 * batch, each (row, KV head) task writes that row's outputs of the KV
 * head's query heads, a run of whole blocks when it is a multiple of 32
 * floats, and no other task writes them: the task then quantizes them
 * while they are in its cache, and the row step with its barrier goes
 * (one of ten per layer in a prompt step, nine in a decode step).  The
 * blocks are the ones the row step would write, so the bits are the same.
 * Not in a one-row batch, whose row steps write each thread's private
 * buffers, nor in a last layer that moves its output rows to the front
 * after attention (keep_output_rows), where the row step reads them
 * there.  That test is on the batch's rows, s->n: after the move w->n is
 * the output rows (two or more), and a test on it would tell Wo that
 * attention had quantized rows it never did (the last layer's Wo then
 * read the layer before's quants, and a prompt step of several
 * sequences got wrong logits in a Q8_0 or Q4_0 model). */
static em_type att_quant_fused(const walker *w, const em_layer *l, int il) {
    const em_hparams *hp = &w->s->c->model->hp;
    if (w->solo || (il == hp->n_layer - 1 && w->s->n_out < w->s->n)) return EM_TYPE_COUNT;
    const act_plan p = one_plan(&l->wo);
    const int64_t cols = (int64_t)hp->n_head / l->n_head_kv * l->head_dim_v;
    if (p.n_fmt != 1 || !blocks_of_32(p.fmt[0]) || cols % 32 != 0) return EM_TYPE_COUNT;
    return p.fmt[0];
}

typedef struct att_fin {
    const walker *w;
    em_type fmt;  /* Wo's activation format                      */
    int64_t o_dim;/* floats per row of c->att                    */
    int64_t cols; /* floats of a KV head's query heads in a row  */
} att_fin;

/* em_attn_args.finish: row r's outputs of KV head g quantized for Wo,
 * into the blocks of the row step's buffer they fill. */
static void att_finish(void *ctx, int32_t r, int32_t g) {
    const att_fin *f = ctx;
    const int64_t c0 = (int64_t)g * f->cols;
    char *dst = (char *)f->w->b.qa[0] + (size_t)r * em_row_size(f->fmt, f->o_dim) + em_row_size(f->fmt, c0);
    em_quantize_row(f->fmt, f->w->s->c->att + (int64_t)r * f->o_dim + c0, dst, f->cols, NULL);
}

/* The attention step of layer il, with the layer's scale and window. */
static void attend(walker *w, const em_layer *l, int il) {
    em_context *c = w->s->c;
    const em_hparams *hp = &c->model->hp;
    em_attn_args a = {
        .q = c->q,
        .out = c->att,
        .kv = &c->kv,
        .layer = il,
        .seq = c->seq,
        .pos = c->pos,
        .n_rows = w->n,
        .n_head = hp->n_head,
        .n_head_kv = l->n_head_kv,
        .head_dim = l->head_dim,
        .head_dim_v = l->head_dim_v,
        .n_swa = l->n_swa,
        .n_chunk = l->n_chunk,
        .scale = l->attn_scale,
        .softcap = hp->attn_softcap,
        .non_causal = !hp->causal,
        .scratch = c->att_scratch,
    };
    solo_prep prep = {.s = w->s, .il = il};
    if (w->pending) {
        a.prepare = solo_prepare;
        a.prepare_ctx = &prep;
        w->pending = false;
    }
    const em_type fmt = att_quant_fused(w, l, il);
    att_fin fin = {.w = w, .fmt = fmt, .o_dim = (int64_t)hp->n_head * l->head_dim_v,
                   .cols = (int64_t)hp->n_head / l->n_head_kv * l->head_dim_v};
    if (fmt != EM_TYPE_COUNT) {
        a.finish = att_finish;
        a.finish_ctx = &fin;
    }
    em_attention_step(c->pool, &a, w->ith);
    step_barrier(w);
}

/* --------------------------------------------------------- row steps */

/* h = rmsnorm(x) * attn_norm of layer l (x itself in a post-norm layer),
 * quantized for its Q, K and V. */
static void attn_in(const walker *w, const em_layer *l, int32_t r) {
    const em_hparams *hp = &w->s->c->model->hp;
    const int64_t d = hp->n_embd;
    if (l->attn_norm.data)
        norm_row(hp, w->b.h + r * d, w->b.x + r * d, &l->attn_norm, NULL);
    else
        memcpy(w->b.h + r * d, w->b.x + r * d, (size_t)d * sizeof(float));
    act_plan p = qkv_plan(l);
    quantize_row_for(&w->b, &p, w->b.h, d, r);
}

/* x += y, y first normalised by `post` where the layer has it; in a
 * post-norm layer x = norm(x + y + bias) with post and post_b instead. */
static void residual(const walker *w, const em_tensor *post, const em_tensor *post_b, const em_tensor *bias,
                     const float *y, int32_t r) {
    const em_hparams *hp = &w->s->c->model->hp;
    const int64_t d = hp->n_embd;
    float *x = w->b.x + r * d;
    if (hp->norm_after) {
        const float *bv = bias->data;
        for (int64_t i = 0; i < d; i++) x[i] += bv ? y[i] + bv[i] : y[i];
        norm_row(hp, x, x, post, post_b);
        return;
    }
    if (post->data) {
        float *h = w->b.h + r * d; /* may be y itself: rmsnorm allows it */
        em_rmsnorm(h, y, post->data, d, hp->norm_eps);
        y = h;
    }
    for (int64_t i = 0; i < d; i++) x[i] += y[i];
}

/* The token's embedding, RoPE angles, and the first layer's input. */
static void row_embed(const walker *w, const em_layer *l, int il, int32_t r) {
    em_context *c = w->s->c;
    (void)il;
    /* The RoPE tables are shared; in a one-row batch thread 0 writes
     * them and the first product's barrier publishes them. */
    if (!w->solo || w->ith == 0) rope_table_row(c, r);
    const em_model *m = c->model;
    const int64_t d = m->hp.n_embd;
    float *x = w->b.x + r * d, *tmp = w->b.h + r * d; /* h is free until attn_in */
    embed_row(m, w->s->tokens[r], x);
    /* Encoders: learned position, token type 0, LayerNorm. */
    if (m->pos_embd.data) {
        em_dequantize_row(m->pos_embd.type, (const char *)m->pos_embd.data + (size_t)c->pos[r] * m->pos_embd.row_bytes,
                          tmp, d);
        for (int64_t i = 0; i < d; i++) x[i] += tmp[i];
    }
    if (m->tok_types.data) {
        em_dequantize_row(m->tok_types.type, m->tok_types.data, tmp, d);
        for (int64_t i = 0; i < d; i++) x[i] += tmp[i];
    }
    if (m->embd_norm.data) em_layernorm(x, x, m->embd_norm.data, m->embd_norm_b.data, d, m->hp.norm_eps);
    if (m->pl_model_proj.data) {
        act_plan p = one_plan(&m->pl_model_proj); /* row_ple_in follows its product */
        quantize_row_for(&w->b, &p, w->b.x, d, r);
        return;
    }
    attn_in(w, l, r);
}

/* ------------------------------------------------ per-layer embeddings
 *
 * Gemma 4 gives every layer an input of its own per token (see
 * em_model.pl_tok_embd): computed once per pass after the embedding, into
 * c->ple, and consumed after each layer's FFN residual by a gate product,
 * a row step, a projection product and a final row step (em_layer.pl_gate).
 * In a one-row batch thread 0 alone writes c->ple; the barriers of the
 * products before the first layer reads it publish it.
 */

/* Row r's per-layer inputs from the projection product in c->ple, then
 * the first layer's input. */
static void row_ple_in(const walker *w, const em_layer *l, int il, int32_t r) {
    em_context *c = w->s->c;
    const em_model *m = c->model;
    const em_hparams *hp = &m->hp;
    const int64_t n = hp->n_embd_pl, per_row = n * hp->n_layer;
    (void)il;
    if (!w->solo || w->ith == 0) {
        float *ple = c->ple + (int64_t)r * per_row;
        const em_tensor *te = &m->pl_tok_embd;
        const char *row = (const char *)te->data + (size_t)w->s->tokens[r] * te->row_bytes;
        const float proj_scale = 1.0f / sqrtf((float)hp->n_embd), tok_scale = sqrtf((float)n);
        const float mix = 1.0f / sqrtf(2.0f);
        float tok[4096]; /* n_embd_pl <= 4096 (gemma4.c) */
        for (int32_t j = 0; j < hp->n_layer; j++) {
            float *s = ple + j * n;
            for (int64_t i = 0; i < n; i++) s[i] *= proj_scale;
            em_rmsnorm(s, s, m->pl_proj_norm.data, n, hp->norm_eps);
            em_dequantize_row(te->type, row + em_row_size(te->type, j * n), tok, n);
            for (int64_t i = 0; i < n; i++) s[i] = (s[i] + tok[i] * tok_scale) * mix;
        }
    }
    attn_in(w, l, r);
}

/* gelu(gate product) times the layer's slice of the per-layer input,
 * quantized for the projection. */
static void row_ple_act(const walker *w, const em_layer *l, int il, int32_t r) {
    em_context *c = w->s->c;
    const em_hparams *hp = &c->model->hp;
    const int64_t n = hp->n_embd_pl;
    float *g = w->b.ff + r * n;
    const float *in = c->ple + (int64_t)r * n * hp->n_layer + (int64_t)il * n;
    em_gelu(g, c->ple_g + r * n, n);
    for (int64_t i = 0; i < n; i++) g[i] *= in[i];
    act_plan p = one_plan(&l->pl_proj);
    quantize_row_for(&w->b, &p, w->b.ff, n, r);
}

/* x times the layer's output scale, where it has one, then the next
 * layer's input. */
static void layer_end(const walker *w, const em_layer *l, int il, int32_t r) {
    const em_model *m = w->s->c->model;
    const int64_t d = m->hp.n_embd;
    if (l->out_scale.data) {
        const float s = *(const float *)l->out_scale.data;
        float *x = w->b.x + r * d;
        for (int64_t i = 0; i < d; i++) x[i] *= s;
    }
    if (il + 1 < m->hp.n_layer) attn_in(w, &m->layers[il + 1], r);
}

/* x += rmsnorm(projection) * pl_norm, then the layer's end. */
static void row_ple_out(const walker *w, const em_layer *l, int il, int32_t r) {
    const em_tensor none = {0};
    residual(w, &l->pl_norm, &none, &none, w->s->c->xn + r * w->s->c->model->hp.n_embd, r);
    layer_end(w, l, il, r);
}

/* The attention output quantized for Wo. */
static void row_att_quant(const walker *w, const em_layer *l, int il, int32_t r) {
    const em_hparams *hp = &w->s->c->model->hp;
    act_plan p = one_plan(&l->wo);
    (void)il;
    quantize_row_for(&w->b, &p, w->s->c->att, (int64_t)hp->n_head * l->head_dim_v, r);
}

/* The attention residual; h = rmsnorm(x) * ffn_norm quantized for gate/up. */
static void row_ffn_in(const walker *w, const em_layer *l, int il, int32_t r) {
    em_context *c = w->s->c;
    const em_hparams *hp = &c->model->hp;
    const int64_t d = hp->n_embd;
    (void)il;
    residual(w, &l->post_attn_norm, &l->post_attn_norm_b, &l->bo, c->xn + r * d, r);
    if (l->ffn_norm.data)
        norm_row(hp, w->b.h + r * d, w->b.x + r * d, &l->ffn_norm, NULL);
    else
        memcpy(w->b.h + r * d, w->b.x + r * d, (size_t)d * sizeof(float));
    act_plan p = ffn_plan(l);
    quantize_row_for(&w->b, &p, w->b.h, d, r);
}

/* ff = act(gate) * up, or act(up + bias) without a gate; quantized for
 * down. */
static void row_act(const walker *w, const em_layer *l, int il, int32_t r) {
    em_context *c = w->s->c;
    const int64_t f = ffn_width(c->model, l);
    (void)il;
    if (l->w_gate.data) {
        w->s->ro.glu(w->b.ff + r * f, c->ff_gate + r * f, c->ff_up + r * f, f);
    } else {
        float *ff = w->b.ff + r * f;
        const float *up = c->ff_up + r * f, *bu = l->b_up.data;
        for (int64_t i = 0; i < f; i++) ff[i] = bu ? up[i] + bu[i] : up[i];
        em_gelu(ff, ff, f);
    }
    act_plan p = one_plan(&l->w_down);
    quantize_row_for(&w->b, &p, w->b.ff, f, r);
}

typedef struct act_chunk {
    const walker *w;
    em_type fmt; /* the down product's activation format (blocks of 32) */
    int64_t f;   /* FFN width: floats per row of gate, up and ff        */
    void *dst;   /* [rows] quantized rows of f elements, down's input   */
} act_chunk;

/* em_matmul_pair_step's chunk work in a batch's gated FFN: columns
 * [j0, j0 + nw) of every row, act(gate) * up, quantized for down, while
 * the chunk's outputs are in cache.  The activation is element-wise and
 * j0 is a multiple of 32, so every element takes the path (vector or
 * scalar tail) and every block the bytes that row_act gives it over the
 * whole row: the same bits, without row_act's step and barrier (one of
 * ten per layer of a prompt step).  A barrier is 1-3 us when the threads
 * have their cores, and removing this one is not visible then; when the
 * machine has other runnable threads (a server's HTTP threads and load
 * generator, other processes) each barrier is a place where a thread
 * waits out another's preemption, and with it gone the serve model's
 * steps measured 0.96-0.99x (prompt) and 0.88-0.97x (16-row decode) the
 * time (docs/PERFORMANCE.md, session 12). */
static void act_chunk_done(void *ctx, int64_t j0, int64_t nw) {
    const act_chunk *a = ctx;
    const walker *w = a->w;
    em_context *c = w->s->c;
    const size_t rs = em_row_size(a->fmt, a->f), off = em_row_size(a->fmt, j0);
    for (int64_t r = 0; r < w->n; r++) {
        float *ff = w->b.ff + r * a->f + j0;
        w->s->ro.glu(ff, c->ff_gate + r * a->f + j0, c->ff_up + r * a->f + j0, nw);
        em_quantize_row(a->fmt, ff, (char *)a->dst + (size_t)r * rs + off, nw, NULL);
    }
}

/* The slot of row r's shared expert: after the routed slots of every row. */
static int64_t shared_slot(const walker *w, int32_t r) {
    const int k = w->s->c->model->hp.n_expert_used;
    return w->solo ? k : (int64_t)w->s->n * k + r;
}

/* The FFN residual, then the next layer's input. */
static void row_layer_out(const walker *w, const em_layer *l, int il, int32_t r) {
    em_context *c = w->s->c;
    const em_model *m = c->model;
    const int64_t d = m->hp.n_embd;
    const float *y = c->xn + r * d;
    if (l->gate_inp.data) {
        /* The weighted sum of the row's experts, in the order chosen, into
         * h (free now), each expert's output scaled where the layer says. */
        const int k = m->hp.n_expert_used;
        const float *es = l->down_exps_s.data;
        float *h = w->b.h + r * d;
        for (int64_t i = 0; i < d; i++) h[i] = 0;
        for (int j = 0; j < k; j++) {
            const int32_t slot = w->solo ? j : c->moe_slot[r * k + j];
            /* An expert whose input was weighted (Llama 4) is added as it
             * is, scaled only by its output scale where it has one. */
            const float *ye = c->moe_y + (int64_t)slot * d;
            const float wt = (m->hp.moe_weight_input ? 1.0f : w->b.selw[r * k + j]) *
                             (es ? es[w->b.sel[r * k + j]] : 1.0f);
            for (int64_t i = 0; i < d; i++) h[i] += wt * ye[i];
        }
        if (l->gate_shexp.data) {
            const float *ys = c->moe_y + shared_slot(w, r) * d;
            for (int64_t i = 0; i < d; i++) h[i] += ys[i];
        }
        if (l->post_ffn_norm_2.data) {
            /* Beside a dense FFN (Gemma 4): each output normalised, then summed. */
            em_rmsnorm(h, h, l->post_ffn_norm_2.data, d, m->hp.norm_eps);
            const float *yd = c->ffn_dense + r * d, *wn = l->post_ffn_norm_1.data;
            double ss = 0;
            for (int64_t i = 0; i < d; i++) ss += (double)yd[i] * yd[i];
            const float sc = (float)(1.0 / sqrt(ss / (double)d + (double)m->hp.norm_eps));
            for (int64_t i = 0; i < d; i++) h[i] += yd[i] * sc * wn[i];
        }
        y = h;
    }
    residual(w, &l->post_ffn_norm, &l->post_ffn_norm_b, &l->b_down, y, r);
    if (l->pl_gate.data) {
        act_plan p = one_plan(&l->pl_gate); /* the per-layer embedding's steps follow */
        quantize_row_for(&w->b, &p, w->b.x, d, r);
        return;
    }
    layer_end(w, l, il, r);
}

/* Gemma 4's experts beside a dense FFN: their input pre_ffn_norm_2(x)
 * into h, quantized for them, and the row's experts chosen from the
 * router's logits over rmsnorm(x) / sqrt(n_embd) * gate_inp_s (an F32
 * router, computed here, in the row step). */
static void row_moe_in(const walker *w, const em_layer *l, int il, int32_t r) {
    const em_hparams *hp = &w->s->c->model->hp;
    const int64_t d = hp->n_embd;
    const int k = hp->n_expert_used;
    const float *x = w->b.x + r * d, *gs = l->gate_inp_s.data, *W = l->gate_inp.data;
    (void)il;
    em_rmsnorm(w->b.h + r * d, x, l->pre_ffn_norm_2.data, d, hp->norm_eps);
    act_plan p = expert_plan(l);
    quantize_row_for(&w->b, &p, w->b.h, d, r);
    double ss = 0;
    for (int64_t i = 0; i < d; i++) ss += (double)x[i] * x[i];
    const float sc = (float)(1.0 / sqrt(ss / (double)d + (double)hp->norm_eps)) / sqrtf((float)d);
    float logits[EM_MAX_EXPERTS];
    for (int e = 0; e < hp->n_expert; e++) {
        const float *we = W + (int64_t)e * d;
        float acc = 0;
        for (int64_t i = 0; i < d; i++) acc += we[i] * (x[i] * sc * gs[i]);
        logits[e] = acc;
    }
    em_moe_route(logits, hp->n_expert, k, w->b.sel + r * k, w->b.selw + r * k);
}

/* ------------------------------------------------------------ experts
 *
 * A mixture-of-experts FFN: the router product, then each row picks its
 * experts (row_route), and only those experts' weights are read.  In a
 * batch, thread 0 sorts the (row, expert) slots by expert, the rows'
 * inputs are gathered in that order, and each expert's gate, up and down
 * products run once over all of its rows (em_matmul_group_step).  A
 * one-row batch skips the sorting: each thread routes the row itself and
 * the products stream the chosen experts alone.  The weighted sum of the
 * experts' outputs is taken in row_layer_out.
 */

/* The experts and weights of a row with router logits [n_expert]. */
static void route(const em_hparams *hp, const float *logits, int32_t *sel, float *selw) {
    if (hp->moe_gating == EM_MOE_SIGMOID)
        em_moe_route_sigmoid(logits, hp->n_expert, hp->n_expert_used, sel, selw);
    else
        em_moe_route(logits, hp->n_expert, hp->n_expert_used, sel, selw);
}

/* The row's experts and weights. */
static void row_route(const walker *w, const em_layer *l, int il, int32_t r) {
    const em_hparams *hp = &w->s->c->model->hp;
    const int k = hp->n_expert_used;
    (void)l;
    (void)il;
    route(hp, w->s->c->router + (int64_t)r * hp->n_expert, w->b.sel + r * k, w->b.selw + r * k);
}

/* Thread 0: slots in expert order (moe_off, moe_row, moe_slot). */
static void group_slots(em_context *c, int32_t n) {
    const em_hparams *hp = &c->model->hp;
    const int k = hp->n_expert_used;
    int32_t *off = c->moe_off;
    memset(off, 0, ((size_t)hp->n_expert + 1) * sizeof *off);
    for (int64_t i = 0; i < (int64_t)n * k; i++) off[c->moe_sel[i] + 1]++;
    for (int e = 0; e < hp->n_expert; e++) off[e + 1] += off[e];
    /* Fill each expert's slots in row order, counting up from its start;
     * moe_off[e] ends at its end, and is restored below. */
    for (int32_t r = 0; r < n; r++)
        for (int j = 0; j < k; j++) {
            const int32_t slot = off[c->moe_sel[r * k + j]]++;
            c->moe_slot[r * k + j] = slot;
            c->moe_row[slot] = r;
        }
    for (int e = hp->n_expert; e > 0; e--) off[e] = off[e - 1];
    off[0] = 0;
}

/* Slot i's FFN input rows, copied from the row's in every format of the
 * gate and up experts. */
static void gather_slot(const walker *w, const act_plan *p, int64_t i) {
    em_context *c = w->s->c;
    const int64_t d = c->model->hp.n_embd;
    const int32_t r = c->moe_row[i];
    for (int f = 1; f < 3; f++) {
        const int b = p->of[f];
        if (f == 2 && b == p->of[1]) break; /* gate and up share a format */
        const size_t rb = p->fmt[b] == EM_TYPE_F32 ? (size_t)d * sizeof(float) : em_row_size(p->fmt[b], d);
        const char *src = p->fmt[b] == EM_TYPE_F32 ? (const char *)(w->b.h + r * d)
                                                   : (const char *)w->b.qa[b] + (size_t)r * rb;
        memcpy((char *)c->moe_x[f - 1] + (size_t)i * c->moe_x_row, src, rb);
    }
}

/* The router weight of routed slot i. */
static float slot_weight(const walker *w, int64_t i) {
    em_context *c = w->s->c;
    const int k = c->model->hp.n_expert_used;
    if (w->solo) return w->b.selw[i];
    const int32_t r = c->moe_row[i];
    for (int j = 0; j < k; j++)
        if (c->moe_slot[r * k + j] == i) return w->b.selw[r * k + j];
    return 0.0f;
}

/* Slot i: act(gate) * up, quantized for the down experts (or the shared
 * expert's down).  Where the router weight scales the expert's input
 * (Llama 4), it scales gate and up here: the products are linear, so
 * (w x) W = w (x W). */
static void act_slot(const walker *w, const em_layer *l, int64_t i) {
    em_context *c = w->s->c;
    const em_hparams *hp = &c->model->hp;
    const int64_t fe = hp->n_ff_exp;
    const int64_t n_routed = (w->solo ? 1 : (int64_t)w->s->n) * hp->n_expert_used;
    const float *g = c->ff_gate + i * fe, *u = c->ff_up + i * fe;
    float *ff = w->b.ff + i * fe;
    if (hp->moe_weight_input && i < n_routed) {
        /* act(wt g) * (wt u), written as wt * (act(wt g) * u) so that the
         * shared products stay untouched (a one-row batch's threads each
         * read them). */
        const float wt = slot_weight(w, i);
        for (int64_t j = 0; j < fe; j++) ff[j] = wt * g[j];
        w->s->ro.glu(ff, ff, u, fe);
        for (int64_t j = 0; j < fe; j++) ff[j] *= wt;
    } else {
        w->s->ro.glu(ff, g, u, fe);
    }
    act_plan p = one_plan(i < n_routed ? &l->down_exps : &l->down_shexp);
    quantize_row_for(&w->b, &p, w->b.ff, fe, (int32_t)i);
}

/* The job of weight W (of plan p, entry idx) over rows [s0, s0 + n) of
 * the slots: x from the gathered rows (batch) or the row itself (solo). */
static em_matmul_job slot_job(const walker *w, const act_plan *p, int idx, const em_tensor *W, int64_t s0,
                              float *out, int64_t out_stride) {
    em_context *c = w->s->c;
    const int64_t d = c->model->hp.n_embd;
    em_matmul_job j = job_for(&w->b, p, idx, W, w->b.h, d, out + s0 * out_stride, out_stride);
    if (!w->solo) {
        /* gate (idx 1) reads moe_x[0]; up reads moe_x[1] unless it shares gate's format. */
        const int buf = idx == 2 && p->of[2] != p->of[1] ? 1 : 0;
        j.x = (const char *)c->moe_x[buf] + (size_t)s0 * c->moe_x_row;
        j.x_stride = c->moe_x_row;
    }
    return j;
}

static void experts(walker *w, const em_layer *l, int il) {
    em_context *c = w->s->c;
    em_threadpool *tp = c->pool;
    const em_hparams *hp = &c->model->hp;
    const int ith = w->ith, k = hp->n_expert_used;
    const int64_t d = hp->n_embd, fe = hp->n_ff_exp, n = w->n;
    act_plan pf = expert_plan(l);

    em_matmul_job router = job_for(&w->b, &pf, 0, &l->gate_inp, w->b.h, d, c->router, hp->n_expert);
    if (l->gate_inp_s.data) {
        /* row_moe_in routed the rows already (Gemma 4). */
    } else if (w->solo) {
        /* One row: every thread computes the router's few dot products
         * itself (the same kernel call the product step would make) rather
         * than one thread computing them while the others wait at a
         * barrier, which on a busy machine waits for the slowest thread. */
        float logits[EM_MAX_EXPERTS];
        const em_tensor *R = &l->gate_inp;
        em_gemm(R->type, d, R->data, R->row_bytes, hp->n_expert, router.x, router.x_stride, 1, logits, hp->n_expert);
        route(hp, logits, w->sel, w->selw);
    } else {
        products(w, &router, 1);
        rows(w, row_route, l, il);
    }

    /* The products of the experts in use: in a batch each expert over its
     * slots, in a one-row batch each chosen expert over the row. */
    em_matmul_job jobs[2 * EM_MAX_EXPERTS + 2];
    int64_t n_rows[2 * EM_MAX_EXPERTS + 2];
    int n_jobs = 0;
    em_tensor views[3 * EM_MAX_EXPERTS + 3];
    if (!w->solo) {
        if (ith == 0) group_slots(c, (int32_t)n);
        em_threadpool_barrier(tp);
        FOR_ROWS(tp, i, n * k) gather_slot(w, &pf, i);
        em_threadpool_barrier(tp);
        for (int e = 0; e < hp->n_expert; e++) {
            const int64_t s0 = c->moe_off[e], cnt = c->moe_off[e + 1] - s0;
            if (cnt == 0) continue;
            em_tensor *v = &views[3 * (n_jobs / 2)];
            v[0] = expert(&l->gate_exps, e);
            v[1] = expert(&l->up_exps, e);
            v[2] = expert(&l->down_exps, e);
            jobs[n_jobs] = slot_job(w, &pf, 1, &v[0], s0, c->ff_gate, fe);
            jobs[n_jobs + 1] = slot_job(w, &pf, 2, &v[1], s0, c->ff_up, fe);
            n_rows[n_jobs] = n_rows[n_jobs + 1] = cnt;
            n_jobs += 2;
        }
    } else {
        for (int j = 0; j < k; j++) {
            views[3 * j] = expert(&l->gate_exps, w->sel[j]);
            views[3 * j + 1] = expert(&l->up_exps, w->sel[j]);
            views[3 * j + 2] = expert(&l->down_exps, w->sel[j]);
            jobs[2 * j] = slot_job(w, &pf, 1, &views[3 * j], j, c->ff_gate, fe);
            jobs[2 * j + 1] = slot_job(w, &pf, 2, &views[3 * j + 1], j, c->ff_up, fe);
            n_rows[2 * j] = n_rows[2 * j + 1] = 1;
        }
        n_jobs = 2 * k;
    }
    /* The shared expert: every row, from the FFN input itself, into the
     * slots after the routed ones. */
    const int n_shared = l->gate_shexp.data ? 1 : 0;
    if (n_shared) {
        const int64_t s0 = w->solo ? k : n * k;
        em_tensor *v = &views[3 * (n_jobs / 2)];
        v[0] = l->gate_shexp;
        v[1] = l->up_shexp;
        v[2] = l->down_shexp;
        jobs[n_jobs] = job_for(&w->b, &pf, 3, &v[0], w->b.h, d, c->ff_gate + s0 * fe, fe);
        jobs[n_jobs + 1] = job_for(&w->b, &pf, 4, &v[1], w->b.h, d, c->ff_up + s0 * fe, fe);
        n_rows[n_jobs] = n_rows[n_jobs + 1] = w->solo ? 1 : n;
        n_jobs += 2;
    }
    em_matmul_group_step(tp, ith, jobs, n_rows, n_jobs);
    em_threadpool_barrier(tp);

    /* act(gate) * up per slot, quantized for down. */
    if (w->solo) {
        for (int j = 0; j < k + n_shared; j++) act_slot(w, l, j);
    } else {
        FOR_ROWS(tp, i, n * (k + n_shared)) act_slot(w, l, i);
        em_threadpool_barrier(tp);
    }

    /* Down, into moe_y in slot order: the i-th expert run starts at the
     * slot of its gate job's output row.  (The loader checks that the
     * shared expert's down takes the routed ones' activation format.) */
    act_plan pd = one_plan(&l->down_exps);
    const int n_run = n_jobs / 2;
    for (int i = 0; i < n_run; i++) {
        const int64_t s0 = (jobs[2 * i].out - c->ff_gate) / fe;
        em_matmul_job j = job_for(&w->b, &pd, 0, &views[3 * i + 2], w->b.ff, fe, c->moe_y, d);
        j.x = (const char *)j.x + (size_t)s0 * j.x_stride;
        j.out += s0 * d;
        jobs[i] = j;
        n_rows[i] = n_rows[2 * i];
    }
    em_matmul_group_step(tp, ith, jobs, n_rows, n_run);
    em_threadpool_barrier(tp);
}

/* ------------------------------------------------------- the recipe */

/* The last layer: after attention (which has stored every row's key and
 * value), only the rows that want logits go on through Wo and the FFN.
 * A prompt chunk asks for one row at most, so this skips about a sixth of
 * a 6-layer model's prompt work.  Thread 0 moves each output row's
 * attention output, residual stream and, with per-layer embeddings, its
 * slice of those to the front, in order (a row
 * never moves backwards past a row still to be read); the rest of the
 * layer and output() then see rows 0..n_out-1.  A single output row
 * keeps one other row beside it (row 1, whatever it holds): the kernels
 * take another path for one activation row (the matrix-vector product),
 * whose float sums may round differently, and the logits must stay what
 * they were bit for bit.  Without an output row the layer stops here. */
static void keep_output_rows(walker *w) {
    const fwd_state *s = w->s;
    em_context *c = s->c;
    const em_hparams *hp = &c->model->hp;
    /* Experts are skipped: the rows an expert gets would change with the
     * batch, and with them the kernel path of its products. */
    if (w->solo || s->n_out >= w->n || c->model->layers[hp->n_layer - 1].gate_inp.data) return;
    if (w->ith == 0) {
        const em_layer *l = &c->model->layers[hp->n_layer - 1];
        const int64_t d = hp->n_embd, o_dim = (int64_t)hp->n_head * l->head_dim_v;
        const int64_t n_pl = hp->n_embd_pl, pl_row = n_pl * hp->n_layer, pl_last = n_pl * (hp->n_layer - 1);
        for (int32_t i = 0; i < s->n_out; i++) {
            const int32_t r = c->out_rows[i];
            if (r == i) continue;
            memcpy(c->att + i * o_dim, c->att + (int64_t)r * o_dim, (size_t)o_dim * sizeof(float));
            memcpy(w->b.x + i * d, w->b.x + (int64_t)r * d, (size_t)d * sizeof(float));
            /* The layer's own slice of the per-layer inputs (Gemma 4). */
            if (l->pl_gate.data)
                memcpy(c->ple + i * pl_row + pl_last, c->ple + (int64_t)r * pl_row + pl_last,
                       (size_t)n_pl * sizeof(float));
        }
    }
    em_threadpool_barrier(c->pool);
    w->n = s->n_out == 0 ? 0 : EM_MAX(s->n_out, 2);
    w->compacted = true;
}

/* The steps of layer il; h holds the layer's normalised (and quantized)
 * input when it starts, x the residual stream when it ends. */
static void layer(walker *w, int il) {
    em_context *c = w->s->c;
    const em_hparams *hp = &c->model->hp;
    const em_layer *l = &c->model->layers[il];
    const int64_t d = hp->n_embd, f = ffn_width(c->model, l);
    const int64_t q_dim = (int64_t)hp->n_head * l->head_dim;
    const int64_t k_dim = c->kv.k_width, v_dim = c->kv.v_width;
    const int64_t o_dim = (int64_t)hp->n_head * l->head_dim_v;
    const row_bufs *qa = &w->b;

    /* Q always; K and V where the layer has its own cache and weights. */
    act_plan pq = qkv_plan(l);
    em_matmul_job qkv[3] = {job_for(qa, &pq, 0, &l->wq, w->b.h, d, c->q, q_dim)};
    int n_qkv = 1;
    if (l->kv_src == il) qkv[n_qkv++] = job_for(qa, &pq, 1, &l->wk, w->b.h, d, c->k, k_dim);
    if (l->kv_src == il && l->wv.data) qkv[n_qkv++] = job_for(qa, &pq, 2, &l->wv, w->b.h, d, c->v, v_dim);
    const em_tensor *next[2] = {&l->wo};
    prefetch_next(w, next, 1);
    products(w, qkv, n_qkv);
    rows_heads(w, l, il);
    prefetch_next(w, next, 1);
    attend(w, l, il);
    if (il == hp->n_layer - 1) keep_output_rows(w);
    if (w->n == 0) return; /* a prompt chunk without logits: its cache is written */

    /* Wo into xn (free now), its input quantized first where it needs. */
    act_plan po = one_plan(&l->wo);
    if (needs_quant(&w->b, &po, o_dim) && att_quant_fused(w, l, il) == EM_TYPE_COUNT) rows(w, row_att_quant, l, il);
    em_matmul_job wo = job_for(qa, &po, 0, &l->wo, c->att, o_dim, c->xn, d);
    if (l->w_gate.data) {
        next[0] = &l->w_gate;
        next[1] = &l->w_up;
        prefetch_next(w, next, 2);
    } else if (!l->gate_inp.data) {
        next[0] = &l->w_up;
        prefetch_next(w, next, 1);
    }
    products(w, &wo, 1);
    rows(w, row_ffn_in, l, il);

    if (l->gate_inp.data && !l->w_gate.data) {
        experts(w, l, il);
    } else {
        act_plan pf = ffn_plan(l);
        void *down_q = NULL; /* the down product's input, where act_chunk wrote it */
        if (l->w_gate.data) {
            em_matmul_job gu[2] = {
                job_for(qa, &pf, 0, &l->w_gate, w->b.h, d, c->ff_gate, f),
                job_for(qa, &pf, 1, &l->w_up, w->b.h, d, c->ff_up, f),
            };
            next[0] = &l->w_down;
            prefetch_next(w, next, 1);
            const act_plan pdn = one_plan(&l->w_down);
            if (!w->solo && !l->gate_inp.data && pdn.n_fmt == 1 && blocks_of_32(pdn.fmt[0]) && pf.n_fmt < 3 &&
                l->w_up.ne[1] == f && l->w_gate.ne[1] == f) {
                /* Each chunk's act(gate) * up, quantized for down, by the
                 * thread that computed it (act_chunk): no row step.  The
                 * quants go to a buffer gate and up do not read, since
                 * other chunks of theirs may still be running. */
                down_q = w->b.qa[pf.n_fmt];
                act_chunk ac = {.w = w, .fmt = pdn.fmt[0], .f = f, .dst = down_q};
                em_matmul_pair_step(c->pool, w->ith, &gu[0], &gu[1], w->n, 32, act_chunk_done, &ac);
                step_barrier(w);
            } else {
                products(w, gu, 2);
                rows(w, row_act, l, il);
            }
        } else {
            em_matmul_job up = job_for(qa, &pf, 0, &l->w_up, w->b.h, d, c->ff_up, f);
            next[0] = &l->w_down;
            prefetch_next(w, next, 1);
            products(w, &up, 1);
            rows(w, row_act, l, il);
        }

        /* Beside experts the dense output waits in ffn_dense for theirs. */
        act_plan pd = one_plan(&l->w_down);
        em_matmul_job dn = job_for(qa, &pd, 0, &l->w_down, w->b.ff, f, l->gate_inp.data ? c->ffn_dense : c->xn, d);
        if (down_q) dn.x = down_q;
        if (!l->gate_inp.data && !l->pl_gate.data) prefetch_after_layer(w, il);
        products(w, &dn, 1);
        if (l->gate_inp.data) {
            rows(w, row_moe_in, l, il);
            experts(w, l, il);
        }
    }
    rows(w, row_layer_out, l, il);

    if (l->pl_gate.data) {
        const int64_t n_pl = hp->n_embd_pl;
        act_plan pg = one_plan(&l->pl_gate), pp = one_plan(&l->pl_proj);
        em_matmul_job gate = job_for(qa, &pg, 0, &l->pl_gate, w->b.x, d, c->ple_g, n_pl);
        products(w, &gate, 1);
        rows(w, row_ple_act, l, il);
        em_matmul_job proj = job_for(qa, &pp, 0, &l->pl_proj, w->b.ff, n_pl, c->xn, d);
        products(w, &proj, 1);
        rows(w, row_ple_out, l, il);
    }
}

/* Row dst of the output: the final norm of batch row src, quantized. */
static void final_row(const walker *w, int32_t src, int32_t dst) {
    em_context *c = w->s->c;
    const em_model *m = c->model;
    const int64_t d = m->hp.n_embd;
    float *h = w->b.h + (int64_t)dst * d;
    if (m->output_norm.data)
        norm_row(&m->hp, h, w->b.x + (int64_t)src * d, &m->output_norm, NULL);
    else
        memcpy(h, w->b.x + (int64_t)src * d, (size_t)d * sizeof(float));
    if (c->embd && (!w->solo || w->ith == 0)) memcpy(c->embd + (int64_t)dst * d, h, (size_t)d * sizeof(float));
    act_plan p = one_plan(&m->output);
    quantize_row_for(&w->b, &p, w->b.h, d, dst);
}

/* Logits of the rows that ask for them. */
static void output(walker *w) {
    const fwd_state *s = w->s;
    em_context *c = s->c;
    em_threadpool *tp = c->pool;
    const em_model *m = c->model;
    const int ith = w->ith;
    if (s->n_out == 0) return;
    if (w->solo) {
        final_row(w, 0, 0);
    } else {
        FOR_ROWS(tp, i, s->n_out) final_row(w, w->compacted ? (int32_t)i : c->out_rows[i], (int32_t)i);
        em_threadpool_barrier(tp);
    }
    act_plan po = one_plan(&m->output);
    em_matmul_job out = job_for(&w->b, &po, 0, &m->output, w->b.h, m->hp.n_embd, c->logits, m->hp.n_vocab);
    em_matmul_step(tp, ith, &out, 1, s->n_out);
    if (m->hp.final_softcap > 0) {
        em_threadpool_barrier(tp);
        FOR_ROWS(tp, i, s->n_out) em_softcap(c->logits + i * m->hp.n_vocab, m->hp.n_vocab, m->hp.final_softcap);
    }
}

/* Thread ith's private buffers of a one-row batch. */
static row_bufs solo_of(em_context *c, int ith) {
    const em_hparams *hp = &c->model->hp;
    const size_t r16d = ((size_t)hp->n_embd + 15) / 16 * 16, r16f = ((size_t)c->ff_width + 15) / 16 * 16;
    const size_t qf = (c->solo_stride - 2 * r16d - r16f) / 3;
    float *base = c->solo + (size_t)ith * c->solo_stride;
    row_bufs b = {.x = base, .h = base + r16d, .ff = base + 2 * r16d};
    for (int i = 0; i < 3; i++) b.qa[i] = base + 2 * r16d + r16f + (size_t)i * qf;
    return b;
}

static void forward_worker(void *arg, int ith, int nth) {
    const fwd_state *s = arg;
    em_context *c = s->c;
    const em_model *m = c->model;
    (void)nth;
    walker w = {.s = s, .ith = ith, .n = s->n, .solo = s->n == 1};
    if (w.solo) {
        w.b = solo_of(c, ith);
        w.b.sel = w.sel;
        w.b.selw = w.selw;
    } else {
        w.b = (row_bufs){.x = c->x, .h = c->xn, .ff = c->ff_gate, .sel = c->moe_sel, .selw = c->moe_w};
        for (int i = 0; i < 3; i++) w.b.qa[i] = c->qact[i];
        w.b.fpad = c->fpad;
    }
    rows(&w, row_embed, &m->layers[0], 0);
    if (m->pl_model_proj.data) {
        const int64_t n_pl = (int64_t)m->hp.n_embd_pl * m->hp.n_layer;
        act_plan p = one_plan(&m->pl_model_proj);
        em_matmul_job proj = job_for(&w.b, &p, 0, &m->pl_model_proj, w.b.x, m->hp.n_embd, c->ple, n_pl);
        products(&w, &proj, 1);
        rows(&w, row_ple_in, &m->layers[0], 0);
    }
    for (int il = 0; il < m->hp.n_layer; il++) layer(&w, il);
    output(&w);
}

/* Whether rows [0, n) are all of different sequences; only asked of the
 * batches of a decode step's size (the quadratic scan stays small). */
static bool distinct_seqs(const em_seq_id *seq, int32_t n) {
    if (n < 2 || n > 64) return false;
    for (int32_t i = 1; i < n; i++)
        for (int32_t j = 0; j < i; j++)
            if (seq[i] == seq[j]) return false;
    return true;
}

em_status em_forward(em_context *c, const em_token *tokens, int32_t n, int32_t n_out) {
    fwd_state s = {.c = c, .ro = pick_row_ops(&c->model->hp), .tokens = tokens, .n = n, .n_out = n_out,
                   .distinct = distinct_seqs(c->seq, n)};
    em_threadpool_run(c->pool, forward_worker, &s);
    return EM_OK;
}
