#!/usr/bin/env bash
# moe.sh [WORKDIR] - generation and prompt speed of a mixture-of-experts
# model of about 1B total parameters next to a dense model with the same
# active parameters, with `ember bench`'s active-bytes roofline.
#
#   MoE:   dim 1024, 16 layers, 16 heads (4 KV), 8 experts of width 2304,
#          2 used per token: 1.01B total, 0.33B active
#   dense: the same with one FFN of width 4608 (2 x 2304): 0.33B
# Both have a 32000-token vocabulary and random weights (speed does not
# depend on the values); written in F16 by gen_bench_model, then quantized
# with `ember quantize` to TYPE.  The models stay in WORKDIR (default
# ${TMPDIR:-/tmp}/ember-bench-moe, never the repository) and are reused.
#
# The two models are measured alternately, ROUNDS times each, one
# `ember bench` process per round (-r 2 inside), so that a machine busy
# with other work slows both alike; the table gives the median of the
# rounds' averages, and the MoE/dense ratio.  At equal active bytes a
# bandwidth-bound generation should run at the same speed: the ratio says
# how much MoE execution loses.
#
# Environment: EMBER_BUILD (build dir with ember and gen_bench_model;
# default build), EMBER_BIN (another ember binary to measure, e.g. an older
# build to compare), TYPE (default Q8_0; Q4_0 works too), THREADS (default
# 2), ROUNDS (default 5), MMAP (default 0: read into memory; 1 maps the
# file, which on a VM that reclaims cold page cache penalises the MoE model,
# whose idle experts go cold), PP (default 64), TG (default 32).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${EMBER_BUILD:-$ROOT/build}
EMBER=${EMBER_BIN:-$BUILD/ember}
GEN=${GEN_BENCH_MODEL:-$BUILD/gen_bench_model}
WORK=${1:-${TMPDIR:-/tmp}/ember-bench-moe}
TYPE=${TYPE:-Q8_0}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-5}
MMAP=${MMAP:-0}
PP=${PP:-64}
TG=${TG:-32}

for tool in "$EMBER" "$GEN"; do
  if [ ! -x "$tool" ]; then
    echo "moe.sh: $tool is missing; build first (make, or set EMBER_BUILD)" >&2
    exit 1
  fi
done
command -v python3 >/dev/null || { echo "moe.sh: python3 is needed for the medians" >&2; exit 1; }
case "$WORK" in "$ROOT"|"$ROOT"/*) echo "moe.sh: keep the work dir out of the repository" >&2; exit 1 ;; esac
mkdir -p "$WORK"

shape=(--n-embd 1024 --n-layer 16 --n-head 16 --n-head-kv 4 --n-vocab 32000)
make_model() { # NAME GEN_ARGS...
  local name=$1 out="$WORK/$1-$TYPE.gguf"
  shift
  if [ ! -s "$out" ]; then
    echo "== writing $out"
    "$GEN" "$WORK/$name-F16.gguf" "${shape[@]}" "$@" --type f16 --seed 1
    "$EMBER" quantize -t "$(nproc)" "$WORK/$name-F16.gguf" "$out.part" "$TYPE" >"$WORK/quantize-$name.log"
    mv "$out.part" "$out"
    rm -f "$WORK/$name-F16.gguf"
  fi
}
make_model moe --n-ff 4608 --experts 8 --experts-used 2 --n-ff-exp 2304
make_model dense --n-ff 4608

log="$WORK/bench-$TYPE.jsonl"
: >"$log"
for round in $(seq "$ROUNDS"); do
  for name in moe dense; do
    echo "== round $round/$ROUNDS: $name"
    "$EMBER" bench -m "$WORK/$name-$TYPE.gguf" -p "$PP" -n "$TG" -t "$THREADS" -r 2 --mmap "$MMAP" -o jsonl |
      sed "s/^{/{\"round\":$round,\"name\":\"$name\",/" >>"$log"
  done
done

python3 - "$log" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(name, test, field):
    v = [r[field] for r in rows if r["name"] == name and (r["n_gen"] > 0) == (test == "tg") and r[field] is not None]
    return statistics.median(v) if v else float("nan")
first = {}
for r in rows:
    first.setdefault((r["name"], "tg" if r["n_gen"] > 0 else "pp"), r)
print("| model | params | test | t/s (median of %d rounds) | active MB/token | roofline share |" %
      max(r["round"] for r in rows))
print("|---|---:|---|---:|---:|---:|")
for name in ("moe", "dense"):
    for test in ("pp", "tg"):
        r = first[(name, test)]
        n = r["n_prompt"] if test == "pp" else r["n_gen"]
        bpt = med(name, "tg", "bytes_per_token") / 1e6 if test == "tg" else float("nan")
        share = med(name, test, "roofline_share") if test == "tg" else float("nan")
        print("| %s | %s | %s%d | %.2f | %s | %s |" % (
            name, r["model_type"], test, n, med(name, test, "avg_ts"),
            "%.0f" % bpt if bpt == bpt else "", "%.1f%%" % (100 * share) if share == share else ""))
for test in ("pp", "tg"):
    print("MoE / dense, %s: %.2f" % (test, med("moe", test, "avg_ts") / med("dense", test, "avg_ts")))
PY
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ), $EMBER, mmap $MMAP"
