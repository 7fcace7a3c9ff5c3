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

. "$(dirname "$0")/lib.sh"
need_python jinja2 python3-jinja2
need_data templates
need_tools render_template
DATA=$EMBER_TEST_DATA
RENDER=$EMBER_TOOLS_DIR/render_template
here=$(cd "$(dirname "$0")" && pwd)

"$PY" "$here/chat_reference.py" "$DATA/templates" "$here/chat_conversations.json" "$TMP" \
    "$here/chat_snippets.json" || {
    echo "FAIL: chat_reference.py failed"
    exit 1
}

pass=0 fail=0 raised=0 spass=0
for tpl in "$DATA"/templates/*.jinja; do
    base=$(basename "$tpl" .jinja)
    for conv in "$TMP"/conv/*.json; do
        cname=$(basename "$conv" .json)
        exp="$TMP/expected/${base}__${cname}"
        "$RENDER" "$tpl" "$conv" >"$TMP/got.out" 2>"$TMP/got.err"
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
            echo "MISMATCH $base / $cname: ember failed: $(head -c 300 "$TMP/got.err" | tr '\n' ' ')"
        elif cmp -s "$exp.out" "$TMP/got.out"; then
            pass=$((pass + 1))
        else
            fail=$((fail + 1))
            echo "MISMATCH $base / $cname: output differs:"
            diff <(cat "$exp.out"; echo) <(cat "$TMP/got.out"; echo) | head -20
        fi
    done
done
# The snippets: one feature each, rendered for one conversation.
conv="$TMP/conv/system_multi.json"
for tpl in "$TMP"/snippets/*.jinja; do
    base=$(basename "$tpl" .jinja)
    exp="$TMP/expected/${base}__system_multi"
    "$RENDER" "$tpl" "$conv" >"$TMP/got.out" 2>"$TMP/got.err"
    rc=$?
    if [ -f "$exp.err" ]; then
        if [ $rc -eq 1 ]; then
            spass=$((spass + 1))
        else
            fail=$((fail + 1))
            echo "MISMATCH snippet $base: jinja2 raised ($(head -c 200 "$exp.err" | tr '\n' ' ')) but ember gave rc=$rc: $(head -c 300 "$TMP/got.out")"
            echo "  template: $(head -c 300 "$tpl")"
        fi
    elif [ $rc -ne 0 ]; then
        fail=$((fail + 1))
        echo "MISMATCH snippet $base: ember failed: $(head -c 300 "$TMP/got.err" | tr '\n' ' ')"
        echo "  template: $(head -c 300 "$tpl")"
    elif cmp -s "$exp.out" "$TMP/got.out"; then
        spass=$((spass + 1))
    else
        fail=$((fail + 1))
        echo "MISMATCH snippet $base: template: $(head -c 300 "$tpl")"
        echo "  jinja2: $(head -c 400 "$exp.out")"
        echo "  ember:  $(head -c 400 "$TMP/got.out")"
    fi
done
echo "templates: $pass pairs match ($raised of them raise in both); snippets: $spass match; $fail differ"
[ $fail -eq 0 ]
