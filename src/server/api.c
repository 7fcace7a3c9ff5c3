/*
 * api.c - validation of the OpenAI request bodies, one field at a time.
 * Each check names the field it rejects, as OpenAI's own 400s do.
 */
#include "server/api.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A member that is absent or JSON null counts as not given. */
static json_t *field(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

static bool get_number(json_t *obj, const char *key, double lo, double hi, double *out, em_api_error *err) {
    json_t *v = field(obj, key);
    if (!v) return true;
    if (!json_is_number(v)) return em_api_fail(err, 400, key, "'%s' must be a number", key);
    double d = json_number_value(v);
    if (!isfinite(d) || d < lo || d > hi)
        return em_api_fail(err, 400, key, "'%s' must be between %g and %g, got %g", key, lo, hi, d);
    *out = d;
    return true;
}

static bool get_int(json_t *obj, const char *key, long long lo, long long hi, long long *out, em_api_error *err) {
    json_t *v = field(obj, key);
    if (!v) return true;
    long long x;
    if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else {
        /* 3.0 is an integer to JavaScript clients; accept it.  A real
         * beyond int64 (2^63 and up: (double)INT64_MAX rounds up to it) has
         * no long long to become. */
        double d = json_is_real(v) ? json_real_value(v) : 0.5;
        if (floor(d) != d) return em_api_fail(err, 400, key, "'%s' must be an integer", key);
        if (d >= 9223372036854775808.0 || d < -9223372036854775808.0)
            return em_api_fail(err, 400, key, "'%s' must be between %lld and %lld, got %.0f", key, lo, hi, d);
        x = (long long)d;
    }
    if (x < lo || x > hi)
        return em_api_fail(err, 400, key, "'%s' must be between %lld and %lld, got %lld", key, lo, hi, x);
    *out = x;
    return true;
}

static bool get_bool(json_t *obj, const char *key, bool *out, em_api_error *err) {
    json_t *v = field(obj, key);
    if (!v) return true;
    if (!json_is_boolean(v)) return em_api_fail(err, 400, key, "'%s' must be a boolean", key);
    *out = json_is_true(v);
    return true;
}

static bool parse_stop(em_api_request *r, em_api_error *err) {
    json_t *v = field(r->body, "stop");
    if (!v) return true;
    if (json_is_string(v)) {
        if (json_string_length(v) > 0) r->stop[r->n_stop++] = json_string_value(v);
        return true;
    }
    if (!json_is_array(v)) return em_api_fail(err, 400, "stop", "'stop' must be a string or an array of strings");
    if (json_array_size(v) > EM_ENGINE_MAX_STOP)
        return em_api_fail(err, 400, "stop", "'stop' holds at most %d strings", EM_ENGINE_MAX_STOP);
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s) {
        if (!json_is_string(s)) return em_api_fail(err, 400, "stop", "'stop' must be a string or an array of strings");
        if (json_string_length(s) > 0) r->stop[r->n_stop++] = json_string_value(s);
    }
    return true;
}

static bool parse_logit_bias(em_api_request *r, const em_api_limits *lim, em_api_error *err) {
    json_t *v = field(r->body, "logit_bias");
    if (!v) return true;
    if (!json_is_object(v)) return em_api_fail(err, 400, "logit_bias", "'logit_bias' must be an object");
    size_t n = json_object_size(v);
    if (n == 0) return true;
    if (n > 1024) return em_api_fail(err, 400, "logit_bias", "'logit_bias' holds at most 1024 tokens");
    r->bias = calloc(n, sizeof *r->bias);
    if (!r->bias) return em_api_fail(err, 500, NULL, "out of memory");
    const char *key;
    json_t *b;
    int32_t k = 0;
    json_object_foreach(v, key, b) {
        char *end;
        long id = strtol(key, &end, 10);
        if (!*key || *end || id < 0 || id >= lim->n_vocab)
            return em_api_fail(err, 400, "logit_bias", "'logit_bias' key '%.40s' is not a token id below %d", key,
                               lim->n_vocab);
        if (!json_is_number(b) || json_number_value(b) < -100 || json_number_value(b) > 100)
            return em_api_fail(err, 400, "logit_bias", "'logit_bias' values must be numbers from -100 to 100");
        double d = json_number_value(b);
        r->bias[k].token = (em_token)id;
        /* -100 bans the token, as OpenAI documents. */
        r->bias[k].bias = d <= -100 ? -INFINITY : (float)d;
        k++;
    }
    r->sampling.logit_bias = r->bias;
    r->sampling.n_logit_bias = k;
    return true;
}

/* The fields chat and completions share. */
static bool parse_generation(em_api_request *r, const em_api_limits *lim, em_api_error *err) {
    json_t *b = r->body;
    long long v;
    double d;
    /* Chat generates to the end of the context by default, completions
     * 16 tokens, as OpenAI; max_completion_tokens wins over max_tokens. */
    v = r->kind == EM_API_CHAT ? -1 : 16;
    if (!get_int(b, "max_tokens", 1, INT32_MAX, &v, err)) return false;
    if (r->kind == EM_API_CHAT && !get_int(b, "max_completion_tokens", 1, INT32_MAX, &v, err)) return false;
    r->max_tokens = (int32_t)v;
    r->max_tokens_field = r->kind == EM_API_CHAT && field(b, "max_completion_tokens") ? "max_completion_tokens"
                                                                                      : "max_tokens";

    r->sampling = em_sampler_default_params();
    r->sampling.temp = 1.0f;   /* OpenAI's defaults */
    r->sampling.top_p = 1.0f;
    r->sampling.top_k = 0;
    r->sampling.min_p = 0.0f;
    d = 1.0;
    if (!get_number(b, "temperature", 0, 2, &d, err)) return false;
    r->sampling.temp = (float)d;
    d = 1.0;
    if (!get_number(b, "top_p", 0, 1, &d, err)) return false;
    r->sampling.top_p = (float)d;
    d = 0;
    if (!get_number(b, "presence_penalty", -2, 2, &d, err)) return false;
    r->sampling.presence_penalty = (float)d;
    d = 0;
    if (!get_number(b, "frequency_penalty", -2, 2, &d, err)) return false;
    r->sampling.freq_penalty = (float)d;
    /* Without a seed every request draws fresh randomness. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    v = (long long)(((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec);
    if (!get_int(b, "seed", INT64_MIN, INT64_MAX, &v, err)) return false;
    r->sampling.seed = (uint64_t)v;
    if (!parse_logit_bias(r, lim, err)) return false;

    v = 1;
    if (!get_int(b, "n", 1, 16, &v, err)) return false;
    if (v > lim->n_parallel)
        return em_api_fail(err, 400, "n", "'n' is %lld; this server runs at most %d sequences at once (--parallel)",
                           v, lim->n_parallel);
    r->n = (int32_t)v;
    if (!parse_stop(r, err)) return false;

    r->top_logprobs = 0;
    if (r->kind == EM_API_CHAT) {
        if (!get_bool(b, "logprobs", &r->logprobs, err)) return false;
        v = 0;
        if (!get_int(b, "top_logprobs", 0, EM_ENGINE_MAX_TOP_LOGPROBS, &v, err)) return false;
        if (field(b, "top_logprobs") && !r->logprobs)
            return em_api_fail(err, 400, "top_logprobs", "'top_logprobs' needs 'logprobs' set to true");
        r->top_logprobs = (int32_t)v;
    } else {
        v = -1;
        if (!get_int(b, "logprobs", 0, 5, &v, err)) return false;
        r->logprobs = v >= 0;
        r->top_logprobs = v > 0 ? (int32_t)v : 0;
        if (!get_bool(b, "echo", &r->echo, err)) return false;
    }

    if (!get_bool(b, "stream", &r->stream, err)) return false;
    json_t *so = field(b, "stream_options");
    if (so) {
        if (!json_is_object(so)) return em_api_fail(err, 400, "stream_options", "'stream_options' must be an object");
        if (!get_bool(so, "include_usage", &r->include_usage, err)) {
            snprintf(err->param, sizeof err->param, "stream_options.include_usage");
            return false;
        }
    }
    return true;
}

/* content: a string, null, or an array of {type:"text", text} parts. */
static bool check_content(json_t *msg, size_t i, bool may_be_null, em_api_error *err) {
    json_t *c = json_object_get(msg, "content");
    char param[64];
    snprintf(param, sizeof param, "messages[%zu].content", i);
    if (!c || json_is_null(c)) {
        if (may_be_null) return true;
        return em_api_fail(err, 400, param, "'%s' is missing", param);
    }
    if (json_is_string(c)) return true;
    if (!json_is_array(c)) return em_api_fail(err, 400, param, "'%s' must be a string or an array of parts", param);
    size_t k;
    json_t *part;
    json_array_foreach(c, k, part) {
        json_t *type = json_object_get(part, "type");
        if (!json_is_object(part) || !json_is_string(type))
            return em_api_fail(err, 400, param, "'%s[%zu]' must be an object with a 'type'", param, k);
        if (strcmp(json_string_value(type), "text"))
            return em_api_fail(err, 400, param, "'%s[%zu]': content of type '%.32s' is not supported (text only)",
                               param, k, json_string_value(type));
        if (!json_is_string(json_object_get(part, "text")))
            return em_api_fail(err, 400, param, "'%s[%zu].text' must be a string", param, k);
    }
    return true;
}

static bool parse_messages(em_api_request *r, em_api_error *err) {
    json_t *m = field(r->body, "messages");
    if (!m) return em_api_fail(err, 400, "messages", "'messages' is required");
    if (!json_is_array(m) || json_array_size(m) == 0)
        return em_api_fail(err, 400, "messages", "'messages' must be a non-empty array");
    size_t i;
    json_t *msg;
    json_array_foreach(m, i, msg) {
        char param[64];
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!json_is_object(msg)) return em_api_fail(err, 400, param, "'%s' must be an object", param);
        json_t *role = json_object_get(msg, "role");
        snprintf(param, sizeof param, "messages[%zu].role", i);
        if (!json_is_string(role)) return em_api_fail(err, 400, param, "'%s' must be a string", param);
        const char *ro = json_string_value(role);
        bool assistant = !strcmp(ro, "assistant");
        if (strcmp(ro, "system") && strcmp(ro, "user") && !assistant && strcmp(ro, "tool") && strcmp(ro, "developer"))
            return em_api_fail(err, 400, param, "'%s' must be system, user, assistant or tool, got '%.32s'", param, ro);
        json_t *calls = field(msg, "tool_calls");
        if (calls) {
            snprintf(param, sizeof param, "messages[%zu].tool_calls", i);
            if (!assistant || !json_is_array(calls))
                return em_api_fail(err, 400, param, "'%s' must be an array on an assistant message", param);
            size_t k;
            json_t *tc;
            json_array_foreach(calls, k, tc) {
                json_t *fn = json_object_get(tc, "function");
                if (!json_is_object(tc) || !json_is_object(fn) || !json_is_string(json_object_get(fn, "name")) ||
                    !json_is_string(json_object_get(fn, "arguments")))
                    return em_api_fail(err, 400, param,
                                       "'%s[%zu]' must have function.name and function.arguments strings", param, k);
            }
        }
        if (!check_content(msg, i, assistant && calls, err)) return false;
        if (!strcmp(ro, "tool") && !json_is_string(json_object_get(msg, "tool_call_id"))) {
            snprintf(param, sizeof param, "messages[%zu].tool_call_id", i);
            return em_api_fail(err, 400, param, "'%s' must be a string on a tool message", param);
        }
    }
    r->messages = m;
    return true;
}

static bool parse_tools(em_api_request *r, em_api_error *err) {
    json_t *t = field(r->body, "tools");
    json_t *tc = field(r->body, "tool_choice");
    if (t) {
        if (!json_is_array(t)) return em_api_fail(err, 400, "tools", "'tools' must be an array");
        size_t i;
        json_t *tool;
        json_array_foreach(t, i, tool) {
            json_t *fn = json_object_get(tool, "function");
            json_t *ty = json_object_get(tool, "type");
            char param[32];
            snprintf(param, sizeof param, "tools[%zu]", i);
            if (!json_is_object(tool) || !json_is_string(ty) || strcmp(json_string_value(ty), "function"))
                return em_api_fail(err, 400, param, "'%s' must be an object of type 'function'", param);
            if (!json_is_object(fn) || !json_is_string(json_object_get(fn, "name")))
                return em_api_fail(err, 400, param, "'%s.function.name' must be a string", param);
            json_t *params = field(fn, "parameters");
            if (params && !json_is_object(params))
                return em_api_fail(err, 400, param, "'%s.function.parameters' must be an object", param);
        }
        if (json_array_size(t) > 0) r->tools = t;
    }
    r->tool_choice = r->tools ? EM_TOOL_CHOICE_AUTO : EM_TOOL_CHOICE_NONE;
    if (!tc) return true;
    if (json_is_string(tc)) {
        const char *s = json_string_value(tc);
        if (!strcmp(s, "none")) r->tool_choice = EM_TOOL_CHOICE_NONE;
        else if (!strcmp(s, "auto")) r->tool_choice = r->tools ? EM_TOOL_CHOICE_AUTO : EM_TOOL_CHOICE_NONE;
        else if (!strcmp(s, "required")) r->tool_choice = EM_TOOL_CHOICE_REQUIRED;
        else return em_api_fail(err, 400, "tool_choice", "'tool_choice' must be none, auto, required or an object");
    } else if (json_is_object(tc)) {
        json_t *fn = json_object_get(tc, "function");
        json_t *name = json_is_object(fn) ? json_object_get(fn, "name") : NULL;
        if (!json_is_string(name))
            return em_api_fail(err, 400, "tool_choice", "'tool_choice.function.name' must be a string");
        r->tool_choice = EM_TOOL_CHOICE_NAMED;
        r->tool_name = json_string_value(name);
    } else {
        return em_api_fail(err, 400, "tool_choice", "'tool_choice' must be a string or an object");
    }
    if (r->tool_choice == EM_TOOL_CHOICE_REQUIRED || r->tool_choice == EM_TOOL_CHOICE_NAMED) {
        if (!r->tools) return em_api_fail(err, 400, "tool_choice", "'tool_choice' needs 'tools'");
        if (r->tool_choice == EM_TOOL_CHOICE_NAMED) {
            bool found = false;
            size_t i;
            json_t *tool;
            json_array_foreach(r->tools, i, tool) {
                const char *n = json_string_value(json_object_get(json_object_get(tool, "function"), "name"));
                if (n && !strcmp(n, r->tool_name)) found = true;
            }
            if (!found)
                return em_api_fail(err, 400, "tool_choice", "'tool_choice' names '%.64s', which is not in 'tools'",
                                   r->tool_name);
        }
    }
    return true;
}

static bool parse_response_format(em_api_request *r, em_api_error *err) {
    json_t *f = field(r->body, "response_format");
    r->format = EM_FORMAT_TEXT;
    if (!f) return true;
    json_t *ty = json_is_object(f) ? json_object_get(f, "type") : NULL;
    if (!json_is_string(ty))
        return em_api_fail(err, 400, "response_format", "'response_format' must be an object with a 'type'");
    const char *t = json_string_value(ty);
    if (!strcmp(t, "text")) return true;
    if (!strcmp(t, "json_object")) {
        r->format = EM_FORMAT_JSON_OBJECT;
        return true;
    }
    if (strcmp(t, "json_schema"))
        return em_api_fail(err, 400, "response_format.type",
                           "'response_format.type' must be text, json_object or json_schema, got '%.32s'", t);
    json_t *js = json_object_get(f, "json_schema");
    json_t *schema = json_is_object(js) ? json_object_get(js, "schema") : NULL;
    if (!json_is_object(schema) && !json_is_boolean(schema))
        return em_api_fail(err, 400, "response_format.json_schema.schema",
                           "'response_format.json_schema.schema' must be a JSON schema object");
    r->format = EM_FORMAT_JSON_SCHEMA;
    r->schema = schema;
    return true;
}

static bool is_token_array(json_t *a, int32_t n_vocab) {
    if (!json_is_array(a) || json_array_size(a) == 0) return false;
    size_t i;
    json_t *t;
    json_array_foreach(a, i, t) {
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= n_vocab) return false;
    }
    return true;
}

static bool parse_prompt(em_api_request *r, const em_api_limits *lim, em_api_error *err) {
    json_t *p = field(r->body, "prompt");
    if (!p) return em_api_fail(err, 400, "prompt", "'prompt' is required");
    if (field(r->body, "suffix")) return em_api_fail(err, 400, "suffix", "'suffix' is not supported");
    /* One prompt (a string or token ids), or an array of them. */
    bool single = json_is_string(p) || is_token_array(p, lim->n_vocab);
    bool many = !single && json_is_array(p) && json_array_size(p) > 0 && json_array_size(p) <= 64;
    if (many) {
        size_t i;
        json_t *x;
        json_array_foreach(p, i, x) {
            if (!json_is_string(x) && !is_token_array(x, lim->n_vocab)) many = false;
        }
    }
    if (!single && !many)
        return em_api_fail(err, 400, "prompt",
                           "'prompt' must be a string, an array of token ids below %d, or an array of up to 64 of them",
                           lim->n_vocab);
    r->prompts = single ? json_pack("[O]", p) : json_incref(p);
    if (!r->prompts) return em_api_fail(err, 500, NULL, "out of memory");
    return true;
}

static bool parse_input(em_api_request *r, const em_api_limits *lim, em_api_error *err) {
    json_t *in = field(r->body, "input");
    if (!in) return em_api_fail(err, 400, "input", "'input' is required");
    bool ok = (json_is_string(in) && json_string_length(in) > 0) || is_token_array(in, lim->n_vocab);
    if (!ok && json_is_array(in) && json_array_size(in) > 0 && json_array_size(in) <= 2048) {
        ok = true;
        size_t i;
        json_t *x;
        json_array_foreach(in, i, x) {
            if (!(json_is_string(x) && json_string_length(x) > 0) && !is_token_array(x, lim->n_vocab)) ok = false;
        }
    }
    if (!ok)
        return em_api_fail(err, 400, "input",
                           "'input' must be a non-empty string, an array of them, or token-id arrays (at most 2048)");
    r->input = in;
    json_t *dim = field(r->body, "dimensions");
    if (dim && (!json_is_integer(dim) || json_integer_value(dim) != lim->n_embd))
        return em_api_fail(err, 400, "dimensions", "'dimensions' is not supported (the model's size is %d)", lim->n_embd);
    json_t *fmt = field(r->body, "encoding_format");
    if (fmt) {
        if (!json_is_string(fmt) ||
            (strcmp(json_string_value(fmt), "float") && strcmp(json_string_value(fmt), "base64")))
            return em_api_fail(err, 400, "encoding_format", "'encoding_format' must be float or base64");
        r->base64 = !strcmp(json_string_value(fmt), "base64");
    }
    return true;
}

/* How deeply a value nests (a scalar is 1); stops counting past the limit. */
static int json_depth(json_t *v) {
    if (!json_is_object(v) && !json_is_array(v)) return 1;
    int deepest = 0;
    if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            int d = json_depth(x);
            if (d > deepest) deepest = d;
            if (deepest > EM_API_MAX_DEPTH) break;
        }
    } else {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) {
            int d = json_depth(x);
            if (d > deepest) deepest = d;
            if (deepest > EM_API_MAX_DEPTH) break;
        }
    }
    return deepest + 1;
}

bool em_api_parse(em_api_kind kind, const char *body, size_t len, const em_api_limits *lim,
                  em_api_request *out, em_api_error *err) {
    memset(out, 0, sizeof *out);
    out->kind = kind;
    json_error_t je;
    out->body = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!out->body)
        return em_api_fail(err, 400, NULL, "the body is not valid JSON: %s (line %d, column %d)", je.text, je.line,
                           je.column);
    bool ok = true;
    if (!json_is_object(out->body)) {
        ok = em_api_fail(err, 400, NULL, "the body must be a JSON object");
    } else {
        json_t *model = field(out->body, "model");
        if (!model) ok = em_api_fail(err, 400, "model", "'model' is required");
        else if (!json_is_string(model)) ok = em_api_fail(err, 400, "model", "'model' must be a string");
        else if (json_depth(out->body) > EM_API_MAX_DEPTH)
            ok = em_api_fail(err, 400, NULL, "the body nests deeper than %d levels", EM_API_MAX_DEPTH);
        else if (strcmp(json_string_value(model), lim->model_id))
            ok = em_api_fail(err, 404, "model", "The model '%.100s' does not exist; this server serves '%.100s'",
                             json_string_value(model), lim->model_id);
        else if (kind == EM_API_EMBEDDINGS) ok = parse_input(out, lim, err);
        else if (kind == EM_API_CHAT)
            ok = parse_messages(out, err) && parse_generation(out, lim, err) && parse_tools(out, err) &&
                 parse_response_format(out, err);
        else ok = parse_prompt(out, lim, err) && parse_generation(out, lim, err) && parse_response_format(out, err);
    }
    if (!ok) em_api_request_free(out);
    return ok;
}

void em_api_request_free(em_api_request *r) {
    json_decref(r->body);
    json_decref(r->prompts);
    free(r->bias);
    memset(r, 0, sizeof *r);
}
