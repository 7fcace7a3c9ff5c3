/*
 * policy.c - rules, cascade acceptance and prices.
 */
#include "router/policy.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Bytes of text in a message content (a string or an array of parts). */
static size_t content_bytes(const json_t *c) {
    if (json_is_string(c)) return json_string_length(c);
    size_t n = 0, i;
    json_t *part;
    if (json_is_array(c))
        json_array_foreach(c, i, part) n += json_string_length(json_object_get(part, "text"));
    return n;
}

void em_rt_facts_of(const json_t *body, const char *tag, em_rt_facts *f) {
    *f = (em_rt_facts){.max_tokens = -1, .tag = tag};
    size_t bytes = 0, i;
    json_t *m, *msgs = json_object_get(body, "messages"), *prompt = json_object_get(body, "prompt");
    if (json_is_array(msgs))
        json_array_foreach(msgs, i, m) bytes += content_bytes(json_object_get(m, "content")) + 4;
    if (json_is_string(prompt)) bytes += json_string_length(prompt);
    if (json_is_array(prompt))
        json_array_foreach(prompt, i, m) bytes += json_is_string(m) ? json_string_length(m) : 4;
    f->prompt_tokens = (long)((bytes + 3) / 4);
    json_t *mt = json_object_get(body, "max_completion_tokens");
    if (!json_is_integer(mt)) mt = json_object_get(body, "max_tokens");
    if (json_is_integer(mt)) f->max_tokens = (long)json_integer_value(mt);
    json_t *tools = json_object_get(body, "tools");
    f->tools = json_is_array(tools) && json_array_size(tools) > 0;
    json_t *rf = json_object_get(body, "response_format");
    const char *type = json_string_value(json_object_get(rf, "type"));
    f->json_schema = type && !strcmp(type, "json_schema");
}

/* Tokens of one text (a string, or an array of parts' texts); -1 on error. */
static long text_tokens(const json_t *c, const em_vocab *vocab) {
    if (json_is_string(c)) {
        int32_t n = 0;
        size_t len = json_string_length(c);
        if (len > INT32_MAX) return -1;
        if (em_tokenize(vocab, json_string_value(c), (int32_t)len, NULL, 0, &n, false, false) != EM_OK) return -1;
        return n;
    }
    long sum = 0;
    size_t i;
    json_t *part;
    if (json_is_array(c))
        json_array_foreach(c, i, part) {
            long n = text_tokens(json_object_get(part, "text"), vocab);
            if (n < 0) return -1;
            sum += n;
        }
    return sum;
}

long em_rt_prompt_tokens(const json_t *body, const em_vocab *vocab) {
    long sum = 0, n;
    size_t i;
    json_t *m, *msgs = json_object_get(body, "messages"), *prompt = json_object_get(body, "prompt");
    if (json_is_array(msgs))
        json_array_foreach(msgs, i, m) {
            if ((n = text_tokens(json_object_get(m, "content"), vocab)) < 0) return -1;
            sum += n + 4;
        }
    if (json_is_array(prompt))
        json_array_foreach(prompt, i, m) {
            if (!json_is_string(m)) sum += 1; /* a token id */
            else if ((n = text_tokens(m, vocab)) < 0) return -1;
            else sum += n;
        }
    else if ((n = text_tokens(prompt, vocab)) < 0) return -1;
    else sum += n;
    return sum;
}

static bool rule_matches(const em_rt_rule *r, const em_rt_facts *f) {
    if (r->prompt_tokens_min >= 0 && f->prompt_tokens < r->prompt_tokens_min) return false;
    if (r->prompt_tokens_max >= 0 && f->prompt_tokens > r->prompt_tokens_max) return false;
    /* An absent max_tokens is unbounded: it passes a minimum, fails a maximum. */
    if (r->max_tokens_min >= 0 && f->max_tokens >= 0 && f->max_tokens < r->max_tokens_min) return false;
    if (r->max_tokens_max >= 0 && (f->max_tokens < 0 || f->max_tokens > r->max_tokens_max)) return false;
    if (r->tools >= 0 && (int)f->tools != r->tools) return false;
    if (r->json_schema >= 0 && (int)f->json_schema != r->json_schema) return false;
    if (r->tag[0] && (!f->tag || strcmp(f->tag, r->tag))) return false;
    return true;
}

int em_rt_rules_pick(const em_rt_route *r, const em_rt_facts *f) {
    for (int i = 0; i < r->n_rules; i++)
        if (rule_matches(&r->rules[i], f)) return r->rules[i].backend;
    return -1;
}

bool em_rt_confidence(const json_t *answer, double *mean, double *min, int *n_tokens) {
    json_t *choice = json_array_get(json_object_get(answer, "choices"), 0);
    json_t *lp = json_object_get(choice, "logprobs");
    json_t *content = json_object_get(lp, "content"), *tl = json_object_get(lp, "token_logprobs");
    double sum = 0, lo = 0;
    int n = 0;
    size_t i;
    json_t *v;
    if (json_is_array(content)) {
        json_array_foreach(content, i, v) {
            json_t *x = json_object_get(v, "logprob");
            if (!json_is_number(x)) continue;
            double d = json_number_value(x);
            sum += d, lo = n ? fmin(lo, d) : d, n++;
        }
    } else if (json_is_array(tl)) {
        json_array_foreach(tl, i, v) {
            if (!json_is_number(v)) continue;
            double d = json_number_value(v);
            sum += d, lo = n ? fmin(lo, d) : d, n++;
        }
    } else
        return false;
    *n_tokens = n;
    *mean = n ? sum / n : 0;
    *min = lo;
    return true;
}

bool em_rt_cascade_accept(const em_rt_route *r, const json_t *answer, char *reason, size_t reason_len) {
    double mean, min;
    int n;
    if (!em_rt_confidence(answer, &mean, &min, &n)) {
        snprintf(reason, reason_len, "no logprobs");
        return false;
    }
    if (n == 0) {
        snprintf(reason, reason_len, "empty answer");
        return false;
    }
    if (mean < r->accept_mean_logprob) {
        snprintf(reason, reason_len, "mean_logprob %.3f < %g", mean, r->accept_mean_logprob);
        return false;
    }
    if (min < r->accept_min_logprob) {
        snprintf(reason, reason_len, "min_logprob %.3f < %g", min, r->accept_min_logprob);
        return false;
    }
    reason[0] = '\0';
    return true;
}

void em_rt_usage(const json_t *answer, int64_t *pt, int64_t *ct) {
    json_t *u = json_object_get(answer, "usage");
    json_int_t p = json_integer_value(json_object_get(u, "prompt_tokens"));
    json_int_t c = json_integer_value(json_object_get(u, "completion_tokens"));
    *pt = p > 0 ? (int64_t)p : 0;
    *ct = c > 0 ? (int64_t)c : 0;
}

double em_rt_token_cost(const em_rt_backend_cfg *b, int64_t prompt_tokens, int64_t completion_tokens) {
    return ((double)prompt_tokens * b->input_per_mtok + (double)completion_tokens * b->output_per_mtok) / 1e6;
}

double em_rt_local_cost(const em_rt_backend_cfg *b, double seconds) {
    if (seconds > b->timeout_s) seconds = b->timeout_s;
    if (seconds < 0) seconds = 0;
    return b->hourly_usd * seconds / 3600.0 / (b->parallel > 0 ? b->parallel : 1);
}

double em_rt_max_cost(const em_rt_backend_cfg *b, int64_t prompt_bound, int64_t max_tokens) {
    if (b->kind == EM_RT_LOCAL) return em_rt_local_cost(b, b->timeout_s);
    if (max_tokens < 0) max_tokens = b->max_output_tokens; /* the router then sends this as max_tokens */
    return em_rt_token_cost(b, prompt_bound, max_tokens);
}
