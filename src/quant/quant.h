/*
 * quant.h - tensor element formats: sizes, dequantization, quantization
 * and the scalar dot-product kernels every SIMD kernel is tested against.
 *
 * Matmul convention: a weight row of type T is dotted with an activation
 * row that has first been quantized to em_type_traits(T)->vec_dot_type
 * (Q8_0 for Q4_0/Q5_0/Q8_0/IQ4_NL, Q8_1 for Q4_1/Q5_1, Q8_K for the
 * K-quants and IQ4_XS, F32 for F32/F16/BF16).
 */
#ifndef EM_QUANT_H
#define EM_QUANT_H

#include "core/core.h"

typedef struct em_type_traits {
    const char *name;     /* "Q4_K"                                        */
    int64_t block_size;   /* elements per block (1 for float types)        */
    size_t type_size;     /* bytes per block                               */
    bool is_quantized;
    bool can_dequant;     /* ember can read this type                      */
    bool can_quantize;    /* ember can write this type                     */
    em_type vec_dot_type; /* activation format for em_vec_dot              */
} em_type_traits;

/* NULL for ids outside the enum or holes in it. */
const em_type_traits *em_get_type_traits(em_type t);

/* Bytes of a row of n elements; 0 if n is not a multiple of the block. */
size_t em_row_size(em_type t, int64_t n);

/* Converts n elements (a multiple of the block size) to float. */
em_status em_dequantize_row(em_type t, const void *src, float *dst, int64_t n);

/* Reference quantizer: n floats (a multiple of the block size) to type t.
 * imatrix may be NULL (importance weights per column, [n]). */
em_status em_quantize_row(em_type t, const float *src, void *dst, int64_t n,
                          const float *imatrix);

/* Dot product of n elements: w is a row of type t, a a row of
 * em_get_type_traits(t)->vec_dot_type.  Scalar reference kernel. */
float em_vec_dot_generic(em_type t, int64_t n, const void *w, const void *a);

/* The dispatching dot product (SIMD where available, else generic). */
float em_vec_dot(em_type t, int64_t n, const void *w, const void *a);

/* Which kernel set em_vec_dot uses: "avx512", "avx2", "neon",
 * "neon-dotprod" or "generic"; EMBER_CPU=generic|avx2|avx512 overrides
 * (see core/cpu.h and dispatch.c). */
const char *em_vec_dot_isa(void);

/* Fills the kernel tables of em_vec_dot, em_quantize_row and em_gemm from
 * em_cpu_features(), once per process (later calls return at once).
 * em_model_load and em_context_init call it, so that the tables are fixed
 * before any context runs. */
void em_kernels_init(void);

/* For tests and benchmarks: installs kernel set isa in every table
 * ("generic", "avx2", "avx512", "neon" ..., parsed like EMBER_CPU by
 * em_cpu_parse), or the best this CPU runs when isa is NULL (EMBER_CPU is
 * not consulted then).  Returns 0, or -1 when the name is unknown or this
 * CPU or build cannot run the set, or -2 while a context exists (the
 * tables are then unchanged): a context's kernels never change under it.
 * Not thread-safe: call it only while no other thread computes. */
int em_kernels_select(const char *isa);

/* Every live context holds the kernel tables (em_context_init takes a
 * hold, em_context_free lets go), so that em_kernels_select cannot swap
 * them while one exists. */
void em_kernels_hold(void);
void em_kernels_release(void);

#endif /* EM_QUANT_H */
