#!/usr/bin/env bash
# test_tokenize.sh - `ember tokenize` on a model and on vocabulary-only
# files, its two output forms, its options and its errors.
#
# Needs $EMBER_BIN (the ember program) and $EMBER_TEST_DATA (skips with 77
# when that is unset).  The expected ids are the tokenizers' reference ids
# (stories260K's greedy output starts with the tokens of "Once upon a
# time"; GPT-2's are those of llama.cpp's test vectors).
set -u

if [ -z "${EMBER_TEST_DATA:-}" ]; then
    echo "SKIP: EMBER_TEST_DATA is not set"
    exit 77
fi
if [ -z "${EMBER_BIN:-}" ] || [ ! -x "$EMBER_BIN" ]; then
    echo "FAIL: EMBER_BIN is not set to the ember program" >&2
    exit 1
fi
stories="$EMBER_TEST_DATA/models/stories260K.gguf"
gpt2="$EMBER_TEST_DATA/tokenizers/llama.cpp-vocab/ggml-vocab-gpt-2.gguf"
bert="$EMBER_TEST_DATA/tokenizers/llama.cpp-vocab/ggml-vocab-bert-bge.gguf"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

failures=0
checks=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}
# expect_out WANT CMD...: the command exits 0 and prints exactly WANT.
expect_out() {
    local want=$1
    shift
    checks=$((checks + 1))
    local got rc
    got=$("$@" 2>"$tmp/err")
    rc=$?
    if [ $rc -ne 0 ]; then
        fail "$* exited $rc: $(head -c 300 "$tmp/err")"
    elif [ "$got" != "$want" ]; then
        fail "$*: got '$got', want '$want'"
    fi
}
# expect_rc WANT CMD...: the command exits WANT with a one-line error.
expect_rc() {
    local want=$1
    shift
    checks=$((checks + 1))
    "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [ $rc -ne "$want" ]; then
        fail "$*: exit $rc, want $want"
    elif [ "$want" -eq 1 ] && [ "$(grep -c . "$tmp/err")" -ne 1 ]; then
        fail "$*: want one error line, got: $(cat "$tmp/err")"
    fi
}

# A model: BOS is added unless --no-bos.
expect_out "[1, 403, 407, 261, 378]" "$EMBER_BIN" tokenize -m "$stories" -p "Once upon a time" --ids
expect_out "[403, 407, 261, 378]" "$EMBER_BIN" tokenize -m "$stories" -p "Once upon a time" --ids --no-bos
expect_out "1 -> '<s>'
403 -> ' Once'
407 -> ' upon'
261 -> ' a'
378 -> ' time'" "$EMBER_BIN" tokenize -m "$stories" -p "Once upon a time"
expect_out "[]" "$EMBER_BIN" tokenize -m "$stories" -p "" --ids --no-bos

# The text from a file, bytes as they are (a trailing newline is text).
printf 'Once upon a time' >"$tmp/prompt.txt"
expect_out "[1, 403, 407, 261, 378]" "$EMBER_BIN" tokenize -m "$stories" -f "$tmp/prompt.txt" --ids
printf ' Hello world\n' >"$tmp/hello.txt"
expect_out "[18435, 995, 198]" "$EMBER_BIN" tokenize -m "$gpt2" -f "$tmp/hello.txt" --ids

# Vocabulary-only files; special-token text only with --parse-special.
expect_out "[15496, 995]" "$EMBER_BIN" tokenize -m "$gpt2" -p "Hello world" --ids
expect_out "[15496, 50256]" "$EMBER_BIN" tokenize -m "$gpt2" -p "Hello<|endoftext|>" --ids --parse-special
expect_out "[15496, 27, 91, 437, 1659, 5239, 91, 29]" "$EMBER_BIN" tokenize -m "$gpt2" -p "Hello<|endoftext|>" --ids
expect_out "15496 -> 'Hello'
50256 -> '<|endoftext|>'" "$EMBER_BIN" tokenize -m "$gpt2" -p "Hello<|endoftext|>" --parse-special
# WordPiece adds [CLS] and [SEP].
expect_out "[101, 7592, 2088, 102]" "$EMBER_BIN" tokenize -m "$bert" -p "Hello World" --ids

# Errors: usage problems exit 2, runtime problems 1 with one line.
expect_rc 2 "$EMBER_BIN" tokenize -p "x"
expect_rc 2 "$EMBER_BIN" tokenize -m "$gpt2"
expect_rc 2 "$EMBER_BIN" tokenize -m "$gpt2" -p x -f "$tmp/prompt.txt"
expect_rc 2 "$EMBER_BIN" tokenize -m "$gpt2" -p x --bogus
expect_rc 1 "$EMBER_BIN" tokenize -m "$tmp/missing.gguf" -p x
head -c 1000 "$gpt2" >"$tmp/truncated.gguf"
expect_rc 1 "$EMBER_BIN" tokenize -m "$tmp/truncated.gguf" -p x
expect_rc 1 "$EMBER_BIN" tokenize -m "$gpt2" -f "$tmp/missing.txt"
expect_rc 0 "$EMBER_BIN" tokenize --help

echo "$((checks - failures)) passed, $failures failed"
[ $failures -eq 0 ]
