/*
 * model.h - a loaded model: hyperparameters, weights bound to the GGUF
 * mapping, and the tokenizer.  Immutable after em_model_load, so any
 * number of contexts (and threads) may share one model.
 */
#ifndef EM_MODEL_H
#define EM_MODEL_H

#include "core/tensor.h"
#include "gguf/gguf.h"

/* The FFN's gate activation: SiLU (SwiGLU) or GELU with the tanh
 * approximation (GeGLU, Gemma). */
typedef enum em_act_kind { EM_ACT_SILU, EM_ACT_GELU_TANH } em_act_kind;

/* Normalisation: RMSNorm (weight only) or LayerNorm (mean removed, weight
 * and bias). */
typedef enum em_norm_kind { EM_NORM_RMS, EM_NORM_LAYER } em_norm_kind;

/* em_pooling, how an encoder pools its rows, is public (ember.h). */

/* How a mixture-of-experts router weighs the experts it picks: softmax
 * over all experts, the chosen k renormalised to sum to 1 (Mixtral, Qwen 3);
 * or each chosen expert's own sigmoid (Llama 4). */
typedef enum em_moe_gating { EM_MOE_SOFTMAX, EM_MOE_SIGMOID } em_moe_gating;

/* Most RoPE tables a model uses (Gemma 3: one for local layers, one for
 * global ones). */
#define EM_MAX_ROPE_SETS 2

/* Most experts a mixture-of-experts layer may have, and use per token. */
#define EM_MAX_EXPERTS 256
#define EM_MAX_EXPERTS_USED 16

typedef struct em_layer {
    em_tensor attn_norm; /* [n_embd]                                       */
    em_tensor wq;        /* [n_embd, n_head * head_dim]                     */
    em_tensor wk;        /* [n_embd, n_head_kv * head_dim]                  */
    em_tensor wv;        /* [n_embd, n_head_kv * head_dim_v]                */
    em_tensor wo;        /* [n_head * head_dim_v, n_embd]                   */
    em_tensor bq;        /* [n_head * head_dim] (qwen2) or absent           */
    em_tensor bk;        /* [n_head_kv * head_dim] (qwen2) or absent        */
    em_tensor bv;        /* [n_head_kv * head_dim_v] (qwen2) or absent      */
    em_tensor q_norm;    /* [head_dim] (qwen3) or absent                    */
    em_tensor k_norm;    /* [head_dim] (qwen3) or absent                    */
    em_tensor ffn_norm;  /* [n_embd]                                       */
    em_tensor w_gate;    /* [n_embd, n_ff]                                  */
    em_tensor w_up;      /* [n_embd, n_ff]                                  */
    em_tensor w_down;    /* [n_ff, n_embd]                                  */
    em_tensor gate_inp;  /* [n_embd, n_expert] router, or absent (dense)     */
    em_tensor gate_exps; /* [n_embd, n_ff_exp, n_expert] expert gates        */
    em_tensor up_exps;   /* [n_embd, n_ff_exp, n_expert]                     */
    em_tensor down_exps; /* [n_ff_exp, n_embd, n_expert]                     */
    em_tensor gate_shexp; /* [n_embd, n_ff_exp] shared expert every token runs
                          * (Llama 4), or absent                          */
    em_tensor up_shexp;  /* [n_embd, n_ff_exp]                                */
    em_tensor down_shexp; /* [n_ff_exp, n_embd]                               */
    em_tensor post_attn_norm; /* [n_embd] norm of the attention output before
                          * the residual add (Gemma), or with norm_after the
                          * norm of x + attention (BERT), or absent         */
    em_tensor post_ffn_norm;  /* [n_embd] the same for the FFN output, or absent */
    em_tensor post_attn_norm_b; /* [n_embd] LayerNorm biases of those (BERT) */
    em_tensor post_ffn_norm_b;  /* [n_embd]                                   */
    em_tensor bo;        /* [n_embd] attention output bias, or absent       */
    em_tensor b_up;      /* [n_ff] up bias, or absent                       */
    em_tensor b_down;    /* [n_embd] down bias, or absent                   */

    /* Gemma 4 (absent elsewhere).  A layer may have both a dense FFN and
     * experts: then the FFN output is post_ffn_norm_1(dense FFN of
     * ffn_norm(x)) + post_ffn_norm_2(experts of pre_ffn_norm_2(x)), the
     * router reading rmsnorm(x) / sqrt(n_embd) * gate_inp_s. */
    em_tensor gate_inp_s;     /* [n_embd] router input scale                 */
    em_tensor down_exps_s;    /* [n_expert] scale of each expert's output    */
    em_tensor pre_ffn_norm_2; /* [n_embd] norm of the experts' input         */
    em_tensor post_ffn_norm_1;/* [n_embd] norm of the dense FFN's output      */
    em_tensor post_ffn_norm_2;/* [n_embd] norm of the experts' output         */
    /* Per-layer embeddings: after the FFN residual,
     * x += rmsnorm(pl_proj(gelu(pl_gate(x)) * ple_l)) * pl_norm, where ple_l
     * is this layer's slice of the token's per-layer input. */
    em_tensor pl_gate;        /* [n_embd, n_embd_pl]                         */
    em_tensor pl_proj;        /* [n_embd_pl, n_embd]                         */
    em_tensor pl_norm;        /* [n_embd]                                     */
    em_tensor out_scale;      /* [1] multiplies the layer's output x, or absent */

    /* The layer's attention, set by the family's hyperparameter reader. */
    int32_t n_swa;       /* sliding window in positions, 0 = global         */
    int32_t n_chunk;     /* chunked attention (Llama 4): a query at position
                          * p sees only keys from p - p % n_chunk on; 0 = none */
    bool qk_l2norm;      /* Q and K heads RMS-normalised without a weight
                          * after RoPE (Llama 4's L2 norm)                  */
    bool attn_temp;      /* Q multiplied by the temperature of its position
                          * (em_hparams.attn_temp_*; Llama 4's NoPE layers) */
    int32_t rope_set;    /* RoPE table of this layer (em_hparams.rope), -1:
                          * no RoPE (encoders with learned positions)      */
    float attn_scale;    /* multiplies q.k (usually 1/sqrt(head_dim))       */
    /* The layer's attention shape; the loader sets the model-wide values
     * (em_hparams), which Gemma 4 changes per layer.  The model-wide ones
     * are then the largest, which size the buffers. */
    int32_t n_head_kv;   /* key/value heads                                 */
    int32_t head_dim;    /* width of one query/key head                     */
    int32_t head_dim_v;  /* width of one value head                         */
    int32_t n_rot;       /* dims of each head RoPE rotates                  */
    int32_t kv_src;      /* the layer whose cached keys and values it reads:
                          * itself, or with cross-layer KV sharing an
                          * earlier layer (it then computes no K/V)         */
    bool v_norm;         /* values RMS-normalised (no weight) before caching */
} em_layer;

/* One RoPE table: theta_i = pos * freq_scale * base^(-2i/n_rot).
 * With YaRN (ext_factor 1) pair i blends the scaled and the unscaled
 * frequency: ramp = 1 - clamp((i - corr_lo) / (corr_hi - corr_lo), 0, 1),
 * theta_i = pos * base^(-2i/n_rot) * (freq_scale * (1 - ramp) + ramp),
 * and cos and sin are multiplied by mscale. */
typedef struct em_rope_set {
    float base;          /* theta base                                      */
    float freq_scale;    /* 1 / scaling factor                              */
    float ext_factor;    /* YaRN: 1 blends as above, 0 is plain scaling     */
    float corr_lo;       /* YaRN: first blended pair                        */
    float corr_hi;       /* YaRN: last blended pair                         */
    float mscale;        /* multiplies cos and sin (1 without YaRN)         */
    int32_t n_rot;       /* dims rotated with this table, 0: hp.n_rot        */
    bool no_factors;     /* the model's rope_freqs does not apply (Gemma 4's
                          * windowed layers)                                */
} em_rope_set;

typedef struct em_hparams {
    int32_t n_vocab;
    int32_t n_ctx_train;    /* positions the model was trained on          */
    int32_t n_embd;         /* residual stream width                        */
    int32_t n_layer;
    int32_t n_head;         /* query heads                                  */
    int32_t n_head_kv;      /* key/value heads (GQA when < n_head)          */
    int32_t head_dim;       /* width of one query/key head                  */
    int32_t head_dim_v;     /* width of one value head                      */
    int32_t n_ff;           /* feed-forward hidden width                    */
    int32_t n_rot;          /* dimensions of each head RoPE rotates         */
    int32_t n_swa;          /* sliding window of the windowed layers, 0 = none */
    float norm_eps;         /* RMSNorm epsilon                              */
    float rope_base;        /* theta base of global layers                  */
    float rope_freq_scale;  /* 1 / linear scaling factor of global layers   */
    em_rope_type rope_type;

    /* Features of the family, which the forward pass follows instead of
     * testing architecture names (see docs/ARCHITECTURE.md). */
    em_act_kind act;        /* FFN (gate) activation                        */
    em_norm_kind norm;      /* RMSNorm or LayerNorm                         */
    bool norm_after;        /* post-norm residual x = norm(x + f(x)) (BERT)
                             * instead of x + f(norm(x))                    */
    bool causal;            /* false: rows see later rows too (encoders)    */
    em_pooling pooling;     /* encoders: how rows pool into one vector      */
    float embd_scale;       /* multiplies the token embedding (1: none)     */
    float attn_softcap;     /* scores become c*tanh(s/c); 0 = none          */
    float final_softcap;    /* the same for the output logits               */
    int32_t n_rope_sets;    /* entries of rope                              */
    int32_t n_expert;       /* experts per MoE layer, 0 = dense              */
    int32_t n_expert_used;  /* experts each token is routed to               */
    int32_t n_ff_exp;       /* hidden width of one expert                    */
    em_moe_gating moe_gating; /* how the router weighs the chosen experts     */
    bool moe_weight_input;  /* the router weight scales the expert's input
                             * (Llama 4) instead of its output              */
    int32_t n_expert_shared; /* shared experts (width n_ff_exp) every token
                             * runs besides the routed ones: 0 or 1         */
    float attn_temp_floor;  /* attention temperature of layers with attn_temp:
                             * Q *= 1 + attn_temp_scale *
                             * log(floor((pos + attn_temp_offset) /
                             * attn_temp_floor) + 1)                        */
    float attn_temp_scale;
    float attn_temp_offset;
    int32_t n_embd_pl;      /* per-layer embedding width (Gemma 4), 0: none  */
    int32_t n_kv_shared;    /* last layers that reuse an earlier layer's KV   */
    em_rope_set rope[EM_MAX_ROPE_SETS]; /* tables the layers pick from      */
} em_hparams;

struct em_model {
    em_gguf *gguf;          /* owns the mapping every em_tensor points into */
    const struct em_family *family; /* the family that read and bound it     */
    char arch_name[32];     /* general.architecture                          */
    char name[128];         /* general.name, may be empty                    */
    em_hparams hp;
    em_tensor tok_embd;     /* [n_embd, n_vocab]                              */
    em_tensor output_norm;  /* [n_embd]                                       */
    em_tensor output;       /* [n_embd, n_vocab]; token_embd when tied        */
    em_tensor rope_freqs;   /* [n_rot / 2] frequency divisors, or absent      */
    em_tensor pos_embd;     /* [n_embd, n_ctx_train] learned positions (BERT) */
    em_tensor tok_types;    /* [n_embd, n_types] token type rows; row 0 is added */
    em_tensor embd_norm;    /* [n_embd] LayerNorm of the embedding (BERT)    */
    em_tensor embd_norm_b;  /* [n_embd]                                      */
    /* Per-layer embeddings (Gemma 4): each token's input to every layer is
     * (rmsnorm(pl_model_proj(x0) / sqrt(n_embd)) * pl_proj_norm
     *  + pl_tok_embd[token] * sqrt(n_embd_pl)) / sqrt(2), x0 the scaled
     * token embedding, one n_embd_pl slice per layer. */
    em_tensor pl_tok_embd;  /* [n_embd_pl * n_layer, n_vocab]                 */
    em_tensor pl_model_proj;/* [n_embd, n_embd_pl * n_layer]                  */
    em_tensor pl_proj_norm; /* [n_embd_pl]                                    */
    em_layer *layers;       /* [n_layer]                                      */
    em_vocab *vocab;
    uint64_t n_params;      /* elements over all tensors                      */
    uint64_t n_bytes;       /* bytes of tensor data                           */
    void *packed;           /* anonymous mapping of the packed matrices, or NULL */
    size_t packed_bytes;    /* its size                                       */
};

/* Packs the matrices only the matmuls read (the layers' dense Q, K, V, O,
 * gate, up and down, and an untied output) into the packed layouts of
 * quant/pack.h, where the selected kernel set has a packed kernel for
 * their type, in new memory (the file may be mapped read-only); their
 * em_tensors then point there.  The pages of the file's copy are handed
 * back to the kernel (madvise), so the packed copy costs no memory beyond
 * a page at each end of a matrix.  lock: mlock the packed copy too. */
em_status em_model_repack(em_model *m, bool lock);

/* A layer's matrices as a list (for byte and FLOP counts that must not
 * assume one family's set): fills up to `max` pointers to the present
 * matmul weights of layer il and returns how many. */
int em_layer_mats(const em_layer *l, const em_tensor **out, int max);

/* Writes the model's architecture in words, a line per aspect, each
 * indented by two spaces (explain.c; for `ember inspect`). */
#include <stdio.h>
void em_model_explain(const em_model *m, FILE *out);

/* em_model_desc with the type part given: "<arch> <params> <type_name>"
 * ("llama 1B Q4_K_M"; "?" for a NULL type_name).  em_model_desc names the
 * type of the first layer's gate matrix; `ember bench` names the file's
 * quantization mix.  Returns what snprintf returns. */
int32_t em_model_desc_typed(const em_model *m, const char *type_name, char *buf, size_t size);

#endif /* EM_MODEL_H */
