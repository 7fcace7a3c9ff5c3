/*
 * bench_attn.c - the time of prompt attention alone: one sequence's P
 * prompt rows attending to themselves (causal, F16 cache unless --kv-type
 * says otherwise, head size 64),
 * one layer, one thread, with the SIMD kernels the CPU (and EMBER_CPU)
 * selects and with the scalar ones.  This is the part of prompt processing
 * that grows with the prompt's length (pp512 against pp128).
 *
 *   bench_attn [--rows 512] [--heads 12] [--kv-heads 12] [--reps 15] [--scalar]
 *              [--decode N] [--kv-type f16|q8_0|f32]
 *
 * --decode N times a serving engine's decode step instead: N sequences
 * of --rows positions each, placed a position of every sequence at a time
 * (so their cache blocks interleave in the pool, as a server's do), and
 * one query row per sequence, at its last position, shared out a task per
 * (row, KV head) as the engine's decode step shares them (the step that
 * stores a row's keys inside attention, em_attn_args.prepare, has nothing
 * to do here).  Before each pass the caches are flushed by reading 64 MiB,
 * as a decode step's weights do between two layers' attention, so the
 * keys and values come from memory.
 *
 * --kv-type picks the cache's storage (the engine's --kv-type): F16 by
 * default, Q8_0 (read in place by the qk_q8_0 / pv_q8_0 kernels), F32.
 *
 * --scalar also times the scalar kernels (slow: about 100x).
 * EMBER_CPU=avx2 in the environment measures the AVX2 set on an AVX-512
 * machine.
 * Times are this thread's CPU time (CLOCK_THREAD_CPUTIME_ID), the best of
 * --reps passes, so that time descheduled on a loaded machine does not
 * count; GFLOP/s counts 2 * heads * (64 + 64) multiply-adds per visible
 * key.  The outputs' checksum is printed so that the sets can be seen to
 * agree (avx2 and avx512 give the same bits).  Nothing here asserts a time.
 */
#include "core/cpu.h"
#include "core/threadpool.h"
#include "kv/kv.h"
#include "ops/attention.h"
#include "tool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A fixed LCG in [-1, 1): runs compare. */
static float next_val(uint32_t *st) {
    *st = *st * 1664525u + 1013904223u;
    return (float)(*st >> 8) / (float)(1u << 23) - 1.0f;
}

/* Reads 64 MiB once (a fresh buffer each call would fault instead), so
 * that what attention reads next comes from memory.  The buffer is
 * written once first: pages only ever read are all the kernel's one zero
 * page, and reading them evicted nothing. */
static void flush_caches(void) {
    static volatile unsigned char *big;
    enum { BIG = 64 << 20 };
    if (!big) {
        unsigned char *p = malloc(BIG);
        if (!p) return;
        memset(p, 1, BIG);
        big = p;
    }
    unsigned sum = 0;
    for (size_t i = 0; i < BIG; i += 64) sum += big[i];
    big[0] = (unsigned char)sum;
}

/* em_attn_args.prepare for --decode: the keys and values are stored. */
static void no_prepare(void *ctx, int32_t row, int32_t kv_head) { (void)ctx, (void)row, (void)kv_head; }

/* Prompt attention (decode 0: one sequence's rows rows attending to
 * themselves) or, with decode = n, a decode step of n sequences of rows
 * positions (see the top); 0 on success. */
static int run(int decode, int rows, int heads, int kv_heads, int reps, int with_scalar, em_type kv_type) {
    enum { HD = 64 };
    const int n_seq = decode ? decode : 1, n_q = decode ? decode : rows; /* sequences, query rows */
    const size_t nq = (size_t)n_q * heads * HD, nkv = (size_t)kv_heads * HD;
    float *q = malloc(nq * sizeof *q), *out = malloc(nq * sizeof *out), *kr = malloc(nkv * sizeof *kr),
          *vr = malloc(nkv * sizeof *vr);
    em_seq_id *seq = malloc((size_t)n_q * sizeof *seq);
    em_pos *pos = malloc((size_t)n_q * sizeof *pos);
    int32_t *cells = malloc((size_t)n_q * sizeof *cells);
    float *scratch = malloc(em_attention_scratch(heads, kv_heads, HD, HD) * sizeof(float));
    em_kv kv;
    em_threadpool *tp = NULL;
    int rc = 1;
    if (!q || !out || !kr || !vr || !seq || !pos || !cells || !scratch) goto done;
    if (em_kv_init(&kv, n_seq * (rows + EM_KV_BLOCK), n_seq, 1, nkv, nkv, kv_type, HD, HD) != EM_OK) goto done;
    /* The cache: a position of every sequence at a time, so that the
     * sequences' blocks interleave in the pool as a server's do. */
    uint32_t st = 1;
    for (int p = 0; p < rows; p++) {
        for (int s = 0; s < n_seq; s++) seq[s] = s, pos[s] = p;
        if (em_kv_place(&kv, n_seq, seq, pos, NULL, cells, NULL) != EM_OK) goto kv_done;
        for (int s = 0; s < n_seq; s++) {
            for (size_t j = 0; j < nkv; j++) kr[j] = next_val(&st), vr[j] = 0.5f * next_val(&st) + 0.5f;
            em_kv_write(&kv, 0, cells[s], 0, kv_heads, kr, vr, NULL);
        }
    }
    /* The queries: each sequence's last position, or every prompt row. */
    for (int i = 0; i < n_q; i++) seq[i] = decode ? i : 0, pos[i] = decode ? rows - 1 : i;
    for (size_t i = 0; i < nq; i++) q[i] = next_val(&st);
    if (em_threadpool_init(&tp, 1) != EM_OK) goto kv_done;
    double flops = 0;
    for (int i = 0; i < n_q; i++) flops += 2.0 * heads * (HD + HD) * (pos[i] + 1);
    if (decode)
        printf("decode attention: %d sequences of %d positions, %d heads, %d KV heads, head size %d, %s cache, "
               "1 thread, caches flushed, best of %d\n", decode, rows, heads, kv_heads, HD, em_type_name(kv_type), reps);
    else
        printf("prompt attention: %d rows, %d heads, %d KV heads, head size %d, %s cache, 1 thread, best of %d\n",
               rows, heads, kv_heads, HD, em_type_name(kv_type), reps);
    const unsigned f = em_cpu_features();
    const char *simd = (f & EM_CPU_AVX512) ? "avx512" : (f & EM_CPU_AVX2) ? "avx2" : "generic";
    for (int scalar = 0; scalar <= with_scalar; scalar++) {
        em_attn_kernels_force_scalar(scalar);
        em_attn_args a = {.q = q, .out = out, .kv = &kv, .layer = 0, .seq = seq, .pos = pos, .n_rows = n_q,
                          .n_head = heads, .n_head_kv = kv_heads, .head_dim = HD, .head_dim_v = HD,
                          .scale = 0.125f, .scratch = scratch};
        /* A serving decode step stores each row's keys inside attention
         * (em_attn_args.prepare), which shares the work out as it does
         * then; the keys are in place here, so that step does nothing. */
        if (decode) a.prepare = no_prepare;
        double best = 1e30;
        for (int r = 0; r < reps; r++) {
            if (decode) flush_caches();
            const double t0 = thread_time_s();
            em_attention(tp, &a);
            const double t = thread_time_s() - t0;
            if (t < best) best = t;
        }
        double sum = 0;
        for (size_t i = 0; i < nq; i++) sum += out[i];
        printf("%-8s %9.3f ms  %7.1f GFLOP/s  checksum %.9g\n", scalar ? "scalar" : simd, best * 1e3,
               flops / best / 1e9, sum);
    }
    em_attn_kernels_force_scalar(0);
    rc = 0;
    em_threadpool_free(tp);
kv_done:
    em_kv_free(&kv);
done:
    free(q), free(out), free(kr), free(vr), free(seq), free(pos), free(cells), free(scratch);
    return rc;
}

int main(int argc, char **argv) {
    int rows = 512, heads = 12, kv_heads = 12, reps = 15, with_scalar = 0, decode = 0;
    em_type kv_type = EM_TYPE_F16;
    bool ok = true;
    for (int i = 1; ok && i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--scalar")) with_scalar = 1;
        else if (!strcmp(a, "--rows")) ok = parse_int(v, 1, 8192, &rows), i++;
        else if (!strcmp(a, "--heads")) ok = parse_int(v, 1, 256, &heads), i++;
        else if (!strcmp(a, "--kv-heads")) ok = parse_int(v, 1, 256, &kv_heads), i++;
        else if (!strcmp(a, "--reps")) ok = parse_int(v, 1, 1000, &reps), i++;
        else if (!strcmp(a, "--decode")) ok = parse_int(v, 1, 64, &decode), i++;
        else if (!strcmp(a, "--kv-type")) {
            ok = v && (!strcmp(v, "f16") || !strcmp(v, "q8_0") || !strcmp(v, "f32")), i++;
            if (ok) kv_type = !strcmp(v, "f16") ? EM_TYPE_F16 : !strcmp(v, "q8_0") ? EM_TYPE_Q8_0 : EM_TYPE_F32;
        }
        else ok = false;
    }
    if (!ok || heads % kv_heads) {
        fprintf(stderr, "usage: bench_attn [--rows 512] [--heads 12] [--kv-heads 12] [--reps 15] [--scalar] [--decode N]\n"
                        "                  [--kv-type f16|q8_0|f32]\n"
                        "       (heads a multiple of kv-heads)\n");
        return 2;
    }
    return run(decode, rows, heads, kv_heads, reps, with_scalar, kv_type);
}
