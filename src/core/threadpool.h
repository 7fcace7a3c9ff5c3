/*
 * threadpool.h - a persistent pool of worker threads for the engine.
 *
 * em_threadpool_run calls fn(arg, ith, nth) once on each of nth threads
 * (the caller is thread 0) and returns when all have finished, so each op
 * of the forward pass is one parallel region with a barrier at its end.
 * Workers spin briefly before sleeping so that back-to-back ops do not pay
 * a futex wake-up each.
 */
#ifndef EM_THREADPOOL_H
#define EM_THREADPOOL_H

#include "core/core.h"

typedef struct em_threadpool em_threadpool;
typedef void (*em_task_fn)(void *arg, int ith, int nth);

em_status em_threadpool_init(em_threadpool **out, int n_threads);
void em_threadpool_free(em_threadpool *tp);
int em_threadpool_size(const em_threadpool *tp);
/* Runs fn on every thread and waits; not reentrant. */
void em_threadpool_run(em_threadpool *tp, em_task_fn fn, void *arg);

#endif
