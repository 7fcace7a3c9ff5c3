/*
 * usage.c - `ember usage`: what the router's ledger recorded, grouped.
 *
 *   ember usage [--ledger URL] [--since DATE] [--by key|route|backend|day]
 *               [-o table|json|csv]
 *
 * Per group: requests, prompt and completion tokens, spend, the share of
 * requests a cascade escalated, and the savings against sending every
 * request's tokens to the dearest remote backend.  A last row sums them.
 */
#include "cli/cli.h"
#include "router/ledger.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* "YYYY-MM-DD" or "YYYY-MM-DDTHH:MM[:SS]", UTC, to unix seconds. */
static bool parse_date(const char *s, double *out) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end || *end) {
        memset(&tm, 0, sizeof tm);
        end = strptime(s, "%Y-%m-%dT%H:%M", &tm);
    }
    if (!end || *end) {
        memset(&tm, 0, sizeof tm);
        end = strptime(s, "%Y-%m-%d", &tm);
    }
    if (!end || *end) return false;
    *out = (double)timegm(&tm);
    return true;
}

int em_cli_usage(int argc, char **argv) {
    const char *ledger = "sqlite://ember-ledger.db", *since = NULL;
    static const char *const by_names[] = {"key", "route", "backend", "day", NULL};
    static const char *const out_names[] = {"table", "json", "csv", NULL};
    int by = EM_USAGE_KEY, format = 0;
    const em_opt opts[] = {
        {.name = "ledger", .type = EM_OPT_STRING, EM_OPT_DEST(ledger), .arg = "URL",
         .help = "the ledger: sqlite:///ABS/PATH, sqlite://REL/PATH or postgres://USER@HOST/DB (the config's `ledger`)"},
        {.name = "since", .type = EM_OPT_STRING, EM_OPT_DEST(since), .arg = "DATE",
         .help = "only requests from DATE on (YYYY-MM-DD[THH:MM[:SS]], UTC)", .def = "all"},
        {.name = "by", .type = EM_OPT_ENUM, EM_OPT_DEST(by), .choices = by_names, .help = "group by"},
        {.name = "output", .short_name = "o", .type = EM_OPT_ENUM, EM_OPT_DEST(format), .choices = out_names,
         .help = "output format"},
        {0}};
    const em_cmd cmd = {.name = "usage", .synopsis = "[--ledger URL] [--since DATE] [--by key|route|backend|day] [-o table|json|csv]",
                        .about = "Spend, tokens, escalation rate and savings recorded by `ember serve --config`.",
                        .opts = opts};
    em_opts_result pr = em_opts_parse(&cmd, argc, argv, NULL, NULL);
    if (pr != EM_OPTS_OK) return em_opts_exit_code(pr);
    double t0 = 0;
    if (since && !parse_date(since, &t0)) {
        fprintf(stderr, "ember usage: bad value for --since: '%s' (want YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS)\n", since);
        return 2;
    }
    em_ledger *l;
    if (em_ledger_open(&l, ledger) != EM_OK) {
        fprintf(stderr, "ember usage: %s\n", em_last_error());
        return 1;
    }
    em_usage_row *rows;
    int n;
    em_status st = em_ledger_usage(l, (em_usage_by)by, t0, &rows, &n);
    em_ledger_close(l);
    if (st != EM_OK) {
        fprintf(stderr, "ember usage: %s\n", em_last_error());
        return 1;
    }
    em_usage_row total = {.group = "total"};
    for (int i = 0; i < n; i++) {
        total.requests += rows[i].requests;
        total.prompt_tokens += rows[i].prompt_tokens;
        total.completion_tokens += rows[i].completion_tokens;
        total.escalations += rows[i].escalations;
        total.cost_usd += rows[i].cost_usd;
        total.baseline_usd += rows[i].baseline_usd;
    }
    if (format == 1) {
        json_t *arr = json_array();
        for (int i = 0; i <= n; i++) {
            const em_usage_row *r = i < n ? &rows[i] : &total;
            json_array_append_new(
                arr, json_pack("{s:s, s:I, s:I, s:I, s:f, s:f, s:f, s:f}", by_names[by], r->group, "requests",
                               (json_int_t)r->requests, "prompt_tokens", (json_int_t)r->prompt_tokens,
                               "completion_tokens", (json_int_t)r->completion_tokens, "cost_usd", r->cost_usd,
                               "escalation_rate", r->requests ? (double)r->escalations / r->requests : 0.0,
                               "baseline_usd", r->baseline_usd, "savings_usd", r->baseline_usd - r->cost_usd));
        }
        char *s = json_dumps(arr, JSON_INDENT(2));
        if (s) puts(s);
        free(s);
        json_decref(arr);
    } else {
        const char *fmt = format == 2 ? "%s,%lld,%lld,%lld,%.8f,%.4f,%.8f,%.8f,%.1f\n"
                                      : "%-24s %9lld %12lld %12lld %12.6f %9.1f%% %12.6f %12.6f %7.1f%%\n";
        if (format == 2)
            printf("%s,requests,prompt_tokens,completion_tokens,cost_usd,escalation_rate,baseline_usd,savings_usd,"
                   "savings_pct\n",
                   by_names[by]);
        else
            printf("%-24s %9s %12s %12s %12s %10s %12s %12s %8s\n", by_names[by], "requests", "prompt_tok", "compl_tok",
                   "cost_usd", "escalated", "dearest_usd", "savings_usd", "savings");
        for (int i = 0; i <= n; i++) {
            const em_usage_row *r = i < n ? &rows[i] : &total;
            double esc = r->requests ? (double)r->escalations / r->requests : 0.0;
            double pct = r->baseline_usd > 0 ? 100.0 * (r->baseline_usd - r->cost_usd) / r->baseline_usd : 0.0;
            printf(fmt, r->group, (long long)r->requests, (long long)r->prompt_tokens, (long long)r->completion_tokens,
                   r->cost_usd, format == 2 ? esc : 100 * esc, r->baseline_usd, r->baseline_usd - r->cost_usd, pct);
        }
    }
    free(rows);
    return 0;
}
