#!/usr/bin/env bash
# bench/serve/run.sh [WORKDIR] - ember serve under load: N = 1, 4, 16 and 64
# concurrent streaming clients on a generated Llama-shaped model of about
# 100M parameters, measured by bench/serve/loadgen.mjs; then the server's
# peak resident memory (VmHWM from /proc/PID/status).
#
# The model (dim 768, 6 layers, 12 heads, 4 KV heads, FFN 3072, a
# 32000-token made-up vocabulary: 101M parameters; random weights with a
# fixed seed, since speed does not depend on the values) is written by
# tests/tools/gen_bench_model in F16 and quantized with `ember quantize` to
# FORMAT; it stays in WORKDIR (default ${TMPDIR:-/tmp}/ember-bench-serve,
# never the repository) for the next run.
#
# Environment: EMBER_BUILD (build dir with ember and gen_bench_model;
# default build), FORMAT (F16, Q8_0 (default), Q4_K_M, ...), PARALLEL
# (default 64), CTX (-c, default 1024), THREADS (-t, default: ember's),
# CONCURRENCY (default 1,4,16,64), REQUESTS (per level; default 4 x N, at
# least 8), PROMPT_TOKENS (default 128), MAX_TOKENS (default 128), PORT
# (default: a free one), STEPS (0 skips the step timings at the end),
# TEMPERATURE (the requests' temperature; default the load generator's 0),
# STAGGER (the clients' starts: 0, the default, all together; auto, spread
# over one request; or milliseconds between them: loadgen.mjs --stagger),
# VARY_TOKENS (F: each request's max_tokens uniform in [1 - F, 1 + F] x
# MAX_TOKENS, seeded: loadgen.mjs --vary-tokens; default 0).
# Extra arguments after WORKDIR go to `ember serve`.
#
# To measure another OpenAI-compatible server the same way (llama-server
# with the same --parallel, say), start it on the same model and run
#   node bench/serve/loadgen.mjs --url http://127.0.0.1:PORT --model NAME
# with the same options.  Benchmarks are not tests: nothing here asserts a
# time.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${EMBER_BUILD:-$ROOT/build}
EMBER=${EMBER_BIN:-$BUILD/ember}
GEN=${GEN_BENCH_MODEL:-$BUILD/gen_bench_model}
WORK=${1:-${TMPDIR:-/tmp}/ember-bench-serve}
shift || true
FORMAT=${FORMAT:-Q8_0}
PARALLEL=${PARALLEL:-64}
CTX=${CTX:-1024}
CONCURRENCY=${CONCURRENCY:-1,4,16,64}
PROMPT_TOKENS=${PROMPT_TOKENS:-128}
MAX_TOKENS=${MAX_TOKENS:-128}

for tool in "$EMBER" "$GEN"; do
  [ -x "$tool" ] || { echo "bench/serve/run.sh: $tool is missing; build first (make, or set EMBER_BUILD)" >&2; exit 1; }
done
command -v node >/dev/null || { echo "bench/serve/run.sh: node is needed for the load generator" >&2; exit 1; }
case "$WORK" in "$ROOT"|"$ROOT"/*) echo "bench/serve/run.sh: keep the work dir out of the repository" >&2; exit 1 ;; esac
mkdir -p "$WORK"

# The model: about 100M parameters.
SHAPE=(--n-embd 768 --n-layer 6 --n-head 12 --n-head-kv 4 --n-ff 3072 --n-vocab 32000 --n-ctx 4096)
f16="$WORK/llama-100m-F16.gguf"
if [ ! -s "$f16" ]; then
  echo "== writing $f16"
  "$GEN" "$f16.part" "${SHAPE[@]}" --type f16 --seed 1
  mv "$f16.part" "$f16"
fi
model="$f16"
if [ "$FORMAT" != F16 ]; then
  model="$WORK/llama-100m-$FORMAT.gguf"
  if [ ! -s "$model" ]; then
    echo "== quantizing to $FORMAT"
    "$EMBER" quantize "$f16" "$model.part" "$FORMAT" >"$WORK/quantize-$FORMAT.log"
    mv "$model.part" "$model"
  fi
fi

if [ -z "${PORT:-}" ]; then
  PORT=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
fi
KEY="bench-$RANDOM$RANDOM"
args=(serve -m "$model" --host 127.0.0.1 --port "$PORT" --api-key "$KEY" --parallel "$PARALLEL" -c "$CTX" --chat-template chatml)
[ -n "${THREADS:-}" ] && args+=(-t "$THREADS")
echo "== $EMBER ${args[*]} $*"
"$EMBER" "${args[@]}" "$@" >"$WORK/serve.log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT

for _ in $(seq 1 600); do
  curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  kill -0 $pid 2>/dev/null || { echo "ember serve exited:" >&2; cat "$WORK/serve.log" >&2; exit 1; }
  sleep 0.2
done
name=$(curl -fsS -H "Authorization: Bearer $KEY" "http://127.0.0.1:$PORT/v1/models" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).data[0].id))')

lg=(--url "http://127.0.0.1:$PORT" --model "$name" --api-key "$KEY" --concurrency "$CONCURRENCY"
    --prompt-tokens "$PROMPT_TOKENS" --max-tokens "$MAX_TOKENS" --server-pid "$pid" --ember-metrics --json "$WORK/serve-bench.json")
[ -n "${REQUESTS:-}" ] && lg+=(--requests "$REQUESTS")
[ -n "${TEMPERATURE:-}" ] && lg+=(--temperature "$TEMPERATURE")
[ -n "${STAGGER:-}" ] && lg+=(--stagger "$STAGGER")
[ -n "${VARY_TOKENS:-}" ] && lg+=(--vary-tokens "$VARY_TOKENS")
status=0
node "$ROOT/bench/serve/loadgen.mjs" "${lg[@]}" | tee "$WORK/serve-bench.md" || status=$?

hwm=$(awk '/^VmHWM/ {print $2, $3}' "/proc/$pid/status")
echo
echo "server peak RSS (VmHWM): $hwm"
echo "model: $(basename "$model") ($(du -h "$model" | cut -f1)); --parallel $PARALLEL -c $CTX"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(date -u +%Y-%m-%d)"

# What the model's steps cost without the server (STEPS=0 skips it): one
# prompt step and decode steps of N rows (tests/tools/bench_steps), then
# the compute peaks and the prompt speed `ember bench` measures, so that
# the throughput above can be set against what the cores can do.
if [ "${STEPS:-1}" != 0 ] && [ -x "$BUILD/bench_steps" ]; then
  kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null || true
  echo
  echo "== model steps alone (bench_steps; prompt $PROMPT_TOKENS rows, decode at 200 positions)"
  steps=(--rows "$CONCURRENCY" --prompt "$PROMPT_TOKENS" --ctx 200)
  [ -n "${THREADS:-}" ] && steps+=(--threads "$THREADS")
  "$BUILD/bench_steps" "$model" "${steps[@]}" || status=$?
  echo
  echo "== ember bench -p $PROMPT_TOKENS -n 0 (pp speed, FMA and int8 peaks)"
  bench=(bench -m "$model" -p "$PROMPT_TOKENS" -n 0 -r 3)
  [ -n "${THREADS:-}" ] && bench+=(-t "$THREADS")
  "$EMBER" "${bench[@]}" || status=$?
fi
exit $status
