/*
 * fuzz_request.c - libFuzzer target: arbitrary bytes as the body of each
 * of ember serve's POST endpoints (completions, chat, embeddings).
 *
 * Beyond "no crash, no leak, no out-of-bounds access" it checks the
 * parser's contract: a refusal has an HTTP status the API uses and a
 * message, its OpenAI-shaped error body serializes; an accepted request
 * has its fields within the documented bounds.
 */
#include "server/api.h"
#include "server/errors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check(bool cond) {
    if (!cond) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const em_api_limits lim = {.model_id = "m", .n_vocab = 512, .n_parallel = 4, .n_embd = 64};
    for (int kind = EM_API_COMPLETIONS; kind <= EM_API_EMBEDDINGS; kind++) {
        em_api_request r;
        em_api_error err = {0};
        if (!em_api_parse((em_api_kind)kind, (const char *)data, size, &lim, &r, &err)) {
            check(err.http == 400 || err.http == 404 || err.http == 500);
            check(err.message[0] != '\0');
            json_t *body = em_api_error_json(&err);
            char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
            check(text != NULL);
            free(text);
            json_decref(body);
            continue;
        }
        check(json_is_object(r.body));
        if (kind == EM_API_EMBEDDINGS) {
            check(r.input != NULL);
        } else {
            check(r.n >= 1 && r.n <= lim.n_parallel);
            check(r.n_stop >= 0 && r.n_stop <= EM_ENGINE_MAX_STOP);
            for (int32_t i = 0; i < r.n_stop; i++) check(r.stop[i] && r.stop[i][0]);
            check(r.top_logprobs >= 0 && r.top_logprobs <= EM_ENGINE_MAX_TOP_LOGPROBS);
            check(r.max_tokens == -1 || r.max_tokens >= 1);
            for (int32_t i = 0; i < r.sampling.n_logit_bias; i++)
                check(r.sampling.logit_bias[i].token >= 0 && r.sampling.logit_bias[i].token < lim.n_vocab);
            if (kind == EM_API_CHAT) check(json_is_array(r.messages) && json_array_size(r.messages) > 0);
            else check(json_is_array(r.prompts) && json_array_size(r.prompts) > 0);
            if (r.format == EM_FORMAT_JSON_SCHEMA) check(r.schema != NULL);
            if (r.tool_choice == EM_TOOL_CHOICE_NAMED) check(r.tool_name && r.tools);
        }
        em_api_request_free(&r);
    }
    return 0;
}
