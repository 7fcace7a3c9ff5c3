/*
 * threadpool.h - a persistent pool of worker threads for the engine.
 *
 * em_threadpool_run calls fn(arg, ith, nth) once on each of nth threads
 * (the caller is thread 0) and returns when all have finished.  Inside fn
 * the threads may meet at em_threadpool_barrier, so that a whole forward
 * pass can be one parallel region made of many steps, and they may share
 * out a step's work dynamically with em_threadpool_chunk: each call hands
 * the calling thread the next unclaimed chunk number, so a thread that
 * runs slower (or is descheduled on a busy machine) simply takes fewer
 * chunks instead of holding the others up.
 *
 * Waiting threads spin briefly, then yield, then sleep, so that
 * back-to-back steps cost no system call while an idle pool costs no CPU.
 */
#ifndef EM_THREADPOOL_H
#define EM_THREADPOOL_H

#include "core/core.h"

typedef struct em_threadpool em_threadpool;
typedef void (*em_task_fn)(void *arg, int ith, int nth);

em_status em_threadpool_init(em_threadpool **out, int n_threads);
void em_threadpool_free(em_threadpool *tp);
int em_threadpool_size(const em_threadpool *tp);

/* Runs fn on every thread and waits; not reentrant (fn must not call it). */
void em_threadpool_run(em_threadpool *tp, em_task_fn fn, void *arg);

/* Inside fn: returns once every thread of the pool has called it (the
 * n-th call of each thread meets the n-th call of the others).  Writes
 * made before the barrier are visible to every thread after it.  It also
 * restarts the chunk counter for the next step. */
void em_threadpool_barrier(em_threadpool *tp);

/* Inside fn: the next chunk number of the current step, counting from 0
 * after em_threadpool_run starts and after each barrier.  Each number is
 * handed to exactly one thread; callers stop once it reaches their
 * step's chunk count. */
int64_t em_threadpool_chunk(em_threadpool *tp);

#endif
