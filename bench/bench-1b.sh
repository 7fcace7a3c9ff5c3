#!/usr/bin/env bash
# bench-1b.sh [WORKDIR] - ember's CPU speed on Llama-shaped models of 1.0B
# and 134M parameters, in the formats llama.cpp's reference figures use.
#
# Writes each model in F16 with random weights (fixed seed; speed does not
# depend on the values), quantizes it with `ember quantize`, and prints
# `ember bench` tables (pp128, pp512, tg32; 2 threads and 1 thread) with
# the roofline columns, once per kernel set in CPUSETS: the best set this
# CPU runs (avx512 here) and EMBER_CPU=avx2, the path of machines without
# AVX-512.  Models and logs stay in WORKDIR (default
# ${TMPDIR:-/tmp}/ember-bench, never the repository) and are reused by the
# next run; the tables are also saved there as bench-SIZE-CPUSET.md
# (bench-1b-avx512.md, bench-134m-avx2.md, ...).
#
# Environment: EMBER_BUILD (build dir holding ember and gen_bench_model;
# default build), THREADS (default 2,1), REPS (default 5), SIZES (default
# "1b 134m"), MMAP (default 0: the models are read into memory, see below),
# PROMPTS (default 128,512), CPUSETS (default "avx512 avx2"; "avxvnni"
# too where the CPU has AVX-VNNI), BENCH_ARGS (more `ember bench`
# options, say --no-repack to measure without the packed weights),
# FORMATS (default "F16 Q8_0 Q6_K Q4_K_M Q4_0"; add Q5_K_M for the
# Q5_K_M models, which llama.cpp's reference figures lack).
#
# The models are read into memory rather than mapped (ember bench --mmap 0)
# because a kernel that reclaims cold page-cache pages proactively (as the
# VMs these figures were taken on do) drops parts of a mapped 2 GB model
# between tokens, and generation then measures the disk.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${EMBER_BUILD:-$ROOT/build}
EMBER=${EMBER_BIN:-$BUILD/ember}
GEN=${GEN_BENCH_MODEL:-$BUILD/gen_bench_model}
WORK=${1:-${TMPDIR:-/tmp}/ember-bench}
THREADS=${THREADS:-2,1}
REPS=${REPS:-5}
SIZES=${SIZES:-1b 134m}
MMAP=${MMAP:-0}
PROMPTS=${PROMPTS:-128,512}
CPUSETS=${CPUSETS:-avx512 avx2}
BENCH_ARGS=${BENCH_ARGS:-}

for tool in "$EMBER" "$GEN"; do
  if [ ! -x "$tool" ]; then
    echo "bench-1b.sh: $tool is missing; build first (make, or set EMBER_BUILD)" >&2
    exit 1
  fi
done
case "$WORK" in "$ROOT"|"$ROOT"/*) echo "bench-1b.sh: keep the work dir out of the repository" >&2; exit 1 ;; esac
mkdir -p "$WORK"

# The formats each size is measured in (by default the ones with reference figures).
formats() { case $1 in 1b|134m) echo "${FORMATS:-F16 Q8_0 Q6_K Q4_K_M Q4_0}" ;; esac; }

for size in $SIZES; do
  f16="$WORK/llama-$size-F16.gguf"
  if [ ! -s "$f16" ]; then
    echo "== writing $f16"
    "$GEN" "$f16.part" --preset "$size" --type f16 --seed 1
    mv "$f16.part" "$f16"
  fi
  models=()
  for q in $(formats "$size"); do
    out="$WORK/llama-$size-$q.gguf"
    if [ "$q" != F16 ] && [ ! -s "$out" ]; then
      echo "== quantizing to $q (log: $WORK/quantize-$size-$q.log)"
      "$EMBER" quantize "$f16" "$out.part" "$q" -t "$(nproc)" >"$WORK/quantize-$size-$q.log"
      mv "$out.part" "$out"
      tail -2 "$WORK/quantize-$size-$q.log"
    fi
    models+=(-m "$out")
  done
  for cpu in $CPUSETS; do
    echo "== ember bench, $size, EMBER_CPU=$cpu: -p $PROMPTS -n 32 -t $THREADS -r $REPS --mmap $MMAP $BENCH_ARGS"
    # shellcheck disable=SC2086 # BENCH_ARGS is a list of options
    EMBER_CPU=$cpu "$EMBER" bench "${models[@]}" -p "$PROMPTS" -n 32 -t "$THREADS" -r "$REPS" --mmap "$MMAP" \
      $BENCH_ARGS | tee "$WORK/bench-$size-$cpu.md"
    echo
  done
done
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(date -u +%Y-%m-%d)"
