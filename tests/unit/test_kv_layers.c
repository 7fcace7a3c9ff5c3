/*
 * test_kv_layers.c - a KV cache whose layers differ (Gemma 4): heads of
 * different sizes in rows of one width, and layers that read an earlier
 * layer's rows instead of holding their own (cross-layer KV sharing), also
 * through copy-on-write; bad layer shapes refused; sharing layers in
 * layer groups (a windowed layer reading a windowed layer's rows).  Then,
 * on the shared tiny gemma4 model, a context whose shared-KV layers own no
 * cache rows, with layer groups and with kv_full.
 */
#include "ember.h"
#include "kv/kv.h"
#include "model/context.h"
#include "test.h"

/* em_kv_init_layout with per-layer shapes and windows. */
static em_status init_layers(em_kv *kv, int32_t n_pos, int32_t n_seq, int32_t n_layer, int64_t kw, int64_t vw,
                             em_type type, const em_kv_layer *layers, const int32_t *window) {
    const em_kv_layout lo = {.window = window, .layers = layers, .n_batch = 16};
    return em_kv_init_layout(kv, n_pos, n_seq, n_layer, kw, vw, type, 1, 1, &lo);
}

static void test_shapes(void) {
    em_kv kv;
    /* Rows of 4 floats: layer 0 has 2 heads of 2, layer 1 one head of 4
     * keys and one of 4 values, layer 2 reads layer 0's rows. */
    const em_kv_layer ls[3] = {{2, 2, 0}, {4, 4, 1}, {2, 2, 0}};
    CHECK_OK(em_kv_init_layers(&kv, 32, 2, 3, 4, 4, EM_TYPE_F32, ls));
    CHECK(kv.n_groups == 1 && kv.pools[0].n_layer == 2); /* rows for the owners only */
    CHECK(kv.k[2] == kv.k[0] && kv.v[2] == kv.v[0] && kv.k[1] != kv.k[0]);

    em_seq_id seq[2] = {0, 0};
    em_pos pos[2] = {0, 1};
    em_token tok[2] = {5, 6};
    int32_t cells[2];
    CHECK_OK(em_kv_place(&kv, 2, seq, pos, tok, cells, NULL));
    const float k[4] = {1, 2, 3, 4}, v[4] = {5, 6, 7, 8};
    /* Head 1 of layer 0 is elements [2, 4); of layer 1 it does not exist,
     * its head 0 is the whole row. */
    em_kv_write(&kv, 0, cells[0], 1, 2, k, v, NULL);
    const float *r0 = em_kv_key(&kv, 0, cells[0], 0), *r0h = em_kv_key(&kv, 0, cells[0], 1);
    const float *s0h = em_kv_value(&kv, 0, cells[0], 1);
    CHECK(r0[0] == 0 && r0[1] == 0 && r0h[0] == 3 && r0h[1] == 4 && s0h[0] == 7 && s0h[1] == 8);
    em_kv_write(&kv, 1, cells[1], 0, 1, k, v, NULL);
    const float *r1 = em_kv_key(&kv, 1, cells[1], 0);
    CHECK(r1[0] == 1 && r1[3] == 4);
    /* Layer 2 sees layer 0's row. */
    const float *r2 = em_kv_key(&kv, 2, cells[0], 1);
    CHECK(r2[0] == 3 && r2[1] == 4);

    /* Copy-on-write copies the owners' rows once; the sharing layer reads
     * the copy. */
    CHECK_OK(em_kv_share(&kv, 0, 1, 0, -1));
    em_seq_id s1 = 1;
    em_pos p2 = 2;
    int32_t c2;
    CHECK_OK(em_kv_place(&kv, 1, &s1, &p2, NULL, &c2, NULL));
    const int32_t c0 = em_kv_cell(&kv, 1, 0);
    CHECK(c0 != cells[0] && c0 / EM_KV_BLOCK == c2 / EM_KV_BLOCK);
    const float *copy = em_kv_key(&kv, 2, c0, 1);
    CHECK(copy[0] == 3 && copy[1] == 4);
    em_kv_free(&kv);

    /* Refused: a layer reading a later layer, reading a layer that itself
     * shares, a head wider than the rows, and a q8_0 cache with heads that
     * are not whole blocks. */
    const em_kv_layer later[2] = {{2, 2, 1}, {2, 2, 1}};
    const em_kv_layer chain[3] = {{2, 2, 0}, {2, 2, 0}, {2, 2, 1}};
    const em_kv_layer wide[2] = {{2, 2, 0}, {8, 8, 1}};
    const em_kv_layer odd[2] = {{32, 32, 0}, {16, 16, 1}};
    CHECK(em_kv_init_layers(&kv, 32, 1, 2, 4, 4, EM_TYPE_F32, later) == EM_ERR_INVALID_ARG);
    CHECK(em_kv_init_layers(&kv, 32, 1, 3, 4, 4, EM_TYPE_F32, chain) == EM_ERR_INVALID_ARG);
    CHECK(em_kv_init_layers(&kv, 32, 1, 2, 4, 4, EM_TYPE_F32, wide) == EM_ERR_INVALID_ARG);
    CHECK(em_kv_init_layers(&kv, 32, 1, 2, 64, 64, EM_TYPE_Q8_0, odd) == EM_ERR_UNSUPPORTED);
    CHECK(em_kv_init_layers(&kv, 32, 1, 2, 4, 4, EM_TYPE_F32, NULL) == EM_ERR_INVALID_ARG);
}

/* Sharing layers with layer groups: a windowed layer that reads an
 * earlier windowed layer's rows is in that layer's group and takes no rows
 * of its pool; a sequence longer than the window gives the windowed
 * blocks back, and the sharing layer still reads its source's rows. */
static void test_groups(void) {
    em_kv kv;
    /* Layers: 0 global, 1 windowed (16), 2 reads 1, 3 reads 0. */
    const em_kv_layer ls[4] = {{2, 2, 0}, {2, 2, 1}, {2, 2, 1}, {2, 2, 0}};
    const int32_t window[4] = {0, 16, 16, 0};
    CHECK_OK(init_layers(&kv, 256, 1, 4, 4, 4, EM_TYPE_F32, ls, window));
    CHECK(kv.n_groups == 2 && kv.pools[0].n_layer == 1 && kv.pools[1].n_layer == 1);
    CHECK(kv.group[0] == 0 && kv.group[3] == 0 && kv.group[1] == 1 && kv.group[2] == 1);
    CHECK(kv.k[2] == kv.k[1] && kv.v[3] == kv.v[0] && kv.k[1] != kv.k[0]);
    CHECK(kv.pools[1].n_blocks < kv.pools[0].n_blocks);

    /* 64 positions, one at a time, each written to the owners with its
     * position as the key. */
    for (em_pos p = 0; p < 64; p++) {
        em_seq_id s = 0;
        em_token t = (em_token)(p % 7);
        int32_t cell;
        CHECK_OK(em_kv_place(&kv, 1, &s, &p, &t, &cell, NULL));
        const float k[4] = {(float)p, (float)p, 0, 0}, v[4] = {(float)-p, (float)-p, 0, 0};
        em_kv_write(&kv, 0, em_kv_layer_cell(&kv, 0, 0, p), 0, 1, k, v, NULL);
        em_kv_write(&kv, 1, em_kv_layer_cell(&kv, 1, 0, p), 0, 1, k, v, NULL);
        em_kv_settle(&kv, 1, &s);
    }
    /* The windowed group keeps only the blocks of the last window. */
    CHECK(em_kv_pool_used(&kv, 1) <= 2 && em_kv_pool_used(&kv, 0) == 4);
    for (em_pos p = 48; p < 64; p++) {
        const float *r2 = em_kv_key(&kv, 2, em_kv_layer_cell(&kv, 2, 0, p), 0);
        const float *r3 = em_kv_value(&kv, 3, em_kv_layer_cell(&kv, 3, 0, p), 0);
        CHECK(r2[0] == (float)p && r3[0] == (float)-p);
    }
    const float *r3 = em_kv_key(&kv, 3, em_kv_layer_cell(&kv, 3, 0, 5), 0);
    CHECK(r3[0] == 5.0f); /* the global layers keep every position */
    em_kv_free(&kv);
}

/* tiny-gemma4: layers 4 and 5 read layers 2 and 3; the windowed layers'
 * heads are 32 wide, the global ones' 64. */
static void test_gemma4_context(const char *path) {
    em_model *m = NULL;
    CHECK_OK(em_model_load(&m, path, NULL));
    if (!m) return;
    em_context_params cp = em_context_default_params();
    cp.n_ctx = 64;
    cp.n_threads = 2;
    /* With layer groups (the windowed layers' own pool) and kv_full. */
    for (int full = 0; full < 2; full++) {
        cp.kv_full = full;
        em_context *c = NULL;
        CHECK_OK(em_context_init(&c, m, &cp));
        if (!c) continue;
        CHECK(c->kv.k[4] == c->kv.k[2] && c->kv.k[5] == c->kv.k[3] && c->kv.v[5] == c->kv.v[3]);
        CHECK(c->kv.k[2] != c->kv.k[3] && c->kv.layer[0].head_dim == 32 && c->kv.layer[3].head_dim == 64);
        CHECK(c->kv.k_width == 64);
        CHECK(c->kv.group[4] == c->kv.group[2] && c->kv.group[5] == c->kv.group[3]);
        int32_t owners = 0;
        for (int32_t g = 0; g < c->kv.n_groups; g++) owners += c->kv.pools[g].n_layer;
        CHECK(owners == 4); /* six layers, two of them sharing */
        CHECK(c->kv.n_groups == (full ? 1 : 2));
        em_context_free(c);
    }
    em_model_free(m);
}

int main(void) {
    test_shapes();
    test_groups();
    SKIP_REST_WITHOUT_TEST_DATA();
    char path[1024];
    test_gemma4_context(test_data_path(path, sizeof path, "models/arch/tiny-gemma4.gguf"));
    TEST_END();
}
