/*
 * sampler.c - turning one row of logits into one token.
 *
 * The chain runs in the order llama.cpp users know:
 *
 *   logit bias -> penalties (repeat, frequency, presence) ->
 *   temp <= 0: greedy argmax, lowest id on ties; otherwise
 *   top-k -> top-p -> min-p -> temperature -> softmax -> seeded draw.
 *
 * Top-p and min-p look at the probabilities before temperature, as in
 * llama.cpp; temperature only reshapes the distribution that survives.
 *
 * Penalties count the last repeat_last_n tokens passed to
 * em_sampler_accept (prompt tokens included).  repeat_penalty divides a
 * positive logit and multiplies a non-positive one, freq_penalty subtracts
 * count * freq_penalty, presence_penalty subtracts once when count > 0.
 *
 * Robustness: a NaN logit is never picked, a -INFINITY logit (or a bias of
 * -INFINITY) bans a token, +INFINITY is treated as the largest float.  When
 * nothing survives, the sampler falls back to the argmax of the raw logits
 * ignoring NaN (lowest id on ties), and to token 0 when every logit is NaN.
 *
 * Seeds: every seed is deterministic; the default is 42.  There is no
 * "random seed" value: a caller that wants fresh randomness passes its own
 * (for example one derived from the clock).  em_sampler_reset re-seeds, so
 * a reset sampler repeats its draws.
 *
 * All buffers are sized for n_vocab at init; sampling allocates nothing.
 */
#include "core/core.h"
#include "core/cpu.h"
#include "sample/weights.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

/* One candidate token while the chain narrows the set. */
typedef struct em_cand {
    float logit; /* after bias and penalties; never NaN */
    em_token id;
} em_cand;

struct em_sampler {
    em_sampler_params params;  /* copy; logit_bias points at bias below     */
    int32_t n_vocab;
    em_logit_bias *bias;       /* [n_logit_bias] validated copy             */
    em_cand *cand;             /* [n_vocab] scratch candidate list          */
    float *w;                  /* [n_vocab] weights of the draw (unnormalized
                                  exp((logit - max) / temp)); for the whole-row
                                  draw also the biased row before that       */
    float *bsum;               /* [em_draw_n_blocks(n_vocab)] block sums of w */
    int32_t *count;            /* [n_vocab] occurrences in the window       */
    em_token *window;          /* [window_cap] ring of recent tokens        */
    int32_t window_cap;        /* repeat_last_n, or 0 for none / unbounded  */
    int32_t window_len;        /* tokens currently in the ring              */
    int32_t window_head;       /* index of the oldest token in the ring     */
    uint64_t rng[4];           /* xoshiro256** state                        */
};

/* ------------------------------------------------------------- defaults */

em_sampler_params em_sampler_default_params(void) {
    em_sampler_params p;
    memset(&p, 0, sizeof p);
    p.temp = 0.8f;
    p.top_k = 40;
    p.top_p = 0.95f;
    p.min_p = 0.05f;
    p.repeat_penalty = 1.0f;
    p.repeat_last_n = 64;
    p.freq_penalty = 0.0f;
    p.presence_penalty = 0.0f;
    p.seed = 42;
    p.logit_bias = NULL;
    p.n_logit_bias = 0;
    return p;
}

/* ------------------------------------------------------------------ rng */

/* splitmix64 spreads one 64-bit seed over xoshiro's 256-bit state, so that
 * nearby seeds (1, 2, 3) still give unrelated streams. */
static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void rng_seed(em_sampler *s, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
}

static inline uint64_t rotl64(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256**: small, fast and statistically sound for sampling. */
static uint64_t rng_next(em_sampler *s) {
    uint64_t *r = s->rng;
    uint64_t result = rotl64(r[1] * 5, 7) * 9;
    uint64_t t = r[1] << 17;
    r[2] ^= r[0];
    r[3] ^= r[1];
    r[1] ^= r[2];
    r[0] ^= r[3];
    r[2] ^= t;
    r[3] = rotl64(r[3], 45);
    return result;
}

/* A uniform double in [0, 1) from the top 53 bits. */
static double rng_uniform(em_sampler *s) {
    return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* ------------------------------------------------------ init, free, reset */

static em_status validate_params(const em_sampler_params *p, int32_t n_vocab) {
    if (n_vocab <= 0)
        return em_error(EM_ERR_INVALID_ARG, "sampler: n_vocab must be positive (got %d)", n_vocab);
    if (isnan(p->temp) || isnan(p->top_p) || isnan(p->min_p))
        return em_error(EM_ERR_INVALID_ARG, "sampler: temp, top_p and min_p must not be NaN");
    if (!(p->repeat_penalty > 0.0f) || !isfinite(p->repeat_penalty))
        return em_error(EM_ERR_INVALID_ARG, "sampler: repeat_penalty must be a positive number (got %g)",
                        (double)p->repeat_penalty);
    if (!isfinite(p->freq_penalty) || !isfinite(p->presence_penalty))
        return em_error(EM_ERR_INVALID_ARG, "sampler: freq_penalty and presence_penalty must be finite");
    if (p->repeat_last_n < -1)
        return em_error(EM_ERR_INVALID_ARG, "sampler: repeat_last_n must be -1, 0 or positive (got %d)",
                        p->repeat_last_n);
    if (p->n_logit_bias < 0 || (p->n_logit_bias > 0 && !p->logit_bias))
        return em_error(EM_ERR_INVALID_ARG, "sampler: bad logit bias list (%d entries)", p->n_logit_bias);
    for (int32_t i = 0; i < p->n_logit_bias; i++) {
        const em_logit_bias *b = &p->logit_bias[i];
        if (b->token < 0 || b->token >= n_vocab)
            return em_error(EM_ERR_INVALID_ARG, "sampler: logit bias token %d is outside the vocabulary (%d)",
                            b->token, n_vocab);
        if (isnan(b->bias))
            return em_error(EM_ERR_INVALID_ARG, "sampler: logit bias of token %d is NaN", b->token);
    }
    return EM_OK;
}

em_status em_sampler_init(em_sampler **out, const em_sampler_params *params, int32_t n_vocab) {
    if (!out) return em_error(EM_ERR_INVALID_ARG, "sampler: out is NULL");
    em_sampler_params p = params ? *params : em_sampler_default_params();
    em_status st = validate_params(&p, n_vocab);
    if (st != EM_OK) return st;

    em_sampler *s = calloc(1, sizeof *s);
    if (!s) return em_error(EM_ERR_NOMEM, "sampler: out of memory");
    s->n_vocab = n_vocab;
    s->window_cap = p.repeat_last_n > 0 ? p.repeat_last_n : 0;
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    s->w = malloc((size_t)n_vocab * sizeof *s->w);
    s->bsum = malloc((size_t)em_draw_n_blocks(n_vocab) * sizeof *s->bsum);
    s->count = calloc((size_t)n_vocab, sizeof *s->count);
    if (s->window_cap > 0) s->window = malloc((size_t)s->window_cap * sizeof *s->window);
    if (p.n_logit_bias > 0) s->bias = malloc((size_t)p.n_logit_bias * sizeof *s->bias);
    if (!s->cand || !s->w || !s->bsum || !s->count || (s->window_cap > 0 && !s->window) ||
        (p.n_logit_bias > 0 && !s->bias)) {
        em_sampler_free(s);
        return em_error(EM_ERR_NOMEM, "sampler: out of memory for a vocabulary of %d", n_vocab);
    }
    if (p.n_logit_bias > 0) memcpy(s->bias, p.logit_bias, (size_t)p.n_logit_bias * sizeof *s->bias);
    p.logit_bias = s->bias;
    s->params = p;
    rng_seed(s, p.seed);
    *out = s;
    return EM_OK;
}

void em_sampler_free(em_sampler *s) {
    if (!s) return;
    free(s->cand);
    free(s->w);
    free(s->bsum);
    free(s->count);
    free(s->window);
    free(s->bias);
    free(s);
}

void em_sampler_reset(em_sampler *s) {
    if (!s) return;
    memset(s->count, 0, (size_t)s->n_vocab * sizeof *s->count);
    s->window_len = 0;
    s->window_head = 0;
    rng_seed(s, s->params.seed);
}

/* The penalty window: a ring of the last repeat_last_n tokens with a count
 * per token kept in step, so sampling never rescans the history.  With
 * repeat_last_n == -1 the counts simply never drop. */
void em_sampler_accept(em_sampler *s, em_token t) {
    if (!s || t < 0 || t >= s->n_vocab) return;
    if (s->params.repeat_last_n == 0) return;
    if (s->params.repeat_last_n < 0) {
        if (s->count[t] < INT32_MAX) s->count[t]++;
        return;
    }
    if (s->window_len == s->window_cap) {
        em_token old = s->window[s->window_head];
        s->count[old]--;
        s->window[s->window_head] = t;
        s->window_head = (s->window_head + 1) % s->window_cap;
    } else {
        s->window[(s->window_head + s->window_len) % s->window_cap] = t;
        s->window_len++;
    }
    s->count[t]++;
}

/* ------------------------------------------------------------- ordering */

/* The order every step uses: higher logit first, then lower id, which makes
 * the order total and every result independent of the input order. */
static inline bool cand_better(const em_cand *a, const em_cand *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

/* Restores the heap property below node i.  With root_best the root is the
 * best candidate (for popping the best ones in turn), otherwise the worst
 * (for keeping the best k). */
static void sift_down(em_cand *c, int32_t n, int32_t i, bool root_best) {
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, m = i;
        if (root_best) {
            if (l < n && cand_better(&c[l], &c[m])) m = l;
            if (r < n && cand_better(&c[r], &c[m])) m = r;
        } else {
            if (l < n && cand_better(&c[m], &c[l])) m = l;
            if (r < n && cand_better(&c[m], &c[r])) m = r;
        }
        if (m == i) return;
        em_cand t = c[i];
        c[i] = c[m];
        c[m] = t;
        i = m;
    }
}

static void heapify(em_cand *c, int32_t n, bool root_best) {
    for (int32_t i = n / 2 - 1; i >= 0; i--) sift_down(c, n, i, root_best);
}

/* Moves the best k candidates to c[0..k) in O(n log k). */
static void keep_top_k(em_cand *c, int32_t n, int32_t k) {
    heapify(c, k, false);
    for (int32_t j = k; j < n; j++) {
        if (cand_better(&c[j], &c[0])) {
            c[0] = c[j];
            sift_down(c, k, 0, false);
        }
    }
}

/* ---------------------------------------------------------------- sample */

/* Argmax of raw logits skipping NaN, lowest id on ties; 0 if all are NaN. */
static em_token raw_argmax(const float *logits, int32_t n) {
    em_token best = -1;
    for (int32_t i = 0; i < n; i++) {
        if (isnan(logits[i])) continue;
        if (best < 0 || logits[i] > logits[best]) best = i;
    }
    return best < 0 ? 0 : best;
}

/* A logit l of a token seen k > 0 times in the window, penalized. */
static inline float penalized(const em_sampler_params *p, float l, int32_t k) {
    l = l <= 0.0f ? l * p->repeat_penalty : l / p->repeat_penalty;
    return l - ((float)k * p->freq_penalty + p->presence_penalty);
}

static inline bool wants_penalty(const em_sampler_params *p) {
    return p->repeat_last_n != 0 &&
           (p->repeat_penalty != 1.0f || p->freq_penalty != 0.0f || p->presence_penalty != 0.0f);
}

/* The logits with bias and penalties applied, into row[0 .. n_vocab), NaN
 * and infinities left as they are (build_candidates' values). */
static void adjusted_row(const em_sampler *s, const float *logits, float *row) {
    const em_sampler_params *p = &s->params;
    memcpy(row, logits, (size_t)s->n_vocab * sizeof *row);
    for (int32_t i = 0; i < p->n_logit_bias; i++) row[s->bias[i].token] += s->bias[i].bias;
    if (wants_penalty(p))
        for (int32_t i = 0; i < s->n_vocab; i++)
            if (s->count[i] > 0) row[i] = penalized(p, row[i], s->count[i]);
}

/* Copies the logits with bias and penalties applied into the candidate
 * list, dropping NaN and -inf; returns how many survive. */
static int32_t build_candidates(em_sampler *s, const float *logits) {
    const em_sampler_params *p = &s->params;
    em_cand *c = s->cand;
    int32_t n = s->n_vocab;
    for (int32_t i = 0; i < n; i++) {
        c[i].logit = logits[i];
        c[i].id = i;
    }
    for (int32_t i = 0; i < p->n_logit_bias; i++) c[s->bias[i].token].logit += s->bias[i].bias;

    if (wants_penalty(p))
        for (int32_t i = 0; i < n; i++)
            if (s->count[i] > 0) c[i].logit = penalized(p, c[i].logit, s->count[i]);

    int32_t m = 0;
    for (int32_t i = 0; i < n; i++) {
        float l = c[i].logit;
        if (isnan(l) || l == -INFINITY) continue;
        if (l == INFINITY) l = FLT_MAX;
        c[m].logit = l;
        c[m].id = c[i].id;
        m++;
    }
    return m;
}

/* build_candidates followed by keep_top_k, for a row without bias or
 * penalties, reading the logits in place: the survivors (NaN and -inf
 * dropped, +inf as FLT_MAX) fill c in id order up to k; the next one
 * turns c[0..k) into keep_top_k's heap, and every later survivor goes
 * through it in the same order, so c ends exactly as the two steps leave
 * it.  Most of the vocabulary is not better than the heap's worst, which
 * a branch-free test finds for a block of TOPK_BLOCK logits at a time.
 * Returns min(k, survivors). */
#define TOPK_BLOCK 64
static int32_t top_k_from_logits(em_cand *c, const float *logits, int32_t n, int32_t k) {
    int32_t m = 0, i = 0;
    for (; i < n && m < k; i++) {
        float l = logits[i];
        if (isnan(l) || l == -INFINITY) continue;
        c[m].logit = l == INFINITY ? FLT_MAX : l;
        c[m].id = i;
        m++;
    }
    /* keep_top_k runs only when more than k survive. */
    while (i < n && (isnan(logits[i]) || logits[i] == -INFINITY)) i++;
    if (i == n) return m;
    heapify(c, k, false);
    for (; i < n; i++) {
        if (i % TOPK_BLOCK == 0 && i + TOPK_BLOCK <= n) {
            const float thr = c[0].logit;
            int any = 0;
            for (int32_t j = i; j < i + TOPK_BLOCK; j++) any |= logits[j] > thr;
            if (!any) {
                i += TOPK_BLOCK - 1;
                continue;
            }
        }
        float l = logits[i];
        if (!(l > c[0].logit)) continue; /* NaN, -inf and the not better */
        em_cand t = {.logit = l == INFINITY ? FLT_MAX : l, .id = i};
        if (cand_better(&t, &c[0])) {
            c[0] = t;
            sift_down(c, k, 0, false);
        }
    }
    return k;
}

/* Greedy choice without bias or penalties, straight from the logits: the
 * token build_candidates and the argmax below would pick (NaN and -inf
 * dropped, +inf counted as FLT_MAX, lowest id on ties), without copying
 * the vocabulary into the candidate list on every step.
 *
 * It runs once per generated token over the whole vocabulary, so it is
 * written for speed: first the largest value (em_row_max, in SIMD lanes:
 * a NaN never wins a >, so it is skipped as the scalar loop skips it),
 * then the first position holding it, searched block by block with a
 * branch-free test per block. */
#define ARGMAX_BLOCK 256

/* The first i with logits[i] equal to want (or, for a want of FLT_MAX,
 * equal to FLT_MAX or +inf, which count the same); -1 if none. */
static int32_t first_equal(const float *logits, int32_t n, float want) {
    const bool top = want == FLT_MAX;
    for (int32_t b = 0; b < n; b += ARGMAX_BLOCK) {
        const int32_t e = n - b < ARGMAX_BLOCK ? n : b + ARGMAX_BLOCK;
        int hit = 0;
        for (int32_t i = b; i < e; i++) hit |= (logits[i] == want) | (top & (logits[i] == INFINITY));
        if (!hit) continue;
        for (int32_t i = b; i < e; i++)
            if (logits[i] == want || (top && logits[i] == INFINITY)) return i;
    }
    return -1;
}

static em_token plain_argmax(const float *logits, int32_t n) {
    float mx = em_row_max(logits, n, em_cpu_features());
    /* Nothing but NaN and -inf: the raw argmax's safe answer. */
    if (mx == -INFINITY) return raw_argmax(logits, n);
    if (mx == INFINITY) mx = FLT_MAX;
    int32_t best = first_equal(logits, n, mx);
    return best < 0 ? raw_argmax(logits, n) : best;
}

/* The draw every softmax path ends with: the first of w[0..n) whose
 * running sum of weights exceeds u (u uniform in [0, sum of the weights)),
 * skipping weights that round to 0.  Rounding can leave u at the very
 * top, past the running sum: then the last one with weight is taken.
 * Returns its index (the caller maps it to a token id), or -1 when no
 * weight is positive. */
static int32_t weighted_pick(const float *w, int32_t n, double u) {
    double acc = 0.0;
    int32_t last = -1;
    for (int32_t i = 0; i < n; i++) {
        if (w[i] <= 0.0f) continue;
        acc += w[i];
        last = i;
        if (u < acc) return i;
    }
    return last;
}

/* The tempered softmax draw over a whole row (temperature > 0, no top-k,
 * min-p or top-p), the OpenAI defaults' path: one pass of float weights
 * (sample/weights.h) with a sum per block of EM_DRAW_BLOCK tokens, then a
 * uniform draw against the running sum of the blocks, and inside the block
 * it falls in against the running sum of its weights.  Every token gets
 * its weight in the token order (NaN and -inf weigh 0), so the row's
 * layout and nothing else decides the blocks, and a seed draws the same
 * tokens whatever else runs.  row may be s->w (a biased row): the weights
 * replace it.  Returns -1 when no weight is positive (nothing but NaN and
 * -inf). */
static em_token draw_row(em_sampler *s, const float *row) {
    const int32_t n = s->n_vocab, nb = em_draw_n_blocks(n);
    float mx = em_row_max(row, n, em_cpu_features());
    if (mx == -INFINITY) return -1;
    if (mx == INFINITY) mx = FLT_MAX;
    float scale = 1.0f / s->params.temp;
    if (!(scale <= FLT_MAX)) scale = FLT_MAX; /* a subnormal temperature */
    em_draw_weights(row, n, mx, scale, s->w, s->bsum, em_cpu_features());
    double sum = 0.0;
    for (int32_t b = 0; b < nb; b++) sum += s->bsum[b];
    double u = rng_uniform(s) * sum, acc = 0.0;
    int32_t at = -1; /* the block u falls in, or the last one with weight */
    for (int32_t b = 0; b < nb; b++) {
        if (s->bsum[b] <= 0.0f) continue;
        at = b;
        if (u < acc + s->bsum[b]) break;
        acc += s->bsum[b];
    }
    if (at < 0) return -1;
    const int32_t i0 = at * EM_DRAW_BLOCK, len = n - i0 < EM_DRAW_BLOCK ? n - i0 : EM_DRAW_BLOCK;
    /* u past the block's own running sum (it was added in another order)
     * takes the block's last weighted token, as weighted_pick does. */
    const int32_t pick = weighted_pick(s->w + i0, len, u > acc ? u - acc : 0.0);
    return pick < 0 ? -1 : i0 + pick;
}

em_token em_sampler_sample(em_sampler *s, const float *logits) {
    if (!s || !logits) return 0;
    const em_sampler_params *p = &s->params;
    em_cand *c = s->cand;
    const bool plain = p->n_logit_bias == 0 && !wants_penalty(p);
    if (!(p->temp > 0.0f) && plain) return plain_argmax(logits, s->n_vocab);
    if (p->temp > 0.0f && (p->top_k <= 0 || p->top_k >= s->n_vocab) && !(p->min_p > 0.0f) && !(p->top_p < 1.0f)) {
        /* The whole row: in place, or biased and penalized first. */
        if (!plain) adjusted_row(s, logits, s->w);
        em_token t = draw_row(s, plain ? logits : s->w);
        /* Nothing survived: the raw logits' argmax, as below. */
        return t >= 0 ? t : raw_argmax(logits, s->n_vocab);
    }
    int32_t n;
    bool cut = false; /* top-k already applied */
    if (plain && p->temp > 0.0f && p->top_k > 0 && p->top_k < s->n_vocab) {
        n = top_k_from_logits(c, logits, s->n_vocab, p->top_k);
        cut = true;
    } else {
        n = build_candidates(s, logits);
    }
    if (n == 0) return raw_argmax(logits, s->n_vocab);

    if (!(p->temp > 0.0f)) {
        /* Candidates are in id order, so a strict > keeps the lowest id. */
        int32_t best = 0;
        for (int32_t i = 1; i < n; i++)
            if (c[i].logit > c[best].logit) best = i;
        return c[best].id;
    }

    if (!cut && p->top_k > 0 && p->top_k < n) {
        keep_top_k(c, n, p->top_k);
        n = p->top_k;
    }

    float max = c[0].logit;
    for (int32_t i = 1; i < n; i++) max = c[i].logit > max ? c[i].logit : max;

    /* The untempered softmax of the top-k set, which top-p measures (and
     * only top-p: a pass of exp over the vocabulary saved otherwise). */
    double total = 0.0;
    if (p->top_p < 1.0f)
        for (int32_t i = 0; i < n; i++) total += exp((double)c[i].logit - (double)max);

    /* Min-p keeps exp(l - max) >= min_p, i.e. p >= min_p * p_max.  That set
     * is a best-first prefix, as is top-p's, so filtering min-p first and
     * then cutting top-p inside it (against the top-k total) yields exactly
     * top-p followed by min-p while sorting fewer candidates. */
    if (p->min_p > 0.0f) {
        /* A min_p above 1 would exclude everything; it keeps the max. */
        double thr = p->min_p > 1.0f ? 1.0 : (double)p->min_p;
        int32_t m = 0;
        for (int32_t i = 0; i < n; i++)
            if (exp((double)c[i].logit - (double)max) >= thr) c[m++] = c[i];
        n = m; /* at least the max, whose weight is exactly 1 */
    }

    if (p->top_p < 1.0f) {
        /* Pop the best candidates one at a time until their mass reaches
         * top_p; popped ones collect at the end of the array, best last. */
        heapify(c, n, true);
        double target = (double)p->top_p * total, cum = 0.0;
        int32_t end = n;
        while (end > 0) {
            cum += exp((double)c[0].logit - (double)max);
            em_cand t = c[0];
            c[0] = c[end - 1];
            c[end - 1] = t;
            end--;
            sift_down(c, end, 0, true);
            if (cum >= target) break;
        }
        c += end;
        n -= end;
    }

    /* Temperature, then a draw from the renormalized weights. */
    double inv_temp = 1.0 / (double)p->temp, sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        s->w[i] = (float)exp(((double)c[i].logit - (double)max) * inv_temp);
        sum += s->w[i];
    }
    const int32_t pick = weighted_pick(s->w, n, rng_uniform(s) * sum);
    if (pick >= 0) return c[pick].id;
    /* Unreachable in exact arithmetic (the max has weight 1); be safe. */
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (cand_better(&c[i], &c[best])) best = i;
    return c[best].id;
}
