/*
 * dispatch.c - the kernel tables of em_vec_dot, em_quantize_row and
 * em_gemm: filled once, at start-up, with the fastest kernels the CPU may
 * run, and the scalar code for every type no SIMD kernel covers.
 *
 * Kernel sets, best first:
 *   avx512   x86-64 with AVX-512 F/BW/VL: arch/x86/dot_avx512.c for the
 *            float dots, and with VNNI the integer dots and the GEMM
 *            kernels too; the avx2 set for everything else
 *   avx2     x86-64 with AVX2, FMA and F16C: arch/x86/dot_avx2.c,
 *            quant_avx2.c and gemm_avx2.c, and the packed kernels of
 *            gemm_packed_avx2.c and gemm_packed_k_avx2.c (gemv_packed_avx2.c
 *            for one activation row of Q4_0/Q8_0; the AVX-512 set has its
 *            own for Q4_0 and keeps the AVX2 one for Q8_0, which streams
 *            faster)
 *   avxvnni  the avx2 set with the AVX-VNNI packed GEMM kernels (recent
 *            Intel client chips, which lack AVX-512)
 *   (arm)    aarch64: whatever arch/arm/ installs (em_dot_select_arm),
 *            under the name it reports
 *   generic  the scalar kernels in dot_generic.c and quantize.c, and
 *            em_gemm_generic
 *
 * Which extensions may be used is src/core/cpu.c's answer (the CPU,
 * narrowed by EMBER_CPU).  em_kernels_init fills the tables from it once
 * (pthread_once); em_model_load and em_context_init call it, so the tables
 * are fixed before any context exists, and the calls below call it too
 * for programs that use the kernels without a model.  Tests and
 * benchmarks switch sets with em_kernels_select.
 */
#include "quant/quant.h"
#include "quant/dot.h"
#include "quant/gemm.h"
#include "quant/pack.h"
#include "quant/arch/x86/dot_x86.h"

#if defined(__aarch64__) && defined(__has_include)
#if __has_include("quant/arch/arm/dot_arm.h")
#include "quant/arch/arm/dot_arm.h"
#endif
#endif

#include <pthread.h>
#include <stdatomic.h>

/* One kernel per weight type / activation type; NULL means "use the
 * scalar code".  Written only by install_set. */
static em_dot_fn dot_table[EM_TYPE_COUNT];
static em_quant_fn quant_table[EM_TYPE_COUNT];
static em_gemm_fn gemm_table[EM_TYPE_COUNT];
static em_gemm_fn packed_table[EM_TYPE_COUNT]; /* kernels of the packed layouts (pack.h) */
/* Their matrix-vector products (one activation row), where a set has one. */
typedef void (*packed_gemv_fn)(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, float *out);
static packed_gemv_fn packed_gemv_table[EM_TYPE_COUNT];
static const char *dot_isa = "generic";
static const char *gemm_isa = "generic";
static pthread_once_t kernels_once = PTHREAD_ONCE_INIT;

/* ---------------------------------------------------- installing a set */

#if defined(EM_HAVE_X86_KERNELS)
static void fill_avx2(em_dot_fn *dot, em_quant_fn *quant, em_gemm_fn *gemm) {
    dot[EM_TYPE_F32] = em_vec_dot_f32_avx2;
    dot[EM_TYPE_F16] = em_vec_dot_f16_avx2;
    dot[EM_TYPE_BF16] = em_vec_dot_bf16_avx2;
    dot[EM_TYPE_Q4_0] = em_vec_dot_q4_0_avx2;
    dot[EM_TYPE_Q4_1] = em_vec_dot_q4_1_avx2;
    dot[EM_TYPE_Q5_0] = em_vec_dot_q5_0_avx2;
    dot[EM_TYPE_Q5_1] = em_vec_dot_q5_1_avx2;
    dot[EM_TYPE_Q8_0] = em_vec_dot_q8_0_avx2;
    dot[EM_TYPE_IQ4_NL] = em_vec_dot_iq4_nl_avx2;
    dot[EM_TYPE_Q2_K] = em_vec_dot_q2_k_avx2;
    dot[EM_TYPE_Q3_K] = em_vec_dot_q3_k_avx2;
    dot[EM_TYPE_Q4_K] = em_vec_dot_q4_k_avx2;
    dot[EM_TYPE_Q5_K] = em_vec_dot_q5_k_avx2;
    dot[EM_TYPE_Q6_K] = em_vec_dot_q6_k_avx2;
    dot[EM_TYPE_IQ4_XS] = em_vec_dot_iq4_xs_avx2;
    quant[EM_TYPE_Q8_0] = em_quantize_q8_0_avx2;
    quant[EM_TYPE_Q8_1] = em_quantize_q8_1_avx2;
    quant[EM_TYPE_Q8_K] = em_quantize_q8_k_avx2;
    gemm[EM_TYPE_F32] = em_gemm_f32_avx2;
    gemm[EM_TYPE_F16] = em_gemm_f16_avx2;
    gemm[EM_TYPE_BF16] = em_gemm_bf16_avx2;
    gemm[EM_TYPE_Q8_0] = em_gemm_q8_0_avx2;
    gemm[EM_TYPE_Q4_0] = em_gemm_q4_0_avx2;
    gemm[EM_TYPE_Q4_K] = em_gemm_q4_k_avx2;
    gemm[EM_TYPE_Q5_K] = em_gemm_q5_k_avx2;
    gemm[EM_TYPE_Q6_K] = em_gemm_q6_k_avx2;
}

/* Over the avx2 set: the float dots need AVX-512 F/BW/VL, the integer
 * dots and the GEMM kernels VNNI as well. */
static void fill_avx512(em_dot_fn *dot, em_gemm_fn *gemm, em_gemm_fn *packed, bool vnni) {
    dot[EM_TYPE_F32] = em_vec_dot_f32_avx512;
    dot[EM_TYPE_F16] = em_vec_dot_f16_avx512;
    dot[EM_TYPE_BF16] = em_vec_dot_bf16_avx512;
    if (!vnni) return;
    dot[EM_TYPE_Q4_0] = em_vec_dot_q4_0_avx512;
    dot[EM_TYPE_Q4_1] = em_vec_dot_q4_1_avx512;
    dot[EM_TYPE_Q5_0] = em_vec_dot_q5_0_avx512;
    dot[EM_TYPE_Q5_1] = em_vec_dot_q5_1_avx512;
    dot[EM_TYPE_Q8_0] = em_vec_dot_q8_0_avx512;
    dot[EM_TYPE_IQ4_NL] = em_vec_dot_iq4_nl_avx512;
    dot[EM_TYPE_Q4_K] = em_vec_dot_q4_k_avx512;
    dot[EM_TYPE_Q5_K] = em_vec_dot_q5_k_avx512;
    dot[EM_TYPE_Q6_K] = em_vec_dot_q6_k_avx512;
    dot[EM_TYPE_Q2_K] = em_vec_dot_q2_k_avx512;
    dot[EM_TYPE_Q3_K] = em_vec_dot_q3_k_avx512;
    dot[EM_TYPE_IQ4_XS] = em_vec_dot_iq4_xs_avx512;
    gemm[EM_TYPE_F32] = em_gemm_f32_avx512;
    gemm[EM_TYPE_F16] = em_gemm_f16_avx512;
    gemm[EM_TYPE_BF16] = em_gemm_bf16_avx512;
    gemm[EM_TYPE_Q8_0] = em_gemm_q8_0_avx512;
    gemm[EM_TYPE_Q4_0] = em_gemm_q4_0_avx512;
    gemm[EM_TYPE_Q4_K] = em_gemm_q4_k_avx512;
    gemm[EM_TYPE_Q5_K] = em_gemm_q5_k_avx512;
    gemm[EM_TYPE_Q6_K] = em_gemm_q6_k_avx512;
    packed[EM_TYPE_Q4_0] = em_gemm_q4_0x8_lanes_avx512;
    packed[EM_TYPE_Q8_0] = em_gemm_q8_0x8_lanes_avx512;
    packed[EM_TYPE_Q4_K] = em_gemm_q4_kx16_avx512;
    packed[EM_TYPE_Q5_K] = em_gemm_q5_kx16_avx512;
    packed[EM_TYPE_Q6_K] = em_gemm_q6_kx16_avx512;
}
#endif

/* Replaces every table with the best kernels features (EM_CPU_* bits)
 * allow: the one place a kernel set is installed. */
static void install_set(unsigned features) {
    em_dot_fn dot[EM_TYPE_COUNT] = {0};
    em_quant_fn quant[EM_TYPE_COUNT] = {0};
    em_gemm_fn gemm[EM_TYPE_COUNT] = {0};
    em_gemm_fn packed[EM_TYPE_COUNT] = {0};
    packed_gemv_fn packed_gemv[EM_TYPE_COUNT] = {0};
    const char *dname = "generic", *gname = "generic";
#if defined(EM_HAVE_X86_KERNELS)
    if (features & EM_CPU_AVX2) {
        fill_avx2(dot, quant, gemm);
        packed[EM_TYPE_Q4_0] = em_gemm_q4_0x8_lanes_avx2;
        packed[EM_TYPE_Q8_0] = em_gemm_q8_0x8_lanes_avx2;
        packed[EM_TYPE_Q4_K] = em_gemm_q4_kx16_avx2;
        packed[EM_TYPE_Q5_K] = em_gemm_q5_kx16_avx2;
        packed[EM_TYPE_Q6_K] = em_gemm_q6_kx16_avx2;
        packed_gemv[EM_TYPE_Q4_0] = em_gemv_q4_0x8_avx2;
        packed_gemv[EM_TYPE_Q8_0] = em_gemv_q8_0x8_avx2;
        dname = gname = "avx2";
        if (features & EM_CPU_AVX_VNNI) {
            packed[EM_TYPE_Q4_0] = em_gemm_q4_0x8_lanes_avxvnni;
            packed[EM_TYPE_Q8_0] = em_gemm_q8_0x8_lanes_avxvnni;
            packed[EM_TYPE_Q4_K] = em_gemm_q4_kx16_avxvnni;
            packed[EM_TYPE_Q5_K] = em_gemm_q5_kx16_avxvnni;
            packed[EM_TYPE_Q6_K] = em_gemm_q6_kx16_avxvnni;
            gname = "avxvnni";
        }
        if (features & EM_CPU_AVX512) {
            const bool vnni = (features & EM_CPU_AVX512_VNNI) != 0;
            fill_avx512(dot, gemm, packed, vnni);
            quant[EM_TYPE_Q8_0] = em_quantize_q8_0_avx512;
            if (vnni) packed_gemv[EM_TYPE_Q4_0] = em_gemv_q4_0x8_avx512;
            dname = "avx512";
            if (vnni) gname = "avx512";
        }
    }
#endif
#if defined(EM_HAVE_ARM_KERNELS)
    if (features & EM_CPU_NEON) {
        const char *name = NULL;
        em_dot_select_arm(dot, &name);
        if (name) dname = name;
    }
#endif
    memcpy(dot_table, dot, sizeof dot);
    memcpy(quant_table, quant, sizeof quant);
    memcpy(gemm_table, gemm, sizeof gemm);
    memcpy(packed_table, packed, sizeof packed);
    memcpy(packed_gemv_table, packed_gemv, sizeof packed_gemv);
    dot_isa = dname;
    gemm_isa = gname;
}

static void install_default(void) {
    install_set(em_cpu_features());
    em_log(EM_LOG_DEBUG, "kernels: dot %s, gemm %s", dot_isa, gemm_isa);
}

void em_kernels_init(void) { pthread_once(&kernels_once, install_default); }

/* Contexts alive now (em_kernels_hold/release). */
static atomic_int kernel_holds;

void em_kernels_hold(void) { atomic_fetch_add(&kernel_holds, 1); }
void em_kernels_release(void) { atomic_fetch_sub(&kernel_holds, 1); }

int em_kernels_select(const char *isa) {
    em_kernels_init();
    if (atomic_load(&kernel_holds) > 0) return -2;
    const unsigned hw = em_cpu_hw_features();
    unsigned features = hw;
    if (isa && em_cpu_parse(isa, hw, &features) != EM_OK) return -1;
    install_set(features);
    return 0;
}

const char *em_vec_dot_isa(void) {
    em_kernels_init();
    return dot_isa;
}

const char *em_gemm_isa(void) {
    em_kernels_init();
    return gemm_isa;
}

/* ------------------------------------------------------------ the calls */

float em_vec_dot(em_type t, int64_t n, const void *w, const void *a) {
    em_kernels_init();
    if ((unsigned)t < (unsigned)EM_TYPE_COUNT && dot_table[t]) {
        const em_type_traits *tr = em_get_type_traits(t);
        if (n >= 0 && n % tr->block_size == 0) return dot_table[t](n, w, a);
    }
    return em_vec_dot_generic(t, n, w, a);
}

bool em_quantize_row_simd(em_type t, const float *src, void *dst, int64_t n) {
    em_kernels_init();
    if ((unsigned)t >= (unsigned)EM_TYPE_COUNT || !quant_table[t]) return false;
    quant_table[t](src, dst, n);
    return true;
}

em_gemm_fn em_gemm_kernel(em_type t) {
    em_kernels_init();
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

em_gemm_fn em_gemm_packed_kernel(em_type t) {
    em_kernels_init();
    return (unsigned)t < (unsigned)EM_TYPE_COUNT ? packed_table[t] : NULL;
}

void em_gemm_packed(em_type t, int64_t k, const void *w, size_t w_stride, int64_t nw, const void *a,
                    size_t a_stride, int64_t na, float *out, int64_t out_stride) {
    em_gemm_fn fn = em_gemm_packed_kernel(t);
    /* One activation row: the set's matrix-vector kernel, which streams
     * the groups (gemv_packed_avx2.c); rows past EM_PACK_MAX_K are never
     * packed, but take the GEMM kernel all the same. */
    if (fn && na == 1 && k <= EM_PACK_MAX_K && packed_gemv_table[t]) {
        packed_gemv_table[t](k, w, w_stride, nw, a, out);
        return;
    }
    if (fn)
        fn(k, w, w_stride, nw, a, a_stride, na, out, out_stride);
    else
        em_gemm_packed_generic(t, k, w, w_stride, nw, a, a_stride, na, out, out_stride);
}
