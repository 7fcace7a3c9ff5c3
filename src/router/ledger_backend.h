/*
 * ledger_backend.h - what a ledger backend provides (SQLite in
 * ledger_sqlite.c, PostgreSQL in ledger_pg.c) and what ledger.c shares
 * between them.  The router and `ember usage` see only ledger.h.
 */
#ifndef EM_ROUTER_LEDGER_BACKEND_H
#define EM_ROUTER_LEDGER_BACKEND_H

#include "router/ledger.h"

/* One backend's operations on its own state `db`; each has the meaning of
 * the em_ledger_* function of the same name. */
typedef struct em_ledger_ops {
    void (*close)(void *db);
    em_status (*reserve)(void *db, const char *key, double daily_usd, double monthly_usd, double max_usd,
                         int64_t *id, bool *over);
    em_status (*settle)(void *db, int64_t id, const em_ledger_entry *e);
    em_status (*spend)(void *db, const char *key, double *day_usd, double *month_usd);
    em_status (*usage)(void *db, em_usage_by by, double since, em_usage_row **rows, int *n_rows);
} em_ledger_ops;

extern const em_ledger_ops em_ledger_sqlite_ops, em_ledger_pg_ops;

/* Each opens its backend from the whole URL (the scheme already checked). */
em_status em_ledger_sqlite_open(void **db, const char *url);
em_status em_ledger_pg_open(void **db, const char *url);

/* Unix seconds, now; and at the start of the current UTC day and month
 * (the budget periods). */
double em_ledger_now(void);
void em_ledger_periods(double now, double *day, double *month);

/* Appends one row to a growing array of usage rows; false when out of
 * memory. */
em_usage_row *em_ledger_usage_push(em_usage_row **rows, int *n_rows, int *cap);

#endif
