#!/bin/bash
# test_templates.sh - ember's Jinja interpreter against Python's jinja2 on
# every chat template in $EMBER_TEST_DATA/templates.
#
# chat_reference.py renders each template for each conversation of
# chat_conversations.json (system and multi-turn, tools offered, assistant
# tool calls and tool results, unicode and special characters, extra
# variables such as documents, an empty conversation) as transformers'
# apply_chat_template does; tests/tools/render_template renders the same
# with ember.  Pass: byte-identical output, or both raise.  One line per
# mismatch and a summary; exit 1 on any mismatch, 77 (skip) without
# python3-jinja2 or the test data.

set -u

PY=/usr/bin/python3
if ! "$PY" -c 'import jinja2' 2>/dev/null; then
    echo "SKIP: $PY with jinja2 is needed (Debian: apt-get install python3-jinja2)"
    exit 77
fi
DATA=${EMBER_TEST_DATA:-}
if [ -z "$DATA" ] || [ ! -d "$DATA/templates" ]; then
    echo "SKIP: EMBER_TEST_DATA/templates is not available"
    exit 77
fi
RENDER=${EMBER_TOOLS_DIR:-}/render_template
if [ ! -x "$RENDER" ]; then
    echo "FAIL: $RENDER is missing (build the render_template tool)"
    exit 1
fi
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$PY" "$here/chat_reference.py" "$DATA/templates" "$here/chat_conversations.json" "$tmp" \
    "$here/chat_snippets.json" || {
    echo "FAIL: chat_reference.py failed"
    exit 1
}

pass=0 fail=0 raised=0 spass=0
for tpl in "$DATA"/templates/*.jinja; do
    base=$(basename "$tpl" .jinja)
    for conv in "$tmp"/conv/*.json; do
        cname=$(basename "$conv" .json)
        exp="$tmp/expected/${base}__${cname}"
        "$RENDER" "$tpl" "$conv" >"$tmp/got.out" 2>"$tmp/got.err"
        rc=$?
        if [ -f "$exp.err" ]; then
            if [ $rc -eq 1 ]; then
                pass=$((pass + 1)); raised=$((raised + 1))
            else
                fail=$((fail + 1))
                echo "MISMATCH $base / $cname: jinja2 raised ($(head -c 200 "$exp.err" | tr '\n' ' ')) but ember gave rc=$rc"
            fi
        elif [ $rc -ne 0 ]; then
            fail=$((fail + 1))
            echo "MISMATCH $base / $cname: ember failed: $(head -c 300 "$tmp/got.err" | tr '\n' ' ')"
        elif cmp -s "$exp.out" "$tmp/got.out"; then
            pass=$((pass + 1))
        else
            fail=$((fail + 1))
            echo "MISMATCH $base / $cname: output differs:"
            diff <(cat "$exp.out"; echo) <(cat "$tmp/got.out"; echo) | head -20
        fi
    done
done
# The snippets: one feature each, rendered for one conversation.
conv="$tmp/conv/system_multi.json"
for tpl in "$tmp"/snippets/*.jinja; do
    base=$(basename "$tpl" .jinja)
    exp="$tmp/expected/${base}__system_multi"
    "$RENDER" "$tpl" "$conv" >"$tmp/got.out" 2>"$tmp/got.err"
    rc=$?
    if [ -f "$exp.err" ]; then
        if [ $rc -eq 1 ]; then
            spass=$((spass + 1))
        else
            fail=$((fail + 1))
            echo "MISMATCH snippet $base: jinja2 raised ($(head -c 200 "$exp.err" | tr '\n' ' ')) but ember gave rc=$rc: $(head -c 300 "$tmp/got.out")"
            echo "  template: $(head -c 300 "$tpl")"
        fi
    elif [ $rc -ne 0 ]; then
        fail=$((fail + 1))
        echo "MISMATCH snippet $base: ember failed: $(head -c 300 "$tmp/got.err" | tr '\n' ' ')"
        echo "  template: $(head -c 300 "$tpl")"
    elif cmp -s "$exp.out" "$tmp/got.out"; then
        spass=$((spass + 1))
    else
        fail=$((fail + 1))
        echo "MISMATCH snippet $base: template: $(head -c 300 "$tpl")"
        echo "  jinja2: $(head -c 400 "$exp.out")"
        echo "  ember:  $(head -c 400 "$tmp/got.out")"
    fi
done
echo "templates: $pass pairs match ($raised of them raise in both); snippets: $spass match; $fail differ"
[ $fail -eq 0 ]
