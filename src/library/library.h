/*
 * library.h - models by name: the local library in $EMBER_HOME, pulling
 * from a Hugging Face style hub, and verified bundles for carrying models
 * across an air gap.
 *
 * The library is a folder (default ~/.local/share/ember):
 *
 *   index.json                     every model: name, repo, quantization,
 *                                  and its files with size and sha256
 *   models/ORG/REPO/FILE.gguf      the files, as the hub names them
 *   models/ORG/REPO/FILE.gguf.part a download in progress (resumed)
 *   tmp/                           bundle imports being verified
 *   index.lock                     flock'ed while the index changes
 *
 * A model is visible only once it is in index.json, and it enters the
 * index only after every byte of every file has been checked against its
 * sha256, so a half-done pull or import is never a model.
 *
 * Nothing here touches the network except em_hub_pull.
 */
#ifndef EM_LIBRARY_H
#define EM_LIBRARY_H

#include "core/core.h"

#include <stdio.h>

#include <sodium.h>

/* ---------------------------------------------------------------- SHA-256
 * A thin layer over libsodium's crypto_hash_sha256 that speaks hex. */
typedef struct em_sha256 {
    crypto_hash_sha256_state st;
} em_sha256;

void em_sha256_init(em_sha256 *h);
void em_sha256_update(em_sha256 *h, const void *data, size_t n);
/* Writes 64 lowercase hex digits and a NUL. */
void em_sha256_final(em_sha256 *h, char hex[65]);
/* Hashes a whole file; *size (when not NULL) gets its length. */
em_status em_sha256_file(const char *path, char hex[65], uint64_t *size);
/* True for exactly 64 hex digits (either case). */
bool em_sha256_hex_ok(const char *s);

/* ------------------------------------------------------------------- tar
 * POSIX ustar, the subset bundles need: regular files and directories.
 * Sizes of 8 GiB and more use the base-256 size field (a GNU extension
 * that GNU tar, bsdtar and Python's tarfile read), since model files grow
 * past what 11 octal digits hold. */
#define EM_TAR_BLOCK 512
#define EM_TAR_NAME_MAX 256 /* prefix (155) + '/' + name (100) + NUL */

typedef struct em_tar_entry {
    char name[EM_TAR_NAME_MAX]; /* prefix/name joined, NUL-terminated */
    uint64_t size;              /* bytes of data that follow           */
    char type;                  /* '0' regular file, '5' directory     */
} em_tar_entry;

/* Writes the header of a regular file (name at most 255 bytes, split into
 * ustar's prefix and name at a '/'). */
em_status em_tar_write_header(FILE *f, const char *name, uint64_t size, uint64_t mtime);
/* Pads the data of an entry of size bytes to the next block. */
em_status em_tar_write_pad(FILE *f, uint64_t size);
/* The end of the archive: two zero blocks. */
em_status em_tar_write_end(FILE *f);

/* Parses one header block.  *end is set (and EM_OK returned) for a zero
 * block.  Refuses a bad checksum, a non-ustar magic, an unterminated or
 * empty name, and any type other than a regular file or a directory
 * (links and devices have no place in a bundle). */
em_status em_tar_parse_header(const uint8_t block[EM_TAR_BLOCK], em_tar_entry *e, bool *end);
/* Reads the next header from f; *end at the end marker or at a clean end
 * of file.  The caller then reads exactly e->size bytes of data and calls
 * em_tar_skip_pad. */
em_status em_tar_next(FILE *f, em_tar_entry *e, bool *end);
em_status em_tar_skip_pad(FILE *f, uint64_t size);
/* True for a relative path of plain components: no '/' at either end, no
 * empty, "." or ".." component, only [A-Za-z0-9._+-] and '/'. */
bool em_tar_path_ok(const char *path);

/* ---------------------------------------------------------------- models */
#define EM_LIB_NAME_MAX 256
#define EM_LIB_PATH_MAX 512
#define EM_LIB_MAX_FILES 256 /* parts of one split model */

typedef struct em_lib_file {
    char path[EM_LIB_PATH_MAX]; /* relative to the library: models/ORG/REPO/... */
    uint64_t size;              /* bytes                                         */
    char sha256[65];            /* lowercase hex                                 */
} em_lib_file;

typedef struct em_lib_model {
    char name[EM_LIB_NAME_MAX];  /* ORG/REPO:QUANT, the name commands take   */
    char repo[EM_LIB_NAME_MAX];  /* ORG/REPO                                   */
    char quant[32];              /* Q4_K_M..., or the file's stem when none    */
    char source[EM_LIB_PATH_MAX];/* where it came from (URL or bundle), text   */
    int n_files;                 /* 1, or the parts of a split model in order  */
    em_lib_file *files;          /* [n_files]                                  */
} em_lib_model;

/* A list of models, as index.json and a bundle's manifest.json hold them. */
typedef struct em_lib_list {
    em_lib_model *models; /* [n] */
    int n;
} em_lib_list;

void em_lib_list_free(em_lib_list *l);
/* Deep-copies m and appends it, replacing a model of the same name. */
em_status em_lib_list_put(em_lib_list *l, const em_lib_model *m);
/* Index of the model called name, -1 when absent. */
int em_lib_list_find(const em_lib_list *l, const char *name);
void em_lib_model_free(em_lib_model *m);

/* JSON text <-> list.  kind is "ember-library" (index.json) or
 * "ember-bundle" (manifest.json); the parser checks it, the version, every
 * name, size, digest and path (relative, under models/, no "..", ending in
 * .gguf, each path once) and refuses anything else with EM_ERR_FORMAT. */
em_status em_lib_list_parse(const char *json, size_t len, const char *kind, em_lib_list *out);
/* A heap string (caller frees); NULL when out of memory. */
char *em_lib_list_dump(const em_lib_list *l, const char *kind);

/* The quantization named in a file name ("Qwen3-0.6B-Q4_K_M.gguf" ->
 * "Q4_K_M"), upper case; false when it names none. */
bool em_quant_from_filename(const char *path, char *out, size_t size);
/* Rank of a quantization in the preference order (0 is the best
 * quality); -1 when unknown. */
int em_quant_rank(const char *quant);

/* --------------------------------------------------------------- library */
typedef struct em_library em_library;

/* Opens the library at $EMBER_HOME (default $HOME/.local/share/ember) and
 * reads its index; an absent folder or index is an empty library.  With
 * write, the index lock is held (flock) until em_library_free, and the
 * folders are created. */
em_status em_library_open(em_library **out, bool write);
void em_library_free(em_library *lib);
const char *em_library_home(const em_library *lib);
const em_lib_list *em_library_models(const em_library *lib);
/* The model a user's name means: an exact name; hf.co/ and
 * huggingface.co/ prefixes are dropped; "ORG/REPO" alone means that
 * repository's only model, or its Q4_K_M; "ORG/REPO/FILE.gguf" the model
 * holding that file.  NULL when none (or when ambiguous). */
const em_lib_model *em_library_find(const em_library *lib, const char *name);
/* Adds (or replaces) a model whose files are already in place, and saves
 * the index atomically.  Needs write. */
em_status em_library_add(em_library *lib, const em_lib_model *m);
/* Deletes a model's files and index entry (files another model shares
 * stay).  Needs write. */
em_status em_library_remove(em_library *lib, const char *name);
/* Path of a library-relative path; false when out is too small. */
bool em_library_path(const em_library *lib, const char *rel, char *out, size_t size);

/* What -m takes: a path that exists wins; else a library name, resolved to
 * the path of its (first) file.  EM_ERR_NOT_FOUND with a message naming
 * `ember list` and `ember pull` when it is neither. */
em_status em_library_resolve(const char *name, char *path_out, size_t size);

/* Creates every missing folder of path's parent (mkdir -p of dirname). */
em_status em_mkdir_parents(const char *path);
/* Removes a folder and everything under it; quiet about what is absent. */
void em_remove_tree(const char *path);

/* ------------------------------------------------------------------- hub */
/* Downloads a model into the library and adds it to the index.  spec is
 * hf.co/ORG/REPO[:QUANT] or ORG/REPO/FILE.gguf (hf.co/ optional).
 * Environment: HF_ENDPOINT (default https://huggingface.co), HF_TOKEN,
 * EMBER_OFFLINE=1 (refuse), and libcurl's proxy variables.  Progress goes
 * to stderr.  name_out gets the library name. */
em_status em_hub_pull(const char *spec, char *name_out, size_t size);

/* ---------------------------------------------------------------- bundle */
/* Writes the named models into a ustar file: manifest.json first, then
 * manifest.sig when sign_key is a key file, then every model file, each
 * re-hashed on the way and checked against the index.  The file appears
 * (renamed from OUT.tmp) only when complete. */
em_status em_bundle_export(const char *const *names, int n, const char *out_path, const char *sign_key);
/* Imports a bundle: every file is extracted into the library's tmp/,
 * checked against the manifest's size and sha256, and only then moved into
 * place and indexed; any failure removes what was extracted.  With
 * require_signer (a public key file) the manifest must carry a valid
 * signature by that key; a signature that does not verify is refused
 * always.  names_out (may be NULL) gets the imported names, comma-joined. */
em_status em_bundle_import(const char *tar_path, const char *require_signer, char *names_out, size_t size);
/* Writes a new ed25519 key pair: key_path (secret, mode 0600) and
 * key_path.pub.  Refuses to overwrite. */
em_status em_bundle_keygen(const char *key_path);

#endif /* EM_LIBRARY_H */
