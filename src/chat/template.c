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

/* ---- built-in templates ----
 *
 * Fallbacks for models whose GGUF carries no template.  A conversation
 * without tools, tool calls or tool results renders exactly as these
 * templates always did (tests/unit/test_chat.c keeps the earlier sources
 * to prove it); tools follow each family's own convention where it has
 * one, so that the tool-call parser (toolcalls.c, which picks its family
 * from the markers in these sources) reads the model's answer back:
 *
 * - chatml: Hermes / Qwen 2.5.  The tools go as JSON lines in a
 *   <tools></tools> block of the system turn with the instruction to answer
 *   <tool_call>{"name": ..., "arguments": ...}</tool_call>; earlier calls
 *   are written back in that form and results as <tool_response> blocks of
 *   a user turn.
 * - llama3: Llama 3.1's JSON calls.  "Environment: ipython" in the system
 *   turn, the tools and the instruction to answer {"name": ...,
 *   "parameters": ...} in the first user turn (in the system turn when the
 *   conversation opens with no user turn), results in `ipython` turns.  The
 *   convention has one call per assistant turn, so more is refused.
 * - mistral: [AVAILABLE_TOOLS] before the last user turn, calls as
 *   [TOOL_CALLS][{"name", "arguments", "id"}], results as
 *   [TOOL_RESULTS]{"content", "call_id"}[/TOOL_RESULTS].
 * - llama2, gemma: neither has a tool convention of its own, so both use
 *   the Hermes instruction, in the system text (the <<SYS>> block, or the
 *   text gemma puts before the first user turn), with calls in the model's
 *   turn as <tool_call> blocks and results as a user turn of
 *   <tool_response> blocks.  It is written out in plain text, needs no
 *   special tokens, and is what Hermes-tuned Llama models were taught.
 */

/* ember's own instruction around the tools' JSON lines, in the Hermes
 * convention's markers (Jinja string text). */
#define HERMES_TOOLS_HEAD                                                                              \
    "# Tools\\n\\nThese functions are yours to call, as many of them as the request needs. "           \
    "Their signatures follow, a JSON object a line, between <tools> and </tools>:\\n<tools>"
#define HERMES_TOOLS_TAIL                                                                              \
    "\\n</tools>\\n\\nTo call a function, write a JSON object with its name and its arguments "        \
    "between <tool_call> and </tool_call>, one block a call:\\n<tool_call>\\n"                           \
    "{\"name\": NAME, \"arguments\": {ARGUMENTS}}\\n</tool_call>"
/* One call as Hermes writes it: fn is the call's function object; the
 * arguments are written as they came when they are a string (they did not
 * parse as JSON), else as JSON. */
#define HERMES_CALL                                                                                    \
    "'<tool_call>\\n{\"name\": ' + fn['name'] | tojson + ', \"arguments\": ' + "                       \
    "(fn['arguments'] if fn['arguments'] is string else fn['arguments'] | tojson) + '}\\n</tool_call>'"
/* Sets fn to a tool call's function (the object itself when it has none). */
#define SET_FN "{%- set fn = call['function'] if call['function'] is defined else call %}"
/* ember's own words for Llama 3.1's JSON calls: the shape of the answer
 * is the convention's, {"name", "parameters"}. */
#define LLAMA3_TOOLS_SAY                                                                               \
    "Answer with one JSON object, {\"name\": the name of the function, \"parameters\": an object of "  \
    "the names and values of its arguments}, with the values written out, not variables.\\n\\n"

static const struct { const char *name, *source; } BUILTINS[] = {
    {"chatml",
     "{%- if tools %}"
     "{{- '<|im_start|>system\\n' }}"
     "{%- if messages and messages[0]['role'] == 'system' %}{{- messages[0]['content'] + '\\n\\n' }}{%- endif %}"
     "{{- '" HERMES_TOOLS_HEAD "' }}"
     "{%- for tool in tools %}{{- '\\n' + tool | tojson }}{%- endfor %}"
     "{{- '" HERMES_TOOLS_TAIL "<|im_end|>\\n' }}"
     "{%- endif %}"
     "{%- for message in messages %}"
     "{%- if tools and loop.first and message['role'] == 'system' %}"
     "{%- elif message['role'] == 'assistant' and message['tool_calls'] %}"
     "{{- '<|im_start|>assistant' }}"
     "{%- if message['content'] %}{{- '\\n' + message['content'] }}{%- endif %}"
     "{%- for call in message['tool_calls'] %}" SET_FN "{{- '\\n' + " HERMES_CALL " }}{%- endfor %}"
     "{{- '<|im_end|>\\n' }}"
     "{%- elif message['role'] == 'tool' %}"
     "{%- if loop.first or loop.previtem['role'] != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}"
     "{{- '\\n<tool_response>\\n' + message['content'] + '\\n</tool_response>' }}"
     "{%- if loop.last or loop.nextitem['role'] != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}"
     "{%- else %}"
     "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
     "{%- endif %}"
     "{%- endfor %}"
     "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"},
    {"llama2",
     "{%- if messages[0]['role'] == 'system' %}"
     "{%- set system = messages[0]['content'] %}{%- set turns = messages[1:] %}"
     "{%- else %}{%- set system = none %}{%- set turns = messages %}{%- endif %}"
     "{%- set ns = namespace(index=0, text='', tools='') %}"
     "{%- if tools %}"
     "{%- set ns.tools = '" HERMES_TOOLS_HEAD "' %}"
     "{%- for tool in tools %}{%- set ns.tools = ns.tools + '\\n' + tool | tojson %}{%- endfor %}"
     "{%- set system = (system + '\\n\\n' if system is not none else '') + ns.tools + '" HERMES_TOOLS_TAIL "' %}"
     "{%- endif %}"
     "{%- for message in turns %}"
     "{%- if message['role'] == 'tool' %}"
     "{%- set ns.text = ns.text + ('\\n' if ns.text else '') + '<tool_response>\\n' + message['content'] + '\\n</tool_response>' %}"
     "{%- endif %}"
     "{%- if message['role'] != 'tool' or loop.last or loop.nextitem['role'] != 'tool' %}"
     "{%- set role = 'user' if message['role'] == 'tool' else message['role'] %}"
     "{%- if (role == 'user') != (ns.index % 2 == 0) %}"
     "{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
     "{%- endif %}"
     "{%- if message['role'] == 'tool' %}"
     "{%- set content = ns.text %}{%- set ns.text = '' %}"
     "{%- elif message['role'] == 'assistant' and message['tool_calls'] %}"
     "{%- set ns.text = message['content'] if message['content'] else '' %}"
     "{%- for call in message['tool_calls'] %}" SET_FN
     "{%- set ns.text = ns.text + ('\\n' if ns.text else '') + " HERMES_CALL " %}"
     "{%- endfor %}"
     "{%- set content = ns.text %}{%- set ns.text = '' %}"
     "{%- else %}"
     "{%- set content = message['content'] %}"
     "{%- endif %}"
     "{%- if ns.index == 0 and system is not none %}"
     "{%- set content = '<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' + content %}"
     "{%- endif %}"
     "{%- set ns.index = ns.index + 1 %}"
     "{%- if role == 'user' %}{{- bos_token + '[INST] ' + content | trim + ' [/INST]' }}"
     "{%- else %}{{- ' ' + content | trim + ' ' + eos_token }}{%- endif %}"
     "{%- endif %}"
     "{%- endfor %}"},
    {"llama3",
     "{{- bos_token }}"
     "{%- set ns = namespace(first=-1, in_user=false) %}"
     "{%- if tools %}"
     "{%- set ns.first = 1 if messages and messages[0]['role'] == 'system' else 0 %}"
     "{%- set ns.in_user = messages | length > ns.first and messages[ns.first]['role'] == 'user' %}"
     "{{- '<|start_header_id|>system<|end_header_id|>\\n\\nEnvironment: ipython\\n\\n' }}"
     "{%- if not ns.in_user %}"
     "{{- 'These functions can be called. To call one, answer in JSON. " LLAMA3_TOOLS_SAY "' }}"
     "{%- for t in tools %}{{- t | tojson(indent=4) + '\\n\\n' }}{%- endfor %}"
     "{%- endif %}"
     "{%- if ns.first == 1 %}{{- messages[0]['content'] | trim }}{%- endif %}"
     "{{- '<|eot_id|>' }}"
     "{%- endif %}"
     "{%- for message in messages %}"
     "{%- if tools and loop.first and message['role'] == 'system' %}"
     "{%- elif ns.in_user and loop.index0 == ns.first %}"
     "{{- '<|start_header_id|>user<|end_header_id|>\\n\\nOf the functions below, call the one that answers "
     "the request best, with the arguments it needs. " LLAMA3_TOOLS_SAY "' }}"
     "{%- for t in tools %}{{- t | tojson(indent=4) + '\\n\\n' }}{%- endfor %}"
     "{{- message['content'] | trim + '<|eot_id|>' }}"
     "{%- elif message['role'] == 'assistant' and message['tool_calls'] %}"
     "{%- if message['tool_calls'] | length != 1 %}"
     "{{- raise_exception('The llama3 template writes one tool call per assistant message') }}"
     "{%- endif %}"
     "{%- set call = message['tool_calls'][0] %}" SET_FN
     "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n{\"name\": ' + fn['name'] | tojson + "
     "', \"parameters\": ' + (fn['arguments'] if fn['arguments'] is string else fn['arguments'] | tojson) + "
     "'}<|eot_id|>' }}"
     "{%- elif message['role'] == 'tool' or message['role'] == 'ipython' %}"
     "{{- '<|start_header_id|>ipython<|end_header_id|>\\n\\n' + (message['content'] if message['content'] is "
     "string else message['content'] | tojson) + '<|eot_id|>' }}"
     "{%- else %}"
     "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
     "{%- endif %}"
     "{%- endfor %}"
     "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"},
    {"gemma",
     "{{- bos_token }}"
     "{%- set ns = namespace(system='', tools='') %}"
     "{%- if tools %}"
     "{%- set ns.tools = '" HERMES_TOOLS_HEAD "' %}"
     "{%- for tool in tools %}{%- set ns.tools = ns.tools + '\\n' + tool | tojson %}{%- endfor %}"
     "{%- set ns.tools = ns.tools + '" HERMES_TOOLS_TAIL "\\n\\n' %}"
     "{%- endif %}"
     "{%- for message in messages %}"
     "{%- if message['role'] == 'system' %}{%- set ns.system = message['content'] | trim + '\\n\\n' %}"
     "{%- elif message['role'] == 'tool' %}"
     "{%- if loop.first or loop.previtem['role'] != 'tool' %}{{- '<start_of_turn>user' }}{%- endif %}"
     "{{- '\\n<tool_response>\\n' + message['content'] + '\\n</tool_response>' }}"
     "{%- if loop.last or loop.nextitem['role'] != 'tool' %}{{- '<end_of_turn>\\n' }}{%- endif %}"
     "{%- elif message['role'] == 'assistant' and message['tool_calls'] %}"
     "{{- '<start_of_turn>model\\n' }}"
     "{%- if message['content'] %}{{- message['content'] | trim + '\\n' }}{%- endif %}"
     "{%- for call in message['tool_calls'] %}" SET_FN
     "{{- ('\\n' if not loop.first else '') + " HERMES_CALL " }}"
     "{%- endfor %}"
     "{{- '<end_of_turn>\\n' }}"
     "{%- else %}"
     "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
     "{{- '<start_of_turn>' + role + '\\n' + (ns.system + ns.tools if role == 'user' else '') + message['content'] | trim + '<end_of_turn>\\n' }}"
     "{%- if role == 'user' %}{%- set ns.system = '' %}{%- set ns.tools = '' %}{%- endif %}"
     "{%- endif %}"
     "{%- endfor %}"
     "{%- if add_generation_prompt %}{{- '<start_of_turn>model\\n' }}{%- endif %}"},
    {"mistral",
     "{{- bos_token }}"
     "{%- set ns = namespace(system='', last_user=-1) %}"
     "{%- if tools %}"
     "{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.last_user = loop.index0 %}{%- endif %}{%- endfor %}"
     "{%- if ns.last_user < 0 %}{{- '[AVAILABLE_TOOLS]' + tools | tojson + '[/AVAILABLE_TOOLS]' }}{%- endif %}"
     "{%- endif %}"
     "{%- for message in messages %}"
     "{%- if message['role'] == 'system' %}{%- set ns.system = message['content'] + '\\n\\n' %}"
     "{%- elif message['role'] == 'user' %}"
     "{%- if loop.index0 == ns.last_user %}{{- '[AVAILABLE_TOOLS]' + tools | tojson + '[/AVAILABLE_TOOLS]' }}{%- endif %}"
     "{{- '[INST] ' + ns.system + message['content'] + ' [/INST]' }}{%- set ns.system = '' %}"
     "{%- elif message['role'] == 'assistant' and message['tool_calls'] %}"
     "{%- if message['content'] %}{{- message['content'] }}{%- endif %}"
     "{{- '[TOOL_CALLS][' }}"
     "{%- for call in message['tool_calls'] %}" SET_FN
     "{{- '{\"name\": ' + fn['name'] | tojson + ', \"arguments\": ' + "
     "(fn['arguments'] if fn['arguments'] is string else fn['arguments'] | tojson) }}"
     "{%- if call['id'] is defined and call['id'] is not none %}{{- ', \"id\": ' + call['id'] | tojson }}{%- endif %}"
     "{{- '}' + (', ' if not loop.last else ']') }}"
     "{%- endfor %}"
     "{{- eos_token }}"
     "{%- elif message['role'] == 'assistant' %}{{- message['content'] + eos_token }}"
     "{%- elif message['role'] == 'tool' %}"
     "{%- set content = message['content'] %}"
     "{{- '[TOOL_RESULTS]{\"content\": ' + (content if content is string and (content.startswith('{') or "
     "content.startswith('[')) else content | tojson) }}"
     "{%- if message['tool_call_id'] is defined and message['tool_call_id'] is not none %}"
     "{{- ', \"call_id\": ' + message['tool_call_id'] | tojson }}{%- endif %}"
     "{{- '}[/TOOL_RESULTS]' }}"
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

/* Reads a template file of at most 4 MiB into a NUL-terminated buffer. */
static em_status read_template_file(const char *path, char **out) {
    FILE *f = fopen(path, "rb");
    if (!f) return em_error(EM_ERR_INVALID_ARG, "chat template %s: neither a built-in (chatml, llama2, llama3, "
                            "gemma, mistral) nor a readable file", path);
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    em_status st = EM_OK;
    while (buf) {
        if (n + 1 == cap) {
            if (cap >= (4u << 20)) {
                st = em_error(EM_ERR_INVALID_ARG, "chat template %s: larger than 4 MiB", path);
                break;
            }
            char *grown = realloc(buf, cap * 2);
            if (!grown) break;
            buf = grown;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0) break;
    }
    if (st == EM_OK && !buf) st = em_error(EM_ERR_NOMEM, "chat template %s: out of memory", path);
    if (st == EM_OK && ferror(f)) st = em_error(EM_ERR_IO, "chat template %s: read error", path);
    fclose(f);
    if (st != EM_OK) {
        free(buf);
        return st;
    }
    buf[n] = 0;
    *out = buf;
    return EM_OK;
}

em_status em_chat_template_select(const em_model *model, const char *name_or_file, char **source) {
    if (!source) return em_error(EM_ERR_INVALID_ARG, "chat template: no output");
    if (!name_or_file) return em_chat_template_for_model(model, source, NULL);
    const char *builtin = em_chat_builtin(name_or_file);
    if (!builtin) return read_template_file(name_or_file, source);
    if (!(*source = strdup(builtin))) return em_error(EM_ERR_NOMEM, "chat template: out of memory");
    return EM_OK;
}

bool em_chat_starts_with_bos(const em_vocab *vocab, const char *text) {
    em_token bos = vocab ? em_vocab_bos(vocab) : -1;
    const char *bos_text = bos >= 0 ? em_vocab_text(vocab, bos) : NULL;
    return bos_text && bos_text[0] && text && !strncmp(text, bos_text, strlen(bos_text));
}
