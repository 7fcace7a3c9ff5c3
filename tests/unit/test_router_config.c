/*
 * test_router_config.c - the router's YAML configuration: a full valid
 * file, defaults, and one wrong file per rule, each refused with the line
 * and key it names.
 */
#include "router/config.h"
#include "test.h"

#include <stdlib.h>

static em_rt_config cfg;
static char err[512];

static bool parse(const char *text) { return em_rt_config_parse(text, strlen(text), "t.yaml", &cfg, err, sizeof err); }

/* The file must be refused with a message containing every fragment. */
static void refused(const char *text, const char *frag1, const char *frag2) {
    bool ok = parse(text);
    CHECK_MSG(!ok, "accepted: %s", text);
    if (ok) {
        em_rt_config_free(&cfg);
        return;
    }
    CHECK_MSG(strstr(err, frag1) != NULL, "'%s' lacks '%s'", err, frag1);
    if (frag2) CHECK_MSG(strstr(err, frag2) != NULL, "'%s' lacks '%s'", err, frag2);
}

static const char *full =
    "airgap: false\n"
    "ledger: sqlite:///tmp/x.db\n"
    "backends:\n"
    "  - {name: small, model: models/small.gguf, ctx: 8192, price: {hourly_usd: 1.5}}\n"
    "  - {name: pool, urls: [http://a:8080/v1, http://b:8080/v1]}\n"
    "  - name: frontier\n"
    "    url: https://api.example.com/v1\n"
    "    api_key_env: FRONTIER_KEY\n"
    "    remote_model: muse-spark\n"
    "    price: {input_per_mtok: 3.00, output_per_mtok: 15.00}\n"
    "    timeout_s: 60\n"
    "    max_concurrency: 32\n"
    "routes:\n"
    "  - {name: auto, policy: cascade, backends: [small, frontier], accept: {mean_logprob: -1.2, min_logprob: -6}}\n"
    "  - {name: safe, policy: fallback, backends: [frontier, pool]}\n"
    "  - name: smart\n"
    "    policy: rules\n"
    "    rules:\n"
    "      - {tools: true, backend: frontier}\n"
    "      - {prompt_tokens_min: 2000, backend: pool}\n"
    "      - {tag: cheap, backend: small}\n"
    "      - {backend: small}\n"
    "keys:\n"
    "  - {key_env: TEAM_A_KEY, routes: [auto, small], budget: {daily_usd: 5.00, on_exceed: 'downgrade:safe'}}\n"
    "  - {name: ops, key: s3cret, budget: {monthly_usd: 100}}\n";

int main(void) {
    setenv("TEAM_A_KEY", "team-a-secret", 1);
    unsetenv("EMBER_NO_SUCH_VAR");

    CHECK_MSG(parse(full), "%s", err);
    CHECK(cfg.n_backends == 3 && cfg.n_routes == 3 && cfg.n_keys == 2);
    CHECK(!strcmp(cfg.ledger, "sqlite:///tmp/x.db"));
    CHECK(cfg.backends[0].kind == EM_RT_LOCAL && cfg.backends[0].ctx == 8192 && cfg.backends[0].hourly_usd == 1.5);
    CHECK(cfg.backends[1].kind == EM_RT_REMOTE && cfg.backends[1].n_urls == 2 && !strcmp(cfg.backends[1].urls[1], "http://b:8080/v1"));
    CHECK(cfg.backends[2].input_per_mtok == 3.0 && cfg.backends[2].output_per_mtok == 15.0);
    CHECK(cfg.backends[2].max_concurrency == 32 && !strcmp(cfg.backends[2].remote_model, "muse-spark"));
    CHECK(cfg.backends[2].retries == 1 && cfg.backends[2].cooldown_s == 10); /* defaults */
    CHECK(cfg.routes[0].policy == EM_RT_CASCADE && cfg.routes[0].accept_mean_logprob == -1.2 &&
          cfg.routes[0].accept_min_logprob == -6);
    CHECK(cfg.routes[0].n_backends == 2 && cfg.routes[0].backends[1] == 2);
    CHECK(cfg.routes[2].policy == EM_RT_RULES && cfg.routes[2].n_rules == 4 && cfg.routes[2].rules[0].tools == 1);
    CHECK(cfg.routes[2].rules[1].prompt_tokens_min == 2000 && !strcmp(cfg.routes[2].rules[2].tag, "cheap"));
    CHECK(cfg.routes[2].n_backends == 3); /* the backends its rules name */
    CHECK(!strcmp(cfg.keys[0].name, "TEAM_A_KEY") && !strcmp(cfg.keys[0].secret, "team-a-secret"));
    CHECK(cfg.keys[0].daily_usd == 5.0 && cfg.keys[0].downgrade_route == 1 && cfg.keys[0].n_routes == 2);
    CHECK(cfg.keys[0].routes[1] == 1000 + 0); /* a backend named as a route */
    CHECK(cfg.keys[1].monthly_usd == 100 && cfg.keys[1].downgrade_route == -1 && !strcmp(cfg.keys[1].secret, "s3cret"));
    CHECK(em_rt_config_route(&cfg, "safe") == 1 && em_rt_config_backend(&cfg, "pool") == 1);
    CHECK(em_rt_config_route(&cfg, "nope") == -1);
    em_rt_config_free(&cfg);

    /* Defaults of a minimal file. */
    CHECK_MSG(parse("backends: [{name: a, url: 'http://x/v1'}]\n"), "%s", err);
    CHECK(!strcmp(cfg.ledger, "sqlite://ember-ledger.db") && cfg.health_interval_s == 5 && !cfg.airgap);
    CHECK(cfg.max_connections == 1024 && cfg.request_timeout_s == 10); /* the front's connection guard */
    CHECK(cfg.max_connections_per_client == 0);                       /* no cap per client            */
    em_rt_config_free(&cfg);
    CHECK_MSG(parse("max_connections: 6\nrequest_timeout_s: 2.5\nmax_connections_per_client: 3\n"
                    "backends: [{name: a, url: 'http://x/v1'}]\n"),
              "%s", err);
    CHECK(cfg.max_connections == 6 && cfg.request_timeout_s == 2.5 && cfg.max_connections_per_client == 3);
    em_rt_config_free(&cfg);

    /* Airgap: a remote backend refuses the file, naming it. */
    refused("airgap: true\nbackends:\n  - {name: l, model: m.gguf}\n  - {name: far, url: 'https://api.x/v1'}\n",
            "t.yaml:4: backends[1]", "airgap is true but backend 'far' is remote");
    CHECK_MSG(parse("airgap: true\nbackends:\n  - {name: l, model: m.gguf}\n"), "%s", err);
    em_rt_config_free(&cfg);

    /* Syntax, types, keys, references: each names its line and key. */
    refused("backends: [{name: a, url: x\n", "t.yaml:", "YAML syntax");
    refused("", "the file is empty", NULL);
    refused("- a\n- b\n", "expected a mapping", NULL);
    refused("backends: []\n", "backends: the list is empty", NULL);
    refused("bakends: []\n", "t.yaml:1", "unknown key 'bakends'");
    refused("backends:\n  - {name: a, url: 'http://x/v1', timeout_s: fast}\n", "t.yaml:2: backends[0].timeout_s",
            "'fast' is not a number");
    refused("backends:\n  - {name: a, url: 'http://x/v1', timeout_s: -1}\n", "backends[0].timeout_s", "outside");
    refused("backends:\n  - {name: a, url: 'http://x/v1', retries: 2.5}\n", "backends[0].retries", "not an integer");
    refused("max_connections: 0\nbackends: [{name: a, url: 'http://x/v1'}]\n", "t.yaml:1: max_connections", "outside");
    refused("max_connections: 10.5\nbackends: [{name: a, url: 'http://x/v1'}]\n", "max_connections", "not an integer");
    refused("max_connections_per_client: -1\nbackends: [{name: a, url: 'http://x/v1'}]\n",
            "t.yaml:1: max_connections_per_client", "outside");
    refused("request_timeout_s: 0\nbackends: [{name: a, url: 'http://x/v1'}]\n", "t.yaml:1: request_timeout_s", "outside");
    refused("backends:\n  - {name: a, url: 'ftp://x/v1'}\n", "t.yaml:2", "must start with http:// or https://");
    refused("backends:\n  - {name: a}\n", "needs model", NULL);
    refused("backends:\n  - {name: a, model: m.gguf, url: 'http://x'}\n", "both model", NULL);
    refused("backends:\n  - {model: m.gguf}\n", "needs a name", NULL);
    refused("backends:\n  - {name: 'a b', model: m.gguf}\n", "backends[0].name", "names use");
    refused("backends:\n  - {name: a, model: m.gguf}\n  - {name: a, model: n.gguf}\n", "t.yaml:3",
            "'a' is already used on line 2");
    refused("backends:\n  - {name: a, model: m.gguf, price: {input_per_mtok: 1}}\n", "local backend 'a'", NULL);
    refused("backends:\n  - {name: a, url: 'http://x', price: {input: 1}}\n", "backends[0].price", "unknown key 'input'");
    refused("backends:\n  - {name: a, url: 'http://x', urls: ['http://y']}\n", "not both", NULL);
    refused("backends:\n  - {name: a, urls: []}\n", "the list is empty", NULL);
    refused("backends: [{name: a, model: m}]\nroutes:\n  - {name: r, policy: magic, backends: [a]}\n",
            "t.yaml:3: routes[0].policy", "expected direct, fallback, cascade or rules");
    refused("backends: [{name: a, model: m}]\nroutes:\n  - {name: r, policy: direct, backends: [b]}\n",
            "routes[0].backends[0]", "no backend is named 'b'");
    refused("backends: [{name: a, model: m}, {name: b, model: n}]\nroutes:\n  - {name: r, policy: direct, backends: [a, b]}\n",
            "exactly one backend", NULL);
    refused("backends: [{name: a, model: m}, {name: b, model: n}]\nroutes:\n  - {name: r, policy: cascade, backends: [a, b]}\n",
            "needs accept", NULL);
    refused("backends: [{name: a, model: m}]\nroutes:\n  - {name: r, policy: cascade, backends: [a], accept: {mean_logprob: -1}}\n",
            "at least two backends", NULL);
    refused("backends: [{name: a, model: m}, {name: b, model: n}]\nroutes:\n"
            "  - {name: r, policy: cascade, backends: [a, b], accept: {mean_logprob: 1}}\n",
            "accept.mean_logprob", "outside");
    refused("backends: [{name: a, model: m}]\nroutes:\n  - {name: r, policy: fallback, backends: [a], accept: {mean_logprob: -1}}\n",
            "accept belongs to policy cascade", NULL);
    refused("backends: [{name: a, model: m}]\nroutes:\n  - {name: r, policy: rules}\n", "needs a rules list", NULL);
    refused("backends: [{name: a, model: m}]\nroutes:\n  - {name: r, policy: rules, rules: [{tools: maybe, backend: a}]}\n",
            "routes[0].rules[0].tools", "expected true or false");
    refused("backends: [{name: a, model: m}]\nroutes:\n  - {name: r, policy: rules, rules: [{tools: true}]}\n",
            "a rule needs a backend", NULL);
    refused("backends: [{name: a, model: m}]\nroutes:\n  - {name: a, policy: fallback, backends: [a]}\n",
            "also a backend's name", NULL);
    refused("backends: [{name: a, model: m}]\nroutes:\n  - {policy: direct, backends: [a]}\n", "a route needs a name", NULL);
    refused("backends: [{name: a, model: m}]\nkeys:\n  - {key_env: EMBER_NO_SUCH_VAR}\n", "t.yaml:3: keys[0]",
            "EMBER_NO_SUCH_VAR is not set");
    refused("backends: [{name: a, model: m}]\nkeys:\n  - {key: abc}\n", "needs a name", NULL);
    refused("backends: [{name: a, model: m}]\nkeys:\n  - {name: k}\n", "needs key_env", NULL);
    refused("backends: [{name: a, model: m}]\nkeys:\n  - {name: k, key: x, routes: [nope]}\n", "keys[0].routes[0]",
            "no route or backend is named 'nope'");
    refused("backends: [{name: a, model: m}]\nkeys:\n  - {name: k, key: x, budget: {daily_usd: 1, on_exceed: 'downgrade:zz'}}\n",
            "t.yaml:3", "no route is named 'zz'");
    refused("backends: [{name: a, model: m}]\nkeys:\n  - {name: k, key: x, budget: {on_exceed: later}}\n",
            "budget.on_exceed", "deny or downgrade:ROUTE");
    refused("backends: [{name: a, model: m}]\nkeys:\n  - {name: k, key: x}\n  - {name: j, key: x}\n", "keys[1]",
            "same secret");
    refused("ledger: mysql://x\nbackends: [{name: a, model: m}]\n", "ledger", "expected sqlite");
    refused("backends: [{name: a, model: m}]\nbackends: [{name: b, model: m}]\n", "t.yaml:2", "key 'backends' appears twice");
    TEST_END();
}
