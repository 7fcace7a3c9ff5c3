/*
 * forward.c - the transformer forward pass of the llama family (Llama 2/3,
 * Mistral, Qwen 2, Qwen 3) over one batch of token rows.
 *
 * Per layer:
 *   xn  = rmsnorm(x) * attn_norm
 *   q,k,v = xn Wq, xn Wk, xn Wv   (+ biases for qwen2)
 *   q,k = per-head rmsnorm (qwen3), then RoPE at each row's position
 *   store k, v in the cache; att = attention(q, cache)
 *   x  += att Wo
 *   xn  = rmsnorm(x) * ffn_norm
 *   x  += (silu(xn Wgate) * (xn Wup)) Wdown
 * then logits = (rmsnorm(x) * output_norm) Wout for the rows that ask.
 *
 * The whole pass is one parallel region of the context's thread pool:
 * every thread runs forward_worker, and the steps below are separated by
 * the pool's barriers instead of each op starting and joining its own
 * region.  Within a step the work is shared out with em_threadpool_next:
 * weight-row chunks for the matmuls, (row, KV head) tasks for attention,
 * and whole batch rows for the per-row steps (norms, RoPE, cache stores,
 * quantizing activations, SwiGLU, residual adds), which are fused so that
 * each row is visited once per step while it is in cache.  The steps of
 * a layer:
 *   1. Q, K, V products (one step: their weight rows are chunked together)
 *   2. rows: biases, Q/K norms, RoPE, store K and V in the cache
 *   3. attention
 *   4. rows: quantize the attention output for Wo (skipped for float Wo)
 *   5. Wo product
 *   6. rows: residual add, FFN norm, quantize for gate/up
 *   7. gate and up products (one step)
 *   8. rows: SwiGLU, quantize for down
 *   9. down product
 *  10. rows: residual add, then the next layer's norm and quantization
 * Activations are quantized once per row and format and shared by every
 * product that reads that format (Q, K and V usually share one).  Batches
 * of one row (generation) take a shorter path with half the barriers; see
 * "one-row batches" below.
 */
#include "model/context.h"
#include "ops/attention.h"
#include "ops/ops.h"
#include "quant/gemm.h"
#include "quant/quant.h"

#include <math.h>

/* The per-row operations with SIMD versions, chosen once per pass. */
typedef struct row_ops {
    void (*swiglu)(float *out, const float *gate, const float *up, int64_t n);
    void (*to_f16)(uint16_t *dst, const float *src, int64_t n); /* NULL: scalar */
} row_ops;

static row_ops pick_row_ops(void) {
    row_ops r = {.swiglu = em_swiglu, .to_f16 = NULL};
#if defined(__x86_64__) && defined(__GNUC__)
    if (em_cpu_features() & EM_CPU_AVX2) {
        r.swiglu = em_swiglu_avx2;
        r.to_f16 = em_f32_to_f16_avx2;
    }
#endif
    return r;
}

/* Dequantizes the embedding row of token t into x. */
static void embed_row(const em_model *m, em_token t, float *x) {
    const em_tensor *te = &m->tok_embd;
    const void *row = (const char *)te->data + (size_t)t * te->row_bytes;
    em_dequantize_row(te->type, row, x, m->hp.n_embd);
}

/* The cos/sin table of row r: every layer and head of a row rotates by
 * the same angles. */
static void rope_table_row(em_context *c, int32_t r) {
    int half = c->model->hp.n_rot / 2;
    for (int i = 0; i < half; i++) {
        float theta = (float)c->pos[r] * c->inv_freq[i];
        c->rope_cos[(int64_t)r * half + i] = cosf(theta);
        c->rope_sin[(int64_t)r * half + i] = sinf(theta);
    }
}

/* ------------------------------------------------------- activations */

/* Where the products of one step find their activations: the distinct
 * activation formats of up to three weights, and which buffer serves
 * which weight.  Float weights read the float rows themselves. */
typedef struct act_plan {
    int n_fmt;
    em_type fmt[3];   /* [n_fmt] distinct vec_dot_types            */
    int of[3];        /* buffer index of each weight               */
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

/* Quantizes row r of src[.][k] into every buffer of the plan (bufs[b]
 * holds the rows of format b). */
static void quantize_row_for(void *const *bufs, const act_plan *p, const float *src, int64_t k, int32_t r) {
    for (int b = 0; b < p->n_fmt; b++) {
        if (p->fmt[b] == EM_TYPE_F32) continue;
        char *dst = (char *)bufs[b] + (size_t)r * em_row_size(p->fmt[b], k);
        em_quantize_row(p->fmt[b], src + (int64_t)r * k, dst, k, NULL);
    }
}

/* The product job of weight i of the plan over activations src[.][k],
 * quantized (where W needs it) in bufs. */
static em_matmul_job job_for(void *const *bufs, const act_plan *p, int i, const em_tensor *W, const float *src,
                             int64_t k, float *out, int64_t out_stride) {
    em_type f = p->fmt[p->of[i]];
    em_matmul_job j = {.W = W, .out = out, .out_stride = out_stride};
    if (f == EM_TYPE_F32) {
        j.x = src;
        j.x_stride = (size_t)k * sizeof(float);
    } else {
        j.x = bufs[p->of[i]];
        j.x_stride = em_row_size(f, k);
    }
    return j;
}

static bool needs_quant(const act_plan *p) {
    for (int b = 0; b < p->n_fmt; b++)
        if (p->fmt[b] != EM_TYPE_F32) return true;
    return false;
}

/* ------------------------------------------------------------- steps */

typedef struct fwd_state {
    em_context *c;
    row_ops ro;
    const em_token *tokens;
    int32_t n;      /* batch rows                  */
    int32_t n_out;  /* rows that want logits       */
} fwd_state;

/* Attention over layer il's cache for the context's first n rows. */
static em_attn_args attn_args(const em_context *c, int il, int64_t n) {
    const em_hparams *hp = &c->model->hp;
    em_attn_args a = {
        .q = c->q,
        .out = c->att,
        .kv = &c->kv,
        .layer = il,
        .seq = c->seq,
        .pos = c->pos,
        .n_rows = n,
        .n_head = hp->n_head,
        .n_head_kv = hp->n_head_kv,
        .head_dim = hp->head_dim,
        .head_dim_v = hp->head_dim_v,
        .n_swa = hp->n_swa,
        .scale = 1.0f / sqrtf((float)hp->head_dim),
        .scratch = c->att_scratch,
    };
    return a;
}

/* Iterates the batch rows thread ith claims in the current step. */
#define FOR_ROWS(tp, r, n) for (int64_t r; (r = em_threadpool_next(tp, ith, (n))) >= 0;)

static act_plan qkv_plan(const em_layer *l) {
    const em_tensor *ws[3] = {&l->wq, &l->wk, &l->wv};
    return plan_acts(ws, 3);
}

static act_plan ffn_plan(const em_layer *l) {
    const em_tensor *ws[2] = {&l->w_gate, &l->w_up};
    return plan_acts(ws, 2);
}

static act_plan one_plan(const em_tensor *w) { return plan_acts(&w, 1); }

/* Row r: xn = rmsnorm(x) * attn_norm, quantized for Q, K and V. */
static void attn_prologue_row(em_context *c, const em_layer *l, int32_t r) {
    const em_hparams *hp = &c->model->hp;
    const int64_t d = hp->n_embd;
    em_rmsnorm(c->xn + r * d, c->x + r * d, l->attn_norm.data, d, hp->norm_eps);
    act_plan p = qkv_plan(l);
    quantize_row_for(c->qact, &p, c->xn, d, r);
}

/* Row r after the Q/K/V products, for KV heads [g0, g1) and the query
 * heads that share them: biases, per-head norms, RoPE, and the new key
 * and value into the cache. */
static void qkv_epilogue(em_context *c, const row_ops *ro, const em_layer *l, int il, int32_t r, int g0, int g1) {
    const em_hparams *hp = &c->model->hp;
    const int hd = hp->head_dim, hdv = hp->head_dim_v, group = hp->n_head / hp->n_head_kv;
    const int64_t q_dim = (int64_t)hp->n_head * hd;
    const int64_t k_dim = c->kv.k_width, v_dim = c->kv.v_width;
    float *q = c->q + r * q_dim, *k = c->k + r * k_dim, *v = c->v + r * v_dim;
    const int64_t q0 = (int64_t)g0 * group * hd, q1 = (int64_t)g1 * group * hd;
    if (l->bq.data)
        for (int64_t i = q0; i < q1; i++) q[i] += ((const float *)l->bq.data)[i];
    if (l->bk.data)
        for (int64_t i = (int64_t)g0 * hd; i < (int64_t)g1 * hd; i++) k[i] += ((const float *)l->bk.data)[i];
    if (l->bv.data)
        for (int64_t i = (int64_t)g0 * hdv; i < (int64_t)g1 * hdv; i++) v[i] += ((const float *)l->bv.data)[i];
    if (l->q_norm.data)
        for (int h = g0 * group; h < g1 * group; h++)
            em_rmsnorm(q + (int64_t)h * hd, q + (int64_t)h * hd, l->q_norm.data, hd, hp->norm_eps);
    if (l->k_norm.data)
        for (int h = g0; h < g1; h++)
            em_rmsnorm(k + (int64_t)h * hd, k + (int64_t)h * hd, l->k_norm.data, hd, hp->norm_eps);
    const int half = hp->n_rot / 2;
    const float *cs = c->rope_cos + (int64_t)r * half, *sn = c->rope_sin + (int64_t)r * half;
    em_rope(q + q0, (g1 - g0) * group, hd, hp->n_rot, cs, sn, hp->rope_type);
    em_rope(k + (int64_t)g0 * hd, g1 - g0, hd, hp->n_rot, cs, sn, hp->rope_type);
    em_kv_write(&c->kv, il, c->cells[r], g0, g1, k, v, ro->to_f16);
}

static void layer_steps(const fwd_state *s, int il, int ith) {
    em_context *c = s->c;
    em_threadpool *tp = c->pool;
    const em_hparams *hp = &c->model->hp;
    const em_layer *l = &c->model->layers[il];
    const int32_t n = s->n;
    const int64_t d = hp->n_embd, f = hp->n_ff;
    const int64_t q_dim = (int64_t)hp->n_head * hp->head_dim;
    const int64_t k_dim = c->kv.k_width, v_dim = c->kv.v_width;
    const int64_t o_dim = (int64_t)hp->n_head * hp->head_dim_v;

    /* 1. Q, K, V (xn was normalized and quantized by the previous step). */
    act_plan pq = qkv_plan(l);
    em_matmul_job qkv[3] = {
        job_for(c->qact, &pq, 0, &l->wq, c->xn, d, c->q, q_dim),
        job_for(c->qact, &pq, 1, &l->wk, c->xn, d, c->k, k_dim),
        job_for(c->qact, &pq, 2, &l->wv, c->xn, d, c->v, v_dim),
    };
    em_matmul_step(tp, ith, qkv, 3, n);
    em_threadpool_barrier(tp);

    /* 2. Per row: biases, norms, RoPE, cache store. */
    FOR_ROWS(tp, r, n) qkv_epilogue(c, &s->ro, l, il, (int32_t)r, 0, hp->n_head_kv);
    em_threadpool_barrier(tp);

    /* 3. Attention. */
    const em_attn_args a = attn_args(c, il, n);
    em_attention_step(tp, &a, ith);
    em_threadpool_barrier(tp);

    /* 4, 5. Quantize the attention output, project it into xn (free now). */
    act_plan po = one_plan(&l->wo);
    if (needs_quant(&po)) {
        FOR_ROWS(tp, r, n) quantize_row_for(c->qact, &po, c->att, o_dim, (int32_t)r);
        em_threadpool_barrier(tp);
    }
    em_matmul_job wo = job_for(c->qact, &po, 0, &l->wo, c->att, o_dim, c->xn, d);
    em_matmul_step(tp, ith, &wo, 1, n);
    em_threadpool_barrier(tp);

    /* 6. Residual, FFN norm, quantize for gate and up. */
    act_plan pf = ffn_plan(l);
    FOR_ROWS(tp, r, n) {
        float *x = c->x + r * d, *xn = c->xn + r * d;
        for (int64_t i = 0; i < d; i++) x[i] += xn[i];
        em_rmsnorm(xn, x, l->ffn_norm.data, d, hp->norm_eps);
        quantize_row_for(c->qact, &pf, c->xn, d, (int32_t)r);
    }
    em_threadpool_barrier(tp);

    /* 7. Gate and up. */
    em_matmul_job gu[2] = {
        job_for(c->qact, &pf, 0, &l->w_gate, c->xn, d, c->ff_gate, f),
        job_for(c->qact, &pf, 1, &l->w_up, c->xn, d, c->ff_up, f),
    };
    em_matmul_step(tp, ith, gu, 2, n);
    em_threadpool_barrier(tp);

    /* 8. SwiGLU, quantize for down. */
    act_plan pd = one_plan(&l->w_down);
    FOR_ROWS(tp, r, n) {
        s->ro.swiglu(c->ff_gate + r * f, c->ff_gate + r * f, c->ff_up + r * f, f);
        quantize_row_for(c->qact, &pd, c->ff_gate, f, (int32_t)r);
    }
    em_threadpool_barrier(tp);

    /* 9. Down, into xn. */
    em_matmul_job dn = job_for(c->qact, &pd, 0, &l->w_down, c->ff_gate, f, c->xn, d);
    em_matmul_step(tp, ith, &dn, 1, n);
    em_threadpool_barrier(tp);

    /* 10. Residual; the next layer's norm and quantization. */
    const bool last = il + 1 == hp->n_layer;
    FOR_ROWS(tp, r, n) {
        float *x = c->x + r * d, *xn = c->xn + r * d;
        for (int64_t i = 0; i < d; i++) x[i] += xn[i];
        if (!last) attn_prologue_row(c, &c->model->layers[il + 1], (int32_t)r);
    }
    em_threadpool_barrier(tp);
}

/* ------------------------------------------------- one-row batches
 *
 * Generation decodes one row at a time, and then the per-row steps above
 * are tiny and run on one thread while the others wait at two barriers
 * each.  Instead, every thread keeps its own copy of the row's residual
 * stream and does that row work itself, on private buffers, right before
 * the product that consumes it: the work is duplicated (it is small) but
 * half of the barriers disappear, leaving one after each step whose
 * results other threads need (each product, and attention).  The Q/K
 * epilogue moves into attention, where the task of each KV head finishes
 * its own heads and stores its own key and value before attending, which
 * is safe because no other row of the batch needs them.
 */

/* Thread ith's private buffers. */
typedef struct solo_bufs {
    float *x;      /* [n_embd] this thread's copy of the residual stream */
    float *xn;     /* [n_embd] normalized x                              */
    float *ff;     /* [n_ff] SwiGLU output                               */
    void *qa[3];   /* quantized activations, one row per format          */
} solo_bufs;

static solo_bufs solo_of(em_context *c, int ith) {
    const em_hparams *hp = &c->model->hp;
    const size_t r16d = ((size_t)hp->n_embd + 15) / 16 * 16, r16f = ((size_t)hp->n_ff + 15) / 16 * 16;
    const size_t qf = (c->solo_stride - 2 * r16d - r16f) / 3;
    float *base = c->solo + (size_t)ith * c->solo_stride;
    solo_bufs b = {.x = base, .xn = base + r16d, .ff = base + 2 * r16d};
    for (int i = 0; i < 3; i++) b.qa[i] = base + 2 * r16d + r16f + (size_t)i * qf;
    return b;
}

typedef struct solo_prep {
    const fwd_state *s;
    int il;
} solo_prep;

/* em_attn_args.prepare: the Q/K/V epilogue of KV head g (row 0). */
static void solo_prepare(void *ctx, int32_t row, int32_t g) {
    const solo_prep *p = ctx;
    em_context *c = p->s->c;
    qkv_epilogue(c, &p->s->ro, &c->model->layers[p->il], p->il, row, g, g + 1);
}

/* x += add, then xn = rmsnorm(x) * w quantized for plan p into b.qa. */
static void solo_norm(em_context *c, const solo_bufs *b, const float *add, const float *w, const act_plan *p) {
    const em_hparams *hp = &c->model->hp;
    const int64_t d = hp->n_embd;
    if (add)
        for (int64_t i = 0; i < d; i++) b->x[i] += add[i];
    em_rmsnorm(b->xn, b->x, w, d, hp->norm_eps);
    quantize_row_for(b->qa, p, b->xn, d, 0);
}

static void solo_worker(const fwd_state *s, int ith) {
    em_context *c = s->c;
    em_threadpool *tp = c->pool;
    const em_model *m = c->model;
    const em_hparams *hp = &m->hp;
    const int64_t d = hp->n_embd, f = hp->n_ff;
    const int64_t q_dim = (int64_t)hp->n_head * hp->head_dim;
    const int64_t k_dim = c->kv.k_width, v_dim = c->kv.v_width;
    const int64_t o_dim = (int64_t)hp->n_head * hp->head_dim_v;
    const solo_bufs b = solo_of(c, ith);

    /* The RoPE table is shared; the first barrier publishes it. */
    if (ith == 0) rope_table_row(c, 0);
    embed_row(m, s->tokens[0], b.x);
    act_plan pq = qkv_plan(&m->layers[0]);
    solo_norm(c, &b, NULL, m->layers[0].attn_norm.data, &pq);

    for (int il = 0; il < hp->n_layer; il++) {
        const em_layer *l = &m->layers[il];
        em_matmul_job qkv[3] = {
            job_for(b.qa, &pq, 0, &l->wq, b.xn, d, c->q, q_dim),
            job_for(b.qa, &pq, 1, &l->wk, b.xn, d, c->k, k_dim),
            job_for(b.qa, &pq, 2, &l->wv, b.xn, d, c->v, v_dim),
        };
        em_matmul_step(tp, ith, qkv, 3, 1);
        em_threadpool_barrier(tp);

        solo_prep prep = {.s = s, .il = il};
        em_attn_args a = attn_args(c, il, 1);
        a.prepare = solo_prepare;
        a.prepare_ctx = &prep;
        em_attention_step(tp, &a, ith);
        em_threadpool_barrier(tp);

        act_plan po = one_plan(&l->wo);
        quantize_row_for(b.qa, &po, c->att, o_dim, 0);
        em_matmul_job wo = job_for(b.qa, &po, 0, &l->wo, c->att, o_dim, c->xn, d);
        em_matmul_step(tp, ith, &wo, 1, 1);
        em_threadpool_barrier(tp);

        act_plan pf = ffn_plan(l);
        solo_norm(c, &b, c->xn, l->ffn_norm.data, &pf);
        em_matmul_job gu[2] = {
            job_for(b.qa, &pf, 0, &l->w_gate, b.xn, d, c->ff_gate, f),
            job_for(b.qa, &pf, 1, &l->w_up, b.xn, d, c->ff_up, f),
        };
        em_matmul_step(tp, ith, gu, 2, 1);
        em_threadpool_barrier(tp);

        act_plan pd = one_plan(&l->w_down);
        s->ro.swiglu(b.ff, c->ff_gate, c->ff_up, f);
        quantize_row_for(b.qa, &pd, b.ff, f, 0);
        em_matmul_job dn = job_for(b.qa, &pd, 0, &l->w_down, b.ff, f, c->xn, d);
        em_matmul_step(tp, ith, &dn, 1, 1);
        em_threadpool_barrier(tp);

        if (il + 1 < hp->n_layer) {
            pq = qkv_plan(&m->layers[il + 1]);
            solo_norm(c, &b, c->xn, m->layers[il + 1].attn_norm.data, &pq);
        } else {
            for (int64_t i = 0; i < d; i++) b.x[i] += c->xn[i];
        }
    }
    if (s->n_out == 0) return;
    act_plan po = one_plan(&m->output);
    solo_norm(c, &b, NULL, m->output_norm.data, &po);
    if (ith == 0 && c->embd) memcpy(c->embd, b.xn, (size_t)d * sizeof(float));
    em_matmul_job out = job_for(b.qa, &po, 0, &m->output, b.xn, d, c->logits, hp->n_vocab);
    em_matmul_step(tp, ith, &out, 1, 1);
}

static void forward_worker(void *arg, int ith, int nth) {
    const fwd_state *s = arg;
    if (s->n == 1) {
        solo_worker(s, ith);
        return;
    }
    em_context *c = s->c;
    em_threadpool *tp = c->pool;
    const em_model *m = c->model;
    const em_hparams *hp = &m->hp;
    const int64_t d = hp->n_embd;
    (void)nth;

    /* Embeddings, RoPE tables, the first layer's norm and quantization. */
    FOR_ROWS(tp, r, s->n) {
        embed_row(m, s->tokens[r], c->x + r * d);
        rope_table_row(c, (int32_t)r);
        attn_prologue_row(c, &m->layers[0], (int32_t)r);
    }
    em_threadpool_barrier(tp);

    for (int il = 0; il < hp->n_layer; il++) layer_steps(s, il, ith);
    if (s->n_out == 0) return;

    /* Gather the rows that want logits, normalise, quantize, project. */
    act_plan po = one_plan(&m->output);
    FOR_ROWS(tp, i, s->n_out) {
        em_rmsnorm(c->xn + i * d, c->x + (int64_t)c->out_rows[i] * d, m->output_norm.data, d, hp->norm_eps);
        if (c->embd) memcpy(c->embd + i * d, c->xn + i * d, (size_t)d * sizeof(float));
        quantize_row_for(c->qact, &po, c->xn, d, (int32_t)i);
    }
    em_threadpool_barrier(tp);
    em_matmul_job out = job_for(c->qact, &po, 0, &m->output, c->xn, d, c->logits, hp->n_vocab);
    em_matmul_step(tp, ith, &out, 1, s->n_out);
}

em_status em_forward(em_context *c, const em_token *tokens, int32_t n, int32_t n_out) {
    fwd_state s = {.c = c, .ro = pick_row_ops(), .tokens = tokens, .n = n, .n_out = n_out};
    em_threadpool_run(c->pool, forward_worker, &s);
    return EM_OK;
}
