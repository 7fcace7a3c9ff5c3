/*
 * fuzz_manifest.c - libFuzzer target for the parser of bundle manifests
 * and the library index (em_lib_list_parse), which bundle import runs on
 * untrusted text.
 *
 * Every input is parsed as both kinds.  An accepted list must hold only
 * what the parser promises: names within bounds, safe relative paths
 * under models/, 64-digit digests; and it must survive a round trip
 * through em_lib_list_dump unchanged in size.
 */
#include "library/library.h"

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_ASSERT(cond)                                                            \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "fuzz_manifest: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                 \
        }                                                                            \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_kind(const uint8_t *data, size_t size, const char *kind) {
    em_lib_list l;
    if (em_lib_list_parse((const char *)data, size, kind, &l) != EM_OK) return;
    for (int i = 0; i < l.n; i++) {
        const em_lib_model *m = &l.models[i];
        FUZZ_ASSERT(strnlen(m->name, sizeof m->name) < sizeof m->name && m->name[0]);
        FUZZ_ASSERT(m->n_files >= 1 && m->n_files <= EM_LIB_MAX_FILES);
        for (int k = 0; k < m->n_files; k++) {
            FUZZ_ASSERT(em_tar_path_ok(m->files[k].path));
            FUZZ_ASSERT(!strncmp(m->files[k].path, "models/", 7));
            FUZZ_ASSERT(em_sha256_hex_ok(m->files[k].sha256));
        }
    }
    char *text = em_lib_list_dump(&l, kind);
    FUZZ_ASSERT(text != NULL);
    em_lib_list again;
    FUZZ_ASSERT(em_lib_list_parse(text, strlen(text), kind, &again) == EM_OK);
    FUZZ_ASSERT(again.n == l.n);
    em_lib_list_free(&again);
    free(text);
    em_lib_list_free(&l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    check_kind(data, size, "ember-bundle");
    check_kind(data, size, "ember-library");
    return 0;
}
