/*
 * engine.c - the engine thread: admission, one batch per step, sampling,
 * and the per-request event queues.
 *
 * Locking: one mutex (e->mu) guards the admission queue, the list of
 * active requests, every request's event list and flags, the sequence
 * table and the statistics.  The engine thread drops it while it computes;
 * the per-choice state (sampler, text filter, positions) is touched only
 * by the engine thread.  Client threads sleep on their request's
 * condition variable, the engine on e->wake.
 *
 * The engine thread does not wake the clients itself: it lists the
 * requests that got events, and a notifier thread signals them.  A
 * wake-up is a system call, and the woken client often takes the core
 * of the thread that woke it; done by the engine thread, the 16 wake-ups
 * of a step of 16 streams held up the next step by about as long as the
 * sampling, the text and the events of the 16 rows together.
 *
 * With EMBER_STEP_TRACE=FILE in the environment the engine thread writes
 * its timeline to FILE, a line per step and per wait for work (times in
 * seconds of em_time_s, a monotonic clock):
 *   S begin model_begin model_end end decode_rows prompt_rows active queued
 *   I wait_begin wait_end queued
 * `begin` to `model_begin` builds the batch, `model_begin` to `model_end`
 * is em_decode, `model_end` to `end` samples, posts the events and wakes
 * the notifier; the time from one step's `end` to the next `begin` is
 * admission and the waits.  bench/serve/steps.py turns a trace into an
 * account of a load generator's levels.  The lines go through a buffer
 * written out when it fills and when the engine stops.
 */
#include "engine/engine.h"

#include "core/core.h"
#include "engine/kvapi.h"
#include "engine/text.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct ev_node {
    em_event ev;
    struct ev_node *next;
} ev_node;

/* One choice of a request: a KV sequence and what it generates. */
typedef struct choice {
    em_seq_id seq;      /* KV sequence; -1 before admission and after release */
    em_sampler *smp;
    void *cstate;       /* constraint state, NULL for free text               */
    em_text_out out;    /* UTF-8 completion and stop strings                  */
    em_pos n_past;      /* positions this sequence holds in the cache         */
    em_token next;      /* token to feed at the next step                     */
    int32_t n_gen;      /* tokens generated                                   */
    bool finished;
    double t_last;      /* when the last token was sampled (seconds)          */
} choice;

struct em_request {
    struct em_engine *engine;
    int refs;               /* the engine's and the client's                  */
    bool cancelled;         /* the client asked to stop (or went away)        */
    bool ended;             /* DONE or ERROR posted, sequences released       */
    bool admitted;
    bool wake_due;          /* listed for the notifier, not yet signalled     */
    pthread_cond_t cv;      /* signalled when an event arrives                */
    ev_node *head, *tail;   /* events the client has not read                 */
    struct em_request *next_queued;

    em_token *prompt;       /* [n_prompt]                                     */
    int32_t n_prompt;
    int32_t n_done;         /* prompt positions in the cache of choice 0      */
    int32_t n_cached;       /* of them reused from the prefix cache           */
    em_gen_params params;   /* stop and logit_bias point at the copies below  */
    char *stop[EM_ENGINE_MAX_STOP];
    em_logit_bias *bias;    /* [params.sampling.n_logit_bias]                 */
    em_constraint constraint; /* copy of *params.constraint                   */
    bool constraint_ref;    /* the engine owes constraint.release a call      */
    choice *ch;             /* [params.n]                                     */
    int32_t n_live;         /* choices not finished                           */
    int32_t n_generated;
    double t_submit;        /* arrival time, seconds (em_time_s)                */
    bool any_token;
    double *emb_sum;        /* [n_embd] sum of the prompt's hidden states     */
};

struct em_engine {
    const em_model *model;
    const em_vocab *vocab;
    em_context *ctx;
    em_engine_params p;
    int32_t n_vocab, n_embd;
    bool causal; /* false: an encoder, whose prompt runs in one step */

    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t wake;     /* work arrived, a request was cancelled, stop */
    pthread_cond_t idle;     /* nothing queued or running any more          */
    bool stop;
    bool draining;

    em_request *q_head, *q_tail; /* admission FIFO                          */
    int32_t n_queued;
    em_request **active;     /* [n_parallel] admitted requests              */
    int32_t n_active;
    bool *seq_busy;          /* [n_parallel] sequence id in use             */
    int32_t n_seq_busy;

    em_batch batch;
    em_request **row_req;    /* [batch capacity] request of each row        */
    int32_t *row_choice;     /* [batch capacity] choice, -1 for a prompt row */
    float *scratch;          /* [n_vocab] masked logits                     */
    float *biased;           /* [n_vocab] logits plus logit_bias, for logprobs */

    /* The notifier (see the top of the file).  Each listed request holds a
     * reference until it has been signalled. */
    pthread_t notifier;
    bool notifier_started;
    bool notifier_idle;      /* waiting on e->notify for requests to wake   */
    bool notifier_stop;
    pthread_cond_t notify;
    em_request **to_wake;    /* [wake_cap] requests with unsignalled events */
    em_request **waking;     /* [wake_cap] the notifier's batch             */
    int32_t n_to_wake, wake_cap;

    FILE *trace;             /* EMBER_STEP_TRACE (see the top); NULL without */
    uint64_t prompt_tokens, generated_tokens, cached_tokens;
    uint64_t steps, step_rows; /* batches computed and their rows          */
    double compute_s, host_s;  /* seconds in em_decode and around it       */
    em_engine_kv kv;         /* cache occupancy after the last step         */
    int32_t pub_seqs;        /* busy sequences when kv was taken            */
    em_histogram ttft, itl, duration;
};

em_engine_params em_engine_default_params(void) {
    em_engine_params p = {
        .n_parallel = 4,
        .n_ctx_seq = 0,
        .n_prefill = 256,
        .queue_max = 64,
        .n_threads = 0,
        .kv_type = EM_TYPE_F16,
        .embeddings = false,
    };
    return p;
}

void em_event_free(em_event *ev) {
    free(ev->text);
    free(ev->embedding);
    ev->text = NULL;
    ev->embedding = NULL;
}

/* ------------------------------------------------------------- requests */

static void request_free(em_request *r) {
    for (ev_node *n = r->head, *nx; n; n = nx) {
        nx = n->next;
        em_event_free(&n->ev);
        free(n);
    }
    if (r->ch)
        for (int32_t c = 0; c < r->params.n; c++) {
            em_sampler_free(r->ch[c].smp);
            if (r->ch[c].cstate) r->params.constraint->free_state(r->ch[c].cstate);
            em_text_out_free(&r->ch[c].out);
        }
    if (r->constraint_ref) r->constraint.release(r->constraint.ctx);
    for (int k = 0; k < EM_ENGINE_MAX_STOP; k++) free(r->stop[k]);
    free(r->ch);
    free(r->bias);
    free(r->prompt);
    free(r->emb_sum);
    pthread_cond_destroy(&r->cv);
    free(r);
}

/* Drops one reference; the caller holds e->mu. */
static void request_unref(em_request *r) {
    if (--r->refs == 0) request_free(r);
}

/* Appends an event (taking ownership of its buffers); caller holds e->mu.
 * When memory runs out the event is lost, but DONE and ERROR still end the
 * request: the client then sees an end without the missing text.
 *
 * When the notifier must be woken, a caller that passes notify gets
 * *notify = true and signals e->notify itself once it has dropped the
 * lock; without notify the signal is sent at once.  Signalled under the
 * lock, the notifier wakes only to block on the mutex the engine thread
 * still holds: a second sleep and wake, and two more system calls, for
 * every step's events. */
static void post_locked_notify(em_request *r, const em_event *ev, bool *notify) {
    if (r->ended) return;
    ev_node *n = malloc(sizeof *n);
    if (!n) {
        em_event tmp = *ev;
        em_event_free(&tmp);
        if (ev->kind != EM_EVENT_DONE && ev->kind != EM_EVENT_ERROR) return;
        static const em_event oom = {.kind = EM_EVENT_ERROR, .status = EM_ERR_NOMEM,
                                     .message = "out of memory"};
        n = malloc(sizeof *n);
        if (!n) {
            r->ended = true;
            pthread_cond_broadcast(&r->cv);
            return;
        }
        n->ev = oom;
    } else {
        n->ev = *ev;
    }
    n->next = NULL;
    if (r->tail) r->tail->next = n;
    else r->head = n;
    r->tail = n;
    if (ev->kind == EM_EVENT_DONE || ev->kind == EM_EVENT_ERROR) r->ended = true;
    em_engine *e = r->engine;
    if (r->wake_due) return;
    if (!e->notifier_started || e->n_to_wake == e->wake_cap) {
        pthread_cond_broadcast(&r->cv);
        return;
    }
    r->wake_due = true;
    r->refs++;
    e->to_wake[e->n_to_wake++] = r;
    if (e->notifier_idle) {
        /* Marked busy now, so that no other poster signals it too; it is
         * waiting on e->notify until the signal comes. */
        e->notifier_idle = false;
        if (notify) *notify = true;
        else pthread_cond_signal(&e->notify);
    }
}

static void post_locked(em_request *r, const em_event *ev) { post_locked_notify(r, ev, NULL); }

/* The notifier: signals the listed requests outside the lock (their
 * events were appended under it, so a client either finds them or is
 * already waiting when the signal comes), then drops their references. */
static void *notifier_main(void *arg) {
    em_engine *e = arg;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        if (e->n_to_wake == 0) {
            if (e->notifier_stop) break;
            e->notifier_idle = true;
            pthread_cond_wait(&e->notify, &e->mu);
            continue;
        }
        int32_t n = e->n_to_wake;
        memcpy(e->waking, e->to_wake, (size_t)n * sizeof *e->waking);
        e->n_to_wake = 0;
        for (int32_t i = 0; i < n; i++) e->waking[i]->wake_due = false;
        pthread_mutex_unlock(&e->mu);
        for (int32_t i = 0; i < n; i++) pthread_cond_broadcast(&e->waking[i]->cv);
        pthread_mutex_lock(&e->mu);
        for (int32_t i = 0; i < n; i++) request_unref(e->waking[i]);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

static void post(em_engine *e, em_request *r, const em_event *ev) {
    bool notify = false;
    pthread_mutex_lock(&e->mu);
    post_locked_notify(r, ev, &notify);
    pthread_mutex_unlock(&e->mu);
    if (notify) pthread_cond_signal(&e->notify);
}

/* Gives back a choice's sequence and its cache (engine thread). */
static void choice_release(em_engine *e, choice *c) {
    if (c->seq < 0) return;
    (void)em_kv_remove(e->ctx, c->seq, 0, -1); /* a valid id: cannot fail */
    pthread_mutex_lock(&e->mu);
    e->seq_busy[c->seq] = false;
    e->n_seq_busy--;
    pthread_mutex_unlock(&e->mu);
    c->seq = -1;
}

static void request_release_seqs(em_engine *e, em_request *r) {
    for (int32_t c = 0; c < r->params.n; c++) choice_release(e, &r->ch[c]);
}

/* Ends a request with an error (engine thread). */
static void request_fail(em_engine *e, em_request *r, em_status st, const char *fmt, ...) {
    em_event ev = {.kind = EM_EVENT_ERROR, .status = st};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ev.message, sizeof ev.message, fmt, ap);
    va_end(ap);
    request_release_seqs(e, r);
    post(e, r, &ev);
}

em_submit_result em_engine_submit(em_engine *e, const em_token *prompt, int32_t n_prompt,
                                  const em_gen_params *gp, em_request **out) {
    if (n_prompt <= 0 || !prompt) {
        em_error(EM_ERR_INVALID_ARG, "the prompt is empty");
        return EM_SUBMIT_INVALID;
    }
    if (gp->n < 1 || gp->n > e->p.n_parallel) {
        em_error(EM_ERR_INVALID_ARG, "n is %d; this server runs at most %d sequences at once", gp->n,
                 e->p.n_parallel);
        return EM_SUBMIT_INVALID;
    }
    if (n_prompt >= e->p.n_ctx_seq + (gp->embed ? 1 : 0)) {
        em_error(EM_ERR_INVALID_ARG, "the prompt is %d tokens; the context holds %d", n_prompt, e->p.n_ctx_seq);
        return EM_SUBMIT_INVALID;
    }
    if (gp->n_stop < 0 || gp->n_stop > EM_ENGINE_MAX_STOP || gp->top_logprobs > EM_ENGINE_MAX_TOP_LOGPROBS) {
        em_error(EM_ERR_INVALID_ARG, "too many stop strings or top logprobs");
        return EM_SUBMIT_INVALID;
    }
    if (gp->embed && !e->p.embeddings) {
        em_error(EM_ERR_UNSUPPORTED, "this engine was started without embeddings");
        return EM_SUBMIT_INVALID;
    }
    if (!gp->embed && !em_model_is_causal(e->model)) {
        em_error(EM_ERR_UNSUPPORTED, "this model (%s) is an encoder: it computes embeddings and cannot generate text",
                 em_model_arch(e->model));
        return EM_SUBMIT_INVALID;
    }
    for (int32_t i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= e->n_vocab) {
            em_error(EM_ERR_INVALID_ARG, "prompt token %d is outside the vocabulary", prompt[i]);
            return EM_SUBMIT_INVALID;
        }

    em_request *r = calloc(1, sizeof *r);
    if (!r) return EM_SUBMIT_NOMEM;
    pthread_cond_init(&r->cv, NULL);
    r->engine = e;
    r->params = *gp;
    r->refs = 2;
    r->n_prompt = n_prompt;
    r->prompt = malloc((size_t)n_prompt * sizeof *r->prompt);
    r->ch = calloc((size_t)gp->n, sizeof *r->ch);
    if (!r->prompt || !r->ch) goto nomem;
    memcpy(r->prompt, prompt, (size_t)n_prompt * sizeof *prompt);
    for (int32_t k = 0; k < gp->n_stop; k++)
        if (!(r->stop[k] = strdup(gp->stop[k]))) goto nomem;
    r->params.stop = (const char *const *)r->stop;
    if (gp->sampling.n_logit_bias > 0) {
        r->bias = malloc((size_t)gp->sampling.n_logit_bias * sizeof *r->bias);
        if (!r->bias) goto nomem;
        memcpy(r->bias, gp->sampling.logit_bias, (size_t)gp->sampling.n_logit_bias * sizeof *r->bias);
    }
    r->params.sampling.logit_bias = r->bias;
    if (gp->constraint) {
        r->constraint = *gp->constraint;
        r->params.constraint = &r->constraint;
    }
    if (gp->embed && !(r->emb_sum = calloc((size_t)e->n_embd, sizeof *r->emb_sum))) goto nomem;
    for (int32_t c = 0; c < gp->n; c++) {
        choice *ch = &r->ch[c];
        ch->seq = -1;
        ch->out.stop = r->params.stop;
        ch->out.n_stop = gp->n_stop;
        if (gp->embed) continue;
        em_sampler_params sp = r->params.sampling;
        sp.seed += (uint64_t)c;
        if (em_sampler_init(&ch->smp, &sp, e->n_vocab) != EM_OK) {
            r->refs = 1;
            request_unref(r);
            return EM_SUBMIT_INVALID;
        }
        for (int32_t i = 0; i < n_prompt; i++) em_sampler_accept(ch->smp, prompt[i]);
        if (gp->constraint && !(ch->cstate = gp->constraint->new_state(gp->constraint->ctx))) goto nomem;
    }
    r->t_submit = gp->t_arrival > 0 ? gp->t_arrival : em_time_s();

    pthread_mutex_lock(&e->mu);
    em_submit_result res = EM_SUBMIT_OK;
    if (e->draining || e->stop) res = EM_SUBMIT_SHUTTING_DOWN;
    /* The queue bounds requests that wait; one that can start at once
     * (nothing queued ahead, sequences free) is never refused. */
    else if (e->n_queued >= e->p.queue_max &&
             !(e->n_queued == 0 && e->p.n_parallel - e->n_seq_busy >= gp->n))
        res = EM_SUBMIT_QUEUE_FULL;
    if (res != EM_SUBMIT_OK) {
        pthread_mutex_unlock(&e->mu);
        r->refs = 1;
        request_unref(r);
        return res;
    }
    r->constraint_ref = gp->constraint != NULL;
    if (e->q_tail) e->q_tail->next_queued = r;
    else e->q_head = r;
    e->q_tail = r;
    e->n_queued++;
    pthread_cond_signal(&e->wake);
    pthread_mutex_unlock(&e->mu);
    *out = r;
    return EM_SUBMIT_OK;
nomem:
    r->refs = 1;
    request_unref(r);
    return EM_SUBMIT_NOMEM;
}

/* Client calls take only the request; it remembers its engine. */
static em_engine *engine_of(em_request *r) { return r->engine; }

bool em_request_next(em_request *r, em_event *ev, int timeout_ms) {
    em_engine *e = engine_of(r);
    struct timespec until = em_deadline_ms(timeout_ms);
    pthread_mutex_lock(&e->mu);
    while (!r->head) {
        if (timeout_ms <= 0) { /* only what has come: no wait, no system call */
            pthread_mutex_unlock(&e->mu);
            return false;
        }
        if (pthread_cond_timedwait(&r->cv, &e->mu, &until) == ETIMEDOUT && !r->head) {
            pthread_mutex_unlock(&e->mu);
            return false;
        }
    }
    ev_node *n = r->head;
    r->head = n->next;
    if (!r->head) r->tail = NULL;
    pthread_mutex_unlock(&e->mu);
    *ev = n->ev;
    free(n);
    return true;
}

/* Sets *flag under the lock and signals cv: how the engine thread is told
 * that a request was cancelled or that it must stop, and the notifier
 * that it must stop (each reads its flag under the lock before it waits). */
static void raise_flag(em_engine *e, bool *flag, pthread_cond_t *cv) {
    pthread_mutex_lock(&e->mu);
    *flag = true;
    pthread_cond_signal(cv);
    pthread_mutex_unlock(&e->mu);
}

void em_request_cancel(em_request *r) {
    em_engine *e = engine_of(r);
    raise_flag(e, &r->cancelled, &e->wake);
}

void em_request_release(em_request *r) {
    if (!r) return;
    em_engine *e = engine_of(r);
    pthread_mutex_lock(&e->mu);
    r->cancelled = true;
    pthread_cond_signal(&e->wake);
    request_unref(r);
    pthread_mutex_unlock(&e->mu);
}

/* ------------------------------------------------------------ admission */

static void post_cancelled_locked(em_request *r) {
    /* While the engine drains, a cancellation is the shutdown timeout's
     * (or the engine's stop), not the client's: the server says so with a
     * 503, which a client may retry elsewhere. */
    const em_engine *e = engine_of(r);
    em_event ev = {.kind = EM_EVENT_ERROR, .status = EM_ERR_INVALID_ARG, .shutdown = e->draining || e->stop};
    snprintf(ev.message, sizeof ev.message, ev.shutdown ? "the server shut down before the request finished"
                                                        : "the request was cancelled");
    post_locked(r, &ev);
}

/* Removes cancelled requests from the queue and the active list, and
 * admits queued requests while sequences are free.  Caller holds e->mu;
 * KV edits happen here only on the engine thread, with the lock dropped. */
static void engine_admit_locked(em_engine *e) {
    for (em_request **pp = &e->q_head; *pp;) {
        em_request *r = *pp;
        if (r->cancelled || e->stop) {
            *pp = r->next_queued;
            e->n_queued--;
            post_cancelled_locked(r);
            request_unref(r);
        } else {
            pp = &r->next_queued;
        }
    }
    e->q_tail = NULL;
    for (em_request *r = e->q_head; r; r = r->next_queued) e->q_tail = r;

    /* Requests that ended or were cancelled leave the active list. */
    int32_t kept = 0;
    for (int32_t i = 0; i < e->n_active; i++) {
        em_request *r = e->active[i];
        if ((r->cancelled || e->stop) && !r->ended) {
            pthread_mutex_unlock(&e->mu);
            request_release_seqs(e, r);
            pthread_mutex_lock(&e->mu);
            post_cancelled_locked(r);
        }
        if (r->ended) {
            em_histogram_observe(&e->duration, em_time_s() - r->t_submit);
            request_unref(r);
        } else {
            e->active[kept++] = r;
        }
    }
    e->n_active = kept;

    /* FIFO: the head waits until enough sequences are free, so a request
     * with a large n is not overtaken forever by small ones. */
    while (e->q_head && !e->stop && e->p.n_parallel - e->n_seq_busy >= e->q_head->params.n) {
        em_request *r = e->q_head;
        e->q_head = r->next_queued;
        if (!e->q_head) e->q_tail = NULL;
        e->n_queued--;
        r->next_queued = NULL;
        int32_t c = 0;
        for (em_seq_id s = 0; s < e->p.n_parallel && c < r->params.n; s++)
            if (!e->seq_busy[s]) {
                e->seq_busy[s] = true;
                r->ch[c++].seq = s;
            }
        e->n_seq_busy += r->params.n;
        r->n_live = r->params.n;
        r->admitted = true;
        e->active[e->n_active++] = r;
    }
}

/* ------------------------------------------------------------- sampling */

/* Writes the log-probability of token t under logits[n] and the top
 * alternatives into ev. */
static void fill_logprobs(const float *logits, int32_t n, em_token t, int32_t n_top, em_event *ev) {
    float mx = -INFINITY;
    for (int32_t i = 0; i < n; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    for (int32_t i = 0; i < n; i++) sum += exp((double)logits[i] - mx);
    float lse = mx + (float)log(sum);
    ev->logprob = logits[t] - lse;
    /* Insertion into a short sorted list: n_top is at most 20. */
    int32_t k = 0;
    for (int32_t i = 0; i < n && n_top > 0; i++) {
        float v = logits[i];
        if (k == n_top && v <= logits[ev->top[k - 1].token]) continue;
        int32_t j = k < n_top ? k++ : k - 1;
        while (j > 0 && logits[ev->top[j - 1].token] < v) {
            ev->top[j] = ev->top[j - 1];
            j--;
        }
        ev->top[j].token = i;
    }
    for (int32_t j = 0; j < k; j++) ev->top[j].logprob = logits[ev->top[j].token] - lse;
    ev->n_top = k;
}

/* Finishes a choice: posts FINISH, frees its sequence, and ends the
 * request after its last choice. */
static void choice_finish(em_engine *e, em_request *r, int32_t c, const char *reason) {
    choice *ch = &r->ch[c];
    ch->finished = true;
    choice_release(e, ch);
    em_event fin = {.kind = EM_EVENT_FINISH, .choice = c, .finish = reason};
    bool notify = false;
    pthread_mutex_lock(&e->mu);
    post_locked_notify(r, &fin, &notify);
    if (--r->n_live == 0) {
        em_event done = {.kind = EM_EVENT_DONE, .n_prompt = r->n_prompt, .n_generated = r->n_generated,
                         .n_cached = r->n_cached};
        post_locked_notify(r, &done, &notify);
        e->prompt_tokens += (uint64_t)r->n_prompt;
    }
    pthread_mutex_unlock(&e->mu);
    if (notify) pthread_cond_signal(&e->notify);
}

/* Samples the next token of choice c from its row's logits, posts the
 * text it releases, and decides whether the choice goes on. */
static void choice_step(em_engine *e, em_request *r, int32_t c, const float *logits) {
    choice *ch = &r->ch[c];
    const em_gen_params *gp = &r->params;
    em_token t;
    bool forced_end = false;
    if (ch->cstate && gp->constraint->done(ch->cstate)) {
        /* The constrained text is complete: nothing but the end may follow,
         * so the end-of-generation token is chosen without sampling. */
        t = em_vocab_eos(e->vocab) >= 0 ? em_vocab_eos(e->vocab) : em_vocab_eot(e->vocab);
        if (t < 0) {
            em_strbuf rest = {0};
            bool ok = em_text_out_flush(&ch->out, &rest);
            em_strbuf_free(&rest); /* only held-back bytes; no token to carry them */
            if (ok) choice_finish(e, r, c, "stop");
            else request_fail(e, r, EM_ERR_NOMEM, "out of memory");
            return;
        }
        forced_end = true;
    } else if (ch->cstate) {
        memcpy(e->scratch, logits, (size_t)e->n_vocab * sizeof *e->scratch);
        if (!gp->constraint->mask(ch->cstate, e->scratch, e->n_vocab)) {
            request_fail(e, r, EM_ERR_UNSUPPORTED, "the output grammar cannot be followed: %s", em_last_error());
            return;
        }
        t = em_sampler_sample(ch->smp, e->scratch);
        if (!gp->constraint->accept(ch->cstate, t)) forced_end = true;
    } else {
        t = em_sampler_sample(ch->smp, logits);
    }
    em_sampler_accept(ch->smp, t);

    double now = em_time_s();
    pthread_mutex_lock(&e->mu);
    if (!r->any_token) em_histogram_observe(&e->ttft, now - r->t_submit);
    else if (ch->n_gen > 0) em_histogram_observe(&e->itl, now - ch->t_last);
    e->generated_tokens++;
    pthread_mutex_unlock(&e->mu);
    r->any_token = true;
    ch->t_last = now;
    ch->n_gen++;
    r->n_generated++;

    em_event ev = {.kind = EM_EVENT_TOKEN, .choice = c, .token = t};
    if (gp->top_logprobs >= 0 && t >= 0 && t < e->n_vocab) {
        /* The model's distribution after logit_bias, before temperature. */
        const float *lp = logits;
        if (gp->sampling.n_logit_bias > 0) {
            memcpy(e->biased, logits, (size_t)e->n_vocab * sizeof *e->biased);
            for (int32_t k = 0; k < gp->sampling.n_logit_bias; k++)
                e->biased[gp->sampling.logit_bias[k].token] += gp->sampling.logit_bias[k].bias;
            lp = e->biased;
        }
        fill_logprobs(lp, e->n_vocab, t, gp->top_logprobs, &ev);
    }
    em_strbuf delta = {0};
    const char *reason = NULL;
    bool oom = false;
    if (forced_end || (!gp->ignore_eos && em_vocab_is_eog(e->vocab, t))) {
        reason = "stop";
        oom = !em_text_out_flush(&ch->out, &delta);
    } else {
        char piece[512];
        int32_t len = em_token_to_piece(e->vocab, t, piece, sizeof piece, false);
        int rc = em_text_out_push(&ch->out, piece, len > 0 ? (size_t)len : 0, &delta);
        if (rc < 0) oom = true;
        else if (rc == 1) reason = "stop";
        else if ((gp->max_tokens >= 0 && ch->n_gen >= gp->max_tokens) || ch->n_past + 1 >= e->p.n_ctx_seq) {
            /* The prompt and the answer together fill the context: the token
             * just sampled would take its last position. */
            reason = "length";
            oom = !em_text_out_flush(&ch->out, &delta);
        }
    }
    if (oom) {
        em_strbuf_free(&delta);
        request_fail(e, r, EM_ERR_NOMEM, "out of memory");
        return;
    }
    ev.text = delta.p;
    ev.text_len = delta.n;
    post(e, r, &ev);
    if (reason) choice_finish(e, r, c, reason);
    else ch->next = t;
}

/* Pools a prompt row's hidden state into an embedding request as the
 * model says: the first row for [CLS] pooling, else the sum of the rows
 * (mean pooling, the default for models that name none); after the last
 * prompt row, posts the vector scaled to unit length, which for a sum is
 * the mean's direction. */
static void embed_row(em_engine *e, em_request *r, int32_t row, em_pos pos, bool last) {
    const float *h = eng_get_embeddings(e->ctx, row);
    if (!h) {
        request_fail(e, r, EM_ERR_INTERNAL, "no hidden state for row %d", row);
        return;
    }
    if (em_model_pooling(e->model) != EM_POOL_CLS || pos == 0)
        for (int32_t j = 0; j < e->n_embd; j++) r->emb_sum[j] += h[j];
    if (!last) return;
    float *v = malloc((size_t)e->n_embd * sizeof *v);
    if (!v) {
        request_fail(e, r, EM_ERR_NOMEM, "out of memory");
        return;
    }
    double norm = 0;
    for (int32_t j = 0; j < e->n_embd; j++) norm += r->emb_sum[j] * r->emb_sum[j];
    norm = sqrt(norm);
    for (int32_t j = 0; j < e->n_embd; j++) v[j] = (float)(norm > 0 ? r->emb_sum[j] / norm : 0.0);
    request_release_seqs(e, r);
    em_event ev = {.kind = EM_EVENT_EMBEDDING, .embedding = v, .n_embd = e->n_embd};
    em_event done = {.kind = EM_EVENT_DONE, .n_prompt = r->n_prompt};
    pthread_mutex_lock(&e->mu);
    post_locked(r, &ev);
    post_locked(r, &done);
    e->prompt_tokens += (uint64_t)r->n_prompt;
    pthread_mutex_unlock(&e->mu);
}

/* ----------------------------------------------------------------- step */

/* Attaches cached prompt blocks to the first sequence of a new request. */
static void reuse_prefix(em_engine *e, em_request *r) {
    if (r->params.embed) return; /* embeddings need every row's hidden state */
    int32_t got = eng_kv_reuse_prefix(e->ctx, r->ch[0].seq, r->prompt, r->n_prompt);
    if (got > 0 && got < r->n_prompt) {
        r->n_done = r->n_cached = got;
        pthread_mutex_lock(&e->mu);
        e->cached_tokens += (uint64_t)got;
        pthread_mutex_unlock(&e->mu);
    }
}

/* Builds one batch: a row for every generating choice, then prompt rows
 * up to the prefill budget (--prefill), shared by the prompts waiting:
 *  - the oldest unfinished prompt always gets rows: all it has left, or a
 *    chunk of the budget when more is left (chunked prefill: a long
 *    prompt cannot stall the streams for more than one budget's step);
 *  - later prompts, in admission order, join the step only when all they
 *    have left fits in what remains of the budget.
 * A partial chunk of a second prompt would only lengthen the step, and so
 * delay the first tokens of the prompts that end in it and every stream's
 * next token, without giving anyone a first token: when prompts arrive
 * together each step ends as many of them as fit, and the first of them
 * answers after one prompt's time instead of after the whole budget's.
 * Returns the rows. */
static int32_t build_batch(em_engine *e, em_request **act, int32_t n_act) {
    em_batch *b = &e->batch;
    em_batch_clear(b);
    for (int32_t i = 0; i < n_act; i++) {
        em_request *r = act[i];
        if (r->n_done < r->n_prompt) continue;
        for (int32_t c = 0; c < r->params.n; c++) {
            choice *ch = &r->ch[c];
            if (ch->finished || ch->seq < 0) continue;
            e->row_req[b->n_tokens] = r;
            e->row_choice[b->n_tokens] = c;
            em_batch_add(b, ch->next, ch->n_past, ch->seq, true);
        }
    }
    int32_t budget = e->p.n_prefill;
    bool first = true;
    for (int32_t i = 0; i < n_act && budget > 0; i++) {
        em_request *r = act[i];
        if (r->n_done >= r->n_prompt) continue;
        if (r->n_done == 0) reuse_prefix(e, r);
        int32_t take = EM_MIN(r->n_prompt - r->n_done, budget);
        /* An encoder's rows attend to the whole text, so its prompt runs
         * in one step; the prefill budget is at least a context (set at
         * init), so it fits in the next step with a full budget. */
        if (!e->causal && take < r->n_prompt) continue;
        if (!first && take < r->n_prompt - r->n_done) continue;
        first = false;
        for (int32_t j = r->n_done; j < r->n_done + take; j++) {
            e->row_req[b->n_tokens] = r;
            e->row_choice[b->n_tokens] = -1;
            em_batch_add(b, r->prompt[j], j, r->ch[0].seq, r->params.embed || j == r->n_prompt - 1);
        }
        budget -= take;
    }
    return b->n_tokens;
}

/* After the last prompt row: the other choices share the prompt's cache,
 * and every choice samples its first token from the same logits. */
static void prompt_done(em_engine *e, em_request *r, const float *logits) {
    for (int32_t c = 0; c < r->params.n; c++) {
        if (c > 0 && eng_kv_seq_cp(e->ctx, r->ch[0].seq, r->ch[c].seq, 0, r->n_prompt) != EM_OK) {
            request_fail(e, r, EM_ERR_INTERNAL, "cannot share the prompt: %s", em_last_error());
            return;
        }
        r->ch[c].n_past = r->n_prompt;
    }
    for (int32_t c = 0; c < r->params.n && !r->ended; c++) choice_step(e, r, c, logits);
}

/* One step's rows and where its time went, added to the statistics under
 * the lock by the engine loop. */
typedef struct step_time {
    int32_t rows;        /* 0: nothing was computed          */
    int32_t decode_rows; /* of them rows of generating choices */
    double compute_s;    /* in em_decode                     */
    double host_s;       /* building the batch, then sampling, text and events */
    double t[4];         /* begin, em_decode's begin and end, end (em_time_s) */
} step_time;

static void engine_step(em_engine *e, em_request **act, int32_t n_act, step_time *tm) {
    double t0 = em_time_s();
    int32_t n_rows = build_batch(e, act, n_act);
    if (n_rows == 0) return;
    em_batch *b = &e->batch;
    double t1 = em_time_s();
    em_status st = em_decode(e->ctx, b);
    double t2 = em_time_s();
    tm->rows = n_rows;
    tm->compute_s = t2 - t1;
    tm->host_s = t1 - t0;
    tm->t[0] = t0;
    tm->t[1] = t1;
    tm->t[2] = t2;
    tm->t[3] = t2;
    /* Only the trace reads the split, so only a traced step counts it. */
    if (e->trace)
        for (int32_t i = 0; i < n_rows; i++) tm->decode_rows += e->row_choice[i] >= 0;
    if (st != EM_OK) {
        /* Nothing was computed: every request in the batch fails. */
        char msg[200];
        snprintf(msg, sizeof msg, "%s", em_last_error());
        for (int32_t i = 0; i < n_rows; i++)
            if (!e->row_req[i]->ended) request_fail(e, e->row_req[i], st, "decode failed: %s", msg);
        return;
    }
    for (int32_t i = 0; i < n_rows; i++) {
        em_request *r = e->row_req[i];
        if (r->ended) continue;
        em_status rs = eng_row_status(b, i);
        if (rs != EM_OK) {
            request_fail(e, r, rs, "%s", rs == EM_ERR_CONTEXT_FULL
                                                       ? "the KV cache is full"
                                                       : "the engine rejected a row");
            continue;
        }
        int32_t c = e->row_choice[i];
        if (c >= 0) {
            r->ch[c].n_past++;
            choice_step(e, r, c, em_get_logits(e->ctx, i));
            continue;
        }
        em_pos pos = b->pos[i];
        r->n_done = pos + 1;
        bool last = pos == r->n_prompt - 1;
        if (r->params.embed) embed_row(e, r, i, pos, last);
        else if (last) prompt_done(e, r, em_get_logits(e->ctx, i));
    }
    tm->t[3] = em_time_s();
    tm->host_s += tm->t[3] - t2;
}

/* Publishes the cache occupancy together with the count of busy
 * sequences, so that a reader never sees one updated without the other.
 * Caller holds e->mu; only the engine thread touches the cache. */
static void publish_kv_locked(em_engine *e) {
    em_engine_kv kv;
    int32_t busy = e->n_seq_busy;
    pthread_mutex_unlock(&e->mu);
    eng_kv_stats(e->ctx, e->p.n_parallel, &kv);
    pthread_mutex_lock(&e->mu);
    e->kv = kv;
    e->pub_seqs = busy;
}

static void *engine_main(void *arg) {
    em_engine *e = arg;
    em_request **act = malloc((size_t)e->p.n_parallel * sizeof *act);
    pthread_mutex_lock(&e->mu);
    while (act) {
        engine_admit_locked(e);
        publish_kv_locked(e);
        if (e->stop && e->n_active == 0) break;
        if (e->n_active == 0) {
            /* publish_kv_locked lets go of the lock: a request submitted
             * meanwhile is queued and its wake-up already sent, so it is
             * admitted now rather than waited for. */
            if (e->n_queued > 0 && !e->stop) continue;
            pthread_cond_broadcast(&e->idle);
            double t_wait = e->trace ? em_time_s() : 0;
            pthread_cond_wait(&e->wake, &e->mu);
            if (e->trace) fprintf(e->trace, "I %.6f %.6f %d\n", t_wait, em_time_s(), e->n_queued);
            continue;
        }
        int32_t n_act = e->n_active;
        memcpy(act, e->active, (size_t)n_act * sizeof *act);
        pthread_mutex_unlock(&e->mu);
        step_time tm = {0};
        engine_step(e, act, n_act, &tm);
        pthread_mutex_lock(&e->mu);
        if (tm.rows > 0 && e->trace)
            fprintf(e->trace, "S %.6f %.6f %.6f %.6f %d %d %d %d\n", tm.t[0], tm.t[1], tm.t[2], tm.t[3],
                    tm.decode_rows, tm.rows - tm.decode_rows, n_act, e->n_queued);
        if (tm.rows > 0) {
            e->steps++;
            e->step_rows += (uint64_t)tm.rows;
            e->compute_s += tm.compute_s;
            e->host_s += tm.host_s;
        }
    }
    pthread_cond_broadcast(&e->idle);
    pthread_mutex_unlock(&e->mu);
    free(act);
    return NULL;
}

/* ------------------------------------------------------------ lifecycle */

em_status em_engine_init(em_engine **out, const em_model *model, const em_engine_params *params) {
    em_engine_params p = *params;
    int32_t n_train = em_model_n_ctx_train(model);
    if (p.n_ctx_seq <= 0) p.n_ctx_seq = n_train > 0 ? EM_MIN(n_train, 4096) : 2048;
    if (p.n_parallel < 1 || p.n_parallel > 4096)
        return em_error(EM_ERR_INVALID_ARG, "engine: parallel %d out of range", p.n_parallel);
    if (p.n_prefill < 1) p.n_prefill = 256;
    if (!em_model_is_causal(model) && p.n_prefill < p.n_ctx_seq) p.n_prefill = p.n_ctx_seq;
    if (p.queue_max < 0) p.queue_max = 0;
    if (p.queue_max > (1 << 20)) p.queue_max = 1 << 20; /* as the CLI caps it; keeps sums below in range */
    if (p.embeddings && !eng_has_embeddings())
        return em_error(EM_ERR_UNSUPPORTED, "engine: this build has no embeddings");
    if ((int64_t)p.n_ctx_seq * p.n_parallel > (1 << 24))
        return em_error(EM_ERR_INVALID_ARG, "engine: %d sequences of %d positions is too large a cache",
                        p.n_parallel, p.n_ctx_seq);

    em_engine *e = calloc(1, sizeof *e);
    if (!e) return em_error(EM_ERR_NOMEM, "engine: out of memory");
    e->model = model;
    e->vocab = em_model_vocab(model);
    e->p = p;
    e->n_vocab = em_model_n_vocab(model);
    e->n_embd = em_model_n_embd(model);
    e->causal = em_model_is_causal(model);
    const char *trace = getenv("EMBER_STEP_TRACE");
    if (trace && *trace) {
        e->trace = fopen(trace, "w");
        if (!e->trace) fprintf(stderr, "engine: cannot write the step trace %s\n", trace);
        else setvbuf(e->trace, NULL, _IOFBF, (size_t)1 << 20);
    }
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->wake, NULL);
    pthread_cond_init(&e->idle, NULL);
    pthread_cond_init(&e->notify, NULL);

    em_context_params cp = em_context_default_params();
    cp.n_ctx = p.n_ctx_seq * p.n_parallel;
    cp.n_batch = p.n_prefill + p.n_parallel;
    cp.n_threads = p.n_threads;
    cp.kv_type = p.kv_type;
    cp.n_seq_max = p.n_parallel;
    cp.embeddings = p.embeddings;
    em_status st = em_context_init(&e->ctx, model, &cp);
    if (st != EM_OK) {
        em_engine_free(e);
        return st;
    }
    int32_t cap = cp.n_batch;
    e->active = calloc((size_t)p.n_parallel, sizeof *e->active);
    e->seq_busy = calloc((size_t)p.n_parallel, sizeof *e->seq_busy);
    e->row_req = calloc((size_t)cap, sizeof *e->row_req);
    e->row_choice = calloc((size_t)cap, sizeof *e->row_choice);
    /* Requests with events: the admitted ones, and queued ones cancelled. */
    e->wake_cap = p.n_parallel + p.queue_max + 1;
    e->to_wake = malloc((size_t)e->wake_cap * sizeof *e->to_wake);
    e->waking = malloc((size_t)e->wake_cap * sizeof *e->waking);
    e->scratch = malloc((size_t)e->n_vocab * sizeof *e->scratch);
    e->biased = malloc((size_t)e->n_vocab * sizeof *e->biased);
    if (!e->biased || !e->to_wake || !e->waking || !e->active || !e->seq_busy || !e->row_req || !e->row_choice || !e->scratch ||
        em_batch_init(&e->batch, cap) != EM_OK) {
        em_engine_free(e);
        return em_error(EM_ERR_NOMEM, "engine: out of memory");
    }
    eng_kv_stats(e->ctx, p.n_parallel, &e->kv);
    /* Without the notifier, events wake their clients directly. */
    e->notifier_started = pthread_create(&e->notifier, NULL, notifier_main, e) == 0;
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        em_engine_free(e);
        return em_error(EM_ERR_INTERNAL, "engine: cannot start its thread");
    }
    e->thread_started = true;
    *out = e;
    return EM_OK;
}

void em_engine_drain(em_engine *e, double timeout_s) {
    pthread_mutex_lock(&e->mu);
    e->draining = true;
    double until = em_time_s() + timeout_s;
    while (e->n_active + e->n_queued > 0) {
        double left = until - em_time_s();
        if (left <= 0) {
            for (int32_t i = 0; i < e->n_active; i++) e->active[i]->cancelled = true;
            for (em_request *r = e->q_head; r; r = r->next_queued) r->cancelled = true;
            pthread_cond_signal(&e->wake);
            until = em_time_s() + 3600;
        }
        struct timespec ts = em_deadline_ms(100);
        pthread_cond_timedwait(&e->idle, &e->mu, &ts);
    }
    pthread_mutex_unlock(&e->mu);
}

void em_engine_free(em_engine *e) {
    if (!e) return;
    if (e->thread_started) {
        raise_flag(e, &e->stop, &e->wake);
        pthread_join(e->thread, NULL);
    }
    if (e->notifier_started) {
        raise_flag(e, &e->notifier_stop, &e->notify);
        pthread_join(e->notifier, NULL);
    }
    if (e->trace) fclose(e->trace);
    em_batch_free(&e->batch);
    free(e->to_wake);
    free(e->waking);
    free(e->active);
    free(e->seq_busy);
    free(e->row_req);
    free(e->row_choice);
    free(e->scratch);
    free(e->biased);
    em_context_free(e->ctx);
    pthread_cond_destroy(&e->wake);
    pthread_cond_destroy(&e->idle);
    pthread_cond_destroy(&e->notify);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

void em_engine_get_stats(em_engine *e, em_engine_stats *out) {
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&e->mu);
    em_engine_kv kv = e->kv;
    out->queued = e->n_queued;
    out->active_requests = e->n_active;
    out->active_sequences = e->pub_seqs;
    out->n_parallel = e->p.n_parallel;
    out->prompt_tokens = e->prompt_tokens;
    out->generated_tokens = e->generated_tokens;
    out->prefix_cached_tokens = e->cached_tokens;
    out->steps = e->steps;
    out->step_rows = e->step_rows;
    out->compute_s = e->compute_s;
    out->host_s = e->host_s;
    out->ttft = e->ttft;
    out->itl = e->itl;
    out->duration = e->duration;
    pthread_mutex_unlock(&e->mu);
    out->kv_block_size = kv.block_size;
    out->kv_blocks_used = kv.n_used;
    out->kv_blocks_cached = kv.n_cached;
    out->kv_blocks_free = kv.n_free;
    out->prefix_hits = kv.prefix_hits;
    out->kv_bytes = kv.bytes;
    out->kv_bytes_used = kv.bytes_used;
}

const em_model *em_engine_model(const em_engine *e) { return e->model; }

int32_t em_engine_n_ctx_seq(const em_engine *e) { return e->p.n_ctx_seq; }
