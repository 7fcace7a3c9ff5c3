#!/bin/sh
# bench/kv/run.sh - KV cache memory of one long sequence on a gemma3-shaped
# model, with layer groups (sliding-window layers keep their window) and
# with every layer keeping every position (the layout before groups).
#
#   bench/kv/run.sh [BUILD_DIR] [N_TOKENS] [THREADS]
#
# The model is generated (random weights): Gemma 3 1B's attention shape
# (26 layers, 5 local : 1 global, window 512, one KV head of 256, F16
# cache) with a tiny residual width so that the run is quick.  Each mode
# runs twice, alternating; kv_mem prints the cache's bytes allocated and in
# use (em_kv_stats), blocks per group, peak RSS and the decode time (the
# time is noisy on a loaded machine; the memory figures are exact).
set -eu
build=${1:-build}
n=${2:-4096}
threads=${3:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$build/gen_model" "$tmp/g3.gguf" gemma3 --n-layer 26 --n-embd 64 --n-head 2 --n-head-kv 1 --head-dim 256 \
    --swa 512 --n-ctx 32768 --n-ff 128 >/dev/null
echo "allocated for a 32768-position context (nothing decoded):"
"$build/kv_mem" "$tmp/g3.gguf" 0 --ctx 32768
"$build/kv_mem" "$tmp/g3.gguf" 0 --ctx 32768 --full
echo "one sequence of $n tokens in a context of $n:"
for run in 1 2; do
    "$build/kv_mem" "$tmp/g3.gguf" "$n" --ctx "$n" --threads "$threads"
    "$build/kv_mem" "$tmp/g3.gguf" "$n" --ctx "$n" --threads "$threads" --full
done
