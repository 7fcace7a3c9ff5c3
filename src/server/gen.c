/*
 * gen.c - the generation endpoints: prompt, submission, and turning the
 * engine's events into OpenAI's answers.
 *
 * A job is one HTTP request.  A completions request with several prompts
 * submits one engine request per prompt; choice i of prompt p is answer
 * index p * n + i.  Events are read request by request (the engine runs
 * them all at once; their events wait in their queues), either into one
 * JSON answer or, for streams, into server-sent events that the response
 * callback hands to libmicrohttpd as the client reads them.
 */
#include "server/internal.h"

#include "core/core.h"
#include "server/prompt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_PROMPTS 64

typedef struct gen_choice {
    em_strbuf text;       /* the answer so far (streams: only while buffered) */
    json_t *lp;           /* chat: logprobs.content entries; completions: the logprobs object */
    json_t *lp_held;      /* the same shape: entries of tokens whose text is still held back */
    size_t offset;        /* completions: bytes of text before the next token  */
    const char *finish;
    bool started;         /* chat streams: the role delta was sent             */
    size_t sent;          /* tool streams: bytes of text already sent as content */
} gen_choice;

/* One generation request, on the heap.  It owns its parsed request, the
 * prompt, the engine requests, the choices and the stream buffer; s and cs
 * are the server's and the connection's, borrowed.  job_free frees it:
 * em_gen_handle does for a whole JSON answer, and for a stream the
 * response's stream_free does once libmicrohttpd is done with it. */
typedef struct gen_job {
    em_server *s;
    em_conn *cs;
    em_api_request req;
    em_prompt prompt;             /* rendered chat prompt and tool-call syntax */
    int32_t n_req;                /* engine requests submitted, one per prompt */
    int32_t n_prompts;            /* prompts (completions: up to MAX_PROMPTS)  */
    em_token *toks[MAX_PROMPTS];  /* token ids of prompts not yet submitted    */
    int32_t ns[MAX_PROMPTS];      /* their lengths                             */
    em_request *r[MAX_PROMPTS];
    char *echo[MAX_PROMPTS];      /* completions echo: each prompt's text      */
    int32_t cur;                  /* the request whose events are being read   */
    gen_choice *ch;               /* [n_req * req.n]                           */
    int32_t n_ch;
    char id[48];
    long long created;
    int32_t prompt_tokens, completion_tokens;
    bool buffered;                /* tools: text is parsed when a choice ends  */
    bool tool_stream;             /* a buffered stream that sends the text     */
                                  /* before any possible tool call at once     */
    em_strbuf out;                /* stream bytes not yet handed to the client */
    size_t out_pos;
    bool done;                    /* the stream's last event is in out         */
    bool failed;
    em_api_error err;             /* the failure of a non-streamed job         */
    em_constraint constraint;     /* JSON schema / forced tool call            */
    bool has_constraint;
    double t_checked;             /* when the client's socket was last looked at */
} gen_job;

/* ----------------------------------------------------------- job life */

static void job_free(gen_job *j) {
    if (!j) return;
    for (int32_t i = 0; i < j->n_req; i++) em_request_release(j->r[i]);
    for (int32_t i = 0; i < MAX_PROMPTS; i++) free(j->echo[i]);
    for (int32_t i = 0; i < MAX_PROMPTS; i++) free(j->toks[i]);
    for (int32_t i = 0; i < j->n_ch; i++) {
        em_strbuf_free(&j->ch[i].text);
        json_decref(j->ch[i].lp);
        json_decref(j->ch[i].lp_held);
    }
    free(j->ch);
    em_strbuf_free(&j->out);
    if (j->has_constraint) em_prompt_constraint_free(&j->constraint);
    em_prompt_free(&j->prompt);
    em_api_request_free(&j->req);
    free(j);
}

/* A token's text as a JSON string (invalid UTF-8 becomes U+FFFD) and its
 * raw bytes. */
static json_t *token_string(em_server *s, em_token t, json_t **bytes) {
    char piece[512];
    int32_t n = em_token_to_piece(s->vocab, t, piece, sizeof piece, true);
    if (n < 0) n = 0;
    em_strbuf u = {0};
    em_utf8_take(piece, (size_t)n, true, &u);
    json_t *str = json_stringn(u.p ? u.p : "", u.n);
    em_strbuf_free(&u);
    if (bytes) {
        *bytes = json_array();
        for (int32_t i = 0; i < n; i++) json_array_append_new(*bytes, json_integer((unsigned char)piece[i]));
    }
    return str;
}

static int32_t token_len(em_server *s, em_token t) {
    char piece[512];
    int32_t n = em_token_to_piece(s->vocab, t, piece, sizeof piece, true);
    return n > 0 ? n : 0;
}

/* A log-probability as JSON: -inf (a banned token) has no JSON spelling,
 * so it is reported as the most negative float, as OpenAI reports -9999. */
static json_t *lp_json(float lp) { return json_real(isfinite(lp) ? lp : -9999.0); }

/* The chat shape of one token's logprobs. */
static json_t *chat_lp_entry(em_server *s, const em_event *ev) {
    /* token_string fills the bytes array: call it before packing. */
    json_t *bytes = NULL;
    json_t *str = token_string(s, ev->token, &bytes);
    json_t *e = json_pack("{s:o, s:o, s:o}", "token", str, "logprob", lp_json(ev->logprob), "bytes", bytes);
    json_t *top = json_array();
    for (int32_t k = 0; k < ev->n_top; k++) {
        json_t *b = NULL;
        json_t *ts = token_string(s, ev->top[k].token, &b);
        json_array_append_new(top, json_pack("{s:o, s:o, s:o}", "token", ts, "logprob", lp_json(ev->top[k].logprob),
                                             "bytes", b));
    }
    json_object_set_new(e, "top_logprobs", top);
    return e;
}

/* Appends one token to the completions shape {tokens, token_logprobs,
 * top_logprobs, text_offset}. */
static void completion_lp_add(em_server *s, json_t *lp, const em_event *ev, size_t offset, bool with_top) {
    json_array_append_new(json_object_get(lp, "tokens"), token_string(s, ev->token, NULL));
    json_array_append_new(json_object_get(lp, "token_logprobs"), lp_json(ev->logprob));
    json_t *top = json_null();
    if (with_top) {
        top = json_object();
        for (int32_t k = 0; k < ev->n_top; k++) {
            json_t *ts = token_string(s, ev->top[k].token, NULL);
            json_object_set_new(top, json_string_value(ts), lp_json(ev->top[k].logprob));
            json_decref(ts);
        }
    }
    json_array_append_new(json_object_get(lp, "top_logprobs"), top);
    json_array_append_new(json_object_get(lp, "text_offset"), json_integer((json_int_t)offset));
}

static json_t *completion_lp_new(void) {
    return json_pack("{s:[], s:[], s:[], s:[]}", "tokens", "token_logprobs", "top_logprobs", "text_offset");
}

static json_t *usage_json(const gen_job *j) {
    return json_pack("{s:i, s:i, s:i}", "prompt_tokens", j->prompt_tokens, "completion_tokens",
                     j->completion_tokens, "total_tokens", j->prompt_tokens + j->completion_tokens);
}

/* ------------------------------------------------------------- stream */

static void sse_send(gen_job *j, json_t *chunk) {
    char *txt = chunk ? json_dumps(chunk, JSON_COMPACT) : NULL;
    json_decref(chunk);
    if (!txt) return;
    em_strbuf_append(&j->out, "data: ", 6);
    em_strbuf_append(&j->out, txt, strlen(txt));
    em_strbuf_append(&j->out, "\n\n", 2);
    free(txt);
}

/* One streamed chunk with one choice. */
static json_t *chunk_new(gen_job *j, json_t *choice) {
    bool chat = j->req.kind == EM_API_CHAT;
    json_t *c = json_pack("{s:s, s:s, s:I, s:s, s:s, s:[o]}", "id", j->id, "object",
                          chat ? "chat.completion.chunk" : "text_completion", "created", (json_int_t)j->created,
                          "model", j->s->p.model_id, "system_fingerprint", "ember-" EMBER_VERSION, "choices",
                          choice);
    if (c && j->req.include_usage) json_object_set_new(c, "usage", json_null());
    return c;
}

static void stream_chat_delta(gen_job *j, int32_t gi, json_t *delta, json_t *logprobs, const char *finish) {
    gen_choice *ch = &j->ch[gi];
    if (!ch->started) {
        ch->started = true;
        json_object_set_new(delta, "role", json_string("assistant"));
    }
    json_t *choice = json_pack("{s:i, s:o, s:o, s:o}", "index", gi, "delta", delta, "logprobs",
                               logprobs ? logprobs : json_null(), "finish_reason",
                               finish ? json_string(finish) : json_null());
    sse_send(j, chunk_new(j, choice));
}

static void stream_completion_text(gen_job *j, int32_t gi, const char *text, size_t len, json_t *logprobs,
                                   const char *finish) {
    json_t *choice = json_pack("{s:i, s:s%, s:o, s:o}", "index", gi, "text", text ? text : "", len, "logprobs",
                               logprobs ? logprobs : json_null(), "finish_reason",
                               finish ? json_string(finish) : json_null());
    sse_send(j, chunk_new(j, choice));
}

/* ------------------------------------------------------------- events */

/* Gives every parsed call an id of its own.  Clients send the ids back
 * with the tool results of the next turn, so they must be unique over the
 * server's life (the parsers derive theirs from the text alone, so a call
 * made twice would share one, and a template that matches results to calls
 * by id, Command R's, then drops a result), and in a shape every template
 * accepts: Mistral's refuse any id that is not 9 alphanumeric characters.
 * The ids are a start drawn at random plus n steps modulo 62^9, the step
 * odd and prime to 31, which visits every 9-character id before any
 * repeats. */
static void assign_call_ids(gen_job *j, json_t *calls) {
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    const uint64_t space = 13537086546263552ull; /* 62^9 */
    const uint64_t step = 8388608629281797ull;   /* odd, not a multiple of 31 */
    bool bare = em_chat_tool_family(j->prompt.tool_syntax) == EM_TOOLS_MISTRAL;
    size_t i;
    json_t *call;
    json_array_foreach(calls, i, call) {
        pthread_mutex_lock(&j->s->mu);
        uint64_t v = j->s->call_next % space;
        j->s->call_next = (v + step) % space;
        pthread_mutex_unlock(&j->s->mu);
        char id[16] = "call_";
        char *d = bare ? id : id + 5;
        for (int k = 0; k < 9; k++, v /= 62) d[k] = digits[v % 62];
        d[9] = '\0';
        json_object_set_new(call, "id", json_string(id));
    }
}

/* The tool calls in a finished choice's text, as OpenAI's tool_calls
 * array (NULL when there are none); *content gets the remaining text. */
static json_t *choice_tool_calls(gen_job *j, gen_choice *ch, json_t **content) {
    *content = NULL;
    json_t *calls = NULL;
    const char *text = ch->text.p ? ch->text.p + ch->sent : "";
    if (!em_prompt_parse_tool_calls(&j->prompt, text, &calls, content)) return NULL;
    if (!calls || json_array_size(calls) == 0) {
        json_decref(calls);
        json_decref(*content);
        *content = NULL;
        return NULL;
    }
    assign_call_ids(j, calls);
    return calls;
}

/* Moves the held logprob entries of a choice to dst (same shape) and
 * empties the hold. */
static void lp_release(bool chat, json_t *held, json_t *dst) {
    if (chat) {
        json_array_extend(dst, held);
        json_array_clear(held);
        return;
    }
    const char *key;
    json_t *arr;
    json_object_foreach(held, key, arr) {
        json_array_extend(json_object_get(dst, key), arr);
        json_array_clear(arr);
    }
}

/*
 * A token's logprobs are held until text it produced reaches the client:
 * a token whose bytes end up in a stop string that is cut, or that is the
 * end-of-generation token, shows no text, so its entry is dropped when the
 * choice finishes (like llama-server).  The logprobs then describe exactly
 * the returned text, while usage still counts every token the model
 * computed.  A token that completes a UTF-8 character or proves a partial
 * stop string to be text releases the entries held before it.
 */
/*
 * Tool streams (tool_choice auto): the text before anything that is, or
 * may become, a tool call in the template family's syntax goes out as
 * content deltas at once, with the logprobs gathered so far; the rest is
 * held and parsed when the choice ends.
 */
static void tool_stream_content(gen_job *j, int32_t gi) {
    gen_choice *ch = &j->ch[gi];
    size_t start = em_chat_tool_call_start(em_chat_tool_family(j->prompt.tool_syntax), ch->text.p, ch->text.n);
    if (start <= ch->sent) return;
    json_t *lp = NULL;
    if (ch->lp && json_array_size(ch->lp)) {
        lp = json_pack("{s:o}", "content", ch->lp); /* the entries go out; the choice starts a new list */
        ch->lp = json_array();
    }
    stream_chat_delta(j, gi, json_pack("{s:s%}", "content", ch->text.p + ch->sent, start - ch->sent), lp, NULL);
    ch->sent = start;
}

static void on_token(gen_job *j, int32_t gi, const em_event *ev) {
    gen_choice *ch = &j->ch[gi];
    bool chat = j->req.kind == EM_API_CHAT;
    json_t *lp = NULL;
    if (j->req.logprobs) {
        if (chat) json_array_append_new(ch->lp_held, chat_lp_entry(j->s, ev));
        else completion_lp_add(j->s, ch->lp_held, ev, ch->offset, j->req.top_logprobs > 0);
        if (ev->text_len > 0) {
            if (j->req.stream && !j->buffered) {
                lp = chat ? json_pack("{s:[]}", "content") : completion_lp_new();
                lp_release(chat, ch->lp_held, chat ? json_object_get(lp, "content") : lp);
            } else {
                lp_release(chat, ch->lp_held, ch->lp);
            }
        }
    }
    ch->offset += (size_t)token_len(j->s, ev->token);
    if (!j->req.stream || j->buffered) {
        em_strbuf_append(&ch->text, ev->text ? ev->text : "", ev->text_len);
        json_decref(lp);
        if (j->tool_stream && ev->text_len > 0) tool_stream_content(j, gi);
        return;
    }
    if (ev->text_len == 0 && !lp) return;
    if (chat) {
        stream_chat_delta(j, gi, json_pack("{s:s%}", "content", ev->text ? ev->text : "", ev->text_len), lp, NULL);
    } else {
        stream_completion_text(j, gi, ev->text, ev->text_len, lp, NULL);
    }
}

static void on_finish(gen_job *j, int32_t gi, const char *reason) {
    gen_choice *ch = &j->ch[gi];
    ch->finish = reason;
    if (!j->req.stream) return;
    if (j->req.kind != EM_API_CHAT) {
        stream_completion_text(j, gi, "", 0, NULL, reason);
        return;
    }
    if (j->buffered) {
        json_t *content = NULL;
        json_t *calls = choice_tool_calls(j, ch, &content);
        if (calls) {
            size_t i;
            json_t *call;
            json_array_foreach(calls, i, call) json_object_set_new(call, "index", json_integer((json_int_t)i));
            if (json_string_length(content) > 0) /* text around the calls that was still held */
                stream_chat_delta(j, gi, json_pack("{s:O}", "content", content), NULL, NULL);
            stream_chat_delta(j, gi, json_pack("{s:o}", "tool_calls", calls), NULL, NULL);
            ch->finish = "tool_calls";
        } else if (ch->text.n > ch->sent) {
            stream_chat_delta(j, gi, json_pack("{s:s%}", "content", ch->text.p + ch->sent, ch->text.n - ch->sent),
                              ch->lp && json_array_size(ch->lp) ? json_pack("{s:O}", "content", ch->lp) : NULL,
                              NULL);
        }
        json_decref(content);
    }
    stream_chat_delta(j, gi, json_object(), NULL, ch->finish);
}

static void stream_end(gen_job *j) {
    if (j->req.include_usage) {
        json_t *c = json_pack("{s:s, s:s, s:I, s:s, s:s, s:[], s:o}", "id", j->id, "object",
                              j->req.kind == EM_API_CHAT ? "chat.completion.chunk" : "text_completion", "created",
                              (json_int_t)j->created, "model", j->s->p.model_id, "system_fingerprint",
                              "ember-" EMBER_VERSION, "choices", "usage", usage_json(j));
        sse_send(j, c);
    }
    em_strbuf_append(&j->out, "data: [DONE]\n\n", 14);
    j->done = true;
}

static void stream_error(gen_job *j, const em_api_error *err) {
    sse_send(j, em_api_error_json(err));
    em_strbuf_append(&j->out, "data: [DONE]\n\n", 14);
    j->done = true;
}

static bool submit_pending(gen_job *j, em_api_error *err);

/* Handles one event; false once the job has ended (done or failed). */
static bool job_event(gen_job *j, em_event *ev) {
    int32_t base = j->cur * j->req.n;
    bool more = true;
    switch (ev->kind) {
    case EM_EVENT_TOKEN: on_token(j, base + ev->choice, ev); break;
    case EM_EVENT_FINISH: on_finish(j, base + ev->choice, ev->finish); break;
    case EM_EVENT_EMBEDDING: break;
    case EM_EVENT_DONE:
        j->prompt_tokens += ev->n_prompt;
        j->completion_tokens += ev->n_generated;
        j->cs->prompt_tokens = j->prompt_tokens;
        j->cs->completion_tokens = j->completion_tokens;
        j->cur++;
        if (j->n_req < j->n_prompts && !submit_pending(j, &j->err)) {
            j->failed = true;
            if (j->req.stream) stream_error(j, &j->err);
            more = false;
        } else if (j->cur == j->n_req) {
            more = false;
            if (j->req.stream) stream_end(j);
        }
        break;
    case EM_EVENT_ERROR:
        j->failed = true;
        if (ev->shutdown) em_api_fail_shutdown(&j->err, ev->message);
        else em_api_fail(&j->err, 500, NULL, "generation failed: %s", ev->message);
        if (j->req.stream) stream_error(j, &j->err);
        more = false;
        break;
    }
    em_event_free(ev);
    return more;
}

typedef enum wait_result { WAIT_EVENT, WAIT_TIMEOUT, WAIT_GONE } wait_result;

/* Waits up to max_s seconds for the job's next event, watching the
 * client; WAIT_GONE when the client went away (the caller then cancels). */
static wait_result job_wait(gen_job *j, em_event *ev, double max_s) {
    double until = em_time_s() + max_s;
    for (;;) {
        /* Events may come faster than the timeout: look at the socket
         * every 50 ms whatever happens. */
        double now = em_time_s();
        if (now - j->t_checked >= 0.05) {
            j->t_checked = now;
            if (em_http_client_gone(j->cs->fd)) return WAIT_GONE;
        }
        if (now >= until) return WAIT_TIMEOUT;
        if (em_request_next(j->r[j->cur], ev, 50)) return WAIT_EVENT;
    }
}

/* ------------------------------------------------------------ answers */

static json_t *final_answer(gen_job *j) {
    bool chat = j->req.kind == EM_API_CHAT;
    json_t *choices = json_array();
    for (int32_t gi = 0; gi < j->n_ch; gi++) {
        gen_choice *ch = &j->ch[gi];
        const char *finish = ch->finish ? ch->finish : "stop";
        json_t *choice;
        if (chat) {
            json_t *msg = json_pack("{s:s}", "role", "assistant");
            json_t *content = NULL, *calls = j->buffered ? choice_tool_calls(j, ch, &content) : NULL;
            if (calls) {
                json_object_set_new(msg, "content", content ? content : json_null());
                json_object_set_new(msg, "tool_calls", calls);
                finish = "tool_calls";
            } else {
                json_object_set_new(msg, "content", json_stringn(ch->text.p ? ch->text.p : "", ch->text.n));
            }
            choice = json_pack("{s:i, s:o, s:o, s:s}", "index", gi, "message", msg, "logprobs",
                               j->req.logprobs ? json_pack("{s:O}", "content", ch->lp) : json_null(),
                               "finish_reason", finish);
        } else {
            em_strbuf text = {0};
            const char *echo = j->echo[gi / j->req.n];
            if (echo) em_strbuf_append(&text, echo, strlen(echo));
            em_strbuf_append(&text, ch->text.p ? ch->text.p : "", ch->text.n);
            choice = json_pack("{s:i, s:s%, s:O, s:s}", "index", gi, "text", text.p ? text.p : "", text.n,
                               "logprobs", j->req.logprobs ? ch->lp : json_null(), "finish_reason", finish);
            em_strbuf_free(&text);
        }
        json_array_append_new(choices, choice);
    }
    return json_pack("{s:s, s:s, s:I, s:s, s:s, s:o, s:o}", "id", j->id, "object",
                     chat ? "chat.completion" : "text_completion", "created", (json_int_t)j->created, "model",
                     j->s->p.model_id, "system_fingerprint", "ember-" EMBER_VERSION, "choices", choices, "usage",
                     usage_json(j));
}

/* libmicrohttpd pulls the stream through this. */
static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    gen_job *j = cls;
    while (j->out_pos == j->out.n) {
        j->out_pos = j->out.n = 0;
        if (j->done) return MHD_CONTENT_READER_END_OF_STREAM;
        em_event ev;
        wait_result w = job_wait(j, &ev, EM_SERVER_KEEPALIVE_S);
        if (w == WAIT_GONE) {
            for (int32_t i = 0; i < j->n_req; i++) em_request_cancel(j->r[i]);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        /* Nothing to say yet: an SSE comment (ignored by clients) keeps
         * the connection from looking idle. */
        if (w == WAIT_TIMEOUT) {
            em_strbuf_append(&j->out, ": keep-alive\n\n", 14);
            break;
        }
        /* The events that came while this thread slept or wrote (a late
         * wake, a choice's last token with its finish and the usage) go
         * out in the same write: one wake-up, poll and send for them all
         * instead of one each.  The bytes are those of one event at a time. */
        bool more = job_event(j, &ev);
        while (more && j->out.n - j->out_pos < max && em_request_next(j->r[j->cur], &ev, 0)) more = job_event(j, &ev);
    }
    size_t n = EM_MIN(max, j->out.n - j->out_pos);
    memcpy(buf, j->out.p + j->out_pos, n);
    j->out_pos += n;
    return (ssize_t)n;
}

static void stream_free(void *cls) { job_free(cls); }

/* ------------------------------------------------------------ prompts */

/* Token ids of prompt i of a completions request (string or ids). */
static bool completion_tokens(gen_job *j, json_t *p, em_token **tok, int32_t *n, em_api_error *err) {
    if (json_is_string(p)) {
        if (em_tokenize_alloc(j->s->vocab, json_string_value(p), (int32_t)json_string_length(p), true, true, tok,
                              n) != EM_OK)
            return em_api_fail(err, 400, "prompt", "cannot tokenize the prompt: %s", em_last_error());
        return true;
    }
    *n = (int32_t)json_array_size(p);
    *tok = malloc((size_t)*n * sizeof **tok);
    if (!*tok) return em_api_fail(err, 500, NULL, "out of memory");
    for (int32_t i = 0; i < *n; i++) (*tok)[i] = (em_token)json_integer_value(json_array_get(p, (size_t)i));
    return true;
}

static bool check_context(gen_job *j, int32_t n_prompt, em_api_error *err) {
    int32_t ctx = j->s->n_ctx_seq;
    const char *field = j->req.kind == EM_API_CHAT ? "messages" : "prompt";
    if (n_prompt == 0) return em_api_fail(err, 400, field, "the prompt is empty");
    bool bad = j->req.max_tokens < 0 ? n_prompt >= ctx : (int64_t)n_prompt + j->req.max_tokens > ctx;
    if (!bad) return true;
    if (j->req.max_tokens < 0)
        em_api_fail(err, 400, field, "prompt has %d tokens, but the context holds %d", n_prompt, ctx);
    else
        em_api_fail(err, 400, j->req.max_tokens_field, "prompt has %d tokens and %s is %d, but the context holds %d",
                    n_prompt, j->req.max_tokens_field, j->req.max_tokens, ctx);
    snprintf(err->code, sizeof err->code, "context_length_exceeded");
    return false;
}

/* The answer to a submission the engine did not take (true for
 * EM_SUBMIT_OK); param names the field an invalid one is blamed on. */
static bool submit_ok(em_api_error *err, em_submit_result sr, const char *param) {
    switch (sr) {
    case EM_SUBMIT_OK: return true;
    case EM_SUBMIT_QUEUE_FULL: return em_api_fail(err, 503, NULL, "the server is busy: the queue is full; retry later");
    case EM_SUBMIT_SHUTTING_DOWN: return em_api_fail_shutdown(err, "the server is shutting down");
    case EM_SUBMIT_INVALID: return em_api_fail(err, 400, param, "%s", em_last_error());
    default: return em_api_fail(err, 500, NULL, "out of memory");
    }
}

/* Submits prompt idx; *queue_full tells a full queue from other failures. */
static bool submit(gen_job *j, int32_t idx, const em_token *tok, int32_t n, em_api_error *err, bool *queue_full) {
    em_gen_params gp = {0};
    gp.max_tokens = j->req.max_tokens;
    gp.n = j->req.n;
    gp.sampling = j->req.sampling;
    gp.stop = j->req.stop;
    gp.n_stop = j->req.n_stop;
    gp.top_logprobs = j->req.logprobs ? j->req.top_logprobs : -1;
    gp.constraint = j->has_constraint ? &j->constraint : NULL;
    gp.t_arrival = j->cs->t_start;
    /* The engine's reference to the grammar is taken before it could be
     * released, and given back when the submission fails. */
    if (j->has_constraint) em_prompt_retain(&j->constraint);
    em_submit_result sr = em_engine_submit(j->s->engine, tok, n, &gp, &j->r[idx]);
    if (sr != EM_SUBMIT_OK && j->has_constraint) j->constraint.release(j->constraint.ctx);
    *queue_full = sr == EM_SUBMIT_QUEUE_FULL;
    return submit_ok(err, sr, NULL);
}

/* Submits the prompts not yet submitted, in order, as many as the queue
 * takes.  A completions request may hold more prompts (up to 64) than the
 * queue: while earlier prompts of its own are in flight, the rest wait
 * until one of those finishes (job_event submits them then).  Only a queue
 * full of other requests fails it, with a 503. */
static bool submit_pending(gen_job *j, em_api_error *err) {
    while (j->n_req < j->n_prompts) {
        int32_t i = j->n_req;
        bool full = false;
        if (!submit(j, i, j->toks[i], j->ns[i], err, &full)) return full && j->cur < j->n_req;
        j->n_req++;
        free(j->toks[i]);
        j->toks[i] = NULL;
    }
    return true;
}

/* Tokenizes every prompt, checks it fits, and submits it. */
static bool job_start(gen_job *j, em_api_error *err) {
    if (j->req.kind == EM_API_CHAT) {
        if (!em_prompt_render(j->s, &j->req, &j->prompt, err)) return false;
        j->buffered = j->req.tool_choice != EM_TOOL_CHOICE_NONE;
        j->tool_stream = j->req.stream && j->req.tool_choice == EM_TOOL_CHOICE_AUTO && !j->prompt.forced_tool;
        em_token *tok = NULL;
        int32_t n = 0;
        if (em_tokenize_alloc(j->s->vocab, j->prompt.text, -1, j->prompt.add_bos, true, &tok, &n) != EM_OK)
            return em_api_fail(err, 400, "messages", "cannot tokenize the prompt: %s", em_last_error());
        bool ok = check_context(j, n, err);
        if (ok && (j->has_constraint = em_prompt_constraint(j->s, &j->req, &j->prompt, &j->constraint, err)) == false &&
            err->http)
            ok = false;
        bool full;
        ok = ok && submit(j, 0, tok, n, err, &full);
        free(tok);
        if (ok) j->n_req = j->n_prompts = 1;
        return ok;
    }
    size_t np = json_array_size(j->req.prompts);
    em_token **toks = j->toks;
    int32_t *ns = j->ns;
    bool ok = true;
    err->http = 0;
    j->has_constraint = em_prompt_constraint(j->s, &j->req, NULL, &j->constraint, err);
    if (!j->has_constraint && err->http) ok = false;
    for (size_t i = 0; ok && i < np; i++) {
        json_t *p = json_array_get(j->req.prompts, i);
        ok = completion_tokens(j, p, &toks[i], &ns[i], err) && check_context(j, ns[i], err);
        if (ok && j->req.echo) {
            if (json_is_string(p)) {
                j->echo[i] = strdup(json_string_value(p));
            } else {
                int32_t need = -em_detokenize(j->s->vocab, toks[i], ns[i], NULL, 0, false, false);
                j->echo[i] = malloc((size_t)(need > 0 ? need : 0) + 1);
                if (j->echo[i]) em_detokenize(j->s->vocab, toks[i], ns[i], j->echo[i], need + 1, false, false);
            }
        }
    }
    j->n_prompts = (int32_t)np;
    return ok && submit_pending(j, err);
}

/* ----------------------------------------------------------- embeddings */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static json_t *embedding_json(const float *v, int32_t n, bool base64) {
    if (!base64) {
        json_t *a = json_array();
        for (int32_t i = 0; i < n; i++) json_array_append_new(a, json_real(v[i]));
        return a;
    }
    /* The little-endian float32 bytes, base64-encoded. */
    size_t nb = (size_t)n * 4;
    unsigned char *bytes = malloc(nb);
    char *out = malloc((nb + 2) / 3 * 4 + 1);
    json_t *res = NULL;
    if (bytes && out) {
        for (int32_t i = 0; i < n; i++) {
            uint32_t u;
            memcpy(&u, &v[i], 4);
            for (int k = 0; k < 4; k++) bytes[i * 4 + k] = (unsigned char)(u >> (8 * k));
        }
        size_t o = 0;
        for (size_t i = 0; i < nb; i += 3) {
            uint32_t x = (uint32_t)bytes[i] << 16;
            if (i + 1 < nb) x |= (uint32_t)bytes[i + 1] << 8;
            if (i + 2 < nb) x |= bytes[i + 2];
            out[o++] = b64[(x >> 18) & 63];
            out[o++] = b64[(x >> 12) & 63];
            out[o++] = i + 1 < nb ? b64[(x >> 6) & 63] : '=';
            out[o++] = i + 2 < nb ? b64[x & 63] : '=';
        }
        res = json_stringn(out, o);
    }
    free(bytes);
    free(out);
    return res;
}

/* Waits for input i's embedding and appends it to data; false with err
 * set when the client left or the engine failed. */
static bool embedding_collect(em_server *s, em_conn *cs, em_request *r, size_t i, bool base64, json_t *data,
                              int32_t *total, em_api_error *err) {
    for (;;) {
        em_event ev;
        if (!em_request_next(r, &ev, 100)) {
            if (em_http_client_gone(cs->fd)) return em_api_fail(err, 400, NULL, "the client went away");
            continue;
        }
        em_event_kind k = ev.kind;
        bool ok = true;
        if (k == EM_EVENT_EMBEDDING) {
            json_array_append_new(data, json_pack("{s:s, s:i, s:o}", "object", "embedding", "index", (int)i,
                                                  "embedding", embedding_json(ev.embedding, ev.n_embd, base64)));
        } else if (k == EM_EVENT_DONE) {
            *total += ev.n_prompt;
        } else if (k == EM_EVENT_ERROR && ev.shutdown) {
            ok = em_api_fail_shutdown(err, ev.message);
        } else if (k == EM_EVENT_ERROR) {
            ok = em_api_fail(err, 500, NULL, "embedding failed: %s", ev.message);
        }
        em_event_free(&ev);
        if (k == EM_EVENT_DONE || k == EM_EVENT_ERROR) return ok;
    }
}

static enum MHD_Result embeddings(em_server *s, struct MHD_Connection *c, em_conn *cs, em_api_request *req) {
    em_api_error err = {0};
    json_t *in = req->input;
    /* One input, or an array of inputs (strings or token-id arrays). */
    bool single = json_is_string(in) || (json_is_array(in) && json_is_integer(json_array_get(in, 0)));
    size_t n_in = single ? 1 : json_array_size(in);
    em_request **rs = calloc(n_in, sizeof *rs);
    json_t *data = json_array();
    int32_t total = 0;
    size_t n_done = 0; /* inputs whose embedding is in data, in order */
    bool ok = rs && data;
    if (!ok) em_api_fail(&err, 500, NULL, "out of memory");
    for (size_t i = 0; ok && i < n_in; i++) {
        json_t *x = single ? in : json_array_get(in, i);
        em_token *tok = NULL;
        int32_t n = 0;
        if (json_is_string(x)) {
            if (em_tokenize_alloc(s->vocab, json_string_value(x), (int32_t)json_string_length(x), true, true, &tok,
                                  &n) != EM_OK)
                ok = em_api_fail(&err, 400, "input", "cannot tokenize input %zu: %s", i, em_last_error());
        } else {
            n = (int32_t)json_array_size(x);
            tok = malloc((size_t)n * sizeof *tok);
            if (!tok) ok = em_api_fail(&err, 500, NULL, "out of memory");
            for (int32_t k = 0; ok && k < n; k++) tok[k] = (em_token)json_integer_value(json_array_get(x, (size_t)k));
        }
        if (ok && (n == 0 || n > s->n_ctx_seq)) {
            ok = em_api_fail(&err, 400, "input", "input %zu has %d tokens; the context holds %d", i, n, s->n_ctx_seq);
            if (n) snprintf(err.code, sizeof err.code, "context_length_exceeded");
        }
        while (ok) {
            em_gen_params gp = {0};
            gp.n = 1;
            gp.embed = true;
            gp.top_logprobs = -1;
            gp.sampling = em_sampler_default_params();
            em_submit_result sr = em_engine_submit(s->engine, tok, n, &gp, &rs[i]);
            /* A request may hold more inputs (up to 2048) than the queue:
             * while earlier inputs of this request wait in it, the next one
             * waits for the oldest of them to finish.  Only a queue full of
             * other requests is a 503. */
            if (sr == EM_SUBMIT_QUEUE_FULL && n_done < i) {
                ok = embedding_collect(s, cs, rs[n_done], n_done, req->base64, data, &total, &err);
                n_done++;
                continue;
            }
            ok = submit_ok(&err, sr, "input");
            break;
        }
        free(tok);
    }
    for (; ok && n_done < n_in; n_done++)
        ok = embedding_collect(s, cs, rs[n_done], n_done, req->base64, data, &total, &err);
    for (size_t i = 0; rs && i < n_in; i++) em_request_release(rs[i]);
    free(rs);
    cs->prompt_tokens = total;
    if (!ok) {
        json_decref(data);
        return em_http_error(s, c, cs, &err);
    }
    return em_http_json(s, c, cs, 200,
                        json_pack("{s:s, s:s, s:o, s:{s:i, s:i}}", "object", "list", "model", s->p.model_id, "data",
                                  data, "usage", "prompt_tokens", total, "total_tokens", total));
}

/* -------------------------------------------------------------- entry */

/* Answers a started job with server-sent events: the response takes the
 * job, and stream_reader turns its events into the stream as the client
 * reads. */
static enum MHD_Result answer_stream(gen_job *j, struct MHD_Connection *c, em_api_kind kind) {
    /* Completions echo: the prompt text opens each choice's stream. */
    for (int32_t gi = 0; gi < j->n_ch && kind == EM_API_COMPLETIONS; gi++) {
        const char *echo = j->echo[gi / j->req.n];
        if (echo) stream_completion_text(j, gi, echo, strlen(echo), NULL, NULL);
    }
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_reader, j,
                                                               stream_free);
    if (!r) {
        job_free(j);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    return em_http_queue(j->s, c, j->cs, 200, r);
}

/* Answers a started job with one JSON body once every choice has
 * finished, and frees the job. */
static enum MHD_Result answer_whole(gen_job *j, struct MHD_Connection *c) {
    em_server *s = j->s;
    em_conn *cs = j->cs;
    em_event ev;
    bool more = true;
    while (more) {
        wait_result w = job_wait(j, &ev, EM_SERVER_KEEPALIVE_S);
        if (w == WAIT_TIMEOUT) continue;
        if (w == WAIT_GONE) {
            /* The client left: nobody reads the answer; free everything. */
            job_free(j);
            cs->status = 499;
            return MHD_NO;
        }
        more = job_event(j, &ev);
    }
    enum MHD_Result res;
    if (j->failed) res = em_http_error(s, c, cs, &j->err);
    else res = em_http_json(s, c, cs, 200, final_answer(j));
    job_free(j);
    return res;
}

enum MHD_Result em_gen_handle(em_server *s, struct MHD_Connection *c, em_conn *cs, em_api_kind kind) {
    em_api_error err = {0};
    em_api_limits lim = {.model_id = s->p.model_id,
                         .n_vocab = em_model_n_vocab(s->model),
                         .n_parallel = s->n_parallel,
                         .n_embd = em_model_n_embd(s->model)};
    cs->generation = true;
    pthread_mutex_lock(&s->mu);
    s->n_inflight++;
    pthread_mutex_unlock(&s->mu);
    if (kind == EM_API_EMBEDDINGS && !s->p.embeddings) {
        em_api_fail(&err, 400, NULL, "this server computes no embeddings");
        return em_http_error(s, c, cs, &err);
    }
    if (kind != EM_API_EMBEDDINGS && !em_model_is_causal(s->model)) {
        em_api_fail(&err, 400, NULL, "the model '%s' is an embedding model (%s): it cannot generate text; use /v1/embeddings",
                    s->p.model_id, em_model_arch(s->model));
        return em_http_error(s, c, cs, &err);
    }
    gen_job *j = calloc(1, sizeof *j);
    if (!j) {
        em_api_fail(&err, 500, NULL, "out of memory");
        return em_http_error(s, c, cs, &err);
    }
    if (!em_api_parse(kind, cs->body.p ? cs->body.p : "", cs->body.n, &lim, &j->req, &err)) {
        free(j);
        return em_http_error(s, c, cs, &err);
    }
    if (kind == EM_API_EMBEDDINGS) {
        enum MHD_Result res = embeddings(s, c, cs, &j->req);
        em_api_request_free(&j->req);
        free(j);
        return res;
    }
    j->s = s;
    j->cs = cs;
    j->created = (long long)time(NULL);
    pthread_mutex_lock(&s->mu);
    uint64_t seq = ++s->id_counter;
    pthread_mutex_unlock(&s->mu);
    snprintf(j->id, sizeof j->id, "%s-%llx%06llx", kind == EM_API_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)j->created, (unsigned long long)seq);
    int32_t n_prompts = kind == EM_API_CHAT ? 1 : (int32_t)json_array_size(j->req.prompts);
    j->n_ch = n_prompts * j->req.n;
    j->ch = calloc((size_t)j->n_ch, sizeof *j->ch);
    if (!j->ch) {
        job_free(j);
        em_api_fail(&err, 500, NULL, "out of memory");
        return em_http_error(s, c, cs, &err);
    }
    for (int32_t i = 0; i < j->n_ch && j->req.logprobs; i++) {
        j->ch[i].lp = kind == EM_API_CHAT ? json_array() : completion_lp_new();
        j->ch[i].lp_held = kind == EM_API_CHAT ? json_array() : completion_lp_new();
    }
    if (!job_start(j, &err)) {
        job_free(j);
        return em_http_error(s, c, cs, &err);
    }
    /* With echo a choice's text opens with its prompt: text_offset counts it. */
    for (int32_t gi = 0; gi < j->n_ch && kind == EM_API_COMPLETIONS; gi++)
        if (j->echo[gi / j->req.n]) j->ch[gi].offset = strlen(j->echo[gi / j->req.n]);

    return j->req.stream ? answer_stream(j, c, kind) : answer_whole(j, c);
}
