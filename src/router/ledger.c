/*
 * ledger.c - picks the ledger's backend by its URL's scheme and passes each
 * call on to it; the time helpers both backends share.
 */
#include "router/ledger_backend.h"

#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

struct em_ledger {
    const em_ledger_ops *ops;
    void *db; /* the backend's own state */
};

/* postgres:// and postgresql:// are libpq's URI schemes; "postgres:" also
 * takes a libpq keyword string ("postgres:host=/run/pg dbname=ember"). */
static bool is_pg(const char *url) { return !strncmp(url, "postgres:", 9) || !strncmp(url, "postgresql:", 11); }

em_status em_ledger_open(em_ledger **out, const char *url) {
    *out = NULL;
    const em_ledger_ops *ops = !strncmp(url, "sqlite:", 7) ? &em_ledger_sqlite_ops : is_pg(url) ? &em_ledger_pg_ops : NULL;
    if (!ops)
        return em_error(EM_ERR_INVALID_ARG, "ledger: '%.100s' is neither a sqlite: nor a postgres:// URL", url);
    em_ledger *l = calloc(1, sizeof *l);
    if (!l) return em_error(EM_ERR_NOMEM, "ledger: out of memory");
    l->ops = ops;
    em_status st = ops == &em_ledger_sqlite_ops ? em_ledger_sqlite_open(&l->db, url) : em_ledger_pg_open(&l->db, url);
    if (st != EM_OK) {
        free(l);
        return st;
    }
    *out = l;
    return EM_OK;
}

void em_ledger_url_redacted(const char *url, char *out, size_t n) {
    if (!n) return;
    const char *auth = strstr(url, "://"), *at = NULL, *colon = NULL;
    if (auth) {
        auth += 3;
        size_t len = strcspn(auth, "/?");
        at = memchr(auth, '@', len);
        colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    }
    const char *kw = strstr(url, "password=");
    size_t o = 0;
    for (const char *p = url; *p && o + 1 < n;) {
        if (colon && p == colon + 1) {
            o += (size_t)snprintf(out + o, n - o, "***");
            p = at;
        } else if (kw && p == kw + 9) {
            o += (size_t)snprintf(out + o, n - o, "***");
            p += strcspn(p, " &");
        } else
            out[o++] = *p++;
        if (o >= n) o = n - 1;
    }
    out[o] = '\0';
}

void em_ledger_close(em_ledger *l) {
    if (!l) return;
    l->ops->close(l->db);
    free(l);
}

em_status em_ledger_reserve(em_ledger *l, const char *key, double daily_usd, double monthly_usd, double max_usd,
                            int64_t *id, bool *over) {
    return l->ops->reserve(l->db, key, daily_usd, monthly_usd, max_usd, id, over);
}

em_status em_ledger_settle(em_ledger *l, int64_t id, const em_ledger_entry *e) { return l->ops->settle(l->db, id, e); }

em_status em_ledger_spend(em_ledger *l, const char *key, double *day_usd, double *month_usd) {
    return l->ops->spend(l->db, key, day_usd, month_usd);
}

em_status em_ledger_usage(em_ledger *l, em_usage_by by, double since, em_usage_row **rows, int *n_rows) {
    *rows = NULL;
    *n_rows = 0;
    return l->ops->usage(l->db, by, since, rows, n_rows);
}

double em_ledger_now(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec * 1e-6;
}

void em_ledger_periods(double now, double *day, double *month) {
    time_t t = (time_t)now;
    struct tm tm;
    gmtime_r(&t, &tm);
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    *day = (double)timegm(&tm);
    tm.tm_mday = 1;
    *month = (double)timegm(&tm);
}

em_usage_row *em_ledger_usage_push(em_usage_row **rows, int *n_rows, int *cap) {
    if (*n_rows == *cap) {
        int c = *cap ? *cap * 2 : 16;
        em_usage_row *r = realloc(*rows, (size_t)c * sizeof *r);
        if (!r) return NULL;
        *rows = r;
        *cap = c;
    }
    em_usage_row *r = &(*rows)[(*n_rows)++];
    memset(r, 0, sizeof *r);
    return r;
}
