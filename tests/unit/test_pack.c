/*
 * test_pack.c - the x8 packed weight layouts (quant/pack.h): packing is a
 * pure rearrangement (every block comes back unchanged), the scalar twin
 * equals the scalar reference bit for bit, and every kernel set's packed
 * kernel equals the scalar reference up to float rounding, on quantized
 * rows and on rows of random bytes, for activation row counts that are
 * and are not multiples of the tiles, with wide output strides (nothing
 * outside the asked rectangle may be written).
 */
#include "model/model.h"
#include "quant/blocks.h"
#include "quant/gemm.h"
#include "quant/pack.h"
#include "quant/quant.h"
#include "test.h"

static unsigned rng = 4242;

static uint32_t next_u32(void) {
    rng = rng * 1664525u + 1013904223u;
    return rng;
}

static float frand(void) { return (float)((next_u32() >> 8) & 0xffffff) / 8388608.0f - 1.0f; }

/* nw rows of type t: quantized random floats, or random bytes with finite
 * fp16 scales (every level pattern occurs, extremes included). */
static void make_rows(em_type t, int64_t k, int64_t nw, uint8_t *w, bool raw) {
    const size_t ws = em_row_size(t, k), bs = em_get_type_traits(t)->type_size;
    float *tmp = malloc((size_t)k * sizeof(float));
    for (int64_t j = 0; j < nw; j++) {
        uint8_t *row = w + (size_t)j * ws;
        if (raw) {
            for (size_t i = 0; i < ws; i++) row[i] = (uint8_t)(next_u32() >> 24);
            for (int64_t b = 0; b < k / 32; b++) {
                const uint16_t d = em_fp32_to_fp16((0.001f + 0.02f * (frand() + 1.0f)) * (next_u32() & 1 ? 1 : -1));
                memcpy(row + (size_t)b * bs, &d, 2);
            }
            continue;
        }
        for (int64_t i = 0; i < k; i++) tmp[i] = frand() * (1 + (i % 5 == 0) * 4);
        CHECK_OK(em_quantize_row(t, tmp, row, k, NULL));
    }
    free(tmp);
}

/* Packing moves bytes and loses none. */
static void test_roundtrip(em_type t) {
    const int64_t k = 96, nw = 16;
    const size_t ws = em_row_size(t, k), bs = em_get_type_traits(t)->type_size;
    uint8_t *w = malloc(ws * nw), *p = malloc(ws * nw), blk[64];
    make_rows(t, k, nw, w, true);
    CHECK(em_pack_fits(t, k, nw));
    CHECK(!em_pack_fits(t, k, nw + 1));
    CHECK(!em_pack_fits(t, EM_PACK_MAX_K + 32, nw));
    em_pack_matrix(t, k, nw, w, p);
    int bad = 0;
    for (int64_t j = 0; j < nw; j++)
        for (int64_t b = 0; b < k / 32; b++) {
            em_pack_get_block(t, k, p + (size_t)(j / 8 * 8) * ws, (int)(j % 8), b, blk);
            bad += memcmp(blk, w + (size_t)j * ws + (size_t)b * bs, bs) != 0;
        }
    CHECK_MSG(bad == 0, "%s: %d blocks changed by packing", em_type_name(t), bad);
    free(w);
    free(p);
}

/* One product of a packed matrix; returns the count of wrong outputs. */
static int check_packed(const char *isa, em_type t, int64_t k, int64_t nw, int64_t na, bool raw) {
    const size_t ws = em_row_size(t, k), as = em_row_size(EM_TYPE_Q8_0, k);
    const int64_t ldo = nw + 5;
    uint8_t *w = malloc(ws * (size_t)nw), *p = malloc(ws * (size_t)nw), *a = malloc(as * (size_t)na);
    float *af = malloc((size_t)k * sizeof(float)), *wf = malloc((size_t)k * sizeof(float));
    float *out = malloc((size_t)(na * ldo) * sizeof(float)), *twin = malloc((size_t)(na * ldo) * sizeof(float));
    make_rows(t, k, nw, w, raw);
    em_pack_matrix(t, k, nw, w, p);
    for (int64_t r = 0; r < na; r++) {
        for (int64_t i = 0; i < k; i++) af[i] = frand() * (float)(r + 1);
        CHECK_OK(em_quantize_row(EM_TYPE_Q8_0, af, a + (size_t)r * as, k, NULL));
    }
    const float sentinel = 777.25f;
    for (int64_t i = 0; i < na * ldo; i++) out[i] = twin[i] = sentinel;
    em_gemm_packed(t, k, p, ws, nw, a, as, na, out, ldo);
    em_gemm_packed_generic(t, k, p, ws, nw, a, as, na, twin, ldo);
    int bad = 0;
    for (int64_t r = 0; r < na; r++)
        for (int64_t j = 0; j < ldo; j++) {
            const float got = out[r * ldo + j];
            if (j >= nw) {
                bad += got != sentinel || twin[r * ldo + j] != sentinel;
                continue;
            }
            const uint8_t *wr = w + (size_t)j * ws, *ar = a + (size_t)r * as;
            const float ref = em_vec_dot_generic(t, k, wr, ar);
            /* The twin keeps the reference's order: equal bit for bit. */
            bad += memcmp(&twin[r * ldo + j], &ref, sizeof ref) != 0;
            double mag = 0;
            CHECK_OK(em_dequantize_row(t, wr, wf, k));
            CHECK_OK(em_dequantize_row(EM_TYPE_Q8_0, ar, af, k));
            for (int64_t i = 0; i < k; i++) mag += fabs((double)wf[i] * af[i]);
            if (!(fabs((double)got - ref) <= 2e-6 * mag + 1e-6 * fabs(ref) + 1e-30)) {
                if (bad < 3)
                    fprintf(stderr, "  %s %s k=%lld nw=%lld na=%lld raw=%d: out[%lld][%lld] = %.9g, reference %.9g\n",
                            isa, em_type_name(t), (long long)k, (long long)nw, (long long)na, raw, (long long)r,
                            (long long)j, got, ref);
                bad++;
            }
        }
    free(w);
    free(p);
    free(a);
    free(af);
    free(wf);
    free(out);
    free(twin);
    return bad;
}

static void test_kernels(void) {
    static const char *isas[] = {"generic", "avx2", "avxvnni", "avx512"};
    static const em_type types[] = {EM_TYPE_Q4_0, EM_TYPE_Q8_0};
    static const int64_t ks[] = {32, 96, 256, 257 * 32, 4096};
    static const int64_t nws[] = {8, 16, 40};
    static const int64_t nas[] = {1, 2, 3, 4, 5, 6, 7, 10, 13};
    int n_kernels = 0;
    for (size_t s = 0; s < sizeof isas / sizeof *isas; s++) {
        if (em_kernels_select(isas[s]) != 0) {
            printf("kernel set %s: this CPU lacks it, skipped\n", isas[s]);
            continue;
        }
        for (size_t ti = 0; ti < 2; ti++) {
            const em_type t = types[ti];
            n_kernels += em_gemm_packed_kernel(t) != NULL;
            int bad = 0;
            for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++)
                for (size_t wi = 0; wi < sizeof nws / sizeof *nws; wi++)
                    for (size_t ai = 0; ai < sizeof nas / sizeof *nas; ai++) {
                        if (ki > 1 && (wi + ai + ki) % 3 != 0) continue; /* a diagonal of the long rows */
                        bad += check_packed(isas[s], t, ks[ki], nws[wi], nas[ai], false);
                        bad += check_packed(isas[s], t, ks[ki], nws[wi], nas[ai], true);
                    }
            printf("packed %s %s: %s kernel, %d wrong outputs\n", isas[s], em_type_name(t),
                   em_gemm_packed_kernel(t) ? "SIMD" : "scalar", bad);
            CHECK_MSG(bad == 0, "packed %s %s: %d wrong outputs", isas[s], em_type_name(t), bad);
        }
    }
#if defined(EM_HAVE_X86_GEMM)
    if (em_cpu_hw_features() & EM_CPU_AVX512_VNNI) CHECK(n_kernels >= 2);
#endif
    CHECK(em_kernels_select(NULL) == 0);
}

/* A model loaded with packed weights (mapped read-only, and read into
 * memory) gives the logits of the same model loaded without: the kernels
 * differ in the order of float additions only. */
static void test_model(const char *rel) {
    char path[1024];
    if (!test_data_path(path, sizeof path, rel)) return;
    enum { N = 10 };
    const em_token toks[N] = {1, 12, 40, 7, 99, 3, 250, 17, 64, 5};
    float *logits[3] = {0};
    int nv = 0;
    for (int v = 0; v < 3; v++) {
        em_model_params mp = em_model_default_params();
        mp.repack = v > 0;
        mp.use_mmap = v != 2;
        em_model *m = NULL;
        em_context *c = NULL;
        CHECK_OK(em_model_load(&m, path, &mp));
        if (!m) return;
        /* Every dense matrix of a packable type is packed, or none is. */
        const em_tensor *wq = &m->layers[0].wq;
        const bool packs = em_pack_fits(wq->type, wq->ne[0], wq->ne[1]) && em_gemm_packed_kernel(wq->type);
        CHECK_MSG((wq->pack != 0) == (v > 0 && packs), "%s: wq.pack %d with repack %d", rel, wq->pack, v > 0);
        CHECK(v == 0 || !packs || m->packed != NULL);
        nv = em_model_n_vocab(m);
        em_context_params cp = em_context_default_params();
        cp.n_ctx = 32;
        cp.n_batch = 16;
        cp.n_threads = 2;
        CHECK_OK(em_context_init(&c, m, &cp));
        em_batch b;
        CHECK_OK(em_batch_init(&b, 16));
        for (int i = 0; i < N; i++) em_batch_add(&b, toks[i] % nv, i, 0, true);
        if (c) CHECK_OK(em_decode(c, &b));
        logits[v] = calloc((size_t)N * (size_t)nv, sizeof(float));
        for (int i = 0; c && i < N; i++) {
            const float *l = em_get_logits(c, i);
            CHECK(l != NULL);
            if (l) memcpy(logits[v] + (size_t)i * nv, l, (size_t)nv * sizeof(float));
        }
        /* Generation (one row) reads the same packed weights. */
        em_batch_clear(&b);
        em_batch_add(&b, 2, N, 0, true);
        if (c) CHECK_OK(em_decode(c, &b));
        em_batch_free(&b);
        em_context_free(c);
        em_model_free(m);
    }
    float worst = 0, scale = 0;
    for (size_t i = 0; i < (size_t)N * (size_t)nv; i++) scale = fmaxf(scale, fabsf(logits[0][i]));
    for (int v = 1; v < 3; v++)
        for (size_t i = 0; i < (size_t)N * (size_t)nv; i++) worst = fmaxf(worst, fabsf(logits[v][i] - logits[0][i]));
    printf("%s: packed vs file layout, largest logit difference %.3g (of %.3g)\n", rel, worst, scale);
    CHECK_MSG(worst <= 1e-4f * scale, "%s: packed weights change the logits by %g", rel, worst);
    for (int v = 0; v < 3; v++) free(logits[v]);
}

int main(void) {
    test_roundtrip(EM_TYPE_Q4_0);
    test_roundtrip(EM_TYPE_Q8_0);
    CHECK(em_pack_rows(EM_TYPE_Q4_K) == 0 || em_pack_rows(EM_TYPE_Q4_K) == EM_PACK_ROWS);
    test_kernels();
    test_model("models/tiny-256/tiny-256-Q4_0.gguf");
    test_model("models/arch/tiny-qwen3-Q8_0.gguf");
    TEST_END();
}
