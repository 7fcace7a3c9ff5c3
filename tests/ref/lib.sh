# tests/ref/lib.sh - the set-up the NumPy reference scripts share; sourced,
# not run.  Sets PY (Debian's python3, which must have NumPy: else exit
# 77, skip), GEN and DUMP (gen_model and dump_logits from
# $EMBER_TOOLS_DIR: else exit 1) and TMP (a directory removed at exit).
# The forward-pass scripts also share check_engine and variant below; they
# set REF (the reference script), TOKENS and failures first.

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

# check_engine LABEL MODEL TOKENS: runs ember on MODEL both ways (the whole
# sequence in one batch, and $SPLIT tokens then one token per batch) and
# compares both with the reference. Prints one line; nonzero on failure.
SPLIT=5
check_engine() {
    local label=$1 model=$2 tokens=$3 err
    if ! err=$("$DUMP" "$model" "$tokens" "$TMP/$label.whole.f32" 2>&1); then
        echo "FAIL $label: dump_logits (one batch): $err"
        return 1
    fi
    if ! err=$("$DUMP" "$model" "$tokens" "$TMP/$label.split$SPLIT.f32" --split "$SPLIT" 2>&1); then
        echo "FAIL $label: dump_logits (split $SPLIT): $err"
        return 1
    fi
    "$PY" "$REF" compare "$model" --tokens "$tokens" --label "$label" \
        --engine "$TMP/$label.whole.f32" "$TMP/$label.split$SPLIT.f32"
}

# variant NAME GEN_MODEL_ARGS...: gen_model writes the variant, the
# reference's selftest proves its features move the logits, check_engine
# compares ember over $TOKENS. A failure adds one to $failures.
variant() {
    local name=$1 out err
    shift
    local model=$TMP/$name.gguf
    if ! err=$("$GEN" "$model" "$@" --seed 7 2>&1); then
        echo "FAIL $name: gen_model $*: $err"
        failures=$((failures + 1))
        return
    fi
    if ! out=$("$PY" "$REF" selftest "$model" --tokens "$TOKENS" 2>&1); then
        echo "FAIL $name: the reference does not depend on this variant's features:"
        echo "$out" | sed 's/^/    /'
        failures=$((failures + 1))
        return
    fi
    check_engine "$name" "$model" "$TOKENS" || failures=$((failures + 1))
}
