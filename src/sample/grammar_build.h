/*
 * grammar_build.h - building an em_grammar rule by rule (shared by
 * grammar.c, which owns the representation, and json_schema.c, which
 * writes grammars from schemas).
 *
 * A grammar is a list of rules; a rule is a list of alternatives; an
 * alternative is a sequence of elements, each either a byte set (one byte
 * out of up to 256) or a reference to a rule.  An empty alternative
 * matches the empty string.  There is no left recursion: a rule may not
 * reach itself without consuming a byte (em_gbuild_finish rejects that).
 *
 * Errors are sticky: every builder call after a failure does nothing, and
 * em_gbuild_finish reports the first failure.  That keeps the code that
 * writes grammars a plain sequence of calls.
 */
#ifndef EM_SAMPLE_GRAMMAR_BUILD_H
#define EM_SAMPLE_GRAMMAR_BUILD_H

#include "sample/grammar.h"

typedef struct em_gbuild em_gbuild;

/* One alternative under construction: element codes (see grammar.c). */
typedef struct em_gseq {
    int32_t *v; /* [n] element codes */
    int32_t n, cap;
} em_gseq;

/* A set of bytes: bit b of w[b >> 6] is byte b. */
typedef struct em_byteset {
    uint64_t w[4];
} em_byteset;

static inline void em_byteset_add(em_byteset *s, unsigned lo, unsigned hi) {
    for (unsigned b = lo; b <= hi && b < 256; b++) s->w[b >> 6] |= 1ull << (b & 63);
}
static inline bool em_byteset_has(const em_byteset *s, unsigned b) {
    return (s->w[b >> 6] >> (b & 63)) & 1;
}

em_status em_gbuild_init(em_gbuild **out);
void em_gbuild_free(em_gbuild *b);
/* The first error so far (EM_OK when none). */
em_status em_gbuild_status(const em_gbuild *b);
/* Records an error (the first one wins); returns st. */
em_status em_gbuild_fail(em_gbuild *b, em_status st);

/* A new rule with no alternatives yet; -1 after an error. */
int32_t em_gb_rule(em_gbuild *b);
/* Adds seq as an alternative of rule and empties seq for reuse. */
void em_gb_alt(em_gbuild *b, int32_t rule, em_gseq *seq);
/* Adds the empty alternative. */
void em_gb_alt_empty(em_gbuild *b, int32_t rule);

void em_gs_ref(em_gbuild *b, em_gseq *s, int32_t rule);
void em_gs_set(em_gbuild *b, em_gseq *s, const em_byteset *set);
void em_gs_range(em_gbuild *b, em_gseq *s, unsigned lo, unsigned hi);
void em_gs_lit(em_gbuild *b, em_gseq *s, const char *text, size_t n);
void em_gseq_free(em_gseq *s);

/* Combinators; each returns a new rule (-1 after an error). */
int32_t em_gb_lit_rule(em_gbuild *b, const char *text);
int32_t em_gb_seq_rule(em_gbuild *b, em_gseq *seq);     /* one alternative: seq */
int32_t em_gb_opt(em_gbuild *b, int32_t x);             /* x | empty            */
/* x repeated lo..hi times (hi < 0: no upper bound).  Bounds above
 * EM_GB_MAX_REPEAT are rejected as unsupported. */
int32_t em_gb_repeat(em_gbuild *b, int32_t x, int64_t lo, int64_t hi);
#define EM_GB_MAX_REPEAT 10000
/* One well-formed UTF-8 sequence of 2 to 4 bytes (a code point from U+0080
 * to U+10FFFF, no surrogates). */
int32_t em_gb_utf8_rule(em_gbuild *b);

/* Checks the grammar (every rule has an alternative, no left recursion)
 * and packs it; root is the start rule.  The builder stays owned by the
 * caller. */
em_status em_gbuild_finish(em_gbuild *b, int32_t root, em_grammar **out);

#endif /* EM_SAMPLE_GRAMMAR_BUILD_H */
