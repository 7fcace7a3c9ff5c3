/*
 * calibrate.c - `ember route calibrate`: a cascade's acceptance threshold
 * measured on a labelled set.
 *
 *   ember route calibrate --config ember.yaml --route NAME --data FILE.jsonl
 *                         [--target 0.95] [--by mean|min] [--max-tokens 64]
 *                         [-o table|json]
 *
 * Every item of FILE goes through the route's first (cheap) and last
 * (strong) backend, by the router's own code: the configuration's router
 * runs in this process on a loopback port (no keys, no ledger), and each
 * item is asked of each backend by name, so the calls, their retries and
 * their costs are exactly what `ember serve --config` would make and
 * charge.  docs/ROUTING.md describes the file and the output.
 */
#include "cli/cli.h"
#include "router/calibrate.h"
#include "router/config.h"
#include "router/policy.h"
#include "router/router.h"
#include "router/upstream.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAL_MAX_ITEMS 100000

/* One backend's answer to one item. */
typedef struct cal_answer {
    bool ok;                /* HTTP 200 with a choice                       */
    char *text;             /* choice 0's content or text (owned)           */
    bool has_lp;
    double mean, min;
    double cost_usd;        /* x-ember-cost-usd                             */
    char error[200];
} cal_answer;

/* The item as a request body: the line without its checker and id, with
 * the backend's name, greedy decoding and a max_tokens unless it set them. */
static char *request_body(const json_t *item, const char *backend, bool chat, bool logprobs, int max_tokens) {
    json_t *o = json_deep_copy(item);
    if (!o) return NULL;
    static const char *drop[] = {"answer", "exact", "contains", "regex", "id", "stream", "stream_options"};
    for (size_t i = 0; i < sizeof drop / sizeof *drop; i++) json_object_del(o, drop[i]);
    json_object_set_new(o, "model", json_string(backend));
    if (!json_object_get(o, "temperature")) json_object_set_new(o, "temperature", json_real(0));
    if (!json_object_get(o, "max_tokens") && !json_object_get(o, "max_completion_tokens"))
        json_object_set_new(o, "max_tokens", json_integer(max_tokens));
    if (logprobs) json_object_set_new(o, "logprobs", chat ? json_true() : json_integer(0));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static void ask(int port, const json_t *item, const char *backend, bool chat, bool logprobs, int max_tokens,
                cal_answer *out) {
    memset(out, 0, sizeof *out);
    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/%s", port, chat ? "chat/completions" : "completions");
    char *body = request_body(item, backend, chat, logprobs, max_tokens);
    em_xfer x;
    em_xfer_params p = {.url = url, .body = body, .timeout_s = 3600, .connect_timeout_s = 5,
                        .capture_header = "x-ember-cost-usd"};
    bool started = body && em_xfer_start(&x, &p);
    while (started && !x.done) em_xfer_pump(&x, 100);
    free(body);
    if (!started) {
        snprintf(out->error, sizeof out->error, "out of memory");
        if (body) em_xfer_free(&x);
        return;
    }
    json_error_t je;
    json_t *a = x.result == CURLE_OK ? json_loadb(em_xfer_data(&x), em_xfer_avail(&x), 0, &je) : NULL;
    json_t *choice = json_array_get(json_object_get(a, "choices"), 0);
    const char *text = chat ? json_string_value(json_object_get(json_object_get(choice, "message"), "content"))
                            : json_string_value(json_object_get(choice, "text"));
    if (x.result != CURLE_OK) {
        snprintf(out->error, sizeof out->error, "%.180s", x.errbuf[0] ? x.errbuf : curl_easy_strerror(x.result));
    } else if (x.status != 200) {
        const char *msg = json_string_value(json_object_get(json_object_get(a, "error"), "message"));
        snprintf(out->error, sizeof out->error, "HTTP %ld: %.160s", x.status, msg ? msg : "(no message)");
    } else if (!choice) {
        snprintf(out->error, sizeof out->error, "the answer has no choice");
    } else {
        out->ok = true;
        out->text = strdup(text ? text : "");
        int n;
        out->has_lp = em_rt_confidence(a, &out->mean, &out->min, &n) && n > 0;
        out->cost_usd = x.captured[0] ? strtod(x.captured, NULL) : 0;
        if (!out->text) out->ok = false, snprintf(out->error, sizeof out->error, "out of memory");
    }
    json_decref(a);
    em_xfer_free(&x);
}

/* Reads the labelled set: one JSON object a line (blank lines and lines
 * starting with '#' skipped).  NULL with the error printed. */
static json_t *read_items(const char *path) {
    size_t len;
    char *text = em_cli_read_file(path, &len);
    if (!text) return NULL;
    json_t *items = json_array();
    int line = 0;
    for (char *p = text, *next; p < text + len && items; p = next) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        next = nl ? nl + 1 : text + len;
        line++;
        size_t n = (size_t)((nl ? nl : text + len) - p);
        size_t k = 0;
        while (k < n && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r')) k++;
        if (k == n || p[k] == '#') continue;
        json_error_t je;
        json_t *o = json_loadb(p, n, JSON_REJECT_DUPLICATES, &je);
        char err[256] = "";
        json_t *msgs = json_object_get(o, "messages"), *prompt = json_object_get(o, "prompt");
        if (!json_is_object(o)) snprintf(err, sizeof err, "not a JSON object: %s", je.text);
        else if (!!msgs == !!prompt) snprintf(err, sizeof err, "give either 'messages' (chat) or 'prompt' (completions)");
        else if (msgs && (!json_is_array(msgs) || !json_array_size(msgs))) snprintf(err, sizeof err, "'messages' must be a non-empty array");
        else if (prompt && !json_is_string(prompt)) snprintf(err, sizeof err, "'prompt' must be a string");
        else if (json_array_size(items) >= CAL_MAX_ITEMS) snprintf(err, sizeof err, "more than %d items", CAL_MAX_ITEMS);
        else em_cal_checker_valid(o, err, sizeof err);
        if (err[0]) {
            fprintf(stderr, "ember route calibrate: %s:%d: %s\n", path, line, err);
            json_decref(o);
            json_decref(items);
            free(text);
            return NULL;
        }
        json_object_set_new(o, "__line", json_integer(line));
        json_array_append_new(items, o);
    }
    free(text);
    if (items && !json_array_size(items)) {
        fprintf(stderr, "ember route calibrate: %s: no items\n", path);
        json_decref(items);
        return NULL;
    }
    return items;
}

static void print_threshold(FILE *f, double t) {
    if (isinf(t)) fprintf(f, "%12s", "never");
    else fprintf(f, "%12.4f", t);
}

static void print_table(const em_rt_route *route, const char *cheap, const char *strong, em_cal_stat stat,
                        double other, const em_cal_row *rows, int n_rows, int best, int n_items, int skipped,
                        double cheap_acc, double strong_acc, double strong_cost, double target) {
    const char *sname = stat == EM_CAL_MEAN ? "mean_logprob" : "min_logprob";
    printf("route %s: cheap %s, strong %s; %d items%s", route->name, cheap, strong, n_items, skipped ? "" : "\n");
    if (skipped) printf(" (%d skipped: a backend failed)\n", skipped);
    printf("accuracy: cheap %.1f%%, strong %.1f%%; strong alone costs %.6f USD\n", 100 * cheap_acc, 100 * strong_acc,
           strong_cost);
    printf("grid over %s (accept when >= threshold), %s held at %g\n\n", sname,
           stat == EM_CAL_MEAN ? "min_logprob" : "mean_logprob", other);
    printf("%12s  %10s  %8s  %12s  %12s  %9s\n", "threshold", "kept local", "accuracy", "quality/strong", "cost USD",
           "vs strong");
    /* Long grids are thinned to about 30 rows; the recommendation stays. */
    int step = n_rows > 30 ? (n_rows + 29) / 30 : 1;
    for (int i = 0; i < n_rows; i++) {
        if (i % step && i != best && i != n_rows - 1) continue;
        const em_cal_row *r = &rows[i];
        print_threshold(stdout, r->threshold);
        printf("  %9.1f%%  %7.1f%%  ", 100 * r->local_share, 100 * r->accuracy);
        if (isnan(r->quality)) printf("%13s ", "-");
        else printf("%13.1f%% ", 100 * r->quality);
        printf(" %12.6f  %8.1f%%%s\n", r->cost_usd, strong_cost > 0 ? 100 * r->cost_usd / strong_cost : 0.0,
               i == best ? "  <- recommended" : "");
    }
    printf("\n");
    if (best < 0) {
        printf("no threshold reaches %.1f%% of the strong backend's quality%s\n", 100 * target,
               strong_acc == 0 ? " (the strong backend answered none correctly)" : "");
        return;
    }
    const em_cal_row *r = &rows[best];
    if (isinf(r->threshold)) {
        printf("recommended: escalate everything: no threshold keeps answers local at %.1f%% quality for less;\n"
               "a direct route to %s costs less than this cascade\n", 100 * target, strong);
        return;
    }
    printf("recommended: %s >= %.4f: %.1f%% kept local, %.1f%% of the strong quality, %.6f USD (%.1f%% of strong "
           "alone)\n",
           sname, r->threshold, 100 * r->local_share, 100 * r->quality, r->cost_usd,
           strong_cost > 0 ? 100 * r->cost_usd / strong_cost : 0.0);
    double mean = stat == EM_CAL_MEAN ? r->threshold : other, min = stat == EM_CAL_MEAN ? other : r->threshold;
    printf("  accept: {mean_logprob: %.4f, min_logprob: %.4g}\n", mean, min);
}

static json_t *row_json(const em_cal_row *r) {
    return json_pack("{s:o, s:i, s:f, s:f, s:o, s:f}", "threshold", isinf(r->threshold) ? json_null() : json_real(r->threshold),
                     "kept", r->kept, "local_share", r->local_share, "accuracy", r->accuracy, "quality",
                     isnan(r->quality) ? json_null() : json_real(r->quality), "cost_usd", r->cost_usd);
}

static int calibrate(int argc, char **argv) {
    const char *config = NULL, *route_name = NULL, *data = NULL;
    double target = 0.95;
    int32_t max_tokens = 64;
    static const char *const by_names[] = {"mean", "min", NULL};
    static const char *const out_names[] = {"table", "json", NULL};
    int by = EM_CAL_MEAN, format = 0;
    const em_opt opts[] = {
        {.name = "config", .type = EM_OPT_STRING, EM_OPT_DEST(config), .arg = "FILE",
         .help = "the router's YAML configuration", .flags = EM_OPT_REQUIRED},
        {.name = "route", .type = EM_OPT_STRING, EM_OPT_DEST(route_name), .arg = "NAME",
         .help = "a cascade route: its first backend is the cheap one, its last the strong one",
         .flags = EM_OPT_REQUIRED},
        {.name = "data", .type = EM_OPT_STRING, EM_OPT_DEST(data), .arg = "FILE.jsonl",
         .help = "the labelled set (docs/ROUTING.md)", .flags = EM_OPT_REQUIRED},
        {.name = "target", .type = EM_OPT_FLOAT, EM_OPT_DEST(target), .min = 0.01, .max = 2,
         .help = "quality to reach, relative to the strong backend's accuracy"},
        {.name = "by", .type = EM_OPT_ENUM, EM_OPT_DEST(by), .choices = by_names,
         .help = "the statistic to set (the other keeps the route's value)"},
        {.name = "max-tokens", .type = EM_OPT_INT, EM_OPT_DEST(max_tokens), .min = 1, .max = 1 << 20,
         .help = "max_tokens of items that set none"},
        {.name = "output", .short_name = "o", .type = EM_OPT_ENUM, EM_OPT_DEST(format), .choices = out_names,
         .help = "output format"},
        {0}};
    const em_cmd cmd = {.name = "route calibrate",
                        .synopsis = "--config FILE --route NAME --data FILE.jsonl [--target 0.95] [--by mean|min] "
                                    "[-o table|json]",
                        .about = "Runs a labelled set through a cascade route's cheap and strong backends and prints,\n"
                                 "per acceptance threshold, the share kept local, the quality relative to the strong\n"
                                 "backend and the cost; recommends the cheapest threshold reaching --target.",
                        .opts = opts};
    em_opts_result pr = em_opts_parse(&cmd, argc, argv, NULL, NULL);
    if (pr != EM_OPTS_OK) return em_opts_exit_code(pr);

    em_rt_config *cfg = em_cli_load_router_config(config);
    if (!cfg) return 1;
    int ri = em_rt_config_route(cfg, route_name);
    if (ri < 0 || cfg->routes[ri].policy != EM_RT_CASCADE) {
        fprintf(stderr, "ember route calibrate: %s: '%s' is not %s\n", config, route_name,
                ri < 0 ? "a route of the configuration" : "a cascade route");
        em_rt_config_free(cfg);
        free(cfg);
        return 1;
    }
    const em_rt_route route = cfg->routes[ri];
    char cheap[EM_RT_NAME], strong[EM_RT_NAME];
    snprintf(cheap, sizeof cheap, "%s", cfg->backends[route.backends[0]].name);
    snprintf(strong, sizeof strong, "%s", cfg->backends[route.backends[route.n_backends - 1]].name);
    double other = by == EM_CAL_MEAN ? route.accept_min_logprob : route.accept_mean_logprob;

    json_t *items = read_items(data);
    if (!items) {
        em_rt_config_free(cfg);
        free(cfg);
        return 1;
    }
    /* The router in this process: its calls and prices, without keys (the
     * backends are asked by name) and without a ledger (calibration is not
     * traffic). */
    cfg->n_keys = 0;
    free(cfg->ledger);
    cfg->ledger = strdup("none");
    cfg->quiet = true;
    em_router *r = NULL;
    if (!cfg->ledger || em_router_start(&r, cfg, "127.0.0.1", 0) != EM_OK) {
        fprintf(stderr, "ember route calibrate: %s\n", cfg->ledger ? em_last_error() : "out of memory");
        json_decref(items);
        return 1;
    }
    int port = em_router_port(r);

    size_t n = json_array_size(items);
    em_cal_item *cal = calloc(n, sizeof *cal);
    em_cal_row *rows = calloc(n + 1, sizeof *rows);
    int n_cal = 0, skipped = 0, status = 0;
    double cheap_ok = 0;
    for (size_t i = 0; cal && rows && i < n; i++) {
        json_t *it = json_array_get(items, i);
        int line = (int)json_integer_value(json_object_get(it, "__line"));
        json_object_del(it, "__line");
        bool chat = json_object_get(it, "messages") != NULL;
        cal_answer a, b;
        ask(port, it, cheap, chat, true, max_tokens, &a);
        ask(port, it, strong, chat, false, max_tokens, &b);
        char err[256] = "";
        bool a_ok = false, b_ok = false;
        if (!a.ok || !b.ok) {
            fprintf(stderr, "ember route calibrate: %s:%d: skipped: %s: %s\n", data, line, a.ok ? strong : cheap,
                    a.ok ? b.error : a.error);
            skipped++;
        } else if (!em_cal_check(it, a.text, &a_ok, err, sizeof err) || !em_cal_check(it, b.text, &b_ok, err, sizeof err)) {
            fprintf(stderr, "ember route calibrate: %s:%d: %s\n", data, line, err);
            status = 1;
        } else {
            cal[n_cal++] = (em_cal_item){.has_lp = a.has_lp, .mean = a.mean, .min = a.min, .cheap_ok = a_ok,
                                         .strong_ok = b_ok, .cheap_usd = a.cost_usd, .strong_usd = b.cost_usd};
            cheap_ok += a_ok;
        }
        free(a.text);
        free(b.text);
        if (status) break;
        if (format == 0 && (i + 1) % 10 == 0) fprintf(stderr, "ember route calibrate: %zu/%zu items\r", i + 1, n);
    }
    if (format == 0 && n >= 10) fprintf(stderr, "\n"); /* past the progress line */
    em_router_drain(r, 5);
    em_router_free(r);
    if (!cal || !rows) {
        fprintf(stderr, "ember route calibrate: out of memory\n");
        status = 1;
    } else if (!status && n_cal == 0) {
        fprintf(stderr, "ember route calibrate: no item was answered by both backends\n");
        status = 1;
    }
    if (!status) {
        em_cal_stat stat = by == EM_CAL_MEAN ? EM_CAL_MEAN : EM_CAL_MIN;
        int n_rows = em_cal_grid(cal, n_cal, stat, other, rows, n_cal + 1);
        int best = em_cal_recommend(rows, n_rows, target);
        double strong_acc, strong_cost;
        em_cal_strong_only(cal, n_cal, &strong_acc, &strong_cost);
        if (format == 0) {
            print_table(&route, cheap, strong, stat, other, rows, n_rows, best, n_cal, skipped, cheap_ok / n_cal,
                        strong_acc, strong_cost, target);
        } else {
            json_t *jrows = json_array();
            for (int i = 0; i < n_rows; i++) json_array_append_new(jrows, row_json(&rows[i]));
            json_t *rec = json_null();
            if (best >= 0) {
                rec = row_json(&rows[best]);
                if (!isinf(rows[best].threshold))
                    json_object_set_new(rec, "accept",
                                        json_pack("{s:f, s:f}", "mean_logprob",
                                                  stat == EM_CAL_MEAN ? rows[best].threshold : other, "min_logprob",
                                                  stat == EM_CAL_MEAN ? other : rows[best].threshold));
            }
            json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:f, s:f, s:f, s:f, s:o, s:o}", "route", route.name,
                                  "cheap", cheap, "strong", strong, "by", by_names[by], "items", n_cal, "skipped",
                                  skipped, "target", target, "cheap_accuracy", cheap_ok / n_cal, "strong_accuracy",
                                  strong_acc, "strong_only_cost_usd", strong_cost, "rows", jrows, "recommended", rec);
            char *s = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
            if (s) puts(s);
            free(s);
            json_decref(o);
        }
        if (best < 0) status = 1;
    }
    free(cal);
    free(rows);
    json_decref(items);
    return status;
}

int em_cli_route(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "calibrate")) return calibrate(argc - 1, argv + 1);
    FILE *f = argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? stdout : stderr;
    fprintf(f, "usage: ember route calibrate --config FILE --route NAME --data FILE.jsonl [--target 0.95]\n"
               "                             [--by mean|min] [--max-tokens 64] [-o table|json]\n"
               "  (ember route calibrate --help for the options)\n");
    return f == stdout ? 0 : 2;
}
