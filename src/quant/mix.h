/*
 * mix.h - quantization mixes: which type each tensor of a model gets when
 * a whole model is quantized to "Q4_K_M", "Q3_K_S", "IQ4_XS" and so on.
 *
 * A mix is a base type plus rules, the ones users know from llama.cpp's
 * quantizer: the output matrix gets more bits (it is read once per token
 * but every logit depends on it), attn_v and ffn_down get more bits in
 * some layers (the first and last eighth of the network and every third
 * layer in between, "use more bits"), 1-D tensors (norms, biases) are never
 * quantized, and a tensor whose row length does not fit the chosen type's
 * block falls back to a type whose block does fit.  The numbers of the
 * mixes are llama.cpp's LLAMA_FTYPE values, which GGUF files record as
 * general.file_type.
 */
#ifndef EM_QUANT_MIX_H
#define EM_QUANT_MIX_H

#include "gguf/gguf.h"

/* llama.cpp's LLAMA_FTYPE numbers, as stored in general.file_type. */
typedef enum em_ftype {
    EM_FTYPE_ALL_F32 = 0,
    EM_FTYPE_MOSTLY_F16 = 1,
    EM_FTYPE_MOSTLY_Q4_0 = 2,
    EM_FTYPE_MOSTLY_Q4_1 = 3,
    EM_FTYPE_MOSTLY_Q8_0 = 7,
    EM_FTYPE_MOSTLY_Q5_0 = 8,
    EM_FTYPE_MOSTLY_Q5_1 = 9,
    EM_FTYPE_MOSTLY_Q2_K = 10,
    EM_FTYPE_MOSTLY_Q3_K_S = 11,
    EM_FTYPE_MOSTLY_Q3_K_M = 12,
    EM_FTYPE_MOSTLY_Q3_K_L = 13,
    EM_FTYPE_MOSTLY_Q4_K_S = 14,
    EM_FTYPE_MOSTLY_Q4_K_M = 15,
    EM_FTYPE_MOSTLY_Q5_K_S = 16,
    EM_FTYPE_MOSTLY_Q5_K_M = 17,
    EM_FTYPE_MOSTLY_Q6_K = 18,
    EM_FTYPE_MOSTLY_IQ4_NL = 25,
    EM_FTYPE_MOSTLY_IQ4_XS = 30,
    EM_FTYPE_MOSTLY_BF16 = 32,
} em_ftype;

/* One target of `ember quantize`. */
typedef struct em_mix {
    const char *name;  /* "Q4_K_M", as the user types it                   */
    em_ftype ftype;    /* written to general.file_type                      */
    em_type base;      /* the type most matrices get                        */
    bool pure;         /* no per-tensor rules: every matrix gets base       */
    const char *desc;  /* one line for the help text                        */
} em_mix;

/* The mixes in a fixed order (for help texts and tests). */
int em_mix_count(void);
const em_mix *em_mix_at(int i);
/* Finds a mix by name, case-insensitively; NULL when there is none. */
const em_mix *em_mix_find(const char *name);

/* What the rules need to know about the whole model. */
typedef struct em_mix_model {
    int32_t n_layer;   /* blocks (arch.block_count)                         */
    int32_t n_gqa;     /* query heads per KV head (1 without GQA)           */
    int32_t n_expert;  /* experts per MoE layer (0 or 1: dense)             */
    bool has_output;   /* false: token_embd doubles as the output matrix    */
} em_mix_model;

/* Reads those facts from a GGUF file's metadata and tensor names.  Files
 * that lack the keys (a bare tensor dump) get n_layer from the largest
 * blk.N tensor and n_gqa 1. */
em_status em_mix_model_from_gguf(const em_gguf *g, em_mix_model *out);

/* Whether a tensor is a weight matrix that a mix may convert at all:
 * 1-D tensors, norms, MoE router weights and the like keep their type. */
bool em_mix_quantizable(const char *name, uint32_t n_dims);

/*
 * The type a tensor gets under a mix.  ne0 is its row length.  For tensors
 * that em_mix_quantizable rejects the answer is cur_type.  *fallback (may
 * be NULL) is set when the rules' first choice did not fit the row length
 * and a fallback type was taken.
 */
em_type em_mix_tensor_type(const em_mix *mix, const em_mix_model *mm, const char *name,
                           uint32_t n_dims, int64_t ne0, em_type cur_type, bool *fallback);

#endif /* EM_QUANT_MIX_H */
