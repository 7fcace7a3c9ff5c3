/*
 * bench_stream.c - how close the generation products come to the read
 * bandwidth that `ember bench` takes as the roofline, with nothing else
 * of a token in the way.
 *
 * In turn, round after round (so that the host's bandwidth, which moves
 * from minute to minute, moves under all of them alike):
 *   read    the bandwidth test of `ember bench` (em_bench_read_bandwidth's
 *           loop: each thread sums one contiguous half of a buffer), over
 *           the weight buffer itself;
 *   chunks  each thread multiplies one activation row with its contiguous
 *           half of the buffer (taken as one matrix of k = 2048), a kernel
 *           call per 256 KiB, as the matmul's chunks go: the kernel's own
 *           streaming, with no barrier or sharing;
 *   matrix  the same product through em_matmul_step (chunks claimed from
 *           the pool as in generation);
 *   layers  the same bytes as the matrices of 1.1B Llama layers (q, k, v
 *           in one step, then o, gate with up, down: a barrier after each,
 *           as in the forward pass) one after the other;
 *   layers+pf the same, each thread prefetching its first chunk of the
 *           next step while it waits at a barrier, as the forward pass of
 *           a one-row batch does.
 * Each mode reports its best, 90th-percentile and median GB/s over the
 * rounds, its best as a share of read's best, and the median of its
 * share of read round by round.
 *
 * Rates are bytes over wall time.  With --cpu, each thread's bytes over
 * its own CPU time (CLOCK_THREAD_CPUTIME_ID), summed over the threads:
 * on a loaded machine the time a thread spends descheduled then does not
 * count, so read and chunks stay comparable there (matrix and layers
 * spin at barriers, which CPU time counts, so they are not).  --hot-kib N
 * runs read and chunks over the first N KiB only, 200 times per pass:
 * the kernel's speed from cache, against which the bandwidth of memory
 * can be set.  Nothing here asserts a time.
 *
 * usage: bench_stream [--type Q4_0|Q4_K|Q5_K|Q6_K|Q8_0|F16] [--isa avx2|avx512]
 *                     [--mib N] [--threads N] [--rounds N] [--cpu]
 *                     [--hot-kib N]
 */
#include "bench/bench.h"
#include "core/threadpool.h"
#include "ops/ops.h"
#include "quant/pack.h"
#include "quant/quant.h"
#include "tool.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define K_MODEL 2048 /* the 1.1B model's width      */
#define F_MODEL 5632 /* and its feed-forward width  */

typedef struct stream {
    em_threadpool *tp;
    int mode;                   /* 0 read, 1 chunks, 2 matrix, 3 layers, 4 layers+pf */
    int reps;                   /* passes per timed pass (--hot-kib: 200)   */
    const uint64_t *words;      /* the buffer as words, for read            */
    size_t n_words;
    uint64_t sums[64];          /* per thread, kept so no read is dead      */
    em_tensor big;              /* the whole buffer as one matrix           */
    em_tensor (*layers)[7];     /* [n_layers] q k v o gate up down          */
    int n_layers;
    void *xk, *xf;              /* one activation row of 2048 and of 5632   */
    float *out;                 /* [rows of big] outputs                    */
    double cpu[64];             /* per thread: CPU seconds of the last pass */
    size_t done[64];            /* per thread: bytes of the last pass       */
} stream;

/* The four product steps of layer il: q k v, o, gate up, down. */
static void steps_of(const stream *s, int il, em_matmul_job steps[4][3]) {
    const size_t xk = em_activation_row_size(s->big.type, K_MODEL), xf = em_activation_row_size(s->big.type, F_MODEL);
    em_tensor *L = s->layers[il];
    float *o = s->out;
    const int64_t os = 1 << 20;
    steps[0][0] = (em_matmul_job){.W = &L[0], .x = s->xk, .x_stride = xk, .out = o, .out_stride = os};
    steps[0][1] = (em_matmul_job){.W = &L[1], .x = s->xk, .x_stride = xk, .out = o + 2048, .out_stride = os};
    steps[0][2] = (em_matmul_job){.W = &L[2], .x = s->xk, .x_stride = xk, .out = o + 2304, .out_stride = os};
    steps[1][0] = (em_matmul_job){.W = &L[3], .x = s->xk, .x_stride = xk, .out = o, .out_stride = os};
    steps[2][0] = (em_matmul_job){.W = &L[4], .x = s->xk, .x_stride = xk, .out = o, .out_stride = os};
    steps[2][1] = (em_matmul_job){.W = &L[5], .x = s->xk, .x_stride = xk, .out = o + F_MODEL, .out_stride = os};
    steps[3][0] = (em_matmul_job){.W = &L[6], .x = s->xf, .x_stride = xf, .out = o, .out_stride = os};
}

/* One pass of the current mode on thread ith of nth. */
static void one_pass(stream *s, int ith, int nth) {
    if (s->mode == 0) {
        const size_t per = s->n_words / (size_t)nth / 8 * 8;
        const uint64_t *p = s->words + per * (size_t)ith;
        uint64_t a[8] = {0};
        for (size_t i = 0; i < per; i += 8)
            for (int k = 0; k < 8; k++) a[k] += p[i + (size_t)k];
        s->sums[ith & 63] += a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
        s->done[ith] = per * 8;
        return;
    }
    const size_t xk = em_activation_row_size(s->big.type, K_MODEL);
    if (s->mode == 1) { /* own contiguous share, 256 KiB chunks, kernel directly */
        const int64_t rows = s->big.ne[1], per = rows / nth / 16 * 16, r0 = per * ith;
        const int64_t cr = (256 * 1024) / (int64_t)s->big.row_bytes / 16 * 16;
        for (int64_t r = r0; r < r0 + per; r += cr) {
            const int64_t n = EM_MIN(cr, r0 + per - r);
            const void *w = (const uint8_t *)s->big.data + (size_t)r * s->big.row_bytes;
            if (s->big.pack) em_gemm_packed(s->big.type, K_MODEL, w, s->big.row_bytes, n, s->xk, xk, 1, s->out + r, rows);
            else em_gemm(s->big.type, K_MODEL, w, s->big.row_bytes, n, s->xk, xk, 1, s->out + r, rows);
        }
        s->done[ith] = (size_t)per * s->big.row_bytes;
        return;
    }
    if (s->mode == 2) {
        em_matmul_job j = {.W = &s->big, .x = s->xk, .x_stride = xk, .out = s->out, .out_stride = s->big.ne[1]};
        em_matmul_step(s->tp, ith, &j, 1, 1);
        return;
    }
    /* layers (mode 3), and with mode 4 each barrier prefetching the next
     * step's first chunk of this thread (em_threadpool_barrier_prefetch,
     * as the forward pass does for one-row batches). */
    em_matmul_job steps[4][3];
    const int n_jobs[4] = {3, 1, 2, 1};
    for (int il = 0; il < s->n_layers; il++) {
        for (int st = 0; st < 4; st++) {
            steps_of(s, il, steps);
            const em_matmul_job *next = st < 3 ? steps[st + 1] : NULL;
            int n_next = st < 3 ? n_jobs[st + 1] : 0;
            em_matmul_job next_qkv[3];
            if (st == 3 && il + 1 < s->n_layers) {
                em_matmul_job later[4][3];
                steps_of(s, il + 1, later);
                memcpy(next_qkv, later[0], sizeof next_qkv);
                next = next_qkv;
                n_next = 3;
            }
            em_matmul_step(s->tp, ith, steps[st], n_jobs[st], 1);
            const void *p = NULL;
            size_t len = 0;
            if (s->mode == 4 && next) em_matmul_first_chunk(next, n_next, 1, ith, nth, EM_MATMUL_PREFETCH_BYTES, &p, &len);
            em_threadpool_barrier_prefetch(s->tp, p, len);
        }
    }
}

/* The pool's task: reps passes, timed in this thread's CPU time. */
static void run_pass(void *arg, int ith, int nth) {
    stream *s = arg;
    const double t0 = thread_time_s();
    for (int r = 0; r < s->reps; r++) one_pass(s, ith, nth);
    s->cpu[ith] = (thread_time_s() - t0) / s->reps;
}

/* rows x k weights of type t at dst, in the layout the model would use
 * (packed where a packed kernel exists), made from a 256-row pattern. */
static int fill(em_type t, int64_t k, int64_t rows, uint8_t *dst, int32_t *pack) {
    const int64_t pr = 256;
    const size_t rb = em_row_size(t, k);
    float *f = malloc((size_t)k * sizeof *f);
    uint8_t *q = malloc((size_t)pr * rb), *pq = malloc((size_t)pr * rb);
    if (!f || !q || !pq) return -1;
    srand(7);
    for (int64_t r = 0; r < pr; r++) {
        for (int64_t i = 0; i < k; i++) f[i] = (float)rand() / (float)RAND_MAX - 0.5f;
        if (em_quantize_row(t, f, q + (size_t)r * rb, k, NULL) != EM_OK) return -1;
    }
    *pack = 0;
    const uint8_t *src = q;
    if (em_pack_fits(t, k, pr) && em_gemm_packed_kernel(t)) {
        em_pack_matrix(t, k, pr, q, pq);
        *pack = em_pack_rows(t);
        src = pq;
    }
    for (int64_t r = 0; r < rows; r += pr) memcpy(dst + (size_t)r * rb, src, (size_t)EM_MIN(pr, rows - r) * rb);
    free(f);
    free(q);
    free(pq);
    return 0;
}

static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void usage(void) {
    fprintf(stderr, "usage: bench_stream [--type Q4_0|Q4_K|Q5_K|Q6_K|Q8_0|F16] [--isa avx2|avx512] [--mib N] "
                    "[--threads N] [--rounds N] [--cpu] [--hot-kib N]\n");
}

int main(int argc, char **argv) {
    const char *type = "Q4_0", *isa = "avx2";
    int mib = 512, threads = 2, rounds = 10, hot_kib = 0;
    bool cpu = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (!strcmp(a, "--cpu")) {
            cpu = true;
            continue;
        }
        if (!strcmp(a, "--type")) type = v;
        else if (!strcmp(a, "--isa")) isa = v;
        else if (!strcmp(a, "--mib")) ok = parse_int(v, 64, 8192, &mib);
        else if (!strcmp(a, "--threads")) ok = parse_int(v, 1, 64, &threads);
        else if (!strcmp(a, "--rounds")) ok = parse_int(v, 1, 1000, &rounds);
        else if (!strcmp(a, "--hot-kib")) ok = parse_int(v, 64, 65536, &hot_kib);
        else ok = false;
        if (!ok || !v) {
            usage();
            return 2;
        }
        i++;
    }
    em_type t;
    if (!strcmp(type, "Q4_0")) t = EM_TYPE_Q4_0;
    else if (!strcmp(type, "Q4_K")) t = EM_TYPE_Q4_K;
    else if (!strcmp(type, "Q5_K")) t = EM_TYPE_Q5_K;
    else if (!strcmp(type, "Q6_K")) t = EM_TYPE_Q6_K;
    else if (!strcmp(type, "Q8_0")) t = EM_TYPE_Q8_0;
    else if (!strcmp(type, "F16")) t = EM_TYPE_F16;
    else {
        fprintf(stderr, "bench_stream: unknown type %s\n", type);
        return 2;
    }
    if (em_kernels_select(isa) != 0) {
        fprintf(stderr, "bench_stream: kernel set %s does not run here\n", isa);
        return 77;
    }
    const size_t rbk = em_row_size(t, K_MODEL), rbf = em_row_size(t, F_MODEL);
    const size_t layer = (size_t)(2 * 2048 + 2 * 256 + 2 * F_MODEL) * rbk + 2048 * rbf;
    const int n_layers = (int)(((size_t)mib << 20) / layer);
    if (n_layers < 1) {
        fprintf(stderr, "bench_stream: --mib %d holds no whole layer of %zu bytes\n", mib, layer);
        return 2;
    }
    const size_t bytes = (size_t)n_layers * layer;
    uint8_t *buf = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) return 1;
    (void)madvise(buf, bytes, MADV_HUGEPAGE); /* as the model's packed weights */

    stream s = {.words = (const uint64_t *)buf, .n_words = bytes / 8, .n_layers = n_layers, .reps = 1};
    s.layers = calloc((size_t)n_layers, sizeof *s.layers);
    if (!s.layers) return 1;
    /* Layer by layer: six matrices of k = 2048, then down of k = 5632. */
    static const int64_t outs[7] = {2048, 256, 256, 2048, F_MODEL, F_MODEL, 2048};
    size_t at = 0;
    for (int il = 0; il < n_layers; il++)
        for (int m = 0; m < 7; m++) {
            const int64_t k = m == 6 ? F_MODEL : K_MODEL;
            em_tensor *W = &s.layers[il][m];
            *W = (em_tensor){.type = t, .ne = {k, outs[m], 1, 1}, .row_bytes = em_row_size(t, k), .data = buf + at};
            if (fill(t, k, outs[m], buf + at, &W->pack) != 0) return 1;
            at += (size_t)outs[m] * W->row_bytes;
        }
    /* The whole buffer as one matrix of k = 2048 (only its timing counts:
     * the down matrices' bytes are read as rows of 2048, which for the
     * packed layouts is not their arrangement, but every byte is read). */
    int64_t big_rows = (int64_t)(bytes / rbk) / 256 * 256;
    if (hot_kib) {
        big_rows = EM_MIN(big_rows, (int64_t)hot_kib * 1024 / (int64_t)rbk / 256 * 256);
        s.reps = 200;
    }
    if (big_rows < 256) {
        fprintf(stderr, "bench_stream: --hot-kib %d holds fewer than 256 rows\n", hot_kib);
        return 2;
    }
    s.big = (em_tensor){.type = t, .ne = {K_MODEL, big_rows, 1, 1}, .row_bytes = rbk, .data = buf,
                        .pack = s.layers[0][0].pack};
    const size_t big_bytes = (size_t)big_rows * rbk;
    if (hot_kib) s.n_words = big_bytes / 8;
    float xs[F_MODEL];
    for (int i = 0; i < F_MODEL; i++) xs[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    s.xk = malloc(em_activation_row_size(t, F_MODEL));
    s.xf = malloc(em_activation_row_size(t, F_MODEL));
    s.out = malloc((size_t)big_rows * sizeof(float) + ((size_t)2 << 20) * sizeof(float));
    if (!s.xk || !s.xf || !s.out) return 1;
    em_quantize_activations(t, xs, 1, K_MODEL, s.xk);
    em_quantize_activations(t, xs, 1, F_MODEL, s.xf);
    if (em_threadpool_init(&s.tp, threads) != EM_OK) return 1;

    printf("bench_stream: %s (%s kernels, %s), %d threads, %.0f MiB as %d layers of 1.1B Llama%s%s\n", type, isa,
           s.layers[0][0].pack ? "packed" : "file layout", threads, (double)bytes / 1048576.0, n_layers,
           cpu ? ", per-thread CPU time" : ", wall time", hot_kib ? ", from cache" : "");
    static const char *names[5] = {"read", "chunks", "matrix", "layers", "layers+pf"};
    const int n_modes = hot_kib ? 2 : 5;
    const size_t per_read = s.n_words / (size_t)threads / 8 * 8 * (size_t)threads * 8;
    const size_t mode_bytes[5] = {per_read, big_bytes / (size_t)threads / 16 * 16 * (size_t)threads, big_bytes, bytes,
                                  bytes};
    double *gbs[5], *share[5];
    for (int m = 0; m < n_modes; m++) {
        gbs[m] = calloc((size_t)rounds, sizeof(double));
        share[m] = calloc((size_t)rounds, sizeof(double));
        if (!gbs[m] || !share[m]) return 1;
        s.mode = m; /* untimed: pages every byte in, warms the pool */
        em_threadpool_run(s.tp, run_pass, &s);
    }
    for (int r = 0; r < rounds; r++)
        for (int m = 0; m < n_modes; m++) {
            s.mode = m;
            memset(s.done, 0, sizeof s.done);
            const double t0 = em_time_s();
            em_threadpool_run(s.tp, run_pass, &s);
            gbs[m][r] = (double)mode_bytes[m] * s.reps / (em_time_s() - t0) / 1e9;
            if (cpu && m < 2) {
                gbs[m][r] = 0;
                for (int i = 0; i < threads; i++) gbs[m][r] += (double)s.done[i] / s.cpu[i] / 1e9;
            }
            share[m][r] = gbs[m][r] / gbs[0][r];
        }
    double best0 = 0;
    for (int m = 0; m < n_modes; m++) {
        qsort(gbs[m], (size_t)rounds, sizeof(double), cmp_d);
        qsort(share[m], (size_t)rounds, sizeof(double), cmp_d);
        if (m == 0) best0 = gbs[0][rounds - 1];
        printf("  %-9s best %6.1f GB/s  p90 %6.1f  median %6.1f   best/read best %5.1f%%  median share of read %5.1f%%\n",
               names[m], gbs[m][rounds - 1], gbs[m][rounds * 9 / 10], gbs[m][rounds / 2],
               100.0 * gbs[m][rounds - 1] / best0, 100.0 * share[m][rounds / 2]);
    }
    uint64_t sink = 0;
    for (int i = 0; i < 64; i++) sink += s.sums[i];
    if (sink == 42) printf(" \n");
    for (int m = 0; m < n_modes; m++) {
        free(gbs[m]);
        free(share[m]);
    }
    em_threadpool_free(s.tp);
    free(s.xk);
    free(s.xf);
    free(s.out);
    free(s.layers);
    munmap(buf, bytes);
    return 0;
}
