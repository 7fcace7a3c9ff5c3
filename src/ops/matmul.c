/*
 * matmul.c - weight matrix times a batch of activation rows.
 *
 * Activations are quantized once per row into the weight's vec_dot_type,
 * then every (weight row, activation row) pair is one em_vec_dot.  Threads
 * split the weight rows; each thread walks its rows in small tiles and, for
 * each tile, visits every activation row, so a tile of weights is loaded
 * from memory once per batch rather than once per token.
 */
#include "ops/ops.h"
#include "quant/quant.h"

#define EM_MATMUL_TILE 16 /* weight rows kept hot across activation rows */

size_t em_activation_row_size(em_type t, int64_t k) {
    const em_type_traits *tr = em_get_type_traits(t);
    return em_row_size(tr->vec_dot_type, k);
}

void em_quantize_activations(em_type t, const float *x, int64_t n_rows, int64_t k, void *qbuf) {
    const em_type_traits *tr = em_get_type_traits(t);
    size_t rb = em_row_size(tr->vec_dot_type, k);
    for (int64_t r = 0; r < n_rows; r++) {
        char *dst = (char *)qbuf + (size_t)r * rb;
        if (tr->vec_dot_type == EM_TYPE_F32)
            memcpy(dst, x + r * k, (size_t)k * sizeof(float));
        else
            em_quantize_row(tr->vec_dot_type, x + r * k, dst, k, NULL);
    }
}

typedef struct matmul_task {
    float *out;
    int64_t out_stride;
    const em_tensor *W;
    const void *qx;     /* [n_rows] quantized activation rows */
    size_t qx_row;      /* bytes per quantized row            */
    int64_t n_rows;
} matmul_task;

static void matmul_worker(void *arg, int ith, int nth) {
    const matmul_task *t = arg;
    const em_tensor *W = t->W;
    int64_t n_out = W->ne[1], k = W->ne[0];
    /* Split in whole tiles so that threads never share a cache line of out
     * more than necessary. */
    int64_t n_tiles = (n_out + EM_MATMUL_TILE - 1) / EM_MATMUL_TILE;
    int64_t t0 = n_tiles * ith / nth, t1 = n_tiles * (ith + 1) / nth;
    for (int64_t tile = t0; tile < t1; tile++) {
        int64_t j0 = tile * EM_MATMUL_TILE;
        int64_t j1 = EM_MIN(j0 + EM_MATMUL_TILE, n_out);
        for (int64_t r = 0; r < t->n_rows; r++) {
            const void *xr = (const char *)t->qx + (size_t)r * t->qx_row;
            float *o = t->out + r * t->out_stride;
            for (int64_t j = j0; j < j1; j++) {
                const void *wr = (const char *)W->data + (size_t)j * W->row_bytes;
                o[j] = em_vec_dot(W->type, k, wr, xr);
            }
        }
    }
}

void em_matmul(em_threadpool *tp, float *out, int64_t out_stride, const em_tensor *W,
               const float *x, int64_t n_rows, void *qbuf, bool prequantized) {
    int64_t k = W->ne[0];
    if (!prequantized) em_quantize_activations(W->type, x, n_rows, k, qbuf);
    matmul_task t = {
        .out = out,
        .out_stride = out_stride,
        .W = W,
        .qx = qbuf,
        .qx_row = em_activation_row_size(W->type, k),
        .n_rows = n_rows,
    };
    em_threadpool_run(tp, matmul_worker, &t);
}
