/*
 * context.h - an engine instance: the KV cache, the thread pool and every
 * scratch buffer of the forward pass, allocated once at em_context_init so
 * that em_decode never allocates (but for growing the logits buffer the
 * first time more rows ask for logits).
 */
#ifndef EM_CONTEXT_H
#define EM_CONTEXT_H

#include "core/threadpool.h"
#include "kv/kv.h"
#include "model/model.h"

struct em_context {
    const em_model *model;
    em_context_params params;
    em_threadpool *pool;
    em_kv kv;
    bool holds_kernels; /* took an em_kernels_hold (released by free)  */

    /* Scratch for one batch of up to n_batch rows. */
    float *x;          /* [n_batch][n_embd] residual stream                  */
    float *xn;         /* [n_batch][n_embd] normalised residual              */
    float *q;          /* [n_batch][n_head * head_dim] queries               */
    float *k;          /* [n_batch][n_head_kv * head_dim] new keys           */
    float *v;          /* [n_batch][n_head_kv * head_dim_v] new values       */
    float *att;        /* [n_batch][n_head * head_dim_v] attention output    */
    float *ff_gate;    /* [n_batch][ff_width] gate projection, then SwiGLU;
                        * with experts [n_batch * n_expert_used][n_ff_exp]  */
    float *ff_up;      /* [n_batch][ff_width] up projection, likewise        */
    int64_t ff_width;  /* floats per row of ff_gate: max(n_ff, n_expert_used * n_ff_exp) */
    /* Mixture of experts (NULL for dense models).  A "slot" is one (row,
     * chosen expert) pair; a batch's slots are ordered by expert so that
     * each expert's product reads its rows contiguously. */
    float *router;     /* [n_batch][n_expert] router logits                  */
    int32_t *moe_sel;  /* [n_batch][n_expert_used] experts chosen per row    */
    float *moe_w;      /* [n_batch][n_expert_used] their weights             */
    int32_t *moe_slot; /* [n_batch][n_expert_used] slot of each choice       */
    int32_t *moe_row;  /* [n_batch * n_expert_used] batch row of each slot   */
    int32_t *moe_off;  /* [n_expert + 1] first slot of each expert           */
    void *moe_x[2];    /* [n_batch * n_expert_used] rows of the FFN input
                        * gathered in slot order, one buffer per format of
                        * the gate and up experts                            */
    size_t moe_x_row;  /* bytes of room per row of moe_x                     */
    float *moe_y;      /* [n_batch * n_expert_used][n_embd] expert outputs   */
    float *ffn_dense;  /* [n_batch][n_embd] dense FFN output of a layer that
                        * also has experts (Gemma 4), else NULL            */
    float *ple;        /* [n_batch][n_layer * n_embd_pl] each row's per-layer
                        * inputs (Gemma 4's per-layer embeddings), or NULL */
    float *ple_g;      /* [n_batch][n_embd_pl] per-layer gate product        */
    void *qact[3];     /* quantized activations, one buffer per format a step
                        * reads: n_batch rows of the widest input, in the
                        * rows' 8-bit activation format (Q8_0/Q8_1/Q8_K)     */
    size_t qact_size;  /* bytes of each qact buffer                          */
    float *fpad;       /* [n_batch][fpad_row] float activation rows copied
                        * with padded strides for the float products of a
                        * batch (forward.c, fpad_stride), or NULL where the
                        * model has no float matrix                         */
    size_t fpad_row;   /* floats of room per batch row of fpad               */
    float *solo;       /* [n_threads][solo_stride] private buffers for one-row
                        * batches: x[n_embd], xn[n_embd], ff[ff_width] and three
                        * quantized rows of qact_size / n_batch bytes       */
    size_t solo_stride;/* floats per thread in solo                          */
    float *rope_cos;   /* [n_rope_sets][n_batch][n_rot / 2] cos of each row's
                        * angles, one table per RoPE set of the model       */
    float *rope_sin;   /* [n_rope_sets][n_batch][n_rot / 2]                  */
    float *inv_freq;   /* [n_rope_sets][n_rot / 2] angle per position of each pair */
    float *att_scratch;/* [n_threads][em_attention_scratch()] floats         */
    int32_t *cells;    /* [n_batch] KV cache row of each row computed        */
    em_token *tok;     /* [n_batch] tokens of the rows computed               */
    em_seq_id *seq;    /* [n_batch] their seq ids                             */
    em_pos *pos;       /* [n_batch] their positions                           */
    int32_t *kv_cells; /* [n_batch] cache row of each batch row, -1: failed   */
    em_status *row_st; /* [n_batch] per-row status when the batch has none   */
    int32_t *out_rows; /* [n_batch] batch rows that asked for logits          */

    float *logits;     /* [logits_cap][n_vocab]                               */
    float *embd;       /* [logits_cap][n_embd] final-norm hidden states of the
                        * rows with logits (params.embeddings), else NULL   */
    int32_t logits_cap;/* rows of logits allocated                            */
    int32_t *logit_of; /* [n_batch] row of logits for each batch row, or -1  */
    int32_t n_logit_rows; /* batch rows of the last em_decode                */
};

/* Runs the forward pass over n rows (n <= n_batch) whose cache rows are
 * already assigned in ctx->cells. */
em_status em_forward(em_context *ctx, const em_token *tokens, int32_t n, int32_t n_out);

#endif
