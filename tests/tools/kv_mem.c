/*
 * kv_mem.c - the memory the KV cache takes for one long sequence, with the
 * layer groups of kv.h (windowed layers keep their window) or with every
 * layer keeping every position (--full), for bench/kv/run.sh.
 *
 *   kv_mem MODEL.gguf N_TOKENS [--ctx C] [--batch B] [--threads T] [--full]
 *
 * Decodes N_TOKENS pseudo-random tokens of one sequence in batches of B
 * (512), in a context of C positions (N_TOKENS), then prints one line:
 * the cache's groups, bytes allocated and in use (em_kv_stats), blocks in
 * use per group, the process's peak resident memory, the decode time and
 * the CPU time of the whole process.
 * N_TOKENS 0 only creates the context (the bytes allocated for C).
 */
#include "ember.h"
#include "tool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* VmHWM of this process in kB, or -1. */
static long peak_rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: kv_mem MODEL.gguf N_TOKENS [--ctx C] [--batch B] [--threads T] [--full]\n");
        return 2;
    }
    int32_t n_tok = 0, n_ctx = 0, n_batch = 512, n_threads = 2;
    bool full = false;
    if (!parse_int(argv[2], 0, 1 << 24, &n_tok)) {
        fprintf(stderr, "kv_mem: bad N_TOKENS '%s'\n", argv[2]);
        return 2;
    }
    for (int i = 3; i < argc; i++) {
        bool ok = true;
        if (!strcmp(argv[i], "--full")) full = true;
        else if (!strcmp(argv[i], "--ctx") && i + 1 < argc) ok = parse_int(argv[++i], 1, 1 << 24, &n_ctx);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) ok = parse_int(argv[++i], 1, 1 << 16, &n_batch);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) ok = parse_int(argv[++i], 1, 512, &n_threads);
        else ok = false;
        if (!ok) {
            fprintf(stderr, "kv_mem: bad option %s\n", argv[i]);
            return 2;
        }
    }
    if (n_ctx == 0) n_ctx = n_tok > 0 ? n_tok : 4096;
    if (n_tok > n_ctx) {
        fprintf(stderr, "kv_mem: %d tokens do not fit a context of %d\n", n_tok, n_ctx);
        return 2;
    }
    em_model *m = NULL;
    em_context *c = NULL;
    em_batch b = {0};
    int rc = 1;
    em_status st = em_model_load(&m, argv[1], NULL);
    if (st != EM_OK) goto fail;
    em_context_params cp = em_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.n_threads = n_threads;
    cp.kv_full = full;
    if ((st = em_context_init(&c, m, &cp)) != EM_OK) goto fail;
    if ((st = em_batch_init(&b, n_batch)) != EM_OK) goto fail;
    const int32_t nv = em_model_n_vocab(m);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint32_t x = 12345;
    for (int32_t p = 0; p < n_tok;) {
        em_batch_clear(&b);
        for (int32_t i = 0; i < n_batch && p < n_tok; i++, p++) {
            x = x * 1664525u + 1013904223u;
            em_batch_add(&b, (em_token)(x >> 8) % nv, p, 0, p == n_tok - 1);
        }
        if ((st = em_decode(c, &b)) != EM_OK) goto fail;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    em_kv_stats ks;
    em_kv_get_stats(c, &ks);
    printf("%s ctx %d tokens %d: kv allocated %.2f MiB, in use %.2f MiB; groups", full ? "full   " : "grouped", n_ctx,
           n_tok, (double)ks.bytes / (1 << 20), (double)ks.bytes_used / (1 << 20));
    for (int g = 0; g < ks.n_groups; g++) {
        const em_kv_group_stats *gs = &ks.groups[g];
        if (gs->window || gs->chunk)
            printf(" [%d layers, %s %d: %d/%d blocks]", gs->n_layer, gs->window ? "window" : "chunk",
                   gs->window ? gs->window : gs->chunk, gs->n_used, gs->n_blocks);
        else
            printf(" [%d layers, global: %d/%d blocks]", gs->n_layer, gs->n_used, gs->n_blocks);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("; peak RSS %ld kB; decode %.2f s (process CPU %.2f s)\n", peak_rss_kb(),
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9,
           (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
               (double)ru.ru_stime.tv_usec * 1e-6);
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "kv_mem: %s\n", em_last_error());
out:
    em_batch_free(&b);
    em_context_free(c);
    em_model_free(m);
    return rc;
}
