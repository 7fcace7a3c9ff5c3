/*
 * gguf_split.c - splits a GGUF model into N parts the way llama.cpp's
 * gguf-split does, for the split-model tests (tests/cli/test_pull.sh).
 *
 *   gguf_split IN.gguf OUT_PREFIX N
 *
 * writes OUT_PREFIX-00001-of-0000N.gguf ... OUT_PREFIX-0000N-of-0000N.gguf.
 * The tensors are dealt out in file order, as evenly as their count
 * allows.  The first part carries every metadata key of the input; each
 * part carries split.no (u16, from 0), split.count (u16) and
 * split.tensors.count (i32, the tensors of all parts), as gguf-split
 * writes them.
 */
#include "gguf/gguf.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: gguf_split IN.gguf OUT_PREFIX N\n");
        return 2;
    }
    long n = strtol(argv[3], NULL, 10);
    em_gguf *in = NULL;
    if (em_gguf_open(&in, argv[1]) != EM_OK) {
        fprintf(stderr, "gguf_split: %s\n", em_last_error());
        return 1;
    }
    int64_t n_tensors = em_gguf_n_tensors(in);
    if (n < 1 || n > 99 || n > n_tensors) {
        fprintf(stderr, "gguf_split: N must be 1 to min(99, %lld tensors)\n", (long long)n_tensors);
        em_gguf_close(in);
        return 2;
    }
    int rc = 0;
    int64_t next = 0;
    for (long k = 0; k < n && !rc; k++) {
        int64_t end = n_tensors * (k + 1) / n;
        em_gguf_writer *w = NULL;
        char path[4096];
        snprintf(path, sizeof path, "%s-%05ld-of-%05ld.gguf", argv[2], k + 1, n);
        em_status st = em_gguf_writer_init(&w);
        if (!st) em_gguf_writer_set_alignment(w, em_gguf_alignment(in));
        if (!st) st = em_gguf_set_u16(w, "split.no", (uint16_t)k);
        if (!st) st = em_gguf_set_u16(w, "split.count", (uint16_t)n);
        if (!st) st = em_gguf_set_i32(w, "split.tensors.count", (int32_t)n_tensors);
        if (!st && k == 0) st = em_gguf_copy_kv(w, in);
        for (; !st && next < end; next++) {
            const em_gguf_tensor *t = em_gguf_tensor_at(in, next);
            char name[256];
            snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
            st = em_gguf_add_tensor(w, name, t->type, t->n_dims, t->ne, t->data);
        }
        if (!st) st = em_gguf_write(w, path);
        if (st) {
            fprintf(stderr, "gguf_split: %s: %s\n", path, em_last_error());
            rc = 1;
        }
        em_gguf_writer_free(w);
    }
    em_gguf_close(in);
    return rc;
}
