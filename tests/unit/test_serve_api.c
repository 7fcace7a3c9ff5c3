/*
 * test_serve_api.c - ember serve's request validation (src/server/api.c)
 * and its one error mapping (src/server/errors.c): accepted bodies give
 * the documented values and defaults, refused ones the HTTP status and
 * the field they name.
 */
#include "test.h"

#include "server/api.h"
#include "server/errors.h"

static const em_api_limits lim = {.model_id = "stories260K", .n_vocab = 512, .n_parallel = 4, .n_embd = 64};

/* Parses a body that must be refused; checks the status and field. */
static void refused(em_api_kind kind, const char *body, int http, const char *param) {
    em_api_request r;
    em_api_error err = {0};
    bool ok = em_api_parse(kind, body, strlen(body), &lim, &r, &err);
    CHECK_MSG(!ok, "accepted: %s", body);
    if (ok) {
        em_api_request_free(&r);
        return;
    }
    CHECK_MSG(err.http == http, "%s: status %d, want %d (%s)", body, err.http, http, err.message);
    CHECK_MSG(!strcmp(err.param, param ? param : ""), "%s: param '%s', want '%s'", body, err.param,
              param ? param : "");
    CHECK(err.message[0]);
}

static void test_defaults(void) {
    em_api_request r;
    em_api_error err = {0};
    const char *b = "{\"model\":\"stories260K\",\"prompt\":\"hi\",\"user\":\"ignored\",\"whatever\":[1,2]}";
    CHECK(em_api_parse(EM_API_COMPLETIONS, b, strlen(b), &lim, &r, &err));
    CHECK(r.max_tokens == 16); /* completions: OpenAI's default */
    CHECK(r.n == 1 && r.n_stop == 0 && !r.logprobs && !r.stream && !r.echo);
    CHECK(r.sampling.temp == 1.0f && r.sampling.top_p == 1.0f);
    CHECK(json_array_size(r.prompts) == 1);
    em_api_request_free(&r);

    b = "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":5,"
        "\"max_completion_tokens\":7,\"stop\":\"END\",\"logprobs\":true,\"top_logprobs\":3,\"seed\":11,"
        "\"logit_bias\":{\"7\":-100,\"9\":2.5},\"n\":2,\"stream\":true,\"stream_options\":{\"include_usage\":true}}";
    CHECK(em_api_parse(EM_API_CHAT, b, strlen(b), &lim, &r, &err));
    CHECK(r.max_tokens == 7); /* max_completion_tokens wins */
    CHECK(!strcmp(r.max_tokens_field, "max_completion_tokens"));
    CHECK(r.n_stop == 1 && !strcmp(r.stop[0], "END"));
    CHECK(r.logprobs && r.top_logprobs == 3 && r.sampling.seed == 11 && r.n == 2);
    CHECK(r.stream && r.include_usage);
    CHECK(r.sampling.n_logit_bias == 2);
    for (int32_t i = 0; i < r.sampling.n_logit_bias; i++) {
        if (r.sampling.logit_bias[i].token == 7) CHECK(isinf(r.sampling.logit_bias[i].bias));
        else CHECK(r.sampling.logit_bias[i].token == 9 && r.sampling.logit_bias[i].bias == 2.5f);
    }
    CHECK(r.max_tokens > 0 && r.tool_choice == EM_TOOL_CHOICE_NONE && r.format == EM_FORMAT_TEXT);
    em_api_request_free(&r);

    b = "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"w?\"}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get\",\"parameters\":{\"type\":\"object\"}}}],"
        "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"get\"}},"
        "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"s\",\"schema\":{\"type\":\"object\"}}}}";
    CHECK(em_api_parse(EM_API_CHAT, b, strlen(b), &lim, &r, &err));
    CHECK(r.max_tokens == -1); /* chat: to the end of the context */
    CHECK(r.tool_choice == EM_TOOL_CHOICE_NAMED && !strcmp(r.tool_name, "get"));
    CHECK(r.format == EM_FORMAT_JSON_SCHEMA && json_is_object(r.schema));
    em_api_request_free(&r);

    b = "{\"model\":\"stories260K\",\"input\":[\"a\",[1,2]],\"encoding_format\":\"base64\"}";
    CHECK(em_api_parse(EM_API_EMBEDDINGS, b, strlen(b), &lim, &r, &err));
    CHECK(r.base64 && json_array_size(r.input) == 2);
    em_api_request_free(&r);
}

static void test_refusals(void) {
    refused(EM_API_COMPLETIONS, "{\"model\":\"stories260K\"", 400, NULL);
    refused(EM_API_COMPLETIONS, "[1]", 400, NULL);
    refused(EM_API_COMPLETIONS, "{\"model\":\"stories260K\",\"prompt\":\"\xff\"}", 400, NULL);
    refused(EM_API_COMPLETIONS, "{\"prompt\":\"x\"}", 400, "model");
    refused(EM_API_COMPLETIONS, "{\"model\":\"gpt-4\",\"prompt\":\"x\"}", 404, "model");
    refused(EM_API_COMPLETIONS, "{\"model\":\"stories260K\"}", 400, "prompt");
    refused(EM_API_COMPLETIONS, "{\"model\":\"stories260K\",\"prompt\":[1,512]}", 400, "prompt");
    refused(EM_API_COMPLETIONS, "{\"model\":\"stories260K\",\"prompt\":\"x\",\"suffix\":\"y\"}", 400, "suffix");
    refused(EM_API_COMPLETIONS, "{\"model\":\"stories260K\",\"prompt\":\"x\",\"temperature\":\"hot\"}", 400,
            "temperature");
    refused(EM_API_COMPLETIONS, "{\"model\":\"stories260K\",\"prompt\":\"x\",\"temperature\":2.5}", 400, "temperature");
    refused(EM_API_COMPLETIONS, "{\"model\":\"stories260K\",\"prompt\":\"x\",\"top_p\":-0.1}", 400, "top_p");
    refused(EM_API_COMPLETIONS, "{\"model\":\"stories260K\",\"prompt\":\"x\",\"max_tokens\":0}", 400, "max_tokens");
    refused(EM_API_COMPLETIONS, "{\"model\":\"stories260K\",\"prompt\":\"x\",\"max_tokens\":1.5}", 400, "max_tokens");
    refused(EM_API_COMPLETIONS, "{\"model\":\"stories260K\",\"prompt\":\"x\",\"n\":5}", 400, "n");
    refused(EM_API_COMPLETIONS, "{\"model\":\"stories260K\",\"prompt\":\"x\",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}",
            400, "stop");
    refused(EM_API_COMPLETIONS, "{\"model\":\"stories260K\",\"prompt\":\"x\",\"stop\":7}", 400, "stop");
    refused(EM_API_COMPLETIONS, "{\"model\":\"stories260K\",\"prompt\":\"x\",\"logprobs\":6}", 400, "logprobs");
    refused(EM_API_COMPLETIONS, "{\"model\":\"stories260K\",\"prompt\":\"x\",\"logit_bias\":{\"abc\":1}}", 400,
            "logit_bias");
    refused(EM_API_COMPLETIONS, "{\"model\":\"stories260K\",\"prompt\":\"x\",\"logit_bias\":{\"3\":101}}", 400,
            "logit_bias");
    refused(EM_API_COMPLETIONS, "{\"model\":\"stories260K\",\"prompt\":\"x\",\"stream\":1}", 400, "stream");
    refused(EM_API_COMPLETIONS, "{\"model\":\"stories260K\",\"prompt\":\"x\",\"stream_options\":{\"include_usage\":2}}",
            400, "stream_options.include_usage");
    refused(EM_API_CHAT, "{\"model\":\"stories260K\"}", 400, "messages");
    refused(EM_API_CHAT, "{\"model\":\"stories260K\",\"messages\":[]}", 400, "messages");
    refused(EM_API_CHAT, "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
                         "{\"role\":\"bot\",\"content\":\"b\"}]}",
            400, "messages[1].role");
    refused(EM_API_CHAT, "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\"}]}", 400, "messages[0].content");
    refused(EM_API_CHAT,
            "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}",
            400, "messages[0].content");
    refused(EM_API_CHAT, "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"tool\",\"content\":\"3\"}]}", 400,
            "messages[0].tool_call_id");
    refused(EM_API_CHAT,
            "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":2}",
            400, "top_logprobs");
    refused(EM_API_CHAT,
            "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"required\"}",
            400, "tool_choice");
    refused(EM_API_CHAT,
            "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"x\"}]}",
            400, "tools[0]");
    refused(EM_API_CHAT,
            "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
            "\"response_format\":{\"type\":\"xml\"}}",
            400, "response_format.type");
    refused(EM_API_CHAT,
            "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
            "\"response_format\":{\"type\":\"json_schema\"}}",
            400, "response_format.json_schema.schema");
    refused(EM_API_EMBEDDINGS, "{\"model\":\"stories260K\",\"input\":\"\"}", 400, "input");
    refused(EM_API_EMBEDDINGS, "{\"model\":\"stories260K\",\"input\":\"a\",\"dimensions\":8}", 400, "dimensions");
    refused(EM_API_EMBEDDINGS, "{\"model\":\"stories260K\",\"input\":\"a\",\"encoding_format\":\"hex\"}", 400,
            "encoding_format");

    /* 65 levels of nesting in an ignored field. */
    char deep[256] = "{\"model\":\"stories260K\",\"prompt\":\"x\",\"junk\":";
    size_t n = strlen(deep);
    for (int i = 0; i < 65; i++) deep[n++] = '[';
    for (int i = 0; i < 65; i++) deep[n++] = ']';
    deep[n++] = '}';
    deep[n] = '\0';
    refused(EM_API_COMPLETIONS, deep, 400, NULL);
}

static void test_error_shape(void) {
    static const struct { int http; const char *type, *code; } want[] = {
        {400, "invalid_request_error", NULL},  {401, "invalid_request_error", "invalid_api_key"},
        {405, "invalid_request_error", "method_not_allowed"}, {413, "invalid_request_error", "request_too_large"},
        {503, "server_error", "queue_full"},   {500, "server_error", NULL},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        em_api_error err;
        em_api_fail(&err, want[i].http, i == 0 ? "temperature" : NULL, "message %zu", i);
        json_t *j = em_api_error_json(&err);
        json_t *e = json_object_get(j, "error");
        CHECK(e && !strcmp(json_string_value(json_object_get(e, "type")), want[i].type));
        json_t *code = json_object_get(e, "code");
        if (want[i].code) CHECK(json_is_string(code) && !strcmp(json_string_value(code), want[i].code));
        else CHECK(json_is_null(code));
        CHECK(json_is_string(json_object_get(e, "message")));
        if (i == 0) CHECK(!strcmp(json_string_value(json_object_get(e, "param")), "temperature"));
        else CHECK(json_is_null(json_object_get(e, "param")));
        json_decref(j);
    }
    em_api_error err;
    em_api_fail(&err, 404, "model", "no such model");
    json_t *j = em_api_error_json(&err);
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(j, "error"), "code")), "model_not_found"));
    json_decref(j);
    em_api_fail(&err, 400, "max_tokens", "too long");
    snprintf(err.code, sizeof err.code, "context_length_exceeded");
    j = em_api_error_json(&err);
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(j, "error"), "code")), "context_length_exceeded"));
    json_decref(j);
}

/* A body whose bad part is not UTF-8 (jansson quotes it in its message)
 * still gets a JSON error body, the stray bytes shown as '?'; a message
 * cut inside a character by the buffer's end, too. */
static void test_error_utf8(void) {
    static const char body[] = "{\"model\":\"m\",\"prompt\":\"x\",\"\\\xdf\x80\xa0\x8b\":0}";
    em_api_request r;
    em_api_error err = {0};
    CHECK(!em_api_parse(EM_API_COMPLETIONS, body, sizeof body - 1, &lim, &r, &err));
    json_t *j = em_api_error_json(&err);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    CHECK_MSG(text != NULL, "no JSON error body for: %s", err.message);
    free(text);
    json_decref(j);
    em_api_fail(&err, 400, "f\xe2\x82", "bad \xff byte and a cut character \xe2\x82");
    j = em_api_error_json(&err);
    text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    CHECK(text && strstr(text, "bad ? byte and a cut character ??") && strstr(text, "\"param\":\"f??\""));
    free(text);
    json_decref(j);
}

int main(void) {
    test_defaults();
    test_refusals();
    test_error_shape();
    test_error_utf8();
    TEST_END();
}
