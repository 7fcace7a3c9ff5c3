/*
 * tensor.h - the two types the forward-pass operations share with the
 * model: a weight tensor (a view of quantized rows) and how RoPE pairs
 * dimensions.  They live in core, below both src/ops and src/model, so
 * that the operations need not include the model (model -> ops -> core,
 * never back up).
 */
#ifndef EM_CORE_TENSOR_H
#define EM_CORE_TENSOR_H

#include "ember.h"

#include <stddef.h>
#include <stdint.h>

/* How RoPE pairs dimensions: adjacent (x[2i], x[2i+1]) or halves
 * (x[i], x[i + d/2]). */
typedef enum em_rope_type { EM_ROPE_NORM, EM_ROPE_NEOX } em_rope_type;

/* A weight tensor: a view into the mapped file, or (pack > 0) into the
 * model's packed copy of its matrices (em_model_repack). */
typedef struct em_tensor {
    em_type type;
    int64_t ne[4];       /* elements per dim; ne[0] is the row length      */
    size_t row_bytes;    /* bytes of one row of ne[0] elements             */
    const void *data;    /* NULL when the model lacks this tensor          */
    size_t expert_bytes; /* 3-D: bytes from one expert's matrix to the next,
                          * 0: ne[1] * row_bytes (a view into a fused
                          * gate-and-up tensor steps further)              */
    int32_t pack;        /* rows per group of a packed layout (quant/pack.h),
                          * 0: the file's layout                            */
} em_tensor;

#endif
