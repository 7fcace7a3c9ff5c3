/*
 * fuzz_vocab.h - the vocabulary a fuzz target tokenizes with: the file
 * named by $EMBER_FUZZ_VOCAB, else DEFAULT_REL under $EMBER_TEST_DATA.
 * Loaded once per process; NULL (and one line on stderr naming WHO) when
 * neither is set or the file does not load, so the target can still run
 * the parts that need no vocabulary.  The caller owns the vocabulary for
 * the life of the process.
 */
#ifndef EM_FUZZ_VOCAB_H
#define EM_FUZZ_VOCAB_H

#include "ember.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>

static em_vocab *fuzz_vocab_load(const char *who, const char *default_rel) {
    char path[4096];
    const char *p = getenv("EMBER_FUZZ_VOCAB");
    if (!p || !*p) {
        const char *root = getenv("EMBER_TEST_DATA");
        if (!root || !*root) return NULL;
        snprintf(path, sizeof path, "%s/%s", root, default_rel);
        p = path;
    }
    em_gguf *g = NULL;
    em_vocab *v = NULL;
    if (em_gguf_open(&g, p) != EM_OK) {
        fprintf(stderr, "%s: %s\n", who, em_last_error());
        return NULL;
    }
    if (em_vocab_load(&v, g) != EM_OK) {
        fprintf(stderr, "%s: %s\n", who, em_last_error());
        v = NULL;
    }
    em_gguf_close(g);
    return v;
}

#endif
