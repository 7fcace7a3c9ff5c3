/*
 * errors.h - every error the API returns, in OpenAI's shape:
 *   {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}
 */
#ifndef EM_SERVER_ERRORS_H
#define EM_SERVER_ERRORS_H

#include <jansson.h>
#include <stdbool.h>

/* An error on its way to the client. */
typedef struct em_api_error {
    int http;          /* 400, 401, 404, 405, 413, 429, 500, 503        */
    char param[64];    /* the request field at fault, "" for none        */
    char code[32];     /* a specific code ("context_length_exceeded"), "" for the status's */
    char message[512];
} em_api_error;

/* Fills err and returns false, so validators can `return api_fail(...)`. */
bool em_api_fail(em_api_error *err, int http, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* em_api_fail for a request the shutdown refused or cut short: a 503
 * with the code shutting_down (which a client may retry elsewhere). */
bool em_api_fail_shutdown(em_api_error *err, const char *message);

/* The one mapping from an HTTP status to OpenAI's error type and code,
 * and the JSON body (new reference; NULL when memory runs out). */
json_t *em_api_error_json(const em_api_error *err);

#endif
