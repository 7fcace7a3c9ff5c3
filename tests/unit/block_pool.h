/*
 * block_pool.h - quantized blocks made once per type, shared by the kernel
 * tests (test_gemm, test_pack).  The quantizer's search for the K types'
 * scales costs more than the products under test (a third to 40% of those
 * tests' time under the sanitizers), so their quantized rows are drawn
 * block by block from TEST_POOL_BLOCKS blocks that the real quantizer wrote
 * once.  Every block is quantized on its own, so each is what a quantized
 * row would hold.  Include after test.h and quant/quant.h; the including
 * test passes its own random generator and frees the pools at its end.
 */
#ifndef EM_TEST_BLOCK_POOL_H
#define EM_TEST_BLOCK_POOL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { TEST_POOL_BLOCKS = 512 };

/* One pool per type, TEST_POOL_BLOCKS blocks each; NULL until first used. */
static uint8_t *test_block_pools[EM_TYPE_COUNT];

/* The pool of type t, made on first use from rand's floats in [-1, 1), one
 * in five scaled by 5 so that blocks hold outliers as real weights do. */
static const uint8_t *test_block_pool(em_type t, float (*rand)(void)) {
    if (!test_block_pools[t]) {
        const int64_t n = TEST_POOL_BLOCKS * em_get_type_traits(t)->block_size;
        float *tmp = malloc((size_t)n * sizeof(float));
        test_block_pools[t] = malloc(em_row_size(t, n));
        for (int64_t i = 0; i < n; i++) tmp[i] = rand() * (1 + (i % 5 == 0) * 4);
        CHECK_OK(em_quantize_row(t, tmp, test_block_pools[t], n, NULL));
        free(tmp);
    }
    return test_block_pools[t];
}

/* Fills one row of k elements of type t with blocks of its pool, each
 * picked by next (the test's own generator), so rows differ from each
 * other as quantized weights do. */
static void test_pool_row(em_type t, int64_t k, uint8_t *row, float (*rand)(void), uint32_t (*next)(void)) {
    const size_t bs = em_get_type_traits(t)->type_size;
    const uint8_t *pool = test_block_pool(t, rand);
    for (int64_t b = 0; b < k / em_get_type_traits(t)->block_size; b++)
        memcpy(row + (size_t)b * bs, pool + (size_t)(next() % TEST_POOL_BLOCKS) * bs, bs);
}

static void test_block_pools_free(void) {
    for (int t = 0; t < EM_TYPE_COUNT; t++) free(test_block_pools[t]);
}

#endif
