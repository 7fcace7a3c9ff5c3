/*
 * fuzz_model.c - libFuzzer target: arbitrary bytes as a model file, loaded
 * as ember loads a model (em_model_load: the GGUF reader, the vocabulary,
 * the family's hyperparameters and the binding of every weight), then run.
 *
 * fuzz_gguf checks the reader alone; a downloaded model is untrusted in
 * everything the reader accepts too: token lists, merges and scores,
 * head counts, sizes and tensor shapes.  The promise under test is the
 * one of load.c: a model that loads is a model the forward pass can run.
 * So a loaded model gets a context of 32 positions and decodes a short
 * prompt (one batch, then one row) on one thread, and its vocabulary
 * tokenizes and detokenizes a text with special tokens.
 *
 * The input goes to a memory file (memfd) named by its /proc path, since
 * em_model_load takes a path.  Seeds: those of fuzz_gguf (run.sh), of
 * which stories260K is a whole model.  Beyond "no crash, no leak, no
 * out-of-bounds access" it checks that a refusal leaves one line of error.
 */
#include "ember.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void check(bool cond) {
    if (!cond) abort();
}

static void run_vocab(const em_vocab *v) {
    static const char text[] = "Hello <s> world</s> \xc3\xa9t\xc3\xa9 12345 \xf0\x9f\x99\x82\n\t!";
    em_token *t = NULL;
    int32_t n = 0;
    if (em_tokenize_alloc(v, text, (int32_t)sizeof text - 1, true, true, &t, &n) != EM_OK) return;
    for (int32_t i = 0; i < n; i++) check(t[i] >= 0 && t[i] < em_vocab_n_tokens(v));
    int32_t need = em_detokenize(v, t, n, NULL, 0, false, true);
    int32_t cap = need < 0 ? -need : need;
    char *s = malloc((size_t)cap + 1);
    if (s) check(em_detokenize(v, t, n, s, cap + 1, false, true) == cap);
    free(s);
    free(t);
}

static void run_model(const em_model *m) {
    em_context_params cp = em_context_default_params();
    cp.n_ctx = 32;
    cp.n_batch = 8;
    cp.n_threads = 1;
    cp.n_seq_max = 2;
    cp.embeddings = !em_model_is_causal(m);
    em_context *ctx = NULL;
    if (em_context_init(&ctx, m, &cp) != EM_OK) return;
    em_batch b;
    if (em_batch_init(&b, 8) != EM_OK) {
        em_context_free(ctx);
        return;
    }
    int32_t nv = em_model_n_vocab(m);
    for (int32_t i = 0; i < 5; i++) em_batch_add(&b, (em_token)((i * 7 + 1) % nv), i, 0, i == 4);
    if (em_decode(ctx, &b) == EM_OK && em_model_is_causal(m)) {
        check(em_get_logits(ctx, 4) != NULL);
        em_batch_clear(&b);
        em_batch_add(&b, nv - 1, 5, 0, true);
        em_batch_add(&b, 0, 0, 1, true);
        em_decode(ctx, &b);
    }
    em_batch_free(&b);
    em_context_free(ctx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd = memfd_create("fuzz_model", 0);
    if (fd < 0) return 0;
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) break;
        off += (size_t)w;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    em_model_params mp = em_model_default_params();
    /* Both layouts of the weights: the file's, and repacked (its own
     * checks of row counts and sizes). */
    mp.repack = size & 1;
    em_model *m = NULL;
    if (off == size && em_model_load(&m, path, &mp) == EM_OK) {
        run_vocab(em_model_vocab(m));
        run_model(m);
        em_model_free(m);
    } else if (off == size) {
        const char *msg = em_last_error();
        check(msg[0] != '\0' && strchr(msg, '\n') == NULL);
    }
    close(fd);
    return 0;
}
