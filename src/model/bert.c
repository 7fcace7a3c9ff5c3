/*
 * bert.c - the BERT family of sentence-embedding encoders: bert (bge and
 * its kin) and nomic-bert (nomic-embed).
 *
 * Both are encoders: attention is not causal (every row of a sequence sees
 * every other), layers are post-norm with LayerNorm,
 *   x = LN(x + attention(x)),  x = LN(x + ffn(x)),
 * the embedding is LayerNorm(token + token type 0 (+ learned position)),
 * and there is no output head: the final rows are pooled into one vector
 * per sequence ({arch}.pooling_type: mean or CLS) and L2-normalised
 * (em_embeddings_pool).  As llama.cpp's loader defines them:
 *   bert        learned position_embd, separate Q/K/V, a bias on every
 *               linear layer, GELU FFN (up, down) without a gate
 *   nomic-bert  fused attn_qkv, NeoX RoPE instead of positions, SwiGLU
 *               FFN, no biases but the LayerNorms'
 */
#include "model/family.h"

#include <stdio.h>

static em_status bert_common(em_model *m, bool rope) {
    em_hparams *hp = &m->hp;
    em_status st;
    if (hp->n_expert > 0) return em_error(EM_ERR_UNSUPPORTED, "model: %s with experts is not supported", m->arch_name);
    hp->norm = EM_NORM_LAYER;
    hp->norm_after = true;
    hp->causal = false;
    hp->rope_type = EM_ROPE_NEOX;
    if ((st = em_load_f32(m, "attention.layer_norm_epsilon", &hp->norm_eps, 1e-12f)) != EM_OK) return st;
    int32_t pooling;
    if ((st = em_load_i32(m, "pooling_type", &pooling, false, EM_POOL_MEAN)) != EM_OK) return st;
    if (pooling != EM_POOL_MEAN && pooling != EM_POOL_CLS)
        return em_error(EM_ERR_UNSUPPORTED, "model: pooling type %d is not supported (1 mean, 2 CLS)", pooling);
    hp->pooling = (em_pooling)pooling;
    for (int il = 0; il < hp->n_layer; il++) m->layers[il].rope_set = rope ? 0 : -1;
    return EM_OK;
}

static em_status bert_hparams(em_model *m) {
    m->hp.act = EM_ACT_GELU_TANH;
    return bert_common(m, false);
}

static em_status nomic_hparams(em_model *m) { return bert_common(m, true); }

/* The post-norms with their biases, shared by both. */
static em_status bind_norms(em_model *m, int il, em_layer *l) {
    const int64_t d = m->hp.n_embd;
    em_status st;
    char n[96];
#define TRY(x) do { if ((st = (x)) != EM_OK) return st; } while (0)
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", il, s), n)
    TRY(em_bind(m, &l->post_attn_norm, NAME("attn_output_norm.weight"), d, 0, true));
    TRY(em_bind(m, &l->post_attn_norm_b, NAME("attn_output_norm.bias"), d, 0, true));
    TRY(em_bind(m, &l->post_ffn_norm, NAME("layer_output_norm.weight"), d, 0, true));
    TRY(em_bind(m, &l->post_ffn_norm_b, NAME("layer_output_norm.bias"), d, 0, true));
#undef NAME
#undef TRY
    return EM_OK;
}

static em_status bert_bind(em_model *m, int il, em_layer *l) {
    const em_hparams *hp = &m->hp;
    const int64_t d = hp->n_embd, q = (int64_t)hp->n_head * hp->head_dim, k = (int64_t)hp->n_head_kv * hp->head_dim;
    em_status st;
    char n[96];
#define TRY(x) do { if ((st = (x)) != EM_OK) return st; } while (0)
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", il, s), n)
    TRY(em_bind(m, &l->wq, NAME("attn_q.weight"), d, q, true));
    TRY(em_bind(m, &l->wk, NAME("attn_k.weight"), d, k, true));
    TRY(em_bind(m, &l->wv, NAME("attn_v.weight"), d, k, true));
    TRY(em_bind(m, &l->bq, NAME("attn_q.bias"), q, 0, true));
    TRY(em_bind(m, &l->bk, NAME("attn_k.bias"), k, 0, true));
    TRY(em_bind(m, &l->bv, NAME("attn_v.bias"), k, 0, true));
    TRY(em_bind(m, &l->wo, NAME("attn_output.weight"), q, d, true));
    TRY(em_bind(m, &l->bo, NAME("attn_output.bias"), d, 0, true));
    TRY(em_bind(m, &l->w_up, NAME("ffn_up.weight"), d, hp->n_ff, true));
    TRY(em_bind(m, &l->b_up, NAME("ffn_up.bias"), hp->n_ff, 0, true));
    TRY(em_bind(m, &l->w_down, NAME("ffn_down.weight"), hp->n_ff, d, true));
    TRY(em_bind(m, &l->b_down, NAME("ffn_down.bias"), d, 0, true));
#undef NAME
#undef TRY
    return bind_norms(m, il, l);
}

/* Rows [r0, r0 + rows) of a fused weight, as a weight of its own. */
static em_tensor rows_of(const em_tensor *t, int64_t r0, int64_t rows) {
    em_tensor v = *t;
    v.ne[1] = rows;
    v.data = (const char *)t->data + (size_t)r0 * t->row_bytes;
    return v;
}

static em_status nomic_bind(em_model *m, int il, em_layer *l) {
    const em_hparams *hp = &m->hp;
    const int64_t d = hp->n_embd, q = (int64_t)hp->n_head * hp->head_dim, k = (int64_t)hp->n_head_kv * hp->head_dim;
    em_status st;
    char n[96];
    em_tensor qkv;
#define TRY(x) do { if ((st = (x)) != EM_OK) return st; } while (0)
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", il, s), n)
    /* Output j of the fused product is row j of the weight: Q's rows,
     * then K's, then V's. */
    TRY(em_bind(m, &qkv, NAME("attn_qkv.weight"), d, q + 2 * k, true));
    l->wq = rows_of(&qkv, 0, q);
    l->wk = rows_of(&qkv, q, k);
    l->wv = rows_of(&qkv, q + k, k);
    TRY(em_bind(m, &l->wo, NAME("attn_output.weight"), q, d, true));
    TRY(em_bind(m, &l->w_gate, NAME("ffn_gate.weight"), d, hp->n_ff, true));
    TRY(em_bind(m, &l->w_up, NAME("ffn_up.weight"), d, hp->n_ff, true));
    TRY(em_bind(m, &l->w_down, NAME("ffn_down.weight"), hp->n_ff, d, true));
#undef NAME
#undef TRY
    return bind_norms(m, il, l);
}

const em_family em_family_bert = {"bert", bert_hparams, bert_bind};
const em_family em_family_nomic_bert = {"nomic-bert", nomic_hparams, nomic_bind};
