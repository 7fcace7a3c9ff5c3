/*
 * errors.c - the one place where an HTTP status becomes OpenAI's error
 * type and code.
 */
#include "server/errors.h"

#include <stdarg.h>
#include <stdio.h>

bool em_api_fail(em_api_error *err, int http, const char *param, const char *fmt, ...) {
    err->http = http;
    snprintf(err->param, sizeof err->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return false;
}

json_t *em_api_error_json(const em_api_error *err) {
    const char *type, *code;
    switch (err->http) {
    case 400: type = "invalid_request_error", code = "invalid_value"; break;
    case 401: type = "invalid_request_error", code = "invalid_api_key"; break;
    case 404: type = "invalid_request_error", code = err->param[0] ? "model_not_found" : "not_found"; break;
    case 405: type = "invalid_request_error", code = "method_not_allowed"; break;
    case 413: type = "invalid_request_error", code = "request_too_large"; break;
    case 429: type = "rate_limit_error", code = "rate_limit_exceeded"; break;
    case 503: type = "server_error", code = "server_unavailable"; break;
    default: type = "server_error", code = "internal_error"; break;
    }
    json_t *e = json_pack("{s:s, s:s, s:o, s:s}", "message", err->message, "type", type, "param",
                          err->param[0] ? json_string(err->param) : json_null(), "code", code);
    return e ? json_pack("{s:o}", "error", e) : NULL;
}
