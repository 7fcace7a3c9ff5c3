/*
 * context.c - creating an engine instance, batches, and em_decode: the one
 * entry point through which every front end runs the model.
 */
#include "model/context.h"
#include "ops/attention.h"
#include "ops/ops.h"
#include "quant/quant.h"

#include <math.h>
#include <stdlib.h>

em_context_params em_context_default_params(void) {
    em_context_params p = {
        .n_ctx = 0,
        .n_batch = 512,
        .n_threads = 0,
        .kv_type = EM_TYPE_F16,
        .n_seq_max = 1,
    };
    return p;
}

static void *alloc_floats(size_t n, bool *ok) {
    void *p = calloc(n ? n : 1, sizeof(float));
    if (!p) *ok = false;
    return p;
}

/* Whether a product of the forward pass multiplies float rows (F16, BF16
 * or F32 weights, whose activation format is F32), leaving out the small
 * router products, which read the rows in place when no other does. */
static bool has_float_matrix(const em_model *m) {
    for (int il = 0; il < m->hp.n_layer; il++) {
        const em_tensor *mats[32];
        const int n = em_layer_mats(&m->layers[il], mats, 32);
        for (int i = 0; i < n; i++)
            if (mats[i] != &m->layers[il].gate_inp && em_get_type_traits(mats[i]->type)->vec_dot_type == EM_TYPE_F32)
                return true;
    }
    const em_tensor *top[] = {&m->output, &m->pl_model_proj};
    for (int i = 0; i < 2; i++)
        if (top[i]->data && em_get_type_traits(top[i]->type)->vec_dot_type == EM_TYPE_F32) return true;
    return false;
}

/* The cache, with a layer group per window or chunk size (kv.h) unless
 * the caller asks for every position in every layer.  Encoders see later
 * rows too, so they keep everything.  The cache's rows are as wide as the
 * widest layer's keys and values (the same for every layer but Gemma
 * 4's), and each layer's head sizes and row owner go with the layout. */
static em_status kv_init(em_context *c, const em_context_params *p) {
    const em_hparams *hp = &c->model->hp;
    const bool full = p->kv_full || !hp->causal;
    int32_t *win = calloc((size_t)hp->n_layer, sizeof *win), *chunk = calloc((size_t)hp->n_layer, sizeof *chunk);
    em_kv_layer *kvl = malloc((size_t)hp->n_layer * sizeof *kvl);
    if (!win || !chunk || !kvl) {
        free(win);
        free(chunk);
        free(kvl);
        return em_error(EM_ERR_NOMEM, "context: out of memory");
    }
    int64_t kw = 0, vw = 0;
    for (int32_t il = 0; il < hp->n_layer; il++) {
        const em_layer *l = &c->model->layers[il];
        win[il] = full ? 0 : l->n_swa;
        chunk[il] = full ? 0 : l->n_chunk;
        kvl[il] = (em_kv_layer){l->head_dim, l->head_dim_v, l->kv_src};
        kw = EM_MAX(kw, (int64_t)l->n_head_kv * l->head_dim);
        vw = EM_MAX(vw, (int64_t)l->n_head_kv * l->head_dim_v);
    }
    const em_kv_layout lo = {.window = win, .chunk = chunk, .layers = kvl, .n_batch = p->n_batch};
    em_status st = em_kv_init_layout(&c->kv, p->n_ctx, p->n_seq_max, hp->n_layer, kw, vw, p->kv_type, hp->head_dim,
                                     hp->head_dim_v, &lo);
    free(win);
    free(chunk);
    free(kvl);
    return st;
}

em_status em_context_init(em_context **out, const em_model *model, const em_context_params *params) {
    if (!out || !model) return em_error(EM_ERR_INVALID_ARG, "context: no model");
    if (!model->layers) return em_error(EM_ERR_INVALID_ARG, "context: the model was loaded vocab-only");
    em_kernels_init(); /* done by em_model_load already; cheap, and keeps the order certain */
    em_context_params p = params ? *params : em_context_default_params();
    const em_hparams *hp = &model->hp;
    if (p.n_ctx <= 0) p.n_ctx = hp->n_ctx_train > 0 ? hp->n_ctx_train : 2048;
    if (p.n_batch <= 0) p.n_batch = 512;
    if (p.n_seq_max <= 0) p.n_seq_max = 1;
    /* Learned positions end where the model's table does: no sequence can
     * go past it (em_decode refuses such rows), so a cache larger than one
     * table per sequence would never fill. */
    if (model->pos_embd.data && p.n_ctx > model->pos_embd.ne[1] * p.n_seq_max) {
        if (params && params->n_ctx > 0)
            return em_error(EM_ERR_INVALID_ARG,
                            "context: n_ctx %d exceeds the model's %lld learned positions times %d sequences",
                            p.n_ctx, (long long)model->pos_embd.ne[1], p.n_seq_max);
        p.n_ctx = (int32_t)(model->pos_embd.ne[1] * p.n_seq_max);
    }
    if (p.n_batch > p.n_ctx) p.n_batch = p.n_ctx;
    if (p.n_threads <= 0) p.n_threads = em_physical_cores();
    if (p.n_seq_max > EM_KV_MAX_SEQ)
        return em_error(EM_ERR_INVALID_ARG, "context: n_seq_max %d exceeds %d", p.n_seq_max, EM_KV_MAX_SEQ);
    if (p.n_ctx > (1 << 24) || p.n_batch > (1 << 16) || p.n_threads > 512)
        return em_error(EM_ERR_INVALID_ARG, "context: n_ctx %d / n_batch %d / threads %d out of range",
                        p.n_ctx, p.n_batch, p.n_threads);

    em_context *c = calloc(1, sizeof *c);
    if (!c) return em_error(EM_ERR_NOMEM, "context: out of memory");
    c->model = model;
    c->params = p;
    em_status st = em_threadpool_init(&c->pool, p.n_threads);
    if (st != EM_OK) goto fail;
    /* Attention's scratch is as large as the largest layer needs. */
    size_t att_floats = 0;
    for (int il = 0; il < hp->n_layer; il++) {
        const em_layer *l = &model->layers[il];
        att_floats = EM_MAX(att_floats, em_attention_scratch(hp->n_head, l->n_head_kv, l->head_dim, l->head_dim_v));
    }
    st = kv_init(c, &p);
    if (st != EM_OK) goto fail;

    size_t nb = (size_t)p.n_batch;
    size_t q_dim = (size_t)hp->n_head * hp->head_dim, o_dim = (size_t)hp->n_head * hp->head_dim_v;
    bool ok = true;
    c->x = alloc_floats(nb * hp->n_embd, &ok);
    c->xn = alloc_floats(nb * hp->n_embd, &ok);
    c->q = alloc_floats(nb * q_dim, &ok);
    c->k = alloc_floats(nb * (size_t)c->kv.k_width, &ok);
    c->v = alloc_floats(nb * (size_t)c->kv.v_width, &ok);
    c->att = alloc_floats(nb * o_dim, &ok);
    const size_t n_used = (size_t)(hp->n_expert > 0 ? hp->n_expert_used : 0);
    /* FFN slots of a row: its routed experts, then its shared expert. */
    const size_t n_slots = n_used ? n_used + (size_t)hp->n_expert_shared : 0;
    c->ff_width = EM_MAX((int64_t)hp->n_ff, (int64_t)n_slots * hp->n_ff_exp);
    c->ff_width = EM_MAX(c->ff_width, (int64_t)hp->n_embd_pl); /* per-layer embeddings' gate */
    c->ff_gate = alloc_floats(nb * (size_t)c->ff_width, &ok);
    c->ff_up = alloc_floats(nb * (size_t)c->ff_width, &ok);
    if (n_used) {
        c->router = alloc_floats(nb * (size_t)hp->n_expert, &ok);
        c->moe_w = alloc_floats(nb * n_used, &ok);
        c->moe_y = alloc_floats(nb * n_slots * (size_t)hp->n_embd, &ok);
        c->moe_sel = calloc(nb * n_used, sizeof *c->moe_sel);
        c->moe_slot = calloc(nb * n_used, sizeof *c->moe_slot);
        c->moe_row = calloc(nb * n_used, sizeof *c->moe_row);
        c->moe_off = calloc((size_t)hp->n_expert + 1, sizeof *c->moe_off);
        /* A gathered row is a float row (float experts) or an 8-bit one. */
        c->moe_x_row = EM_MAX((size_t)hp->n_embd * sizeof(float), ((size_t)hp->n_embd + 255) / 256 * 292 + 64);
        for (int i = 0; i < 2; i++) c->moe_x[i] = malloc(nb * n_used * c->moe_x_row);
        if (!c->moe_sel || !c->moe_slot || !c->moe_row || !c->moe_off || !c->moe_x[0] || !c->moe_x[1]) ok = false;
    }
    if (model->layers[0].gate_inp_s.data) c->ffn_dense = alloc_floats(nb * hp->n_embd, &ok);
    if (hp->n_embd_pl > 0) {
        c->ple = alloc_floats(nb * (size_t)hp->n_embd_pl * hp->n_layer, &ok);
        c->ple_g = alloc_floats(nb * (size_t)hp->n_embd_pl, &ok);
    }
    const size_t half = (size_t)(hp->n_rot / 2), n_sets = (size_t)hp->n_rope_sets;
    c->rope_cos = alloc_floats(n_sets * nb * half, &ok);
    c->rope_sin = alloc_floats(n_sets * nb * half, &ok);
    c->inv_freq = alloc_floats(n_sets * half, &ok);
    c->att_scratch = alloc_floats((size_t)p.n_threads * att_floats, &ok);
    c->cells = calloc(nb, sizeof *c->cells);
    c->tok = calloc(nb, sizeof *c->tok);
    c->kv_cells = calloc(nb, sizeof *c->kv_cells);
    c->row_st = calloc(nb, sizeof *c->row_st);
    c->seq = calloc(nb, sizeof *c->seq);
    c->pos = calloc(nb, sizeof *c->pos);
    c->out_rows = calloc(nb, sizeof *c->out_rows);
    c->logit_of = calloc(nb, sizeof *c->logit_of);
    /* Quantized activations: float weights read the float rows directly,
     * so only the 8-bit formats need room, Q8_K's 292 bytes per 256
     * elements being the largest of them. */
    size_t widest = (size_t)EM_MAX(EM_MAX(hp->n_embd, hp->n_ff), (int32_t)EM_MAX(q_dim, o_dim));
    widest = EM_MAX(widest, (size_t)hp->n_embd_pl);
    /* With experts a row's down input is one row of n_ff_exp per slot. */
    size_t row_room = EM_MAX((widest + 255) / 256 * 292, n_slots * (((size_t)hp->n_ff_exp + 255) / 256 * 292));
    c->qact_size = nb * (row_room + 64);
    for (int i = 0; i < 3; i++) {
        c->qact[i] = malloc(c->qact_size);
        if (!c->qact[i]) ok = false;
    }
    /* Float matrices (F16, BF16, F32) read float activation rows, which
     * in a batch are copied with padded strides (forward.c, fpad_stride):
     * room for a row of the widest input and, with experts, a row of
     * n_ff_exp per slot, each 16 floats longer. */
    if (has_float_matrix(model)) {
        const size_t wide = EM_MAX(widest, (size_t)c->ff_width);
        c->fpad_row = wide + 16 * EM_MAX((size_t)1, n_slots);
        c->fpad = alloc_floats(nb * c->fpad_row, &ok);
    }
    /* Each piece rounded to 16 floats keeps every buffer 64-byte aligned
     * relative to the first. */
#define EM_R16(n) (((size_t)(n) + 15) / 16 * 16)
    c->solo_stride = 2 * EM_R16(hp->n_embd) + EM_R16(c->ff_width) + 3 * EM_R16(c->qact_size / nb / sizeof(float) + 1);
#undef EM_R16
    c->solo = alloc_floats((size_t)p.n_threads * c->solo_stride, &ok);
    if (!ok || !c->cells || !c->tok || !c->kv_cells || !c->row_st || !c->seq || !c->pos || !c->out_rows || !c->logit_of) {
        st = em_error(EM_ERR_NOMEM, "context: cannot allocate scratch for a batch of %d", p.n_batch);
        goto fail;
    }
    /* theta_i = pos * freq_scale * base^(-2i/n_rot), divided by the model's
     * per-pair factor where it has one (Llama 3 long-context scaling). */
    const float *ff = model->rope_freqs.data;
    for (int t = 0; t < hp->n_rope_sets; t++) {
        const em_rope_set *rs = &hp->rope[t];
        const int n_rot = rs->n_rot ? rs->n_rot : hp->n_rot;
        for (int i = 0; i < n_rot / 2; i++) {
            double f = pow((double)rs->base, -2.0 * i / n_rot) * rs->freq_scale;
            if (rs->ext_factor != 0) {
                /* YaRN: theta is linear in the position, so the blend of
                 * the scaled and unscaled angle is one frequency. */
                const double y = (i - rs->corr_lo) / EM_MAX(0.001, (double)rs->corr_hi - rs->corr_lo);
                const double ramp = (1.0 - EM_MIN(1.0, EM_MAX(0.0, y))) * rs->ext_factor;
                f = pow((double)rs->base, -2.0 * i / n_rot) * (rs->freq_scale * (1.0 - ramp) + ramp);
            }
            if (ff && !rs->no_factors) f /= ff[i];
            c->inv_freq[t * (hp->n_rot / 2) + i] = (float)f;
        }
    }
    em_kernels_hold();
    c->holds_kernels = true;
    *out = c;
    return EM_OK;
fail:
    em_context_free(c);
    return st;
}

void em_context_free(em_context *c) {
    if (!c) return;
    if (c->holds_kernels) em_kernels_release();
    em_threadpool_free(c->pool);
    em_kv_free(&c->kv);
    free(c->x);
    free(c->xn);
    free(c->q);
    free(c->k);
    free(c->v);
    free(c->att);
    free(c->ff_gate);
    free(c->ff_up);
    free(c->router);
    free(c->moe_w);
    free(c->moe_y);
    free(c->ffn_dense);
    free(c->ple);
    free(c->ple_g);
    free(c->moe_sel);
    free(c->moe_slot);
    free(c->moe_row);
    free(c->moe_off);
    for (int i = 0; i < 2; i++) free(c->moe_x[i]);
    for (int i = 0; i < 3; i++) free(c->qact[i]);
    free(c->fpad);
    free(c->solo);
    free(c->rope_cos);
    free(c->rope_sin);
    free(c->inv_freq);
    free(c->att_scratch);
    free(c->cells);
    free(c->tok);
    free(c->kv_cells);
    free(c->row_st);
    free(c->embd);
    free(c->seq);
    free(c->pos);
    free(c->out_rows);
    free(c->logits);
    free(c->logit_of);
    free(c);
}

int32_t em_context_n_ctx(const em_context *c) { return c->params.n_ctx; }

/* ------------------------------------------------------------------ batch */

em_status em_batch_init(em_batch *b, int32_t capacity) {
    memset(b, 0, sizeof *b);
    if (capacity <= 0) return em_error(EM_ERR_INVALID_ARG, "batch: capacity must be positive");
    b->token = malloc((size_t)capacity * sizeof *b->token);
    b->pos = malloc((size_t)capacity * sizeof *b->pos);
    b->seq_id = malloc((size_t)capacity * sizeof *b->seq_id);
    b->logits = malloc((size_t)capacity * sizeof *b->logits);
    b->status = malloc((size_t)capacity * sizeof *b->status);
    if (!b->token || !b->pos || !b->seq_id || !b->logits || !b->status) {
        em_batch_free(b);
        return em_error(EM_ERR_NOMEM, "batch: out of memory");
    }
    b->capacity = capacity;
    return EM_OK;
}

void em_batch_free(em_batch *b) {
    free(b->token);
    free(b->pos);
    free(b->seq_id);
    free(b->logits);
    free(b->status);
    memset(b, 0, sizeof *b);
}

void em_batch_clear(em_batch *b) { b->n_tokens = 0; }

em_status em_batch_add(em_batch *b, em_token token, em_pos pos, em_seq_id seq, bool want_logits) {
    if (b->n_tokens >= b->capacity) return em_error(EM_ERR_INVALID_ARG, "batch: full (%d rows)", b->capacity);
    int32_t i = b->n_tokens++;
    b->token[i] = token;
    b->pos[i] = pos;
    b->seq_id[i] = seq;
    b->logits[i] = want_logits ? 1 : 0;
    if (b->status) b->status[i] = EM_OK;
    return EM_OK;
}

/* ----------------------------------------------------------------- decode */

/* Makes room for the logits (and hidden states) of n_out rows; the
 * buffers grow only when more rows than ever before ask. */
static em_status reserve_outputs(em_context *c, int32_t n_out) {
    const em_hparams *hp = &c->model->hp;
    if (n_out <= c->logits_cap) return EM_OK;
    float *nl = realloc(c->logits, (size_t)n_out * (size_t)hp->n_vocab * sizeof(float));
    if (!nl) return em_error(EM_ERR_NOMEM, "decode: cannot allocate logits for %d rows", n_out);
    c->logits = nl;
    if (c->params.embeddings) {
        float *ne = realloc(c->embd, (size_t)n_out * (size_t)hp->n_embd * sizeof(float));
        if (!ne) return em_error(EM_ERR_NOMEM, "decode: cannot allocate hidden states for %d rows", n_out);
        c->embd = ne;
    }
    c->logits_cap = n_out;
    return EM_OK;
}

/* The error of row i that the cache cannot see: a token outside the
 * vocabulary or a position out of range. */
static em_status check_row(const em_context *c, const em_batch *b, int32_t i) {
    const int32_t n_vocab = c->model->hp.n_vocab;
    if (b->token[i] < 0 || b->token[i] >= n_vocab)
        return em_error(EM_ERR_INVALID_ARG, "decode: row %d: token %d outside the vocabulary (%d)", i, b->token[i],
                        n_vocab);
    if (b->pos[i] < 0 || b->pos[i] >= (1 << 30))
        return em_error(EM_ERR_INVALID_ARG, "decode: row %d: bad position %d", i, b->pos[i]);
    const em_tensor *pe = &c->model->pos_embd;
    if (pe->data && b->pos[i] >= pe->ne[1])
        return em_error(EM_ERR_CONTEXT_FULL, "decode: row %d: position %d is beyond the model's %lld learned positions",
                        i, b->pos[i], (long long)pe->ne[1]);
    if (b->seq_id[i] < 0 || b->seq_id[i] >= c->params.n_seq_max)
        return em_error(EM_ERR_INVALID_ARG, "decode: row %d: sequence %d outside [0, %d)", i, b->seq_id[i],
                        c->params.n_seq_max);
    return EM_OK;
}

em_status em_decode(em_context *c, const em_batch *b) {
    if (!c || !b || b->n_tokens <= 0) return em_error(EM_ERR_INVALID_ARG, "decode: empty batch");
    if (b->n_tokens > c->params.n_batch)
        return em_error(EM_ERR_INVALID_ARG, "decode: batch of %d rows exceeds n_batch %d", b->n_tokens,
                        c->params.n_batch);
    const int32_t n = b->n_tokens;
    em_status *st = b->status ? b->status : c->row_st;
    c->n_logit_rows = 0;

    /* Rows the cache cannot judge fail first; the cache then fails the
     * later rows of their sequence, which are not its next positions.
     * Without a status array the first error fails the batch. */
    int32_t n_want = 0;
    em_status first = EM_OK;
    for (int32_t i = 0; i < n; i++) {
        st[i] = check_row(c, b, i);
        if (st[i] != EM_OK && first == EM_OK) first = st[i];
        if (b->logits[i]) n_want++;
        c->seq[i] = st[i] == EM_OK ? b->seq_id[i] : -1; /* -1: the cache skips the row */
    }
    if (first != EM_OK && !b->status) return first;
    em_status rs = reserve_outputs(c, n_want);
    if (rs != EM_OK) return rs;
    em_status placed = em_kv_place(&c->kv, n, c->seq, b->pos, b->token, c->kv_cells, b->status ? c->row_st : NULL);
    if (b->status)
        for (int32_t i = 0; i < n; i++)
            if (st[i] == EM_OK) st[i] = c->row_st[i];
    if (placed != EM_OK) return first != EM_OK ? first : placed;

    /* Gather the placed rows; logits rows are numbered among them. */
    int32_t m = 0, n_out = 0;
    for (int32_t i = 0; i < n; i++) {
        c->logit_of[i] = -1;
        if (c->kv_cells[i] < 0) continue;
        c->tok[m] = b->token[i];
        c->seq[m] = b->seq_id[i];
        c->pos[m] = b->pos[i];
        c->cells[m] = c->kv_cells[i];
        if (b->logits[i]) {
            c->out_rows[n_out] = m;
            c->logit_of[i] = n_out++;
        }
        m++;
    }
    c->n_logit_rows = n;
    if (m == 0) return EM_OK;
    em_status fs = em_forward(c, c->tok, m, n_out);
    /* Windowed layers give back what no later row can see. */
    em_kv_settle(&c->kv, m, c->seq);
    return fs;
}

const float *em_get_logits(em_context *c, int32_t i) {
    if (i < 0 || i >= c->n_logit_rows || c->logit_of[i] < 0) return NULL;
    return c->logits + (size_t)c->logit_of[i] * (size_t)c->model->hp.n_vocab;
}

const float *em_get_embeddings(em_context *c, int32_t i) {
    if (!c->embd || i < 0 || i >= c->n_logit_rows || c->logit_of[i] < 0) return NULL;
    return c->embd + (size_t)c->logit_of[i] * (size_t)c->model->hp.n_embd;
}

em_status em_kv_remove(em_context *c, em_seq_id seq, em_pos p0, em_pos p1) {
    if (seq >= c->params.n_seq_max)
        return em_error(EM_ERR_INVALID_ARG, "kv remove: sequence %d outside [0, %d)", seq, c->params.n_seq_max);
    return em_kv_drop(&c->kv, seq, p0, p1);
}

void em_kv_clear(em_context *c) { em_kv_drop(&c->kv, -1, 0, -1); }

em_status em_kv_seq_cp(em_context *c, em_seq_id src, em_seq_id dst, em_pos p0, em_pos p1) {
    return em_kv_share(&c->kv, src, dst, p0, p1);
}

em_pos em_kv_seq_pos_max(const em_context *c, em_seq_id seq) {
    if (seq < 0 || seq >= c->kv.n_seq) return 0;
    return c->kv.seqs[seq].len;
}

int32_t em_kv_seq_reuse_prefix(em_context *c, em_seq_id seq, const em_token *tokens, int32_t n) {
    return em_kv_reuse(&c->kv, seq, tokens, n);
}

void em_kv_get_stats(const em_context *c, em_kv_stats *out) {
    const em_kv *kv = &c->kv;
    memset(out, 0, sizeof *out);
    out->block_size = EM_KV_BLOCK;
    out->n_blocks = kv->pools[0].n_blocks;
    out->n_used = em_kv_n_used(kv);
    out->n_cached = kv->pools[0].n_cached;
    out->n_free = kv->pools[0].n_free;
    out->prefix_lookups = kv->prefix_lookups;
    out->prefix_hits = kv->prefix_hits;
    out->n_groups = EM_MIN(kv->n_groups, EM_KV_STATS_GROUPS);
    const uint64_t row = (uint64_t)(kv->k_row_bytes + kv->v_row_bytes) * EM_KV_BLOCK;
    for (int32_t g = 0; g < kv->n_groups; g++) {
        const em_kv_pool *pl = &kv->pools[g];
        out->bytes += (uint64_t)pl->n_blocks * pl->n_layer * row;
        out->bytes_used += (uint64_t)em_kv_pool_used(kv, g) * pl->n_layer * row;
        if (g >= EM_KV_STATS_GROUPS) continue;
        out->groups[g] = (em_kv_group_stats){
            .n_layer = pl->n_layer,
            .window = pl->span == EM_KV_WINDOW ? pl->size : 0,
            .chunk = pl->span == EM_KV_CHUNK ? pl->size : 0,
            .n_blocks = pl->n_blocks,
            .n_used = em_kv_pool_used(kv, g),
            .n_cached = pl->n_cached,
            .n_free = pl->n_free,
        };
    }
}
