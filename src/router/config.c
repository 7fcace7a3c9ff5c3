/*
 * config.c - the router's YAML configuration, read with libyaml's
 * document API (the whole file as a node tree, each node with its line),
 * then checked: every key known, every value of the right type and range,
 * every name a route or key mentions defined, and airgap kept.
 */
#include "router/config.h"
#include "router/ledger.h"
#include "server/server.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

typedef struct cfg_parser {
    yaml_document_t *doc;
    const char *file;
    char *err;
    size_t err_len;
    em_rt_config *c;
} cfg_parser;

static bool fail(cfg_parser *p, const yaml_node_t *n, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool fail(cfg_parser *p, const yaml_node_t *n, const char *path, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(p->err, p->err_len, "%s:%lu: %s%s%s", p->file, n ? (unsigned long)n->start_mark.line + 1 : 0UL,
             path ? path : "", path && path[0] ? ": " : "", msg);
    return false;
}

static const char *scalar(const yaml_node_t *n) {
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static bool get_string(cfg_parser *p, const yaml_node_t *n, const char *path, char **out) {
    const char *s = scalar(n);
    if (!s) return fail(p, n, path, "expected a string");
    if (strlen(s) > 4096) return fail(p, n, path, "longer than 4096 bytes");
    free(*out);
    *out = strdup(s);
    return *out != NULL || fail(p, n, path, "out of memory");
}

static bool get_name(cfg_parser *p, const yaml_node_t *n, const char *path, char out[EM_RT_NAME]) {
    const char *s = scalar(n);
    if (!s || !s[0]) return fail(p, n, path, "expected a non-empty name");
    if (strlen(s) >= EM_RT_NAME) return fail(p, n, path, "names are at most %d bytes", EM_RT_NAME - 1);
    for (const char *q = s; *q; q++)
        if (!(*q == '-' || *q == '_' || *q == '.' || *q == ':' || *q == '/' || (*q >= '0' && *q <= '9') ||
              (*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z')))
            return fail(p, n, path, "'%s': names use letters, digits and - _ . : /", s);
    snprintf(out, EM_RT_NAME, "%s", s);
    return true;
}

static bool get_number(cfg_parser *p, const yaml_node_t *n, const char *path, double lo, double hi, double *out) {
    const char *s = scalar(n);
    if (!s || !s[0]) return fail(p, n, path, "expected a number");
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno || !isfinite(v)) return fail(p, n, path, "'%.40s' is not a number", s);
    if (v < lo || v > hi) return fail(p, n, path, "%g is outside %g..%g", v, lo, hi);
    *out = v;
    return true;
}

static bool get_int(cfg_parser *p, const yaml_node_t *n, const char *path, long lo, long hi, long *out) {
    const char *s = scalar(n);
    if (!s || !s[0]) return fail(p, n, path, "expected an integer");
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*end || errno) return fail(p, n, path, "'%.40s' is not an integer", s);
    if (v < lo || v > hi) return fail(p, n, path, "%ld is outside %ld..%ld", v, lo, hi);
    *out = v;
    return true;
}

static bool get_int32(cfg_parser *p, const yaml_node_t *n, const char *path, long lo, long hi, int *out) {
    long v;
    if (!get_int(p, n, path, lo, hi, &v)) return false;
    *out = (int)v;
    return true;
}

static bool get_bool(cfg_parser *p, const yaml_node_t *n, const char *path, bool *out) {
    const char *s = scalar(n);
    static const char *yes[] = {"true", "yes", "on"}, *no[] = {"false", "no", "off"};
    for (int i = 0; s && i < 3; i++) {
        if (!strcasecmp(s, yes[i])) return *out = true, true;
        if (!strcasecmp(s, no[i])) return *out = false, true;
    }
    return fail(p, n, path, "expected true or false");
}

/* Iterates over a mapping's pairs, k and v the key and value nodes (the
 * inner loop runs once per pair; a break leaves only it, so the loops
 * below leave with return or goto). */
#define FOR_PAIRS(p, map, k, v)                                                                       \
    for (yaml_node_pair_t *k##_pr = (map)->data.mapping.pairs.start; k##_pr < (map)->data.mapping.pairs.top; \
         k##_pr++)                                                                                    \
        for (yaml_node_t *k = yaml_document_get_node((p)->doc, k##_pr->key),                           \
                         *v = yaml_document_get_node((p)->doc, k##_pr->value);                         \
             k && v; k = NULL)

#define FOR_ITEMS(p, seq, i, item)                                                                    \
    for (int i = 0; i < (int)((seq)->data.sequence.items.top - (seq)->data.sequence.items.start); i++) \
        for (yaml_node_t *item = yaml_document_get_node((p)->doc, (seq)->data.sequence.items.start[i]); item; item = NULL)

/* Checks a node's type; a mapping also may not repeat a key (YAML allows
 * the parser to keep either, which would hide a mistake). */
static bool want(cfg_parser *p, const yaml_node_t *n, const char *path, yaml_node_type_t t) {
    if (n && n->type == t && t == YAML_MAPPING_NODE) {
        for (yaml_node_pair_t *a = n->data.mapping.pairs.start; a < n->data.mapping.pairs.top; a++)
            for (yaml_node_pair_t *b = n->data.mapping.pairs.start; b < a; b++) {
                const char *ka = scalar(yaml_document_get_node(p->doc, a->key));
                const char *kb = scalar(yaml_document_get_node(p->doc, b->key));
                if (ka && kb && !strcmp(ka, kb))
                    return fail(p, yaml_document_get_node(p->doc, a->key), path, "key '%.60s' appears twice", ka);
            }
    }
    if (n && n->type == t) return true;
    return fail(p, n, path, "expected a %s", t == YAML_MAPPING_NODE ? "mapping {key: value, ...}" : "list [...]");
}

static bool unknown(cfg_parser *p, const yaml_node_t *k, const char *path) {
    return fail(p, k, path, "unknown key '%.60s'", scalar(k) ? scalar(k) : "?");
}

/* ------------------------------------------------------------ backends */

static bool parse_price(cfg_parser *p, yaml_node_t *n, const char *path, em_rt_backend_cfg *b) {
    if (!want(p, n, path, YAML_MAPPING_NODE)) return false;
    char sub[200];
    FOR_PAIRS(p, n, k, v) {
        const char *key = scalar(k);
        snprintf(sub, sizeof sub, "%s.%s", path, key ? key : "?");
        if (!key) return fail(p, k, path, "keys must be strings");
        bool ok;
        if (!strcmp(key, "input_per_mtok")) ok = get_number(p, v, sub, 0, 1e6, &b->input_per_mtok);
        else if (!strcmp(key, "output_per_mtok")) ok = get_number(p, v, sub, 0, 1e6, &b->output_per_mtok);
        else if (!strcmp(key, "hourly_usd")) ok = get_number(p, v, sub, 0, 1e6, &b->hourly_usd);
        else if (!strcmp(key, "tokens_per_s")) ok = get_number(p, v, sub, 1e-3, 1e9, &b->tokens_per_s);
        else ok = unknown(p, k, path);
        if (!ok) return false;
    }
    return true;
}

static bool parse_backend(cfg_parser *p, yaml_node_t *n, const char *path, em_rt_backend_cfg *b) {
    if (!want(p, n, path, YAML_MAPPING_NODE)) return false;
    *b = (em_rt_backend_cfg){.line = (int)n->start_mark.line + 1, .parallel = 4, .tokens_per_s = 20,
                             .timeout_s = 60, .connect_timeout_s = 5, .retries = 1, .cooldown_s = 10,
                             .max_output_tokens = 4096};
    char sub[160];
    bool has_url = false, has_urls = false;
    FOR_PAIRS(p, n, k, v) {
        const char *key = scalar(k);
        if (!key) return fail(p, k, path, "keys must be strings");
        snprintf(sub, sizeof sub, "%s.%s", path, key);
        bool ok;
        if (!strcmp(key, "name")) ok = get_name(p, v, sub, b->name);
        else if (!strcmp(key, "model")) ok = get_string(p, v, sub, &b->model);
        else if (!strcmp(key, "ctx")) ok = get_int32(p, v, sub, 0, 1 << 20, &b->ctx);
        else if (!strcmp(key, "parallel")) ok = get_int32(p, v, sub, 1, 4096, &b->parallel);
        else if (!strcmp(key, "threads")) ok = get_int32(p, v, sub, 0, 512, &b->threads);
        else if (!strcmp(key, "chat_template")) ok = get_string(p, v, sub, &b->chat_template);
        else if (!strcmp(key, "url")) {
            has_url = true;
            ok = b->n_urls == 0 ? get_string(p, v, sub, &b->urls[0]) : fail(p, k, sub, "give url or urls, not both");
            if (ok) b->n_urls = 1;
        } else if (!strcmp(key, "urls")) {
            has_urls = true;
            ok = want(p, v, sub, YAML_SEQUENCE_NODE);
            if (ok && b->n_urls) ok = fail(p, k, sub, "give url or urls, not both");
            if (ok) {
                FOR_ITEMS(p, v, i, item) {
                    char isub[176];
                    snprintf(isub, sizeof isub, "%s[%d]", sub, i);
                    if (b->n_urls >= EM_RT_MAX_URLS) return fail(p, item, isub, "at most %d replicas", EM_RT_MAX_URLS);
                    if (!get_string(p, item, isub, &b->urls[b->n_urls])) return false;
                    b->n_urls++;
                }
                if (!b->n_urls) ok = fail(p, v, sub, "the list is empty");
            }
        } else if (!strcmp(key, "api_key_env")) ok = get_string(p, v, sub, &b->api_key_env);
        else if (!strcmp(key, "remote_model")) ok = get_string(p, v, sub, &b->remote_model);
        else if (!strcmp(key, "price")) ok = parse_price(p, v, sub, b);
        else if (!strcmp(key, "timeout_s")) ok = get_number(p, v, sub, 0.01, 86400, &b->timeout_s);
        else if (!strcmp(key, "connect_timeout_s")) ok = get_number(p, v, sub, 0.01, 600, &b->connect_timeout_s);
        else if (!strcmp(key, "max_concurrency")) ok = get_int32(p, v, sub, 0, 100000, &b->max_concurrency);
        else if (!strcmp(key, "retries")) ok = get_int32(p, v, sub, 0, 10, &b->retries);
        else if (!strcmp(key, "cooldown_s")) ok = get_number(p, v, sub, 0, 86400, &b->cooldown_s);
        else if (!strcmp(key, "max_output_tokens")) ok = get_int32(p, v, sub, 1, 1 << 24, &b->max_output_tokens);
        else ok = unknown(p, k, path);
        if (!ok) return false;
    }
    (void)has_url;
    (void)has_urls;
    if (!b->name[0]) return fail(p, n, path, "a backend needs a name");
    if (b->model && b->n_urls) return fail(p, n, path, "backend '%s' has both model (local) and url (remote)", b->name);
    if (!b->model && !b->n_urls) return fail(p, n, path, "backend '%s' needs model (a local GGUF) or url/urls", b->name);
    b->kind = b->model ? EM_RT_LOCAL : EM_RT_REMOTE;
    for (int i = 0; i < b->n_urls; i++)
        if (strncmp(b->urls[i], "http://", 7) && strncmp(b->urls[i], "https://", 8))
            return fail(p, n, path, "url '%.100s' must start with http:// or https://", b->urls[i]);
    if (b->kind == EM_RT_LOCAL && (b->api_key_env || b->remote_model || b->input_per_mtok || b->output_per_mtok))
        return fail(p, n, path, "local backend '%s' takes price.hourly_usd, not api keys, remote_model or per-token prices",
                    b->name);
    if (b->kind == EM_RT_REMOTE && (b->ctx || b->threads || b->chat_template || b->hourly_usd))
        return fail(p, n, path, "remote backend '%s' takes no ctx, threads, chat_template or hourly_usd", b->name);
    return true;
}

/* -------------------------------------------------------------- routes */

static bool backend_ref(cfg_parser *p, yaml_node_t *v, const char *path, int *out) {
    char name[EM_RT_NAME];
    if (!get_name(p, v, path, name)) return false;
    int i = em_rt_config_backend(p->c, name);
    if (i < 0) return fail(p, v, path, "no backend is named '%s'", name);
    *out = i;
    return true;
}

static bool get_tristate(cfg_parser *p, yaml_node_t *v, const char *path, int *out) {
    bool b = false;
    if (!get_bool(p, v, path, &b)) return false;
    *out = b;
    return true;
}

static bool parse_rule(cfg_parser *p, yaml_node_t *n, const char *path, em_rt_rule *r) {
    if (!want(p, n, path, YAML_MAPPING_NODE)) return false;
    *r = (em_rt_rule){.line = (int)n->start_mark.line + 1, .prompt_tokens_min = -1, .prompt_tokens_max = -1,
                      .max_tokens_min = -1, .max_tokens_max = -1, .tools = -1, .json_schema = -1, .backend = -1};
    char sub[256];
    FOR_PAIRS(p, n, k, v) {
        const char *key = scalar(k);
        if (!key) return fail(p, k, path, "keys must be strings");
        snprintf(sub, sizeof sub, "%s.%s", path, key);
        bool ok;
        if (!strcmp(key, "prompt_tokens_min")) ok = get_int(p, v, sub, 0, 1L << 30, &r->prompt_tokens_min);
        else if (!strcmp(key, "prompt_tokens_max")) ok = get_int(p, v, sub, 0, 1L << 30, &r->prompt_tokens_max);
        else if (!strcmp(key, "max_tokens_min")) ok = get_int(p, v, sub, 0, 1L << 30, &r->max_tokens_min);
        else if (!strcmp(key, "max_tokens_max")) ok = get_int(p, v, sub, 0, 1L << 30, &r->max_tokens_max);
        else if (!strcmp(key, "tools")) ok = get_tristate(p, v, sub, &r->tools);
        else if (!strcmp(key, "json_schema")) ok = get_tristate(p, v, sub, &r->json_schema);
        else if (!strcmp(key, "tag")) ok = get_name(p, v, sub, r->tag);
        else if (!strcmp(key, "backend")) ok = backend_ref(p, v, sub, &r->backend);
        else ok = unknown(p, k, path);
        if (!ok) return false;
    }
    if (r->backend < 0) return fail(p, n, path, "a rule needs a backend");
    return true;
}

static bool parse_route(cfg_parser *p, yaml_node_t *n, const char *path, em_rt_route *r) {
    if (!want(p, n, path, YAML_MAPPING_NODE)) return false;
    *r = (em_rt_route){.line = (int)n->start_mark.line + 1, .policy = EM_RT_DIRECT, .accept_mean_logprob = -1.0,
                       .accept_min_logprob = -1e30};
    char sub[160];
    bool has_policy = false, has_accept = false;
    FOR_PAIRS(p, n, k, v) {
        const char *key = scalar(k);
        if (!key) return fail(p, k, path, "keys must be strings");
        snprintf(sub, sizeof sub, "%s.%s", path, key);
        bool ok = true;
        if (!strcmp(key, "name")) ok = get_name(p, v, sub, r->name);
        else if (!strcmp(key, "policy")) {
            static const char *names[] = {"direct", "fallback", "cascade", "rules"};
            const char *s = scalar(v);
            int found = -1;
            for (int i = 0; s && i < 4; i++)
                if (!strcmp(s, names[i])) found = i;
            if (found < 0) ok = fail(p, v, sub, "expected direct, fallback, cascade or rules");
            else r->policy = (em_rt_policy)found, has_policy = true;
        } else if (!strcmp(key, "backends")) {
            ok = want(p, v, sub, YAML_SEQUENCE_NODE);
            if (ok)
                FOR_ITEMS(p, v, i, item) {
                    char isub[176];
                    snprintf(isub, sizeof isub, "%s[%d]", sub, i);
                    if (r->n_backends >= EM_RT_MAX_HOPS) return fail(p, item, isub, "at most %d backends", EM_RT_MAX_HOPS);
                    if (!backend_ref(p, item, isub, &r->backends[r->n_backends])) return false;
                    r->n_backends++;
                }
        } else if (!strcmp(key, "accept")) {
            has_accept = true;
            ok = want(p, v, sub, YAML_MAPPING_NODE);
            if (ok)
                FOR_PAIRS(p, v, k2, v2) {
                    const char *key2 = scalar(k2);
                    char sub2[176];
                    snprintf(sub2, sizeof sub2, "%s.%s", sub, key2 ? key2 : "?");
                    bool ok2;
                    if (key2 && !strcmp(key2, "mean_logprob")) ok2 = get_number(p, v2, sub2, -1e6, 0, &r->accept_mean_logprob);
                    else if (key2 && !strcmp(key2, "min_logprob")) ok2 = get_number(p, v2, sub2, -1e6, 0, &r->accept_min_logprob);
                    else ok2 = unknown(p, k2, sub);
                    if (!ok2) return false;
                }
        } else if (!strcmp(key, "rules")) {
            ok = want(p, v, sub, YAML_SEQUENCE_NODE);
            if (ok)
                FOR_ITEMS(p, v, i, item) {
                    char isub[176];
                    snprintf(isub, sizeof isub, "%s[%d]", sub, i);
                    if (r->n_rules >= EM_RT_MAX_RULES) return fail(p, item, isub, "at most %d rules", EM_RT_MAX_RULES);
                    if (!parse_rule(p, item, isub, &r->rules[r->n_rules])) return false;
                    r->n_rules++;
                }
        } else ok = unknown(p, k, path);
        if (!ok) return false;
    }
    if (!r->name[0]) return fail(p, n, path, "a route needs a name");
    if (!has_policy) return fail(p, n, path, "route '%s' needs a policy (direct, fallback, cascade or rules)", r->name);
    if (r->policy == EM_RT_RULES) {
        if (!r->n_rules) return fail(p, n, path, "route '%s': policy rules needs a rules list", r->name);
        if (r->n_backends) return fail(p, n, path, "route '%s': a rules route names its backends in its rules", r->name);
        /* The backends a rules route may use, for budgets and listings. */
        for (int i = 0; i < r->n_rules && r->n_backends < EM_RT_MAX_HOPS; i++) {
            bool seen = false;
            for (int j = 0; j < r->n_backends; j++) seen |= r->backends[j] == r->rules[i].backend;
            if (!seen) r->backends[r->n_backends++] = r->rules[i].backend;
        }
    } else if (r->n_rules) return fail(p, n, path, "route '%s': rules belong to policy rules", r->name);
    if (!r->n_backends) return fail(p, n, path, "route '%s' needs backends", r->name);
    if (r->policy == EM_RT_DIRECT && r->n_backends != 1)
        return fail(p, n, path, "route '%s': policy direct takes exactly one backend", r->name);
    if (r->policy == EM_RT_CASCADE && r->n_backends < 2)
        return fail(p, n, path, "route '%s': policy cascade needs at least two backends, cheapest first", r->name);
    if (r->policy == EM_RT_CASCADE && !has_accept)
        return fail(p, n, path, "route '%s': policy cascade needs accept: {mean_logprob, min_logprob}", r->name);
    if (r->policy != EM_RT_CASCADE && has_accept)
        return fail(p, n, path, "route '%s': accept belongs to policy cascade", r->name);
    return true;
}

/* ---------------------------------------------------------------- keys */

static bool parse_key(cfg_parser *p, yaml_node_t *n, const char *path, em_rt_key *key, char *downgrade,
                      yaml_node_t **downgrade_node) {
    if (!want(p, n, path, YAML_MAPPING_NODE)) return false;
    *key = (em_rt_key){.line = (int)n->start_mark.line + 1, .downgrade_route = -1};
    char sub[160];
    char *env = NULL, *literal = NULL;
    bool ok = true;
    FOR_PAIRS(p, n, k, v) {
        const char *kn = scalar(k);
        if (!kn) {
            ok = fail(p, k, path, "keys must be strings");
            goto done;
        }
        snprintf(sub, sizeof sub, "%s.%s", path, kn);
        if (!strcmp(kn, "name")) ok = get_name(p, v, sub, key->name);
        else if (!strcmp(kn, "key_env")) ok = get_string(p, v, sub, &env);
        else if (!strcmp(kn, "key")) ok = get_string(p, v, sub, &literal);
        else if (!strcmp(kn, "routes")) {
            ok = want(p, v, sub, YAML_SEQUENCE_NODE);
            if (ok)
                FOR_ITEMS(p, v, i, item) {
                    char isub[176], rn[EM_RT_NAME];
                    snprintf(isub, sizeof isub, "%s[%d]", sub, i);
                    if (!(ok = get_name(p, item, isub, rn))) goto done;
                    int ri = em_rt_config_route(p->c, rn);
                    if (ri < 0) ri = em_rt_config_backend(p->c, rn) >= 0 ? 1000 + em_rt_config_backend(p->c, rn) : -1;
                    if (ri < 0) {
                        ok = fail(p, item, isub, "no route or backend is named '%s'", rn);
                        goto done;
                    }
                    if (key->n_routes >= EM_RT_MAX_ROUTES) {
                        ok = fail(p, item, isub, "at most %d routes", EM_RT_MAX_ROUTES);
                        goto done;
                    }
                    key->routes[key->n_routes++] = ri;
                }
        } else if (!strcmp(kn, "budget")) {
            ok = want(p, v, sub, YAML_MAPPING_NODE);
            if (ok)
                FOR_PAIRS(p, v, k2, v2) {
                    const char *kn2 = scalar(k2);
                    char sub2[176];
                    snprintf(sub2, sizeof sub2, "%s.%s", sub, kn2 ? kn2 : "?");
                    if (kn2 && !strcmp(kn2, "daily_usd")) ok = get_number(p, v2, sub2, 0, 1e9, &key->daily_usd);
                    else if (kn2 && !strcmp(kn2, "monthly_usd")) ok = get_number(p, v2, sub2, 0, 1e9, &key->monthly_usd);
                    else if (kn2 && !strcmp(kn2, "on_exceed")) {
                        const char *s = scalar(v2);
                        if (s && !strcmp(s, "deny")) key->downgrade_route = -1;
                        else if (s && !strncmp(s, "downgrade:", 10) && s[10] && strlen(s + 10) < EM_RT_NAME) {
                            snprintf(downgrade, EM_RT_NAME, "%s", s + 10);
                            *downgrade_node = v2;
                        } else ok = fail(p, v2, sub2, "expected deny or downgrade:ROUTE");
                    } else ok = unknown(p, k2, sub);
                    if (!ok) goto done;
                }
        } else ok = unknown(p, k, path);
        if (!ok) goto done;
    }
done:
    if (ok && env && literal) ok = fail(p, n, path, "give key_env or key, not both");
    if (ok && !env && !literal) ok = fail(p, n, path, "a key needs key_env (an environment variable) or key");
    if (ok && env) {
        const char *val = getenv(env);
        if (!val || !val[0]) ok = fail(p, n, path, "the environment variable %s is not set", env);
        else if (!(key->secret = strdup(val))) ok = fail(p, n, path, "out of memory");
        if (ok && !key->name[0]) snprintf(key->name, sizeof key->name, "%.63s", env);
    }
    if (ok && literal) {
        key->secret = literal;
        literal = NULL;
        if (!key->name[0]) ok = fail(p, n, path, "a key given literally needs a name (it is what the ledger records)");
    }
    free(env);
    free(literal);
    return ok;
}

/* ---------------------------------------------------------------- top */

/* The backends list: each parsed, the names unique, none remote when
 * the configuration is airgapped.  Before the routes, which name them. */
static bool parse_backends(cfg_parser *p, yaml_node_t *backends) {
    em_rt_config *c = p->c;
    if (!want(p, backends, "backends", YAML_SEQUENCE_NODE)) return false;
    FOR_ITEMS(p, backends, i, item) {
        char path[64];
        snprintf(path, sizeof path, "backends[%d]", i);
        if (c->n_backends >= EM_RT_MAX_BACKENDS) return fail(p, item, path, "at most %d backends", EM_RT_MAX_BACKENDS);
        em_rt_backend_cfg *b = &c->backends[c->n_backends++];
        if (!parse_backend(p, item, path, b)) return false;
        for (int j = 0; j < c->n_backends - 1; j++)
            if (!strcmp(c->backends[j].name, b->name))
                return fail(p, item, path, "backend name '%s' is already used on line %d", b->name, c->backends[j].line);
        if (c->airgap && b->kind == EM_RT_REMOTE)
            return fail(p, item, path, "airgap is true but backend '%s' is remote (%s)", b->name, b->urls[0]);
    }
    if (!c->n_backends) return fail(p, backends, "backends", "the list is empty");
    return true;
}

/* The routes list: each parsed, the names unique and none a backend's
 * name unless the route is that backend's own direct route. */
static bool parse_routes(cfg_parser *p, yaml_node_t *routes) {
    em_rt_config *c = p->c;
    if (!want(p, routes, "routes", YAML_SEQUENCE_NODE)) return false;
    FOR_ITEMS(p, routes, i, item) {
        char path[64];
        snprintf(path, sizeof path, "routes[%d]", i);
        if (c->n_routes >= EM_RT_MAX_ROUTES) return fail(p, item, path, "at most %d routes", EM_RT_MAX_ROUTES);
        em_rt_route *r = &c->routes[c->n_routes++];
        if (!parse_route(p, item, path, r)) return false;
        for (int j = 0; j < c->n_routes - 1; j++)
            if (!strcmp(c->routes[j].name, r->name))
                return fail(p, item, path, "route name '%s' is already used on line %d", r->name, c->routes[j].line);
        int bj = em_rt_config_backend(c, r->name);
        if (bj >= 0 && !(r->policy == EM_RT_DIRECT && r->backends[0] == bj))
            return fail(p, item, path, "route name '%s' is also a backend's name (line %d)", r->name,
                        c->backends[bj].line);
    }
    return true;
}

/* The keys list: each parsed, its downgrade route resolved (routes come
 * first), names and secrets unique. */
static bool parse_keys(cfg_parser *p, yaml_node_t *keys) {
    em_rt_config *c = p->c;
    if (!want(p, keys, "keys", YAML_SEQUENCE_NODE)) return false;
    FOR_ITEMS(p, keys, i, item) {
        char path[64], downgrade[EM_RT_NAME] = "";
        yaml_node_t *dn = NULL;
        snprintf(path, sizeof path, "keys[%d]", i);
        if (c->n_keys >= EM_RT_MAX_KEYS) return fail(p, item, path, "at most %d keys", EM_RT_MAX_KEYS);
        em_rt_key *key = &c->keys[c->n_keys++];
        if (!parse_key(p, item, path, key, downgrade, &dn)) return false;
        if (downgrade[0]) {
            key->downgrade_route = em_rt_config_route(c, downgrade);
            if (key->downgrade_route < 0)
                return fail(p, dn, path, "on_exceed: no route is named '%s'", downgrade);
        }
        for (int j = 0; j < c->n_keys - 1; j++) {
            if (!strcmp(c->keys[j].name, key->name))
                return fail(p, item, path, "key name '%s' is already used on line %d", key->name, c->keys[j].line);
            if (!strcmp(c->keys[j].secret, key->secret))
                return fail(p, item, path, "the same secret as the key on line %d", c->keys[j].line);
        }
    }
    return true;
}

static bool parse_top(cfg_parser *p, yaml_node_t *root) {
    em_rt_config *c = p->c;
    if (!root) return fail(p, NULL, "", "the file is empty");
    if (!want(p, root, "", YAML_MAPPING_NODE)) return false;
    yaml_node_t *backends = NULL, *routes = NULL, *keys = NULL;
    FOR_PAIRS(p, root, k, v) {
        const char *key = scalar(k);
        bool ok = true;
        if (!key) return fail(p, k, "", "keys must be strings");
        if (!strcmp(key, "airgap")) ok = get_bool(p, v, key, &c->airgap);
        else if (!strcmp(key, "ledger")) ok = get_string(p, v, key, &c->ledger);
        else if (!strcmp(key, "health_interval_s")) ok = get_number(p, v, key, 0.05, 3600, &c->health_interval_s);
        else if (!strcmp(key, "max_connections")) ok = get_int32(p, v, key, 1, 65536, &c->max_connections);
        else if (!strcmp(key, "max_connections_per_client"))
            ok = get_int32(p, v, key, 0, 65536, &c->max_connections_per_client);
        else if (!strcmp(key, "request_timeout_s")) ok = get_number(p, v, key, 0.1, 3600, &c->request_timeout_s);
        else if (!strcmp(key, "backends")) backends = v;
        else if (!strcmp(key, "routes")) routes = v;
        else if (!strcmp(key, "keys")) keys = v;
        else ok = unknown(p, k, "");
        if (!ok) return false;
    }
    if (!backends) return fail(p, root, "backends", "the configuration needs at least one backend");
    if (!parse_backends(p, backends) || (routes && !parse_routes(p, routes)) || (keys && !parse_keys(p, keys)))
        return false;
    if (!c->ledger && !(c->ledger = strdup("sqlite://ember-ledger.db"))) return fail(p, root, "ledger", "out of memory");
    if (strcmp(c->ledger, "none") && strncmp(c->ledger, "sqlite:", 7) && strncmp(c->ledger, "postgres:", 9) &&
        strncmp(c->ledger, "postgresql:", 11)) {
        char shown[128];
        em_ledger_url_redacted(c->ledger, shown, sizeof shown);
        return fail(p, root, "ledger", "'%.100s': expected sqlite:///PATH, sqlite://RELATIVE-PATH, postgres://... or none",
                    shown);
    }
    if (!c->health_interval_s) c->health_interval_s = 5;
    if (!c->max_connections) c->max_connections = EM_RT_MAX_CONNECTIONS;
    if (!c->request_timeout_s) c->request_timeout_s = EM_SERVER_REQUEST_TIMEOUT_S;
    return true;
}

bool em_rt_config_parse(const char *text, size_t len, const char *file, em_rt_config *out, char *err,
                        size_t err_len) {
    memset(out, 0, sizeof *out);
    cfg_parser p = {.file = file ? file : "config", .err = err, .err_len = err_len, .c = out};
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        snprintf(err, err_len, "%s: out of memory", p.file);
        return false;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, err_len, "%s:%lu: YAML syntax: %s%s%s", p.file, (unsigned long)parser.problem_mark.line + 1,
                 parser.problem ? parser.problem : "error", parser.context ? " " : "",
                 parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return false;
    }
    p.doc = &doc;
    bool ok = parse_top(&p, yaml_document_get_root_node(&doc));
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (!ok) em_rt_config_free(out);
    return ok;
}

void em_rt_config_free(em_rt_config *c) {
    for (int i = 0; i < EM_RT_MAX_BACKENDS; i++) {
        em_rt_backend_cfg *b = &c->backends[i];
        free(b->model);
        free(b->chat_template);
        for (int j = 0; j < EM_RT_MAX_URLS; j++) free(b->urls[j]);
        free(b->api_key_env);
        free(b->remote_model);
    }
    for (int i = 0; i < EM_RT_MAX_KEYS; i++) free(c->keys[i].secret);
    free(c->ledger);
    memset(c, 0, sizeof *c);
}

int em_rt_config_backend(const em_rt_config *c, const char *name) {
    for (int i = 0; i < c->n_backends; i++)
        if (!strcmp(c->backends[i].name, name)) return i;
    return -1;
}

int em_rt_config_route(const em_rt_config *c, const char *name) {
    for (int i = 0; i < c->n_routes; i++)
        if (!strcmp(c->routes[i].name, name)) return i;
    return -1;
}
