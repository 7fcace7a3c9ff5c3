/*
 * kvapi.h - the few cache calls the engine makes, in one place: prefix
 * reuse, sharing a prompt between choices, per-row decode status, hidden
 * states and the paged cache's statistics.
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
    uint64_t bytes;      /* keys and values allocated, every layer group */
    uint64_t bytes_used; /* of them in blocks some sequence holds        */
} em_engine_kv;

static inline int32_t eng_kv_reuse_prefix(em_context *ctx, em_seq_id seq, const em_token *t, int32_t n) {
    return em_kv_seq_reuse_prefix(ctx, seq, t, n);
}

static inline em_status eng_kv_seq_cp(em_context *ctx, em_seq_id src, em_seq_id dst, em_pos p0, em_pos p1) {
    return em_kv_seq_cp(ctx, src, dst, p0, p1);
}

/* The status of row i after em_decode returned EM_OK. */
static inline em_status eng_row_status(const em_batch *b, int32_t i) { return b->status ? b->status[i] : EM_OK; }

static inline const float *eng_get_embeddings(em_context *ctx, int32_t i) { return em_get_embeddings(ctx, i); }

static inline bool eng_has_embeddings(void) { return true; }

/* Cache occupancy, from the engine thread only. */
static inline void eng_kv_stats(const em_context *ctx, int32_t n_seq, em_engine_kv *out) {
    (void)n_seq;
    em_kv_stats st;
    em_kv_get_stats(ctx, &st);
    out->block_size = st.block_size;
    out->n_used = st.n_used;
    out->n_cached = st.n_cached;
    out->n_free = st.n_free;
    out->prefix_hits = st.prefix_hits;
    out->bytes = st.bytes;
    out->bytes_used = st.bytes_used;
}

#endif
