/*
 * conns.h - the connection guard: a table of a libmicrohttpd daemon's
 * open connections, so that slow or idle clients cannot hold the server.
 *
 * libmicrohttpd (0.9.75) closes a connection only when it has been silent
 * for the whole connection timeout, so a client that sends one header
 * byte every few seconds, or many idle keep-alive connections, could take
 * every slot of the connection limit for as long as it liked.  The guard
 * adds what nginx and HAProxy have:
 *
 *   - a request deadline: a connection waiting for a request (just
 *     opened, or idle after its previous answer) must deliver the
 *     request's headers within request_timeout_s, and then its body
 *     within request_timeout_s plus one second per body_min_rate bytes
 *     received.  A request in progress (its headers and body are in, the
 *     handler runs or a stream is being sent) is never timed out here.
 *   - slot reuse: when max_connections are open, a new connection takes
 *     the slot of a connection waiting for a request (idle keep-alive, or
 *     headers still arriving), as nginx reuses idle keep-alive
 *     connections; when every open connection has a request in progress
 *     the new one is closed at once.
 *   - fairness among clients: the waiting connection that gives up its
 *     slot belongs to the client that holds the most slots (the one that
 *     has waited longest among that client's), so one client that floods
 *     the table with new connections pushes out its own, not the idle
 *     keep-alive connections of others.  A new connection whose client
 *     already holds as many slots as every client with a waiting
 *     connection is closed at once rather than take the slot of a client
 *     that holds no more than its own, which would widen the gap.  Optionally (max_per_client) a client may hold at most so
 *     many slots, as nginx's limit_conn: beyond it a new connection takes
 *     the slot of one of the client's own waiting connections, or is
 *     closed at once.
 *
 * A client is an address: an IPv4 address, or the /64 prefix of an IPv6
 * address (conns.c says why); an IPv4-mapped IPv6 address (a dual-stack
 * listener's view of an IPv4 client) is the IPv4 address.
 *
 * A watchdog thread enforces the deadlines.  A connection is closed by
 * shutting its socket down, which libmicrohttpd's own thread for the
 * connection sees as the client's end of stream; it then closes the
 * connection itself (conns.c explains why the socket can never be one
 * reused by another connection).
 *
 * The daemon is started with em_conn_guard_accept as its accept policy
 * (MHD_OPTION_ACCEPT_POLICY is a start argument), em_conn_guard_notify as
 * MHD_OPTION_NOTIFY_CONNECTION, and em_conn_guard_mhd_limit as
 * MHD_OPTION_CONNECTION_LIMIT; the request handler reports the phases of
 * each request.
 */
#ifndef EM_SERVER_CONNS_H
#define EM_SERVER_CONNS_H

#include "ember.h"

#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* Why the guard closed (or refused) a connection: the labels of
 * ember_connections_closed_total. */
typedef enum em_conn_reason {
    EM_CONN_HEADER_TIMEOUT, /* its request's headers missed the deadline      */
    EM_CONN_BODY_TIMEOUT,   /* its request's body missed the deadline         */
    EM_CONN_EVICTED,        /* the table was full and it waited longest       */
    EM_CONN_REFUSED,        /* a new connection while every slot had a request */
    EM_CONN_PER_CLIENT,     /* a new connection beyond its client's share      */
    EM_CONN_OTHER,          /* closed by the client or by the HTTP library    */
    EM_CONN_N_REASONS
} em_conn_reason;

typedef struct em_conn_limits {
    int max_connections;      /* connections open at once                        */
    double request_timeout_s; /* headers, and the body's base allowance, seconds */
    double body_min_rate;     /* bytes per second a body's allowance grows by    */
    int max_per_client;       /* slots one client may hold (0: no cap)           */
} em_conn_limits;

/* A client's identity in the table: 16 bytes of an IPv6 address, IPv4
 * addresses in their IPv4-mapped form (::ffff:a.b.c.d), IPv6 ones cut to
 * their /64 prefix (the rest zero). */
typedef struct em_conn_client_key {
    uint8_t b[16];
} em_conn_client_key;

/* The client key of a socket address; false for a family other than
 * AF_INET and AF_INET6 (such a connection is no client's: it is never
 * capped, and counts as a client of one slot). */
bool em_conn_client_key_of(const struct sockaddr *addr, em_conn_client_key *out);

typedef struct em_conn_stats {
    int open;                               /* connections in the table now  */
    int clients;                            /* distinct clients among them   */
    uint64_t closed[EM_CONN_N_REASONS];     /* connections closed, by reason */
} em_conn_stats;

typedef struct em_conn_guard em_conn_guard;

/* Starts the watchdog thread. */
em_status em_conn_guard_start(em_conn_guard **out, const em_conn_limits *limits);
/* Stops the watchdog; call it before MHD_stop_daemon, free after it. */
void em_conn_guard_stop(em_conn_guard *g);
void em_conn_guard_free(em_conn_guard *g);
/* The MHD_OPTION_CONNECTION_LIMIT to give the daemon: above
 * max_connections, because libmicrohttpd checks its own limit before it
 * asks the accept policy, and a connection the guard shut down keeps its
 * place in the library's count until the library has closed it. */
unsigned em_conn_guard_mhd_limit(const em_conn_guard *g);

/* Raises the process's soft limit on open files toward what a full table
 * needs: the library's limit (em_conn_guard_mhd_limit) plus `others`, the
 * caller's other descriptors at most (upstream connections, files).
 * Systems often start a process with a soft limit of 1024; the library
 * would then stop accepting (EMFILE) before the guard's table is full, and
 * new clients would wait in the listen backlog instead of taking an idle
 * connection's slot.  Says on stderr when the hard limit is too low
 * (`what` names the setting to lower); never fails. */
void em_conn_guard_fit_files(const em_conn_guard *g, unsigned others, const char *what);

/* MHD_OPTION_ACCEPT_POLICY (cls: the guard). */
enum MHD_Result em_conn_guard_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen);
/* MHD_OPTION_NOTIFY_CONNECTION (cls: the guard). */
void em_conn_guard_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code);

/* The phases of a request, reported by the handler's thread. */
void em_conn_guard_headers_done(em_conn_guard *g, struct MHD_Connection *c); /* the body may follow  */
void em_conn_guard_body_bytes(em_conn_guard *g, struct MHD_Connection *c, uint64_t received);
void em_conn_guard_request_started(em_conn_guard *g, struct MHD_Connection *c); /* no deadline now */
void em_conn_guard_request_done(em_conn_guard *g, struct MHD_Connection *c); /* waiting again     */

void em_conn_guard_stats(em_conn_guard *g, em_conn_stats *out);
/* The label of a reason in /metrics. */
const char *em_conn_reason_name(em_conn_reason r);

#endif
