/*
 * template.c - the chat-template API: parsing a template, rendering a
 * conversation with the variables transformers passes (messages, tools,
 * add_generation_prompt, bos_token, eos_token), the built-in fallback
 * templates and the choice of template for a loaded model.
 */
#include "chat/jinja.h"

#include "core/core.h"
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>

struct em_chat_template {
    jtemplate t;
    char *source;
    jerr err;
};

em_status em_chat_template_init(em_chat_template **out, const char *source) {
    *out = NULL;
    if (!source) return em_error(EM_ERR_INVALID_ARG, "chat template: no source");
    size_t n = strlen(source);
    if (!utf8_valid(source, n)) return em_error(EM_ERR_FORMAT, "chat template: source is not valid UTF-8");
    em_chat_template *t = calloc(1, sizeof *t);
    if (!t) return em_error(EM_ERR_NOMEM, "chat template: out of memory");
    t->source = malloc(n + 1);
    if (!t->source) {
        free(t);
        return em_error(EM_ERR_NOMEM, "chat template: out of memory");
    }
    memcpy(t->source, source, n + 1);
    /* Parsing needs about ten times the source; the bound stops a hostile
     * template from taking more. */
    t->t.arena.limit = 64 * n + (1u << 20);
    t->t.arena.err = &t->err;
    em_status st = jinja_parse(&t->t, t->source, &t->err);
    if (st != EM_OK) {
        em_status ret = em_error(st, "chat template: %s", t->err.msg);
        em_chat_template_free(t);
        return ret;
    }
    *out = t;
    return EM_OK;
}

void em_chat_template_free(em_chat_template *t) {
    if (!t) return;
    ja_free(&t->t.arena);
    free(t->source);
    free(t);
}

const char *em_chat_template_source(const em_chat_template *t) { return t->source; }

em_status em_chat_render(const em_chat_template *t, const json_t *messages, const json_t *tools,
                         bool add_generation_prompt, const char *bos_token, const char *eos_token,
                         char **out) {
    return em_chat_render_ex(t, messages, tools, add_generation_prompt, bos_token, eos_token, NULL, NULL, out);
}

static jv *str_key(jarena *a, const char *s) { return jv_str_ref(a, s, strlen(s)); }

/* Converts the inputs into template globals and renders; errors unwind
 * to the setjmp here (and, while rendering, to jinja_render's). */
static em_status render_protected(const em_chat_template *t, jarena *a, jerr *err, const json_t *messages,
                                  const json_t *tools, bool add_generation_prompt, const char *bos_token,
                                  const char *eos_token, const json_t *extra, const em_chat_limits *lim,
                                  char **out) {
    if (setjmp(err->jb)) return err->status;
    jv *g = jv_dict(a, JV_DICT);
    if (extra) {
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)extra, key, val) {
            jv_dict_set(a, g, str_key(a, ja_strndup(a, key, strlen(key))), jv_from_json(a, val, 0));
        }
    }
    jv_dict_set(a, g, str_key(a, "messages"), jv_from_json(a, messages, 0));
    if (tools && !json_is_null(tools)) jv_dict_set(a, g, str_key(a, "tools"), jv_from_json(a, tools, 0));
    jv_dict_set(a, g, str_key(a, "add_generation_prompt"), jv_bool(add_generation_prompt));
    const char *bos = bos_token ? bos_token : "", *eos = eos_token ? eos_token : "";
    jv_dict_set(a, g, str_key(a, "bos_token"), jv_str(a, bos, strlen(bos)));
    jv_dict_set(a, g, str_key(a, "eos_token"), jv_str(a, eos, strlen(eos)));
    return jinja_render(&t->t, a, g, lim, err, out);
}

em_status em_chat_render_ex(const em_chat_template *t, const json_t *messages, const json_t *tools,
                            bool add_generation_prompt, const char *bos_token, const char *eos_token,
                            const json_t *extra, const em_chat_limits *limits, char **out) {
    *out = NULL;
    if (!t || !messages || !json_is_array(messages))
        return em_error(EM_ERR_INVALID_ARG, "chat template: messages must be a JSON array");
    if (tools && !json_is_array(tools) && !json_is_null(tools))
        return em_error(EM_ERR_INVALID_ARG, "chat template: tools must be a JSON array");
    if (extra && !json_is_object(extra))
        return em_error(EM_ERR_INVALID_ARG, "chat template: extra variables must be a JSON object");
    em_chat_limits lim = {0};
    if (limits) lim = *limits;
    if (!lim.max_output) lim.max_output = 16u << 20;
    if (!lim.max_memory) lim.max_memory = 256u << 20;
    if (!lim.max_steps) lim.max_steps = 10000000;
    if (!lim.max_depth) lim.max_depth = 500;

    /* The arena and the error record belong to this frame, and the
     * longjmp target to the callees, so nothing here is left indeterminate
     * by an unwind. */
    jerr err;
    memset(&err, 0, sizeof err);
    jarena a = {.limit = lim.max_memory, .err = &err};
    em_status st = render_protected(t, &a, &err, messages, tools, add_generation_prompt, bos_token,
                                    eos_token, extra, &lim, out);
    ja_free(&a);
    if (st != EM_OK) return em_error(st, "chat template: %s", err.msg);
    return EM_OK;
}

/* ---- built-in templates ---- */

static const struct { const char *name, *source; } BUILTINS[] = {
    {"chatml",
     "{%- for message in messages %}"
     "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
     "{%- endfor %}"
     "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"},
    {"llama2",
     "{%- if messages[0]['role'] == 'system' %}"
     "{%- set system = messages[0]['content'] %}{%- set turns = messages[1:] %}"
     "{%- else %}{%- set system = none %}{%- set turns = messages %}{%- endif %}"
     "{%- for message in turns %}"
     "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
     "{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
     "{%- endif %}"
     "{%- set content = message['content'] %}"
     "{%- if loop.first and system is not none %}"
     "{%- set content = '<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' + content %}"
     "{%- endif %}"
     "{%- if message['role'] == 'user' %}{{- bos_token + '[INST] ' + content | trim + ' [/INST]' }}"
     "{%- else %}{{- ' ' + content | trim + ' ' + eos_token }}{%- endif %}"
     "{%- endfor %}"},
    {"llama3",
     "{{- bos_token }}"
     "{%- for message in messages %}"
     "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
     "{%- endfor %}"
     "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"},
    {"gemma",
     "{{- bos_token }}"
     "{%- set ns = namespace(system='') %}"
     "{%- for message in messages %}"
     "{%- if message['role'] == 'system' %}{%- set ns.system = message['content'] | trim + '\\n\\n' %}"
     "{%- else %}"
     "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
     "{{- '<start_of_turn>' + role + '\\n' + (ns.system if role == 'user' else '') + message['content'] | trim + '<end_of_turn>\\n' }}"
     "{%- if role == 'user' %}{%- set ns.system = '' %}{%- endif %}"
     "{%- endif %}"
     "{%- endfor %}"
     "{%- if add_generation_prompt %}{{- '<start_of_turn>model\\n' }}{%- endif %}"},
    {"mistral",
     "{{- bos_token }}"
     "{%- set ns = namespace(system='') %}"
     "{%- for message in messages %}"
     "{%- if message['role'] == 'system' %}{%- set ns.system = message['content'] + '\\n\\n' %}"
     "{%- elif message['role'] == 'user' %}{{- '[INST] ' + ns.system + message['content'] + ' [/INST]' }}{%- set ns.system = '' %}"
     "{%- elif message['role'] == 'assistant' %}{{- message['content'] + eos_token }}"
     "{%- endif %}"
     "{%- endfor %}"},
};

const char *em_chat_builtin(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof BUILTINS / sizeof BUILTINS[0]; i++)
        if (!strcmp(BUILTINS[i].name, name)) return BUILTINS[i].source;
    return NULL;
}

static bool vocab_has(const em_vocab *v, const char *text) {
    int32_t n = em_vocab_n_tokens(v);
    for (int32_t i = 0; i < n; i++) {
        const char *s = em_vocab_text(v, i);
        if (s && !strcmp(s, text)) return true;
    }
    return false;
}

em_status em_chat_template_for_model(const em_model *model, char **source, const char **name) {
    *source = NULL;
    if (name) *name = NULL;
    if (!model) return em_error(EM_ERR_INVALID_ARG, "chat template: no model");
    em_gguf_str s;
    const char *pick = NULL;
    if (model->gguf && em_gguf_get_str(model->gguf, "tokenizer.chat_template", &s) == EM_OK && s.len > 0) {
        char *copy = malloc(s.len + 1);
        if (!copy) return em_error(EM_ERR_NOMEM, "chat template: out of memory");
        memcpy(copy, s.ptr, s.len);
        copy[s.len] = 0;
        *source = copy;
        if (name) *name = "model";
        return EM_OK;
    }
    /* No template in the file: guess from the special tokens it knows. */
    const em_vocab *v = em_model_vocab(model);
    if (v && vocab_has(v, "<|im_start|>")) pick = "chatml";
    else if (v && vocab_has(v, "<|start_header_id|>")) pick = "llama3";
    else if (v && vocab_has(v, "<start_of_turn>")) pick = "gemma";
    else if (v && vocab_has(v, "[INST]")) pick = "mistral";
    else if (v && em_vocab_kind(v) == EM_VOCAB_SPM && !strcmp(em_model_arch(model), "llama")) pick = "llama2";
    else pick = "chatml";
    const char *src = em_chat_builtin(pick);
    *source = malloc(strlen(src) + 1);
    if (!*source) return em_error(EM_ERR_NOMEM, "chat template: out of memory");
    strcpy(*source, src);
    if (name) *name = pick;
    return EM_OK;
}
