/*
 * gguf_bytes.h - builds GGUF files byte by byte, for the tests that need
 * files the writer would refuse to make (broken headers, bad shapes, every
 * kind of corruption): test_gguf and the fuzz seeds of gguf_seeds.
 *
 * A buf owns its bytes (free(b.p) when done; start from buf b = {0}).
 * Appends grow it; a failed allocation aborts, which only a test may do.
 * Every number is written little-endian, as GGUF stores it.
 */
#ifndef EM_TESTS_GGUF_BYTES_H
#define EM_TESTS_GGUF_BYTES_H

#include "gguf/gguf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct buf {
    uint8_t *p; /* [cap] bytes, the first len of them written */
    size_t len, cap;
} buf;

static inline void put(buf *b, const void *src, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) abort();
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, src, n);
    b->len += n;
}
static inline void put_u32(buf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(b, x, 4);
}
static inline void put_u64(buf *b, uint64_t v) {
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}
static inline void put_str(buf *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static inline void put_header(buf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    put(b, "GGUF", 4);
    put_u32(b, version);
    put_u64(b, n_tensors);
    put_u64(b, n_kv);
}
static inline void put_kv_u32(buf *b, const char *key, uint32_t v) {
    put_str(b, key);
    put_u32(b, EM_GGUF_UINT32);
    put_u32(b, v);
}
/* One tensor info: name, n_dims sizes ne[0..n_dims), type, data offset. */
static inline void put_tinfo(buf *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                             uint64_t offset) {
    put_str(b, name);
    put_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) put_u64(b, ne[d]);
    put_u32(b, type);
    put_u64(b, offset);
}

#endif
