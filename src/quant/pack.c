/*
 * pack.c - the packed layouts (see pack.h: x8 for Q4_0 and Q8_0, x16 for
 * Q4_K, Q5_K and Q6_K): packing a matrix, rebuilding one block, and the scalar twin of
 * the packed GEMM kernels.  The kernel table that em_gemm_packed dispatches through is
 * filled with the other tables in dispatch.c.
 */
#include "quant/pack.h"
#include "quant/blocks.h"
#include "quant/quant.h"

/* Bytes of quants per block of one row in the x8 layouts (the block less
 * its fp16 scale). */
static size_t quant_bytes(em_type t) { return t == EM_TYPE_Q4_0 ? 16 : 32; }

int em_pack_rows(em_type t) {
    switch (t) {
    case EM_TYPE_Q4_0:
    case EM_TYPE_Q8_0: return EM_PACK_ROWS;
    case EM_TYPE_Q4_K:
    case EM_TYPE_Q5_K:
    case EM_TYPE_Q6_K: return EM_PACK_ROWS_K;
    default: return 0;
    }
}

bool em_pack_fits(em_type t, int64_t k, int64_t nrows) {
    const int g = em_pack_rows(t);
    if (g == 0) return false;
    const int64_t bs = em_get_type_traits(t)->block_size;
    return k > 0 && k % bs == 0 && k <= EM_PACK_MAX_K && nrows > 0 && nrows % g == 0;
}

/* ------------------------------------------------------------ Q4_K x16 */

/* One file block of a K-quant with an x16 layout, for the functions that
 * put a block in its places in a super-block and take it back. */
typedef union {
    em_block_q4_k q4;
    em_block_q5_k q5;
    em_block_q6_k q6;
} kx16_block;

/* Row i (< EM_PACK_ROWS_K) of the super-block at sb of a Q4_K or Q5_K
 * x16 group: the block's d and dmin (2 bytes each) and its 12 scale
 * bytes in their places, which the two layouts share (see pack.h). */
static void kx16_put_head(uint8_t *sb, int i, const void *d, const void *dmin, const uint8_t *scales) {
    memcpy(sb + 2 * i, d, 2);
    memcpy(sb + 32 + 2 * i, dmin, 2);
    for (int j = 0; j < 12; j++) sb[64 + 16 * j + i] = scales[j];
}

/* Row i of the super-block at sb of a Q4_K x16 group: the file's block
 * blk put in its places (see pack.h) ... */
static void q4kx16_put(uint8_t *sb, int i, const kx16_block *u) {
    const em_block_q4_k *blk = &u->q4;
    kx16_put_head(sb, i, &blk->d, &blk->dmin, blk->scales);
    for (int s = 0; s < 4; s++)
        for (int q = 0; q < 8; q++) memcpy(sb + 256 + ((s * 8 + q) * EM_PACK_ROWS_K + i) * 4, blk->qs + 32 * s + 4 * q, 4);
}

/* ... and taken back from them. */
static void q4kx16_get(const uint8_t *sb, int i, kx16_block *u) {
    em_block_q4_k *blk = &u->q4;
    memcpy(&blk->d, sb + 2 * i, 2);
    memcpy(&blk->dmin, sb + 32 + 2 * i, 2);
    for (int j = 0; j < 12; j++) blk->scales[j] = sb[64 + 16 * j + i];
    for (int s = 0; s < 4; s++)
        for (int q = 0; q < 8; q++) memcpy(blk->qs + 32 * s + 4 * q, sb + 256 + ((s * 8 + q) * EM_PACK_ROWS_K + i) * 4, 4);
}

/* ------------------------------------------------------------ Q5_K x16 */

/* The levels of group 2s + 1 that the kernels take from one 16-bit word
 * of a run a[s][q] and the word of e[q] at the same place: bytes of
 * ((a >> 5) ^ (e shifted left by 3 - 2s)) & 31, shifts of the whole word
 * as vpsrlw/vpsllw do them (pack.h).  Unpacking takes the levels so. */
static unsigned q5kx16_hi(unsigned a, unsigned e, int s) {
    const unsigned t = s < 2 ? e << (3 - 2 * s) : e >> (2 * s - 3);
    return (a >> 5 ^ t) & 0x1F1Fu;
}

/* Four bytes (two 16-bit words) at once, as 32-bit integers: the words'
 * shifts of q5kx16_hi with the bits that would cross from one word into
 * the other masked off. */
static uint32_t q5kx16_hi4(uint32_t a, uint32_t e, int s) {
    const uint32_t t = s < 2 ? (e << (3 - 2 * s)) & 0x10001u * (0xFFFFu << (3 - 2 * s) & 0xFFFFu)
                             : (e >> (2 * s - 3)) & 0x10001u * (0xFFFFu >> (2 * s - 3));
    return ((a >> 5 & 0x07FF07FFu) ^ t) & 0x1F1F1F1Fu;
}

static uint32_t ld4(const uint8_t *p) { return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

static void st4(uint8_t *p, uint32_t v) {
    for (int c = 0; c < 4; c++) p[c] = (uint8_t)(v >> 8 * c);
}

/* Row i of the super-block at sb of a Q5_K x16 group: d, dmin and the
 * scales in the places of a Q4_K x16 super-block (kx16_put_head), then the
 * 5-bit levels as the runs a[s][q] and e[q] (see pack.h), the four bytes
 * of each run of the row at once ... */
static void q5kx16_put(uint8_t *sb, int i, const kx16_block *u) {
    const em_block_q5_k *blk = &u->q5;
    kx16_put_head(sb, i, &blk->d, &blk->dmin, blk->scales);
    for (int q = 0; q < 8; q++) {
        const uint32_t h = ld4(blk->qh + 4 * q), m1 = 0x01010101u, m4 = 0x0F0F0F0Fu;
        uint32_t l0[4], l1[4], e = 0;
        for (int s = 0; s < 4; s++) {
            const uint32_t x = ld4(blk->qs + 32 * s + 4 * q);
            l0[s] = (x & m4) | (h >> (2 * s) & m1) << 4;
            l1[s] = (x >> 4 & m4) | (h >> (2 * s + 1) & m1) << 4;
        }
        /* Bits 3-4 of group 2s + 1's levels come from e's bits 2s, 2s + 1
         * alone (and from a's levels of group 2s), bits 0-2 from a's bits
         * 5-7 alone (and from e): e first, then the bits 5-7. */
        for (int s = 0; s < 4; s++) e |= ((q5kx16_hi4(l0[s], 0, s) ^ l1[s]) >> 3 & 0x03030303u) << 2 * s;
        for (int s = 0; s < 4; s++)
            st4(sb + EM_Q5KX16_A + ((s * 8 + q) * EM_PACK_ROWS_K + i) * 4,
                l0[s] | ((q5kx16_hi4(l0[s], e, s) ^ l1[s]) & 0x07070707u) << 5);
        st4(sb + EM_Q5KX16_E + (q * EM_PACK_ROWS_K + i) * 4, e);
    }
}

/* ... and taken back from them. */
static void q5kx16_get(const uint8_t *sb, int i, kx16_block *u) {
    em_block_q5_k *blk = &u->q5;
    kx16_block lo;
    q4kx16_get(sb, i, &lo);
    memcpy(&blk->d, &lo.q4.d, 2);
    memcpy(&blk->dmin, &lo.q4.dmin, 2);
    memcpy(blk->scales, lo.q4.scales, sizeof lo.q4.scales);
    for (int f = 0; f < 32; f += 2) {
        const int q = f / 4, l = f % 4;
        const uint8_t *et = sb + EM_Q5KX16_E + (q * EM_PACK_ROWS_K + i) * 4 + l;
        const unsigned e = et[0] | (unsigned)et[1] << 8;
        unsigned h = 0;
        for (int s = 0; s < 4; s++) {
            const uint8_t *at = sb + EM_Q5KX16_A + ((s * 8 + q) * EM_PACK_ROWS_K + i) * 4 + l;
            const unsigned a = at[0] | (unsigned)at[1] << 8, l0 = a & 0x1F1Fu, l1 = q5kx16_hi(a, e, s);
            for (int c = 0; c < 2; c++) {
                const unsigned v0 = l0 >> 8 * c & 31, v1 = l1 >> 8 * c & 31;
                blk->qs[32 * s + f + c] = (uint8_t)((v0 & 15) | (v1 & 15) << 4);
                h |= ((v0 >> 4) << (2 * s) | (v1 >> 4) << (2 * s + 1)) << 8 * c;
            }
        }
        blk->qh[f] = (uint8_t)h;
        blk->qh[f + 1] = (uint8_t)(h >> 8);
    }
}

/* ------------------------------------------------------------ Q6_K x16 */

/* The levels (0..63) of a Q6_K block's 256 elements, as the file splits
 * them: elements 128n + l + 32m (l < 32, m < 4) have their low four bits
 * in ql[64n + 32 (m % 2) + l] (the high nibble for m >= 2) and their two
 * high bits in qh[32n + l] at bit 2m. */
static void q6k_levels(const em_block_q6_k *blk, uint8_t *lv) {
    for (int n = 0; n < 2; n++)
        for (int l = 0; l < 32; l++) {
            const int q0 = blk->ql[64 * n + l], q1 = blk->ql[64 * n + 32 + l], h = blk->qh[32 * n + l];
            uint8_t *v = lv + 128 * n + l;
            v[0] = (uint8_t)((q0 & 15) | (h & 3) << 4);
            v[32] = (uint8_t)((q1 & 15) | (h >> 2 & 3) << 4);
            v[64] = (uint8_t)((q0 >> 4) | (h >> 4 & 3) << 4);
            v[96] = (uint8_t)((q1 >> 4) | (h >> 6) << 4);
        }
}

/* ... and the file's ql and qh from them. */
static void q6k_split(const uint8_t *lv, em_block_q6_k *blk) {
    for (int n = 0; n < 2; n++)
        for (int l = 0; l < 32; l++) {
            const uint8_t *v = lv + 128 * n + l;
            blk->ql[64 * n + l] = (uint8_t)((v[0] & 15) | (v[64] & 15) << 4);
            blk->ql[64 * n + 32 + l] = (uint8_t)((v[32] & 15) | (v[96] & 15) << 4);
            blk->qh[32 * n + l] = (uint8_t)(v[0] >> 4 | (v[32] >> 4) << 2 | (v[64] >> 4) << 4 | (v[96] >> 4) << 6);
        }
}

/* Row i of the super-block at sb of a Q6_K x16 group: the file's block
 * blk put in its places (see pack.h: byte j of run c of slot r of quad
 * qd holds in bits 0-5 the level of element 16 (4qd + r) + 4c + j, and in
 * bits 6-7 bits 4 - 2r, 5 - 2r of that of element 16 (4qd + 3) + 4c + j) ... */
static void q6kx16_put(uint8_t *sb, int i, const kx16_block *u) {
    const em_block_q6_k *blk = &u->q6;
    uint8_t lv[EM_QK_K];
    q6k_levels(blk, lv);
    for (int qd = 0; qd < 4; qd++)
        for (int c = 0; c < 4; c++) {
            const uint8_t *v = lv + 64 * qd + 4 * c; /* element 16 (4qd) + 4c */
            for (int r = 0; r < 3; r++) {
                uint8_t x[4];
                for (int j = 0; j < 4; j++) x[j] = (uint8_t)(v[16 * r + j] | (v[48 + j] >> (4 - 2 * r) & 3) << 6);
                memcpy(sb + EM_Q6KX16_RUN(qd, r, c) + i * 4, x, 4);
            }
        }
    for (int p = 0; p < 8; p++) memcpy(sb + EM_Q6KX16_SC + (p * EM_PACK_ROWS_K + i) * 2, blk->scales + 2 * p, 2);
    memcpy(sb + EM_Q6KX16_D + 2 * i, &blk->d, 2);
}

/* ... and taken back from them. */
static void q6kx16_get(const uint8_t *sb, int i, kx16_block *u) {
    em_block_q6_k *blk = &u->q6;
    uint8_t lv[EM_QK_K];
    for (int qd = 0; qd < 4; qd++)
        for (int c = 0; c < 4; c++) {
            uint8_t *v = lv + 64 * qd + 4 * c;
            memset(v + 48, 0, 4);
            for (int r = 0; r < 3; r++) {
                uint8_t x[4];
                memcpy(x, sb + EM_Q6KX16_RUN(qd, r, c) + i * 4, 4);
                for (int j = 0; j < 4; j++) {
                    v[16 * r + j] = x[j] & 63;
                    v[48 + j] = (uint8_t)(v[48 + j] | (x[j] >> 6) << (4 - 2 * r));
                }
            }
        }
    q6k_split(lv, blk);
    for (int p = 0; p < 8; p++) memcpy(blk->scales + 2 * p, sb + EM_Q6KX16_SC + (p * EM_PACK_ROWS_K + i) * 2, 2);
    memcpy(&blk->d, sb + EM_Q6KX16_D + 2 * i, 2);
}

/* The x16 layouts' two functions for type t, or NULL for a type without
 * one. */
typedef struct {
    void (*put)(uint8_t *sb, int i, const kx16_block *blk);
    void (*get)(const uint8_t *sb, int i, kx16_block *blk);
} kx16_ops;

static const kx16_ops *kx16_of(em_type t) {
    static const kx16_ops q4 = {q4kx16_put, q4kx16_get}, q5 = {q5kx16_put, q5kx16_get}, q6 = {q6kx16_put, q6kx16_get};
    return t == EM_TYPE_Q4_K ? &q4 : t == EM_TYPE_Q5_K ? &q5 : t == EM_TYPE_Q6_K ? &q6 : NULL;
}

void em_pack_matrix(em_type t, int64_t k, int64_t nrows, const void *src, void *dst) {
    const size_t rs = em_row_size(t, k);
    const kx16_ops *ops = kx16_of(t);
    if (ops) {
        /* A super-block holds block b of each of the group's 16 rows. */
        const size_t bs = em_get_type_traits(t)->type_size, sbs = EM_PACK_ROWS_K * bs;
        const int64_t nb = k / EM_QK_K;
        for (int64_t g0 = 0; g0 < nrows; g0 += EM_PACK_ROWS_K)
            for (int i = 0; i < EM_PACK_ROWS_K; i++) {
                const uint8_t *row = (const uint8_t *)src + (size_t)(g0 + i) * rs;
                for (int64_t b = 0; b < nb; b++) {
                    kx16_block blk;
                    memcpy(&blk, row + (size_t)b * bs, bs);
                    ops->put((uint8_t *)dst + (size_t)g0 * rs + (size_t)b * sbs, i, &blk);
                }
            }
        return;
    }
    const int64_t nb = k / 32;
    const size_t qb = quant_bytes(t), bs = qb + 2;
    for (int64_t g0 = 0; g0 < nrows; g0 += EM_PACK_ROWS) {
        const uint8_t *in = (const uint8_t *)src + (size_t)g0 * rs;
        uint8_t *grp = (uint8_t *)dst + (size_t)g0 * rs;
        for (int64_t b = 0; b < nb; b++)
            for (int i = 0; i < EM_PACK_ROWS; i++) {
                const uint8_t *blk = in + (size_t)i * rs + (size_t)b * bs;
                memcpy(grp + em_x8_d(b, qb) + (size_t)i * 2, blk, 2);
                memcpy(grp + em_x8_q(nb, b, qb) + (size_t)i * qb, blk + 2, qb);
            }
    }
}

void em_pack_get_block(em_type t, int64_t k, const void *grp, int i, int64_t b, void *blk) {
    const kx16_ops *ops = kx16_of(t);
    if (ops) {
        const size_t bs = em_get_type_traits(t)->type_size;
        kx16_block out;
        ops->get((const uint8_t *)grp + (size_t)b * EM_PACK_ROWS_K * bs, i, &out);
        memcpy(blk, &out, bs);
        return;
    }
    const int64_t nb = k / 32;
    const size_t qb = quant_bytes(t);
    memcpy(blk, (const uint8_t *)grp + em_x8_d(b, qb) + (size_t)i * 2, 2);
    memcpy((uint8_t *)blk + 2, (const uint8_t *)grp + em_x8_q(nb, b, qb) + (size_t)i * qb, qb);
}

void em_gemm_packed_generic(em_type t, int64_t k, const void *w, size_t w_stride, int64_t nw, const void *a,
                            size_t a_stride, int64_t na, float *out, int64_t out_stride) {
    const em_type_traits *tr = em_get_type_traits(t);
    const int64_t bsz = tr->block_size, nb = k / bsz;
    const int rows = em_pack_rows(t);
    const size_t as = em_row_size(tr->vec_dot_type, bsz); /* one activation block */
    _Alignas(16) uint8_t blk[sizeof(em_block_q6_k)]; /* the largest packed block */
    _Static_assert(sizeof(em_block_q6_k) >= sizeof(em_block_q4_k) &&
                       sizeof(em_block_q6_k) >= sizeof(em_block_q5_k) && sizeof(em_block_q6_k) >= sizeof(em_block_q8_0),
                   "block buffer");
    for (int64_t j0 = 0; j0 < nw; j0 += rows) {
        const uint8_t *grp = (const uint8_t *)w + (size_t)j0 * w_stride;
        for (int64_t r = 0; r < na; r++) {
            const uint8_t *ar = (const uint8_t *)a + (size_t)r * a_stride;
            for (int i = 0; i < rows && j0 + i < nw; i++) {
                /* The reference's order: one float sum over the blocks, each
                 * block's integer dot times its scales. */
                float sum = 0;
                for (int64_t b = 0; b < nb; b++) {
                    em_pack_get_block(t, k, grp, i, b, blk);
                    sum += em_vec_dot_generic(t, bsz, blk, ar + (size_t)b * as);
                }
                out[r * out_stride + j0 + i] = sum;
            }
        }
    }
}

/* The calling thread's open product step (pack.h): a number that grows
 * with every step, so that what a kernel kept from one step never passes
 * for the next, and 0 between steps. */
static _Thread_local uint64_t step_count, step_open;

void em_gemm_step_begin(void) { step_open = ++step_count; }

void em_gemm_step_end(void) { step_open = 0; }

uint64_t em_gemm_step_serial(void) { return step_open; }
