/*
 * f16-abba.c - the driver of bench/f16-abba.sh: two builds of the F16
 * panel kernel (gemm_float_avx512.c), linked into one program under the
 * names abba_a_f16 and abba_b_f16, called in turn A B B A on the same
 * weights and activation rows, round after round.
 *
 * Why one program.  On a shared machine whose speed drifts from one
 * minute to the next (another guest's thread on the core's L1, the
 * clock), two runs of two builds differ by more than the change being
 * measured; calls a few milliseconds apart, alternated, see the same
 * state, and each round's ratio A / B of the two pairs' thread CPU time
 * cancels the drift (docs/PERFORMANCE.md, F16 round 9).  The outputs of
 * the two builds are compared to the bit: a layout or scheduling change
 * must not change them.
 *
 * usage: f16-abba K NW NA ROUNDS [LDO]
 *   K weights per row, NW weight rows (output columns), NA activation
 *   rows, LDO the output row stride in floats (default NW).  Activation
 *   rows are K + 16 floats apart, as the forward pass pads them.  The
 *   weights are asked for as huge pages, as the engine's are.
 *
 * COPIES=N in the environment (default 1) makes N copies of the weights
 * and gives each call the next one.  A chunk's weights (1.2 MB for the
 * 1.1B model's Q and O at one thread) stay in the L3 cache from one call
 * to the next, where the engine streams every matrix from memory; with
 * copies of 48 MB in all or more each call reads its weights from memory
 * too, and main's kernel ran 175-180 GFLOP/s against 187 (session 13).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

void abba_a_f16(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, size_t as, int64_t na, float *out,
                int64_t ldo);
void abba_b_f16(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, size_t as, int64_t na, float *out,
                int64_t ldo);

/* This thread's CPU time in seconds: time descheduled does not count. */
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *x, const void *y) {
    const double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s K NW NA ROUNDS [LDO]\n", argv[0]);
        return 2;
    }
    const int64_t k = atol(argv[1]), nw = atol(argv[2]), na = atol(argv[3]);
    const int rounds = atoi(argv[4]);
    const int64_t ldo = argc > 5 ? atol(argv[5]) : nw;
    if (k < 1 || nw < 1 || na < 2 || rounds < 1 || ldo < nw) {
        fprintf(stderr, "f16-abba: need K >= 1, NW >= 1, NA >= 2, ROUNDS >= 1, LDO >= NW\n");
        return 2;
    }
    const size_t as = (size_t)(k + 16) * sizeof(float), huge = (size_t)2 << 20;
    const int copies = getenv("COPIES") ? atoi(getenv("COPIES")) : 1;
    if (copies < 1) {
        fprintf(stderr, "f16-abba: need COPIES >= 1\n");
        return 2;
    }
    /* One copy of the weights, whole huge pages, and all copies. */
    const size_t wcopy = ((size_t)(k * nw) * 2 + huge - 1) / huge * huge, wbytes = wcopy * (size_t)copies;
    uint16_t *w = aligned_alloc(huge, wbytes);
    float *a = aligned_alloc(64, as * (size_t)na);
    float *oa = aligned_alloc(64, (size_t)(ldo * na) * sizeof(float));
    float *ob = aligned_alloc(64, (size_t)(ldo * na) * sizeof(float));
    double *ratio = malloc(sizeof(double) * (size_t)rounds);
    if (!w || !a || !oa || !ob || !ratio) {
        fprintf(stderr, "f16-abba: out of memory\n");
        return 1;
    }
#ifdef MADV_HUGEPAGE
    (void)madvise(w, wbytes, MADV_HUGEPAGE); /* a hint, as for the engine's weights */
#endif
    /* F16 weights of magnitude in [0.125, 2) and either sign, activations in [-0.5, 0.5). */
    srand(1);
    for (int64_t i = 0; i < k * nw; i++) w[i] = (uint16_t)(0x3000 + rand() % 0x1000 + (rand() & 1) * 0x8000);
    for (int c = 1; c < copies; c++) memcpy((char *)w + wcopy * (size_t)c, w, (size_t)(k * nw) * 2);
    for (size_t i = 0; i < as / sizeof(float) * (size_t)na; i++) a[i] = (float)(rand() % 1000) / 1000.f - 0.5f;
    memset(oa, 0, (size_t)(ldo * na) * sizeof(float));
    memset(ob, 0, (size_t)(ldo * na) * sizeof(float));
    double ta = 0, tb = 0;
    for (int i = 0; i < rounds; i++) {
        /* The copies the round's four calls read, in turn. */
        const void *w0 = (const char *)w + wcopy * (size_t)((4 * i) % copies);
        const void *w1 = (const char *)w + wcopy * (size_t)((4 * i + 1) % copies);
        const void *w2 = (const char *)w + wcopy * (size_t)((4 * i + 2) % copies);
        const void *w3 = (const char *)w + wcopy * (size_t)((4 * i + 3) % copies);
        const double t0 = now();
        abba_a_f16(k, w0, (size_t)k * 2, nw, a, as, na, oa, ldo);
        const double t1 = now();
        abba_b_f16(k, w1, (size_t)k * 2, nw, a, as, na, ob, ldo);
        const double t2 = now();
        abba_b_f16(k, w2, (size_t)k * 2, nw, a, as, na, ob, ldo);
        const double t3 = now();
        abba_a_f16(k, w3, (size_t)k * 2, nw, a, as, na, oa, ldo);
        const double t4 = now();
        /* Four intervals of one call each, so that both builds' times carry
         * the same number of clock reads. */
        const double da = (t1 - t0) + (t4 - t3), db = (t2 - t1) + (t3 - t2);
        ratio[i] = da / db;
        ta += da;
        tb += db;
    }
    int differ = 0;
    for (int64_t r = 0; r < na; r++) differ |= memcmp(oa + r * ldo, ob + r * ldo, (size_t)nw * sizeof(float)) != 0;
    qsort(ratio, (size_t)rounds, sizeof *ratio, cmp_double);
    const double flop = 2.0 * (double)k * (double)nw * (double)na * 2 * rounds;
    printf("%sk=%lld nw=%lld na=%lld ldo=%lld copies=%d rounds=%d: B/A speed median %.3f (range %.3f-%.3f), "
           "A %.1f B %.1f GFLOP/s\n",
           differ ? "OUTPUTS DIFFER " : "", (long long)k, (long long)nw, (long long)na, (long long)ldo, copies, rounds,
           ratio[rounds / 2], ratio[0], ratio[rounds - 1], flop / ta * 1e-9, flop / tb * 1e-9);
    free(w);
    free(a);
    free(oa);
    free(ob);
    free(ratio);
    return differ;
}
