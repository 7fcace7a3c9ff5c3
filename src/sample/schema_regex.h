/*
 * schema_regex.h - the regular-expression subset of JSON schema's
 * "pattern", compiled into grammar rules (see schema_regex.c for the
 * subset).
 */
#ifndef EM_SAMPLE_SCHEMA_REGEX_H
#define EM_SAMPLE_SCHEMA_REGEX_H

#include "sample/grammar_build.h"

/*
 * Adds rules for the contents of a JSON string (between the quotes, as
 * written in JSON, escapes included) whose decoded text matches pattern.
 * A pattern without a leading '^' or trailing '$' may have any characters
 * before or after its match: any_char is the rule of one JSON string
 * character.  where names the keyword for error messages (a JSON pointer).
 * Returns the rule, or -1 with the error recorded in b
 * (EM_ERR_UNSUPPORTED naming what is not supported).
 */
int32_t em_schema_regex(em_gbuild *b, const char *pattern, size_t len, int32_t any_char,
                        const char *where);

#endif /* EM_SAMPLE_SCHEMA_REGEX_H */
