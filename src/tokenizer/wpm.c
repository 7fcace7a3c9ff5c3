/*
 * wpm.c - WordPiece (tokenizer.ggml.model "bert").
 *
 * First BERT's basic tokenization, as Hugging Face's BertNormalizer and
 * BertPreTokenizer do it: drop NUL, U+FFFD and control characters; treat
 * whitespace as word breaks; with strip_accents decompose (NFD) and drop
 * nonspacing marks; lowercase; and make every punctuation mark (ASCII
 * symbols included) and every CJK ideograph a word of its own.
 *
 * Then each word is matched greedily, longest token first, from its start.
 * GGUF files store WordPiece vocabularies the way llama.cpp converts them:
 * a token that starts a word carries a "▁" prefix, a continuation token
 * (BERT's "##x") is stored bare.  So a word is looked up as "▁" + word,
 * which makes the first piece a word-start token and the rest
 * continuations.  A word that cannot be covered, or that is longer than
 * BERT's 100-character limit, becomes one <unk>.
 */
#include "tokenizer/vocab.h"
#include "tokenizer/unicode.h"

#include <string.h>

#define WPM_MAX_WORD_CHARS 100

static const char phantom_space[] = "\xe2\x96\x81"; /* "▁" */

/* The CJK ideograph blocks BERT isolates (its own table, quirks kept:
 * the extension range starts at U+2B920 there). */
static int is_cjk(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Unicode's "Other" categories, which BERT drops as control characters. */
static int is_other(em_uc_cat c) {
    return c == EM_UC_CC || c == EM_UC_CF || c == EM_UC_CN || c == EM_UC_CO || c == EM_UC_CS;
}

/* BERT's punctuation: every ASCII character that is neither a letter, a
 * digit, a space nor a control (so ASCII symbols such as '$' too), and
 * every Unicode punctuation mark. */
static int is_punct(uint32_t c, em_uc_cat cat) {
    if (c < 0x80)
        return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
               (c >= 123 && c <= 126);
    return cat >= EM_UC_PC && cat <= EM_UC_PO;
}

/* Normalized words go to w->buf, each as "▁" + text, their spans to
 * w->span_a. */
typedef struct wpm_state {
    em_tok_work *w;
    size_t n_buf;
    size_t n_words;
    bool open; /* a word is being written */
} wpm_state;

static em_status put(wpm_state *s, const char *p, size_t k) {
    /* Spans hold 32-bit offsets. */
    if (s->n_buf + k > UINT32_MAX)
        return em_error(EM_ERR_INVALID_ARG, "tokenize: normalized text over 4 GiB");
    em_status st = em_tok_reserve((void **)&s->w->buf, &s->w->cap_buf, s->n_buf + k, 1);
    if (st != EM_OK) return st;
    memcpy(s->w->buf + s->n_buf, p, k);
    s->n_buf += k;
    return EM_OK;
}

static em_status close_word(wpm_state *s) {
    if (!s->open) return EM_OK;
    s->open = false;
    /* open_word reserved the span. */
    s->w->span_a[s->n_words].end = (uint32_t)s->n_buf;
    s->n_words++;
    return EM_OK;
}

static em_status open_word(wpm_state *s) {
    if (s->open) return EM_OK;
    em_tok_work *w = s->w;
    em_status st = em_tok_reserve((void **)&w->span_a, &w->cap_span_a, s->n_words + 1,
                                  sizeof *w->span_a);
    if (st != EM_OK) return st;
    w->span_a[s->n_words].start = (uint32_t)s->n_buf;
    s->open = true;
    return put(s, phantom_space, 3);
}

/* One normalized code point: a break, a word of its own, or more word. */
static em_status emit(wpm_state *s, uint32_t c) {
    char u[4];
    em_status st;
    if (em_uc_is_space(c)) return close_word(s);
    if (is_punct(c, em_uc_category(c)) || is_cjk(c)) {
        if ((st = close_word(s)) != EM_OK) return st;
        if ((st = open_word(s)) != EM_OK) return st;
        if ((st = put(s, u, em_utf8_encode(c, u))) != EM_OK) return st;
        return close_word(s);
    }
    if ((st = open_word(s)) != EM_OK) return st;
    return put(s, u, em_utf8_encode(c, u));
}

static em_status normalize(const em_vocab *v, wpm_state *s, const char *text, size_t len) {
    em_status st;
    for (size_t i = 0; i < len;) {
        size_t used;
        uint32_t c = em_utf8_decode(text + i, len - i, &used);
        i += used;
        /* Clean: NUL, replacement characters (and so invalid UTF-8) and
         * control characters other than tab and newlines disappear. */
        em_uc_cat cat = em_uc_category(c);
        if (c == 0 || c == EM_UC_REPLACEMENT ||
            (is_other(cat) && c != '\t' && c != '\n' && c != '\r'))
            continue;
        uint32_t d[EM_UC_MAX_DECOMP];
        size_t nd = 1;
        d[0] = c;
        if (v->strip_accents) nd = em_uc_decompose(c, d);
        for (size_t k = 0; k < nd; k++) {
            uint32_t e = d[k];
            if (v->strip_accents && em_uc_category(e) == EM_UC_MN) continue;
            if (v->lowercase) {
                /* U+0130 lowercases to "i" + U+0307 (full case mapping). */
                uint32_t lo = em_uc_tolower(e);
                if ((st = emit(s, lo)) != EM_OK) return st;
                if (e == 0x130 && (st = emit(s, 0x307)) != EM_OK) return st;
                continue;
            }
            if ((st = emit(s, e)) != EM_OK) return st;
        }
    }
    return close_word(s);
}

/* Greedy longest-first matching of one "▁"-prefixed word. */
static em_status match_word(const em_vocab *v, em_tok_work *w, const char *word, size_t n) {
    em_status st;
    size_t n_chars = 0;
    for (size_t i = 3; i < n; i++) n_chars += ((unsigned char)word[i] & 0xC0) != 0x80;
    size_t first = w->n_out;
    if (n_chars <= WPM_MAX_WORD_CHARS) {
        size_t i = 0;
        while (i < n) {
            size_t j = EM_MIN(n, i + (size_t)v->max_token_len);
            int32_t id = -1;
            /* Past the first piece only continuation tokens may match; a
             * "▁" in the text there would find a word-start token. */
            if (i > 0 && n - i >= 3 && memcmp(word + i, phantom_space, 3) == 0) j = i;
            for (; j > i; j--)
                if ((id = em_vocab_find(v, word + i, j - i)) >= 0) break;
            if (id < 0) {
                w->n_out = first; /* the whole word is unknown */
                break;
            }
            if ((st = em_tok_push(w, id)) != EM_OK) return st;
            i = j;
        }
    }
    if (w->n_out == first && v->unk >= 0) return em_tok_push(w, v->unk);
    return EM_OK;
}

em_status em_wpm_tokenize(const em_vocab *v, em_tok_work *w, const char *text, size_t len) {
    wpm_state s = {.w = w};
    em_status st = normalize(v, &s, text, len);
    if (st != EM_OK) return st;
    for (size_t i = 0; i < s.n_words; i++) {
        em_span sp = w->span_a[i];
        if ((st = match_word(v, w, w->buf + sp.start, sp.end - sp.start)) != EM_OK) return st;
    }
    return EM_OK;
}
