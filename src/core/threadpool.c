/*
 * threadpool.c - persistent workers, cheap barriers and work shared out
 * in chunks.
 *
 * These counters drive everything, each on its own cache line so that
 * threads spinning on one do not slow down writers of another:
 *   run_gen   bumped by em_threadpool_run to publish a new task;
 *   bar_count threads arrived at the current barrier, bar_gen bumped by
 *             the last one to arrive, which releases the others;
 *   share[i]  the claims on thread i's share of the current step's chunks:
 *             thread i takes them from the front, in address order, and
 *             threads done with their own shares take them from the back,
 *             so that the owner keeps streaming through memory where it
 *             is (its prefetches stay useful) while a helper starts at the
 *             far end.  Front and back counts share one 64-bit word, so
 *             that one atomic add both claims and sees every other claim.
 * A run is: publish, everyone runs fn, everyone meets at a final barrier,
 * so the caller knows that all workers are done when it returns.
 *
 * Waiting (for a run or at a barrier) first spins with the CPU's pause
 * hint, which keeps the hand-off between the steps of a forward pass in
 * the tens of nanoseconds; then yields the processor, which matters when
 * the machine has more runnable threads than cores; and finally sleeps on
 * a condition variable, so an idle pool uses no CPU.  Wakers take the
 * mutex only when someone actually sleeps (the `sleepers` count).
 *
 * The spin is bounded by time (EM_SPIN_NS), not by a count of pause
 * hints, whose length varies twentyfold between CPUs (about 10 cycles to
 * over 100).  It has to outlast the usual wait at a barrier of generation,
 * where threads part by up to one chunk of a product (tens of
 * microseconds): a thread that yields there on a busy machine can lose its
 * core for a whole time slice (milliseconds), and with five barriers per
 * layer a few such losses per token cut the speed by half or more.
 */
#include "core/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#define EM_SPIN_NS 100000   /* spinning with pause hints before yielding       */
#define EM_SPIN_CHECK 32    /* pause hints between two looks at the clock      */
#define EM_YIELD_ITERS 256  /* sched_yield calls before sleeping              */

/* Thread i's claims: the count taken from the front of its share in the
 * low 32 bits, from the back in the high 32 bits; alone on its cache
 * line. */
typedef struct share {
    _Alignas(64) atomic_ullong claimed;
} share;

#define CLAIM_BACK ((uint64_t)1 << 32)

typedef struct worker {
    em_threadpool *tp;
    int ith;
    pthread_t thread;
} worker;

struct em_threadpool {
    int n_threads;                   /* including the caller                 */
    worker *workers;                 /* [n_threads - 1]                      */
    em_task_fn fn;                   /* task of the current run              */
    void *arg;
    _Alignas(64) atomic_uint run_gen;   /* bumped once per em_threadpool_run */
    _Alignas(64) atomic_int bar_count;  /* arrivals at the open barrier      */
    _Alignas(64) atomic_uint bar_gen;   /* bumped when a barrier releases    */
    share *shares;                      /* [n_threads] claim counters         */
    _Alignas(64) atomic_int sleepers;   /* threads blocked on `wake`         */
    atomic_bool stop;
    pthread_mutex_t mutex;           /* guards sleeping on / signalling wake */
    pthread_cond_t wake;
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Returns once *word differs from old: spin, then yield, then sleep.
 * While spinning, the bytes [pf, pf + pf_len) are prefetched into the
 * cache, a line per look at the word instead of a pause hint, so that a
 * thread done early with a step streams the first weights of the next
 * one while it waits (a prefetch never faults, and one that waits for a
 * free miss buffer delays the next look by a few nanoseconds only). */
static void wait_change(em_threadpool *tp, atomic_uint *word, unsigned old, const char *pf, size_t pf_len) {
    uint64_t t0 = 0;
    for (;;) {
        for (int i = 0; i < EM_SPIN_CHECK; i++) {
            if (atomic_load_explicit(word, memory_order_acquire) != old) return;
            if (pf_len >= 64) {
                __builtin_prefetch(pf, 0, 2);
                pf += 64;
                pf_len -= 64;
            } else {
                cpu_relax();
            }
        }
        const uint64_t t = now_ns();
        if (t0 == 0)
            t0 = t;
        else if (t - t0 > EM_SPIN_NS)
            break;
    }
    for (int i = 0; i < EM_YIELD_ITERS; i++) {
        if (atomic_load_explicit(word, memory_order_acquire) != old) return;
        sched_yield();
    }
    pthread_mutex_lock(&tp->mutex);
    /* Sequentially consistent increment and load pair with the waker's
     * store of word and load of sleepers: one of the two sees the other. */
    atomic_fetch_add(&tp->sleepers, 1);
    while (atomic_load(word) == old) pthread_cond_wait(&tp->wake, &tp->mutex);
    atomic_fetch_sub(&tp->sleepers, 1);
    pthread_mutex_unlock(&tp->mutex);
}

/* Publishes a new value of *word and wakes any sleeper. */
static void publish(em_threadpool *tp, atomic_uint *word, unsigned value) {
    atomic_store(word, value);
    if (atomic_load(&tp->sleepers) > 0) {
        pthread_mutex_lock(&tp->mutex);
        pthread_cond_broadcast(&tp->wake);
        pthread_mutex_unlock(&tp->mutex);
    }
}

/* Forgets the claims of the step that ended (called while no thread can
 * be claiming). */
static void reset_shares(em_threadpool *tp) {
    for (int i = 0; i < tp->n_threads; i++) atomic_store_explicit(&tp->shares[i].claimed, 0, memory_order_relaxed);
}

void em_threadpool_barrier(em_threadpool *tp) { em_threadpool_barrier_prefetch(tp, NULL, 0); }

void em_threadpool_barrier_prefetch(em_threadpool *tp, const void *pf, size_t pf_len) {
    if (tp->n_threads == 1) {
        reset_shares(tp);
        return;
    }
    /* Read the generation before arriving: it cannot move until every
     * thread, this one included, has arrived. */
    unsigned gen = atomic_load_explicit(&tp->bar_gen, memory_order_acquire);
    if (atomic_fetch_add_explicit(&tp->bar_count, 1, memory_order_acq_rel) == tp->n_threads - 1) {
        /* Last to arrive: everyone else is waiting, so the step's shared
         * state can be reset before they are let go. */
        atomic_store_explicit(&tp->bar_count, 0, memory_order_relaxed);
        reset_shares(tp);
        publish(tp, &tp->bar_gen, gen + 1);
    } else {
        wait_change(tp, &tp->bar_gen, gen, pf, pf ? pf_len : 0);
    }
}

/* Chunks claimed from a share, front and back together. */
static int64_t claims(uint64_t word) { return (int64_t)(word & 0xffffffffu) + (int64_t)(word >> 32); }

int64_t em_threadpool_next(em_threadpool *tp, int ith, int64_t n_chunks) {
    const int nth = tp->n_threads;
    /* Share o is chunks [o * n / nth, (o + 1) * n / nth).  Own share first,
     * from the front; then the others' from their backs.  Each add sees
     * every earlier claim on the share, so a claim is good while the
     * claims before it leave a chunk between front and back; counts past
     * that just mean the share is done (each thread overshoots a share at
     * most once per step, so the 32-bit halves cannot carry). */
    for (int v = 0; v < nth; v++) {
        const int o = (ith + v) % nth;
        const int64_t lo = n_chunks * o / nth, hi = n_chunks * (o + 1) / nth;
        atomic_ullong *cl = &tp->shares[o].claimed;
        if (claims(atomic_load_explicit(cl, memory_order_relaxed)) >= hi - lo) continue;
        const uint64_t was = atomic_fetch_add_explicit(cl, v == 0 ? 1 : CLAIM_BACK, memory_order_relaxed);
        if (claims(was) < hi - lo) return v == 0 ? lo + (int64_t)(was & 0xffffffffu) : hi - 1 - (int64_t)(was >> 32);
    }
    return -1;
}

static void *worker_main(void *p) {
    worker *w = p;
    em_threadpool *tp = w->tp;
    unsigned seen = 0;
    for (;;) {
        wait_change(tp, &tp->run_gen, seen, NULL, 0);
        seen = atomic_load_explicit(&tp->run_gen, memory_order_acquire);
        if (atomic_load(&tp->stop)) return NULL;
        tp->fn(tp->arg, w->ith, tp->n_threads);
        em_threadpool_barrier(tp);
    }
}

em_status em_threadpool_init(em_threadpool **out, int n_threads) {
    if (n_threads < 1 || n_threads > 512)
        return em_error(EM_ERR_INVALID_ARG, "threadpool: bad thread count %d", n_threads);
    /* The counters ask for cache-line alignment, which calloc does not
     * promise. */
    size_t size = (sizeof(em_threadpool) + 63) / 64 * 64;
    em_threadpool *tp = aligned_alloc(64, size);
    if (!tp) return em_error(EM_ERR_NOMEM, "threadpool: out of memory");
    memset(tp, 0, size);
    tp->n_threads = n_threads;
    pthread_mutex_init(&tp->mutex, NULL);
    pthread_cond_init(&tp->wake, NULL);
    atomic_init(&tp->run_gen, 0);
    atomic_init(&tp->bar_count, 0);
    atomic_init(&tp->bar_gen, 0);
    atomic_init(&tp->sleepers, 0);
    atomic_init(&tp->stop, false);
    tp->shares = aligned_alloc(64, (size_t)n_threads * sizeof(share));
    if (!tp->shares) {
        pthread_mutex_destroy(&tp->mutex);
        pthread_cond_destroy(&tp->wake);
        free(tp);
        return em_error(EM_ERR_NOMEM, "threadpool: out of memory");
    }
    for (int i = 0; i < n_threads; i++) atomic_init(&tp->shares[i].claimed, 0);
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
    atomic_store(&tp->stop, true);
    publish(tp, &tp->run_gen, atomic_load(&tp->run_gen) + 1);
    if (tp->workers)
        for (int i = 0; i < tp->n_threads - 1; i++) pthread_join(tp->workers[i].thread, NULL);
    pthread_mutex_destroy(&tp->mutex);
    pthread_cond_destroy(&tp->wake);
    free(tp->workers);
    free(tp->shares);
    free(tp);
}

int em_threadpool_size(const em_threadpool *tp) { return tp->n_threads; }

void em_threadpool_run(em_threadpool *tp, em_task_fn fn, void *arg) {
    reset_shares(tp);
    if (tp->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    tp->fn = fn;
    tp->arg = arg;
    publish(tp, &tp->run_gen, atomic_load_explicit(&tp->run_gen, memory_order_relaxed) + 1);
    fn(arg, 0, tp->n_threads);
    em_threadpool_barrier(tp);
}
