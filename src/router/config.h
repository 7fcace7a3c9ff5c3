/*
 * config.h - the router's configuration (`ember serve --config FILE`):
 * backends, routes with their policies, API keys with budgets, the
 * ledger's location.  Read from YAML with libyaml; every error names the
 * file's line and the key at fault ("ember.yaml:12: backends[2].price:
 * unknown key 'input'").  docs/ROUTING.md is the reference.
 */
#ifndef EM_ROUTER_CONFIG_H
#define EM_ROUTER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#define EM_RT_NAME 64        /* bytes of a backend, route or key name        */
#define EM_RT_MAX_URLS 16    /* replicas of one backend                      */
#define EM_RT_MAX_BACKENDS 32
#define EM_RT_MAX_ROUTES 32
#define EM_RT_MAX_KEYS 64
/* Default of max_connections: the front's connection table.  A gateway
 * holds more client connections than one `ember serve` (256). */
#define EM_RT_MAX_CONNECTIONS 1024
#define EM_RT_MAX_RULES 16
#define EM_RT_MAX_HOPS 8     /* backends one route lists                     */

typedef enum em_rt_kind { EM_RT_LOCAL, EM_RT_REMOTE } em_rt_kind;
typedef enum em_rt_policy { EM_RT_DIRECT, EM_RT_FALLBACK, EM_RT_CASCADE, EM_RT_RULES } em_rt_policy;

typedef struct em_rt_backend_cfg {
    char name[EM_RT_NAME];
    em_rt_kind kind;
    int line;                      /* where it is defined, for messages         */
    /* local */
    char *model;                   /* GGUF path                                 */
    int ctx;                       /* positions per sequence; 0: the model's    */
    int parallel;                  /* sequences computed together               */
    int threads;                   /* 0: physical cores                         */
    char *chat_template;           /* NULL: the model's                         */
    double hourly_usd;             /* hardware cost per hour                    */
    double tokens_per_s;           /* throughput assumed until one is measured  */
    /* remote */
    char *urls[EM_RT_MAX_URLS];    /* base URLs ending in /v1                   */
    int n_urls;
    char *api_key_env;             /* environment variable holding the key      */
    char *remote_model;            /* the model name sent upstream; NULL: name  */
    double input_per_mtok, output_per_mtok; /* USD per million tokens           */
    /* both */
    double timeout_s;              /* whole request                             */
    double connect_timeout_s;
    int max_concurrency;           /* requests in flight per replica; 0: no cap */
    int retries;                   /* extra tries before the route moves on     */
    double cooldown_s;             /* a failing replica rests this long         */
    int max_output_tokens;         /* for the budget when max_tokens is absent  */
} em_rt_backend_cfg;

/* A condition of a `rules` route; a field left at its "absent" value does
 * not take part.  All present fields must hold for the rule to match. */
typedef struct em_rt_rule {
    int line;
    long prompt_tokens_min, prompt_tokens_max; /* -1: absent (estimated tokens) */
    long max_tokens_min, max_tokens_max;       /* -1: absent                    */
    int tools;                     /* -1 absent, 0 no tools, 1 tools present    */
    int json_schema;               /* -1 absent, 0/1 response_format json_schema */
    char tag[EM_RT_NAME];          /* "" absent; else x-ember-tag must equal it */
    int backend;                   /* index into the config's backends          */
} em_rt_rule;

typedef struct em_rt_route {
    char name[EM_RT_NAME];
    int line;
    em_rt_policy policy;
    int backends[EM_RT_MAX_HOPS];  /* indexes, in order                         */
    int n_backends;
    double accept_mean_logprob;    /* cascade: accept when mean >= this ...     */
    double accept_min_logprob;     /* ... and every token's >= this             */
    em_rt_rule rules[EM_RT_MAX_RULES];
    int n_rules;
} em_rt_route;

typedef struct em_rt_key {
    char name[EM_RT_NAME];         /* recorded in the ledger (never the secret) */
    int line;
    char *secret;                  /* from key_env or key                       */
    int routes[EM_RT_MAX_ROUTES];  /* routes it may use; none listed: all       */
    int n_routes;
    double daily_usd, monthly_usd; /* 0: no budget                              */
    int downgrade_route;           /* -1: deny with 429 when over budget        */
} em_rt_key;

typedef struct em_rt_config {
    bool airgap;
    char *ledger;                  /* "sqlite:///path", "sqlite:path" or "none" */
    double health_interval_s;
    int max_connections;           /* the front's connection table (conns.h)    */
    int max_connections_per_client; /* slots of it one client address may hold
                                    * (an IPv6 client: its /64; 0: no cap)     */
    double request_timeout_s;      /* a request's headers, and its body's base
                                    * allowance, seconds (conns.h)              */
    bool quiet;                    /* not from YAML: no log line per request
                                    * (calibrate's in-process router)           */
    em_rt_backend_cfg backends[EM_RT_MAX_BACKENDS];
    int n_backends;
    em_rt_route routes[EM_RT_MAX_ROUTES];
    int n_routes;
    em_rt_key keys[EM_RT_MAX_KEYS];
    int n_keys;
} em_rt_config;

/*
 * Parses and validates a configuration.  `file` names it in messages.
 * Key secrets are read from the environment (key_env) here.  On failure
 * err gets "FILE:LINE: KEY: reason" and false is returned with nothing to
 * free.
 */
bool em_rt_config_parse(const char *text, size_t len, const char *file, em_rt_config *out, char *err,
                        size_t err_len);
void em_rt_config_free(em_rt_config *c);

/* Index of a backend or route by name, or -1. */
int em_rt_config_backend(const em_rt_config *c, const char *name);
int em_rt_config_route(const em_rt_config *c, const char *name);

#endif
