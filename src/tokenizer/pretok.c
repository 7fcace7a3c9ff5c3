/*
 * pretok.c - the pre-tokenizers of byte-level BPE models: the regexes that
 * cut text into words before merging, chosen by tokenizer.ggml.pre.
 *
 * A pre-tokenizer is a list of regexes.  The first cuts the whole text into
 * its matches and the stretches between them (both kept, in order); each
 * following regex cuts every piece the previous one produced in the same
 * way.  This is how Hugging Face chains Split pre-tokenizers, and the
 * regexes are those of each model's tokenizer.json, as llama.cpp's
 * llama-vocab.cpp lists them; where llama.cpp rewrites a regex because its
 * engine lacks a feature (Unicode classes, case-insensitive groups) the
 * original is used here, since PCRE2 has the feature.  The (?i:...) groups
 * are spelled out as character classes holding exactly what Oniguruma's
 * case folding (the engine Hugging Face runs them with) matches: both
 * cases, and for "s" also U+017F LATIN SMALL LETTER LONG S, which folds to
 * "s" ("'\u017f" is a contraction to Hugging Face, not to llama.cpp).
 *
 * Every regex is compiled once, at vocab load, in UTF + UCP mode with
 * PCRE2_MATCH_INVALID_UTF, so arbitrary bytes are safe subjects: invalid
 * sequences never match and end up in the pieces between matches.  The
 * exception are steps that Hugging Face runs after its ByteLevel step,
 * where every byte is one character: those regexes match bytes.
 *
 * docs/TOKENIZERS.md lists where these choices differ from llama.cpp's.
 */
#include "tokenizer/vocab.h"

#include <stdlib.h>
#include <string.h>

/* ---- the regexes ---- */

#define CONTRACTIONS \
    "(?:'[sS\\x{17F}]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"

/* GPT-2 and most models derived from its tokenizer. */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

#define RE_LLAMA3                                                             \
    CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"                 \
                 "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

#define RE_QWEN2                                                              \
    CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"                      \
                 "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

#define RE_QWEN35                                                             \
    CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}"              \
                 "| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* Chinese, Japanese and Korean ranges of DeepSeek's tokenizers. */
#define CJK_DEEPSEEK "[\\x{4E00}-\\x{9FA5}\\x{0800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+"

/* DeepSeek LLM's letter class: the cased letters of its Unicode version. */
#define DEEPSEEK_LETTERS                                                                  \
    "A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}"         \
    "\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}" \
    "\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}"          \
    "\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}"              \
    "\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}"        \
    "\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}"        \
    "\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}"        \
    "\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}" \
    "\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}" \
    "\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}"         \
    "\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}"          \
    "\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}" \
    "\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}" \
    "\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}"         \
    "\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}"        \
    "\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}"      \
    "\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}" \
    "\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}"

/* Poro and Bloom: words up to a space or a sentence mark of several
 * scripts (the parentheses and bar are literally in the class). */
#define RE_PORO \
    " ?[^(\\s|.,!?\\x{2026}\\x{3002}\\x{FF0C}\\x{3001}\\x{0964}\\x{06D4}\\x{060C})]+"

#define RE_GPT4O                                                                            \
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+" \
    CONTRACTIONS "?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+"            \
    "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*" CONTRACTIONS "?|\\p{N}{1,3}"                            \
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

#define RE_TEKKEN                                                                           \
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+" \
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*" \
    "|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* What a pre-tokenizer implies beyond its regexes. */
#define PRE_IGNORE_MERGES 0x1 /* a word that is a token is not merged  */
#define PRE_ADD_BOS 0x2       /* the model expects BOS by default       */
#define PRE_NFC 0x4           /* the text is NFC-normalized first       */

typedef struct pre_def {
    const char *names; /* tokenizer.ggml.pre values, separated by '|' */
    unsigned flags;
    const char *regex[EM_PRE_MAX_REGEX];
} pre_def;

/* Put before a regex that matches bytes rather than UTF-8: a Hugging Face
 * step after ByteLevel sees every byte as one character. */
#define BYTE_LEVEL "\x01"

static const pre_def pre_defs[] = {
    {"gpt-2|default|phi-2|jina-es|jina-de|gigachat|jina-v2-es|jina-v2-de|a.x-4.0|mellum"
     "|modern-bert|olmo|jais|trillion|granite-docling|exaone4"
     "|jina-v1-en|jina-v2-code|roberta-bpe",
     0, {RE_GPT2}},
    /* EleutherAI/gpt-neox-20b's tokenizer.json (which MPT uses too) puts an
     * NFC normalizer before the ByteLevel pre-tokenizer. */
    {"gpt-neox|mpt", PRE_NFC, {RE_GPT2}},
    {"llama3|llama-bpe|llama-v3|falcon3|falcon-h1|pixtral|midm-2.0|lfm2",
     PRE_IGNORE_MERGES | PRE_ADD_BOS, {RE_LLAMA3}},
    {"dbrx|smaug-bpe|chatglm-bpe|glm4", 0, {RE_LLAMA3}},
    {"qwen2|deepseek-r1-qwen|stablelm2|megrez|hunyuan|kormo|solar-open|grok-2", 0, {RE_QWEN2}},
    {"qwen35", 0, {RE_QWEN35}},
    {"deepseek-llm", 0,
     {"[\\r\\n]", "\\s?[" DEEPSEEK_LETTERS "]+",
      "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+",
      "\\s+$", CJK_DEEPSEEK, "\\p{N}+"}},
    {"deepseek-coder", 0,
     {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", CJK_DEEPSEEK, "\\p{N}"}},
    {"deepseek-v3", 0,
     {"\\p{N}{1,3}", "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+",
      "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
      "| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    /* Falcon's Digits step comes after ByteLevel, so it sees the byte
     * symbols: the bytes of ² ³ ¹ ¼ ½ ¾ (B2 B3 B9 BC BD BE) count as digits
     * there, inside any multi-byte character ("м" is D0 BC). */
    {"falcon", 0,
     {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, BYTE_LEVEL "[0-9\\xB2\\xB3\\xB9\\xBC-\\xBE]+",
      "[0-9][0-9][0-9]"}},
    {"starcoder|refact|command-r|smollm|codeshell|exaone|minerva-7b|mellum2", 0,
     {"\\p{N}", RE_GPT2}},
    {"poro-chat|bloom|gpt3-finnish", 0, {RE_PORO}},
    {"viking", 0, {RE_PORO, "\\p{N}"}},
    {"tekken", PRE_IGNORE_MERGES | PRE_ADD_BOS, {RE_TEKKEN}},
    {"gpt-4o|llama4", 0, {RE_GPT4O}},
    {"chameleon", PRE_ADD_BOS,
     {"<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )",
      "\\p{N}", "[\\p{P}!-/:-@\\[-`{-~]", RE_GPT2}},
    {"seed-coder", 0,
     {CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+"
                   "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    {"bailingmoe|bailingmoe2|llada-moe", 0,
     {"'(?:[sS\\x{17F}dDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
      "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"}},
};

/* True when name[0..n) is one of the '|'-separated names. */
static bool name_in(const char *names, const char *name, size_t n) {
    const char *p = names;
    for (;;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && memcmp(p, name, n) == 0) return true;
        if (!bar) return false;
        p = bar + 1;
    }
}

em_status em_pretok_init(em_vocab *v, const char *name, size_t name_len) {
    em_pretok *p = &v->pre;
    const pre_def *def = NULL;
    /* A file without tokenizer.ggml.pre predates the key: GPT-2's rules. */
    if (name_len == 0) {
        name = "gpt-2";
        name_len = 5;
    }
    for (size_t i = 0; i < sizeof pre_defs / sizeof pre_defs[0] && !def; i++)
        if (name_in(pre_defs[i].names, name, name_len)) def = &pre_defs[i];
    if (!def)
        return em_error(EM_ERR_UNSUPPORTED, "vocab: unknown pre-tokenizer '%.*s'",
                        (int)EM_MIN(name_len, 64), name);

    p->name = def->names;
    p->name_len = (int)strcspn(def->names, "|"); /* the first name is canonical */
    if (def->flags & PRE_IGNORE_MERGES) v->ignore_merges = true;
    if (def->flags & PRE_ADD_BOS) v->add_bos = true;
    if (def->flags & PRE_NFC) v->nfc = true;

    for (int i = 0; i < EM_PRE_MAX_REGEX && def->regex[i]; i++) {
        int err;
        PCRE2_SIZE off;
        const char *src = def->regex[i];
        uint32_t opts = PCRE2_DOLLAR_ENDONLY;
        if (src[0] == BYTE_LEVEL[0]) src++;
        else opts |= PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF;
        pcre2_code *re =
            pcre2_compile((PCRE2_SPTR)src, PCRE2_ZERO_TERMINATED, opts, &err, &off, NULL);
        if (!re) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(err, msg, sizeof msg);
            return em_error(EM_ERR_INTERNAL, "vocab: pre-tokenizer regex %d of '%.*s' at %zu: %s",
                            i, (int)EM_MIN(name_len, 64), name, (size_t)off, (const char *)msg);
        }
        /* JIT is only faster; where it is unavailable the interpreter runs. */
        (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
        uint32_t groups = 0;
        pcre2_pattern_info(re, PCRE2_INFO_CAPTURECOUNT, &groups);
        if (groups > p->max_groups) p->max_groups = groups;
        const uint8_t *first = NULL;
        if (pcre2_pattern_info(re, PCRE2_INFO_FIRSTBITMAP, &first) != 0) first = NULL;
        p->first[p->n_regex] = first;
        p->regex[p->n_regex++] = re;
    }
    return EM_OK;
}

void em_pretok_free(em_pretok *p) {
    for (int i = 0; i < p->n_regex; i++) pcre2_code_free(p->regex[i]);
    p->n_regex = 0;
}

static em_status push_span(em_span **a, size_t *cap, size_t *n, uint32_t s, uint32_t e) {
    if (*n == *cap) {
        em_status st = em_tok_reserve((void **)a, cap, *n + 1, sizeof **a);
        if (st != EM_OK) return st;
    }
    (*a)[(*n)++] = (em_span){s, e};
    return EM_OK;
}

/* Runs one regex over text[span) and appends the matches and the gaps
 * between them to dst.  first, when not NULL, is the bitmap of the bytes a
 * match can start with: a span holding none of them cannot be cut, which
 * saves calling the matcher on most pieces for the narrow later regexes
 * (digits, digit triples). */
static em_status split_one(const pcre2_code *re, const uint8_t *first, pcre2_match_data *md,
                           const char *text, em_span span, em_span **dst, size_t *cap,
                           size_t *n) {
    const PCRE2_SPTR subj = (PCRE2_SPTR)(text + span.start);
    const size_t len = span.end - span.start;
    size_t pos = 0, gap = 0;
    em_status st;
    if (first) {
        size_t i = 0;
        while (i < len && !(first[subj[i] >> 3] & (1u << (subj[i] & 7)))) i++;
        if (i == len) return push_span(dst, cap, n, span.start, span.end);
    }
    while (pos < len) {
        int rc = pcre2_match(re, subj, len, pos, 0, md, NULL);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            /* The interpreter keeps its backtracking on the heap. */
            rc = pcre2_match(re, subj, len, pos, PCRE2_NO_JIT, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return em_error(EM_ERR_INTERNAL, "tokenize: pre-tokenizer regex failed: %s",
                            (const char *)msg);
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me <= ms) {
            /* An empty match cuts nothing; move on by one character. */
            pos = ms + 1;
            while (pos < len && (subj[pos] & 0xC0) == 0x80) pos++;
            continue;
        }
        if (ms > gap && (st = push_span(dst, cap, n, span.start + (uint32_t)gap,
                                        span.start + (uint32_t)ms)) != EM_OK)
            return st;
        if ((st = push_span(dst, cap, n, span.start + (uint32_t)ms,
                            span.start + (uint32_t)me)) != EM_OK)
            return st;
        pos = gap = me;
    }
    if (len > gap)
        return push_span(dst, cap, n, span.start + (uint32_t)gap, span.end);
    return EM_OK;
}

em_status em_pretok_split(const em_pretok *p, em_tok_work *w, const char *text,
                          size_t len, const em_span **out, size_t *n_out) {
    if (len > UINT32_MAX) return em_error(EM_ERR_INVALID_ARG, "tokenize: text over 4 GiB");
    em_status st;
    if (!w->md) {
        w->md = pcre2_match_data_create(p->max_groups + 1, NULL);
        if (!w->md) return em_error(EM_ERR_NOMEM, "tokenize: out of memory");
    }
    size_t n_cur = 0, n_next;
    if ((st = push_span(&w->span_a, &w->cap_span_a, &n_cur, 0, (uint32_t)len)) != EM_OK)
        return st;
    em_span **cur = &w->span_a, **next = &w->span_b;
    size_t *cap_cur = &w->cap_span_a, *cap_next = &w->cap_span_b;
    for (int r = 0; r < p->n_regex; r++) {
        n_next = 0;
        for (size_t i = 0; i < n_cur; i++) {
            if ((st = split_one(p->regex[r], p->first[r], w->md, text, (*cur)[i], next,
                                cap_next, &n_next)) != EM_OK)
                return st;
        }
        em_span **ts = cur;
        cur = next;
        next = ts;
        size_t *tc = cap_cur;
        cap_cur = cap_next;
        cap_next = tc;
        n_cur = n_next;
    }
    *out = *cur;
    *n_out = n_cur;
    return EM_OK;
}
