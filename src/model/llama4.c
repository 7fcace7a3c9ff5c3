/*
 * llama4.c - the Llama 4 family (Scout, Maverick), as llama.cpp's loader
 * defines LLM_ARCH_LLAMA4.
 *
 * Llama's layer (RMSNorm, grouped KV heads, adjacent-pair RoPE with the
 * file's rope_freqs, SwiGLU) with these changes:
 *   - Every interleave_moe_layer_step-th layer ((il + 1) % step == 0) has a
 *     mixture-of-experts FFN, the others a dense one of feed_forward_length.
 *     The router takes the top expert_used_count experts (1 in the released
 *     models) by their logits and weighs each by its own sigmoid, without
 *     renormalising; the weight scales the expert's input rather than its
 *     output; and a shared expert (ffn_*_shexp, width
 *     expert_feed_forward_length) runs on every token beside the routed
 *     ones, its output added.
 *   - Layers come in groups of four: three with RoPE and chunked attention
 *     (a query at position p sees the keys of its own chunk only, from
 *     p - p % chunk on), then one global layer without RoPE (NoPE) whose
 *     queries are multiplied by a temperature that grows with the position:
 *     1 + 0.1 * log(floor((pos + 1) / 8192) + 1).
 *   - On the RoPE layers Q and K are RMS-normalised per head after RoPE,
 *     without a weight (the "L2 norm"), except in the 128-expert model
 *     (Maverick), which llama.cpp recognises by its expert count.
 * llama.cpp fixes the chunk at 8192 positions; ember reads
 * llama4.attention.chunk_size where a file has it (ollama's converter
 * writes it) and takes 8192 otherwise.  A file whose
 * attention.sliding_window is 0 has neither chunks nor NoPE layers.
 */
#include "model/family.h"
#include "quant/quant.h"

#include <stdio.h>

#define LLAMA4_NOPE_STEP 4        /* every 4th layer is global without RoPE */
#define LLAMA4_CHUNK 8192         /* llama.cpp's chunk, and temperature floor */

/* llama.cpp: a layer is MoE when (il + 1) % interleave_moe_layer_step == 0. */
static bool moe_layer(const em_model *m, int il, int32_t step) {
    return m->hp.n_expert > 0 && step > 0 && (il + 1) % step == 0;
}

static em_status llama4_hparams(em_model *m) {
    em_hparams *hp = &m->hp;
    em_status st;
    int32_t swa, chunk;
    hp->rope_type = EM_ROPE_NORM;
    if (hp->n_expert > 0) {
        int32_t step;
        if ((st = em_load_i32(m, "interleave_moe_layer_step", &step, true, 0)) != EM_OK) return st;
        hp->moe_gating = EM_MOE_SIGMOID;
        hp->moe_weight_input = true;
        hp->n_expert_shared = 1;
    }
    /* -1: no such key (the usual case: chunks and NoPE layers). */
    if ((st = em_load_i32(m, "attention.sliding_window", &swa, false, -1)) != EM_OK) return st;
    if ((st = em_load_i32(m, "attention.chunk_size", &chunk, false, LLAMA4_CHUNK)) != EM_OK) return st;
    if (chunk <= 0) return em_error(EM_ERR_FORMAT, "model: llama4.attention.chunk_size must be positive");
    const bool chunked = swa != 0;
    hp->n_swa = 0;
    hp->attn_temp_floor = LLAMA4_CHUNK;
    hp->attn_temp_scale = 0.1f;
    hp->attn_temp_offset = 1.0f;
    const bool l2 = hp->n_expert != 128;
    for (int il = 0; il < hp->n_layer; il++) {
        em_layer *l = &m->layers[il];
        const bool nope = chunked && (il + 1) % LLAMA4_NOPE_STEP == 0;
        l->n_swa = 0;
        l->n_chunk = chunked && !nope ? chunk : 0;
        l->rope_set = nope ? -1 : 0;
        l->attn_temp = nope;
        l->qk_l2norm = !nope && l2;
    }
    return EM_OK;
}

/* The activation formats the FFN input is quantized to (forward.c keeps
 * three buffers), and the shared expert's down reading the routed ones'. */
static em_status check_formats(int il, const em_layer *l) {
    const em_tensor *in[] = {&l->gate_inp, &l->gate_exps, &l->up_exps, &l->gate_shexp, &l->up_shexp};
    em_type seen[5];
    int n = 0;
    for (int i = 0; i < 5; i++) {
        em_type f = em_get_type_traits(in[i]->type)->vec_dot_type;
        int j = 0;
        while (j < n && seen[j] != f) j++;
        if (j == n) seen[n++] = f;
    }
    if (n > 3)
        return em_error(EM_ERR_UNSUPPORTED,
                        "model: layer %d: the router and expert matrices need %d activation formats (ember: 3)", il, n);
    if (em_get_type_traits(l->down_shexp.type)->vec_dot_type != em_get_type_traits(l->down_exps.type)->vec_dot_type)
        return em_error(EM_ERR_UNSUPPORTED, "model: layer %d: ffn_down_shexp (%s) and ffn_down_exps (%s) differ in "
                        "activation format", il, em_type_name(l->down_shexp.type), em_type_name(l->down_exps.type));
    return EM_OK;
}

static em_status llama4_bind(em_model *m, int il, em_layer *l) {
    const em_hparams *hp = &m->hp;
    em_status st;
    int32_t step = 0;
    if (hp->n_expert > 0 && (st = em_load_i32(m, "interleave_moe_layer_step", &step, true, 0)) != EM_OK) return st;
    const bool moe = moe_layer(m, il, step);
    if ((st = em_bind_llama_attn(m, il, l, false, false)) != EM_OK) return st;
    if ((st = em_bind_llama_ffn(m, il, l, moe)) != EM_OK || !moe) return st;
    char n[96];
    snprintf(n, sizeof n, "blk.%d.ffn_gate_shexp.weight", il);
    if ((st = em_bind(m, &l->gate_shexp, n, hp->n_embd, hp->n_ff_exp, true)) != EM_OK) return st;
    snprintf(n, sizeof n, "blk.%d.ffn_up_shexp.weight", il);
    if ((st = em_bind(m, &l->up_shexp, n, hp->n_embd, hp->n_ff_exp, true)) != EM_OK) return st;
    snprintf(n, sizeof n, "blk.%d.ffn_down_shexp.weight", il);
    if ((st = em_bind(m, &l->down_shexp, n, hp->n_ff_exp, hp->n_embd, true)) != EM_OK) return st;
    return check_formats(il, l);
}

const em_family em_family_llama4 = {"llama4", llama4_hparams, llama4_bind};
