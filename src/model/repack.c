/*
 * repack.c - the model's packed weights (em_model_repack, model.h): the
 * matrices of the dense products copied into the row-interleaved layouts
 * of quant/pack.h at load time, for the GEMM kernels of prompt processing
 * and the matrix-vector kernels of generation alike (one copy serves
 * both).
 */
#include "model/model.h"
#include "quant/pack.h"
#include "quant/quant.h"

#include <sys/mman.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#define REPACK_SLAB 1024 /* rows packed between two releases (a multiple of every group) */

/* The matrices that only em_matmul reads: every tensor here is a whole
 * 2-D weight (or a view of whole rows of one), never the token embedding
 * (read row by row) nor stacked experts (sliced per expert). */
static int packable(em_model *m, em_tensor **out, int max) {
    int n = 0;
    for (int il = 0; il < m->hp.n_layer; il++) {
        em_layer *l = &m->layers[il];
        em_tensor *all[] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->w_gate, &l->w_up, &l->w_down};
        for (size_t i = 0; i < sizeof all / sizeof *all && n < max; i++) out[n++] = all[i];
    }
    if (m->output.data != m->tok_embd.data && n < max) out[n++] = &m->output;
    return n;
}

static bool wants_pack(const em_tensor *t) {
    return t->data && t->ne[2] == 1 && em_pack_fits(t->type, t->ne[0], t->ne[1]) &&
           em_gemm_packed_kernel(t->type) != NULL;
}

/* The whole pages inside [p, p + n) are not needed any more: dropped from
 * this process (a file mapping reads them back if touched; nothing here
 * touches them again).  A hint: locked pages, for one, stay. */
static void release(const void *p, size_t n) {
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t lo = ((uintptr_t)p + pg - 1) & ~(pg - 1), hi = ((uintptr_t)p + n) & ~(pg - 1);
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

em_status em_model_repack(em_model *m, bool lock) {
    const int max = 7 * m->hp.n_layer + 1;
    em_tensor **ts = malloc((size_t)max * sizeof *ts);
    if (!ts) return em_error(EM_ERR_NOMEM, "model: out of memory");
    const int n = packable(m, ts, max);
    size_t total = 0;
    for (int i = 0; i < n; i++)
        if (wants_pack(ts[i])) total += ((size_t)ts[i]->ne[1] * ts[i]->row_bytes + 63) & ~(size_t)63;
    if (total == 0) {
        free(ts);
        return EM_OK;
    }
    void *mem = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        free(ts);
        return em_error(EM_ERR_NOMEM, "model: no memory for the packed weights (%zu MiB); --no-repack avoids them",
                        total >> 20);
    }
#ifdef MADV_HUGEPAGE
    (void)madvise(mem, total, MADV_HUGEPAGE); /* a hint, as for the weights read into memory */
#endif
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        em_tensor *t = ts[i];
        if (!wants_pack(t)) continue;
        const size_t bytes = (size_t)t->ne[1] * t->row_bytes;
        uint8_t *dst = (uint8_t *)mem + at;
        /* A slab of rows at a time, each followed by the release of the
         * file's pages behind it, so that even the largest matrix is never
         * held twice. */
        for (int64_t r0 = 0; r0 < t->ne[1]; r0 += REPACK_SLAB) {
            const int64_t nr = EM_MIN((int64_t)REPACK_SLAB, t->ne[1] - r0);
            em_pack_matrix(t->type, t->ne[0], nr, (const uint8_t *)t->data + (size_t)r0 * t->row_bytes,
                           dst + (size_t)r0 * t->row_bytes);
            release(t->data, (size_t)(r0 + nr) * t->row_bytes);
        }
        t->data = dst;
        t->pack = em_pack_rows(t->type);
        at += (bytes + 63) & ~(size_t)63;
    }
    free(ts);
    m->packed = mem;
    m->packed_bytes = total;
    if (lock && mlock(mem, total) != 0)
        return em_error(EM_ERR_IO, "model: cannot lock the packed weights (%zu MiB) in memory: %s (see ulimit -l)",
                        total >> 20, strerror(errno));
    return EM_OK;
}
