/*
 * schema_regex.c - JSON schema "pattern" as grammar rules.
 *
 * The subset (ECMAScript syntax, the common part of what schemas use):
 *   literals (any UTF-8 text), '.', character classes [abc] [a-z] [^...]
 *   (ranges within ASCII; negated classes of ASCII members), the escapes
 *   \d \D \w \W \s \S \n \t \r \f \v \0 \xHH \uHHHH and escaped
 *   punctuation, groups ( ), (?: ) and named groups (?<n> ), alternation |,
 *   quantifiers ? * + {n} {n,} {n,m} (lazy forms too: same language), '^'
 *   at the very start and '$' at the very end.
 * Rejected with EM_ERR_UNSUPPORTED: lookaround, backreferences, \b \B,
 * \p{...}, anchors elsewhere, possessive quantifiers, ranges beyond ASCII,
 * and unbounded repetition of something that can match the empty string.
 *
 * JSON schema patterns search: without '^' any text may come before the
 * match, without '$' any text after it.  The rules describe the string as
 * written in JSON: '"' and '\' appear escaped, control characters as
 * \n, \t, \r, \b, \f or \u00XX, everything else as itself.
 */
#include "sample/schema_regex.h"

#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>

#define RX_MAX_NEST 64   /* nested groups */
#define RX_MAX_CPS 64    /* non-ASCII code points listed in one class */

typedef struct rx {
    em_gbuild *b;
    const char *p;  /* the pattern, p[0..len) */
    size_t len, i;  /* i: the next byte to read */
    const char *where;
    int nest;
    int32_t utf8;   /* rule: any non-ASCII character, -1 until made */
} rx;

/* A set of characters. */
typedef struct rclass {
    uint64_t ascii[2];        /* code points 0..127 */
    bool non_ascii;           /* every code point from 128 on */
    uint32_t cps[RX_MAX_CPS]; /* [n_cps] listed code points >= 128 */
    int n_cps;
} rclass;

/* A compiled piece of pattern. */
typedef struct rnode {
    int32_t rule;  /* -1 after an error */
    bool nullable; /* matches the empty string */
} rnode;

static const rnode RX_ERR = {-1, false};

static rnode rx_fail(rx *r, const char *what) {
    if (em_gbuild_status(r->b) == EM_OK)
        em_gbuild_fail(r->b, em_error(EM_ERR_UNSUPPORTED,
                                      "json_schema: pattern '%.*s' at %s: %s (at offset %zu)",
                                      (int)EM_MIN(r->len, 120), r->p, *r->where ? r->where : "/",
                                      what, r->i));
    return RX_ERR;
}

static bool class_has(const rclass *c, uint32_t cp) {
    return cp < 128 && ((c->ascii[cp >> 6] >> (cp & 63)) & 1);
}

static void class_add_range(rclass *c, uint32_t lo, uint32_t hi) {
    for (uint32_t cp = lo; cp <= hi && cp < 128; cp++) c->ascii[cp >> 6] |= 1ull << (cp & 63);
}

static bool class_add(rx *r, rclass *c, uint32_t cp) {
    if (cp < 128) {
        class_add_range(c, cp, cp);
        return true;
    }
    if (c->n_cps == RX_MAX_CPS) {
        rx_fail(r, "too many non-ASCII characters in one class");
        return false;
    }
    c->cps[c->n_cps++] = cp;
    return true;
}

static void class_union(rclass *c, const rclass *o) {
    c->ascii[0] |= o->ascii[0];
    c->ascii[1] |= o->ascii[1];
    c->non_ascii |= o->non_ascii;
}

static void class_negate(rclass *c) {
    c->ascii[0] = ~c->ascii[0];
    c->ascii[1] = ~c->ascii[1];
    c->non_ascii = !c->non_ascii;
}

/* Writes cp as UTF-8 into out (4 bytes); returns the length. */
static int utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) return out[0] = (char)cp, 1;
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Reads one UTF-8 code point of the pattern; false on malformed text. */
static bool next_cp(rx *r, uint32_t *cp) {
    const uint8_t *s = (const uint8_t *)r->p + r->i;
    size_t left = r->len - r->i;
    if (!left) return false;
    uint32_t c = s[0];
    int n = c < 0x80 ? 1 : c >= 0xC2 && c < 0xE0 ? 2 : c >= 0xE0 && c < 0xF0 ? 3
                                                  : c >= 0xF0 && c < 0xF5 ? 4 : 0;
    if (!n || (size_t)n > left) return false;
    if (n > 1) c &= 0x3F >> (n - 1);
    for (int k = 1; k < n; k++) {
        if ((s[k] & 0xC0) != 0x80) return false;
        c = c << 6 | (s[k] & 0x3F);
    }
    static const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < min_cp[n] || c > 0x10FFFF || (c >= 0xD800 && c < 0xE000)) return false;
    r->i += (size_t)n;
    *cp = c;
    return true;
}

/* The rule for one character of the class, as JSON writes it. */
static int32_t class_rule(rx *r, const rclass *c) {
    em_gbuild *b = r->b;
    em_gseq s = {0};
    int32_t rule = em_gb_rule(b);
    bool any = false;
    em_byteset plain = {{0}};
    bool has_plain = false;
    for (uint32_t cp = 0x20; cp < 0x80; cp++) {
        if (!class_has(c, cp) || cp == '"' || cp == '\\') continue;
        em_byteset_add(&plain, cp, cp);
        has_plain = true;
    }
    if (has_plain) {
        em_gs_set(b, &s, &plain);
        em_gb_alt(b, rule, &s);
        any = true;
    }
    /* The characters JSON escapes: '"', '\\' and the controls, as \X with
     * one set of letters, and \u000X, \u001X with one set of digits each
     * (three alternatives at most, so that a class stays a few stacks). */
    em_byteset named = {{0}}, low[2] = {{{0}}, {{0}}};
    bool has_named = false, has_low[2] = {false, false};
    static const char hex[] = "0123456789abcdef";
    for (uint32_t k = 0; k < 0x22; k++) {
        uint32_t cp = k < 0x20 ? k : k == 0x20 ? '"' : '\\';
        if (!class_has(c, cp)) continue;
        char letter = cp == '"' ? '"' : cp == '\\' ? '\\' : cp == '\n' ? 'n' : cp == '\t' ? 't'
                    : cp == '\r' ? 'r' : cp == '\b' ? 'b' : cp == '\f' ? 'f' : 0;
        if (letter) {
            em_byteset_add(&named, (uint8_t)letter, (uint8_t)letter);
            has_named = true;
        } else {
            em_byteset_add(&low[cp >> 4], (uint8_t)hex[cp & 15], (uint8_t)hex[cp & 15]);
            has_low[cp >> 4] = true;
        }
    }
    if (has_named) {
        em_gs_lit(b, &s, "\\", 1);
        em_gs_set(b, &s, &named);
        em_gb_alt(b, rule, &s);
        any = true;
    }
    for (int h = 0; h < 2; h++) {
        if (!has_low[h]) continue;
        em_gs_lit(b, &s, h ? "\\u001" : "\\u000", 5);
        em_gs_set(b, &s, &low[h]);
        em_gb_alt(b, rule, &s);
        any = true;
    }
    if (c->non_ascii) {
        if (r->utf8 < 0) r->utf8 = em_gb_utf8_rule(b);
        em_gs_ref(b, &s, r->utf8);
        em_gb_alt(b, rule, &s);
        any = true;
    } else {
        for (int k = 0; k < c->n_cps; k++) {
            char u[4];
            em_gs_lit(b, &s, u, (size_t)utf8_encode(c->cps[k], u));
            em_gb_alt(b, rule, &s);
            any = true;
        }
    }
    em_gseq_free(&s);
    if (!any) return rx_fail(r, "a character class that matches nothing").rule;
    return rule;
}

static int hex_val(char ch) {
    return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                                 : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

/* After a backslash: a class escape fills *cls and sets *is_class, any
 * other fills *cp.  in_class: inside [...], where \b is a backspace. */
static bool parse_escape(rx *r, bool in_class, rclass *cls, bool *is_class, uint32_t *cp) {
    *is_class = false;
    if (r->i >= r->len) return rx_fail(r, "a pattern that ends with '\\'"), false;
    char ch = r->p[r->i++];
    memset(cls, 0, sizeof *cls);
    switch (ch) {
    case 'd': case 'D':
        class_add_range(cls, '0', '9');
        break;
    case 'w': case 'W':
        class_add_range(cls, '0', '9'), class_add_range(cls, 'a', 'z');
        class_add_range(cls, 'A', 'Z'), class_add_range(cls, '_', '_');
        break;
    case 's': case 'S':
        class_add_range(cls, ' ', ' '), class_add_range(cls, '\t', '\r');
        break;
    case 'n': *cp = '\n'; return true;
    case 't': *cp = '\t'; return true;
    case 'r': *cp = '\r'; return true;
    case 'f': *cp = '\f'; return true;
    case 'v': *cp = '\v'; return true;
    case '0': *cp = 0; return true;
    case 'b':
        if (in_class) {
            *cp = '\b';
            return true;
        }
        return rx_fail(r, "word boundaries (\\b) are not supported"), false;
    case 'x': case 'u': {
        int n = ch == 'x' ? 2 : 4;
        uint32_t v = 0;
        for (int k = 0; k < n; k++) {
            int h = r->i < r->len ? hex_val(r->p[r->i]) : -1;
            if (h < 0) return rx_fail(r, "a malformed \\x or \\u escape"), false;
            v = v << 4 | (uint32_t)h;
            r->i++;
        }
        if (v >= 0xD800 && v < 0xE000)
            return rx_fail(r, "surrogate escapes are not supported"), false;
        *cp = v;
        return true;
    }
    default:
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '1' && ch <= '9') ||
            (unsigned char)ch >= 0x80) {
            char msg[64];
            snprintf(msg, sizeof msg, "the escape '\\%c' is not supported", ch >= 32 && ch < 127 ? ch : '?');
            return rx_fail(r, msg), false;
        }
        *cp = (uint8_t)ch; /* escaped punctuation stands for itself */
        return true;
    }
    if (ch >= 'A' && ch <= 'Z') class_negate(cls);
    *is_class = true;
    return true;
}

/* [...] with r->i just after '['. */
static bool parse_class(rx *r, rclass *out) {
    memset(out, 0, sizeof *out);
    bool negate = r->i < r->len && r->p[r->i] == '^';
    if (negate) r->i++;
    bool first = true;
    for (;;) {
        if (r->i >= r->len) return rx_fail(r, "an unterminated character class"), false;
        if (r->p[r->i] == ']' && !first) {
            r->i++;
            break;
        }
        first = false;
        uint32_t lo;
        rclass esc_cls;
        bool is_class = false;
        if (r->p[r->i] == '\\') {
            r->i++;
            if (!parse_escape(r, true, &esc_cls, &is_class, &lo)) return false;
        } else if (!next_cp(r, &lo)) {
            return rx_fail(r, "malformed UTF-8"), false;
        }
        if (is_class) {
            class_union(out, &esc_cls);
            continue;
        }
        if (r->i + 1 < r->len && r->p[r->i] == '-' && r->p[r->i + 1] != ']') {
            r->i++;
            uint32_t hi;
            if (r->p[r->i] == '\\') {
                r->i++;
                if (!parse_escape(r, true, &esc_cls, &is_class, &hi)) return false;
                if (is_class) return rx_fail(r, "a range that ends in a class escape"), false;
            } else if (!next_cp(r, &hi)) {
                return rx_fail(r, "malformed UTF-8"), false;
            }
            if (hi < lo) return rx_fail(r, "a range out of order"), false;
            if (hi >= 128) return rx_fail(r, "ranges beyond ASCII are not supported"), false;
            class_add_range(out, lo, hi);
        } else if (!class_add(r, out, lo)) {
            return false;
        }
    }
    if (negate) {
        if (out->n_cps) return rx_fail(r, "negated classes with non-ASCII members are not "
                                          "supported"), false;
        class_negate(out);
    }
    return true;
}

static rnode parse_alt(rx *r);

/* One atom, or RX_ERR; *none when the next thing is not an atom ('|',
 * ')' or the end). */
static rnode parse_atom(rx *r, bool *none) {
    *none = false;
    if (r->i >= r->len) return *none = true, RX_ERR;
    char ch = r->p[r->i];
    rclass cls;
    memset(&cls, 0, sizeof cls);
    switch (ch) {
    case '|': case ')':
        *none = true;
        return RX_ERR;
    case '(': {
        r->i++;
        if (r->i < r->len && r->p[r->i] == '?') {
            r->i++;
            if (r->i < r->len && r->p[r->i] == ':') {
                r->i++;
            } else if (r->i + 1 < r->len && (r->p[r->i] == '<' || r->p[r->i] == 'P') &&
                       r->p[r->i + 1] != '=' && r->p[r->i + 1] != '!') {
                while (r->i < r->len && r->p[r->i] != '>') r->i++;
                if (r->i >= r->len) return rx_fail(r, "an unterminated group name");
                r->i++;
            } else {
                return rx_fail(r, "lookaround and other (? groups are not supported");
            }
        }
        if (++r->nest > RX_MAX_NEST) return rx_fail(r, "groups nested too deeply");
        rnode n = parse_alt(r);
        r->nest--;
        if (n.rule < 0) return n;
        if (r->i >= r->len || r->p[r->i] != ')') return rx_fail(r, "an unclosed '('");
        r->i++;
        return n;
    }
    case '[':
        r->i++;
        if (!parse_class(r, &cls)) return RX_ERR;
        break;
    case '.':
        r->i++;
        class_add_range(&cls, 0, 127);
        cls.ascii[0] &= ~(1ull << '\n');
        cls.ascii[0] &= ~(1ull << '\r');
        cls.non_ascii = true;
        break;
    case '\\': {
        r->i++;
        bool is_class;
        uint32_t cp;
        if (!parse_escape(r, false, &cls, &is_class, &cp)) return RX_ERR;
        if (!is_class) class_add(r, &cls, cp);
        break;
    }
    case '^': case '$':
        return rx_fail(r, "anchors ('^', '$') other than at the ends are not supported");
    case '*': case '+': case '?': case '{':
        return rx_fail(r, "a quantifier with nothing to repeat");
    default: {
        uint32_t cp;
        if (!next_cp(r, &cp)) return rx_fail(r, "malformed UTF-8");
        if (!class_add(r, &cls, cp)) return RX_ERR;
    }
    }
    int32_t rule = class_rule(r, &cls);
    return (rnode){rule, false};
}

/* A decimal number in a {m,n} quantifier. */
static bool parse_count(rx *r, int64_t *out) {
    size_t start = r->i;
    int64_t v = 0;
    while (r->i < r->len && r->p[r->i] >= '0' && r->p[r->i] <= '9') {
        v = v * 10 + (r->p[r->i++] - '0');
        if (v > 1000000) return rx_fail(r, "a repetition count too large"), false;
    }
    *out = v;
    return r->i > start;
}

/* Applies a quantifier after an atom, if one follows. */
static rnode parse_quant(rx *r, rnode a) {
    if (r->i >= r->len) return a;
    int64_t lo, hi;
    char ch = r->p[r->i];
    if (ch == '?') lo = 0, hi = 1;
    else if (ch == '*') lo = 0, hi = -1;
    else if (ch == '+') lo = 1, hi = -1;
    else if (ch == '{') {
        r->i++;
        if (!parse_count(r, &lo)) return rx_fail(r, "a malformed {m,n} quantifier");
        hi = lo;
        if (r->i < r->len && r->p[r->i] == ',') {
            r->i++;
            hi = -1;
            if (r->i < r->len && r->p[r->i] != '}' && !parse_count(r, &hi))
                return rx_fail(r, "a malformed {m,n} quantifier");
        }
        if (r->i >= r->len || r->p[r->i] != '}') return rx_fail(r, "a malformed {m,n} quantifier");
        if (hi >= 0 && hi < lo) return rx_fail(r, "a {m,n} quantifier with n < m");
    } else {
        return a;
    }
    r->i++;
    if (r->i < r->len && r->p[r->i] == '?') r->i++; /* lazy: the same language */
    else if (r->i < r->len && r->p[r->i] == '+')
        return rx_fail(r, "possessive quantifiers are not supported");
    if (hi < 0 && a.nullable)
        return rx_fail(r, "unbounded repetition of something that can match the empty string");
    if (r->i < r->len && (r->p[r->i] == '*' || r->p[r->i] == '+' || r->p[r->i] == '?' ||
                          r->p[r->i] == '{'))
        return rx_fail(r, "a quantifier on a quantifier");
    int32_t rule = em_gb_repeat(r->b, a.rule, lo, hi);
    return (rnode){rule, lo == 0 || a.nullable};
}

/* A sequence of quantified atoms (possibly empty). */
static rnode parse_concat(rx *r) {
    em_gseq s = {0};
    bool nullable = true;
    for (;;) {
        bool none;
        rnode a = parse_atom(r, &none);
        if (none) break;
        if (a.rule >= 0) a = parse_quant(r, a);
        if (a.rule < 0) {
            em_gseq_free(&s);
            return RX_ERR;
        }
        em_gs_ref(r->b, &s, a.rule);
        nullable &= a.nullable;
    }
    int32_t rule = em_gb_seq_rule(r->b, &s);
    em_gseq_free(&s);
    return (rnode){rule, nullable};
}

static rnode parse_alt(rx *r) {
    int32_t rule = em_gb_rule(r->b);
    em_gseq s = {0};
    bool nullable = false;
    for (;;) {
        rnode c = parse_concat(r);
        if (c.rule < 0) {
            em_gseq_free(&s);
            return RX_ERR;
        }
        em_gs_ref(r->b, &s, c.rule);
        em_gb_alt(r->b, rule, &s);
        nullable |= c.nullable;
        if (r->i < r->len && r->p[r->i] == '|') {
            r->i++;
            continue;
        }
        break;
    }
    em_gseq_free(&s);
    return (rnode){em_gbuild_status(r->b) == EM_OK ? rule : -1, nullable};
}

int32_t em_schema_regex(em_gbuild *b, const char *pattern, size_t len, int32_t any_char,
                        const char *where) {
    rx r = {b, pattern, len, 0, where ? where : "", 0, -1};
    bool anchored_start = len > 0 && pattern[0] == '^';
    /* '$' at the end unless it is escaped (an odd number of backslashes). */
    bool anchored_end = false;
    if (len > (size_t)anchored_start && pattern[len - 1] == '$') {
        size_t k = len - 1, n_bs = 0;
        while (k > 0 && pattern[k - 1] == '\\') k--, n_bs++;
        anchored_end = n_bs % 2 == 0;
    }
    r.i = anchored_start ? 1 : 0;
    r.len = anchored_end ? len - 1 : len;
    rnode body = parse_alt(&r);
    if (body.rule < 0) return -1;
    if (r.i != r.len) return rx_fail(&r, "an unbalanced ')'").rule;
    r.len = len; /* for messages */
    em_gseq s = {0};
    int32_t any = anchored_start && anchored_end ? -1 : em_gb_repeat(b, any_char, 0, -1);
    if (!anchored_start) em_gs_ref(b, &s, any);
    em_gs_ref(b, &s, body.rule);
    if (!anchored_end) em_gs_ref(b, &s, any);
    int32_t rule = em_gb_seq_rule(b, &s);
    em_gseq_free(&s);
    return em_gbuild_status(b) == EM_OK ? rule : -1;
}
