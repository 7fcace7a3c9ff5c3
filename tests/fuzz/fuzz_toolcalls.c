/*
 * fuzz_toolcalls.c - libFuzzer target: arbitrary bytes as a model's answer,
 * parsed for tool calls in the syntax of every template family.
 *
 * The answer is what ember serve parses when a request offers tools, and a
 * prompt can make a model write anything, so the parser faces untrusted
 * text.  fuzz_jinja reaches it only through rendered templates, where
 * "{{", "{%" and "{#" (nested JSON objects) are template syntax; here the
 * text arrives as it is.
 *
 * Beyond "no crash, no leak, no out-of-bounds access" it checks the
 * contract of chat.h: the content is always a string, without calls it is
 * the text unchanged, every call has the OpenAI shape (an id, type
 * "function", a name and arguments that are strings), and the offset where
 * a streamed answer starts to be held is within the text; when nothing is
 * held (the offset is the end), the whole text holds no call, or the
 * stream would already have sent it as content.
 */
#include "chat/chat.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check(bool cond) {
    if (!cond) abort();
}

static void check_calls(const json_t *calls) {
    check(json_is_array(calls) && json_array_size(calls) > 0);
    size_t i;
    json_t *c;
    json_array_foreach(calls, i, c) {
        json_t *fn = json_object_get(c, "function");
        check(json_is_string(json_object_get(c, "id")));
        check(json_is_string(json_object_get(c, "type")));
        check(json_is_string(json_object_get(fn, "name")));
        check(json_is_string(json_object_get(fn, "arguments")));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const families[] = {"none",         "hermes",       "llama3",    "mistral",
                                           "functionary-v3.1", "functionary-v3.2", "firefunction",
                                           "command-r",    "deepseek-r1"};
    /* The parser takes a C string, as the server hands it the answer. */
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    size_t n = strlen(text);
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        json_t *calls = NULL;
        char *content = NULL;
        check(em_chat_parse_tool_calls(families[i], text, &calls, &content) == EM_OK);
        check(content != NULL);
        if (calls) check_calls(calls);
        else check(strcmp(content, text) == 0);
        size_t start = em_chat_tool_call_start(em_chat_tool_family(families[i]), text, n);
        check(start <= n);
        if (start == n) check(calls == NULL);
        json_decref(calls);
        free(content);
    }
    free(text);
    return 0;
}
