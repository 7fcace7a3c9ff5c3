/*
 * dispatch.c - em_vec_dot and the activation quantizers: picks the
 * fastest kernel set this CPU can run, once, and falls back to the scalar
 * reference for every type no SIMD kernel covers.
 *
 * Kernel sets, best first:
 *   avx512   x86-64 with AVX-512 F/BW/VL (integer kernels need VNNI too):
 *            arch/x86/dot_avx512.c, over the avx2 set for the other types
 *   avx2     x86-64 with AVX2, FMA and F16C: arch/x86/dot_avx2.c and
 *            quant_avx2.c
 *   (arm)    aarch64: whatever arch/arm/ installs (em_dot_select_arm),
 *            under the name it reports
 *   generic  the scalar kernels in dot_generic.c and quantize.c
 *
 * The choice is made on first use.  The environment variable EMBER_CPU
 * (generic | avx2 | avx512) asks for a particular set, for testing and for
 * comparing results across machines; a set this CPU cannot run falls back
 * to the best one it can, with a warning.  Tests and benchmarks switch sets
 * with em_dot_select_isa (dot.h).
 */
#include "quant/quant.h"
#include "quant/dot.h"
#include "quant/arch/x86/dot_x86.h"

#if defined(__aarch64__) && defined(__has_include)
#if __has_include("quant/arch/arm/dot_arm.h")
#include "quant/arch/arm/dot_arm.h"
#endif
#endif

#include <pthread.h>
#include <stdlib.h>

/* One kernel per weight type / activation type; NULL means "use the
 * scalar code".  Written only by em_dot_install. */
static em_dot_fn em_dot_table[EM_TYPE_COUNT];
static em_quant_fn em_quant_table[EM_TYPE_COUNT];
static const char *em_dot_isa = "generic";
static pthread_once_t em_dot_once = PTHREAD_ONCE_INIT;

/* ------------------------------------------------------ the kernel sets */

typedef enum { EM_ISA_GENERIC, EM_ISA_AVX2, EM_ISA_AVX512, EM_ISA_ARM } em_isa;

static const struct {
    const char *name;
    em_isa isa;
} em_isa_names[] = {
    {"generic", EM_ISA_GENERIC},
    {"avx2", EM_ISA_AVX2},
    {"avx512", EM_ISA_AVX512},
};

#if defined(EM_HAVE_X86_KERNELS)
static em_x86_features em_cpu;

static void em_install_avx2(void) {
    em_dot_table[EM_TYPE_F32] = em_vec_dot_f32_avx2;
    em_dot_table[EM_TYPE_F16] = em_vec_dot_f16_avx2;
    em_dot_table[EM_TYPE_BF16] = em_vec_dot_bf16_avx2;
    em_dot_table[EM_TYPE_Q4_0] = em_vec_dot_q4_0_avx2;
    em_dot_table[EM_TYPE_Q4_1] = em_vec_dot_q4_1_avx2;
    em_dot_table[EM_TYPE_Q5_0] = em_vec_dot_q5_0_avx2;
    em_dot_table[EM_TYPE_Q5_1] = em_vec_dot_q5_1_avx2;
    em_dot_table[EM_TYPE_Q8_0] = em_vec_dot_q8_0_avx2;
    em_dot_table[EM_TYPE_IQ4_NL] = em_vec_dot_iq4_nl_avx2;
    em_dot_table[EM_TYPE_Q2_K] = em_vec_dot_q2_k_avx2;
    em_dot_table[EM_TYPE_Q3_K] = em_vec_dot_q3_k_avx2;
    em_dot_table[EM_TYPE_Q4_K] = em_vec_dot_q4_k_avx2;
    em_dot_table[EM_TYPE_Q5_K] = em_vec_dot_q5_k_avx2;
    em_dot_table[EM_TYPE_Q6_K] = em_vec_dot_q6_k_avx2;
    em_dot_table[EM_TYPE_IQ4_XS] = em_vec_dot_iq4_xs_avx2;
    em_quant_table[EM_TYPE_Q8_0] = em_quantize_q8_0_avx2;
    em_quant_table[EM_TYPE_Q8_1] = em_quantize_q8_1_avx2;
    em_quant_table[EM_TYPE_Q8_K] = em_quantize_q8_k_avx2;
}

static void em_install_avx512(void) {
    em_install_avx2();
    em_dot_table[EM_TYPE_F32] = em_vec_dot_f32_avx512;
    em_dot_table[EM_TYPE_F16] = em_vec_dot_f16_avx512;
    em_dot_table[EM_TYPE_BF16] = em_vec_dot_bf16_avx512;
    if (!em_cpu.avx512_vnni) return;
    em_dot_table[EM_TYPE_Q4_0] = em_vec_dot_q4_0_avx512;
    em_dot_table[EM_TYPE_Q4_1] = em_vec_dot_q4_1_avx512;
    em_dot_table[EM_TYPE_Q5_0] = em_vec_dot_q5_0_avx512;
    em_dot_table[EM_TYPE_Q5_1] = em_vec_dot_q5_1_avx512;
    em_dot_table[EM_TYPE_Q8_0] = em_vec_dot_q8_0_avx512;
    em_dot_table[EM_TYPE_IQ4_NL] = em_vec_dot_iq4_nl_avx512;
    em_dot_table[EM_TYPE_Q4_K] = em_vec_dot_q4_k_avx512;
    em_dot_table[EM_TYPE_Q5_K] = em_vec_dot_q5_k_avx512;
    em_dot_table[EM_TYPE_Q6_K] = em_vec_dot_q6_k_avx512;
    em_dot_table[EM_TYPE_Q2_K] = em_vec_dot_q2_k_avx512;
    em_dot_table[EM_TYPE_Q3_K] = em_vec_dot_q3_k_avx512;
    em_dot_table[EM_TYPE_IQ4_XS] = em_vec_dot_iq4_xs_avx512;
}
#endif

/* Whether this CPU (and build) can run a set. */
static bool em_isa_available(em_isa isa) {
    switch (isa) {
    case EM_ISA_GENERIC: return true;
#if defined(EM_HAVE_X86_KERNELS)
    case EM_ISA_AVX2: return em_cpu.avx2;
    case EM_ISA_AVX512: return em_cpu.avx512;
#endif
#if defined(EM_HAVE_ARM_KERNELS)
    case EM_ISA_ARM: return true;
#endif
    default: return false;
    }
}

static em_isa em_isa_best(void) {
    const em_isa order[] = {EM_ISA_ARM, EM_ISA_AVX512, EM_ISA_AVX2};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (em_isa_available(order[i])) return order[i];
    return EM_ISA_GENERIC;
}

/* Replaces the tables with set isa (which must be available). */
static void em_dot_install(em_isa isa) {
    memset(em_dot_table, 0, sizeof em_dot_table);
    memset(em_quant_table, 0, sizeof em_quant_table);
    em_dot_isa = "generic";
    switch (isa) {
#if defined(EM_HAVE_X86_KERNELS)
    case EM_ISA_AVX2:
        em_install_avx2();
        em_dot_isa = "avx2";
        break;
    case EM_ISA_AVX512:
        em_install_avx512();
        em_dot_isa = "avx512";
        break;
#endif
#if defined(EM_HAVE_ARM_KERNELS)
    case EM_ISA_ARM: {
        const char *name = NULL;
        em_dot_select_arm(em_dot_table, &name);
        if (name) em_dot_isa = name;
        break;
    }
#endif
    default: break;
    }
}

/* ------------------------------------------------------------ selection */

static int em_isa_parse(const char *name, em_isa *isa) {
    for (size_t i = 0; i < sizeof em_isa_names / sizeof em_isa_names[0]; i++) {
        if (strcmp(name, em_isa_names[i].name) == 0) {
            *isa = em_isa_names[i].isa;
            return 0;
        }
    }
#if defined(EM_HAVE_ARM_KERNELS)
    /* The arm set answers to "arm" and to the names it may report itself
     * under ("neon...", "sve..."). */
    if (strcmp(name, "arm") == 0 || strncmp(name, "neon", 4) == 0 || strncmp(name, "sve", 3) == 0) {
        *isa = EM_ISA_ARM;
        return 0;
    }
#endif
    return -1;
}

/* First use: the CPU check, then EMBER_CPU or the best set. */
static void em_dot_select_default(void) {
#if defined(EM_HAVE_X86_KERNELS)
    em_x86_cpu_features(&em_cpu);
#endif
    em_isa isa = em_isa_best();
    const char *want = getenv("EMBER_CPU");
    if (want && *want) {
        em_isa asked;
        if (em_isa_parse(want, &asked) != 0) {
            em_log(EM_LOG_WARN, "EMBER_CPU=%s is not one of generic, avx2, avx512; using the best "
                                "kernels this CPU runs", want);
        } else if (!em_isa_available(asked)) {
            em_log(EM_LOG_WARN, "EMBER_CPU=%s: this CPU (or build) cannot run those kernels; "
                                "falling back", want);
        } else {
            isa = asked;
        }
    }
    em_dot_install(isa);
    em_log(EM_LOG_DEBUG, "dot-product kernels: %s", em_dot_isa);
}

int em_dot_select_isa(const char *name) {
    pthread_once(&em_dot_once, em_dot_select_default);
    em_isa isa;
    if (!name) {
        isa = em_isa_best();
    } else if (em_isa_parse(name, &isa) != 0 || !em_isa_available(isa)) {
        return -1;
    }
    em_dot_install(isa);
    return 0;
}

const char *em_vec_dot_isa(void) {
    pthread_once(&em_dot_once, em_dot_select_default);
    return em_dot_isa;
}

/* ------------------------------------------------------------ the calls */

float em_vec_dot(em_type t, int64_t n, const void *w, const void *a) {
    pthread_once(&em_dot_once, em_dot_select_default);
    if ((unsigned)t < (unsigned)EM_TYPE_COUNT && em_dot_table[t]) {
        const em_type_traits *tr = em_get_type_traits(t);
        if (n >= 0 && n % tr->block_size == 0) return em_dot_table[t](n, w, a);
    }
    return em_vec_dot_generic(t, n, w, a);
}

bool em_quantize_row_simd(em_type t, const float *src, void *dst, int64_t n) {
    pthread_once(&em_dot_once, em_dot_select_default);
    if ((unsigned)t >= (unsigned)EM_TYPE_COUNT || !em_quant_table[t]) return false;
    em_quant_table[t](src, dst, n);
    return true;
}
