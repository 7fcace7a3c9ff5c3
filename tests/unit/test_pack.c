/*
 * test_pack.c - the x8 packed weight layouts (quant/pack.h): packing is a
 * pure rearrangement (every block comes back unchanged), the scalar twin
 * equals the scalar reference bit for bit, and every kernel set's packed
 * kernel equals the scalar reference up to float rounding, on quantized
 * rows and on rows of random bytes, for activation row counts that are
 * and are not multiples of the tiles, with wide output strides (nothing
 * outside the asked rectangle may be written); and a whole model gives
 * the same logits packed as in the file's layout (see test_model).
 */
#include "model/model.h"
#include "quant/blocks.h"
#include "quant/gemm.h"
#include "quant/pack.h"
#include "quant/quant.h"
#include "test.h"
#include "block_pool.h"

static unsigned rng = 4242;

static uint32_t next_u32(void) {
    rng = rng * 1664525u + 1013904223u;
    return rng;
}

static float frand(void) { return (float)((next_u32() >> 8) & 0xffffff) / 8388608.0f - 1.0f; }

/* nw rows of type t: quantized random floats (blocks of the pool, in
 * random order), or random bytes with finite fp16 scales (every level
 * pattern occurs, extremes included; Q4_K's and Q5_K's dmin follows its
 * d). */
static void make_rows(em_type t, int64_t k, int64_t nw, uint8_t *w, bool raw) {
    const size_t ws = em_row_size(t, k), bs = em_get_type_traits(t)->type_size;
    for (int64_t j = 0; j < nw; j++) {
        uint8_t *row = w + (size_t)j * ws;
        if (raw) {
            for (size_t i = 0; i < ws; i++) row[i] = (uint8_t)(next_u32() >> 24);
            const int scales = t == EM_TYPE_Q4_K || t == EM_TYPE_Q5_K ? 2 : 1;
            /* Q6_K's d is its last field. */
            const size_t at = t == EM_TYPE_Q6_K ? offsetof(em_block_q6_k, d) : 0;
            for (int64_t b = 0; b < k / em_get_type_traits(t)->block_size; b++)
                for (int f = 0; f < scales; f++) {
                    const uint16_t d = em_fp32_to_fp16((0.001f + 0.02f * (frand() + 1.0f)) * (next_u32() & 1 ? 1 : -1));
                    memcpy(row + (size_t)b * bs + at + 2 * f, &d, 2);
                }
            continue;
        }
        test_pool_row(t, k, row, frand, next_u32);
    }
}

/* Packing moves bytes and loses none. */
static void test_roundtrip(em_type t) {
    const int64_t bk = em_get_type_traits(t)->block_size, k = 3 * bk, nw = 32, g = em_pack_rows(t);
    const size_t ws = em_row_size(t, k), bs = em_get_type_traits(t)->type_size;
    uint8_t *w = malloc(ws * nw), *p = malloc(ws * nw), blk[256];
    make_rows(t, k, nw, w, true);
    CHECK(em_pack_fits(t, k, nw));
    CHECK(!em_pack_fits(t, k, nw + 1));
    CHECK(!em_pack_fits(t, k, nw - g / 2));
    if (bk > 32) CHECK(!em_pack_fits(t, k + 32, nw));
    CHECK(!em_pack_fits(t, EM_PACK_MAX_K + bk, nw));
    em_pack_matrix(t, k, nw, w, p);
    int bad = 0;
    for (int64_t j = 0; j < nw; j++)
        for (int64_t b = 0; b < k / bk; b++) {
            em_pack_get_block(t, k, p + (size_t)(j / g * g) * ws, (int)(j % g), b, blk);
            bad += memcmp(blk, w + (size_t)j * ws + (size_t)b * bs, bs) != 0;
        }
    CHECK_MSG(bad == 0, "%s: %d blocks changed by packing", em_type_name(t), bad);
    free(w);
    free(p);
}

/* One product of a packed matrix, computed with each of the n_sets kernel
 * sets in sets[] (bad[s] counts set s's wrong outputs) and once with the
 * scalar twin (*bad_twin counts its outputs that differ from the reference
 * by one bit).  The scalar twin and reference do not depend on the kernel
 * set, and cost nearly all of this test's time (above all under the
 * sanitizers), so they run once per product, not once per set. */
static void check_packed(const char *const *sets, int n_sets, em_type t, int64_t k, int64_t nw, int64_t na, bool raw,
                         int *bad, int *bad_twin) {
    const em_type at = em_get_type_traits(t)->vec_dot_type;
    const size_t ws = em_row_size(t, k), as = em_row_size(at, k);
    const int64_t ldo = nw + 5;
    uint8_t *w = malloc(ws * (size_t)nw), *p = malloc(ws * (size_t)nw), *a = malloc(as * (size_t)na);
    float *af = malloc((size_t)k * sizeof(float));
    /* Every row dequantized once (not once per output) for the tolerance. */
    float *wf = malloc((size_t)(nw * k) * sizeof(float)), *adq = malloc((size_t)(na * k) * sizeof(float));
    float *out = malloc((size_t)(na * ldo) * sizeof(float)), *twin = malloc((size_t)(na * ldo) * sizeof(float));
    float *ref = malloc((size_t)(na * nw) * sizeof(float));
    double *tol = malloc((size_t)(na * nw) * sizeof(double));
    make_rows(t, k, nw, w, raw);
    em_pack_matrix(t, k, nw, w, p);
    for (int64_t r = 0; r < na; r++) {
        for (int64_t i = 0; i < k; i++) af[i] = frand() * (float)(r + 1);
        CHECK_OK(em_quantize_row(at, af, a + (size_t)r * as, k, NULL));
        CHECK_OK(em_dequantize_row(at, a + (size_t)r * as, adq + (size_t)(r * k), k));
    }
    for (int64_t j = 0; j < nw; j++) CHECK_OK(em_dequantize_row(t, w + (size_t)j * ws, wf + (size_t)(j * k), k));
    const float sentinel = 777.25f;
    for (int64_t i = 0; i < na * ldo; i++) twin[i] = sentinel;
    em_gemm_packed_generic(t, k, p, ws, nw, a, as, na, twin, ldo);
    for (int64_t r = 0; r < na; r++)
        for (int64_t j = 0; j < ldo; j++) {
            if (j >= nw) {
                *bad_twin += twin[r * ldo + j] != sentinel;
                continue;
            }
            const float rf = ref[r * nw + j] = em_vec_dot_generic(t, k, w + (size_t)j * ws, a + (size_t)r * as);
            /* The twin keeps the reference's order: equal bit for bit. */
            *bad_twin += memcmp(&twin[r * ldo + j], &rf, sizeof rf) != 0;
            double mag = 0;
            const float *wd = wf + (size_t)(j * k), *ad = adq + (size_t)(r * k);
            for (int64_t i = 0; i < k; i++) mag += fabs((double)wd[i] * ad[i]);
            tol[r * nw + j] = 2e-6 * mag + 1e-6 * fabs(rf) + 1e-30;
        }
    for (int s = 0; s < n_sets; s++) {
        CHECK(em_kernels_select(sets[s]) == 0);
        for (int64_t i = 0; i < na * ldo; i++) out[i] = sentinel;
        em_gemm_packed(t, k, p, ws, nw, a, as, na, out, ldo);
        /* The same product inside a product step, where the prompt tiles
         * read the step's interleaved copy of the rows (and the AVX-VNNI
         * Q8_0 tiles of 5 rows or more, tile_q8_vnni_wt, the transposed
         * weights): the same bits as outside one (into twin's buffer,
         * whose outputs were checked above). */
        for (int64_t i = 0; i < na * ldo; i++) twin[i] = sentinel;
        em_gemm_step_begin();
        em_gemm_packed(t, k, p, ws, nw, a, as, na, twin, ldo);
        em_gemm_step_end();
        for (int64_t i = 0; i < na * ldo; i++) bad[s] += memcmp(&out[i], &twin[i], sizeof *out) != 0;
        for (int64_t r = 0; r < na; r++)
            for (int64_t j = 0; j < ldo; j++) {
                const float got = out[r * ldo + j];
                if (j >= nw) {
                    bad[s] += got != sentinel;
                    continue;
                }
                const float rf = ref[r * nw + j];
                if (!(fabs((double)got - rf) <= tol[r * nw + j])) {
                    if (bad[s] < 3)
                        fprintf(stderr, "  %s %s k=%lld nw=%lld na=%lld raw=%d: out[%lld][%lld] = %.9g, reference %.9g\n",
                                sets[s], em_type_name(t), (long long)k, (long long)nw, (long long)na, raw,
                                (long long)r, (long long)j, got, rf);
                    bad[s]++;
                }
            }
    }
    free(w);
    free(p);
    free(a);
    free(af);
    free(wf);
    free(adq);
    free(out);
    free(twin);
    free(ref);
    free(tol);
}

/* Every kernel set this CPU runs, on the same products.  The generic
 * set's packed products are the scalar twin itself, checked against the
 * reference on every product anyway: it runs as a set only where no SIMD
 * set does. */
static void test_kernels(void) {
    static const char *simd[] = {"avx2", "avxvnni", "avx512"};
    static const em_type types[] = {EM_TYPE_Q4_0, EM_TYPE_Q8_0, EM_TYPE_Q4_K, EM_TYPE_Q5_K, EM_TYPE_Q6_K};
    static const int64_t ks[] = {32, 96, 256, 257 * 32, 4096};
    static const int64_t kks[] = {256, 768, 2048, 5632, 4096}; /* the K types': multiples of 256 */
    static const int64_t nws[] = {8, 16, 40};
    static const int64_t kws[] = {16, 32, 48};
    /* Activation rows: every tile height of the kernels and their
     * remainders (the AVX-512 Q8_0 kernel's 16-row tiles: 16, 22 = 16 + 6,
     * 33 = 16 + 16 + 1, 40 = 16 + 16 + 8). */
    static const int64_t nas[] = {1, 2, 3, 4, 5, 6, 7, 10, 13, 14, 16, 22, 33, 40};
    const char *sets[4];
    int n_sets = 0, n_kernels = 0;
    for (size_t s = 0; s < sizeof simd / sizeof *simd; s++) {
        if (em_kernels_select(simd[s]) == 0)
            sets[n_sets++] = simd[s];
        else
            printf("kernel set %s: this CPU lacks it, skipped\n", simd[s]);
    }
    if (n_sets == 0) sets[n_sets++] = "generic";
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        const em_type t = types[ti];
        const bool kq = t == EM_TYPE_Q4_K || t == EM_TYPE_Q5_K || t == EM_TYPE_Q6_K;
        int bad[4] = {0}, bad_twin = 0;
        for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++)
            for (size_t wi = 0; wi < sizeof nws / sizeof *nws; wi++)
                for (size_t ai = 0; ai < sizeof nas / sizeof *nas; ai++) {
                    if (ki > 1 && (wi + ai + ki) % 3 != 0) continue; /* a diagonal of the long rows */
                    const int64_t k = kq ? kks[ki] : ks[ki], nw = kq ? kws[wi] : nws[wi];
                    check_packed(sets, n_sets, t, k, nw, nas[ai], false, bad, &bad_twin);
                    check_packed(sets, n_sets, t, k, nw, nas[ai], true, bad, &bad_twin);
                }
        printf("packed %s: scalar twin, %d outputs off the reference\n", em_type_name(t), bad_twin);
        CHECK_MSG(bad_twin == 0, "packed %s: the scalar twin differs from the reference in %d outputs", em_type_name(t),
                  bad_twin);
        for (int s = 0; s < n_sets; s++) {
            CHECK(em_kernels_select(sets[s]) == 0);
            n_kernels += em_gemm_packed_kernel(t) != NULL;
            printf("packed %s %s: %s kernel, %d wrong outputs\n", sets[s], em_type_name(t),
                   em_gemm_packed_kernel(t) ? "SIMD" : "scalar", bad[s]);
            CHECK_MSG(bad[s] == 0, "packed %s %s: %d wrong outputs", sets[s], em_type_name(t), bad[s]);
        }
    }
#if defined(EM_HAVE_X86_GEMM)
    if (em_cpu_hw_features() & EM_CPU_AVX512_VNNI) CHECK(n_kernels >= 5);
#endif
    CHECK(em_kernels_select(NULL) == 0);
}

/* The packed kernels (one activation row, and the prompt tiles) at the
 * bounds of their 16-bit steps: every weight level at an extreme (Q4_0 nibbles 15 and 0,
 * Q8_0 quants 127 and -128) against activation quants of +-127, with unit
 * scales, so that every output is an integer of up to 128 * 32512 that
 * float holds exactly, whatever the order of the additions: the kernels
 * must equal the scalar twin bit for bit.  With na rows of activations
 * (each row's pattern shifted by its index) the same bounds hold for the
 * prompt tiles: 3 rows take AVX2 Q8_0's tile that transposes its own
 * blocks, 16 rows its transposed group with the sign corrections (and
 * inside a step AVX-VNNI's tile_q8_vnni_wt, whose weight-sum corrections
 * are largest with every quant -128). */
static int check_extremes(em_type t, int64_t k, int64_t na, int wpat, int apat) {
    enum { NW = 16, NA = 48 };
    const size_t ws = em_row_size(t, k), as = em_row_size(EM_TYPE_Q8_0, k), bs = em_get_type_traits(t)->type_size;
    uint8_t *w = calloc(NW, ws), *p = calloc(NW, ws), *a = calloc(NA, as);
    float out[NA * NW], twin[NA * NW];
    const uint16_t one = em_fp32_to_fp16(1.0f);
    for (int64_t j = 0; j < NW; j++)
        for (int64_t b = 0; b < k / 32; b++) {
            uint8_t *blk = w + (size_t)j * ws + (size_t)b * bs;
            memcpy(blk, &one, 2);
            /* wpat 0: all high, 1: all low, 2: by row, 3: by byte. */
            for (size_t i = 2; i < bs; i++) {
                const bool hi = wpat == 0 || (wpat == 2 && j % 2 == 0) || (wpat == 3 && i % 2 == 0);
                blk[i] = t == EM_TYPE_Q4_0 ? (hi ? 0xff : 0x00) : (hi ? 0x7f : 0x80);
            }
        }
    for (int64_t r = 0; r < na; r++)
        for (int64_t b = 0; b < k / 32; b++) {
            uint8_t *blk = a + (size_t)r * as + (size_t)b * sizeof(em_block_q8_0);
            memcpy(blk, &one, 2);
            for (int i = 0; i < 32; i++)
                blk[2 + i] = (uint8_t)(int8_t)(apat == 0 || (apat == 2 && (i + r) % 3 == 0) ? 127 : -127);
        }
    em_pack_matrix(t, k, NW, w, p);
    em_gemm_packed(t, k, p, ws, NW, a, as, na, out, NW);
    em_gemm_packed_generic(t, k, p, ws, NW, a, as, na, twin, NW);
    int bad = memcmp(out, twin, (size_t)na * NW * sizeof *out) != 0;
    /* Inside a product step the prompt tiles read the step's interleaved
     * copy (the AVX-VNNI Q8_0 tile of 16 rows its quants + 128, times the
     * signed weights of the transposed group): the same bits. */
    em_gemm_step_begin();
    em_gemm_packed(t, k, p, ws, NW, a, as, na, out, NW);
    em_gemm_step_end();
    bad += memcmp(out, twin, (size_t)na * NW * sizeof *out) != 0;
    if (bad) fprintf(stderr, "  %s k=%lld weights %d activations %d: %.9g, twin %.9g\n", em_type_name(t), (long long)k, wpat, apat, out[0], twin[0]);
    free(w);
    free(p);
    free(a);
    return bad;
}

static void test_gemv_extremes(void) {
    static const char *isas[] = {"avx2", "avxvnni", "avx512"};
    for (size_t s = 0; s < sizeof isas / sizeof *isas; s++) {
        if (em_kernels_select(isas[s]) != 0) continue;
        int bad = 0;
        for (int ti = 0; ti < 2; ti++)
            for (int wp = 0; wp < 4; wp++)
                for (int ap = 0; ap < 3; ap++) {
                    /* 48 rows: inside a step, AVX-512's regrouped tile (tile_q8_512_wq) */
                    for (int64_t na = 1; na <= 48; na = na == 1 ? 3 : na == 3 ? 16 : na == 16 ? 48 : 49) {
                        bad += check_extremes(ti ? EM_TYPE_Q8_0 : EM_TYPE_Q4_0, 32, na, wp, ap);
                        bad += check_extremes(ti ? EM_TYPE_Q8_0 : EM_TYPE_Q4_0, 4096, na, wp, ap);
                    }
                }
        CHECK_MSG(bad == 0, "packed %s: %d products off at the extremes", isas[s], bad);
    }
    CHECK(em_kernels_select(NULL) == 0);
}

/* The K-quant kernels at the bounds of their integer steps: every Q5_K
 * level 31 (or 0, by pattern), every scale and min 63, against activation
 * quants of +-127 (all one sign, or mixed), so that the AVX2 kernel's
 * int16 sums of byte products are at their largest (four runs of
 * vpmaddubsw pairs fit int16, eight would not); Q6_K the same with every
 * level 63 (or 0) and scales 127 (two runs fit, four would not).  k is 512 or the 1.1B
 * model's 5632 (one activation row: the plain AVX2 matrix-vector kernels
 * over as many super-blocks as generation takes).  The outputs are compared
 * with the scalar reference as in check_packed. */
static int check_k_extremes(em_type t, int64_t K, int wpat, int apat) {
    enum { NW = 16 };
    const size_t ws = em_row_size(t, K), as = em_row_size(EM_TYPE_Q8_K, K), bs = em_get_type_traits(t)->type_size;
    uint8_t *w = malloc(NW * ws), *p = malloc(NW * ws), *a = malloc(as);
    float *x = malloc((size_t)K * sizeof *x), out[NW];
    const uint16_t one = em_fp32_to_fp16(1.0f);
    for (int64_t j = 0; j < NW; j++)
        for (int64_t b = 0; b < K / EM_QK_K; b++) {
            uint8_t *blk = w + (size_t)j * ws + (size_t)b * bs;
            /* wpat 0: all high, 1: by row, 2: by byte. */
            for (size_t i = 0; i < bs; i++) blk[i] = wpat == 0 || (wpat == 1 && j % 2 == 0) || (wpat == 2 && i % 3 != 0) ? 0xff : 0;
            if (t == EM_TYPE_Q6_K) { /* every level 63 or 0, scales 127 */
                memset(blk + offsetof(em_block_q6_k, scales), 127, 16);
                memcpy(blk + offsetof(em_block_q6_k, d), &one, 2);
                continue;
            }
            memcpy(blk, &one, 2);
            memcpy(blk + 2, &one, 2);
            memset(blk + 4, 0xff, 12); /* scales and mins 63 */
        }
    for (int i = 0; i < K; i++) x[i] = apat == 0 || (apat == 2 && i % 5 == 0) ? 1.0f : -1.0f;
    CHECK_OK(em_quantize_row(EM_TYPE_Q8_K, x, a, K, NULL));
    em_pack_matrix(t, K, NW, w, p);
    em_gemm_packed(t, K, p, ws, NW, a, as, 1, out, NW);
    int bad = 0;
    for (int j = 0; j < NW; j++) {
        const float ref = em_vec_dot_generic(t, K, w + (size_t)j * ws, a);
        if (!(fabsf(out[j] - ref) <= 1e-5f * (fabsf(ref) + 1e4f))) {
            if (bad++ == 0)
                fprintf(stderr, "  %s k=%lld weights %d activations %d: row %d %.9g, reference %.9g\n", em_type_name(t),
                        (long long)K, wpat, apat, j, out[j], ref);
        }
    }
    free(x);
    free(w);
    free(p);
    free(a);
    return bad;
}

static void test_k_extremes(void) {
    static const char *isas[] = {"avx2", "avxvnni", "avx512"};
    for (size_t s = 0; s < sizeof isas / sizeof *isas; s++) {
        if (em_kernels_select(isas[s]) != 0) continue;
        int bad = 0;
        for (int wp = 0; wp < 3; wp++)
            for (int ap = 0; ap < 3; ap++)
                for (int64_t k = 512; k <= 5632; k += 5120) {
                    bad += check_k_extremes(EM_TYPE_Q5_K, k, wp, ap);
                    bad += check_k_extremes(EM_TYPE_Q4_K, k, wp, ap);
                    bad += check_k_extremes(EM_TYPE_Q6_K, k, wp, ap);
                }
        CHECK_MSG(bad == 0, "packed Q4_K/Q5_K/Q6_K %s: %d products off at the extremes", isas[s], bad);
    }
    CHECK(em_kernels_select(NULL) == 0);
}

/* The token rows of the model tests: past 16 rows, so that every product
 * takes more than one tile, and every kernel more than one tile height. */
enum { N_TOK = 22 };
static const em_token model_toks[N_TOK] = {1,   12,  40,  7,   99,  3,   250, 17,  64,  5,   400,
                                           401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411};

/* Loads the model at path (packed or not, mapped or read into memory),
 * installs kernel set isa (NULL: the best this CPU runs), decodes the
 * N_TOK rows in batches of the sizes in parts (0-terminated), every row
 * asking for logits, and then one more row alone (generation after a long
 * batch).  Returns the (N_TOK + 1) rows of logits, or NULL. */
static float *model_logits(const char *path, bool repack, bool use_mmap, const char *isa, em_type kv, const int *parts,
                           int *n_vocab) {
    em_model_params mp = em_model_default_params();
    mp.repack = repack;
    mp.use_mmap = use_mmap;
    em_model *m = NULL;
    em_context *c = NULL;
    float *logits = NULL;
    CHECK_OK(em_model_load(&m, path, &mp));
    if (!m) return NULL;
    /* Every dense matrix of a packable type is packed, or none is. */
    const em_tensor *wq = &m->layers[0].wq;
    const bool packs = em_pack_fits(wq->type, wq->ne[0], wq->ne[1]) && em_gemm_packed_kernel(wq->type);
    CHECK_MSG((wq->pack != 0) == (repack && packs), "%s: wq.pack %d with repack %d", path, wq->pack, repack);
    CHECK(!repack || !packs || m->packed != NULL);
    /* The kernels may change now: the weights stay as loaded, and a packed
     * matrix without a packed kernel goes to the scalar twin. */
    CHECK(em_kernels_select(isa) == 0);
    const int nv = *n_vocab = em_model_n_vocab(m);
    em_context_params cp = em_context_default_params();
    cp.n_ctx = 64;
    cp.n_batch = 32;
    cp.n_threads = 2;
    cp.kv_type = kv;
    CHECK_OK(em_context_init(&c, m, &cp));
    em_batch b;
    CHECK_OK(em_batch_init(&b, 32));
    logits = calloc((size_t)(N_TOK + 1) * (size_t)nv, sizeof(float));
    for (int p = 0, r0 = 0; c && r0 <= N_TOK; p++) {
        const int n = r0 < N_TOK ? EM_MIN(parts[p] ? parts[p] : N_TOK, N_TOK - r0) : 1;
        em_batch_clear(&b);
        for (int i = r0; i < r0 + n; i++) em_batch_add(&b, i < N_TOK ? model_toks[i] % nv : 2, i, 0, true);
        CHECK_OK(em_decode(c, &b));
        for (int i = 0; i < n; i++) {
            const float *l = em_get_logits(c, i);
            CHECK(l != NULL);
            if (l) memcpy(logits + (size_t)(r0 + i) * nv, l, (size_t)nv * sizeof(float));
        }
        r0 += n;
    }
    em_batch_free(&b);
    em_context_free(c);
    em_model_free(m);
    CHECK(em_kernels_select(NULL) == 0);
    return logits;
}

/* A model loaded with packed weights (mapped read-only, and read into
 * memory) gives the logits of the same model loaded without, over a
 * 22-row batch, the same rows split into two batches, and a row decoded
 * alone after them.
 *
 * With the scalar kernels (the packed twin against the file layout's
 * reference) every product sums in the same order, so the logits must be
 * equal bit for bit: that checks everything around the kernels (the
 * load, the chunks of the product steps, the strides and the output rows)
 * without any tolerance.  With the SIMD kernels the order of the float
 * additions differs, by ~1e-7 relative; the cache is F32 there, because a
 * model also rounds its values to discrete steps (the F16 cache, the
 * Q8_0 activations), and a 1e-7 difference that happens to cross one of
 * those steps becomes a 1e-3 difference at that position, passed on to
 * every later position that attends to it: the file layout's own SIMD and
 * scalar kernels differ that much on these tiny models, past 8-16 rows.
 * The F32 cache leaves only the activations' steps, which these prompts
 * do not cross on the Q4_0 and Q8_0 models (tol_simd 1e-5).  The Q4_K_M
 * model's Q8_K activations do cross them: there the file layout's own
 * SIMD kernels differ from its scalar ones by up to 0.9% of the largest
 * logit from the second row on, and the packed SIMD kernels by 1.5%, so
 * its SIMD runs only catch gross errors (tol_simd 3e-2); its scalar runs
 * and the kernel tests above are the exact checks. */
static void test_model(const char *rel, float tol_simd) {
    char path[1024];
    if (!test_data_path(path, sizeof path, rel)) return;
    static const int whole[] = {0}, split[] = {13, 0};
    static const struct {
        const char *isa;
        em_type kv;
        const int *parts;
        float tol; /* largest difference, relative to the largest logit (-1: tol_simd) */
    } runs[] = {
        {"generic", EM_TYPE_F16, whole, 0},
        {"generic", EM_TYPE_F16, split, 0},
        {NULL, EM_TYPE_F32, whole, -1},
        {NULL, EM_TYPE_F32, split, -1},
    };
    for (size_t ri = 0; ri < sizeof runs / sizeof *runs; ri++) {
        float *logits[3] = {0};
        int nv = 0;
        for (int v = 0; v < 3; v++)
            logits[v] = model_logits(path, v > 0, v != 2, runs[ri].isa, runs[ri].kv, runs[ri].parts, &nv);
        if (logits[0] && logits[1] && logits[2]) {
            const size_t n = (size_t)(N_TOK + 1) * (size_t)nv;
            float worst = 0, scale = 0;
            int first_bad = -1;
            for (size_t i = 0; i < n; i++) scale = fmaxf(scale, fabsf(logits[0][i]));
            for (int v = 1; v < 3; v++)
                for (size_t i = 0; i < n; i++) {
                    const float d = fabsf(logits[v][i] - logits[0][i]);
                    if (d > (runs[ri].tol < 0 ? tol_simd : runs[ri].tol) * scale && (first_bad < 0 || (int)(i / (size_t)nv) < first_bad))
                        first_bad = (int)(i / (size_t)nv);
                    worst = fmaxf(worst, d);
                }
            printf("%s, %s kernels, %s cache, %s: packed vs file layout, largest logit difference %.3g (of %.3g)\n",
                   rel, runs[ri].isa ? runs[ri].isa : "best", em_type_name(runs[ri].kv),
                   runs[ri].parts == whole ? "one batch" : "two batches", worst, scale);
            CHECK_MSG(first_bad < 0, "%s, %s kernels, run %zu: packed weights change the logits by %g, first at row %d",
                      rel, runs[ri].isa ? runs[ri].isa : "best", ri, worst, first_bad);
        } else {
            CHECK(false);
        }
        for (int v = 0; v < 3; v++) free(logits[v]);
    }
}

/* The lane kernels keep their activation tables through a product step
 * (em_gemm_step_begin), and the AVX-512 Q8_0 kernel (16-row tiles) and
 * the AVX2 one (8-row tiles, for calls of more than 8 rows) a copy of the
 * rows interleaved tile by tile: chunk by chunk inside a step must give
 * the bits of one call outside any step (which reads the rows in place),
 * for whole tiles and the remainders after them, and a new step over new
 * activations in the same buffer must not see the last step's.  Every
 * kernel set the CPU has, since each reads its own copy. */
static void step_tables_check(const char *set) {
    enum { K = 768, NW = 56, NA_MAX = 57, CHUNK = 16 }; /* the last chunk of 8 rows: one group */
    static const em_type types[] = {EM_TYPE_Q4_0, EM_TYPE_Q8_0};
    /* 48 and 57 rows: the AVX-512 Q8_0 kernel's calls of 48 rows or more
     * read the weights regrouped per call and the step's rows + 128
     * (tile_q8_512_wq); 57 ends in tiles of 8 and 1 rows.  5 rows: the
     * AVX-VNNI Q8_0 kernel's fewest for tile_q8_vnni_wt. */
    static const int n_act[] = {2, 5, 9, 16, 20, 33, 40, 48, 57};
    for (size_t ti = 0; ti < 2 * sizeof n_act / sizeof *n_act; ti++) {
        const em_type t = types[ti % 2];
        const int NA = n_act[ti / 2];
        if (!em_gemm_packed_kernel(t)) continue;
        const size_t ws = em_row_size(t, K), as = em_row_size(EM_TYPE_Q8_0, K);
        uint8_t *w = malloc(NW * ws), *p = malloc(NW * ws), *a = malloc(NA * as);
        float *x = malloc((size_t)K * sizeof(float));
        static float out[NA_MAX * NW], whole[NA_MAX * NW];
        make_rows(t, K, NW, w, false);
        em_pack_matrix(t, K, NW, w, p);
        int bad = 0;
        for (int pass = 0; pass < 3; pass++) {
            for (int r = 0; r < NA; r++) {
                for (int i = 0; i < K; i++) x[i] = frand() * (1 + pass);
                CHECK_OK(em_quantize_row(EM_TYPE_Q8_0, x, a + (size_t)r * as, K, NULL));
            }
            em_gemm_packed(t, K, p, ws, NW, a, as, NA, whole, NW);
            em_gemm_step_begin();
            for (int j0 = 0; j0 < NW; j0 += CHUNK)
                em_gemm_packed(t, K, p + (size_t)j0 * ws, ws, NW - j0 < CHUNK ? NW - j0 : CHUNK, a, as, NA, out + j0, NW);
            em_gemm_step_end();
            bad += memcmp(out, whole, (size_t)NA * NW * sizeof *out) != 0;
        }
        CHECK_MSG(bad == 0, "%s %s, %d rows: %d passes differ in a step", set, em_type_name(t), NA, bad);
        free(w);
        free(p);
        free(a);
        free(x);
    }
}

static void test_step_tables(void) {
    static const char *sets[] = {"avx2", "avxvnni", "avx512"};
    for (size_t s = 0; s < sizeof sets / sizeof *sets; s++)
        if (em_kernels_select(sets[s]) == 0) step_tables_check(sets[s]);
    CHECK(em_kernels_select(NULL) == 0);
    step_tables_check("best");
    CHECK(em_gemm_step_serial() == 0);
}

/* A kernel that keeps something of a call's weights (the AVX2 Q8_0
 * tiles' transposed group, per thread) must not take it for another
 * matrix packed later at the same address: a product from a buffer that
 * held other weights in the previous call equals the same product from a
 * buffer of its own, bit for bit, in every kernel set. */
static void test_repacked_weights(void) {
    static const char *sets[] = {"avx2", "avxvnni", "avx512"};
    enum { K = 256, NW = 8, NA = 8 }; /* one group: the last one a call leaves behind */
    static const em_type types[] = {EM_TYPE_Q4_0, EM_TYPE_Q8_0};
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        const em_type t = types[ti];
        const size_t ws = em_row_size(t, K), as = em_row_size(EM_TYPE_Q8_0, K);
        uint8_t *w = malloc(NW * ws), *p = malloc(NW * ws), *q = malloc(NW * ws), *a = malloc(NA * as);
        float x[K];
        static float first[NA * NW], again[NA * NW], fresh[NA * NW];
        for (int r = 0; r < NA; r++) {
            for (int i = 0; i < K; i++) x[i] = frand();
            CHECK_OK(em_quantize_row(EM_TYPE_Q8_0, x, a + (size_t)r * as, K, NULL));
        }
        for (size_t s = 0; s < sizeof sets / sizeof *sets; s++) {
            if (em_kernels_select(sets[s]) != 0) continue;
            make_rows(t, K, NW, w, false);
            em_pack_matrix(t, K, NW, w, p);
            em_gemm_packed(t, K, p, ws, NW, a, as, NA, first, NW);
            make_rows(t, K, NW, w, false);
            em_pack_matrix(t, K, NW, w, p);
            em_pack_matrix(t, K, NW, w, q);
            em_gemm_packed(t, K, p, ws, NW, a, as, NA, again, NW);
            em_gemm_packed(t, K, q, ws, NW, a, as, NA, fresh, NW);
            CHECK_MSG(memcmp(again, fresh, sizeof again) == 0, "%s %s: a product repacked in place differs",
                      sets[s], em_type_name(t));
            CHECK(memcmp(first, again, sizeof again) != 0);
        }
        free(w);
        free(p);
        free(q);
        free(a);
    }
    CHECK(em_kernels_select(NULL) == 0);
}

int main(void) {
    test_roundtrip(EM_TYPE_Q4_0);
    test_roundtrip(EM_TYPE_Q8_0);
    test_roundtrip(EM_TYPE_Q4_K);
    test_roundtrip(EM_TYPE_Q5_K);
    test_roundtrip(EM_TYPE_Q6_K);
    CHECK(em_pack_rows(EM_TYPE_Q4_K) == EM_PACK_ROWS_K);
    CHECK(em_pack_rows(EM_TYPE_Q5_K) == EM_PACK_ROWS_K);
    CHECK(em_pack_rows(EM_TYPE_Q6_K) == EM_PACK_ROWS_K);
    CHECK(em_pack_rows(EM_TYPE_Q3_K) == 0);
    test_kernels();
    test_gemv_extremes();
    test_k_extremes();
    test_step_tables();
    test_repacked_weights();
    test_model("models/tiny-256/tiny-256-Q4_0.gguf", 1e-5f);
    test_model("models/arch/tiny-qwen3-Q8_0.gguf", 1e-5f);
    test_model("models/tiny-256/tiny-256-Q8_0.gguf", 1e-5f);
    test_model("models/tiny-256/tiny-256-Q4_K_M.gguf", 3e-2f);
    test_model("models/tiny-256/tiny-256-Q5_K_M.gguf", 3e-2f);
    test_model("models/tiny-256/tiny-256-Q6_K.gguf", 3e-2f);
    test_block_pools_free();
    TEST_END();
}
