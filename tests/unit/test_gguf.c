/*
 * test_gguf.c - the GGUF reader and writer.
 *
 * Four parts: every real GGUF file under $EMBER_TEST_DATA opens and shows
 * the facts we know about it (and rewriting it through the writer gives
 * the same bytes, which shows the writer makes the layout llama.cpp's
 * tools make); a writer -> reader round trip with every value type,
 * nested arrays and several tensor types; a small written file cut at
 * every byte offset and with every byte corrupted; and hand-made hostile
 * files, each of which must give EM_ERR_FORMAT with a message naming the
 * problem.  Every buffer handed to the reader is allocated at its exact
 * size so that AddressSanitizer catches any read past its end.
 */
#include "gguf/gguf.h"
#include "quant/quant.h"
#include "test.h"
#include "../tools/gguf_bytes.h"

#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------ helpers */

/* Pads to the alignment and appends n bytes of data. */
static void put_data(buf *b, size_t align, size_t n) {
    static const uint8_t zero[1];
    while (b->len % align) put(b, zero, 1);
    for (size_t i = 0; i < n; i++) {
        uint8_t v = (uint8_t)(i * 7 + 1);
        put(b, &v, 1);
    }
}

/* Opens a copy of p[0..n) allocated at exactly n bytes. */
static em_status open_exact(em_gguf **g, const void *p, size_t n) {
    void *copy = n ? malloc(n) : NULL;
    if (n) memcpy(copy, p, n);
    em_status st = em_gguf_open_memory(g, copy, n);
    if (st == EM_OK) {
        /* The reader does not copy, so walk it before the copy goes. */
        char text[256];
        for (int64_t i = 0; i < em_gguf_n_kv(*g); i++) em_gguf_kv_format(*g, i, text, sizeof text, 4);
        em_gguf_close(*g);
        *g = NULL;
    }
    free(copy);
    return st;
}

/* A hostile file must give EM_ERR_FORMAT and a one-line message holding
 * `want`. */
#define EXPECT_FORMAT(b, want)                                                       \
    do {                                                                             \
        em_gguf *g_ = NULL;                                                          \
        em_status st_ = open_exact(&g_, (b)->p, (b)->len);                           \
        CHECK_MSG(st_ == EM_ERR_FORMAT, "want format error, got %s", em_status_str(st_)); \
        CHECK_MSG(strstr(em_last_error(), (want)) != NULL, "message '%s' lacks '%s'",  \
                  em_last_error(), (want));                                          \
        CHECK(strchr(em_last_error(), '\n') == NULL);                                \
        CHECK(strncmp(em_last_error(), "gguf: ", 6) == 0);                           \
        (b)->len = 0;                                                                \
    } while (0)

/* Walks everything a reader exposes, as the fuzz target does, so that any
 * bad pointer shows up under the sanitizers. */
static void walk(const em_gguf *g) {
    char text[512];
    for (int64_t i = 0; i < em_gguf_n_kv(g); i++) {
        size_t n = em_gguf_kv_format(g, i, text, sizeof text, 8);
        CHECK(n < sizeof text && strlen(text) == n);
    }
    volatile uint8_t sink = 0;
    for (int64_t i = 0; i < em_gguf_n_tensors(g); i++) {
        const em_gguf_tensor *t = em_gguf_tensor_at(g, i);
        CHECK(t->offset % em_gguf_alignment(g) == 0);
        CHECK(em_gguf_data_offset(g) + t->offset + t->size <= em_gguf_file_size(g));
        sink ^= ((const uint8_t *)t->data)[0];
        sink ^= ((const uint8_t *)t->data)[t->size - 1];
    }
    (void)sink;
}

static bool str_is(em_gguf_str s, const char *c) { return em_gguf_str_eq(s, c); }

static int64_t get_i(const em_gguf *g, const char *key) {
    int64_t v = -1;
    CHECK_OK(em_gguf_get_i64(g, key, &v));
    return v;
}

/* Reads a whole file into memory. */
static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)sz + 1);
    if (p && fread(p, 1, (size_t)sz, f) != (size_t)sz) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *n = (size_t)sz;
    return p;
}

/* Copies every key and tensor of g through the writer and compares the
 * bytes with the original file: the writer must reproduce the layout. */
static void check_rewrite(const em_gguf *g, const char *path) {
    em_gguf_writer *w;
    CHECK_OK(em_gguf_writer_init(&w));
    CHECK_OK(em_gguf_copy_kv(w, g));
    for (int64_t i = 0; i < em_gguf_n_tensors(g); i++) {
        const em_gguf_tensor *t = em_gguf_tensor_at(g, i);
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        CHECK_OK(em_gguf_add_tensor(w, name, t->type, t->n_dims, t->ne, t->data));
    }
    void *out = NULL;
    size_t n = 0, orig_n = 0;
    CHECK_OK(em_gguf_write_memory(w, &out, &n));
    uint8_t *orig = slurp(path, &orig_n);
    CHECK(orig != NULL);
    /* Files written by older tools may lack the padding after their last
     * tensor; everything up to the original's end must match. */
    CHECK_MSG(n >= orig_n && n - orig_n < em_gguf_alignment(g), "%s: rewrite has %zu bytes, file %zu",
              path, n, orig_n);
    if (orig) CHECK_MSG(memcmp(out, orig, EM_MIN(n, orig_n)) == 0, "%s: rewrite differs", path);
    free(orig);
    free(out);
    em_gguf_writer_free(w);
}

/* --------------------------------------------------------- real files */

static void test_stories(void) {
    char path[1024];
    test_data_path(path, sizeof path, "models/stories260K.gguf");
    em_gguf *g;
    CHECK_OK(em_gguf_open(&g, path));
    if (!g) return;
    CHECK(em_gguf_version(g) == 3);
    CHECK(em_gguf_alignment(g) == 32);
    em_gguf_str s;
    CHECK_OK(em_gguf_get_str(g, "general.architecture", &s));
    CHECK(str_is(s, "llama"));
    CHECK(get_i(g, "llama.embedding_length") == 64);
    CHECK(get_i(g, "llama.block_count") == 5);
    CHECK(get_i(g, "llama.attention.head_count") == 8);
    CHECK(get_i(g, "llama.attention.head_count_kv") == 4);
    CHECK(get_i(g, "llama.feed_forward_length") == 172);
    uint32_t u = 0;
    CHECK_OK(em_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &u));
    CHECK(u == 2);
    float eps = 0;
    CHECK_OK(em_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &eps));
    CHECK(fabsf(eps - 1e-5f) < 1e-9f);

    em_gguf_type et;
    uint64_t n = 0;
    const void *data;
    CHECK_OK(em_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, &data));
    CHECK(et == EM_GGUF_STRING && n == 512);
    CHECK_OK(em_gguf_arr_str(g, "tokenizer.ggml.tokens", 0, &s));
    CHECK(str_is(s, "<unk>"));
    CHECK_OK(em_gguf_arr_str(g, "tokenizer.ggml.tokens", 2, &s));
    CHECK(str_is(s, "</s>"));
    CHECK_OK(em_gguf_arr_str(g, "tokenizer.ggml.tokens", 3, &s));
    CHECK(str_is(s, "<0x00>"));
    CHECK(em_gguf_arr_str(g, "tokenizer.ggml.tokens", 512, &s) == EM_ERR_INVALID_ARG);
    CHECK(em_gguf_arr_str(g, "tokenizer.ggml.scores", 0, &s) == EM_ERR_FORMAT);
    CHECK_OK(em_gguf_get_arr(g, "tokenizer.ggml.scores", &et, &n, &data));
    CHECK(et == EM_GGUF_FLOAT32 && n == 512);

    /* Formatting for inspect. */
    char text[256];
    int64_t ki = em_gguf_find_key(g, "tokenizer.ggml.tokens");
    CHECK(ki >= 0);
    em_gguf_kv_format(g, ki, text, sizeof text, 3);
    CHECK_MSG(!strcmp(text, "[\"<unk>\", \"<s>\", \"</s>\", ... (512 total)]"), "got %s", text);
    em_gguf_kv_format(g, em_gguf_find_key(g, "general.architecture"), text, sizeof text, 3);
    CHECK(!strcmp(text, "\"llama\""));
    em_gguf_kv_format(g, em_gguf_find_key(g, "llama.attention.layer_norm_rms_epsilon"), text,
                      sizeof text, 3);
    CHECK_MSG(!strcmp(text, "1e-05"), "got %s", text);
    /* A small buffer cuts the text and says so. */
    size_t len = em_gguf_kv_format(g, ki, text, 12, 3);
    CHECK(len == 11 && strlen(text) == 11 && !strcmp(text + 8, "..."));

    CHECK(em_gguf_n_tensors(g) == 48);
    const em_gguf_tensor *t = em_gguf_find_tensor(g, "token_embd.weight");
    CHECK(t != NULL);
    if (t) {
        CHECK(t->type == EM_TYPE_F32);
        CHECK(t->n_dims == 2 && t->ne[0] == 64 && t->ne[1] == 512 && t->ne[2] == 1);
        CHECK(t->size == 64 * 512 * 4);
    }
    t = em_gguf_find_tensor(g, "blk.4.ffn_down.weight");
    CHECK(t && t->ne[0] == 172 && t->ne[1] == 64);
    CHECK(em_gguf_find_tensor(g, "blk.5.ffn_down.weight") == NULL);
    CHECK(em_gguf_find_key(g, "no.such.key") == -1);
    CHECK(em_gguf_get_i64(g, "no.such.key", &(int64_t){0}) == EM_ERR_NOT_FOUND);
    CHECK(em_gguf_get_str(g, "llama.block_count", &s) == EM_ERR_FORMAT);
    CHECK(strstr(em_last_error(), "llama.block_count") != NULL);
    walk(g);
    check_rewrite(g, path);
    em_gguf_close(g);
}

static void test_tiny_random(void) {
    char path[1024];
    test_data_path(path, sizeof path, "models/llama-2-tiny-random.gguf");
    em_gguf *g;
    CHECK_OK(em_gguf_open(&g, path));
    if (!g) return;
    CHECK(get_i(g, "llama.embedding_length") == 8);
    CHECK(get_i(g, "llama.block_count") == 1);
    uint64_t n = 0;
    CHECK_OK(em_gguf_get_arr(g, "tokenizer.ggml.tokens", NULL, &n, NULL));
    CHECK(n == 32000);
    em_gguf_str s;
    CHECK_OK(em_gguf_arr_str(g, "tokenizer.ggml.tokens", 31999, &s));
    CHECK(s.len > 0);
    bool f16 = false;
    for (int64_t i = 0; i < em_gguf_n_tensors(g); i++)
        f16 |= em_gguf_tensor_at(g, i)->type == EM_TYPE_F16;
    CHECK(f16);
    walk(g);
    check_rewrite(g, path);
    em_gguf_close(g);
}

static void test_tiny256(void) {
    static const struct {
        const char *file;
        em_type type; /* a type the file must hold */
    } files[] = {
        {"f32", EM_TYPE_F32},       {"F16", EM_TYPE_F16},       {"BF16", EM_TYPE_BF16},
        {"Q8_0", EM_TYPE_Q8_0},     {"Q4_0", EM_TYPE_Q4_0},     {"Q4_1", EM_TYPE_Q4_1},
        {"Q5_0", EM_TYPE_Q5_0},     {"Q5_1", EM_TYPE_Q5_1},     {"Q2_K", EM_TYPE_Q2_K},
        {"Q3_K_M", EM_TYPE_Q3_K},   {"Q4_K_M", EM_TYPE_Q4_K},   {"Q5_K_M", EM_TYPE_Q5_K},
        {"Q6_K", EM_TYPE_Q6_K},     {"IQ4_NL", EM_TYPE_IQ4_NL}, {"IQ4_XS", EM_TYPE_IQ4_XS},
    };
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
        char rel[128], path[1024];
        snprintf(rel, sizeof rel, "models/tiny-256/tiny-256-%s.gguf", files[k].file);
        test_data_path(path, sizeof path, rel);
        em_gguf *g;
        CHECK_OK(em_gguf_open(&g, path));
        if (!g) continue;
        CHECK(get_i(g, "llama.embedding_length") == 256);
        CHECK(get_i(g, "llama.block_count") == 4);
        CHECK(get_i(g, "llama.attention.head_count") == 8);
        CHECK(get_i(g, "llama.feed_forward_length") == 768);
        bool has = false;
        for (int64_t i = 0; i < em_gguf_n_tensors(g); i++)
            has |= em_gguf_tensor_at(g, i)->type == files[k].type;
        CHECK_MSG(has, "%s holds no %s tensor", rel, em_type_name(files[k].type));
        const em_gguf_tensor *t = em_gguf_find_tensor(g, "blk.3.ffn_down.weight");
        CHECK(t && t->ne[0] == 768 && t->ne[1] == 256);
        walk(g);
        check_rewrite(g, path);
        em_gguf_close(g);
    }
}

/* Every file in a directory ending in .gguf; check(g, name) for each. */
static int each_gguf(const char *rel, void (*check)(const em_gguf *g, const char *name)) {
    char dir[1024];
    test_data_path(dir, sizeof dir, rel);
    DIR *d = opendir(dir);
    CHECK_MSG(d != NULL, "cannot open %s", dir);
    if (!d) return 0;
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 5, ".gguf")) continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        em_gguf *g;
        em_status st = em_gguf_open(&g, path);
        CHECK_MSG(st == EM_OK, "%s: %s", path, em_last_error());
        if (st) continue;
        walk(g);
        check(g, e->d_name);
        check_rewrite(g, path);
        em_gguf_close(g);
        count++;
    }
    closedir(d);
    return count;
}

static void check_arch(const em_gguf *g, const char *name) {
    /* tiny-<arch>[-...].gguf names its architecture. */
    em_gguf_str a;
    CHECK_OK(em_gguf_get_str(g, "general.architecture", &a));
    CHECK_MSG(a.len > 0 && !strncmp(name + 5, a.ptr, (size_t)a.len), "%s: arch %.*s", name,
              (int)a.len, a.ptr);
    char key[128];
    snprintf(key, sizeof key, "%.*s.block_count", (int)a.len, a.ptr);
    CHECK(get_i(g, key) >= 1);
    uint64_t n = 0;
    CHECK_OK(em_gguf_get_arr(g, "tokenizer.ggml.tokens", NULL, &n, NULL));
    /* The decoders share stories260K's 512-token vocabulary; the two
     * sentence encoders carry bge's WordPiece vocabulary. */
    bool encoder = strstr(name, "bert") != NULL;
    CHECK_MSG(n == (encoder ? 30522u : 512u), "%s: %llu tokens", name, (unsigned long long)n);
    CHECK(em_gguf_n_tensors(g) > 0);
}

static void check_vocab(const em_gguf *g, const char *name) {
    em_gguf_str m;
    CHECK_OK(em_gguf_get_str(g, "tokenizer.ggml.model", &m));
    uint64_t n = 0;
    em_gguf_type et;
    CHECK_OK(em_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, NULL));
    CHECK(et == EM_GGUF_STRING && n >= 1000);
    em_gguf_str s;
    CHECK_OK(em_gguf_arr_str(g, "tokenizer.ggml.tokens", n - 1, &s));
    CHECK(em_gguf_n_tensors(g) == 0);
    if (!strcmp(name, "ggml-vocab-llama-spm.gguf")) CHECK(n == 32000 && str_is(m, "llama"));
    if (!strcmp(name, "ggml-vocab-gpt-2.gguf")) CHECK(n == 50257 && str_is(m, "gpt2"));
    if (!strcmp(name, "ggml-vocab-bert-bge.gguf")) CHECK(n == 30522 && str_is(m, "bert"));
}

static void test_dirs(void) {
    CHECK(each_gguf("models/arch", check_arch) >= 13);
    CHECK(each_gguf("tokenizers/llama.cpp-vocab", check_vocab) >= 12);
}

/* ---------------------------------------------------------- round trip */

/* Deterministic tensor bytes. */
static uint8_t *pattern(size_t n, unsigned seed) {
    uint8_t *p = malloc(n);
    uint32_t x = 2463534242u ^ seed;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
    return p;
}

static const struct {
    const char *name;
    em_type type;
    uint32_t n_dims;
    int64_t ne[4];
} rt_tensors[] = {
    {"a.f32", EM_TYPE_F32, 2, {5, 3, 1, 1}},
    {"b.f16", EM_TYPE_F16, 2, {8, 2, 1, 1}},
    {"c.q8_0", EM_TYPE_Q8_0, 2, {64, 2, 1, 1}},
    {"d.q4_k", EM_TYPE_Q4_K, 1, {256, 1, 1, 1}},
    {"e.bf16", EM_TYPE_BF16, 4, {4, 1, 3, 2}},
    {"f.q6_k", EM_TYPE_Q6_K, 2, {256, 3, 1, 1}},
};
#define N_RT (sizeof rt_tensors / sizeof rt_tensors[0])

static em_gguf_writer *make_rt_writer(uint8_t *datas[N_RT]) {
    em_gguf_writer *w;
    CHECK_OK(em_gguf_writer_init(&w));
    em_gguf_writer_set_alignment(w, 64);
    CHECK_OK(em_gguf_set_str(w, "general.architecture", "test"));
    CHECK_OK(em_gguf_set_u8(w, "v.u8", 200));
    CHECK_OK(em_gguf_set_i8(w, "v.i8", -100));
    CHECK_OK(em_gguf_set_u16(w, "v.u16", 60000));
    CHECK_OK(em_gguf_set_i16(w, "v.i16", -30000));
    CHECK_OK(em_gguf_set_u32(w, "v.u32", 4000000000u));
    CHECK_OK(em_gguf_set_i32(w, "v.i32", -2000000000));
    CHECK_OK(em_gguf_set_f32(w, "v.f32", 0.25f));
    CHECK_OK(em_gguf_set_bool(w, "v.bool", true));
    CHECK_OK(em_gguf_set_str(w, "v.str", "he said \"hi\"\n\tback\\slash \x01 \xc3\xa9"));
    CHECK_OK(em_gguf_set_u64(w, "v.u64", 18000000000000000000ull));
    CHECK_OK(em_gguf_set_i64(w, "v.i64", -9000000000000000000ll));
    CHECK_OK(em_gguf_set_f64(w, "v.f64", 1e300));
    CHECK_OK(em_gguf_set_u32(w, "v.replaced", 1));
    CHECK_OK(em_gguf_set_str(w, "v.replaced", "second"));

    uint32_t u32s[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    int8_t i8s[3] = {-1, 0, 1};
    uint16_t u16s[2] = {1, 65535};
    int16_t i16s[2] = {-1, 32767};
    int32_t i32s[2] = {-5, 5};
    float f32s[3] = {0.5f, -1.0f, 3e10f};
    uint8_t bools[2] = {1, 0};
    uint64_t u64s[2] = {0, UINT64_MAX};
    int64_t i64s[2] = {INT64_MIN, 7};
    double f64s[2] = {0.1, -2.5};
    uint8_t u8s[4] = {9, 8, 7, 6};
    CHECK_OK(em_gguf_set_arr(w, "a.u32", EM_GGUF_UINT32, u32s, 10));
    CHECK_OK(em_gguf_set_arr(w, "a.u8", EM_GGUF_UINT8, u8s, 4));
    CHECK_OK(em_gguf_set_arr(w, "a.i8", EM_GGUF_INT8, i8s, 3));
    CHECK_OK(em_gguf_set_arr(w, "a.u16", EM_GGUF_UINT16, u16s, 2));
    CHECK_OK(em_gguf_set_arr(w, "a.i16", EM_GGUF_INT16, i16s, 2));
    CHECK_OK(em_gguf_set_arr(w, "a.i32", EM_GGUF_INT32, i32s, 2));
    CHECK_OK(em_gguf_set_arr(w, "a.f32", EM_GGUF_FLOAT32, f32s, 3));
    CHECK_OK(em_gguf_set_arr(w, "a.bool", EM_GGUF_BOOL, bools, 2));
    CHECK_OK(em_gguf_set_arr(w, "a.u64", EM_GGUF_UINT64, u64s, 2));
    CHECK_OK(em_gguf_set_arr(w, "a.i64", EM_GGUF_INT64, i64s, 2));
    CHECK_OK(em_gguf_set_arr(w, "a.f64", EM_GGUF_FLOAT64, f64s, 2));
    CHECK_OK(em_gguf_set_arr(w, "a.empty", EM_GGUF_UINT32, NULL, 0));
    const char *strs[] = {"alpha", "", "g\xc3\xa9", "quote\"d"};
    CHECK_OK(em_gguf_set_arr_str(w, "a.str", strs, 4));
    em_gguf_arr inner[3] = {{EM_GGUF_INT32, 2, i32s}, {EM_GGUF_FLOAT32, 0, NULL},
                            {EM_GGUF_UINT16, 2, u16s}};
    CHECK_OK(em_gguf_set_arr_nested(w, "a.nested", inner, 3));

    /* Refusals. */
    CHECK(em_gguf_set_arr(w, "bad", EM_GGUF_STRING, strs, 1) == EM_ERR_INVALID_ARG);
    CHECK(em_gguf_set_u32(w, "general.alignment", 48) == EM_ERR_INVALID_ARG);
    CHECK(em_gguf_set_str(w, "general.alignment", "64") == EM_ERR_INVALID_ARG);

    for (size_t k = 0; k < N_RT; k++) {
        uint64_t rows = (uint64_t)(rt_tensors[k].ne[1] * rt_tensors[k].ne[2] * rt_tensors[k].ne[3]);
        size_t size = em_row_size(rt_tensors[k].type, rt_tensors[k].ne[0]) * rows;
        datas[k] = pattern(size, (unsigned)k);
        CHECK_OK(em_gguf_add_tensor(w, rt_tensors[k].name, rt_tensors[k].type, rt_tensors[k].n_dims,
                                    rt_tensors[k].ne, datas[k]));
    }
    int64_t bad_ne[2] = {33, 1};
    CHECK(em_gguf_add_tensor(w, "bad", EM_TYPE_Q8_0, 2, bad_ne, datas[0]) == EM_ERR_INVALID_ARG);
    CHECK(em_gguf_add_tensor(w, "a.f32", EM_TYPE_F32, 2, rt_tensors[0].ne, datas[0]) ==
          EM_ERR_INVALID_ARG);
    CHECK(em_gguf_add_tensor(w, "x", (em_type)4, 1, rt_tensors[0].ne, datas[0]) == EM_ERR_INVALID_ARG);
    return w;
}

static void fmt_is(const em_gguf *g, const char *key, int max, const char *want) {
    char text[512];
    int64_t i = em_gguf_find_key(g, key);
    CHECK_MSG(i >= 0, "no key %s", key);
    em_gguf_kv_format(g, i, text, sizeof text, max);
    CHECK_MSG(!strcmp(text, want), "%s: got '%s', want '%s'", key, text, want);
}

static void check_rt_reader(const em_gguf *g, uint8_t *datas[N_RT]) {
    CHECK(em_gguf_version(g) == 3);
    CHECK(em_gguf_alignment(g) == 64);
    CHECK(em_gguf_data_offset(g) % 64 == 0);
    CHECK(em_gguf_n_kv(g) == 29);
    /* Keys keep insertion order; a replaced key keeps its place. */
    CHECK(str_is(em_gguf_key(g, 0), "general.alignment"));
    CHECK(str_is(em_gguf_key(g, 14), "v.replaced"));
    CHECK(em_gguf_kv_type(g, 14) == EM_GGUF_STRING);

    int64_t i = 0;
    uint32_t u = 0;
    float f = 0;
    bool b = false;
    em_gguf_str s;
    CHECK(get_i(g, "v.u8") == 200);
    CHECK(get_i(g, "v.i8") == -100);
    CHECK(get_i(g, "v.u16") == 60000);
    CHECK(get_i(g, "v.i16") == -30000);
    CHECK(get_i(g, "v.u32") == 4000000000ll);
    CHECK(get_i(g, "v.i32") == -2000000000);
    CHECK(get_i(g, "v.i64") == -9000000000000000000ll);
    CHECK(em_gguf_get_i64(g, "v.u64", &i) == EM_ERR_FORMAT); /* does not fit */
    CHECK(em_gguf_get_u32(g, "v.i8", &u) == EM_ERR_FORMAT);   /* negative     */
    CHECK_OK(em_gguf_get_u32(g, "v.u16", &u));
    CHECK(u == 60000);
    CHECK_OK(em_gguf_get_f32(g, "v.f32", &f));
    CHECK(f == 0.25f);
    CHECK_OK(em_gguf_get_f32(g, "v.f64", &f));
    CHECK(isinf(f)); /* 1e300 does not fit a float */
    CHECK(em_gguf_get_f32(g, "v.u8", &f) == EM_ERR_FORMAT);
    CHECK_OK(em_gguf_get_bool(g, "v.bool", &b));
    CHECK(b);
    CHECK(em_gguf_get_bool(g, "v.u8", &b) == EM_ERR_FORMAT);
    CHECK_OK(em_gguf_get_str(g, "v.replaced", &s));
    CHECK(str_is(s, "second"));
    CHECK_OK(em_gguf_get_str(g, "v.str", &s));
    CHECK(str_is(s, "he said \"hi\"\n\tback\\slash \x01 \xc3\xa9"));
    CHECK(em_gguf_get_str(g, "a.str", &s) == EM_ERR_FORMAT);

    fmt_is(g, "v.u8", 4, "200");
    fmt_is(g, "v.i8", 4, "-100");
    fmt_is(g, "v.u64", 4, "18000000000000000000");
    fmt_is(g, "v.f32", 4, "0.25");
    fmt_is(g, "v.f64", 4, "1e+300");
    fmt_is(g, "v.bool", 4, "true");
    fmt_is(g, "v.str", 4, "\"he said \\\"hi\\\"\\n\\tback\\\\slash \\x01 \xc3\xa9\"");
    fmt_is(g, "a.u32", 3, "[1, 2, 3, ... (10 total)]");
    fmt_is(g, "a.u32", 10, "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]");
    fmt_is(g, "a.u32", 0, "[... (10 total)]");
    fmt_is(g, "a.i8", 8, "[-1, 0, 1]");
    fmt_is(g, "a.f32", 8, "[0.5, -1, 3e+10]");
    fmt_is(g, "a.bool", 8, "[true, false]");
    fmt_is(g, "a.u64", 8, "[0, 18446744073709551615]");
    fmt_is(g, "a.i64", 8, "[-9223372036854775808, 7]");
    fmt_is(g, "a.f64", 8, "[0.1, -2.5]");
    fmt_is(g, "a.empty", 8, "[]");
    fmt_is(g, "a.str", 8, "[\"alpha\", \"\", \"g\xc3\xa9\", \"quote\\\"d\"]");
    fmt_is(g, "a.nested", 8, "[[-5, 5], [], [1, 65535]]");
    fmt_is(g, "a.nested", 1, "[[-5, ... (2 total)], ... (3 total)]");

    em_gguf_type et;
    uint64_t n;
    const void *data;
    CHECK_OK(em_gguf_get_arr(g, "a.u16", &et, &n, &data));
    CHECK(et == EM_GGUF_UINT16 && n == 2 && !memcmp(data, (uint16_t[]){1, 65535}, 4));
    CHECK_OK(em_gguf_get_arr(g, "a.f64", &et, &n, &data));
    double d[2];
    memcpy(d, data, 16);
    CHECK(et == EM_GGUF_FLOAT64 && n == 2 && d[0] == 0.1 && d[1] == -2.5);
    CHECK(em_gguf_get_arr(g, "v.u8", &et, &n, &data) == EM_ERR_FORMAT);
    CHECK_OK(em_gguf_arr_str(g, "a.str", 3, &s));
    CHECK(str_is(s, "quote\"d"));
    CHECK_OK(em_gguf_arr_str(g, "a.str", 1, &s));
    CHECK(s.len == 0);

    /* Nested arrays, through both the O(1) accessor and views. */
    em_gguf_arr a, sub;
    CHECK_OK(em_gguf_arr_nested(g, "a.nested", 2, &a));
    CHECK(a.elem_type == EM_GGUF_UINT16 && a.n == 2 && !memcmp(a.data, (uint16_t[]){1, 65535}, 4));
    CHECK_OK(em_gguf_arr_nested(g, "a.nested", 1, &a));
    CHECK(a.elem_type == EM_GGUF_FLOAT32 && a.n == 0);
    CHECK(em_gguf_arr_nested(g, "a.nested", 3, &a) == EM_ERR_INVALID_ARG);
    CHECK(em_gguf_arr_nested(g, "a.str", 0, &a) == EM_ERR_FORMAT);
    CHECK_OK(em_gguf_kv_arr_view(g, em_gguf_find_key(g, "a.nested"), &a));
    CHECK(a.elem_type == EM_GGUF_ARRAY && a.n == 3);
    CHECK_OK(em_gguf_arr_get_arr(&a, 0, &sub));
    CHECK(sub.elem_type == EM_GGUF_INT32 && sub.n == 2 && !memcmp(sub.data, (int32_t[]){-5, 5}, 8));
    CHECK(em_gguf_arr_get_str(&a, 0, &s) == EM_ERR_FORMAT);
    CHECK_OK(em_gguf_kv_arr_view(g, em_gguf_find_key(g, "a.str"), &a));
    CHECK_OK(em_gguf_arr_get_str(&a, 2, &s));
    CHECK(str_is(s, "g\xc3\xa9"));
    CHECK(em_gguf_kv_arr_view(g, em_gguf_find_key(g, "v.u8"), &a) == EM_ERR_FORMAT);

    CHECK(em_gguf_n_tensors(g) == (int64_t)N_RT);
    uint64_t expect_offset = 0;
    for (size_t k = 0; k < N_RT; k++) {
        const em_gguf_tensor *t = em_gguf_tensor_at(g, (int64_t)k);
        CHECK(t && str_is(t->name, rt_tensors[k].name));
        if (!t) continue;
        CHECK(t == em_gguf_find_tensor(g, rt_tensors[k].name));
        CHECK(t->type == rt_tensors[k].type && t->n_dims == rt_tensors[k].n_dims);
        for (int dd = 0; dd < 4; dd++) CHECK(t->ne[dd] == rt_tensors[k].ne[dd]);
        /* The offsets llama.cpp expects: previous sizes, each padded. */
        CHECK(t->offset == expect_offset);
        expect_offset += (t->size + 63) / 64 * 64;
        CHECK(!memcmp(t->data, datas[k], (size_t)t->size));
    }
    CHECK(em_gguf_file_size(g) == em_gguf_data_offset(g) + expect_offset);
}

static void test_round_trip(void) {
    uint8_t *datas[N_RT];
    em_gguf_writer *w = make_rt_writer(datas);
    char dir[] = "/tmp/test_gguf_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256], path2[256];
    snprintf(path, sizeof path, "%s/rt.gguf", dir);
    snprintf(path2, sizeof path2, "%s/rt2.gguf", dir);
    CHECK_OK(em_gguf_write(w, path));
    void *mem = NULL;
    size_t mem_n = 0;
    CHECK_OK(em_gguf_write_memory(w, &mem, &mem_n));

    em_gguf *g = NULL;
    CHECK_OK(em_gguf_open(&g, path));
    if (g) {
        check_rt_reader(g, datas);
        CHECK(em_gguf_file_size(g) == mem_n);
        size_t fn = 0;
        uint8_t *file = slurp(path, &fn);
        CHECK(file && fn == mem_n && !memcmp(file, mem, fn));
        free(file);

        /* Copy everything into a fresh writer: the bytes must not change. */
        em_gguf_writer *w2;
        CHECK_OK(em_gguf_writer_init(&w2));
        CHECK_OK(em_gguf_copy_kv(w2, g));
        for (int64_t i = 0; i < em_gguf_n_tensors(g); i++) {
            const em_gguf_tensor *t = em_gguf_tensor_at(g, i);
            CHECK_OK(em_gguf_add_tensor(w2, rt_tensors[i].name, t->type, t->n_dims, t->ne, t->data));
        }
        CHECK_OK(em_gguf_write(w2, path2));
        size_t n2 = 0;
        uint8_t *copy = slurp(path2, &n2);
        CHECK(copy && n2 == mem_n && !memcmp(copy, mem, n2));
        free(copy);
        /* copy_kv keeps keys the writer already has. */
        CHECK_OK(em_gguf_set_str(w2, "v.str", "mine"));
        CHECK_OK(em_gguf_copy_kv(w2, g));
        void *m3;
        size_t n3;
        CHECK_OK(em_gguf_write_memory(w2, &m3, &n3));
        em_gguf *g3;
        CHECK_OK(em_gguf_open_memory(&g3, m3, n3));
        if (g3) {
            em_gguf_str s;
            CHECK_OK(em_gguf_get_str(g3, "v.str", &s));
            CHECK(str_is(s, "mine"));
            em_gguf_close(g3);
        }
        free(m3);
        em_gguf_writer_free(w2);
        em_gguf_close(g);
    }
    CHECK_OK(em_gguf_open_memory(&g, mem, mem_n));
    if (g) {
        check_rt_reader(g, datas);
        em_gguf_close(g);
    }
    /* Writing to a directory that does not exist is an I/O error. */
    snprintf(path2, sizeof path2, "%s/no/such/dir.gguf", dir);
    CHECK(em_gguf_write(w, path2) == EM_ERR_IO);
    unlink(path);
    snprintf(path2, sizeof path2, "%s/rt2.gguf", dir);
    unlink(path2);
    rmdir(dir);
    free(mem);
    for (size_t k = 0; k < N_RT; k++) free(datas[k]);
    em_gguf_writer_free(w);
}

/* ---------------------------------------------------------- truncation */

/* A small file touching every parser path, whose last tensor fills its
 * aligned block exactly so that cutting any byte loses real content. */
static void small_file(void **out, size_t *n) {
    em_gguf_writer *w;
    CHECK_OK(em_gguf_writer_init(&w));
    CHECK_OK(em_gguf_set_str(w, "general.architecture", "llama"));
    CHECK_OK(em_gguf_set_u32(w, "llama.block_count", 1));
    CHECK_OK(em_gguf_set_f64(w, "x.f64", 2.0));
    uint32_t v[3] = {1, 2, 3};
    CHECK_OK(em_gguf_set_arr(w, "x.arr", EM_GGUF_UINT32, v, 3));
    const char *strs[] = {"a", "bc"};
    CHECK_OK(em_gguf_set_arr_str(w, "x.strs", strs, 2));
    em_gguf_arr inner[2] = {{EM_GGUF_UINT8, 2, "\x01\x02"}, {EM_GGUF_UINT32, 1, v}};
    CHECK_OK(em_gguf_set_arr_nested(w, "x.nested", inner, 2));
    uint8_t data[136] = {0};
    int64_t ne_a[2] = {32, 1}, ne_b[1] = {8};
    CHECK_OK(em_gguf_add_tensor(w, "a", EM_TYPE_Q8_0, 2, ne_a, data));
    CHECK_OK(em_gguf_add_tensor(w, "b", EM_TYPE_F32, 1, ne_b, data));
    CHECK_OK(em_gguf_write_memory(w, out, n));
    em_gguf_writer_free(w);
}

static void test_truncation(void) {
    void *file = NULL;
    size_t n = 0;
    small_file(&file, &n);
    if (!file) return;
    em_gguf *g;
    CHECK_OK(open_exact(&g, file, n));
    int bad = 0;
    for (size_t len = 0; len < n; len++) {
        em_status st = open_exact(&g, file, len);
        if (st != EM_ERR_FORMAT) {
            bad++;
            CHECK_MSG(st == EM_ERR_FORMAT, "cut at %zu of %zu: %s", len, n, em_status_str(st));
        }
        CHECK(strchr(em_last_error(), '\n') == NULL);
    }
    CHECK(bad == 0);

    /* Every byte replaced by a few values: any status, no crash, and an
     * accepted file is walked in full. */
    uint8_t *copy = malloc(n);
    static const uint8_t vals[] = {0x00, 0xff, 0x7f, 0x80, 0x01, 0x09, 0x0c};
    for (size_t pos = 0; pos < n; pos++) {
        for (size_t k = 0; k < sizeof vals; k++) {
            memcpy(copy, file, n);
            copy[pos] = vals[k];
            if (em_gguf_open_memory(&g, copy, n) == EM_OK) {
                walk(g);
                em_gguf_close(g);
            }
        }
    }
    free(copy);
    free(file);
}

/* ------------------------------------------------------------- hostile */

static void test_hostile_header(void) {
    buf b = {0};
    put(&b, "GGML", 4);
    put_u32(&b, 3);
    put_u64(&b, 0);
    put_u64(&b, 0);
    EXPECT_FORMAT(&b, "bad magic");
    put(&b, "GG", 2);
    EXPECT_FORMAT(&b, "magic");

    put_header(&b, 1, 0, 0);
    EXPECT_FORMAT(&b, "version 1 is not supported");
    put_header(&b, 0x03000000u, 0, 0);
    EXPECT_FORMAT(&b, "big-endian");
    put_header(&b, 0x02000000u, 0, 0);
    EXPECT_FORMAT(&b, "big-endian");
    put_header(&b, 7, 0, 0);
    EXPECT_FORMAT(&b, "unsupported GGUF version 7");
    put(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u32(&b, 0);
    EXPECT_FORMAT(&b, "tensor count runs past end of file");

    put_header(&b, 3, 1ull << 40, 0);
    EXPECT_FORMAT(&b, "header claims 1099511627776 tensors");
    put_header(&b, 3, 0, UINT64_MAX);
    EXPECT_FORMAT(&b, "metadata entries but the file");
    /* A count the file could almost hold: the second pair is cut short
     * after its key. */
    put_header(&b, 2, 0, 2);
    put_kv_u32(&b, "a", 1);
    put_str(&b, "b");
    EXPECT_FORMAT(&b, "key 'b': value type runs past end of file");

    /* A valid v2 file is accepted. */
    put_header(&b, 2, 0, 1);
    put_kv_u32(&b, "a", 1);
    em_gguf *g;
    CHECK_OK(open_exact(&g, b.p, b.len));
    b.len = 0;
    free(b.p);
}

static void test_hostile_kv(void) {
    buf b = {0};
    put_header(&b, 3, 0, 1);
    put_u64(&b, 1000);
    put(&b, "abcdefghijklm", 13);
    EXPECT_FORMAT(&b, "key of length 1000 runs past end of file");

    put_header(&b, 3, 0, 1);
    put_str(&b, "s");
    put_u32(&b, EM_GGUF_STRING);
    put_u64(&b, 1ull << 62);
    put(&b, "xyz", 3);
    EXPECT_FORMAT(&b, "key 's': string of length 4611686018427387904 runs past end of file");

    put_header(&b, 3, 0, 1);
    put_str(&b, "t");
    put_u32(&b, 13);
    put_u32(&b, 0);
    EXPECT_FORMAT(&b, "key 't': unknown value type 13");

    put_header(&b, 3, 0, 1);
    put_str(&b, "arr");
    put_u32(&b, EM_GGUF_ARRAY);
    put_u32(&b, 99);
    put_u64(&b, 0);
    EXPECT_FORMAT(&b, "unknown array element type 99");

    put_header(&b, 3, 0, 1);
    put_str(&b, "arr");
    put_u32(&b, EM_GGUF_ARRAY);
    put_u32(&b, EM_GGUF_UINT32);
    put_u64(&b, 1ull << 61);
    put_u32(&b, 5);
    EXPECT_FORMAT(&b, "array of 2305843009213693952 u32 elements runs past end of file");

    /* Huge counts of variable-size elements are refused before any walk
     * or allocation. */
    put_header(&b, 3, 0, 1);
    put_str(&b, "arr");
    put_u32(&b, EM_GGUF_ARRAY);
    put_u32(&b, EM_GGUF_STRING);
    put_u64(&b, UINT64_MAX / 2);
    put_u64(&b, 0);
    EXPECT_FORMAT(&b, "str elements runs past end of file");

    /* A depth bomb: arrays of arrays 100 levels deep. */
    put_header(&b, 3, 0, 1);
    put_str(&b, "deep");
    put_u32(&b, EM_GGUF_ARRAY);
    for (int d = 0; d < 100; d++) {
        put_u32(&b, EM_GGUF_ARRAY);
        put_u64(&b, 1);
    }
    put_u32(&b, EM_GGUF_UINT8);
    put_u64(&b, 0);
    EXPECT_FORMAT(&b, "key 'deep': arrays nested deeper than 8 levels");

    /* Nesting up to the limit is fine. */
    put_header(&b, 3, 0, 1);
    put_str(&b, "deep");
    put_u32(&b, EM_GGUF_ARRAY);
    for (int d = 0; d < EM_GGUF_MAX_DEPTH - 1; d++) {
        put_u32(&b, EM_GGUF_ARRAY);
        put_u64(&b, 1);
    }
    put_u32(&b, EM_GGUF_UINT8);
    put_u64(&b, 1);
    put(&b, "\x2a", 1);
    em_gguf *g;
    CHECK_OK(em_gguf_open_memory(&g, b.p, b.len));
    if (g) {
        char text[128];
        em_gguf_kv_format(g, 0, text, sizeof text, 4);
        CHECK_MSG(!strcmp(text, "[[[[[[[[42]]]]]]]]"), "got %s", text);
        em_gguf_close(g);
    }
    b.len = 0;

    put_header(&b, 3, 0, 2);
    put_kv_u32(&b, "dup.key", 1);
    put_kv_u32(&b, "dup.key", 2);
    EXPECT_FORMAT(&b, "duplicate key 'dup.key'");

    /* A name with control bytes is shown safely, on one line. */
    put_header(&b, 3, 0, 2);
    put_kv_u32(&b, "a\nb", 1);
    put_kv_u32(&b, "a\nb", 2);
    EXPECT_FORMAT(&b, "duplicate key 'a?b'");

    put_header(&b, 3, 0, 1);
    put_kv_u32(&b, "general.alignment", 0);
    EXPECT_FORMAT(&b, "general.alignment 0 is not a nonzero power of two");
    put_header(&b, 3, 0, 1);
    put_kv_u32(&b, "general.alignment", 48);
    EXPECT_FORMAT(&b, "general.alignment 48 is not a nonzero power of two");
    put_header(&b, 3, 0, 1);
    put_str(&b, "general.alignment");
    put_u32(&b, EM_GGUF_INT32);
    put_u32(&b, 32);
    EXPECT_FORMAT(&b, "general.alignment has type i32, must be u32");
    free(b.p);
}

/* A file of one F32 tensor-table entry plus `data` bytes of data. */
static void one_tensor(buf *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                       uint64_t offset, size_t data) {
    put_header(b, 3, 1, 0);
    put_tinfo(b, name, n_dims, ne, type, offset);
    put_data(b, 32, data);
}

static void test_hostile_tensors(void) {
    buf b = {0};
    uint64_t ne16[1] = {16};
    one_tensor(&b, "ok", 1, ne16, EM_TYPE_F32, 0, 64);
    em_gguf *g;
    CHECK_OK(open_exact(&g, b.p, b.len));
    b.len = 0;

    uint64_t ne5[5] = {1, 1, 1, 1, 1};
    one_tensor(&b, "t5", 5, ne5, EM_TYPE_F32, 0, 64);
    EXPECT_FORMAT(&b, "tensor 't5': n_dims 5 exceeds the maximum of 4");

    uint64_t ne0[2] = {16, 0};
    one_tensor(&b, "z", 2, ne0, EM_TYPE_F32, 0, 64);
    EXPECT_FORMAT(&b, "tensor 'z': dimension 1 is 0 (must be positive)");
    uint64_t neg[1] = {(uint64_t)-3};
    one_tensor(&b, "n", 1, neg, EM_TYPE_F32, 0, 64);
    EXPECT_FORMAT(&b, "tensor 'n': dimension 0 is -3 (must be positive)");

    uint64_t big[3] = {1ull << 32, 1ull << 20, 1ull << 12};
    one_tensor(&b, "big", 3, big, EM_TYPE_F32, 0, 64);
    EXPECT_FORMAT(&b, "tensor 'big': element count overflows int64 at dimension 2");
    /* Fits int64 elements but not bytes. */
    uint64_t bytes[2] = {1ull << 31, 1ull << 31};
    one_tensor(&b, "bytes", 2, bytes, EM_TYPE_F64, 0, 64);
    EXPECT_FORMAT(&b, "tensor 'bytes': byte size overflows");

    one_tensor(&b, "t", 1, ne16, 4, 0, 64);
    EXPECT_FORMAT(&b, "tensor 't': unknown or unsupported tensor type id 4");
    one_tensor(&b, "t", 1, ne16, 99, 0, 64);
    EXPECT_FORMAT(&b, "unknown or unsupported tensor type id 99");

    uint64_t ne33[1] = {33};
    one_tensor(&b, "q", 1, ne33, EM_TYPE_Q8_0, 0, 64);
    EXPECT_FORMAT(&b, "tensor 'q': ne[0] = 33 is not a multiple of Q8_0's block size 32");

    one_tensor(&b, "u", 1, ne16, EM_TYPE_F32, 4, 128);
    EXPECT_FORMAT(&b, "tensor 'u': data offset 4 is not a multiple of the alignment 32");

    one_tensor(&b, "blk.0.attn_q.weight", 1, ne16, EM_TYPE_F32, 0, 10);
    EXPECT_FORMAT(&b, "tensor 'blk.0.attn_q.weight': data [offset 96, 64 bytes] runs past end of file (size 106)");
    one_tensor(&b, "far", 1, ne16, EM_TYPE_F32, 1ull << 63, 64);
    EXPECT_FORMAT(&b, "tensor 'far': data [offset");
    one_tensor(&b, "far", 1, ne16, EM_TYPE_F32, UINT64_MAX - 31, 64);
    EXPECT_FORMAT(&b, "runs past end of file");

    put_header(&b, 3, 2, 0);
    put_tinfo(&b, "x", 1, ne16, EM_TYPE_F32, 0);
    put_tinfo(&b, "y", 1, ne16, EM_TYPE_F32, 32);
    put_data(&b, 32, 128);
    EXPECT_FORMAT(&b, "tensors 'x' [offset 0, 64 bytes] and 'y' [offset 32] overlap");
    /* The table order does not matter, nor does a gap. */
    put_header(&b, 3, 2, 0);
    put_tinfo(&b, "y", 1, ne16, EM_TYPE_F32, 128);
    put_tinfo(&b, "x", 1, ne16, EM_TYPE_F32, 0);
    put_data(&b, 32, 192);
    CHECK_OK(open_exact(&g, b.p, b.len));
    b.len = 0;

    put_header(&b, 3, 2, 0);
    put_tinfo(&b, "same", 1, ne16, EM_TYPE_F32, 0);
    put_tinfo(&b, "same", 1, ne16, EM_TYPE_F32, 64);
    put_data(&b, 32, 128);
    EXPECT_FORMAT(&b, "duplicate tensor name 'same'");

    put_header(&b, 3, 1, 0);
    put_u64(&b, 500);
    put(&b, "name", 4);
    put(&b, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 20);
    EXPECT_FORMAT(&b, "tensor entry 0: name of length 500 runs past end of file");

    /* A large alignment moves the data section. */
    put_header(&b, 3, 1, 1);
    put_kv_u32(&b, "general.alignment", 4096);
    put_tinfo(&b, "a", 1, ne16, EM_TYPE_F32, 0);
    put_data(&b, 64, 64); /* data at 64-byte alignment: too early */
    EXPECT_FORMAT(&b, "runs past end of file");
    free(b.p);
}

/* Writes n bytes to path, replacing it; false (and a failed check) when
 * the file cannot be written. */
static bool write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return false;
    const bool ok = fwrite(data, 1, n, f) == n;
    CHECK(ok);
    return fclose(f) == 0 && ok;
}

static void test_open_errors(void) {
    em_gguf *g = NULL;
    CHECK(em_gguf_open(&g, "/nonexistent/dir/model.gguf") == EM_ERR_IO);
    CHECK(strstr(em_last_error(), "/nonexistent/dir/model.gguf") != NULL);
    CHECK(em_gguf_open(&g, "/tmp") == EM_ERR_IO);
    char dir[] = "/tmp/test_gguf_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/empty.gguf", dir);
    write_file(path, "", 0);
    CHECK(em_gguf_open(&g, path) == EM_ERR_FORMAT);
    CHECK(strstr(em_last_error(), "empty") != NULL);
    unlink(path);
    rmdir(dir);
    CHECK(em_gguf_open_memory(&g, NULL, 0) == EM_ERR_FORMAT);
}

/* Reading a file into memory (em_gguf_open_read) gives the same reader as
 * mapping it; a file cut short on disk fails the same way either way, and
 * locking either reports success or a clear error. */
static void test_read_mode(void) {
    void *file = NULL;
    size_t n = 0;
    small_file(&file, &n);
    if (!file) return;
    char dir[] = "/tmp/test_gguf_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/small.gguf", dir);
    write_file(path, file, n);
    em_gguf *gm = NULL, *gr = NULL;
    CHECK_OK(em_gguf_open(&gm, path));
    CHECK_OK(em_gguf_open_read(&gr, path));
    if (gm && gr) {
        CHECK(em_gguf_n_tensors(gm) == em_gguf_n_tensors(gr) && em_gguf_n_tensors(gr) > 0);
        CHECK(em_gguf_n_kv(gm) == em_gguf_n_kv(gr));
        for (int64_t i = 0; i < em_gguf_n_tensors(gr); i++) {
            const em_gguf_tensor *a = em_gguf_tensor_at(gm, i), *b = em_gguf_tensor_at(gr, i);
            CHECK(a->size == b->size && memcmp(a->data, b->data, (size_t)a->size) == 0);
            CHECK(a->data != b->data);
        }
        em_status st = em_gguf_lock(gr);
        CHECK_MSG(st == EM_OK || (st == EM_ERR_IO && strstr(em_last_error(), "lock")),
                  "lock: %s", em_status_str(st));
    }
    em_gguf_close(gm);
    em_gguf_close(gr);
    CHECK(em_gguf_lock(NULL) == EM_ERR_INVALID_ARG);

    /* Cut short on disk: a clear format error in both modes. */
    write_file(path, file, n / 2);
    CHECK(em_gguf_open(&gm, path) == EM_ERR_FORMAT);
    CHECK(em_gguf_open_read(&gr, path) == EM_ERR_FORMAT);
    CHECK(strchr(em_last_error(), '\n') == NULL);
    CHECK(em_gguf_open_read(&gr, "/nonexistent/dir/model.gguf") == EM_ERR_IO);
    CHECK(em_gguf_open_read(&gr, "/tmp") == EM_ERR_IO);
    unlink(path);
    rmdir(dir);
    free(file);
}

int main(void) {
    /* The parts that need no test data run first, always. */
    test_round_trip();
    test_truncation();
    test_hostile_header();
    test_hostile_kv();
    test_hostile_tensors();
    test_open_errors();
    test_read_mode();
    if (!getenv("EMBER_TEST_DATA")) {
        printf("%d checks, %d failed\n", test_checks, test_failures);
        printf("SKIP: EMBER_TEST_DATA is not set (real-file checks skipped)\n");
        return test_failures ? 1 : 77;
    }
    test_stories();
    test_tiny_random();
    test_tiny256();
    test_dirs();
    TEST_END();
}
