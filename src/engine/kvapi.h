/*
 * kvapi.h - the few cache calls the engine makes, in one place.
 *
 * The paged cache (branch kv) adds prefix reuse, per-row decode status,
 * cache statistics and hidden states; until it is merged these wrappers
 * give today's equivalents: no reuse, all-or-nothing decode, statistics
 * counted in positions (blocks of one), and no embeddings.
 */
#ifndef EM_ENGINE_KVAPI_H
#define EM_ENGINE_KVAPI_H

#include "ember.h"

typedef struct em_engine_kv {
    int32_t block_size; /* positions per block                 */
    int32_t n_used;     /* blocks referenced by a sequence     */
    int32_t n_cached;   /* unreferenced blocks kept for reuse  */
    int32_t n_free;     /* blocks holding nothing              */
    uint64_t prefix_hits;
} em_engine_kv;

static inline int32_t eng_kv_reuse_prefix(em_context *ctx, em_seq_id seq, const em_token *t, int32_t n) {
    (void)ctx, (void)seq, (void)t, (void)n;
    return 0;
}

static inline em_status eng_kv_seq_cp(em_context *ctx, em_seq_id src, em_seq_id dst, em_pos p0, em_pos p1) {
    em_kv_seq_cp(ctx, src, dst, p0, p1);
    return EM_OK;
}

/* The status of row i after em_decode returned EM_OK. */
static inline em_status eng_row_status(const em_batch *b, int32_t i) {
    (void)b, (void)i;
    return EM_OK;
}

static inline const float *eng_get_embeddings(em_context *ctx, int32_t i) {
    (void)ctx, (void)i;
    return NULL;
}

static inline bool eng_has_embeddings(void) { return false; }

/* Cache occupancy, from the engine thread only; n_seq sequences. */
static inline void eng_kv_stats(const em_context *ctx, int32_t n_seq, em_engine_kv *out) {
    out->block_size = 1;
    out->n_used = 0;
    for (em_seq_id s = 0; s < n_seq; s++) out->n_used += em_kv_seq_pos_max(ctx, s);
    out->n_cached = 0;
    out->n_free = em_context_n_ctx(ctx) - out->n_used;
    out->prefix_hits = 0;
}

#endif
