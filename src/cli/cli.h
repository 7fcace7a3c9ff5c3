/*
 * cli.h - the subcommands of the `ember` program.  Each takes the arguments
 * after its own name (argv[0] is the subcommand) and returns the process
 * exit status: 0 on success, 1 on a runtime error, 2 on a usage error.
 */
#ifndef EM_CLI_H
#define EM_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include "ember.h"

int em_cli_run(int argc, char **argv);
int em_cli_tokenize(int argc, char **argv);
int em_cli_inspect(int argc, char **argv);
int em_cli_quantize(int argc, char **argv);
int em_cli_bench(int argc, char **argv);
int em_cli_eval(int argc, char **argv);
int em_cli_pull(int argc, char **argv);
int em_cli_list(int argc, char **argv);
int em_cli_show(int argc, char **argv);
int em_cli_rm(int argc, char **argv);
int em_cli_bundle(int argc, char **argv);

/* What -m takes: an existing path, else a library model's path
 * (em_library_resolve); when neither, prints why and returns arg. */
const char *em_cli_model_path(const char *arg);

/* Parse the whole string as a number within [lo, hi]; false (and *out
 * untouched) for junk, overflow or out-of-range values. */
bool em_cli_parse_long(const char *s, long lo, long hi, long *out);
bool em_cli_parse_double(const char *s, double lo, double hi, double *out);
/* Any finite float. */
bool em_cli_parse_float(const char *s, float *out);

/* KV cache types the commands accept for --kv-type: f16, f32, q8_0. */
bool em_cli_parse_kv_type(const char *s, em_type *out);
const char *em_cli_kv_type_name(em_type t);

/* Reads a whole file into a NUL-terminated heap buffer; NULL on error
 * (message printed).  *len gets the length without the NUL. */
char *em_cli_read_file(const char *path, size_t *len);

#endif
