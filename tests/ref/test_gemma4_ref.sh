#!/bin/bash
# test_gemma4_ref.sh - ember's gemma4 forward pass (dense and with
# experts) against the independent NumPy reference tests/ref/gemma4_ref.py.
#
# gen_model writes small random-weight gemma4 variants in llama.cpp's
# layout (per-layer KV heads and head sizes, windowed/global pattern,
# rope_freqs on global layers, shared-KV layers, per-layer embeddings,
# keys as values, a dense FFN beside fused or separate experts);
# gemma4_ref.py selftest proves that each feature the variant has moves
# the logits far beyond the tolerance; dump_logits runs ember over 24
# tokens (4 windows of 6) as one batch and as 5 tokens then one at a time,
# and gemma4_ref.py compares both with its own logits (F32 cache).
# Pass: max over positions of max|ember - ref| / max|ref| <= 1e-4.
# With EMBER_TEST_DATA the tiny gemma4 models written by llama.cpp's
# gguf-py are compared too, over 48 tokens (their window is 32).
# Exit 1 on any failure, 77 (skip) when /usr/bin/python3 lacks NumPy.

set -u

. "$(dirname "$0")/lib.sh"
need_python numpy python3-numpy
need_tools gen_model dump_logits
REF=$(cd "$(dirname "$0")" && pwd)/gemma4_ref.py

variant gemma4-dense  gemma4 --n-layer 6 --pattern LLLGLG --head-dim 16 --n-head-kv 2 --rope-freqs \
    --shared-kv 2 --embd-pl 16 --no-v-global --n-ff-shared 384
variant gemma4-moe    gemma4 --n-layer 4 --pattern LLLG --head-dim 16 --n-head-kv 4 --n-head-kv-global 2 \
    --experts 4 --experts-used 2 --n-ff-exp 32 --rope-freqs
variant gemma4-split  gemma4 --n-layer 3 --pattern LGL --head-dim 16 --n-head-kv 2 --experts 6 --experts-used 3 \
    --n-ff-exp 24 --split-exps --embd-pl 8

# A file whose shared-KV layers would read a layer of the other kind is refused.
if "$GEN" "$TMP/bad.gguf" gemma4 --n-layer 6 --pattern LLGLLG --shared-kv 2 --seed 7 >/dev/null 2>&1 &&
    err=$("$DUMP" "$TMP/bad.gguf" 1,2,3 "$TMP/bad.f32" 2>&1); then
    echo "FAIL gemma4-bad-sharing: a layer sharing another kind's KV cache was accepted"
    failures=$((failures + 1))
else
    echo "ok gemma4-bad-sharing: refused: ${err:-gen_model failed}"
fi

if [ -n "${EMBER_TEST_DATA:-}" ]; then
    long=$("$PY" -c "print(','.join(str((1 + 37 * i) % 512) for i in range(48)))")
    for a in gemma4 gemma4-moe; do
        f=$EMBER_TEST_DATA/models/arch/tiny-$a.gguf
        [ -f "$f" ] || continue
        check_engine "tiny-$a" "$f" "$long" || failures=$((failures + 1))
    done
fi
[ "$failures" -eq 0 ] || { echo "$failures check(s) failed"; exit 1; }
exit 0
