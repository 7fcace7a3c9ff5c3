/*
 * unicode.c - UTF-8 coding and lookups in the generated Unicode tables.
 *
 * Every decoder here takes an explicit length and treats malformed input
 * as U+FFFD consuming one byte, so that arbitrary bytes can be walked
 * without ever reading out of bounds or stalling.
 */
#include "tokenizer/unicode.h"

uint32_t em_utf8_decode(const char *str, size_t n, size_t *used) {
    const unsigned char *s = (const unsigned char *)str;
    uint32_t c = s[0];
    *used = 1;
    if (c < 0x80) return c;
    size_t len = em_utf8_len(s[0]);
    if (len == 1 || len > n) return EM_UC_REPLACEMENT;
    uint32_t cp = c & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return EM_UC_REPLACEMENT;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    /* Overlong forms, surrogates and values past U+10FFFF are not UTF-8. */
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return EM_UC_REPLACEMENT;
    *used = len;
    return cp;
}

size_t em_utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Index of the last entry of a sorted array that is <= cp, or -1. */
static long last_le(const uint32_t *a, uint32_t n, uint32_t cp) {
    long lo = 0, hi = (long)n - 1, found = -1;
    while (lo <= hi) {
        long mid = (lo + hi) / 2;
        if (a[mid] <= cp) {
            found = mid;
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    return found;
}

em_uc_cat em_uc_category(uint32_t cp) {
    if (cp > 0x10FFFF) return EM_UC_CN;
    long i = last_le(em_uc_cat_start, em_uc_cat_count, cp);
    return i < 0 ? EM_UC_CN : (em_uc_cat)em_uc_cat_value[i];
}

uint32_t em_uc_tolower(uint32_t cp) {
    if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    long i = last_le(em_uc_lower_from, em_uc_lower_count, cp);
    return (i >= 0 && em_uc_lower_from[i] == cp) ? em_uc_lower_to[i] : cp;
}

size_t em_uc_decompose(uint32_t cp, uint32_t *out) {
    /* Hangul syllables: the algorithm of Unicode chapter 3.12. */
    if (cp >= 0xAC00 && cp <= 0xD7A3) {
        uint32_t s = cp - 0xAC00;
        out[0] = 0x1100 + s / (21 * 28);
        out[1] = 0x1161 + (s % (21 * 28)) / 28;
        if (s % 28 == 0) return 2;
        out[2] = 0x11A7 + s % 28;
        return 3;
    }
    if (cp >= 0xC0) {
        long i = last_le(em_uc_decomp_from, em_uc_decomp_count, cp);
        if (i >= 0 && em_uc_decomp_from[i] == cp) {
            size_t n = 0;
            while (n < EM_UC_MAX_DECOMP && em_uc_decomp_to[i][n]) {
                out[n] = em_uc_decomp_to[i][n];
                n++;
            }
            return n;
        }
    }
    out[0] = cp;
    return 1;
}

unsigned em_uc_ccc(uint32_t cp) {
    if (cp < 0x300 || cp > 0x10FFFF) return 0;
    long i = last_le(em_uc_ccc_start, em_uc_ccc_count, cp);
    return i < 0 ? 0 : em_uc_ccc_value[i];
}

uint32_t em_uc_compose(uint32_t first, uint32_t second) {
    /* Hangul: leading + vowel jamo, then that syllable + trailing jamo. */
    if (first >= 0x1100 && first <= 0x1112 && second >= 0x1161 && second <= 0x1175)
        return 0xAC00 + ((first - 0x1100) * 21 + (second - 0x1161)) * 28;
    if (first >= 0xAC00 && first <= 0xD7A3 && (first - 0xAC00) % 28 == 0 && second >= 0x11A8 &&
        second <= 0x11C2)
        return first + (second - 0x11A7);
    if (first > 0x10FFFF || second > 0x10FFFF) return 0;
    uint64_t key = (uint64_t)first << 21 | second;
    long lo = 0, hi = (long)em_uc_comp_count - 1;
    while (lo <= hi) {
        long mid = (lo + hi) / 2;
        if (em_uc_comp_pair[mid] == key) return em_uc_comp_to[mid];
        if (em_uc_comp_pair[mid] < key) lo = mid + 1;
        else hi = mid - 1;
    }
    return 0;
}

int em_uc_nfc_maybe(uint32_t cp) {
    /* Nothing below U+0300 changes under NFC or composes with a neighbour. */
    if (cp < 0x300) return 0;
    long lo = 0, hi = (long)em_uc_nfc_qc_count - 1;
    while (lo <= hi) {
        long mid = (lo + hi) / 2;
        if (cp < em_uc_nfc_qc[mid][0]) hi = mid - 1;
        else if (cp > em_uc_nfc_qc[mid][1]) lo = mid + 1;
        else return 1;
    }
    return 0;
}

int em_uc_is_space(uint32_t cp) {
    switch (cp) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20:
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029:
    case 0x202F: case 0x205F: case 0x3000:
        return 1;
    default:
        return cp >= 0x2000 && cp <= 0x200A;
    }
}
