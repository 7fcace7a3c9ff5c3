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
 * starts a new step for em_threadpool_next. */
void em_threadpool_barrier(em_threadpool *tp);

/* em_threadpool_barrier, and a thread that waits there reads the pf_len
 * bytes at pf into the cache meanwhile, as far as its wait lasts (a hint
 * that changes no result; pf may be NULL): the first weights this thread
 * will read after the barrier, which turns the wait of a thread done
 * early with a memory-bound step into streaming for the next one. */
void em_threadpool_barrier_prefetch(em_threadpool *tp, const void *pf, size_t pf_len);

/* Inside fn, called by thread ith: claims the next chunk of the current
 * step (the work since em_threadpool_run started or since the last
 * barrier), a number in [0, n_chunks) handed to no other thread, or -1
 * once all are taken.  Every thread must pass the same n_chunks (below
 * 2^31) within a step, and a step may share out only one such range.
 * Thread ith gets the chunks of its own share (about n_chunks / nth of
 * them, contiguous) in increasing order first, then helps with the others'
 * shares from their ends. */
int64_t em_threadpool_next(em_threadpool *tp, int ith, int64_t n_chunks);

#endif
