/*
 * load.c - from a GGUF file to an em_model: read the hyperparameters of
 * the architecture, then bind every weight to its place in the mapping,
 * checking each tensor's shape and type against what the forward pass will
 * assume.  A model that loads is a model the forward pass can run.
 */
#include "model/family.h"
#include "quant/quant.h"
#include "tokenizer/tokenizer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

em_model_params em_model_default_params(void) {
    em_model_params p = {.use_mmap = true, .use_mlock = false, .vocab_only = false, .repack = true};
    return p;
}

/* ------------------------------------------------------- hyperparameters */

/* Reads "<arch>.<suffix>" as an int32, with a default when absent. */
em_status em_load_i32(const em_model *m, const char *suffix, int32_t *out, bool required, int32_t def) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", m->arch_name, suffix);
    int64_t v;
    em_status st = em_gguf_get_i64(m->gguf, key, &v);
    if (st == EM_ERR_NOT_FOUND) {
        if (required) return em_error(EM_ERR_FORMAT, "model: missing metadata key %s", key);
        *out = def;
        return EM_OK;
    }
    if (st != EM_OK) return em_error(EM_ERR_FORMAT, "model: metadata key %s is not an integer", key);
    if (v < 0 || v > INT32_MAX) return em_error(EM_ERR_FORMAT, "model: %s = %lld is out of range", key, (long long)v);
    *out = (int32_t)v;
    return EM_OK;
}

/* Element il of an integer array (UINT32/INT32; bools read as 0/1). */
static em_status arr_i32(const char *key, em_gguf_type t, uint64_t n, const void *data, uint64_t il, int32_t *out) {
    if (il >= n) return em_error(EM_ERR_FORMAT, "model: %s has %llu entries, fewer than the layers", key,
                                 (unsigned long long)n);
    if (t == EM_GGUF_INT32 || t == EM_GGUF_UINT32) {
        uint32_t u;
        memcpy(&u, (const char *)data + il * 4, 4);
        if (u > INT32_MAX) return em_error(EM_ERR_FORMAT, "model: %s[%llu] is out of range", key, (unsigned long long)il);
        *out = (int32_t)u;
        return EM_OK;
    }
    if (t == EM_GGUF_BOOL || t == EM_GGUF_UINT8 || t == EM_GGUF_INT8) {
        *out = ((const uint8_t *)data)[il] != 0;
        return EM_OK;
    }
    return em_error(EM_ERR_FORMAT, "model: %s is not an array of integers", key);
}

em_status em_load_layer_i32(const em_model *m, const char *suffix, int il, int32_t *out, int32_t def) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", m->arch_name, suffix);
    em_gguf_type t;
    uint64_t n;
    const void *data;
    if (em_gguf_get_arr(m->gguf, key, &t, &n, &data) == EM_OK) return arr_i32(key, t, n, data, (uint64_t)il, out);
    return em_load_i32(m, suffix, out, false, def);
}

/* A key that may be per-layer: its largest value (which sizes buffers);
 * the family reads each layer's with em_load_layer_i32. */
static em_status load_max_i32(const em_model *m, const char *suffix, int32_t *out, bool required, int32_t def) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", m->arch_name, suffix);
    em_gguf_type t;
    uint64_t n;
    const void *data;
    if (em_gguf_get_arr(m->gguf, key, &t, &n, &data) != EM_OK) return em_load_i32(m, suffix, out, required, def);
    if (n == 0 || n > 4096) return em_error(EM_ERR_FORMAT, "model: %s has %llu entries", key, (unsigned long long)n);
    *out = 0;
    for (uint64_t i = 0; i < n; i++) {
        int32_t v = 0;
        em_status st = arr_i32(key, t, n, data, i, &v);
        if (st != EM_OK) return st;
        if (v > *out) *out = v;
    }
    return EM_OK;
}

em_status em_load_f32(const em_model *m, const char *suffix, float *out, float def) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", m->arch_name, suffix);
    em_status st = em_gguf_get_f32(m->gguf, key, out);
    if (st == EM_ERR_NOT_FOUND) {
        *out = def;
        return EM_OK;
    }
    if (st != EM_OK) return em_error(EM_ERR_FORMAT, "model: metadata key %s is not a float", key);
    return EM_OK;
}

static em_status read_hparams(em_model *m) {
    em_hparams *hp = &m->hp;
    em_status st;
#define TRY(x) do { if ((st = (x)) != EM_OK) return st; } while (0)
    TRY(em_load_i32(m, "context_length", &hp->n_ctx_train, false, 2048));
    TRY(em_load_i32(m, "embedding_length", &hp->n_embd, true, 0));
    TRY(em_load_i32(m, "block_count", &hp->n_layer, true, 0));
    TRY(load_max_i32(m, "feed_forward_length", &hp->n_ff, true, 0));
    TRY(em_load_i32(m, "attention.head_count", &hp->n_head, true, 0));
    TRY(load_max_i32(m, "attention.head_count_kv", &hp->n_head_kv, false, hp->n_head));
    if (hp->n_embd <= 0 || hp->n_layer <= 0 || hp->n_head <= 0 || hp->n_head_kv <= 0 || hp->n_ff <= 0 ||
        hp->n_layer > 4096 || hp->n_head > 4096)
        return em_error(EM_ERR_FORMAT, "model: implausible sizes (n_embd %d, n_layer %d, n_head %d, n_head_kv %d, n_ff %d)",
                        hp->n_embd, hp->n_layer, hp->n_head, hp->n_head_kv, hp->n_ff);
    if (hp->n_head % hp->n_head_kv)
        return em_error(EM_ERR_FORMAT, "model: head_count %d is not a multiple of head_count_kv %d",
                        hp->n_head, hp->n_head_kv);
    int32_t def_hd = hp->n_embd % hp->n_head ? 0 : hp->n_embd / hp->n_head;
    TRY(em_load_i32(m, "attention.key_length", &hp->head_dim, false, def_hd));
    TRY(em_load_i32(m, "attention.value_length", &hp->head_dim_v, false, hp->head_dim));
    if (hp->head_dim <= 0 || hp->head_dim_v <= 0 || hp->head_dim % 2)
        return em_error(EM_ERR_FORMAT, "model: bad head size %d/%d", hp->head_dim, hp->head_dim_v);
    TRY(em_load_i32(m, "rope.dimension_count", &hp->n_rot, false, hp->head_dim));
    if (hp->n_rot <= 0 || hp->n_rot > hp->head_dim || hp->n_rot % 2)
        return em_error(EM_ERR_FORMAT, "model: rope.dimension_count %d does not fit head size %d", hp->n_rot, hp->head_dim);
    TRY(em_load_i32(m, "attention.sliding_window", &hp->n_swa, false, 0));
    TRY(em_load_i32(m, "expert_count", &hp->n_expert, false, 0));
    TRY(em_load_i32(m, "expert_used_count", &hp->n_expert_used, false, 0));
    TRY(em_load_i32(m, "expert_feed_forward_length", &hp->n_ff_exp, false, hp->n_ff));
    if (hp->n_expert > 0 &&
        (hp->n_expert > EM_MAX_EXPERTS || hp->n_expert_used <= 0 || hp->n_expert_used > hp->n_expert ||
         hp->n_expert_used > EM_MAX_EXPERTS_USED || hp->n_ff_exp <= 0))
        return em_error(EM_ERR_UNSUPPORTED, "model: %d experts with %d used per token (ember runs up to %d, %d used)",
                        hp->n_expert, hp->n_expert_used, EM_MAX_EXPERTS, EM_MAX_EXPERTS_USED);
    TRY(em_load_f32(m, "attention.layer_norm_rms_epsilon", &hp->norm_eps, 1e-5f));
    TRY(em_load_f32(m, "rope.freq_base", &hp->rope_base, 10000.0f));
    if (!(hp->norm_eps >= 0) || !(hp->rope_base > 0))
        return em_error(EM_ERR_FORMAT, "model: bad epsilon or rope base");

    /* Linear RoPE scaling divides positions by the factor.  As in
     * llama.cpp, a factor without a type means linear; "none" turns it off.
     * YaRN (see em_rope_set) blends scaled and unscaled frequencies. */
    float factor = 0;
    char key[160];
    em_gguf_str stype = {"linear", 6};
    snprintf(key, sizeof key, "%s.rope.scaling.type", m->arch_name);
    em_gguf_get_str(m->gguf, key, &stype);
    TRY(em_load_f32(m, "rope.scaling.factor", &factor, 0));
    if (factor <= 0) TRY(em_load_f32(m, "rope.scale_linear", &factor, 0)); /* older files */
    em_rope_set yarn = {.mscale = 1.0f};
    if (em_gguf_str_eq(stype, "none") || factor <= 0 || factor == 1) {
        hp->rope_freq_scale = 1.0f;
    } else if (em_gguf_str_eq(stype, "linear")) {
        hp->rope_freq_scale = 1.0f / factor;
    } else if (em_gguf_str_eq(stype, "yarn")) {
        hp->rope_freq_scale = 1.0f / factor;
        int32_t n_orig;
        float beta_fast, beta_slow, attn_factor;
        TRY(em_load_i32(m, "rope.scaling.original_context_length", &n_orig, false, hp->n_ctx_train));
        TRY(em_load_f32(m, "rope.scaling.yarn_beta_fast", &beta_fast, 32.0f));
        TRY(em_load_f32(m, "rope.scaling.yarn_beta_slow", &beta_slow, 1.0f));
        TRY(em_load_f32(m, "rope.scaling.yarn_attn_factor", &attn_factor, 1.0f));
        if (n_orig <= 0 || !(beta_fast > 0) || !(beta_slow > 0) || !(attn_factor > 0))
            return em_error(EM_ERR_FORMAT, "model: bad YaRN parameters");
        /* The pair index where a rotation completes beta turns over the
         * original context: pairs below corr_lo keep their frequency
         * (extrapolation), pairs above corr_hi are fully scaled, and the
         * ones between blend linearly (llama.cpp's ggml_rope_yarn_corr_dims). */
        const float n_rot = (float)hp->n_rot, pi = 3.14159265358979f, lb = 2.0f * logf(hp->rope_base);
        const float lo = floorf(n_rot * logf((float)n_orig / (beta_fast * 2.0f * pi)) / lb);
        const float hi = ceilf(n_rot * logf((float)n_orig / (beta_slow * 2.0f * pi)) / lb);
        yarn.ext_factor = 1.0f;
        yarn.corr_lo = lo > 0 ? lo : 0;
        yarn.corr_hi = hi < n_rot - 1 ? hi : n_rot - 1;
        yarn.mscale = attn_factor * (1.0f + 0.1f * logf(factor));
    } else {
        return em_error(EM_ERR_UNSUPPORTED, "model: RoPE scaling type '%.*s' is not supported (linear, yarn)",
                        (int)EM_MIN(stype.len, 32), stype.ptr);
    }
    hp->rope_type = EM_ROPE_NORM;

    /* The defaults of the feature fields, which the family's reader
     * changes where its models differ. */
    hp->act = EM_ACT_SILU;
    hp->norm = EM_NORM_RMS;
    hp->causal = true;
    hp->embd_scale = 1.0f;
    hp->n_rope_sets = 1;
    hp->rope[0] = yarn;
    hp->rope[0].base = hp->rope_base;
    hp->rope[0].freq_scale = hp->rope_freq_scale;
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return em_error(EM_ERR_NOMEM, "model: out of memory");
    for (int il = 0; il < hp->n_layer; il++) {
        m->layers[il].n_swa = hp->n_swa;
        m->layers[il].rope_set = 0;
        m->layers[il].attn_scale = 1.0f / sqrtf((float)hp->head_dim);
        m->layers[il].n_head_kv = hp->n_head_kv;
        m->layers[il].head_dim = hp->head_dim;
        m->layers[il].head_dim_v = hp->head_dim_v;
        m->layers[il].n_rot = hp->n_rot;
        m->layers[il].kv_src = il;
    }
    TRY(m->family->read_hparams(m));
    for (int il = 0; il < hp->n_layer; il++) {
        const em_layer *l = &m->layers[il];
        if (l->rope_set < -1 || l->rope_set >= hp->n_rope_sets)
            return em_error(EM_ERR_FORMAT, "model: layer %d has no RoPE table", il);
        /* A family's per-layer shape stays within the model-wide maxima,
         * which size every buffer. */
        if (l->n_head_kv <= 0 || l->n_head_kv > hp->n_head_kv || hp->n_head % l->n_head_kv || l->head_dim <= 0 ||
            l->head_dim > hp->head_dim || l->head_dim % 2 || l->head_dim_v <= 0 || l->head_dim_v > hp->head_dim_v ||
            l->n_rot <= 0 || l->n_rot > l->head_dim || l->n_rot > hp->n_rot || l->n_rot % 2)
            return em_error(EM_ERR_FORMAT, "model: layer %d: bad attention shape (%d KV heads, head size %d/%d, %d rotated)",
                            il, l->n_head_kv, l->head_dim, l->head_dim_v, l->n_rot);
        const em_layer *src = l->kv_src >= 0 && l->kv_src <= il ? &m->layers[l->kv_src] : NULL;
        if (!src || src->kv_src != l->kv_src || src->n_head_kv != l->n_head_kv || src->head_dim != l->head_dim ||
            src->head_dim_v != l->head_dim_v || src->n_swa != l->n_swa || src->n_chunk != l->n_chunk)
            return em_error(EM_ERR_FORMAT, "model: layer %d cannot share the KV cache of layer %d", il, l->kv_src);
    }
#undef TRY
    return EM_OK;
}

/* --------------------------------------------------------------- weights */

/* Binds a tensor and checks its shape: ne0/ne1 are the expected sizes
 * (ne1 = 0 for a vector).  Absent optional tensors leave t->data NULL. */
em_status em_bind(em_model *m, em_tensor *t, const char *name, int64_t ne0, int64_t ne1, bool required) {
    return em_bind3(m, t, name, ne0, ne1, 0, required);
}

em_status em_bind3(em_model *m, em_tensor *t, const char *name, int64_t ne0, int64_t ne1, int64_t ne2,
                   bool required) {
    const em_gguf_tensor *gt = em_gguf_find_tensor(m->gguf, name);
    memset(t, 0, sizeof *t);
    if (!gt) {
        if (required) return em_error(EM_ERR_FORMAT, "model: missing tensor %s", name);
        return EM_OK;
    }
    uint32_t want_dims = ne2 ? 3 : ne1 ? 2 : 1;
    bool ok = gt->ne[0] == ne0 && (ne1 ? gt->ne[1] == ne1 : gt->ne[1] == 1) &&
              (ne2 ? gt->ne[2] == ne2 : gt->ne[2] == 1) && gt->ne[3] == 1;
    if (!ok)
        return em_error(EM_ERR_FORMAT,
                        "model: tensor %s has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld, %lld] (%u dims)",
                        name, (long long)gt->ne[0], (long long)gt->ne[1], (long long)gt->ne[2],
                        (long long)gt->ne[3], (long long)ne0, (long long)(ne1 ? ne1 : 1),
                        (long long)(ne2 ? ne2 : 1), want_dims);
    const em_type_traits *tr = em_get_type_traits(gt->type);
    if (!tr || !tr->can_dequant)
        return em_error(EM_ERR_UNSUPPORTED, "model: tensor %s has type %s, which ember cannot compute with",
                        name, em_type_name(gt->type) ? em_type_name(gt->type) : "?");
    /* Matmul weights are dotted with activations quantized to the weight's
     * vec_dot_type, whose blocks must tile the row too. */
    const em_type_traits *vt = em_get_type_traits(tr->vec_dot_type);
    if (ne1 && (!vt || ne0 % vt->block_size))
        return em_error(EM_ERR_UNSUPPORTED, "model: tensor %s: row length %lld does not fit type %s",
                        name, (long long)ne0, tr->name);
    t->type = gt->type;
    for (int i = 0; i < 4; i++) t->ne[i] = gt->ne[i];
    t->row_bytes = em_row_size(gt->type, gt->ne[0]);
    t->data = gt->data;
    return EM_OK;
}

em_status em_bind_llama_attn(em_model *m, int il, em_layer *l, bool bias, bool qk_norm) {
    const em_hparams *hp = &m->hp;
    em_status st;
    int64_t q_dim = (int64_t)hp->n_head * l->head_dim;
    int64_t k_dim = (int64_t)l->n_head_kv * l->head_dim;
    int64_t v_dim = (int64_t)l->n_head_kv * l->head_dim_v;
    int64_t o_dim = (int64_t)hp->n_head * l->head_dim_v;
    char n[96];
#define TRY(x) do { if ((st = (x)) != EM_OK) return st; } while (0)
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", il, s), n)
    TRY(em_bind(m, &l->attn_norm, NAME("attn_norm.weight"), hp->n_embd, 0, true));
    TRY(em_bind(m, &l->wq, NAME("attn_q.weight"), hp->n_embd, q_dim, true));
    TRY(em_bind(m, &l->wk, NAME("attn_k.weight"), hp->n_embd, k_dim, true));
    TRY(em_bind(m, &l->wv, NAME("attn_v.weight"), hp->n_embd, v_dim, true));
    TRY(em_bind(m, &l->wo, NAME("attn_output.weight"), o_dim, hp->n_embd, true));
    TRY(em_bind(m, &l->bq, NAME("attn_q.bias"), q_dim, 0, bias));
    TRY(em_bind(m, &l->bk, NAME("attn_k.bias"), k_dim, 0, bias));
    TRY(em_bind(m, &l->bv, NAME("attn_v.bias"), v_dim, 0, bias));
    TRY(em_bind(m, &l->q_norm, NAME("attn_q_norm.weight"), l->head_dim, 0, qk_norm));
    TRY(em_bind(m, &l->k_norm, NAME("attn_k_norm.weight"), l->head_dim, 0, qk_norm));
    TRY(em_bind(m, &l->ffn_norm, NAME("ffn_norm.weight"), hp->n_embd, 0, true));
#undef NAME
#undef TRY
    return EM_OK;
}

em_status em_bind_llama_ffn(em_model *m, int il, em_layer *l, bool moe) {
    const em_hparams *hp = &m->hp;
    em_status st;
    char n[96];
#define TRY(x) do { if ((st = (x)) != EM_OK) return st; } while (0)
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", il, s), n)
    if (moe) {
        /* Mixture of experts: a router and each FFN matrix stacked over
         * the experts in a 3-D tensor.  (Older files with one tensor per
         * expert, blk.N.ffn_gate.E.weight, are not read.) */
        const int64_t fe = hp->n_ff_exp, ne = hp->n_expert;
        TRY(em_bind(m, &l->gate_inp, NAME("ffn_gate_inp.weight"), hp->n_embd, ne, true));
        TRY(em_bind3(m, &l->gate_exps, NAME("ffn_gate_exps.weight"), hp->n_embd, fe, ne, true));
        TRY(em_bind3(m, &l->up_exps, NAME("ffn_up_exps.weight"), hp->n_embd, fe, ne, true));
        TRY(em_bind3(m, &l->down_exps, NAME("ffn_down_exps.weight"), fe, hp->n_embd, ne, true));
    } else {
        TRY(em_bind(m, &l->w_gate, NAME("ffn_gate.weight"), hp->n_embd, hp->n_ff, true));
        TRY(em_bind(m, &l->w_up, NAME("ffn_up.weight"), hp->n_embd, hp->n_ff, true));
        TRY(em_bind(m, &l->w_down, NAME("ffn_down.weight"), hp->n_ff, hp->n_embd, true));
    }
#undef NAME
#undef TRY
    return EM_OK;
}

em_status em_bind_llama_layer(em_model *m, int il, em_layer *l, bool bias, bool qk_norm) {
    em_status st = em_bind_llama_attn(m, il, l, bias, qk_norm);
    return st != EM_OK ? st : em_bind_llama_ffn(m, il, l, m->hp.n_expert > 0);
}

static em_status bind_weights(em_model *m) {
    const em_hparams *hp = &m->hp;
    em_status st;
#define TRY(x) do { if ((st = (x)) != EM_OK) return st; } while (0)
    TRY(em_bind(m, &m->tok_embd, "token_embd.weight", hp->n_embd, hp->n_vocab, true));
    TRY(em_bind(m, &m->output_norm, "output_norm.weight", hp->n_embd, 0, !hp->norm_after));
    TRY(em_bind(m, &m->output, "output.weight", hp->n_embd, hp->n_vocab, false));
    if (!m->output.data) m->output = m->tok_embd; /* tied embeddings */
    TRY(em_bind(m, &m->rope_freqs, "rope_freqs.weight", hp->n_rot / 2, 0, false));
    if (m->rope_freqs.data && m->rope_freqs.type != EM_TYPE_F32)
        return em_error(EM_ERR_UNSUPPORTED, "model: rope_freqs.weight must be F32");
    /* Encoders: learned positions, token types (row 0 is added to every
     * token), and a LayerNorm of the embedding. */
    const em_gguf_tensor *tt = em_gguf_find_tensor(m->gguf, "token_types.weight");
    TRY(em_bind(m, &m->pos_embd, "position_embd.weight", hp->n_embd, hp->n_ctx_train, false));
    TRY(em_bind(m, &m->tok_types, "token_types.weight", hp->n_embd, tt && tt->ne[1] > 0 ? tt->ne[1] : 1, false));
    TRY(em_bind(m, &m->embd_norm, "token_embd_norm.weight", hp->n_embd, 0, false));
    TRY(em_bind(m, &m->embd_norm_b, "token_embd_norm.bias", hp->n_embd, 0, false));
    if (hp->n_embd_pl > 0) {
        const int64_t pl = (int64_t)hp->n_embd_pl * hp->n_layer;
        TRY(em_bind(m, &m->pl_tok_embd, "per_layer_token_embd.weight", pl, hp->n_vocab, true));
        TRY(em_bind(m, &m->pl_model_proj, "per_layer_model_proj.weight", hp->n_embd, pl, true));
        TRY(em_bind(m, &m->pl_proj_norm, "per_layer_proj_norm.weight", hp->n_embd_pl, 0, true));
        /* Each layer's slice of a token's row is dequantized alone. */
        if (hp->n_embd_pl % em_get_type_traits(m->pl_tok_embd.type)->block_size)
            return em_error(EM_ERR_UNSUPPORTED, "model: per_layer_token_embd.weight of type %s cannot be cut into "
                            "slices of %d", em_type_name(m->pl_tok_embd.type), hp->n_embd_pl);
    }
    for (int il = 0; il < hp->n_layer; il++) TRY(m->family->bind_layer(m, il, &m->layers[il]));

    /* Vectors the forward pass reads as floats must be F32. */
    const em_tensor *mv[] = {&m->output_norm, &m->embd_norm, &m->embd_norm_b, &m->pl_proj_norm};
    for (size_t i = 0; i < sizeof mv / sizeof *mv; i++)
        if (mv[i]->data && mv[i]->type != EM_TYPE_F32)
            return em_error(EM_ERR_UNSUPPORTED, "model: norm weights must be F32");
    for (int il = 0; il < hp->n_layer; il++) {
        em_layer *l = &m->layers[il];
        const em_tensor *lv[] = {&l->attn_norm, &l->ffn_norm, &l->bq, &l->bk, &l->bv, &l->q_norm, &l->k_norm,
                                 &l->post_attn_norm, &l->post_ffn_norm, &l->post_attn_norm_b, &l->post_ffn_norm_b,
                                 &l->bo, &l->b_up, &l->b_down, &l->gate_inp_s, &l->down_exps_s,
                                 &l->pre_ffn_norm_2, &l->post_ffn_norm_1, &l->post_ffn_norm_2, &l->pl_norm,
                                 &l->out_scale};
        for (size_t i = 0; i < sizeof lv / sizeof *lv; i++)
            if (lv[i]->data && lv[i]->type != EM_TYPE_F32)
                return em_error(EM_ERR_UNSUPPORTED, "model: layer %d: norm and bias vectors must be F32", il);
    }
#undef TRY
    return EM_OK;
}

int em_layer_mats(const em_layer *l, const em_tensor **out, int max) {
    /* The FFN's, and the routed experts, last (cli/bench.c names a file's
     * type by them). */
    const em_tensor *all[] = {&l->wq,         &l->wk,         &l->wv,         &l->wo,         &l->pl_gate,
                              &l->pl_proj,    &l->w_gate,     &l->w_up,       &l->w_down,     &l->gate_shexp,
                              &l->up_shexp,   &l->down_shexp, &l->gate_inp,   &l->gate_exps,  &l->up_exps,
                              &l->down_exps};
    int n = 0;
    for (size_t i = 0; i < sizeof all / sizeof *all && n < max; i++)
        if (all[i]->data) out[n++] = all[i];
    return n;
}

/* ------------------------------------------------------------------ load */

static const em_family *const families[] = {
    &em_family_llama, &em_family_mistral, &em_family_qwen2, &em_family_qwen3, &em_family_qwen3moe,
    &em_family_gemma2, &em_family_gemma3, &em_family_gemma4, &em_family_bert, &em_family_nomic_bert,
    &em_family_llama4,
};

const em_family *em_family_find(const char *name) {
    for (size_t i = 0; i < sizeof families / sizeof *families; i++)
        if (!strcmp(name, families[i]->name)) return families[i];
    return NULL;
}

static em_status arch_from_name(em_model *m) {
    m->family = em_family_find(m->arch_name);
    if (m->family) return EM_OK;
    char names[256];
    size_t len = 0;
    for (size_t i = 0; i < sizeof families / sizeof *families && len < sizeof names; i++)
        len += (size_t)snprintf(names + len, sizeof names - len, "%s%s", i ? ", " : "", families[i]->name);
    return em_error(EM_ERR_UNSUPPORTED, "model: architecture '%s' is not supported (%s)", m->arch_name, names);
}

static void copy_str(char *dst, size_t size, em_gguf_str s) {
    size_t n = s.len < size - 1 ? (size_t)s.len : size - 1;
    memcpy(dst, s.ptr, n);
    dst[n] = '\0';
}

em_status em_model_load(em_model **out, const char *path, const em_model_params *params) {
    if (!out || !path) return em_error(EM_ERR_INVALID_ARG, "model: no path given");
    em_kernels_init(); /* the kernel tables are fixed before any context can run */
    em_model_params defaults = em_model_default_params();
    if (!params) params = &defaults;
    em_model *m = calloc(1, sizeof *m);
    if (!m) return em_error(EM_ERR_NOMEM, "model: out of memory");
    em_status st = params->use_mmap ? em_gguf_open(&m->gguf, path) : em_gguf_open_read(&m->gguf, path);
    if (st == EM_OK) st = em_gguf_open_parts(m->gguf, path, params->use_mmap); /* split models */
    if (st != EM_OK) goto fail;
    if (params->use_mlock && (st = em_gguf_lock(m->gguf)) != EM_OK) goto fail;

    em_gguf_str s;
    if (em_gguf_get_str(m->gguf, "general.architecture", &s) != EM_OK) {
        st = em_error(EM_ERR_FORMAT, "model: %s has no general.architecture", path);
        goto fail;
    }
    copy_str(m->arch_name, sizeof m->arch_name, s);
    if (em_gguf_get_str(m->gguf, "general.name", &s) == EM_OK) copy_str(m->name, sizeof m->name, s);

    if ((st = em_vocab_load(&m->vocab, m->gguf)) != EM_OK) goto fail;
    if (params->vocab_only) {
        *out = m;
        return EM_OK;
    }
    if ((st = arch_from_name(m)) != EM_OK) goto fail;
    if ((st = read_hparams(m)) != EM_OK) goto fail;

    /* The vocabulary size is the embedding's, which may exceed the
     * tokenizer's (padded vocabularies). */
    const em_gguf_tensor *te = em_gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!te) {
        st = em_error(EM_ERR_FORMAT, "model: missing tensor token_embd.weight");
        goto fail;
    }
    if (te->ne[1] < em_vocab_n_tokens(m->vocab) || te->ne[1] > INT32_MAX) {
        st = em_error(EM_ERR_FORMAT, "model: token_embd.weight has %lld rows for %d tokens",
                      (long long)te->ne[1], em_vocab_n_tokens(m->vocab));
        goto fail;
    }
    m->hp.n_vocab = (int32_t)te->ne[1];
    if ((st = bind_weights(m)) != EM_OK) goto fail;

    for (int64_t i = 0; i < em_gguf_n_tensors(m->gguf); i++) {
        const em_gguf_tensor *t = em_gguf_tensor_at(m->gguf, i);
        m->n_params += (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
        m->n_bytes += t->size;
    }
    if (params->repack && (st = em_model_repack(m, params->use_mlock)) != EM_OK) goto fail;
    *out = m;
    return EM_OK;
fail:
    em_model_free(m);
    return st;
}

void em_model_free(em_model *m) {
    if (!m) return;
    em_vocab_free(m->vocab);
    free(m->layers);
    if (m->packed) munmap(m->packed, m->packed_bytes);
    em_gguf_close(m->gguf);
    free(m);
}

const em_vocab *em_model_vocab(const em_model *m) { return m->vocab; }
int32_t em_model_n_vocab(const em_model *m) { return m->hp.n_vocab ? m->hp.n_vocab : em_vocab_n_tokens(m->vocab); }
int32_t em_model_n_embd(const em_model *m) { return m->hp.n_embd; }
int32_t em_model_n_layer(const em_model *m) { return m->hp.n_layer; }
int32_t em_model_n_ctx_train(const em_model *m) { return m->hp.n_ctx_train; }
uint64_t em_model_n_params(const em_model *m) { return m->n_params; }
uint64_t em_model_size(const em_model *m) { return m->n_bytes; }
const char *em_model_arch(const em_model *m) { return m->arch_name; }
bool em_model_is_causal(const em_model *m) { return m->hp.causal; }
em_pooling em_model_pooling(const em_model *m) { return m->hp.pooling; }

int32_t em_model_desc_typed(const em_model *m, const char *type_name, char *buf, size_t size) {
    double p = (double)m->n_params;
    const char *unit = "";
    if (p >= 1e9) { p /= 1e9; unit = "B"; }
    else if (p >= 1e6) { p /= 1e6; unit = "M"; }
    else if (p >= 1e3) { p /= 1e3; unit = "K"; }
    return snprintf(buf, size, "%s %.0f%s %s", m->arch_name, p, unit, type_name ? type_name : "?");
}

int32_t em_model_desc(const em_model *m, char *buf, size_t size) {
    /* The most common matmul weight type names the file's quantization. */
    const em_layer *l = m->layers;
    return em_model_desc_typed(m, l ? em_type_name((l->w_gate.data ? l->w_gate : l->gate_exps).type) : "vocab", buf,
                               size);
}
