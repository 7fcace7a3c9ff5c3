/*
 * route.c - `ember serve --config FILE`: the router (src/router) in front
 * of local and remote backends, as the configuration describes them.
 *
 *   ember serve --config ember.yaml [--host 127.0.0.1] [--port 8080]
 *               [--shutdown-timeout S] [--check]
 *
 * --check reads and validates the configuration, prints a summary and
 * exits (0 when it is valid, 1 with the error naming the line otherwise).
 */
#include "cli/cli.h"
#include "router/config.h"
#include "router/ledger.h"
#include "router/router.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool em_cli_is_router(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) return false;
        if (!strcmp(argv[i], "--config") || !strncmp(argv[i], "--config=", 9)) return true;
    }
    return false;
}

/* Reads and validates FILE; NULL with the error printed. */
em_rt_config *em_cli_load_router_config(const char *path) {
    size_t len;
    char *text = em_cli_read_file(path, &len);
    if (!text) return NULL;
    em_rt_config *cfg = malloc(sizeof *cfg);
    char err[512];
    if (!cfg || !em_rt_config_parse(text, len, path, cfg, err, sizeof err)) {
        fprintf(stderr, "ember serve: %s\n", cfg ? err : "out of memory");
        free(cfg);
        free(text);
        return NULL;
    }
    free(text);
    return cfg;
}

int em_cli_serve_config(int argc, char **argv) {
    const char *config = NULL, *host = "127.0.0.1";
    int32_t port = 8080;
    double shutdown_timeout = 30;
    bool check = false;
    const em_opt opts[] = {
        {.name = "config", .type = EM_OPT_STRING, EM_OPT_DEST(config), .arg = "FILE",
         .help = "the router's YAML configuration (docs/ROUTING.md)", .flags = EM_OPT_REQUIRED},
        {.name = "host", .type = EM_OPT_STRING, EM_OPT_DEST(host), .arg = "ADDR",
         .help = "IPv4 or IPv6 address to listen on"},
        {.name = "port", .type = EM_OPT_INT, EM_OPT_DEST(port), .min = 0, .max = 65535,
         .help = "TCP port; 0 picks a free one (printed at start)"},
        {.name = "shutdown-timeout", .type = EM_OPT_FLOAT, EM_OPT_DEST(shutdown_timeout), .min = 0, .max = 86400,
         .help = "seconds requests in flight get to finish on SIGTERM"},
        {.name = "check", .type = EM_OPT_FLAG, EM_OPT_DEST(check), .help = "validate the configuration and exit"},
        {0}};
    const em_cmd cmd = {.name = "serve",
                        .synopsis = "--config FILE [--host ADDR] [--port N] [--check]",
                        .about = "Routes OpenAI-compatible requests between local models and remote APIs by policy,\n"
                                 "with budgets per key and a ledger of every request's cost.",
                        .opts = opts};
    em_opts_result pr = em_opts_parse(&cmd, argc, argv, NULL, NULL);
    if (pr != EM_OPTS_OK) return em_opts_exit_code(pr);
    em_rt_config *cfg = em_cli_load_router_config(config);
    if (!cfg) return 1;
    if (check) {
        char ledger[512];
        em_ledger_url_redacted(cfg->ledger, ledger, sizeof ledger);
        printf("%s: valid: %d backends, %d routes, %d keys%s, ledger %s\n", config, cfg->n_backends, cfg->n_routes,
               cfg->n_keys, cfg->airgap ? ", airgapped" : "", ledger);
        em_rt_config_free(cfg);
        free(cfg);
        return 0;
    }
    sigset_t sigs;
    em_cli_block_stop_signals(&sigs);
    em_router *r = NULL;
    if (em_router_start(&r, cfg, host, port) != EM_OK) {
        fprintf(stderr, "ember serve: %s\n", em_last_error());
        return 1;
    }
    fprintf(stderr, "ember serve: router listening on http://%s%s%s:%d\n", strchr(host, ':') ? "[" : "", host,
            strchr(host, ':') ? "]" : "", em_router_port(r));
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "ember serve: %s: finishing the requests in flight (up to %g s)\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM", shutdown_timeout);
    em_router_drain(r, shutdown_timeout);
    em_router_free(r);
    fprintf(stderr, "ember serve: stopped\n");
    return 0;
}
