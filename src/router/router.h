/*
 * router.h - `ember serve --config FILE`: one OpenAI-compatible endpoint
 * in front of several backends (local GGUF models served by engines in
 * this process, remote OpenAI-compatible APIs, replicas of either), which
 * sends each request by its route's policy (direct, fallback, cascade,
 * rules), enforces the keys' budgets and records every request and
 * attempt in the ledger.  docs/ROUTING.md is the user's reference.
 */
#ifndef EM_ROUTER_H
#define EM_ROUTER_H

#include "ember.h"
#include "router/config.h"

typedef struct em_router em_router;

/* Starts the local backends, opens the ledger, starts the health checks
 * and listens on host:port (0: a free port).  Takes cfg (freed with the
 * router, or here on failure). */
em_status em_router_start(em_router **out, em_rt_config *cfg, const char *host, int port);
int em_router_port(const em_router *r);
/* Stops accepting connections and waits up to timeout_s for the requests
 * in flight. */
void em_router_drain(em_router *r, double timeout_s);
void em_router_free(em_router *r);

#endif
