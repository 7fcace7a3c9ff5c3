/*
 * test_engine.c - the engine below the model: thread pool, KV cache blocks,
 * online-softmax attention against a naive one, and em_decode's contract
 * on a real model (batching, sequences, cache edits, bad input).
 */
#include "core/threadpool.h"
#include "ember.h"
#include "kv/kv.h"
#include "ops/attention.h"
#include "ops/ops.h"
#include "quant/quant.h"
#include "test.h"

#include <stdatomic.h>

/* ------------------------------------------------------------ threadpool */

typedef struct {
    atomic_long sum;
    atomic_int hits[8];
} pool_job;

static void pool_task(void *arg, int ith, int nth) {
    pool_job *j = arg;
    atomic_fetch_add(&j->hits[ith], 1);
    long s = 0;
    for (long i = ith; i < 1000; i += nth) s += i;
    atomic_fetch_add(&j->sum, s);
}

static void test_threadpool(void) {
    for (int n = 1; n <= 4; n++) {
        em_threadpool *tp;
        CHECK_OK(em_threadpool_init(&tp, n));
        pool_job j;
        atomic_init(&j.sum, 0);
        for (int i = 0; i < 8; i++) atomic_init(&j.hits[i], 0);
        for (int rep = 0; rep < 500; rep++) em_threadpool_run(tp, pool_task, &j);
        CHECK(atomic_load(&j.sum) == 500L * 499500L);
        for (int i = 0; i < n; i++) CHECK(atomic_load(&j.hits[i]) == 500);
        em_threadpool_free(tp);
    }
    em_threadpool *bad = NULL;
    CHECK(em_threadpool_init(&bad, 0) == EM_ERR_INVALID_ARG);
}

/* -------------------------------------------------------------- kv slots */

static void test_kv_slots(void) {
    em_kv kv;
    /* 40 positions round up to three blocks. */
    CHECK_OK(em_kv_init(&kv, 40, 2, 1, 2, 2, EM_TYPE_F32, 2, 2));
    CHECK(kv.n_blocks == 3 && kv.n_cells == 3 * EM_KV_BLOCK);
    em_seq_id s[3] = {0, 0, 1};
    em_pos p[3] = {0, 1, 0};
    int32_t cells[3];
    CHECK_OK(em_kv_place(&kv, 3, s, p, NULL, cells, NULL));
    CHECK(em_kv_n_used(&kv) == 2 && cells[1] == cells[0] + 1 && cells[2] / EM_KV_BLOCK != cells[0] / EM_KV_BLOCK);
    /* A position that is not its sequence's next: nothing may change. */
    em_seq_id s2[2] = {1, 1};
    em_pos p2[2] = {1, 3};
    int32_t spare[2];
    CHECK(em_kv_place(&kv, 2, s2, p2, NULL, spare, NULL) == EM_ERR_INVALID_ARG);
    CHECK(em_kv_n_used(&kv) == 2 && kv.seqs[1].len == 1);
    CHECK_OK(em_kv_drop(&kv, 0, 1, -1));
    CHECK(kv.seqs[0].len == 1 && em_kv_n_used(&kv) == 2);
    CHECK_OK(em_kv_drop(&kv, -1, 0, -1));
    CHECK(em_kv_n_used(&kv) == 0 && kv.pools[0].n_free == 3);
    em_kv_free(&kv);
    CHECK(em_kv_init(&kv, 4, 1, 1, 2, 2, EM_TYPE_Q4_0, 2, 2) == EM_ERR_UNSUPPORTED);

    /* Sharing: seq 1 takes seq 0's block without a new one; writing its
     * own position 2 then copies the block (copy-on-write). */
    CHECK_OK(em_kv_init(&kv, 64, 2, 1, 2, 2, EM_TYPE_F32, 2, 2));
    em_seq_id z[2] = {0, 0};
    em_pos zp[2] = {0, 1};
    CHECK_OK(em_kv_place(&kv, 2, z, zp, NULL, cells, NULL));
    CHECK_OK(em_kv_share(&kv, 0, 1, 0, -1));
    CHECK(em_kv_n_used(&kv) == 1 && em_kv_cell(&kv, 1, 0) == cells[0] && em_kv_cell(&kv, 1, 1) == cells[1]);
    em_seq_id one = 1;
    em_pos p1 = 2;
    int32_t c1;
    CHECK_OK(em_kv_place(&kv, 1, &one, &p1, NULL, &c1, NULL));
    CHECK(em_kv_n_used(&kv) == 2 && c1 / EM_KV_BLOCK != cells[0] / EM_KV_BLOCK && em_kv_cell(&kv, 0, 1) == cells[1]);
    CHECK_OK(em_kv_drop(&kv, 0, 0, -1));
    CHECK(em_kv_n_used(&kv) == 1 && kv.seqs[1].len == 3);
    CHECK_OK(em_kv_drop(&kv, 1, 0, -1));
    CHECK(em_kv_n_used(&kv) == 0);
    em_kv_free(&kv);
}

/* ------------------------------------------------------------- attention */

static float frand(unsigned *state) {
    *state = *state * 1103515245u + 12345u;
    return (float)((*state >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* Attention of every row, the obvious way: scores, softmax, weighted sum. */
static void naive_attention(const float *q, const float *keys, const float *vals, const em_seq_id *kseq,
                            const em_pos *kpos, int nk, const em_seq_id *qseq, const em_pos *qpos, int nq,
                            int n_head, int n_head_kv, int hd, int swa, float *out) {
    int group = n_head / n_head_kv;
    float sc[64];
    for (int r = 0; r < nq; r++)
        for (int h = 0; h < n_head; h++) {
            int g = h / group;
            float mx = -INFINITY;
            for (int j = 0; j < nk; j++) {
                bool vis = kseq[j] == qseq[r] && kpos[j] <= qpos[r] && (!swa || kpos[j] > qpos[r] - swa);
                float s = -INFINITY;
                if (vis) {
                    s = 0;
                    for (int i = 0; i < hd; i++) s += q[(r * n_head + h) * hd + i] * keys[(j * n_head_kv + g) * hd + i];
                    s /= sqrtf((float)hd);
                }
                sc[j] = s;
                if (s > mx) mx = s;
            }
            double tot = 0;
            for (int j = 0; j < nk; j++) tot += sc[j] == -INFINITY ? 0 : exp(sc[j] - mx);
            for (int i = 0; i < hd; i++) {
                double acc = 0;
                for (int j = 0; j < nk; j++)
                    if (sc[j] != -INFINITY) acc += exp(sc[j] - mx) / tot * vals[(j * n_head_kv + g) * hd + i];
                out[(r * n_head + h) * hd + i] = (float)acc;
            }
        }
}

static void test_attention(em_type kv_type, int swa) {
    enum { NK = 40, NH = 4, NKV = 2, HD = 32 };
    unsigned st = 7;
    float q[NK * NH * HD], keys[NK * NKV * HD], vals[NK * NKV * HD], out[NK * NH * HD], ref[NK * NH * HD];
    em_seq_id seq[NK];
    em_pos pos[NK];
    for (int i = 0; i < NK * NH * HD; i++) q[i] = frand(&st) * 2;
    for (int i = 0; i < NK * NKV * HD; i++) {
        keys[i] = frand(&st) * 2;
        vals[i] = frand(&st);
    }
    /* Two interleaved sequences, each numbering its own positions. */
    int next[2] = {0, 0};
    for (int i = 0; i < NK; i++) {
        seq[i] = i % 3 == 0;
        pos[i] = next[seq[i]]++;
    }
    em_kv kv;
    CHECK_OK(em_kv_init(&kv, 64, 2, 1, NKV * HD, NKV * HD, kv_type, HD, HD));
    int32_t cells[NK];
    CHECK_OK(em_kv_place(&kv, NK, seq, pos, NULL, cells, NULL));
    /* The naive reference gets the rounded keys and values the cache holds. */
    for (int j = 0; j < NK; j++) {
        float *kr = keys + j * NKV * HD, *vr = vals + j * NKV * HD;
        em_kv_write(&kv, 0, cells[j], 0, NKV, kr, vr, NULL);
        if (kv_type != EM_TYPE_F32) {
            static unsigned char qb[NKV * HD * 4];
            CHECK_OK(em_quantize_row(kv_type, kr, qb, NKV * HD, NULL));
            CHECK_OK(em_dequantize_row(kv_type, qb, kr, NKV * HD));
            CHECK_OK(em_quantize_row(kv_type, vr, qb, NKV * HD, NULL));
            CHECK_OK(em_dequantize_row(kv_type, qb, vr, NKV * HD));
        }
    }
    em_threadpool *tp;
    CHECK_OK(em_threadpool_init(&tp, 3));
    static float scratch[3 * 8192]; /* attention tiles need several rows of queries */
    CHECK(em_attention_scratch(NH, NKV, HD, HD) * 3 <= sizeof scratch / sizeof *scratch);
    em_attn_args a = {.q = q, .out = out, .kv = &kv, .layer = 0, .seq = seq, .pos = pos, .n_rows = NK,
                      .n_head = NH, .n_head_kv = NKV, .head_dim = HD, .head_dim_v = HD, .n_swa = swa,
                      .scale = 1.0f / sqrtf((float)HD), .scratch = scratch};
    em_attention(tp, &a);
    naive_attention(q, keys, vals, seq, pos, NK, seq, pos, NK, NH, NKV, HD, swa, ref);
    float maxerr = 0;
    for (int i = 0; i < NK * NH * HD; i++) maxerr = fmaxf(maxerr, fabsf(out[i] - ref[i]));
    CHECK_MSG(maxerr < 1e-5f, "attention (kv %s, swa %d): max error %g", em_type_name(kv_type), swa, maxerr);
    em_threadpool_free(tp);
    em_kv_free(&kv);
}

/* ---------------------------------------------------------------- decode */

static void test_decode(void) {
    char path[1024];
    if (!test_data_path(path, sizeof path, "models/stories260K.gguf")) return;
    em_model *m;
    CHECK_OK(em_model_load(&m, path, NULL));
    if (!m) return;
    int nv = em_model_n_vocab(m);
    CHECK(nv == 512);
    em_context_params cp = em_context_default_params();
    cp.n_ctx = 64;
    cp.n_batch = 32;
    cp.n_threads = 2;
    cp.kv_type = EM_TYPE_F32;
    cp.n_seq_max = 2;
    em_context *c;
    CHECK_OK(em_context_init(&c, m, &cp));
    /* While a context lives, its kernels cannot be swapped under it. */
    CHECK(em_kernels_select("generic") == -2);
    em_token toks[12] = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315};
    enum { N = 12 };
    static float whole[N][512];
    em_batch b;
    CHECK_OK(em_batch_init(&b, 32));

    /* Whole prompt in one batch, logits for every row. */
    for (int i = 0; i < N; i++) em_batch_add(&b, toks[i], i, 0, true);
    CHECK_OK(em_decode(c, &b));
    for (int i = 0; i < N; i++) {
        const float *l = em_get_logits(c, i);
        CHECK(l != NULL);
        if (l) memcpy(whole[i], l, sizeof whole[i]);
    }
    CHECK(em_kv_seq_pos_max(c, 0) == N);

    /* Row by row after clearing: the same logits. */
    em_kv_clear(c);
    CHECK(em_kv_seq_pos_max(c, 0) == 0);
    float worst = 0;
    for (int i = 0; i < N; i++) {
        em_batch_clear(&b);
        em_batch_add(&b, toks[i], i, 0, true);
        CHECK_OK(em_decode(c, &b));
        worst = fmaxf(worst, max_rel_diff(em_get_logits(c, 0), whole[i], nv));
    }
    CHECK_MSG(worst < 1e-5f, "incremental vs batch: %g", worst);

    /* The same model read into memory instead of mapped gives the same
     * logits, bit for bit. */
    {
        em_model_params mp = em_model_default_params();
        mp.use_mmap = false;
        em_model *mr = NULL;
        em_context *cr = NULL;
        CHECK_OK(em_model_load(&mr, path, &mp));
        if (mr) CHECK_OK(em_context_init(&cr, mr, &cp));
        if (cr) {
            em_batch_clear(&b);
            for (int i = 0; i < N; i++) em_batch_add(&b, toks[i], i, 0, true);
            CHECK_OK(em_decode(cr, &b));
            int same = 1;
            for (int i = 0; i < N; i++) {
                const float *l = em_get_logits(cr, i);
                same &= l && memcmp(l, whole[i], sizeof whole[i]) == 0;
            }
            CHECK_MSG(same, "logits of the model read into memory differ from the mapped one's");
        }
        em_context_free(cr);
        em_model_free(mr);
    }

    /* Rows without logits stop after the last layer's attention; the rows
     * that ask get the same logits as when every row asks: bit for bit
     * for a middle row with the last, and within rounding for the last
     * row alone (the output product of a single row is a matrix-vector
     * product, whose float sums may round differently). */
    for (int variant = 0; variant < 2; variant++) {
        em_kv_clear(c);
        em_batch_clear(&b);
        for (int i = 0; i < N; i++) em_batch_add(&b, toks[i], i, 0, i == N - 1 || (variant == 1 && i == 5));
        CHECK_OK(em_decode(c, &b));
        const float *last = em_get_logits(c, N - 1), *mid = em_get_logits(c, 5);
        CHECK(last != NULL && (variant == 1) == (mid != NULL));
        if (variant == 0) {
            CHECK_MSG(last && max_rel_diff(last, whole[N - 1], nv) < 1e-5f, "the last row alone: its logits differ");
        } else {
            CHECK_MSG(last && memcmp(last, whole[N - 1], sizeof whole[N - 1]) == 0, "the last row's logits differ");
            CHECK_MSG(mid && memcmp(mid, whole[5], sizeof whole[5]) == 0, "a middle row's logits differ");
        }
        CHECK(em_kv_seq_pos_max(c, 0) == N);
    }
    /* No row asks: the cache is still written, and the next row's logits
     * are those of the whole batch. */
    em_kv_clear(c);
    em_batch_clear(&b);
    for (int i = 0; i < N - 1; i++) em_batch_add(&b, toks[i], i, 0, false);
    CHECK_OK(em_decode(c, &b));
    em_batch_clear(&b);
    em_batch_add(&b, toks[N - 1], N - 1, 0, true);
    CHECK_OK(em_decode(c, &b));
    CHECK(max_rel_diff(em_get_logits(c, 0), whole[N - 1], nv) < 1e-5f);

    /* Trimming the cache and decoding the tail again reproduces it. */
    em_kv_remove(c, 0, 6, -1);
    CHECK(em_kv_seq_pos_max(c, 0) == 6);
    em_batch_clear(&b);
    for (int i = 6; i < N; i++) em_batch_add(&b, toks[i], i, 0, i == N - 1);
    CHECK_OK(em_decode(c, &b));
    CHECK(em_get_logits(c, 0) == NULL);
    CHECK(max_rel_diff(em_get_logits(c, N - 1 - 6), whole[N - 1], nv) < 1e-5f);

    /* A second sequence interleaved in one batch does not disturb the
     * first: seq 1 gets the same prompt, rows alternating with seq 0's
     * continuation positions. */
    em_kv_clear(c);
    em_batch_clear(&b);
    for (int i = 0; i < N; i++) {
        em_batch_add(&b, toks[i], i, 1, i == N - 1);
        if (i < 4) em_batch_add(&b, toks[i], i, 0, i == 3);
    }
    CHECK_OK(em_decode(c, &b));
    CHECK(max_rel_diff(em_get_logits(c, 7), whole[3], nv) < 1e-5f);
    CHECK(max_rel_diff(em_get_logits(c, b.n_tokens - 1), whole[N - 1], nv) < 1e-5f);

    /* A shared prompt: seq 0 computes it, seq 1 continues from it. */
    em_kv_clear(c);
    em_batch_clear(&b);
    for (int i = 0; i < N - 1; i++) em_batch_add(&b, toks[i], i, 0, false);
    CHECK_OK(em_decode(c, &b));
    em_kv_seq_cp(c, 0, 1, 0, -1);
    em_kv_remove(c, 0, 0, -1);
    CHECK(em_kv_seq_pos_max(c, 0) == 0 && em_kv_seq_pos_max(c, 1) == N - 1);
    em_batch_clear(&b);
    em_batch_add(&b, toks[N - 1], N - 1, 1, true);
    CHECK_OK(em_decode(c, &b));
    CHECK(max_rel_diff(em_get_logits(c, 0), whole[N - 1], nv) < 1e-5f);

    /* Bad input: rejected with a clear status, and the cache unchanged. */
    em_kv_clear(c);
    em_batch_clear(&b);
    em_batch_add(&b, 9999, 0, 0, true);
    CHECK(em_decode(c, &b) == EM_ERR_INVALID_ARG);
    em_batch_clear(&b);
    em_batch_add(&b, 1, 0, 5, true);
    CHECK(em_decode(c, &b) == EM_ERR_INVALID_ARG);
    em_batch_clear(&b);
    em_batch_add(&b, 1, -3, 0, true);
    CHECK(em_decode(c, &b) == EM_ERR_INVALID_ARG);
    em_batch_clear(&b);
    CHECK(em_decode(c, &b) == EM_ERR_INVALID_ARG);
    CHECK(em_kv_seq_pos_max(c, 0) == 0);

    /* Filling the context: the batch that overflows fails whole. */
    for (int start = 0; start < 64; start += 32) {
        em_batch_clear(&b);
        for (int i = start; i < start + 32; i++) em_batch_add(&b, toks[i % N], i, 0, false);
        CHECK_OK(em_decode(c, &b));
    }
    em_batch_clear(&b);
    em_batch_add(&b, 1, 64, 0, true);
    CHECK(em_decode(c, &b) == EM_ERR_CONTEXT_FULL);
    CHECK(em_kv_seq_pos_max(c, 0) == 64);
    /* A batch over n_batch is refused, not truncated. */
    em_batch big;
    CHECK_OK(em_batch_init(&big, 40));
    for (int i = 0; i < 40; i++) em_batch_add(&big, 1, i, 1, false);
    CHECK(em_decode(c, &big) == EM_ERR_INVALID_ARG);
    em_batch_free(&big);

    em_batch_free(&b);
    em_context_free(c);
    em_model_free(m);
    /* With no context left the tables may change again: the same set goes
     * back in. */
    char isa[32];
    snprintf(isa, sizeof isa, "%s", em_vec_dot_isa());
    CHECK_MSG(em_kernels_select(isa) == 0, "reselecting %s", isa);

    /* Files that are not models fail to load with a message. */
    em_model *bad = NULL;
    CHECK(em_model_load(&bad, "/nonexistent/model.gguf", NULL) != EM_OK);
    CHECK(bad == NULL && strlen(em_last_error()) > 0);
}

int main(void) {
    test_threadpool();
    test_kv_slots();
    test_attention(EM_TYPE_F32, 0);
    test_attention(EM_TYPE_F32, 3);
    test_attention(EM_TYPE_F16, 0);
    test_attention(EM_TYPE_Q8_0, 5);
    SKIP_REST_WITHOUT_TEST_DATA();
    test_decode();
    TEST_END();
}
