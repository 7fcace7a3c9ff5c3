/*
 * pack.c - the x8 packed layouts of Q4_0 and Q8_0 (see pack.h): packing
 * a matrix, rebuilding one block, and the scalar twin of the packed GEMM
 * kernels.  The kernel table that em_gemm_packed dispatches through is
 * filled with the other tables in dispatch.c.
 */
#include "quant/pack.h"
#include "quant/blocks.h"
#include "quant/quant.h"

/* Bytes of quants per block of one row in the packed layout (the block
 * less its fp16 scale). */
static size_t quant_bytes(em_type t) { return t == EM_TYPE_Q4_0 ? 16 : 32; }

int em_pack_rows(em_type t) { return t == EM_TYPE_Q4_0 || t == EM_TYPE_Q8_0 ? EM_PACK_ROWS : 0; }

bool em_pack_fits(em_type t, int64_t k, int64_t nrows) {
    const int g = em_pack_rows(t);
    return g > 0 && k > 0 && k % 32 == 0 && k <= EM_PACK_MAX_K && nrows > 0 && nrows % g == 0;
}

void em_pack_matrix(em_type t, int64_t k, int64_t nrows, const void *src, void *dst) {
    const int64_t nb = k / 32;
    const size_t rs = em_row_size(t, k), qb = quant_bytes(t), bs = qb + 2;
    for (int64_t g0 = 0; g0 < nrows; g0 += EM_PACK_ROWS) {
        const uint8_t *in = (const uint8_t *)src + (size_t)g0 * rs;
        uint8_t *d = (uint8_t *)dst + (size_t)g0 * rs, *q = d + (size_t)nb * 2 * EM_PACK_ROWS;
        for (int64_t b = 0; b < nb; b++)
            for (int i = 0; i < EM_PACK_ROWS; i++) {
                const uint8_t *blk = in + (size_t)i * rs + (size_t)b * bs;
                memcpy(d + ((size_t)b * EM_PACK_ROWS + (size_t)i) * 2, blk, 2);
                memcpy(q + ((size_t)b * EM_PACK_ROWS + (size_t)i) * qb, blk + 2, qb);
            }
    }
}

void em_pack_get_block(em_type t, int64_t k, const void *grp, int i, int64_t b, void *blk) {
    const int64_t nb = k / 32;
    const size_t qb = quant_bytes(t);
    const uint8_t *d = grp, *q = d + (size_t)nb * 2 * EM_PACK_ROWS;
    memcpy(blk, d + ((size_t)b * EM_PACK_ROWS + (size_t)i) * 2, 2);
    memcpy((uint8_t *)blk + 2, q + ((size_t)b * EM_PACK_ROWS + (size_t)i) * qb, qb);
}

void em_gemm_packed_generic(em_type t, int64_t k, const void *w, size_t w_stride, int64_t nw, const void *a,
                            size_t a_stride, int64_t na, float *out, int64_t out_stride) {
    const int64_t nb = k / 32;
    const size_t as = em_row_size(EM_TYPE_Q8_0, 32); /* one activation block */
    uint8_t blk[sizeof(em_block_q8_0)];
    for (int64_t j0 = 0; j0 < nw; j0 += EM_PACK_ROWS) {
        const uint8_t *grp = (const uint8_t *)w + (size_t)j0 * w_stride;
        for (int64_t r = 0; r < na; r++) {
            const uint8_t *ar = (const uint8_t *)a + (size_t)r * a_stride;
            for (int i = 0; i < EM_PACK_ROWS && j0 + i < nw; i++) {
                /* The reference's order: one float sum over the blocks, each
                 * block's integer dot times its two scales. */
                float sum = 0;
                for (int64_t b = 0; b < nb; b++) {
                    em_pack_get_block(t, k, grp, i, b, blk);
                    sum += em_vec_dot_generic(t, 32, blk, ar + (size_t)b * as);
                }
                out[r * out_stride + j0 + i] = sum;
            }
        }
    }
}
