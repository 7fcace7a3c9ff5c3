/*
 * tar.c - the POSIX ustar subset that bundles use: regular files and
 * directories, names up to 255 bytes, sizes in octal or (from 8 GiB) in
 * the base-256 form GNU tar reads.  The reader trusts nothing: checksum,
 * magic, name, type and size are all checked before an entry is used.
 */
#include "library/library.h"

#include <errno.h>
#include <stdlib.h>

/* Field offsets and widths of a ustar header block. */
enum {
    F_NAME = 0, W_NAME = 100,
    F_MODE = 100, W_MODE = 8,
    F_UID = 108, F_GID = 116, W_ID = 8,
    F_SIZE = 124, W_SIZE = 12,
    F_MTIME = 136, W_MTIME = 12,
    F_CHKSUM = 148, W_CHKSUM = 8,
    F_TYPE = 156,
    F_MAGIC = 257, /* "ustar\0" then version "00" */
    F_UNAME = 265, F_GNAME = 297,
    F_PREFIX = 345, W_PREFIX = 155,
};

static void put_octal(uint8_t *field, size_t width, uint64_t v) {
    /* width-1 digits, zero-padded, then NUL. */
    field[width - 1] = '\0';
    for (size_t i = width - 1; i-- > 0;) {
        field[i] = (uint8_t)('0' + (v & 7));
        v >>= 3;
    }
}

static unsigned checksum(const uint8_t *b, bool as_signed) {
    unsigned sum = 0;
    for (int i = 0; i < EM_TAR_BLOCK; i++) {
        int c = (i >= F_CHKSUM && i < F_CHKSUM + W_CHKSUM) ? ' ' : (as_signed ? (int)(signed char)b[i] : b[i]);
        sum += (unsigned)c;
    }
    return sum;
}

static em_status write_all(FILE *f, const void *p, size_t n) {
    if (fwrite(p, 1, n, f) != n) return em_error(EM_ERR_IO, "tar: write failed: %s", strerror(errno));
    return EM_OK;
}

em_status em_tar_write_header(FILE *f, const char *name, uint64_t size, uint64_t mtime) {
    uint8_t b[EM_TAR_BLOCK] = {0};
    size_t len = strlen(name);
    if (len == 0 || len >= EM_TAR_NAME_MAX) return em_error(EM_ERR_INVALID_ARG, "tar: name of %zu bytes", len);
    if (len <= W_NAME) {
        memcpy(b + F_NAME, name, len);
    } else {
        /* Split at the last '/' that leaves both halves in their fields. */
        size_t cut = 0;
        for (size_t i = 1; i < len && i <= W_PREFIX; i++)
            if (name[i] == '/' && len - i - 1 <= W_NAME && len - i - 1 > 0) cut = i;
        if (!cut) return em_error(EM_ERR_INVALID_ARG, "tar: name '%s' cannot be split into ustar's fields", name);
        memcpy(b + F_PREFIX, name, cut);
        memcpy(b + F_NAME, name + cut + 1, len - cut - 1);
    }
    put_octal(b + F_MODE, W_MODE, 0644);
    put_octal(b + F_UID, W_ID, 0);
    put_octal(b + F_GID, W_ID, 0);
    if (size < (1ull << 33)) {
        put_octal(b + F_SIZE, W_SIZE, size);
    } else {
        /* Base-256: a leading 0x80 byte, then the size big-endian. */
        b[F_SIZE] = 0x80;
        for (int i = W_SIZE - 1; i >= 1; i--) {
            b[F_SIZE + i] = (uint8_t)(size & 0xff);
            size >>= 8;
        }
    }
    put_octal(b + F_MTIME, W_MTIME, mtime & 077777777777ull);
    b[F_TYPE] = '0';
    memcpy(b + F_MAGIC, "ustar\0" "00", 8);
    memcpy(b + F_UNAME, "ember", 5);
    memcpy(b + F_GNAME, "ember", 5);
    /* Six octal digits, NUL, space: the classic layout. */
    unsigned sum = checksum(b, false);
    put_octal(b + F_CHKSUM, 7, sum);
    b[F_CHKSUM + 7] = ' ';
    return write_all(f, b, sizeof b);
}

em_status em_tar_write_pad(FILE *f, uint64_t size) {
    static const uint8_t zero[EM_TAR_BLOCK];
    size_t pad = (size_t)((EM_TAR_BLOCK - size % EM_TAR_BLOCK) % EM_TAR_BLOCK);
    return pad ? write_all(f, zero, pad) : EM_OK;
}

em_status em_tar_write_end(FILE *f) {
    static const uint8_t zero[2 * EM_TAR_BLOCK];
    return write_all(f, zero, sizeof zero);
}

/* An octal field: optional leading spaces, digits, then NUL/space or the
 * field's end.  False on anything else or overflow. */
static bool get_octal(const uint8_t *field, size_t width, uint64_t *out) {
    size_t i = 0;
    while (i < width && field[i] == ' ') i++;
    uint64_t v = 0;
    size_t digits = 0;
    for (; i < width && field[i] >= '0' && field[i] <= '7'; i++, digits++) {
        if (v >> 61) return false;
        v = v << 3 | (uint64_t)(field[i] - '0');
    }
    if (!digits) return false;
    for (; i < width; i++)
        if (field[i] != ' ' && field[i] != '\0') return false;
    *out = v;
    return true;
}

em_status em_tar_parse_header(const uint8_t block[EM_TAR_BLOCK], em_tar_entry *e, bool *end) {
    *end = false;
    bool zero = true;
    for (int i = 0; i < EM_TAR_BLOCK && zero; i++) zero = block[i] == 0;
    if (zero) {
        *end = true;
        return EM_OK;
    }
    uint64_t want;
    if (!get_octal(block + F_CHKSUM, W_CHKSUM, &want))
        return em_error(EM_ERR_FORMAT, "tar: a header's checksum field is not a number (not a tar file, or damaged)");
    if (want != checksum(block, false) && want != checksum(block, true))
        return em_error(EM_ERR_FORMAT, "tar: a header's checksum does not match (damaged or not a tar file)");
    if (memcmp(block + F_MAGIC, "ustar\0" "00", 8) && memcmp(block + F_MAGIC, "ustar  \0", 8))
        return em_error(EM_ERR_FORMAT, "tar: not a ustar archive");

    size_t nlen = strnlen((const char *)block + F_NAME, W_NAME);
    size_t plen = strnlen((const char *)block + F_PREFIX, W_PREFIX);
    if (nlen == 0) return em_error(EM_ERR_FORMAT, "tar: an entry has an empty name");
    size_t o = 0;
    if (plen) {
        memcpy(e->name, block + F_PREFIX, plen);
        e->name[plen] = '/';
        o = plen + 1;
    }
    memcpy(e->name + o, block + F_NAME, nlen);
    e->name[o + nlen] = '\0';

    const uint8_t *sf = block + F_SIZE;
    if (sf[0] & 0x80) {
        if (sf[0] != 0x80) return em_error(EM_ERR_FORMAT, "tar: entry '%s' has a negative size", e->name);
        uint64_t v = 0;
        for (int i = 1; i < W_SIZE; i++) {
            if (v >> 56) return em_error(EM_ERR_FORMAT, "tar: entry '%s' has a size beyond 64 bits", e->name);
            v = v << 8 | sf[i];
        }
        e->size = v;
    } else if (!get_octal(sf, W_SIZE, &e->size)) {
        return em_error(EM_ERR_FORMAT, "tar: entry '%s' has a malformed size", e->name);
    }
    if (e->size > (UINT64_MAX >> 2)) return em_error(EM_ERR_FORMAT, "tar: entry '%s' is implausibly large", e->name);

    char t = (char)block[F_TYPE];
    if (t == '0' || t == '\0') {
        e->type = '0';
    } else if (t == '5') {
        e->type = '5';
        if (e->size) return em_error(EM_ERR_FORMAT, "tar: directory '%s' has data", e->name);
    } else {
        return em_error(EM_ERR_FORMAT, "tar: entry '%s' has type '%c': only regular files and folders are allowed",
                        e->name, t >= 0x20 && t < 0x7f ? t : '?');
    }
    return EM_OK;
}

em_status em_tar_next(FILE *f, em_tar_entry *e, bool *end) {
    uint8_t b[EM_TAR_BLOCK];
    size_t got = fread(b, 1, sizeof b, f);
    if (got == 0 && !ferror(f)) {
        *end = true;
        return EM_OK;
    }
    if (got != sizeof b)
        return em_error(EM_ERR_FORMAT, "tar: the archive is truncated (%zu bytes of a %d-byte header)", got,
                        EM_TAR_BLOCK);
    return em_tar_parse_header(b, e, end);
}

em_status em_tar_skip_pad(FILE *f, uint64_t size) {
    uint8_t b[EM_TAR_BLOCK];
    size_t pad = (size_t)((EM_TAR_BLOCK - size % EM_TAR_BLOCK) % EM_TAR_BLOCK);
    if (pad && fread(b, 1, pad, f) != pad) return em_error(EM_ERR_FORMAT, "tar: the archive is truncated (padding)");
    return EM_OK;
}

bool em_tar_path_ok(const char *path) {
    size_t len = strlen(path);
    if (len == 0 || len >= EM_TAR_NAME_MAX || path[0] == '/' || path[len - 1] == '/') return false;
    const char *comp = path;
    for (const char *p = path;; p++) {
        if (*p == '/' || *p == '\0') {
            size_t n = (size_t)(p - comp);
            if (n == 0 || (n == 1 && comp[0] == '.') || (n == 2 && comp[0] == '.' && comp[1] == '.')) return false;
            if (*p == '\0') return true;
            comp = p + 1;
            continue;
        }
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-' || c == '+'))
            return false;
    }
}
