/*
 * cpu_x86.c - which x86-64 vector extensions this machine can run.
 *
 * An extension is usable only when the CPU implements it (CPUID) and the
 * operating system saves its registers across context switches (XCR0,
 * read with XGETBV once CPUID reports OSXSAVE).  A hypervisor or kernel
 * may switch AVX-512 state off even on a CPU that has it, so both checks
 * are needed.  This file is compiled without ISA flags, so the check never
 * executes an instruction the CPU might lack.
 */
#include "quant/arch/x86/dot_x86.h"

#if defined(EM_HAVE_X86_KERNELS)

#include <cpuid.h>
#include <string.h>

/* XCR0 state components: SSE (bit 1), AVX upper halves (2), and for
 * AVX-512 the opmask registers (5), upper ZMM0-15 halves (6), ZMM16-31 (7). */
#define EM_XCR0_YMM 0x06u
#define EM_XCR0_ZMM 0xe6u

static unsigned em_xgetbv0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return lo;
}

void em_x86_cpu_features(em_x86_features *f) {
    memset(f, 0, sizeof *f);
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28),
               f16c = c & (1u << 29);
    if (!(fma && osxsave && avx && f16c)) return;
    const unsigned xcr0 = em_xgetbv0();
    if ((xcr0 & EM_XCR0_YMM) != EM_XCR0_YMM) return;
    if (__get_cpuid_max(0, NULL) < 7) return;

    __cpuid_count(7, 0, a, b, c, d);
    const unsigned b7 = b, c7 = c;
    __cpuid_count(7, 1, a, b, c, d);
    const unsigned a71 = a;

    f->avx2 = (b7 & (1u << 5)) != 0;
    if (!f->avx2) return;
    f->avx_vnni = (a71 & (1u << 4)) != 0;

    const bool avx512f = b7 & (1u << 16), avx512bw = b7 & (1u << 30),
               avx512vl = b7 & (1u << 31);
    if (!(avx512f && avx512bw && avx512vl) || (xcr0 & EM_XCR0_ZMM) != EM_XCR0_ZMM) return;
    f->avx512 = true;
    f->avx512_vnni = (c7 & (1u << 11)) != 0;
    f->avx512_bf16 = (a71 & (1u << 5)) != 0;
}

#else

/* Not x86-64: nothing to compile here (ISO C wants a declaration). */
typedef int em_cpu_x86_unused;

#endif /* EM_HAVE_X86_KERNELS */
