/*
 * bundle.c - `ember bundle export|import|keygen`: verified model bundles
 * for sites without a network.
 */
#include "cli/cli.h"
#include "library/library.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: ember bundle export NAME... -o FILE.tar [--sign KEY]\n"
            "       ember bundle import FILE.tar [--require-signer KEY.pub]\n"
            "       ember bundle keygen -o KEY\n"
            "\n"
            "export   writes the library models NAME... into a tar with a manifest of\n"
            "         sizes and sha256 sums; --sign KEY signs the manifest (ed25519)\n"
            "import   checks every byte against the manifest before any model becomes\n"
            "         visible; refuses a tampered or truncated bundle.\n"
            "         --require-signer KEY.pub: only a manifest signed by that key\n"
            "keygen   writes a new key pair: KEY (secret, mode 0600) and KEY.pub\n");
}

int em_cli_bundle(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1], *out = NULL, *key = NULL, *signer = NULL;
    const char **pos = calloc((size_t)argc, sizeof *pos);
    if (!pos) return 1;
    int n_pos = 0, rc = 0;
    for (int i = 2; i < argc && !rc; i++) {
        const char *a = argv[i];
        const char **slot = !strcmp(a, "-o") || !strcmp(a, "--output") ? &out
                            : !strcmp(a, "--sign")                    ? &key
                            : !strcmp(a, "--require-signer")          ? &signer
                                                                      : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            free(pos);
            return 0;
        } else if (slot) {
            if (i + 1 >= argc) {
                fprintf(stderr, "ember bundle: %s needs a value\n", a);
                rc = 2;
            } else {
                *slot = argv[++i];
            }
        } else if (a[0] == '-') {
            fprintf(stderr, "ember bundle: unknown option %s (see ember bundle --help)\n", a);
            rc = 2;
        } else {
            pos[n_pos++] = a;
        }
    }
    if (rc) {
    } else if (!strcmp(sub, "export")) {
        if (!n_pos || !out || signer) {
            fprintf(stderr, "usage: ember bundle export NAME... -o FILE.tar [--sign KEY]\n");
            rc = 2;
        } else if (em_bundle_export(pos, n_pos, out, key) != EM_OK) {
            fprintf(stderr, "ember bundle export: %s\n", em_last_error());
            rc = 1;
        } else {
            printf("wrote %s (%d model%s%s)\n", out, n_pos, n_pos == 1 ? "" : "s", key ? ", signed" : "");
        }
    } else if (!strcmp(sub, "import")) {
        char names[4096];
        if (n_pos != 1 || out || key) {
            fprintf(stderr, "usage: ember bundle import FILE.tar [--require-signer KEY.pub]\n");
            rc = 2;
        } else if (em_bundle_import(pos[0], signer, names, sizeof names) != EM_OK) {
            fprintf(stderr, "ember bundle import: %s\n", em_last_error());
            rc = 1;
        } else {
            printf("imported %s\n", names[0] ? names : "nothing (the bundle is empty)");
        }
    } else if (!strcmp(sub, "keygen")) {
        if (n_pos || !out || key || signer) {
            fprintf(stderr, "usage: ember bundle keygen -o KEY\n");
            rc = 2;
        } else if (em_bundle_keygen(out) != EM_OK) {
            fprintf(stderr, "ember bundle keygen: %s\n", em_last_error());
            rc = 1;
        } else {
            printf("wrote %s (secret: keep it) and %s.pub (give it to importers)\n", out, out);
        }
    } else {
        fprintf(stderr, "ember bundle: unknown action '%s' (export, import, keygen)\n", sub);
        rc = 2;
    }
    free(pos);
    return rc;
}
