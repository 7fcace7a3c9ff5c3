/*
 * report.c - results as records, and the capability-per-cost report.
 *
 * A record (em_eval_record) holds everything measured about one model
 * file.  `ember eval ppl|mc|kld --json FILE` writes one; `ember eval
 * report` runs or reads records (merging those of the same model), derives
 * for each the quality on one axis, the cost of a generated token on this
 * machine and the memory it needs, marks the Pareto front (no other model
 * is both at most as costly and at least as good, one of them strictly),
 * and writes an HTML page (table plus an SVG chart, no scripts, no
 * external resources) and the same data as JSON for scripts.
 */
#include "eval/eval.h"
#include "model/model.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* ------------------------------------------------------------- records */

static void copy_str(char *dst, size_t size, const char *src) {
    snprintf(dst, size, "%s", src ? src : "");
}

void em_eval_record_describe(em_eval_record *r, const em_model *model, const char *path) {
    copy_str(r->model, sizeof r->model, path);
    em_model_desc(model, r->desc, sizeof r->desc);
    copy_str(r->arch, sizeof r->arch, em_model_arch(model));
    r->model_bytes = em_model_size(model);
    r->n_params = em_model_n_params(model);
    /* The cache stores, per position and layer, one key and one value row
     * of every KV head, in F16 by default. */
    const em_hparams *hp = &model->hp;
    r->kv_bytes_per_pos =
        (uint64_t)hp->n_layer * (uint64_t)hp->n_head_kv * (uint64_t)(hp->head_dim + hp->head_dim_v) * 2u;
}

void em_eval_record_merge(em_eval_record *dst, const em_eval_record *src) {
    if (!dst->desc[0]) {
        copy_str(dst->desc, sizeof dst->desc, src->desc);
        copy_str(dst->arch, sizeof dst->arch, src->arch);
        dst->model_bytes = src->model_bytes;
        dst->n_params = src->n_params;
        dst->kv_bytes_per_pos = src->kv_bytes_per_pos;
    }
    if (src->has_ppl) {
        dst->has_ppl = true;
        dst->ppl = src->ppl;
        dst->ppl_se = src->ppl_se;
        dst->ppl_ctx = src->ppl_ctx;
        dst->ppl_chunks = src->ppl_chunks;
        copy_str(dst->ppl_text, sizeof dst->ppl_text, src->ppl_text);
    }
    for (int t = 0; t < EM_TASK_COUNT; t++) {
        if (src->has_task[t]) {
            dst->has_task[t] = true;
            dst->task[t] = src->task[t];
        }
    }
    if (src->has_kld) {
        dst->has_kld = true;
        copy_str(dst->kld_base, sizeof dst->kld_base, src->kld_base);
        dst->kld = src->kld;
    }
    if (src->has_speed) {
        dst->has_speed = true;
        dst->tg_tok_s = src->tg_tok_s;
        dst->pp_tok_s = src->pp_tok_s;
        dst->tg_roofline = src->tg_roofline;
        dst->bench_threads = src->bench_threads;
    }
}

/* JSON has no NaN or infinity: such values become null. */
static json_t *num(double x) {
    return isfinite(x) ? json_real(x) : json_null();
}

static json_t *record_json(const em_eval_record *r) {
    json_t *o = json_object();
    json_object_set_new(o, "ember_eval", json_integer(1));
    json_object_set_new(o, "model", json_string(r->model));
    json_object_set_new(o, "desc", json_string(r->desc));
    json_object_set_new(o, "arch", json_string(r->arch));
    json_object_set_new(o, "model_bytes", json_integer((json_int_t)r->model_bytes));
    json_object_set_new(o, "n_params", json_integer((json_int_t)r->n_params));
    json_object_set_new(o, "kv_bytes_per_pos", json_integer((json_int_t)r->kv_bytes_per_pos));
    if (r->has_ppl) {
        json_t *p = json_object();
        json_object_set_new(p, "value", num(r->ppl));
        json_object_set_new(p, "se", num(r->ppl_se));
        json_object_set_new(p, "ctx", json_integer(r->ppl_ctx));
        json_object_set_new(p, "chunks", json_integer(r->ppl_chunks));
        json_object_set_new(p, "text", json_string(r->ppl_text));
        json_object_set_new(o, "ppl", p);
    }
    json_t *tasks = json_object();
    for (int t = 0; t < EM_TASK_COUNT; t++) {
        if (!r->has_task[t]) continue;
        const em_mc_result *m = &r->task[t];
        json_t *j = json_object();
        json_object_set_new(j, "n", json_integer(m->n));
        json_object_set_new(j, "acc", num(m->acc));
        json_object_set_new(j, "acc_se", num(m->acc_se));
        if (em_mc_task_has_norm((em_mc_task)t)) {
            json_object_set_new(j, "acc_norm", num(m->acc_norm));
            json_object_set_new(j, "acc_norm_se", num(m->acc_norm_se));
        }
        if (t == EM_TASK_LAMBADA) {
            json_object_set_new(j, "ppl", num(m->ppl));
            json_object_set_new(j, "ppl_se", num(m->ppl_se));
        }
        json_object_set_new(tasks, em_mc_task_name((em_mc_task)t), j);
    }
    if (json_object_size(tasks)) json_object_set_new(o, "tasks", tasks);
    else json_decref(tasks);
    if (r->has_kld) {
        const em_kld_result *k = &r->kld;
        json_t *j = json_object();
        json_object_set_new(j, "base", json_string(r->kld_base));
        json_object_set_new(j, "mean", num(k->kld_mean));
        json_object_set_new(j, "se", num(k->kld_se));
        json_object_set_new(j, "p99", num(k->kld_p99));
        json_object_set_new(j, "max", num(k->kld_max));
        json_object_set_new(j, "top1", num(k->top1));
        json_object_set_new(j, "top1_se", num(k->top1_se));
        json_object_set_new(j, "ppl_base", num(k->ppl_base));
        json_object_set_new(j, "ppl_model", num(k->ppl_model));
        json_object_set_new(j, "dppl", num(k->dppl));
        json_object_set_new(j, "ctx", json_integer(k->n_ctx));
        json_object_set_new(j, "chunks", json_integer(k->n_chunks));
        json_object_set_new(j, "scored", json_integer((json_int_t)k->n_scored));
        json_object_set_new(o, "kld", j);
    }
    if (r->has_speed) {
        json_t *j = json_object();
        json_object_set_new(j, "tg_tok_s", num(r->tg_tok_s));
        json_object_set_new(j, "pp_tok_s", num(r->pp_tok_s));
        json_object_set_new(j, "roofline_share", num(r->tg_roofline));
        json_object_set_new(j, "threads", json_integer(r->bench_threads));
        json_object_set_new(o, "speed", j);
    }
    return o;
}

em_status em_eval_record_save(const em_eval_record *r, const char *path) {
    json_t *o = record_json(r);
    if (!o) return em_error(EM_ERR_NOMEM, "json: out of memory");
    int rc = json_dump_file(o, path, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    json_decref(o);
    if (rc != 0) return em_error(EM_ERR_IO, "cannot write %s", path);
    return EM_OK;
}

/* Number members read as doubles; absent or null give NaN. */
static double get_num(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static int64_t get_int(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

static const char *get_string(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : "";
}

static int32_t clamp_i32(int64_t v) {
    return v < 0 ? 0 : v > INT32_MAX ? INT32_MAX : (int32_t)v;
}

/* One record from its JSON object; where names it in messages. */
static em_status record_from_json(json_t *o, em_eval_record *r, const char *where) {
    if (!json_is_object(o) || get_int(o, "ember_eval") != 1 || !json_is_string(json_object_get(o, "model")))
        return em_error(EM_ERR_FORMAT, "%s: not an ember eval result (no \"ember_eval\": 1 and \"model\")", where);
    memset(r, 0, sizeof *r);
    copy_str(r->model, sizeof r->model, get_string(o, "model"));
    copy_str(r->desc, sizeof r->desc, get_string(o, "desc"));
    copy_str(r->arch, sizeof r->arch, get_string(o, "arch"));
    r->model_bytes = (uint64_t)EM_MAX(get_int(o, "model_bytes"), 0);
    r->n_params = (uint64_t)EM_MAX(get_int(o, "n_params"), 0);
    r->kv_bytes_per_pos = (uint64_t)EM_MAX(get_int(o, "kv_bytes_per_pos"), 0);
    json_t *p = json_object_get(o, "ppl");
    if (json_is_object(p)) {
        r->has_ppl = true;
        r->ppl = get_num(p, "value");
        r->ppl_se = get_num(p, "se");
        r->ppl_ctx = clamp_i32(get_int(p, "ctx"));
        r->ppl_chunks = clamp_i32(get_int(p, "chunks"));
        copy_str(r->ppl_text, sizeof r->ppl_text, get_string(p, "text"));
    }
    json_t *tasks = json_object_get(o, "tasks");
    const char *name;
    json_t *j;
    if (json_is_object(tasks)) {
        json_object_foreach(tasks, name, j) {
            em_mc_task t;
            if (!em_mc_task_parse(name, &t) || !json_is_object(j))
                return em_error(EM_ERR_FORMAT, "%s: unknown task \"%s\"", where, name);
            em_mc_result *m = &r->task[t];
            r->has_task[t] = true;
            m->task = t;
            m->n = clamp_i32(get_int(j, "n"));
            m->acc = get_num(j, "acc");
            m->acc_se = get_num(j, "acc_se");
            m->acc_norm = em_mc_task_has_norm(t) ? get_num(j, "acc_norm") : -1.0;
            m->acc_norm_se = em_mc_task_has_norm(t) ? get_num(j, "acc_norm_se") : -1.0;
            m->ppl = t == EM_TASK_LAMBADA ? get_num(j, "ppl") : 0.0;
            m->ppl_se = t == EM_TASK_LAMBADA ? get_num(j, "ppl_se") : 0.0;
        }
    }
    j = json_object_get(o, "kld");
    if (json_is_object(j)) {
        r->has_kld = true;
        copy_str(r->kld_base, sizeof r->kld_base, get_string(j, "base"));
        em_kld_result *k = &r->kld;
        k->kld_mean = get_num(j, "mean");
        k->kld_se = get_num(j, "se");
        k->kld_p99 = get_num(j, "p99");
        k->kld_max = get_num(j, "max");
        k->top1 = get_num(j, "top1");
        k->top1_se = get_num(j, "top1_se");
        k->ppl_base = get_num(j, "ppl_base");
        k->ppl_model = get_num(j, "ppl_model");
        k->dppl = get_num(j, "dppl");
        k->n_ctx = clamp_i32(get_int(j, "ctx"));
        k->n_chunks = clamp_i32(get_int(j, "chunks"));
        k->n_scored = get_int(j, "scored");
    }
    j = json_object_get(o, "speed");
    if (json_is_object(j)) {
        r->has_speed = true;
        r->tg_tok_s = get_num(j, "tg_tok_s");
        r->pp_tok_s = get_num(j, "pp_tok_s");
        r->tg_roofline = get_num(j, "roofline_share");
        r->bench_threads = clamp_i32(get_int(j, "threads"));
    }
    return EM_OK;
}

em_status em_eval_records_load(const char *path, em_eval_record **out, int32_t *n_out) {
    json_error_t err;
    json_t *o = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!o) {
        if (err.line < 0) return em_error(EM_ERR_IO, "cannot read %s: %s", path, err.text);
        return em_error(EM_ERR_FORMAT, "%s:%d: invalid JSON: %s", path, err.line, err.text);
    }
    /* A report's JSON holds its records in "models"; a --json file is one. */
    json_t *models = json_is_object(o) ? json_object_get(o, "models") : NULL;
    size_t n = json_is_array(models) ? json_array_size(models) : 1;
    if (json_is_array(models) && n == 0) {
        json_decref(o);
        return em_error(EM_ERR_FORMAT, "%s: the report holds no models", path);
    }
    em_eval_record *recs = calloc(n, sizeof *recs);
    if (!recs) {
        json_decref(o);
        return em_error(EM_ERR_NOMEM, "%s: out of memory", path);
    }
    em_status st = EM_OK;
    for (size_t i = 0; i < n && st == EM_OK; i++) {
        char where[600];
        if (models) snprintf(where, sizeof where, "%s: models[%zu]", path, i);
        else snprintf(where, sizeof where, "%s", path);
        st = record_from_json(models ? json_array_get(models, i) : o, &recs[i], where);
    }
    json_decref(o);
    if (st != EM_OK) {
        free(recs);
        return st;
    }
    *out = recs;
    *n_out = (int32_t)n;
    return EM_OK;
}

/* ------------------------------------------------------- derived points */

em_quality_metric em_report_metric(const em_eval_record *recs, int32_t n, em_quality_metric want) {
    if (want != EM_QUALITY_AUTO) return want;
    for (int32_t i = 0; i < n; i++)
        for (int t = 0; t < EM_TASK_COUNT; t++)
            if (recs[i].has_task[t]) return EM_QUALITY_ACC;
    return EM_QUALITY_PPL;
}

/* Tasks any record has: a mean accuracy is only comparable between
 * models measured on the same tasks, so a model missing one of them gets
 * no quality value. */
static void task_union(const em_eval_record *recs, int32_t n, bool *used) {
    for (int t = 0; t < EM_TASK_COUNT; t++) {
        used[t] = false;
        for (int32_t i = 0; i < n; i++) used[t] = used[t] || recs[i].has_task[t];
    }
}

/* Whether quality a is at least as good as b (is_ppl: lower is better). */
static bool at_least_as_good(double a, double b, bool is_ppl) {
    return is_ppl ? a <= b : a >= b;
}

void em_report_points(const em_eval_record *recs, int32_t n, const em_report_params *p, em_report_point *pts) {
    em_quality_metric metric = em_report_metric(recs, n, p->quality);
    bool used[EM_TASK_COUNT];
    task_union(recs, n, used);
    for (int32_t i = 0; i < n; i++) {
        const em_eval_record *r = &recs[i];
        em_report_point *pt = &pts[i];
        memset(pt, 0, sizeof *pt);
        if (metric == EM_QUALITY_PPL) {
            pt->has_quality = r->has_ppl && isfinite(r->ppl);
            pt->quality = r->ppl;
        } else {
            double sum = 0;
            int cnt = 0;
            bool all = true;
            for (int t = 0; t < EM_TASK_COUNT; t++) {
                if (!used[t]) continue;
                if (!r->has_task[t] || !isfinite(r->task[t].acc)) all = false;
                else {
                    sum += r->task[t].acc;
                    cnt++;
                }
            }
            pt->has_quality = all && cnt > 0;
            pt->quality = cnt ? sum / cnt : 0;
        }
        if (r->has_speed && isfinite(r->tg_tok_s) && r->tg_tok_s > 0) {
            pt->has_cost = true;
            /* A generated token costs 1/tok_s seconds of the machine; at
             * price_per_hour USD per hour a million of them cost
             * price / 3600 / tok_s * 1e6.  Without a price the cost is
             * the time itself, in milliseconds per token. */
            pt->cost = p->price_per_hour > 0 ? p->price_per_hour / 3600.0 / r->tg_tok_s * 1e6 : 1000.0 / r->tg_tok_s;
        }
        pt->memory_bytes = (double)r->model_bytes + (double)r->kv_bytes_per_pos * (double)EM_MAX(p->kv_ctx, 0);
    }
    bool is_ppl = metric == EM_QUALITY_PPL;
    for (int32_t i = 0; i < n; i++) {
        if (!pts[i].has_quality || !pts[i].has_cost) continue;
        bool dominated = false;
        for (int32_t j = 0; j < n && !dominated; j++) {
            if (j == i || !pts[j].has_quality || !pts[j].has_cost) continue;
            bool no_worse = pts[j].cost <= pts[i].cost && at_least_as_good(pts[j].quality, pts[i].quality, is_ppl);
            bool better = pts[j].cost < pts[i].cost || pts[j].quality != pts[i].quality;
            dominated = no_worse && better;
        }
        pts[i].pareto = !dominated;
    }
}

/* ------------------------------------------------------------ writing */

/* Writes s with the characters HTML gives meaning to escaped. */
static void put_esc(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* The file name without directory and ".gguf": the label of a point. */
static void short_name(const char *path, char *out, size_t size) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    copy_str(out, size, b);
    size_t n = strlen(out);
    if (n > 5 && !strcmp(out + n - 5, ".gguf")) out[n - 5] = '\0';
}

/* A tick step of 1, 2 or 5 times a power of ten giving about `want`
 * intervals over span. */
static double nice_step(double span, int want) {
    double raw = span / want;
    double mag = pow(10, floor(log10(raw)));
    double f = raw / mag;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

/* One axis of the chart: maps a value to a pixel coordinate. */
typedef struct axis {
    double lo, hi;       /* value range shown                          */
    bool log;            /* logarithmic (costs spanning a decade+)     */
    bool flip;           /* larger values toward the start pixel       */
    double p0, p1;       /* pixel coordinates of lo and hi             */
} axis;

static double axis_map(const axis *a, double v) {
    double t = a->log ? (log10(v) - log10(a->lo)) / (log10(a->hi) - log10(a->lo)) : (v - a->lo) / (a->hi - a->lo);
    if (a->flip) t = 1 - t;
    return a->p0 + t * (a->p1 - a->p0);
}

/* Fits an axis to [mn, mx] with some margin; logarithmic when allowed
 * and the values span a decade or more. */
static void axis_fit(axis *a, double mn, double mx, bool allow_log) {
    a->log = allow_log && mn > 0 && mx / mn >= 10;
    if (a->log) {
        a->lo = pow(10, floor(log10(mn) * 10 - 0.5) / 10);
        a->hi = pow(10, ceil(log10(mx) * 10 + 0.5) / 10);
        return;
    }
    double span = mx - mn;
    if (span <= 0) span = fabs(mx) > 0 ? fabs(mx) * 0.5 : 1;
    a->lo = mn - span * 0.12;
    a->hi = mx + span * 0.12;
    if (mn >= 0 && a->lo < 0) a->lo = 0;
}

/* Tick labels: three significant digits, but whole thousands written
 * out ("2000", not "2e+03"). */
static void fmt_num(char *buf, size_t size, double v) {
    if (fabs(v) >= 1000 && fabs(v) < 1e7 && v == floor(v)) snprintf(buf, size, "%.0f", v);
    else snprintf(buf, size, "%.3g", v);
}

static void svg_ticks(FILE *f, const axis *a, bool horizontal, double other0, double other1) {
    char lab[32];
    if (a->log) {
        for (double d = pow(10, floor(log10(a->lo))); d <= a->hi * 1.0001; d *= 10) {
            for (int m = 1; m < 10; m++) {
                double v = d * m;
                if (v < a->lo || v > a->hi) continue;
                double px = axis_map(a, v);
                bool major = m == 1 || m == 2 || m == 5;
                fmt_num(lab, sizeof lab, v);
                if (horizontal) {
                    fprintf(f, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", px, other0,
                            px, other1);
                    if (major)
                        fprintf(f, "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", px,
                                other0 + 18, lab);
                } else {
                    fprintf(f, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", other0, px,
                            other1, px);
                    if (major)
                        fprintf(f, "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                                other0 - 8, px + 4, lab);
                }
            }
        }
        return;
    }
    double step = nice_step(a->hi - a->lo, 5);
    for (double v = ceil(a->lo / step) * step; v <= a->hi + step * 1e-9; v += step) {
        double px = axis_map(a, v);
        double shown = fabs(v) < step * 1e-9 ? 0 : v;
        fmt_num(lab, sizeof lab, shown);
        if (horizontal) {
            fprintf(f, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", px, other0, px,
                    other1);
            fprintf(f, "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", px, other0 + 18,
                    lab);
        } else {
            fprintf(f, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", other0, px, other1,
                    px);
            fprintf(f, "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", other0 - 8, px + 4,
                    lab);
        }
    }
}

typedef struct chart_order {
    int32_t idx;
    double cost;
} chart_order;

static int cmp_order(const void *a, const void *b) {
    const chart_order *x = a, *y = b;
    if (x->cost != y->cost) return x->cost < y->cost ? -1 : 1;
    return x->idx - y->idx;
}

static void write_chart(FILE *f, const em_eval_record *recs, int32_t n, const em_report_point *pts,
                        const em_report_params *p, em_quality_metric metric) {
    const double W = 760, H = 460, L = 80, R = 30, T = 30, B = 64;
    bool is_ppl = metric == EM_QUALITY_PPL;
    double cmin = INFINITY, cmax = -INFINITY, qmin = INFINITY, qmax = -INFINITY;
    int32_t shown = 0;
    for (int32_t i = 0; i < n; i++) {
        if (!pts[i].has_quality || !pts[i].has_cost) continue;
        shown++;
        cmin = fmin(cmin, pts[i].cost);
        cmax = fmax(cmax, pts[i].cost);
        qmin = fmin(qmin, pts[i].quality);
        qmax = fmax(qmax, pts[i].quality);
    }
    fprintf(f, "<svg id=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
               "viewBox=\"0 0 %.0f %.0f\" role=\"img\" aria-label=\"quality against cost\">\n",
            W, H, W, H);
    fprintf(f, "<rect class=\"plot\" x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\"/>\n", L, T, W - L - R,
            H - T - B);
    if (shown == 0) {
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">no model has both a quality and a speed "
                   "measurement</text>\n</svg>\n",
                W / 2, H / 2);
        return;
    }
    axis ax = {.p0 = L, .p1 = W - R}, ay = {.p0 = H - B, .p1 = T};
    axis_fit(&ax, cmin, cmax, true);
    /* Perplexity is exp(NLL): when models differ by a decade or more, a
     * logarithmic axis shows NLL differences evenly. */
    axis_fit(&ay, qmin, qmax, is_ppl);
    /* Up means better: perplexity's axis runs downward in value. */
    ay.flip = is_ppl;
    svg_ticks(f, &ax, true, H - B, T);
    svg_ticks(f, &ay, false, L, W - R);
    const char *xlabel = p->price_per_hour > 0 ? "cost: USD per 1M generated tokens" : "cost: ms per generated token";
    fprintf(f, "<text class=\"axis\" x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">%s%s</text>\n", (L + W - R) / 2,
            H - 18, xlabel, ax.log ? " (log scale)" : "");
    fprintf(f, "<text class=\"axis\" transform=\"translate(20 %.0f) rotate(-90)\" text-anchor=\"middle\">%s%s</text>\n",
            (T + H - B) / 2, is_ppl ? "perplexity (lower is better, up)" : "mean accuracy (higher is better)",
            ay.log ? " (log scale)" : "");

    /* The Pareto front as a staircase through its points, cheapest first. */
    chart_order *ord = malloc((size_t)n * sizeof *ord);
    int32_t nf = 0;
    if (ord) {
        for (int32_t i = 0; i < n; i++)
            if (pts[i].pareto) ord[nf++] = (chart_order){i, pts[i].cost};
        qsort(ord, (size_t)nf, sizeof *ord, cmp_order);
        if (nf > 1) {
            fputs("<polyline class=\"front\" points=\"", f);
            for (int32_t k = 0; k < nf; k++) {
                const em_report_point *pt = &pts[ord[k].idx];
                double x = axis_map(&ax, pt->cost), y = axis_map(&ay, pt->quality);
                if (k > 0) fprintf(f, " %.1f,%.1f", x, axis_map(&ay, pts[ord[k - 1].idx].quality));
                fprintf(f, "%s%.1f,%.1f", k ? " " : "", x, y);
            }
            fputs("\"/>\n", f);
        }
        free(ord);
    }
    /* Label boxes placed so far: a label that would cover one moves to
     * the next free slot above or below its point. */
    double (*boxes)[4] = malloc((size_t)n * sizeof *boxes); /* [n][x0, y0, x1, y1] */
    int32_t n_boxes = 0;
    for (int32_t i = 0; i < n; i++) {
        if (!pts[i].has_quality || !pts[i].has_cost) continue;
        char name[128];
        short_name(recs[i].model, name, sizeof name);
        double x = axis_map(&ax, pts[i].cost), y = axis_map(&ay, pts[i].quality);
        fprintf(f, "<g><circle class=\"mark%s\" data-model=\"", pts[i].pareto ? " pareto" : "");
        put_esc(f, name);
        fprintf(f, "\" cx=\"%.1f\" cy=\"%.1f\" r=\"%d\"><title>", x, y, pts[i].pareto ? 7 : 5);
        put_esc(f, name);
        fprintf(f, ": quality %.4g, cost %.4g, memory %.1f MiB%s</title></circle>\n", pts[i].quality, pts[i].cost,
                pts[i].memory_bytes / 1048576.0, pts[i].pareto ? " (Pareto front)" : "");
        /* Labels sit right of their point, or left of it near the right
         * edge so that they stay inside the picture. */
        bool left = x > W - R - 140;
        double width = 6.2 * (double)strlen(name), lx = left ? x - 9 : x + 9;
        double bx0 = left ? lx - width : lx, bx1 = left ? lx : lx + width;
        static const double offsets[] = {-7, 17, -21, 31, -35, 45};
        double ly = y - 7;
        for (size_t k = 0; k < sizeof offsets / sizeof offsets[0]; k++) {
            ly = y + offsets[k];
            bool clash = false;
            for (int32_t b = 0; b < n_boxes && !clash; b++)
                clash = bx0 < boxes[b][2] && boxes[b][0] < bx1 && ly - 10 < boxes[b][3] && boxes[b][1] < ly + 2;
            if (!clash) break;
        }
        if (boxes) {
            boxes[n_boxes][0] = bx0;
            boxes[n_boxes][1] = ly - 10;
            boxes[n_boxes][2] = bx1;
            boxes[n_boxes][3] = ly + 2;
            n_boxes++;
        }
        fprintf(f, "<text class=\"label\" x=\"%.1f\" y=\"%.1f\"%s>", lx, ly, left ? " text-anchor=\"end\"" : "");
        put_esc(f, name);
        fputs("</text></g>\n", f);
    }
    free(boxes);
    fputs("</svg>\n", f);
}

static void cell_num(FILE *f, double v, const char *fmt) {
    if (isfinite(v)) {
        fputs("<td class=\"num\">", f);
        fprintf(f, fmt, v);
        fputs("</td>", f);
    } else {
        fputs("<td class=\"num\">&ndash;</td>", f);
    }
}

static void write_table(FILE *f, const em_eval_record *recs, int32_t n, const em_report_point *pts,
                        const em_report_params *p, em_quality_metric metric) {
    bool used[EM_TASK_COUNT], any_ppl = false, any_kld = false;
    task_union(recs, n, used);
    for (int32_t i = 0; i < n; i++) {
        any_ppl = any_ppl || recs[i].has_ppl;
        any_kld = any_kld || recs[i].has_kld;
    }
    fputs("<table id=\"results\">\n<thead><tr><th>model</th><th>description</th><th>size MiB</th>"
          "<th>memory MiB</th><th>gen tok/s</th><th>roofline</th><th>prompt tok/s</th>",
          f);
    fputs(p->price_per_hour > 0 ? "<th>USD / 1M tok</th>" : "<th>ms / tok</th>", f);
    if (any_ppl) fputs("<th>PPL &plusmn; SE</th>", f);
    for (int t = 0; t < EM_TASK_COUNT; t++) {
        if (!used[t]) continue;
        fprintf(f, "<th>%s acc%s</th>", em_mc_task_name((em_mc_task)t),
                em_mc_task_has_norm((em_mc_task)t) ? " (norm)" : t == EM_TASK_LAMBADA ? " (ppl)" : "");
    }
    if (any_kld) fputs("<th>KLD mean / p99</th><th>top-1 agree</th><th>&Delta;PPL</th>", f);
    fprintf(f, "<th>%s</th><th>Pareto</th></tr></thead>\n<tbody>\n",
            metric == EM_QUALITY_PPL ? "quality (PPL)" : "quality (mean acc)");
    for (int32_t i = 0; i < n; i++) {
        const em_eval_record *r = &recs[i];
        char name[128];
        short_name(r->model, name, sizeof name);
        fprintf(f, "<tr%s><td>", pts[i].pareto ? " class=\"pareto\"" : "");
        put_esc(f, name);
        fputs("</td><td>", f);
        put_esc(f, r->desc);
        fputs("</td>", f);
        cell_num(f, (double)r->model_bytes / 1048576.0, "%.2f");
        cell_num(f, pts[i].memory_bytes / 1048576.0, "%.2f");
        cell_num(f, r->has_speed ? r->tg_tok_s : NAN, "%.1f");
        cell_num(f, r->has_speed ? 100 * r->tg_roofline : NAN, "%.0f%%");
        cell_num(f, r->has_speed ? r->pp_tok_s : NAN, "%.1f");
        cell_num(f, pts[i].has_cost ? pts[i].cost : NAN, "%.4g");
        if (any_ppl) {
            if (r->has_ppl) fprintf(f, "<td class=\"num\">%.4f &plusmn; %.4f</td>", r->ppl, r->ppl_se);
            else fputs("<td class=\"num\">&ndash;</td>", f);
        }
        for (int t = 0; t < EM_TASK_COUNT; t++) {
            if (!used[t]) continue;
            const em_mc_result *m = &r->task[t];
            if (!r->has_task[t]) {
                fputs("<td class=\"num\">&ndash;</td>", f);
            } else if (em_mc_task_has_norm((em_mc_task)t)) {
                fprintf(f, "<td class=\"num\">%.4f &plusmn; %.4f (%.4f)</td>", m->acc, m->acc_se, m->acc_norm);
            } else if (t == EM_TASK_LAMBADA) {
                fprintf(f, "<td class=\"num\">%.4f &plusmn; %.4f (%.4g)</td>", m->acc, m->acc_se, m->ppl);
            } else {
                fprintf(f, "<td class=\"num\">%.4f &plusmn; %.4f</td>", m->acc, m->acc_se);
            }
        }
        if (any_kld) {
            if (r->has_kld) {
                fprintf(f, "<td class=\"num\">%.5f / %.5f</td><td class=\"num\">%.2f%%</td><td class=\"num\">%+.4f</td>",
                        r->kld.kld_mean, r->kld.kld_p99, 100 * r->kld.top1, r->kld.dppl);
            } else {
                fputs("<td class=\"num\">&ndash;</td><td class=\"num\">&ndash;</td><td class=\"num\">&ndash;</td>", f);
            }
        }
        cell_num(f, pts[i].has_quality ? pts[i].quality : NAN, "%.4f");
        fprintf(f, "<td>%s</td></tr>\n", pts[i].pareto ? "&#10003;" : "");
    }
    fputs("</tbody>\n</table>\n", f);
}

static em_status write_html(const em_eval_record *recs, int32_t n, const em_report_point *pts,
                            const em_report_params *p, em_quality_metric metric, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return em_error(EM_ERR_IO, "cannot write %s", path);
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
          "<title>ember: capability per cost</title>\n<style>\n"
          "body{font-family:sans-serif;margin:24px;color:#222}\n"
          "table{border-collapse:collapse;margin-top:16px;font-size:14px}\n"
          "th,td{border:1px solid #ccc;padding:4px 8px}th{background:#f0f0f0}\n"
          "td.num{text-align:right;font-variant-numeric:tabular-nums}\n"
          "tr.pareto td:first-child{font-weight:bold}\n"
          ".plot{fill:#fafafa;stroke:#888}.grid{stroke:#e2e2e2}\n"
          ".tick{font-size:11px;fill:#555}.axis{font-size:13px;fill:#222}\n"
          ".mark{fill:#7a9cc6;stroke:#2b4a75;stroke-width:1}.mark.pareto{fill:#d9534f;stroke:#8b1f1b}\n"
          ".front{fill:none;stroke:#d9534f;stroke-width:1.5;stroke-dasharray:5 3}\n"
          ".label{font-size:11px;fill:#333}\n"
          "</style>\n</head>\n<body>\n<h1>Capability per cost</h1>\n",
          f);
    fprintf(f, "<p>Quality: %s. Cost: ",
            metric == EM_QUALITY_PPL ? "perplexity (lower is better)" : "mean accuracy over the tasks shown");
    if (p->price_per_hour > 0)
        fprintf(f, "USD per million generated tokens at %.4g USD per hour of this machine", p->price_per_hour);
    else
        fputs("milliseconds per generated token on this machine (no price given)", f);
    fprintf(f, ". Memory: model weights plus an F16 KV cache of %d positions. "
               "Red points form the Pareto front: no other model is both as cheap and as good.</p>\n",
            p->kv_ctx);
    write_chart(f, recs, n, pts, p, metric);
    write_table(f, recs, n, pts, p, metric);
    fprintf(f, "<p class=\"foot\">ember %s</p>\n</body>\n</html>\n", EMBER_VERSION);
    bool err = ferror(f) != 0;
    if (fclose(f) != 0 || err) return em_error(EM_ERR_IO, "cannot write %s", path);
    return EM_OK;
}

static em_status write_json(const em_eval_record *recs, int32_t n, const em_report_point *pts,
                            const em_report_params *p, em_quality_metric metric, const char *path) {
    json_t *o = json_object();
    json_object_set_new(o, "ember_version", json_string(EMBER_VERSION));
    json_object_set_new(o, "quality_metric", json_string(metric == EM_QUALITY_PPL ? "ppl" : "mean_acc"));
    json_object_set_new(o, "cost_unit", json_string(p->price_per_hour > 0 ? "usd_per_mtok" : "ms_per_token"));
    json_object_set_new(o, "price_per_hour", num(p->price_per_hour));
    json_object_set_new(o, "kv_ctx", json_integer(p->kv_ctx));
    json_t *arr = json_array();
    for (int32_t i = 0; i < n; i++) {
        json_t *r = record_json(&recs[i]);
        json_object_set_new(r, "quality", pts[i].has_quality ? num(pts[i].quality) : json_null());
        json_object_set_new(r, "cost", pts[i].has_cost ? num(pts[i].cost) : json_null());
        json_object_set_new(r, "memory_bytes", num(pts[i].memory_bytes));
        json_object_set_new(r, "pareto", json_boolean(pts[i].pareto));
        json_array_append_new(arr, r);
    }
    json_object_set_new(o, "models", arr);
    int rc = json_dump_file(o, path, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    json_decref(o);
    if (rc != 0) return em_error(EM_ERR_IO, "cannot write %s", path);
    return EM_OK;
}

em_status em_report_write(const em_eval_record *recs, int32_t n, const em_report_params *p, const char *html_path,
                          const char *json_path) {
    if (!recs || n <= 0 || !p || !html_path || !json_path)
        return em_error(EM_ERR_INVALID_ARG, "report: nothing to write");
    em_report_point *pts = calloc((size_t)n, sizeof *pts);
    if (!pts) return em_error(EM_ERR_NOMEM, "report: out of memory");
    em_quality_metric metric = em_report_metric(recs, n, p->quality);
    em_report_points(recs, n, p, pts);
    em_status st = write_html(recs, n, pts, p, metric, html_path);
    if (st == EM_OK) st = write_json(recs, n, pts, p, metric, json_path);
    free(pts);
    return st;
}
