/*
 * grammar.h - constrained decoding: a grammar over bytes that masks the
 * logits so that the generated text always belongs to its language
 * (internal; the server and tests use it, it is not in ember.h).
 *
 * Three objects, all opaque:
 *
 *   em_grammar        a compiled grammar (from a JSON schema, or "any JSON
 *                     object").  Immutable: one may serve many requests on
 *                     many threads at once.
 *   em_token_trie     every token of one vocabulary by its bytes, as a
 *                     trie.  Built once per vocabulary (tens of ms for
 *                     128K tokens), immutable, shared by every request.
 *   em_grammar_state  one generation's position in the grammar: the set of
 *                     parser stacks, plus caches.  One per sequence, used
 *                     by one thread at a time.
 *
 * A decoding step is: em_grammar_mask (sets the logit of every token that
 * cannot follow to -INFINITY), sample, em_grammar_accept(token).  EOG
 * tokens (EOS, EOT, ...) are allowed exactly when the text so far is a
 * complete sentence of the grammar; tokens that decode to no bytes
 * (control tokens) are always banned.  em_grammar_done says when nothing
 * but EOG may follow, so a caller can stop without sampling again.
 */
#ifndef EM_SAMPLE_GRAMMAR_H
#define EM_SAMPLE_GRAMMAR_H

#include "ember.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct em_grammar em_grammar;
typedef struct em_token_trie em_token_trie;
typedef struct em_grammar_state em_grammar_state;

/* ------------------------------------------------------------ compiling */

/*
 * Compiles a JSON schema (the value of OpenAI's response_format.json_schema
 * .schema, or a tool's parameters) into a grammar for the JSON texts that
 * validate against it.  The supported keywords are listed in docs/API.md
 * ("Structured output").  Errors:
 *   EM_ERR_FORMAT       the text is not JSON;
 *   EM_ERR_INVALID_ARG  the schema is malformed (a keyword of the wrong type,
 *                       a $ref that resolves to nothing, minItems > maxItems);
 *   EM_ERR_UNSUPPORTED  it uses a keyword or a value ember cannot enforce;
 *                       the message names the keyword and where it sits, as
 *                       "json_schema: unsupported keyword 'not' at /properties/a".
 * Nothing is ever silently left unconstrained.
 */
em_status em_grammar_compile_json_schema(em_grammar **out, const char *schema_json,
                                         size_t len);
em_status em_grammar_compile_json_schema_value(em_grammar **out, const json_t *schema);

/* The grammar of response_format json_object: any JSON object. */
em_status em_grammar_compile_json_object(em_grammar **out);

/*
 * The grammar of one tool call (tool_choice "required", or a named
 * function): prefix, then {"name": "NAME", "ARGS_KEY": ARGS}, then suffix,
 * where NAME is one of the functions and ARGS validates against its
 * "parameters" schema (any object when it has none).  The object takes the
 * same bounded whitespace as json_schema output.
 *   tools     OpenAI's array of {"type": "function", "function": {"name",
 *             "parameters"}};
 *   only      the one function allowed, or NULL for any of them;
 *   args_key  "arguments" (most chat templates) or "parameters" (Llama 3);
 *   prefix, suffix  literal text around the JSON, or NULL: for example
 *             "<tool_call>\n" and "\n</tool_call>" for Hermes-style templates.
 * Errors as for em_grammar_compile_json_schema, with places given as
 * "/tools/N/function/parameters/...".
 */
em_status em_grammar_compile_tool_call(em_grammar **out, const json_t *tools, const char *only,
                                       const char *args_key, const char *prefix,
                                       const char *suffix);

void em_grammar_free(em_grammar *g);

/* Rules, alternatives and elements of a compiled grammar (for tests and
 * logs). */
void em_grammar_size(const em_grammar *g, int32_t *n_rules, int32_t *n_elems);

/* ------------------------------------------------------ the token trie */

/* Builds the trie of vocab's tokens by their decoded bytes (what
 * em_token_to_piece gives without special rendering).  vocab must outlive
 * the trie and every state made with it. */
em_status em_token_trie_init(em_token_trie **out, const em_vocab *vocab);
void em_token_trie_free(em_token_trie *t);

/* ---------------------------------------------------------- decoding */

/* trie may be NULL: then the state can only follow bytes
 * (em_grammar_accept_bytes), which is what tests of the grammar need. */
em_status em_grammar_state_init(em_grammar_state **out, const em_grammar *g,
                                const em_token_trie *trie);
void em_grammar_state_free(em_grammar_state *s);

/* Sets logits[t] = -INFINITY for every token t (of the trie's n_vocab)
 * that cannot come next; leaves the others unchanged.  Fails only on a
 * pathological grammar (EM_ERR_UNSUPPORTED: too many parses at once, or
 * more than a bounded amount of parser work for one mask, ~0.1-0.3 s, so
 * that a hostile schema cannot stall the engine) or without a trie
 * (EM_ERR_INVALID_ARG); the caller should then end the sequence. */
em_status em_grammar_mask(em_grammar_state *s, float *logits);

/* Advances over token t.  EM_ERR_INVALID_ARG when t is not allowed here
 * (the state is then unchanged). */
em_status em_grammar_accept(em_grammar_state *s, em_token t);

/* Advances over raw bytes; EM_ERR_INVALID_ARG (state unchanged) when they
 * leave the language. */
em_status em_grammar_accept_bytes(em_grammar_state *s, const char *bytes, size_t len);

/* The text so far is complete: EOG may be sampled now. */
bool em_grammar_can_end(const em_grammar_state *s);
/* Complete, and nothing but EOG can follow (or EOG was accepted). */
bool em_grammar_done(const em_grammar_state *s);

#endif /* EM_SAMPLE_GRAMMAR_H */
