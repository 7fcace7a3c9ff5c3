/*
 * gen_bench_model.c - writes a Llama-shaped model of any size with random
 * weights, for speed benchmarks (bench/bench-1b.sh) where only the shapes
 * and the bytes matter.
 *
 *   gen_bench_model OUT.gguf [options]
 *
 *   --preset 1b|134m    dim 2048, 16 layers, 32 heads, 8 KV heads, FFN 8192
 *                       (1.0B); or dim 768, 12 layers, 12 heads, 12 KV heads,
 *                       FFN 3072 (134M); both with a 32000-token vocabulary
 *   --n-embd N  --n-layer N  --n-head N  --n-head-kv N  --n-ff N
 *   --n-vocab N  --n-ctx N   override single sizes (defaults: the 1b preset,
 *                            context 2048)
 *   --type f16|f32      type of the weight matrices (default f16); norms are
 *                       always F32, as llama.cpp's converter writes them
 *   --experts N         a mixture-of-experts FFN in every layer (the Mixtral
 *                       layout: router ffn_gate_inp, 3-D ffn_*_exps)
 *   --experts-used K    experts per token (default 2)
 *   --n-ff-exp N        width of one expert (default n_ff)
 *   --seed S            weights from this seed (default 1)
 *
 * The weights are uniform with the standard deviation 1/sqrt(n_in) that
 * keeps activations near unit size through any depth, so the forward pass
 * does the same arithmetic on sane numbers as it would on a trained model.
 * The vocabulary is made up (SentencePiece-shaped: <unk>, <s>, </s>, the
 * 256 byte tokens, then distinct pieces).  ember's GGUF writer holds every
 * tensor in memory until it writes the file (about 2.2 GB for the 1b
 * preset in F16); this tool itself keeps only one tensor's scratch.
 */
#include "gen_common.h"
#include "gguf/gguf.h"
#include "tool.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bench_opts {
    const char *out;
    int n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_ctx;
    int n_expert, n_expert_used, n_ff_exp;
    bool f32;
    uint64_t seed;
} bench_opts;

static void usage(void) {
    fprintf(stderr, "usage: gen_bench_model OUT.gguf [--preset 1b|134m] [--n-embd N] [--n-layer N] [--n-head N]\n"
                    "       [--n-head-kv N] [--n-ff N] [--n-vocab N] [--n-ctx N] [--type f16|f32] [--seed S]\n"
                    "       [--experts N] [--experts-used K] [--n-ff-exp N]\n");
}

static void preset(bench_opts *o, bool small) {
    o->n_embd = small ? 768 : 2048;
    o->n_layer = small ? 12 : 16;
    o->n_head = small ? 12 : 32;
    o->n_head_kv = small ? 12 : 8;
    o->n_ff = small ? 3072 : 8192;
    o->n_vocab = 32000;
}

static int parse_args(int argc, char **argv, bench_opts *o) {
    if (argc < 2 || argv[1][0] == '-') return -1;
    memset(o, 0, sizeof *o);
    o->out = argv[1];
    preset(o, false);
    o->n_ctx = 2048;
    o->seed = 1;
    o->n_expert_used = 2;
    for (int i = 2; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int seed = 0;
        bool ok = true;
        if (!v) ok = false;
        else if (!strcmp(a, "--preset")) {
            ok = !strcmp(v, "1b") || !strcmp(v, "134m");
            if (ok) preset(o, !strcmp(v, "134m"));
        } else if (!strcmp(a, "--n-embd")) ok = parse_int(v, 32, 1 << 15, &o->n_embd);
        else if (!strcmp(a, "--n-layer")) ok = parse_int(v, 1, 256, &o->n_layer);
        else if (!strcmp(a, "--n-head")) ok = parse_int(v, 1, 1024, &o->n_head);
        else if (!strcmp(a, "--n-head-kv")) ok = parse_int(v, 1, 1024, &o->n_head_kv);
        else if (!strcmp(a, "--n-ff")) ok = parse_int(v, 32, 1 << 17, &o->n_ff);
        else if (!strcmp(a, "--n-vocab")) ok = parse_int(v, 300, 1 << 20, &o->n_vocab);
        else if (!strcmp(a, "--n-ctx")) ok = parse_int(v, 16, 1 << 24, &o->n_ctx);
        else if (!strcmp(a, "--seed")) ok = parse_int(v, 0, 0x7fffffff, &seed), o->seed = (uint64_t)seed;
        else if (!strcmp(a, "--experts")) ok = parse_int(v, 1, 256, &o->n_expert);
        else if (!strcmp(a, "--experts-used")) ok = parse_int(v, 1, 16, &o->n_expert_used);
        else if (!strcmp(a, "--n-ff-exp")) ok = parse_int(v, 32, 1 << 17, &o->n_ff_exp);
        else if (!strcmp(a, "--type")) {
            ok = !strcmp(v, "f16") || !strcmp(v, "f32");
            o->f32 = ok && !strcmp(v, "f32");
        } else {
            fprintf(stderr, "gen_bench_model: unknown option %s\n", a);
            return -1;
        }
        if (!ok) {
            fprintf(stderr, "gen_bench_model: bad or missing value for %s\n", a);
            return -1;
        }
    }
    if (o->n_ff_exp == 0) o->n_ff_exp = o->n_ff;
    if (o->n_expert && o->n_expert_used > o->n_expert) {
        fprintf(stderr, "gen_bench_model: --experts-used exceeds --experts\n");
        return -1;
    }
    if (o->n_head % o->n_head_kv || o->n_embd % o->n_head || (o->n_embd / o->n_head) % 2) {
        fprintf(stderr, "gen_bench_model: n_embd must split into even heads and n_head into KV groups\n");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ weights */

/* Scratch for one tensor in its stored type; the writer copies it. */
static void *scratch;

/* Adds a tensor of uniform values with the given mean and standard
 * deviation (a uniform on [-a, a] has deviation a / sqrt(3)). */
static em_status add3(em_gguf_writer *w, const char *name, int64_t ne0, int64_t ne1, int64_t ne2, double mean,
                      double std, bool f32) {
    int64_t n = ne0 * (ne1 ? ne1 : 1) * (ne2 ? ne2 : 1);
    const float a = (float)(std * sqrt(3.0)), m = (float)mean;
    float *f = scratch;
    uint16_t *h = scratch;
    for (int64_t i = 0; i < n; i += 2) {
        uint64_t r = rng_next();
        for (int k = 0; k < 2 && i + k < n; k++) {
            /* 32 random bits to [-1, 1). */
            float u = (float)((r >> (32 * k)) & 0xffffffffu) * (2.0f / 4294967296.0f) - 1.0f;
            float v = m + a * u;
            if (f32) f[i + k] = v;
            else h[i + k] = em_fp32_to_fp16(v);
        }
    }
    int64_t ne[3] = {ne0, ne1, ne2};
    return em_gguf_add_tensor(w, name, f32 ? EM_TYPE_F32 : EM_TYPE_F16, ne2 ? 3 : ne1 ? 2 : 1, ne, scratch);
}

static em_status add(em_gguf_writer *w, const char *name, int64_t ne0, int64_t ne1, double mean, double std,
                     bool f32) {
    return add3(w, name, ne0, ne1, 0, mean, std, f32);
}

/* ---------------------------------------------------------- vocabulary */

/* The k-th string of a, b, ..., z, aa, ab, ...: distinct for every k. */
static void piece_letters(int k, char *buf) {
    char tmp[16];
    int n = 0;
    k++;
    while (k > 0 && n < 15) {
        k--;
        tmp[n++] = (char)('a' + k % 26);
        k /= 26;
    }
    for (int i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
}

/* Even pieces start a word ("\xe2\x96\x81" is U+2581, SentencePiece's
 * space), odd ones continue it. */
static void bench_piece(int k, char *buf, size_t size) {
    char letters[16];
    piece_letters(k / 2, letters);
    snprintf(buf, size, "%s%s", k % 2 ? "" : "\xe2\x96\x81", letters);
}

/* ---------------------------------------------------------------- model */

static em_status write_model(em_gguf_writer *w, const bench_opts *o) {
    int64_t E = o->n_embd, F = o->n_ff, V = o->n_vocab;
    int64_t HD = E / o->n_head, KD = HD * o->n_head_kv;
    const int64_t X = o->n_expert, FE = o->n_ff_exp;
    const double ffn = X ? 3.0 * E * FE * X + (double)E * X : 3.0 * E * F;
    double n_params = (double)E * V * 2 + (double)o->n_layer * (2.0 * E * E + 2.0 * E * KD + ffn);
    char name[64];
    snprintf(name, sizeof name, "ember-bench-%.0f%s", n_params >= 1e9 ? n_params / 1e9 : n_params / 1e6,
             n_params >= 1e9 ? "B" : "M");
    TRY(em_gguf_set_str(w, "general.architecture", "llama"));
    TRY(em_gguf_set_str(w, "general.name", name));
    TRY(em_gguf_set_u32(w, "general.file_type", o->f32 ? 0 : 1));
    TRY(em_gguf_set_u32(w, "llama.context_length", (uint32_t)o->n_ctx));
    TRY(em_gguf_set_u32(w, "llama.embedding_length", (uint32_t)E));
    TRY(em_gguf_set_u32(w, "llama.block_count", (uint32_t)o->n_layer));
    TRY(em_gguf_set_u32(w, "llama.feed_forward_length", (uint32_t)F));
    TRY(em_gguf_set_u32(w, "llama.attention.head_count", (uint32_t)o->n_head));
    TRY(em_gguf_set_u32(w, "llama.attention.head_count_kv", (uint32_t)o->n_head_kv));
    TRY(em_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f));
    TRY(em_gguf_set_f32(w, "llama.rope.freq_base", 10000.0f));
    TRY(em_gguf_set_u32(w, "llama.rope.dimension_count", (uint32_t)HD));
    if (X) {
        TRY(em_gguf_set_u32(w, "llama.expert_count", (uint32_t)X));
        TRY(em_gguf_set_u32(w, "llama.expert_used_count", (uint32_t)o->n_expert_used));
        TRY(em_gguf_set_u32(w, "llama.expert_feed_forward_length", (uint32_t)FE));
    }
    TRY(gen_add_spm_vocab(w, o->n_vocab, bench_piece));

    const bool f = o->f32;
    TRY(add(w, "token_embd.weight", E, V, 0.0, 1.0, f));
    TRY(add(w, "output_norm.weight", E, 0, 1.0, 0.05, true));
    TRY(add(w, "output.weight", E, V, 0.0, 1.0 / sqrt((double)E), f));
    for (int il = 0; il < o->n_layer; il++) {
        char n[64];
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", il, s), n)
        TRY(add(w, NAME("attn_norm.weight"), E, 0, 1.0, 0.05, true));
        TRY(add(w, NAME("attn_q.weight"), E, E, 0.0, 1.0 / sqrt((double)E), f));
        TRY(add(w, NAME("attn_k.weight"), E, KD, 0.0, 1.0 / sqrt((double)E), f));
        TRY(add(w, NAME("attn_v.weight"), E, KD, 0.0, 1.0 / sqrt((double)E), f));
        TRY(add(w, NAME("attn_output.weight"), E, E, 0.0, 1.0 / sqrt((double)E), f));
        TRY(add(w, NAME("ffn_norm.weight"), E, 0, 1.0, 0.05, true));
        if (X) {
            TRY(add(w, NAME("ffn_gate_inp.weight"), E, X, 0.0, 1.0 / sqrt((double)E), true));
            TRY(add3(w, NAME("ffn_gate_exps.weight"), E, FE, X, 0.0, 1.0 / sqrt((double)E), f));
            TRY(add3(w, NAME("ffn_up_exps.weight"), E, FE, X, 0.0, 1.0 / sqrt((double)E), f));
            TRY(add3(w, NAME("ffn_down_exps.weight"), FE, E, X, 0.0, 1.0 / sqrt((double)FE), f));
        } else {
            TRY(add(w, NAME("ffn_gate.weight"), E, F, 0.0, 1.0 / sqrt((double)E), f));
            TRY(add(w, NAME("ffn_up.weight"), E, F, 0.0, 1.0 / sqrt((double)E), f));
            TRY(add(w, NAME("ffn_down.weight"), F, E, 0.0, 1.0 / sqrt((double)F), f));
        }
#undef NAME
    }
    return EM_OK;
}

int main(int argc, char **argv) {
    bench_opts o;
    if (parse_args(argc, argv, &o) != 0) {
        usage();
        return 2;
    }
    rng_state = o.seed * 0x2545f4914f6cdd1dULL + 0x9e3779b97f4a7c15ULL;
    size_t biggest = (size_t)o.n_embd * (size_t)EM_MAX(o.n_vocab, EM_MAX(o.n_ff, o.n_embd));
    biggest = EM_MAX(biggest, (size_t)o.n_embd * (size_t)o.n_ff_exp * (size_t)o.n_expert);
    scratch = malloc(biggest * sizeof(float));
    em_gguf_writer *w = NULL;
    em_status st = scratch ? em_gguf_writer_init(&w) : em_error(EM_ERR_NOMEM, "gen_bench_model: out of memory");
    if (st == EM_OK) st = write_model(w, &o);
    if (st == EM_OK) st = em_gguf_write(w, o.out);
    em_gguf_writer_free(w);
    free(scratch);
    if (st != EM_OK) {
        fprintf(stderr, "gen_bench_model: %s: %s\n", em_status_str(st), em_last_error());
        return 1;
    }
    return 0;
}
