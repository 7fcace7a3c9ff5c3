/*
 * tokenize.c - `ember tokenize`: shows how a model's tokenizer splits a
 * text.
 *
 *   ember tokenize -m MODEL [--ids] [--no-bos] [--parse-special]
 *                  (-p TEXT | -f FILE)
 *
 * Only the tokenizer is loaded (straight from the GGUF metadata), so the
 * command also works on vocabulary-only files.  By default each token is
 * printed on its own line as `id -> 'piece'`; with --ids the ids are
 * printed as one JSON array.
 */
#include "cli/cli.h"
#include "ember.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the command line asks for. */
typedef struct tokenize_opts {
    const char *model, *prompt, *file;
    bool ids_only, bos, parse_special;
} tokenize_opts;

static em_opts_result parse_args(int argc, char **argv, tokenize_opts *o) {
    *o = (tokenize_opts){.bos = true};
    const em_opt opts[] = {
        {.name = "model", .short_name = "m", .type = EM_OPT_STRING, EM_OPT_DEST(o->model), .arg = "FILE",
         .help = "GGUF model or vocabulary file", .flags = EM_OPT_REQUIRED},
        {.name = "prompt", .short_name = "p", .type = EM_OPT_STRING, EM_OPT_DEST(o->prompt), .arg = "TEXT",
         .help = "text to tokenize"},
        {.name = "file", .short_name = "f", .type = EM_OPT_STRING, EM_OPT_DEST(o->file), .arg = "FILE",
         .help = "read the text from a file"},
        {.name = "ids", .type = EM_OPT_FLAG, EM_OPT_DEST(o->ids_only), .help = "print only the ids, as a JSON array"},
        {.name = "bos", .type = EM_OPT_FLAG, EM_OPT_DEST(o->bos),
         .help = "add the BOS/EOS tokens the model asks for"},
        {.name = "parse-special", .type = EM_OPT_FLAG, EM_OPT_DEST(o->parse_special),
         .help = "turn special-token text (\"<|im_start|>\") into its token"},
        {0}};
    const em_cmd cmd = {.name = "tokenize", .synopsis = "-m MODEL [--ids] [--no-bos] [--parse-special] (-p TEXT | -f FILE)",
                        .opts = opts};
    em_opts_result r = em_opts_parse(&cmd, argc, argv, NULL, NULL);
    if (r == EM_OPTS_OK && (!o->prompt) == (!o->file)) {
        fprintf(stderr, "ember tokenize: give exactly one of -p TEXT or -f FILE\n");
        r = EM_OPTS_USAGE;
    }
    return r;
}

/* Prints each token as `id -> 'piece'`, special tokens by their text. */
static int print_pieces(const em_vocab *v, const em_token *t, int32_t n) {
    size_t cap = 256;
    char *buf = malloc(cap);
    if (!buf) return 1;
    for (int32_t i = 0; i < n; i++) {
        int32_t len = em_token_to_piece(v, t[i], buf, (int32_t)cap, true);
        if (len < 0 && len != INT32_MIN) {
            cap = (size_t)-len;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                return 1;
            }
            buf = nb;
            len = em_token_to_piece(v, t[i], buf, (int32_t)cap, true);
        }
        if (len < 0) {
            fprintf(stderr, "ember tokenize: %s\n", em_last_error());
            free(buf);
            return 1;
        }
        printf("%d -> '%.*s'\n", (int)t[i], (int)len, buf);
    }
    free(buf);
    return 0;
}

static void print_ids(const em_token *t, int32_t n) {
    putchar('[');
    for (int32_t i = 0; i < n; i++) printf(i ? ", %d" : "%d", (int)t[i]);
    printf("]\n");
}

int em_cli_tokenize(int argc, char **argv) {
    tokenize_opts o;
    em_opts_result r = parse_args(argc, argv, &o);
    if (r != EM_OPTS_OK) return em_opts_exit_code(r);
    const char *model = em_cli_model_path(o.model), *prompt = o.prompt, *file = o.file;

    char *text = NULL;
    size_t len;
    if (file) {
        text = em_cli_read_file(file, &len);
        if (!text) return 1;
    } else {
        len = strlen(prompt);
    }
    if (len > INT32_MAX) {
        fprintf(stderr, "ember tokenize: the text is too long (%zu bytes)\n", len);
        free(text);
        return 1;
    }

    em_gguf *g = NULL;
    em_vocab *v = NULL;
    em_status st = em_gguf_open(&g, model);
    if (st == EM_OK) {
        st = em_vocab_load(&v, g);
        em_gguf_close(g); /* the vocab keeps copies of what it needs */
    }
    if (st != EM_OK) {
        fprintf(stderr, "ember tokenize: %s: %s\n", model, em_last_error());
        free(text);
        return 1;
    }

    const char *src = file ? text : prompt;
    int rc = 1;
    int32_t n = 0;
    em_token *t = NULL;
    em_status tst = em_tokenize_alloc(v, src, (int32_t)len, o.bos, o.parse_special, &t, &n);
    if (tst != EM_OK) {
        fprintf(stderr, "ember tokenize: %s\n", em_last_error());
    } else if (o.ids_only) {
        print_ids(t, n);
        rc = 0;
    } else {
        rc = print_pieces(v, t, n);
    }
    free(t);
    free(text);
    em_vocab_free(v);
    return rc;
}
