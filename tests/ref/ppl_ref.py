#!/usr/bin/python3
"""ppl_ref.py - perplexity and KL divergence recomputed in NumPy.

Checks `ember eval ppl` and `ember eval kld` against an independent
computation: the chunking follows llama-perplexity's conventions as
docs/EVAL.md states them, and the logits come from reference.py's float64
forward pass (which knows nothing of ember's C code).  Only the token ids
come from ember (its tokenizer has tests of its own).

Chunking: chunk c is tokens[c*n_ctx:(c+1)*n_ctx] with its first token
replaced by BOS when the model adds BOS (detected as: the tokenized text
starts with the BOS id); positions n_ctx//2 .. n_ctx-2 predict the token
after them.  PPL = exp(mean NLL), SE = PPL * sqrt(var(NLL) / (count - 1)).

Commands (results on stdout, one line; errors on stderr):
  ppl_ref.py ppl MODEL --tokens IDS.json --ctx N --chunks K --engine RESULT.json [--tol 1e-4]
  ppl_ref.py kld BASE MODEL --tokens IDS.json --ctx N --chunks K --engine RESULT.json [--tol 1e-4]

IDS.json holds a JSON array of token ids (`ember tokenize --ids`);
RESULT.json is the record `ember eval ppl|kld --json` wrote.
Exit status: 0 agree, 1 disagree, 2 usage or file error.
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402  (tests/ref/reference.py, read-only here)


def log_softmax(logits):
    """Rows of log-probabilities, float64."""
    m = logits.max(axis=1, keepdims=True)
    return logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))


def bos_of(model, tokens):
    """The BOS id when the text was tokenized with one, else None."""
    bos = model.g.kv.get("tokenizer.ggml.bos_token_id")
    if bos is not None and len(tokens) and tokens[0] == int(bos):
        return int(bos)
    return None


def chunk_logprobs(model, tokens, n_ctx, n_chunks, bos):
    """For each chunk: (log-probability rows of the scored positions,
    the tokens they predict)."""
    first = n_ctx // 2
    for c in range(n_chunks):
        chunk = list(tokens[c * n_ctx:(c + 1) * n_ctx])
        if bos is not None:
            chunk[0] = bos
        lp = log_softmax(model.forward(chunk))
        targets = np.asarray(tokens[c * n_ctx + first + 1:(c + 1) * n_ctx], dtype=np.int64)
        yield lp[first:n_ctx - 1], targets


def n_chunks_for(tokens, n_ctx, want):
    if len(tokens) < 2 * n_ctx:
        raise reference.GGUFError("need %d tokens for a context of %d, have %d" % (2 * n_ctx, n_ctx, len(tokens)))
    n = len(tokens) // n_ctx
    return min(n, want) if want > 0 else n


def ppl_stats(nll):
    nll = np.asarray(nll)
    mean = nll.mean()
    ppl = float(np.exp(mean))
    var = (nll * nll).mean() - mean * mean
    se = float(np.sqrt(var / (len(nll) - 1)) * ppl) if var > 0 else 0.0
    return ppl, se


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


def cmd_ppl(args):
    model = reference.Model(args.model)
    tokens = load_ids(args.tokens)
    n = n_chunks_for(tokens, args.ctx, args.chunks)
    bos = bos_of(model, tokens)
    nll = []
    for lp, tg in chunk_logprobs(model, tokens, args.ctx, n, bos):
        nll.extend(-lp[np.arange(len(tg)), tg])
    ppl, se = ppl_stats(nll)
    eng = load_json(args.engine)["ppl"]
    e_ppl, e_se = float(eng["value"]), float(eng["se"])
    err = max(rel(e_ppl, ppl), rel(e_se, se))
    ok = err <= args.tol and int(eng["chunks"]) == n
    print("%s ppl: ref %.6f +/- %.6f, ember %.6f +/- %.6f, chunks %d/%d, rel err %.2e (tol %.0e)" % (
        "ok" if ok else "FAIL", ppl, se, e_ppl, e_se, n, int(eng["chunks"]), err, args.tol))
    return 0 if ok else 1


def cmd_kld(args):
    base = reference.Model(args.base)
    model = reference.Model(args.model)
    tokens = load_ids(args.tokens)
    n = n_chunks_for(tokens, args.ctx, args.chunks)
    bos = bos_of(base, tokens)
    klds, same, nll_b, nll_m = [], 0, [], []
    for (lpb, tg), (lpm, _) in zip(chunk_logprobs(base, tokens, args.ctx, n, bos),
                                   chunk_logprobs(model, tokens, args.ctx, n, bos)):
        pb = np.exp(lpb)
        klds.extend((pb * (lpb - lpm)).sum(axis=1))
        same += int((lpb.argmax(axis=1) == lpm.argmax(axis=1)).sum())
        idx = np.arange(len(tg))
        nll_b.extend(-lpb[idx, tg])
        nll_m.extend(-lpm[idx, tg])
    klds = np.sort(np.asarray(klds))
    # Linear interpolation at fraction * (count - 1), as llama-perplexity.
    p = 0.99 * (len(klds) - 1)
    ip = int(p)
    p99 = (1 - (p - ip)) * klds[ip] + (p - ip) * klds[min(ip + 1, len(klds) - 1)]
    ref = {
        "mean": float(klds.mean()),
        "p99": float(p99),
        "top1": same / len(klds),
        "ppl_base": ppl_stats(nll_b)[0],
        "ppl_model": ppl_stats(nll_m)[0],
    }
    ref["dppl"] = ref["ppl_model"] - ref["ppl_base"]
    eng = load_json(args.engine)["kld"]
    worst = 0.0
    for k, v in ref.items():
        e = float(eng[k])
        # KLD values near zero are compared on the scale of the mean.
        scale = max(abs(v), ref["mean"] if k in ("mean", "p99") else 1e-12, 1e-12)
        worst = max(worst, abs(e - v) / scale)
    ok = worst <= args.tol
    print("%s kld: ref mean %.6g p99 %.6g top1 %.4f dppl %.6g; ember mean %.6g p99 %.6g top1 %.4f dppl %.6g; "
          "rel err %.2e (tol %.0e)" % ("ok" if ok else "FAIL", ref["mean"], ref["p99"], ref["top1"], ref["dppl"],
                                       float(eng["mean"]), float(eng["p99"]), float(eng["top1"]),
                                       float(eng["dppl"]), worst, args.tol))
    return 0 if ok else 1


def load_json(path):
    with open(path) as f:
        return json.load(f)


def load_ids(path):
    ids = load_json(path)
    if not isinstance(ids, list) or not all(isinstance(t, int) for t in ids):
        raise reference.GGUFError("%s: not a JSON array of token ids" % path)
    return ids


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("ppl", "kld"):
        p = sub.add_parser(name)
        if name == "kld":
            p.add_argument("base")
        p.add_argument("model")
        p.add_argument("--tokens", required=True)
        p.add_argument("--ctx", type=int, required=True)
        p.add_argument("--chunks", type=int, default=0)
        p.add_argument("--engine", required=True)
        p.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    try:
        return cmd_ppl(args) if args.cmd == "ppl" else cmd_kld(args)
    except (reference.GGUFError, OSError, ValueError, KeyError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
