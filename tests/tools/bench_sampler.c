/*
 * bench_sampler.c - the time em_sampler_sample takes for one row of
 * logits, by sampling setting, on one thread.
 *
 *   bench_sampler [--vocab 32000] [--rows 400] [--reps 7]
 *
 * Rows of random logits (a spread like a language model's: most a few
 * units below the best) are sampled with
 *   greedy     temperature 0
 *   openai     temperature 1, top_p 1, nothing else (OpenAI's defaults)
 *   temp0.7    temperature 0.7, nothing else
 *   penalty    temperature 1 with a frequency penalty over a 64-token window
 *   topk40     temperature 0.8, top-k 40
 *   defaults   em_sampler_default_params() (top-k 40, top-p 0.95, min-p 0.05)
 * and the time per row printed in microseconds: this thread's CPU time
 * (CLOCK_THREAD_CPUTIME_ID), the best of --reps passes over the rows, so
 * that time descheduled on a loaded machine does not count.  EMBER_CPU
 * chooses the kernel set (generic, avx2, avx512).  A checksum of the
 * drawn tokens is printed: the same on every run and kernel set.  Nothing
 * here asserts a time.
 */
#include "ember.h"
#include "tool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A small xorshift, so the rows are the same on every run. */
static uint64_t rng_state = 88172645463325252ULL;
static float uniform01(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)(rng_state >> 40) / 16777216.0f;
}

int main(int argc, char **argv) {
    int vocab = 32000, rows = 400, reps = 7;
    for (int i = 1; i < argc; i += 2) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = false;
        if (!strcmp(argv[i], "--vocab")) ok = parse_int(v, 1, 1 << 22, &vocab);
        else if (!strcmp(argv[i], "--rows")) ok = parse_int(v, 1, 100000, &rows);
        else if (!strcmp(argv[i], "--reps")) ok = parse_int(v, 1, 1000, &reps);
        if (!ok) {
            fprintf(stderr, "usage: bench_sampler [--vocab N] [--rows N] [--reps N]\n");
            return 2;
        }
    }
    float *logits = malloc((size_t)vocab * rows * sizeof *logits);
    if (!logits) {
        fprintf(stderr, "bench_sampler: out of memory\n");
        return 1;
    }
    /* Roughly a model's spread: a Gaussian-ish bulk, a few strong tokens. */
    for (size_t i = 0; i < (size_t)vocab * rows; i++)
        logits[i] = 4.0f * (uniform01() + uniform01() + uniform01() - 1.5f) + (uniform01() < 0.001f ? 8.0f : 0.0f);

    const char *names[] = {"greedy", "openai", "temp0.7", "penalty", "topk40", "defaults"};
    printf("vocab %d, %d rows, best of %d passes, one thread\n", vocab, rows, reps);
    for (size_t m = 0; m < sizeof names / sizeof *names; m++) {
        em_sampler_params p = em_sampler_default_params();
        if (m != 4 && m != 5) {
            p.top_k = 0;
            p.top_p = 1.0f;
            p.min_p = 0.0f;
        }
        p.temp = m == 0 ? 0.0f : m == 2 ? 0.7f : m == 4 ? 0.8f : m == 5 ? p.temp : 1.0f;
        if (m == 3) p.freq_penalty = 0.5f;
        double best = 1e30;
        uint64_t check = 0;
        for (int r = 0; r < reps; r++) {
            em_sampler *s = NULL;
            if (em_sampler_init(&s, &p, vocab) != EM_OK) {
                fprintf(stderr, "bench_sampler: %s\n", em_last_error());
                return 1;
            }
            uint64_t sum = 0;
            double t0 = thread_time_s();
            for (int i = 0; i < rows; i++) {
                em_token t = em_sampler_sample(s, logits + (size_t)i * vocab);
                em_sampler_accept(s, t);
                sum = sum * 31 + (uint64_t)t;
            }
            double dt = thread_time_s() - t0;
            best = dt < best ? dt : best;
            check = sum;
            em_sampler_free(s);
        }
        printf("%-9s %8.2f us/row  (tokens checksum %016llx)\n", names[m], 1e6 * best / rows,
               (unsigned long long)check);
    }
    free(logits);
    return 0;
}
