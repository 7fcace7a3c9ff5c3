/*
 * mix.c - the quantization mixes and their per-tensor rules.
 *
 * The rules are those of llama.cpp's quantizer (llama_tensor_get_type), so
 * that a file made here has the same tensor types as the file of the same
 * name made there; tests/unit/test_mix.c checks that against files made
 * by llama.cpp.  Only the mixes ember can write are covered (no IQ1/IQ2/
 * IQ3, no ternary types), and the Falcon- and 70B-specific exceptions are
 * left out because ember runs neither architecture nor needs to guess a
 * model's marketing size.
 *
 * llama.cpp counts attn_v and ffn_down tensors as it meets them, in an
 * order sorted by layer; for one such tensor per layer (every architecture
 * ember runs) that count is the layer number, which is what is used here,
 * read from the "blk.N." prefix of the name.
 */
#include "quant/mix.h"
#include "quant/quant.h"

#include <stdio.h>
#include <stdlib.h>

/* ------------------------------------------------------------- the table */

static const em_mix em_mixes[] = {
    {"F32", EM_FTYPE_ALL_F32, EM_TYPE_F32, false, "32-bit floats, no loss"},
    {"F16", EM_FTYPE_MOSTLY_F16, EM_TYPE_F16, false, "16-bit IEEE halves"},
    {"BF16", EM_FTYPE_MOSTLY_BF16, EM_TYPE_BF16, false, "bfloat16"},
    {"Q8_0", EM_FTYPE_MOSTLY_Q8_0, EM_TYPE_Q8_0, false, "8.50 bpw, near lossless"},
    {"Q6_K", EM_FTYPE_MOSTLY_Q6_K, EM_TYPE_Q6_K, false, "6.56 bpw"},
    {"Q5_K_M", EM_FTYPE_MOSTLY_Q5_K_M, EM_TYPE_Q5_K, false, "Q5_K, Q6_K for half of attn_v and ffn_down"},
    {"Q5_K_S", EM_FTYPE_MOSTLY_Q5_K_S, EM_TYPE_Q5_K, false, "Q5_K, output Q6_K"},
    {"Q5_1", EM_FTYPE_MOSTLY_Q5_1, EM_TYPE_Q5_1, false, "6.0 bpw, legacy"},
    {"Q5_0", EM_FTYPE_MOSTLY_Q5_0, EM_TYPE_Q5_0, false, "5.5 bpw, legacy"},
    {"Q4_K_M", EM_FTYPE_MOSTLY_Q4_K_M, EM_TYPE_Q4_K, false, "Q4_K, Q6_K for half of attn_v and ffn_down"},
    {"Q4_K_S", EM_FTYPE_MOSTLY_Q4_K_S, EM_TYPE_Q4_K, false, "Q4_K, Q5_K for the first attn_v and ffn_down"},
    {"Q4_1", EM_FTYPE_MOSTLY_Q4_1, EM_TYPE_Q4_1, false, "5.0 bpw, legacy"},
    {"Q4_0", EM_FTYPE_MOSTLY_Q4_0, EM_TYPE_Q4_0, false, "4.5 bpw, legacy"},
    {"IQ4_NL", EM_FTYPE_MOSTLY_IQ4_NL, EM_TYPE_IQ4_NL, false, "4.5 bpw, non-linear levels"},
    {"IQ4_XS", EM_FTYPE_MOSTLY_IQ4_XS, EM_TYPE_IQ4_XS, false, "4.25 bpw, non-linear levels"},
    {"Q3_K_L", EM_FTYPE_MOSTLY_Q3_K_L, EM_TYPE_Q3_K, false, "Q3_K, Q5_K for attn_v, attn_output, ffn_down"},
    {"Q3_K_M", EM_FTYPE_MOSTLY_Q3_K_M, EM_TYPE_Q3_K, false, "Q3_K, Q4_K/Q5_K for attn_v, attn_output, ffn_down"},
    {"Q3_K_S", EM_FTYPE_MOSTLY_Q3_K_S, EM_TYPE_Q3_K, false, "Q3_K, output Q6_K"},
    {"Q2_K", EM_FTYPE_MOSTLY_Q2_K, EM_TYPE_Q2_K, false, "Q2_K, Q3_K/Q4_K for attn_v, attn_output, ffn_down"},
    /* The bare K types are every matrix in that type (llama.cpp's
     * quantizer reads these names as the _M mixes; with --pure it gives
     * the same files as these, under the same file types). */
    {"Q5_K", EM_FTYPE_MOSTLY_Q5_K_M, EM_TYPE_Q5_K, true, "every matrix Q5_K"},
    {"Q4_K", EM_FTYPE_MOSTLY_Q4_K_M, EM_TYPE_Q4_K, true, "every matrix Q4_K"},
    {"Q3_K", EM_FTYPE_MOSTLY_Q3_K_M, EM_TYPE_Q3_K, true, "every matrix Q3_K"},
};

int em_mix_count(void) { return (int)(sizeof em_mixes / sizeof em_mixes[0]); }

const em_mix *em_mix_at(int i) {
    if (i < 0 || i >= em_mix_count()) return NULL;
    return &em_mixes[i];
}

static bool eq_nocase(const char *a, const char *b) {
    for (; *a && *b; a++, b++) {
        char x = *a >= 'a' && *a <= 'z' ? (char)(*a - 32) : *a;
        char y = *b >= 'a' && *b <= 'z' ? (char)(*b - 32) : *b;
        if (x != y) return false;
    }
    return *a == *b;
}

const em_mix *em_mix_find(const char *name) {
    if (!name) return NULL;
    for (int i = 0; i < em_mix_count(); i++)
        if (eq_nocase(name, em_mixes[i].name)) return &em_mixes[i];
    return NULL;
}

/* ------------------------------------------------------ model facts */

/* Reads "<arch>.<suffix>" as an integer; a per-layer array gives its first
 * element (the layer the rules look at).  false when absent or unusable. */
static bool arch_int(const em_gguf *g, const char *arch, const char *suffix, int64_t *out) {
    char key[192];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (em_gguf_get_i64(g, key, out) == EM_OK) return true;
    em_gguf_type et;
    uint64_t n;
    const void *data;
    if (em_gguf_get_arr(g, key, &et, &n, &data) != EM_OK || n == 0) return false;
    if (et == EM_GGUF_INT32 || et == EM_GGUF_UINT32) {
        int32_t v;
        memcpy(&v, data, 4);
        *out = et == EM_GGUF_UINT32 ? (int64_t)(uint32_t)v : v;
        return true;
    }
    return false;
}

/* The N of a "blk.N." name, or -1. */
static int layer_of(const char *name) {
    if (strncmp(name, "blk.", 4)) return -1;
    const char *p = name + 4;
    if (*p < '0' || *p > '9') return -1;
    long v = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (*p - '0');
        if (v > 1000000) return -1;
    }
    return *p == '.' ? (int)v : -1;
}

em_status em_mix_model_from_gguf(const em_gguf *g, em_mix_model *out) {
    if (!g || !out) return em_error(EM_ERR_INVALID_ARG, "mix: no file");
    memset(out, 0, sizeof *out);
    char arch[64] = "";
    em_gguf_str s;
    if (em_gguf_get_str(g, "general.architecture", &s) == EM_OK) {
        size_t n = (size_t)EM_MIN(s.len, (uint64_t)sizeof arch - 1);
        memcpy(arch, s.ptr, n);
        arch[n] = '\0';
    }
    int64_t n_layer = 0, n_head = 0, n_head_kv = 0, n_expert = 0;
    int max_blk = -1;
    for (int64_t i = 0; i < em_gguf_n_tensors(g); i++) {
        const em_gguf_tensor *t = em_gguf_tensor_at(g, i);
        char name[96];
        size_t n = (size_t)EM_MIN(t->name.len, (uint64_t)sizeof name - 1);
        memcpy(name, t->name.ptr, n);
        name[n] = '\0';
        max_blk = EM_MAX(max_blk, layer_of(name));
        if (em_gguf_str_eq(t->name, "output.weight")) out->has_output = true;
    }
    if (!arch[0] || !arch_int(g, arch, "block_count", &n_layer)) n_layer = max_blk + 1;
    if (arch[0] && arch_int(g, arch, "attention.head_count", &n_head) &&
        !arch_int(g, arch, "attention.head_count_kv", &n_head_kv))
        n_head_kv = n_head;
    if (arch[0]) arch_int(g, arch, "expert_count", &n_expert);
    if (n_layer < 0 || n_layer > 100000)
        return em_error(EM_ERR_FORMAT, "mix: block_count %lld is implausible", (long long)n_layer);
    out->n_layer = (int32_t)n_layer;
    out->n_gqa = n_head > 0 && n_head_kv > 0 && n_head_kv <= n_head ? (int32_t)(n_head / n_head_kv) : 1;
    out->n_expert = n_expert > 0 && n_expert < 100000 ? (int32_t)n_expert : 0;
    return EM_OK;
}

/* ------------------------------------------------------------- the rules */

static bool has(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

bool em_mix_quantizable(const char *name, uint32_t n_dims) {
    if (!name || n_dims < 2 || !ends_with(name, "weight")) return false;
    /* Small or precision-critical matrices that llama.cpp keeps as they
     * are: norms stored as matrices, MoE routers, positional and token-type
     * embeddings, convolution kernels and RWKV's mixing vectors. */
    static const char *const keep_sub[] = {
        "_norm.weight", "ffn_gate_inp.weight", "altup", "laurel", "per_layer_model_proj",
        "ssm_conv1d.weight", "shortconv.conv.weight", "attn_rel_b.weight", "time_mix_first.weight",
        "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight", "time_mix_v0.weight",
        "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight", "time_mix_a1.weight",
        "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
        "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
    };
    for (size_t i = 0; i < sizeof keep_sub / sizeof *keep_sub; i++)
        if (has(name, keep_sub[i])) return false;
    return strcmp(name, "position_embd.weight") && strcmp(name, "token_types.weight");
}

/* llama.cpp's "use more bits" layers: the first and last eighth of the
 * network, and every third layer in between. */
static bool more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

static bool fits(em_type t, int64_t ne0) {
    const em_type_traits *tr = em_get_type_traits(t);
    return tr && tr->block_size > 0 && ne0 % tr->block_size == 0;
}

/* The rules proper, for a quantizable matrix under a quantized mix. */
static em_type rule_type(em_ftype f, em_type t, const em_mix_model *mm, const char *name, int64_t ne0) {
    const int il = EM_MAX(layer_of(name), 0), nl = EM_MAX(mm->n_layer, 1);
    const bool moe8 = mm->n_expert == 8;
    if (!strcmp(name, "output.weight") || (!mm->has_output && !strcmp(name, "token_embd.weight"))) {
        /* Every logit depends on the output matrix. */
        if (!fits(t, ne0)) return EM_TYPE_Q8_0;
        return t == EM_TYPE_Q8_0 ? t : EM_TYPE_Q6_K;
    }
    if (!strcmp(name, "token_embd.weight")) return t; /* only the IQ1/IQ2 mixes change it */
    if (has(name, "attn_v.weight")) {
        if (f == EM_FTYPE_MOSTLY_Q2_K) t = mm->n_gqa >= 4 ? EM_TYPE_Q4_K : EM_TYPE_Q3_K;
        else if (f == EM_FTYPE_MOSTLY_Q3_K_M) t = il < 2 ? EM_TYPE_Q5_K : EM_TYPE_Q4_K;
        else if (f == EM_FTYPE_MOSTLY_Q3_K_L) t = EM_TYPE_Q5_K;
        else if ((f == EM_FTYPE_MOSTLY_IQ4_NL || f == EM_FTYPE_MOSTLY_IQ4_XS) && mm->n_gqa >= 4) t = EM_TYPE_Q5_K;
        else if ((f == EM_FTYPE_MOSTLY_Q4_K_M || f == EM_FTYPE_MOSTLY_Q5_K_M) && more_bits(il, nl)) t = EM_TYPE_Q6_K;
        else if (f == EM_FTYPE_MOSTLY_Q4_K_S && il < 4) t = EM_TYPE_Q5_K;
        /* With 8 experts attention is a small share of the model. */
        if (moe8) t = EM_TYPE_Q8_0;
        return t;
    }
    if (has(name, "attn_k.weight")) return moe8 ? EM_TYPE_Q8_0 : t;
    if (has(name, "ffn_down")) {
        if (f == EM_FTYPE_MOSTLY_Q2_K) t = EM_TYPE_Q3_K;
        else if (f == EM_FTYPE_MOSTLY_Q3_K_M) t = il < nl / 16 ? EM_TYPE_Q5_K : EM_TYPE_Q4_K;
        else if (f == EM_FTYPE_MOSTLY_Q3_K_L) t = EM_TYPE_Q5_K;
        else if (f == EM_FTYPE_MOSTLY_Q4_K_M) t = more_bits(il, nl) ? EM_TYPE_Q6_K : t;
        else if ((f == EM_FTYPE_MOSTLY_IQ4_NL || f == EM_FTYPE_MOSTLY_IQ4_XS) && il < nl / 8) t = EM_TYPE_Q5_K;
        else if (f == EM_FTYPE_MOSTLY_Q5_K_M && more_bits(il, nl)) t = EM_TYPE_Q6_K;
        else if (f == EM_FTYPE_MOSTLY_Q4_K_S && il < nl / 8) t = EM_TYPE_Q5_K;
        return t;
    }
    if (has(name, "attn_output.weight")) {
        if (moe8) {
            if (f == EM_FTYPE_MOSTLY_Q2_K || f == EM_FTYPE_MOSTLY_Q3_K_S || f == EM_FTYPE_MOSTLY_Q3_K_M ||
                f == EM_FTYPE_MOSTLY_IQ4_NL || f == EM_FTYPE_MOSTLY_Q4_K_S || f == EM_FTYPE_MOSTLY_Q4_K_M ||
                f == EM_FTYPE_MOSTLY_IQ4_XS)
                t = EM_TYPE_Q5_K;
        } else if (f == EM_FTYPE_MOSTLY_Q2_K) {
            t = EM_TYPE_Q3_K;
        } else if (f == EM_FTYPE_MOSTLY_Q3_K_M) {
            t = EM_TYPE_Q4_K;
        } else if (f == EM_FTYPE_MOSTLY_Q3_K_L) {
            t = EM_TYPE_Q5_K;
        }
        return t;
    }
    if (has(name, "attn_qkv.weight")) {
        if (f == EM_FTYPE_MOSTLY_Q3_K_M || f == EM_FTYPE_MOSTLY_Q3_K_L) t = EM_TYPE_Q4_K;
        else if (f == EM_FTYPE_MOSTLY_Q4_K_M) t = EM_TYPE_Q5_K;
        else if (f == EM_FTYPE_MOSTLY_Q5_K_M) t = EM_TYPE_Q6_K;
        return t;
    }
    return t;
}

/* A type whose block tiles rows of ne0 elements, starting from t: the
 * 256-element types step down to a 32-element type of similar size, and
 * anything that still does not fit becomes F16 (llama.cpp refuses such a
 * tensor for the 32-element types; a half-precision copy is more useful). */
static em_type fallback_type(em_type t, int64_t ne0) {
    switch (t) {
    case EM_TYPE_Q2_K:
    case EM_TYPE_Q3_K:
    case EM_TYPE_IQ4_XS: t = EM_TYPE_IQ4_NL; break;
    case EM_TYPE_Q4_K: t = EM_TYPE_Q5_0; break;
    case EM_TYPE_Q5_K: t = EM_TYPE_Q5_1; break;
    case EM_TYPE_Q6_K: t = EM_TYPE_Q8_0; break;
    default: t = EM_TYPE_F16; break;
    }
    return fits(t, ne0) ? t : EM_TYPE_F16;
}

em_type em_mix_tensor_type(const em_mix *mix, const em_mix_model *mm, const char *name,
                           uint32_t n_dims, int64_t ne0, em_type cur_type, bool *fallback) {
    if (fallback) *fallback = false;
    if (!mix || !mm || !name || !em_mix_quantizable(name, n_dims)) return cur_type;
    em_type t = mix->base;
    const em_type_traits *tr = em_get_type_traits(t);
    /* The rules only apply to quantized mixes; F32/F16/BF16 convert every
     * matrix alike. */
    if (!mix->pure && tr && tr->is_quantized) t = rule_type(mix->ftype, t, mm, name, ne0);
    if (!fits(t, ne0)) {
        t = fallback_type(t, ne0);
        if (fallback) *fallback = true;
    }
    return t;
}
