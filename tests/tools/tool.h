/*
 * tool.h - what the helper programs of tests/tools share: reading a whole
 * number from an argument, and this thread's CPU time for the
 * benchmarks.
 */
#ifndef EM_TESTS_TOOL_H
#define EM_TESTS_TOOL_H

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

/* s as a whole number in [lo, hi] into *out; false (and *out unchanged)
 * for a missing argument (NULL), anything but digits, or out of range. */
static inline bool parse_int(const char *s, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || errno || end == s || *end || v < lo || v > hi) return false;
    *out = (int)v;
    return true;
}

/* This thread's CPU time in seconds (CLOCK_THREAD_CPUTIME_ID): time the
 * thread spends descheduled on a loaded machine does not count. */
static inline double thread_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
