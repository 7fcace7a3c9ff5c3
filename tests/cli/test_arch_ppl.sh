#!/usr/bin/env bash
# test_arch_ppl.sh - every tiny model of $EMBER_TEST_DATA/models/arch loads
# and scores a sensible perplexity on TinyStories, or is refused with a
# one-line "not supported" message.
#
# The models have random weights and stories260K's 512-token vocabulary,
# so a correct forward pass gives a perplexity near the vocabulary size:
# finite, above 1, and well below what a broken pass (NaN, inf, or logits
# that saturate on one token) produces.  The bound is 2 x 512.  Each line
# printed is "ARCH PPL" for the report; refused models print "ARCH refused".
# The encoders (bert, nomic-bert) have no perplexity: `ember embed` must
# give the same unit vector twice.
# The first 4 chunks of 128 tokens keep it quick.
. "$(dirname "$0")/lib.sh"
need_data
dir="$EMBER_TEST_DATA/models/arch"
text="$EMBER_TEST_DATA/text/tinystories_val.txt"
if [ ! -d "$dir" ] || [ ! -f "$text" ]; then
    echo "SKIP: $dir or $text is missing"
    exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Architectures ember runs; the others must be refused cleanly.
supported=" qwen2 qwen3 qwen3-Q8_0 qwen3-Q4_K_M qwen3-yarn gemma2 gemma3 gemma4 gemma4-moe llama-moe llama-moe-Q8_0 llama-moe-Q4_K_M qwen3moe llama4 "
for f in "$dir"/tiny-*.gguf; do
    name=$(basename "$f" .gguf)
    name=${name#tiny-}
    "$EMBER_BIN" eval ppl -m "$f" -f "$text" -c 128 --chunks 4 -t 2 >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ "$name" = bert ] || [ "$name" = nomic-bert ]; then
        "$EMBER_BIN" embed -m "$f" -p "Once upon a time" -t 2 >"$tmp/e1" 2>"$tmp/err" &&
            "$EMBER_BIN" embed -m "$f" -p "Once upon a time" -t 1 >"$tmp/e2" 2>>"$tmp/err"
        rc=$?
        norm=$(tr -d '[],' <"$tmp/e1" | awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i * $i; printf "%.4f %d", sqrt(s), NF }')
        if [ "$rc" -eq 0 ] && cmp -s "$tmp/e1" "$tmp/e2" && [ "${norm% *}" = "1.0000" ]; then
            ok "$name embedding: $norm (norm, dims), deterministic"
        else
            bad "$name: ember embed exit $rc, norm/dims $norm: $(head -2 "$tmp/err")"
        fi
        continue
    fi
    if [[ "$supported" == *" $name "* ]]; then
        ppl=$(sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' "$tmp/out" "$tmp/err" | head -1)
        if [ "$rc" -ne 0 ] || [ -z "$ppl" ]; then
            bad "$name: exit $rc: $(tail -1 "$tmp/err")"
        elif awk -v p="$ppl" 'BEGIN { exit !(p > 1 && p < 1024) }'; then
            ok "$name $ppl"
        else
            bad "$name: perplexity $ppl is not sensible for a 512-token vocabulary"
        fi
    else
        if [ "$rc" -ne 0 ] && grep -q "not supported" "$tmp/err" && [ "$(grep -c . "$tmp/err")" -eq 1 ]; then
            ok "$name refused: $(cat "$tmp/err")"
        else
            bad "$name: expected a one-line 'not supported' refusal, got exit $rc: $(head -3 "$tmp/err")"
        fi
    fi
done
# llama4 beyond its first attention chunk: llama.cpp's chunk (and the
# temperature floor of the NoPE layers) is 8192 positions, beyond the tiny
# file's context_length of 512, so a copy of the file with that key raised
# to 16384 (patched in place: same size) scores one chunk of 8320 tokens.
# Its second half crosses position 8192, where the chunked layers start
# a new chunk and the NoPE layers' temperature first rises above 1.
# (The slowest check here: about 5 s of CPU.)
f="$dir/tiny-llama4.gguf"
if [ -f "$f" ] && command -v python3 >/dev/null; then
    python3 - "$f" "$tmp/llama4-long.gguf" <<'PY'
import struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
key = b"llama4.context_length"
i = b.find(struct.pack("<Q", len(key)) + key) + 8 + len(key)
assert struct.unpack_from("<I", b, i)[0] == 4, "context_length is not a u32"
struct.pack_into("<I", b, i + 4, 16384)
open(sys.argv[2], "wb").write(b)
PY
    "$EMBER_BIN" eval ppl -m "$tmp/llama4-long.gguf" -f "$text" -c 8320 --chunks 1 -t 2 >"$tmp/out" 2>"$tmp/err"
    rc=$?
    ppl=$(sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' "$tmp/out" "$tmp/err" | head -1)
    if [ "$rc" -eq 0 ] && [ -n "$ppl" ] && awk -v p="$ppl" 'BEGIN { exit !(p > 1 && p < 1024) }'; then
        ok "llama4 (ctx 8320, past the 8192-position chunk) $ppl"
    else
        bad "llama4 at ctx 8320: exit $rc, perplexity '$ppl': $(tail -1 "$tmp/err")"
    fi
fi
finish
