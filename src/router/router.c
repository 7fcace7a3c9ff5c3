/*
 * router.c - the router's HTTP front (libmicrohttpd, one thread per
 * connection), its backends and replicas, and the policies that send a
 * request through them.
 *
 * Local backends run in this process: each is a model, an engine and an
 * `ember serve` HTTP server (src/server) listening on a loopback port with
 * a random key, which the router calls like any remote backend.  One code
 * path then serves local and remote backends alike (streaming, errors,
 * logprobs for the cascade); the price is one loopback hop per local
 * request.
 *
 * A request: authenticate the key, resolve the route (the request's
 * `model` names a route or a backend), reserve the route's maximum cost
 * against the key's budget, run the policy, answer (a JSON body, or the
 * upstream's server-sent events pulled through at the client's pace), and
 * settle the ledger with what every attempt cost.
 */
#include "router/router.h"

#include "core/core.h"
#include "engine/engine.h"
#include "engine/text.h"
#include "router/ledger.h"
#include "router/policy.h"
#include "router/upstream.h"
#include "server/conns.h"
#include "server/errors.h"
#include "server/server.h"

#include <math.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RT_MAX_BODY (8u << 20)  /* request bodies, as ember serve               */
#define RT_MAX_ATTEMPTS 24      /* attempts one request may make (all retries)  */

typedef struct rt_replica {
    char *url;              /* base URL without a trailing '/'                  */
    int outstanding;        /* requests in flight                               */
    bool healthy;           /* the last health check passed                     */
    double cooldown_until;  /* em_time_s(); a failed request rests it till then */
} rt_replica;

/* A backend as the router runs it.  cfg points into the router's
 * configuration; the strings, the replicas' URLs and a local backend's
 * model, engine and server are the backend's own, made by start_local or
 * start_remote and freed by em_router_free. */
typedef struct rt_backend {
    const em_rt_backend_cfg *cfg;
    char *api_key;          /* Bearer token sent upstream, or NULL              */
    char *model_name;       /* the `model` sent upstream                        */
    rt_replica reps[EM_RT_MAX_URLS];
    int n_reps;
    unsigned rr;            /* rotates ties between equally loaded replicas     */
    em_model *model;        /* local backends: */
    em_engine *engine;
    em_server *server;
} rt_backend;

struct em_router {
    em_rt_config *cfg;
    rt_backend b[EM_RT_MAX_BACKENDS];
    em_ledger *ledger;      /* NULL with `ledger: none`                         */
    struct MHD_Daemon *daemon;
    em_conn_guard *guard;   /* the front's connections: deadlines, slot reuse  */
    int port;
    pthread_mutex_t mu;     /* replicas' state, in_flight                       */
    pthread_cond_t cv;      /* health thread's sleep; drain's wait              */
    pthread_t health;
    bool health_started, stopping;
    int in_flight;          /* routed requests not yet settled                  */
    double dearest_in, dearest_out; /* USD/Mtok of the dearest remote backend   */
};

/* ------------------------------------------------------------ replicas */

/* The healthy, rested replica with the fewest requests in flight (and
 * under max_concurrency); NULL when there is none.  Counts it busy. */
static rt_replica *replica_take(em_router *R, rt_backend *b, bool retry) {
    pthread_mutex_lock(&R->mu);
    double now = em_time_s();
    rt_replica *best = NULL;
    for (int k = 0; k < b->n_reps; k++) {
        rt_replica *r = &b->reps[(b->rr + (unsigned)k) % (unsigned)b->n_reps];
        if (!r->healthy || now < r->cooldown_until) continue;
        if (b->cfg->max_concurrency && r->outstanding >= b->cfg->max_concurrency) continue;
        if (!best || r->outstanding < best->outstanding) best = r;
    }
    /* A retry may go back to a replica that just failed and rests, when
     * there is no other: the retry is what the configuration asked for. */
    for (int k = 0; retry && !best && k < b->n_reps; k++) {
        rt_replica *r = &b->reps[(b->rr + (unsigned)k) % (unsigned)b->n_reps];
        if (!r->healthy) continue;
        if (b->cfg->max_concurrency && r->outstanding >= b->cfg->max_concurrency) continue;
        if (!best || r->outstanding < best->outstanding) best = r;
    }
    if (best) {
        best->outstanding++;
        b->rr++;
    }
    pthread_mutex_unlock(&R->mu);
    return best;
}

static void replica_release(em_router *R, rt_backend *b, rt_replica *r, em_up_outcome o) {
    pthread_mutex_lock(&R->mu);
    r->outstanding--;
    /* A replica that failed rests; the request's own fault does not count. */
    if (em_up_retryable(o) && o != EM_UP_CONTEXT && o != EM_UP_UNAVAILABLE)
        r->cooldown_until = em_time_s() + b->cfg->cooldown_s;
    pthread_mutex_unlock(&R->mu);
}

/* True when no replica of b could take a request now. */
static bool backend_resting(em_router *R, rt_backend *b) {
    pthread_mutex_lock(&R->mu);
    double now = em_time_s();
    bool any = false;
    for (int k = 0; k < b->n_reps; k++) any |= b->reps[k].healthy && now >= b->reps[k].cooldown_until;
    pthread_mutex_unlock(&R->mu);
    return !any;
}

/* The health checks: GET {url}/models on every remote replica, every
 * health_interval_s.  A replica that fails is out until a check passes. */
static void *health_main(void *arg) {
    em_router *R = arg;
    for (;;) {
        for (int i = 0; i < R->cfg->n_backends; i++) {
            rt_backend *b = &R->b[i];
            if (b->cfg->kind != EM_RT_REMOTE) continue;
            for (int k = 0; k < b->n_reps; k++) {
                char url[4200];
                snprintf(url, sizeof url, "%s/models", b->reps[k].url);
                em_xfer x;
                em_xfer_params p = {.url = url, .api_key = b->api_key, .timeout_s = 2, .connect_timeout_s = 1};
                bool ok = em_xfer_start(&x, &p);
                while (ok && !x.done) em_xfer_pump(&x, 100);
                ok = ok && x.result == CURLE_OK && x.status == 200;
                em_xfer_free(&x);
                pthread_mutex_lock(&R->mu);
                if (b->reps[k].healthy != ok)
                    fprintf(stderr, "ember serve: replica %s of %s is %s\n", b->reps[k].url, b->cfg->name,
                            ok ? "healthy again" : "failing its health check: out of rotation");
                b->reps[k].healthy = ok;
                pthread_mutex_unlock(&R->mu);
            }
        }
        pthread_mutex_lock(&R->mu);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double until = (double)ts.tv_sec + ts.tv_nsec * 1e-9 + R->cfg->health_interval_s;
        ts.tv_sec = (time_t)until;
        ts.tv_nsec = (long)((until - (double)ts.tv_sec) * 1e9);
        while (!R->stopping && pthread_cond_timedwait(&R->cv, &R->mu, &ts) == 0) {
        }
        bool stop = R->stopping;
        pthread_mutex_unlock(&R->mu);
        if (stop) return NULL;
    }
}

/* ---------------------------------------------------------------- call */

/* One routed request, on the heap: call_new makes it and settle() frees
 * it, on every path (for a live stream, when stream_free settles).  It
 * owns body; route, key_name and the attempts' names point into the
 * router's configuration, which outlives every call. */
typedef struct rt_call {
    em_router *R;
    const char *key_name;          /* "-" when the router has no keys             */
    const em_rt_route *route;
    em_rt_route implicit;          /* a backend named directly: a direct route    */
    json_t *body;                  /* the client's request (owned)                */
    const char *endpoint;          /* "/chat/completions", ...                    */
    bool chat, stream, include_usage, want_logprobs;
    int64_t prompt_bound;          /* at least the prompt's tokens (its bytes)    */
    long max_tokens;               /* -1: absent                                  */
    em_rt_facts facts;
    char tag[EM_RT_NAME];
    int64_t reservation;
    int fd;                        /* the client's socket                         */
    double t0;
    em_ledger_attempt att[RT_MAX_ATTEMPTS];
    char att_reason[RT_MAX_ATTEMPTS][160];
    int n_att;
    char escalation[224];
    double cost;
    int64_t prompt_tokens, completion_tokens;
    const rt_backend *answered_by;
} rt_call;

/* One attempt's result: an error, a whole JSON answer, or a live stream
 * whose status was 200 and whose first event has arrived.  It owns answer,
 * x and error_body (result_clear frees them); b and rep point into the
 * router, and while rep is set that replica counts the request in flight
 * until replica_release. */
typedef struct rt_result {
    em_up_outcome outcome;
    long status;                   /* upstream HTTP status                        */
    json_t *answer;                /* non-streamed answer                         */
    bool live;
    em_xfer *x;                    /* the transfer (live: to pull on); heap, since
                                    * curl keeps its address                      */
    rt_backend *b;
    rt_replica *rep;
    double t0;
    char *error_body;              /* a client error's upstream body, to pass on  */
    int att;                       /* index of this attempt in call->att          */
} rt_result;

static void result_clear(rt_result *r) {
    json_decref(r->answer);
    if (r->x) em_xfer_free(r->x);
    free(r->x);
    free(r->error_body);
    memset(r, 0, sizeof *r);
}

static em_ledger_attempt *add_attempt(rt_call *c, const rt_backend *b, const rt_replica *rep) {
    if (c->n_att >= RT_MAX_ATTEMPTS) return NULL;
    em_ledger_attempt *a = &c->att[c->n_att];
    *a = (em_ledger_attempt){.backend = b->cfg->name, .replica = rep ? rep->url : "", .outcome = "ok",
                             .reason = c->att_reason[c->n_att]};
    c->att_reason[c->n_att][0] = '\0';
    c->n_att++;
    return a;
}

/* Charges an attempt that produced tokens. */
static void charge(rt_call *c, em_ledger_attempt *a, const rt_backend *b, int64_t pt, int64_t ct, double seconds) {
    a->prompt_tokens = pt;
    a->completion_tokens = ct;
    a->cost_usd = b->cfg->kind == EM_RT_LOCAL ? em_rt_local_cost(b->cfg, seconds) : em_rt_token_cost(b->cfg, pt, ct);
    c->cost += a->cost_usd;
}

/* The body sent to backend b: the client's, with b's model name, the
 * stream flags this attempt needs, logprobs for a cascade's judgement, and
 * max_tokens bounded so that the reservation covers it. */
static char *attempt_body(rt_call *c, rt_backend *b, bool stream, bool logprobs) {
    json_t *o = json_copy(c->body);
    if (!o) return NULL;
    json_object_set_new(o, "model", json_string(b->model_name));
    json_object_set_new(o, "stream", json_boolean(stream));
    if (stream) json_object_set_new(o, "stream_options", json_pack("{s:b}", "include_usage", 1));
    else json_object_del(o, "stream_options");
    if (logprobs && !c->want_logprobs) json_object_set_new(o, "logprobs", c->chat ? json_true() : json_integer(0));
    if (c->max_tokens < 0 && b->cfg->kind == EM_RT_REMOTE)
        json_object_set_new(o, "max_tokens", json_integer(b->cfg->max_output_tokens));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static bool has_event(const em_xfer *x) {
    return x->in.p && em_sse_event_len(x->in.p + x->off, em_xfer_avail(x)) > 0;
}

/* What one try's transfer gave, into res: a live stream (a streaming try
 * that got its first event), a whole JSON answer (charged to the call), or
 * a failure with its reason in the attempt's record and, for the request's
 * own faults, the upstream's body to pass on.  started: the transfer
 * began; gone: the client left while it ran.  a may be NULL when the call
 * has used all its attempt records. */
static void attempt_read(rt_call *c, rt_backend *b, em_ledger_attempt *a, bool stream, bool started, bool gone,
                         rt_result *res) {
    res->status = res->x ? res->x->status : 0;
    if (!started) res->outcome = EM_UP_CONNECT;
    else if (gone) res->outcome = EM_UP_CLIENT_GONE;
    else if (!res->x->done) res->outcome = EM_UP_OK; /* a live stream */
    else res->outcome = em_xfer_outcome(res->x);
    double dt = em_time_s() - res->t0;
    if (a) a->latency_ms = dt * 1e3, a->status = (int)res->status;
    if (res->outcome == EM_UP_OK && !stream) {
        json_error_t je;
        res->answer = json_loadb(em_xfer_data(res->x), em_xfer_avail(res->x), 0, &je);
        if (!json_is_object(res->answer) || !json_is_array(json_object_get(res->answer, "choices")) ||
            !json_array_size(json_object_get(res->answer, "choices"))) {
            json_decref(res->answer);
            res->answer = NULL;
            res->outcome = EM_UP_BAD_RESPONSE;
            if (a) snprintf(c->att_reason[res->att], 160, "malformed JSON answer");
        } else if (a) {
            int64_t pt, ct;
            em_rt_usage(res->answer, &pt, &ct);
            charge(c, a, b, pt, ct, dt);
        }
    } else if (res->outcome == EM_UP_OK && stream) {
        res->live = true; /* charged when the stream ends */
        return;
    } else if (res->outcome == EM_UP_CLIENT_ERROR || res->outcome == EM_UP_CONTEXT) {
        size_t n = em_xfer_avail(res->x);
        res->error_body = malloc(n + 1);
        if (res->error_body) memcpy(res->error_body, em_xfer_data(res->x), n), res->error_body[n] = '\0';
    }
    if (a) {
        a->outcome = em_up_outcome_name(res->outcome);
        if (res->outcome != EM_UP_OK && !c->att_reason[res->att][0])
            snprintf(c->att_reason[res->att], 160, "%s%s%.120s", em_up_outcome_name(res->outcome),
                     res->x && res->x->errbuf[0] ? ": " : "", res->x ? res->x->errbuf : "");
    }
}

/* One backend: up to 1 + retries tries (each on the least loaded healthy
 * replica), with jittered back-off between them; all before any byte went
 * to the client.  A route's last resort (and a retry) may use a replica
 * that rests after a failure when no other is left: a cooldown steers
 * traffic away while there is somewhere else to go. */
static void attempt(rt_call *c, rt_backend *b, bool stream, bool logprobs, bool last_resort, rt_result *res) {
    memset(res, 0, sizeof *res);
    res->b = b;
    for (int t = 0; t <= b->cfg->retries; t++) {
        if (t) {
            /* 100 ms, 200 ms, ... each times a random 0.5..1.5 */
            double wait = 0.1 * (double)(1 << (t - 1)) * (0.5 + (double)rand() / RAND_MAX);
            usleep((useconds_t)(wait * 1e6));
        }
        rt_replica *rep = replica_take(c->R, b, t > 0 || last_resort);
        /* A retry that finds no replica is not made: the last try's
         * outcome and its ledger record stand, and no record of a try
         * that never ran joins them. */
        if (!rep && t > 0) return;
        em_ledger_attempt *a = add_attempt(c, b, rep);
        res->att = c->n_att - 1;
        if (!rep) {
            res->outcome = EM_UP_UNAVAILABLE;
            if (a) a->outcome = em_up_outcome_name(res->outcome), snprintf(c->att_reason[res->att], 160, "no healthy replica");
            return;
        }
        res->rep = rep;
        res->t0 = em_time_s();
        char url[4200];
        snprintf(url, sizeof url, "%s%s", rep->url, c->endpoint);
        char *body = attempt_body(c, b, stream, logprobs);
        em_xfer_params p = {.url = url, .api_key = b->api_key, .body = body,
                            .timeout_s = b->cfg->timeout_s, .connect_timeout_s = b->cfg->connect_timeout_s};
        res->x = calloc(1, sizeof *res->x);
        bool started = body && res->x && em_xfer_start(res->x, &p);
        bool gone = false;
        while (started && !res->x->done) {
            if (stream && res->x->headers_done && res->x->status == 200 && has_event(res->x)) break;
            if ((gone = em_http_client_gone(c->fd))) break;
            em_xfer_pump(res->x, 50);
        }
        free(body);
        attempt_read(c, b, a, stream, started, gone, res);
        if (res->live) return; /* the replica stays busy until the stream ends */
        if (res->x) em_xfer_free(res->x);
        free(res->x);
        res->x = NULL;
        replica_release(c->R, b, rep, res->outcome);
        res->rep = NULL;
        if (res->outcome == EM_UP_OK || !em_up_retryable(res->outcome) || res->outcome == EM_UP_CONTEXT) return;
        if (t < b->cfg->retries) {
            free(res->error_body);
            res->error_body = NULL;
        }
    }
}

/* Strips what the router asked for and the client did not. */
static void tidy_answer(rt_call *c, json_t *answer) {
    if (c->want_logprobs) return;
    size_t i;
    json_t *ch;
    json_array_foreach(json_object_get(answer, "choices"), i, ch) json_object_set_new(ch, "logprobs", json_null());
}

/* A rules route that tests prompt tokens counts them with the tokenizer
 * of the first local model among its rules' backends (bytes / 4 is only
 * an estimate); a route of remote backends keeps the estimate. */
static void count_prompt_tokens(rt_call *c) {
    const em_rt_route *r = c->route;
    bool counts = false;
    for (int i = 0; r->policy == EM_RT_RULES && i < r->n_rules; i++)
        counts |= r->rules[i].prompt_tokens_min >= 0 || r->rules[i].prompt_tokens_max >= 0;
    for (int i = 0; counts && i < r->n_rules; i++) {
        const rt_backend *b = &c->R->b[r->rules[i].backend];
        if (!b->model) continue;
        long n = em_rt_prompt_tokens(c->body, em_model_vocab(b->model));
        if (n >= 0) c->facts.prompt_tokens = n;
        return;
    }
}

static void run_policy(rt_call *c, rt_result *res) {
    const em_rt_route *r = c->route;
    em_router *R = c->R;
    switch (r->policy) {
    case EM_RT_DIRECT:
        attempt(c, &R->b[r->backends[0]], c->stream, false, true, res);
        return;
    case EM_RT_RULES: {
        int bi = em_rt_rules_pick(r, &c->facts);
        if (bi < 0) {
            memset(res, 0, sizeof *res);
            res->outcome = EM_UP_CLIENT_ERROR;
            res->status = 400;
            res->error_body = strdup("no rule of the route matches the request");
            return;
        }
        attempt(c, &R->b[bi], c->stream, false, true, res);
        return;
    }
    case EM_RT_FALLBACK:
        for (int i = 0; i < r->n_backends; i++) {
            rt_backend *b = &R->b[r->backends[i]];
            bool last = i == r->n_backends - 1;
            if (i) result_clear(res);
            if (!last && backend_resting(R, b)) {
                em_ledger_attempt *a = add_attempt(c, b, NULL);
                if (a) a->outcome = "skipped", snprintf(c->att_reason[c->n_att - 1], 160, "cooldown or unhealthy");
                memset(res, 0, sizeof *res);
                res->outcome = EM_UP_UNAVAILABLE;
                continue;
            }
            attempt(c, b, c->stream, false, last, res);
            if (res->outcome == EM_UP_OK || !em_up_retryable(res->outcome)) return;
        }
        return;
    case EM_RT_CASCADE:
        for (int i = 0; i < r->n_backends - 1; i++) {
            rt_backend *b = &R->b[r->backends[i]];
            attempt(c, b, false, true, false, res);
            if (res->outcome == EM_UP_OK) {
                char why[128];
                if (em_rt_cascade_accept(r, res->answer, why, sizeof why)) {
                    tidy_answer(c, res->answer);
                    return;
                }
                c->att[res->att].outcome = "rejected";
                snprintf(c->att_reason[res->att], 160, "%s", why);
                snprintf(c->escalation, sizeof c->escalation, "%s: %s", b->cfg->name, why);
            } else {
                if (!em_up_retryable(res->outcome)) return;
                snprintf(c->escalation, sizeof c->escalation, "%s: %s", b->cfg->name, em_up_outcome_name(res->outcome));
            }
            result_clear(res);
        }
        attempt(c, &R->b[r->backends[r->n_backends - 1]], c->stream, false, true, res);
        return;
    }
}

/* The most the request can cost on its route (a cascade may pay every
 * backend; the others pay one). */
static double route_max_cost(rt_call *c, const em_rt_route *r) {
    double sum = 0, max = 0;
    for (int i = 0; i < r->n_backends; i++) {
        double m = em_rt_max_cost(&c->R->cfg->backends[r->backends[i]], c->prompt_bound, c->max_tokens);
        sum += m;
        max = fmax(max, m);
    }
    return r->policy == EM_RT_CASCADE ? sum : max;
}

/* The same tokens at the dearest remote backend (or what was paid, when
 * that is more): what the ledger's savings compare against. */
static double baseline(rt_call *c) {
    double b = ((double)c->prompt_tokens * c->R->dearest_in + (double)c->completion_tokens * c->R->dearest_out) / 1e6;
    return fmax(b, c->cost);
}

static void settle(rt_call *c, int status, const char *outcome) {
    em_router *R = c->R;
    if (R->ledger) {
        em_ledger_entry e = {.key = c->key_name, .route = c->route ? c->route->name : "",
                             .backend = c->answered_by ? c->answered_by->cfg->name : "",
                             .prompt_tokens = c->prompt_tokens, .completion_tokens = c->completion_tokens,
                             .cost_usd = c->cost, .baseline_usd = baseline(c),
                             .latency_ms = (em_time_s() - c->t0) * 1e3, .status = status, .outcome = outcome,
                             .escalation = c->escalation, .attempts = c->att, .n_attempts = c->n_att};
        if (em_ledger_settle(R->ledger, c->reservation, &e) != EM_OK)
            fprintf(stderr, "ember serve: %s\n", em_last_error());
    }
    if (!R->cfg->quiet)
        fprintf(stderr, "ember serve: %s route %s backend %s %d %.1f ms prompt %lld completion %lld cost %.6f%s%s\n",
                c->key_name, c->route ? c->route->name : "-", c->answered_by ? c->answered_by->cfg->name : "-", status,
                (em_time_s() - c->t0) * 1e3, (long long)c->prompt_tokens, (long long)c->completion_tokens, c->cost,
                c->escalation[0] ? " escalated: " : "", c->escalation);
    pthread_mutex_lock(&R->mu);
    R->in_flight--;
    pthread_cond_broadcast(&R->cv);
    pthread_mutex_unlock(&R->mu);
    json_decref(c->body);
    free(c);
}

/* ---------------------------------------------------------- responses */

/* What the router keeps per connection in MHD's *con_cls: the request
 * body as it arrives (owned) and whether an answer was queued.  Made on
 * the first on_request call, freed by on_completed. */
typedef struct rt_conn {
    em_router *R;
    em_strbuf body;
    uint64_t received;      /* body bytes received; the body's deadline grows with it */
    bool too_large, answered;
    int status;
    int fd;
} rt_conn;

static enum MHD_Result queue(struct MHD_Connection *conn, rt_conn *cs, int status, struct MHD_Response *r) {
    if (!r) return MHD_NO;
    cs->status = status;
    cs->answered = true;
    /* How long an idle connection is kept after this answer: the request
     * deadline (conns.h), so that clients which honour the hint close an
     * idle connection before the router does. */
    char hint[32];
    snprintf(hint, sizeof hint, "timeout=%d", cs->R->cfg->request_timeout_s < 1 ? 1 : (int)cs->R->cfg->request_timeout_s);
    MHD_add_response_header(r, "Keep-Alive", hint);
    enum MHD_Result res = MHD_queue_response(conn, (unsigned)status, r);
    MHD_destroy_response(r);
    return res;
}

static struct MHD_Response *text_response(char *text, const char *type) {
    if (!text) return NULL;
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return NULL;
    }
    MHD_add_response_header(r, "Content-Type", type);
    return r;
}

static enum MHD_Result send_json(struct MHD_Connection *conn, rt_conn *cs, int status, json_t *body) {
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    return queue(conn, cs, status, text_response(text, "application/json"));
}

/* The x-ember-* headers that tell the client how its request was routed:
 * the route, the backend that answered, the cost (not on a live stream,
 * whose cost is known only at its end and goes in a closing comment) and
 * why it escalated. */
static void routing_headers(struct MHD_Response *r, rt_call *c, bool with_cost) {
    if (!r) return;
    MHD_add_response_header(r, "x-ember-route", c->route->name);
    if (c->answered_by) MHD_add_response_header(r, "x-ember-backend", c->answered_by->cfg->name);
    if (with_cost) {
        char cost[32];
        snprintf(cost, sizeof cost, "%.8f", c->cost);
        MHD_add_response_header(r, "x-ember-cost-usd", cost);
    }
    if (c->escalation[0]) MHD_add_response_header(r, "x-ember-escalated", c->escalation);
}

/* Queues the error body j (taken; NULL when it could not be made) with
 * status http, with c's routing headers when there is a call (NULL: none
 * yet), and asks the client to retry after a second on 429 and 503. */
static enum MHD_Result queue_error(struct MHD_Connection *conn, rt_conn *cs, int http, json_t *j, rt_call *c) {
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    struct MHD_Response *r = text_response(text, "application/json");
    if (c) routing_headers(r, c, true);
    if (r && (http == 429 || http == 503)) MHD_add_response_header(r, "Retry-After", "1");
    return queue(conn, cs, http, r);
}

static enum MHD_Result send_error(struct MHD_Connection *conn, rt_conn *cs, int http, const char *code,
                                  const char *param, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static enum MHD_Result send_error(struct MHD_Connection *conn, rt_conn *cs, int http, const char *code,
                                  const char *param, const char *fmt, ...) {
    em_api_error err = {.http = http};
    snprintf(err.param, sizeof err.param, "%s", param ? param : "");
    snprintf(err.code, sizeof err.code, "%s", code ? code : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err.message, sizeof err.message, fmt, ap);
    va_end(ap);
    return queue_error(conn, cs, http, em_api_error_json(&err), NULL);
}

/* A whole answer as server-sent events, for a streaming client whose
 * answer a cascade accepted from a non-streamed call. */
static char *as_events(rt_call *c, json_t *answer) {
    em_strbuf out = {0};
    const char *id = json_string_value(json_object_get(answer, "id"));
    const char *model = json_string_value(json_object_get(answer, "model"));
    json_int_t created = json_integer_value(json_object_get(answer, "created"));
    const char *object = c->chat ? "chat.completion.chunk" : "text_completion";
    size_t i;
    json_t *ch;
    json_array_foreach(json_object_get(answer, "choices"), i, ch) {
        json_t *choice = json_object();
        json_object_set_new(choice, "index", json_integer((json_int_t)i));
        if (c->chat) {
            json_t *msg = json_object_get(ch, "message");
            json_t *delta = json_copy(msg ? msg : json_object());
            json_t *calls = json_object_get(delta, "tool_calls");
            size_t k;
            json_t *call;
            json_array_foreach(calls, k, call) json_object_set_new(call, "index", json_integer((json_int_t)k));
            json_object_set_new(choice, "delta", delta);
        } else
            json_object_set(choice, "text", json_object_get(ch, "text") ? json_object_get(ch, "text") : json_string(""));
        json_object_set(choice, "logprobs", json_object_get(ch, "logprobs") ? json_object_get(ch, "logprobs") : json_null());
        json_object_set(choice, "finish_reason", json_object_get(ch, "finish_reason"));
        json_t *chunk = json_pack("{s:s, s:s, s:I, s:s, s:[o]}", "id", id ? id : "", "object", object, "created",
                                  created, "model", model ? model : "", "choices", choice);
        char *s = chunk ? json_dumps(chunk, JSON_COMPACT) : NULL;
        if (s) em_strbuf_appendf(&out, "data: %s\n\n", s);
        free(s);
        json_decref(chunk);
    }
    if (c->include_usage) {
        json_t *chunk = json_pack("{s:s, s:s, s:I, s:s, s:[], s:O}", "id", id ? id : "", "object", object, "created",
                                  created, "model", model ? model : "", "choices", "usage",
                                  json_object_get(answer, "usage"));
        char *s = chunk ? json_dumps(chunk, JSON_COMPACT) : NULL;
        if (s) em_strbuf_appendf(&out, "data: %s\n\n", s);
        free(s);
        json_decref(chunk);
    }
    em_strbuf_appendf(&out, ": x-ember-cost-usd %.8f\n\ndata: [DONE]\n\n", c->cost);
    return out.p;
}

/* A live stream, pulled from the upstream as the client reads.  It owns
 * res (the transfer and the replica it holds) and out; MHD calls
 * stream_free when the response ends, which settles the call. */
typedef struct rt_stream {
    rt_call *c;
    rt_result res;
    em_strbuf out;      /* events ready for the client; out.p[off..n)      */
    size_t off;
    bool finished, saw_done, client_left;
    em_up_outcome end;  /* how the stream ended                             */
    int64_t chunks;     /* content chunks, if the upstream sends no usage   */
    bool charged;
} rt_stream;

/* Charges the streamed attempt (once): at [DONE], or when it ends otherwise. */
static void stream_charge(rt_stream *s) {
    if (s->charged) return;
    s->charged = true;
    rt_call *c = s->c;
    double dt = em_time_s() - s->res.t0;
    em_ledger_attempt *a = &c->att[s->res.att];
    if (!c->completion_tokens) c->completion_tokens = s->chunks;
    charge(c, a, s->res.b, c->prompt_tokens, c->completion_tokens, dt);
    a->latency_ms = dt * 1e3;
}

static void stream_fail(rt_stream *s, em_up_outcome o, const char *msg) {
    const char *code;
    int http = em_up_client_status(o, &code);
    em_api_error err = {.http = http};
    snprintf(err.code, sizeof err.code, "%s", code);
    snprintf(err.message, sizeof err.message, "%s", msg);
    json_t *j = em_api_error_json(&err);
    char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (t) em_strbuf_appendf(&s->out, "data: %s\n\n", t);
    free(t);
    em_strbuf_appendf(&s->out, "data: [DONE]\n\n");
    s->end = o;
    s->finished = true;
}

/* One event from the upstream: note its usage, drop the usage chunk the
 * client did not ask for, pass the rest on as it came. */
static void stream_event(rt_stream *s, const char *ev, size_t len) {
    const char *data;
    size_t dlen;
    if (!em_sse_event_data(ev, len, &data, &dlen)) return; /* comments, keep-alives */
    if (dlen == 6 && !memcmp(data, "[DONE]", 6)) {
        stream_charge(s);
        char cost[32];
        snprintf(cost, sizeof cost, "%.8f", s->c->cost);
        em_strbuf_appendf(&s->out, ": x-ember-cost-usd %s\n\ndata: [DONE]\n\n", cost);
        s->saw_done = true;
        s->finished = true;
        s->end = EM_UP_OK;
        return;
    }
    json_error_t je;
    json_t *o = json_loadb(data, dlen, 0, &je);
    if (!json_is_object(o)) {
        json_decref(o);
        stream_fail(s, EM_UP_BAD_RESPONSE, "the backend sent an event that is not JSON");
        return;
    }
    if (json_object_get(o, "error")) s->end = EM_UP_HTTP_5XX;
    json_t *choices = json_object_get(o, "choices");
    if (json_object_get(o, "usage") && json_is_object(json_object_get(o, "usage"))) {
        em_rt_usage(o, &s->c->prompt_tokens, &s->c->completion_tokens);
        if (!json_array_size(choices) && !s->c->include_usage) {
            json_decref(o);
            return;
        }
    }
    if (json_array_size(choices)) s->chunks++;
    json_decref(o);
    em_strbuf_append(&s->out, "data: ", 6);
    em_strbuf_append(&s->out, data, dlen);
    em_strbuf_append(&s->out, "\n\n", 2);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    rt_stream *s = cls;
    em_xfer *x = s->res.x;
    for (;;) {
        /* The events already received go out together: one write to the
         * client, not one per event. */
        while (!s->finished && s->out.n - s->off < max && has_event(x)) {
            const char *d = x->in.p + x->off;
            size_t n = em_sse_event_len(d, em_xfer_avail(x));
            stream_event(s, d, n);
            em_xfer_consume(x, n);
        }
        if (s->off < s->out.n) {
            size_t n = s->out.n - s->off;
            if (n > max) n = max;
            memcpy(buf, s->out.p + s->off, n);
            s->off += n;
            return (ssize_t)n;
        }
        s->out.n = s->off = 0;
        if (s->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        if (x->done) {
            em_up_outcome o = em_xfer_outcome(x);
            stream_fail(s, o == EM_UP_OK ? EM_UP_BROKEN_STREAM : o,
                        o == EM_UP_TIMEOUT ? "the backend timed out during the stream"
                                           : "the backend's stream ended before the answer did");
            continue;
        }
        if (em_http_client_gone(s->c->fd)) {
            s->client_left = true;
            s->end = EM_UP_CLIENT_GONE;
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        em_xfer_pump(x, 50);
    }
}

static void stream_free(void *cls) {
    rt_stream *s = cls;
    rt_call *c = s->c;
    stream_charge(s);
    em_ledger_attempt *a = &c->att[s->res.att];
    a->outcome = em_up_outcome_name(s->end);
    if (s->end != EM_UP_OK) snprintf(c->att_reason[s->res.att], 160, "%s", "stream did not finish");
    replica_release(c->R, s->res.b, s->res.rep, s->end);
    result_clear(&s->res);
    em_strbuf_free(&s->out);
    int status = s->end == EM_UP_CLIENT_GONE ? 499 : 200;
    settle(c, status, em_up_outcome_name(s->end));
    free(s);
}

/* Passes an upstream's refusal of the request on: its status and, when it
 * is in OpenAI's shape, its body. */
static enum MHD_Result send_upstream_error(struct MHD_Connection *conn, rt_conn *cs, rt_call *c, rt_result *res) {
    const char *code;
    int http = em_up_client_status(res->outcome, &code);
    json_t *j = NULL;
    if (res->outcome == EM_UP_CLIENT_ERROR && res->error_body) {
        json_error_t je;
        j = json_loads(res->error_body, 0, &je);
        if (!json_is_object(json_object_get(j, "error"))) {
            json_decref(j);
            em_api_error err = {.http = (int)(res->status >= 400 && res->status < 500 ? res->status : 400)};
            snprintf(err.message, sizeof err.message, "backend %s refused the request: %.400s", res->b ? res->b->cfg->name : "-",
                     res->error_body);
            j = em_api_error_json(&err);
        }
        http = (int)(res->status >= 400 && res->status < 500 ? res->status : 400);
    } else {
        em_api_error err = {.http = http};
        snprintf(err.code, sizeof err.code, "%s", code);
        snprintf(err.message, sizeof err.message, "route %s: no backend answered (last: %s%s%.300s)", c->route->name,
                 res->b ? res->b->cfg->name : "-", res->b ? " " : "", em_up_outcome_name(res->outcome));
        if (res->outcome == EM_UP_CONTEXT)
            snprintf(err.message, sizeof err.message, "route %s: the prompt is too long for every backend", c->route->name);
        j = em_api_error_json(&err);
    }
    return queue_error(conn, cs, http, j, c);
}

/* ------------------------------------------------------------ handling */

static const em_rt_key *authenticate(em_router *R, struct MHD_Connection *conn) {
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7)) return NULL;
    h += 7;
    const em_rt_key *found = NULL;
    size_t a = strlen(h);
    for (int i = 0; i < R->cfg->n_keys; i++) {
        const char *s = R->cfg->keys[i].secret;
        size_t b = strlen(s);
        unsigned diff = (unsigned)(a != b);
        for (size_t k = 0; k < a; k++) diff |= (unsigned char)h[k] ^ (unsigned char)s[k % (b ? b : 1)];
        if (!diff) found = &R->cfg->keys[i];
    }
    return found;
}

static bool key_may_use(const em_rt_key *k, int route, int backend) {
    if (!k || !k->n_routes) return true;
    for (int i = 0; i < k->n_routes; i++)
        if ((route >= 0 && k->routes[i] == route) || (backend >= 0 && k->routes[i] == 1000 + backend)) return true;
    return false;
}

/* A call for the request whose body cs holds, or NULL after answering the
 * client (*mr) with what is wrong: a body that is not a JSON object, no
 * `model`, or one that is no route or backend this key may use.  The call
 * takes the parsed body and counts in R->in_flight; from here on every
 * path ends in settle(), which frees both and counts the call out. */
static rt_call *call_new(em_router *R, struct MHD_Connection *conn, rt_conn *cs, const em_rt_key *key,
                         const char *endpoint, enum MHD_Result *mr) {
    json_error_t je;
    json_t *body = json_loadb(cs->body.p ? cs->body.p : "", cs->body.n, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(body)) {
        json_decref(body);
        *mr = send_error(conn, cs, 400, NULL, NULL, "the body is not a JSON object: %.200s", je.text);
        return NULL;
    }
    const char *model = json_string_value(json_object_get(body, "model"));
    int ri = model ? em_rt_config_route(R->cfg, model) : -1;
    int bi = model && ri < 0 ? em_rt_config_backend(R->cfg, model) : -1;
    rt_call *c = NULL;
    if (!model)
        *mr = send_error(conn, cs, 400, NULL, "model", "'model' is required: a route or backend name");
    else if ((ri < 0 && bi < 0) || !key_may_use(key, ri, bi))
        *mr = send_error(conn, cs, 404, "model_not_found", "model",
                         "The model '%.100s' is not a route or backend this key may use", model);
    else if (!(c = calloc(1, sizeof *c)))
        *mr = send_error(conn, cs, 500, NULL, NULL, "the router is out of memory");
    if (!c) {
        json_decref(body); /* after the messages: model points into it */
        return NULL;
    }
    c->R = R;
    c->body = body;
    c->t0 = em_time_s();
    c->fd = cs->fd;
    c->endpoint = endpoint;
    c->chat = !strcmp(endpoint, "/chat/completions");
    c->key_name = key ? key->name : "-";
    c->stream = json_is_true(json_object_get(body, "stream"));
    c->include_usage = json_is_true(json_object_get(json_object_get(body, "stream_options"), "include_usage"));
    json_t *lp = json_object_get(body, "logprobs");
    c->want_logprobs = json_is_true(lp) || json_is_integer(lp);
    const char *tag = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "x-ember-tag");
    snprintf(c->tag, sizeof c->tag, "%s", tag ? tag : "");
    em_rt_facts_of(body, tag ? c->tag : NULL, &c->facts);
    c->max_tokens = c->facts.max_tokens;
    c->prompt_bound = (int64_t)(cs->body.n + 16);
    if (ri >= 0) c->route = &R->cfg->routes[ri];
    else {
        c->implicit = (em_rt_route){.policy = EM_RT_DIRECT, .n_backends = 1, .backends = {bi}};
        snprintf(c->implicit.name, sizeof c->implicit.name, "%s", R->cfg->backends[bi].name);
        c->route = &c->implicit;
    }
    pthread_mutex_lock(&R->mu);
    R->in_flight++;
    pthread_mutex_unlock(&R->mu);
    return c;
}

/* The budget: reserves the route's maximum cost against the key's, or
 * moves the call to the key's downgrade route when that is spent.  False
 * after refusing the request (*mr) and settling the call. */
static bool reserve_budget(rt_call *c, const em_rt_key *key, struct MHD_Connection *conn, rt_conn *cs,
                           enum MHD_Result *mr) {
    em_router *R = c->R;
    if (!key || !(key->daily_usd > 0 || key->monthly_usd > 0) || !R->ledger) return true;
    bool over;
    if (em_ledger_reserve(R->ledger, key->name, key->daily_usd, key->monthly_usd, route_max_cost(c, c->route),
                          &c->reservation, &over) != EM_OK) {
        fprintf(stderr, "ember serve: %s\n", em_last_error());
        /* Fail closed: a budget that cannot be checked is not spent.
         * Keys without a budget are still served (docs/ROUTING.md). */
        settle(c, 503, "ledger_unavailable");
        *mr = send_error(conn, cs, 503, "ledger_unavailable", NULL,
                         "the ledger is unavailable, so this key's budget cannot be checked; retry later");
        return false;
    }
    if (over && key->downgrade_route < 0) {
        *mr = send_error(conn, cs, 429, "budget_exceeded", NULL, "key %s is over its budget (daily %g USD, monthly %g USD)",
                         key->name, key->daily_usd, key->monthly_usd);
        settle(c, 429, "budget_exceeded");
        return false;
    }
    if (over) {
        /* Past the budget the key keeps working on its downgrade route;
         * those requests are charged and recorded but not refused. */
        c->route = &R->cfg->routes[key->downgrade_route];
        snprintf(c->escalation, sizeof c->escalation, "over budget: downgraded");
    }
    return true;
}

/* Answers with a live upstream stream: the response pulls it through
 * stream_read at the client's pace, and stream_free releases the replica
 * and settles the call when the response is done. */
static enum MHD_Result send_live(struct MHD_Connection *conn, rt_conn *cs, rt_call *c, rt_result *res) {
    rt_stream *s = calloc(1, sizeof *s);
    if (!s) {
        /* Nothing went to the client yet: drop the transfer, free the
         * replica without resting it (it did nothing wrong) and say why. */
        replica_release(c->R, res->b, res->rep, EM_UP_CLIENT_GONE);
        result_clear(res);
        enum MHD_Result mr = send_error(conn, cs, 500, NULL, NULL, "the router is out of memory");
        settle(c, 500, "nomem");
        return mr;
    }
    s->c = c;
    s->res = *res;
    s->end = EM_UP_BROKEN_STREAM;
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, s, stream_free);
    if (!r) {
        stream_free(s);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    routing_headers(r, c, false);
    return queue(conn, cs, 200, r);
}

/* Answers with a whole JSON answer, as one body or, for a streaming client
 * whose answer a cascade accepted, as events; then settles the call. */
static enum MHD_Result send_answer(struct MHD_Connection *conn, rt_conn *cs, rt_call *c, rt_result *res) {
    em_rt_usage(res->answer, &c->prompt_tokens, &c->completion_tokens);
    struct MHD_Response *r;
    if (c->stream) r = text_response(as_events(c, res->answer), "text/event-stream");
    else r = text_response(json_dumps(res->answer, JSON_COMPACT), "application/json");
    routing_headers(r, c, true);
    result_clear(res);
    enum MHD_Result mr = queue(conn, cs, 200, r);
    settle(c, 200, "ok");
    return mr;
}

static enum MHD_Result handle_generation(em_router *R, struct MHD_Connection *conn, rt_conn *cs,
                                         const em_rt_key *key, const char *endpoint) {
    enum MHD_Result mr = MHD_NO;
    rt_call *c = call_new(R, conn, cs, key, endpoint, &mr);
    if (!c || !reserve_budget(c, key, conn, cs, &mr)) return mr;
    rt_result res = {.outcome = EM_UP_UNAVAILABLE};
    count_prompt_tokens(c);
    run_policy(c, &res);
    if (res.outcome == EM_UP_OK) {
        c->answered_by = res.b;
        return res.live ? send_live(conn, cs, c, &res) : send_answer(conn, cs, c, &res);
    }
    mr = send_upstream_error(conn, cs, c, &res);
    const char *outcome = em_up_outcome_name(res.outcome);
    result_clear(&res);
    settle(c, cs->status ? cs->status : 500, outcome);
    return mr;
}

static json_t *models_json(em_router *R) {
    json_t *data = json_array();
    for (int i = 0; i < R->cfg->n_routes; i++)
        json_array_append_new(data, json_pack("{s:s, s:s, s:s, s:s}", "id", R->cfg->routes[i].name, "object", "model",
                                              "owned_by", "ember", "ember_kind", "route"));
    for (int i = 0; i < R->cfg->n_backends; i++)
        json_array_append_new(data, json_pack("{s:s, s:s, s:s, s:s}", "id", R->cfg->backends[i].name, "object",
                                              "model", "owned_by", "ember", "ember_kind",
                                              R->cfg->backends[i].kind == EM_RT_LOCAL ? "local" : "remote"));
    return json_pack("{s:s, s:o}", "object", "list", "data", data);
}

static json_t *health_json(em_router *R) {
    json_t *b = json_object();
    pthread_mutex_lock(&R->mu);
    double now = em_time_s();
    for (int i = 0; i < R->cfg->n_backends; i++) {
        json_t *reps = json_array();
        for (int k = 0; k < R->b[i].n_reps; k++) {
            rt_replica *r = &R->b[i].reps[k];
            json_array_append_new(reps, json_pack("{s:s, s:b, s:b, s:i}", "url", r->url, "healthy", r->healthy,
                                                  "cooling", now < r->cooldown_until, "outstanding", r->outstanding));
        }
        json_object_set_new(b, R->cfg->backends[i].name, reps);
    }
    pthread_mutex_unlock(&R->mu);
    /* The front's connections, as ember serve's /metrics counts them
     * (ember_connections_open, ember_connections_closed_total). */
    em_conn_stats cs;
    em_conn_guard_stats(R->guard, &cs);
    json_t *closed = json_object();
    for (int r = 0; r < EM_CONN_N_REASONS; r++)
        json_object_set_new(closed, em_conn_reason_name((em_conn_reason)r), json_integer((json_int_t)cs.closed[r]));
    return json_pack("{s:s, s:o, s:{s:i, s:i, s:i, s:i, s:o}}", "status", "ok", "backends", b, "connections", "open",
                     cs.open, "clients", cs.clients, "max", R->cfg->max_connections, "max_per_client",
                     R->cfg->max_connections_per_client, "closed", closed);
}

static enum MHD_Result route_request(em_router *R, struct MHD_Connection *conn, rt_conn *cs, const char *url,
                                     const char *method) {
    bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
    if (!strcmp(url, "/health")) {
        if (!get) return send_error(conn, cs, 405, NULL, NULL, "%.8s is not allowed on %.80s", method, url);
        return send_json(conn, cs, 200, health_json(R));
    }
    const em_rt_key *key = NULL;
    if (R->cfg->n_keys && !(key = authenticate(R, conn)))
        return send_error(conn, cs, 401, NULL, NULL, "Incorrect or missing API key: send it as 'Authorization: Bearer KEY'");
    static const char *posts[] = {"/v1/chat/completions", "/v1/completions", "/v1/embeddings"};
    for (size_t i = 0; i < 3; i++)
        if (!strcmp(url, posts[i])) {
            if (!post) return send_error(conn, cs, 405, NULL, NULL, "%.8s is not allowed on %.80s", method, url);
            return handle_generation(R, conn, cs, key, posts[i] + 3);
        }
    if (!strcmp(url, "/v1/models")) {
        if (!get) return send_error(conn, cs, 405, NULL, NULL, "%.8s is not allowed on %.80s", method, url);
        return send_json(conn, cs, 200, models_json(R));
    }
    return send_error(conn, cs, 404, NULL, NULL, "Unknown route %.8s %.80s", method, url);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    em_router *R = cls;
    rt_conn *cs = *con_cls;
    if (!cs) {
        if (!(cs = calloc(1, sizeof *cs))) return MHD_NO;
        *con_cls = cs;
        cs->R = R;
        cs->fd = -1;
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci) cs->fd = ci->connect_fd;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > RT_MAX_BODY) {
            em_conn_guard_request_started(R->guard, conn);
            return send_error(conn, cs, 413, NULL, NULL, "the request body is larger than %u bytes", RT_MAX_BODY);
        }
        /* The headers are in: the body's deadline starts. */
        em_conn_guard_headers_done(R->guard, conn);
        return MHD_YES;
    }
    if (*upload_size) {
        cs->received += *upload_size;
        em_conn_guard_body_bytes(R->guard, conn, cs->received);
        if (!cs->answered && !cs->too_large &&
            (cs->body.n + *upload_size > RT_MAX_BODY || !em_strbuf_append(&cs->body, upload, *upload_size))) {
            cs->too_large = true;
            em_strbuf_free(&cs->body);
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (cs->answered) return MHD_YES;
    /* The whole request is in: from here to the end of its answer (an
     * upstream's stream may last minutes) no deadline of the guard applies. */
    em_conn_guard_request_started(R->guard, conn);
    if (cs->too_large) return send_error(conn, cs, 413, NULL, NULL, "the request body is larger than %u bytes", RT_MAX_BODY);
    return route_request(R, conn, cs, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)toe;
    em_router *R = cls;
    /* The connection waits for its next request (keep-alive): the headers'
     * deadline runs from now. */
    em_conn_guard_request_done(R->guard, conn);
    rt_conn *cs = *con_cls;
    if (!cs) return;
    em_strbuf_free(&cs->body);
    free(cs);
    *con_cls = NULL;
}

/* ----------------------------------------------------------- lifecycle */

static char *random_key(void) {
    unsigned char raw[16];
    FILE *f = fopen("/dev/urandom", "rb");
    bool ok = f && fread(raw, 1, sizeof raw, f) == sizeof raw;
    if (f) fclose(f);
    if (!ok) return NULL;
    char *hex = malloc(33);
    if (!hex) return NULL;
    for (int i = 0; i < 16; i++) snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    return hex;
}

/* A local backend: the model, its engine, and an ember serve HTTP server
 * on a loopback port that only this process knows the key of. */
static em_status start_local(rt_backend *b) {
    const em_rt_backend_cfg *cfg = b->cfg;
    em_model_params mp = em_model_default_params();
    em_status st = em_model_load(&b->model, cfg->model, &mp);
    if (st != EM_OK) return em_error(st, "backend %s: %s", cfg->name, em_last_error());
    em_engine_params ep = em_engine_default_params();
    ep.n_parallel = cfg->parallel;
    ep.n_ctx_seq = cfg->ctx;
    ep.n_threads = cfg->threads;
    ep.embeddings = true;
    if ((st = em_engine_init(&b->engine, b->model, &ep)) != EM_OK)
        return em_error(st, "backend %s: %s", cfg->name, em_last_error());
    if (!(b->api_key = random_key())) return em_error(EM_ERR_IO, "backend %s: cannot read /dev/urandom", cfg->name);
    em_server_params sp = {.host = "127.0.0.1", .port = 0, .api_key = b->api_key, .model_id = cfg->name,
                           .max_body = RT_MAX_BODY, .max_connections = 1024, .chat_template = cfg->chat_template,
                           .embeddings = true};
    if ((st = em_server_start(&b->server, b->engine, &sp)) != EM_OK)
        return em_error(st, "backend %s: %s", cfg->name, em_last_error());
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", em_server_port(b->server));
    b->reps[0] = (rt_replica){.url = strdup(url), .healthy = true};
    b->n_reps = 1;
    b->model_name = strdup(cfg->name);
    if (!b->reps[0].url || !b->model_name) return em_error(EM_ERR_NOMEM, "out of memory");
    char desc[128];
    em_model_desc(b->model, desc, sizeof desc);
    fprintf(stderr, "ember serve: backend %s: %s, %d sequences of %d positions (internal %s)\n", cfg->name, desc,
            cfg->parallel, em_engine_n_ctx_seq(b->engine), url);
    return EM_OK;
}

static em_status start_remote(rt_backend *b) {
    const em_rt_backend_cfg *cfg = b->cfg;
    if (cfg->api_key_env) {
        const char *k = getenv(cfg->api_key_env);
        if (!k || !k[0])
            return em_error(EM_ERR_INVALID_ARG, "backend %s (line %d): the environment variable %s is not set",
                            cfg->name, cfg->line, cfg->api_key_env);
        if (!(b->api_key = strdup(k))) return em_error(EM_ERR_NOMEM, "out of memory");
    }
    b->model_name = strdup(cfg->remote_model ? cfg->remote_model : cfg->name);
    if (!b->model_name) return em_error(EM_ERR_NOMEM, "out of memory");
    for (int k = 0; k < cfg->n_urls; k++) {
        char *u = strdup(cfg->urls[k]);
        if (!u) return em_error(EM_ERR_NOMEM, "out of memory");
        size_t n = strlen(u);
        while (n && u[n - 1] == '/') u[--n] = '\0';
        b->reps[k] = (rt_replica){.url = u, .healthy = true};
        b->n_reps++;
    }
    fprintf(stderr, "ember serve: backend %s: %d replica%s of %s\n", cfg->name, b->n_reps, b->n_reps > 1 ? "s" : "",
            b->model_name);
    return EM_OK;
}

em_status em_router_start(em_router **out, em_rt_config *cfg, const char *host, int port) {
    *out = NULL;
    em_router *R = calloc(1, sizeof *R);
    if (!R) {
        em_rt_config_free(cfg);
        free(cfg);
        return em_error(EM_ERR_NOMEM, "router: out of memory");
    }
    R->cfg = cfg;
    pthread_mutex_init(&R->mu, NULL);
    pthread_cond_init(&R->cv, NULL);
    em_status st = EM_OK;
    if (!em_upstream_global_init()) {
        st = em_error(EM_ERR_INTERNAL, "router: libcurl did not initialise");
        goto fail;
    }
    srand((unsigned)(time(NULL) ^ getpid()));
    for (int i = 0; i < cfg->n_backends; i++) {
        R->b[i].cfg = &cfg->backends[i];
        st = cfg->backends[i].kind == EM_RT_LOCAL ? start_local(&R->b[i]) : start_remote(&R->b[i]);
        if (st != EM_OK) goto fail;
        if (cfg->backends[i].kind == EM_RT_REMOTE &&
            cfg->backends[i].input_per_mtok + cfg->backends[i].output_per_mtok > R->dearest_in + R->dearest_out) {
            R->dearest_in = cfg->backends[i].input_per_mtok;
            R->dearest_out = cfg->backends[i].output_per_mtok;
        }
    }
    if (strcmp(cfg->ledger, "none") && (st = em_ledger_open(&R->ledger, cfg->ledger)) != EM_OK) goto fail;
    if (pthread_create(&R->health, NULL, health_main, R) != 0) {
        st = em_error(EM_ERR_INTERNAL, "router: cannot start the health checks");
        goto fail;
    }
    R->health_started = true;

    struct sockaddr_storage addr;
    bool ipv6;
    if (!em_http_listen_addr(host, port, &addr, &ipv6)) {
        st = em_error(EM_ERR_INVALID_ARG, "router: '%s' is not an IPv4 or IPv6 address", host);
        goto fail;
    }
    /* The connection guard of ember serve (src/server/conns.h): a request's
     * headers and body have a deadline, and a full table hands the slot of
     * the connection that has waited longest for a request to a new one,
     * so that slow or idle clients cannot hold every slot.  A request in
     * progress has no deadline; the library's own idle timeout (600 s)
     * stays for answers whose upstream is slow. */
    if (cfg->max_connections <= 0) cfg->max_connections = EM_RT_MAX_CONNECTIONS;
    if (!(cfg->request_timeout_s > 0)) cfg->request_timeout_s = EM_SERVER_REQUEST_TIMEOUT_S;
    em_conn_limits lim = {.max_connections = cfg->max_connections,
                          .request_timeout_s = cfg->request_timeout_s,
                          .body_min_rate = EM_SERVER_BODY_MIN_RATE,
                          .max_per_client = cfg->max_connections_per_client};
    if ((st = em_conn_guard_start(&R->guard, &lim)) != EM_OK) goto fail;
    /* Besides the front's connections: an upstream connection for each
     * request in progress and a local backend's own loopback connection
     * for each of those, plus room for the pooled upstream connections,
     * the ledger and the models. */
    em_conn_guard_fit_files(R->guard, 2u * (unsigned)cfg->max_connections + 256u, "max_connections");
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_POLL |
                     MHD_USE_ERROR_LOG | (ipv6 ? MHD_USE_IPv6 : 0);
    R->daemon = MHD_start_daemon(flags, (uint16_t)port, em_conn_guard_accept, R->guard, on_request, R,
                                 MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED,
                                 on_completed, R, MHD_OPTION_NOTIFY_CONNECTION, em_conn_guard_notify, R->guard,
                                 MHD_OPTION_CONNECTION_LIMIT, em_conn_guard_mhd_limit(R->guard),
                                 MHD_OPTION_CONNECTION_TIMEOUT, 600u, MHD_OPTION_END);
    if (!R->daemon) {
        st = em_error(EM_ERR_IO, "router: cannot listen on %s port %d", host, port);
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(R->daemon, MHD_DAEMON_INFO_BIND_PORT);
    R->port = di ? di->port : port;
    *out = R;
    return EM_OK;
fail:
    em_router_free(R);
    return st;
}

int em_router_port(const em_router *r) { return r->port; }

void em_router_drain(em_router *R, double timeout_s) {
    if (R->daemon) {
        MHD_socket fd = MHD_quiesce_daemon(R->daemon);
        if (fd != MHD_INVALID_SOCKET) close(fd);
    }
    double until = em_time_s() + timeout_s;
    pthread_mutex_lock(&R->mu);
    while (R->in_flight > 0 && em_time_s() < until) {
        pthread_mutex_unlock(&R->mu);
        usleep(20000);
        pthread_mutex_lock(&R->mu);
    }
    pthread_mutex_unlock(&R->mu);
}

void em_router_free(em_router *R) {
    if (!R) return;
    /* The watchdog stops first, so that nothing shuts a socket down while
     * the daemon closes them all; the table is freed after the daemon's
     * last CLOSED notification. */
    em_conn_guard_stop(R->guard);
    if (R->daemon) MHD_stop_daemon(R->daemon);
    em_conn_guard_free(R->guard);
    if (R->health_started) {
        pthread_mutex_lock(&R->mu);
        R->stopping = true;
        pthread_cond_broadcast(&R->cv);
        pthread_mutex_unlock(&R->mu);
        pthread_join(R->health, NULL);
    }
    for (int i = 0; i < EM_RT_MAX_BACKENDS; i++) {
        rt_backend *b = &R->b[i];
        if (b->server) em_server_quiesce(b->server);
        if (b->engine) em_engine_drain(b->engine, 5);
        em_server_free(b->server);
        em_engine_free(b->engine);
        em_model_free(b->model);
        free(b->api_key);
        free(b->model_name);
        for (int k = 0; k < b->n_reps; k++) free(b->reps[k].url);
    }
    em_ledger_close(R->ledger);
    if (R->cfg) {
        em_rt_config_free(R->cfg);
        free(R->cfg);
    }
    pthread_cond_destroy(&R->cv);
    pthread_mutex_destroy(&R->mu);
    free(R);
}
