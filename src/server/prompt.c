/*
 * prompt.c - chat prompts, tool calls and constrained answers.
 */
#include "server/prompt.h"

#include <stdlib.h>
#include <string.h>

bool em_prompt_render(em_server *s, const em_api_request *req, em_prompt *out, em_api_error *err) {
    (void)s, (void)req, (void)out;
    return em_api_fail(err, 500, NULL, "chat templates are not available in this build");
}

void em_prompt_free(em_prompt *p) {
    free(p->text);
    p->text = NULL;
}

bool em_prompt_parse_tool_calls(const em_prompt *p, const char *text, json_t **calls, json_t **content) {
    (void)p, (void)text;
    *calls = NULL;
    *content = NULL;
    return true;
}

bool em_prompt_constraint(em_server *s, const em_api_request *req, const em_prompt *p, em_constraint *out,
                          em_api_error *err) {
    (void)s, (void)p, (void)out;
    err->http = 0;
    if (req->format != EM_FORMAT_TEXT)
        return em_api_fail(err, 400, "response_format", "constrained decoding is not available in this build");
    return false;
}

void em_prompt_constraint_free(em_constraint *c) { (void)c; }

char *em_prompt_load_template(const em_model *model, const char *name_or_file) {
    (void)model, (void)name_or_file;
    return NULL;
}
