/*
 * cpu.h - what this CPU can run, found once per process, and the one
 * reading of the EMBER_CPU override.
 *
 * The SIMD code of every subsystem (the dot-product, quantizer and GEMM
 * kernel tables in src/quant, the attention and row kernels in src/ops and
 * src/model) asks em_cpu_features() which extensions it may use.  The
 * first call (or em_cpu_init) checks the hardware and reads EMBER_CPU,
 * once: later calls only load the stored answer, so the forward pass and
 * attention never call getenv.
 *
 * EMBER_CPU narrows the choice, for testing and for comparing results
 * across machines:
 *   generic             no SIMD kernels at all
 *   avx2                at most AVX2 (x86-64)
 *   avxvnni             AVX2 and AVX-VNNI, as recent Intel client chips
 *                       without AVX-512 have (x86-64)
 *   avx512              everything this x86-64 CPU has
 *   arm, neon*, sve*    the NEON kernels (aarch64)
 * An unknown name, or a set this CPU (or build) cannot run, is reported
 * with a warning and the best set the CPU runs is used instead.
 */
#ifndef EM_CORE_CPU_H
#define EM_CORE_CPU_H

#include "core/core.h"

/* Feature bits.  Every x86 bit includes the OS check (XCR0) that the
 * register state is saved across context switches. */
#define EM_CPU_AVX2 1u        /* AVX2 + FMA + F16C, YMM state enabled           */
#define EM_CPU_AVX512 2u      /* AVX-512 F + BW + VL on top of AVX2, ZMM state  */
#define EM_CPU_AVX512_VNNI 4u /* AVX512-VNNI (vpdpbusd/vpdpwssd), with AVX512  */
#define EM_CPU_NEON 8u        /* aarch64 Advanced SIMD (every aarch64 build)    */
#define EM_CPU_AVX_VNNI 16u   /* AVX-VNNI (VEX vpdpbusd on 256 bits), with AVX2 */

/* Checks the CPU and reads EMBER_CPU, once per process (pthread_once);
 * every other function here calls it.  Call it at start-up, before any
 * thread needs the answer. */
void em_cpu_init(void);

/* The features the SIMD code may use: the CPU's, narrowed by EMBER_CPU. */
unsigned em_cpu_features(void);

/* The features the CPU and OS have, whatever EMBER_CPU says. */
unsigned em_cpu_hw_features(void);

/*
 * The features a kernel-set name leaves of hw (a bit set as above):
 * "generic" -> 0, "avx2" -> hw's AVX2, "avxvnni" -> hw's AVX2 and
 * AVX-VNNI, "avx512" -> hw (x86), "arm",
 * "neon..." or "sve..." -> hw (aarch64).  EM_ERR_INVALID_ARG for an
 * unknown name, EM_ERR_UNSUPPORTED when hw cannot run the set (both with
 * a message, *out unchanged).  EMBER_CPU and the test hooks that choose a
 * kernel set by name both go through this one parser.
 */
em_status em_cpu_parse(const char *name, unsigned hw, unsigned *out);

#endif /* EM_CORE_CPU_H */
