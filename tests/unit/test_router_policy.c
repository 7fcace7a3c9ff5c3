/*
 * test_router_policy.c - the router's decisions without the network:
 * rules, cascade acceptance from logprobs, prices, the usage an answer
 * reports, the cutting of a stream into server-sent events, the mapping of
 * upstream failures (context-length errors however worded), and the
 * SQLite ledger's budgets under 200 concurrent reservations.
 */
#include "router/ledger.h"
#include "router/policy.h"
#include "router/upstream.h"
#include "test.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

static void test_rules(void) {
    em_rt_route r = {.policy = EM_RT_RULES, .n_rules = 4};
    r.rules[0] = (em_rt_rule){-1, -1, -1, -1, -1, 1, -1, "", 7};              /* tools -> 7            */
    r.rules[1] = (em_rt_rule){-1, 2000, -1, -1, -1, -1, -1, "", 5};           /* long prompts -> 5     */
    r.rules[2] = (em_rt_rule){-1, -1, -1, -1, 256, -1, -1, "cheap", 3};       /* tag and short -> 3    */
    r.rules[3] = (em_rt_rule){-1, -1, -1, -1, -1, -1, 1, "", 2};              /* json_schema -> 2      */
    json_error_t je;
    json_t *b = json_loads("{\"messages\":[{\"role\":\"user\",\"content\":\"hello there\"}],\"max_tokens\":100}", 0, &je);
    em_rt_facts f;
    em_rt_facts_of(b, NULL, &f);
    CHECK(f.prompt_tokens == 4 && f.max_tokens == 100 && !f.tools && !f.json_schema);
    CHECK(em_rt_rules_pick(&r, &f) == -1);
    f.tag = "cheap";
    CHECK(em_rt_rules_pick(&r, &f) == 3);
    f.max_tokens = 1000;
    CHECK(em_rt_rules_pick(&r, &f) == -1);
    f.max_tokens = -1; /* absent: unbounded, fails a maximum */
    CHECK(em_rt_rules_pick(&r, &f) == -1);
    json_decref(b);
    b = json_loads("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"x\"}]}],"
                   "\"tools\":[{\"type\":\"function\"}],\"response_format\":{\"type\":\"json_schema\"}}", 0, &je);
    em_rt_facts_of(b, "cheap", &f);
    CHECK(f.tools && f.json_schema && f.max_tokens == -1);
    CHECK(em_rt_rules_pick(&r, &f) == 7); /* first match wins */
    json_decref(b);
    char big[10000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    b = json_pack("{s:s, s:i}", "prompt", big, "max_completion_tokens", 5);
    em_rt_facts_of(b, NULL, &f);
    CHECK(f.prompt_tokens == 2500 && f.max_tokens == 5);
    CHECK(em_rt_rules_pick(&r, &f) == 5);
    json_decref(b);
}

static void test_cascade(void) {
    em_rt_route r = {.policy = EM_RT_CASCADE, .accept_mean_logprob = -1.0, .accept_min_logprob = -4.0};
    char why[128];
    json_error_t je;
    json_t *a = json_loads("{\"choices\":[{\"logprobs\":{\"content\":[{\"logprob\":-0.5},{\"logprob\":-1.0},"
                           "{\"logprob\":-0.3}]}}]}", 0, &je);
    double mean, min;
    int n;
    CHECK(em_rt_confidence(a, &mean, &min, &n) && n == 3 && fabs(mean + 0.6) < 1e-9 && min == -1.0);
    CHECK(em_rt_cascade_accept(&r, a, why, sizeof why));
    json_decref(a);
    a = json_loads("{\"choices\":[{\"logprobs\":{\"content\":[{\"logprob\":-0.1},{\"logprob\":-5.0},"
                   "{\"logprob\":-0.1},{\"logprob\":-0.1},{\"logprob\":-0.1},{\"logprob\":-0.1}]}}]}", 0, &je);
    CHECK(!em_rt_cascade_accept(&r, a, why, sizeof why) && strstr(why, "min_logprob -5.000 < -4"));
    json_decref(a);
    a = json_loads("{\"choices\":[{\"logprobs\":{\"token_logprobs\":[-2.0,-1.0,null]}}]}", 0, &je); /* completions */
    CHECK(em_rt_confidence(a, &mean, &min, &n) && n == 2 && mean == -1.5);
    CHECK(!em_rt_cascade_accept(&r, a, why, sizeof why) && strstr(why, "mean_logprob -1.500 < -1"));
    json_decref(a);
    a = json_loads("{\"choices\":[{\"message\":{\"content\":\"x\"}}]}", 0, &je);
    CHECK(!em_rt_cascade_accept(&r, a, why, sizeof why) && !strcmp(why, "no logprobs"));
    json_decref(a);
    a = json_loads("{\"choices\":[{\"logprobs\":{\"content\":[]}}]}", 0, &je);
    CHECK(!em_rt_cascade_accept(&r, a, why, sizeof why) && !strcmp(why, "empty answer"));
    json_decref(a);
}

static void test_prices(void) {
    em_rt_backend_cfg remote = {.kind = EM_RT_REMOTE, .input_per_mtok = 3, .output_per_mtok = 15, .max_output_tokens = 4096};
    CHECK(fabs(em_rt_token_cost(&remote, 1000000, 0) - 3.0) < 1e-12);
    CHECK(fabs(em_rt_token_cost(&remote, 1000, 2000) - (0.003 + 0.03)) < 1e-12);
    CHECK(fabs(em_rt_max_cost(&remote, 100, 10) - em_rt_token_cost(&remote, 100, 10)) < 1e-15);
    CHECK(fabs(em_rt_max_cost(&remote, 100, -1) - em_rt_token_cost(&remote, 100, 4096)) < 1e-15);
    em_rt_backend_cfg local = {.kind = EM_RT_LOCAL, .hourly_usd = 3.6, .parallel = 4, .timeout_s = 60};
    CHECK(fabs(em_rt_local_cost(&local, 10) - 3.6 * 10 / 3600 / 4) < 1e-15);
    CHECK(fabs(em_rt_local_cost(&local, 1000) - em_rt_max_cost(&local, 5, 5)) < 1e-15); /* bounded by the timeout */
}

/* A backend's stream: events end at an empty line, whichever of SSE's
 * line endings (LF, CRLF, CR) it writes. */
static void test_sse(void) {
    const char *d;
    size_t dl;
    const char *lf = "data: {\"a\":1}\n\ndata: [DONE]\n\n";
    CHECK(em_sse_event_len(lf, strlen(lf)) == 15);
    CHECK(em_sse_event_data(lf, 15, &d, &dl) && dl == 7 && !memcmp(d, "{\"a\":1}", 7));
    const char *crlf = "data: {\"a\":1}\r\n\r\ndata: [DONE]\r\n\r\n";
    size_t n = em_sse_event_len(crlf, strlen(crlf));
    CHECK_MSG(n == 17, "a CRLF event is %zu bytes long", n);
    CHECK(em_sse_event_data(crlf, n, &d, &dl) && dl == 7 && !memcmp(d, "{\"a\":1}", 7));
    CHECK(em_sse_event_len(crlf + n, strlen(crlf + n)) == 16);
    CHECK(em_sse_event_data(crlf + n, 16, &d, &dl) && dl == 6 && !memcmp(d, "[DONE]", 6));
    const char *cr = "data: x\r\rdata: y\r\r";
    CHECK(em_sse_event_len(cr, strlen(cr)) == 9);
    CHECK(em_sse_event_data(cr, 9, &d, &dl) && dl == 1 && d[0] == 'x');
    /* Not yet whole: no empty line, or only its first half. */
    CHECK(em_sse_event_len("data: x\n", 8) == 0);
    CHECK(em_sse_event_len("data: x\r\n", 9) == 0);
    CHECK(em_sse_event_len("data: x\r", 8) == 0);
    CHECK(em_sse_event_len("data: x\r\n\r", 10) == 10);
    CHECK(em_sse_event_len("\ndata: x\n\n", 10) == 1); /* the "\n" of a split "\r\n" */
    CHECK(em_sse_event_len("", 0) == 0);
    /* Comments and keep-alives have no data; of several data lines the last counts. */
    CHECK(!em_sse_event_data(": keep-alive\n\n", 14, &d, &dl) && d == NULL);
    const char *two = "event: x\ndata: 1\ndata:2\n\n";
    CHECK(em_sse_event_data(two, strlen(two), &d, &dl) && dl == 1 && d[0] == '2');
}

/* What a backend says it used is charged: a negative count must
 * not become a credit on the key's budget. */
static void test_usage(void) {
    json_error_t je;
    int64_t pt = -1, ct = -1;
    json_t *a = json_loads("{\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":34}}", 0, &je);
    em_rt_usage(a, &pt, &ct);
    CHECK(pt == 12 && ct == 34);
    json_decref(a);
    a = json_loads("{\"usage\":{\"prompt_tokens\":-1000000000000,\"completion_tokens\":-5}}", 0, &je);
    em_rt_usage(a, &pt, &ct);
    CHECK_MSG(pt == 0 && ct == 0, "negative usage read as %lld, %lld", (long long)pt, (long long)ct);
    em_rt_backend_cfg remote = {.kind = EM_RT_REMOTE, .input_per_mtok = 3, .output_per_mtok = 15};
    CHECK(em_rt_token_cost(&remote, pt, ct) >= 0);
    json_decref(a);
    a = json_loads("{\"usage\":{\"prompt_tokens\":\"7\",\"completion_tokens\":1.5}}", 0, &je);
    em_rt_usage(a, &pt, &ct);
    CHECK(pt == 0 && ct == 0);
    json_decref(a);
    em_rt_usage(NULL, &pt, &ct);
    CHECK(pt == 0 && ct == 0);
}

static void test_classify(void) {
    CHECK(em_up_classify(200, "", 0) == EM_UP_OK);
    CHECK(em_up_classify(500, "", 0) == EM_UP_HTTP_5XX && em_up_classify(503, "", 0) == EM_UP_HTTP_5XX);
    CHECK(em_up_classify(429, "", 0) == EM_UP_HTTP_429);
    CHECK(em_up_classify(401, "bad key", 7) == EM_UP_CLIENT_ERROR);
    CHECK(em_up_classify(302, "", 0) == EM_UP_BAD_RESPONSE);
    const char *ctx[] = {
        "{\"error\":{\"code\":\"context_length_exceeded\"}}",
        "This model's maximum context length is 8192 tokens",
        "This model's max_model_len is 4096, but the request has 5000 tokens",
        "prompt is too long: 210000 tokens > 200000 maximum",
        "the request exceeds the available context size, try increasing it",
        "prompt has 3000 tokens and max_tokens is 2000, but the context holds 4096",
        "Input is too long for the Context Window of this model",
        "Please reduce the length of the messages.",
    };
    for (size_t i = 0; i < sizeof ctx / sizeof *ctx; i++)
        CHECK_MSG(em_up_classify(400, ctx[i], strlen(ctx[i])) == EM_UP_CONTEXT, "%s", ctx[i]);
    CHECK(em_up_classify(413, ctx[1], strlen(ctx[1])) == EM_UP_CONTEXT);
    CHECK(em_up_classify(400, "temperature: expected a number", 31) == EM_UP_CLIENT_ERROR);
    CHECK(em_up_retryable(EM_UP_CONTEXT) && em_up_retryable(EM_UP_TIMEOUT) && !em_up_retryable(EM_UP_CLIENT_ERROR));
    const char *code;
    CHECK(em_up_client_status(EM_UP_TIMEOUT, &code) == 504 && !strcmp(code, "upstream_timeout"));
    CHECK(em_up_client_status(EM_UP_CONTEXT, &code) == 400 && !strcmp(code, "context_length_exceeded"));
}

/* ------------------------------------------------------------ ledger */

static em_ledger *L;
static int granted;
static pthread_mutex_t granted_mu = PTHREAD_MUTEX_INITIALIZER;

static void *reserve_one(void *arg) {
    (void)arg;
    int64_t id;
    bool over;
    em_status st = em_ledger_reserve(L, "team", 1.0, 0, 0.01, &id, &over);
    if (st != EM_OK || over) return NULL;
    pthread_mutex_lock(&granted_mu);
    granted++;
    pthread_mutex_unlock(&granted_mu);
    usleep(1000);
    /* The real cost is at most the reservation. */
    em_ledger_attempt a = {.backend = "frontier", .outcome = "ok", .cost_usd = 0.008, .completion_tokens = 10};
    em_ledger_entry e = {.key = "team", .route = "auto", .backend = "frontier", .cost_usd = 0.008,
                         .baseline_usd = 0.008, .status = 200, .outcome = "ok", .attempts = &a, .n_attempts = 1};
    em_ledger_settle(L, id, &e);
    return NULL;
}

static void test_ledger(void) {
    char path[] = "/tmp/ember-ledger-test-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    unlink(path);
    char url[128];
    snprintf(url, sizeof url, "sqlite://%s", path);
    CHECK_OK(em_ledger_open(&L, url));
    if (!L) return;
    /* 0.95 of a 1.00 daily budget already spent. */
    em_ledger_entry spent = {.key = "team", .route = "auto", .backend = "frontier", .cost_usd = 0.95,
                             .baseline_usd = 1.0, .status = 200, .outcome = "ok", .escalation = "small: no logprobs"};
    CHECK_OK(em_ledger_settle(L, 0, &spent));
    pthread_t th[200];
    for (int i = 0; i < 200; i++) pthread_create(&th[i], NULL, reserve_one, NULL);
    for (int i = 0; i < 200; i++) pthread_join(th[i], NULL);
    /* 0.05 left at 0.01 each: five reservations fit at once; a settled one
     * returns 0.002, so one more may fit later, never more than the budget. */
    CHECK_MSG(granted >= 5 && granted <= 6, "granted %d", granted);
    double day, month;
    CHECK_OK(em_ledger_spend(L, "team", &day, &month));
    CHECK_MSG(day <= 1.0 + 1e-9 && fabs(day - (0.95 + granted * 0.008)) < 1e-9, "spent %g", day);
    CHECK(fabs(month - day) < 1e-12);
    em_usage_row *rows;
    int n;
    CHECK_OK(em_ledger_usage(L, EM_USAGE_KEY, 0, &rows, &n));
    CHECK(n == 1 && rows[0].requests == 1 + granted && rows[0].escalations == 1 && rows[0].completion_tokens == 0);
    free(rows);
    CHECK_OK(em_ledger_usage(L, EM_USAGE_DAY, 0, &rows, &n));
    CHECK(n == 1 && strlen(rows[0].group) == 10);
    free(rows);
    /* A reservation not settled: the spend counts it until this process ends. */
    int64_t id;
    bool over;
    em_ledger_close(L);
    CHECK_OK(em_ledger_open(&L, url));
    CHECK_OK(em_ledger_reserve(L, "other", 0, 10, 2.0, &id, &over));
    CHECK(!over && id > 0);
    CHECK_OK(em_ledger_spend(L, "other", &day, &month));
    CHECK(day == 2.0 && month == 2.0);
    CHECK_OK(em_ledger_reserve(L, "other", 0, 10, 8.5, &id, &over));
    CHECK(over && id == 0);
    em_ledger_close(L);
    CHECK(em_ledger_open(&L, "mysql://x") != EM_OK);
    /* No server on port 1: a clear error, no ledger (the PostgreSQL ledger
     * itself is tested against a real server in tests/cli/test_router_pg.sh). */
    CHECK(em_ledger_open(&L, "postgres://ember@127.0.0.1:1/ember?connect_timeout=2") != EM_OK && !L);
    CHECK(strstr(em_last_error(), "postgres") != NULL);
    CHECK(em_ledger_open(&L, "sqlite:///tmp/x.db?synchronous=sometimes") != EM_OK);
    for (const char *suffix = ""; suffix; suffix = !suffix[0] ? "-wal" : !strcmp(suffix, "-wal") ? "-shm" : NULL) {
        char f[160];
        snprintf(f, sizeof f, "%s%s", path, suffix);
        unlink(f);
    }
}

/* Ledger URLs are printed (serve --check) with their passwords hidden. */
static void test_redacted(void) {
    static const char *cases[][2] = {
        {"postgres://ember:s3cret@db1:5432/ember?sslmode=require", "postgres://ember:***@db1:5432/ember?sslmode=require"},
        {"postgresql://ember@db1/ember", "postgresql://ember@db1/ember"},
        {"postgres:host=db1 password=s3cret dbname=ember", "postgres:host=db1 password=*** dbname=ember"},
        {"postgresql:///ember?host=/run/pg&password=x&user=e", "postgresql:///ember?host=/run/pg&password=***&user=e"},
        {"sqlite:///var/lib/a:b@c.db", "sqlite:///var/lib/a:b@c.db"},
    };
    char out[128];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        em_ledger_url_redacted(cases[i][0], out, sizeof out);
        CHECK(!strcmp(out, cases[i][1]));
    }
    char small[12];
    em_ledger_url_redacted("postgres://u:secretsecret@h/d", small, sizeof small);
    CHECK(strlen(small) == 11 && !strstr(small, "secret"));
}

int main(void) {
    test_rules();
    test_cascade();
    test_prices();
    test_usage();
    test_sse();
    test_classify();
    test_ledger();
    test_redacted();
    TEST_END();
}
