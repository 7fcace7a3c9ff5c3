/*
 * gemm.h - matrix products of a block of weight rows with a block of
 * activation rows: the inner loop of every matmul of the forward pass.
 *
 * A GEMM kernel computes, for weight rows j < nw and activation rows
 * r < na,
 *     out[r * out_stride + j] = dot(w row j, a row r)
 * where each weight row holds k elements of type t and each activation
 * row is the same k elements quantized to t's vec_dot_type (see quant.h).
 * The SIMD kernels work on register tiles: a few weight rows times a few
 * activation rows, with each weight block loaded and unpacked once and
 * then multiplied with every activation row of the tile, so that the cost
 * of unpacking and of memory traffic is shared by the whole tile.  With a
 * single activation row (generation) the same code is a matrix-vector
 * product that streams weight rows at the memory bandwidth.
 *
 * Results equal the scalar reference (em_vec_dot_generic) up to the order
 * of float additions: integer parts of quantized dots are exact in both.
 *
 * Kernel sets are chosen once, at start-up, with the other kernel tables
 * (dispatch.c, em_kernels_init) from the CPU's features (core/cpu.h):
 * "avx512" (AVX-512 F/BW/VL with VNNI), "avx2" (AVX2, FMA, F16C) or
 * "generic" (a loop of em_vec_dot, for every type).  The environment
 * variable EMBER_CPU=generic forces the generic set, EMBER_CPU=avx2 caps
 * the choice at AVX2.
 */
#ifndef EM_QUANT_GEMM_H
#define EM_QUANT_GEMM_H

#include "core/core.h"
#include "core/cpu.h"

/* A kernel for one weight type; see the contract above.  k is a positive
 * multiple of the block size, nw, na >= 0, out_stride >= nw. */
typedef void (*em_gemm_fn)(int64_t k, const void *w, size_t w_stride, int64_t nw, const void *a,
                           size_t a_stride, int64_t na, float *out, int64_t out_stride);

/* The dispatching product: the selected set's kernel, or
 * em_gemm_generic for types without one. */
void em_gemm(em_type t, int64_t k, const void *w, size_t w_stride, int64_t nw, const void *a,
             size_t a_stride, int64_t na, float *out, int64_t out_stride);

/* The fallback every type has: each pair is one em_vec_dot. */
void em_gemm_generic(em_type t, int64_t k, const void *w, size_t w_stride, int64_t nw, const void *a,
                     size_t a_stride, int64_t na, float *out, int64_t out_stride);

/* The selected set's kernel for t, or NULL when t has none. */
em_gemm_fn em_gemm_kernel(em_type t);

/* The selected kernel set: "avx512", "avx2" or "generic" (tests and
 * benchmarks switch it with em_kernels_select, quant.h). */
const char *em_gemm_isa(void);

#if defined(__x86_64__) && defined(__GNUC__)
#define EM_HAVE_X86_GEMM 1
/* arch/x86/gemm_float_avx512.c and gemm_float_avx2.c: products of F32,
 * F16 or BF16 weights with F32 activation rows over weight panels
 * converted to F32 once per call; the float entries below hand them every
 * call of two or more activation rows.  Same contract as em_gemm_fn. */
#define EM_FLOAT_F32 0
#define EM_FLOAT_F16 1
#define EM_FLOAT_BF16 2
void em_gemm_f32_panels_avx512(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_f16_panels_avx512(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_bf16_panels_avx512(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_f32_panels_avx2(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_f16_panels_avx2(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_bf16_panels_avx2(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
/* arch/x86/gemm_avx2.c: the AVX2 set (needs AVX2, FMA, F16C) ... */
void em_gemm_f32_avx2(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_f16_avx2(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_bf16_avx2(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_q8_0_avx2(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_q4_0_avx2(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_q4_k_avx2(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_q5_k_avx2(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_q6_k_avx2(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
/* ... and the AVX-512 set (needs EM_CPU_AVX512 and EM_CPU_AVX512_VNNI as
 * well). */
void em_gemm_f32_avx512(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_f16_avx512(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_bf16_avx512(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_q8_0_avx512(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_q4_0_avx512(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_q4_k_avx512(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_q5_k_avx512(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_q6_k_avx512(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
/* arch/x86/gemv_q6k_avx512.c: the Q6_K matrix-vector product (one Q8_K
 * activation row a, out[j] for j < nw), which em_gemm_q6_k_avx512 uses
 * when na == 1.  Needs EM_CPU_AVX512 and EM_CPU_AVX512_VNNI. */
void em_gemv_q6_k_avx512(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, float *out);
/* arch/x86/gemv_q4k_avx512.c: the same for Q4_K and Q5_K, which
 * em_gemm_q4_k_avx512 and em_gemm_q5_k_avx512 use when na == 1. */
void em_gemv_q4_k_avx512(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, float *out);
void em_gemv_q5_k_avx512(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, float *out);
/* arch/x86/gemv_avx2.c: the AVX2 matrix-vector products (one activation
 * row a of the type's vec_dot_type, out[j] for j < nw), which the AVX2
 * entries above use when na == 1 (Q5_K keeps its tile kernel, which
 * measured faster): Q4_0 and Q8_0 for k up to
 * EM_GEMV_AVX2_MAX_K (their per-call activation records live on the
 * stack), the others for any k.  Need EM_CPU_AVX2. */
#define EM_GEMV_AVX2_MAX_K 16384
void em_gemv_q4_0_avx2(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, float *out);
void em_gemv_q8_0_avx2(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, float *out);
void em_gemv_q4_k_avx2(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, float *out);
void em_gemv_q6_k_avx2(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, float *out);
void em_gemv_f32_avx2(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, float *out);
void em_gemv_f16_avx2(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, float *out);
void em_gemv_bf16_avx2(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, float *out);
#endif

#endif /* EM_QUANT_GEMM_H */
