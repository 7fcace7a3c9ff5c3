/*
 * eval.c - `ember eval`: measures how good a model is and what it costs.
 *
 *   ember eval ppl    -m MODEL -f TEXT [-c CTX] [--chunks N]
 *   ember eval mc     -m MODEL --task TASK [--data FILE] [--limit N]
 *   ember eval kld    --base BASE -m MODEL -f TEXT [-c CTX] [--chunks N]
 *   ember eval report [--models A B ...] [--tasks T ...] [-f TEXT]
 *                     [--results R.json ...] [--price-per-hour USD] -o OUT.html
 *
 * The measurements themselves live in the library (src/eval); this file
 * parses options, loads files, prints results and, for `report`, runs the
 * evaluations and the speed benchmark for every model before writing the
 * page.  Results go to stdout, progress and timings to stderr; `--json
 * FILE` also saves a result record that `report --results` can read back.
 * Bad input ends with one line on stderr and exit status 1; bad usage
 * with exit status 2.
 */
#include "bench/bench.h"
#include "cli/cli.h"
#include "eval/eval.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* -------------------------------------------------------------- options */

#define MAX_LIST 64

typedef struct eval_opts {
    const char *model, *base, *text, *data, *json, *out, *data_dir;
    const char *models[MAX_LIST];   /* report: --models                     */
    int n_models;
    const char *results[MAX_LIST];  /* report: --results                    */
    int n_results;
    bool tasks[EM_TASK_COUNT];      /* report: --tasks; mc: --task          */
    int n_tasks;
    long n_ctx, n_chunks, n_threads, n_batch, limit, kv_ctx;
    long bench_gen, bench_prompt, bench_reps;
    bool bench;                     /* report: measure speed                */
    double price;
    double read_bw;                 /* report: GB/s, 0 until measured       */
    em_type kv_type;
    em_quality_metric quality;
} eval_opts;

static void usage(FILE *out) {
    fprintf(out,
            "usage: ember eval <ppl|mc|kld|report> [options]\n"
            "\n"
            "  ember eval ppl -m MODEL -f TEXT [-c CTX] [--chunks N]\n"
            "      perplexity, with llama-perplexity's conventions (chunks of CTX tokens,\n"
            "      BOS first, second half of each chunk scored)\n"
            "  ember eval mc -m MODEL --task TASK [--data FILE.jsonl] [--limit N]\n"
            "      log-likelihood benchmark; TASK is arc_easy, arc_challenge, piqa,\n"
            "      winogrande, hellaswag or lambada (data defaults to\n"
            "      $EMBER_TEST_DATA/evals/TASK.jsonl)\n"
            "  ember eval kld --base BASE.gguf -m MODEL.gguf -f TEXT [-c CTX] [--chunks N]\n"
            "      KL divergence of MODEL from BASE, top-1 agreement and delta PPL\n"
            "  ember eval report [--models A.gguf B.gguf ...] [--tasks T ...] [-f TEXT]\n"
            "                    [--results R.json ...] [--price-per-hour USD] -o OUT.html\n"
            "      runs (or reads: --results takes --json files and earlier reports' JSON)\n"
            "      the evaluations and the speed benchmark and writes an HTML report of\n"
            "      quality against cost, and OUT.json beside it\n"
            "\n"
            "  ember eval COMMAND --help   the options of one command\n");
}

/* Adds a task name (or a comma-separated list of them). */
static bool add_tasks(eval_opts *o, const char *list) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        em_mc_task t;
        if (!em_mc_task_parse(tok, &t)) return false;
        if (!o->tasks[t]) o->n_tasks++;
        o->tasks[t] = true;
    }
    return true;
}

/* --task (mc: exactly one) and --tasks (report: any number, also
 * comma-separated) into o->tasks; false (message printed) for an
 * unknown task. */
static bool read_tasks(const char *cmd, eval_opts *o, const char *task, const char *const *list, int n) {
    if (task && (!add_tasks(o, task) || o->n_tasks != 1)) {
        fprintf(stderr, "ember eval %s: unknown task '%s' (arc_easy, arc_challenge, piqa, winogrande, "
                        "hellaswag, lambada)\n", cmd, task);
        return false;
    }
    for (int i = 0; i < n; i++)
        if (!add_tasks(o, list[i])) {
            fprintf(stderr, "ember eval %s: unknown task '%s'\n", cmd, list[i]);
            return false;
        }
    return true;
}

/*
 * Parses argv[1..] into o with the options of every subcommand, of which
 * `allowed` lists those the subcommand accepts (" --chunks --json "): the
 * others are unknown options to it, and its --help shows only these.
 */
static em_opts_result parse_opts(const char *cmd, const char *synopsis, const char *about, int argc, char **argv,
                                 const char *allowed, eval_opts *o) {
    static const char *const qualities[] = {"auto", "acc", "ppl", NULL};
    static const int quality_values[] = {EM_QUALITY_AUTO, EM_QUALITY_ACC, EM_QUALITY_PPL};
    const char *task = NULL, *task_list[MAX_LIST];
    int n_task_list = 0;
    *o = (eval_opts){.n_chunks = -1, .kv_type = EM_TYPE_F16, .bench_gen = 32, .bench_prompt = 64,
                     .bench_reps = 2, .kv_ctx = 4096, .n_batch = 512, .bench = true};
    const em_opt all[] = {
        {.name = "model", .short_name = "m", .type = EM_OPT_STRING, EM_OPT_DEST(o->model), .arg = "FILE",
         .help = "the GGUF model to evaluate"},
        {.name = "base", .type = EM_OPT_STRING, EM_OPT_DEST(o->base), .arg = "FILE",
         .help = "the model MODEL is compared with (as F32 or F16)"},
        {.name = "models", .type = EM_OPT_LIST, EM_OPT_DEST(o->models[0]), .count = &o->n_models, .cap = MAX_LIST,
         .arg = "FILE...", .help = "models to run and report", .flags = EM_OPT_GREEDY},
        {.name = "results", .type = EM_OPT_LIST, EM_OPT_DEST(o->results[0]), .count = &o->n_results,
         .cap = MAX_LIST, .arg = "FILE...", .help = "--json records and earlier reports' JSON to include",
         .flags = EM_OPT_GREEDY},
        {.name = "task", .type = EM_OPT_STRING, EM_OPT_DEST(task), .arg = "TASK",
         .help = "arc_easy, arc_challenge, piqa, winogrande, hellaswag or lambada"},
        {.name = "tasks", .type = EM_OPT_LIST, EM_OPT_DEST(task_list[0]), .count = &n_task_list, .cap = MAX_LIST,
         .arg = "TASK...", .help = "tasks to run for every model (also comma-separated)", .flags = EM_OPT_GREEDY},
        {.name = "data", .type = EM_OPT_STRING, EM_OPT_DEST(o->data), .arg = "FILE",
         .help = "the task's items (JSON lines)", .def = "$EMBER_TEST_DATA/evals/TASK.jsonl"},
        {.name = "data-dir", .type = EM_OPT_STRING, EM_OPT_DEST(o->data_dir), .arg = "DIR",
         .help = "folder of the task files", .def = "$EMBER_TEST_DATA/evals"},
        {.name = "file", .short_name = "f", .type = EM_OPT_STRING, EM_OPT_DEST(o->text), .arg = "TEXT",
         .help = "the text to score (a file)"},
        {.name = "ctx-size", .short_name = "c", .type = EM_OPT_INT, EM_OPT_DEST(o->n_ctx), .min = 1, .max = 1 << 24,
         .help = "tokens per chunk (ppl, kld), longest item (mc)", .def = "512; mc: the model's"},
        {.name = "chunks", .type = EM_OPT_INT, EM_OPT_DEST(o->n_chunks), .min = 1, .max = 1 << 30,
         .help = "score only the first N chunks", .def = "all"},
        {.name = "limit", .type = EM_OPT_INT, EM_OPT_DEST(o->limit), .min = 1, .max = 1 << 30,
         .help = "score only the first N items", .def = "all"},
        {.name = "threads", .short_name = "t", .type = EM_OPT_INT, EM_OPT_DEST(o->n_threads), .min = 1, .max = 512,
         .help = "worker threads", .def = "physical cores"},
        {.name = "batch-size", .short_name = "b", .type = EM_OPT_INT, EM_OPT_DEST(o->n_batch), .min = 1,
         .max = 1 << 16, .help = "rows per forward pass"},
        EM_CLI_OPT_KV_TYPE(o->kv_type),
        {.name = "json", .type = EM_OPT_STRING, EM_OPT_DEST(o->json), .arg = "FILE",
         .help = "also write the result record as JSON"},
        {.name = "price-per-hour", .type = EM_OPT_FLOAT, EM_OPT_DEST(o->price), .min = 0, .max = 1e300, .arg = "USD",
         .help = "price of this machine: cost is then USD per 1M tokens", .def = "cost in ms per token"},
        {.name = "quality", .type = EM_OPT_ENUM, EM_OPT_DEST(o->quality), .choices = qualities,
         .values = quality_values, .help = "the chart's quality axis (auto: mean accuracy\nwhen tasks ran, else perplexity)"},
        {.name = "kv-ctx", .type = EM_OPT_INT, EM_OPT_DEST(o->kv_ctx), .min = 0, .max = 1 << 24,
         .help = "KV positions counted in the memory column"},
        {.name = "bench-gen", .type = EM_OPT_INT, EM_OPT_DEST(o->bench_gen), .min = 1, .max = 1 << 16,
         .help = "generated tokens of the speed test"},
        {.name = "bench-prompt", .type = EM_OPT_INT, EM_OPT_DEST(o->bench_prompt), .min = 0, .max = 1 << 16,
         .help = "prompt tokens of the speed test"},
        {.name = "bench-reps", .type = EM_OPT_INT, EM_OPT_DEST(o->bench_reps), .min = 1, .max = 100,
         .help = "runs of the speed test"},
        {.name = "read-bw", .type = EM_OPT_FLOAT, EM_OPT_DEST(o->read_bw), .min = 1e-9, .max = 1e300, .arg = "GBS",
         .help = "this machine's streaming read bandwidth, measured before", .def = "measured once"},
        {.name = "bench", .type = EM_OPT_FLAG, EM_OPT_DEST(o->bench),
         .help = "measure speed (--no-bench: no cost axis)"},
        {.name = "output", .short_name = "o", .type = EM_OPT_STRING, EM_OPT_DEST(o->out), .arg = "OUT.html",
         .help = "the report (and OUT.json beside it)"},
    };
    em_opt mine[sizeof all / sizeof *all + 1];
    int n = 0;
    for (size_t k = 0; k < sizeof all / sizeof *all; k++) {
        char key[64];
        snprintf(key, sizeof key, " --%s ", all[k].name);
        if (strstr(allowed, key)) mine[n++] = all[k];
    }
    mine[n] = (em_opt){0};
    char name[32];
    snprintf(name, sizeof name, "eval %s", cmd);
    const em_cmd c = {.name = name, .synopsis = synopsis, .about = about, .opts = mine};
    em_opts_result r = em_opts_parse(&c, argc, argv, NULL, NULL);
    if (r == EM_OPTS_OK && !read_tasks(cmd, o, task, task_list, n_task_list)) r = EM_OPTS_USAGE;
    return r;
}

/* ------------------------------------------------------------- helpers */

static em_model *load_model(const char *cmd, const char *path) {
    em_model *m = NULL;
    if (em_model_load(&m, em_cli_model_path(path), NULL) != EM_OK) {
        fprintf(stderr, "ember eval %s: %s\n", cmd, em_last_error());
        return NULL;
    }
    return m;
}

/* Reads and tokenizes a whole text with BOS as the model adds it. */
static int load_tokens(const char *cmd, const em_model *m, const char *path, em_token **toks, int32_t *n) {
    size_t len = 0;
    char *text = em_cli_read_file(path, &len);
    if (!text) return 1;
    if (len == 0) {
        fprintf(stderr, "ember eval %s: %s is empty\n", cmd, path);
        free(text);
        return 1;
    }
    em_status st = em_eval_tokenize(em_model_vocab(m), text, len, true, toks, n);
    free(text);
    if (st != EM_OK) {
        fprintf(stderr, "ember eval %s: cannot tokenize %s: %s\n", cmd, path, em_last_error());
        return 1;
    }
    return 0;
}

static void ppl_progress(void *user, int32_t done, int32_t total, double running) {
    (void)user;
    (void)total;
    printf("[%d]%.4f,", done, running);
    fflush(stdout);
}

static void kld_progress(void *user, int32_t done, int32_t total, double running) {
    (void)user;
    (void)total;
    printf("[%d]%.6f,", done, running);
    fflush(stdout);
}

/* Running accuracy on a terminal only, so that logs stay clean. */
static void mc_progress(void *user, int32_t done, int32_t total, double running) {
    const char *task = user;
    if (!isatty(2)) return;
    if (done == total || done % 10 == 0) {
        fprintf(stderr, "\r%s: %d/%d acc %.4f", task, done, total, running);
        if (done == total) fputc('\n', stderr);
    }
}

static em_ppl_params ppl_params(const eval_opts *o) {
    em_ppl_params p = em_ppl_default_params();
    if (o->n_ctx > 0) p.n_ctx = (int32_t)o->n_ctx;
    p.n_chunks = (int32_t)o->n_chunks;
    p.n_threads = (int32_t)o->n_threads;
    p.n_batch = (int32_t)o->n_batch;
    p.kv_type = o->kv_type;
    return p;
}

static em_mc_params mc_params(const eval_opts *o) {
    em_mc_params p = em_mc_default_params();
    p.n_ctx = (int32_t)o->n_ctx;
    p.n_threads = (int32_t)o->n_threads;
    p.n_batch = (int32_t)o->n_batch;
    p.kv_type = o->kv_type;
    return p;
}

/* The data file of a task: given, or under dir, or under
 * $EMBER_TEST_DATA/evals.  NULL (with a message) when none is known. */
static const char *task_path(const char *cmd, em_mc_task t, const char *given, const char *dir, char *buf,
                             size_t size) {
    if (given) return given;
    if (dir) {
        snprintf(buf, size, "%s/%s", dir, em_mc_task_file(t));
        return buf;
    }
    const char *root = getenv("EMBER_TEST_DATA");
    if (root && *root) {
        snprintf(buf, size, "%s/evals/%s", root, em_mc_task_file(t));
        return buf;
    }
    fprintf(stderr, "ember eval %s: no data for %s (give --data FILE or set EMBER_TEST_DATA)\n", cmd,
            em_mc_task_name(t));
    return NULL;
}

static void print_mc(const em_mc_result *r) {
    printf("task: %s  items: %d\n", em_mc_task_name(r->task), r->n);
    printf("acc      = %.4f +/- %.4f\n", r->acc, r->acc_se);
    if (r->acc_norm >= 0) printf("acc_norm = %.4f +/- %.4f\n", r->acc_norm, r->acc_norm_se);
    if (r->task == EM_TASK_LAMBADA) printf("ppl      = %.4f +/- %.4f\n", r->ppl, r->ppl_se);
    fflush(stdout);
}

/* A fresh record describing the model at path, no results yet. */
static void record_init(em_eval_record *rec, const em_model *m, const char *path) {
    memset(rec, 0, sizeof *rec);
    em_eval_record_describe(rec, m, path);
}

/* Stores a perplexity result, measured on the text file at text. */
static void record_ppl(em_eval_record *rec, const em_ppl_result *r, const char *text) {
    rec->has_ppl = true;
    rec->ppl = r->ppl;
    rec->ppl_se = r->ppl_se;
    rec->ppl_ctx = r->n_ctx;
    rec->ppl_chunks = r->n_chunks;
    snprintf(rec->ppl_text, sizeof rec->ppl_text, "%s", text);
}

static int save_record(const char *cmd, const em_eval_record *r, const char *path) {
    if (!path) return 0;
    if (em_eval_record_save(r, path) != EM_OK) {
        fprintf(stderr, "ember eval %s: %s\n", cmd, em_last_error());
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------ commands */

static int cmd_ppl(int argc, char **argv) {
    eval_opts o;
    em_opts_result pr = parse_opts("ppl", "-m MODEL -f TEXT [options]",
                                   "Perplexity, with llama-perplexity's conventions (chunks of CTX tokens,\n"
                                   "BOS first, second half of each chunk scored).\n", argc, argv,
                                  " --model --file --ctx-size --chunks --threads --batch-size --kv-type --json ", &o);
    if (pr != EM_OPTS_OK) return em_opts_exit_code(pr);
    int rc = 0;
    if (!o.model || !o.text) {
        fprintf(stderr, "ember eval ppl: give a model (-m) and a text (-f)\n");
        return 2;
    }
    em_model *m = load_model("ppl", o.model);
    if (!m) return 1;
    em_token *toks = NULL;
    int32_t n = 0;
    rc = load_tokens("ppl", m, o.text, &toks, &n);
    if (rc == 0) {
        em_ppl_params p = ppl_params(&o);
        em_ppl_result r;
        if (em_eval_ppl(m, toks, n, &p, ppl_progress, NULL, &r) != EM_OK) {
            fputc('\n', stdout);
            fprintf(stderr, "ember eval ppl: %s\n", em_last_error());
            rc = 1;
        } else {
            printf("\nFinal estimate: PPL = %.4f +/- %.5f\n", r.ppl, r.ppl_se);
            fflush(stdout);
            fprintf(stderr, "ember eval ppl: %d tokens, %d chunks of %d, %lld tokens scored, %.2f s (%.1f tok/s)\n",
                    r.n_tokens, r.n_chunks, r.n_ctx, (long long)r.n_scored, r.seconds,
                    r.seconds > 0 ? (double)r.n_chunks * r.n_ctx / r.seconds : 0.0);
            em_eval_record rec;
            record_init(&rec, m, o.model);
            record_ppl(&rec, &r, o.text);
            rc = save_record("ppl", &rec, o.json);
        }
    }
    free(toks);
    em_model_free(m);
    return rc;
}

static int cmd_mc(int argc, char **argv) {
    eval_opts o;
    em_opts_result pr = parse_opts("mc", "-m MODEL --task TASK [options]",
                                   "Log-likelihood benchmark: accuracy (and acc_norm) on a multiple-choice task.\n", argc, argv,
                                  " --model --task --data --limit --ctx-size --threads --batch-size --kv-type --json ", &o);
    if (pr != EM_OPTS_OK) return em_opts_exit_code(pr);
    int rc = 0;
    if (!o.model || o.n_tasks != 1) {
        fprintf(stderr, "ember eval mc: give a model (-m) and one --task (arc_easy, arc_challenge, piqa, "
                        "winogrande, hellaswag, lambada)\n");
        return 2;
    }
    em_mc_task task = EM_TASK_ARC_EASY;
    for (int t = 0; t < EM_TASK_COUNT; t++)
        if (o.tasks[t]) task = (em_mc_task)t;
    char buf[1024];
    const char *path = task_path("mc", task, o.data, NULL, buf, sizeof buf);
    if (!path) return 2;
    em_mc_data data;
    if (em_mc_data_load(&data, task, path, (int32_t)o.limit) != EM_OK) {
        fprintf(stderr, "ember eval mc: %s\n", em_last_error());
        return 1;
    }
    em_model *m = load_model("mc", o.model);
    if (!m) {
        em_mc_data_free(&data);
        return 1;
    }
    em_mc_params p = mc_params(&o);
    em_mc_result r;
    if (em_eval_mc(m, &data, &p, mc_progress, (void *)em_mc_task_name(task), &r) != EM_OK) {
        fprintf(stderr, "ember eval mc: %s\n", em_last_error());
        rc = 1;
    } else {
        print_mc(&r);
        fprintf(stderr, "ember eval mc: %d items in %.2f s\n", r.n, r.seconds);
        em_eval_record rec;
        record_init(&rec, m, o.model);
        rec.has_task[task] = true;
        rec.task[task] = r;
        rc = save_record("mc", &rec, o.json);
    }
    em_mc_data_free(&data);
    em_model_free(m);
    return rc;
}

static int cmd_kld(int argc, char **argv) {
    eval_opts o;
    em_opts_result pr = parse_opts("kld", "--base BASE.gguf -m MODEL.gguf -f TEXT [options]",
                                   "KL divergence of MODEL from BASE, top-1 agreement and delta PPL.\n", argc, argv,
                                  " --base --model --file --ctx-size --chunks --threads --batch-size --kv-type --json ", &o);
    if (pr != EM_OPTS_OK) return em_opts_exit_code(pr);
    int rc = 0;
    if (!o.model || !o.base || !o.text) {
        fprintf(stderr, "ember eval kld: give a base model (--base), a model (-m) and a text (-f)\n");
        return 2;
    }
    em_model *base = load_model("kld", o.base);
    if (!base) return 1;
    em_model *m = load_model("kld", o.model);
    if (!m) {
        em_model_free(base);
        return 1;
    }
    em_token *toks = NULL;
    int32_t n = 0;
    rc = 1;
    if (em_eval_same_vocab(base, m) != EM_OK) {
        fprintf(stderr, "ember eval kld: %s\n", em_last_error());
    } else if (load_tokens("kld", base, o.text, &toks, &n) == 0) {
        em_ppl_params p = ppl_params(&o);
        em_kld_result r;
        if (em_eval_kld(base, m, toks, n, &p, kld_progress, NULL, &r) != EM_OK) {
            fputc('\n', stdout);
            fprintf(stderr, "ember eval kld: %s\n", em_last_error());
        } else {
            printf("\n");
            printf("chunks %d of %d tokens, %lld positions compared\n", r.n_chunks, r.n_ctx, (long long)r.n_scored);
            printf("Mean    KLD: %.6f +/- %.6f\n", r.kld_mean, r.kld_se);
            printf("99.0%%   KLD: %.6f\n", r.kld_p99);
            printf("Maximum KLD: %.6f\n", r.kld_max);
            printf("Same top-1 : %.3f +/- %.3f %%\n", 100 * r.top1, 100 * r.top1_se);
            printf("PPL(base)  : %.4f\n", r.ppl_base);
            printf("PPL(model) : %.4f\n", r.ppl_model);
            printf("Delta PPL  : %+.4f\n", r.dppl);
            fflush(stdout);
            em_eval_record rec;
            record_init(&rec, m, o.model);
            rec.has_kld = true;
            snprintf(rec.kld_base, sizeof rec.kld_base, "%s", o.base);
            rec.kld = r;
            rc = save_record("kld", &rec, o.json);
        }
    }
    free(toks);
    em_model_free(m);
    em_model_free(base);
    return rc;
}

/* ---------------------------------------------------------------- report */

/* The record of a model path, added when new; NULL when the list is full. */
static em_eval_record *record_for(em_eval_record *recs, int32_t *n, const char *path) {
    for (int32_t i = 0; i < *n; i++)
        if (!strcmp(recs[i].model, path)) return &recs[i];
    if (*n >= 2 * MAX_LIST) return NULL;
    em_eval_record *r = &recs[(*n)++];
    memset(r, 0, sizeof *r);
    snprintf(r->model, sizeof r->model, "%s", path);
    return r;
}

/* Runs what the options ask for on one model and fills its record.  The
 * machine's read bandwidth is measured by the first benchmark and kept in
 * o for the others. */
static int report_model(eval_opts *o, em_eval_record *rec, bool run_evals) {
    const char *path = rec->model;
    em_model *m = load_model("report", path);
    if (!m) return 1;
    em_eval_record mine;
    record_init(&mine, m, path);
    int rc = 0;
    if (run_evals && o->text) {
        em_token *toks = NULL;
        int32_t n = 0;
        rc = load_tokens("report", m, o->text, &toks, &n);
        if (rc == 0) {
            em_ppl_params p = ppl_params(o);
            em_ppl_result r;
            if (em_eval_ppl(m, toks, n, &p, NULL, NULL, &r) != EM_OK) {
                fprintf(stderr, "ember eval report: %s: %s\n", path, em_last_error());
                rc = 1;
            } else {
                record_ppl(&mine, &r, o->text);
                fprintf(stderr, "ember eval report: %s: PPL %.4f +/- %.4f\n", path, r.ppl, r.ppl_se);
            }
        }
        free(toks);
    }
    for (int t = 0; t < EM_TASK_COUNT && rc == 0 && run_evals; t++) {
        if (!o->tasks[t]) continue;
        char buf[1024];
        const char *dpath = task_path("report", (em_mc_task)t, NULL, o->data_dir, buf, sizeof buf);
        em_mc_data data;
        if (!dpath) {
            rc = 2;
            break;
        }
        if (em_mc_data_load(&data, (em_mc_task)t, dpath, (int32_t)o->limit) != EM_OK) {
            fprintf(stderr, "ember eval report: %s\n", em_last_error());
            rc = 1;
            break;
        }
        /* -c is the perplexity chunk here; items may use the model's
         * whole training context. */
        em_mc_params p = mc_params(o);
        p.n_ctx = 0;
        em_mc_result r;
        if (em_eval_mc(m, &data, &p, NULL, NULL, &r) != EM_OK) {
            fprintf(stderr, "ember eval report: %s: %s\n", path, em_last_error());
            rc = 1;
        } else {
            mine.has_task[t] = true;
            mine.task[t] = r;
            fprintf(stderr, "ember eval report: %s: %s acc %.4f (%d items)\n", path, em_mc_task_name((em_mc_task)t),
                    r.acc, r.n);
        }
        em_mc_data_free(&data);
    }
    if (rc == 0 && o->bench && !rec->has_speed) {
        em_bench_params bp = em_bench_default_params();
        bp.n_gen = (int32_t)o->bench_gen;
        bp.n_prompt = (int32_t)o->bench_prompt;
        bp.reps = (int32_t)o->bench_reps;
        bp.n_threads = (int32_t)o->n_threads;
        bp.kv_type = o->kv_type;
        bp.read_bw_gbs = o->read_bw;
        em_bench_result br;
        if (em_bench_model(m, &bp, &br) != EM_OK) {
            fprintf(stderr, "ember eval report: %s: benchmark: %s\n", path, em_last_error());
            rc = 1;
        } else {
            mine.has_speed = true;
            mine.tg_tok_s = br.tg_avg_ts;
            mine.pp_tok_s = br.pp_avg_ts;
            mine.bench_threads = br.n_threads;
            mine.tg_roofline = br.tg_roofline_share;
            if (br.read_bw_gbs > 0) o->read_bw = br.read_bw_gbs;
            fprintf(stderr, "ember eval report: %s: %.1f generated tok/s (%.0f%% of the read-bandwidth roofline)\n",
                    path, br.tg_avg_ts, 100 * br.tg_roofline_share);
        }
    }
    em_model_free(m);
    /* Fresh measurements win over ones read from --results. */
    em_eval_record_merge(rec, &mine);
    return rc;
}

/* OUT.html -> OUT.json (or OUT + ".json" without an .html ending). */
static void json_beside(const char *html, char *buf, size_t size) {
    size_t n = strlen(html);
    if (n > 5 && !strcmp(html + n - 5, ".html")) snprintf(buf, size, "%.*s.json", (int)(n - 5), html);
    else if (n > 4 && !strcmp(html + n - 4, ".htm")) snprintf(buf, size, "%.*s.json", (int)(n - 4), html);
    else snprintf(buf, size, "%s.json", html);
}

/* The report's options, checked; -1 to go on, else the exit status. */
static int report_args(int argc, char **argv, eval_opts *o) {
    em_opts_result pr = parse_opts("report", "[--models A.gguf ...] [--results R.json ...] [options] -o OUT.html",
                                   "Runs (or reads) the evaluations and the speed benchmark and writes an HTML\n"
                                   "report of quality against cost, and OUT.json beside it.\n", argc, argv,
                                  " --models --tasks --results --file --ctx-size --chunks --limit --threads --batch-size "
                                  "--kv-type --data-dir --price-per-hour --quality --kv-ctx --bench-gen --bench-prompt "
                                  "--bench-reps --read-bw --bench --output ",
                                  o);
    if (pr != EM_OPTS_OK) return em_opts_exit_code(pr);
    const char *problem = !o->out ? "give the output file (-o report.html)"
                          : o->n_models == 0 && o->n_results == 0 ? "give --models and/or --results"
                          : o->n_models > 0 && !o->text && o->n_tasks == 0 && !o->bench
                              ? "nothing to measure (give -f TEXT, --tasks, or allow the benchmark)"
                              : NULL;
    if (!problem) return -1;
    fprintf(stderr, "ember eval report: %s\n", problem);
    return 2;
}

/* Merges the records of every --results file into recs[0..*n). */
static int load_results(const eval_opts *o, em_eval_record *recs, int32_t *n) {
    int rc = 0;
    for (int i = 0; i < o->n_results && rc == 0; i++) {
        em_eval_record *got = NULL;
        int32_t n_got = 0;
        if (em_eval_records_load(o->results[i], &got, &n_got) != EM_OK) {
            fprintf(stderr, "ember eval report: %s\n", em_last_error());
            return 1;
        }
        for (int32_t j = 0; j < n_got && rc == 0; j++) {
            em_eval_record *dst = record_for(recs, n, got[j].model);
            if (!dst) {
                fprintf(stderr, "ember eval report: more than %d models\n", 2 * MAX_LIST);
                rc = 2;
            } else {
                em_eval_record_merge(dst, &got[j]);
            }
        }
        free(got);
    }
    return rc;
}

/* Runs the evaluations of every --models model, and measures the speed
 * of the models known only from --results (on this machine). */
static int run_models(eval_opts *o, em_eval_record *recs, int32_t *n) {
    int rc = 0;
    for (int i = 0; i < o->n_models && rc == 0; i++) {
        em_eval_record *dst = record_for(recs, n, o->models[i]);
        if (!dst) {
            fprintf(stderr, "ember eval report: too many models\n");
            return 2;
        }
        rc = report_model(o, dst, true);
    }
    for (int32_t i = 0; i < *n && rc == 0; i++) {
        if (recs[i].has_speed || !o->bench) continue;
        bool listed = false;
        for (int j = 0; j < o->n_models; j++) listed = listed || !strcmp(o->models[j], recs[i].model);
        if (listed) continue;
        /* A record from elsewhere may name a file this machine lacks: the
         * report then shows it without a cost rather than failing. */
        if (access(recs[i].model, R_OK) != 0) {
            fprintf(stderr, "ember eval report: warning: %s is not here to benchmark; it gets no cost\n",
                    recs[i].model);
            continue;
        }
        rc = report_model(o, &recs[i], false);
    }
    return rc;
}

static int write_report(const eval_opts *o, const em_eval_record *recs, int32_t n) {
    em_report_params rp = {
        .price_per_hour = o->price,
        .kv_ctx = (int32_t)o->kv_ctx,
        .quality = o->quality,
    };
    char jpath[1024];
    json_beside(o->out, jpath, sizeof jpath);
    if (em_report_write(recs, n, &rp, o->out, jpath) != EM_OK) {
        fprintf(stderr, "ember eval report: %s\n", em_last_error());
        return 1;
    }
    printf("wrote %s and %s (%d models)\n", o->out, jpath, n);
    return 0;
}

static int cmd_report(int argc, char **argv) {
    eval_opts o;
    int rc = report_args(argc, argv, &o);
    if (rc >= 0) return rc;
    em_eval_record *recs = calloc(2 * MAX_LIST, sizeof *recs);
    if (!recs) {
        fprintf(stderr, "ember eval report: out of memory\n");
        return 1;
    }
    int32_t n = 0;
    rc = load_results(&o, recs, &n);
    if (rc == 0) rc = run_models(&o, recs, &n);
    if (rc == 0) rc = write_report(&o, recs, n);
    free(recs);
    return rc;
}

int em_cli_eval(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "-h") || !strcmp(sub, "--help") || !strcmp(sub, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(sub, "ppl") || !strcmp(sub, "perplexity")) return cmd_ppl(argc - 1, argv + 1);
    if (!strcmp(sub, "mc")) return cmd_mc(argc - 1, argv + 1);
    if (!strcmp(sub, "kld")) return cmd_kld(argc - 1, argv + 1);
    if (!strcmp(sub, "report")) return cmd_report(argc - 1, argv + 1);
    fprintf(stderr, "ember eval: unknown command '%s' (ppl, mc, kld, report)\n", sub);
    return 2;
}
