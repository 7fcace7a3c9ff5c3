/*
 * kv.h - the paged key/value cache.
 *
 * The cache is a pool of fixed-size blocks of EM_KV_BLOCK positions per
 * group of layers (one group, every layer, unless some layers see only a
 * window or a chunk: "Layer groups" below).  Each block holds, for every
 * layer of its group, the key and value rows of up to EM_KV_BLOCK
 * consecutive positions of a sequence.  A sequence owns a block table per
 * group: entry i names the block that holds its positions
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
 * Layer groups.  Layers that see only a sliding window of the past, or
 * only the current chunk of positions, keep their keys and values in a
 * pool of their own (one per distinct span), and each sequence has one
 * block table per group.  Blocks that a group's layers can no longer see
 * are given back as the sequence grows (em_kv_settle), so such a group
 * holds about window / EM_KV_BLOCK + 1 blocks per sequence however long it
 * gets; global layers keep every position.  Prefix reuse stays exact: every
 * group indexes its full blocks under the same chained hash, and a reused
 * prefix takes, in every group, the blocks that its next row can see.
 *
 * Attention finds the cache row of (layer, sequence, position) with
 * em_kv_layer_cell, and a KV head's slice of it with em_kv_key /
 * em_kv_value; which rows make up a block, and how a row is stored, is
 * known to this file, kv.c and the attention kernels alone.
 *
 * Storage.  A layer's keys (and, alike, its values) are an array of
 * blocks of EM_KV_BLOCK * k_row_bytes bytes; cache row `cell` is in block
 * cell / EM_KV_BLOCK.  Inside a block the slices of a head (head_dim
 * elements of the storage type, whole blocks of it) are stored
 * head-major, [head][pos][slice]: the EM_KV_BLOCK slices of one head side
 * by side.  A decode task walks one KV head over every position, so it
 * reads one contiguous run per block (F16, head_dim 64: 2 KiB; Q8_0:
 * 1088 bytes, 17 lines), where rows of all heads side by side,
 * [pos][head][slice], gave it a slice every k_row_bytes (a Q8_0 slice of
 * 68 bytes mostly straddling two lines).  The bytes of a block and the
 * values in it are the same either way.
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
                          * sharing; no rows are allocated for it, and it
                          * is in its source's group)                       */
} em_kv_layer;

/* How much of the past a group of layers keeps (see "Layer groups"). */
typedef enum em_kv_span {
    EM_KV_GLOBAL = 0, /* every position                                     */
    EM_KV_WINDOW = 1, /* the last `size` positions: a row at p sees (p - size, p] */
    EM_KV_CHUNK = 2   /* the current chunk: a row at p sees [p - p % size, p] */
} em_kv_span;

/* One pool of blocks, holding the keys and values of the layers of one
 * group.  A block is the same EM_KV_BLOCK positions in every layer of the
 * group. */
typedef struct em_kv_pool {
    em_kv_span span;     /* what the group's layers see                      */
    int32_t size;        /* window or chunk in positions, 0 for GLOBAL       */
    int32_t n_layer;     /* layers in the group                              */
    int32_t n_blocks;    /* blocks in the pool                               */
    int32_t n_cells;     /* rows in the pool: n_blocks * EM_KV_BLOCK          */
    void **k;            /* [n_layer] -> [n_blocks] blocks of EM_KV_BLOCK
                          * rows of k_row_bytes, laid out as "Storage" says */
    void **v;            /* [n_layer] -> the same of v_row_bytes             */
    void *rows;          /* one mapping holding every k[i] and v[i]          */
    size_t rows_bytes;   /* its length in bytes                              */
    int32_t *ref;        /* [n_blocks] sequences whose table holds the block */
    uint64_t *hash;      /* [n_blocks] chained hash of a full block          */
    uint64_t *parent;    /* [n_blocks] hash of the block before it           */
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
    size_t k_block;      /* bytes of one block in a layer's keys             */
    size_t v_block;      /* bytes of one block in a layer's values           */
    int32_t frontier;    /* blocks 0 .. frontier - 1 have been taken once    */
    size_t *touched;     /* [2 * n_layer] bytes of layer i's keys (2i) and
                          * values (2i + 1) written into ahead of use: see
                          * pool_touch in kv.c                              */
} em_kv_pool;

#define EM_KV_MAX_GROUPS 4 /* layer groups; further spans keep everything  */

/* One sequence's state.  Its positions are 0 .. len - 1 in every group;
 * a windowed or chunked group holds only the blocks its layers can still
 * see: entries before first[g] are -1 (given back). */
typedef struct em_kv_seq {
    int32_t *blocks[EM_KV_MAX_GROUPS]; /* [cap] block of each run of EM_KV_BLOCK
                                        * positions, per group; -1: given back */
    int32_t first[EM_KV_MAX_GROUPS];   /* first entry each group still holds */
    uint64_t *chain;     /* [cap] hash of the tokens of blocks 0..i (0: not
                          * full, or a token unknown): every group's block i
                          * is indexed under it                             */
    em_token *toks;      /* [cap * EM_KV_BLOCK] the token of each position,
                          * -1 unknown: finds given-back blocks again        */
    int32_t cap;         /* entries allocated in blocks and chain            */
    em_pos len;          /* positions held: 0 .. len - 1                     */
} em_kv_seq;

typedef struct em_kv {
    int32_t n_pos;       /* positions one sequence can hold (whole blocks)   */
    int32_t n_blocks;    /* blocks in group 0's pool                         */
    int32_t n_cells;     /* rows in group 0's pool: n_blocks * EM_KV_BLOCK    */
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
    size_t *k_slice;     /* [n_layer] bytes of one head's key slice: its row
                          * owner's head_dim elements of the storage type    */
    size_t *v_slice;     /* [n_layer] bytes of one head's value slice         */
    void **k;            /* [n_layer] -> the rows of the layer in its group's
                          * pool; a sharing layer points at its source's    */
    void **v;            /* [n_layer]                                        */
    uint8_t *group;      /* [n_layer] group of each layer                    */

    /* Groups: 0 keeps the most (every position when any layer is global). */
    int32_t n_groups;
    em_kv_pool pools[EM_KV_MAX_GROUPS];

    /* Sequences, and scratch for placing one batch. */
    em_kv_seq *seqs;     /* [n_seq]                                          */
    em_pos *plan_len;    /* [n_seq] length a sequence will have, while placing */
    uint8_t *plan_state; /* [n_seq] placing: touched / failed / owns its last
                          * block, per group                                */
    em_status *plan_err; /* [n_seq] the error of a failed sequence            */

    uint64_t prefix_lookups; /* em_kv_reuse calls                            */
    uint64_t prefix_hits;    /* blocks they reused                           */
} em_kv;

/* What each layer sees, for em_kv_init_layout.  Layers with the same span
 * share a group; a layer without window or chunk is global. */
typedef struct em_kv_layout {
    const int32_t *window; /* [n_layer] sliding window, 0 = none; or NULL   */
    const int32_t *chunk;  /* [n_layer] attention chunk, 0 = none; or NULL  */
    int32_t n_batch;       /* most rows one em_kv_place adds (sizes the
                            * pools of windowed and chunked groups)         */
    const em_kv_layer *layers; /* [n_layer] per-layer shapes, or NULL: every
                            * layer (head_dim, head_dim_v, itself)          */
} em_kv_layout;

/* head_dim and head_dim_v must be multiples of the storage type's block,
 * so that every head's slice of a row is whole blocks.  The pool holds
 * n_positions rounded up to whole blocks. */
em_status em_kv_init(em_kv *kv, int32_t n_positions, int32_t n_seq, int32_t n_layer, int64_t k_width,
                     int64_t v_width, em_type type, int32_t head_dim, int32_t head_dim_v);
/* The same with layer groups: a windowed or chunked group's pool holds
 * min(every position, n_seq * (ceil(size / EM_KV_BLOCK) + 1) +
 * ceil(n_batch / EM_KV_BLOCK) + min(n_seq, n_batch)) blocks, enough for
 * every sequence's window plus the rows of one batch, and its blocks are
 * given back as the window slides (em_kv_settle).  layout NULL: every
 * layer global, as em_kv_init.  With layout->layers, head_dim and
 * head_dim_v are ignored (layers[0]'s are kept in em_kv). */
em_status em_kv_init_layout(em_kv *kv, int32_t n_positions, int32_t n_seq, int32_t n_layer, int64_t k_width,
                            int64_t v_width, em_type type, int32_t head_dim, int32_t head_dim_v,
                            const em_kv_layout *layout);
/* The same with a shape per layer (layers[n_layer]), every layer global;
 * k_width and v_width are the widest layer's rows.  em_kv_init is this
 * with every layer (head_dim, head_dim_v, itself). */
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
 * (nothing to hash: such blocks are never reused).  cells are group 0's
 * rows; em_kv_layer_cell gives every layer's. */
em_status em_kv_place(em_kv *kv, int32_t n, const em_seq_id *seq, const em_pos *pos, const em_token *tok,
                      int32_t *cells, em_status *status);

/* Removes positions [p0, p1) of seq (p0 < 0: from 0; p1 < 0: to the end;
 * seq < 0: every sequence).  Only the end of a sequence can be removed:
 * a range that leaves positions after it is EM_ERR_UNSUPPORTED.  With
 * windowed or chunked groups the sequence can end shorter than p0: when
 * blocks its next row would see were given back and evicted since, it is
 * cut back to the longest length whose visible blocks every group still
 * has (or finds again by hash); the caller reads the length back. */
em_status em_kv_drop(em_kv *kv, em_seq_id seq, em_pos p0, em_pos p1);

/* Makes dst hold the positions [0, p1) of src (p1 < 0: all of them) by
 * sharing src's blocks; what dst held before is dropped.  p0 must be 0
 * (or negative).  With p1 short of src's length, dst can end shorter, as
 * with em_kv_drop. */
em_status em_kv_share(em_kv *kv, em_seq_id src, em_seq_id dst, em_pos p0, em_pos p1);

/* Gives the empty sequence seq the longest run of cached full blocks that
 * match tokens[0..n) (at most n - 1 positions) and that every group can
 * serve (windowed groups need only the blocks the next row sees); returns the positions it
 * now holds, or -1 (with a message) for a bad id or a sequence that is not
 * empty. */
int32_t em_kv_reuse(em_kv *kv, em_seq_id seq, const em_token *tokens, int32_t n);

/* After a batch was computed: the windowed and chunked groups of the n
 * sequences listed (negative ids skipped) give back the blocks that no
 * later row of theirs can see. */
void em_kv_settle(em_kv *kv, int32_t n, const em_seq_id *seq);

/* Blocks of group 0 referenced by some sequence. */
int32_t em_kv_n_used(const em_kv *kv);
/* The same for group g. */
int32_t em_kv_pool_used(const em_kv *kv, int32_t g);

/* The row of group g's pool holding position p of sequence s (p < its
 * length, and visible to its next row). */
static inline int32_t em_kv_group_cell(const em_kv *kv, int32_t g, em_seq_id s, em_pos p) {
    return kv->seqs[s].blocks[g][p / EM_KV_BLOCK] * EM_KV_BLOCK + p % EM_KV_BLOCK;
}
/* The cache row of `layer` holding position p of sequence s. */
static inline int32_t em_kv_layer_cell(const em_kv *kv, int32_t layer, em_seq_id s, em_pos p) {
    return em_kv_group_cell(kv, kv->group[layer], s, p);
}
/* The row of group 0 (every layer's, in a cache without groups). */
static inline int32_t em_kv_cell(const em_kv *kv, em_seq_id s, em_pos p) { return em_kv_group_cell(kv, 0, s, p); }

/* The byte offset of KV head h's slice (slice bytes) of cache row `cell`
 * in an array of rows of row_bytes: see "Storage". */
static inline size_t em_kv_slice_off(size_t row_bytes, size_t slice, int32_t cell, int32_t h) {
    const size_t b = (size_t)cell / EM_KV_BLOCK, i = (size_t)cell % EM_KV_BLOCK;
    return b * EM_KV_BLOCK * row_bytes + ((size_t)h * EM_KV_BLOCK + i) * slice;
}
/* KV head h's key slice in cache row `cell` of `layer`. */
static inline const void *em_kv_key(const em_kv *kv, int32_t layer, int32_t cell, int32_t h) {
    return (const char *)kv->k[layer] + em_kv_slice_off(kv->k_row_bytes, kv->k_slice[layer], cell, h);
}
/* KV head h's value slice in cache row `cell` of `layer`. */
static inline const void *em_kv_value(const em_kv *kv, int32_t layer, int32_t cell, int32_t h) {
    return (const char *)kv->v[layer] + em_kv_slice_off(kv->v_row_bytes, kv->v_slice[layer], cell, h);
}

/* Writes KV heads [h0, h1) of a key row k and a value row v (whole rows,
 * n_head_kv heads of the layer's sizes each) into cache row `cell` of
 * `layer` (a layer that owns its rows).  F16 caches go
 * through to_f16 when it is given, other types through their quantizer.
 * The one function that stores keys and values. */
void em_kv_write(em_kv *kv, int32_t layer, int32_t cell, int32_t h0, int32_t h1, const float *k, const float *v,
                 em_kv_f16_fn to_f16);

/* Reads KV head h's key (value: its value) slice of cache row `cell` of
 * `layer` as floats: a pointer into the cache for F32, else the slice
 * converted into tmp (head_dim or head_dim_v floats of the row owner). */
const float *em_kv_read(const em_kv *kv, int32_t layer, bool value, int32_t cell, int32_t h, float *tmp);

#endif
