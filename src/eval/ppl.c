/*
 * ppl.c - perplexity with llama-perplexity's conventions, so that figures
 * compare across tools:
 *
 *   - the whole text is tokenized once, with BOS as the model adds it;
 *   - it is cut into chunks of n_ctx tokens (a trailing partial chunk is
 *     dropped), and at least two chunks' worth of tokens are required;
 *   - each chunk is decoded from an empty cache, its first token replaced
 *     by BOS when the model adds BOS;
 *   - only the second half is scored: the logits at positions
 *     n_ctx/2 .. n_ctx-2 predict the tokens after them, so every scored
 *     token sees at least n_ctx/2 tokens of context;
 *   - log-probabilities come from a double-precision log-softmax; the
 *     running value after chunk i is exp(mean NLL so far), and the final
 *     standard error is ppl * sqrt(var(NLL) / (count - 1)).
 */
#include "eval/eval.h"

#include <math.h>
#include <stdlib.h>

em_ppl_params em_ppl_default_params(void) {
    em_ppl_params p = {
        .n_ctx = 512,
        .n_chunks = -1,
        .n_batch = 0,
        .n_threads = 0,
        .kv_type = EM_TYPE_F16,
    };
    return p;
}

em_status em_eval_chunk_count(int32_t n_tokens, int32_t n_ctx, int32_t n_chunks_wanted, int32_t *n_chunks) {
    if (n_ctx < 4) return em_error(EM_ERR_INVALID_ARG, "context of %d tokens is too small (at least 4)", n_ctx);
    if (n_tokens / 2 < n_ctx)
        return em_error(EM_ERR_INVALID_ARG,
                        "the text tokenizes to %d tokens; a context of %d needs at least %lld (2 x context)",
                        n_tokens, n_ctx, 2LL * n_ctx);
    int32_t n = n_tokens / n_ctx;
    if (n_chunks_wanted > 0 && n_chunks_wanted < n) n = n_chunks_wanted;
    *n_chunks = n;
    return EM_OK;
}

em_status em_eval_decode_slice(em_eval_engine *e, const em_token *chunk, int32_t n_ctx, int32_t p0, int32_t p1,
                               em_token bos) {
    const int32_t first = n_ctx / 2;
    em_batch_clear(&e->batch);
    for (int32_t p = p0; p < p1; p++) {
        em_token t = (p == 0 && bos >= 0) ? bos : chunk[p];
        em_status st = em_batch_add(&e->batch, t, p, 0, p >= first && p <= n_ctx - 2);
        if (st != EM_OK) return st;
    }
    return em_decode(e->ctx, &e->batch);
}

em_token em_eval_chunk_bos(const em_model *model) {
    const em_vocab *v = em_model_vocab(model);
    return em_vocab_add_bos(v) ? em_vocab_bos(v) : -1;
}

int32_t em_eval_chunk_batch(int32_t n_batch, int32_t n_ctx) {
    if (n_batch <= 0) n_batch = 512;
    return n_batch < n_ctx ? n_batch : n_ctx;
}

em_status em_eval_check_chunking(const em_model *model, const em_token *tokens, int32_t n_tokens,
                                 const em_ppl_params *p, int32_t *n_chunks) {
    int32_t train = em_model_n_ctx_train(model);
    if (train > 0 && p->n_ctx > train)
        return em_error(EM_ERR_INVALID_ARG, "context %d exceeds the model's training context %d", p->n_ctx, train);
    em_status st = em_eval_chunk_count(n_tokens, p->n_ctx, p->n_chunks, n_chunks);
    if (st != EM_OK) return st;
    int32_t nv = em_model_n_vocab(model);
    for (int32_t i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= nv)
            return em_error(EM_ERR_INVALID_ARG, "token %d at %d is outside the vocabulary (%d)", tokens[i], i, nv);
    return EM_OK;
}

em_status em_eval_ppl(const em_model *model, const em_token *tokens, int32_t n_tokens, const em_ppl_params *params,
                      em_eval_progress_fn progress, void *user, em_ppl_result *out) {
    if (!model || !tokens || !out) return em_error(EM_ERR_INVALID_ARG, "ppl: missing argument");
    em_ppl_params p = params ? *params : em_ppl_default_params();
    int32_t n_chunks = 0;
    em_status st = em_eval_check_chunking(model, tokens, n_tokens, &p, &n_chunks);
    if (st != EM_OK) return st;

    const int32_t n_ctx = p.n_ctx, first = n_ctx / 2;
    em_eval_engine e;
    st = em_eval_engine_init(&e, model, n_ctx, em_eval_chunk_batch(p.n_batch, n_ctx), 1, p.n_threads, p.kv_type);
    if (st != EM_OK) return st;
    const em_token bos = em_eval_chunk_bos(model);
    double t0 = em_time_s();
    double nll = 0.0, nll2 = 0.0;
    int64_t count = 0;

    for (int32_t c = 0; c < n_chunks && st == EM_OK; c++) {
        const em_token *chunk = tokens + (size_t)c * n_ctx;
        em_kv_clear(e.ctx);
        for (int32_t p0 = 0; p0 < n_ctx && st == EM_OK; p0 += e.n_batch) {
            int32_t p1 = EM_MIN(n_ctx, p0 + e.n_batch);
            st = em_eval_decode_slice(&e, chunk, n_ctx, p0, p1, bos);
            if (st != EM_OK) break;
            for (int32_t pos = EM_MAX(p0, first); pos < p1 && pos <= n_ctx - 2; pos++) {
                const float *row = em_get_logits(e.ctx, pos - p0);
                if (!row) {
                    st = em_error(EM_ERR_INTERNAL, "ppl: no logits for position %d", pos);
                    break;
                }
                double lp = em_eval_log_prob(row, e.n_vocab, chunk[pos + 1], NULL);
                if (!isfinite(lp)) {
                    st = em_error(EM_ERR_INTERNAL, "ppl: non-finite logits in chunk %d at position %d", c + 1, pos);
                    break;
                }
                nll -= lp;
                nll2 += lp * lp;
                count++;
            }
        }
        if (st == EM_OK && progress) progress(user, c + 1, n_chunks, exp(nll / (double)count));
    }
    em_eval_engine_free(&e);
    if (st != EM_OK) return st;

    memset(out, 0, sizeof *out);
    out->n_tokens = n_tokens;
    out->n_ctx = n_ctx;
    out->n_chunks = n_chunks;
    out->n_scored = count;
    out->nll_mean = nll / (double)count;
    out->ppl = exp(out->nll_mean);
    /* llama-perplexity's uncertainty: the NLL's standard deviation over
     * sqrt(count - 1), carried through exp() to first order. */
    double var = nll2 / (double)count - out->nll_mean * out->nll_mean;
    out->ppl_se = var > 0 && count > 1 ? sqrt(var / (double)(count - 1)) * out->ppl : 0.0;
    out->seconds = em_time_s() - t0;
    return EM_OK;
}
