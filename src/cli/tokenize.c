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

static void usage(FILE *out) {
    fprintf(out,
            "usage: ember tokenize -m MODEL [--ids] [--no-bos] [--parse-special]\n"
            "                      (-p TEXT | -f FILE)\n"
            "\n"
            "  -m, --model FILE     GGUF model or vocabulary file\n"
            "  -p, --prompt TEXT    text to tokenize\n"
            "  -f, --file FILE      read the text from a file\n"
            "      --ids            print only the ids, as a JSON array\n"
            "      --no-bos         do not add the BOS/EOS tokens the model asks for\n"
            "      --parse-special  turn special-token text (\"<|im_start|>\") into its token\n");
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
    const char *model = NULL, *prompt = NULL, *file = NULL;
    bool ids_only = false, no_bos = false, parse_special = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has_value) {
            model = em_cli_model_path(argv[++i]);
        } else if ((!strcmp(a, "-p") || !strcmp(a, "--prompt")) && has_value) {
            prompt = argv[++i];
        } else if ((!strcmp(a, "-f") || !strcmp(a, "--file")) && has_value) {
            file = argv[++i];
        } else if (!strcmp(a, "--ids")) {
            ids_only = true;
        } else if (!strcmp(a, "--no-bos")) {
            no_bos = true;
        } else if (!strcmp(a, "--parse-special")) {
            parse_special = true;
        } else {
            fprintf(stderr, "ember tokenize: unknown or incomplete option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!model || (!prompt) == (!file)) {
        fprintf(stderr, "ember tokenize: need -m MODEL and exactly one of -p TEXT or -f FILE\n\n");
        usage(stderr);
        return 2;
    }

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
    em_status tst = em_tokenize_alloc(v, src, (int32_t)len, !no_bos, parse_special, &t, &n);
    if (tst != EM_OK) {
        fprintf(stderr, "ember tokenize: %s\n", em_last_error());
    } else if (ids_only) {
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
