/*
 * cli.h - the subcommands of the `ember` program.  Each takes the arguments
 * after its own name (argv[0] is the subcommand) and returns the process
 * exit status: 0 on success, 1 on a runtime error, 2 on a usage error.
 */
#ifndef EM_CLI_H
#define EM_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include "cli/opts.h"
#include "ember.h"

int em_cli_run(int argc, char **argv);
int em_cli_tokenize(int argc, char **argv);
int em_cli_inspect(int argc, char **argv);
int em_cli_quantize(int argc, char **argv);
int em_cli_bench(int argc, char **argv);
int em_cli_eval(int argc, char **argv);
int em_cli_serve(int argc, char **argv);
/* `ember serve --config FILE` (route.c): true when argv asks for the router. */
bool em_cli_is_router(int argc, char **argv);
int em_cli_serve_config(int argc, char **argv);
int em_cli_usage(int argc, char **argv);

/* The KV cache types the commands accept for --kv-type (f16, f32, q8_0),
 * as an EM_OPT_ENUM's choices and values: one table entry for every
 * command, EM_CLI_OPT_KV_TYPE(var) with an em_type var. */
extern const char *const em_cli_kv_choices[];
extern const int em_cli_kv_values[];
#define EM_CLI_OPT_KV_TYPE(var)                                                       \
    {.name = "kv-type", .type = EM_OPT_ENUM, EM_OPT_DEST(var), .choices = em_cli_kv_choices, \
     .values = em_cli_kv_values, .help = "KV cache precision"}
const char *em_cli_kv_type_name(em_type t);

/* Reads a whole file into a NUL-terminated heap buffer; NULL on error
 * (message printed).  *len gets the length without the NUL. */
char *em_cli_read_file(const char *path, size_t *len);

#endif
