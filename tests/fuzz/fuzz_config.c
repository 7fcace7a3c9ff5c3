/*
 * fuzz_config.c - libFuzzer target: arbitrary bytes as the router's YAML
 * configuration (`ember serve --config`).
 *
 * Beyond "no crash, no leak, no out-of-bounds access" it checks the
 * contract: a refused file leaves a message that names the file, an
 * accepted one has every route's and rule's backend index in range, and
 * airgap never coexists with a remote backend.
 */
#include "router/config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static em_rt_config cfg;
    char err[512] = "";
    setenv("EMBER_FUZZ_KEY", "fuzz-secret", 1);
    if (!em_rt_config_parse((const char *)data, size, "fuzz.yaml", &cfg, err, sizeof err)) {
        if (strncmp(err, "fuzz.yaml", 9)) abort();
        return 0;
    }
    for (int i = 0; i < cfg.n_routes; i++) {
        const em_rt_route *r = &cfg.routes[i];
        if (r->n_backends < 1 || r->n_backends > EM_RT_MAX_HOPS) abort();
        for (int j = 0; j < r->n_backends; j++)
            if (r->backends[j] < 0 || r->backends[j] >= cfg.n_backends) abort();
        for (int j = 0; j < r->n_rules; j++)
            if (r->rules[j].backend < 0 || r->rules[j].backend >= cfg.n_backends) abort();
    }
    for (int i = 0; i < cfg.n_backends; i++)
        if (cfg.airgap && cfg.backends[i].kind == EM_RT_REMOTE) abort();
    for (int i = 0; i < cfg.n_keys; i++)
        if (!cfg.keys[i].secret || (cfg.keys[i].downgrade_route >= cfg.n_routes)) abort();
    em_rt_config_free(&cfg);
    return 0;
}
