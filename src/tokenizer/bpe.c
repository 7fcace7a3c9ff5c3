/*
 * bpe.c - byte-level BPE (tokenizer.ggml.model "gpt2").
 *
 * Text is first cut into words by the model's pre-tokenizer (pretok.c).
 * Each word starts as one symbol per byte, each symbol being the token of
 * that byte's GPT-2 character (bytes that are not printable are written as
 * characters from U+0100 on, so that every byte has a visible token text).
 * Then the adjacent pair whose merge has the lowest rank is merged, the
 * leftmost first among equals, until no pair has a merge.  Merges are keyed
 * by the pair of token ids, so the loop never builds or hashes strings.
 *
 * Pairs wait in a heap.  A merge invalidates the pairs around it; rather
 * than removing those, each heap entry records the ids it expects, and an
 * entry whose symbols changed since it was pushed is skipped when popped.
 */
#include "tokenizer/vocab.h"
#include "tokenizer/unicode.h"

/* GPT-2 keeps the printable Latin-1 bytes as themselves. */
static int byte_is_printable(unsigned b) {
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
}

uint32_t em_bpe_byte_to_cp(uint8_t b) {
    if (byte_is_printable(b)) return b;
    /* The others, in byte order, become U+0100, U+0101, ... */
    if (b <= 32) return 256u + b;
    if (b <= 160) return 256u + 33 + (b - 127u);
    return 256u + 67; /* 173, the soft hyphen */
}

int em_bpe_cp_to_byte(uint32_t cp) {
    if (cp < 256) return byte_is_printable(cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    uint32_t k = cp - 256;
    if (k <= 32) return (int)k;
    if (k <= 66) return (int)(127 + (k - 33));
    return 173;
}

/* Queues the pair (l, r) when a merge exists for it. */
static em_status try_pair(const em_vocab *v, em_tok_work *w, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return EM_OK;
    int32_t a = w->sym[l].id, b = w->sym[r].id, result;
    int32_t rank = em_vocab_merge_rank(v, a, b, &result);
    if (rank < 0) return EM_OK;
    em_heap_item it = {.score = -(double)rank, .left = l, .right = r, .a = a, .b = b};
    return em_heap_push(w, it);
}

/* Merges one word (raw bytes) and appends its tokens. */
static em_status bpe_word(const em_vocab *v, em_tok_work *w, const unsigned char *word,
                          size_t n) {
    em_status st;
    if (v->ignore_merges) {
        /* Llama 3 style: a word that is itself a token is that token, even
         * where the merges would not build it. */
        if ((st = em_tok_reserve((void **)&w->buf, &w->cap_buf, 2 * n, 1)) != EM_OK) return st;
        size_t k = 0;
        for (size_t i = 0; i < n; i++) k += em_utf8_encode(em_bpe_byte_to_cp(word[i]), w->buf + k);
        int32_t id = em_vocab_find(v, w->buf, k);
        if (id >= 0) return em_tok_push(w, id);
    }
    if ((st = em_tok_reserve((void **)&w->sym, &w->cap_sym, n, sizeof *w->sym)) != EM_OK)
        return st;
    em_sym *sym = w->sym;
    for (size_t i = 0; i < n; i++) {
        sym[i].id = v->byte_token[word[i]];
        sym[i].prev = (int32_t)i - 1;
        sym[i].next = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    w->n_heap = 0;
    for (size_t i = 1; i < n; i++)
        if ((st = try_pair(v, w, (int32_t)i - 1, (int32_t)i)) != EM_OK) return st;

    while (w->n_heap > 0) {
        em_heap_item it = em_heap_pop(w);
        sym = w->sym;
        int32_t l = it.left, r = it.right;
        /* Skip pairs one of whose halves has changed since. */
        if (sym[l].id != it.a || sym[l].next != r || sym[r].id != it.b) continue;
        int32_t result;
        em_vocab_merge_rank(v, it.a, it.b, &result);
        sym[l].id = result;
        sym[l].next = sym[r].next;
        if (sym[r].next >= 0) sym[sym[r].next].prev = l;
        sym[r].id = -2;
        if ((st = try_pair(v, w, sym[l].prev, l)) != EM_OK) return st;
        if ((st = try_pair(v, w, l, sym[l].next)) != EM_OK) return st;
    }

    for (int32_t i = n ? 0 : -1; i >= 0; i = w->sym[i].next) {
        int32_t id = w->sym[i].id;
        /* A byte the vocabulary has no token for is dropped, as Hugging
         * Face's BPE does without an unk_token in the model (the byte-level
         * models' case; tokenizer.ggml.unknown_token_id names the special
         * token, not that) and as llama.cpp does. */
        if (id >= 0 && (st = em_tok_push(w, id)) != EM_OK) return st;
    }
    return EM_OK;
}

em_status em_bpe_tokenize(const em_vocab *v, em_tok_work *w, const char *text, size_t len) {
    const em_span *words;
    size_t n_words;
    em_status st = em_pretok_split(&v->pre, w, text, len, &words, &n_words);
    if (st != EM_OK) return st;
    for (size_t i = 0; i < n_words; i++) {
        em_span s = words[i];
        if ((st = bpe_word(v, w, (const unsigned char *)text + s.start, s.end - s.start)) != EM_OK)
            return st;
    }
    return EM_OK;
}
