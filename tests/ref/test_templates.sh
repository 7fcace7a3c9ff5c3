#!/bin/bash
# test_templates.sh - ember's Jinja interpreter against Python's jinja2 on
# every chat template in $EMBER_TEST_DATA/templates.
#
# chat_reference.py renders each template for each conversation of
# chat_conversations.json (system and multi-turn, tools offered, assistant
# tool calls and tool results, unicode and special characters, extra
# variables such as documents, an empty conversation) as transformers'
# apply_chat_template does; tests/tools/render_template renders the same
# with ember.  The built-in templates (chatml, llama2, llama3, gemma,
# mistral; render_template --builtin prints their sources) are rendered
# both ways too, for the same conversations.  Pass: byte-identical output,
# or both raise.  One line per
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

# render LABEL TEMPLATE CONVERSATION EXPECTED: renders with ember and
# compares with jinja2's EXPECTED.out (or EXPECTED.err: jinja2 raised, so
# ember must fail with exit 1).  Returns 0 on a match (sets raised=1 when
# both raised), else prints the mismatch, with the template's text when
# SHOW_TEMPLATE is set, and returns 1.
render() {
    local label=$1 tpl=$2 conv=$3 exp=$4 rc why
    "$RENDER" "$tpl" "$conv" >"$TMP/got.out" 2>"$TMP/got.err"
    rc=$?
    raised=0
    if [ -f "$exp.err" ]; then
        [ $rc -eq 1 ] && { raised=1; return 0; }
        why="jinja2 raised ($(head -c 200 "$exp.err" | tr '\n' ' ')) but ember gave rc=$rc: $(head -c 300 "$TMP/got.out")"
    elif [ $rc -ne 0 ]; then
        why="ember failed: $(head -c 300 "$TMP/got.err" | tr '\n' ' ')"
    elif cmp -s "$exp.out" "$TMP/got.out"; then
        return 0
    else
        why="output differs:"
    fi
    echo "MISMATCH $label: $why"
    if [ -n "${SHOW_TEMPLATE:-}" ]; then echo "  template: $(head -c 300 "$tpl")"; fi
    [ "$why" = "output differs:" ] && diff <(cat "$exp.out"; echo) <(cat "$TMP/got.out"; echo) | head -20
    return 1
}

pass=0 fail=0 both_raised=0 spass=0
for tpl in "$DATA"/templates/*.jinja; do
    base=$(basename "$tpl" .jinja)
    for conv in "$TMP"/conv/*.json; do
        cname=$(basename "$conv" .json)
        if render "$base / $cname" "$tpl" "$conv" "$TMP/expected/${base}__${cname}"; then
            pass=$((pass + 1)); both_raised=$((both_raised + raised))
        else
            fail=$((fail + 1))
        fi
    done
done
# The built-ins, from the sources ember carries.
mkdir -p "$TMP/builtin"
for name in chatml llama2 llama3 gemma mistral; do
    "$RENDER" --builtin "$name" >"$TMP/builtin/$name.jinja" || {
        echo "FAIL: render_template --builtin $name"
        exit 1
    }
done
"$PY" "$here/chat_reference.py" "$TMP/builtin" "$here/chat_conversations.json" "$TMP/bout" || {
    echo "FAIL: chat_reference.py failed on the built-ins"
    exit 1
}
bpass=0
for tpl in "$TMP"/builtin/*.jinja; do
    base=$(basename "$tpl" .jinja)
    for conv in "$TMP"/bout/conv/*.json; do
        cname=$(basename "$conv" .json)
        if render "builtin $base / $cname" "$tpl" "$conv" "$TMP/bout/expected/${base}__${cname}"; then
            bpass=$((bpass + 1)); both_raised=$((both_raised + raised))
        else
            fail=$((fail + 1))
        fi
    done
done
# The snippets: one feature each, rendered for one conversation.
SHOW_TEMPLATE=1
for tpl in "$TMP"/snippets/*.jinja; do
    base=$(basename "$tpl" .jinja)
    if render "snippet $base" "$tpl" "$TMP/conv/system_multi.json" "$TMP/expected/${base}__system_multi"; then
        spass=$((spass + 1))
    else
        fail=$((fail + 1))
    fi
done
echo "templates: $pass pairs match, built-ins: $bpass ($both_raised of them raise in both); snippets: $spass match; $fail differ"
[ $fail -eq 0 ]
