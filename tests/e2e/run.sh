#!/usr/bin/env bash
# tests/e2e/run.sh [FILE.test.mjs ...] - the end-to-end suite of ember serve.
#
# Runs the node test files (all of tests/e2e/*.test.mjs, or those given)
# under node's own test runner, one file at a time; each file starts its own
# `ember serve` ($EMBER_BIN) on a free loopback port and stops it.  The
# official openai client comes from the npm registry, pinned by
# package-lock.json: `npm ci` installs it into tests/e2e/node_modules when
# that is missing or older than the lockfile.
#
# Exit 77 (ctest: skipped) only when node itself is absent, or when the
# shared test data ($EMBER_TEST_DATA) is; a failed install is a failure.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

if ! command -v node >/dev/null; then
  echo "e2e: skipped: node is not installed (scripts/install-deps.sh installs nodejs and npm)"
  exit 77
fi
if [ -z "${EMBER_TEST_DATA:-}" ] || [ ! -f "$EMBER_TEST_DATA/models/stories260K.gguf" ]; then
  echo "e2e: skipped: EMBER_TEST_DATA (${EMBER_TEST_DATA:-unset}) does not hold models/stories260K.gguf"
  exit 77
fi
export EMBER_TEST_DATA=$(cd "$EMBER_TEST_DATA" && pwd)
export EMBER_BIN=${EMBER_BIN:-$ROOT/build/ember}
if [ ! -x "$EMBER_BIN" ]; then
  echo "e2e: $EMBER_BIN is not built (set EMBER_BIN)" >&2
  exit 1
fi

# The install is current when node_modules records the lockfile it came from.
stamp="$HERE/node_modules/.ember-lock.sha256"
want=$(sha256sum "$HERE/package-lock.json" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  if ! command -v npm >/dev/null; then
    echo "e2e: npm is needed to install the openai client (apt-get install npm)" >&2
    exit 1
  fi
  echo "e2e: npm ci (openai client from package-lock.json)"
  (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$stamp"
fi

files=()
for f in "$@"; do files+=("$(realpath "$f")"); done
[ ${#files[@]} -gt 0 ] || files=("$HERE"/*.test.mjs)
cd "$HERE"
exec node --test --test-concurrency=1 --test-timeout="${E2E_TEST_TIMEOUT_MS:-300000}" "${files[@]}"
