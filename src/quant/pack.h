/*
 * pack.h - repacked weight layouts: matrices rearranged once, at load
 * time, so that the GEMM kernels' register tiles read contiguous memory.
 *
 * In the file's layout a weight matrix is a list of rows, each a list of
 * blocks (scale, then quants).  A kernel that works on 8 rows at once
 * then reads 8 short pieces from 8 places for every block, and unpicks
 * the scales from the quants.  The packed layout ("x8") stores the rows in
 * groups of EM_PACK_ROWS; inside a group, runs of EM_PACK_RUN = 4 blocks
 * (the last run of a group may be shorter), each run first its blocks'
 * scales (block b of the 8 rows side by side), then their quants (block
 * b's quants of the 8 rows side by side):
 *
 *   Q4_0 x8, one group of 8 rows of nb blocks (8 * nb * 18 bytes), run
 *   by run (n = 4 blocks, 576 bytes, except the last):
 *     uint16 d[n][8]        fp16 scale of block b of row i at d[b][i]
 *     uint8  qs[n][8][16]   row i's 16 bytes of nibbles of block b, as
 *                           stored in the file (low nibble element j,
 *                           high nibble element j + 16)
 *   Q8_0 x8 (8 * nb * 34 bytes; a full run is 1088 bytes, 17 lines):
 *     uint16 d[n][8]
 *     int8   qs[n][8][32]
 *
 * Runs rather than all the group's scales ahead of all its quants: a
 * kernel then reads a group front to back as one stream.  With the scales
 * apart, generation read two streams per group (the scales' at 1/17 or
 * 1/9 of the pace of the quants'), and the matrix-vector kernels streamed
 * at 76-92% of the read test's bandwidth instead of 85-105% (2 threads,
 * tests/tools/bench_stream --cpu, docs/PERFORMANCE-HISTORY.md, session 6).  A
 * full run is a whole number of cache lines, so the quants of a group
 * that starts on a line stay on 64-byte boundaries.  em_x8_d/em_x8_q give
 * a block's offsets, em_x8_first/em_x8_next the same for a walk.
 *
 * Q4_K has its own layout ("x16"), for the VNNI kernels' 16 int32 lanes
 * (one per row): groups of EM_PACK_ROWS_K = 16 rows, super-block by
 * super-block (b = 0 .. nb-1, EM_PACK_Q4K_SB = 16 * 144 bytes each):
 *
 *   Q4_K x16, super-block b of a group:
 *     uint16 d[16]          fp16 super-block scale of row i at d[i]
 *     uint16 dmin[16]       fp16 scale of its mins
 *     uint8  sc[12][16]     byte j of row i's 12 bytes of packed 6-bit
 *                           scales and mins at sc[j][i] (a transpose: the
 *                           kernels unpack 16 rows at once, one int32
 *                           lane each)
 *     uint8  qs[4][8][16][4] row i's file bytes qs[32s + 4q .. +3] at
 *                           qs[s][q][i]: their low nibbles are elements
 *                           64s + 4q .. +3 (group 2s), the high nibbles
 *                           elements 64s + 32 + 4q .. +3 (group 2s + 1)
 *
 * A 64-byte load of qs[s][q] is then four levels of each of the 16 rows,
 * and vpdpbusd with four activation quants broadcast to every lane adds
 * each row's partial dot to its own lane.  The scales stay packed (6 bits):
 * decoding them to bytes would cost 4 bytes per 144 (2.8% more memory and
 * memory traffic in generation), and unpacking 16 rows at once takes a
 * few dozen vector instructions per super-block.
 *
 * Q5_K x16 (EM_PACK_Q5K_SB = 16 * 176 bytes per super-block) has the
 * head of a Q4_K x16 super-block (d, dmin, sc at the same offsets), then
 * its 5-bit levels in the places of qs and of the file's qh, laid out so
 * that the kernels take them with the fewest operations.  Call L0 the
 * level of row i's element 64s + 4q + l (group 2s) and L1 that of element
 * 64s + 32 + 4q + l (group 2s + 1), l < 4:
 *
 *   Q5_K x16, super-block b of a group:
 *     (256 bytes)           d, dmin, sc as Q4_K x16 above
 *     uint8  a[4][8][16][4] byte l of a[s][q][i]: bits 0-4 L0, bits 5-7
 *                           bits 0-2 of L1 (xor the correction below)
 *     uint8  e[8][16][4]    bits 2s, 2s + 1 of byte l of e[q][i]: bits
 *                           3-4 of L1 of s (xor the correction), s < 4
 *
 * The kernels take the levels of group 2s of the 64-byte run a[s][q] as
 * a & 31, and those of group 2s + 1 as the low five bits of each byte of
 * (a >> 5) ^ (e[q] << (3 - 2s)) (a right shift by 2s - 3 for s >= 2),
 * both shifts of 16-bit words (vpsrlw, vpsllw).  A shift of a word carries
 * bits over from its other byte: a >> 5 brings bits 0-1 of the odd byte
 * (an L0) to bits 3-4 of the even one, and the shifted e brings its other
 * pairs' bits to bits 0-2.  The packing xors each such carried bit into
 * the stored bit that it meets (e's pair first, which depends only on a's
 * bits 0-4, then a's bits 5-7), so that the xor gives L1 exactly
 * (pack.c: q5kx16_hi is the kernels' formula, q5kx16_put solves it).
 * With AVX2 that is 1 + 4 operations per 64 levels, where the file's
 * split (a nibble per group, and a fifth bit in qh to shift, mask and or
 * in) takes 4 + 5; with AVX-512 the xor and the mask are one ternary
 * logic op.  The run e[q] serves the four runs a[0..3][q] and stays in L1
 * between them.  A super-block holds the same 5 bits a level as the
 * file's (the same 176 bytes a row): the layout costs no memory and no
 * memory traffic, only the packing at load time.  The mins come off
 * through the activation's bsums as for Q4_K (gemm_packed_q5k_avx2.c).
 *
 * Q6_K has an x16 layout too (EM_PACK_Q6K_SB = 16 * 210 bytes per
 * super-block), the levels first so that their 64-byte runs keep the
 * group's alignment.  The file keeps a level's low four bits in ql and
 * its two high bits in qh; here the 6-bit levels are whole, three to a
 * byte's bits 0-5, with a fourth level split over the three bytes' bits
 * 6-7 (four levels in three bytes, as in the file):
 *
 *   Q6_K x16, super-block b of a group:
 *     uint8  q[4][3][4][16][4] quad qd (groups 4qd .. 4qd + 3 of 16
 *                           elements), slot r, run c: byte j of row i at
 *                           q[qd][r][c][i][j] holds in bits 0-5 the
 *                           level (0..63, the file's value + 32) of
 *                           element 16 (4qd + r) + 4c + j, and in bits
 *                           6-7 bits 4 - 2r and 5 - 2r of the level of
 *                           element 16 (4qd + 3) + 4c + j
 *     int8   sc[8][16][2]   row i's scales 2p and 2p + 1 at sc[p][i]
 *                           (sign-extended to int16, 32 bytes become
 *                           one int16 pair per row in each int32 lane)
 *     uint16 d[16]          fp16 super-block scale of row i at d[i]
 *
 * A 64-byte run is four levels of each of the 16 rows: one mask makes
 * the levels of groups 4qd .. 4qd + 2, and the fourth group's are the
 * three slots' bits 6-7 gathered by three masks, three 16-bit shifts
 * and two ors (ternary logic with AVX-512).  Per 32 levels that is 2.75
 * vector operations where the file's split (a nibble from ql, its field
 * from qh, shifted into place and ORed) took 4.25 without ternary logic;
 * the plain AVX2 one-row kernel is bound by its operations, not by
 * memory (docs/PERFORMANCE-HISTORY.md, session 7).  The kernels take the -32
 * offset off once per super-block through the activation's bsums
 * (gemm_packed_q6k_avx2.c).  EM_Q6KX16_RUN gives a run's offset.
 *
 * A group takes exactly the bytes of its rows in the file's layout, so
 * the packed matrix has the same size and a group of rows starts where its
 * first row started: callers still address row j (j a multiple of the group) as
 * data + j * row_bytes.  The arithmetic is unchanged; only the places of
 * the bytes move, and the packed kernels compute what the file-layout
 * kernels compute (the tests compare them with the scalar twin,
 * em_gemm_packed_generic, which rebuilds each block and calls the scalar
 * reference).
 *
 * Two sets of kernels read the x8 groups of Q4_0 and Q8_0.  With one row
 * (generation) em_gemm_packed calls the set's matrix-vector kernel of the
 * layout (arch/x86/gemv_packed_avx2.c), which streams the groups with its
 * own prefetch.  With two or more (prompt processing) the kernels of
 * arch/x86/gemm_lanes_avx2.c regroup each block in registers, dword t of
 * 16 rows (two groups; AVX-512) or of 8 (256-bit Q4_0) side by side, so
 * that one int32 lane sums a whole row's block; the regrouping costs a
 * few unpacks per block shared by a tile's activation rows (by all of a
 * call's, through a buffer, in AVX-512 Q8_0 prompts), and little memory: a
 * wider stored layout (x16) would save only those and would change the
 * generation kernels' reads.  Their only extra memory is a per-call table
 * of activation sums and scales on the stack (64 KiB), and per thread
 * the step's kept copies and, for AVX-512 Q8_0 prompts, one pair of
 * groups regrouped per call (gemm_lanes_avx2.c, q8_regrouped: 640 bytes
 * a block, at most 320 KiB).
 *
 * The model loader (model/load.c) packs the matrices the forward pass
 * multiplies when the selected kernel set has a packed kernel for their
 * type, into new memory (the file's mapping may be read-only), and then
 * tells the kernel the file's pages are no longer needed.
 */
#ifndef EM_QUANT_PACK_H
#define EM_QUANT_PACK_H

#include "core/core.h"
#include "quant/gemm.h"

#define EM_PACK_ROWS 8        /* rows interleaved in one group (x8)       */
#define EM_PACK_ROWS_K 16     /* rows of a Q4_K, Q5_K or Q6_K group (x16) */
#define EM_PACK_Q4K_SB (EM_PACK_ROWS_K * 144) /* bytes of one x16 super-block */
#define EM_PACK_Q5K_SB (EM_PACK_ROWS_K * 176) /* bytes of one Q5_K x16 super-block */
#define EM_Q5KX16_A 256      /* offsets in a Q5_K x16 super-block: a[4][8][16][4] */
#define EM_Q5KX16_E EM_PACK_Q4K_SB /* and e[8][16][4] */
#define EM_PACK_Q6K_SB (EM_PACK_ROWS_K * 210) /* bytes of one Q6_K x16 super-block */
#define EM_Q6KX16_QUAD 768    /* bytes of a quad of a Q6_K x16 super-block */
#define EM_Q6KX16_SC 3072     /* offsets in a Q6_K x16 super-block: sc    */
#define EM_Q6KX16_D 3328      /*   d                                      */
/* Offset of run c of slot r of quad qd (64 bytes: four bytes of each of
 * the 16 rows) in a Q6_K x16 super-block. */
#define EM_Q6KX16_RUN(qd, r, c) ((qd) * EM_Q6KX16_QUAD + (4 * (r) + (c)) * 64)
#define EM_PACK_MAX_K 16384   /* longest row the packed kernels take      */
#define EM_PACK_RUN 4         /* blocks per run of an x8 group            */

/* Byte offsets, in an x8 group of nb blocks with qb quant bytes a row and
 * block (16 Q4_0, 32 Q8_0), of block b's eight fp16 scales (em_x8_d) and
 * of its eight rows' quants (em_x8_q): the group is a list of runs of
 * EM_PACK_RUN blocks (the last one may be shorter), each run its blocks'
 * scales, then their quants. */
static inline size_t em_x8_run(int64_t b, size_t qb) {
    return (size_t)((uint64_t)b / EM_PACK_RUN) * EM_PACK_RUN * EM_PACK_ROWS * (qb + 2);
}
static inline size_t em_x8_d(int64_t b, size_t qb) {
    return em_x8_run(b, qb) + (size_t)((uint64_t)b % EM_PACK_RUN) * 2 * EM_PACK_ROWS;
}
static inline size_t em_x8_q(int64_t nb, int64_t b, size_t qb) {
    const int64_t r0 = (int64_t)((uint64_t)b / EM_PACK_RUN * EM_PACK_RUN), n = EM_MIN(nb - r0, EM_PACK_RUN);
    return em_x8_run(b, qb) + (size_t)n * 2 * EM_PACK_ROWS + (size_t)(b - r0) * qb * EM_PACK_ROWS;
}

/* The same places for kernels that walk a group's blocks in order,
 * without the divisions: at = em_x8_first(base, nb) for block 0 (base 0
 * for offsets, or the group's address), then em_x8_next(&at, nb, b, qb)
 * on reaching block b (when b begins a run, it starts where b - 1's
 * quants end). */
typedef struct em_x8_at {
    uintptr_t d; /* the block's fp16 scales d[8]  */
    uintptr_t q; /* its quants qs[8][qb]          */
} em_x8_at;
static inline em_x8_at em_x8_first(uintptr_t base, int64_t nb) {
    return (em_x8_at){base, base + (uintptr_t)EM_MIN(nb, EM_PACK_RUN) * 2 * EM_PACK_ROWS};
}
static inline __attribute__((always_inline)) void em_x8_next(em_x8_at *at, int64_t nb, int64_t b, size_t qb) {
    at->d += 2 * EM_PACK_ROWS;
    at->q += qb * EM_PACK_ROWS;
    if ((uint64_t)b % EM_PACK_RUN == 0) {
        at->d = at->q;
        at->q += (uintptr_t)EM_MIN(nb - b, EM_PACK_RUN) * 2 * EM_PACK_ROWS;
    }
}

/* Rows per group of t's packed layout, or 0 when t has none. */
int em_pack_rows(em_type t);

/* Whether a matrix of nrows rows of k elements of type t can be packed:
 * t has a packed layout, nrows is a multiple of its group and k at most
 * EM_PACK_MAX_K. */
bool em_pack_fits(em_type t, int64_t k, int64_t nrows);

/* Packs nrows rows of k elements of type t (em_pack_fits must hold) from
 * the file's layout at src into dst (em_row_size(t, k) * nrows bytes;
 * src and dst must not overlap). */
void em_pack_matrix(em_type t, int64_t k, int64_t nrows, const void *src, void *dst);

/* Rebuilds block b of row i (< em_pack_rows(t)) of the packed group at grp
 * (rows of k elements) in the file's block format at blk. */
void em_pack_get_block(em_type t, int64_t k, const void *grp, int i, int64_t b, void *blk);

/* The product of em_gemm (gemm.h) for a packed matrix: w points at a
 * group, w_stride is the file layout's row size, and nw is a multiple of
 * the group (em_pack_rows).  The selected set's packed kernel, or the scalar twin. */
void em_gemm_packed(em_type t, int64_t k, const void *w, size_t w_stride, int64_t nw, const void *a,
                    size_t a_stride, int64_t na, float *out, int64_t out_stride);

/* The scalar twin: every block rebuilt and dotted by the scalar
 * reference, so each output equals em_vec_dot_generic of the unpacked
 * row bit for bit. */
void em_gemm_packed_generic(em_type t, int64_t k, const void *w, size_t w_stride, int64_t nw, const void *a,
                            size_t a_stride, int64_t na, float *out, int64_t out_stride);

/* The selected set's packed kernel for t, or NULL: the loader packs a
 * matrix only when there is one. */
em_gemm_fn em_gemm_packed_kernel(em_type t);

/* A product step on the calling thread (ops/matmul.c brackets each one):
 * between begin and end, activation rows do not change, so the lane
 * kernels below may keep the per-row tables they derive from them
 * (act_table: block sums and scales) from one chunk's call to the next
 * instead of rebuilding them for every chunk.  Outside a step (serial 0)
 * nothing is kept.  Thread-local; steps do not nest.  The AVX-512 Q8_0
 * lane kernel also keeps a copy of the rows interleaved per 16-row tile
 * (per block: the tile rows' 32 quants, then their biases and scales, 40
 * bytes a row; gemm_lanes_avx2.c, kept_interleaved): 1.25 bytes per
 * activation element, per thread, at most 4 MiB (a 16-row decode step of
 * a 3072-wide input: 60 KiB); larger matrices read the rows in place. */
void em_gemm_step_begin(void);
void em_gemm_step_end(void);
uint64_t em_gemm_step_serial(void); /* the open step's number, or 0 */

#if defined(EM_HAVE_X86_GEMM)
/* arch/x86/gemm_packed_avx2.c: AVX-512 VNNI, AVX-VNNI (256-bit) and AVX2
 * kernels of the x8 layouts. */
void em_gemm_q4_0x8_avx512(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_q8_0x8_avx512(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_q4_0x8_avxvnni(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_q8_0x8_avxvnni(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_q4_0x8_avx2(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_q8_0x8_avx2(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
/* arch/x86/gemm_packed_k_avx2.c: the same for Q4_K x16 (one activation
 * row included: the matrix-vector product of generation). */
void em_gemm_q4_kx16_avx512(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_q4_kx16_avxvnni(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_q4_kx16_avx2(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
/* arch/x86/gemm_packed_q6k_avx2.c: the same for Q6_K x16. */
/* arch/x86/gemm_packed_q5k_avx2.c: the same for Q5_K x16. */
void em_gemm_q5_kx16_avx512(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_q5_kx16_avxvnni(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_q5_kx16_avx2(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_q6_kx16_avx512(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_q6_kx16_avxvnni(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_q6_kx16_avx2(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
/* arch/x86/gemv_packed_avx2.c: the matrix-vector products (one activation
 * row a, out[j] for j < nw) that em_gemm_packed uses when na == 1. */
void em_gemv_q4_0x8_avx2(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, float *out);
void em_gemv_q8_0x8_avx2(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, float *out);
void em_gemv_q4_0x8_avx512(int64_t k, const void *w, size_t ws, int64_t nw, const void *a, float *out);
/* arch/x86/gemm_lanes_avx2.c: the same products with a whole weight row
 * per int32 lane, for two or more activation rows (one goes to the x8
 * kernels above); these are what the kernel sets install. */
void em_gemm_q4_0x8_lanes_avx512(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_q4_0x8_lanes_avxvnni(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_q4_0x8_lanes_avx2(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_q8_0x8_lanes_avx512(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_q8_0x8_lanes_avxvnni(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
void em_gemm_q8_0x8_lanes_avx2(int64_t, const void *, size_t, int64_t, const void *, size_t, int64_t, float *, int64_t);
#endif

#endif /* EM_QUANT_PACK_H */
