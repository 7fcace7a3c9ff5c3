/*
 * conns.c - the connection guard (conns.h): request deadlines and slot
 * reuse over libmicrohttpd's thread-per-connection mode.
 *
 * What it relies on in libmicrohttpd 0.9.75 (src/microhttpd/daemon.c; see
 * the notes in docs/ARCHITECTURE.md's server part):
 *
 *   - The accept policy, the STARTED notification and the CLOSED
 *     notification all run on the daemon's own polling thread: the first
 *     two where it accepts a connection (new_connection_prepare_ and
 *     new_connection_process_), the last in MHD_cleanup_connections.
 *     STARTED runs before the connection's thread is created, so that
 *     thread reads the socket context (link_of) only after it was set.
 *   - The library checks its own MHD_OPTION_CONNECTION_LIMIT before it
 *     calls the accept policy, and stops polling the listening socket
 *     while it is at that limit; so its limit must lie above ours for the
 *     policy to be asked at all (em_conn_guard_mhd_limit).
 *   - A connection's own thread never closes the socket: when it ends it
 *     only shuts the socket down for writing and wakes the daemon, whose
 *     MHD_cleanup_connections calls the CLOSED notification first and
 *     close() after it returns.
 *
 * Why shutdown() here can never hit a reused descriptor: the guard calls
 * shutdown(fd) only while it holds g->mu and only on a link still in its
 * table.  A link leaves the table in the CLOSED notification, under the
 * same mutex, and libmicrohttpd calls close(fd) only after that
 * notification has returned.  So while the guard holds the mutex and sees
 * the link, the descriptor is still open and still this connection's: the
 * kernel cannot have handed its number to another socket.
 */
#include "server/conns.h"

#include "core/core.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>

/* How often the watchdog looks at the deadlines, milliseconds: a deadline
 * is enforced at most this late. */
#define WATCH_TICK_MS 100

typedef enum link_phase {
    PHASE_WAITING, /* no request yet: just opened, or idle after an answer */
    PHASE_BODY,    /* the headers are in, the body may still be arriving   */
    PHASE_BUSY,    /* the request is handled or its answer is being sent   */
} link_phase;

/* One open connection.  Every field is guarded by the guard's mutex. */
typedef struct em_conn_link {
    struct em_conn_link *prev, *next;
    int fd;            /* the connection's socket (-1: unknown, never shut) */
    link_phase phase;
    double t_phase;    /* when the phase began, em_time_s()                 */
    uint64_t received; /* body bytes received in PHASE_BODY                 */
    bool closing;      /* the guard shut it down; the library will close it */
} em_conn_link;

struct em_conn_guard {
    em_conn_limits lim;
    pthread_mutex_t mu;
    pthread_cond_t wake;   /* signalled to stop the watchdog              */
    pthread_t watchdog;
    bool started, stop;
    em_conn_link table;    /* sentinel of the circular list, oldest first */
    int n_open;            /* links in the table                          */
    int n_closing;         /* of which the guard has shut down            */
    uint64_t closed[EM_CONN_N_REASONS];
};

const char *em_conn_reason_name(em_conn_reason r) {
    static const char *names[EM_CONN_N_REASONS] = {"header_timeout", "body_timeout", "evicted", "refused", "other"};
    return (unsigned)r < EM_CONN_N_REASONS ? names[r] : "other";
}

/* Shuts a connection down (the mutex is held): its libmicrohttpd thread
 * reads the end of stream and closes the connection. */
static void shut(em_conn_guard *g, em_conn_link *l, em_conn_reason why) {
    if (l->closing) return;
    l->closing = true;
    g->n_closing++;
    g->closed[why]++;
    if (l->fd >= 0) shutdown(l->fd, SHUT_RDWR);
}

static void *watch_main(void *arg) {
    em_conn_guard *g = arg;
    pthread_mutex_lock(&g->mu);
    while (!g->stop) {
        struct timespec ts = em_deadline_ms(WATCH_TICK_MS);
        pthread_cond_timedwait(&g->wake, &g->mu, &ts);
        double now = em_time_s(), limit = g->lim.request_timeout_s;
        for (em_conn_link *l = g->table.next; l != &g->table; l = l->next) {
            if (l->closing) continue;
            if (l->phase == PHASE_WAITING && now - l->t_phase > limit) shut(g, l, EM_CONN_HEADER_TIMEOUT);
            else if (l->phase == PHASE_BODY && now - l->t_phase > limit + (double)l->received / g->lim.body_min_rate)
                shut(g, l, EM_CONN_BODY_TIMEOUT);
        }
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

em_status em_conn_guard_start(em_conn_guard **out, const em_conn_limits *limits) {
    *out = NULL;
    if (limits->max_connections <= 0 || !(limits->request_timeout_s > 0) || !(limits->body_min_rate > 0))
        return em_error(EM_ERR_INVALID_ARG, "server: connection limits must be positive");
    em_conn_guard *g = calloc(1, sizeof *g);
    if (!g) return em_error(EM_ERR_NOMEM, "server: out of memory");
    g->lim = *limits;
    g->table.next = g->table.prev = &g->table;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->wake, NULL);
    if (pthread_create(&g->watchdog, NULL, watch_main, g) != 0) {
        em_conn_guard_free(g);
        return em_error(EM_ERR_INTERNAL, "server: cannot start the connection watchdog");
    }
    g->started = true;
    *out = g;
    return EM_OK;
}

void em_conn_guard_stop(em_conn_guard *g) {
    if (!g || !g->started) return;
    pthread_mutex_lock(&g->mu);
    g->stop = true;
    pthread_cond_signal(&g->wake);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->watchdog, NULL);
    g->started = false;
}

void em_conn_guard_free(em_conn_guard *g) {
    if (!g) return;
    em_conn_guard_stop(g);
    /* The daemon has been stopped: every CLOSED notification has run, so
     * the table is empty; free what a failed start may have left. */
    for (em_conn_link *l = g->table.next, *n; l != &g->table; l = n) {
        n = l->next;
        free(l);
    }
    pthread_cond_destroy(&g->wake);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

unsigned em_conn_guard_mhd_limit(const em_conn_guard *g) {
    /* Room for the connections shut down but not yet closed by the
     * library; when that room is used up too, the library stops accepting
     * and new clients wait in the listen backlog until it has closed some. */
    return (unsigned)g->lim.max_connections + (unsigned)g->lim.max_connections / 4u + 16u;
}

void em_conn_guard_fit_files(const em_conn_guard *g, unsigned others, const char *what) {
    rlim_t need = (rlim_t)em_conn_guard_mhd_limit(g) + (rlim_t)others;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need) return;
    rlim_t want = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need ? rl.rlim_max : need;
    if (want > rl.rlim_cur) {
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < need)
        fprintf(stderr,
                "ember serve: open files are limited to %llu, and %d connections need about %llu: raise the limit "
                "(ulimit -n) or lower %s\n",
                (unsigned long long)rl.rlim_cur, g->lim.max_connections, (unsigned long long)need, what);
}

enum MHD_Result em_conn_guard_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen) {
    (void)addr;
    (void)addrlen;
    em_conn_guard *g = cls;
    enum MHD_Result ok = MHD_YES;
    pthread_mutex_lock(&g->mu);
    if (g->n_open - g->n_closing >= g->lim.max_connections) {
        /* The connection that has waited longest for a request: the
         * earliest phase start among those waiting. */
        em_conn_link *victim = NULL;
        for (em_conn_link *l = g->table.next; l != &g->table; l = l->next)
            if (!l->closing && l->phase == PHASE_WAITING && (!victim || l->t_phase < victim->t_phase)) victim = l;
        if (victim) shut(g, victim, EM_CONN_EVICTED);
        else {
            g->closed[EM_CONN_REFUSED]++;
            ok = MHD_NO;
        }
    }
    pthread_mutex_unlock(&g->mu);
    return ok;
}

void em_conn_guard_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    em_conn_guard *g = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        em_conn_link *l = calloc(1, sizeof *l);
        /* Without memory the connection goes untracked: served, but
         * neither timed nor counted. */
        if (!l) return;
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        l->fd = ci ? ci->connect_fd : -1;
        l->phase = PHASE_WAITING;
        l->t_phase = em_time_s();
        pthread_mutex_lock(&g->mu);
        l->prev = g->table.prev;
        l->next = &g->table;
        l->prev->next = l;
        g->table.prev = l;
        g->n_open++;
        pthread_mutex_unlock(&g->mu);
        *socket_context = l;
        return;
    }
    em_conn_link *l = *socket_context;
    if (code != MHD_CONNECTION_NOTIFY_CLOSED || !l) return;
    pthread_mutex_lock(&g->mu);
    l->prev->next = l->next;
    l->next->prev = l->prev;
    g->n_open--;
    if (l->closing) g->n_closing--;
    else g->closed[EM_CONN_OTHER]++;
    pthread_mutex_unlock(&g->mu);
    free(l);
    *socket_context = NULL;
}

static em_conn_link *link_of(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void set_phase(em_conn_guard *g, struct MHD_Connection *c, link_phase phase) {
    em_conn_link *l = link_of(c);
    if (!l) return;
    pthread_mutex_lock(&g->mu);
    l->phase = phase;
    l->t_phase = em_time_s();
    l->received = 0;
    pthread_mutex_unlock(&g->mu);
}

void em_conn_guard_headers_done(em_conn_guard *g, struct MHD_Connection *c) { set_phase(g, c, PHASE_BODY); }
void em_conn_guard_request_started(em_conn_guard *g, struct MHD_Connection *c) { set_phase(g, c, PHASE_BUSY); }
void em_conn_guard_request_done(em_conn_guard *g, struct MHD_Connection *c) { set_phase(g, c, PHASE_WAITING); }

void em_conn_guard_body_bytes(em_conn_guard *g, struct MHD_Connection *c, uint64_t received) {
    em_conn_link *l = link_of(c);
    if (!l) return;
    pthread_mutex_lock(&g->mu);
    if (l->phase == PHASE_BODY) l->received = received;
    pthread_mutex_unlock(&g->mu);
}

void em_conn_guard_stats(em_conn_guard *g, em_conn_stats *out) {
    pthread_mutex_lock(&g->mu);
    out->open = g->n_open;
    for (int i = 0; i < EM_CONN_N_REASONS; i++) out->closed[i] = g->closed[i];
    pthread_mutex_unlock(&g->mu);
}
