/*
 * gemv_packed_avx2.c - matrix-vector products (one activation row: the
 * products of generation) of the x8 packed layouts of Q4_0 and Q8_0
 * (quant/pack.h), with AVX2, and Q4_0 with AVX-512 VNNI too (per function
 * target attribute; the file is compiled for AVX2 like the other
 * *avx2*.c).  The AVX-512 set runs the AVX2 Q8_0 kernel: once the x8
 * groups became one stream (runs of four blocks), it streamed the 1.1B
 * model's Q8_0 weights at about 101% of the read test against 85% for the
 * AVX-512 VNNI kernel it replaces, and generated 1.05-1.12x faster
 * (quiet machine, alternating), with the same logits to the bit.
 * em_gemm_packed (dispatch.c) calls them when na == 1; the GEMM tiles of
 * gemm_packed_avx2.c serve several activation rows.
 *
 * Why not the GEMM tile with one activation row:
 *   - its prefetch runs one whole group ahead, 17 KiB for a row of 2048
 *     Q8_0 elements but 48 KiB for one of 5632, and a chunk's first group
 *     is not asked for at all.  Here the prefetch runs a fixed
 *     EM_GEMV_PF_BYTES ahead of the work, at its pace, each line asked
 *     for once (gp_pf; the AVX2 Q4_0 kernel asks for a few twice, with
 *     no loop: gp_pf_q4_0), and a call starts by asking for its first
 *     EM_GEMV_PF_BYTES;
 *   - what depends on the activation row only (its scales as floats, the
 *     weights' offset corrections) is prepared once per call;
 *   - the AVX2 kernels reduce each block's integer products of the 8 rows
 *     to one int32 per row (interleave-and-add rather than vphadd,
 *     which is several uops on AMD's cores) before the one conversion and
 *     multiply-add per block, instead of one conversion, scale permute
 *     and multiply-add per pair of rows (Q4_0) or per row (Q8_0): fewer
 *     instructions per byte, which the AVX2 set needs to keep up with the
 *     memory on two cores (in L2, on the loaded 2-core Zen 5 VM: Q4_0
 *     1.25x the tile's speed; Q8_0, whose vphaddd tree costs about what
 *     it saves there, 0.97x).
 *
 * Exactness: every row's block sum is the exact integer dot of the block
 * (as in the scalar reference), converted once and multiplied by the two
 * scales; outputs differ from em_gemm_packed_generic only in the order of
 * the float additions.  The 16-bit steps cannot overflow: activation
 * quants are in -127..127 (the quantizer's range) and are taken as
 * -128..127 in the bounds below.
 */
#include "quant/pack.h"

#if defined(EM_HAVE_X86_GEMM)

#include "quant/arch/x86/gemv_common.h"
#include "quant/blocks.h"

#include <immintrin.h>

#define AI __attribute__((always_inline))
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

#define GP_MAX_BLOCKS (EM_PACK_MAX_K / 32) /* blocks of the longest packed row */

/* The prefetch stream of a call: the lines EM_GEMV_PF_BYTES ahead of
 * the bytes consumed so far.  A call's groups are consumed in address
 * order, nb steps of exactly 8 blocks each, so a running limit advanced
 * by one step's bytes at each step keeps the stream at the pace of the
 * work; a call first asks for its first EM_GEMV_PF_BYTES at once.  The
 * stream may run past the matrix (see em_gemv_prefetch_plan): a prefetch
 * does not fault, and the addresses are kept as integers. */
typedef struct gp_pf {
    uintptr_t at;  /* next line to ask for           */
    uintptr_t lim; /* asked for up to here (exclusive) */
} gp_pf;

static inline AI gp_pf gp_pf_start(const void *w) {
    em_gemv_prefetch_first(w, EM_GEMV_PF_BYTES);
    const uintptr_t ahead = (uintptr_t)w + EM_GEMV_PF_BYTES;
    return (gp_pf){ahead & ~(uintptr_t)63, ahead};
}

static inline AI void gp_pf_step(gp_pf *p, size_t step) {
    p->lim += step;
    for (; p->at < p->lim; p->at += 64) _mm_prefetch((const char *)p->at, EM_GEMV_PF_HINT);
}

/* The Q4_0 kernel's stream without the loop of gp_pf_step: its step of
 * two blocks of a group is 288 bytes (4.5 lines), so five prefetches 64
 * bytes apart from a point advanced by exactly one step reach every line
 * (a few twice), EM_GEMV_PF_BYTES ahead as gp_pf does.  The loop asked
 * for 4 or 5 lines in turn, at a dozen scalar instructions and a branch
 * per step; these are six, in a kernel whose issue slots are what bounds
 * it (1.03-1.04x in L2 on the loaded Zen 5 VM). */
#define GP_Q4_STEP2 (2 * EM_PACK_ROWS * sizeof(em_block_q4_0))
_Static_assert(GP_Q4_STEP2 == 288, "two Q4_0 x8 blocks");

/* This stream asks for its lines to L2 (EM_GEMV_PF_HINT, T1), as the
 * others do.  It used the NTA hint from session 10 (bench_stream, the
 * kernel alone: T1 72-85% of the read test's bandwidth against NTA
 * 86-98%); inside the model, alternating the two hints token by token in
 * one process (1.1B Q4_0, EMBER_CPU=avx2, 2 threads), T1 took 0.978-0.998
 * of NTA's token time in eight runs of 92 ABBA quads (median 0.985),
 * against an A/A control of 1.0005; T0 and other distances (6, 12, 16
 * KiB) were slower than T1 at 8 KiB (docs/PERFORMANCE.md, session 13). */
static inline AI void gp_pf_q4_0(uintptr_t *at, int lines, size_t step) {
    for (int l = 0; l < lines; l++) _mm_prefetch((const char *)(*at + 64 * (uintptr_t)l), EM_GEMV_PF_HINT);
    *at += step;
}

/* Eight int32 vectors to their eight sums, in order (vphaddd twice, then
 * the two halves added). */
static inline AI __m256i gp_sum8x8_epi32(const __m256i v[8]) {
    const __m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    const __m256i b = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20), _mm256_permute2x128_si256(a, b, 0x31));
}

/* The same sums without vphaddd (several uops each on AMD's cores):
 * pairs of rows interleaved and added (vpunpck*dq), then pairs of pairs
 * (vpunpck*qdq), then the two 128-bit halves. */
static inline AI __m256i gp_sum8x8_epi32_unpack(const __m256i v[8]) {
    __m256i u[4];
    for (int i = 0; i < 4; i++)
        u[i] = _mm256_add_epi32(_mm256_unpacklo_epi32(v[2 * i], v[2 * i + 1]),
                                _mm256_unpackhi_epi32(v[2 * i], v[2 * i + 1]));
    const __m256i x = _mm256_add_epi32(_mm256_unpacklo_epi64(u[0], u[1]), _mm256_unpackhi_epi64(u[0], u[1]));
    const __m256i y = _mm256_add_epi32(_mm256_unpacklo_epi64(u[2], u[3]), _mm256_unpackhi_epi64(u[2], u[3]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(x, y, 0x20), _mm256_permute2x128_si256(x, y, 0x31));
}

/* The sum of the 32 quants of Q8_0 block y, as 8 int32 partial sums. */
static inline AI __m256i gp_quant_sums(const uint8_t *y) {
    const __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(y + 2));
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q), _mm256_set1_epi16(1));
}

/* ------------------------------------------------------- AVX2, Q4_0 */

/* Per 16-byte row piece (one row per 128-bit lane of a 32-byte load of
 * a group's nibbles: rows 2p and 2p + 1), element j's nibble is the low
 * half of byte j and element 16 + j's the high half.  vpmaddubsw of the
 * levels (0..15) with the activation's elements 0-15 and 16-31 and an
 * add give 8 int16 per row (|x| <= 4 * 15 * 128 = 7680); two steps of
 * interleave-and-add of the four vectors (vpunpck*dq, then *qdq) leave
 * 2 int16 per row (<= 4 * 7680 = 30720), and vpmaddwd their int32 sum:
 * lanes [r0 r2 r4 r6 | r1 r3 r5 r7].  The levels' offset of 8 comes off
 * as 8 * (the sum of the block's 32 activation quants), the same for
 * every row.  Two blocks per step: one vpshufb puts both blocks' fp16
 * row scales in the sums' order, and two accumulators keep the two
 * multiply-add chains apart. */

/* The exact int32 dot of one Q4_0 block of each of a group's 8 rows with
 * the activation's block (levels 0..15, before the offset), in the order
 * [r0 r2 r4 r6 | r1 r3 r5 r7]. */
static inline AI __m256i gp_q4_0_block(const uint8_t *x, __m256i alo, __m256i ahi, __m256i m4) {
    __m256i p[4];
    for (int i = 0; i < 4; i++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(x + 32 * i));
        p[i] = _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_and_si256(v, m4), alo),
                                _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), ahi));
    }
    /* Without vphaddw (several uops on AMD's cores, and on the shuffle
     * ports the sibling thread shares): int16 pairs of the same row
     * interleaved and added, twice, then one vpmaddwd. */
    const __m256i u = _mm256_add_epi16(_mm256_unpacklo_epi32(p[0], p[1]), _mm256_unpackhi_epi32(p[0], p[1]));
    const __m256i w = _mm256_add_epi16(_mm256_unpacklo_epi32(p[2], p[3]), _mm256_unpackhi_epi32(p[2], p[3]));
    return _mm256_madd_epi16(_mm256_add_epi16(_mm256_unpacklo_epi64(u, w), _mm256_unpackhi_epi64(u, w)),
                             _mm256_set1_epi16(1));
}

void em_gemv_q4_0x8_avx2(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, float *out) {
    const int64_t nb = k / 32;
    const size_t step = (size_t)EM_PACK_ROWS * sizeof(em_block_q4_0);
    _Static_assert(2 * EM_PACK_ROWS * sizeof(em_block_q4_0) == GP_Q4_STEP2, "the prefetch's step");
    int32_t off[GP_MAX_BLOCKS]; /* 8 * sum of block b's activation quants */
    float ad[GP_MAX_BLOCKS];    /* block b's activation scale             */
    int64_t pb = 0;
    for (; pb + 8 <= nb; pb += 8) {
        __m256i v[8];
        for (int i = 0; i < 8; i++) {
            const uint8_t *y = (const uint8_t *)a + (size_t)(pb + i) * sizeof(em_block_q8_0);
            v[i] = gp_quant_sums(y);
            ad[pb + i] = _cvtsh_ss(em_gemv_ld16(y));
        }
        _mm256_storeu_si256((__m256i *)(void *)(off + pb), _mm256_slli_epi32(gp_sum8x8_epi32(v), 3));
    }
    for (; pb < nb; pb++) {
        const uint8_t *y = (const uint8_t *)a + (size_t)pb * sizeof(em_block_q8_0);
        const __m256i s = gp_quant_sums(y);
        __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
        off[pb] = 8 * _mm_cvtsi128_si32(t);
        ad[pb] = _cvtsh_ss(em_gemv_ld16(y));
    }
    const __m256i m4 = _mm256_set1_epi8(15);
    /* Each 128-bit lane's 8 fp16 row scales to the sums' row order
     * [r0 r2 r4 r6 r1 r3 r5 r7], two blocks' scales in one vpshufb. */
    const __m256i to_lanes16 = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,
                                                0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
    const __m256i to_rows = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7); /* the sums' order back to rows */
    em_gemv_prefetch_first(w, EM_GEMV_PF_BYTES);
    uintptr_t pf = (uintptr_t)w + EM_GEMV_PF_BYTES;
    for (int64_t j0 = 0; j0 < nw; j0 += EM_PACK_ROWS) {
        const uint8_t *grp = (const uint8_t *)w + (size_t)j0 * ws;
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
        int64_t b = 0;
        em_x8_at at = em_x8_first((uintptr_t)grp, nb);
        for (; b + 2 <= nb; b += 2) {
            gp_pf_q4_0(&pf, 5, 2 * step);
            const uint8_t *y = (const uint8_t *)a + (size_t)b * sizeof(em_block_q8_0);
            const __m256i s0 = gp_q4_0_block((const uint8_t *)at.q,
                _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(y + 2))),
                _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(y + 18))), m4);
            const __m256i s1 = gp_q4_0_block((const uint8_t *)at.q + 128,
                _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(y + 36))),
                _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(y + 52))), m4);
            const __m256i d16 = _mm256_shuffle_epi8(
                _mm256_loadu_si256((const __m256i *)(const void *)at.d), to_lanes16);
            const __m256 d0 = _mm256_cvtph_ps(_mm256_castsi256_si128(d16));
            const __m256 d1 = _mm256_cvtph_ps(_mm256_extracti128_si256(d16, 1));
            const __m256 f0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(s0, _mm256_set1_epi32(off[b]))),
                                            _mm256_set1_ps(ad[b]));
            const __m256 f1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(s1, _mm256_set1_epi32(off[b + 1]))),
                                            _mm256_set1_ps(ad[b + 1]));
            acc0 = _mm256_fmadd_ps(f0, d0, acc0);
            acc1 = _mm256_fmadd_ps(f1, d1, acc1);
            em_x8_next(&at, nb, b + 1, 16);
            em_x8_next(&at, nb, b + 2, 16);
        }
        if (b < nb) {
            gp_pf_q4_0(&pf, 3, step);
            const uint8_t *y = (const uint8_t *)a + (size_t)b * sizeof(em_block_q8_0);
            const __m256i s0 = gp_q4_0_block((const uint8_t *)at.q,
                _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(y + 2))),
                _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(y + 18))), m4);
            const __m256 d0 = _mm256_cvtph_ps(_mm256_castsi256_si128(_mm256_shuffle_epi8(
                _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)at.d)), to_lanes16)));
            const __m256 f0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(s0, _mm256_set1_epi32(off[b]))),
                                            _mm256_set1_ps(ad[b]));
            acc0 = _mm256_fmadd_ps(f0, d0, acc0);
        }
        _mm256_storeu_ps(out + j0, _mm256_permutevar8x32_ps(_mm256_add_ps(acc0, acc1), to_rows));
    }
}

/* ------------------------------------------------------- AVX2, Q8_0 */

/* Row i of a block is one 32-byte load; vpmaddubsw of |q| with the
 * activation carrying q's sign (pairs <= 2 * 128 * 128, in int16 as in
 * every AVX2 Q8_0 kernel) and vpmaddwd give 8 int32 per row, and an
 * interleave-and-add tree the 8 rows' sums in order (1.1x the vphaddd
 * tree in L2 on the Zen 5 VM). */
void em_gemv_q8_0x8_avx2(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, float *out) {
    const int64_t nb = k / 32;
    const size_t step = (size_t)EM_PACK_ROWS * sizeof(em_block_q8_0);
    float ad[GP_MAX_BLOCKS];
    for (int64_t b = 0; b < nb; b++) ad[b] = _cvtsh_ss(em_gemv_ld16((const uint8_t *)a + (size_t)b * sizeof(em_block_q8_0)));
    const __m256i ones16 = _mm256_set1_epi16(1);
    gp_pf pf = gp_pf_start(w);
    for (int64_t j0 = 0; j0 < nw; j0 += EM_PACK_ROWS) {
        const uint8_t *grp = (const uint8_t *)w + (size_t)j0 * ws;
        __m256 acc = _mm256_setzero_ps();
        em_x8_at at = em_x8_first((uintptr_t)grp, nb);
        for (int64_t b = 0; b < nb; b++, em_x8_next(&at, nb, b, 32)) {
            gp_pf_step(&pf, step);
            const __m256i av = _mm256_loadu_si256(
                (const __m256i *)(const void *)((const uint8_t *)a + (size_t)b * sizeof(em_block_q8_0) + 2));
            const uint8_t *x = (const uint8_t *)at.q;
            __m256i v[8];
            for (int i = 0; i < 8; i++) {
                const __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(x + 32 * i));
                v[i] = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(av, q)), ones16);
            }
            const __m256i s = gp_sum8x8_epi32_unpack(v);
            const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)at.d));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(d, _mm256_set1_ps(ad[b])), acc);
        }
        _mm256_storeu_ps(out + j0, acc);
    }
}

/* ---------------------------------------------------- AVX-512, Q4_0 */

/* A 64-byte load holds 16 bytes of each of 4 rows, one row per 128-bit
 * lane: the low nibbles against the activation's elements 0-15 and the
 * high ones against 16-31 (vpdpbusd twice), each int32 lane starting at
 * -8 times the sum of the 8 activation quants it multiplies (prepared
 * once per call).  c0 holds rows 0-3 (lanes 4i..4i+3 row i), c1 rows
 * 4-7. */
T512 void em_gemv_q4_0x8_avx512(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, float *out) {
    const int64_t nb = k / 32;
    const size_t step = (size_t)EM_PACK_ROWS * sizeof(em_block_q4_0);
    _Alignas(16) int32_t st[GP_MAX_BLOCKS][4]; /* -8 * (quants 4l..4l+3 and 16+4l..16+4l+3) of block b */
    float ad[GP_MAX_BLOCKS];
    const __m256i ones8 = _mm256_set1_epi8(1);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *y = (const uint8_t *)a + (size_t)b * sizeof(em_block_q8_0);
        const __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(y + 2));
        const __m256i quad = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, q), _mm256_set1_epi16(1));
        const __m128i s = _mm_add_epi32(_mm256_castsi256_si128(quad), _mm256_extracti128_si256(quad, 1));
        _mm_store_si128((__m128i *)(void *)st[b], _mm_sub_epi32(_mm_setzero_si128(), _mm_slli_epi32(s, 3)));
        ad[b] = _cvtsh_ss(em_gemv_ld16(y));
    }
    const __m512i m4 = _mm512_set1_epi8(15);
    const __m512i di0 = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    const __m512i di1 = _mm512_add_epi32(di0, _mm512_set1_epi32(4));
    /* After the pair sums below: lane 4l + {0, 2} holds row l's and row
     * 4 + l's sums. */
    const __m512i pick = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 14, 10, 6, 2, 12, 8, 4, 0);
    gp_pf pf = gp_pf_start(w);
    for (int64_t j0 = 0; j0 < nw; j0 += EM_PACK_ROWS) {
        const uint8_t *grp = (const uint8_t *)w + (size_t)j0 * ws;
        __m512 c0 = _mm512_setzero_ps(), c1 = c0;
        em_x8_at at = em_x8_first((uintptr_t)grp, nb);
        for (int64_t b = 0; b < nb; b++, em_x8_next(&at, nb, b, 16)) {
            gp_pf_step(&pf, step);
            const uint8_t *y = (const uint8_t *)a + (size_t)b * sizeof(em_block_q8_0);
            const __m512i alo = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)(y + 2)));
            const __m512i ahi = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)(y + 18)));
            const __m512i s = _mm512_broadcast_i32x4(_mm_load_si128((const __m128i *)(const void *)st[b]));
            const __m512 d = _mm512_castps256_ps512(_mm256_mul_ps(
                _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)at.d)), _mm256_set1_ps(ad[b])));
            const __m512i x0 = _mm512_loadu_si512((const uint8_t *)at.q), x1 = _mm512_loadu_si512((const uint8_t *)at.q + 64);
            const __m512i s0 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(s, _mm512_and_si512(x0, m4), alo),
                                                   _mm512_and_si512(_mm512_srli_epi16(x0, 4), m4), ahi);
            const __m512i s1 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(s, _mm512_and_si512(x1, m4), alo),
                                                   _mm512_and_si512(_mm512_srli_epi16(x1, 4), m4), ahi);
            c0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0), _mm512_permutexvar_ps(di0, d), c0);
            c1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1), _mm512_permutexvar_ps(di1, d), c1);
        }
        /* Per 128-bit lane l: [c0 pairs, c1 pairs], then the pairs added:
         * lane 4l holds row l's sum and lane 4l + 2 row 4 + l's. */
        __m512 u = _mm512_add_ps(_mm512_shuffle_ps(c0, c1, 0x88), _mm512_shuffle_ps(c0, c1, 0xdd));
        u = _mm512_add_ps(u, _mm512_shuffle_ps(u, u, 0xb1));
        _mm256_storeu_ps(out + j0, _mm512_castps512_ps256(_mm512_permutexvar_ps(pick, u)));
    }
}

#endif /* EM_HAVE_X86_GEMM */
