/*
 * gemm_generic.c - the portable GEMM (a loop of em_vec_dot).  em_gemm's
 * choice of kernel set is made with the other kernel tables in dispatch.c.
 *
 * The generic product still works tile by tile: a few weight rows are
 * dotted with every activation row before moving on, so those weight rows
 * stay in cache while the batch passes over them.  Types without a SIMD
 * GEMM kernel (Q4_1, Q5_0, Q2_K, IQ4_XS ...) take this path and still get
 * em_vec_dot's own SIMD kernels.
 */
#include "quant/gemm.h"
#include "quant/quant.h"

#define EM_GENERIC_TILE 4 /* weight rows kept hot across activation rows */

void em_gemm_generic(em_type t, int64_t k, const void *w, size_t w_stride, int64_t nw, const void *a,
                     size_t a_stride, int64_t na, float *out, int64_t out_stride) {
    for (int64_t j0 = 0; j0 < nw; j0 += EM_GENERIC_TILE) {
        int64_t j1 = EM_MIN(j0 + EM_GENERIC_TILE, nw);
        for (int64_t r = 0; r < na; r++) {
            const void *ar = (const char *)a + (size_t)r * a_stride;
            for (int64_t j = j0; j < j1; j++)
                out[r * out_stride + j] = em_vec_dot(t, k, (const char *)w + (size_t)j * w_stride, ar);
        }
    }
}
