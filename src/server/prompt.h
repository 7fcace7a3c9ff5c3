/*
 * prompt.h - from a chat request to the prompt text and back: rendering
 * the messages (and tools) through the chat template, parsing tool calls
 * out of the answer, and the grammar that constrains the answer
 * (response_format, forced tool calls).
 */
#ifndef EM_SERVER_PROMPT_H
#define EM_SERVER_PROMPT_H

#include "server/internal.h"

typedef struct em_prompt {
    char *text;       /* the rendered conversation, NUL-terminated            */
    bool add_bos;     /* the template did not write BOS itself                */
    bool forced_tool; /* the grammar forces {"name", "arguments"}: the whole  */
                      /* answer is one call                                   */
    const char *tool_syntax; /* template source for the tool-call parser      */
} em_prompt;

/* Renders a chat request's messages and tools. */
bool em_prompt_render(em_server *s, const em_api_request *req, em_prompt *out, em_api_error *err);
void em_prompt_free(em_prompt *p);

/* Splits a finished answer into tool calls (OpenAI's tool_calls array,
 * NULL or empty for none; the caller gives each call its id) and the
 * remaining content (a JSON string or NULL).  False when memory runs out. */
bool em_prompt_parse_tool_calls(const em_prompt *p, const char *text, json_t **calls, json_t **content);

/* The constraint a request asks for.  True with *out filled when there is
 * one; false with err->http == 0 when the answer is free text, and false
 * with err set when the request's schema cannot be compiled. */
bool em_prompt_constraint(em_server *s, const em_api_request *req, em_prompt *p, em_constraint *out,
                          em_api_error *err);
/* Takes one more reference to a constraint's grammar (one per engine
 * request it is submitted with; the engine releases it). */
void em_prompt_retain(em_constraint *c);
/* Drops the server's own reference to a constraint's grammar. */
void em_prompt_constraint_free(em_constraint *c);

/* Loads the chat template named on the command line (a built-in name or a
 * Jinja file; NULL: the model's own or a fallback) and the token trie. */
em_status em_prompt_setup(em_server *s, const char *name_or_file);
void em_prompt_teardown(em_server *s);

#endif
