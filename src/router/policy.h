/*
 * policy.h - the decisions of the routing policies that need no network:
 * which rule of a `rules` route matches a request, whether a cascade
 * accepts the cheap model's answer from its token log-probabilities, and
 * what a request costs at a backend's prices.  Kept apart from the I/O so
 * that the unit tests can check them exactly.
 */
#ifndef EM_ROUTER_POLICY_H
#define EM_ROUTER_POLICY_H

#include "ember.h"
#include "router/config.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* What the rules look at, taken from the request. */
typedef struct em_rt_facts {
    long prompt_tokens;   /* UTF-8 bytes of the prompt text / 4, rounded up, or the
                           * local model's count (em_rt_prompt_tokens)              */
    long max_tokens;      /* -1: absent                                              */
    bool tools;           /* a non-empty tools array                                 */
    bool json_schema;     /* response_format.type json_schema                        */
    const char *tag;      /* the x-ember-tag header, or NULL                         */
} em_rt_facts;

/* Fills facts from a parsed request body (chat or completions). */
void em_rt_facts_of(const json_t *body, const char *tag, em_rt_facts *out);

/* The prompt's tokens by a model's own tokenizer: every message's text
 * (plus 4 tokens a message for the chat template's framing) or the
 * prompt's text.  -1 when the tokenizer fails. */
long em_rt_prompt_tokens(const json_t *body, const em_vocab *vocab);

/* The backend (index into the config) the first matching rule names, or
 * -1 when none matches. */
int em_rt_rules_pick(const em_rt_route *r, const em_rt_facts *f);

/* Confidence of an answer from its token log-probabilities: mean and
 * minimum over the tokens of choice 0, chat (logprobs.content[].logprob)
 * or completions (logprobs.token_logprobs[]) shape.  False when the answer
 * carries none. */
bool em_rt_confidence(const json_t *answer, double *mean, double *min, int *n_tokens);

/* Whether a cascade accepts an answer; reason gets why not ("mean_logprob
 * -1.53 < -1.2", "no logprobs"). */
bool em_rt_cascade_accept(const em_rt_route *r, const json_t *answer, char *reason, size_t reason_len);

/* The token counts an answer (or a stream's usage chunk) reports in its
 * `usage`.  A count that is absent, not an integer or negative is 0: the
 * cost is charged from these, and a backend's bad answer must not credit
 * a key's budget. */
void em_rt_usage(const json_t *answer, int64_t *prompt_tokens, int64_t *completion_tokens);

/* USD for tokens at a remote backend's per-million prices. */
double em_rt_token_cost(const em_rt_backend_cfg *b, int64_t prompt_tokens, int64_t completion_tokens);
/* USD for a local backend busy for `seconds` on one of its `parallel`
 * sequences: the hardware's hourly cost shared by the sequences. */
double em_rt_local_cost(const em_rt_backend_cfg *b, double seconds);
/* The most a request can cost at backend b: prompt_bound tokens in and
 * max_tokens out (remote) or the backend's timeout (local). */
double em_rt_max_cost(const em_rt_backend_cfg *b, int64_t prompt_bound, int64_t max_tokens);

#endif
