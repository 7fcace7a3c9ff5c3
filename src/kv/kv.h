/*
 * kv.h - the paged key/value cache.
 *
 * The cache is one pool of fixed-size blocks of EM_KV_BLOCK positions.
 * Each block holds, for every layer, the key and value rows of up to
 * EM_KV_BLOCK consecutive positions of a sequence.  A sequence owns a
 * block table: entry i names the block that holds its positions
 * [i * EM_KV_BLOCK, (i + 1) * EM_KV_BLOCK), so a sequence holds memory in
 * proportion to its length and its positions are always 0 .. len - 1.
 *
 * Blocks are shared read-only by reference count: em_kv_share gives a
 * second sequence the blocks of a first one, and the first write into a
 * shared block copies it (copy-on-write).  A block that a write fills
 * learns a hash chained over its tokens and the previous block's hash, so
 * that a later sequence starting with the same tokens can take it over
 * (em_kv_reuse).  Blocks no sequence references stay cached while they
 * have such a hash and are evicted least-recently-used when free blocks
 * run out.
 *
 * Attention finds the cache row of (sequence, position) with em_kv_cell;
 * which rows make up a block, and how a row is stored, is known to this
 * file, kv.c and the attention kernels alone.
 */
#ifndef EM_KV_H
#define EM_KV_H

#include "core/core.h"

#define EM_KV_BLOCK 16     /* positions per block (a power of two)          */
#define EM_KV_MAX_SEQ 4096 /* most sequence ids a cache accepts             */

/* Converts n floats to IEEE halves (a SIMD twin of em_fp32_to_fp16). */
typedef void (*em_kv_f16_fn)(uint16_t *dst, const float *src, int64_t n);

/* One layer's shape where a model's layers differ (Gemma 4): rows stay
 * k_width / v_width wide (the widest layer's), and a layer's heads fill
 * the start of them. */
typedef struct em_kv_layer {
    int32_t head_dim;    /* elements of one head's key                       */
    int32_t head_dim_v;  /* elements of one head's value                     */
    int32_t src;         /* the layer whose rows it reads: itself, or an
                          * earlier layer that owns its rows (cross-layer KV
                          * sharing; no rows are allocated for it)          */
} em_kv_layer;

/* One sequence's state. */
typedef struct em_kv_seq {
    int32_t *blocks;     /* [cap] block of each run of EM_KV_BLOCK positions */
    int32_t cap;         /* entries allocated in blocks                      */
    em_pos len;          /* positions held: 0 .. len - 1                     */
} em_kv_seq;

typedef struct em_kv {
    int32_t n_blocks;    /* blocks in the pool                               */
    int32_t n_cells;     /* rows in the pool: n_blocks * EM_KV_BLOCK          */
    int32_t n_seq;       /* sequence ids accepted: 0 .. n_seq - 1             */
    int32_t n_layer;
    em_type type;        /* storage type: F32, F16 (default), Q8_0, ...       */
    int32_t head_dim;    /* elements of one head's key                       */
    int32_t head_dim_v;  /* elements of one head's value                     */
    int64_t k_width;     /* elements of one key row: n_head_kv * head_dim    */
    int64_t v_width;     /* elements of one value row: n_head_kv * head_dim_v */
    size_t k_row_bytes;  /* bytes of one stored key row                      */
    size_t v_row_bytes;  /* bytes of one stored value row                    */
    em_kv_layer *layer;  /* [n_layer] shape and row owner of each layer      */
    void **k;            /* [n_layer] -> [n_cells] rows of k_row_bytes; a
                          * sharing layer points at its source's rows       */
    void **v;            /* [n_layer] -> [n_cells] rows of v_row_bytes        */

    /* Blocks. */
    int32_t *ref;        /* [n_blocks] sequences whose table holds the block */
    uint64_t *hash;      /* [n_blocks] chained hash of a full block          */
    uint64_t *parent;    /* [n_blocks] hash of the block before it (0: first) */
    uint8_t *flags;      /* [n_blocks] EM_KV_HASHED | EM_KV_INDEXED           */
    em_token *tokens;    /* [n_cells] token stored at each row, -1 unknown   */
    int32_t *free_stack; /* [n_blocks] blocks holding nothing                */
    int32_t n_free;      /* entries of free_stack                            */
    int32_t lru_head;    /* least recently released cached block, or -1      */
    int32_t lru_tail;    /* most recently released cached block, or -1       */
    int32_t *lru_prev;   /* [n_blocks] links of the cached list              */
    int32_t *lru_next;   /* [n_blocks]                                       */
    int32_t n_cached;    /* blocks in the cached list                        */
    int32_t *bucket;     /* [n_buckets] first indexed block of each bucket   */
    int32_t *hnext;      /* [n_blocks] next indexed block in the same bucket */
    uint32_t n_buckets;  /* a power of two                                   */

    /* Sequences, and scratch for placing one batch. */
    em_kv_seq *seqs;     /* [n_seq]                                          */
    em_pos *plan_len;    /* [n_seq] length a sequence will have, while placing */
    uint8_t *plan_state; /* [n_seq] placing: touched / owns last block / failed */
    em_status *plan_err; /* [n_seq] the error of a failed sequence            */

    uint64_t prefix_lookups; /* em_kv_reuse calls                            */
    uint64_t prefix_hits;    /* blocks they reused                           */
} em_kv;

/* head_dim and head_dim_v must be multiples of the storage type's block,
 * so that every head's slice of a row is whole blocks.  The pool holds
 * n_positions rounded up to whole blocks. */
em_status em_kv_init(em_kv *kv, int32_t n_positions, int32_t n_seq, int32_t n_layer, int64_t k_width,
                     int64_t v_width, em_type type, int32_t head_dim, int32_t head_dim_v);
/* The same with a shape per layer (layers[n_layer]); k_width and v_width
 * are the widest layer's rows.  em_kv_init is this with every layer
 * (head_dim, head_dim_v, itself). */
em_status em_kv_init_layers(em_kv *kv, int32_t n_positions, int32_t n_seq, int32_t n_layer, int64_t k_width,
                            int64_t v_width, em_type type, const em_kv_layer *layers);
void em_kv_free(em_kv *kv);

/* Places n rows (seq[i], pos[i], token tok[i]) and writes the cache row
 * of each to cells[i].  A row's position must be its sequence's next one
 * (its length, counting the earlier rows of the batch).  With status, a
 * row that cannot be placed (bad sequence id or position, no free block)
 * gets its error in status[i], so do the later rows of its sequence, and
 * the other rows are placed; the call returns EM_OK when at least one row
 * was placed, else the first row's error.  A row whose seq is negative is
 * left out (EM_ERR_INVALID_ARG, no message): the caller failed it.  Rows
 * not placed get cells[i] = -1.  Without status the batch is
 * placed whole or, on the first error, not at all.  tok may be NULL
 * (nothing to hash: such blocks are never reused). */
em_status em_kv_place(em_kv *kv, int32_t n, const em_seq_id *seq, const em_pos *pos, const em_token *tok,
                      int32_t *cells, em_status *status);

/* Removes positions [p0, p1) of seq (p0 < 0: from 0; p1 < 0: to the end;
 * seq < 0: every sequence).  Only the end of a sequence can be removed:
 * a range that leaves positions after it is EM_ERR_UNSUPPORTED. */
em_status em_kv_drop(em_kv *kv, em_seq_id seq, em_pos p0, em_pos p1);

/* Makes dst hold the positions [0, p1) of src (p1 < 0: all of them) by
 * sharing src's blocks; what dst held before is dropped.  p0 must be 0
 * (or negative). */
em_status em_kv_share(em_kv *kv, em_seq_id src, em_seq_id dst, em_pos p0, em_pos p1);

/* Gives the empty sequence seq the longest run of cached full blocks that
 * match tokens[0..n) (at most n - 1 positions); returns the positions it
 * now holds, or -1 (with a message) for a bad id or a sequence that is not
 * empty. */
int32_t em_kv_reuse(em_kv *kv, em_seq_id seq, const em_token *tokens, int32_t n);

/* Blocks referenced by some sequence. */
int32_t em_kv_n_used(const em_kv *kv);

/* The cache row holding position p of sequence s (p < its length). */
static inline int32_t em_kv_cell(const em_kv *kv, em_seq_id s, em_pos p) {
    return kv->seqs[s].blocks[p / EM_KV_BLOCK] * EM_KV_BLOCK + p % EM_KV_BLOCK;
}

/* Writes KV heads [h0, h1) of a key row k and a value row v (whole rows,
 * n_head_kv heads of the layer's sizes each) into cache row `cell` of
 * `layer` (a layer that owns its rows).  F16 caches go
 * through to_f16 when it is given, other types through their quantizer.
 * The one function that stores keys and values. */
void em_kv_write(em_kv *kv, int32_t layer, int32_t cell, int32_t h0, int32_t h1, const float *k, const float *v,
                 em_kv_f16_fn to_f16);

/* Reads elements [off, off + n) of a stored row as floats: a pointer into
 * the cache for F32, else the row converted into tmp[n]. */
const float *em_kv_read(const em_kv *kv, const void *base, size_t row_bytes, int32_t cell,
                        int64_t off, int64_t n, float *tmp);

#endif
