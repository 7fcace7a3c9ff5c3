/*
 * text.c - incremental detokenization: UTF-8 completion and stop strings.
 *
 * The invariant that keeps stop strings from leaking: whatever has been
 * released never ends in a proper prefix of a stop string.  So a stop
 * string that appears later lies wholly inside the pending bytes, and one
 * search over them finds it.
 */
#include "engine/text.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool em_strbuf_append(em_strbuf *b, const char *s, size_t len) {
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + len + 1) {
            if (cap > SIZE_MAX / 2) return false;
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) return false;
        b->p = p;
        b->cap = cap;
    }
    if (len) memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = '\0';
    return true;
}

bool em_strbuf_appendf(em_strbuf *b, const char *fmt, ...) {
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return false;
    if ((size_t)n < sizeof small) return em_strbuf_append(b, small, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big) return false;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    bool ok = em_strbuf_append(b, big, (size_t)n);
    free(big);
    return ok;
}

void em_strbuf_free(em_strbuf *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

/* Length of the UTF-8 sequence starting at s[0..n): > 0 for a whole valid
 * character, 0 when it is valid so far but cut off, -1 when invalid. */
static int utf8_char_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    int len;
    uint32_t cp, min;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) len = 2, cp = c & 0x1f, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef) len = 3, cp = c & 0x0f, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4) len = 4, cp = c & 0x07, min = 0x10000;
    else return -1;
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n) return 0;
        if ((s[i] & 0xc0) != 0x80) return -1;
        cp = (cp << 6) | (s[i] & 0x3f);
        /* Reject overlong forms, surrogates and values past U+10FFFF as
         * early as the bytes allow, so a cut-off prefix is never held
         * back when no continuation could make it valid. */
        if (i == 1 && len == 3 && ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f))) return -1;
        if (i == 1 && len == 4 && ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f))) return -1;
    }
    if (cp < min) return -1;
    return len;
}

size_t em_utf8_take(const char *s, size_t n, bool final, em_strbuf *out) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        int len = utf8_char_len(u + i, n - i);
        if (len > 0) {
            if (!em_strbuf_append(out, s + i, (size_t)len)) return (size_t)-1;
            i += (size_t)len;
        } else if (len == 0 && !final) {
            break;
        } else {
            if (!em_strbuf_append(out, "\xef\xbf\xbd", 3)) return (size_t)-1;
            i++;
        }
    }
    return i;
}

/* The length of the longest suffix of s[0..n) that is a proper prefix of
 * one of the stop strings. */
static size_t stop_holdback(const em_text_out *t, const char *s, size_t n) {
    size_t best = 0;
    for (int k = 0; k < t->n_stop; k++) {
        size_t sl = strlen(t->stop[k]);
        if (!sl) continue;
        for (size_t len = sl > n + 1 ? n : sl - 1; len > best; len--)
            if (!memcmp(s + n - len, t->stop[k], len)) {
                best = len;
                break;
            }
    }
    return best;
}

/* The first position where any stop string occurs in s[0..n), or -1. */
static long stop_find(const em_text_out *t, const char *s, size_t n) {
    long first = -1;
    for (int k = 0; k < t->n_stop; k++) {
        size_t sl = strlen(t->stop[k]);
        if (!sl || sl > n) continue;
        for (size_t i = 0; i + sl <= n && (first < 0 || (long)i < first); i++)
            if (!memcmp(s + i, t->stop[k], sl)) {
                first = (long)i;
                break;
            }
    }
    return first;
}

/* Drops the first k pending bytes. */
static void pending_consume(em_text_out *t, size_t k) {
    memmove(t->pending.p, t->pending.p + k, t->pending.n - k);
    t->pending.n -= k;
    t->pending.p[t->pending.n] = '\0';
}

int em_text_out_push(em_text_out *t, const char *piece, size_t len, em_strbuf *delta) {
    if (!em_strbuf_append(&t->pending, piece, len)) return -1;
    const char *s = t->pending.p;
    size_t n = t->pending.n;
    long at = stop_find(t, s, n);
    if (at >= 0) {
        if (em_utf8_take(s, (size_t)at, true, delta) == (size_t)-1) return -1;
        t->pending.n = 0;
        t->pending.p[0] = '\0';
        return 1;
    }
    size_t safe = n - stop_holdback(t, s, n);
    size_t used = em_utf8_take(s, safe, false, delta);
    if (used == (size_t)-1) return -1;
    pending_consume(t, used);
    return 0;
}

bool em_text_out_flush(em_text_out *t, em_strbuf *delta) {
    if (!t->pending.n) return true;
    if (em_utf8_take(t->pending.p, t->pending.n, true, delta) == (size_t)-1) return false;
    t->pending.n = 0;
    t->pending.p[0] = '\0';
    return true;
}

void em_text_out_free(em_text_out *t) { em_strbuf_free(&t->pending); }
