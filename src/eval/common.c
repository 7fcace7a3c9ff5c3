/*
 * common.c - what every evaluation shares: tokenizing a whole text into a
 * growable array, the double-precision log-softmax that turns one row of
 * logits into a log-probability, the small statistics (standard error,
 * percentile), and the evaluation engine (one context plus one batch).
 */
#include "eval/eval.h"

#include <math.h>
#include <stdlib.h>

/* ------------------------------------------------------------ tokenizing */

em_status em_eval_tokenize(const em_vocab *vocab, const char *text, size_t len, bool add_special,
                           em_token **out, int32_t *n_out) {
    if (!vocab || !text || !out || !n_out) return em_error(EM_ERR_INVALID_ARG, "tokenize: missing argument");
    if (len > (size_t)INT32_MAX / 2)
        return em_error(EM_ERR_INVALID_ARG, "tokenize: text of %zu bytes is too long", len);
    return em_tokenize_alloc(vocab, text, (int32_t)len, add_special, false, out, n_out);
}

/* ------------------------------------------------------------ statistics */

double em_eval_log_prob(const float *logits, int32_t n_vocab, em_token tok, em_token *argmax) {
    /* Shifting by the maximum keeps exp() in range; summing in double keeps
     * a 100k-entry vocabulary's small terms from vanishing. */
    double mx = logits[0];
    em_token best = 0;
    for (int32_t i = 1; i < n_vocab; i++) {
        if (logits[i] > mx) {
            mx = logits[i];
            best = i;
        }
    }
    double sum = 0.0;
    for (int32_t i = 0; i < n_vocab; i++) sum += exp((double)logits[i] - mx);
    if (argmax) *argmax = best;
    return (double)logits[tok] - mx - log(sum);
}

double em_eval_percentile(const double *sorted, size_t n, double fraction) {
    if (n == 0) return 0.0;
    if (fraction <= 0) return sorted[0];
    if (fraction >= 1) return sorted[n - 1];
    double p = fraction * (double)(n - 1);
    size_t ip = (size_t)p;
    p -= (double)ip;
    size_t hi = ip + 1 < n ? ip + 1 : n - 1;
    return (1 - p) * sorted[ip] + p * sorted[hi];
}

double em_eval_mean_se(double s, double s2, int64_t n) {
    if (n < 2) return 0.0;
    double mean = s / (double)n;
    double var = (s2 / (double)n - mean * mean) * (double)n / (double)(n - 1);
    return var > 0 ? sqrt(var / (double)n) : 0.0;
}

/* ---------------------------------------------------------------- engine */

em_status em_eval_engine_init(em_eval_engine *e, const em_model *model, int32_t n_ctx, int32_t n_batch,
                              int32_t n_seq_max, int32_t n_threads, em_type kv_type) {
    memset(e, 0, sizeof *e);
    if (!model) return em_error(EM_ERR_INVALID_ARG, "eval: no model");
    if (n_ctx <= 0 || n_batch <= 0 || n_seq_max <= 0)
        return em_error(EM_ERR_INVALID_ARG, "eval: bad engine size (ctx %d, batch %d, seqs %d)", n_ctx, n_batch,
                        n_seq_max);
    if (n_batch > n_ctx) n_batch = n_ctx;
    em_context_params cp = em_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.n_seq_max = n_seq_max;
    cp.n_threads = n_threads;
    cp.kv_type = kv_type;
    em_context *ctx = NULL;
    em_status st = em_context_init(&ctx, model, &cp);
    if (st != EM_OK) return st;
    st = em_batch_init(&e->batch, n_batch);
    if (st != EM_OK) {
        em_context_free(ctx);
        return st;
    }
    e->row_choice = malloc((size_t)n_batch * sizeof *e->row_choice);
    e->row_target = malloc((size_t)n_batch * sizeof *e->row_target);
    if (!e->row_choice || !e->row_target) {
        free(e->row_choice);
        free(e->row_target);
        em_batch_free(&e->batch);
        em_context_free(ctx);
        memset(e, 0, sizeof *e);
        return em_error(EM_ERR_NOMEM, "eval: cannot allocate a batch of %d rows", n_batch);
    }
    e->model = model;
    e->ctx = ctx;
    e->n_ctx = n_ctx;
    e->n_batch = n_batch;
    e->n_seq_max = n_seq_max;
    e->n_vocab = em_model_n_vocab(model);
    return EM_OK;
}

void em_eval_engine_free(em_eval_engine *e) {
    if (!e) return;
    em_batch_free(&e->batch);
    em_context_free(e->ctx);
    free(e->row_choice);
    free(e->row_target);
    memset(e, 0, sizeof *e);
}
