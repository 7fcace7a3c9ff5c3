/*
 * bench_gemm.c - throughput of the GEMM kernels on a weight matrix that
 * stays in cache, file layout against the x8 packed layout (quant/pack.h),
 * per kernel set: the compute ceiling of prompt processing (many
 * activation rows) and of generation (one), one thread.
 *
 * Times are this thread's CPU time (CLOCK_THREAD_CPUTIME_ID), so that on
 * a loaded machine the time spent descheduled does not count; each
 * figure is the median of several passes, in GOP/s (2 * k * rows *
 * activation rows per second).  Nothing here asserts a time.
 *
 * usage: bench_gemm [--k N] [--rows N] [--na N,N,...] [--reps N]
 *                   [--types Q4_0,Q8_0,Q4_K] [--sets avx2,avxvnni,avx512]
 *                   [--apad BYTES] [--wpad BYTES] [--state] [--step]
 *
 * --apad and --wpad add bytes to the stride of the activation rows and of
 * the file-layout weight rows: rows whose stride is a multiple of 4 KiB
 * fall into one L1 set (docs/PERFORMANCE-HISTORY.md, F16 rounds 5 and 6), and
 * these options show what a padded stride changes.
 *
 * --step makes each call a product step of its own (em_gemm_step_begin
 * and _end around it, pack.h), as the engine's matmuls are: the kernels
 * that keep per-step copies of the activation rows (the AVX-512 Q8_0
 * lane kernel's interleaved rows) then build and read them, copy
 * included, as they do in a decode or prompt step.
 *
 * --state prints, before each type and set, the machine's state as this
 * thread sees it: the core clock (a chain of dependent integer additions,
 * one a cycle), the one-thread FP32 FMA peak (as ember bench's,
 * src/bench/peak.c, but by thread CPU time) and the latency of dependent
 * loads over 40 KiB (inside a 48 KiB L1) and 512 KiB (L2), in cycles;
 * float kernels' figures then also give their share of that peak.  On a
 * VM without performance counters this is what tells the kernel's fast
 * and slow minutes apart (F16 round 7: in the slow ones the 40 KiB loads
 * take 8-12 cycles instead of 4, i.e. another hardware thread of the host
 * shares the core's L1).
 */
#include "quant/gemm.h"
#include "quant/pack.h"
#include "quant/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

static double thread_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Core cycles per second: the best of 5 passes of a chain of dependent
 * additions (one cycle each). */
static double core_hz(void) {
    double best = 0;
    for (int p = 0; p < 5; p++) {
        const long n = 8000000;
        long x = 0;
        const double t0 = thread_time_s();
        /* The empty asm keeps x in a register and each add after the
         * one before it, on any architecture. */
        for (long i = 0; i < n; i += 4) {
            x++;
            __asm__ volatile("" : "+r"(x));
            x++;
            __asm__ volatile("" : "+r"(x));
            x++;
            __asm__ volatile("" : "+r"(x));
            x++;
            __asm__ volatile("" : "+r"(x));
        }
        const double hz = (double)n / (thread_time_s() - t0);
        if (hz > best) best = hz;
    }
    return best;
}

/* Seconds per load of a chain of dependent loads over a random cycle of
 * the lines of a bytes-sized buffer (best of 5 passes), or 0 without
 * memory. */
static double load_latency_s(size_t bytes) {
    const size_t n = bytes / 64;
    void **buf = aligned_alloc(64, n * 64);
    size_t *perm = malloc(n * sizeof *perm);
    double best = 0;
    if (buf && perm) {
        for (size_t i = 0; i < n; i++) perm[i] = i;
        uint64_t r = 88172645463325252ull; /* xorshift: a fixed shuffle */
        for (size_t i = n - 1; i > 0; i--) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            const size_t j = (size_t)(r % (i + 1)), t = perm[i];
            perm[i] = perm[j], perm[j] = t;
        }
        for (size_t i = 0; i < n; i++) buf[perm[i] * 8] = &buf[perm[(i + 1) % n] * 8];
        void **q = &buf[perm[0] * 8];
        for (int p = 0; p < 5; p++) {
            const long it = 1000000;
            const double t0 = thread_time_s();
            for (long i = 0; i < it; i++) {
                q = (void **)*q;
                __asm__ volatile("" : "+r"(q));
            }
            const double s = (thread_time_s() - t0) / (double)it;
            if (best == 0 || s < best) best = s;
        }
    }
    free(buf);
    free(perm);
    return best;
}

/* The one-thread FP32 FMA peak in GFLOP/s, by thread CPU time (ember
 * bench's peak, src/bench/peak.c, takes wall time, which a loaded machine
 * spoils): 12 independent chains of vfmadd on 16 floats (avx512) or 8
 * (the other x86 sets), best of 5 passes; 0 elsewhere. */
#if defined(__x86_64__)
#define PEAK_LOOP(V, SET1, FMA, ADD, LANES)                                                        \
    volatile float seed = 1.0f;                                                                    \
    const V m = SET1(seed * 0.999f), c = SET1(seed * 1e-3f);                                       \
    V x[12];                                                                                       \
    for (int i = 0; i < 12; i++) x[i] = SET1(seed + (float)i);                                     \
    double best = 0;                                                                               \
    for (int p = 0; p < 5; p++) {                                                                  \
        const long it = 2000000;                                                                   \
        const double t0 = thread_time_s();                                                         \
        for (long i = 0; i < it; i++) {                                                            \
            _Pragma("GCC unroll 12") for (int j = 0; j < 12; j++) x[j] = FMA(x[j], m, c);          \
        }                                                                                          \
        const double g = 2.0 * LANES * 12 * (double)it / (thread_time_s() - t0) * 1e-9;            \
        if (g > best) best = g;                                                                    \
    }                                                                                              \
    V t = x[0];                                                                                    \
    for (int i = 1; i < 12; i++) t = ADD(t, x[i]);                                                 \
    volatile float sink = t[0];                                                                    \
    (void)sink;                                                                                    \
    return best;
__attribute__((target("avx512f"))) static double fma_peak_512(void) {
    PEAK_LOOP(__m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, 16)
}
__attribute__((target("avx2,fma"))) static double fma_peak_256(void) {
    PEAK_LOOP(__m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, 8)
}
#undef PEAK_LOOP
#endif

static double fma_peak(const char *set) {
#if defined(__x86_64__)
    if (strcmp(set, "avx512") == 0) return fma_peak_512();
    if (strcmp(set, "avx2") == 0 || strcmp(set, "avxvnni") == 0) return fma_peak_256();
#endif
    (void)set;
    return 0;
}

static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Whether each call is a product step of its own (--step), as the engine's
 * matmuls are: the Q8_0 lane kernel then times its interleaved rows, copy
 * included. */
static bool in_step;

static void product(bool packed, em_type t, int64_t k, const void *w, size_t ws, int64_t nw, const void *a, size_t as,
                    int64_t na, float *out) {
    if (in_step) em_gemm_step_begin();
    (packed ? em_gemm_packed : em_gemm)(t, k, w, ws, nw, a, as, na, out, nw);
    if (in_step) em_gemm_step_end();
}

/* Median seconds of one call of the product, over reps passes of enough
 * calls to take about 20 ms. */
static double time_product(bool packed, em_type t, int64_t k, const void *w, size_t ws, int64_t nw, const void *a,
                           size_t as, int64_t na, float *out, int reps) {
    double v[64];
    int64_t calls = 1;
    for (;;) {
        const double t0 = thread_time_s();
        for (int64_t c = 0; c < calls; c++)
            product(packed, t, k, w, ws, nw, a, as, na, out);
        if (thread_time_s() - t0 > 0.02 || calls > (1 << 20)) break;
        calls *= 2;
    }
    if (reps > 64) reps = 64;
    for (int r = 0; r < reps; r++) {
        const double t0 = thread_time_s();
        for (int64_t c = 0; c < calls; c++)
            product(packed, t, k, w, ws, nw, a, as, na, out);
        v[r] = (thread_time_s() - t0) / (double)calls;
    }
    qsort(v, (size_t)reps, sizeof *v, cmp_d);
    return v[reps / 2];
}

int main(int argc, char **argv) {
    int64_t k = 2048, nw = 128;
    int reps = 5;
    size_t apad = 0, wpad = 0;
    bool state = false;
    const char *types = "Q4_0,Q8_0", *sets = "avx2,avxvnni,avx512", *nas = "1,4,64";
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--k") == 0) k = atoll(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--rows") == 0) nw = atoll(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--na") == 0) nas = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--reps") == 0) reps = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--types") == 0) types = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--sets") == 0) sets = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--apad") == 0) apad = (size_t)atoll(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--wpad") == 0) wpad = (size_t)atoll(argv[++i]);
        else if (strcmp(argv[i], "--state") == 0) state = true;
        else if (strcmp(argv[i], "--step") == 0) in_step = true;
        else {
            fprintf(stderr, "usage: %s [--k N] [--rows N] [--na N,N] [--reps N] [--types A,B] [--sets A,B] [--apad B] [--wpad B] [--state] [--step]\n", argv[0]);
            return 2;
        }
    }
    if (k <= 0 || k % 256 || k > EM_PACK_MAX_K || nw <= 0 || nw % EM_PACK_ROWS_K || reps < 1) {
        fprintf(stderr, "bench_gemm: k must be a multiple of 256 up to %d, rows a multiple of %d\n", EM_PACK_MAX_K,
                EM_PACK_ROWS_K);
        return 2;
    }
    printf("k=%lld rows=%lld, one thread, GOP/s (median of %d); file layout -> packed\n", (long long)k,
           (long long)nw, reps);
    char tl[256], sl[256];
    snprintf(tl, sizeof tl, "%s", types);
    for (char *ts = strtok(tl, ","); ts; ts = strtok(NULL, ",")) {
        em_type t = EM_TYPE_COUNT;
        for (int i = 0; i < EM_TYPE_COUNT; i++)
            if (em_type_name((em_type)i) && strcmp(em_type_name((em_type)i), ts) == 0) t = (em_type)i;
        if (t == EM_TYPE_COUNT) {
            fprintf(stderr, "bench_gemm: unknown type %s\n", ts);
            continue;
        }
        /* Types without a packed layout (F16 ...) are timed in the file
         * layout only. */
        const bool has_pack = em_pack_rows(t) != 0;
        const em_type at = em_get_type_traits(t)->vec_dot_type;
        const size_t wr = em_row_size(t, k), ws = wr + wpad, as = em_row_size(at, k) + apad;
        int64_t na_max = 1;
        char nl[256];
        snprintf(nl, sizeof nl, "%s", nas);
        for (char *p = nl; *p;) {
            const int64_t n = strtoll(p, &p, 10);
            if (n > na_max) na_max = n;
            if (*p == ',') p++;
            else break;
        }
        uint8_t *w = malloc(ws * (size_t)nw), *wc = malloc(wr * (size_t)nw), *pk = malloc(wr * (size_t)nw), *a = malloc(as * (size_t)na_max);
        float *tmp = malloc((size_t)k * sizeof(float)), *out = malloc((size_t)(na_max * nw) * sizeof(float));
        for (int64_t j = 0; j < nw; j++) {
            for (int64_t i = 0; i < k; i++) tmp[i] = (float)((j * 31 + i * 17) % 97) / 48.0f - 1.0f;
            em_quantize_row(t, tmp, wc + (size_t)j * wr, k, NULL);
        }
        for (int64_t j = 0; j < nw; j++) memcpy(w + (size_t)j * ws, wc + (size_t)j * wr, wr);
        for (int64_t r = 0; r < na_max; r++) {
            for (int64_t i = 0; i < k; i++) tmp[i] = (float)((r * 13 + i * 7) % 89) / 44.0f - 1.0f;
            if (at == EM_TYPE_F32)
                memcpy(a + (size_t)r * as, tmp, (size_t)k * sizeof(float));
            else
                em_quantize_row(at, tmp, a + (size_t)r * as, k, NULL);
        }
        if (has_pack) em_pack_matrix(t, k, nw, wc, pk);
        snprintf(sl, sizeof sl, "%s", sets);
        char *save = NULL;
        for (char *s = strtok_r(sl, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
            if (em_kernels_select(s) != 0) {
                printf("%-5s %-8s not on this CPU\n", ts, s);
                continue;
            }
            double peak = 0; /* one-thread FMA peak of this set, GFLOP/s */
            if (state) {
                const double hz = core_hz();
                peak = fma_peak(s);
                printf("state (%s): core %.2f GHz, FMA peak %.1f GFLOP/s, loads over 40 KiB %.1f cycles, 512 KiB %.1f "
                       "cycles\n", s, hz * 1e-9, peak, load_latency_s(40 << 10) * hz, load_latency_s(512 << 10) * hz);
            }
            snprintf(nl, sizeof nl, "%s", nas);
            for (char *p = nl; *p;) {
                const int64_t na = strtoll(p, &p, 10);
                const double ops = 2.0 * (double)k * (double)nw * (double)na * 1e-9;
                const double t0 = time_product(false, t, k, w, ws, nw, a, as, na, out, reps);
                if (has_pack) {
                    const double t1 = time_product(true, t, k, pk, wr, nw, a, as, na, out, reps);
                    printf("%-5s %-8s na=%-4lld %8.1f -> %8.1f  (%.2fx)\n", ts, s, (long long)na, ops / t0, ops / t1,
                           t0 / t1);
                } else {
                    if (peak > 0 && at == EM_TYPE_F32)
                        printf("%-5s %-8s na=%-4lld %8.1f  (%.1f%% of the FMA peak)\n", ts, s, (long long)na, ops / t0,
                               100 * ops / t0 / peak);
                    else
                        printf("%-5s %-8s na=%-4lld %8.1f\n", ts, s, (long long)na, ops / t0);
                }
                if (*p == ',') p++;
                else break;
            }
        }
        free(w);
        free(wc);
        free(pk);
        free(a);
        free(tmp);
        free(out);
    }
    return 0;
}
