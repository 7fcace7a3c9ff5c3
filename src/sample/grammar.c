/*
 * grammar.c - a byte-level grammar, the parser that follows it, and the
 * token mask it computes over a vocabulary trie.
 *
 * Representation.  The rules of a grammar are packed into one array of
 * element codes: each alternative is its elements followed by END.  An
 * element is a byte set (an index into the grammar's em_byteset table) or a
 * rule reference.  A position is an index into that array.
 *
 * Parsing.  The parser is a pushdown automaton run on all its choices at
 * once (the grammar may be ambiguous: "a"|"ab" before "b" has two parses
 * of "ab").  A parser stack is a chain of nodes (position, parent): the top
 * node's position is the next element to match, each parent's position is
 * where to resume when the alternative below it ends.  Stacks share their
 * tails, and nodes are hash-consed, so one stack is one node id and equal
 * stacks are equal ids.  A state is a set of such ids, all of which wait on
 * a byte set, plus an "accepting" flag for the empty stack (the root rule
 * has ended).  Following a byte keeps the stacks whose top set holds it,
 * moves them one element on and expands: END pops to the parent, a rule
 * reference pushes every alternative of the rule.  A reference that is the
 * last element of its alternative pushes nothing for the way back (a tail
 * call), so "x*" written as R ::= x R | () runs in constant stack depth.
 * Expansion visits each (position, parent) pair once per step, which keeps
 * ambiguous grammars from exploding, and a step has a work budget.
 *
 * Masking.  A token is allowed when the parser can follow all its bytes.
 * Tokens are walked as a trie of their bytes (em_token_trie, one per
 * vocabulary), so the common prefix of many tokens is parsed once and a
 * byte that no stack accepts prunes its whole subtree: in a JSON structure
 * position only a few thousand trie nodes out of ~400K are visited.  Sets
 * of stacks are interned and the transitions between them memoized per
 * byte class (bytes no set of the grammar tells apart).  Inside free text
 * most of the trie survives; there every plain byte leads back to the
 * same set, so trie subtrees made only of plain bytes are allowed whole,
 * and in a string of bounded length they follow one chain of sets, so
 * their tokens are decided by length.  Finished masks are also cached by
 * state (a small LRU of bitsets keyed by the sorted stack ids).
 *
 * Memory.  Nodes are never freed during a step; after an accepted token,
 * when the pool has grown past a threshold, it is rebuilt from the stacks
 * still alive (and the mask cache, whose keys are node ids, is cleared).
 */
#include "core/core.h"
#include "sample/grammar_build.h"
#include "tokenizer/vocab.h"

#include <math.h>
#include <stdlib.h>

/* Element codes: the low 2 bits are the kind, the rest the argument. */
enum { EL_END = 0, EL_SET = 1, EL_REF = 2 };
#define EL_KIND(e) ((e) & 3)
#define EL_ARG(e) ((e) >> 2)
#define EL_MAKE(kind, arg) ((int32_t)((uint32_t)(arg) << 2 | (uint32_t)(kind)))

/* Limits that keep a hostile schema from eating memory or time. */
#define EM_G_MAX_ELEMS (1 << 22)  /* element codes in one grammar           */
#define EM_G_MAX_RULES (1 << 20)  /* rules in one grammar                   */
#define EM_G_MAX_DEPTH 512        /* nodes in one parser stack (nesting)    */
#define EM_G_MAX_NEST 2048        /* expansions in a row without a byte     */
#define EM_G_MAX_WORK 200000      /* (position, parent) pairs in one step   */
#define EM_G_MAX_STACKS 4096      /* stacks in one state                    */
#define EM_G_MAX_MASK_WORK 3000000 /* pairs expanded by one mask or token:
                                    * ~0.1-0.3 s; only grammars with very
                                    * many parses at once (an unanchored
                                    * pattern of dozens of '.') get there */
#define EM_G_GC_NODES (1 << 20)   /* pool size that triggers a rebuild      */
#define EM_G_MAX_NODES (1 << 25)  /* pool size that fails a step            */
#define EM_MASK_CACHE 16          /* cached masks per state                 */

/* ------------------------------------------------------------ builder */

typedef struct galt {
    int32_t rule; /* the rule this alternative belongs to */
    int32_t off;  /* first element code in em_gbuild.codes */
    int32_t n;    /* element codes                         */
} galt;

struct em_gbuild {
    em_status status;
    int32_t n_rules;
    galt *alts; /* [n_alts] in the order they were added */
    int32_t n_alts, cap_alts;
    int32_t *codes; /* [n_codes] elements of every alternative */
    int32_t n_codes, cap_codes;
    em_byteset *sets; /* [n_sets] distinct byte sets */
    int32_t n_sets, cap_sets;
};

/* Grows *p (elements of size elem, capacity *cap) to hold need elements. */
static bool grow(void **p, int32_t *cap, int64_t need, size_t elem) {
    if (need <= *cap) return true;
    int64_t n = *cap ? *cap : 16;
    while (n < need) n *= 2;
    if (n > INT32_MAX) return false;
    void *q = realloc(*p, (size_t)n * elem);
    if (!q) return false;
    *p = q;
    *cap = (int32_t)n;
    return true;
}

em_status em_gbuild_init(em_gbuild **out) {
    em_gbuild *b = calloc(1, sizeof *b);
    if (!b) return em_error(EM_ERR_NOMEM, "grammar: out of memory");
    *out = b;
    return EM_OK;
}

void em_gbuild_free(em_gbuild *b) {
    if (!b) return;
    free(b->alts);
    free(b->codes);
    free(b->sets);
    free(b);
}

em_status em_gbuild_status(const em_gbuild *b) {
    return b->status;
}

em_status em_gbuild_fail(em_gbuild *b, em_status st) {
    if (b->status == EM_OK) b->status = st;
    return st;
}

static void gb_nomem(em_gbuild *b) {
    if (b->status == EM_OK) b->status = em_error(EM_ERR_NOMEM, "grammar: out of memory");
}

static void gb_too_large(em_gbuild *b) {
    if (b->status == EM_OK)
        b->status = em_error(EM_ERR_UNSUPPORTED, "json_schema: the schema makes a grammar too "
                                                 "large (over %d elements)", EM_G_MAX_ELEMS);
}

int32_t em_gb_rule(em_gbuild *b) {
    if (b->status != EM_OK) return -1;
    if (b->n_rules >= EM_G_MAX_RULES) {
        gb_too_large(b);
        return -1;
    }
    return b->n_rules++;
}

static void gs_push(em_gbuild *b, em_gseq *s, int32_t code) {
    if (b->status != EM_OK) return;
    if (s->n >= EM_G_MAX_ELEMS) {
        gb_too_large(b);
        return;
    }
    if (!grow((void **)&s->v, &s->cap, (int64_t)s->n + 1, sizeof *s->v)) {
        gb_nomem(b);
        return;
    }
    s->v[s->n++] = code;
}

void em_gb_alt(em_gbuild *b, int32_t rule, em_gseq *seq) {
    if (b->status != EM_OK || rule < 0) {
        seq->n = 0;
        return;
    }
    if ((int64_t)b->n_codes + seq->n + 1 > EM_G_MAX_ELEMS) {
        gb_too_large(b);
        return;
    }
    if (!grow((void **)&b->alts, &b->cap_alts, (int64_t)b->n_alts + 1, sizeof *b->alts) ||
        !grow((void **)&b->codes, &b->cap_codes, (int64_t)b->n_codes + seq->n, sizeof *b->codes)) {
        gb_nomem(b);
        return;
    }
    b->alts[b->n_alts++] = (galt){rule, b->n_codes, seq->n};
    if (seq->n) memcpy(b->codes + b->n_codes, seq->v, sizeof *seq->v * (size_t)seq->n);
    b->n_codes += seq->n;
    seq->n = 0;
}

void em_gb_alt_empty(em_gbuild *b, int32_t rule) {
    em_gseq s = {0};
    em_gb_alt(b, rule, &s);
}

void em_gs_ref(em_gbuild *b, em_gseq *s, int32_t rule) {
    if (rule < 0) return; /* the failure that made it is already recorded */
    gs_push(b, s, EL_MAKE(EL_REF, rule));
}

void em_gs_set(em_gbuild *b, em_gseq *s, const em_byteset *set) {
    if (b->status != EM_OK) return;
    int32_t id = -1;
    for (int32_t i = 0; i < b->n_sets && id < 0; i++)
        if (!memcmp(&b->sets[i], set, sizeof *set)) id = i;
    if (id < 0) {
        if (!grow((void **)&b->sets, &b->cap_sets, (int64_t)b->n_sets + 1, sizeof *b->sets)) {
            gb_nomem(b);
            return;
        }
        id = b->n_sets++;
        b->sets[id] = *set;
    }
    gs_push(b, s, EL_MAKE(EL_SET, id));
}

void em_gs_range(em_gbuild *b, em_gseq *s, unsigned lo, unsigned hi) {
    em_byteset set = {{0}};
    em_byteset_add(&set, lo, hi);
    em_gs_set(b, s, &set);
}

void em_gs_lit(em_gbuild *b, em_gseq *s, const char *text, size_t n) {
    for (size_t i = 0; i < n; i++) em_gs_range(b, s, (uint8_t)text[i], (uint8_t)text[i]);
}

void em_gseq_free(em_gseq *s) {
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

int32_t em_gb_seq_rule(em_gbuild *b, em_gseq *seq) {
    int32_t r = em_gb_rule(b);
    em_gb_alt(b, r, seq);
    return r;
}

int32_t em_gb_lit_rule(em_gbuild *b, const char *text) {
    em_gseq s = {0};
    em_gs_lit(b, &s, text, strlen(text));
    int32_t r = em_gb_seq_rule(b, &s);
    em_gseq_free(&s);
    return r;
}

int32_t em_gb_opt(em_gbuild *b, int32_t x) {
    em_gseq s = {0};
    int32_t r = em_gb_rule(b);
    em_gs_ref(b, &s, x);
    em_gb_alt(b, r, &s);
    em_gb_alt_empty(b, r);
    em_gseq_free(&s);
    return r;
}

int32_t em_gb_repeat(em_gbuild *b, int32_t x, int64_t lo, int64_t hi) {
    if (b->status != EM_OK || x < 0) return -1;
    if (lo < 0) lo = 0;
    if (lo > EM_GB_MAX_REPEAT || hi > EM_GB_MAX_REPEAT) {
        if (b->status == EM_OK)
            b->status = em_error(EM_ERR_UNSUPPORTED, "json_schema: a repetition bound above %d",
                                 EM_GB_MAX_REPEAT);
        return -1;
    }
    em_gseq s = {0};
    /* The optional tail: hi < 0 is R ::= x R | (), else a chain of hi - lo
     * nested optionals T_k ::= x T_(k-1) | (), so that "at most" needs no
     * counter. */
    int32_t tail = em_gb_rule(b);
    if (hi < 0) {
        em_gs_ref(b, &s, x);
        em_gs_ref(b, &s, tail);
        em_gb_alt(b, tail, &s);
        em_gb_alt_empty(b, tail);
    } else {
        em_gb_alt_empty(b, tail);
        for (int64_t k = lo; k < hi; k++) {
            int32_t t = em_gb_rule(b);
            em_gs_ref(b, &s, x);
            em_gs_ref(b, &s, tail);
            em_gb_alt(b, t, &s);
            em_gb_alt_empty(b, t);
            tail = t;
        }
    }
    int32_t r = em_gb_rule(b);
    for (int64_t k = 0; k < lo; k++) em_gs_ref(b, &s, x);
    em_gs_ref(b, &s, tail);
    em_gb_alt(b, r, &s);
    em_gseq_free(&s);
    return b->status == EM_OK ? r : -1;
}

int32_t em_gb_utf8_rule(em_gbuild *b) {
    /* RFC 3629's table of well-formed byte sequences. */
    static const uint8_t utf8[][4][2] = {
        {{0xC2, 0xDF}, {0x80, 0xBF}},
        {{0xE0, 0xE0}, {0xA0, 0xBF}, {0x80, 0xBF}},
        {{0xE1, 0xEC}, {0x80, 0xBF}, {0x80, 0xBF}},
        {{0xED, 0xED}, {0x80, 0x9F}, {0x80, 0xBF}},
        {{0xEE, 0xEF}, {0x80, 0xBF}, {0x80, 0xBF}},
        {{0xF0, 0xF0}, {0x90, 0xBF}, {0x80, 0xBF}, {0x80, 0xBF}},
        {{0xF1, 0xF3}, {0x80, 0xBF}, {0x80, 0xBF}, {0x80, 0xBF}},
        {{0xF4, 0xF4}, {0x80, 0x8F}, {0x80, 0xBF}, {0x80, 0xBF}},
    };
    em_gseq s = {0};
    int32_t r = em_gb_rule(b);
    for (size_t i = 0; i < sizeof utf8 / sizeof utf8[0]; i++) {
        for (int k = 0; k < 4 && utf8[i][k][0]; k++) em_gs_range(b, &s, utf8[i][k][0], utf8[i][k][1]);
        em_gb_alt(b, r, &s);
    }
    em_gseq_free(&s);
    return r;
}

/* ------------------------------------------------------------ grammar */

struct em_grammar {
    int32_t n_rules;
    int32_t *rule_alt;  /* [n_rules + 1] rule r's alternatives: alt_pos[rule_alt[r]..rule_alt[r+1]) */
    int32_t *alt_pos;   /* [n_alts] position of each alternative's first element */
    int32_t n_alts;
    int32_t *el;        /* [n_el] element codes; every alternative ends with END */
    int32_t n_el;
    em_byteset *sets;   /* [n_sets] */
    int32_t n_sets;
    int32_t start;      /* position of the start sequence: REF root, END */
    /* Bytes that every byte set of the grammar treats alike form a class;
     * the parser cannot tell them apart, so transitions are memoized per
     * class. */
    uint8_t byte_class[256];  /* [256] class of each byte                 */
    uint8_t class_rep[256];   /* [classes] one byte of each class         */
    uint8_t plain_class[256]; /* [n_plain_classes] classes holding a plain
                               * string byte, each once                   */
    int32_t n_plain_classes;
};

void em_grammar_free(em_grammar *g) {
    if (!g) return;
    free(g->rule_alt);
    free(g->alt_pos);
    free(g->el);
    free(g->sets);
    free(g);
}

void em_grammar_size(const em_grammar *g, int32_t *n_rules, int32_t *n_elems) {
    if (n_rules) *n_rules = g ? g->n_rules : 0;
    if (n_elems) *n_elems = g ? g->n_el : 0;
}

/* Rejects left recursion: a rule that can reach itself through references
 * that are each preceded only by rules matching the empty string.  The
 * parser would expand such a rule forever. */
static em_status check_left_recursion(const em_grammar *g) {
    int32_t n = g->n_rules;
    uint8_t *nullable = calloc((size_t)n, 1);
    int32_t *edge_off = calloc((size_t)n + 1, sizeof *edge_off);
    int32_t *edges = NULL, *stack = NULL, *iter = NULL;
    uint8_t *color = calloc((size_t)n, 1);
    em_status st = EM_OK;
    if (!nullable || !edge_off || !color) goto nomem;

    for (bool changed = true; changed;) {
        changed = false;
        for (int32_t r = 0; r < n; r++) {
            if (nullable[r]) continue;
            for (int32_t a = g->rule_alt[r]; a < g->rule_alt[r + 1] && !nullable[r]; a++) {
                int32_t p = g->alt_pos[a];
                while (EL_KIND(g->el[p]) == EL_REF && nullable[EL_ARG(g->el[p])]) p++;
                if (EL_KIND(g->el[p]) == EL_END) nullable[r] = 1, changed = true;
            }
        }
    }
    /* Edges r -> s where s may be the first thing r matches. */
    int64_t n_edges = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int32_t r = 0; r < n; r++) {
            if (pass == 1) edge_off[r + 1] = edge_off[r];
            for (int32_t a = g->rule_alt[r]; a < g->rule_alt[r + 1]; a++) {
                for (int32_t p = g->alt_pos[a]; EL_KIND(g->el[p]) == EL_REF; p++) {
                    if (pass == 0) n_edges++;
                    else edges[edge_off[r + 1]++] = EL_ARG(g->el[p]);
                    if (!nullable[EL_ARG(g->el[p])]) break;
                }
            }
        }
        if (pass == 0 && !(edges = malloc(sizeof *edges * (size_t)(n_edges + 1)))) goto nomem;
    }
    /* Depth-first search for a cycle, without recursion: color 1 = on the
     * current path, 2 = finished. */
    stack = malloc(sizeof *stack * (size_t)n);
    iter = malloc(sizeof *iter * (size_t)n);
    if (!stack || !iter) goto nomem;
    for (int32_t r0 = 0; r0 < n && st == EM_OK; r0++) {
        if (color[r0]) continue;
        int32_t sp = 0;
        stack[sp] = r0, iter[sp] = edge_off[r0], color[r0] = 1;
        while (sp >= 0 && st == EM_OK) {
            int32_t r = stack[sp];
            if (iter[sp] == edge_off[r + 1]) {
                color[r] = 2;
                sp--;
                continue;
            }
            int32_t s = edges[iter[sp]++];
            if (color[s] == 1) {
                st = em_error(EM_ERR_UNSUPPORTED, "json_schema: left recursion (a $ref that "
                                                  "reaches itself before any text)");
            } else if (color[s] == 0) {
                color[s] = 1;
                sp++;
                stack[sp] = s, iter[sp] = edge_off[s];
            }
        }
    }
    goto done;
nomem:
    st = em_error(EM_ERR_NOMEM, "grammar: out of memory");
done:
    free(nullable);
    free(edge_off);
    free(edges);
    free(stack);
    free(iter);
    free(color);
    return st;
}

/* Partitions the bytes by their membership in every set of the grammar,
 * refining one set at a time. */
static void compute_byte_classes(em_grammar *g) {
    memset(g->byte_class, 0, sizeof g->byte_class);
    for (int32_t k = 0; k < g->n_sets; k++) {
        /* New class of (old class, member of set k). */
        int16_t split[256][2];
        memset(split, 0xff, sizeof split);
        int n = 0;
        for (int b = 0; b < 256; b++) {
            int in = em_byteset_has(&g->sets[k], (unsigned)b);
            int16_t *slot = &split[g->byte_class[b]][in];
            if (*slot < 0) *slot = (int16_t)n++;
            g->byte_class[b] = (uint8_t)*slot;
        }
    }
    for (int b = 255; b >= 0; b--) g->class_rep[g->byte_class[b]] = (uint8_t)b;
    bool seen[256] = {false};
    g->n_plain_classes = 0;
    for (unsigned b = 0x20; b < 0x80; b++) {
        if (b == '"' || b == '\\' || seen[g->byte_class[b]]) continue;
        seen[g->byte_class[b]] = true;
        g->plain_class[g->n_plain_classes++] = g->byte_class[b];
    }
}

em_status em_gbuild_finish(em_gbuild *b, int32_t root, em_grammar **out) {
    if (b->status != EM_OK) return b->status;
    if (root < 0 || root >= b->n_rules)
        return em_error(EM_ERR_INTERNAL, "grammar: no root rule");
    em_grammar *g = calloc(1, sizeof *g);
    if (!g) return em_error(EM_ERR_NOMEM, "grammar: out of memory");
    g->n_rules = b->n_rules;
    g->n_alts = b->n_alts;
    g->n_sets = b->n_sets;
    g->n_el = b->n_codes + b->n_alts + 2;
    g->rule_alt = calloc((size_t)g->n_rules + 1, sizeof *g->rule_alt);
    g->alt_pos = malloc(sizeof *g->alt_pos * (size_t)(g->n_alts + 1));
    g->el = malloc(sizeof *g->el * (size_t)g->n_el);
    g->sets = malloc(sizeof *g->sets * (size_t)(g->n_sets + 1));
    if (!g->rule_alt || !g->alt_pos || !g->el || !g->sets) {
        em_grammar_free(g);
        return em_error(EM_ERR_NOMEM, "grammar: out of memory");
    }
    if (g->n_sets) memcpy(g->sets, b->sets, sizeof *g->sets * (size_t)g->n_sets);
    /* Group the alternatives by rule (a counting sort keeps their order). */
    for (int32_t a = 0; a < b->n_alts; a++) g->rule_alt[b->alts[a].rule + 1]++;
    for (int32_t r = 0; r < g->n_rules; r++) {
        if (g->rule_alt[r + 1] == 0) {
            em_grammar_free(g);
            return em_error(EM_ERR_INTERNAL, "grammar: rule %d has no alternative", (int)r);
        }
        g->rule_alt[r + 1] += g->rule_alt[r];
    }
    int32_t *fill = malloc(sizeof *fill * (size_t)(g->n_rules + 1));
    if (!fill) {
        em_grammar_free(g);
        return em_error(EM_ERR_NOMEM, "grammar: out of memory");
    }
    memcpy(fill, g->rule_alt, sizeof *fill * (size_t)(g->n_rules + 1));
    int32_t p = 0;
    for (int32_t a = 0; a < b->n_alts; a++) {
        const galt *al = &b->alts[a];
        g->alt_pos[fill[al->rule]++] = p;
        for (int32_t i = 0; i < al->n; i++) {
            int32_t c = b->codes[al->off + i];
            if (EL_KIND(c) == EL_REF && EL_ARG(c) >= g->n_rules) {
                free(fill);
                em_grammar_free(g);
                return em_error(EM_ERR_INTERNAL, "grammar: reference to rule %d", (int)EL_ARG(c));
            }
            g->el[p++] = c;
        }
        g->el[p++] = EL_MAKE(EL_END, 0);
    }
    free(fill);
    g->start = p;
    g->el[p++] = EL_MAKE(EL_REF, root);
    g->el[p++] = EL_MAKE(EL_END, 0);
    compute_byte_classes(g);
    em_status st = check_left_recursion(g);
    if (st != EM_OK) {
        em_grammar_free(g);
        return st;
    }
    *out = g;
    return EM_OK;
}

/* --------------------------------------------------------- token trie */

/*
 * The trie is stored in preorder: node i's first child (if any) is i + 1,
 * and skip[i] is the node after i's whole subtree, so a walk that rejects
 * node i jumps to skip[i].  Tokens are sorted by their bytes, which is the
 * same order, so the tokens whose text ends at node i are
 * tok[tok_off[i] .. tok_off[i + 1]).
 */
struct em_token_trie {
    const em_vocab *vocab;
    int32_t n_vocab;
    int32_t n_nodes;
    uint8_t *byte;     /* [n_nodes] the byte leading into the node (root: 0) */
    uint16_t *depth;   /* [n_nodes] bytes from the root                      */
    int32_t *skip;     /* [n_nodes] first node after the subtree             */
    int32_t *tok_off;  /* [n_nodes + 1] into tok                             */
    em_token *tok;     /* [n_tok] tokens with non-empty text, in byte order  */
    int32_t n_tok;
    int32_t max_depth; /* longest token text in bytes                        */
    uint8_t *plain;    /* [n_nodes] 1: the node's byte and every byte below it
                        * are "plain" string bytes (printable ASCII other
                        * than '"' and '\\')                                */
    em_token *eog;     /* [n_eog] tokens that end generation                 */
    int32_t n_eog;
};

typedef struct trie_piece {
    const uint8_t *p; /* the token's bytes */
    uint32_t n;
    em_token id;
} trie_piece;

static int piece_cmp(const void *a, const void *b) {
    const trie_piece *x = a, *y = b;
    uint32_t n = x->n < y->n ? x->n : y->n;
    int c = n ? memcmp(x->p, y->p, n) : 0;
    if (c) return c;
    if (x->n != y->n) return x->n < y->n ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

void em_token_trie_free(em_token_trie *t) {
    if (!t) return;
    free(t->byte);
    free(t->depth);
    free(t->plain);
    free(t->skip);
    free(t->tok_off);
    free(t->tok);
    free(t->eog);
    free(t);
}

em_status em_token_trie_init(em_token_trie **out, const em_vocab *vocab) {
    if (!out || !vocab) return em_error(EM_ERR_INVALID_ARG, "token trie: no vocabulary");
    int32_t n_vocab = em_vocab_n_tokens(vocab);
    if (n_vocab <= 0) return em_error(EM_ERR_INVALID_ARG, "token trie: empty vocabulary");
    em_token_trie *t = calloc(1, sizeof *t);
    trie_piece *pc = malloc(sizeof *pc * (size_t)n_vocab);
    int32_t *path = NULL;
    if (!t || !pc) goto nomem;
    t->vocab = vocab;
    t->n_vocab = n_vocab;
    t->eog = malloc(sizeof *t->eog * (size_t)n_vocab);
    if (!t->eog) goto nomem;
    /* The pieces are the vocabulary's own decoded texts (what
     * em_token_to_piece returns without special rendering), read in
     * place. */
    int64_t total = 0;
    for (em_token id = 0; id < n_vocab; id++) {
        if (em_vocab_is_eog(vocab, id)) {
            t->eog[t->n_eog++] = id;
            continue;
        }
        int32_t n = em_token_to_piece(vocab, id, NULL, 0, false);
        if (n == INT32_MIN) continue;
        n = -n;
        if (n <= 0 || n > UINT16_MAX) continue; /* control tokens, absurd lengths: banned */
        pc[t->n_tok++] = (trie_piece){(const uint8_t *)vocab->piece + vocab->piece_off[id],
                                      (uint32_t)n, id};
        total += n;
    }
    qsort(pc, (size_t)t->n_tok, sizeof *pc, piece_cmp);
    int64_t cap = total + 1;
    t->byte = malloc((size_t)cap);
    t->depth = malloc(sizeof *t->depth * (size_t)cap);
    t->skip = malloc(sizeof *t->skip * (size_t)cap);
    t->tok_off = malloc(sizeof *t->tok_off * (size_t)(cap + 1));
    t->tok = malloc(sizeof *t->tok * (size_t)(t->n_tok + 1));
    path = malloc(sizeof *path * (UINT16_MAX + 2));
    if (!t->byte || !t->depth || !t->skip || !t->tok_off || !t->tok || !path) goto nomem;

    int32_t n_nodes = 1;
    t->byte[0] = 0, t->depth[0] = 0, t->tok_off[0] = 0;
    path[0] = 0;
    uint32_t prev_n = 0;
    const uint8_t *prev = NULL;
    for (int32_t k = 0; k < t->n_tok; k++) {
        const trie_piece *x = &pc[k];
        uint32_t lcp = 0;
        while (prev && lcp < prev_n && lcp < x->n && prev[lcp] == x->p[lcp]) lcp++;
        /* Close the nodes of the previous token below the common prefix. */
        for (uint32_t d = prev_n; d > lcp; d--) t->skip[path[d]] = n_nodes;
        for (uint32_t d = lcp + 1; d <= x->n; d++) {
            int32_t i = n_nodes++;
            t->byte[i] = x->p[d - 1];
            t->depth[i] = (uint16_t)d;
            t->tok_off[i] = k;
            path[d] = i;
        }
        t->tok[k] = x->id;
        if ((int32_t)x->n > t->max_depth) t->max_depth = (int32_t)x->n;
        prev = x->p;
        prev_n = x->n;
    }
    for (uint32_t d = prev_n; d > 0; d--) t->skip[path[d]] = n_nodes;
    t->skip[0] = n_nodes;
    t->tok_off[n_nodes] = t->n_tok;
    t->n_nodes = n_nodes;
    /* plain[] bottom-up: a node's children are i + 1, skip[i + 1], ...
     * up to skip[i]. */
    t->plain = malloc((size_t)n_nodes);
    if (!t->plain) goto nomem;
    for (int32_t i = n_nodes - 1; i >= 0; i--) {
        uint8_t b = t->byte[i];
        bool p = i == 0 || (b >= 0x20 && b < 0x80 && b != '"' && b != '\\');
        for (int32_t ch = i + 1; p && ch < t->skip[i]; ch = t->skip[ch]) p = t->plain[ch];
        t->plain[i] = p;
    }
    /* tok_off[i] was set to the first token whose text passes through node
     * i; the tokens that end at i are those up to the next node's first. */
    free(pc);
    free(path);
    *out = t;
    return EM_OK;
nomem:
    free(pc);
    free(path);
    em_token_trie_free(t);
    return em_error(EM_ERR_NOMEM, "token trie: out of memory");
}

/* -------------------------------------------------------------- state */

typedef struct gnode {
    int32_t pos;    /* next element of this stack level            */
    int32_t parent; /* node below, -1 for the bottom                */
    int32_t depth;  /* nodes in the chain, this one included        */
} gnode;

typedef struct gset {
    int32_t off;    /* first id in set_ids                       */
    int32_t n;      /* stacks                                     */
    uint32_t hash;
    bool acc;       /* the root rule can end here                 */
    int32_t uni;    /* the set every plain byte leads to (SET_DEAD: none
                     * survives), UNI_MIXED when they differ, UNI_UNKNOWN */
} gset;

#define SET_DEAD (-1)        /* no stack and not accepting            */
#define UNI_UNKNOWN (-3)
#define UNI_MIXED (-4)
#define EM_G_MAX_SETS (1 << 20) /* set ids kept before the caches reset */

typedef struct mask_entry {
    int32_t *key;    /* [n_key] sorted stack ids of the state        */
    int32_t n_key;   /* -1: empty slot                                */
    bool acc;        /* the state's accepting flag                    */
    uint64_t *bits;  /* [n_words] allowed tokens                      */
    uint64_t used;   /* tick of the last use (LRU)                    */
} mask_entry;

struct em_grammar_state {
    const em_grammar *g;
    const em_token_trie *trie;

    gnode *nodes;     /* [n_nodes] hash-consed stack nodes        */
    int32_t n_nodes, cap_nodes;
    uint32_t *visit;  /* [cap_nodes] step stamp of the last visit  */
    int32_t *ht;      /* [ht_mask + 1] node ids, -1 empty          */
    uint32_t ht_mask;
    uint32_t stamp;   /* current step's stamp                      */
    int32_t work;     /* pairs expanded in the current step        */
    int64_t mask_work; /* pairs expanded by the current mask        */
    em_status err;    /* failure inside a step                     */

    int32_t *cur;     /* [n_cur] the state: stacks waiting on a byte, sorted */
    int32_t n_cur, cap_cur;
    bool cur_acc;     /* the root rule can end here                */
    bool finished;    /* an EOG token was accepted                 */

    int32_t *buf;     /* [cap_buf] scratch: sets of stack ids      */
    int32_t n_buf, cap_buf;
    int32_t *lv_set;  /* [trie max_depth + 1] per trie depth: the set id */
    int32_t *chain;   /* [trie max_depth + 1] plain successors, see mask_plain_subtree */

    /* Interned sets of stacks: set k is set_ids[sets[k].off ..][0 .. n),
     * sorted, with its accepting flag.  Transitions between them are
     * memoized: tr_key (set << 8 | byte) -> tr_val (next set, or
     * SET_DEAD).  Both are caches, cleared with the node pool. */
    int32_t *set_ids;  /* [n_set_ids] */
    int32_t n_set_ids, cap_set_ids;
    struct gset *sets; /* [n_sets] */
    int32_t n_sets, cap_sets;
    int32_t *set_ht;   /* [set_ht_mask + 1] set ids, -1 empty */
    uint32_t set_ht_mask;
    uint64_t *tr_key;  /* [tr_mask + 1], UINT64_MAX empty */
    int32_t *tr_val;   /* [tr_mask + 1] */
    uint32_t tr_mask;
    int32_t n_tr;

    int32_t n_words;  /* 64-bit words of a token bitset            */
    mask_entry cache[EM_MASK_CACHE];
    uint64_t tick;
    char *piece;      /* [cap_piece] the accepted token's bytes    */
    int32_t cap_piece;
};

static uint32_t pair_hash(int32_t pos, int32_t parent) {
    uint64_t h = (uint64_t)(uint32_t)pos * 0x9E3779B97F4A7C15ull ^
                 (uint64_t)(uint32_t)parent * 0xC2B2AE3D27D4EB4Full;
    return (uint32_t)(h >> 32);
}

static bool state_fail(em_grammar_state *s, em_status st, const char *what) {
    if (s->err == EM_OK) s->err = em_error(st, "grammar: %s", what);
    return false;
}

static bool ht_rehash(em_grammar_state *s, uint32_t size) {
    int32_t *ht = malloc(sizeof *ht * size);
    if (!ht) return false;
    memset(ht, 0xff, sizeof *ht * size);
    for (int32_t i = 0; i < s->n_nodes; i++) {
        uint32_t h = pair_hash(s->nodes[i].pos, s->nodes[i].parent) & (size - 1);
        while (ht[h] >= 0) h = (h + 1) & (size - 1);
        ht[h] = i;
    }
    free(s->ht);
    s->ht = ht;
    s->ht_mask = size - 1;
    return true;
}

/* The node (pos, parent): its id, -2 when it would make the stack deeper
 * than EM_G_MAX_DEPTH (the path is dropped), -3 on failure (s->err). */
static int32_t intern(em_grammar_state *s, int32_t pos, int32_t parent) {
    uint32_t h = pair_hash(pos, parent) & s->ht_mask;
    for (int32_t id; (id = s->ht[h]) >= 0; h = (h + 1) & s->ht_mask)
        if (s->nodes[id].pos == pos && s->nodes[id].parent == parent) return id;
    int32_t depth = parent >= 0 ? s->nodes[parent].depth + 1 : 1;
    if (depth > EM_G_MAX_DEPTH) return -2;
    if (s->n_nodes >= EM_G_MAX_NODES) {
        state_fail(s, EM_ERR_UNSUPPORTED, "parser state too large");
        return -3;
    }
    if (s->n_nodes == s->cap_nodes) {
        int32_t cap = s->cap_nodes;
        if (!grow((void **)&s->nodes, &cap, (int64_t)s->n_nodes + 1, sizeof *s->nodes)) {
            state_fail(s, EM_ERR_NOMEM, "out of memory");
            return -3;
        }
        uint32_t *v = realloc(s->visit, sizeof *v * (size_t)cap);
        if (!v) {
            state_fail(s, EM_ERR_NOMEM, "out of memory");
            return -3;
        }
        memset(v + s->cap_nodes, 0, sizeof *v * (size_t)(cap - s->cap_nodes));
        s->visit = v;
        s->cap_nodes = cap;
    }
    int32_t id = s->n_nodes++;
    s->nodes[id] = (gnode){pos, parent, depth};
    s->visit[id] = 0;
    s->ht[h] = id;
    if ((uint32_t)s->n_nodes * 2 > s->ht_mask + 1 && !ht_rehash(s, (s->ht_mask + 1) * 2)) {
        state_fail(s, EM_ERR_NOMEM, "out of memory");
        return -3;
    }
    return id;
}

static bool buf_push(em_grammar_state *s, int32_t v) {
    if (s->n_buf == s->cap_buf &&
        !grow((void **)&s->buf, &s->cap_buf, (int64_t)s->n_buf + 1, sizeof *s->buf))
        return state_fail(s, EM_ERR_NOMEM, "out of memory");
    s->buf[s->n_buf++] = v;
    return true;
}

/* Expands the stack (pos, parent) until every path waits on a byte set:
 * those stacks are appended to s->buf, and *acc is set when a path empties
 * the stack. */
static bool expand(em_grammar_state *s, int32_t pos, int32_t parent, bool *acc, int nest) {
    if (nest > EM_G_MAX_NEST) return state_fail(s, EM_ERR_UNSUPPORTED, "grammar nests too deeply");
    int32_t id = intern(s, pos, parent);
    if (id == -2) return true;
    if (id < 0) return false;
    if (s->visit[id] == s->stamp) return true;
    s->visit[id] = s->stamp;
    if (++s->work > EM_G_MAX_WORK)
        return state_fail(s, EM_ERR_UNSUPPORTED, "grammar too ambiguous (parser work limit)");
    if (++s->mask_work > EM_G_MAX_MASK_WORK)
        return state_fail(s, EM_ERR_UNSUPPORTED, "grammar too ambiguous (mask work limit)");
    const em_grammar *g = s->g;
    int32_t e = g->el[pos];
    switch (EL_KIND(e)) {
    case EL_END:
        if (parent < 0) {
            *acc = true;
            return true;
        } else {
            gnode pn = s->nodes[parent];
            return expand(s, pn.pos, pn.parent, acc, nest + 1);
        }
    case EL_SET:
        return buf_push(s, id);
    default: {
        int32_t r = EL_ARG(e), cont = parent;
        if (EL_KIND(g->el[pos + 1]) != EL_END) {
            cont = intern(s, pos + 1, parent);
            if (cont == -2) return true;
            if (cont < 0) return false;
        }
        for (int32_t a = g->rule_alt[r]; a < g->rule_alt[r + 1]; a++)
            if (!expand(s, g->alt_pos[a], cont, acc, nest + 1)) return false;
        return true;
    }
    }
}

static void new_stamp(em_grammar_state *s) {
    if (++s->stamp == 0) {
        memset(s->visit, 0, sizeof *s->visit * (size_t)s->cap_nodes);
        s->stamp = 1;
    }
    s->work = 0;
}

/* Follows one byte from the set buf[in_off .. in_off + n_in): the next set
 * is appended to buf (from the current n_buf); *acc says whether the root
 * rule may end after the byte. */
static bool advance(em_grammar_state *s, int32_t in_off, int32_t n_in, uint8_t byte, bool *acc) {
    new_stamp(s);
    *acc = false;
    int32_t out_off = s->n_buf;
    for (int32_t i = 0; i < n_in; i++) {
        gnode n = s->nodes[s->buf[in_off + i]];
        if (!em_byteset_has(&s->g->sets[EL_ARG(s->g->el[n.pos])], byte)) continue;
        if (!expand(s, n.pos + 1, n.parent, acc, 0)) return false;
        if (s->n_buf - out_off > EM_G_MAX_STACKS)
            return state_fail(s, EM_ERR_UNSUPPORTED, "grammar too ambiguous (too many parses)");
    }
    return true;
}

static int id_cmp(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Makes buf[off .. off + n) the current state. */
static bool set_current(em_grammar_state *s, int32_t off, int32_t n, bool acc) {
    if (!grow((void **)&s->cur, &s->cap_cur, n, sizeof *s->cur))
        return state_fail(s, EM_ERR_NOMEM, "out of memory");
    if (n) memcpy(s->cur, s->buf + off, sizeof *s->cur * (size_t)n);
    qsort(s->cur, (size_t)n, sizeof *s->cur, id_cmp);
    s->n_cur = n;
    s->cur_acc = acc;
    return true;
}

/* Forgets the interned sets and their transitions. */
static void sets_clear(em_grammar_state *s) {
    s->n_set_ids = 0;
    s->n_sets = 0;
    s->n_tr = 0;
    if (s->set_ht) memset(s->set_ht, 0xff, sizeof *s->set_ht * (s->set_ht_mask + 1));
    if (s->tr_key) memset(s->tr_key, 0xff, sizeof *s->tr_key * (s->tr_mask + 1));
}

static void cache_clear(em_grammar_state *s) {
    for (int i = 0; i < EM_MASK_CACHE; i++) s->cache[i].n_key = -1;
    sets_clear(s);
}

/* Rebuilds the node pool from the stacks of the current state alone. */
static bool collect(em_grammar_state *s) {
    int32_t n_old = s->n_nodes;
    gnode *old = s->nodes;
    int32_t *map = malloc(sizeof *map * (size_t)(n_old + 1));
    int32_t *chain = malloc(sizeof *chain * (EM_G_MAX_DEPTH + 1));
    gnode *fresh = malloc(sizeof *fresh * 1024);
    uint32_t *visit = calloc(1024, sizeof *visit);
    if (!map || !chain || !fresh || !visit) {
        free(map), free(chain), free(fresh), free(visit);
        return state_fail(s, EM_ERR_NOMEM, "out of memory");
    }
    memset(map, 0xff, sizeof *map * (size_t)n_old);
    s->nodes = fresh;
    s->n_nodes = 0;
    free(s->visit);
    s->visit = visit;
    s->cap_nodes = 1024;
    bool ok = ht_rehash(s, 2048);
    for (int32_t i = 0; i < s->n_cur && ok; i++) {
        int32_t n = 0, id = s->cur[i];
        while (id >= 0 && map[id] < 0) chain[n++] = id, id = old[id].parent;
        int32_t parent = id >= 0 ? map[id] : -1;
        while (n > 0 && ok) {
            int32_t o = chain[--n];
            int32_t nid = intern(s, old[o].pos, parent);
            if (nid < 0) ok = false;
            else map[o] = parent = nid;
        }
        if (ok) s->cur[i] = map[s->cur[i]];
    }
    free(old);
    free(map);
    free(chain);
    if (!ok) {
        /* The stacks are lost: leave a state that allows nothing. */
        s->n_cur = 0;
        s->cur_acc = false;
        cache_clear(s);
        return state_fail(s, EM_ERR_NOMEM, "out of memory");
    }
    qsort(s->cur, (size_t)s->n_cur, sizeof *s->cur, id_cmp);
    cache_clear(s);
    return true;
}

void em_grammar_state_free(em_grammar_state *s) {
    if (!s) return;
    free(s->nodes);
    free(s->visit);
    free(s->ht);
    free(s->cur);
    free(s->buf);
    free(s->lv_set);
    free(s->chain);
    free(s->set_ids);
    free(s->sets);
    free(s->set_ht);
    free(s->tr_key);
    free(s->tr_val);
    for (int i = 0; i < EM_MASK_CACHE; i++) {
        free(s->cache[i].key);
        free(s->cache[i].bits);
    }
    free(s->piece);
    free(s);
}

em_status em_grammar_state_init(em_grammar_state **out, const em_grammar *g,
                                const em_token_trie *trie) {
    if (!out || !g) return em_error(EM_ERR_INVALID_ARG, "grammar: no grammar");
    em_grammar_state *s = calloc(1, sizeof *s);
    if (!s) return em_error(EM_ERR_NOMEM, "grammar: out of memory");
    s->g = g;
    s->trie = trie;
    cache_clear(s);
    int32_t depth = trie ? trie->max_depth : 0;
    s->lv_set = malloc(sizeof *s->lv_set * (size_t)(depth + 1));
    s->chain = malloc(sizeof *s->chain * (size_t)(depth + 1));
    if (!s->lv_set || !s->chain || !ht_rehash(s, 1024)) {
        em_grammar_state_free(s);
        return em_error(EM_ERR_NOMEM, "grammar: out of memory");
    }
    if (trie) s->n_words = (trie->n_vocab + 63) / 64;
    new_stamp(s);
    bool acc = false;
    s->n_buf = 0;
    if (!expand(s, g->start, -1, &acc, 0) || !set_current(s, 0, s->n_buf, acc)) {
        em_status st = s->err;
        em_grammar_state_free(s);
        return st;
    }
    *out = s;
    return EM_OK;
}

bool em_grammar_can_end(const em_grammar_state *s) {
    return s && !s->finished && s->cur_acc;
}

bool em_grammar_done(const em_grammar_state *s) {
    return s && (s->finished || (s->cur_acc && s->n_cur == 0));
}

/* Follows bytes from the current state; on success makes the result
 * current, otherwise leaves the state as it was. */
static em_status follow(em_grammar_state *s, const uint8_t *p, size_t len, bool *ok) {
    *ok = false;
    s->err = EM_OK;
    s->mask_work = 0;
    s->n_buf = 0;
    for (int32_t i = 0; i < s->n_cur; i++)
        if (!buf_push(s, s->cur[i])) return s->err;
    int32_t off = 0, n = s->n_cur;
    bool acc = s->cur_acc;
    for (size_t k = 0; k < len; k++) {
        s->n_buf = off + n;
        if (!advance(s, off, n, p[k], &acc)) return s->err;
        int32_t n_out = s->n_buf - (off + n);
        /* A path that emptied the stack cannot take further bytes. */
        if (n_out == 0 && !(acc && k + 1 == len)) return EM_OK;
        memmove(s->buf, s->buf + off + n, sizeof *s->buf * (size_t)n_out);
        off = 0;
        n = n_out;
    }
    if (!set_current(s, 0, n, acc)) return s->err;
    *ok = true;
    if (s->n_nodes > EM_G_GC_NODES && !collect(s)) return s->err;
    return EM_OK;
}

em_status em_grammar_accept_bytes(em_grammar_state *s, const char *bytes, size_t len) {
    if (!s || (!bytes && len)) return em_error(EM_ERR_INVALID_ARG, "grammar: invalid arguments");
    if (s->finished) return em_error(EM_ERR_INVALID_ARG, "grammar: generation already ended");
    bool ok;
    em_status st = follow(s, (const uint8_t *)bytes, len, &ok);
    if (st != EM_OK) return st;
    if (!ok) return em_error(EM_ERR_INVALID_ARG, "grammar: the text '%.*s' is not allowed here",
                             (int)EM_MIN(len, 64), bytes);
    return EM_OK;
}

em_status em_grammar_accept(em_grammar_state *s, em_token t) {
    if (!s || !s->trie) return em_error(EM_ERR_INVALID_ARG, "grammar: no vocabulary");
    if (t < 0 || t >= s->trie->n_vocab)
        return em_error(EM_ERR_INVALID_ARG, "grammar: token %d is not in the vocabulary", (int)t);
    if (s->finished) return em_error(EM_ERR_INVALID_ARG, "grammar: generation already ended");
    const em_vocab *v = s->trie->vocab;
    if (em_vocab_is_eog(v, t)) {
        if (!s->cur_acc)
            return em_error(EM_ERR_INVALID_ARG, "grammar: end of generation before the "
                                                "output is complete");
        s->finished = true;
        return EM_OK;
    }
    int32_t n = em_token_to_piece(v, t, s->piece, s->cap_piece, false);
    if (n < 0 && n != INT32_MIN) {
        if (!grow((void **)&s->piece, &s->cap_piece, -(int64_t)n, 1))
            return em_error(EM_ERR_NOMEM, "grammar: out of memory");
        n = em_token_to_piece(v, t, s->piece, s->cap_piece, false);
    }
    if (n <= 0)
        return em_error(EM_ERR_INVALID_ARG, "grammar: token %d has no text and is not allowed "
                                            "in constrained output", (int)t);
    bool ok;
    em_status st = follow(s, (const uint8_t *)s->piece, (size_t)n, &ok);
    if (st != EM_OK) return st;
    if (!ok) return em_error(EM_ERR_INVALID_ARG, "grammar: token %d ('%.*s') is not allowed here",
                             (int)t, (int)EM_MIN(n, 64), s->piece);
    return EM_OK;
}

/* ------------------------------------------------------------ masking */

/* The id of the set ids[0..n) (sorted here) with flag acc, interned; -2
 * on failure.  ids may point into s->buf. */
static int32_t intern_set(em_grammar_state *s, int32_t *ids, int32_t n, bool acc) {
    if (n > 1) qsort(ids, (size_t)n, sizeof *ids, id_cmp);
    uint32_t h = 0x811c9dc5u ^ (uint32_t)acc;
    for (int32_t i = 0; i < n; i++) h = (h ^ (uint32_t)ids[i]) * 0x01000193u;
    if (s->set_ht) {
        for (uint32_t k = h & s->set_ht_mask;; k = (k + 1) & s->set_ht_mask) {
            int32_t id = s->set_ht[k];
            if (id < 0) break;
            const gset *g = &s->sets[id];
            if (g->hash == h && g->n == n && g->acc == acc &&
                (n == 0 || !memcmp(s->set_ids + g->off, ids, sizeof *ids * (size_t)n)))
                return id;
        }
    }
    if (!grow((void **)&s->sets, &s->cap_sets, (int64_t)s->n_sets + 1, sizeof *s->sets) ||
        !grow((void **)&s->set_ids, &s->cap_set_ids, (int64_t)s->n_set_ids + n,
              sizeof *s->set_ids)) {
        state_fail(s, EM_ERR_NOMEM, "out of memory");
        return -2;
    }
    if ((uint32_t)(s->n_sets + 1) * 2 > (s->set_ht ? s->set_ht_mask + 1 : 0)) {
        uint32_t size = s->set_ht ? (s->set_ht_mask + 1) * 2 : 1024;
        int32_t *ht = malloc(sizeof *ht * size);
        if (!ht) {
            state_fail(s, EM_ERR_NOMEM, "out of memory");
            return -2;
        }
        memset(ht, 0xff, sizeof *ht * size);
        for (int32_t i = 0; i < s->n_sets; i++) {
            uint32_t k = s->sets[i].hash & (size - 1);
            while (ht[k] >= 0) k = (k + 1) & (size - 1);
            ht[k] = i;
        }
        free(s->set_ht);
        s->set_ht = ht;
        s->set_ht_mask = size - 1;
    }
    int32_t id = s->n_sets++;
    s->sets[id] = (gset){s->n_set_ids, n, h, acc, UNI_UNKNOWN};
    if (n) memcpy(s->set_ids + s->n_set_ids, ids, sizeof *ids * (size_t)n);
    s->n_set_ids += n;
    uint32_t k = h & s->set_ht_mask;
    while (s->set_ht[k] >= 0) k = (k + 1) & s->set_ht_mask;
    s->set_ht[k] = id;
    return id;
}

/* The set that byte leads to from set `from`: an id, SET_DEAD, or -2 on
 * failure.  Memoized. */
static int32_t transition(em_grammar_state *s, int32_t from, uint8_t byte) {
    uint64_t key = (uint64_t)(uint32_t)from << 8 | s->g->byte_class[byte];
    uint32_t k = 0;
    if (s->tr_key) {
        k = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & s->tr_mask;
        for (; s->tr_key[k] != UINT64_MAX; k = (k + 1) & s->tr_mask)
            if (s->tr_key[k] == key) return s->tr_val[k];
    }
    /* Miss: follow the byte from a copy of the set at the end of buf. */
    int32_t base = s->n_buf, n = s->sets[from].n;
    for (int32_t i = 0; i < n; i++)
        if (!buf_push(s, s->set_ids[s->sets[from].off + i])) return -2;
    bool acc;
    int32_t next = -2;
    if (advance(s, base, n, byte, &acc)) {
        int32_t n_out = s->n_buf - (base + n);
        next = n_out == 0 && !acc ? SET_DEAD : intern_set(s, s->buf + base + n, n_out, acc);
    }
    s->n_buf = base;
    if (next == -2) return -2;
    if ((uint32_t)(s->n_tr + 1) * 2 > (s->tr_key ? s->tr_mask + 1 : 0)) {
        uint32_t size = s->tr_key ? (s->tr_mask + 1) * 2 : 4096;
        uint64_t *nk = malloc(sizeof *nk * size);
        int32_t *nv = malloc(sizeof *nv * size);
        if (!nk || !nv) {
            free(nk), free(nv);
            state_fail(s, EM_ERR_NOMEM, "out of memory");
            return -2;
        }
        memset(nk, 0xff, sizeof *nk * size);
        for (uint32_t i = 0; s->tr_key && i <= s->tr_mask; i++) {
            if (s->tr_key[i] == UINT64_MAX) continue;
            uint32_t j = (uint32_t)((s->tr_key[i] * 0x9E3779B97F4A7C15ull) >> 32) & (size - 1);
            while (nk[j] != UINT64_MAX) j = (j + 1) & (size - 1);
            nk[j] = s->tr_key[i], nv[j] = s->tr_val[i];
        }
        free(s->tr_key), free(s->tr_val);
        s->tr_key = nk, s->tr_val = nv;
        s->tr_mask = size - 1;
    }
    k = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & s->tr_mask;
    while (s->tr_key[k] != UINT64_MAX) k = (k + 1) & s->tr_mask;
    s->tr_key[k] = key, s->tr_val[k] = next;
    s->n_tr++;
    return next;
}

/* The set that every plain byte (printable ASCII but '"' and '\\') leads
 * to from set id: an id, SET_DEAD, UNI_MIXED when they lead to different
 * sets, or -2 on failure.  Inside a JSON string every plain byte is one
 * character, so free text loops on one set (uni == id) and a string of
 * bounded length walks down a chain of sets; either way a token made of
 * plain bytes is allowed or not by its length alone. */
static int32_t plain_successor(em_grammar_state *s, int32_t id) {
    if (s->sets[id].uni != UNI_UNKNOWN) return s->sets[id].uni;
    int32_t uni = UNI_UNKNOWN;
    for (int32_t c = 0; c < s->g->n_plain_classes && uni != UNI_MIXED; c++) {
        int32_t next = transition(s, id, s->g->class_rep[s->g->plain_class[c]]);
        if (next == -2) return -2;
        uni = uni == UNI_UNKNOWN || uni == next ? next : UNI_MIXED;
    }
    s->sets[id].uni = uni;
    return uni;
}

/* Marks the allowed tokens of the plain subtree under trie node i, whose
 * parent has set `from`, through the chain of plain successors; false
 * (with nothing lost: the caller then walks the subtree byte by byte) when
 * the chain meets a set whose plain bytes disagree, or on failure (s->err). */
static bool mask_plain_subtree(em_grammar_state *s, int32_t i, int32_t from, uint64_t *bits) {
    const em_token_trie *t = s->trie;
    int32_t d0 = t->depth[i] - 1, known = 0;
    s->chain[0] = from;
    for (int32_t j = i; j < t->skip[i];) {
        int32_t k = t->depth[j] - d0;
        while (known < k) {
            int32_t prev = s->chain[known], next = SET_DEAD;
            if (prev != SET_DEAD && s->sets[prev].n > 0) next = plain_successor(s, prev);
            if (next == -2 || next == UNI_MIXED) return false;
            s->chain[++known] = next;
        }
        int32_t set = s->chain[k];
        if (set == SET_DEAD) {
            j = t->skip[j];
            continue;
        }
        for (int32_t x = t->tok_off[j]; x < t->tok_off[j + 1]; x++)
            bits[t->tok[x] >> 6] |= 1ull << (t->tok[x] & 63);
        j = s->sets[set].n == 0 ? t->skip[j] : j + 1;
    }
    return true;
}

/* The allowed tokens of the current state, walked over the trie: each
 * node's set is its parent's set followed by the node's byte, memoized
 * per (set, byte); a byte that leads nowhere skips its subtree. */
static bool compute_mask(em_grammar_state *s, uint64_t *bits) {
    const em_token_trie *t = s->trie;
    memset(bits, 0, sizeof *bits * (size_t)s->n_words);
    if (s->finished) return true;
    if (s->cur_acc)
        for (int32_t i = 0; i < t->n_eog; i++) bits[t->eog[i] >> 6] |= 1ull << (t->eog[i] & 63);
    if (s->n_cur == 0) return true;
    if (s->n_sets > EM_G_MAX_SETS || s->n_tr > 4 * EM_G_MAX_SETS) sets_clear(s);
    s->n_buf = 0;
    for (int32_t i = 0; i < s->n_cur; i++)
        if (!buf_push(s, s->cur[i])) return false;
    int32_t root = intern_set(s, s->buf, s->n_cur, s->cur_acc);
    s->n_buf = 0;
    if (root < 0) return false;
    s->lv_set[0] = root;
    for (int32_t i = 1; i < t->n_nodes;) {
        int32_t d = t->depth[i];
        int32_t from = s->lv_set[d - 1];
        if (t->plain[i]) {
            /* Free text: every plain token is allowed, no walk needed. */
            int32_t uni = plain_successor(s, from);
            if (uni == -2) return false;
            if (uni == from) {
                for (int32_t k = t->tok_off[i]; k < t->tok_off[t->skip[i]]; k++)
                    bits[t->tok[k] >> 6] |= 1ull << (t->tok[k] & 63);
                i = t->skip[i];
                continue;
            }
            if (uni != UNI_MIXED && mask_plain_subtree(s, i, from, bits)) {
                i = t->skip[i];
                continue;
            }
            if (s->err != EM_OK) return false;
        }
        int32_t next = transition(s, from, t->byte[i]);
        if (next == -2) return false;
        if (next == SET_DEAD) {
            i = t->skip[i];
            continue;
        }
        for (int32_t k = t->tok_off[i]; k < t->tok_off[i + 1]; k++)
            bits[t->tok[k] >> 6] |= 1ull << (t->tok[k] & 63);
        s->lv_set[d] = next;
        i = s->sets[next].n == 0 ? t->skip[i] : i + 1;
    }
    return true;
}

/* The cached mask of the current state, computing it on a miss. */
static const uint64_t *state_mask(em_grammar_state *s) {
    s->tick++;
    mask_entry *victim = &s->cache[0];
    for (int i = 0; i < EM_MASK_CACHE; i++) {
        mask_entry *e = &s->cache[i];
        if (e->n_key == s->n_cur && e->acc == s->cur_acc &&
            (s->n_cur == 0 || !memcmp(e->key, s->cur, sizeof *s->cur * (size_t)s->n_cur))) {
            e->used = s->tick;
            return e->bits;
        }
        if (e->n_key < 0 || (victim->n_key >= 0 && e->used < victim->used)) victim = e;
    }
    mask_entry *e = victim;
    e->n_key = -1;
    if (!e->bits && !(e->bits = malloc(sizeof *e->bits * (size_t)s->n_words))) {
        state_fail(s, EM_ERR_NOMEM, "out of memory");
        return NULL;
    }
    int32_t *key = realloc(e->key, sizeof *key * (size_t)(s->n_cur + 1));
    if (!key) {
        state_fail(s, EM_ERR_NOMEM, "out of memory");
        return NULL;
    }
    e->key = key;
    if (!compute_mask(s, e->bits)) return NULL;
    if (s->n_cur) memcpy(e->key, s->cur, sizeof *s->cur * (size_t)s->n_cur);
    e->n_key = s->n_cur;
    e->acc = s->cur_acc;
    e->used = s->tick;
    return e->bits;
}

em_status em_grammar_mask(em_grammar_state *s, float *logits) {
    if (!s || !logits) return em_error(EM_ERR_INVALID_ARG, "grammar: invalid arguments");
    if (!s->trie) return em_error(EM_ERR_INVALID_ARG, "grammar: the state has no vocabulary");
    s->err = EM_OK;
    s->mask_work = 0;
    if (s->finished) {
        /* After EOG nothing may follow (the cache would still hold the
         * mask of the state before it). */
        for (int32_t i = 0; i < s->trie->n_vocab; i++) logits[i] = -INFINITY;
        return EM_OK;
    }
    const uint64_t *bits = state_mask(s);
    if (!bits) return s->err;
    for (int32_t w = 0; w < s->n_words; w++) {
        uint64_t m = bits[w];
        if (m == UINT64_MAX) continue;
        int32_t end = EM_MIN(64, s->trie->n_vocab - w * 64);
        for (int32_t b = 0; b < end; b++)
            if (!((m >> b) & 1)) logits[w * 64 + b] = -INFINITY;
    }
    return EM_OK;
}
