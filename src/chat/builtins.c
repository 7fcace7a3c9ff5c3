/*
 * builtins.c - what templates call: jinja2's filters and tests, the
 * Python str and dict methods chat templates use, and the globals
 * (range, namespace, dict, and transformers' raise_exception and
 * strftime_now).  Each follows the Python original closely enough that
 * the rendered bytes match; the differences are listed in
 * docs/ARCHITECTURE.md (case mapping is ASCII-only, for one).
 */
#include "chat/jinja.h"

#include "core/core.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum {
    F_RANGE = 1, F_NAMESPACE, F_DICT, F_RAISE, F_STRFTIME, F_CYCLE,
    M_STRIP, M_LSTRIP, M_RSTRIP, M_SPLIT, M_STARTSWITH, M_ENDSWITH, M_UPPER, M_LOWER,
    M_REPLACE, M_TITLE, M_CAPITALIZE, M_FORMAT, M_FIND, M_COUNT, M_JOIN, M_ISDIGIT,
    M_ISALPHA, M_ISALNUM, M_ISSPACE, M_ITEMS, M_KEYS, M_VALUES, M_GET, M_UNSAFE
};

static jv *func(rctx *c, int id, jv *self) {
    jv *v = ja_alloc(c->a, sizeof *v);
    v->type = JV_FUNC;
    v->u.fn.id = id;
    v->u.fn.self = self;
    return v;
}

static jv *str_key(rctx *c, const char *s) { return jv_str_ref(c->a, s, strlen(s)); }

/* Marks a fresh list as the lazy sequence jinja2 would return. */
static jv *as_view(jv *l, const char *view, bool once) {
    l->u.list.view = view;
    l->u.list.once = once;
    return l;
}

/* Copies the Markup flag of `from` (Markup's str methods return Markup). */
static jv *keep_markup(jv *v, const jv *from) {
    if (from->type == JV_STR && from->u.str.markup && v->type == JV_STR && !v->u.str.markup) {
        v->u.str.markup = true;
    }
    return v;
}

static jv *mkstr(rctx *c, const char *s, size_t n) { return jv_str(c->a, s, n); }

/* ---- strings ---- */

/* The code point at s[i] and its length in bytes (1 for stray bytes). */
static uint32_t cp_at(const char *s, size_t n, size_t i, size_t *len) {
    unsigned char b = (unsigned char)s[i];
    size_t l = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : 4;
    if (i + l > n) l = 1;
    uint32_t cp = l == 1 ? b : l == 2 ? b & 0x1F : l == 3 ? b & 0x0F : b & 0x07;
    for (size_t k = 1; k < l; k++) cp = (cp << 6) | ((unsigned char)s[i + k] & 0x3F);
    *len = l;
    return cp;
}

/* Python's str.isspace() for one code point. */
static bool py_space(uint32_t cp) {
    return (cp >= 9 && cp <= 13) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

static bool in_chars(uint32_t cp, const jv *chars) {
    for (size_t i = 0; i < chars->u.str.len;) {
        size_t l;
        if (cp_at(chars->u.str.s, chars->u.str.len, i, &l) == cp) return true;
        i += l;
    }
    return false;
}

static jv *strip(rctx *c, const jv *v, const jv *chars, bool left, bool right) {
    const char *s = v->u.str.s;
    size_t n = v->u.str.len, b = 0, e = n;
    bool use_chars = chars && chars->type == JV_STR;
    if (left)
        while (b < e) {
            size_t l;
            uint32_t cp = cp_at(s, n, b, &l);
            if (use_chars ? !in_chars(cp, chars) : !py_space(cp)) break;
            b += l;
        }
    if (right)
        while (e > b) {
            size_t k = e - 1;
            while (k > b && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
            size_t l;
            uint32_t cp = cp_at(s, n, k, &l);
            if (use_chars ? !in_chars(cp, chars) : !py_space(cp)) break;
            e = k;
        }
    return jv_str_ref(c->a, ja_strndup(c->a, s + b, e - b), e - b);
}

typedef enum { CASE_UPPER, CASE_LOWER, CASE_CAPITALIZE, CASE_TITLE_METHOD, CASE_TITLE_FILTER } casemode;

/* Simple case mapping for ASCII, Latin-1, Latin Extended-A, Greek and
 * Cyrillic (what Python does for them, less the few characters whose
 * mapping changes length, such as 'ß' -> "SS", which stay as they are).
 * Returns the mapped code point; *cased tells whether cp is a letter
 * with case. */
static uint32_t case_map(uint32_t cp, bool upper, bool *cased) {
    *cased = true;
    if (cp < 0x80) {
        if (cp >= 'a' && cp <= 'z') return upper ? cp - 32 : cp;
        if (cp >= 'A' && cp <= 'Z') return upper ? cp : cp + 32;
        *cased = false;
        return cp;
    }
    if (cp >= 0xE0 && cp <= 0xFE && cp != 0xF7) return upper ? cp - 32 : cp;
    if (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) return upper ? cp : cp + 32;
    if (cp == 0xFF) return upper ? 0x178 : cp;
    if (cp == 0x178) return upper ? cp : 0xFF;
    if (cp == 0xDF || cp == 0xB5 || cp == 0xAA || cp == 0xBA) return cp; /* lowercase without a simple upper */
    if (cp >= 0x100 && cp <= 0x17F && cp != 0x130 && cp != 0x131 && cp != 0x138 && cp != 0x149 && cp != 0x17F) {
        /* Pairs: upper at the even code point, except 0x139-0x148 and 0x179-0x17E. */
        bool odd_upper = (cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E);
        bool is_upper = odd_upper ? (cp & 1) : !(cp & 1);
        if (upper) return is_upper ? cp : cp - 1;
        return is_upper ? cp + 1 : cp;
    }
    if (cp >= 0x3B1 && cp <= 0x3C9 && cp != 0x3C2) return upper ? cp - 32 : cp;
    if (cp == 0x3C2) return upper ? 0x3A3 : cp;
    if (cp >= 0x391 && cp <= 0x3A9 && cp != 0x3A2) return upper ? cp : cp + 32;
    if (cp >= 0x430 && cp <= 0x44F) return upper ? cp - 32 : cp;
    if (cp >= 0x410 && cp <= 0x42F) return upper ? cp : cp + 32;
    if (cp >= 0x450 && cp <= 0x45F) return upper ? cp - 80 : cp;
    if (cp >= 0x400 && cp <= 0x40F) return upper ? cp : cp + 80;
    *cased = false;
    return cp;
}

static void put_cp(jbuf *b, uint32_t cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) { u[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3F)); n = 2; }
    else if (cp < 0x10000) { u[0] = (char)(0xE0 | (cp >> 12)); u[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[2] = (char)(0x80 | (cp & 0x3F)); n = 3; }
    else { u[0] = (char)(0xF0 | (cp >> 18)); u[1] = (char)(0x80 | ((cp >> 12) & 0x3F)); u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (char)(0x80 | (cp & 0x3F)); n = 4; }
    jb_put(b, u, n);
}

static jv *recase(rctx *c, const jv *v, casemode mode) {
    jbuf b;
    jb_init(&b, c->a, c->lim.max_output);
    jb_put(&b, "", 0);
    bool prev_cased = false, word_start = true, first = true;
    for (size_t i = 0; i < v->u.str.len;) {
        size_t l;
        uint32_t cp = cp_at(v->u.str.s, v->u.str.len, i, &l), out = cp;
        bool cased;
        switch (mode) {
        case CASE_UPPER: out = case_map(cp, true, &cased); break;
        case CASE_LOWER: out = case_map(cp, false, &cased); break;
        case CASE_CAPITALIZE: out = case_map(cp, first, &cased); break;
        case CASE_TITLE_METHOD:
            /* Python: upper after an uncased character, lower after a cased one. */
            case_map(cp, true, &cased);
            out = case_map(cp, !prev_cased, &cased);
            prev_cased = cased;
            break;
        case CASE_TITLE_FILTER:
            /* jinja2 splits on runs of [-\s({[<] and capitalizes each piece. */
            if (cp == '-' || py_space(cp) || cp == '(' || cp == '{' || cp == '[' || cp == '<') word_start = true;
            else {
                out = case_map(cp, word_start, &cased);
                word_start = false;
            }
            break;
        }
        if (l == 1 && cp >= 0x80) jb_put(&b, v->u.str.s + i, 1); /* a stray byte stays */
        else put_cp(&b, out);
        first = false;
        i += l;
    }
    return jv_str_ref(c->a, b.p, b.len);
}

static jv *replace(rctx *c, const jv *v, const jv *old, const jv *new, int64_t count) {
    jbuf b;
    jb_init(&b, c->a, c->lim.max_output);
    jb_put(&b, "", 0);
    const char *s = v->u.str.s;
    size_t n = v->u.str.len, i = 0;
    int64_t done = 0;
    if (old->u.str.len == 0) {
        /* Python inserts `new` before every character and at the end. */
        while (i <= n) {
            if (count < 0 || done < count) {
                jb_put(&b, new->u.str.s, new->u.str.len);
                done++;
            }
            if (i == n) break;
            size_t l;
            cp_at(s, n, i, &l);
            jb_put(&b, s + i, l);
            i += l;
        }
        return jv_str_ref(c->a, b.p, b.len);
    }
    while (i < n) {
        const char *hit = (count < 0 || done < count) ? memmem(s + i, n - i, old->u.str.s, old->u.str.len) : NULL;
        if (!hit) break;
        jb_put(&b, s + i, (size_t)(hit - (s + i)));
        jb_put(&b, new->u.str.s, new->u.str.len);
        i = (size_t)(hit - s) + old->u.str.len;
        done++;
        rt_step(c, 1);
    }
    jb_put(&b, s + i, n - i);
    return jv_str_ref(c->a, b.p, b.len);
}

static jv *split(rctx *c, const jv *v, const jv *sep, int64_t maxsplit) {
    jv *out = jv_list(c->a, 0);
    const char *s = v->u.str.s;
    size_t n = v->u.str.len, i = 0;
    if (!sep || sep->type == JV_NONE) {
        for (;;) {
            size_t l;
            while (i < n && py_space(cp_at(s, n, i, &l))) i += l;
            if (i >= n) break;
            size_t b = i;
            if (maxsplit >= 0 && (int64_t)out->u.list.n >= maxsplit) {
                size_t e = n;
                while (e > b) {
                    size_t k = e - 1;
                    while (k > b && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
                    if (!py_space(cp_at(s, n, k, &l))) break;
                    e = k;
                }
                jv_list_push(c->a, out, mkstr(c, s + b, e - b));
                break;
            }
            while (i < n && !py_space(cp_at(s, n, i, &l))) i += l;
            jv_list_push(c->a, out, mkstr(c, s + b, i - b));
            rt_step(c, 1);
        }
        return out;
    }
    if (sep->type != JV_STR) rt_fail(c, "must be str or None, not %s", jv_type_name(sep));
    if (sep->u.str.len == 0) rt_fail(c, "empty separator");
    for (;;) {
        const char *hit = (maxsplit < 0 || (int64_t)out->u.list.n < maxsplit)
                              ? memmem(s + i, n - i, sep->u.str.s, sep->u.str.len) : NULL;
        if (!hit) {
            jv_list_push(c->a, out, mkstr(c, s + i, n - i));
            return out;
        }
        jv_list_push(c->a, out, mkstr(c, s + i, (size_t)(hit - (s + i))));
        i = (size_t)(hit - s) + sep->u.str.len;
        rt_step(c, 1);
    }
}

static bool affix(const jv *v, const jv *fix, bool start) {
    if (fix->type != JV_STR || fix->u.str.len > v->u.str.len) return false;
    const char *at = start ? v->u.str.s : v->u.str.s + v->u.str.len - fix->u.str.len;
    return memcmp(at, fix->u.str.s, fix->u.str.len) == 0;
}

static bool affix_any(rctx *c, const jv *v, const jv *fix, bool start) {
    if (fix->type == JV_LIST && fix->u.list.tuple) {
        for (size_t i = 0; i < fix->u.list.n; i++)
            if (affix(v, fix->u.list.items[i], start)) return true;
        return false;
    }
    if (fix->type != JV_STR)
        rt_fail(c, "%s first arg must be str or a tuple of str, not %s", start ? "startswith" : "endswith",
                jv_type_name(fix));
    return affix(v, fix, start);
}

/* str.format with "{}", "{0}" and "{name}" fields (no format specs). */
static jv *str_format(rctx *c, const jv *v, const jargs *args) {
    jbuf b;
    jb_init(&b, c->a, c->lim.max_output);
    jb_put(&b, "", 0);
    const char *s = v->u.str.s;
    size_t n = v->u.str.len, auto_idx = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '{' && i + 1 < n && s[i + 1] == '{') { jb_putc(&b, '{'); i++; continue; }
        if (s[i] == '}' && i + 1 < n && s[i + 1] == '}') { jb_putc(&b, '}'); i++; continue; }
        if (s[i] == '}') rt_fail(c, "Single '}' encountered in format string");
        if (s[i] != '{') { jb_putc(&b, s[i]); continue; }
        const char *end = memchr(s + i, '}', n - i);
        if (!end) rt_fail(c, "Single '{' encountered in format string");
        size_t flen = (size_t)(end - (s + i + 1));
        const char *field = s + i + 1;
        jv *val = NULL;
        if (flen == 0) val = arg_get(args, auto_idx++, NULL);
        else if (isdigit((unsigned char)field[0])) {
            size_t k = 0, idx = 0;
            while (k < flen && isdigit((unsigned char)field[k])) idx = idx * 10 + (size_t)(field[k++] - '0');
            if (k != flen) rt_fail(c, "format fields with attributes or specs are not supported");
            val = arg_get(args, idx, NULL);
        } else {
            for (size_t k = 0; k < args->nkw; k++)
                if (strlen(args->kwnames[k]) == flen && !memcmp(args->kwnames[k], field, flen)) val = args->kw[k];
            if (!val) rt_fail(c, "format: no argument named '%.*s'", (int)EM_MIN(flen, 40), field);
        }
        if (!val) rt_fail(c, "Replacement index out of range for positional args tuple");
        jv_write_str(&b, val);
        i = (size_t)(end - s);
    }
    return jv_str_ref(c->a, b.p, b.len);
}

/* ---- methods ---- */

jv *bi_method(rctx *c, jv *obj, const char *name) {
    static const struct { const char *name; int id; } str_methods[] = {
        {"strip", M_STRIP}, {"lstrip", M_LSTRIP}, {"rstrip", M_RSTRIP}, {"split", M_SPLIT},
        {"startswith", M_STARTSWITH}, {"endswith", M_ENDSWITH}, {"upper", M_UPPER}, {"lower", M_LOWER},
        {"replace", M_REPLACE}, {"title", M_TITLE}, {"capitalize", M_CAPITALIZE}, {"format", M_FORMAT},
        {"find", M_FIND}, {"count", M_COUNT}, {"join", M_JOIN}, {"isdigit", M_ISDIGIT},
        {"isalpha", M_ISALPHA}, {"isalnum", M_ISALNUM}, {"isspace", M_ISSPACE}, {NULL, 0}
    };
    static const char *const dict_unsafe[] = {"clear", "copy", "fromkeys", "pop", "popitem", "setdefault", "update", NULL};
    static const char *const list_unsafe[] = {"append", "clear", "copy", "count", "extend", "index", "insert",
                                              "pop", "remove", "reverse", "sort", NULL};
    if (obj->type == JV_STR) {
        for (int i = 0; str_methods[i].name; i++)
            if (!strcmp(name, str_methods[i].name)) return func(c, str_methods[i].id, obj);
        return NULL;
    }
    if (obj->type == JV_DICT) {
        if (!strcmp(name, "items")) return func(c, M_ITEMS, obj);
        if (!strcmp(name, "keys")) return func(c, M_KEYS, obj);
        if (!strcmp(name, "values")) return func(c, M_VALUES, obj);
        if (!strcmp(name, "get")) return func(c, M_GET, obj);
        for (int i = 0; dict_unsafe[i]; i++)
            if (!strcmp(name, dict_unsafe[i])) return func(c, M_UNSAFE, obj);
        return NULL;
    }
    if (obj->type == JV_LIST && !obj->u.list.tuple) {
        for (int i = 0; list_unsafe[i]; i++)
            if (!strcmp(name, list_unsafe[i])) return func(c, M_UNSAFE, obj);
    }
    return NULL;
}

static jv *need_str(rctx *c, jv *v, const char *what) {
    if (!v) rt_fail(c, "%s: missing argument", what);
    if (v->type == JV_UNDEF) rt_undefined(c, v);
    if (v->type != JV_STR) rt_fail(c, "%s: expected a string, got %s", what, jv_type_name(v));
    return v;
}

static int64_t opt_int(rctx *c, jv *v, int64_t def) {
    if (!v || v->type == JV_NONE) return def;
    if (v->type == JV_INT) return v->u.i;
    if (v->type == JV_BOOL) return v->u.b;
    if (v->type == JV_UNDEF) rt_undefined(c, v);
    rt_fail(c, "expected an integer, got %s", jv_type_name(v));
}

static jv *items_list(rctx *c, jv *d) {
    jv *out = jv_list(c->a, d->u.dict.n);
    for (size_t i = 0; i < d->u.dict.n; i++) {
        jv *pair = jv_list(c->a, 2);
        pair->u.list.items[0] = d->u.dict.keys[i];
        pair->u.list.items[1] = d->u.dict.vals[i];
        pair->u.list.n = 2;
        pair->u.list.tuple = true;
        out->u.list.items[i] = pair;
    }
    out->u.list.n = d->u.dict.n;
    return out;
}

static jv *str_class(rctx *c, const jv *v, int (*pred)(int)) {
    if (v->u.str.len == 0) return JV_FALSE;
    for (size_t i = 0; i < v->u.str.len; i++)
        if (!pred((unsigned char)v->u.str.s[i])) return JV_FALSE;
    return JV_TRUE;
}

static jv *call_method(rctx *c, int id, jv *self, const jargs *a) {
    switch (id) {
    case M_STRIP: return strip(c, self, arg_get(a, 0, "chars"), true, true);
    case M_LSTRIP: return strip(c, self, arg_get(a, 0, "chars"), true, false);
    case M_RSTRIP: return strip(c, self, arg_get(a, 0, "chars"), false, true);
    case M_SPLIT: return split(c, self, arg_get(a, 0, "sep"), opt_int(c, arg_get(a, 1, "maxsplit"), -1));
    case M_STARTSWITH:
    case M_ENDSWITH: {
        jv *fix = arg_get(a, 0, NULL);
        if (!fix) rt_fail(c, "startswith/endswith takes at least 1 argument");
        return jv_bool(affix_any(c, self, fix, id == M_STARTSWITH));
    }
    case M_UPPER: return recase(c, self, CASE_UPPER);
    case M_LOWER: return recase(c, self, CASE_LOWER);
    case M_TITLE: return recase(c, self, CASE_TITLE_METHOD);
    case M_CAPITALIZE: return recase(c, self, CASE_CAPITALIZE);
    case M_REPLACE:
        return replace(c, self, need_str(c, arg_get(a, 0, NULL), "replace"), need_str(c, arg_get(a, 1, NULL), "replace"),
                       opt_int(c, arg_get(a, 2, "count"), -1));
    case M_FORMAT: return str_format(c, self, a);
    case M_FIND:
    case M_COUNT: {
        jv *sub = need_str(c, arg_get(a, 0, NULL), id == M_FIND ? "find" : "count");
        if (id == M_FIND) {
            const char *hit = sub->u.str.len ? memmem(self->u.str.s, self->u.str.len, sub->u.str.s, sub->u.str.len)
                                             : self->u.str.s;
            return jv_int(c->a, hit ? (int64_t)utf8_len(self->u.str.s, (size_t)(hit - self->u.str.s)) : -1);
        }
        if (sub->u.str.len == 0) return jv_int(c->a, (int64_t)utf8_len(self->u.str.s, self->u.str.len) + 1);
        int64_t count = 0;
        const char *p = self->u.str.s, *end = p + self->u.str.len;
        while ((p = memmem(p, (size_t)(end - p), sub->u.str.s, sub->u.str.len))) {
            count++;
            p += sub->u.str.len;
        }
        return jv_int(c->a, count);
    }
    case M_JOIN: {
        jv *items = arg_get(a, 0, NULL);
        if (!items) rt_fail(c, "join() takes exactly one argument");
        items = rt_iter(c, items);
        jbuf b;
        jb_init(&b, c->a, c->lim.max_output);
        jb_put(&b, "", 0);
        for (size_t i = 0; i < items->u.list.n; i++) {
            jv *it = items->u.list.items[i];
            if (it->type != JV_STR) rt_fail(c, "sequence item %zu: expected str instance, %s found", i, jv_type_name(it));
            if (i) jb_put(&b, self->u.str.s, self->u.str.len);
            jb_put(&b, it->u.str.s, it->u.str.len);
        }
        return jv_str_ref(c->a, b.p, b.len);
    }
    case M_ISDIGIT: return str_class(c, self, isdigit);
    case M_ISALPHA: return str_class(c, self, isalpha);
    case M_ISALNUM: return str_class(c, self, isalnum);
    case M_ISSPACE: return str_class(c, self, isspace);
    case M_ITEMS: return as_view(items_list(c, self), "dict_items", false);
    case M_KEYS: {
        jv *keys = jv_list(c->a, self->u.dict.n);
        for (size_t i = 0; i < self->u.dict.n; i++) keys->u.list.items[i] = self->u.dict.keys[i];
        keys->u.list.n = self->u.dict.n;
        return as_view(keys, "dict_keys", false);
    }
    case M_VALUES: {
        jv *out = jv_list(c->a, self->u.dict.n);
        for (size_t i = 0; i < self->u.dict.n; i++) out->u.list.items[i] = self->u.dict.vals[i];
        out->u.list.n = self->u.dict.n;
        return as_view(out, "dict_values", false);
    }
    case M_GET: {
        jv *key = arg_get(a, 0, NULL);
        if (!key) rt_fail(c, "get expected at least 1 argument, got 0");
        jv *v = jv_dict_get(self, key);
        if (v) return v;
        jv *def = arg_get(a, 1, NULL);
        return def ? def : JV_NONEV;
    }
    default:
        rt_fail(c, "this %s method modifies its object, which templates may not do", jv_type_name(self));
    }
}

/* ---- globals ---- */

jv *bi_call_func(rctx *c, jv *fn, const jargs *a) {
    int id = fn->u.fn.id;
    if (id >= M_STRIP) return call_method(c, id, fn->u.fn.self, a);
    switch (id) {
    case F_RANGE: {
        int64_t start = 0, stop, step = 1;
        if (a->npos == 1) stop = opt_int(c, a->pos[0], 0);
        else if (a->npos == 2 || a->npos == 3) {
            start = opt_int(c, a->pos[0], 0);
            stop = opt_int(c, a->pos[1], 0);
            if (a->npos == 3) step = opt_int(c, a->pos[2], 1);
        } else rt_fail(c, "range expected 1 to 3 arguments, got %zu", a->npos);
        if (step == 0) rt_fail(c, "range() arg 3 must not be zero");
        double count = ceil(((double)stop - (double)start) / (double)step);
        if (count > 100000) rt_fail(c, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
        jv *out = jv_list(c->a, 0);
        for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) jv_list_push(c->a, out, jv_int(c->a, i));
        rt_step(c, out->u.list.n);
        return out;
    }
    case F_NAMESPACE:
    case F_DICT: {
        jv *d = jv_dict(c->a, id == F_NAMESPACE ? JV_NS : JV_DICT);
        for (size_t i = 0; i < a->npos; i++) {
            jv *init = a->pos[i];
            if (init->type == JV_DICT || init->type == JV_NS) {
                for (size_t k = 0; k < init->u.dict.n; k++) jv_dict_set(c->a, d, init->u.dict.keys[k], init->u.dict.vals[k]);
            } else if (init->type == JV_LIST) {
                for (size_t k = 0; k < init->u.list.n; k++) {
                    jv *pair = init->u.list.items[k];
                    if (pair->type != JV_LIST || pair->u.list.n != 2) rt_fail(c, "dictionary update sequence element has the wrong length");
                    jv_dict_set(c->a, d, pair->u.list.items[0], pair->u.list.items[1]);
                }
            } else rt_fail(c, "'%s' object is not iterable", jv_type_name(init));
        }
        for (size_t k = 0; k < a->nkw; k++) jv_dict_set(c->a, d, str_key(c, a->kwnames[k]), a->kw[k]);
        return d;
    }
    case F_RAISE: {
        jv *msg = arg_get(a, 0, NULL);
        jerr_throw(c->e, EM_ERR_INVALID_ARG, "%s", msg ? jv_to_str(c->a, msg)->u.str.s : "");
    }
    case F_CYCLE: {
        /* loop.cycle(a, b, ...): self is the loop's index0. */
        if (a->npos == 0) rt_fail(c, "no items for cycling given");
        return a->pos[(size_t)fn->u.fn.self->u.i % a->npos];
    }
    case F_STRFTIME: {
        jv *fmt = need_str(c, arg_get(a, 0, NULL), "strftime_now");
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        char buf[512];
        size_t n = fmt->u.str.len ? strftime(buf, sizeof buf, fmt->u.str.s, &tm) : 0;
        return mkstr(c, buf, n);
    }
    }
    rt_fail(c, "unknown function");
}

jv *bi_loop_cycle(rctx *c, jv *index0) { return func(c, F_CYCLE, index0); }

void bi_add_globals(rctx *c, jv *g) {
    static const struct { const char *name; int id; } fns[] = {
        {"range", F_RANGE}, {"namespace", F_NAMESPACE}, {"dict", F_DICT},
        {"raise_exception", F_RAISE}, {"strftime_now", F_STRFTIME}, {NULL, 0}
    };
    for (int i = 0; fns[i].name; i++)
        if (!jv_dict_get_str(g, fns[i].name)) jv_dict_set(c->a, g, str_key(c, fns[i].name), func(c, fns[i].id, NULL));
}

/* ---- tests ---- */

static const char *const TESTS[] = {
    "defined", "undefined", "none", "string", "mapping", "iterable", "sequence", "number",
    "integer", "float", "boolean", "true", "false", "callable", "equalto", "eq", "==", "ne", "!=",
    "lt", "<", "le", "<=", "gt", ">", "ge", ">=", "greaterthan", "lessthan", "in", "odd", "even",
    "divisibleby", "lower", "upper", "sameas", "escaped", "filter", "test", NULL
};

static bool test_core(rctx *c, const char *name, jv *v, const jargs *a) {
    jv *arg = arg_get(a, 0, NULL);
    if (!strcmp(name, "defined")) return v->type != JV_UNDEF;
    if (!strcmp(name, "undefined")) return v->type == JV_UNDEF;
    if (!strcmp(name, "none")) return v->type == JV_NONE;
    if (!strcmp(name, "string")) return v->type == JV_STR;
    if (!strcmp(name, "mapping")) return v->type == JV_DICT;
    if (!strcmp(name, "iterable")) return v->type == JV_STR || v->type == JV_LIST || v->type == JV_DICT || v->type == JV_UNDEF;
    if (!strcmp(name, "sequence")) return v->type == JV_STR || jv_is_seq(v) || v->type == JV_DICT || v->type == JV_UNDEF;
    if (!strcmp(name, "number")) return jv_is_number(v);
    if (!strcmp(name, "integer")) return v->type == JV_INT;
    if (!strcmp(name, "float")) return v->type == JV_FLOAT;
    if (!strcmp(name, "boolean")) return v->type == JV_BOOL;
    if (!strcmp(name, "true")) return v->type == JV_BOOL && v->u.b;
    if (!strcmp(name, "false")) return v->type == JV_BOOL && !v->u.b;
    if (!strcmp(name, "callable")) return v->type == JV_MACRO || v->type == JV_FUNC;
    if (!strcmp(name, "escaped")) return false;
    if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        /* str.islower()/isupper(): some cased letter, none of the other case. */
        if (v->type != JV_STR) v = jv_to_str(c->a, v);
        bool any = false;
        for (size_t i = 0; i < v->u.str.len;) {
            size_t l;
            bool cased;
            uint32_t cp = cp_at(v->u.str.s, v->u.str.len, i, &l);
            uint32_t up = case_map(cp, true, &cased);
            if (cased) {
                any = true;
                bool is_lower = up != cp;
                bool is_upper = case_map(cp, false, &cased) != cp;
                if (name[0] == 'l' ? is_upper : is_lower) return false;
            }
            i += l;
        }
        return any;
    }
    if (!strcmp(name, "filter") || !strcmp(name, "test")) {
        if (v->type != JV_STR) return false;
        for (int i = 0; name[0] == 't' && TESTS[i]; i++)
            if (!strcmp(TESTS[i], v->u.str.s)) return true;
        return name[0] == 'f' && jinja_has_filter(v->u.str.s);
    }
    if (!arg) rt_fail(c, "test '%s' needs an argument", name);
    if (!strcmp(name, "equalto") || !strcmp(name, "eq") || !strcmp(name, "==")) return jv_equal(v, arg);
    if (!strcmp(name, "ne") || !strcmp(name, "!=")) return !jv_equal(v, arg);
    if (!strcmp(name, "in")) return rt_contains(c, arg, v);
    if (!strcmp(name, "sameas")) {
        if (v->type != arg->type) return false;
        if (v->type == JV_NONE || v->type == JV_UNDEF) return true;
        if (v->type == JV_BOOL) return v->u.b == arg->u.b;
        return v == arg;
    }
    jop op;
    if (!strcmp(name, "lt") || !strcmp(name, "<") || !strcmp(name, "lessthan")) op = OP_LT;
    else if (!strcmp(name, "le") || !strcmp(name, "<=")) op = OP_LE;
    else if (!strcmp(name, "gt") || !strcmp(name, ">") || !strcmp(name, "greaterthan")) op = OP_GT;
    else if (!strcmp(name, "ge") || !strcmp(name, ">=")) op = OP_GE;
    else if (!strcmp(name, "divisibleby")) {
        jv *m = rt_binop(c, OP_MOD, v, arg);
        return jv_equal(m, jv_int(c->a, 0));
    } else rt_fail(c, "no test named '%s'", name);
    if (v->type == JV_UNDEF) rt_undefined(c, v);
    if (arg->type == JV_UNDEF) rt_undefined(c, arg);
    bool ok;
    int k = jv_compare(v, arg, &ok);
    if (!ok) rt_fail(c, "comparison not supported between '%s' and '%s'", jv_type_name(v), jv_type_name(arg));
    return op == OP_LT ? k < 0 : op == OP_LE ? k <= 0 : op == OP_GT ? k > 0 : k >= 0;
}

static bool test_odd_even(rctx *c, const char *name, jv *v, bool *handled) {
    *handled = !strcmp(name, "odd") || !strcmp(name, "even");
    if (!*handled) return false;
    if (v->type == JV_UNDEF) rt_undefined(c, v);
    /* jinja2: value % 2 == 1 (odd) or == 0 (even). */
    jv *m = rt_binop(c, OP_MOD, v, jv_int(c->a, 2));
    return jv_equal(m, jv_int(c->a, name[0] == 'o' ? 1 : 0));
}

bool jinja_has_test(const char *name) {
    for (int i = 0; TESTS[i]; i++)
        if (!strcmp(TESTS[i], name)) return true;
    return false;
}

bool bi_test(rctx *c, const char *name, jv *v, const jargs *a) {
    bool handled;
    bool r = test_odd_even(c, name, v, &handled);
    return handled ? r : test_core(c, name, v, a);
}

/* ---- filters ---- */

static const char *const FILTERS[] = {
    "abs", "attr", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "first",
    "float", "forceescape", "format", "indent", "int", "items", "join", "last", "length", "list",
    "lower", "map", "max", "min", "pprint", "reject", "rejectattr", "replace", "reverse", "round",
    "safe", "select", "selectattr", "sort", "string", "sum", "title", "tojson", "trim", "unique",
    "upper", NULL
};

bool jinja_has_filter(const char *name) {
    for (int i = 0; FILTERS[i]; i++)
        if (!strcmp(FILTERS[i], name)) return true;
    return false;
}

static jv *soft_str(rctx *c, jv *v) { return jv_to_str(c->a, v); }

/* jinja2's attribute getter for filters: "a.b.0" looks up item by item. */
static jv *get_path(rctx *c, jv *v, jv *attr) {
    if (attr->type == JV_INT) return rt_getitem(c, v, attr);
    if (attr->type != JV_STR) rt_fail(c, "attribute must be a string");
    const char *s = attr->u.str.s, *end = s + attr->u.str.len;
    while (s <= end) {
        const char *dot = memchr(s, '.', (size_t)(end - s));
        if (!dot) dot = end;
        jv *key;
        bool digits = dot > s;
        for (const char *q = s; q < dot; q++) digits = digits && isdigit((unsigned char)*q);
        if (digits) key = jv_int(c->a, strtoll(s, NULL, 10));
        else key = jv_str(c->a, s, (size_t)(dot - s));
        if (v->type == JV_UNDEF) return v;
        v = rt_getitem(c, v, key);
        s = dot + 1;
    }
    return v;
}

/* Stable merge sort by `keys` (parallel to `vals`). */
static void sort_pairs(rctx *c, jv **keys, jv **vals, size_t n, bool reverse) {
    if (n < 2) return;
    rt_step(c, n);
    size_t h = n / 2;
    sort_pairs(c, keys, vals, h, reverse);
    sort_pairs(c, keys + h, vals + h, n - h, reverse);
    jv **tk = ja_alloc(c->a, n * sizeof(jv *)), **tv = ja_alloc(c->a, n * sizeof(jv *));
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        bool ok;
        int cmp = jv_compare(keys[j], keys[i], &ok);
        if (!ok) rt_fail(c, "'<' not supported between instances of '%s' and '%s'", jv_type_name(keys[j]), jv_type_name(keys[i]));
        bool take_right = reverse ? cmp > 0 : cmp < 0;
        if (take_right) { tk[k] = keys[j]; tv[k++] = vals[j++]; }
        else { tk[k] = keys[i]; tv[k++] = vals[i++]; }
    }
    while (i < h) { tk[k] = keys[i]; tv[k++] = vals[i++]; }
    while (j < n) { tk[k] = keys[j]; tv[k++] = vals[j++]; }
    memcpy(keys, tk, n * sizeof(jv *));
    memcpy(vals, tv, n * sizeof(jv *));
}

static jv *sort_key(rctx *c, jv *v, bool case_sensitive) {
    if (!case_sensitive && v->type == JV_STR) return recase(c, v, CASE_LOWER);
    return v;
}

static jv *json_sorted(rctx *c, jv *v, int depth) {
    if (depth > 512) rt_fail(c, "tojson: value nested too deeply");
    if (v->type == JV_LIST) {
        jv *out = jv_list(c->a, v->u.list.n);
        for (size_t i = 0; i < v->u.list.n; i++) out->u.list.items[i] = json_sorted(c, v->u.list.items[i], depth + 1);
        out->u.list.n = v->u.list.n;
        return out;
    }
    if (v->type != JV_DICT) return v;
    size_t n = v->u.dict.n;
    jv **keys = ja_alloc(c->a, (n + 1) * sizeof(jv *)), **vals = ja_alloc(c->a, (n + 1) * sizeof(jv *));
    for (size_t i = 0; i < n; i++) {
        keys[i] = v->u.dict.keys[i];
        vals[i] = json_sorted(c, v->u.dict.vals[i], depth + 1);
    }
    sort_pairs(c, keys, vals, n, false);
    jv *out = jv_dict(c->a, JV_DICT);
    for (size_t i = 0; i < n; i++) jv_dict_set(c->a, out, keys[i], vals[i]);
    return out;
}

static jv *f_indent(rctx *c, jv *v, const jargs *a) {
    jv *w = arg_get(a, 0, "width");
    jv *first = arg_get(a, 1, "first"), *blank = arg_get(a, 2, "blank");
    jv *ind;
    if (w && w->type == JV_STR) ind = w;
    else {
        int64_t n = opt_int(c, w, 4);
        if (n < 0) n = 0;
        if (n > 4096) rt_fail(c, "indent width too large");
        char *sp = ja_alloc(c->a, (size_t)n + 1);
        memset(sp, ' ', (size_t)n);
        ind = jv_str_ref(c->a, sp, (size_t)n);
    }
    /* jinja2 appends "\n" to the value itself: only strings work. */
    if (v->type == JV_UNDEF) rt_undefined(c, v);
    if (v->type != JV_STR) rt_fail(c, "indent: expected a string, got %s", jv_type_name(v));
    jbuf b;
    jb_init(&b, c->a, c->lim.max_output);
    jb_put(&b, "", 0);
    if (first && jv_truthy(first)) jb_put(&b, ind->u.str.s, ind->u.str.len);
    /* Lines as str.splitlines() sees them after the "\n" jinja2 appends. */
    const char *s = v->u.str.s;
    size_t n = v->u.str.len, i = 0;
    bool first_line = true;
    while (i <= n) {
        size_t e = i;
        while (e < n && s[e] != '\n' && s[e] != '\r' && s[e] != '\v' && s[e] != '\f' &&
               !(s[e] >= 0x1c && s[e] <= 0x1e))
            e++;
        if (!first_line) {
            jb_putc(&b, '\n');
            if (e > i || (blank && jv_truthy(blank))) jb_put(&b, ind->u.str.s, ind->u.str.len);
        }
        jb_put(&b, s + i, e - i);
        first_line = false;
        if (e >= n) break;
        i = e + ((s[e] == '\r' && e + 1 < n && s[e + 1] == '\n') ? 2 : 1);
        rt_step(c, 1);
    }
    return jv_str_ref(c->a, b.p, b.len);
}

static jv *f_round(rctx *c, jv *v, const jargs *a) {
    int64_t prec = opt_int(c, arg_get(a, 0, "precision"), 0);
    jv *m = arg_get(a, 1, "method");
    const char *method = m && m->type == JV_STR ? m->u.str.s : "common";
    if (v->type == JV_UNDEF) rt_undefined(c, v);
    if (!jv_is_number(v)) rt_fail(c, "type %s doesn't define __round__ method", jv_type_name(v));
    if (prec < -300 || prec > 300) rt_fail(c, "round: precision out of range");
    if (!strcmp(method, "common")) {
        if (v->type != JV_FLOAT) return v->type == JV_BOOL ? jv_int(c->a, v->u.b) : v;
        if (!isfinite(v->u.f) || prec < 0) {
            double p10 = pow(10.0, (double)-prec);
            return jv_float(c->a, isfinite(v->u.f) ? nearbyint(v->u.f / p10) * p10 : v->u.f);
        }
        char buf[400];
        snprintf(buf, sizeof buf, "%.*f", (int)prec, v->u.f);
        return jv_float(c->a, strtod(buf, NULL));
    }
    if (strcmp(method, "ceil") && strcmp(method, "floor")) rt_fail(c, "method must be common, ceil or floor");
    double p10 = pow(10.0, (double)prec), x = jv_as_double(v) * p10;
    return jv_float(c->a, (method[0] == 'c' ? ceil(x) : floor(x)) / p10);
}

static bool parse_py_int(const char *s, int base, int64_t *out) {
    while (*s && isspace((unsigned char)*s)) s++;
    char buf[128];
    size_t k = 0;
    if (*s == '+' || *s == '-') buf[k++] = *s++;
    if (!isalnum((unsigned char)*s)) return false;
    bool prev_us = true;
    for (; *s && !isspace((unsigned char)*s); s++) {
        if (*s == '_') {
            if (prev_us) return false;
            prev_us = true;
            continue;
        }
        if (k >= sizeof buf - 1) return false;
        buf[k++] = *s;
        prev_us = false;
    }
    if (prev_us) return false;
    while (*s && isspace((unsigned char)*s)) s++;
    if (*s) return false;
    buf[k] = 0;
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, base);
    if (errno || *end) return false;
    *out = v;
    return true;
}

static bool parse_py_float(const char *s, double *out) {
    char *end;
    while (*s && isspace((unsigned char)*s)) s++;
    if (!*s) return false;
    *out = strtod(s, &end);
    if (end == s) return false;
    while (*end && isspace((unsigned char)*end)) end++;
    return *end == 0;
}

static jv *f_int(rctx *c, jv *v, const jargs *a) {
    jv *def = arg_get(a, 0, "default");
    if (v->type == JV_UNDEF) rt_undefined(c, v); /* int(Undefined) raises */
    int64_t base = opt_int(c, arg_get(a, 1, "base"), 10);
    int64_t i;
    double f;
    switch (v->type) {
    case JV_INT: return v;
    case JV_BOOL: return jv_int(c->a, v->u.b);
    case JV_FLOAT:
        if (isfinite(v->u.f) && fabs(v->u.f) < 9.2e18) return jv_int(c->a, (int64_t)v->u.f);
        break;
    case JV_STR:
        if (parse_py_int(v->u.str.s, (int)base, &i)) return jv_int(c->a, i);
        if (parse_py_float(v->u.str.s, &f) && isfinite(f) && fabs(f) < 9.2e18) return jv_int(c->a, (int64_t)f);
        break;
    default: break;
    }
    return def ? def : jv_int(c->a, 0);
}

static jv *f_float(rctx *c, jv *v, const jargs *a) {
    jv *def = arg_get(a, 0, "default");
    double f;
    if (v->type == JV_UNDEF) rt_undefined(c, v);
    if (v->type == JV_FLOAT) return v;
    if (v->type == JV_INT || v->type == JV_BOOL) return jv_float(c->a, jv_as_double(v));
    if (v->type == JV_STR && parse_py_float(v->u.str.s, &f)) return jv_float(c->a, f);
    return def ? def : jv_float(c->a, 0.0);
}

static jv *f_length(rctx *c, jv *v) {
    switch (v->type) {
    case JV_UNDEF: return jv_int(c->a, 0);
    case JV_STR: return jv_int(c->a, (int64_t)utf8_len(v->u.str.s, v->u.str.len));
    case JV_LIST:
        if (v->u.list.once) break;
        return jv_int(c->a, (int64_t)v->u.list.n);
    case JV_DICT: return jv_int(c->a, (int64_t)v->u.dict.n);
    default: break;
    }
    rt_fail(c, "object of type '%s' has no len()", jv_type_name(v));
}

static jv *f_escape(rctx *c, jv *v) {
    return jv_escape(c->a, v);
}

static jv *f_forceescape(rctx *c, jv *v) {
    v = soft_str(c, v);
    jbuf b;
    jb_init(&b, c->a, c->lim.max_output);
    jb_put(&b, "", 0);
    for (size_t i = 0; i < v->u.str.len; i++) {
        char ch = v->u.str.s[i];
        switch (ch) {
        case '&': jb_puts(&b, "&amp;"); break;
        case '<': jb_puts(&b, "&lt;"); break;
        case '>': jb_puts(&b, "&gt;"); break;
        case '"': jb_puts(&b, "&#34;"); break;
        case '\'': jb_puts(&b, "&#39;"); break;
        default: jb_putc(&b, ch);
        }
    }
    jv *out = jv_str_ref(c->a, b.p, b.len);
    out->u.str.markup = true;
    return out;
}

/* Python's "%" formatting for %s, %r, %d, %i and %%.  `mapping`: the
 * right operand was a list or dict, which Python lets go unused. */
static jv *percent_format(rctx *c, jv *v, const jargs *a, bool mapping) {
    v = soft_str(c, v);
    jbuf b;
    jb_init(&b, c->a, c->lim.max_output);
    jb_put(&b, "", 0);
    size_t k = 0;
    for (size_t i = 0; i < v->u.str.len; i++) {
        char ch = v->u.str.s[i];
        if (ch != '%') { jb_putc(&b, ch); continue; }
        char spec = i + 1 < v->u.str.len ? v->u.str.s[++i] : 0;
        if (spec == '%') { jb_putc(&b, '%'); continue; }
        if (k >= a->npos) rt_fail(c, "not enough arguments for format string");
        jv *x = a->pos[k++];
        if (spec == 's') jv_write_str(&b, x);
        else if (spec == 'r') jv_write_repr(&b, x);
        else if (spec == 'd' || spec == 'i') {
            if (!jv_is_number(x)) rt_fail(c, "%%%c format: a real number is required, not %s", spec, jv_type_name(x));
            jv_write_str(&b, f_int(c, x, &(jargs){0}));
        } else rt_fail(c, "format: unsupported conversion '%%%c'", spec);
    }
    if (k < a->npos && !mapping) rt_fail(c, "not all arguments converted during string formatting");
    return jv_str_ref(c->a, b.p, b.len);
}

static jv *f_format(rctx *c, jv *v, const jargs *a) { return percent_format(c, v, a, false); }

jv *bi_percent_format(rctx *c, jv *fmt, jv *args) {
    jargs a = {0};
    if (jv_is_seq(args) && args->u.list.tuple) {
        a.pos = args->u.list.items;
        a.npos = args->u.list.n;
    } else {
        a.pos = &args;
        a.npos = 1;
    }
    /* Python lets a mapping-like right operand (a dict, a list, an
     * undefined value) go unused. */
    return percent_format(c, fmt, &a, args->type == JV_DICT || args->type == JV_UNDEF ||
                                          (jv_is_seq(args) && !args->u.list.tuple));
}

/* select/reject and selectattr/rejectattr. */
static jv *f_select(rctx *c, jv *v, const jargs *a, bool attr, bool keep) {
    /* jinja2 yields nothing for a false value (None, an empty list). */
    jv *items = jv_truthy(v) ? rt_iter(c, v) : jv_list(c->a, 0);
    size_t at = 0;
    jv *path = NULL;
    if (attr) {
        path = arg_get(a, at++, NULL);
        if (!path) rt_fail(c, "selectattr/rejectattr need an attribute");
    }
    jv *test = arg_get(a, at++, NULL);
    jargs targs = {0};
    if (a->npos > at) {
        targs.pos = a->pos + at;
        targs.npos = a->npos - at;
    }
    if (test && test->type != JV_STR) rt_fail(c, "test name must be a string");
    if (test && !jinja_has_test(test->u.str.s)) rt_fail(c, "no test named '%s'", test->u.str.s);
    jv *out = jv_list(c->a, 0);
    for (size_t i = 0; i < items->u.list.n; i++) {
        jv *it = items->u.list.items[i];
        jv *subject = path ? get_path(c, it, path) : it;
        bool r = test ? bi_test(c, test->u.str.s, subject, &targs) : jv_truthy(subject);
        if (r == keep) jv_list_push(c->a, out, it);
        rt_step(c, 1);
    }
    return as_view(out, "generator", true);
}

static jv *f_map(rctx *c, jv *v, const jargs *a) {
    jv *items = jv_truthy(v) ? rt_iter(c, v) : jv_list(c->a, 0);
    jv *out = jv_list(c->a, items->u.list.n);
    jv *attr = NULL, *fname = NULL;
    for (size_t k = 0; k < a->nkw; k++)
        if (!strcmp(a->kwnames[k], "attribute")) attr = a->kw[k];
    jv *def = NULL;
    for (size_t k = 0; k < a->nkw; k++)
        if (!strcmp(a->kwnames[k], "default")) def = a->kw[k];
    if (!attr) {
        fname = arg_get(a, 0, NULL);
        if (!fname || fname->type != JV_STR) rt_fail(c, "map needs a filter name or attribute=");
        if (!jinja_has_filter(fname->u.str.s)) rt_fail(c, "no filter named '%s'", fname->u.str.s);
    }
    jargs fargs = {0};
    if (fname && a->npos > 1) {
        fargs.pos = a->pos + 1;
        fargs.npos = a->npos - 1;
    }
    for (size_t i = 0; i < items->u.list.n; i++) {
        jv *it = items->u.list.items[i];
        jv *r;
        if (attr) {
            r = get_path(c, it, attr);
            if (r->type == JV_UNDEF && def) r = def;
        } else r = bi_filter(c, fname->u.str.s, it, &fargs);
        out->u.list.items[out->u.list.n++] = r;
        rt_step(c, 1);
    }
    return as_view(out, "generator", true);
}

static jv *f_minmax(rctx *c, jv *v, const jargs *a, bool want_max) {
    jv *items = rt_iter(c, v);
    jv *cs = arg_get(a, 0, "case_sensitive"), *attr = arg_get(a, 1, "attribute");
    bool sensitive = cs && jv_truthy(cs);
    jv *best = NULL, *best_key = NULL;
    for (size_t i = 0; i < items->u.list.n; i++) {
        jv *it = items->u.list.items[i];
        jv *key = sort_key(c, attr ? get_path(c, it, attr) : it, sensitive);
        bool ok = true;
        if (best) {
            int k = jv_compare(key, best_key, &ok);
            if (!ok) rt_fail(c, "'<' not supported between '%s' and '%s'", jv_type_name(key), jv_type_name(best_key));
            if (want_max ? k <= 0 : k >= 0) continue;
        }
        best = it;
        best_key = key;
    }
    return best ? best : jv_undef_named(c->a, "No aggregated item, sequence was empty.");
}

jv *bi_filter(rctx *c, const char *name, jv *v, const jargs *a) {
    rt_step(c, 1);
    if (!strcmp(name, "safe")) {
        if (v->type == JV_STR && v->u.str.markup) return v;
        jv *s = jv_to_str(c->a, v);
        jv *m = jv_str_ref(c->a, s->u.str.s, s->u.str.len);
        m->u.str.markup = true;
        return m;
    }
    if (!strcmp(name, "default") || !strcmp(name, "d")) {
        jv *def = arg_get(a, 0, "default_value"), *boolean = arg_get(a, 1, "boolean");
        if (v->type == JV_UNDEF || (boolean && jv_truthy(boolean) && !jv_truthy(v)))
            return def ? def : jv_str_ref(c->a, "", 0);
        return v;
    }
    if (!strcmp(name, "length") || !strcmp(name, "count")) return f_length(c, v);
    if (!strcmp(name, "string")) return soft_str(c, v);
    if (!strcmp(name, "trim")) return keep_markup(strip(c, soft_str(c, v), arg_get(a, 0, "chars"), true, true), v);
    if (!strcmp(name, "upper")) return keep_markup(recase(c, soft_str(c, v), CASE_UPPER), v);
    if (!strcmp(name, "lower")) return keep_markup(recase(c, soft_str(c, v), CASE_LOWER), v);
    if (!strcmp(name, "capitalize")) return keep_markup(recase(c, soft_str(c, v), CASE_CAPITALIZE), v);
    if (!strcmp(name, "title")) return recase(c, soft_str(c, v), CASE_TITLE_FILTER);
    if (!strcmp(name, "escape") || !strcmp(name, "e")) return f_escape(c, v);
    if (!strcmp(name, "forceescape")) return f_forceescape(c, v);
    if (!strcmp(name, "pprint")) {
        jbuf b;
        jb_init(&b, c->a, c->lim.max_output);
        jb_put(&b, "", 0);
        jv_write_repr(&b, v);
        return jv_str_ref(c->a, b.p, b.len);
    }
    if (!strcmp(name, "tojson")) {
        jv *ind = arg_get(a, 0, "indent"), *sk = arg_get(a, 4, "sort_keys");
        int indent = -1;
        if (ind && ind->type != JV_NONE) {
            int64_t n = opt_int(c, ind, 0);
            indent = n < 0 ? 0 : n > 64 ? 64 : (int)n;
        }
        if (sk && jv_truthy(sk)) v = json_sorted(c, v, 0);
        jbuf b;
        jb_init(&b, c->a, c->lim.max_output);
        jb_put(&b, "", 0);
        jv_write_json(&b, v, indent, 0);
        return jv_str_ref(c->a, b.p, b.len);
    }
    if (!strcmp(name, "replace")) {
        jv *s = soft_str(c, v);
        jv *old = soft_str(c, need_str(c, arg_get(a, 0, "old"), "replace"));
        jv *new = soft_str(c, need_str(c, arg_get(a, 1, "new"), "replace"));
        return replace(c, s, old, new, opt_int(c, arg_get(a, 2, "count"), -1));
    }
    if (!strcmp(name, "indent")) return f_indent(c, v, a);
    if (!strcmp(name, "int")) return f_int(c, v, a);
    if (!strcmp(name, "float")) return f_float(c, v, a);
    if (!strcmp(name, "round")) return f_round(c, v, a);
    if (!strcmp(name, "abs")) {
        if (v->type == JV_UNDEF) rt_undefined(c, v);
        if (v->type == JV_FLOAT) return jv_float(c->a, fabs(v->u.f));
        if (v->type == JV_BOOL) return jv_int(c->a, v->u.b);
        if (v->type == JV_INT) {
            if (v->u.i == INT64_MIN) rt_fail(c, "integer overflow");
            return v->u.i < 0 ? jv_int(c->a, -v->u.i) : v;
        }
        rt_fail(c, "bad operand type for abs(): '%s'", jv_type_name(v));
    }
    if (!strcmp(name, "first") || !strcmp(name, "last")) {
        if (v->type == JV_UNDEF) return v;
        if (name[0] == 'l' && v->type == JV_LIST && v->u.list.once) rt_fail(c, "'%s' object is not reversible", v->u.list.view);
        jv *items = rt_iter(c, v);
        if (!items->u.list.n) return jv_undef_named(c->a, name[0] == 'f' ? "No first item, sequence was empty." : "No last item, sequence was empty.");
        return items->u.list.items[name[0] == 'f' ? 0 : items->u.list.n - 1];
    }
    if (!strcmp(name, "list")) {
        jv *items = rt_iter(c, v);
        jv *out = jv_list(c->a, items->u.list.n);
        if (items->u.list.n) memcpy(out->u.list.items, items->u.list.items, items->u.list.n * sizeof(jv *));
        out->u.list.n = items->u.list.n;
        return out;
    }
    if (!strcmp(name, "items")) {
        if (v->type == JV_UNDEF) return jv_list(c->a, 0);
        if (v->type != JV_DICT) rt_fail(c, "Can only get item pairs from a mapping.");
        return as_view(items_list(c, v), "generator", true);
    }
    if (!strcmp(name, "join")) {
        jv *items = rt_iter(c, v);
        jv *sep = arg_get(a, 0, "d"), *attr = arg_get(a, 1, "attribute");
        jv *d = sep ? soft_str(c, sep) : jv_str_ref(c->a, "", 0);
        jbuf b;
        jb_init(&b, c->a, c->lim.max_output);
        jb_put(&b, "", 0);
        for (size_t i = 0; i < items->u.list.n; i++) {
            if (i) jb_put(&b, d->u.str.s, d->u.str.len);
            jv_write_str(&b, attr ? get_path(c, items->u.list.items[i], attr) : items->u.list.items[i]);
        }
        rt_step(c, items->u.list.n);
        return jv_str_ref(c->a, b.p, b.len);
    }
    if (!strcmp(name, "map")) return f_map(c, v, a);
    if (!strcmp(name, "select")) return f_select(c, v, a, false, true);
    if (!strcmp(name, "reject")) return f_select(c, v, a, false, false);
    if (!strcmp(name, "selectattr")) return f_select(c, v, a, true, true);
    if (!strcmp(name, "rejectattr")) return f_select(c, v, a, true, false);
    if (!strcmp(name, "unique")) {
        jv *items = rt_iter(c, v);
        jv *cs = arg_get(a, 0, "case_sensitive"), *attr = arg_get(a, 1, "attribute");
        bool sensitive = cs && jv_truthy(cs);
        jv *out = as_view(jv_list(c->a, 0), "generator", true), *seen = jv_list(c->a, 0);
        for (size_t i = 0; i < items->u.list.n; i++) {
            jv *it = items->u.list.items[i];
            jv *key = sort_key(c, attr ? get_path(c, it, attr) : it, sensitive);
            if (key->type == JV_DICT || key->type == JV_NS || (jv_is_seq(key) && !key->u.list.tuple))
                rt_fail(c, "unhashable type: '%s'", jv_type_name(key));
            rt_step(c, seen->u.list.n + 1);
            if (rt_contains(c, seen, key)) continue;
            jv_list_push(c->a, seen, key);
            jv_list_push(c->a, out, it);
        }
        return out;
    }
    if (!strcmp(name, "sort") || !strcmp(name, "dictsort")) {
        bool dict = name[0] == 'd';
        jv *rev = arg_get(a, dict ? 2 : 0, "reverse"), *cs = arg_get(a, dict ? 0 : 1, "case_sensitive");
        jv *attr = dict ? NULL : arg_get(a, 2, "attribute"), *by = dict ? arg_get(a, 1, "by") : NULL;
        bool sensitive = cs && jv_truthy(cs);
        jv *items;
        if (dict) {
            if (v->type == JV_UNDEF) rt_undefined(c, v);
            if (v->type != JV_DICT) rt_fail(c, "dictsort needs a mapping");
            items = items_list(c, v);
        } else items = rt_iter(c, v);
        size_t n = items->u.list.n;
        jv **keys = ja_alloc(c->a, (n + 1) * sizeof(jv *)), **vals = ja_alloc(c->a, (n + 1) * sizeof(jv *));
        bool by_value = by && by->type == JV_STR && !strcmp(by->u.str.s, "value");
        for (size_t i = 0; i < n; i++) {
            jv *it = items->u.list.items[i];
            jv *k = dict ? it->u.list.items[by_value ? 1 : 0] : attr ? get_path(c, it, attr) : it;
            keys[i] = sort_key(c, k, sensitive);
            vals[i] = it;
        }
        sort_pairs(c, keys, vals, n, rev && jv_truthy(rev));
        jv *out = jv_list(c->a, n);
        if (n) memcpy(out->u.list.items, vals, n * sizeof(jv *));
        out->u.list.n = n;
        return out;
    }
    if (!strcmp(name, "reverse")) {
        if (v->type == JV_STR) {
            jv *chars = rt_iter(c, v);
            jbuf b;
            jb_init(&b, c->a, c->lim.max_output);
            jb_put(&b, "", 0);
            for (size_t i = chars->u.list.n; i-- > 0;) jv_write_str(&b, chars->u.list.items[i]);
            return jv_str_ref(c->a, b.p, b.len);
        }
        jv *items = rt_iter(c, v);
        jv *out = jv_list(c->a, items->u.list.n);
        for (size_t i = 0; i < items->u.list.n; i++) out->u.list.items[i] = items->u.list.items[items->u.list.n - 1 - i];
        out->u.list.n = items->u.list.n;
        return jv_is_seq(v) ? as_view(out, "list_reverseiterator", true) : out;
    }
    if (!strcmp(name, "sum")) {
        jv *items = rt_iter(c, v);
        jv *attr = arg_get(a, 0, "attribute"), *start = arg_get(a, 1, "start");
        jv *acc = start ? start : jv_int(c->a, 0);
        for (size_t i = 0; i < items->u.list.n; i++)
            acc = rt_binop(c, OP_ADD, acc, attr ? get_path(c, items->u.list.items[i], attr) : items->u.list.items[i]);
        return acc;
    }
    if (!strcmp(name, "min")) return f_minmax(c, v, a, false);
    if (!strcmp(name, "max")) return f_minmax(c, v, a, true);
    if (!strcmp(name, "attr")) {
        /* getattr only: a dict's keys are not attributes. */
        jv *n = need_str(c, arg_get(a, 0, "name"), "attr");
        if (v->type == JV_NS) return rt_getattr(c, v, n->u.str.s);
        jv *m = bi_method(c, v, n->u.str.s);
        return m ? m : jv_undef_named(c->a, "no such attribute");
    }
    if (!strcmp(name, "format")) return f_format(c, v, a);
    rt_fail(c, "no filter named '%s'", name);
}
