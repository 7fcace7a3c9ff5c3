/*
 * cpu.c - which vector extensions this machine can run, checked once, and
 * the EMBER_CPU override (see cpu.h).
 *
 * On x86-64 an extension is usable only when the CPU implements it (CPUID)
 * and the operating system saves its registers across context switches
 * (XCR0, read with XGETBV once CPUID reports OSXSAVE).  A hypervisor or
 * kernel may switch AVX-512 state off even on a CPU that has it, so both
 * checks are needed.  This file is compiled without ISA flags, so the
 * check never executes an instruction the CPU might lack.  Every aarch64
 * CPU has NEON, so there the answer is known at compile time.
 */
#include "core/cpu.h"

#include <pthread.h>
#include <stdlib.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>

/* XCR0 state components: SSE (bit 1), AVX upper halves (2), and for
 * AVX-512 the opmask registers (5), upper ZMM0-15 halves (6), ZMM16-31 (7). */
#define EM_XCR0_YMM 0x06u
#define EM_XCR0_ZMM 0xe6u

static unsigned em_xgetbv0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return lo;
}

static unsigned detect(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28),
               f16c = c & (1u << 29);
    if (!(fma && osxsave && avx && f16c)) return 0;
    const unsigned xcr0 = em_xgetbv0();
    if ((xcr0 & EM_XCR0_YMM) != EM_XCR0_YMM) return 0;
    if (__get_cpuid_max(0, NULL) < 7) return 0;

    __cpuid_count(7, 0, a, b, c, d);
    if (!(b & (1u << 5))) return 0;
    unsigned bits = EM_CPU_AVX2;
    /* AVX-VNNI: leaf 7, subleaf 1, EAX bit 4 (YMM state, checked above). */
    if (a >= 1) {
        unsigned a1, b1, c1, d1;
        __cpuid_count(7, 1, a1, b1, c1, d1);
        if (a1 & (1u << 4)) bits |= EM_CPU_AVX_VNNI;
    }
    const bool avx512f = b & (1u << 16), avx512bw = b & (1u << 30), avx512vl = b & (1u << 31);
    if (!(avx512f && avx512bw && avx512vl) || (xcr0 & EM_XCR0_ZMM) != EM_XCR0_ZMM) return bits;
    bits |= EM_CPU_AVX512;
    if (c & (1u << 11)) bits |= EM_CPU_AVX512_VNNI;
    return bits;
}
#elif defined(__aarch64__)
static unsigned detect(void) { return EM_CPU_NEON; }
#else
static unsigned detect(void) { return 0; }
#endif

static unsigned hw_bits;   /* what the CPU has           */
static unsigned use_bits;  /* after EMBER_CPU            */
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;

static void cpu_init_once(void) {
    hw_bits = detect();
    use_bits = hw_bits;
    const char *want = getenv("EMBER_CPU");
    if (!want || !*want) return;
    em_status st = em_cpu_parse(want, hw_bits, &use_bits);
    if (st == EM_ERR_INVALID_ARG)
        em_log(EM_LOG_WARN, "EMBER_CPU=%s is not one of generic, avx2, avxvnni, avx512, arm; using the best "
                            "kernels this CPU runs", want);
    else if (st != EM_OK)
        em_log(EM_LOG_WARN, "EMBER_CPU=%s: this CPU (or build) cannot run those kernels; falling back",
               want);
}

void em_cpu_init(void) { pthread_once(&cpu_once, cpu_init_once); }

unsigned em_cpu_features(void) {
    em_cpu_init();
    return use_bits;
}

unsigned em_cpu_hw_features(void) {
    em_cpu_init();
    return hw_bits;
}

em_status em_cpu_parse(const char *name, unsigned hw, unsigned *out) {
    unsigned need, keep;
    if (!name) return em_error(EM_ERR_INVALID_ARG, "no kernel set named");
    if (strcmp(name, "generic") == 0) {
        need = 0;
        keep = 0;
    } else if (strcmp(name, "avx2") == 0) {
        need = EM_CPU_AVX2;
        keep = EM_CPU_AVX2;
    } else if (strcmp(name, "avxvnni") == 0) {
        need = EM_CPU_AVX2 | EM_CPU_AVX_VNNI;
        keep = EM_CPU_AVX2 | EM_CPU_AVX_VNNI;
    } else if (strcmp(name, "avx512") == 0) {
        need = EM_CPU_AVX2 | EM_CPU_AVX512;
        keep = ~0u;
    } else if (strcmp(name, "arm") == 0 || strncmp(name, "neon", 4) == 0 || strncmp(name, "sve", 3) == 0) {
        /* The arm set also answers to the names it reports itself under. */
        need = EM_CPU_NEON;
        keep = ~0u;
    } else {
        return em_error(EM_ERR_INVALID_ARG, "unknown kernel set '%s' (generic, avx2, avxvnni, avx512, arm)", name);
    }
    if ((hw & need) != need)
        return em_error(EM_ERR_UNSUPPORTED, "this CPU (or build) cannot run the %s kernels", name);
    *out = hw & keep;
    return EM_OK;
}
