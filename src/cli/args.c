/*
 * args.c - what every subcommand needs to read its arguments and inputs:
 * strict number parsing (the whole string, in range, or a usage error)
 * and reading a whole file.
 */
#include "cli/cli.h"

#include <string.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

bool em_cli_parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool em_cli_parse_double(const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool em_cli_parse_float(const char *s, float *out) {
    double v;
    if (!em_cli_parse_double(s, -3.4e38, 3.4e38, &v)) return false;
    *out = (float)v;
    return true;
}

bool em_cli_parse_kv_type(const char *s, em_type *out) {
    static const struct { const char *name; em_type type; } kinds[] = {
        {"f16", EM_TYPE_F16}, {"f32", EM_TYPE_F32}, {"q8_0", EM_TYPE_Q8_0}};
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
        if (!strcmp(s, kinds[i].name)) {
            *out = kinds[i].type;
            return true;
        }
    return false;
}

const char *em_cli_kv_type_name(em_type t) {
    return t == EM_TYPE_F32 ? "f32" : t == EM_TYPE_Q8_0 ? "q8_0" : "f16";
}

char *em_cli_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "ember: cannot open %s\n", path);
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        cap *= 2;
        char *nb = realloc(buf, cap + 1);
        if (!nb) {
            free(buf);
            buf = NULL;
        }
        buf = nb;
    }
    int err = ferror(f);
    fclose(f);
    if (!buf || err) {
        free(buf);
        fprintf(stderr, "ember: cannot read %s\n", path);
        return NULL;
    }
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

