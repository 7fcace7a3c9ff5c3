#!/usr/bin/env bash
# test_inspect.sh - `ember inspect` on a real model and on broken input.
#
# Needs $EMBER_BIN (the ember program) and $EMBER_TEST_DATA (skips with 77
# when that is unset).  Checks the report's facts for stories260K, the
# JSON form, --tensor, and that a truncated file, a missing file and bad
# usage give the documented exit codes with a one-line error.
. "$(dirname "$0")/lib.sh"
need_data
model="$EMBER_TEST_DATA/models/stories260K.gguf"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- the report ---
exits 0 "inspect stories260K" "$EMBER_BIN" inspect "$model"
has "$tmp/out" '^gguf version: 3$'
has "$tmp/out" '^alignment: 32$'
has "$tmp/out" '^metadata: 19 keys$'
has "$tmp/out" 'general\.architecture +str +"llama"$'
has "$tmp/out" 'llama\.embedding_length +u32 +64$'
has "$tmp/out" 'llama\.attention\.layer_norm_rms_epsilon +f32 +1e-05$'
has "$tmp/out" 'tokenizer\.ggml\.tokens +arr\[str,512\] +\["<unk>", "<s>", "</s>", .*\.\.\. \(512 total\)\]$'
has "$tmp/out" '^tensors: 48$'
has "$tmp/out" 'token_embd\.weight +F32 +\[64, 512\] +0 +131072$'
has "$tmp/out" 'blk\.4\.ffn_norm\.weight +F32 +\[64\] +1170944 +256$'
has "$tmp/out" '^  arch +llama$'
has "$tmp/out" '^  n_embd +64$'
has "$tmp/out" '^  n_layer +5$'
has "$tmp/out" '^  n_head +8$'
has "$tmp/out" '^  n_head_kv +4$'
has "$tmp/out" '^  n_ff +172$'
has "$tmp/out" '^  n_vocab +512$'
has "$tmp/out" '^  n_ctx_train +2048$'
has "$tmp/out" '^  n_params +292800 '
has "$tmp/out" '^  file_size +1185376 bytes$'
has "$tmp/out" '^  bpw +32\.00$'
# The architecture as ember runs it: layer pattern, experts, active
# parameters (where the tiny architecture models are present).
has "$tmp/out" '^  layers +GGGGG  \(5 layers, all global\)$'

# A quantized model: the summary's bits per weight drop below 8.
exits 0 "inspect Q4_0" "$EMBER_BIN" inspect "$EMBER_TEST_DATA/models/tiny-256/tiny-256-Q4_0.gguf"
has "$tmp/out" 'Q4_0 +\[256, 256\]'
has "$tmp/out" '^  bpw +[4-5]\.[0-9][0-9]$'

arch="$EMBER_TEST_DATA/models/arch"
if [ -f "$arch/tiny-gemma3.gguf" ] && [ -f "$arch/tiny-qwen3moe.gguf" ]; then
    exits 0 "inspect gemma3" "$EMBER_BIN" inspect "$arch/tiny-gemma3.gguf"
    has "$tmp/out" '^  layers +LLLLLG  \(6 layers: 5 local with a window of 32, 1 global\)$'
    has "$tmp/out" '^  rope \(local\) .*base 10000$'
    exits 0 "inspect qwen3moe" "$EMBER_BIN" inspect "$arch/tiny-qwen3moe.gguf"
    has "$tmp/out" '^  ffn +SwiGLU experts: 4, 2 used per token'
    has "$tmp/out" '^  parameters +1\.31M total, 921\.22K active per token$'
    exits 0 "inspect llama4" "$EMBER_BIN" inspect "$arch/tiny-llama4.gguf"
    has "$tmp/out" '^  layers +CcCn  \(4 layers: 3 chunked attention \(chunks of 8192 positions\), 1 global, 1 of them without RoPE \(NoPE\); lower case: 2 layers with experts\)$'
    has "$tmp/out" '^  temperature +NoPE layers scale Q by 1 \+ 0\.1 \* log'
    has "$tmp/out" '^  ffn +SwiGLU experts: 4, 1 used per token \(sigmoid top-1, weight on the expert.s input\), width 128, plus 1 shared expert; dense layers width 512$'
    has "$tmp/out" '^  parameters +1\.21M total, 919\.70K active per token$'
    exits 0 "inspect bert" "$EMBER_BIN" inspect "$arch/tiny-bert.gguf"
    has "$tmp/out" '^  layers +NN  \(2 layers, all global\)$'
    has "$tmp/out" '^  output +encoder \(attention not causal\), mean pooling'
fi

# --- JSON ---
exits 0 "inspect --json" "$EMBER_BIN" inspect "$model" --json
if command -v python3 > /dev/null; then
    check "the JSON report's facts" 'python3 - "$tmp/out" <<"EOF"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["version"] == 3, d["version"]
assert d["metadata"]["general.architecture"]["value"] == "llama"
assert d["metadata"]["llama.block_count"] == {"type": "u32", "value": 5}
assert len(d["tensors"]) == 48
t = d["tensors"][0]
assert t["name"] == "token_embd.weight" and t["shape"] == [64, 512] and t["type"] == "F32"
s = d["summary"]
assert s["n_embd"] == 64 and s["n_layer"] == 5 and s["n_vocab"] == 512, s
EOF'
else
    has "$tmp/out" '"general.architecture"'
    skipped="the JSON checks (no python3)"
fi

# --- one tensor's values ---
exits 0 "inspect --tensor" "$EMBER_BIN" inspect "$model" --tensor output_norm.weight
has "$tmp/out" '^# output_norm\.weight F32 \[64\]$'
check "--tensor: 64 values on the row" '[ "$(sed -n 2p "$tmp/out" | wc -w)" -eq 64 ]'
exits 0 "inspect --tensor --limit" "$EMBER_BIN" inspect "$model" --tensor token_embd.weight --limit 70
check "--limit 70: 70 values on 2 rows" '[ "$(grep -v "^#" "$tmp/out" | wc -w)" -eq 70 ] && [ "$(grep -vc "^#" "$tmp/out")" -eq 2 ]'
has "$tmp/out" '^# \.\.\. 70 of 32768 values shown$'
one_line 1 "absent tensor" "$EMBER_BIN" inspect "$model" --tensor no.such.tensor
has "$tmp/one_line.err" "no tensor named 'no\.such\.tensor'"

# --- broken input ---
head -c 5000 "$model" > "$tmp/cut.gguf"
one_line 1 "truncated file" "$EMBER_BIN" inspect "$tmp/cut.gguf"
has "$tmp/one_line.err" 'gguf: .*runs past end of file'
exits 1 "truncated file, stdout" "$EMBER_BIN" inspect "$tmp/cut.gguf"
check "truncated file: nothing on stdout" '[ ! -s "$tmp/out" ]'

head -c 1185300 "$model" > "$tmp/cut2.gguf"
one_line 1 "file cut in the tensor data" "$EMBER_BIN" inspect "$tmp/cut2.gguf"
has "$tmp/one_line.err" "tensor 'blk\.4\.ffn_norm\.weight': data \[offset [0-9]+, 256 bytes\] runs past end of file \(size 1185300\)"

printf 'not a gguf file\n' > "$tmp/text.gguf"
one_line 1 "text file" "$EMBER_BIN" inspect "$tmp/text.gguf"
has "$tmp/one_line.err" 'not a GGUF file'
one_line 1 "missing file" "$EMBER_BIN" inspect "$tmp/missing.gguf"

# --- usage ---
exits 2 "no file" "$EMBER_BIN" inspect
exits 2 "unknown option" "$EMBER_BIN" inspect "$model" --bogus
exits 2 "--tensor without a name" "$EMBER_BIN" inspect "$model" --tensor
exits 2 "negative --limit" "$EMBER_BIN" inspect "$model" --tensor x --limit -4
exits 0 "--help" "$EMBER_BIN" inspect --help
has "$tmp/out" '^usage: ember inspect'

finish
