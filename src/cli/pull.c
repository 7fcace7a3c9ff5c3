/*
 * pull.c - `ember pull hf.co/ORG/REPO[:QUANT]` and `ember pull
 * ORG/REPO/FILE.gguf`: download a model from the hub into the library.
 */
#include "cli/cli.h"
#include "cli/opts.h"
#include "library/library.h"

#include <stdio.h>
#include <string.h>

#define MAX_SPECS 64

int em_cli_pull(int argc, char **argv) {
    const em_opt opts[] = {{0}};
    const em_cmd cmd = {
        .name = "pull",
        .synopsis = "hf.co/ORG/REPO[:QUANT] | ORG/REPO/FILE.gguf ...",
        .about = "Downloads a GGUF model from Hugging Face into the library ($EMBER_HOME,\n"
                 "default ~/.local/share/ember), resuming an interrupted download and\n"
                 "checking the sha256 the hub reports.  QUANT defaults to Q4_K_M, or the\n"
                 "nearest quantization the repository has.  Split models come whole.\n",
        .epilog = "environment:\n"
                  "  HF_ENDPOINT      hub or mirror URL (default https://huggingface.co)\n"
                  "  HF_TOKEN         access token for gated or private repositories\n"
                  "  https_proxy, no_proxy, ...  proxies, as curl reads them\n"
                  "  EMBER_OFFLINE=1  refuse to touch the network\n",
        .opts = opts,
        .max_pos = MAX_SPECS};
    const char *specs[MAX_SPECS];
    int n = 0;
    em_opts_result r = em_opts_parse(&cmd, argc, argv, specs, &n);
    if (r != EM_OPTS_OK) return em_opts_exit_code(r);
    if (n == 0) {
        fprintf(stderr, "ember pull: no model given (see ember pull --help)\n");
        return 2;
    }
    for (int i = 0; i < n; i++) {
        char name[EM_LIB_NAME_MAX];
        if (em_hub_pull(specs[i], name, sizeof name) != EM_OK) {
            fprintf(stderr, "ember pull: %s\n", em_last_error());
            return 1;
        }
        printf("pulled %s\n", name);
    }
    return 0;
}
