/*
 * weights.h - the tempered softmax weights of a whole row of logits, for
 * the sampler's draw over the full vocabulary (temperature > 0 with no
 * top-k, top-p or min-p cut: the OpenAI defaults).
 *
 * For each logit l of the row, with mx the row's largest logit (+inf
 * counted as FLT_MAX) and scale = 1 / temperature:
 *
 *   w = exp((min(l, FLT_MAX) - mx) * scale)     in float,
 *
 * 0 for NaN and -inf, and 0 where the argument is below -87.3 (e^-87.3 is
 * about 1e-38 of the largest weight, which is exactly 1).  exp is the one
 * the attention kernels use (core/arch/x86/math_avx2.h: Taylor series
 * to r^7, relative error a few float ulp).
 *
 * Alongside, one float sum per block of EM_DRAW_BLOCK weights, so that the
 * draw finds its block by a walk over n / 64 sums and then walks 64
 * weights, instead of walking the whole vocabulary.  A block sum is added
 * in one fixed order: lane j (0..15) adds weights j, 16 + j, 32 + j and
 * 48 + j of the block; then lanes j and j + 8, j and j + 4, j and j + 2,
 * and the last two.  The AVX-512 and AVX2 kernels and the scalar twin all
 * compute exactly that, operation for operation, so every kernel set gives
 * the same bits and a seed draws the same tokens on every x86 machine.
 */
#ifndef EM_SAMPLE_WEIGHTS_H
#define EM_SAMPLE_WEIGHTS_H

#include <stdint.h>

#define EM_DRAW_BLOCK 64

/* Block sums for a row of n weights. */
static inline int32_t em_draw_n_blocks(int32_t n) {
    return (n + EM_DRAW_BLOCK - 1) / EM_DRAW_BLOCK;
}

/*
 * w[0 .. n) (the weights above of x[0 .. n); w may be x) and
 * bsum[0 .. em_draw_n_blocks(n)) (the block sums), with the kernel set
 * that `features` (em_cpu_features() bits) allows; the scalar twin for
 * features 0.
 */
void em_draw_weights(const float *x, int32_t n, float mx, float scale, float *w, float *bsum, unsigned features);

/* The largest of x[0 .. n), NaN skipped; -inf when nothing else is there
 * (the greedy pick and the draw both start from it).  The kernel sets and
 * the scalar loop give the same value (a zero's sign aside, which no use
 * of it can see). */
float em_row_max(const float *x, int32_t n, unsigned features);

/* The kernels, for whole blocks only: nblk blocks of EM_DRAW_BLOCK. */
void em_draw_weights_avx2(const float *x, int64_t nblk, float mx, float scale, float *w, float *bsum);
void em_draw_weights_avx512(const float *x, int64_t nblk, float mx, float scale, float *w, float *bsum);
/* The running maximum m of x[0 .. 16 * nv) (m = max(x, m) per lane, which
 * skips a NaN x), from m. */
float em_row_max_avx2(const float *x, int64_t nv, float m);
float em_row_max_avx512(const float *x, int64_t nv, float m);

#endif
