/*
 * test_kv_layers.c - a KV cache whose layers differ (Gemma 4): heads of
 * different sizes in rows of one width, and layers that read an earlier
 * layer's rows instead of holding their own (cross-layer KV sharing), also
 * through copy-on-write; bad layer shapes refused.  Then, on the shared
 * tiny gemma4 model, a context whose shared-KV layers own no cache rows.
 */
#include "ember.h"
#include "kv/kv.h"
#include "model/context.h"
#include "test.h"

static void test_shapes(void) {
    em_kv kv;
    /* Rows of 4 floats: layer 0 has 2 heads of 2, layer 1 one head of 4
     * keys and one of 4 values, layer 2 reads layer 0's rows. */
    const em_kv_layer ls[3] = {{2, 2, 0}, {4, 4, 1}, {2, 2, 0}};
    CHECK_OK(em_kv_init_layers(&kv, 32, 2, 3, 4, 4, EM_TYPE_F32, ls));
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
    const float *r0 = (const float *)kv.k[0] + (size_t)cells[0] * 4, *s0 = (const float *)kv.v[0] + (size_t)cells[0] * 4;
    CHECK(r0[0] == 0 && r0[1] == 0 && r0[2] == 3 && r0[3] == 4 && s0[2] == 7 && s0[3] == 8);
    em_kv_write(&kv, 1, cells[1], 0, 1, k, v, NULL);
    const float *r1 = (const float *)kv.k[1] + (size_t)cells[1] * 4;
    CHECK(r1[0] == 1 && r1[3] == 4);
    /* Layer 2 sees layer 0's row. */
    const float *r2 = (const float *)kv.k[2] + (size_t)cells[0] * 4;
    CHECK(r2[2] == 3 && r2[3] == 4);

    /* Copy-on-write copies the owners' rows once; the sharing layer reads
     * the copy. */
    CHECK_OK(em_kv_share(&kv, 0, 1, 0, -1));
    em_seq_id s1 = 1;
    em_pos p2 = 2;
    int32_t c2;
    CHECK_OK(em_kv_place(&kv, 1, &s1, &p2, NULL, &c2, NULL));
    const int32_t c0 = em_kv_cell(&kv, 1, 0);
    CHECK(c0 != cells[0] && c0 / EM_KV_BLOCK == c2 / EM_KV_BLOCK);
    const float *copy = (const float *)kv.k[2] + (size_t)c0 * 4;
    CHECK(copy[2] == 3 && copy[3] == 4);
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

/* tiny-gemma4: layers 4 and 5 read layers 2 and 3; the windowed layers'
 * heads are 32 wide, the global ones' 64. */
static void test_gemma4_context(const char *path) {
    em_model *m = NULL;
    CHECK_OK(em_model_load(&m, path, NULL));
    if (!m) return;
    em_context_params cp = em_context_default_params();
    cp.n_ctx = 64;
    cp.n_threads = 2;
    em_context *c = NULL;
    CHECK_OK(em_context_init(&c, m, &cp));
    if (c) {
        CHECK(c->kv.k[4] == c->kv.k[2] && c->kv.k[5] == c->kv.k[3] && c->kv.v[5] == c->kv.v[3]);
        CHECK(c->kv.k[2] != c->kv.k[3] && c->kv.layer[0].head_dim == 32 && c->kv.layer[3].head_dim == 64);
        CHECK(c->kv.k_width == 64);
    }
    em_context_free(c);
    em_model_free(m);
}

int main(void) {
    test_shapes();
    SKIP_REST_WITHOUT_TEST_DATA();
    char path[1024];
    test_gemma4_context(test_data_path(path, sizeof path, "models/arch/tiny-gemma4.gguf"));
    TEST_END();
}
