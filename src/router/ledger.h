/*
 * ledger.h - what every routed request cost: one row per request and one
 * per attempt (a cascade's cheap try, a fallback's failed backend), and the
 * reservations that make budgets exact.  Two backends behind this one
 * interface, picked by the URL: SQLite in WAL (ledger_sqlite.c, the
 * default) and PostgreSQL through libpq (ledger_pg.c, for several routers
 * sharing one ledger).
 *
 * Budgets: before a request runs, em_ledger_reserve adds the request's
 * maximum cost to the key's spend in one transaction that excludes every
 * other reservation of the key (SQLite: BEGIN IMMEDIATE; PostgreSQL: a
 * per-key row lock, SELECT ... FOR UPDATE): spend of the day and month
 * plus open reservations, checked against the budget, then the reservation
 * inserted.  So concurrent requests, of one process or several, cannot all
 * pass the same check: N requests against a nearly spent budget overspend
 * it by nothing as long as each stays within its maximum.
 * em_ledger_settle replaces the reservation with the request's real cost.
 * Reservations of a process that died (kill -9) are dropped: SQLite when a
 * ledger is opened or a reservation made (at most once a second) and the
 * pid is gone, PostgreSQL once none of the process's connections remain
 * (see ledger_pg.c).
 *
 * Thread-safe.
 */
#ifndef EM_ROUTER_LEDGER_H
#define EM_ROUTER_LEDGER_H

#include "ember.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct em_ledger em_ledger;

/* url: "sqlite:///abs/path", "sqlite://rel/path" or "sqlite:path", with an
 * optional "?synchronous=full" (default normal, see docs/ROUTING.md);
 * "postgres://user:pass@host:port/db?..." or "postgresql://..." (libpq's
 * URI), or "postgres:KEYWORDS" (a libpq keyword string).  PostgreSQL: the
 * schema is created on first use. */
em_status em_ledger_open(em_ledger **out, const char *url);

/* The URL fit to print: a password (user:PASSWORD@ or password=...)
 * becomes ***.  out: n bytes, always terminated. */
void em_ledger_url_redacted(const char *url, char *out, size_t n);
void em_ledger_close(em_ledger *l);

/* Reserves max_usd for `key` unless that would take its spend of the UTC
 * day past daily_usd or of the month past monthly_usd (0: no budget).
 * *id gets the reservation (0 when *over). */
em_status em_ledger_reserve(em_ledger *l, const char *key, double daily_usd, double monthly_usd, double max_usd,
                            int64_t *id, bool *over);

typedef struct em_ledger_attempt {
    const char *backend, *replica;   /* replica: the URL tried, or ""            */
    int64_t prompt_tokens, completion_tokens;
    double cost_usd, latency_ms;
    int status;                      /* upstream HTTP status, 0: none             */
    const char *outcome;             /* ok, rejected, connect, timeout, http_5xx, ... */
    const char *reason;              /* why it did not answer, or ""              */
} em_ledger_attempt;

typedef struct em_ledger_entry {
    const char *key, *route, *backend; /* backend: the one that answered, or ""  */
    int64_t prompt_tokens, completion_tokens;
    double cost_usd;                 /* all attempts together                     */
    double baseline_usd;             /* the same tokens at the dearest backend    */
    double latency_ms;
    int status;                      /* HTTP status the client got                */
    const char *outcome;
    const char *escalation;          /* why a cascade escalated, or ""            */
    const em_ledger_attempt *attempts;
    int n_attempts;
} em_ledger_entry;

/* Records a request and its attempts and drops reservation `id` (0: none),
 * in one transaction. */
em_status em_ledger_settle(em_ledger *l, int64_t id, const em_ledger_entry *e);

/* Spend of `key` since the start of the UTC day and month, reservations
 * included. */
em_status em_ledger_spend(em_ledger *l, const char *key, double *day_usd, double *month_usd);

typedef enum em_usage_by { EM_USAGE_KEY, EM_USAGE_ROUTE, EM_USAGE_BACKEND, EM_USAGE_DAY } em_usage_by;

typedef struct em_usage_row {
    char group[128];
    int64_t requests, prompt_tokens, completion_tokens, escalations;
    double cost_usd, baseline_usd;   /* savings = baseline - cost                 */
} em_usage_row;

/* Rows grouped by `by` for requests at or after since (unix seconds);
 * *rows is malloc'd (free it). */
em_status em_ledger_usage(em_ledger *l, em_usage_by by, double since, em_usage_row **rows, int *n_rows);

#endif
