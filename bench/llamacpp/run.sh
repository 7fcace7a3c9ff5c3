#!/usr/bin/env bash
# bench/llamacpp/run.sh - llama.cpp side by side with ember on this machine.
#
#   bench/llamacpp/run.sh bench MODEL [bench.mjs options]   pp/tg speed, like `ember bench`
#   bench/llamacpp/run.sh serve [WORKDIR]                   bench/serve's load test against llama.cpp
#
# llama.cpp is the engine inside the node-llama-cpp npm package (pinned by
# package-lock.json; `npm install` runs here the first time, from the npm
# registry).  Its prebuilt CPU libraries come in one variant per processor
# generation and the best one for this CPU is loaded; LLAMACPP_CPU=haswell
# (the AVX2 variant) or another variant name keeps only that library, in a
# copy of the package under ${TMPDIR:-/tmp}, so that the AVX2 path can be
# measured on an AVX-512 machine as EMBER_CPU=avx2 does for ember.
#
# serve: starts server.mjs (-m the model bench/serve/run.sh wrote to WORKDIR,
# default ${TMPDIR:-/tmp}/ember-bench-serve, FORMAT Q8_0) with PARALLEL
# sequences (default 64; the bundled llama.cpp failed to create a context
# of 64 x 1024 positions here, so PARALLEL=16 is what was measured) of CTX
# positions (default 1024) and THREADS threads
# (default 2), then runs bench/serve/loadgen.mjs with CONCURRENCY (default
# 1,4,16,64), PROMPT_TOKENS (128) and MAX_TOKENS (128): the same options as
# bench/serve/run.sh, so both tables compare line by line.  Benchmarks are
# not tests: nothing here asserts a time.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
command -v node >/dev/null || { echo "bench/llamacpp: node is needed (apt-get install nodejs npm)" >&2; exit 1; }
if [ ! -d "$HERE/node_modules/node-llama-cpp" ] || [ "$HERE/package-lock.json" -nt "$HERE/node_modules" ]; then
  (cd "$HERE" && npm install --no-audit --no-fund --no-save >/dev/null) && touch "$HERE/node_modules"
fi

# The directory to run the scripts from: this one, or a copy holding one CPU variant.
DIR=$HERE
if [ -n "${LLAMACPP_CPU:-}" ]; then
  DIR=${TMPDIR:-/tmp}/ember-llamacpp-$LLAMACPP_CPU
  if [ ! -d "$DIR/node_modules" ]; then
    mkdir -p "$DIR"
    cp -r "$HERE/node_modules" "$DIR/"
    bins="$DIR/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64"
    [ -f "$bins/libggml-cpu-$LLAMACPP_CPU.so" ] || { echo "bench/llamacpp: no CPU variant $LLAMACPP_CPU in $bins" >&2; rm -rf "$DIR"; exit 1; }
    find "$bins" -name 'libggml-cpu-*.so' ! -name "libggml-cpu-$LLAMACPP_CPU.so" -delete
  fi
  cp "$HERE"/*.mjs "$DIR/"
fi

cmd=${1:-}
shift || true
case "$cmd" in
  bench)
    [ $# -ge 1 ] || { echo "usage: run.sh bench MODEL [options]" >&2; exit 2; }
    m=$1; shift
    exec node "$DIR/bench.mjs" -m "$m" "$@" ;;
  serve)
    WORK=${1:-${TMPDIR:-/tmp}/ember-bench-serve}
    model="$WORK/llama-100m-${FORMAT:-Q8_0}.gguf"
    [ -s "$model" ] || { echo "bench/llamacpp: $model is missing: run bench/serve/run.sh first (it writes the model)" >&2; exit 1; }
    port=${PORT:-$((20000 + RANDOM % 20000))}
    node "$DIR/server.mjs" -m "$model" --port "$port" --parallel "${PARALLEL:-64}" -c "${CTX:-1024}" -t "${THREADS:-2}" >"$WORK/llamacpp-serve.log" 2>&1 &
    pid=$!
    trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
    for _ in $(seq 1 600); do
      curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
      kill -0 $pid 2>/dev/null || { cat "$WORK/llamacpp-serve.log" >&2; exit 1; }
      sleep 0.2
    done
    node "$ROOT/bench/serve/loadgen.mjs" --url "http://127.0.0.1:$port" --model "llama-100m-${FORMAT:-Q8_0}" \
      --concurrency "${CONCURRENCY:-1,4,16,64}" --prompt-tokens "${PROMPT_TOKENS:-128}" --max-tokens "${MAX_TOKENS:-128}" \
      --json "$WORK/llamacpp-serve-bench.json"
    echo "llama.cpp server peak RSS: $(grep VmHWM /proc/$pid/status | awk '{print $2, $3}')" ;;
  *) echo "usage: bench/llamacpp/run.sh bench MODEL [options] | serve [WORKDIR]" >&2; exit 2 ;;
esac
