/*
 * quantize.c - `ember quantize IN.gguf OUT.gguf TYPE`: converts a model to
 * another tensor type or quantization mix.
 *
 * Every metadata key is copied, general.file_type is set to the mix's
 * llama.cpp number and general.quantization_version to 2, so that the
 * result loads in ember and in llama.cpp alike.  Each tensor gets the type
 * the mix's rules give it (src/quant/mix.c); its rows are converted by a
 * pool of threads, each row read into floats (dequantized if need be) and
 * written in the new type.  Input that is already quantized is refused
 * unless --allow-requantize is given, as llama.cpp does: quantizing an
 * approximation again compounds the error.
 *
 * All checks (types, requantization, names) run before any conversion, so
 * a bad request fails at once with a one-line message and writes nothing.
 */
#include "cli/cli.h"
#include "core/threadpool.h"
#include "gguf/gguf.h"
#include "quant/mix.h"
#include "quant/quant.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* GGUF's quantization_version of the K-quant and legacy block layouts. */
#define EM_QUANT_VERSION 2

/* The command line: IN.gguf OUT.gguf TYPE and the options. */
typedef struct quantize_opts {
    const char *pos[3];  /* IN.gguf, OUT.gguf, TYPE                      */
    int n_pos;
    int32_t n_threads;   /* 0: physical cores                            */
    bool pure, allow_requant;
} quantize_opts;

/* The help's list of TYPEs, one "  NAME  description" line each. */
static void list_types(char *buf, size_t size) {
    size_t n = (size_t)snprintf(buf, size, "TYPE (as in llama.cpp; 1-D tensors such as norms are never converted):\n");
    for (int i = 0; i < em_mix_count() && n < size; i++) {
        const em_mix *m = em_mix_at(i);
        int w = snprintf(buf + n, size - n, "  %-8s %s\n", m->name, m->desc);
        if (w < 0) break;
        n += (size_t)w;
    }
}

static em_opts_result parse_args(int argc, char **argv, quantize_opts *o) {
    *o = (quantize_opts){0};
    const em_opt opts[] = {
        {.name = "threads", .short_name = "t", .type = EM_OPT_INT, EM_OPT_DEST(o->n_threads), .min = 1, .max = 512,
         .help = "worker threads", .def = "physical cores"},
        {.name = "pure", .type = EM_OPT_FLAG, EM_OPT_DEST(o->pure),
         .help = "every matrix gets TYPE's base type (no per-tensor rules)"},
        {.name = "allow-requantize", .type = EM_OPT_FLAG, EM_OPT_DEST(o->allow_requant),
         .help = "accept input that is already quantized (it is dequantized\n"
                 "first; the result is worse than quantizing the original weights)"},
        {0}};
    char types[4096];
    list_types(types, sizeof types);
    const em_cmd cmd = {.name = "quantize",
                        .synopsis = "[options] IN.gguf OUT.gguf TYPE",
                        .about = "Converts the weights of a GGUF model to TYPE and writes a new file.\n",
                        .epilog = types,
                        .opts = opts,
                        .max_pos = 3};
    em_opts_result r = em_opts_parse(&cmd, argc, argv, o->pos, &o->n_pos);
    if (r == EM_OPTS_OK && o->n_pos < 3) {
        fprintf(stderr, "ember quantize: want IN.gguf OUT.gguf TYPE (see ember quantize --help)\n");
        r = EM_OPTS_USAGE;
    }
    return r;
}

/* Human-readable bytes. */
static const char *fmt_size(double b, char *buf, size_t size) {
    if (b >= 1024.0 * 1024 * 1024) snprintf(buf, size, "%.2f GiB", b / (1024.0 * 1024 * 1024));
    else if (b >= 1024.0 * 1024) snprintf(buf, size, "%.2f MiB", b / (1024.0 * 1024));
    else snprintf(buf, size, "%.2f KiB", b / 1024.0);
    return buf;
}

/* ----------------------------------------------------------- the plan */

/* What happens to one tensor, decided before any work is done. */
typedef struct tensor_plan {
    char name[96];       /* NUL-terminated tensor name                  */
    uint32_t n_dims;     /* dims without trailing ones (1 for vectors)   */
    int64_t nrows;       /* rows of ne[0] elements: ne1 * ne2 * ne3      */
    em_type new_type;
    bool fallback;       /* the rules' type did not fit the row length   */
} tensor_plan;

/* ------------------------------------------------- parallel conversion */

typedef struct convert_job {
    const em_gguf_tensor *t;
    em_type new_type;
    int64_t nrows;
    size_t src_row;      /* bytes of one input row                       */
    size_t dst_row;      /* bytes of one output row                      */
    void *dst;           /* [nrows * dst_row] bytes                      */
    float *scratch;      /* [n_threads][ne0] floats                      */
    em_status *status;   /* [n_threads] each thread's outcome            */
    int64_t *bad_row;    /* [n_threads] first row with NaN/Inf, or -1    */
    char (*err)[256];    /* [n_threads] each thread's error text         */
} convert_job;

/* Converts a contiguous share of the rows: rows are independent, and equal
 * shares keep the work balanced because every row costs the same. */
static void convert_rows(void *arg, int ith, int nth) {
    convert_job *j = arg;
    const int64_t ne0 = j->t->ne[0];
    const int64_t r0 = j->nrows * ith / nth, r1 = j->nrows * (ith + 1) / nth;
    float *f = j->scratch + (size_t)ith * (size_t)ne0;
    j->status[ith] = EM_OK;
    j->bad_row[ith] = -1;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *src = (const uint8_t *)j->t->data + (size_t)r * j->src_row;
        em_status st = em_dequantize_row(j->t->type, src, f, ne0);
        if (st == EM_OK) {
            for (int64_t i = 0; i < ne0; i++)
                if (!isfinite(f[i])) {
                    j->bad_row[ith] = r;
                    return;
                }
            st = em_quantize_row(j->new_type, f, (uint8_t *)j->dst + (size_t)r * j->dst_row, ne0, NULL);
        }
        if (st != EM_OK) {
            j->status[ith] = st;
            snprintf(j->err[ith], sizeof j->err[ith], "%s", em_last_error());
            return;
        }
    }
}

/* ----------------------------------------------------------------- main */

typedef struct quant_state {
    em_gguf *src;
    em_gguf_writer *w;
    em_threadpool *pool;
    tensor_plan *plan;   /* [n_tensors]                                  */
    void *dst;           /* the output buffer of the current tensor      */
    size_t dst_cap;
    float *scratch;      /* [n_threads][max ne0]                          */
    em_status *status;   /* [n_threads]                                  */
    int64_t *bad_row;    /* [n_threads]                                  */
    char (*err)[256];    /* [n_threads]                                  */
} quant_state;

static void state_free(quant_state *s) {
    em_threadpool_free(s->pool);
    em_gguf_writer_free(s->w);
    em_gguf_close(s->src);
    free(s->plan);
    free(s->dst);
    free(s->scratch);
    free(s->status);
    free(s->bad_row);
    free(s->err);
}

/* Decides every tensor's type and checks that the conversion is possible.
 * Returns false (message printed) when it is not. */
static bool make_plan(quant_state *s, const char *in_path, const em_mix *mix, bool allow_requant,
                      int64_t *max_ne0) {
    em_mix_model mm;
    if (em_mix_model_from_gguf(s->src, &mm) != EM_OK) {
        fprintf(stderr, "ember quantize: %s: %s\n", in_path, em_last_error());
        return false;
    }
    int64_t n = em_gguf_n_tensors(s->src);
    s->plan = calloc((size_t)(n ? n : 1), sizeof *s->plan);
    if (!s->plan) {
        fprintf(stderr, "ember quantize: out of memory\n");
        return false;
    }
    bool warned = false;
    *max_ne0 = 1;
    for (int64_t i = 0; i < n; i++) {
        const em_gguf_tensor *t = em_gguf_tensor_at(s->src, i);
        tensor_plan *p = &s->plan[i];
        if (t->name.len >= sizeof p->name || memchr(t->name.ptr, 0, (size_t)t->name.len)) {
            fprintf(stderr, "ember quantize: %s: tensor #%lld has a name ember cannot copy\n", in_path,
                    (long long)i);
            return false;
        }
        memcpy(p->name, t->name.ptr, (size_t)t->name.len);
        p->name[t->name.len] = '\0';
        p->n_dims = 4;
        while (p->n_dims > 1 && t->ne[p->n_dims - 1] == 1) p->n_dims--;
        p->nrows = t->ne[1] * t->ne[2] * t->ne[3];
        p->new_type = em_mix_tensor_type(mix, &mm, p->name, p->n_dims, t->ne[0], t->type, &p->fallback);
        if (p->new_type == t->type) continue;

        const em_type_traits *tr = em_get_type_traits(t->type);
        const char *tn = em_type_name(t->type) ? em_type_name(t->type) : "?";
        if (tr && tr->is_quantized && !allow_requant) {
            fprintf(stderr,
                    "ember quantize: %s: tensor %s is already quantized (%s); quantizing it again loses "
                    "quality - use the F32/F16/BF16 original, or pass --allow-requantize\n",
                    in_path, p->name, tn);
            return false;
        }
        if (!tr || !tr->can_dequant) {
            fprintf(stderr, "ember quantize: %s: tensor %s has type %s, which ember cannot convert\n", in_path,
                    p->name, tn);
            return false;
        }
        if (tr->is_quantized && !warned) {
            fprintf(stderr, "ember quantize: warning: requantizing from %s: the result is worse than "
                            "quantizing the original weights\n", tn);
            warned = true;
        }
        *max_ne0 = EM_MAX(*max_ne0, t->ne[0]);
    }
    return true;
}

/* Converts (or copies) tensor i and adds it to the writer. */
static bool add_tensor(quant_state *s, int64_t i, int n_threads, const char *in_path) {
    const em_gguf_tensor *t = em_gguf_tensor_at(s->src, i);
    const tensor_plan *p = &s->plan[i];
    uint32_t n_dims = EM_MAX(t->n_dims, 1);
    if (p->new_type == t->type) {
        if (em_gguf_add_tensor(s->w, p->name, t->type, n_dims, t->ne, t->data) != EM_OK) {
            fprintf(stderr, "ember quantize: %s\n", em_last_error());
            return false;
        }
        return true;
    }
    size_t dst_row = em_row_size(p->new_type, t->ne[0]);
    uint64_t bytes;
    if (dst_row == 0 || !em_mul_ok(dst_row, (uint64_t)p->nrows, &bytes) || bytes > SIZE_MAX) {
        fprintf(stderr, "ember quantize: tensor %s is too large to convert\n", p->name);
        return false;
    }
    if (bytes > s->dst_cap) {
        void *nb = realloc(s->dst, (size_t)bytes);
        if (!nb) {
            fprintf(stderr, "ember quantize: out of memory for tensor %s (%llu bytes)\n", p->name,
                    (unsigned long long)bytes);
            return false;
        }
        s->dst = nb;
        s->dst_cap = (size_t)bytes;
    }
    convert_job job = {
        .t = t,
        .new_type = p->new_type,
        .nrows = p->nrows,
        .src_row = em_row_size(t->type, t->ne[0]),
        .dst_row = dst_row,
        .dst = s->dst,
        .scratch = s->scratch,
        .status = s->status,
        .bad_row = s->bad_row,
        .err = s->err,
    };
    em_threadpool_run(s->pool, convert_rows, &job);
    for (int k = 0; k < n_threads; k++) {
        if (s->bad_row[k] >= 0) {
            fprintf(stderr, "ember quantize: %s: tensor %s holds NaN or infinite values (row %lld)\n", in_path,
                    p->name, (long long)s->bad_row[k]);
            return false;
        }
        if (s->status[k] != EM_OK) {
            fprintf(stderr, "ember quantize: tensor %s: %s\n", p->name, s->err[k]);
            return false;
        }
    }
    if (em_gguf_add_tensor(s->w, p->name, p->new_type, n_dims, t->ne, s->dst) != EM_OK) {
        fprintf(stderr, "ember quantize: %s\n", em_last_error());
        return false;
    }
    return true;
}

/* The mix TYPE names, with --pure applied; 2 (usage) for an unknown
 * TYPE, 1 when the output is the input (writing it would truncate the
 * mapping being read), else 0. */
static int choose_mix(const quantize_opts *o, em_mix *mix) {
    const em_mix *found = em_mix_find(o->pos[2]);
    if (!found) {
        fprintf(stderr, "ember quantize: unknown type '%s' (see ember quantize --help for the list)\n", o->pos[2]);
        return 2;
    }
    *mix = *found;
    mix->pure = mix->pure || o->pure;
    struct stat si, so;
    if (stat(o->pos[0], &si) == 0 && stat(o->pos[1], &so) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino) {
        fprintf(stderr, "ember quantize: the output %s is the input file\n", o->pos[1]);
        return 1;
    }
    return 0;
}

/* Opens the input, plans every tensor, checks that the output can be
 * written (before the work, not after it; *created then says a failure
 * must remove the partial file), and sets up the threads and the writer. */
static bool prepare(quant_state *s, const quantize_opts *o, const em_mix *mix, int n_threads, bool *created) {
    const char *in_path = o->pos[0], *out_path = o->pos[1];
    if (em_gguf_open(&s->src, in_path) != EM_OK) {
        fprintf(stderr, "ember quantize: %s\n", em_last_error());
        return false;
    }
    int64_t max_ne0;
    if (!make_plan(s, in_path, mix, o->allow_requant, &max_ne0)) return false;
    FILE *probe = fopen(out_path, "wb");
    if (!probe) {
        fprintf(stderr, "ember quantize: cannot create %s: %s\n", out_path, strerror(errno));
        return false;
    }
    fclose(probe);
    *created = true;
    s->scratch = malloc((size_t)max_ne0 * (size_t)n_threads * sizeof(float));
    s->status = calloc((size_t)n_threads, sizeof *s->status);
    s->bad_row = calloc((size_t)n_threads, sizeof *s->bad_row);
    s->err = calloc((size_t)n_threads, sizeof *s->err);
    if (!s->scratch || !s->status || !s->bad_row || !s->err) {
        fprintf(stderr, "ember quantize: out of memory\n");
        return false;
    }
    if (em_threadpool_init(&s->pool, n_threads) != EM_OK || em_gguf_writer_init(&s->w) != EM_OK ||
        em_gguf_copy_kv(s->w, s->src) != EM_OK ||
        em_gguf_set_u32(s->w, "general.quantization_version", EM_QUANT_VERSION) != EM_OK ||
        em_gguf_set_u32(s->w, "general.file_type", (uint32_t)mix->ftype) != EM_OK) {
        fprintf(stderr, "ember quantize: %s\n", em_last_error());
        return false;
    }
    return true;
}

/* Totals over all tensors, for the summary. */
typedef struct quant_totals {
    uint64_t size_in, size_out; /* bytes of tensor data                  */
    uint64_t n_elems;
    int n_fallback;             /* tensors that got a fallback type      */
} quant_totals;

/* One line of progress: name, shape, types and sizes of tensor i. */
static void print_tensor_line(const quant_state *s, int64_t i, int64_t n, uint64_t new_size) {
    const em_gguf_tensor *t = em_gguf_tensor_at(s->src, i);
    const tensor_plan *p = &s->plan[i];
    char shape[96], a[32], b[32];
    int o = snprintf(shape, sizeof shape, "[%lld", (long long)t->ne[0]);
    for (uint32_t d = 1; d < p->n_dims && o > 0 && (size_t)o < sizeof shape; d++)
        o += snprintf(shape + o, sizeof shape - (size_t)o, ", %lld", (long long)t->ne[d]);
    if (o > 0 && (size_t)o < sizeof shape) snprintf(shape + o, sizeof shape - (size_t)o, "]");
    printf("[%4lld/%4lld] %-36s %-22s %-6s -> %-6s %12s -> %12s%s\n", (long long)i + 1, (long long)n, p->name,
           shape, em_type_name(t->type), em_type_name(p->new_type), fmt_size((double)t->size, a, sizeof a),
           fmt_size((double)new_size, b, sizeof b), p->fallback ? "  (fallback)" : "");
    fflush(stdout);
}

/* Converts (or copies) every tensor into the writer. */
static bool convert_all(quant_state *s, int n_threads, const char *in_path, quant_totals *tot) {
    int64_t n = em_gguf_n_tensors(s->src);
    for (int64_t i = 0; i < n; i++) {
        const em_gguf_tensor *t = em_gguf_tensor_at(s->src, i);
        const tensor_plan *p = &s->plan[i];
        if (!add_tensor(s, i, n_threads, in_path)) return false;
        uint64_t new_size = em_row_size(p->new_type, t->ne[0]) * (uint64_t)p->nrows;
        tot->size_in += t->size;
        tot->size_out += new_size;
        tot->n_elems += (uint64_t)(t->ne[0] * p->nrows);
        tot->n_fallback += p->fallback;
        print_tensor_line(s, i, n, new_size);
    }
    return true;
}

static void print_summary(const quant_totals *tot, double seconds) {
    char a[32], b[32];
    double bpw_in = tot->n_elems ? 8.0 * (double)tot->size_in / (double)tot->n_elems : 0;
    double bpw_out = tot->n_elems ? 8.0 * (double)tot->size_out / (double)tot->n_elems : 0;
    printf("model size: %s -> %s (%.2f -> %.2f bits per weight)\n", fmt_size((double)tot->size_in, a, sizeof a),
           fmt_size((double)tot->size_out, b, sizeof b), bpw_in, bpw_out);
    if (tot->n_fallback)
        printf("%d tensor%s got a fallback type: %s row length fits no block of the type the mix "
               "chose\n", tot->n_fallback, tot->n_fallback == 1 ? "" : "s", tot->n_fallback == 1 ? "its" : "their");
    printf("done in %.2f s\n", seconds);
}

int em_cli_quantize(int argc, char **argv) {
    quantize_opts o;
    em_opts_result r = parse_args(argc, argv, &o);
    if (r != EM_OPTS_OK) return em_opts_exit_code(r);
    em_mix mix;
    int rc = choose_mix(&o, &mix);
    if (rc != 0) return rc;
    int n_threads = o.n_threads > 0 ? o.n_threads : em_physical_cores();
    const char *in_path = o.pos[0], *out_path = o.pos[1];

    quant_state s = {0};
    quant_totals tot = {0};
    bool created = false;
    double t0 = em_time_s();
    bool ok = prepare(&s, &o, &mix, n_threads, &created);
    if (ok) {
        printf("ember quantize: %s -> %s as %s%s, %d threads\n", in_path, out_path, mix.name,
               mix.pure && !em_mix_find(o.pos[2])->pure ? " (pure)" : "", n_threads);
        ok = convert_all(&s, n_threads, in_path, &tot);
    }
    if (ok && em_gguf_write(s.w, out_path) != EM_OK) {
        fprintf(stderr, "ember quantize: %s\n", em_last_error());
        ok = false;
    }
    if (ok) print_summary(&tot, em_time_s() - t0);
    state_free(&s);
    if (!ok && created) remove(out_path);
    return ok ? 0 : 1;
}
