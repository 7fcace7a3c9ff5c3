/*
 * gemm_float_walk.h - the order in which the float panel kernels
 * (gemm_float_avx512.c, gemm_float_avx2.c) visit their weight slices.
 *
 * Columns are taken nc (a few panels of nr weight rows) at a time, and
 * within such a block slice by slice of kc elements of k, so that one
 * slice of all activation rows stays in L2 while every panel of the block
 * passes over it.  Both kernel sets walk the same way with their own block
 * constants, which they pass in.
 */
#ifndef EM_QUANT_GEMM_FLOAT_WALK_H
#define EM_QUANT_GEMM_FLOAT_WALK_H

#include <stdbool.h>
#include <stdint.h>

/* The slice after (j0, e0) in that order: the panels of a block of nc
 * columns, for each slice of kc elements of k in turn, then the next
 * block.  nc is a multiple of nr.  Returns false after the last. */
static inline bool em_fp_next_slice(int64_t nc, int64_t nr, int64_t kc, int64_t k, int64_t nw, int64_t *j0,
                                    int64_t *e0) {
    const int64_t jb = *j0 / nc * nc, jb_end = jb + nc < nw ? jb + nc : nw;
    if (*j0 + nr < jb_end) {
        *j0 += nr;
    } else if (*e0 + kc < k) {
        *j0 = jb;
        *e0 += kc;
    } else {
        *j0 = jb_end;
        *e0 = 0;
    }
    return *j0 < nw;
}

#endif
