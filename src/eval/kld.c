/*
 * kld.c - how far a model (typically a quantization) moves from a base
 * model: the KL divergence KL(base || model) of the next-token
 * distributions, their top-1 agreement, and the difference in perplexity.
 *
 * The text is chunked exactly as for perplexity (ppl.c), and the same
 * positions are compared.  Unlike llama-perplexity, which stores the base
 * model's log-probabilities in a file (quantized to 16 bits) and compares
 * later, both models are loaded here and run slice by slice side by side:
 * each has its own context, so the base's logits for a slice stay valid
 * while the other model decodes the same slice, and everything is computed
 * exactly in double precision.
 */
#include "eval/eval.h"

#include <math.h>
#include <stdlib.h>

em_status em_eval_same_vocab(const em_model *a, const em_model *b) {
    int32_t na = em_model_n_vocab(a), nb = em_model_n_vocab(b);
    if (na != nb) return em_error(EM_ERR_INVALID_ARG, "the models' vocabularies differ in size (%d vs %d)", na, nb);
    const em_vocab *va = em_model_vocab(a), *vb = em_model_vocab(b);
    int32_t ta = em_vocab_n_tokens(va), tb = em_vocab_n_tokens(vb);
    if (ta != tb)
        return em_error(EM_ERR_INVALID_ARG, "the models' tokenizers differ in size (%d vs %d tokens)", ta, tb);
    for (int32_t t = 0; t < ta; t++) {
        const char *sa = em_vocab_text(va, t), *sb = em_vocab_text(vb, t);
        if (!sa || !sb || strcmp(sa, sb) != 0)
            return em_error(EM_ERR_INVALID_ARG, "the models' vocabularies differ at token %d", t);
    }
    if (em_vocab_bos(va) != em_vocab_bos(vb) || em_vocab_add_bos(va) != em_vocab_add_bos(vb))
        return em_error(EM_ERR_INVALID_ARG, "the models' vocabularies differ in their BOS handling");
    return EM_OK;
}

/* Statistics of one position: KL(p_base || p_model) over the whole
 * vocabulary, both argmaxes, and each model's log p of the next token. */
typedef struct kld_pos {
    double kld;
    double lp_base, lp_model;
    bool same_top;
} kld_pos;

/* Max and log-sum-exp of a row, in double. */
static void row_lse(const float *x, int32_t n, double *mx_out, double *lse_out, int32_t *arg) {
    double mx = x[0];
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > mx) {
            mx = x[i];
            best = i;
        }
    double s = 0.0;
    for (int32_t i = 0; i < n; i++) s += exp((double)x[i] - mx);
    *mx_out = mx;
    *lse_out = mx + log(s);
    *arg = best;
}

static kld_pos compare_rows(const float *lb, const float *lm, int32_t n, em_token next) {
    double mb, lse_b, mm, lse_m;
    int32_t ab, am;
    row_lse(lb, n, &mb, &lse_b, &ab);
    row_lse(lm, n, &mm, &lse_m, &am);
    /* sum_i p_b(i) (log p_b(i) - log p_m(i)); terms with p_b = 0 vanish. */
    double kld = 0.0;
    for (int32_t i = 0; i < n; i++) {
        double lpb = (double)lb[i] - lse_b;
        double pb = exp(lpb);
        if (pb > 0) kld += pb * (lpb - ((double)lm[i] - lse_m));
    }
    kld_pos r = {
        .kld = kld,
        .lp_base = (double)lb[next] - lse_b,
        .lp_model = (double)lm[next] - lse_m,
        .same_top = ab == am,
    };
    return r;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

em_status em_eval_kld(const em_model *base, const em_model *model, const em_token *tokens, int32_t n_tokens,
                      const em_ppl_params *params, em_eval_progress_fn progress, void *user, em_kld_result *out) {
    if (!base || !model || !tokens || !out) return em_error(EM_ERR_INVALID_ARG, "kld: missing argument");
    em_ppl_params p = params ? *params : em_ppl_default_params();
    em_status st = em_eval_same_vocab(base, model);
    if (st != EM_OK) return st;
    int32_t n_chunks = 0;
    st = em_eval_check_chunking(base, tokens, n_tokens, &p, &n_chunks);
    if (st == EM_OK) st = em_eval_check_chunking(model, tokens, n_tokens, &p, &n_chunks);
    if (st != EM_OK) return st;

    const int32_t n_ctx = p.n_ctx, first = n_ctx / 2, per_chunk = n_ctx - 1 - first;
    const int32_t n_batch = em_eval_chunk_batch(p.n_batch, n_ctx);
    size_t n_values = (size_t)n_chunks * (size_t)per_chunk;
    double *values = malloc(n_values * sizeof *values); /* [n_scored] per-position KLD */
    if (!values) return em_error(EM_ERR_NOMEM, "kld: cannot allocate %zu values", n_values);
    em_eval_engine eb, em;
    st = em_eval_engine_init(&eb, base, n_ctx, n_batch, 1, p.n_threads, p.kv_type);
    if (st != EM_OK) {
        free(values);
        return st;
    }
    st = em_eval_engine_init(&em, model, n_ctx, n_batch, 1, p.n_threads, p.kv_type);
    if (st != EM_OK) {
        em_eval_engine_free(&eb);
        free(values);
        return st;
    }
    const em_token bos = em_eval_chunk_bos(base);
    double t0 = em_time_s();
    double s_kld = 0, s_kld2 = 0, s_nb = 0, s_nm = 0;
    int64_t count = 0, same = 0;

    for (int32_t c = 0; c < n_chunks && st == EM_OK; c++) {
        const em_token *chunk = tokens + (size_t)c * n_ctx;
        em_kv_clear(eb.ctx);
        em_kv_clear(em.ctx);
        for (int32_t p0 = 0; p0 < n_ctx && st == EM_OK; p0 += n_batch) {
            int32_t p1 = EM_MIN(n_ctx, p0 + n_batch);
            st = em_eval_decode_slice(&eb, chunk, n_ctx, p0, p1, bos);
            if (st == EM_OK) st = em_eval_decode_slice(&em, chunk, n_ctx, p0, p1, bos);
            if (st != EM_OK) break;
            for (int32_t pos = EM_MAX(p0, first); pos < p1 && pos <= n_ctx - 2; pos++) {
                const float *lb = em_get_logits(eb.ctx, pos - p0), *lm = em_get_logits(em.ctx, pos - p0);
                if (!lb || !lm) {
                    st = em_error(EM_ERR_INTERNAL, "kld: no logits for position %d", pos);
                    break;
                }
                kld_pos r = compare_rows(lb, lm, eb.n_vocab, chunk[pos + 1]);
                if (!isfinite(r.kld) || !isfinite(r.lp_base) || !isfinite(r.lp_model)) {
                    st = em_error(EM_ERR_INTERNAL, "kld: non-finite logits in chunk %d at position %d", c + 1, pos);
                    break;
                }
                values[count++] = r.kld;
                s_kld += r.kld;
                s_kld2 += r.kld * r.kld;
                s_nb -= r.lp_base;
                s_nm -= r.lp_model;
                same += r.same_top;
            }
        }
        if (st == EM_OK && progress) progress(user, c + 1, n_chunks, s_kld / (double)count);
    }
    em_eval_engine_free(&em);
    em_eval_engine_free(&eb);
    if (st != EM_OK) {
        free(values);
        return st;
    }

    memset(out, 0, sizeof *out);
    out->n_tokens = n_tokens;
    out->n_ctx = n_ctx;
    out->n_chunks = n_chunks;
    out->n_scored = count;
    out->kld_mean = s_kld / (double)count;
    out->kld_se = em_eval_mean_se(s_kld, s_kld2, count);
    qsort(values, (size_t)count, sizeof *values, cmp_double);
    out->kld_p99 = em_eval_percentile(values, (size_t)count, 0.99);
    out->kld_max = values[count - 1];
    out->top1 = (double)same / (double)count;
    out->top1_se = count > 1 ? sqrt(out->top1 * (1 - out->top1) / (double)(count - 1)) : 0.0;
    out->ppl_base = exp(s_nb / (double)count);
    out->ppl_model = exp(s_nm / (double)count);
    out->dppl = out->ppl_model - out->ppl_base;
    out->seconds = em_time_s() - t0;
    free(values);
    return EM_OK;
}
