/*
 * toolcalls.c - tool calls back out of generated text.  Each template
 * family teaches its model one way to write a call; this file knows them
 * and turns what the model wrote into OpenAI's `tool_calls` array, leaving
 * the rest of the text as the message content.
 *
 * The parser is strict about JSON (a call whose arguments do not parse is
 * not a call: the text stays content) and lenient about a missing closing
 * tag, because generation often stops at the end-of-turn token right
 * after the JSON.
 */
#include "chat/chat.h"

#include "core/core.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- families ---- */

static const struct { em_tool_family f; const char *name; } FAMILY_NAMES[] = {
    {EM_TOOLS_NONE, "none"},
    {EM_TOOLS_HERMES, "hermes"},
    {EM_TOOLS_HERMES, "qwen"},
    {EM_TOOLS_LLAMA3, "llama3"},
    {EM_TOOLS_MISTRAL, "mistral"},
    {EM_TOOLS_FUNCTIONARY_31, "functionary-v3.1"},
    {EM_TOOLS_FUNCTIONARY_32, "functionary-v3.2"},
    {EM_TOOLS_FIREFUNCTION, "firefunction"},
    {EM_TOOLS_COMMAND_R, "command-r"},
    {EM_TOOLS_DEEPSEEK_R1, "deepseek-r1"},
};

const char *em_chat_tool_family_name(em_tool_family f) {
    for (size_t i = 0; i < sizeof FAMILY_NAMES / sizeof FAMILY_NAMES[0]; i++)
        if (FAMILY_NAMES[i].f == f) return FAMILY_NAMES[i].name;
    return "none";
}

em_tool_family em_chat_tool_family(const char *s) {
    if (!s) return EM_TOOLS_NONE;
    for (size_t i = 0; i < sizeof FAMILY_NAMES / sizeof FAMILY_NAMES[0]; i++)
        if (!strcmp(s, FAMILY_NAMES[i].name)) return FAMILY_NAMES[i].f;
    /* A template source: the markers each family's template teaches.  The
     * order matters: Functionary and Firefunction templates are Llama 3
     * templates too. */
    if (strstr(s, "tool\xe2\x96\x81" "calls\xe2\x96\x81" "begin")) return EM_TOOLS_DEEPSEEK_R1;
    if (strstr(s, "<|START_ACTION|>") || (strstr(s, "Action:") && strstr(s, "```json") && strstr(s, "tool_name")))
        return EM_TOOLS_COMMAND_R;
    if (strstr(s, "[TOOL_CALLS]")) return EM_TOOLS_MISTRAL;
    if (strstr(s, "<tool_call>")) return EM_TOOLS_HERMES;
    if (strstr(s, "functools[")) return EM_TOOLS_FIREFUNCTION;
    if (strstr(s, "<function=")) return EM_TOOLS_FUNCTIONARY_31;
    if (strstr(s, ">>>")) return EM_TOOLS_FUNCTIONARY_32;
    if (strstr(s, "<|start_header_id|>") && (strstr(s, "<|python_tag|>") || strstr(s, "\"parameters\"") ||
                                            strstr(s, "ipython")))
        return EM_TOOLS_LLAMA3;
    return EM_TOOLS_NONE;
}

/* ---- a small growing string ---- */

typedef struct {
    char *p;
    size_t len, cap;
    bool failed;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->failed || n == 0) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

/* ---- pieces ---- */

typedef struct {
    const char *text;   /* the whole generated text, for ids */
    json_t *calls;      /* the array being built */
    sbuf content;
} parse;

static const char *skip_ws(const char *s, const char *end) {
    while (s < end && isspace((unsigned char)*s)) s++;
    return s;
}

/* A JSON object or array at s (after whitespace): *out and the end of it,
 * or NULL when there is none. */
static const char *json_at(const char *s, const char *end, json_t **out) {
    s = skip_ws(s, end);
    *out = NULL;
    if (s >= end || (*s != '{' && *s != '[')) return NULL;
    json_error_t err;
    json_t *j = json_loadb(s, (size_t)(end - s), JSON_DISABLE_EOF_CHECK, &err);
    if (!j) return NULL;
    *out = j;
    return s + err.position;
}

/* A deterministic id: "call_" and 16 hex digits of the text and index. */
static void make_id(const parse *p, char id[32]) {
    uint64_t h = 1469598103934665603ull;
    for (const char *s = p->text; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    h = (h ^ (uint64_t)json_array_size(p->calls)) * 1099511628211ull;
    snprintf(id, 32, "call_%016llx", (unsigned long long)h);
}

/* Appends one call; `args` is a JSON value (stolen) or NULL with raw
 * argument text in raw/raw_len. */
static bool add_call(parse *p, const char *name, size_t name_len, json_t *args, const char *raw, size_t raw_len,
                     const char *id) {
    char idbuf[32];
    if (!id) {
        make_id(p, idbuf);
        id = idbuf;
    }
    char *arg_text = NULL;
    if (args) {
        arg_text = json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(args);
        if (!arg_text) return false;
    }
    json_t *fn = json_object(), *call = json_object();
    bool ok = fn && call &&
              !json_object_set_new(fn, "name", json_stringn(name, name_len)) &&
              !json_object_set_new(fn, "arguments", arg_text ? json_string(arg_text) : json_stringn(raw, raw_len)) &&
              !json_object_set_new(call, "id", json_string(id)) &&
              !json_object_set_new(call, "type", json_string("function")) &&
              !json_object_set(call, "function", fn) &&
              !json_array_append(p->calls, call);
    free(arg_text);
    json_decref(fn);
    json_decref(call);
    return ok;
}

/* {"name": ..., "arguments"|"parameters": {...}, "id"?: ...} as a call. */
static bool add_json_call(parse *p, json_t *obj, const char *name_key, const char *args_key) {
    if (!json_is_object(obj)) return false;
    json_t *name = json_object_get(obj, name_key);
    json_t *args = json_object_get(obj, args_key);
    if (!args && !strcmp(args_key, "arguments")) args = json_object_get(obj, "parameters");
    if (!args && !strcmp(args_key, "parameters")) args = json_object_get(obj, "arguments");
    if (!json_is_string(name)) return false;
    json_t *id = json_object_get(obj, "id");
    const char *idv = json_is_string(id) ? json_string_value(id) : NULL;
    if (json_is_string(args)) /* already encoded */
        return add_call(p, json_string_value(name), json_string_length(name), NULL, json_string_value(args),
                        json_string_length(args), idv);
    return add_call(p, json_string_value(name), json_string_length(name), args ? json_incref(args) : json_object(),
                    NULL, 0, idv);
}

/* A JSON array of call objects. */
static bool add_json_calls(parse *p, json_t *arr, const char *name_key, const char *args_key) {
    if (json_is_object(arr)) return add_json_call(p, arr, name_key, args_key);
    if (!json_is_array(arr) || json_array_size(arr) == 0) return false;
    size_t i;
    json_t *item;
    json_array_foreach(arr, i, item) {
        json_t *name = json_is_object(item) ? json_object_get(item, name_key) : NULL;
        /* Cohere's "directly-answer" is its way of not calling a tool. */
        if (json_is_string(name) && (!strcmp(json_string_value(name), "directly-answer") ||
                                     !strcmp(json_string_value(name), "directly_answer")))
            continue;
        if (!add_json_call(p, item, name_key, args_key)) return false;
    }
    return true;
}

static const char *find(const char *s, const char *end, const char *needle) {
    return memmem(s, (size_t)(end - s), needle, strlen(needle));
}

/* Calls wrapped in open/close tags: <tool_call>{json}</tool_call>. */
static bool parse_tagged(parse *p, const char *s, const char *end, const char *open, const char *close) {
    const char *at;
    bool any = false;
    while ((at = find(s, end, open))) {
        json_t *j;
        const char *after = json_at(at + strlen(open), end, &j);
        if (!after) break;
        bool ok = add_json_call(p, j, "name", "arguments");
        json_decref(j);
        if (!ok) return false;
        sb_put(&p->content, s, (size_t)(at - s));
        after = skip_ws(after, end);
        if ((size_t)(end - after) >= strlen(close) && !memcmp(after, close, strlen(close))) after += strlen(close);
        s = after;
        any = true;
    }
    sb_put(&p->content, s, (size_t)(end - s));
    return any;
}

/* Text before `marker` is content; after it, a JSON array of calls. */
static bool parse_marker_array(parse *p, const char *s, const char *end, const char *marker, const char *name_key,
                               const char *args_key) {
    const char *at = find(s, end, marker);
    if (!at) return false;
    json_t *j;
    const char *after = json_at(at + strlen(marker), end, &j);
    if (!after) return false;
    bool ok = add_json_calls(p, j, name_key, args_key);
    json_decref(j);
    if (!ok) return false;
    sb_put(&p->content, s, (size_t)(at - s));
    sb_put(&p->content, after, (size_t)(end - after));
    return true;
}

/* <|python_tag|> text: a JSON call, a built-in tool `name.call(k="v")`, or
 * Python code for the "python" tool. */
static bool parse_python_tag(parse *p, const char *s, const char *end) {
    json_t *j;
    const char *after = json_at(s, end, &j);
    if (after) {
        bool ok = add_json_call(p, j, "name", "parameters");
        json_decref(j);
        if (ok) return true;
    }
    s = skip_ws(s, end);
    const char *q = s;
    while (q < end && (isalnum((unsigned char)*q) || *q == '_')) q++;
    if (q > s && (size_t)(end - q) >= 6 && !memcmp(q, ".call(", 6)) {
        /* name.call(key="value", ...) */
        json_t *args = json_object();
        const char *r = q + 6;
        while (args) {
            r = skip_ws(r, end);
            if (r < end && *r == ')') break;
            const char *k = r;
            while (r < end && (isalnum((unsigned char)*r) || *r == '_')) r++;
            if (r == k || r >= end || *r != '=' || r + 1 >= end || r[1] != '"') {
                json_decref(args);
                args = NULL;
                break;
            }
            const char *v = r + 2, *ve = v;
            while (ve < end && *ve != '"') ve += *ve == '\\' && ve + 1 < end ? 2 : 1;
            if (ve >= end) {
                json_decref(args);
                args = NULL;
                break;
            }
            char key[128];
            snprintf(key, sizeof key, "%.*s", (int)EM_MIN((size_t)(r - k), sizeof key - 1), k);
            json_object_set_new(args, key, json_stringn(v, (size_t)(ve - v)));
            r = skip_ws(ve + 1, end);
            if (r < end && *r == ',') r++;
        }
        if (args) return add_call(p, s, (size_t)(q - s), args, NULL, 0, NULL);
    }
    json_t *code = json_object();
    if (!code || json_object_set_new(code, "code", json_stringn(s, (size_t)(end - s)))) {
        json_decref(code);
        return false;
    }
    return add_call(p, "python", 6, code, NULL, 0, NULL);
}

static bool parse_llama3(parse *p, const char *s, const char *end) {
    const char *tag = find(s, end, "<|python_tag|>");
    if (tag) {
        if (!parse_python_tag(p, tag + 14, end)) return false;
        sb_put(&p->content, s, (size_t)(tag - s));
        return true;
    }
    /* The whole answer is one JSON object {"name":..., "parameters":...}. */
    json_t *j;
    const char *after = json_at(s, end, &j);
    if (!after || !json_is_object(j) || skip_ws(after, end) != end) {
        json_decref(j);
        return false;
    }
    bool ok = json_is_string(json_object_get(j, "name")) &&
              (json_object_get(j, "parameters") || json_object_get(j, "arguments")) &&
              add_json_call(p, j, "name", "parameters");
    json_decref(j);
    return ok;
}

/* <function=name>{json}</function>, and <|python_tag|> code. */
static bool parse_functionary31(parse *p, const char *s, const char *end) {
    const char *at;
    bool any = false;
    while ((at = find(s, end, "<function="))) {
        const char *name = at + 10, *gt = name;
        while (gt < end && *gt != '>') gt++;
        if (gt >= end) break;
        json_t *j;
        const char *after = json_at(gt + 1, end, &j);
        if (!after || !json_is_object(j)) {
            json_decref(j);
            return false;
        }
        if (!add_call(p, name, (size_t)(gt - name), j, NULL, 0, NULL)) return false;
        sb_put(&p->content, s, (size_t)(at - s));
        after = skip_ws(after, end);
        if ((size_t)(end - after) >= 11 && !memcmp(after, "</function>", 11)) after += 11;
        s = after;
        any = true;
    }
    const char *tag = find(s, end, "<|python_tag|>");
    if (tag) {
        json_t *code = json_object();
        if (!code || json_object_set_new(code, "code", json_stringn(tag + 14, (size_t)(end - tag - 14)))) {
            json_decref(code);
            return false;
        }
        if (!add_call(p, "python", 6, code, NULL, 0, NULL)) return false;
        sb_put(&p->content, s, (size_t)(tag - s));
        return true;
    }
    sb_put(&p->content, s, (size_t)(end - s));
    return any;
}

/* Segments "recipient\nbody" separated by ">>>"; the prompt already wrote
 * the first ">>>".  Recipient "all" is text for the user. */
static bool parse_functionary32(parse *p, const char *s, const char *end) {
    bool any = false;
    if ((size_t)(end - s) >= 3 && !memcmp(s, ">>>", 3)) s += 3;
    while (s < end) {
        const char *next = find(s, end, ">>>");
        const char *seg_end = next ? next : end;
        const char *nl = memchr(s, '\n', (size_t)(seg_end - s));
        if (!nl) return false;
        const char *body = nl + 1;
        if ((size_t)(nl - s) == 3 && !memcmp(s, "all", 3)) {
            sb_put(&p->content, body, (size_t)(seg_end - body));
        } else {
            json_t *j;
            const char *after = json_at(body, seg_end, &j);
            if (after && skip_ws(after, seg_end) == seg_end) {
                if (!add_call(p, s, (size_t)(nl - s), j, NULL, 0, NULL)) return false;
            } else {
                json_decref(j);
                if ((size_t)(nl - s) != 6 || memcmp(s, "python", 6)) return false;
                json_t *code = json_object();
                if (!code || json_object_set_new(code, "code", json_stringn(body, (size_t)(seg_end - body)))) {
                    json_decref(code);
                    return false;
                }
                if (!add_call(p, "python", 6, code, NULL, 0, NULL)) return false;
            }
            any = true;
        }
        s = next ? next + 3 : end;
    }
    return any;
}

static bool parse_command_r(parse *p, const char *s, const char *end) {
    const char *act = find(s, end, "<|START_ACTION|>");
    if (act) {
        /* Command R7B: the thinking and response blocks stay content. */
        json_t *j;
        const char *after = json_at(act + 16, end, &j);
        if (!after) return false;
        bool ok = add_json_calls(p, j, "tool_name", "parameters");
        json_decref(j);
        if (!ok) return false;
        sb_put(&p->content, s, (size_t)(act - s));
        after = skip_ws(after, end);
        if ((size_t)(end - after) >= 14 && !memcmp(after, "<|END_ACTION|>", 14)) after += 14;
        sb_put(&p->content, after, (size_t)(end - after));
        return true;
    }
    const char *a = find(s, end, "Action:");
    if (!a) return false;
    const char *r = skip_ws(a + 7, end);
    if ((size_t)(end - r) >= 7 && !memcmp(r, "```json", 7)) r += 7;
    json_t *j;
    const char *after = json_at(r, end, &j);
    if (!after) return false;
    bool ok = add_json_calls(p, j, "tool_name", "parameters");
    json_decref(j);
    if (!ok) return false;
    sb_put(&p->content, s, (size_t)(a - s));
    after = skip_ws(after, end);
    if ((size_t)(end - after) >= 3 && !memcmp(after, "```", 3)) after += 3;
    sb_put(&p->content, after, (size_t)(end - after));
    return true;
}

#define DS_CALLS_BEGIN "<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "begin\xef\xbd\x9c>"
#define DS_CALLS_END "<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "end\xef\xbd\x9c>"
#define DS_CALL_BEGIN "<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "begin\xef\xbd\x9c>"
#define DS_CALL_END "<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "end\xef\xbd\x9c>"
#define DS_SEP "<\xef\xbd\x9ctool\xe2\x96\x81" "sep\xef\xbd\x9c>"

/* <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>name
 * ```json {...} ```<｜tool▁call▁end｜>...<｜tool▁calls▁end｜> */
static bool parse_deepseek(parse *p, const char *s, const char *end) {
    const char *begin = find(s, end, DS_CALLS_BEGIN);
    if (!begin) return false;
    const char *r = begin + strlen(DS_CALLS_BEGIN);
    bool any = false;
    for (;;) {
        const char *cb = find(r, end, DS_CALL_BEGIN);
        if (!cb) break;
        const char *sep = find(cb, end, DS_SEP);
        if (!sep) return false;
        const char *name = sep + strlen(DS_SEP), *nl = name;
        while (nl < end && *nl != '\n') nl++;
        const char *body = nl;
        body = skip_ws(body, end);
        if ((size_t)(end - body) >= 7 && !memcmp(body, "```json", 7)) body += 7;
        json_t *j;
        const char *after = json_at(body, end, &j);
        if (!after) return false;
        if (!add_call(p, name, (size_t)(nl - name), j, NULL, 0, NULL)) return false;
        after = skip_ws(after, end);
        if ((size_t)(end - after) >= 3 && !memcmp(after, "```", 3)) after += 3;
        after = skip_ws(after, end);
        if ((size_t)(end - after) >= strlen(DS_CALL_END) && !memcmp(after, DS_CALL_END, strlen(DS_CALL_END)))
            after += strlen(DS_CALL_END);
        r = after;
        any = true;
    }
    if (!any) return false;
    r = skip_ws(r, end);
    if ((size_t)(end - r) >= strlen(DS_CALLS_END) && !memcmp(r, DS_CALLS_END, strlen(DS_CALLS_END)))
        r += strlen(DS_CALLS_END);
    sb_put(&p->content, s, (size_t)(begin - s));
    sb_put(&p->content, r, (size_t)(end - r));
    return true;
}

/* ---- streaming: where a call may start ---- */

/* The earliest offset in text[0..n) where one of markers[] occurs, or
 * where a proper prefix of one ends the text. */
static size_t marker_start(const char *text, size_t n, const char *const *markers, int n_markers) {
    size_t best = n;
    for (int i = 0; i < n_markers; i++) {
        const size_t m = strlen(markers[i]);
        const char *at = memmem(text, n, markers[i], m);
        if (at && (size_t)(at - text) < best) best = (size_t)(at - text);
        for (size_t k = m - 1; k > 0; k--) /* the text ends with the marker's first k bytes */
            if (k <= n && n - k < best && !memcmp(text + n - k, markers[i], k)) {
                best = n - k;
                break;
            }
    }
    return best;
}

size_t em_chat_tool_call_start(em_tool_family f, const char *text, size_t n) {
    static const char *const hermes[] = {"<tool_call>"}, *const python[] = {"<|python_tag|>"},
                             *const mistral[] = {"[TOOL_CALLS]"}, *const fn31[] = {"<function=", "<|python_tag|>"},
                             *const fire[] = {"functools"}, *const cmdr[] = {"<|START_ACTION|>", "Action:"},
                             *const ds[] = {DS_CALLS_BEGIN};
    switch (f) {
    case EM_TOOLS_NONE: return n;
    case EM_TOOLS_HERMES: return marker_start(text, n, hermes, 1);
    case EM_TOOLS_LLAMA3: {
        /* A whole answer that is one JSON object is a call. */
        const char *s = skip_ws(text, text + n);
        if (s == text + n || *s == '{') return 0;
        return marker_start(text, n, python, 1);
    }
    case EM_TOOLS_MISTRAL: return marker_start(text, n, mistral, 1);
    case EM_TOOLS_FUNCTIONARY_31: return marker_start(text, n, fn31, 2);
    case EM_TOOLS_FUNCTIONARY_32: return 0;
    case EM_TOOLS_FIREFUNCTION: return marker_start(text, n, fire, 1);
    case EM_TOOLS_COMMAND_R: return marker_start(text, n, cmdr, 2);
    case EM_TOOLS_DEEPSEEK_R1: return marker_start(text, n, ds, 1);
    }
    return 0;
}

/* ---- entry ---- */

static char *trimmed_copy(const char *s, size_t n) {
    const char *b = s, *e = s + n;
    while (b < e && isspace((unsigned char)*b)) b++;
    while (e > b && isspace((unsigned char)e[-1])) e--;
    char *out = malloc((size_t)(e - b) + 1);
    if (!out) return NULL;
    memcpy(out, b, (size_t)(e - b));
    out[e - b] = 0;
    return out;
}

em_status em_chat_parse_tool_calls(const char *template_source_or_family, const char *text, json_t **tool_calls,
                                   char **content) {
    *tool_calls = NULL;
    *content = NULL;
    if (!text) return em_error(EM_ERR_INVALID_ARG, "tool calls: no text");
    em_tool_family f = em_chat_tool_family(template_source_or_family);
    parse p = {.text = text, .calls = json_array()};
    if (!p.calls) return em_error(EM_ERR_NOMEM, "tool calls: out of memory");
    const char *s = text, *end = text + strlen(text);
    bool found = false;
    switch (f) {
    case EM_TOOLS_NONE: break;
    case EM_TOOLS_HERMES: found = parse_tagged(&p, s, end, "<tool_call>", "</tool_call>"); break;
    case EM_TOOLS_LLAMA3: found = parse_llama3(&p, s, end); break;
    case EM_TOOLS_MISTRAL: found = parse_marker_array(&p, s, end, "[TOOL_CALLS]", "name", "arguments"); break;
    case EM_TOOLS_FUNCTIONARY_31: found = parse_functionary31(&p, s, end); break;
    case EM_TOOLS_FUNCTIONARY_32: found = parse_functionary32(&p, s, end); break;
    case EM_TOOLS_FIREFUNCTION: found = parse_marker_array(&p, s, end, "functools", "name", "arguments"); break;
    case EM_TOOLS_COMMAND_R: found = parse_command_r(&p, s, end); break;
    case EM_TOOLS_DEEPSEEK_R1: found = parse_deepseek(&p, s, end); break;
    }
    if (p.content.failed) {
        free(p.content.p);
        json_decref(p.calls);
        return em_error(EM_ERR_NOMEM, "tool calls: out of memory");
    }
    if (!found || json_array_size(p.calls) == 0) {
        /* No well-formed call: the text is the answer, unchanged. */
        free(p.content.p);
        json_decref(p.calls);
        *content = strdup(text);
        return *content ? EM_OK : em_error(EM_ERR_NOMEM, "tool calls: out of memory");
    }
    *content = trimmed_copy(p.content.p ? p.content.p : "", p.content.len);
    free(p.content.p);
    if (!*content) {
        json_decref(p.calls);
        return em_error(EM_ERR_NOMEM, "tool calls: out of memory");
    }
    *tool_calls = p.calls;
    return EM_OK;
}
