/*
 * internal.h - what the server's files share: the server object, the
 * per-connection state, and the calls between http.c, gen.c and
 * metrics.c.
 */
#ifndef EM_SERVER_INTERNAL_H
#define EM_SERVER_INTERNAL_H

#include "engine/metrics.h"
#include "engine/text.h"
#include "server/api.h"
#include "server/conns.h"
#include "server/errors.h"
#include "server/server.h"
#include "chat/chat.h"
#include "sample/grammar.h"

#include <microhttpd.h>
#include <pthread.h>

#define EM_STATUS_SLOTS 16 /* distinct HTTP statuses counted for /metrics */
/* libmicrohttpd closes a connection idle this long (seconds), also one
 * whose stream has sent nothing: streams send a comment line every
 * EM_SERVER_KEEPALIVE_S while they wait (queued, or a long prompt).  A
 * connection waiting for a request is closed sooner, by the connection
 * guard's request deadline (conns.h). */
#define EM_SERVER_IDLE_TIMEOUT_S 30
#define EM_SERVER_KEEPALIVE_S 5.0

struct em_server {
    struct MHD_Daemon *daemon;
    em_conn_guard *guard;       /* request deadlines and slot reuse (conns.h)    */
    em_engine *engine;
    const em_model *model;
    const em_vocab *vocab;
    em_server_params p;         /* strings owned by the server (copies)          */
    char *template_text;        /* the chat template in use (Jinja source), owned */
    em_chat_template *tmpl;     /* template_text, parsed                          */
    em_token_trie *trie;        /* the vocabulary as a trie, for grammar masks     */
    int port;
    int32_t n_ctx_seq;          /* positions one request may use                 */
    int32_t n_parallel;

    pthread_mutex_t mu;         /* guards the counters below                     */
    int status_code[EM_STATUS_SLOTS];     /* HTTP statuses seen                  */
    uint64_t status_count[EM_STATUS_SLOTS]; /* requests answered with each       */
    em_histogram duration;      /* arrival to the answer's last byte, seconds    */
    uint64_t id_counter;        /* for response ids                              */
    uint64_t call_next;         /* the next tool-call id, below 62^9 (gen.c)     */
    int32_t n_inflight;         /* generation requests not yet fully answered    */
    pthread_cond_t idle;        /* signalled when n_inflight drops               */
};

/* One HTTP request, from its first header to the end of its answer. */
typedef struct em_conn {
    em_strbuf body;          /* the request body, at most max_body bytes */
    bool too_large;
    uint64_t received;       /* body bytes read, stored or dropped       */
    bool answered;           /* a response was queued                    */
    double t_start;
    int status;              /* HTTP status of the answer                */
    char method[8];
    char path[96];
    int fd;                  /* the client's socket, to notice it leave  */
    int32_t prompt_tokens, completion_tokens; /* for the log line        */
    bool generation;         /* a completion/chat/embedding request      */
} em_conn;

/* Queues a JSON answer (takes the reference to body). */
enum MHD_Result em_http_json(em_server *s, struct MHD_Connection *c, em_conn *cs, int status, json_t *body);
/* Queues an error answer in OpenAI's shape. */
enum MHD_Result em_http_error(em_server *s, struct MHD_Connection *c, em_conn *cs, const em_api_error *err);
/* Queues a built response with the CORS headers and records the status
 * for the access log; the response is released either way. */
enum MHD_Result em_http_queue(em_server *s, struct MHD_Connection *c, em_conn *cs, int status,
                              struct MHD_Response *r);
/* Adds the CORS headers a response needs for this request's origin. */
void em_http_cors(em_server *s, struct MHD_Connection *c, struct MHD_Response *r);

/* POST /v1/completions, /v1/chat/completions, /v1/embeddings. */
enum MHD_Result em_gen_handle(em_server *s, struct MHD_Connection *c, em_conn *cs, em_api_kind kind);

/* GET /metrics: the Prometheus text. */
enum MHD_Result em_metrics_handle(em_server *s, struct MHD_Connection *c, em_conn *cs);
/* Counts an answered request (http.c calls it once per request). */
void em_metrics_count(em_server *s, int status, double seconds, bool generation);

#endif
