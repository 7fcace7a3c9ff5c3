/*
 * bench.h - measuring speed against the machine's roofline.  Used by
 * `ember bench` and by the eval report (cost per token).
 *
 * Token generation reads every weight of the model once per token, so its
 * ceiling is the machine's streaming read bandwidth divided by the bytes a
 * token streams; the share of that ceiling a run reaches says how much
 * speed is left.  Prompt processing is compute-bound: it is reported in
 * FLOP/s against the FMA or int8 dot-product peak measured on the machine
 * (the compute roofline).
 */
#ifndef EM_BENCH_H
#define EM_BENCH_H

#include "core/core.h"

/* Most repetitions one em_bench_model call records. */
#define EM_BENCH_MAX_REPS 100

typedef struct em_bench_params {
    int32_t n_prompt;   /* tokens of the pp test; 0 skips it                */
    int32_t n_gen;      /* tokens of the tg test; 0 skips it                */
    int32_t n_threads;  /* 0: physical cores                                */
    int32_t reps;       /* repetitions; mean and sd are over these          */
    em_type kv_type;    /* EM_TYPE_F16 (default) or another cache type      */
    int32_t n_batch;    /* most rows per em_decode in the pp test; 0: 512   */
    uint64_t seed;      /* seed of the random token ids                     */
    double read_bw_gbs; /* bandwidth measured before, GB/s; 0: measure it
                         * after each tg repetition (only when tg runs)      */
} em_bench_params;

typedef struct em_bench_result {
    double pp_avg_ts, pp_sd_ts;   /* prompt tokens per second, mean and sd  */
    double tg_avg_ts, tg_sd_ts;   /* generated tokens per second            */
    double pp_gflops;             /* matmul FLOP/s of the pp test, in 1e9   */
    double bytes_per_token;       /* bytes a generated token streams        */
    double read_bw_gbs;           /* measured streaming read bandwidth, GB/s */
    double tg_roofline_share;     /* tg_avg_ts * bytes_per_token / read_bw  */
    double tg_gflops;             /* FLOP/s of the tg test, in 1e9          */
    double pp_fma_peak_gflops;    /* measured FP32 FMA peak, GFLOP/s        */
    double pp_int8_peak_gops;     /* measured int8 dot-product peak, GOP/s  */
    double pp_compute_share;      /* pp_gflops over the peak that applies:
                                   * FMA for float weights, int8 otherwise  */
    bool pp_peak_is_int8;         /* which peak pp_compute_share uses       */
    int32_t n_threads;            /* threads the runs used                  */
    int32_t n_reps;               /* timed runs of each test                */
    double pp_samples_s[EM_BENCH_MAX_REPS]; /* [n_reps] seconds of each pp run */
    double tg_samples_s[EM_BENCH_MAX_REPS]; /* [n_reps] seconds of each tg run */
} em_bench_result;

em_bench_params em_bench_default_params(void);

/* Runs the pp and tg tests on a loaded model: pp decodes n_prompt random
 * tokens in batches of up to n_batch from an empty cache; tg decodes n_gen
 * single tokens from an empty cache.  Each test runs once untimed first. */
em_status em_bench_model(const em_model *model, const em_bench_params *p, em_bench_result *r);

/* Streaming read bandwidth of this machine with n_threads threads, in
 * GB/s (1e9 bytes), measured over a buffer far larger than the caches.
 * 0 when no buffer could be allocated (em_last_error says why). */
double em_bench_read_bandwidth(int n_threads);

/* The compute roofline of prompt processing with n_threads threads and
 * the installed GEMM kernel set (src/bench/peak.c). */
typedef struct em_bench_peaks {
    double fma_gflops;  /* FP32 FMA peak, GFLOP/s (an FMA is 2 FLOPs)       */
    double int8_gops;   /* int8 dot-product peak, GOP/s (a product and its
                         * addition are 2 operations)                      */
    const char *isa;    /* kernel set measured: "avx512", "avx2", "generic" */
    int n_threads;      /* threads measured together                       */
} em_bench_peaks;

/* Measures both peaks: a short loop of independent FMAs and one of int8
 * dot products per thread, best of a few passes (a few tenths of a second
 * in all). */
em_status em_bench_compute_peaks(int n_threads, em_bench_peaks *out);

/* Bytes one generated token streams: every matmul weight (the output
 * included; of a mixture-of-experts layer, the router and the
 * n_expert_used experts a token is routed to: the active bytes), its
 * embedding row, and the K and V rows of n_kv cached positions in a cache
 * of kv_type. */
double em_bench_token_bytes(const em_model *model, double n_kv, em_type kv_type);

/* FLOPs of one token row that attends n_kv positions: 2 per weight of the
 * layer matmuls (the active experts only), plus the output matmul when it asks for logits, plus
 * the attention scores and weighted sums. */
double em_bench_token_flops(const em_model *model, double n_kv, bool logits);

#endif
