/*
 * batch_logits.c - the logits of a serving engine's batches, for
 * comparing two builds bit for bit: N sequences each take a prompt of
 * their own length (5 to 64 made-up tokens, one batch per prompt), then
 * STEPS decode steps run one new token for every sequence in one batch.
 * OUT receives, as little-endian float32, each prompt's last logits in
 * sequence order, then every decode step's logits, row by row.
 *
 *   batch_logits MODEL.gguf N OUT.f32 [--steps 4] [--threads 2] [--kv f16|q8_0|f32] [--together]
 *
 * With --together the prompts are packed as the server packs them: as
 * many whole prompts per batch as fit in 256 rows, each asking for its
 * last row's logits only, so the prompt steps of several sequences whose
 * output rows are a few of the batch's are covered too.
 *
 * dump_logits covers one sequence; this covers the multi-row decode
 * steps (the lane kernels' tiles of 16 rows and their remainders), so a
 * kernel change can be checked with N = 2, 16, 23, 40, 64 against a build
 * of main with cmp.  --kv picks the cache's storage (F16, the default,
 * as the server's).  Only the public API of include/ember.h is used.
 */
#include "ember.h"
#include "tool.h"

#include <stdio.h>
#include <string.h>

/* A made-up token of the vocabulary (a fixed LCG: runs compare). */
static em_token next_token(uint32_t *state, int32_t n_vocab) {
    *state = *state * 1664525u + 1013904223u;
    return (em_token)((*state >> 8) % (uint32_t)n_vocab);
}

static bool write_row(FILE *f, const float *row, int32_t n) {
    return row && fwrite(row, sizeof *row, (size_t)n, f) == (size_t)n;
}

int main(int argc, char **argv) {
    int n = 0, steps = 4, threads = 2;
    bool together = false;
    em_type kv = EM_TYPE_F16;
    if (argc < 4 || !parse_int(argv[2], 1, 256, &n)) {
        fprintf(stderr, "usage: batch_logits MODEL.gguf N(1-256) OUT.f32 [--steps 4] [--threads 2] [--kv f16|q8_0|f32] "
                        "[--together]\n");
        return 2;
    }
    for (int i = 4; i < argc; i += 2) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = false;
        if (!strcmp(argv[i], "--together")) {
            together = true;
            i--; /* a flag: no value follows */
            continue;
        }
        if (!strcmp(argv[i], "--steps")) ok = parse_int(v, 1, 1000, &steps);
        else if (!strcmp(argv[i], "--threads")) ok = parse_int(v, 0, 256, &threads);
        else if (!strcmp(argv[i], "--kv") && v) {
            ok = !strcmp(v, "f16") || !strcmp(v, "q8_0") || !strcmp(v, "f32");
            kv = !strcmp(v, "q8_0") ? EM_TYPE_Q8_0 : !strcmp(v, "f32") ? EM_TYPE_F32 : EM_TYPE_F16;
        }
        if (!ok) {
            fprintf(stderr, "batch_logits: bad option %s %s\n", argv[i], v ? v : "");
            return 2;
        }
    }
    enum { MAX_PROMPT = 64, PACKED_ROWS = 256 };
    em_model *m = NULL;
    if (em_model_load(&m, argv[1], NULL) != EM_OK) {
        fprintf(stderr, "batch_logits: %s\n", em_last_error());
        return 1;
    }
    const int32_t n_vocab = em_model_n_vocab(m);
    em_context_params cp = em_context_default_params();
    cp.n_seq_max = n;
    cp.n_ctx = (MAX_PROMPT + steps) * n;
    cp.n_batch = together ? (n > PACKED_ROWS ? n : PACKED_ROWS) : n > MAX_PROMPT ? n : MAX_PROMPT;
    cp.n_threads = threads;
    cp.kv_type = kv;
    em_context *c = NULL;
    em_batch b = {0};
    FILE *f = NULL;
    int rc = 1;
    int32_t len[256];
    if (em_context_init(&c, m, &cp) != EM_OK || em_batch_init(&b, cp.n_batch) != EM_OK) {
        fprintf(stderr, "batch_logits: %s\n", em_last_error());
        goto out;
    }
    if (!(f = fopen(argv[3], "wb"))) {
        fprintf(stderr, "batch_logits: cannot write %s\n", argv[3]);
        goto out;
    }
    uint32_t rng = 12345;
    for (int s = 0; s < n; s++) len[s] = 5 + (s * 37) % (MAX_PROMPT - 4);
    for (int s = 0; s < n;) {
        /* Prompts s..e-1 go in this batch: one, or as many as fit. */
        int e = s + 1;
        int32_t rows = len[s];
        while (together && e < n && rows + len[e] <= cp.n_batch) rows += len[e++];
        em_batch_clear(&b);
        for (int q = s; q < e; q++)
            for (int32_t j = 0; j < len[q]; j++) em_batch_add(&b, next_token(&rng, n_vocab), j, q, j == len[q] - 1);
        if (em_decode(c, &b) != EM_OK) goto fail;
        int32_t last = -1;
        for (int q = s; q < e; q++) {
            last += len[q];
            if (!write_row(f, em_get_logits(c, last), n_vocab)) goto fail;
        }
        s = e;
    }
    for (int step = 0; step < steps; step++) {
        em_batch_clear(&b);
        for (int s = 0; s < n; s++) em_batch_add(&b, next_token(&rng, n_vocab), len[s] + step, s, true);
        if (em_decode(c, &b) != EM_OK) goto fail;
        for (int s = 0; s < n; s++)
            if (!write_row(f, em_get_logits(c, s), n_vocab)) goto fail;
    }
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "batch_logits: %s\n", em_last_error());
out:
    if (f && fclose(f) != 0) rc = 1;
    em_batch_free(&b);
    em_context_free(c);
    em_model_free(m);
    return rc;
}
