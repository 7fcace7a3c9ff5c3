#!/usr/bin/env bash
# test_tokenize.sh - `ember tokenize` on a model and on vocabulary-only
# files, its two output forms, its options and its errors.
#
# Needs $EMBER_BIN (the ember program) and $EMBER_TEST_DATA (skips with 77
# when that is unset).  The expected ids are the tokenizers' reference ids
# (stories260K's greedy output starts with the tokens of "Once upon a
# time"; GPT-2's are those of llama.cpp's test vectors).
. "$(dirname "$0")/lib.sh"
need_data
stories="$EMBER_TEST_DATA/models/stories260K.gguf"
gpt2="$EMBER_TEST_DATA/tokenizers/llama.cpp-vocab/ggml-vocab-gpt-2.gguf"
bert="$EMBER_TEST_DATA/tokenizers/llama.cpp-vocab/ggml-vocab-bert-bge.gguf"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A model: BOS is added unless --no-bos.
prints "[1, 403, 407, 261, 378]" "$EMBER_BIN" tokenize -m "$stories" -p "Once upon a time" --ids
prints "[403, 407, 261, 378]" "$EMBER_BIN" tokenize -m "$stories" -p "Once upon a time" --ids --no-bos
prints "1 -> '<s>'
403 -> ' Once'
407 -> ' upon'
261 -> ' a'
378 -> ' time'" "$EMBER_BIN" tokenize -m "$stories" -p "Once upon a time"
prints "[]" "$EMBER_BIN" tokenize -m "$stories" -p "" --ids --no-bos

# The text from a file, bytes as they are (a trailing newline is text).
printf 'Once upon a time' >"$tmp/prompt.txt"
prints "[1, 403, 407, 261, 378]" "$EMBER_BIN" tokenize -m "$stories" -f "$tmp/prompt.txt" --ids
printf ' Hello world\n' >"$tmp/hello.txt"
prints "[18435, 995, 198]" "$EMBER_BIN" tokenize -m "$gpt2" -f "$tmp/hello.txt" --ids

# Vocabulary-only files; special-token text only with --parse-special.
prints "[15496, 995]" "$EMBER_BIN" tokenize -m "$gpt2" -p "Hello world" --ids
prints "[15496, 50256]" "$EMBER_BIN" tokenize -m "$gpt2" -p "Hello<|endoftext|>" --ids --parse-special
prints "[15496, 27, 91, 437, 1659, 5239, 91, 29]" "$EMBER_BIN" tokenize -m "$gpt2" -p "Hello<|endoftext|>" --ids
prints "15496 -> 'Hello'
50256 -> '<|endoftext|>'" "$EMBER_BIN" tokenize -m "$gpt2" -p "Hello<|endoftext|>" --parse-special
# WordPiece adds [CLS] and [SEP].
prints "[101, 7592, 2088, 102]" "$EMBER_BIN" tokenize -m "$bert" -p "Hello World" --ids

# Errors: usage problems exit 2, runtime problems 1 with one line.
exits 2 "tokenize -p x" "$EMBER_BIN" tokenize -p "x"
exits 2 "tokenize -m gpt-2" "$EMBER_BIN" tokenize -m "$gpt2"
exits 2 "tokenize -m gpt-2 -p x -f prompt.txt" "$EMBER_BIN" tokenize -m "$gpt2" -p x -f "$tmp/prompt.txt"
exits 2 "tokenize -m gpt-2 -p x --bogus" "$EMBER_BIN" tokenize -m "$gpt2" -p x --bogus
one_line 1 "tokenize -m missing.gguf -p x" "$EMBER_BIN" tokenize -m "$tmp/missing.gguf" -p x
head -c 1000 "$gpt2" >"$tmp/truncated.gguf"
one_line 1 "tokenize -m truncated.gguf -p x" "$EMBER_BIN" tokenize -m "$tmp/truncated.gguf" -p x
one_line 1 "tokenize -m gpt-2 -f missing.txt" "$EMBER_BIN" tokenize -m "$gpt2" -f "$tmp/missing.txt"
exits 0 "tokenize --help" "$EMBER_BIN" tokenize --help

finish
