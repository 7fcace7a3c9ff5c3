/*
 * server.h - `ember serve`'s HTTP side: an OpenAI-compatible API over the
 * engine (src/engine), on libmicrohttpd with one thread per connection.
 *
 * A connection thread reads the body (bounded), checks the key, parses and
 * validates the request (api.c), renders and tokenizes the prompt, submits
 * it to the engine and then turns the request's events into one JSON
 * answer or a stream of server-sent events.  While it waits it watches the
 * client's socket: a client that goes away cancels its request.
 */
#ifndef EM_SERVER_H
#define EM_SERVER_H

#include "ember.h"
#include "engine/engine.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#define EM_SERVER_MAX_CORS 16
#define EM_SERVER_MAX_CONNECTIONS 256   /* default of max_connections        */
#define EM_SERVER_REQUEST_TIMEOUT_S 10.0 /* default of request_timeout_s     */
#define EM_SERVER_BODY_MIN_RATE 16384.0  /* bytes/s a body's deadline grows by */

typedef struct em_server em_server;

typedef struct em_server_params {
    const char *host;          /* address to listen on ("127.0.0.1")             */
    int port;                  /* 0: any free port (see em_server_port)           */
    const char *api_key;       /* NULL: no authentication                         */
    const char *model_id;      /* the one model name requests may use             */
    const char *cors[EM_SERVER_MAX_CORS]; /* origins allowed to call from browsers */
    int n_cors;
    size_t max_body;           /* request bodies larger than this get 413         */
    int max_connections;       /* concurrent connections (0: 256)                 */
    int max_connections_per_client; /* of those, one client address may hold
                                  (an IPv6 client: its /64; 0: no cap)            */
    double request_timeout_s;  /* seconds for a request's headers, and for its body
                                  (plus 1 s per EM_SERVER_BODY_MIN_RATE bytes);
                                  idle keep-alive waits count (0: 10)             */
    const char *chat_template; /* Jinja text, or a built-in name; NULL: the model's */
    bool embeddings;           /* the engine computes embeddings                  */
} em_server_params;

em_status em_server_start(em_server **out, em_engine *engine, const em_server_params *params);
/* The port the server listens on (useful with port 0). */
int em_server_port(const em_server *s);
/* Stops accepting connections; those already open carry on. */
void em_server_quiesce(em_server *s);
/* Waits until every generation request has been answered to its last
 * byte, or timeout_s passes; true when none is left. */
bool em_server_wait_idle(em_server *s, double timeout_s);
/* Closes every connection and frees the server (the engine is not freed). */
void em_server_free(em_server *s);
/* The socket address of host (a numeric IPv4 or IPv6 address: names are
 * not resolved) and port, for MHD_OPTION_SOCK_ADDR; *ipv6 says whether the
 * daemon needs MHD_USE_IPv6.  False when host is not such an address.
 * The server and the router listen through it. */
bool em_http_listen_addr(const char *host, int port, struct sockaddr_storage *addr, bool *ipv6);
/* True when the client on socket fd (-1: none, never gone) has closed its
 * end or the connection failed; it only peeks, so bytes the client sent
 * stay for libmicrohttpd.  The server's handlers and the router's calls
 * poll it while they wait, to cancel the work of a client that left. */
bool em_http_client_gone(int fd);

#endif
