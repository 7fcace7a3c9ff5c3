/*
 * chat.h - chat templates: the model's `tokenizer.chat_template` (a Jinja
 * program) rendered by ember's own Jinja-subset interpreter, built-in
 * fallback templates, and the parser that turns a model's tool-call text
 * back into OpenAI `tool_calls`.
 *
 * Internal API: used by the server and the CLI.  Messages and tools are
 * jansson values in the OpenAI request shape; the template sees them as
 * Python-like lists and dicts, exactly as Hugging Face's transformers
 * passes them to jinja2 (trim_blocks and lstrip_blocks on).
 */
#ifndef EM_CHAT_H
#define EM_CHAT_H

#include "ember.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct em_chat_template em_chat_template;

/* Bounds on one render, so that a hostile template or conversation cannot
 * take unbounded memory, time or stack.  Zero fields take the defaults. */
typedef struct em_chat_limits {
    size_t max_output;    /* bytes of rendered text (default 16 MiB)          */
    size_t max_memory;    /* bytes of interpreter values (default 256 MiB)    */
    uint64_t max_steps;   /* statements + loop iterations (default 10M)       */
    int max_depth;        /* nested evaluation / macro recursion (default 500) */
} em_chat_limits;

/* Parses a template.  Syntax errors are EM_ERR_FORMAT with a message that
 * names the line and column (em_last_error). */
em_status em_chat_template_init(em_chat_template **out, const char *source);
void em_chat_template_free(em_chat_template *t);
/* The source the template was parsed from (NUL-terminated). */
const char *em_chat_template_source(const em_chat_template *t);

/* Renders a conversation.  messages: a JSON array of message objects;
 * tools: a JSON array or NULL (then `tools` is undefined in the template);
 * bos_token/eos_token: NULL reads as "".  A parsed template is read-only
 * while it renders, so threads may render one template at once.  *out is malloc'd, NUL-terminated.
 * A template that calls raise_exception(msg), or fails at run time (an
 * undefined value used, a type error, a limit reached) returns
 * EM_ERR_INVALID_ARG with the message; a failed allocation EM_ERR_NOMEM. */
em_status em_chat_render(const em_chat_template *t, const json_t *messages,
                         const json_t *tools, bool add_generation_prompt,
                         const char *bos_token, const char *eos_token, char **out);

/* Same, with extra template variables (a JSON object whose members become
 * globals, e.g. "documents", "builtin_tools", "date_string"; may be NULL)
 * and explicit limits (NULL for the defaults). */
em_status em_chat_render_ex(const em_chat_template *t, const json_t *messages,
                            const json_t *tools, bool add_generation_prompt,
                            const char *bos_token, const char *eos_token,
                            const json_t *extra, const em_chat_limits *limits,
                            char **out);

/* Jinja source of a built-in template: "chatml", "llama2", "llama3",
 * "gemma", "mistral"; NULL for another name. */
const char *em_chat_builtin(const char *name);

/* The template a model should use: its GGUF `tokenizer.chat_template`
 * when present, else a built-in chosen from the architecture and
 * vocabulary (chatml when nothing fits).  *source is malloc'd; *name (may
 * be NULL) is "model" or the built-in's name. */
em_status em_chat_template_for_model(const em_model *model, char **source,
                                     const char **name);

/* The template a command line names: a built-in name ("chatml", ...), a
 * Jinja file (at most 4 MiB), or NULL for the model's own (as
 * em_chat_template_for_model picks it).  *source is malloc'd.  A name
 * that is neither a built-in nor a readable file is EM_ERR_INVALID_ARG. */
em_status em_chat_template_select(const em_model *model, const char *name_or_file, char **source);

/* True when rendered text already begins with the vocabulary's BOS text,
 * so the tokenizer must not add another. */
bool em_chat_starts_with_bos(const em_vocab *vocab, const char *text);

/* Tool-call formats a template family emits. */
typedef enum em_tool_family {
    EM_TOOLS_NONE = 0,      /* plain text: no tool calls are parsed          */
    EM_TOOLS_HERMES,        /* Hermes / Qwen 2.5: <tool_call>{json}</tool_call> */
    EM_TOOLS_LLAMA3,        /* Llama 3.x: {"name":..,"parameters":..}, <|python_tag|> */
    EM_TOOLS_MISTRAL,       /* Mistral: [TOOL_CALLS][{...}, ...]             */
    EM_TOOLS_FUNCTIONARY_31,/* Functionary v3.1: <function=name>{..}</function> */
    EM_TOOLS_FUNCTIONARY_32,/* Functionary v3.2: >>>name\n{..}                */
    EM_TOOLS_FIREFUNCTION,  /* Firefunction v2: functools[{...}]             */
    EM_TOOLS_COMMAND_R,     /* Command R(+): Action: ```json [...]```, R7B: <|START_ACTION|> */
    EM_TOOLS_DEEPSEEK_R1    /* DeepSeek R1: <｜tool▁calls▁begin｜>...        */
} em_tool_family;

/* Detects the family from a template's source, or from a family name
 * ("hermes", "qwen", "llama3", "mistral", "functionary-v3.1",
 * "functionary-v3.2", "firefunction", "command-r", "deepseek-r1"). */
em_tool_family em_chat_tool_family(const char *template_source_or_family);
const char *em_chat_tool_family_name(em_tool_family f);

/* Where a tool call may begin in an answer that is still growing: the
 * offset of the first byte of text[0..n) that begins a call in the
 * family's syntax, or that might once more text arrives (a partial
 * marker at the end).  text[0..offset) is content that no later text turns
 * into a call, so a stream may send it at once; n when nothing is held.
 * Families whose calls cannot be told from text until the answer ends
 * (a Llama 3 answer that opens with '{', Functionary v3.2's recipient
 * lines) hold from the start. */
size_t em_chat_tool_call_start(em_tool_family family, const char *text, size_t n);

/* Parses the tool calls out of generated text.  *tool_calls gets a JSON
 * array in the OpenAI shape [{id, type:"function", function:{name,
 * arguments (a JSON string)}}], or NULL when the text holds none;
 * *content gets the remaining text (malloc'd; "" when nothing is left).
 * Text that starts a tool call but does not parse is left as content. */
em_status em_chat_parse_tool_calls(const char *template_source_or_family,
                                   const char *text, json_t **tool_calls,
                                   char **content);

#endif /* EM_CHAT_H */
