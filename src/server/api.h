/*
 * api.h - the OpenAI request bodies: parsing and validation.
 *
 * Unknown fields are ignored; a known field with a wrong type or value is
 * a 400 that names it.  Pointers into the body stay valid while the
 * request lives (em_api_request_free releases the body).
 */
#ifndef EM_SERVER_API_H
#define EM_SERVER_API_H

#include "engine/engine.h"
#include "server/errors.h"

#include <jansson.h>

typedef enum em_api_kind { EM_API_COMPLETIONS, EM_API_CHAT, EM_API_EMBEDDINGS } em_api_kind;

typedef enum em_tool_choice {
    EM_TOOL_CHOICE_NONE,     /* no tools, or tool_choice "none": plain text             */
    EM_TOOL_CHOICE_AUTO,     /* the model may call a tool                               */
    EM_TOOL_CHOICE_REQUIRED, /* the grammar forces a call to one of the tools           */
    EM_TOOL_CHOICE_NAMED     /* the grammar forces a call to tool_name                  */
} em_tool_choice;

typedef enum em_format { EM_FORMAT_TEXT, EM_FORMAT_JSON_OBJECT, EM_FORMAT_JSON_SCHEMA } em_format;

/* What validation needs to know about the server. */
typedef struct em_api_limits {
    const char *model_id;
    int32_t n_vocab;
    int32_t n_parallel;
    int32_t n_embd;
} em_api_limits;

#define EM_API_MAX_DEPTH 64 /* JSON nesting a request may have */

typedef struct em_api_request {
    em_api_kind kind;
    json_t *body;                 /* the whole parsed request (owned)                  */
    int32_t max_tokens;           /* -1: absent (generate until the context is full)  */
    const char *max_tokens_field; /* the field that set it, for error messages         */
    int32_t n;                    /* choices                                           */
    em_sampler_params sampling;   /* logit_bias points at bias                         */
    em_logit_bias *bias;          /* [sampling.n_logit_bias]                           */
    const char *stop[EM_ENGINE_MAX_STOP]; /* borrowed from body                        */
    int32_t n_stop;
    bool logprobs;                /* report logprobs                                   */
    int32_t top_logprobs;         /* alternatives per token when logprobs              */
    bool stream;
    bool include_usage;           /* stream_options.include_usage                      */
    bool echo;                    /* completions: the prompt precedes the text         */
    json_t *prompt;               /* completions: string, [string], [int] (borrowed)   */
    json_t *prompts;              /* completions: array of strings or token-id arrays (owned) */
    json_t *messages;             /* chat: validated array (borrowed)                  */
    json_t *tools;                /* chat: array or NULL (borrowed)                    */
    em_tool_choice tool_choice;
    const char *tool_name;        /* EM_TOOL_CHOICE_NAMED                                    */
    em_format format;
    json_t *schema;               /* EM_FORMAT_JSON_SCHEMA (borrowed)                  */
    json_t *input;                /* embeddings: string, [string], [int], [[int]]      */
    bool base64;                  /* embeddings: encoding_format "base64"              */
} em_api_request;

/* Parses and validates a body; on failure err says what and false is
 * returned (nothing to free). */
bool em_api_parse(em_api_kind kind, const char *body, size_t len, const em_api_limits *lim,
                  em_api_request *out, em_api_error *err);
void em_api_request_free(em_api_request *r);

#endif
