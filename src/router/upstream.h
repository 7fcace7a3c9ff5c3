/*
 * upstream.h - one HTTP call to an OpenAI-compatible backend through
 * libcurl, driven from the calling thread (curl's multi interface, pumped
 * on demand), so that a handler can wait for the status and the first
 * event before it answers its client, and then pull the stream through
 * at the client's pace.  TLS is verified (curl's defaults, set
 * explicitly); only http and https are allowed; redirects are not
 * followed.
 */
#ifndef EM_ROUTER_UPSTREAM_H
#define EM_ROUTER_UPSTREAM_H

#include "engine/text.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>

/* How an attempt ended, for the policies and the ledger. */
typedef enum em_up_outcome {
    EM_UP_OK,
    EM_UP_CONNECT,       /* no connection (refused, DNS, TLS)                 */
    EM_UP_TIMEOUT,       /* connect or total timeout                          */
    EM_UP_HTTP_5XX,      /* the upstream failed                               */
    EM_UP_HTTP_429,      /* rate limited                                      */
    EM_UP_CONTEXT,       /* the prompt is too long for that model             */
    EM_UP_BAD_RESPONSE,  /* not the JSON or events an OpenAI API sends        */
    EM_UP_BROKEN_STREAM, /* the connection ended before the answer did        */
    EM_UP_CLIENT_ERROR,  /* another 4xx: the request itself is at fault       */
    EM_UP_UNAVAILABLE,   /* no replica is healthy and free                    */
    EM_UP_CLIENT_GONE,   /* our own client left                               */
} em_up_outcome;

const char *em_up_outcome_name(em_up_outcome o);
/* Outcomes after which a route may try another backend (or a retry). */
bool em_up_retryable(em_up_outcome o);
/* The outcome of a finished HTTP answer: status and body. 400, 413 and
 * 422 whose text speaks of the context length, however worded, are
 * EM_UP_CONTEXT. */
em_up_outcome em_up_classify(long status, const char *body, size_t len);
/* The HTTP status and error code a client gets for an outcome. */
int em_up_client_status(em_up_outcome o, const char **code);

typedef struct em_xfer {
    CURLM *multi;
    CURL *easy;
    struct curl_slist *headers;
    em_strbuf in;          /* bytes received; in.s[off..in.n) not yet consumed */
    size_t off;
    size_t max_in;         /* a larger unconsumed answer is a bad response     */
    bool overflow;
    bool headers_done;     /* the final header block has arrived               */
    bool done;
    CURLcode result;       /* when done                                        */
    long status;           /* HTTP status once headers_done                    */
    const char *capture;   /* a response header to keep (its name), or NULL    */
    char captured[64];     /* its value, trimmed; "" when absent               */
    char errbuf[CURL_ERROR_SIZE];
    char origin[160];      /* scheme://host:port of the URL, for the pool      */
} em_xfer;

typedef struct em_xfer_params {
    const char *url;       /* full URL                                         */
    const char *api_key;   /* Bearer token, or NULL                            */
    const char *body;      /* POST body (JSON), or NULL for GET                */
    double timeout_s, connect_timeout_s;
    const char *capture_header; /* a response header to keep in x->captured */
} em_xfer_params;

/* Starts the call (nothing is sent until the first pump). */
bool em_xfer_start(em_xfer *x, const em_xfer_params *p);
/* Moves the transfer on, waiting at most ms for something to happen. */
void em_xfer_pump(em_xfer *x, int ms);
/* Unconsumed bytes. */
static inline size_t em_xfer_avail(const em_xfer *x) { return x->in.n - x->off; }
static inline const char *em_xfer_data(const em_xfer *x) { return x->in.p ? x->in.p + x->off : ""; }
void em_xfer_consume(em_xfer *x, size_t n);
/* The outcome of a transfer that is done (curl's error, or the status). */
em_up_outcome em_xfer_outcome(const em_xfer *x);
void em_xfer_free(em_xfer *x);

/* Server-sent events as a streaming backend sends them.  A line ends at
 * "\r\n", "\n" or "\r" (all three are SSE), and an event ends at the
 * empty line after it.  em_sse_event_len: the length of the first whole
 * event in buf[0..n), through its empty line (at least 1), or 0 when no
 * event is complete yet.  em_sse_event_data: the value of the event's last
 * `data:` line, without the spaces after the colon (*data points into ev);
 * false for an event without one (comments, keep-alives). */
size_t em_sse_event_len(const char *buf, size_t n);
bool em_sse_event_data(const char *ev, size_t len, const char **data, size_t *dlen);

/* Once per process, before any thread starts. */
bool em_upstream_global_init(void);

#endif
