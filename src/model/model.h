/*
 * model.h - a loaded model: hyperparameters, weights bound to the GGUF
 * mapping, and the tokenizer.  Immutable after em_model_load, so any
 * number of contexts (and threads) may share one model.
 */
#ifndef EM_MODEL_H
#define EM_MODEL_H

#include "gguf/gguf.h"

/* Architectures the forward pass knows, as named by general.architecture. */
typedef enum em_arch {
    EM_ARCH_LLAMA,   /* llama, mistral: RMSNorm, SwiGLU, normal RoPE        */
    EM_ARCH_QWEN2,   /* llama + QKV bias, NEOX RoPE                         */
    EM_ARCH_QWEN3,   /* llama + per-head Q/K RMSNorm, NEOX RoPE             */
} em_arch;

/* How RoPE pairs dimensions: adjacent (x[2i], x[2i+1]) or halves
 * (x[i], x[i + d/2]). */
typedef enum em_rope_type { EM_ROPE_NORM, EM_ROPE_NEOX } em_rope_type;

/* A weight tensor: a view into the mapped file, never a copy. */
typedef struct em_tensor {
    em_type type;
    int64_t ne[4];       /* elements per dim; ne[0] is the row length      */
    size_t row_bytes;    /* bytes of one row of ne[0] elements             */
    const void *data;    /* NULL when the model lacks this tensor          */
} em_tensor;

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
} em_layer;

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
    int32_t n_swa;          /* sliding window in positions, 0 = none        */
    float norm_eps;         /* RMSNorm epsilon                              */
    float rope_base;        /* theta base                                   */
    float rope_freq_scale;  /* 1 / linear scaling factor                    */
    em_rope_type rope_type;
} em_hparams;

struct em_model {
    em_gguf *gguf;          /* owns the mapping every em_tensor points into */
    em_arch arch;
    char arch_name[32];     /* general.architecture                          */
    char name[128];         /* general.name, may be empty                    */
    em_hparams hp;
    em_tensor tok_embd;     /* [n_embd, n_vocab]                              */
    em_tensor output_norm;  /* [n_embd]                                       */
    em_tensor output;       /* [n_embd, n_vocab]; token_embd when tied        */
    em_tensor rope_freqs;   /* [n_rot / 2] frequency divisors, or absent      */
    em_layer *layers;       /* [n_layer]                                      */
    em_vocab *vocab;
    uint64_t n_params;      /* elements over all tensors                      */
    uint64_t n_bytes;       /* bytes of tensor data                           */
};

/* em_model_desc with the type part given: "<arch> <params> <type_name>"
 * ("llama 1B Q4_K_M"; "?" for a NULL type_name).  em_model_desc names the
 * type of the first layer's gate matrix; `ember bench` names the file's
 * quantization mix.  Returns what snprintf returns. */
int32_t em_model_desc_typed(const em_model *m, const char *type_name, char *buf, size_t size);

#endif /* EM_MODEL_H */
