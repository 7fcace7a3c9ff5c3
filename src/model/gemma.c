/*
 * gemma.c - the Gemma 2 and Gemma 3 family.
 *
 * Llama's layer with these changes (as llama.cpp's loader defines them):
 *   - the token embedding is multiplied by sqrt(n_embd);
 *   - GeGLU FFN: GELU (tanh approximation) on the gate instead of SiLU;
 *   - the attention and FFN outputs are RMS-normalised again
 *     (post_attention_norm, post_ffw_norm) before their residual adds;
 *   - NeoX RoPE; the output matrix is the token embedding;
 *   - sliding-window layers interleaved with global ones: gemma2
 *     alternates (even layers windowed), gemma3 has five windowed layers
 *     to one global;
 *   - gemma2: attention scores and final logits are soft-capped,
 *     s -> c * tanh(s / c), with the caps of the file;
 *   - gemma3: per-head Q/K RMSNorm, and two RoPE tables: global layers use
 *     rope.freq_base with the file's linear scaling, windowed layers
 *     rope.freq_base_swa (default 10000) unscaled.
 * Scores are scaled by 1/sqrt(head_dim), the value llama.cpp uses for all
 * but the 27B models (whose query_pre_attn_scalar differs; a file does not
 * say which it is, so those models would need a key of their own).
 */
#include "model/family.h"

#include <math.h>
#include <stdio.h>

/* Windowed layers are those with il % pattern < pattern - 1. */
static void set_windows(em_model *m, int pattern, int local_rope) {
    for (int il = 0; il < m->hp.n_layer; il++) {
        bool local = il % pattern < pattern - 1;
        m->layers[il].n_swa = local ? m->hp.n_swa : 0;
        m->layers[il].rope_set = local ? local_rope : 0;
    }
}

static em_status gemma_common(em_model *m) {
    em_hparams *hp = &m->hp;
    hp->rope_type = EM_ROPE_NEOX;
    hp->act = EM_ACT_GELU_TANH;
    hp->embd_scale = sqrtf((float)hp->n_embd);
    if (hp->n_expert > 0)
        return em_error(EM_ERR_UNSUPPORTED, "model: %s with experts is not supported", m->arch_name);
    if (hp->n_swa <= 0)
        return em_error(EM_ERR_FORMAT, "model: %s needs %s.attention.sliding_window", m->arch_name, m->arch_name);
    return EM_OK;
}

static em_status gemma2_hparams(em_model *m) {
    em_hparams *hp = &m->hp;
    em_status st = gemma_common(m);
    if (st != EM_OK) return st;
    if ((st = em_load_f32(m, "attn_logit_softcapping", &hp->attn_softcap, 50.0f)) != EM_OK) return st;
    if ((st = em_load_f32(m, "final_logit_softcapping", &hp->final_softcap, 30.0f)) != EM_OK) return st;
    if (!(hp->attn_softcap >= 0) || !(hp->final_softcap >= 0))
        return em_error(EM_ERR_FORMAT, "model: negative soft-cap");
    set_windows(m, 2, 0);
    return EM_OK;
}

static em_status gemma3_hparams(em_model *m) {
    em_hparams *hp = &m->hp;
    em_status st = gemma_common(m);
    if (st != EM_OK) return st;
    float base_swa;
    if ((st = em_load_f32(m, "rope.freq_base_swa", &base_swa, 10000.0f)) != EM_OK) return st;
    if (!(base_swa > 0)) return em_error(EM_ERR_FORMAT, "model: bad rope.freq_base_swa");
    hp->n_rope_sets = 2;
    hp->rope[1] = (em_rope_set){.base = base_swa, .freq_scale = 1.0f, .mscale = 1.0f};
    set_windows(m, 6, 1);
    return EM_OK;
}

static em_status gemma_bind(em_model *m, int il, em_layer *l, bool qk_norm) {
    em_status st = em_bind_llama_layer(m, il, l, false, qk_norm);
    if (st != EM_OK) return st;
    char n[96];
    snprintf(n, sizeof n, "blk.%d.post_attention_norm.weight", il);
    if ((st = em_bind(m, &l->post_attn_norm, n, m->hp.n_embd, 0, true)) != EM_OK) return st;
    snprintf(n, sizeof n, "blk.%d.post_ffw_norm.weight", il);
    return em_bind(m, &l->post_ffn_norm, n, m->hp.n_embd, 0, true);
}

static em_status gemma2_bind(em_model *m, int il, em_layer *l) { return gemma_bind(m, il, l, false); }
static em_status gemma3_bind(em_model *m, int il, em_layer *l) { return gemma_bind(m, il, l, true); }

const em_family em_family_gemma2 = {"gemma2", gemma2_hparams, gemma2_bind};
const em_family em_family_gemma3 = {"gemma3", gemma3_hparams, gemma3_bind};
