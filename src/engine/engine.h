/*
 * engine.h - the scheduler behind `ember serve`.
 *
 * One engine thread owns the em_context.  Other threads submit requests
 * (already tokenized and validated) and read each request's events: text
 * deltas with their logprobs, one finish per choice, then one done with
 * the usage (or one error).  Every step the engine builds a single batch
 * from all running sequences: one row for each sequence that is
 * generating, plus prompt chunks of admitted requests up to a token
 * budget, so a long prompt is spread over several steps and never stalls
 * the users who are streaming (continuous batching, chunked prefill).
 *
 * A request holds one KV sequence per choice (n > 1 shares the prompt's
 * cache through em_kv_seq_cp).  Requests wait in a bounded FIFO until
 * enough sequences are free; a cancelled request (the client went away)
 * gives its sequences and cache back at the next step.
 */
#ifndef EM_ENGINE_H
#define EM_ENGINE_H

#include "ember.h"
#include "engine/metrics.h"

#include <stdbool.h>
#include <stdint.h>

#define EM_ENGINE_MAX_STOP 4          /* stop strings per request (OpenAI's limit) */
#define EM_ENGINE_MAX_TOP_LOGPROBS 20 /* alternatives per token (OpenAI's limit)   */

typedef struct em_engine em_engine;
typedef struct em_request em_request;

typedef struct em_engine_params {
    int32_t n_parallel;  /* sequences that run at once (KV sequence ids)          */
    int32_t n_ctx_seq;   /* positions one sequence may hold, prompt + generated   */
    int32_t n_prefill;   /* prompt tokens computed per step (chunked prefill)     */
    int32_t queue_max;   /* requests that may wait for admission                  */
    int32_t n_threads;   /* compute threads; 0 = physical cores                   */
    em_type kv_type;     /* cache storage type                                    */
    bool embeddings;     /* keep hidden states: needed for embedding requests     */
} em_engine_params;

em_engine_params em_engine_default_params(void);

/*
 * Constrained decoding (JSON schema, forced tool calls) as the engine sees
 * it (the server builds it from src/sample/grammar.h): each choice gets
 * its own state from new_state, which masks the
 * logits of tokens the constraint forbids (sets them to -INFINITY) and
 * learns every token chosen.  done() says the constraint is complete and
 * only an end-of-generation token may follow.
 */
typedef struct em_constraint {
    void *ctx;                                              /* owned by the caller       */
    void *(*new_state)(void *ctx);                          /* NULL: out of memory       */
    bool (*mask)(void *state, float *logits, int32_t n_vocab); /* false: the state cannot go on */
    bool (*accept)(void *state, em_token t);                /* false: t was not allowed  */
    bool (*done)(void *state);
    void (*free_state)(void *state);
    void (*release)(void *ctx);    /* the engine is done with ctx for one request */
} em_constraint;

typedef struct em_gen_params {
    int32_t max_tokens;      /* generated tokens per choice; < 0: until the context is full */
    int32_t n;               /* choices, each its own sequence                              */
    em_sampler_params sampling; /* choice i uses seed + i; logit_bias is copied             */
    const char *const *stop; /* [n_stop] stop strings, copied                               */
    int32_t n_stop;
    int32_t top_logprobs;    /* < 0: no logprobs; else alternatives per token (<= 20)       */
    bool ignore_eos;         /* keep generating past end-of-generation tokens               */
    const em_constraint *constraint; /* NULL: free text; copied; on EM_SUBMIT_OK the engine
                                      * calls constraint->release(ctx) once, when the request
                                      * is freed, so ctx must stay valid until then          */
    bool embed;              /* compute the prompt only and post its mean-pooled embedding  */
    double t_arrival;        /* em_time_s() when the request arrived (0: at submit), for    */
                             /* the time-to-first-token histogram                           */
} em_gen_params;

typedef enum em_event_kind {
    EM_EVENT_TOKEN,     /* one generated token of a choice and the text it released */
    EM_EVENT_FINISH,    /* a choice ended                                          */
    EM_EVENT_DONE,      /* the whole request ended; usage is set                   */
    EM_EVENT_EMBEDDING, /* the pooled embedding of an embed request (then DONE)    */
    EM_EVENT_ERROR      /* the request failed; nothing follows                     */
} em_event_kind;

typedef struct em_top_logprob {
    em_token token;
    float logprob;
} em_top_logprob;

typedef struct em_event {
    em_event_kind kind;
    int32_t choice;           /* TOKEN, FINISH                                        */
    char *text;               /* TOKEN: released text (valid UTF-8, maybe empty)     */
    size_t text_len;
    em_token token;           /* TOKEN                                                */
    float logprob;            /* TOKEN with logprobs: log-softmax of the raw logits   */
    int32_t n_top;            /* TOKEN with logprobs: entries in top                  */
    em_top_logprob top[EM_ENGINE_MAX_TOP_LOGPROBS];
    const char *finish;       /* FINISH: "stop" or "length"                           */
    int32_t n_prompt;         /* DONE: prompt tokens                                  */
    int32_t n_generated;      /* DONE: generated tokens, all choices                  */
    int32_t n_cached;         /* DONE: prompt tokens reused from the prefix cache     */
    float *embedding;         /* EMBEDDING: [n_embd] unit-length vector               */
    int32_t n_embd;
    em_status status;         /* ERROR                                                */
    bool shutdown;            /* ERROR: cancelled by the engine's drain or stop       */
    char message[256];        /* ERROR                                                */
} em_event;

/* Frees what an event owns (text, embedding). */
void em_event_free(em_event *ev);

typedef enum em_submit_result {
    EM_SUBMIT_OK,
    EM_SUBMIT_QUEUE_FULL,   /* try again later (429)                 */
    EM_SUBMIT_SHUTTING_DOWN,/* the server is draining (503)          */
    EM_SUBMIT_INVALID,      /* bad parameters; em_last_error() says why */
    EM_SUBMIT_NOMEM
} em_submit_result;

em_status em_engine_init(em_engine **out, const em_model *model, const em_engine_params *params);
/* Cancels whatever still runs, stops the thread and frees everything. */
void em_engine_free(em_engine *e);

/* Enqueues a request; the prompt is copied.  On EM_SUBMIT_OK *out holds
 * the request, which the caller releases with em_request_release. */
em_submit_result em_engine_submit(em_engine *e, const em_token *prompt, int32_t n_prompt,
                                  const em_gen_params *params, em_request **out);

/* Waits up to timeout_ms for the next event; false on timeout.  A
 * timeout_ms of 0 or less takes only an event that is already there,
 * without waiting.  After an event of kind DONE or ERROR no more come. */
bool em_request_next(em_request *r, em_event *ev, int timeout_ms);
/* Asks the engine to stop the request and free its sequences. */
void em_request_cancel(em_request *r);
/* Drops the caller's reference (cancelling the request if it still runs). */
void em_request_release(em_request *r);

/* Stops admitting requests, lets running and queued ones finish for up to
 * timeout_s seconds, then cancels the rest.  Returns once nothing runs. */
void em_engine_drain(em_engine *e, double timeout_s);

typedef struct em_engine_stats {
    int32_t queued;             /* requests waiting for admission          */
    int32_t active_requests;    /* requests admitted and not finished      */
    int32_t active_sequences;   /* sequences holding KV                    */
    int32_t n_parallel;
    uint64_t prompt_tokens;     /* all time                                */
    uint64_t generated_tokens;  /* all time                                */
    uint64_t prefix_cached_tokens; /* prompt positions reused from the cache */
    int32_t kv_block_size;      /* positions per KV block                  */
    int32_t kv_blocks_used;     /* blocks referenced by a sequence         */
    int32_t kv_blocks_cached;   /* unreferenced blocks kept for reuse      */
    int32_t kv_blocks_free;     /* blocks holding nothing                  */
    uint64_t prefix_hits;       /* blocks reused from the prefix cache     */
    uint64_t kv_bytes;          /* KV memory allocated, every layer group  */
    uint64_t kv_bytes_used;     /* of it in blocks a sequence holds        */
    uint64_t steps;             /* batches computed                        */
    uint64_t step_rows;         /* rows of those batches, prompt and decode */
    double compute_s;           /* wall seconds inside em_decode           */
    double host_s;              /* wall seconds of the steps outside it:   */
                                /* batch, sampling, text, events           */
    em_histogram ttft;          /* submit to first token, seconds          */
    em_histogram itl;           /* between tokens of one choice, seconds   */
    em_histogram duration;      /* submit to done, seconds                 */
} em_engine_stats;

void em_engine_get_stats(em_engine *e, em_engine_stats *out);

const em_model *em_engine_model(const em_engine *e);
/* Positions one request may use, prompt and answer together. */
int32_t em_engine_n_ctx_seq(const em_engine *e);

#endif
