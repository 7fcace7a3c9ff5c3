/*
 * gguf_seeds.c - writes small GGUF files, sound and broken, into a folder:
 * the seed corpus for fuzz_gguf (tests/fuzz/run.sh runs it).
 *
 * usage: gguf_seeds OUTDIR
 *
 * Real models make good seeds for the common paths but are large and
 * never hostile; these files are tiny and each reaches one corner of the
 * reader (every value type, nested arrays, odd alignments, each kind of
 * broken tensor entry), so that the fuzzer starts out covering them.
 */
#include "gguf/gguf.h"
#include "quant/quant.h"
#include "gguf_bytes.h"

#include <stdio.h>
#include <stdlib.h>

static int failures;

static void save(const char *dir, const char *name, const void *p, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n)) {
        fprintf(stderr, "gguf_seeds: cannot write %s\n", path);
        failures++;
    }
    if (f && fclose(f) != 0) failures++;
}

/* Writes w's file as NAME.gguf plus a copy cut in half. */
static void save_writer(const char *dir, const char *name, em_gguf_writer *w) {
    void *p;
    size_t n;
    if (em_gguf_write_memory(w, &p, &n) != EM_OK) {
        fprintf(stderr, "gguf_seeds: %s: %s\n", name, em_last_error());
        failures++;
        return;
    }
    char file[256];
    snprintf(file, sizeof file, "%s.gguf", name);
    save(dir, file, p, n);
    snprintf(file, sizeof file, "%s-cut.gguf", name);
    save(dir, file, p, n / 2);
    free(p);
}

/* ------------------------------------------------------------ sound */

static void every_type(const char *dir) {
    em_gguf_writer *w;
    if (em_gguf_writer_init(&w) != EM_OK) return;
    em_gguf_set_str(w, "general.architecture", "llama");
    em_gguf_set_u8(w, "t.u8", 1);
    em_gguf_set_i8(w, "t.i8", -1);
    em_gguf_set_u16(w, "t.u16", 2);
    em_gguf_set_i16(w, "t.i16", -2);
    em_gguf_set_u32(w, "t.u32", 3);
    em_gguf_set_i32(w, "t.i32", -3);
    em_gguf_set_f32(w, "t.f32", 0.5f);
    em_gguf_set_bool(w, "t.bool", true);
    em_gguf_set_str(w, "t.str", "quote \" and \n newline");
    em_gguf_set_u64(w, "t.u64", 4);
    em_gguf_set_i64(w, "t.i64", -4);
    em_gguf_set_f64(w, "t.f64", 0.25);
    float fs[4] = {1, 2, 3, 4};
    em_gguf_set_arr(w, "t.arr_f32", EM_GGUF_FLOAT32, fs, 4);
    const char *strs[3] = {"a", "", "<s>"};
    em_gguf_set_arr_str(w, "tokenizer.ggml.tokens", strs, 3);
    uint16_t u16s[2] = {7, 8};
    em_gguf_arr inner[2] = {{EM_GGUF_FLOAT32, 2, fs}, {EM_GGUF_UINT16, 2, u16s}};
    em_gguf_set_arr_nested(w, "t.nested", inner, 2);
    save_writer(dir, "every-type", w);
    em_gguf_writer_free(w);
}

static void tensors(const char *dir, uint32_t alignment, const char *name) {
    static const struct {
        const char *name;
        em_type type;
        int64_t ne[2];
    } ts[] = {
        {"token_embd.weight", EM_TYPE_F32, {8, 4}}, {"blk.0.attn_q.weight", EM_TYPE_Q8_0, {32, 2}},
        {"blk.0.ffn_up.weight", EM_TYPE_Q4_K, {256, 1}}, {"output_norm.weight", EM_TYPE_F16, {8, 1}},
        {"blk.0.ffn_down.weight", EM_TYPE_BF16, {4, 3}},
    };
    em_gguf_writer *w;
    if (em_gguf_writer_init(&w) != EM_OK) return;
    em_gguf_writer_set_alignment(w, alignment);
    em_gguf_set_str(w, "general.architecture", "llama");
    em_gguf_set_u32(w, "llama.block_count", 1);
    uint8_t data[1024];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 13);
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        em_gguf_add_tensor(w, ts[i].name, ts[i].type, 2, ts[i].ne, data);
    save_writer(dir, name, w);
    em_gguf_writer_free(w);
}

/* ----------------------------------------------------------- broken */

/* Starts b over with a header. */
static void header(buf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    b->len = 0;
    put_header(b, version, n_tensors, n_kv);
}
/* A tensor of ne0 x 1 x ... (n_dims sizes, at most 8). */
static void tinfo(buf *b, const char *name, uint32_t n_dims, uint64_t ne0, uint32_t type,
                  uint64_t offset) {
    uint64_t ne[8] = {ne0, 1, 1, 1, 1, 1, 1, 1};
    put_tinfo(b, name, n_dims, ne, type, offset);
}
static void data(buf *b, size_t n) {
    while (b->len % 32) put(b, "", 1);
    for (size_t i = 0; i < n; i++) put(b, "\x11", 1);
}

/* A key-value entry of type uint32. */
static void kv_u32(buf *b, const char *key, uint32_t v) {
    put_str(b, key);
    put_u32(b, EM_GGUF_UINT32);
    put_u32(b, v);
}

/* Saves as file a header with one tensor entry (as tinfo) and n bytes of
 * data. */
static void one_tensor(const char *dir, const char *file, buf *b, uint32_t n_dims, uint64_t ne0,
                       uint32_t type, uint64_t offset, size_t n) {
    header(b, 3, 1, 0);
    tinfo(b, "t", n_dims, ne0, type, offset);
    data(b, n);
    save(dir, file, b->p, b->len);
}

static void broken(const char *dir) {
    buf b = {0};
    header(&b, 1, 0, 0);
    save(dir, "v1.gguf", b.p, b.len);
    header(&b, 0x03000000u, 0, 0);
    save(dir, "big-endian.gguf", b.p, b.len);
    header(&b, 3, 1ull << 40, 1ull << 40);
    save(dir, "huge-counts.gguf", b.p, b.len);

    header(&b, 3, 0, 1);
    put_str(&b, "deep");
    put_u32(&b, EM_GGUF_ARRAY);
    for (int d = 0; d < 12; d++) {
        put_u32(&b, EM_GGUF_ARRAY);
        put_u64(&b, 1);
    }
    put_u32(&b, EM_GGUF_UINT8);
    put_u64(&b, 0);
    save(dir, "depth-bomb.gguf", b.p, b.len);

    header(&b, 3, 0, 2);
    kv_u32(&b, "k", 1);
    kv_u32(&b, "k", 2);
    save(dir, "dup-key.gguf", b.p, b.len);

    header(&b, 3, 0, 1);
    kv_u32(&b, "general.alignment", 48);
    save(dir, "bad-alignment.gguf", b.p, b.len);

    header(&b, 3, 0, 1);
    put_str(&b, "s");
    put_u32(&b, EM_GGUF_STRING);
    put_u64(&b, 1ull << 62);
    save(dir, "long-string.gguf", b.p, b.len);

    one_tensor(dir, "five-dims.gguf", &b, 5, 8, EM_TYPE_F32, 0, 32);
    one_tensor(dir, "bad-type.gguf", &b, 1, 8, 99, 0, 32);
    one_tensor(dir, "bad-block.gguf", &b, 1, 33, EM_TYPE_Q8_0, 0, 64);
    one_tensor(dir, "unaligned.gguf", &b, 1, 8, EM_TYPE_F32, 4, 64);

    header(&b, 3, 2, 0);
    tinfo(&b, "a", 1, 16, EM_TYPE_F32, 0);
    tinfo(&b, "b", 1, 16, EM_TYPE_F32, 32);
    data(&b, 128);
    save(dir, "overlap.gguf", b.p, b.len);

    header(&b, 3, 2, 0);
    tinfo(&b, "a", 1, 8, EM_TYPE_F32, 0);
    tinfo(&b, "a", 1, 8, EM_TYPE_F32, 32);
    data(&b, 64);
    save(dir, "dup-tensor.gguf", b.p, b.len);

    one_tensor(dir, "huge-shape.gguf", &b, 2, 1ull << 62, EM_TYPE_F32, 0, 32);
    free(b.p);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: gguf_seeds OUTDIR\n");
        return 2;
    }
    every_type(argv[1]);
    tensors(argv[1], 32, "tensors");
    tensors(argv[1], 64, "tensors-align64");
    tensors(argv[1], 1, "tensors-align1");
    broken(argv[1]);
    return failures ? 1 : 0;
}
