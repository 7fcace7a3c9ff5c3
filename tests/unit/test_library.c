/*
 * test_library.c - the pieces under ember's model library that need no
 * network: SHA-256 against the FIPS 180-2 vectors, the ustar writer and
 * reader (round trip, long names, base-256 sizes, hostile headers), the
 * manifest/index parser (round trip and every refusal), quantization
 * names, and a library on disk (add, find, resolve, remove).
 */
#include "library/library.h"
#include "test.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static void sha_of(const char *s, size_t n, char hex[65]) {
    em_sha256 h;
    em_sha256_init(&h);
    em_sha256_update(&h, s, n);
    em_sha256_final(&h, hex);
}

static void test_sha256(void) {
    char hex[65];
    sha_of("", 0, hex);
    CHECK(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    sha_of("abc", 3, hex);
    CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha_of(two, strlen(two), hex);
    CHECK(!strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
    /* A million 'a', fed in uneven pieces so block boundaries fall
     * everywhere. */
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    em_sha256 h;
    em_sha256_init(&h);
    for (size_t o = 0, step = 1; o < 1000000; o += step, step = step * 3 % 997 + 1)
        em_sha256_update(&h, a + o, EM_MIN(step, 1000000 - o));
    em_sha256_final(&h, hex);
    CHECK(!strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));
    /* The file form agrees. */
    char path[] = "/tmp/ember-test-sha-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, a, 1000000) == 1000000);
    close(fd);
    uint64_t size = 0;
    char hex2[65];
    CHECK_OK(em_sha256_file(path, hex2, &size));
    CHECK(size == 1000000 && !strcmp(hex, hex2));
    unlink(path);
    free(a);
    CHECK(em_sha256_hex_ok("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));
    CHECK(!em_sha256_hex_ok("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd"));
    CHECK(!em_sha256_hex_ok("zdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));
}

static void test_tar(void) {
    FILE *f = tmpfile();
    CHECK(f != NULL);
    if (!f) return;
    char longname[220];
    snprintf(longname, sizeof longname, "models/%0120d/%070d.gguf", 1, 2);
    CHECK_OK(em_tar_write_header(f, "manifest.json", 5, 0));
    fwrite("hello", 1, 5, f);
    CHECK_OK(em_tar_write_pad(f, 5));
    CHECK_OK(em_tar_write_header(f, longname, 512, 0));
    char block[512];
    memset(block, 'x', sizeof block);
    fwrite(block, 1, sizeof block, f);
    CHECK_OK(em_tar_write_pad(f, 512));
    CHECK_OK(em_tar_write_end(f));
    CHECK(ftell(f) == 512 * 6);
    rewind(f);
    em_tar_entry e;
    bool end = false;
    CHECK_OK(em_tar_next(f, &e, &end));
    CHECK(!end && !strcmp(e.name, "manifest.json") && e.size == 5 && e.type == '0');
    char data[8] = {0};
    CHECK(fread(data, 1, 5, f) == 5 && !strcmp(data, "hello"));
    CHECK_OK(em_tar_skip_pad(f, 5));
    CHECK_OK(em_tar_next(f, &e, &end));
    CHECK(!end && !strcmp(e.name, longname) && e.size == 512);
    fseek(f, 512, SEEK_CUR);
    CHECK_OK(em_tar_next(f, &e, &end));
    CHECK(end);
    /* A name that cannot be split into prefix and name is refused. */
    char nosplit[200];
    memset(nosplit, 'a', sizeof nosplit - 1);
    nosplit[sizeof nosplit - 1] = '\0';
    CHECK(em_tar_write_header(f, nosplit, 1, 0) == EM_ERR_INVALID_ARG);
    fclose(f);

    /* Sizes from 8 GiB are base-256; header parsing gives them back. */
    f = tmpfile();
    uint64_t big = (10ull << 30) + 7;
    CHECK_OK(em_tar_write_header(f, "models/a/b.gguf", big, 0));
    rewind(f);
    uint8_t hdr[512];
    CHECK(fread(hdr, 1, 512, f) == 512);
    fclose(f);
    CHECK_OK(em_tar_parse_header(hdr, &e, &end));
    CHECK(!end && e.size == big);

    /* Hostile headers. */
    uint8_t bad[512];
    memcpy(bad, hdr, 512);
    bad[0] ^= 1; /* checksum no longer matches */
    CHECK(em_tar_parse_header(bad, &e, &end) == EM_ERR_FORMAT);
    memcpy(bad, hdr, 512);
    memcpy(bad + 257, "xxxxx", 5); /* magic, checksum fixed below */
    unsigned sum = 0;
    for (int i = 0; i < 512; i++) sum += (i >= 148 && i < 156) ? ' ' : bad[i];
    snprintf((char *)bad + 148, 8, "%06o", sum);
    CHECK(em_tar_parse_header(bad, &e, &end) == EM_ERR_FORMAT);
    memcpy(bad, hdr, 512);
    bad[156] = '2'; /* a symlink */
    sum = 0;
    for (int i = 0; i < 512; i++) sum += (i >= 148 && i < 156) ? ' ' : bad[i];
    snprintf((char *)bad + 148, 8, "%06o", sum);
    CHECK(em_tar_parse_header(bad, &e, &end) == EM_ERR_FORMAT);
    bad[156] = '0';
    sum = 0;
    for (int i = 0; i < 512; i++) sum += (i >= 148 && i < 156) ? ' ' : bad[i];
    snprintf((char *)bad + 148, 8, "%06o", sum);
    CHECK_OK(em_tar_parse_header(bad, &e, &end)); /* the same fix makes it valid again */
    memset(bad, 0, 512);
    CHECK_OK(em_tar_parse_header(bad, &e, &end));
    CHECK(end);

    /* A truncated header. */
    f = tmpfile();
    fwrite(hdr, 1, 100, f);
    rewind(f);
    CHECK(em_tar_next(f, &e, &end) == EM_ERR_FORMAT);
    fclose(f);

    CHECK(em_tar_path_ok("models/org/repo/x-Q4_K_M.gguf"));
    CHECK(!em_tar_path_ok("/etc/passwd"));
    CHECK(!em_tar_path_ok("models/../../x.gguf"));
    CHECK(!em_tar_path_ok("models/./x.gguf"));
    CHECK(!em_tar_path_ok("models//x.gguf"));
    CHECK(!em_tar_path_ok("models/x.gguf/"));
    CHECK(!em_tar_path_ok("models/a b.gguf"));
    CHECK(!em_tar_path_ok(""));
}

static const char *GOOD =
    "{\"format\": \"ember-bundle\", \"version\": 1, \"models\": [{\"name\": \"org/repo:Q8_0\", \"repo\": "
    "\"org/repo\", \"quant\": \"Q8_0\", \"files\": [{\"path\": \"models/org/repo/m-Q8_0.gguf\", \"size\": 10, "
    "\"sha256\": \"BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD\"}]}]}";

/* GOOD with one substring replaced, parsed: the status. */
static em_status parse_with(const char *from, const char *to) {
    char buf[2048];
    const char *at = strstr(GOOD, from);
    if (!at) return EM_ERR_INTERNAL;
    snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - GOOD), GOOD, to, at + strlen(from));
    em_lib_list l;
    em_status st = em_lib_list_parse(buf, strlen(buf), "ember-bundle", &l);
    if (!st) em_lib_list_free(&l);
    return st;
}

static void test_manifest(void) {
    em_lib_list l;
    CHECK_OK(em_lib_list_parse(GOOD, strlen(GOOD), "ember-bundle", &l));
    CHECK(l.n == 1 && l.models[0].n_files == 1 && l.models[0].files[0].size == 10);
    CHECK(!strcmp(l.models[0].files[0].sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    /* Round trip through the writer. */
    char *text = em_lib_list_dump(&l, "ember-bundle");
    em_lib_list l2;
    CHECK_OK(em_lib_list_parse(text, strlen(text), "ember-bundle", &l2));
    CHECK(l2.n == 1 && !strcmp(l2.models[0].name, "org/repo:Q8_0") && !strcmp(l2.models[0].quant, "Q8_0"));
    em_lib_list_free(&l2);
    CHECK(em_lib_list_parse(text, strlen(text), "ember-library", &l2) == EM_ERR_FORMAT); /* wrong kind */
    free(text);
    /* put replaces by name. */
    em_lib_model m = l.models[0];
    m.files = l.models[0].files;
    snprintf(m.quant, sizeof m.quant, "X");
    CHECK_OK(em_lib_list_put(&l, &m));
    CHECK(l.n == 1 && !strcmp(l.models[0].quant, "X"));
    em_lib_list_free(&l);

    CHECK(parse_with("models/org/repo/m-Q8_0.gguf", "models/../etc/m.gguf") == EM_ERR_FORMAT);
    CHECK(parse_with("models/org/repo/m-Q8_0.gguf", "/models/org/m.gguf") == EM_ERR_FORMAT);
    CHECK(parse_with("models/org/repo/m-Q8_0.gguf", "other/org/m.gguf") == EM_ERR_FORMAT);
    CHECK(parse_with("models/org/repo/m-Q8_0.gguf", "models/org/repo/m.txt") == EM_ERR_FORMAT);
    CHECK(parse_with("BA7816", "XX7816") == EM_ERR_FORMAT);
    CHECK(parse_with("\"size\": 10", "\"size\": -1") == EM_ERR_FORMAT);
    CHECK(parse_with("\"size\": 10", "\"size\": \"10\"") == EM_ERR_FORMAT);
    CHECK(parse_with("\"version\": 1", "\"version\": 2") == EM_ERR_UNSUPPORTED);
    CHECK(parse_with("ember-bundle", "tarball") == EM_ERR_FORMAT);
    CHECK(parse_with("\"name\": \"org/repo:Q8_0\"", "\"name\": \"org repo\"") == EM_ERR_FORMAT);
    CHECK(parse_with("\"name\": \"org/repo:Q8_0\", ", "") == EM_ERR_FORMAT);
    CHECK(parse_with("[{\"path\"", "[], \"x\": [{\"path\"") == EM_ERR_FORMAT); /* no files */
    CHECK(parse_with("}]}]}", "}]}], \"models\": []}") == EM_ERR_FORMAT);      /* duplicate key */
    CHECK(parse_with("}]}]}", "}]}") == EM_ERR_FORMAT);                        /* not JSON */
    /* The same model twice. */
    const char *rest = strstr(GOOD, "{\"name\"");
    char twice[4096];
    snprintf(twice, sizeof twice, "%.*s%.*s, %s", (int)(rest - GOOD), GOOD, (int)(strlen(rest) - 2), rest, rest);
    CHECK(em_lib_list_parse(twice, strlen(twice), "ember-bundle", &l) == EM_ERR_FORMAT);
}

static void test_quant(void) {
    char q[32];
    CHECK(em_quant_from_filename("Qwen3-0.6B-Q4_K_M.gguf", q, sizeof q) && !strcmp(q, "Q4_K_M"));
    CHECK(em_quant_from_filename("qwen2.5-0.5b-instruct-q4_k_m.gguf", q, sizeof q) && !strcmp(q, "Q4_K_M"));
    CHECK(em_quant_from_filename("Q8_0/model-Q8_0-00001-of-00002.gguf", q, sizeof q) && !strcmp(q, "Q8_0"));
    CHECK(em_quant_from_filename("gemma-3-1b-it-BF16.gguf", q, sizeof q) && !strcmp(q, "BF16"));
    CHECK(em_quant_from_filename("m.IQ2_XXS.gguf", q, sizeof q) && !strcmp(q, "IQ2_XXS"));
    CHECK(!em_quant_from_filename("stories260K.gguf", q, sizeof q));
    CHECK(!em_quant_from_filename("XQ4_0.gguf", q, sizeof q));
    CHECK(em_quant_rank("F32") == 0 && em_quant_rank("q8_0") < em_quant_rank("Q4_K_M"));
    CHECK(em_quant_rank("Q4_K_M") < em_quant_rank("Q2_K") && em_quant_rank("nonsense") == -1);
}

static void test_store(void) {
    char home[] = "/tmp/ember-test-lib-XXXXXX";
    CHECK(mkdtemp(home) != NULL);
    setenv("EMBER_HOME", home, 1);
    em_library *lib = NULL;
    CHECK_OK(em_library_open(&lib, true));
    if (!lib) return;
    CHECK(em_library_models(lib)->n == 0);
    char path[1024];
    CHECK(em_library_path(lib, "models/org/repo/m-Q8_0.gguf", path, sizeof path));
    CHECK_OK(em_mkdir_parents(path));
    FILE *f = fopen(path, "wb");
    fputs("abc", f);
    fclose(f);
    em_lib_file file = {.path = "models/org/repo/m-Q8_0.gguf", .size = 3,
                        .sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"};
    em_lib_model m = {.name = "org/repo:Q8_0", .repo = "org/repo", .quant = "Q8_0", .n_files = 1, .files = &file};
    em_lib_model odd = m;
    snprintf(odd.name, sizeof odd.name, "org/repo:with space");
    CHECK(em_library_add(lib, &odd) == EM_ERR_INVALID_ARG); /* the index would not read back */
    CHECK(em_library_models(lib)->n == 0);
    CHECK_OK(em_library_add(lib, &m));
    em_library_free(lib);

    /* A fresh reader sees it under every name form. */
    CHECK_OK(em_library_open(&lib, false));
    CHECK(em_library_find(lib, "org/repo:Q8_0") != NULL);
    CHECK(em_library_find(lib, "hf.co/org/repo:Q8_0") != NULL);
    CHECK(em_library_find(lib, "org/repo") != NULL);
    CHECK(em_library_find(lib, "org/repo/m-Q8_0.gguf") != NULL);
    CHECK(em_library_find(lib, "org/other") == NULL);
    em_library_free(lib);
    char out[1024];
    CHECK_OK(em_library_resolve("org/repo:Q8_0", out, sizeof out));
    CHECK(!strcmp(out, path));
    CHECK_OK(em_library_resolve(path, out, sizeof out)); /* a path wins */
    CHECK(!strcmp(out, path));
    CHECK(em_library_resolve("org/none:Q8_0", out, sizeof out) == EM_ERR_NOT_FOUND);

    CHECK_OK(em_library_open(&lib, true));
    CHECK(em_library_remove(lib, "org/none") == EM_ERR_NOT_FOUND);
    CHECK_OK(em_library_remove(lib, "org/repo:Q8_0"));
    CHECK(em_library_models(lib)->n == 0);
    struct stat sb;
    CHECK(stat(path, &sb) != 0);
    em_library_free(lib);
    em_remove_tree(home);
    CHECK(stat(home, &sb) != 0);
}

int main(void) {
    test_sha256();
    test_tar();
    test_manifest();
    test_quant();
    test_store();
    TEST_END();
}
