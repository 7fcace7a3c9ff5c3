/*
 * gemm_generic.c - the portable GEMM (a loop of em_vec_dot), the CPU
 * feature check, and em_gemm's choice of kernel set.
 *
 * The generic product still works tile by tile: a few weight rows are
 * dotted with every activation row before moving on, so those weight rows
 * stay in cache while the batch passes over them.  Types without a SIMD
 * GEMM kernel (Q4_1, Q5_0, Q2_K, IQ4_XS ...) take this path and still get
 * em_vec_dot's own SIMD kernels.
 */
#include "quant/gemm.h"
#include "quant/quant.h"

#include <pthread.h>
#include <stdlib.h>

#define EM_GENERIC_TILE 4 /* weight rows kept hot across activation rows */

void em_gemm_generic(em_type t, int64_t k, const void *w, size_t w_stride, int64_t nw, const void *a,
                     size_t a_stride, int64_t na, float *out, int64_t out_stride) {
    for (int64_t j0 = 0; j0 < nw; j0 += EM_GENERIC_TILE) {
        int64_t j1 = EM_MIN(j0 + EM_GENERIC_TILE, nw);
        for (int64_t r = 0; r < na; r++) {
            const void *ar = (const char *)a + (size_t)r * a_stride;
            for (int64_t j = j0; j < j1; j++)
                out[r * out_stride + j] = em_vec_dot(t, k, (const char *)w + (size_t)j * w_stride, ar);
        }
    }
}

/* ------------------------------------------------------- CPU features */

#if defined(EM_HAVE_X86_GEMM)
#include "quant/arch/x86/dot_x86.h"

/* The CPUID/XCR0 check is shared with em_vec_dot's dispatcher. */
static unsigned detect_x86(void) {
    em_x86_features f;
    em_x86_cpu_features(&f);
    unsigned bits = 0;
    if (f.avx2) bits |= EM_CPU_AVX2;
    if (f.avx2 && f.avx512 && f.avx512_vnni) bits |= EM_CPU_AVX512;
    return bits;
}
#endif

static unsigned hw_features;
static pthread_once_t hw_once = PTHREAD_ONCE_INIT;

static void hw_detect(void) {
#if defined(EM_HAVE_X86_GEMM)
    hw_features = detect_x86();
#endif
}

/* What the CPU has, before EMBER_CPU narrows it. */
static unsigned cpu_hw_features(void) {
    pthread_once(&hw_once, hw_detect);
    return hw_features;
}

unsigned em_cpu_features(void) {
    unsigned f = cpu_hw_features();
    const char *force = getenv("EMBER_CPU");
    if (force && strcmp(force, "generic") == 0) return 0;
    if (force && strcmp(force, "avx2") == 0) return f & EM_CPU_AVX2;
    return f;
}

/* ------------------------------------------------------------ dispatch */

static em_gemm_fn gemm_table[EM_TYPE_COUNT]; /* NULL: use em_gemm_generic */
static const char *gemm_isa = "generic";
static pthread_once_t gemm_once = PTHREAD_ONCE_INIT;

/* Fills the table for one kernel set; false when this CPU lacks it. */
static bool install(const char *isa, unsigned features) {
    em_gemm_fn t[EM_TYPE_COUNT] = {0};
    if (strcmp(isa, "generic") == 0) {
        /* nothing: every type takes em_gemm_generic */
#if defined(EM_HAVE_X86_GEMM)
    } else if (strcmp(isa, "avx2") == 0 && (features & EM_CPU_AVX2)) {
        t[EM_TYPE_F32] = em_gemm_f32_avx2;
        t[EM_TYPE_F16] = em_gemm_f16_avx2;
        t[EM_TYPE_BF16] = em_gemm_bf16_avx2;
        t[EM_TYPE_Q8_0] = em_gemm_q8_0_avx2;
        t[EM_TYPE_Q4_0] = em_gemm_q4_0_avx2;
        t[EM_TYPE_Q4_K] = em_gemm_q4_k_avx2;
        t[EM_TYPE_Q5_K] = em_gemm_q5_k_avx2;
        t[EM_TYPE_Q6_K] = em_gemm_q6_k_avx2;
    } else if (strcmp(isa, "avx512") == 0 && (features & EM_CPU_AVX512)) {
        t[EM_TYPE_F32] = em_gemm_f32_avx512;
        t[EM_TYPE_F16] = em_gemm_f16_avx512;
        t[EM_TYPE_BF16] = em_gemm_bf16_avx512;
        t[EM_TYPE_Q8_0] = em_gemm_q8_0_avx512;
        t[EM_TYPE_Q4_0] = em_gemm_q4_0_avx512;
        t[EM_TYPE_Q4_K] = em_gemm_q4_k_avx512;
        t[EM_TYPE_Q5_K] = em_gemm_q5_k_avx512;
        t[EM_TYPE_Q6_K] = em_gemm_q6_k_avx512;
#endif
    } else {
        return false;
    }
    memcpy(gemm_table, t, sizeof t);
    gemm_isa = strcmp(isa, "avx512") == 0 ? "avx512" : strcmp(isa, "avx2") == 0 ? "avx2" : "generic";
    return true;
}

static void select_best(unsigned features) {
    if (!install("avx512", features) && !install("avx2", features)) install("generic", features);
}

static void select_default(void) { select_best(em_cpu_features()); }

int em_gemm_select_isa(const char *isa) {
    pthread_once(&gemm_once, select_default);
    if (!isa) {
        select_best(cpu_hw_features());
        return 0;
    }
    return install(isa, cpu_hw_features()) ? 0 : -1;
}

const char *em_gemm_isa(void) {
    pthread_once(&gemm_once, select_default);
    return gemm_isa;
}

em_gemm_fn em_gemm_kernel(em_type t) {
    pthread_once(&gemm_once, select_default);
    return (unsigned)t < (unsigned)EM_TYPE_COUNT ? gemm_table[t] : NULL;
}

void em_gemm(em_type t, int64_t k, const void *w, size_t w_stride, int64_t nw, const void *a, size_t a_stride,
             int64_t na, float *out, int64_t out_stride) {
    em_gemm_fn fn = em_gemm_kernel(t);
    if (fn)
        fn(k, w, w_stride, nw, a, a_stride, na, out, out_stride);
    else
        em_gemm_generic(t, k, w, w_stride, nw, a, a_stride, na, out, out_stride);
}
