/*
 * fuzz_tokenizer.c - libFuzzer target: arbitrary bytes through a real
 * tokenizer and back.
 *
 * The vocabulary is loaded once, from $EMBER_FUZZ_VOCAB or else GPT-2's
 * vocabulary under $EMBER_TEST_DATA; without either the target does
 * nothing.  Each input is tokenized with and without special-token parsing
 * and detokenized again.  Beyond "no crash, no out-of-bounds access" it
 * checks the contract: the size query and the real call agree, every id is
 * in the vocabulary, and a byte-level BPE vocabulary that covers every
 * byte and does not normalize gives back exactly the input bytes.
 */
#include "ember.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "fuzz_vocab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static em_vocab *vocab;
static bool loaded;
/* Every single byte comes back from tokenize + detokenize: then so must
 * any text.  Vocabularies that lack tokens for some bytes, or whose token
 * for a byte's symbol is a literal added token, are not lossless. */
static bool lossless;

static bool byte_round_trips(unsigned char b) {
    em_token t[8];
    char s[16];
    int32_t n = 0;
    if (em_tokenize(vocab, (const char *)&b, 1, t, 8, &n, false, false) != EM_OK || n > 8) return false;
    int32_t ln = em_detokenize(vocab, t, n, s, sizeof s, false, false);
    return ln == 1 && (unsigned char)s[0] == b;
}

static void load_once(void) {
    loaded = true;
    vocab = fuzz_vocab_load("fuzz_tokenizer", "tokenizers/llama.cpp-vocab/ggml-vocab-gpt-2.gguf");
    if (!vocab) return;
    lossless = em_vocab_kind(vocab) == EM_VOCAB_BPE;
    for (int b = 0; b < 256 && lossless; b++) lossless = byte_round_trips((unsigned char)b);
    /* A vocabulary that normalizes to NFC (GPT-NeoX) gives back the
     * normalized text, so e + U+0301 returns as U+00E9. */
    if (lossless) {
        em_token t[8];
        char s[16];
        int32_t n = 0;
        lossless = em_tokenize(vocab, "e\xcc\x81", 3, t, 8, &n, false, false) == EM_OK && n <= 8 &&
                   em_detokenize(vocab, t, n, s, sizeof s, false, false) == 3 &&
                   memcmp(s, "e\xcc\x81", 3) == 0;
    }
    fprintf(stderr, "fuzz_tokenizer: vocabulary loaded; exact round trips %schecked\n", lossless ? "" : "not ");
}

static void round_trip(const char *text, int32_t len, bool parse_special) {
    em_token *t = NULL;
    int32_t n = 0;
    /* Valid input never fails. */
    if (em_tokenize_alloc(vocab, text, len, false, parse_special, &t, &n) != EM_OK) __builtin_trap();
    for (int32_t i = 0; i < n; i++)
        if (t[i] < 0 || t[i] >= em_vocab_n_tokens(vocab)) __builtin_trap();

    int32_t dneed = em_detokenize(vocab, t, n, NULL, 0, false, parse_special);
    if (dneed == INT32_MIN) __builtin_trap();
    int32_t dcap = dneed < 0 ? -dneed : dneed;
    char *s = malloc((size_t)dcap + 1);
    int32_t ln = em_detokenize(vocab, t, n, s, dcap + 1, false, parse_special);
    if (ln != dcap) __builtin_trap();
    if (lossless && (ln != len || memcmp(s, text, (size_t)len) != 0))
        __builtin_trap();

    /* With BOS/EOS as the model wants them, and a too-small buffer. */
    em_token small[4];
    int32_t m = 0;
    if (em_tokenize(vocab, text, len, small, 4, &m, true, parse_special) != EM_OK) __builtin_trap();
    free(s);
    free(t);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    if (!loaded) load_once();
    if (!vocab || size > (1u << 20)) return 0;
    round_trip((const char *)data, (int32_t)size, false);
    round_trip((const char *)data, (int32_t)size, true);
    return 0;
}
