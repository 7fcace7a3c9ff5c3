/*
 * weights.c - the scalar twin of the tempered softmax weight kernels
 * (arch/x86/weights_avx2.c, weights_avx512.c) and the choice between
 * them; see weights.h for what they compute.
 *
 * The twin follows em_exp8_avx2 operation for operation: the same
 * constants, fmaf where the kernel uses a fused multiply-add, round to
 * nearest even, and 2^n built in two factors.  Every multiply and add
 * stands in a statement of its own, so that no compiler contracts a
 * product and a sum into a fused multiply-add the kernels do not have.
 */
#include "sample/weights.h"

#include "core/cpu.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* e^x as em_exp8_avx2 computes one lane of it. */
static inline __attribute__((always_inline)) float exp_lane(float x) {
    if (!(x >= -87.3f)) return 0.0f; /* also NaN */
    if (x > 88.8f) x = 88.8f;
    const float n = nearbyintf(x * 1.44269504088896341f);
    float r = fmaf(-n, 0.693145751953125f, x);
    r = fmaf(-n, 1.428606765330187045e-06f, r);
    float y = 1.0f / 5040;
    y = fmaf(y, r, 1.0f / 720);
    y = fmaf(y, r, 1.0f / 120);
    y = fmaf(y, r, 1.0f / 24);
    y = fmaf(y, r, 1.0f / 6);
    y = fmaf(y, r, 0.5f);
    y = fmaf(y, r, 1.0f);
    y = fmaf(y, r, 1.0f);
    const int32_t ni = (int32_t)n, h1 = ni >> 1, h2 = ni - h1;
    const uint32_t b1 = (uint32_t)(h1 + 127) << 23, b2 = (uint32_t)(h2 + 127) << 23;
    float p1, p2;
    memcpy(&p1, &b1, sizeof p1);
    memcpy(&p2, &b2, sizeof p2);
    const float yp = y * p1;
    return yp * p2;
}

/* One block of len <= EM_DRAW_BLOCK weights and its sum, the missing ones
 * counted as +0 (which changes no sum). */
static inline __attribute__((always_inline)) float block_body(const float *x, int32_t len, float mx, float scale, float *w) {
    float lane[16];
    for (int j = 0; j < 16; j++) lane[j] = 0.0f;
    for (int32_t i = 0; i < len; i++) {
        const float l = x[i] > FLT_MAX ? FLT_MAX : x[i]; /* NaN stays NaN */
        const float d = l - mx;
        const float e = exp_lane(d * scale);
        w[i] = e;
        lane[i % 16] += e;
    }
    for (int j = 0; j < 8; j++) lane[j] += lane[j + 8];
    for (int j = 0; j < 4; j++) lane[j] += lane[j + 4];
    for (int j = 0; j < 2; j++) lane[j] += lane[j + 2];
    return lane[0] + lane[1];
}

static float block_scalar(const float *x, int32_t len, float mx, float scale, float *w) {
    return block_body(x, len, mx, scale, w);
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The same where the CPU has FMA (x86-64's baseline has not): fmaf is then
 * one instruction instead of a call, with the same result by definition.
 * This is what EMBER_CPU=generic runs on an AVX2 machine. */
__attribute__((target("fma"))) static float block_scalar_fma(const float *x, int32_t len, float mx, float scale,
                                                             float *w) {
    return block_body(x, len, mx, scale, w);
}
#endif

void em_draw_weights(const float *x, int32_t n, float mx, float scale, float *w, float *bsum, unsigned features) {
    int64_t done = 0; /* whole blocks the kernels took */
#if defined(__x86_64__) && defined(__GNUC__)
    const int64_t whole = n / EM_DRAW_BLOCK;
    if (features & EM_CPU_AVX512) {
        em_draw_weights_avx512(x, whole, mx, scale, w, bsum);
        done = whole;
    } else if (features & EM_CPU_AVX2) {
        em_draw_weights_avx2(x, whole, mx, scale, w, bsum);
        done = whole;
    }
#else
    (void)features;
#endif
    for (int64_t b = done; b * EM_DRAW_BLOCK < n; b++) {
        const int64_t i = b * EM_DRAW_BLOCK;
        const int32_t len = (int32_t)(n - i < EM_DRAW_BLOCK ? n - i : EM_DRAW_BLOCK);
#if defined(__x86_64__) && defined(__GNUC__)
        if (em_cpu_hw_features() & EM_CPU_AVX2) {
            bsum[b] = block_scalar_fma(x + i, len, mx, scale, w + i);
            continue;
        }
#endif
        bsum[b] = block_scalar(x + i, len, mx, scale, w + i);
    }
}

float em_row_max(const float *x, int32_t n, unsigned features) {
    float mx = -INFINITY;
    int32_t i = 0;
#if defined(__x86_64__) && defined(__GNUC__)
    if (features & EM_CPU_AVX512) {
        mx = em_row_max_avx512(x, n / 16, mx);
        i = n / 16 * 16;
    } else if (features & EM_CPU_AVX2) {
        mx = em_row_max_avx2(x, n / 16, mx);
        i = n / 16 * 16;
    }
#else
    (void)features;
#endif
    /* Without SIMD kernels, sixteen independent running maxima, so that
     * the loop is not one chain of dependent compares. */
    float lane[16];
    for (int l = 0; l < 16; l++) lane[l] = mx;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) lane[l] = x[i + l] > lane[l] ? x[i + l] : lane[l];
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    for (int l = 0; l < 16; l++) mx = lane[l] > mx ? lane[l] : mx;
    return mx;
}
