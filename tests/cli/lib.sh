# tests/cli/lib.sh - what the CLI script tests share; sourced, not run.
#
# Sourcing it needs $EMBER_BIN (the ember program) and starts the counts.
# ok/bad/check record one result each (exits, prints and has are the
# common checks built on them); need_data and need_cmd turn a test
# that cannot run here into a skip (exit 77); one_line checks a command's
# exit code and that it explains itself in one line; listen_port and stub
# start the servers of the serve and router tests; finish prints the
# counts and exits: 1 on any failure, 77 when $skipped names something that
# could not be checked, else 0.  Scripts make their own temporary folder
# and traps, since what they must clean up differs.

set -u
: "${EMBER_BIN:?EMBER_BIN must point at the ember binary}"
pass=0
fail=0
skipped=""

ok() { pass=$((pass + 1)); echo "ok: $1"; }
bad() { fail=$((fail + 1)); echo "FAIL: $1"; }
# check LABEL SHELL-CONDITION: the condition, evaluated, decides the result.
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

need_data() {
    if [ -z "${EMBER_TEST_DATA:-}" ]; then echo "SKIP: EMBER_TEST_DATA is not set"; exit 77; fi
}
# need_cmd CMD...: every command is installed.
need_cmd() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null || { echo "SKIP: $c is missing"; exit 77; }
    done
}

# one_line WANT-RC LABEL COMMAND...: the command exits with WANT-RC and
# writes exactly one line to stderr.  Needs $tmp.
one_line() {
    local want=$1 what=$2
    shift 2
    "$@" >/dev/null 2>"$tmp/one_line.err"
    local rc=$?
    if [ $rc -eq "$want" ] && [ "$(wc -l <"$tmp/one_line.err")" -eq 1 ]; then
        ok "$what: $(cat "$tmp/one_line.err")"
    else
        bad "$what (rc $rc, $(wc -l <"$tmp/one_line.err") lines)"
    fi
}

# exits WANT-RC LABEL COMMAND...: the command exits with WANT-RC; its
# stdout is left in $tmp/out and its stderr in $tmp/err for later checks.
exits() {
    local want=$1 what=$2
    shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [ $rc -eq "$want" ]; then ok "$what"; else bad "$what: exit $rc, want $want: $(head -c 300 "$tmp/err")"; fi
}

# prints WANT COMMAND...: the command exits 0 and prints exactly WANT.
prints() {
    local want=$1
    shift
    local got rc
    got=$("$@" 2>"$tmp/err")
    rc=$?
    if [ $rc -ne 0 ]; then
        bad "$* exited $rc: $(head -c 300 "$tmp/err")"
    elif [ "$got" != "$want" ]; then
        bad "$*: got '$got', want '$want'"
    else
        ok "$*"
    fi
}

# has FILE REGEX: the file has a line that matches the extended regex.
has() { if grep -Eq -- "$2" "$1"; then ok "/$2/"; else bad "$1 lacks /$2/"; fi; }

# listen_port LOG PID: waits (up to 20 s) until the ember server started
# as PID writes "listening on http://127.0.0.1:PORT" to LOG, and prints
# PORT; prints nothing when the server exits or stays silent instead.
listen_port() {
    local port= _
    for _ in $(seq 1 400); do
        port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$1")
        [ -n "$port" ] && break
        kill -0 "$2" 2>/dev/null || break
        sleep 0.05
    done
    echo "$port"
}

# stub NAME [ARGS...]: starts tests/tools/stub_upstream.py (a scripted
# OpenAI-compatible upstream for the router tests) with --name NAME, adds
# its pid to the array $pids and sets port_NAME.  Needs $tmp.
stub() {
    local name=$1 _
    shift
    python3 "$(dirname "${BASH_SOURCE[0]}")/../tools/stub_upstream.py" --name "$name" "$@" >"$tmp/stub_$name" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 200); do grep -q listening "$tmp/stub_$name" && break; sleep 0.05; done
    eval "port_$name=$(sed -n 's/listening on //p' "$tmp/stub_$name")"
}

# finish [PREFIX]: the summary line and the exit code.
finish() {
    echo "${1:+$1: }$pass passed, $fail failed"
    [ "$fail" -eq 0 ] || exit 1
    if [ -n "$skipped" ]; then echo "SKIP: $skipped"; exit 77; fi
    exit 0
}
