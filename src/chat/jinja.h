/*
 * jinja.h - the insides of ember's Jinja-subset interpreter: values, the
 * arena they live in, the syntax tree, and the entry points of the lexer,
 * parser and evaluator.  Only src/chat includes it.
 *
 * Every value and syntax node lives in an arena that is freed at once, so
 * that values can be shared by pointer without reference counting.  Errors
 * unwind with longjmp to the function that owns the arena (template parse
 * or one render), which frees everything; nothing between holds a
 * resource of its own.
 */
#ifndef EM_CHAT_JINJA_H
#define EM_CHAT_JINJA_H

#include "chat/chat.h"

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- errors and the arena ---- */

typedef struct jerr {
    jmp_buf jb;
    em_status status;
    char msg[512];
} jerr;

/* Records the message and unwinds to the owner of `e`. */
_Noreturn void jerr_throw(jerr *e, em_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

typedef struct jchunk jchunk;
typedef struct jarena {
    jchunk *head;
    size_t used;    /* bytes handed out, all chunks together */
    size_t limit;   /* bytes allowed before the owner's error is thrown */
    jerr *err;
} jarena;

void *ja_alloc(jarena *a, size_t size);          /* zeroed, 16-aligned */
char *ja_strndup(jarena *a, const char *s, size_t n);
void ja_free(jarena *a);

/* ---- values ---- */

typedef enum jv_type {
    JV_UNDEF, JV_NONE, JV_BOOL, JV_INT, JV_FLOAT, JV_STR, JV_LIST, JV_DICT,
    JV_NS,      /* namespace(): a dict whose entries are set as attributes */
    JV_MACRO,   /* a macro, or the `caller` of a call block               */
    JV_FUNC     /* a built-in function, or a method bound to `self`        */
} jv_type;

typedef struct jv jv;
typedef struct jmacro jmacro;
typedef struct jscope jscope;

struct jv {
    jv_type type;
    union {
        bool b;
        int64_t i;
        double f;
        /* UTF-8, NUL-terminated; markup: a markupsafe.Markup (from |safe or
         * |escape), which escapes plain strings added to it. */
        struct { const char *s; size_t len; bool markup; } str;
        /* view: NULL for a list or tuple, else the Python type of a lazy
         * sequence jinja2 returns ("generator" from map/select/..., or
         * "dict_items" from dict.items()), which has no len() or
         * indexing and cannot be dumped as JSON; once: a generator, which
         * is used up by iterating it. */
        struct { jv **items; size_t n, cap; bool tuple; const char *view; bool once; } list;
        struct { jv **keys, **vals; size_t n, cap; } dict; /* insertion order */
        struct { const jmacro *m; jscope *scope; const jmacro *caller_body; jscope *caller_scope; } macro;
        struct { int id; jv *self; } fn;
        const char *undef_name;  /* what was undefined, for messages (may be NULL) */
    } u;
};

extern jv jv_undef_const, jv_none_const, jv_true_const, jv_false_const;
#define JV_UNDEFINED (&jv_undef_const)
#define JV_NONEV (&jv_none_const)
#define JV_TRUE (&jv_true_const)
#define JV_FALSE (&jv_false_const)

jv *jv_bool(bool b);
jv *jv_int(jarena *a, int64_t i);
jv *jv_float(jarena *a, double f);
jv *jv_str(jarena *a, const char *s, size_t len);   /* copies */
jv *jv_str_ref(jarena *a, const char *s, size_t len); /* s must outlive the value */
jv *jv_undef_named(jarena *a, const char *name);
jv *jv_list(jarena *a, size_t cap);
void jv_list_push(jarena *a, jv *list, jv *item);
jv *jv_dict(jarena *a, jv_type type);
void jv_dict_set(jarena *a, jv *dict, jv *key, jv *val);
jv *jv_dict_get(const jv *dict, const jv *key);            /* NULL when absent */
jv *jv_dict_get_str(const jv *dict, const char *key);

bool jv_truthy(const jv *v);
/* A list or tuple (not a generator or dict view). */
static inline bool jv_is_seq(const jv *v) { return v->type == JV_LIST && !v->u.list.view; }
/* HTML escaping as markupsafe.escape does it (a Markup comes back as is). */
jv *jv_escape(jarena *a, const jv *v);
bool jv_equal(const jv *a, const jv *b);
/* Python ordering; returns false (and *ok=false) for unorderable pairs. */
int jv_compare(const jv *a, const jv *b, bool *ok);
const char *jv_type_name(const jv *v);
bool jv_is_number(const jv *v);      /* int, float or bool (Python's Number) */
double jv_as_double(const jv *v);

/* A growing byte buffer in the arena, bounded by `limit`. */
typedef struct jbuf {
    char *p;
    size_t len, cap, limit;
    jarena *a;
} jbuf;
void jb_init(jbuf *b, jarena *a, size_t limit);
void jb_put(jbuf *b, const char *s, size_t n);
void jb_puts(jbuf *b, const char *s);
void jb_putc(jbuf *b, char c);

/* str(v), repr(v) and HF's tojson (json.dumps, ensure_ascii=False). */
void jv_write_str(jbuf *b, const jv *v);
void jv_write_repr(jbuf *b, const jv *v);
/* indent < 0: no indentation (", " and ": " separators). */
void jv_write_json(jbuf *b, const jv *v, int indent, int level);
void jv_write_float(jbuf *b, double f);        /* Python's repr(float) */
jv *jv_to_str(jarena *a, const jv *v);          /* str(v) as a JV_STR */

/* A jansson value converted into the arena (NULL converts to undefined). */
jv *jv_from_json(jarena *a, const json_t *j, int depth);
/* The arena value as jansson (for tool calls and tests); NULL on failure. */
json_t *jv_to_json(const jv *v);

/* UTF-8 helpers: code points in a valid string, byte offset of the n-th. */
size_t utf8_len(const char *s, size_t n);
size_t utf8_offset(const char *s, size_t n, size_t index);
bool utf8_valid(const char *s, size_t n);

/* ---- syntax tree ---- */

typedef enum jexpr_kind {
    E_CONST, E_NAME, E_LIST, E_TUPLE, E_DICT, E_ATTR, E_ITEM, E_SLICE,
    E_CALL, E_FILTER, E_TEST, E_NOT, E_NEG, E_POS, E_BIN, E_AND, E_OR,
    E_COMPARE, E_COND, E_CONCAT
} jexpr_kind;

typedef enum jop {
    OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW,
    OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN
} jop;

typedef struct jexpr jexpr;
struct jexpr {
    jexpr_kind kind;
    int line, col;
    jv *value;          /* E_CONST */
    const char *name;   /* E_NAME, E_ATTR, E_FILTER, E_TEST */
    jexpr *a, *b, *c;   /* operands; E_SLICE: a[b:c:args[0]] */
    jexpr **args;       /* list/tuple items, dict keys, call/filter/test args, compare operands */
    jexpr **args2;      /* dict values, keyword-argument values */
    const char **kwnames;
    size_t nargs, nkw;
    jop op;
    jop *ops;           /* E_COMPARE: nargs-1 operators */
    bool negate;        /* E_TEST: `is not` */
};

typedef enum jstmt_kind {
    S_TEXT, S_OUTPUT, S_IF, S_FOR, S_SET, S_SET_BLOCK, S_MACRO, S_CALL_BLOCK,
    S_FILTER_BLOCK, S_BREAK, S_CONTINUE, S_BLOCK /* a plain body (generation) */,
    S_WITH /* names[i] = args of expr (an E_TUPLE of values), in a scope of its own */
} jstmt_kind;

typedef struct jstmt jstmt;
typedef struct jbody {
    jstmt **items;
    size_t n, cap;
} jbody;

struct jstmt {
    jstmt_kind kind;
    int line, col;
    const char *text;     /* S_TEXT */
    size_t len;
    jexpr *expr;          /* output value, if condition, for iterable, set value, call */
    jexpr *cond;          /* S_FOR: `if` filter */
    jexpr *filter;        /* S_FILTER_BLOCK / set block filter: E_FILTER chain on a NULL base */
    jbody body, else_body;
    const char **names;   /* for targets, set targets; [0] with attr for `set ns.x` */
    size_t nnames;
    const char *attr;     /* S_SET/S_SET_BLOCK: `set names[0].attr = ...` */
    jmacro *macro;        /* S_MACRO, S_CALL_BLOCK (the caller body) */
};

struct jmacro {
    const char *name;
    const char **params;
    jexpr **defaults;     /* NULL entries: required */
    size_t nparams;
    jbody body;
    /* Whether the body names caller, varargs or kwargs: jinja2 accepts a
     * call block, extra positional or unknown keyword arguments only then. */
    bool uses_caller, uses_varargs, uses_kwargs;
};

typedef struct jtemplate {
    jarena arena;
    jbody body;
} jtemplate;

/* ---- evaluation (eval.c, builtins.c) ---- */

struct jscope {
    jscope *parent;
    const char **names;
    jv **vals;
    size_t n, cap;
};

typedef struct rctx {
    jarena *a;
    jerr *e;
    em_chat_limits lim;
    jbuf *out;          /* where output statements write now */
    uint64_t steps;
    int depth;
    int loop_ctl;       /* 1 after break, 2 after continue, until the loop sees it */
    bool const_output;  /* evaluating a {{ }} that jinja2 computes when compiling */
} rctx;

/* Evaluated call arguments: positional values, then keyword names/values. */
typedef struct jargs {
    jv **pos;
    size_t npos;
    const char **kwnames;
    jv **kw;
    size_t nkw;
} jargs;

_Noreturn void rt_fail(rctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Throws the error an undefined value carries (it was used as a value). */
_Noreturn void rt_undefined(rctx *c, const jv *v);
void rt_step(rctx *c, uint64_t n);

/* Argument `i` (or keyword `name`), NULL when not given. */
jv *arg_get(const jargs *args, size_t i, const char *name);

/* Attribute and item access with jinja2's fallbacks. */
jv *rt_getattr(rctx *c, jv *obj, const char *name);
jv *rt_getitem(rctx *c, jv *obj, jv *key);
/* Iterates a value as a list (dict keys, string characters). */
jv *rt_iter(rctx *c, jv *v);
jv *rt_call(rctx *c, jv *fn, const jargs *args, jv *caller);
bool rt_contains(rctx *c, jv *container, jv *item);
jv *rt_binop(rctx *c, jop op, jv *l, jv *r);

/* Whether a filter or test exists (jinja2 rejects unknown ones when it
 * compiles a template, so the parser does too). */
bool jinja_has_filter(const char *name);
bool jinja_has_test(const char *name);

/* Python's `fmt % args` for %s, %r, %d, %i and %%. */
jv *bi_percent_format(rctx *c, jv *fmt, jv *args);
jv *bi_filter(rctx *c, const char *name, jv *v, const jargs *args);
bool bi_test(rctx *c, const char *name, jv *v, const jargs *args);
/* A method of a str, dict or list named `name`, bound to obj; NULL if none. */
jv *bi_method(rctx *c, jv *obj, const char *name);
jv *bi_call_func(rctx *c, jv *fn, const jargs *args);
/* The template globals jinja2 and transformers define (range, namespace,
 * dict, raise_exception, strftime_now). */
void bi_add_globals(rctx *c, jv *globals);
/* loop.cycle bound to an iteration (index0 is a JV_INT). */
jv *bi_loop_cycle(rctx *c, jv *index0);

/* Parses source (already validated as UTF-8) into t; on a syntax error
 * returns EM_ERR_FORMAT with "line L, column C: ..." in e->msg. */
em_status jinja_parse(jtemplate *t, const char *source, jerr *e);

/* Renders t with the given globals (a JV_DICT); *out is malloc'd. */
em_status jinja_render(const jtemplate *t, jarena *a, jv *globals,
                       const em_chat_limits *limits, jerr *e, char **out);

#endif /* EM_CHAT_JINJA_H */
