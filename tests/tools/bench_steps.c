/*
 * bench_steps.c - the time of the engine's two kinds of step, measured on
 * em_decode alone (no server, no HTTP): a prompt step (P prompt rows of one
 * sequence, logits for the last) and a decode step of N rows (one new
 * token for each of N sequences that already hold C positions, logits for
 * every row), for each N asked.  This is the per-step breakdown behind
 * bench/serve's throughput: with it one can tell how much of the load
 * benchmark's time is the model's and how far batching N rows can go.
 *
 *   bench_steps MODEL.gguf [--threads T] [--rows 1,4,16,64] [--prompt 135]
 *               [--ctx 200] [--reps 9] [--kv-type f16|q8_0|f32] [--mixed D]
 *
 * --kv-type is the cache's storage (F16 by default), as ember's --kv-type.
 *
 * --mixed D also times the step a server runs when a prompt arrives while
 * D others stream: D decode rows (sequences holding C positions) and then
 * the P rows of a new sequence's prompt, in the order ember serve builds
 * it, against the P-row prompt step alone.  The two alternate rep by rep
 * (A B A B), so that both see the same state of a shared machine, and the
 * table adds the median of the per-rep ratios mixed / alone and their
 * range: what continuous batching costs an arriving prompt's first token.
 *
 * Each step is timed --reps times; the table gives the median wall time
 * and the median process CPU time (all threads, spinning at barriers
 * included), so that a loaded machine can still be compared through CPU
 * time.  rows/s = rows per step / median wall time.
 *
 * Only the public API of include/ember.h is used.  Benchmarks are not
 * tests: nothing here asserts a time.
 */
#include "ember.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_LEVELS 8

static double now_s(clockid_t clk) {
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static bool parse_int(const char *s, long lo, long hi, int32_t *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = (int32_t)v;
    return true;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* A made-up token of the vocabulary (a fixed LCG: runs compare). */
static em_token token_at(uint32_t *state, int32_t n_vocab) {
    *state = *state * 1664525u + 1013904223u;
    return (em_token)((*state >> 8) % (uint32_t)n_vocab);
}

/* Fills sequences 0..n-1 with ctx positions each, in batches of n_batch
 * rows; false (with a message) when em_decode fails. */
static bool fill_cache(em_context *c, em_batch *b, int32_t n, int32_t ctx, int32_t n_batch, uint32_t *rng,
                       int32_t n_vocab) {
    em_kv_clear(c);
    for (int32_t s = 0; s < n; s++)
        for (int32_t p0 = 0; p0 < ctx; p0 += n_batch) {
            em_batch_clear(b);
            for (int32_t j = p0; j < ctx && j < p0 + n_batch; j++) em_batch_add(b, token_at(rng, n_vocab), j, s, false);
            if (em_decode(c, b) != EM_OK) {
                fprintf(stderr, "bench_steps: filling the cache: %s\n", em_last_error());
                return false;
            }
        }
    return true;
}

typedef struct timing {
    double wall_ms, cpu_ms;
} timing;

/* Decodes b, timing it; false (with a message) when em_decode fails. */
static bool timed_decode(em_context *c, const em_batch *b, double *wall, double *cpu) {
    double w0 = now_s(CLOCK_MONOTONIC), c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    em_status st = em_decode(c, b);
    *wall = 1e3 * (now_s(CLOCK_MONOTONIC) - w0);
    *cpu = 1e3 * (now_s(CLOCK_PROCESS_CPUTIME_ID) - c0);
    if (st != EM_OK) fprintf(stderr, "bench_steps: decode failed: %s\n", em_last_error());
    return st == EM_OK;
}

int main(int argc, char **argv) {
    if (argc < 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: bench_steps MODEL.gguf [--threads T] [--rows 1,4,16,64] [--prompt 135] [--ctx 200] "
                        "[--reps 9] [--kv-type f16|q8_0|f32] [--mixed D]\n");
        return 2;
    }
    int32_t threads = 0, prompt = 135, ctx = 200, reps = 9, levels[MAX_LEVELS] = {1, 4, 16, 64}, n_levels = 4, mixed = 0;
    em_type kv_type = EM_TYPE_F16;
    for (int i = 2; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = v != NULL;
        if (ok && !strcmp(a, "--threads")) ok = parse_int(v, 0, 256, &threads);
        else if (ok && !strcmp(a, "--prompt")) ok = parse_int(v, 1, 8192, &prompt);
        else if (ok && !strcmp(a, "--ctx")) ok = parse_int(v, 1, 8192, &ctx);
        else if (ok && !strcmp(a, "--reps")) ok = parse_int(v, 1, 1000, &reps);
        else if (ok && !strcmp(a, "--mixed")) ok = parse_int(v, 1, 1024, &mixed);
        else if (ok && !strcmp(a, "--kv-type")) {
            ok = !strcmp(v, "f16") || !strcmp(v, "q8_0") || !strcmp(v, "f32");
            kv_type = !strcmp(v, "q8_0") ? EM_TYPE_Q8_0 : !strcmp(v, "f32") ? EM_TYPE_F32 : EM_TYPE_F16;
        }
        else if (ok && !strcmp(a, "--rows")) {
            n_levels = 0;
            char buf[128];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *tok = strtok(buf, ","); ok && tok; tok = strtok(NULL, ",")) {
                ok = n_levels < MAX_LEVELS && parse_int(tok, 1, 1024, &levels[n_levels]);
                n_levels++;
            }
        } else ok = false;
        if (!ok) {
            fprintf(stderr, "bench_steps: bad option %s %s\n", a, v ? v : "");
            return 2;
        }
    }
    int32_t max_rows = 1;
    for (int i = 0; i < n_levels; i++) max_rows = levels[i] > max_rows ? levels[i] : max_rows;
    /* --mixed: D streaming sequences and the arriving prompt's. */
    const int32_t n_seq = mixed + 1 > max_rows ? mixed + 1 : max_rows;
    const int32_t n_batch = prompt + mixed > max_rows ? prompt + mixed : max_rows;

    em_model *m = NULL;
    if (em_model_load(&m, argv[1], NULL) != EM_OK) {
        fprintf(stderr, "bench_steps: %s\n", em_last_error());
        return 1;
    }
    const int32_t n_vocab = em_model_n_vocab(m);
    const int32_t per_seq = (ctx > prompt ? ctx : prompt) + reps + 1;
    em_context_params cp = em_context_default_params();
    cp.n_seq_max = n_seq;
    cp.n_ctx = per_seq * n_seq;
    cp.n_batch = n_batch;
    cp.n_threads = threads;
    cp.kv_type = kv_type;
    em_context *c = NULL;
    em_batch b = {0};
    int rc = 1;
    double *wall = malloc((size_t)reps * sizeof *wall), *cpu = malloc((size_t)reps * sizeof *cpu);
    double *wall2 = malloc((size_t)reps * sizeof *wall2), *cpu2 = malloc((size_t)reps * sizeof *cpu2);
    double *ratio = malloc((size_t)reps * sizeof *ratio);
    if (!wall || !cpu || !wall2 || !cpu2 || !ratio || em_context_init(&c, m, &cp) != EM_OK || em_batch_init(&b, cp.n_batch) != EM_OK) {
        fprintf(stderr, "bench_steps: %s\n", em_last_error());
        goto out;
    }
    uint32_t rng = 7;
    printf("model %s, threads %d (0: physical cores), %s cache, %d reps; medians per step\n", argv[1], threads,
           em_type_name(kv_type), reps);
    printf("%-22s %10s %10s %10s\n", "step", "wall ms", "cpu ms", "rows/s");

    /* The prompt step: sequence 0 from empty, logits for its last row. */
    for (int r = 0; r < reps; r++) {
        em_kv_remove(c, 0, 0, -1);
        em_batch_clear(&b);
        for (int32_t j = 0; j < prompt; j++) em_batch_add(&b, token_at(&rng, n_vocab), j, 0, j == prompt - 1);
        if (!timed_decode(c, &b, &wall[r], &cpu[r])) goto out;
    }
    double pw = median(wall, reps), pc = median(cpu, reps);
    char label[64];
    snprintf(label, sizeof label, "prompt %d rows", prompt);
    printf("%-22s %10.2f %10.2f %10.0f\n", label, pw, pc, 1e3 * prompt / pw);

    /* Decode steps: every sequence first holds ctx positions. */
    for (int li = 0; li < n_levels; li++) {
        const int32_t n = levels[li];
        if (!fill_cache(c, &b, n, ctx, cp.n_batch, &rng, n_vocab)) goto out;
        for (int r = 0; r < reps; r++) {
            em_batch_clear(&b);
            for (int32_t s = 0; s < n; s++) em_batch_add(&b, token_at(&rng, n_vocab), ctx + r, s, true);
            if (!timed_decode(c, &b, &wall[r], &cpu[r])) goto out;
        }
        double dw = median(wall, reps), dc = median(cpu, reps);
        snprintf(label, sizeof label, "decode %d rows", n);
        printf("%-22s %10.2f %10.2f %10.0f\n", label, dw, dc, 1e3 * n / dw);
    }

    /* The arriving prompt: alone (A) and after D decode rows (B), in turn;
     * the prompt's sequence D is emptied before each. */
    if (mixed > 0) {
        if (!fill_cache(c, &b, mixed, ctx, cp.n_batch, &rng, n_vocab)) goto out;
        for (int r = 0; r < reps; r++) {
            em_kv_remove(c, mixed, 0, -1);
            em_batch_clear(&b);
            for (int32_t j = 0; j < prompt; j++) em_batch_add(&b, token_at(&rng, n_vocab), j, mixed, j == prompt - 1);
            if (!timed_decode(c, &b, &wall[r], &cpu[r])) goto out;
            em_kv_remove(c, mixed, 0, -1);
            em_batch_clear(&b);
            for (int32_t s = 0; s < mixed; s++) em_batch_add(&b, token_at(&rng, n_vocab), ctx + r, s, true);
            for (int32_t j = 0; j < prompt; j++) em_batch_add(&b, token_at(&rng, n_vocab), j, mixed, j == prompt - 1);
            if (!timed_decode(c, &b, &wall2[r], &cpu2[r])) goto out;
            ratio[r] = wall2[r] / wall[r];
        }
        double aw = median(wall, reps), ac = median(cpu, reps);
        double bw = median(wall2, reps), bc = median(cpu2, reps);
        double rm = median(ratio, reps); /* sorts ratio: its ends are the range */
        snprintf(label, sizeof label, "prompt %d (paired)", prompt);
        printf("%-22s %10.2f %10.2f %10.0f\n", label, aw, ac, 1e3 * prompt / aw);
        snprintf(label, sizeof label, "prompt %d + decode %d", prompt, mixed);
        printf("%-22s %10.2f %10.2f %10.0f\n", label, bw, bc, 1e3 * (prompt + mixed) / bw);
        printf("mixed / alone, wall: median %.3f, range %.3f-%.3f over %d pairs\n", rm, ratio[0], ratio[reps - 1], reps);
    }
    rc = 0;
out:
    em_batch_free(&b);
    em_context_free(c);
    em_model_free(m);
    free(wall);
    free(cpu);
    free(wall2);
    free(cpu2);
    free(ratio);
    return rc;
}
