/*
 * cli.h - the subcommands of the `ember` program.  Each takes the arguments
 * after its own name (argv[0] is the subcommand) and returns the process
 * exit status: 0 on success, 1 on a runtime error, 2 on a usage error.
 */
#ifndef EM_CLI_H
#define EM_CLI_H

#include <stddef.h>

int em_cli_run(int argc, char **argv);
int em_cli_tokenize(int argc, char **argv);
int em_cli_inspect(int argc, char **argv);
int em_cli_quantize(int argc, char **argv);
int em_cli_bench(int argc, char **argv);
int em_cli_eval(int argc, char **argv);

/* Reads a whole file into a NUL-terminated heap buffer; NULL on error
 * (message printed).  *len gets the length without the NUL. */
char *em_cli_read_file(const char *path, size_t *len);

#endif
