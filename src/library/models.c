/*
 * models.c - lists of models as index.json and bundle manifests hold them,
 * and the quantization names that pick a file out of a hub repository.
 *
 * Both JSON files have one shape:
 *
 *   {"format": "ember-library" | "ember-bundle", "version": 1,
 *    "models": [{"name": "ORG/REPO:Q4_K_M", "repo": "ORG/REPO",
 *                "quant": "Q4_K_M", "source": "https://...",
 *                "files": [{"path": "models/ORG/REPO/x-Q4_K_M.gguf",
 *                           "size": 123, "sha256": "ab12..."}]}]}
 *
 * A manifest comes from outside, so the parser checks every field: a path
 * that could escape the library, a digest that is not one, a duplicate
 * path or name, all refuse the whole file.
 */
#include "library/library.h"

#include <ctype.h>
#include <strings.h>
#include <jansson.h>
#include <stdlib.h>

void em_lib_model_free(em_lib_model *m) {
    if (!m) return;
    free(m->files);
    m->files = NULL;
    m->n_files = 0;
}

void em_lib_list_free(em_lib_list *l) {
    if (!l) return;
    for (int i = 0; i < l->n; i++) em_lib_model_free(&l->models[i]);
    free(l->models);
    l->models = NULL;
    l->n = 0;
}

int em_lib_list_find(const em_lib_list *l, const char *name) {
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->models[i].name, name)) return i;
    return -1;
}

em_status em_lib_list_put(em_lib_list *l, const em_lib_model *m) {
    em_lib_model copy = *m;
    copy.files = malloc((size_t)EM_MAX(m->n_files, 1) * sizeof *copy.files);
    if (!copy.files) return em_error(EM_ERR_NOMEM, "library: out of memory");
    memcpy(copy.files, m->files, (size_t)m->n_files * sizeof *copy.files);
    int i = em_lib_list_find(l, m->name);
    if (i >= 0) {
        em_lib_model_free(&l->models[i]);
        l->models[i] = copy;
        return EM_OK;
    }
    em_lib_model *grown = realloc(l->models, (size_t)(l->n + 1) * sizeof *grown);
    if (!grown) {
        free(copy.files);
        return em_error(EM_ERR_NOMEM, "library: out of memory");
    }
    l->models = grown;
    l->models[l->n++] = copy;
    return EM_OK;
}

/* ------------------------------------------------------------------ JSON */

/* A name or repo: printable ASCII without spaces or quotes, bounded. */
static bool name_ok(const char *s, size_t max) {
    size_t n = strlen(s);
    if (n == 0 || n >= max) return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] >= 0x7f || s[i] == '"' || s[i] == '\\') return false;
    return true;
}

static bool path_ok(const char *p) {
    size_t n = strlen(p);
    return n < EM_LIB_PATH_MAX && !strncmp(p, "models/", 7) && em_tar_path_ok(p) && n > 12 &&
           !strcmp(p + n - 5, ".gguf");
}

static em_status copy_field(json_t *obj, const char *key, char *dst, size_t size, bool required, int mi) {
    json_t *v = json_object_get(obj, key);
    if (!v) {
        if (required) return em_error(EM_ERR_FORMAT, "model %d has no \"%s\"", mi, key);
        dst[0] = '\0';
        return EM_OK;
    }
    if (!json_is_string(v) || json_string_length(v) >= size || strlen(json_string_value(v)) != json_string_length(v))
        return em_error(EM_ERR_FORMAT, "model %d: \"%s\" is not a string of at most %zu bytes", mi, key, size - 1);
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return EM_OK;
}

static em_status parse_model(json_t *jm, int mi, em_lib_model *m) {
    memset(m, 0, sizeof *m);
    if (!json_is_object(jm)) return em_error(EM_ERR_FORMAT, "model %d is not an object", mi);
    em_status st = copy_field(jm, "name", m->name, sizeof m->name, true, mi);
    if (!st) st = copy_field(jm, "repo", m->repo, sizeof m->repo, true, mi);
    if (!st) st = copy_field(jm, "quant", m->quant, sizeof m->quant, false, mi);
    if (!st) st = copy_field(jm, "source", m->source, sizeof m->source, false, mi);
    if (st) return st;
    if (!name_ok(m->name, sizeof m->name) || !name_ok(m->repo, sizeof m->repo) ||
        (m->quant[0] && !name_ok(m->quant, sizeof m->quant)))
        return em_error(EM_ERR_FORMAT, "model %d: its name, repo or quant holds spaces, quotes or control bytes", mi);
    json_t *jf = json_object_get(jm, "files");
    size_t nf = json_array_size(jf);
    if (!json_is_array(jf) || nf == 0 || nf > EM_LIB_MAX_FILES)
        return em_error(EM_ERR_FORMAT, "model '%s': \"files\" must be an array of 1 to %d files", m->name,
                        EM_LIB_MAX_FILES);
    m->files = calloc(nf, sizeof *m->files);
    if (!m->files) return em_error(EM_ERR_NOMEM, "library: out of memory");
    m->n_files = (int)nf;
    for (size_t k = 0; k < nf; k++) {
        json_t *f = json_array_get(jf, k);
        em_lib_file *lf = &m->files[k];
        json_t *p = json_object_get(f, "path"), *sz = json_object_get(f, "size"), *h = json_object_get(f, "sha256");
        if (!json_is_string(p) || !json_is_integer(sz) || !json_is_string(h))
            return em_error(EM_ERR_FORMAT, "model '%s', file %zu: needs \"path\", \"size\" and \"sha256\"", m->name, k);
        const char *ps = json_string_value(p);
        if (strlen(ps) != json_string_length(p) || !path_ok(ps))
            return em_error(EM_ERR_FORMAT,
                            "model '%s', file %zu: the path must be a plain relative path under models/ ending "
                            "in .gguf", m->name, k);
        if (json_integer_value(sz) < 0) return em_error(EM_ERR_FORMAT, "model '%s': a negative size", m->name);
        if (!em_sha256_hex_ok(json_string_value(h)))
            return em_error(EM_ERR_FORMAT, "model '%s', file %zu: \"sha256\" is not 64 hex digits", m->name, k);
        snprintf(lf->path, sizeof lf->path, "%s", ps);
        lf->size = (uint64_t)json_integer_value(sz);
        for (int c = 0; c < 64; c++) lf->sha256[c] = (char)tolower((unsigned char)json_string_value(h)[c]);
        lf->sha256[64] = '\0';
    }
    return EM_OK;
}

em_status em_lib_list_parse(const char *text, size_t len, const char *kind, em_lib_list *out) {
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return em_error(EM_ERR_FORMAT, "%s: not JSON (line %d: %s)", kind, jerr.line, jerr.text);
    em_status st = EM_OK;
    json_t *fmt = json_object_get(root, "format"), *ver = json_object_get(root, "version");
    json_t *models = json_object_get(root, "models");
    if (!json_is_object(root) || !json_is_string(fmt) || strcmp(json_string_value(fmt), kind))
        st = em_error(EM_ERR_FORMAT, "not an %s file (its \"format\" is not \"%s\")", kind, kind);
    else if (!json_is_integer(ver) || json_integer_value(ver) != 1)
        st = em_error(EM_ERR_UNSUPPORTED, "%s: version %lld is not supported (ember reads version 1)", kind,
                      json_is_integer(ver) ? (long long)json_integer_value(ver) : -1LL);
    else if (!json_is_array(models) || json_array_size(models) > 100000)
        st = em_error(EM_ERR_FORMAT, "%s: \"models\" is not an array", kind);
    for (size_t i = 0; !st && i < json_array_size(models); i++) {
        em_lib_model m;
        st = parse_model(json_array_get(models, i), (int)i, &m);
        if (!st && em_lib_list_find(out, m.name) >= 0)
            st = em_error(EM_ERR_FORMAT, "%s: model '%s' appears twice", kind, m.name);
        /* One path, one owner: otherwise two entries could claim the same
         * bytes with different digests. */
        for (int a = 0; !st && a < m.n_files; a++) {
            for (int b = 0; !st && b < a; b++)
                if (!strcmp(m.files[a].path, m.files[b].path))
                    st = em_error(EM_ERR_FORMAT, "%s: path '%s' appears twice", kind, m.files[a].path);
            for (int o = 0; !st && o < out->n; o++)
                for (int b = 0; !st && b < out->models[o].n_files; b++)
                    if (!strcmp(m.files[a].path, out->models[o].files[b].path) &&
                        (strcmp(m.files[a].sha256, out->models[o].files[b].sha256) ||
                         m.files[a].size != out->models[o].files[b].size))
                        st = em_error(EM_ERR_FORMAT, "%s: path '%s' appears twice with different contents", kind,
                                      m.files[a].path);
        }
        if (!st) st = em_lib_list_put(out, &m);
        em_lib_model_free(&m);
    }
    json_decref(root);
    if (st) em_lib_list_free(out);
    return st;
}

char *em_lib_list_dump(const em_lib_list *l, const char *kind) {
    json_t *root = json_object(), *models = json_array();
    json_object_set_new(root, "format", json_string(kind));
    json_object_set_new(root, "version", json_integer(1));
    for (int i = 0; i < l->n; i++) {
        const em_lib_model *m = &l->models[i];
        json_t *jm = json_object(), *files = json_array();
        json_object_set_new(jm, "name", json_string(m->name));
        json_object_set_new(jm, "repo", json_string(m->repo));
        if (m->quant[0]) json_object_set_new(jm, "quant", json_string(m->quant));
        if (m->source[0]) json_object_set_new(jm, "source", json_string(m->source));
        for (int k = 0; k < m->n_files; k++) {
            json_t *f = json_object();
            json_object_set_new(f, "path", json_string(m->files[k].path));
            json_object_set_new(f, "size", json_integer((json_int_t)m->files[k].size));
            json_object_set_new(f, "sha256", json_string(m->files[k].sha256));
            json_array_append_new(files, f);
        }
        json_object_set_new(jm, "files", files);
        json_array_append_new(models, jm);
    }
    json_object_set_new(root, "models", models);
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    return s;
}

/* -------------------------------------------------------- quantizations */

/* Best quality first: the order `pull` falls back along when the asked-for
 * quantization is absent (the nearest rank wins, ties go to the better). */
static const char *const quant_order[] = {
    "F32",    "BF16",   "F16",     "Q8_0",    "Q6_K",   "Q5_K_M", "Q5_K_S", "Q5_1",  "Q5_0",
    "Q4_K_M", "Q4_K_S", "IQ4_NL",  "IQ4_XS",  "Q4_1",   "Q4_0",   "Q3_K_L", "Q3_K_M", "IQ3_M",
    "IQ3_S",  "Q3_K_S", "IQ3_XS",  "IQ3_XXS", "Q2_K",   "Q2_K_S", "IQ2_M",  "IQ2_S", "IQ2_XS",
    "IQ2_XXS", "IQ1_M", "IQ1_S",   "TQ2_0",   "TQ1_0",
};

int em_quant_rank(const char *quant) {
    for (size_t i = 0; i < sizeof quant_order / sizeof *quant_order; i++)
        if (!strcasecmp(quant, quant_order[i])) return (int)i;
    return -1;
}

static bool word_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

bool em_quant_from_filename(const char *path, char *out, size_t size) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    /* The longest name that stands as its own word wins, so Q4_K_M is not
     * read as Q4_K or Q4. */
    const char *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < sizeof quant_order / sizeof *quant_order; i++) {
        const char *q = quant_order[i];
        size_t n = strlen(q);
        for (const char *p = base; *p; p++) {
            if (strncasecmp(p, q, n)) continue;
            bool left = p == base || !isalnum((unsigned char)p[-1]);
            bool right = !word_char(p[n]);
            if (left && right && n > best_len) {
                best = q;
                best_len = n;
            }
        }
    }
    if (!best) return false;
    snprintf(out, size, "%s", best);
    return true;
}
