/*
 * attention.h - causal multi-head attention over the KV cache.
 */
#ifndef EM_ATTENTION_H
#define EM_ATTENTION_H

#include "core/threadpool.h"
#include "kv/kv.h"
#include "quant/blocks.h"

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
    int32_t n_chunk;         /* chunked attention: position p sees keys from
                              * p - p % n_chunk on; 0 = no chunks            */
    float scale;             /* multiplies q.k, usually 1/sqrt(head_dim)      */
    float softcap;           /* scaled scores s become c*tanh(s/c); 0 = none  */
    bool non_causal;         /* rows see every stored position of their
                              * sequence, later ones too (encoders)          */
    float *scratch;          /* [n_threads][em_attention_scratch(...)] floats */
    /* Optional: called by the thread that takes task (row, kv_head) before
     * it attends, to finish that head's queries and store its key and
     * value (one-row batches fuse that work into attention this way).
     * Safe only when no other task reads what it writes: a row's own key
     * is visible to later rows of the same batch. */
    void (*prepare)(void *ctx, int32_t row, int32_t kv_head);
    void *prepare_ctx;
    /* Optional: called by the thread that attended (row, kv_head) once
     * that row's outputs of the KV head's query heads are written, to
     * work on them while they are in cache (a batch's forward pass
     * quantizes them there for Wo, which saves a row step and its
     * barrier). */
    void (*finish)(void *ctx, int32_t row, int32_t kv_head);
    void *finish_ctx;
} em_attn_args;

/* Floats of scratch one thread needs. */
size_t em_attention_scratch(int32_t n_head, int32_t n_head_kv, int32_t head_dim, int32_t head_dim_v);

/* Each query row attends to the cache rows of its own sequence at
 * positions <= its own (every stored one when non_causal; and > pos - n_swa
 * with a window; >= p - p % n_chunk with chunks), found through
 * the sequence's block table (kv.h), with an online
 * softmax so no score matrix is ever stored.  Query heads that share a KV
 * head are computed together so each key and value is read once.  One
 * parallel region of the pool. */
void em_attention(em_threadpool *tp, const em_attn_args *a);

/* The same as a step inside a running parallel region (see ops.h): every
 * thread ith calls it, right after a barrier; (row, KV head) tasks are
 * shared out with em_threadpool_next. */
void em_attention_step(em_threadpool *tp, const em_attn_args *a, int ith);

/* ---- kernels ------------------------------------------------------------
 * The inner loops over a block of keys, as a scalar set (attention.c) and
 * an AVX2/F16C set (arch/x86/attention_avx2.c) with the same contracts;
 * keys and values are rows of floats (F32 cache), IEEE halves (F16 cache)
 * or Q8_0 blocks (Q8_0 cache), passed as one pointer per key because the
 * visible rows of a sequence lie in blocks that need not be adjacent. */
typedef struct em_attn_kernels {
    /* s[h * s_stride + j] = q_h . k_j for h < n_q, j < nk, where
     * q_h = q + h * n and k_j points at the n elements of key j. */
    void (*qk_f32)(const float *q, int n_q, int64_t n, const float *const *k, int nk, float *s, int s_stride);
    void (*qk_f16)(const float *q, int n_q, int64_t n, const uint16_t *const *k, int nk, float *s, int s_stride);
    /* The same over Q8_0 keys: k_j points at the n / 32 blocks of key j
     * (n a multiple of 32), whose element e is the float product
     * fp16_to_fp32(d) * (float)qs[e] that em_dequantize_row gives, and each
     * score is the bits qk_f32 of the same set gives over those floats. */
    void (*qk_q8_0)(const float *q, int n_q, int64_t n, const em_block_q8_0 *const *k, int nk, float *s,
                    int s_stride);
    /* acc_h[i] += sum_j p[h * p_stride + j] * v_j[i] for h < n_q, i < n,
     * j < nv, where acc_h = acc + h * n. */
    void (*pv_f32)(float *acc, int n_q, int64_t n, const float *p, int p_stride, const float *const *v, int nv);
    void (*pv_f16)(float *acc, int n_q, int64_t n, const float *p, int p_stride, const uint16_t *const *v, int nv);
    /* The same over Q8_0 values (as qk_q8_0: n a multiple of 32, the bits
     * pv_f32 of the same set gives over the dequantized floats). */
    void (*pv_q8_0)(float *acc, int n_q, int64_t n, const float *p, int p_stride, const em_block_q8_0 *const *v,
                    int nv);
    /* s[j] = exp(s[j] - m) for j < n (s[j] <= m); returns their sum. */
    float (*exp_sum)(float *s, int n, float m);
    /* s[j] *= scale for j < n; then, where kpos is not NULL, s[j] = -inf
     * for the keys a query may not see (kpos[j] < lo or > hi); returns the
     * largest s[j] (-inf if none). */
    float (*scale_max)(float *s, int n, float scale, const int32_t *kpos, int32_t lo, int32_t hi);
    /* exp_sum over rows: for h < nq, sum[h] = exp_sum(s + h * stride, n,
     * m[h]).  One call for all the queries of a block, so that their
     * exponentials overlap in the pipeline rather than wait on each other. */
    void (*exp_rows)(float *s, int nq, int stride, int n, const float *m, float *sum);
} em_attn_kernels;

/* The kernels em_attention uses: AVX2 where the CPU has it (and EMBER_CPU
 * is not "generic"), else scalar. */
const em_attn_kernels *em_attn_kernels_get(void);
/* The scalar set, always. */
const em_attn_kernels *em_attn_kernels_scalar(void);
/* For tests: makes em_attention use the scalar set (generic != 0) or the
 * best one again.  Not thread-safe. */
void em_attn_kernels_force_scalar(int generic);

#if defined(__x86_64__) && defined(__GNUC__)
extern const em_attn_kernels em_attn_kernels_avx2;
/* AVX-512 F/VL forms of the products (arch/x86/attention_avx512.c), with
 * the AVX2 set's exp. */
extern const em_attn_kernels em_attn_kernels_avx512;
float em_attn_exp_sum_avx2(float *s, int n, float m);
float em_attn_scale_max_avx2(float *s, int n, float scale, const int32_t *kpos, int32_t lo, int32_t hi);
void em_attn_exp_rows_avx2(float *s, int nq, int stride, int n, const float *m, float *sum);
#endif

#endif
