#!/usr/bin/env bash
# Acceptance of `ember chat` on the real stories260K model: every answer
# must equal what `ember run` generates from the same rendered
# conversation, so the template, the BOS rule and the reuse of the cached
# prefix between turns are all checked against the plain engine.
. "$(dirname "$0")/lib.sh"
need_data
M="$EMBER_TEST_DATA/models/stories260K.gguf"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# chatml as the built-in writes it (no command substitution here: it
# would drop the newlines at the ends).
nl=$'\n'
turn() { REPLY="<|im_start|>$1$nl$2<|im_end|>$nl"; }
gen="<|im_start|>assistant$nl"

printf 'Once upon a time\nThe cat sat\n' |
  "$EMBER_BIN" chat -m "$M" --chat-template chatml --temp 0 -n 24 -t 2 >"$tmp/chat.txt" 2>"$tmp/chat.err"
rc=$?
[ $rc -eq 0 ] && ok "two turns, exit 0" || { bad "chat exit $rc"; cat "$tmp/chat.err"; }
# Each answer is printed followed by a newline, as `ember run` prints its
# text: the chat's output must be the two runs' outputs one after the other.
turn user 'Once upon a time'; p1="$REPLY$gen"
"$EMBER_BIN" run -m "$M" --temp 0 -n 24 -t 2 -p "$p1" >"$tmp/run1.txt" 2>/dev/null
# The second turn reuses the cache; its answer must still be the one a
# fresh decode of the whole conversation gives.
a1=$(head -c -1 "$tmp/run1.txt"; printf x); a1=${a1%x}
turn user 'The cat sat'; p2="$p1$a1<|im_end|>$nl$REPLY$gen"
"$EMBER_BIN" run -m "$M" --temp 0 -n 24 -t 2 -p "$p2" >"$tmp/run2.txt" 2>/dev/null
cat "$tmp/run1.txt" "$tmp/run2.txt" >"$tmp/runs.txt"
if [ -s "$tmp/run1.txt" ] && cmp -s "$tmp/chat.txt" "$tmp/runs.txt"; then
  ok "both answers equal ember run on the rendered conversation (cached prefix reused)"
else bad "answers differ from ember run"; diff "$tmp/chat.txt" "$tmp/runs.txt" | head -8; fi

# /reset forgets the conversation: the same question gives the first answer.
printf 'Once upon a time\n/reset\nOnce upon a time\n' |
  "$EMBER_BIN" chat -m "$M" --chat-template chatml --temp 0 -n 24 -t 2 >"$tmp/reset.txt" 2>/dev/null
cat "$tmp/run1.txt" "$tmp/run1.txt" | cmp -s - "$tmp/reset.txt" && ok "/reset starts over" || bad "/reset: $(cat "$tmp/reset.txt")"

# The rendered prompt is shown on request.
printf 'Hello\n' | "$EMBER_BIN" chat -m "$M" --chat-template chatml -n 2 --verbose-prompt >/dev/null 2>"$tmp/v.err"
grep -q '<|im_start|>user' "$tmp/v.err" && ok "--verbose-prompt shows the rendered prompt" || bad "--verbose-prompt"

# A system message opens the conversation.
printf 'Hi\n' | "$EMBER_BIN" chat -m "$M" --chat-template chatml --system "Be brief." -n 2 --verbose-prompt \
  >/dev/null 2>"$tmp/s.err"
grep -q '<|im_start|>system' "$tmp/s.err" && ok "--system" || bad "--system"

# A template file works, a bad name fails with one line, a template that
# raises refuses the turn without ending the chat.
printf '{%% for m in messages %%}{{ m.role }}: {{ m.content }}\n{%% endfor %%}assistant:' >"$tmp/t.jinja"
printf 'Hi\n' | "$EMBER_BIN" chat -m "$M" --chat-template "$tmp/t.jinja" -n 2 --verbose-prompt >/dev/null 2>"$tmp/f.err"
grep -q '^user: Hi' "$tmp/f.err" && ok "template from a file" || bad "template file: $(cat "$tmp/f.err")"
"$EMBER_BIN" chat -m "$M" --chat-template no-such-template </dev/null >/dev/null 2>"$tmp/b.err"
rc=$?
[ $rc -eq 1 ] && grep -q "no-such-template" "$tmp/b.err" && ok "unknown template refused (rc 1)" || bad "unknown template: rc $rc"
printf '{{ raise_exception("no " ~ messages[-1].content) }}' >"$tmp/r.jinja"
printf 'one\ntwo\n' | "$EMBER_BIN" chat -m "$M" --chat-template "$tmp/r.jinja" -n 2 >/dev/null 2>"$tmp/r.err"
rc=$?
[ $rc -eq 0 ] && grep -q "no one" "$tmp/r.err" && grep -q "no two" "$tmp/r.err" && ok "a raising template refuses each turn, chat goes on" ||
  bad "raising template: rc $rc $(cat "$tmp/r.err")"

# Usage errors.
"$EMBER_BIN" chat --chat-template chatml </dev/null >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] && ok "missing -m is a usage error" || bad "missing -m: rc $rc"
"$EMBER_BIN" chat --help >"$tmp/h.txt" 2>&1; rc=$?
[ $rc -eq 0 ] && grep -q -- "--chat-template" "$tmp/h.txt" && ok "--help" || bad "--help rc $rc"

finish
