/*
 * parser.c - template source to syntax tree: a lexer that splits the
 * source into text and tag tokens with Jinja's whitespace rules, then a
 * recursive-descent parser for statements and expressions.
 *
 * The whitespace rules are jinja2's with trim_blocks and lstrip_blocks on,
 * as Hugging Face renders chat templates:
 *   - "\r\n" and "\r" become "\n", and one trailing newline is dropped;
 *   - "{%-", "{{-", "{#-" strip all whitespace before the tag, and "-%}",
 *     "-}}", "-#}" all whitespace after it;
 *   - trim_blocks: a block or comment tag eats the one "\n" after it;
 *   - lstrip_blocks: spaces and tabs between the start of a line and a
 *     block or comment tag are dropped ("{%+" keeps them, "+%}" keeps the
 *     newline).
 */
#include "chat/jinja.h"

#include "core/core.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- tokens ---- */

typedef enum {
    T_TEXT, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END,
    T_NAME, T_STRING, T_INT, T_FLOAT, T_OP, T_EOF
} ttype;

typedef struct {
    ttype type;
    const char *s;   /* text, name, operator or decoded string (arena) */
    size_t len;
    int64_t i;
    double f;
    int line, col;
} token;

typedef struct {
    jarena *a;
    jerr *e;
    const char *src;   /* normalized source */
    size_t n;
    token *toks;
    size_t ntoks, cap;
    size_t pos;        /* parser position */
    int depth;
    bool soft;         /* inside an `if`: unknown filters/tests fail only when reached */
    size_t loc_off;    /* loc_of's cache: an offset and its line/column */
    int loc_line, loc_col;
} pstate;

enum { MAX_PARSE_DEPTH = 200 };

static void loc_of(pstate *p, size_t off, int *line, int *col) {
    int l = 1, c = 1;
    size_t i = 0;
    if (off >= p->loc_off && p->loc_line) {
        i = p->loc_off;
        l = p->loc_line;
        c = p->loc_col;
    }
    for (; i < off && i < p->n; i++) {
        if (p->src[i] == '\n') { l++; c = 1; }
        else if (((unsigned char)p->src[i] & 0xC0) != 0x80) c++;
    }
    p->loc_off = i;
    p->loc_line = l;
    p->loc_col = c;
    *line = l;
    *col = c;
}

_Noreturn static void fail_at(pstate *p, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
_Noreturn static void fail_at(pstate *p, int line, int col, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    jerr_throw(p->e, EM_ERR_FORMAT, "template syntax error at line %d, column %d: %s", line, col, msg);
}

static void push_tok(pstate *p, ttype type, const char *s, size_t len, size_t off) {
    if (p->ntoks == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 256;
        token *t = ja_alloc(p->a, cap * sizeof *t);
        if (p->ntoks) memcpy(t, p->toks, p->ntoks * sizeof *t);
        p->toks = t;
        p->cap = cap;
    }
    token *t = &p->toks[p->ntoks++];
    memset(t, 0, sizeof *t);
    t->type = type;
    t->s = s;
    t->len = len;
    /* Line and column are computed incrementally by the caller when cheap;
     * here from the offset, cached by the lexer's running position. */
    loc_of(p, off, &t->line, &t->col);
}

static bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* ---- the lexer ---- */

/* Text before a tag, with the tag's strip sign applied. */
static void emit_text(pstate *p, size_t start, size_t end, char sign, bool lstrip_ok,
                      bool line_starting) {
    if (sign == '-') {
        while (end > start && is_space(p->src[end - 1])) end--;
    } else if (sign != '+' && lstrip_ok) {
        size_t l = end;
        while (l > start && p->src[l - 1] != '\n') l--;
        if (l > start || line_starting) {
            size_t k = l;
            while (k < end && is_space(p->src[k]) && p->src[k] != '\n') k++;
            if (k == end) end = l;
        }
    }
    if (end > start) push_tok(p, T_TEXT, p->src + start, end - start, start);
}

static bool starts(pstate *p, size_t i, const char *s) {
    size_t n = strlen(s);
    return i + n <= p->n && memcmp(p->src + i, s, n) == 0;
}

/* Decodes a string literal's escapes the way Python's unicode-escape does
 * for the common cases; unknown escapes stay as written. */
static size_t lex_string(pstate *p, size_t i, size_t tok_off) {
    char q = p->src[i];
    size_t j = i + 1;
    jbuf b;
    jb_init(&b, p->a, SIZE_MAX / 2);
    jb_put(&b, "", 0);
    while (j < p->n && p->src[j] != q) {
        char c = p->src[j];
        if (c != '\\') { jb_putc(&b, c); j++; continue; }
        if (j + 1 >= p->n) break;
        char e = p->src[j + 1];
        j += 2;
        switch (e) {
        case 'n': jb_putc(&b, '\n'); break;
        case 't': jb_putc(&b, '\t'); break;
        case 'r': jb_putc(&b, '\r'); break;
        case '\\': jb_putc(&b, '\\'); break;
        case '\'': jb_putc(&b, '\''); break;
        case '"': jb_putc(&b, '"'); break;
        case 'a': jb_putc(&b, '\a'); break;
        case 'b': jb_putc(&b, '\b'); break;
        case 'f': jb_putc(&b, '\f'); break;
        case 'v': jb_putc(&b, '\v'); break;
        case '\n': break;
        case 'N': {
            int line, col;
            loc_of(p, j - 2, &line, &col);
            fail_at(p, line, col, "\\N{name} escapes are not supported");
        }
        case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7': {
            /* Octal \ooo, as Python reads it. */
            unsigned v = (unsigned)(e - '0');
            for (int k = 0; k < 2 && j < p->n && p->src[j] >= '0' && p->src[j] <= '7'; k++)
                v = v * 8 + (unsigned)(p->src[j++] - '0');
            if (v < 0x80) jb_putc(&b, (char)v);
            else {
                jb_putc(&b, (char)(0xC0 | (v >> 6)));
                jb_putc(&b, (char)(0x80 | (v & 0x3F)));
            }
            break;
        }
        case 'x': case 'u': case 'U': {
            int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            uint32_t cp = 0;
            int k;
            for (k = 0; k < digits && j + (size_t)k < p->n; k++) {
                char h = p->src[j + (size_t)k];
                int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                      : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
                if (d < 0) break;
                cp = cp * 16 + (uint32_t)d;
            }
            int line, col;
            loc_of(p, j - 2, &line, &col);
            if (k < digits || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                fail_at(p, line, col, "invalid \\%c escape in a string", e);
            j += (size_t)digits;
            char u[4];
            size_t n;
            if (cp < 0x80) { u[0] = (char)cp; n = 1; }
            else if (cp < 0x800) { u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3F)); n = 2; }
            else if (cp < 0x10000) { u[0] = (char)(0xE0 | (cp >> 12)); u[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[2] = (char)(0x80 | (cp & 0x3F)); n = 3; }
            else { u[0] = (char)(0xF0 | (cp >> 18)); u[1] = (char)(0x80 | ((cp >> 12) & 0x3F)); u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (char)(0x80 | (cp & 0x3F)); n = 4; }
            jb_put(&b, u, n);
            break;
        }
        default:
            jb_putc(&b, '\\');
            jb_putc(&b, e);
        }
    }
    if (j >= p->n) {
        int line, col;
        loc_of(p, i, &line, &col);
        fail_at(p, line, col, "unterminated string");
    }
    push_tok(p, T_STRING, b.p, b.len, tok_off);
    return j + 1;
}

static size_t lex_number(pstate *p, size_t i) {
    size_t j = i;
    bool is_float = false;
    char tmp[128];
    size_t k = 0;
    while (j < p->n && (isdigit((unsigned char)p->src[j]) || p->src[j] == '_')) {
        if (p->src[j] != '_' && k < sizeof tmp - 1) tmp[k++] = p->src[j];
        j++;
    }
    if (j + 1 < p->n && p->src[j] == '.' && isdigit((unsigned char)p->src[j + 1])) {
        is_float = true;
        tmp[k++] = '.';
        j++;
        while (j < p->n && (isdigit((unsigned char)p->src[j]) || p->src[j] == '_')) {
            if (p->src[j] != '_' && k < sizeof tmp - 1) tmp[k++] = p->src[j];
            j++;
        }
    }
    if (j < p->n && (p->src[j] == 'e' || p->src[j] == 'E')) {
        size_t m = j + 1;
        if (m < p->n && (p->src[m] == '+' || p->src[m] == '-')) m++;
        if (m < p->n && isdigit((unsigned char)p->src[m])) {
            is_float = true;
            while (j < m && k < sizeof tmp - 1) tmp[k++] = p->src[j++];
            while (j < p->n && isdigit((unsigned char)p->src[j])) {
                if (k < sizeof tmp - 1) tmp[k++] = p->src[j];
                j++;
            }
        }
    }
    tmp[k] = 0;
    push_tok(p, is_float ? T_FLOAT : T_INT, p->src + i, j - i, i);
    token *t = &p->toks[p->ntoks - 1];
    if (is_float) t->f = strtod(tmp, NULL);
    else {
        errno = 0;
        unsigned long long v = strtoull(tmp, NULL, 10);
        if (errno || v > INT64_MAX) fail_at(p, t->line, t->col, "integer literal out of range");
        t->i = (int64_t)v;
    }
    return j;
}

static const char *const OPS[] = {
    "**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "[", "]", "(", ")",
    "{", "}", "<", ">", "=", ".", ":", "|", ",", ";", NULL
};

/* Lexes the inside of a {{ }} or {% %} tag starting at i; returns the
 * offset just after the closing delimiter and whether it trimmed. */
static size_t lex_tag(pstate *p, size_t i, bool block, bool *line_starting) {
    char close = block ? '%' : '}';
    char stack[64];
    int depth = 0;
    size_t open_off = i;
    for (;;) {
        while (i < p->n && is_space(p->src[i])) i++;
        if (i >= p->n) {
            int line, col;
            loc_of(p, open_off, &line, &col);
            fail_at(p, line, col, "unexpected end of template: missing '%c}'", close);
        }
        if (depth == 0) {
            size_t end = 0;
            bool ws = false, trim = false;
            if (p->src[i] == '-' && i + 2 < p->n + 0 && p->src[i + 1] == close && p->src[i + 2] == '}') { end = i + 3; ws = true; }
            else if (block && p->src[i] == '+' && starts(p, i + 1, "%}")) end = i + 3;
            else if (p->src[i] == close && i + 1 < p->n && p->src[i + 1] == '}') { end = i + 2; trim = block; }
            if (end) {
                push_tok(p, block ? T_BLOCK_END : T_VAR_END, NULL, 0, i);
                if (ws) while (end < p->n && is_space(p->src[end])) end++;
                else if (trim && end < p->n && p->src[end] == '\n') end++;
                *line_starting = end > 0 && p->src[end - 1] == '\n';
                return end;
            }
        }
        char c = p->src[i];
        if (c == '\'' || c == '"') { i = lex_string(p, i, i); continue; }
        if (isdigit((unsigned char)c)) { i = lex_number(p, i); continue; }
        if (isalpha((unsigned char)c) || c == '_') {
            size_t j = i;
            while (j < p->n && (isalnum((unsigned char)p->src[j]) || p->src[j] == '_')) j++;
            push_tok(p, T_NAME, p->src + i, j - i, i);
            i = j;
            continue;
        }
        const char *op = NULL;
        for (int k = 0; OPS[k]; k++)
            if (starts(p, i, OPS[k])) { op = OPS[k]; break; }
        int line, col;
        loc_of(p, i, &line, &col);
        if (!op) fail_at(p, line, col, "unexpected character '%c'", c);
        if (*op == '(' || *op == '[' || *op == '{') {
            if (depth == (int)sizeof stack) fail_at(p, line, col, "brackets nested too deeply");
            stack[depth++] = *op == '(' ? ')' : *op == '[' ? ']' : '}';
        } else if (*op == ')' || *op == ']' || *op == '}') {
            if (depth == 0) fail_at(p, line, col, "unexpected '%c'", *op);
            if (stack[--depth] != *op) fail_at(p, line, col, "unexpected '%c', expected '%c'", *op, stack[depth]);
        }
        push_tok(p, T_OP, op, strlen(op), i);
        i += strlen(op);
    }
}

/* Matches "{%[-+]? raw [-]?%}" at i: returns the offset after it (0 when
 * it is not a raw tag). */
static size_t raw_tag(pstate *p, size_t i, const char *word, char *sign, bool *trim) {
    if (!starts(p, i, "{%")) return 0;
    size_t j = i + 2;
    *sign = 0;
    if (j < p->n && (p->src[j] == '-' || p->src[j] == '+')) *sign = p->src[j++];
    while (j < p->n && is_space(p->src[j])) j++;
    if (!starts(p, j, word)) return 0;
    j += strlen(word);
    if (j < p->n && (isalnum((unsigned char)p->src[j]) || p->src[j] == '_')) return 0;
    while (j < p->n && is_space(p->src[j])) j++;
    *trim = false;
    if (starts(p, j, "-%}")) {
        j += 3;
        while (j < p->n && is_space(p->src[j])) j++;
        return j;
    }
    if (starts(p, j, "+%}")) return j + 3;
    if (starts(p, j, "%}")) { *trim = true; return j + 2; }
    return 0;
}

static void lex(pstate *p) {
    size_t i = 0;
    bool line_starting = true;
    while (i < p->n) {
        /* The next tag opener. */
        size_t t = i;
        while (t + 1 < p->n && !(p->src[t] == '{' && (p->src[t + 1] == '{' || p->src[t + 1] == '%' || p->src[t + 1] == '#')))
            t++;
        if (t + 1 >= p->n) {
            push_tok(p, T_TEXT, p->src + i, p->n - i, i);
            break;
        }
        char kind = p->src[t + 1];
        char sign = t + 2 < p->n ? p->src[t + 2] : 0;
        if (sign != '-' && sign != '+') sign = 0;
        char rsign;
        bool rtrim;
        size_t after_raw = kind == '%' ? raw_tag(p, t, "raw", &rsign, &rtrim) : 0;
        emit_text(p, i, t, sign, kind != '{', line_starting);
        if (after_raw) {
            /* Raw: everything up to {% endraw %} is text. */
            size_t k = after_raw, end_at = 0, end_after = 0;
            char esign = 0;
            bool etrim = false;
            for (; k + 1 < p->n; k++) {
                if (p->src[k] == '{' && p->src[k + 1] == '%') {
                    end_after = raw_tag(p, k, "endraw", &esign, &etrim);
                    if (end_after) { end_at = k; break; }
                }
            }
            if (!end_after) {
                int line, col;
                loc_of(p, t, &line, &col);
                fail_at(p, line, col, "missing end of raw directive");
            }
            bool raw_line_start = after_raw > 0 && p->src[after_raw - 1] == '\n';
            emit_text(p, after_raw, end_at, esign, true, raw_line_start);
            i = end_after;
            if (etrim && i < p->n && p->src[i] == '\n') i++;
            line_starting = i > 0 && p->src[i - 1] == '\n';
            continue;
        }
        size_t start = t + 2 + (sign ? 1 : 0);
        if (kind == '#') {
            size_t k = start;
            while (k + 1 < p->n && !(p->src[k] == '#' && p->src[k + 1] == '}')) k++;
            if (k + 1 >= p->n) {
                int line, col;
                loc_of(p, t, &line, &col);
                fail_at(p, line, col, "missing end of comment tag");
            }
            size_t end = k + 2;
            char csign = k > start && (p->src[k - 1] == '-' || p->src[k - 1] == '+') ? p->src[k - 1] : 0;
            if (csign == '-') while (end < p->n && is_space(p->src[end])) end++;
            else if (csign != '+' && end < p->n && p->src[end] == '\n') end++;
            line_starting = p->src[end - 1] == '\n';
            i = end;
            continue;
        }
        push_tok(p, kind == '%' ? T_BLOCK_BEGIN : T_VAR_BEGIN, NULL, 0, t);
        i = lex_tag(p, start, kind == '%', &line_starting);
    }
    push_tok(p, T_EOF, NULL, 0, p->n);
}

/* ---- parser helpers ---- */

static token *peek(pstate *p) { return &p->toks[p->pos]; }
static token *peek2(pstate *p) { return p->pos + 1 < p->ntoks ? &p->toks[p->pos + 1] : &p->toks[p->pos]; }
static token *next(pstate *p) {
    token *t = &p->toks[p->pos];
    if (t->type != T_EOF) p->pos++;
    return t;
}

static bool tok_is(const token *t, ttype type, const char *s) {
    if (t->type != type) return false;
    if (!s) return true;
    return t->len == strlen(s) && memcmp(t->s, s, t->len) == 0;
}
static bool is_op(pstate *p, const char *s) { return tok_is(peek(p), T_OP, s); }
static bool is_name(pstate *p, const char *s) { return tok_is(peek(p), T_NAME, s); }

static const char *describe(const token *t, char *buf, size_t n) {
    switch (t->type) {
    case T_EOF: return "end of template";
    case T_TEXT: return "template text";
    case T_VAR_BEGIN: return "'{{'";
    case T_VAR_END: return "'}}'";
    case T_BLOCK_BEGIN: return "'{%'";
    case T_BLOCK_END: return "'%}'";
    case T_STRING: return "a string";
    default:
        snprintf(buf, n, "'%.*s'", (int)EM_MIN(t->len, 40), t->s);
        return buf;
    }
}

_Noreturn static void unexpected(pstate *p, const char *wanted) {
    char buf[64];
    token *t = peek(p);
    fail_at(p, t->line, t->col, "expected %s, got %s", wanted, describe(t, buf, sizeof buf));
}

static void expect_op(pstate *p, const char *s) {
    if (!is_op(p, s)) {
        char w[16];
        snprintf(w, sizeof w, "'%s'", s);
        unexpected(p, w);
    }
    next(p);
}

static const char *expect_name(pstate *p) {
    if (peek(p)->type != T_NAME) unexpected(p, "a name");
    token *t = next(p);
    return ja_strndup(p->a, t->s, t->len);
}

static void expect_block_end(pstate *p) {
    if (peek(p)->type != T_BLOCK_END) unexpected(p, "'%}'");
    next(p);
}

static jexpr *new_expr(pstate *p, jexpr_kind kind, const token *at) {
    jexpr *e = ja_alloc(p->a, sizeof *e);
    e->kind = kind;
    e->line = at->line;
    e->col = at->col;
    return e;
}

static void enter(pstate *p) {
    if (++p->depth > MAX_PARSE_DEPTH) {
        token *t = peek(p);
        fail_at(p, t->line, t->col, "template nested too deeply");
    }
}
static void leave(pstate *p) { p->depth--; }

/* Operator chains (a + b + c, x|f|g, a.b.c) are parsed by loops but nest
 * as trees that later code walks recursively: bound their length too. */
enum { MAX_CHAIN = 500 };
static void chain_step(pstate *p, int *n) {
    if (++*n > MAX_CHAIN) {
        token *t = peek(p);
        fail_at(p, t->line, t->col, "expression chain longer than %d", MAX_CHAIN);
    }
}

/* A growable array of expressions in the arena. */
typedef struct { jexpr **v; size_t n, cap; } exprvec;
static void ev_push(pstate *p, exprvec *v, jexpr *e) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        jexpr **items = ja_alloc(p->a, cap * sizeof *items);
        if (v->n) memcpy(items, v->v, v->n * sizeof *items);
        v->v = items;
        v->cap = cap;
    }
    v->v[v->n++] = e;
}

/* ---- expressions ---- */

static jexpr *parse_expression(pstate *p);
static jexpr *parse_or(pstate *p);
static jexpr *parse_unary(pstate *p, bool with_filter);
static jexpr *parse_primary(pstate *p);
static jexpr *parse_postfix(pstate *p, jexpr *e);

/* Call arguments after '(' up to ')': positional then keyword. */
static void parse_call_args(pstate *p, jexpr *e) {
    exprvec pos = {0}, kw = {0};
    const char **names = NULL;
    size_t nnames = 0, cap = 0;
    expect_op(p, "(");
    while (!is_op(p, ")")) {
        if (pos.n + kw.n) expect_op(p, ",");
        if (is_op(p, ")")) break;
        if (is_op(p, "*") || is_op(p, "**")) {
            token *t = peek(p);
            fail_at(p, t->line, t->col, "*args and **kwargs in calls are not supported");
        }
        if (peek(p)->type == T_NAME && tok_is(peek2(p), T_OP, "=")) {
            const char *name = expect_name(p);
            next(p);
            if (nnames == cap) {
                cap = cap ? cap * 2 : 4;
                const char **nn = ja_alloc(p->a, cap * sizeof *nn);
                if (nnames) memcpy(nn, names, nnames * sizeof *nn);
                names = nn;
            }
            names[nnames++] = name;
            ev_push(p, &kw, parse_expression(p));
        } else {
            if (kw.n) {
                token *t = peek(p);
                fail_at(p, t->line, t->col, "positional argument after keyword argument");
            }
            ev_push(p, &pos, parse_expression(p));
        }
    }
    expect_op(p, ")");
    e->args = pos.v;
    e->nargs = pos.n;
    e->args2 = kw.v;
    e->kwnames = names;
    e->nkw = kw.n;
}

static jexpr *parse_filter(pstate *p, jexpr *base) {
    token *at = peek(p);
    jexpr *f = new_expr(p, E_FILTER, at);
    f->a = base;
    f->name = expect_name(p);
    if (!p->soft && !jinja_has_filter(f->name)) fail_at(p, at->line, at->col, "no filter named '%s'", f->name);
    if (is_op(p, "(")) parse_call_args(p, f);
    return f;
}

static jexpr *parse_test(pstate *p, jexpr *base) {
    token *at = peek(p);
    jexpr *t = new_expr(p, E_TEST, at);
    t->a = base;
    if (is_name(p, "not")) {
        next(p);
        t->negate = true;
    }
    token *name_at = peek(p);
    t->name = expect_name(p);
    if (!p->soft && !jinja_has_test(t->name)) fail_at(p, name_at->line, name_at->col, "no test named '%s'", t->name);
    token *c = peek(p);
    if (is_op(p, "(")) parse_call_args(p, t);
    else if ((c->type == T_NAME || c->type == T_STRING || c->type == T_INT || c->type == T_FLOAT ||
              tok_is(c, T_OP, "[") || tok_is(c, T_OP, "{")) &&
             !tok_is(c, T_NAME, "else") && !tok_is(c, T_NAME, "or") && !tok_is(c, T_NAME, "and")) {
        if (tok_is(c, T_NAME, "is")) fail_at(p, c->line, c->col, "you cannot chain multiple tests with is");
        jexpr *arg = parse_postfix(p, parse_primary(p));
        t->args = ja_alloc(p->a, sizeof(jexpr *));
        t->args[0] = arg;
        t->nargs = 1;
    }
    return t;
}

static jexpr *parse_filter_expr(pstate *p, jexpr *e) {
    int n = 0;
    for (;;) {
        chain_step(p, &n);
        if (is_op(p, "|")) {
            next(p);
            e = parse_filter(p, e);
        } else if (is_name(p, "is")) {
            next(p);
            e = parse_test(p, e);
        } else if (is_op(p, "(")) {
            jexpr *c = new_expr(p, E_CALL, peek(p));
            c->a = e;
            parse_call_args(p, c);
            e = c;
        } else return e;
    }
}

static jexpr *parse_subscript(pstate *p, jexpr *base) {
    token *at = next(p); /* '[' */
    jexpr *parts[3] = {NULL, NULL, NULL};
    int nparts = 0;
    bool slice = false;
    for (;;) {
        if (is_op(p, ":")) {
            slice = true;
            next(p);
            if (++nparts > 2) fail_at(p, at->line, at->col, "too many ':' in a slice");
            continue;
        }
        if (is_op(p, "]")) break;
        if (parts[nparts]) unexpected(p, "']'");
        parts[nparts] = parse_expression(p);
    }
    expect_op(p, "]");
    if (!slice) {
        if (!parts[0]) fail_at(p, at->line, at->col, "empty subscript");
        jexpr *e = new_expr(p, E_ITEM, at);
        e->a = base;
        e->b = parts[0];
        return e;
    }
    jexpr *e = new_expr(p, E_SLICE, at);
    e->a = base;
    e->b = parts[0];
    e->c = parts[1];
    e->args = ja_alloc(p->a, sizeof(jexpr *));
    e->args[0] = parts[2];
    e->nargs = 1;
    return e;
}

static jexpr *parse_postfix(pstate *p, jexpr *e) {
    int n = 0;
    for (;;) {
        chain_step(p, &n);
        if (is_op(p, ".")) {
            token *at = next(p);
            token *t = peek(p);
            if (t->type == T_NAME) {
                jexpr *g = new_expr(p, E_ATTR, at);
                g->a = e;
                g->name = expect_name(p);
                e = g;
            } else if (t->type == T_INT) {
                jexpr *g = new_expr(p, E_ITEM, at);
                g->a = e;
                g->b = new_expr(p, E_CONST, t);
                g->b->value = jv_int(p->a, t->i);
                next(p);
                e = g;
            } else unexpected(p, "an attribute name");
        } else if (is_op(p, "[")) {
            e = parse_subscript(p, e);
        } else if (is_op(p, "(")) {
            jexpr *c = new_expr(p, E_CALL, peek(p));
            c->a = e;
            parse_call_args(p, c);
            e = c;
        } else return e;
    }
}

static jexpr *make_seq(pstate *p, jexpr_kind kind, const token *at, exprvec *v) {
    jexpr *e = new_expr(p, kind, at);
    e->args = v->v;
    e->nargs = v->n;
    return e;
}

static jexpr *parse_primary(pstate *p) {
    enter(p);
    token *t = peek(p);
    jexpr *e;
    if (t->type == T_NAME) {
        next(p);
        e = new_expr(p, E_CONST, t);
        if (tok_is(t, T_NAME, "true") || tok_is(t, T_NAME, "True")) e->value = JV_TRUE;
        else if (tok_is(t, T_NAME, "false") || tok_is(t, T_NAME, "False")) e->value = JV_FALSE;
        else if (tok_is(t, T_NAME, "none") || tok_is(t, T_NAME, "None")) e->value = JV_NONEV;
        else {
            e->kind = E_NAME;
            e->name = ja_strndup(p->a, t->s, t->len);
        }
    } else if (t->type == T_STRING) {
        /* Adjacent literals concatenate, as in Python. */
        jbuf b;
        jb_init(&b, p->a, SIZE_MAX / 2);
        jb_put(&b, "", 0);
        while (peek(p)->type == T_STRING) {
            token *s = next(p);
            jb_put(&b, s->s, s->len);
        }
        e = new_expr(p, E_CONST, t);
        e->value = jv_str_ref(p->a, b.p ? b.p : "", b.len);
    } else if (t->type == T_INT) {
        next(p);
        e = new_expr(p, E_CONST, t);
        e->value = jv_int(p->a, t->i);
    } else if (t->type == T_FLOAT) {
        next(p);
        e = new_expr(p, E_CONST, t);
        e->value = jv_float(p->a, t->f);
    } else if (tok_is(t, T_OP, "(")) {
        next(p);
        exprvec v = {0};
        bool comma = false;
        while (!is_op(p, ")")) {
            if (v.n) {
                expect_op(p, ",");
                comma = true;
                if (is_op(p, ")")) break;
            }
            ev_push(p, &v, parse_expression(p));
        }
        expect_op(p, ")");
        if (v.n == 1 && !comma) e = v.v[0];
        else {
            e = make_seq(p, E_TUPLE, t, &v);
        }
    } else if (tok_is(t, T_OP, "[")) {
        next(p);
        exprvec v = {0};
        while (!is_op(p, "]")) {
            if (v.n) {
                expect_op(p, ",");
                if (is_op(p, "]")) break;
            }
            ev_push(p, &v, parse_expression(p));
        }
        expect_op(p, "]");
        e = make_seq(p, E_LIST, t, &v);
    } else if (tok_is(t, T_OP, "{")) {
        next(p);
        exprvec k = {0}, v = {0};
        while (!is_op(p, "}")) {
            if (k.n) {
                expect_op(p, ",");
                if (is_op(p, "}")) break;
            }
            ev_push(p, &k, parse_expression(p));
            expect_op(p, ":");
            ev_push(p, &v, parse_expression(p));
        }
        expect_op(p, "}");
        e = make_seq(p, E_DICT, t, &k);
        e->args2 = v.v;
    } else {
        unexpected(p, "an expression");
    }
    leave(p);
    return e;
}

static jexpr *parse_unary(pstate *p, bool with_filter) {
    enter(p);
    token *t = peek(p);
    jexpr *e;
    if (is_op(p, "-") || is_op(p, "+")) {
        next(p);
        e = new_expr(p, tok_is(t, T_OP, "-") ? E_NEG : E_POS, t);
        e->a = parse_unary(p, false);
    } else {
        e = parse_primary(p);
    }
    e = parse_postfix(p, e);
    if (with_filter) e = parse_filter_expr(p, e);
    leave(p);
    return e;
}

static jexpr *binary(pstate *p, const token *at, jop op, jexpr *l, jexpr *r) {
    jexpr *e = new_expr(p, E_BIN, at);
    e->op = op;
    e->a = l;
    e->b = r;
    return e;
}

static jexpr *parse_pow(pstate *p) {
    jexpr *l = parse_unary(p, true);
    int n = 0;
    while (is_op(p, "**")) {
        chain_step(p, &n);
        token *t = next(p);
        l = binary(p, t, OP_POW, l, parse_unary(p, true));
    }
    return l;
}

static jexpr *parse_math2(pstate *p) {
    jexpr *l = parse_pow(p);
    int n = 0;
    for (;;) {
        chain_step(p, &n);
        jop op;
        if (is_op(p, "*")) op = OP_MUL;
        else if (is_op(p, "/")) op = OP_DIV;
        else if (is_op(p, "//")) op = OP_FLOORDIV;
        else if (is_op(p, "%")) op = OP_MOD;
        else return l;
        token *t = next(p);
        l = binary(p, t, op, l, parse_pow(p));
    }
}

static jexpr *parse_concat(pstate *p) {
    jexpr *l = parse_math2(p);
    if (!is_op(p, "~")) return l;
    exprvec v = {0};
    ev_push(p, &v, l);
    token *at = peek(p);
    while (is_op(p, "~")) {
        next(p);
        ev_push(p, &v, parse_math2(p));
    }
    return make_seq(p, E_CONCAT, at, &v);
}

static jexpr *parse_math1(pstate *p) {
    jexpr *l = parse_concat(p);
    int n = 0;
    for (;;) {
        chain_step(p, &n);
        jop op;
        if (is_op(p, "+")) op = OP_ADD;
        else if (is_op(p, "-")) op = OP_SUB;
        else return l;
        token *t = next(p);
        l = binary(p, t, op, l, parse_concat(p));
    }
}

static jexpr *parse_compare(pstate *p) {
    token *at = peek(p);
    jexpr *first = parse_math1(p);
    exprvec operands = {0};
    jop *ops = NULL;
    size_t nops = 0, cap = 0;
    for (;;) {
        jop op;
        if (is_op(p, "==")) op = OP_EQ;
        else if (is_op(p, "!=")) op = OP_NE;
        else if (is_op(p, "<")) op = OP_LT;
        else if (is_op(p, "<=")) op = OP_LE;
        else if (is_op(p, ">")) op = OP_GT;
        else if (is_op(p, ">=")) op = OP_GE;
        else if (is_name(p, "in")) op = OP_IN;
        else if (is_name(p, "not") && tok_is(peek2(p), T_NAME, "in")) {
            next(p);
            op = OP_NOTIN;
        } else break;
        next(p);
        if (!operands.n) ev_push(p, &operands, first);
        ev_push(p, &operands, parse_math1(p));
        if (nops == cap) {
            cap = cap ? cap * 2 : 4;
            jop *o = ja_alloc(p->a, cap * sizeof *o);
            if (nops) memcpy(o, ops, nops * sizeof *o);
            ops = o;
        }
        ops[nops++] = op;
    }
    if (!nops) return first;
    jexpr *e = make_seq(p, E_COMPARE, at, &operands);
    e->ops = ops;
    return e;
}

static jexpr *parse_not(pstate *p) {
    if (is_name(p, "not")) {
        token *t = next(p);
        enter(p);
        jexpr *e = new_expr(p, E_NOT, t);
        e->a = parse_not(p);
        leave(p);
        return e;
    }
    return parse_compare(p);
}

static jexpr *parse_and(pstate *p) {
    jexpr *l = parse_not(p);
    int n = 0;
    while (is_name(p, "and")) {
        chain_step(p, &n);
        token *t = next(p);
        jexpr *e = new_expr(p, E_AND, t);
        e->a = l;
        e->b = parse_not(p);
        l = e;
    }
    return l;
}

static jexpr *parse_or(pstate *p) {
    jexpr *l = parse_and(p);
    int n = 0;
    while (is_name(p, "or")) {
        chain_step(p, &n);
        token *t = next(p);
        jexpr *e = new_expr(p, E_OR, t);
        e->a = l;
        e->b = parse_and(p);
        l = e;
    }
    return l;
}

/* expr ["if" cond ["else" expr]] */
static jexpr *parse_expression(pstate *p) {
    enter(p);
    jexpr *e = parse_or(p);
    int n = 0;
    while (is_name(p, "if")) {
        chain_step(p, &n);
        token *t = next(p);
        jexpr *c = new_expr(p, E_COND, t);
        c->a = e;
        c->b = parse_or(p);
        if (is_name(p, "else")) {
            next(p);
            c->c = parse_expression(p);
        }
        e = c;
    }
    leave(p);
    return e;
}

/* An expression that may be a bare tuple: "a, b". */
static jexpr *parse_tuple(pstate *p) {
    token *at = peek(p);
    jexpr *e = parse_expression(p);
    if (!is_op(p, ",")) return e;
    exprvec v = {0};
    ev_push(p, &v, e);
    while (is_op(p, ",")) {
        next(p);
        if (peek(p)->type == T_BLOCK_END || peek(p)->type == T_VAR_END) break;
        ev_push(p, &v, parse_expression(p));
    }
    return make_seq(p, E_TUPLE, at, &v);
}

/* ---- statements ---- */

static void body_push(pstate *p, jbody *b, jstmt *s) {
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 8;
        jstmt **items = ja_alloc(p->a, cap * sizeof *items);
        if (b->n) memcpy(items, b->items, b->n * sizeof *items);
        b->items = items;
        b->cap = cap;
    }
    b->items[b->n++] = s;
}

static jstmt *new_stmt(pstate *p, jstmt_kind kind, const token *at) {
    jstmt *s = ja_alloc(p->a, sizeof *s);
    s->kind = kind;
    s->line = at->line;
    s->col = at->col;
    return s;
}

/* Parses statements until a block tag whose name is in `ends` (the
 * position is left on that name) or the end of the template (ends NULL). */
static void parse_body(pstate *p, jbody *b, const char *const *ends, const token *opener);

static bool at_end_tag(pstate *p, const char *const *ends) {
    if (peek(p)->type != T_BLOCK_BEGIN) return false;
    token *n = peek2(p);
    for (int i = 0; ends && ends[i]; i++)
        if (tok_is(n, T_NAME, ends[i])) return true;
    return false;
}

/* Names for `for` targets and `set` tuples: a, b  or  (a, b). */
static void parse_targets(pstate *p, jstmt *s) {
    const char *names[16];
    size_t n = 0;
    bool paren = is_op(p, "(");
    if (paren) next(p);
    for (;;) {
        if (n == 16) unexpected(p, "at most 16 names");
        names[n++] = expect_name(p);
        if (!is_op(p, ",")) break;
        next(p);
    }
    if (paren) expect_op(p, ")");
    s->names = ja_alloc(p->a, n * sizeof *names);
    memcpy(s->names, names, n * sizeof *names);
    s->nnames = n;
}

static jmacro *parse_signature(pstate *p, const char *name) {
    jmacro *m = ja_alloc(p->a, sizeof *m);
    m->name = name;
    const char *params[64];
    jexpr *defaults[64];
    size_t n = 0;
    expect_op(p, "(");
    while (!is_op(p, ")")) {
        if (n) expect_op(p, ",");
        if (is_op(p, ")")) break;
        if (n == 64) unexpected(p, "at most 64 parameters");
        params[n] = expect_name(p);
        defaults[n] = NULL;
        if (is_op(p, "=")) {
            next(p);
            defaults[n] = parse_expression(p);
        }
        n++;
    }
    expect_op(p, ")");
    m->params = ja_alloc(p->a, (n + 1) * sizeof *params);
    m->defaults = ja_alloc(p->a, (n + 1) * sizeof *defaults);
    if (n) {
        memcpy(m->params, params, n * sizeof *params);
        memcpy(m->defaults, defaults, n * sizeof *defaults);
    }
    m->nparams = n;
    return m;
}

/* Marks which of caller, varargs and kwargs a macro body names. */
static void scan_expr(jmacro *m, const jexpr *e) {
    if (!e) return;
    if (e->kind == E_NAME) {
        if (!strcmp(e->name, "caller")) m->uses_caller = true;
        if (!strcmp(e->name, "varargs")) m->uses_varargs = true;
        if (!strcmp(e->name, "kwargs")) m->uses_kwargs = true;
    }
    scan_expr(m, e->a);
    scan_expr(m, e->b);
    scan_expr(m, e->c);
    for (size_t i = 0; i < e->nargs; i++) scan_expr(m, e->args[i]);
    if (e->args2)
        for (size_t i = 0; i < (e->kind == E_DICT ? e->nargs : e->nkw); i++) scan_expr(m, e->args2[i]);
}

static void scan_body(jmacro *m, const jbody *b) {
    for (size_t i = 0; i < b->n; i++) {
        const jstmt *s = b->items[i];
        scan_expr(m, s->expr);
        scan_expr(m, s->cond);
        scan_expr(m, s->filter);
        scan_body(m, &s->body);
        scan_body(m, &s->else_body);
        if (s->macro) {
            for (size_t k = 0; k < s->macro->nparams; k++) scan_expr(m, s->macro->defaults[k]);
            scan_body(m, &s->macro->body);
        }
    }
}

/* "{% end... %}" after parse_body stopped on it. */
static void close_tag(pstate *p, const char *name) {
    next(p); /* T_BLOCK_BEGIN */
    if (!is_name(p, name)) {
        char w[32];
        snprintf(w, sizeof w, "'%s'", name);
        unexpected(p, w);
    }
    next(p);
    /* "{% endmacro name %}" and "{% endblock name %}" may repeat the name. */
    if (peek(p)->type == T_NAME && (!strcmp(name, "endmacro"))) next(p);
    expect_block_end(p);
}

static jexpr *parse_filter_chain(pstate *p) {
    jexpr *f = parse_filter(p, NULL);
    int n = 0;
    while (is_op(p, "|")) {
        chain_step(p, &n);
        next(p);
        f = parse_filter(p, f);
    }
    return f;
}

static jstmt *parse_if(pstate *p, token *at) {
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    jstmt *s = new_stmt(p, S_IF, at);
    /* jinja2 compiles an if statement in a "soft" frame, where unknown
     * filters and tests fail only when they run. */
    bool saved_soft = p->soft;
    p->soft = true;
    s->expr = parse_tuple(p);
    expect_block_end(p);
    parse_body(p, &s->body, ends, at);
    token *n = peek2(p);
    if (tok_is(n, T_NAME, "elif")) {
        next(p);
        token *t = next(p);
        body_push(p, &s->else_body, parse_if(p, t));
        p->soft = saved_soft;
        return s;
    }
    if (tok_is(n, T_NAME, "else")) {
        static const char *const end_if[] = {"endif", NULL};
        next(p);
        next(p);
        expect_block_end(p);
        parse_body(p, &s->else_body, end_if, at);
    }
    close_tag(p, "endif");
    p->soft = saved_soft;
    return s;
}

static jstmt *parse_statement(pstate *p) {
    token *open = next(p); /* T_BLOCK_BEGIN */
    token *at = peek(p);
    if (at->type != T_NAME) unexpected(p, "a statement name");
    next(p);
    jstmt *s;
    enter(p);
    bool saved_soft = p->soft;
    if (!tok_is(at, T_NAME, "if")) p->soft = false;
    if (tok_is(at, T_NAME, "if")) {
        s = parse_if(p, at);
    } else if (tok_is(at, T_NAME, "for")) {
        static const char *const ends[] = {"else", "endfor", NULL};
        static const char *const end_for[] = {"endfor", NULL};
        s = new_stmt(p, S_FOR, at);
        parse_targets(p, s);
        if (!is_name(p, "in")) unexpected(p, "'in'");
        next(p);
        /* The iterable stops before a filter `if`, so parse_or, not a
         * conditional expression. */
        s->expr = parse_or(p);
        if (is_name(p, "if")) {
            next(p);
            s->cond = parse_expression(p);
        }
        if (is_name(p, "recursive")) fail_at(p, peek(p)->line, peek(p)->col, "recursive loops are not supported");
        expect_block_end(p);
        parse_body(p, &s->body, ends, at);
        if (tok_is(peek2(p), T_NAME, "else")) {
            next(p);
            next(p);
            expect_block_end(p);
            parse_body(p, &s->else_body, end_for, at);
        }
        close_tag(p, "endfor");
    } else if (tok_is(at, T_NAME, "set")) {
        s = new_stmt(p, S_SET, at);
        const char *first = expect_name(p);
        if (is_op(p, ".")) {
            next(p);
            s->attr = expect_name(p);
            s->names = ja_alloc(p->a, sizeof(char *));
            s->names[0] = first;
            s->nnames = 1;
        } else {
            const char *names[16];
            size_t n = 0;
            names[n++] = first;
            while (is_op(p, ",")) {
                next(p);
                if (n == 16) unexpected(p, "at most 16 names");
                names[n++] = expect_name(p);
            }
            s->names = ja_alloc(p->a, n * sizeof *names);
            memcpy(s->names, names, n * sizeof *names);
            s->nnames = n;
        }
        if (is_op(p, "=")) {
            next(p);
            s->expr = parse_tuple(p);
            expect_block_end(p);
        } else {
            static const char *const ends[] = {"endset", NULL};
            if (s->nnames != 1) unexpected(p, "'='");
            s->kind = S_SET_BLOCK;
            if (is_op(p, "|")) {
                next(p);
                s->filter = parse_filter_chain(p);
            }
            expect_block_end(p);
            parse_body(p, &s->body, ends, at);
            close_tag(p, "endset");
        }
    } else if (tok_is(at, T_NAME, "macro")) {
        static const char *const ends[] = {"endmacro", NULL};
        s = new_stmt(p, S_MACRO, at);
        const char *name = expect_name(p);
        s->macro = parse_signature(p, name);
        expect_block_end(p);
        parse_body(p, &s->macro->body, ends, at);
        close_tag(p, "endmacro");
        scan_body(s->macro, &s->macro->body);
        for (size_t k = 0; k < s->macro->nparams; k++) scan_expr(s->macro, s->macro->defaults[k]);
    } else if (tok_is(at, T_NAME, "call")) {
        static const char *const ends[] = {"endcall", NULL};
        s = new_stmt(p, S_CALL_BLOCK, at);
        if (is_op(p, "(")) s->macro = parse_signature(p, "caller");
        else {
            s->macro = ja_alloc(p->a, sizeof *s->macro);
            s->macro->name = "caller";
        }
        s->expr = parse_expression(p);
        if (s->expr->kind != E_CALL) fail_at(p, at->line, at->col, "expected a call after 'call'");
        expect_block_end(p);
        parse_body(p, &s->macro->body, ends, at);
        close_tag(p, "endcall");
        scan_body(s->macro, &s->macro->body);
    } else if (tok_is(at, T_NAME, "filter")) {
        static const char *const ends[] = {"endfilter", NULL};
        s = new_stmt(p, S_FILTER_BLOCK, at);
        s->filter = parse_filter_chain(p);
        expect_block_end(p);
        parse_body(p, &s->body, ends, at);
        close_tag(p, "endfilter");
    } else if (tok_is(at, T_NAME, "with")) {
        static const char *const ends[] = {"endwith", NULL};
        s = new_stmt(p, S_WITH, at);
        const char *names[16];
        exprvec vals = {0};
        size_t n = 0;
        while (peek(p)->type != T_BLOCK_END) {
            if (n) expect_op(p, ",");
            if (n == 16) unexpected(p, "at most 16 names");
            names[n++] = expect_name(p);
            expect_op(p, "=");
            ev_push(p, &vals, parse_expression(p));
        }
        expect_block_end(p);
        s->names = ja_alloc(p->a, (n + 1) * sizeof *names);
        if (n) memcpy(s->names, names, n * sizeof *names);
        s->nnames = n;
        s->expr = make_seq(p, E_TUPLE, at, &vals);
        parse_body(p, &s->body, ends, at);
        close_tag(p, "endwith");
    } else if (tok_is(at, T_NAME, "generation")) {
        /* transformers' AssistantTracker: marks assistant text, renders as is. */
        static const char *const ends[] = {"endgeneration", NULL};
        s = new_stmt(p, S_BLOCK, at);
        expect_block_end(p);
        parse_body(p, &s->body, ends, at);
        close_tag(p, "endgeneration");
    } else if (tok_is(at, T_NAME, "break") || tok_is(at, T_NAME, "continue")) {
        s = new_stmt(p, tok_is(at, T_NAME, "break") ? S_BREAK : S_CONTINUE, at);
        expect_block_end(p);
    } else {
        fail_at(p, at->line, at->col, "unknown tag '%.*s'", (int)EM_MIN(at->len, 40), at->s);
    }
    (void)open;
    p->soft = saved_soft;
    leave(p);
    return s;
}

static void parse_body(pstate *p, jbody *b, const char *const *ends, const token *opener) {
    for (;;) {
        token *t = peek(p);
        switch (t->type) {
        case T_EOF:
            if (ends) {
                fail_at(p, opener->line, opener->col,
                        "unexpected end of template: '%.*s' is never closed (expected '%s')",
                        (int)EM_MIN(opener->len, 20), opener->s, ends[0]);
            }
            return;
        case T_TEXT: {
            next(p);
            jstmt *s = new_stmt(p, S_TEXT, t);
            s->text = t->s;
            s->len = t->len;
            body_push(p, b, s);
            break;
        }
        case T_VAR_BEGIN: {
            next(p);
            jstmt *s = new_stmt(p, S_OUTPUT, t);
            s->expr = parse_tuple(p);
            if (peek(p)->type != T_VAR_END) unexpected(p, "'}}'");
            next(p);
            body_push(p, b, s);
            break;
        }
        case T_BLOCK_BEGIN:
            if (at_end_tag(p, ends)) return;
            {
                token *n = peek2(p);
                if (n->type == T_NAME && (tok_is(n, T_NAME, "endif") || tok_is(n, T_NAME, "endfor") ||
                                          tok_is(n, T_NAME, "endset") || tok_is(n, T_NAME, "endmacro") ||
                                          tok_is(n, T_NAME, "else") || tok_is(n, T_NAME, "elif") ||
                                          tok_is(n, T_NAME, "endcall") || tok_is(n, T_NAME, "endfilter") ||
                                          tok_is(n, T_NAME, "endgeneration") || tok_is(n, T_NAME, "endwith")))
                    fail_at(p, n->line, n->col, "unexpected '%.*s'%s%s", (int)n->len, n->s,
                            ends ? ", expected " : "", ends ? ends[0] : "");
            }
            body_push(p, b, parse_statement(p));
            break;
        default:
            unexpected(p, "template text or a tag");
        }
    }
}

em_status jinja_parse(jtemplate *t, const char *source, jerr *e) {
    pstate p;
    memset(&p, 0, sizeof p);
    p.a = &t->arena;
    p.e = e;
    if (setjmp(e->jb)) return e->status;
    /* Newlines normalized to "\n", one trailing newline dropped. */
    size_t n = strlen(source);
    char *src = ja_alloc(p.a, n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (source[i] == '\r') {
            src[k++] = '\n';
            if (i + 1 < n && source[i + 1] == '\n') i++;
        } else src[k++] = source[i];
    }
    if (k && src[k - 1] == '\n') k--;
    src[k] = 0;
    p.src = src;
    p.n = k;
    lex(&p);
    parse_body(&p, &t->body, NULL, NULL);
    return EM_OK;
}
