/*
 * family.h - the model families the loader knows, and the helpers their
 * files (src/model/<family>.c) share.
 *
 * A family is one entry of a table keyed by general.architecture: a
 * hyperparameter reader that turns the file's metadata into the feature
 * fields of em_hparams and the attention settings of each em_layer, and a
 * tensor binder that binds one layer's weights.  The loader reads the keys
 * every family shares first (sizes, epsilon, RoPE), so a family's reader
 * only adds what is particular to it.  The forward pass then follows those
 * fields and never asks which family it runs.
 */
#ifndef EM_FAMILY_H
#define EM_FAMILY_H

#include "model/model.h"

typedef struct em_family {
    const char *name;   /* general.architecture                              */
    /* Sets the family's features in m->hp and each m->layers[il]'s window,
     * RoPE table and scale; the shared keys are read already and each
     * layer holds the defaults (hp.n_swa, table 0, 1/sqrt(head_dim)). */
    em_status (*read_hparams)(em_model *m);
    /* Binds the tensors of layer il, checking their shapes. */
    em_status (*bind_layer)(em_model *m, int il, em_layer *l);
} em_family;

/* The family of general.architecture `name`, or NULL. */
const em_family *em_family_find(const char *name);

/* The families (each defined in its own file). */
extern const em_family em_family_llama, em_family_mistral, em_family_qwen2, em_family_qwen3;
extern const em_family em_family_qwen3moe;
extern const em_family em_family_gemma2, em_family_gemma3, em_family_gemma4;
extern const em_family em_family_bert, em_family_nomic_bert;
extern const em_family em_family_llama4;

/* ---- helpers for the families' files (load.c) ---- */

/* "<arch>.<suffix>" as an int32 or float, with a default when absent
 * (an absent required key is an error). */
em_status em_load_i32(const em_model *m, const char *suffix, int32_t *out, bool required, int32_t def);
em_status em_load_f32(const em_model *m, const char *suffix, float *out, float def);
/* The same for layer il of a key that may be a per-layer array (Gemma 4's
 * head_count_kv): element il of the array, else the scalar. */
em_status em_load_layer_i32(const em_model *m, const char *suffix, int il, int32_t *out, int32_t def);

/* Binds tensor `name` into t and checks its shape [ne0] (ne1 = 0) or
 * [ne0, ne1] and type; an absent optional tensor leaves t->data NULL. */
em_status em_bind(em_model *m, em_tensor *t, const char *name, int64_t ne0, int64_t ne1, bool required);
/* The same for a 3-D tensor [ne0, ne1, ne2] (experts stacked on ne2). */
em_status em_bind3(em_model *m, em_tensor *t, const char *name, int64_t ne0, int64_t ne1, int64_t ne2,
                   bool required);

/* Binds the tensors of a Llama-style layer il: attn_norm, Q/K/V/O, the Q/K/V
 * biases (required when `bias`), the per-head Q/K norms (required when
 * `qk_norm`), ffn_norm and the gate/up/down FFN, or with experts
 * (hp.n_expert > 0) the router and the 3-D expert matrices. */
em_status em_bind_llama_layer(em_model *m, int il, em_layer *l, bool bias, bool qk_norm);
/* Its two halves: the attention part with both norms, and the FFN, dense
 * or (moe) the router and the 3-D expert matrices. */
em_status em_bind_llama_attn(em_model *m, int il, em_layer *l, bool bias, bool qk_norm);
em_status em_bind_llama_ffn(em_model *m, int il, em_layer *l, bool moe);

#endif
