/*
 * eval.c - the tree-walking evaluator: scopes, expressions, statements,
 * loops and macro calls, with jinja2's semantics for undefined values
 * (printing, iterating and testing them is fine; using them otherwise is
 * an error) and the scoping rules templates depend on (a loop body and a
 * macro get their own scope; `if` does not; namespace() carries values
 * out of a loop).
 */
#include "chat/jinja.h"

#include "core/core.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- errors and limits ---- */

_Noreturn void rt_fail(rctx *c, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    jerr_throw(c->e, EM_ERR_INVALID_ARG, "%s", msg);
}

_Noreturn void rt_undefined(rctx *c, const jv *v) {
    rt_fail(c, "%s", v->u.undef_name ? v->u.undef_name : "a value is undefined");
}

void rt_step(rctx *c, uint64_t n) {
    c->steps += n;
    if (c->steps > c->lim.max_steps)
        rt_fail(c, "template took more than %llu steps", (unsigned long long)c->lim.max_steps);
}

static void enter(rctx *c) {
    if (++c->depth > c->lim.max_depth)
        rt_fail(c, "template recursion deeper than %d", c->lim.max_depth);
}
static void leave(rctx *c) { c->depth--; }

/* ---- scopes ---- */

static jscope *scope_new(rctx *c, jscope *parent) {
    jscope *s = ja_alloc(c->a, sizeof *s);
    s->parent = parent;
    return s;
}

static void scope_set(rctx *c, jscope *s, const char *name, jv *v) {
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->names[i], name)) {
            s->vals[i] = v;
            return;
        }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        const char **names = ja_alloc(c->a, cap * sizeof *names);
        jv **vals = ja_alloc(c->a, cap * sizeof *vals);
        if (s->n) {
            memcpy(names, s->names, s->n * sizeof *names);
            memcpy(vals, s->vals, s->n * sizeof *vals);
        }
        s->names = names;
        s->vals = vals;
        s->cap = cap;
    }
    s->names[s->n] = name;
    s->vals[s->n] = v;
    s->n++;
}

static jv *scope_get(jscope *s, const char *name) {
    for (; s; s = s->parent)
        for (size_t i = s->n; i-- > 0;)
            if (!strcmp(s->names[i], name)) return s->vals[i];
    return NULL;
}

/* ---- access ---- */

jv *arg_get(const jargs *args, size_t i, const char *name) {
    if (i < args->npos) return args->pos[i];
    for (size_t k = 0; name && k < args->nkw; k++)
        if (!strcmp(args->kwnames[k], name)) return args->kw[k];
    return NULL;
}

static jv *undef_attr(rctx *c, const jv *obj, const char *name) {
    char msg[200];
    snprintf(msg, sizeof msg, "'%s object' has no attribute '%.80s'", jv_type_name(obj), name);
    return jv_undef_named(c->a, ja_strndup(c->a, msg, strlen(msg)));
}

static jv *str_key(rctx *c, const char *name) { return jv_str_ref(c->a, name, strlen(name)); }

jv *rt_getattr(rctx *c, jv *obj, const char *name) {
    switch (obj->type) {
    case JV_UNDEF: rt_undefined(c, obj);
    case JV_DICT: {
        jv *m = bi_method(c, obj, name);
        if (m) return m;
        jv *v = jv_dict_get_str(obj, name);
        return v ? v : undef_attr(c, obj, name);
    }
    case JV_NS: {
        jv *v = jv_dict_get_str(obj, name);
        return v ? v : undef_attr(c, obj, name);
    }
    case JV_STR:
    case JV_LIST: {
        jv *m = bi_method(c, obj, name);
        return m ? m : undef_attr(c, obj, name);
    }
    default: return undef_attr(c, obj, name);
    }
}

static bool as_index(const jv *k, int64_t *out) {
    if (k->type == JV_INT) { *out = k->u.i; return true; }
    if (k->type == JV_BOOL) { *out = k->u.b; return true; }
    return false;
}

jv *rt_getitem(rctx *c, jv *obj, jv *key) {
    if (obj->type == JV_UNDEF) rt_undefined(c, obj);
    if (key->type == JV_UNDEF && obj->type != JV_DICT) rt_undefined(c, key);
    int64_t i;
    switch (obj->type) {
    case JV_DICT: {
        jv *v = jv_dict_get(obj, key);
        if (v) return v;
        break;
    }
    case JV_NS: {
        jv *v = key->type == JV_STR ? jv_dict_get(obj, key) : NULL;
        if (v) return v;
        break;
    }
    case JV_LIST:
        if (!obj->u.list.view && as_index(key, &i)) {
            int64_t n = (int64_t)obj->u.list.n;
            if (i < 0) i += n;
            if (i >= 0 && i < n) return obj->u.list.items[i];
            return jv_undef_named(c->a, "list index out of range");
        }
        break;
    case JV_STR:
        if (as_index(key, &i)) {
            int64_t n = (int64_t)utf8_len(obj->u.str.s, obj->u.str.len);
            if (i < 0) i += n;
            if (i >= 0 && i < n) {
                size_t b = utf8_offset(obj->u.str.s, obj->u.str.len, (size_t)i);
                size_t e = utf8_offset(obj->u.str.s, obj->u.str.len, (size_t)i + 1);
                return jv_str_ref(c->a, ja_strndup(c->a, obj->u.str.s + b, e - b), e - b);
            }
            return jv_undef_named(c->a, "string index out of range");
        }
        break;
    default:
        break;
    }
    if (key->type == JV_STR && obj->type != JV_NS) return rt_getattr(c, obj, key->u.str.s);
    if (key->type == JV_STR) return undef_attr(c, obj, key->u.str.s);
    char msg[120];
    snprintf(msg, sizeof msg, "'%s object' has no element of type %s", jv_type_name(obj), jv_type_name(key));
    return jv_undef_named(c->a, ja_strndup(c->a, msg, strlen(msg)));
}

jv *rt_iter(rctx *c, jv *v) {
    switch (v->type) {
    case JV_UNDEF: return jv_list(c->a, 0);
    case JV_LIST:
        if (v->u.list.once) {
            /* A generator: this iteration uses it up. */
            jv *l = jv_list(c->a, v->u.list.n);
            if (v->u.list.n) memcpy(l->u.list.items, v->u.list.items, v->u.list.n * sizeof(jv *));
            l->u.list.n = v->u.list.n;
            v->u.list.n = 0;
            return l;
        }
        return v;
    case JV_DICT: {
        jv *l = jv_list(c->a, v->u.dict.n);
        for (size_t i = 0; i < v->u.dict.n; i++) l->u.list.items[i] = v->u.dict.keys[i];
        l->u.list.n = v->u.dict.n;
        return l;
    }
    case JV_STR: {
        size_t n = utf8_len(v->u.str.s, v->u.str.len);
        jv *l = jv_list(c->a, n);
        size_t b = 0;
        for (size_t i = 0; i < n; i++) {
            size_t e = b + 1;
            while (e < v->u.str.len && ((unsigned char)v->u.str.s[e] & 0xC0) == 0x80) e++;
            l->u.list.items[i] = jv_str_ref(c->a, ja_strndup(c->a, v->u.str.s + b, e - b), e - b);
            b = e;
        }
        l->u.list.n = n;
        return l;
    }
    default: rt_fail(c, "'%s' object is not iterable", jv_type_name(v));
    }
}

bool rt_contains(rctx *c, jv *container, jv *item) {
    switch (container->type) {
    case JV_UNDEF: return false;
    case JV_STR:
        if (item->type == JV_UNDEF) rt_undefined(c, item);
        if (item->type != JV_STR)
            rt_fail(c, "'in <string>' requires string as left operand, not %s", jv_type_name(item));
        if (item->u.str.len == 0) return true;
        return memmem(container->u.str.s, container->u.str.len, item->u.str.s, item->u.str.len) != NULL;
    case JV_LIST:
        for (size_t i = 0; i < container->u.list.n; i++)
            if (jv_equal(container->u.list.items[i], item)) return true;
        return false;
    case JV_DICT:
        if (item->type == JV_DICT || item->type == JV_NS || (jv_is_seq(item) && !item->u.list.tuple))
            rt_fail(c, "unhashable type: '%s'", jv_type_name(item));
        return jv_dict_get(container, item) != NULL;
    default: rt_fail(c, "argument of type '%s' is not iterable", jv_type_name(container));
    }
}

/* ---- arithmetic ---- */

static jv *concat_seq(rctx *c, jv *l, jv *r) {
    jv *out = jv_list(c->a, l->u.list.n + r->u.list.n);
    if (l->u.list.n) memcpy(out->u.list.items, l->u.list.items, l->u.list.n * sizeof(jv *));
    if (r->u.list.n) memcpy(out->u.list.items + l->u.list.n, r->u.list.items, r->u.list.n * sizeof(jv *));
    out->u.list.n = l->u.list.n + r->u.list.n;
    out->u.list.tuple = l->u.list.tuple;
    return out;
}

static jv *repeat(rctx *c, jv *seq, int64_t times) {
    if (times < 0) times = 0;
    if (seq->type == JV_STR) {
        uint64_t total;
        if (!em_mul_ok(seq->u.str.len, (uint64_t)times, &total) || total > c->lim.max_output)
            rt_fail(c, "string repetition longer than %zu bytes", c->lim.max_output);
        char *p = ja_alloc(c->a, total + 1);
        for (int64_t i = 0; i < times; i++) memcpy(p + (size_t)i * seq->u.str.len, seq->u.str.s, seq->u.str.len);
        jv *out = jv_str_ref(c->a, p, total);
        out->u.str.markup = seq->u.str.markup;
        return out;
    }
    uint64_t total;
    if (!em_mul_ok(seq->u.list.n, (uint64_t)times, &total) || total > (1u << 24))
        rt_fail(c, "list repetition too long");
    rt_step(c, total);
    jv *out = jv_list(c->a, total);
    for (int64_t i = 0; i < times; i++)
        for (size_t k = 0; k < seq->u.list.n; k++) out->u.list.items[out->u.list.n++] = seq->u.list.items[k];
    out->u.list.tuple = seq->u.list.tuple;
    return out;
}

static const char *op_sym(jop op) {
    static const char *const s[] = {"+", "-", "*", "/", "//", "%", "**", "==", "!=", "<", "<=", ">", ">=", "in", "not in"};
    return s[op];
}

static int64_t int_of(const jv *v) { return v->type == JV_BOOL ? v->u.b : v->u.i; }

jv *rt_binop(rctx *c, jop op, jv *l, jv *r) {
    if (op == OP_MOD && l->type == JV_STR) return bi_percent_format(c, l, r);
    if (l->type == JV_UNDEF) rt_undefined(c, l);
    if (r->type == JV_UNDEF) rt_undefined(c, r);
    bool ln = jv_is_number(l), rn = jv_is_number(r);
    if (ln && rn) {
        bool ints = l->type != JV_FLOAT && r->type != JV_FLOAT;
        int64_t a = ints ? int_of(l) : 0, b = ints ? int_of(r) : 0, res;
        double x = jv_as_double(l), y = jv_as_double(r);
        switch (op) {
        case OP_ADD:
            if (!ints) return jv_float(c->a, x + y);
            if (__builtin_add_overflow(a, b, &res)) rt_fail(c, "integer overflow");
            return jv_int(c->a, res);
        case OP_SUB:
            if (!ints) return jv_float(c->a, x - y);
            if (__builtin_sub_overflow(a, b, &res)) rt_fail(c, "integer overflow");
            return jv_int(c->a, res);
        case OP_MUL:
            if (!ints) return jv_float(c->a, x * y);
            if (__builtin_mul_overflow(a, b, &res)) rt_fail(c, "integer overflow");
            return jv_int(c->a, res);
        case OP_DIV:
            if (y == 0.0) rt_fail(c, "division by zero");
            return jv_float(c->a, x / y);
        case OP_FLOORDIV:
        case OP_MOD:
            if (ints) {
                if (b == 0) rt_fail(c, "integer division or modulo by zero");
                if (a == INT64_MIN && b == -1) rt_fail(c, "integer overflow");
                int64_t q = a / b, m = a % b;
                if (m != 0 && ((m < 0) != (b < 0))) { q--; m += b; }
                return jv_int(c->a, op == OP_MOD ? m : q);
            } else {
                if (y == 0.0) rt_fail(c, "float division by zero");
                double m = fmod(x, y);
                if (m != 0 && ((m < 0) != (y < 0))) m += y;
                if (op == OP_MOD) return jv_float(c->a, m);
                return jv_float(c->a, floor(x / y));
            }
        case OP_POW:
            if (ints && b >= 0) {
                int64_t acc = 1;
                for (int64_t k = 0; k < b; k++) {
                    if (__builtin_mul_overflow(acc, a, &acc)) rt_fail(c, "integer overflow");
                    if (acc == 0 || acc == 1) break;
                }
                return jv_int(c->a, acc);
            }
            return jv_float(c->a, pow(x, y));
        default: break;
        }
    }
    if (op == OP_ADD && l->type == JV_STR && r->type == JV_STR) {
        /* Markup + str escapes the str (and str + Markup too). */
        bool markup = l->u.str.markup || r->u.str.markup;
        if (markup) {
            l = jv_escape(c->a, l);
            r = jv_escape(c->a, r);
        }
        uint64_t total = (uint64_t)l->u.str.len + r->u.str.len;
        if (total > c->lim.max_output) rt_fail(c, "string longer than %zu bytes", c->lim.max_output);
        char *p = ja_alloc(c->a, total + 1);
        memcpy(p, l->u.str.s, l->u.str.len);
        memcpy(p + l->u.str.len, r->u.str.s, r->u.str.len);
        jv *out = jv_str_ref(c->a, p, total);
        out->u.str.markup = markup;
        return out;
    }
    if (op == OP_ADD && jv_is_seq(l) && jv_is_seq(r) && l->u.list.tuple == r->u.list.tuple)
        return concat_seq(c, l, r);
    if (op == OP_MUL && (l->type == JV_STR || jv_is_seq(l)) && (r->type == JV_INT || r->type == JV_BOOL))
        return repeat(c, l, int_of(r));
    if (op == OP_MUL && (r->type == JV_STR || jv_is_seq(r)) && (l->type == JV_INT || l->type == JV_BOOL))
        return repeat(c, r, int_of(l));
    rt_fail(c, "unsupported operand type(s) for %s: '%s' and '%s'", op_sym(op), jv_type_name(l), jv_type_name(r));
}

static bool compare(rctx *c, jop op, jv *l, jv *r) {
    switch (op) {
    case OP_EQ: return jv_equal(l, r);
    case OP_NE: return !jv_equal(l, r);
    case OP_IN: return rt_contains(c, r, l);
    case OP_NOTIN: return !rt_contains(c, r, l);
    default: break;
    }
    if (l->type == JV_UNDEF) rt_undefined(c, l);
    if (r->type == JV_UNDEF) rt_undefined(c, r);
    bool ok;
    int k = jv_compare(l, r, &ok);
    if (!ok)
        rt_fail(c, "'%s' not supported between instances of '%s' and '%s'", op_sym(op), jv_type_name(l), jv_type_name(r));
    switch (op) {
    case OP_LT: return k < 0;
    case OP_LE: return k <= 0;
    case OP_GT: return k > 0;
    default: return k >= 0;
    }
}

/* Whether jinja2's optimizer folds e into a constant when it compiles the
 * template: literals and the operators, tests and filters over them (not
 * the filters that take the context, such as map and select). */
static bool is_const(const jexpr *e) {
    if (!e) return true;
    switch (e->kind) {
    case E_CONST: return true;
    case E_NAME:
    case E_CALL: return false;
    case E_FILTER:
        if (!strcmp(e->name, "map") || !strcmp(e->name, "select") || !strcmp(e->name, "reject") ||
            !strcmp(e->name, "selectattr") || !strcmp(e->name, "rejectattr"))
            return false;
        break;
    default: break;
    }
    if (!is_const(e->a) || !is_const(e->b) || !is_const(e->c)) return false;
    for (size_t i = 0; i < e->nargs; i++)
        if (!is_const(e->args[i])) return false;
    for (size_t i = 0; e->args2 && i < (e->kind == E_DICT ? e->nargs : e->nkw); i++)
        if (!is_const(e->args2[i])) return false;
    return true;
}

/* Python slice semantics on a list or string. */
static jv *slice(rctx *c, jv *obj, jv *start, jv *stop, jv *stepv) {
    /* jinja2 slices with Python's own subscription, not its getitem, so
     * slicing a number or a dict is an error, not an undefined value
     * (except where its constant folding got there first). */
    if (obj->type == JV_UNDEF) rt_undefined(c, obj);
    if (!jv_is_seq(obj) && obj->type != JV_STR) rt_fail(c, "'%s' object is not subscriptable", jv_type_name(obj));
    int64_t n = obj->type == JV_LIST ? (int64_t)obj->u.list.n : (int64_t)utf8_len(obj->u.str.s, obj->u.str.len);
    int64_t step = 1, lo, hi;
    if (stepv && stepv->type != JV_NONE) {
        if (!as_index(stepv, &step)) rt_fail(c, "slice indices must be integers or None");
        if (step == 0) rt_fail(c, "slice step cannot be zero");
    }
    int64_t def_lo = step > 0 ? 0 : n - 1, def_hi = step > 0 ? n : -1;
    if (!start || start->type == JV_NONE) lo = def_lo;
    else {
        if (!as_index(start, &lo)) rt_fail(c, "slice indices must be integers or None");
        if (lo < 0) lo += n;
        if (lo < 0) lo = step > 0 ? 0 : -1;
        if (lo >= n) lo = step > 0 ? n : n - 1;
    }
    if (!stop || stop->type == JV_NONE) hi = def_hi;
    else {
        if (!as_index(stop, &hi)) rt_fail(c, "slice indices must be integers or None");
        if (hi < 0) hi += n;
        if (hi < 0) hi = step > 0 ? 0 : -1;
        if (hi >= n) hi = step > 0 ? n : n - 1;
    }
    jv *items = obj->type == JV_LIST ? obj : rt_iter(c, obj);
    jv *out = jv_list(c->a, 0);
    for (int64_t i = lo; step > 0 ? i < hi : i > hi; i += step) jv_list_push(c->a, out, items->u.list.items[i]);
    rt_step(c, out->u.list.n);
    if (obj->type == JV_LIST) {
        out->u.list.tuple = obj->u.list.tuple;
        return out;
    }
    jbuf b;
    jb_init(&b, c->a, c->lim.max_output);
    jb_put(&b, "", 0);
    for (size_t i = 0; i < out->u.list.n; i++) jb_put(&b, out->u.list.items[i]->u.str.s, out->u.list.items[i]->u.str.len);
    return jv_str_ref(c->a, b.p ? b.p : "", b.len);
}

/* ---- expressions ---- */

static jv *eval(rctx *c, jscope *s, const jexpr *e);

static void eval_args(rctx *c, jscope *s, const jexpr *e, jargs *out) {
    memset(out, 0, sizeof *out);
    out->npos = e->nargs;
    if (e->nargs) {
        out->pos = ja_alloc(c->a, e->nargs * sizeof(jv *));
        for (size_t i = 0; i < e->nargs; i++) out->pos[i] = eval(c, s, e->args[i]);
    }
    out->nkw = e->nkw;
    out->kwnames = e->kwnames;
    if (e->nkw) {
        out->kw = ja_alloc(c->a, e->nkw * sizeof(jv *));
        for (size_t i = 0; i < e->nkw; i++) out->kw[i] = eval(c, s, e->args2[i]);
    }
}

/* A filter chain parsed on a NULL base, applied to v. */
static jv *apply_filters(rctx *c, jscope *s, const jexpr *f, jv *v) {
    if (!f) return v;
    v = apply_filters(c, s, f->a, v);
    jargs args;
    eval_args(c, s, f, &args);
    return bi_filter(c, f->name, v, &args);
}

static jv *eval(rctx *c, jscope *s, const jexpr *e) {
    enter(c);
    jv *v = NULL;
    switch (e->kind) {
    case E_CONST: v = e->value; break;
    case E_NAME:
        v = scope_get(s, e->name);
        if (!v) {
            char msg[160];
            snprintf(msg, sizeof msg, "'%.100s' is undefined", e->name);
            v = jv_undef_named(c->a, ja_strndup(c->a, msg, strlen(msg)));
        }
        break;
    case E_LIST:
    case E_TUPLE:
        v = jv_list(c->a, e->nargs);
        for (size_t i = 0; i < e->nargs; i++) v->u.list.items[i] = eval(c, s, e->args[i]);
        v->u.list.n = e->nargs;
        v->u.list.tuple = e->kind == E_TUPLE;
        break;
    case E_DICT:
        v = jv_dict(c->a, JV_DICT);
        for (size_t i = 0; i < e->nargs; i++) {
            jv *k = eval(c, s, e->args[i]);
            if (k->type == JV_LIST && !k->u.list.tuple) rt_fail(c, "unhashable type: 'list'");
            if (k->type == JV_DICT) rt_fail(c, "unhashable type: 'dict'");
            jv_dict_set(c->a, v, k, eval(c, s, e->args2[i]));
        }
        break;
    case E_ATTR: v = rt_getattr(c, eval(c, s, e->a), e->name); break;
    case E_ITEM: {
        jv *obj = eval(c, s, e->a);
        v = rt_getitem(c, obj, eval(c, s, e->b));
        break;
    }
    case E_SLICE: {
        jv *obj = eval(c, s, e->a);
        jv *lo = e->b ? eval(c, s, e->b) : NULL;
        jv *hi = e->c ? eval(c, s, e->c) : NULL;
        jv *st = e->args[0] ? eval(c, s, e->args[0]) : NULL;
        /* jinja2 tries to compute a constant {{ output }} when it compiles
         * the template, with its getitem, where a slice that fails gives
         * an undefined value; at run time the same slice is an error. */
        bool ints = (!lo || lo->type == JV_INT || lo->type == JV_BOOL || lo->type == JV_NONE) &&
                    (!hi || hi->type == JV_INT || hi->type == JV_BOOL || hi->type == JV_NONE) &&
                    (!st || st->type == JV_INT || st->type == JV_BOOL || st->type == JV_NONE);
        if ((!(jv_is_seq(obj) || obj->type == JV_STR) || !ints) && obj->type != JV_UNDEF && c->const_output)
            v = jv_undef_named(c->a, "a constant that cannot be sliced");
        else v = slice(c, obj, lo, hi, st);
        break;
    }
    case E_CALL: {
        jv *fn = eval(c, s, e->a);
        jargs args;
        eval_args(c, s, e, &args);
        v = rt_call(c, fn, &args, NULL);
        break;
    }
    case E_FILTER: {
        jv *base = eval(c, s, e->a);
        jargs args;
        eval_args(c, s, e, &args);
        v = bi_filter(c, e->name, base, &args);
        break;
    }
    case E_TEST: {
        jv *base = eval(c, s, e->a);
        jargs args;
        eval_args(c, s, e, &args);
        bool r = bi_test(c, e->name, base, &args);
        v = jv_bool(e->negate ? !r : r);
        break;
    }
    case E_NOT: v = jv_bool(!jv_truthy(eval(c, s, e->a))); break;
    case E_NEG:
    case E_POS: {
        jv *x = eval(c, s, e->a);
        if (x->type == JV_UNDEF) rt_undefined(c, x);
        if (!jv_is_number(x)) rt_fail(c, "bad operand type for unary %s: '%s'", e->kind == E_NEG ? "-" : "+", jv_type_name(x));
        if (e->kind == E_POS) v = x->type == JV_BOOL ? jv_int(c->a, x->u.b) : x;
        else if (x->type == JV_FLOAT) v = jv_float(c->a, -x->u.f);
        else {
            int64_t i = int_of(x);
            if (i == INT64_MIN) rt_fail(c, "integer overflow");
            v = jv_int(c->a, -i);
        }
        break;
    }
    case E_BIN: {
        jv *l = eval(c, s, e->a);
        v = rt_binop(c, e->op, l, eval(c, s, e->b));
        break;
    }
    case E_CONCAT: {
        jbuf b;
        jb_init(&b, c->a, c->lim.max_output);
        jb_put(&b, "", 0);
        for (size_t i = 0; i < e->nargs; i++) jv_write_str(&b, eval(c, s, e->args[i]));
        v = jv_str_ref(c->a, b.p ? b.p : "", b.len);
        break;
    }
    case E_AND: {
        jv *l = eval(c, s, e->a);
        v = jv_truthy(l) ? eval(c, s, e->b) : l;
        break;
    }
    case E_OR: {
        jv *l = eval(c, s, e->a);
        v = jv_truthy(l) ? l : eval(c, s, e->b);
        break;
    }
    case E_COMPARE: {
        jv *l = eval(c, s, e->args[0]);
        v = JV_TRUE;
        for (size_t i = 1; i < e->nargs; i++) {
            jv *r = eval(c, s, e->args[i]);
            if (!compare(c, e->ops[i - 1], l, r)) {
                v = JV_FALSE;
                break;
            }
            l = r;
        }
        break;
    }
    case E_COND:
        if (jv_truthy(eval(c, s, e->b))) v = eval(c, s, e->a);
        else v = e->c ? eval(c, s, e->c) : jv_undef_named(c->a, "the conditional expression had no else branch");
        break;
    }
    leave(c);
    return v;
}

/* ---- statements ---- */

static void exec_body(rctx *c, jscope *s, const jbody *b);

/* Renders a body into a string of its own (macros, set blocks, filters). */
static jv *capture(rctx *c, jscope *s, const jbody *b) {
    jbuf buf, *saved = c->out;
    jb_init(&buf, c->a, c->lim.max_output);
    jb_put(&buf, "", 0);
    c->out = &buf;
    exec_body(c, s, b);
    c->out = saved;
    return jv_str_ref(c->a, buf.p ? buf.p : "", buf.len);
}

static void bind_targets(rctx *c, jscope *s, const char **names, size_t n, jv *v) {
    if (n == 1) {
        scope_set(c, s, names[0], v);
        return;
    }
    jv *items = v->type == JV_LIST ? v : rt_iter(c, v);
    if (items->u.list.n != n)
        rt_fail(c, "cannot unpack %zu values into %zu names", items->u.list.n, n);
    for (size_t i = 0; i < n; i++) scope_set(c, s, names[i], items->u.list.items[i]);
}

static void set_loop(rctx *c, jscope *s, jv *items, size_t i) {
    size_t n = items->u.list.n;
    jv *loop = jv_dict(c->a, JV_NS);
    jv_dict_set(c->a, loop, str_key(c, "index"), jv_int(c->a, (int64_t)i + 1));
    jv *index0 = jv_int(c->a, (int64_t)i);
    jv_dict_set(c->a, loop, str_key(c, "index0"), index0);
    jv_dict_set(c->a, loop, str_key(c, "cycle"), bi_loop_cycle(c, index0));
    jv_dict_set(c->a, loop, str_key(c, "revindex"), jv_int(c->a, (int64_t)(n - i)));
    jv_dict_set(c->a, loop, str_key(c, "revindex0"), jv_int(c->a, (int64_t)(n - i - 1)));
    jv_dict_set(c->a, loop, str_key(c, "first"), jv_bool(i == 0));
    jv_dict_set(c->a, loop, str_key(c, "last"), jv_bool(i + 1 == n));
    jv_dict_set(c->a, loop, str_key(c, "length"), jv_int(c->a, (int64_t)n));
    jv_dict_set(c->a, loop, str_key(c, "depth"), jv_int(c->a, 1));
    jv_dict_set(c->a, loop, str_key(c, "depth0"), jv_int(c->a, 0));
    if (i > 0) jv_dict_set(c->a, loop, str_key(c, "previtem"), items->u.list.items[i - 1]);
    if (i + 1 < n) jv_dict_set(c->a, loop, str_key(c, "nextitem"), items->u.list.items[i + 1]);
    scope_set(c, s, "loop", loop);
}

static void exec_for(rctx *c, jscope *s, const jstmt *st) {
    jv *items = rt_iter(c, eval(c, s, st->expr));
    if (st->cond) {
        jv *kept = jv_list(c->a, 0);
        for (size_t i = 0; i < items->u.list.n; i++) {
            rt_step(c, 1);
            jscope *fs = scope_new(c, s);
            bind_targets(c, fs, st->names, st->nnames, items->u.list.items[i]);
            if (jv_truthy(eval(c, fs, st->cond))) jv_list_push(c->a, kept, items->u.list.items[i]);
        }
        items = kept;
    }
    if (items->u.list.n == 0) {
        exec_body(c, s, &st->else_body);
        return;
    }
    for (size_t i = 0; i < items->u.list.n; i++) {
        rt_step(c, 1);
        jscope *ls = scope_new(c, s);
        bind_targets(c, ls, st->names, st->nnames, items->u.list.items[i]);
        set_loop(c, ls, items, i);
        exec_body(c, ls, &st->body);
        if (c->loop_ctl == 1) {
            c->loop_ctl = 0;
            break;
        }
        c->loop_ctl = 0;
    }
}

static void exec_set(rctx *c, jscope *s, const jstmt *st, jv *v) {
    if (st->attr) {
        jv *ns = scope_get(s, st->names[0]);
        if (!ns || ns->type != JV_NS) rt_fail(c, "cannot assign attribute on non-namespace object");
        jv_dict_set(c->a, ns, jv_str_ref(c->a, st->attr, strlen(st->attr)), v);
        return;
    }
    bind_targets(c, s, st->names, st->nnames, v);
}

static jv *make_macro(rctx *c, const jmacro *m, jscope *s) {
    jv *v = ja_alloc(c->a, sizeof *v);
    v->type = JV_MACRO;
    v->u.macro.m = m;
    v->u.macro.scope = s;
    return v;
}

static void exec_stmt(rctx *c, jscope *s, const jstmt *st) {
    rt_step(c, 1);
    switch (st->kind) {
    case S_TEXT: jb_put(c->out, st->text, st->len); break;
    case S_OUTPUT: {
        c->const_output = is_const(st->expr);
        jv *v = eval(c, s, st->expr);
        c->const_output = false;
        jv_write_str(c->out, v);
        break;
    }
    case S_IF:
        if (jv_truthy(eval(c, s, st->expr))) exec_body(c, s, &st->body);
        else exec_body(c, s, &st->else_body);
        break;
    case S_FOR: exec_for(c, s, st); break;
    case S_SET: exec_set(c, s, st, eval(c, s, st->expr)); break;
    case S_SET_BLOCK: {
        jv *v = capture(c, scope_new(c, s), &st->body);
        exec_set(c, s, st, apply_filters(c, s, st->filter, v));
        break;
    }
    case S_FILTER_BLOCK: {
        jv *v = capture(c, scope_new(c, s), &st->body);
        jv_write_str(c->out, apply_filters(c, s, st->filter, v));
        break;
    }
    case S_MACRO: scope_set(c, s, st->macro->name, make_macro(c, st->macro, s)); break;
    case S_CALL_BLOCK: {
        jv *fn = eval(c, s, st->expr->a);
        jargs args;
        eval_args(c, s, st->expr, &args);
        jv_write_str(c->out, rt_call(c, fn, &args, make_macro(c, st->macro, s)));
        break;
    }
    case S_BLOCK: exec_body(c, s, &st->body); break;
    case S_WITH: {
        /* Values are computed in the outer scope, then bound in the new one. */
        jscope *ws = scope_new(c, s);
        for (size_t i = 0; i < st->nnames; i++) scope_set(c, ws, st->names[i], eval(c, s, st->expr->args[i]));
        exec_body(c, ws, &st->body);
        break;
    }
    case S_BREAK: c->loop_ctl = 1; break;
    case S_CONTINUE: c->loop_ctl = 2; break;
    }
}

static void exec_body(rctx *c, jscope *s, const jbody *b) {
    enter(c);
    for (size_t i = 0; i < b->n && !c->loop_ctl; i++) exec_stmt(c, s, b->items[i]);
    leave(c);
}

/* ---- calls ---- */

static jv *call_macro(rctx *c, jv *fn, const jargs *args, jv *caller) {
    const jmacro *m = fn->u.macro.m;
    enter(c);
    rt_step(c, 1);
    jscope *s = scope_new(c, fn->u.macro.scope);
    jv *varargs = jv_list(c->a, 0);
    varargs->u.list.tuple = true;
    jv *kwargs = jv_dict(c->a, JV_DICT);
    if (caller && !m->uses_caller)
        rt_fail(c, "macro '%s' was invoked with two values for the special caller argument", m->name);
    if (args->npos > m->nparams && !m->uses_varargs)
        rt_fail(c, "macro '%s' takes not more than %zu argument(s)", m->name, m->nparams);
    for (size_t i = 0; i < args->npos; i++)
        if (i >= m->nparams) jv_list_push(c->a, varargs, args->pos[i]);
    for (size_t k = 0; k < args->nkw; k++) {
        bool param = false;
        for (size_t i = 0; i < m->nparams; i++)
            if (!strcmp(m->params[i], args->kwnames[k])) {
                if (i < args->npos) rt_fail(c, "macro '%s' got multiple values for argument '%s'", m->name, m->params[i]);
                param = true;
            }
        if (!param && !m->uses_kwargs)
            rt_fail(c, "macro '%s' takes no keyword argument '%s'", m->name, args->kwnames[k]);
        if (!param) jv_dict_set(c->a, kwargs, str_key(c, args->kwnames[k]), args->kw[k]);
    }
    for (size_t i = 0; i < m->nparams; i++) {
        jv *v = arg_get(args, i, NULL);
        for (size_t k = 0; !v && k < args->nkw; k++)
            if (!strcmp(args->kwnames[k], m->params[i])) v = args->kw[k];
        if (!v && m->defaults[i]) v = eval(c, s, m->defaults[i]);
        if (!v) {
            char msg[160];
            snprintf(msg, sizeof msg, "parameter '%.60s' was not provided", m->params[i]);
            v = jv_undef_named(c->a, ja_strndup(c->a, msg, strlen(msg)));
        }
        scope_set(c, s, m->params[i], v);
    }
    scope_set(c, s, "varargs", varargs);
    scope_set(c, s, "kwargs", kwargs);
    if (caller) scope_set(c, s, "caller", caller);
    int saved_ctl = c->loop_ctl;
    c->loop_ctl = 0;
    jv *out = capture(c, s, &m->body);
    c->loop_ctl = saved_ctl;
    leave(c);
    return out;
}

jv *rt_call(rctx *c, jv *fn, const jargs *args, jv *caller) {
    switch (fn->type) {
    case JV_MACRO: return call_macro(c, fn, args, caller);
    case JV_FUNC: return bi_call_func(c, fn, args);
    case JV_UNDEF: rt_undefined(c, fn);
    default: rt_fail(c, "'%s' object is not callable", jv_type_name(fn));
    }
}

/* ---- entry ---- */

em_status jinja_render(const jtemplate *t, jarena *a, jv *globals, const em_chat_limits *limits,
                       jerr *e, char **out) {
    rctx c;
    memset(&c, 0, sizeof c);
    c.a = a;
    c.e = e;
    c.lim = *limits;
    *out = NULL;
    if (setjmp(e->jb)) return e->status;
    jscope *g = scope_new(&c, NULL);
    bi_add_globals(&c, globals);
    for (size_t i = 0; i < globals->u.dict.n; i++) {
        jv *k = globals->u.dict.keys[i];
        if (k->type == JV_STR) scope_set(&c, g, k->u.str.s, globals->u.dict.vals[i]);
    }
    jscope *top = scope_new(&c, g);
    jbuf buf;
    jb_init(&buf, a, c.lim.max_output);
    jb_put(&buf, "", 0);
    c.out = &buf;
    exec_body(&c, top, &t->body);
    char *s = malloc(buf.len + 1);
    if (!s) jerr_throw(e, EM_ERR_NOMEM, "out of memory");
    memcpy(s, buf.p ? buf.p : "", buf.len);
    s[buf.len] = 0;
    *out = s;
    return EM_OK;
}
