/*
 * gemma4.c - the Gemma 4 family, dense and with experts.
 *
 * Gemma 3's layer (embedding times sqrt(n_embd), GeGLU, pre- and
 * post-norms, Q/K norm, NeoX RoPE, windowed layers with their own RoPE
 * base, soft-capped logits) with these changes, as llama.cpp's loader and
 * graph define them:
 *   - the file names the windowed layers (attention.sliding_window_pattern,
 *     one bool per layer) and gives each kind its own head size
 *     (key_length vs key_length_swa) and rotated dims (rope.dimension_count
 *     vs _swa); head_count_kv may be a per-layer array;
 *   - scores are not scaled (scale 1: the Q/K norms keep them in range);
 *   - values are RMS-normalised without a weight; a layer without attn_v
 *     uses its keys (before their norm and RoPE) as values;
 *   - rope_freqs divides the frequencies of the global layers only
 *     (proportional RoPE), never the windowed ones;
 *   - the last attention.shared_kv_layers layers compute no keys or values:
 *     each reads the cache of the last layer of its own kind (windowed or
 *     global) before them, llama.cpp's n_kv_from_start - (swa ? 2 : 1);
 *   - per-layer embeddings (embedding_length_per_layer_input > 0): see
 *     em_model.pl_tok_embd and em_layer.pl_gate;
 *   - layer_output_scale multiplies each layer's output;
 *   - feed_forward_length may be a per-layer array;
 *   - with experts, every layer has a dense FFN and experts side by side
 *     (em_layer.gate_inp_s), the experts' gate and up fused in one tensor
 *     (ffn_gate_up_exps, gate rows first) and each expert's output scaled
 *     by ffn_down_exps.scale.
 */
#include "model/family.h"

#include <math.h>
#include <stdio.h>

/* Largest per-layer embedding ember accepts (a slice is dequantized on the
 * stack). */
#define EM_MAX_EMBD_PL 4096

static em_status gemma4_hparams(em_model *m) {
    em_hparams *hp = &m->hp;
    em_status st;
#define TRY(x) do { if ((st = (x)) != EM_OK) return st; } while (0)
    hp->rope_type = EM_ROPE_NEOX;
    hp->act = EM_ACT_GELU_TANH;
    hp->embd_scale = sqrtf((float)hp->n_embd);
    TRY(em_load_f32(m, "final_logit_softcapping", &hp->final_softcap, 30.0f));
    if (!(hp->final_softcap >= 0)) return em_error(EM_ERR_FORMAT, "model: negative soft-cap");
    if (hp->n_swa <= 0) return em_error(EM_ERR_FORMAT, "model: gemma4 needs gemma4.attention.sliding_window");

    int32_t hd_swa, hdv_swa, rot_swa, n_shared, n_pl;
    float base_swa;
    TRY(em_load_i32(m, "attention.key_length_swa", &hd_swa, false, hp->head_dim));
    TRY(em_load_i32(m, "attention.value_length_swa", &hdv_swa, false, hd_swa));
    TRY(em_load_i32(m, "rope.dimension_count_swa", &rot_swa, false, hd_swa));
    TRY(em_load_f32(m, "rope.freq_base_swa", &base_swa, 10000.0f));
    TRY(em_load_i32(m, "attention.shared_kv_layers", &n_shared, false, 0));
    TRY(em_load_i32(m, "embedding_length_per_layer_input", &n_pl, false, 0));
    if (hd_swa != hdv_swa || hp->head_dim != hp->head_dim_v)
        return em_error(EM_ERR_FORMAT, "model: gemma4 needs equal key and value head sizes");
    if (hd_swa <= 0 || rot_swa <= 0 || rot_swa > hd_swa || !(base_swa > 0))
        return em_error(EM_ERR_FORMAT, "model: bad gemma4 windowed-layer head size or RoPE");
    if (n_shared >= hp->n_layer) return em_error(EM_ERR_FORMAT, "model: %d shared-KV layers of %d", n_shared, hp->n_layer);
    if (n_pl > EM_MAX_EMBD_PL) return em_error(EM_ERR_UNSUPPORTED, "model: per-layer embeddings of %d (ember: up to %d)",
                                               n_pl, EM_MAX_EMBD_PL);
    hp->n_kv_shared = n_shared;
    hp->n_embd_pl = n_pl;
    /* The model-wide sizes are the largest of the two kinds. */
    hp->head_dim = hp->head_dim_v = EM_MAX(hp->head_dim, hd_swa);
    hp->n_rot = EM_MAX(hp->n_rot, rot_swa);
    const int32_t rot_global = m->layers[0].n_rot, hd_global = m->layers[0].head_dim;

    hp->n_rope_sets = 2;
    hp->rope[0].n_rot = rot_global;
    hp->rope[1] = (em_rope_set){.base = base_swa, .freq_scale = 1.0f, .mscale = 1.0f, .n_rot = rot_swa,
                                .no_factors = true};

    const int32_t kv_from = hp->n_layer - n_shared; /* first layer without its own KV */
    for (int il = 0; il < hp->n_layer; il++) {
        em_layer *l = &m->layers[il];
        int32_t swa;
        TRY(em_load_layer_i32(m, "attention.sliding_window_pattern", il, &swa, -1));
        if (swa < 0) return em_error(EM_ERR_FORMAT, "model: gemma4 needs gemma4.attention.sliding_window_pattern");
        TRY(em_load_layer_i32(m, "attention.head_count_kv", il, &l->n_head_kv, hp->n_head));
        l->n_swa = swa ? hp->n_swa : 0;
        l->rope_set = swa ? 1 : 0;
        l->head_dim = l->head_dim_v = swa ? hd_swa : hd_global;
        l->n_rot = swa ? rot_swa : rot_global;
        l->attn_scale = 1.0f;
        l->v_norm = true;
        l->kv_src = il < kv_from ? il : kv_from - (swa ? 2 : 1);
    }
#undef TRY
    return EM_OK;
}

/* The experts of layer il: router, its input scale, the norms around the
 * experts, the (fused or separate) gate and up experts, down and its
 * per-expert scale. */
static em_status bind_experts(em_model *m, int il, em_layer *l) {
    const em_hparams *hp = &m->hp;
    const int64_t d = hp->n_embd, fe = hp->n_ff_exp, ne = hp->n_expert;
    em_status st;
    char n[96];
#define TRY(x) do { if ((st = (x)) != EM_OK) return st; } while (0)
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", il, s), n)
    TRY(em_bind(m, &l->gate_inp, NAME("ffn_gate_inp.weight"), d, ne, true));
    if (l->gate_inp.type != EM_TYPE_F32)
        return em_error(EM_ERR_UNSUPPORTED, "model: gemma4 routers must be F32 (%s)", n);
    TRY(em_bind(m, &l->gate_inp_s, NAME("ffn_gate_inp.scale"), d, 0, true));
    TRY(em_bind(m, &l->pre_ffn_norm_2, NAME("pre_ffw_norm_2.weight"), d, 0, true));
    TRY(em_bind(m, &l->post_ffn_norm_1, NAME("post_ffw_norm_1.weight"), d, 0, true));
    TRY(em_bind(m, &l->post_ffn_norm_2, NAME("post_ffw_norm_2.weight"), d, 0, true));
    em_tensor fused;
    TRY(em_bind3(m, &fused, NAME("ffn_gate_up_exps.weight"), d, 2 * fe, ne, false));
    if (fused.data) {
        /* Expert e's gate is rows [0, fe) of its matrix, its up rows [fe, 2 fe). */
        l->gate_exps = l->up_exps = fused;
        l->gate_exps.ne[1] = l->up_exps.ne[1] = fe;
        l->gate_exps.expert_bytes = l->up_exps.expert_bytes = (size_t)(2 * fe) * fused.row_bytes;
        l->up_exps.data = (const char *)fused.data + (size_t)fe * fused.row_bytes;
    } else {
        TRY(em_bind3(m, &l->gate_exps, NAME("ffn_gate_exps.weight"), d, fe, ne, true));
        TRY(em_bind3(m, &l->up_exps, NAME("ffn_up_exps.weight"), d, fe, ne, true));
    }
    TRY(em_bind3(m, &l->down_exps, NAME("ffn_down_exps.weight"), fe, d, ne, true));
    TRY(em_bind(m, &l->down_exps_s, NAME("ffn_down_exps.scale"), ne, 0, false));
#undef NAME
#undef TRY
    return EM_OK;
}

static em_status gemma4_bind(em_model *m, int il, em_layer *l) {
    const em_hparams *hp = &m->hp;
    const int64_t d = hp->n_embd, q_dim = (int64_t)hp->n_head * l->head_dim;
    const int64_t kv_dim = (int64_t)l->n_head_kv * l->head_dim;
    const bool own_kv = l->kv_src == il;
    em_status st;
    char n[96];
#define TRY(x) do { if ((st = (x)) != EM_OK) return st; } while (0)
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", il, s), n)
    TRY(em_bind(m, &l->attn_norm, NAME("attn_norm.weight"), d, 0, true));
    TRY(em_bind(m, &l->wq, NAME("attn_q.weight"), d, q_dim, true));
    TRY(em_bind(m, &l->wo, NAME("attn_output.weight"), q_dim, d, true));
    TRY(em_bind(m, &l->q_norm, NAME("attn_q_norm.weight"), l->head_dim, 0, true));
    /* A layer that reads another layer's cache ignores its own K/V
     * weights, which files may still carry. */
    if (own_kv) {
        TRY(em_bind(m, &l->wk, NAME("attn_k.weight"), d, kv_dim, true));
        TRY(em_bind(m, &l->wv, NAME("attn_v.weight"), d, kv_dim, false));
        TRY(em_bind(m, &l->k_norm, NAME("attn_k_norm.weight"), l->head_dim, 0, true));
    }
    TRY(em_bind(m, &l->post_attn_norm, NAME("post_attention_norm.weight"), d, 0, true));
    TRY(em_bind(m, &l->out_scale, NAME("layer_output_scale.weight"), 1, 0, false));
    TRY(em_bind(m, &l->ffn_norm, NAME("ffn_norm.weight"), d, 0, true));
    /* feed_forward_length may be per layer (wider FFNs on some layers). */
    int32_t n_ff;
    TRY(em_load_layer_i32(m, "feed_forward_length", il, &n_ff, hp->n_ff));
    if (n_ff <= 0 || n_ff > hp->n_ff) return em_error(EM_ERR_FORMAT, "model: layer %d: bad FFN width %d", il, n_ff);
    TRY(em_bind(m, &l->w_gate, NAME("ffn_gate.weight"), d, n_ff, true));
    TRY(em_bind(m, &l->w_up, NAME("ffn_up.weight"), d, n_ff, true));
    TRY(em_bind(m, &l->w_down, NAME("ffn_down.weight"), n_ff, d, true));
    TRY(em_bind(m, &l->post_ffn_norm, NAME("post_ffw_norm.weight"), d, 0, true));
    if (hp->n_expert > 0) TRY(bind_experts(m, il, l));
    if (hp->n_embd_pl > 0) {
        TRY(em_bind(m, &l->pl_gate, NAME("inp_gate.weight"), d, hp->n_embd_pl, true));
        TRY(em_bind(m, &l->pl_proj, NAME("proj.weight"), hp->n_embd_pl, d, true));
        TRY(em_bind(m, &l->pl_norm, NAME("post_norm.weight"), d, 0, true));
    }
#undef NAME
#undef TRY
    return EM_OK;
}

const em_family em_family_gemma4 = {"gemma4", gemma4_hparams, gemma4_bind};
