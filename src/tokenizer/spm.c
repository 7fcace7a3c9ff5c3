/*
 * spm.c - SentencePiece-style BPE (tokenizer.ggml.model "llama").
 *
 * The caller has already written spaces as "▁" (U+2581) and added the
 * leading space.  The text starts as one symbol per UTF-8 character; then
 * the adjacent pair whose concatenation is the token with the highest
 * score is merged, the leftmost first among equals, until no adjacent pair
 * forms a token.  Each final symbol is emitted as its token; a symbol that
 * is no token (a character outside the vocabulary) falls back to one
 * <0xXX> token per byte, or to <unk> where the vocabulary has no byte
 * tokens.
 *
 * Like the BPE merger, pairs wait in a heap and stale entries are skipped
 * when popped: an entry records the byte size of its pair, and a pair
 * whose halves grew or vanished no longer has that size.
 */
#include "tokenizer/vocab.h"
#include "tokenizer/unicode.h"

static em_status try_pair(const em_vocab *v, em_tok_work *w, const char *text, int32_t l,
                          int32_t r) {
    if (l < 0 || r < 0) return EM_OK;
    const em_sym *sl = &w->sym[l], *sr = &w->sym[r];
    int32_t id = em_vocab_find(v, text + sl->start, sl->n + sr->n);
    if (id < 0) return EM_OK;
    em_heap_item it = {.score = v->score[id], .left = l, .right = r,
                       .a = (int32_t)(sl->n + sr->n), .b = 0};
    return em_heap_push(w, it);
}

em_status em_spm_tokenize(const em_vocab *v, em_tok_work *w, const char *text, size_t len) {
    em_status st;
    if (len == 0) return EM_OK;
    if (len > INT32_MAX) return em_error(EM_ERR_INVALID_ARG, "tokenize: text too long");
    if ((st = em_tok_reserve((void **)&w->sym, &w->cap_sym, len, sizeof *w->sym)) != EM_OK)
        return st;
    int32_t n = 0;
    for (size_t off = 0; off < len;) {
        size_t cl = EM_MIN(em_utf8_len((unsigned char)text[off]), len - off);
        w->sym[n] = (em_sym){.id = -1, .prev = n - 1, .next = n + 1,
                             .start = (uint32_t)off, .n = (uint32_t)cl};
        off += cl;
        n++;
    }
    w->sym[n - 1].next = -1;

    w->n_heap = 0;
    for (int32_t i = 1; i < n; i++)
        if ((st = try_pair(v, w, text, i - 1, i)) != EM_OK) return st;

    while (w->n_heap > 0) {
        em_heap_item it = em_heap_pop(w);
        em_sym *sym = w->sym;
        int32_t l = it.left, r = it.right;
        if (sym[l].n == 0 || sym[r].n == 0 || sym[l].next != r ||
            sym[l].n + sym[r].n != (uint32_t)it.a)
            continue;
        sym[l].n += sym[r].n;
        sym[r].n = 0;
        sym[l].next = sym[r].next;
        if (sym[r].next >= 0) sym[sym[r].next].prev = l;
        if ((st = try_pair(v, w, text, sym[l].prev, l)) != EM_OK) return st;
        if ((st = try_pair(v, w, text, l, sym[l].next)) != EM_OK) return st;
    }

    for (int32_t i = 0; i >= 0; i = w->sym[i].next) {
        const em_sym s = w->sym[i];
        int32_t id = em_vocab_find(v, text + s.start, s.n);
        if (id >= 0) {
            if ((st = em_tok_push(w, id)) != EM_OK) return st;
            continue;
        }
        for (uint32_t k = 0; k < s.n; k++) {
            int32_t b = v->byte_token[(unsigned char)text[s.start + k]];
            if (b < 0) b = v->unk;
            if (b >= 0 && (st = em_tok_push(w, b)) != EM_OK) return st;
        }
    }
    return EM_OK;
}
