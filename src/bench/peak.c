/*
 * peak.c - the compute roofline of prompt processing: the FP32 FMA peak
 * and the int8 dot-product peak of this machine, measured with the kernel
 * set that is installed (em_gemm_isa), as em_bench_read_bandwidth
 * measures the bandwidth roofline of generation.
 *
 * Each thread runs a short loop of independent multiply-adds in registers,
 * with more chains than the latency of one instruction times the number
 * of units that issue it, so the loop runs at the units' throughput and
 * touches no memory:
 *   avx512  12 chains of vfmadd231ps on 16 floats; 12 chains of vpdpbusd
 *           (64 byte products each), as the AVX-512 GEMM kernels use;
 *   avx2    12 chains of vfmadd231ps on 8 floats; 12 chains of
 *           vpmaddubsw + vpaddw (32 byte products summed in int16), the
 *           cheapest exact sequence of byte products on AVX2, which the
 *           K-quant prompt tiles run (they widen their int16 sums to
 *           int32 once per group of eight); the earlier measure,
 *           vpmaddubsw + vpmaddwd + vpaddd per 32 products, ran at about
 *           0.65 of this rate here and no longer bounded those tiles;
 *   generic scalar float multiply-adds and int8 products in 8 chains.
 * A multiply-add counts two operations (FLOPs), as the pp GFLOP/s do.
 *
 * The threads start together and the time is that of the slowest; each
 * measurement is the best of PEAK_PASSES passes, since the machine may be
 * shared and the best pass is the least disturbed one.  The loop length is
 * first doubled until one pass lasts PEAK_MIN_S, so the whole measurement
 * takes a few tenths of a second at most.
 */
#include "bench/bench.h"
#include "quant/gemm.h"

#include <pthread.h>
#include <stdlib.h>

#define PEAK_PASSES 5
#define PEAK_MIN_S 0.01

/* What the chains are seeded with: read through a volatile so that the
 * compiler cannot fold the loops into constants. */
static volatile float peak_seed_f = 1.0f;
static volatile int peak_seed_i = 1;

/* One kernel: iters iterations; returns the operations done and leaves a
 * value that depends on every chain in *sink. */
typedef double (*peak_fn)(int64_t iters, float *sink);

/* ---------------------------------------------------------------- generic */

static double fma_generic(int64_t iters, float *sink) {
    const float m = peak_seed_f * 0.999f, c = peak_seed_f * 1e-3f;
    float a0 = peak_seed_f, a1 = a0 + 1, a2 = a0 + 2, a3 = a0 + 3, a4 = a0 + 4, a5 = a0 + 5, a6 = a0 + 6, a7 = a0 + 7;
    for (int64_t i = 0; i < iters; i++) {
        a0 = a0 * m + c, a1 = a1 * m + c, a2 = a2 * m + c, a3 = a3 * m + c;
        a4 = a4 * m + c, a5 = a5 * m + c, a6 = a6 * m + c, a7 = a7 * m + c;
    }
    *sink = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
    return 2.0 * 8 * (double)iters;
}

static double dot_generic(int64_t iters, float *sink) {
    const int32_t y = peak_seed_i * 3;
    int32_t a0 = peak_seed_i, a1 = a0 + 1, a2 = a0 + 2, a3 = a0 + 3, a4 = a0 + 4, a5 = a0 + 5, a6 = a0 + 6, a7 = a0 + 7;
    /* Each product takes a byte of its own chain, so no product is the
     * same from one iteration to the next. */
#define PEAK_I8(a) a += (int32_t)(int8_t)a * y
    for (int64_t i = 0; i < iters; i++) {
        PEAK_I8(a0), PEAK_I8(a1), PEAK_I8(a2), PEAK_I8(a3);
        PEAK_I8(a4), PEAK_I8(a5), PEAK_I8(a6), PEAK_I8(a7);
    }
#undef PEAK_I8
    *sink = (float)(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7);
    return 2.0 * 8 * (double)iters;
}

/* -------------------------------------------------------------------- x86 */

#if defined(EM_HAVE_X86_GEMM)
#include <immintrin.h>

#define T_AVX2 __attribute__((target("avx2,fma")))
#define T_512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")))

/* X(i, ...) for the twelve chains. */
#define PEAK_FOR12(X, ...)                                                                      \
    X(0, __VA_ARGS__) X(1, __VA_ARGS__) X(2, __VA_ARGS__) X(3, __VA_ARGS__) X(4, __VA_ARGS__)    \
    X(5, __VA_ARGS__) X(6, __VA_ARGS__) X(7, __VA_ARGS__) X(8, __VA_ARGS__) X(9, __VA_ARGS__)    \
    X(10, __VA_ARGS__) X(11, __VA_ARGS__)

#define PEAK_DECL(i, V, SET1, SEED, STEP, P, Q, ADD) V a##i = SET1(SEED + (i));
#define PEAK_STEP(i, V, SET1, SEED, STEP, P, Q, ADD) a##i = STEP(a##i, P, Q);
#define PEAK_SUM(i, V, SET1, SEED, STEP, P, Q, ADD) t = ADD(t, a##i);

/*
 * The body of every x86 kernel: twelve chains of vector type V, kept in
 * registers, chain i starting at SET1(SEED + i) and stepped iters times as
 * a = STEP(a, P, Q) (P, Q: vectors the loop does not change); then the
 * chains are summed with ADD, from ZERO, into a new variable t.
 */
#define PEAK_CHAINS(V, SET1, SEED, STEP, P, Q, ZERO, ADD)                                       \
    PEAK_FOR12(PEAK_DECL, V, SET1, SEED, STEP, P, Q, ADD)                                      \
    for (int64_t i = 0; i < iters; i++) {                                                      \
        PEAK_FOR12(PEAK_STEP, V, SET1, SEED, STEP, P, Q, ADD)                                  \
    }                                                                                          \
    V t = ZERO;                                                                                \
    PEAK_FOR12(PEAK_SUM, V, SET1, SEED, STEP, P, Q, ADD)

T_AVX2 static double fma_avx2(int64_t iters, float *sink) {
    const __m256 m = _mm256_set1_ps(peak_seed_f * 0.999f), c = _mm256_set1_ps(peak_seed_f * 1e-3f);
    PEAK_CHAINS(__m256, _mm256_set1_ps, peak_seed_f, _mm256_fmadd_ps, m, c, _mm256_setzero_ps(),
                _mm256_add_ps)
    *sink = _mm256_cvtss_f32(t);
    return 2.0 * 8 * 12 * (double)iters;
}

/* vpmaddubsw + vpaddw: a += the 32 byte products of a and y, summed in
 * pairs, in int16 lanes (the sums wrap; only the rate matters here). */
#define PEAK_DOT_AVX2(a, y, unused) _mm256_add_epi16(a, _mm256_maddubs_epi16(a, y))

T_AVX2 static double dot_avx2(int64_t iters, float *sink) {
    const __m256i y = _mm256_set1_epi8((char)(peak_seed_i * 3));
    /* Each chain's accumulator is also its next unsigned operand, so that
     * nothing in the loop is invariant. */
    PEAK_CHAINS(__m256i, _mm256_set1_epi32, peak_seed_i, PEAK_DOT_AVX2, y, y, _mm256_setzero_si256(),
                _mm256_add_epi32)
    *sink = (float)_mm256_cvtsi256_si32(t);
    return 2.0 * 32 * 12 * (double)iters;
}

T_512 static double fma_avx512(int64_t iters, float *sink) {
    const __m512 m = _mm512_set1_ps(peak_seed_f * 0.999f), c = _mm512_set1_ps(peak_seed_f * 1e-3f);
    PEAK_CHAINS(__m512, _mm512_set1_ps, peak_seed_f, _mm512_fmadd_ps, m, c, _mm512_setzero_ps(),
                _mm512_add_ps)
    *sink = _mm512_reduce_add_ps(t);
    return 2.0 * 16 * 12 * (double)iters;
}

T_512 static double dot_avx512(int64_t iters, float *sink) {
    const __m512i x = _mm512_set1_epi8((char)(peak_seed_i * 5)), y = _mm512_set1_epi8((char)(peak_seed_i * 3));
    PEAK_CHAINS(__m512i, _mm512_set1_epi32, peak_seed_i, _mm512_dpbusd_epi32, x, y, _mm512_setzero_si512(),
                _mm512_add_epi32)
    *sink = (float)_mm512_reduce_add_epi32(t);
    return 2.0 * 64 * 12 * (double)iters;
}
#endif

/* ------------------------------------------------------------ the timing */

typedef struct peak_job {
    peak_fn fn;
    int64_t iters;
    double ops;  /* operations this thread did         */
    float sink;  /* the chains' value, kept            */
} peak_job;

static void *peak_thread(void *arg) {
    peak_job *j = arg;
    j->ops = j->fn(j->iters, &j->sink);
    return NULL;
}

/* One pass of fn on n threads (the caller being one): seconds, and the
 * operations of all threads in *ops. */
static double peak_pass(peak_fn fn, int64_t iters, int n, peak_job *jobs, pthread_t *th, bool *started,
                        double *ops) {
    for (int i = 0; i < n; i++) jobs[i] = (peak_job){fn, iters, 0, 0};
    const double t0 = em_time_s();
    for (int i = 1; i < n; i++) started[i] = pthread_create(&th[i], NULL, peak_thread, &jobs[i]) == 0;
    peak_thread(&jobs[0]);
    for (int i = 1; i < n; i++) {
        if (started[i]) pthread_join(th[i], NULL);
        else peak_thread(&jobs[i]);
    }
    const double dt = em_time_s() - t0;
    *ops = 0;
    float keep = 0;
    for (int i = 0; i < n; i++) {
        *ops += jobs[i].ops;
        keep += jobs[i].sink;
    }
    volatile float sink = keep;
    (void)sink;
    return dt;
}

/* Operations per second of fn on n threads: the best of PEAK_PASSES. */
static double peak_rate(peak_fn fn, int n, peak_job *jobs, pthread_t *th, bool *started) {
    int64_t iters = 1 << 14;
    double ops = 0, dt = peak_pass(fn, iters, n, jobs, th, started, &ops);
    while (dt < PEAK_MIN_S && iters < ((int64_t)1 << 34)) {
        iters *= 2;
        dt = peak_pass(fn, iters, n, jobs, th, started, &ops);
    }
    double best = dt > 0 ? ops / dt : 0;
    for (int p = 1; p < PEAK_PASSES; p++) {
        dt = peak_pass(fn, iters, n, jobs, th, started, &ops);
        if (dt > 0 && ops / dt > best) best = ops / dt;
    }
    return best;
}

em_status em_bench_compute_peaks(int n_threads, em_bench_peaks *out) {
    if (!out) return em_error(EM_ERR_INVALID_ARG, "bench: no result for the compute peaks");
    if (n_threads <= 0) n_threads = em_physical_cores();
    if (n_threads > 256) n_threads = 256;
    peak_fn fma = fma_generic, dot = dot_generic;
    const char *isa = em_gemm_isa();
#if defined(EM_HAVE_X86_GEMM)
    if (strcmp(isa, "avx512") == 0) {
        fma = fma_avx512;
        dot = dot_avx512;
    } else if (strcmp(isa, "avx2") == 0) {
        fma = fma_avx2;
        dot = dot_avx2;
    }
#endif
    if (fma == fma_generic) isa = "generic";
    peak_job *jobs = calloc((size_t)n_threads, sizeof *jobs);
    pthread_t *th = calloc((size_t)n_threads, sizeof *th);
    bool *started = calloc((size_t)n_threads, sizeof *started);
    if (!jobs || !th || !started) {
        free(jobs);
        free(th);
        free(started);
        return em_error(EM_ERR_NOMEM, "bench: out of memory measuring the compute peaks");
    }
    out->fma_gflops = peak_rate(fma, n_threads, jobs, th, started) / 1e9;
    out->int8_gops = peak_rate(dot, n_threads, jobs, th, started) / 1e9;
    out->isa = isa;
    out->n_threads = n_threads;
    free(started);
    free(th);
    free(jobs);
    return EM_OK;
}
