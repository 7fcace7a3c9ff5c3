/*
 * llama.c - the Llama family: Llama 2/3 and Mistral, Qwen 2 and Qwen 3.
 *
 * Every layer is pre-norm with RMSNorm, attention with grouped KV heads
 * and RoPE, and a SwiGLU FFN.  The members differ only in small parts:
 *   llama, mistral  adjacent-pair RoPE; optional rope_freqs (Llama 3),
 *                   sliding window on every layer (Mistral)
 *   qwen2           biases on Q, K and V; half-split (NeoX) RoPE
 *   qwen3           RMSNorm over each head of Q and K before RoPE; NeoX RoPE
 *   qwen3moe        qwen3 with a mixture-of-experts FFN in every layer
 * Any of them may have experts (expert_count > 0: the Mixtral layout):
 * a router picks expert_used_count experts per token by softmax, their
 * weights renormalised to sum to 1, and the FFN output is the weighted sum
 * of those experts' SwiGLU FFNs.
 */
#include "model/family.h"

static em_status llama_hparams(em_model *m) {
    m->hp.rope_type = EM_ROPE_NORM;
    return EM_OK;
}

static em_status neox_hparams(em_model *m) {
    m->hp.rope_type = EM_ROPE_NEOX;
    return EM_OK;
}

static em_status llama_bind(em_model *m, int il, em_layer *l) { return em_bind_llama_layer(m, il, l, false, false); }
static em_status qwen2_bind(em_model *m, int il, em_layer *l) { return em_bind_llama_layer(m, il, l, true, false); }
static em_status qwen3_bind(em_model *m, int il, em_layer *l) { return em_bind_llama_layer(m, il, l, false, true); }

const em_family em_family_llama = {"llama", llama_hparams, llama_bind};
const em_family em_family_mistral = {"mistral", llama_hparams, llama_bind};
const em_family em_family_qwen2 = {"qwen2", neox_hparams, qwen2_bind};
const em_family em_family_qwen3 = {"qwen3", neox_hparams, qwen3_bind};

static em_status qwen3moe_hparams(em_model *m) {
    if (m->hp.n_expert <= 0) return em_error(EM_ERR_FORMAT, "model: qwen3moe without qwen3moe.expert_count");
    return neox_hparams(m);
}

const em_family em_family_qwen3moe = {"qwen3moe", qwen3moe_hparams, qwen3_bind};
