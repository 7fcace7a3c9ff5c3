/*
 * errors.c - the one place where an HTTP status becomes OpenAI's error
 * type and code.
 */
#include "server/errors.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

bool em_api_fail(em_api_error *err, int http, const char *param, const char *fmt, ...) {
    err->http = http;
    snprintf(err->param, sizeof err->param, "%s", param ? param : "");
    err->code[0] = '\0';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return false;
}

json_t *em_api_error_json(const em_api_error *err) {
    const char *type = "invalid_request_error", *code = NULL;
    switch (err->http) {
    case 400: break;
    case 401: code = "invalid_api_key"; break;
    case 404: code = !strcmp(err->param, "model") ? "model_not_found" : "not_found"; break;
    case 405: code = "method_not_allowed"; break;
    case 413: code = "request_too_large"; break;
    case 429: type = "rate_limit_error", code = "queue_full"; break;
    case 503: type = "server_error", code = "queue_full"; break;
    default: type = "server_error"; break;
    }
    if (err->code[0]) code = err->code;
    json_t *e = json_pack("{s:s, s:s, s:o, s:o}", "message", err->message, "type", type, "param",
                          err->param[0] ? json_string(err->param) : json_null(), "code",
                          code ? json_string(code) : json_null());
    return e ? json_pack("{s:o}", "error", e) : NULL;
}
