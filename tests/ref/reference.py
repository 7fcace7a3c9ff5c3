#!/usr/bin/python3
"""reference.py - ember's independent NumPy reference forward pass.

This file knows nothing of ember's C code.  It reads a GGUF file itself
(metadata and F32/F16/BF16 tensors), runs the transformer forward pass for
every position of a token sequence in float64, and compares logits that
ember wrote (tests/tools/dump_logits) against its own.

Architectures, with the conventions llama.cpp uses for them:
  llama  RMSNorm, SwiGLU FFN, "normal" RoPE rotating adjacent pairs
         (x[2i], x[2i+1]); optional GQA, rope_freqs.weight (Llama 3 frequency
         divisors), linear RoPE scaling, tied output, and a Mistral-style
         sliding window ({arch}.attention.sliding_window: the query at
         position p sees keys at positions > p - window).
  bert, nomic-bert  encoders: not causal; the embedding is LayerNorm(token +
         token type 0 (+ learned position_embd for bert)); post-norm layers
         x = LN(x + attn(x)) with attn_output_norm, x = LN(x + ffn(x)) with
         layer_output_norm (LayerNorm with bias, eps
         attention.layer_norm_epsilon).  bert: separate Q/K/V, a bias on every
         linear layer, no RoPE, FFN gelu(x Wup + b) Wdown + b.  nomic-bert:
         fused attn_qkv (Q rows, then K, then V), NEOX RoPE, no biases but
         the norms', SwiGLU FFN.  No output head: the "logits" compared are
         the final rows times token_embd (the tied projection), and
         `pool` prints the pooled, L2-normalised vector (pooling_type 1 mean,
         2 the first row).
  YaRN   rope.scaling.type "yarn" (see Model.__init__), for any of them.
  qwen2  llama + biases on Q, K and V, NEOX RoPE pairing (x[i], x[i+d/2]).
  qwen3  llama + RMSNorm over each head of Q and K (attn_q_norm/attn_k_norm)
         before RoPE, NEOX RoPE; head size from attention.key_length may
         differ from n_embd / n_head.
  experts (llama with expert_count > 0, the Mixtral layout; qwen3moe = qwen3
         with experts): the FFN is a router ffn_gate_inp and 3-D expert
         tensors ffn_{gate,up,down}_exps; each token takes the
         expert_used_count experts of highest softmax(router) probability,
         their probabilities renormalised to sum to 1, and adds the weighted
         sum of those experts' SwiGLU FFNs (expert width
         expert_feed_forward_length, else feed_forward_length).
  gemma2 embedding times sqrt(n_embd); GELU (tanh approximation) instead of
         SiLU in the gated FFN; the attention and FFN outputs RMS-normalised
         again (post_attention_norm, post_ffw_norm) before their residual
         adds; NEOX RoPE; tied output; attention scores soft-capped,
         s -> c tanh(s / c) with c = attn_logit_softcapping, after the
         1/sqrt(head_dim) scale, and the logits with
         final_logit_softcapping; the sliding window applies to even
         layers only (il % 2 == 0), odd layers are global.
  gemma3 gemma2 without soft-caps, plus qwen3's Q/K norm; five windowed
         layers to one global (windowed when il % 6 < 5); global layers
         rotate with rope.freq_base and the linear scaling, windowed ones
         with rope.freq_base_swa (default 10000) unscaled.
  llama4 llama (adjacent-pair RoPE, rope_freqs) where layer il has experts
         when (il + 1) % interleave_moe_layer_step == 0, else a dense FFN.
         Expert layers: the top expert_used_count experts by router logit,
         each weighted by sigmoid(logit) (no renormalisation), the weight
         multiplying the expert's INPUT; plus a shared expert
         (ffn_{gate,up,down}_shexp) on every token, added.  Unless
         attention.sliding_window is present and 0: layers with
         (il + 1) % 4 == 0 are global and have no RoPE (NoPE), and their Q
         is multiplied by 1 + 0.1 log(floor((pos + 1) / 8192) + 1); the
         other layers attend within their chunk only (keys at positions
         >= pos - pos % chunk, chunk = attention.chunk_size, else 8192)
         and, unless the model has 128 experts, RMS-normalise each Q and K
         head without a weight after RoPE.

RoPE angle for pair i of a head rotating n_rot dims at position pos:
  theta = pos * freq_scale * base^(-2i / n_rot) / rope_freqs[i]
Attention scores are scaled by 1/sqrt(head_dim), causal, and query head h
reads KV head h // (n_head / n_head_kv).

Error measure (compare): per position, max_j |engine_j - ref_j| divided by
max_j |ref_j| (the row's logit scale); the result is the maximum over all
positions.  Scaling by the row maximum rather than per element keeps logits
near zero from turning float32 rounding into huge relative errors, while
still being a relative bound: 1e-4 means every logit is within 1e-4 of the
largest logit's magnitude.

Commands (all write one-line results to stdout, errors to stderr):
  reference.py info MODEL
  reference.py logits MODEL --tokens 1,2,3 --out FILE.f32
  reference.py compare MODEL --tokens 1,2,3 --engine A.f32 [B.f32 ...] [--tol 1e-4] [--label L]
  reference.py greedy MODEL [--n 20] [--expect IDS.txt]
  reference.py selftest MODEL --tokens 1,2,3   (each feature must matter)

Exit status: 0 pass, 1 mismatch or failure, 2 usage or file error.
Needs only Python 3 and NumPy (Debian: python3-numpy).
"""

import argparse
import functools
import struct
import sys

import numpy as np

# ------------------------------------------------------------------ GGUF ---

GGUF_MAGIC = b"GGUF"

# Scalar metadata value types: id -> (struct format, size).
_SCALAR = {
    0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2),
    4: ("<I", 4), 5: ("<i", 4), 6: ("<f", 4), 7: ("<?", 1),
    10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8),
}
_T_STRING, _T_ARRAY = 8, 9

# Tensor types this reader can turn into floats: ggml type id -> name.
_F32, _F16, _BF16 = 0, 1, 30


class GGUFError(Exception):
    pass


class GGUF:
    """A GGUF file: .kv maps key -> value, .tensors maps name -> info."""

    def __init__(self, path):
        with open(path, "rb") as f:
            self.buf = f.read()
        self.pos = 0
        if self._take(4) != GGUF_MAGIC:
            raise GGUFError("%s: not a GGUF file" % path)
        self.version = self._u32()
        if self.version not in (2, 3):
            raise GGUFError("%s: GGUF version %d unsupported" % (path, self.version))
        n_tensors, n_kv = self._u64(), self._u64()
        self.kv = {}
        for _ in range(n_kv):
            key = self._str()
            self.kv[key] = self._value(self._u32())
        self.tensors = {}
        for _ in range(n_tensors):
            name = self._str()
            n_dims = self._u32()
            ne = [self._u64() for _ in range(n_dims)]
            ttype = self._u32()
            offset = self._u64()
            self.tensors[name] = (ne, ttype, offset)
        align = int(self.kv.get("general.alignment", 32))
        self.data_start = (self.pos + align - 1) // align * align

    def _take(self, n):
        if self.pos + n > len(self.buf):
            raise GGUFError("truncated file")
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def _u32(self):
        return struct.unpack("<I", self._take(4))[0]

    def _u64(self):
        return struct.unpack("<Q", self._take(8))[0]

    def _str(self):
        return self._take(self._u64()).decode("utf-8", errors="replace")

    def _value(self, t):
        if t in _SCALAR:
            fmt, size = _SCALAR[t]
            return struct.unpack(fmt, self._take(size))[0]
        if t == _T_STRING:
            return self._str()
        if t == _T_ARRAY:
            et, n = self._u32(), self._u64()
            if et in _SCALAR:
                fmt, size = _SCALAR[et]
                raw = self._take(size * n)
                return list(struct.unpack("<%d%s" % (n, fmt[1]), raw))
            return [self._value(et) for _ in range(n)]
        raise GGUFError("unknown metadata type %d" % t)

    def tensor(self, name):
        """The tensor as float64 with NumPy shape ne reversed (ne[0] last)."""
        if name not in self.tensors:
            return None
        ne, ttype, offset = self.tensors[name]
        count = int(np.prod(ne)) if ne else 1
        start = self.data_start + offset
        if ttype == _F32:
            a = np.frombuffer(self.buf, dtype="<f4", count=count, offset=start)
        elif ttype == _F16:
            a = np.frombuffer(self.buf, dtype="<f2", count=count, offset=start)
        elif ttype == _BF16:
            u = np.frombuffer(self.buf, dtype="<u2", count=count, offset=start)
            a = (u.astype(np.uint32) << 16).view(np.float32)
        else:
            raise GGUFError("tensor %s has type %d; the reference reads F32/F16/BF16 only"
                            % (name, ttype))
        return a.astype(np.float64).reshape(list(reversed(ne)))


# ------------------------------------------------------------ the model ---

def layer_tensor(g, il, name, required=True):
    """Tensor blk.<il>.<name> of g; a GGUFError when it is missing and required."""
    w = g.tensor("blk.%d.%s" % (il, name))
    if w is None and required:
        raise GGUFError("missing tensor blk.%d.%s" % (il, name))
    return w


class Model:
    """Hyperparameters and weights of one GGUF model, read as llama.cpp does."""

    ARCHS = ("llama", "mistral", "qwen2", "qwen3", "qwen3moe", "gemma2", "gemma3", "bert", "nomic-bert", "llama4")

    def __init__(self, path):
        g = GGUF(path)
        self.g = g
        arch = g.kv.get("general.architecture")
        if arch not in self.ARCHS:
            raise GGUFError("architecture %r unsupported (%s)" % (arch, ", ".join(self.ARCHS)))
        self.arch = arch

        def key(suffix, default=None):
            v = g.kv.get("%s.%s" % (arch, suffix), default)
            if v is None:
                raise GGUFError("missing key %s.%s" % (arch, suffix))
            return v

        self.n_embd = int(key("embedding_length"))
        self.n_layer = int(key("block_count"))
        self.n_ff = int(key("feed_forward_length"))
        self.n_head = int(key("attention.head_count"))
        self.n_head_kv = int(key("attention.head_count_kv", self.n_head))
        self.head_dim = int(key("attention.key_length", self.n_embd // self.n_head))
        self.head_dim_v = int(key("attention.value_length", self.head_dim))
        self.n_rot = int(key("rope.dimension_count", self.head_dim))
        self.eps = float(key("attention.layer_norm_rms_epsilon", 1e-5))
        self.rope_base = float(key("rope.freq_base", 10000.0))
        self.n_swa = int(key("attention.sliding_window", 0))

        # llama.cpp: the scaling type defaults to linear, and the factor
        # (new key, else the old one) applies whenever it is present.
        stype = key("rope.scaling.type", "linear")
        factor = float(key("rope.scaling.factor", 0.0)) or float(key("rope.scale_linear", 0.0))
        if stype not in ("linear", "none", "yarn"):
            raise GGUFError("rope scaling type %r unsupported by the reference" % stype)
        self.freq_scale = 1.0 / factor if (stype in ("linear", "yarn") and factor and factor != 1) else 1.0
        # YaRN (llama.cpp's rope_yarn): pair i's angle blends the scaled and
        # the unscaled frequency by a ramp between the pairs that complete
        # beta_fast and beta_slow turns over the original context, and cos
        # and sin are multiplied by attn_factor * (1 + 0.1 ln factor).
        self.yarn = None
        if stype == "yarn" and self.freq_scale != 1.0:
            n_orig = int(key("rope.scaling.original_context_length", key("context_length", 2048)))
            beta_fast = float(key("rope.scaling.yarn_beta_fast", 32.0))
            beta_slow = float(key("rope.scaling.yarn_beta_slow", 1.0))
            attn_factor = float(key("rope.scaling.yarn_attn_factor", 1.0))
            def corr(beta):
                return self.n_rot * np.log(n_orig / (beta * 2 * np.pi)) / (2 * np.log(self.rope_base))
            lo = max(0.0, np.floor(corr(beta_fast)))
            hi = min(self.n_rot - 1.0, np.ceil(corr(beta_slow)))
            self.yarn = (lo, hi, attn_factor * (1.0 + 0.1 * np.log(factor)))

        self.neox = arch in ("qwen2", "qwen3", "qwen3moe", "gemma2", "gemma3", "nomic-bert")
        self.n_expert = int(key("expert_count", 0))
        self.n_expert_used = int(key("expert_used_count", 0))
        self.gemma = arch in ("gemma2", "gemma3")
        self.llama4 = arch == "llama4"
        self.layer_moe = [bool(self.n_expert)] * self.n_layer
        self.layer_chunk = [0] * self.n_layer
        self.layer_nope = [False] * self.n_layer
        self.l2norm = False
        if self.llama4:
            step = int(key("interleave_moe_layer_step", 1)) if self.n_expert else 0
            self.layer_moe = [bool(self.n_expert) and step > 0 and (il + 1) % step == 0
                              for il in range(self.n_layer)]
            chunked = g.kv.get("llama4.attention.sliding_window") != 0
            chunk = int(key("attention.chunk_size", 8192))
            self.n_swa = 0
            self.layer_nope = [chunked and (il + 1) % 4 == 0 for il in range(self.n_layer)]
            self.layer_chunk = [0 if (nope or not chunked) else chunk for nope in self.layer_nope]
            self.l2norm = self.n_expert != 128
        # Per layer: sliding window (0 = global) and RoPE (base, freq_scale).
        self.attn_softcap = self.final_softcap = 0.0
        if arch == "gemma2":
            self.attn_softcap = float(key("attn_logit_softcapping", 50.0))
            self.final_softcap = float(key("final_logit_softcapping", 30.0))
        pattern = {"gemma2": 2, "gemma3": 6}.get(arch, 1)
        base_swa = float(key("rope.freq_base_swa", 10000.0)) if arch == "gemma3" else None
        self.layer_swa, self.layer_rope = [], []
        for il in range(self.n_layer):
            local = pattern == 1 or il % pattern < pattern - 1
            self.layer_swa.append(self.n_swa if local else 0)
            if local and base_swa is not None:
                self.layer_rope.append((base_swa, 1.0))
            else:
                self.layer_rope.append((self.rope_base, self.freq_scale))
        self.tok_embd = g.tensor("token_embd.weight")          # [n_vocab, n_embd]
        self.n_vocab = self.tok_embd.shape[0]
        self.output_norm = g.tensor("output_norm.weight")      # [n_embd]
        out = g.tensor("output.weight")                        # [n_vocab, n_embd]
        self.tied = out is None
        self.output = self.tok_embd if out is None else out
        self.rope_freqs = g.tensor("rope_freqs.weight")        # [n_rot/2] or None
        self.layers = []
        self.encoder = arch in ("bert", "nomic-bert")
        if self.encoder:
            self.load_encoder(g, key)
            self.ignore = set()
            return
        for il in range(self.n_layer):
            t = functools.partial(layer_tensor, g, il)
            self.layers.append({
                "attn_norm": t("attn_norm.weight"),              # [n_embd]
                "wq": t("attn_q.weight"),      # [n_head*head_dim, n_embd]
                "wk": t("attn_k.weight"),      # [n_head_kv*head_dim, n_embd]
                "wv": t("attn_v.weight"),      # [n_head_kv*head_dim_v, n_embd]
                "wo": t("attn_output.weight"), # [n_embd, n_head*head_dim_v]
                "bq": t("attn_q.bias", False),
                "bk": t("attn_k.bias", False),
                "bv": t("attn_v.bias", False),
                "q_norm": t("attn_q_norm.weight", False),        # [head_dim]
                "k_norm": t("attn_k_norm.weight", False),        # [head_dim]
                "ffn_norm": t("ffn_norm.weight"),
                "w_gate": t("ffn_gate.weight", not self.layer_moe[il]),  # [n_ff, n_embd]
                "w_up": t("ffn_up.weight", not self.layer_moe[il]),      # [n_ff, n_embd]
                "w_down": t("ffn_down.weight", not self.layer_moe[il]),  # [n_embd, n_ff]
                "router": t("ffn_gate_inp.weight", self.layer_moe[il]),      # [n_expert, n_embd]
                "gate_exps": t("ffn_gate_exps.weight", self.layer_moe[il]),  # [n_expert, n_ff_exp, n_embd]
                "up_exps": t("ffn_up_exps.weight", self.layer_moe[il]),      # [n_expert, n_ff_exp, n_embd]
                "down_exps": t("ffn_down_exps.weight", self.layer_moe[il]),  # [n_expert, n_embd, n_ff_exp]
                # llama4's shared expert: [n_ff_exp, n_embd] x2, [n_embd, n_ff_exp]
                "gate_shexp": t("ffn_gate_shexp.weight", self.llama4 and self.layer_moe[il]),
                "up_shexp": t("ffn_up_shexp.weight", self.llama4 and self.layer_moe[il]),
                "down_shexp": t("ffn_down_shexp.weight", self.llama4 and self.layer_moe[il]),
                "post_attn_norm": t("post_attention_norm.weight", self.gemma),  # [n_embd]
                "post_ffn_norm": t("post_ffw_norm.weight", self.gemma),         # [n_embd]
            })
        if self.arch == "qwen2" and self.layers[0]["bq"] is None:
            raise GGUFError("qwen2 model without attn_q.bias")
        if self.arch in ("qwen3", "qwen3moe", "gemma3") and self.layers[0]["q_norm"] is None:
            raise GGUFError("qwen3 model without attn_q_norm.weight")

        # Feature switches the selftest flips to prove each one matters.
        self.ignore = set()

    def load_encoder(self, g, key):
        self.eps = float(key("attention.layer_norm_epsilon", 1e-12))
        self.pooling = int(key("pooling_type", 1))
        self.pos_embd = g.tensor("position_embd.weight")        # [n_ctx, n_embd] or None
        self.tok_types = g.tensor("token_types.weight")         # [n_types, n_embd]
        self.embd_norm = (g.tensor("token_embd_norm.weight"), g.tensor("token_embd_norm.bias"))
        q = self.n_head * self.head_dim
        k = self.n_head_kv * self.head_dim
        for il in range(self.n_layer):
            t = functools.partial(layer_tensor, g, il)
            L = {"attn_out_norm": (t("attn_output_norm.weight"), t("attn_output_norm.bias")),
                 "out_norm": (t("layer_output_norm.weight"), t("layer_output_norm.bias")),
                 "wo": t("attn_output.weight"), "bo": t("attn_output.bias", False),
                 "w_up": t("ffn_up.weight"), "b_up": t("ffn_up.bias", False),
                 "w_gate": t("ffn_gate.weight", False),
                 "w_down": t("ffn_down.weight"), "b_down": t("ffn_down.bias", False)}
            if self.arch == "nomic-bert":
                qkv = t("attn_qkv.weight")                      # [q + 2k, n_embd]
                L["wq"], L["wk"], L["wv"] = qkv[:q], qkv[q:q + k], qkv[q + k:]
                L["bq"] = L["bk"] = L["bv"] = None
            else:
                L["wq"], L["wk"], L["wv"] = t("attn_q.weight"), t("attn_k.weight"), t("attn_v.weight")
                L["bq"], L["bk"], L["bv"] = t("attn_q.bias"), t("attn_k.bias"), t("attn_v.bias")
            self.layers.append(L)

    def layernorm(self, x, wb):
        w, b = wb
        mu = x.mean(axis=-1, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.eps) * w + b

    def encode(self, tokens):
        """The encoder's final rows [T, n_embd]."""
        T = len(tokens)
        pos = np.arange(T)
        x = self.tok_embd[tokens] + self.tok_types[0]
        if self.pos_embd is not None:
            x = x + self.pos_embd[pos]
        x = self.layernorm(x, self.embd_norm)
        for L in self.layers:
            q, k, v = x @ L["wq"].T, x @ L["wk"].T, x @ L["wv"].T
            if L["bq"] is not None:
                q, k, v = q + L["bq"], k + L["bk"], v + L["bv"]
            q = q.reshape(T, self.n_head, self.head_dim)
            k = k.reshape(T, self.n_head_kv, self.head_dim)
            v = v.reshape(T, self.n_head_kv, self.head_dim_v)
            if self.arch == "nomic-bert" and "rope" not in self.ignore:
                q, k = self.rope(q, pos), self.rope(k, pos)
            group = self.n_head // self.n_head_kv
            att = np.zeros((T, self.n_head, self.head_dim_v))
            for hh in range(self.n_head):
                s = (q[:, hh, :] @ k[:, hh // group, :].T) / np.sqrt(self.head_dim)
                if "causal" in self.ignore:
                    s = np.where(pos[None, :] <= pos[:, None], s, -np.inf)
                s = s - s.max(axis=1, keepdims=True)
                p = np.exp(s)
                att[:, hh, :] = (p / p.sum(axis=1, keepdims=True)) @ v[:, hh // group, :]
            o = att.reshape(T, -1) @ L["wo"].T
            if L["bo"] is not None:
                o = o + L["bo"]
            x = self.layernorm(x + o, L["attn_out_norm"])
            u = x @ L["w_up"].T
            if L["b_up"] is not None:
                u = u + L["b_up"]
            if L["w_gate"] is not None:
                g = x @ L["w_gate"].T
                a = g / (1.0 + np.exp(-g)) * u
            else:
                a = 0.5 * u * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (u + 0.044715 * u ** 3)))
            y = a @ L["w_down"].T
            if L["b_down"] is not None:
                y = y + L["b_down"]
            x = self.layernorm(x + y, L["out_norm"])
        return x

    def pool(self, tokens):
        h = self.encode(tokens)
        v = h[0] if self.pooling == 2 else h.mean(axis=0)
        return v / np.linalg.norm(v)

    # ---- building blocks ----

    def rmsnorm(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x, pos, base=None, freq_scale=None):
        """x: [T, heads, head_dim]; rotates the first n_rot dims of each head
        with the given base and scale (default: the global ones)."""
        if base is None or "rope_swa" in self.ignore:
            base, freq_scale = self.rope_base, self.freq_scale
        half = self.n_rot // 2
        i = np.arange(half, dtype=np.float64)
        freq = base ** (-2.0 * i / self.n_rot)
        mscale = 1.0
        if self.yarn is not None and freq_scale != 1.0 and "yarn" not in self.ignore:
            lo, hi, mscale = self.yarn
            ramp = 1.0 - np.clip((i - lo) / max(0.001, hi - lo), 0.0, 1.0)
            freq = freq * (freq_scale * (1.0 - ramp) + ramp)
        elif "rope_scale" not in self.ignore:
            freq = freq * freq_scale
        if self.rope_freqs is not None and "rope_freqs" not in self.ignore:
            freq = freq / self.rope_freqs
        theta = pos[:, None].astype(np.float64) * freq[None, :]   # [T, half]
        cos = np.cos(theta)[:, None, :] * mscale
        sin = np.sin(theta)[:, None, :] * mscale
        out = x.copy()
        neox = self.neox != ("rope_type" in self.ignore)
        if neox:
            a, b = x[..., :half], x[..., half:self.n_rot]
            out[..., :half] = a * cos - b * sin
            out[..., half:self.n_rot] = a * sin + b * cos
        else:
            a, b = x[..., 0:self.n_rot:2], x[..., 1:self.n_rot:2]
            out[..., 0:self.n_rot:2] = a * cos - b * sin
            out[..., 1:self.n_rot:2] = a * sin + b * cos
        return out

    def attention(self, L, h, pos, il=0):
        T = h.shape[0]
        q = h @ L["wq"].T
        k = h @ L["wk"].T
        v = h @ L["wv"].T
        if L["bq"] is not None and "bias" not in self.ignore:
            q, k, v = q + L["bq"], k + L["bk"], v + L["bv"]
        q = q.reshape(T, self.n_head, self.head_dim)
        k = k.reshape(T, self.n_head_kv, self.head_dim)
        v = v.reshape(T, self.n_head_kv, self.head_dim_v)
        if L["q_norm"] is not None and "qk_norm" not in self.ignore:
            q = self.rmsnorm(q, L["q_norm"])
            k = self.rmsnorm(k, L["k_norm"])
        nope = self.layer_nope[il] and "nope" not in self.ignore
        if "rope" not in self.ignore and not nope:
            base, scale = self.layer_rope[il]
            q = self.rope(q, pos, base, scale)
            k = self.rope(k, pos, base, scale)
        if nope:
            # llama4's attention temperature (1 below position 8191).
            q = q * (np.log(np.floor((pos + 1.0) / 8192.0) + 1.0) * 0.1 + 1.0)[:, None, None]
        elif self.l2norm and "l2norm" not in self.ignore:
            q = self.rmsnorm(q, 1.0)
            k = self.rmsnorm(k, 1.0)

        # mask[i, j]: may query i see key j?
        mask = pos[None, :] <= pos[:, None]
        chunk = self.layer_chunk[il]
        if chunk > 0 and "chunk" not in self.ignore:
            mask &= pos[None, :] >= (pos - pos % chunk)[:, None]
        swa = self.n_swa if "swa_pattern" in self.ignore else self.layer_swa[il]
        if swa > 0 and "swa" not in self.ignore:
            mask &= pos[None, :] > pos[:, None] - swa
        group = self.n_head // self.n_head_kv
        out = np.zeros((T, self.n_head, self.head_dim_v))
        for hh in range(self.n_head):
            kv = hh % self.n_head_kv if "gqa_map" in self.ignore else hh // group
            s = (q[:, hh, :] @ k[:, kv, :].T) / np.sqrt(self.head_dim)
            if self.attn_softcap > 0 and "softcap" not in self.ignore:
                s = self.attn_softcap * np.tanh(s / self.attn_softcap)
            s = np.where(mask, s, -np.inf)
            s = s - s.max(axis=1, keepdims=True)
            p = np.exp(s)
            p /= p.sum(axis=1, keepdims=True)
            out[:, hh, :] = p @ v[:, kv, :]
        return out.reshape(T, self.n_head * self.head_dim_v) @ L["wo"].T

    def forward(self, tokens):
        """Logits [T, n_vocab] for tokens at positions 0..T-1."""
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.size == 0 or tokens.min() < 0 or tokens.max() >= self.n_vocab:
            raise GGUFError("tokens must be in [0, %d)" % self.n_vocab)
        if self.encoder:
            return self.encode(tokens) @ self.output.T
        pos = np.arange(len(tokens))
        x = self.tok_embd[tokens]
        if self.gemma and "embd_scale" not in self.ignore:
            x = x * np.sqrt(self.n_embd)
        for il, L in enumerate(self.layers):
            x = x + self.post_norm(self.attention(L, self.rmsnorm(x, L["attn_norm"]), pos, il),
                                   L["post_attn_norm"])
            h = self.rmsnorm(x, L["ffn_norm"])
            if L["router"] is not None:
                y = self.experts(L, h)
            else:
                y = self.ffn(h, L["w_gate"], L["w_up"], L["w_down"])
            x = x + self.post_norm(y, L["post_ffn_norm"])
        x = self.rmsnorm(x, self.output_norm)
        logits = x @ self.output.T
        if self.final_softcap > 0 and "final_softcap" not in self.ignore:
            logits = self.final_softcap * np.tanh(logits / self.final_softcap)
        return logits

    def ffn(self, h, w_gate, w_up, w_down):
        g = h @ w_gate.T
        if self.gemma and "gelu" not in self.ignore:
            a = 0.5 * g * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (g + 0.044715 * g ** 3)))
        else:
            a = g / (1.0 + np.exp(-g))
        return (a * (h @ w_up.T)) @ w_down.T

    def experts(self, L, h):
        """Top-k routing; each row's chosen experts, weighted: softmax
        renormalised over the k (Mixtral), or llama4's sigmoid weights on
        the experts' input plus its shared expert."""
        logits = h @ L["router"].T                         # [T, n_expert]
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        if self.llama4:
            p = 1.0 / (1.0 + np.exp(-logits))
        k = self.n_expert_used
        out = np.zeros_like(h)
        for t in range(h.shape[0]):
            if "routing" in self.ignore:
                sel = np.arange(k)                        # the first k experts
            else:
                sel = np.argsort(-p[t], kind="stable")[:k]
            w = p[t, sel] if self.llama4 else p[t, sel] / p[t, sel].sum()
            for e, we in zip(sel, w):
                if self.llama4 and "weight_input" not in self.ignore:
                    out[t] += self.ffn(we * h[t:t + 1], L["gate_exps"][e], L["up_exps"][e],
                                       L["down_exps"][e])[0]
                else:
                    out[t] += we * self.ffn(h[t:t + 1], L["gate_exps"][e], L["up_exps"][e],
                                            L["down_exps"][e])[0]
        if L.get("gate_shexp") is not None and "shared_expert" not in self.ignore:
            out += self.ffn(h, L["gate_shexp"], L["up_shexp"], L["down_shexp"])
        return out

    def post_norm(self, y, w):
        """Gemma's norm of a block's output before its residual add."""
        if w is None or "post_norm" in self.ignore:
            return y
        return self.rmsnorm(y, w)


# ---------------------------------------------------------- comparisons ---

def max_rel_error(engine, ref):
    """Max over rows of max|engine - ref| / max|ref| (see the file comment)."""
    scale = np.maximum(np.abs(ref).max(axis=1), 1e-30)
    return float((np.abs(engine - ref).max(axis=1) / scale).max())


def ablation_verdict(feature, err, tol):
    """Prints whether running without feature moved the logits by more than
    100 tol (so the feature matters, as the selftests require); returns it."""
    ok = err > 100 * tol
    print("%s without %s: logits move by %.3g" % ("ok" if ok else "FAIL", feature, err))
    return ok


def parse_tokens(s):
    try:
        return [int(t) for t in s.replace(" ", ",").split(",") if t != ""]
    except ValueError:
        raise GGUFError("bad token list %r" % s)


def cmd_info(m, args):
    print("arch %s n_vocab %d n_embd %d n_layer %d n_head %d n_head_kv %d head_dim %d "
          "n_ff %d n_rot %d rope_base %g freq_scale %g swa %d tied %s rope_freqs %s" % (
              m.arch, m.n_vocab, m.n_embd, m.n_layer, m.n_head, m.n_head_kv, m.head_dim,
              m.n_ff, m.n_rot, m.rope_base, m.freq_scale, m.n_swa, m.tied,
              m.rope_freqs is not None))
    return 0


def cmd_logits(m, args):
    m.forward(parse_tokens(args.tokens)).astype("<f4").tofile(args.out)
    return 0


def cmd_compare(m, args):
    """One line: the label, each engine file's error, and a verdict."""
    import os
    tokens = parse_tokens(args.tokens)
    ref = m.forward(tokens)
    parts, ok = [], True
    for path in args.engine:
        name = os.path.basename(path)
        got = np.fromfile(path, dtype="<f4")
        if got.size != ref.size:
            parts.append("%s has %d floats, expected %d (%d positions x %d vocab)"
                         % (name, got.size, ref.size, ref.shape[0], ref.shape[1]))
            ok = False
            continue
        got = got.reshape(ref.shape).astype(np.float64)
        if not np.all(np.isfinite(got)):
            parts.append("%s has non-finite logits" % name)
            ok = False
            continue
        err = max_rel_error(got, ref)
        agree = int((got.argmax(axis=1) == ref.argmax(axis=1)).sum())
        parts.append("%s %.2e (argmax %d/%d)" % (name, err, agree, len(tokens)))
        ok = ok and err <= args.tol
    print("%s %s: max rel error %s; tol %g" % ("PASS" if ok else "FAIL", args.label or args.model,
                                              ", ".join(parts), args.tol))
    return 0 if ok else 1


def cmd_pool(m, args):
    print(" ".join("%.6f" % v for v in m.pool(parse_tokens(args.tokens))))
    return 0


def cmd_greedy(m, args):
    bos = int(m.g.kv.get("tokenizer.ggml.bos_token_id", 1))
    seq = [bos]
    for _ in range(args.n):
        seq.append(int(np.argmax(m.forward(seq)[-1])))
    got = seq[1:]
    print("greedy: " + " ".join(map(str, got)))
    if args.expect:
        with open(args.expect) as f:
            want = [int(t) for t in f.read().split()][:args.n]
        if got[:len(want)] != want:
            print("FAIL: expected " + " ".join(map(str, want)))
            return 1
        print("ok: the first %d greedy ids match %s" % (len(want), args.expect))
    return 0


def cmd_selftest(m, args):
    """Switches off each feature the model uses; the logits must move far
    beyond the tolerance, or the comparison could not catch an engine that
    gets that feature wrong."""
    tokens = parse_tokens(args.tokens)
    base = m.forward(tokens)
    if m.encoder:
        feats = ["causal"] + (["rope"] if m.arch == "nomic-bert" else [])
    else:
        feats = ["rope", "rope_type"]
        if m.n_head_kv < m.n_head and m.n_head_kv > 1:
            feats.append("gqa_map")
        if m.rope_freqs is not None:
            feats.append("rope_freqs")
        if m.freq_scale != 1.0:
            feats.append("yarn" if m.yarn is not None else "rope_scale")
        if m.n_swa > 0:
            feats.append("swa")
        if m.layers[0]["bq"] is not None:
            feats.append("bias")
        if m.layers[0]["q_norm"] is not None:
            feats.append("qk_norm")
        if m.gemma:
            feats += ["embd_scale", "gelu", "post_norm"]
        if m.n_expert:
            feats.append("routing")
        if m.llama4:
            feats += ["weight_input", "shared_expert"]
            if any(m.layer_chunk):
                feats.append("chunk")
            if any(m.layer_nope):
                feats.append("nope")
            if m.l2norm:
                feats.append("l2norm")
        if m.n_swa > 0 and 0 in m.layer_swa:
            feats.append("swa_pattern")
        if len(set(m.layer_rope)) > 1:
            feats.append("rope_swa")
        if m.attn_softcap > 0:
            feats.append("softcap")
        if m.final_softcap > 0:
            feats.append("final_softcap")
    bad = 0
    for f in feats:
        m.ignore = {f}
        err = max_rel_error(m.forward(tokens), base)
        m.ignore = set()
        bad += not ablation_verdict(f, err, args.tol)
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("info")
    p.add_argument("model")
    p = sub.add_parser("logits")
    p.add_argument("model")
    p.add_argument("--tokens", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("compare")
    p.add_argument("model")
    p.add_argument("--tokens", required=True)
    p.add_argument("--engine", nargs="+", required=True)
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--label")
    p = sub.add_parser("greedy")
    p.add_argument("model")
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--expect")
    p = sub.add_parser("pool")
    p.add_argument("model")
    p.add_argument("--tokens", required=True)
    p = sub.add_parser("selftest")
    p.add_argument("model")
    p.add_argument("--tokens", required=True)
    p.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    try:
        m = Model(args.model)
        return {"info": cmd_info, "logits": cmd_logits, "compare": cmd_compare,
                "greedy": cmd_greedy, "selftest": cmd_selftest, "pool": cmd_pool}[args.cmd](m, args)
    except (GGUFError, OSError) as e:
        print("reference.py: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
