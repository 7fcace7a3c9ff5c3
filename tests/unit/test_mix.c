/*
 * test_mix.c - the quantization mixes: the per-tensor rules on model
 * shapes where each rule shows (32 layers with GQA, tied embeddings, rows
 * that fit no 256-block, 8 experts), and, with EMBER_TEST_DATA, every
 * tensor type of the tiny-256 files that llama.cpp's own quantizer made
 * compared with what the rules choose for the same model.
 */
#include "gguf/gguf.h"
#include "quant/mix.h"
#include "quant/quant.h"
#include "test.h"

/* The type a matrix named `name` (ne0 columns) gets under mix `mix`. */
static em_type ty(const char *mix, const em_mix_model *mm, const char *name, int64_t ne0) {
    const em_mix *m = em_mix_find(mix);
    if (!m) {
        fprintf(stderr, "no mix %s\n", mix);
        return EM_TYPE_COUNT;
    }
    return em_mix_tensor_type(m, mm, name, 2, ne0, EM_TYPE_F32, NULL);
}

static const char *blk(int il, const char *what) {
    static char buf[8][64];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "blk.%d.%s.weight", il, what);
    return buf[k];
}

static void test_table(void) {
    CHECK(em_mix_count() >= 19);
    const em_mix *m = em_mix_find("q4_k_m");
    CHECK(m && !strcmp(m->name, "Q4_K_M") && m->ftype == 15 && m->base == EM_TYPE_Q4_K && !m->pure);
    CHECK(em_mix_find("Q8_0") && em_mix_find("Q8_0")->ftype == 7);
    CHECK(em_mix_find("Q2_K") && em_mix_find("Q2_K")->ftype == 10);
    CHECK(em_mix_find("Q3_K_S") && em_mix_find("Q3_K_S")->ftype == 11);
    CHECK(em_mix_find("Q3_K_L") && em_mix_find("Q3_K_L")->ftype == 13);
    CHECK(em_mix_find("Q5_K_S") && em_mix_find("Q5_K_S")->ftype == 16);
    CHECK(em_mix_find("IQ4_XS") && em_mix_find("IQ4_XS")->ftype == 30);
    CHECK(em_mix_find("BF16") && em_mix_find("BF16")->ftype == 32);
    CHECK(em_mix_find("F32") && em_mix_find("F32")->ftype == 0);
    CHECK(em_mix_find("Q4_K") && em_mix_find("Q4_K")->pure);
    CHECK(em_mix_find("Q4_K_X") == NULL);
    CHECK(em_mix_find("") == NULL);
    CHECK(em_mix_find(NULL) == NULL);
    /* Every quantizable type of ember is some mix's base. */
    static const em_type want[] = {EM_TYPE_F32, EM_TYPE_F16, EM_TYPE_BF16, EM_TYPE_Q4_0, EM_TYPE_Q4_1,
                                   EM_TYPE_Q5_0, EM_TYPE_Q5_1, EM_TYPE_Q8_0, EM_TYPE_Q2_K, EM_TYPE_Q3_K,
                                   EM_TYPE_Q4_K, EM_TYPE_Q5_K, EM_TYPE_Q6_K, EM_TYPE_IQ4_NL, EM_TYPE_IQ4_XS};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        bool found = false;
        for (int k = 0; k < em_mix_count(); k++) found |= em_mix_at(k)->base == want[i];
        CHECK_MSG(found, "no mix writes %s", em_type_name(want[i]));
    }
    CHECK(em_mix_at(-1) == NULL && em_mix_at(em_mix_count()) == NULL);
}

/* A Llama-3-8B-like shape: 32 layers, 4 query heads per KV head. */
static void test_q4_k_m(void) {
    em_mix_model mm = {.n_layer = 32, .n_gqa = 4, .n_expert = 0, .has_output = true};
    CHECK(ty("Q4_K_M", &mm, "output.weight", 4096) == EM_TYPE_Q6_K);
    CHECK(ty("Q4_K_M", &mm, "token_embd.weight", 4096) == EM_TYPE_Q4_K);
    /* more bits: layers < 4, >= 28, and (i - 4) % 3 == 2 */
    int n_q6 = 0;
    for (int il = 0; il < 32; il++) {
        bool more = il < 4 || il >= 28 || (il - 4) % 3 == 2;
        em_type want = more ? EM_TYPE_Q6_K : EM_TYPE_Q4_K;
        CHECK_MSG(ty("Q4_K_M", &mm, blk(il, "ffn_down"), 14336) == want, "ffn_down layer %d", il);
        CHECK_MSG(ty("Q4_K_M", &mm, blk(il, "attn_v"), 4096) == want, "attn_v layer %d", il);
        CHECK(ty("Q4_K_M", &mm, blk(il, "attn_q"), 4096) == EM_TYPE_Q4_K);
        CHECK(ty("Q4_K_M", &mm, blk(il, "attn_output"), 4096) == EM_TYPE_Q4_K);
        CHECK(ty("Q4_K_M", &mm, blk(il, "ffn_gate"), 4096) == EM_TYPE_Q4_K);
        n_q6 += more;
    }
    CHECK(n_q6 == 16);
    CHECK(ty("Q4_K_M", &mm, blk(6, "ffn_down"), 14336) == EM_TYPE_Q6_K);
    CHECK(ty("Q4_K_M", &mm, blk(5, "ffn_down"), 14336) == EM_TYPE_Q4_K);
    /* Q5_K_M: same layers, Q6_K on a Q5_K base. */
    CHECK(ty("Q5_K_M", &mm, blk(0, "ffn_down"), 14336) == EM_TYPE_Q6_K);
    CHECK(ty("Q5_K_M", &mm, blk(5, "ffn_down"), 14336) == EM_TYPE_Q5_K);
    CHECK(ty("Q5_K_M", &mm, blk(31, "attn_v"), 4096) == EM_TYPE_Q6_K);
    CHECK(ty("Q5_K_S", &mm, blk(0, "ffn_down"), 14336) == EM_TYPE_Q5_K);
    CHECK(ty("Q5_K_S", &mm, "output.weight", 4096) == EM_TYPE_Q6_K);
}

static void test_other_mixes(void) {
    em_mix_model gqa4 = {.n_layer = 32, .n_gqa = 4, .has_output = true};
    em_mix_model mha = {.n_layer = 32, .n_gqa = 1, .has_output = true};
    /* Q2_K: attn_v depends on GQA; ffn_down and attn_output get Q3_K. */
    CHECK(ty("Q2_K", &gqa4, blk(3, "attn_v"), 4096) == EM_TYPE_Q4_K);
    CHECK(ty("Q2_K", &mha, blk(3, "attn_v"), 4096) == EM_TYPE_Q3_K);
    CHECK(ty("Q2_K", &mha, blk(9, "ffn_down"), 11008) == EM_TYPE_Q3_K);
    CHECK(ty("Q2_K", &mha, blk(9, "attn_output"), 4096) == EM_TYPE_Q3_K);
    CHECK(ty("Q2_K", &mha, blk(9, "ffn_up"), 4096) == EM_TYPE_Q2_K);
    CHECK(ty("Q2_K", &mha, "output.weight", 4096) == EM_TYPE_Q6_K);
    /* Q3_K_S: only the output. */
    CHECK(ty("Q3_K_S", &mha, blk(0, "attn_v"), 4096) == EM_TYPE_Q3_K);
    CHECK(ty("Q3_K_S", &mha, blk(0, "ffn_down"), 11008) == EM_TYPE_Q3_K);
    CHECK(ty("Q3_K_S", &mha, "output.weight", 4096) == EM_TYPE_Q6_K);
    /* Q3_K_M: the first two attn_v Q5_K, then Q4_K; ffn_down Q5_K for the
     * first sixteenth, then Q4_K; attn_output Q4_K. */
    CHECK(ty("Q3_K_M", &mha, blk(1, "attn_v"), 4096) == EM_TYPE_Q5_K);
    CHECK(ty("Q3_K_M", &mha, blk(2, "attn_v"), 4096) == EM_TYPE_Q4_K);
    CHECK(ty("Q3_K_M", &mha, blk(1, "ffn_down"), 11008) == EM_TYPE_Q5_K);
    CHECK(ty("Q3_K_M", &mha, blk(2, "ffn_down"), 11008) == EM_TYPE_Q4_K);
    CHECK(ty("Q3_K_M", &mha, blk(2, "attn_output"), 4096) == EM_TYPE_Q4_K);
    CHECK(ty("Q3_K_M", &mha, blk(2, "attn_q"), 4096) == EM_TYPE_Q3_K);
    /* Q3_K_L: Q5_K for attn_v, ffn_down, attn_output. */
    CHECK(ty("Q3_K_L", &mha, blk(20, "attn_v"), 4096) == EM_TYPE_Q5_K);
    CHECK(ty("Q3_K_L", &mha, blk(20, "ffn_down"), 11008) == EM_TYPE_Q5_K);
    CHECK(ty("Q3_K_L", &mha, blk(20, "attn_output"), 4096) == EM_TYPE_Q5_K);
    CHECK(ty("Q3_K_L", &mha, blk(20, "attn_k"), 4096) == EM_TYPE_Q3_K);
    /* Q4_K_S: the first four attn_v and the first eighth of ffn_down. */
    CHECK(ty("Q4_K_S", &mha, blk(3, "attn_v"), 4096) == EM_TYPE_Q5_K);
    CHECK(ty("Q4_K_S", &mha, blk(4, "attn_v"), 4096) == EM_TYPE_Q4_K);
    CHECK(ty("Q4_K_S", &mha, blk(3, "ffn_down"), 11008) == EM_TYPE_Q5_K);
    CHECK(ty("Q4_K_S", &mha, blk(4, "ffn_down"), 11008) == EM_TYPE_Q4_K);
    /* IQ4_NL / IQ4_XS: attn_v Q5_K with GQA >= 4; first eighth of ffn_down. */
    CHECK(ty("IQ4_NL", &gqa4, blk(9, "attn_v"), 4096) == EM_TYPE_Q5_K);
    CHECK(ty("IQ4_NL", &mha, blk(9, "attn_v"), 4096) == EM_TYPE_IQ4_NL);
    CHECK(ty("IQ4_XS", &mha, blk(0, "ffn_down"), 11008) == EM_TYPE_Q5_K);
    CHECK(ty("IQ4_XS", &mha, blk(4, "ffn_down"), 11008) == EM_TYPE_IQ4_XS);
    CHECK(ty("IQ4_XS", &mha, "output.weight", 4096) == EM_TYPE_Q6_K);
    /* Legacy types: only the output changes; Q8_0 keeps even that. */
    CHECK(ty("Q4_0", &mha, "output.weight", 4096) == EM_TYPE_Q6_K);
    CHECK(ty("Q4_0", &mha, blk(0, "ffn_down"), 11008) == EM_TYPE_Q4_0);
    CHECK(ty("Q5_1", &mha, "token_embd.weight", 4096) == EM_TYPE_Q5_1);
    CHECK(ty("Q8_0", &mha, "output.weight", 4096) == EM_TYPE_Q8_0);
    CHECK(ty("Q6_K", &mha, "output.weight", 4096) == EM_TYPE_Q6_K);
    /* Float targets convert every matrix alike. */
    CHECK(ty("F16", &mha, "output.weight", 4096) == EM_TYPE_F16);
    CHECK(ty("BF16", &mha, blk(0, "ffn_down"), 11008) == EM_TYPE_BF16);
    CHECK(ty("F32", &mha, "token_embd.weight", 4096) == EM_TYPE_F32);
    /* Pure K types: no rules at all. */
    CHECK(ty("Q4_K", &mha, "output.weight", 4096) == EM_TYPE_Q4_K);
    CHECK(ty("Q3_K", &mha, blk(0, "attn_v"), 4096) == EM_TYPE_Q3_K);
    CHECK(ty("Q5_K", &mha, blk(0, "ffn_down"), 11008) == EM_TYPE_Q5_K);
}

/* Tied embeddings: token_embd is the output matrix and gets its rule. */
static void test_tied(void) {
    em_mix_model mm = {.n_layer = 16, .n_gqa = 4, .has_output = false};
    CHECK(ty("Q4_K_M", &mm, "token_embd.weight", 2048) == EM_TYPE_Q6_K);
    CHECK(ty("Q4_0", &mm, "token_embd.weight", 2048) == EM_TYPE_Q6_K);
    CHECK(ty("Q8_0", &mm, "token_embd.weight", 2048) == EM_TYPE_Q8_0);
    mm.has_output = true;
    CHECK(ty("Q4_K_M", &mm, "token_embd.weight", 2048) == EM_TYPE_Q4_K);
}

/* Rows that no 256-block tiles fall back as llama.cpp does. */
static void test_fallback(void) {
    em_mix_model mm = {.n_layer = 8, .n_gqa = 1, .has_output = true};
    const em_mix *m = em_mix_find("Q4_K_M");
    bool fb = false;
    CHECK(em_mix_tensor_type(m, &mm, "blk.5.attn_q.weight", 2, 96, EM_TYPE_F32, &fb) == EM_TYPE_Q5_0 && fb);
    CHECK(em_mix_tensor_type(m, &mm, "blk.5.attn_q.weight", 2, 256, EM_TYPE_F32, &fb) == EM_TYPE_Q4_K && !fb);
    /* Q6_K layers fall back to Q8_0, Q5_K to Q5_1, Q2_K/Q3_K/IQ4_XS to IQ4_NL. */
    CHECK(em_mix_tensor_type(m, &mm, "blk.0.ffn_down.weight", 2, 96, EM_TYPE_F32, &fb) == EM_TYPE_Q8_0 && fb);
    CHECK(ty("Q5_K_S", &mm, blk(3, "attn_q"), 160) == EM_TYPE_Q5_1);
    CHECK(ty("Q2_K", &mm, blk(3, "ffn_up"), 160) == EM_TYPE_IQ4_NL);
    CHECK(ty("Q3_K_S", &mm, blk(3, "ffn_up"), 160) == EM_TYPE_IQ4_NL);
    CHECK(ty("IQ4_XS", &mm, blk(3, "ffn_up"), 160) == EM_TYPE_IQ4_NL);
    /* The output with rows that fit no 256-block is Q8_0. */
    CHECK(ty("Q4_K_M", &mm, "output.weight", 96) == EM_TYPE_Q8_0);
    /* Rows that fit no 32-block either become F16. */
    CHECK(ty("Q4_K_M", &mm, blk(3, "attn_q"), 100) == EM_TYPE_F16);
    CHECK(ty("Q4_0", &mm, blk(3, "attn_q"), 100) == EM_TYPE_F16);
    CHECK(ty("Q8_0", &mm, "output.weight", 100) == EM_TYPE_F16);
    CHECK(ty("F16", &mm, blk(3, "attn_q"), 100) == EM_TYPE_F16);
}

static void test_moe_and_skips(void) {
    em_mix_model mm = {.n_layer = 32, .n_gqa = 4, .n_expert = 8, .has_output = true};
    CHECK(ty("Q4_K_M", &mm, blk(5, "attn_v"), 4096) == EM_TYPE_Q8_0);
    CHECK(ty("Q4_K_M", &mm, blk(5, "attn_k"), 4096) == EM_TYPE_Q8_0);
    CHECK(ty("Q4_K_M", &mm, blk(5, "attn_output"), 4096) == EM_TYPE_Q5_K);
    CHECK(ty("Q4_K_M", &mm, blk(0, "ffn_down_exps"), 14336) == EM_TYPE_Q6_K);
    CHECK(ty("Q5_K_M", &mm, blk(5, "attn_output"), 4096) == EM_TYPE_Q5_K);
    const em_mix *m = em_mix_find("Q4_K_M");
    /* Never converted: routers, norms, 1-D tensors, non-weights. */
    CHECK(em_mix_tensor_type(m, &mm, "blk.0.ffn_gate_inp.weight", 2, 4096, EM_TYPE_F32, NULL) == EM_TYPE_F32);
    CHECK(em_mix_tensor_type(m, &mm, "blk.0.attn_norm.weight", 1, 4096, EM_TYPE_F32, NULL) == EM_TYPE_F32);
    CHECK(em_mix_tensor_type(m, &mm, "blk.0.attn_q_norm.weight", 2, 256, EM_TYPE_F32, NULL) == EM_TYPE_F32);
    CHECK(em_mix_tensor_type(m, &mm, "blk.0.attn_q.bias", 1, 4096, EM_TYPE_F32, NULL) == EM_TYPE_F32);
    CHECK(em_mix_tensor_type(m, &mm, "rope_freqs.weight", 1, 64, EM_TYPE_F32, NULL) == EM_TYPE_F32);
    CHECK(em_mix_tensor_type(m, &mm, "blk.0.attn_q.weight", 1, 4096, EM_TYPE_F16, NULL) == EM_TYPE_F16);
    CHECK(!em_mix_quantizable("blk.0.attn_q.weight", 1));
    CHECK(em_mix_quantizable("blk.0.attn_q.weight", 2));
    CHECK(em_mix_quantizable("blk.0.ffn_up_exps.weight", 3));
    CHECK(!em_mix_quantizable("position_embd.weight", 2));
    CHECK(!em_mix_quantizable("blk.0.attn_q.bias", 2));
}

/* Reads the facts of a real file. */
static void test_model_facts(const char *root) {
    char path[1024];
    snprintf(path, sizeof path, "%s/models/tiny-256/tiny-256-f32.gguf", root);
    em_gguf *g = NULL;
    CHECK_OK(em_gguf_open(&g, path));
    if (!g) return;
    em_mix_model mm;
    CHECK_OK(em_mix_model_from_gguf(g, &mm));
    CHECK(mm.n_layer == 4 && mm.n_gqa == 2 && mm.n_expert == 0 && mm.has_output);
    em_gguf_close(g);
}

/* For each tiny-256 file that llama.cpp quantized from the same F32
 * model, the rules must pick exactly the types that file holds. */
static void test_against_llama_cpp(const char *root) {
    static const char *const mixes[] = {"F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K",
                                        "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS"};
    char path[1024];
    snprintf(path, sizeof path, "%s/models/tiny-256/tiny-256-f32.gguf", root);
    em_gguf *src = NULL;
    CHECK_OK(em_gguf_open(&src, path));
    if (!src) return;
    em_mix_model mm;
    CHECK_OK(em_mix_model_from_gguf(src, &mm));
    int compared = 0;
    for (size_t k = 0; k < sizeof mixes / sizeof *mixes; k++) {
        const em_mix *mix = em_mix_find(mixes[k]);
        CHECK_MSG(mix != NULL, "mix %s", mixes[k]);
        snprintf(path, sizeof path, "%s/models/tiny-256/tiny-256-%s.gguf", root, mixes[k]);
        em_gguf *ref = NULL;
        CHECK_OK(em_gguf_open(&ref, path));
        if (!ref || !mix) {
            em_gguf_close(ref);
            continue;
        }
        int64_t ft = -1;
        CHECK_OK(em_gguf_get_i64(ref, "general.file_type", &ft));
        CHECK_MSG(ft == (int64_t)mix->ftype, "%s: file_type %lld, mix says %d", mixes[k], (long long)ft,
                  (int)mix->ftype);
        CHECK(em_gguf_n_tensors(ref) == em_gguf_n_tensors(src));
        for (int64_t i = 0; i < em_gguf_n_tensors(src); i++) {
            const em_gguf_tensor *t = em_gguf_tensor_at(src, i);
            char name[96];
            size_t n = (size_t)EM_MIN(t->name.len, (uint64_t)sizeof name - 1);
            memcpy(name, t->name.ptr, n);
            name[n] = '\0';
            const em_gguf_tensor *rt = em_gguf_find_tensor(ref, name);
            CHECK_MSG(rt != NULL, "%s: no tensor %s", mixes[k], name);
            if (!rt) continue;
            uint32_t dims = 4;
            while (dims > 1 && t->ne[dims - 1] == 1) dims--;
            em_type got = em_mix_tensor_type(mix, &mm, name, dims, t->ne[0], t->type, NULL);
            CHECK_MSG(got == rt->type, "%s: %s: rules say %s, llama.cpp wrote %s", mixes[k], name,
                      em_type_name(got), em_type_name(rt->type));
            compared++;
        }
        em_gguf_close(ref);
    }
    CHECK(compared == (int)(sizeof mixes / sizeof *mixes) * (int)em_gguf_n_tensors(src));
    printf("compared %d tensor types with llama.cpp's files\n", compared);
    em_gguf_close(src);
}

int main(void) {
    test_table();
    test_q4_k_m();
    test_other_mixes();
    test_tied();
    test_fallback();
    test_moe_and_skips();
    SKIP_REST_WITHOUT_TEST_DATA();
    const char *root = getenv("EMBER_TEST_DATA");
    test_model_facts(root);
    test_against_llama_cpp(root);
    TEST_END();
}
