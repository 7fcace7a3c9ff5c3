/*
 * calibrate.c - the threshold grid, the recommendation, and the checkers
 * that judge a labelled item's answers.
 */
#include "router/calibrate.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <ctype.h>
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A threshold as the configuration will hold it: 4 decimals, rounded down
 * so that the value it came from still passes.  The 1e-7 absorbs the
 * rounding of sums like 8 x -0.1, whose mean lands a hair off -0.1. */
static double round_down4(double v) { return floor(v * 1e4 + 1e-7) / 1e4; }

/* Whether a statistic passes a threshold, with the same hair of slack. */
static bool passes(double v, double threshold) { return v >= threshold - 1e-9; }

static int cmp_desc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

static em_cal_row evaluate(const em_cal_item *items, int n, em_cal_stat stat, double threshold, double other) {
    em_cal_row r = {.threshold = threshold};
    int correct = 0, strong_correct = 0;
    for (int i = 0; i < n; i++) {
        const em_cal_item *it = &items[i];
        double s = stat == EM_CAL_MEAN ? it->mean : it->min, o = stat == EM_CAL_MEAN ? it->min : it->mean;
        bool keep = it->has_lp && !isinf(threshold) && passes(s, threshold) && passes(o, other);
        r.cost_usd += it->cheap_usd + (keep ? 0 : it->strong_usd);
        r.kept += keep;
        correct += keep ? it->cheap_ok : it->strong_ok;
        strong_correct += it->strong_ok;
    }
    r.local_share = n ? (double)r.kept / n : 0;
    r.accuracy = n ? (double)correct / n : 0;
    r.quality = strong_correct ? (double)correct / strong_correct : NAN;
    return r;
}

int em_cal_grid(const em_cal_item *items, int n_items, em_cal_stat stat, double other, em_cal_row *rows,
                int max_rows) {
    if (max_rows < n_items + 1) return -1;
    double *t = malloc(sizeof *t * (size_t)(n_items ? n_items : 1));
    if (!t) return -1;
    int n_t = 0;
    for (int i = 0; i < n_items; i++)
        if (items[i].has_lp) t[n_t++] = round_down4(stat == EM_CAL_MEAN ? items[i].mean : items[i].min);
    qsort(t, (size_t)n_t, sizeof *t, cmp_desc);
    int n_rows = 0;
    rows[n_rows++] = evaluate(items, n_items, stat, INFINITY, other);
    for (int i = 0; i < n_t; i++)
        if (i == 0 || t[i] != t[i - 1]) rows[n_rows++] = evaluate(items, n_items, stat, t[i], other);
    free(t);
    return n_rows;
}

void em_cal_strong_only(const em_cal_item *items, int n_items, double *accuracy, double *cost_usd) {
    int ok = 0;
    *cost_usd = 0;
    for (int i = 0; i < n_items; i++) ok += items[i].strong_ok, *cost_usd += items[i].strong_usd;
    *accuracy = n_items ? (double)ok / n_items : 0;
}

int em_cal_recommend(const em_cal_row *rows, int n_rows, double target) {
    int best = -1;
    for (int i = 0; i < n_rows; i++) {
        if (isnan(rows[i].quality) || rows[i].quality < target - 1e-12) continue;
        if (best < 0 || rows[i].cost_usd < rows[best].cost_usd ||
            (rows[i].cost_usd == rows[best].cost_usd && rows[i].kept > rows[best].kept))
            best = i;
    }
    return best;
}

/* ------------------------------------------------------------ checkers */

static const char *const checker_names[] = {"answer", "exact", "contains", "regex"};

/* The item's checker: its index in checker_names and its text. */
static bool find_checker(const json_t *item, int *which, const char **text, char *err, size_t err_len) {
    *which = -1;
    for (int i = 0; i < 4; i++) {
        json_t *v = json_object_get(item, checker_names[i]);
        if (!v) continue;
        if (*which >= 0) {
            snprintf(err, err_len, "'%s' and '%s': give one checker", checker_names[*which], checker_names[i]);
            return false;
        }
        if (!json_is_string(v)) {
            snprintf(err, err_len, "'%s' must be a string", checker_names[i]);
            return false;
        }
        *which = i;
        *text = json_string_value(v);
    }
    if (*which < 0) {
        snprintf(err, err_len, "no checker: give 'answer', 'exact', 'contains' or 'regex'");
        return false;
    }
    return true;
}

static pcre2_code *compile(const char *pattern, char *err, size_t err_len) {
    int code;
    PCRE2_SIZE at;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &code, &at, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof msg);
        snprintf(err, err_len, "'regex' does not compile at offset %zu: %s", (size_t)at, (const char *)msg);
    }
    return re;
}

bool em_cal_checker_valid(const json_t *item, char *err, size_t err_len) {
    int which;
    const char *text;
    if (!find_checker(item, &which, &text, err, err_len)) return false;
    if (which == 3) {
        pcre2_code *re = compile(text, err, err_len);
        if (!re) return false;
        pcre2_code_free(re);
    }
    return true;
}

/* The normal form "answer" compares: case folded (ASCII), runs of white
 * space as one space, trimmed, trailing sentence punctuation dropped. */
static char *normalise(const char *s) {
    size_t n = strlen(s), k = 0;
    char *out = malloc(n + 1);
    if (!out) return NULL;
    bool space = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (isspace(ch)) {
            space = k > 0;
            continue;
        }
        if (space) out[k++] = ' ';
        space = false;
        out[k++] = (char)tolower(ch);
    }
    while (k && strchr(".!?", out[k - 1])) k--;
    while (k && out[k - 1] == ' ') k--;
    out[k] = '\0';
    return out;
}

/* The text trimmed of white space at both ends, as [*start, *start+*len). */
static void trim(const char *s, const char **start, size_t *len) {
    size_t n = strlen(s);
    while (n && isspace((unsigned char)*s)) s++, n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    *start = s;
    *len = n;
}

bool em_cal_check(const json_t *item, const char *answer, bool *correct, char *err, size_t err_len) {
    int which;
    const char *want;
    *correct = false;
    if (!find_checker(item, &which, &want, err, err_len)) return false;
    switch (which) {
    case 0: {
        char *a = normalise(answer), *b = normalise(want);
        bool ok = a && b;
        if (ok) *correct = !strcmp(a, b);
        else snprintf(err, err_len, "out of memory");
        free(a);
        free(b);
        return ok;
    }
    case 1: {
        const char *a, *b;
        size_t na, nb;
        trim(answer, &a, &na);
        trim(want, &b, &nb);
        *correct = na == nb && !memcmp(a, b, na);
        return true;
    }
    case 2: *correct = strstr(answer, want) != NULL; return true;
    default: {
        pcre2_code *re = compile(want, err, err_len);
        if (!re) return false;
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
        int rc = md ? pcre2_match(re, (PCRE2_SPTR)answer, PCRE2_ZERO_TERMINATED, 0, 0, md, NULL) : -1;
        pcre2_match_data_free(md);
        pcre2_code_free(re);
        if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
            snprintf(err, err_len, "'regex' failed on the answer (PCRE2 error %d)", rc);
            return false;
        }
        *correct = rc >= 0;
        return true;
    }
    }
}
