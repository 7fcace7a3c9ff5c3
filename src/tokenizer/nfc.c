/*
 * nfc.c - Unicode normalization form C, the normalizer of the byte-level
 * BPE models whose tokenizer.json asks for it (GPT-NeoX and MPT: a "NFC"
 * normalizer before the ByteLevel pre-tokenizer).  llama.cpp skips it, so
 * there "e" + U+0301 and "é" tokenize differently; the models were trained
 * on NFC text, and Hugging Face normalizes first, as ember does here.
 *
 * Most text is already NFC: one pass looks for a code point that NFC may
 * change or join to its neighbour (the quick check), and returns the text
 * untouched when there is none.  Otherwise the whole stretch is
 * normalized the textbook way: full canonical decomposition, canonical
 * ordering of each run of combining marks (a stable sort by combining
 * class), then canonical composition of each mark with the last starter
 * unless another mark of the same or a higher class blocks it.
 *
 * Bytes that are not UTF-8 pass through unchanged: they stand as starters
 * that compose with nothing, so arbitrary input stays lossless.
 */
#include "tokenizer/unicode.h"
#include "tokenizer/vocab.h"

#include <string.h>

/* An invalid byte b is carried as EM_NFC_RAW + b through the passes. */
#define EM_NFC_RAW 0x110000u

static unsigned ccc_of(uint32_t c) { return c >= EM_NFC_RAW ? 0 : em_uc_ccc(c); }

/* Stable sort of run[0..n) by combining class; scratch holds n values. */
static void order_marks(uint32_t *run, size_t n, uint32_t *scratch) {
    if (n <= 8) {
        for (size_t i = 1; i < n; i++) {
            uint32_t c = run[i];
            unsigned k = ccc_of(c);
            size_t j = i;
            for (; j > 0 && ccc_of(run[j - 1]) > k; j--) run[j] = run[j - 1];
            run[j] = c;
        }
        return;
    }
    /* A long run (zalgo text): counting sort, linear in n. */
    size_t start[257] = {0};
    for (size_t i = 0; i < n; i++) start[ccc_of(run[i]) + 1]++;
    for (int k = 1; k <= 256; k++) start[k] += start[k - 1];
    for (size_t i = 0; i < n; i++) scratch[start[ccc_of(run[i])]++] = run[i];
    memcpy(run, scratch, n * sizeof *run);
}

/* Decomposes text into w->cps[0..*n) in canonical order. */
static em_status decompose(em_tok_work *w, const char *text, size_t len, size_t *n) {
    /* Each code point decomposes into at most EM_UC_MAX_DECOMP; the second
     * half of the buffer is the scratch space of order_marks. */
    if (len > SIZE_MAX / (4 * EM_UC_MAX_DECOMP * sizeof(uint32_t)))
        return em_error(EM_ERR_INVALID_ARG, "tokenize: text too large to normalize");
    size_t most = len * EM_UC_MAX_DECOMP;
    em_status st = em_tok_reserve((void **)&w->cps, &w->cap_cps, 2 * most, sizeof *w->cps);
    if (st != EM_OK) return st;
    uint32_t *cps = w->cps, *scratch = w->cps + most;
    size_t k = 0, run = 0; /* the current run of marks is cps[run..k) */
    for (size_t i = 0; i < len;) {
        size_t used;
        uint32_t c = em_utf8_decode(text + i, len - i, &used);
        uint32_t d[EM_UC_MAX_DECOMP];
        size_t nd = 1;
        if (c == EM_UC_REPLACEMENT && used == 1) d[0] = EM_NFC_RAW + (unsigned char)text[i];
        else nd = em_uc_decompose(c, d);
        i += used;
        for (size_t j = 0; j < nd; j++) {
            if (ccc_of(d[j]) == 0) {
                if (k - run > 1) order_marks(cps + run, k - run, scratch);
                run = k + 1;
            }
            cps[k++] = d[j];
        }
    }
    if (k - run > 1) order_marks(cps + run, k - run, scratch);
    *n = k;
    return EM_OK;
}

/* Canonical composition of cps[0..n) in place; returns the new length. */
static size_t compose(uint32_t *cps, size_t n) {
    size_t k = 0;
    long starter = -1; /* index of the last starter that may still compose */
    int last = -1;     /* class of the last code point after it; -1: none */
    for (size_t r = 0; r < n; r++) {
        uint32_t c = cps[r];
        int cc = (int)ccc_of(c);
        /* A mark reaches the starter unless something between them has
         * class 0 or a class at least its own. */
        if (starter >= 0 && c < EM_NFC_RAW && (last == -1 || (last != 0 && last < cc))) {
            uint32_t comp = em_uc_compose(cps[starter], c);
            if (comp) {
                cps[starter] = comp;
                continue;
            }
        }
        if (cc == 0) {
            starter = c < EM_NFC_RAW ? (long)k : -1;
            last = -1;
        } else {
            last = cc;
        }
        cps[k++] = c;
    }
    return k;
}

em_status em_nfc(em_tok_work *w, const char *text, size_t len, const char **out,
                 size_t *out_len) {
    *out = text;
    *out_len = len;
    size_t i = 0;
    while (i < len) {
        if ((unsigned char)text[i] < 0xCC) { /* below U+0300: nothing to do */
            i++;
            continue;
        }
        size_t used;
        uint32_t c = em_utf8_decode(text + i, len - i, &used);
        if (em_uc_nfc_maybe(c)) break;
        i += used;
    }
    if (i == len) return EM_OK; /* already NFC */

    size_t n = 0;
    em_status st = decompose(w, text, len, &n);
    if (st != EM_OK) return st;
    n = compose(w->cps, n);
    if ((st = em_tok_reserve((void **)&w->norm, &w->cap_norm, 4 * n + 1, 1)) != EM_OK) return st;
    size_t k = 0;
    for (size_t j = 0; j < n; j++) {
        uint32_t c = w->cps[j];
        if (c >= EM_NFC_RAW) w->norm[k++] = (char)(c - EM_NFC_RAW);
        else k += em_utf8_encode(c, w->norm + k);
    }
    *out = w->norm;
    *out_len = k;
    return EM_OK;
}
