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

static char *read_text_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    em_strbuf b = {0};
    char chunk[4096];
    size_t n;
    bool ok = true;
    while (ok && (n = fread(chunk, 1, sizeof chunk, f)) > 0) ok = em_strbuf_append(&b, chunk, n) && b.n < (4u << 20);
    if (ferror(f)) ok = false;
    fclose(f);
    if (!ok || !b.p) {
        em_strbuf_free(&b);
        return NULL;
    }
    return b.p;
}

em_status em_prompt_setup(em_server *s, const char *name_or_file) {
    em_status st;
    if (name_or_file) {
        const char *builtin = em_chat_builtin(name_or_file);
        s->template_text = builtin ? strdup(builtin) : read_text_file(name_or_file);
        if (!s->template_text)
            return em_error(EM_ERR_INVALID_ARG,
                            "--chat-template %s: neither a built-in (chatml, llama2, llama3, gemma, mistral) nor a "
                            "readable file",
                            name_or_file);
    } else if ((st = em_chat_template_for_model(s->model, &s->template_text, NULL)) != EM_OK) {
        return st;
    }
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
    out->add_bos = !(bos_text && bos_text[0] && !strncmp(out->text, bos_text, strlen(bos_text)));
    return true;
}

void em_prompt_free(em_prompt *p) {
    free(p->text);
    p->text = NULL;
}

/* -------------------------------------------------------- tool calls */

static json_t *call_json(const char *name, json_t *arguments, uint64_t n) {
    char id[32];
    snprintf(id, sizeof id, "call_%016llx", (unsigned long long)n);
    char *args = json_dumps(arguments, JSON_COMPACT | JSON_ENCODE_ANY);
    json_t *c = json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", id, "type", "function", "function", "name", name,
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
        if (name && args) *calls = json_pack("[o]", call_json(name, args, (uint64_t)(uintptr_t)text ^ (uint64_t)em_time_s()));
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

/* The schema of one forced call of a tool: {"name": NAME, "arguments": PARAMS}. */
static json_t *tool_call_schema(json_t *tool) {
    json_t *fn = json_object_get(tool, "function");
    json_t *params = json_object_get(fn, "parameters");
    return json_pack("{s:s, s:{s:{s:O}, s:O}, s:[s, s]}", "type", "object", "properties", "name", "const",
                     json_object_get(fn, "name"), "arguments",
                     json_is_object(params) ? params : json_pack("{s:s}", "type", "object"), "required", "name",
                     "arguments");
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
        json_t *schema = NULL;
        if (req->tool_choice == EM_TOOL_CHOICE_NAMED) {
            size_t i;
            json_t *tool;
            json_array_foreach(req->tools, i, tool) {
                const char *n = json_string_value(json_object_get(json_object_get(tool, "function"), "name"));
                if (n && !strcmp(n, req->tool_name)) schema = tool_call_schema(tool);
            }
        } else {
            json_t *any = json_array();
            size_t i;
            json_t *tool;
            json_array_foreach(req->tools, i, tool) json_array_append_new(any, tool_call_schema(tool));
            schema = json_pack("{s:o}", "anyOf", any);
        }
        if (!schema) return em_api_fail(err, 500, NULL, "out of memory");
        st = em_grammar_compile_json_schema_value(&g, schema);
        json_decref(schema);
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
