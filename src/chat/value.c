/*
 * value.c - the interpreter's values: the arena they are allocated from,
 * their constructors, and the Python semantics templates rely on: truth,
 * equality, ordering, str(), repr() and json.dumps() as Hugging Face's
 * tojson calls it.
 */
#include "chat/jinja.h"

#include "core/core.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- errors ---- */

_Noreturn void jerr_throw(jerr *e, em_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->status = status;
    longjmp(e->jb, 1);
}

/* ---- arena ---- */

struct jchunk {
    jchunk *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
};

enum { CHUNK_MIN = 64 * 1024 };

void *ja_alloc(jarena *a, size_t size) {
    size = (size + 15) & ~(size_t)15;
    if (size == 0) size = 16;
    if (a->used + size > a->limit || a->used + size < a->used)
        jerr_throw(a->err, EM_ERR_INVALID_ARG,
                   "template needs more than %zu bytes of memory", a->limit);
    jchunk *c = a->head;
    if (!c || c->size - c->used < size) {
        size_t want = size > CHUNK_MIN ? size : CHUNK_MIN;
        c = malloc(sizeof *c + want);
        if (!c) jerr_throw(a->err, EM_ERR_NOMEM, "out of memory rendering a template");
        c->size = want;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += size;
    a->used += size;
    memset(p, 0, size);
    return p;
}

char *ja_strndup(jarena *a, const char *s, size_t n) {
    char *p = ja_alloc(a, n + 1);
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void ja_free(jarena *a) {
    jchunk *c = a->head;
    while (c) {
        jchunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->used = 0;
}

/* ---- constructors ---- */

jv jv_undef_const = {.type = JV_UNDEF};
jv jv_none_const = {.type = JV_NONE};
jv jv_true_const = {.type = JV_BOOL, .u.b = true};
jv jv_false_const = {.type = JV_BOOL, .u.b = false};

jv *jv_bool(bool b) { return b ? JV_TRUE : JV_FALSE; }

jv *jv_int(jarena *a, int64_t i) {
    jv *v = ja_alloc(a, sizeof *v);
    v->type = JV_INT;
    v->u.i = i;
    return v;
}

jv *jv_float(jarena *a, double f) {
    jv *v = ja_alloc(a, sizeof *v);
    v->type = JV_FLOAT;
    v->u.f = f;
    return v;
}

jv *jv_str_ref(jarena *a, const char *s, size_t len) {
    jv *v = ja_alloc(a, sizeof *v);
    v->type = JV_STR;
    v->u.str.s = s;
    v->u.str.len = len;
    return v;
}

jv *jv_str(jarena *a, const char *s, size_t len) {
    return jv_str_ref(a, ja_strndup(a, s, len), len);
}

jv *jv_undef_named(jarena *a, const char *name) {
    jv *v = ja_alloc(a, sizeof *v);
    v->type = JV_UNDEF;
    v->u.undef_name = name;
    return v;
}

jv *jv_list(jarena *a, size_t cap) {
    jv *v = ja_alloc(a, sizeof *v);
    v->type = JV_LIST;
    if (cap) {
        v->u.list.items = ja_alloc(a, cap * sizeof(jv *));
        v->u.list.cap = cap;
    }
    return v;
}

void jv_list_push(jarena *a, jv *list, jv *item) {
    if (list->u.list.n == list->u.list.cap) {
        size_t cap = list->u.list.cap ? list->u.list.cap * 2 : 4;
        jv **items = ja_alloc(a, cap * sizeof(jv *));
        if (list->u.list.n) memcpy(items, list->u.list.items, list->u.list.n * sizeof(jv *));
        list->u.list.items = items;
        list->u.list.cap = cap;
    }
    list->u.list.items[list->u.list.n++] = item;
}

jv *jv_dict(jarena *a, jv_type type) {
    jv *v = ja_alloc(a, sizeof *v);
    v->type = type;
    return v;
}

static bool key_equal(const jv *a, const jv *b) {
    if (a->type == JV_STR && b->type == JV_STR)
        return a->u.str.len == b->u.str.len && memcmp(a->u.str.s, b->u.str.s, a->u.str.len) == 0;
    return jv_equal(a, b);
}

jv *jv_dict_get(const jv *dict, const jv *key) {
    for (size_t i = 0; i < dict->u.dict.n; i++)
        if (key_equal(dict->u.dict.keys[i], key)) return dict->u.dict.vals[i];
    return NULL;
}

jv *jv_dict_get_str(const jv *dict, const char *key) {
    size_t n = strlen(key);
    for (size_t i = 0; i < dict->u.dict.n; i++) {
        const jv *k = dict->u.dict.keys[i];
        if (k->type == JV_STR && k->u.str.len == n && memcmp(k->u.str.s, key, n) == 0)
            return dict->u.dict.vals[i];
    }
    return NULL;
}

void jv_dict_set(jarena *a, jv *dict, jv *key, jv *val) {
    for (size_t i = 0; i < dict->u.dict.n; i++)
        if (key_equal(dict->u.dict.keys[i], key)) {
            dict->u.dict.vals[i] = val;
            return;
        }
    if (dict->u.dict.n == dict->u.dict.cap) {
        size_t cap = dict->u.dict.cap ? dict->u.dict.cap * 2 : 4;
        jv **keys = ja_alloc(a, cap * sizeof(jv *));
        jv **vals = ja_alloc(a, cap * sizeof(jv *));
        if (dict->u.dict.n) {
            memcpy(keys, dict->u.dict.keys, dict->u.dict.n * sizeof(jv *));
            memcpy(vals, dict->u.dict.vals, dict->u.dict.n * sizeof(jv *));
        }
        dict->u.dict.keys = keys;
        dict->u.dict.vals = vals;
        dict->u.dict.cap = cap;
    }
    dict->u.dict.keys[dict->u.dict.n] = key;
    dict->u.dict.vals[dict->u.dict.n] = val;
    dict->u.dict.n++;
}

/* ---- Python semantics ---- */

/* Deepest nesting printed, compared or dumped; values built by a template
 * can nest without bound, the C stack cannot. */
enum { MAX_VALUE_DEPTH = 512 };

bool jv_is_number(const jv *v) {
    return v->type == JV_INT || v->type == JV_FLOAT || v->type == JV_BOOL;
}

double jv_as_double(const jv *v) {
    switch (v->type) {
    case JV_INT: return (double)v->u.i;
    case JV_FLOAT: return v->u.f;
    case JV_BOOL: return v->u.b ? 1.0 : 0.0;
    default: return 0.0;
    }
}

bool jv_truthy(const jv *v) {
    switch (v->type) {
    case JV_UNDEF:
    case JV_NONE: return false;
    case JV_BOOL: return v->u.b;
    case JV_INT: return v->u.i != 0;
    case JV_FLOAT: return v->u.f != 0.0;
    case JV_STR: return v->u.str.len != 0;
    case JV_LIST: return v->u.list.once || v->u.list.n != 0;
    case JV_DICT: return v->u.dict.n != 0;
    default: return true;
    }
}

/* Values nested deeper than this compare unequal (Python would raise
 * RecursionError; templates never get near it). */
static bool equal(const jv *a, const jv *b, int depth) {
    if (a == b) return true;
    if (depth > MAX_VALUE_DEPTH) return false;
    if (jv_is_number(a) && jv_is_number(b)) {
        if (a->type != JV_FLOAT && b->type != JV_FLOAT) {
            int64_t x = a->type == JV_BOOL ? a->u.b : a->u.i;
            int64_t y = b->type == JV_BOOL ? b->u.b : b->u.i;
            return x == y;
        }
        return jv_as_double(a) == jv_as_double(b);
    }
    if (a->type != b->type) return false;
    if (a->type == JV_LIST && (a->u.list.view || b->u.list.view)) return false;
    switch (a->type) {
    case JV_UNDEF:
    case JV_NONE: return true;
    case JV_STR:
        return a->u.str.len == b->u.str.len && memcmp(a->u.str.s, b->u.str.s, a->u.str.len) == 0;
    case JV_LIST:
        if (a->u.list.tuple != b->u.list.tuple || a->u.list.n != b->u.list.n) return false;
        for (size_t i = 0; i < a->u.list.n; i++)
            if (!equal(a->u.list.items[i], b->u.list.items[i], depth + 1)) return false;
        return true;
    case JV_DICT:
        if (a->u.dict.n != b->u.dict.n) return false;
        for (size_t i = 0; i < a->u.dict.n; i++) {
            const jv *o = jv_dict_get(b, a->u.dict.keys[i]);
            if (!o || !equal(a->u.dict.vals[i], o, depth + 1)) return false;
        }
        return true;
    case JV_FUNC: return a->u.fn.id == b->u.fn.id && a->u.fn.self == b->u.fn.self;
    default: return false;
    }
}

bool jv_equal(const jv *a, const jv *b) { return equal(a, b, 0); }

static int compare(const jv *a, const jv *b, bool *ok, int depth) {
    *ok = true;
    if (depth > MAX_VALUE_DEPTH) {
        *ok = false;
        return 0;
    }
    if (jv_is_number(a) && jv_is_number(b)) {
        if (a->type != JV_FLOAT && b->type != JV_FLOAT) {
            int64_t x = a->type == JV_BOOL ? a->u.b : a->u.i;
            int64_t y = b->type == JV_BOOL ? b->u.b : b->u.i;
            return x < y ? -1 : x > y;
        }
        double x = jv_as_double(a), y = jv_as_double(b);
        return x < y ? -1 : x > y;
    }
    if (a->type == JV_STR && b->type == JV_STR) {
        size_t n = EM_MIN(a->u.str.len, b->u.str.len);
        int c = memcmp(a->u.str.s, b->u.str.s, n);
        if (c) return c < 0 ? -1 : 1;
        return a->u.str.len < b->u.str.len ? -1 : a->u.str.len > b->u.str.len;
    }
    if (jv_is_seq(a) && jv_is_seq(b) && a->u.list.tuple == b->u.list.tuple) {
        size_t n = EM_MIN(a->u.list.n, b->u.list.n);
        for (size_t i = 0; i < n; i++) {
            if (equal(a->u.list.items[i], b->u.list.items[i], depth + 1)) continue;
            return compare(a->u.list.items[i], b->u.list.items[i], ok, depth + 1);
        }
        return a->u.list.n < b->u.list.n ? -1 : a->u.list.n > b->u.list.n;
    }
    *ok = false;
    return 0;
}

int jv_compare(const jv *a, const jv *b, bool *ok) { return compare(a, b, ok, 0); }

const char *jv_type_name(const jv *v) {
    switch (v->type) {
    case JV_UNDEF: return "Undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return "str";
    case JV_LIST: return v->u.list.view ? v->u.list.view : v->u.list.tuple ? "tuple" : "list";
    case JV_DICT: return "dict";
    case JV_NS: return "Namespace";
    case JV_MACRO: return "Macro";
    case JV_FUNC: return "function";
    }
    return "?";
}

/* ---- buffers ---- */

void jb_init(jbuf *b, jarena *a, size_t limit) {
    memset(b, 0, sizeof *b);
    b->a = a;
    b->limit = limit;
}

void jb_put(jbuf *b, const char *s, size_t n) {
    if (n == 0) return;
    if (b->len + n > b->limit || b->len + n < b->len)
        jerr_throw(b->a->err, EM_ERR_INVALID_ARG,
                   "template output is longer than %zu bytes", b->limit);
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = ja_alloc(b->a, cap);
        if (b->len) memcpy(p, b->p, b->len);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

void jb_puts(jbuf *b, const char *s) { jb_put(b, s, strlen(s)); }
void jb_putc(jbuf *b, char c) { jb_put(b, &c, 1); }

/* ---- formatting ---- */

/* repr(float): the shortest digits that read back to the same double, in
 * fixed notation for exponents -4..15 and with ".0" on integral values,
 * else as d.ddde+XX. */
void jv_write_float(jbuf *b, double f) {
    if (isnan(f)) { jb_puts(b, "nan"); return; }
    if (isinf(f)) { jb_puts(b, f < 0 ? "-inf" : "inf"); return; }
    char tmp[64];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, f);
        if (strtod(tmp, NULL) == f) break;
    }
    /* tmp is [-]d[.ddd]e[+-]XX: split into sign, digits and exponent. */
    const char *p = tmp;
    bool neg = false;
    if (*p == '-') { neg = true; p++; }
    char digits[32];
    int nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    int exp = atoi(p + 1);
    if (neg) jb_putc(b, '-');
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            jb_puts(b, "0.");
            for (int i = 0; i < -exp - 1; i++) jb_putc(b, '0');
            jb_put(b, digits, (size_t)nd);
        } else {
            for (int i = 0; i <= exp; i++) jb_putc(b, i < nd ? digits[i] : '0');
            jb_putc(b, '.');
            if (nd > exp + 1) jb_put(b, digits + exp + 1, (size_t)(nd - exp - 1));
            else jb_putc(b, '0');
        }
    } else {
        jb_putc(b, digits[0]);
        if (nd > 1) {
            jb_putc(b, '.');
            jb_put(b, digits + 1, (size_t)(nd - 1));
        }
        snprintf(tmp, sizeof tmp, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
        jb_puts(b, tmp);
    }
}

static void write_int(jbuf *b, int64_t i) {
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%" PRId64, i);
    jb_puts(b, tmp);
}

/* Code points repr() escapes although they are valid text: controls,
 * format characters and spaces other than ' ' (Python's
 * str.isprintable() is false for them).  Unassigned code points, which
 * Python escapes too, are not tracked. */
static bool py_unprintable(uint32_t cp) {
    return cp < 0x20 || (cp >= 0x7f && cp <= 0xa0) || cp == 0xad || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202f) ||
           (cp >= 0x205f && cp <= 0x2064) || cp == 0x3000 || cp == 0xfeff || (cp >= 0xd800 && cp <= 0xdfff) ||
           (cp >= 0xe000 && cp <= 0xf8ff);
}

static void write_repr_str(jbuf *b, const char *s, size_t n) {
    bool has_single = memchr(s, '\'', n) != NULL, has_double = memchr(s, '"', n) != NULL;
    char q = has_single && !has_double ? '"' : '\'';
    jb_putc(b, q);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        char tmp[16];
        size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
        if (i + len > n) len = 1;
        uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
        for (size_t k = 1; k < len; k++) cp = (cp << 6) | ((unsigned char)s[i + k] & 0x3F);
        if (c == '\\') jb_puts(b, "\\\\");
        else if (c == (unsigned char)q) { jb_putc(b, '\\'); jb_putc(b, q); }
        else if (c == '\n') jb_puts(b, "\\n");
        else if (c == '\r') jb_puts(b, "\\r");
        else if (c == '\t') jb_puts(b, "\\t");
        else if (py_unprintable(cp)) {
            if (cp < 0x100) snprintf(tmp, sizeof tmp, "\\x%02x", cp);
            else if (cp < 0x10000) snprintf(tmp, sizeof tmp, "\\u%04x", cp);
            else snprintf(tmp, sizeof tmp, "\\U%08x", cp);
            jb_puts(b, tmp);
        } else jb_put(b, s + i, len);
        i += len;
    }
    jb_putc(b, q);
}

static void write_repr(jbuf *b, const jv *v, int depth) {
    if (depth > MAX_VALUE_DEPTH) jerr_throw(b->a->err, EM_ERR_INVALID_ARG, "value nested too deeply to print");
    switch (v->type) {
    case JV_STR:
        if (v->u.str.markup) jb_puts(b, "Markup(");
        write_repr_str(b, v->u.str.s, v->u.str.len);
        if (v->u.str.markup) jb_putc(b, ')');
        return;
    case JV_UNDEF: jb_puts(b, "Undefined"); return;
    case JV_LIST:
        if (v->u.list.once) {
            jb_puts(b, "<");
            jb_puts(b, v->u.list.view);
            jb_puts(b, " object>");
            return;
        }
        if (v->u.list.view) {
            jb_puts(b, v->u.list.view);
            jb_putc(b, '(');
        }
        jb_putc(b, v->u.list.tuple ? '(' : '[');
        for (size_t i = 0; i < v->u.list.n; i++) {
            if (i) jb_puts(b, ", ");
            write_repr(b, v->u.list.items[i], depth + 1);
        }
        if (v->u.list.tuple && v->u.list.n == 1) jb_putc(b, ',');
        jb_putc(b, v->u.list.tuple ? ')' : ']');
        if (v->u.list.view) jb_putc(b, ')');
        return;
    case JV_DICT:
    case JV_NS:
        if (v->type == JV_NS) jb_puts(b, "<Namespace ");
        jb_putc(b, '{');
        for (size_t i = 0; i < v->u.dict.n; i++) {
            if (i) jb_puts(b, ", ");
            write_repr(b, v->u.dict.keys[i], depth + 1);
            jb_puts(b, ": ");
            write_repr(b, v->u.dict.vals[i], depth + 1);
        }
        jb_putc(b, '}');
        if (v->type == JV_NS) jb_putc(b, '>');
        return;
    default: jv_write_str(b, v); return;
    }
}

void jv_write_repr(jbuf *b, const jv *v) { write_repr(b, v, 0); }

void jv_write_str(jbuf *b, const jv *v) {
    switch (v->type) {
    case JV_UNDEF: return;
    case JV_NONE: jb_puts(b, "None"); return;
    case JV_BOOL: jb_puts(b, v->u.b ? "True" : "False"); return;
    case JV_INT: write_int(b, v->u.i); return;
    case JV_FLOAT: jv_write_float(b, v->u.f); return;
    case JV_STR: jb_put(b, v->u.str.s, v->u.str.len); return;
    case JV_MACRO:
        jb_puts(b, "<Macro '");
        jb_puts(b, v->u.macro.m && v->u.macro.m->name ? v->u.macro.m->name : "caller");
        jb_puts(b, "'>");
        return;
    case JV_FUNC: jb_puts(b, "<built-in function>"); return;
    default: jv_write_repr(b, v); return;
    }
}

jv *jv_to_str(jarena *a, const jv *v) {
    if (v->type == JV_STR) return (jv *)v;
    jbuf b;
    jb_init(&b, a, SIZE_MAX / 2);
    jv_write_str(&b, v);
    return jv_str_ref(a, b.p ? b.p : "", b.len);
}

static void write_json_str(jbuf *b, const char *s, size_t n) {
    jb_putc(b, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char tmp[8];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c < 0x20) {
                snprintf(tmp, sizeof tmp, "\\u%04x", c);
                esc = tmp;
            }
        }
        if (esc) {
            jb_put(b, s + i - run, run);
            run = 0;
            jb_puts(b, esc);
        } else run++;
    }
    jb_put(b, s + n - run, run);
    jb_putc(b, '"');
}

static void json_newline(jbuf *b, int indent, int level) {
    jb_putc(b, '\n');
    for (int i = 0; i < indent * level; i++) jb_putc(b, ' ');
}

static void write_json_key(jbuf *b, const jv *k) {
    switch (k->type) {
    case JV_STR: write_json_str(b, k->u.str.s, k->u.str.len); return;
    case JV_BOOL: jb_puts(b, k->u.b ? "\"true\"" : "\"false\""); return;
    case JV_NONE: jb_puts(b, "\"null\""); return;
    case JV_INT:
    case JV_FLOAT: {
        jbuf t;
        jb_init(&t, b->a, SIZE_MAX / 2);
        if (k->type == JV_INT) write_int(&t, k->u.i);
        else jv_write_float(&t, k->u.f);
        write_json_str(b, t.p, t.len);
        return;
    }
    default:
        jerr_throw(b->a->err, EM_ERR_INVALID_ARG,
                   "keys must be str, int, float, bool or None, not %s", jv_type_name(k));
    }
}

void jv_write_json(jbuf *b, const jv *v, int indent, int level) {
    if (level > MAX_VALUE_DEPTH) jerr_throw(b->a->err, EM_ERR_INVALID_ARG, "tojson: value nested too deeply");
    switch (v->type) {
    case JV_NONE: jb_puts(b, "null"); return;
    case JV_BOOL: jb_puts(b, v->u.b ? "true" : "false"); return;
    case JV_INT: write_int(b, v->u.i); return;
    case JV_FLOAT:
        if (isnan(v->u.f)) jb_puts(b, "NaN");
        else if (isinf(v->u.f)) jb_puts(b, v->u.f < 0 ? "-Infinity" : "Infinity");
        else jv_write_float(b, v->u.f);
        return;
    case JV_STR: write_json_str(b, v->u.str.s, v->u.str.len); return;
    case JV_LIST:
        if (v->u.list.view) break;
        if (v->u.list.n == 0) { jb_puts(b, "[]"); return; }
        jb_putc(b, '[');
        for (size_t i = 0; i < v->u.list.n; i++) {
            if (i) jb_puts(b, indent >= 0 ? "," : ", ");
            if (indent >= 0) json_newline(b, indent, level + 1);
            jv_write_json(b, v->u.list.items[i], indent, level + 1);
        }
        if (indent >= 0) json_newline(b, indent, level);
        jb_putc(b, ']');
        return;
    case JV_DICT:
        if (v->u.dict.n == 0) { jb_puts(b, "{}"); return; }
        jb_putc(b, '{');
        for (size_t i = 0; i < v->u.dict.n; i++) {
            if (i) jb_puts(b, indent >= 0 ? "," : ", ");
            if (indent >= 0) json_newline(b, indent, level + 1);
            write_json_key(b, v->u.dict.keys[i]);
            jb_puts(b, ": ");
            jv_write_json(b, v->u.dict.vals[i], indent, level + 1);
        }
        if (indent >= 0) json_newline(b, indent, level);
        jb_putc(b, '}');
        return;
    default:
        break;
    }
    jerr_throw(b->a->err, EM_ERR_INVALID_ARG, "Object of type %s is not JSON serializable", jv_type_name(v));
}

jv *jv_escape(jarena *a, const jv *v) {
    if (v->type == JV_STR && v->u.str.markup) return (jv *)v;
    const jv *s = jv_to_str(a, v);
    jbuf b;
    jb_init(&b, a, SIZE_MAX / 2);
    jb_put(&b, "", 0);
    for (size_t i = 0; i < s->u.str.len; i++) {
        char ch = s->u.str.s[i];
        switch (ch) {
        case '&': jb_puts(&b, "&amp;"); break;
        case '<': jb_puts(&b, "&lt;"); break;
        case '>': jb_puts(&b, "&gt;"); break;
        case '"': jb_puts(&b, "&#34;"); break;
        case '\'': jb_puts(&b, "&#39;"); break;
        default: jb_putc(&b, ch);
        }
    }
    jv *out = jv_str_ref(a, b.p, b.len);
    out->u.str.markup = true;
    return out;
}

/* ---- jansson ---- */

jv *jv_from_json(jarena *a, const json_t *j, int depth) {
    if (!j) return JV_UNDEFINED;
    if (depth > 256) jerr_throw(a->err, EM_ERR_INVALID_ARG, "JSON input nested too deeply");
    switch (json_typeof(j)) {
    case JSON_NULL: return JV_NONEV;
    case JSON_TRUE: return JV_TRUE;
    case JSON_FALSE: return JV_FALSE;
    case JSON_INTEGER: return jv_int(a, (int64_t)json_integer_value(j));
    case JSON_REAL: return jv_float(a, json_real_value(j));
    case JSON_STRING: return jv_str(a, json_string_value(j), json_string_length(j));
    case JSON_ARRAY: {
        size_t n = json_array_size(j);
        jv *l = jv_list(a, n);
        for (size_t i = 0; i < n; i++)
            l->u.list.items[i] = jv_from_json(a, json_array_get(j, i), depth + 1);
        l->u.list.n = n;
        return l;
    }
    case JSON_OBJECT: {
        jv *d = jv_dict(a, JV_DICT);
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)j, key, val) {
            jv_dict_set(a, d, jv_str(a, key, strlen(key)), jv_from_json(a, val, depth + 1));
        }
        return d;
    }
    }
    return JV_UNDEFINED;
}

static json_t *to_json(const jv *v, int depth) {
    if (depth > MAX_VALUE_DEPTH) return NULL;
    switch (v->type) {
    case JV_NONE: return json_null();
    case JV_BOOL: return json_boolean(v->u.b);
    case JV_INT: return json_integer((json_int_t)v->u.i);
    case JV_FLOAT: return json_real(v->u.f);
    case JV_STR: return json_stringn(v->u.str.s, v->u.str.len);
    case JV_LIST: {
        if (v->u.list.once) return NULL;
        json_t *arr = json_array();
        for (size_t i = 0; arr && i < v->u.list.n; i++) {
            json_t *item = to_json(v->u.list.items[i], depth + 1);
            if (!item || json_array_append_new(arr, item)) {
                json_decref(arr);
                return NULL;
            }
        }
        return arr;
    }
    case JV_DICT: {
        json_t *obj = json_object();
        for (size_t i = 0; obj && i < v->u.dict.n; i++) {
            const jv *k = v->u.dict.keys[i];
            json_t *item = to_json(v->u.dict.vals[i], depth + 1);
            if (k->type != JV_STR || !item || json_object_setn_new(obj, k->u.str.s, k->u.str.len, item)) {
                json_decref(item);
                json_decref(obj);
                return NULL;
            }
        }
        return obj;
    }
    default: return NULL;
    }
}

/* ---- UTF-8 ---- */

size_t utf8_len(const char *s, size_t n) {
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) count++;
    return count;
}

size_t utf8_offset(const char *s, size_t n, size_t index) {
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (count == index) return i;
            count++;
        }
    }
    return n;
}

bool utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        else if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
        else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
        else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
        else return false;
        if (i + len > n) return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

json_t *jv_to_json(const jv *v) { return to_json(v, 0); }
