/*
 * gemv_common.h - what the dedicated AVX-512 matrix-vector kernels
 * (gemv_*_avx512.c) share: unaligned scalar loads from weight blocks
 * (gemm_avx2.c uses them too) and the software prefetch plan that streams
 * the weight rows.
 *
 * Rows of a few kilobytes are too short a stream for the hardware
 * prefetchers alone, so the kernels prefetch in software, as the
 * matrix-vector kernels of gemm_avx2.c do: rows go in groups of about
 * EM_GEMV_PF_BYTES (one to eight rows), and while one group is computed
 * the group EM_GEMV_PF_BYTES or more ahead of it is prefetched, a part at
 * each super-block step, so that the requests are spread over the work
 * instead of bunched.  The kernels ask for the first group at once, since
 * the plan only looks ahead of the group being computed.
 *
 * The files that include this are compiled without ISA flags; the one
 * function that needs an intrinsic carries its own target attribute.
 */
#ifndef EM_QUANT_GEMV_COMMON_H
#define EM_QUANT_GEMV_COMMON_H

#if defined(__x86_64__) && defined(__GNUC__)

#include "core/core.h"

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifndef EM_GEMV_PF_BYTES
#define EM_GEMV_PF_BYTES 8192
#endif

/* Prefetches go to L2 (T1) rather than L1: measured on a Zen 5 VM, the
 * Q6_K kernel streamed a few percent faster that way (2-6%), presumably
 * as the L1 is then left to the rows being computed and the activation
 * row beside them. */
#ifndef EM_GEMV_PF_HINT
#define EM_GEMV_PF_HINT _MM_HINT_T1
#endif

/* An fp16 or a float from a byte address: block fields need not be
 * aligned when the row stride is not a multiple of their size. */
static inline uint16_t em_gemv_ld16(const void *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static inline float em_gemv_ldf32(const void *p) {
    float v;
    memcpy(&v, p, 4);
    return v;
}

/* How many rows of ws bytes make one prefetch group. */
static inline int64_t em_gemv_prefetch_rows(size_t ws) {
    const size_t r = EM_GEMV_PF_BYTES / (ws ? ws : 1);
    return r < 1 ? 1 : r > 8 ? 8 : (int64_t)r;
}

/* The region group r0 (of rm rows) prefetches: the group at least
 * EM_GEMV_PF_BYTES ahead; the first group also covers the groups up to
 * that one.  The region may run past the last row: a prefetch of an
 * address that is not mapped does not fault, and computing the plan
 * without nw keeps it the same for every call.  Its address is kept as
 * an integer (0 for none), since a pointer past the end of the rows is
 * not a valid C pointer. */
static inline void em_gemv_prefetch_plan(const void *w, size_t ws, int64_t r0, int64_t rm, uintptr_t *pf,
                                         size_t *pfl) {
    const size_t bytes = (size_t)rm * ws, group = bytes > 0 ? bytes : 1;
    const int64_t ahead = (int64_t)((EM_GEMV_PF_BYTES + group - 1) / group);
    const int64_t first = r0 == 0 ? rm : r0 + ahead * rm; /* first row to prefetch */
    const int64_t end = r0 + (ahead + 1) * rm;            /* one past the last     */
    *pf = first < end ? (uintptr_t)w + (size_t)first * ws : 0;
    *pfl = first < end ? (size_t)(end - first) * ws : 0;
}

/* Part b (of parts of step bytes) of the region pf/len.  The prefetch
 * intrinsic needs SSE only, which every x86-64 has; the attribute keeps
 * it inlinable into the AVX-512 kernels. */
static inline __attribute__((always_inline)) void em_gemv_prefetch_part(uintptr_t pf, size_t len, int64_t b,
                                                                        size_t step) {
    const size_t lo = (size_t)b * step, hi = EM_MIN(lo + step, len);
    for (size_t o = lo & ~(size_t)63; o < hi; o += 64) _mm_prefetch((const char *)(pf + o), EM_GEMV_PF_HINT);
}

/* The 16-row K-quant one-row kernels (AVX2 Q4_K, Q5_K, Q6_K) prefetch
 * the next group, spread over the group being computed, so the distance
 * is one group: 16 rows of k elements, 18-27 KiB at k = 2048 but 51-74
 * KiB at k = 5632 (a feed-forward down product).  Measured in-process
 * on the 2-core Zen 5 (docs/PERFORMANCE.md, session 11; 2 threads
 * streaming 256 MiB), the one-group distance streams well up to about 40
 * KiB (k = 3072: Q5_K 34 KiB, Q6_K 40 KiB) and loses 20-30% from 45 KiB
 * (k = 4096 and 5632: Q6_K at 72-74% of the read test, against 127-130%
 * at k = 2048), presumably as the prefetched lines leave the 48 KiB L1
 * before their loads come.  Groups larger than EM_GEMV_PF_NEAR_GROUP
 * therefore prefetch a constant EM_GEMV_PF_BYTES ahead of the bytes being
 * read instead, which gave 1.16-1.26x (Q5_K), 1.19x (Q4_K) and 1.29-1.38x
 * (Q6_K) at k = 4096 and 5632; for the smaller groups it was slower
 * (0.74-0.98x), so they keep the one-group distance. */
#define EM_GEMV_PF_NEAR_GROUP (40 * 1024)

/* The wide groups' prefetch: part `part` of `parts` equal parts of the
 * sb_bytes that lie EM_GEMV_PF_BYTES ahead of the super-block at sb, so a
 * super-block's parts ask for the next EM_GEMV_PF_BYTES' worth of lines
 * at the pace of the work.  Past the matrix's end the prefetches are
 * harmless hints. */
static inline __attribute__((always_inline)) void em_gemv_prefetch_ahead(const uint8_t *sb, size_t sb_bytes, size_t part,
                                                                         size_t parts) {
    em_gemv_prefetch_part((uintptr_t)sb + EM_GEMV_PF_BYTES, sb_bytes, part, sb_bytes / parts);
}

/* Prefetch the first n bytes at w at once. */
static inline __attribute__((always_inline)) void em_gemv_prefetch_first(const void *w, size_t n) {
    for (size_t o = 0; o < n; o += 64) _mm_prefetch((const char *)((uintptr_t)w + o), EM_GEMV_PF_HINT);
}

/* P += the byte products of w (unsigned) and y (signed) in int16 pairs,
 * the sum kept in a register after each step: without the empty asm the
 * compiler reassociates a run of these adds into a tree whose leaves (all
 * the run's products at once) do not fit the 16 ymm registers and are
 * spilled.  Used by the AVX2 K-quant tiles over unpacked super-blocks. */
#define AVX2_PB(P, w, y)                                                                                       \
    do {                                                                                                       \
        P = _mm256_add_epi16(P, _mm256_maddubs_epi16(w, y));                                                   \
        __asm__("" : "+x"(P));                                                                                 \
    } while (0)

/* P + the byte products of w (unsigned) and the four activation quants
 * at y broadcast to every lane (signed): vpdpbusd with its broadcast
 * memory operand ({1to16}), one instruction where _mm512_dpbusd_epi32 of
 * _mm512_set1_epi32 of a load takes two (GCC 12 does not fold the
 * broadcast into vpdpbusd; in the AVX-512 K-quant prompt tiles the
 * separate vpbroadcastd was half of the instructions).  The target list
 * is the AVX-512 kernels' (T512 in their files). */
static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"))) __m512i
em_gemv_dpbusd_b512(__m512i P, __m512i w, const uint8_t *y) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(P) : "v"(w), "m"(*(const uint8_t(*)[4])(const void *)y));
    return P;
}

#endif /* __x86_64__ && __GNUC__ */

/* TILE(rn, ...) with rn a compile-time constant from 1 to RNMAX (at most
 * 8): the packed K-quant kernels' tiles of few activation rows. */
#define EM_RN_SWITCH(TILE, RNMAX, rn, ...)                                                                     \
    do {                                                                                                       \
        if (rn == RNMAX) TILE(RNMAX, __VA_ARGS__);                                                             \
        else if (RNMAX > 7 && rn == 7) TILE(7, __VA_ARGS__);                                                   \
        else if (RNMAX > 6 && rn == 6) TILE(6, __VA_ARGS__);                                                   \
        else if (RNMAX > 5 && rn == 5) TILE(5, __VA_ARGS__);                                                   \
        else if (RNMAX > 4 && rn == 4) TILE(4, __VA_ARGS__);                                                   \
        else if (RNMAX > 3 && rn == 3) TILE(3, __VA_ARGS__);                                                   \
        else if (RNMAX > 2 && rn == 2) TILE(2, __VA_ARGS__);                                                   \
        else TILE(1, __VA_ARGS__);                                                                             \
    } while (0)

#endif /* EM_QUANT_GEMV_COMMON_H */
