/*
 * dot_x86.h - the x86-64 SIMD dot-product kernels (dot_avx2.c) that
 * em_vec_dot dispatches to after a runtime CPU check.  Each has the same
 * contract as em_vec_dot_generic for its weight type: n is a positive
 * multiple of the block size, w a weight row, a a row of the type's
 * vec_dot_type.
 */
#ifndef EM_QUANT_DOT_X86_H
#define EM_QUANT_DOT_X86_H

#include <stdint.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define EM_HAVE_X86_KERNELS 1

/* Needs AVX2, FMA and F16C. */
float em_vec_dot_f32_avx2(int64_t n, const void *w, const void *a);
float em_vec_dot_f16_avx2(int64_t n, const void *w, const void *a);
float em_vec_dot_q4_0_avx2(int64_t n, const void *w, const void *a);
float em_vec_dot_q8_0_avx2(int64_t n, const void *w, const void *a);
float em_vec_dot_q4_k_avx2(int64_t n, const void *w, const void *a);
float em_vec_dot_q6_k_avx2(int64_t n, const void *w, const void *a);
#endif

#endif /* EM_QUANT_DOT_X86_H */
