/*
 * gen_common.h - what the two model generators (gen_model for the
 * reference checks, gen_bench_model for the speed benchmarks) share: the
 * seeded random stream, the TRY macro and the made-up SentencePiece-shaped
 * vocabulary.
 */
#ifndef EM_TESTS_GEN_COMMON_H
#define EM_TESTS_GEN_COMMON_H

#include "gguf/gguf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Returns the status of x from the calling function unless it is EM_OK. */
#define TRY(x)                                                                 \
    do {                                                                       \
        em_status st_ = (x);                                                   \
        if (st_ != EM_OK) return st_;                                          \
    } while (0)

/* splitmix64: tiny, fast and good enough for test weights; each tool seeds
 * rng_state from its --seed, so the file depends only on the seed. */
static uint64_t rng_state;

static inline uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Writes made-up piece k (k = 0, 1, ...) into buf of size bytes; each tool
 * has its own, and pieces must be distinct. */
typedef void (*gen_piece_fn)(int k, char *buf, size_t size);

/*
 * Adds a SentencePiece-shaped vocabulary of n_vocab tokens (n_vocab >= 259)
 * and the llama tokenizer keys: <unk>, <s>, </s>, the 256 byte tokens
 * <0xXX>, then piece(0), piece(1), ... with falling scores.
 */
static inline em_status gen_add_spm_vocab(em_gguf_writer *w, int n_vocab, gen_piece_fn piece) {
    char **tok = calloc((size_t)n_vocab, sizeof *tok);
    float *score = malloc((size_t)n_vocab * sizeof *score);
    int32_t *type = malloc((size_t)n_vocab * sizeof *type);
    em_status st = EM_OK;
    if (!tok || !score || !type) {
        st = em_error(EM_ERR_NOMEM, "out of memory writing the vocabulary");
        goto done;
    }
    for (int i = 0; i < n_vocab; i++) {
        char buf[32];
        if (i == 0) snprintf(buf, sizeof buf, "<unk>");
        else if (i == 1) snprintf(buf, sizeof buf, "<s>");
        else if (i == 2) snprintf(buf, sizeof buf, "</s>");
        else if (i < 259) snprintf(buf, sizeof buf, "<0x%02X>", i - 3);
        else piece(i - 259, buf, sizeof buf);
        if (!(tok[i] = strdup(buf))) {
            st = em_error(EM_ERR_NOMEM, "out of memory writing the vocabulary");
            goto done;
        }
        score[i] = i < 259 ? 0.0f : -(float)(i - 259);
        type[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1; /* unknown, control, byte, normal */
    }
    if ((st = em_gguf_set_str(w, "tokenizer.ggml.model", "llama")) != EM_OK) goto done;
    if ((st = em_gguf_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)tok, (uint64_t)n_vocab)) != EM_OK)
        goto done;
    if ((st = em_gguf_set_arr(w, "tokenizer.ggml.scores", EM_GGUF_FLOAT32, score, (uint64_t)n_vocab)) != EM_OK)
        goto done;
    if ((st = em_gguf_set_arr(w, "tokenizer.ggml.token_type", EM_GGUF_INT32, type, (uint64_t)n_vocab)) != EM_OK)
        goto done;
    if ((st = em_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", 0)) != EM_OK) goto done;
    if ((st = em_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1)) != EM_OK) goto done;
    st = em_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
done:
    if (tok)
        for (int i = 0; i < n_vocab; i++) free(tok[i]);
    free(tok);
    free(score);
    free(type);
    return st;
}

#endif
