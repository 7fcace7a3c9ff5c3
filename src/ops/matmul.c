/*
 * matmul.c - weight matrices times batches of activation rows, shared out
 * over the thread pool.
 *
 * Activations are quantized once per row into the weight's vec_dot_type
 * (also split over the threads), and one step may hold several products
 * over the same rows (Q, K and V; gate and up).  The weight rows of all
 * of a step's products are cut into chunks that the threads claim from
 * the pool (em_threadpool_next): each thread streams through its own
 * contiguous share first, each weight row is read from memory by exactly
 * one thread, and a thread slowed down by other work on the machine just
 * ends up with fewer chunks.  A chunk is handed to the GEMM kernel
 * whole (em_gemm), which reuses each loaded weight block across all
 * activation rows; with one activation row it is a matrix-vector product
 * streaming the chunk's rows at memory speed.
 */
#include "ops/ops.h"
#include "quant/gemm.h"
#include "quant/pack.h"
#include "quant/quant.h"

size_t em_activation_row_size(em_type t, int64_t k) {
    const em_type_traits *tr = em_get_type_traits(t);
    return em_row_size(tr->vec_dot_type, k);
}

/* Rows [r0, r1) of x quantized into qbuf. */
static void quantize_rows(em_type t, const float *x, int64_t r0, int64_t r1, int64_t k, void *qbuf) {
    const em_type_traits *tr = em_get_type_traits(t);
    size_t rb = em_row_size(tr->vec_dot_type, k);
    for (int64_t r = r0; r < r1; r++) {
        char *dst = (char *)qbuf + (size_t)r * rb;
        if (tr->vec_dot_type == EM_TYPE_F32)
            memcpy(dst, x + r * k, (size_t)k * sizeof(float));
        else
            em_quantize_row(tr->vec_dot_type, x + r * k, dst, k, NULL);
    }
}

void em_quantize_activations(em_type t, const float *x, int64_t n_rows, int64_t k, void *qbuf) {
    quantize_rows(t, x, 0, n_rows, k, qbuf);
}

void em_quantize_step(em_threadpool *tp, int ith, em_type t, const float *x, int64_t n_rows, int64_t k,
                      void *qbuf) {
    for (int64_t r; (r = em_threadpool_next(tp, ith, n_rows)) >= 0;) quantize_rows(t, x, r, r + 1, k, qbuf);
}

/* Rows [j0, j0 + nw) of W times the activation rows: the packed kernel
 * for a packed matrix (chunks start on a group, since every chunk is a
 * multiple of 16 rows, and packed matrices have whole groups only). */
static void weight_product(const em_tensor *W, int64_t j0, int64_t nw, const void *x, size_t x_stride,
                           int64_t n_rows, float *out, int64_t out_stride) {
    const char *w = (const char *)W->data + (size_t)j0 * W->row_bytes;
    if (W->pack)
        em_gemm_packed(W->type, W->ne[0], w, W->row_bytes, nw, x, x_stride, n_rows, out, out_stride);
    else
        em_gemm(W->type, W->ne[0], w, W->row_bytes, nw, x, x_stride, n_rows, out, out_stride);
}

/* Weight rows per chunk, in multiples of 16 rows (every kernel's tile
 * height divides 16); for float weights (F16, BF16, F32) with several
 * activation rows, in multiples of 32, the AVX-512 panel width
 * (gemm_float_avx512.c): a chunk of 16 or 48 rows leaves a half panel,
 * whose multiply-adds run on 16 zero-filled weight columns, so 768-row
 * matrices cut into 48-row chunks ran a third of their work at half speed
 * (and 256-row K and V cut into 16-row chunks all of it).  With many
 * activation rows (prompts): about eight chunks per thread and product,
 * so that uneven progress evens out.  With one (generation) or a few (up
 * to EM_CHUNK_BYTES_ROWS: a serving engine's decode steps, one row per
 * sequence), where a step is mostly a stream of weights at the memory's
 * pace,
 * chunks of EM_CHUNK_MIN_BYTES to EM_CHUNK_MAX_BYTES, about sixteen per
 * thread: the threads part at the barrier by up to one chunk, which for
 * eight chunks per thread of a large matrix was 0.5-1.4 MB, tens of
 * microseconds at each of five barriers per layer; and each chunk is a
 * kernel call that prepares its activation side and starts its prefetch
 * afresh, which a chunk of a small matrix (16 rows of a 256-row K or V
 * are 18 KiB of Q4_0) does not repay.  For a 16-row decode step the
 * eight-per-thread rule gave the output matrix (32000 rows) chunks of
 * 2000 rows, about 120 us of work each, by which the threads then parted
 * at the step's end, and a short prefetch stream of 3 groups per chunk of
 * Q or Wo; chunks by bytes fix both. */
#define EM_CHUNK_MIN_BYTES (64 * 1024)
#define EM_CHUNK_MAX_BYTES (256 * 1024)
#define EM_CHUNK_BYTES_ROWS 32 /* activation rows up to which chunks go by bytes */
static int64_t chunk_rows(em_type t, int64_t n_out, size_t row_bytes, int nth, int64_t n_rows) {
    int64_t per;
    if (n_rows <= EM_CHUNK_BYTES_ROWS && row_bytes > 0) {
        size_t target = (size_t)n_out * row_bytes / (16 * (size_t)nth);
        target = EM_MIN(EM_MAX(target, (size_t)EM_CHUNK_MIN_BYTES), (size_t)EM_CHUNK_MAX_BYTES);
        per = (int64_t)((target + row_bytes - 1) / row_bytes);
    } else {
        per = (n_out + 8 * nth - 1) / (8 * nth);
    }
    const bool is_float = t == EM_TYPE_F16 || t == EM_TYPE_BF16 || t == EM_TYPE_F32;
    const int64_t align = n_rows > 1 && is_float ? 32 : 16;
    per = (per + align - 1) / align * align;
    return per < align ? align : per;
}

void em_matmul_step(em_threadpool *tp, int ith, const em_matmul_job *jobs, int n_jobs, int64_t n_rows) {
    const int nth = em_threadpool_size(tp);
    int64_t first[EM_MATMUL_MAX_JOBS + 1] = {0}; /* first chunk number of each job */
    int64_t rows[EM_MATMUL_MAX_JOBS] = {0};      /* weight rows per chunk of each job */
    if (n_jobs > EM_MATMUL_MAX_JOBS) n_jobs = EM_MATMUL_MAX_JOBS;
    for (int i = 0; i < n_jobs; i++) {
        const int64_t n_out = jobs[i].W->ne[1];
        rows[i] = chunk_rows(jobs[i].W->type, n_out, jobs[i].W->row_bytes, nth, n_rows);
        first[i + 1] = first[i] + (n_out + rows[i] - 1) / rows[i];
    }
    em_gemm_step_begin();
    for (int64_t c; (c = em_threadpool_next(tp, ith, first[n_jobs])) >= 0;) {
        int i = 0;
        while (c >= first[i + 1]) i++;
        const em_matmul_job *jb = &jobs[i];
        const em_tensor *W = jb->W;
        const int64_t j0 = (c - first[i]) * rows[i];
        const int64_t nw = EM_MIN(rows[i], W->ne[1] - j0);
        weight_product(W, j0, nw, jb->x, jb->x_stride, n_rows, jb->out + j0, jb->out_stride);
    }
    em_gemm_step_end();
}

void em_matmul_pair_step(em_threadpool *tp, int ith, const em_matmul_job *a, const em_matmul_job *b, int64_t n_rows,
                         int64_t align, em_matmul_chunk_fn done, void *ctx) {
    const int nth = em_threadpool_size(tp);
    const int64_t n_out = a->W->ne[1];
    /* Chunks of as many weight rows as either product cut apart would
     * have, so twice the bytes: at half of that (as many bytes as
     * before) the prompt step ran 2% slower. */
    int64_t rows = chunk_rows(a->W->type, n_out, a->W->row_bytes, nth, n_rows);
    rows = (rows + align - 1) / align * align;
    const int64_t n_chunks = (n_out + rows - 1) / rows;
    em_gemm_step_begin();
    for (int64_t c; (c = em_threadpool_next(tp, ith, n_chunks)) >= 0;) {
        const int64_t j0 = c * rows, nw = EM_MIN(rows, n_out - j0);
        weight_product(a->W, j0, nw, a->x, a->x_stride, n_rows, a->out + j0, a->out_stride);
        weight_product(b->W, j0, nw, b->x, b->x_stride, n_rows, b->out + j0, b->out_stride);
        done(ctx, j0, nw);
    }
    em_gemm_step_end();
}

void em_matmul_first_chunk(const em_matmul_job *jobs, int n_jobs, int64_t n_rows, int ith, int nth, size_t max_bytes,
                           const void **p, size_t *bytes) {
    *p = NULL;
    *bytes = 0;
    int64_t first[EM_MATMUL_MAX_JOBS + 1] = {0};
    int64_t rows[EM_MATMUL_MAX_JOBS] = {0};
    if (n_jobs > EM_MATMUL_MAX_JOBS) n_jobs = EM_MATMUL_MAX_JOBS;
    for (int i = 0; i < n_jobs; i++) {
        const int64_t n_out = jobs[i].W->ne[1];
        rows[i] = chunk_rows(jobs[i].W->type, n_out, jobs[i].W->row_bytes, nth, n_rows);
        first[i + 1] = first[i] + (n_out + rows[i] - 1) / rows[i];
    }
    /* The front of the thread's share (em_threadpool_next), if it has one. */
    const int64_t n = first[n_jobs], c = n * ith / nth;
    if (n_jobs == 0 || c >= n * (ith + 1) / nth) return;
    int i = 0;
    while (c >= first[i + 1]) i++;
    const em_tensor *W = jobs[i].W;
    const int64_t j0 = (c - first[i]) * rows[i];
    *p = (const char *)W->data + (size_t)j0 * W->row_bytes;
    *bytes = EM_MIN((size_t)EM_MIN(rows[i], W->ne[1] - j0) * W->row_bytes, max_bytes);
}

void em_matmul_group_step(em_threadpool *tp, int ith, const em_matmul_job *jobs, const int64_t *n_rows, int n_jobs) {
    const int nth = em_threadpool_size(tp);
    int64_t total = 0;
    for (int i = 0; i < n_jobs; i++)
        if (n_rows[i] > 0) {
            const int64_t rows = chunk_rows(jobs[i].W->type, jobs[i].W->ne[1], jobs[i].W->row_bytes, nth, n_rows[i]);
            total += (jobs[i].W->ne[1] + rows - 1) / rows;
        }
    em_gemm_step_begin();
    for (int64_t c; (c = em_threadpool_next(tp, ith, total)) >= 0;) {
        /* Find chunk c's product: a linear walk, cheap next to the chunk. */
        int i = 0;
        int64_t rows = 0;
        for (;; i++) {
            if (n_rows[i] <= 0) continue;
            rows = chunk_rows(jobs[i].W->type, jobs[i].W->ne[1], jobs[i].W->row_bytes, nth, n_rows[i]);
            const int64_t nc = (jobs[i].W->ne[1] + rows - 1) / rows;
            if (c < nc) break;
            c -= nc;
        }
        const em_matmul_job *jb = &jobs[i];
        const em_tensor *W = jb->W;
        const int64_t j0 = c * rows;
        const int64_t nw = EM_MIN(rows, W->ne[1] - j0);
        weight_product(W, j0, nw, jb->x, jb->x_stride, n_rows[i], jb->out + j0, jb->out_stride);
    }
    em_gemm_step_end();
}

typedef struct matmul_region {
    em_threadpool *tp;
    const em_tensor *W;
    const float *x;
    void *qbuf;
    bool quantize;
    em_matmul_job job;
    int64_t n_rows;
} matmul_region;

static void matmul_worker(void *arg, int ith, int nth) {
    matmul_region *m = arg;
    (void)nth;
    if (m->quantize) {
        em_quantize_step(m->tp, ith, m->W->type, m->x, m->n_rows, m->W->ne[0], m->qbuf);
        em_threadpool_barrier(m->tp);
    }
    em_matmul_step(m->tp, ith, &m->job, 1, m->n_rows);
}

void em_matmul(em_threadpool *tp, float *out, int64_t out_stride, const em_tensor *W, const float *x,
               int64_t n_rows, void *qbuf, bool prequantized) {
    const int64_t k = W->ne[0];
    matmul_region m = {
        .tp = tp,
        .W = W,
        .x = x,
        .qbuf = qbuf,
        .quantize = !prequantized,
        .job = {.W = W, .x = qbuf, .x_stride = em_activation_row_size(W->type, k), .out = out,
                .out_stride = out_stride},
        .n_rows = n_rows,
    };
    em_threadpool_run(tp, matmul_worker, &m);
}
