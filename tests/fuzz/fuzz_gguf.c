/*
 * fuzz_gguf.c - libFuzzer target for the GGUF reader (and, on files the
 * reader accepts, the writer).
 *
 * Each input is opened with em_gguf_open_memory.  A rejected input must
 * leave a one-line error.  An accepted one is walked in full: every key is
 * formatted and read through every typed getter and array accessor, and
 * the first and last byte of every tensor's data is touched, so that any
 * pointer the reader hands out that is not inside the input shows up
 * under AddressSanitizer (libFuzzer's buffer is exactly the input's size).
 * Finally the file is copied through the writer and the copy must open
 * again with the same keys and tensors.
 */
#include "gguf/gguf.h"

#include <stdio.h>
#include <stdlib.h>

/* Reports a broken invariant as a crash, which is what libFuzzer looks for. */
#define FUZZ_ASSERT(cond)                                                      \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_gguf: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                           \
        }                                                                      \
    } while (0)

static volatile uint8_t sink;

static void touch(const void *p, uint64_t n) {
    if (n == 0) return;
    sink ^= ((const uint8_t *)p)[0];
    sink ^= ((const uint8_t *)p)[n - 1];
}

/* Walks an array view: touches fixed-size data, decodes a few nested
 * elements (these accessors walk from the start, so only a few). */
static void walk_arr(const em_gguf_arr *a, int depth) {
    FUZZ_ASSERT(depth <= EM_GGUF_MAX_DEPTH);
    size_t es = em_gguf_type_size(a->elem_type);
    if (es) {
        touch(a->data, a->n * es);
        return;
    }
    uint64_t shown = a->n < 4 ? a->n : 4;
    for (uint64_t i = 0; i < shown; i++) {
        if (a->elem_type == EM_GGUF_STRING) {
            em_gguf_str s;
            FUZZ_ASSERT(em_gguf_arr_get_str(a, i, &s) == EM_OK);
            touch(s.ptr, s.len);
        } else {
            em_gguf_arr sub;
            FUZZ_ASSERT(em_gguf_arr_get_arr(a, i, &sub) == EM_OK);
            walk_arr(&sub, depth + 1);
        }
    }
    em_gguf_str s;
    FUZZ_ASSERT(em_gguf_arr_get_str(a, a->n, &s) != EM_OK); /* past the end */
}

static void walk_key(const em_gguf *g, int64_t i) {
    char text[256], big[4096];
    size_t n = em_gguf_kv_format(g, i, text, sizeof text, 4);
    FUZZ_ASSERT(n < sizeof text && text[n] == '\0');
    n = em_gguf_kv_format(g, i, big, sizeof big, -1);
    FUZZ_ASSERT(n < sizeof big && big[n] == '\0');
    em_gguf_kv_format(g, i, text, 1, 4);
    FUZZ_ASSERT(text[0] == '\0');
    touch(em_gguf_kv_raw(g, i), em_gguf_kv_raw_size(g, i));

    /* The getters take C strings; keys with a NUL cannot be named. */
    em_gguf_str k = em_gguf_key(g, i);
    touch(k.ptr, k.len);
    if (k.len > 200 || memchr(k.ptr, 0, k.len)) return;
    char key[201];
    memcpy(key, k.ptr, k.len);
    key[k.len] = '\0';
    FUZZ_ASSERT(em_gguf_find_key(g, key) == i);
    int64_t v;
    uint32_t u;
    float f;
    bool b;
    em_gguf_str s;
    em_gguf_get_i64(g, key, &v);
    em_gguf_get_u32(g, key, &u);
    em_gguf_get_f32(g, key, &f);
    em_gguf_get_bool(g, key, &b);
    if (em_gguf_get_str(g, key, &s) == EM_OK) touch(s.ptr, s.len);

    em_gguf_arr a;
    if (em_gguf_kv_arr_view(g, i, &a) != EM_OK) return;
    walk_arr(&a, 1);
    if (a.n == 0) return;
    if (a.elem_type == EM_GGUF_STRING) {
        FUZZ_ASSERT(em_gguf_arr_str(g, key, a.n - 1, &s) == EM_OK);
        touch(s.ptr, s.len);
    } else if (a.elem_type == EM_GGUF_ARRAY) {
        em_gguf_arr last;
        FUZZ_ASSERT(em_gguf_arr_nested(g, key, a.n - 1, &last) == EM_OK);
        walk_arr(&last, 2);
    }
}

/* Copies g through the writer; when every part copies, the result must
 * open and hold the same keys and tensors. */
static void rewrite(const em_gguf *g) {
    em_gguf_writer *w;
    if (em_gguf_writer_init(&w) != EM_OK) return;
    bool ok = em_gguf_copy_kv(w, g) == EM_OK;
    for (int64_t i = 0; ok && i < em_gguf_n_tensors(g); i++) {
        const em_gguf_tensor *t = em_gguf_tensor_at(g, i);
        char name[80];
        if (t->name.len >= sizeof name || memchr(t->name.ptr, 0, t->name.len)) {
            ok = false;
            break;
        }
        memcpy(name, t->name.ptr, t->name.len);
        name[t->name.len] = '\0';
        ok = em_gguf_add_tensor(w, name, t->type, t->n_dims, t->ne, t->data) == EM_OK;
    }
    void *out = NULL;
    size_t n = 0;
    if (ok && em_gguf_write_memory(w, &out, &n) == EM_OK) {
        em_gguf *g2;
        em_status st = em_gguf_open_memory(&g2, out, n);
        if (st != EM_OK) fprintf(stderr, "fuzz_gguf: rewrite rejected: %s\n", em_last_error());
        FUZZ_ASSERT(st == EM_OK);
        FUZZ_ASSERT(em_gguf_n_kv(g2) == em_gguf_n_kv(g));
        FUZZ_ASSERT(em_gguf_n_tensors(g2) == em_gguf_n_tensors(g));
        for (int64_t i = 0; i < em_gguf_n_tensors(g); i++) {
            const em_gguf_tensor *a = em_gguf_tensor_at(g, i), *b = em_gguf_tensor_at(g2, i);
            FUZZ_ASSERT(a->size == b->size && memcmp(a->data, b->data, (size_t)a->size) == 0);
        }
        em_gguf_close(g2);
    }
    free(out);
    em_gguf_writer_free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    em_gguf *g;
    if (em_gguf_open_memory(&g, data, size) != EM_OK) {
        const char *msg = em_last_error();
        FUZZ_ASSERT(strncmp(msg, "gguf: ", 6) == 0);
        FUZZ_ASSERT(strchr(msg, '\n') == NULL);
        return 0;
    }
    FUZZ_ASSERT(em_gguf_version(g) == 2 || em_gguf_version(g) == 3);
    uint32_t align = em_gguf_alignment(g);
    FUZZ_ASSERT(align && (align & (align - 1)) == 0);
    for (int64_t i = 0; i < em_gguf_n_kv(g); i++) walk_key(g, i);
    for (int64_t i = 0; i < em_gguf_n_tensors(g); i++) {
        const em_gguf_tensor *t = em_gguf_tensor_at(g, i);
        FUZZ_ASSERT(t->size > 0 && t->offset % align == 0);
        FUZZ_ASSERT((const uint8_t *)t->data >= data &&
                    (const uint8_t *)t->data + t->size <= data + size);
        touch(t->data, t->size);
        touch(t->name.ptr, t->name.len);
    }
    rewrite(g);
    em_gguf_close(g);
    return 0;
}
