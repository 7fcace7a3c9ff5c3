/*
 * gen_model.c - writes a small random-weight F32 model for the NumPy
 * reference check (tests/ref/test_numpy_ref.sh).
 *
 *   gen_model OUT.gguf ARCH [options]
 *
 * ARCH is llama, qwen2 (adds Q/K/V biases), qwen3moe (qwen3 with experts), qwen3 (adds per-head Q/K
 * RMSNorm weights and always writes attention.key_length/value_length),
 * gemma2 (post-attention and post-FFN norms, soft-caps, tied output; needs
 * --swa) or gemma3 (gemma2's tensors plus qwen3's Q/K norms, no soft-caps,
 * rope.freq_base_swa; needs --swa, and 6 layers to have a global one).
 * gemma4 (see write_gemma4 below) takes the gemma4 options at the end.
 * Options, one model variant per invocation:
 *
 *   --seed S            weights from this seed (default 1)
 *   --n-embd N          residual width (64)
 *   --n-layer N         blocks (2)
 *   --n-head N          query heads (4)
 *   --n-head-kv N       key/value heads (n-head); fewer means GQA
 *   --head-dim N        head size (n-embd / n-head); another value writes
 *                       attention.key_length and .value_length
 *   --n-ff N            feed-forward width (192)
 *   --n-vocab N         vocabulary size (512)
 *   --n-ctx N           context_length (256)
 *   --rope-base B       rope.freq_base (10000)
 *   --tied              no output.weight: the output reuses token_embd
 *   --swa W             attention.sliding_window = W (Mistral-style)
 *   --rope-freqs        a Llama 3 style rope_freqs.weight tensor
 *   --rope-linear F     rope.scaling.type "linear", rope.scaling.factor F
 *   --rope-yarn F       rope.scaling.type "yarn", factor F, and
 *                       rope.scaling.original_context_length 16
 *   --experts N         N experts per layer (llama: the Mixtral layout;
 *                       qwen3moe: required), router ffn_gate_inp and 3-D
 *                       ffn_{gate,up,down}_exps tensors
 *   --experts-used K    experts per token (2)
 *   --n-ff-exp N        qwen3moe: expert_feed_forward_length (n-ff / 2)
 *   --rope-base-swa B   gemma3: rope.freq_base_swa (1000)
 *   --attn-softcap C    gemma2: attn_logit_softcapping (5)
 *   --final-softcap C   gemma2: final_logit_softcapping (3)
 *   --moe-step S        llama4: interleave_moe_layer_step (2): layers with
 *                       (il + 1) % S == 0 have experts (and a shared expert
 *                       ffn_{gate,up,down}_shexp), the others a dense FFN
 *   --chunk N           llama4: attention.chunk_size (absent: llama.cpp's 8192)
 *   --tokenizer-from P  copy the tokenizer.* keys of GGUF file P instead of
 *                       writing the built-in tiny SentencePiece vocabulary
 *   gemma4 only (--n-head-kv and --head-dim are the windowed layers'):
 *   --pattern P         L (windowed) or G (global) per layer (default LLG...)
 *   --head-dim-global N head size of the global layers (2 x head-dim)
 *   --n-head-kv-global N  KV heads of the global layers (1)
 *   --shared-kv N       the last N layers reuse earlier layers' KV (0)
 *   --embd-pl N         per-layer embedding width (0: none)
 *   --no-v-global       global layers without attn_v (keys as values)
 *   --split-exps        separate ffn_gate_exps/ffn_up_exps (default fused)
 *   --n-ff-shared N     FFN width of the shared-KV layers (a per-layer
 *                       feed_forward_length array; default n-ff)
 *
 * Key and tensor names, types and shapes are those llama.cpp's loader
 * expects: counts are u32, floats f32, and a weight that maps n_in to n_out
 * has ne = [n_in, n_out].
 *
 * Weight scales: a matrix gets std gain / sqrt(n_in), so every projection
 * keeps activations near unit size whatever the widths.  Q and K use gain
 * 2.5 (and qwen3's Q/K norm weights sit near 2) so that attention is sharp:
 * with near-uniform attention a wrong RoPE or mask would barely move the
 * logits and the comparison could not catch it.  Norm weights are 1 plus
 * noise and biases are large enough to matter, for the same reason.
 */
#include "gen_common.h"
#include "gguf/gguf.h"
#include "tool.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- options */

typedef struct gen_opts {
    const char *out;
    const char *arch;
    const char *tokenizer_from;
    uint64_t seed;
    int n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_vocab, n_ctx;
    float rope_base;
    bool tied;
    int swa;
    bool rope_freqs;
    float rope_linear, rope_yarn;
    float rope_base_swa, attn_softcap, final_softcap;
    int n_expert, n_expert_used, n_ff_exp;
    int moe_step, chunk;
    /* gemma4 */
    const char *pattern;
    int head_dim_global, n_head_kv_global, shared_kv, embd_pl, n_ff_shared;
    bool no_v_global, split_exps;
} gen_opts;

static void usage(void) {
    fprintf(stderr,
            "usage: gen_model OUT.gguf llama|qwen2|qwen3|qwen3moe|gemma2|gemma3|gemma4|llama4 [--seed S] [--n-embd N]\n"
            "       [--n-layer N] [--n-head N] [--n-head-kv N] [--head-dim N] [--n-ff N] [--n-vocab N]\n"
            "       [--n-ctx N] [--rope-base B] [--tied] [--swa W] [--rope-freqs] [--rope-linear F]\n"
            "       [--rope-base-swa B] [--attn-softcap C] [--final-softcap C]\n"
            "       [--experts N] [--experts-used K] [--n-ff-exp N] [--rope-yarn F]\n"
            "       [--moe-step S] [--chunk N] [--tokenizer-from FILE.gguf]\n");
}

static bool parse_float(const char *s, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return false;
    *out = v;
    return true;
}

static int parse_args(int argc, char **argv, gen_opts *o) {
    if (argc < 3) return -1;
    memset(o, 0, sizeof *o);
    o->out = argv[1];
    o->arch = argv[2];
    o->seed = 1;
    o->n_embd = 64;
    o->n_layer = 2;
    o->n_head = 4;
    o->n_ff = 192;
    o->n_vocab = 512;
    o->n_ctx = 256;
    o->rope_base = 10000.0f;
    o->rope_base_swa = 1000.0f;
    o->attn_softcap = 5.0f;
    o->final_softcap = 3.0f;
    o->n_expert_used = 2;
    o->moe_step = 2;
    if (strcmp(o->arch, "llama") && strcmp(o->arch, "qwen2") && strcmp(o->arch, "qwen3") &&
        strcmp(o->arch, "qwen3moe") && strcmp(o->arch, "gemma2") && strcmp(o->arch, "gemma3") &&
        strcmp(o->arch, "gemma4") && strcmp(o->arch, "llama4")) {
        fprintf(stderr,
                "gen_model: unknown architecture '%s' (llama, qwen2, qwen3, qwen3moe, gemma2, gemma3, gemma4, llama4)\n",
                o->arch);
        return -1;
    }
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true, takes = true;
        int seed = 0;
        if (!strcmp(a, "--tied")) o->tied = true, takes = false;
        else if (!strcmp(a, "--rope-freqs")) o->rope_freqs = true, takes = false;
        else if (!strcmp(a, "--no-v-global")) o->no_v_global = true, takes = false;
        else if (!strcmp(a, "--split-exps")) o->split_exps = true, takes = false;
        else if (!v) ok = false;
        else if (!strcmp(a, "--seed")) ok = parse_int(v, 0, 0x7fffffff, &seed), o->seed = (uint64_t)seed;
        else if (!strcmp(a, "--n-embd")) ok = parse_int(v, 2, 1 << 14, &o->n_embd);
        else if (!strcmp(a, "--n-layer")) ok = parse_int(v, 1, 64, &o->n_layer);
        else if (!strcmp(a, "--n-head")) ok = parse_int(v, 1, 256, &o->n_head);
        else if (!strcmp(a, "--n-head-kv")) ok = parse_int(v, 1, 256, &o->n_head_kv);
        else if (!strcmp(a, "--head-dim")) ok = parse_int(v, 2, 1024, &o->head_dim);
        else if (!strcmp(a, "--n-ff")) ok = parse_int(v, 1, 1 << 16, &o->n_ff);
        else if (!strcmp(a, "--n-vocab")) ok = parse_int(v, 260, 1 << 20, &o->n_vocab);
        else if (!strcmp(a, "--n-ctx")) ok = parse_int(v, 1, 1 << 24, &o->n_ctx);
        else if (!strcmp(a, "--swa")) ok = parse_int(v, 1, 1 << 24, &o->swa);
        else if (!strcmp(a, "--rope-base")) ok = parse_float(v, &o->rope_base) && o->rope_base > 1.0f;
        else if (!strcmp(a, "--rope-linear")) ok = parse_float(v, &o->rope_linear) && o->rope_linear > 0.0f;
        else if (!strcmp(a, "--rope-yarn")) ok = parse_float(v, &o->rope_yarn) && o->rope_yarn > 1.0f;
        else if (!strcmp(a, "--tokenizer-from")) o->tokenizer_from = v;
        else if (!strcmp(a, "--pattern")) o->pattern = v;
        else if (!strcmp(a, "--head-dim-global")) ok = parse_int(v, 2, 1024, &o->head_dim_global);
        else if (!strcmp(a, "--n-head-kv-global")) ok = parse_int(v, 1, 256, &o->n_head_kv_global);
        else if (!strcmp(a, "--shared-kv")) ok = parse_int(v, 0, 63, &o->shared_kv);
        else if (!strcmp(a, "--embd-pl")) ok = parse_int(v, 0, 1024, &o->embd_pl);
        else if (!strcmp(a, "--n-ff-shared")) ok = parse_int(v, 1, 1 << 16, &o->n_ff_shared);
        else if (!strcmp(a, "--experts")) ok = parse_int(v, 1, 256, &o->n_expert);
        else if (!strcmp(a, "--experts-used")) ok = parse_int(v, 1, 16, &o->n_expert_used);
        else if (!strcmp(a, "--n-ff-exp")) ok = parse_int(v, 1, 1 << 16, &o->n_ff_exp);
        else if (!strcmp(a, "--rope-base-swa")) ok = parse_float(v, &o->rope_base_swa) && o->rope_base_swa > 1.0f;
        else if (!strcmp(a, "--attn-softcap")) ok = parse_float(v, &o->attn_softcap) && o->attn_softcap > 0.0f;
        else if (!strcmp(a, "--final-softcap")) ok = parse_float(v, &o->final_softcap) && o->final_softcap > 0.0f;
        else if (!strcmp(a, "--moe-step")) ok = parse_int(v, 1, 64, &o->moe_step);
        else if (!strcmp(a, "--chunk")) ok = parse_int(v, 1, 1 << 24, &o->chunk);
        else {
            fprintf(stderr, "gen_model: unknown option %s\n", a);
            return -1;
        }
        if (!ok) {
            fprintf(stderr, "gen_model: bad or missing value for %s\n", a);
            return -1;
        }
        if (takes) i++;
    }
    if (o->n_head_kv == 0) o->n_head_kv = o->n_head;
    if (!strcmp(o->arch, "qwen3moe") && o->n_expert == 0) o->n_expert = 4;
    if (o->n_ff_exp == 0) o->n_ff_exp = !strcmp(o->arch, "qwen3moe") || !strcmp(o->arch, "llama4") ? o->n_ff / 2 : o->n_ff;
    if (o->n_expert && o->n_expert_used > o->n_expert) {
        fprintf(stderr, "gen_model: --experts-used exceeds --experts\n");
        return -1;
    }
    if (o->head_dim == 0) o->head_dim = o->n_embd / o->n_head;
    if (!o->head_dim_global) o->head_dim_global = 2 * o->head_dim;
    if (!o->n_head_kv_global) o->n_head_kv_global = 1;
    if (o->pattern && (int)strlen(o->pattern) != o->n_layer) {
        fprintf(stderr, "gen_model: --pattern needs one letter per layer\n");
        return -1;
    }
    if (o->n_head % o->n_head_kv || o->n_head % o->n_head_kv_global || o->head_dim % 2 || o->head_dim_global % 2) {
        fprintf(stderr, "gen_model: n_head must be a multiple of n_head_kv and head_dim even\n");
        return -1;
    }
    return 0;
}

/* ----------------------------------------------------------- randomness */

/* A standard normal deviate by Box-Muller. */
static double rng_normal(void) {
    double u1 = ((double)(rng_next() >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* ------------------------------------------------------------- writing */

/* Scratch for one tensor at a time: em_gguf_add_tensor copies the data. */
static float *scratch;

static em_status add(em_gguf_writer *w, const char *name, int64_t ne0, int64_t ne1,
                     double mean, double std) {
    int64_t n = ne0 * (ne1 ? ne1 : 1);
    for (int64_t i = 0; i < n; i++) scratch[i] = (float)(mean + std * rng_normal());
    int64_t ne[2] = {ne0, ne1};
    return em_gguf_add_tensor(w, name, EM_TYPE_F32, ne1 ? 2 : 1, ne, scratch);
}

/* n_x stacked weights mapping n_in to n_out: ne = [n_in, n_out, n_x]. */
static em_status add3(em_gguf_writer *w, const char *name, int64_t n_in, int64_t n_out, int64_t n_x) {
    int64_t n = n_in * n_out * n_x;
    for (int64_t i = 0; i < n; i++) scratch[i] = (float)(rng_normal() / sqrt((double)n_in));
    int64_t ne[3] = {n_in, n_out, n_x};
    return em_gguf_add_tensor(w, name, EM_TYPE_F32, 3, ne, scratch);
}

/* A weight mapping n_in to n_out: ne = [n_in, n_out]. */
static em_status add_matrix(em_gguf_writer *w, const char *name, int64_t n_in, int64_t n_out,
                            double gain) {
    return add(w, name, n_in, n_out, 0.0, gain / sqrt((double)n_in));
}

/* Llama 3 frequency divisors, computed the way the HF-to-GGUF converter
 * does from factor, low/high frequency factors and the original context.
 * The original context is tiny (32) so that the divisors already matter at
 * the short positions the test runs; real models use 8192. */
static em_status add_rope_freqs(em_gguf_writer *w, const gen_opts *o) {
    const double factor = 4.0, low_ff = 1.0, high_ff = 4.0, orig_ctx = 32.0;
    const double low_wavelen = orig_ctx / low_ff, high_wavelen = orig_ctx / high_ff;
    int half = o->head_dim / 2;
    for (int i = 0; i < half; i++) {
        double freq = pow((double)o->rope_base, -2.0 * i / o->head_dim);
        double wavelen = 2.0 * 3.141592653589793 / freq, div;
        if (wavelen < high_wavelen) {
            div = 1.0;
        } else if (wavelen > low_wavelen) {
            div = factor;
        } else {
            double smooth = (orig_ctx / wavelen - low_ff) / (high_ff - low_ff);
            div = 1.0 / ((1.0 - smooth) / factor + smooth);
        }
        scratch[i] = (float)div;
    }
    int64_t ne[1] = {half};
    return em_gguf_add_tensor(w, "rope_freqs.weight", EM_TYPE_F32, 1, ne, scratch);
}

/* The pieces of a tiny SentencePiece vocabulary shaped like stories260K's
 * ("\xe2\x96\x81" is U+2581, SentencePiece's space): a-z, then a-z
 * starting a word, then three letters starting a word. */
static void tiny_piece(int k, char *buf, size_t size) {
    if (k < 26) snprintf(buf, size, "%c", 'a' + k);
    else if (k < 52) snprintf(buf, size, "\xe2\x96\x81%c", 'a' + k - 26);
    else snprintf(buf, size, "\xe2\x96\x81%c%c%c", 'a' + (k / 676) % 26, 'a' + (k / 26) % 26, 'a' + k % 26);
}

/* In copy_key: a fixed-size value copied out of the file (where it may be
 * unaligned) and stored with the setter of its type. */
#define COPY_SCALAR(ctype, setter)                                                                 \
    {                                                                                              \
        ctype v;                                                                                   \
        memcpy(&v, raw, sizeof v);                                                                 \
        return setter(w, key, v);                                                                  \
    }

/* Copies one tokenizer.* key of src (index i) into the writer. */
static em_status copy_key(em_gguf_writer *w, const em_gguf *src, int64_t i, const char *key) {
    em_gguf_type t = em_gguf_kv_type(src, i);
    const void *raw = em_gguf_kv_raw(src, i);
    switch (t) {
    case EM_GGUF_UINT8: COPY_SCALAR(uint8_t, em_gguf_set_u8)
    case EM_GGUF_INT32: COPY_SCALAR(int32_t, em_gguf_set_i32)
    case EM_GGUF_UINT32: COPY_SCALAR(uint32_t, em_gguf_set_u32)
    case EM_GGUF_UINT64: COPY_SCALAR(uint64_t, em_gguf_set_u64)
    case EM_GGUF_FLOAT32: COPY_SCALAR(float, em_gguf_set_f32)
    case EM_GGUF_BOOL: COPY_SCALAR(uint8_t, em_gguf_set_bool) /* any nonzero byte is true */
    case EM_GGUF_STRING: {
        em_gguf_str s;
        em_status st = em_gguf_get_str(src, key, &s);
        if (st != EM_OK) return st;
        char *c = strndup(s.ptr, (size_t)s.len);
        if (!c) return em_error(EM_ERR_NOMEM, "out of memory");
        st = em_gguf_set_str(w, key, c);
        free(c);
        return st;
    }
    case EM_GGUF_ARRAY: {
        em_gguf_type et;
        uint64_t n;
        const void *data;
        em_status st = em_gguf_get_arr(src, key, &et, &n, &data);
        if (st != EM_OK) return st;
        if (et != EM_GGUF_STRING) return em_gguf_set_arr(w, key, et, data, n);
        char **strs = calloc(n ? n : 1, sizeof *strs);
        if (!strs) return em_error(EM_ERR_NOMEM, "out of memory");
        for (uint64_t j = 0; j < n && st == EM_OK; j++) {
            em_gguf_str s;
            st = em_gguf_arr_str(src, key, j, &s);
            if (st == EM_OK && !(strs[j] = strndup(s.ptr, (size_t)s.len)))
                st = em_error(EM_ERR_NOMEM, "out of memory");
        }
        if (st == EM_OK) st = em_gguf_set_arr_str(w, key, (const char *const *)strs, n);
        for (uint64_t j = 0; j < n; j++) free(strs[j]);
        free(strs);
        return st;
    }
    default:
        return em_error(EM_ERR_UNSUPPORTED, "cannot copy key %s of type %d", key, (int)t);
    }
}
#undef COPY_SCALAR

/* Copies only the tokenizer.* keys, so that no hyperparameter of the
 * source model leaks into the generated one. */
static em_status copy_tokenizer(em_gguf_writer *w, const char *path, int n_vocab) {
    em_gguf *src;
    em_status st = em_gguf_open(&src, path);
    if (st != EM_OK) return st;
    em_gguf_type et;
    uint64_t n = 0;
    const void *data;
    if (em_gguf_get_arr(src, "tokenizer.ggml.tokens", &et, &n, &data) != EM_OK || n != (uint64_t)n_vocab) {
        em_gguf_close(src);
        return em_error(EM_ERR_INVALID_ARG, "%s has %llu tokens but --n-vocab is %d", path,
                        (unsigned long long)n, n_vocab);
    }
    for (int64_t i = 0; i < em_gguf_n_kv(src) && st == EM_OK; i++) {
        em_gguf_str k = em_gguf_key(src, i);
        if (k.len < 10 || memcmp(k.ptr, "tokenizer.", 10)) continue;
        char *key = strndup(k.ptr, (size_t)k.len);
        if (!key) st = em_error(EM_ERR_NOMEM, "out of memory");
        else st = copy_key(w, src, i, key);
        free(key);
    }
    em_gguf_close(src);
    return st;
}

/* "<arch>.<suffix>" */
static const char *akey(const gen_opts *o, const char *suffix) {
    static char buf[128];
    snprintf(buf, sizeof buf, "%s.%s", o->arch, suffix);
    return buf;
}

static em_status write_metadata(em_gguf_writer *w, const gen_opts *o) {
    bool qwen = strcmp(o->arch, "llama") != 0;
    bool llama4 = !strcmp(o->arch, "llama4");
    char name[64];
    snprintf(name, sizeof name, "ember-test-%s", o->arch);
    TRY(em_gguf_set_str(w, "general.architecture", o->arch));
    TRY(em_gguf_set_str(w, "general.name", name));
    TRY(em_gguf_set_u32(w, akey(o, "context_length"), (uint32_t)o->n_ctx));
    TRY(em_gguf_set_u32(w, akey(o, "embedding_length"), (uint32_t)o->n_embd));
    TRY(em_gguf_set_u32(w, akey(o, "block_count"), (uint32_t)o->n_layer));
    TRY(em_gguf_set_u32(w, akey(o, "feed_forward_length"), (uint32_t)o->n_ff));
    TRY(em_gguf_set_u32(w, akey(o, "attention.head_count"), (uint32_t)o->n_head));
    TRY(em_gguf_set_u32(w, akey(o, "attention.head_count_kv"), (uint32_t)o->n_head_kv));
    TRY(em_gguf_set_f32(w, akey(o, "attention.layer_norm_rms_epsilon"), qwen ? 1e-6f : 1e-5f));
    if (!strcmp(o->arch, "gemma3") && o->rope_linear <= 0.0f) {
        /* Linear scaling on the global layers only: shows that windowed
         * layers use their own table. */
        TRY(em_gguf_set_str(w, akey(o, "rope.scaling.type"), "linear"));
        TRY(em_gguf_set_f32(w, akey(o, "rope.scaling.factor"), 4.0f));
    }
    TRY(em_gguf_set_f32(w, akey(o, "rope.freq_base"), o->rope_base));
    TRY(em_gguf_set_u32(w, akey(o, "rope.dimension_count"), (uint32_t)o->head_dim));
    if (o->head_dim * o->n_head != o->n_embd || strcmp(o->arch, "llama") != 0) {
        TRY(em_gguf_set_u32(w, akey(o, "attention.key_length"), (uint32_t)o->head_dim));
        TRY(em_gguf_set_u32(w, akey(o, "attention.value_length"), (uint32_t)o->head_dim));
    }
    if (o->swa) TRY(em_gguf_set_u32(w, akey(o, "attention.sliding_window"), (uint32_t)o->swa));
    if (o->rope_yarn > 0.0f) {
        /* A tiny original context so that the blend already matters at
         * the short positions the test runs. */
        TRY(em_gguf_set_str(w, akey(o, "rope.scaling.type"), "yarn"));
        TRY(em_gguf_set_f32(w, akey(o, "rope.scaling.factor"), o->rope_yarn));
        TRY(em_gguf_set_u32(w, akey(o, "rope.scaling.original_context_length"), 16));
    }
    if (!strcmp(o->arch, "gemma2")) {
        TRY(em_gguf_set_f32(w, akey(o, "attn_logit_softcapping"), o->attn_softcap));
        TRY(em_gguf_set_f32(w, akey(o, "final_logit_softcapping"), o->final_softcap));
    }
    if (!strcmp(o->arch, "gemma3")) TRY(em_gguf_set_f32(w, akey(o, "rope.freq_base_swa"), o->rope_base_swa));
    if (o->n_expert) {
        TRY(em_gguf_set_u32(w, akey(o, "expert_count"), (uint32_t)o->n_expert));
        TRY(em_gguf_set_u32(w, akey(o, "expert_used_count"), (uint32_t)o->n_expert_used));
        if (!strcmp(o->arch, "qwen3moe") || llama4)
            TRY(em_gguf_set_u32(w, akey(o, "expert_feed_forward_length"), (uint32_t)o->n_ff_exp));
        if (llama4) TRY(em_gguf_set_u32(w, akey(o, "interleave_moe_layer_step"), (uint32_t)o->moe_step));
    }
    if (llama4 && o->chunk) TRY(em_gguf_set_u32(w, akey(o, "attention.chunk_size"), (uint32_t)o->chunk));
    if (o->rope_linear > 0.0f) {
        TRY(em_gguf_set_str(w, akey(o, "rope.scaling.type"), "linear"));
        TRY(em_gguf_set_f32(w, akey(o, "rope.scaling.factor"), o->rope_linear));
    }
    if (o->tokenizer_from) return copy_tokenizer(w, o->tokenizer_from, o->n_vocab);
    return gen_add_spm_vocab(w, o->n_vocab, tiny_piece);
}

static em_status write_tensors(em_gguf_writer *w, const gen_opts *o) {
    int64_t E = o->n_embd, F = o->n_ff, V = o->n_vocab;
    int64_t QD = (int64_t)o->n_head * o->head_dim, KD = (int64_t)o->n_head_kv * o->head_dim;
    bool bias = !strcmp(o->arch, "qwen2");
    bool qk_norm = !strcmp(o->arch, "qwen3") || !strcmp(o->arch, "qwen3moe") || !strcmp(o->arch, "gemma3");
    bool gemma = !strncmp(o->arch, "gemma", 5);
    /* Gemma scales the embedding by sqrt(n_embd): smaller rows keep the
     * residual stream near unit size. */
    TRY(add(w, "token_embd.weight", E, V, 0.0, gemma ? 1.0 / sqrt((double)E) : 1.0));
    TRY(add(w, "output_norm.weight", E, 0, 1.0, 0.1));
    if (!o->tied && !gemma) TRY(add_matrix(w, "output.weight", E, V, 1.0));
    if (o->rope_freqs) TRY(add_rope_freqs(w, o));
    for (int il = 0; il < o->n_layer; il++) {
        char n[64];
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", il, s), n)
        TRY(add(w, NAME("attn_norm.weight"), E, 0, 1.0, 0.1));
        TRY(add_matrix(w, NAME("attn_q.weight"), E, QD, 2.5));
        TRY(add_matrix(w, NAME("attn_k.weight"), E, KD, 2.5));
        TRY(add_matrix(w, NAME("attn_v.weight"), E, KD, 1.0));
        TRY(add_matrix(w, NAME("attn_output.weight"), QD, E, 1.0));
        if (bias) {
            TRY(add(w, NAME("attn_q.bias"), QD, 0, 0.0, 0.5));
            TRY(add(w, NAME("attn_k.bias"), KD, 0, 0.0, 0.5));
            TRY(add(w, NAME("attn_v.bias"), KD, 0, 0.0, 0.5));
        }
        if (qk_norm) {
            TRY(add(w, NAME("attn_q_norm.weight"), o->head_dim, 0, 2.0, 0.2));
            TRY(add(w, NAME("attn_k_norm.weight"), o->head_dim, 0, 2.0, 0.2));
        }
        TRY(add(w, NAME("ffn_norm.weight"), E, 0, 1.0, 0.1));
        /* llama4 alternates dense and MoE layers; its MoE layers add a
         * shared expert. */
        const bool llama4 = !strcmp(o->arch, "llama4");
        const bool moe = o->n_expert && (!llama4 || (il + 1) % o->moe_step == 0);
        if (moe && llama4) {
            TRY(add_matrix(w, NAME("ffn_gate_shexp.weight"), E, o->n_ff_exp, 1.0));
            TRY(add_matrix(w, NAME("ffn_up_shexp.weight"), E, o->n_ff_exp, 1.0));
            TRY(add_matrix(w, NAME("ffn_down_shexp.weight"), o->n_ff_exp, E, 1.0));
        }
        if (moe) {
            /* A sharp router (gain 4) so that the choice of experts matters. */
            int64_t X = o->n_expert, FE = o->n_ff_exp;
            TRY(add_matrix(w, NAME("ffn_gate_inp.weight"), E, X, 4.0));
            TRY(add3(w, NAME("ffn_gate_exps.weight"), E, FE, X));
            TRY(add3(w, NAME("ffn_up_exps.weight"), E, FE, X));
            TRY(add3(w, NAME("ffn_down_exps.weight"), FE, E, X));
        } else {
            TRY(add_matrix(w, NAME("ffn_gate.weight"), E, F, 1.0));
            TRY(add_matrix(w, NAME("ffn_up.weight"), E, F, 1.0));
            TRY(add_matrix(w, NAME("ffn_down.weight"), F, E, 1.0));
        }
        if (gemma) {
            TRY(add(w, NAME("post_attention_norm.weight"), E, 0, 1.0, 0.3));
            TRY(add(w, NAME("post_ffw_norm.weight"), E, 0, 1.0, 0.3));
        }
#undef NAME
    }
    return EM_OK;
}

/* ---------------------------------------------------------------- gemma4
 *
 * Gemma 4 as llama.cpp's loader expects it: per-layer head_count_kv and
 * sliding_window_pattern arrays, windowed layers with head size --head-dim
 * and global ones with --head-dim-global, each with its own RoPE dims and
 * base, rope_freqs for the global layers (proportional RoPE: the first
 * quarter of the pairs rotate, the others are divided by 1e30), Q/K norms,
 * post-norms, layer_output_scale, per-layer embeddings, shared-KV layers
 * (which still carry K/V weights, as converted files do) and, with
 * --experts, a dense FFN beside the experts (fused gate/up).
 */

static bool g4_global(const gen_opts *o, int il) {
    return o->pattern ? o->pattern[il] == 'G' : il % 3 == 2;
}

static em_status write_gemma4(em_gguf_writer *w, const gen_opts *o) {
    const int L = o->n_layer;
    const int64_t E = o->n_embd, V = o->n_vocab, PL = o->embd_pl;
    int32_t kv[64], ff[64];
    uint8_t swa[64];
    for (int il = 0; il < L; il++) {
        kv[il] = g4_global(o, il) ? o->n_head_kv_global : o->n_head_kv;
        swa[il] = !g4_global(o, il);
        ff[il] = o->n_ff_shared && il >= L - o->shared_kv ? o->n_ff_shared : o->n_ff;
    }
    TRY(em_gguf_set_str(w, "general.architecture", "gemma4"));
    TRY(em_gguf_set_str(w, "general.name", "ember-test-gemma4"));
    TRY(em_gguf_set_u32(w, "gemma4.context_length", (uint32_t)o->n_ctx));
    TRY(em_gguf_set_u32(w, "gemma4.embedding_length", (uint32_t)E));
    TRY(em_gguf_set_u32(w, "gemma4.block_count", (uint32_t)L));
    if (o->n_ff_shared)
        TRY(em_gguf_set_arr(w, "gemma4.feed_forward_length", EM_GGUF_INT32, ff, (uint64_t)L));
    else
        TRY(em_gguf_set_u32(w, "gemma4.feed_forward_length", (uint32_t)o->n_ff));
    TRY(em_gguf_set_u32(w, "gemma4.attention.head_count", (uint32_t)o->n_head));
    TRY(em_gguf_set_arr(w, "gemma4.attention.head_count_kv", EM_GGUF_INT32, kv, (uint64_t)L));
    TRY(em_gguf_set_f32(w, "gemma4.attention.layer_norm_rms_epsilon", 1e-6f));
    TRY(em_gguf_set_f32(w, "gemma4.rope.freq_base", o->rope_base));
    TRY(em_gguf_set_f32(w, "gemma4.rope.freq_base_swa", o->rope_base_swa));
    TRY(em_gguf_set_u32(w, "gemma4.attention.sliding_window", (uint32_t)(o->swa ? o->swa : 6)));
    TRY(em_gguf_set_arr(w, "gemma4.attention.sliding_window_pattern", EM_GGUF_BOOL, swa, (uint64_t)L));
    TRY(em_gguf_set_u32(w, "gemma4.attention.key_length", (uint32_t)o->head_dim_global));
    TRY(em_gguf_set_u32(w, "gemma4.attention.value_length", (uint32_t)o->head_dim_global));
    TRY(em_gguf_set_u32(w, "gemma4.attention.key_length_swa", (uint32_t)o->head_dim));
    TRY(em_gguf_set_u32(w, "gemma4.attention.value_length_swa", (uint32_t)o->head_dim));
    TRY(em_gguf_set_u32(w, "gemma4.rope.dimension_count", (uint32_t)o->head_dim_global));
    TRY(em_gguf_set_u32(w, "gemma4.rope.dimension_count_swa", (uint32_t)o->head_dim));
    TRY(em_gguf_set_u32(w, "gemma4.attention.shared_kv_layers", (uint32_t)o->shared_kv));
    TRY(em_gguf_set_u32(w, "gemma4.embedding_length_per_layer_input", (uint32_t)PL));
    TRY(em_gguf_set_f32(w, "gemma4.final_logit_softcapping", o->final_softcap));
    if (o->n_expert) {
        TRY(em_gguf_set_u32(w, "gemma4.expert_count", (uint32_t)o->n_expert));
        TRY(em_gguf_set_u32(w, "gemma4.expert_used_count", (uint32_t)o->n_expert_used));
        TRY(em_gguf_set_u32(w, "gemma4.expert_feed_forward_length", (uint32_t)o->n_ff_exp));
    }
    TRY(o->tokenizer_from ? copy_tokenizer(w, o->tokenizer_from, o->n_vocab) : gen_add_spm_vocab(w, o->n_vocab, tiny_piece));

    TRY(add(w, "token_embd.weight", E, V, 0.0, 1.0 / sqrt((double)E)));
    TRY(add(w, "output_norm.weight", E, 0, 1.0, 0.1));
    if (o->rope_freqs) {
        const int half = o->head_dim_global / 2;
        for (int i = 0; i < half; i++) scratch[i] = i < half / 4 ? 1.0f : 1e30f;
        int64_t ne[1] = {half};
        TRY(em_gguf_add_tensor(w, "rope_freqs.weight", EM_TYPE_F32, 1, ne, scratch));
    }
    if (PL) {
        TRY(add(w, "per_layer_token_embd.weight", PL * L, V, 0.0, 1.0 / sqrt((double)PL)));
        TRY(add_matrix(w, "per_layer_model_proj.weight", E, PL * L, 1.0));
        TRY(add(w, "per_layer_proj_norm.weight", PL, 0, 1.0, 0.1));
    }
    for (int il = 0; il < L; il++) {
        const int64_t hd = g4_global(o, il) ? o->head_dim_global : o->head_dim;
        const int64_t QD = (int64_t)o->n_head * hd, KD = (int64_t)kv[il] * hd, F = ff[il];
        char n[64];
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", il, s), n)
        TRY(add(w, NAME("attn_norm.weight"), E, 0, 1.0, 0.1));
        TRY(add_matrix(w, NAME("attn_q.weight"), E, QD, 1.0));
        TRY(add_matrix(w, NAME("attn_k.weight"), E, KD, 1.0));
        if (!(o->no_v_global && g4_global(o, il))) TRY(add_matrix(w, NAME("attn_v.weight"), E, KD, 1.0));
        TRY(add_matrix(w, NAME("attn_output.weight"), QD, E, 1.0));
        /* Unscaled scores of unit-RMS heads are already sharp (std ~ sqrt(hd)). */
        TRY(add(w, NAME("attn_q_norm.weight"), hd, 0, 1.0, 0.2));
        TRY(add(w, NAME("attn_k_norm.weight"), hd, 0, 1.0, 0.2));
        TRY(add(w, NAME("post_attention_norm.weight"), E, 0, 1.0, 0.3));
        TRY(add(w, NAME("layer_output_scale.weight"), 1, 0, 0.7, 0.1));
        TRY(add(w, NAME("ffn_norm.weight"), E, 0, 1.0, 0.1));
        TRY(add_matrix(w, NAME("ffn_gate.weight"), E, F, 1.0));
        TRY(add_matrix(w, NAME("ffn_up.weight"), E, F, 1.0));
        TRY(add_matrix(w, NAME("ffn_down.weight"), F, E, 1.0));
        TRY(add(w, NAME("post_ffw_norm.weight"), E, 0, 1.0, 0.3));
        if (o->n_expert) {
            const int64_t X = o->n_expert, FE = o->n_ff_exp;
            TRY(add_matrix(w, NAME("ffn_gate_inp.weight"), E, X, 4.0 * sqrt((double)E)));
            TRY(add(w, NAME("ffn_gate_inp.scale"), E, 0, 1.0, 0.3));
            TRY(add(w, NAME("pre_ffw_norm_2.weight"), E, 0, 1.0, 0.1));
            TRY(add(w, NAME("post_ffw_norm_1.weight"), E, 0, 1.0, 0.3));
            TRY(add(w, NAME("post_ffw_norm_2.weight"), E, 0, 1.0, 0.3));
            if (o->split_exps) {
                TRY(add3(w, NAME("ffn_gate_exps.weight"), E, FE, X));
                TRY(add3(w, NAME("ffn_up_exps.weight"), E, FE, X));
            } else {
                TRY(add3(w, NAME("ffn_gate_up_exps.weight"), E, 2 * FE, X));
            }
            TRY(add3(w, NAME("ffn_down_exps.weight"), FE, E, X));
            TRY(add(w, NAME("ffn_down_exps.scale"), X, 0, 1.0, 0.5));
        }
        if (PL) {
            TRY(add_matrix(w, NAME("inp_gate.weight"), E, PL, 1.0));
            TRY(add_matrix(w, NAME("proj.weight"), PL, E, 1.0));
            TRY(add(w, NAME("post_norm.weight"), E, 0, 1.0, 0.1));
        }
#undef NAME
    }
    return EM_OK;
}

int main(int argc, char **argv) {
    gen_opts o;
    if (parse_args(argc, argv, &o) != 0) {
        usage();
        return 2;
    }
    rng_state = o.seed * 0x2545f4914f6cdd1dULL + 0x1234567ULL;

    /* The largest tensor is token_embd/output, or a projection. */
    size_t biggest = (size_t)o.n_embd * (size_t)o.n_vocab;
    size_t qd = (size_t)o.n_head * (size_t)o.head_dim;
    if ((size_t)o.n_embd * (size_t)o.n_ff > biggest) biggest = (size_t)o.n_embd * (size_t)o.n_ff;
    if ((size_t)o.n_embd * qd > biggest) biggest = (size_t)o.n_embd * qd;
    if ((size_t)o.n_embd * (size_t)o.n_ff_exp * (size_t)o.n_expert > biggest)
        biggest = (size_t)o.n_embd * (size_t)o.n_ff_exp * (size_t)o.n_expert;
    if (!strcmp(o.arch, "gemma4")) { /* wider heads, fused experts, per-layer tables */
        const size_t g = (size_t)o.n_head * (size_t)o.head_dim_global * (size_t)o.n_embd;
        const size_t x = 2 * (size_t)o.n_embd * (size_t)o.n_ff_exp * (size_t)o.n_expert;
        const size_t pl = (size_t)o.embd_pl * (size_t)o.n_layer * EM_MAX((size_t)o.n_vocab, (size_t)o.n_embd);
        biggest = EM_MAX(biggest, (size_t)o.n_embd * (size_t)o.n_ff_shared);
        biggest = EM_MAX(biggest, EM_MAX(g, EM_MAX(x, pl)));
    }
    scratch = malloc(biggest * sizeof *scratch);
    em_gguf_writer *w = NULL;
    em_status st = scratch ? em_gguf_writer_init(&w) : em_error(EM_ERR_NOMEM, "out of memory");
    if (st == EM_OK && !strcmp(o.arch, "gemma4")) {
        st = write_gemma4(w, &o);
    } else {
        if (st == EM_OK) st = write_metadata(w, &o);
        if (st == EM_OK) st = write_tensors(w, &o);
    }
    if (st == EM_OK) st = em_gguf_write(w, o.out);
    em_gguf_writer_free(w);
    free(scratch);
    if (st != EM_OK) {
        fprintf(stderr, "gen_model: %s: %s\n", em_status_str(st), em_last_error());
        return 1;
    }
    return 0;
}
