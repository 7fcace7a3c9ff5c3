/*
 * json_schema.c - JSON schema to grammar.
 *
 * Every schema becomes a rule for the JSON texts that validate against it,
 * built from a few shared rules (whitespace, string characters, numbers,
 * any value).  The choices that shape the output:
 *
 *  - Whitespace is bounded: nothing, one space, or a newline and up to 16
 *    spaces, after '{', '[', ':' and ',' and before '}' and ']'; none at the
 *    ends.  A model cannot run away in whitespace, yet may pretty-print.
 *  - Objects with "properties" list them in declaration order; required
 *    ones must appear, optional ones may be left out.  Other keys only when
 *    additionalProperties is true or a schema, and then after the listed
 *    ones.  An object schema without "properties" takes any keys (values
 *    per additionalProperties, which defaults to any value here).
 *  - Strings never contain raw control characters; \u escapes never name
 *    surrogates (text outside the BMP comes as raw UTF-8), so every string
 *    is valid UTF-8 once decoded.
 *  - Numbers have at most 16 integer digits, 16 fraction digits and a
 *    2-digit exponent.  Numbers keep to minimum/maximum (and the
 *    exclusive forms) exactly, through a digit-by-digit range grammar:
 *    integers by their digits, other numbers by their integer part and,
 *    at a bound's integer part, their fraction digits against the
 *    bound's (its shortest decimal text: 0.1 means 0.1).  A bounded
 *    number is written without an exponent.
 *    (A 2-digit exponent keeps every number finite as a double.)
 *  - enum and const are their values written compactly by jansson.
 *
 * Anything that constrains and is not understood is an error that names
 * the keyword and its place (a JSON pointer into the schema); keywords that
 * only annotate (title, description, default, examples, ...) are skipped.
 */
#include "core/core.h"
#include "sample/grammar_build.h"
#include "sample/schema_regex.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define SC_MAX_NEST 200   /* nested subschemas being compiled at once */
#define SC_WS_INDENT 16   /* spaces after a newline in whitespace      */

typedef struct sc_ref {
    const json_t *target; /* a schema a $ref resolved to           */
    int32_t rule;         /* its rule (made before its body, so that
                           * recursive references find it)          */
} sc_ref;

typedef struct sc {
    em_gbuild *b;
    const json_t *root;  /* the whole schema, for $ref */
    char path[1024];     /* JSON pointer of the schema being compiled */
    size_t path_len;
    int nest;
    sc_ref *refs;        /* [n_refs] */
    int32_t n_refs, cap_refs;
    /* Shared rules, made on first use (-1 until then). */
    int32_t ws, chr, string, integer, number, value, object_any, array_any;
    int32_t nonneg_integer, nonneg_number;
} sc;

/* ----------------------------------------------------------- errors */

static int32_t sc_fail(sc *c, em_status st, const char *fmt, ...) EM_PRINTF(3, 4);
static int32_t sc_fail(sc *c, em_status st, const char *fmt, ...) {
    if (em_gbuild_status(c->b) != EM_OK) return -1;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    em_gbuild_fail(c->b, em_error(st, "json_schema: %s at %s", msg,
                                  c->path_len ? c->path : "/"));
    return -1;
}

/* Appends "/key" (escaped as a JSON pointer) to the path; returns the old
 * length for path_pop.  A path too long for the buffer is cut with "...". */
static size_t path_push(sc *c, const char *key) {
    size_t old = c->path_len;
    size_t n = old;
    if (n + 2 < sizeof c->path) c->path[n++] = '/';
    for (const char *k = key; *k && n + 3 < sizeof c->path; k++) {
        if (*k == '~' || *k == '/') {
            c->path[n++] = '~';
            c->path[n++] = *k == '~' ? '0' : '1';
        } else {
            c->path[n++] = *k;
        }
    }
    c->path[n] = '\0';
    c->path_len = n;
    return old;
}

static size_t path_push_index(sc *c, size_t i) {
    char k[32];
    snprintf(k, sizeof k, "%zu", i);
    return path_push(c, k);
}

static void path_pop(sc *c, size_t old) {
    c->path_len = old;
    c->path[old] = '\0';
}

/* ----------------------------------------------------- shared rules */

static int32_t lit(sc *c, const char *text) {
    return em_gb_lit_rule(c->b, text);
}

/* Whitespace: nothing, a space, or a newline and up to 16 spaces. */
static int32_t ws(sc *c) {
    if (c->ws >= 0) return c->ws;
    em_gbuild *b = c->b;
    em_gseq s = {0};
    int32_t indent = em_gb_repeat(b, lit(c, " "), 0, SC_WS_INDENT);
    int32_t r = em_gb_rule(b);
    em_gb_alt_empty(b, r);
    em_gs_lit(b, &s, " ", 1);
    em_gb_alt(b, r, &s);
    em_gs_lit(b, &s, "\n", 1);
    em_gs_ref(b, &s, indent);
    em_gb_alt(b, r, &s);
    em_gseq_free(&s);
    return c->ws = r;
}

/* Appends ',' WS to q: what comes between two members or elements. */
static void comma_ws(sc *c, em_gseq *q) {
    em_gs_lit(c->b, q, ",", 1);
    em_gs_ref(c->b, q, ws(c));
}

/* The rule open WS inner WS close, with q holding what comes before open
 * (usually nothing); without inner (-1), open WS close.  Frees q. */
static int32_t enclosed(sc *c, em_gseq *q, const char *open, int32_t inner, const char *close) {
    em_gbuild *b = c->b;
    em_gs_lit(b, q, open, strlen(open));
    em_gs_ref(b, q, ws(c));
    if (inner >= 0) {
        em_gs_ref(b, q, inner);
        em_gs_ref(b, q, ws(c));
    }
    em_gs_lit(b, q, close, strlen(close));
    int32_t r = em_gb_seq_rule(b, q);
    em_gseq_free(q);
    return r;
}

/* One character inside a JSON string, as it is written: a printable ASCII
 * byte other than '"' and '\', a well-formed UTF-8 sequence (no
 * surrogates, nothing above U+10FFFF), or an escape. */
static int32_t chr(sc *c) {
    if (c->chr >= 0) return c->chr;
    em_gbuild *b = c->b;
    em_gseq s = {0};
    int32_t r = em_gb_rule(b);
    em_byteset plain = {{0}};
    em_byteset_add(&plain, 0x20, 0x7F);
    plain.w['"' >> 6] &= ~(1ull << ('"' & 63));
    plain.w['\\' >> 6] &= ~(1ull << ('\\' & 63));
    em_gs_set(b, &s, &plain);
    em_gb_alt(b, r, &s);
    em_gs_ref(b, &s, em_gb_utf8_rule(b));
    em_gb_alt(b, r, &s);
    /* Escapes; \u with four hex digits outside D800-DFFF. */
    em_byteset esc = {{0}}, hex = {{0}}, hex_nd = {{0}}, d0_7 = {{0}}, dD = {{0}};
    for (const char *e = "\"\\/bfnrt"; *e; e++) em_byteset_add(&esc, (uint8_t)*e, (uint8_t)*e);
    em_byteset_add(&hex, '0', '9'), em_byteset_add(&hex, 'a', 'f'), em_byteset_add(&hex, 'A', 'F');
    hex_nd = hex;
    hex_nd.w['d' >> 6] &= ~(1ull << ('d' & 63));
    hex_nd.w['D' >> 6] &= ~(1ull << ('D' & 63));
    em_byteset_add(&d0_7, '0', '7');
    em_byteset_add(&dD, 'd', 'd'), em_byteset_add(&dD, 'D', 'D');
    em_gs_lit(b, &s, "\\", 1);
    em_gs_set(b, &s, &esc);
    em_gb_alt(b, r, &s);
    em_gs_lit(b, &s, "\\u", 2);
    em_gs_set(b, &s, &hex_nd);
    em_gs_set(b, &s, &hex), em_gs_set(b, &s, &hex), em_gs_set(b, &s, &hex);
    em_gb_alt(b, r, &s);
    em_gs_lit(b, &s, "\\u", 2);
    em_gs_set(b, &s, &dD);
    em_gs_set(b, &s, &d0_7);
    em_gs_set(b, &s, &hex), em_gs_set(b, &s, &hex);
    em_gb_alt(b, r, &s);
    em_gseq_free(&s);
    return c->chr = r;
}

/* '"' body '"' where body is the rule of the characters in between. */
static int32_t quoted(sc *c, int32_t body) {
    em_gseq s = {0};
    em_gs_lit(c->b, &s, "\"", 1);
    em_gs_ref(c->b, &s, body);
    em_gs_lit(c->b, &s, "\"", 1);
    int32_t r = em_gb_seq_rule(c->b, &s);
    em_gseq_free(&s);
    return r;
}

static int32_t string_any(sc *c) {
    if (c->string >= 0) return c->string;
    return c->string = quoted(c, em_gb_repeat(c->b, chr(c), 0, -1));
}

/* Integers: -?(0|[1-9][0-9]{0,15}); nonneg leaves out the sign. */
static int32_t integer_rule(sc *c, bool nonneg) {
    int32_t *memo = nonneg ? &c->nonneg_integer : &c->integer;
    if (*memo >= 0) return *memo;
    em_gbuild *b = c->b;
    em_gseq s = {0};
    int32_t digits = em_gb_repeat(b, em_gb_seq_rule(b, (em_gs_range(b, &s, '0', '9'), &s)), 0, 15);
    int32_t mag = em_gb_rule(b);
    em_gs_lit(b, &s, "0", 1);
    em_gb_alt(b, mag, &s);
    em_gs_range(b, &s, '1', '9');
    em_gs_ref(b, &s, digits);
    em_gb_alt(b, mag, &s);
    int32_t r = em_gb_rule(b);
    if (!nonneg) {
        em_gs_lit(b, &s, "-", 1);
        em_gs_ref(b, &s, mag);
        em_gb_alt(b, r, &s);
    }
    em_gs_ref(b, &s, mag);
    em_gb_alt(b, r, &s);
    em_gseq_free(&s);
    return *memo = r;
}

/* Numbers: an integer, then optionally .[0-9]{1,16}, then optionally
 * [eE][+-]?[0-9]{1,2}. */
static int32_t number_rule(sc *c, bool nonneg) {
    int32_t *memo = nonneg ? &c->nonneg_number : &c->number;
    if (*memo >= 0) return *memo;
    em_gbuild *b = c->b;
    em_gseq s = {0};
    int32_t digit = em_gb_seq_rule(b, (em_gs_range(b, &s, '0', '9'), &s));
    em_gs_lit(b, &s, ".", 1);
    em_gs_ref(b, &s, em_gb_repeat(b, digit, 1, 16));
    int32_t frac = em_gb_opt(b, em_gb_seq_rule(b, &s));
    em_byteset e = {{0}}, sign = {{0}};
    em_byteset_add(&e, 'e', 'e'), em_byteset_add(&e, 'E', 'E');
    em_byteset_add(&sign, '+', '+'), em_byteset_add(&sign, '-', '-');
    int32_t opt_sign = em_gb_opt(b, em_gb_seq_rule(b, (em_gs_set(b, &s, &sign), &s)));
    em_gs_set(b, &s, &e);
    em_gs_ref(b, &s, opt_sign);
    em_gs_ref(b, &s, em_gb_repeat(b, digit, 1, 2));
    int32_t exp = em_gb_opt(b, em_gb_seq_rule(b, &s));
    em_gs_ref(b, &s, integer_rule(c, nonneg));
    em_gs_ref(b, &s, frac);
    em_gs_ref(b, &s, exp);
    int32_t r = em_gb_seq_rule(b, &s);
    em_gseq_free(&s);
    return *memo = r;
}

/* open WS [item (',' WS item)*] WS close, the item rule given; used for any
 * object and any array. */
static int32_t list_of(sc *c, const char *open, int32_t item, const char *close) {
    em_gbuild *b = c->b;
    em_gseq s = {0};
    comma_ws(c, &s);
    em_gs_ref(b, &s, item);
    int32_t more = em_gb_repeat(b, em_gb_seq_rule(b, &s), 0, -1);
    em_gs_ref(b, &s, item);
    em_gs_ref(b, &s, more);
    int32_t items = em_gb_opt(b, em_gb_seq_rule(b, &s));
    return enclosed(c, &s, open, items, close);
}

/* key ':' WS value, the key rule given. */
static int32_t member(sc *c, int32_t key, int32_t value) {
    em_gseq s = {0};
    em_gs_ref(c->b, &s, key);
    em_gs_lit(c->b, &s, ":", 1);
    em_gs_ref(c->b, &s, ws(c));
    em_gs_ref(c->b, &s, value);
    int32_t r = em_gb_seq_rule(c->b, &s);
    em_gseq_free(&s);
    return r;
}

static int32_t value_any(sc *c);

static int32_t object_of(sc *c, int32_t value) {
    return list_of(c, "{", member(c, string_any(c), value), "}");
}

static int32_t object_any(sc *c) {
    if (c->object_any >= 0) return c->object_any;
    /* Made before its body: values nest objects. */
    int32_t r = c->object_any = em_gb_rule(c->b);
    em_gseq s = {0};
    em_gs_ref(c->b, &s, object_of(c, value_any(c)));
    em_gb_alt(c->b, r, &s);
    em_gseq_free(&s);
    return r;
}

static int32_t array_any(sc *c) {
    if (c->array_any >= 0) return c->array_any;
    int32_t r = c->array_any = em_gb_rule(c->b);
    em_gseq s = {0};
    em_gs_ref(c->b, &s, list_of(c, "[", value_any(c), "]"));
    em_gb_alt(c->b, r, &s);
    em_gseq_free(&s);
    return r;
}

static int32_t value_any(sc *c) {
    if (c->value >= 0) return c->value;
    em_gbuild *b = c->b;
    int32_t r = c->value = em_gb_rule(b);
    int32_t parts[] = {object_any(c), array_any(c), string_any(c), number_rule(c, false),
                       lit(c, "true"), lit(c, "false"), lit(c, "null")};
    em_gseq s = {0};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        em_gs_ref(b, &s, parts[i]);
        em_gb_alt(b, r, &s);
    }
    em_gseq_free(&s);
    return r;
}

/* A rule with one alternative per rule in alts[0..n). */
static int32_t one_of_rules(sc *c, const int32_t *alts, size_t n) {
    int32_t r = em_gb_rule(c->b);
    em_gseq s = {0};
    for (size_t i = 0; i < n; i++) {
        em_gs_ref(c->b, &s, alts[i]);
        em_gb_alt(c->b, r, &s);
    }
    em_gseq_free(&s);
    return r;
}

/* --------------------------------------------------- literal values */

/* The shortest text jansson writes for v that reads back equal: reals
 * are tried at increasing precision, so 0.1 is "0.1", not
 * "0.10000000000000001". */
static char *dump_value(const json_t *v) {
    if (!json_is_real(v)) return json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    for (int p = 1; p <= 17; p++) {
        char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(p));
        if (!t) return NULL;
        json_t *back = json_loads(t, JSON_DECODE_ANY, NULL);
        bool same = back && json_is_number(back) && json_number_value(back) == json_real_value(v);
        json_decref(back);
        if (same || p == 17) return t;
        free(t);
    }
    return NULL;
}

static int32_t literal(sc *c, const json_t *v) {
    char *t = dump_value(v);
    if (!t) return sc_fail(c, EM_ERR_NOMEM, "out of memory");
    int32_t r = lit(c, t);
    free(t);
    return r;
}

/* --------------------------------------------------------- keywords */

static const char *const handled_keywords[] = {
    "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
    "enum", "const", "pattern", "minLength", "maxLength", "format", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "anyOf", "oneOf", "allOf", "$ref", "$defs",
    "definitions", "nullable", "prefixItems", NULL};

/* Keywords that describe without constraining: skipped. */
static const char *const annotation_keywords[] = {
    "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated",
    "readOnly", "writeOnly", "$anchor", "strict", NULL};

static bool in_list(const char *const *list, const char *k) {
    for (; *list; list++)
        if (!strcmp(*list, k)) return true;
    return false;
}

static bool is_annotation(const char *k) {
    return in_list(annotation_keywords, k) || !strncmp(k, "x-", 2) || !strcmp(k, "$defs") ||
           !strcmp(k, "definitions");
}

/* Fails on the first keyword of s that is neither handled nor an
 * annotation. */
static bool check_keywords(sc *c, const json_t *s) {
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)s, k, v) {
        if (!in_list(handled_keywords, k) && !is_annotation(k)) {
            sc_fail(c, EM_ERR_UNSUPPORTED, "unsupported keyword '%s'", k);
            return false;
        }
    }
    return true;
}

/* A non-negative integer keyword of s into *out (absent: def).  */
static bool count_keyword(sc *c, const json_t *s, const char *key, int64_t def, int64_t *out) {
    const json_t *v = json_object_get(s, key);
    *out = def;
    if (!v) return true;
    double d = json_number_value(v);
    if (!json_is_number(v) || d < 0 || d != floor(d) || d > 1e15) {
        sc_fail(c, EM_ERR_INVALID_ARG, "'%s' must be a non-negative integer", key);
        return false;
    }
    *out = (int64_t)d;
    return true;
}

/* ------------------------------------------------------------ schemas */

static int32_t schema(sc *c, const json_t *s);

/* Follows a "#/..." JSON pointer from the root. */
static const json_t *resolve(sc *c, const char *ref) {
    if (ref[0] != '#' || (ref[1] && ref[1] != '/')) {
        sc_fail(c, EM_ERR_UNSUPPORTED, "$ref '%.200s': only local references (#/...) are "
                                       "supported", ref);
        return NULL;
    }
    const json_t *cur = c->root;
    const char *p = ref + 1;
    char tok[256];
    while (*p == '/' && cur) {
        p++;
        size_t n = 0;
        for (; *p && *p != '/'; p++) {
            char ch = *p;
            if (ch == '~' && (p[1] == '0' || p[1] == '1')) ch = *++p == '0' ? '~' : '/';
            if (n + 1 >= sizeof tok) {
                sc_fail(c, EM_ERR_INVALID_ARG, "$ref '%.200s': a name too long", ref);
                return NULL;
            }
            tok[n++] = ch;
        }
        tok[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_get(cur, tok);
        } else if (json_is_array(cur)) {
            char *end;
            unsigned long i = strtoul(tok, &end, 10);
            cur = (*tok && !*end) ? json_array_get(cur, i) : NULL;
        } else {
            cur = NULL;
        }
    }
    if (!cur) sc_fail(c, EM_ERR_INVALID_ARG, "$ref '%.200s' resolves to nothing", ref);
    return cur;
}

static int32_t ref_rule(sc *c, const json_t *s) {
    const char *ref = json_string_value(json_object_get(s, "$ref"));
    if (!ref) return sc_fail(c, EM_ERR_INVALID_ARG, "'$ref' must be a string");
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)s, k, v) {
        if (strcmp(k, "$ref") != 0 && !is_annotation(k))
            return sc_fail(c, EM_ERR_UNSUPPORTED, "keyword '%s' beside '$ref'", k);
    }
    const json_t *target = resolve(c, ref);
    if (!target) return -1;
    for (int32_t i = 0; i < c->n_refs; i++)
        if (c->refs[i].target == target) return c->refs[i].rule;
    if (c->n_refs == c->cap_refs) {
        int32_t cap = c->cap_refs ? c->cap_refs * 2 : 16;
        sc_ref *q = realloc(c->refs, sizeof *q * (size_t)cap);
        if (!q) return sc_fail(c, EM_ERR_NOMEM, "out of memory");
        c->refs = q;
        c->cap_refs = cap;
    }
    int32_t r = em_gb_rule(c->b);
    c->refs[c->n_refs++] = (sc_ref){target, r};
    /* Errors inside the target name its place, not the referrer's. */
    char saved[sizeof c->path];
    size_t saved_len = c->path_len;
    memcpy(saved, c->path, sizeof saved);
    snprintf(c->path, sizeof c->path, "%.1000s", ref + 1);
    c->path_len = strlen(c->path);
    int32_t body = schema(c, target);
    memcpy(c->path, saved, sizeof saved);
    c->path_len = saved_len;
    em_gseq q = {0};
    em_gs_ref(c->b, &q, body);
    em_gb_alt(c->b, r, &q);
    em_gseq_free(&q);
    return r;
}

static int32_t object_schema(sc *c, const json_t *s) {
    em_gbuild *b = c->b;
    const json_t *props = json_object_get(s, "properties");
    const json_t *req = json_object_get(s, "required");
    const json_t *addl = json_object_get(s, "additionalProperties");
    if (props && !json_is_object(props))
        return sc_fail(c, EM_ERR_INVALID_ARG, "'properties' must be an object");
    if (req && !json_is_array(req))
        return sc_fail(c, EM_ERR_INVALID_ARG, "'required' must be an array of names");
    if (addl && !json_is_object(addl) && !json_is_boolean(addl))
        return sc_fail(c, EM_ERR_INVALID_ARG, "'additionalProperties' must be a boolean or a "
                                              "schema");
    size_t i;
    const json_t *name;
    json_array_foreach((json_t *)req, i, name) {
        if (!json_is_string(name))
            return sc_fail(c, EM_ERR_INVALID_ARG, "'required' must be an array of names");
        if (props && !json_object_get(props, json_string_value(name)) &&
            !(addl && !json_is_false(addl)))
            return sc_fail(c, EM_ERR_INVALID_ARG, "required property '%.200s' is not in "
                                                  "'properties'", json_string_value(name));
    }
    /* The value rule of keys beyond the listed properties, or -1. */
    int32_t extra = -1;
    if (!props || (addl && !json_is_false(addl))) {
        if (addl && json_is_false(addl)) {
            extra = -1;
        } else if (addl && json_is_object(addl)) {
            size_t old = path_push(c, "additionalProperties");
            extra = schema(c, addl);
            path_pop(c, old);
            if (extra < 0) return -1;
        } else {
            extra = value_any(c);
        }
    }
    if (!props && !req && extra >= 0) return object_of(c, extra);

    /* The listed properties, then required names that are not listed
     * (their values follow additionalProperties). */
    size_t n_props = (props ? json_object_size(props) : 0) + (req ? json_array_size(req) : 0);
    int32_t *kv = malloc(sizeof *kv * (n_props + 1));
    bool *must = malloc(sizeof *must * (n_props + 1));
    if (!kv || !must) {
        free(kv), free(must);
        return sc_fail(c, EM_ERR_NOMEM, "out of memory");
    }
    size_t n = 0;
    const char *key;
    const json_t *sub;
    bool ok = true;
    size_t old = path_push(c, "properties");
    json_object_foreach((json_t *)props, key, sub) {
        bool required = false;
        json_array_foreach((json_t *)req, i, name) required |= !strcmp(json_string_value(name), key);
        size_t o2 = path_push(c, key);
        if (json_is_false(sub) && !required) {
            path_pop(c, o2); /* a property that must not appear */
            continue;
        }
        int32_t val = schema(c, sub);
        path_pop(c, o2);
        json_t *kj = json_string(key);
        int32_t kr = kj ? literal(c, kj) : sc_fail(c, EM_ERR_NOMEM, "out of memory");
        json_decref(kj);
        if (val < 0 || kr < 0) {
            ok = false;
            break;
        }
        must[n] = required;
        kv[n++] = member(c, kr, val);
    }
    path_pop(c, old);
    json_array_foreach((json_t *)req, i, name) {
        if (!ok || (props && json_object_get(props, json_string_value(name)))) continue;
        bool seen = false; /* a name listed twice is one member */
        for (size_t k = 0; k < i; k++)
            seen |= !strcmp(json_string_value(json_array_get(req, k)), json_string_value(name));
        if (seen) continue;
        json_t *kj = json_string(json_string_value(name));
        int32_t kr = kj ? literal(c, kj) : sc_fail(c, EM_ERR_NOMEM, "out of memory");
        json_decref(kj);
        if (kr < 0) ok = false;
        must[n] = true;
        kv[n++] = member(c, kr, extra >= 0 ? extra : value_any(c));
    }
    if (!ok) {
        free(kv), free(must);
        return -1;
    }
    /* T_i: the members from i on when one has been written already (each
     * comes after a comma); H_i: the same when none has.  Extra keys come
     * last. */
    em_gseq q = {0};
    int32_t tail, head;
    if (extra >= 0) {
        int32_t extra_kv = member(c, string_any(c), extra);
        comma_ws(c, &q);
        em_gs_ref(b, &q, extra_kv);
        tail = em_gb_repeat(b, em_gb_seq_rule(b, &q), 0, -1);
        em_gs_ref(b, &q, extra_kv);
        em_gs_ref(b, &q, tail);
        head = em_gb_opt(b, em_gb_seq_rule(b, &q));
    } else {
        tail = head = em_gb_rule(b);
        em_gb_alt_empty(b, tail);
    }
    for (size_t k = n; k-- > 0;) {
        int32_t t = em_gb_rule(b), h = em_gb_rule(b);
        comma_ws(c, &q);
        em_gs_ref(b, &q, kv[k]);
        em_gs_ref(b, &q, tail);
        em_gb_alt(b, t, &q);
        em_gs_ref(b, &q, kv[k]);
        em_gs_ref(b, &q, tail);
        em_gb_alt(b, h, &q);
        if (!must[k]) {
            em_gs_ref(b, &q, tail);
            em_gb_alt(b, t, &q);
            em_gs_ref(b, &q, head);
            em_gb_alt(b, h, &q);
        }
        tail = t;
        head = h;
    }
    free(kv);
    free(must);
    return enclosed(c, &q, "{", head, "}");
}

/* The rule of one array element: the `items` schema, any value when
 * `items` is absent or true, -1 (with the error set) otherwise. */
static int32_t array_item(sc *c, const json_t *items) {
    if (items && json_is_object(items)) {
        size_t old = path_push(c, "items");
        int32_t item = schema(c, items);
        path_pop(c, old);
        return item;
    }
    if (items && !json_is_true(items)) return sc_fail(c, EM_ERR_INVALID_ARG, "'items' must be a schema");
    return value_any(c);
}

/* An array with prefixItems [s_0 .. s_k-1]: element i follows s_i, the
 * rest follow items.  R_i, the elements from position i on, is
 * sep s_i R_(i+1), or nothing once minItems are written; R_k is the rest,
 * each after a comma. */
static int32_t tuple_schema(sc *c, const json_t *prefix, const json_t *items, int64_t lo,
                            int64_t hi) {
    em_gbuild *b = c->b;
    size_t k = json_array_size(prefix);
    em_gseq q = {0};
    int32_t rest;
    int64_t r_lo = lo > (int64_t)k ? lo - (int64_t)k : 0;
    int64_t r_hi = hi < 0 ? -1 : hi > (int64_t)k ? hi - (int64_t)k : 0;
    if (json_is_false(items)) r_hi = 0;
    if (r_hi == 0 && r_lo > 0)
        return sc_fail(c, EM_ERR_INVALID_ARG, "minItems beyond prefixItems with items false");
    if (r_hi == 0) {
        rest = em_gb_rule(b);
        em_gb_alt_empty(b, rest);
    } else {
        int32_t item = array_item(c, items);
        if (item < 0) return -1;
        comma_ws(c, &q);
        em_gs_ref(b, &q, item);
        rest = em_gb_repeat(b, em_gb_seq_rule(b, &q), r_lo, r_hi);
    }
    int32_t tail = rest;
    size_t old = path_push(c, "prefixItems");
    for (size_t i = k; i-- > 0;) {
        int32_t r = em_gb_rule(b);
        if (hi < 0 || (int64_t)i < hi) {
            size_t o2 = path_push_index(c, i);
            int32_t el = schema(c, json_array_get(prefix, i));
            path_pop(c, o2);
            if (el < 0) {
                path_pop(c, old);
                em_gseq_free(&q);
                return -1;
            }
            if (i > 0) comma_ws(c, &q);
            em_gs_ref(b, &q, el);
            em_gs_ref(b, &q, tail);
            em_gb_alt(b, r, &q);
        }
        if ((int64_t)i >= lo) em_gb_alt_empty(b, r);
        tail = r;
    }
    path_pop(c, old);
    return enclosed(c, &q, "[", tail, "]");
}

static int32_t array_schema(sc *c, const json_t *s) {
    em_gbuild *b = c->b;
    const json_t *items = json_object_get(s, "items");
    const json_t *prefix = json_object_get(s, "prefixItems");
    int64_t lo, hi;
    if (!count_keyword(c, s, "minItems", 0, &lo) || !count_keyword(c, s, "maxItems", -1, &hi))
        return -1;
    if (hi >= 0 && lo > hi) return sc_fail(c, EM_ERR_INVALID_ARG, "minItems > maxItems");
    if (prefix && (!json_is_array(prefix) || json_array_size(prefix) > EM_GB_MAX_REPEAT))
        return sc_fail(c, EM_ERR_INVALID_ARG, "'prefixItems' must be an array of schemas");
    if (prefix && json_array_size(prefix) > 0) return tuple_schema(c, prefix, items, lo, hi);
    if (items && json_is_array(items))
        return sc_fail(c, EM_ERR_UNSUPPORTED, "unsupported keyword 'items' as an array (tuples)");
    if (items && json_is_false(items)) hi = 0;
    if (hi == 0 && lo > 0) return sc_fail(c, EM_ERR_INVALID_ARG, "minItems > 0 with items false");
    em_gseq q = {0};
    int32_t body = -1;
    if (hi != 0) {
        int32_t item = array_item(c, items);
        if (item < 0) return -1;
        comma_ws(c, &q);
        em_gs_ref(b, &q, item);
        int32_t next = em_gb_seq_rule(b, &q);
        em_gs_ref(b, &q, item);
        em_gs_ref(b, &q, em_gb_repeat(b, next, lo > 0 ? lo - 1 : 0, hi < 0 ? -1 : hi - 1));
        body = em_gb_seq_rule(b, &q);
        if (lo == 0) body = em_gb_opt(b, body);
    }
    return enclosed(c, &q, "[", body, "]");
}

/* Text of a format, quotes included. */
static int32_t format_rule(sc *c, const char *fmt) {
    em_gbuild *b = c->b;
    em_gseq q = {0};
    int32_t r = -1;
    /* Each format as a sequence of byte-set pieces: "d" a digit, "h" a hex
     * digit, "Y" a year, "M" a month, "D" a day, "T" a time. */
    int32_t digit = em_gb_seq_rule(b, (em_gs_range(b, &q, '0', '9'), &q));
    /* month 01-12, day 01-31, hh:mm:ss[.f+](Z|+hh:mm) */
    int32_t month = em_gb_rule(b), day = em_gb_rule(b), hour = em_gb_rule(b);
    em_gs_lit(b, &q, "0", 1), em_gs_range(b, &q, '1', '9'), em_gb_alt(b, month, &q);
    em_gs_lit(b, &q, "1", 1), em_gs_range(b, &q, '0', '2'), em_gb_alt(b, month, &q);
    em_gs_lit(b, &q, "0", 1), em_gs_range(b, &q, '1', '9'), em_gb_alt(b, day, &q);
    em_gs_range(b, &q, '1', '2'), em_gs_range(b, &q, '0', '9'), em_gb_alt(b, day, &q);
    em_gs_lit(b, &q, "3", 1), em_gs_range(b, &q, '0', '1'), em_gb_alt(b, day, &q);
    em_gs_range(b, &q, '0', '1'), em_gs_range(b, &q, '0', '9'), em_gb_alt(b, hour, &q);
    em_gs_lit(b, &q, "2", 1), em_gs_range(b, &q, '0', '3'), em_gb_alt(b, hour, &q);
    int32_t minute = em_gb_seq_rule(b, (em_gs_range(b, &q, '0', '5'), em_gs_ref(b, &q, digit), &q));
    em_gs_ref(b, &q, digit), em_gs_ref(b, &q, digit), em_gs_ref(b, &q, digit), em_gs_ref(b, &q, digit);
    em_gs_lit(b, &q, "-", 1), em_gs_ref(b, &q, month), em_gs_lit(b, &q, "-", 1), em_gs_ref(b, &q, day);
    int32_t date = em_gb_seq_rule(b, &q);
    em_gs_lit(b, &q, ".", 1), em_gs_ref(b, &q, em_gb_repeat(b, digit, 1, 9));
    int32_t frac = em_gb_opt(b, em_gb_seq_rule(b, &q));
    int32_t zone = em_gb_rule(b);
    em_gs_lit(b, &q, "Z", 1), em_gb_alt(b, zone, &q);
    em_gs_range(b, &q, '+', '+'), em_gs_ref(b, &q, hour), em_gs_lit(b, &q, ":", 1);
    em_gs_ref(b, &q, minute), em_gb_alt(b, zone, &q);
    em_gs_range(b, &q, '-', '-'), em_gs_ref(b, &q, hour), em_gs_lit(b, &q, ":", 1);
    em_gs_ref(b, &q, minute), em_gb_alt(b, zone, &q);
    em_gs_ref(b, &q, hour), em_gs_lit(b, &q, ":", 1), em_gs_ref(b, &q, minute);
    em_gs_lit(b, &q, ":", 1), em_gs_ref(b, &q, minute), em_gs_ref(b, &q, frac), em_gs_ref(b, &q, zone);
    int32_t time = em_gb_seq_rule(b, &q);
    if (!strcmp(fmt, "date")) {
        r = quoted(c, date);
    } else if (!strcmp(fmt, "time")) {
        r = quoted(c, time);
    } else if (!strcmp(fmt, "date-time")) {
        em_gs_ref(b, &q, date), em_gs_lit(b, &q, "T", 1), em_gs_ref(b, &q, time);
        r = quoted(c, em_gb_seq_rule(b, &q));
    } else if (!strcmp(fmt, "uuid")) {
        em_byteset hex = {{0}};
        em_byteset_add(&hex, '0', '9'), em_byteset_add(&hex, 'a', 'f');
        em_byteset_add(&hex, 'A', 'F');
        static const int groups[] = {8, 4, 4, 4, 12};
        for (int g = 0; g < 5; g++) {
            if (g) em_gs_lit(b, &q, "-", 1);
            for (int k = 0; k < groups[g]; k++) em_gs_set(b, &q, &hex);
        }
        r = quoted(c, em_gb_seq_rule(b, &q));
    } else {
        r = sc_fail(c, EM_ERR_UNSUPPORTED, "unsupported format '%.100s' (supported: date, time, "
                                           "date-time, uuid)", fmt);
    }
    em_gseq_free(&q);
    return r;
}

static int32_t string_schema(sc *c, const json_t *s) {
    const json_t *fmt = json_object_get(s, "format");
    const json_t *pat = json_object_get(s, "pattern");
    int64_t lo, hi;
    if (!count_keyword(c, s, "minLength", 0, &lo) || !count_keyword(c, s, "maxLength", -1, &hi))
        return -1;
    if (hi >= 0 && lo > hi) return sc_fail(c, EM_ERR_INVALID_ARG, "minLength > maxLength");
    bool lengths = lo > 0 || hi >= 0;
    if ((fmt != NULL) + (pat != NULL) + lengths > 1)
        return sc_fail(c, EM_ERR_UNSUPPORTED, "only one of format, pattern and "
                                              "minLength/maxLength per string");
    if (fmt) {
        if (!json_is_string(fmt)) return sc_fail(c, EM_ERR_INVALID_ARG, "'format' must be a string");
        size_t old = path_push(c, "format");
        int32_t r = format_rule(c, json_string_value(fmt));
        path_pop(c, old);
        return r;
    }
    if (pat) {
        if (!json_is_string(pat)) return sc_fail(c, EM_ERR_INVALID_ARG, "'pattern' must be a string");
        size_t old = path_push(c, "pattern");
        int32_t body = em_schema_regex(c->b, json_string_value(pat), json_string_length(pat),
                                       chr(c), c->path);
        path_pop(c, old);
        if (body < 0 && em_gbuild_status(c->b) == EM_OK)
            return sc_fail(c, EM_ERR_INTERNAL, "pattern failed");
        if (body < 0) return -1;
        return quoted(c, body);
    }
    if (!lengths) return string_any(c);
    return quoted(c, em_gb_repeat(c->b, chr(c), lo, hi));
}

/* ------------------------------------------------- integer ranges */

/* The largest magnitude the integer rule writes: 16 digits. */
#define SC_MAX_MAG 9999999999999999LL

/* Rule for the L-digit strings from x to y (both L digits, x <= y), built
 * digit by digit: the first digits equal, or x's first digit then
 * anything >= the rest of x, the digits strictly between with anything
 * after, y's first digit then anything <= the rest of y. */
static int32_t digits_between(sc *c, const char *x, const char *y, int len) {
    em_gbuild *b = c->b;
    em_gseq q = {0};
    int32_t r = em_gb_rule(b);
    if (len == 0) {
        em_gb_alt_empty(b, r);
        return r;
    }
    char nines[20], zeros[20];
    memset(nines, '9', sizeof nines);
    memset(zeros, '0', sizeof zeros);
    if (x[0] == y[0]) {
        em_gs_lit(b, &q, x, 1);
        em_gs_ref(b, &q, digits_between(c, x + 1, y + 1, len - 1));
        em_gb_alt(b, r, &q);
    } else {
        bool low_full = !memcmp(x + 1, zeros, (size_t)len - 1);
        bool high_full = !memcmp(y + 1, nines, (size_t)len - 1);
        int lo = x[0] + !low_full, hi = y[0] - !high_full;
        if (!low_full) {
            em_gs_lit(b, &q, x, 1);
            em_gs_ref(b, &q, digits_between(c, x + 1, nines, len - 1));
            em_gb_alt(b, r, &q);
        }
        if (lo <= hi) {
            em_gs_range(b, &q, (unsigned)lo, (unsigned)hi);
            for (int k = 1; k < len; k++) em_gs_range(b, &q, '0', '9');
            em_gb_alt(b, r, &q);
        }
        if (!high_full) {
            em_gs_lit(b, &q, y, 1);
            em_gs_ref(b, &q, digits_between(c, zeros, y + 1, len - 1));
            em_gb_alt(b, r, &q);
        }
    }
    em_gseq_free(&q);
    return r;
}

/* Rule for the magnitudes lo..hi (0 <= lo <= hi <= SC_MAX_MAG), written
 * without leading zeros: one alternative per digit count. */
static int32_t magnitude_between(sc *c, int64_t lo, int64_t hi) {
    int32_t r = em_gb_rule(c->b);
    em_gseq q = {0};
    int64_t first = 0, last = 9; /* the L-digit numbers */
    for (int len = 1; len <= 16 && first <= hi; len++) {
        int64_t x = lo > first ? lo : first, y = hi < last ? hi : last;
        if (x <= y) {
            char xs[24], ys[24];
            snprintf(xs, sizeof xs, "%lld", (long long)x);
            snprintf(ys, sizeof ys, "%lld", (long long)y);
            em_gs_ref(c->b, &q, digits_between(c, xs, ys, len));
            em_gb_alt(c->b, r, &q);
        }
        first = last + 1;
        last = last * 10 + 9;
    }
    em_gseq_free(&q);
    return r;
}

/* The bounds an integer schema sets (minimum, maximum, and the exclusive
 * forms, as numbers or draft-4 booleans), clamped to what the integer
 * rule can write; false (error recorded) when they are malformed or
 * leave nothing. */
static bool integer_bounds(sc *c, const json_t *s, int64_t *lo, int64_t *hi, bool *bounded) {
    *lo = -SC_MAX_MAG, *hi = SC_MAX_MAG, *bounded = false;
    static const char *const keys[] = {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"};
    for (int k = 0; k < 4; k++) {
        const json_t *v = json_object_get(s, keys[k]);
        if (!v || json_is_boolean(v)) continue;
        if (!json_is_number(v)) {
            sc_fail(c, EM_ERR_INVALID_ARG, "'%s' must be a number", keys[k]);
            return false;
        }
        double d = json_number_value(v);
        bool is_min = k < 2;
        /* An exclusive bound: a number (draft 6+) or minimum/maximum with a
         * true exclusiveMinimum/exclusiveMaximum beside it (draft 4). */
        bool excl = k == 1 || k == 3 || json_is_true(json_object_get(s, keys[k + 1]));
        double bound = is_min ? (excl ? floor(d) + 1 : ceil(d)) : (excl ? ceil(d) - 1 : floor(d));
        if (bound != bound) continue;
        *bounded = true;
        if (is_min && bound > (double)*lo) *lo = bound >= 1e16 ? SC_MAX_MAG + 1 : (int64_t)bound;
        if (!is_min && bound < (double)*hi) *hi = bound <= -1e16 ? -SC_MAX_MAG - 1 : (int64_t)bound;
    }
    if (*lo > *hi) {
        sc_fail(c, EM_ERR_UNSUPPORTED, "no integer within minimum and maximum (16 digits at most)");
        return false;
    }
    return true;
}

static int32_t integer_schema(sc *c, const json_t *s) {
    int64_t lo, hi;
    bool bounded;
    if (!integer_bounds(c, s, &lo, &hi, &bounded)) return -1;
    if (!bounded) return integer_rule(c, false);
    int32_t alts[2];
    size_t n = 0;
    if (hi >= 0) alts[n++] = magnitude_between(c, lo > 0 ? lo : 0, hi);
    if (lo < 0) {
        int64_t m_lo = hi < 0 ? -hi : 1, m_hi = -lo;
        em_gseq q = {0};
        em_gs_lit(c->b, &q, "-", 1);
        em_gs_ref(c->b, &q, magnitude_between(c, m_lo, m_hi));
        alts[n++] = em_gb_seq_rule(c->b, &q);
        em_gseq_free(&q);
    }
    return n == 1 ? alts[0] : one_of_rules(c, alts, n);
}

/* ------------------------------------------------- decimal ranges */

/* A bound of a number schema as exact decimal digits: the shortest text
 * that reads back as the same double (what the schema's author wrote,
 * 0.1 and not 0.1000000000000000055...), split at the point. */
typedef struct dec_bound {
    bool on;          /* the bound exists                         */
    bool strict;      /* exclusive                                */
    bool neg;         /* below zero                               */
    double v;         /* the bound as the schema gives it         */
    int64_t ipart;    /* integer part of the magnitude, clamped to
                       * SC_MAX_MAG + 1                            */
    char frac[400];   /* fraction digits of the magnitude, no
                       * trailing zeros ("" for a whole number)    */
} dec_bound;

static void dec_bound_set(dec_bound *d, double v, bool strict) {
    char txt[512];
    int prec = 1;
    for (; prec < 17; prec++) {
        snprintf(txt, sizeof txt, "%.*e", prec - 1, v);
        if (strtod(txt, NULL) == v) break;
    }
    /* %.*e with prec significant digits gives the exponent; %.*f with
     * enough places then writes the same digits in positional form. */
    snprintf(txt, sizeof txt, "%.*e", prec - 1, v);
    int exp10 = atoi(strchr(txt, 'e') + 1);
    int places = prec - 1 - exp10;
    if (places < 0) places = 0;
    if (places > 380) places = 380;
    d->on = true, d->strict = strict, d->neg = v < 0, d->v = v;
    double mag = fabs(v);
    if (mag >= 1e16) {
        d->ipart = SC_MAX_MAG + 1, d->frac[0] = 0;
        return;
    }
    snprintf(txt, sizeof txt, "%.*f", places, mag);
    char *dot = strchr(txt, '.');
    if (dot) *dot = 0;
    d->ipart = strtoll(txt, NULL, 10);
    snprintf(d->frac, sizeof d->frac, "%s", dot ? dot + 1 : "");
    size_t n = strlen(d->frac);
    while (n > 0 && d->frac[n - 1] == '0') d->frac[--n] = 0;
}

static bool all_zero(const char *s) { return s[strspn(s, "0")] == 0; }

/* May the rest of a fraction be empty (its value 0), given the rest of a
 * lower bound's digits a (active when lo_on) and of an upper bound's b? */
static bool frac_empty_ok(const char *a, const char *b, bool lo_on, bool hi_on, bool ls, bool hs) {
    return (!lo_on || (all_zero(a) && !ls)) && (!hi_on || !hs || !all_zero(b));
}

static int32_t any_digits(sc *c, int lo, int hi) {
    em_gseq q = {0};
    int32_t digit = em_gb_seq_rule(c->b, (em_gs_range(c->b, &q, '0', '9'), &q));
    em_gseq_free(&q);
    return em_gb_repeat(c->b, digit, lo, hi);
}

/* Appends to r: digit d, then the rest of the fraction as it sits at the
 * bounds (a, b: their remaining digits; at_lo, at_hi: still equal to
 * them); false when nothing can follow d. */
static int32_t frac_digits(sc *c, const char *a, const char *b, bool lo_on, bool hi_on, bool ls, bool hs,
                           int n);

/* The rule *r, made on first use: a rule is made only once it has an
 * alternative, since an empty one is an error to the builder. */
static int32_t lazy_rule(sc *c, int32_t *r) {
    if (*r < 0) *r = em_gb_rule(c->b);
    return *r;
}

static bool alt_digit_rest(sc *c, int32_t *r, int d, const char *a, const char *b, bool at_lo, bool at_hi,
                           bool ls, bool hs, int n) {
    int32_t rest = n > 1 ? frac_digits(c, a, b, at_lo, at_hi, ls, hs, n - 1) : -2;
    bool empty = frac_empty_ok(a, b, at_lo, at_hi, ls, hs);
    if (rest < 0 && !empty) return false;
    char digit = (char)('0' + d);
    em_gseq q = {0};
    em_gs_lit(c->b, &q, &digit, 1);
    if (rest >= 0) em_gs_ref(c->b, &q, empty ? em_gb_opt(c->b, rest) : rest);
    em_gb_alt(c->b, lazy_rule(c, r), &q);
    em_gseq_free(&q);
    return true;
}

/* Rule for the digit strings s of 1..n digits with 0.s >= 0.a (> when
 * ls; only when lo_on) and 0.s <= 0.b (< when hs; only when hi_on), or
 * -2 when there are none: a first digit strictly between the bounds' first
 * digits takes any digits after it; one equal to a bound's first digit
 * goes on recursively against the rest of that bound. */
static int32_t frac_digits(sc *c, const char *a, const char *b, bool lo_on, bool hi_on, bool ls, bool hs,
                           int n) {
    int a0 = lo_on && *a ? *a - '0' : 0, b0 = !hi_on ? 9 : *b ? *b - '0' : 0;
    const char *ar = lo_on && *a ? a + 1 : "", *br = hi_on && *b ? b + 1 : "";
    if (a0 > b0) return -2;
    int32_t r = -1;
    if (lo_on && hi_on && a0 == b0) {
        alt_digit_rest(c, &r, a0, ar, br, true, true, ls, hs, n);
    } else {
        if (lo_on) alt_digit_rest(c, &r, a0, ar, "", true, false, ls, false, n);
        int mid_lo = a0 + (lo_on ? 1 : 0), mid_hi = b0 - (hi_on ? 1 : 0);
        if (mid_lo <= mid_hi) {
            em_gseq q = {0};
            em_gs_range(c->b, &q, (unsigned)('0' + mid_lo), (unsigned)('0' + mid_hi));
            if (n > 1) em_gs_ref(c->b, &q, any_digits(c, 0, n - 1));
            em_gb_alt(c->b, lazy_rule(c, &r), &q);
            em_gseq_free(&q);
        }
        if (hi_on) alt_digit_rest(c, &r, b0, "", br, false, true, false, hs, n);
    }
    return r >= 0 ? r : -2;
}

/* Rule for the fraction after an integer part: nothing or '.' and 1..16
 * digits, within the bounds' fraction digits as for frac_digits; -2 when
 * nothing fits. */
static int32_t fraction_between(sc *c, const char *a, const char *b, bool lo_on, bool hi_on, bool ls, bool hs) {
    int32_t digits = frac_digits(c, a, b, lo_on, hi_on, ls, hs, 16);
    bool empty = frac_empty_ok(a, b, lo_on, hi_on, ls, hs);
    if (digits < 0 && !empty) return -2;
    int32_t r = em_gb_rule(c->b);
    em_gseq q = {0};
    if (empty) em_gb_alt_empty(c->b, r);
    if (digits >= 0) {
        em_gs_lit(c->b, &q, ".", 1);
        em_gs_ref(c->b, &q, digits);
        em_gb_alt(c->b, r, &q);
    }
    em_gseq_free(&q);
    return r;
}

/* Adds "INT FRACTION" to rule r when both can match. */
static void alt_int_frac(sc *c, int32_t *r, int64_t lo, int64_t hi, int32_t frac) {
    if (lo > hi || frac < 0) return;
    em_gseq q = {0};
    em_gs_ref(c->b, &q, magnitude_between(c, lo, hi));
    em_gs_ref(c->b, &q, frac);
    em_gb_alt(c->b, lazy_rule(c, r), &q);
    em_gseq_free(&q);
}

/* Rule for the decimal magnitudes (no sign, no exponent) from lo to hi
 * (either may be off; lo->neg and hi->neg are ignored here), or -2 when
 * none fits: the integer part at lo's, strictly between, or at hi's,
 * each with the fractions that keep the value in range. */
static int32_t decimal_between(sc *c, const dec_bound *lo, const dec_bound *hi) {
    int64_t li = lo->on ? lo->ipart : 0, hi_i = hi->on ? hi->ipart : SC_MAX_MAG;
    bool hi_on = hi->on;
    if (hi_i > SC_MAX_MAG) hi_i = SC_MAX_MAG, hi_on = false;
    if (li > hi_i) return -2;
    int32_t r = -1;
    if (li == hi_i) {
        alt_int_frac(c, &r, li, li, fraction_between(c, lo->frac, hi->frac, lo->on, hi_on, lo->strict,
                                                          hi->strict));
    } else {
        alt_int_frac(c, &r, li, li, fraction_between(c, lo->frac, "", lo->on, false, lo->strict, false));
        alt_int_frac(c, &r, li + 1, hi_i - 1, fraction_between(c, "", "", false, false, false, false));
        alt_int_frac(c, &r, hi_i, hi_i, fraction_between(c, "", hi->frac, false, hi_on, false, hi->strict));
    }
    return r >= 0 ? r : -2;
}

/* A number with bounds: decimal text (no exponent) whose exact value
 * keeps to them, as non-negative magnitudes and negative ones ('-' then a
 * magnitude above zero). */
static int32_t number_schema(sc *c, const json_t *s) {
    dec_bound lo = {0}, hi = {0};
    static const char *const keys[] = {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"};
    for (int k = 0; k < 4; k++) {
        const json_t *v = json_object_get(s, keys[k]);
        if (!v || json_is_boolean(v)) continue;
        if (!json_is_number(v)) return sc_fail(c, EM_ERR_INVALID_ARG, "'%s' must be a number", keys[k]);
        double d = json_number_value(v);
        if (d != d || isinf(d)) continue;
        bool excl = k == 1 || k == 3 || json_is_true(json_object_get(s, keys[k + 1]));
        dec_bound *cur = k < 2 ? &lo : &hi;
        /* Of two bounds on one side the tighter counts; exclusive wins a tie. */
        bool tighter = !cur->on || (k < 2 ? d > cur->v : d < cur->v) || (d == cur->v && excl);
        if (tighter) dec_bound_set(cur, d, excl);
    }
    if (!lo.on && !hi.on) return number_rule(c, false);
    int32_t alts[2];
    size_t n = 0;
    /* Non-negative values: magnitudes from max(lo, 0) to hi. */
    if (!hi.on || !hi.neg) {
        dec_bound mlo = lo.on && !lo.neg ? lo : (dec_bound){0};
        int32_t r = decimal_between(c, &mlo, &hi);
        if (r >= 0) alts[n++] = r;
    }
    /* Negative values -m: m from max(-hi, 0) (above 0) to -lo. */
    if (!lo.on || lo.neg) {
        dec_bound mlo = hi.on && hi.neg ? hi : (dec_bound){.on = true, .strict = true};
        int32_t r = decimal_between(c, &mlo, &lo);
        if (r >= 0) {
            em_gseq q = {0};
            em_gs_lit(c->b, &q, "-", 1);
            em_gs_ref(c->b, &q, r);
            alts[n++] = em_gb_seq_rule(c->b, &q);
            em_gseq_free(&q);
        }
    }
    if (em_gbuild_status(c->b) != EM_OK) return -1;
    if (n == 0) return sc_fail(c, EM_ERR_UNSUPPORTED, "no number within minimum and maximum (16 digits at most)");
    return n == 1 ? alts[0] : one_of_rules(c, alts, n);
}

static int32_t typed(sc *c, const json_t *s, const char *type) {
    if (!strcmp(type, "object")) return object_schema(c, s);
    if (!strcmp(type, "array")) return array_schema(c, s);
    if (!strcmp(type, "string")) return string_schema(c, s);
    if (!strcmp(type, "integer")) return integer_schema(c, s);
    if (!strcmp(type, "number")) return number_schema(c, s);
    if (!strcmp(type, "boolean")) {
        int32_t alts[] = {lit(c, "true"), lit(c, "false")};
        return one_of_rules(c, alts, 2);
    }
    if (!strcmp(type, "null")) return lit(c, "null");
    return sc_fail(c, EM_ERR_INVALID_ARG, "unknown type '%.100s'", type);
}

/* The type a schema without "type" implies from its keywords, or NULL
 * for any value. */
static const char *implied_type(const json_t *s) {
    static const char *const object_kw[] = {"properties", "required", "additionalProperties", NULL};
    static const char *const array_kw[] = {"items", "prefixItems", "minItems", "maxItems", NULL};
    static const char *const string_kw[] = {"pattern", "minLength", "maxLength", "format", NULL};
    static const char *const number_kw[] = {"minimum", "maximum", "exclusiveMinimum",
                                            "exclusiveMaximum", NULL};
    static const char *const *kws[] = {object_kw, array_kw, string_kw, number_kw};
    static const char *const names[] = {"object", "array", "string", "number"};
    for (int t = 0; t < 4; t++)
        for (const char *const *k = kws[t]; *k; k++)
            if (json_object_get(s, *k)) return names[t];
    return NULL;
}

/* Does s constrain anything besides the keywords in skip? */
static bool has_constraints_besides(const json_t *s, const char *const *skip) {
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)s, k, v) {
        if (!in_list(skip, k) && !is_annotation(k)) return true;
    }
    return false;
}

/* anyOf / oneOf (both as "any of": the grammar cannot count matches):
 * one alternative per subschema, each with the sibling keywords merged in
 * (the subschema's own keywords win). */
static int32_t any_of(sc *c, const json_t *s, const char *key) {
    const json_t *list = json_object_get(s, key);
    if (!json_is_array(list) || json_array_size(list) == 0)
        return sc_fail(c, EM_ERR_INVALID_ARG, "'%s' must be a non-empty array of schemas", key);
    static const char *const skip[] = {"anyOf", "oneOf", "nullable", NULL};
    if (json_object_get(s, "anyOf") && json_object_get(s, "oneOf"))
        return sc_fail(c, EM_ERR_UNSUPPORTED, "both 'anyOf' and 'oneOf' in one schema");
    bool merge = has_constraints_besides(s, skip);
    size_t n = json_array_size(list);
    int32_t *alts = malloc(sizeof *alts * (n + 1));
    if (!alts) return sc_fail(c, EM_ERR_NOMEM, "out of memory");
    size_t n_alts = 0;
    size_t old = path_push(c, key);
    for (size_t i = 0; i < n; i++) {
        const json_t *sub = json_array_get(list, i);
        size_t o2 = path_push_index(c, i);
        int32_t r;
        if (merge && json_is_object(sub)) {
            json_t *m = json_copy((json_t *)s);
            if (m) {
                json_object_del(m, key);
                json_object_del(m, "nullable");
                json_object_update(m, (json_t *)sub);
            }
            r = m ? schema(c, m) : sc_fail(c, EM_ERR_NOMEM, "out of memory");
            json_decref(m);
        } else if (json_is_false(sub)) {
            r = -2; /* matches nothing: no alternative */
        } else {
            r = schema(c, sub);
        }
        path_pop(c, o2);
        if (r == -1) {
            path_pop(c, old);
            free(alts);
            return -1;
        }
        if (r >= 0) alts[n_alts++] = r;
    }
    path_pop(c, old);
    if (json_is_true(json_object_get(s, "nullable"))) alts[n_alts++] = lit(c, "null");
    int32_t r = n_alts ? one_of_rules(c, alts, n_alts)
                       : sc_fail(c, EM_ERR_UNSUPPORTED, "'%s' where no alternative can match", key);
    free(alts);
    return r;
}

/* Is v of the JSON schema type t (a name or a list of names)? */
static bool has_type(const json_t *v, const json_t *t) {
    if (json_is_array(t)) {
        size_t i;
        const json_t *x;
        json_array_foreach((json_t *)t, i, x) if (has_type(v, x)) return true;
        return false;
    }
    const char *n = json_string_value(t);
    if (!n) return true; /* a malformed type is reported where it is compiled */
    if (!strcmp(n, "integer"))
        return json_is_integer(v) ||
               (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)));
    return (!strcmp(n, "object") && json_is_object(v)) || (!strcmp(n, "array") && json_is_array(v)) ||
           (!strcmp(n, "string") && json_is_string(v)) || (!strcmp(n, "number") && json_is_number(v)) ||
           (!strcmp(n, "boolean") && json_is_boolean(v)) || (!strcmp(n, "null") && json_is_null(v));
}

static int32_t schema_body(sc *c, const json_t *s) {
    if (json_is_true(s)) return value_any(c);
    if (json_is_false(s))
        return sc_fail(c, EM_ERR_UNSUPPORTED, "the schema 'false' matches nothing");
    if (!json_is_object(s))
        return sc_fail(c, EM_ERR_INVALID_ARG, "a schema must be an object or a boolean");
    if (!check_keywords(c, s)) return -1;
    if (json_object_get(s, "$ref")) return ref_rule(c, s);
    if (json_object_get(s, "anyOf")) return any_of(c, s, "anyOf");
    if (json_object_get(s, "oneOf")) return any_of(c, s, "oneOf");
    const json_t *all = json_object_get(s, "allOf");
    if (all) {
        if (!json_is_array(all) || json_array_size(all) != 1)
            return sc_fail(c, EM_ERR_UNSUPPORTED, "unsupported keyword 'allOf' with other than "
                                                  "one subschema");
        json_t *m = json_copy((json_t *)s);
        if (!m) return sc_fail(c, EM_ERR_NOMEM, "out of memory");
        json_object_del(m, "allOf");
        const json_t *sub = json_array_get(all, 0);
        int32_t r;
        if (json_is_object(sub)) {
            const char *k;
            const json_t *v;
            bool clash = false;
            json_object_foreach((json_t *)sub, k, v) clash |= json_object_get(m, k) != NULL &&
                                                             !is_annotation(k);
            if (clash) {
                json_decref(m);
                return sc_fail(c, EM_ERR_UNSUPPORTED, "'allOf' repeating a keyword of its "
                                                      "schema");
            }
            json_object_update(m, (json_t *)sub);
            size_t old = path_push(c, "allOf");
            size_t o2 = path_push(c, "0");
            r = schema(c, m);
            path_pop(c, o2);
            path_pop(c, old);
        } else {
            size_t old = path_push(c, "allOf");
            r = json_is_true(sub) ? schema(c, m) : schema(c, sub);
            path_pop(c, old);
        }
        json_decref(m);
        return r;
    }
    const json_t *nullable = json_object_get(s, "nullable");
    if (nullable && !json_is_boolean(nullable))
        return sc_fail(c, EM_ERR_INVALID_ARG, "'nullable' must be a boolean");
    int32_t alts[16];
    size_t n = 0;
    const json_t *en = json_object_get(s, "enum"), *cn = json_object_get(s, "const");
    const json_t *type = json_object_get(s, "type");
    if (en || cn) {
        if (en && cn) return sc_fail(c, EM_ERR_UNSUPPORTED, "both 'enum' and 'const'");
        if (en && (!json_is_array(en) || json_array_size(en) == 0))
            return sc_fail(c, EM_ERR_INVALID_ARG, "'enum' must be a non-empty array");
        size_t n_in = en ? json_array_size(en) : 1, m = 0;
        int32_t *vals = malloc(sizeof *vals * (n_in + 1));
        if (!vals) return sc_fail(c, EM_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < n_in; i++) {
            const json_t *v = en ? json_array_get(en, i) : cn;
            if (type && !has_type(v, type)) continue; /* "type" rules it out */
            if ((vals[m++] = literal(c, v)) < 0) {
                free(vals);
                return -1;
            }
        }
        if (json_is_true(nullable)) vals[m++] = lit(c, "null");
        if (m == 0) {
            free(vals);
            return sc_fail(c, EM_ERR_UNSUPPORTED, "no value of '%s' has the schema's type",
                           en ? "enum" : "const");
        }
        int32_t r = one_of_rules(c, vals, m);
        free(vals);
        return r;
    }
    if (json_is_array(type)) {
        if (json_array_size(type) == 0 || json_array_size(type) > 8)
            return sc_fail(c, EM_ERR_INVALID_ARG, "'type' must list 1 to 8 types");
        size_t i;
        const json_t *t;
        json_array_foreach((json_t *)type, i, t) {
            if (!json_is_string(t)) return sc_fail(c, EM_ERR_INVALID_ARG, "'type' must be a "
                                                                          "string or strings");
            if ((alts[n++] = typed(c, s, json_string_value(t))) < 0) return -1;
        }
    } else if (type) {
        if (!json_is_string(type))
            return sc_fail(c, EM_ERR_INVALID_ARG, "'type' must be a string or strings");
        if ((alts[n++] = typed(c, s, json_string_value(type))) < 0) return -1;
    } else {
        const char *t = implied_type(s);
        if ((alts[n++] = t ? typed(c, s, t) : value_any(c)) < 0) return -1;
    }
    if (json_is_true(nullable)) alts[n++] = lit(c, "null");
    return n == 1 ? alts[0] : one_of_rules(c, alts, n);
}

static int32_t schema(sc *c, const json_t *s) {
    if (em_gbuild_status(c->b) != EM_OK) return -1;
    if (++c->nest > SC_MAX_NEST) {
        c->nest--;
        return sc_fail(c, EM_ERR_UNSUPPORTED, "schema nested more than %d deep", SC_MAX_NEST);
    }
    int32_t r = schema_body(c, s);
    c->nest--;
    return r;
}

/* ------------------------------------------------------------- entry */

static void sc_init(sc *c, em_gbuild *b, const json_t *root) {
    memset(c, 0, sizeof *c);
    c->b = b;
    c->root = root;
    c->ws = c->chr = c->string = c->integer = c->number = c->value = -1;
    c->object_any = c->array_any = c->nonneg_integer = c->nonneg_number = -1;
}

em_status em_grammar_compile_json_schema_value(em_grammar **out, const json_t *schema_v) {
    if (!out || !schema_v) return em_error(EM_ERR_INVALID_ARG, "json_schema: no schema");
    em_gbuild *b;
    em_status st = em_gbuild_init(&b);
    if (st != EM_OK) return st;
    sc c;
    sc_init(&c, b, schema_v);
    int32_t root = schema(&c, schema_v);
    st = em_gbuild_status(b);
    if (st == EM_OK && root < 0) st = em_error(EM_ERR_INTERNAL, "json_schema: no root rule");
    if (st == EM_OK) st = em_gbuild_finish(b, root, out);
    free(c.refs);
    em_gbuild_free(b);
    return st;
}

em_status em_grammar_compile_json_schema(em_grammar **out, const char *text, size_t len) {
    if (!out || (!text && len)) return em_error(EM_ERR_INVALID_ARG, "json_schema: no schema");
    json_error_t jerr;
    json_t *v = json_loadb(text ? text : "", len, JSON_DECODE_ANY, &jerr);
    if (!v)
        return em_error(EM_ERR_FORMAT, "json_schema: not JSON (line %d, column %d: %s)",
                        jerr.line, jerr.column, jerr.text);
    em_status st = em_grammar_compile_json_schema_value(out, v);
    json_decref(v);
    return st;
}

em_status em_grammar_compile_json_object(em_grammar **out) {
    if (!out) return em_error(EM_ERR_INVALID_ARG, "json_object: no output");
    em_gbuild *b;
    em_status st = em_gbuild_init(&b);
    if (st != EM_OK) return st;
    sc c;
    sc_init(&c, b, NULL);
    int32_t root = object_any(&c);
    st = em_gbuild_status(b);
    if (st == EM_OK) st = em_gbuild_finish(b, root, out);
    em_gbuild_free(b);
    return st;
}

/* "{" WS "name" ":" WS NAME "," WS "ARGS_KEY" ":" WS ARGS WS "}" */
static int32_t tool_call_rule(sc *c, const char *name, const char *args_key, int32_t args) {
    em_gbuild *b = c->b;
    json_t *jn = json_string(name), *jk = json_string(args_key);
    int32_t name_lit = jn ? literal(c, jn) : sc_fail(c, EM_ERR_INVALID_ARG, "a tool name that "
                                                                            "is not UTF-8");
    int32_t key_lit = jk ? literal(c, jk) : sc_fail(c, EM_ERR_INVALID_ARG, "an arguments key "
                                                                           "that is not UTF-8");
    json_decref(jn);
    json_decref(jk);
    em_gseq q = {0};
    em_gs_lit(b, &q, "{", 1);
    em_gs_ref(b, &q, ws(c));
    em_gs_ref(b, &q, member(c, lit(c, "\"name\""), name_lit));
    comma_ws(c, &q);
    em_gs_ref(b, &q, member(c, key_lit, args));
    em_gs_ref(b, &q, ws(c));
    em_gs_lit(b, &q, "}", 1);
    int32_t r = em_gb_seq_rule(b, &q);
    em_gseq_free(&q);
    return r;
}

em_status em_grammar_compile_tool_call(em_grammar **out, const json_t *tools, const char *only,
                                       const char *args_key, const char *prefix,
                                       const char *suffix) {
    if (!out || !json_is_array(tools) || json_array_size(tools) == 0 || !args_key)
        return em_error(EM_ERR_INVALID_ARG, "tools: a non-empty array of tools is needed");
    em_gbuild *b;
    em_status st = em_gbuild_init(&b);
    if (st != EM_OK) return st;
    sc c;
    sc_init(&c, b, NULL);
    size_t n = json_array_size(tools), n_alts = 0;
    int32_t *alts = malloc(sizeof *alts * n);
    if (!alts) sc_fail(&c, EM_ERR_NOMEM, "out of memory");
    for (size_t i = 0; alts && i < n && em_gbuild_status(b) == EM_OK; i++) {
        const json_t *tool = json_array_get(tools, i);
        const json_t *fn = json_object_get(tool, "function");
        const char *name = json_string_value(json_object_get(fn, "name"));
        const json_t *params = json_object_get(fn, "parameters");
        snprintf(c.path, sizeof c.path, "/tools/%zu/function", i);
        c.path_len = strlen(c.path);
        const char *type = json_string_value(json_object_get(tool, "type"));
        if (!json_is_object(fn) || !name || (type && strcmp(type, "function") != 0)) {
            sc_fail(&c, EM_ERR_INVALID_ARG, "a tool must be {\"type\": \"function\", "
                                             "\"function\": {\"name\": ...}}");
            break;
        }
        if (only && strcmp(only, name) != 0) continue;
        int32_t args;
        if (params) {
            size_t old = path_push(&c, "parameters");
            c.root = params; /* its $refs are relative to itself */
            args = schema(&c, params);
            path_pop(&c, old);
        } else {
            args = object_any(&c);
        }
        if (args >= 0) alts[n_alts++] = tool_call_rule(&c, name, args_key, args);
    }
    c.path_len = 0;
    c.path[0] = '\0';
    if (em_gbuild_status(b) == EM_OK && n_alts == 0)
        em_gbuild_fail(b, em_error(EM_ERR_INVALID_ARG, "tool_choice: no tool is named '%.200s'",
                                   only ? only : ""));
    int32_t root = -1;
    if (em_gbuild_status(b) == EM_OK) {
        em_gseq q = {0};
        if (prefix) em_gs_lit(b, &q, prefix, strlen(prefix));
        em_gs_ref(b, &q, one_of_rules(&c, alts, n_alts));
        if (suffix) em_gs_lit(b, &q, suffix, strlen(suffix));
        root = em_gb_seq_rule(b, &q);
        em_gseq_free(&q);
    }
    st = em_gbuild_status(b);
    if (st == EM_OK) st = em_gbuild_finish(b, root, out);
    free(alts);
    free(c.refs);
    em_gbuild_free(b);
    return st;
}
