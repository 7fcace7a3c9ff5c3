/*
 * test_tokenizer.c - the tokenizers against real vocabularies and their
 * reference token ids.
 *
 * Synthetic vocabularies built with the GGUF writer check the algorithms
 * and the API contract without any data.  With $EMBER_TEST_DATA:
 *  - every llama.cpp test-vector pair (.inp/.out) whose vocabulary is
 *    present must match id for id (no BOS, no special parsing), and
 *    detokenize must give the input back (BPE: exactly; SPM: exactly,
 *    since the prefix space is dropped again; WPM is lossy and skipped);
 *  - Llama 3.2's BPE, built into a GGUF from encoder.json and vocab.bpe,
 *    must match the 46 cases of inputs.json;
 *  - stories260K's tokenizer must give BOS-first ids and turn the reference
 *    greedy ids into the reference text;
 *  - War and Peace must tokenize with GPT-2 in seconds and round-trip.
 */
#include "ember.h"
#include "gguf/gguf.h"
#include "test.h"
#include "tokenizer/tokenizer.h"

#include <jansson.h>
#include <stdint.h>
#include <unistd.h>

/* ------------------------------------------------------------ helpers */

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        cap *= 2;
        buf = realloc(buf, cap + 1);
    }
    fclose(f);
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

static em_vocab *load_vocab(const char *path) {
    em_gguf *g = NULL;
    em_vocab *v = NULL;
    em_status st = em_gguf_open(&g, path);
    if (st != EM_OK) {
        fprintf(stderr, "cannot open %s: %s\n", path, em_last_error());
        return NULL;
    }
    st = em_vocab_load(&v, g);
    if (st != EM_OK) fprintf(stderr, "cannot load vocab %s: %s\n", path, em_last_error());
    /* The vocab copies what it needs, so the reader can go at once. */
    em_gguf_close(g);
    return v;
}

/* em_tokenize in one number, as the checks below compare it: the count
 * when it fits n_max, minus the count when it does not, INT32_MIN on an
 * error. */
static int32_t tok_count(const em_vocab *v, const char *text, int32_t len, em_token *t,
                         int32_t n_max, bool add_special, bool parse_special) {
    int32_t n = 0;
    if (em_tokenize(v, text, len, t, n_max, &n, add_special, parse_special) != EM_OK) return INT32_MIN;
    return n <= n_max ? n : -n;
}

/* Tokenizes into a heap array; *n gets the count (negative on error). */
static em_token *tokenize(const em_vocab *v, const char *text, size_t len, bool add_special,
                          bool parse_special, int32_t *n) {
    em_token *t = NULL;
    if (em_tokenize_alloc(v, text, (int32_t)len, add_special, parse_special, &t, n) != EM_OK) {
        *n = -1;
        return NULL;
    }
    return t;
}

static char *detokenize(const em_vocab *v, const em_token *t, int32_t n, bool remove_special,
                        bool unparse_special, int32_t *len) {
    int32_t need = em_detokenize(v, t, n, NULL, 0, remove_special, unparse_special);
    if (need == INT32_MIN) {
        *len = -1;
        return NULL;
    }
    int32_t cap = need < 0 ? -need : need;
    char *s = malloc((size_t)cap + 1);
    *len = em_detokenize(v, t, n, s, cap + 1, remove_special, unparse_special);
    return s;
}

static void print_ids(const char *label, const em_token *t, int32_t n) {
    fprintf(stderr, "  %s:", label);
    for (int32_t i = 0; i < n; i++) fprintf(stderr, " %d", t[i]);
    fprintf(stderr, "\n");
}

/* Writes a small GGUF vocabulary to a temp file and loads it. */
static em_vocab *vocab_from_writer(em_gguf_writer *w) {
    char path[] = "/tmp/ember-tok-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return NULL;
    close(fd);
    em_vocab *v = NULL;
    if (em_gguf_write(w, path) == EM_OK) v = load_vocab(path);
    else fprintf(stderr, "gguf write failed: %s\n", em_last_error());
    unlink(path);
    return v;
}

/* ------------------------------------------------ synthetic vocabularies */

/* A small SentencePiece vocabulary: byte fallback, scores, control tokens. */
static void test_spm_synthetic(void) {
    const char *toks[256 + 16];
    char bytes[256][8];
    int32_t types[272];
    float scores[272];
    int n = 0;
    toks[n] = "<unk>", types[n] = 2, scores[n++] = 0;
    toks[n] = "<s>", types[n] = 3, scores[n++] = 0;
    toks[n] = "</s>", types[n] = 3, scores[n++] = 0;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        toks[n] = bytes[b], types[n] = 6, scores[n++] = 0;
    }
    const char *words[] = {"\xe2\x96\x81", "a", "b", "c", "ab", "\342\226\201ab",
                           "bc", "abc", "<tag>", "<tag><tag>"};
    float wscore[] = {-1, -2, -2, -2, -3, -4, -1, -5, 0, 0};
    int first = n;
    for (int i = 0; i < 10; i++) {
        toks[n] = words[i];
        types[n] = i >= 8 ? 4 : 1;
        scores[n++] = wscore[i];
    }
    em_gguf_writer *w = NULL;
    CHECK_OK(em_gguf_writer_init(&w));
    CHECK_OK(em_gguf_set_str(w, "tokenizer.ggml.model", "llama"));
    CHECK_OK(em_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, (uint64_t)n));
    CHECK_OK(em_gguf_set_arr(w, "tokenizer.ggml.token_type", EM_GGUF_INT32, types, (uint64_t)n));
    CHECK_OK(em_gguf_set_arr(w, "tokenizer.ggml.scores", EM_GGUF_FLOAT32, scores, (uint64_t)n));
    em_vocab *v = vocab_from_writer(w);
    em_gguf_writer_free(w);
    CHECK(v != NULL);
    if (!v) return;
    CHECK(em_vocab_kind(v) == EM_VOCAB_SPM);
    CHECK(em_vocab_bos(v) == 1 && em_vocab_eos(v) == 2 && em_vocab_add_bos(v));

    int id_sp = first, id_bc = first + 6, id_a = first + 1, id_sp_ab = first + 5;
    em_token t[16];
    /* "abc": " abc" -> "▁abc"; "b"+"c" scores -1, then "▁"+"a"? "▁a" is no
     * token; "a"+"bc" = "abc" (-5).  So: ▁, abc. */
    int32_t n_t = tok_count(v, "abc", 3, t, 16, true, false);
    CHECK(n_t == 3 && t[0] == 1 && t[1] == id_sp && t[2] == first + 7);
    /* "ab b": bigrams ▁a(no) ab(-3) b▁(no) ▁b(no): ab first, then ▁ab (-4). */
    n_t = tok_count(v, "ab b", 4, t, 16, false, false);
    CHECK(n_t == 3 && t[0] == id_sp_ab && t[1] == id_sp && t[2] == first + 2);
    /* Unknown characters fall back to bytes. */
    n_t = tok_count(v, "a\xc3\xa9", 3, t, 16, false, false);
    CHECK(n_t == 4 && t[0] == id_sp && t[1] == id_a && t[2] == 3 + 0xC3 && t[3] == 3 + 0xA9);
    /* USER_DEFINED text is always its token; control text only when asked. */
    /* The text after a special token gets the prefix space again. */
    n_t = tok_count(v, "bc<tag>bc", 9, t, 16, false, false);
    CHECK(n_t == 5 && t[0] == id_sp && t[1] == id_bc && t[2] == first + 8 && t[3] == id_sp &&
          t[4] == id_bc);
    /* The longest special token at the leftmost position wins. */
    n_t = tok_count(v, "<tag><tag><tag>", 15, t, 16, false, false);
    CHECK(n_t == 2 && t[0] == first + 9 && t[1] == first + 8);
    n_t = tok_count(v, "<s>a", 4, t, 16, false, true);
    CHECK(n_t == 3 && t[0] == 1 && t[1] == id_sp && t[2] == id_a);
    n_t = tok_count(v, "<s>a", 4, t, 16, false, false);
    CHECK(n_t > 3 && t[0] == id_sp && t[1] == 3 + '<');
    /* Too small a buffer reports the size needed. */
    CHECK(tok_count(v, "abc", 3, t, 1, true, false) == -3);
    CHECK(tok_count(v, "", 0, t, 16, true, false) == 1 && t[0] == 1);
    CHECK(tok_count(v, "", 0, t, 16, false, false) == 0);

    /* Detokenize: the prefix space goes, bytes come back, controls hide. */
    em_token d[] = {1, id_sp_ab, id_sp, first + 2, 3 + 0xC3, 3 + 0xA9, 2};
    char buf[64];
    int32_t len = em_detokenize(v, d, 7, buf, sizeof buf, false, false);
    CHECK(len == 6 && memcmp(buf, "ab b\xc3\xa9", 6) == 0 && buf[6] == '\0');
    /* remove_special drops the BOS the model adds, not the EOS it does not. */
    len = em_detokenize(v, d, 7, buf, sizeof buf, true, true);
    CHECK(len == 10 && memcmp(buf, "ab b\xc3\xa9</s>", 10) == 0);
    len = em_detokenize(v, d, 7, buf, sizeof buf, false, true);
    CHECK(len == 14 && memcmp(buf, "<s> ab b\xc3\xa9</s>", 14) == 0);
    CHECK(em_detokenize(v, d, 7, buf, 3, false, false) == -6);
    em_token bad[] = {5, 100000};
    CHECK(em_detokenize(v, bad, 2, buf, sizeof buf, false, false) == INT32_MIN);
    CHECK(em_token_to_piece(v, -1, buf, 8, false) == INT32_MIN);
    CHECK(em_token_to_piece(v, id_sp_ab, buf, 8, false) == 3 && memcmp(buf, " ab", 3) == 0);
    CHECK(em_token_to_piece(v, id_sp_ab, buf, 2, false) == -3);
    CHECK(em_token_to_piece(v, 1, buf, 8, false) == 0);
    CHECK(em_token_to_piece(v, 1, buf, 8, true) == 3 && memcmp(buf, "<s>", 3) == 0);
    CHECK(strcmp(em_vocab_text(v, id_sp_ab), "\xe2\x96\x81" "ab") == 0);
    CHECK(em_vocab_is_eog(v, 2) && !em_vocab_is_eog(v, 1));

    /* Round trips of awkward inputs, invalid UTF-8 included. */
    const char *rt[] = {"", " ", "  a", "a\n\nb ", "\xff\xfe abc", "\xe2\x96", "x\0y",
                        "<s></s>"};
    size_t rtl[] = {0, 1, 3, 6, 7, 2, 3, 7};
    for (size_t i = 0; i < sizeof rt / sizeof rt[0]; i++) {
        int32_t nn, ln;
        em_token *tt = tokenize(v, rt[i], rtl[i], false, false, &nn);
        char *s = detokenize(v, tt, nn, false, false, &ln);
        CHECK_MSG(ln == (int32_t)rtl[i] && s && memcmp(s, rt[i], rtl[i]) == 0, "round trip %zu", i);
        free(tt);
        free(s);
    }
    em_vocab_free(v);
}

/* A small byte-level BPE vocabulary: the 256 byte symbols, a few merged
 * tokens and one control token; pre names the pre-tokenizer. */
static em_vocab *synthetic_bpe(const char *pre, int *n_out, int *base_out) {
    const char *toks[300];
    char chars[256][4];
    int n = 0;
    for (int b = 0; b < 256; b++) {
        /* The GPT-2 character of each byte. */
        uint32_t cp;
        if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) cp = (uint32_t)b;
        else if (b <= 32) cp = 256u + (uint32_t)b;
        else if (b <= 160) cp = 256u + 33 + (uint32_t)(b - 127);
        else cp = 256u + 67;
        if (cp < 0x80) {
            chars[b][0] = (char)cp, chars[b][1] = 0;
        } else {
            chars[b][0] = (char)(0xC0 | (cp >> 6)), chars[b][1] = (char)(0x80 | (cp & 0x3F));
            chars[b][2] = 0;
        }
        toks[n++] = chars[b];
    }
    int base = n;
    const char *extra[] = {"ab", "bc", "abc", "\304\240a", "<|end|>"}; /* "Ġa" */
    for (int i = 0; i < 5; i++) toks[n++] = extra[i];
    int32_t types[300];
    for (int i = 0; i < n; i++) types[i] = i == n - 1 ? 3 : 1;
    const char *merges[] = {"b c", "a b", "a bc", "\xc4\xa0 a"};
    em_gguf_writer *w = NULL;
    CHECK_OK(em_gguf_writer_init(&w));
    CHECK_OK(em_gguf_set_str(w, "tokenizer.ggml.model", "gpt2"));
    CHECK_OK(em_gguf_set_str(w, "tokenizer.ggml.pre", pre));
    CHECK_OK(em_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, (uint64_t)n));
    CHECK_OK(em_gguf_set_arr(w, "tokenizer.ggml.token_type", EM_GGUF_INT32, types, (uint64_t)n));
    CHECK_OK(em_gguf_set_arr_str(w, "tokenizer.ggml.merges", merges, 4));
    CHECK_OK(em_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)(n - 1)));
    em_vocab *v = vocab_from_writer(w);
    em_gguf_writer_free(w);
    *n_out = n;
    *base_out = base;
    return v;
}

/* Merge ranks decide, not lengths; bytes always round-trip. */
static void test_bpe_synthetic(void) {
    int n, base;
    em_vocab *v = synthetic_bpe("gpt-2", &n, &base);
    CHECK(v != NULL);
    if (!v) return;
    CHECK(em_vocab_kind(v) == EM_VOCAB_BPE && !em_vocab_add_bos(v));
    em_token t[16];
    /* "abc": b c (rank 0) first, then a bc -> abc. */
    int32_t k = tok_count(v, "abc", 3, t, 16, true, false);
    CHECK(k == 1 && t[0] == base + 2);
    /* " ab" is one word: "a b" (rank 1) beats "Ġ a" (rank 3), and "Ġ" +
     * "ab" has no merge. */
    k = tok_count(v, " ab", 3, t, 16, false, false);
    CHECK(k == 2 && t[0] == ' ' && t[1] == base);
    k = tok_count(v, "a<|end|>", 8, t, 16, false, true);
    CHECK(k == 2 && t[1] == n - 1 && em_vocab_is_eog(v, n - 1));
    k = tok_count(v, "a<|end|>", 8, t, 16, false, false);
    CHECK(k == 8);
    /* The status is the caller's: asking for the count writes nothing, and
     * a missing vocabulary is an invalid argument, not a count. */
    int32_t cnt = -1;
    CHECK(em_tokenize(v, "abc", 3, NULL, 0, &cnt, false, false) == EM_OK && cnt == 1);
    CHECK(em_tokenize(NULL, "abc", 3, t, 16, &cnt, false, false) == EM_ERR_INVALID_ARG);
    CHECK(em_tokenize(v, NULL, 3, t, 16, &cnt, false, false) == EM_ERR_INVALID_ARG);
    em_token *heap = NULL;
    CHECK(em_tokenize_alloc(v, "a<|end|>", -1, false, true, &heap, &cnt) == EM_OK && cnt == 2 &&
          heap && heap[1] == n - 1);
    free(heap);
    const char *rt = "\x00\x01 \xff\xc3(\n\r\t  x";
    int32_t nn, ln;
    em_token *tt = tokenize(v, rt, 12, false, false, &nn);
    char *s = detokenize(v, tt, nn, false, false, &ln);
    CHECK(nn == 12 && ln == 12 && s && memcmp(s, rt, 12) == 0);
    free(tt);
    free(s);
    em_vocab_free(v);
}

/* Tokenizes a and b with v and reports whether the ids are the same. */
static bool same_ids(const em_vocab *v, const char *a, const char *b) {
    int32_t na, nb;
    em_token *ta = tokenize(v, a, strlen(a), false, false, &na);
    em_token *tb = tokenize(v, b, strlen(b), false, false, &nb);
    bool same = na >= 0 && na == nb && (na == 0 || memcmp(ta, tb, sizeof *ta * (size_t)na) == 0);
    free(ta);
    free(tb);
    return same;
}

/* Detokenize(tokenize(text)) is want. */
static bool comes_back_as(const em_vocab *v, const char *text, size_t len, const char *want,
                          size_t want_len) {
    int32_t n, ln;
    em_token *t = tokenize(v, text, len, false, false, &n);
    char *s = detokenize(v, t, n, false, false, &ln);
    bool ok = ln == (int32_t)want_len && s && memcmp(s, want, want_len) == 0;
    free(t);
    free(s);
    return ok;
}

/* GPT-NeoX's tokenizer normalizes to NFC first (GPT-2's does not): a
 * decomposed accent tokenizes as the composed one, singletons map to their
 * canonical twins, marks are put in canonical order before composing, a
 * mark of the same class blocks a later one, Hangul jamo compose, and bytes
 * that are not UTF-8 pass through untouched even next to marks. */
static void test_nfc(void) {
    int n, base;
    em_vocab *neox = synthetic_bpe("gpt-neox", &n, &base);
    em_vocab *gpt2 = synthetic_bpe("gpt-2", &n, &base);
    CHECK(neox && gpt2);
    if (neox && gpt2) {
        CHECK(same_ids(neox, "caf" "e\xcc\x81", "caf\xc3\xa9"));
        CHECK(!same_ids(gpt2, "caf" "e\xcc\x81", "caf\xc3\xa9"));
        CHECK(same_ids(neox, "\xe2\x84\xa6", "\xce\xa9"));       /* ohm sign -> omega    */
        CHECK(same_ids(neox, "s\xcc\x87\xcc\xa3", "\xe1\xb9\xa9")); /* dot above + below */
        CHECK(same_ids(neox, "\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8", "\xea\xb0\x81"));
        CHECK(same_ids(neox, "\xe0\xa5\x98", "\xe0\xa4\x95\xe0\xa4\xbc")); /* exclusion */
        CHECK(same_ids(neox, "plain ascii 123", "plain ascii 123"));
        /* e + 20 x (acute 230, grave below 220): the 220s sort first, the
         * first acute composes, the second is blocked by the first. */
        char in[128], want[128];
        size_t k = 0, m = 0;
        in[k++] = 'e';
        for (int i = 0; i < 20; i++) {
            memcpy(in + k, "\xcc\x81\xcc\x96", 4);
            k += 4;
        }
        memcpy(want, "\xc3\xa9", 2);
        m = 2;
        for (int i = 0; i < 20; i++, m += 2) memcpy(want + m, "\xcc\x96", 2);
        for (int i = 0; i < 19; i++, m += 2) memcpy(want + m, "\xcc\x81", 2);
        CHECK(comes_back_as(neox, in, k, want, m));
        CHECK(comes_back_as(neox, "\xff\xcc\x81" "e\xcc\x81\xc3", 7, "\xff\xcc\x81\xc3\xa9\xc3", 6));
        CHECK(comes_back_as(gpt2, "e\xcc\x81", 3, "e\xcc\x81", 3));
    }
    em_vocab_free(neox);
    em_vocab_free(gpt2);
}

/* Every pre-tokenizer compiles, splits a text of many scripts and loses no
 * byte; an unknown one is refused. */
static void test_pretokenizers(void) {
    const char *names[] = {"gpt-2", "default", "gpt-neox", "olmo", "mpt", "llama-bpe", "llama3",
                           "dbrx", "qwen2", "qwen35", "deepseek-llm", "deepseek-coder",
                           "deepseek-v3", "falcon", "starcoder", "refact", "command-r",
                           "poro-chat", "viking", "tekken", "gpt-4o", "chameleon", "seed-coder",
                           "bailingmoe", "chatglm-bpe"};
    const char *text = "Hello, y'all! I'VE 12345 \xe6\x88\x91\xe6\x83\xb3 \xd0\xbd\xd0\xb5\xd1\x89"
                       "\xd0\xbe\t\n\n  x \xf0\x9f\xa6\x99 3.14 <sentinel:12> IMGIMGABZ \xff\xc3(";
    size_t len = strlen(text);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        int n, base;
        em_vocab *v = synthetic_bpe(names[i], &n, &base);
        CHECK_MSG(v != NULL, "pre-tokenizer %s", names[i]);
        if (!v) continue;
        int32_t nt, ln;
        em_token *t = tokenize(v, text, len, false, false, &nt);
        char *s = detokenize(v, t, nt, false, false, &ln);
        CHECK_MSG(nt > 0 && ln == (int32_t)len && s && memcmp(s, text, len) == 0,
                  "pre-tokenizer %s round trip", names[i]);
        free(t);
        free(s);
        em_vocab_free(v);
    }
    int n, base;
    em_vocab *v = synthetic_bpe("no-such-pre", &n, &base);
    CHECK(v == NULL && strstr(em_last_error(), "no-such-pre"));
    em_vocab_free(v);
}

/* Malformed tokenizer metadata fails with a message, never a crash. */
static void test_bad_metadata(void) {
    const char *toks[] = {"a", "b"};
    float scores[] = {0};
    struct {
        const char *model;
        bool with_tokens, short_scores, merges;
    } cases[] = {
        {NULL, true, false, false},    /* no model                      */
        {"t5x", true, false, false},   /* unknown model                 */
        {"llama", false, false, false},/* no tokens                     */
        {"llama", true, true, false},  /* fewer scores than tokens      */
        {"gpt2", true, false, false},  /* BPE without merges            */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        em_gguf_writer *w = NULL;
        CHECK_OK(em_gguf_writer_init(&w));
        if (cases[i].model) em_gguf_set_str(w, "tokenizer.ggml.model", cases[i].model);
        if (cases[i].with_tokens) em_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, 2);
        if (cases[i].short_scores)
            em_gguf_set_arr(w, "tokenizer.ggml.scores", EM_GGUF_FLOAT32, scores, 1);
        void *buf = NULL;
        size_t size = 0;
        CHECK_OK(em_gguf_write_memory(w, &buf, &size));
        em_gguf_writer_free(w);
        em_gguf *g = NULL;
        em_vocab *v = NULL;
        CHECK_OK(em_gguf_open_memory(&g, buf, size));
        em_status st = g ? em_vocab_load(&v, g) : EM_ERR_INTERNAL;
        CHECK_MSG(st != EM_OK && v == NULL && em_last_error()[0], "case %zu", i);
        em_gguf_close(g);
        free(buf);
    }
}

/* ------------------------------------------------ llama.cpp test vectors */

typedef struct vec_result {
    int cases, passed, roundtrip_failed;
} vec_result;

/* Round-trips the llama-spm inputs through a vocabulary that has no
 * vector files of its own. */
static vec_result roundtrip_only(const em_vocab *v, const char *name, const char *vocab_path) {
    vec_result r = {0, 0, 0};
    char p[1100];
    snprintf(p, sizeof p, "%s", vocab_path);
    char *slash = strrchr(p, '/');
    if (slash) snprintf(slash + 1, sizeof p - (size_t)(slash + 1 - p), "ggml-vocab-llama-spm.gguf.inp");
    size_t len;
    char *inp = read_all(p, &len);
    CHECK_MSG(inp != NULL, "%s: cannot read %s", name, p);
    if (!inp) return r;
    const char *sep = "\n__ggml_vocab_test__\n";
    for (char *ip = inp, *end; (end = strstr(ip, sep)); ip = end + strlen(sep)) {
        size_t n = (size_t)(end - ip);
        int32_t n_got, ln;
        em_token *got = tokenize(v, ip, n, false, false, &n_got);
        char *s = detokenize(v, got, n_got, false, false, &ln);
        r.cases++;
        if (n_got < 0 || ln != (int32_t)n || memcmp(s, ip, n) != 0) r.roundtrip_failed++;
        free(got);
        free(s);
    }
    CHECK_MSG(r.cases == 46 && r.roundtrip_failed == 0, "%s: %d of %d round trips failed", name,
              r.roundtrip_failed, r.cases);
    printf("vectors %-15s no reference ids; %d round-trip failures in %d inputs\n", name,
           r.roundtrip_failed, r.cases);
    free(inp);
    return r;
}

/* Checks v against the vector files path.inp and path.out. */
static vec_result run_vector_files(const em_vocab *v, const char *name, const char *path) {
    vec_result r = {0, 0, 0};
    size_t inp_len, out_len;
    char p2[1100];
    snprintf(p2, sizeof p2, "%s.inp", path);
    char *inp = read_all(p2, &inp_len);
    snprintf(p2, sizeof p2, "%s.out", path);
    char *out = read_all(p2, &out_len);
    if (!inp || !out) {
        /* No reference ids for this vocabulary: the inputs of another
         * file (they are the same 46 strings) still check round trips. */
        free(inp);
        free(out);
        return roundtrip_only(v, name, path);
    }
    /* Inputs end with "\n__ggml_vocab_test__\n"; the text before that
     * newline is the input, so inputs may themselves end in newlines. */
    const char *sep = "\n__ggml_vocab_test__\n";
    size_t seplen = strlen(sep);
    char *ip = inp, *op = out;
    for (;;) {
        char *end = strstr(ip, sep);
        if (!end) break;
        size_t len = (size_t)(end - ip);
        char *eol = strchr(op, '\n');
        if (!eol) break;
        *eol = '\0';
        em_token want[4096];
        int32_t n_want = 0;
        for (char *q = op; *q && n_want < 4096;) {
            char *e;
            long x = strtol(q, &e, 10);
            if (e == q) break;
            want[n_want++] = (em_token)x;
            q = e;
        }
        r.cases++;
        int32_t n_got;
        em_token *got = tokenize(v, ip, len, false, false, &n_got);
        bool ok = n_got == n_want && (n_got == 0 || memcmp(got, want, sizeof *got * (size_t)n_got) == 0);
        if (ok) {
            r.passed++;
        } else {
            fprintf(stderr, "%s case %d mismatch: '%.*s'\n", name, r.cases, (int)EM_MIN(len, 200), ip);
            print_ids("want", want, n_want);
            print_ids("got ", got, n_got);
        }
        if (em_vocab_kind(v) != EM_VOCAB_WPM && n_got >= 0) {
            int32_t ln;
            char *s = detokenize(v, got, n_got, false, false, &ln);
            if (ln != (int32_t)len || memcmp(s, ip, len) != 0) {
                r.roundtrip_failed++;
                fprintf(stderr, "%s case %d round trip: '%.*s' -> '%.*s'\n", name, r.cases,
                        (int)len, ip, ln > 0 ? (int)ln : 0, s ? s : "");
            }
            free(s);
        }
        free(got);
        ip = end + seplen;
        op = eol + 1;
    }
    CHECK_MSG(r.cases == 46, "%s: %d cases read", name, r.cases);
    CHECK_MSG(r.passed == r.cases, "%s: %d of %d cases match", name, r.passed, r.cases);
    CHECK_MSG(r.roundtrip_failed == 0, "%s: %d round trips failed", name, r.roundtrip_failed);
    printf("vectors %-15s %2d/%2d match, %d round-trip failures\n", name, r.passed, r.cases,
           r.roundtrip_failed);
    free(inp);
    free(out);
    return r;
}

static void run_vectors(const char *name) {
    char path[1024], rel[256];
    snprintf(rel, sizeof rel, "tokenizers/llama.cpp-vocab/ggml-vocab-%s.gguf", name);
    test_data_path(path, sizeof path, rel);
    em_vocab *v = load_vocab(path);
    CHECK_MSG(v != NULL, "%s: vocab", name);
    if (!v) return;
    run_vector_files(v, name, path);
    em_vocab_free(v);
}

/* ---------------------------------------------------------- Llama 3.2 */

static int b64_val(int c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

static size_t b64_decode(const char *in, char *out) {
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (; *in; in++) {
        int x = b64_val((unsigned char)*in);
        if (x < 0) continue; /* padding */
        acc = acc << 6 | (uint32_t)x;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (char)(acc >> bits & 0xFF);
        }
    }
    return n;
}

static void test_llama32(void) {
    char p_enc[1024], p_bpe[1024], p_inp[1024];
    test_data_path(p_enc, sizeof p_enc, "tokenizers/llama3.2-bpe/encoder.json");
    test_data_path(p_bpe, sizeof p_bpe, "tokenizers/llama3.2-bpe/vocab.bpe");
    test_data_path(p_inp, sizeof p_inp, "tokenizers/llama3.2-bpe/inputs.json");
    json_error_t jerr;
    json_t *enc = json_load_file(p_enc, 0, &jerr);
    CHECK_MSG(enc && json_is_object(enc), "encoder.json: %s", jerr.text);
    if (!enc) return;
    size_t n_tok = json_object_size(enc);
    const char **toks = calloc(n_tok, sizeof *toks);
    int32_t *types = malloc(n_tok * sizeof *types);
    const char *key;
    json_t *val;
    bool ids_ok = true;
    json_object_foreach(enc, key, val) {
        json_int_t id = json_integer_value(val);
        if (id < 0 || (size_t)id >= n_tok || toks[id]) ids_ok = false;
        else toks[id] = key;
    }
    CHECK_MSG(ids_ok, "encoder.json ids are not 0..%zu", n_tok - 1);
    for (size_t i = 0; i < n_tok; i++) types[i] = 1;

    size_t bpe_len;
    char *bpe = read_all(p_bpe, &bpe_len);
    CHECK(bpe != NULL);
    size_t n_merges = 0, cap = 1 << 18;
    const char **merges = malloc(cap * sizeof *merges);
    for (char *line = bpe; bpe && line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        size_t ll = strlen(line);
        if (ll && line[ll - 1] == '\r') line[--ll] = '\0';
        if (ll && strncmp(line, "#version", 8) != 0) {
            if (n_merges == cap) merges = realloc(merges, (cap *= 2) * sizeof *merges);
            merges[n_merges++] = line;
        }
        line = nl ? nl + 1 : NULL;
    }

    em_vocab *v = NULL;
    if (ids_ok && bpe) {
        em_gguf_writer *w = NULL;
        CHECK_OK(em_gguf_writer_init(&w));
        CHECK_OK(em_gguf_set_str(w, "tokenizer.ggml.model", "gpt2"));
        CHECK_OK(em_gguf_set_str(w, "tokenizer.ggml.pre", "llama-bpe"));
        CHECK_OK(em_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, n_tok));
        CHECK_OK(em_gguf_set_arr(w, "tokenizer.ggml.token_type", EM_GGUF_INT32, types, n_tok));
        CHECK_OK(em_gguf_set_arr_str(w, "tokenizer.ggml.merges", merges, n_merges));
        v = vocab_from_writer(w);
        em_gguf_writer_free(w);
    }
    free(merges);
    free(bpe);
    free(toks);
    free(types);
    json_decref(enc);
    CHECK(v != NULL);
    if (!v) return;

    json_t *inp = json_load_file(p_inp, 0, &jerr);
    CHECK_MSG(inp && json_is_array(inp), "inputs.json: %s", jerr.text);
    size_t idx;
    json_t *c;
    int passed = 0, total = 0, rt_failed = 0;
    json_array_foreach(inp, idx, c) {
        const char *b64 = json_string_value(json_object_get(c, "base64"));
        json_t *ids = json_object_get(c, "ids");
        if (!b64 || !json_is_array(ids)) continue;
        char *text = malloc(strlen(b64) + 4);
        size_t len = b64_decode(b64, text);
        int32_t n_want = (int32_t)json_array_size(ids);
        em_token *want = malloc(sizeof *want * (size_t)(n_want + 1));
        for (int32_t i = 0; i < n_want; i++)
            want[i] = (em_token)json_integer_value(json_array_get(ids, (size_t)i));
        int32_t n_got;
        em_token *got = tokenize(v, text, len, false, false, &n_got);
        total++;
        if (n_got == n_want && (n_got == 0 || !memcmp(got, want, sizeof *got * (size_t)n_got))) {
            passed++;
        } else {
            fprintf(stderr, "llama3.2 case %zu mismatch: '%.*s'\n", idx, (int)EM_MIN(len, 200), text);
            print_ids("want", want, n_want);
            print_ids("got ", got, n_got);
        }
        int32_t ln;
        char *s = detokenize(v, got, n_got, false, false, &ln);
        if (ln != (int32_t)len || memcmp(s, text, len) != 0) rt_failed++;
        free(s);
        free(got);
        free(want);
        free(text);
    }
    CHECK_MSG(total == 46 && passed == total, "llama3.2: %d of %d cases match", passed, total);
    CHECK_MSG(rt_failed == 0, "llama3.2: %d round trips failed", rt_failed);
    printf("vectors %-15s %2d/%2d match, %d round-trip failures\n", "llama3.2-bpe", passed, total,
           rt_failed);
    json_decref(inp);
    /* llama.cpp's llama-bpe vectors are Llama 3's, whose first 128000
     * tokens and merges are these: they must match as well. */
    char p_vec[1024];
    run_vector_files(v, "llama-bpe",
                     test_data_path(p_vec, sizeof p_vec,
                                    "tokenizers/llama.cpp-vocab/ggml-vocab-llama-bpe.gguf"));
    em_vocab_free(v);
}

/* ---------------------------------------------------------- stories260K */

static void test_stories260k(void) {
    char path[1024];
    em_vocab *v = load_vocab(test_data_path(path, sizeof path, "models/stories260K.gguf"));
    CHECK(v != NULL);
    if (!v) return;
    CHECK(em_vocab_kind(v) == EM_VOCAB_SPM && em_vocab_n_tokens(v) == 512);
    int32_t n;
    em_token *t = tokenize(v, "Once upon a time", 16, true, false, &n);
    CHECK(n >= 2 && t[0] == 1);
    int32_t ln;
    char *s = detokenize(v, t, n, true, false, &ln);
    CHECK(ln == 16 && s && memcmp(s, "Once upon a time", 16) == 0);
    free(s);
    /* Greedy generation starts with the prompt's own tokens. */
    size_t ids_len, md_len;
    char *ids = read_all(test_data_path(path, sizeof path, "models/stories260K.greedy-ids.txt"), &ids_len);
    char *md = read_all(test_data_path(path, sizeof path, "models/stories260K.expected.md"), &md_len);
    CHECK(ids && md);
    if (ids && md) {
        em_token g[512];
        int32_t ng = 0;
        for (char *q = ids; ng < 512;) {
            char *e;
            long x = strtol(q, &e, 10);
            if (e == q) break;
            g[ng++] = (em_token)x;
            q = e;
        }
        CHECK(ng == 256);
        for (int32_t i = 1; i < n && i - 1 < ng; i++) CHECK(t[i] == g[i - 1]);
        /* The first section is run.c's output for 200 steps: BOS is fed
         * at position 0 and each of the 200 steps prints the token it
         * sampled, so the text is the first 200 greedy ids. */
        char *start = strstr(md, "```\n");
        char *stop = start ? strstr(start + 4, "\n```") : NULL;
        CHECK(start && stop);
        if (start && stop) {
            start += 4;
            size_t want_len = (size_t)(stop - start);
            em_token with_bos[201];
            with_bos[0] = 1;
            memcpy(with_bos + 1, g, sizeof *g * 200);
            char *got = detokenize(v, with_bos, 201, true, false, &ln);
            CHECK_MSG(ln == (int32_t)want_len && got && memcmp(got, start, want_len) == 0,
                      "stories260K text:\n%.*s\n---\n%.*s", ln > 0 ? (int)ln : 0,
                      got ? got : "", (int)want_len, start);
            free(got);
            got = detokenize(v, g, 200, false, false, &ln);
            CHECK(ln == (int32_t)want_len && got && memcmp(got, start, want_len) == 0);
            free(got);
        }
    }
    free(ids);
    free(md);
    free(t);
    em_vocab_free(v);
}

/* ---------------------------------------------------------- throughput */

static void test_war_and_peace(void) {
    char path[1024];
    size_t len;
    char *text = read_all(test_data_path(path, sizeof path, "text/war-and-peace.txt"), &len);
    em_vocab *v = load_vocab(
        test_data_path(path, sizeof path, "tokenizers/llama.cpp-vocab/ggml-vocab-gpt-2.gguf"));
    CHECK(text && v);
    if (text && v) {
        double t0 = em_time_s();
        int32_t n;
        em_token *t = tokenize(v, text, len, false, false, &n);
        double t1 = em_time_s();
        int32_t ln;
        char *s = detokenize(v, t, n, false, false, &ln);
        double t2 = em_time_s();
        printf("war-and-peace: %zu bytes -> %d tokens in %.2f s (detokenize %.3f s)\n", len, n,
               t1 - t0, t2 - t1);
        CHECK(n > 500000);
        /* Generous: sanitizer builds are several times slower. */
        CHECK_MSG(t1 - t0 < 60.0, "tokenizing took %.1f s", t1 - t0);
        CHECK(ln == (int32_t)len && s && memcmp(s, text, len) == 0);
        free(s);
        free(t);
    }
    free(text);
    em_vocab_free(v);
}

int main(void) {
    test_spm_synthetic();
    test_bpe_synthetic();
    test_pretokenizers();
    test_nfc();
    test_bad_metadata();
    if (!getenv("EMBER_TEST_DATA")) {
        printf("SKIP: EMBER_TEST_DATA is not set (synthetic tests: %d checks, %d failed)\n",
               test_checks, test_failures);
        return test_failures ? 1 : 77;
    }
    const char *vocabs[] = {"llama-spm", "phi-3", "baichuan", "gpt-2", "deepseek-coder",
                            "deepseek-llm", "falcon", "mpt", "refact", "starcoder",
                            "bert-bge", "gpt-neox"};
    for (size_t i = 0; i < sizeof vocabs / sizeof vocabs[0]; i++) run_vectors(vocabs[i]);
    /* A full model file carries the same Llama 2 vocabulary. */
    char p_model[1024], p_vec[1024];
    em_vocab *tiny = load_vocab(test_data_path(p_model, sizeof p_model, "models/llama-2-tiny-random.gguf"));
    CHECK(tiny != NULL);
    if (tiny) {
        run_vector_files(tiny, "llama-2-tiny", test_data_path(p_vec, sizeof p_vec,
                         "tokenizers/llama.cpp-vocab/ggml-vocab-llama-spm.gguf"));
        em_vocab_free(tiny);
    }
    test_llama32();
    test_stories260k();
    test_war_and_peace();
    TEST_END();
}
