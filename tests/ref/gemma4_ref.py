#!/usr/bin/env python3
"""NumPy reference forward pass of the gemma4 architecture (dense and MoE).

Written from the description of llama.cpp's gemma4 graph, independently of
ember's C code, reading the GGUF with reference.py's reader:
  x0 = token_embd[t] * sqrt(n_embd)
  per-layer inputs (embedding_length_per_layer_input > 0):
    ple = (rmsnorm_slices(per_layer_model_proj x0 / sqrt(n_embd)) * per_layer_proj_norm
           + per_layer_token_embd[t] * sqrt(n_pl)) / sqrt(2), one n_pl slice per layer
  per layer (windowed or global by attention.sliding_window_pattern; each kind
  with its own head size, rotated dims, RoPE base; head_count_kv per layer):
    h = rmsnorm(x) * attn_norm
    q = per-head rmsnorm(h Wq) * q_norm, NeoX RoPE (global layers: frequencies
        divided by rope_freqs)
    own KV layers: k = h Wk; v = h Wv, or k itself without attn_v;
        k = rmsnorm(k) * k_norm then RoPE; v = rmsnorm(v) (no weight)
    the last shared_kv_layers layers reuse the K/V of layer
        n_kv_from_start - (windowed ? 2 : 1)
    scores q.k unscaled, causal, window for windowed layers; softmax; Wo
    x = x + rmsnorm(att) * post_attention_norm
    dense FFN y = (gelu_tanh(h Wgate) * h Wup) Wdown with h = rmsnorm(x) * ffn_norm
    with experts: y = rmsnorm(y) * post_ffw_norm_1
        + rmsnorm(sum_j w_j s_e FFN_e(rmsnorm(x) * pre_ffw_norm_2)) * post_ffw_norm_2,
        router logits over rmsnorm(x) / sqrt(n_embd) * ffn_gate_inp.scale,
        softmax top-k renormalised, expert gate/up fused (gate rows first),
        s_e = ffn_down_exps.scale[e]
    x = x + rmsnorm(y) * post_ffw_norm
    per-layer embedding: x = x + rmsnorm((gelu(x inp_gate) * ple_l) proj) * post_norm
    x = x * layer_output_scale
  logits = cap * tanh((rmsnorm(x) * output_norm) W_out / cap)

Usage: gemma4_ref.py compare MODEL --tokens 1,2,3 --engine A.f32 [B.f32 ...]
       gemma4_ref.py selftest MODEL --tokens ...   (each feature matters)
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference import GGUF, GGUFError, ablation_verdict, max_rel_error, parse_tokens  # noqa: E402


def gelu(g):
    return 0.5 * g * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (g + 0.044715 * g ** 3)))


class Gemma4:
    FEATURES = ("kv_share", "ple", "v_norm", "rope_freqs", "out_scale", "swa", "head_dims",
                "experts", "router_scale", "expert_scale", "v_from_k", "final_softcap")

    def __init__(self, path):
        g = GGUF(path)
        if g.kv.get("general.architecture") != "gemma4":
            raise GGUFError("%s is not a gemma4 model" % path)

        def key(s, default=None):
            v = g.kv.get("gemma4." + s, default)
            if v is None:
                raise GGUFError("missing key gemma4." + s)
            return v

        def per_layer(v):
            return list(v) if isinstance(v, list) else [v] * self.n_layer

        self.n_embd = int(key("embedding_length"))
        self.n_layer = int(key("block_count"))
        self.n_head = int(key("attention.head_count"))
        self.n_head_kv = [int(v) for v in per_layer(key("attention.head_count_kv", self.n_head))]
        self.eps = float(key("attention.layer_norm_rms_epsilon", 1e-6))
        self.swa = [bool(v) for v in per_layer(key("attention.sliding_window_pattern"))]
        self.n_swa = int(key("attention.sliding_window"))
        hd, hd_swa = int(key("attention.key_length")), int(key("attention.key_length_swa"))
        rot, rot_swa = int(key("rope.dimension_count", hd)), int(key("rope.dimension_count_swa", hd_swa))
        base, base_swa = float(key("rope.freq_base", 10000.0)), float(key("rope.freq_base_swa", 10000.0))
        self.head_dim = [hd_swa if s else hd for s in self.swa]
        self.n_rot = [rot_swa if s else rot for s in self.swa]
        self.base = [base_swa if s else base for s in self.swa]
        n_shared = int(key("attention.shared_kv_layers", 0))
        self.kv_from = self.n_layer - n_shared
        self.n_pl = int(key("embedding_length_per_layer_input", 0))
        self.n_expert_used = int(key("expert_used_count", 0))
        self.final_softcap = float(key("final_logit_softcapping", 30.0))
        self.tok_embd = g.tensor("token_embd.weight")           # [n_vocab, n_embd]
        self.n_vocab = self.tok_embd.shape[0]
        out = g.tensor("output.weight")
        self.output = self.tok_embd if out is None else out
        self.output_norm = g.tensor("output_norm.weight")
        self.rope_freqs = g.tensor("rope_freqs.weight")         # [rot/2] or None
        self.pl_tok = g.tensor("per_layer_token_embd.weight")  # [n_vocab, n_pl*n_layer]
        self.pl_model_proj = g.tensor("per_layer_model_proj.weight")  # [n_pl*n_layer, n_embd]
        self.pl_proj_norm = g.tensor("per_layer_proj_norm.weight")    # [n_pl]
        self.layers = []
        for il in range(self.n_layer):
            def t(name):
                return g.tensor("blk.%d.%s" % (il, name))
            L = {n: t(n + ".weight") for n in (
                "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "attn_q_norm", "attn_k_norm",
                "post_attention_norm", "layer_output_scale", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down",
                "post_ffw_norm", "ffn_gate_inp", "pre_ffw_norm_2", "post_ffw_norm_1", "post_ffw_norm_2",
                "ffn_gate_up_exps", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps", "inp_gate", "proj",
                "post_norm")}
            if L["ffn_gate_up_exps"] is None and L["ffn_gate_exps"] is not None:
                # [E, fe, d] each: stacked as the fused layout, gate rows first
                L["ffn_gate_up_exps"] = np.concatenate([L["ffn_gate_exps"], L["ffn_up_exps"]], axis=1)
            L["gate_inp_s"] = t("ffn_gate_inp.scale")
            L["down_exps_s"] = t("ffn_down_exps.scale")
            self.layers.append(L)
        self.ignore = set()

    def rmsnorm(self, x, w=None):
        y = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps)
        return y if w is None else y * w

    def rope(self, x, pos, il):
        n_rot = self.n_rot[il]
        half = n_rot // 2
        freq = self.base[il] ** (-2.0 * np.arange(half) / n_rot)
        if not self.swa[il] and self.rope_freqs is not None and "rope_freqs" not in self.ignore:
            freq = freq / self.rope_freqs[:half]
        th = pos[:, None] * freq[None, :]
        cos, sin = np.cos(th)[:, None, :], np.sin(th)[:, None, :]
        out = x.copy()
        a, b = x[..., :half], x[..., half:n_rot]
        out[..., :half] = a * cos - b * sin
        out[..., half:n_rot] = a * sin + b * cos
        return out

    def forward(self, tokens):
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.size == 0 or tokens.min() < 0 or tokens.max() >= self.n_vocab:
            raise GGUFError("tokens must be in [0, %d)" % self.n_vocab)
        T = len(tokens)
        pos = np.arange(T, dtype=np.float64)
        x = self.tok_embd[tokens] * np.sqrt(self.n_embd)
        ple = None
        if self.n_pl > 0 and "ple" not in self.ignore:
            p = (x @ self.pl_model_proj.T / np.sqrt(self.n_embd)).reshape(T, self.n_layer, self.n_pl)
            p = self.rmsnorm(p, self.pl_proj_norm)
            tok = self.pl_tok[tokens].reshape(T, self.n_layer, self.n_pl) * np.sqrt(self.n_pl)
            ple = (p + tok) / np.sqrt(2.0)
        cache = {}
        for il, L in enumerate(self.layers):
            hd, nkv = self.head_dim[il], self.n_head_kv[il]
            if "head_dims" in self.ignore:
                hd = self.head_dim[0]
            h = self.rmsnorm(x, L["attn_norm"])
            q = self.rmsnorm((h @ L["attn_q"].T).reshape(T, self.n_head, hd), L["attn_q_norm"])
            q = self.rope(q, pos, il)
            src = il
            if il >= self.kv_from and "kv_share" not in self.ignore:
                src = self.kv_from - (2 if self.swa[il] else 1)
            if src == il:
                k = (h @ L["attn_k"].T).reshape(T, nkv, hd)
                v = k if L["attn_v"] is None else (h @ L["attn_v"].T).reshape(T, nkv, hd)
                k = self.rope(self.rmsnorm(k, L["attn_k_norm"]), pos, il)
                if L["attn_v"] is None and "v_from_k" in self.ignore:
                    v = k  # the keys after their norm and RoPE: a plausible mistake
                if "v_norm" not in self.ignore:
                    v = self.rmsnorm(v)
                cache[il] = (k, v)
            k, v = cache[src]
            mask = pos[None, :] <= pos[:, None]
            if self.swa[il] and "swa" not in self.ignore:
                mask &= pos[None, :] > pos[:, None] - self.n_swa
            group = self.n_head // k.shape[1]
            att = np.zeros((T, self.n_head, hd))
            for hh in range(self.n_head):
                s = q[:, hh, :] @ k[:, hh // group, :].T
                s = np.where(mask, s, -np.inf)
                pr = np.exp(s - s.max(axis=1, keepdims=True))
                pr /= pr.sum(axis=1, keepdims=True)
                att[:, hh, :] = pr @ v[:, hh // group, :]
            x = x + self.rmsnorm(att.reshape(T, -1) @ L["attn_output"].T, L["post_attention_norm"])

            hf = self.rmsnorm(x, L["ffn_norm"])
            y = (gelu(hf @ L["ffn_gate"].T) * (hf @ L["ffn_up"].T)) @ L["ffn_down"].T
            if L["ffn_gate_inp"] is not None and "experts" not in self.ignore:
                y = self.rmsnorm(y, L["post_ffw_norm_1"]) + self.rmsnorm(self.experts(L, x), L["post_ffw_norm_2"])
            x = x + self.rmsnorm(y, L["post_ffw_norm"])
            if ple is not None:
                g = gelu(x @ L["inp_gate"].T) * ple[:, il, :]
                x = x + self.rmsnorm(g @ L["proj"].T, L["post_norm"])
            if L["layer_output_scale"] is not None and "out_scale" not in self.ignore:
                x = x * L["layer_output_scale"][0]
        logits = self.rmsnorm(x, self.output_norm) @ self.output.T
        if self.final_softcap > 0 and "final_softcap" not in self.ignore:
            logits = self.final_softcap * np.tanh(logits / self.final_softcap)
        return logits

    def experts(self, L, x):
        he = self.rmsnorm(x, L["pre_ffw_norm_2"])
        ri = self.rmsnorm(x) / np.sqrt(self.n_embd)
        if "router_scale" not in self.ignore:
            ri = ri * L["gate_inp_s"]
        logits = ri @ L["ffn_gate_inp"].T
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        gu, down = L["ffn_gate_up_exps"], L["ffn_down_exps"]   # [E, 2 fe, d], [E, d, fe]
        fe = down.shape[2]
        out = np.zeros_like(x)
        for t in range(x.shape[0]):
            sel = np.argsort(-p[t], kind="stable")[:self.n_expert_used]
            w = p[t, sel] / p[t, sel].sum()
            for e, we in zip(sel, w):
                a = gu[e] @ he[t]
                y = (gelu(a[:fe]) * a[fe:]) @ down[e].T
                if L["down_exps_s"] is not None and "expert_scale" not in self.ignore:
                    y = y * L["down_exps_s"][e]
                out[t] += we * y
        return out


def cmd_compare(m, args):
    tokens = parse_tokens(args.tokens)
    ref = m.forward(tokens)
    parts, ok = [], True
    for path in args.engine:
        got = np.fromfile(path, dtype="<f4")
        if got.size != ref.size:
            parts.append("%s has %d floats, expected %d" % (os.path.basename(path), got.size, ref.size))
            ok = False
            continue
        err = max_rel_error(got.reshape(ref.shape).astype(np.float64), ref)
        ok = ok and err <= args.tol
        parts.append("%s %.3g" % (os.path.basename(path), err))
    print("%s %s: %s (tolerance %g)" % ("ok" if ok else "FAIL", args.label or "gemma4", ", ".join(parts), args.tol))
    return 0 if ok else 1


def cmd_selftest(m, args):
    """Each feature present in the model moves the logits far beyond the tolerance."""
    tokens = parse_tokens(args.tokens)
    base = m.forward(tokens)
    bad = 0
    for f in Gemma4.FEATURES:
        m.ignore = {f}
        try:
            other = m.forward(tokens)
        except (ValueError, IndexError, KeyError):
            other = None  # the model cannot even run without it: it matters
        m.ignore = set()
        err = np.inf if other is None or other.shape != base.shape else max_rel_error(other, base)
        if err == 0:
            print("   without %s: no change (the model lacks it)" % f)
            continue
        bad += not ablation_verdict(f, err, args.tol)
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("compare")
    p.add_argument("model")
    p.add_argument("--tokens", required=True)
    p.add_argument("--engine", nargs="+", required=True)
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--label")
    p = sub.add_parser("selftest")
    p.add_argument("model")
    p.add_argument("--tokens", required=True)
    p.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    try:
        m = Gemma4(args.model)
        return {"compare": cmd_compare, "selftest": cmd_selftest}[args.cmd](m, args)
    except (GGUFError, OSError) as e:
        print("gemma4_ref.py: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
