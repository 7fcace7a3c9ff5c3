/*
 * fuzz_tar.c - libFuzzer target for the ustar reader that bundle import
 * runs on untrusted files.
 *
 * The input is read as a tar stream (through fmemopen, as import reads a
 * FILE): every header is parsed, every accepted entry's name must be a
 * NUL-terminated string within bounds, and its data is read and hashed the
 * way import does, stopping cleanly at a truncated entry.
 */
#include "library/library.h"

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_ASSERT(cond)                                                       \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "fuzz_tar: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                            \
        }                                                                       \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    FILE *f = fmemopen((void *)data, size, "rb");
    if (!f) return 0;
    uint8_t buf[4096];
    for (int n = 0; n < 1000; n++) {
        em_tar_entry e;
        bool end = false;
        if (em_tar_next(f, &e, &end) != EM_OK || end) break;
        size_t len = strnlen(e.name, sizeof e.name);
        FUZZ_ASSERT(len > 0 && len < sizeof e.name);
        FUZZ_ASSERT(e.type == '0' || e.type == '5');
        (void)em_tar_path_ok(e.name);
        em_sha256 h;
        em_sha256_init(&h);
        uint64_t left = e.size;
        bool cut = false;
        while (left > 0) {
            size_t want = left < sizeof buf ? (size_t)left : sizeof buf;
            size_t got = fread(buf, 1, want, f);
            em_sha256_update(&h, buf, got);
            left -= got;
            if (got < want) {
                cut = true;
                break;
            }
        }
        char hex[65];
        em_sha256_final(&h, hex);
        FUZZ_ASSERT(strlen(hex) == 64);
        if (cut || em_tar_skip_pad(f, e.size) != EM_OK) break;
    }
    fclose(f);
    return 0;
}
