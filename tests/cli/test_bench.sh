#!/usr/bin/env bash
# Acceptance of `ember bench` on the tiny-256 models: the table has its
# columns and one row per test, the JSON lines carry llama-bench's fields
# and the roofline fields with values that agree with each other, the bytes
# a token streams equal the weights and cache rows the model really has,
# and bad requests fail cleanly.  No check depends on how fast anything is.
. "$(dirname "$0")/lib.sh"
need_data
M="$EMBER_TEST_DATA/models/tiny-256/tiny-256-Q4_K_M.gguf"
M32="$EMBER_TEST_DATA/models/tiny-256/tiny-256-f32.gguf"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# 1. The table: header, rule, one row per (model, threads, test).
if "$EMBER_BIN" bench -m "$M" -m "$M32" -p 32 -n 8 -r 2 -t 1,2 >"$tmp/t.txt" 2>"$tmp/e.txt"; then
  ok "table run"
  head -1 "$tmp/t.txt" | grep -q "^| model  *|  *size |  *params | threads |  *test |  *t/s |  *GFLOP/s |  *GB/s | roofline |$" \
    && ok "table header" || bad "table header: $(head -1 "$tmp/t.txt")"
  sed -n 2p "$tmp/t.txt" | grep -q "^| -*: |\|^| -* | -*: |" && ok "markdown rule" || bad "markdown rule"
  rows=$(grep -c "^| llama " "$tmp/t.txt")
  [ "$rows" -eq 8 ] && ok "8 rows (2 models x 2 thread counts x pp/tg)" || bad "$rows rows"
  grep "^| llama 3M Q4_K_M" "$tmp/t.txt" | grep -q "|  *1 |  *pp32 |" && ok "pp32 row" || bad "no pp32 row"
  grep "^| llama 3M Q4_K_M" "$tmp/t.txt" | grep "tg8 |" | grep -q "[0-9.]* ± [0-9.]* .*%" \
    && ok "tg row has mean ± sd and a roofline share" || bad "tg row"
  grep -q "^read bandwidth (best of 8 passes.*after each tg run): 1 thread [0-9.-]* GB/s, 2 threads [0-9.-]* GB/s" "$tmp/t.txt" \
    && ok "bandwidth line" || bad "bandwidth line"
  grep -q "^bytes per generated token: llama 3M Q4_K_M" "$tmp/t.txt" && ok "bytes per token line" || bad "bytes line"
  grep -q "^compute peak (.* kernels, best of 5 passes, after each pp test), 2 threads: FP32 FMA [0-9.-]* GFLOP/s, int8 dot [0-9.-]* GOP/s$" "$tmp/t.txt" \
    && ok "compute peak line" || bad "compute peak line"
  grep "^| llama 3M Q4_K_M" "$tmp/t.txt" | grep "pp32 |" | grep -q "[0-9.]*% |$" \
    && ok "pp row has a compute roofline share" || bad "pp row share"
else bad "table run: $(tail -1 "$tmp/e.txt")"; fi

# 2. JSON: one object per test, llama-bench's names, consistent values.
"$EMBER_BIN" bench -m "$M" -p 32 -n 8 -r 3 -t 2 -o json >"$tmp/j.txt" 2>"$tmp/e.txt"; rc=$?
[ $rc -eq 0 ] && [ "$(wc -l <"$tmp/j.txt")" -eq 2 ] && ok "json: two lines" || bad "json run (rc $rc)"
"$EMBER_BIN" bench -m "$M" -p 0 -n 8 -r 2 -t 2 -o json --kv-type f32 >"$tmp/j32.txt" 2>"$tmp/e.txt" \
  && [ "$(wc -l <"$tmp/j32.txt")" -eq 1 ] && ok "-p 0 skips pp" || bad "-p 0"
"$EMBER_BIN" bench -m "$M" -p 16 -n 0 -r 1 -o json >"$tmp/jpp.txt" 2>&1 \
  && [ "$(wc -l <"$tmp/jpp.txt")" -eq 1 ] && grep -q '"n_gen":0' "$tmp/jpp.txt" && ok "-n 0 skips tg" || bad "-n 0"

# The bytes a token streams, from the file itself: every matrix but the
# embedding, one embedding row (512 rows), and 4 layers x (K + V rows of 4
# heads x 32 in F16, 256 bytes each) x the average context (8 + 1) / 2.
weights=$("$EMBER_BIN" inspect "$M" | awk '/^tensors:/{t=1; next} t && NF==0 {t=0}
  t && $1 != "name" && $3 ~ /,/ { if ($1 == "token_embd.weight") e = $NF; else s += $NF }
  END { printf "%.0f", s + e / 512 }')
if command -v python3 >/dev/null; then
  python3 - "$tmp/j.txt" "$tmp/j32.txt" "$weights" "$M" <<'EOF' >"$tmp/py.txt" 2>&1
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
f32 = json.loads(open(sys.argv[2]).readline())
weights, path = float(sys.argv[3]), sys.argv[4]
need = ["model_filename", "model_type", "model_size", "model_n_params", "n_threads", "n_prompt", "n_gen",
        "avg_ts", "stddev_ts", "samples_ts", "samples_ns", "avg_ns", "read_bw_gbs", "bytes_per_token",
        "roofline_share", "gflops"]
errs = []
pp, tg = lines
for o in lines:
    for k in need:
        if k not in o: errs.append("missing " + k)
    if o["model_filename"] != path or o["n_threads"] != 2: errs.append("filename/threads")
    if len(o["samples_ts"]) != 3 or len(o["samples_ns"]) != 3: errs.append("3 samples expected")
    mean = sum(o["samples_ts"]) / 3
    if abs(mean - o["avg_ts"]) > 1e-6 * mean: errs.append("avg_ts is not the mean of samples_ts")
    if not o["avg_ts"] > 0 or o["stddev_ts"] < 0: errs.append("bad avg/sd")
    if o["model_type"] != "llama 3M Q4_K_M": errs.append("model_type " + o["model_type"])
    if o["model_n_params"] != 3410176: errs.append("n_params %d" % o["model_n_params"])
if (pp["n_prompt"], pp["n_gen"], tg["n_prompt"], tg["n_gen"]) != (32, 0, 0, 8): errs.append("n_prompt/n_gen")
if not pp["gflops"] > 0 or pp["roofline_share"] is not None: errs.append("pp gflops/roofline")
# pp FLOPs: 2 per layer weight and token, 2 per output weight once, and
# attention over 1..32 positions; the 30 rows beyond the output row and
# its neighbour skip the last layer's Wo and FFN, as the forward pass does.
layer_w = 4 * (256 * 256 * 2 + 256 * 128 * 2 + 3 * 256 * 768)
flops = 2 * layer_w * 32 + 2 * 256 * 512 + 4 * 8 * 2 * 64 * (32 * 33 / 2)
flops -= 30 * 2 * (256 * 256 + 3 * 256 * 768)
if abs(pp["gflops"] - flops * pp["avg_ts"] / 32 / 1e9) > 1e-6 * pp["gflops"]: errs.append("pp gflops formula")
if not tg["read_bw_gbs"] > 0: errs.append("no bandwidth")
want = weights + 4.5 * 4 * 512
if abs(tg["bytes_per_token"] - want) > 1: errs.append("bytes_per_token %f, want %f" % (tg["bytes_per_token"], want))
share = tg["avg_ts"] * tg["bytes_per_token"] / (tg["read_bw_gbs"] * 1e9)
if abs(share - tg["roofline_share"]) > 1e-6 * share: errs.append("roofline_share inconsistent")
if abs(f32["bytes_per_token"] - tg["bytes_per_token"] - 4.5 * 4 * 512) > 1: errs.append("f32 KV bytes")
if f32.get("type_k") != "f32": errs.append("type_k")
# The compute roofline: measured peaks on the pp row (a Q4_K_M model is
# held to the int8 one), nothing on the tg row.
if not (pp["fma_peak_gflops"] > 0 and pp["int8_peak_gops"] > 0) or pp["compute_peak"] != "int8":
    errs.append("pp compute peaks")
elif abs(pp["compute_share"] - pp["gflops"] / pp["int8_peak_gops"]) > 1e-6 * pp["compute_share"]:
    errs.append("compute_share inconsistent")
if any(tg[k] is not None for k in ("fma_peak_gflops", "int8_peak_gops", "compute_peak", "compute_share")):
    errs.append("tg row carries compute peaks")
print("\n".join(errs) if errs else "fine")
EOF
  [ "$(cat "$tmp/py.txt")" = fine ] && ok "json fields and values (bytes/token = $weights + KV)" \
    || { bad "json checks:"; cat "$tmp/py.txt"; }
else
  skipped="the JSON checks (no python3)"
fi

# 3. The benchmark pipeline in small: gen_bench_model writes a Llama-shaped
#    F16 model (same seed, same bytes), quantize converts it, bench runs it.
GEN="${EMBER_TOOLS_DIR:-}/gen_bench_model"
if [ -x "$GEN" ]; then
  small=(--n-embd 256 --n-layer 2 --n-head 4 --n-head-kv 2 --n-ff 512 --n-vocab 1000)
  "$GEN" "$tmp/g1.gguf" "${small[@]}" && "$GEN" "$tmp/g2.gguf" "${small[@]}" && "$GEN" "$tmp/g3.gguf" "${small[@]}" --seed 2 \
    && cmp -s "$tmp/g1.gguf" "$tmp/g2.gguf" && ! cmp -s "$tmp/g1.gguf" "$tmp/g3.gguf" \
    && ok "gen_bench_model: fixed seed, fixed bytes" || bad "gen_bench_model determinism"
  "$EMBER_BIN" inspect "$tmp/g1.gguf" >"$tmp/i.txt"
  grep -q "^  blk.1.ffn_down.weight  *F16  *\[512, 256\]" "$tmp/i.txt" && grep -q "^  blk.1.ffn_norm.weight  *F32 " "$tmp/i.txt" \
    && grep -q "^  output.weight  *F16  *\[256, 1000\]" "$tmp/i.txt" && grep -q "attention.head_count_kv  *u32  *2$" "$tmp/i.txt" \
    && ok "gen_bench_model: shapes and types" || bad "gen_bench_model shapes"
  if "$EMBER_BIN" quantize "$tmp/g1.gguf" "$tmp/g-q4.gguf" Q4_0 >/dev/null 2>"$tmp/e.txt" \
     && "$EMBER_BIN" bench -m "$tmp/g-q4.gguf" -p 16 -n 4 -r 1 -t 1 >"$tmp/g.txt" 2>"$tmp/e.txt" \
     && grep -q "^| llama .* Q4_0 .* tg4 |" "$tmp/g.txt"; then ok "generated model quantized and benchmarked"
  else bad "pipeline: $(tail -1 "$tmp/e.txt")"; fi
  "$GEN" "$tmp/bad.gguf" --n-embd 100 --n-head 3 >/dev/null 2>&1; [ $? -eq 2 ] && ok "gen_bench_model rejects bad sizes" \
    || bad "gen_bench_model bad sizes"
else
  echo "note: EMBER_TOOLS_DIR has no gen_bench_model; pipeline not checked"
fi

# 4. Bad requests: one line; exit 2 for usage, 1 for a bad model.
head -c 4000 "$M" >"$tmp/trunc.gguf"
one_line 2 "no model" "$EMBER_BIN" bench -p 8
one_line 2 "bad -p" "$EMBER_BIN" bench -m "$M" -p 8,x
one_line 2 "bad -r" "$EMBER_BIN" bench -m "$M" -r 0
one_line 2 "bad -o" "$EMBER_BIN" bench -m "$M" -o xml
one_line 2 "bad --kv-type" "$EMBER_BIN" bench -m "$M" --kv-type q1
one_line 2 "unknown option" "$EMBER_BIN" bench -m "$M" --bogus 1
one_line 1 "missing model" "$EMBER_BIN" bench -m /nonexistent.gguf -p 8 -n 0
one_line 1 "truncated model" "$EMBER_BIN" bench -m "$tmp/trunc.gguf" -p 8 -n 0
one_line 2 "bad --mmap" "$EMBER_BIN" bench -m "$M" --mmap 2 -p 8
one_line 2 "too many -t values" "$EMBER_BIN" bench -m "$M" -t 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17
# On/off options take every spelling (llama-bench's and llama-cli's).
for spelling in "--mmap 0" "-mmp 0" "--mmap=0" "--no-mmap" "--mmap"; do
  "$EMBER_BIN" bench -m "$M" -p 8 -n 0 -r 1 -t 1 $spelling >/dev/null 2>"$tmp/e.txt" && ok "bench $spelling" \
    || bad "bench $spelling: $(cat "$tmp/e.txt")"
done
"$EMBER_BIN" bench --help | grep -q -- "--n-prompt" && ok "--help" || bad "--help"

# What could not be checked here makes the whole test a skip, not a pass.
finish
