/*
 * chat.c - `ember chat`: an interactive conversation in the terminal.
 *
 * Each turn renders the whole conversation through the model's chat
 * template (or the one --chat-template names), tokenizes it, and decodes
 * only what the cache does not hold yet: the tokens shared with the
 * previous turn's prompt and answer stay in the KV cache, so a long
 * conversation is not recomputed at every turn.  The answer streams to
 * stdout; a line of input is one user message.  Commands: /reset starts a
 * new conversation, /exit (or end of input) leaves.
 */
#include "chat/chat.h"
#include "cli/cli.h"
#include "core/core.h"
#include "ember.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct chat_opts {
    const char *model_path, *template_name, *system;
    int32_t n_predict;  /* tokens per answer; -1: until end of turn       */
    int32_t n_threads;  /* 0: physical cores                              */
    int32_t n_ctx;      /* 0: the model's training length, at most 4096   */
    int32_t n_batch;    /* prompt tokens per forward pass                 */
    bool show_prompt;   /* print each rendered prompt to stderr           */
    em_type kv_type;
    em_model_params mp;
    em_sampler_params sp;
} chat_opts;

typedef struct chat_state {
    em_model *model;
    em_context *ctx;
    em_sampler *smp;
    em_chat_template *tmpl;
    json_t *messages;   /* the conversation so far, OpenAI's shape        */
    em_token *cached;   /* [n_cached] tokens whose K/V the cache holds     */
    int32_t n_cached, cap_cached;
    em_batch batch;
} chat_state;

static em_opts_result parse_args(int argc, char **argv, chat_opts *o) {
    *o = (chat_opts){.n_predict = -1, .n_batch = 512, .kv_type = EM_TYPE_F16,
                     .mp = em_model_default_params(), .sp = em_sampler_default_params()};
    const em_opt opts[] = {
        {.name = "model", .short_name = "m", .type = EM_OPT_STRING, EM_OPT_DEST(o->model_path), .arg = "FILE",
         .help = "GGUF model to chat with", .flags = EM_OPT_REQUIRED},
        {.name = "chat-template", .type = EM_OPT_STRING, EM_OPT_DEST(o->template_name), .arg = "NAME|FILE",
         .help = "chatml, llama2, llama3, gemma, mistral, or a Jinja file", .def = "the model's"},
        {.name = "system", .short_name = "sys", .type = EM_OPT_STRING, EM_OPT_DEST(o->system), .arg = "TEXT",
         .help = "system message that opens the conversation"},
        {.name = "n-predict", .short_name = "n", .type = EM_OPT_INT, EM_OPT_DEST(o->n_predict), .min = -1,
         .max = 1 << 30, .help = "most tokens per answer (-1: until the end of the turn)"},
        EM_CLI_OPTS_SAMPLING(o->sp),
        {.name = "verbose-prompt", .type = EM_OPT_FLAG, EM_OPT_DEST(o->show_prompt),
         .help = "print each rendered prompt to stderr"},
        EM_CLI_OPT_KV_TYPE(o->kv_type),
        EM_CLI_OPTS_WEIGHTS(o->mp),
        EM_CLI_OPTS_COMPUTE(o->n_threads, o->n_ctx, o->n_batch),
        {0}};
    const em_cmd cmd = {.name = "chat",
                        .synopsis = "-m MODEL.gguf [options]",
                        .about = "Chat with a model in the terminal: one line of input is one message.",
                        .epilog = "In the chat, /reset starts over and /exit (or end of input) leaves.\n",
                        .opts = opts};
    return em_opts_parse(&cmd, argc, argv, NULL, NULL);
}

static bool fail(const char *fmt, ...) EM_PRINTF(1, 2);
static bool fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ember chat: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return false;
}

static bool load(const chat_opts *o, chat_state *s) {
    if (em_model_load(&s->model, em_cli_model_path(o->model_path), &o->mp) != EM_OK)
        return fail("%s", em_last_error());
    char *source = NULL;
    if (em_chat_template_select(s->model, o->template_name, &source) != EM_OK) return fail("%s", em_last_error());
    em_status st = em_chat_template_init(&s->tmpl, source);
    free(source);
    if (st != EM_OK) return fail("chat template: %s", em_last_error());
    if (em_cli_context_init(&s->ctx, s->model, o->n_ctx, o->n_batch, o->n_threads, o->kv_type) != EM_OK)
        return fail("%s", em_last_error());
    if (em_sampler_init(&s->smp, &o->sp, em_model_n_vocab(s->model)) != EM_OK) return fail("%s", em_last_error());
    if (em_batch_init(&s->batch, EM_MIN(o->n_batch, em_context_n_ctx(s->ctx))) != EM_OK)
        return fail("%s", em_last_error());
    if (!(s->messages = json_array())) return fail("out of memory");
    return true;
}

/* Appends {"role": role, "content": text} to the conversation. */
static bool add_message(chat_state *s, const char *role, const char *text) {
    json_t *m = json_pack("{s:s, s:s%}", "role", role, "content", text, strlen(text));
    return m && json_array_append_new(s->messages, m) == 0;
}

/* Starts a new conversation: the cache and the messages are emptied, the
 * system message (if any) opens it again. */
static bool reset(const chat_opts *o, chat_state *s) {
    json_array_clear(s->messages);
    s->n_cached = 0;
    em_kv_clear(s->ctx);
    em_sampler_reset(s->smp);
    return !o->system || add_message(s, "system", o->system);
}

/* Remembers that the cache now holds token t at the next position. */
static bool push_cached(chat_state *s, em_token t) {
    if (s->n_cached == s->cap_cached) {
        int32_t cap = s->cap_cached ? 2 * s->cap_cached : 256;
        em_token *grown = realloc(s->cached, (size_t)cap * sizeof *grown);
        if (!grown) return false;
        s->cached = grown;
        s->cap_cached = cap;
    }
    s->cached[s->n_cached++] = t;
    return true;
}

/* Decodes tokens[from..n) after the cached ones; the last row's logits are
 * kept.  On failure the cache holds the tokens before `from` alone. */
static bool decode_tokens(chat_state *s, const em_token *tokens, int32_t from, int32_t n) {
    for (int32_t i = from; i < n; i += s->batch.capacity) {
        em_batch_clear(&s->batch);
        for (int32_t j = i; j < n && j < i + s->batch.capacity; j++)
            em_batch_add(&s->batch, tokens[j], j, 0, j == n - 1);
        if (em_decode(s->ctx, &s->batch) != EM_OK) {
            em_kv_remove(s->ctx, 0, from, -1);
            s->n_cached = EM_MIN(from, em_kv_seq_pos_max(s->ctx, 0));
            return fail("%s", em_last_error());
        }
    }
    s->n_cached = from;
    for (int32_t j = from; j < n; j++)
        if (!push_cached(s, tokens[j])) return fail("out of memory");
    return true;
}

/* Renders the conversation with the generation prompt, tokenizes it, and
 * brings the cache up to date with it, reusing the longest prefix the
 * cache already holds. */
static bool prepare_turn(const chat_opts *o, chat_state *s) {
    const em_vocab *vocab = em_model_vocab(s->model);
    em_token bos = em_vocab_bos(vocab), eos = em_vocab_eos(vocab);
    char *text = NULL;
    em_status st = em_chat_render(s->tmpl, s->messages, NULL, true, bos >= 0 ? em_vocab_text(vocab, bos) : "",
                                  eos >= 0 ? em_vocab_text(vocab, eos) : "", &text);
    if (st != EM_OK) return fail("the chat template refused the conversation: %s", em_last_error());
    if (o->show_prompt) fprintf(stderr, "%s", text);
    bool add_bos = em_vocab_add_bos(vocab) && !em_chat_starts_with_bos(vocab, text);
    em_token *toks = NULL;
    int32_t n = 0;
    st = em_tokenize_alloc(vocab, text, -1, add_bos, true, &toks, &n);
    free(text);
    if (st != EM_OK) return fail("cannot tokenize the conversation: %s", em_last_error());
    int32_t n_ctx = em_context_n_ctx(s->ctx);
    bool ok = n > 0 && n < n_ctx;
    if (!ok) {
        free(toks);
        return fail("the conversation is %d tokens, which does not fit the context of %d (use -c or /reset)", n,
                    n_ctx);
    }
    /* Keep the common prefix; at least the last token is decoded again so
     * that its logits are fresh. */
    int32_t keep = 0;
    while (keep < s->n_cached && keep < n - 1 && s->cached[keep] == toks[keep]) keep++;
    if (keep < s->n_cached && em_kv_remove(s->ctx, 0, keep, -1) != EM_OK) ok = fail("%s", em_last_error());
    /* Sliding-window layers may have given back blocks that position keep
     * would see: the cache then keeps less, and more is decoded again. */
    if (ok) keep = EM_MIN(keep, em_kv_seq_pos_max(s->ctx, 0));
    if (ok) {
        s->n_cached = keep;
        ok = decode_tokens(s, toks, keep, n);
    }
    if (ok) {
        em_sampler_reset(s->smp);
        for (int32_t i = 0; i < n; i++) em_sampler_accept(s->smp, toks[i]);
    }
    free(toks);
    return ok;
}

/* Samples the answer, streams it, and records it in the conversation and
 * the cache.  False on a failed decode or a closed stdout. */
static bool answer(const chat_opts *o, chat_state *s) {
    const em_vocab *vocab = em_model_vocab(s->model);
    int32_t n_ctx = em_context_n_ctx(s->ctx);
    const float *logits = em_get_logits(s->ctx, s->batch.n_tokens - 1);
    size_t len = 0, cap = 256;
    char *reply = malloc(cap);
    if (!reply) return fail("out of memory");
    bool ok = true;
    for (int32_t n_gen = 0; ok && (o->n_predict < 0 || n_gen < o->n_predict); n_gen++) {
        em_token t = em_sampler_sample(s->smp, logits);
        em_sampler_accept(s->smp, t);
        if (em_vocab_is_eog(vocab, t)) break;
        char piece[256];
        int32_t k = em_token_to_piece(vocab, t, piece, sizeof piece, false);
        if (k > 0) {
            if (len + (size_t)k + 1 > cap) {
                char *grown = realloc(reply, cap = 2 * (len + (size_t)k + 1));
                if (!grown) {
                    ok = fail("out of memory");
                    break;
                }
                reply = grown;
            }
            memcpy(reply + len, piece, (size_t)k);
            len += (size_t)k;
            if (fwrite(piece, 1, (size_t)k, stdout) != (size_t)k || fflush(stdout) != 0) ok = false;
        }
        if (!ok) break;
        if (s->n_cached >= n_ctx) {
            fprintf(stderr, "\nember chat: context full (%d positions); /reset starts over\n", n_ctx);
            break;
        }
        em_batch_clear(&s->batch);
        em_batch_add(&s->batch, t, s->n_cached, 0, true);
        if (em_decode(s->ctx, &s->batch) != EM_OK) ok = fail("%s", em_last_error());
        else if (!push_cached(s, t)) ok = fail("out of memory");
        logits = em_get_logits(s->ctx, 0);
    }
    reply[len] = 0;
    fputc('\n', stdout);
    fflush(stdout);
    if (ok && !add_message(s, "assistant", reply)) ok = fail("out of memory");
    free(reply);
    return ok;
}

/* Reads one line of input without its newline; NULL at the end of input. */
static char *read_line(char **buf, size_t *cap) {
    ssize_t n = getline(buf, cap, stdin);
    if (n < 0) return NULL;
    while (n > 0 && ((*buf)[n - 1] == '\n' || (*buf)[n - 1] == '\r')) (*buf)[--n] = 0;
    return *buf;
}

static bool converse(const chat_opts *o, chat_state *s) {
    bool tty = isatty(STDIN_FILENO);
    if (tty) fprintf(stderr, "ember chat: /reset starts over, /exit or Ctrl-D leaves\n");
    if (!reset(o, s)) return fail("out of memory");
    char *buf = NULL;
    size_t cap = 0;
    bool ok = true;
    for (;;) {
        if (tty) {
            fputs("> ", stdout);
            fflush(stdout);
        }
        const char *line = read_line(&buf, &cap);
        if (!line || !strcmp(line, "/exit") || !strcmp(line, "/quit")) break;
        if (!*line) continue;
        if (!strcmp(line, "/reset")) {
            if (!reset(o, s)) {
                ok = fail("out of memory");
                break;
            }
            continue;
        }
        if (!add_message(s, "user", line)) {
            ok = fail("out of memory");
            break;
        }
        if (!prepare_turn(o, s)) {
            /* The turn is dropped; the conversation before it goes on. */
            json_array_remove(s->messages, json_array_size(s->messages) - 1);
            continue;
        }
        if (!(ok = answer(o, s))) break;
    }
    free(buf);
    return ok;
}

static void chat_free(chat_state *s) {
    em_batch_free(&s->batch);
    json_decref(s->messages);
    free(s->cached);
    em_chat_template_free(s->tmpl);
    em_sampler_free(s->smp);
    em_context_free(s->ctx);
    em_model_free(s->model);
}

int em_cli_chat(int argc, char **argv) {
    chat_opts o;
    em_opts_result r = parse_args(argc, argv, &o);
    if (r != EM_OPTS_OK) return em_opts_exit_code(r);
    chat_state s = {0};
    bool ok = load(&o, &s) && converse(&o, &s);
    chat_free(&s);
    return ok ? 0 : 1;
}
