/*
 * dot.h - the one definition of a dot-product kernel, shared by the
 * dispatcher (dispatch.c) and every architecture's kernel set
 * (arch/x86/, arch/arm/).
 *
 * A kernel computes what em_vec_dot_generic computes for one weight type:
 * n is a positive multiple of the type's block size, w a row of that type
 * and a a row of its vec_dot_type (see quant.h).  Kernel tables are arrays
 * of EM_TYPE_COUNT pointers indexed by em_type; NULL means "no kernel,
 * use the scalar reference".
 */
#ifndef EM_QUANT_DOT_H
#define EM_QUANT_DOT_H

#include "core/core.h"

#include <stdint.h>

typedef float (*em_dot_fn)(int64_t n, const void *w, const void *a);

/* Activation quantizer: n floats (a multiple of the block) to one row of
 * the target type (Q8_0, Q8_1 or Q8_K); same contract as the scalar code
 * in quantize.c, and bit-identical output. */
typedef void (*em_quant_fn)(const float *src, void *dst, int64_t n);

/* Used by em_quantize_row (after it validated its arguments): quantizes
 * with the selected set's SIMD quantizer for t and returns true, or
 * returns false when there is none (the caller then runs the scalar code). */
bool em_quantize_row_simd(em_type t, const float *src, void *dst, int64_t n);

#endif /* EM_QUANT_DOT_H */
