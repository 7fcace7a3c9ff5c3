/*
 * store.c - the library folder: where it is, its index, adding and
 * removing models, and resolving the names that -m takes.
 *
 * index.json is only ever replaced whole (written to index.json.tmp,
 * fsync'ed, renamed), under an exclusive flock on index.lock, so readers
 * see the old index or the new one and two writers cannot interleave.
 */
#include "library/library.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct em_library {
    char home[EM_LIB_PATH_MAX]; /* absolute or as given in $EMBER_HOME */
    em_lib_list list;           /* what index.json holds               */
    int lock_fd;                /* index.lock, flock'ed; -1 read-only  */
};

static const char *const KIND = "ember-library";

em_status em_mkdir_parents(const char *path) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return em_error(EM_ERR_INVALID_ARG, "path too long: %s", path);
    char *slash = strrchr(buf, '/');
    if (!slash || slash == buf) return EM_OK;
    *slash = '\0';
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return em_error(EM_ERR_IO, "cannot create folder %s: %s", buf, strerror(errno));
            if (!c) break;
            *p = c;
        }
    }
    return EM_OK;
}

void em_remove_tree(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) != 0) return;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            struct dirent *de;
            while ((de = readdir(d))) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
                char sub[4096];
                if (snprintf(sub, sizeof sub, "%s/%s", path, de->d_name) < (int)sizeof sub) em_remove_tree(sub);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

bool em_library_path(const em_library *lib, const char *rel, char *out, size_t size) {
    size_t h = strlen(lib->home), r = strlen(rel);
    if (h + 1 + r + 1 > size) {
        if (size) out[0] = '\0';
        return false;
    }
    memcpy(out, lib->home, h);
    out[h] = '/';
    memcpy(out + h + 1, rel, r + 1);
    return true;
}

static em_status find_home(char *out, size_t size) {
    const char *env = getenv("EMBER_HOME");
    int n;
    if (env && *env) {
        n = snprintf(out, size, "%s", env);
    } else {
        const char *home = getenv("HOME");
        if (!home || !*home) return em_error(EM_ERR_INVALID_ARG, "library: neither EMBER_HOME nor HOME is set");
        n = snprintf(out, size, "%s/.local/share/ember", home);
    }
    if (n < 0 || (size_t)n >= size - 64) return em_error(EM_ERR_INVALID_ARG, "library: the folder's path is too long");
    while (n > 1 && out[n - 1] == '/') out[--n] = '\0';
    return EM_OK;
}

static em_status read_index(em_library *lib) {
    char path[EM_LIB_PATH_MAX + 16];
    em_library_path(lib, "index.json", path, sizeof path);
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) return EM_OK;
        return em_error(EM_ERR_IO, "library: cannot open %s: %s", path, strerror(errno));
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        char *grown = cap < (64u << 20) ? realloc(buf, cap * 2) : NULL;
        if (!grown) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = grown;
        cap *= 2;
    }
    fclose(f);
    if (!buf) return em_error(EM_ERR_NOMEM, "library: %s is too large", path);
    em_status st = em_lib_list_parse(buf, n, KIND, &lib->list);
    free(buf);
    if (st) {
        char why[256];
        snprintf(why, sizeof why, "%s", em_last_error());
        return em_error(st, "library: %s: %s", path, why);
    }
    return EM_OK;
}

em_status em_library_open(em_library **out, bool write) {
    em_library *lib = calloc(1, sizeof *lib);
    if (!lib) return em_error(EM_ERR_NOMEM, "library: out of memory");
    lib->lock_fd = -1;
    em_status st = find_home(lib->home, sizeof lib->home);
    if (!st && write) {
        char p[EM_LIB_PATH_MAX + 16];
        em_library_path(lib, "models/x", p, sizeof p);
        st = em_mkdir_parents(p);
        em_library_path(lib, "index.lock", p, sizeof p);
        if (!st && (lib->lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
            st = em_error(EM_ERR_IO, "library: cannot open %s: %s", p, strerror(errno));
        if (!st && flock(lib->lock_fd, LOCK_EX) != 0)
            st = em_error(EM_ERR_IO, "library: cannot lock %s: %s", p, strerror(errno));
    }
    if (!st) st = read_index(lib);
    if (st) {
        em_library_free(lib);
        return st;
    }
    *out = lib;
    return EM_OK;
}

void em_library_free(em_library *lib) {
    if (!lib) return;
    em_lib_list_free(&lib->list);
    if (lib->lock_fd >= 0) close(lib->lock_fd); /* releases the flock */
    free(lib);
}

const char *em_library_home(const em_library *lib) { return lib->home; }
const em_lib_list *em_library_models(const em_library *lib) { return &lib->list; }

static em_status save_index(em_library *lib) {
    if (lib->lock_fd < 0) return em_error(EM_ERR_INTERNAL, "library: the index is open read-only");
    char *text = em_lib_list_dump(&lib->list, KIND);
    if (!text) return em_error(EM_ERR_NOMEM, "library: out of memory");
    char path[EM_LIB_PATH_MAX + 16], tmp[EM_LIB_PATH_MAX + 32];
    em_library_path(lib, "index.json", path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    em_status st = EM_OK;
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        st = em_error(EM_ERR_IO, "library: cannot write %s: %s", tmp, strerror(errno));
    } else {
        size_t n = strlen(text);
        bool ok = fwrite(text, 1, n, f) == n && fputc('\n', f) != EOF && fflush(f) == 0 && fsync(fileno(f)) == 0;
        ok = (fclose(f) == 0) && ok;
        if (!ok || rename(tmp, path) != 0) {
            st = em_error(EM_ERR_IO, "library: cannot write %s: %s", path, strerror(errno));
            unlink(tmp);
        }
    }
    free(text);
    return st;
}

em_status em_library_add(em_library *lib, const em_lib_model *m) {
    /* The entry must pass the parser that reads the index back, or one
     * odd name would make the whole library unreadable. */
    em_lib_list one = {(em_lib_model *)m, 1}, back;
    char *text = em_lib_list_dump(&one, KIND);
    if (!text) return em_error(EM_ERR_NOMEM, "library: out of memory");
    em_status st = em_lib_list_parse(text, strlen(text), KIND, &back);
    free(text);
    if (st) {
        char why[256];
        snprintf(why, sizeof why, "%s", em_last_error());
        return em_error(EM_ERR_INVALID_ARG, "library: cannot add '%s': %s", m->name, why);
    }
    em_lib_list_free(&back);
    st = em_lib_list_put(&lib->list, m);
    return st ? st : save_index(lib);
}

/* True when a model other than skip lists this path. */
static bool path_shared(const em_library *lib, int skip, const char *path) {
    for (int i = 0; i < lib->list.n; i++) {
        if (i == skip) continue;
        for (int k = 0; k < lib->list.models[i].n_files; k++)
            if (!strcmp(lib->list.models[i].files[k].path, path)) return true;
    }
    return false;
}

/* Removes the empty folders between a deleted file and models/. */
static void prune_dirs(const em_library *lib, const char *rel) {
    char p[EM_LIB_PATH_MAX + 16];
    em_library_path(lib, rel, p, sizeof p);
    size_t stop = strlen(lib->home) + strlen("/models");
    char *slash;
    while ((slash = strrchr(p, '/')) && (size_t)(slash - p) > stop) {
        *slash = '\0';
        if (rmdir(p) != 0) break;
    }
}

em_status em_library_remove(em_library *lib, const char *name) {
    const em_lib_model *found = em_library_find(lib, name);
    if (!found) return em_error(EM_ERR_NOT_FOUND, "no model named '%s' in the library (see ember list)", name);
    int idx = (int)(found - lib->list.models);
    em_lib_model m = lib->list.models[idx];
    /* The index first: a model must never be listed with files missing. */
    memmove(&lib->list.models[idx], &lib->list.models[idx + 1],
            (size_t)(lib->list.n - idx - 1) * sizeof m);
    lib->list.n--;
    em_status st = save_index(lib);
    if (st) {
        /* Put it back: nothing changed on disk. */
        memmove(&lib->list.models[idx + 1], &lib->list.models[idx], (size_t)(lib->list.n - idx) * sizeof m);
        lib->list.models[idx] = m;
        lib->list.n++;
        return st;
    }
    for (int k = 0; k < m.n_files; k++) {
        if (path_shared(lib, -1, m.files[k].path)) continue;
        char p[EM_LIB_PATH_MAX + 16];
        em_library_path(lib, m.files[k].path, p, sizeof p);
        unlink(p);
        prune_dirs(lib, m.files[k].path);
    }
    em_lib_model_free(&m);
    return EM_OK;
}

/* Drops the prefixes a user may paste from the hub's web page. */
static const char *strip_hub_prefix(const char *name) {
    static const char *const prefixes[] = {"https://huggingface.co/", "https://hf.co/", "huggingface.co/", "hf.co/"};
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++)
        if (!strncmp(name, prefixes[i], strlen(prefixes[i]))) return name + strlen(prefixes[i]);
    return name;
}

const em_lib_model *em_library_find(const em_library *lib, const char *name) {
    const em_lib_list *l = &lib->list;
    name = strip_hub_prefix(name);
    int i = em_lib_list_find(l, name);
    if (i >= 0) return &l->models[i];
    /* ORG/REPO: the repository's only model, or its default quantization. */
    const em_lib_model *only = NULL;
    int n_repo = 0;
    for (i = 0; i < l->n; i++) {
        if (strcmp(l->models[i].repo, name)) continue;
        n_repo++;
        only = &l->models[i];
        if (!strcasecmp(l->models[i].quant, "Q4_K_M")) return only;
    }
    if (n_repo == 1) return only;
    /* ORG/REPO/FILE.gguf: the model holding that file. */
    char rel[EM_LIB_PATH_MAX + 8];
    snprintf(rel, sizeof rel, "models/%s", name);
    for (i = 0; i < l->n; i++)
        for (int k = 0; k < l->models[i].n_files; k++)
            if (!strcmp(l->models[i].files[k].path, rel)) return &l->models[i];
    return NULL;
}

em_status em_library_resolve(const char *name, char *path_out, size_t size) {
    if (!name || !path_out || !size) return em_error(EM_ERR_INVALID_ARG, "library: resolve needs a name and a buffer");
    struct stat sb;
    if (stat(name, &sb) == 0) {
        if (snprintf(path_out, size, "%s", name) >= (int)size)
            return em_error(EM_ERR_INVALID_ARG, "path too long: %s", name);
        return EM_OK;
    }
    em_library *lib;
    em_status st = em_library_open(&lib, false);
    if (st) return st;
    const em_lib_model *m = em_library_find(lib, name);
    if (!m) {
        em_library_free(lib);
        return em_error(EM_ERR_NOT_FOUND,
                        "'%s' is neither a file nor a model in the library (ember list shows the library; "
                        "ember pull ORG/REPO:QUANT fetches one)", name);
    }
    char p[EM_LIB_PATH_MAX * 2 + 8];
    em_library_path(lib, m->files[0].path, p, sizeof p);
    em_library_free(lib);
    if (snprintf(path_out, size, "%s", p) >= (int)size) return em_error(EM_ERR_INVALID_ARG, "path too long: %s", p);
    return EM_OK;
}
