#!/bin/bash
# test_ppl_ref.sh - `ember eval ppl` and `ember eval kld` against the same
# chunking recomputed in NumPy (tests/ref/ppl_ref.py over reference.py's
# float64 forward pass).
#
# gen_model writes small random-weight models (llama with GQA, qwen2,
# qwen3); a fixed pseudo-random text is tokenized by ember; ember computes
# perplexity (one slice per chunk and several slices per chunk) and KL
# divergence; the reference recomputes them from the token ids.
# Pass: relative error <= 1e-4 with an F32 KV cache, <= 2e-3 with F16.
# With EMBER_TEST_DATA set, stories260K and tiny-256 (F32) on TinyStories
# are checked too.
#
# One line per check; exit 1 on any failure, 77 (skip) when
# /usr/bin/python3 lacks NumPy.

set -u

: "${EMBER_BIN:?EMBER_BIN must point at the ember binary}"
. "$(dirname "$0")/lib.sh"
need_python numpy python3-numpy
need_tools gen_model
REF=$(cd "$(dirname "$0")" && pwd)/ppl_ref.py
fail() { echo "FAIL $*"; failures=$((failures + 1)); }

# A fixed text of about 1500 characters (the built-in vocabulary of
# gen_model is nearly character-level, so about as many tokens).
"$PY" - >"$TMP/text.txt" <<'EOF'
import random
r = random.Random(7)
words = "the a cat dog ran sat on mat big small red blue and then was happy sad tree sun".split()
print(" ".join(r.choice(words) for _ in range(300)))
EOF

# ppl_check LABEL MODEL TEXT CTX CHUNKS TOL [ember options...]; CHUNKS 0: all
ppl_check() {
    local label=$1 model=$2 text=$3 ctx=$4 chunks=$5 tol=$6
    shift 6
    if ! "$EMBER_BIN" tokenize -m "$model" --ids -f "$text" >"$TMP/$label.ids" 2>"$TMP/err"; then
        fail "$label: tokenize: $(tail -1 "$TMP/err")"
        return
    fi
    # CHUNKS 0 means every chunk: no --chunks option at all.
    local chunk_opt=()
    [ "$chunks" -gt 0 ] && chunk_opt=(--chunks "$chunks")
    if ! "$EMBER_BIN" eval ppl -m "$model" -f "$text" -c "$ctx" "${chunk_opt[@]}" --json "$TMP/$label.json" \
        "$@" >"$TMP/out" 2>"$TMP/err"; then
        fail "$label: ember eval ppl: $(tail -1 "$TMP/err")"
        return
    fi
    if ! grep -q '^Final estimate: PPL = ' "$TMP/out"; then
        fail "$label: no 'Final estimate' line"
        return
    fi
    local line
    line=$("$PY" "$REF" ppl "$model" --tokens "$TMP/$label.ids" --ctx "$ctx" --chunks "$chunks" \
        --engine "$TMP/$label.json" --tol "$tol" 2>&1) || fail "$label: $line"
    case $line in ok*) echo "$label: $line" ;; esac
}

# kld_check LABEL BASE MODEL TEXT CTX CHUNKS TOL
kld_check() {
    local label=$1 base=$2 model=$3 text=$4 ctx=$5 chunks=$6 tol=$7
    "$EMBER_BIN" tokenize -m "$base" --ids -f "$text" >"$TMP/$label.ids" 2>/dev/null
    if ! "$EMBER_BIN" eval kld --base "$base" -m "$model" -f "$text" -c "$ctx" --chunks "$chunks" \
        --kv-type f32 --json "$TMP/$label.json" >"$TMP/out" 2>"$TMP/err"; then
        fail "$label: ember eval kld: $(tail -1 "$TMP/err")"
        return
    fi
    local line
    line=$("$PY" "$REF" kld "$base" "$model" --tokens "$TMP/$label.ids" --ctx "$ctx" --chunks "$chunks" \
        --engine "$TMP/$label.json" --tol "$tol" 2>&1) || fail "$label: $line"
    case $line in ok*) echo "$label: $line" ;; esac
}

"$GEN" "$TMP/llama.gguf" llama --seed 3 --n-head 4 --n-head-kv 2 >/dev/null || fail "gen_model llama"
"$GEN" "$TMP/llama2.gguf" llama --seed 4 --n-head 4 --n-head-kv 2 >/dev/null || fail "gen_model llama seed 4"
"$GEN" "$TMP/qwen2.gguf" qwen2 --seed 5 >/dev/null || fail "gen_model qwen2"
"$GEN" "$TMP/qwen3.gguf" qwen3 --seed 6 >/dev/null || fail "gen_model qwen3"

T=$TMP/text.txt
ppl_check llama-f32 "$TMP/llama.gguf" "$T" 32 3 1e-4 --kv-type f32
ppl_check llama-f32-b7 "$TMP/llama.gguf" "$T" 32 3 1e-4 --kv-type f32 -b 7
ppl_check llama-f16 "$TMP/llama.gguf" "$T" 32 3 2e-3
ppl_check llama-c64-all "$TMP/llama.gguf" "$T" 64 0 1e-4 --kv-type f32
ppl_check qwen2-f32 "$TMP/qwen2.gguf" "$T" 32 3 1e-4 --kv-type f32
ppl_check qwen3-f32 "$TMP/qwen3.gguf" "$T" 48 2 1e-4 --kv-type f32 -b 16
kld_check kld-llama "$TMP/llama.gguf" "$TMP/llama2.gguf" "$T" 32 3 1e-4
kld_check kld-self "$TMP/llama.gguf" "$TMP/llama.gguf" "$T" 32 2 1e-4

if [ -n "${EMBER_TEST_DATA:-}" ]; then
    # A real model on its own domain; the TinyStories file is cut to its
    # first 4 KB so the NumPy side stays quick.
    head -c 4000 "$EMBER_TEST_DATA/text/tinystories_val.txt" >"$TMP/ts.txt"
    ppl_check stories260K "$EMBER_TEST_DATA/models/stories260K.gguf" "$TMP/ts.txt" 256 2 1e-4 --kv-type f32
    ppl_check tiny-256-f32 "$EMBER_TEST_DATA/models/tiny-256/tiny-256-f32.gguf" "$TMP/ts.txt" 128 2 1e-4 --kv-type f32
else
    echo "(EMBER_TEST_DATA not set: stories260K check skipped)"
fi

if [ $failures -ne 0 ]; then
    echo "$failures check(s) failed"
    exit 1
fi
echo "all perplexity/KLD reference checks passed"
