/*
 * fuzz_jinja.c - libFuzzer target: arbitrary text parsed and rendered as a
 * chat template over a fixed conversation (system, user, an assistant
 * tool call, a tool result, tools offered), then fed to the tool-call
 * parser of every family.
 *
 * Tight limits keep each input fast; beyond "no crash, no leak, no
 * out-of-bounds access" it checks the contract: success gives a string
 * and no error, failure gives no string, and rendering twice gives the
 * same bytes.
 */
#include "chat/chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *messages, *tools;

static void init_once(void) {
    if (messages) return;
    messages = json_loads(
        "[{\"role\": \"system\", \"content\": \"sys\"},"
        " {\"role\": \"user\", \"content\": \"Hi \\u00e9 \\\"q\\\"\"},"
        " {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"id\": \"call12345\", \"type\": \"function\","
        "   \"function\": {\"name\": \"f\", \"arguments\": \"{\\\"a\\\": 1}\"}}]},"
        " {\"role\": \"tool\", \"tool_call_id\": \"call12345\", \"content\": \"42\"},"
        " {\"role\": \"assistant\", \"content\": \"done\"}]",
        0, NULL);
    tools = json_loads(
        "[{\"type\": \"function\", \"function\": {\"name\": \"f\", \"description\": \"d\","
        "  \"parameters\": {\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\", \"default\": 0.5}},"
        "  \"required\": [\"a\"]}}}]",
        0, NULL);
    if (!messages || !tools) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    init_once();
    char *src = malloc(size + 1);
    if (!src) return 0;
    memcpy(src, data, size);
    src[size] = 0;
    em_chat_template *t = NULL;
    if (em_chat_template_init(&t, src) == EM_OK) {
        em_chat_limits lim = {.max_output = 1 << 20, .max_memory = 64 << 20, .max_steps = 200000, .max_depth = 200};
        char *a = NULL, *b = NULL;
        em_status s1 = em_chat_render_ex(t, messages, tools, true, "<s>", "</s>", NULL, &lim, &a);
        if ((s1 == EM_OK) != (a != NULL)) abort();
        /* strftime_now makes output time-dependent; skip the comparison then. */
        if (s1 == EM_OK && !strstr(src, "strftime_now")) {
            em_status s2 = em_chat_render_ex(t, messages, tools, true, "<s>", "</s>", NULL, &lim, &b);
            if (s2 != EM_OK || strcmp(a, b)) abort();
        }
        if (a) {
            static const char *const families[] = {"hermes", "llama3", "mistral", "functionary-v3.1",
                                                   "functionary-v3.2", "firefunction", "command-r", "deepseek-r1"};
            for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
                json_t *calls = NULL;
                char *content = NULL;
                if (em_chat_parse_tool_calls(families[i], a, &calls, &content) != EM_OK || !content) abort();
                json_decref(calls);
                free(content);
            }
        }
        free(a);
        free(b);
    } else if (t) {
        abort();
    }
    em_chat_template_free(t);
    free(src);
    return 0;
}
