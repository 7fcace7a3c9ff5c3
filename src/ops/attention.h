/*
 * attention.h - causal multi-head attention over the KV cache.
 */
#ifndef EM_ATTENTION_H
#define EM_ATTENTION_H

#include "core/threadpool.h"
#include "kv/kv.h"

typedef struct em_attn_args {
    const float *q;          /* [n_rows][n_head * head_dim], RoPE applied     */
    float *out;              /* [n_rows][n_head * head_dim_v]                 */
    const em_kv *kv;         /* keys and values of every row already stored  */
    int32_t layer;
    const em_seq_id *seq;    /* [n_rows] sequence of each query row           */
    const em_pos *pos;       /* [n_rows] position of each query row           */
    int32_t n_rows;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim;
    int32_t head_dim_v;
    int32_t n_swa;           /* sliding window in positions, 0 = unlimited    */
    float scale;             /* multiplies q.k, usually 1/sqrt(head_dim)      */
    float *scratch;          /* [n_threads][em_attention_scratch(...)] floats */
} em_attn_args;

/* Floats of scratch one thread needs. */
size_t em_attention_scratch(int32_t n_head, int32_t n_head_kv, int32_t head_dim, int32_t head_dim_v);

/* Each query row attends to the cache slots of its own sequence at
 * positions <= its own (and > pos - n_swa with a window), with an online
 * softmax so no score matrix is ever stored.  Query heads that share a KV
 * head are computed together so each key and value is read once. */
void em_attention(em_threadpool *tp, const em_attn_args *a);

#endif
