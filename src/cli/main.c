/*
 * main.c - `ember <command>`: dispatches to the subcommands.  Only this
 * program's main ever exits the process.
 */
#include "cli/cli.h"
#include "ember.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "ember %s - efficient LLM inference for GGUF models\n"
            "\n"
            "usage: ember <command> [options]\n"
            "\n"
            "commands:\n"
            "  run        generate text from a model\n"
            "  chat       chat with a model in the terminal (its chat template)\n"
            "  tokenize   convert text to token ids\n"
            "  embed      a text's embedding vector (bert, nomic-bert, ...)\n"
            "  inspect    show a GGUF file's metadata and tensors\n"
            "  quantize   convert a model to another tensor type or mix\n"
            "  bench      measure prompt and generation speed against the roofline\n"
            "  eval       perplexity, multiple-choice accuracy, KL divergence, reports\n"
            "  pull       download a model from Hugging Face into the library\n"
            "  list       the models in the library\n"
            "  show       a library model's files, metadata, licence and chat template\n"
            "  rm         remove models from the library\n"
            "  bundle     export, import and sign verified model bundles (air gaps)\n"
            "  serve      an OpenAI-compatible HTTP server with continuous batching\n"
            "             (--config FILE: a router between local and remote models)\n"
            "  usage      spend, tokens and savings from the router's ledger\n"
            "  route      route calibrate: a cascade's threshold from a labelled set\n"
            "\n"
            "  ember <command> --help    options of one command\n"
            "  ember --version           print the version\n",
            EMBER_VERSION);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("ember %s\n", EMBER_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "run")) return em_cli_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenize")) return em_cli_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "embed")) return em_cli_embed(argc - 1, argv + 1);
    if (!strcmp(cmd, "inspect")) return em_cli_inspect(argc - 1, argv + 1);
    if (!strcmp(cmd, "quantize")) return em_cli_quantize(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return em_cli_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return em_cli_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "chat")) return em_cli_chat(argc - 1, argv + 1);
    if (!strcmp(cmd, "pull")) return em_cli_pull(argc - 1, argv + 1);
    if (!strcmp(cmd, "list")) return em_cli_list(argc - 1, argv + 1);
    if (!strcmp(cmd, "show")) return em_cli_show(argc - 1, argv + 1);
    if (!strcmp(cmd, "rm")) return em_cli_rm(argc - 1, argv + 1);
    if (!strcmp(cmd, "bundle")) return em_cli_bundle(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve")) return em_cli_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "usage")) return em_cli_usage(argc - 1, argv + 1);
    if (!strcmp(cmd, "route")) return em_cli_route(argc - 1, argv + 1);
    fprintf(stderr, "ember: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
