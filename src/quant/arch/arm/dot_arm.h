/*
 * dot_arm.h - the aarch64 NEON dot-product kernels (dot_neon.c).
 *
 * Every aarch64 CPU has Advanced SIMD (NEON), so unlike the x86 kernels
 * these need no runtime CPU check: when the build targets aarch64 they are
 * always usable.  The ARMv8.2 dot-product instructions (SDOT) are used only
 * when the compiler was told the target has them (-march=armv8.2-a+dotprod
 * or newer, which defines __ARM_FEATURE_DOTPROD); a binary built that way
 * runs only on such CPUs anyway, so that choice is made at compile time too.
 */
#ifndef EM_QUANT_DOT_ARM_H
#define EM_QUANT_DOT_ARM_H

#include "quant/dot.h"

#if defined(__aarch64__)
#define EM_HAVE_ARM_KERNELS 1

/*
 * Fills table (EM_TYPE_COUNT entries, indexed by em_type) with a NEON
 * kernel for every weight type dot_neon.c covers, leaving the other
 * entries as they are, and sets *isa to "neon", or "neon-dotprod" when the
 * kernels were compiled with the ARMv8.2 dot-product instructions.  Each
 * kernel has the contract of em_vec_dot_generic for its type (see dot.h).
 */
void em_dot_select_arm(em_dot_fn *table, const char **isa);
#endif

#endif /* EM_QUANT_DOT_ARM_H */
