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
 */
#include "model/context.h"
#include "ops/attention.h"
#include "ops/ops.h"
#include "quant/quant.h"

#include <math.h>

/* Dequantizes the embedding row of each token into x. */
static void embed(const em_model *m, const em_token *tokens, int32_t n, float *x) {
    const em_tensor *te = &m->tok_embd;
    int64_t d = m->hp.n_embd;
    for (int32_t i = 0; i < n; i++) {
        const void *row = (const char *)te->data + (size_t)tokens[i] * te->row_bytes;
        em_dequantize_row(te->type, row, x + i * d, d);
    }
}

/* Fills the per-row cos/sin tables: every layer and head of a row rotates
 * by the same angles. */
static void rope_tables(em_context *c, int32_t n) {
    int half = c->model->hp.n_rot / 2;
    for (int32_t r = 0; r < n; r++) {
        for (int i = 0; i < half; i++) {
            float theta = (float)c->pos[r] * c->inv_freq[i];
            c->rope_cos[(int64_t)r * half + i] = cosf(theta);
            c->rope_sin[(int64_t)r * half + i] = sinf(theta);
        }
    }
}

static void add_bias(float *y, const em_tensor *b, int32_t n, int64_t width) {
    if (!b->data) return;
    const float *bv = b->data;
    for (int32_t r = 0; r < n; r++)
        for (int64_t i = 0; i < width; i++) y[r * width + i] += bv[i];
}

/* True when two weights take activations of the same quantized format, so
 * the activations quantized for one serve the other. */
static bool same_act(const em_tensor *a, const em_tensor *b) {
    return em_get_type_traits(a->type)->vec_dot_type == em_get_type_traits(b->type)->vec_dot_type;
}

static void attention_block(em_context *c, const em_layer *l, int il, int32_t n) {
    const em_hparams *hp = &c->model->hp;
    int64_t d = hp->n_embd;
    int64_t q_dim = (int64_t)hp->n_head * hp->head_dim;
    int64_t k_dim = c->kv.k_width, v_dim = c->kv.v_width;
    int64_t o_dim = (int64_t)hp->n_head * hp->head_dim_v;

    for (int32_t r = 0; r < n; r++) em_rmsnorm(c->xn + r * d, c->x + r * d, l->attn_norm.data, d, hp->norm_eps);

    em_matmul(c->pool, c->q, q_dim, &l->wq, c->xn, n, c->qbuf, false);
    em_matmul(c->pool, c->k, k_dim, &l->wk, c->xn, n, c->qbuf, same_act(&l->wq, &l->wk));
    em_matmul(c->pool, c->v, v_dim, &l->wv, c->xn, n, c->qbuf, same_act(&l->wk, &l->wv));
    add_bias(c->q, &l->bq, n, q_dim);
    add_bias(c->k, &l->bk, n, k_dim);
    add_bias(c->v, &l->bv, n, v_dim);

    int half = hp->n_rot / 2;
    for (int32_t r = 0; r < n; r++) {
        float *q = c->q + r * q_dim, *k = c->k + r * k_dim;
        if (l->q_norm.data)
            for (int h = 0; h < hp->n_head; h++)
                em_rmsnorm(q + (int64_t)h * hp->head_dim, q + (int64_t)h * hp->head_dim, l->q_norm.data,
                           hp->head_dim, hp->norm_eps);
        if (l->k_norm.data)
            for (int h = 0; h < hp->n_head_kv; h++)
                em_rmsnorm(k + (int64_t)h * hp->head_dim, k + (int64_t)h * hp->head_dim, l->k_norm.data,
                           hp->head_dim, hp->norm_eps);
        const float *cs = c->rope_cos + (int64_t)r * half, *sn = c->rope_sin + (int64_t)r * half;
        em_rope(q, hp->n_head, hp->head_dim, hp->n_rot, cs, sn, hp->rope_type);
        em_rope(k, hp->n_head_kv, hp->head_dim, hp->n_rot, cs, sn, hp->rope_type);
        em_kv_store(&c->kv, il, c->cells[r], k, c->v + r * v_dim);
    }

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
    em_attention(c->pool, &a);

    /* The projection writes into xn (free now), then joins the residual. */
    em_matmul(c->pool, c->xn, d, &l->wo, c->att, n, c->qbuf, false);
    for (int64_t i = 0; i < n * d; i++) c->x[i] += c->xn[i];
    (void)o_dim;
}

static void ffn_block(em_context *c, const em_layer *l, int32_t n) {
    const em_hparams *hp = &c->model->hp;
    int64_t d = hp->n_embd, f = hp->n_ff;
    for (int32_t r = 0; r < n; r++) em_rmsnorm(c->xn + r * d, c->x + r * d, l->ffn_norm.data, d, hp->norm_eps);
    em_matmul(c->pool, c->ff_gate, f, &l->w_gate, c->xn, n, c->qbuf, false);
    em_matmul(c->pool, c->ff_up, f, &l->w_up, c->xn, n, c->qbuf, same_act(&l->w_gate, &l->w_up));
    em_swiglu(c->ff_gate, c->ff_gate, c->ff_up, n * f);
    em_matmul(c->pool, c->xn, d, &l->w_down, c->ff_gate, n, c->qbuf, false);
    for (int64_t i = 0; i < n * d; i++) c->x[i] += c->xn[i];
}

em_status em_forward(em_context *c, const em_token *tokens, int32_t n, int32_t n_out) {
    const em_model *m = c->model;
    const em_hparams *hp = &m->hp;
    int64_t d = hp->n_embd;

    embed(m, tokens, n, c->x);
    rope_tables(c, n);
    for (int il = 0; il < hp->n_layer; il++) {
        attention_block(c, &m->layers[il], il, n);
        ffn_block(c, &m->layers[il], n);
    }
    if (n_out == 0) return EM_OK;

    /* Gather the rows that want logits, normalise, project. */
    for (int32_t i = 0; i < n_out; i++) {
        int32_t r = c->out_rows[i];
        em_rmsnorm(c->xn + (int64_t)i * d, c->x + (int64_t)r * d, m->output_norm.data, d, hp->norm_eps);
    }
    em_matmul(c->pool, c->logits, hp->n_vocab, &m->output, c->xn, n_out, c->qbuf, false);
    return EM_OK;
}
