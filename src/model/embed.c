/*
 * embed.c - em_embed: one text's vector from an embedding model, the
 * operation behind /v1/embeddings.
 *
 * The tokens run as one batch of sequence 0 (an encoder's attention is not
 * causal, so every row must be in the cache before any attends), the
 * final rows are pooled as the model says ({arch}.pooling_type: the mean
 * of the rows, or the first row, BERT's [CLS]; a model without a pooling
 * type, a causal LM, gives its last row, the one that has seen the whole
 * text), and the vector is L2-normalised so that dot products are cosine
 * similarities.  The sequence is removed again afterwards.
 */
#include "model/context.h"

#include <math.h>

em_status em_embed(em_context *c, const em_token *tokens, int32_t n, float *out) {
    if (!c || !tokens || !out || n <= 0) return em_error(EM_ERR_INVALID_ARG, "embed: no tokens");
    if (!c->params.embeddings)
        return em_error(EM_ERR_INVALID_ARG, "embed: the context was made without embeddings");
    if (n > c->params.n_batch)
        return em_error(EM_ERR_INVALID_ARG, "embed: %d tokens exceed the batch size %d (the text must run as one batch)",
                        n, c->params.n_batch);
    const em_model *m = c->model;
    const int64_t d = m->hp.n_embd;
    em_status st = em_kv_remove(c, 0, -1, -1);
    if (st != EM_OK) return st;
    em_batch b;
    if ((st = em_batch_init(&b, n)) != EM_OK) return st;
    for (int32_t i = 0; i < n && st == EM_OK; i++) st = em_batch_add(&b, tokens[i], i, 0, true);
    if (st == EM_OK) st = em_decode(c, &b);
    for (int32_t i = 0; i < n && st == EM_OK; i++)
        if (b.status[i] != EM_OK) st = b.status[i];
    em_batch_free(&b);
    if (st == EM_OK) {
        double sq = 0;
        for (int64_t j = 0; j < d; j++) {
            double v = 0;
            if (m->hp.pooling == EM_POOL_MEAN) {
                for (int32_t i = 0; i < n; i++) v += em_get_embeddings(c, i)[j];
                v /= n;
            } else {
                v = em_get_embeddings(c, m->hp.pooling == EM_POOL_CLS ? 0 : n - 1)[j];
            }
            out[j] = (float)v;
            sq += v * v;
        }
        const float inv = sq > 0 ? (float)(1.0 / sqrt(sq)) : 0.0f;
        for (int64_t j = 0; j < d; j++) out[j] *= inv;
    }
    em_status st2 = em_kv_remove(c, 0, -1, -1);
    return st != EM_OK ? st : st2;
}
