/*
 * bench.c - speed tests of a model and the machine's roofline.
 *
 * The tests follow llama-bench so that figures compare: "pp N" decodes N
 * random tokens from an empty cache in batches of up to n_batch rows, each
 * batch asking logits for its last row only; "tg N" decodes N tokens one
 * at a time from an empty cache, each asking for logits.  Each test runs
 * once untimed (which also pages the weights in), then `reps` timed runs;
 * speeds are the mean and sample deviation of the runs' tokens/second.
 *
 * The roofline of token generation is the streaming read bandwidth over
 * the bytes a token must read.  The bandwidth is measured here, not taken
 * from a data sheet: threads sum disjoint slices of a 1 GiB buffer (far
 * beyond any cache) and the best of several passes counts, since the
 * machine is shared and the best pass is the one least disturbed.
 */
#include "bench/bench.h"
#include "model/model.h"
#include "quant/quant.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>

em_bench_params em_bench_default_params(void) {
    em_bench_params p = {
        .n_prompt = 512,
        .n_gen = 128,
        .n_threads = 0,
        .reps = 5,
        .kv_type = EM_TYPE_F16,
        .n_batch = 512,
        .seed = 1234,
        .read_bw_gbs = 0,
    };
    return p;
}

/* --------------------------------------------------- streaming bandwidth */

#define BW_BUFFER_BYTES ((size_t)1 << 30)
#define BW_MIN_BYTES ((size_t)64 << 20)
#define BW_PASSES 8

typedef struct bw_slice {
    const uint64_t *p;       /* first word of the slice                    */
    size_t n;                /* words, a multiple of 8                     */
    uint64_t sum;            /* kept, so that no read is dead code         */
} bw_slice;

/* Sums one slice.  Eight independent accumulators let the compiler
 * vectorize and keep several loads in flight, so the loop runs at the
 * memory's pace, not at the adder's latency. */
static void *bw_sum(void *arg) {
    bw_slice *s = arg;
    uint64_t a[8] = {0};
    for (size_t i = 0; i < s->n; i += 8)
        for (int k = 0; k < 8; k++) a[k] += s->p[i + (size_t)k];
    s->sum += a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
    return NULL;
}

double em_bench_read_bandwidth(int n_threads) {
    if (n_threads <= 0) n_threads = em_physical_cores();
    if (n_threads > 256) n_threads = 256;
    size_t bytes = BW_BUFFER_BYTES;
    uint64_t *buf = NULL;
    while (!buf && bytes >= BW_MIN_BYTES) {
        buf = malloc(bytes);
        if (!buf) bytes /= 2;
    }
    bw_slice *sl = calloc((size_t)n_threads, sizeof *sl);
    pthread_t *th = calloc((size_t)n_threads, sizeof *th);
    bool *started = calloc((size_t)n_threads, sizeof *started);
    if (!buf || !sl || !th || !started) {
        free(buf);
        free(sl);
        free(th);
        free(started);
        em_error(EM_ERR_NOMEM, "bench: no memory for a bandwidth buffer of %zu MiB", BW_MIN_BYTES >> 20);
        return 0;
    }
    /* Touch every page with data that is not all zero, so that no pass
     * reads the kernel's shared zero page instead of memory. */
    size_t n_words = bytes / sizeof *buf;
    for (size_t i = 0; i < n_words; i++) buf[i] = i * 0x9e3779b97f4a7c15ULL;
    size_t per = n_words / (size_t)n_threads / 8 * 8;
    for (int i = 0; i < n_threads; i++) sl[i] = (bw_slice){buf + per * (size_t)i, per, 0};

    /* Each pass starts its threads afresh: that costs microseconds against
     * a pass of tens of milliseconds, and a thread that cannot be started
     * only makes its slice run on the caller, never a wrong figure. */
    double best = INFINITY;
    for (int pass = 0; pass < BW_PASSES; pass++) {
        double t0 = em_time_s();
        for (int i = 1; i < n_threads; i++) started[i] = pthread_create(&th[i], NULL, bw_sum, &sl[i]) == 0;
        bw_sum(&sl[0]);
        for (int i = 1; i < n_threads; i++) {
            if (started[i]) pthread_join(th[i], NULL);
            else bw_sum(&sl[i]);
        }
        double dt = em_time_s() - t0;
        if (dt > 0 && dt < best) best = dt;
    }
    uint64_t total = 0;
    for (int i = 0; i < n_threads; i++) total += sl[i].sum;
    /* The sums are kept in memory the compiler cannot see through. */
    volatile uint64_t sink = total;
    (void)sink;
    free(started);
    free(th);
    free(sl);
    free(buf);
    return (double)(per * (size_t)n_threads * sizeof(uint64_t)) / best / 1e9;
}

/* ------------------------------------------------------ bytes and FLOPs */

static double tensor_bytes(const em_tensor *t) {
    if (!t->data) return 0;
    return (double)t->row_bytes * (double)(t->ne[1] * t->ne[2] * t->ne[3]);
}

static double tensor_params(const em_tensor *t) {
    if (!t->data) return 0;
    return (double)t->ne[0] * (double)(t->ne[1] * t->ne[2] * t->ne[3]);
}

/* The share of a layer matrix one token reads: all of it, or of stacked
 * experts (ne[2] of them) only the n_expert_used it is routed to. */
static double active_share(const em_model *m, const em_tensor *t) {
    return t->ne[2] > 1 && m->hp.n_expert_used > 0 ? (double)m->hp.n_expert_used / (double)t->ne[2] : 1.0;
}

double em_bench_token_bytes(const em_model *m, double n_kv, em_type kv_type) {
    if (!m || !m->layers) return 0;
    const em_hparams *hp = &m->hp;
    double bytes = tensor_bytes(&m->output) + (double)m->tok_embd.row_bytes;
    for (int il = 0; il < hp->n_layer; il++) {
        const em_tensor *mats[16];
        int n_mats = em_layer_mats(&m->layers[il], mats, 16);
        for (int k = 0; k < n_mats; k++) bytes += tensor_bytes(mats[k]) * active_share(m, mats[k]);
    }
    /* One K row and V row of each layer's width per cached position and
     * layer (a layer sharing another's cache reads that one's rows). */
    for (int il = 0; il < hp->n_layer; il++) {
        const em_layer *l = &m->layers[il];
        size_t k_row = em_row_size(kv_type, (int64_t)l->n_head_kv * l->head_dim);
        size_t v_row = em_row_size(kv_type, (int64_t)l->n_head_kv * l->head_dim_v);
        bytes += n_kv * (double)(k_row + v_row);
    }
    return bytes;
}

double em_bench_token_flops(const em_model *m, double n_kv, bool logits) {
    if (!m || !m->layers) return 0;
    const em_hparams *hp = &m->hp;
    double params = logits ? tensor_params(&m->output) : 0;
    for (int il = 0; il < hp->n_layer; il++) {
        const em_tensor *mats[16];
        int n_mats = em_layer_mats(&m->layers[il], mats, 16);
        for (int k = 0; k < n_mats; k++) params += tensor_params(mats[k]) * active_share(m, mats[k]);
    }
    /* Per head and attended position: a dot product of head_dim for the
     * score and a multiply-add of head_dim_v for the weighted sum. */
    double attn = 0;
    for (int il = 0; il < hp->n_layer; il++)
        attn += 2.0 * hp->n_head * (double)(m->layers[il].head_dim + m->layers[il].head_dim_v) * n_kv;
    return 2.0 * params + attn;
}

/* The work a prompt row that wants no logits skips: the forward pass
 * (model/forward.c, keep_output_rows) takes only the output rows, and one
 * more, through the last layer's Wo and FFN, unless that layer routes
 * experts.  Attention and the K/V projections still run for every row,
 * since the cache needs its keys and values. */
static double skipped_row_flops(const em_model *m) {
    const int32_t n_layer = m->hp.n_layer;
    if (!m->layers || n_layer < 1) return 0;
    const em_layer *l = &m->layers[n_layer - 1];
    if (l->gate_inp.data) return 0;
    const em_tensor *after[] = {&l->wo, &l->pl_gate, &l->pl_proj, &l->w_gate, &l->w_up, &l->w_down};
    double params = 0;
    for (size_t i = 0; i < sizeof after / sizeof *after; i++)
        if (after[i]->data) params += tensor_params(after[i]);
    return 2.0 * params;
}

/* ------------------------------------------------------------- the runs */

/* splitmix64: token ids only need to be reproducible, not good. */
static uint64_t next_rand(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

typedef struct bench_run {
    em_context *ctx;
    em_batch batch;
    em_token *tokens;   /* [n_tokens] the ids every run decodes          */
    int32_t n_tokens;
    int32_t n_batch;
} bench_run;

/* Fills the token ids: BOS first when the model adds one, as a real
 * prompt would start, then ids drawn uniformly from the vocabulary. */
static void fill_tokens(const em_model *m, em_token *t, int32_t n, uint64_t seed) {
    const em_vocab *v = em_model_vocab(m);
    int32_t n_vocab = em_model_n_vocab(m);
    uint64_t s = seed;
    for (int32_t i = 0; i < n; i++) t[i] = (em_token)(next_rand(&s) % (uint64_t)n_vocab);
    if (n > 0 && v && em_vocab_add_bos(v) && em_vocab_bos(v) >= 0 && em_vocab_bos(v) < n_vocab)
        t[0] = em_vocab_bos(v);
}

/* One pp run: n tokens in batches, logits for each batch's last row. */
static em_status run_pp(bench_run *b, int32_t n, double *secs) {
    em_kv_clear(b->ctx);
    double t0 = em_time_s();
    for (int32_t i = 0; i < n; i += b->n_batch) {
        em_batch_clear(&b->batch);
        int32_t end = EM_MIN(n, i + b->n_batch);
        for (int32_t j = i; j < end; j++) em_batch_add(&b->batch, b->tokens[j], j, 0, j == end - 1);
        em_status st = em_decode(b->ctx, &b->batch);
        if (st != EM_OK) return st;
    }
    *secs = em_time_s() - t0;
    return EM_OK;
}

/* One tg run: n single-token decodes, each asking for logits. */
static em_status run_tg(bench_run *b, int32_t n, double *secs) {
    em_kv_clear(b->ctx);
    double t0 = em_time_s();
    for (int32_t i = 0; i < n; i++) {
        em_batch_clear(&b->batch);
        em_batch_add(&b->batch, b->tokens[i], i, 0, true);
        em_status st = em_decode(b->ctx, &b->batch);
        if (st != EM_OK) return st;
    }
    *secs = em_time_s() - t0;
    return EM_OK;
}

/* Mean and sample deviation of n / secs[i]. */
static void rate_stats(const double *secs, int32_t reps, int32_t n, double *avg, double *sd) {
    double sum = 0, sq = 0;
    for (int32_t i = 0; i < reps; i++) sum += n / secs[i];
    *avg = sum / reps;
    for (int32_t i = 0; i < reps; i++) {
        double d = n / secs[i] - *avg;
        sq += d * d;
    }
    *sd = reps > 1 ? sqrt(sq / (reps - 1)) : 0.0;
}

em_status em_bench_model(const em_model *model, const em_bench_params *p, em_bench_result *r) {
    if (!model || !p || !r) return em_error(EM_ERR_INVALID_ARG, "bench: missing model, params or result");
    if (!model->layers || em_model_n_vocab(model) <= 0)
        return em_error(EM_ERR_INVALID_ARG, "bench: the model was loaded vocab-only");
    if (p->n_prompt < 0 || p->n_gen < 0 || p->n_prompt > (1 << 20) || p->n_gen > (1 << 20))
        return em_error(EM_ERR_INVALID_ARG, "bench: n_prompt %d / n_gen %d out of range", p->n_prompt, p->n_gen);
    if (p->reps < 1 || p->reps > EM_BENCH_MAX_REPS)
        return em_error(EM_ERR_INVALID_ARG, "bench: reps must be 1..%d, not %d", EM_BENCH_MAX_REPS, p->reps);
    if (p->n_batch < 0 || p->n_threads < 0)
        return em_error(EM_ERR_INVALID_ARG, "bench: negative n_batch or n_threads");
    memset(r, 0, sizeof *r);
    r->n_reps = p->reps;
    r->n_threads = p->n_threads > 0 ? p->n_threads : em_physical_cores();

    bench_run b = {0};
    b.n_batch = EM_MIN(p->n_batch > 0 ? p->n_batch : 512, EM_MAX(p->n_prompt, 1));
    b.n_tokens = EM_MAX(EM_MAX(p->n_prompt, p->n_gen), 1);
    em_context_params cp = em_context_default_params();
    cp.n_ctx = b.n_tokens;
    cp.n_batch = b.n_batch;
    cp.n_threads = r->n_threads;
    cp.kv_type = p->kv_type;
    cp.n_seq_max = 1;
    em_status st = em_context_init(&b.ctx, model, &cp);
    if (st != EM_OK) return st;
    b.tokens = malloc((size_t)b.n_tokens * sizeof *b.tokens);
    if (!b.tokens) {
        st = em_error(EM_ERR_NOMEM, "bench: out of memory");
        goto done;
    }
    fill_tokens(model, b.tokens, b.n_tokens, p->seed);
    if ((st = em_batch_init(&b.batch, b.n_batch)) != EM_OK) goto done;

    double secs;
    if (p->n_prompt > 0) {
        if ((st = run_pp(&b, p->n_prompt, &secs)) != EM_OK) goto done; /* warm-up */
        for (int32_t i = 0; i < p->reps; i++)
            if ((st = run_pp(&b, p->n_prompt, &r->pp_samples_s[i])) != EM_OK) goto done;
        rate_stats(r->pp_samples_s, p->reps, p->n_prompt, &r->pp_avg_ts, &r->pp_sd_ts);
        /* Rows at positions 0..n-1 attend 1..n positions; one logits row
         * per batch.  The share of the compute peak is of the work done,
         * so the rows of each batch beyond the first two skip the last
         * layer's Wo and FFN here as they do in the forward pass. */
        double flops = 0;
        for (int32_t i = 0; i < p->n_prompt; i++) flops += em_bench_token_flops(model, i + 1, false);
        double n_out = (double)((p->n_prompt + b.n_batch - 1) / b.n_batch);
        flops += n_out * (em_bench_token_flops(model, 0, true) - em_bench_token_flops(model, 0, false));
        for (int32_t i = 0; i < p->n_prompt; i += b.n_batch) {
            const int32_t rows = EM_MIN(p->n_prompt - i, b.n_batch);
            if (rows > 2) flops -= (rows - 2) * skipped_row_flops(model);
        }
        r->pp_gflops = flops * r->pp_avg_ts / p->n_prompt / 1e9;
        /* The compute roofline, measured right after the runs as the
         * bandwidth is after tg's.  Float weights are multiplied with
         * FMAs, quantized ones as int8 dot products. */
        em_bench_peaks pk;
        if (em_bench_compute_peaks(r->n_threads, &pk) == EM_OK) {
            const em_type wt = model->layers[0].w_gate.type;
            r->pp_fma_peak_gflops = pk.fma_gflops;
            r->pp_int8_peak_gops = pk.int8_gops;
            r->pp_peak_is_int8 = !(wt == EM_TYPE_F32 || wt == EM_TYPE_F16 || wt == EM_TYPE_BF16);
            const double peak = r->pp_peak_is_int8 ? pk.int8_gops : pk.fma_gflops;
            if (peak > 0) r->pp_compute_share = r->pp_gflops / peak;
        }
    }
    if (p->n_gen > 0) {
        /* A short warm-up: every weight is read by each token. */
        if ((st = run_tg(&b, EM_MIN(p->n_gen, 4), &secs)) != EM_OK) goto done;
        /* The read test follows each repetition, so that on a machine
         * shared with other work (whose bandwidth moves from minute to
         * minute) the roofline compares each run with the bandwidth of
         * its own moment; the share uses the mean of those tests.  The
         * read test evicts the caches, so a short warm-up follows it as it
         * precedes the first repetition. */
        double bw_sum = 0;
        int32_t bw_n = 0;
        for (int32_t i = 0; i < p->reps; i++) {
            if ((st = run_tg(&b, p->n_gen, &r->tg_samples_s[i])) != EM_OK) goto done;
            if (p->read_bw_gbs > 0) continue;
            const double bw = em_bench_read_bandwidth(r->n_threads);
            if (bw > 0) {
                bw_sum += bw;
                bw_n++;
            }
            if (i + 1 < p->reps && (st = run_tg(&b, EM_MIN(p->n_gen, 4), &secs)) != EM_OK) goto done;
        }
        rate_stats(r->tg_samples_s, p->reps, p->n_gen, &r->tg_avg_ts, &r->tg_sd_ts);
        /* The token at position i reads i + 1 cached positions, so the
         * average over the run is (n_gen + 1) / 2. */
        r->bytes_per_token = em_bench_token_bytes(model, (p->n_gen + 1) / 2.0, p->kv_type);
        double flops = 0;
        for (int32_t i = 0; i < p->n_gen; i++) flops += em_bench_token_flops(model, i + 1, true);
        r->tg_gflops = flops * r->tg_avg_ts / p->n_gen / 1e9;
        r->read_bw_gbs = p->read_bw_gbs > 0 ? p->read_bw_gbs : bw_n > 0 ? bw_sum / bw_n : 0;
        if (r->read_bw_gbs > 0)
            r->tg_roofline_share = r->tg_avg_ts * r->bytes_per_token / (r->read_bw_gbs * 1e9);
    } else {
        r->read_bw_gbs = p->read_bw_gbs;
    }
done:
    em_batch_free(&b.batch);
    free(b.tokens);
    em_context_free(b.ctx);
    return st;
}
