#!/usr/bin/env bash
# f16-ab.sh BUILD_A BUILD_B [MODEL] - F16 prompt processing of two builds
# side by side: `ember bench` pp128 and pp512 of each build in turn
# (A B A B ...), 2 threads and 1 thread, printing tokens per second and the
# share of the machine's FP32 FMA peak that ember bench measures after
# each test (its roofline column).  Alternating pairs are what to compare
# on a machine whose speed drifts; about 2-3 minutes on a quiet 2-core
# machine with the 1.1B model.
#
# MODEL defaults to ${TMPDIR:-/tmp}/ember-bench/llama-1b-F16.gguf (written
# by bench/bench-1b.sh).  Environment: PAIRS (default 2), THREADS
# (default "2 1"), PROMPTS (default 128,512), CPUSET (empty: the best set;
# avx2: EMBER_CPU=avx2).
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 BUILD_A BUILD_B [MODEL]" >&2
    exit 2
fi
A=$1 B=$2
MODEL=${3:-${TMPDIR:-/tmp}/ember-bench/llama-1b-F16.gguf}
PAIRS=${PAIRS:-2} THREADS=${THREADS:-"2 1"} PROMPTS=${PROMPTS:-128,512}
for b in "$A" "$B"; do
    [ -x "$b/ember" ] || { echo "f16-ab: no $b/ember" >&2; exit 2; }
done
[ -f "$MODEL" ] || { echo "f16-ab: no model $MODEL (bench/bench-1b.sh writes it)" >&2; exit 2; }
run() { # build threads
    if [ -n "${CPUSET:-}" ]; then export EMBER_CPU=$CPUSET; fi
    "$1/ember" bench -m "$MODEL" -p "$PROMPTS" -n 0 -r 2 --mmap 0 -t "$2" 2>/dev/null |
        awk -v b="$1" -v t="$2" -F'|' '/ pp[0-9]/ {
            gsub(/ /, "", $6); gsub(/ /, "", $10); split($7, v, " ");
            printf "%-40s t=%s %-6s %8s t/s  %s of FMA peak\n", b, t, $6, v[1], $10 }'
}
for t in $THREADS; do
    for i in $(seq "$PAIRS"); do
        run "$A" "$t"
        run "$B" "$t"
    done
done
