/*
 * fuzz_request.c - libFuzzer target: arbitrary bytes as the body of each
 * of ember serve's POST endpoints (completions, chat, embeddings).
 *
 * Beyond "no crash, no leak, no out-of-bounds access" it checks the
 * parser's contract: a refusal has an HTTP status the API uses and a
 * message, its OpenAI-shaped error body serializes; an accepted request
 * has its fields within the documented bounds.
 *
 * An accepted request then goes where ember serve takes it next (with a
 * vocabulary: stories260K's, from $EMBER_FUZZ_VOCAB or $EMBER_TEST_DATA):
 * a chat request's messages and tools are rendered through one of the
 * built-in templates or of the real chat templates under
 * $EMBER_TEST_DATA/templates (chosen by the input's length), as the server
 * renders a client's messages with the model's own template, and the
 * prompt is tokenized; every request's constraint is compiled (response_format, a
 * forced tool call's schema of the request's tools) and its first mask
 * computed.  A refusal there is a 400 or a 500 with a message.
 */
#include "server/api.h"
#include "server/errors.h"
#include "server/prompt.h"
#include "fuzz_vocab.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(bool cond) {
    if (!cond) abort();
}

/* The parts of a server that the prompt stage reads, one per template;
 * NULL vocabulary: the stage is skipped. */
static const char *const builtins[] = {"chatml", "llama2", "llama3", "gemma", "mistral"};
enum { MAX_SERVERS = 64 };
static em_server servers[MAX_SERVERS];
static int n_servers;
static em_vocab *vocab;
static float *logits;

/* A server with this template source (taken); false when it does not parse. */
static bool add_server(char *source, em_token_trie *trie) {
    if (!source || n_servers == MAX_SERVERS) {
        free(source);
        return false;
    }
    em_server *s = &servers[n_servers];
    s->vocab = vocab;
    s->trie = trie;
    s->template_text = source;
    if (em_chat_template_init(&s->tmpl, source) != EM_OK) {
        free(source);
        s->template_text = NULL;
        return false;
    }
    n_servers++;
    return true;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1))) {
        if (fread(buf, 1, (size_t)n, f) != (size_t)n) n = 0;
        buf[n] = '\0';
    }
    fclose(f);
    return buf;
}

/* The real chat templates of the test data (sorted, so that an input
 * picks the same template in every run). */
static void add_data_templates(em_token_trie *trie) {
    const char *root = getenv("EMBER_TEST_DATA");
    if (!root || !*root) return;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/templates", root);
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort);
    for (int i = 0; i < n; i++) {
        const char *nm = names[i]->d_name;
        size_t len = strlen(nm);
        if (len > 6 && !strcmp(nm + len - 6, ".jinja")) {
            char path[8192];
            snprintf(path, sizeof path, "%s/%s", dir, nm);
            add_server(read_file(path), trie);
        }
        free(names[i]);
    }
    free(names);
}

static void load_once(void) {
    static bool loaded;
    if (loaded) return;
    loaded = true;
    vocab = fuzz_vocab_load("fuzz_request", "models/stories260K.gguf");
    if (!vocab) return;
    em_token_trie *trie = NULL;
    logits = malloc(sizeof *logits * (size_t)em_vocab_n_tokens(vocab));
    if (!logits || em_token_trie_init(&trie, vocab) != EM_OK) abort();
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
        if (!add_server(strdup(em_chat_builtin(builtins[i])), trie)) abort();
    add_data_templates(trie);
    fprintf(stderr, "fuzz_request: %d chat templates\n", n_servers);
}

static void check_refusal(const em_api_error *err) {
    check(err->http == 400 || err->http == 500);
    check(err->message[0] != '\0');
}

/* What ember serve does with an accepted request before the engine sees
 * it (gen.c, job_start): the prompt, its tokens, the constraint. */
static void prompt_stage(em_server *s, const em_api_request *r) {
    em_api_error err = {0};
    em_prompt p = {0};
    bool chat = r->kind == EM_API_CHAT;
    if (chat) {
        if (!em_prompt_render(s, r, &p, &err)) {
            check_refusal(&err);
            check(p.text == NULL);
            return;
        }
        check(p.text != NULL);
        em_token *tok = NULL;
        int32_t n = 0;
        if (em_tokenize_alloc(s->vocab, p.text, -1, p.add_bos, true, &tok, &n) == EM_OK) free(tok);
    }
    em_constraint c = {0};
    err.http = 0;
    if (em_prompt_constraint(s, r, chat ? &p : NULL, &c, &err)) {
        void *st = c.new_state(c.ctx);
        if (st) {
            c.mask(st, logits, em_vocab_n_tokens(s->vocab));
            c.free_state(st);
        }
        em_prompt_constraint_free(&c);
    } else if (err.http) {
        check_refusal(&err);
    }
    em_prompt_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    load_once();
    static const em_api_limits lim = {.model_id = "m", .n_vocab = 512, .n_parallel = 4, .n_embd = 64};
    for (int kind = EM_API_COMPLETIONS; kind <= EM_API_EMBEDDINGS; kind++) {
        em_api_request r;
        em_api_error err = {0};
        if (!em_api_parse((em_api_kind)kind, (const char *)data, size, &lim, &r, &err)) {
            check(err.http == 400 || err.http == 404 || err.http == 500);
            check(err.message[0] != '\0');
            json_t *body = em_api_error_json(&err);
            char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
            check(text != NULL);
            free(text);
            json_decref(body);
            continue;
        }
        check(json_is_object(r.body));
        if (kind == EM_API_EMBEDDINGS) {
            check(r.input != NULL);
        } else {
            check(r.n >= 1 && r.n <= lim.n_parallel);
            check(r.n_stop >= 0 && r.n_stop <= EM_ENGINE_MAX_STOP);
            for (int32_t i = 0; i < r.n_stop; i++) check(r.stop[i] && r.stop[i][0]);
            check(r.top_logprobs >= 0 && r.top_logprobs <= EM_ENGINE_MAX_TOP_LOGPROBS);
            check(r.max_tokens == -1 || r.max_tokens >= 1);
            for (int32_t i = 0; i < r.sampling.n_logit_bias; i++)
                check(r.sampling.logit_bias[i].token >= 0 && r.sampling.logit_bias[i].token < lim.n_vocab);
            if (kind == EM_API_CHAT) check(json_is_array(r.messages) && json_array_size(r.messages) > 0);
            else check(json_is_array(r.prompts) && json_array_size(r.prompts) > 0);
            if (r.format == EM_FORMAT_JSON_SCHEMA) check(r.schema != NULL);
            if (r.tool_choice == EM_TOOL_CHOICE_NAMED) check(r.tool_name && r.tools);
            if (vocab) prompt_stage(&servers[size % (size_t)n_servers], &r);
        }
        em_api_request_free(&r);
    }
    return 0;
}
