/*
 * mc.c - log-likelihood benchmarks: multiple choice (ARC, PIQA, HellaSwag),
 * partial scoring (WinoGrande) and last-word completion (LAMBADA).
 *
 * The file reads like the pipeline it implements:
 *   1. reading the JSON-lines data ({query, choices, gold},
 *      {context_options, continuation, gold}, {context, continuation});
 *   2. turning each item into (context, continuation) text pairs the way
 *      lm-evaluation-harness prompts these tasks;
 *   3. tokenizing each pair as the harness does (trailing whitespace of the
 *      context moves to the continuation; the continuation's tokens are
 *      those of the whole text after the context's tokens);
 *   4. scoring all of an item's choices through the engine in one go,
 *      sharing the common prompt's KV cache between them;
 *   5. the metrics: acc (highest log-likelihood), acc_norm (highest
 *      log-likelihood per character of the choice), greedy match and
 *      perplexity for LAMBADA, each with its standard error.
 */
#include "eval/eval.h"
#include "kv/kv.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* ------------------------------------------------------------- tasks */

static const struct {
    const char *name, *file;
    bool norm;
} task_info[EM_TASK_COUNT] = {
    [EM_TASK_ARC_EASY] = {"arc_easy", "arc_easy.jsonl", true},
    [EM_TASK_ARC_CHALLENGE] = {"arc_challenge", "arc_challenge.jsonl", true},
    [EM_TASK_PIQA] = {"piqa", "piqa.jsonl", true},
    [EM_TASK_WINOGRANDE] = {"winogrande", "winogrande.jsonl", false},
    [EM_TASK_HELLASWAG] = {"hellaswag", "hellaswag_small.jsonl", true},
    [EM_TASK_LAMBADA] = {"lambada", "lambada_openai.jsonl", false},
};

const char *em_mc_task_name(em_mc_task t) {
    return (unsigned)t < EM_TASK_COUNT ? task_info[t].name : NULL;
}

const char *em_mc_task_file(em_mc_task t) {
    return (unsigned)t < EM_TASK_COUNT ? task_info[t].file : NULL;
}

bool em_mc_task_has_norm(em_mc_task t) {
    return (unsigned)t < EM_TASK_COUNT && task_info[t].norm;
}

bool em_mc_task_parse(const char *name, em_mc_task *out) {
    if (!name) return false;
    for (int t = 0; t < EM_TASK_COUNT; t++) {
        if (!strcmp(name, task_info[t].name)) {
            *out = (em_mc_task)t;
            return true;
        }
    }
    if (!strcmp(name, "lambada_openai")) {
        *out = EM_TASK_LAMBADA;
        return true;
    }
    return false;
}

/* ------------------------------------------------------ text helpers */

static bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Length of s without its trailing whitespace. */
static size_t rstrip_len(const char *s, size_t n) {
    while (n > 0 && is_space(s[n - 1])) n--;
    return n;
}

/* Characters (Unicode code points) of UTF-8 text, as Python's len(). */
static int32_t utf8_chars(const char *s) {
    int32_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* A new string: a[0..na) followed by b. */
static char *concat(const char *a, size_t na, const char *b) {
    size_t nb = strlen(b);
    char *s = malloc(na + nb + 1);
    if (!s) return NULL;
    memcpy(s, a, na);
    memcpy(s + na, b, nb + 1);
    return s;
}

/* ---------------------------------------------------------- the data */

static void item_free(em_mc_item *it) {
    for (int32_t i = 0; i < it->n_choices; i++) {
        if (it->context) free(it->context[i]);
        if (it->continuation) free(it->continuation[i]);
    }
    free(it->context);
    free(it->continuation);
    free(it->norm_len);
    memset(it, 0, sizeof *it);
}

void em_mc_data_free(em_mc_data *d) {
    if (!d) return;
    for (int32_t i = 0; i < d->n_items; i++) item_free(&d->items[i]);
    free(d->items);
    memset(d, 0, sizeof *d);
}

static bool item_alloc(em_mc_item *it, int32_t k) {
    it->context = calloc((size_t)k, sizeof *it->context);
    it->continuation = calloc((size_t)k, sizeof *it->continuation);
    it->norm_len = calloc((size_t)k, sizeof *it->norm_len);
    it->n_choices = k;
    return it->context && it->continuation && it->norm_len;
}

/*
 * Sets choice i to the prompt ctx and the answer text.  As the harness
 * does, a single space separates them (its target delimiter) unless the
 * prompt already ends in whitespace or the answer starts with it; the
 * answer's length in characters is what acc_norm divides by.
 */
static bool item_set(em_mc_item *it, int32_t i, const char *ctx, const char *answer) {
    size_t n = strlen(ctx);
    bool sep = !(n > 0 && is_space(ctx[n - 1])) && !is_space(answer[0]);
    it->context[i] = concat(ctx, n, "");
    it->continuation[i] = concat(" ", sep ? 1 : 0, answer);
    it->norm_len[i] = utf8_chars(answer);
    return it->context[i] && it->continuation[i];
}

/* Reads a string member; NULL (and a message) when absent or not a string. */
static const char *get_str(json_t *o, const char *key, char *msg, size_t msz) {
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v)) {
        snprintf(msg, msz, "\"%s\" must be a string", key);
        return NULL;
    }
    return json_string_value(v);
}

/* Reads an array of at least 2 strings. */
static json_t *get_str_array(json_t *o, const char *key, char *msg, size_t msz) {
    json_t *a = json_object_get(o, key);
    if (!json_is_array(a) || json_array_size(a) < 2 || json_array_size(a) > 4096) {
        snprintf(msg, msz, "\"%s\" must be an array of 2 or more strings", key);
        return NULL;
    }
    for (size_t i = 0; i < json_array_size(a); i++) {
        if (!json_is_string(json_array_get(a, i))) {
            snprintf(msg, msz, "\"%s\"[%zu] must be a string", key, i);
            return NULL;
        }
    }
    return a;
}

static bool get_gold(json_t *o, int32_t k, int32_t *gold, char *msg, size_t msz) {
    json_t *g = json_object_get(o, "gold");
    if (!json_is_integer(g) || json_integer_value(g) < 0 || json_integer_value(g) >= k) {
        snprintf(msg, msz, "\"gold\" must be an integer in [0, %d)", k);
        return false;
    }
    *gold = (int32_t)json_integer_value(g);
    return true;
}

/* Builds one item from a parsed line; false with a message on bad data. */
static bool parse_item(em_mc_task task, json_t *o, em_mc_item *it, char *msg, size_t msz) {
    if (!json_is_object(o)) {
        snprintf(msg, msz, "not a JSON object");
        return false;
    }
    if (task == EM_TASK_LAMBADA) {
        const char *ctx = get_str(o, "context", msg, msz);
        const char *cont = ctx ? get_str(o, "continuation", msg, msz) : NULL;
        if (!cont) return false;
        if (!*ctx || rstrip_len(cont, strlen(cont)) == 0) {
            snprintf(msg, msz, "empty context or continuation");
            return false;
        }
        if (!item_alloc(it, 1) || !item_set(it, 0, ctx, cont)) goto nomem;
        it->gold = 0;
        return true;
    }
    if (task == EM_TASK_WINOGRANDE) {
        /* Partial scoring: the same continuation after each filled-in
         * context; the harness strips it and joins with one space. */
        json_t *opts = get_str_array(o, "context_options", msg, msz);
        const char *cont = opts ? get_str(o, "continuation", msg, msz) : NULL;
        if (!cont) return false;
        while (is_space(*cont)) cont++;
        size_t cn = rstrip_len(cont, strlen(cont));
        if (cn == 0) {
            snprintf(msg, msz, "empty continuation");
            return false;
        }
        int32_t k = (int32_t)json_array_size(opts);
        if (!get_gold(o, k, &it->gold, msg, msz)) return false;
        char *stripped = concat(cont, cn, "");
        if (!stripped || !item_alloc(it, k)) {
            free(stripped);
            goto nomem;
        }
        bool ok = true;
        for (int32_t i = 0; i < k && ok; i++) {
            const char *ctx = json_string_value(json_array_get(opts, (size_t)i));
            ok = item_set(it, i, ctx, stripped);
        }
        free(stripped);
        if (!ok) goto nomem;
        return true;
    }
    /* arc, piqa, hellaswag: one query, several answers. */
    const char *query = get_str(o, "query", msg, msz);
    json_t *choices = query ? get_str_array(o, "choices", msg, msz) : NULL;
    if (!choices) return false;
    int32_t k = (int32_t)json_array_size(choices);
    if (!get_gold(o, k, &it->gold, msg, msz)) return false;
    /* The harness prompts ARC and PIQA as "Question: ...\nAnswer:"; the
     * data's query already holds "Question: ..." (PIQA's with a newline
     * after it).  HellaSwag's query is the context itself. */
    char *prompt;
    if (task == EM_TASK_HELLASWAG) prompt = concat(query, strlen(query), "");
    else prompt = concat(query, rstrip_len(query, strlen(query)), "\nAnswer:");
    if (!prompt || !item_alloc(it, k)) {
        free(prompt);
        goto nomem;
    }
    bool ok = true;
    for (int32_t i = 0; i < k && ok; i++)
        ok = item_set(it, i, prompt, json_string_value(json_array_get(choices, (size_t)i)));
    free(prompt);
    if (!ok) goto nomem;
    return true;
nomem:
    snprintf(msg, msz, "out of memory");
    return false;
}

em_status em_mc_data_parse(em_mc_data *d, em_mc_task task, const char *text, size_t len, const char *name,
                           int32_t limit) {
    memset(d, 0, sizeof *d);
    if ((unsigned)task >= EM_TASK_COUNT) return em_error(EM_ERR_INVALID_ARG, "mc: unknown task %d", (int)task);
    d->task = task;
    int32_t cap = 0;
    size_t off = 0;
    int32_t line = 0;
    while (off < len && (limit <= 0 || d->n_items < limit)) {
        const char *s = text + off;
        const char *nl = memchr(s, '\n', len - off);
        size_t n = nl ? (size_t)(nl - s) : len - off;
        off += n + (nl ? 1 : 0);
        line++;
        if (rstrip_len(s, n) == 0) continue; /* blank lines (a trailing newline) carry nothing */
        json_error_t jerr;
        json_t *o = json_loadb(s, n, JSON_REJECT_DUPLICATES, &jerr);
        if (!o) {
            em_mc_data_free(d);
            return em_error(EM_ERR_FORMAT, "%s:%d: invalid JSON: %s", name, line, jerr.text);
        }
        if (d->n_items == cap) {
            int32_t nc = cap ? cap * 2 : 64;
            em_mc_item *ni = realloc(d->items, (size_t)nc * sizeof *ni);
            if (!ni) {
                json_decref(o);
                em_mc_data_free(d);
                return em_error(EM_ERR_NOMEM, "%s: out of memory", name);
            }
            d->items = ni;
            cap = nc;
        }
        em_mc_item *it = &d->items[d->n_items];
        memset(it, 0, sizeof *it);
        char msg[160];
        bool ok = parse_item(task, o, it, msg, sizeof msg);
        json_decref(o);
        if (!ok) {
            item_free(it);
            em_mc_data_free(d);
            return em_error(EM_ERR_FORMAT, "%s:%d: %s", name, line, msg);
        }
        it->line = line;
        d->n_items++;
    }
    if (d->n_items == 0) {
        em_mc_data_free(d);
        return em_error(EM_ERR_FORMAT, "%s: no items", name);
    }
    return EM_OK;
}

em_status em_mc_data_load(em_mc_data *d, em_mc_task task, const char *path, int32_t limit) {
    memset(d, 0, sizeof *d);
    FILE *f = fopen(path, "rb");
    if (!f) return em_error(EM_ERR_IO, "cannot open %s", path);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        char *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    bool err = ferror(f) != 0;
    fclose(f);
    if (!buf) return em_error(EM_ERR_NOMEM, "%s: out of memory", path);
    if (err) {
        free(buf);
        return em_error(EM_ERR_IO, "cannot read %s", path);
    }
    em_status st = em_mc_data_parse(d, task, buf, n, path, limit);
    free(buf);
    return st;
}

/* ---------------------------------------------------------- scoring */

/* Tokens decoded once in sequence 0 and shared: the longest common prefix
 * of all sequences, stopped early enough that every choice still has the
 * row whose logits predict its first continuation token. */
static int32_t shared_prefix(const em_choice_seq *seqs, int32_t k) {
    int32_t p = seqs[0].cont_start - 1;
    for (int32_t i = 1; i < k; i++) {
        if (seqs[i].cont_start - 1 < p) p = seqs[i].cont_start - 1;
        int32_t j = 0;
        while (j < p && seqs[i].tokens[j] == seqs[0].tokens[j]) j++;
        p = j;
    }
    return p;
}

int32_t em_eval_choices_cells(const em_choice_seq *seqs, int32_t k) {
    /* The cache hands out whole blocks: sequence 0 holds the prefix's,
     * and a choice shares the full ones and writes from the block holding
     * position p on (a copy of the prefix's partial last block). */
    const int64_t B = EM_KV_BLOCK;
    int32_t p = shared_prefix(seqs, k);
    int64_t blocks = (p + B - 1) / B;
    for (int32_t i = 0; i < k; i++) {
        const int64_t n = seqs[i].n_tokens - 1;
        if (n > p) blocks += (n + B - 1) / B - p / B;
    }
    return blocks * B > INT32_MAX ? INT32_MAX : (int32_t)(blocks * B);
}

/* Decodes the pending batch and adds each scored row to its choice. */
static em_status flush_rows(em_eval_engine *e, em_choice_score *out) {
    if (e->batch.n_tokens == 0) return EM_OK;
    em_status st = em_decode(e->ctx, &e->batch);
    if (st != EM_OK) return st;
    for (int32_t r = 0; r < e->batch.n_tokens; r++) {
        if (e->batch.status[r] != EM_OK)
            return em_error(e->batch.status[r], "mc: batch row %d: %s", r, em_status_str(e->batch.status[r]));
        if (e->row_target[r] < 0) continue;
        const float *row = em_get_logits(e->ctx, r);
        if (!row) return em_error(EM_ERR_INTERNAL, "mc: no logits for batch row %d", r);
        em_token best;
        double lp = em_eval_log_prob(row, e->n_vocab, e->row_target[r], &best);
        if (!isfinite(lp)) return em_error(EM_ERR_INTERNAL, "mc: non-finite logits");
        em_choice_score *s = &out[e->row_choice[r]];
        s->loglik += lp;
        s->n_cont++;
        if (best != e->row_target[r]) s->greedy = false;
    }
    em_batch_clear(&e->batch);
    return EM_OK;
}

em_status em_eval_score_choices(em_eval_engine *e, const em_choice_seq *seqs, int32_t k, em_choice_score *out) {
    if (!e || !e->ctx || !seqs || !out || k <= 0) return em_error(EM_ERR_INVALID_ARG, "mc: nothing to score");
    if (e->n_seq_max < 2) return em_error(EM_ERR_INVALID_ARG, "mc: the engine needs at least 2 sequences");
    for (int32_t i = 0; i < k; i++) {
        if (!seqs[i].tokens || seqs[i].cont_start < 1 || seqs[i].cont_start >= seqs[i].n_tokens)
            return em_error(EM_ERR_INVALID_ARG,
                            "mc: choice %d has no context or no continuation (%d tokens, continuation at %d)", i,
                            seqs[i].n_tokens, seqs[i].cont_start);
    }
    int32_t need = em_eval_choices_cells(seqs, k);
    if (need > e->n_ctx)
        return em_error(EM_ERR_CONTEXT_FULL, "mc: the choices need %d cache positions, the context has %d", need,
                        e->n_ctx);
    const int32_t P = shared_prefix(seqs, k);
    em_status st = EM_OK;
    em_kv_clear(e->ctx);
    em_batch_clear(&e->batch);
    for (int32_t i = 0; i < k; i++) {
        out[i].loglik = 0.0;
        out[i].n_cont = 0;
        out[i].greedy = true;
    }

    /* The shared prompt, once, in sequence 0; no logits needed. */
    for (int32_t p = 0; p < P && st == EM_OK; p++) {
        st = em_batch_add(&e->batch, seqs[0].tokens[p], p, 0, false);
        if (st != EM_OK) break;
        e->row_target[e->batch.n_tokens - 1] = -1;
        if (e->batch.n_tokens == e->n_batch) st = flush_rows(e, out);
    }
    if (st == EM_OK) st = flush_rows(e, out);

    /* The choices, as many at a time as the cache has sequence ids. */
    const int32_t group = e->n_seq_max - 1;
    for (int32_t g0 = 0; g0 < k && st == EM_OK; g0 += group) {
        int32_t g1 = EM_MIN(k, g0 + group);
        for (int32_t i = g0; i < g1; i++)
            if (P > 0 && st == EM_OK) st = em_kv_seq_cp(e->ctx, 0, 1 + i - g0, 0, P);
        for (int32_t i = g0; i < g1 && st == EM_OK; i++) {
            const em_choice_seq *s = &seqs[i];
            em_seq_id sid = 1 + i - g0;
            /* Row p predicts token p + 1; the last token is never fed. */
            for (int32_t p = P; p < s->n_tokens - 1 && st == EM_OK; p++) {
                bool scored = p + 1 >= s->cont_start;
                st = em_batch_add(&e->batch, s->tokens[p], p, sid, scored);
                if (st != EM_OK) break;
                int32_t r = e->batch.n_tokens - 1;
                e->row_choice[r] = i;
                e->row_target[r] = scored ? s->tokens[p + 1] : -1;
                if (e->batch.n_tokens == e->n_batch) st = flush_rows(e, out);
            }
        }
        if (st == EM_OK) st = flush_rows(e, out);
        for (int32_t i = g0; i < g1; i++) em_kv_remove(e->ctx, 1 + i - g0, 0, -1);
    }
    em_batch_clear(&e->batch);
    em_kv_clear(e->ctx);
    return st;
}

/* ------------------------------------------------------- tokenizing */

/* One item's choices as tokens: seqs[k] pointing into one buffer. */
typedef struct prepared {
    em_token *buf;        /* [sum of n_tokens] every choice's tokens      */
    em_choice_seq *seqs;  /* [n_choices]                                 */
    int32_t n_choices;
    int32_t cells;        /* cache positions the item needs               */
    int32_t longest;      /* tokens of its longest choice                 */
} prepared;

static void prepared_free(prepared *p) {
    free(p->buf);
    free(p->seqs);
    memset(p, 0, sizeof *p);
}

/*
 * The harness's pairing of context and continuation: trailing whitespace
 * of the context belongs to the continuation; the context is tokenized
 * alone (with BOS), the whole text too, and the continuation's tokens are
 * the whole text's tokens after the context's count.  When the whole text
 * tokenizes no longer than the context (a merge across the boundary), the
 * continuation is tokenized alone instead.
 */
static em_status encode_pair(const em_vocab *v, const char *ctx, const char *cont, em_token **toks, int32_t *n,
                             int32_t *start) {
    size_t cl = strlen(ctx), keep = rstrip_len(ctx, cl);
    em_token *ce = NULL, *we = NULL, *te = NULL;
    int32_t nc = 0, nw = 0, nt = 0;
    char *whole = concat(ctx, cl, cont);
    if (!whole) return em_error(EM_ERR_NOMEM, "mc: out of memory");
    em_status st = em_eval_tokenize(v, ctx, keep, true, &ce, &nc);
    if (st == EM_OK) st = em_eval_tokenize(v, whole, strlen(whole), true, &we, &nw);
    if (st == EM_OK && nw <= nc) {
        free(we);
        we = NULL;
        const char *tail = whole + keep;
        st = em_eval_tokenize(v, tail, strlen(tail), false, &te, &nt);
    }
    free(whole);
    if (st == EM_OK) {
        const em_token *cont_toks = te ? te : we + nc;
        int32_t n_cont = te ? nt : nw - nc;
        if (nc == 0) {
            st = em_error(EM_ERR_INVALID_ARG, "the context is empty and the model adds no BOS");
        } else if (n_cont <= 0) {
            st = em_error(EM_ERR_INVALID_ARG, "the continuation tokenizes to nothing");
        } else {
            em_token *all = malloc((size_t)(nc + n_cont) * sizeof *all);
            if (!all) {
                st = em_error(EM_ERR_NOMEM, "mc: out of memory");
            } else {
                memcpy(all, ce, (size_t)nc * sizeof *all);
                memcpy(all + nc, cont_toks, (size_t)n_cont * sizeof *all);
                *toks = all;
                *n = nc + n_cont;
                *start = nc;
            }
        }
    }
    free(ce);
    free(we);
    free(te);
    return st;
}

static em_status prepare_item(const em_vocab *v, const em_mc_item *it, prepared *p) {
    memset(p, 0, sizeof *p);
    int32_t k = it->n_choices;
    em_token **parts = calloc((size_t)k, sizeof *parts);
    p->seqs = calloc((size_t)k, sizeof *p->seqs);
    if (!parts || !p->seqs) {
        free(parts);
        prepared_free(p);
        return em_error(EM_ERR_NOMEM, "mc: out of memory");
    }
    p->n_choices = k;
    em_status st = EM_OK;
    int64_t total = 0;
    for (int32_t i = 0; i < k && st == EM_OK; i++) {
        st = encode_pair(v, it->context[i], it->continuation[i], &parts[i], &p->seqs[i].n_tokens,
                         &p->seqs[i].cont_start);
        if (st == EM_OK) {
            total += p->seqs[i].n_tokens;
            if (p->seqs[i].n_tokens > p->longest) p->longest = p->seqs[i].n_tokens;
        }
    }
    if (st == EM_OK) {
        p->buf = malloc((size_t)total * sizeof *p->buf);
        if (!p->buf) st = em_error(EM_ERR_NOMEM, "mc: out of memory");
    }
    if (st == EM_OK) {
        size_t off = 0;
        for (int32_t i = 0; i < k; i++) {
            memcpy(p->buf + off, parts[i], (size_t)p->seqs[i].n_tokens * sizeof *p->buf);
            p->seqs[i].tokens = p->buf + off;
            off += (size_t)p->seqs[i].n_tokens;
        }
        p->cells = em_eval_choices_cells(p->seqs, k);
    }
    for (int32_t i = 0; i < k; i++) free(parts[i]);
    free(parts);
    if (st != EM_OK) prepared_free(p);
    return st;
}

/* ---------------------------------------------------------- metrics */

em_mc_params em_mc_default_params(void) {
    em_mc_params p = {.n_ctx = 0, .n_batch = 512, .n_threads = 0, .kv_type = EM_TYPE_F16};
    return p;
}

/* Index of the largest value (the first on ties, as numpy.argmax). */
static int32_t argmax(const double *x, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

em_status em_eval_mc(const em_model *model, const em_mc_data *data, const em_mc_params *params,
                     em_eval_progress_fn progress, void *user, em_mc_result *out) {
    if (!model || !data || !out || data->n_items <= 0) return em_error(EM_ERR_INVALID_ARG, "mc: no items");
    em_mc_params p = params ? *params : em_mc_default_params();
    int32_t limit = p.n_ctx > 0 ? p.n_ctx : em_model_n_ctx_train(model);
    if (limit <= 0) limit = 4096;
    int32_t train = em_model_n_ctx_train(model);
    if (train > 0 && limit > train)
        return em_error(EM_ERR_INVALID_ARG, "context %d exceeds the model's training context %d", limit, train);
    const em_vocab *v = em_model_vocab(model);
    const int32_t n = data->n_items;

    /* Tokenize everything first: it sizes the cache exactly and finds a
     * bad item before any time is spent decoding. */
    prepared *prep = calloc((size_t)n, sizeof *prep);
    if (!prep) return em_error(EM_ERR_NOMEM, "mc: out of memory");
    em_status st = EM_OK;
    int32_t cells = 1, max_k = 1;
    for (int32_t i = 0; i < n && st == EM_OK; i++) {
        const em_mc_item *it = &data->items[i];
        st = prepare_item(v, it, &prep[i]);
        if (st != EM_OK) {
            st = em_error(st, "%s item at line %d: %s", em_mc_task_name(data->task), it->line, em_last_error());
            break;
        }
        if (prep[i].longest > limit) {
            st = em_error(EM_ERR_INVALID_ARG, "%s item at line %d needs %d tokens, more than the context %d",
                          em_mc_task_name(data->task), it->line, prep[i].longest, limit);
            break;
        }
        cells = EM_MAX(cells, prep[i].cells);
        max_k = EM_MAX(max_k, it->n_choices);
    }
    double *ll = NULL, *lln = NULL;
    em_choice_score *sc = NULL;
    em_eval_engine e;
    memset(&e, 0, sizeof e);
    if (st == EM_OK) {
        ll = malloc((size_t)max_k * sizeof *ll);
        lln = malloc((size_t)max_k * sizeof *lln);
        sc = malloc((size_t)max_k * sizeof *sc);
        if (!ll || !lln || !sc) st = em_error(EM_ERR_NOMEM, "mc: out of memory");
    }
    if (st == EM_OK) {
        int32_t nb = p.n_batch > 0 ? p.n_batch : 512;
        st = em_eval_engine_init(&e, model, cells, EM_MIN(nb, cells), EM_MIN(max_k + 1, EM_EVAL_MAX_SEQ),
                                 p.n_threads, p.kv_type);
    }

    double t0 = em_time_s();
    int64_t correct = 0, correct_norm = 0;
    double s_ll = 0, s_ll2 = 0;
    for (int32_t i = 0; i < n && st == EM_OK; i++) {
        const em_mc_item *it = &data->items[i];
        int32_t k = it->n_choices;
        st = em_eval_score_choices(&e, prep[i].seqs, k, sc);
        if (st != EM_OK) {
            st = em_error(st, "%s item at line %d: %s", em_mc_task_name(data->task), it->line, em_last_error());
            break;
        }
        if (data->task == EM_TASK_LAMBADA) {
            correct += sc[0].greedy;
            s_ll += sc[0].loglik;
            s_ll2 += sc[0].loglik * sc[0].loglik;
        } else {
            for (int32_t c = 0; c < k; c++) {
                ll[c] = sc[c].loglik;
                lln[c] = sc[c].loglik / (double)(it->norm_len[c] > 0 ? it->norm_len[c] : 1);
            }
            correct += argmax(ll, k) == it->gold;
            correct_norm += argmax(lln, k) == it->gold;
        }
        if (progress) progress(user, i + 1, n, (double)correct / (double)(i + 1));
    }
    em_eval_engine_free(&e);
    for (int32_t i = 0; i < n; i++) prepared_free(&prep[i]);
    free(prep);
    free(ll);
    free(lln);
    free(sc);
    if (st != EM_OK) return st;

    /* Standard errors as the harness reports them: the sample standard
     * deviation of the per-item values over sqrt(n). */
    memset(out, 0, sizeof *out);
    out->task = data->task;
    out->n = n;
    out->acc = (double)correct / n;
    out->acc_se = em_eval_mean_se((double)correct, (double)correct, n);
    out->acc_norm = out->acc_norm_se = -1.0;
    if (em_mc_task_has_norm(data->task)) {
        out->acc_norm = (double)correct_norm / n;
        out->acc_norm_se = em_eval_mean_se((double)correct_norm, (double)correct_norm, n);
    }
    if (data->task == EM_TASK_LAMBADA) {
        /* The harness's lambada perplexity: exp of minus the mean
         * log-likelihood of a whole continuation; its error is carried
         * through exp() to first order. */
        out->ppl = exp(-s_ll / n);
        out->ppl_se = out->ppl * em_eval_mean_se(s_ll, s_ll2, n);
    }
    out->seconds = em_time_s() - t0;
    return EM_OK;
}
