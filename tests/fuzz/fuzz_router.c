/*
 * fuzz_router.c - libFuzzer target: arbitrary bytes where the router
 * (`ember serve --config`) reads what others send it: a client's request
 * body, and a remote backend's answer, stream or refusal.
 *
 * As a request body (parsed as router.c parses it) the bytes go through
 * the facts the rules look at, the rules of a route, the cost bound of the
 * budget and, with a vocabulary (stories260K's, from $EMBER_FUZZ_VOCAB or
 * $EMBER_TEST_DATA), the local model's prompt token count.  As an answer
 * they go through the cascade's acceptance from token log-probabilities
 * and the usage the call is charged for; as a stream, through the cutting
 * into server-sent events and their data; as a refusal's body, through the
 * classification of upstream failures.
 *
 * Beyond "no crash, no leak, no out-of-bounds access" it checks the
 * contract: a rule picks a backend of the configuration or none, no usage
 * is negative, the confidence's minimum is at most its mean, a refused
 * answer says why, and every failure but the backend's own refusal maps
 * to an HTTP status and an error code of its own.
 */
#include "router/config.h"
#include "router/policy.h"
#include "router/upstream.h"
#include "fuzz_vocab.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check(bool cond) {
    if (!cond) abort();
}

static em_rt_config cfg;
static int route_rules = -1, route_cascade = -1;
static em_vocab *vocab;

static void load_once(void) {
    static bool loaded;
    if (loaded) return;
    loaded = true;
    static const char yaml[] =
        "backends:\n"
        "  - {name: small, model: models/small.gguf, ctx: 8192, price: {hourly_usd: 1.5, tokens_per_s: 30}}\n"
        "  - {name: pool, urls: [http://a:8080/v1, http://b:8080/v1]}\n"
        "  - {name: frontier, url: https://api.example.com/v1, price: {input_per_mtok: 3, output_per_mtok: 15}}\n"
        "routes:\n"
        "  - {name: auto, policy: cascade, backends: [small, frontier], accept: {mean_logprob: -1.2, min_logprob: -6}}\n"
        "  - name: smart\n"
        "    policy: rules\n"
        "    rules:\n"
        "      - {tools: true, backend: frontier}\n"
        "      - {prompt_tokens_min: 20, max_tokens_max: 100, json_schema: false, backend: pool}\n"
        "      - {tag: cheap, backend: small}\n";
    char err[512];
    if (!em_rt_config_parse(yaml, sizeof yaml - 1, "fuzz.yaml", &cfg, err, sizeof err)) {
        fprintf(stderr, "fuzz_router: %s\n", err);
        abort();
    }
    route_cascade = em_rt_config_route(&cfg, "auto");
    route_rules = em_rt_config_route(&cfg, "smart");
    check(route_cascade >= 0 && route_rules >= 0);
    vocab = fuzz_vocab_load("fuzz_router", "models/stories260K.gguf");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    load_once();
    static const long statuses[] = {200, 302, 400, 413, 422, 429, 500, 503};
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        em_up_outcome o = em_up_classify(statuses[i], (const char *)data, size);
        const char *code = NULL;
        int http = em_up_client_status(o, &code);
        /* A client error passes the backend's own 4xx on (router.c). */
        if (o != EM_UP_OK && o != EM_UP_CLIENT_ERROR) check(code != NULL && code[0] && http >= 400 && http < 600);
        check(strcmp(em_up_outcome_name(o), "unknown") != 0);
    }

    /* As a stream: event after event, as router.c takes them. */
    for (size_t off = 0, n; off < size && (n = em_sse_event_len((const char *)data + off, size - off)); off += n) {
        check(n <= size - off);
        const char *d;
        size_t dl;
        if (em_sse_event_data((const char *)data + off, n, &d, &dl))
            check(d >= (const char *)data + off && d + dl <= (const char *)data + off + n);
    }

    json_error_t je;
    json_t *body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(body)) {
        json_decref(body);
        return 0;
    }
    /* A client's request. */
    em_rt_facts f;
    em_rt_facts_of(body, size & 1 ? "cheap" : NULL, &f);
    check(f.prompt_tokens >= 0);
    int b = em_rt_rules_pick(&cfg.routes[route_rules], &f);
    check(b >= -1 && b < cfg.n_backends);
    for (int i = 0; i < cfg.n_backends; i++) {
        double c = em_rt_max_cost(&cfg.backends[i], (int64_t)size + 16, f.max_tokens);
        check(!isnan(c));
    }
    if (vocab) check(em_rt_prompt_tokens(body, vocab) >= -1);

    /* A backend's answer. */
    double mean = 0, min = 0;
    int n = -1;
    if (em_rt_confidence(body, &mean, &min, &n)) {
        check(n >= 0);
        if (n > 0 && isfinite(mean) && isfinite(min)) check(min <= mean + 1e-9 * fabs(mean));
    }
    int64_t pt = -1, ct = -1;
    em_rt_usage(body, &pt, &ct);
    check(pt >= 0 && ct >= 0);
    char reason[160];
    if (!em_rt_cascade_accept(&cfg.routes[route_cascade], body, reason, sizeof reason)) check(reason[0] != '\0');
    json_decref(body);
    return 0;
}
