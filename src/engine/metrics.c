/*
 * metrics.c - histogram buckets.  The bounds span a fast token (5 ms) to a
 * long request (2 minutes), so both inter-token latency and request
 * duration fall inside them.
 */
#include "engine/metrics.h"

const double em_hist_bounds[EM_HIST_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                1.0,   2.5,  5.0,   10.0, 30.0, 60.0, 120.0};

void em_histogram_observe(em_histogram *h, double seconds) {
    if (seconds < 0) seconds = 0;
    for (int i = 0; i < EM_HIST_BUCKETS; i++)
        if (seconds <= em_hist_bounds[i]) {
            h->bucket[i]++;
            break;
        }
    h->count++;
    h->sum += seconds;
}
