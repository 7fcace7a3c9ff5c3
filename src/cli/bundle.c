/*
 * bundle.c - `ember bundle export|import|keygen`: verified model bundles
 * for sites without a network.
 */
#include "cli/cli.h"
#include "cli/opts.h"
#include "library/library.h"

#include <stdio.h>
#include <string.h>

#define MAX_NAMES 64

static void usage(FILE *out) {
    fprintf(out,
            "usage: ember bundle export NAME... -o FILE.tar [--sign KEY]\n"
            "       ember bundle import FILE.tar [--require-signer KEY.pub]\n"
            "       ember bundle keygen -o KEY\n"
            "\n"
            "Carries library models across an air gap with proof that nothing changed:\n"
            "  export   writes models into a tar with a manifest of sizes and sha256 sums\n"
            "  import   checks every byte before any model becomes visible\n"
            "  keygen   writes an ed25519 key pair for signing manifests\n"
            "\n"
            "  ember bundle ACTION --help    options of one action\n");
}

static int export_cmd(int argc, char **argv) {
    const char *out = NULL, *key = NULL, *names[MAX_NAMES];
    int n = 0;
    const em_opt opts[] = {
        {.name = "output", .short_name = "o", .type = EM_OPT_STRING, EM_OPT_DEST(out), .arg = "FILE.tar",
         .help = "the bundle to write (it appears only when complete)", .flags = EM_OPT_REQUIRED},
        {.name = "sign", .type = EM_OPT_STRING, EM_OPT_DEST(key), .arg = "KEY",
         .help = "sign the manifest with this secret key (ember bundle keygen)", .def = "unsigned"},
        {0}};
    const em_cmd cmd = {.name = "bundle export",
                        .synopsis = "NAME... -o FILE.tar [options]",
                        .about = "Writes library models into a tar with a manifest of sizes and sha256 sums,\n"
                                 "re-hashing every file on the way.\n",
                        .opts = opts,
                        .max_pos = MAX_NAMES};
    em_opts_result r = em_opts_parse(&cmd, argc, argv, names, &n);
    if (r != EM_OPTS_OK) return em_opts_exit_code(r);
    if (!n) {
        fprintf(stderr, "ember bundle export: no model name given (see ember bundle export --help)\n");
        return 2;
    }
    if (em_bundle_export(names, n, out, key) != EM_OK) {
        fprintf(stderr, "ember bundle export: %s\n", em_last_error());
        return 1;
    }
    printf("wrote %s (%d model%s%s)\n", out, n, n == 1 ? "" : "s", key ? ", signed" : "");
    return 0;
}

static int import_cmd(int argc, char **argv) {
    const char *signer = NULL, *file = NULL;
    int n = 0;
    const em_opt opts[] = {
        {.name = "require-signer", .type = EM_OPT_STRING, EM_OPT_DEST(signer), .arg = "KEY.pub",
         .help = "accept only a manifest signed by this public key", .def = "any or none"},
        {0}};
    const em_cmd cmd = {.name = "bundle import",
                        .synopsis = "FILE.tar [options]",
                        .about = "Imports a bundle into the library.  Every file is checked against the\n"
                                 "manifest's size and sha256 before any model becomes visible; a tampered or\n"
                                 "truncated bundle is refused and leaves nothing behind.  A signature present\n"
                                 "is always checked.\n",
                        .opts = opts,
                        .max_pos = 1};
    em_opts_result r = em_opts_parse(&cmd, argc, argv, &file, &n);
    if (r != EM_OPTS_OK) return em_opts_exit_code(r);
    if (!n) {
        fprintf(stderr, "ember bundle import: no bundle given (see ember bundle import --help)\n");
        return 2;
    }
    char names[4096];
    if (em_bundle_import(file, signer, names, sizeof names) != EM_OK) {
        fprintf(stderr, "ember bundle import: %s\n", em_last_error());
        return 1;
    }
    printf("imported %s\n", names[0] ? names : "nothing (the bundle is empty)");
    return 0;
}

static int keygen_cmd(int argc, char **argv) {
    const char *out = NULL;
    const em_opt opts[] = {
        {.name = "output", .short_name = "o", .type = EM_OPT_STRING, EM_OPT_DEST(out), .arg = "KEY",
         .help = "write the secret key here (mode 0600) and the public key to KEY.pub", .flags = EM_OPT_REQUIRED},
        {0}};
    const em_cmd cmd = {.name = "bundle keygen",
                        .synopsis = "-o KEY",
                        .about = "Writes a new ed25519 key pair for signing bundle manifests; never\n"
                                 "overwrites a file.\n",
                        .opts = opts};
    em_opts_result r = em_opts_parse(&cmd, argc, argv, NULL, NULL);
    if (r != EM_OPTS_OK) return em_opts_exit_code(r);
    if (em_bundle_keygen(out) != EM_OK) {
        fprintf(stderr, "ember bundle keygen: %s\n", em_last_error());
        return 1;
    }
    printf("wrote %s (secret: keep it) and %s.pub (give it to importers)\n", out, out);
    return 0;
}

int em_cli_bundle(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "-h") || !strcmp(sub, "--help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(sub, "export")) return export_cmd(argc - 1, argv + 1);
    if (!strcmp(sub, "import")) return import_cmd(argc - 1, argv + 1);
    if (!strcmp(sub, "keygen")) return keygen_cmd(argc - 1, argv + 1);
    fprintf(stderr, "ember bundle: unknown action '%s' (export, import, keygen)\n", sub);
    return 2;
}
