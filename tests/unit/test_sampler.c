/*
 * test_sampler.c - the sampler chain, checked against what each step must
 * do: greedy picks, seeded reproducibility, the distribution it draws from,
 * the tokens top-k/top-p/min-p must never return, the penalties' arithmetic
 * (observed through greedy flips), logit bias bans and hostile logits.
 */
#include "core/core.h"
#include "core/cpu.h"
#include "sample/weights.h"
#include "test.h"

#include <float.h>

/* A small deterministic generator for test logits (independent of the
 * sampler's own PRNG). */
static uint64_t test_rng = 12345;
static float test_uniform(void) {
    test_rng = test_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((test_rng >> 40) * (1.0 / 16777216.0));
}

/* Sampler params with every filter off: a pure softmax draw at temp. */
static em_sampler_params plain_params(float temp, uint64_t seed) {
    em_sampler_params p = em_sampler_default_params();
    p.temp = temp;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = seed;
    return p;
}

static em_sampler *make(const em_sampler_params *p, int32_t n_vocab) {
    em_sampler *s = NULL;
    em_status st = em_sampler_init(&s, p, n_vocab);
    CHECK_MSG(st == EM_OK && s, "init: %s", em_last_error());
    return s;
}

/* Counts draws per token over n draws. */
static void histogram(em_sampler *s, const float *logits, int32_t n_vocab, int n, int *hist) {
    memset(hist, 0, (size_t)n_vocab * sizeof *hist);
    for (int i = 0; i < n; i++) {
        em_token t = em_sampler_sample(s, logits);
        CHECK(t >= 0 && t < n_vocab);
        if (t >= 0 && t < n_vocab) hist[t]++;
    }
}

static void test_defaults_and_validation(void) {
    em_sampler_params p = em_sampler_default_params();
    CHECK(p.temp == 0.8f && p.top_k == 40 && p.top_p == 0.95f && p.min_p == 0.05f);
    CHECK(p.repeat_penalty == 1.0f && p.repeat_last_n == 64 && p.seed == 42);
    CHECK(p.freq_penalty == 0.0f && p.presence_penalty == 0.0f && p.n_logit_bias == 0);

    em_sampler *s = NULL;
    CHECK(em_sampler_init(&s, &p, 0) == EM_ERR_INVALID_ARG && s == NULL);
    em_logit_bias b = {7, 1.0f};
    p.logit_bias = &b;
    p.n_logit_bias = 1;
    CHECK(em_sampler_init(&s, &p, 7) == EM_ERR_INVALID_ARG && s == NULL);
    CHECK(strstr(em_last_error(), "bias") != NULL);
    b.bias = NAN;
    CHECK(em_sampler_init(&s, &p, 8) == EM_ERR_INVALID_ARG);
    p = em_sampler_default_params();
    p.repeat_penalty = 0.0f;
    CHECK(em_sampler_init(&s, &p, 8) == EM_ERR_INVALID_ARG);
    p = em_sampler_default_params();
    p.repeat_last_n = -2;
    CHECK(em_sampler_init(&s, &p, 8) == EM_ERR_INVALID_ARG);
    p = em_sampler_default_params();
    p.temp = NAN;
    CHECK(em_sampler_init(&s, &p, 8) == EM_ERR_INVALID_ARG);
    CHECK(s == NULL);
    /* NULL params means defaults. */
    CHECK_OK(em_sampler_init(&s, NULL, 8));
    em_sampler_free(s);
    em_sampler_free(NULL);
}

static void test_greedy(void) {
    em_sampler_params p = plain_params(0.0f, 1);
    em_sampler *s = make(&p, 6);
    float l[6] = {0.1f, -3.0f, 2.5f, 2.4f, 2.5f, -10.0f};
    CHECK(em_sampler_sample(s, l) == 2); /* tie 2 vs 4: lowest id */
    l[4] = 2.6f;
    CHECK(em_sampler_sample(s, l) == 4);
    p.temp = -1.0f;
    em_sampler *s2 = make(&p, 6);
    CHECK(em_sampler_sample(s2, l) == 4);
    em_sampler_free(s);
    em_sampler_free(s2);

    /* Random rows: greedy equals a plain argmax. */
    enum { N = 1000 };
    static float row[N];
    p = plain_params(0.0f, 1);
    s = make(&p, N);
    for (int trial = 0; trial < 50; trial++) {
        int arg = 0;
        for (int i = 0; i < N; i++) {
            row[i] = test_uniform() * 20.0f - 10.0f;
            if (row[i] > row[arg]) arg = i;
        }
        CHECK(em_sampler_sample(s, row) == arg);
    }
    em_sampler_free(s);
}

static void test_top_k1_is_greedy(void) {
    enum { N = 300 };
    static float row[N];
    const float temps[] = {0.1f, 0.8f, 1.0f, 5.0f, 100.0f};
    for (size_t ti = 0; ti < sizeof temps / sizeof temps[0]; ti++) {
        em_sampler_params p = plain_params(temps[ti], 99 + ti);
        p.top_k = 1;
        em_sampler *s = make(&p, N);
        for (int trial = 0; trial < 100; trial++) {
            int arg = 0;
            for (int i = 0; i < N; i++) {
                row[i] = test_uniform() * 4.0f;
                if (row[i] > row[arg]) arg = i;
            }
            em_token t = em_sampler_sample(s, row);
            CHECK_MSG(t == arg, "temp %g: got %d want %d", (double)temps[ti], t, arg);
        }
        em_sampler_free(s);
    }
}

static void test_reproducible(void) {
    enum { N = 50, DRAWS = 2000 };
    float row[N];
    for (int i = 0; i < N; i++) row[i] = test_uniform() * 3.0f;
    em_sampler_params p = plain_params(1.0f, 1234);
    em_sampler *a = make(&p, N), *b = make(&p, N);
    p.seed = 1235;
    em_sampler *c = make(&p, N);
    static em_token first[DRAWS];
    int same = 0, differ = 0;
    for (int i = 0; i < DRAWS; i++) {
        em_token ta = em_sampler_sample(a, row), tb = em_sampler_sample(b, row);
        em_token tc = em_sampler_sample(c, row);
        first[i] = ta;
        same += ta == tb;
        differ += ta != tc;
    }
    CHECK_MSG(same == DRAWS, "same seed agreed on %d of %d", same, DRAWS);
    /* With ~50 plausible tokens, two streams agree by chance ~1/30 of the
     * time; demand that most draws differ. */
    CHECK_MSG(differ > DRAWS / 2, "different seeds differed on only %d of %d", differ, DRAWS);

    /* Reset re-seeds: the same draws again. */
    em_sampler_reset(a);
    int again = 0;
    for (int i = 0; i < DRAWS; i++) again += em_sampler_sample(a, row) == first[i];
    CHECK_MSG(again == DRAWS, "after reset %d of %d repeated", again, DRAWS);
    em_sampler_free(a);
    em_sampler_free(b);
    em_sampler_free(c);
}

/* Empirical frequencies against softmax(logits / temp). */
static void check_distribution(const float *l, int n, float temp, int draws) {
    em_sampler_params p = plain_params(temp, 777);
    em_sampler *s = make(&p, n);
    int hist[16];
    histogram(s, l, n, draws, hist);
    double max = l[0], z = 0.0, prob[16];
    for (int i = 1; i < n; i++) max = l[i] > max ? l[i] : max;
    for (int i = 0; i < n; i++) z += prob[i] = exp((l[i] - max) / temp);
    for (int i = 0; i < n; i++) {
        prob[i] /= z;
        double f = (double)hist[i] / draws;
        /* Five standard deviations plus a floor: fails on a real bias, not
         * on chance. */
        double tol = 5.0 * sqrt(prob[i] * (1.0 - prob[i]) / draws) + 1e-3;
        CHECK_MSG(fabs(f - prob[i]) <= tol, "temp %g token %d: freq %.4f want %.4f (tol %.4f)",
                  (double)temp, i, f, prob[i], tol);
    }
    em_sampler_free(s);
}

static void test_distribution(void) {
    const float l[8] = {1.0f, 2.0f, 0.5f, -1.0f, 1.5f, 0.0f, 2.2f, -0.3f};
    check_distribution(l, 8, 1.0f, 20000);
    check_distribution(l, 8, 0.5f, 20000);
    check_distribution(l, 8, 2.0f, 20000);
}

/* Logits whose softmax at temp 1 is {0.5, 0.3, 0.15, 0.05}. */
static void four_logits(float *l) {
    l[0] = logf(0.5f);
    l[1] = logf(0.3f);
    l[2] = logf(0.15f);
    l[3] = logf(0.05f);
}

static void test_top_p_min_p(void) {
    float l[4];
    four_logits(l);
    int hist[4];

    /* top_p 0.75: {0} holds 0.5 < 0.75, {0,1} holds 0.8: keep 0 and 1.  At
     * temp 5 the tempered distribution is much flatter; tokens 2 and 3 must
     * still never appear, since temperature comes after top-p. */
    em_sampler_params p = plain_params(5.0f, 5);
    p.top_p = 0.75f;
    em_sampler *s = make(&p, 4);
    histogram(s, l, 4, 5000, hist);
    CHECK_MSG(hist[2] == 0 && hist[3] == 0, "top-p leaked: %d %d", hist[2], hist[3]);
    CHECK(hist[0] > 1500 && hist[1] > 1500);
    em_sampler_free(s);

    /* top_p 0.45: the first token alone already holds 0.5. */
    p.top_p = 0.45f;
    s = make(&p, 4);
    histogram(s, l, 4, 500, hist);
    CHECK(hist[0] == 500);
    em_sampler_free(s);

    /* top_p 0.9: 0.95 needs three tokens; token 3 never. */
    p.top_p = 0.9f;
    s = make(&p, 4);
    histogram(s, l, 4, 5000, hist);
    CHECK(hist[3] == 0 && hist[2] > 500);
    em_sampler_free(s);

    /* top-k first, then top-p on the renormalized top-k set:
     * {0.625, 0.375} after top_k 2, so top_p 0.6 keeps token 0 only
     * (without top-k it would keep tokens 0 and 1). */
    p.top_p = 0.6f;
    p.top_k = 2;
    s = make(&p, 4);
    histogram(s, l, 4, 1000, hist);
    CHECK_MSG(hist[0] == 1000, "top-k then top-p: %d %d", hist[0], hist[1]);
    em_sampler_free(s);
    p.top_k = 0;
    s = make(&p, 4);
    histogram(s, l, 4, 2000, hist);
    CHECK(hist[1] > 200 && hist[2] == 0);
    em_sampler_free(s);

    /* min_p 0.2: threshold 0.1 keeps 0, 1, 2. */
    p = plain_params(5.0f, 6);
    p.min_p = 0.2f;
    s = make(&p, 4);
    histogram(s, l, 4, 6000, hist);
    CHECK_MSG(hist[3] == 0 && hist[2] > 800, "min-p 0.2: %d %d", hist[2], hist[3]);
    em_sampler_free(s);
    /* min_p 0.35: threshold 0.175 keeps 0 and 1. */
    p.min_p = 0.35f;
    s = make(&p, 4);
    histogram(s, l, 4, 6000, hist);
    CHECK(hist[2] == 0 && hist[3] == 0 && hist[1] > 1500);
    em_sampler_free(s);

    /* top-k alone: the two largest only. */
    p = plain_params(10.0f, 7);
    p.top_k = 2;
    s = make(&p, 4);
    histogram(s, l, 4, 4000, hist);
    CHECK(hist[2] == 0 && hist[3] == 0 && hist[1] > 1000);
    em_sampler_free(s);
}

/* Accepts token t k times. */
static void accept_n(em_sampler *s, em_token t, int k) {
    for (int i = 0; i < k; i++) em_sampler_accept(s, t);
}

/* The pick of a fresh sampler with params p over logits[0 .. n_vocab)
 * after it accepted token t k times. */
static em_token pick_after(const em_sampler_params *p, const float *logits, int32_t n_vocab, em_token t, int k) {
    em_sampler *s = make(p, n_vocab);
    if (!s) return -1;
    accept_n(s, t, k);
    em_token r = em_sampler_sample(s, logits);
    em_sampler_free(s);
    return r;
}

static void test_penalties(void) {
    em_sampler_params p = plain_params(0.0f, 1);
    em_sampler *s;

    /* Repeat penalty divides a positive logit: 2.0 / 1.1 = 1.82 < 1.9. */
    float a[4] = {2.0f, 1.9f, -1.0f, -2.0f};
    p.repeat_penalty = 1.1f;
    s = make(&p, 4);
    CHECK(em_sampler_sample(s, a) == 0);
    em_sampler_accept(s, 0);
    CHECK(em_sampler_sample(s, a) == 1);
    em_sampler_reset(s);
    CHECK(em_sampler_sample(s, a) == 0);
    em_sampler_free(s);

    /* ... and multiplies a negative one: -1.0 * 1.1 = -1.1 < -1.05 (a
     * division would have raised it to -0.91 and kept token 0). */
    float b[3] = {-1.0f, -1.05f, -5.0f};
    CHECK(pick_after(&p, b, 3, 0, 1) == 1);

    /* Frequency penalty scales with the count: 2.0 - 3 * 0.2 = 1.4 < 1.5,
     * while 2.0 - 3 * 0.1 = 1.7 > 1.5. */
    float c[2] = {2.0f, 1.5f};
    p = plain_params(0.0f, 1);
    p.freq_penalty = 0.2f;
    CHECK(pick_after(&p, c, 2, 0, 3) == 1);
    p.freq_penalty = 0.1f;
    CHECK(pick_after(&p, c, 2, 0, 3) == 0);

    /* Presence penalty is paid once whatever the count: 2.0 - 0.4 = 1.6. */
    p = plain_params(0.0f, 1);
    p.presence_penalty = 0.4f;
    CHECK(pick_after(&p, c, 2, 0, 10) == 0);
    p.presence_penalty = 0.6f;
    CHECK(pick_after(&p, c, 2, 0, 1) == 1);

    /* Both together: 2.0 - 2 * 0.1 - 0.15 = 1.65 > 1.5, then a third
     * occurrence gives 1.55, a fourth 1.45 < 1.5. */
    p = plain_params(0.0f, 1);
    p.freq_penalty = 0.1f;
    p.presence_penalty = 0.15f;
    s = make(&p, 2);
    accept_n(s, 0, 3);
    CHECK(em_sampler_sample(s, c) == 0);
    em_sampler_accept(s, 0);
    CHECK(em_sampler_sample(s, c) == 1);
    em_sampler_free(s);

    /* The window: with repeat_last_n 2, token 0 leaves after two others. */
    float d[8] = {2.0f, 1.5f, 0, 0, 0, 0, 0, 0};
    p = plain_params(0.0f, 1);
    p.presence_penalty = 1.0f;
    p.repeat_last_n = 2;
    s = make(&p, 8);
    em_sampler_accept(s, 0);
    em_sampler_accept(s, 5);
    CHECK(em_sampler_sample(s, d) == 1);
    em_sampler_accept(s, 6);
    CHECK(em_sampler_sample(s, d) == 0);
    /* Out-of-range tokens are ignored, not stored. */
    em_sampler_accept(s, -1);
    em_sampler_accept(s, 8);
    CHECK(em_sampler_sample(s, d) == 0);
    em_sampler_free(s);

    /* repeat_last_n -1 remembers everything; 0 disables penalties. */
    p.repeat_last_n = -1;
    s = make(&p, 8);
    em_sampler_accept(s, 0);
    for (int i = 0; i < 500; i++) em_sampler_accept(s, 2 + i % 6);
    CHECK(em_sampler_sample(s, d) == 1);
    em_sampler_free(s);
    p.repeat_last_n = 0;
    CHECK(pick_after(&p, d, 8, 0, 5) == 0);

    /* A penalty also shapes sampling at temp > 0: with a huge presence
     * penalty the accepted token is (practically) never drawn. */
    float e[3] = {1.0f, 1.0f, 1.0f};
    p = plain_params(1.0f, 3);
    p.presence_penalty = 50.0f;
    s = make(&p, 3);
    em_sampler_accept(s, 1);
    int hist[3];
    histogram(s, e, 3, 3000, hist);
    CHECK(hist[1] == 0 && hist[0] > 1000 && hist[2] > 1000);
    em_sampler_free(s);
}

static void test_logit_bias(void) {
    float l[5] = {1.0f, 3.0f, 2.0f, 0.0f, 2.9f};
    em_logit_bias bias[2] = {{1, -INFINITY}, {3, 2.5f}};
    em_sampler_params p = plain_params(0.0f, 1);
    p.logit_bias = bias;
    p.n_logit_bias = 1;
    em_sampler *s = make(&p, 5);
    bias[0].bias = 0.0f; /* the sampler copied the list at init */
    CHECK(em_sampler_sample(s, l) == 4);
    em_sampler_free(s);

    bias[0].bias = -INFINITY;
    p.n_logit_bias = 2;
    s = make(&p, 5);
    CHECK(em_sampler_sample(s, l) == 4); /* 3: 0 + 2.5 = 2.5 < 2.9 */
    em_sampler_free(s);
    bias[1].bias = 3.5f;
    s = make(&p, 5);
    CHECK(em_sampler_sample(s, l) == 3);
    em_sampler_free(s);

    /* A banned token is never drawn even at a high temperature. */
    p = plain_params(3.0f, 11);
    p.logit_bias = bias;
    p.n_logit_bias = 1;
    s = make(&p, 5);
    int hist[5];
    histogram(s, l, 5, 5000, hist);
    CHECK(hist[1] == 0 && hist[3] > 200);
    em_sampler_free(s);
}

static void test_hostile_logits(void) {
    int hist[6];
    em_sampler_params pg = plain_params(0.0f, 1), ps = em_sampler_default_params();
    ps.temp = 1.5f;
    em_sampler *g = make(&pg, 6), *s = make(&ps, 6);

    /* A NaN is never picked, greedy or sampled. */
    float a[6] = {NAN, 1.0f, 0.5f, NAN, 0.9f, -INFINITY};
    CHECK(em_sampler_sample(g, a) == 1);
    histogram(s, a, 6, 3000, hist);
    CHECK(hist[0] == 0 && hist[3] == 0 && hist[5] == 0 && hist[1] > 0);

    /* +inf wins. */
    float b[6] = {0.0f, 1.0f, INFINITY, 3.0f, NAN, -INFINITY};
    CHECK(em_sampler_sample(g, b) == 2);
    histogram(s, b, 6, 500, hist);
    CHECK(hist[2] == 500);

    /* Every logit -inf: a safe answer (the lowest id); every NaN: 0; only
     * NaN and -inf: the first -inf one. */
    float c[6] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    CHECK(em_sampler_sample(g, c) == 0 && em_sampler_sample(s, c) == 0);
    float d[6] = {NAN, NAN, NAN, NAN, NAN, NAN};
    CHECK(em_sampler_sample(g, d) == 0 && em_sampler_sample(s, d) == 0);
    float e[6] = {NAN, NAN, -INFINITY, NAN, -INFINITY, NAN};
    CHECK(em_sampler_sample(g, e) == 2 && em_sampler_sample(s, e) == 2);

    /* Extreme finite values do not overflow the softmax. */
    float f[6] = {FLT_MAX, -FLT_MAX, FLT_MAX, 0.0f, -FLT_MAX, 1e30f};
    histogram(s, f, 6, 1000, hist);
    CHECK(hist[0] + hist[2] == 1000 && hist[0] > 300 && hist[2] > 300);
    CHECK(em_sampler_sample(g, f) == 0);

    /* A NULL sampler or row is answered, not crashed on. */
    CHECK(em_sampler_sample(NULL, a) == 0);
    CHECK(em_sampler_sample(g, NULL) == 0);
    em_sampler_accept(NULL, 1);
    em_sampler_reset(NULL);
    em_sampler_free(g);
    em_sampler_free(s);
}

/* Greedy by the documented rule, one logit at a time: NaN and -inf
 * dropped, +inf counted as FLT_MAX, lowest id on ties; with nothing left,
 * the first non-NaN logit's id that is largest, else 0. */
static em_token greedy_reference(const float *l, int32_t n) {
    int32_t best = -1;
    for (int32_t i = 0; i < n; i++) {
        if (isnan(l[i]) || l[i] == -INFINITY) continue;
        float v = l[i] == INFINITY ? FLT_MAX : l[i];
        float b = best < 0 ? 0.0f : (l[best] == INFINITY ? FLT_MAX : l[best]);
        if (best < 0 || v > b) best = i;
    }
    if (best >= 0) return best;
    for (int32_t i = 0; i < n; i++)
        if (!isnan(l[i])) return i;
    return 0;
}

/* The greedy path scans the vocabulary in lanes and blocks: rows of every
 * length around those sizes, with ties, NaN, infinities and FLT_MAX in
 * random places, pick what the one-at-a-time rule picks. */
static void test_greedy_rows(void) {
    enum { MAXN = 1100 };
    static float row[MAXN];
    const float specials[] = {NAN, INFINITY, -INFINITY, FLT_MAX, -FLT_MAX, 7.0f};
    em_sampler_params p = plain_params(0.0f, 1);
    const int32_t lens[] = {1, 2, 15, 16, 17, 31, 255, 256, 257, 300, 513, 1100};
    int bad = 0;
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
        int32_t n = lens[li];
        em_sampler *s = make(&p, n);
        for (int trial = 0; trial < 200; trial++) {
            /* Few distinct values, so that ties are common. */
            for (int32_t i = 0; i < n; i++) row[i] = (float)(int)(test_uniform() * 8.0f);
            int n_special = (int)(test_uniform() * 4.0f);
            for (int k = 0; k < n_special; k++)
                row[(int32_t)(test_uniform() * (float)n) % n] = specials[(int)(test_uniform() * 6.0f) % 6];
            if (trial % 10 == 0) /* now and then only NaN and -inf */
                for (int32_t i = 0; i < n; i++) row[i] = test_uniform() < 0.5f ? NAN : -INFINITY;
            bad += em_sampler_sample(s, row) != greedy_reference(row, n);
        }
        em_sampler_free(s);
    }
    CHECK_MSG(bad == 0, "%d greedy picks differ from the one-at-a-time rule", bad);
}

/* Without bias or penalties top-k, and the plain softmax draw (no top-k,
 * min-p or top-p), read the logits in place; with a bias that changes
 * nothing (+0 on one token) the chain copies them first.  Both must draw
 * the same tokens from the same seed, on rows with ties, NaN and
 * infinities, for top-k below, at and above the survivors, and without
 * top-k at several temperatures. */
static void test_in_place(void) {
    enum { N = 700 };
    static float row[N];
    const float specials[] = {NAN, INFINITY, -INFINITY, FLT_MAX};
    const int32_t ks[] = {1, 5, 20, 40, 650, 699, 0, 0, 0, N};
    const float temps[] = {0.8f, 0.8f, 0.8f, 0.8f, 0.8f, 0.8f, 1.0f, 0.3f, 1.7f, 1.0f};
    int bad = 0;
    for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++) {
        em_sampler_params p = em_sampler_default_params();
        p.top_k = ks[ki];
        p.temp = temps[ki];
        /* Without top-p the draw walks c in its order. */
        p.top_p = ki % 2 && ks[ki] > 0 && ks[ki] < N ? 0.95f : 1.0f;
        if (ks[ki] == 0 || ks[ki] == N) p.min_p = 0.0f; /* the plain draw */
        p.seed = 7 + ki;
        em_logit_bias zero = {3, 0.0f};
        em_sampler_params pb = p;
        pb.logit_bias = &zero;
        pb.n_logit_bias = 1;
        em_sampler *fast = make(&p, N), *slow = make(&pb, N);
        for (int trial = 0; trial < 100; trial++) {
            for (int32_t i = 0; i < N; i++) row[i] = (float)(int)(test_uniform() * 30.0f) * 0.25f;
            for (int k = 0; k < 6; k++) row[(int32_t)(test_uniform() * N) % N] = specials[trial % 4];
            if (trial % 7 == 0) { /* exactly 20 survivors: fewer than, as many as, more than k */
                for (int32_t i = 0; i < N - 20; i++) row[i] = trial % 2 ? NAN : -INFINITY;
                for (int32_t i = N - 20; i < N; i++) row[i] = (float)(i % 3);
            }
            bad += em_sampler_sample(fast, row) != em_sampler_sample(slow, row);
        }
        em_sampler_free(fast);
        em_sampler_free(slow);
    }
    CHECK_MSG(bad == 0, "%d draws differ between the logits in place and the copied candidates", bad);
}

/* The whole-row weight kernels (sample/weights.h): every kernel set this
 * CPU runs gives the scalar twin's weights and block sums to the bit, on
 * rows of every length around the block size, with NaN, infinities,
 * +-FLT_MAX and arguments below exp's range (and the row maximum is the
 * one-at-a-time loop's); and the weights are e^x of
 * their float argument to a few ulp, and within float precision of the
 * double-precision softmax weight. */
static void test_draw_weights(void) {
    enum { MAXN = 4200 };
    static float x[MAXN], w0[MAXN], w1[MAXN], b0[MAXN / 64 + 1], b1[MAXN / 64 + 1];
    const int32_t sizes[] = {1, 7, 63, 64, 65, 128, 200, 1000, 4097};
    const float temps[] = {1.0f, 0.3f, 1.7f, 0.01f, 50.0f};
    const float specials[] = {NAN, INFINITY, -INFINITY, FLT_MAX, -FLT_MAX};
    const unsigned hw = em_cpu_hw_features();
    const unsigned sets[] = {EM_CPU_AVX2, EM_CPU_AVX512};
    int diff = 0, far = 0, inexact = 0, badsum = 0;
    double worst = 0.0;
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        for (size_t ti = 0; ti < sizeof temps / sizeof *temps; ti++) {
            const int32_t n = sizes[si];
            for (int32_t i = 0; i < n; i++) x[i] = (test_uniform() - 0.5f) * 40.0f;
            if (ti == 1 && n > 8)
                for (int k = 0; k < 8; k++) x[(int32_t)(test_uniform() * n) % n] = specials[k % 5];
            float mx = -INFINITY;
            for (int32_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
            for (size_t k = 0; k < sizeof sets / sizeof *sets; k++) /* and the row maximum */
                diff += (hw & sets[k]) && em_row_max(x, n, sets[k]) != mx;
            diff += em_row_max(x, n, 0) != mx;
            if (mx == INFINITY) mx = FLT_MAX;
            const float scale = 1.0f / temps[ti];
            em_draw_weights(x, n, mx, scale, w0, b0, 0);
            for (size_t k = 0; k < sizeof sets / sizeof *sets; k++) {
                if (!(hw & sets[k])) continue;
                em_draw_weights(x, n, mx, scale, w1, b1, sets[k]);
                diff += memcmp(w0, w1, (size_t)n * sizeof *w0) != 0;
                diff += memcmp(b0, b1, (size_t)em_draw_n_blocks(n) * sizeof *b0) != 0;
            }
            for (int32_t i = 0; i < n; i++) {
                const float l = x[i] > FLT_MAX ? FLT_MAX : x[i];
                if (isnan(l) || l == -INFINITY || (mx == FLT_MAX && l < 0)) {
                    far += w0[i] != 0.0f && !(mx == FLT_MAX && l == -FLT_MAX);
                    continue;
                }
                const float arg = (l - mx) * scale; /* the kernel's float argument */
                const double e = exp((double)arg), ref = exp(((double)l - (double)mx) / (double)temps[ti]);
                if (arg < -87.3f) {
                    far += w0[i] != 0.0f;
                    continue;
                }
                inexact += fabs((double)w0[i] - e) > 4e-7 * e;
                /* The argument's own rounding: about |arg| float ulps. */
                const double rel = fabs((double)w0[i] - ref) / ref;
                far += rel > 1e-6 + 1.2e-7 * fabs((double)arg);
                worst = rel > worst && fabs((double)arg) < 10 ? rel : worst;
            }
            for (int32_t b = 0; b < em_draw_n_blocks(n); b++) {
                double z = 0.0;
                for (int32_t i = b * 64; i < n && i < b * 64 + 64; i++) z += w0[i];
                badsum += fabs((double)b0[b] - z) > 1e-6 * z;
            }
        }
    }
    CHECK_MSG(diff == 0, "%d rows where a kernel set differs from the scalar twin", diff);
    CHECK_MSG(inexact == 0, "%d weights more than 4e-7 from e^x", inexact);
    CHECK_MSG(far == 0, "%d weights off the double-precision softmax weight", far);
    CHECK_MSG(badsum == 0, "%d block sums off the sum of their weights", badsum);
    CHECK_MSG(worst < 2e-6, "worst relative error %g for |x| < 10", worst);
}

/* The whole-row draw against the exact softmax by a chi-square test, on a
 * vocabulary of several blocks with a partial last one, banned tokens
 * (whole blocks of them too) and NaN, plain and through a logit bias;
 * under a fixed seed, so the test passes or fails the same every time. */
static void chi_square_row(const float *l, int32_t n, const em_sampler_params *p, const double *prob, int draws) {
    em_sampler *s = make(p, n);
    static int hist[400];
    histogram(s, l, n, draws, hist);
    /* Bins of expected count below 5 are pooled into one. */
    double chi2 = 0.0, pool_e = 0.0;
    int df = -1, pool_o = 0, impossible = 0;
    for (int32_t i = 0; i < n; i++) {
        const double e = prob[i] * draws;
        if (prob[i] == 0.0) {
            impossible += hist[i];
        } else if (e < 5.0) {
            pool_e += e;
            pool_o += hist[i];
        } else {
            chi2 += (hist[i] - e) * (hist[i] - e) / e;
            df++;
        }
    }
    if (pool_e > 0.0) {
        chi2 += (pool_o - pool_e) * (pool_o - pool_e) / pool_e;
        df++;
    }
    CHECK_MSG(impossible == 0, "%d draws of banned tokens", impossible);
    /* Mean df, standard deviation sqrt(2 df): six deviations is a real
     * error, not chance. */
    CHECK_MSG(chi2 < df + 6.0 * sqrt(2.0 * df), "chi-square %.1f with %d degrees of freedom (temp %g)", chi2, df,
              (double)p->temp);
    em_sampler_free(s);
}

static void test_row_chi_square(void) {
    enum { N = 300 };
    static float l[N];
    static double prob[N];
    const float temps[] = {1.0f, 0.6f, 2.5f};
    for (size_t ti = 0; ti < sizeof temps / sizeof *temps; ti++) {
        for (int32_t i = 0; i < N; i++) l[i] = test_uniform() * 6.0f;
        for (int32_t i = 64; i < 192; i++) l[i] = -INFINITY; /* two whole blocks banned */
        l[5] = NAN;
        l[299] = 7.0f; /* the best, alone in the partial last block's end */
        double mx = 7.0, z = 0.0;
        for (int32_t i = 0; i < N; i++) {
            prob[i] = isfinite(l[i]) ? exp(((double)l[i] - mx) / temps[ti]) : 0.0;
            z += prob[i];
        }
        for (int32_t i = 0; i < N; i++) prob[i] /= z;
        em_sampler_params p = plain_params(temps[ti], 1000 + ti);
        chi_square_row(l, N, &p, prob, 100000);

        /* Through the biased row: a bias that lifts token 70 out of the
         * banned blocks is a -inf + 3 = -inf, so it stays banned; one on
         * token 10 moves its share. */
        em_logit_bias bias[2] = {{70, 3.0f}, {10, 2.0f}};
        p.logit_bias = bias;
        p.n_logit_bias = 2;
        z = 0.0;
        for (int32_t i = 0; i < N; i++) {
            const double li = (double)l[i] + (i == 10 ? 2.0 : 0.0);
            prob[i] = isfinite(l[i]) ? exp((li - mx) / temps[ti]) : 0.0;
            z += prob[i];
        }
        for (int32_t i = 0; i < N; i++) prob[i] /= z;
        chi_square_row(l, N, &p, prob, 100000);
    }
}

/* The default chain on a real-sized vocabulary only ever returns one of
 * the 40 best tokens, and does not take long about it. */
static void test_large_vocab(void) {
    enum { N = 32000 };
    static float row[N], sorted[N];
    for (int i = 0; i < N; i++) row[i] = test_uniform() * 10.0f;
    memcpy(sorted, row, sizeof row);
    /* The 40th largest value, by partial selection. */
    for (int i = 0; i < 40; i++) {
        int m = i;
        for (int j = i + 1; j < N; j++)
            if (sorted[j] > sorted[m]) m = j;
        float t = sorted[i];
        sorted[i] = sorted[m];
        sorted[m] = t;
    }
    float kth = sorted[39];
    em_sampler_params p = em_sampler_default_params();
    p.temp = 3.0f;
    p.min_p = 0.0f;
    p.top_p = 1.0f;
    em_sampler *s = make(&p, N);
    double t0 = em_time_s();
    int bad = 0;
    for (int i = 0; i < 200; i++) {
        em_token t = em_sampler_sample(s, row);
        bad += !(t >= 0 && t < N && row[t] >= kth);
    }
    double dt = em_time_s() - t0;
    CHECK_MSG(bad == 0, "%d draws outside the top 40", bad);
    /* Generous: 200 draws over 32000 logits well under a second even under
     * sanitizers. */
    CHECK_MSG(dt < 5.0, "200 draws took %.2f s", dt);
    em_sampler_free(s);

    /* Full defaults (top-p and min-p active as well). */
    p = em_sampler_default_params();
    s = make(&p, N);
    for (int i = 0; i < 200; i++) {
        em_token t = em_sampler_sample(s, row);
        CHECK(t >= 0 && t < N && row[t] >= kth);
    }
    /* Top-p with no top-k pops from a heap over the whole vocabulary. */
    p.top_k = 0;
    p.min_p = 0.0f;
    p.top_p = 0.5f;
    em_sampler_free(s);
    s = make(&p, N);
    for (int i = 0; i < 50; i++) {
        em_token t = em_sampler_sample(s, row);
        CHECK(t >= 0 && t < N);
    }
    em_sampler_free(s);
}

int main(void) {
    test_defaults_and_validation();
    test_greedy();
    test_greedy_rows();
    test_top_k1_is_greedy();
    test_in_place();
    test_reproducible();
    test_distribution();
    test_draw_weights();
    test_row_chi_square();
    test_top_p_min_p();
    test_penalties();
    test_logit_bias();
    test_hostile_logits();
    test_large_vocab();
    TEST_END();
}
