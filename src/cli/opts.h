/*
 * opts.h - the option parser every `ember` command uses.
 *
 * A command describes its options in a table, one em_opt per option:
 * the long and short spelling, the type, where the value goes, the help
 * text.  em_opts_parse reads argv against the table, and em_opts_help
 * prints `--help` from the same table, so the two never disagree.
 *
 *     em_sampler_params sp = em_sampler_default_params();
 *     const char *model = NULL;
 *     const em_opt opts[] = {
 *         {.name = "model", .short_name = "m", .type = EM_OPT_STRING, EM_OPT_DEST(model),
 *          .arg = "FILE", .help = "GGUF model to run", .flags = EM_OPT_REQUIRED},
 *         {.name = "temp", .type = EM_OPT_FLOAT, EM_OPT_DEST(sp.temp), .min = 0, .max = 100,
 *          .help = "temperature; 0 = greedy"},
 *         {0}};
 *     const em_cmd cmd = {.name = "run", .synopsis = "-m MODEL.gguf [options]", .opts = opts};
 *     em_opts_result r = em_opts_parse(&cmd, argc, argv, NULL, NULL);
 *     if (r != EM_OPTS_OK) return em_opts_exit_code(r);
 *
 * The spellings every command accepts:
 *   --name VALUE, --name=VALUE, -x VALUE (short names may be longer than
 *   one letter, as llama-bench's -mmp); a value may start with '-'
 *   (-n -1), it is always the next argument.
 *   Boolean options (EM_OPT_FLAG): --name turns it on, --no-name off, and
 *   --name=0|1 (also true|false) or --name 0|1 (llama-bench's spelling)
 *   set it either way.  So `--mlock`, `--mlock 1` and `--mlock=1` mean the
 *   same in every command, and `--no-mmap` is `--mmap 0`.
 *   Lists: every use of the option adds values; the first use replaces
 *   the default.  EM_OPT_INT_LIST also splits a value at commas
 *   (-t 1,2,4); EM_OPT_GREEDY lists also take the arguments after the
 *   option up to the next one that starts with '-' (--models A B C).
 *   -h and --help print the help and stop; `--` ends the options, and
 *   every argument after it is positional, as is a lone `-`.
 *
 * Defaults: the default of an option is what its destination holds
 * before parsing; a command sets it there (from em_sampler_default_params,
 * say), so that the library's defaults and the help agree.  `def` shows
 * a text instead (a default that is computed later: "physical cores").
 *
 * Usage errors print one line to stderr that names the option
 * ("ember run: bad value for -n: 'abc' (want an integer from -1 to 1073741824)")
 * and em_opts_parse returns EM_OPTS_USAGE; a command then exits with
 * em_opts_exit_code(r), which is 2.  Nothing else is printed.
 */
#ifndef EM_CLI_OPTS_H
#define EM_CLI_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef enum em_opt_type {
    EM_OPT_FLAG,     /* bool *dest                                          */
    EM_OPT_INT,      /* int32_t or int64_t *dest (by size), in [min, max]   */
    EM_OPT_FLOAT,    /* float or double *dest (by size), finite, [min, max] */
    EM_OPT_STRING,   /* const char **dest: points into argv                 */
    EM_OPT_ENUM,     /* int *dest (an enum): values[i] of choices[i]        */
    EM_OPT_LIST,     /* const char *dest[cap], *count of them used          */
    EM_OPT_INT_LIST, /* int32_t dest[cap] in [min, max], *count used        */
} em_opt_type;

/* em_opt.flags */
#define EM_OPT_REQUIRED 1u /* a usage error when the option is not given   */
#define EM_OPT_GREEDY 2u   /* lists: also take the following arguments     */

/* Sets an option's destination and its size: EM_OPT_DEST(sp.temp). */
#define EM_OPT_DEST(var) .dest = &(var), .size = sizeof(var)

typedef struct em_opt {
    const char *name;       /* long name without "--"; NULL ends the table  */
    const char *short_name; /* without "-" ("m", "mmp"), or NULL            */
    em_opt_type type;
    void *dest;             /* where the value goes (see em_opt_type)       */
    size_t size;            /* bytes of *dest (INT, FLOAT: 4 or 8; lists:
                             * of one element)                              */
    const char *arg;        /* the value's name in the help ("FILE"); NULL:
                             * by type (N, X, TEXT, a|b|c, N,...)           */
    const char *help;       /* one line; '\n' starts a continuation line    */
    const char *def;        /* default as the help shows it; NULL: *dest as
                             * it is before parsing; "": none shown         */
    double min, max;        /* INT, FLOAT, INT_LIST: accepted range; both 0:
                             * any value of the type                        */
    const char *const *choices; /* ENUM: the spellings, NULL-terminated     */
    const int *values;      /* ENUM: the value of each choice; NULL: index  */
    int *count;             /* LIST, INT_LIST: elements in dest             */
    int cap;                /* LIST, INT_LIST: capacity of dest             */
    unsigned flags;         /* EM_OPT_REQUIRED, EM_OPT_GREEDY               */
} em_opt;

/* A command: its name in messages ("run", "eval ppl"), the usage line's
 * tail, and the text the help prints around the option list. */
typedef struct em_cmd {
    const char *name;     /* "ember NAME: ..." in every message             */
    const char *synopsis; /* "usage: ember NAME SYNOPSIS"                   */
    const char *about;    /* paragraph after the usage line, or NULL        */
    const char *epilog;   /* text after the options, or NULL                */
    const em_opt *opts;   /* table, ended by an entry with name NULL        */
    int max_pos;          /* positional arguments accepted (0: none)        */
} em_cmd;

typedef enum em_opts_result {
    EM_OPTS_OK,    /* parsed: go on                                         */
    EM_OPTS_HELP,  /* --help was given and printed to stdout                */
    EM_OPTS_USAGE, /* a usage error, printed to stderr as one line          */
} em_opts_result;

/*
 * Parses argv[1..argc-1] (argv[0] is the command's own name) against
 * cmd->opts, writing each value to its destination.  Positional
 * arguments go to pos[0..cmd->max_pos-1] and their number to *n_pos (pos
 * and n_pos may be NULL when max_pos is 0).  A table the parser cannot
 * use (an INT whose size is neither 4 nor 8, more than EM_OPTS_MAX
 * entries) is a usage error that names the option, never a crash.
 */
#define EM_OPTS_MAX 64
em_opts_result em_opts_parse(const em_cmd *cmd, int argc, char **argv, const char **pos, int *n_pos);

/* The process exit status of a result other than EM_OPTS_OK: 0 after
 * --help, 2 after a usage error. */
int em_opts_exit_code(em_opts_result r);

/* Prints the help: the usage line, `about`, one aligned row per option
 * (spelling, value name, help, default), the rule for boolean options
 * when the table has any, and `epilog`. */
void em_opts_help(const em_cmd *cmd, FILE *out);

#endif
