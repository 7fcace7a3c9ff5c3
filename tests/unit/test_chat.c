/*
 * test_chat.c - the chat-template interpreter piece by piece (expressions,
 * filters, tests, loops, macros, whitespace control, errors and limits),
 * the built-in templates, and the tool-call parser for every template
 * family.  The exactness against Python's jinja2 on real templates is
 * tests/ref/test_templates.sh.
 */
#include "chat/chat.h"
#include "gguf/gguf.h"
#include "test.h"

#include <unistd.h>

#include <stdlib.h>
#include <string.h>

static const char *CONV =
    "[{\"role\": \"system\", \"content\": \"Be brief.\"},"
    " {\"role\": \"user\", \"content\": \"Hi\"},"
    " {\"role\": \"assistant\", \"content\": \"Hello!\"},"
    " {\"role\": \"user\", \"content\": \"Bye\"}]";

/* Renders src over CONV; returns the malloc'd text or NULL on error. */
static char *render_ex(const char *src, const char *tools_json, bool agp, em_status *status) {
    em_chat_template *t = NULL;
    char *out = NULL;
    em_status st = em_chat_template_init(&t, src);
    if (st == EM_OK) {
        json_t *msgs = json_loads(CONV, 0, NULL);
        json_t *tools = tools_json ? json_loads(tools_json, 0, NULL) : NULL;
        st = em_chat_render(t, msgs, tools, agp, "<s>", "</s>", &out);
        json_decref(msgs);
        json_decref(tools);
    }
    em_chat_template_free(t);
    if (status) *status = st;
    return out;
}

static char *render(const char *src) { return render_ex(src, NULL, true, NULL); }

#define CHECK_RENDER(src, expected)                                                     \
    do {                                                                                \
        char *got_ = render(src);                                                       \
        CHECK_MSG(got_ && !strcmp(got_, expected), "%s\n  got:      [%s]\n  expected: [%s]\n  error: %s", \
                  src, got_ ? got_ : "(error)", expected, got_ ? "" : em_last_error());  \
        free(got_);                                                                     \
    } while (0)

#define CHECK_FAILS(src, status, fragment)                                              \
    do {                                                                                \
        em_status st_;                                                                  \
        char *got_ = render_ex(src, NULL, true, &st_);                                  \
        CHECK_MSG(!got_ && st_ == (status) && strstr(em_last_error(), fragment),        \
                  "%s: expected failure %d with '%s', got status %d: %s", src, status,  \
                  fragment, st_, got_ ? got_ : em_last_error());                        \
        free(got_);                                                                     \
    } while (0)

static void test_expressions(void) {
    CHECK_RENDER("{{ 1 + 2 * 3 }}", "7");
    CHECK_RENDER("{{ (1 + 2) * 3 }}", "9");
    CHECK_RENDER("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }}", "3 -4 1 2 1024");
    CHECK_RENDER("{{ 7 / 2 }} {{ 1 / 3 }} {{ 0.1 + 0.2 }}", "3.5 0.3333333333333333 0.30000000000000004");
    CHECK_RENDER("{{ 1e21 }} {{ 1.5e-7 }} {{ 2.0 }} {{ 1e16 }} {{ 123456789012345.0 }}", "1e+21 1.5e-07 2.0 1e+16 123456789012345.0");
    CHECK_RENDER("{{ 'a' ~ 1 ~ none ~ true }}", "a1NoneTrue");
    CHECK_RENDER("{{ 'ab' + 'cd' }} {{ 'ab' * 3 }} {{ [1] + [2] }}", "abcd ababab [1, 2]");
    CHECK_RENDER("{{ 1 < 2 < 3 }} {{ 3 < 2 < 4 }} {{ 1 == 1.0 }} {{ 'a' != 'b' }}", "True False True True");
    CHECK_RENDER("{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 3 not in [1] }}", "True True True True");
    CHECK_RENDER("{{ not false and (true or x) }} {{ none or 'd' }} {{ 0 and 1 }}", "True d 0");
    CHECK_RENDER("{{ 'y' if 1 > 0 else 'n' }}|{{ 'y' if false }}|", "y||");
    CHECK_RENDER("{{ [1, 'two', 3.0, none, true, [], {}] }}", "[1, 'two', 3.0, None, True, [], {}]");
    CHECK_RENDER("{{ {'a': 1, 'b': [2]} }} {{ (1,) }} {{ (1, 2) }}", "{'a': 1, 'b': [2]} (1,) (1, 2)");
    CHECK_RENDER("{{ \"it's\" }} {{ ['it\\'s', 'q\"'] }}", "it's [\"it's\", 'q\"']");
    CHECK_RENDER("{{ 'abcdef'[1:3] }} {{ 'abcdef'[::-1] }} {{ [1,2,3,4][-2:] }} {{ 'héllo'[1] }}", "bc fedcba [3, 4] é");
    CHECK_RENDER("{{ messages[0].role }} {{ messages[-1]['content'] }} {{ messages|length }}", "system Bye 4");
    CHECK_RENDER("{{ '%s=%d' % ('a', 1) }} {{ '<%s>' % 'x' }} {{ '\\101\\x42' }}", "a=1 <x> AB");
    CHECK_RENDER("{{ 'a' 'b' }} {{ '\\u00e9\\x41\\n'|length }}", "ab 3");
    CHECK_RENDER("{{ -3 }} {{ +2 }} {{ -(1 + 1) }} {{ 1_000 }}", "-3 2 -2 1000");
}

static void test_statements(void) {
    CHECK_RENDER("{% if false %}a{% elif 0 %}b{% else %}c{% endif %}", "c");
    CHECK_RENDER("{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}"
                 "{{ loop.first|int }}{{ loop.last|int }}{{ loop.length }},{% endfor %}",
                 "104104,213004,322004,431014,");
    CHECK_RENDER("{% for x in [] %}a{% else %}empty{% endfor %}", "empty");
    CHECK_RENDER("{% for x in [1, 2, 3, 4] if x is even %}{{ x }}{{ loop.length }}{% endfor %}", "2242");
    CHECK_RENDER("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}", "a=1;b=2;");
    CHECK_RENDER("{% for x in [1, 2, 3] %}{{ loop.previtem }}-{{ loop.nextitem }} {% endfor %}", "-2 1-3 2- ");
    CHECK_RENDER("{% for x in range(10) %}{% if x == 3 %}{% break %}{% endif %}{% if x == 1 %}{% continue %}{% endif %}{{ x }}{% endfor %}", "02");
    CHECK_RENDER("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}", "1");
    CHECK_RENDER("{% set ns = namespace(x=1) %}{% for i in [1, 2] %}{% set ns.x = ns.x + i %}{% endfor %}{{ ns.x }}", "4");
    CHECK_RENDER("{% if true %}{% set y = 5 %}{% endif %}{{ y }}", "5");
    CHECK_RENDER("{% set a, b = 1, 2 %}{{ a }}{{ b }}", "12");
    CHECK_RENDER("{% set s %}in{{ 1 }}side{% endset %}[{{ s }}]", "[in1side]");
    CHECK_RENDER("{% set s | upper %}abc{% endset %}{{ s }}", "ABC");
    CHECK_RENDER("{% filter upper %}x{{ 'y' }}{% endfilter %}", "XY");
    CHECK_RENDER("{% macro m(a, b='B') %}<{{ a }}{{ b }}>{% endmacro %}{{ m(1) }}{{ m(1, 2) }}{{ m(b=3, a=4) }}", "<1B><12><43>");
    CHECK_RENDER("{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(3) }}", "321");
    CHECK_RENDER("{% macro w() %}[{{ caller() }}]{% endmacro %}{% call w() %}inner{% endcall %}", "[inner]");
    CHECK_RENDER("{% raw %}{{ not evaluated }}{% endraw %}", "{{ not evaluated }}");
    CHECK_RENDER("{# a comment #}x{#- another -#} y", "xy");
    CHECK_RENDER("{% generation %}g{% endgeneration %}", "g");
}

static void test_whitespace(void) {
    /* trim_blocks drops the newline after a block tag; lstrip_blocks the
     * indentation before it; "-" strips all whitespace on its side. */
    CHECK_RENDER("{% if true %}\nyes\n{% endif %}\n", "yes\n");
    CHECK_RENDER("a\n    {% if true %}\n    b\n    {% endif %}\nc", "a\n    b\nc");
    CHECK_RENDER("a  {%- if true -%}  b  {%- endif -%}  c", "abc");
    CHECK_RENDER("a\n  {{ 'x' }}\n", "a\n  x"); /* one trailing newline is dropped */
    CHECK_RENDER("a  {{- 'x' -}}  \n b", "axb");
    CHECK_RENDER("  {%+ if true %}x{% endif +%}\n\n", "  x\n");
    CHECK_RENDER("line\r\n{% if true %}\r\nx\r\n{% endif %}\r\n", "line\nx\n");
    CHECK_RENDER("  {# c #}\nx", "x");
}

static void test_filters(void) {
    CHECK_RENDER("{{ '  a b  '|trim }}|{{ 'xxaxx'|trim('x') }}|{{ 'aBc'|upper }}{{ 'aBc'|lower }}", "a b|a|ABCabc");
    CHECK_RENDER("{{ 'hello world'|capitalize }} {{ 'hello wORLD-x'|title }}", "Hello world Hello World-X");
    CHECK_RENDER("{{ 'éàß'|upper }} {{ 'ÉŁΣЖ'|lower }} {{ 'ÿ'|upper }} {{ 'élan vital'|title }}", "ÉÀß éłσж Ÿ Élan Vital");
    CHECK_RENDER("{{ [1, 2]|length }} {{ 'héé'|length }} {{ {'a': 1}|count }} {{ x|length }}", "2 3 1 0");
    CHECK_RENDER("{{ {'b': 1, 'a': [1, 2.5, 'é\"\\n']}|tojson }}", "{\"b\": 1, \"a\": [1, 2.5, \"é\\\"\\n\"]}");
    CHECK_RENDER("{{ {'a': [1, {}], 'b': []}|tojson(indent=2) }}", "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": []\n}");
    CHECK_RENDER("{{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }} {{ none|tojson }} {{ true|tojson }}", "{\"a\": 2, \"b\": 1} null true");
    CHECK_RENDER("{{ 42|string ~ '!' }} {{ [1]|string }} {{ '12'|int + 1 }} {{ '3.7'|int }} {{ 'x'|int(5) }} {{ 2.9|int }}", "42! [1] 13 3 5 2");
    CHECK_RENDER("{{ [1, 2, 3]|join('-') }} {{ messages|map(attribute='role')|join(',') }}", "1-2-3 system,user,assistant,user");
    CHECK_RENDER("{{ [3, 1]|first }}{{ [3, 1]|last }}{{ 'abc'|first }}{{ x|default('d') }}{{ ''|default('e', true) }}", "31ade");
    CHECK_RENDER("{% for k, v in {'x': 1}|items %}{{ k }}{{ v }}{% endfor %}{{ 'ab'|list }}", "x1['a', 'b']");
    CHECK_RENDER("{{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')|list }}", "['Hi', 'Bye']");
    CHECK_RENDER("{{ messages|rejectattr('role', 'in', ['user', 'system'])|list|length }}", "1");
    CHECK_RENDER("{{ [1, 0, 2]|select|list }} {{ [1, 2, 3]|reject('odd')|list }} {{ ['a', 'B']|map('upper')|list }}", "[1, 2] [2] ['A', 'B']");
    CHECK_RENDER("{{ 'a-b-c'|replace('-', '+') }} {{ 'aaa'|replace('a', 'b', 2) }} {{ '<&>'|safe }}", "a+b+c bba <&>");
    CHECK_RENDER("{{ 2.5|round }} {{ 3.14159|round(2) }} {{ 2.1|round(0, 'ceil') }} {{ -3|abs }} {{ -2.5|abs }}", "2.0 3.14 3.0 3 2.5");
    CHECK_RENDER("{{ {'b': 1, 'A': 2}|dictsort }} {{ [3, 1, 2]|sort }} {{ ['b', 'A']|sort }} {{ [1, 2]|reverse|list }}", "[('A', 2), ('b', 1)] [1, 2, 3] ['A', 'b'] [2, 1]");
    CHECK_RENDER("{{ [1, 1, 2]|unique|list }} {{ [1, 2, 3]|sum }} {{ [4, 9]|max }} {{ [4, 9]|min }}", "[1, 2] 6 9 4");
    CHECK_RENDER("{{ 'a\\nb\\n'|indent(2) }}|{{ 'a\\nb'|indent(2, first=true) }}", "a\n  b\n|  a\n  b");
    CHECK_RENDER("{{ '<a href=\"x\">'|e }} {{ '%s-%d'|format('a', 3) }}", "&lt;a href=&#34;x&#34;&gt; a-3");
    CHECK_RENDER("{{ 'q'|safe + '\"' }} {{ '\"' + 'q'|safe }}", "q&#34; &#34;q");
    CHECK_RENDER("{{ [1, 2]|map('string')|join }} {{ messages|map(attribute='nope', default='-')|join }}", "12 ----");
}

static void test_tests_and_methods(void) {
    CHECK_RENDER("{{ x is defined }}{{ x is undefined }}{{ none is none }}{{ 'a' is string }}{{ {} is mapping }}", "FalseTrueTrueTrueTrue");
    CHECK_RENDER("{{ [] is iterable }}{{ 1 is iterable }}{{ 'a' is sequence }}{{ 1.5 is number }}{{ true is boolean }}", "TrueFalseTrueTrueTrue");
    CHECK_RENDER("{{ true is true }}{{ 0 is false }}{{ 3 is odd }}{{ 'a' is equalto 'a' }}{{ 2 is in [2] }}{{ 1 is not none }}", "TrueFalseTrueTrueTrueTrue");
    CHECK_RENDER("{{ 6 is divisibleby 3 }}{{ 'abc' is lower }}{{ 1 is integer }}{{ 1.0 is float }}", "TrueTrueTrueTrue");
    CHECK_RENDER("{{ ' x '.strip() }}|{{ 'xay'.lstrip('x') }}|{{ 'a b  c'.split() }}|{{ 'a,b'.split(',') }}", "x|ay|['a', 'b', 'c']|['a', 'b']");
    CHECK_RENDER("{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}{{ 'aB'.upper() }}{{ 'aB'.lower() }}", "TrueTrueABab");
    CHECK_RENDER("{{ 'a-a'.replace('a', 'b') }} {{ 'hello world'.title() }} {{ '{} and {name}'.format(1, name='n') }}", "b-b Hello World 1 and n");
    CHECK_RENDER("{% set d = {'a': 1} %}{{ d.get('a') }}{{ d.get('z', 9) }}{{ d.get('z') }}{{ d.keys()|list }}{{ d.values()|list }}", "19None['a'][1]");
    CHECK_RENDER("{{ messages.__class__ is defined }}{{ messages[0].items is defined }}", "FalseTrue");
}

static void test_undefined_and_errors(void) {
    CHECK_RENDER("[{{ x }}]{% for i in x %}no{% endfor %}{{ x|trim }}{% if not x %}ok{% endif %}", "[]ok");
    CHECK_RENDER("{{ messages[0].missing is defined }}{{ none.x is defined }}{{ messages[9] is defined }}", "FalseFalseFalse");
    CHECK_FAILS("{{ raise_exception('bad conversation') }}", EM_ERR_INVALID_ARG, "bad conversation");
    CHECK_FAILS("{{ x.y }}", EM_ERR_INVALID_ARG, "'x' is undefined");
    CHECK_FAILS("{{ x + 1 }}", EM_ERR_INVALID_ARG, "'x' is undefined");
    CHECK_FAILS("{{ 1 + 'a' }}", EM_ERR_INVALID_ARG, "unsupported operand");
    CHECK_FAILS("{{ 1 / 0 }}", EM_ERR_INVALID_ARG, "division by zero");
    CHECK_FAILS("{{ x|tojson }}", EM_ERR_INVALID_ARG, "not JSON serializable");
    CHECK_FAILS("{{ [1]|map('string')|tojson }}", EM_ERR_INVALID_ARG, "generator");
    CHECK_FAILS("{% set x = 1 %}{% set x.y = 2 %}", EM_ERR_INVALID_ARG, "non-namespace");
    CHECK_FAILS("{{ [].append(1) }}", EM_ERR_INVALID_ARG, "modifies");
    CHECK_FAILS("{{ range(1000000)|length }}", EM_ERR_INVALID_ARG, "MAX_RANGE");
    /* Syntax errors name the line and column. */
    CHECK_FAILS("a\n{% if true %}x", EM_ERR_FORMAT, "line 2, column 4");
    CHECK_FAILS("{{ 1 + }}", EM_ERR_FORMAT, "line 1, column 8");
    CHECK_FAILS("{% endfor %}", EM_ERR_FORMAT, "unexpected 'endfor'");
    CHECK_FAILS("{{ x|nosuchfilter }}", EM_ERR_FORMAT, "no filter named 'nosuchfilter'");
    /* Inside an if, as in jinja2, an unknown filter fails only when it runs. */
    CHECK_RENDER("{% if false %}{{ x|nosuchfilter }}{% endif %}ok", "ok");
    CHECK_FAILS("{% if true %}{{ x|nosuchfilter }}{% endif %}", EM_ERR_INVALID_ARG, "no filter named");
    CHECK_FAILS("{% if false %}{% for i in x %}{{ x|nosuchfilter }}{% endfor %}{% endif %}", EM_ERR_FORMAT, "no filter");
    /* Macros take extra arguments only when their body names varargs/kwargs/caller. */
    CHECK_FAILS("{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }}", EM_ERR_INVALID_ARG, "not more than 1");
    CHECK_FAILS("{% macro m(a) %}{{ a }}{% endmacro %}{{ m(b=1) }}", EM_ERR_INVALID_ARG, "no keyword argument 'b'");
    CHECK_FAILS("{% macro m() %}x{% endmacro %}{% call m() %}y{% endcall %}", EM_ERR_INVALID_ARG, "caller");
    CHECK_RENDER("{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, k=3) }}", "1(2,){'k': 3}");
    CHECK_FAILS("{{ '\\N{DASH}' }}", EM_ERR_FORMAT, "not supported");
    CHECK_FAILS("{{ x is nosuchtest }}", EM_ERR_FORMAT, "no test named");
    CHECK_FAILS("{% foo %}", EM_ERR_FORMAT, "unknown tag 'foo'");
    CHECK_FAILS("{{ 'abc }}", EM_ERR_FORMAT, "unterminated string");
    CHECK_FAILS("{{ (1 ]] }}", EM_ERR_FORMAT, "unexpected ']'");
    CHECK_FAILS("{# open", EM_ERR_FORMAT, "missing end of comment");
}

static void test_limits(void) {
    /* Hostile templates end with an error, not a crash or a hang. */
    CHECK_FAILS("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", EM_ERR_INVALID_ARG, "recursion");
    CHECK_FAILS("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
                EM_ERR_INVALID_ARG, "template"); /* steps or memory, whichever comes first */
    CHECK_FAILS("{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
                EM_ERR_INVALID_ARG, "longer than");
    CHECK_FAILS("{{ 'x' * 100000000000 }}", EM_ERR_INVALID_ARG, "longer than");
    CHECK_FAILS("{% set ns = namespace(x=1) %}{% for i in range(5000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}",
                EM_ERR_INVALID_ARG, "nested too deeply");
    CHECK_FAILS("{% set ns = namespace(x=1) %}{% for i in range(5000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x|tojson }}",
                EM_ERR_INVALID_ARG, "nested too deeply");
    CHECK_RENDER("{% set ns = namespace(x=1, y=1) %}{% for i in range(5000) %}{% set ns.x = [ns.x] %}{% set ns.y = [ns.y] %}{% endfor %}"
                 "{{ ns.x == ns.y }}", "False");
    char deep[4000];
    size_t n = 0;
    n += (size_t)snprintf(deep + n, sizeof deep - n, "{{ ");
    for (int i = 0; i < 500; i++) deep[n++] = '(';
    deep[n++] = '1';
    for (int i = 0; i < 500; i++) deep[n++] = ')';
    snprintf(deep + n, sizeof deep - n, " }}");
    CHECK_FAILS(deep, EM_ERR_FORMAT, "nested too deeply");
    n = (size_t)snprintf(deep, sizeof deep, "{{ x");
    for (int i = 0; i < 600; i++) n += (size_t)snprintf(deep + n, sizeof deep - n, "|e");
    snprintf(deep + n, sizeof deep - n, " }}");
    CHECK_FAILS(deep, EM_ERR_FORMAT, "chain longer than");
    /* Explicit limits. */
    em_chat_template *t = NULL;
    CHECK_OK(em_chat_template_init(&t, "{% for i in range(100) %}{{ i }}{% endfor %}"));
    json_t *msgs = json_array();
    char *out = NULL;
    em_chat_limits lim = {.max_output = 50};
    CHECK(em_chat_render_ex(t, msgs, NULL, false, NULL, NULL, NULL, &lim, &out) == EM_ERR_INVALID_ARG);
    CHECK(out == NULL);
    lim = (em_chat_limits){.max_steps = 20};
    CHECK(em_chat_render_ex(t, msgs, NULL, false, NULL, NULL, NULL, &lim, &out) == EM_ERR_INVALID_ARG);
    CHECK_OK(em_chat_render_ex(t, msgs, NULL, false, NULL, NULL, NULL, NULL, &out));
    CHECK(out && strlen(out) == 190);
    free(out);
    /* Bad arguments. */
    CHECK(em_chat_render(t, NULL, NULL, false, NULL, NULL, &out) == EM_ERR_INVALID_ARG);
    json_t *obj = json_object();
    CHECK(em_chat_render(t, obj, NULL, false, NULL, NULL, &out) == EM_ERR_INVALID_ARG);
    json_decref(obj);
    json_decref(msgs);
    em_chat_template_free(t);
    CHECK(em_chat_template_init(&t, "\xff\xfe") == EM_ERR_FORMAT);
}

static void test_builtins(void) {
    static const struct { const char *name, *expected; } cases[] = {
        {"chatml", "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                   "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"},
        {"llama2", "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Bye [/INST]"},
        {"llama3", "<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                   "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                   "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
                   "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
                   "<|start_header_id|>assistant<|end_header_id|>\n\n"},
        {"gemma", "<s><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
                  "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"},
        {"mistral", "<s>[INST] Be brief.\n\nHi [/INST]Hello!</s>[INST] Bye [/INST]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *src = em_chat_builtin(cases[i].name);
        CHECK_MSG(src != NULL, "builtin %s", cases[i].name);
        if (!src) continue;
        char *got = render(src);
        CHECK_MSG(got && !strcmp(got, cases[i].expected), "builtin %s: got [%s]", cases[i].name, got ? got : em_last_error());
        free(got);
    }
    CHECK(em_chat_builtin("nope") == NULL);
}

/* The built-in templates as they were before they rendered tools (session
 * 14), kept to prove that a conversation without tools, tool calls or tool
 * results still renders byte for byte as it did. */
static const struct { const char *name, *source; } LEGACY[] = {
    {"chatml",
     "{%- for message in messages %}"
     "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
     "{%- endfor %}"
     "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"},
    {"llama2",
     "{%- if messages[0]['role'] == 'system' %}"
     "{%- set system = messages[0]['content'] %}{%- set turns = messages[1:] %}"
     "{%- else %}{%- set system = none %}{%- set turns = messages %}{%- endif %}"
     "{%- for message in turns %}"
     "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
     "{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
     "{%- endif %}"
     "{%- set content = message['content'] %}"
     "{%- if loop.first and system is not none %}"
     "{%- set content = '<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' + content %}"
     "{%- endif %}"
     "{%- if message['role'] == 'user' %}{{- bos_token + '[INST] ' + content | trim + ' [/INST]' }}"
     "{%- else %}{{- ' ' + content | trim + ' ' + eos_token }}{%- endif %}"
     "{%- endfor %}"},
    {"llama3",
     "{{- bos_token }}"
     "{%- for message in messages %}"
     "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
     "{%- endfor %}"
     "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"},
    {"gemma",
     "{{- bos_token }}"
     "{%- set ns = namespace(system='') %}"
     "{%- for message in messages %}"
     "{%- if message['role'] == 'system' %}{%- set ns.system = message['content'] | trim + '\\n\\n' %}"
     "{%- else %}"
     "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
     "{{- '<start_of_turn>' + role + '\\n' + (ns.system if role == 'user' else '') + message['content'] | trim + '<end_of_turn>\\n' }}"
     "{%- if role == 'user' %}{%- set ns.system = '' %}{%- endif %}"
     "{%- endif %}"
     "{%- endfor %}"
     "{%- if add_generation_prompt %}{{- '<start_of_turn>model\\n' }}{%- endif %}"},
    {"mistral",
     "{{- bos_token }}"
     "{%- set ns = namespace(system='') %}"
     "{%- for message in messages %}"
     "{%- if message['role'] == 'system' %}{%- set ns.system = message['content'] + '\\n\\n' %}"
     "{%- elif message['role'] == 'user' %}{{- '[INST] ' + ns.system + message['content'] + ' [/INST]' }}{%- set ns.system = '' %}"
     "{%- elif message['role'] == 'assistant' %}{{- message['content'] + eos_token }}"
     "{%- endif %}"
     "{%- endfor %}"},
};

/* Renders source for a conversation (JSON text); NULL on a failure. */
static char *render_conv(const char *src, const char *messages, const char *tools, bool agp) {
    em_chat_template *t = NULL;
    char *out = NULL;
    if (em_chat_template_init(&t, src) != EM_OK) return NULL;
    json_t *msgs = json_loads(messages, 0, NULL);
    json_t *tl = tools ? json_loads(tools, 0, NULL) : NULL;
    if (msgs && em_chat_render(t, msgs, tl, agp, "<s>", "</s>", &out) != EM_OK) out = NULL;
    json_decref(msgs);
    json_decref(tl);
    em_chat_template_free(t);
    return out;
}

static void test_builtins_unchanged(void) {
    static const char *const convs[] = {
        "[]",
        "[{\"role\": \"user\", \"content\": \"Hello!\"}]",
        "[{\"role\": \"system\", \"content\": \" Be brief. \"}, {\"role\": \"user\", \"content\": \"Hi\"}]",
        "[{\"role\": \"user\", \"content\": \"  Tell me a joke.  \\n\"}, {\"role\": \"assistant\", \"content\": "
        "\"Why?\"}, {\"role\": \"user\", \"content\": \"Why?\"}, {\"role\": \"assistant\", \"content\": \"\\nTo get "
        "to the other side.\\n\"}]",
        "[{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": \"caf\u00e9 <|im_end|> "
        "{{ x }}\"}, {\"role\": \"assistant\", \"content\": \"A\"}, {\"role\": \"system\", \"content\": \"S2\"}, "
        "{\"role\": \"user\", \"content\": \"B\"}]",
        "[{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"user\", \"content\": \"b\"}]",
        "[{\"role\": \"assistant\", \"content\": \"first\"}, {\"role\": \"user\", \"content\": \"b\"}]",
    };
    for (size_t i = 0; i < sizeof LEGACY / sizeof LEGACY[0]; i++) {
        const char *now = em_chat_builtin(LEGACY[i].name);
        CHECK_MSG(now != NULL, "builtin %s", LEGACY[i].name);
        if (!now) continue;
        for (size_t c = 0; c < sizeof convs / sizeof convs[0]; c++) {
            for (int agp = 0; agp < 2; agp++) {
                char *was = render_conv(LEGACY[i].source, convs[c], NULL, agp);
                char *is = render_conv(now, convs[c], NULL, agp);
                /* Both render the same text, or both refuse. */
                CHECK_MSG((!was && !is) || (was && is && !strcmp(was, is)), "builtin %s, conversation %zu: was [%s], is [%s]",
                          LEGACY[i].name, c, was ? was : "(error)", is ? is : "(error)");
                free(was);
                free(is);
            }
        }
    }
}

/* Tools through each built-in: the family the parser reads from its source,
 * the tools and a result in the prompt, and a round trip: the text the
 * template writes for an earlier call, which is the text the model was
 * asked to write, parses back into the same call (streamed answers hold it
 * from its first byte).  The agreement with jinja2 on these sources is
 * tests/ref/test_templates.sh's. */
static void test_builtin_tools(void) {
    static const char *TOOLS =
        "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather.\", "
        "\"parameters\": {\"type\": \"object\", \"properties\": {\"location\": {\"type\": \"string\"}}}}}]";
    static const char *ASK = "[{\"role\": \"user\", \"content\": \"Weather?\"}]";
#define CALL(id, city)                                                                                     \
    "{\"id\": \"" id "\", \"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"arguments\": " \
    "{\"location\": \"" city "\"}}}"
    static const char *ONE = "[{\"role\": \"user\", \"content\": \"Weather?\"}, {\"role\": \"assistant\", \"content\": "
                             "null, \"tool_calls\": [" CALL("abcDEF123", "Paris") "]}]";
    static const char *TWO = "[{\"role\": \"user\", \"content\": \"Weather?\"}, {\"role\": \"assistant\", \"content\": "
                             "null, \"tool_calls\": [" CALL("abcDEF123", "Paris") ", " CALL("abcDEF124", "Rome") "]}]";
    static const char *RESULT = "[{\"role\": \"user\", \"content\": \"Weather?\"}, {\"role\": \"assistant\", \"content\": "
                                "null, \"tool_calls\": [" CALL("abcDEF123", "Paris") "]}, {\"role\": \"tool\", "
                                "\"tool_call_id\": \"abcDEF123\", \"content\": \"sunny\"}]";
#undef CALL
    static const struct {
        const char *name;
        em_tool_family family;
        const char *tools_marker, *result, *end_of_turn;
        bool parallel; /* the convention writes several calls in one turn */
    } cases[] = {
        {"chatml", EM_TOOLS_HERMES, "<tools>\n{\"type\": \"function\"", "<|im_start|>user\n<tool_response>\nsunny\n</tool_response><|im_end|>\n",
         "<|im_end|>\n", true},
        {"llama2", EM_TOOLS_HERMES, "<<SYS>>\n# Tools", "<s>[INST] <tool_response>\nsunny\n</tool_response> [/INST]", "</s>", true},
        {"llama3", EM_TOOLS_LLAMA3, "Environment: ipython", "<|start_header_id|>ipython<|end_header_id|>\n\nsunny<|eot_id|>",
         "<|eot_id|>", false},
        {"gemma", EM_TOOLS_HERMES, "<start_of_turn>user\n# Tools", "<start_of_turn>user\n<tool_response>\nsunny\n</tool_response><end_of_turn>\n",
         "<end_of_turn>\n", true},
        {"mistral", EM_TOOLS_MISTRAL, "[AVAILABLE_TOOLS][{\"type\": \"function\"",
         "[TOOL_RESULTS]{\"content\": \"sunny\", \"call_id\": \"abcDEF123\"}[/TOOL_RESULTS]", "</s>", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *name = cases[i].name, *src = em_chat_builtin(name);
        if (!src) continue;
        CHECK_MSG(em_chat_tool_family(src) == cases[i].family, "builtin %s: family %s", name,
                  em_chat_tool_family_name(em_chat_tool_family(src)));
        char *ask = render_conv(src, ASK, TOOLS, true);
        CHECK_MSG(ask && strstr(ask, cases[i].tools_marker) && strstr(ask, "get_weather"), "builtin %s: tools in [%s]",
                  name, ask ? ask : em_last_error());
        char *result = render_conv(src, RESULT, TOOLS, true);
        CHECK_MSG(result && strstr(result, cases[i].result), "builtin %s: result in [%s]", name,
                  result ? result : em_last_error());
        free(result);
        for (int n = 1; n <= 2; n++) {
            char *with_call = render_conv(src, n == 1 ? ONE : TWO, TOOLS, false);
            if (n == 2 && !cases[i].parallel) {
                CHECK_MSG(!with_call && strstr(em_last_error(), "one tool call per assistant message"), "builtin %s: %s",
                          name, with_call ? with_call : em_last_error());
                free(with_call);
                continue;
            }
            size_t na = ask ? strlen(ask) : 0, ne = strlen(cases[i].end_of_turn), nw = with_call ? strlen(with_call) : 0;
            bool shape = ask && with_call && nw >= na + ne && !strncmp(with_call, ask, na) &&
                         !strcmp(with_call + nw - ne, cases[i].end_of_turn);
            CHECK_MSG(shape, "builtin %s: [%s] does not continue [%s] with a turn", name, with_call ? with_call : "(error)",
                      ask ? ask : "(error)");
            if (!shape) {
                free(with_call);
                continue;
            }
            /* What the model writes: the assistant turn up to its end token. */
            with_call[nw - ne] = 0;
            const char *answer = with_call + na;
            CHECK_MSG(em_chat_tool_call_start(cases[i].family, answer, strlen(answer)) <= 1,
                      "builtin %s: a stream holds [%s] from its start", name, answer);
            json_t *calls = NULL;
            char *rest = NULL;
            CHECK_OK(em_chat_parse_tool_calls(src, answer, &calls, &rest));
            CHECK_MSG(calls && json_array_size(calls) == (size_t)n, "builtin %s: %d calls in [%s]", name, n, answer);
            for (size_t k = 0; calls && k < json_array_size(calls); k++) {
                json_t *fn = json_object_get(json_array_get(calls, k), "function");
                const char *fname = json_string_value(json_object_get(fn, "name"));
                const char *args = json_string_value(json_object_get(fn, "arguments"));
                CHECK_MSG(fname && !strcmp(fname, "get_weather"), "builtin %s: name %s", name, fname ? fname : "");
                CHECK_MSG(args && !strcmp(args, k ? "{\"location\":\"Rome\"}" : "{\"location\":\"Paris\"}"),
                          "builtin %s: arguments %s", name, args ? args : "");
            }
            CHECK_MSG(rest && !strcmp(rest, ""), "builtin %s: content [%s]", name, rest ? rest : "(null)");
            json_decref(calls);
            free(rest);
            free(with_call);
        }
        free(ask);
    }
}

/* Parses text for a family and checks the first call's name and arguments,
 * the number of calls and the remaining content. */
static void check_calls(const char *family, const char *text, size_t ncalls, const char *name0,
                        const char *args0, const char *content) {
    json_t *calls = NULL;
    char *rest = NULL;
    em_status st = em_chat_parse_tool_calls(family, text, &calls, &rest);
    CHECK_MSG(st == EM_OK, "%s: %s", family, em_last_error());
    size_t n = calls ? json_array_size(calls) : 0;
    CHECK_MSG(n == ncalls, "%s: %zu calls, expected %zu, in [%s]", family, n, ncalls, text);
    if (n && ncalls) {
        json_t *c0 = json_array_get(calls, 0);
        json_t *fn = json_object_get(c0, "function");
        const char *nm = json_string_value(json_object_get(fn, "name"));
        const char *ar = json_string_value(json_object_get(fn, "arguments"));
        CHECK_MSG(nm && !strcmp(nm, name0), "%s: name [%s], expected [%s]", family, nm ? nm : "", name0);
        CHECK_MSG(ar && !strcmp(ar, args0), "%s: arguments [%s], expected [%s]", family, ar ? ar : "", args0);
        CHECK(!strcmp(json_string_value(json_object_get(c0, "type")), "function"));
        const char *id = json_string_value(json_object_get(c0, "id"));
        CHECK(id && *id);
        if (n > 1) {
            const char *id1 = json_string_value(json_object_get(json_array_get(calls, 1), "id"));
            CHECK_MSG(id1 && strcmp(id, id1), "%s: ids must differ", family);
        }
    }
    CHECK_MSG(rest && !strcmp(rest, content), "%s: content [%s], expected [%s]", family, rest ? rest : "(null)", content);
    json_decref(calls);
    free(rest);
}

static void test_tool_calls(void) {
    const char *W = "{\"location\":\"Paris\"}";
    check_calls("hermes", "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris\"}}\n</tool_call>",
                1, "get_weather", W, "");
    check_calls("qwen", "Let me check.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n"
                "<tool_call>\n{\"name\": \"b\", \"arguments\": {\"x\": [1, 2.5]}}\n</tool_call>",
                2, "a", "{}", "Let me check.");
    check_calls("hermes", "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris\"}}",
                1, "get_weather", W, ""); /* generation stopped before the closing tag */
    check_calls("hermes", "<tool_call>\n{\"name\": broken}\n</tool_call>", 0, "", "",
                "<tool_call>\n{\"name\": broken}\n</tool_call>");
    check_calls("hermes", "Plain answer, no calls.", 0, "", "", "Plain answer, no calls.");
    check_calls("llama3", "{\"name\": \"get_weather\", \"parameters\": {\"location\": \"Paris\"}}", 1, "get_weather", W, "");
    check_calls("llama3", "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"location\": \"Paris\"}}",
                1, "get_weather", W, "");
    check_calls("llama3", "<|python_tag|>brave_search.call(query=\"weather Paris\")", 1, "brave_search",
                "{\"query\":\"weather Paris\"}", "");
    check_calls("llama3", "<|python_tag|>print(1 + 1)", 1, "python", "{\"code\":\"print(1 + 1)\"}", "");
    check_calls("llama3", "The JSON {\"name\": \"x\"} is just text.", 0, "", "", "The JSON {\"name\": \"x\"} is just text.");
    check_calls("mistral", "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris\"}, \"id\": \"abcDEF123\"}]",
                1, "get_weather", W, "");
    check_calls("mistral", "[TOOL_CALLS] [{\"name\": \"a\", \"arguments\": {}}, {\"name\": \"b\", \"arguments\": {}}]",
                2, "a", "{}", "");
    check_calls("functionary-v3.1", "<function=get_weather>{\"location\": \"Paris\"}</function>", 1, "get_weather", W, "");
    check_calls("functionary-v3.1", "Sure. <function=a>{}</function><function=b>{\"k\": 1}</function>", 2, "a", "{}", "Sure.");
    check_calls("functionary-v3.1", "<|python_tag|>import os", 1, "python", "{\"code\":\"import os\"}", "");
    check_calls("functionary-v3.2", "get_weather\n{\"location\": \"Paris\"}", 1, "get_weather", W, "");
    check_calls("functionary-v3.2", "all\nChecking both.>>>get_weather\n{\"location\": \"Paris\"}>>>get_time\n{}",
                2, "get_weather", W, "Checking both.");
    check_calls("functionary-v3.2", "all\nJust talking.", 0, "", "", "all\nJust talking.");
    check_calls("firefunction", " functools[{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris\"}}]",
                1, "get_weather", W, "");
    check_calls("command-r", "I will look it up.\nAction: ```json\n[\n    {\n        \"tool_name\": \"get_weather\",\n"
                "        \"parameters\": {\"location\": \"Paris\"}\n    }\n]\n```", 1, "get_weather", W, "I will look it up.");
    check_calls("command-r", "Action: ```json\n[{\"tool_name\": \"directly-answer\", \"parameters\": {}}]\n```", 0, "", "",
                "Action: ```json\n[{\"tool_name\": \"directly-answer\", \"parameters\": {}}]\n```");
    check_calls("command-r", "<|START_THINKING|>Need weather.<|END_THINKING|><|START_ACTION|>[\n"
                "    {\"tool_call_id\": \"0\", \"tool_name\": \"get_weather\", \"parameters\": {\"location\": \"Paris\"}}\n"
                "]<|END_ACTION|>", 1, "get_weather", W, "<|START_THINKING|>Need weather.<|END_THINKING|>");
    check_calls("deepseek-r1",
                "<think>ok</think>\n\n<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "begin\xef\xbd\x9c>"
                "<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "begin\xef\xbd\x9c>function"
                "<\xef\xbd\x9ctool\xe2\x96\x81" "sep\xef\xbd\x9c>get_weather\n```json\n{\"location\": \"Paris\"}\n```"
                "<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "end\xef\xbd\x9c>"
                "<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "end\xef\xbd\x9c>",
                1, "get_weather", W, "<think>ok</think>");
    check_calls("none", "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>", 0, "", "",
                "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>");
    /* Unicode in arguments stays UTF-8; arguments already a string stay as given. */
    check_calls("hermes", "<tool_call>{\"name\": \"s\", \"arguments\": {\"q\": \"caf\xc3\xa9\"}}</tool_call>", 1, "s",
                "{\"q\":\"caf\xc3\xa9\"}", "");
    check_calls("hermes", "<tool_call>{\"name\": \"s\", \"arguments\": \"{\\\"q\\\": 1}\"}</tool_call>", 1, "s", "{\"q\": 1}", "");

    /* The family of every template in the test data. */
    static const struct { const char *file; em_tool_family f; } families[] = {
        {"CohereForAI-c4ai-command-r-plus-tool_use.jinja", EM_TOOLS_COMMAND_R},
        {"CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja", EM_TOOLS_COMMAND_R},
        {"NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja", EM_TOOLS_HERMES},
        {"NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", EM_TOOLS_HERMES},
        {"Qwen-Qwen2.5-7B-Instruct.jinja", EM_TOOLS_HERMES},
        {"deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja", EM_TOOLS_DEEPSEEK_R1},
        {"deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", EM_TOOLS_DEEPSEEK_R1},
        {"fireworks-ai-llama-3-firefunction-v2.jinja", EM_TOOLS_FIREFUNCTION},
        {"google-gemma-2-2b-it.jinja", EM_TOOLS_NONE},
        {"llama-cpp-deepseek-r1.jinja", EM_TOOLS_DEEPSEEK_R1},
        {"meetkai-functionary-medium-v3.1.jinja", EM_TOOLS_FUNCTIONARY_31},
        {"meetkai-functionary-medium-v3.2.jinja", EM_TOOLS_FUNCTIONARY_32},
        {"meta-llama-Llama-3.1-8B-Instruct.jinja", EM_TOOLS_LLAMA3},
        {"meta-llama-Llama-3.2-3B-Instruct.jinja", EM_TOOLS_LLAMA3},
        {"meta-llama-Llama-3.3-70B-Instruct.jinja", EM_TOOLS_LLAMA3},
        {"microsoft-Phi-3.5-mini-instruct.jinja", EM_TOOLS_NONE},
        {"mistralai-Mistral-Nemo-Instruct-2407.jinja", EM_TOOLS_MISTRAL},
    };
    char path[1024];
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "templates/%s", families[i].file);
        if (!test_data_path(path, sizeof path, rel)) break; /* no test data: the parsing checks above suffice */
        FILE *f = fopen(path, "rb");
        CHECK_MSG(f != NULL, "cannot open %s", path);
        if (!f) continue;
        static char src[65536];
        size_t n = fread(src, 1, sizeof src - 1, f);
        fclose(f);
        src[n] = 0;
        em_tool_family got = em_chat_tool_family(src);
        CHECK_MSG(got == families[i].f, "%s: family %s, expected %s", families[i].file, em_chat_tool_family_name(got),
                  em_chat_tool_family_name(families[i].f));
    }
    json_t *calls;
    char *rest;
    CHECK(em_chat_parse_tool_calls("hermes", NULL, &calls, &rest) == EM_ERR_INVALID_ARG);
}

/* Where a stream must start holding text back: at a call marker, at a
 * partial marker ending the text, and nowhere in plain text. */
static void test_tool_call_start(void) {
    static const struct {
        em_tool_family f;
        const char *text;
        size_t want; /* (size_t)-1: the text's length (nothing held) */
    } cases[] = {
        {EM_TOOLS_HERMES, "Sure, let me check.", (size_t)-1},
        {EM_TOOLS_HERMES, "Sure. <tool_call>{\"name\"", 6},
        {EM_TOOLS_HERMES, "Sure. <tool_", 6},
        {EM_TOOLS_HERMES, "a < b", (size_t)-1},
        {EM_TOOLS_HERMES, "a <", 2},
        {EM_TOOLS_HERMES, "<tool_call>", 0},
        {EM_TOOLS_LLAMA3, "  {\"name\": \"f\"", 0},
        {EM_TOOLS_LLAMA3, "   ", 0},
        {EM_TOOLS_LLAMA3, "It is sunny.", (size_t)-1},
        {EM_TOOLS_LLAMA3, "Run: <|python_tag|>print(1)", 5},
        {EM_TOOLS_MISTRAL, "ok [TOOL_CA", 3},
        {EM_TOOLS_MISTRAL, "ok [x]", (size_t)-1},
        {EM_TOOLS_FUNCTIONARY_31, "x <function=get>{}", 2},
        {EM_TOOLS_FUNCTIONARY_32, "all\nHello", 0},
        {EM_TOOLS_COMMAND_R, "Plan. Action: ```json", 6},
        {EM_TOOLS_COMMAND_R, "Plan. Act", 6},
        {EM_TOOLS_DEEPSEEK_R1, "Hi <\xef\xbd\x9ctool", 3},
        {EM_TOOLS_NONE, "<tool_call>", (size_t)-1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = strlen(cases[i].text), want = cases[i].want == (size_t)-1 ? n : cases[i].want;
        size_t got = em_chat_tool_call_start(cases[i].f, cases[i].text, n);
        CHECK_MSG(got == want, "%s %s: held from %zu, expected %zu", em_chat_tool_family_name(cases[i].f),
                  cases[i].text, got, want);
    }
}

/* The template of a loaded model: the file's own, else a built-in guessed
 * from the vocabulary. */
static void test_model_template(void) {
    char path[1024];
    if (!test_data_path(path, sizeof path, "models/stories260K.gguf")) return;
    em_model_params mp = em_model_default_params();
    mp.vocab_only = true;
    em_model *m = NULL;
    CHECK_OK(em_model_load(&m, path, &mp));
    if (!m) return;
    char *src = NULL;
    const char *name = NULL;
    CHECK_OK(em_chat_template_for_model(m, &src, &name));
    CHECK(name && !strcmp(name, "llama2")); /* a SentencePiece llama without chat tokens */
    CHECK(src && !strcmp(src, em_chat_builtin("llama2")));
    free(src);
    em_model_free(m);

    /* The same model with a template in its metadata. */
    em_gguf *g = NULL;
    em_gguf_writer *w = NULL;
    CHECK_OK(em_gguf_open(&g, path));
    CHECK_OK(em_gguf_writer_init(&w));
    if (!g || !w) return;
    CHECK_OK(em_gguf_set_str(w, "tokenizer.chat_template", "{{ messages[0].content }}!"));
    CHECK_OK(em_gguf_copy_kv(w, g));
    char tmp[] = "/tmp/test_chat_XXXXXX";
    int fd = mkstemp(tmp);
    CHECK(fd >= 0);
    if (fd >= 0) close(fd);
    CHECK_OK(em_gguf_write(w, tmp));
    em_gguf_writer_free(w);
    em_gguf_close(g);
    CHECK_OK(em_model_load(&m, tmp, &mp));
    unlink(tmp);
    if (!m) return;
    CHECK_OK(em_chat_template_for_model(m, &src, &name));
    CHECK(name && !strcmp(name, "model"));
    CHECK(src && !strcmp(src, "{{ messages[0].content }}!"));
    free(src);
    em_model_free(m);
}

int main(void) {
    test_expressions();
    test_statements();
    test_whitespace();
    test_filters();
    test_tests_and_methods();
    test_undefined_and_errors();
    test_limits();
    test_builtins();
    test_builtins_unchanged();
    test_builtin_tools();
    test_tool_calls();
    test_tool_call_start();
    test_model_template();
    TEST_END();
}
