/*
 * test_gguf_split.c - split GGUF models (em_gguf_open_parts): parts
 * written the way llama.cpp's gguf-split writes them open as one model;
 * a missing part, a part out of place, a wrong tensor count, a tensor in
 * two parts and a later part opened first are refused with a message.
 */
#include "gguf/gguf.h"
#include "test.h"

#include <unistd.h>

/* Writes part k (0-based) of n holding tensors named names[0..nt-1]. */
static void write_part(const char *prefix, int k, int n, int total, const char *const *names, int nt, int no_override) {
    em_gguf_writer *w = NULL;
    CHECK_OK(em_gguf_writer_init(&w));
    CHECK_OK(em_gguf_set_u16(w, "split.no", (uint16_t)(no_override >= 0 ? no_override : k)));
    CHECK_OK(em_gguf_set_u16(w, "split.count", (uint16_t)n));
    CHECK_OK(em_gguf_set_i32(w, "split.tensors.count", total));
    if (k == 0) CHECK_OK(em_gguf_set_str(w, "general.architecture", "llama"));
    float data[4] = {(float)k, 1, 2, 3};
    int64_t ne[1] = {4};
    for (int i = 0; i < nt; i++) CHECK_OK(em_gguf_add_tensor(w, names[i], EM_TYPE_F32, 1, ne, data));
    char path[512];
    snprintf(path, sizeof path, "%s-%05d-of-%05d.gguf", prefix, k + 1, n);
    CHECK_OK(em_gguf_write(w, path));
    em_gguf_writer_free(w);
}

static em_status open_split(const char *prefix, int n, em_gguf **out) {
    char path[512];
    snprintf(path, sizeof path, "%s-%05d-of-%05d.gguf", prefix, 1, n);
    em_status st = em_gguf_open(out, path);
    if (st) return st;
    st = em_gguf_open_parts(*out, path, true);
    if (st) {
        em_gguf_close(*out);
        *out = NULL;
    }
    return st;
}

int main(void) {
    char dir[] = "/tmp/ember-test-split-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%s/m", dir);
    const char *a[] = {"a.weight", "b.weight"}, *b[] = {"c.weight"}, *c[] = {"d.weight", "e.weight"};

    /* Three good parts. */
    write_part(prefix, 0, 3, 5, a, 2, -1);
    write_part(prefix, 1, 3, 5, b, 1, -1);
    write_part(prefix, 2, 3, 5, c, 2, -1);
    em_gguf *g = NULL;
    CHECK_OK(open_split(prefix, 3, &g));
    if (g) {
        CHECK(em_gguf_n_tensors(g) == 5);
        const em_gguf_tensor *t = em_gguf_find_tensor(g, "e.weight");
        CHECK(t && t->ne[0] == 4);
        float v = -1;
        if (t) memcpy(&v, t->data, sizeof v);
        CHECK(v == 2.0f); /* its data comes from part 3 */
        em_gguf_str s;
        CHECK_OK(em_gguf_get_str(g, "general.architecture", &s));
        CHECK(em_gguf_open_parts(g, "x-00001-of-00003.gguf", true) == EM_ERR_INVALID_ARG); /* twice */
        em_gguf_close(g);
    }
    /* A later part opened first. */
    char path[512];
    snprintf(path, sizeof path, "%s-00002-of-00003.gguf", prefix);
    CHECK_OK(em_gguf_open(&g, path));
    CHECK(em_gguf_open_parts(g, path, true) == EM_ERR_INVALID_ARG);
    em_gguf_close(g);
    /* A wrong total. */
    write_part(prefix, 0, 3, 6, a, 2, -1);
    CHECK(open_split(prefix, 3, &g) == EM_ERR_FORMAT);
    write_part(prefix, 0, 3, 5, a, 2, -1);
    /* A part that says it is another. */
    write_part(prefix, 2, 3, 5, c, 2, 1);
    CHECK(open_split(prefix, 3, &g) == EM_ERR_FORMAT);
    /* A tensor in two parts. */
    write_part(prefix, 2, 3, 5, a, 2, -1);
    CHECK(open_split(prefix, 3, &g) == EM_ERR_FORMAT);
    /* A missing part. */
    snprintf(path, sizeof path, "%s-00003-of-00003.gguf", prefix);
    unlink(path);
    CHECK(open_split(prefix, 3, &g) == EM_ERR_IO);
    CHECK(strstr(em_last_error(), "part 3 of 3") != NULL);
    /* A file that is not split is left alone. */
    em_gguf_writer *w = NULL;
    CHECK_OK(em_gguf_writer_init(&w));
    snprintf(path, sizeof path, "%s/plain.gguf", dir);
    CHECK_OK(em_gguf_write(w, path));
    em_gguf_writer_free(w);
    CHECK_OK(em_gguf_open(&g, path));
    CHECK_OK(em_gguf_open_parts(g, path, true));
    em_gguf_close(g);
    for (int k = 1; k <= 3; k++) {
        snprintf(path, sizeof path, "%s-%05d-of-00003.gguf", prefix, k);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/plain.gguf", dir);
    unlink(path);
    rmdir(dir);
    TEST_END();
}
