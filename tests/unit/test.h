/*
 * test.h - the few macros ember's unit tests share.  A failed CHECK prints
 * the file, line and expression and marks the test failed; the test keeps
 * going so that one run shows every failure.  Also the one comparison of
 * float outputs that several tests share.
 */
#ifndef EM_TEST_H
#define EM_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_failures;
static int test_checks;

#define CHECK(cond)                                                          \
    do {                                                                     \
        test_checks++;                                                       \
        if (!(cond)) {                                                       \
            test_failures++;                                                 \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                  \
        }                                                                    \
    } while (0)

#define CHECK_MSG(cond, ...)                                                 \
    do {                                                                     \
        test_checks++;                                                       \
        if (!(cond)) {                                                       \
            test_failures++;                                                 \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, \
                    #cond);                                                  \
            fprintf(stderr, __VA_ARGS__);                                    \
            fputc('\n', stderr);                                             \
        }                                                                    \
    } while (0)

#define CHECK_OK(expr)                                                       \
    do {                                                                     \
        em_status st_ = (expr);                                              \
        CHECK_MSG(st_ == EM_OK, "%s: %s", em_status_str(st_), em_last_error()); \
    } while (0)

/* The largest difference between a and the reference b over n floats,
 * relative to b's largest magnitude (1 when b is all zeros): how two runs
 * of a model that may sum in different orders are compared. */
static inline float max_rel_diff(const float *a, const float *b, int n) {
    float mx = 0, scale = 0;
    for (int i = 0; i < n; i++) scale = fmaxf(scale, fabsf(b[i]));
    for (int i = 0; i < n; i++) mx = fmaxf(mx, fabsf(a[i] - b[i]));
    return mx / (scale > 0 ? scale : 1);
}

/* Path under $EMBER_TEST_DATA, or NULL (and a message) when it is unset. */
static inline const char *test_data_path(char *buf, size_t size, const char *rel) {
    const char *root = getenv("EMBER_TEST_DATA");
    if (!root || !*root) return NULL;
    snprintf(buf, size, "%s/%s", root, rel);
    return buf;
}

/* Ends a test that needs ../shared when it is missing: ctest shows a skip. */
#define REQUIRE_TEST_DATA()                                                  \
    do {                                                                     \
        if (!getenv("EMBER_TEST_DATA")) {                                    \
            printf("SKIP: EMBER_TEST_DATA is not set\n");                    \
            return 77;                                                       \
        }                                                                    \
    } while (0)

/* Ends a test whose remaining parts need ../shared when it is missing:
 * the checks that ran decide a failure, else ctest shows a skip. */
#define SKIP_REST_WITHOUT_TEST_DATA()                                        \
    do {                                                                     \
        const char *root_ = getenv("EMBER_TEST_DATA");                       \
        if (!root_ || !*root_) {                                             \
            printf("SKIP: EMBER_TEST_DATA is not set (without it: %d checks, " \
                   "%d failed)\n", test_checks, test_failures);              \
            return test_failures ? 1 : 77;                                   \
        }                                                                    \
    } while (0)

/* Ends a test: it fails when a check failed, and when none ran at all
 * (a test that checks nothing must not look like a pass). */
#define TEST_END()                                                           \
    do {                                                                     \
        printf("%d checks, %d failed\n", test_checks, test_failures);        \
        if (test_checks == 0) {                                              \
            fprintf(stderr, "no check ran\n");                               \
            return 1;                                                        \
        }                                                                    \
        return test_failures ? 1 : 0;                                        \
    } while (0)

#endif /* EM_TEST_H */
