/*
 * calibrate.h - `ember route calibrate`: how a cascade's acceptance
 * threshold trades quality for cost, measured on a labelled set.
 *
 * Each labelled item went through the route's cheap backend (with its
 * token log-probabilities) and its strong backend; calibration knows per
 * item the cheap answer's confidence, whether each answer was correct, and
 * what each call cost.  For a threshold t the mixed system keeps the cheap
 * answer when its confidence passes t (as the cascade would) and otherwise
 * pays for the strong answer too.  These functions do the arithmetic and
 * judge answers; the calls themselves are the CLI's (src/cli/calibrate.c).
 */
#ifndef EM_ROUTER_CALIBRATE_H
#define EM_ROUTER_CALIBRATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* One labelled item after both calls. */
typedef struct em_cal_item {
    bool has_lp;            /* the cheap answer carried token logprobs          */
    double mean, min;       /* its mean and minimum token logprob (nats)        */
    bool cheap_ok, strong_ok; /* each answer passed the item's checker          */
    double cheap_usd, strong_usd; /* what each call cost                        */
} em_cal_item;

/* The mixed system at one threshold. */
typedef struct em_cal_row {
    double threshold;       /* accept when the statistic >= threshold; +inf:
                             * never accept (everything escalates)              */
    int kept;               /* items answered by the cheap backend              */
    double local_share;     /* kept / items                                     */
    double accuracy;        /* share of items answered correctly                */
    double quality;         /* accuracy / the strong backend's accuracy         */
    double cost_usd;        /* every cheap call, plus the strong calls of the
                             * escalated items                                  */
} em_cal_row;

/* The statistic the grid runs over; the other threshold stays fixed. */
typedef enum em_cal_stat { EM_CAL_MEAN, EM_CAL_MIN } em_cal_stat;

/*
 * The grid: one row per distinct observed value of the statistic (rounded
 * down to 4 decimals, so that the printed threshold is the one evaluated),
 * in decreasing order, after a first row at +inf (nothing kept).  An item
 * is kept when it has logprobs, its statistic >= the row's threshold and
 * its other statistic >= `other` (the route's fixed threshold for it).
 * Rows go to rows[0..max_rows); returns how many there are (at most
 * n_items + 1), or -1 when max_rows is too small.
 */
int em_cal_grid(const em_cal_item *items, int n_items, em_cal_stat stat, double other, em_cal_row *rows,
                int max_rows);

/* Accuracy of the strong backend alone, and the cost of sending every item
 * to it directly (no cascade). */
void em_cal_strong_only(const em_cal_item *items, int n_items, double *accuracy, double *cost_usd);

/* The row that reaches quality >= target at the least cost (ties: the row
 * that keeps more local), or -1 when none does. */
int em_cal_recommend(const em_cal_row *rows, int n_rows, double target);

/*
 * Judges an answer by the item's checker: exactly one of
 *   "answer": reference  - equal after normalising both (case folded,
 *                          runs of white space as one space, trimmed,
 *                          trailing . ! ? stripped)
 *   "exact": text        - equal after trimming white space at both ends
 *   "contains": text     - the text occurs in the answer
 *   "regex": pattern     - the PCRE2 pattern matches somewhere in it
 * Returns false with err set when the item has no checker, several, one
 * that is not a string, or a regex that does not compile.
 */
bool em_cal_check(const json_t *item, const char *answer, bool *correct, char *err, size_t err_len);

/* Validates an item's checker without an answer (the same errors). */
bool em_cal_checker_valid(const json_t *item, char *err, size_t err_len);

#endif
