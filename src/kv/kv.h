/*
 * kv.h - the key/value cache.
 *
 * The cache is a pool of n_cells slots.  Each slot holds, for every layer,
 * the key and value rows of one token, and remembers that token's position
 * and the set of sequences that see it (a bit mask, so at most
 * EM_KV_MAX_SEQ sequences).  Attention for a query of sequence s at
 * position p reads every slot whose mask has s and whose position is <= p,
 * so sequences can grow, be trimmed, interleave in one batch, and share a
 * common prefix without copying it (em_kv_share).
 */
#ifndef EM_KV_H
#define EM_KV_H

#include "core/core.h"

#define EM_KV_MAX_SEQ 64

typedef struct em_kv {
    int32_t n_cells;     /* slots in the pool                               */
    int32_t n_layer;
    em_type type;        /* storage type: F32, F16 (default), Q8_0, ...       */
    int64_t k_width;     /* elements of one key row: n_head_kv * head_dim    */
    int64_t v_width;     /* elements of one value row: n_head_kv * head_dim_v */
    size_t k_row_bytes;  /* bytes of one stored key row                      */
    size_t v_row_bytes;  /* bytes of one stored value row                    */
    em_pos *pos;         /* [n_cells] position of each slot, -1 when free    */
    uint64_t *seqs;      /* [n_cells] bit s set: sequence s sees the slot    */
    void **k;            /* [n_layer] -> [n_cells] rows of k_row_bytes        */
    void **v;            /* [n_layer] -> [n_cells] rows of v_row_bytes        */
    int32_t used;        /* occupied slots                                   */
    int32_t hi;          /* one past the highest occupied slot               */
} em_kv;

/* head_dim and head_dim_v must be multiples of the storage type's block,
 * so that every head's slice of a row is whole blocks. */
em_status em_kv_init(em_kv *kv, int32_t n_cells, int32_t n_layer, int64_t k_width,
                     int64_t v_width, em_type type, int32_t head_dim, int32_t head_dim_v);
void em_kv_free(em_kv *kv);

/* Picks a slot for each of n rows (seq[i], pos[i]) and writes the slot
 * numbers to cells[n].  A row whose (seq, pos) is already stored in a slot
 * of its own reuses that slot; one stored in a shared slot leaves the
 * slot to the other sequences and takes a fresh one.  On
 * EM_ERR_CONTEXT_FULL nothing is changed. */
em_status em_kv_alloc(em_kv *kv, int32_t n, const em_seq_id *seq, const em_pos *pos,
                      int32_t *cells);

/* Frees the slots of seq (every seq when seq < 0) with p0 <= pos < p1
 * (p1 < 0 means no upper bound). */
void em_kv_drop(em_kv *kv, em_seq_id seq, em_pos p0, em_pos p1);

/* Makes the slots of src with p0 <= pos < p1 visible to dst as well. */
void em_kv_share(em_kv *kv, em_seq_id src, em_seq_id dst, em_pos p0, em_pos p1);

/* True when slot j is visible to sequence s. */
static inline bool em_kv_sees(const em_kv *kv, int32_t j, em_seq_id s) {
    return (kv->seqs[j] >> s) & 1u;
}

/* Stores float rows into slot `cell` of `layer`. */
void em_kv_store(em_kv *kv, int32_t layer, int32_t cell, const float *k, const float *v);

/* Reads elements [off, off + n) of a stored row as floats: a pointer into
 * the cache for F32, else the row converted into tmp[n]. */
const float *em_kv_read(const em_kv *kv, const void *base, size_t row_bytes, int32_t cell,
                        int64_t off, int64_t n, float *tmp);

#endif
