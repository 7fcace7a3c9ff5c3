#!/usr/bin/env bash
# Smoke test of `ember serve` with curl: it starts on a free port, answers
# /health, one completion and one bad request (a 400 naming the field),
# refuses a wrong key, and on SIGTERM finishes a request in flight and
# exits 0, having written the step trace EMBER_STEP_TRACE asks for.  The
# node suite (tests/e2e) covers the whole API.
. "$(dirname "$0")/lib.sh"
need_data
need_cmd curl
M="$EMBER_TEST_DATA/models/stories260K.gguf"
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
json() { python3 -c "import json,sys; d=json.load(open('$1')); print($2)"; }

EMBER_STEP_TRACE="$tmp/trace" "$EMBER_BIN" serve -m "$M" --port 0 -t 1 --parallel 2 --api-key sekrit >"$tmp/out" 2>"$tmp/log" &
pid=$!
port=$(listen_port "$tmp/log" "$pid")
if [ -z "$port" ]; then echo "FAIL: the server did not start"; cat "$tmp/log"; exit 1; fi
ok "listening on port $port"
U="http://127.0.0.1:$port"
K=(-H "Authorization: Bearer sekrit")

code=$(curl -s -o "$tmp/h" -w '%{http_code}' "$U/health")
[ "$code" = 200 ] && grep -q '"status":"ok"' "$tmp/h" && ok "/health" || bad "/health: $code $(cat "$tmp/h")"

code=$(curl -s -o "$tmp/c" -w '%{http_code}' "${K[@]}" "$U/v1/completions" \
  -d '{"model": "stories260K", "prompt": "Once upon a time", "max_tokens": 12, "temperature": 0}')
if [ "$code" = 200 ] && [ "$(json "$tmp/c" "(d['usage']['completion_tokens'], d['choices'][0]['finish_reason'], len(d['choices'][0]['text']) > 0)")" = "(12, 'length', True)" ]; then
  ok "one completion: $(json "$tmp/c" "d['choices'][0]['text']")"
else
  bad "completion: $code $(cat "$tmp/c")"
fi

code=$(curl -s -o "$tmp/b" -w '%{http_code}' "${K[@]}" "$U/v1/completions" \
  -d '{"model": "stories260K", "prompt": "x", "temperature": "warm"}')
[ "$code" = 400 ] && [ "$(json "$tmp/b" "(d['error']['param'], d['error']['type'])")" = "('temperature', 'invalid_request_error')" ] \
  && ok "bad request: 400 naming temperature" || bad "bad request: $code $(cat "$tmp/b")"

code=$(curl -s -o "$tmp/k" -w '%{http_code}' -H "Authorization: Bearer wrong" "$U/v1/models")
[ "$code" = 401 ] && ok "wrong key: 401" || bad "wrong key: $code"

# SIGTERM with a request in flight: it still gets its whole answer.
curl -s -o "$tmp/s" "${K[@]}" "$U/v1/completions" \
  -d '{"model": "stories260K", "prompt": "The", "max_tokens": 400, "temperature": 0, "stream": true}' &
cpid=$!
for _ in $(seq 1 100); do [ -s "$tmp/s" ] && break; sleep 0.02; done
kill -TERM "$pid"
wait "$cpid"
st=0; wait "$pid" || st=$?
pid=
[ "$st" = 0 ] && ok "SIGTERM: exit status 0" || bad "SIGTERM: exit status $st"
tail -1 "$tmp/s" | grep -q '^data: \[DONE\]' || tail -2 "$tmp/s" | grep -q 'data: \[DONE\]' \
  && ok "the request in flight finished" || bad "request in flight: $(tail -c 200 "$tmp/s")"
grep -q "stopped" "$tmp/log" && ok "logged its stop" || bad "no stop line"
grep -q "POST /v1/completions 200" "$tmp/log" && ok "one log line per request" || bad "no request log line"
# The trace: a line per step, 8 fields after S, times in order, the
# 12-token completion's prompt step (its prompt rows, no decode rows) and
# decode steps of one row each.
python3 - "$tmp/trace" <<'PY' && ok "step trace" || bad "step trace: $(head -c 300 "$tmp/trace")"
import sys
steps = [l.split() for l in open(sys.argv[1]) if l.startswith('S ')]
assert len(steps) >= 13, len(steps)
for s in steps:
    assert len(s) == 9, s
    t = [float(x) for x in s[1:5]]
    assert t == sorted(t), s
assert any(int(s[5]) == 0 and int(s[6]) > 1 for s in steps)
assert sum(1 for s in steps if int(s[5]) == 1 and int(s[6]) == 0) >= 11
PY

# A key with whitespace around it could never be sent (HTTP trims header
# values): refused at start instead of a server that answers only 401s.
printf ' sekrit\r\n' >"$tmp/key"
refused() { # NAME ARGS...: the server must exit at once, saying why
  local name=$1 st=0
  shift
  timeout 20 "$EMBER_BIN" serve -m "$M" --port 0 -t 1 "$@" >/dev/null 2>"$tmp/klog" || st=$?
  if { [ "$st" = 1 ] || [ "$st" = 2 ]; } && grep -q whitespace "$tmp/klog"; then ok "key with whitespace refused ($name)"
  else bad "key with whitespace ($name): exit $st, $(head -c 200 "$tmp/klog")"; fi
}
refused "key file" --api-key-file "$tmp/key"
refused "--api-key" --api-key "$(printf 'sekrit\t')"

# --max-connections-per-client 2: a third connection from 127.0.0.2 takes
# the slot of that address's own oldest idle connection, and 127.0.0.1's
# idle one, older still, keeps its slot; /metrics counts one eviction and
# two clients.
"$EMBER_BIN" serve -m "$M" --port 0 -t 1 --max-connections-per-client 2 2>"$tmp/cap.log" &
pid=$!
capport=$(listen_port "$tmp/cap.log" "$pid")
if [ -n "$capport" ] && python3 - "$capport" <<'PY'; then ok "--max-connections-per-client: a client trades its own idle slot"; else bad "--max-connections-per-client"; fi
import socket, sys, time
port = int(sys.argv[1])
def dial(host):
    s = socket.socket()
    s.bind((host, 0))
    s.connect(('127.0.0.1', port))
    s.settimeout(10)
    return s
def is_open(s):
    s.setblocking(False)
    try:
        return s.recv(1) is None
    except BlockingIOError:
        return True
    finally:
        s.settimeout(10)
one = dial('127.0.0.1'); time.sleep(0.1)
a = dial('127.0.0.2'); time.sleep(0.1)
b = dial('127.0.0.2'); time.sleep(0.1)
c = dial('127.0.0.2')
assert a.recv(1) == b'', 'the oldest idle connection of 127.0.0.2 kept its slot'
assert is_open(one) and is_open(b), 'another connection was closed'
c.sendall(b'GET /metrics HTTP/1.0\r\n\r\n')
m = b''
while (chunk := c.recv(65536)):
    m += chunk
m = m.decode()
assert 'ember_connections_closed_total{reason="evicted"} 1\n' in m, m
assert 'ember_connections_closed_total{reason="per_client"} 0\n' in m, m
assert 'ember_connections_clients 2\n' in m, m
PY
kill "$pid"; wait "$pid" 2>/dev/null
pid=

# A connection table larger than the soft open-file limit allows: the
# server raises the limit to what the table needs (the library's limit,
# 1000 + 1000 / 4 + 16, and 64 more), or says the hard limit is too low.
( ulimit -Sn 512 && exec "$EMBER_BIN" serve -m "$M" --port 0 -t 1 --max-connections 1000 ) 2>"$tmp/fd.log" &
pid=$!
fdport=$(listen_port "$tmp/fd.log" "$pid")
hard=$(ulimit -Hn)
need=$(( 1000 + 1000 / 4 + 16 + 64 ))
want=$need; [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ] && want=$hard
soft=$(awk '/^Max open files/ {print $4}' "/proc/$pid/limits")
check "files: the soft open-file limit raised from 512 to $soft (want $want, hard $hard)" '[ -n "$fdport" ] && [ "$soft" = "$want" ]'
[ "$want" = "$need" ] || check "files: the hard limit is said to be too low" 'grep -q "open files are limited to $hard" "$tmp/fd.log"'
kill "$pid"; wait "$pid" 2>/dev/null
pid=

finish
