/*
 * metrics.h - latency histograms with Prometheus's cumulative buckets.
 */
#ifndef EM_ENGINE_METRICS_H
#define EM_ENGINE_METRICS_H

#include <stdint.h>

#define EM_HIST_BUCKETS 14

/* Upper bounds of the buckets, in seconds ([EM_HIST_BUCKETS]; +Inf is the
 * total count). */
extern const double em_hist_bounds[EM_HIST_BUCKETS];

typedef struct em_histogram {
    uint64_t bucket[EM_HIST_BUCKETS]; /* observations <= em_hist_bounds[i] (not cumulative) */
    uint64_t count;                   /* all observations                                     */
    double sum;                       /* seconds                                              */
} em_histogram;

void em_histogram_observe(em_histogram *h, double seconds);

#endif
