/*
 * test_gemm.c - the matmul path: every GEMM kernel set against the scalar
 * reference dot products, the thread pool's barriers and chunk counter,
 * the threaded matmul driver, and the SIMD attention kernels against
 * their scalar twins.
 *
 * Each kernel set this CPU runs ("generic", "avx2", "avx512") is
 * installed in turn and run over awkward shapes: weight and activation
 * row counts that are not multiples of any tile, output strides wider
 * than the row, and weight blocks made of random bytes (so every bit
 * pattern of levels and scales occurs, not just what our quantizer
 * writes).  A product must match em_vec_dot_generic to within float
 * rounding of the sum of |w_i * a_i|, and no output outside the asked
 * rectangle may be written.
 */
#include "core/threadpool.h"
#include "kv/kv.h"
#include "ops/attention.h"
#include "ops/ops.h"
#include "quant/blocks.h"
#include "quant/gemm.h"
#include "quant/quant.h"
#include "test.h"
#include "block_pool.h"

#include <stdatomic.h>

static unsigned rng = 12345;

/* The kernel sets the tests below skipped, for the summary line. */
static char skipped[256];

static void note_skipped(const char *what) {
    size_t n = strlen(skipped);
    snprintf(skipped + n, sizeof skipped - n, "%s%s", n ? ", " : "", what);
}

static uint32_t next_u32(void) {
    rng = rng * 1664525u + 1013904223u;
    return rng;
}

static float frand(void) { return (float)((next_u32() >> 8) & 0xffffff) / 8388608.0f - 1.0f; }

/* A finite fp16 scale of moderate size, either sign. */
static uint16_t rand_scale(void) { return em_fp32_to_fp16((0.001f + 0.02f * (frand() + 1.0f)) * (next_u32() & 1 ? 1 : -1)); }

/* Overwrites the fp16 scale fields of every block of a random-bytes row,
 * so that the row decodes to finite values. */
static void fix_scales(em_type t, uint8_t *row, int64_t nb) {
    const em_type_traits *tr = em_get_type_traits(t);
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *x = row + (size_t)b * tr->type_size;
        uint16_t d = rand_scale(), d2 = rand_scale();
        switch (t) {
        case EM_TYPE_Q8_0:
        case EM_TYPE_Q4_0: memcpy(x, &d, 2); break;
        case EM_TYPE_Q4_K:
        case EM_TYPE_Q5_K:
            memcpy(x, &d, 2);
            memcpy(x + 2, &d2, 2);
            break;
        case EM_TYPE_Q6_K: memcpy(x + offsetof(em_block_q6_k, d), &d, 2); break;
        default: break;
        }
    }
}

/* Fills nw weight rows of type t: quantized random floats (float types
 * element by element, quantized ones block by block from the pool), or
 * (for the formats with SIMD kernels, when raw is set) random bytes. */
static void make_weights(em_type t, int64_t k, int64_t nw, uint8_t *w, size_t ws, bool raw) {
    const bool quantized = t != EM_TYPE_F32 && t != EM_TYPE_F16 && t != EM_TYPE_BF16;
    float *tmp = malloc((size_t)k * sizeof(float));
    for (int64_t j = 0; j < nw; j++) {
        uint8_t *row = w + (size_t)j * ws;
        if (raw) {
            for (size_t i = 0; i < ws; i++) row[i] = (uint8_t)(next_u32() >> 24);
            fix_scales(t, row, k / em_get_type_traits(t)->block_size);
            continue;
        }
        if (quantized) {
            test_pool_row(t, k, row, frand, next_u32);
            continue;
        }
        for (int64_t i = 0; i < k; i++) tmp[i] = frand() * (1 + (i % 7 == 0) * 3);
        if (t == EM_TYPE_F32)
            memcpy(row, tmp, (size_t)k * 4);
        else if (t == EM_TYPE_F16)
            for (int64_t i = 0; i < k; i++) ((uint16_t *)(void *)row)[i] = em_fp32_to_fp16(tmp[i]);
        else
            for (int64_t i = 0; i < k; i++) ((uint16_t *)(void *)row)[i] = em_fp32_to_bf16(tmp[i]);
    }
    free(tmp);
}

/* Sum over i of |w_i a_i|, from the dequantized rows wf and af (each row
 * dequantized once by the caller, not once per output): the scale of the
 * rounding error any order of summation may make. */
static double abs_dot(int64_t k, const float *wf, const float *af) {
    double s = 0;
    for (int64_t i = 0; i < k; i++) s += fabs((double)wf[i] * af[i]);
    return s;
}

static int check_gemm(const char *isa, em_type t, int64_t k, int64_t nw, int64_t na, bool raw) {
    const em_type_traits *tr = em_get_type_traits(t);
    const em_type at = tr->vec_dot_type;
    const size_t ws = em_row_size(t, k), as = em_row_size(at, k);
    const int64_t ldo = nw + 3;
    uint8_t *w = malloc(ws * (size_t)nw), *a = malloc(as * (size_t)na);
    float *af = malloc((size_t)k * sizeof(float));
    float *out = malloc((size_t)(na * ldo) * sizeof(float));
    /* The dequantized rows for abs_dot (all zero where a type has none). */
    float *wdq = calloc((size_t)(nw * k), sizeof(float)), *adq = calloc((size_t)(na * k), sizeof(float));
    bool deq = true;
    make_weights(t, k, nw, w, ws, raw);
    for (int64_t r = 0; r < na; r++) {
        for (int64_t i = 0; i < k; i++) af[i] = frand() * (r + 1);
        if (at == EM_TYPE_F32)
            memcpy(a + (size_t)r * as, af, (size_t)k * 4);
        else
            CHECK_OK(em_quantize_row(at, af, a + (size_t)r * as, k, NULL));
        deq &= em_dequantize_row(at, a + (size_t)r * as, adq + (size_t)(r * k), k) == EM_OK;
    }
    for (int64_t j = 0; j < nw; j++) deq &= em_dequantize_row(t, w + (size_t)j * ws, wdq + (size_t)(j * k), k) == EM_OK;
    const float sentinel = 12345.5f;
    for (int64_t i = 0; i < na * ldo; i++) out[i] = sentinel;
    em_gemm(t, k, w, ws, nw, a, as, na, out, ldo);
    int bad = 0;
    for (int64_t r = 0; r < na; r++) {
        for (int64_t j = 0; j < ldo; j++) {
            const float got = out[r * ldo + j];
            if (j >= nw) {
                if (got != sentinel) bad++;
                continue;
            }
            const void *wr = w + (size_t)j * ws, *ar = a + (size_t)r * as;
            const float ref = em_vec_dot_generic(t, k, wr, ar);
            const double mag = deq ? abs_dot(k, wdq + (size_t)(j * k), adq + (size_t)(r * k)) : 0;
            const double tol = 2e-6 * mag + 1e-6 * fabs(ref) + 1e-30;
            if (!(fabs((double)got - ref) <= tol)) {
                if (bad < 3)
                    fprintf(stderr, "  %s %s k=%lld nw=%lld na=%lld raw=%d: out[%lld][%lld] = %.9g, reference %.9g\n",
                            isa, tr->name, (long long)k, (long long)nw, (long long)na, raw, (long long)r, (long long)j,
                            got, ref);
                bad++;
            }
        }
    }
    free(w);
    free(a);
    free(af);
    free(wdq);
    free(adq);
    free(out);
    return bad;
}

static void test_gemm_kernels(void) {
    static const em_type types[] = {EM_TYPE_F32,  EM_TYPE_F16,  EM_TYPE_BF16, EM_TYPE_Q8_0, EM_TYPE_Q4_0,
                                    EM_TYPE_Q4_K, EM_TYPE_Q5_K, EM_TYPE_Q6_K, EM_TYPE_Q4_1, EM_TYPE_Q5_0,
                                    EM_TYPE_Q5_1, EM_TYPE_Q2_K, EM_TYPE_Q3_K, EM_TYPE_IQ4_NL, EM_TYPE_IQ4_XS};
    static const char *isas[] = {"generic", "avx2", "avx512"};
    static const int64_t nws[] = {1, 2, 7, 8, 17, 33};
    static const int64_t nas[] = {1, 2, 3, 4, 5, 6, 7, 13};
    int n_sets = 0;
    for (size_t s = 0; s < sizeof isas / sizeof *isas; s++) {
        /* AVX-512 without VNNI installs the avx2 GEMM kernels. */
        const bool no_vnni = strcmp(isas[s], "avx512") == 0 && !(em_cpu_hw_features() & EM_CPU_AVX512_VNNI);
        if (em_kernels_select(isas[s]) != 0 || no_vnni) {
            printf("gemm kernel set %s: this CPU lacks it, skipped\n", isas[s]);
            note_skipped(isas[s]);
            continue;
        }
        CHECK(strcmp(em_gemm_isa(), isas[s]) == 0);
        n_sets++;
        /* A SIMD set must really hold its kernels (else every check below
         * would quietly test the generic path). */
        if (s > 0)
            for (size_t ti = 0; ti < 8; ti++)
                CHECK_MSG(em_gemm_kernel(types[ti]) != NULL, "%s has no %s kernel", isas[s], em_type_name(types[ti]));
        for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
            const em_type t = types[ti];
            const em_type_traits *tr = em_get_type_traits(t);
            const int64_t bs = tr->block_size;
            /* Lengths: one block, a few, and for float rows ragged ones;
             * 257 blocks of 32 cover whole groups of four, a last odd
             * block and activation records beyond 4 KiB. */
            int64_t ks[4] = {bs == 1 ? 8 : bs, bs == 1 ? 19 : 2 * bs, bs == 1 ? 100 : 3 * bs,
                             bs == 1 ? 263 : (bs == 32 ? 257 * bs : 4 * bs)};
            int bad = 0;
            for (int ki = 0; ki < 4; ki++)
                for (size_t wi = 0; wi < sizeof nws / sizeof *nws; wi++)
                    for (size_t ai = 0; ai < sizeof nas / sizeof *nas; ai++) {
                        /* Keep the run short: every shape for the first
                         * length, a diagonal of shapes for the others. */
                        if (ki > 0 && (wi + ai + (size_t)ki) % 3 != 0) continue;
                        bad += check_gemm(isas[s], t, ks[ki], nws[wi], nas[ai], false);
                        const bool has_raw = t == EM_TYPE_Q8_0 || t == EM_TYPE_Q4_0 || t == EM_TYPE_Q4_K ||
                                             t == EM_TYPE_Q5_K || t == EM_TYPE_Q6_K;
                        if (has_raw) bad += check_gemm(isas[s], t, ks[ki], nws[wi], nas[ai], true);
                    }
            CHECK_MSG(bad == 0, "gemm %s %s: %d wrong outputs", isas[s], tr->name, bad);
        }
    }
    CHECK(n_sets >= 1);
    CHECK(em_kernels_select("no-such-set") == -1);
    CHECK(em_kernels_select(NULL) == 0);
}

/* The AVX2 Q6_K kernel with more than four activation rows unpacks the
 * weights once into a buffer of at most 24 super-blocks a row (longer rows
 * take the plain tiles): lengths on both sides of that bound, a last odd
 * weight row, activation panels with a ragged last one, against the
 * scalar reference; and each output equal, to the bit, to that of a call
 * of two rows (the plain tiles), whose integer sums and float steps are
 * the same. */
static void test_q6k_buffered(void) {
    if (em_kernels_select("avx2") != 0) {
        printf("q6_k buffered kernel: no avx2, skipped\n");
        return;
    }
    static const int64_t shapes[][3] = {{256, 3, 5}, {2048, 5, 9}, {24 * 256, 3, 43}, {25 * 256, 3, 7}};
    int bad = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const int64_t k = shapes[si][0], nw = shapes[si][1], na = shapes[si][2];
        bad += check_gemm("avx2", EM_TYPE_Q6_K, k, nw, na, false);
        bad += check_gemm("avx2", EM_TYPE_Q6_K, k, nw, na, true);
        const size_t ws = em_row_size(EM_TYPE_Q6_K, k), as = em_row_size(EM_TYPE_Q8_K, k);
        uint8_t *w = malloc(ws * (size_t)nw), *a = malloc(as * (size_t)na);
        float *af = malloc((size_t)k * sizeof(float)), *o1 = malloc((size_t)(na * nw) * sizeof(float));
        float o2[2 * 5];
        make_weights(EM_TYPE_Q6_K, k, nw, w, ws, true);
        for (int64_t r = 0; r < na; r++) {
            for (int64_t i = 0; i < k; i++) af[i] = frand();
            CHECK_OK(em_quantize_row(EM_TYPE_Q8_K, af, a + (size_t)r * as, k, NULL));
        }
        em_gemm(EM_TYPE_Q6_K, k, w, ws, nw, a, as, na, o1, nw);
        for (int64_t r0 = 0; r0 + 2 <= na; r0 += 2) {
            em_gemm(EM_TYPE_Q6_K, k, w, ws, nw, a + (size_t)r0 * as, as, 2, o2, nw);
            CHECK_MSG(memcmp(o1 + r0 * nw, o2, (size_t)(2 * nw) * sizeof(float)) == 0,
                      "q6_k k=%lld na=%lld: rows %lld-%lld differ from a call of two rows", (long long)k,
                      (long long)na, (long long)r0, (long long)r0 + 1);
        }
        free(w);
        free(a);
        free(af);
        free(o1);
    }
    CHECK_MSG(bad == 0, "q6_k buffered: %d wrong outputs", bad);
    CHECK(em_kernels_select(NULL) == 0);
}

/* The converted-panel kernels of float weights (gemm_float_avx2.c,
 * gemm_float_avx512.c), which take calls with many activation rows: shapes
 * the short tests above do not reach (several activation tiles with a
 * ragged last one, several k slices with a ragged last one, weight panels
 * with a few rows left over) against the scalar reference, and each
 * output independent, to the bit, of how many activation rows shared its
 * call (a row's sum runs in the same order whichever tile it falls in). */
static void test_float_panels(void) {
#if defined(EM_HAVE_X86_GEMM)
    static const em_type types[] = {EM_TYPE_F16, EM_TYPE_BF16, EM_TYPE_F32};
    static const char *isas[] = {"avx2", "avx512"};
    /* k, weight rows, activation rows.  85 rows are seven AVX-512 tiles,
     * enough for the tiles to ask for the next slice inside their loops
     * (gemm_float_avx512.c), with a last slice of 88 elements. */
    static const int64_t shapes[][3] = {{600, 70, 31}, {1030, 33, 15}, {17, 16, 8},
                                        {513, 48, 29}, {257, 5, 40},   {600, 70, 85}};
    int n_sets = 0;
    for (size_t s = 0; s < sizeof isas / sizeof *isas; s++) {
        const bool no_vnni = strcmp(isas[s], "avx512") == 0 && !(em_cpu_hw_features() & EM_CPU_AVX512_VNNI);
        if (em_kernels_select(isas[s]) != 0 || no_vnni) continue;
        n_sets++;
        for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
            const em_type t = types[ti];
            int bad = 0;
            for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
                const int64_t k = shapes[si][0], nw = shapes[si][1], na = shapes[si][2];
                bad += check_gemm(isas[s], t, k, nw, na, false);
                /* The same rows in a call of all na rows and in one of two
                 * rows, the fewest the panel kernel takes. */
                const size_t ws = em_row_size(t, k), as = (size_t)k * sizeof(float);
                const int64_t nb = 2;
                uint8_t *w = malloc(ws * (size_t)nw);
                float *a = malloc(as * (size_t)na), *o1 = malloc((size_t)(na * nw) * sizeof(float));
                float *o2 = malloc((size_t)(nb * nw) * sizeof(float));
                make_weights(t, k, nw, w, ws, false);
                for (int64_t i = 0; i < na * k; i++) a[i] = frand();
                em_gemm(t, k, w, ws, nw, a, as, na, o1, nw);
                const int64_t r0 = na - nb;
                em_gemm(t, k, w, ws, nw, a + r0 * k, as, nb, o2, nw);
                CHECK_MSG(memcmp(o1 + r0 * nw, o2, (size_t)(nb * nw) * sizeof(float)) == 0,
                          "%s %s k=%lld nw=%lld: rows differ between calls of %lld and %lld rows", isas[s],
                          em_type_name(t), (long long)k, (long long)nw, (long long)na, (long long)nb);
                free(w);
                free(a);
                free(o1);
                free(o2);
            }
            CHECK_MSG(bad == 0, "float panels %s %s: %d wrong outputs", isas[s], em_type_name(t), bad);
        }
    }
    if (n_sets == 0) printf("float panel kernels: no x86 SIMD set on this CPU, skipped\n");
    CHECK(em_kernels_select(NULL) == 0);
#endif
}

/* The CPU check and EMBER_CPU's one parser (core/cpu.c). */
static void test_cpu_features(void) {
    const unsigned hw = em_cpu_hw_features();
#if defined(__x86_64__) && defined(__GNUC__)
    /* The compiler's own CPUID check must agree (F16C, which clang's
     * builtin cannot name, came before AVX2 in every CPU line). */
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    CHECK_MSG(((hw & EM_CPU_AVX2) != 0) == avx2, "AVX2: cpu.c says %u, the compiler %d", hw & EM_CPU_AVX2, avx2);
    const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl");
    CHECK_MSG(((hw & EM_CPU_AVX512) != 0) == avx512, "AVX-512: cpu.c says %u, the compiler %d",
              hw & EM_CPU_AVX512, avx512);
#endif
    /* What each name leaves of a CPU that has everything. */
    const unsigned all = EM_CPU_AVX2 | EM_CPU_AVX512 | EM_CPU_AVX512_VNNI;
    unsigned f = 99;
    CHECK_OK(em_cpu_parse("generic", all, &f));
    CHECK(f == 0);
    CHECK_OK(em_cpu_parse("avx2", all, &f));
    CHECK(f == EM_CPU_AVX2);
    CHECK_OK(em_cpu_parse("avx512", all, &f));
    CHECK(f == all);
    CHECK_OK(em_cpu_parse("neon-dotprod", EM_CPU_NEON, &f));
    CHECK(f == EM_CPU_NEON);
    /* Sets the CPU lacks, and names that are no set, leave *out alone. */
    f = 99;
    CHECK(em_cpu_parse("avx512", EM_CPU_AVX2, &f) == EM_ERR_UNSUPPORTED);
    CHECK(em_cpu_parse("avx2", 0, &f) == EM_ERR_UNSUPPORTED);
    CHECK(em_cpu_parse("neon", all, &f) == EM_ERR_UNSUPPORTED);
    CHECK(em_cpu_parse("AVX2", all, &f) == EM_ERR_INVALID_ARG && strlen(em_last_error()) > 0);
    CHECK(em_cpu_parse("", all, &f) == EM_ERR_INVALID_ARG);
    CHECK(f == 99);

    /* em_cpu_features is EMBER_CPU's answer as the process started, read
     * once: changing the variable later changes nothing. */
    const char *env = getenv("EMBER_CPU");
    unsigned want = hw;
    if (env && *env) em_cpu_parse(env, hw, &want);
    CHECK(em_cpu_features() == want);
    char orig[64] = "";
    if (env) snprintf(orig, sizeof orig, "%s", env);
    setenv("EMBER_CPU", "generic", 1);
    CHECK(em_cpu_features() == want);
    if (env)
        setenv("EMBER_CPU", orig, 1);
    else
        unsetenv("EMBER_CPU");
}

/* ----------------------------------------------------------- threadpool */

enum { POOL_CHUNKS = 97, POOL_STEPS = 6 };

typedef struct {
    em_threadpool *tp;
    atomic_int claimed[POOL_STEPS][POOL_CHUNKS]; /* times each chunk was handed out */
    int slot[8][POOL_STEPS];                      /* written by thread i at step s    */
    atomic_int stale;                             /* barrier visibility failures      */
} pool_job;

/* Each step: claim chunks until the count runs out, write this thread's
 * slot, meet at the barrier, then check every thread's slot of the step
 * is visible. */
static void pool_steps(void *arg, int ith, int nth) {
    pool_job *j = arg;
    for (int s = 0; s < POOL_STEPS; s++) {
        int64_t c;
        while ((c = em_threadpool_next(j->tp, ith, POOL_CHUNKS)) >= 0) {
            if (c >= POOL_CHUNKS) break;
            atomic_fetch_add(&j->claimed[s][c], 1);
        }
        j->slot[ith][s] = s + 1;
        em_threadpool_barrier(j->tp);
        for (int t = 0; t < nth; t++)
            if (j->slot[t][s] != s + 1) atomic_fetch_add(&j->stale, 1);
        em_threadpool_barrier(j->tp);
    }
}

static void test_pool_barriers(void) {
    for (int n = 1; n <= 4; n++) {
        pool_job *j = calloc(1, sizeof *j);
        CHECK_OK(em_threadpool_init(&j->tp, n));
        for (int rep = 0; rep < 200; rep++) {
            for (int s = 0; s < POOL_STEPS; s++)
                for (int c = 0; c < POOL_CHUNKS; c++) atomic_init(&j->claimed[s][c], 0);
            memset(j->slot, 0, sizeof j->slot);
            em_threadpool_run(j->tp, pool_steps, j);
            int wrong = 0;
            for (int s = 0; s < POOL_STEPS; s++)
                for (int c = 0; c < POOL_CHUNKS; c++) wrong += atomic_load(&j->claimed[s][c]) != 1;
            CHECK_MSG(wrong == 0, "%d threads: %d chunks not handed out exactly once", n, wrong);
            if (wrong) break;
        }
        CHECK_MSG(atomic_load(&j->stale) == 0, "%d threads: writes not visible after a barrier", n);
        em_threadpool_free(j->tp);
        free(j);
    }
}

/* --------------------------------------------------------------- matmul */

/* The threaded driver (chunks of weight rows shared out dynamically)
 * gives the same numbers as one call of the kernel over everything. */
static void test_matmul_driver(void) {
    const em_type t = EM_TYPE_Q4_0;
    const int64_t k = 256, n_out = 200, n_rows = 9;
    const size_t ws = em_row_size(t, k);
    uint8_t *w = malloc(ws * n_out);
    make_weights(t, k, n_out, w, ws, false);
    em_tensor W = {.type = t, .ne = {k, n_out, 1, 1}, .row_bytes = ws, .data = w};
    float *x = malloc(sizeof(float) * k * n_rows), *out = malloc(sizeof(float) * n_out * n_rows),
          *ref = malloc(sizeof(float) * n_out * n_rows);
    for (int64_t i = 0; i < k * n_rows; i++) x[i] = frand();
    void *qbuf = malloc(em_activation_row_size(t, k) * n_rows);
    em_quantize_activations(t, x, n_rows, k, qbuf);
    em_gemm(t, k, w, ws, n_out, qbuf, em_activation_row_size(t, k), n_rows, ref, n_out);
    for (int n = 1; n <= 3; n++) {
        em_threadpool *tp;
        CHECK_OK(em_threadpool_init(&tp, n));
        memset(out, 0, sizeof(float) * n_out * n_rows);
        em_matmul(tp, out, n_out, &W, x, n_rows, qbuf, false);
        CHECK_MSG(memcmp(out, ref, sizeof(float) * n_out * n_rows) == 0, "matmul with %d threads differs", n);
        em_threadpool_free(tp);
    }
    free(w);
    free(x);
    free(out);
    free(ref);
    free(qbuf);
}

/* Generation's chunking (one activation row: chunks of 64-256 KiB,
 * claimed from both ends of the threads' shares) gives, row for row, what
 * one kernel call over the whole matrix gives, for a matrix of many
 * chunks and for a small one of a single chunk. */
static void test_matmul_one_row(void) {
    const em_type t = EM_TYPE_Q4_0;
    const int64_t k = 2048;
    const int64_t sizes[] = {2048, 200};
    const size_t ws = em_row_size(t, k), as = em_activation_row_size(t, k);
    for (int si = 0; si < 2; si++) {
        const int64_t n_out = sizes[si];
        uint8_t *w = malloc(ws * (size_t)n_out);
        make_weights(t, k, n_out, w, ws, false);
        em_tensor W = {.type = t, .ne = {k, n_out, 1, 1}, .row_bytes = ws, .data = w};
        float *x = malloc(sizeof(float) * k), *out = malloc(sizeof(float) * n_out), *ref = malloc(sizeof(float) * n_out);
        for (int64_t i = 0; i < k; i++) x[i] = frand();
        void *qbuf = malloc(as);
        em_quantize_activations(t, x, 1, k, qbuf);
        em_gemm(t, k, w, ws, n_out, qbuf, as, 1, ref, n_out);
        for (int n = 1; n <= 4; n++) {
            em_threadpool *tp;
            CHECK_OK(em_threadpool_init(&tp, n));
            for (int rep = 0; rep < 20; rep++) {
                memset(out, 0, sizeof(float) * n_out);
                em_matmul(tp, out, n_out, &W, x, 1, qbuf, false);
                CHECK_MSG(memcmp(out, ref, sizeof(float) * n_out) == 0, "one-row matmul of %lld rows with %d threads differs",
                          (long long)n_out, n);
            }
            em_threadpool_free(tp);
        }
        free(w);
        free(x);
        free(out);
        free(ref);
        free(qbuf);
    }
}

/* ------------------------------------------------------------ attention */

static float max_rel(const float *a, const float *b, int n) {
    float mx = 0, scale = 1e-6f;
    for (int i = 0; i < n; i++) scale = fmaxf(scale, fabsf(b[i]));
    for (int i = 0; i < n; i++) mx = fmaxf(mx, fabsf(a[i] - b[i]));
    return mx / scale;
}

/* Scores a against the reference b: relative to the row's largest score,
 * or for a score that cancels to near zero, to the size of its terms
 * (sum |q_i k_i| / 8), since float rounding in another summation order
 * is relative to those. */
static bool scores_close(const float *a, const float *b, const float *q, const float *const *k, int nk, int n) {
    float scale = 1e-6f;
    for (int j = 0; j < nk; j++) scale = fmaxf(scale, fabsf(b[j]));
    for (int j = 0; j < nk; j++) {
        float terms = 0;
        for (int i = 0; i < n; i++) terms += fabsf(q[i] * k[j][i]);
        if (fabsf(a[j] - b[j]) > 1e-5f * fmaxf(scale, terms / 8)) return false;
    }
    return true;
}

/* Each kernel of a SIMD set against its scalar twin, over head sizes
 * with and without a tail, one to many query heads and partial blocks.
 * A head's scores and sums must also be the same to the bit whether it is
 * computed alone or with other heads (a row attended alone or in a tile). */
static void test_attn_set(const em_attn_kernels *simd, const char *name) {
    const em_attn_kernels *ref = em_attn_kernels_scalar();
    enum { MAXN = 136, MAXQ = 7, MAXK = 33 };
    static float q[MAXQ * MAXN], kf[MAXK][MAXN], s1[MAXQ * MAXK], s2[MAXQ * MAXK];
    static float acc1[MAXQ * MAXN], acc2[MAXQ * MAXN], p[MAXQ * MAXK];
    static uint16_t kh[MAXK][MAXN];
    const int ns[] = {8, 19, 32, 64, 80, 128, 136}, nqs[] = {1, 2, 3, 4, 7}, nks[] = {1, 5, 8, 17, 33};
    int bad = 0;
    for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
        for (size_t b = 0; b < sizeof nqs / sizeof *nqs; b++)
            for (size_t c = 0; c < sizeof nks / sizeof *nks; c++) {
                const int n = ns[a], nq = nqs[b], nk = nks[c];
                const float *k32[MAXK];
                const uint16_t *k16[MAXK];
                for (int i = 0; i < nq * n; i++) q[i] = frand();
                for (int j = 0; j < nk; j++) {
                    for (int i = 0; i < n; i++) {
                        kh[j][i] = em_fp32_to_fp16(frand());
                        kf[j][i] = em_fp16_to_fp32(kh[j][i]);
                    }
                    k32[j] = kf[j];
                    k16[j] = kh[j];
                }
                ref->qk_f32(q, nq, n, k32, nk, s1, MAXK);
                simd->qk_f32(q, nq, n, k32, nk, s2, MAXK);
                for (int h = 0; h < nq; h++) bad += !scores_close(s2 + h * MAXK, s1 + h * MAXK, q + h * n, k32, nk, n);
                simd->qk_f16(q, nq, n, k16, nk, s2, MAXK);
                for (int h = 0; h < nq; h++) bad += !scores_close(s2 + h * MAXK, s1 + h * MAXK, q + h * n, k32, nk, n);
                for (int h = 0; h < nq; h++) {
                    float alone[MAXK];
                    simd->qk_f16(q + h * n, 1, n, k16, nk, alone, MAXK);
                    bad += memcmp(alone, s2 + h * MAXK, (size_t)nk * sizeof(float)) != 0;
                }

                for (int i = 0; i < nq * MAXK; i++) p[i] = frand() + 1.0f;
                for (int i = 0; i < nq * n; i++) acc1[i] = acc2[i] = frand();
                ref->pv_f32(acc1, nq, n, p, MAXK, k32, nk);
                simd->pv_f32(acc2, nq, n, p, MAXK, k32, nk);
                bad += max_rel(acc2, acc1, nq * n) > 1e-5f;
                for (int i = 0; i < nq * n; i++) acc2[i] = acc1[i];
                ref->pv_f16(acc1, nq, n, p, MAXK, k16, nk);
                static float before[MAXQ * MAXN];
                memcpy(before, acc2, (size_t)nq * n * sizeof(float));
                simd->pv_f16(acc2, nq, n, p, MAXK, k16, nk);
                bad += max_rel(acc2, acc1, nq * n) > 1e-5f;
                for (int h = 0; h < nq; h++) {
                    simd->pv_f16(before + h * n, 1, n, p + h * MAXK, MAXK, k16, nk);
                    bad += memcmp(before + h * n, acc2 + h * n, (size_t)n * sizeof(float)) != 0;
                }
            }
    CHECK_MSG(bad == 0, "attention kernels %s: %d mismatches against the scalar twins or alone/together", name, bad);

    /* Q8_0 keys and values read in place: the same bits as the same set's
     * float kernels over the rows em_dequantize_row makes (what a Q8_0
     * cache gave before it was read in place), for the scalar twins as
     * for the SIMD set; close to the scalar twins; and a head alone the
     * same as with others.  Head sizes of one to four blocks (an odd
     * count takes the AVX-512 set's 32-element path), scales of either
     * sign, quants over the whole int8 range. */
    {
        static em_block_q8_0 kq[MAXK][MAXN / 32];
        const int n8s[] = {32, 64, 96, 128}, nq8s[] = {1, 2, 3, 4, 5, 7};
        int bad8 = 0, cases = 0;
        for (size_t a = 0; a < sizeof n8s / sizeof *n8s; a++)
            for (size_t b = 0; b < sizeof nq8s / sizeof *nq8s; b++)
                for (size_t c = 0; c < sizeof nks / sizeof *nks; c++) {
                    const int n = n8s[a], nq = nq8s[b], nk = nks[c];
                    const float *k32[MAXK];
                    const em_block_q8_0 *k8[MAXK];
                    for (int i = 0; i < nq * n; i++) q[i] = frand();
                    for (int j = 0; j < nk; j++) {
                        for (int bl = 0; bl < n / 32; bl++) {
                            kq[j][bl].d = rand_scale();
                            for (int e = 0; e < 32; e++) kq[j][bl].qs[e] = (int8_t)(next_u32() & 0xff);
                        }
                        CHECK_OK(em_dequantize_row(EM_TYPE_Q8_0, kq[j], kf[j], n));
                        k32[j] = kf[j];
                        k8[j] = kq[j];
                    }
                    cases++;
                    ref->qk_f32(q, nq, n, k32, nk, s1, MAXK);
                    ref->qk_q8_0(q, nq, n, k8, nk, s2, MAXK);
                    for (int h = 0; h < nq; h++) bad8 += memcmp(s1 + h * MAXK, s2 + h * MAXK, (size_t)nk * sizeof(float)) != 0;
                    simd->qk_f32(q, nq, n, k32, nk, s1, MAXK);
                    simd->qk_q8_0(q, nq, n, k8, nk, s2, MAXK);
                    for (int h = 0; h < nq; h++) {
                        bad8 += memcmp(s1 + h * MAXK, s2 + h * MAXK, (size_t)nk * sizeof(float)) != 0;
                        float alone[MAXK], r[MAXK];
                        simd->qk_q8_0(q + h * n, 1, n, k8, nk, alone, MAXK);
                        bad8 += memcmp(alone, s2 + h * MAXK, (size_t)nk * sizeof(float)) != 0;
                        ref->qk_q8_0(q + h * n, 1, n, k8, nk, r, MAXK);
                        bad8 += !scores_close(s2 + h * MAXK, r, q + h * n, k32, nk, n);
                    }

                    static float before[MAXQ * MAXN], acc3[MAXQ * MAXN];
                    for (int i = 0; i < nq * MAXK; i++) p[i] = frand() + 1.0f;
                    for (int i = 0; i < nq * n; i++) acc1[i] = acc2[i] = acc3[i] = before[i] = frand();
                    ref->pv_f32(acc1, nq, n, p, MAXK, k32, nk);
                    ref->pv_q8_0(acc2, nq, n, p, MAXK, k8, nk);
                    bad8 += memcmp(acc1, acc2, (size_t)nq * n * sizeof(float)) != 0;
                    memcpy(acc2, before, (size_t)nq * n * sizeof(float));
                    simd->pv_f32(acc2, nq, n, p, MAXK, k32, nk);
                    simd->pv_q8_0(acc3, nq, n, p, MAXK, k8, nk);
                    bad8 += memcmp(acc2, acc3, (size_t)nq * n * sizeof(float)) != 0;
                    bad8 += max_rel(acc3, acc1, nq * n) > 1e-5f;
                    for (int h = 0; h < nq; h++) {
                        simd->pv_q8_0(before + h * n, 1, n, p + h * MAXK, MAXK, k8, nk);
                        bad8 += memcmp(before + h * n, acc3 + h * n, (size_t)n * sizeof(float)) != 0;
                    }
                }
        CHECK_MSG(bad8 == 0 && cases == 120, "attention Q8_0 kernels %s: %d mismatches in %d cases", name, bad8, cases);
    }

    /* exp over a block: ordinary scores, the very negative, and -inf. */
    for (int n = 1; n <= 33; n++) {
        float a[33], b[33];
        for (int j = 0; j < n; j++) a[j] = b[j] = (j % 5 == 4) ? -90.0f - j : (j % 7 == 6 ? -INFINITY : -10 * frand() * frand());
        const float sa = ref->exp_sum(a, n, 0.0f), sb = simd->exp_sum(b, n, 0.0f);
        CHECK_MSG(fabsf(sa - sb) <= 1e-6f * fabsf(sa) + 1e-30f && max_rel(b, a, n) <= 1e-6f, "exp_sum n=%d: %g vs %g", n,
                  sb, sa);
        for (int j = 0; j < n; j++) CHECK(b[j] >= 0 && (a[j] != 0 || b[j] == 0));
    }

    /* exp over several rows at once: each row as exp_sum gives it. */
    {
        enum { R = 5, S = 40 };
        float rows1[R * S], rows2[R * S], m[R], sums[R];
        for (int n = 1; n <= 33; n += 4) {
            for (int i = 0; i < R * S; i++) rows1[i] = rows2[i] = (i % 7 == 3) ? -INFINITY : -8 * frand() * frand();
            for (int h = 0; h < R; h++) m[h] = h == 2 ? 0.0f : 0.25f * h;
            simd->exp_rows(rows2, R, S, n, m, sums);
            for (int h = 0; h < R; h++) {
                const float one = simd->exp_sum(rows1 + h * S, n, m[h]);
                CHECK_MSG(one == sums[h] && memcmp(rows1 + h * S, rows2 + h * S, (size_t)n * sizeof(float)) == 0,
                          "exp_rows %s n=%d row %d", name, n, h);
            }
        }
    }

    /* Scaling, masking and the maximum of a block: exact, so bit for bit. */
    for (int n = 1; n <= 33; n++)
        for (int masked = 0; masked < 2; masked++) {
            float a[33], b[33];
            int32_t kpos[33];
            for (int j = 0; j < n; j++) a[j] = b[j] = 4 * frand(), kpos[j] = 100 + j;
            const int32_t lo = 100 + n / 3, hi = 100 + n / 2;
            const float ma = ref->scale_max(a, n, 0.125f, masked ? kpos : NULL, lo, hi);
            const float mb = simd->scale_max(b, n, 0.125f, masked ? kpos : NULL, lo, hi);
            CHECK_MSG(ma == mb && memcmp(a, b, (size_t)n * sizeof(float)) == 0, "scale_max %s n=%d masked=%d", name, n,
                      masked);
        }
}

/* Every SIMD set this CPU runs, whatever EMBER_CPU selects. */
static void test_attn_kernels(void) {
    int n_sets = 0;
#if defined(__x86_64__) && defined(__GNUC__)
    const unsigned hw = em_cpu_hw_features();
    if (hw & EM_CPU_AVX2) test_attn_set(&em_attn_kernels_avx2, "avx2"), n_sets++;
    if (hw & EM_CPU_AVX512) test_attn_set(&em_attn_kernels_avx512, "avx512"), n_sets++;
    if ((hw & EM_CPU_AVX2) && (hw & EM_CPU_AVX512)) {
        /* The AVX-512 set sums in the AVX2 set's order: equal to the bit. */
        const em_attn_kernels *a = &em_attn_kernels_avx2, *b = &em_attn_kernels_avx512;
        enum { N = 72, Q = 9, K = 29 };
        static float q[Q * N], kf[K][N], s1[Q * K], s2[Q * K], p[Q * K], acc1[Q * N], acc2[Q * N];
        static uint16_t kh[K][N];
        const float *k32[K];
        const uint16_t *k16[K];
        for (int i = 0; i < Q * N; i++) q[i] = frand(), acc1[i] = acc2[i] = frand();
        for (int i = 0; i < Q * K; i++) p[i] = frand() + 1.0f;
        for (int j = 0; j < K; j++) {
            for (int i = 0; i < N; i++) kh[j][i] = em_fp32_to_fp16(frand()), kf[j][i] = frand();
            k32[j] = kf[j], k16[j] = kh[j];
        }
        int diff = 0;
        /* Query counts that leave 0 to 3 heads after the fours. */
        const int nqs[] = {1, 2, 3, 5, 6, 7, 9};
        for (int n = 64; n <= N; n += 8)
            for (size_t iq = 0; iq < sizeof nqs / sizeof *nqs; iq++) {
                const int nq = nqs[iq];
                a->qk_f16(q, nq, n, k16, K, s1, K), b->qk_f16(q, nq, n, k16, K, s2, K);
                diff += memcmp(s1, s2, (size_t)nq * K * sizeof(float)) != 0;
                a->qk_f32(q, nq, n, k32, K, s1, K), b->qk_f32(q, nq, n, k32, K, s2, K);
                diff += memcmp(s1, s2, (size_t)nq * K * sizeof(float)) != 0;
                a->pv_f16(acc1, nq, n, p, K, k16, K), b->pv_f16(acc2, nq, n, p, K, k16, K);
                diff += memcmp(acc1, acc2, (size_t)nq * n * sizeof(float)) != 0;
                a->pv_f32(acc1, nq, n, p, K, k32, K), b->pv_f32(acc2, nq, n, p, K, k32, K);
                diff += memcmp(acc1, acc2, (size_t)nq * n * sizeof(float)) != 0;
            }
        /* Q8_0 rows of one to four blocks. */
        static em_block_q8_0 kq[K][4];
        const em_block_q8_0 *k8[K];
        for (int j = 0; j < K; j++) {
            for (int bl = 0; bl < 4; bl++) {
                kq[j][bl].d = rand_scale();
                for (int e = 0; e < 32; e++) kq[j][bl].qs[e] = (int8_t)(next_u32() & 0xff);
            }
            k8[j] = kq[j];
        }
        for (int n = 32; n <= 128 && n <= N; n += 32)
            for (size_t iq = 0; iq < sizeof nqs / sizeof *nqs; iq++) {
                const int nq = nqs[iq];
                a->qk_q8_0(q, nq, n, k8, K, s1, K), b->qk_q8_0(q, nq, n, k8, K, s2, K);
                diff += memcmp(s1, s2, (size_t)nq * K * sizeof(float)) != 0;
                a->pv_q8_0(acc1, nq, n, p, K, k8, K), b->pv_q8_0(acc2, nq, n, p, K, k8, K);
                diff += memcmp(acc1, acc2, (size_t)nq * n * sizeof(float)) != 0;
            }
        for (int n = 1; n <= 40; n++) {
            float e1[40], e2[40];
            for (int j = 0; j < n; j++) e1[j] = e2[j] = (j % 9 == 8) ? -INFINITY : -20 * frand() * frand();
            const float s1n = a->exp_sum(e1, n, 0.5f), s2n = b->exp_sum(e2, n, 0.5f);
            diff += s1n != s2n || memcmp(e1, e2, (size_t)n * sizeof(float)) != 0;
        }
        CHECK_MSG(diff == 0, "attention: the avx512 and avx2 kernels differ in %d cases", diff);
    }
#endif
    if (n_sets == 0) {
        printf("attention: this CPU has no SIMD attention kernels; skipped\n");
        note_skipped("attention simd");
    }
}

/* Whole attention, SIMD against scalar kernels, over a cache with two
 * interleaved sequences, GQA and a window. */
static void test_attention_sets(em_type kv_type) {
    enum { NR = 70, NH = 8, NKV = 2, HD = 64 };
    static float q[NR * NH * HD], o1[NR * NH * HD], o2[NR * NH * HD], kr[NKV * HD], vr[NKV * HD];
    static float kw[NR][NKV * HD], vw[NR][NKV * HD]; /* each row's keys and values as the cache holds them */
    em_seq_id seq[NR];
    em_pos pos[NR];
    int next[2] = {0, 0};
    for (int i = 0; i < NR; i++) {
        seq[i] = i % 4 == 0;
        pos[i] = next[seq[i]]++;
    }
    em_kv kv;
    CHECK_OK(em_kv_init(&kv, 128, 2, 1, NKV * HD, NKV * HD, kv_type, HD, HD));
    int32_t cells[NR];
    CHECK_OK(em_kv_place(&kv, NR, seq, pos, NULL, cells, NULL));
    for (int i = 0; i < NR; i++) {
        for (int j = 0; j < NKV * HD; j++) {
            kr[j] = frand() * 2;
            vr[j] = frand();
        }
        em_kv_write(&kv, 0, cells[i], 0, NKV, kr, vr, NULL);
        /* The same rows converted here, a head at a time, without the
         * cache: what attention must have read, wherever kv.c put it. */
        for (int j = 0; j < NKV * HD; j++) {
            kw[i][j] = kv_type == EM_TYPE_F16 ? em_fp16_to_fp32(em_fp32_to_fp16(kr[j])) : kr[j];
            vw[i][j] = kv_type == EM_TYPE_F16 ? em_fp16_to_fp32(em_fp32_to_fp16(vr[j])) : vr[j];
        }
        if (kv_type == EM_TYPE_Q8_0)
            for (int g = 0; g < NKV; g++) {
                em_block_q8_0 b[HD / EM_QK8_0];
                em_quantize_row(kv_type, kr + g * HD, b, HD, NULL);
                em_dequantize_row(kv_type, b, kw[i] + g * HD, HD);
                em_quantize_row(kv_type, vr + g * HD, b, HD, NULL);
                em_dequantize_row(kv_type, b, vw[i] + g * HD, HD);
            }
    }
    for (int i = 0; i < NR * NH * HD; i++) q[i] = frand();
    em_threadpool *tp;
    CHECK_OK(em_threadpool_init(&tp, 2));
    const size_t per = em_attention_scratch(NH, NKV, HD, HD);
    float *scratch = malloc(2 * per * sizeof(float));
    for (int swa = 0; swa <= 40; swa += 40) {
        em_attn_args a = {.q = q, .kv = &kv, .layer = 0, .seq = seq, .pos = pos, .n_rows = NR, .n_head = NH,
                          .n_head_kv = NKV, .head_dim = HD, .head_dim_v = HD, .n_swa = swa,
                          .scale = 1.0f / sqrtf((float)HD), .scratch = scratch};
        em_attn_kernels_force_scalar(1);
        a.out = o1;
        em_attention(tp, &a);
        em_attn_kernels_force_scalar(0);
        a.out = o2;
        em_attention(tp, &a);
        CHECK_MSG(max_rel(o2, o1, NR * NH * HD) < 1e-5f, "attention %s swa %d: SIMD and scalar differ by %g",
                  em_type_name(kv_type), swa, max_rel(o2, o1, NR * NH * HD));
        /* Against softmax attention in double over the rows written (the
         * cache's layout is not the test's: every key of a row's
         * sequence at or before it, within the window). */
        static float ref[NR * NH * HD];
        for (int i = 0; i < NR; i++)
            for (int h = 0; h < NH; h++) {
                const int g = h / (NH / NKV);
                const float *qh = q + ((size_t)i * NH + h) * HD;
                double sc[NR], mx = -INFINITY, sum = 0, acc[HD] = {0};
                for (int j = 0; j < NR; j++) {
                    sc[j] = -INFINITY;
                    if (seq[j] != seq[i] || pos[j] > pos[i] || (swa > 0 && pos[j] <= pos[i] - swa)) continue;
                    double d = 0;
                    for (int e = 0; e < HD; e++) d += (double)qh[e] * kw[j][g * HD + e];
                    sc[j] = d / sqrt((double)HD);
                    if (sc[j] > mx) mx = sc[j];
                }
                for (int j = 0; j < NR; j++) {
                    if (sc[j] == -INFINITY) continue;
                    const double w = exp(sc[j] - mx);
                    sum += w;
                    for (int e = 0; e < HD; e++) acc[e] += w * vw[j][g * HD + e];
                }
                for (int e = 0; e < HD; e++) ref[((size_t)i * NH + h) * HD + e] = (float)(acc[e] / sum);
            }
        CHECK_MSG(max_rel(o1, ref, NR * NH * HD) < 1e-4f, "attention %s swa %d: off the reference by %g",
                  em_type_name(kv_type), swa, max_rel(o1, ref, NR * NH * HD));
    }
    /* Chunked attention (Llama 4) sees the keys from p - p % 16 on: the
     * same keys, in the same order, as a window of 16 at the chunk's last
     * position, and as no limit in the first chunk.  Prompt rows are
     * attended in tiles whose key blocks start at the tile's first visible
     * key, so a window and a chunk may cut the same keys into blocks at
     * other places: equal up to float rounding (1e-5), while rows that see
     * other keys differ by far more (1e-3). */
    static float o3[NR * NH * HD];
    em_attn_args a = {.q = q, .kv = &kv, .layer = 0, .seq = seq, .pos = pos, .n_rows = NR, .n_head = NH,
                      .n_head_kv = NKV, .head_dim = HD, .head_dim_v = HD, .scale = 1.0f / sqrtf((float)HD),
                      .scratch = scratch};
    a.out = o3;
    em_attention(tp, &a);
    a.n_swa = 16;
    a.out = o2;
    em_attention(tp, &a);
    a.n_swa = 0;
    a.n_chunk = 16;
    a.out = o1;
    em_attention(tp, &a);
    int n_last = 0, n_first = 0, n_later = 0, want_last = 0, want_first = 0;
    for (int i = 0; i < NR; i++) {
        const size_t off = (size_t)i * NH * HD;
        if (pos[i] % 16 == 15) n_last += max_rel(o1 + off, o2 + off, NH * HD) < 1e-5f, want_last++;
        if (pos[i] < 16) n_first += max_rel(o1 + off, o3 + off, NH * HD) < 1e-5f, want_first++;
        else n_later += max_rel(o1 + off, o3 + off, NH * HD) > 1e-3f;
    }
    CHECK_MSG(want_last == 4 && n_last == want_last && n_first == want_first && n_later == NR - want_first,
              "chunked attention %s: %d/%d chunk ends as a window of 16, %d/%d first-chunk rows as unlimited, "
              "%d/%d later rows differ from unlimited", em_type_name(kv_type), n_last, want_last, n_first,
              want_first, n_later, NR - want_first);
    free(scratch);
    em_threadpool_free(tp);
    em_kv_free(&kv);
}

/* ------------------------------------------------------------- row ops */

/* Llama 4's router: the top k by logit (lower index first among equals),
 * each weighted by its own sigmoid, not renormalised. */
static void test_moe_route_sigmoid(void) {
    const float logits[5] = {0.5f, -1.0f, 2.0f, 2.0f, 0.1f};
    int32_t sel[3];
    float w[3];
    em_moe_route_sigmoid(logits, 5, 3, sel, w);
    CHECK(sel[0] == 2 && sel[1] == 3 && sel[2] == 0);
    CHECK(fabsf(w[0] - 1.0f / (1.0f + expf(-2.0f))) < 1e-7f && w[0] == w[1]);
    CHECK(fabsf(w[2] - 1.0f / (1.0f + expf(-0.5f))) < 1e-7f);
}

static void test_row_kernels(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (!(em_cpu_features() & EM_CPU_AVX2)) {
        printf("row kernels: no AVX2 on this CPU (or EMBER_CPU excludes it), skipped\n");
        note_skipped("row avx2");
        return;
    }
    enum { N = 1000 };
    static float g[N], u[N], o1[N], o2[N];
    static uint16_t h[N];
    /* Gates over the whole useful range and beyond (exp over/underflow). */
    for (int i = 0; i < N; i++) {
        g[i] = (i % 50 == 0) ? (i % 100 ? 200.0f : -200.0f) : 30 * frand() * frand() * frand();
        u[i] = frand();
    }
    for (int n = 1; n <= N; n += (n < 20 ? 1 : 97)) {
        em_swiglu(o1, g, u, n);
        em_swiglu_avx2(o2, g, u, n);
        int bad = 0;
        for (int i = 0; i < n; i++) bad += !(fabsf(o2[i] - o1[i]) <= 1e-6f * fabsf(o1[i]) + 1e-30f);
        CHECK_MSG(bad == 0, "swiglu n=%d: %d values differ", n, bad);
        if (em_cpu_hw_features() & EM_CPU_AVX512) {
            static float o3[N];
            em_swiglu_avx512(o3, g, u, n);
            CHECK_MSG(memcmp(o3, o2, (size_t)n * sizeof(float)) == 0, "swiglu avx512 n=%d: not the avx2 results", n);
        }
    }
    /* Halves: normal, subnormal, overflowing, ties, signed zero: the SIMD
     * conversion must round exactly as em_fp32_to_fp16. */
    for (int i = 0; i < N; i++) {
        const float scales[] = {1.0f, 1e-5f, 1e-7f, 7e4f, 6.5504e4f, 0.0f};
        float x = frand() * scales[i % 6];
        if (i % 7 == 0) x = (float)(i - N / 2) * 0.25f + 0.5f / 1024; /* halfway cases */
        if (i % 11 == 0) x = -0.0f;
        g[i] = x;
    }
    em_f32_to_f16_avx2(h, g, N);
    int bad = 0;
    for (int i = 0; i < N; i++) bad += h[i] != em_fp32_to_fp16(g[i]);
    CHECK_MSG(bad == 0, "f32 to f16: %d of %d halves differ from em_fp32_to_fp16", bad, N);
    if (em_cpu_hw_features() & EM_CPU_AVX512) {
        for (int n = 1; n <= N; n += 37) {
            memset(h, 0, sizeof h);
            em_f32_to_f16_avx512(h, g, n);
            bad = 0;
            for (int i = 0; i < n; i++) bad += h[i] != em_fp32_to_fp16(g[i]);
            CHECK_MSG(bad == 0, "f32 to f16 avx512 n=%d: %d halves differ from em_fp32_to_fp16", n, bad);
        }
    }
#endif
}

int main(void) {
    test_row_kernels();
    test_moe_route_sigmoid();
    test_attn_kernels();
    test_attention_sets(EM_TYPE_F16);
    test_attention_sets(EM_TYPE_F32);
    test_attention_sets(EM_TYPE_Q8_0);
    test_gemm_kernels();
    test_float_panels();
    test_q6k_buffered();
    test_cpu_features();
    test_pool_barriers();
    test_matmul_driver();
    test_matmul_one_row();
    printf("kernel sets skipped (this CPU lacks them, or EMBER_CPU excludes them): %s\n",
           skipped[0] ? skipped : "none");
    test_block_pools_free();
    TEST_END();
}
