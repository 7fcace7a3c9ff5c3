/*
 * bundle.c - carrying models across an air gap: a ustar file holding
 *
 *   manifest.json   the models (names, files, sizes, sha256), as models.c
 *                   writes it with "format": "ember-bundle"
 *   manifest.sig    optional: {"algorithm": "ed25519", "public_key": HEX,
 *                   "signature": HEX}, the signature over manifest.json's
 *                   exact bytes
 *   models/...      the files, at their library paths
 *
 * Import trusts nothing until it is checked: the manifest is parsed
 * strictly, the signature verified, and every file streamed into a
 * private folder under the library's tmp/ while it is hashed.  Only when
 * every file of the manifest has arrived whole and matching are the files
 * moved into place and the models indexed; any failure removes the folder.
 */
#include "library/library.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MANIFEST_MAX ((uint64_t)16 << 20)
#define SIG_MAX 4096
#define CHUNK (1 << 20)

static const char *const KIND = "ember-bundle";

/* ------------------------------------------------------------------ keys */

/* Reads a key file: one line "ed25519-TAG HEX". */
static em_status read_key(const char *path, const char *tag, unsigned char *key, size_t len) {
    FILE *f = fopen(path, "r");
    if (!f) return em_error(EM_ERR_IO, "bundle: cannot open key %s: %s", path, strerror(errno));
    char line[512] = "";
    bool got = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    char want[64];
    int wl = snprintf(want, sizeof want, "ed25519-%s ", tag);
    size_t bin_len = 0;
    const char *end = NULL;
    if (!got || strncmp(line, want, (size_t)wl) ||
        sodium_hex2bin(key, len, line + wl, strlen(line + wl), "\n", &bin_len, &end) != 0 || bin_len != len) {
        sodium_memzero(line, sizeof line);
        return em_error(EM_ERR_FORMAT, "bundle: %s is not an ember ed25519 %s key (from ember bundle keygen)", path,
                        tag);
    }
    sodium_memzero(line, sizeof line);
    return EM_OK;
}

static em_status write_key(const char *path, const char *tag, const unsigned char *key, size_t len, int mode) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) return em_error(EM_ERR_IO, "bundle: cannot create %s: %s", path, strerror(errno));
    char hex[2 * crypto_sign_SECRETKEYBYTES + 1];
    sodium_bin2hex(hex, sizeof hex, key, len);
    char line[sizeof hex + 32];
    int n = snprintf(line, sizeof line, "ed25519-%s %s\n", tag, hex);
    bool ok = write(fd, line, (size_t)n) == n;
    ok = close(fd) == 0 && ok;
    sodium_memzero(hex, sizeof hex);
    sodium_memzero(line, sizeof line);
    if (!ok) {
        unlink(path);
        return em_error(EM_ERR_IO, "bundle: cannot write %s", path);
    }
    return EM_OK;
}

em_status em_bundle_keygen(const char *key_path) {
    if (sodium_init() < 0) return em_error(EM_ERR_INTERNAL, "bundle: libsodium failed to start");
    unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    crypto_sign_keypair(pk, sk);
    char pub_path[4096];
    if (snprintf(pub_path, sizeof pub_path, "%s.pub", key_path) >= (int)sizeof pub_path)
        return em_error(EM_ERR_INVALID_ARG, "bundle: key path too long");
    if (access(pub_path, F_OK) == 0) return em_error(EM_ERR_IO, "bundle: %s exists: not overwriting it", pub_path);
    em_status st = write_key(key_path, "secret", sk, sizeof sk, 0600);
    sodium_memzero(sk, sizeof sk);
    if (st) return st;
    st = write_key(pub_path, "public", pk, sizeof pk, 0644);
    if (st) unlink(key_path);
    return st;
}

/* ---------------------------------------------------------------- export */

static em_status copy_into_tar(FILE *out, const char *src, const em_lib_file *lf, unsigned char *buf) {
    FILE *in = fopen(src, "rb");
    if (!in) return em_error(EM_ERR_IO, "bundle: cannot open %s: %s", src, strerror(errno));
    em_status st = em_tar_write_header(out, lf->path, lf->size, (uint64_t)time(NULL));
    em_sha256 h;
    em_sha256_init(&h);
    uint64_t done = 0;
    size_t got;
    while (!st && (got = fread(buf, 1, CHUNK, in)) > 0) {
        if (done + got > lf->size) break;
        em_sha256_update(&h, buf, got);
        if (fwrite(buf, 1, got, out) != got) st = em_error(EM_ERR_IO, "bundle: write failed: %s", strerror(errno));
        done += got;
    }
    bool rerr = ferror(in);
    fclose(in);
    if (st) return st;
    char hex[65];
    em_sha256_final(&h, hex);
    if (rerr) return em_error(EM_ERR_IO, "bundle: cannot read %s", src);
    if (done != lf->size || strcmp(hex, lf->sha256))
        return em_error(EM_ERR_FORMAT, "bundle: %s changed since it entered the library (size or sha256 differ); "
                        "pull or import it again", src);
    return em_tar_write_pad(out, lf->size);
}

static em_status write_text_entry(FILE *f, const char *name, const char *text) {
    size_t n = strlen(text);
    em_status st = em_tar_write_header(f, name, n, (uint64_t)time(NULL));
    if (!st && fwrite(text, 1, n, f) != n) st = em_error(EM_ERR_IO, "bundle: write failed: %s", strerror(errno));
    if (!st) st = em_tar_write_pad(f, n);
    return st;
}

static char *sign_manifest(const char *manifest, const char *key_path) {
    unsigned char sk[crypto_sign_SECRETKEYBYTES], pk[crypto_sign_PUBLICKEYBYTES], sig[crypto_sign_BYTES];
    if (read_key(key_path, "secret", sk, sizeof sk)) return NULL;
    crypto_sign_detached(sig, NULL, (const unsigned char *)manifest, strlen(manifest), sk);
    crypto_sign_ed25519_sk_to_pk(pk, sk);
    sodium_memzero(sk, sizeof sk);
    char pk_hex[2 * sizeof pk + 1], sig_hex[2 * sizeof sig + 1];
    sodium_bin2hex(pk_hex, sizeof pk_hex, pk, sizeof pk);
    sodium_bin2hex(sig_hex, sizeof sig_hex, sig, sizeof sig);
    json_t *j = json_pack("{s:s, s:s, s:s}", "algorithm", "ed25519", "public_key", pk_hex, "signature", sig_hex);
    char *text = j ? json_dumps(j, JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    if (!text) em_error(EM_ERR_NOMEM, "bundle: out of memory");
    return text;
}

em_status em_bundle_export(const char *const *names, int n, const char *out_path, const char *sign_key) {
    if (sodium_init() < 0) return em_error(EM_ERR_INTERNAL, "bundle: libsodium failed to start");
    em_library *lib = NULL;
    em_lib_list list = {0};
    char *manifest = NULL, *sig = NULL;
    unsigned char *buf = NULL;
    FILE *f = NULL;
    char tmp[4096];
    bool made = false;
    em_status st = em_library_open(&lib, false);
    for (int i = 0; !st && i < n; i++) {
        const em_lib_model *m = em_library_find(lib, names[i]);
        if (!m) st = em_error(EM_ERR_NOT_FOUND, "bundle: no model named '%s' in the library (see ember list)", names[i]);
        else st = em_lib_list_put(&list, m);
    }
    if (!st && !(manifest = em_lib_list_dump(&list, KIND))) st = em_error(EM_ERR_NOMEM, "bundle: out of memory");
    if (!st && sign_key && !(sig = sign_manifest(manifest, sign_key))) st = EM_ERR_FORMAT;
    if (!st && snprintf(tmp, sizeof tmp, "%s.tmp", out_path) >= (int)sizeof tmp)
        st = em_error(EM_ERR_INVALID_ARG, "bundle: output path too long");
    if (!st && !(buf = malloc(CHUNK))) st = em_error(EM_ERR_NOMEM, "bundle: out of memory");
    if (!st && !(f = fopen(tmp, "wb"))) st = em_error(EM_ERR_IO, "bundle: cannot create %s: %s", tmp, strerror(errno));
    made = f != NULL;
    if (!st) st = write_text_entry(f, "manifest.json", manifest);
    if (!st && sig) st = write_text_entry(f, "manifest.sig", sig);
    for (int i = 0; !st && i < list.n; i++)
        for (int k = 0; !st && k < list.models[i].n_files; k++) {
            const em_lib_file *lf = &list.models[i].files[k];
            bool dup = false; /* a file two models share goes in once */
            for (int a = 0; a <= i && !dup; a++)
                for (int b = 0; b < (a == i ? k : list.models[a].n_files) && !dup; b++)
                    dup = !strcmp(list.models[a].files[b].path, lf->path);
            if (dup) continue;
            char src[EM_LIB_PATH_MAX * 2];
            em_library_path(lib, lf->path, src, sizeof src);
            st = copy_into_tar(f, src, lf, buf);
        }
    if (!st) st = em_tar_write_end(f);
    if (f) {
        bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
        ok = fclose(f) == 0 && ok;
        if (!st && !ok) st = em_error(EM_ERR_IO, "bundle: cannot write %s: %s", tmp, strerror(errno));
    }
    if (!st && rename(tmp, out_path) != 0)
        st = em_error(EM_ERR_IO, "bundle: cannot rename %s to %s: %s", tmp, out_path, strerror(errno));
    if (st && made) unlink(tmp);
    free(buf);
    free(sig);
    free(manifest);
    em_lib_list_free(&list);
    em_library_free(lib);
    return st;
}

/* ---------------------------------------------------------------- import */

/* Reads a small entry whole (NUL-terminated). */
static em_status read_small(FILE *f, const em_tar_entry *e, uint64_t max, char **out) {
    if (e->size > max)
        return em_error(EM_ERR_FORMAT, "bundle: %s is %llu bytes, more than the %llu allowed", e->name,
                        (unsigned long long)e->size, (unsigned long long)max);
    char *p = malloc((size_t)e->size + 1);
    if (!p) return em_error(EM_ERR_NOMEM, "bundle: out of memory");
    if (fread(p, 1, (size_t)e->size, f) != e->size) {
        free(p);
        return em_error(EM_ERR_FORMAT, "bundle: the file is truncated inside %s", e->name);
    }
    p[e->size] = '\0';
    *out = p;
    return em_tar_skip_pad(f, e->size);
}

/* Checks manifest.sig against the manifest; *signer gets the key (hex). */
static em_status check_signature(const char *manifest, const char *sig_text, char signer[65]) {
    json_error_t jerr;
    json_t *j = json_loads(sig_text, 0, &jerr);
    const char *alg = json_string_value(json_object_get(j, "algorithm"));
    const char *pk_hex = json_string_value(json_object_get(j, "public_key"));
    const char *sig_hex = json_string_value(json_object_get(j, "signature"));
    unsigned char pk[crypto_sign_PUBLICKEYBYTES], sig[crypto_sign_BYTES];
    size_t n1 = 0, n2 = 0;
    em_status st = EM_OK;
    if (!alg || strcmp(alg, "ed25519") || !pk_hex || !sig_hex ||
        sodium_hex2bin(pk, sizeof pk, pk_hex, strlen(pk_hex), NULL, &n1, NULL) || n1 != sizeof pk ||
        sodium_hex2bin(sig, sizeof sig, sig_hex, strlen(sig_hex), NULL, &n2, NULL) || n2 != sizeof sig)
        st = em_error(EM_ERR_FORMAT, "bundle: manifest.sig is not an ed25519 signature ember can read");
    else if (crypto_sign_verify_detached(sig, (const unsigned char *)manifest, strlen(manifest), pk) != 0)
        st = em_error(EM_ERR_FORMAT, "bundle: the manifest's signature does not verify: the manifest was changed "
                      "after it was signed; refusing the bundle");
    else
        sodium_bin2hex(signer, 65, pk, sizeof pk);
    json_decref(j);
    return st;
}

typedef struct import_state {
    em_lib_list list;   /* the manifest                         */
    bool *seen;         /* [sum of files] by flat index         */
    int n_flat;
    char dir[4096];     /* the private folder under tmp/        */
    unsigned char *buf; /* CHUNK bytes                          */
} import_state;

/* The manifest's file with this path, by flat index; -1 when none. */
static int flat_find(const import_state *s, const char *path, const em_lib_file **lf) {
    int idx = 0;
    for (int i = 0; i < s->list.n; i++)
        for (int k = 0; k < s->list.models[i].n_files; k++, idx++)
            if (!strcmp(s->list.models[i].files[k].path, path)) {
                *lf = &s->list.models[i].files[k];
                return idx;
            }
    return -1;
}

static void mark_seen(import_state *s, const char *path) {
    int idx = 0;
    for (int i = 0; i < s->list.n; i++)
        for (int k = 0; k < s->list.models[i].n_files; k++, idx++)
            if (!strcmp(s->list.models[i].files[k].path, path)) s->seen[idx] = true;
}

/* Streams one file entry into the private folder, hashing it. */
static em_status extract_file(import_state *s, FILE *f, const em_tar_entry *e) {
    const em_lib_file *lf = NULL;
    int idx = flat_find(s, e->name, &lf);
    if (idx < 0) return em_error(EM_ERR_FORMAT, "bundle: %s is not in the manifest; refusing the bundle", e->name);
    if (s->seen[idx]) return em_error(EM_ERR_FORMAT, "bundle: %s appears twice; refusing the bundle", e->name);
    if (e->size != lf->size)
        return em_error(EM_ERR_FORMAT, "bundle: %s holds %llu bytes, the manifest says %llu; refusing the bundle",
                        e->name, (unsigned long long)e->size, (unsigned long long)lf->size);
    char dest[4096 + EM_TAR_NAME_MAX + 2];
    snprintf(dest, sizeof dest, "%s/%s", s->dir, e->name);
    em_status st = em_mkdir_parents(dest);
    if (st) return st;
    FILE *out = fopen(dest, "wb");
    if (!out) return em_error(EM_ERR_IO, "bundle: cannot create %s: %s", dest, strerror(errno));
    em_sha256 h;
    em_sha256_init(&h);
    uint64_t left = e->size;
    while (!st && left > 0) {
        size_t want = (size_t)EM_MIN(left, (uint64_t)CHUNK);
        size_t got = fread(s->buf, 1, want, f);
        em_sha256_update(&h, s->buf, got);
        if (got && fwrite(s->buf, 1, got, out) != got)
            st = em_error(EM_ERR_IO, "bundle: cannot write %s: %s", dest, strerror(errno));
        left -= got;
        if (!st && got < want)
            st = em_error(EM_ERR_FORMAT, "bundle: the file is truncated: %s ends after %llu of %llu bytes; "
                          "nothing was imported", e->name, (unsigned long long)(e->size - left),
                          (unsigned long long)e->size);
    }
    if (fclose(out) != 0 && !st) st = em_error(EM_ERR_IO, "bundle: cannot write %s", dest);
    if (st) return st;
    char hex[65];
    em_sha256_final(&h, hex);
    if (strcmp(hex, lf->sha256))
        return em_error(EM_ERR_FORMAT, "bundle: %s does not match the manifest (sha256 %s, expected %s): the bundle "
                        "was altered or damaged; nothing was imported", e->name, hex, lf->sha256);
    mark_seen(s, e->name);
    return em_tar_skip_pad(f, e->size);
}

static em_status read_entries(import_state *s, FILE *f, const char *require_signer) {
    em_tar_entry e;
    bool end;
    char *manifest = NULL, *sig = NULL;
    em_status st = em_tar_next(f, &e, &end);
    if (!st && (end || e.type != '0' || strcmp(e.name, "manifest.json")))
        st = em_error(EM_ERR_FORMAT, "bundle: the first entry is not manifest.json: not an ember bundle");
    if (!st) st = read_small(f, &e, MANIFEST_MAX, &manifest);
    if (!st) {
        st = em_lib_list_parse(manifest, strlen(manifest), KIND, &s->list);
        if (st) {
            char why[256];
            snprintf(why, sizeof why, "%s", em_last_error());
            st = em_error(st, "bundle: manifest.json: %s", why);
        }
    }
    if (!st) st = em_tar_next(f, &e, &end);
    bool pending = !st && !end; /* e is the first entry after the manifest */
    if (pending && e.type == '0' && !strcmp(e.name, "manifest.sig")) {
        pending = false;
        st = read_small(f, &e, SIG_MAX, &sig);
    }
    char signer[65] = "";
    if (!st && sig) st = check_signature(manifest, sig, signer);
    if (!st && require_signer) {
        unsigned char want[crypto_sign_PUBLICKEYBYTES];
        char want_hex[65];
        st = read_key(require_signer, "public", want, sizeof want);
        if (!st) sodium_bin2hex(want_hex, sizeof want_hex, want, sizeof want);
        if (!st && !sig)
            st = em_error(EM_ERR_FORMAT, "bundle: it is not signed, and --require-signer asks for a signature by %s",
                          require_signer);
        else if (!st && strcmp(signer, want_hex))
            st = em_error(EM_ERR_FORMAT, "bundle: it is signed by key %.16s..., not by %s (%.16s...); refusing it",
                          signer, require_signer, want_hex);
    }
    if (!st && sig) fprintf(stderr, "bundle: manifest signed by ed25519 key %s\n", signer);
    free(manifest);
    free(sig);
    for (int i = 0; i < s->list.n; i++) s->n_flat += s->list.models[i].n_files;
    if (!st && !(s->seen = calloc((size_t)s->n_flat + 1, 1))) st = em_error(EM_ERR_NOMEM, "bundle: out of memory");
    while (!st && !end) {
        if (!pending) st = em_tar_next(f, &e, &end);
        pending = false;
        if (st || end) break;
        if (!em_tar_path_ok(e.name) || strncmp(e.name, "models/", 7))
            st = em_error(EM_ERR_FORMAT, "bundle: entry '%s' is not a plain path under models/; refusing the bundle",
                          e.name);
        else if (e.type == '0') st = extract_file(s, f, &e);
    }
    for (int i = 0, idx = 0; !st && i < s->list.n; i++)
        for (int k = 0; !st && k < s->list.models[i].n_files; k++, idx++)
            if (!s->seen[idx])
                st = em_error(EM_ERR_FORMAT, "bundle: %s is missing (the bundle is truncated or incomplete); "
                              "nothing was imported", s->list.models[i].files[k].path);
    return st;
}

em_status em_bundle_import(const char *tar_path, const char *require_signer, char *names_out, size_t size) {
    if (sodium_init() < 0) return em_error(EM_ERR_INTERNAL, "bundle: libsodium failed to start");
    import_state s = {0};
    em_library *lib = NULL;
    FILE *f = fopen(tar_path, "rb");
    if (!f) return em_error(EM_ERR_IO, "bundle: cannot open %s: %s", tar_path, strerror(errno));
    em_status st = em_library_open(&lib, true);
    char tmpl[EM_LIB_PATH_MAX + 32];
    if (!st && !em_library_path(lib, "tmp/import-XXXXXX", tmpl, sizeof tmpl))
        st = em_error(EM_ERR_INVALID_ARG, "bundle: the library's path is too long");
    if (!st) st = em_mkdir_parents(tmpl);
    if (!st && !mkdtemp(tmpl)) st = em_error(EM_ERR_IO, "bundle: cannot create %s: %s", tmpl, strerror(errno));
    bool made = !st;
    if (!st) snprintf(s.dir, sizeof s.dir, "%s", tmpl);
    if (!st && !(s.buf = malloc(CHUNK))) st = em_error(EM_ERR_NOMEM, "bundle: out of memory");
    if (!st) st = read_entries(&s, f, require_signer);

    /* A path the library already holds must hold the same bytes, or the
     * import would change another model under its feet. */
    const em_lib_list *have = st ? NULL : em_library_models(lib);
    for (int i = 0; have && !st && i < s.list.n; i++)
        for (int k = 0; !st && k < s.list.models[i].n_files; k++)
            for (int a = 0; !st && a < have->n; a++)
                for (int b = 0; !st && b < have->models[a].n_files; b++) {
                    const em_lib_file *x = &s.list.models[i].files[k], *y = &have->models[a].files[b];
                    if (!strcmp(x->path, y->path) && strcmp(x->sha256, y->sha256) &&
                        strcmp(have->models[a].name, s.list.models[i].name))
                        st = em_error(EM_ERR_FORMAT, "bundle: %s would replace a different file of model %s; "
                                      "remove that model first", x->path, have->models[a].name);
                }
    /* Everything checked: move into place, then index. */
    for (int i = 0; !st && i < s.list.n; i++)
        for (int k = 0; !st && k < s.list.models[i].n_files; k++) {
            const char *rel = s.list.models[i].files[k].path;
            char from[4096 + EM_LIB_PATH_MAX + 2], to[EM_LIB_PATH_MAX * 2];
            snprintf(from, sizeof from, "%s/%s", s.dir, rel);
            em_library_path(lib, rel, to, sizeof to);
            if (access(from, F_OK) != 0) continue; /* a file two models share moved already */
            st = em_mkdir_parents(to);
            if (!st && rename(from, to) != 0) st = em_error(EM_ERR_IO, "bundle: cannot move %s: %s", to, strerror(errno));
        }
    if (names_out && size) names_out[0] = '\0';
    for (int i = 0; !st && i < s.list.n; i++) {
        em_lib_model m = s.list.models[i];
        char src[EM_LIB_PATH_MAX];
        snprintf(src, sizeof src, "bundle %.*s", (int)(sizeof src - 8), tar_path);
        memcpy(m.source, src, sizeof m.source);
        st = em_library_add(lib, &m);
        if (!st && names_out) {
            size_t used = strlen(names_out);
            snprintf(names_out + used, size - used, "%s%s", used ? ", " : "", m.name);
        }
    }
    if (made) em_remove_tree(s.dir);
    fclose(f);
    free(s.buf);
    free(s.seen);
    em_lib_list_free(&s.list);
    em_library_free(lib);
    return st;
}
