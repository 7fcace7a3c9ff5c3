/*
 * errors.c - the one place where an HTTP status becomes OpenAI's error
 * type and code.
 */
#include "server/errors.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The length of the well-formed UTF-8 character at s (RFC 3629: no
 * overlong forms, no surrogates, nothing past U+10FFFF), 0 if there is
 * none. */
static int utf8_char(const unsigned char *s) {
    const unsigned c = s[0];
    if (c < 0x80) return 1;
    int n;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) n = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) n = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (int i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return n;
}

/* Messages quote the client's bytes (a field name, jansson's "near ..."),
 * which need not be UTF-8, nor whole after truncation; JSON strings must
 * be, so every byte that is not part of a well-formed character becomes
 * '?'.  In place: the text never grows. */
static void utf8_sanitize(char *text) {
    unsigned char *s = (unsigned char *)text;
    while (*s) {
        const int n = utf8_char(s);
        if (n == 0) *s++ = '?';
        else s += n;
    }
}

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

bool em_api_fail_shutdown(em_api_error *err, const char *message) {
    em_api_fail(err, 503, NULL, "%s", message);
    snprintf(err->code, sizeof err->code, "shutting_down");
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
    /* Sanitised copies: the router and em_api_fail alike may have written
     * the client's or an upstream's bytes into the message. */
    char message[sizeof err->message], param[sizeof err->param];
    snprintf(message, sizeof message, "%s", err->message);
    snprintf(param, sizeof param, "%s", err->param);
    utf8_sanitize(message);
    utf8_sanitize(param);
    json_t *e = json_pack("{s:s, s:s, s:o, s:o}", "message", message, "type", type, "param",
                          param[0] ? json_string(param) : json_null(), "code",
                          code ? json_string(code) : json_null());
    return e ? json_pack("{s:o}", "error", e) : NULL;
}
