/*
 * threadpool.c - persistent workers woken by a generation counter.
 *
 * The caller publishes a task by bumping `generation`; each worker notices
 * the change (spinning first, then sleeping on a condition variable), runs
 * its share, and decrements `pending`.  The caller runs share 0 itself and
 * then waits for `pending` to reach zero.
 */
#include "core/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#define EM_SPIN_ITERS 20000

typedef struct worker {
    em_threadpool *tp;
    int ith;
    pthread_t thread;
} worker;

struct em_threadpool {
    int n_threads;           /* including the caller                       */
    worker *workers;         /* [n_threads - 1]                            */
    em_task_fn fn;           /* task of the current generation             */
    void *arg;
    atomic_uint generation;  /* bumped once per em_threadpool_run          */
    atomic_int pending;      /* workers still running the current task     */
    atomic_bool stop;
    pthread_mutex_t mutex;   /* guards sleeping on / signalling `wake`     */
    pthread_cond_t wake;
    pthread_cond_t done;
};

static void *worker_main(void *p) {
    worker *w = p;
    em_threadpool *tp = w->tp;
    unsigned seen = 0;
    for (;;) {
        unsigned gen;
        int spins = 0;
        while ((gen = atomic_load_explicit(&tp->generation, memory_order_acquire)) == seen &&
               !atomic_load(&tp->stop)) {
            if (++spins < EM_SPIN_ITERS) continue;
            pthread_mutex_lock(&tp->mutex);
            while (atomic_load(&tp->generation) == seen && !atomic_load(&tp->stop))
                pthread_cond_wait(&tp->wake, &tp->mutex);
            pthread_mutex_unlock(&tp->mutex);
        }
        if (atomic_load(&tp->stop)) return NULL;
        seen = gen;
        tp->fn(tp->arg, w->ith, tp->n_threads);
        if (atomic_fetch_sub_explicit(&tp->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&tp->mutex);
            pthread_cond_signal(&tp->done);
            pthread_mutex_unlock(&tp->mutex);
        }
    }
}

em_status em_threadpool_init(em_threadpool **out, int n_threads) {
    if (n_threads < 1 || n_threads > 512)
        return em_error(EM_ERR_INVALID_ARG, "threadpool: bad thread count %d", n_threads);
    em_threadpool *tp = calloc(1, sizeof *tp);
    if (!tp) return em_error(EM_ERR_NOMEM, "threadpool: out of memory");
    tp->n_threads = n_threads;
    pthread_mutex_init(&tp->mutex, NULL);
    pthread_cond_init(&tp->wake, NULL);
    pthread_cond_init(&tp->done, NULL);
    atomic_init(&tp->generation, 0);
    atomic_init(&tp->pending, 0);
    atomic_init(&tp->stop, false);
    if (n_threads > 1) {
        tp->workers = calloc((size_t)n_threads - 1, sizeof *tp->workers);
        if (!tp->workers) {
            em_threadpool_free(tp);
            return em_error(EM_ERR_NOMEM, "threadpool: out of memory");
        }
        for (int i = 0; i < n_threads - 1; i++) {
            tp->workers[i].tp = tp;
            tp->workers[i].ith = i + 1;
            if (pthread_create(&tp->workers[i].thread, NULL, worker_main, &tp->workers[i])) {
                tp->n_threads = i + 1; /* join only those started */
                em_threadpool_free(tp);
                return em_error(EM_ERR_INTERNAL, "threadpool: cannot start thread %d", i + 1);
            }
        }
    }
    *out = tp;
    return EM_OK;
}

void em_threadpool_free(em_threadpool *tp) {
    if (!tp) return;
    pthread_mutex_lock(&tp->mutex);
    atomic_store(&tp->stop, true);
    pthread_cond_broadcast(&tp->wake);
    pthread_mutex_unlock(&tp->mutex);
    if (tp->workers)
        for (int i = 0; i < tp->n_threads - 1; i++) pthread_join(tp->workers[i].thread, NULL);
    pthread_mutex_destroy(&tp->mutex);
    pthread_cond_destroy(&tp->wake);
    pthread_cond_destroy(&tp->done);
    free(tp->workers);
    free(tp);
}

int em_threadpool_size(const em_threadpool *tp) { return tp->n_threads; }

void em_threadpool_run(em_threadpool *tp, em_task_fn fn, void *arg) {
    if (tp->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    tp->fn = fn;
    tp->arg = arg;
    atomic_store_explicit(&tp->pending, tp->n_threads - 1, memory_order_relaxed);
    pthread_mutex_lock(&tp->mutex);
    atomic_fetch_add_explicit(&tp->generation, 1, memory_order_release);
    pthread_cond_broadcast(&tp->wake);
    pthread_mutex_unlock(&tp->mutex);
    fn(arg, 0, tp->n_threads);
    int spins = 0;
    while (atomic_load_explicit(&tp->pending, memory_order_acquire) > 0) {
        if (++spins < EM_SPIN_ITERS) continue;
        pthread_mutex_lock(&tp->mutex);
        while (atomic_load(&tp->pending) > 0) pthread_cond_wait(&tp->done, &tp->mutex);
        pthread_mutex_unlock(&tp->mutex);
    }
}
