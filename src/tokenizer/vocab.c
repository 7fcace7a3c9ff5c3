/*
 * vocab.c - building an em_vocab from a GGUF file's tokenizer.ggml.* keys,
 * the lookups every tokenizer shares, and the public em_vocab_* getters.
 *
 * Loading copies everything it keeps (token texts, scores, types, merges)
 * out of the reader, validates every count against the token list, and
 * then precomputes what tokenization and detokenization look up per token:
 * a hash index from text to id, the merge table, the byte tokens, the
 * decoded text ("piece") of every token, the end-of-generation flags and
 * the list of special tokens matched in raw text.
 */
#include "tokenizer/vocab.h"
#include "tokenizer/unicode.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ hashing */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h ^ (h >> 32);
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

/* The smallest power of two >= 2n (and >= 16), so that tables stay at most
 * half full and probe sequences short. */
static uint32_t table_size(uint64_t n) {
    uint64_t s = 16;
    while (s < 2 * n) s <<= 1;
    return (uint32_t)s;
}

int32_t em_vocab_find(const em_vocab *v, const char *s, size_t n) {
    if (!v->index) return -1;
    uint32_t i = (uint32_t)hash_bytes(s, n) & v->index_mask;
    for (;;) {
        int32_t id = v->index[i];
        if (id < 0) return -1;
        if (v->text_len[id] == n && memcmp(v->text + v->text_off[id], s, n) == 0)
            return id;
        i = (i + 1) & v->index_mask;
    }
}

int32_t em_vocab_merge_rank(const em_vocab *v, int32_t left, int32_t right,
                            int32_t *result) {
    if (!v->merges || left < 0 || right < 0) return -1;
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    uint32_t i = (uint32_t)hash_u64(key) & v->merge_mask;
    for (;;) {
        const em_merge *m = &v->merges[i];
        if (m->key == EM_MERGE_EMPTY) return -1;
        if (m->key == key) {
            *result = m->result;
            return m->rank;
        }
        i = (i + 1) & v->merge_mask;
    }
}

/* ------------------------------------------------------------ loading */

#define KEY(name) "tokenizer.ggml." name

/* Reads an optional boolean key into *out; a key of the wrong type is an
 * error, an absent one leaves *out alone. */
static em_status get_opt_bool(const em_gguf *g, const char *key, bool *out) {
    em_status st = em_gguf_get_bool(g, key, out);
    if (st == EM_ERR_NOT_FOUND) return EM_OK;
    if (st != EM_OK) return em_error(st, "vocab: %s is not a boolean", key);
    return EM_OK;
}

/* Reads an optional token id; ids outside the vocabulary (some files store
 * 0xFFFFFFFF for "none") keep the default. */
static void get_opt_id(const em_gguf *g, const char *key, int32_t n_tokens,
                       em_token *id) {
    int64_t v;
    if (em_gguf_get_i64(g, key, &v) != EM_OK) return;
    if (v >= 0 && v < n_tokens) {
        *id = (em_token)v;
    } else {
        em_log(EM_LOG_DEBUG, "vocab: %s = %lld is out of range, ignored", key,
               (long long)v);
    }
}

/* Copies the token texts into one arena and builds the hash index. */
static em_status load_tokens(em_vocab *v, const em_gguf *g) {
    em_gguf_type et;
    uint64_t n;
    const void *data;
    em_status st = em_gguf_get_arr(g, KEY("tokens"), &et, &n, &data);
    if (st == EM_ERR_NOT_FOUND)
        return em_error(EM_ERR_FORMAT, "vocab: %s is missing", KEY("tokens"));
    if (st != EM_OK || et != EM_GGUF_STRING)
        return em_error(EM_ERR_FORMAT, "vocab: %s is not an array of strings",
                        KEY("tokens"));
    if (n == 0 || n > INT32_MAX / 2)
        return em_error(EM_ERR_FORMAT, "vocab: %llu tokens is not a usable count",
                        (unsigned long long)n);
    v->n_tokens = (int32_t)n;

    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        em_gguf_str s;
        if ((st = em_gguf_arr_str(g, KEY("tokens"), i, &s)) != EM_OK)
            return em_error(st, "vocab: cannot read token %llu", (unsigned long long)i);
        total += s.len + 1;
        if (total > UINT32_MAX)
            return em_error(EM_ERR_FORMAT, "vocab: token texts exceed 4 GiB");
    }
    v->text = malloc(total);
    v->text_off = malloc(n * sizeof *v->text_off);
    v->text_len = malloc(n * sizeof *v->text_len);
    v->index_mask = table_size(n) - 1;
    v->index = malloc(((size_t)v->index_mask + 1) * sizeof *v->index);
    if (!v->text || !v->text_off || !v->text_len || !v->index)
        return em_error(EM_ERR_NOMEM, "vocab: out of memory for %llu tokens",
                        (unsigned long long)n);
    memset(v->index, 0xff, ((size_t)v->index_mask + 1) * sizeof *v->index);

    uint32_t off = 0;
    for (uint64_t i = 0; i < n; i++) {
        em_gguf_str s;
        if ((st = em_gguf_arr_str(g, KEY("tokens"), i, &s)) != EM_OK)
            return em_error(st, "vocab: cannot read token %llu", (unsigned long long)i);
        memcpy(v->text + off, s.ptr, s.len);
        v->text[off + s.len] = '\0';
        v->text_off[i] = off;
        v->text_len[i] = (uint32_t)s.len;
        off += (uint32_t)s.len + 1;
        if ((int64_t)s.len > v->max_token_len) v->max_token_len = (int32_t)EM_MIN(s.len, INT32_MAX);
        if (s.len == 0) continue; /* an empty text can never be matched */

        /* A duplicate text keeps its first id, as lookups need one answer. */
        uint32_t h = (uint32_t)hash_bytes(s.ptr, s.len) & v->index_mask;
        bool dup = false;
        while (v->index[h] >= 0) {
            int32_t o = v->index[h];
            if (v->text_len[o] == s.len && memcmp(v->text + v->text_off[o], s.ptr, s.len) == 0) {
                dup = true;
                break;
            }
            h = (h + 1) & v->index_mask;
        }
        if (dup)
            em_log(EM_LOG_DEBUG, "vocab: token %llu repeats the text of an earlier one",
                   (unsigned long long)i);
        else
            v->index[h] = (int32_t)i;
    }
    return EM_OK;
}

/* Scores (float or int) and token types, both optional. */
static em_status load_scores_types(em_vocab *v, const em_gguf *g) {
    size_t n = (size_t)v->n_tokens;
    v->score = calloc(n, sizeof *v->score);
    v->type = malloc(n);
    v->flags = calloc(n, 1);
    if (!v->score || !v->type || !v->flags)
        return em_error(EM_ERR_NOMEM, "vocab: out of memory");
    memset(v->type, EM_TOKTYPE_NORMAL, n);

    em_gguf_type et;
    uint64_t cnt;
    const void *data;
    em_status st = em_gguf_get_arr(g, KEY("scores"), &et, &cnt, &data);
    if (st == EM_OK) {
        if (et != EM_GGUF_FLOAT32 && et != EM_GGUF_INT32)
            return em_error(EM_ERR_FORMAT, "vocab: %s must hold float32 or int32",
                            KEY("scores"));
        if (cnt < n)
            return em_error(EM_ERR_FORMAT, "vocab: %llu scores for %zu tokens",
                            (unsigned long long)cnt, n);
        for (size_t i = 0; i < n; i++) {
            if (et == EM_GGUF_FLOAT32) {
                memcpy(&v->score[i], (const char *)data + 4 * i, 4);
            } else {
                int32_t s;
                memcpy(&s, (const char *)data + 4 * i, 4);
                v->score[i] = (float)s;
            }
        }
    } else if (st != EM_ERR_NOT_FOUND) {
        return em_error(EM_ERR_FORMAT, "vocab: %s is not an array", KEY("scores"));
    }

    st = em_gguf_get_arr(g, KEY("token_type"), &et, &cnt, &data);
    if (st == EM_OK) {
        if (et != EM_GGUF_INT32 && et != EM_GGUF_UINT32)
            return em_error(EM_ERR_FORMAT, "vocab: %s must hold int32",
                            KEY("token_type"));
        if (cnt < n)
            return em_error(EM_ERR_FORMAT, "vocab: %llu token types for %zu tokens",
                            (unsigned long long)cnt, n);
        for (size_t i = 0; i < n; i++) {
            int32_t t;
            memcpy(&t, (const char *)data + 4 * i, 4);
            /* Unknown values behave like UNDEFINED: never matched, never shown. */
            v->type[i] = (uint8_t)((t >= 0 && t <= EM_TOKTYPE_BYTE) ? t : EM_TOKTYPE_UNDEFINED);
        }
    } else if (st != EM_ERR_NOT_FOUND) {
        return em_error(EM_ERR_FORMAT, "vocab: %s is not an array", KEY("token_type"));
    }
    return EM_OK;
}

/* BPE merges: "left right" strings; a merge whose halves or result are
 * not tokens can never fire and is dropped. */
static em_status load_merges(em_vocab *v, const em_gguf *g) {
    em_gguf_type et;
    uint64_t n;
    const void *data;
    em_status st = em_gguf_get_arr(g, KEY("merges"), &et, &n, &data);
    if (st == EM_ERR_NOT_FOUND)
        return em_error(EM_ERR_FORMAT, "vocab: a gpt2 tokenizer needs %s", KEY("merges"));
    if (st != EM_OK || et != EM_GGUF_STRING)
        return em_error(EM_ERR_FORMAT, "vocab: %s is not an array of strings",
                        KEY("merges"));
    if (n > INT32_MAX / 4)
        return em_error(EM_ERR_FORMAT, "vocab: too many merges (%llu)", (unsigned long long)n);

    v->merge_mask = table_size(n) - 1;
    v->merges = malloc(((size_t)v->merge_mask + 1) * sizeof *v->merges);
    char *cat = malloc((size_t)v->max_token_len * 2 + 2);
    if (!v->merges || !cat) {
        free(cat);
        return em_error(EM_ERR_NOMEM, "vocab: out of memory for %llu merges",
                        (unsigned long long)n);
    }
    for (size_t i = 0; i <= v->merge_mask; i++) v->merges[i].key = EM_MERGE_EMPTY;

    int32_t dropped = 0;
    for (uint64_t r = 0; r < n; r++) {
        em_gguf_str s;
        if ((st = em_gguf_arr_str(g, KEY("merges"), r, &s)) != EM_OK) {
            free(cat);
            return em_error(st, "vocab: cannot read merge %llu", (unsigned long long)r);
        }
        /* The separator is the first space after the first byte, so that a
         * left half may itself be a space. */
        const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', s.len - 1) : NULL;
        if (!sp) {
            dropped++;
            continue;
        }
        size_t ln = (size_t)(sp - s.ptr), rn = s.len - ln - 1;
        int32_t a = em_vocab_find(v, s.ptr, ln);
        int32_t b = em_vocab_find(v, sp + 1, rn);
        int32_t c = -1;
        if (a >= 0 && b >= 0 && ln + rn <= (size_t)v->max_token_len) {
            memcpy(cat, s.ptr, ln);
            memcpy(cat + ln, sp + 1, rn);
            c = em_vocab_find(v, cat, ln + rn);
        }
        if (c < 0) {
            dropped++;
            continue;
        }
        uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
        uint32_t h = (uint32_t)hash_u64(key) & v->merge_mask;
        while (v->merges[h].key != EM_MERGE_EMPTY && v->merges[h].key != key)
            h = (h + 1) & v->merge_mask;
        if (v->merges[h].key == key) continue; /* the first rank wins */
        v->merges[h].key = key;
        v->merges[h].rank = (int32_t)r;
        v->merges[h].result = c;
        v->n_merges++;
    }
    free(cat);
    if (dropped)
        em_log(EM_LOG_DEBUG, "vocab: %d of %llu merges name no tokens and were dropped",
               dropped, (unsigned long long)n);
    return EM_OK;
}

/* The token for each raw byte: "<0xXX>" (SPM byte fallback), else the
 * byte-level symbol (BPE), else the byte itself as a one-byte text. */
static void find_byte_tokens(em_vocab *v) {
    for (int b = 0; b < 256; b++) {
        char buf[8];
        int32_t id = -1;
        if (v->kind == EM_VOCAB_BPE) {
            size_t n = em_utf8_encode(em_bpe_byte_to_cp((uint8_t)b), buf);
            id = em_vocab_find(v, buf, n);
        }
        if (id < 0) {
            snprintf(buf, sizeof buf, "<0x%02X>", b);
            id = em_vocab_find(v, buf, 6);
        }
        if (id < 0 && v->kind != EM_VOCAB_BPE) {
            buf[0] = (char)b;
            id = em_vocab_find(v, buf, 1);
        }
        v->byte_token[b] = id;
    }
}

/* Parses "<0xXX>"; -1 when the text has another form. */
static int parse_byte_text(const char *s, uint32_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    if (!isxdigit((unsigned char)s[3]) || !isxdigit((unsigned char)s[4])) return -1;
    char hex[3] = {s[3], s[4], 0};
    return (int)strtol(hex, NULL, 16);
}

/* The text each token stands for in output: SPM and WPM turn "▁" into a
 * space, byte-level BPE maps its symbols back to bytes, byte tokens become
 * their byte, special tokens keep their text, and unused or undefined
 * tokens show nothing. */
static em_status build_pieces(em_vocab *v) {
    size_t n = (size_t)v->n_tokens;
    /* No piece is longer than its text: every rewrite shrinks or keeps. */
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) total += v->text_len[i];
    v->piece = malloc(total + 1);
    v->piece_off = malloc(n * sizeof *v->piece_off);
    v->piece_len = malloc(n * sizeof *v->piece_len);
    if (!v->piece || !v->piece_off || !v->piece_len)
        return em_error(EM_ERR_NOMEM, "vocab: out of memory for pieces");

    uint32_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const char *t = em_vocab_tok_text(v, (int32_t)i);
        uint32_t tn = v->text_len[i];
        char *o = v->piece + off;
        uint32_t len = 0;
        switch (v->type[i]) {
        case EM_TOKTYPE_CONTROL:
        case EM_TOKTYPE_UNKNOWN:
        case EM_TOKTYPE_USER_DEFINED:
            memcpy(o, t, tn);
            len = tn;
            break;
        case EM_TOKTYPE_BYTE: {
            int b = parse_byte_text(t, tn);
            if (b >= 0) {
                o[0] = (char)b;
                len = 1;
            } else {
                memcpy(o, t, tn);
                len = tn;
            }
            break;
        }
        case EM_TOKTYPE_NORMAL:
            if (v->kind == EM_VOCAB_BPE) {
                for (uint32_t k = 0; k < tn;) {
                    size_t used;
                    uint32_t cp = em_utf8_decode(t + k, tn - k, &used);
                    int b = em_bpe_cp_to_byte(cp);
                    if (b >= 0) {
                        o[len++] = (char)b;
                    } else {
                        /* Not a byte symbol: keep the text as it is. */
                        memcpy(o + len, t + k, used);
                        len += (uint32_t)used;
                    }
                    k += (uint32_t)used;
                }
            } else {
                for (uint32_t k = 0; k < tn;) {
                    if (k + 3 <= tn && memcmp(t + k, "\xe2\x96\x81", 3) == 0) {
                        o[len++] = ' ';
                        k += 3;
                    } else {
                        o[len++] = t[k++];
                    }
                }
            }
            break;
        default: /* UNUSED, UNDEFINED */
            break;
        }
        v->piece_off[i] = off;
        v->piece_len[i] = len;
        off += len;
    }
    return EM_OK;
}

/* Texts of tokens that end a turn or a document in common chat formats.
 * The first one found that can_eot also serves as EOT when the file names
 * none; <|eom_id|> is Llama 3's end of a tool message. */
static const struct {
    const char *text;
    bool can_eot;
} eog_texts[] = {
    {"<|eot_id|>", true}, {"<|im_end|>", true}, {"<|end|>", true},
    {"<end_of_turn>", true}, {"<|endoftext|>", true}, {"<|end_of_text|>", true},
    {"<EOT>", true}, {"_<EOT>", true}, {"<|eom_id|>", false}, {"<|return|>", false},
    {"<|call|>", false},
    {"<\xef\xbd\x9c" "end\xe2\x96\x81" "of\xe2\x96\x81" "sentence\xef\xbd\x9c>", true},
    {"<end_of_utterance>", true},
};

static void mark_eog(em_vocab *v) {
    size_t n_texts = sizeof eog_texts / sizeof eog_texts[0];
    for (size_t k = 0; k < n_texts; k++) {
        const char *t = eog_texts[k].text;
        int32_t id = em_vocab_find(v, t, strlen(t));
        if (id < 0) continue;
        if (v->eot < 0 && eog_texts[k].can_eot) v->eot = id;
        if (v->eom < 0 && strcmp(t, "<|eom_id|>") == 0) v->eom = id;
        v->flags[id] |= EM_TOKF_EOG;
        /* Such a token is a control token even where a converter forgot to
         * say so: it must not be produced from plain text. */
        if (v->type[id] == EM_TOKTYPE_NORMAL) v->type[id] = EM_TOKTYPE_CONTROL;
    }
    /* A chat format that has <|return|> and <|call|> ends messages, not
     * turns, with <|end|>. */
    int32_t ret = em_vocab_find(v, "<|return|>", 10), call = em_vocab_find(v, "<|call|>", 8);
    int32_t end = em_vocab_find(v, "<|end|>", 7);
    if (ret >= 0 && call >= 0 && end >= 0) {
        v->flags[end] &= (uint8_t)~EM_TOKF_EOG;
        if (v->eot == end) v->eot = -1;
    }
    if (v->eos >= 0) v->flags[v->eos] |= EM_TOKF_EOG;
    if (v->eot >= 0) v->flags[v->eot] |= EM_TOKF_EOG;
    if (v->eom >= 0) v->flags[v->eom] |= EM_TOKF_EOG;
}

static bool is_special_type(uint8_t t) {
    return t == EM_TOKTYPE_CONTROL || t == EM_TOKTYPE_USER_DEFINED || t == EM_TOKTYPE_UNKNOWN;
}

/* The special tokens, in a trie so that the longest one starting at a
 * position is found in one walk, however many tokens share a prefix. */
static em_status build_special(em_vocab *v, const em_gguf *g) {
    for (int b = 0; b < 256; b++) v->special_root[b] = -1;
    uint64_t bytes = 0;
    for (int32_t i = 0; i < v->n_tokens; i++)
        if (is_special_type(v->type[i])) bytes += v->text_len[i];
    if (bytes > INT32_MAX) return em_error(EM_ERR_FORMAT, "vocab: special tokens too long");
    v->trie = malloc((size_t)(bytes ? bytes : 1) * sizeof *v->trie);
    if (!v->trie) return em_error(EM_ERR_NOMEM, "vocab: out of memory");

    for (int32_t id = 0; id < v->n_tokens; id++) {
        uint32_t n = v->text_len[id];
        if (!is_special_type(v->type[id]) || n == 0) continue;
        const unsigned char *t = (const unsigned char *)em_vocab_tok_text(v, id);
        /* The array holds one node per special-text byte, so it never fills. */
        int32_t node = v->special_root[t[0]];
        if (node < 0) {
            node = v->n_trie++;
            v->trie[node] = (em_trie_node){.child = -1, .sibling = -1, .token = -1, .byte = t[0]};
            v->special_root[t[0]] = node;
        }
        for (uint32_t k = 1; k < n; k++) {
            int32_t c = v->trie[node].child;
            while (c >= 0 && v->trie[c].byte != t[k]) c = v->trie[c].sibling;
            if (c < 0) {
                c = v->n_trie++;
                v->trie[c] = (em_trie_node){.child = -1, .sibling = v->trie[node].child,
                                            .token = -1, .byte = t[k]};
                v->trie[node].child = c;
            }
            node = c;
        }
        /* Texts are unique in the index; a repeat keeps the first id. */
        if (v->trie[node].token < 0) {
            v->trie[node].token = id;
            v->n_special++;
        }
    }

    /* Phi-3's tokenizer strips the whitespace after its chat tokens; the
     * GGUF does not record this, so recognise the model by name. */
    em_gguf_str name;
    if (em_gguf_get_str(g, "general.name", &name) == EM_OK) {
        char low[64];
        size_t k = 0;
        for (; k < name.len && k < sizeof low - 1; k++) low[k] = (char)tolower((unsigned char)name.ptr[k]);
        low[k] = '\0';
        if (strstr(low, "phi-3") || strstr(low, "phi3")) {
            for (int32_t i = 0; i < v->n_tokens; i++)
                if (is_special_type(v->type[i])) v->flags[i] |= EM_TOKF_RSTRIP;
            const char *keep[] = {"<unk>", "<s>", "<|endoftext|>"};
            for (size_t j = 0; j < 3; j++) {
                int32_t id = em_vocab_find(v, keep[j], strlen(keep[j]));
                if (id >= 0) v->flags[id] &= (uint8_t)~EM_TOKF_RSTRIP;
            }
            int32_t eos = em_vocab_find(v, "</s>", 4);
            if (eos >= 0) v->flags[eos] |= EM_TOKF_RSTRIP;
        }
    }
    return EM_OK;
}

static em_status load(em_vocab *v, const em_gguf *g) {
    em_status st;
    em_gguf_str model;
    st = em_gguf_get_str(g, KEY("model"), &model);
    if (st == EM_ERR_NOT_FOUND)
        return em_error(EM_ERR_FORMAT, "vocab: %s is missing", KEY("model"));
    if (st != EM_OK) return em_error(st, "vocab: %s is not a string", KEY("model"));

    v->bos = v->eos = v->eot = v->eom = v->unk = v->sep = v->pad = v->mask = -1;
    if (em_gguf_str_eq(model, "llama")) {
        v->kind = EM_VOCAB_SPM;
        v->bos = 1;
        v->eos = 2;
        v->unk = 0;
        v->add_bos = true;
        v->add_space_prefix = true;
    } else if (em_gguf_str_eq(model, "gpt2")) {
        v->kind = EM_VOCAB_BPE;
    } else if (em_gguf_str_eq(model, "bert")) {
        v->kind = EM_VOCAB_WPM;
        v->bos = 101;
        v->unk = 100;
        v->sep = 102;
        v->pad = 0;
        v->mask = 103;
        v->add_bos = true;
        v->add_sep = true;
        v->lowercase = true;
    } else if (em_gguf_str_eq(model, "none") || em_gguf_str_eq(model, "no_vocab")) {
        v->kind = EM_VOCAB_NONE;
        return EM_OK;
    } else {
        return em_error(EM_ERR_UNSUPPORTED, "vocab: tokenizer model '%.*s' is not supported",
                        (int)EM_MIN(model.len, 64), model.ptr);
    }

    if ((st = load_tokens(v, g)) != EM_OK) return st;
    if ((st = load_scores_types(v, g)) != EM_OK) return st;

    /* Defaults that point past a small vocabulary mean "none". */
    em_token *ids[] = {&v->bos, &v->eos, &v->unk, &v->sep, &v->pad, &v->mask};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if (*ids[i] >= v->n_tokens) *ids[i] = -1;

    if (v->kind == EM_VOCAB_BPE) {
        em_gguf_str pre = {"", 0};
        st = em_gguf_get_str(g, KEY("pre"), &pre);
        if (st != EM_OK && st != EM_ERR_NOT_FOUND)
            return em_error(st, "vocab: %s is not a string", KEY("pre"));
        /* GPT-NeoX files converted before the key existed carry none; their
         * tokenizer is not GPT-2's (it normalizes to NFC first). */
        em_gguf_str arch;
        if (pre.len == 0 && em_gguf_get_str(g, "general.architecture", &arch) == EM_OK &&
            em_gguf_str_eq(arch, "gptneox"))
            pre = (em_gguf_str){"gpt-neox", 8};
        if ((st = em_pretok_init(v, pre.ptr, pre.len)) != EM_OK) return st;
        if ((st = load_merges(v, g)) != EM_OK) return st;
    }

    if (v->kind == EM_VOCAB_WPM) get_opt_id(g, KEY("cls_token_id"), v->n_tokens, &v->bos);
    get_opt_id(g, KEY("bos_token_id"), v->n_tokens, &v->bos);
    get_opt_id(g, KEY("eos_token_id"), v->n_tokens, &v->eos);
    get_opt_id(g, KEY("eot_token_id"), v->n_tokens, &v->eot);
    get_opt_id(g, KEY("eom_token_id"), v->n_tokens, &v->eom);
    get_opt_id(g, KEY("unknown_token_id"), v->n_tokens, &v->unk);
    get_opt_id(g, KEY("seperator_token_id"), v->n_tokens, &v->sep); /* GGUF's spelling */
    get_opt_id(g, KEY("padding_token_id"), v->n_tokens, &v->pad);
    get_opt_id(g, KEY("mask_token_id"), v->n_tokens, &v->mask);

    if ((st = get_opt_bool(g, KEY("add_bos_token"), &v->add_bos)) != EM_OK) return st;
    if ((st = get_opt_bool(g, KEY("add_eos_token"), &v->add_eos)) != EM_OK) return st;
    if ((st = get_opt_bool(g, KEY("add_sep_token"), &v->add_sep)) != EM_OK) return st;
    if ((st = get_opt_bool(g, KEY("add_space_prefix"), &v->add_space_prefix)) != EM_OK) return st;
    if ((st = get_opt_bool(g, KEY("normalizer.lowercase"), &v->lowercase)) != EM_OK) return st;
    v->strip_accents = v->lowercase;
    if ((st = get_opt_bool(g, KEY("normalizer.strip_accents"), &v->strip_accents)) != EM_OK)
        return st;
    /* Asking for a token the vocabulary lacks cannot be honoured. */
    if (v->add_bos && v->bos < 0) v->add_bos = false;
    if (v->add_eos && v->eos < 0) v->add_eos = false;
    if (v->add_sep && v->sep < 0) v->add_sep = false;

    find_byte_tokens(v);
    mark_eog(v);
    if ((st = build_pieces(v)) != EM_OK) return st;
    if ((st = build_special(v, g)) != EM_OK) return st;
    static const char *const kinds[] = {"none", "SPM", "BPE", "WPM"};
    em_log(EM_LOG_DEBUG, "vocab: %s, %d tokens, %d merges, pre-tokenizer %.*s, %d special, "
           "bos %d eos %d eot %d unk %d", kinds[v->kind], v->n_tokens, v->n_merges,
           v->pre.name ? v->pre.name_len : 1, v->pre.name ? v->pre.name : "-", v->n_special,
           v->bos, v->eos, v->eot, v->unk);
    return EM_OK;
}

em_status em_vocab_load(em_vocab **out, const em_gguf *g) {
    if (!out || !g) return em_error(EM_ERR_INVALID_ARG, "vocab: NULL argument");
    em_vocab *v = calloc(1, sizeof *v);
    if (!v) return em_error(EM_ERR_NOMEM, "vocab: out of memory");
    em_status st = load(v, g);
    if (st != EM_OK) {
        em_vocab_free(v);
        return st;
    }
    *out = v;
    return EM_OK;
}

void em_vocab_free(em_vocab *v) {
    if (!v) return;
    em_pretok_free(&v->pre);
    free(v->text);
    free(v->text_off);
    free(v->text_len);
    free(v->piece);
    free(v->piece_off);
    free(v->piece_len);
    free(v->score);
    free(v->type);
    free(v->flags);
    free(v->index);
    free(v->merges);
    free(v->trie);
    free(v);
}

/* ------------------------------------------------------------ getters */

em_vocab_type em_vocab_kind(const em_vocab *v) { return v ? v->kind : EM_VOCAB_NONE; }
int32_t em_vocab_n_tokens(const em_vocab *v) { return v ? v->n_tokens : 0; }
em_token em_vocab_bos(const em_vocab *v) { return v ? v->bos : -1; }
em_token em_vocab_eos(const em_vocab *v) { return v ? v->eos : -1; }
em_token em_vocab_eot(const em_vocab *v) { return v ? v->eot : -1; }
bool em_vocab_add_bos(const em_vocab *v) { return v && v->add_bos; }
bool em_vocab_add_eos(const em_vocab *v) { return v && v->add_eos; }

bool em_vocab_is_eog(const em_vocab *v, em_token t) {
    return v && t >= 0 && t < v->n_tokens && (v->flags[t] & EM_TOKF_EOG);
}

const char *em_vocab_text(const em_vocab *v, em_token t) {
    if (!v || t < 0 || t >= v->n_tokens) return "";
    return em_vocab_tok_text(v, t);
}
