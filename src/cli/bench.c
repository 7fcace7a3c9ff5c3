/*
 * bench.c - `ember bench`: prompt-processing and generation speed of one
 * or more models, in llama-bench's terms (pp512, tg128, t/s as mean ± sd)
 * so that figures compare, plus the roofline: the machine's read
 * bandwidth (measured by ember itself), the bytes a generated token
 * streams, and the share of that ceiling generation reaches.
 *
 * -o table prints a Markdown table like llama-bench's; -o json prints one
 * JSON object per test and line, with llama-bench's field names where
 * they mean the same.  -p, -n and -t take comma-separated lists; every
 * model runs every combination.
 */
#include "bench/bench.h"
#include "cli/cli.h"
#include "model/model.h"
#include "quant/mix.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAX_LIST 16
#define MAX_MODELS 32

static void bench_usage(FILE *out) {
    fprintf(out,
            "usage: ember bench -m MODEL.gguf [-m MODEL2.gguf ...] [options]\n"
            "\n"
            "Measures prompt processing (pp) and generation (tg) speed and compares\n"
            "generation with the machine's memory-bandwidth roofline.\n"
            "\n"
            "options (N,M,... runs each value):\n"
            "  -m, --model FILE        a GGUF model (repeatable)\n"
            "  -p, --n-prompt N,...    prompt tokens of the pp test (default 512; 0 skips it)\n"
            "  -n, --n-gen N,...       generated tokens of the tg test (default 128; 0 skips it)\n"
            "  -t, --threads N,...     worker threads (default: physical cores)\n"
            "  -r, --repetitions N     timed runs per test (default 5)\n"
            "  -b, --batch-size N      most tokens per forward pass in pp (default 512)\n"
            "  -o, --output FORMAT     table (default) or json (one object per test and line)\n"
            "      --kv-type f16|f32|q8_0   KV cache precision (default f16)\n"
            "  -mmp, --mmap 0|1        map the model (1, default) or read it into memory (0)\n"
            "      --mlock 0|1         lock the model in memory (default 0; needs ulimit -l)\n"
            "  -h, --help              show this help\n");
}

/* Parses "a,b,c" into up to MAX_LIST integers in [lo, hi]. */
static bool parse_list(const char *s, long lo, long hi, int32_t *out, int *n) {
    *n = 0;
    const char *p = s;
    while (*n < MAX_LIST) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < lo || v > hi) return false;
        out[(*n)++] = (int32_t)v;
        if (*end == '\0') return true;
        if (*end != ',') return false;
        p = end + 1;
    }
    return false;
}

/* The CPU's name from /proc/cpuinfo, or "unknown". */
static void cpu_name(char *buf, size_t size) {
    snprintf(buf, size, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10)) continue;
        char *c = strchr(line, ':');
        if (!c) break;
        c++;
        while (*c == ' ' || *c == '\t') c++;
        c[strcspn(c, "\n")] = '\0';
        snprintf(buf, size, "%s", c);
        break;
    }
    fclose(f);
}

/* "llama 1B Q4_K_M": architecture, rounded parameter count, and the file
 * type by its mix name (from general.file_type), else the type of the
 * first layer's gate matrix. */
static void model_type(const em_model *m, char *buf, size_t size) {
    double p = (double)em_model_n_params(m);
    const char *unit = "";
    if (p >= 1e9) p /= 1e9, unit = "B";
    else if (p >= 1e6) p /= 1e6, unit = "M";
    else if (p >= 1e3) p /= 1e3, unit = "K";
    const char *ty = m->layers ? em_type_name(m->layers[0].w_gate.type) : NULL;
    int64_t ft;
    if (em_gguf_get_i64(m->gguf, "general.file_type", &ft) == EM_OK) {
        for (int i = 0; i < em_mix_count(); i++)
            if ((int64_t)em_mix_at(i)->ftype == ft && !em_mix_at(i)->pure) {
                ty = em_mix_at(i)->name;
                break;
            }
    }
    snprintf(buf, size, "%s %.0f%s %s", em_model_arch(m), p, unit, ty ? ty : "?");
}

/* One finished test, ready to print. */
typedef struct test_row {
    const char *path;
    const em_model *model;
    const char *type_name;  /* model_type text                              */
    bool is_pp;
    int32_t n;              /* n_prompt or n_gen                            */
    int32_t n_batch;
    em_type kv_type;
    const em_bench_result *r;
} test_row;

/* Column widths of the table; the model column is left-aligned, the
 * others right-aligned (a Markdown ':' at the right end of the rule). */
static const int col_w[] = {30, 10, 10, 7, 10, 20, 9, 7, 8};

static void print_table_header(void) {
    static const char *const names[] = {"model", "size", "params", "threads", "test",
                                        "t/s", "GFLOP/s", "GB/s", "roofline"};
    printf("|");
    for (int c = 0; c < 9; c++) printf(c ? " %*s |" : " %-*s |", col_w[c], names[c]);
    printf("\n|");
    for (int c = 0; c < 9; c++) {
        printf(" ");
        for (int k = 0; k < col_w[c] - (c ? 1 : 0); k++) putchar('-');
        printf(c ? ": |" : " |");
    }
    printf("\n");
}

static void print_table_row(const test_row *t) {
    const em_bench_result *r = t->r;
    char size[32], params[32], test[32], ts[48], gf[32], gbs[32], roof[32];
    double bytes = (double)em_model_size(t->model);
    if (bytes >= 1024.0 * 1024 * 1024) snprintf(size, sizeof size, "%.2f GiB", bytes / (1024.0 * 1024 * 1024));
    else snprintf(size, sizeof size, "%.2f MiB", bytes / (1024.0 * 1024));
    snprintf(params, sizeof params, "%.2f %s",
             em_model_n_params(t->model) >= 1000000000ULL ? (double)em_model_n_params(t->model) / 1e9
                                                           : (double)em_model_n_params(t->model) / 1e6,
             em_model_n_params(t->model) >= 1000000000ULL ? "B" : "M");
    snprintf(test, sizeof test, "%s%d", t->is_pp ? "pp" : "tg", t->n);
    double avg = t->is_pp ? r->pp_avg_ts : r->tg_avg_ts, sd = t->is_pp ? r->pp_sd_ts : r->tg_sd_ts;
    snprintf(ts, sizeof ts, "%.2f ± %.2f", avg, sd);
    snprintf(gf, sizeof gf, "%.1f", t->is_pp ? r->pp_gflops : r->tg_gflops);
    if (t->is_pp) {
        snprintf(gbs, sizeof gbs, "-");
        snprintf(roof, sizeof roof, "-");
    } else {
        snprintf(gbs, sizeof gbs, "%.2f", r->tg_avg_ts * r->bytes_per_token / 1e9);
        if (r->read_bw_gbs > 0) snprintf(roof, sizeof roof, "%.1f%%", 100.0 * r->tg_roofline_share);
        else snprintf(roof, sizeof roof, "-");
    }
    /* "±" is two bytes in UTF-8 but one column: pad one more. */
    printf("| %-30.30s | %10s | %10s | %7d | %10s | %21s | %9s | %7s | %8s |\n", t->type_name, size, params,
           r->n_threads, test, ts, gf, gbs, roof);
    fflush(stdout);
}

static json_t *samples(const double *secs, int32_t n_reps, int32_t n, bool ns) {
    json_t *a = json_array();
    for (int32_t i = 0; a && i < n_reps; i++)
        json_array_append_new(a, ns ? json_integer((json_int_t)(secs[i] * 1e9)) : json_real(n / secs[i]));
    return a;
}

static bool print_json_row(const test_row *t, const char *cpu, const char *when) {
    const em_bench_result *r = t->r;
    const double *secs = t->is_pp ? r->pp_samples_s : r->tg_samples_s;
    double avg_ns = 0, sd_ns = 0;
    for (int32_t i = 0; i < r->n_reps; i++) avg_ns += secs[i] * 1e9 / r->n_reps;
    for (int32_t i = 0; i < r->n_reps; i++) sd_ns += (secs[i] * 1e9 - avg_ns) * (secs[i] * 1e9 - avg_ns);
    sd_ns = r->n_reps > 1 ? sqrt(sd_ns / (r->n_reps - 1)) : 0;
    const char *kv = em_cli_kv_type_name(t->kv_type);
    json_t *o = json_object();
    if (!o) return false;
    json_object_set_new(o, "cpu_info", json_string(cpu));
    json_object_set_new(o, "model_filename", json_string(t->path));
    json_object_set_new(o, "model_type", json_string(t->type_name));
    json_object_set_new(o, "model_size", json_integer((json_int_t)em_model_size(t->model)));
    json_object_set_new(o, "model_n_params", json_integer((json_int_t)em_model_n_params(t->model)));
    json_object_set_new(o, "n_batch", json_integer(t->n_batch));
    json_object_set_new(o, "n_threads", json_integer(r->n_threads));
    json_object_set_new(o, "type_k", json_string(kv));
    json_object_set_new(o, "type_v", json_string(kv));
    json_object_set_new(o, "n_prompt", json_integer(t->is_pp ? t->n : 0));
    json_object_set_new(o, "n_gen", json_integer(t->is_pp ? 0 : t->n));
    json_object_set_new(o, "test_time", json_string(when));
    json_object_set_new(o, "avg_ns", json_integer((json_int_t)avg_ns));
    json_object_set_new(o, "stddev_ns", json_integer((json_int_t)sd_ns));
    json_object_set_new(o, "avg_ts", json_real(t->is_pp ? r->pp_avg_ts : r->tg_avg_ts));
    json_object_set_new(o, "stddev_ts", json_real(t->is_pp ? r->pp_sd_ts : r->tg_sd_ts));
    json_object_set_new(o, "samples_ns", samples(secs, r->n_reps, t->n, true));
    json_object_set_new(o, "samples_ts", samples(secs, r->n_reps, t->n, false));
    json_object_set_new(o, "read_bw_gbs", r->read_bw_gbs > 0 ? json_real(r->read_bw_gbs) : json_null());
    json_object_set_new(o, "bytes_per_token", t->is_pp ? json_null() : json_real(r->bytes_per_token));
    json_object_set_new(o, "roofline_share",
                        !t->is_pp && r->read_bw_gbs > 0 ? json_real(r->tg_roofline_share) : json_null());
    json_object_set_new(o, "gflops", json_real(t->is_pp ? r->pp_gflops : r->tg_gflops));
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!text) return false;
    puts(text);
    fflush(stdout);
    free(text);
    return true;
}

int em_cli_bench(int argc, char **argv) {
    const char *paths[MAX_MODELS];
    int n_paths = 0;
    int32_t n_prompt[MAX_LIST] = {512}, n_gen[MAX_LIST] = {128}, threads[MAX_LIST] = {0};
    int n_np = 1, n_ng = 1, n_th = 1;
    int32_t reps = 5, n_batch = 512;
    em_model_params mp = em_model_default_params();
    bool json = false;
    em_type kv_type = EM_TYPE_F16;

    /* Every option but --help takes a value, so arguments come in pairs. */
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        int32_t one[MAX_LIST];
        int n_one;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            bench_usage(stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "ember bench: %s needs a value (see ember bench --help)\n", a);
            return 2;
        }
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (n_paths == MAX_MODELS) {
                fprintf(stderr, "ember bench: at most %d models\n", MAX_MODELS);
                return 2;
            }
            paths[n_paths++] = em_cli_model_path(v);
        } else if (!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) {
            ok = parse_list(v, 0, 1 << 20, n_prompt, &n_np);
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-gen")) {
            ok = parse_list(v, 0, 1 << 20, n_gen, &n_ng);
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            ok = parse_list(v, 1, 512, threads, &n_th);
        } else if (!strcmp(a, "-r") || !strcmp(a, "--repetitions")) {
            ok = parse_list(v, 1, EM_BENCH_MAX_REPS, one, &n_one) && n_one == 1;
            reps = one[0];
        } else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size")) {
            ok = parse_list(v, 1, 1 << 16, one, &n_one) && n_one == 1;
            n_batch = one[0];
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!strcmp(v, "table") || !strcmp(v, "md")) json = false;
            else if (!strcmp(v, "json") || !strcmp(v, "jsonl")) json = true;
            else ok = false;
        } else if (!strcmp(a, "--kv-type")) {
            ok = em_cli_parse_kv_type(v, &kv_type);
        } else if (!strcmp(a, "-mmp") || !strcmp(a, "--mmap")) {
            ok = parse_list(v, 0, 1, one, &n_one) && n_one == 1;
            mp.use_mmap = one[0] != 0;
        } else if (!strcmp(a, "--mlock")) {
            ok = parse_list(v, 0, 1, one, &n_one) && n_one == 1;
            mp.use_mlock = one[0] != 0;
        } else {
            fprintf(stderr, "ember bench: unknown option %s (see ember bench --help)\n", a);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "ember bench: bad value for %s: '%s'\n", a, v);
            return 2;
        }
    }
    if (n_paths == 0) {
        fprintf(stderr, "ember bench: no model given (-m MODEL.gguf)\n");
        return 2;
    }
    for (int k = 0; k < n_th; k++)
        if (threads[k] == 0) threads[k] = em_physical_cores();

    char cpu[256], when[64];
    cpu_name(cpu, sizeof cpu);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);

    /* The bandwidth is measured right after each tg test (by
     * em_bench_model), not once per thread count: on a machine shared with
     * other work it changes from minute to minute, and the roofline share
     * should compare figures taken under the same conditions.  Per thread
     * count the footer gives the range. */
    double bw_lo[MAX_LIST] = {0}, bw_hi[MAX_LIST] = {0};
    int bw_n[MAX_LIST] = {0};
    double bpt[MAX_MODELS] = {0}; /* bytes per token of each model's last tg */
    char types[MAX_MODELS][128];
    em_bench_result *res = malloc(sizeof *res);
    if (!res) {
        fprintf(stderr, "ember bench: out of memory\n");
        return 1;
    }
    int rc = 0;
    bool header = false;
    for (int mi = 0; mi < n_paths && rc == 0; mi++) {
        em_model *model = NULL;
        if (em_model_load(&model, paths[mi], &mp) != EM_OK) {
            fprintf(stderr, "ember bench: %s\n", em_last_error());
            rc = 1;
            break;
        }
        model_type(model, types[mi], sizeof types[mi]);
        for (int ti = 0; ti < n_th && rc == 0; ti++) {
            for (int pass = 0; pass < 2 && rc == 0; pass++) {
                bool is_pp = pass == 0;
                int n_list = is_pp ? n_np : n_ng;
                for (int k = 0; k < n_list && rc == 0; k++) {
                    int32_t n = is_pp ? n_prompt[k] : n_gen[k];
                    if (n == 0) continue;
                    em_bench_params p = em_bench_default_params();
                    p.n_prompt = is_pp ? n : 0;
                    p.n_gen = is_pp ? 0 : n;
                    p.n_threads = threads[ti];
                    p.reps = reps;
                    p.kv_type = kv_type;
                    p.n_batch = n_batch;
                    p.read_bw_gbs = 0;
                    if (em_bench_model(model, &p, res) != EM_OK) {
                        fprintf(stderr, "ember bench: %s: %s\n", paths[mi], em_last_error());
                        rc = 1;
                        break;
                    }
                    if (!is_pp) {
                        bpt[mi] = res->bytes_per_token;
                        if (res->read_bw_gbs > 0) {
                            if (bw_n[ti] == 0 || res->read_bw_gbs < bw_lo[ti]) bw_lo[ti] = res->read_bw_gbs;
                            if (res->read_bw_gbs > bw_hi[ti]) bw_hi[ti] = res->read_bw_gbs;
                            bw_n[ti]++;
                        }
                    }
                    test_row row = {paths[mi], model, types[mi], is_pp, n, n_batch, kv_type, res};
                    if (json) {
                        if (!print_json_row(&row, cpu, when)) {
                            fprintf(stderr, "ember bench: out of memory writing JSON\n");
                            rc = 1;
                        }
                    } else {
                        if (!header) print_table_header();
                        header = true;
                        print_table_row(&row);
                    }
                }
            }
        }
        em_model_free(model);
    }
    if (!json && header) {
        /* What the roofline column is measured against. */
        printf("\nCPU: %s\n", cpu);
        bool any = false;
        for (int ti = 0; ti < n_th; ti++)
            if (bw_n[ti] > 0) {
                printf("%s%d thread%s ", any ? ", " : "read bandwidth (best of 8 passes over 1 GiB, after each tg test): ",
                       threads[ti], threads[ti] == 1 ? "" : "s");
                if (bw_n[ti] == 1)
                    printf("%.2f GB/s", bw_lo[ti]);
                else
                    printf("%.2f-%.2f GB/s", bw_lo[ti], bw_hi[ti]);
                any = true;
            }
        if (any) printf("\n");
        for (int mi = 0; mi < n_paths; mi++)
            if (bpt[mi] > 0) printf("bytes per generated token: %s %.1f MB\n", types[mi], bpt[mi] / 1e6);
    }
    free(res);
    return rc;
}
