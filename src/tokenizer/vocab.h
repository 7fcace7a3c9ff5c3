/*
 * vocab.h - the inside of an em_vocab, shared by the files of
 * src/tokenizer (not installed, not part of the public API).
 *
 * An em_vocab is built once by em_vocab_load and never changes afterwards,
 * so any number of threads may tokenize with it at once.  Everything a
 * single call needs to write (symbol lists, heaps, the output ids, the
 * PCRE2 match data) lives in an em_tok_work that the call owns; the work
 * buffers grow geometrically, so a call allocates O(log n) times, never
 * once per token.
 */
#ifndef EM_TOKENIZER_VOCAB_H
#define EM_TOKENIZER_VOCAB_H

#include "tokenizer/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* GGUF's tokenizer.ggml.token_type values. */
enum {
    EM_TOKTYPE_UNDEFINED = 0,
    EM_TOKTYPE_NORMAL = 1,
    EM_TOKTYPE_UNKNOWN = 2,
    EM_TOKTYPE_CONTROL = 3,
    EM_TOKTYPE_USER_DEFINED = 4,
    EM_TOKTYPE_UNUSED = 5,
    EM_TOKTYPE_BYTE = 6
};

/* Per-token flags. */
#define EM_TOKF_LSTRIP 0x01 /* eats the whitespace before it when matched */
#define EM_TOKF_RSTRIP 0x02 /* eats the whitespace after it when matched  */
#define EM_TOKF_EOG 0x04    /* ends generation                           */

/* The most regexes one pre-tokenizer chains. */
#define EM_PRE_MAX_REGEX 8

/* One BPE merge: the pair (left, right) of token ids, packed into key,
 * becomes token result; lower rank merges first.  An empty slot has
 * key == EM_MERGE_EMPTY. */
#define EM_MERGE_EMPTY UINT64_MAX
typedef struct em_merge {
    uint64_t key;   /* (uint64)left << 32 | right */
    int32_t rank;   /* position in tokenizer.ggml.merges */
    int32_t result; /* id of the merged token */
} em_merge;

/* A pre-tokenizer: the regexes applied in turn to every piece the previous
 * ones produced; both matches and the text between them become pieces. */
typedef struct em_pretok {
    const char *name;       /* canonical name ("llama3"): name[0..name_len) */
    int name_len;
    int n_regex;
    pcre2_code *regex[EM_PRE_MAX_REGEX]; /* [n_regex] compiled, applied in order */
    /* [n_regex] PCRE2's 256-bit table of the bytes a match can start with
     * (owned by the regex), or NULL: a piece without any is left whole. */
    const uint8_t *first[EM_PRE_MAX_REGEX];
    uint32_t max_groups;    /* most capture groups of any regex */
} em_pretok;

/* A node of the special-token trie: the text that leads here from the
 * root, byte by byte, is a prefix of one or more special tokens. */
typedef struct em_trie_node {
    int32_t child;   /* first child node, -1 when none            */
    int32_t sibling; /* next child of the same parent, -1 at end   */
    int32_t token;   /* token whose whole text ends here, -1 none  */
    uint8_t byte;    /* the byte that leads from the parent here   */
} em_trie_node;

struct em_vocab {
    em_vocab_type kind;
    int32_t n_tokens;

    char *text;          /* [text_size] every token's text, each NUL-terminated */
    uint32_t *text_off;  /* [n_tokens] byte offset of the token's text in text  */
    uint32_t *text_len;  /* [n_tokens] bytes of the token's text (no NUL)       */
    char *piece;         /* [piece_size] decoded texts (what detokenize emits)  */
    uint32_t *piece_off; /* [n_tokens] byte offset into piece                   */
    uint32_t *piece_len; /* [n_tokens] bytes of the decoded text                */
    float *score;        /* [n_tokens] SPM merge priority (higher first)        */
    uint8_t *type;       /* [n_tokens] EM_TOKTYPE_*                             */
    uint8_t *flags;      /* [n_tokens] EM_TOKF_*                                */

    int32_t *index;      /* [index_mask + 1] open-addressed text -> id, -1 empty */
    uint32_t index_mask;

    em_merge *merges;    /* [merge_mask + 1] open-addressed pair -> merge, BPE  */
    uint32_t merge_mask;
    int32_t n_merges;

    int32_t byte_token[256]; /* [256] token for one raw byte, -1 when none */
    int32_t max_token_len;   /* bytes of the longest token text           */

    em_token bos, eos, eot, eom, unk, sep, pad, mask;
    bool add_bos, add_eos, add_sep;
    bool add_space_prefix; /* SPM: a space before the first word          */
    bool ignore_merges;    /* BPE: a word that is a token is kept whole   */
    bool lowercase;        /* WPM normalizer                              */
    bool strip_accents;    /* WPM normalizer                              */
    bool nfc;              /* BPE: NFC-normalize before pre-tokenizing    */

    /* Tokens matched in the raw text before the model's own algorithm runs
     * (CONTROL, USER_DEFINED and UNKNOWN), as a byte trie: special_root[b]
     * is the node for first byte b, and each node lists its children. */
    em_trie_node *trie;         /* [n_trie] */
    int32_t n_trie;
    int32_t special_root[256];  /* [256] node index, -1 when no token starts so */
    int32_t n_special;          /* tokens in the trie */

    em_pretok pre; /* BPE only */
};

/* ---- lookups (vocab.c) ---- */

/* Id of the token whose text is s[0..n), or -1. */
int32_t em_vocab_find(const em_vocab *v, const char *s, size_t n);
/* Rank of merging left and right (result id in *result), or -1. */
int32_t em_vocab_merge_rank(const em_vocab *v, int32_t left, int32_t right,
                            int32_t *result);

static inline const char *em_vocab_tok_text(const em_vocab *v, int32_t id) {
    return v->text + v->text_off[id];
}

/* ---- GPT-2 byte-level encoding (bpe.c) ---- */

/* The code point byte b is written as in byte-level BPE token texts. */
uint32_t em_bpe_byte_to_cp(uint8_t b);
/* The byte a code point stands for, or -1 when it is not a byte symbol. */
int em_bpe_cp_to_byte(uint32_t cp);

/* ---- per-call work ---- */

typedef struct em_span {
    uint32_t start, end; /* byte offsets [start, end) */
} em_span;

typedef struct em_sym {
    int32_t id;          /* BPE: current token id (-1: none, -2: merged away) */
    int32_t prev, next;  /* neighbours in the live list, -1 at the ends      */
    uint32_t start, n;   /* SPM: bytes [start, start + n) of the text        */
} em_sym;

typedef struct em_heap_item {
    double score;  /* SPM: token score; BPE: -rank; higher pops first    */
    int32_t left;  /* symbol index of the left half; ties: lower first      */
    int32_t right; /* symbol index of the right half                        */
    int32_t a, b;  /* SPM: byte size of the pair; BPE: left and right ids   */
} em_heap_item;

typedef struct em_tok_work {
    em_token *out;  /* [n_out] the ids produced so far */
    size_t n_out, cap_out;
    em_sym *sym;
    size_t cap_sym;
    em_heap_item *heap;
    size_t n_heap, cap_heap;
    char *buf;      /* escaped or encoded text */
    size_t cap_buf;
    em_span *span_a, *span_b;
    size_t cap_span_a, cap_span_b;
    uint32_t *cps;  /* NFC: code points being normalized, then scratch */
    size_t cap_cps;
    char *norm;     /* NFC: the normalized text */
    size_t cap_norm;
    pcre2_match_data *md;
} em_tok_work;

void em_tok_work_free(em_tok_work *w);
/* Grows *p (elements of size elem) to hold at least need elements. */
em_status em_tok_reserve(void **p, size_t *cap, size_t need, size_t elem);
em_status em_tok_push(em_tok_work *w, em_token t);

/* Heap of pair candidates: the top has the highest score, then the lowest
 * left index. */
em_status em_heap_push(em_tok_work *w, em_heap_item it);
em_heap_item em_heap_pop(em_tok_work *w);

/* ---- the algorithms; each appends to w->out ---- */

/* text is already whitespace-escaped ("▁") and space-prefixed. */
em_status em_spm_tokenize(const em_vocab *v, em_tok_work *w, const char *text,
                          size_t len);
em_status em_bpe_tokenize(const em_vocab *v, em_tok_work *w, const char *text,
                          size_t len);
em_status em_wpm_tokenize(const em_vocab *v, em_tok_work *w, const char *text,
                          size_t len);

/* ---- normalization (nfc.c) ---- */

/* Puts text[0..len) in Unicode NFC into out and out_len: text itself when it is
 * already NFC, else w->norm.  Invalid UTF-8 bytes pass through. */
em_status em_nfc(em_tok_work *w, const char *text, size_t len, const char **out,
                 size_t *out_len);

/* ---- pre-tokenizers (pretok.c) ---- */

/* Compiles the regexes of the named pre-tokenizer; sets ignore_merges,
 * nfc and add_bos defaults on v the way the named tokenizer expects. */
em_status em_pretok_init(em_vocab *v, const char *name, size_t name_len);
void em_pretok_free(em_pretok *p);
/* Splits text into pieces: *out gets *n_out spans (in w->span_a or
 * w->span_b). */
em_status em_pretok_split(const em_pretok *p, em_tok_work *w, const char *text,
                          size_t len, const em_span **out, size_t *n_out);

#endif /* EM_TOKENIZER_VOCAB_H */
