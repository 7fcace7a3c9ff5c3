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
 * built-in templates (chosen by the input's length) and the prompt is
 * tokenized; every request's constraint is compiled (response_format, a
 * forced tool call's schema of the request's tools) and its first mask
 * computed.  A refusal there is a 400 or a 500 with a message.
 */
#include "server/api.h"
#include "server/errors.h"
#include "server/prompt.h"
#include "fuzz_vocab.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check(bool cond) {
    if (!cond) abort();
}

/* The parts of a server that the prompt stage reads, one per built-in
 * template; NULL vocabulary: the stage is skipped. */
static const char *const builtins[] = {"chatml", "llama2", "llama3", "gemma", "mistral"};
enum { N_BUILTINS = sizeof builtins / sizeof builtins[0] };
static em_server servers[N_BUILTINS];
static em_vocab *vocab;
static float *logits;

static void load_once(void) {
    static bool loaded;
    if (loaded) return;
    loaded = true;
    vocab = fuzz_vocab_load("fuzz_request", "models/stories260K.gguf");
    if (!vocab) return;
    em_token_trie *trie = NULL;
    logits = malloc(sizeof *logits * (size_t)em_vocab_n_tokens(vocab));
    if (!logits || em_token_trie_init(&trie, vocab) != EM_OK) abort();
    for (int i = 0; i < N_BUILTINS; i++) {
        em_server *s = &servers[i];
        s->vocab = vocab;
        s->trie = trie;
        s->template_text = strdup(em_chat_builtin(builtins[i]));
        if (!s->template_text || em_chat_template_init(&s->tmpl, s->template_text) != EM_OK) abort();
    }
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
            if (vocab) prompt_stage(&servers[size % N_BUILTINS], &r);
        }
        em_api_request_free(&r);
    }
    return 0;
}
