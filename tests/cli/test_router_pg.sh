#!/usr/bin/env bash
# The router's PostgreSQL ledger against a PostgreSQL server this test
# starts itself (Debian's postgresql binaries; as the postgres user when run
# as root, in a temporary directory, on a random loopback port, fsync off)
# and stops on exit: the schema created by two routers starting together,
# the records, budgets under 200 concurrent requests on one router and
# split over two routers sharing the database, `ember usage`, kill -9 of a
# router under load (the dead process's reservations dropped while the
# other router runs on), and the database going down and coming back.
# Stub upstreams: tests/tools/stub_upstream.py.  Skips (77) without the
# PostgreSQL server binaries.
. "$(dirname "$0")/lib.sh"
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ] || [ ! -x "$pgbin/pg_ctl" ]; then
  echo "SKIP: no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (Debian package postgresql; make test-deps)"
  exit 77
fi
command -v psql >/dev/null || { echo "SKIP: psql is missing (Debian package postgresql-client)"; exit 77; }
need_cmd curl python3
here=$(cd "$(dirname "$0")/../tools" && pwd)
tmp=$(mktemp -d)
chmod 711 "$tmp"
pids=()

# PostgreSQL refuses to run as root: as root, its files and processes
# belong to the postgres user (or nobody).
as_pg=()
if [ "$(id -u)" = 0 ]; then
  pguser=postgres; id postgres >/dev/null 2>&1 || pguser=nobody
  as_pg=(runuser -u "$pguser" --)
fi
mkdir -p "$tmp/pg"
[ ${#as_pg[@]} = 0 ] || chown "$pguser" "$tmp/pg"
pgport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pg_start() {
  "${as_pg[@]}" "$pgbin/pg_ctl" -D "$tmp/pg/data" -l "$tmp/pg/log" -w -t 60 -o \
    "-c listen_addresses=127.0.0.1 -p $pgport -k $tmp/pg -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=120" \
    start >/dev/null
}
pg_stop() { "${as_pg[@]}" "$pgbin/pg_ctl" -D "$tmp/pg/data" -m "${1:-fast}" -w stop >/dev/null 2>&1; }
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  pg_stop immediate
  [ "$fail" = 0 ] && [ "$pass" -gt 1 ] || { for f in "$tmp"/router_*.log; do tail -20 "$f"; done; tail -20 "$tmp/pg/log"; }
  rm -rf "$tmp"
}
trap cleanup EXIT
py() { python3 -c "$1"; }

"${as_pg[@]}" "$pgbin/initdb" -D "$tmp/pg/data" -A trust -U ember -E UTF8 --locale=C --no-sync >"$tmp/pg/initdb.log" 2>&1 ||
  { echo "FAIL: initdb"; cat "$tmp/pg/initdb.log"; exit 1; }
pg_start || { echo "FAIL: the PostgreSQL server did not start"; cat "$tmp/pg/log"; exit 1; }
q() { psql -X -q -At -h 127.0.0.1 -p "$pgport" -U ember -d ember -c "$1"; }
psql -X -q -h 127.0.0.1 -p "$pgport" -U ember -d postgres -c "CREATE DATABASE ember" || { echo "FAIL: createdb"; exit 1; }
PGURL="postgres://ember@127.0.0.1:$pgport/ember"
ok "PostgreSQL running on 127.0.0.1:$pgport"

# router_start NAME CONFIG, then router_wait NAME: sets port_NAME, pid_NAME.
router_start() {
  "$EMBER_BIN" serve --config "$2" --port 0 2>"$tmp/router_$1.log" &
  eval "pid_$1=$!"
  pids+=($!)
}
router_wait() {
  local port pid; eval "pid=\$pid_$1"
  port=$(listen_port "$tmp/router_$1.log" "$pid")
  eval "port_$1=$port"
  [ -n "$port" ]
}
# req PORT KEY MODEL CONTENT: a chat request; headers in $tmp/h, body in $tmp/b.
req() {
  curl -s -D "$tmp/h" -o "$tmp/b" -w '%{http_code}' "http://127.0.0.1:$1/v1/chat/completions" \
    -H "Authorization: Bearer $2" -H 'Content-Type: application/json' \
    -d "{\"model\": \"$3\", \"messages\": [{\"role\": \"user\", \"content\": \"$4\"}], \"max_tokens\": 6}"
}
hdr() { sed -n "s/^$1: \(.*\)\r$/\1/Ip" "$tmp/h"; }
errcode() { py "import json; print(json.load(open('$tmp/b'))['error']['code'])" 2>/dev/null; }
load() { python3 "$here/router_load.py" "$@"; }

stub cheap --lp -0.1
stub strong
cat >"$tmp/ember.yaml" <<YAML
ledger: $PGURL
backends:
  - {name: cheap, url: "http://127.0.0.1:$port_cheap/v1", price: {input_per_mtok: 0.1, output_per_mtok: 0.2}, retries: 0}
  - {name: strong, url: "http://127.0.0.1:$port_strong/v1", price: {input_per_mtok: 3, output_per_mtok: 15}, timeout_s: 10}
routes:
  - {name: auto, policy: cascade, backends: [cheap, strong], accept: {mean_logprob: -1.0, min_logprob: -3}}
  - {name: direct-strong, policy: direct, backends: [strong]}
keys:
  - {name: open, key: open-key}
  - {name: team, key: team-key, routes: [direct-strong], budget: {daily_usd: 0.003}}
  - {name: duo, key: duo-key, routes: [direct-strong], budget: {daily_usd: 0.003}}
  - {name: roomy, key: roomy-key, budget: {daily_usd: 100}}
YAML

# ------------------------------------------------------------- schema
router_start a "$tmp/ember.yaml"
router_start b "$tmp/ember.yaml"
router_wait a && router_wait b
check "two routers starting together on one empty database both come up" '[ -n "$port_a" ] && [ -n "$port_b" ]'
[ -n "$port_a" ] && [ -n "$port_b" ] || exit 1
check "schema: requests, attempts, reservations and budget_keys created" \
  '[ "$(q "SELECT string_agg(tablename, \$\$,\$\$ ORDER BY tablename) FROM pg_tables WHERE schemaname = current_schema()")" = attempts,budget_keys,requests,reservations ]'
"$EMBER_BIN" usage --ledger "sqlite://$tmp/cols.db" >/dev/null
for t in requests attempts; do
  sq=$(py "import sqlite3; print(','.join(r[1] for r in sqlite3.connect('$tmp/cols.db').execute('PRAGMA table_info($t)')))")
  pg=$(q "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = '$t'")
  check "schema: $t has the SQLite ledger's columns ($pg)" '[ "$sq" = "$pg" ]'
done

# ------------------------------------------------------------ records
code=$(req "$port_a" open-key auto "hard question #lp:-2.5")
cost=$(hdr x-ember-cost-usd)
check "cascade through router a: escalated to strong" '[ "$code" = 200 ] && [ "$(hdr x-ember-backend)" = strong ]'
rid=$(q "SELECT max(id) FROM requests")
check "records: the request row (key, route, backend, status, outcome, escalation, cost)" \
  '[ "$(q "SELECT key, route, backend, status, outcome, escalation LIKE \$\$cheap: mean_logprob%\$\$, abs(cost_usd - $cost) < 1e-8, prompt_tokens > 0, completion_tokens FROM requests WHERE id = $rid")" = "open|auto|strong|200|ok|t|t|t|6" ]'
check "records: both attempts, charged, summing to the request's cost" \
  '[ "$(q "SELECT string_agg(backend || \$\$:\$\$ || outcome, \$\$,\$\$ ORDER BY seq), bool_and(cost_usd > 0), abs(sum(cost_usd) - (SELECT cost_usd FROM requests WHERE id = $rid)) < 1e-12 FROM attempts WHERE request_id = $rid")" = "cheap:rejected,strong:ok|t|t" ]'
code=$(req "$port_b" open-key direct-strong "#stub:500")
check "records: a failed request through router b, with its retried attempts" \
  '[ "$code" = 502 ] && [ "$(q "SELECT r.status, r.outcome, string_agg(a.outcome, \$\$,\$\$) FROM requests r JOIN attempts a ON a.request_id = r.id WHERE r.id = (SELECT max(id) FROM requests) GROUP BY r.id")" = "502|http_5xx|http_5xx,http_5xx" ]'

# ------------------------------------------------------------ budgets
# team's budget is nearly spent (0.002 of 0.003 USD) when 200 arrive at once.
q "INSERT INTO requests(ts, key, route, backend, prompt_tokens, completion_tokens, cost_usd, baseline_usd, latency_ms,
   status, outcome, escalation) VALUES (extract(epoch FROM now()), 'team', 'direct-strong', 'strong', 0, 0, 0.002, 0.002, 0, 200, 'ok', '')"
out=$(load --port "$port_a" --key team-key --model direct-strong --n 200 --c 200 --fresh)
read -r spent denied left <<<"$(q "SELECT sum(cost_usd) FILTER (WHERE status = 200), count(*) FILTER (WHERE outcome = 'budget_exceeded'), (SELECT count(*) FROM reservations) FROM requests WHERE key = 'team'" | tr '|' ' ')"
echo "  one router, 200 concurrent requests against a 0.003 USD budget with 0.002 spent: $out; spent $spent USD, $denied denied, $left reservations left"
check "budget (one router): 200 concurrent requests, some served, the rest 429" 'py "
import json; d = json.loads(\"\"\"$out\"\"\")[\"status\"]
assert d.get(\"200\", 0) >= 1 and d.get(\"429\", 0) >= 180 and d[\"200\"] + d[\"429\"] == 200, d"'
check "budget (one router): spend within the budget, no reservation left" 'py "assert $spent <= 0.003 + 1e-12 and $left == 0"'

load --port "$port_a" --key duo-key --model direct-strong --n 100 --c 100 --fresh >"$tmp/duo_a" &
la=$!
load --port "$port_b" --key duo-key --model direct-strong --n 100 --c 100 --fresh >"$tmp/duo_b"
wait $la
read -r spent denied left <<<"$(q "SELECT sum(cost_usd) FILTER (WHERE status = 200), count(*) FILTER (WHERE outcome = 'budget_exceeded'), (SELECT count(*) FROM reservations) FROM requests WHERE key = 'duo'" | tr '|' ' ')"
echo "  two routers, 100 + 100 concurrent requests against one 0.003 USD budget: a $(cat "$tmp/duo_a"), b $(cat "$tmp/duo_b"); spent $spent USD, $denied denied, $left reservations left"
check "budget (two routers sharing the database): both serve some, the spend stays within the budget" 'py "
import json; a = json.load(open(\"$tmp/duo_a\"))[\"status\"]; b = json.load(open(\"$tmp/duo_b\"))[\"status\"]
ok = a.get(\"200\", 0) + b.get(\"200\", 0)
assert ok >= 1 and ok + a.get(\"429\", 0) + b.get(\"429\", 0) == 200, (a, b)
assert $spent <= 0.003 + 1e-12 and $left == 0"'

# -------------------------------------------------------------- usage
"$EMBER_BIN" usage --ledger "$PGURL" --by key -o json >"$tmp/u.json"
check "usage on PostgreSQL: json by key matches the tables" 'py "
import json; rows = {r[\"key\"]: r for r in json.load(open(\"$tmp/u.json\"))}
assert rows[\"total\"][\"requests\"] == $(q "SELECT count(*) FROM requests"), rows[\"total\"]
assert abs(rows[\"total\"][\"cost_usd\"] - $(q "SELECT sum(cost_usd) FROM requests")) < 1e-9
assert rows[\"team\"][\"requests\"] == 201 and rows[\"open\"][\"escalation_rate\"] > 0"'
"$EMBER_BIN" usage --ledger "$PGURL" --by day -o csv >"$tmp/u.csv"
check "usage on PostgreSQL: csv by day" 'grep -q "^$(date -u +%Y-%m-%d)," "$tmp/u.csv" && grep -q "^total," "$tmp/u.csv"'
"$EMBER_BIN" usage --ledger "postgres:host=$tmp/pg port=$pgport user=ember dbname=ember" -o csv >"$tmp/u2.csv"
check "usage on PostgreSQL: a libpq keyword string, over the unix socket, reads the same" '[ "$(tail -1 "$tmp/u2.csv")" = "$(tail -1 "$tmp/u.csv")" ]'

# ------------------------------------------------------------ kill -9
curls=()
for _ in $(seq 1 20); do
  curl -s -N -o /dev/null "http://127.0.0.1:$port_a/v1/chat/completions" -H "Authorization: Bearer roomy-key" \
    -d '{"model": "cheap", "stream": true, "messages": [{"role": "user", "content": "#stub:slow"}], "max_tokens": 30}' &
  curls+=($!)
done
load --port "$port_a" --key open-key --model auto --n 3000 --c 16 >/dev/null &
loadpid=$!
sleep 1
open_before=$(q "SELECT count(*) FROM reservations")
before=$(q "SELECT count(*) FROM requests")
kill -9 "$pid_a"
wait "$loadpid" "${curls[@]}" 2>/dev/null
after=$(q "SELECT count(*) FROM requests")
check "kill -9: the requests settled before the kill are all there ($before then $after), no attempt without its request" \
  '[ "$after" -ge "$before" ] && [ "$(q "SELECT count(*) FROM attempts WHERE request_id NOT IN (SELECT id FROM requests)")" = 0 ]'
# Router b runs on; its next reservation of the key drops the dead one's.
for _ in $(seq 1 20); do
  code=$(req "$port_b" roomy-key cheap "hi")
  [ "$(q "SELECT count(*) FROM reservations")" = 0 ] && break
  sleep 0.1
done
check "kill -9: router a's $open_before open reservations dropped by router b, which still serves" '[ "$open_before" -ge 1 ] && [ "$code" = 200 ] && [ "$(q "SELECT count(*) FROM reservations")" = 0 ]'

# ------------------------------------------------- the database goes down
pg_stop fast
code=$(req "$port_b" roomy-key direct-strong "hi")
check "PostgreSQL down: a key with a budget gets 503 ledger_unavailable in OpenAI's shape" '[ "$code" = 503 ] && [ "$(errcode)" = ledger_unavailable ] && [ -n "$(hdr retry-after)" ]'
code=$(req "$port_b" open-key direct-strong "hi")
check "PostgreSQL down: a key without a budget is still served, the router still runs" '[ "$code" = 200 ] && kill -0 "$pid_b"'
"$EMBER_BIN" usage --ledger "$PGURL" >/dev/null 2>"$tmp/e"; rc=$?
check "PostgreSQL down: ember usage fails with a clear error" '[ $rc = 1 ] && grep -q "ledger (postgres): cannot connect" "$tmp/e"'
"$EMBER_BIN" serve --config "$tmp/ember.yaml" --port 0 2>"$tmp/e" & spid=$!
wait $spid; rc=$?
check "PostgreSQL down: a new router refuses to start, saying why" '[ $rc = 1 ] && grep -q "ledger (postgres)" "$tmp/e"'
pg_start
code=$(req "$port_b" roomy-key direct-strong "back")
check "PostgreSQL back: router b reconnects and records again" '[ "$code" = 200 ] && [ "$(q "SELECT outcome FROM requests ORDER BY id DESC LIMIT 1")" = ok ]'
kill "$pid_b"; wait "$pid_b" 2>/dev/null

echo "took $SECONDS s"
finish
