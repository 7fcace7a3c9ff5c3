/*
 * quantize.c - converting float rows into every writable format.
 *
 * Weight formats are quantized with a search, not with a single max-abs
 * division: a block's levels and its scale depend on each other, so each
 * block tries a spread of candidate scales, keeps the one whose weighted
 * least-squares fit leaves the smallest error, and then polishes the
 * levels one at a time while re-solving the scale (and, for the formats
 * with an offset, the offset too).  The two-level formats (K-quants,
 * IQ4_XS) fit every group first, then fit the group scales themselves to
 * the few-bit integers times a super-block scale, and finally re-round
 * every element against the scale that was actually stored, so the
 * rounding of the stored scales costs as little as possible.
 *
 * The error being minimized is sum_i w_i * (x_i - y_i)^2.  Without an
 * importance matrix w_i = 1 (plain squared error); with one, w_i is the
 * importance of column i (typically the mean squared activation that
 * multiplies it), so the expected error of the matmul output is what is
 * minimized.
 *
 * The activation formats (Q8_0, Q8_1, Q8_K) are quantized on every token,
 * so they use the single-pass max-abs rule, exactly as ggml does.
 */
#include "quant/quant.h"
#include "quant/blocks.h"
#include "quant/dot.h"

#include <math.h>

/* Largest group a fit routine handles (IQ4_NL/Q4_K groups are 32). */
#define FIT_MAX 32
/* Candidate scales tried on each side of the plain max-abs choice. */
#define FIT_STEPS 10

/* ------------------------------------------------------------ helpers */

/* Nearest integer (ties to even), saturated so that huge or NaN inputs
 * (from degenerate data) never reach an undefined conversion. */
static inline int round_int(float v) {
    if (!(v > -1e6f)) v = -1e6f;
    if (!(v < 1e6f)) v = 1e6f;
    return (int)lrintf(v);
}

/* Rounding half away from zero (C's roundf), saturated like round_int;
 * the Q8 activation formats round this way, as ggml's do. */
static inline int round_away(float v) {
    if (!(v > -1e6f)) v = -1e6f;
    if (!(v < 1e6f)) v = 1e6f;
    return (int)roundf(v);
}

static inline int clamp_int(int v, int lo, int hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

/* A scale stored as fp16, saturated at the largest finite half so that a
 * row of enormous values degrades instead of turning into infinities. */
static inline uint16_t scale_to_fp16(float d) {
    if (d > 65504.0f) d = 65504.0f;
    if (d < -65504.0f) d = -65504.0f;
    return em_fp32_to_fp16(d);
}

/* Per-element weights of the error for one block (see the file comment).
 * Negative, NaN and zero importances are replaced by a small share of the
 * block's mean so every fit stays well-posed. */
static void block_weights(const float *imatrix, int n, float *w) {
    if (!imatrix) {
        for (int i = 0; i < n; i++) w[i] = 1.0f;
        return;
    }
    float sum = 0;
    for (int i = 0; i < n; i++) {
        float v = imatrix[i];
        if (!(v > 0)) v = 0;
        if (v > 1e30f) v = 1e30f;
        w[i] = v;
        sum += v;
    }
    const float eps = sum > 0 ? 1e-4f * sum / (float)n : 1.0f;
    for (int i = 0; i < n; i++) w[i] += eps;
}

/* ------------------------------------------------------- fit routines */

/* The element of x[0..n) with the largest magnitude, sign kept (the first
 * of equals; 0 when all are zero).  NaNs never compare larger, so they
 * are passed over.  The fits scale this element to an end of the level
 * range, which is why its sign matters. */
static float max_magnitude(const float *x, int64_t n) {
    float amax = 0, vmax = 0;
    for (int64_t i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            vmax = x[i];
        }
    }
    return vmax;
}

/* The best candidate so far of a scale search: its sums sum(w x L) and
 * sum(w L^2), and its score sum(w x L)^2 / sum(w L^2), the part of
 * sum(w x^2) that the least-squares scale for those levels explains. */
typedef struct {
    double xl, l2, score;
} fit_best;

/* Takes the candidate with sums xl, l2 and score if it scores higher than
 * the best so far; returns whether it did, so that the caller keeps the
 * candidate's levels. */
static bool fit_take(fit_best *best, double xl, double l2, double score) {
    if (!(score > best->score)) return false;
    *best = (fit_best){.xl = xl, .l2 = l2, .score = score};
    return true;
}

/*
 * Fits x[i] ~= s * L[i] with integer L[i] in [lo, hi] (lo <= 0 < hi),
 * minimizing sum w (x - s L)^2; returns s (0 when x is all zero).  For a
 * fixed L the best s is sum(w x L) / sum(w L^2), and the error left is
 * sum(w x^2) - sum(w x L)^2 / sum(w L^2), so the search maximizes the
 * "score" sum(w x L)^2 / sum(w L^2).  Candidates map the largest-magnitude
 * element to levels near either end of the range; then single levels are
 * moved while that improves the score.
 */
static float fit_symmetric(int n, int lo, int hi, const float *x, const float *w,
                           int8_t *L) {
    const float vmax = max_magnitude(x, n);
    if (!(fabsf(vmax) > 1e-30f)) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    int8_t cand[FIT_MAX];
    fit_best best = {.xl = 0, .l2 = 1, .score = -1};
    for (int side = 0; side < 2; side++) {
        const int end = side == 0 ? lo : hi;
        if (end == 0) continue;
        const float mag = (float)(end < 0 ? -end : end);
        for (int k = -FIT_STEPS; k <= FIT_STEPS; k++) {
            const float target = mag + 0.1f * (float)k;
            if (target < 0.5f) continue;
            const float iscale = (end < 0 ? -target : target) / vmax;
            double slx = 0, sl2 = 0;
            for (int i = 0; i < n; i++) {
                const int l = clamp_int(round_int(iscale * x[i]), lo, hi);
                cand[i] = (int8_t)l;
                slx += (double)w[i] * x[i] * l;
                sl2 += (double)w[i] * l * l;
            }
            if (sl2 <= 0) continue;
            if (fit_take(&best, slx, sl2, slx * slx / sl2)) memcpy(L, cand, (size_t)n);
        }
    }
    if (best.score < 0) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    /* Coordinate moves: re-round one element against the current scale and
     * keep the change if the re-fitted scale explains more of x. */
    for (int pass = 0; pass < 4; pass++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            const double s = best.xl / best.l2;
            if (s == 0) break;
            const int l = clamp_int(round_int((float)(x[i] / s)), lo, hi);
            if (l == L[i]) continue;
            const double slx = best.xl + (double)w[i] * x[i] * (l - L[i]);
            const double sl2 = best.l2 + (double)w[i] * (l * l - L[i] * L[i]);
            if (sl2 > 0 && slx * slx * best.l2 > best.xl * best.xl * sl2) {
                L[i] = (int8_t)l;
                best.xl = slx;
                best.l2 = sl2;
                changed++;
            }
        }
        if (!changed) break;
    }
    return (float)(best.xl / best.l2);
}

/* Weighted error of x ~= s * L + o. */
static double affine_error(int n, const float *x, const float *w, const uint8_t *L,
                           float s, float o) {
    double err = 0;
    for (int i = 0; i < n; i++) {
        const double diff = (double)s * L[i] + o - x[i];
        err += w[i] * diff * diff;
    }
    return err;
}

/*
 * Solves the 2x2 weighted least-squares problem for scale s and offset o
 * given levels L; when offset_le0 is set and the free solution has o > 0,
 * o is pinned to 0 and s re-solved alone.  Returns false if L is constant.
 */
static bool affine_solve(int n, const float *x, const float *w, const uint8_t *L,
                         bool offset_le0, float *s, float *o) {
    double sw = 0, sx = 0, sl = 0, sl2 = 0, sxl = 0;
    for (int i = 0; i < n; i++) {
        sw += w[i];
        sx += (double)w[i] * x[i];
        sl += (double)w[i] * L[i];
        sl2 += (double)w[i] * L[i] * L[i];
        sxl += (double)w[i] * x[i] * L[i];
    }
    const double det = sw * sl2 - sl * sl;
    if (!(det > 1e-12 * sw * sl2)) return false;
    double ss = (sw * sxl - sx * sl) / det;
    double oo = (sl2 * sx - sl * sxl) / det;
    if (offset_le0 && oo > 0) {
        oo = 0;
        ss = sxl / sl2;
    }
    if (ss < 0) return false;
    *s = (float)ss;
    *o = (float)oo;
    return true;
}

/*
 * Fits x[i] ~= s * L[i] + o with L[i] in [0, nmax] and s >= 0; o <= 0 when
 * offset_le0 (the K-quants store a subtracted non-negative min).  Tries
 * candidate scales stretching [min, max] over slightly fewer or more than
 * nmax steps, solving s and o by least squares for each rounding, then
 * alternates re-rounding and re-solving while the error falls.
 */
static float fit_affine(int n, int nmax, const float *x, const float *w, uint8_t *L,
                        float *offset, bool offset_le0) {
    float mn = x[0], mx = x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < mn) mn = x[i];
        if (x[i] > mx) mx = x[i];
    }
    if (offset_le0 && mn > 0) mn = 0;
    if (!(mx > mn)) {
        memset(L, 0, (size_t)n);
        *offset = mn;
        return 0.0f;
    }
    /* The plain choice: min maps to 0, max to nmax. */
    float best_s = (mx - mn) / (float)nmax, best_o = mn;
    for (int i = 0; i < n; i++)
        L[i] = (uint8_t)clamp_int(round_int((x[i] - mn) / best_s), 0, nmax);
    double best_err = affine_error(n, x, w, L, best_s, best_o);

    uint8_t cand[FIT_MAX];
    for (int k = -FIT_STEPS; k <= FIT_STEPS; k++) {
        const float iscale = ((float)nmax + 0.1f * (float)k) / (mx - mn);
        for (int i = 0; i < n; i++)
            cand[i] = (uint8_t)clamp_int(round_int(iscale * (x[i] - mn)), 0, nmax);
        float s, o;
        if (!affine_solve(n, x, w, cand, offset_le0, &s, &o)) continue;
        const double err = affine_error(n, x, w, cand, s, o);
        if (err < best_err) {
            best_err = err;
            best_s = s;
            best_o = o;
            memcpy(L, cand, (size_t)n);
        }
    }
    for (int iter = 0; iter < 4 && best_s > 0; iter++) {
        for (int i = 0; i < n; i++)
            cand[i] = (uint8_t)clamp_int(round_int((x[i] - best_o) / best_s), 0, nmax);
        float s, o;
        if (!affine_solve(n, x, w, cand, offset_le0, &s, &o)) break;
        const double err = affine_error(n, x, w, cand, s, o);
        if (!(err < best_err)) break;
        best_err = err;
        best_s = s;
        best_o = o;
        memcpy(L, cand, (size_t)n);
    }
    *offset = best_o;
    return best_s;
}

/* Index of the IQ4 level nearest to v (the table is ascending). */
static inline int iq4_nearest(float v) {
    const int8_t *t = em_iq4nl_values;
    if (!(v > t[0])) return 0;
    if (v >= t[15]) return 15;
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (v < t[mid]) hi = mid;
        else lo = mid;
    }
    return (v - t[lo] < t[hi] - v) ? lo : hi;
}

/*
 * Fits x[i] ~= d * kvalues[idx[i]] for the IQ4 table, in the same way as
 * fit_symmetric: candidate scales map the largest element near either end
 * of the (asymmetric) table, each rounding gets its least-squares d, and
 * re-rounding against the best d is repeated while it helps.
 */
static float fit_iq4(int n, const float *x, const float *w, uint8_t *idx) {
    const float vmax = max_magnitude(x, n);
    if (!(fabsf(vmax) > 1e-30f)) {
        memset(idx, 8, (size_t)n);
        return 0.0f;
    }
    uint8_t cand[FIT_MAX];
    fit_best best = {.xl = 0, .l2 = 1, .score = -1};
    const float ends[2] = {(float)em_iq4nl_values[0], (float)em_iq4nl_values[15]};
    for (int side = 0; side < 2; side++) {
        for (int k = -FIT_STEPS; k <= FIT_STEPS; k++) {
            const float target = ends[side] + (ends[side] < 0 ? -1.0f : 1.0f) * (float)k;
            const float iscale = target / vmax;
            double sxv = 0, sv2 = 0;
            for (int i = 0; i < n; i++) {
                cand[i] = (uint8_t)iq4_nearest(iscale * x[i]);
                const double v = em_iq4nl_values[cand[i]];
                sxv += w[i] * x[i] * v;
                sv2 += w[i] * v * v;
            }
            if (fit_take(&best, sxv, sv2, sxv * sxv / sv2)) memcpy(idx, cand, (size_t)n);
        }
    }
    for (int iter = 0; iter < 3; iter++) {
        const double d = best.xl / best.l2;
        if (d == 0) break;
        double sxv = 0, sv2 = 0;
        for (int i = 0; i < n; i++) {
            cand[i] = (uint8_t)iq4_nearest((float)(x[i] / d));
            const double v = em_iq4nl_values[cand[i]];
            sxv += w[i] * x[i] * v;
            sv2 += w[i] * v * v;
        }
        if (!fit_take(&best, sxv, sv2, sxv * sxv / sv2)) break;
        memcpy(idx, cand, (size_t)n);
    }
    return (float)(best.xl / best.l2);
}

/* ------------------------------------------------ 32-element formats */

/* Shared by Q4_0 and Q5_0: fits d for levels in [-half, half - 1], then
 * rounds against the stored fp16 d.  q receives the 32 levels, biased by
 * half (0 .. 2 half - 1). */
static void fit_q_0(const float *x, const float *w, int half, uint16_t *dh, int q[32]) {
    int8_t L[32];
    const float s = fit_symmetric(32, -half, half - 1, x, w, L);
    *dh = scale_to_fp16(s);
    const float d = em_fp16_to_fp32(*dh);
    const float id = d != 0 ? 1.0f / d : 0.0f;
    for (int j = 0; j < 32; j++) q[j] = clamp_int(round_int(x[j] * id), -half, half - 1) + half;
}

/* Shared by Q4_1 and Q5_1: fits d and m, then rounds against the stored
 * fp16 values.  q receives the 32 levels. */
static void fit_q_1(const float *x, const float *w, int nmax, uint16_t *dh, uint16_t *mh,
                    int q[32]) {
    uint8_t L[32];
    float o;
    const float s = fit_affine(32, nmax, x, w, L, &o, false);
    *dh = scale_to_fp16(s);
    *mh = scale_to_fp16(o);
    const float d = em_fp16_to_fp32(*dh), m = em_fp16_to_fp32(*mh);
    const float id = d != 0 ? 1.0f / d : 0.0f;
    for (int j = 0; j < 32; j++) q[j] = clamp_int(round_int((x[j] - m) * id), 0, nmax);
}

/* Packs 32 levels (0..31) of a 32-element block: the low 4 bits into
 * qs[16], elements j and j + 16 sharing a byte, and the fifth bits into
 * the 32-bit mask qh[4] (NULL for the 4-bit formats, whose levels have
 * none). */
static void pack_q32(const int q[32], uint8_t *qs, uint8_t *qh) {
    uint32_t h = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 15) | ((q[j + 16] & 15) << 4));
        h |= (uint32_t)(q[j] >> 4) << j;
        h |= (uint32_t)(q[j + 16] >> 4) << (j + 16);
    }
    if (qh)
        for (int k = 0; k < 4; k++) qh[k] = (uint8_t)(h >> (8 * k));
}

/* Q4_0, Q5_0, Q4_1 and Q5_1 (type t): the levels of each block fitted by
 * fit_q_0 (symmetric) or fit_q_1 (with an offset m), then packed. */
static void quant_q32(em_type t, const float *x, void *dst, int64_t nb, const float *imat) {
    float w[32];
    int q[32];
    for (int64_t b = 0; b < nb; b++, x += 32) {
        block_weights(imat ? imat + 32 * b : NULL, 32, w);
        if (t == EM_TYPE_Q4_0) {
            em_block_q4_0 *y = (em_block_q4_0 *)dst + b;
            fit_q_0(x, w, 8, &y->d, q);
            pack_q32(q, y->qs, NULL);
        } else if (t == EM_TYPE_Q5_0) {
            em_block_q5_0 *y = (em_block_q5_0 *)dst + b;
            fit_q_0(x, w, 16, &y->d, q);
            pack_q32(q, y->qs, y->qh);
        } else if (t == EM_TYPE_Q4_1) {
            em_block_q4_1 *y = (em_block_q4_1 *)dst + b;
            fit_q_1(x, w, 15, &y->d, &y->m, q);
            pack_q32(q, y->qs, NULL);
        } else {
            em_block_q5_1 *y = (em_block_q5_1 *)dst + b;
            fit_q_1(x, w, 31, &y->d, &y->m, q);
            pack_q32(q, y->qs, y->qh);
        }
    }
}

/* One 32-element activation block: d = max|x| / 127, q = round(x / d) -
 * already within half a step of optimal at 8 bits, and cheap enough for
 * activations.  Stores d as fp16 and the quants; returns d and the sum of
 * the quants in *qsum. */
static inline float quant_q8_32(const float *x, uint16_t *dh, int8_t *qs, int *qsum) {
    float amax = 0;
    for (int j = 0; j < 32; j++) amax = EM_MAX(amax, fabsf(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    *dh = scale_to_fp16(d);
    int sum = 0;
    for (int j = 0; j < 32; j++) {
        qs[j] = (int8_t)clamp_int(round_away(x[j] * id), -127, 127);
        sum += qs[j];
    }
    *qsum = sum;
    return d;
}

static void quant_q8_0(const float *x, em_block_q8_0 *y, int64_t nb) {
    int sum;
    for (int64_t b = 0; b < nb; b++, x += 32, y++) quant_q8_32(x, &y->d, y->qs, &sum);
}

/* Q8_1 also stores s = d * sum(q) so that a dot with a *_1 weight block can
 * add the weight's offset times the activation sum in one multiply. */
static void quant_q8_1(const float *x, em_block_q8_1 *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += 32, y++) {
        int sum;
        const float d = quant_q8_32(x, &y->d, y->qs, &sum);
        y->s = scale_to_fp16((float)sum * d);
    }
}

static void quant_iq4_nl(const float *x, em_block_iq4_nl *y, int64_t nb, const float *imat) {
    float w[32];
    uint8_t idx[32];
    for (int64_t b = 0; b < nb; b++, x += 32, y++) {
        block_weights(imat ? imat + 32 * b : NULL, 32, w);
        const float s = fit_iq4(32, x, w, idx);
        y->d = scale_to_fp16(s);
        const float d = em_fp16_to_fp32(y->d);
        if (d != 0) {
            const float id = 1.0f / d;
            for (int j = 0; j < 32; j++) idx[j] = (uint8_t)iq4_nearest(x[j] * id);
        }
        for (int j = 0; j < 16; j++) y->qs[j] = (uint8_t)(idx[j] | (idx[j + 16] << 4));
    }
}

/* ------------------------------------------- 256-element super-blocks */

/* Packs 2-bit levels q[256] into the Q2_K/Q3_K qs layout (blocks.h). */
static void pack_2bit(const uint8_t *q, uint8_t *qs) {
    for (int h = 0; h < 2; h++) {
        for (int l = 0; l < 32; l++) {
            const uint8_t *p = q + 128 * h + l;
            qs[32 * h + l] = (uint8_t)((p[0] & 3) | (p[32] & 3) << 2 | (p[64] & 3) << 4 |
                                       (p[96] & 3) << 6);
        }
    }
}

/* Weight of a group's scale in the second-level fit: an error e in the
 * scale changes the group's output by e * L[i], so it costs e^2 * sum w L^2. */
static float scale_weight_u8(const float *w, const uint8_t *L, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += w[i] * (float)(L[i] * L[i]);
    return s + 1e-30f;
}

static float scale_weight_i8(const float *w, const int8_t *L, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += w[i] * (float)(L[i] * L[i]);
    return s + 1e-30f;
}

static float weight_sum(const float *w, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += w[i];
    return s + 1e-30f;
}

/*
 * The K-quants with a min (Q2_K, Q4_K, Q5_K): fits each of ng groups of gs
 * elements to s*q - m, then fits the ng scales and ng mins to nsc-level
 * integers times fp16 d and dmin.  Outputs: the integer scales and mins,
 * the stored d/dmin and the final levels q[256] re-rounded against them.
 */
static void fit_k_affine(const float *x, const float *w, int ng, int gs, int nmax, int nsc,
                         uint8_t *isc, uint8_t *imn, uint16_t *dh, uint16_t *dminh,
                         uint8_t *q) {
    float sc[16], mn[16], wsc[16], wmn[16];
    for (int g = 0; g < ng; g++) {
        float o;
        sc[g] = fit_affine(gs, nmax, x + gs * g, w + gs * g, q + gs * g, &o, true);
        mn[g] = -o;
        wsc[g] = scale_weight_u8(w + gs * g, q + gs * g, gs);
        wmn[g] = weight_sum(w + gs * g, gs);
    }
    int8_t Ls[16], Lm[16];
    const float d = fit_symmetric(ng, 0, nsc, sc, wsc, Ls);
    const float dmin = fit_symmetric(ng, 0, nsc, mn, wmn, Lm);
    *dh = scale_to_fp16(d);
    *dminh = scale_to_fp16(dmin);
    const float df = em_fp16_to_fp32(*dh), dminf = em_fp16_to_fp32(*dminh);
    for (int g = 0; g < ng; g++) {
        isc[g] = (uint8_t)Ls[g];
        imn[g] = (uint8_t)Lm[g];
        const float ds = df * (float)Ls[g], dm = dminf * (float)Lm[g];
        for (int i = 0; i < gs; i++) {
            const float v = x[gs * g + i];
            q[gs * g + i] = ds != 0 ? (uint8_t)clamp_int(round_int((v + dm) / ds), 0, nmax) : 0;
        }
    }
}

/*
 * The symmetric K-quants (Q3_K, Q6_K) and IQ4_XS's scales: fits each group
 * to s*l with l in [lo, hi], then the group scales to [slo, shi] integers
 * times an fp16 d.  Outputs the integer scales, d and nothing else: the
 * caller re-rounds its elements against d * scale.
 */
static void fit_k_scales(const float *gscale, const float *wsc, int ng, int slo, int shi,
                         int8_t *isc, uint16_t *dh) {
    const float d = fit_symmetric(ng, slo, shi, gscale, wsc, isc);
    *dh = scale_to_fp16(d);
}

/*
 * The symmetric K-quants (Q3_K, Q6_K): fits each of the 16 groups of 16
 * elements to s*l with l in [lo, hi], the group scales to [slo, shi]
 * integers times an fp16 d, then re-rounds every element against
 * d * scale.  Outputs the integer scales, d and the levels q[256], stored
 * biased by -lo (0 .. hi - lo).
 */
static void fit_k_symmetric(const float *x, const float *w, int lo, int hi, int slo, int shi,
                            int8_t *isc, uint16_t *dh, uint8_t *q) {
    float sc[16], wsc[16];
    int8_t L[EM_QK_K];
    for (int g = 0; g < 16; g++) {
        sc[g] = fit_symmetric(16, lo, hi, x + 16 * g, w + 16 * g, L + 16 * g);
        wsc[g] = scale_weight_i8(w + 16 * g, L + 16 * g, 16);
    }
    fit_k_scales(sc, wsc, 16, slo, shi, isc, dh);
    const float d = em_fp16_to_fp32(*dh);
    for (int g = 0; g < 16; g++) {
        const float ds = d * (float)isc[g];
        for (int i = 0; i < 16; i++) {
            const int e = 16 * g + i;
            const int l = ds != 0 ? clamp_int(round_int(x[e] / ds), lo, hi) : 0;
            q[e] = (uint8_t)(l - lo);
        }
    }
}

static void quant_q2_k(const float *x, em_block_q2_k *y, int64_t nb, const float *imat) {
    float w[EM_QK_K];
    uint8_t q[EM_QK_K], isc[16], imn[16];
    for (int64_t b = 0; b < nb; b++, x += EM_QK_K, y++) {
        block_weights(imat ? imat + EM_QK_K * b : NULL, EM_QK_K, w);
        fit_k_affine(x, w, 16, 16, 3, 15, isc, imn, &y->d, &y->dmin, q);
        for (int g = 0; g < 16; g++) y->scales[g] = (uint8_t)(isc[g] | (imn[g] << 4));
        pack_2bit(q, y->qs);
    }
}

static void quant_q3_k(const float *x, em_block_q3_k *y, int64_t nb, const float *imat) {
    float w[EM_QK_K];
    int8_t isc[16];
    uint8_t q[EM_QK_K];
    for (int64_t b = 0; b < nb; b++, x += EM_QK_K, y++) {
        block_weights(imat ? imat + EM_QK_K * b : NULL, EM_QK_K, w);
        fit_k_symmetric(x, w, -4, 3, -32, 31, isc, &y->d, q);
        memset(y->scales, 0, sizeof y->scales);
        memset(y->hmask, 0, sizeof y->hmask);
        for (int g = 0; g < 16; g++) {
            const int s6 = isc[g] + 32; /* stored biased, 0..63 */
            if (g < 8) y->scales[g] |= (uint8_t)(s6 & 15);
            else y->scales[g - 8] |= (uint8_t)((s6 & 15) << 4);
            y->scales[8 + (g & 3)] |= (uint8_t)((s6 >> 4) << (2 * (g >> 2)));
        }
        for (int e = 0; e < EM_QK_K; e++)
            if (q[e] & 4) y->hmask[e % 32] |= (uint8_t)(1u << (e / 32));
        pack_2bit(q, y->qs);
    }
}

/* Packs eight 6-bit scales and mins into the Q4_K/Q5_K 12-byte layout. */
static void pack_k4_scales(const uint8_t *sc, const uint8_t *mn, uint8_t *out) {
    for (int g = 0; g < 8; g++) {
        if (g < 4) {
            out[g] = sc[g];
            out[g + 4] = mn[g];
        } else {
            out[g + 4] = (uint8_t)((sc[g] & 15) | ((mn[g] & 15) << 4));
            out[g - 4] |= (uint8_t)((sc[g] >> 4) << 6);
            out[g] |= (uint8_t)((mn[g] >> 4) << 6);
        }
    }
}

static void quant_q4_k(const float *x, em_block_q4_k *y, int64_t nb, const float *imat) {
    float w[EM_QK_K];
    uint8_t q[EM_QK_K], isc[8], imn[8];
    for (int64_t b = 0; b < nb; b++, x += EM_QK_K, y++) {
        block_weights(imat ? imat + EM_QK_K * b : NULL, EM_QK_K, w);
        fit_k_affine(x, w, 8, 32, 15, 63, isc, imn, &y->d, &y->dmin, q);
        pack_k4_scales(isc, imn, y->scales);
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++)
                y->qs[32 * k + l] = (uint8_t)(q[64 * k + l] | (q[64 * k + 32 + l] << 4));
    }
}

static void quant_q5_k(const float *x, em_block_q5_k *y, int64_t nb, const float *imat) {
    float w[EM_QK_K];
    uint8_t q[EM_QK_K], isc[8], imn[8];
    for (int64_t b = 0; b < nb; b++, x += EM_QK_K, y++) {
        block_weights(imat ? imat + EM_QK_K * b : NULL, EM_QK_K, w);
        fit_k_affine(x, w, 8, 32, 31, 63, isc, imn, &y->d, &y->dmin, q);
        pack_k4_scales(isc, imn, y->scales);
        memset(y->qh, 0, sizeof y->qh);
        for (int k = 0; k < 4; k++) {
            for (int l = 0; l < 32; l++) {
                const int lo = q[64 * k + l], hi = q[64 * k + 32 + l];
                y->qs[32 * k + l] = (uint8_t)((lo & 15) | ((hi & 15) << 4));
                y->qh[l] |= (uint8_t)(((lo >> 4) << (2 * k)) | ((hi >> 4) << (2 * k + 1)));
            }
        }
    }
}

static void quant_q6_k(const float *x, em_block_q6_k *y, int64_t nb, const float *imat) {
    float w[EM_QK_K];
    int8_t isc[16];
    uint8_t q[EM_QK_K];
    for (int64_t b = 0; b < nb; b++, x += EM_QK_K, y++) {
        block_weights(imat ? imat + EM_QK_K * b : NULL, EM_QK_K, w);
        fit_k_symmetric(x, w, -32, 31, -128, 127, isc, &y->d, q);
        memcpy(y->scales, isc, sizeof y->scales);
        memset(y->qh, 0, sizeof y->qh);
        for (int h = 0; h < 2; h++) {
            for (int l = 0; l < 32; l++) {
                const uint8_t *p = q + 128 * h + l;
                y->ql[64 * h + l] = (uint8_t)((p[0] & 15) | ((p[64] & 15) << 4));
                y->ql[64 * h + 32 + l] = (uint8_t)((p[32] & 15) | ((p[96] & 15) << 4));
                y->qh[32 * h + l] = (uint8_t)((p[0] >> 4) | ((p[32] >> 4) << 2) |
                                              ((p[64] >> 4) << 4) | ((p[96] >> 4) << 6));
            }
        }
    }
}

/* Q8_K (activations): the element of largest magnitude maps to -127 (so
 * every level stays in [-127, 127]); bsums pre-add each group of 16 so
 * that the mins of Q2_K/Q4_K/Q5_K cost one multiply per group. */
static void quant_q8_k(const float *x, em_block_q8_k *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += EM_QK_K, y++) {
        const float vmax = max_magnitude(x, EM_QK_K);
        if (!(fabsf(vmax) > 0)) {
            y->d = 0;
            memset(y->qs, 0, sizeof y->qs);
            memset(y->bsums, 0, sizeof y->bsums);
            continue;
        }
        const float iscale = -127.0f / vmax;
        for (int j = 0; j < EM_QK_K; j++)
            y->qs[j] = (int8_t)clamp_int(round_int(iscale * x[j]), -127, 127);
        for (int g = 0; g < 16; g++) {
            int sum = 0;
            for (int i = 0; i < 16; i++) sum += y->qs[16 * g + i];
            y->bsums[g] = (int16_t)sum;
        }
        y->d = 1.0f / iscale;
    }
}

static void quant_iq4_xs(const float *x, em_block_iq4_xs *y, int64_t nb, const float *imat) {
    float w[EM_QK_K], sc[8], wsc[8];
    uint8_t idx[EM_QK_K];
    int8_t isc[8];
    for (int64_t b = 0; b < nb; b++, x += EM_QK_K, y++) {
        block_weights(imat ? imat + EM_QK_K * b : NULL, EM_QK_K, w);
        for (int g = 0; g < 8; g++) {
            sc[g] = fit_iq4(32, x + 32 * g, w + 32 * g, idx + 32 * g);
            float s = 0;
            for (int i = 0; i < 32; i++) {
                const float v = em_iq4nl_values[idx[32 * g + i]];
                s += w[32 * g + i] * v * v;
            }
            wsc[g] = s + 1e-30f;
        }
        fit_k_scales(sc, wsc, 8, -32, 31, isc, &y->d);
        const float d = em_fp16_to_fp32(y->d);
        y->scales_h = 0;
        memset(y->scales_l, 0, sizeof y->scales_l);
        for (int g = 0; g < 8; g++) {
            const int s6 = isc[g] + 32;
            y->scales_l[g / 2] |= (uint8_t)((s6 & 15) << (4 * (g & 1)));
            y->scales_h |= (uint16_t)((s6 >> 4) << (2 * g));
            const float ds = d * (float)isc[g];
            uint8_t *id = idx + 32 * g;
            if (ds != 0)
                for (int i = 0; i < 32; i++) id[i] = (uint8_t)iq4_nearest(x[32 * g + i] / ds);
            for (int j = 0; j < 16; j++) y->qs[16 * g + j] = (uint8_t)(id[j] | (id[j + 16] << 4));
        }
    }
}

/* ------------------------------------------------------------ entry */

em_status em_quantize_row(em_type t, const float *src, void *dst, int64_t n,
                          const float *imatrix) {
    const em_type_traits *tr = em_get_type_traits(t);
    if (!tr) return em_error(EM_ERR_INVALID_ARG, "quantize: unknown tensor type id %d", (int)t);
    if (!tr->can_quantize)
        return em_error(EM_ERR_UNSUPPORTED, "quantize: type %s is not supported", tr->name);
    if (n < 0 || n % tr->block_size != 0)
        return em_error(EM_ERR_INVALID_ARG,
                        "quantize: %lld elements is not a multiple of %s's block of %lld",
                        (long long)n, tr->name, (long long)tr->block_size);
    if (n == 0) return EM_OK;
    if (!src || !dst) return em_error(EM_ERR_INVALID_ARG, "quantize: NULL buffer");

    /* The activation formats are quantized on every token: SIMD kernels
     * (bit-identical to the code below) where the CPU has them. */
    if ((t == EM_TYPE_Q8_0 || t == EM_TYPE_Q8_1 || t == EM_TYPE_Q8_K) &&
        em_quantize_row_simd(t, src, dst, n))
        return EM_OK;
    const int64_t nb = n / tr->block_size;
    switch (t) {
    case EM_TYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    case EM_TYPE_F16: {
        uint16_t *y = dst;
        for (int64_t i = 0; i < n; i++) y[i] = em_fp32_to_fp16(src[i]);
        break;
    }
    case EM_TYPE_BF16: {
        uint16_t *y = dst;
        for (int64_t i = 0; i < n; i++) y[i] = em_fp32_to_bf16(src[i]);
        break;
    }
    case EM_TYPE_Q4_0:
    case EM_TYPE_Q4_1:
    case EM_TYPE_Q5_0:
    case EM_TYPE_Q5_1: quant_q32(t, src, dst, nb, imatrix); break;
    case EM_TYPE_Q8_0: quant_q8_0(src, dst, nb); break;
    case EM_TYPE_Q8_1: quant_q8_1(src, dst, nb); break;
    case EM_TYPE_Q2_K: quant_q2_k(src, dst, nb, imatrix); break;
    case EM_TYPE_Q3_K: quant_q3_k(src, dst, nb, imatrix); break;
    case EM_TYPE_Q4_K: quant_q4_k(src, dst, nb, imatrix); break;
    case EM_TYPE_Q5_K: quant_q5_k(src, dst, nb, imatrix); break;
    case EM_TYPE_Q6_K: quant_q6_k(src, dst, nb, imatrix); break;
    case EM_TYPE_Q8_K: quant_q8_k(src, dst, nb); break;
    case EM_TYPE_IQ4_NL: quant_iq4_nl(src, dst, nb, imatrix); break;
    case EM_TYPE_IQ4_XS: quant_iq4_xs(src, dst, nb, imatrix); break;
    default:
        return em_error(EM_ERR_INTERNAL, "quantize: no routine for %s", tr->name);
    }
    return EM_OK;
}
