/*
 * prompt.c - chat prompts (src/chat renders the template), tool calls
 * parsed back, and the grammars (src/sample/grammar.h) that constrain
 * answers: response_format json_object / json_schema, and tool_choice
 * "required" or a named tool, which force one call written as
 * {"name": ..., "arguments": {...}} with the tool's parameters schema.
 */
#include "server/prompt.h"

#include "core/core.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ setup */

em_status em_prompt_setup(em_server *s, const char *name_or_file) {
    /* The same choice as `ember chat`: a built-in name, a file, or the model's own. */
    em_status st = em_chat_template_select(s->model, name_or_file, &s->template_text);
    if (st != EM_OK) return st;
    if ((st = em_chat_template_init(&s->tmpl, s->template_text)) != EM_OK)
        return em_error(st, "chat template: %s", em_last_error());
    if ((st = em_token_trie_init(&s->trie, s->vocab)) != EM_OK) return st;
    return EM_OK;
}

void em_prompt_teardown(em_server *s) {
    em_chat_template_free(s->tmpl);
    em_token_trie_free(s->trie);
    free(s->template_text);
    s->tmpl = NULL;
    s->trie = NULL;
    s->template_text = NULL;
}

/* ----------------------------------------------------------- render */

/* The messages as templates expect them: "developer" is "system", text
 * parts are joined into one string, and tool-call arguments (a JSON string
 * in OpenAI's API) become objects when they parse, as the templates that
 * write `arguments | tojson` need. */
static json_t *template_messages(const json_t *messages) {
    json_t *out = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m) {
        json_t *c = json_deep_copy(m);
        if (!c) break;
        json_t *role = json_object_get(c, "role");
        if (!strcmp(json_string_value(role), "developer")) json_object_set_new(c, "role", json_string("system"));
        json_t *content = json_object_get(c, "content");
        if (json_is_array(content)) {
            em_strbuf b = {0};
            size_t k;
            json_t *part;
            json_array_foreach(content, k, part) {
                const char *t = json_string_value(json_object_get(part, "text"));
                if (t) em_strbuf_append(&b, t, strlen(t));
            }
            json_object_set_new(c, "content", json_stringn(b.p ? b.p : "", b.n));
            em_strbuf_free(&b);
        }
        json_t *calls = json_object_get(c, "tool_calls");
        size_t k;
        json_t *tc;
        json_array_foreach(calls, k, tc) {
            json_t *fn = json_object_get(tc, "function");
            const char *args = json_string_value(json_object_get(fn, "arguments"));
            json_t *parsed = args ? json_loads(args, JSON_DECODE_ANY, NULL) : NULL;
            if (parsed) json_object_set_new(fn, "arguments", parsed);
        }
        json_array_append_new(out, c);
    }
    return out;
}

bool em_prompt_render(em_server *s, const em_api_request *req, em_prompt *out, em_api_error *err) {
    memset(out, 0, sizeof *out);
    out->tool_syntax = s->template_text;
    em_token bos = em_vocab_bos(s->vocab), eos = em_vocab_eos(s->vocab);
    const char *bos_text = bos >= 0 ? em_vocab_text(s->vocab, bos) : "";
    const char *eos_text = eos >= 0 ? em_vocab_text(s->vocab, eos) : "";
    json_t *msgs = template_messages(req->messages);
    if (!msgs) return em_api_fail(err, 500, NULL, "out of memory");
    const json_t *tools = req->tool_choice != EM_TOOL_CHOICE_NONE ? req->tools : NULL;
    em_status st = em_chat_render(s->tmpl, msgs, tools, true, bos_text, eos_text, &out->text);
    json_decref(msgs);
    if (st == EM_ERR_NOMEM) return em_api_fail(err, 500, NULL, "out of memory");
    if (st != EM_OK) return em_api_fail(err, 400, "messages", "the chat template refused the messages: %s", em_last_error());
    /* BOS is added by the tokenizer unless the template wrote it. */
    out->add_bos = !em_chat_starts_with_bos(s->vocab, out->text);
    return true;
}

void em_prompt_free(em_prompt *p) {
    free(p->text);
    p->text = NULL;
}

/* -------------------------------------------------------- tool calls */

/* A call without its id: gen.c gives every call one. */
static json_t *call_json(const char *name, json_t *arguments) {
    char *args = json_dumps(arguments, JSON_COMPACT | JSON_ENCODE_ANY);
    json_t *c = json_pack("{s:s, s:{s:s, s:s}}", "type", "function", "function", "name", name,
                          "arguments", args ? args : "{}");
    free(args);
    return c;
}

bool em_prompt_parse_tool_calls(const em_prompt *p, const char *text, json_t **calls, json_t **content) {
    *calls = NULL;
    *content = NULL;
    if (p->forced_tool) {
        /* The grammar wrote exactly one {"name", "arguments"} object. */
        json_t *obj = json_loads(text, 0, NULL);
        const char *name = json_string_value(json_object_get(obj, "name"));
        json_t *args = json_object_get(obj, "arguments");
        if (name && args) *calls = json_pack("[o]", call_json(name, args));
        json_decref(obj);
        return true;
    }
    char *rest = NULL;
    if (em_chat_parse_tool_calls(p->tool_syntax, text, calls, &rest) != EM_OK) return false;
    if (rest && rest[0]) *content = json_string(rest);
    free(rest);
    return true;
}

/* -------------------------------------------------------- constraint */

typedef struct grammar_ctx {
    atomic_int refs;        /* the server's, plus one per engine request */
    em_grammar *g;
    const em_token_trie *trie;
} grammar_ctx;

static void *g_new_state(void *ctx) {
    grammar_ctx *gc = ctx;
    em_grammar_state *st = NULL;
    return em_grammar_state_init(&st, gc->g, gc->trie) == EM_OK ? st : NULL;
}

static bool g_mask(void *state, float *logits, int32_t n_vocab) {
    (void)n_vocab;
    /* Fails only past the grammar's work budget (a pathological schema). */
    return em_grammar_mask(state, logits) == EM_OK;
}

static bool g_accept(void *state, em_token t) { return em_grammar_accept(state, t) == EM_OK; }
static bool g_done(void *state) { return em_grammar_done(state); }
static void g_free_state(void *state) { em_grammar_state_free(state); }

static void g_release(void *ctx) {
    grammar_ctx *gc = ctx;
    if (atomic_fetch_sub(&gc->refs, 1) == 1) {
        em_grammar_free(gc->g);
        free(gc);
    }
}

bool em_prompt_constraint(em_server *s, const em_api_request *req, em_prompt *p, em_constraint *out,
                          em_api_error *err) {
    err->http = 0;
    em_grammar *g = NULL;
    em_status st = EM_OK;
    const char *param = "response_format";
    bool forced = req->kind == EM_API_CHAT &&
                  (req->tool_choice == EM_TOOL_CHOICE_REQUIRED || req->tool_choice == EM_TOOL_CHOICE_NAMED);
    if (forced) {
        param = "tools";
        /* Each tool's parameters compile against their own root, so that
         * their $refs ("#/$defs/...") resolve as the tool's author meant.
         * No prefix or suffix: the call is parsed back as bare JSON. */
        st = em_grammar_compile_tool_call(&g, req->tools,
                                          req->tool_choice == EM_TOOL_CHOICE_NAMED ? req->tool_name : NULL,
                                          "arguments", NULL, NULL);
        if (p) p->forced_tool = true;
    } else if (req->format == EM_FORMAT_JSON_OBJECT) {
        st = em_grammar_compile_json_object(&g);
    } else if (req->format == EM_FORMAT_JSON_SCHEMA) {
        param = "response_format.json_schema.schema";
        st = em_grammar_compile_json_schema_value(&g, req->schema);
    } else {
        return false;
    }
    if (st == EM_ERR_NOMEM) return em_api_fail(err, 500, NULL, "out of memory");
    if (st != EM_OK) return em_api_fail(err, 400, param, "%s", em_last_error());
    grammar_ctx *gc = calloc(1, sizeof *gc);
    if (!gc) {
        em_grammar_free(g);
        return em_api_fail(err, 500, NULL, "out of memory");
    }
    atomic_init(&gc->refs, 1);
    gc->g = g;
    gc->trie = s->trie;
    *out = (em_constraint){.ctx = gc,
                           .new_state = g_new_state,
                           .mask = g_mask,
                           .accept = g_accept,
                           .done = g_done,
                           .free_state = g_free_state,
                           .release = g_release};
    return true;
}

void em_prompt_retain(em_constraint *c) {
    grammar_ctx *gc = c->ctx;
    atomic_fetch_add(&gc->refs, 1);
}

void em_prompt_constraint_free(em_constraint *c) {
    if (c->ctx) g_release(c->ctx);
    c->ctx = NULL;
}
