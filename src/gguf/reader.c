/*
 * reader.c - the GGUF reader: maps a file (or takes a caller's buffer),
 * walks the header, metadata and tensor table once, and validates every
 * field before anything uses it.
 *
 * A GGUF file (versions 2 and 3, little-endian) is laid out as
 *
 *   "GGUF"  u32 version  u64 n_tensors  u64 n_kv
 *   n_kv times:      string key, u32 value type, value
 *   n_tensors times: string name, u32 n_dims, u64 ne[n_dims], u32 type,
 *                    u64 offset (relative to the data section)
 *   padding to general.alignment, then the data section.
 *
 * where a string is a u64 byte length followed by the bytes, and an array
 * value is a u32 element type, a u64 count and the elements.
 *
 * Every read goes through a cursor that checks the bytes are there, so a
 * truncated or hostile file ends in EM_ERR_FORMAT with a one-line message
 * naming the problem and never in an out-of-bounds read.  Once open() has
 * succeeded the structure is known to be sound, so the accessors below
 * decode values without re-checking bounds.
 */
#include "gguf/gguf.h"
#include "quant/quant.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAGIC "GGUF"

/* The smallest encodings, used to reject absurd counts before allocating:
 * a key/value pair needs at least a key length, a type and one byte of
 * value; a tensor entry a name length, n_dims, type and offset; a string
 * its length; an array its element type and count. */
#define MIN_KV_BYTES (8 + 4 + 1)
#define MIN_TENSOR_BYTES (8 + 4 + 4 + 8)
#define MIN_STRING_BYTES 8
#define MIN_ARRAY_BYTES (4 + 8)

/* One metadata entry.  Pointers go into the mapping. */
typedef struct gguf_kv {
    em_gguf_str key;
    em_gguf_type type;
    const uint8_t *val;   /* the value's encoding                          */
    uint64_t val_size;    /* bytes of that encoding                        */
    /* Arrays only: */
    em_gguf_type elem_type;
    uint64_t n;           /* elements                                      */
    const uint8_t *elems; /* first element                                 */
    const uint8_t **items; /* [n] start of each element, for STRING/ARRAY
                              elements so that element i is O(1); else NULL */
} gguf_kv;

/* An open-addressing table from name to index, for duplicate detection and
 * lookups; hostile files may hold millions of entries, so this must not be
 * quadratic. */
typedef struct name_table {
    int64_t *slots; /* [cap] index + 1, 0 = empty */
    uint64_t cap;   /* power of two                */
    uint64_t used;  /* filled slots                */
} name_table;

struct em_gguf {
    const uint8_t *base; /* [size] the whole file */
    uint64_t size;
    bool mapped;         /* base came from mmap and is unmapped at close */
    bool locked;         /* base was mlock'ed (em_gguf_lock)              */
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;

    gguf_kv *kv;          /* [n_kv] */
    int64_t n_kv;
    name_table kv_names;

    em_gguf_tensor *tensors; /* [n_tensors] */
    int64_t n_tensors;
    name_table tensor_names;

    /* A split model's other parts (em_gguf_open_parts): their tensors are
     * appended to tensors[] above and point into their own mappings. */
    struct em_gguf **parts; /* [n_parts] */
    int n_parts;
};

/* ------------------------------------------------------------ helpers */

static uint32_t rd_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint64_t rd_u64(const uint8_t *p) {
    return (uint64_t)rd_u32(p) | (uint64_t)rd_u32(p + 4) << 32;
}

size_t em_gguf_type_size(em_gguf_type t) {
    switch (t) {
    case EM_GGUF_UINT8: case EM_GGUF_INT8: case EM_GGUF_BOOL: return 1;
    case EM_GGUF_UINT16: case EM_GGUF_INT16: return 2;
    case EM_GGUF_UINT32: case EM_GGUF_INT32: case EM_GGUF_FLOAT32: return 4;
    case EM_GGUF_UINT64: case EM_GGUF_INT64: case EM_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

const char *em_gguf_type_name(em_gguf_type t) {
    static const char *names[EM_GGUF_TYPE_COUNT] = {
        "u8", "i8", "u16", "i16", "u32", "i32", "f32",
        "bool", "str", "arr", "u64", "i64", "f64"};
    if ((unsigned)t >= EM_GGUF_TYPE_COUNT) return "?";
    return names[t];
}

bool em_gguf_str_eq(em_gguf_str s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && memcmp(s.ptr, c, n) == 0;
}

/* Copies a name from the file into buf for an error message: printable
 * ASCII only (a hostile name must not break the one-line promise) and at
 * most 64 characters. */
static const char *show(em_gguf_str s, char *buf, size_t size) {
    size_t o = 0;
    uint64_t i;
    for (i = 0; i < s.len && o + 4 < size && i < 64; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        buf[o++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    if (i < s.len) {
        o = EM_MIN(o, size - 4);
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}

static uint64_t hash_str(const char *p, uint64_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (uint64_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* Finds name; name_of(g, i) gives entry i's name.  Returns the slot where
 * it is or where it would go, and *found the index (-1 when absent). */
typedef em_gguf_str (*name_of_fn)(const em_gguf *g, int64_t i);

static uint64_t table_probe(const name_table *t, const em_gguf *g, name_of_fn name_of,
                            const char *p, uint64_t n, int64_t *found) {
    uint64_t mask = t->cap - 1;
    uint64_t slot = hash_str(p, n) & mask;
    for (;;) {
        int64_t v = t->slots[slot];
        if (v == 0) {
            *found = -1;
            return slot;
        }
        em_gguf_str s = name_of(g, v - 1);
        if (s.len == n && memcmp(s.ptr, p, n) == 0) {
            *found = v - 1;
            return slot;
        }
        slot = (slot + 1) & mask;
    }
}

static em_gguf_str kv_name(const em_gguf *g, int64_t i) { return g->kv[i].key; }
static em_gguf_str tensor_name(const em_gguf *g, int64_t i) { return g->tensors[i].name; }

/* Adds entry idx under its name, or gives *dup, the entry that already has
 * it.  The table grows as entries arrive (kept at most half full), so its
 * size follows what the file really holds, not what its header claims. */
static em_status table_add(name_table *t, const em_gguf *g, name_of_fn name_of, int64_t idx,
                           int64_t *dup) {
    if (2 * (t->used + 1) > t->cap) {
        uint64_t cap = t->cap ? 2 * t->cap : 64;
        int64_t *slots = calloc(cap, sizeof *slots);
        if (!slots) return em_error(EM_ERR_NOMEM, "gguf: out of memory for a name table");
        for (uint64_t k = 0; k < t->cap; k++) {
            if (!t->slots[k]) continue;
            em_gguf_str s = name_of(g, t->slots[k] - 1);
            uint64_t slot = hash_str(s.ptr, s.len) & (cap - 1);
            while (slots[slot]) slot = (slot + 1) & (cap - 1);
            slots[slot] = t->slots[k];
        }
        free(t->slots);
        t->slots = slots;
        t->cap = cap;
    }
    em_gguf_str s = name_of(g, idx);
    uint64_t slot = table_probe(t, g, name_of, s.ptr, s.len, dup);
    if (*dup < 0) {
        t->slots[slot] = idx + 1;
        t->used++;
    }
    return EM_OK;
}

/* Makes room for entry n of an array of elem-byte entries (zeroed), doubling
 * as entries arrive, for the same reason. */
static em_status grow(void **arr, uint64_t *cap, uint64_t n, size_t elem, const char *what) {
    if (n < *cap) return EM_OK;
    uint64_t ncap = *cap ? 2 * *cap : 16;
    void *p = realloc(*arr, ncap * elem);
    if (!p) return em_error(EM_ERR_NOMEM, "gguf: out of memory for %s", what);
    memset((char *)p + *cap * elem, 0, (ncap - *cap) * elem);
    *arr = p;
    *cap = ncap;
    return EM_OK;
}

/* --------------------------------------------------------------- cursor */

typedef struct cursor {
    const uint8_t *base;
    uint64_t size;
    uint64_t pos;
} cursor;

static bool cur_has(const cursor *c, uint64_t n) { return n <= c->size - c->pos; }

/* The error for a read of `what` that does not fit: names the offset and
 * the file's size. */
static em_status cur_eof(const cursor *c, const char *ctx, const char *what) {
    return em_error(EM_ERR_FORMAT, "gguf: %s%s runs past end of file (offset %llu, size %llu)",
                    ctx, what, (unsigned long long)c->pos, (unsigned long long)c->size);
}

static em_status cur_u32(cursor *c, uint32_t *v, const char *ctx, const char *what) {
    if (!cur_has(c, 4)) return cur_eof(c, ctx, what);
    *v = rd_u32(c->base + c->pos);
    c->pos += 4;
    return EM_OK;
}

static em_status cur_u64(cursor *c, uint64_t *v, const char *ctx, const char *what) {
    if (!cur_has(c, 8)) return cur_eof(c, ctx, what);
    *v = rd_u64(c->base + c->pos);
    c->pos += 8;
    return EM_OK;
}

static em_status cur_str(cursor *c, em_gguf_str *s, const char *ctx, const char *what) {
    uint64_t len = 0;
    char w[96];
    snprintf(w, sizeof w, "%s length", what);
    em_status st = cur_u64(c, &len, ctx, w);
    if (st) return st;
    if (!cur_has(c, len))
        return em_error(EM_ERR_FORMAT,
                        "gguf: %s%s of length %llu runs past end of file (offset %llu, size %llu)",
                        ctx, what, (unsigned long long)len, (unsigned long long)c->pos,
                        (unsigned long long)c->size);
    s->ptr = (const char *)c->base + c->pos;
    s->len = len;
    c->pos += len;
    return EM_OK;
}

/* ------------------------------------------------------------- values */

/*
 * Checks one value of type t at the cursor and moves past it.  For arrays,
 * *arr (when not NULL) receives the element type, count and first element,
 * and its items a table of element starts when the elements are strings or
 * arrays.  depth counts enclosing arrays.
 */
static const uint8_t *skip_value(const uint8_t *p, em_gguf_type t);

static em_status parse_value(cursor *c, em_gguf_type t, int depth, const char *ctx,
                             gguf_kv *arr) {
    size_t fixed = em_gguf_type_size(t);
    if (fixed) {
        if (!cur_has(c, fixed)) return cur_eof(c, ctx, "value");
        c->pos += fixed;
        return EM_OK;
    }
    if (t == EM_GGUF_STRING) {
        em_gguf_str s;
        return cur_str(c, &s, ctx, "string");
    }
    if (t != EM_GGUF_ARRAY)
        return em_error(EM_ERR_FORMAT, "gguf: %sunknown value type %u", ctx, (unsigned)t);

    if (depth >= EM_GGUF_MAX_DEPTH)
        return em_error(EM_ERR_FORMAT, "gguf: %sarrays nested deeper than %d levels (offset %llu)",
                        ctx, EM_GGUF_MAX_DEPTH, (unsigned long long)c->pos);
    uint32_t et = 0;
    uint64_t n = 0;
    em_status st = cur_u32(c, &et, ctx, "array element type");
    if (!st) st = cur_u64(c, &n, ctx, "array length");
    if (st) return st;
    if (et >= EM_GGUF_TYPE_COUNT)
        return em_error(EM_ERR_FORMAT, "gguf: %sunknown array element type %u (offset %llu)", ctx,
                        (unsigned)et, (unsigned long long)(c->pos - 12));
    uint64_t left = c->size - c->pos;
    size_t esize = em_gguf_type_size((em_gguf_type)et);
    uint64_t min_elem = esize ? esize : et == EM_GGUF_STRING ? MIN_STRING_BYTES : MIN_ARRAY_BYTES;
    if (n > left / min_elem)
        return em_error(EM_ERR_FORMAT,
                        "gguf: %sarray of %llu %s elements runs past end of file (offset %llu, size %llu)",
                        ctx, (unsigned long long)n, em_gguf_type_name((em_gguf_type)et),
                        (unsigned long long)c->pos, (unsigned long long)c->size);
    if (arr) {
        arr->elem_type = (em_gguf_type)et;
        arr->n = n;
        arr->elems = c->base + c->pos;
        arr->items = NULL;
    }
    if (esize) {
        c->pos += n * esize; /* n * esize <= left: checked above */
        return EM_OK;
    }
    for (uint64_t i = 0; i < n; i++) {
        st = parse_value(c, (em_gguf_type)et, depth + 1, ctx, NULL);
        if (st) return st;
    }
    /* The index is built only now that the elements are known to be
     * there, so its size is bounded by the file's real content. */
    if (arr && n > 0) {
        arr->items = malloc(n * sizeof *arr->items);
        if (!arr->items)
            return em_error(EM_ERR_NOMEM, "gguf: %sout of memory for %llu array elements", ctx,
                            (unsigned long long)n);
        const uint8_t *p = arr->elems;
        for (uint64_t i = 0; i < n; i++) {
            arr->items[i] = p;
            p = skip_value(p, (em_gguf_type)et);
        }
    }
    return EM_OK;
}

/* Moves past a value already validated by parse_value. */
static const uint8_t *skip_value(const uint8_t *p, em_gguf_type t) {
    size_t fixed = em_gguf_type_size(t);
    if (fixed) return p + fixed;
    if (t == EM_GGUF_STRING) return p + 8 + rd_u64(p);
    /* An array. */
    em_gguf_type et = (em_gguf_type)rd_u32(p);
    uint64_t n = rd_u64(p + 4);
    p += 12;
    size_t esize = em_gguf_type_size(et);
    if (esize) return p + n * esize;
    for (uint64_t i = 0; i < n; i++) p = skip_value(p, et);
    return p;
}

/* -------------------------------------------------------------- parsing */

static em_status parse_header(em_gguf *g, cursor *c, uint64_t *n_tensors, uint64_t *n_kv) {
    if (c->size < 4 || memcmp(c->base, GGUF_MAGIC, 4) != 0)
        return em_error(EM_ERR_FORMAT, "gguf: not a GGUF file (bad magic%s)",
                        c->size < 4 ? ": file shorter than 4 bytes" : "");
    c->pos = 4;
    em_status st = cur_u32(c, &g->version, "", "version");
    if (st) return st;
    uint32_t v = g->version;
    /* A big-endian writer stores the version byte-swapped: 2 becomes
     * 0x02000000.  Name that case instead of calling it an odd version. */
    if ((v & 0xffffu) == 0 && (v >> 24) >= 1 && (v >> 24) <= 3 && ((v >> 16) & 0xff) == 0)
        return em_error(EM_ERR_FORMAT,
                        "gguf: big-endian GGUF files are not supported (version field 0x%08x)", v);
    if (v == 1)
        return em_error(EM_ERR_FORMAT,
                        "gguf: GGUF version 1 is not supported (only versions 2 and 3); "
                        "convert the file with a current tool");
    if (v != 2 && v != 3)
        return em_error(EM_ERR_FORMAT, "gguf: unsupported GGUF version %u (only 2 and 3)", v);
    st = cur_u64(c, n_tensors, "", "tensor count");
    if (!st) st = cur_u64(c, n_kv, "", "metadata count");
    if (st) return st;
    uint64_t left = c->size - c->pos;
    if (*n_kv > left / MIN_KV_BYTES)
        return em_error(EM_ERR_FORMAT,
                        "gguf: header claims %llu metadata entries but the file (size %llu) can hold at most %llu",
                        (unsigned long long)*n_kv, (unsigned long long)c->size,
                        (unsigned long long)(left / MIN_KV_BYTES));
    if (*n_tensors > left / MIN_TENSOR_BYTES)
        return em_error(EM_ERR_FORMAT,
                        "gguf: header claims %llu tensors but the file (size %llu) can hold at most %llu",
                        (unsigned long long)*n_tensors, (unsigned long long)c->size,
                        (unsigned long long)(left / MIN_TENSOR_BYTES));
    return EM_OK;
}

static em_status parse_kvs(em_gguf *g, cursor *c, uint64_t n_kv) {
    uint64_t cap = 0;
    em_status st = EM_OK;
    char ctx[160], nb[80];
    for (uint64_t i = 0; i < n_kv; i++) {
        st = grow((void **)&g->kv, &cap, i, sizeof *g->kv, "metadata");
        if (st) return st;
        gguf_kv *kv = &g->kv[i];
        snprintf(ctx, sizeof ctx, "metadata entry %llu: ", (unsigned long long)i);
        st = cur_str(c, &kv->key, ctx, "key");
        if (st) return st;
        snprintf(ctx, sizeof ctx, "key '%s': ", show(kv->key, nb, sizeof nb));
        g->n_kv = (int64_t)i + 1; /* so that close() frees this entry's items */
        int64_t dup = -1;
        st = table_add(&g->kv_names, g, kv_name, (int64_t)i, &dup);
        if (st) return st;
        if (dup >= 0)
            return em_error(EM_ERR_FORMAT, "gguf: duplicate key '%s' (entries %lld and %llu)", nb,
                            (long long)dup, (unsigned long long)i);
        uint32_t t = 0;
        st = cur_u32(c, &t, ctx, "value type");
        if (st) return st;
        if (t >= EM_GGUF_TYPE_COUNT)
            return em_error(EM_ERR_FORMAT, "gguf: %sunknown value type %u", ctx, (unsigned)t);
        kv->type = (em_gguf_type)t;
        kv->val = c->base + c->pos;
        st = parse_value(c, kv->type, 0, ctx, kv->type == EM_GGUF_ARRAY ? kv : NULL);
        if (st) return st;
        kv->val_size = (uint64_t)(c->base + c->pos - kv->val);
    }
    g->n_kv = (int64_t)n_kv;

    /* The alignment governs where the data section starts, so it is
     * checked here, before the tensor table needs it. */
    g->alignment = EM_GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = em_gguf_find_key(g, "general.alignment");
    if (ai >= 0) {
        if (g->kv[ai].type != EM_GGUF_UINT32)
            return em_error(EM_ERR_FORMAT, "gguf: general.alignment has type %s, must be u32",
                            em_gguf_type_name(g->kv[ai].type));
        uint32_t a = rd_u32(g->kv[ai].val);
        if (a == 0 || (a & (a - 1)) != 0)
            return em_error(EM_ERR_FORMAT,
                            "gguf: general.alignment %u is not a nonzero power of two", a);
        g->alignment = a;
    }
    return EM_OK;
}

/* Reads one tensor entry and checks what can be checked without knowing
 * where the data section starts. */
static em_status parse_tensor_info(em_gguf *g, cursor *c, uint64_t i) {
    em_gguf_tensor *t = &g->tensors[i];
    char ctx[160], nb[80];
    snprintf(ctx, sizeof ctx, "tensor entry %llu: ", (unsigned long long)i);
    em_status st = cur_str(c, &t->name, ctx, "name");
    if (st) return st;
    show(t->name, nb, sizeof nb);
    snprintf(ctx, sizeof ctx, "tensor '%s': ", nb);

    g->n_tensors = (int64_t)i + 1;
    int64_t dup = -1;
    st = table_add(&g->tensor_names, g, tensor_name, (int64_t)i, &dup);
    if (st) return st;
    if (dup >= 0)
        return em_error(EM_ERR_FORMAT, "gguf: duplicate tensor name '%s' (entries %lld and %llu)",
                        nb, (long long)dup, (unsigned long long)i);

    st = cur_u32(c, &t->n_dims, ctx, "n_dims");
    if (st) return st;
    if (t->n_dims > EM_GGUF_MAX_DIMS)
        return em_error(EM_ERR_FORMAT, "gguf: %sn_dims %u exceeds the maximum of %d", ctx,
                        t->n_dims, EM_GGUF_MAX_DIMS);
    uint64_t n_elem = 1;
    for (int d = 0; d < EM_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t ne = 0;
        st = cur_u64(c, &ne, ctx, "shape");
        if (st) return st;
        if (ne == 0 || ne > (uint64_t)INT64_MAX)
            return em_error(EM_ERR_FORMAT, "gguf: %sdimension %u is %lld (must be positive)", ctx,
                            d, (long long)ne);
        if (!em_mul_ok(n_elem, ne, &n_elem) || n_elem > (uint64_t)INT64_MAX)
            return em_error(EM_ERR_FORMAT, "gguf: %selement count overflows int64 at dimension %u",
                            ctx, d);
        t->ne[d] = (int64_t)ne;
    }
    uint32_t type = 0;
    st = cur_u32(c, &type, ctx, "type");
    if (st) return st;
    const em_type_traits *tr = em_get_type_traits((em_type)type);
    if (!tr || tr->block_size <= 0 || tr->type_size == 0)
        return em_error(EM_ERR_FORMAT, "gguf: %sunknown or unsupported tensor type id %u", ctx, type);
    t->type = (em_type)type;
    if (t->ne[0] % tr->block_size != 0)
        return em_error(EM_ERR_FORMAT,
                        "gguf: %sne[0] = %lld is not a multiple of %s's block size %lld", ctx,
                        (long long)t->ne[0], tr->name, (long long)tr->block_size);
    uint64_t row, size;
    if (!em_mul_ok((uint64_t)(t->ne[0] / tr->block_size), tr->type_size, &row) ||
        !em_mul_ok(row, n_elem / (uint64_t)t->ne[0], &size))
        return em_error(EM_ERR_FORMAT, "gguf: %sbyte size overflows", ctx);
    /* The overflow-checked product above and the quantizer's row size must
     * agree; em_row_size is the authority on layouts. */
    if ((uint64_t)em_row_size(t->type, t->ne[0]) != row)
        return em_error(EM_ERR_INTERNAL, "gguf: %srow size disagrees with em_row_size", ctx);
    t->size = size;
    return cur_u64(c, &t->offset, ctx, "data offset");
}

static int cmp_by_offset(const void *a, const void *b) {
    const em_gguf_tensor *x = *(const em_gguf_tensor *const *)a;
    const em_gguf_tensor *y = *(const em_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static em_status parse_tensors(em_gguf *g, cursor *c, uint64_t n_tensors) {
    uint64_t cap = 0;
    em_status st = EM_OK;
    for (uint64_t i = 0; i < n_tensors; i++) {
        st = grow((void **)&g->tensors, &cap, i, sizeof *g->tensors, "the tensor table");
        if (!st) st = parse_tensor_info(g, c, i);
        if (st) return st;
    }
    g->n_tensors = (int64_t)n_tensors;

    uint64_t a = g->alignment, end;
    if (!em_add_ok(c->pos, a - 1, &end))
        return em_error(EM_ERR_FORMAT, "gguf: data section offset overflows");
    g->data_offset = end / a * a;

    char nb[80];
    for (uint64_t i = 0; i < n_tensors; i++) {
        em_gguf_tensor *t = &g->tensors[i];
        show(t->name, nb, sizeof nb);
        if (t->offset % a != 0)
            return em_error(EM_ERR_FORMAT,
                            "gguf: tensor '%s': data offset %llu is not a multiple of the alignment %u",
                            nb, (unsigned long long)t->offset, g->alignment);
        uint64_t start, stop;
        if (!em_add_ok(g->data_offset, t->offset, &start) || !em_add_ok(start, t->size, &stop) ||
            stop > g->size)
            return em_error(EM_ERR_FORMAT,
                            "gguf: tensor '%s': data [offset %llu, %llu bytes] runs past end of file (size %llu)",
                            nb, (unsigned long long)(g->data_offset + t->offset),
                            (unsigned long long)t->size, (unsigned long long)g->size);
        t->data = g->base + start;
    }

    /* Overlap: sorted by offset, each tensor must end before the next. */
    if (n_tensors > 1) {
        em_gguf_tensor **order = malloc(n_tensors * sizeof *order);
        if (!order) return em_error(EM_ERR_NOMEM, "gguf: out of memory sorting tensors");
        for (uint64_t i = 0; i < n_tensors; i++) order[i] = &g->tensors[i];
        qsort(order, n_tensors, sizeof *order, cmp_by_offset);
        for (uint64_t i = 0; i + 1 < n_tensors; i++) {
            const em_gguf_tensor *x = order[i], *y = order[i + 1];
            if (x->offset + x->size > y->offset) {
                char nb2[80];
                show(x->name, nb, sizeof nb);
                show(y->name, nb2, sizeof nb2);
                st = em_error(EM_ERR_FORMAT,
                              "gguf: tensors '%s' [offset %llu, %llu bytes] and '%s' [offset %llu] overlap",
                              nb, (unsigned long long)x->offset, (unsigned long long)x->size, nb2,
                              (unsigned long long)y->offset);
                break;
            }
        }
        free(order);
    }
    return st;
}

static em_status parse(em_gguf *g) {
    cursor c = {g->base, g->size, 0};
    uint64_t n_tensors = 0, n_kv = 0;
    em_status st = parse_header(g, &c, &n_tensors, &n_kv);
    if (!st) st = parse_kvs(g, &c, n_kv);
    if (!st) st = parse_tensors(g, &c, n_tensors);
    return st;
}

/* ---------------------------------------------------------- open/close */

static em_status open_common(em_gguf **out, const void *data, uint64_t size, bool mapped) {
    em_gguf *g = calloc(1, sizeof *g);
    if (!g) {
        if (mapped) munmap((void *)data, size);
        return em_error(EM_ERR_NOMEM, "gguf: out of memory");
    }
    g->base = data;
    g->size = size;
    g->mapped = mapped;
    em_status st = parse(g);
    if (st) {
        em_gguf_close(g);
        return st;
    }
    *out = g;
    return EM_OK;
}

em_status em_gguf_open_memory(em_gguf **out, const void *data, size_t size) {
    if (!out || (!data && size))
        return em_error(EM_ERR_INVALID_ARG, "gguf: open_memory needs an output and a buffer");
    static const uint8_t empty[1];
    return open_common(out, data ? data : empty, size, false);
}

/* Reads the whole file into fresh anonymous memory, asking for huge
 * pages (fewer TLB misses when the weights are streamed for every
 * token).  Unlike a file mapping, these pages are never dropped and read
 * back from disk behind the process's back, for instance by a kernel that
 * reclaims cold page-cache pages proactively. */
static em_status read_whole(int fd, const char *path, size_t size, void **out) {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return em_error(EM_ERR_NOMEM, "gguf: no memory to read '%s' (%zu MiB)", path, size >> 20);
#ifdef MADV_HUGEPAGE
    (void)madvise(p, size, MADV_HUGEPAGE); /* a hint: failure changes nothing */
#endif
    size_t done = 0;
    while (done < size) {
        ssize_t r = pread(fd, (char *)p + done, size - done, (off_t)done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = r < 0 ? errno : 0;
            munmap(p, size);
            return e ? em_error(EM_ERR_IO, "gguf: cannot read '%s': %s", path, strerror(e))
                     : em_error(EM_ERR_IO, "gguf: '%s' ended after %zu of %zu bytes while reading", path, done, size);
        }
        done += (size_t)r;
    }
    *out = p;
    return EM_OK;
}

static em_status open_file(em_gguf **out, const char *path, bool map) {
    if (!out || !path) return em_error(EM_ERR_INVALID_ARG, "gguf: open needs a path");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return em_error(EM_ERR_IO, "gguf: cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return em_error(EM_ERR_IO, "gguf: cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return em_error(EM_ERR_IO, "gguf: '%s' is not a regular file", path);
    }
    if (sb.st_size == 0) {
        close(fd);
        return em_error(EM_ERR_FORMAT, "gguf: '%s' is empty (0 bytes), not a GGUF file", path);
    }
    void *p = NULL;
    if (map) {
        /* Read-only private mapping: weights are never written, and pages
         * are shared with the page cache rather than copied. */
        p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        int e = errno;
        close(fd);
        if (p == MAP_FAILED) return em_error(EM_ERR_IO, "gguf: cannot map '%s': %s", path, strerror(e));
    } else {
        em_status st = read_whole(fd, path, (size_t)sb.st_size, &p);
        close(fd);
        if (st != EM_OK) return st;
    }
    /* Either way the bytes are a mapping that em_gguf_close unmaps. */
    return open_common(out, p, (uint64_t)sb.st_size, true);
}

em_status em_gguf_open(em_gguf **out, const char *path) { return open_file(out, path, true); }

em_status em_gguf_open_read(em_gguf **out, const char *path) { return open_file(out, path, false); }

em_status em_gguf_lock(em_gguf *g) {
    if (!g) return em_error(EM_ERR_INVALID_ARG, "gguf: lock needs a reader");
    if (!g->mapped) return EM_OK; /* the caller's buffer is the caller's business */
    if (mlock(g->base, g->size) != 0)
        return em_error(EM_ERR_IO, "gguf: cannot lock %llu MiB in memory: %s (see ulimit -l)",
                        (unsigned long long)(g->size >> 20), strerror(errno));
    g->locked = true;
    for (int i = 0; i < g->n_parts; i++) {
        em_status st = em_gguf_lock(g->parts[i]);
        if (st != EM_OK) return st;
    }
    return EM_OK;
}

/* ---------------------------------------------------------- split models */

/* Reads a split.* key as an integer in [lo, hi]. */
static em_status split_key(const em_gguf *g, const char *path, const char *key, int64_t lo, int64_t hi,
                           int64_t *out) {
    em_status st = em_gguf_get_i64(g, key, out);
    if (st == EM_ERR_NOT_FOUND) return em_error(EM_ERR_FORMAT, "gguf: split model part '%s' has no %s", path, key);
    if (st != EM_OK || *out < lo || *out > hi)
        return em_error(EM_ERR_FORMAT, "gguf: split model part '%s': %s is not an integer in [%lld, %lld]", path,
                        key, (long long)lo, (long long)hi);
    return EM_OK;
}

/* Adds the tensors of part p to g, refusing a name that two parts share. */
static em_status adopt_tensors(em_gguf *g, const em_gguf *p, const char *part_path) {
    if (p->n_tensors == 0) return EM_OK;
    em_gguf_tensor *t = realloc(g->tensors, (size_t)(g->n_tensors + p->n_tensors) * sizeof *t);
    if (!t) return em_error(EM_ERR_NOMEM, "gguf: out of memory for a split model's tensors");
    g->tensors = t;
    for (int64_t i = 0; i < p->n_tensors; i++) {
        int64_t idx = g->n_tensors, dup;
        g->tensors[idx] = p->tensors[i];
        em_status st = table_add(&g->tensor_names, g, tensor_name, idx, &dup);
        if (st != EM_OK) return st;
        if (dup >= 0) {
            char nb[80];
            return em_error(EM_ERR_FORMAT, "gguf: split model part '%s' repeats tensor '%s'", part_path,
                            show(p->tensors[i].name, nb, sizeof nb));
        }
        g->n_tensors++;
    }
    return EM_OK;
}

em_status em_gguf_open_parts(em_gguf *g, const char *path, bool map) {
    if (!g || !path) return em_error(EM_ERR_INVALID_ARG, "gguf: open_parts needs a reader and its path");
    int64_t count, no, total;
    if (em_gguf_find_key(g, "split.count") < 0) return EM_OK; /* not split */
    em_status st = split_key(g, path, "split.count", 1, 99999, &count);
    if (!st) st = split_key(g, path, "split.no", 0, count - 1, &no);
    if (!st) st = split_key(g, path, "split.tensors.count", 0, INT64_MAX, &total);
    if (st) return st;
    if (count == 1) return EM_OK;
    if (no != 0)
        return em_error(EM_ERR_INVALID_ARG, "gguf: '%s' is part %lld of %lld of a split model: open the first part",
                        path, (long long)no + 1, (long long)count);
    if (g->n_parts) return em_error(EM_ERR_INVALID_ARG, "gguf: the parts of '%s' are already open", path);

    /* gguf-split names part k (from 1) PREFIX-0000k-of-0000N.gguf. */
    char suffix[40];
    int sl = snprintf(suffix, sizeof suffix, "-%05d-of-%05d.gguf", 1, (int)count);
    size_t len = strlen(path);
    if (len < (size_t)sl || strcmp(path + len - sl, suffix))
        return em_error(EM_ERR_FORMAT, "gguf: '%s' is the first of %lld parts but its name does not end in %s, "
                        "so the other parts cannot be found", path, (long long)count, suffix);
    char *part_path = malloc(len + 1);
    g->parts = calloc((size_t)count - 1, sizeof *g->parts);
    if (!part_path || !g->parts) {
        free(part_path);
        return em_error(EM_ERR_NOMEM, "gguf: out of memory opening a split model");
    }
    memcpy(part_path, path, len + 1);
    for (int64_t k = 1; k < count && !st; k++) {
        snprintf(part_path + len - sl, (size_t)sl + 1, "-%05d-of-%05d.gguf", (int)k + 1, (int)count);
        em_gguf *p = NULL;
        st = open_file(&p, part_path, map);
        if (st) {
            char why[256];
            snprintf(why, sizeof why, "%s", em_last_error());
            st = em_error(st, "gguf: split model part %lld of %lld: %s", (long long)k + 1, (long long)count, why);
            break;
        }
        g->parts[g->n_parts++] = p;
        int64_t pcount, pno;
        st = split_key(p, part_path, "split.count", 1, 99999, &pcount);
        if (!st) st = split_key(p, part_path, "split.no", 0, 99998, &pno);
        if (!st && (pcount != count || pno != k))
            st = em_error(EM_ERR_FORMAT, "gguf: '%s' says it is part %lld of %lld, expected part %lld of %lld",
                          part_path, (long long)pno + 1, (long long)pcount, (long long)k + 1, (long long)count);
        if (!st) st = adopt_tensors(g, p, part_path);
    }
    free(part_path);
    if (!st && g->n_tensors != total)
        st = em_error(EM_ERR_FORMAT, "gguf: split model '%s' holds %lld tensors in its %lld parts, split.tensors.count says %lld",
                      path, (long long)g->n_tensors, (long long)count, (long long)total);
    return st;
}

void em_gguf_close(em_gguf *g) {
    if (!g) return;
    for (int i = 0; i < g->n_parts; i++) em_gguf_close(g->parts[i]);
    free(g->parts);
    for (int64_t i = 0; i < g->n_kv; i++) free(g->kv[i].items);
    free(g->kv);
    free(g->kv_names.slots);
    free(g->tensors);
    free(g->tensor_names.slots);
    if (g->locked) munlock(g->base, g->size);
    if (g->mapped) munmap((void *)g->base, g->size);
    free(g);
}

uint32_t em_gguf_version(const em_gguf *g) { return g->version; }
uint32_t em_gguf_alignment(const em_gguf *g) { return g->alignment; }
uint64_t em_gguf_data_offset(const em_gguf *g) { return g->data_offset; }
uint64_t em_gguf_file_size(const em_gguf *g) { return g->size; }

/* ------------------------------------------------------------ metadata */

int64_t em_gguf_n_kv(const em_gguf *g) { return g->n_kv; }

em_gguf_str em_gguf_key(const em_gguf *g, int64_t i) {
    em_gguf_str none = {"", 0};
    return (i >= 0 && i < g->n_kv) ? g->kv[i].key : none;
}

int64_t em_gguf_find_key(const em_gguf *g, const char *key) {
    if (!g->kv_names.slots) return -1;
    int64_t found = -1;
    table_probe(&g->kv_names, g, kv_name, key, strlen(key), &found);
    return found;
}

em_gguf_type em_gguf_kv_type(const em_gguf *g, int64_t i) {
    return (i >= 0 && i < g->n_kv) ? g->kv[i].type : EM_GGUF_TYPE_COUNT;
}

const void *em_gguf_kv_raw(const em_gguf *g, int64_t i) {
    return (i >= 0 && i < g->n_kv) ? g->kv[i].val : NULL;
}

uint64_t em_gguf_kv_raw_size(const em_gguf *g, int64_t i) {
    return (i >= 0 && i < g->n_kv) ? g->kv[i].val_size : 0;
}

/* Finds key and checks it has one of the accepted types (a bit mask). */
static em_status lookup(const em_gguf *g, const char *key, unsigned accept, const char *want,
                        const gguf_kv **out) {
    int64_t i = em_gguf_find_key(g, key);
    if (i < 0) return em_error(EM_ERR_NOT_FOUND, "gguf: key '%s' not found", key);
    const gguf_kv *kv = &g->kv[i];
    if (!(accept & (1u << kv->type)))
        return em_error(EM_ERR_FORMAT, "gguf: key '%s' has type %s, expected %s", key,
                        em_gguf_type_name(kv->type), want);
    *out = kv;
    return EM_OK;
}

#define INT_TYPES                                                                     \
    (1u << EM_GGUF_UINT8 | 1u << EM_GGUF_INT8 | 1u << EM_GGUF_UINT16 | 1u << EM_GGUF_INT16 | \
     1u << EM_GGUF_UINT32 | 1u << EM_GGUF_INT32 | 1u << EM_GGUF_UINT64 | 1u << EM_GGUF_INT64)

/* Decodes an integer of any width; *neg tells the sign for values that do
 * not fit int64 (large u64). */
static int64_t decode_int(const uint8_t *p, em_gguf_type t, bool *big) {
    *big = false;
    switch (t) {
    case EM_GGUF_UINT8: return p[0];
    case EM_GGUF_INT8: return (int8_t)p[0];
    case EM_GGUF_UINT16: return (uint16_t)(p[0] | p[1] << 8);
    case EM_GGUF_INT16: return (int16_t)(uint16_t)(p[0] | p[1] << 8);
    case EM_GGUF_UINT32: return rd_u32(p);
    case EM_GGUF_INT32: return (int32_t)rd_u32(p);
    case EM_GGUF_UINT64: {
        uint64_t v = rd_u64(p);
        *big = v > (uint64_t)INT64_MAX;
        return (int64_t)(v & (uint64_t)INT64_MAX);
    }
    case EM_GGUF_INT64: return (int64_t)rd_u64(p);
    default: return 0;
    }
}

em_status em_gguf_get_i64(const em_gguf *g, const char *key, int64_t *out) {
    const gguf_kv *kv = NULL;
    em_status st = lookup(g, key, INT_TYPES, "an integer", &kv);
    if (st) return st;
    bool big;
    int64_t v = decode_int(kv->val, kv->type, &big);
    if (big) return em_error(EM_ERR_FORMAT, "gguf: key '%s': value does not fit int64", key);
    *out = v;
    return EM_OK;
}

em_status em_gguf_get_u32(const em_gguf *g, const char *key, uint32_t *out) {
    int64_t v = 0;
    em_status st = em_gguf_get_i64(g, key, &v);
    if (st) return st;
    if (v < 0 || v > (int64_t)UINT32_MAX)
        return em_error(EM_ERR_FORMAT, "gguf: key '%s': value %lld does not fit u32", key,
                        (long long)v);
    *out = (uint32_t)v;
    return EM_OK;
}

em_status em_gguf_get_f32(const em_gguf *g, const char *key, float *out) {
    const gguf_kv *kv = NULL;
    em_status st = lookup(g, key, 1u << EM_GGUF_FLOAT32 | 1u << EM_GGUF_FLOAT64, "a float", &kv);
    if (st) return st;
    if (kv->type == EM_GGUF_FLOAT32) {
        uint32_t u = rd_u32(kv->val);
        memcpy(out, &u, 4);
    } else {
        uint64_t u = rd_u64(kv->val);
        double d;
        memcpy(&d, &u, 8);
        *out = (float)d;
    }
    return EM_OK;
}

em_status em_gguf_get_bool(const em_gguf *g, const char *key, bool *out) {
    const gguf_kv *kv = NULL;
    em_status st = lookup(g, key, 1u << EM_GGUF_BOOL, "bool", &kv);
    if (st) return st;
    *out = kv->val[0] != 0;
    return EM_OK;
}

em_status em_gguf_get_str(const em_gguf *g, const char *key, em_gguf_str *out) {
    const gguf_kv *kv = NULL;
    em_status st = lookup(g, key, 1u << EM_GGUF_STRING, "str", &kv);
    if (st) return st;
    out->len = rd_u64(kv->val);
    out->ptr = (const char *)kv->val + 8;
    return EM_OK;
}

em_status em_gguf_get_arr(const em_gguf *g, const char *key, em_gguf_type *elem_type,
                          uint64_t *n, const void **data) {
    const gguf_kv *kv = NULL;
    em_status st = lookup(g, key, 1u << EM_GGUF_ARRAY, "arr", &kv);
    if (st) return st;
    if (elem_type) *elem_type = kv->elem_type;
    if (n) *n = kv->n;
    if (data) *data = kv->elems;
    return EM_OK;
}

static em_gguf_str decode_str(const uint8_t *p) {
    em_gguf_str s = {(const char *)p + 8, rd_u64(p)};
    return s;
}

static em_gguf_arr decode_arr(const uint8_t *p) {
    em_gguf_arr a = {(em_gguf_type)rd_u32(p), rd_u64(p + 4), p + 12};
    return a;
}

/* Element i of the array under key, whose elements have the variable-size
 * type want (str or arr). */
static em_status key_elem(const em_gguf *g, const char *key, uint64_t i, em_gguf_type want,
                          const uint8_t **out) {
    const gguf_kv *kv = NULL;
    em_status st = lookup(g, key, 1u << EM_GGUF_ARRAY, "arr", &kv);
    if (st) return st;
    if (kv->elem_type != want)
        return em_error(EM_ERR_FORMAT, "gguf: key '%s' is an array of %s, expected %s", key,
                        em_gguf_type_name(kv->elem_type), em_gguf_type_name(want));
    if (i >= kv->n)
        return em_error(EM_ERR_INVALID_ARG, "gguf: key '%s': index %llu out of range (%llu elements)",
                        key, (unsigned long long)i, (unsigned long long)kv->n);
    *out = kv->items[i];
    return EM_OK;
}

em_status em_gguf_arr_str(const em_gguf *g, const char *key, uint64_t i, em_gguf_str *out) {
    const uint8_t *p = NULL;
    em_status st = key_elem(g, key, i, EM_GGUF_STRING, &p);
    if (!st) *out = decode_str(p);
    return st;
}

em_status em_gguf_kv_arr(const em_gguf *g, int64_t i, em_gguf_type *elem_type, uint64_t *n) {
    em_gguf_arr a = {EM_GGUF_TYPE_COUNT, 0, NULL};
    em_status st = em_gguf_kv_arr_view(g, i, &a);
    if (st) return st;
    if (elem_type) *elem_type = a.elem_type;
    if (n) *n = a.n;
    return EM_OK;
}

em_status em_gguf_kv_arr_view(const em_gguf *g, int64_t i, em_gguf_arr *out) {
    if (i < 0 || i >= g->n_kv)
        return em_error(EM_ERR_INVALID_ARG, "gguf: key index %lld out of range", (long long)i);
    const gguf_kv *kv = &g->kv[i];
    if (kv->type != EM_GGUF_ARRAY)
        return em_error(EM_ERR_FORMAT, "gguf: key #%lld has type %s, expected arr", (long long)i,
                        em_gguf_type_name(kv->type));
    out->elem_type = kv->elem_type;
    out->n = kv->n;
    out->data = kv->elems;
    return EM_OK;
}

em_status em_gguf_arr_nested(const em_gguf *g, const char *key, uint64_t i, em_gguf_arr *out) {
    const uint8_t *p = NULL;
    em_status st = key_elem(g, key, i, EM_GGUF_ARRAY, &p);
    if (!st) *out = decode_arr(p);
    return st;
}

/* Element i of a view whose elements have the variable-size type want. */
static em_status view_elem(const em_gguf_arr *a, uint64_t i, em_gguf_type want,
                           const uint8_t **out) {
    if (a->elem_type != want)
        return em_error(EM_ERR_FORMAT, "gguf: array of %s, expected %s",
                        em_gguf_type_name(a->elem_type), em_gguf_type_name(want));
    if (i >= a->n)
        return em_error(EM_ERR_INVALID_ARG, "gguf: array index %llu out of range (%llu elements)",
                        (unsigned long long)i, (unsigned long long)a->n);
    const uint8_t *p = a->data;
    for (uint64_t k = 0; k < i; k++) p = skip_value(p, want);
    *out = p;
    return EM_OK;
}

em_status em_gguf_arr_get_arr(const em_gguf_arr *a, uint64_t i, em_gguf_arr *out) {
    const uint8_t *p = NULL;
    em_status st = view_elem(a, i, EM_GGUF_ARRAY, &p);
    if (!st) *out = decode_arr(p);
    return st;
}

em_status em_gguf_arr_get_str(const em_gguf_arr *a, uint64_t i, em_gguf_str *out) {
    const uint8_t *p = NULL;
    em_status st = view_elem(a, i, EM_GGUF_STRING, &p);
    if (!st) *out = decode_str(p);
    return st;
}

/* ----------------------------------------------------------- formatting */

/* A bounded text buffer: appends stop at the end and mark it truncated. */
typedef struct text {
    char *buf;
    size_t size;
    size_t len;
    bool full;
} text;

static void put(text *t, const char *s, size_t n) {
    if (t->size == 0) return;
    size_t room = t->size - 1 - t->len;
    if (n > room) {
        n = room;
        t->full = true;
    }
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = '\0';
}

static void putf(text *t, const char *fmt, ...) EM_PRINTF(2, 3);
static void putf(text *t, const char *fmt, ...) {
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) put(t, tmp, EM_MIN((size_t)n, sizeof tmp - 1));
}

/* Quoted, with quotes, backslashes and control bytes escaped so that the
 * result is one line; other bytes (UTF-8) pass through. */
static void put_quoted(text *t, const char *s, uint64_t n) {
    put(t, "\"", 1);
    for (uint64_t i = 0; i < n && !t->full; i++) {
        unsigned char ch = (unsigned char)s[i];
        switch (ch) {
        case '"': put(t, "\\\"", 2); break;
        case '\\': put(t, "\\\\", 2); break;
        case '\n': put(t, "\\n", 2); break;
        case '\r': put(t, "\\r", 2); break;
        case '\t': put(t, "\\t", 2); break;
        default:
            if (ch < 0x20 || ch == 0x7f) putf(t, "\\x%02x", ch);
            else put(t, (const char *)&ch, 1);
        }
    }
    put(t, "\"", 1);
}

/* The shortest %g text that reads back as the same value. */
static void put_double(text *t, double v, bool single) {
    char tmp[40];
    if (isnan(v)) {
        put(t, "nan", 3);
        return;
    }
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (single ? strtof(tmp, NULL) == (float)v : strtod(tmp, NULL) == v) break;
    }
    put(t, tmp, strlen(tmp));
}

/* Formats the value at p of type ty; returns the position after it. */
static const uint8_t *format_value(text *t, const uint8_t *p, em_gguf_type ty, int max_elems) {
    bool big;
    switch (ty) {
    case EM_GGUF_UINT64:
        putf(t, "%llu", (unsigned long long)rd_u64(p));
        return p + 8;
    case EM_GGUF_FLOAT32: {
        uint32_t u = rd_u32(p);
        float f;
        memcpy(&f, &u, 4);
        put_double(t, f, true);
        return p + 4;
    }
    case EM_GGUF_FLOAT64: {
        uint64_t u = rd_u64(p);
        double d;
        memcpy(&d, &u, 8);
        put_double(t, d, false);
        return p + 8;
    }
    case EM_GGUF_BOOL:
        put(t, p[0] ? "true" : "false", p[0] ? 4 : 5);
        return p + 1;
    case EM_GGUF_STRING: {
        em_gguf_str s = decode_str(p);
        put_quoted(t, s.ptr, s.len);
        return p + 8 + s.len;
    }
    case EM_GGUF_ARRAY: {
        em_gguf_arr a = decode_arr(p);
        const uint8_t *q = a.data;
        put(t, "[", 1);
        uint64_t shown = max_elems < 0 ? a.n : EM_MIN(a.n, (uint64_t)max_elems);
        for (uint64_t i = 0; i < shown && !t->full; i++) {
            if (i) put(t, ", ", 2);
            q = format_value(t, q, a.elem_type, max_elems);
        }
        if (shown < a.n) putf(t, "%s... (%llu total)", shown ? ", " : "", (unsigned long long)a.n);
        put(t, "]", 1);
        /* The caller at top level does not need the end; nested callers
         * do, so compute it exactly. */
        return skip_value(p, EM_GGUF_ARRAY);
    }
    default:
        putf(t, "%lld", (long long)decode_int(p, ty, &big));
        return p + em_gguf_type_size(ty);
    }
}

size_t em_gguf_kv_format(const em_gguf *g, int64_t i, char *buf, size_t size, int max_elems) {
    text t = {buf, size, 0, false};
    if (size) buf[0] = '\0';
    if (i < 0 || i >= g->n_kv) return 0;
    format_value(&t, g->kv[i].val, g->kv[i].type, max_elems);
    /* Mark a cut-off value so that nobody mistakes it for the whole. */
    if (t.full && size > 4) {
        memcpy(buf + size - 4, "...", 4);
        t.len = size - 1;
    }
    return t.len;
}

/* -------------------------------------------------------------- tensors */

int64_t em_gguf_n_tensors(const em_gguf *g) { return g->n_tensors; }

const em_gguf_tensor *em_gguf_tensor_at(const em_gguf *g, int64_t i) {
    return (i >= 0 && i < g->n_tensors) ? &g->tensors[i] : NULL;
}

const em_gguf_tensor *em_gguf_find_tensor(const em_gguf *g, const char *name) {
    if (!g->tensor_names.slots) return NULL;
    int64_t found = -1;
    table_probe(&g->tensor_names, g, tensor_name, name, strlen(name), &found);
    return found >= 0 ? &g->tensors[found] : NULL;
}
