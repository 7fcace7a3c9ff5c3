/*
 * embed.c - `ember embed`: a text's embedding vector.
 *
 *   ember embed -m MODEL (-p TEXT | -f FILE) [-t N]
 *
 * Tokenizes the text with the model's special tokens (BERT's [CLS] and
 * [SEP]), runs em_embed (pooled as the model says, L2-normalised) and
 * prints the vector as one JSON array of floats.
 */
#include "cli/cli.h"
#include "ember.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct embed_opts {
    const char *model, *prompt, *file;
    int32_t threads;
} embed_opts;

static em_opts_result parse_args(int argc, char **argv, embed_opts *o) {
    *o = (embed_opts){0};
    const em_opt opts[] = {
        {.name = "model", .short_name = "m", .type = EM_OPT_STRING, EM_OPT_DEST(o->model), .arg = "FILE",
         .help = "GGUF embedding model (bert, nomic-bert, or any ember runs)", .flags = EM_OPT_REQUIRED},
        {.name = "prompt", .short_name = "p", .type = EM_OPT_STRING, EM_OPT_DEST(o->prompt), .arg = "TEXT",
         .help = "text to embed"},
        {.name = "file", .short_name = "f", .type = EM_OPT_STRING, EM_OPT_DEST(o->file), .arg = "FILE",
         .help = "read the text from a file"},
        {.name = "threads", .short_name = "t", .type = EM_OPT_INT, EM_OPT_DEST(o->threads), .arg = "N",
         .help = "worker threads (default: physical cores)"},
        {0}};
    const em_cmd cmd = {.name = "embed", .synopsis = "-m MODEL (-p TEXT | -f FILE) [-t N]",
                        .about = "Prints a text's embedding (pooled as the model says, L2-normalised) as a JSON array.\n",
                        .opts = opts};
    em_opts_result r = em_opts_parse(&cmd, argc, argv, NULL, NULL);
    if (r == EM_OPTS_OK && (!o->prompt) == (!o->file)) {
        fprintf(stderr, "ember embed: give exactly one of -p TEXT or -f FILE\n");
        r = EM_OPTS_USAGE;
    }
    return r;
}

int em_cli_embed(int argc, char **argv) {
    embed_opts o;
    em_opts_result r = parse_args(argc, argv, &o);
    if (r != EM_OPTS_OK) return em_opts_exit_code(r);
    char *text = NULL;
    size_t len = 0;
    if (o.file) {
        text = em_cli_read_file(o.file, &len);
        if (!text) return 1;
    }
    const char *src = text ? text : o.prompt;
    if (!text) len = strlen(src);
    em_model *m = NULL;
    em_context *c = NULL;
    em_token *t = NULL;
    float *vec = NULL;
    int32_t n = 0;
    em_status st = em_model_load(&m, em_cli_model_path(o.model), NULL);
    if (st == EM_OK) st = em_tokenize_alloc(em_model_vocab(m), src, (int32_t)len, true, false, &t, &n);
    if (st == EM_OK) {
        em_context_params cp = em_context_default_params();
        cp.embeddings = true;
        cp.n_threads = o.threads;
        cp.n_batch = n > 0 ? n : 1;
        st = em_context_init(&c, m, &cp);
    }
    if (st == EM_OK) {
        vec = malloc((size_t)em_model_n_embd(m) * sizeof *vec);
        if (!vec) {
            fprintf(stderr, "ember embed: out of memory\n");
            st = EM_ERR_NOMEM;
        } else {
            st = em_embed(c, t, n, vec);
        }
    }
    int rc = 0;
    if (st == EM_OK) {
        putchar('[');
        for (int32_t j = 0; j < em_model_n_embd(m); j++) printf("%s%.6f", j ? ", " : "", vec[j]);
        printf("]\n");
    } else {
        if (vec || st != EM_ERR_NOMEM) fprintf(stderr, "ember embed: %s\n", em_last_error());
        rc = 1;
    }
    free(vec);
    free(t);
    free(text);
    em_context_free(c);
    em_model_free(m);
    return rc;
}
