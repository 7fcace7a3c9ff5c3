/*
 * sha256.c - SHA-256 in hex, over libsodium's crypto_hash_sha256: the
 * digest the hub reports for every LFS file and the one bundles carry.
 */
#include "library/library.h"

#include <errno.h>
#include <stdlib.h>

void em_sha256_init(em_sha256 *h) { crypto_hash_sha256_init(&h->st); }

void em_sha256_update(em_sha256 *h, const void *data, size_t n) {
    crypto_hash_sha256_update(&h->st, data, n);
}

void em_sha256_final(em_sha256 *h, char hex[65]) {
    unsigned char d[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_final(&h->st, d);
    sodium_bin2hex(hex, 65, d, sizeof d);
}

em_status em_sha256_file(const char *path, char hex[65], uint64_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return em_error(EM_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = malloc(CHUNK);
    if (!buf) {
        fclose(f);
        return em_error(EM_ERR_NOMEM, "out of memory hashing %s", path);
    }
    em_sha256 h;
    em_sha256_init(&h);
    uint64_t total = 0;
    size_t got;
    while ((got = fread(buf, 1, CHUNK, f)) > 0) {
        em_sha256_update(&h, buf, got);
        total += got;
    }
    int err = ferror(f);
    fclose(f);
    free(buf);
    if (err) return em_error(EM_ERR_IO, "cannot read %s", path);
    em_sha256_final(&h, hex);
    if (size) *size = total;
    return EM_OK;
}

bool em_sha256_hex_ok(const char *s) {
    size_t i = 0;
    for (; s[i]; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return false;
    }
    return i == 64;
}
