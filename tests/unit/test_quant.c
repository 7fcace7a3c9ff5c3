/*
 * test_quant.c - tensor formats: half-precision conversion, the layout of
 * every block format, quantize/dequantize round trips, dequantization of
 * real llama.cpp-quantized files, and the dot-product kernels.
 *
 * Sections:
 *   1. fp16 / bf16 conversion (exhaustive over all halves)
 *   2. block layouts: random blocks dequantized element by element from
 *      the format definitions, independently of src/quant
 *   3. round trips on Gaussian data under per-type error bounds, with and
 *      without an importance matrix, plus degenerate rows
 *   4. em_vec_dot_generic and em_vec_dot against float dots, once per
 *      kernel set this CPU runs (generic, avx2, avx512, arm)
 *   4b. every SIMD kernel against its scalar twin, per kernel set: random
 *      and extreme blocks, bit-exact cases, odd lengths; and the SIMD
 *      activation quantizers byte for byte against the scalar ones
 *   5. traits, row sizes and bad arguments
 *   6. real files (needs EMBER_TEST_DATA): every tensor of every
 *      tiny-256-TYPE.gguf against tiny-256-f32.gguf, re-quantization, and
 *      the dot kernels (every kernel set) and the activation quantizers
 *      on real rows
 */
#include "gguf/gguf.h"
#include "quant/blocks.h"
#include "quant/dot.h"
#include "quant/quant.h"
#include "test.h"

#include <stdint.h>

/* ------------------------------------------------------------ helpers */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng_next(void) {
    /* splitmix64: small, fixed, good enough for test data. */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_uniform(void) { /* (0, 1) */
    return ((double)(rng_next() >> 11) + 0.5) / 9007199254740992.0;
}

static float rng_gauss(void) {
    const double u = rng_uniform(), v = rng_uniform();
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static void fill_gauss(float *x, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) x[i] = scale * rng_gauss();
}

/* RMS of (y - x) divided by RMS of x. */
static double rel_rmse(const float *x, const float *y, int64_t n) {
    double e = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        const double d = (double)y[i] - x[i];
        e += d * d;
        s += (double)x[i] * x[i];
    }
    return s > 0 ? sqrt(e / s) : sqrt(e);
}

/* The same with per-element weights (importance). */
static double weighted_rel_rmse(const float *x, const float *y, const float *w, int64_t n) {
    double e = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        const double d = (double)y[i] - x[i];
        e += w[i] * d * d;
        s += w[i] * (double)x[i] * x[i];
    }
    return sqrt(e / s);
}

static bool same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* Types ember quantizes weights into, with the round-trip bound on
 * Gaussian data (relative RMSE).  Each bound sits about 25% above what the
 * quantizer achieves, and well below what a naive max-abs rounding or a
 * broken layout would give. */
typedef struct {
    em_type type;
    double bound;
} type_bound;

static const type_bound quant_bounds[] = {
    {EM_TYPE_F16, 0.0004},  {EM_TYPE_BF16, 0.003},  {EM_TYPE_Q8_0, 0.006},
    {EM_TYPE_Q8_1, 0.006},  {EM_TYPE_Q8_K, 0.009},  {EM_TYPE_Q6_K, 0.02},
    {EM_TYPE_Q5_0, 0.05},   {EM_TYPE_Q5_1, 0.05},   {EM_TYPE_Q5_K, 0.04},
    {EM_TYPE_Q4_0, 0.10},   {EM_TYPE_Q4_1, 0.10},   {EM_TYPE_Q4_K, 0.08},
    {EM_TYPE_IQ4_NL, 0.09}, {EM_TYPE_IQ4_XS, 0.09}, {EM_TYPE_Q3_K, 0.18},
    {EM_TYPE_Q2_K, 0.33},
};
#define N_QUANT_BOUNDS (sizeof quant_bounds / sizeof quant_bounds[0])

static double bound_of(em_type t) {
    if (t == EM_TYPE_F32) return 0.0;
    for (size_t i = 0; i < N_QUANT_BOUNDS; i++)
        if (quant_bounds[i].type == t) return quant_bounds[i].bound;
    return -1;
}

/* Weight types with a dot kernel, i.e. everything ember reads as weights. */
static const em_type dot_types[] = {
    EM_TYPE_F32,  EM_TYPE_F16,  EM_TYPE_BF16, EM_TYPE_Q4_0, EM_TYPE_Q4_1,
    EM_TYPE_Q5_0, EM_TYPE_Q5_1, EM_TYPE_Q8_0, EM_TYPE_Q2_K, EM_TYPE_Q3_K,
    EM_TYPE_Q4_K, EM_TYPE_Q5_K, EM_TYPE_Q6_K, EM_TYPE_IQ4_NL, EM_TYPE_IQ4_XS,
};
#define N_DOT_TYPES (sizeof dot_types / sizeof dot_types[0])

/* ------------------------------------------------- 1. fp16 and bf16 */

static void test_half_conversion(void) {
    /* Every non-NaN half survives a trip through float. */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = em_fp16_to_fp32((uint16_t)h);
        const bool is_nan = ((h >> 10) & 31) == 31 && (h & 1023);
        if (is_nan) {
            if (!isnan(f) || !isnan(em_fp16_to_fp32(em_fp32_to_fp16(f)))) bad++;
        } else if (em_fp32_to_fp16(f) != h) {
            bad++;
        }
    }
    CHECK_MSG(bad == 0, "%d halves did not round-trip", bad);

    /* Halfway between two neighbouring finite halves rounds to the even
     * one; a hair either side rounds to the nearer one. */
    bad = 0;
    for (uint32_t h = 0; h < 0x7bff; h++) {
        const float a = em_fp16_to_fp32((uint16_t)h), b = em_fp16_to_fp32((uint16_t)(h + 1));
        const float mid = a + (b - a) * 0.5f; /* exact: one more bit than a half */
        const uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        if (em_fp32_to_fp16(mid) != even) bad++;
        if (em_fp32_to_fp16(nextafterf(mid, 0.0f)) != h) bad++;
        if (em_fp32_to_fp16(nextafterf(mid, 1e9f)) != h + 1) bad++;
        if (em_fp32_to_fp16(-mid) != (even | 0x8000)) bad++;
    }
    CHECK_MSG(bad == 0, "%d rounding cases wrong", bad);

    CHECK(em_fp32_to_fp16(1.0f) == 0x3c00);
    CHECK(em_fp32_to_fp16(-2.0f) == 0xc000);
    CHECK(em_fp32_to_fp16(65504.0f) == 0x7bff);
    CHECK(em_fp32_to_fp16(65520.0f) == 0x7c00); /* rounds up to infinity */
    CHECK(em_fp32_to_fp16(1e10f) == 0x7c00);
    CHECK(em_fp32_to_fp16(-INFINITY) == 0xfc00);
    CHECK(em_fp32_to_fp16(5.9604645e-8f) == 0x0001); /* smallest subnormal */
    CHECK(em_fp32_to_fp16(2.9802322e-8f) == 0x0000); /* half of it: ties to even */
    CHECK(em_fp32_to_fp16(3.0e-8f) == 0x0001);
    CHECK(em_fp16_to_fp32(0x3555) == 0.333251953125f);
    CHECK(em_fp16_to_fp32(0x8000) == 0.0f && signbit(em_fp16_to_fp32(0x8000)));

    /* bf16: exact for the top 16 bits, nearest-even rounding otherwise. */
    bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = em_bf16_to_fp32((uint16_t)h);
        if (isnan(f)) {
            if (!isnan(em_bf16_to_fp32(em_fp32_to_bf16(f)))) bad++;
            continue;
        }
        if (em_fp32_to_bf16(f) != h) bad++;
    }
    CHECK_MSG(bad == 0, "%d bf16 values did not round-trip", bad);
    CHECK(em_fp32_to_bf16(1.0f) == 0x3f80);
    CHECK(em_fp32_to_bf16(1.00390625f) == 0x3f80);  /* tie, even stays */
    CHECK(em_fp32_to_bf16(1.01171875f) == 0x3f82);  /* tie, odd rounds up */
    CHECK(em_fp32_to_bf16(nextafterf(1.00390625f, 2.0f)) == 0x3f81); /* above the tie */
    CHECK(isnan(em_bf16_to_fp32(em_fp32_to_bf16(NAN))));
}

/* --------------------------------------------------- 2. block layouts */

/* A random finite half in a modest range, so products stay exact enough
 * to compare bit for bit. */
static uint16_t rand_half(void) {
    return em_fp32_to_fp16((float)(rng_uniform() * 2.0 - 1.0) * 0.01f);
}

static void rand_bytes(void *p, size_t n) {
    uint8_t *b = p;
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)rng_next();
}

/* Bit b of a little-endian byte array. */
static int bit_at(const uint8_t *p, int b) { return (p[b / 8] >> (b % 8)) & 1; }

/* Sets the fp16 scale fields of one weight block (offsets per layout):
 * h1 is d, h2 the second scale (m or dmin) where the layout has one. */
static void set_block_scales(em_type t, uint8_t *blk, uint16_t h1, uint16_t h2) {
    switch (t) {
    case EM_TYPE_Q2_K: memcpy(blk + 80, &h1, 2); memcpy(blk + 82, &h2, 2); break;
    case EM_TYPE_Q3_K: memcpy(blk + 108, &h1, 2); break;
    case EM_TYPE_Q6_K: memcpy(blk + 208, &h1, 2); break;
    case EM_TYPE_Q4_1: case EM_TYPE_Q5_1: case EM_TYPE_Q4_K: case EM_TYPE_Q5_K:
        memcpy(blk, &h1, 2); memcpy(blk + 2, &h2, 2); break;
    default: memcpy(blk, &h1, 2); break;
    }
}

/*
 * Element e of one block, recomputed here straight from the definition in
 * blocks.h (one function per format), using the same float operations as
 * the library, so that the two must agree bit for bit.
 */

/* The 4-bit quant e of a 32-element block: low nibbles hold elements
 * 0-15, high nibbles 16-31. */
static int nibble32(const uint8_t *qs, int e) { return e < 16 ? qs[e] & 15 : qs[e - 16] >> 4; }

static float elem_q4_0(const void *p, int e) {
    const em_block_q4_0 *b = p;
    return (float)(nibble32(b->qs, e) - 8) * em_fp16_to_fp32(b->d);
}

static float elem_q4_1(const void *p, int e) {
    const em_block_q4_1 *b = p;
    return (float)nibble32(b->qs, e) * em_fp16_to_fp32(b->d) + em_fp16_to_fp32(b->m);
}

static float elem_q5_0(const void *p, int e) {
    const em_block_q5_0 *b = p;
    const int q = nibble32(b->qs, e) + 16 * bit_at(b->qh, e);
    return (float)(q - 16) * em_fp16_to_fp32(b->d);
}

static float elem_q5_1(const void *p, int e) {
    const em_block_q5_1 *b = p;
    const int q = nibble32(b->qs, e) + 16 * bit_at(b->qh, e);
    return (float)q * em_fp16_to_fp32(b->d) + em_fp16_to_fp32(b->m);
}

static float elem_q8_0(const void *p, int e) {
    const em_block_q8_0 *b = p;
    return (float)b->qs[e] * em_fp16_to_fp32(b->d);
}

static float elem_iq4_nl(const void *p, int e) {
    const em_block_iq4_nl *b = p;
    return em_fp16_to_fp32(b->d) * (float)em_iq4nl_values[nibble32(b->qs, e)];
}

static float elem_q2_k(const void *p, int e) {
    const em_block_q2_k *b = p;
    const int h = e / 128, k = (e / 32) % 4, l = e % 32, g = e / 16;
    const int q = (b->qs[32 * h + l] >> (2 * k)) & 3;
    const float dl = em_fp16_to_fp32(b->d) * (float)(b->scales[g] & 15);
    const float ml = em_fp16_to_fp32(b->dmin) * (float)(b->scales[g] >> 4);
    return dl * (float)q - ml;
}

static float elem_q3_k(const void *p, int e) {
    const em_block_q3_k *b = p;
    const int h = e / 128, k = (e / 32) % 4, l = e % 32, g = e / 16;
    const int q = ((b->qs[32 * h + l] >> (2 * k)) & 3) + 4 * ((b->hmask[l] >> (e / 32)) & 1);
    /* The 6-bit scale as the sixteen 6-bit fields of a 96-bit word would
     * be laid out: low nibbles in bytes 0..7, high pairs in bytes 8..11. */
    const int lo4 = g < 8 ? b->scales[g] & 15 : b->scales[g - 8] >> 4;
    const int hi2 = (b->scales[8 + g % 4] >> (2 * (g / 4))) & 3;
    const float dl = em_fp16_to_fp32(b->d) * (float)((lo4 | hi2 << 4) - 32);
    return dl * (float)(q - 4);
}

/* Q4_K and Q5_K share their scales, mins and low nibbles; qh holds Q5_K's
 * fifth bits (NULL for Q4_K). */
static float elem_k4(const uint8_t *sc, const uint8_t *qs, const uint8_t *qh, uint16_t dh,
                     uint16_t mh, int e) {
    const int g = e / 32, k = e / 64, l = e % 32;
    int q = (e % 64) < 32 ? qs[32 * k + l] & 15 : qs[32 * k + l] >> 4;
    if (qh) q += 16 * ((qh[l] >> g) & 1);
    /* Scales 0-3 / mins 0-3 are the low 6 bits of bytes 0-3 / 4-7;
     * scales and mins 4-7 take nibbles of bytes 8-11 and the top 2 bits
     * of bytes 0-3 / 4-7. */
    int s, m;
    if (g < 4) {
        s = sc[g] & 63;
        m = sc[g + 4] & 63;
    } else {
        s = (sc[g + 4] & 15) | (sc[g - 4] >> 6) << 4;
        m = (sc[g + 4] >> 4) | (sc[g] >> 6) << 4;
    }
    const float dl = em_fp16_to_fp32(dh) * (float)s;
    const float ml = em_fp16_to_fp32(mh) * (float)m;
    return dl * (float)q - ml;
}

static float elem_q4_k(const void *p, int e) {
    const em_block_q4_k *b = p;
    return elem_k4(b->scales, b->qs, NULL, b->d, b->dmin, e);
}

static float elem_q5_k(const void *p, int e) {
    const em_block_q5_k *b = p;
    return elem_k4(b->scales, b->qs, b->qh, b->d, b->dmin, e);
}

static float elem_q6_k(const void *p, int e) {
    const em_block_q6_k *b = p;
    const int h = e / 128, k = (e / 32) % 4, l = e % 32;
    const uint8_t byte = b->ql[64 * h + 32 * (k % 2) + l];
    const int lo = k < 2 ? byte & 15 : byte >> 4;
    const int hi = (b->qh[32 * h + l] >> (2 * k)) & 3;
    return em_fp16_to_fp32(b->d) * (float)b->scales[e / 16] * (float)((lo | hi << 4) - 32);
}

static float elem_iq4_xs(const void *p, int e) {
    const em_block_iq4_xs *b = p;
    const int g = e / 32, j = e % 32;
    const uint8_t byte = b->qs[16 * g + j % 16];
    const int q = j < 16 ? byte & 15 : byte >> 4;
    const int ls = ((b->scales_l[g / 2] >> (4 * (g % 2))) & 15) | ((b->scales_h >> (2 * g)) & 3) << 4;
    return em_fp16_to_fp32(b->d) * (float)(ls - 32) * (float)em_iq4nl_values[q];
}

static const struct {
    em_type type;
    float (*elem)(const void *block, int e);
} layout_cases[] = {
    {EM_TYPE_Q4_0, elem_q4_0}, {EM_TYPE_Q4_1, elem_q4_1}, {EM_TYPE_Q5_0, elem_q5_0},
    {EM_TYPE_Q5_1, elem_q5_1}, {EM_TYPE_Q8_0, elem_q8_0}, {EM_TYPE_IQ4_NL, elem_iq4_nl},
    {EM_TYPE_Q2_K, elem_q2_k}, {EM_TYPE_Q3_K, elem_q3_k}, {EM_TYPE_Q4_K, elem_q4_k},
    {EM_TYPE_Q5_K, elem_q5_k}, {EM_TYPE_Q6_K, elem_q6_k}, {EM_TYPE_IQ4_XS, elem_iq4_xs},
};

/*
 * For each format: fill blocks with random bytes (scales made finite),
 * dequantize with the library, and compare every element with the one
 * recomputed from the definition.
 */
static void test_layouts(void) {
    enum { NB = 4 };
    float y[NB * 256];
    int bad;

    for (size_t c = 0; c < sizeof layout_cases / sizeof layout_cases[0]; c++) {
        const em_type t = layout_cases[c].type;
        const em_type_traits *tr = em_get_type_traits(t);
        const int bs = (int)tr->block_size;
        _Alignas(16) uint8_t blocks[NB * 256];
        CHECK(NB * tr->type_size <= sizeof blocks);
        if (NB * tr->type_size > sizeof blocks) continue;
        rand_bytes(blocks, NB * tr->type_size);
        for (int i = 0; i < NB; i++) {
            const uint16_t h1 = rand_half(), h2 = rand_half();
            set_block_scales(t, blocks + i * tr->type_size, h1, h2);
        }
        CHECK_OK(em_dequantize_row(t, blocks, y, NB * bs));
        bad = 0;
        for (int i = 0; i < NB; i++) {
            const uint8_t *blk = blocks + i * tr->type_size;
            for (int e = 0; e < bs; e++)
                if (!same_bits(y[bs * i + e], layout_cases[c].elem(blk, e))) bad++;
        }
        CHECK_MSG(bad == 0, "%s layout: %d wrong", em_type_name(t), bad);
    }
    { /* Q8_K and its bsums, via the activation quantizer */
        float x[512];
        em_block_q8_k b[2];
        fill_gauss(x, 512, 3.0f);
        CHECK_OK(em_quantize_row(EM_TYPE_Q8_K, x, b, 512, NULL));
        CHECK_OK(em_dequantize_row(EM_TYPE_Q8_K, b, y, 512));
        bad = 0;
        for (int i = 0; i < 2; i++) {
            for (int g = 0; g < 16; g++) {
                int s = 0;
                for (int l = 0; l < 16; l++) s += b[i].qs[16 * g + l];
                if (s != b[i].bsums[g]) bad++;
            }
            for (int e = 0; e < 256; e++)
                if (!same_bits(y[256 * i + e], b[i].d * (float)b[i].qs[e])) bad++;
        }
        CHECK_MSG(bad == 0, "Q8_K layout/bsums: %d wrong", bad);
    }
    { /* Q8_1's s = d * sum(qs) */
        float x[64];
        em_block_q8_1 b[2];
        fill_gauss(x, 64, 1.0f);
        CHECK_OK(em_quantize_row(EM_TYPE_Q8_1, x, b, 64, NULL));
        for (int i = 0; i < 2; i++) {
            int s = 0;
            for (int j = 0; j < 32; j++) s += b[i].qs[j];
            const float want = (float)s * em_fp16_to_fp32(b[i].d);
            CHECK_MSG(fabsf(em_fp16_to_fp32(b[i].s) - want) <= 1e-3f * fabsf(want) + 1e-6f,
                      "Q8_1 s=%g want %g", em_fp16_to_fp32(b[i].s), want);
        }
    }
}

/* ------------------------------------------------------ 3. round trips */

static void test_round_trips(void) {
    enum { N = 256 * 64 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y), *imat = malloc(N * sizeof *imat);
    void *q = malloc(N * 4);
    fill_gauss(x, N, 0.5f);
    /* An importance matrix that varies a lot between columns. */
    for (int i = 0; i < N; i++) {
        const double g = rng_gauss();
        imat[i] = (float)(g * g * g * g + 0.01);
    }

    for (size_t k = 0; k < N_QUANT_BOUNDS; k++) {
        const em_type t = quant_bounds[k].type;
        CHECK_OK(em_quantize_row(t, x, q, N, NULL));
        CHECK_OK(em_dequantize_row(t, q, y, N));
        const double err = rel_rmse(x, y, N);
        printf("  round trip %-7s rel RMSE %.5f (bound %.4f)\n", em_type_name(t), err,
               quant_bounds[k].bound);
        CHECK_MSG(err < quant_bounds[k].bound, "%s: rel RMSE %.5f >= %.4f", em_type_name(t), err,
                  quant_bounds[k].bound);

        if (!em_get_type_traits(t)->is_quantized || t == EM_TYPE_Q8_0 || t == EM_TYPE_Q8_1 ||
            t == EM_TYPE_Q8_K)
            continue;
        /* With the importance matrix the error it weights must fall. */
        const double plain = weighted_rel_rmse(x, y, imat, N);
        CHECK_OK(em_quantize_row(t, x, q, N, imat));
        CHECK_OK(em_dequantize_row(t, q, y, N));
        const double weighted = weighted_rel_rmse(x, y, imat, N);
        CHECK_MSG(weighted < 0.95 * plain, "%s: imatrix did not help (%.5f vs %.5f)",
                  em_type_name(t), weighted, plain);
        CHECK_MSG(rel_rmse(x, y, N) < 2.0 * quant_bounds[k].bound, "%s: imatrix rel RMSE %.5f",
                  em_type_name(t), rel_rmse(x, y, N));
    }

    /* Degenerate rows: zeros stay zeros; constants and a lone outlier give
     * finite values; tiny and huge magnitudes scale along. */
    for (size_t k = 0; k < N_QUANT_BOUNDS; k++) {
        const em_type t = quant_bounds[k].type;
        const int n = 512;
        float z[512];
        memset(z, 0, sizeof z);
        CHECK_OK(em_quantize_row(t, z, q, n, NULL));
        CHECK_OK(em_dequantize_row(t, q, y, n));
        int nonzero = 0, nonfinite = 0;
        for (int i = 0; i < n; i++) nonzero += y[i] != 0;
        CHECK_MSG(nonzero == 0, "%s: zeros came back nonzero", em_type_name(t));

        for (int i = 0; i < n; i++) z[i] = 0.75f;
        CHECK_OK(em_quantize_row(t, z, q, n, NULL));
        CHECK_OK(em_dequantize_row(t, q, y, n));
        CHECK_MSG(rel_rmse(z, y, n) < 0.02 + quant_bounds[k].bound, "%s: constant row err %.4f",
                  em_type_name(t), rel_rmse(z, y, n));

        for (int i = 0; i < n; i++) z[i] = i == 77 ? 1000.0f : 0.001f * (float)(i % 7);
        CHECK_OK(em_quantize_row(t, z, q, n, NULL));
        CHECK_OK(em_dequantize_row(t, q, y, n));
        for (int i = 0; i < n; i++) nonfinite += !isfinite(y[i]);
        CHECK_MSG(nonfinite == 0, "%s: outlier row gave non-finite values", em_type_name(t));
        CHECK_MSG(fabsf(y[77] - 1000.0f) < 1000.0f * 4 * (float)quant_bounds[k].bound,
                  "%s: outlier came back as %g", em_type_name(t), y[77]);

        /* Standard deviations 0.02 (typical of weights; the fp16 scales
         * of the K-quants are then subnormal) and 200. */
        for (float scale = 0.04f; scale < 500.0f; scale *= 1e4f) {
            for (int i = 0; i < n; i++) z[i] = scale * x[i];
            CHECK_OK(em_quantize_row(t, z, q, n, NULL));
            CHECK_OK(em_dequantize_row(t, q, y, n));
            const double e = rel_rmse(z, y, n);
            CHECK_MSG(e < 1.5 * quant_bounds[k].bound, "%s: scale %g err %.4f", em_type_name(t),
                      scale, e);
        }
    }
    free(x);
    free(y);
    free(imat);
    free(q);
}

/* -------------------------------------------------------- 4. dot kernels */

/* Dequantized weight . dequantized activation, in double. */
static double float_dot(const float *a, const float *b, int64_t n, double *mag) {
    double s = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        s += (double)a[i] * b[i];
        m += fabs((double)a[i] * b[i]);
    }
    *mag = m;
    return s;
}

/*
 * Checks one weight row: the generic kernel must equal the float dot of
 * the dequantized operands up to float rounding (the integer parts are
 * exact; only the per-block scale products and the float accumulation
 * round), and the dispatched kernel must agree with the generic one.
 */
static void check_dot_row(em_type t, const void *wq, const float *act, int64_t n,
                          const char *what) {
    const em_type vt = em_get_type_traits(t)->vec_dot_type;
    float *wf = malloc((size_t)n * sizeof *wf), *af = malloc((size_t)n * sizeof *af);
    void *aq = malloc(em_row_size(vt, n) + 1);
    CHECK_OK(em_quantize_row(vt, act, aq, n, NULL));
    CHECK_OK(em_dequantize_row(t, wq, wf, n));
    CHECK_OK(em_dequantize_row(vt, aq, af, n));
    double mag;
    const double ref = float_dot(wf, af, n, &mag);
    const float gen = em_vec_dot_generic(t, n, wq, aq);
    const float fast = em_vec_dot(t, n, wq, aq);
    /* Q4_1/Q5_1 fold m * s with s rounded to fp16, which costs up to
     * 2^-11 of the sum of |m a| per block. */
    const double tol = (t == EM_TYPE_Q4_1 || t == EM_TYPE_Q5_1 ? 2e-3 : 2e-5) * mag + 1e-30;
    CHECK_MSG(fabs(gen - ref) <= tol, "%s %s: generic dot %.8g vs float %.8g (tol %.3g)", what,
              em_type_name(t), gen, ref, tol);
    CHECK_MSG(fabs(fast - gen) <= 2e-5 * mag + 1e-30, "%s %s: em_vec_dot %.8g vs generic %.8g",
              what, em_type_name(t), fast, gen);
    free(wf);
    free(af);
    free(aq);
}

/* want: the kernel set that must be active (NULL: not checked). */
static void test_dots(const char *want) {
    enum { N = 256 * 8 };
    float *w = malloc(N * sizeof *w), *a = malloc(N * sizeof *a);
    void *wq = malloc(N * 4);
    printf("  em_vec_dot kernels: %s\n", em_vec_dot_isa());
    /* Make sure the SIMD kernels really are what gets compared below. */
    if (want)
        CHECK_MSG(strcmp(em_vec_dot_isa(), want) == 0, "kernels %s, expected %s",
                  em_vec_dot_isa(), want);
    for (int rep = 0; rep < 3; rep++) {
        fill_gauss(w, N, 0.1f);
        fill_gauss(a, N, rep == 2 ? 30.0f : 1.0f);
        if (rep == 1)
            for (int i = 0; i < N; i += 37) a[i] *= 20.0f; /* outliers in the activation */
        for (size_t k = 0; k < N_DOT_TYPES; k++) {
            const em_type t = dot_types[k];
            CHECK_OK(em_quantize_row(t, w, wq, N, NULL));
            check_dot_row(t, wq, a, N, "gaussian");
            /* Shorter rows (one block) exercise the tails of SIMD loops. */
            const int64_t bs = em_get_type_traits(t)->block_size;
            const int64_t n1 = bs == 1 ? 7 : bs;
            check_dot_row(t, wq, a, n1, "one-block");
            /* Float rows that use every loop of a SIMD kernel and a tail. */
            if (bs == 1) check_dot_row(t, wq, a, 32 + 8 + 5, "odd-length");
        }
    }
    /* Random bytes as weights (every bit pattern of the quants and
     * scales, scales kept finite) for the quantized formats. */
    for (size_t k = 0; k < N_DOT_TYPES; k++) {
        const em_type t = dot_types[k];
        const em_type_traits *tr = em_get_type_traits(t);
        if (!tr->is_quantized) continue;
        const size_t rs = em_row_size(t, N);
        rand_bytes(wq, rs);
        for (size_t off = 0; off < rs; off += tr->type_size) {
            uint8_t *blk = (uint8_t *)wq + off;
            const uint16_t h1 = rand_half(), h2 = rand_half();
            set_block_scales(t, blk, h1, h2);
        }
        fill_gauss(a, N, 1.0f);
        check_dot_row(t, wq, a, N, "random-bytes");
    }
    /* Unknown or unsupported types give 0 and no crash. */
    CHECK(em_vec_dot_generic((em_type)4, 32, wq, a) == 0.0f);
    CHECK(em_vec_dot((em_type)99, 32, wq, a) == 0.0f);
    CHECK(em_vec_dot((em_type)-1, 32, wq, a) == 0.0f);
    CHECK(em_vec_dot(EM_TYPE_IQ2_XXS, 256, wq, a) == 0.0f);
    CHECK(em_vec_dot(EM_TYPE_Q4_0, 33, wq, a) == 0.0f);
    free(w);
    free(a);
    free(wq);
}

/* ------------------------------- 4b. SIMD kernels against scalar twins */

/* The SIMD kernel sets this CPU runs (those em_kernels_select accepts),
 * and the set the dispatcher picked by itself. */
static const char *simd_sets[4];
static int n_simd_sets;
static const char *default_set;

/* The set the dispatcher should pick by itself, judged with the
 * compiler's own CPU check (independent of src/core/cpu.c); NULL where this
 * test cannot tell (not x86). */
static const char *expected_default_set(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    const char *force = getenv("EMBER_CPU");
    if (force && strcmp(force, "generic") == 0) return "generic";
    if (force && strcmp(force, "avx2") == 0 && avx2) return "avx2";
    return avx512 ? "avx512" : avx2 ? "avx2" : "generic";
#else
    return NULL;
#endif
}

static void find_simd_sets(void) {
    default_set = em_vec_dot_isa();
    const char *want = expected_default_set();
    if (want)
        CHECK_MSG(strcmp(default_set, want) == 0, "default kernels %s, expected %s", default_set,
                  want);
    static const char *const names[] = {"avx2", "avx512", "neon"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (em_kernels_select(names[i]) == 0) simd_sets[n_simd_sets++] = names[i];
#if defined(__x86_64__) && defined(__GNUC__)
    /* Every set the CPU supports must be selectable (F16C, which clang's
     * builtin cannot name, came before AVX2 in every CPU line). */
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    bool got2 = false, got512 = false;
    for (int i = 0; i < n_simd_sets; i++) {
        got2 |= strcmp(simd_sets[i], "avx2") == 0;
        got512 |= strcmp(simd_sets[i], "avx512") == 0;
    }
    CHECK_MSG(got2 == avx2 && got512 == avx512, "avx2 %d/%d avx512 %d/%d selectable/supported",
              got2, avx2, got512, avx512);
#endif
    CHECK(em_kernels_select("no-such-set") == -1);
    CHECK(em_kernels_select("generic") == 0);
    CHECK(strcmp(em_vec_dot_isa(), "generic") == 0);
    CHECK(em_kernels_select(default_set) == 0);
    CHECK(strcmp(em_vec_dot_isa(), default_set) == 0);
    printf("  kernel sets:");
    for (int i = 0; i < n_simd_sets; i++) printf(" %s", simd_sets[i]);
    printf(" (default %s)\n", default_set);
}

/* A random finite half anywhere in the fp16 range, subnormals included. */
static uint16_t wide_half(void) {
    uint16_t h = (uint16_t)rng_next();
    if (((h >> 10) & 31) == 31) h = (uint16_t)(h & ~0x4000); /* no inf/NaN */
    return h;
}

/* +-2^k for k in -2..2: products of these with small integers are exact. */
static float pow2_scale(void) {
    const uint64_t r = rng_next();
    return ldexpf((r & 8) ? -1.0f : 1.0f, (int)(r % 5) - 2);
}

/* Scale kinds of the test rows: small, anywhere in range, exact (powers
 * of two with small quants, so that every kernel's result is exact). */
enum { SCALE_SMALL, SCALE_WIDE, SCALE_EXACT };

static uint16_t test_half(int kind) {
    return kind == SCALE_SMALL ? rand_half()
           : kind == SCALE_WIDE ? wide_half()
                                : em_fp32_to_fp16(pow2_scale());
}

/*
 * A weight row of n elements of type t.  Quantized types: every byte is
 * `pattern` (random when pattern < 0), then the scale fields are set.
 * Float types: small integers (exact), or Gaussian values times 1e-20, 1
 * or 1e20 by pattern.
 */
static void make_weight_row(em_type t, void *w, int64_t n, int pattern, int kind) {
    const em_type_traits *tr = em_get_type_traits(t);
    if (!tr->is_quantized) {
        const float mag = pattern < 0 ? 1.0f : (pattern & 1) ? 1e-20f : 1e20f;
        for (int64_t i = 0; i < n; i++) {
            const float v = kind == SCALE_EXACT ? (float)((int)(rng_next() % 17) - 8)
                                                : rng_gauss() * mag;
            if (t == EM_TYPE_F32) ((float *)w)[i] = v;
            if (t == EM_TYPE_BF16) ((uint16_t *)w)[i] = em_fp32_to_bf16(v);
            /* F16 has no 1e20: any finite half instead. */
            if (t == EM_TYPE_F16)
                ((uint16_t *)w)[i] = kind == SCALE_EXACT || pattern < 0
                                         ? em_fp32_to_fp16(kind == SCALE_EXACT ? v : rng_gauss())
                                         : wide_half();
        }
        return;
    }
    const size_t rs = em_row_size(t, n);
    if (pattern < 0) rand_bytes(w, rs);
    else memset(w, pattern, rs);
    for (size_t off = 0; off < rs; off += tr->type_size)
        set_block_scales(t, (uint8_t *)w + off, test_half(kind), test_half(kind));
}

/*
 * An activation row of type vt (a vec_dot_type) built directly, not
 * through the quantizer, so that it can hold the extremes: quants drawn
 * from [-qmax, qmax], with whole blocks at +qmax or -qmax now and then,
 * and consistent block sums (Q8_1's s, Q8_K's bsums).
 */
static void make_act_row(em_type vt, void *a, int64_t n, int qmax, int kind) {
    if (vt == EM_TYPE_F32) {
        float *f = a;
        for (int64_t i = 0; i < n; i++)
            f[i] = kind == SCALE_EXACT ? (float)((int)(rng_next() % 9) - 4) : rng_gauss();
        return;
    }
    const int64_t bs = em_get_type_traits(vt)->block_size, nb = n / bs;
    int8_t q[256];
    for (int64_t b = 0; b < nb; b++) {
        const int mode = (int)(rng_next() % 6);
        int sum = 0;
        for (int j = 0; j < bs; j++) {
            int v = (int)(rng_next() % (uint64_t)(2 * qmax + 1)) - qmax;
            if (mode == 0) v = qmax;
            if (mode == 1) v = -qmax;
            if (mode == 2) v = (j & 1) ? qmax : -qmax;
            q[j] = (int8_t)v;
            sum += v;
        }
        if (vt == EM_TYPE_Q8_0) {
            em_block_q8_0 *y = (em_block_q8_0 *)a + b;
            y->d = test_half(kind);
            memcpy(y->qs, q, 32);
        } else if (vt == EM_TYPE_Q8_1) {
            em_block_q8_1 *y = (em_block_q8_1 *)a + b;
            y->d = test_half(kind);
            /* Saturated as the quantizer does, so that wide scales stay finite. */
            y->s = em_fp32_to_fp16(fmaxf(-65504.0f, fminf(65504.0f, (float)sum * em_fp16_to_fp32(y->d))));
            memcpy(y->qs, q, 32);
        } else {
            em_block_q8_k *y = (em_block_q8_k *)a + b;
            y->d = kind == SCALE_EXACT ? pow2_scale() : em_fp16_to_fp32(test_half(kind));
            memcpy(y->qs, q, 256);
            for (int g = 0; g < 16; g++) {
                int gs = 0;
                for (int l = 0; l < 16; l++) gs += q[16 * g + l];
                y->bsums[g] = (int16_t)gs;
            }
        }
    }
}

/* The dispatched kernel of the current set against the scalar one:
 * bit-exact where the data makes every step exact, else within float
 * rounding of the sum of |w a|. */
static void compare_to_generic(em_type t, const void *w, const void *a, int64_t n, bool exact,
                               const char *what) {
    const em_type vt = em_get_type_traits(t)->vec_dot_type;
    const float gen = em_vec_dot_generic(t, n, w, a), fast = em_vec_dot(t, n, w, a);
    if (exact) {
        CHECK_MSG(fast == gen, "%s %s %s n=%lld: %.9g vs generic %.9g", em_vec_dot_isa(),
                  em_type_name(t), what, (long long)n, fast, gen);
        return;
    }
    float *wf = malloc((size_t)n * sizeof *wf), *af = malloc((size_t)n * sizeof *af);
    CHECK_OK(em_dequantize_row(t, w, wf, n));
    CHECK_OK(em_dequantize_row(vt, a, af, n));
    double mag = 0;
    for (int64_t i = 0; i < n; i++) mag += fabs((double)wf[i] * af[i]);
    /* Q4_1/Q5_1 add m * s per block, outside the sum of |w a|. */
    if (t == EM_TYPE_Q4_1 || t == EM_TYPE_Q5_1) {
        const size_t ws = em_get_type_traits(t)->type_size;
        for (int64_t b = 0; b < n / 32; b++) {
            uint16_t m;
            memcpy(&m, (const uint8_t *)w + b * ws + 2, 2);
            mag += fabs((double)em_fp16_to_fp32(m) *
                        em_fp16_to_fp32(((const em_block_q8_1 *)a)[b].s));
        }
    }
    CHECK_MSG(isfinite(gen) && fabs(fast - gen) <= 2e-5 * mag + 1e-30,
              "%s %s %s n=%lld: %.9g vs generic %.9g (mag %.3g)", em_vec_dot_isa(),
              em_type_name(t), what, (long long)n, fast, gen, mag);
    free(wf);
    free(af);
}

static void test_simd_dots(void) {
    enum { NMAX = 256 * 8 };
    void *w = malloc(NMAX * 4), *a = malloc(em_row_size(EM_TYPE_Q8_K, NMAX) + NMAX * 4);
    static const int patterns[] = {-1, 0x00, 0xff, 0x80, 0x7f, 0x55};
    for (int s = 0; s < n_simd_sets; s++) {
        CHECK(em_kernels_select(simd_sets[s]) == 0);
        const int checks0 = test_checks, fails0 = test_failures;
        for (size_t k = 0; k < N_DOT_TYPES; k++) {
            const em_type t = dot_types[k];
            const em_type_traits *tr = em_get_type_traits(t);
            const em_type vt = tr->vec_dot_type;
            /* Lengths that reach every loop and tail of the kernels. */
            int64_t lens[12];
            int nl = 0;
            if (tr->block_size == 1) {
                const int64_t fl[] = {1, 7, 8, 15, 16, 17, 33, 63, 64, 65, 127, NMAX};
                for (int i = 0; i < 12; i++) lens[nl++] = fl[i];
            } else {
                const int64_t bl[] = {1, 2, 3, 4, 5, 7, 8};
                for (int i = 0; i < 7; i++) lens[nl++] = bl[i] * tr->block_size;
                if (tr->block_size == 32) lens[nl++] = NMAX;
            }
            for (int li = 0; li < nl; li++) {
                const int64_t n = lens[li];
                for (size_t p = 0; p < sizeof patterns / sizeof patterns[0]; p++) {
                    /* Exact: small activation quants (|a| <= 4) and
                     * power-of-two scales keep every partial sum an
                     * integer below 2^24 times a power of two. */
                    if (tr->block_size == 1 || n <= 2 * tr->block_size || tr->block_size == 32) {
                        make_weight_row(t, w, n, patterns[p], SCALE_EXACT);
                        make_act_row(vt, a, n, 4, SCALE_EXACT);
                        compare_to_generic(t, w, a, n, true, "exact");
                    }
                    /* Extremes: quants at +-127, scales anywhere. */
                    make_weight_row(t, w, n, patterns[p], SCALE_WIDE);
                    make_act_row(vt, a, n, 127, SCALE_WIDE);
                    compare_to_generic(t, w, a, n, false, "wide");
                    make_weight_row(t, w, n, patterns[p], SCALE_SMALL);
                    make_act_row(vt, a, n, 127, SCALE_SMALL);
                    compare_to_generic(t, w, a, n, false, "small");
                }
            }
        }
        printf("  %s against generic: %d checks, %d failed\n", simd_sets[s],
               test_checks - checks0, test_failures - fails0);
    }
    CHECK(em_kernels_select(default_set) == 0);
    free(w);
    free(a);
}

/* Quantizes x (n a multiple of 256) to Q8_0, Q8_1 and Q8_K with the
 * scalar code and with every SIMD set; the bytes must be identical. */
static void compare_act_quant(const float *x, int64_t n, const char *what) {
    static const em_type types[] = {EM_TYPE_Q8_0, EM_TYPE_Q8_1, EM_TYPE_Q8_K};
    for (size_t k = 0; k < 3; k++) {
        const em_type t = types[k];
        const size_t rs = em_row_size(t, n);
        uint8_t *ref = malloc(rs), *got = malloc(rs);
        em_kernels_select("generic");
        CHECK_OK(em_quantize_row(t, x, ref, n, NULL));
        for (int s = 0; s < n_simd_sets; s++) {
            em_kernels_select(simd_sets[s]);
            memset(got, 0xa5, rs);
            CHECK_OK(em_quantize_row(t, x, got, n, NULL));
            size_t first = rs;
            for (size_t i = 0; i < rs && first == rs; i++)
                if (got[i] != ref[i]) first = i;
            CHECK_MSG(first == rs, "%s %s %s: byte %zu of %zu differs (%02x vs scalar %02x)",
                      simd_sets[s], em_type_name(t), what, first, rs, first < rs ? got[first] : 0,
                      first < rs ? ref[first] : 0);
        }
        free(ref);
        free(got);
    }
    em_kernels_select(default_set);
}

static void test_act_quant(void) {
    enum { N = 1024 };
    float *x = malloc(N * sizeof *x);
    /* The SIMD quantizers really are in use where a SIMD set is. */
    for (int s = 0; s < n_simd_sets; s++) {
        em_kernels_select(simd_sets[s]);
        uint8_t buf[sizeof(em_block_q8_k)];
        fill_gauss(x, 256, 1.0f);
        const bool x86 = strncmp(simd_sets[s], "avx", 3) == 0;
        if (x86) {
            CHECK(em_quantize_row_simd(EM_TYPE_Q8_0, x, buf, 32));
            CHECK(em_quantize_row_simd(EM_TYPE_Q8_1, x, buf, 32));
            CHECK(em_quantize_row_simd(EM_TYPE_Q8_K, x, buf, 256));
        }
        CHECK(!em_quantize_row_simd(EM_TYPE_Q4_0, x, buf, 32));
    }
    em_kernels_select("generic");
    CHECK(!em_quantize_row_simd(EM_TYPE_Q8_0, x, x + 512, 32));
    em_kernels_select(default_set);

    for (float scale = 1e-30f; scale < 1e31f; scale *= 1e5f) {
        fill_gauss(x, N, scale);
        compare_act_quant(x, N, "gaussian");
    }
    for (int i = 0; i < N; i++) /* every exponent, every sign */
        x[i] = rng_gauss() * powf(10.0f, (float)(rng_uniform() * 70.0 - 35.0));
    compare_act_quant(x, N, "wide exponents");

    /* Ties: one element of magnitude 127 per 32 makes the scales exactly
     * 1 (Q8_0/Q8_1: d = 127 / 127) and -1 or 1 (Q8_K: -127 / vmax), so the
     * others land exactly on k + 1/2 and on their neighbours. */
    for (int variant = 0; variant < 6; variant++) {
        for (int i = 0; i < N; i++) {
            const float tie = (float)(i % 255 - 127) + 0.5f;
            x[i] = variant % 3 == 0 ? tie
                   : variant % 3 == 1 ? nextafterf(tie, INFINITY)
                                      : nextafterf(tie, -INFINITY);
            if (i % 32 == 5) x[i] = variant < 3 ? 127.0f : -127.0f;
        }
        compare_act_quant(x, N, "ties");
        for (int i = 0; i < N; i++) x[i] = ldexpf(x[i], -20);
        compare_act_quant(x, N, "ties * 2^-20");
    }

    /* Degenerate rows. */
    memset(x, 0, N * sizeof *x);
    compare_act_quant(x, N, "zeros");
    for (int i = 0; i < N; i++) x[i] = -0.0f;
    compare_act_quant(x, N, "negative zeros");
    for (int i = 0; i < N; i++) x[i] = (i % 97 == 3) ? 1e-40f * (float)(i % 5 - 2) : 0.0f;
    compare_act_quant(x, N, "subnormals");
    for (int i = 0; i < N; i++) x[i] = (i % 2 ? -3.0f : 3.0f) * (i % 64 < 32 ? 1 : -1);
    compare_act_quant(x, N, "equal magnitudes, both signs");
    for (int i = 0; i < N; i++) x[i] = (i % 3 ? 3.4e38f : -3.4e38f);
    compare_act_quant(x, N, "near FLT_MAX");

    /* NaN and infinities at various places (the scalar code's order
     * decides the NaN cases). */
    const int spots[] = {0, 1, 7, 8, 16, 31, 33, 100, 255, 256, 511, 1023};
    for (int v = 0; v < 4; v++) {
        for (size_t k = 0; k < sizeof spots / sizeof spots[0]; k++) {
            fill_gauss(x, N, 2.0f);
            const float bad = v == 0 ? NAN : v == 1 ? INFINITY : v == 2 ? -INFINITY : -NAN;
            x[spots[k]] = bad;
            if (k % 3 == 0) x[(spots[k] + 13) % N] = v == 0 ? INFINITY : NAN;
            compare_act_quant(x, N, v == 0 || v == 3 ? "NaN" : "infinity");
        }
    }
    for (int i = 0; i < N; i++) x[i] = NAN;
    compare_act_quant(x, N, "all NaN");
    free(x);
}

/* ------------------------------------------------ 5. traits and bad args */

static void test_traits(void) {
    static const struct {
        em_type t;
        const char *name;
        int64_t bs;
        size_t ts;
        em_type vdt;
    } want[] = {
        {EM_TYPE_F32, "F32", 1, 4, EM_TYPE_F32},
        {EM_TYPE_F16, "F16", 1, 2, EM_TYPE_F32},
        {EM_TYPE_BF16, "BF16", 1, 2, EM_TYPE_F32},
        {EM_TYPE_Q4_0, "Q4_0", 32, 18, EM_TYPE_Q8_0},
        {EM_TYPE_Q4_1, "Q4_1", 32, 20, EM_TYPE_Q8_1},
        {EM_TYPE_Q5_0, "Q5_0", 32, 22, EM_TYPE_Q8_0},
        {EM_TYPE_Q5_1, "Q5_1", 32, 24, EM_TYPE_Q8_1},
        {EM_TYPE_Q8_0, "Q8_0", 32, 34, EM_TYPE_Q8_0},
        {EM_TYPE_Q8_1, "Q8_1", 32, 36, EM_TYPE_Q8_1},
        {EM_TYPE_Q2_K, "Q2_K", 256, 84, EM_TYPE_Q8_K},
        {EM_TYPE_Q3_K, "Q3_K", 256, 110, EM_TYPE_Q8_K},
        {EM_TYPE_Q4_K, "Q4_K", 256, 144, EM_TYPE_Q8_K},
        {EM_TYPE_Q5_K, "Q5_K", 256, 176, EM_TYPE_Q8_K},
        {EM_TYPE_Q6_K, "Q6_K", 256, 210, EM_TYPE_Q8_K},
        {EM_TYPE_Q8_K, "Q8_K", 256, 292, EM_TYPE_Q8_K},
        {EM_TYPE_IQ4_NL, "IQ4_NL", 32, 18, EM_TYPE_Q8_0},
        {EM_TYPE_IQ4_XS, "IQ4_XS", 256, 136, EM_TYPE_Q8_K},
        {EM_TYPE_IQ2_XXS, "IQ2_XXS", 256, 66, EM_TYPE_Q8_K},
        {EM_TYPE_IQ2_XS, "IQ2_XS", 256, 74, EM_TYPE_Q8_K},
        {EM_TYPE_IQ3_XXS, "IQ3_XXS", 256, 98, EM_TYPE_Q8_K},
        {EM_TYPE_IQ1_S, "IQ1_S", 256, 50, EM_TYPE_Q8_K},
        {EM_TYPE_IQ3_S, "IQ3_S", 256, 110, EM_TYPE_Q8_K},
        {EM_TYPE_IQ2_S, "IQ2_S", 256, 82, EM_TYPE_Q8_K},
        {EM_TYPE_IQ1_M, "IQ1_M", 256, 56, EM_TYPE_Q8_K},
        {EM_TYPE_I8, "I8", 1, 1, EM_TYPE_I8},
        {EM_TYPE_I16, "I16", 1, 2, EM_TYPE_I16},
        {EM_TYPE_I32, "I32", 1, 4, EM_TYPE_I32},
        {EM_TYPE_I64, "I64", 1, 8, EM_TYPE_I64},
        {EM_TYPE_F64, "F64", 1, 8, EM_TYPE_F64},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const em_type_traits *tr = em_get_type_traits(want[i].t);
        CHECK_MSG(tr != NULL, "no traits for %s", want[i].name);
        if (!tr) continue;
        CHECK_MSG(strcmp(tr->name, want[i].name) == 0, "name %s", tr->name);
        CHECK(strcmp(em_type_name(want[i].t), want[i].name) == 0);
        CHECK_MSG(tr->block_size == want[i].bs && tr->type_size == want[i].ts,
                  "%s: block %lld size %zu", tr->name, (long long)tr->block_size, tr->type_size);
        CHECK_MSG(tr->vec_dot_type == want[i].vdt, "%s: vec_dot_type", tr->name);
        CHECK(tr->is_quantized == (want[i].bs > 1));
        /* The activation type of every readable weight type is writable. */
        if (tr->can_dequant) {
            const em_type_traits *vt = em_get_type_traits(tr->vec_dot_type);
            CHECK(vt && vt->can_quantize && vt->can_dequant);
        }
    }
    /* What ember can read and write. */
    for (size_t k = 0; k < N_DOT_TYPES; k++) {
        const em_type_traits *tr = em_get_type_traits(dot_types[k]);
        CHECK(tr->can_dequant && tr->can_quantize);
    }
    CHECK(!em_get_type_traits(EM_TYPE_IQ2_XXS)->can_dequant);
    CHECK(!em_get_type_traits(EM_TYPE_I32)->can_quantize);

    /* Holes and out-of-range ids. */
    const int holes[] = {4, 5, EM_TYPE_COUNT, EM_TYPE_COUNT + 1, 1000, -1, -1000, INT32_MIN};
    for (size_t i = 0; i < sizeof holes / sizeof holes[0]; i++) {
        const em_type t = (em_type)holes[i];
        CHECK_MSG(em_get_type_traits(t) == NULL, "id %d has traits", holes[i]);
        CHECK(em_type_name(t) == NULL);
        CHECK(em_row_size(t, 256) == 0);
        float f[32];
        uint8_t buf[64] = {0};
        CHECK(em_dequantize_row(t, buf, f, 32) == EM_ERR_INVALID_ARG);
        CHECK(em_quantize_row(t, f, buf, 32, NULL) == EM_ERR_INVALID_ARG);
    }

    CHECK(em_row_size(EM_TYPE_F32, 10) == 40);
    CHECK(em_row_size(EM_TYPE_F16, 3) == 6);
    CHECK(em_row_size(EM_TYPE_Q4_0, 64) == 36);
    CHECK(em_row_size(EM_TYPE_Q4_0, 33) == 0);
    CHECK(em_row_size(EM_TYPE_Q4_K, 4096) == 16 * 144);
    CHECK(em_row_size(EM_TYPE_Q6_K, 255) == 0);
    CHECK(em_row_size(EM_TYPE_Q4_0, 0) == 0);
    CHECK(em_row_size(EM_TYPE_Q4_0, -32) == 0);
    CHECK(em_row_size(EM_TYPE_F64, INT64_MAX) == 0); /* overflows size_t */

    /* Unsupported types are reported as such, not as bad arguments. */
    float f[256];
    uint8_t buf[512] = {0};
    CHECK(em_dequantize_row(EM_TYPE_IQ2_XXS, buf, f, 256) == EM_ERR_UNSUPPORTED);
    CHECK(em_quantize_row(EM_TYPE_I8, f, buf, 256, NULL) == EM_ERR_UNSUPPORTED);
}

static void test_bad_lengths(void) {
    float x[512], y[512];
    uint8_t buf[4096];
    fill_gauss(x, 512, 1.0f);
    for (int t = 0; t < EM_TYPE_COUNT; t++) {
        const em_type_traits *tr = em_get_type_traits((em_type)t);
        if (!tr || !tr->can_dequant || tr->block_size == 1) continue;
        const int64_t bad_n[] = {1, tr->block_size - 1, tr->block_size + 1, 3 * tr->block_size / 2,
                                 -tr->block_size};
        for (size_t i = 0; i < sizeof bad_n / sizeof bad_n[0]; i++) {
            em_status st = em_dequantize_row((em_type)t, buf, y, bad_n[i]);
            CHECK_MSG(st == EM_ERR_INVALID_ARG, "%s dequant n=%lld: %s", tr->name,
                      (long long)bad_n[i], em_status_str(st));
            CHECK(em_last_error()[0] != '\0');
            st = em_quantize_row((em_type)t, x, buf, bad_n[i], NULL);
            CHECK_MSG(st == EM_ERR_INVALID_ARG, "%s quant n=%lld: %s", tr->name,
                      (long long)bad_n[i], em_status_str(st));
        }
        /* Zero elements is a valid (empty) row. */
        CHECK_OK(em_dequantize_row((em_type)t, buf, y, 0));
        CHECK_OK(em_quantize_row((em_type)t, x, buf, 0, NULL));
    }
    CHECK(em_dequantize_row(EM_TYPE_F32, buf, y, -1) == EM_ERR_INVALID_ARG);
    CHECK(em_dequantize_row(EM_TYPE_Q4_0, NULL, y, 32) == EM_ERR_INVALID_ARG);
    CHECK(em_quantize_row(EM_TYPE_Q4_0, x, NULL, 32, NULL) == EM_ERR_INVALID_ARG);
}

/* ------------------------------------------------------ 6. real files */

typedef struct {
    const char *file; /* tiny-256-<file>.gguf */
    em_type main;     /* the type most tensors use */
} file_case;

static const file_case file_cases[] = {
    {"F16", EM_TYPE_F16},       {"BF16", EM_TYPE_BF16},     {"Q8_0", EM_TYPE_Q8_0},
    {"Q4_0", EM_TYPE_Q4_0},     {"Q4_1", EM_TYPE_Q4_1},     {"Q5_0", EM_TYPE_Q5_0},
    {"Q5_1", EM_TYPE_Q5_1},     {"Q2_K", EM_TYPE_Q2_K},     {"Q3_K_M", EM_TYPE_Q3_K},
    {"Q4_K_M", EM_TYPE_Q4_K},   {"Q5_K_M", EM_TYPE_Q5_K},   {"Q6_K", EM_TYPE_Q6_K},
    {"IQ4_NL", EM_TYPE_IQ4_NL}, {"IQ4_XS", EM_TYPE_IQ4_XS},
};

/* Tensors of one file checked, per type, for the summary and the check
 * that each file really exercised its main type. */
static int seen_type[EM_TYPE_COUNT];
static double worst_err[EM_TYPE_COUNT], worst_requant[EM_TYPE_COUNT];

static void check_tensor(const em_gguf_tensor *tq, const em_gguf_tensor *tf, const char *file) {
    char name[128];
    snprintf(name, sizeof name, "%.*s", (int)EM_MIN(tq->name.len, 100), tq->name.ptr);
    for (int d = 0; d < EM_GGUF_MAX_DIMS; d++)
        CHECK_MSG(tq->ne[d] == tf->ne[d], "%s %s: shape differs", file, name);
    const int64_t ne0 = tq->ne[0];
    const int64_t nrows = tq->ne[1] * tq->ne[2] * tq->ne[3];
    const int64_t n = ne0 * nrows;
    const size_t rs = em_row_size(tq->type, ne0);
    CHECK_MSG(rs > 0 && rs * (uint64_t)nrows == tq->size, "%s %s: size", file, name);
    if (rs == 0 || tf->type != EM_TYPE_F32) return;

    float *ref = malloc((size_t)n * sizeof *ref), *y = malloc((size_t)n * sizeof *y);
    CHECK_OK(em_dequantize_row(EM_TYPE_F32, tf->data, ref, n));
    for (int64_t r = 0; r < nrows; r++)
        CHECK_OK(em_dequantize_row(tq->type, (const uint8_t *)tq->data + r * rs, y + r * ne0, ne0));
    const double err = rel_rmse(ref, y, n);
    const double bound = bound_of(tq->type);
    seen_type[tq->type]++;
    worst_err[tq->type] = fmax(worst_err[tq->type], err);
    CHECK_MSG(bound >= 0 && err <= bound, "%s %s (%s): rel RMSE %.5f vs bound %.4f", file, name,
              em_type_name(tq->type), err, bound);

    /* Re-quantizing llama.cpp's grid with ember's quantizer should land on
     * (nearly) the same grid. */
    const em_type_traits *tr = em_get_type_traits(tq->type);
    if (tr->is_quantized) {
        void *q2 = malloc(rs);
        float *y2 = malloc((size_t)ne0 * sizeof *y2);
        double e = 0, s = 0;
        for (int64_t r = 0; r < nrows; r++) {
            const float *row = y + r * ne0;
            CHECK_OK(em_quantize_row(tq->type, row, q2, ne0, NULL));
            CHECK_OK(em_dequantize_row(tq->type, q2, y2, ne0));
            for (int64_t i = 0; i < ne0; i++) {
                e += ((double)y2[i] - row[i]) * ((double)y2[i] - row[i]);
                s += (double)row[i] * row[i];
            }
        }
        const double re = sqrt(e / s);
        worst_requant[tq->type] = fmax(worst_requant[tq->type], re);
        CHECK_MSG(re < 0.1 * bound, "%s %s (%s): requantized rel RMSE %.5f", file, name,
                  em_type_name(tq->type), re);
        free(q2);
        free(y2);
    }

    /* The dot kernels on the first rows of real data. */
    static float act[8192];
    if (ne0 <= 8192) {
        fill_gauss(act, ne0, 1.0f);
        for (int64_t r = 0; r < EM_MIN(nrows, 4); r++)
            check_dot_row(tq->type, (const uint8_t *)tq->data + r * rs, act, ne0, file);
        /* The same rows under every other kernel set. */
        for (int s = 0; s < n_simd_sets; s++) {
            if (strcmp(simd_sets[s], default_set) == 0) continue;
            em_kernels_select(simd_sets[s]);
            for (int64_t r = 0; r < EM_MIN(nrows, 4); r++)
                check_dot_row(tq->type, (const uint8_t *)tq->data + r * rs, act, ne0, file);
        }
        em_kernels_select(default_set);
        /* Real weights as activations: SIMD quantizers byte for byte. */
        if (ne0 % 256 == 0) compare_act_quant(y, ne0 * EM_MIN(nrows, 4), file);
    }
    free(ref);
    free(y);
}

static int test_real_files(void) {
    char path[1024];
    test_data_path(path, sizeof path, "models/tiny-256/tiny-256-f32.gguf");
    em_gguf *gf = NULL;
    CHECK_OK(em_gguf_open(&gf, path));
    if (!gf) return 1;
    for (size_t c = 0; c < sizeof file_cases / sizeof file_cases[0]; c++) {
        char rel[256];
        snprintf(rel, sizeof rel, "models/tiny-256/tiny-256-%s.gguf", file_cases[c].file);
        test_data_path(path, sizeof path, rel);
        em_gguf *gq = NULL;
        CHECK_OK(em_gguf_open(&gq, path));
        if (!gq) continue;
        memset(seen_type, 0, sizeof seen_type);
        memset(worst_err, 0, sizeof worst_err);
        memset(worst_requant, 0, sizeof worst_requant);
        const int64_t nt = em_gguf_n_tensors(gq);
        CHECK_MSG(nt == em_gguf_n_tensors(gf), "%s: tensor count", file_cases[c].file);
        for (int64_t i = 0; i < nt; i++) {
            const em_gguf_tensor *tq = em_gguf_tensor_at(gq, i);
            char name[256];
            snprintf(name, sizeof name, "%.*s", (int)EM_MIN(tq->name.len, 200), tq->name.ptr);
            const em_gguf_tensor *tf = em_gguf_find_tensor(gf, name);
            CHECK_MSG(tf != NULL, "%s: %s missing from the f32 file", file_cases[c].file, name);
            if (tf) check_tensor(tq, tf, file_cases[c].file);
        }
        printf("  %-7s:", file_cases[c].file);
        for (int t = 0; t < EM_TYPE_COUNT; t++)
            if (seen_type[t])
                printf(" %d x %s (err %.4f, requant %.4f)", seen_type[t], em_type_name((em_type)t),
                       worst_err[t], worst_requant[t]);
        printf("\n");
        CHECK_MSG(seen_type[file_cases[c].main] > 0, "%s: no tensor of type %s",
                  file_cases[c].file, em_type_name(file_cases[c].main));
        em_gguf_close(gq);
    }
    em_gguf_close(gf);
    return 0;
}

int main(void) {
    printf("fp16/bf16 conversion\n");
    test_half_conversion();
    printf("block layouts\n");
    test_layouts();
    printf("round trips\n");
    test_round_trips();
    printf("dot products\n");
    find_simd_sets();
    test_dots(expected_default_set());
    for (int s = 0; s < n_simd_sets; s++) {
        if (strcmp(simd_sets[s], default_set) == 0) continue;
        em_kernels_select(simd_sets[s]);
        test_dots(strncmp(simd_sets[s], "avx", 3) == 0 ? simd_sets[s] : NULL);
    }
    em_kernels_select(default_set);
    printf("SIMD kernels against the scalar ones\n");
    test_simd_dots();
    printf("SIMD activation quantizers\n");
    test_act_quant();
    printf("traits and arguments\n");
    test_traits();
    test_bad_lengths();
    SKIP_REST_WITHOUT_TEST_DATA();
    printf("real files\n");
    test_real_files();
    TEST_END();
}
