/*
 * args.c - what several subcommands share beyond the option parser
 * (opts.c): the KV cache types of --kv-type and reading a whole file.
 */
#include "cli/cli.h"
#include "core/core.h"

#include <string.h>

#include <stdio.h>
#include <stdlib.h>

const char *const em_cli_kv_choices[] = {"f16", "f32", "q8_0", NULL};
const int em_cli_kv_values[] = {EM_TYPE_F16, EM_TYPE_F32, EM_TYPE_Q8_0};

const char *em_cli_kv_type_name(em_type t) {
    return t == EM_TYPE_F32 ? "f32" : t == EM_TYPE_Q8_0 ? "q8_0" : "f16";
}

char *em_cli_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "ember: cannot open %s\n", path);
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        cap *= 2;
        char *nb = realloc(buf, cap + 1);
        if (!nb) {
            free(buf);
            buf = NULL;
        }
        buf = nb;
    }
    int err = ferror(f);
    fclose(f);
    if (!buf || err) {
        free(buf);
        fprintf(stderr, "ember: cannot read %s\n", path);
        return NULL;
    }
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}


em_status em_cli_context_init(em_context **out, const em_model *model, int32_t n_ctx, int32_t n_batch,
                              int32_t n_threads, em_type kv_type) {
    em_context_params cp = em_context_default_params();
    cp.n_ctx = n_ctx ? n_ctx : EM_MIN(em_model_n_ctx_train(model), 4096);
    cp.n_batch = n_batch;
    cp.n_threads = n_threads;
    cp.kv_type = kv_type;
    return em_context_init(out, model, &cp);
}
