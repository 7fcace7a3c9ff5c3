/*
 * tokenize_cases - tokenizes many inputs with one vocabulary, for the
 * comparison with the reference tokenizers (tests/ref/test_tokenizer_ref.sh).
 *
 *   tokenize_cases VOCAB CASES_HEX
 *
 * VOCAB is a GGUF file, or a directory holding encoder.json and vocab.bpe
 * (GPT-2 file format, as shared/tokenizers/llama3.2-bpe), which becomes a
 * byte-level BPE vocabulary with the llama-bpe pre-tokenizer.  CASES_HEX
 * holds one input a line, hex-encoded.  Each input is tokenized without
 * special tokens and without parsing special-token text; the ids go to
 * stdout, one line per input.  Exit 1 when a call fails, 2 on bad usage.
 */
#include "core/core.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Builds a GGUF vocabulary from encoder.json + vocab.bpe in dir. */
static em_status vocab_from_gpt2_files(const char *dir, em_vocab **out) {
    char p_enc[4096], p_bpe[4096];
    snprintf(p_enc, sizeof p_enc, "%s/encoder.json", dir);
    snprintf(p_bpe, sizeof p_bpe, "%s/vocab.bpe", dir);
    json_error_t jerr;
    json_t *enc = json_load_file(p_enc, 0, &jerr);
    if (!enc || !json_is_object(enc)) {
        json_decref(enc);
        return em_error(EM_ERR_FORMAT, "%s: %s", p_enc, jerr.text);
    }
    char *bpe = NULL;
    em_status st = em_read_file(p_bpe, SIZE_MAX / 2, &bpe, NULL);
    size_t n_tok = json_object_size(enc), n_merges = 0;
    const char **toks = calloc(n_tok, sizeof *toks);
    int32_t *types = malloc(n_tok * sizeof *types);
    const char **merges = NULL;
    if (st == EM_OK && (!toks || !types)) st = em_error(EM_ERR_NOMEM, "out of memory");
    const char *key;
    json_t *val;
    if (st == EM_OK) {
        json_object_foreach(enc, key, val) {
            json_int_t id = json_integer_value(val);
            if (id < 0 || (size_t)id >= n_tok || toks[id]) {
                st = em_error(EM_ERR_FORMAT, "%s: ids are not 0..%zu", p_enc, n_tok - 1);
                break;
            }
            toks[id] = key;
            types[id] = 1;
        }
    }
    if (st == EM_OK) {
        size_t lines = 1;
        for (const char *c = bpe; *c; c++) lines += *c == '\n';
        merges = malloc(lines * sizeof *merges);
        if (!merges) st = em_error(EM_ERR_NOMEM, "out of memory");
        for (char *line = bpe; st == EM_OK && line && *line;) {
            char *nl = strchr(line, '\n');
            if (nl) *nl = '\0';
            size_t ll = strlen(line);
            if (ll && line[ll - 1] == '\r') line[--ll] = '\0';
            if (ll && strncmp(line, "#version", 8) != 0) merges[n_merges++] = line;
            line = nl ? nl + 1 : NULL;
        }
    }
    em_gguf_writer *w = NULL;
    char path[] = "/tmp/ember-tokcases-XXXXXX";
    int fd = -1;
    if (st == EM_OK) st = em_gguf_writer_init(&w);
    if (st == EM_OK) st = em_gguf_set_str(w, "tokenizer.ggml.model", "gpt2");
    if (st == EM_OK) st = em_gguf_set_str(w, "tokenizer.ggml.pre", "llama-bpe");
    if (st == EM_OK) st = em_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, n_tok);
    if (st == EM_OK)
        st = em_gguf_set_arr(w, "tokenizer.ggml.token_type", EM_GGUF_INT32, types, n_tok);
    if (st == EM_OK) st = em_gguf_set_arr_str(w, "tokenizer.ggml.merges", merges, n_merges);
    if (st == EM_OK && (fd = mkstemp(path)) < 0)
        st = em_error(EM_ERR_IO, "cannot create a temporary file");
    if (fd >= 0) close(fd);
    if (st == EM_OK) st = em_gguf_write(w, path);
    em_gguf *g = NULL;
    if (st == EM_OK) st = em_gguf_open(&g, path);
    if (st == EM_OK) st = em_vocab_load(out, g);
    em_gguf_close(g);
    if (fd >= 0) unlink(path);
    em_gguf_writer_free(w);
    free(merges);
    free(types);
    free(toks);
    free(bpe);
    json_decref(enc);
    return st;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s VOCAB.gguf|GPT2_DIR CASES_HEX\n", argv[0]);
        return 2;
    }
    em_vocab *v = NULL;
    struct stat sb;
    em_status st;
    if (stat(argv[1], &sb) == 0 && S_ISDIR(sb.st_mode)) {
        st = vocab_from_gpt2_files(argv[1], &v);
    } else {
        em_gguf *g = NULL;
        st = em_gguf_open(&g, argv[1]);
        if (st == EM_OK) st = em_vocab_load(&v, g);
        em_gguf_close(g);
    }
    if (st != EM_OK) {
        fprintf(stderr, "%s: %s\n", argv[1], em_last_error());
        return 2;
    }
    FILE *f = fopen(argv[2], "r");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", argv[2]);
        em_vocab_free(v);
        return 2;
    }
    int rc = 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while (rc == 0 && (n = getline(&line, &cap, f)) >= 0) {
        size_t len = 0;
        for (ssize_t i = 0; i + 1 < n; i += 2) {
            int hi = hexval((unsigned char)line[i]), lo = hexval((unsigned char)line[i + 1]);
            if (hi < 0 || lo < 0) break;
            line[len++] = (char)(hi << 4 | lo);
        }
        em_token *ids = NULL;
        int32_t n_ids = 0;
        if (em_tokenize_alloc(v, line, (int32_t)len, false, false, &ids, &n_ids) != EM_OK) {
            fprintf(stderr, "tokenize: %s\n", em_last_error());
            rc = 1;
            break;
        }
        for (int32_t i = 0; i < n_ids; i++) printf(i ? " %d" : "%d", (int)ids[i]);
        printf("\n");
        free(ids);
    }
    free(line);
    fclose(f);
    em_vocab_free(v);
    return rc;
}
