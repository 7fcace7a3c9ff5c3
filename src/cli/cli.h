/*
 * cli.h - the subcommands of the `ember` program.  Each takes the arguments
 * after its own name (argv[0] is the subcommand) and returns the process
 * exit status: 0 on success, 1 on a runtime error, 2 on a usage error.
 */
#ifndef EM_CLI_H
#define EM_CLI_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "cli/opts.h"
#include "ember.h"

int em_cli_run(int argc, char **argv);
int em_cli_tokenize(int argc, char **argv);
int em_cli_inspect(int argc, char **argv);
int em_cli_embed(int argc, char **argv);
int em_cli_quantize(int argc, char **argv);
int em_cli_bench(int argc, char **argv);
int em_cli_eval(int argc, char **argv);
int em_cli_chat(int argc, char **argv);
int em_cli_pull(int argc, char **argv);
int em_cli_list(int argc, char **argv);
int em_cli_show(int argc, char **argv);
int em_cli_rm(int argc, char **argv);
int em_cli_bundle(int argc, char **argv);

/* What -m takes: an existing path, else a library model's path
 * (em_library_resolve); when neither, prints why and returns arg. */
const char *em_cli_model_path(const char *arg);
int em_cli_serve(int argc, char **argv);
/* For the servers (serve.c, route.c): blocks SIGTERM and SIGINT in the
 * calling thread, before any other starts (threads inherit the mask), so
 * that only the main thread's sigwait(sigs) takes them; ignores SIGPIPE. */
void em_cli_block_stop_signals(sigset_t *sigs);
/* `ember serve --config FILE` (route.c): true when argv asks for the router. */
bool em_cli_is_router(int argc, char **argv);
int em_cli_serve_config(int argc, char **argv);
int em_cli_usage(int argc, char **argv);
/* Reads and validates a router configuration; NULL with the error printed. */
struct em_rt_config *em_cli_load_router_config(const char *path);
/* `ember route calibrate` (calibrate.c). */
int em_cli_route(int argc, char **argv);

/* The KV cache types the commands accept for --kv-type (f16, f32, q8_0),
 * as an EM_OPT_ENUM's choices and values: one table entry for every
 * command, EM_CLI_OPT_KV_TYPE(var) with an em_type var. */
extern const char *const em_cli_kv_choices[];
extern const int em_cli_kv_values[];
#define EM_CLI_OPT_KV_TYPE(var)                                                       \
    {.name = "kv-type", .type = EM_OPT_ENUM, EM_OPT_DEST(var), .choices = em_cli_kv_choices, \
     .values = em_cli_kv_values, .help = "KV cache precision"}
const char *em_cli_kv_type_name(em_type t);

/* The sampling options of the commands that generate (run, chat), as
 * table entries over an em_sampler_params whose defaults the command set. */
#define EM_CLI_OPTS_SAMPLING(sp)                                                                   \
    {.name = "temp", .type = EM_OPT_FLOAT, EM_OPT_DEST((sp).temp), .help = "temperature (0 = greedy)"},         \
    {.name = "top-k", .type = EM_OPT_INT, EM_OPT_DEST((sp).top_k), .min = 0, .max = 1 << 30,                  \
     .help = "keep the K most likely tokens (0 = off)"},                                                      \
    {.name = "top-p", .type = EM_OPT_FLOAT, EM_OPT_DEST((sp).top_p), .help = "nucleus sampling threshold (1 = off)"}, \
    {.name = "min-p", .type = EM_OPT_FLOAT, EM_OPT_DEST((sp).min_p),                                        \
     .help = "drop tokens below P x the best probability"},                                                   \
    {.name = "repeat-penalty", .type = EM_OPT_FLOAT, EM_OPT_DEST((sp).repeat_penalty), .min = 1e-6, .max = 1e6, \
     .help = "penalise repeated tokens (1 = off)"},                                                           \
    {.name = "repeat-last-n", .type = EM_OPT_INT, EM_OPT_DEST((sp).repeat_last_n), .min = -1, .max = 1 << 30, \
     .help = "tokens the penalties look back over (-1: all)"},                                                \
    {.name = "frequency-penalty", .type = EM_OPT_FLOAT, EM_OPT_DEST((sp).freq_penalty),                     \
     .help = "OpenAI-style frequency penalty"},                                                               \
    {.name = "presence-penalty", .type = EM_OPT_FLOAT, EM_OPT_DEST((sp).presence_penalty),                  \
     .help = "OpenAI-style presence penalty"},                                                                \
    {.name = "seed", .type = EM_OPT_INT, EM_OPT_DEST((sp).seed), .help = "random seed"}

/* Threads, context length and prompt batch of the commands that run one
 * context (run, chat). */
#define EM_CLI_OPTS_COMPUTE(threads, ctx, batch)                                                       \
    {.name = "threads", .short_name = "t", .type = EM_OPT_INT, EM_OPT_DEST(threads), .min = 1, .max = 512, \
     .help = "worker threads", .def = "physical cores"},                                                 \
    {.name = "ctx-size", .short_name = "c", .type = EM_OPT_INT, EM_OPT_DEST(ctx), .min = 0, .max = 1 << 24, \
     .help = "context length", .def = "the model's, at most 4096"},                                      \
    {.name = "batch-size", .short_name = "b", .type = EM_OPT_INT, EM_OPT_DEST(batch), .min = 1,            \
     .max = 1 << 16, .help = "prompt tokens per forward pass"}

/* How the weights are held (--mmap/--no-mmap, --mlock, --no-repack), over an
 * em_model_params: the same spelling in every command that loads a model. */
#define EM_CLI_OPTS_WEIGHTS(mp)                                                                    \
    {.name = "mmap", .type = EM_OPT_FLAG, EM_OPT_DEST((mp).use_mmap),                              \
     .help = "map the model file (off: read it into memory)"},                                     \
    {.name = "mlock", .type = EM_OPT_FLAG, EM_OPT_DEST((mp).use_mlock),                            \
     .help = "lock the model in memory (needs ulimit -l)"},                                        \
    {.name = "repack", .type = EM_OPT_FLAG, EM_OPT_DEST((mp).repack),                              \
     .help = "row-interleave Q4_0/Q8_0/Q4_K/Q5_K/Q6_K matrices for the GEMM kernels at load"}

/* Creates the one context of a command that runs a model (run, chat):
 * n_ctx 0 means the model's training length capped at 4096. */
em_status em_cli_context_init(em_context **out, const em_model *model, int32_t n_ctx, int32_t n_batch,
                              int32_t n_threads, em_type kv_type);

/* Reads a whole file into a NUL-terminated heap buffer; NULL on error
 * (message printed).  *len gets the length without the NUL. */
char *em_cli_read_file(const char *path, size_t *len);

#endif
