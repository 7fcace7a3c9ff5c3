#!/usr/bin/env bash
# Acceptance of `ember quantize`: the tiny-256 F32 model quantized to every
# mix must hold exactly the tensor types of the file llama.cpp's quantizer
# made for that mix (where shared/ has one) or the types the mix's rules
# give (where it has none); each plain type with --pure must convert every
# matrix; every result must run; stories260K in Q8_0 must generate the same
# greedy text as in F32; metadata must be copied; threads must not change
# the bytes; and bad requests must fail with one clear line.
. "$(dirname "$0")/lib.sh"
need_data
T256="$EMBER_TEST_DATA/models/tiny-256"
M="$T256/tiny-256-f32.gguf"
S="$EMBER_TEST_DATA/models/stories260K.gguf"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# "name type" of every tensor, sorted, from ember inspect's tensor table.
types() {
  "$EMBER_BIN" inspect "$1" | awk '/^tensors:/{t=1; next} t && NF==0 {t=0} t && $1 != "name" {print $1, $2}' | sort
}
# The value of one metadata key, from ember inspect.
meta() { "$EMBER_BIN" inspect "$1" | awk -v k="$2" '$1 == k {print $3}'; }

# Runs a model for a few greedy tokens; true when it exits 0 with output.
runs() {
  "$EMBER_BIN" run -m "$1" -p "Once upon a time" -n 8 --temp 0 -t 2 >"$tmp/run.out" 2>"$tmp/run.err" \
    && [ -s "$tmp/run.out" ]
}

# The types the rules give the tiny-256 model (4 layers, 2 query heads per
# KV head, rows of 256 and 768) for the mixes shared/ has no file of.
expected() { # mix
  types "$M" | awk -v mix="$1" '
    function pick(name, base,   l) {
      if (name ~ /norm/) return "F32"
      if (mix ~ /^Q[345]_K$/) return base       # pure
      if (mix == "F32") return "F32"
      if (name == "output.weight") return "Q6_K"
      split(name, l, ".")
      if (mix == "Q3_K_L" && name ~ /attn_v|attn_output|ffn_down/) return "Q5_K"
      if (mix == "Q4_K_S" && name ~ /attn_v/ && l[2] < 4) return "Q5_K"
      return base
    }
    { base = mix; sub(/_[SML]$/, "", base); print $1, pick($1, base) }' | sort
}

# 1. Mixes with a llama.cpp-made reference file: identical tensor types
#    and file type, and the result runs.
for mix in F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K_M Q4_K_M Q5_K_M Q6_K IQ4_NL IQ4_XS; do
  out="$tmp/t-$mix.gguf"
  if ! "$EMBER_BIN" quantize "$M" "$out" "$mix" -t 2 >"$tmp/q.out" 2>"$tmp/q.err"; then
    bad "$mix: quantize failed: $(tail -1 "$tmp/q.err")"; continue
  fi
  ref="$T256/tiny-256-$mix.gguf"
  if diff <(types "$out") <(types "$ref") >"$tmp/d.txt"; then ok "$mix: tensor types match llama.cpp's file"
  else bad "$mix: tensor types differ from llama.cpp's file"; head -6 "$tmp/d.txt"; fi
  ft=$(meta "$out" general.file_type); rft=$(meta "$ref" general.file_type)
  [ -n "$ft" ] && [ "$ft" = "$rft" ] && ok "$mix: general.file_type $ft" || bad "$mix: file_type '$ft', llama.cpp '$rft'"
  [ "$(meta "$out" general.quantization_version)" = 2 ] && ok "$mix: quantization_version 2" \
    || bad "$mix: quantization_version"
  runs "$out" && ok "$mix: runs" || bad "$mix: does not run: $(tail -1 "$tmp/run.err")"
  grep -q "^model size: " "$tmp/q.out" && ok "$mix: size summary" || bad "$mix: no size summary"
done

# 2. Mixes without a reference file: the rules' types.
for mix in F32 Q3_K_S Q3_K_L Q4_K_S Q5_K_S Q3_K Q4_K Q5_K; do
  out="$tmp/t-$mix.gguf"
  if ! "$EMBER_BIN" quantize "$M" "$out" "$mix" >"$tmp/q.out" 2>"$tmp/q.err"; then
    bad "$mix: quantize failed: $(tail -1 "$tmp/q.err")"; continue
  fi
  if diff <(types "$out") <(expected "$mix") >"$tmp/d.txt"; then ok "$mix: tensor types as the rules say"
  else bad "$mix: tensor types"; head -6 "$tmp/d.txt"; fi
  runs "$out" && ok "$mix: runs" || bad "$mix: does not run: $(tail -1 "$tmp/run.err")"
done
[ "$(meta "$tmp/t-Q4_K_S.gguf" general.file_type)" = 14 ] && ok "Q4_K_S: file_type 14" || bad "Q4_K_S file_type"
[ "$(meta "$tmp/t-Q3_K_L.gguf" general.file_type)" = 13 ] && ok "Q3_K_L: file_type 13" || bad "Q3_K_L file_type"

# 3. Every type ember writes, with --pure: every matrix in that type, the
#    norms untouched, and the model runs.
for ty in F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL IQ4_XS; do
  mix=$ty
  case $ty in Q3_K|Q4_K|Q5_K) mix=${ty}_M ;; esac
  out="$tmp/p-$ty.gguf"
  if ! "$EMBER_BIN" quantize --pure "$M" "$out" "$mix" >/dev/null 2>"$tmp/q.err"; then
    bad "pure $ty: quantize failed: $(tail -1 "$tmp/q.err")"; continue
  fi
  wrong=$(types "$out" | awk -v ty="$ty" '($1 ~ /norm/ && $2 != "F32") || ($1 !~ /norm/ && $2 != ty)' | head -3)
  [ -z "$wrong" ] && ok "pure $ty: every matrix $ty" || bad "pure $ty: $wrong"
  runs "$out" && ok "pure $ty: runs" || bad "pure $ty: does not run: $(tail -1 "$tmp/run.err")"
done

# 4. Metadata: every key of the input is in the output with the same value,
#    but for the two keys the quantizer sets.
keys() { "$EMBER_BIN" inspect "$1" | awk '/^metadata:/{m=1; next} /^tensors:/{m=0} m && NF' \
           | grep -v -e general.file_type -e general.quantization_version | sort; }
missing=$(comm -23 <(keys "$M") <(keys "$tmp/t-Q4_K_M.gguf"))
[ -z "$missing" ] && ok "metadata copied" || bad "metadata lost: $missing"

# 5. The thread count changes nothing in the file.
"$EMBER_BIN" quantize "$M" "$tmp/t1.gguf" Q4_K_M -t 1 >/dev/null 2>&1
"$EMBER_BIN" quantize "$M" "$tmp/t3.gguf" Q4_K_M -t 3 >/dev/null 2>&1
cmp -s "$tmp/t1.gguf" "$tmp/t3.gguf" && cmp -s "$tmp/t1.gguf" "$tmp/t-Q4_K_M.gguf" \
  && ok "1, 2 and 3 threads write the same bytes" || bad "output depends on the thread count"

# 6. stories260K: Q8_0 keeps the greedy text (first 20 tokens identical);
#    rows of 64 and 172 force fallbacks in Q4_K_M, which must still run.
if "$EMBER_BIN" quantize "$S" "$tmp/s-q8.gguf" Q8_0 >/dev/null 2>"$tmp/q.err"; then
  a=$("$EMBER_BIN" run -m "$S" --temp 0 -n 40 2>/dev/null)
  b=$("$EMBER_BIN" run -m "$tmp/s-q8.gguf" --temp 0 -n 40 2>/dev/null)
  ia=$("$EMBER_BIN" tokenize -m "$S" --ids -p "$a" | tr -d '[] ' | cut -d, -f1-21)
  ib=$("$EMBER_BIN" tokenize -m "$S" --ids -p "$b" | tr -d '[] ' | cut -d, -f1-21)
  n=$(echo "$ia" | tr ',' '\n' | wc -l)
  if [ -n "$a" ] && [ "$n" -ge 21 ] && [ "$ia" = "$ib" ]; then ok "stories260K Q8_0: first 20 greedy tokens as F32"
  else bad "stories260K Q8_0 greedy differs"; echo " F32: $a"; echo " Q8_0: $b"; fi
else bad "stories260K Q8_0: $(tail -1 "$tmp/q.err")"; fi
if "$EMBER_BIN" quantize "$S" "$tmp/s-q4km.gguf" Q4_K_M >"$tmp/q.out" 2>"$tmp/q.err"; then
  st=$(types "$tmp/s-q4km.gguf")
  echo "$st" | grep -q "^blk.0.attn_q.weight Q5_0$" && echo "$st" | grep -q "^blk.0.ffn_down.weight F16$" \
    && echo "$st" | grep -q "^blk.2.attn_v.weight Q8_0$" && echo "$st" | grep -q "^output.weight Q8_0$" \
    && grep -q "fallback" "$tmp/q.out" && ok "stories260K Q4_K_M: fallbacks as llama.cpp takes them" \
    || bad "stories260K Q4_K_M fallback types"
  c=$("$EMBER_BIN" run -m "$tmp/s-q4km.gguf" --temp 0 -n 20 2>/dev/null)
  [ -n "$c" ] && ok "stories260K Q4_K_M runs: $c" || bad "stories260K Q4_K_M does not run"
else bad "stories260K Q4_K_M: $(tail -1 "$tmp/q.err")"; fi

# 7. Requantizing: refused without the flag, done (with a warning) with it.
Q40="$T256/tiny-256-Q4_0.gguf"
"$EMBER_BIN" quantize "$Q40" "$tmp/rq.gguf" Q4_K_M >/dev/null 2>"$tmp/e.txt"; rc=$?
[ $rc -eq 1 ] && [ "$(wc -l <"$tmp/e.txt")" -eq 1 ] && grep -q -- "--allow-requantize" "$tmp/e.txt" && [ ! -e "$tmp/rq.gguf" ] \
  && ok "requantize refused: $(cat "$tmp/e.txt")" || bad "requantize not refused (rc $rc)"
"$EMBER_BIN" quantize --allow-requantize "$Q40" "$tmp/rq.gguf" Q4_K_M >/dev/null 2>"$tmp/e.txt"; rc=$?
[ $rc -eq 0 ] && grep -q "warning" "$tmp/e.txt" && runs "$tmp/rq.gguf" \
  && [ "$(types "$tmp/rq.gguf")" = "$(types "$T256/tiny-256-Q4_K_M.gguf")" ] \
  && ok "--allow-requantize: converted, warned" || bad "--allow-requantize (rc $rc)"
# Nothing to convert (Q4_0 to the Q4_0 mix): a copy, no flag needed.
"$EMBER_BIN" quantize "$Q40" "$tmp/same.gguf" Q4_0 >/dev/null 2>&1 && [ "$(types "$tmp/same.gguf")" = "$(types "$Q40")" ] \
  && ok "same types: copied without requantizing" || bad "Q4_0 to Q4_0"

# 8. Bad requests: one line, exit 1 (bad input) or 2 (bad usage).
head -c 3000 "$M" >"$tmp/trunc.gguf"
printf 'not a model at all' >"$tmp/junk.gguf"
one_line 1 "truncated input" "$EMBER_BIN" quantize "$tmp/trunc.gguf" "$tmp/o.gguf" Q4_0
one_line 1 "not a GGUF file" "$EMBER_BIN" quantize "$tmp/junk.gguf" "$tmp/o.gguf" Q4_0
one_line 1 "missing input" "$EMBER_BIN" quantize /nonexistent.gguf "$tmp/o.gguf" Q4_0
one_line 1 "unwritable output" "$EMBER_BIN" quantize "$M" /nonexistent/dir/o.gguf Q4_0
one_line 1 "output is the input" "$EMBER_BIN" quantize "$tmp/t-Q8_0.gguf" "$tmp/t-Q8_0.gguf" Q8_0
one_line 2 "unknown type" "$EMBER_BIN" quantize "$M" "$tmp/o.gguf" Q9_K
one_line 2 "missing type" "$EMBER_BIN" quantize "$M" "$tmp/o.gguf"
one_line 2 "bad thread count" "$EMBER_BIN" quantize "$M" "$tmp/o.gguf" Q4_0 -t zero
one_line 2 "unknown option" "$EMBER_BIN" quantize "$M" "$tmp/o.gguf" Q4_0 --bogus
[ ! -e "$tmp/o.gguf" ] && ok "no output file after failures" || bad "a failed run left $tmp/o.gguf"
"$EMBER_BIN" quantize --help | grep -q "Q4_K_M" && ok "--help lists the mixes" || bad "--help"

finish
