/*
 * dispatch.c - em_vec_dot: picks the fastest dot-product kernel this CPU
 * can run, once, and falls back to the scalar reference for every type no
 * SIMD kernel covers.
 *
 * The choice is made on first use: x86-64 CPUs with AVX2, FMA and F16C get
 * the kernels in arch/x86/dot_avx2.c.  Setting the environment variable
 * EMBER_CPU=generic forces the scalar kernels (for testing and for
 * comparing results across machines).
 */
#include "quant/quant.h"
#include "quant/arch/x86/dot_x86.h"

#include <pthread.h>
#include <stdlib.h>

/* One kernel per weight type; NULL means "use em_vec_dot_generic". */
typedef float (*em_dot_fn)(int64_t n, const void *w, const void *a);

static em_dot_fn em_dot_table[EM_TYPE_COUNT];
static pthread_once_t em_dot_once = PTHREAD_ONCE_INIT;
static const char *em_dot_isa = "generic";

#if defined(EM_HAVE_X86_KERNELS)
#include <cpuid.h>

/* AVX2, FMA and F16C present, and the OS saves the YMM registers across
 * context switches (OSXSAVE set and XCR0 enables SSE and AVX state).
 * This file is compiled without ISA flags, so the check itself never runs
 * an instruction the CPU might lack. */
static bool em_cpu_has_avx2(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28),
               f16c = c & (1u << 29);
    if (!(fma && osxsave && avx && f16c)) return false;
    unsigned xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    if ((xlo & 6u) != 6u) return false;
    if (__get_cpuid_max(0, NULL) < 7) return false;
    __cpuid_count(7, 0, a, b, c, d);
    return (b & (1u << 5)) != 0; /* AVX2 */
}
#endif

static void em_dot_select(void) {
    const char *force = getenv("EMBER_CPU");
    if (force && strcmp(force, "generic") == 0) return;
#if defined(EM_HAVE_X86_KERNELS)
    if (em_cpu_has_avx2()) {
        em_dot_table[EM_TYPE_F32] = em_vec_dot_f32_avx2;
        em_dot_table[EM_TYPE_F16] = em_vec_dot_f16_avx2;
        em_dot_table[EM_TYPE_Q4_0] = em_vec_dot_q4_0_avx2;
        em_dot_table[EM_TYPE_Q8_0] = em_vec_dot_q8_0_avx2;
        em_dot_table[EM_TYPE_Q4_K] = em_vec_dot_q4_k_avx2;
        em_dot_table[EM_TYPE_Q6_K] = em_vec_dot_q6_k_avx2;
        em_dot_isa = "avx2";
    }
#endif
}

const char *em_vec_dot_isa(void) {
    pthread_once(&em_dot_once, em_dot_select);
    return em_dot_isa;
}

float em_vec_dot(em_type t, int64_t n, const void *w, const void *a) {
    pthread_once(&em_dot_once, em_dot_select);
    if ((unsigned)t < (unsigned)EM_TYPE_COUNT && em_dot_table[t]) {
        const em_type_traits *tr = em_get_type_traits(t);
        if (n >= 0 && n % tr->block_size == 0) return em_dot_table[t](n, w, a);
    }
    return em_vec_dot_generic(t, n, w, a);
}
