/*
 * kv.c - slot allocation and storage of the key/value cache.
 */
#include "kv/kv.h"
#include "quant/quant.h"

#include <stdlib.h>

em_status em_kv_init(em_kv *kv, int32_t n_cells, int32_t n_layer, int64_t k_width,
                     int64_t v_width, em_type type, int32_t head_dim, int32_t head_dim_v) {
    memset(kv, 0, sizeof *kv);
    if (n_cells <= 0 || n_layer <= 0 || k_width <= 0 || v_width <= 0 || head_dim <= 0 || head_dim_v <= 0)
        return em_error(EM_ERR_INVALID_ARG, "kv: bad cache shape");
    const em_type_traits *tr = em_get_type_traits(type);
    if (!tr || !tr->can_quantize || !tr->can_dequant || type == EM_TYPE_Q8_K || type == EM_TYPE_Q8_1)
        return em_error(EM_ERR_UNSUPPORTED, "kv: %s cannot be a cache type (use f16, f32 or q8_0)",
                        em_type_name(type) ? em_type_name(type) : "this type");
    if (head_dim % tr->block_size || head_dim_v % tr->block_size)
        return em_error(EM_ERR_UNSUPPORTED, "kv: a %s cache needs head sizes that are multiples of %lld (the model's are %d/%d)",
                        tr->name, (long long)tr->block_size, head_dim, head_dim_v);
    kv->n_cells = n_cells;
    kv->n_layer = n_layer;
    kv->type = type;
    kv->k_width = k_width;
    kv->v_width = v_width;
    kv->k_row_bytes = em_row_size(type, k_width);
    kv->v_row_bytes = em_row_size(type, v_width);
    kv->pos = malloc((size_t)n_cells * sizeof *kv->pos);
    kv->seqs = malloc((size_t)n_cells * sizeof *kv->seqs);
    kv->k = calloc((size_t)n_layer, sizeof *kv->k);
    kv->v = calloc((size_t)n_layer, sizeof *kv->v);
    if (!kv->pos || !kv->seqs || !kv->k || !kv->v) goto nomem;
    for (int32_t i = 0; i < n_layer; i++) {
        kv->k[i] = calloc((size_t)n_cells, kv->k_row_bytes);
        kv->v[i] = calloc((size_t)n_cells, kv->v_row_bytes);
        if (!kv->k[i] || !kv->v[i]) goto nomem;
    }
    for (int32_t i = 0; i < n_cells; i++) {
        kv->pos[i] = -1;
        kv->seqs[i] = 0;
    }
    return EM_OK;
nomem:
    em_kv_free(kv);
    return em_error(EM_ERR_NOMEM, "kv: cannot allocate a cache of %d positions", n_cells);
}

void em_kv_free(em_kv *kv) {
    if (kv->k)
        for (int32_t i = 0; i < kv->n_layer; i++) free(kv->k[i]);
    if (kv->v)
        for (int32_t i = 0; i < kv->n_layer; i++) free(kv->v[i]);
    free(kv->k);
    free(kv->v);
    free(kv->pos);
    free(kv->seqs);
    memset(kv, 0, sizeof *kv);
}

/* The slot holding (seq, pos), or -1. */
static int32_t find_slot(const em_kv *kv, em_seq_id seq, em_pos pos) {
    for (int32_t j = 0; j < kv->hi; j++)
        if (kv->pos[j] == pos && em_kv_sees(kv, j, seq)) return j;
    return -1;
}

static void release(em_kv *kv, int32_t j, uint64_t bits) {
    kv->seqs[j] &= ~bits;
    if (kv->seqs[j] == 0 && kv->pos[j] >= 0) {
        kv->pos[j] = -1;
        kv->used--;
    }
}

em_status em_kv_alloc(em_kv *kv, int32_t n, const em_seq_id *seq, const em_pos *pos,
                      int32_t *cells) {
    /* First pass: choose slots without claiming them, so that a batch that
     * does not fit leaves the cache as it was.  Fresh slots are taken in
     * order from the free ones; `next_free` walks them. */
    int32_t next_free = 0;
    for (int32_t i = 0; i < n; i++) {
        int32_t c = -1;
        for (int32_t j = 0; j < i && c < 0; j++)
            if (seq[j] == seq[i] && pos[j] == pos[i]) c = cells[j];
        if (c < 0) {
            int32_t old = find_slot(kv, seq[i], pos[i]);
            if (old >= 0 && kv->seqs[old] == (1ull << seq[i])) c = old;
        }
        if (c < 0) {
            while (next_free < kv->n_cells && kv->pos[next_free] >= 0) next_free++;
            if (next_free >= kv->n_cells)
                return em_error(EM_ERR_CONTEXT_FULL, "kv: the cache is full (%d positions)", kv->n_cells);
            c = next_free++;
        }
        cells[i] = c;
    }
    /* Second pass: detach rows from shared slots they are leaving, then
     * claim. */
    for (int32_t i = 0; i < n; i++) {
        int32_t old = find_slot(kv, seq[i], pos[i]);
        if (old >= 0 && old != cells[i]) release(kv, old, 1ull << seq[i]);
        int32_t c = cells[i];
        if (kv->pos[c] < 0) kv->used++;
        kv->pos[c] = pos[i];
        kv->seqs[c] = 1ull << seq[i];
        if (c >= kv->hi) kv->hi = c + 1;
    }
    return EM_OK;
}

void em_kv_drop(em_kv *kv, em_seq_id seq, em_pos p0, em_pos p1) {
    uint64_t bits = seq < 0 ? ~0ull : 1ull << seq;
    for (int32_t j = 0; j < kv->hi; j++) {
        if (kv->pos[j] < 0 || !(kv->seqs[j] & bits)) continue;
        if (kv->pos[j] < p0 || (p1 >= 0 && kv->pos[j] >= p1)) continue;
        release(kv, j, bits);
    }
    while (kv->hi > 0 && kv->pos[kv->hi - 1] < 0) kv->hi--;
}

void em_kv_share(em_kv *kv, em_seq_id src, em_seq_id dst, em_pos p0, em_pos p1) {
    if (src == dst) return;
    for (int32_t j = 0; j < kv->hi; j++) {
        if (kv->pos[j] < 0 || !em_kv_sees(kv, j, src)) continue;
        if (kv->pos[j] < p0 || (p1 >= 0 && kv->pos[j] >= p1)) continue;
        /* dst may already hold its own slot at this position: it gives
         * that one up, so that it sees exactly one key per position. */
        int32_t old = find_slot(kv, dst, kv->pos[j]);
        if (old >= 0 && old != j) release(kv, old, 1ull << dst);
        kv->seqs[j] |= 1ull << dst;
    }
    while (kv->hi > 0 && kv->pos[kv->hi - 1] < 0) kv->hi--;
}

void em_kv_store(em_kv *kv, int32_t layer, int32_t cell, const float *k, const float *v) {
    char *kd = (char *)kv->k[layer] + (size_t)cell * kv->k_row_bytes;
    char *vd = (char *)kv->v[layer] + (size_t)cell * kv->v_row_bytes;
    if (kv->type == EM_TYPE_F32) {
        memcpy(kd, k, kv->k_row_bytes);
        memcpy(vd, v, kv->v_row_bytes);
    } else if (kv->type == EM_TYPE_F16) {
        uint16_t *kh = (uint16_t *)kd, *vh = (uint16_t *)vd;
        for (int64_t i = 0; i < kv->k_width; i++) kh[i] = em_fp32_to_fp16(k[i]);
        for (int64_t i = 0; i < kv->v_width; i++) vh[i] = em_fp32_to_fp16(v[i]);
    } else {
        em_quantize_row(kv->type, k, kd, kv->k_width, NULL);
        em_quantize_row(kv->type, v, vd, kv->v_width, NULL);
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
