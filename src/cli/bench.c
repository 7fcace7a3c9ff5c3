/*
 * bench.c - `ember bench`: prompt-processing and generation speed of one
 * or more models, in llama-bench's terms (pp512, tg128, t/s as mean ± sd)
 * so that figures compare, plus the roofline: the machine's read
 * bandwidth (measured by ember itself), the bytes a generated token
 * streams, and the share of that ceiling generation reaches; for prompt
 * processing, the compute roofline: the FP32 FMA and int8 dot-product
 * peaks ember measures with its kernel set (src/bench/peak.c), and the
 * share of the one that applies (FMA for float weights) pp reaches.
 *
 * -o table prints a Markdown table like llama-bench's; -o json prints one
 * JSON object per test and line, with llama-bench's field names where
 * they mean the same.  -p, -n and -t take comma-separated lists; every
 * model runs every combination.  The steps: parse_args, then per model
 * bench_model (load, then run_test for each test), then print_footer.
 */
#include "bench/bench.h"
#include "cli/cli.h"
#include "model/model.h"
#include "quant/gemm.h"
#include "quant/mix.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAX_LIST 16
#define MAX_MODELS 32

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
    /* The layer's list ends with gate, up and down (of the experts). */
    const em_tensor *mats[16];
    const int n_mats = m->layers ? em_layer_mats(&m->layers[0], mats, 16) : 0;
    const char *ty = n_mats >= 3 ? em_type_name(mats[n_mats - 3]->type) : NULL;
    int64_t ft;
    if (em_gguf_get_i64(m->gguf, "general.file_type", &ft) == EM_OK) {
        for (int i = 0; i < em_mix_count(); i++)
            if ((int64_t)em_mix_at(i)->ftype == ft && !em_mix_at(i)->pure) {
                ty = em_mix_at(i)->name;
                break;
            }
    }
    em_model_desc_typed(m, ty, buf, size);
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
        /* pp's roofline is the compute peak (FMA or int8, see footer). */
        if (r->pp_compute_share > 0) snprintf(roof, sizeof roof, "%.1f%%", 100.0 * r->pp_compute_share);
        else snprintf(roof, sizeof roof, "-");
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
    const bool peaks = t->is_pp && r->pp_fma_peak_gflops > 0;
    json_object_set_new(o, "fma_peak_gflops", peaks ? json_real(r->pp_fma_peak_gflops) : json_null());
    json_object_set_new(o, "int8_peak_gops", peaks ? json_real(r->pp_int8_peak_gops) : json_null());
    json_object_set_new(o, "compute_peak", peaks ? json_string(r->pp_peak_is_int8 ? "int8" : "fma") : json_null());
    json_object_set_new(o, "compute_share", peaks ? json_real(r->pp_compute_share) : json_null());
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!text) return false;
    puts(text);
    fflush(stdout);
    free(text);
    return true;
}

/* What the command line asks for; every model runs every combination of
 * the lists. */
typedef struct bench_opts {
    const char *paths[MAX_MODELS];
    int n_paths;
    int32_t n_prompt[MAX_LIST], n_gen[MAX_LIST], threads[MAX_LIST]; /* 0 threads: physical cores */
    int n_np, n_ng, n_th;
    int32_t reps, n_batch;
    int json;           /* -o: 0 table, 1 JSON lines                      */
    em_type kv_type;
    em_model_params mp;
} bench_opts;

static em_opts_result parse_args(int argc, char **argv, bench_opts *o) {
    *o = (bench_opts){.n_prompt = {512}, .n_gen = {128}, .threads = {0}, .n_np = 1, .n_ng = 1, .n_th = 1,
                      .reps = 5, .n_batch = 512, .kv_type = EM_TYPE_F16, .mp = em_model_default_params()};
    static const char *const outputs[] = {"table", "md", "json", "jsonl", NULL};
    static const int output_json[] = {0, 0, 1, 1};
    const em_opt opts[] = {
        {.name = "model", .short_name = "m", .type = EM_OPT_LIST, EM_OPT_DEST(o->paths[0]), .count = &o->n_paths,
         .cap = MAX_MODELS, .arg = "FILE", .help = "a GGUF model (repeatable)", .flags = EM_OPT_REQUIRED},
        {.name = "n-prompt", .short_name = "p", .type = EM_OPT_INT_LIST, EM_OPT_DEST(o->n_prompt[0]), .count = &o->n_np,
         .cap = MAX_LIST, .min = 0, .max = 1 << 20, .help = "prompt tokens of the pp test (0 skips it)"},
        {.name = "n-gen", .short_name = "n", .type = EM_OPT_INT_LIST, EM_OPT_DEST(o->n_gen[0]), .count = &o->n_ng,
         .cap = MAX_LIST, .min = 0, .max = 1 << 20, .help = "generated tokens of the tg test (0 skips it)"},
        {.name = "threads", .short_name = "t", .type = EM_OPT_INT_LIST, EM_OPT_DEST(o->threads[0]), .count = &o->n_th,
         .cap = MAX_LIST, .min = 1, .max = 512, .help = "worker threads", .def = "physical cores"},
        {.name = "repetitions", .short_name = "r", .type = EM_OPT_INT, EM_OPT_DEST(o->reps), .min = 1,
         .max = EM_BENCH_MAX_REPS, .help = "timed runs per test"},
        {.name = "batch-size", .short_name = "b", .type = EM_OPT_INT, EM_OPT_DEST(o->n_batch), .min = 1,
         .max = 1 << 16, .help = "most tokens per forward pass in pp"},
        {.name = "output", .short_name = "o", .type = EM_OPT_ENUM, EM_OPT_DEST(o->json), .choices = outputs,
         .values = output_json, .arg = "FORMAT", .help = "table|md, or json|jsonl (one object per test and line)",
         .def = "table"},
        EM_CLI_OPT_KV_TYPE(o->kv_type),
        {.name = "mmap", .short_name = "mmp", .type = EM_OPT_FLAG, EM_OPT_DEST(o->mp.use_mmap),
         .help = "map the model file (off: read it into memory)"},
        {.name = "mlock", .type = EM_OPT_FLAG, EM_OPT_DEST(o->mp.use_mlock),
         .help = "lock the model in memory (needs ulimit -l)"},
        {.name = "repack", .type = EM_OPT_FLAG, EM_OPT_DEST(o->mp.repack),
         .help = "row-interleave Q4_0/Q8_0/Q4_K/Q5_K/Q6_K matrices for the GEMM kernels at load"},
        {0}};
    const em_cmd cmd = {.name = "bench",
                        .synopsis = "-m MODEL.gguf [-m MODEL2.gguf ...] [options]",
                        .about = "Measures prompt processing (pp) and generation (tg) speed and compares\n"
                                 "generation with the machine's memory-bandwidth roofline.  -p, -n and -t\n"
                                 "take comma-separated lists (N,M,...): every model runs every combination.\n",
                        .opts = opts};
    em_opts_result r = em_opts_parse(&cmd, argc, argv, NULL, NULL);
    for (int k = 0; k < o->n_th; k++)
        if (o->threads[k] == 0) o->threads[k] = em_physical_cores();
    return r;
}

/* What the tests gather on the way: the machine, and the figures the
 * table's footer sums up. */
typedef struct bench_log {
    char cpu[256], when[64];
    /* The bandwidth is measured right after each tg repetition (by
     * em_bench_model; a test's figure is their mean), not once per thread
     * count: on a machine shared
     * with other work it changes from minute to minute, and the roofline
     * share should compare figures taken under the same conditions.  Per
     * thread count the footer gives the range. */
    double bw_lo[MAX_LIST], bw_hi[MAX_LIST]; /* [n_th] GB/s                */
    int bw_n[MAX_LIST];                      /* [n_th] measurements        */
    /* The compute peaks, measured after each pp test, likewise. */
    double fma_lo[MAX_LIST], fma_hi[MAX_LIST]; /* [n_th] GFLOP/s           */
    double i8_lo[MAX_LIST], i8_hi[MAX_LIST];   /* [n_th] GOP/s             */
    int peak_n[MAX_LIST];                      /* [n_th] measurements      */
    double bpt[MAX_MODELS];                  /* [n_paths] bytes per token of
                                              * each model's last tg       */
    char types[MAX_MODELS][128];             /* [n_paths] model_type text  */
    bool header;                             /* table header printed       */
    em_bench_result res;                     /* the latest test            */
} bench_log;

static void note_bandwidth(bench_log *b, int mi, int ti) {
    const em_bench_result *r = &b->res;
    b->bpt[mi] = r->bytes_per_token;
    if (r->read_bw_gbs <= 0) return;
    if (b->bw_n[ti] == 0 || r->read_bw_gbs < b->bw_lo[ti]) b->bw_lo[ti] = r->read_bw_gbs;
    if (r->read_bw_gbs > b->bw_hi[ti]) b->bw_hi[ti] = r->read_bw_gbs;
    b->bw_n[ti]++;
}

static void note_peaks(bench_log *b, int ti) {
    const em_bench_result *r = &b->res;
    if (r->pp_fma_peak_gflops <= 0) return;
    if (b->peak_n[ti] == 0 || r->pp_fma_peak_gflops < b->fma_lo[ti]) b->fma_lo[ti] = r->pp_fma_peak_gflops;
    if (r->pp_fma_peak_gflops > b->fma_hi[ti]) b->fma_hi[ti] = r->pp_fma_peak_gflops;
    if (b->peak_n[ti] == 0 || r->pp_int8_peak_gops < b->i8_lo[ti]) b->i8_lo[ti] = r->pp_int8_peak_gops;
    if (r->pp_int8_peak_gops > b->i8_hi[ti]) b->i8_hi[ti] = r->pp_int8_peak_gops;
    b->peak_n[ti]++;
}

/* One test (pp or tg of n tokens) of model mi with thread count ti,
 * printed as soon as it is done. */
static bool run_test(const bench_opts *o, bench_log *b, const em_model *model, int mi, int ti, bool is_pp,
                     int32_t n) {
    em_bench_params p = em_bench_default_params();
    p.n_prompt = is_pp ? n : 0;
    p.n_gen = is_pp ? 0 : n;
    p.n_threads = o->threads[ti];
    p.reps = o->reps;
    p.kv_type = o->kv_type;
    p.n_batch = o->n_batch;
    p.read_bw_gbs = 0;
    if (em_bench_model(model, &p, &b->res) != EM_OK) {
        fprintf(stderr, "ember bench: %s: %s\n", o->paths[mi], em_last_error());
        return false;
    }
    if (!is_pp) note_bandwidth(b, mi, ti);
    else note_peaks(b, ti);
    test_row row = {o->paths[mi], model, b->types[mi], is_pp, n, o->n_batch, o->kv_type, &b->res};
    if (o->json) {
        if (print_json_row(&row, b->cpu, b->when)) return true;
        fprintf(stderr, "ember bench: out of memory writing JSON\n");
        return false;
    }
    if (!b->header) print_table_header();
    b->header = true;
    print_table_row(&row);
    return true;
}

/* Every test of model mi: per thread count, the pp tests, then the tg. */
static bool bench_model(const bench_opts *o, bench_log *b, int mi) {
    em_model *model = NULL;
    if (em_model_load(&model, em_cli_model_path(o->paths[mi]), &o->mp) != EM_OK) {
        fprintf(stderr, "ember bench: %s\n", em_last_error());
        return false;
    }
    model_type(model, b->types[mi], sizeof b->types[mi]);
    bool ok = true;
    for (int ti = 0; ti < o->n_th && ok; ti++) {
        for (int k = 0; k < o->n_np && ok; k++)
            if (o->n_prompt[k]) ok = run_test(o, b, model, mi, ti, true, o->n_prompt[k]);
        for (int k = 0; k < o->n_ng && ok; k++)
            if (o->n_gen[k]) ok = run_test(o, b, model, mi, ti, false, o->n_gen[k]);
    }
    em_model_free(model);
    return ok;
}

/* Under the table: what the roofline column is measured against. */
static void print_footer(const bench_opts *o, const bench_log *b) {
    printf("\nCPU: %s\n", b->cpu);
    bool any = false;
    for (int ti = 0; ti < o->n_th; ti++) {
        if (b->bw_n[ti] == 0) continue;
        printf("%s%d thread%s ", any ? ", " : "read bandwidth (best of 8 passes over 1 GiB, after each tg run): ",
               o->threads[ti], o->threads[ti] == 1 ? "" : "s");
        if (b->bw_n[ti] == 1) printf("%.2f GB/s", b->bw_lo[ti]);
        else printf("%.2f-%.2f GB/s", b->bw_lo[ti], b->bw_hi[ti]);
        any = true;
    }
    if (any) printf("\n");
    /* The compute roofline of the pp rows: float weights against the FMA
     * peak, quantized ones against the int8 peak. */
    for (int ti = 0; ti < o->n_th; ti++) {
        if (b->peak_n[ti] == 0) continue;
        printf("compute peak (%s kernels, best of 5 passes, after each pp test), %d thread%s: ", em_gemm_isa(),
               o->threads[ti], o->threads[ti] == 1 ? "" : "s");
        if (b->peak_n[ti] == 1) printf("FP32 FMA %.1f GFLOP/s, int8 dot %.1f GOP/s\n", b->fma_lo[ti], b->i8_lo[ti]);
        else
            printf("FP32 FMA %.1f-%.1f GFLOP/s, int8 dot %.1f-%.1f GOP/s\n", b->fma_lo[ti], b->fma_hi[ti],
                   b->i8_lo[ti], b->i8_hi[ti]);
    }
    for (int mi = 0; mi < o->n_paths; mi++)
        if (b->bpt[mi] > 0) printf("bytes per generated token: %s %.1f MB\n", b->types[mi], b->bpt[mi] / 1e6);
}

int em_cli_bench(int argc, char **argv) {
    bench_opts o;
    em_opts_result r = parse_args(argc, argv, &o);
    if (r != EM_OPTS_OK) return em_opts_exit_code(r);
    bench_log *b = calloc(1, sizeof *b);
    if (!b) {
        fprintf(stderr, "ember bench: out of memory\n");
        return 1;
    }
    cpu_name(b->cpu, sizeof b->cpu);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(b->when, sizeof b->when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    bool ok = true;
    for (int mi = 0; mi < o.n_paths && ok; mi++) ok = bench_model(&o, b, mi);
    if (!o.json && b->header) print_footer(&o, b);
    free(b);
    return ok ? 0 : 1;
}
