/*
 * writer.c - builds a GGUF v3 file from metadata and tensors held in
 * memory.
 *
 * Each metadata value is kept already encoded (the bytes that follow the
 * value type in the file), which makes every setter, replacing a key and
 * copying keys from a reader the same simple operation.  Tensors are
 * copied in and written in the order they were added: tensor k's offset
 * is the sum of the sizes of tensors 0..k-1, each padded to the
 * alignment, which is the layout llama.cpp's loader insists on.  The data
 * section and every tensor's data are padded with zeros to the alignment.
 */
#include "gguf/gguf.h"
#include "quant/quant.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* llama.cpp keeps tensor names in a fixed 64-byte buffer with a NUL, so
 * longer names would make files it refuses. */
#define MAX_TENSOR_NAME 63

typedef struct wkv {
    char *key;
    em_gguf_type type;
    uint8_t *val;   /* [len] the value's encoding */
    size_t len;
} wkv;

typedef struct wtensor {
    char *name;
    em_type type;
    uint32_t n_dims;
    int64_t ne[EM_GGUF_MAX_DIMS]; /* elements per dim, ne[0] innermost */
    uint8_t *data;                /* [size] copied tensor data          */
    uint64_t size;
} wtensor;

struct em_gguf_writer {
    wkv *kv;   /* [n_kv] in insertion order */
    size_t n_kv, cap_kv;
    wtensor *t; /* [n_t] in insertion order */
    size_t n_t, cap_t;
    uint32_t alignment;
};

/* ------------------------------------------------------------ encoding */

/* A growable byte buffer that remembers an allocation failure. */
typedef struct bytes {
    uint8_t *p;
    size_t len, cap;
    bool failed;
} bytes;

static void b_put(bytes *b, const void *src, size_t n) {
    if (b->failed || n == 0) return;
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) {
                b->failed = true;
                return;
            }
            cap *= 2;
        }
        uint8_t *np = realloc(b->p, cap);
        if (!np) {
            b->failed = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void b_u32(bytes *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    b_put(b, x, 4);
}

static void b_u64(bytes *b, uint64_t v) {
    b_u32(b, (uint32_t)v);
    b_u32(b, (uint32_t)(v >> 32));
}

static void b_str(bytes *b, const char *s, size_t n) {
    b_u64(b, n);
    b_put(b, s, n);
}

/* Fixed-size elements are stored little-endian, as ember's hosts are;
 * copying them unchanged is the encoding. */
static void b_elems(bytes *b, em_gguf_type t, const void *data, uint64_t n) {
    b_u32(b, (uint32_t)t);
    b_u64(b, n);
    b_put(b, data, (size_t)(n * em_gguf_type_size(t)));
}

/* ------------------------------------------------------------- lifetime */

em_status em_gguf_writer_init(em_gguf_writer **out) {
    if (!out) return em_error(EM_ERR_INVALID_ARG, "gguf: writer_init needs an output");
    em_gguf_writer *w = calloc(1, sizeof *w);
    if (!w) return em_error(EM_ERR_NOMEM, "gguf: out of memory");
    w->alignment = EM_GGUF_DEFAULT_ALIGNMENT;
    *out = w;
    return EM_OK;
}

void em_gguf_writer_free(em_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val);
    }
    free(w->kv);
    for (size_t i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    free(w->t);
    free(w);
}

/* ------------------------------------------------------------- metadata */

static int64_t find_kv(const em_gguf_writer *w, const char *key) {
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) return (int64_t)i;
    return -1;
}

/* Stores key = (type, encoded value), taking ownership of enc's buffer. */
static em_status put_kv(em_gguf_writer *w, const char *key, em_gguf_type type, bytes *enc) {
    if (enc->failed) {
        free(enc->p);
        return em_error(EM_ERR_NOMEM, "gguf: out of memory encoding key '%s'", key);
    }
    int64_t i = find_kv(w, key);
    if (i >= 0) {
        free(w->kv[i].val);
        w->kv[i].type = type;
        w->kv[i].val = enc->p;
        w->kv[i].len = enc->len;
        return EM_OK;
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 16;
        wkv *nk = realloc(w->kv, cap * sizeof *nk);
        if (!nk) {
            free(enc->p);
            return em_error(EM_ERR_NOMEM, "gguf: out of memory adding key '%s'", key);
        }
        w->kv = nk;
        w->cap_kv = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(enc->p);
        return em_error(EM_ERR_NOMEM, "gguf: out of memory adding key '%s'", key);
    }
    w->kv[w->n_kv++] = (wkv){k, type, enc->p, enc->len};
    return EM_OK;
}

static em_status set_scalar(em_gguf_writer *w, const char *key, em_gguf_type t, const void *v) {
    if (!w || !key) return em_error(EM_ERR_INVALID_ARG, "gguf: set needs a writer and a key");
    /* general.alignment decides the layout; keep the writer's alignment
     * and the key in step, and refuse values llama.cpp would refuse. */
    if (!strcmp(key, "general.alignment")) {
        uint32_t a;
        if (t != EM_GGUF_UINT32)
            return em_error(EM_ERR_INVALID_ARG, "gguf: general.alignment must be a u32");
        memcpy(&a, v, 4);
        if (a == 0 || (a & (a - 1)))
            return em_error(EM_ERR_INVALID_ARG,
                            "gguf: general.alignment %u is not a nonzero power of two", a);
        w->alignment = a;
    }
    bytes b = {0};
    b_put(&b, v, em_gguf_type_size(t));
    return put_kv(w, key, t, &b);
}

void em_gguf_writer_set_alignment(em_gguf_writer *w, uint32_t alignment) {
    /* A bad value is ignored (the signature cannot report it) and the
     * default stays: a file with that alignment would be unreadable. */
    if (set_scalar(w, "general.alignment", EM_GGUF_UINT32, &alignment))
        em_log(EM_LOG_WARN, "%s", em_last_error());
}

/* em_gguf_set_u8, _i8, _u16, _i16, _i32, _u32, _u64, _i64, _f32 and _f64:
 * each stores v as one scalar of its GGUF type. */
#define GGUF_SETTER(name, ctype, gtype)                                                            \
    em_status em_gguf_set_##name(em_gguf_writer *w, const char *key, ctype v) {                   \
        return set_scalar(w, key, gtype, &v);                                                      \
    }
GGUF_SETTER(u8, uint8_t, EM_GGUF_UINT8)
GGUF_SETTER(i8, int8_t, EM_GGUF_INT8)
GGUF_SETTER(u16, uint16_t, EM_GGUF_UINT16)
GGUF_SETTER(i16, int16_t, EM_GGUF_INT16)
GGUF_SETTER(i32, int32_t, EM_GGUF_INT32)
GGUF_SETTER(u32, uint32_t, EM_GGUF_UINT32)
GGUF_SETTER(u64, uint64_t, EM_GGUF_UINT64)
GGUF_SETTER(i64, int64_t, EM_GGUF_INT64)
GGUF_SETTER(f32, float, EM_GGUF_FLOAT32)
GGUF_SETTER(f64, double, EM_GGUF_FLOAT64)
#undef GGUF_SETTER

em_status em_gguf_set_bool(em_gguf_writer *w, const char *key, bool v) {
    uint8_t b = v ? 1 : 0; /* GGUF stores a bool as one byte, 0 or 1 */
    return set_scalar(w, key, EM_GGUF_BOOL, &b);
}

em_status em_gguf_set_str(em_gguf_writer *w, const char *key, const char *v) {
    if (!w || !key || !v)
        return em_error(EM_ERR_INVALID_ARG, "gguf: set_str needs a writer, key and value");
    if (!strcmp(key, "general.alignment"))
        return em_error(EM_ERR_INVALID_ARG, "gguf: general.alignment must be a u32");
    bytes b = {0};
    b_str(&b, v, strlen(v));
    return put_kv(w, key, EM_GGUF_STRING, &b);
}

/* Checks an array's element type and that n elements of it fit memory. */
static em_status check_fixed_arr(const char *key, em_gguf_type t, const void *data, uint64_t n) {
    size_t es = em_gguf_type_size(t);
    if (!es)
        return em_error(EM_ERR_INVALID_ARG,
                        "gguf: key '%s': array element type %s is not a fixed-size type", key,
                        em_gguf_type_name(t));
    uint64_t bytes_n;
    if (!em_mul_ok(n, es, &bytes_n) || bytes_n > SIZE_MAX / 2)
        return em_error(EM_ERR_INVALID_ARG, "gguf: key '%s': array of %llu elements is too large",
                        key, (unsigned long long)n);
    if (n && !data) return em_error(EM_ERR_INVALID_ARG, "gguf: key '%s': array data is NULL", key);
    return EM_OK;
}

static bool is_alignment_key(const char *key) { return !strcmp(key, "general.alignment"); }

em_status em_gguf_set_arr(em_gguf_writer *w, const char *key, em_gguf_type elem_type,
                          const void *data, uint64_t n) {
    if (!w || !key) return em_error(EM_ERR_INVALID_ARG, "gguf: set_arr needs a writer and a key");
    if (is_alignment_key(key))
        return em_error(EM_ERR_INVALID_ARG, "gguf: general.alignment must be a u32");
    em_status st = check_fixed_arr(key, elem_type, data, n);
    if (st) return st;
    bytes b = {0};
    b_elems(&b, elem_type, data, n);
    return put_kv(w, key, EM_GGUF_ARRAY, &b);
}

em_status em_gguf_set_arr_str(em_gguf_writer *w, const char *key, const char *const *strs,
                              uint64_t n) {
    if (!w || !key || (n && !strs))
        return em_error(EM_ERR_INVALID_ARG, "gguf: set_arr_str needs a writer, key and strings");
    if (is_alignment_key(key))
        return em_error(EM_ERR_INVALID_ARG, "gguf: general.alignment must be a u32");
    bytes b = {0};
    b_u32(&b, EM_GGUF_STRING);
    b_u64(&b, n);
    for (uint64_t i = 0; i < n; i++) {
        if (!strs[i]) {
            free(b.p);
            return em_error(EM_ERR_INVALID_ARG, "gguf: key '%s': string %llu is NULL", key,
                            (unsigned long long)i);
        }
        b_str(&b, strs[i], strlen(strs[i]));
    }
    return put_kv(w, key, EM_GGUF_ARRAY, &b);
}

em_status em_gguf_set_arr_nested(em_gguf_writer *w, const char *key, const em_gguf_arr *arrs,
                                 uint64_t n) {
    if (!w || !key || (n && !arrs))
        return em_error(EM_ERR_INVALID_ARG, "gguf: set_arr_nested needs a writer, key and arrays");
    if (is_alignment_key(key))
        return em_error(EM_ERR_INVALID_ARG, "gguf: general.alignment must be a u32");
    bytes b = {0};
    b_u32(&b, EM_GGUF_ARRAY);
    b_u64(&b, n);
    for (uint64_t i = 0; i < n; i++) {
        em_status st = check_fixed_arr(key, arrs[i].elem_type, arrs[i].data, arrs[i].n);
        if (st) {
            free(b.p);
            return st;
        }
        b_elems(&b, arrs[i].elem_type, arrs[i].data, arrs[i].n);
    }
    return put_kv(w, key, EM_GGUF_ARRAY, &b);
}

em_status em_gguf_copy_kv(em_gguf_writer *w, const em_gguf *src) {
    if (!w || !src) return em_error(EM_ERR_INVALID_ARG, "gguf: copy_kv needs a writer and a reader");
    for (int64_t i = 0; i < em_gguf_n_kv(src); i++) {
        em_gguf_str k = em_gguf_key(src, i);
        /* Keys are C strings in this API, so one with a NUL inside could
         * only be copied under a different name. */
        if (memchr(k.ptr, 0, k.len))
            return em_error(EM_ERR_INVALID_ARG, "gguf: cannot copy key #%lld: it contains a NUL byte",
                            (long long)i);
        char *key = malloc(k.len + 1);
        if (!key) return em_error(EM_ERR_NOMEM, "gguf: out of memory copying keys");
        memcpy(key, k.ptr, k.len);
        key[k.len] = '\0';
        em_status st = EM_OK;
        if (find_kv(w, key) < 0) {
            em_gguf_type t = em_gguf_kv_type(src, i);
            const void *raw = em_gguf_kv_raw(src, i);
            uint64_t len = em_gguf_kv_raw_size(src, i);
            if (is_alignment_key(key)) {
                /* The reader checked it is a power-of-two u32. */
                uint32_t a;
                memcpy(&a, raw, 4);
                st = set_scalar(w, key, t, &a);
            } else {
                bytes b = {0};
                b_put(&b, raw, (size_t)len);
                st = put_kv(w, key, t, &b);
            }
        }
        free(key);
        if (st) return st;
    }
    return EM_OK;
}

/* -------------------------------------------------------------- tensors */

em_status em_gguf_add_tensor(em_gguf_writer *w, const char *name, em_type type, uint32_t n_dims,
                             const int64_t *ne, const void *data) {
    if (!w || !name || (n_dims && !ne))
        return em_error(EM_ERR_INVALID_ARG, "gguf: add_tensor needs a writer, name and shape");
    size_t nlen = strlen(name);
    if (nlen == 0 || nlen > MAX_TENSOR_NAME)
        return em_error(EM_ERR_INVALID_ARG,
                        "gguf: tensor name '%.80s' must have 1 to %d bytes", name, MAX_TENSOR_NAME);
    if (n_dims < 1 || n_dims > EM_GGUF_MAX_DIMS)
        return em_error(EM_ERR_INVALID_ARG, "gguf: tensor '%s': n_dims %u not in 1..%d", name,
                        n_dims, EM_GGUF_MAX_DIMS);
    const em_type_traits *tr = em_get_type_traits(type);
    if (!tr) return em_error(EM_ERR_INVALID_ARG, "gguf: tensor '%s': unknown type id %d", name, (int)type);
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name))
            return em_error(EM_ERR_INVALID_ARG, "gguf: duplicate tensor name '%s'", name);
    wtensor t = {0};
    t.type = type;
    t.n_dims = n_dims;
    uint64_t rows = 1;
    for (int d = 0; d < EM_GGUF_MAX_DIMS; d++) t.ne[d] = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] <= 0)
            return em_error(EM_ERR_INVALID_ARG, "gguf: tensor '%s': dimension %u is %lld", name, d,
                            (long long)ne[d]);
        t.ne[d] = ne[d];
        if (d > 0 && (!em_mul_ok(rows, (uint64_t)ne[d], &rows) || rows > (uint64_t)INT64_MAX))
            return em_error(EM_ERR_INVALID_ARG, "gguf: tensor '%s': shape overflows", name);
    }
    if (ne[0] % tr->block_size)
        return em_error(EM_ERR_INVALID_ARG,
                        "gguf: tensor '%s': ne[0] = %lld is not a multiple of %s's block size %lld",
                        name, (long long)ne[0], tr->name, (long long)tr->block_size);
    size_t row = em_row_size(type, ne[0]);
    if (row == 0 || !em_mul_ok(row, rows, &t.size) || t.size > SIZE_MAX / 2)
        return em_error(EM_ERR_INVALID_ARG, "gguf: tensor '%s': size overflows", name);
    if (!data) return em_error(EM_ERR_INVALID_ARG, "gguf: tensor '%s': data is NULL", name);

    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 16;
        wtensor *nt = realloc(w->t, cap * sizeof *nt);
        if (!nt) return em_error(EM_ERR_NOMEM, "gguf: out of memory adding tensor '%s'", name);
        w->t = nt;
        w->cap_t = cap;
    }
    t.name = strdup(name);
    t.data = malloc((size_t)t.size);
    if (!t.name || !t.data) {
        free(t.name);
        free(t.data);
        return em_error(EM_ERR_NOMEM, "gguf: out of memory for tensor '%s' (%llu bytes)", name,
                        (unsigned long long)t.size);
    }
    memcpy(t.data, data, (size_t)t.size);
    w->t[w->n_t++] = t;
    return EM_OK;
}

/* -------------------------------------------------------------- writing */

static uint64_t pad_to(uint64_t n, uint64_t a) { return (a - n % a) % a; }

/* Everything before the data section: header, metadata, tensor table and
 * the padding after it. */
static em_status encode_head(const em_gguf_writer *w, bytes *b) {
    b_put(b, "GGUF", 4);
    b_u32(b, 3);
    b_u64(b, w->n_t);
    b_u64(b, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        b_str(b, w->kv[i].key, strlen(w->kv[i].key));
        b_u32(b, (uint32_t)w->kv[i].type);
        b_put(b, w->kv[i].val, w->kv[i].len);
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        b_str(b, t->name, strlen(t->name));
        b_u32(b, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) b_u64(b, (uint64_t)t->ne[d]);
        b_u32(b, (uint32_t)t->type);
        b_u64(b, offset);
        offset += t->size + pad_to(t->size, w->alignment);
    }
    static const uint8_t zeros[256];
    for (uint64_t pad = pad_to(b->len, w->alignment); pad > 0;) {
        uint64_t k = EM_MIN(pad, (uint64_t)sizeof zeros);
        b_put(b, zeros, (size_t)k);
        pad -= k;
    }
    if (b->failed) return em_error(EM_ERR_NOMEM, "gguf: out of memory encoding the header");
    return EM_OK;
}

/* Writes head and the padded tensor data through put(ctx, bytes, n). */
typedef bool (*sink_fn)(void *ctx, const void *p, size_t n);

static bool emit(const em_gguf_writer *w, const bytes *head, sink_fn put, void *ctx) {
    static const uint8_t zeros[256];
    if (!put(ctx, head->p, head->len)) return false;
    for (size_t i = 0; i < w->n_t; i++) {
        if (!put(ctx, w->t[i].data, (size_t)w->t[i].size)) return false;
        for (uint64_t pad = pad_to(w->t[i].size, w->alignment); pad > 0;) {
            uint64_t k = EM_MIN(pad, (uint64_t)sizeof zeros);
            if (!put(ctx, zeros, (size_t)k)) return false;
            pad -= k;
        }
    }
    return true;
}

static bool put_file(void *ctx, const void *p, size_t n) {
    return n == 0 || fwrite(p, 1, n, (FILE *)ctx) == n;
}

static bool put_bytes(void *ctx, const void *p, size_t n) {
    bytes *b = ctx;
    b_put(b, p, n);
    return !b->failed;
}

em_status em_gguf_write(const em_gguf_writer *w, const char *path) {
    if (!w || !path) return em_error(EM_ERR_INVALID_ARG, "gguf: write needs a writer and a path");
    bytes head = {0};
    em_status st = encode_head(w, &head);
    if (st) {
        free(head.p);
        return st;
    }
    FILE *f = fopen(path, "wb");
    if (!f) {
        int e = errno;
        free(head.p);
        return em_error(EM_ERR_IO, "gguf: cannot create '%s': %s", path, strerror(e));
    }
    bool ok = emit(w, &head, put_file, f);
    int e = errno;
    free(head.p);
    if (fclose(f) != 0 && ok) {
        ok = false;
        e = errno;
    }
    if (!ok) {
        /* A partial file would look like a truncated model later. */
        unlink(path);
        return em_error(EM_ERR_IO, "gguf: cannot write '%s': %s", path, strerror(e));
    }
    return EM_OK;
}

em_status em_gguf_write_memory(const em_gguf_writer *w, void **out, size_t *size) {
    if (!w || !out || !size)
        return em_error(EM_ERR_INVALID_ARG, "gguf: write_memory needs a writer and outputs");
    bytes head = {0};
    em_status st = encode_head(w, &head);
    if (st) {
        free(head.p);
        return st;
    }
    bytes all = {0};
    bool ok = emit(w, &head, put_bytes, &all);
    free(head.p);
    if (!ok) {
        free(all.p);
        return em_error(EM_ERR_NOMEM, "gguf: out of memory writing the file to memory");
    }
    *out = all.p;
    *size = all.len;
    return EM_OK;
}
