/*
 * ops.h - the operations of the forward pass, on float rows.  Each takes
 * plain arrays with their shapes in the comments; the parallel ones take
 * the thread pool and split their work by output rows.
 */
#ifndef EM_OPS_H
#define EM_OPS_H

#include "core/threadpool.h"
#include "core/tensor.h"

/* out[i] = x[i] / sqrt(mean(x^2) + eps) * w[i] for i < n; w may be NULL.
 * out may alias x. */
void em_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps);

/* Rotates the first n_rot dims of each of n_heads heads of width head_dim
 * in x[n_heads * head_dim] by the angles whose cosines and sines are in
 * cs[n_rot / 2] and sn[n_rot / 2]. */
void em_rope(float *x, int n_heads, int head_dim, int n_rot, const float *cs, const float *sn,
             em_rope_type type);

/* out[i] = silu(gate[i]) * up[i]; out may alias gate. */
void em_swiglu(float *out, const float *gate, const float *up, int64_t n);

/* out[i] = gelu(gate[i]) * up[i] with GELU's tanh approximation
 * 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))); out may alias gate. */
void em_geglu(float *out, const float *gate, const float *up, int64_t n);

/* LayerNorm: out[i] = (x[i] - mean) / sqrt(var + eps) * w[i] + b[i];
 * w and b may be NULL; out may alias x. */
void em_layernorm(float *out, const float *x, const float *w, const float *b, int64_t n, float eps);

/* out[i] = gelu(x[i]) (tanh approximation, as em_geglu); out may alias x. */
void em_gelu(float *out, const float *x, int64_t n);

/* Soft-capping in place: x[i] = cap * tanh(x[i] / cap) for i < n. */
void em_softcap(float *x, int64_t n, float cap);

/* Mixture-of-experts routing of one token: p = softmax(logits[n_expert]);
 * sel[0..k) = the experts of the k largest p (largest first, lower index
 * first among equals); w[j] = p[sel[j]] / sum of those k p. */
void em_moe_route(const float *logits, int n_expert, int k, int32_t *sel, float *w);

/* The same with sigmoid gating (Llama 4): sel[0..k) = the experts of the
 * k largest logits (largest first, lower index first among equals);
 * w[j] = sigmoid(logits[sel[j]]), not renormalised. */
void em_moe_route_sigmoid(const float *logits, int n_expert, int k, int32_t *sel, float *w);

/* In-place softmax of x[n]. */
void em_softmax(float *x, int64_t n);

/*
 * out[r][j] = dot(W row j, x row r) for r < n_rows, j < W->ne[1].
 * x is [n_rows][W->ne[0]] floats, out [n_rows][out_stride] floats.  The
 * activations are first quantized into qbuf (which must hold n_rows rows of
 * the weight's vec_dot_type) unless `prequantized` says qbuf already holds
 * them.  One parallel region of the pool; work is split by weight rows.
 */
void em_matmul(em_threadpool *tp, float *out, int64_t out_stride, const em_tensor *W,
               const float *x, int64_t n_rows, void *qbuf, bool prequantized);

/* Quantizes n_rows rows of x[n_rows][k] into the vec_dot_type of weight
 * type t, written contiguously into qbuf. */
void em_quantize_activations(em_type t, const float *x, int64_t n_rows, int64_t k, void *qbuf);

/* Bytes em_quantize_activations needs per row of k elements for weights of
 * type t. */
size_t em_activation_row_size(em_type t, int64_t k);

/* ---- steps of a parallel region ----------------------------------------
 * These are called by every thread ith of a running pool (inside the
 * function given to em_threadpool_run) and share their work out with
 * em_threadpool_next, so the step must start right after a barrier (or at
 * the start of the region) and be followed by one before its results are
 * read. */

/* One product of a step: out[r * out_stride + j] = dot(W row j, x row r). */
typedef struct em_matmul_job {
    const em_tensor *W;
    const void *x;       /* [n_rows] activation rows in W's vec_dot_type   */
    size_t x_stride;     /* bytes from one activation row to the next      */
    float *out;          /* [n_rows][out_stride] floats                    */
    int64_t out_stride;
} em_matmul_job;

#define EM_MATMUL_MAX_JOBS 4

/* Runs n_jobs (<= EM_MATMUL_MAX_JOBS) products over the same n_rows
 * activation rows, their weight rows shared out in chunks. */
void em_matmul_step(em_threadpool *tp, int ith, const em_matmul_job *jobs, int n_jobs, int64_t n_rows);

/* The weight bytes thread ith of nth reads first in em_matmul_step with
 * the same jobs and n_rows: its first chunk, at most max_bytes of it (*p
 * NULL, *bytes 0 if it gets none of its own).  For
 * em_threadpool_barrier_prefetch before the step. */
void em_matmul_first_chunk(const em_matmul_job *jobs, int n_jobs, int64_t n_rows, int ith, int nth, size_t max_bytes,
                           const void **p, size_t *bytes);

/* What a thread prefetches of its first chunk while it waits at a barrier:
 * half of the largest chunk (ops/matmul.c).  On the 2-core Zen 5 VM a half
 * chunk did as well as one to three chunks (bench_stream layers+pf), and
 * it leaves room in a 256 KiB L2. */
#define EM_MATMUL_PREFETCH_BYTES (128 * 1024)

/* The work a chunk of em_matmul_pair_step hands on: weight rows (output
 * columns) [j0, j0 + nw) of both products, over every activation row. */
typedef void (*em_matmul_chunk_fn)(void *ctx, int64_t j0, int64_t nw);

/* Two products with as many weight rows each (a gated FFN's gate and up)
 * over the same n_rows, cut into chunks of the same weight rows, a
 * multiple of `align`: the thread that claims a chunk computes it in both
 * products, then calls done(ctx, j0, nw) on those columns while they are
 * in its cache.  Each column is computed by the same kernel over the same
 * activations as in em_matmul_step, so the products are the same bits. */
void em_matmul_pair_step(em_threadpool *tp, int ith, const em_matmul_job *a, const em_matmul_job *b, int64_t n_rows,
                         int64_t align, em_matmul_chunk_fn done, void *ctx);

/* Like em_matmul_step for any number of products, each over its own
 * number of activation rows n_rows[i] (the experts of a mixture-of-experts
 * layer, each over the tokens routed to it); products with no rows cost
 * nothing, so only the weights of experts in use are read. */
void em_matmul_group_step(em_threadpool *tp, int ith, const em_matmul_job *jobs, const int64_t *n_rows, int n_jobs);

/* em_quantize_activations with the rows shared out. */
void em_quantize_step(em_threadpool *tp, int ith, em_type t, const float *x, int64_t n_rows, int64_t k,
                      void *qbuf);

/* SIMD versions of per-row work (arch/x86/rows_avx2.c; need AVX2, FMA
 * and F16C): em_swiglu, and n floats to IEEE halves as em_fp32_to_fp16
 * rounds them. */
#if defined(__x86_64__) && defined(__GNUC__)
void em_swiglu_avx2(float *out, const float *gate, const float *up, int64_t n);
void em_f32_to_f16_avx2(uint16_t *dst, const float *src, int64_t n);
/* The same on sixteen lanes (arch/x86/rows_avx512.c; need AVX-512 F and
 * VL), with the AVX2 versions' results to the bit. */
void em_swiglu_avx512(float *out, const float *gate, const float *up, int64_t n);
void em_f32_to_f16_avx512(uint16_t *dst, const float *src, int64_t n);
#endif

#endif
