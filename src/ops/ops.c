/*
 * ops.c - elementwise and per-row operations: RMSNorm, RoPE, SwiGLU,
 * GeGLU, soft-capping, softmax.  Each is a single flat loop; the matmuls dominate the time.
 */
#include "ops/ops.h"

#include <math.h>

void em_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    /* Accumulate in double: the sum of squares of a wide row loses digits
     * in float.  Eight partial sums (element i into sum i % 8, added up in
     * a fixed order) let the additions overlap instead of waiting on each
     * other; every square is exact in double, so the order moves the
     * double sum by ~1e-16 relative, far below the float scale's rounding. */
    double p[8] = {0};
    int64_t e = 0;
    for (; e + 8 <= n; e += 8)
        for (int j = 0; j < 8; j++) p[j] += (double)x[e + j] * x[e + j];
    for (; e < n; e++) p[e % 8] += (double)x[e] * x[e];
    const double ss = ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
    float scale = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    if (w)
        for (int64_t i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
    else
        for (int64_t i = 0; i < n; i++) out[i] = x[i] * scale;
}

void em_rope(float *x, int n_heads, int head_dim, int n_rot, const float *cs, const float *sn,
             em_rope_type type) {
    int half = n_rot / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (int64_t)h * head_dim;
        if (type == EM_ROPE_NORM) {
            for (int i = 0; i < half; i++) {
                float a = v[2 * i], b = v[2 * i + 1];
                v[2 * i] = a * cs[i] - b * sn[i];
                v[2 * i + 1] = a * sn[i] + b * cs[i];
            }
        } else {
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * cs[i] - b * sn[i];
                v[i + half] = a * sn[i] + b * cs[i];
            }
        }
    }
}

void em_swiglu(float *out, const float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void em_geglu(float *out, const float *gate, const float *up, int64_t n) {
    const float c = 0.7978845608028654f; /* sqrt(2 / pi) */
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = 0.5f * g * (1.0f + tanhf(c * (g + 0.044715f * g * g * g))) * up[i];
    }
}

void em_layernorm(float *out, const float *x, const float *w, const float *b, int64_t n, float eps) {
    double sum = 0, ss = 0;
    for (int64_t i = 0; i < n; i++) sum += x[i];
    const double mean = sum / (double)n;
    for (int64_t i = 0; i < n; i++) ss += ((double)x[i] - mean) * ((double)x[i] - mean);
    const float scale = (float)(1.0 / sqrt(ss / (double)n + (double)eps)), m = (float)mean;
    for (int64_t i = 0; i < n; i++) {
        float v = (x[i] - m) * scale;
        if (w) v *= w[i];
        if (b) v += b[i];
        out[i] = v;
    }
}

void em_gelu(float *out, const float *x, int64_t n) {
    const float c = 0.7978845608028654f; /* sqrt(2 / pi) */
    for (int64_t i = 0; i < n; i++) {
        float g = x[i];
        out[i] = 0.5f * g * (1.0f + tanhf(c * (g + 0.044715f * g * g * g)));
    }
}

void em_softcap(float *x, int64_t n, float cap) {
    const float inv = 1.0f / cap;
    for (int64_t i = 0; i < n; i++) x[i] = cap * tanhf(x[i] * inv);
}

/* sel[0..k) = the indices of the k largest logits, largest first, the
 * lower index first among equals (k is small: a selection, not a sort). */
static void top_k(const float *logits, int n, int k, int32_t *sel) {
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int e = 0; e < n; e++) {
            bool taken = false;
            for (int i = 0; i < j; i++) taken |= sel[i] == e;
            if (!taken && (best < 0 || logits[e] > logits[best])) best = e;
        }
        sel[j] = best;
    }
}

void em_moe_route(const float *logits, int n_expert, int k, int32_t *sel, float *w) {
    float mx = -INFINITY;
    for (int e = 0; e < n_expert; e++)
        if (logits[e] > mx) mx = logits[e];
    /* The softmax's denominator cancels in the renormalised weights, so
     * exp(l - max) ranks and weighs the experts alike. */
    float sum = 0;
    top_k(logits, n_expert, k, sel);
    for (int j = 0; j < k; j++) {
        w[j] = expf(logits[sel[j]] - mx);
        sum += w[j];
    }
    for (int j = 0; j < k; j++) w[j] /= sum;
}

void em_moe_route_sigmoid(const float *logits, int n_expert, int k, int32_t *sel, float *w) {
    top_k(logits, n_expert, k, sel);
    for (int j = 0; j < k; j++) w[j] = 1.0f / (1.0f + expf(-logits[sel[j]]));
}

void em_softmax(float *x, int64_t n) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (x[i] > mx) mx = x[i];
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}
