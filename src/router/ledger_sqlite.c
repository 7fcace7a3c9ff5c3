/*
 * ledger_sqlite.c - the SQLite ledger (the default): schema, reservations,
 * settlement, usage.  One connection and one mutex per process; BEGIN
 * IMMEDIATE serialises the processes that share the file.
 */
#include "router/ledger_backend.h"

#include "core/core.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct sq_ledger {
    sqlite3 *db;
    pthread_mutex_t mu; /* one statement sequence at a time on the connection */
    double last_sweep;  /* unix seconds of the last dead-process sweep (under mu) */
} sq_ledger;

static const char *schema =
    "CREATE TABLE IF NOT EXISTS requests(id INTEGER PRIMARY KEY, ts REAL NOT NULL, key TEXT NOT NULL,"
    " route TEXT NOT NULL, backend TEXT NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,"
    " cost_usd REAL NOT NULL, baseline_usd REAL NOT NULL, latency_ms REAL NOT NULL, status INTEGER NOT NULL,"
    " outcome TEXT NOT NULL, escalation TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS requests_key_ts ON requests(key, ts);"
    "CREATE INDEX IF NOT EXISTS requests_ts ON requests(ts);"
    "CREATE TABLE IF NOT EXISTS attempts(id INTEGER PRIMARY KEY, request_id INTEGER NOT NULL REFERENCES requests(id),"
    " seq INTEGER NOT NULL, backend TEXT NOT NULL, replica TEXT NOT NULL, prompt_tokens INTEGER NOT NULL,"
    " completion_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL, latency_ms REAL NOT NULL, status INTEGER NOT NULL,"
    " outcome TEXT NOT NULL, reason TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS attempts_request ON attempts(request_id);"
    "CREATE TABLE IF NOT EXISTS reservations(id INTEGER PRIMARY KEY, ts REAL NOT NULL, pid INTEGER NOT NULL,"
    " key TEXT NOT NULL, amount_usd REAL NOT NULL);";

static em_status db_fail(sq_ledger *l, const char *what) {
    return em_error(EM_ERR_IO, "ledger: %s: %s", what, sqlite3_errmsg(l->db));
}

static bool exec(sq_ledger *l, const char *sql) { return sqlite3_exec(l->db, sql, NULL, NULL, NULL) == SQLITE_OK; }

/* Drops the reservations of processes on this machine that no longer run
 * (a router killed with -9 cannot settle them): when the ledger is opened,
 * and at most once a second inside a reservation's transaction, so that a
 * router sharing the file with one that died frees the budget it held. */
static void drop_dead_reservations(sq_ledger *l) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(l->db, "SELECT DISTINCT pid FROM reservations", -1, &st, NULL) != SQLITE_OK) return;
    int64_t dead[64];
    int n = 0;
    while (sqlite3_step(st) == SQLITE_ROW && n < 64) {
        int64_t pid = sqlite3_column_int64(st, 0);
        if (pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH) dead[n++] = pid;
    }
    sqlite3_finalize(st);
    for (int i = 0; i < n; i++) {
        char sql[96];
        snprintf(sql, sizeof sql, "DELETE FROM reservations WHERE pid = %lld", (long long)dead[i]);
        exec(l, sql);
    }
}

static void sq_close(void *db);

em_status em_ledger_sqlite_open(void **out, const char *url) {
    *out = NULL;
    const char *path = url + 7;
    if (!strncmp(path, "//", 2)) path += 2; /* sqlite:///abs -> /abs, sqlite://rel -> rel */
    char file[4096];
    snprintf(file, sizeof file, "%s", path);
    bool full = false;
    char *q = strchr(file, '?');
    if (q) {
        *q++ = '\0';
        if (!strcmp(q, "synchronous=full")) full = true;
        else if (strcmp(q, "synchronous=normal"))
            return em_error(EM_ERR_INVALID_ARG, "ledger: unknown option '%s' (synchronous=full|normal)", q);
    }
    if (!file[0]) return em_error(EM_ERR_INVALID_ARG, "ledger: '%s' names no file", url);
    sq_ledger *l = calloc(1, sizeof *l);
    if (!l) return em_error(EM_ERR_NOMEM, "ledger: out of memory");
    pthread_mutex_init(&l->mu, NULL);
    if (sqlite3_open_v2(file, &l->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) !=
        SQLITE_OK) {
        em_status st = em_error(EM_ERR_IO, "ledger: cannot open %s: %s", file, l->db ? sqlite3_errmsg(l->db) : "?");
        sq_close(l);
        return st;
    }
    sqlite3_busy_timeout(l->db, 10000);
    /* WAL: readers (ember usage) never block the router, and a commit is
     * one append to the log, which a crash of the process cannot tear:
     * after kill -9 the next open replays the committed transactions.
     * synchronous=NORMAL keeps that (the log is in the OS cache when the
     * process dies); only a power cut can lose the last commits.  FULL
     * also survives that, at one fsync per commit. */
    if (!exec(l, "PRAGMA journal_mode=WAL") || !exec(l, full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL") ||
        !exec(l, schema)) {
        em_status st = db_fail(l, file);
        sq_close(l);
        return st;
    }
    drop_dead_reservations(l);
    *out = l;
    return EM_OK;
}

static void sq_close(void *db) {
    sq_ledger *l = db;
    if (!l) return;
    if (l->db) sqlite3_close(l->db);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

static bool sum_since(sq_ledger *l, const char *key, double since, double *out) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(l->db,
                           "SELECT (SELECT COALESCE(SUM(cost_usd), 0) FROM requests WHERE key = ?1 AND ts >= ?2)"
                           " + (SELECT COALESCE(SUM(amount_usd), 0) FROM reservations WHERE key = ?1)",
                           -1, &st, NULL) != SQLITE_OK)
        return false;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 2, since);
    bool ok = sqlite3_step(st) == SQLITE_ROW;
    if (ok) *out = sqlite3_column_double(st, 0);
    sqlite3_finalize(st);
    return ok;
}

static em_status spend_locked(sq_ledger *l, const char *key, double *day_usd, double *month_usd) {
    double day, month;
    em_ledger_periods(em_ledger_now(), &day, &month);
    if (!sum_since(l, key, day, day_usd) || !sum_since(l, key, month, month_usd)) return db_fail(l, "spend");
    return EM_OK;
}

static em_status sq_spend(void *db, const char *key, double *day_usd, double *month_usd) {
    sq_ledger *l = db;
    pthread_mutex_lock(&l->mu);
    em_status st = spend_locked(l, key, day_usd, month_usd);
    pthread_mutex_unlock(&l->mu);
    return st;
}

/* Ends the transaction that BEGIN IMMEDIATE opened: commits when st is
 * EM_OK and keep is set, and rolls back otherwise.  A failed COMMIT
 * becomes the error (read before the ROLLBACK replaces SQLite's message)
 * and rolls back too, so that the connection is never left inside a
 * transaction that would hold the file's write lock. */
static em_status end_transaction(sq_ledger *l, em_status st, bool keep) {
    if (st == EM_OK && keep) {
        if (exec(l, "COMMIT")) return EM_OK;
        st = db_fail(l, "commit");
    }
    exec(l, "ROLLBACK");
    return st;
}

/* The body of sq_reserve, inside its transaction: *over when the budget
 * would be exceeded (nothing is inserted then), else the reservation's
 * row id in *id. */
static em_status reserve_locked(sq_ledger *l, const char *key, double daily_usd, double monthly_usd, double max_usd,
                                int64_t *id, bool *over) {
    double now = em_ledger_now();
    if (now - l->last_sweep >= 1.0) {
        l->last_sweep = now;
        drop_dead_reservations(l);
    }
    double day = 0, month = 0;
    em_status st;
    if ((daily_usd > 0 || monthly_usd > 0) && (st = spend_locked(l, key, &day, &month)) != EM_OK) return st;
    if ((daily_usd > 0 && day + max_usd > daily_usd) || (monthly_usd > 0 && month + max_usd > monthly_usd)) {
        *over = true;
        return EM_OK;
    }
    sqlite3_stmt *ins;
    if (sqlite3_prepare_v2(l->db, "INSERT INTO reservations(ts, pid, key, amount_usd) VALUES (?, ?, ?, ?)", -1, &ins,
                           NULL) != SQLITE_OK)
        return db_fail(l, "reserve");
    sqlite3_bind_double(ins, 1, em_ledger_now());
    sqlite3_bind_int64(ins, 2, (int64_t)getpid());
    sqlite3_bind_text(ins, 3, key, -1, SQLITE_STATIC);
    sqlite3_bind_double(ins, 4, max_usd);
    int rc = sqlite3_step(ins);
    sqlite3_finalize(ins);
    if (rc != SQLITE_DONE) return db_fail(l, "reserve");
    *id = sqlite3_last_insert_rowid(l->db);
    return EM_OK;
}

static em_status sq_reserve(void *db, const char *key, double daily_usd, double monthly_usd, double max_usd,
                            int64_t *id, bool *over) {
    sq_ledger *l = db;
    *id = 0;
    *over = false;
    pthread_mutex_lock(&l->mu);
    em_status st;
    if (!exec(l, "BEGIN IMMEDIATE")) {
        st = db_fail(l, "begin");
    } else {
        st = reserve_locked(l, key, daily_usd, monthly_usd, max_usd, id, over);
        st = end_transaction(l, st, !*over);
        if (st != EM_OK) *id = 0; /* a reservation that was rolled back does not exist */
    }
    pthread_mutex_unlock(&l->mu);
    return st;
}

static bool insert_attempt(sqlite3_stmt *st, int64_t request_id, int seq, const em_ledger_attempt *a) {
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, request_id);
    sqlite3_bind_int(st, 2, seq);
    sqlite3_bind_text(st, 3, a->backend ? a->backend : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, a->replica ? a->replica : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, a->prompt_tokens);
    sqlite3_bind_int64(st, 6, a->completion_tokens);
    sqlite3_bind_double(st, 7, a->cost_usd);
    sqlite3_bind_double(st, 8, a->latency_ms);
    sqlite3_bind_int(st, 9, a->status);
    sqlite3_bind_text(st, 10, a->outcome ? a->outcome : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 11, a->reason ? a->reason : "", -1, SQLITE_STATIC);
    return sqlite3_step(st) == SQLITE_DONE;
}

/* The statements of one settlement, run in its transaction: the request's
 * row, one row per attempt, and the deletion of reservation id (0: none).
 * It finalizes what it prepared before the caller commits or rolls back. */
static em_status settle_locked(sq_ledger *l, int64_t id, const em_ledger_entry *e) {
    em_status st = EM_OK;
    sqlite3_stmt *req = NULL, *att = NULL, *del = NULL;
    if (sqlite3_prepare_v2(l->db,
                           "INSERT INTO requests(ts, key, route, backend, prompt_tokens, completion_tokens, cost_usd,"
                           " baseline_usd, latency_ms, status, outcome, escalation)"
                           " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           -1, &req, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(l->db,
                           "INSERT INTO attempts(request_id, seq, backend, replica, prompt_tokens, completion_tokens,"
                           " cost_usd, latency_ms, status, outcome, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           -1, &att, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(l->db, "DELETE FROM reservations WHERE id = ?", -1, &del, NULL) != SQLITE_OK) {
        st = db_fail(l, "settle");
        goto out;
    }
    sqlite3_bind_double(req, 1, em_ledger_now());
    sqlite3_bind_text(req, 2, e->key ? e->key : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(req, 3, e->route ? e->route : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(req, 4, e->backend ? e->backend : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(req, 5, e->prompt_tokens);
    sqlite3_bind_int64(req, 6, e->completion_tokens);
    sqlite3_bind_double(req, 7, e->cost_usd);
    sqlite3_bind_double(req, 8, e->baseline_usd);
    sqlite3_bind_double(req, 9, e->latency_ms);
    sqlite3_bind_int(req, 10, e->status);
    sqlite3_bind_text(req, 11, e->outcome ? e->outcome : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(req, 12, e->escalation ? e->escalation : "", -1, SQLITE_STATIC);
    if (sqlite3_step(req) != SQLITE_DONE) {
        st = db_fail(l, "settle");
        goto out;
    }
    int64_t rid = sqlite3_last_insert_rowid(l->db);
    for (int i = 0; i < e->n_attempts && st == EM_OK; i++)
        if (!insert_attempt(att, rid, i, &e->attempts[i])) st = db_fail(l, "settle");
    sqlite3_bind_int64(del, 1, id);
    if (st == EM_OK && id && sqlite3_step(del) != SQLITE_DONE) st = db_fail(l, "settle");
out:
    sqlite3_finalize(req);
    sqlite3_finalize(att);
    sqlite3_finalize(del);
    return st;
}

static em_status sq_settle(void *db, int64_t id, const em_ledger_entry *e) {
    sq_ledger *l = db;
    pthread_mutex_lock(&l->mu);
    em_status st;
    if (!exec(l, "BEGIN IMMEDIATE")) st = db_fail(l, "begin");
    else st = end_transaction(l, settle_locked(l, id, e), true);
    pthread_mutex_unlock(&l->mu);
    return st;
}

static em_status sq_usage(void *db, em_usage_by by, double since, em_usage_row **rows, int *n_rows) {
    sq_ledger *l = db;
    static const char *group[] = {"key", "route", "backend", "strftime('%Y-%m-%d', ts, 'unixepoch')"};
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT %s AS g, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), SUM(escalation != ''),"
             " SUM(cost_usd), SUM(baseline_usd) FROM requests WHERE ts >= ? GROUP BY g ORDER BY g",
             group[by]);
    pthread_mutex_lock(&l->mu);
    sqlite3_stmt *st;
    em_status status = EM_OK;
    if (sqlite3_prepare_v2(l->db, sql, -1, &st, NULL) != SQLITE_OK) {
        status = db_fail(l, "usage");
        goto out;
    }
    sqlite3_bind_double(st, 1, since);
    int cap = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        em_usage_row *r = em_ledger_usage_push(rows, n_rows, &cap);
        if (!r) {
            status = em_error(EM_ERR_NOMEM, "ledger: out of memory");
            break;
        }
        const unsigned char *g = sqlite3_column_text(st, 0);
        snprintf(r->group, sizeof r->group, "%s", g && g[0] ? (const char *)g : "-");
        r->requests = sqlite3_column_int64(st, 1);
        r->prompt_tokens = sqlite3_column_int64(st, 2);
        r->completion_tokens = sqlite3_column_int64(st, 3);
        r->escalations = sqlite3_column_int64(st, 4);
        r->cost_usd = sqlite3_column_double(st, 5);
        r->baseline_usd = sqlite3_column_double(st, 6);
    }
    if (status == EM_OK && rc != SQLITE_DONE) status = db_fail(l, "usage");
    sqlite3_finalize(st);
out:
    pthread_mutex_unlock(&l->mu);
    if (status != EM_OK) {
        free(*rows);
        *rows = NULL;
        *n_rows = 0;
    }
    return status;
}

const em_ledger_ops em_ledger_sqlite_ops = {
    .close = sq_close, .reserve = sq_reserve, .settle = sq_settle, .spend = sq_spend, .usage = sq_usage};
