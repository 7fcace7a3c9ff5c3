/*
 * types.c - the table of tensor element types: names, block geometry, what
 * ember can do with each, and which activation format each is dotted with.
 *
 * The ids are GGUF's (ggml_type) numbers.  Types ember cannot convert
 * (the IQ1/IQ2/IQ3 families, the integer types) still have their names and
 * sizes here so that the GGUF reader can validate tensor sizes and report
 * "unsupported type IQ2_XXS" instead of "bad file".  Ids 4 and 5 were
 * retired by ggml and are holes.
 */
#include "quant/quant.h"
#include "quant/blocks.h"

/* Shorthand for one table row; vdt is the activation type for em_vec_dot. */
#define EM_TRAITS(nm, bs, ts, q, deq, qnt, vdt) \
    { nm, bs, ts, q, deq, qnt, vdt }

static const em_type_traits em_traits_table[EM_TYPE_COUNT] = {
    [EM_TYPE_F32] = EM_TRAITS("F32", 1, 4, false, true, true, EM_TYPE_F32),
    [EM_TYPE_F16] = EM_TRAITS("F16", 1, 2, false, true, true, EM_TYPE_F32),
    [EM_TYPE_Q4_0] = EM_TRAITS("Q4_0", EM_QK4_0, sizeof(em_block_q4_0), true, true, true,
                               EM_TYPE_Q8_0),
    [EM_TYPE_Q4_1] = EM_TRAITS("Q4_1", EM_QK4_1, sizeof(em_block_q4_1), true, true, true,
                               EM_TYPE_Q8_1),
    [EM_TYPE_Q5_0] = EM_TRAITS("Q5_0", EM_QK5_0, sizeof(em_block_q5_0), true, true, true,
                               EM_TYPE_Q8_0),
    [EM_TYPE_Q5_1] = EM_TRAITS("Q5_1", EM_QK5_1, sizeof(em_block_q5_1), true, true, true,
                               EM_TYPE_Q8_1),
    [EM_TYPE_Q8_0] = EM_TRAITS("Q8_0", EM_QK8_0, sizeof(em_block_q8_0), true, true, true,
                               EM_TYPE_Q8_0),
    [EM_TYPE_Q8_1] = EM_TRAITS("Q8_1", EM_QK8_1, sizeof(em_block_q8_1), true, true, true,
                               EM_TYPE_Q8_1),
    [EM_TYPE_Q2_K] = EM_TRAITS("Q2_K", EM_QK_K, sizeof(em_block_q2_k), true, true, true,
                               EM_TYPE_Q8_K),
    [EM_TYPE_Q3_K] = EM_TRAITS("Q3_K", EM_QK_K, sizeof(em_block_q3_k), true, true, true,
                               EM_TYPE_Q8_K),
    [EM_TYPE_Q4_K] = EM_TRAITS("Q4_K", EM_QK_K, sizeof(em_block_q4_k), true, true, true,
                               EM_TYPE_Q8_K),
    [EM_TYPE_Q5_K] = EM_TRAITS("Q5_K", EM_QK_K, sizeof(em_block_q5_k), true, true, true,
                               EM_TYPE_Q8_K),
    [EM_TYPE_Q6_K] = EM_TRAITS("Q6_K", EM_QK_K, sizeof(em_block_q6_k), true, true, true,
                               EM_TYPE_Q8_K),
    [EM_TYPE_Q8_K] = EM_TRAITS("Q8_K", EM_QK_K, sizeof(em_block_q8_k), true, true, true,
                               EM_TYPE_Q8_K),
    /* Sizes of the grid-based IQ types, so files using them can be parsed. */
    [EM_TYPE_IQ2_XXS] = EM_TRAITS("IQ2_XXS", EM_QK_K, 2 + EM_QK_K / 4, true, false, false,
                                  EM_TYPE_Q8_K),
    [EM_TYPE_IQ2_XS] = EM_TRAITS("IQ2_XS", EM_QK_K, 2 + EM_QK_K / 4 + EM_QK_K / 32, true,
                                 false, false, EM_TYPE_Q8_K),
    [EM_TYPE_IQ3_XXS] = EM_TRAITS("IQ3_XXS", EM_QK_K, 2 + EM_QK_K / 4 + EM_QK_K / 8, true,
                                  false, false, EM_TYPE_Q8_K),
    [EM_TYPE_IQ1_S] = EM_TRAITS("IQ1_S", EM_QK_K, 2 + EM_QK_K / 8 + EM_QK_K / 16, true,
                                false, false, EM_TYPE_Q8_K),
    [EM_TYPE_IQ4_NL] = EM_TRAITS("IQ4_NL", EM_QK4_NL, sizeof(em_block_iq4_nl), true, true,
                                 true, EM_TYPE_Q8_0),
    [EM_TYPE_IQ3_S] = EM_TRAITS("IQ3_S", EM_QK_K,
                                2 + EM_QK_K / 4 + EM_QK_K / 8 + EM_QK_K / 32 + EM_QK_K / 64,
                                true, false, false, EM_TYPE_Q8_K),
    [EM_TYPE_IQ2_S] = EM_TRAITS("IQ2_S", EM_QK_K, 2 + EM_QK_K / 4 + EM_QK_K / 16, true,
                                false, false, EM_TYPE_Q8_K),
    [EM_TYPE_IQ4_XS] = EM_TRAITS("IQ4_XS", EM_QK_K, sizeof(em_block_iq4_xs), true, true,
                                 true, EM_TYPE_Q8_K),
    [EM_TYPE_I8] = EM_TRAITS("I8", 1, 1, false, false, false, EM_TYPE_I8),
    [EM_TYPE_I16] = EM_TRAITS("I16", 1, 2, false, false, false, EM_TYPE_I16),
    [EM_TYPE_I32] = EM_TRAITS("I32", 1, 4, false, false, false, EM_TYPE_I32),
    [EM_TYPE_I64] = EM_TRAITS("I64", 1, 8, false, false, false, EM_TYPE_I64),
    [EM_TYPE_F64] = EM_TRAITS("F64", 1, 8, false, false, false, EM_TYPE_F64),
    [EM_TYPE_IQ1_M] = EM_TRAITS("IQ1_M", EM_QK_K, EM_QK_K / 8 + EM_QK_K / 16 + EM_QK_K / 32,
                                true, false, false, EM_TYPE_Q8_K),
    [EM_TYPE_BF16] = EM_TRAITS("BF16", 1, 2, false, true, true, EM_TYPE_F32),
};

/* The IQ4_NL/IQ4_XS levels: a fixed non-uniform grid, denser near zero,
 * chosen by ggml to fit the bell-shaped distribution of weights. */
const int8_t em_iq4nl_values[16] = {
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
};

const em_type_traits *em_get_type_traits(em_type t) {
    /* The cast to unsigned rejects negative ids as well as large ones. */
    if ((unsigned)t >= (unsigned)EM_TYPE_COUNT) return NULL;
    const em_type_traits *tr = &em_traits_table[t];
    return tr->name ? tr : NULL;
}

const char *em_type_name(em_type t) {
    const em_type_traits *tr = em_get_type_traits(t);
    return tr ? tr->name : NULL;
}

size_t em_row_size(em_type t, int64_t n) {
    const em_type_traits *tr = em_get_type_traits(t);
    if (!tr || n < 0 || n % tr->block_size != 0) return 0;
    uint64_t bytes;
    if (!em_mul_ok((uint64_t)(n / tr->block_size), tr->type_size, &bytes) ||
        bytes > (uint64_t)SIZE_MAX)
        return 0;
    return (size_t)bytes;
}
