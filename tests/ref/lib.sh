# tests/ref/lib.sh - the set-up the NumPy reference scripts share; sourced,
# not run.  Sets PY (Debian's python3, which must have NumPy: else exit
# 77, skip), GEN and DUMP (gen_model and dump_logits from
# $EMBER_TOOLS_DIR: else exit 1) and TMP (a directory removed at exit).

PY=/usr/bin/python3
if ! "$PY" -c 'import numpy' 2>/dev/null; then
    echo "SKIP: $PY with numpy is needed (Debian: apt-get install python3-numpy)"
    exit 77
fi
TOOLS=${EMBER_TOOLS_DIR:-}
GEN=$TOOLS/gen_model
DUMP=$TOOLS/dump_logits
if [ -z "$TOOLS" ] || [ ! -x "$GEN" ] || [ ! -x "$DUMP" ]; then
    echo "FAIL: gen_model and dump_logits not found; set EMBER_TOOLS_DIR to the build directory"
    exit 1
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
