/*
 * opts.c - reads a command line against a table of options (opts.h) and
 * prints the help from the same table.
 *
 * em_opts_parse reads argv twice.  The first pass writes nothing and
 * reports nothing: it only looks for -h/--help where an option may stand,
 * so that the help shows the defaults as they were before any option
 * changed them, and `ember run --bogus --help` still helps.  The second
 * pass stores the values and stops at the first usage error.
 */
#include "cli/opts.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ the table */

static int table_len(const em_opt *opts) {
    int n = 0;
    while (opts[n].name) n++;
    return n;
}

/* Whether the destination's size suits the type: a wrong size in a table
 * would write past the variable. */
static bool entry_ok(const em_opt *o) {
    if (!o->dest) return false;
    switch (o->type) {
    case EM_OPT_FLAG: return o->size == sizeof(bool);
    case EM_OPT_INT:
    case EM_OPT_FLOAT: return o->size == 4 || o->size == 8;
    case EM_OPT_STRING: return o->size == sizeof(const char *);
    case EM_OPT_ENUM: return o->size == sizeof(int) && o->choices && o->choices[0];
    case EM_OPT_LIST: return o->size == sizeof(const char *) && o->count && o->cap > 0;
    case EM_OPT_INT_LIST: return (o->size == 4 || o->size == 8) && o->count && o->cap > 0;
    }
    return false;
}

/* ------------------------------------------------------------- parsing */

static void value_name(const em_opt *o, char *buf, size_t size);

typedef struct parse_state {
    const em_cmd *cmd;
    bool apply;               /* false: the help pre-scan (writes nothing)  */
    bool seen[EM_OPTS_MAX];   /* options given so far, by table index       */
    const char *spelled;      /* the option as typed, up to any '='         */
    int spelled_len;
} parse_state;

/* One usage error: one line on stderr, in the second pass only. */
static em_opts_result usage_error(const parse_state *ps, const char *fmt, ...) {
    if (!ps->apply) return EM_OPTS_USAGE;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ember %s: ", ps->cmd->name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return EM_OPTS_USAGE;
}

static em_opts_result bad_value(const parse_state *ps, const char *v, const char *want) {
    return usage_error(ps, "bad value for %.*s: '%s' (want %s)", ps->spelled_len, ps->spelled, v, want);
}

/* The accepted range of an integer option: [min, max] from the table, or
 * the whole range of the destination type when both are 0. */
static void int_range(const em_opt *o, long long *lo, long long *hi) {
    bool narrow = o->size == 4;
    if (o->min == 0 && o->max == 0) {
        *lo = narrow ? INT32_MIN : INT64_MIN;
        *hi = narrow ? INT32_MAX : INT64_MAX;
        return;
    }
    *lo = o->min <= (double)INT64_MIN ? INT64_MIN : (long long)o->min;
    *hi = o->max >= (double)INT64_MAX ? INT64_MAX : (long long)o->max;
    if (narrow && *lo < INT32_MIN) *lo = INT32_MIN;
    if (narrow && *hi > INT32_MAX) *hi = INT32_MAX;
}

/* Parses one whole integer within the option's range into *out. */
static em_opts_result parse_int(const parse_state *ps, const em_opt *o, const char *s, long long *out) {
    long long lo, hi;
    int_range(o, &lo, &hi);
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        char want[96];
        snprintf(want, sizeof want, "an integer from %lld to %lld", lo, hi);
        return bad_value(ps, s, want);
    }
    *out = v;
    return EM_OPTS_OK;
}

static void write_int(void *dest, size_t size, long long v) {
    if (size == 4) *(int32_t *)dest = (int32_t)v;
    else *(int64_t *)dest = (int64_t)v;
}

static em_opts_result parse_float(const parse_state *ps, const em_opt *o, const char *s) {
    double lo = o->min, hi = o->max;
    if (lo == 0 && hi == 0) {
        lo = o->size == 4 ? -FLT_MAX : -DBL_MAX;
        hi = o->size == 4 ? FLT_MAX : DBL_MAX;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) {
        char want[96];
        snprintf(want, sizeof want, "a number from %g to %g", lo, hi);
        return bad_value(ps, s, want);
    }
    if (o->size == 4) *(float *)o->dest = (float)v;
    else *(double *)o->dest = v;
    return EM_OPTS_OK;
}

/* "a|b|c": the choices of an enum, for messages and the help. */
static void join_choices(const em_opt *o, char *buf, size_t size) {
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; o->choices[i] && n < size; i++) {
        int w = snprintf(buf + n, size - n, "%s%s", i ? "|" : "", o->choices[i]);
        if (w < 0) break;
        n += (size_t)w;
    }
}

static em_opts_result parse_enum(const parse_state *ps, const em_opt *o, const char *s) {
    for (int i = 0; o->choices[i]; i++)
        if (!strcmp(s, o->choices[i])) {
            *(int *)o->dest = o->values ? o->values[i] : i;
            return EM_OPTS_OK;
        }
    char want[256];
    join_choices(o, want, sizeof want);
    return bad_value(ps, s, want);
}

/* "0", "1", "true", "false" */
static bool parse_bool(const char *s, bool *out) {
    if (!strcmp(s, "1") || !strcmp(s, "true")) *out = true;
    else if (!strcmp(s, "0") || !strcmp(s, "false")) *out = false;
    else return false;
    return true;
}

/* Appends "a,b,c" (integers) to an INT_LIST. */
static em_opts_result add_ints(const parse_state *ps, const em_opt *o, const char *s) {
    const char *p = s;
    for (;;) {
        char item[64];
        size_t len = strcspn(p, ",");
        if (len >= sizeof item) return bad_value(ps, s, "comma-separated integers");
        memcpy(item, p, len);
        item[len] = '\0';
        long long v = 0;
        if (parse_int(ps, o, item, &v) != EM_OPTS_OK) return EM_OPTS_USAGE;
        if (*o->count >= o->cap)
            return usage_error(ps, "too many values for %.*s (at most %d)", ps->spelled_len, ps->spelled, o->cap);
        write_int((char *)o->dest + (size_t)*o->count * o->size, o->size, v);
        (*o->count)++;
        if (p[len] == '\0') return EM_OPTS_OK;
        p += len + 1;
    }
}

static em_opts_result add_string(const parse_state *ps, const em_opt *o, const char *s) {
    if (*o->count >= o->cap)
        return usage_error(ps, "too many values for %.*s (at most %d)", ps->spelled_len, ps->spelled, o->cap);
    ((const char **)o->dest)[(*o->count)++] = s;
    return EM_OPTS_OK;
}

/* Stores one value of a value-taking option. */
static em_opts_result store(const parse_state *ps, const em_opt *o, const char *v) {
    long long i = 0;
    switch (o->type) {
    case EM_OPT_INT:
        if (parse_int(ps, o, v, &i) != EM_OPTS_OK) return EM_OPTS_USAGE;
        write_int(o->dest, o->size, i);
        return EM_OPTS_OK;
    case EM_OPT_FLOAT: return parse_float(ps, o, v);
    case EM_OPT_STRING: *(const char **)o->dest = v; return EM_OPTS_OK;
    case EM_OPT_ENUM: return parse_enum(ps, o, v);
    case EM_OPT_LIST: return add_string(ps, o, v);
    case EM_OPT_INT_LIST: return add_ints(ps, o, v);
    case EM_OPT_FLAG: break;
    }
    return EM_OPTS_USAGE;
}

/* The table entry that `arg` (which starts with '-') names, or NULL.
 * Sets *value to the text after '=' in --name=value, and *negated for
 * --no-name of a flag. */
static const em_opt *lookup(parse_state *ps, const char *arg, const char **value, bool *negated) {
    const em_opt *opts = ps->cmd->opts;
    *value = NULL;
    *negated = false;
    ps->spelled = arg;
    ps->spelled_len = (int)strlen(arg);
    if (arg[1] != '-') {
        for (int k = 0; opts[k].name; k++)
            if (opts[k].short_name && !strcmp(arg + 1, opts[k].short_name)) return &opts[k];
        return NULL;
    }
    const char *name = arg + 2;
    size_t len = strcspn(name, "=");
    if (name[len] == '=') *value = name + len + 1;
    ps->spelled_len = (int)(len + 2);
    for (int k = 0; opts[k].name; k++)
        if (strlen(opts[k].name) == len && !strncmp(name, opts[k].name, len)) return &opts[k];
    if (len > 3 && !strncmp(name, "no-", 3))
        for (int k = 0; opts[k].name; k++)
            if (opts[k].type == EM_OPT_FLAG && strlen(opts[k].name) == len - 3 && !strncmp(name + 3, opts[k].name, len - 3)) {
                *negated = true;
                return &opts[k];
            }
    return NULL;
}

/* A flag: --name, --no-name, --name=0|1, or --name 0|1 (which takes the
 * next argument only when it is exactly 0 or 1). */
static em_opts_result take_flag(const parse_state *ps, const em_opt *o, const char *value, bool negated, int argc,
                                char **argv, int *i) {
    bool on = !negated;
    if (value && negated)
        return usage_error(ps, "%.*s takes no value", ps->spelled_len, ps->spelled);
    if (value) {
        if (!parse_bool(value, &on)) return bad_value(ps, value, "0 or 1");
    } else if (!negated && *i + 1 < argc && (!strcmp(argv[*i + 1], "0") || !strcmp(argv[*i + 1], "1"))) {
        on = argv[++*i][0] == '1';
    }
    if (ps->apply) *(bool *)o->dest = on;
    return EM_OPTS_OK;
}

/* Any other option: the value after '=' or the next argument; greedy
 * lists also take the arguments that follow, up to the next option. */
static em_opts_result take_value(parse_state *ps, const em_opt *o, const char *value, int argc, char **argv,
                                 int *i) {
    if (!value) {
        if (*i + 1 >= argc) {
            char what[64] = "";
            value_name(o, what, sizeof what);
            return usage_error(ps, "%.*s needs a value (%s)", ps->spelled_len, ps->spelled, what);
        }
        value = argv[++*i];
    }
    if (!ps->apply) {
        /* The pre-scan only has to step over the values. */
        if (o->flags & EM_OPT_GREEDY)
            while (*i + 1 < argc && argv[*i + 1][0] != '-') ++*i;
        return EM_OPTS_OK;
    }
    int k = (int)(o - ps->cmd->opts);
    if ((o->type == EM_OPT_LIST || o->type == EM_OPT_INT_LIST) && !ps->seen[k]) *o->count = 0;
    if (store(ps, o, value) != EM_OPTS_OK) return EM_OPTS_USAGE;
    if (o->flags & EM_OPT_GREEDY)
        while (*i + 1 < argc && argv[*i + 1][0] != '-')
            if (store(ps, o, argv[++*i]) != EM_OPTS_OK) return EM_OPTS_USAGE;
    return EM_OPTS_OK;
}

static em_opts_result add_positional(const parse_state *ps, const char *a, const char **pos, int *n) {
    if (*n >= ps->cmd->max_pos) {
        if (ps->cmd->max_pos == 0)
            return usage_error(ps, "unexpected argument '%s' (see ember %s --help)", a, ps->cmd->name);
        return usage_error(ps, "too many arguments: '%s' is extra (see ember %s --help)", a, ps->cmd->name);
    }
    if (ps->apply) pos[*n] = a;
    (*n)++;
    return EM_OPTS_OK;
}

/* One pass over argv.  The pre-scan goes on past errors (it cannot know
 * whether an unknown option takes a value; it assumes not) and returns
 * HELP or OK. */
static em_opts_result scan(parse_state *ps, int argc, char **argv, const char **pos, int *n_pos) {
    bool only_positional = false;
    int n = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        em_opts_result r = EM_OPTS_OK;
        if (only_positional || a[0] != '-' || a[1] == '\0') {
            r = add_positional(ps, a, pos, &n);
        } else if (!strcmp(a, "--")) {
            only_positional = true;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            return EM_OPTS_HELP;
        } else {
            const char *value;
            bool negated;
            const em_opt *o = lookup(ps, a, &value, &negated);
            if (!o) {
                r = usage_error(ps, "unknown option %.*s (see ember %s --help)", ps->spelled_len, a, ps->cmd->name);
            } else {
                r = o->type == EM_OPT_FLAG ? take_flag(ps, o, value, negated, argc, argv, &i)
                                           : take_value(ps, o, value, argc, argv, &i);
                ps->seen[o - ps->cmd->opts] = true;
            }
        }
        if (r != EM_OPTS_OK && ps->apply) return r;
    }
    if (n_pos) *n_pos = n;
    return EM_OPTS_OK;
}

static em_opts_result check_required(const parse_state *ps) {
    for (int k = 0; ps->cmd->opts[k].name; k++) {
        const em_opt *o = &ps->cmd->opts[k];
        if ((o->flags & EM_OPT_REQUIRED) && !ps->seen[k])
            return usage_error(ps, "%s%s%s--%s is required (see ember %s --help)", o->short_name ? "-" : "",
                               o->short_name ? o->short_name : "", o->short_name ? "/" : "", o->name, ps->cmd->name);
    }
    return EM_OPTS_OK;
}

em_opts_result em_opts_parse(const em_cmd *cmd, int argc, char **argv, const char **pos, int *n_pos) {
    parse_state ps = {.cmd = cmd, .apply = true};
    int n = table_len(cmd->opts);
    if (n > EM_OPTS_MAX) return usage_error(&ps, "more than %d options in the table", EM_OPTS_MAX);
    for (int k = 0; k < n; k++)
        if (!entry_ok(&cmd->opts[k])) return usage_error(&ps, "the table entry of --%s is unusable", cmd->opts[k].name);
    if (cmd->max_pos > 0 && (!pos || !n_pos)) return usage_error(&ps, "positional arguments but nowhere to put them");

    parse_state pre = {.cmd = cmd, .apply = false};
    if (scan(&pre, argc, argv, pos, NULL) == EM_OPTS_HELP) {
        em_opts_help(cmd, stdout);
        return EM_OPTS_HELP;
    }
    em_opts_result r = scan(&ps, argc, argv, pos, n_pos);
    if (r == EM_OPTS_OK) r = check_required(&ps);
    return r;
}

int em_opts_exit_code(em_opts_result r) {
    return r == EM_OPTS_HELP ? 0 : r == EM_OPTS_USAGE ? 2 : 0;
}

/* ---------------------------------------------------------------- help */

/* The spelling column: "-m, --model", "    --temp", "--[no-]mmap". */
static void spelling(const em_opt *o, char *buf, size_t size) {
    bool default_on = o->type == EM_OPT_FLAG && *(const bool *)o->dest;
    char sh[32] = "";
    if (o->short_name) snprintf(sh, sizeof sh, "-%s, ", o->short_name);
    snprintf(buf, size, "%-4s--%s%s", sh, default_on ? "[no-]" : "", o->name);
}

/* The value-name column: FILE, N, a|b|c; empty for flags. */
static void value_name(const em_opt *o, char *buf, size_t size) {
    if (o->arg) {
        snprintf(buf, size, "%s", o->arg);
        return;
    }
    switch (o->type) {
    case EM_OPT_FLAG: buf[0] = '\0'; break;
    case EM_OPT_INT: snprintf(buf, size, "N"); break;
    case EM_OPT_FLOAT: snprintf(buf, size, "X"); break;
    case EM_OPT_STRING:
    case EM_OPT_LIST: snprintf(buf, size, "TEXT"); break;
    case EM_OPT_ENUM: join_choices(o, buf, size); break;
    case EM_OPT_INT_LIST: snprintf(buf, size, "N,..."); break;
    }
}

static long long read_int(const void *p, size_t size) {
    return size == 4 ? *(const int32_t *)p : *(const int64_t *)p;
}

/* The default as the help shows it; "" for none. */
static void default_text(const em_opt *o, char *buf, size_t size) {
    buf[0] = '\0';
    if (o->def) {
        snprintf(buf, size, "%s", o->def);
        return;
    }
    switch (o->type) {
    case EM_OPT_FLAG:
        if (*(const bool *)o->dest) snprintf(buf, size, "on");
        break;
    case EM_OPT_INT: snprintf(buf, size, "%lld", read_int(o->dest, o->size)); break;
    case EM_OPT_FLOAT:
        snprintf(buf, size, "%g", o->size == 4 ? (double)*(const float *)o->dest : *(const double *)o->dest);
        break;
    case EM_OPT_STRING:
        if (*(const char *const *)o->dest) snprintf(buf, size, "%s", *(const char *const *)o->dest);
        break;
    case EM_OPT_ENUM:
        for (int i = 0; o->choices[i]; i++)
            if ((o->values ? o->values[i] : i) == *(const int *)o->dest) {
                snprintf(buf, size, "%s", o->choices[i]);
                break;
            }
        break;
    case EM_OPT_LIST: break;
    case EM_OPT_INT_LIST:
        for (int i = 0, n = 0; i < *o->count && (size_t)n < size; i++) {
            int w = snprintf(buf + n, size - (size_t)n, "%s%lld", i ? "," : "",
                             read_int((const char *)o->dest + (size_t)i * o->size, o->size));
            if (w < 0) break;
            n += w;
        }
        break;
    }
}

/* Width of the help text's last line (where the default goes). */
static int last_line_width(const char *help) {
    const char *nl = strrchr(help, '\n');
    return (int)strlen(nl ? nl + 1 : help);
}

/* Rows wider than this do not push the default column further right. */
#define HELP_COL_MAX 40

void em_opts_help(const em_cmd *cmd, FILE *out) {
    const em_opt *opts = cmd->opts;
    int w_spell = 10, w_arg = 0, w_help = 0;
    bool any_flag = false;
    for (int k = 0; opts[k].name; k++) {
        char s[96], v[256], d[256];
        spelling(&opts[k], s, sizeof s);
        value_name(&opts[k], v, sizeof v);
        default_text(&opts[k], d, sizeof d);
        w_spell = (int)strlen(s) > w_spell ? (int)strlen(s) : w_spell;
        if ((int)strlen(v) > w_arg && strlen(v) <= 16) w_arg = (int)strlen(v);
        int hw = opts[k].help ? last_line_width(opts[k].help) : 0;
        if (d[0] && hw > w_help && hw <= HELP_COL_MAX) w_help = hw;
        any_flag = any_flag || opts[k].type == EM_OPT_FLAG;
    }
    fprintf(out, "usage: ember %s %s\n", cmd->name, cmd->synopsis ? cmd->synopsis : "[options]");
    if (cmd->about) fprintf(out, "\n%s", cmd->about);
    fprintf(out, "\noptions:\n");
    int help_col = 2 + w_spell + 1 + w_arg + 2;
    for (int k = 0; opts[k].name; k++) {
        const em_opt *o = &opts[k];
        char s[96], v[256], d[256];
        spelling(o, s, sizeof s);
        value_name(o, v, sizeof v);
        default_text(o, d, sizeof d);
        int col = fprintf(out, "  %-*s %-*s  ", w_spell, s, w_arg, v);
        /* A value name too wide for its column moves the help down. */
        if (col > help_col) fprintf(out, "\n%*s", help_col, "");
        const char *h = o->help ? o->help : "";
        for (const char *nl; (nl = strchr(h, '\n')) != NULL; h = nl + 1)
            fprintf(out, "%.*s\n%*s", (int)(nl - h), h, help_col, "");
        if (d[0]) fprintf(out, "%-*s  (default: %s)\n", w_help, h, d);
        else fprintf(out, "%s\n", h);
    }
    fprintf(out, "  %-*s %-*s  show this help\n", w_spell, "-h, --help", w_arg, "");
    if (any_flag)
        fprintf(out, "\non/off options: --NAME turns one on, --no-NAME off; --NAME=0|1 and --NAME 0|1 also work.\n");
    if (cmd->epilog) fprintf(out, "\n%s", cmd->epilog);
}
