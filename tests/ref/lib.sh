# tests/ref/lib.sh - what the reference scripts share; sourced, not run.
# Sets PY (Debian's python3) and TMP (a directory removed at exit), and
# gives need_python, need_data and need_tools for their preconditions.
# The NumPy forward-pass scripts also share check_engine and variant
# below; they call `need_python numpy python3-numpy` and
# `need_tools gen_model dump_logits`, and set REF (the reference script)
# first.  failures counts the failed checks of any script.

PY=/usr/bin/python3
GEN=${EMBER_TOOLS_DIR:-}/gen_model
DUMP=${EMBER_TOOLS_DIR:-}/dump_logits

# need_python MODULE PACKAGE: $PY imports MODULE, else the test is a skip
# (exit 77) that names the Debian package to install.
need_python() {
    if ! "$PY" -c "import $1" 2>/dev/null; then
        echo "SKIP: $PY with $1 is needed (Debian: apt-get install $2)"
        exit 77
    fi
}

# need_data PATH: $EMBER_TEST_DATA/PATH exists, else the test is a skip.
need_data() {
    if [ -z "${EMBER_TEST_DATA:-}" ] || [ ! -e "$EMBER_TEST_DATA/$1" ]; then
        echo "SKIP: EMBER_TEST_DATA/$1 is not available"
        exit 77
    fi
}

# need_tools NAME...: each test tool is built in $EMBER_TOOLS_DIR, else the
# test fails (exit 1): a missing tool is a build problem, not a skip.
need_tools() {
    local t
    for t in "$@"; do
        if [ -z "${EMBER_TOOLS_DIR:-}" ] || [ ! -x "$EMBER_TOOLS_DIR/$t" ]; then
            echo "FAIL: $t not found; set EMBER_TOOLS_DIR to the build directory"
            exit 1
        fi
    done
}

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
failures=0

# The forward-pass scripts' tokens: 24 fixed ids spread over the 512-token
# vocabulary of the generated models; long enough for a 6-position sliding
# window to cut off most of the context.
TOKENS=1,42,79,116,153,190,227,264,301,338,375,412,449,486,11,48,85,122,159,196,233,270,307,344

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
