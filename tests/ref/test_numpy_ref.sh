#!/bin/bash
# test_numpy_ref.sh - ember's forward pass against the independent NumPy
# reference (tests/ref/reference.py).
#
# For each model variant: gen_model writes a small random-weight F32 model,
# reference.py selftest proves that the variant's feature (RoPE style, GQA
# mapping, rope_freqs, sliding window, biases, Q/K norm ...) moves the
# logits far beyond the tolerance, dump_logits runs ember over a fixed token
# sequence twice (whole sequence in one batch, and 5 tokens then one token
# per batch), and reference.py compares both dumps with its own logits.
# Pass: max over positions of max|ember - ref| / max|ref| <= 1e-4.
#
# With EMBER_TEST_DATA set it also checks the reference itself against a
# real model: greedy decoding of stories260K from BOS must reproduce the
# first ids of the reference C implementation's output; and ember's logits
# on that model must match the reference's.
#
# One line per check; exit 1 on any failure, 77 (skip) when
# /usr/bin/python3 lacks NumPy.  Tools come from $EMBER_TOOLS_DIR.

set -u

. "$(dirname "$0")/lib.sh"
need_python numpy python3-numpy
need_tools gen_model dump_logits
REF=$(cd "$(dirname "$0")" && pwd)/reference.py

variant llama           llama
variant llama-gqa-tied  llama --n-embd 128 --n-head 8 --n-head-kv 2 --tied
variant llama3-rope     llama --n-embd 128 --n-head 4 --n-head-kv 2 --rope-freqs
variant llama-linear    llama --rope-linear 4
variant llama-swa       llama --swa 6
variant qwen2           qwen2 --n-head-kv 2 --tied
variant qwen3           qwen3 --head-dim 32 --n-head-kv 2
variant qwen3-yarn      qwen3 --head-dim 32 --n-head-kv 2 --rope-yarn 4
variant llama-moe       llama --n-head-kv 2 --experts 4 --experts-used 2
variant qwen3moe        qwen3moe --head-dim 32 --n-head-kv 2 --experts 6 --experts-used 3
variant gemma2          gemma2 --head-dim 32 --n-head-kv 2 --swa 6
variant gemma3          gemma3 --n-layer 6 --head-dim 32 --n-head-kv 1 --swa 6
variant llama4          llama4 --n-layer 4 --n-head-kv 2 --experts 4 --experts-used 1 --chunk 8 --rope-freqs
variant llama4-top2     llama4 --n-layer 4 --n-head-kv 2 --experts 6 --experts-used 2 --chunk 5 --moe-step 1

# The reference against a real model and a real implementation's output.
if [ -n "${EMBER_TEST_DATA:-}" ] && [ -f "$EMBER_TEST_DATA/models/stories260K.gguf" ]; then
    S=$EMBER_TEST_DATA/models/stories260K.gguf
    IDS=$EMBER_TEST_DATA/models/stories260K.greedy-ids.txt
    if out=$("$PY" "$REF" greedy "$S" --n 20 --expect "$IDS" 2>&1); then
        echo "PASS stories260K-reference: the reference reproduces the first 20 greedy ids of llama2.c"
    else
        echo "FAIL stories260K-reference: $out"
        failures=$((failures + 1))
    fi
    # BOS and the first 19 greedy ids: ember on a real pretrained model.
    real=1,$(tr -s ' \n' ',' < "$IDS" | cut -d, -f1-19)
    check_engine stories260K "$S" "$real" || failures=$((failures + 1))
    # The tiny models of other architectures that llama.cpp's gguf-py wrote
    # (float ones: the reference reads no quantized types).
    for a in qwen2 qwen3 qwen3-yarn gemma2 gemma3 llama-moe qwen3moe llama4; do
        f=$EMBER_TEST_DATA/models/arch/tiny-$a.gguf
        [ -f "$f" ] || continue
        check_engine "tiny-$a" "$f" "$TOKENS" || failures=$((failures + 1))
    done
    # The encoders (not causal: one batch only; a split would change what
    # the first rows see).  The rows are compared through the tied
    # projection, and `ember embed`'s pooled, normalised vector against the
    # reference's.
    for a in bert nomic-bert; do
        f=$EMBER_TEST_DATA/models/arch/tiny-$a.gguf
        [ -f "$f" ] && [ -n "${EMBER_BIN:-}" ] || continue
        text="The cat sat on the mat, and then it slept."
        ids=$("$EMBER_BIN" tokenize -m "$f" -p "$text" --ids | tr -d '[] ')
        if ! out=$("$PY" "$REF" selftest "$f" --tokens "$ids" 2>&1); then
            echo "FAIL tiny-$a: the reference does not depend on its features:"
            echo "$out" | sed 's/^/    /'
            failures=$((failures + 1))
        fi
        if "$DUMP" "$f" "$ids" "$TMP/$a.f32" >/dev/null 2>&1; then
            "$PY" "$REF" compare "$f" --tokens "$ids" --label "tiny-$a" --engine "$TMP/$a.f32" ||
                failures=$((failures + 1))
        else
            echo "FAIL tiny-$a: dump_logits failed"
            failures=$((failures + 1))
        fi
        "$EMBER_BIN" embed -m "$f" -p "$text" -t 2 | tr -d '[],' > "$TMP/$a.emb"
        "$PY" "$REF" pool "$f" --tokens "$ids" > "$TMP/$a.ref"
        if "$PY" -c 'import sys, numpy as np
a = np.loadtxt(sys.argv[1]); b = np.loadtxt(sys.argv[2])
err = np.abs(a - b).max()
print("%s tiny-%s embedding: %d dims, norm %.6f, max |ember - ref| %.2e; tol 1e-4 (float32 rows, mean-pooled)"
      % ("PASS" if err <= 1e-4 and a.size == b.size else "FAIL", sys.argv[3], a.size, np.linalg.norm(a), err))
sys.exit(0 if err <= 1e-4 and a.size == b.size else 1)' "$TMP/$a.emb" "$TMP/$a.ref" "$a"; then :; else
            failures=$((failures + 1))
        fi
    done
else
    echo "SKIP stories260K: EMBER_TEST_DATA is not set"
fi

if [ "$failures" -ne 0 ]; then
    echo "$failures check(s) failed"
    exit 1
fi
exit 0
