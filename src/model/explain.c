/*
 * explain.c - a loaded model's architecture in words, for `ember inspect`:
 * the pattern of its layers (windowed, global, without RoPE), its
 * attention and FFN, and with experts the active against the total
 * parameters.
 */
#include "model/family.h"

#include <math.h>
#include <stdio.h>

static void human(double n, char *buf, size_t size) {
    const char *unit = "";
    if (n >= 1e9) n /= 1e9, unit = "B";
    else if (n >= 1e6) n /= 1e6, unit = "M";
    else if (n >= 1e3) n /= 1e3, unit = "K";
    snprintf(buf, size, "%.2f%s", n, unit);
}

static double elems(const em_tensor *t) {
    return t->data ? (double)t->ne[0] * (double)t->ne[1] * (double)t->ne[2] * (double)t->ne[3] : 0;
}

/* What differs between layers beyond the window: each layer's KV heads
 * and head size where they vary, layers that read another layer's KV
 * cache, keys used as values, per-layer embeddings, output scales. */
static void explain_layers(const em_model *m, FILE *out) {
    const em_hparams *hp = &m->hp;
    const em_layer *l0 = &m->layers[0];
    bool varies = false, shared = false, k_as_v = false, v_norm = false, scaled = false;
    for (int il = 0; il < hp->n_layer; il++) {
        const em_layer *l = &m->layers[il];
        varies |= l->n_head_kv != l0->n_head_kv || l->head_dim != l0->head_dim || l->head_dim_v != l0->head_dim_v;
        shared |= l->kv_src != il;
        k_as_v |= l->kv_src == il && l->wk.data && !l->wv.data;
        v_norm |= l->v_norm;
        scaled |= l->out_scale.data != NULL;
    }
    if (varies) {
        /* KV heads x head size per layer, prefixed by the layer's kind. */
        fprintf(out, "  %-12s", "heads/layer");
        for (int il = 0; il < hp->n_layer && il < 64; il++) {
            const em_layer *l = &m->layers[il];
            fprintf(out, " %c%d:%dx%d", l->n_swa > 0 ? 'L' : 'G', il, l->n_head_kv, l->head_dim);
        }
        fprintf(out, "%s  (layer: KV heads x head size)\n", hp->n_layer > 64 ? " ..." : "");
    }
    if (shared) {
        int n = 0;
        fprintf(out, "  %-12s", "kv sharing");
        for (int il = 0; il < hp->n_layer; il++)
            if (m->layers[il].kv_src != il) {
                if (n++ < 16) fprintf(out, " %d->%d", il, m->layers[il].kv_src);
            }
        fprintf(out, "%s  (%d layers read an earlier layer's keys and values: no K/V products, no cache rows)\n",
                n > 16 ? " ..." : "", n);
    }
    if (v_norm || k_as_v) {
        fprintf(out, "  %-12s %s", "values", v_norm ? "RMS-normalised (no weight)" : "");
        if (k_as_v) {
            fprintf(out, "%skeys as values on layers", v_norm ? "; " : "");
            for (int il = 0; il < hp->n_layer; il++)
                if (m->layers[il].kv_src == il && m->layers[il].wk.data && !m->layers[il].wv.data) fprintf(out, " %d", il);
        }
        fprintf(out, "\n");
    }
    if (m->pl_tok_embd.data)
        fprintf(out, "  %-12s %d per layer and token (table plus projection of the embedding), gated into each layer's "
                "output\n", "per-layer", hp->n_embd_pl);
    if (scaled) fprintf(out, "  %-12s each layer's output scaled by its layer_output_scale\n", "out scale");
}

void em_model_explain(const em_model *m, FILE *out) {
    const em_hparams *hp = &m->hp;
    fprintf(out, "  %-12s %s\n", "family", m->family->name);

    /* One letter per layer: L windowed (local), C chunked, G global, N
     * global without RoPE; lower case where the FFN has experts. */
    fprintf(out, "  %-12s ", "layers");
    int n_local = 0, n_chunked = 0, n_nope = 0, n_moe = 0, chunk = 0;
    bool all_moe = true; /* then no layer needs marking */
    for (int il = 0; il < hp->n_layer; il++) all_moe &= m->layers[il].gate_inp.data != NULL;
    for (int il = 0; il < hp->n_layer; il++) {
        const em_layer *l = &m->layers[il];
        const bool local = l->n_swa > 0;
        n_local += local;
        n_chunked += l->n_chunk > 0;
        n_nope += !local && !l->n_chunk && l->rope_set < 0;
        n_moe += l->gate_inp.data != NULL;
        if (l->n_chunk > 0) chunk = l->n_chunk;
        char ch = local ? 'L' : l->n_chunk > 0 ? 'C' : l->rope_set < 0 ? 'N' : 'G';
        if (l->gate_inp.data && !all_moe) ch = (char)(ch - 'A' + 'a');
        if (il < 64) fputc(ch, out);
    }
    if (all_moe) n_moe = 0;
    if (hp->n_layer > 64) fprintf(out, "...");
    if (n_local == 0 && n_chunked == 0)
        fprintf(out, "  (%d layers, all global", hp->n_layer);
    else if (n_chunked == 0)
        fprintf(out, "  (%d layers: %d local with a window of %d, %d global", hp->n_layer, n_local, hp->n_swa,
                hp->n_layer - n_local);
    else
        fprintf(out, "  (%d layers: %d chunked attention (chunks of %d positions), %d global", hp->n_layer,
                n_chunked, chunk, hp->n_layer - n_chunked - n_local);
    /* (Encoders with learned positions have no RoPE anywhere: not NoPE.) */
    if (n_nope == hp->n_layer) n_nope = 0;
    if (n_nope > 0) fprintf(out, ", %d of them without RoPE (NoPE)", n_nope);
    if (n_moe > 0) fprintf(out, "; lower case: %d layers with experts", n_moe);
    fprintf(out, ")\n");
    if (n_nope > 0 && hp->attn_temp_floor > 0)
        fprintf(out, "  %-12s NoPE layers scale Q by 1 + %g * log(floor((pos + %g) / %g) + 1)\n", "temperature",
                hp->attn_temp_scale, hp->attn_temp_offset, hp->attn_temp_floor);

    if (m->pos_embd.data) fprintf(out, "  %-12s learned, %lld of them\n", "positions", (long long)m->pos_embd.ne[1]);
    bool uniform = true;
    for (int il = 1; il < hp->n_layer; il++)
        uniform &= m->layers[il].n_head_kv == hp->n_head_kv && m->layers[il].head_dim == hp->head_dim &&
                   m->layers[il].head_dim_v == hp->head_dim_v;
    const char *qk = m->layers[0].q_norm.data ? ", Q/K norm" : m->layers[0].qk_l2norm ? ", Q/K L2 norm after RoPE" : "";
    if (uniform && m->layers[0].n_head_kv == hp->n_head_kv && m->layers[0].head_dim == hp->head_dim)
        fprintf(out, "  %-12s %d query heads, %d KV heads, head size %d/%d, scale %.4g%s", "attention", hp->n_head,
                hp->n_head_kv, hp->head_dim, hp->head_dim_v, m->layers[0].attn_scale, qk);
    else
        fprintf(out, "  %-12s %d query heads, KV heads and head size per layer (up to %d and %d), scale %.4g%s",
                "attention", hp->n_head, hp->n_head_kv, hp->head_dim, m->layers[0].attn_scale, qk);
    if (m->layers[0].bq.data) fprintf(out, ", QKV bias");
    if (hp->attn_softcap > 0) fprintf(out, ", scores soft-capped at %g", hp->attn_softcap);
    fprintf(out, "\n");
    explain_layers(m, out);
    for (int t = 0; t < hp->n_rope_sets && m->layers[0].rope_set >= 0; t++) {
        const em_rope_set *rs = &hp->rope[t];
        /* The head size of the first layer that uses the table. */
        int hd = hp->head_dim;
        for (int il = hp->n_layer - 1; il >= 0; il--)
            if (m->layers[il].rope_set == t) hd = m->layers[il].head_dim;
        fprintf(out, "  %-12s %s, %d of %d dims, base %g", t == 0 ? "rope" : "rope (local)",
                hp->rope_type == EM_ROPE_NEOX ? "NeoX halves" : "adjacent pairs", rs->n_rot ? rs->n_rot : hp->n_rot,
                hd, rs->base);
        if (rs->ext_factor != 0)
            fprintf(out, ", YaRN x%g (pairs %g..%g blended, magnitude %.4g)", 1.0 / rs->freq_scale, rs->corr_lo,
                    rs->corr_hi, rs->mscale);
        else if (rs->freq_scale != 1.0f)
            fprintf(out, ", linear scaling x%g", 1.0 / rs->freq_scale);
        if (m->rope_freqs.data && !rs->no_factors) fprintf(out, ", per-pair frequency factors");
        fprintf(out, "\n");
    }

    const char *act = !m->layers[0].w_gate.data && !m->layers[0].gate_exps.data ? "GELU (no gate)"
                      : hp->act == EM_ACT_GELU_TANH                          ? "GeGLU (GELU-tanh)"
                                                                             : "SwiGLU";
    /* Experts beside a dense FFN in the same layer (Gemma 4), experts in
     * place of it (in every layer, or interleaved: Llama 4), or none. */
    const em_layer *beside = NULL;
    for (int il = 0; il < hp->n_layer && !beside; il++)
        if (m->layers[il].gate_inp.data && m->layers[il].w_gate.data) beside = &m->layers[il];
    const char *gating = hp->moe_gating == EM_MOE_SIGMOID ? "sigmoid" : "softmax";
    if (hp->n_expert > 0 && beside)
        fprintf(out, "  %-12s %s width %d, beside %d experts (%d used per token, %s top-%d, width %d%s%s);"
                " outputs normalised and summed\n", "ffn", act, hp->n_ff, hp->n_expert, hp->n_expert_used,
                gating, hp->n_expert_used, hp->n_ff_exp, beside->gate_inp_s.data ? ", router on its own scaled norm" : "",
                beside->down_exps_s.data ? ", per-expert output scale" : "");
    else if (hp->n_expert > 0) {
        fprintf(out, "  %-12s %s experts: %d, %d used per token (%s top-%d%s), width %d", "ffn", act, hp->n_expert,
                hp->n_expert_used, gating, hp->n_expert_used,
                hp->moe_weight_input ? ", weight on the expert's input" : "", hp->n_ff_exp);
        if (hp->n_expert_shared > 0) fprintf(out, ", plus %d shared expert", hp->n_expert_shared);
        if (n_moe > 0) fprintf(out, "; dense layers width %d", hp->n_ff);
        fprintf(out, "\n");
    } else {
        int64_t narrowest = hp->n_ff; /* Gemma 4's widths may differ per layer */
        for (int il = 0; il < hp->n_layer; il++)
            if (m->layers[il].w_up.data) narrowest = EM_MIN(narrowest, m->layers[il].w_up.ne[1]);
        if (narrowest < hp->n_ff)
            fprintf(out, "  %-12s %s, width %lld to %d by layer\n", "ffn", act, (long long)narrowest, hp->n_ff);
        else
            fprintf(out, "  %-12s %s, width %d\n", "ffn", act, hp->n_ff);
    }
    fprintf(out, "  %-12s %s, %s%s%s\n", "norms", hp->norm == EM_NORM_LAYER ? "LayerNorm" : "RMSNorm",
            hp->norm_after ? "post-norm (x = norm(x + f(x)))"
                           : m->layers[0].post_attn_norm.data ? "pre-norm and post-norm" : "pre-norm",
            hp->embd_scale != 1.0f ? "; embedding x sqrt(n_embd)" : "",
            m->embd_norm.data ? "; embedding normalised" : "");
    if (!hp->causal)
        fprintf(out, "  %-12s encoder (attention not causal), %s pooling, L2-normalised (ember embed)\n", "output",
                hp->pooling == EM_POOL_CLS ? "CLS" : "mean");
    if (hp->final_softcap > 0) fprintf(out, "  %-12s soft-capped at %g\n", "logits", hp->final_softcap);

    /* Active parameters: all but the experts a token is not routed to. */
    double idle = 0;
    for (int il = 0; il < hp->n_layer; il++) {
        const em_layer *l = &m->layers[il];
        const double ex = elems(&l->gate_exps) + elems(&l->up_exps) + elems(&l->down_exps);
        if (hp->n_expert > 0) idle += ex * (1.0 - (double)hp->n_expert_used / hp->n_expert);
    }
    char tot[32], act_p[32], pl[32];
    human((double)m->n_params, tot, sizeof tot);
    human((double)m->n_params - idle, act_p, sizeof act_p);
    fprintf(out, "  %-12s %s total, %s active per token", "parameters", tot, act_p);
    if (m->pl_tok_embd.data) {
        human(elems(&m->pl_tok_embd), pl, sizeof pl);
        fprintf(out, " (%s of them the per-layer embedding table, of which a token reads one row)", pl);
    }
    fprintf(out, "\n");
}
