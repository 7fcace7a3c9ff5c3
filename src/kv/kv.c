/*
 * kv.c - the paged key/value cache: the block pool, sequences' block
 * tables, sharing with copy-on-write, prefix reuse by block hashing, and
 * the storage of rows.
 *
 * A block is in one of three states:
 *   used    ref > 0: in the table of at least one sequence;
 *   cached  ref == 0 and indexed by its hash: kept for em_kv_reuse, in the
 *           least-recently-used list, evicted when no free block is left;
 *   free    ref == 0 and not indexed: on the free stack.
 * Only full blocks are hashed, and a hashed block is never written: a
 * write goes to a block the writer owns alone (copy-on-write), and a
 * sequence that trims a block it owns alone takes the hash away first.
 */
#include "kv/kv.h"
#include "quant/quant.h"

#include <stdlib.h>

#define EM_KV_HASHED 1u  /* hash and parent are valid: the block is full */
#define EM_KV_INDEXED 2u /* the block is in the hash index               */

/* plan_state bits while placing a batch. */
#define PLAN_TOUCHED 1u  /* plan_len holds the sequence's planned length  */
#define PLAN_OWNS 2u     /* its last block is its own, writable in place  */
#define PLAN_FAILED 4u   /* a row failed: so do its later rows            */

#define HASH_SEED 0x9e3779b97f4a7c15ull

em_status em_kv_init(em_kv *kv, int32_t n_positions, int32_t n_seq, int32_t n_layer, int64_t k_width,
                     int64_t v_width, em_type type, int32_t head_dim, int32_t head_dim_v) {
    memset(kv, 0, sizeof *kv);
    if (n_layer <= 0 || n_layer > (1 << 16)) return em_error(EM_ERR_INVALID_ARG, "kv: bad cache shape");
    em_kv_layer *layers = malloc((size_t)n_layer * sizeof *layers);
    if (!layers) return em_error(EM_ERR_NOMEM, "kv: out of memory");
    for (int32_t i = 0; i < n_layer; i++) layers[i] = (em_kv_layer){head_dim, head_dim_v, i};
    em_status st = em_kv_init_layers(kv, n_positions, n_seq, n_layer, k_width, v_width, type, layers);
    free(layers);
    return st;
}

/* A layer's shape is valid: whole heads fit the rows, and its rows come
 * from a layer that owns them. */
static bool layer_ok(const em_kv_layer *layers, int32_t i, int64_t k_width, int64_t v_width) {
    const em_kv_layer *l = &layers[i];
    return l->head_dim > 0 && l->head_dim_v > 0 && l->head_dim <= k_width && l->head_dim_v <= v_width &&
           l->src >= 0 && l->src <= i && layers[l->src].src == l->src;
}

em_status em_kv_init_layers(em_kv *kv, int32_t n_positions, int32_t n_seq, int32_t n_layer, int64_t k_width,
                            int64_t v_width, em_type type, const em_kv_layer *layers) {
    memset(kv, 0, sizeof *kv);
    bool shape_ok = n_positions > 0 && n_positions <= (1 << 28) && n_seq > 0 && n_seq <= EM_KV_MAX_SEQ &&
                    n_layer > 0 && n_layer <= (1 << 16) && k_width > 0 && v_width > 0 && layers;
    for (int32_t i = 0; shape_ok && i < n_layer; i++) shape_ok = layer_ok(layers, i, k_width, v_width);
    if (!shape_ok) return em_error(EM_ERR_INVALID_ARG, "kv: bad cache shape");
    const int32_t head_dim = layers[0].head_dim, head_dim_v = layers[0].head_dim_v;
    if (k_width % head_dim || v_width % head_dim_v) return em_error(EM_ERR_INVALID_ARG, "kv: bad cache shape");
    const em_type_traits *tr = em_get_type_traits(type);
    if (!tr || !tr->can_quantize || !tr->can_dequant || type == EM_TYPE_Q8_K || type == EM_TYPE_Q8_1)
        return em_error(EM_ERR_UNSUPPORTED, "kv: %s cannot be a cache type (use f16, f32 or q8_0)",
                        em_type_name(type) ? em_type_name(type) : "this type");
    for (int32_t i = 0; i < n_layer; i++)
        if (layers[i].head_dim % tr->block_size || layers[i].head_dim_v % tr->block_size)
            return em_error(EM_ERR_UNSUPPORTED,
                            "kv: a %s cache needs head sizes that are multiples of %lld (the model's are %d/%d)",
                            tr->name, (long long)tr->block_size, layers[i].head_dim, layers[i].head_dim_v);
    const int32_t nb = (n_positions + EM_KV_BLOCK - 1) / EM_KV_BLOCK;
    kv->n_blocks = nb;
    kv->n_cells = nb * EM_KV_BLOCK;
    kv->n_seq = n_seq;
    kv->n_layer = n_layer;
    kv->type = type;
    kv->head_dim = head_dim;
    kv->head_dim_v = head_dim_v;
    kv->k_width = k_width;
    kv->v_width = v_width;
    kv->k_row_bytes = em_row_size(type, k_width);
    kv->v_row_bytes = em_row_size(type, v_width);
    kv->n_buckets = 1;
    while (kv->n_buckets < (uint32_t)nb) kv->n_buckets <<= 1;

    const size_t n = (size_t)nb;
    kv->layer = malloc((size_t)n_layer * sizeof *kv->layer);
    if (kv->layer) memcpy(kv->layer, layers, (size_t)n_layer * sizeof *kv->layer);
    kv->k = calloc((size_t)n_layer, sizeof *kv->k);
    kv->v = calloc((size_t)n_layer, sizeof *kv->v);
    kv->ref = calloc(n, sizeof *kv->ref);
    kv->hash = calloc(n, sizeof *kv->hash);
    kv->parent = calloc(n, sizeof *kv->parent);
    kv->flags = calloc(n, sizeof *kv->flags);
    kv->tokens = malloc((size_t)kv->n_cells * sizeof *kv->tokens);
    kv->free_stack = malloc(n * sizeof *kv->free_stack);
    kv->lru_prev = malloc(n * sizeof *kv->lru_prev);
    kv->lru_next = malloc(n * sizeof *kv->lru_next);
    kv->bucket = malloc((size_t)kv->n_buckets * sizeof *kv->bucket);
    kv->hnext = malloc(n * sizeof *kv->hnext);
    kv->seqs = calloc((size_t)n_seq, sizeof *kv->seqs);
    kv->plan_len = calloc((size_t)n_seq, sizeof *kv->plan_len);
    kv->plan_state = calloc((size_t)n_seq, sizeof *kv->plan_state);
    kv->plan_err = calloc((size_t)n_seq, sizeof *kv->plan_err);
    if (!kv->layer || !kv->k || !kv->v || !kv->ref || !kv->hash || !kv->parent || !kv->flags || !kv->tokens ||
        !kv->free_stack || !kv->lru_prev || !kv->lru_next || !kv->bucket || !kv->hnext || !kv->seqs ||
        !kv->plan_len || !kv->plan_state || !kv->plan_err)
        goto nomem;
    for (int32_t i = 0; i < n_layer; i++) {
        if (layers[i].src != i) {
            kv->k[i] = kv->k[layers[i].src];
            kv->v[i] = kv->v[layers[i].src];
            continue;
        }
        kv->k[i] = calloc((size_t)kv->n_cells, kv->k_row_bytes);
        kv->v[i] = calloc((size_t)kv->n_cells, kv->v_row_bytes);
        if (!kv->k[i] || !kv->v[i]) goto nomem;
    }
    /* The free stack pops block 0 first, so that a lone sequence fills the
     * pool in order. */
    for (int32_t i = 0; i < nb; i++) kv->free_stack[i] = nb - 1 - i;
    kv->n_free = nb;
    for (int32_t i = 0; i < kv->n_cells; i++) kv->tokens[i] = -1;
    for (uint32_t i = 0; i < kv->n_buckets; i++) kv->bucket[i] = -1;
    kv->lru_head = kv->lru_tail = -1;
    return EM_OK;
nomem:
    em_kv_free(kv);
    return em_error(EM_ERR_NOMEM, "kv: cannot allocate a cache of %d positions", n_positions);
}

/* Whether layer i holds rows of its own (not those of another layer). */
static bool owns_rows(const em_kv *kv, int32_t i) { return !kv->layer || kv->layer[i].src == i; }

void em_kv_free(em_kv *kv) {
    if (kv->k)
        for (int32_t i = 0; i < kv->n_layer; i++)
            if (owns_rows(kv, i)) free(kv->k[i]);
    if (kv->v)
        for (int32_t i = 0; i < kv->n_layer; i++)
            if (owns_rows(kv, i)) free(kv->v[i]);
    free(kv->layer);
    if (kv->seqs)
        for (int32_t i = 0; i < kv->n_seq; i++) free(kv->seqs[i].blocks);
    free(kv->k);
    free(kv->v);
    free(kv->ref);
    free(kv->hash);
    free(kv->parent);
    free(kv->flags);
    free(kv->tokens);
    free(kv->free_stack);
    free(kv->lru_prev);
    free(kv->lru_next);
    free(kv->bucket);
    free(kv->hnext);
    free(kv->seqs);
    free(kv->plan_len);
    free(kv->plan_state);
    free(kv->plan_err);
    memset(kv, 0, sizeof *kv);
}

/* ------------------------------------------------------------ hashing */

/* The hash of a block of tokens that follows a block hashed `parent`
 * (HASH_SEED for the first block of a sequence). */
static uint64_t block_hash(uint64_t parent, const em_token *t) {
    uint64_t h = parent;
    for (int i = 0; i < EM_KV_BLOCK; i++) {
        h ^= (uint64_t)(uint32_t)t[i] + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
        h *= 0xff51afd7ed558ccdull;
        h ^= h >> 33;
    }
    return h ? h : 1;
}

static uint32_t bucket_of(const em_kv *kv, uint64_t h) { return (uint32_t)(h ^ (h >> 32)) & (kv->n_buckets - 1); }

/* The indexed block with this hash, parent and tokens, or -1. */
static int32_t index_find(const em_kv *kv, uint64_t h, uint64_t parent, const em_token *t) {
    for (int32_t b = kv->bucket[bucket_of(kv, h)]; b >= 0; b = kv->hnext[b])
        if (kv->hash[b] == h && kv->parent[b] == parent &&
            memcmp(kv->tokens + (size_t)b * EM_KV_BLOCK, t, EM_KV_BLOCK * sizeof *t) == 0)
            return b;
    return -1;
}

static void index_remove(em_kv *kv, int32_t b) {
    if (!(kv->flags[b] & EM_KV_INDEXED)) return;
    int32_t *link = &kv->bucket[bucket_of(kv, kv->hash[b])];
    while (*link != b) link = &kv->hnext[*link];
    *link = kv->hnext[b];
    kv->flags[b] &= (uint8_t)~EM_KV_INDEXED;
}

/* Block b (full now) learns its hash; the first block with a given
 * prefix is the one the index keeps. */
static void block_seal(em_kv *kv, int32_t b, uint64_t parent) {
    const em_token *t = kv->tokens + (size_t)b * EM_KV_BLOCK;
    for (int i = 0; i < EM_KV_BLOCK; i++)
        if (t[i] < 0) return; /* unknown tokens: never reused */
    kv->hash[b] = block_hash(parent, t);
    kv->parent[b] = parent;
    kv->flags[b] |= EM_KV_HASHED;
    if (index_find(kv, kv->hash[b], parent, t) >= 0) return;
    uint32_t k = bucket_of(kv, kv->hash[b]);
    kv->hnext[b] = kv->bucket[k];
    kv->bucket[k] = b;
    kv->flags[b] |= EM_KV_INDEXED;
}

/* Block b will be written over: it forgets its hash. */
static void block_unseal(em_kv *kv, int32_t b) {
    index_remove(kv, b);
    kv->flags[b] = 0;
}

/* --------------------------------------------------- block life cycle */

static void lru_unlink(em_kv *kv, int32_t b) {
    int32_t p = kv->lru_prev[b], n = kv->lru_next[b];
    if (p >= 0) kv->lru_next[p] = n; else kv->lru_head = n;
    if (n >= 0) kv->lru_prev[n] = p; else kv->lru_tail = p;
    kv->n_cached--;
}

/* A block for new rows: a free one, else the least recently used cached
 * one, which leaves the index.  -1 when every block is used. */
static int32_t block_take(em_kv *kv) {
    int32_t b;
    if (kv->n_free > 0) {
        b = kv->free_stack[--kv->n_free];
    } else if (kv->lru_head >= 0) {
        b = kv->lru_head;
        lru_unlink(kv, b);
        block_unseal(kv, b);
    } else {
        return -1;
    }
    kv->ref[b] = 1;
    kv->flags[b] = 0;
    for (int i = 0; i < EM_KV_BLOCK; i++) kv->tokens[(size_t)b * EM_KV_BLOCK + i] = -1;
    return b;
}

/* Adds a reference to b (which may be cached). */
static void block_ref(em_kv *kv, int32_t b) {
    if (kv->ref[b] == 0) lru_unlink(kv, b);
    kv->ref[b]++;
}

/* Drops a reference to b: at zero it is cached while indexed, else free. */
static void block_unref(em_kv *kv, int32_t b) {
    if (--kv->ref[b] > 0) return;
    if (kv->flags[b] & EM_KV_INDEXED) {
        kv->lru_prev[b] = kv->lru_tail;
        kv->lru_next[b] = -1;
        if (kv->lru_tail >= 0) kv->lru_next[kv->lru_tail] = b; else kv->lru_head = b;
        kv->lru_tail = b;
        kv->n_cached++;
    } else {
        kv->flags[b] = 0;
        kv->free_stack[kv->n_free++] = b;
    }
}

/* Copies rows [0, n) of block src into block dst, every layer. */
static void block_copy(em_kv *kv, int32_t dst, int32_t src, int32_t n) {
    const size_t d = (size_t)dst * EM_KV_BLOCK, s = (size_t)src * EM_KV_BLOCK;
    for (int32_t l = 0; l < kv->n_layer; l++) {
        if (!owns_rows(kv, l)) continue;
        memcpy((char *)kv->k[l] + d * kv->k_row_bytes, (const char *)kv->k[l] + s * kv->k_row_bytes,
               (size_t)n * kv->k_row_bytes);
        memcpy((char *)kv->v[l] + d * kv->v_row_bytes, (const char *)kv->v[l] + s * kv->v_row_bytes,
               (size_t)n * kv->v_row_bytes);
    }
    memcpy(kv->tokens + d, kv->tokens + s, (size_t)n * sizeof *kv->tokens);
}

/* Makes room for one more entry in a sequence's block table. */
static bool seq_reserve(em_kv_seq *sq, int32_t n) {
    if (n <= sq->cap) return true;
    int32_t cap = sq->cap ? sq->cap * 2 : 8;
    while (cap < n) cap *= 2;
    int32_t *nb = realloc(sq->blocks, (size_t)cap * sizeof *nb);
    if (!nb) return false;
    sq->blocks = nb;
    sq->cap = cap;
    return true;
}

/* Trims sequence s to its first len positions. */
static void seq_trim(em_kv *kv, em_seq_id s, em_pos len) {
    em_kv_seq *sq = &kv->seqs[s];
    if (len >= sq->len) return;
    const int32_t keep = (len + EM_KV_BLOCK - 1) / EM_KV_BLOCK, had = (sq->len + EM_KV_BLOCK - 1) / EM_KV_BLOCK;
    for (int32_t i = keep; i < had; i++) block_unref(kv, sq->blocks[i]);
    /* A block cut in the middle will be written over: if this sequence
     * owns it alone, its hash goes (a shared one is copied first). */
    if (len % EM_KV_BLOCK && kv->ref[sq->blocks[keep - 1]] == 1) block_unseal(kv, sq->blocks[keep - 1]);
    sq->len = len;
}

/* ------------------------------------------------------------ placing */

/* Checks row i against the plan, and books the block it needs. */
static em_status plan_row(em_kv *kv, em_seq_id s, em_pos p, int32_t *avail, int32_t i) {
    uint8_t *ps = &kv->plan_state[s];
    if (*ps & PLAN_FAILED) return kv->plan_err[s];
    if (!(*ps & PLAN_TOUCHED)) {
        const em_kv_seq *sq = &kv->seqs[s];
        *ps = PLAN_TOUCHED;
        kv->plan_len[s] = sq->len;
        if (sq->len % EM_KV_BLOCK && kv->ref[sq->blocks[sq->len / EM_KV_BLOCK]] == 1) *ps |= PLAN_OWNS;
    }
    if (p != kv->plan_len[s])
        return em_error(EM_ERR_INVALID_ARG, "kv: row %d: sequence %d is at position %d, not %d", i, s,
                        kv->plan_len[s], p);
    if (p >= kv->n_cells)
        return em_error(EM_ERR_CONTEXT_FULL, "kv: row %d: position %d is beyond the cache (%d positions)", i, p,
                        kv->n_cells);
    if (p % EM_KV_BLOCK == 0 || !(*ps & PLAN_OWNS)) {
        if (*avail == 0)
            return em_error(EM_ERR_CONTEXT_FULL, "kv: the cache is full (%d blocks of %d positions)", kv->n_blocks,
                            EM_KV_BLOCK);
        (*avail)--;
        *ps |= PLAN_OWNS;
    }
    kv->plan_len[s] = p + 1;
    return EM_OK;
}

/* Places one row already checked by plan_row; false when out of memory. */
static bool place_row(em_kv *kv, em_seq_id s, em_pos p, em_token t, int32_t *cell) {
    em_kv_seq *sq = &kv->seqs[s];
    const int32_t bi = p / EM_KV_BLOCK, off = p % EM_KV_BLOCK;
    if (off == 0) {
        if (!seq_reserve(sq, bi + 1)) return false;
        sq->blocks[bi] = block_take(kv);
    } else if (kv->ref[sq->blocks[bi]] > 1) {
        /* Copy-on-write: the rows before p go into a block of our own. */
        const int32_t old = sq->blocks[bi], nb = block_take(kv);
        block_copy(kv, nb, old, off);
        block_unref(kv, old);
        sq->blocks[bi] = nb;
    }
    const int32_t b = sq->blocks[bi];
    kv->tokens[(size_t)b * EM_KV_BLOCK + off] = t;
    sq->len = p + 1;
    *cell = b * EM_KV_BLOCK + off;
    /* A full block learns its hash when the block before it has one. */
    if (off == EM_KV_BLOCK - 1 && (bi == 0 || (kv->flags[sq->blocks[bi - 1]] & EM_KV_HASHED)))
        block_seal(kv, b, bi > 0 ? kv->hash[sq->blocks[bi - 1]] : HASH_SEED);
    return true;
}

em_status em_kv_place(em_kv *kv, int32_t n, const em_seq_id *seq, const em_pos *pos, const em_token *tok,
                      int32_t *cells, em_status *status) {
    /* Plan: every row is checked and its block booked against the free
     * and cached blocks, changing nothing. */
    int32_t avail = kv->n_free + kv->n_cached, n_ok = 0;
    em_status first = EM_OK;
    for (int32_t i = 0; i < n; i++) {
        const em_seq_id s = seq[i];
        em_status st;
        if (s < 0) {
            st = EM_ERR_INVALID_ARG; /* left out by the caller */
        } else if (s >= kv->n_seq) {
            st = em_error(EM_ERR_INVALID_ARG, "kv: row %d: sequence %d outside [0, %d)", i, s, kv->n_seq);
        } else {
            st = plan_row(kv, s, pos[i], &avail, i);
            if (st != EM_OK && !(kv->plan_state[s] & PLAN_FAILED)) {
                kv->plan_state[s] |= PLAN_FAILED;
                kv->plan_err[s] = st;
            }
        }
        if (status) status[i] = st;
        if (st == EM_OK) n_ok++;
        else if (first == EM_OK) first = st;
    }
    for (int32_t i = 0; i < n; i++)
        if (seq[i] >= 0 && seq[i] < kv->n_seq) kv->plan_state[seq[i]] = 0;
    if (n_ok == 0 || (!status && first != EM_OK)) return first;

    /* Commit the rows that passed, in order. */
    for (int32_t i = 0; i < n; i++) cells[i] = -1;
    for (int32_t i = 0; i < n; i++) {
        if (status && status[i] != EM_OK) continue;
        if (!place_row(kv, seq[i], pos[i], tok ? tok[i] : -1, &cells[i])) {
            /* Only a block table can fail to grow: this row and the rest
             * of its sequence are not placed. */
            em_status st = em_error(EM_ERR_NOMEM, "kv: out of memory for the block table of sequence %d", seq[i]);
            if (!status) {
                for (int32_t j = 0; j < i; j++) seq_trim(kv, seq[j], EM_MIN(kv->seqs[seq[j]].len, pos[j]));
                return st;
            }
            for (int32_t j = i; j < n; j++)
                if (seq[j] == seq[i]) status[j] = st;
        }
    }
    return EM_OK;
}

/* --------------------------------------------------------- editing */

em_status em_kv_drop(em_kv *kv, em_seq_id seq, em_pos p0, em_pos p1) {
    if (seq >= kv->n_seq) return em_error(EM_ERR_INVALID_ARG, "kv: sequence %d outside [0, %d)", seq, kv->n_seq);
    if (p0 < 0) p0 = 0;
    const em_seq_id s0 = seq < 0 ? 0 : seq, s1 = seq < 0 ? kv->n_seq : seq + 1;
    for (em_seq_id s = s0; s < s1; s++) {
        const em_pos len = kv->seqs[s].len;
        if (p0 >= len || (p1 >= 0 && p1 <= p0)) continue;
        if (p1 >= 0 && p1 < len)
            return em_error(EM_ERR_UNSUPPORTED,
                            "kv: sequence %d: only its end can be removed (positions [%d, %d) of %d)", s, p0, p1,
                            len);
    }
    for (em_seq_id s = s0; s < s1; s++)
        if (p1 < 0 || p1 >= kv->seqs[s].len) seq_trim(kv, s, p0);
    return EM_OK;
}

em_status em_kv_share(em_kv *kv, em_seq_id src, em_seq_id dst, em_pos p0, em_pos p1) {
    if (src < 0 || dst < 0 || src >= kv->n_seq || dst >= kv->n_seq)
        return em_error(EM_ERR_INVALID_ARG, "kv: copy from sequence %d to %d: ids must be in [0, %d)", src, dst,
                        kv->n_seq);
    if (p0 > 0) return em_error(EM_ERR_UNSUPPORTED, "kv: only a prefix [0, p1) of a sequence can be copied");
    if (src == dst) return EM_OK;
    const em_kv_seq *from = &kv->seqs[src];
    const em_pos len = p1 < 0 || p1 > from->len ? from->len : p1;
    const int32_t nb = (len + EM_KV_BLOCK - 1) / EM_KV_BLOCK;
    em_kv_seq *to = &kv->seqs[dst];
    if (!seq_reserve(to, nb)) return em_error(EM_ERR_NOMEM, "kv: out of memory for a block table");
    /* Reference the new blocks before dropping the old ones, which may be
     * the same. */
    for (int32_t i = 0; i < nb; i++) block_ref(kv, from->blocks[i]);
    seq_trim(kv, dst, 0);
    for (int32_t i = 0; i < nb; i++) to->blocks[i] = from->blocks[i];
    to->len = len;
    return EM_OK;
}

int32_t em_kv_reuse(em_kv *kv, em_seq_id seq, const em_token *tokens, int32_t n) {
    if (seq < 0 || seq >= kv->n_seq) {
        em_error(EM_ERR_INVALID_ARG, "kv: sequence %d outside [0, %d)", seq, kv->n_seq);
        return -1;
    }
    if (kv->seqs[seq].len != 0) {
        em_error(EM_ERR_INVALID_ARG, "kv: prefix reuse needs an empty sequence (%d holds %d positions)", seq,
                 kv->seqs[seq].len);
        return -1;
    }
    kv->prefix_lookups++;
    if (!tokens || n <= 1) return 0;
    em_kv_seq *sq = &kv->seqs[seq];
    const int32_t most = (n - 1) / EM_KV_BLOCK;
    uint64_t parent = HASH_SEED;
    int32_t got = 0;
    for (; got < most; got++) {
        const em_token *t = tokens + (size_t)got * EM_KV_BLOCK;
        const uint64_t h = block_hash(parent, t);
        const int32_t b = index_find(kv, h, parent, t);
        if (b < 0 || !seq_reserve(sq, got + 1)) break;
        block_ref(kv, b);
        sq->blocks[got] = b;
        parent = h;
    }
    sq->len = got * EM_KV_BLOCK;
    kv->prefix_hits += (uint64_t)got;
    return sq->len;
}

int32_t em_kv_n_used(const em_kv *kv) { return kv->n_blocks - kv->n_free - kv->n_cached; }

/* ------------------------------------------------------------ storage */

void em_kv_write(em_kv *kv, int32_t layer, int32_t cell, int32_t h0, int32_t h1, const float *k, const float *v,
                 em_kv_f16_fn to_f16) {
    const int64_t hd = kv->layer[layer].head_dim, hdv = kv->layer[layer].head_dim_v;
    const int64_t k0 = (int64_t)h0 * hd, nk = (int64_t)(h1 - h0) * hd;
    const int64_t v0 = (int64_t)h0 * hdv, nv = (int64_t)(h1 - h0) * hdv;
    /* A head is whole blocks of the storage type, so a slice of heads
     * starts at a byte offset. */
    char *kd = (char *)kv->k[layer] + (size_t)cell * kv->k_row_bytes + em_row_size(kv->type, k0);
    char *vd = (char *)kv->v[layer] + (size_t)cell * kv->v_row_bytes + em_row_size(kv->type, v0);
    const float *ks = k + k0, *vs = v + v0;
    if (kv->type == EM_TYPE_F32) {
        memcpy(kd, ks, (size_t)nk * sizeof(float));
        memcpy(vd, vs, (size_t)nv * sizeof(float));
    } else if (kv->type == EM_TYPE_F16 && to_f16) {
        to_f16((uint16_t *)(void *)kd, ks, nk);
        to_f16((uint16_t *)(void *)vd, vs, nv);
    } else if (kv->type == EM_TYPE_F16) {
        uint16_t *kh = (uint16_t *)(void *)kd, *vh = (uint16_t *)(void *)vd;
        for (int64_t i = 0; i < nk; i++) kh[i] = em_fp32_to_fp16(ks[i]);
        for (int64_t i = 0; i < nv; i++) vh[i] = em_fp32_to_fp16(vs[i]);
    } else {
        em_quantize_row(kv->type, ks, kd, nk, NULL);
        em_quantize_row(kv->type, vs, vd, nv, NULL);
    }
}

const float *em_kv_read(const em_kv *kv, const void *base, size_t row_bytes, int32_t cell,
                        int64_t off, int64_t n, float *tmp) {
    const char *row = (const char *)base + (size_t)cell * row_bytes;
    if (kv->type == EM_TYPE_F32) return (const float *)row + off;
    if (kv->type == EM_TYPE_F16) {
        const uint16_t *h = (const uint16_t *)row + off;
        for (int64_t i = 0; i < n; i++) tmp[i] = em_fp16_to_fp32(h[i]);
        return tmp;
    }
    em_dequantize_row(kv->type, row + em_row_size(kv->type, off), tmp, n);
    return tmp;
}
