#!/usr/bin/env bash
# Acceptance of `ember eval` on the real models in ../shared: perplexity of
# stories260K on TinyStories is small and finite and printed the way
# llama-perplexity prints it; every tiny-256 format gives a finite
# perplexity; every benchmark task runs (small --limit) and reproduces
# itself; KL divergence orders the quantizations sensibly; the report is
# written (run, or merged from --results) and opens in headless Chromium
# with one chart mark per model; bad input fails cleanly.
#
# Everything is kept small (few chunks, few items) for a 2-core machine.
# Exit 77 (skip) without EMBER_TEST_DATA, or when every other check passed
# but Chromium (Debian package chromium) is absent.
. "$(dirname "$0")/lib.sh"
need_data
D=$EMBER_TEST_DATA
M="$D/models/stories260K.gguf"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# The first 60 KB of TinyStories: plenty of tokens for the chunks below,
# and quick to tokenize (the whole file takes over a second every run).
TXT="$tmp/tinystories.txt"
head -c 60000 "$D/text/tinystories_val.txt" >"$TXT"
head -c 8000 "$TXT" >"$tmp/small.txt"
E() { "$EMBER_BIN" eval "$@"; }
# Floating-point comparisons through awk: cmp_lt A B is true when A < B.
cmp_lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 == a && a < b) }'; }

# ---------------------------------------------------------------- ppl
E ppl -m "$M" -f "$TXT" -c 256 --chunks 8 -t 2 >"$tmp/ppl.out" 2>"$tmp/ppl.err"; rc=$?
ppl=$(sed -n 's/^Final estimate: PPL = \([0-9.]*\) +\/- \([0-9.]*\)$/\1/p' "$tmp/ppl.out")
if [ $rc -eq 0 ] && [ -n "$ppl" ] && cmp_lt 1 "$ppl" && cmp_lt "$ppl" 20; then ok "stories260K PPL $ppl (c 256, 8 chunks)"
else bad "stories260K PPL '$ppl' rc $rc: $(tail -1 "$tmp/ppl.err")"; fi
grep -Eq '^\[1\][0-9]+\.[0-9]{4},\[2\][0-9.]+,.*\[8\][0-9.]+,$' "$tmp/ppl.out" \
  && ok "running values [1]..[8]" || bad "running values: $(head -1 "$tmp/ppl.out")"
# The last running value is the final estimate.
last=$(head -1 "$tmp/ppl.out" | sed 's/.*\[8\]\([0-9.]*\),$/\1/')
[ "$last" = "$ppl" ] && ok "last running value = final" || bad "last running value $last vs $ppl"
# Same figures whatever the batch split: chunks in slices of 100 rows.
E ppl -m "$M" -f "$TXT" -c 256 --chunks 8 -b 100 -t 2 2>/dev/null | grep -q "PPL = $ppl " \
  && ok "same PPL with -b 100" || bad "PPL differs with -b 100"

for f in "$D"/models/tiny-256/*.gguf; do
  out=$(E ppl -m "$f" -f "$tmp/small.txt" -c 128 --chunks 2 2>"$tmp/err.txt" | sed -n 's/^Final estimate: PPL = \([0-9.]*\) .*/\1/p')
  if [ -n "$out" ] && cmp_lt 1 "$out" && cmp_lt "$out" 1024; then ok "ppl $(basename "$f" .gguf): $out"
  else bad "ppl $(basename "$f"): '$out' $(tail -1 "$tmp/err.txt")"; fi
done

# ----------------------------------------------------------------- mc
for t in arc_easy arc_challenge piqa winogrande hellaswag lambada; do
  if E mc -m "$M" --task $t --limit 6 -t 2 --json "$tmp/$t.json" >"$tmp/$t.out" 2>"$tmp/$t.err" \
     && grep -Eq '^acc      = (0|1)\.[0-9]{4} \+/- [0-9.]+$' "$tmp/$t.out"; then
    ok "mc $t: $(grep '^acc ' "$tmp/$t.out")"
  else bad "mc $t: $(tail -1 "$tmp/$t.err")"; fi
done
grep -q '^acc_norm = ' "$tmp/arc_easy.out" && ! grep -q '^acc_norm' "$tmp/winogrande.out" \
  && ok "acc_norm where the harness reports it" || bad "acc_norm lines"
grep -q '^ppl      = ' "$tmp/lambada.out" && ok "lambada perplexity" || bad "lambada perplexity"
grep -q '"arc_easy"' "$tmp/arc_easy.json" && ok "mc --json" || bad "mc --json"
E mc -m "$M" --task arc_easy --limit 6 -t 1 2>/dev/null >"$tmp/again.out"
cmp -s "$tmp/again.out" "$tmp/arc_easy.out" && ok "mc reproducible (and thread-count independent)" \
  || bad "mc differs between runs"
E mc -m "$M" --task arc_easy --data "$D/evals/arc_easy.jsonl" --limit 6 -t 2 2>/dev/null >"$tmp/again.out"
cmp -s "$tmp/again.out" "$tmp/arc_easy.out" && ok "--data FILE" || bad "--data FILE"

# ---------------------------------------------------------------- kld
T256="$D/models/tiny-256"
kld_of() {
  E kld --base "$T256/tiny-256-f32.gguf" -m "$T256/tiny-256-$1.gguf" -f "$tmp/small.txt" -c 128 --chunks 2 2>"$tmp/kerr.txt" \
    | sed -n 's/^Mean    KLD: \([0-9.e-]*\) .*/\1/p'
}
k8=$(kld_of Q8_0); k4=$(kld_of Q4_0); kf=$(kld_of F16)
if [ -n "$k8" ] && [ -n "$k4" ] && [ -n "$kf" ] && cmp_lt "$kf" "$k8" && cmp_lt "$k8" "$k4"; then
  ok "KLD from f32: F16 $kf < Q8_0 $k8 < Q4_0 $k4"
else bad "KLD order F16 '$kf' Q8_0 '$k8' Q4_0 '$k4' $(tail -1 "$tmp/kerr.txt")"; fi
E kld --base "$T256/tiny-256-f32.gguf" -m "$T256/tiny-256-Q8_0.gguf" -f "$tmp/small.txt" -c 128 --chunks 2 \
  --json "$tmp/kld.json" >"$tmp/kld.out" 2>/dev/null
grep -q '^Same top-1 : ' "$tmp/kld.out" && grep -q '^99.0%   KLD: ' "$tmp/kld.out" && grep -q '^Delta PPL  : ' "$tmp/kld.out" \
  && grep -q '"p99"' "$tmp/kld.json" && ok "kld report lines and --json" || bad "kld output"
E kld --base "$M" -m "$D/models/llama-2-tiny-random.gguf" -f "$tmp/small.txt" -c 64 >/dev/null 2>"$tmp/e.txt"; rc=$?
[ $rc -eq 1 ] && [ "$(wc -l <"$tmp/e.txt")" -eq 1 ] && grep -q vocabular "$tmp/e.txt" \
  && ok "kld vocabulary mismatch: $(cat "$tmp/e.txt")" || bad "kld vocabulary mismatch rc $rc"

# ------------------------------------------------------------- report
E report --models "$M" "$T256/tiny-256-Q8_0.gguf" "$T256/tiny-256-Q4_0.gguf" --tasks arc_easy piqa --limit 4 \
  -f "$tmp/small.txt" -c 128 --chunks 1 -t 2 --price-per-hour 1.5 --bench-gen 8 --bench-prompt 8 --bench-reps 1 --read-bw 10 \
  -o "$tmp/report.html" >"$tmp/rep.out" 2>"$tmp/rep.err"; rc=$?
if [ $rc -eq 0 ] && [ -s "$tmp/report.html" ] && [ -s "$tmp/report.json" ]; then ok "report written"
else bad "report rc $rc: $(tail -1 "$tmp/rep.err")"; fi
n_models=$(grep -c '"ember_eval": 1' "$tmp/report.json" 2>/dev/null)
[ "$n_models" = 3 ] && grep -q '"pareto": true' "$tmp/report.json" && grep -q '"usd_per_mtok"' "$tmp/report.json" \
  && ok "report.json: 3 models, a Pareto front" || bad "report.json models '$n_models'"

# The same report from records written earlier (--json), plus one run.
E ppl -m "$M" -f "$tmp/small.txt" -c 128 --chunks 1 --json "$tmp/r_ppl.json" >/dev/null 2>&1
E mc -m "$M" --task arc_easy --limit 4 --json "$tmp/r_mc.json" >/dev/null 2>&1
E report --results "$tmp/r_ppl.json" "$tmp/r_mc.json" --models "$T256/tiny-256-Q8_0.gguf" --tasks arc_easy \
  --limit 4 -t 2 --bench-gen 8 --bench-prompt 8 --bench-reps 1 --read-bw 10 -o "$tmp/merged.html" >/dev/null 2>"$tmp/rep.err"; rc=$?
if [ $rc -eq 0 ] && [ "$(grep -c '"ember_eval": 1' "$tmp/merged.json")" = 2 ] && grep -q '"value"' "$tmp/merged.json" \
   && grep -q '"ms_per_token"' "$tmp/merged.json"; then ok "report merges --results with a run"
else bad "report --results rc $rc: $(tail -1 "$tmp/rep.err")"; fi

# A record naming a model this machine lacks is shown without a cost.
printf '{"ember_eval": 1, "model": "/elsewhere/m.gguf", "ppl": {"value": 5.5, "se": 0.1, "ctx": 512, "chunks": 3}}\n' \
  >"$tmp/far.json"
E report --results "$tmp/far.json" "$tmp/r_ppl.json" --quality ppl -t 2 --bench-gen 8 --bench-prompt 8 --bench-reps 1 \
  --read-bw 10 -o "$tmp/far.html" >/dev/null 2>"$tmp/rep.err"; rc=$?
[ $rc -eq 0 ] && grep -q "warning: /elsewhere/m.gguf" "$tmp/rep.err" && [ "$(grep -c 'class="mark' "$tmp/far.html")" = 1 ] \
  && ok "record of an absent model: listed, not plotted" || bad "absent model rc $rc: $(tail -1 "$tmp/rep.err")"

# ---------------------------------------------------------- bad input
one_line() { # EXPECTED_RC LABEL -- command...
  local want=$1 label=$2; shift 3
  "$@" >/dev/null 2>"$tmp/e.txt"; local rc=$?
  if [ $rc -eq "$want" ] && { [ "$want" -eq 2 ] || [ "$(wc -l <"$tmp/e.txt")" -eq 1 ]; }; then ok "$label: $(head -1 "$tmp/e.txt")"
  else bad "$label: rc $rc, $(wc -l <"$tmp/e.txt") lines: $(head -2 "$tmp/e.txt")"; fi
}
: >"$tmp/empty.txt"
printf 'Once upon a time there was a cat.' >"$tmp/short.txt"
printf '{"query": "q", "choices": ["a", "b"], "gold": 0}\n{"query": "q", "choices": ["a", "b"], "gold": 5}\n' >"$tmp/bad.jsonl"
one_line 1 "missing model" -- E ppl -m /nonexistent.gguf -f "$TXT"
one_line 1 "missing text" -- E ppl -m "$M" -f /nonexistent.txt
one_line 1 "empty text" -- E ppl -m "$M" -f "$tmp/empty.txt"
one_line 1 "text shorter than 2 x ctx" -- E ppl -m "$M" -f "$tmp/short.txt" -c 64
one_line 1 "ctx beyond the model's" -- E ppl -m "$M" -f "$TXT" -c 4096
one_line 1 "malformed data line" -- E mc -m "$M" --task arc_easy --data "$tmp/bad.jsonl"
grep -q ':2: ' "$tmp/e.txt" && ok "the error names line 2" || bad "line number missing: $(cat "$tmp/e.txt")"
one_line 1 "missing data file" -- E mc -m "$M" --task piqa --data /nonexistent.jsonl
one_line 1 "bad results file" -- E report --results "$tmp/bad.jsonl" -o "$tmp/x.html" --no-bench
one_line 2 "unknown task" -- E mc -m "$M" --task mmlu
one_line 2 "no model" -- E ppl -f "$TXT"
one_line 2 "bad --chunks" -- E ppl -m "$M" -f "$TXT" --chunks abc
one_line 2 "unknown option" -- E ppl -m "$M" -f "$TXT" --bogus
one_line 2 "option of another command" -- E ppl -m "$M" -f "$TXT" --task arc_easy
one_line 2 "report without -o" -- E report --models "$M"
one_line 2 "unknown subcommand" -- E bogus
E --help | grep -q "ember eval ppl" && ok "--help" || bad "--help"

# ----------------------------------------------------------- chromium
have_chromium=1
CHROME=/usr/bin/chromium
if [ ! -x "$CHROME" ]; then
  have_chromium=0
  echo "note: $CHROME is absent (Debian package chromium): the report was not opened in a browser"
elif [ -s "$tmp/report.html" ]; then
  prof=$(mktemp -d)
  timeout 120 "$CHROME" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync --user-data-dir="$prof" \
    --dump-dom "file://$tmp/report.html" >"$tmp/dom.html" 2>/dev/null
  rm -rf "$prof"
  marks=$(grep -o 'class="mark' "$tmp/dom.html" | wc -l)
  [ "$marks" -eq 3 ] && grep -q '<svg id="chart"' "$tmp/dom.html" && grep -q '<table id="results"' "$tmp/dom.html" \
    && ok "Chromium renders the report: $marks chart marks for 3 models" || bad "Chromium DOM: $marks marks"
fi

[ $have_chromium -eq 1 ] || skipped="chromium absent; every other check passed"
finish
