#!/usr/bin/env bash
# bench/router/run.sh [WORKDIR] - what the router (`ember serve --config`)
# adds to a request passed through to a remote backend.
#
# The backend is a stub upstream that answers at once: tests/tools/bench_stub
# (C, libmicrohttpd, keep-alive; STUB=python uses tests/tools/stub_upstream.py,
# whose own milliseconds of noise hide a sub-millisecond overhead); bench/serve/loadgen.mjs measures streaming completions
# (TTFT and total latency, p50 and p99) at N concurrent clients, sent
# directly to the stub and through the router with a direct route to it,
# alternately, RUNS times.  The table shows the medians over the runs and
# the router's overhead: router minus direct.
#
# Environment: EMBER_BUILD (default build: ember and bench_stub), STUB (c or
# python), CONCURRENCY (default 1,16),
# REQUESTS (per level and run; default 400), RUNS (default 5), MAX_TOKENS
# (default 8: the stub's longest answer), LEDGER (sqlite, the default: the
# router records every request as it would in production; or none).
# WORKDIR defaults to ${TMPDIR:-/tmp}/ember-bench-router.
#
# On a shared machine the figures are noisy: compare the medians, and
# re-run on a quiet machine for the record.  Nothing here asserts a time.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${EMBER_BUILD:-$ROOT/build}
EMBER=${EMBER_BIN:-$BUILD/ember}
STUB=${STUB:-c}
WORK=${1:-${TMPDIR:-/tmp}/ember-bench-router}
CONCURRENCY=${CONCURRENCY:-1,16}
REQUESTS=${REQUESTS:-400}
RUNS=${RUNS:-5}
MAX_TOKENS=${MAX_TOKENS:-8}
LEDGER=${LEDGER:-sqlite}

[ -x "$EMBER" ] || { echo "bench/router/run.sh: $EMBER is missing; build first (or set EMBER_BIN)" >&2; exit 1; }
command -v node >/dev/null || { echo "bench/router/run.sh: node is needed for the load generator" >&2; exit 1; }
command -v python3 >/dev/null || { echo "bench/router/run.sh: python3 is needed for the stub upstream" >&2; exit 1; }
case "$WORK" in "$ROOT"|"$ROOT"/*) echo "bench/router/run.sh: keep the work dir out of the repository" >&2; exit 1 ;; esac
rm -rf "$WORK"
mkdir -p "$WORK"
pids=()
trap 'for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done; wait 2>/dev/null || true' EXIT

if [ "$STUB" = python ]; then
  python3 "$ROOT/tests/tools/stub_upstream.py" --name stub >"$WORK/stub.log" 2>&1 &
else
  [ -x "$BUILD/bench_stub" ] || { echo "bench/router/run.sh: $BUILD/bench_stub is missing; build first" >&2; exit 1; }
  "$BUILD/bench_stub" --name stub >"$WORK/stub.log" 2>&1 &
fi
pids+=($!)
for _ in $(seq 1 200); do grep -q listening "$WORK/stub.log" && break; sleep 0.05; done
sport=$(sed -n 's/listening on //p' "$WORK/stub.log")
[ -n "$sport" ] || { echo "the stub did not start:" >&2; cat "$WORK/stub.log" >&2; exit 1; }

ledger=none
[ "$LEDGER" = sqlite ] && ledger="sqlite://$WORK/ledger.db"
cat >"$WORK/ember.yaml" <<YAML
ledger: $ledger
backends:
  - {name: stub, url: "http://127.0.0.1:$sport/v1", price: {input_per_mtok: 1, output_per_mtok: 2}}
routes:
  - {name: pass, policy: direct, backends: [stub]}
YAML
"$EMBER" serve --config "$WORK/ember.yaml" --port 0 >"$WORK/router.log" 2>&1 &
rpid=$!
pids+=($rpid)
rport=
for _ in $(seq 1 400); do
  rport=$(sed -n 's|.*router listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$WORK/router.log")
  [ -n "$rport" ] && break
  sleep 0.05
done
[ -n "$rport" ] || { echo "the router did not start:" >&2; cat "$WORK/router.log" >&2; exit 1; }

lg() { # lg URL MODEL OUT.json
  node "$ROOT/bench/serve/loadgen.mjs" --url "$1" --model "$2" --concurrency "$CONCURRENCY" --requests "$REQUESTS" \
    --prompt-tokens 32 --max-tokens "$MAX_TOKENS" --endpoint chat --json "$3" >/dev/null
}
# curl URL MODEL OUT: REQUESTS sequential streaming requests on one
# keep-alive connection (a lighter client than node): per request the time
# to the first byte and the total, in seconds.
curlrun() {
  local args=() i
  for i in $(seq 1 "$REQUESTS"); do
    args+=(--next "$1/v1/chat/completions" -H 'Content-Type: application/json' -o /dev/null -w '%{time_starttransfer} %{time_total}\n'
           -d "{\"model\": \"$2\", \"stream\": true, \"max_tokens\": $MAX_TOKENS, \"messages\": [{\"role\": \"user\", \"content\": \"request $i\"}]}")
  done
  curl -s "${args[@]}" >"$3"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$rpid/stat"; }
echo "== $STUB stub on :$sport, router on :$rport (ledger $LEDGER); $RUNS runs of $REQUESTS requests per N, alternating"
ticks=0
for i in $(seq 1 "$RUNS"); do
  lg "http://127.0.0.1:$sport" stub "$WORK/direct-$i.json"
  t0=$(cpu_ticks)
  lg "http://127.0.0.1:$rport" pass "$WORK/router-$i.json"
  ticks=$((ticks + $(cpu_ticks) - t0))
  curlrun "http://127.0.0.1:$sport" stub "$WORK/curl-direct-$i.txt"
  curlrun "http://127.0.0.1:$rport" pass "$WORK/curl-router-$i.txt"
  echo "   run $i of $RUNS done"
done
# The router's CPU time (user + system, all threads) per routed request of
# the load generator's runs: what it costs, whatever the scheduling noise.
n_levels=$(echo "$CONCURRENCY" | tr ',' '\n' | wc -l)
echo "router CPU per request: $(( ticks * 1000000 / $(getconf CLK_TCK) / (RUNS * REQUESTS * n_levels) )) us (user + system)"
rss=$(awk '/^VmRSS/ {print $2, $3}' "/proc/$rpid/status")

node - "$WORK" "$RUNS" <<'JS'
const fs = require('fs');
const [work, runs] = [process.argv[2], Number(process.argv[3])];
const load = (kind) => Array.from({ length: runs }, (_, i) => JSON.parse(fs.readFileSync(`${work}/${kind}-${i + 1}.json`)));
const direct = load('direct'), router = load('router');
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const f = (x) => x.toFixed(2).padStart(7);
console.log('\n|  N | metric (ms) | direct p50 | router p50 | overhead p50 | direct p99 | router p99 | overhead p99 | errors |');
console.log('|---:|:------------|-----------:|-----------:|-------------:|-----------:|-----------:|-------------:|-------:|');
direct[0].levels.forEach((lv, k) => {
  for (const m of ['ttft', 'total']) {
    const d50 = median(direct.map((r) => r.levels[k][`${m}_p50_ms`])), r50 = median(router.map((r) => r.levels[k][`${m}_p50_ms`]));
    const d99 = median(direct.map((r) => r.levels[k][`${m}_p99_ms`])), r99 = median(router.map((r) => r.levels[k][`${m}_p99_ms`]));
    const errors = [...direct, ...router].reduce((s, r) => s + r.levels[k].errors, 0);
    console.log(`| ${String(lv.concurrency).padStart(2)} | ${m.padEnd(11)} |    ${f(d50)} |    ${f(r50)} |      ${f(r50 - d50)} |    ${f(d99)} |    ${f(r99)} |      ${f(r99 - d99)} | ${String(errors).padStart(6)} |`);
  }
});
console.log('\nmedians over the runs; overhead = router - direct (streaming chat, the stub answers at once)');
// curl, one keep-alive connection, N = 1.
const pct = (s, p) => s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
const curl = (kind, col, p) => median(Array.from({ length: runs }, (_, i) => {
  const rows = fs.readFileSync(`${work}/curl-${kind}-${i + 1}.txt`, 'utf8').trim().split('\n').map((l) => Number(l.split(' ')[col]) * 1000);
  return pct(rows.sort((a, b) => a - b), p);
}));
console.log('\ncurl, sequential requests on one keep-alive connection (N = 1):');
console.log('| metric (ms) | direct p50 | router p50 | overhead p50 | direct p99 | router p99 | overhead p99 |');
console.log('|:------------|-----------:|-----------:|-------------:|-----------:|-----------:|-------------:|');
for (const [m, col] of [['first byte', 0], ['total', 1]]) {
  const d50 = curl('direct', col, 50), r50 = curl('router', col, 50), d99 = curl('direct', col, 99), r99 = curl('router', col, 99);
  console.log(`| ${m.padEnd(11)} |    ${f(d50)} |    ${f(r50)} |      ${f(r50 - d50)} |    ${f(d99)} |    ${f(r99)} |      ${f(r99 - d99)} |`);
}
JS
echo "router RSS after the runs: $rss"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ)"
