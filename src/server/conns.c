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
 * The clients of the table (fairness among addresses, conns.h): every
 * link points at its client's entry, which counts the client's links and
 * the slots they hold.  The entries come from a pool allocated at start,
 * one per connection the library can hold at once (em_conn_guard_mhd_limit,
 * so at worst every link has a client of its own), found through a hash
 * of the address with a random seed; an entry goes back to the pool with
 * the client's last link.  So the table's memory does not grow with the
 * number of addresses that have ever connected, however many a flood
 * uses.  The accept policy sees the client's address (its argument) and
 * decides; the STARTED notification that follows it on the same thread,
 * with no other accept between them, reads the address again from the
 * connection (MHD_CONNECTION_INFO_CLIENT_ADDRESS) and counts the link.
 *
 * Why an IPv6 client is its /64 prefix: a host on an IPv6 network
 * usually holds a whole /64 (SLAAC, privacy addresses), and one that
 * wants to can send from any of its 2^64 addresses, so a share per full
 * address would bound nothing.  Hosts behind one /64 then share a share,
 * as hosts behind one IPv4 NAT do.
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

#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

/* How often the watchdog looks at the deadlines, milliseconds: a deadline
 * is enforced at most this late. */
#define WATCH_TICK_MS 100

typedef enum link_phase {
    PHASE_WAITING, /* no request yet: just opened, or idle after an answer */
    PHASE_BODY,    /* the headers are in, the body may still be arriving   */
    PHASE_BUSY,    /* the request is handled or its answer is being sent   */
} link_phase;

/* A client with connections in the table.  Every field is guarded by the
 * guard's mutex. */
typedef struct em_conn_client {
    em_conn_client_key key;
    int n_links; /* its links in the table, those shut down included        */
    int n_held;  /* of which hold a slot: not shut down                     */
    int next;    /* the next entry of its hash chain, or of the free list;
                    -1: none                                                 */
} em_conn_client;

/* One open connection.  Every field is guarded by the guard's mutex. */
typedef struct em_conn_link {
    struct em_conn_link *prev, *next;
    em_conn_client *client; /* NULL: no client known (untracked for shares) */
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
    em_conn_client *clients; /* the pool: n_pool entries                  */
    int n_pool;
    int *chains;           /* n_chains (a power of two) heads, -1: empty  */
    int n_chains;
    int free_client;       /* head of the pool's free list, -1: none      */
    int n_clients;         /* entries in use                              */
    uint64_t seed;         /* of the address hash                         */
};

const char *em_conn_reason_name(em_conn_reason r) {
    static const char *names[EM_CONN_N_REASONS] = {"header_timeout", "body_timeout", "evicted",
                                                   "refused",        "per_client",   "other"};
    return (unsigned)r < EM_CONN_N_REASONS ? names[r] : "other";
}

/* Shuts a connection down (the mutex is held): its libmicrohttpd thread
 * reads the end of stream and closes the connection. */
static void shut(em_conn_guard *g, em_conn_link *l, em_conn_reason why) {
    if (l->closing) return;
    l->closing = true;
    g->n_closing++;
    if (l->client) l->client->n_held--;
    g->closed[why]++;
    if (l->fd >= 0) shutdown(l->fd, SHUT_RDWR);
}

bool em_conn_client_key_of(const struct sockaddr *addr, em_conn_client_key *out) {
    static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(out, 0, sizeof *out);
    if (!addr) return false;
    if (addr->sa_family == AF_INET) {
        const struct sockaddr_in *a4 = (const struct sockaddr_in *)addr;
        memcpy(out->b, v4_mapped, sizeof v4_mapped);
        memcpy(out->b + 12, &a4->sin_addr, 4);
        return true;
    }
    if (addr->sa_family == AF_INET6) {
        const uint8_t *b = ((const struct sockaddr_in6 *)addr)->sin6_addr.s6_addr;
        /* An IPv4-mapped address is the IPv4 client; any other IPv6 one
         * is its /64. */
        memcpy(out->b, b, memcmp(b, v4_mapped, sizeof v4_mapped) ? 8 : 16);
        return true;
    }
    return false;
}

static int chain_of(const em_conn_guard *g, const em_conn_client_key *k) {
    uint64_t lo, hi;
    memcpy(&lo, k->b, 8);
    memcpy(&hi, k->b + 8, 8);
    uint64_t h = (lo ^ g->seed) * 0x9e3779b97f4a7c15u;
    h = (h ^ (h >> 31) ^ hi) * 0xbf58476d1ce4e5b9u;
    h ^= h >> 29;
    return (int)(h & (uint64_t)(g->n_chains - 1));
}

/* The entry of client k, or NULL when it has no link in the table (the
 * mutex is held). */
static em_conn_client *client_find(em_conn_guard *g, const em_conn_client_key *k) {
    for (int i = g->chains[chain_of(g, k)]; i >= 0; i = g->clients[i].next)
        if (!memcmp(g->clients[i].key.b, k->b, sizeof k->b)) return &g->clients[i];
    return NULL;
}

/* The entry of client k, taken from the pool when it has none; NULL when
 * the pool is used up, which the library's connection limit rules out
 * (the mutex is held). */
static em_conn_client *client_get(em_conn_guard *g, const em_conn_client_key *k) {
    em_conn_client *c = client_find(g, k);
    if (c || g->free_client < 0) return c;
    int i = g->free_client, chain = chain_of(g, k);
    c = &g->clients[i];
    g->free_client = c->next;
    *c = (em_conn_client){.key = *k, .next = g->chains[chain]};
    g->chains[chain] = i;
    g->n_clients++;
    return c;
}

/* Returns a client without links to the pool (the mutex is held). */
static void client_put(em_conn_guard *g, em_conn_client *c) {
    int i = (int)(c - g->clients);
    for (int *at = &g->chains[chain_of(g, &c->key)]; *at >= 0; at = &g->clients[*at].next)
        if (*at == i) {
            *at = c->next;
            break;
        }
    c->next = g->free_client;
    g->free_client = i;
    g->n_clients--;
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
    if (g->lim.max_per_client < 0) g->lim.max_per_client = 0;
    g->table.next = g->table.prev = &g->table;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->wake, NULL);
    /* A client entry for every connection the library may hold, and at
     * least as many chains, so that a chain holds about one entry. */
    g->n_pool = (int)em_conn_guard_mhd_limit(g);
    for (g->n_chains = 1; g->n_chains < g->n_pool; g->n_chains *= 2) {}
    g->clients = calloc((size_t)g->n_pool, sizeof *g->clients);
    g->chains = malloc((size_t)g->n_chains * sizeof *g->chains);
    if (!g->clients || !g->chains) {
        em_conn_guard_free(g);
        return em_error(EM_ERR_NOMEM, "server: out of memory");
    }
    for (int i = 0; i < g->n_chains; i++) g->chains[i] = -1;
    for (int i = 0; i < g->n_pool; i++) g->clients[i].next = i + 1 < g->n_pool ? i + 1 : -1;
    g->free_client = 0;
    /* The hash's seed, so that nobody can pick addresses that share a
     * chain; without the random source the chains are merely longer. */
    if (getrandom(&g->seed, sizeof g->seed, GRND_NONBLOCK) != (ssize_t)sizeof g->seed)
        g->seed = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15u ^ (uint64_t)(uintptr_t)g;
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
    free(g->clients);
    free(g->chains);
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

/* The waiting connection to shut down so that a new one of client `own`
 * (NULL: none known), which holds `own_held` slots, gets its slot in a
 * full table: one of the client that holds the most slots among those
 * with a waiting connection, the new connection's own client first among
 * equals, and the one that has waited longest among that client's.  NULL
 * when none waits; *fair says whether taking the slot is fair: the victim
 * is the new connection's own, or its client holds more slots than the
 * new connection's, which then holds no more than the victim's keeps
 * (the mutex is held). */
static em_conn_link *fair_victim(em_conn_guard *g, const em_conn_client *own, int own_held, bool *fair) {
    em_conn_link *victim = NULL;
    int v_held = 0;
    bool v_own = false;
    for (em_conn_link *l = g->table.next; l != &g->table; l = l->next) {
        if (l->closing || l->phase != PHASE_WAITING) continue;
        /* A link without a client counts as a client of one slot. */
        int held = l->client ? l->client->n_held : 1;
        bool is_own = own && l->client == own;
        if (!victim || held > v_held || (held == v_held && is_own && !v_own) ||
            (held == v_held && is_own == v_own && l->t_phase < victim->t_phase)) {
            victim = l;
            v_held = held;
            v_own = is_own;
        }
    }
    *fair = victim && (v_own || v_held > own_held);
    return victim;
}

/* The oldest waiting connection of client c (the mutex is held). */
static em_conn_link *own_victim(em_conn_guard *g, const em_conn_client *c) {
    em_conn_link *victim = NULL;
    for (em_conn_link *l = g->table.next; l != &g->table; l = l->next)
        if (l->client == c && !l->closing && l->phase == PHASE_WAITING && (!victim || l->t_phase < victim->t_phase))
            victim = l;
    return victim;
}

enum MHD_Result em_conn_guard_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen) {
    (void)addrlen;
    em_conn_guard *g = cls;
    em_conn_client_key key;
    bool known = em_conn_client_key_of(addr, &key);
    enum MHD_Result ok = MHD_YES;
    pthread_mutex_lock(&g->mu);
    em_conn_client *own = known ? client_find(g, &key) : NULL;
    int own_held = own ? own->n_held : 0;
    if (g->lim.max_per_client > 0 && own_held >= g->lim.max_per_client) {
        /* Over its cap the client may only trade one of its own slots. */
        em_conn_link *victim = own_victim(g, own);
        if (victim) shut(g, victim, EM_CONN_EVICTED);
        else {
            g->closed[EM_CONN_PER_CLIENT]++;
            ok = MHD_NO;
        }
    } else if (g->n_open - g->n_closing >= g->lim.max_connections) {
        bool fair;
        em_conn_link *victim = fair_victim(g, own, own_held, &fair);
        if (victim && fair) shut(g, victim, EM_CONN_EVICTED);
        else {
            /* Every slot has a request in progress (refused), or the
             * waiting ones belong to clients that hold no more slots than
             * this one's (its share). */
            g->closed[victim ? EM_CONN_PER_CLIENT : EM_CONN_REFUSED]++;
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
        const union MHD_ConnectionInfo *ai = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        em_conn_client_key key;
        bool known = ai && em_conn_client_key_of(ai->client_addr, &key);
        pthread_mutex_lock(&g->mu);
        if (known && (l->client = client_get(g, &key)) != NULL) {
            l->client->n_links++;
            l->client->n_held++;
        }
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
    if (l->client) {
        if (!l->closing) l->client->n_held--;
        if (--l->client->n_links == 0) client_put(g, l->client);
    }
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
    out->clients = g->n_clients;
    for (int i = 0; i < EM_CONN_N_REASONS; i++) out->closed[i] = g->closed[i];
    pthread_mutex_unlock(&g->mu);
}
