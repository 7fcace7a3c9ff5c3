/*
 * bench_dot.c - throughput of the dot-product kernels and activation
 * quantizers, per weight type and per kernel set this CPU runs.
 *
 * The dot benchmark is a GEMV: one activation row (quantized to the
 * type's vec_dot_type, so it stays in L1/L2) dotted with every row of a
 * weight matrix much larger than the last-level cache (64 MiB by
 * default), on one thread.  Weights therefore stream from DRAM, as they
 * do when a model generates a token, and the figure reported is GB/s of
 * weight bytes: a kernel at the memory bandwidth cannot go faster, a
 * kernel below it is compute-bound.  The F32 row is the streaming
 * reference (its kernel does almost nothing per byte).
 *
 * Weights are random bytes with finite fp16 scales: no kernel has
 * data-dependent branches, so the values do not change the timing, and
 * quantizing 64 MiB with the real (searching) quantizers would take
 * minutes.
 *
 * Times are this thread's CPU time (CLOCK_THREAD_CPUTIME_ID), not wall
 * time: on a shared, oversubscribed machine the wall clock also counts
 * the time the thread spent descheduled.  Memory stalls are CPU time, so
 * the figures still include waiting for DRAM.  Each figure is the median
 * of several passes.  Nothing here asserts a time.
 *
 * A small --mb (say 0.5) keeps the matrix in cache instead and shows each
 * kernel's compute ceiling.
 *
 * usage: bench_dot [--mb N] [--k N] [--reps N] [--types Q4_0,Q4_K,...]
 *                  [--sets generic,avx2,avx512]
 */
#include "quant/blocks.h"
#include "quant/dot.h"
#include "quant/quant.h"
#include "tool.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const em_type bench_types[] = {
    EM_TYPE_F32,  EM_TYPE_F16,  EM_TYPE_BF16, EM_TYPE_Q8_0, EM_TYPE_Q4_0,
    EM_TYPE_Q4_1, EM_TYPE_Q5_0, EM_TYPE_Q5_1, EM_TYPE_IQ4_NL, EM_TYPE_Q2_K,
    EM_TYPE_Q3_K, EM_TYPE_Q4_K, EM_TYPE_Q5_K, EM_TYPE_Q6_K, EM_TYPE_IQ4_XS,
};
#define N_BENCH_TYPES (sizeof bench_types / sizeof bench_types[0])

static const char *const all_sets[] = {"generic", "avx2", "avx512", "neon"};
#define N_ALL_SETS (sizeof all_sets / sizeof all_sets[0])

/* ------------------------------------------------------------ data */

static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint64_t rng_next(void) { /* xorshift64 */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static float rng_gauss(void) {
    const double u = ((double)(rng_next() >> 11) + 0.5) / 9007199254740992.0;
    const double v = ((double)(rng_next() >> 11) + 0.5) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

/* Byte offsets of the fp16 scale fields in one block of t (-1: none). */
static void scale_offsets(em_type t, int *o1, int *o2) {
    *o1 = 0;
    *o2 = -1;
    switch (t) {
    case EM_TYPE_Q2_K: *o1 = 80; *o2 = 82; break;
    case EM_TYPE_Q3_K: *o1 = 108; break;
    case EM_TYPE_Q6_K: *o1 = 208; break;
    case EM_TYPE_Q4_1: case EM_TYPE_Q5_1: case EM_TYPE_Q4_K: case EM_TYPE_Q5_K: *o2 = 2; break;
    default: break;
    }
}

/* Fills a weight matrix of `bytes` bytes of type t with random content
 * that every kernel reads as finite numbers. */
static void fill_weights(em_type t, uint8_t *w, size_t bytes) {
    const em_type_traits *tr = em_get_type_traits(t);
    if (!tr->is_quantized) {
        const size_t n = bytes / tr->type_size;
        for (size_t i = 0; i < n; i++) {
            const float v = (float)((int64_t)(rng_next() >> 40) - (1 << 23)) / (float)(1 << 23);
            if (t == EM_TYPE_F32) ((float *)w)[i] = v;
            else if (t == EM_TYPE_F16) ((uint16_t *)w)[i] = em_fp32_to_fp16(v);
            else ((uint16_t *)w)[i] = em_fp32_to_bf16(v);
        }
        return;
    }
    for (size_t i = 0; i + 8 <= bytes; i += 8) {
        const uint64_t r = rng_next();
        memcpy(w + i, &r, 8);
    }
    int o1, o2;
    scale_offsets(t, &o1, &o2);
    const uint16_t h = em_fp32_to_fp16(0.01f);
    for (size_t off = 0; off + tr->type_size <= bytes; off += tr->type_size) {
        memcpy(w + off + o1, &h, 2);
        if (o2 >= 0) memcpy(w + off + o2, &h, 2);
    }
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Whether name is in the comma-separated list (NULL list: everything). */
static bool in_list(const char *list, const char *name) {
    if (!list) return true;
    const size_t len = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        const size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == len && strncmp(p, name, l) == 0) return true;
        if (!e) break;
        p = e + 1;
    }
    return false;
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv) {
    double mb = 64;
    int64_t k = 4096;
    int reps = 7;
    const char *types = NULL, *sets = NULL;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--mb") == 0) mb = atof(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--k") == 0) k = atoll(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--reps") == 0) reps = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--types") == 0) types = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--sets") == 0) sets = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--mb N] [--k N] [--reps N] [--types A,B] [--sets A,B]\n",
                    argv[0]);
            return 2;
        }
    }
    if (!(mb >= 0.0625 && mb <= 65536) || k < 256 || k % 256 != 0 || reps < 1 || reps > 100) {
        fprintf(stderr, "bench_dot: need 1/16 <= --mb <= 65536, --k a positive multiple of 256, 1 <= --reps <= 100\n");
        return 2;
    }

    const char *default_set = em_vec_dot_isa();
    const char *run_sets[N_ALL_SETS];
    int n_sets = 0;
    for (size_t s = 0; s < N_ALL_SETS; s++)
        if (in_list(sets, all_sets[s]) && em_kernels_select(all_sets[s]) == 0)
            run_sets[n_sets++] = all_sets[s];
    if (n_sets == 0) {
        fprintf(stderr, "bench_dot: none of the requested kernel sets runs here\n");
        return 2;
    }

    const size_t bytes = (size_t)(mb * 1048576.0);
    uint8_t *w = malloc(bytes);
    float *x = malloc((size_t)k * sizeof *x);
    void *a = malloc(em_row_size(EM_TYPE_Q8_K, k) + (size_t)k * sizeof(float));
    double *t = malloc((size_t)reps * sizeof *t);
    if (!w || !x || !a || !t) {
        fprintf(stderr, "bench_dot: out of memory\n");
        return 1;
    }
    for (int64_t i = 0; i < k; i++) x[i] = rng_gauss();

    printf("GEMV, one thread: k = %lld, %g MiB of weights per type, median of %d passes\n",
           (long long)k, mb, reps);
    printf("GB/s of weight bytes streamed (default kernel set: %s)\n\n", default_set);
    printf("%-8s", "type");
    for (int s = 0; s < n_sets; s++) printf(" %9s", run_sets[s]);
    printf("   max rel diff\n");

    for (size_t ti = 0; ti < N_BENCH_TYPES; ti++) {
        const em_type ty = bench_types[ti];
        const em_type_traits *tr = em_get_type_traits(ty);
        if (!in_list(types, tr->name)) continue;
        const size_t rs = em_row_size(ty, k);
        const int64_t rows = (int64_t)(bytes / rs);
        fill_weights(ty, w, (size_t)rows * rs);
        printf("%-8s", tr->name);
        double ref = 0, worst = 0;
        for (int s = 0; s < n_sets; s++) {
            em_kernels_select(run_sets[s]);
            if (em_quantize_row(tr->vec_dot_type, x, a, k, NULL) != EM_OK) {
                fprintf(stderr, "bench_dot: %s\n", em_last_error());
                return 1;
            }
            double sum = 0;
            for (int rep = -1; rep < reps; rep++) { /* pass -1 warms up */
                const double t0 = thread_time_s();
                double s0 = 0;
                for (int64_t r = 0; r < rows; r++) s0 += em_vec_dot(ty, k, w + (size_t)r * rs, a);
                const double dt = thread_time_s() - t0;
                if (rep >= 0) t[rep] = dt;
                sum = s0;
            }
            printf(" %9.2f", (double)rows * (double)rs / median(t, reps) / 1e9);
            fflush(stdout);
            if (s == 0) ref = sum;
            else if (ref != 0) worst = fmax(worst, fabs(sum - ref) / fabs(ref));
        }
        printf("   %.1e\n", worst);
    }

    /* The activation quantizers: one row of k floats, repeated until each
     * pass takes about 20 ms (it lives in L1/L2, as a matmul input does). */
    printf("\nactivation quantizers, k = %lld: ns per row (GB/s of float input)\n\n",
           (long long)k);
    printf("%-8s", "type");
    for (int s = 0; s < n_sets; s++) printf(" %21s", run_sets[s]);
    printf("\n");
    static const em_type qtypes[] = {EM_TYPE_Q8_0, EM_TYPE_Q8_1, EM_TYPE_Q8_K};
    for (size_t qi = 0; qi < 3; qi++) {
        const em_type ty = qtypes[qi];
        printf("%-8s", em_type_name(ty));
        for (int s = 0; s < n_sets; s++) {
            em_kernels_select(run_sets[s]);
            int64_t iters = 1;
            for (;;) { /* calibrate */
                const double t0 = thread_time_s();
                for (int64_t it = 0; it < iters; it++) em_quantize_row(ty, x, a, k, NULL);
                if (thread_time_s() - t0 > 0.02 || iters > (1 << 24)) break;
                iters *= 2;
            }
            for (int rep = 0; rep < reps; rep++) {
                const double t0 = thread_time_s();
                for (int64_t it = 0; it < iters; it++) em_quantize_row(ty, x, a, k, NULL);
                t[rep] = (thread_time_s() - t0) / (double)iters;
            }
            const double per = median(t, reps);
            printf(" %10.0f ns (%5.1f)", per * 1e9, (double)k * 4 / per / 1e9);
            fflush(stdout);
        }
        printf("\n");
    }
    em_kernels_select(default_set);
    free(w);
    free(x);
    free(a);
    free(t);
    return 0;
}
