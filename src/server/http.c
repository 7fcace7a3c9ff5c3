/*
 * http.c - libmicrohttpd glue: the body (bounded), authentication, CORS,
 * routing, JSON answers, the per-request log line, start and stop.
 *
 * libmicrohttpd runs one thread per connection, so a handler may block
 * while the engine generates; it watches the client's socket meanwhile.
 */
#include "server/internal.h"

#include "core/core.h"
#include "server/prompt.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Bytes of an oversized body read and dropped before the connection is
 * refused without reading the rest. */
#define DRAIN_MAX ((uint64_t)256 << 20)

/* True when the client is writing a body right now: a client that waits
 * for "100 Continue" is not; otherwise, within 300 ms, at least 64 KiB
 * must be waiting in the socket. */
static bool client_sending(struct MHD_Connection *c, int fd) {
    const char *expect = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Expect");
    if ((expect && !strcasecmp(expect, "100-continue")) || fd < 0) return false;
    for (int i = 0; i < 30; i++) {
        int avail = 0;
        if (ioctl(fd, FIONREAD, &avail) == 0 && avail >= (64 << 10)) return true;
        usleep(10 * 1000);
    }
    return false;
}

bool em_http_listen_addr(const char *host, int port, struct sockaddr_storage *addr, bool *ipv6) {
    memset(addr, 0, sizeof *addr);
    struct sockaddr_in *a4 = (struct sockaddr_in *)addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)addr;
    *ipv6 = false;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        return true;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *ipv6 = true;
        return true;
    }
    return false;
}

bool em_http_client_gone(int fd) {
    if (fd < 0) return false;
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLERR | POLLHUP | POLLRDHUP)) return true;
    if (p.revents & POLLIN) {
        char b;
        return recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
    }
    return false;
}

void em_http_cors(em_server *s, struct MHD_Connection *c, struct MHD_Response *r) {
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    if (!origin) return;
    for (int i = 0; i < s->p.n_cors; i++)
        if (!strcmp(origin, s->p.cors[i])) {
            MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
            MHD_add_response_header(r, "Vary", "Origin");
            return;
        }
}

static enum MHD_Result queue_text(em_server *s, struct MHD_Connection *c, em_conn *cs, int status, char *text,
                                  const char *type, const char *retry_after) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(text ? strlen(text) : 0, text ? text : (char *)"", text ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    if (retry_after) MHD_add_response_header(r, "Retry-After", retry_after);
    return em_http_queue(s, c, cs, status, r);
}

/* Tells keep-alive clients how long the server keeps their idle
 * connection (the request deadline, conns.h), so that clients which honour
 * the hint (undici, curl) drop it first instead of reusing it just as the
 * server closes it. */
static void keep_alive_hint(em_server *s, struct MHD_Response *r) {
    char hint[32];
    snprintf(hint, sizeof hint, "timeout=%d", s->p.request_timeout_s < 1 ? 1 : (int)s->p.request_timeout_s);
    MHD_add_response_header(r, "Keep-Alive", hint);
}

enum MHD_Result em_http_queue(em_server *s, struct MHD_Connection *c, em_conn *cs, int status,
                              struct MHD_Response *r) {
    em_http_cors(s, c, r);
    keep_alive_hint(s, r);
    cs->status = status;
    cs->answered = true;
    enum MHD_Result res = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return res;
}

enum MHD_Result em_http_json(em_server *s, struct MHD_Connection *c, em_conn *cs, int status, json_t *body) {
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        text = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}");
        status = 500;
    }
    return queue_text(s, c, cs, status, text, "application/json", NULL);
}

enum MHD_Result em_http_error(em_server *s, struct MHD_Connection *c, em_conn *cs, const em_api_error *err) {
    json_t *body = em_api_error_json(err);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) text = strdup("{\"error\":{\"message\":\"internal error\",\"type\":\"server_error\",\"param\":null,\"code\":null}}");
    return queue_text(s, c, cs, err->http, text, "application/json",
                      err->http == 503 || err->http == 429 ? "1" : NULL);
}

/* ------------------------------------------------------------- routes */

static bool key_ok(em_server *s, struct MHD_Connection *c) {
    if (!s->p.api_key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    /* The scheme is case-insensitive (RFC 7235). */
    if (!h || strncasecmp(h, "Bearer", 6) || (h[6] != ' ' && h[6] != '\t')) return false;
    h += 6;
    while (*h == ' ' || *h == '\t') h++;
    /* Compare every byte whatever the first difference, so the time does
     * not tell how much of a guess was right. */
    size_t a = strlen(h), b = strlen(s->p.api_key);
    unsigned diff = (unsigned)(a != b);
    for (size_t i = 0; i < a; i++) diff |= (unsigned char)h[i] ^ (unsigned char)s->p.api_key[i % (b ? b : 1)];
    return diff == 0;
}

static enum MHD_Result preflight(em_server *s, struct MHD_Connection *c, em_conn *cs) {
    struct MHD_Response *r = MHD_create_response_from_buffer(0, (char *)"", MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    for (int i = 0; origin && i < s->p.n_cors; i++)
        if (!strcmp(origin, s->p.cors[i])) {
            MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
            MHD_add_response_header(r, "Vary", "Origin");
            MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
            MHD_add_response_header(r, "Access-Control-Allow-Headers", "Authorization, Content-Type");
            MHD_add_response_header(r, "Access-Control-Max-Age", "600");
            break;
        }
    keep_alive_hint(s, r);
    cs->status = 204;
    cs->answered = true;
    enum MHD_Result res = MHD_queue_response(c, 204, r);
    MHD_destroy_response(r);
    return res;
}

static json_t *model_json(em_server *s) {
    return json_pack("{s:s, s:s, s:I, s:s}", "id", s->p.model_id, "object", "model", "created",
                     (json_int_t)time(NULL), "owned_by", "ember");
}

static enum MHD_Result route(em_server *s, struct MHD_Connection *c, em_conn *cs, const char *url,
                             const char *method) {
    em_api_error err = {0};
    bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
    if (!strcmp(method, "OPTIONS")) return preflight(s, c, cs);
    if (!strcmp(url, "/health")) {
        if (!get) goto bad_method;
        return em_http_json(s, c, cs, 200, json_pack("{s:s}", "status", "ok"));
    }
    if (!key_ok(s, c)) {
        em_api_fail(&err, 401, NULL, "Incorrect or missing API key: send it as 'Authorization: Bearer KEY'");
        return em_http_error(s, c, cs, &err);
    }
    static const struct { const char *path; em_api_kind kind; } posts[] = {
        {"/v1/chat/completions", EM_API_CHAT},
        {"/v1/completions", EM_API_COMPLETIONS},
        {"/v1/embeddings", EM_API_EMBEDDINGS},
    };
    for (size_t i = 0; i < sizeof posts / sizeof *posts; i++)
        if (!strcmp(url, posts[i].path)) {
            if (!post) goto bad_method;
            return em_gen_handle(s, c, cs, posts[i].kind);
        }
    if (!strcmp(url, "/v1/models")) {
        if (!get) goto bad_method;
        return em_http_json(s, c, cs, 200, json_pack("{s:s, s:[o]}", "object", "list", "data", model_json(s)));
    }
    if (!strncmp(url, "/v1/models/", 11)) {
        if (!get) goto bad_method;
        if (!strcmp(url + 11, s->p.model_id)) return em_http_json(s, c, cs, 200, model_json(s));
        em_api_fail(&err, 404, "model", "The model '%.100s' does not exist; this server serves '%.100s'", url + 11,
                    s->p.model_id);
        return em_http_error(s, c, cs, &err);
    }
    if (!strcmp(url, "/metrics")) {
        if (!get) goto bad_method;
        return em_metrics_handle(s, c, cs);
    }
    em_api_fail(&err, 404, NULL, "Unknown route %.8s %.80s", method, url);
    return em_http_error(s, c, cs, &err);
bad_method:
    em_api_fail(&err, 405, NULL, "%.8s is not allowed on %.80s", method, url);
    return em_http_error(s, c, cs, &err);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    em_server *s = cls;
    em_conn *cs = *con_cls;
    if (!cs) {
        cs = calloc(1, sizeof *cs);
        if (!cs) return MHD_NO;
        *con_cls = cs;
        cs->t_start = em_time_s();
        cs->fd = -1;
        snprintf(cs->method, sizeof cs->method, "%s", method);
        snprintf(cs->path, sizeof cs->path, "%s", url);
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci) cs->fd = ci->connect_fd;
        /* A body announced as too large is never stored.  It is refused at
         * once, before it is read, unless the client is busy sending it:
         * such a client writes its whole body before it reads the answer,
         * so the body is read and dropped (up to a bound) for it to see the
         * 413 rather than a reset connection. */
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > s->p.max_body) {
            cs->too_large = true;
            if (strtoull(cl, NULL, 10) > DRAIN_MAX || !client_sending(c, cs->fd)) {
                em_api_error err;
                em_api_fail(&err, 413, NULL, "the request body is larger than %zu bytes", s->p.max_body);
                em_conn_guard_request_started(s->guard, c);
                return em_http_error(s, c, cs, &err);
            }
        }
        /* The headers are in: the body's deadline starts. */
        em_conn_guard_headers_done(s->guard, c);
        return MHD_YES;
    }
    if (*upload_size) {
        cs->received += *upload_size;
        em_conn_guard_body_bytes(s->guard, c, cs->received);
        if (!cs->answered && !cs->too_large) {
            if (cs->body.n + *upload_size > s->p.max_body || !em_strbuf_append(&cs->body, upload, *upload_size)) {
                cs->too_large = true;
                em_strbuf_free(&cs->body);
            }
        }
        *upload_size = 0;
        if (cs->too_large && !cs->answered && cs->received > DRAIN_MAX) {
            em_api_error err;
            em_api_fail(&err, 413, NULL, "the request body is larger than %zu bytes", s->p.max_body);
            return em_http_error(s, c, cs, &err);
        }
        return MHD_YES;
    }
    if (cs->answered) return MHD_YES;
    /* The whole request is in: from here to the end of its answer (a
     * stream may last minutes) no deadline of the guard applies. */
    em_conn_guard_request_started(s->guard, c);
    if (cs->too_large) {
        em_api_error err;
        em_api_fail(&err, 413, NULL, "the request body is larger than %zu bytes", s->p.max_body);
        return em_http_error(s, c, cs, &err);
    }
    return route(s, c, cs, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    em_server *s = cls;
    em_conn *cs = *con_cls;
    /* The connection waits for its next request (keep-alive): the headers'
     * deadline runs from now. */
    em_conn_guard_request_done(s->guard, c);
    if (!cs) return;
    double dt = em_time_s() - cs->t_start;
    int status = cs->status ? cs->status : 499;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && status == 200) status = 499;
    em_metrics_count(s, status, dt, cs->generation);
    if (cs->generation)
        fprintf(stderr, "ember serve: %s %s %d %.1f ms prompt %d completion %d\n", cs->method, cs->path, status,
                dt * 1e3, cs->prompt_tokens, cs->completion_tokens);
    else
        fprintf(stderr, "ember serve: %s %s %d %.1f ms\n", cs->method, cs->path, status, dt * 1e3);
    em_strbuf_free(&cs->body);
    free(cs);
    *con_cls = NULL;
}

/* ---------------------------------------------------------- lifecycle */

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

em_status em_server_start(em_server **out, em_engine *engine, const em_server_params *params) {
    em_server *s = calloc(1, sizeof *s);
    if (!s) return em_error(EM_ERR_NOMEM, "server: out of memory");
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->idle, NULL);
    s->engine = engine;
    s->model = em_engine_model(engine);
    s->vocab = em_model_vocab(s->model);
    s->p = *params;
    /* Tool-call ids start at a random point, so that those of two servers
     * (or of one before and after a restart) do not repeat each other. */
    if (getrandom(&s->call_next, sizeof s->call_next, 0) != (ssize_t)sizeof s->call_next)
        s->call_next = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid() << 20;
    /* "localhost" is the loopback address; other names are not resolved
     * (the server makes no lookups). */
    const char *host = params->host ? params->host : "127.0.0.1";
    s->p.host = dup_or_null(!strcmp(host, "localhost") ? "127.0.0.1" : host);
    s->p.api_key = dup_or_null(params->api_key);
    s->p.model_id = dup_or_null(params->model_id);
    s->p.chat_template = NULL;
    for (int i = 0; i < params->n_cors; i++) s->p.cors[i] = dup_or_null(params->cors[i]);
    if (!s->p.max_body) s->p.max_body = 8u << 20;
    if (s->p.max_connections <= 0) s->p.max_connections = EM_SERVER_MAX_CONNECTIONS;
    if (!(s->p.request_timeout_s > 0)) s->p.request_timeout_s = EM_SERVER_REQUEST_TIMEOUT_S;
    em_engine_stats st;
    em_engine_get_stats(engine, &st);
    s->n_parallel = st.n_parallel;
    s->n_ctx_seq = em_engine_n_ctx_seq(engine);
    em_status pst = em_prompt_setup(s, params->chat_template);
    if (pst != EM_OK) {
        em_server_free(s);
        return pst;
    }

    struct sockaddr_storage addr;
    bool ipv6;
    if (!em_http_listen_addr(s->p.host, params->port, &addr, &ipv6)) {
        em_server_free(s);
        return em_error(EM_ERR_INVALID_ARG, "server: '%s' is not an IPv4 or IPv6 address", host);
    }
    em_conn_limits lim = {.max_connections = s->p.max_connections,
                          .request_timeout_s = s->p.request_timeout_s,
                          .body_min_rate = EM_SERVER_BODY_MIN_RATE,
                          .max_per_client = s->p.max_connections_per_client};
    em_status gst = em_conn_guard_start(&s->guard, &lim);
    if (gst != EM_OK) {
        em_server_free(s);
        return gst;
    }
    /* Besides the connections: the model, the log and the library's own. */
    em_conn_guard_fit_files(s->guard, 64u, "--max-connections");
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG | (ipv6 ? MHD_USE_IPv6 : 0);
    s->daemon = MHD_start_daemon(flags, (uint16_t)params->port, em_conn_guard_accept, s->guard, on_request, s,
                                 MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED,
                                 on_completed, s, MHD_OPTION_NOTIFY_CONNECTION, em_conn_guard_notify, s->guard,
                                 MHD_OPTION_CONNECTION_LIMIT, em_conn_guard_mhd_limit(s->guard),
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)EM_SERVER_IDLE_TIMEOUT_S, MHD_OPTION_END);
    if (!s->daemon) {
        em_server_free(s);
        return em_error(EM_ERR_IO, "server: cannot listen on %s port %d", host, params->port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : params->port;
    *out = s;
    return EM_OK;
}

int em_server_port(const em_server *s) { return s->port; }

void em_server_quiesce(em_server *s) {
    if (!s->daemon) return;
    MHD_socket fd = MHD_quiesce_daemon(s->daemon);
    if (fd != MHD_INVALID_SOCKET) close(fd);
}

bool em_server_wait_idle(em_server *s, double timeout_s) {
    double until = em_time_s() + timeout_s;
    pthread_mutex_lock(&s->mu);
    while (s->n_inflight > 0 && em_time_s() < until) {
        struct timespec ts = em_deadline_ms(50);
        pthread_cond_timedwait(&s->idle, &s->mu, &ts);
    }
    bool idle = s->n_inflight == 0;
    pthread_mutex_unlock(&s->mu);
    return idle;
}

void em_server_free(em_server *s) {
    if (!s) return;
    /* The watchdog stops first, so that nothing shuts a socket down while
     * the daemon closes them all; the table is freed after the daemon's
     * last CLOSED notification. */
    em_conn_guard_stop(s->guard);
    if (s->daemon) MHD_stop_daemon(s->daemon);
    em_conn_guard_free(s->guard);
    free((char *)s->p.host);
    free((char *)s->p.api_key);
    free((char *)s->p.model_id);
    for (int i = 0; i < s->p.n_cors; i++) free((char *)s->p.cors[i]);
    em_prompt_teardown(s);
    pthread_cond_destroy(&s->idle);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
