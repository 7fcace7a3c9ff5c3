/*
 * core.c - errors, logging, clocks and half-precision conversion.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "core.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* The message buffer is per thread so that HTTP worker threads never see
 * one another's errors. */
static _Thread_local char tls_error[512];

const char *em_status_str(em_status s) {
    switch (s) {
    case EM_OK: return "ok";
    case EM_ERR_INVALID_ARG: return "invalid argument";
    case EM_ERR_IO: return "i/o error";
    case EM_ERR_FORMAT: return "malformed file";
    case EM_ERR_UNSUPPORTED: return "unsupported";
    case EM_ERR_NOMEM: return "out of memory";
    case EM_ERR_CONTEXT_FULL: return "context full";
    case EM_ERR_NOT_FOUND: return "not found";
    case EM_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

const char *em_last_error(void) { return tls_error; }

em_status em_error(em_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tls_error, sizeof tls_error, fmt, ap);
    va_end(ap);
    return status;
}

/* EM_LOG_LEVEL is read once, by whichever thread logs first; pthread_once
 * makes that safe when several threads log at the same time. */
static int log_floor = EM_LOG_WARN;
static pthread_once_t log_once = PTHREAD_ONCE_INIT;

static void log_floor_init(void) {
    const char *e = getenv("EM_LOG_LEVEL");
    if (!e) return;
    if (!strcmp(e, "error")) log_floor = EM_LOG_ERROR;
    else if (!strcmp(e, "info")) log_floor = EM_LOG_INFO;
    else if (!strcmp(e, "debug")) log_floor = EM_LOG_DEBUG;
}

void em_log(em_log_level level, const char *fmt, ...) {
    pthread_once(&log_once, log_floor_init);
    if ((int)level > log_floor) return;
    static const char *names[] = {"error", "warn", "info", "debug"};
    fprintf(stderr, "ember: %s: ", names[level]);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

double em_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

float em_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else {
            /* Subnormal half: normalise it into a float. */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000 | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t em_fp32_to_fp16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000;
    uint32_t absu = u & 0x7fffffff;
    if (absu > 0x7f800000) return (uint16_t)(sign | 0x7e00); /* NaN */
    if (absu >= 0x477ff000) return (uint16_t)(sign | 0x7c00); /* overflow: inf */
    if (absu < 0x38800000) {
        /* Result is subnormal or zero: shift the mantissa with the implicit
         * bit, rounding to nearest even. */
        if (absu < 0x33000000) return (uint16_t)sign;
        uint32_t e = absu >> 23;
        uint32_t m = (absu & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14 + (113 - e) - 1 */
        uint32_t half = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    /* Normal: rebias and round the 13 dropped bits to nearest even. */
    uint32_t r = absu + 0xfff + ((absu >> 13) & 1);
    r -= (uint32_t)(127 - 15) << 23;
    return (uint16_t)(sign | (r >> 13));
}

int em_physical_cores(void) {
    /* Count distinct (physical id, core id) pairs in /proc/cpuinfo. */
    FILE *f = fopen("/proc/cpuinfo", "r");
    int n = 0;
    if (f) {
        char line[256];
        int phys = 0, pairs[1024][2], np = 0;
        while (fgets(line, sizeof line, f)) {
            int v;
            if (sscanf(line, "physical id : %d", &v) == 1) phys = v;
            else if (sscanf(line, "core id : %d", &v) == 1) {
                int seen = 0;
                for (int i = 0; i < np; i++)
                    if (pairs[i][0] == phys && pairs[i][1] == v) seen = 1;
                if (!seen && np < 1024) {
                    pairs[np][0] = phys;
                    pairs[np][1] = v;
                    np++;
                }
            }
        }
        fclose(f);
        n = np;
    }
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0 || n > online) n = (int)(online > 0 ? online : 1);
    return n;
}
