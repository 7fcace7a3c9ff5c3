/*
 * inspect.c - `ember inspect MODEL.gguf`: shows what a GGUF file holds.
 *
 * Without options it prints the header (version, alignment, data offset),
 * every metadata key with its type and value (long arrays shortened), the
 * tensor table, and a summary of the architecture computed from both.
 * --tensor NAME prints that tensor's values, dequantized, one row per
 * line.  --json prints the same report as one JSON object.
 *
 * The reader validates the whole file when it opens it, so a damaged file
 * ends here with its one-line error and exit status 1.
 */
#include "cli/cli.h"
#include "gguf/gguf.h"
#include "quant/quant.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

/* Arrays show this many elements before "... (N total)". */
#define SHOWN_ELEMS 8
/* Text mode cuts a value (a chat template, say) at this many bytes. */
#define VALUE_CHARS 200

/* ------------------------------------------------------------ summary */

/* The facts the summary shows, gathered from metadata and tensors. */
typedef struct summary {
    char arch[64];
    uint64_t n_params;     /* elements over all tensors                    */
    uint64_t tensor_bytes; /* bytes of tensor data                          */
    int64_t n_vocab;       /* -1 when unknown                               */
} summary;

static void gather(const em_gguf *g, summary *s) {
    memset(s, 0, sizeof *s);
    em_gguf_str a;
    if (em_gguf_get_str(g, "general.architecture", &a) == EM_OK) {
        size_t n = (size_t)EM_MIN(a.len, (uint64_t)sizeof s->arch - 1);
        memcpy(s->arch, a.ptr, n);
        s->arch[n] = '\0';
    }
    for (int64_t i = 0; i < em_gguf_n_tensors(g); i++) {
        const em_gguf_tensor *t = em_gguf_tensor_at(g, i);
        uint64_t n = 1;
        for (int d = 0; d < EM_GGUF_MAX_DIMS; d++) n *= (uint64_t)t->ne[d];
        s->n_params += n;
        s->tensor_bytes += t->size;
    }
    /* The vocabulary size: the token list when there is one, else the
     * architecture's vocab_size, else the embedding's row count. */
    uint64_t n;
    em_gguf_type et;
    int64_t v;
    char key[128];
    snprintf(key, sizeof key, "%s.vocab_size", s->arch);
    const em_gguf_tensor *emb = em_gguf_find_tensor(g, "token_embd.weight");
    if (em_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, NULL) == EM_OK)
        s->n_vocab = (int64_t)n;
    else if (em_gguf_get_i64(g, key, &v) == EM_OK)
        s->n_vocab = v;
    else if (emb && emb->n_dims >= 2)
        s->n_vocab = emb->ne[1];
    else
        s->n_vocab = -1;
}

/* The summary rows: label and the key under "<arch>." that holds it.
 * Some architectures store per-layer arrays (head counts of gemma4); the
 * formatted value shows them as they are. */
static const struct {
    const char *label;
    const char *suffix;
} summary_keys[] = {
    {"n_embd", "embedding_length"},
    {"n_layer", "block_count"},
    {"n_head", "attention.head_count"},
    {"n_head_kv", "attention.head_count_kv"},
    {"n_ff", "feed_forward_length"},
    {"n_ctx_train", "context_length"},
    {"rope_base", "rope.freq_base"},
};

/* Value of "<arch>.<suffix>" formatted, or "-" when absent. */
static void arch_value(const em_gguf *g, const summary *s, const char *suffix, char *buf,
                       size_t size) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", s->arch, suffix);
    int64_t i = em_gguf_find_key(g, key);
    if (i < 0) snprintf(buf, size, "-");
    else em_gguf_kv_format(g, i, buf, size, SHOWN_ELEMS);
}

static double bits_per_weight(const summary *s) {
    return s->n_params ? 8.0 * (double)s->tensor_bytes / (double)s->n_params : 0.0;
}

/* "260.1K", "6.74B": parameter counts as people say them. */
static void human_count(uint64_t n, char *buf, size_t size) {
    static const char *units[] = {"", "K", "M", "B", "T"};
    double v = (double)n;
    int u = 0;
    while (v >= 1000.0 && u < 4) {
        v /= 1000.0;
        u++;
    }
    if (u == 0) snprintf(buf, size, "%" PRIu64, n);
    else snprintf(buf, size, "%.1f%s", v, units[u]);
}

/* -------------------------------------------------------------- text */

static void type_label(const em_gguf *g, int64_t i, char *buf, size_t size) {
    em_gguf_type t = em_gguf_kv_type(g, i);
    em_gguf_type et;
    uint64_t n;
    if (t == EM_GGUF_ARRAY && em_gguf_kv_arr(g, i, &et, &n) == EM_OK)
        snprintf(buf, size, "arr[%s,%" PRIu64 "]", em_gguf_type_name(et), n);
    else
        snprintf(buf, size, "%s", em_gguf_type_name(t));
}

static void shape_text(const em_gguf_tensor *t, char *buf, size_t size) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, size - o, "[");
    for (uint32_t d = 0; d < t->n_dims && o < size; d++)
        o += (size_t)snprintf(buf + o, size - o, "%s%" PRId64, d ? ", " : "", t->ne[d]);
    if (o < size) snprintf(buf + o, size - o, "]");
}

static const char *type_text(em_type t) {
    const em_type_traits *tr = em_get_type_traits(t);
    return tr ? tr->name : "?";
}

static void print_text(const char *path, const em_gguf *g) {
    char val[VALUE_CHARS + 1], tl[64], shape[128], human[32];
    printf("file: %s\n", path);
    printf("gguf version: %u\n", em_gguf_version(g));
    printf("alignment: %u\n", em_gguf_alignment(g));
    printf("data offset: %" PRIu64 "\n", em_gguf_data_offset(g));
    printf("\nmetadata: %" PRId64 " keys\n", em_gguf_n_kv(g));
    for (int64_t i = 0; i < em_gguf_n_kv(g); i++) {
        em_gguf_str k = em_gguf_key(g, i);
        type_label(g, i, tl, sizeof tl);
        em_gguf_kv_format(g, i, val, sizeof val, SHOWN_ELEMS);
        printf("  %-44.*s %-14s %s\n", (int)EM_MIN(k.len, (uint64_t)200), k.ptr, tl, val);
    }
    printf("\ntensors: %" PRId64 "\n", em_gguf_n_tensors(g));
    if (em_gguf_n_tensors(g) > 0)
        printf("  %-40s %-8s %-24s %12s %12s\n", "name", "type", "shape", "offset", "bytes");
    for (int64_t i = 0; i < em_gguf_n_tensors(g); i++) {
        const em_gguf_tensor *t = em_gguf_tensor_at(g, i);
        shape_text(t, shape, sizeof shape);
        printf("  %-40.*s %-8s %-24s %12" PRIu64 " %12" PRIu64 "\n",
               (int)EM_MIN(t->name.len, (uint64_t)200), t->name.ptr, type_text(t->type), shape,
               t->offset, t->size);
    }
    summary s;
    gather(g, &s);
    printf("\nsummary:\n");
    printf("  %-12s %s\n", "arch", s.arch[0] ? s.arch : "-");
    for (size_t k = 0; k < sizeof summary_keys / sizeof summary_keys[0]; k++) {
        arch_value(g, &s, summary_keys[k].suffix, val, sizeof val);
        printf("  %-12s %s\n", summary_keys[k].label, val);
    }
    if (s.n_vocab >= 0) printf("  %-12s %" PRId64 "\n", "n_vocab", s.n_vocab);
    else printf("  %-12s -\n", "n_vocab");
    human_count(s.n_params, human, sizeof human);
    printf("  %-12s %" PRIu64 " (%s)\n", "n_params", s.n_params, human);
    printf("  %-12s %" PRIu64 " bytes\n", "file_size", em_gguf_file_size(g));
    printf("  %-12s %.2f\n", "bpw", bits_per_weight(&s));
}

/* -------------------------------------------------------------- json */

static json_t *json_str_n(const char *p, uint64_t n) {
    /* jansson refuses invalid UTF-8; fall back to a lossy copy so that a
     * strange key never loses the whole report. */
    json_t *j = json_stringn(p, (size_t)n);
    if (j) return j;
    char *c = malloc((size_t)n + 1);
    if (!c) return json_null();
    for (uint64_t i = 0; i < n; i++) c[i] = (unsigned char)p[i] < 0x80 && p[i] ? p[i] : '?';
    j = json_stringn(c, (size_t)n);
    free(c);
    return j ? j : json_null();
}

/* Scalars become JSON numbers, bools and strings; arrays their shortened
 * text, as in the text report. */
static json_t *json_value(const em_gguf *g, int64_t i) {
    em_gguf_type t = em_gguf_kv_type(g, i);
    const uint8_t *raw = em_gguf_kv_raw(g, i);
    char buf[4096];
    if (t == EM_GGUF_STRING) {
        uint64_t n;
        memcpy(&n, raw, 8);
        return json_str_n((const char *)raw + 8, n);
    }
    if (t == EM_GGUF_BOOL) return json_boolean(raw[0] != 0);
    size_t len = em_gguf_kv_format(g, i, buf, sizeof buf, SHOWN_ELEMS);
    if (t == EM_GGUF_FLOAT32 || t == EM_GGUF_FLOAT64) return json_real(strtod(buf, NULL));
    if (t == EM_GGUF_UINT64) {
        unsigned long long u = strtoull(buf, NULL, 10);
        if (u <= (unsigned long long)INT64_MAX) return json_integer((json_int_t)u);
        return json_str_n(buf, len); /* JSON integers stop at int64 here */
    }
    if (t != EM_GGUF_ARRAY) return json_integer(strtoll(buf, NULL, 10));
    return json_str_n(buf, len);
}

static int print_json(const char *path, const em_gguf *g) {
    json_t *root = json_object(), *meta = json_object(), *tensors = json_array(),
           *sum = json_object();
    char tl[64], val[4096];
    json_object_set_new(root, "file", json_string(path));
    json_object_set_new(root, "version", json_integer(em_gguf_version(g)));
    json_object_set_new(root, "alignment", json_integer(em_gguf_alignment(g)));
    json_object_set_new(root, "data_offset", json_integer((json_int_t)em_gguf_data_offset(g)));
    for (int64_t i = 0; i < em_gguf_n_kv(g); i++) {
        em_gguf_str k = em_gguf_key(g, i);
        json_t *e = json_object();
        type_label(g, i, tl, sizeof tl);
        json_object_set_new(e, "type", json_string(tl));
        json_object_set_new(e, "value", json_value(g, i));
        char *key = strndup(k.ptr, (size_t)k.len);
        if (key) json_object_set_new(meta, key, e);
        else json_decref(e);
        free(key);
    }
    json_object_set_new(root, "metadata", meta);
    for (int64_t i = 0; i < em_gguf_n_tensors(g); i++) {
        const em_gguf_tensor *t = em_gguf_tensor_at(g, i);
        json_t *e = json_object(), *shape = json_array();
        json_object_set_new(e, "name", json_str_n(t->name.ptr, t->name.len));
        json_object_set_new(e, "type", json_string(type_text(t->type)));
        for (uint32_t d = 0; d < t->n_dims; d++) json_array_append_new(shape, json_integer(t->ne[d]));
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "offset", json_integer((json_int_t)t->offset));
        json_object_set_new(e, "bytes", json_integer((json_int_t)t->size));
        json_array_append_new(tensors, e);
    }
    json_object_set_new(root, "tensors", tensors);
    summary s;
    gather(g, &s);
    json_object_set_new(sum, "arch", json_string(s.arch));
    for (size_t k = 0; k < sizeof summary_keys / sizeof summary_keys[0]; k++) {
        snprintf(val, sizeof val, "%s.%s", s.arch, summary_keys[k].suffix);
        int64_t ki = em_gguf_find_key(g, val);
        json_object_set_new(sum, summary_keys[k].label, ki < 0 ? json_null() : json_value(g, ki));
    }
    json_object_set_new(sum, "n_vocab", json_integer(s.n_vocab));
    json_object_set_new(sum, "n_params", json_integer((json_int_t)s.n_params));
    json_object_set_new(sum, "file_size", json_integer((json_int_t)em_gguf_file_size(g)));
    json_object_set_new(sum, "bpw", json_real(bits_per_weight(&s)));
    json_object_set_new(root, "summary", sum);
    int rc = json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) == 0 ? 0 : 1;
    putchar('\n');
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------ --tensor */

static int print_tensor(const char *path, const em_gguf *g, const char *name, int64_t limit) {
    const em_gguf_tensor *t = em_gguf_find_tensor(g, name);
    if (!t) {
        fprintf(stderr, "ember: inspect: %s: no tensor named '%s'\n", path, name);
        return 1;
    }
    const em_type_traits *tr = em_get_type_traits(t->type);
    if (!tr || !tr->can_dequant) {
        fprintf(stderr, "ember: inspect: tensor '%s' has type %s, which ember cannot dequantize\n",
                name, type_text(t->type));
        return 1;
    }
    int64_t ne0 = t->ne[0];
    int64_t rows = t->ne[1] * t->ne[2] * t->ne[3];
    size_t row_bytes = em_row_size(t->type, ne0);
    float *row = malloc((size_t)ne0 * sizeof *row);
    if (!row) {
        fprintf(stderr, "ember: inspect: out of memory for a row of %" PRId64 " values\n", ne0);
        return 1;
    }
    char shape[128];
    shape_text(t, shape, sizeof shape);
    printf("# %s %s %s\n", name, type_text(t->type), shape);
    int64_t printed = 0, total = ne0 * rows;
    for (int64_t r = 0; r < rows && (limit < 0 || printed < limit); r++) {
        const uint8_t *src = (const uint8_t *)t->data + (uint64_t)r * row_bytes;
        if (em_dequantize_row(t->type, src, row, ne0) != EM_OK) {
            fprintf(stderr, "ember: inspect: %s\n", em_last_error());
            free(row);
            return 1;
        }
        int64_t n = limit < 0 ? ne0 : EM_MIN(ne0, limit - printed);
        for (int64_t k = 0; k < n; k++) printf(k ? " %.9g" : "%.9g", row[k]);
        putchar('\n');
        printed += n;
    }
    if (printed < total) printf("# ... %" PRId64 " of %" PRId64 " values shown\n", printed, total);
    free(row);
    return 0;
}

/* ---------------------------------------------------------------- main */

/* What the command line asks for. */
typedef struct inspect_opts {
    const char *path, *tensor;
    int64_t limit;  /* values --tensor prints; -1: all */
    bool json;
} inspect_opts;

static em_opts_result parse_args(int argc, char **argv, inspect_opts *o) {
    *o = (inspect_opts){.limit = -1};
    const em_opt opts[] = {
        {.name = "tensor", .type = EM_OPT_STRING, EM_OPT_DEST(o->tensor), .arg = "NAME",
         .help = "print the values of tensor NAME (dequantized), one row per line"},
        {.name = "limit", .type = EM_OPT_INT, EM_OPT_DEST(o->limit), .min = 0, .max = 1e15,
         .help = "with --tensor: print at most N values in all", .def = "every value"},
        {.name = "json", .type = EM_OPT_FLAG, EM_OPT_DEST(o->json), .help = "print the report as one JSON object"},
        {0}};
    const em_cmd cmd = {.name = "inspect",
                        .synopsis = "MODEL.gguf [options]",
                        .about = "Shows a GGUF file's header, metadata, tensors and an architecture summary.\n",
                        .opts = opts,
                        .max_pos = 1};
    int n_pos = 0;
    em_opts_result r = em_opts_parse(&cmd, argc, argv, &o->path, &n_pos);
    if (r == EM_OPTS_OK && n_pos == 0) {
        fprintf(stderr, "ember inspect: no model file given (see ember inspect --help)\n");
        r = EM_OPTS_USAGE;
    } else if (r == EM_OPTS_OK && o->json && o->tensor) {
        fprintf(stderr, "ember inspect: --json and --tensor do not go together\n");
        r = EM_OPTS_USAGE;
    }
    return r;
}

int em_cli_inspect(int argc, char **argv) {
    inspect_opts o;
    em_opts_result r = parse_args(argc, argv, &o);
    if (r != EM_OPTS_OK) return em_opts_exit_code(r);
    const char *path = o.path, *tensor = o.tensor;
    bool json = o.json;
    int64_t limit = o.limit;
    em_gguf *g;
    if (em_gguf_open(&g, path) != EM_OK) {
        fprintf(stderr, "ember: inspect: %s: %s\n", path, em_last_error());
        return 1;
    }
    int rc;
    if (tensor) rc = print_tensor(path, g, tensor, limit);
    else if (json) rc = print_json(path, g);
    else {
        print_text(path, g);
        rc = 0;
    }
    em_gguf_close(g);
    if (fflush(stdout) != 0) rc = 1;
    return rc;
}
