/*
 * test_opts.c - the CLI's option parser (src/cli/opts.c): every type,
 * defaults, the spellings of values and flags, lists, positional
 * arguments and `--`, each kind of usage error (one line on stderr that
 * names the option), and the shape of the help.
 */
#include "cli/opts.h"
#include "test.h"

#include <stdarg.h>
#include <stdint.h>
#include <unistd.h>

/* The destinations of one test table, reset before every parse. */
typedef struct vals {
    const char *model, *name;
    int32_t n;
    int64_t big;
    float temp;
    double price;
    bool mlock, mmap;
    int kind;
    const char *files[4];
    int n_files;
    int32_t threads[3];
    int n_threads;
    const char *pos[2];
    int n_pos;
} vals;

enum { KIND_A = 10, KIND_B = 20 };
static const char *const kinds[] = {"a", "b", NULL};
static const int kind_values[] = {KIND_A, KIND_B};

static vals v;
static const em_opt table[] = {
    {.name = "model", .short_name = "m", .type = EM_OPT_STRING, EM_OPT_DEST(v.model), .arg = "FILE",
     .help = "the model", .flags = EM_OPT_REQUIRED},
    {.name = "name", .type = EM_OPT_STRING, EM_OPT_DEST(v.name), .help = "a name"},
    {.name = "n-predict", .short_name = "n", .type = EM_OPT_INT, EM_OPT_DEST(v.n), .min = -1, .max = 100,
     .help = "how many"},
    {.name = "big", .type = EM_OPT_INT, EM_OPT_DEST(v.big), .help = "any 64-bit integer"},
    {.name = "temp", .type = EM_OPT_FLOAT, EM_OPT_DEST(v.temp), .min = 0, .max = 2, .help = "temperature"},
    {.name = "price", .type = EM_OPT_FLOAT, EM_OPT_DEST(v.price), .help = "a double", .def = "free"},
    {.name = "mlock", .type = EM_OPT_FLAG, EM_OPT_DEST(v.mlock), .help = "lock"},
    {.name = "mmap", .short_name = "mmp", .type = EM_OPT_FLAG, EM_OPT_DEST(v.mmap), .help = "map"},
    {.name = "kind", .short_name = "k", .type = EM_OPT_ENUM, EM_OPT_DEST(v.kind), .choices = kinds,
     .values = kind_values, .help = "which kind"},
    {.name = "files", .type = EM_OPT_LIST, EM_OPT_DEST(v.files[0]), .count = &v.n_files, .cap = 4,
     .arg = "FILE...", .help = "files", .flags = EM_OPT_GREEDY},
    {.name = "threads", .short_name = "t", .type = EM_OPT_INT_LIST, EM_OPT_DEST(v.threads[0]),
     .count = &v.n_threads, .cap = 3, .min = 1, .max = 64, .help = "thread counts"},
    {0}};
static const em_cmd cmd = {.name = "demo", .synopsis = "-m FILE [options] [A [B]]", .about = "A test.\n",
                           .epilog = "The end.\n", .opts = table, .max_pos = 2};

/* Where stderr (and the help's stdout) went for the latest parse. */
static char captured[4096];

/* Parses a NULL-terminated argument list (after the command's name) with
 * fresh defaults; stdout and stderr are captured into `captured`. */
static em_opts_result parse(const char *first, ...) {
    v = (vals){.n = 7, .big = 5, .temp = 0.5f, .mmap = true, .kind = KIND_B, .threads = {4}, .n_threads = 1};
    char *argv[32] = {"demo"};
    int argc = 1;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && argc < 31; a = va_arg(ap, const char *)) argv[argc++] = (char *)a;
    va_end(ap);

    fflush(stdout);
    fflush(stderr);
    FILE *tmp = tmpfile();
    int saved_out = dup(1), saved_err = dup(2);
    dup2(fileno(tmp), 1);
    dup2(fileno(tmp), 2);
    em_opts_result r = em_opts_parse(&cmd, argc, argv, v.pos, &v.n_pos);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    rewind(tmp);
    size_t n = fread(captured, 1, sizeof captured - 1, tmp);
    captured[n] = '\0';
    fclose(tmp);
    return r;
}

static int lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* A usage error: EM_OPTS_USAGE and exactly one line that contains `what`. */
#define CHECK_USAGE(what, ...)                                                              \
    do {                                                                                    \
        CHECK(parse(__VA_ARGS__, NULL) == EM_OPTS_USAGE);                                   \
        CHECK_MSG(lines(captured) == 1 && strstr(captured, what), "got: %s", captured);     \
        CHECK_MSG(!strncmp(captured, "ember demo: ", 12), "got: %s", captured);             \
    } while (0)

static void test_types_and_defaults(void) {
    CHECK(parse("-m", "x.gguf", NULL) == EM_OPTS_OK);
    CHECK(captured[0] == '\0');
    CHECK(!strcmp(v.model, "x.gguf") && !v.name);
    CHECK(v.n == 7 && v.big == 5 && v.temp == 0.5f && v.price == 0 && !v.mlock && v.mmap && v.kind == KIND_B);
    CHECK(v.n_files == 0 && v.n_threads == 1 && v.threads[0] == 4 && v.n_pos == 0);

    CHECK(parse("--model", "a", "--name", "-dash-", "-n", "-1", "--big", "-9000000000", "--temp", "1.5",
                "--price=2.25", "--kind", "a", NULL) == EM_OPTS_OK);
    CHECK(!strcmp(v.model, "a") && !strcmp(v.name, "-dash-"));
    CHECK(v.n == -1 && v.big == -9000000000LL && v.temp == 1.5f && v.price == 2.25 && v.kind == KIND_A);

    /* --name=value, the last of a repeated scalar wins, an empty value. */
    CHECK(parse("--model=b", "-n", "3", "--n-predict=100", "--name=", "-k", "b", NULL) == EM_OPTS_OK);
    CHECK(!strcmp(v.model, "b") && v.n == 100 && v.name && !*v.name && v.kind == KIND_B);
}

static void test_flags(void) {
    CHECK(parse("-m", "x", "--mlock", "--no-mmap", NULL) == EM_OPTS_OK && v.mlock && !v.mmap);
    CHECK(parse("-m", "x", "--mlock=1", "--mmap=0", NULL) == EM_OPTS_OK && v.mlock && !v.mmap);
    CHECK(parse("-m", "x", "--mlock=true", "--mmap=false", NULL) == EM_OPTS_OK && v.mlock && !v.mmap);
    /* llama-bench's spelling: the next argument, when it is 0 or 1. */
    CHECK(parse("-m", "x", "--mlock", "1", "-mmp", "0", NULL) == EM_OPTS_OK && v.mlock && !v.mmap && v.n_pos == 0);
    CHECK(parse("-m", "x", "--mmap", "1", "--mlock", "0", NULL) == EM_OPTS_OK && !v.mlock && v.mmap);
    /* Any other next argument is not the flag's. */
    CHECK(parse("-m", "x", "--mlock", "2", NULL) == EM_OPTS_OK && v.mlock && v.n_pos == 1 && !strcmp(v.pos[0], "2"));
    CHECK_USAGE("--mlock", "-m", "x", "--mlock=2");
    CHECK_USAGE("--no-mmap", "-m", "x", "--no-mmap=1");
    /* --no- works for flags only. */
    CHECK_USAGE("unknown option --no-name", "-m", "x", "--no-name");
}

static void test_bad_values(void) {
    CHECK_USAGE("bad value for -n: 'abc'", "-m", "x", "-n", "abc");
    CHECK_USAGE("from -1 to 100", "-m", "x", "-n", "101");
    CHECK_USAGE("bad value for --n-predict: '-2'", "-m", "x", "--n-predict=-2");
    CHECK_USAGE("bad value for -n: '5x'", "-m", "x", "-n", "5x");
    CHECK_USAGE("bad value for -n: ''", "-m", "x", "-n", "");
    CHECK_USAGE("--big", "-m", "x", "--big", "99999999999999999999");
    CHECK_USAGE("bad value for --temp: '2.5'", "-m", "x", "--temp", "2.5");
    CHECK_USAGE("--temp", "-m", "x", "--temp", "nan");
    CHECK_USAGE("--price", "-m", "x", "--price", "inf");
    CHECK_USAGE("(want a|b)", "-m", "x", "-k", "c");
    /* A value starting with '-' is a value, not an option. */
    CHECK(parse("-m", "--mlock", NULL) == EM_OPTS_OK && !strcmp(v.model, "--mlock") && !v.mlock);
}

static void test_errors(void) {
    CHECK_USAGE("unknown option --bogus", "-m", "x", "--bogus");
    CHECK_USAGE("unknown option -z", "-m", "x", "-z");
    CHECK_USAGE("unknown option --bogus (see ember demo --help)", "--bogus=3", "-m", "x");
    CHECK_USAGE("-n needs a value (N)", "-m", "x", "-n");
    CHECK_USAGE("--model needs a value (FILE)", "--model");
    CHECK_USAGE("-m/--model is required", "-n", "3");
    CHECK_USAGE("'c' is extra", "-m", "x", "a", "b", "c");
    /* Nothing is left half-parsed: the error stops at its option. */
    CHECK(parse("-m", "x", "-n", "abc", "--mlock", NULL) == EM_OPTS_USAGE && !v.mlock);
    CHECK(em_opts_exit_code(EM_OPTS_USAGE) == 2 && em_opts_exit_code(EM_OPTS_HELP) == 0);
}

static void test_positional(void) {
    CHECK(parse("a", "-m", "x", "b", NULL) == EM_OPTS_OK && v.n_pos == 2);
    CHECK(!strcmp(v.pos[0], "a") && !strcmp(v.pos[1], "b"));
    /* After --, options are positional; a lone - is positional. */
    CHECK(parse("-m", "x", "--", "--mlock", "-n", NULL) == EM_OPTS_OK && !v.mlock && v.n_pos == 2);
    CHECK(!strcmp(v.pos[0], "--mlock") && !strcmp(v.pos[1], "-n"));
    CHECK(parse("-m", "x", "-", NULL) == EM_OPTS_OK && v.n_pos == 1 && !strcmp(v.pos[0], "-"));
    CHECK(parse("-m", "x", "--", "--help", NULL) == EM_OPTS_OK && v.n_pos == 1);
}

static void test_lists(void) {
    /* The first use replaces the default, later uses append. */
    CHECK(parse("-m", "x", "-t", "1,2", "-t", "8", NULL) == EM_OPTS_OK);
    CHECK(v.n_threads == 3 && v.threads[0] == 1 && v.threads[1] == 2 && v.threads[2] == 8);
    CHECK_USAGE("too many values for -t (at most 3)", "-m", "x", "-t", "1,2", "-t", "3,4");
    CHECK_USAGE("bad value for -t: 'x'", "-m", "x", "-t", "1,x");
    CHECK_USAGE("bad value for -t: ''", "-m", "x", "-t", "1,,2");
    CHECK_USAGE("bad value for -t: '0'", "-m", "x", "-t", "0");
    /* A greedy list takes arguments up to the next option. */
    CHECK(parse("--files", "a", "b", "-m", "x", "--files=c", "d", NULL) == EM_OPTS_OK);
    CHECK(v.n_files == 4 && !strcmp(v.files[0], "a") && !strcmp(v.files[1], "b") && !strcmp(v.files[2], "c") &&
          !strcmp(v.files[3], "d") && v.n_pos == 0);
    CHECK_USAGE("too many values for --files (at most 4)", "-m", "x", "--files", "a", "b", "c", "d", "e");
}

static void test_help(void) {
    /* --help wins wherever it stands, even after an error, and the
     * defaults it shows are those before any option changed them. */
    CHECK(parse("-n", "50", "--bogus", "--help", NULL) == EM_OPTS_HELP);
    CHECK(strstr(captured, "usage: ember demo -m FILE [options] [A [B]]\n\nA test.\n\noptions:\n") == captured);
    CHECK(strstr(captured, "(default: 7)") && !strstr(captured, "(default: 50)"));
    CHECK(strstr(captured, "The end.\n"));
    CHECK(parse("-h", NULL) == EM_OPTS_HELP && strstr(captured, "usage: ember demo"));
    /* The value of an option is not --help. */
    CHECK(parse("-m", "x", "--name", "--help", NULL) == EM_OPTS_OK && !strcmp(v.name, "--help"));

    CHECK(parse("--help", NULL) == EM_OPTS_HELP);
    /* Every option has its row, and every row's help starts in one column. */
    static const char *const rows[][2] = {
        {"-m, --model", "the model"}, {"--name", "a name"}, {"-n, --n-predict", "how many"},
        {"--big", "any 64-bit"}, {"--temp", "temperature"}, {"--price", "a double"}, {"--mlock", "lock"},
        {"-mmp, --[no-]mmap", "map"}, {"-k, --kind", "which kind"}, {"--files", "files"},
        {"-t, --threads", "thread counts"}, {"-h, --help", "show this help"}};
    int help_col = -1;
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        const char *r = strstr(captured, rows[i][0]);
        CHECK_MSG(r != NULL, "no row for %s", rows[i][0]);
        if (!r) continue;
        const char *bol = r, *h = strstr(r + strlen(rows[i][0]), rows[i][1]), *eol = strchr(r, '\n');
        while (bol > captured && bol[-1] != '\n') bol--;
        CHECK_MSG(h && eol && h < eol, "%s: its help is not on its line", rows[i][0]);
        if (!h) continue;
        if (help_col < 0) help_col = (int)(h - bol);
        CHECK_MSG(h - bol == help_col, "%s: help at column %d, not %d", rows[i][0], (int)(h - bol), help_col);
    }
    CHECK(strstr(captured, "FILE") && strstr(captured, " a|b ") && strstr(captured, " N,... "));
    CHECK(strstr(captured, "(default: b)") && strstr(captured, "(default: 4)") && strstr(captured, "(default: 0.5)"));
    CHECK(strstr(captured, "(default: free)") && strstr(captured, "map") && strstr(captured, "(default: on)"));
    CHECK(strstr(captured, "on/off options: --NAME"));
    /* Every row's default starts in one column when it follows a short help. */
    const char *d1 = strstr(captured, "(default: 7)"), *d2 = strstr(captured, "(default: b)");
    if (d1 && d2) {
        const char *b1 = d1, *b2 = d2;
        while (b1 > captured && b1[-1] != '\n') b1--;
        while (b2 > captured && b2[-1] != '\n') b2--;
        CHECK(d1 - b1 == d2 - b2);
    }
}

/* A table entry whose size does not fit its type is refused, not used. */
static void test_bad_table(void) {
    char small = 0;
    const em_opt bad[] = {{.name = "n", .type = EM_OPT_INT, EM_OPT_DEST(small), .help = "too small"}, {0}};
    const em_cmd c = {.name = "demo", .opts = bad};
    char *argv[] = {"demo", "--n", "300", NULL};
    fflush(stderr);
    int saved = dup(2);
    FILE *null = fopen("/dev/null", "w");
    dup2(fileno(null), 2);
    em_opts_result r = em_opts_parse(&c, 3, argv, NULL, NULL);
    dup2(saved, 2);
    close(saved);
    fclose(null);
    CHECK(r == EM_OPTS_USAGE && small == 0);
}

int main(void) {
    test_types_and_defaults();
    test_flags();
    test_bad_values();
    test_errors();
    test_positional();
    test_lists();
    test_help();
    test_bad_table();
    TEST_END();
}
