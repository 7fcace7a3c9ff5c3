/*
 * test_router_calibrate.c - `ember route calibrate`'s arithmetic: the
 * threshold grid over a hand-made set whose every row is worked out here,
 * the recommendation, the fixed second threshold, items without logprobs,
 * and the four checkers with their errors.
 */
#include "router/calibrate.h"
#include "test.h"

#include <math.h>

static bool near(double a, double b) { return fabs(a - b) < 1e-12; }

static void test_grid(void) {
    /* mean, min; cheap right?, strong right?; costs cheap 1, strong 10. */
    em_cal_item it[] = {
        {true, -0.1, -0.5, true, true, 1, 10},   /* confident, both right      */
        {true, -0.3, -2.0, false, true, 1, 10},  /* cheap wrong                */
        {true, -0.3, -0.9, true, true, 1, 10},   /* same mean: one grid row    */
        {true, -0.9, -8.0, true, false, 1, 10},  /* only cheap right; min low  */
        {false, 0, 0, true, true, 1, 10},        /* no logprobs: never kept    */
    };
    em_cal_row rows[6];
    CHECK(em_cal_grid(it, 5, EM_CAL_MEAN, -6, rows, 5) == -1); /* too few rows */
    int n = em_cal_grid(it, 5, EM_CAL_MEAN, -6, rows, 6);
    CHECK(n == 4); /* never, -0.1, -0.3, -0.9 */
    /* never: strong everywhere: 4 right of 5, quality 1, cost 5 + 50. */
    CHECK(isinf(rows[0].threshold) && rows[0].kept == 0 && near(rows[0].quality, 1) && near(rows[0].cost_usd, 55));
    CHECK(near(rows[0].accuracy, 0.8));
    /* -0.1: item 0 kept (right either way). */
    CHECK(near(rows[1].threshold, -0.1) && rows[1].kept == 1 && near(rows[1].quality, 1) && near(rows[1].cost_usd, 45));
    /* -0.3: items 0-2 kept; item 1 turns wrong: 3 of 4. */
    CHECK(near(rows[2].threshold, -0.3) && rows[2].kept == 3 && near(rows[2].quality, 0.75) && near(rows[2].cost_usd, 25));
    /* -0.9: item 3 fails min -6: still 3 kept, the same as -0.3. */
    CHECK(near(rows[3].threshold, -0.9) && rows[3].kept == 3 && near(rows[3].cost_usd, 25));
    CHECK(near(rows[3].local_share, 0.6));
    CHECK(em_cal_recommend(rows, n, 0.95) == 1);
    CHECK(em_cal_recommend(rows, n, 0.75) == 2); /* cheapest; -0.3 and -0.9 tie: the first */
    CHECK(em_cal_recommend(rows, n, 1.5) == -1);
    /* With min held at -9, item 3 is kept at -0.9 and it was right. */
    n = em_cal_grid(it, 5, EM_CAL_MEAN, -9, rows, 6);
    CHECK(n == 4 && rows[3].kept == 4 && near(rows[3].quality, 1) && near(rows[3].cost_usd, 15));
    CHECK(em_cal_recommend(rows, n, 0.95) == 3);
    /* The grid over min, mean held at -0.5: items 0 and 2 pass the mean. */
    n = em_cal_grid(it, 5, EM_CAL_MIN, -0.5, rows, 6);
    CHECK(n == 5 && near(rows[1].threshold, -0.5) && rows[1].kept == 1 && near(rows[2].threshold, -0.9));
    CHECK(rows[2].kept == 2 && rows[3].kept == 3 && rows[4].kept == 3); /* item 3 fails the mean */
    double acc, cost;
    em_cal_strong_only(it, 5, &acc, &cost);
    CHECK(near(acc, 0.8) && near(cost, 50));
    /* A mean that lands a hair off its decimal keeps its item at the
     * rounded threshold: 8 x -0.1 / 8. */
    double m = 0;
    for (int i = 0; i < 8; i++) m += -0.1;
    em_cal_item hair[] = {{true, m / 8, m / 8, true, true, 1, 10}};
    n = em_cal_grid(hair, 1, EM_CAL_MEAN, -6, rows, 2);
    CHECK(n == 2 && near(rows[1].threshold, -0.1) && rows[1].kept == 1);
    /* A strong backend that is never right: quality undefined, nothing recommended. */
    em_cal_item none[] = {{true, -0.1, -0.1, true, false, 1, 10}};
    n = em_cal_grid(none, 1, EM_CAL_MEAN, -6, rows, 2);
    CHECK(n == 2 && isnan(rows[1].quality) && em_cal_recommend(rows, n, 0.95) == -1);
}

static bool judge(const char *item, const char *answer) {
    json_error_t je;
    json_t *o = json_loads(item, 0, &je);
    bool ok = false;
    char err[200];
    CHECK(o && em_cal_check(o, answer, &ok, err, sizeof err));
    json_decref(o);
    return ok;
}

static bool refused(const char *item, const char *want) {
    json_error_t je;
    json_t *o = json_loads(item, 0, &je);
    char err[200] = "";
    bool ok, valid = em_cal_checker_valid(o, err, sizeof err);
    bool checked = em_cal_check(o, "x", &ok, err, sizeof err);
    json_decref(o);
    return !valid && !checked && strstr(err, want);
}

static void test_checkers(void) {
    CHECK(judge("{\"answer\": \"Paris\"}", "  paris. "));
    CHECK(judge("{\"answer\": \"New  York City!\"}", "new york\tcity"));
    CHECK(!judge("{\"answer\": \"Paris\"}", "Paris, France"));
    CHECK(judge("{\"exact\": \"42\"}", "\n42 "));
    CHECK(!judge("{\"exact\": \"42\"}", "42."));
    CHECK(judge("{\"contains\": \"O(n)\"}", "It is O(n) time."));
    CHECK(!judge("{\"contains\": \"o(n)\"}", "It is O(n) time."));
    CHECK(judge("{\"regex\": \"^\\\\s*4\\\\b\"}", " 4 apples"));
    CHECK(!judge("{\"regex\": \"^\\\\s*4\\\\b\"}", "44"));
    CHECK(refused("{\"prompt\": \"x\"}", "no checker"));
    CHECK(refused("{\"answer\": \"a\", \"contains\": \"b\"}", "give one checker"));
    CHECK(refused("{\"answer\": 4}", "must be a string"));
    CHECK(refused("{\"regex\": \"(\"}", "does not compile"));
}

int main(void) {
    test_grid();
    test_checkers();
    TEST_END();
}
