/*
 * kv.c - the paged key/value cache: the block pools of the layer groups,
 * sequences' block tables, sharing with copy-on-write, prefix reuse by
 * block hashing, windows that give blocks back, and the storage of rows.
 *
 * A block of a pool is in one of three states:
 *   used    ref > 0: in the table of at least one sequence;
 *   cached  ref == 0 and indexed by its hash: kept for em_kv_reuse, in the
 *           least-recently-used list, evicted when no free block is left;
 *   free    ref == 0 and not indexed: on the free stack.
 * Only full blocks are hashed, and a hashed block is never written: a
 * write goes to a block the writer owns alone (copy-on-write), and a
 * sequence that trims a block it owns alone takes the hash away first.
 *
 * The hash of block i of a sequence is chained over the tokens of its
 * positions 0 .. 16 i + 15 and kept in the sequence (em_kv_seq.chain), so
 * that every group indexes its block i under the same value, also after
 * the group gave block i - 1 back.  A block that leaves a window while
 * hashed stays cached: a later sequence with the same prefix, or this one
 * trimmed back, finds it again.
 */
#include "kv/kv.h"
#include "quant/quant.h"

#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define EM_KV_HASHED 1u  /* hash and parent are valid: the block is full */
#define EM_KV_INDEXED 2u /* the block is in the hash index               */

/* plan_state bits while placing a batch. */
#define PLAN_TOUCHED 1u               /* plan_len holds the planned length */
#define PLAN_FAILED 2u                /* a row failed: so do its later rows */
#define PLAN_OWNS(g) (4u << (g))      /* group g's last block is writable in place */

#define HASH_SEED 0x9e3779b97f4a7c15ull

/* ------------------------------------------------------------- spans */

/* The first position a row at p sees in a group. */
static em_pos span_lo(const em_kv_pool *pl, em_pos p) {
    if (pl->span == EM_KV_WINDOW) return p - pl->size + 1 > 0 ? p - pl->size + 1 : 0;
    if (pl->span == EM_KV_CHUNK) return p - p % pl->size;
    return 0;
}

/* The first block a sequence of length len must hold in a group: the one
 * with the first position its next row (at len) sees. */
static int32_t first_needed(const em_kv_pool *pl, em_pos len) { return span_lo(pl, len) / EM_KV_BLOCK; }

static int32_t n_blocks_of(em_pos len) { return (len + EM_KV_BLOCK - 1) / EM_KV_BLOCK; }

/* ------------------------------------------------------------- pools */

/* The rows of a pool live in one anonymous mapping, aligned to 2 MiB and
 * marked for huge pages.  Its pages are zero and come in as blocks are
 * first written.  With 4 KiB pages every fresh block cost a page fault per
 * 4 KiB of each layer's keys and values, taken inside the forward pass
 * where the other threads wait for it at the next barrier: a server
 * generating for 16 sequences took about 1.5 faults per token, and a
 * fault is dear in a virtual machine.  With huge pages it is one fault
 * per 2 MiB of a layer's rows, and attention walks fewer TLB entries.
 * The hint may go unheeded (transparent huge pages off): nothing else
 * changes.  Returns the mapping, its length in *len, or NULL. */
#define EM_KV_HUGE ((size_t)2 << 20)

static void *rows_map(size_t bytes, size_t *len) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    bytes = (bytes + page - 1) / page * page;
    const size_t want = bytes + EM_KV_HUGE;
    uint8_t *p = mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    /* Keep the aligned part, hand back the rest. */
    const size_t head = (size_t)(-(uintptr_t)p & (EM_KV_HUGE - 1));
    if (head > 0) munmap(p, head);
    if (want - head > bytes) munmap(p + head + bytes, want - head - bytes);
#ifdef MADV_HUGEPAGE
    (void)madvise(p + head, bytes, MADV_HUGEPAGE); /* a hint: failure changes nothing */
#endif
    *len = bytes;
    return p + head;
}

static void pool_free(em_kv_pool *pl) {
    if (pl->rows) munmap(pl->rows, pl->rows_bytes);
    free(pl->k);
    free(pl->v);
    free(pl->ref);
    free(pl->hash);
    free(pl->parent);
    free(pl->flags);
    free(pl->tokens);
    free(pl->free_stack);
    free(pl->lru_prev);
    free(pl->lru_next);
    free(pl->bucket);
    free(pl->hnext);
    free(pl->touched);
    memset(pl, 0, sizeof *pl);
}

static bool pool_init(em_kv_pool *pl, int32_t nb, int32_t n_layer, size_t k_row, size_t v_row) {
    pl->n_blocks = nb;
    pl->n_cells = nb * EM_KV_BLOCK;
    pl->n_layer = n_layer;
    pl->n_buckets = 1;
    while (pl->n_buckets < (uint32_t)nb) pl->n_buckets <<= 1;
    const size_t n = (size_t)nb;
    pl->k = calloc((size_t)n_layer, sizeof *pl->k);
    pl->v = calloc((size_t)n_layer, sizeof *pl->v);
    pl->ref = calloc(n, sizeof *pl->ref);
    pl->hash = calloc(n, sizeof *pl->hash);
    pl->parent = calloc(n, sizeof *pl->parent);
    pl->flags = calloc(n, sizeof *pl->flags);
    pl->tokens = malloc((size_t)pl->n_cells * sizeof *pl->tokens);
    pl->free_stack = malloc(n * sizeof *pl->free_stack);
    pl->lru_prev = malloc(n * sizeof *pl->lru_prev);
    pl->lru_next = malloc(n * sizeof *pl->lru_next);
    pl->bucket = malloc((size_t)pl->n_buckets * sizeof *pl->bucket);
    pl->hnext = malloc(n * sizeof *pl->hnext);
    pl->touched = calloc((size_t)2 * (size_t)(n_layer > 0 ? n_layer : 1), sizeof *pl->touched);
    if (!pl->k || !pl->v || !pl->ref || !pl->hash || !pl->parent || !pl->flags || !pl->tokens ||
        !pl->free_stack || !pl->lru_prev || !pl->lru_next || !pl->bucket || !pl->hnext || !pl->touched)
        return false;
    pl->k_block = EM_KV_BLOCK * k_row;
    pl->v_block = EM_KV_BLOCK * v_row;
    /* Each layer's keys, then its values, every array starting on a
     * 64-byte line. */
    const size_t cells = (size_t)pl->n_cells, room = SIZE_MAX / 4 - 2 * EM_KV_HUGE;
    if ((k_row && cells > room / k_row) || (v_row && cells > room / v_row)) return false;
    const size_t kb = ((size_t)pl->n_cells * k_row + 63) & ~(size_t)63;
    const size_t vb = ((size_t)pl->n_cells * v_row + 63) & ~(size_t)63;
    if (n_layer > 0 && kb + vb > room / (size_t)n_layer) return false;
    if (!(pl->rows = rows_map((size_t)n_layer * (kb + vb), &pl->rows_bytes))) return false;
    for (int32_t i = 0; i < n_layer; i++) {
        pl->k[i] = (uint8_t *)pl->rows + (size_t)i * (kb + vb);
        pl->v[i] = (uint8_t *)pl->k[i] + kb;
    }
    /* The free stack pops block 0 first, so that a lone sequence fills the
     * pool in order. */
    for (int32_t i = 0; i < nb; i++) pl->free_stack[i] = nb - 1 - i;
    pl->n_free = nb;
    for (int32_t i = 0; i < pl->n_cells; i++) pl->tokens[i] = -1;
    for (uint32_t i = 0; i < pl->n_buckets; i++) pl->bucket[i] = -1;
    pl->lru_head = pl->lru_tail = -1;
    return true;
}

/* A layer's shape is valid: whole heads fit the rows, and its rows come
 * from a layer that owns them. */
static bool layer_ok(const em_kv_layer *layers, int32_t i, int64_t k_width, int64_t v_width) {
    const em_kv_layer *l = &layers[i];
    return l->head_dim > 0 && l->head_dim_v > 0 && l->head_dim <= k_width && l->head_dim_v <= v_width &&
           l->src >= 0 && l->src <= i && layers[l->src].src == l->src;
}

/* The span of layer l.  A layer with both a window and chunks sees their
 * intersection, which either alone keeps: the smaller one is kept. */
static void layer_span(const em_kv_layout *lo, int32_t l, em_kv_span *span, int32_t *size) {
    const int32_t w = lo && lo->window ? lo->window[l] : 0, c = lo && lo->chunk ? lo->chunk[l] : 0;
    const bool chunked = c > 0 && (w <= 0 || c <= w);
    *span = chunked ? EM_KV_CHUNK : w > 0 ? EM_KV_WINDOW : EM_KV_GLOBAL;
    *size = chunked ? c : w > 0 ? w : 0;
}

/* The span that keeps what both a and b see: the same, the larger window,
 * else everything. */
static void span_merge(em_kv_span *sp, int32_t *sz, em_kv_span b, int32_t bz) {
    if (*sp == b && *sz == bz) return;
    if (*sp == EM_KV_WINDOW && b == EM_KV_WINDOW) {
        *sz = EM_MAX(*sz, bz);
        return;
    }
    *sp = EM_KV_GLOBAL;
    *sz = 0;
}

/* The span of the rows layer l owns: its own merged with those of the
 * layers that read them (-1 size for a layer that owns none). */
static void owner_span(const em_kv *kv, const em_kv_layout *lo, int32_t l, em_kv_span *span, int32_t *size) {
    layer_span(lo, l, span, size);
    for (int32_t j = l + 1; j < kv->n_layer; j++)
        if (kv->layer[j].src == l) {
            em_kv_span s2;
            int32_t z2;
            layer_span(lo, j, &s2, &z2);
            span_merge(span, size, s2, z2);
        }
}

/* Sorts the layers into groups, one per distinct span.  Group 0 keeps the
 * most: the global layers', else the widest span's.  With more distinct
 * spans than groups, group 0 is global and the spans that find no group
 * keep everything there (always exact, only larger). */
static void assign_groups(em_kv *kv, const em_kv_layout *lo) {
    em_kv_span span[EM_KV_MAX_GROUPS + 1] = {EM_KV_GLOBAL};
    int32_t size[EM_KV_MAX_GROUPS + 1] = {0}, n = 0;
    bool global = false;
    for (int32_t l = 0; l < kv->n_layer; l++) {
        em_kv_span sp;
        int32_t sz;
        if (kv->layer[l].src != l) continue;
        owner_span(kv, lo, l, &sp, &sz);
        if (sp == EM_KV_GLOBAL) {
            global = true;
            continue;
        }
        int32_t g = 0;
        while (g < n && !(span[g] == sp && size[g] == sz)) g++;
        if (g == n && n <= EM_KV_MAX_GROUPS) {
            span[n] = sp;
            size[n++] = sz;
        }
        if (g == n) global = true; /* no group left for this span */
    }
    if (global || n > EM_KV_MAX_GROUPS) {
        /* Group 0 global, then as many spans as fit. */
        n = EM_MIN(n, EM_KV_MAX_GROUPS - 1);
        memmove(span + 1, span, (size_t)n * sizeof *span);
        memmove(size + 1, size, (size_t)n * sizeof *size);
        span[0] = EM_KV_GLOBAL;
        size[0] = 0;
        n++;
    } else {
        /* The widest span first. */
        int32_t w = 0;
        for (int32_t g = 1; g < n; g++)
            if (size[g] > size[w]) w = g;
        em_kv_span ts = span[0];
        int32_t tz = size[0];
        span[0] = span[w];
        size[0] = size[w];
        span[w] = ts;
        size[w] = tz;
    }
    kv->n_groups = n;
    for (int32_t g = 0; g < n; g++) {
        kv->pools[g].span = span[g];
        kv->pools[g].size = size[g];
    }
    for (int32_t l = 0; l < kv->n_layer; l++) {
        em_kv_span sp;
        int32_t sz;
        if (kv->layer[l].src != l) {
            kv->group[l] = kv->group[kv->layer[l].src]; /* an earlier layer */
            continue;
        }
        owner_span(kv, lo, l, &sp, &sz);
        int32_t g = 0;
        while (g < n && !(span[g] == sp && size[g] == sz)) g++;
        kv->group[l] = (uint8_t)(g < n ? g : 0);
    }
}

em_status em_kv_init_layout(em_kv *kv, int32_t n_positions, int32_t n_seq, int32_t n_layer, int64_t k_width,
                            int64_t v_width, em_type type, int32_t head_dim, int32_t head_dim_v,
                            const em_kv_layout *layout) {
    memset(kv, 0, sizeof *kv);
    const em_kv_layer *layers = layout ? layout->layers : NULL;
    if (layers) {
        head_dim = layers[0].head_dim;
        head_dim_v = layers[0].head_dim_v;
    }
    bool shape_ok = n_positions > 0 && n_positions <= (1 << 28) && n_seq > 0 && n_seq <= EM_KV_MAX_SEQ &&
                    n_layer > 0 && n_layer <= (1 << 16) && k_width > 0 && v_width > 0 && head_dim > 0 &&
                    head_dim_v > 0 && k_width % head_dim == 0 && v_width % head_dim_v == 0;
    for (int32_t i = 0; shape_ok && layers && i < n_layer; i++) shape_ok = layer_ok(layers, i, k_width, v_width);
    if (!shape_ok) return em_error(EM_ERR_INVALID_ARG, "kv: bad cache shape");
    if (layout)
        for (int32_t l = 0; l < n_layer; l++)
            if ((layout->window && layout->window[l] < 0) || (layout->chunk && layout->chunk[l] < 0))
                return em_error(EM_ERR_INVALID_ARG, "kv: layer %d: a negative window or chunk", l);
    const em_type_traits *tr = em_get_type_traits(type);
    if (!tr || !tr->can_quantize || !tr->can_dequant || type == EM_TYPE_Q8_K || type == EM_TYPE_Q8_1)
        return em_error(EM_ERR_UNSUPPORTED, "kv: %s cannot be a cache type (use f16, f32 or q8_0)",
                        em_type_name(type) ? em_type_name(type) : "this type");
    for (int32_t i = 0; i < n_layer; i++) {
        const int32_t hd = layers ? layers[i].head_dim : head_dim, hdv = layers ? layers[i].head_dim_v : head_dim_v;
        if (hd % tr->block_size || hdv % tr->block_size)
            return em_error(EM_ERR_UNSUPPORTED,
                            "kv: a %s cache needs head sizes that are multiples of %lld (the model's are %d/%d)",
                            tr->name, (long long)tr->block_size, hd, hdv);
    }
    const int32_t nb = n_blocks_of(n_positions);
    kv->n_pos = nb * EM_KV_BLOCK;
    kv->n_seq = n_seq;
    kv->n_layer = n_layer;
    kv->type = type;
    kv->head_dim = head_dim;
    kv->head_dim_v = head_dim_v;
    kv->k_width = k_width;
    kv->v_width = v_width;
    kv->k_row_bytes = em_row_size(type, k_width);
    kv->v_row_bytes = em_row_size(type, v_width);

    kv->layer = malloc((size_t)n_layer * sizeof *kv->layer);
    kv->k = calloc((size_t)n_layer, sizeof *kv->k);
    kv->v = calloc((size_t)n_layer, sizeof *kv->v);
    kv->group = calloc((size_t)n_layer, sizeof *kv->group);
    kv->seqs = calloc((size_t)n_seq, sizeof *kv->seqs);
    kv->plan_len = calloc((size_t)n_seq, sizeof *kv->plan_len);
    kv->plan_state = calloc((size_t)n_seq, sizeof *kv->plan_state);
    kv->plan_err = calloc((size_t)n_seq, sizeof *kv->plan_err);
    kv->k_slice = calloc((size_t)n_layer, sizeof *kv->k_slice);
    kv->v_slice = calloc((size_t)n_layer, sizeof *kv->v_slice);
    if (!kv->layer || !kv->k || !kv->v || !kv->group || !kv->seqs || !kv->plan_len || !kv->plan_state ||
        !kv->plan_err || !kv->k_slice || !kv->v_slice)
        goto nomem;
    for (int32_t i = 0; i < n_layer; i++) kv->layer[i] = layers ? layers[i] : (em_kv_layer){head_dim, head_dim_v, i};
    /* A sharing layer reads its source's rows, so its slices are the
     * source's (of the same head sizes, as attention reads them). */
    for (int32_t i = 0; i < n_layer; i++) {
        const em_kv_layer *own = &kv->layer[kv->layer[i].src];
        kv->k_slice[i] = em_row_size(type, own->head_dim);
        kv->v_slice[i] = em_row_size(type, own->head_dim_v);
    }
    assign_groups(kv, layout);
    const int64_t n_batch = layout && layout->n_batch > 0 ? layout->n_batch : n_positions;
    int32_t slot[EM_KV_MAX_GROUPS] = {0};
    for (int32_t l = 0; l < n_layer; l++)
        if (kv->layer[l].src == l) kv->pools[kv->group[l]].n_layer++;
    for (int32_t g = 0; g < kv->n_groups; g++) {
        em_kv_pool *pl = &kv->pools[g];
        int64_t want = nb;
        if (pl->span != EM_KV_GLOBAL) {
            /* Every sequence's window (at most ceil(size / 16) + 1 blocks)
             * plus the rows one batch adds: a sequence given k rows spans
             * size - 1 + k positions, at most ceil((k - 1) / 16) blocks
             * more, which over a batch sums to at most
             * ceil(n_batch / 16) + min(n_seq, n_batch). */
            want = (int64_t)n_seq * (n_blocks_of(pl->size) + 1) + (n_batch + EM_KV_BLOCK - 1) / EM_KV_BLOCK +
                   EM_MIN((int64_t)n_seq, n_batch);
            if (want > nb) want = nb;
        }
        if (!pool_init(pl, (int32_t)want, pl->n_layer, kv->k_row_bytes, kv->v_row_bytes)) goto nomem;
    }
    kv->n_blocks = kv->pools[0].n_blocks;
    kv->n_cells = kv->pools[0].n_cells;
    for (int32_t l = 0; l < n_layer; l++) {
        if (kv->layer[l].src != l) {
            kv->k[l] = kv->k[kv->layer[l].src];
            kv->v[l] = kv->v[kv->layer[l].src];
            continue;
        }
        em_kv_pool *pl = &kv->pools[kv->group[l]];
        kv->k[l] = pl->k[slot[kv->group[l]]];
        kv->v[l] = pl->v[slot[kv->group[l]]++];
    }
    for (int32_t s = 0; s < n_seq; s++)
        for (int32_t g = 0; g < EM_KV_MAX_GROUPS; g++) kv->seqs[s].first[g] = 0;
    return EM_OK;
nomem:
    em_kv_free(kv);
    return em_error(EM_ERR_NOMEM, "kv: cannot allocate a cache of %d positions", n_positions);
}

em_status em_kv_init(em_kv *kv, int32_t n_positions, int32_t n_seq, int32_t n_layer, int64_t k_width,
                     int64_t v_width, em_type type, int32_t head_dim, int32_t head_dim_v) {
    return em_kv_init_layout(kv, n_positions, n_seq, n_layer, k_width, v_width, type, head_dim, head_dim_v, NULL);
}

em_status em_kv_init_layers(em_kv *kv, int32_t n_positions, int32_t n_seq, int32_t n_layer, int64_t k_width,
                            int64_t v_width, em_type type, const em_kv_layer *layers) {
    if (!layers) {
        memset(kv, 0, sizeof *kv);
        return em_error(EM_ERR_INVALID_ARG, "kv: bad cache shape");
    }
    const em_kv_layout lo = {.layers = layers};
    return em_kv_init_layout(kv, n_positions, n_seq, n_layer, k_width, v_width, type, 0, 0, &lo);
}

void em_kv_free(em_kv *kv) {
    for (int32_t g = 0; g < EM_KV_MAX_GROUPS; g++) pool_free(&kv->pools[g]);
    if (kv->seqs)
        for (int32_t i = 0; i < kv->n_seq; i++) {
            for (int32_t g = 0; g < EM_KV_MAX_GROUPS; g++) free(kv->seqs[i].blocks[g]);
            free(kv->seqs[i].chain);
            free(kv->seqs[i].toks);
        }
    free(kv->layer);
    free(kv->k_slice);
    free(kv->v_slice);
    free(kv->k);
    free(kv->v);
    free(kv->group);
    free(kv->seqs);
    free(kv->plan_len);
    free(kv->plan_state);
    free(kv->plan_err);
    memset(kv, 0, sizeof *kv);
}

/* ------------------------------------------------------------ hashing */

/* The hash of a block of tokens that follows a block hashed `parent`
 * (HASH_SEED for the first block of a sequence); 0 when a token is
 * unknown. */
static uint64_t block_hash(uint64_t parent, const em_token *t) {
    uint64_t h = parent;
    for (int i = 0; i < EM_KV_BLOCK; i++) {
        if (t[i] < 0) return 0;
        h ^= (uint64_t)(uint32_t)t[i] + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
        h *= 0xff51afd7ed558ccdull;
        h ^= h >> 33;
    }
    return h ? h : 1;
}

/* The hash before block i of a sequence. */
static uint64_t parent_of(const em_kv_seq *sq, int32_t i) { return i > 0 ? sq->chain[i - 1] : HASH_SEED; }

static uint32_t bucket_of(const em_kv_pool *pl, uint64_t h) {
    return (uint32_t)(h ^ (h >> 32)) & (pl->n_buckets - 1);
}

/* The indexed block with this hash, parent and tokens, or -1. */
static int32_t index_find(const em_kv_pool *pl, uint64_t h, uint64_t parent, const em_token *t) {
    if (h == 0) return -1;
    for (int32_t b = pl->bucket[bucket_of(pl, h)]; b >= 0; b = pl->hnext[b])
        if (pl->hash[b] == h && pl->parent[b] == parent &&
            memcmp(pl->tokens + (size_t)b * EM_KV_BLOCK, t, EM_KV_BLOCK * sizeof *t) == 0)
            return b;
    return -1;
}

static void index_remove(em_kv_pool *pl, int32_t b) {
    if (!(pl->flags[b] & EM_KV_INDEXED)) return;
    int32_t *link = &pl->bucket[bucket_of(pl, pl->hash[b])];
    while (*link != b) link = &pl->hnext[*link];
    *link = pl->hnext[b];
    pl->flags[b] &= (uint8_t)~EM_KV_INDEXED;
}

/* Block b (full now) learns its hash h (0: unknown tokens, never reused);
 * the first block with a given prefix is the one the index keeps. */
static void block_seal(em_kv_pool *pl, int32_t b, uint64_t h, uint64_t parent) {
    if (h == 0) return;
    const em_token *t = pl->tokens + (size_t)b * EM_KV_BLOCK;
    pl->hash[b] = h;
    pl->parent[b] = parent;
    pl->flags[b] |= EM_KV_HASHED;
    if (index_find(pl, h, parent, t) >= 0) return;
    uint32_t k = bucket_of(pl, h);
    pl->hnext[b] = pl->bucket[k];
    pl->bucket[k] = b;
    pl->flags[b] |= EM_KV_INDEXED;
}

/* Block b will be written over: it forgets its hash. */
static void block_unseal(em_kv_pool *pl, int32_t b) {
    index_remove(pl, b);
    pl->flags[b] = 0;
}

/* --------------------------------------------------- block life cycle */

static void lru_unlink(em_kv_pool *pl, int32_t b) {
    int32_t p = pl->lru_prev[b], n = pl->lru_next[b];
    if (p >= 0) pl->lru_next[p] = n; else pl->lru_head = n;
    if (n >= 0) pl->lru_prev[n] = p; else pl->lru_tail = p;
    pl->n_cached--;
}

/* Brings in the pages of the blocks after block `frontier` - 1, the
 * highest taken so far, a different distance ahead in each layer's keys
 * and values.  Each of those arrays grows by a block at a time, all at
 * once, so without this they all crossed into a fresh 2 MiB huge page in
 * the same step: 2 x n_layer page faults, each clearing 2 MiB, inside
 * one forward pass (on the serve model twelve of them added ~25-30 ms to
 * the step a prompt arrived in, every sixteenth request).  Writing a zero
 * into every 4 KiB page up to frontier x block + (r + 1) / (2 n_layer) x
 * 2 MiB for array r spreads those faults out, one per ~2 MiB / (2
 * n_layer) of growth, and costs at most 2 MiB of each array early.  Only
 * bytes past every block ever taken are written, and they hold zeros, so
 * nothing changes but when the pages come in.  Called on the engine
 * thread while it places rows, before the forward pass. */
static void pool_touch(em_kv_pool *pl) {
    const int32_t nr = 2 * pl->n_layer;
    for (int32_t r = 0; r < nr; r++) {
        const size_t bb = r & 1 ? pl->v_block : pl->k_block;
        volatile uint8_t *base = (uint8_t *)(r & 1 ? pl->v[r / 2] : pl->k[r / 2]);
        if (bb == 0 || !base) continue;
        const size_t len = (size_t)pl->n_blocks * bb;
        size_t want = (size_t)pl->frontier * bb + (size_t)(r + 1) * EM_KV_HUGE / (size_t)nr;
        if (want > len) want = len;
        size_t t = pl->touched[r];
        for (; t < want; t += 4096) base[t] = 0;
        pl->touched[r] = t;
    }
}

/* A block for new rows: a free one, else the least recently used cached
 * one, which leaves the index.  -1 when every block is used. */
static int32_t block_take(em_kv_pool *pl) {
    int32_t b;
    if (pl->n_free > 0) {
        b = pl->free_stack[--pl->n_free];
        if (b >= pl->frontier) {
            pl->frontier = b + 1;
            pool_touch(pl);
        }
    } else if (pl->lru_head >= 0) {
        b = pl->lru_head;
        lru_unlink(pl, b);
        block_unseal(pl, b);
    } else {
        return -1;
    }
    pl->ref[b] = 1;
    pl->flags[b] = 0;
    for (int i = 0; i < EM_KV_BLOCK; i++) pl->tokens[(size_t)b * EM_KV_BLOCK + i] = -1;
    return b;
}

/* Adds a reference to b (which may be cached). */
static void block_ref(em_kv_pool *pl, int32_t b) {
    if (pl->ref[b] == 0) lru_unlink(pl, b);
    pl->ref[b]++;
}

/* Drops a reference to b: at zero it is cached while indexed, else free. */
static void block_unref(em_kv_pool *pl, int32_t b) {
    if (--pl->ref[b] > 0) return;
    if (pl->flags[b] & EM_KV_INDEXED) {
        pl->lru_prev[b] = pl->lru_tail;
        pl->lru_next[b] = -1;
        if (pl->lru_tail >= 0) pl->lru_next[pl->lru_tail] = b; else pl->lru_head = b;
        pl->lru_tail = b;
        pl->n_cached++;
    } else {
        pl->flags[b] = 0;
        pl->free_stack[pl->n_free++] = b;
    }
}

/* Copies rows [0, n) of one array's block src into its block dst: the
 * first n slices of each head's run (as many runs as fit a row, so also
 * the unused ones of a layer whose heads do not fill the rows). */
static void block_copy_rows(char *base, size_t row, size_t slice, int32_t dst, int32_t src, int32_t n) {
    char *d = base + (size_t)dst * EM_KV_BLOCK * row;
    const char *s = base + (size_t)src * EM_KV_BLOCK * row;
    for (size_t h = 0; h < row / slice; h++)
        memcpy(d + h * EM_KV_BLOCK * slice, s + h * EM_KV_BLOCK * slice, (size_t)n * slice);
}

/* Copies rows [0, n) of block src into block dst, every layer of the group. */
static void block_copy(const em_kv *kv, em_kv_pool *pl, int32_t dst, int32_t src, int32_t n) {
    const int32_t g = (int32_t)(pl - kv->pools);
    for (int32_t l = 0; l < kv->n_layer; l++) {
        if (kv->layer[l].src != l || kv->group[l] != g) continue;
        block_copy_rows(kv->k[l], kv->k_row_bytes, kv->k_slice[l], dst, src, n);
        block_copy_rows(kv->v[l], kv->v_row_bytes, kv->v_slice[l], dst, src, n);
    }
    const size_t d = (size_t)dst * EM_KV_BLOCK, s = (size_t)src * EM_KV_BLOCK;
    memcpy(pl->tokens + d, pl->tokens + s, (size_t)n * sizeof *pl->tokens);
}

/* --------------------------------------------------------- sequences */

/* Makes room for n entries in a sequence's tables. */
static bool seq_reserve(em_kv_seq *sq, int32_t n) {
    if (n <= sq->cap) return true;
    int32_t cap = sq->cap ? sq->cap * 2 : 8;
    while (cap < n) cap *= 2;
    for (int32_t g = 0; g < EM_KV_MAX_GROUPS; g++) {
        int32_t *nb = realloc(sq->blocks[g], (size_t)cap * sizeof *nb);
        if (!nb) return false;
        sq->blocks[g] = nb;
    }
    uint64_t *ch = realloc(sq->chain, (size_t)cap * sizeof *ch);
    if (!ch) return false;
    sq->chain = ch;
    em_token *tk = realloc(sq->toks, (size_t)cap * EM_KV_BLOCK * sizeof *tk);
    if (!tk) return false;
    sq->toks = tk;
    /* Only now is every array cap long. */
    for (int32_t i = sq->cap; i < cap; i++) sq->chain[i] = 0;
    sq->cap = cap;
    return true;
}

/* Gives back group g's blocks of sequence s in [i0, i1). */
static void seq_release(em_kv *kv, em_seq_id s, int32_t g, int32_t i0, int32_t i1) {
    em_kv_seq *sq = &kv->seqs[s];
    for (int32_t i = EM_MAX(i0, sq->first[g]); i < i1; i++) {
        block_unref(&kv->pools[g], sq->blocks[g][i]);
        sq->blocks[g][i] = -1;
    }
}

/* Makes every group of sequence s hold exactly the blocks its next row
 * sees: gives back those before, and finds again by hash those given back
 * earlier that it needs now (after a trim or a copy).  Returns -1 when
 * done, else the first block index that no group can provide: the
 * sequence must then be cut back to that block's start. */
static int32_t seq_fit(em_kv *kv, em_seq_id s) {
    em_kv_seq *sq = &kv->seqs[s];
    const int32_t nb = n_blocks_of(sq->len);
    int32_t missing = -1;
    for (int32_t g = 0; g < kv->n_groups; g++) {
        em_kv_pool *pl = &kv->pools[g];
        const int32_t want = EM_MIN(first_needed(pl, sq->len), nb);
        if (sq->first[g] > nb) sq->first[g] = nb;
        if (sq->first[g] < want) {
            seq_release(kv, s, g, sq->first[g], want);
            sq->first[g] = want;
        }
        /* Blocks [want, first) were given back: take them from the cache,
         * the last first so that a failure keeps the run after it. */
        while (sq->first[g] > want) {
            const int32_t i = sq->first[g] - 1;
            const int32_t b = index_find(pl, sq->chain[i], parent_of(sq, i), sq->toks + (size_t)i * EM_KV_BLOCK);
            if (b < 0) {
                if (i > missing) missing = i;
                break;
            }
            block_ref(pl, b);
            sq->blocks[g][i] = b;
            sq->first[g] = i;
        }
    }
    return missing;
}

/* Trims sequence s to its first len positions (or fewer: see em_kv_drop). */
static void seq_trim(em_kv *kv, em_seq_id s, em_pos len) {
    em_kv_seq *sq = &kv->seqs[s];
    if (len > sq->len) len = sq->len;
    for (;;) {
        const int32_t keep = n_blocks_of(len), had = n_blocks_of(sq->len);
        for (int32_t g = 0; g < kv->n_groups; g++) {
            seq_release(kv, s, g, keep, had);
            if (sq->first[g] > keep) sq->first[g] = keep;
        }
        sq->len = len;
        const int32_t missing = seq_fit(kv, s);
        if (missing < 0) break;
        len = missing * EM_KV_BLOCK;
    }
    /* A block cut in the middle will be written over: if this sequence
     * owns it alone, its hash goes (a shared one is copied first); and
     * the hash the sequence keeps for it is no longer its own. */
    if (len % EM_KV_BLOCK) {
        const int32_t last = len / EM_KV_BLOCK;
        for (int32_t g = 0; g < kv->n_groups; g++) {
            const int32_t b = sq->blocks[g][last];
            if (kv->pools[g].ref[b] == 1) block_unseal(&kv->pools[g], b);
        }
    }
    for (int32_t i = len / EM_KV_BLOCK; i < sq->cap; i++) sq->chain[i] = 0;
    if (len == 0)
        for (int32_t g = 0; g < EM_KV_MAX_GROUPS; g++) sq->first[g] = 0;
}

/* ------------------------------------------------------------ placing */

/* Checks row i against the plan, and books the blocks it needs. */
static em_status plan_row(em_kv *kv, em_seq_id s, em_pos p, int32_t *avail, int32_t i) {
    uint8_t *ps = &kv->plan_state[s];
    if (*ps & PLAN_FAILED) return kv->plan_err[s];
    if (!(*ps & PLAN_TOUCHED)) {
        const em_kv_seq *sq = &kv->seqs[s];
        *ps = PLAN_TOUCHED;
        kv->plan_len[s] = sq->len;
        if (sq->len % EM_KV_BLOCK)
            for (int32_t g = 0; g < kv->n_groups; g++)
                if (kv->pools[g].ref[sq->blocks[g][sq->len / EM_KV_BLOCK]] == 1) *ps |= (uint8_t)PLAN_OWNS(g);
    }
    if (p != kv->plan_len[s])
        return em_error(EM_ERR_INVALID_ARG, "kv: row %d: sequence %d is at position %d, not %d", i, s,
                        kv->plan_len[s], p);
    if (p >= kv->n_pos)
        return em_error(EM_ERR_CONTEXT_FULL, "kv: row %d: position %d is beyond the cache (%d positions)", i, p,
                        kv->n_pos);
    for (int32_t g = 0; g < kv->n_groups; g++)
        if ((p % EM_KV_BLOCK == 0 || !(*ps & PLAN_OWNS(g))) && avail[g] == 0)
            return em_error(EM_ERR_CONTEXT_FULL, "kv: the cache is full (%d blocks of %d positions%s)",
                            kv->pools[g].n_blocks, EM_KV_BLOCK, g > 0 ? " for the windowed layers" : "");
    for (int32_t g = 0; g < kv->n_groups; g++)
        if (p % EM_KV_BLOCK == 0 || !(*ps & PLAN_OWNS(g))) {
            avail[g]--;
            *ps |= (uint8_t)PLAN_OWNS(g);
        }
    kv->plan_len[s] = p + 1;
    return EM_OK;
}

/* Places row p of sequence s in group g (checked by plan_row). */
static int32_t place_in(em_kv *kv, int32_t g, em_kv_seq *sq, em_pos p, em_token t) {
    em_kv_pool *pl = &kv->pools[g];
    int32_t *tab = sq->blocks[g];
    const int32_t bi = p / EM_KV_BLOCK, off = p % EM_KV_BLOCK;
    if (off == 0) {
        tab[bi] = block_take(pl);
    } else if (pl->ref[tab[bi]] > 1) {
        /* Copy-on-write: the rows before p go into a block of our own. */
        const int32_t old = tab[bi], nb = block_take(pl);
        block_copy(kv, pl, nb, old, off);
        block_unref(pl, old);
        tab[bi] = nb;
    }
    const int32_t b = tab[bi];
    pl->tokens[(size_t)b * EM_KV_BLOCK + off] = t;
    if (off == EM_KV_BLOCK - 1) block_seal(pl, b, sq->chain[bi], parent_of(sq, bi));
    return b * EM_KV_BLOCK + off;
}

/* Places one row already checked by plan_row; false when out of memory. */
static bool place_row(em_kv *kv, em_seq_id s, em_pos p, em_token t, int32_t *cell) {
    em_kv_seq *sq = &kv->seqs[s];
    const int32_t bi = p / EM_KV_BLOCK, off = p % EM_KV_BLOCK;
    if (!seq_reserve(sq, bi + 1)) return false;
    sq->toks[p] = t;
    /* A full block's hash chains on the one before it. */
    if (off == EM_KV_BLOCK - 1)
        sq->chain[bi] = bi == 0 || sq->chain[bi - 1] ? block_hash(parent_of(sq, bi), sq->toks + (size_t)bi * EM_KV_BLOCK)
                                                     : 0;
    for (int32_t g = 0; g < kv->n_groups; g++) {
        const int32_t c = place_in(kv, g, sq, p, t);
        if (g == 0) *cell = c;
    }
    sq->len = p + 1;
    return true;
}

em_status em_kv_place(em_kv *kv, int32_t n, const em_seq_id *seq, const em_pos *pos, const em_token *tok,
                      int32_t *cells, em_status *status) {
    /* Plan: every row is checked and its blocks booked against the free
     * and cached blocks of every group, changing nothing. */
    int32_t avail[EM_KV_MAX_GROUPS], n_ok = 0;
    for (int32_t g = 0; g < kv->n_groups; g++) avail[g] = kv->pools[g].n_free + kv->pools[g].n_cached;
    em_status first = EM_OK;
    for (int32_t i = 0; i < n; i++) {
        const em_seq_id s = seq[i];
        em_status st;
        if (s < 0) {
            st = EM_ERR_INVALID_ARG; /* left out by the caller */
        } else if (s >= kv->n_seq) {
            st = em_error(EM_ERR_INVALID_ARG, "kv: row %d: sequence %d outside [0, %d)", i, s, kv->n_seq);
        } else {
            st = plan_row(kv, s, pos[i], avail, i);
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

void em_kv_settle(em_kv *kv, int32_t n, const em_seq_id *seq) {
    if (kv->n_groups == 1 && kv->pools[0].span == EM_KV_GLOBAL) return;
    for (int32_t i = 0; i < n; i++) {
        const em_seq_id s = seq[i];
        if (s < 0 || s >= kv->n_seq) continue;
        em_kv_seq *sq = &kv->seqs[s];
        for (int32_t g = 0; g < kv->n_groups; g++) {
            const int32_t want = EM_MIN(first_needed(&kv->pools[g], sq->len), n_blocks_of(sq->len));
            if (sq->first[g] < want) {
                seq_release(kv, s, g, sq->first[g], want);
                sq->first[g] = want;
            }
        }
    }
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
        if (p0 < kv->seqs[s].len && (p1 < 0 || p1 >= kv->seqs[s].len)) seq_trim(kv, s, p0);
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
    const int32_t nb = n_blocks_of(len);
    em_kv_seq *to = &kv->seqs[dst];
    if (!seq_reserve(to, nb)) return em_error(EM_ERR_NOMEM, "kv: out of memory for a block table");
    /* Reference the new blocks before dropping the old ones, which may be
     * the same. */
    int32_t first[EM_KV_MAX_GROUPS];
    for (int32_t g = 0; g < kv->n_groups; g++) {
        first[g] = EM_MIN(from->first[g], nb);
        for (int32_t i = first[g]; i < nb; i++) block_ref(&kv->pools[g], from->blocks[g][i]);
    }
    seq_trim(kv, dst, 0);
    for (int32_t g = 0; g < kv->n_groups; g++) {
        for (int32_t i = 0; i < nb; i++) to->blocks[g][i] = i < first[g] ? -1 : from->blocks[g][i];
        to->first[g] = first[g];
    }
    memcpy(to->chain, from->chain, (size_t)nb * sizeof *to->chain);
    memcpy(to->toks, from->toks, (size_t)len * sizeof *to->toks);
    to->len = len;
    if (len < from->len) {
        /* The part of a block past p1 is not dst's: its hash is not dst's
         * either; and the windows of a shorter dst reach further back. */
        if (len % EM_KV_BLOCK) to->chain[len / EM_KV_BLOCK] = 0;
        int32_t missing;
        while ((missing = seq_fit(kv, dst)) >= 0) seq_trim(kv, dst, missing * EM_KV_BLOCK);
    }
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
    int32_t most = (n - 1) / EM_KV_BLOCK;
    if (most > kv->n_pos / EM_KV_BLOCK) most = kv->n_pos / EM_KV_BLOCK;
    if (most == 0 || !seq_reserve(sq, most)) return 0;
    /* The chain of the prompt's full blocks; it ends at an unknown token. */
    memcpy(sq->toks, tokens, (size_t)most * EM_KV_BLOCK * sizeof *tokens);
    for (int32_t i = 0; i < most; i++) {
        sq->chain[i] = block_hash(parent_of(sq, i), sq->toks + (size_t)i * EM_KV_BLOCK);
        if (sq->chain[i] == 0) {
            most = i;
            break;
        }
    }
    if (most <= 0) return 0;
    /* ok[G]: every group has the blocks that a sequence of G blocks must
     * hold (group 0, when global, all of them; a window its last ones). */
    uint8_t *ok = malloc((size_t)most + 1);
    if (!ok) {
        for (int32_t i = 0; i < most; i++) sq->chain[i] = 0;
        return 0;
    }
    memset(ok, 1, (size_t)most + 1);
    for (int32_t g = 0; g < kv->n_groups; g++) {
        const em_kv_pool *pl = &kv->pools[g];
        int32_t run = 0; /* indexed blocks ending at i */
        for (int32_t i = 0; i < most; i++) {
            const bool found = index_find(pl, sq->chain[i], parent_of(sq, i), sq->toks + (size_t)i * EM_KV_BLOCK) >= 0;
            run = found ? run + 1 : 0;
            const int32_t got = i + 1;
            if (run < got - first_needed(pl, got * EM_KV_BLOCK)) ok[got] = 0;
        }
    }
    int32_t got = most;
    while (got > 0 && !ok[got]) got--;
    free(ok);
    for (int32_t g = 0; g < kv->n_groups; g++) {
        em_kv_pool *pl = &kv->pools[g];
        const int32_t f = EM_MIN(first_needed(pl, got * EM_KV_BLOCK), got);
        for (int32_t i = 0; i < got; i++) {
            int32_t b = -1;
            if (i >= f) {
                b = index_find(pl, sq->chain[i], parent_of(sq, i), sq->toks + (size_t)i * EM_KV_BLOCK);
                block_ref(pl, b);
            }
            sq->blocks[g][i] = b;
        }
        sq->first[g] = f;
    }
    for (int32_t i = got; i < most; i++) sq->chain[i] = 0;
    sq->len = got * EM_KV_BLOCK;
    kv->prefix_hits += (uint64_t)got;
    return sq->len;
}

int32_t em_kv_pool_used(const em_kv *kv, int32_t g) {
    const em_kv_pool *pl = &kv->pools[g];
    return pl->n_blocks - pl->n_free - pl->n_cached;
}

int32_t em_kv_n_used(const em_kv *kv) { return em_kv_pool_used(kv, 0); }

/* ------------------------------------------------------------ storage */

/* Converts n floats into the cache's storage type at dst. */
static void store(const em_kv *kv, void *dst, const float *src, int64_t n, em_kv_f16_fn to_f16) {
    if (kv->type == EM_TYPE_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
    } else if (kv->type == EM_TYPE_F16 && to_f16) {
        to_f16((uint16_t *)dst, src, n);
    } else if (kv->type == EM_TYPE_F16) {
        uint16_t *h = (uint16_t *)dst;
        for (int64_t i = 0; i < n; i++) h[i] = em_fp32_to_fp16(src[i]);
    } else {
        em_quantize_row(kv->type, src, dst, n, NULL);
    }
}

void em_kv_write(em_kv *kv, int32_t layer, int32_t cell, int32_t h0, int32_t h1, const float *k, const float *v,
                 em_kv_f16_fn to_f16) {
    const int64_t hd = kv->layer[layer].head_dim, hdv = kv->layer[layer].head_dim_v;
    char *kb = kv->k[layer], *vb = kv->v[layer];
    const size_t ks = kv->k_slice[layer], vs = kv->v_slice[layer];
    const int32_t nh = h1 - h0;
    /* Converting several heads at once, then copying each head's slice to
     * its run: the converters (the Q8_0 quantizer above all) cost about
     * as much per call as per head, and a prompt writes every head of
     * every row.  A head's slice is whole blocks of the storage type, so
     * converting heads together or apart gives the same bytes. */
    _Alignas(64) unsigned char buf[8192];
    if (kv->type != EM_TYPE_F32 && nh > 1 && (size_t)nh * ks <= sizeof buf && (size_t)nh * vs <= sizeof buf) {
        store(kv, buf, k + (int64_t)h0 * hd, (int64_t)nh * hd, to_f16);
        for (int32_t h = h0; h < h1; h++)
            memcpy(kb + em_kv_slice_off(kv->k_row_bytes, ks, cell, h), buf + (size_t)(h - h0) * ks, ks);
        store(kv, buf, v + (int64_t)h0 * hdv, (int64_t)nh * hdv, to_f16);
        for (int32_t h = h0; h < h1; h++)
            memcpy(vb + em_kv_slice_off(kv->v_row_bytes, vs, cell, h), buf + (size_t)(h - h0) * vs, vs);
        return;
    }
    /* Else a slice at a time, each straight into its head's run. */
    for (int32_t h = h0; h < h1; h++) {
        store(kv, kb + em_kv_slice_off(kv->k_row_bytes, ks, cell, h), k + (int64_t)h * hd, hd, to_f16);
        store(kv, vb + em_kv_slice_off(kv->v_row_bytes, vs, cell, h), v + (int64_t)h * hdv, hdv, to_f16);
    }
}

const float *em_kv_read(const em_kv *kv, int32_t layer, bool value, int32_t cell, int32_t h, float *tmp) {
    const em_kv_layer *own = &kv->layer[kv->layer[layer].src];
    const int64_t n = value ? own->head_dim_v : own->head_dim;
    const void *p = value ? em_kv_value(kv, layer, cell, h) : em_kv_key(kv, layer, cell, h);
    if (kv->type == EM_TYPE_F32) return (const float *)p;
    if (kv->type == EM_TYPE_F16) {
        const uint16_t *x = (const uint16_t *)p;
        for (int64_t i = 0; i < n; i++) tmp[i] = em_fp16_to_fp32(x[i]);
        return tmp;
    }
    em_dequantize_row(kv->type, p, tmp, n);
    return tmp;
}
