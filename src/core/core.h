/*
 * core.h - what every subsystem of ember shares: error reporting, logging,
 * half-precision conversion, checked arithmetic and a monotonic clock.
 */
#ifndef EM_CORE_H
#define EM_CORE_H

#include "ember.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#if defined(__GNUC__)
#define EM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define EM_PRINTF(a, b)
#endif

#define EM_MIN(a, b) ((a) < (b) ? (a) : (b))
#define EM_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Records a one-line error for em_last_error() on this thread and returns
 * status, so that callers can write `return em_error(EM_ERR_FORMAT, ...)`. */
em_status em_error(em_status status, const char *fmt, ...) EM_PRINTF(2, 3);

/* Logging to stderr; EM_LOG_LEVEL (error|warn|info|debug) picks the floor. */
typedef enum { EM_LOG_ERROR, EM_LOG_WARN, EM_LOG_INFO, EM_LOG_DEBUG } em_log_level;
void em_log(em_log_level level, const char *fmt, ...) EM_PRINTF(2, 3);

/* Seconds from an arbitrary fixed point (CLOCK_MONOTONIC). */
double em_time_s(void);
/* The CLOCK_REALTIME instant `ms` milliseconds from now, as the absolute
 * deadline pthread_cond_timedwait takes. */
struct timespec em_deadline_ms(long ms);

/* Reads a whole file into a malloc'd buffer with a NUL after its *len
 * bytes (len may be NULL). EM_ERR_IO when it cannot be opened or read
 * (errno still tells why), EM_ERR_NOMEM when memory runs out or the file
 * holds more than `limit` bytes. */
em_status em_read_file(const char *path, size_t limit, char **out, size_t *len);

/* Overflow-checked size arithmetic: return false on overflow. */
static inline bool em_mul_ok(uint64_t a, uint64_t b, uint64_t *out) {
    if (a != 0 && b > UINT64_MAX / a) return false;
    *out = a * b;
    return true;
}
static inline bool em_add_ok(uint64_t a, uint64_t b, uint64_t *out) {
    if (b > UINT64_MAX - a) return false;
    *out = a + b;
    return true;
}

/* IEEE half <-> float, bit-exact, no hardware needed. */
float em_fp16_to_fp32(uint16_t h);
uint16_t em_fp32_to_fp16(float f);
/* bfloat16 <-> float; the narrowing rounds to nearest even. */
static inline float em_bf16_to_fp32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint16_t em_fp32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 64); /* NaN stays NaN */
    return (uint16_t)((u + (0x7fff + ((u >> 16) & 1))) >> 16);
}

/* Number of physical cores (falls back to online CPUs). */
int em_physical_cores(void);

#endif /* EM_CORE_H */
