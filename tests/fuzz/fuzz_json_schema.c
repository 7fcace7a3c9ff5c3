/*
 * fuzz_json_schema.c - libFuzzer target: arbitrary text as a JSON schema.
 *
 * Each input is compiled; a schema that compiles is then run for up to 64
 * decoding steps over a small real vocabulary (stories260K's 512 tokens,
 * from $EMBER_FUZZ_VOCAB or $EMBER_TEST_DATA; without one, over single
 * bytes): mask, pick an allowed token with a generator seeded from the
 * input, accept.  Beyond "no crash, no leak, no out-of-bounds access" it
 * checks the contract: a masked-in token is always accepted, a
 * masked-out one always refused, EOG is allowed exactly when the grammar
 * can end, and a compile failure leaves the output NULL with a message.
 */
#include "ember.h"
#include "gguf/gguf.h"
#include "sample/grammar.h"
#include "tokenizer/tokenizer.h"
#include "fuzz_vocab.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static em_vocab *vocab;
static em_token_trie *trie;
static bool loaded;

static void load_once(void) {
    loaded = true;
    vocab = fuzz_vocab_load("fuzz_json_schema", "models/stories260K.gguf");
    if (vocab && em_token_trie_init(&trie, vocab) != EM_OK) trie = NULL;
}

static uint64_t next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void run_tokens(const em_grammar *g, uint64_t seed) {
    em_grammar_state *s = NULL;
    if (em_grammar_state_init(&s, g, trie) != EM_OK) return;
    int32_t n = em_vocab_n_tokens(vocab);
    float *logits = malloc(sizeof *logits * (size_t)n);
    em_token *ok = malloc(sizeof *ok * (size_t)n);
    for (int step = 0; step < 64 && logits && ok && !em_grammar_done(s); step++) {
        for (int32_t i = 0; i < n; i++) logits[i] = 0;
        if (em_grammar_mask(s, logits) != EM_OK) break;
        int32_t n_ok = 0;
        for (int32_t i = 0; i < n; i++) {
            if (logits[i] == 0) ok[n_ok++] = i;
            if (em_vocab_is_eog(vocab, i) && (logits[i] == 0) != em_grammar_can_end(s)) __builtin_trap();
        }
        if (n_ok == 0) break;
        /* A refused token changes nothing. */
        em_token bad = (em_token)(next(&seed) % (uint64_t)n);
        if (logits[bad] != 0 && em_grammar_accept(s, bad) == EM_OK) __builtin_trap();
        em_token t = ok[next(&seed) % (uint64_t)n_ok];
        if (em_grammar_accept(s, t) != EM_OK) __builtin_trap();
        if (em_vocab_is_eog(vocab, t)) break;
    }
    free(logits);
    free(ok);
    em_grammar_state_free(s);
}

static void run_bytes(const em_grammar *g, const uint8_t *data, size_t size) {
    em_grammar_state *s = NULL;
    if (em_grammar_state_init(&s, g, NULL) != EM_OK) return;
    for (size_t i = 0; i < size && i < 256; i++) em_grammar_accept_bytes(s, (const char *)data + i, 1);
    em_grammar_state_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!loaded) load_once();
    em_grammar *g = (em_grammar *)1;
    em_status st = em_grammar_compile_json_schema(&g, (const char *)data, size);
    if (st != EM_OK) {
        if (g != (em_grammar *)1 || !em_last_error()[0]) __builtin_trap();
        return 0;
    }
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < size; i++) seed = (seed ^ data[i]) * 0x100000001b3ull;
    if (!seed) seed = 1;
    if (trie) run_tokens(g, seed);
    run_bytes(g, data, size);
    em_grammar_free(g);
    return 0;
}
