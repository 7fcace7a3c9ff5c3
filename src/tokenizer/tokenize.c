/*
 * tokenize.c - the public tokenizer calls: em_tokenize, em_token_to_piece
 * and em_detokenize, plus the per-call work buffers the algorithms share.
 *
 * em_tokenize first cuts the text at special tokens: USER_DEFINED tokens
 * always (as Hugging Face's added tokens are), CONTROL and UNKNOWN tokens
 * only with parse_special.  At each position the longest special token
 * starting there wins, scanning left to right (Hugging Face's leftmost-
 * longest rule; one walk down the vocab's special-token trie per byte).  The stretches between them go to the model's algorithm
 * (spm.c, bpe.c, wpm.c), and BOS / EOS / SEP are added around the result
 * as the model asks when add_special is set.
 *
 * Detokenization concatenates the precomputed pieces of the tokens.  For
 * SentencePiece models it drops the one space that add_space_prefix put
 * before the first word, so that detokenize(tokenize(x)) == x; byte-level
 * BPE pieces are exact bytes, so BPE round-trips every input.
 */
#include "tokenizer/vocab.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------- work buffers */

em_status em_tok_reserve(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return EM_OK;
    size_t n = *cap ? *cap : 64;
    while (n < need) {
        if (n > SIZE_MAX / 2 / elem) return em_error(EM_ERR_NOMEM, "tokenize: text too large");
        n *= 2;
    }
    void *q = realloc(*p, n * elem);
    if (!q) return em_error(EM_ERR_NOMEM, "tokenize: out of memory");
    *p = q;
    *cap = n;
    return EM_OK;
}

em_status em_tok_push(em_tok_work *w, em_token t) {
    if (w->n_out == w->cap_out) {
        em_status st = em_tok_reserve((void **)&w->out, &w->cap_out, w->n_out + 1, sizeof *w->out);
        if (st != EM_OK) return st;
    }
    w->out[w->n_out++] = t;
    return EM_OK;
}

void em_tok_work_free(em_tok_work *w) {
    free(w->out);
    free(w->sym);
    free(w->heap);
    free(w->buf);
    free(w->span_a);
    free(w->span_b);
    free(w->cps);
    free(w->norm);
    if (w->md) pcre2_match_data_free(w->md);
    memset(w, 0, sizeof *w);
}

/* a goes before b: higher score, then the lower left symbol. */
static bool heap_before(const em_heap_item *a, const em_heap_item *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

em_status em_heap_push(em_tok_work *w, em_heap_item it) {
    if (w->n_heap == w->cap_heap) {
        em_status st = em_tok_reserve((void **)&w->heap, &w->cap_heap, w->n_heap + 1,
                                      sizeof *w->heap);
        if (st != EM_OK) return st;
    }
    size_t i = w->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_before(&it, &w->heap[parent])) break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = it;
    return EM_OK;
}

em_heap_item em_heap_pop(em_tok_work *w) {
    em_heap_item top = w->heap[0];
    em_heap_item last = w->heap[--w->n_heap];
    size_t n = w->n_heap, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_before(&w->heap[c + 1], &w->heap[c])) c++;
        if (!heap_before(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n > 0) w->heap[i] = last;
    return top;
}

/* ------------------------------------------------------------ tokenize */

typedef struct tok_state {
    const em_vocab *v;
    em_tok_work *w;
    bool prev_special; /* SPM: the last fragment was a special token */
} tok_state;

/* Runs the model's algorithm over one stretch of ordinary text. */
static em_status raw_fragment(tok_state *s, const char *text, size_t len) {
    const em_vocab *v = s->v;
    em_tok_work *w = s->w;
    if (len == 0) return EM_OK;
    switch (v->kind) {
    case EM_VOCAB_SPM: {
        /* Spaces become "▁", and a space goes before the text when it
         * starts the input or follows a special token. */
        bool prefix = v->add_space_prefix && s->prev_special;
        s->prev_special = false;
        size_t n_sp = 0;
        for (size_t i = 0; i < len; i++) n_sp += text[i] == ' ';
        size_t need = len + 2 * n_sp + (prefix ? 3 : 0);
        em_status st = em_tok_reserve((void **)&w->buf, &w->cap_buf, need, 1);
        if (st != EM_OK) return st;
        size_t k = 0;
        if (prefix) {
            memcpy(w->buf, "\xe2\x96\x81", 3);
            k = 3;
        }
        for (size_t i = 0; i < len; i++) {
            if (text[i] == ' ') {
                memcpy(w->buf + k, "\xe2\x96\x81", 3);
                k += 3;
            } else {
                w->buf[k++] = text[i];
            }
        }
        return em_spm_tokenize(v, w, w->buf, k);
    }
    case EM_VOCAB_BPE:
        if (v->nfc) {
            em_status st = em_nfc(w, text, len, &text, &len);
            if (st != EM_OK) return st;
        }
        return em_bpe_tokenize(v, w, text, len);
    case EM_VOCAB_WPM:
        return em_wpm_tokenize(v, w, text, len);
    default:
        return em_error(EM_ERR_UNSUPPORTED, "tokenize: the model has no vocabulary");
    }
}

/* The longest special token allowed here that starts at text[pos], or -1:
 * one walk down the trie, remembering the last allowed token passed. */
static int32_t special_at(const em_vocab *v, const char *text, size_t len, size_t pos,
                          bool parse_special) {
    int32_t best = -1;
    int32_t node = v->special_root[(unsigned char)text[pos]];
    for (size_t k = pos + 1;; k++) {
        if (node < 0) break;
        int32_t id = v->trie[node].token;
        if (id >= 0 && (parse_special || v->type[id] == EM_TOKTYPE_USER_DEFINED)) best = id;
        if (k == len) break;
        unsigned char c = (unsigned char)text[k];
        node = v->trie[node].child;
        while (node >= 0 && v->trie[node].byte != c) node = v->trie[node].sibling;
    }
    return best;
}

static em_status tokenize_all(tok_state *s, const char *text, size_t len, bool add_special,
                              bool parse_special) {
    const em_vocab *v = s->v;
    em_status st;
    if (add_special && v->add_bos && (st = em_tok_push(s->w, v->bos)) != EM_OK) return st;

    size_t raw = 0, pos = 0;
    while (pos < len) {
        int32_t id = v->n_special ? special_at(v, text, len, pos, parse_special) : -1;
        if (id < 0) {
            pos++;
            continue;
        }
        size_t raw_end = pos;
        if (v->flags[id] & EM_TOKF_LSTRIP)
            while (raw_end > raw && isspace((unsigned char)text[raw_end - 1])) raw_end--;
        if ((st = raw_fragment(s, text + raw, raw_end - raw)) != EM_OK) return st;
        if ((st = em_tok_push(s->w, id)) != EM_OK) return st;
        s->prev_special = true;
        pos += v->text_len[id];
        if (v->flags[id] & EM_TOKF_RSTRIP)
            while (pos < len && isspace((unsigned char)text[pos])) pos++;
        raw = pos;
    }
    if ((st = raw_fragment(s, text + raw, len - raw)) != EM_OK) return st;

    if (add_special && v->add_eos && (st = em_tok_push(s->w, v->eos)) != EM_OK) return st;
    if (add_special && v->add_sep && (st = em_tok_push(s->w, v->sep)) != EM_OK) return st;
    return EM_OK;
}

em_status em_tokenize(const em_vocab *vocab, const char *text, int32_t len, em_token *tokens,
                      int32_t n_max, int32_t *n_tokens, bool add_special, bool parse_special) {
    if (!vocab) return em_error(EM_ERR_INVALID_ARG, "tokenize: no vocabulary");
    if (!n_tokens) return em_error(EM_ERR_INVALID_ARG, "tokenize: no place for the token count");
    if (vocab->kind == EM_VOCAB_NONE)
        return em_error(EM_ERR_UNSUPPORTED, "tokenize: the model has no vocabulary");
    if (!text && len > 0)
        return em_error(EM_ERR_INVALID_ARG, "tokenize: NULL text of length %d", (int)len);
    size_t n = len < 0 ? (text ? strlen(text) : 0) : (size_t)len;
    if (!text) text = "";

    em_tok_work w = {0};
    tok_state s = {.v = vocab, .w = &w, .prev_special = true};
    em_status st = tokenize_all(&s, text, n, add_special, parse_special);
    if (st == EM_OK && w.n_out >= (size_t)INT32_MAX)
        st = em_error(EM_ERR_INVALID_ARG, "tokenize: %zu tokens do not fit an int32", w.n_out);
    if (st == EM_OK) {
        if (tokens && n_max >= 0 && w.n_out <= (size_t)n_max && w.n_out)
            memcpy(tokens, w.out, w.n_out * sizeof *tokens);
        *n_tokens = (int32_t)w.n_out;
    }
    em_tok_work_free(&w);
    return st;
}

em_status em_tokenize_alloc(const em_vocab *vocab, const char *text, int32_t len, bool add_special,
                            bool parse_special, em_token **out, int32_t *n_out) {
    if (!out || !n_out) return em_error(EM_ERR_INVALID_ARG, "tokenize: missing output");
    /* A token covers at least one byte, but special tokens and a dummy
     * prefix add a few; a guess that is too small is corrected once. */
    size_t n = len < 0 ? (text ? strlen(text) : 0) : (size_t)len;
    if (n > (size_t)INT32_MAX / 2)
        return em_error(EM_ERR_INVALID_ARG, "tokenize: text of %zu bytes is too long", n);
    int32_t cap = (int32_t)n + 8, need = 0;
    em_token *toks = malloc((size_t)cap * sizeof *toks);
    if (!toks) return em_error(EM_ERR_NOMEM, "tokenize: cannot allocate %d tokens", (int)cap);
    em_status st = em_tokenize(vocab, text, len, toks, cap, &need, add_special, parse_special);
    if (st == EM_OK && need > cap) {
        em_token *grown = realloc(toks, (size_t)need * sizeof *toks);
        if (!grown) {
            free(toks);
            return em_error(EM_ERR_NOMEM, "tokenize: cannot allocate %d tokens", (int)need);
        }
        toks = grown;
        cap = need;
        st = em_tokenize(vocab, text, len, toks, cap, &need, add_special, parse_special);
        if (st == EM_OK && need > cap)
            st = em_error(EM_ERR_INTERNAL, "tokenize: token count changed between calls");
    }
    if (st != EM_OK) {
        free(toks);
        return st;
    }
    *out = toks;
    *n_out = need;
    return EM_OK;
}

/* ---------------------------------------------------------- detokenize */

/* The piece of token t (empty for control tokens unless special). */
static bool piece_of(const em_vocab *v, em_token t, bool special, const char **p,
                     uint32_t *n) {
    if (t < 0 || t >= v->n_tokens) {
        em_error(EM_ERR_INVALID_ARG, "detokenize: token %d is not in the vocabulary (%d tokens)",
                 (int)t, (int)v->n_tokens);
        return false;
    }
    uint8_t ty = v->type[t];
    if (!special && (ty == EM_TOKTYPE_CONTROL || ty == EM_TOKTYPE_UNKNOWN)) {
        *p = "";
        *n = 0;
    } else {
        *p = v->piece + v->piece_off[t];
        *n = v->piece_len[t];
    }
    return true;
}

int32_t em_token_to_piece(const em_vocab *vocab, em_token t, char *buf, int32_t size,
                          bool special) {
    if (!vocab) {
        em_error(EM_ERR_INVALID_ARG, "token_to_piece: no vocabulary");
        return INT32_MIN;
    }
    const char *p;
    uint32_t n;
    if (!piece_of(vocab, t, special, &p, &n)) return INT32_MIN;
    if (size < 0 || n > (uint32_t)size || (!buf && n > 0)) return -(int32_t)n;
    if (n) memcpy(buf, p, n);
    return (int32_t)n;
}

int32_t em_detokenize(const em_vocab *vocab, const em_token *tokens, int32_t n_tokens,
                      char *text, int32_t size, bool remove_special, bool unparse_special) {
    if (!vocab || (!tokens && n_tokens > 0) || n_tokens < 0) {
        em_error(EM_ERR_INVALID_ARG, "detokenize: invalid arguments");
        return INT32_MIN;
    }
    if (size < 0 || !text) size = 0;
    const em_vocab *v = vocab;
    if (remove_special) {
        if (n_tokens > 0 && v->add_bos && tokens[0] == v->bos) {
            tokens++;
            n_tokens--;
        }
        if (n_tokens > 0 && v->add_sep && tokens[n_tokens - 1] == v->sep) n_tokens--;
        if (n_tokens > 0 && v->add_eos && tokens[n_tokens - 1] == v->eos) n_tokens--;
    }
    /* The space SentencePiece puts before the first word, and the "▁" of
     * WordPiece's first word, are not part of the text. */
    bool strip = (v->kind == EM_VOCAB_SPM && v->add_space_prefix) || v->kind == EM_VOCAB_WPM;
    bool at_start = true;
    uint64_t total = 0;
    for (int32_t i = 0; i < n_tokens; i++) {
        const char *p;
        uint32_t n;
        if (!piece_of(v, tokens[i], unparse_special, &p, &n)) return INT32_MIN;
        if (n == 0) continue;
        if (at_start && strip && p[0] == ' ') {
            p++;
            n--;
        }
        at_start = false;
        if (n > 0 && total + n <= (uint64_t)size) memcpy(text + total, p, n);
        total += n;
        if (total > INT32_MAX) {
            em_error(EM_ERR_INVALID_ARG, "detokenize: text longer than 2 GiB");
            return INT32_MIN;
        }
    }
    if (total < (uint64_t)size) text[total] = '\0';
    return total <= (uint64_t)size ? (int32_t)total : -(int32_t)total;
}
