/*
 * dot_x86.h - the x86-64 SIMD kernels that em_vec_dot and em_quantize_row
 * dispatch to after the runtime CPU check of src/core/cpu.c.
 *
 * Two kernel sets exist:
 *   avx2    dot_avx2.c, quant_avx2.c: AVX2 + FMA + F16C (Haswell, Zen 1
 *           and later), one kernel for every weight type ember reads and
 *           the three activation quantizers.
 *   avx512  dot_avx512.c: 512-bit AVX-512 F/BW/VL kernels for every
 *           weight type; the integer ones also need AVX512-VNNI (vpdpbusd,
 *           vpdpwssd), and without it those types keep their AVX2 kernels.
 *           The activation quantizers stay AVX2.
 *
 * Each dot kernel has the contract of em_vec_dot_generic for its weight
 * type (see dot.h): n is a positive multiple of the block size, w a weight
 * row, a a row of the type's vec_dot_type.  Each quantizer has the
 * contract of em_quant_fn and writes exactly the bytes the scalar
 * quantizer in quantize.c writes.
 */
#ifndef EM_QUANT_DOT_X86_H
#define EM_QUANT_DOT_X86_H

#include <stdbool.h>
#include <stdint.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define EM_HAVE_X86_KERNELS 1

/* ---- avx2: needs AVX2, FMA and F16C. */
float em_vec_dot_f32_avx2(int64_t n, const void *w, const void *a);
float em_vec_dot_f16_avx2(int64_t n, const void *w, const void *a);
float em_vec_dot_bf16_avx2(int64_t n, const void *w, const void *a);
float em_vec_dot_q4_0_avx2(int64_t n, const void *w, const void *a);
float em_vec_dot_q4_1_avx2(int64_t n, const void *w, const void *a);
float em_vec_dot_q5_0_avx2(int64_t n, const void *w, const void *a);
float em_vec_dot_q5_1_avx2(int64_t n, const void *w, const void *a);
float em_vec_dot_q8_0_avx2(int64_t n, const void *w, const void *a);
float em_vec_dot_iq4_nl_avx2(int64_t n, const void *w, const void *a);
float em_vec_dot_q2_k_avx2(int64_t n, const void *w, const void *a);
float em_vec_dot_q3_k_avx2(int64_t n, const void *w, const void *a);
float em_vec_dot_q4_k_avx2(int64_t n, const void *w, const void *a);
float em_vec_dot_q5_k_avx2(int64_t n, const void *w, const void *a);
float em_vec_dot_q6_k_avx2(int64_t n, const void *w, const void *a);
float em_vec_dot_iq4_xs_avx2(int64_t n, const void *w, const void *a);

void em_quantize_q8_0_avx2(const float *x, void *y, int64_t n);
void em_quantize_q8_1_avx2(const float *x, void *y, int64_t n);
void em_quantize_q8_k_avx2(const float *x, void *y, int64_t n);
void em_quantize_q8_0_avx512(const float *x, void *y, int64_t n); /* AVX-512 F/BW */

/* ---- avx512: needs avx2 plus AVX512 F, BW and VL. */
float em_vec_dot_f32_avx512(int64_t n, const void *w, const void *a);
float em_vec_dot_f16_avx512(int64_t n, const void *w, const void *a);
float em_vec_dot_bf16_avx512(int64_t n, const void *w, const void *a);

/* ---- avx512 + VNNI. */
float em_vec_dot_q4_0_avx512(int64_t n, const void *w, const void *a);
float em_vec_dot_q4_1_avx512(int64_t n, const void *w, const void *a);
float em_vec_dot_q5_0_avx512(int64_t n, const void *w, const void *a);
float em_vec_dot_q5_1_avx512(int64_t n, const void *w, const void *a);
float em_vec_dot_q8_0_avx512(int64_t n, const void *w, const void *a);
float em_vec_dot_iq4_nl_avx512(int64_t n, const void *w, const void *a);
float em_vec_dot_q4_k_avx512(int64_t n, const void *w, const void *a);
float em_vec_dot_q5_k_avx512(int64_t n, const void *w, const void *a);
float em_vec_dot_q6_k_avx512(int64_t n, const void *w, const void *a);
float em_vec_dot_q2_k_avx512(int64_t n, const void *w, const void *a);
float em_vec_dot_q3_k_avx512(int64_t n, const void *w, const void *a);
float em_vec_dot_iq4_xs_avx512(int64_t n, const void *w, const void *a);
#endif

#endif /* EM_QUANT_DOT_X86_H */
