/*
 * bench_stub.c - a fast OpenAI-compatible stub upstream for the router's
 * overhead benchmark (bench/router/run.sh).
 *
 *   bench_stub [--port 0] [--name stub]
 *
 * prints "listening on PORT" and answers POST /v1/chat/completions and
 * /v1/completions at once (streamed or not, logprobs when asked, usage),
 * and GET /v1/models.  The answer is "stub NAME says hello ..." in
 * min(max_tokens, 8) tokens, as tests/tools/stub_upstream.py answers; that
 * Python stub stays the one with failure modes.  This one exists because
 * the Python stub's own latency (milliseconds, noisy) hides what the
 * router adds (well under a millisecond): libmicrohttpd with a thread per
 * connection (as ember serve and the router; MHD's epoll thread pool
 * answered node's fetch 10 ms slower here), keep-alive, each answer built
 * in one buffer.
 */
#include "engine/text.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *name = "stub";

typedef struct req {
    em_strbuf body;
} req;

/* Bytes of prompt text, for usage.prompt_tokens (bytes / 4, at least 1). */
static size_t prompt_bytes(const json_t *body) {
    size_t n = 0, i;
    json_t *m;
    json_array_foreach(json_object_get(body, "messages"), i, m) n += json_string_length(json_object_get(m, "content"));
    n += json_string_length(json_object_get(body, "prompt"));
    return n;
}

static void answer(const json_t *body, bool chat, em_strbuf *out, const char **type) {
    static const char *words[] = {"says", "hello", "and", "then", "some", "more", "words"};
    json_t *mt = json_object_get(body, "max_tokens");
    long max = json_is_integer(mt) ? (long)json_integer_value(mt) : 16;
    int n = max < 8 ? (int)(max > 0 ? max : 1) : 8;
    char tokens[8][64];
    snprintf(tokens[0], sizeof tokens[0], "stub");
    snprintf(tokens[1], sizeof tokens[1], " %s", name);
    for (int i = 2; i < 8; i++) snprintf(tokens[i], sizeof tokens[i], " %s", words[i - 2]);
    long pt = (long)prompt_bytes(body) / 4;
    if (pt < 1) pt = 1;
    json_t *lpv = json_object_get(body, "logprobs");
    bool lp = lpv && !json_is_false(lpv) && !json_is_null(lpv);
    const char *model = json_string_value(json_object_get(body, "model"));
    json_t *usage = json_pack("{s:i, s:i, s:i}", "prompt_tokens", (int)pt, "completion_tokens", n, "total_tokens", (int)pt + n);
    long created = (long)time(NULL);
    if (json_is_true(json_object_get(body, "stream"))) {
        *type = "text/event-stream";
        for (int i = 0; i <= n; i++) {
            json_t *choice = json_pack("{s:i, s:o}", "index", 0, "finish_reason", i < n ? json_null() : json_string("length"));
            const char *t = i < n ? tokens[i] : "";
            if (chat) {
                json_t *delta = i < n ? json_pack("{s:s}", "content", t) : json_object();
                if (i == 0) json_object_set_new(delta, "role", json_string("assistant"));
                json_object_set_new(choice, "delta", delta);
            } else
                json_object_set_new(choice, "text", json_string(t));
            json_t *ev = json_pack("{s:s, s:s, s:i, s:s, s:[o]}", "id", "chatcmpl-stub", "object",
                                   chat ? "chat.completion.chunk" : "text_completion", "created", (int)created, "model",
                                   model ? model : name, "choices", choice);
            char *s = json_dumps(ev, JSON_COMPACT);
            em_strbuf_appendf(out, "data: %s\n\n", s);
            free(s);
            json_decref(ev);
        }
        if (json_is_true(json_object_get(json_object_get(body, "stream_options"), "include_usage"))) {
            json_t *ev = json_pack("{s:s, s:s, s:i, s:s, s:[], s:O}", "id", "chatcmpl-stub", "object",
                                   chat ? "chat.completion.chunk" : "text_completion", "created", (int)created, "model",
                                   model ? model : name, "choices", "usage", usage);
            char *s = json_dumps(ev, JSON_COMPACT);
            em_strbuf_appendf(out, "data: %s\n\n", s);
            free(s);
            json_decref(ev);
        }
        em_strbuf_appendf(out, "data: [DONE]\n\n");
        json_decref(usage);
        return;
    }
    *type = "application/json";
    char text[600] = "";
    for (int i = 0; i < n; i++) strcat(text, tokens[i]);
    json_t *choice = chat ? json_pack("{s:i, s:{s:s, s:s}, s:s}", "index", 0, "message", "role", "assistant", "content",
                                      text, "finish_reason", "length")
                          : json_pack("{s:i, s:s, s:s}", "index", 0, "text", text, "finish_reason", "length");
    if (lp) {
        json_t *content = json_array(), *values = json_array();
        for (int i = 0; i < n; i++) {
            json_array_append_new(content, json_pack("{s:s, s:f, s:[]}", "token", tokens[i], "logprob", -0.1,
                                                     "top_logprobs"));
            json_array_append_new(values, json_real(-0.1));
        }
        if (chat) json_object_set_new(choice, "logprobs", json_pack("{s:o}", "content", content)), json_decref(values);
        else json_object_set_new(choice, "logprobs", json_pack("{s:o}", "token_logprobs", values)), json_decref(content);
    }
    json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:[o], s:o}", "id", "chatcmpl-stub", "object",
                          chat ? "chat.completion" : "text_completion", "created", (int)created, "model",
                          model ? model : name, "choices", choice, "usage", usage);
    char *s = json_dumps(o, JSON_COMPACT);
    em_strbuf_append(out, s, strlen(s));
    free(s);
    json_decref(o);
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, em_strbuf *out, const char *type) {
    struct MHD_Response *r = MHD_create_response_from_buffer(out->n, out->p ? out->p : (char *)"", MHD_RESPMEM_MUST_COPY);
    em_strbuf_free(out);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result res = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return res;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)cls, (void)version;
    req *q = *con_cls;
    if (!q) {
        *con_cls = q = calloc(1, sizeof *q);
        return q ? MHD_YES : MHD_NO;
    }
    if (*upload_size) {
        if (q->body.n + *upload_size > (1u << 22) || !em_strbuf_append(&q->body, upload, *upload_size)) return MHD_NO;
        *upload_size = 0;
        return MHD_YES;
    }
    em_strbuf out = {0};
    if (!strcmp(method, "GET") && !strcmp(url, "/v1/models")) {
        em_strbuf_appendf(&out, "{\"object\":\"list\",\"data\":[{\"id\":\"%s\",\"object\":\"model\"}]}", name);
        return reply(c, 200, &out, "application/json");
    }
    bool chat = !strcmp(url, "/v1/chat/completions");
    if (strcmp(method, "POST") || (!chat && strcmp(url, "/v1/completions"))) {
        em_strbuf_appendf(&out, "{\"error\":{\"message\":\"not found\",\"type\":\"invalid_request_error\"}}");
        return reply(c, 404, &out, "application/json");
    }
    json_error_t je;
    json_t *body = json_loadb(q->body.p ? q->body.p : "", q->body.n, 0, &je);
    if (!json_is_object(body)) {
        json_decref(body);
        em_strbuf_appendf(&out, "{\"error\":{\"message\":\"bad json\",\"type\":\"invalid_request_error\"}}");
        return reply(c, 400, &out, "application/json");
    }
    const char *type = "application/json";
    answer(body, chat, &out, &type);
    json_decref(body);
    return reply(c, 200, &out, type);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode t) {
    (void)cls, (void)c, (void)t;
    req *q = *con_cls;
    if (q) em_strbuf_free(&q->body), free(q);
    *con_cls = NULL;
}

int main(int argc, char **argv) {
    unsigned port = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port")) port = (unsigned)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--name")) name = argv[i + 1];
        else {
            fprintf(stderr, "usage: bench_stub [--port 0] [--name stub]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK); /* loopback only */
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, (uint16_t)port,
                                            NULL, NULL, on_request, NULL, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
                                            NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                                            MHD_OPTION_CONNECTION_LIMIT,
                                            4096u, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "bench_stub: cannot listen on port %u\n", port);
        return 1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("listening on %u\n", di ? di->port : port);
    fflush(stdout);
    for (;;) pause();
}
