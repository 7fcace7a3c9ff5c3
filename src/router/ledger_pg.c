/*
 * ledger_pg.c - the PostgreSQL ledger (libpq), for several routers that
 * share one database: the schema, a small pool of connections, budget
 * reservations under a per-key row lock, settlement, usage.
 *
 * Budgets.  Every key with a budget has a row in budget_keys.  A
 * reservation locks that row (SELECT ... FOR UPDATE), sums the key's spend
 * of the day and month plus its open reservations, and inserts its own
 * reservation, in one transaction.  The next reservation of the same key,
 * from this process or any other, waits on the row lock and then (READ
 * COMMITTED: a new snapshot per statement) sees the reservation just made,
 * so no two requests can pass the same check.  Settling inserts the request
 * and deletes its reservation in one transaction, which readers see whole.
 * Keys do not wait on each other.
 *
 * Dead processes.  Each process picks a random owner id, and every
 * connection of its pool holds the shared advisory lock on that id for as
 * long as it is open.  Its reservations carry the id.  PostgreSQL drops a
 * session's advisory locks when the session ends, which it notices at once
 * when the process dies (kill -9 closes its sockets), so "no connection
 * holds the owner's lock" is the liveness rule: reservations whose owner
 * holds no lock are dropped when a ledger is opened and by a sweep that
 * each process runs before a reservation, at most once a second (outside
 * the key's lock, which it would only lengthen).  No clocks are compared
 * between machines.
 */
#include "router/ledger_backend.h"

#include "core/core.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* Connections per process: enough for the reservations and settlements in
 * flight (they serialise per key anyway); more threads wait for one. */
#define PG_POOL_MAX 16

typedef struct pg_ledger {
    char *conninfo;              /* a postgres:// URL or a keyword string      */
    long long owner;             /* this process's owner id, in [1, 2^62)      */
    pthread_mutex_t mu;
    pthread_cond_t cv;           /* a connection was returned                  */
    PGconn *idle[PG_POOL_MAX];   /* open connections not in use                */
    int n_idle, n_open;          /* n_open: idle plus in use                   */
    double last_sweep;           /* unix seconds of the last dead-owner sweep  */
} pg_ledger;

/* The owners that still hold a connection: the bigint advisory locks of
 * this database (a bigint key shows as classid:objid, objsubid 1). */
#define LIVE_OWNERS                                                                                             \
    "SELECT (l.classid::int8 << 32) | l.objid::int8 FROM pg_locks l WHERE l.locktype = 'advisory'"              \
    " AND l.objsubid = 1 AND l.granted AND l.database = (SELECT oid FROM pg_database"                          \
    " WHERE datname = current_database())"

/* The same tables and columns as the SQLite ledger; ts is unix seconds. */
static const char *schema =
    "BEGIN;"
    /* Several routers starting together: one creates, the others wait and
     * then find everything there (CREATE ... IF NOT EXISTS alone can fail
     * on a concurrent create). */
    "SELECT pg_advisory_xact_lock(1701667170, 1);"
    "CREATE TABLE IF NOT EXISTS requests(id BIGSERIAL PRIMARY KEY, ts DOUBLE PRECISION NOT NULL, key TEXT NOT NULL,"
    " route TEXT NOT NULL, backend TEXT NOT NULL, prompt_tokens BIGINT NOT NULL, completion_tokens BIGINT NOT NULL,"
    " cost_usd DOUBLE PRECISION NOT NULL, baseline_usd DOUBLE PRECISION NOT NULL, latency_ms DOUBLE PRECISION NOT NULL,"
    " status INTEGER NOT NULL, outcome TEXT NOT NULL, escalation TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS requests_key_ts ON requests(key, ts);"
    "CREATE INDEX IF NOT EXISTS requests_ts ON requests(ts);"
    "CREATE TABLE IF NOT EXISTS attempts(id BIGSERIAL PRIMARY KEY,"
    " request_id BIGINT NOT NULL REFERENCES requests(id), seq INTEGER NOT NULL, backend TEXT NOT NULL,"
    " replica TEXT NOT NULL, prompt_tokens BIGINT NOT NULL, completion_tokens BIGINT NOT NULL,"
    " cost_usd DOUBLE PRECISION NOT NULL, latency_ms DOUBLE PRECISION NOT NULL, status INTEGER NOT NULL,"
    " outcome TEXT NOT NULL, reason TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS attempts_request ON attempts(request_id);"
    "CREATE TABLE IF NOT EXISTS reservations(id BIGSERIAL PRIMARY KEY, ts DOUBLE PRECISION NOT NULL,"
    " owner BIGINT NOT NULL, key TEXT NOT NULL, amount_usd DOUBLE PRECISION NOT NULL);"
    "CREATE INDEX IF NOT EXISTS reservations_key ON reservations(key);"
    "CREATE TABLE IF NOT EXISTS budget_keys(key TEXT PRIMARY KEY);"
    "COMMIT";

/* ------------------------------------------------------------- errors */

/* libpq's last message, one line (it ends in a newline). */
static const char *pg_msg(PGconn *c, char *buf, size_t n) {
    snprintf(buf, n, "%s", c ? PQerrorMessage(c) : "out of memory");
    size_t len = strlen(buf);
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == ' ')) buf[--len] = '\0';
    for (char *p = buf; *p; p++)
        if (*p == '\n' || *p == '\t') *p = ' ';
    return buf;
}

static em_status pg_fail(PGconn *c, const char *what) {
    char buf[512];
    return em_error(EM_ERR_IO, "ledger (postgres): %s: %s", what, pg_msg(c, buf, sizeof buf));
}

/* ---------------------------------------------------------- the pool */

/* A new connection that holds the owner's lock, or NULL with the error
 * set.  connect_timeout comes before the URL so that the URL can change it. */
static PGconn *pg_connect(pg_ledger *l) {
    const char *kw[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *val[] = {"5", "ember", l->conninfo, NULL};
    PGconn *c = PQconnectdbParams(kw, val, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        pg_fail(c, "cannot connect");
        PQfinish(c);
        return NULL;
    }
    /* A stuck database must not hold a request thread for ever. */
    char sql[224];
    snprintf(sql, sizeof sql,
             "SET client_min_messages = warning; SET statement_timeout = '15s';"
             " SET idle_in_transaction_session_timeout = '60s';"
             " SELECT pg_advisory_lock_shared(%lld)",
             l->owner);
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    PQclear(r);
    if (!ok) {
        pg_fail(c, "cannot set up the connection");
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* An idle connection, or a new one while the pool has room; waits when
 * all PG_POOL_MAX are in use.  *fresh: it was just opened. */
static PGconn *pool_take(pg_ledger *l, bool *fresh) {
    pthread_mutex_lock(&l->mu);
    while (!l->n_idle && l->n_open >= PG_POOL_MAX) pthread_cond_wait(&l->cv, &l->mu);
    if (l->n_idle) {
        PGconn *c = l->idle[--l->n_idle];
        pthread_mutex_unlock(&l->mu);
        *fresh = false;
        return c;
    }
    l->n_open++;
    pthread_mutex_unlock(&l->mu);
    *fresh = true;
    PGconn *c = pg_connect(l);
    if (!c) {
        pthread_mutex_lock(&l->mu);
        l->n_open--;
        pthread_cond_signal(&l->cv);
        pthread_mutex_unlock(&l->mu);
    }
    return c;
}

/* Back to the pool; a broken connection, or one left inside a
 * transaction, is closed instead (the next take opens a new one). */
static void pool_give(pg_ledger *l, PGconn *c) {
    bool keep = PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) == PQTRANS_IDLE;
    pthread_mutex_lock(&l->mu);
    if (keep) l->idle[l->n_idle++] = c;
    else l->n_open--;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    if (!keep) PQfinish(c);
}

static bool exec_ok(PGconn *c, const char *sql) {
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok;
}

/* A connection inside a new transaction.  Idle connections that the
 * server closed meanwhile (a restart, an outage) fail at BEGIN: those are
 * dropped and the next one tried, so the first request after an outage
 * succeeds; a fresh connection that fails is the error. */
static em_status begin(pg_ledger *l, PGconn **out) {
    *out = NULL;
    for (;;) {
        bool fresh;
        PGconn *c = pool_take(l, &fresh);
        if (!c) return EM_ERR_IO; /* pg_connect set the message */
        if (exec_ok(c, "BEGIN")) {
            *out = c;
            return EM_OK;
        }
        em_status st = pg_fail(c, "begin");
        bool broken = PQstatus(c) == CONNECTION_BAD;
        pool_give(l, c);
        if (fresh || !broken) return st;
    }
}

/* Commits (or, after a failure, rolls back) and returns the connection. */
static em_status finish(pg_ledger *l, PGconn *c, em_status st) {
    if (st == EM_OK && !exec_ok(c, "COMMIT")) st = pg_fail(c, "commit");
    if (st != EM_OK && PQstatus(c) == CONNECTION_OK) exec_ok(c, "ROLLBACK");
    pool_give(l, c);
    return st;
}

/* One statement with text parameters; the result when its status is
 * `want`, else NULL (PQclear(NULL) is harmless). */
static PGresult *run(PGconn *c, const char *sql, int n, const char *const *params, ExecStatusType want) {
    PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) == want) return r;
    PQclear(r);
    return NULL;
}

static bool run_ok(PGconn *c, const char *sql, int n, const char *const *params) {
    PGresult *r = run(c, sql, n, params, PGRES_COMMAND_OK);
    PQclear(r);
    return r != NULL;
}

/* ------------------------------------------------------ open, close */

static void pg_close(void *db) {
    pg_ledger *l = db;
    if (!l) return;
    for (int i = 0; i < l->n_idle; i++) PQfinish(l->idle[i]);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l->conninfo);
    free(l);
}

static long long new_owner(void) {
    unsigned long long r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) r = (unsigned long long)time(NULL) * 2654435761u ^ (unsigned long long)getpid() << 20;
    r &= (1ull << 62) - 1;
    return (long long)(r ? r : 1);
}

em_status em_ledger_pg_open(void **out, const char *url) {
    *out = NULL;
    /* "postgres:KEYWORDS" is a keyword string; URLs go to libpq whole. */
    const char *info = strncmp(url, "postgres:", 9) || !strncmp(url, "postgres://", 11) ? url : url + 9;
    if (!info[0]) return em_error(EM_ERR_INVALID_ARG, "ledger: 'postgres:' names no database");
    pg_ledger *l = calloc(1, sizeof *l);
    if (!l || !(l->conninfo = strdup(info))) {
        free(l);
        return em_error(EM_ERR_NOMEM, "ledger: out of memory");
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    l->owner = new_owner();
    bool fresh;
    PGconn *c = pool_take(l, &fresh);
    if (!c) {
        em_status st = EM_ERR_IO;
        pg_close(l);
        return st;
    }
    PGresult *r = PQexec(c, schema);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    /* The reservations of routers that died while no other ran. */
    if (ok) ok = exec_ok(c, "DELETE FROM reservations WHERE owner NOT IN (" LIVE_OWNERS ")");
    if (!ok) {
        em_status st = pg_fail(c, "cannot create the schema");
        if (PQstatus(c) == CONNECTION_OK) exec_ok(c, "ROLLBACK");
        pool_give(l, c);
        pg_close(l);
        return st;
    }
    pool_give(l, c);
    *out = l;
    return EM_OK;
}

/* ----------------------------------------------------------- budgets */

static void fmt_double(char *buf, size_t n, double v) { snprintf(buf, n, "%.17g", v); }

/* The key's spend of the day and month, open reservations included. */
static em_status spend_in(PGconn *c, const char *key, double *day_usd, double *month_usd) {
    double day, month;
    em_ledger_periods(em_ledger_now(), &day, &month);
    char d[32], m[32];
    fmt_double(d, sizeof d, day);
    fmt_double(m, sizeof m, month);
    const char *p[] = {key, d, m};
    PGresult *r = run(c,
                      "SELECT (SELECT COALESCE(SUM(cost_usd), 0) FROM requests WHERE key = $1 AND ts >= $2) + s,"
                      " (SELECT COALESCE(SUM(cost_usd), 0) FROM requests WHERE key = $1 AND ts >= $3) + s"
                      " FROM (SELECT COALESCE(SUM(amount_usd), 0) AS s FROM reservations WHERE key = $1) open",
                      3, p, PGRES_TUPLES_OK);
    if (!r || PQntuples(r) != 1) {
        PQclear(r);
        return pg_fail(c, "spend");
    }
    *day_usd = strtod(PQgetvalue(r, 0, 0), NULL);
    *month_usd = strtod(PQgetvalue(r, 0, 1), NULL);
    PQclear(r);
    return EM_OK;
}

static em_status pg_spend(void *db, const char *key, double *day_usd, double *month_usd) {
    pg_ledger *l = db;
    PGconn *c;
    em_status st = begin(l, &c);
    if (st != EM_OK) return st;
    return finish(l, c, spend_in(c, key, day_usd, month_usd));
}

static em_status reserve_in(pg_ledger *l, PGconn *c, const char *key, double daily_usd, double monthly_usd,
                            double max_usd, int64_t *id, bool *over) {
    const char *k[] = {key};
    /* The key's row, created on its first reservation, is the lock every
     * reservation of the key queues on. */
    if (!run_ok(c, "INSERT INTO budget_keys(key) VALUES ($1) ON CONFLICT DO NOTHING", 1, k)) return pg_fail(c, "reserve");
    PGresult *r = run(c, "SELECT key FROM budget_keys WHERE key = $1 FOR UPDATE", 1, k, PGRES_TUPLES_OK);
    PQclear(r);
    if (!r) return pg_fail(c, "reserve");
    double day = 0, month = 0;
    em_status st = spend_in(c, key, &day, &month);
    if (st != EM_OK) return st;
    if ((daily_usd > 0 && day + max_usd > daily_usd) || (monthly_usd > 0 && month + max_usd > monthly_usd)) {
        *over = true;
        return EM_OK;
    }
    char ts[32], owner[32], amount[32];
    fmt_double(ts, sizeof ts, em_ledger_now());
    snprintf(owner, sizeof owner, "%lld", l->owner);
    fmt_double(amount, sizeof amount, max_usd);
    const char *p[] = {ts, owner, key, amount};
    r = run(c, "INSERT INTO reservations(ts, owner, key, amount_usd) VALUES ($1, $2, $3, $4) RETURNING id", 4, p,
            PGRES_TUPLES_OK);
    if (!r || PQntuples(r) != 1) {
        PQclear(r);
        return pg_fail(c, "reserve");
    }
    *id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return EM_OK;
}

/* Drops the reservations of dead processes, at most once a second; a
 * failure here shows again in the reservation that follows. */
static void sweep_dead(pg_ledger *l) {
    pthread_mutex_lock(&l->mu);
    double now = em_ledger_now();
    bool due = now - l->last_sweep >= 1.0;
    if (due) l->last_sweep = now;
    pthread_mutex_unlock(&l->mu);
    PGconn *c;
    if (!due || begin(l, &c) != EM_OK) return;
    finish(l, c, exec_ok(c, "DELETE FROM reservations WHERE owner NOT IN (" LIVE_OWNERS ")") ? EM_OK : EM_ERR_IO);
}

static em_status pg_reserve(void *db, const char *key, double daily_usd, double monthly_usd, double max_usd,
                            int64_t *id, bool *over) {
    pg_ledger *l = db;
    *id = 0;
    *over = false;
    sweep_dead(l);
    PGconn *c;
    em_status st = begin(l, &c);
    if (st != EM_OK) return st;
    st = reserve_in(l, c, key, daily_usd, monthly_usd, max_usd, id, over);
    /* Over budget: nothing was written; the commit just ends the lock. */
    st = finish(l, c, st);
    if (st != EM_OK) *id = 0;
    return st;
}

/* -------------------------------------------------------- settlement */

/* The length of the UTF-8 sequence at p (n bytes left), 0 when it is not
 * one PostgreSQL accepts: no overlong forms, no surrogates, nothing past
 * U+10FFFF. */
static int utf8_len(const unsigned char *p, size_t n) {
    if (p[0] < 0x80) return 1;
    int len = p[0] >= 0xC2 && p[0] <= 0xDF ? 2 : p[0] >= 0xE0 && p[0] <= 0xEF ? 3 : p[0] >= 0xF0 && p[0] <= 0xF4 ? 4 : 0;
    if (!len || (size_t)len > n) return 0;
    /* The second byte's range depends on the first. */
    unsigned lo = p[0] == 0xE0 ? 0xA0 : p[0] == 0xF0 ? 0x90 : 0x80;
    unsigned hi = p[0] == 0xED ? 0x9F : p[0] == 0xF4 ? 0x8F : 0xBF;
    if (p[1] < lo || p[1] > hi) return 0;
    for (int k = 2; k < len; k++)
        if ((p[k] & 0xC0) != 0x80) return 0;
    return len;
}

/* PostgreSQL refuses text that is not UTF-8 (SQLite stores any bytes): an
 * upstream's error message may hold anything, so invalid bytes become '?'.
 * Returns s itself when it is valid, else a copy in *owned (free it). */
static const char *utf8_text(const char *s, char **owned) {
    *owned = NULL;
    if (!s) return "";
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        int len = utf8_len(p + i, n - i);
        if (len) {
            i += (size_t)len;
            continue;
        }
        if (!*owned && !(*owned = strdup(s))) return "";
        (*owned)[i++] = '?';
    }
    return *owned ? *owned : s;
}

static em_status insert_attempt(PGconn *c, const char *request_id, int seq, const em_ledger_attempt *a) {
    char s[16], pt[24], ct[24], cost[32], lat[32], status[16], *own[4];
    snprintf(s, sizeof s, "%d", seq);
    snprintf(pt, sizeof pt, "%lld", (long long)a->prompt_tokens);
    snprintf(ct, sizeof ct, "%lld", (long long)a->completion_tokens);
    fmt_double(cost, sizeof cost, a->cost_usd);
    fmt_double(lat, sizeof lat, a->latency_ms);
    snprintf(status, sizeof status, "%d", a->status);
    const char *p[] = {request_id,
                       s,
                       utf8_text(a->backend, &own[0]),
                       utf8_text(a->replica, &own[1]),
                       pt,
                       ct,
                       cost,
                       lat,
                       status,
                       utf8_text(a->outcome, &own[2]),
                       utf8_text(a->reason, &own[3])};
    bool ok = run_ok(c,
                     "INSERT INTO attempts(request_id, seq, backend, replica, prompt_tokens, completion_tokens,"
                     " cost_usd, latency_ms, status, outcome, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                     11, p);
    for (int i = 0; i < 4; i++) free(own[i]);
    return ok ? EM_OK : pg_fail(c, "settle");
}

static em_status settle_in(PGconn *c, int64_t id, const em_ledger_entry *e) {
    char ts[32], pt[24], ct[24], cost[32], base[32], lat[32], status[16], *own[6];
    fmt_double(ts, sizeof ts, em_ledger_now());
    snprintf(pt, sizeof pt, "%lld", (long long)e->prompt_tokens);
    snprintf(ct, sizeof ct, "%lld", (long long)e->completion_tokens);
    fmt_double(cost, sizeof cost, e->cost_usd);
    fmt_double(base, sizeof base, e->baseline_usd);
    fmt_double(lat, sizeof lat, e->latency_ms);
    snprintf(status, sizeof status, "%d", e->status);
    const char *p[] = {ts,   utf8_text(e->key, &own[0]), utf8_text(e->route, &own[1]), utf8_text(e->backend, &own[2]),
                       pt,   ct, cost, base, lat, status, utf8_text(e->outcome, &own[3]), utf8_text(e->escalation, &own[4])};
    own[5] = NULL;
    PGresult *r = run(c,
                      "INSERT INTO requests(ts, key, route, backend, prompt_tokens, completion_tokens, cost_usd,"
                      " baseline_usd, latency_ms, status, outcome, escalation)"
                      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
                      12, p, PGRES_TUPLES_OK);
    for (int i = 0; i < 6; i++) free(own[i]);
    if (!r || PQntuples(r) != 1) {
        PQclear(r);
        return pg_fail(c, "settle");
    }
    char rid[24];
    snprintf(rid, sizeof rid, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    for (int i = 0; i < e->n_attempts; i++) {
        em_status st = insert_attempt(c, rid, i, &e->attempts[i]);
        if (st != EM_OK) return st;
    }
    if (id) {
        char rs[24];
        snprintf(rs, sizeof rs, "%lld", (long long)id);
        const char *d[] = {rs};
        if (!run_ok(c, "DELETE FROM reservations WHERE id = $1", 1, d)) return pg_fail(c, "settle");
    }
    return EM_OK;
}

static em_status pg_settle(void *db, int64_t id, const em_ledger_entry *e) {
    pg_ledger *l = db;
    PGconn *c;
    em_status st = begin(l, &c);
    if (st != EM_OK) return st;
    return finish(l, c, settle_in(c, id, e));
}

/* ------------------------------------------------------------- usage */

static em_status pg_usage(void *db, em_usage_by by, double since, em_usage_row **rows, int *n_rows) {
    static const char *group[] = {"key", "route", "backend", "to_char(to_timestamp(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"};
    char sql[512];
    /* COLLATE "C": the byte order SQLite sorts in. */
    snprintf(sql, sizeof sql,
             "SELECT %s AS g, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens),"
             " SUM(CASE WHEN escalation <> '' THEN 1 ELSE 0 END), SUM(cost_usd), SUM(baseline_usd)"
             " FROM requests WHERE ts >= $1 GROUP BY g ORDER BY %s COLLATE \"C\"",
             group[by], group[by]);
    pg_ledger *l = db;
    PGconn *c;
    em_status st = begin(l, &c);
    if (st != EM_OK) return st;
    char s[32];
    fmt_double(s, sizeof s, since);
    const char *p[] = {s};
    PGresult *r = run(c, sql, 1, p, PGRES_TUPLES_OK);
    if (!r) return finish(l, c, pg_fail(c, "usage"));
    int cap = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        em_usage_row *u = em_ledger_usage_push(rows, n_rows, &cap);
        if (!u) {
            st = em_error(EM_ERR_NOMEM, "ledger: out of memory");
            break;
        }
        const char *g = PQgetvalue(r, i, 0);
        snprintf(u->group, sizeof u->group, "%s", g[0] ? g : "-");
        u->requests = strtoll(PQgetvalue(r, i, 1), NULL, 10);
        u->prompt_tokens = strtoll(PQgetvalue(r, i, 2), NULL, 10);
        u->completion_tokens = strtoll(PQgetvalue(r, i, 3), NULL, 10);
        u->escalations = strtoll(PQgetvalue(r, i, 4), NULL, 10);
        u->cost_usd = strtod(PQgetvalue(r, i, 5), NULL);
        u->baseline_usd = strtod(PQgetvalue(r, i, 6), NULL);
    }
    PQclear(r);
    st = finish(l, c, st);
    if (st != EM_OK) {
        free(*rows);
        *rows = NULL;
        *n_rows = 0;
    }
    return st;
}

const em_ledger_ops em_ledger_pg_ops = {
    .close = pg_close, .reserve = pg_reserve, .settle = pg_settle, .spend = pg_spend, .usage = pg_usage};
