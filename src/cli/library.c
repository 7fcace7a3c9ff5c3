/*
 * library.c - `ember list`, `ember show NAME`, `ember rm NAME`: the local
 * model library; and em_cli_model_path, which lets every -m take a
 * library name.
 */
#include "cli/cli.h"
#include "cli/opts.h"
#include "gguf/gguf.h"
#include "library/library.h"

#include <stdio.h>
#include <string.h>

const char *em_cli_model_path(const char *arg) {
    /* Several -m values may be alive at once (bench takes many). */
    static char paths[16][4096];
    static int next;
    char *out = paths[next];
    if (!arg) return arg;
    if (em_library_resolve(arg, out, sizeof paths[0]) != EM_OK) {
        /* What looks like a file path gets the loader's own one-line
         * error; a name gets told where names come from. */
        size_t n = strlen(arg);
        bool file_like = arg[0] == '/' || arg[0] == '.' || (n > 5 && !strcmp(arg + n - 5, ".gguf"));
        if (!file_like) fprintf(stderr, "ember: %s\n", em_last_error());
        return arg;
    }
    next = (next + 1) % 16;
    return out;
}

static void human_size(uint64_t b, char *out, size_t size) {
    double v = (double)b;
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(out, size, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

/* A string key of a GGUF as text ("" when absent). */
static void gguf_text(const em_gguf *g, const char *key, char *out, size_t size) {
    em_gguf_str s;
    out[0] = '\0';
    if (g && em_gguf_get_str(g, key, &s) == EM_OK)
        snprintf(out, size, "%.*s", (int)EM_MIN(s.len, (uint64_t)size - 1), s.ptr);
}

static int64_t context_length(const em_gguf *g) {
    char arch[64], key[128];
    int64_t v = 0;
    gguf_text(g, "general.architecture", arch, sizeof arch);
    snprintf(key, sizeof key, "%s.context_length", arch);
    return g && em_gguf_get_i64(g, key, &v) == EM_OK ? v : 0;
}

static uint64_t model_bytes(const em_lib_model *m) {
    uint64_t total = 0;
    for (int k = 0; k < m->n_files; k++) total += m->files[k].size;
    return total;
}

static int open_library(em_library **lib, bool write, const char *cmd) {
    if (em_library_open(lib, write) != EM_OK) {
        fprintf(stderr, "ember %s: %s\n", cmd, em_last_error());
        return 1;
    }
    return 0;
}

int em_cli_list(int argc, char **argv) {
    const em_opt opts[] = {{0}};
    const em_cmd cmd = {.name = "list",
                        .synopsis = "",
                        .about = "Lists the models in the library ($EMBER_HOME, default ~/.local/share/ember):\n"
                                 "name, quantization, size, architecture, context length.\n",
                        .opts = opts};
    em_opts_result r = em_opts_parse(&cmd, argc, argv, NULL, NULL);
    if (r != EM_OPTS_OK) return em_opts_exit_code(r);
    em_library *lib;
    if (open_library(&lib, false, "list")) return 1;
    const em_lib_list *l = em_library_models(lib);
    printf("%-48s %-10s %10s  %-10s %8s\n", "NAME", "QUANT", "SIZE", "ARCH", "CONTEXT");
    for (int i = 0; i < l->n; i++) {
        const em_lib_model *m = &l->models[i];
        char path[EM_LIB_PATH_MAX * 2], size[32], arch[64] = "?";
        em_library_path(lib, m->files[0].path, path, sizeof path);
        em_gguf *g = NULL;
        if (em_gguf_open(&g, path) != EM_OK) snprintf(arch, sizeof arch, "(missing)");
        else gguf_text(g, "general.architecture", arch, sizeof arch);
        human_size(model_bytes(m), size, sizeof size);
        printf("%-48s %-10s %10s  %-10s %8lld\n", m->name, m->quant, size, arch, (long long)context_length(g));
        em_gguf_close(g);
    }
    if (l->n == 0) printf("(empty: ember pull hf.co/ORG/REPO fetches a model; the library is %s)\n",
                          em_library_home(lib));
    em_library_free(lib);
    return 0;
}

int em_cli_show(int argc, char **argv) {
    const char *name = NULL;
    bool all = false;
    const em_opt opts[] = {
        {.name = "all", .type = EM_OPT_FLAG, EM_OPT_DEST(all), .help = "print long arrays (the vocabulary) in full"},
        {0}};
    const em_cmd cmd = {.name = "show",
                        .synopsis = "NAME [options]",
                        .about = "Shows a library model: its files, metadata, licence and chat template.\n",
                        .opts = opts,
                        .max_pos = 1};
    int n_pos = 0;
    em_opts_result r = em_opts_parse(&cmd, argc, argv, &name, &n_pos);
    if (r != EM_OPTS_OK) return em_opts_exit_code(r);
    if (!n_pos) {
        fprintf(stderr, "ember show: no model name given (see ember show --help)\n");
        return 2;
    }
    em_library *lib;
    if (open_library(&lib, false, "show")) return 1;
    const em_lib_model *m = em_library_find(lib, name);
    if (!m) {
        fprintf(stderr, "ember show: no model named '%s' in the library (see ember list)\n", name);
        em_library_free(lib);
        return 1;
    }
    char path[EM_LIB_PATH_MAX * 2], size[32];
    human_size(model_bytes(m), size, sizeof size);
    printf("name:     %s\nrepo:     %s\nquant:    %s\nsize:     %s\nsource:   %s\n", m->name, m->repo, m->quant,
           size, m->source);
    for (int k = 0; k < m->n_files; k++) {
        em_library_path(lib, m->files[k].path, path, sizeof path);
        printf("file:     %s (%llu bytes, sha256 %s)\n", path, (unsigned long long)m->files[k].size,
               m->files[k].sha256);
    }
    em_library_path(lib, m->files[0].path, path, sizeof path);
    em_gguf *g = NULL;
    int rc = 0;
    if (em_gguf_open(&g, path) != EM_OK) {
        fprintf(stderr, "ember show: %s\n", em_last_error());
        rc = 1;
    } else {
        char text[512];
        gguf_text(g, "general.architecture", text, sizeof text);
        printf("arch:     %s\ncontext:  %lld\n", text, (long long)context_length(g));
        gguf_text(g, "general.license", text, sizeof text);
        printf("license:  %s\n", text[0] ? text : "(not stated in the file)");
        printf("\nmetadata:\n");
        static char buf[1 << 16];
        for (int64_t i = 0; i < em_gguf_n_kv(g); i++) {
            em_gguf_str key = em_gguf_key(g, i);
            if (em_gguf_str_eq(key, "tokenizer.chat_template")) continue;
            em_gguf_kv_format(g, i, buf, sizeof buf, all ? -1 : 8);
            printf("  %.*s = %s\n", (int)key.len, key.ptr, buf);
        }
        em_gguf_str tmpl;
        if (em_gguf_get_str(g, "tokenizer.chat_template", &tmpl) == EM_OK)
            printf("\nchat template:\n%.*s\n", (int)EM_MIN(tmpl.len, (uint64_t)1 << 24), tmpl.ptr);
        else
            printf("\nchat template: (none)\n");
        em_gguf_close(g);
    }
    em_library_free(lib);
    return rc;
}

int em_cli_rm(int argc, char **argv) {
    enum { MAX_NAMES = 64 };
    const char *names[MAX_NAMES];
    int n = 0;
    const em_opt opts[] = {{0}};
    const em_cmd cmd = {.name = "rm",
                        .synopsis = "NAME...",
                        .about = "Removes models from the library, with their files.\n",
                        .opts = opts,
                        .max_pos = MAX_NAMES};
    em_opts_result r = em_opts_parse(&cmd, argc, argv, names, &n);
    if (r != EM_OPTS_OK) return em_opts_exit_code(r);
    if (!n) {
        fprintf(stderr, "ember rm: no model name given (see ember rm --help)\n");
        return 2;
    }
    em_library *lib;
    if (open_library(&lib, true, "rm")) return 1;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        if (em_library_remove(lib, names[i]) != EM_OK) {
            fprintf(stderr, "ember rm: %s\n", em_last_error());
            rc = 1;
        } else {
            printf("removed %s\n", names[i]);
        }
    }
    em_library_free(lib);
    return rc;
}
