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

    /* Scratch for one batch of up to n_batch rows. */
    float *x;          /* [n_batch][n_embd] residual stream                  */
    float *xn;         /* [n_batch][n_embd] normalised residual              */
    float *q;          /* [n_batch][n_head * head_dim] queries               */
    float *k;          /* [n_batch][n_head_kv * head_dim] new keys           */
    float *v;          /* [n_batch][n_head_kv * head_dim_v] new values       */
    float *att;        /* [n_batch][n_head * head_dim_v] attention output    */
    float *ff_gate;    /* [n_batch][n_ff] gate projection, then SwiGLU       */
    float *ff_up;      /* [n_batch][n_ff] up projection                      */
    void *qact[3];     /* quantized activations, one buffer per format a step
                        * reads: n_batch rows of the widest input, in the
                        * rows' 8-bit activation format (Q8_0/Q8_1/Q8_K)     */
    size_t qact_size;  /* bytes of each qact buffer                          */
    float *solo;       /* [n_threads][solo_stride] private buffers for one-row
                        * batches: x[n_embd], xn[n_embd], ff[n_ff] and three
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
