/*
 * pull.c - `ember pull hf.co/ORG/REPO[:QUANT]` and `ember pull
 * ORG/REPO/FILE.gguf`: download a model from the hub into the library.
 */
#include "cli/cli.h"
#include "library/library.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: ember pull hf.co/ORG/REPO[:QUANT] | ORG/REPO/FILE.gguf ...\n"
            "\n"
            "Downloads a GGUF model from Hugging Face into the library ($EMBER_HOME,\n"
            "default ~/.local/share/ember), resuming an interrupted download and\n"
            "checking the sha256 the hub reports.  QUANT defaults to Q4_K_M, or the\n"
            "nearest quantization the repository has.  Split models come whole.\n"
            "\n"
            "environment:\n"
            "  HF_ENDPOINT     hub or mirror URL (default https://huggingface.co)\n"
            "  HF_TOKEN        access token for gated or private repositories\n"
            "  https_proxy, no_proxy ...   proxies, as curl reads them\n"
            "  EMBER_OFFLINE=1 refuse to touch the network\n");
}

int em_cli_pull(int argc, char **argv) {
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        }
        if (argv[i][0] == '-') {
            fprintf(stderr, "ember pull: unknown option %s (see ember pull --help)\n", argv[i]);
            return 2;
        }
        n++;
    }
    if (n == 0) {
        usage(stderr);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        char name[EM_LIB_NAME_MAX];
        if (em_hub_pull(argv[i], name, sizeof name) != EM_OK) {
            fprintf(stderr, "ember pull: %s\n", em_last_error());
            return 1;
        }
        printf("pulled %s\n", name);
    }
    return 0;
}
