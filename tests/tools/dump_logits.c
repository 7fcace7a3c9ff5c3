/*
 * dump_logits.c - runs a token sequence through ember's engine and writes
 * the logits of every position, for comparison with tests/ref/reference.py.
 *
 *   dump_logits MODEL.gguf TOKENS OUT.f32 [--split N] [--threads T] [--kv f32|f16]
 *
 * TOKENS is a comma-separated list of ids at positions 0, 1, 2, ...
 * OUT.f32 receives n_tokens * n_vocab little-endian float32 values, the
 * logits of position 0 first.
 *
 * --split 0 (the default) decodes the whole sequence as one batch.
 * --split N decodes the first N tokens as one batch and then one token per
 * batch, so that the KV cache path (attention over positions written by
 * earlier calls) is exercised as well.  Both must agree with the reference.
 *
 * The KV cache is F32 by default: an F16 cache rounds K and V to 11 bits
 * and would by itself exceed the reference check's 1e-4 tolerance.
 *
 * EMBER_NO_REPACK=1 in the environment loads the weights in the file's
 * layout (em_model_params.repack = false), for comparing packed weights
 * with it; compare with the default F32 cache (see docs/ARCHITECTURE.md,
 * "Packed weights").
 *
 * Only the public API of include/ember.h is used, so this is exactly what
 * an application would see.
 */
#include "ember.h"
#include "tool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void) {
    fprintf(stderr, "usage: dump_logits MODEL.gguf TOKENS OUT.f32 [--split N] [--threads T] [--kv f32|f16|q8_0]\n"
                    "       TOKENS: comma-separated ids, e.g. 1,403,407\n");
}

/* Parses "1,2,3" into a new array; returns the count or -1. */
static int32_t parse_tokens(const char *s, em_token **out) {
    int32_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    em_token *t = malloc((size_t)cap * sizeof *t);
    if (!t) return -1;
    int32_t n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            free(t);
            return -1;
        }
        t[n++] = (em_token)v;
        p = *end ? end + 1 : end;
    }
    *out = t;
    return n;
}

/* Decodes tokens[first, first + count) as one batch, every row asking for
 * logits, and copies them to out[first * n_vocab ...]. */
static em_status run_batch(em_context *ctx, em_batch *batch, const em_token *tokens, int32_t first,
                           int32_t count, int32_t n_vocab, float *out) {
    em_batch_clear(batch);
    for (int32_t i = 0; i < count; i++) {
        em_status st = em_batch_add(batch, tokens[first + i], first + i, 0, true);
        if (st != EM_OK) return st;
    }
    em_status st = em_decode(ctx, batch);
    if (st != EM_OK) return st;
    for (int32_t i = 0; i < count; i++) {
        const float *l = em_get_logits(ctx, i);
        if (!l) {
            fprintf(stderr, "dump_logits: no logits for row %d of a batch that asked for them\n", i);
            return EM_ERR_INTERNAL;
        }
        memcpy(out + (size_t)(first + i) * (size_t)n_vocab, l, (size_t)n_vocab * sizeof *l);
    }
    return EM_OK;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        usage();
        return 2;
    }
    const char *model_path = argv[1], *out_path = argv[3];
    int32_t split = 0, threads = 0;
    em_type kv = EM_TYPE_F32;
    for (int i = 4; i < argc; i += 2) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = v != NULL;
        if (ok && !strcmp(argv[i], "--split")) ok = parse_int(v, 0, INT32_MAX, &split);
        else if (ok && !strcmp(argv[i], "--threads")) ok = parse_int(v, 0, 1024, &threads);
        else if (ok && !strcmp(argv[i], "--kv")) {
            if (!strcmp(v, "f32")) kv = EM_TYPE_F32;
            else if (!strcmp(v, "f16")) kv = EM_TYPE_F16;
            else if (!strcmp(v, "q8_0")) kv = EM_TYPE_Q8_0;
            else ok = false;
        } else ok = false;
        if (!ok) {
            usage();
            return 2;
        }
    }
    em_token *tokens = NULL;
    int32_t n = parse_tokens(argv[2], &tokens);
    if (n <= 0) {
        fprintf(stderr, "dump_logits: bad token list '%s'\n", argv[2]);
        free(tokens);
        return 2;
    }
    if (split >= n) split = 0;

    em_model *model = NULL;
    em_context *ctx = NULL;
    em_batch batch;
    memset(&batch, 0, sizeof batch);
    float *logits = NULL;
    FILE *f;
    int rc = 1;
    em_model_params mp = em_model_default_params();
    if (getenv("EMBER_NO_REPACK")) mp.repack = false; /* compare packed and file layouts */
    em_status st = em_model_load(&model, model_path, &mp);
    if (st != EM_OK) goto fail;
    int32_t n_vocab = em_model_n_vocab(model);
    for (int32_t i = 0; i < n; i++) {
        if (tokens[i] >= n_vocab) {
            fprintf(stderr, "dump_logits: token %d is outside the vocabulary (%d)\n", tokens[i], n_vocab);
            goto out;
        }
    }

    em_context_params cp = em_context_default_params();
    cp.n_ctx = n < 64 ? 64 : n;
    cp.n_batch = n;
    cp.n_threads = threads;
    cp.kv_type = kv;
    cp.n_seq_max = 1;
    if ((st = em_context_init(&ctx, model, &cp)) != EM_OK) goto fail;
    if ((st = em_batch_init(&batch, n)) != EM_OK) goto fail;
    logits = malloc((size_t)n * (size_t)n_vocab * sizeof *logits);
    if (!logits) {
        fprintf(stderr, "dump_logits: out of memory\n");
        goto out;
    }

    if (split == 0) {
        st = run_batch(ctx, &batch, tokens, 0, n, n_vocab, logits);
    } else {
        st = run_batch(ctx, &batch, tokens, 0, split, n_vocab, logits);
        for (int32_t i = split; i < n && st == EM_OK; i++)
            st = run_batch(ctx, &batch, tokens, i, 1, n_vocab, logits);
    }
    if (st != EM_OK) goto fail;

    size_t count = (size_t)n * (size_t)n_vocab;
    f = fopen(out_path, "wb");
    bool written = f && fwrite(logits, sizeof *logits, count, f) == count;
    if (f && fclose(f) != 0) written = false;
    if (!written) {
        fprintf(stderr, "dump_logits: cannot write %s\n", out_path);
        goto out;
    }
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "dump_logits: %s: %s\n", em_status_str(st), em_last_error());
out:
    free(logits);
    em_batch_free(&batch);
    em_context_free(ctx);
    em_model_free(model);
    free(tokens);
    return rc;
}
