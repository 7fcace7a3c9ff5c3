/*
 * serve.c - `ember serve`: the OpenAI-compatible HTTP server.
 *
 *   ember serve -m MODEL [--host 127.0.0.1] [--port 8080]
 *               [--api-key KEY | --api-key-file F] [--parallel N] [-c CTX]
 *               [--kv-type f16|q8_0] [--chat-template NAME|FILE]
 *               [--cors-origin ORIGIN ...] [-t THREADS] [--alias NAME]
 *               [--max-connections N] [--max-connections-per-client N]
 *               [--request-timeout S]
 *
 * Loads the model, starts the engine thread (src/engine) and the HTTP
 * server (src/server), then waits for SIGTERM or SIGINT: it stops
 * accepting connections, lets the requests in flight finish (up to
 * --shutdown-timeout seconds), and exits 0.
 */
#include "cli/cli.h"
#include "core/core.h"
#include "engine/engine.h"
#include "server/server.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct serve_opts {
    const char *model, *host, *api_key, *api_key_file, *chat_template, *alias;
    const char *cors[EM_SERVER_MAX_CORS];
    int n_cors;
    int32_t port, parallel, n_ctx, n_threads, queue, prefill, max_connections, max_per_client;
    double shutdown_timeout, request_timeout;
    em_type kv_type;
    em_model_params mp;
} serve_opts;

static em_opts_result parse_args(int argc, char **argv, serve_opts *o) {
    *o = (serve_opts){.host = "127.0.0.1", .port = 8080, .parallel = 4, .queue = 64, .prefill = 256,
                      .shutdown_timeout = 30, .kv_type = EM_TYPE_F16,
                      .max_connections = EM_SERVER_MAX_CONNECTIONS, .request_timeout = EM_SERVER_REQUEST_TIMEOUT_S,
                      .mp = em_model_default_params()};
    const em_opt opts[] = {
        {.name = "model", .short_name = "m", .type = EM_OPT_STRING, EM_OPT_DEST(o->model), .arg = "FILE",
         .help = "GGUF model to serve", .flags = EM_OPT_REQUIRED},
        {.name = "host", .type = EM_OPT_STRING, EM_OPT_DEST(o->host), .arg = "ADDR",
         .help = "IPv4 or IPv6 address to listen on"},
        {.name = "port", .type = EM_OPT_INT, EM_OPT_DEST(o->port), .min = 0, .max = 65535,
         .help = "TCP port; 0 picks a free one (printed at start)"},
        {.name = "api-key", .type = EM_OPT_STRING, EM_OPT_DEST(o->api_key), .arg = "KEY",
         .help = "require 'Authorization: Bearer KEY' (all but /health)"},
        {.name = "api-key-file", .type = EM_OPT_STRING, EM_OPT_DEST(o->api_key_file), .arg = "FILE",
         .help = "read the key from the first line of FILE"},
        {.name = "parallel", .short_name = "np", .type = EM_OPT_INT, EM_OPT_DEST(o->parallel), .min = 1, .max = 4096,
         .help = "sequences computed together (continuous batching)"},
        {.name = "ctx-size", .short_name = "c", .type = EM_OPT_INT, EM_OPT_DEST(o->n_ctx), .min = 0, .max = 1 << 20,
         .help = "context of each sequence: prompt plus answer", .def = "the model's, at most 4096"},
        EM_CLI_OPT_KV_TYPE(o->kv_type),
        {.name = "chat-template", .type = EM_OPT_STRING, EM_OPT_DEST(o->chat_template), .arg = "NAME|FILE",
         .help = "chatml, llama2, llama3, gemma, mistral, or a Jinja file", .def = "the model's"},
        {.name = "cors-origin", .type = EM_OPT_LIST, EM_OPT_DEST(o->cors[0]), .count = &o->n_cors,
         .cap = EM_SERVER_MAX_CORS, .arg = "ORIGIN", .flags = EM_OPT_GREEDY,
         .help = "allow browsers from ORIGIN (repeatable; none by default)"},
        {.name = "threads", .short_name = "t", .type = EM_OPT_INT, EM_OPT_DEST(o->n_threads), .min = 1, .max = 512,
         .help = "compute threads", .def = "physical cores"},
        {.name = "alias", .type = EM_OPT_STRING, EM_OPT_DEST(o->alias), .arg = "NAME",
         .help = "the model's id in the API", .def = "the file name without .gguf"},
        {.name = "queue", .type = EM_OPT_INT, EM_OPT_DEST(o->queue), .min = 0, .max = 1 << 20,
         .help = "requests that may wait for a sequence before 503"},
        {.name = "prefill", .type = EM_OPT_INT, EM_OPT_DEST(o->prefill), .min = 1, .max = 8192,
         .help = "prompt tokens computed per step (chunked prefill)"},
        {.name = "shutdown-timeout", .type = EM_OPT_FLOAT, EM_OPT_DEST(o->shutdown_timeout), .min = 0, .max = 86400,
         .help = "seconds requests in flight get to finish on SIGTERM"},
        {.name = "max-connections", .type = EM_OPT_INT, EM_OPT_DEST(o->max_connections), .min = 1, .max = 65536,
         .help = "connections open at once; when full, a new one takes the slot of an idle one, of the client "
                 "address that holds the most"},
        {.name = "max-connections-per-client", .type = EM_OPT_INT, EM_OPT_DEST(o->max_per_client), .min = 0,
         .max = 65536,
         .help = "connections one client address (IPv6: its /64) may hold; beyond, a new one takes the slot of "
                 "its own idle one or is closed",
         .def = "0, no cap"},
        {.name = "request-timeout", .type = EM_OPT_FLOAT, EM_OPT_DEST(o->request_timeout), .min = 0.1, .max = 3600,
         .help = "seconds a connection gets for a request's headers (idle keep-alive included), "
                 "and for its body (plus 1 s per 16 KiB)"},
        EM_CLI_OPTS_WEIGHTS(o->mp),
        {0}};
    const em_cmd cmd = {.name = "serve",
                        .synopsis = "-m MODEL [--host ADDR] [--port N] [--api-key KEY | --api-key-file F] [options]",
                        .about = "Serves the model over an OpenAI-compatible HTTP API.",
                        .opts = opts};
    em_opts_result r = em_opts_parse(&cmd, argc, argv, NULL, NULL);
    if (r == EM_OPTS_OK && o->api_key && o->api_key_file) {
        fprintf(stderr, "ember serve: give --api-key or --api-key-file, not both\n");
        r = EM_OPTS_USAGE;
    }
    return r;
}

/* A key that begins or ends with a space or a tab can never match: HTTP
 * drops that whitespace around a header's value, and the server skips it
 * after "Bearer".  Such a key is refused at start rather than serving
 * nobody. */
static bool key_sendable(const char *key, const char *from) {
    const size_t n = strlen(key);
    if (strchr(" \t", key[0]) || strchr(" \t", key[n - 1])) {
        fprintf(stderr, "ember serve: the key of %s begins or ends with whitespace, which no client can send\n",
                from);
        return false;
    }
    return true;
}

/* The first line of the key file, without its line ending. */
static char *read_key(const char *path) {
    size_t len;
    char *text = em_cli_read_file(path, &len);
    if (!text) return NULL;
    text[strcspn(text, "\r\n")] = '\0';
    if (!text[0]) {
        fprintf(stderr, "ember serve: the key file %s is empty\n", path);
        free(text);
        return NULL;
    }
    if (!key_sendable(text, path)) {
        free(text);
        return NULL;
    }
    return text;
}

/* The model's id: the file name without directory and ".gguf". */
static char *model_id(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char *id = strdup(base);
    size_t n = id ? strlen(id) : 0;
    if (n > 5 && !strcmp(id + n - 5, ".gguf")) id[n - 5] = '\0';
    return id;
}

void em_cli_block_stop_signals(sigset_t *sigs) {
    sigemptyset(sigs);
    sigaddset(sigs, SIGTERM);
    sigaddset(sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, sigs, NULL);
    /* A client that hangs up must not kill the server through a write. */
    signal(SIGPIPE, SIG_IGN);
}

int em_cli_serve(int argc, char **argv) {
    if (em_cli_is_router(argc, argv)) return em_cli_serve_config(argc, argv);
    serve_opts o;
    em_opts_result pr = parse_args(argc, argv, &o);
    if (pr != EM_OPTS_OK) return em_opts_exit_code(pr);
    if (o.api_key && !o.api_key[0]) {
        fprintf(stderr, "ember serve: --api-key is empty\n");
        return 2;
    }
    if (o.api_key && !key_sendable(o.api_key, "--api-key")) return 2;

    /* Signals are taken by sigwait below, never by a worker thread: block
     * them before any thread starts (threads inherit the mask). */
    sigset_t sigs;
    em_cli_block_stop_signals(&sigs);

    int rc = 1;
    char *key = NULL, *id = NULL;
    em_model *model = NULL;
    em_engine *engine = NULL;
    em_server *server = NULL;
    if (o.api_key_file && !(key = read_key(o.api_key_file))) goto done;
    id = o.alias ? strdup(o.alias) : model_id(o.model);
    if (!id) {
        fprintf(stderr, "ember serve: out of memory\n");
        goto done;
    }

    if (em_model_load(&model, em_cli_model_path(o.model), &o.mp) != EM_OK) {
        fprintf(stderr, "ember serve: %s\n", em_last_error());
        goto done;
    }
    em_engine_params ep = em_engine_default_params();
    ep.n_parallel = o.parallel;
    ep.n_ctx_seq = o.n_ctx;
    ep.n_prefill = o.prefill;
    ep.queue_max = o.queue;
    ep.n_threads = o.n_threads;
    ep.kv_type = o.kv_type;
    ep.embeddings = true;
    if (em_engine_init(&engine, model, &ep) != EM_OK) {
        fprintf(stderr, "ember serve: %s\n", em_last_error());
        goto done;
    }
    em_server_params sp = {.host = o.host,
                           .port = o.port,
                           .api_key = key ? key : o.api_key,
                           .model_id = id,
                           .n_cors = o.n_cors,
                           .max_body = 8u << 20,
                           .max_connections = o.max_connections,
                           .max_connections_per_client = o.max_per_client,
                           .request_timeout_s = o.request_timeout,
                           .chat_template = o.chat_template,
                           .embeddings = true};
    for (int i = 0; i < o.n_cors; i++) sp.cors[i] = o.cors[i];
    if (em_server_start(&server, engine, &sp) != EM_OK) {
        fprintf(stderr, "ember serve: %s\n", em_last_error());
        goto done;
    }
    char desc[128];
    em_model_desc(model, desc, sizeof desc);
    fprintf(stderr, "ember serve: %s as '%s', %d sequences of %d positions\n", desc, id, o.parallel,
            em_engine_n_ctx_seq(engine));
    fprintf(stderr, "ember serve: listening on http://%s%s%s:%d\n", strchr(o.host, ':') ? "[" : "", o.host,
            strchr(o.host, ':') ? "]" : "", em_server_port(server));
    if (!sp.api_key && strcmp(o.host, "127.0.0.1") && strcmp(o.host, "::1"))
        fprintf(stderr, "ember serve: warning: no --api-key, and %s is reachable from other machines\n", o.host);

    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "ember serve: %s: finishing the requests in flight (up to %g s)\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM", o.shutdown_timeout);
    em_server_quiesce(server);
    double t0 = em_time_s();
    em_engine_drain(engine, o.shutdown_timeout);
    /* The engine is done; give the connections what is left to send. */
    double left = o.shutdown_timeout - (em_time_s() - t0);
    em_server_wait_idle(server, left > 1 ? left : 1);
    rc = 0;
done:
    em_server_free(server);
    em_engine_free(engine);
    em_model_free(model);
    free(key);
    free(id);
    if (rc == 0) fprintf(stderr, "ember serve: stopped\n");
    return rc;
}
