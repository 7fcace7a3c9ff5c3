/*
 * test_kv.c - the paged KV cache: blocks taken and given back, block
 * tables longer than one block, copy-on-write after sharing, prefix reuse
 * and the order of eviction, bad ids, where each KV head's slices are
 * stored and read back (F32, F16, Q8_0); then, on stories260K, em_decode over
 * many sequences at once, prefix reuse, per-row status when the cache
 * fills, and hidden states.
 */
#include "ember.h"
#include "kv/kv.h"
#include "model/model.h"
#include "quant/quant.h"
#include "test.h"

#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* --------------------------------------------------- the cache alone */

/* Places rows [p0, p1) of sequence s with tokens tok[p] (tok may be NULL);
 * the status of the call. */
static em_status place_run(em_kv *kv, em_seq_id s, em_pos p0, em_pos p1, const em_token *tok, int32_t *cells) {
    em_seq_id seq[64];
    em_pos pos[64];
    em_token t[64];
    int32_t n = p1 - p0;
    for (int32_t i = 0; i < n; i++) {
        seq[i] = s;
        pos[i] = p0 + i;
        t[i] = tok ? tok[p0 + i] : -1;
    }
    return em_kv_place(kv, n, seq, pos, tok ? t : NULL, cells, NULL);
}

static void test_blocks(void) {
    em_kv kv;
    /* 64 positions: four blocks. */
    CHECK_OK(em_kv_init(&kv, 64, 4, 2, 4, 4, EM_TYPE_F32, 4, 4));
    CHECK(kv.n_blocks == 4 && kv.pools[0].n_free == 4);
    int32_t cells[64];
    /* A sequence of 20 positions holds two blocks; its rows run on within
     * a block and jump at the block boundary. */
    CHECK_OK(place_run(&kv, 0, 0, 20, NULL, cells));
    CHECK(em_kv_n_used(&kv) == 2 && kv.pools[0].n_free == 2 && kv.seqs[0].len == 20);
    int contiguous = 1;
    for (int p = 1; p < 16; p++) contiguous &= cells[p] == cells[0] + p;
    CHECK(contiguous && cells[16] / EM_KV_BLOCK != cells[0] / EM_KV_BLOCK && cells[16] % EM_KV_BLOCK == 0);
    for (int p = 0; p < 20; p++) CHECK(em_kv_cell(&kv, 0, p) == cells[p]);
    /* Growing by rows in later calls fills the same block. */
    int32_t c;
    CHECK_OK(place_run(&kv, 0, 20, 21, NULL, &c));
    CHECK(c == cells[16] + 4 && em_kv_n_used(&kv) == 2);
    /* Trimming gives back whole blocks only. */
    CHECK_OK(em_kv_drop(&kv, 0, 17, -1));
    CHECK(em_kv_n_used(&kv) == 2 && kv.seqs[0].len == 17);
    CHECK_OK(em_kv_drop(&kv, 0, 16, -1));
    CHECK(em_kv_n_used(&kv) == 1 && kv.pools[0].n_free == 3);
    /* Filling the pool: 48 more positions fit in seq 1, the 49th does not
     * and changes nothing. */
    CHECK_OK(place_run(&kv, 1, 0, 48, NULL, cells));
    CHECK(kv.pools[0].n_free == 0);
    CHECK(place_run(&kv, 1, 48, 49, NULL, cells) == EM_ERR_CONTEXT_FULL);
    CHECK(kv.seqs[1].len == 48);
    CHECK_OK(em_kv_drop(&kv, -1, 0, -1));
    CHECK(em_kv_n_used(&kv) == 0 && kv.pools[0].n_free == 4 && kv.pools[0].n_cached == 0);
    em_kv_free(&kv);
}

static void test_bad_ids(void) {
    em_kv kv;
    CHECK_OK(em_kv_init(&kv, 64, 2, 1, 4, 4, EM_TYPE_F32, 4, 4));
    int32_t cells[4];
    em_status st[4];
    em_seq_id seq[4] = {0, 5, 1, 1};
    em_pos pos[4] = {0, 0, 0, 2};
    /* A bad id fails its row, a position that is not its sequence's next
     * fails its own; the rest is placed. */
    CHECK_OK(em_kv_place(&kv, 4, seq, pos, NULL, cells, st));
    CHECK(st[0] == EM_OK && st[1] == EM_ERR_INVALID_ARG && st[2] == EM_OK && st[3] == EM_ERR_INVALID_ARG);
    CHECK(cells[0] >= 0 && cells[1] < 0 && cells[2] >= 0 && cells[3] < 0);
    CHECK(kv.seqs[0].len == 1 && kv.seqs[1].len == 1);
    CHECK(em_kv_drop(&kv, 2, 0, -1) == EM_ERR_INVALID_ARG);
    CHECK(em_kv_share(&kv, 0, 2, 0, -1) == EM_ERR_INVALID_ARG);
    CHECK(em_kv_share(&kv, -1, 1, 0, -1) == EM_ERR_INVALID_ARG);
    CHECK(em_kv_share(&kv, 0, 1, 3, -1) == EM_ERR_UNSUPPORTED);
    CHECK(em_kv_reuse(&kv, 2, NULL, 0) == -1 && em_kv_reuse(&kv, 0, NULL, 0) == -1);
    /* A hole in the middle of a sequence is refused; nothing changes. */
    CHECK_OK(em_kv_drop(&kv, 0, 1, -1));
    em_seq_id s3[3] = {0, 0, 0};
    em_pos p3[3] = {1, 2, 3};
    CHECK_OK(em_kv_place(&kv, 3, s3, p3, NULL, cells, NULL));
    CHECK(em_kv_drop(&kv, 0, 1, 2) == EM_ERR_UNSUPPORTED && kv.seqs[0].len == 4);
    CHECK_OK(em_kv_drop(&kv, 0, 2, 100));
    CHECK(kv.seqs[0].len == 2);
    em_kv_free(&kv);
}

/* Copy-on-write: sharing takes no block; the first write into the shared
 * partial block copies its rows, and the source keeps its own. */
static void test_cow(void) {
    em_kv kv;
    CHECK_OK(em_kv_init(&kv, 64, 2, 2, 4, 4, EM_TYPE_F32, 4, 4));
    int32_t cells[32];
    CHECK_OK(place_run(&kv, 0, 0, 20, NULL, cells));
    float k[4], v[4];
    for (int p = 0; p < 20; p++)
        for (int l = 0; l < 2; l++) {
            for (int i = 0; i < 4; i++) k[i] = v[i] = (float)(1000 * l + 10 * p + i);
            em_kv_write(&kv, l, cells[p], 0, 1, k, v, NULL);
        }
    CHECK_OK(em_kv_share(&kv, 0, 1, 0, 18));
    CHECK(em_kv_n_used(&kv) == 2 && kv.seqs[1].len == 18);
    CHECK(em_kv_cell(&kv, 1, 17) == em_kv_cell(&kv, 0, 17));
    int32_t c;
    CHECK_OK(place_run(&kv, 1, 18, 19, NULL, &c));
    CHECK(em_kv_n_used(&kv) == 3);
    CHECK(em_kv_cell(&kv, 1, 3) == em_kv_cell(&kv, 0, 3));   /* the full block stays shared */
    CHECK(em_kv_cell(&kv, 1, 17) != em_kv_cell(&kv, 0, 17)); /* the partial one was copied  */
    CHECK(c == em_kv_cell(&kv, 1, 18));
    int same = 1;
    for (int l = 0; l < 2; l++)
        for (int p = 16; p < 18; p++) {
            const float *a = (const float *)kv.k[l] + (size_t)em_kv_cell(&kv, 0, p) * 4;
            const float *b = (const float *)kv.k[l] + (size_t)em_kv_cell(&kv, 1, p) * 4;
            const float *av = (const float *)kv.v[l] + (size_t)em_kv_cell(&kv, 0, p) * 4;
            const float *bv = (const float *)kv.v[l] + (size_t)em_kv_cell(&kv, 1, p) * 4;
            same &= memcmp(a, b, 16) == 0 && memcmp(av, bv, 16) == 0 && a[0] == (float)(1000 * l + 10 * p);
        }
    CHECK_MSG(same, "copy-on-write: the copied rows differ from the source's");
    /* The source's block is its own again: it grows in place. */
    CHECK_OK(place_run(&kv, 0, 20, 21, NULL, &c));
    CHECK(em_kv_n_used(&kv) == 3 && c == em_kv_cell(&kv, 0, 19) + 1);
    /* Sharing over a sequence that holds blocks gives them back. */
    CHECK_OK(em_kv_share(&kv, 0, 1, 0, -1));
    CHECK(em_kv_n_used(&kv) == 2 && kv.seqs[1].len == 21);
    em_kv_free(&kv);
}

/* Prefix reuse and least-recently-used eviction on the cache alone. */
static void test_reuse_and_eviction(void) {
    em_kv kv;
    CHECK_OK(em_kv_init(&kv, 64, 4, 1, 4, 4, EM_TYPE_F32, 4, 4));
    em_token a[33], b[17], cc[17];
    for (int i = 0; i < 33; i++) a[i] = 100 + i;
    for (int i = 0; i < 17; i++) {
        b[i] = 200 + i;
        cc[i] = 300 + i;
    }
    int32_t cells[64];
    CHECK_OK(place_run(&kv, 0, 0, 32, a, cells)); /* two full blocks  */
    CHECK_OK(place_run(&kv, 1, 0, 16, b, cells)); /* one full block   */
    CHECK_OK(place_run(&kv, 2, 0, 16, cc, cells));
    CHECK(kv.pools[0].n_free == 0 && kv.pools[0].n_cached == 0);
    /* Released in the order b, a, c: they stay cached, in that order. */
    CHECK_OK(em_kv_drop(&kv, 1, 0, -1));
    CHECK_OK(em_kv_drop(&kv, 0, 0, -1));
    CHECK_OK(em_kv_drop(&kv, 2, 0, -1));
    CHECK(kv.pools[0].n_cached == 4 && kv.pools[0].n_free == 0 && em_kv_n_used(&kv) == 0);
    /* Reuse: a's two blocks match a[0..33); at most n - 1 positions. */
    CHECK(em_kv_reuse(&kv, 3, a, 33) == 32);
    CHECK(kv.pools[0].n_cached == 2 && em_kv_n_used(&kv) == 2 && kv.prefix_hits == 2 && kv.prefix_lookups == 1);
    CHECK_OK(em_kv_drop(&kv, 3, 0, -1));
    CHECK(em_kv_reuse(&kv, 3, a, 32) == 16); /* n - 1 = 31 positions: one block */
    CHECK_OK(em_kv_drop(&kv, 3, 0, -1));
    /* A block matches only after the same preceding tokens. */
    em_token shifted[33];
    shifted[0] = 1;
    memcpy(shifted + 1, a, 32 * sizeof *a);
    CHECK(em_kv_reuse(&kv, 3, shifted, 33) == 0);
    em_token a2[33];
    memcpy(a2, a, sizeof a2);
    a2[3] = 7; /* the first block differs, the second is a's */
    CHECK(em_kv_reuse(&kv, 3, a2, 33) == 0);
    /* The cached order is now b, c, then a's blocks (used last): a new
     * sequence of two blocks evicts b, then c. */
    CHECK_OK(place_run(&kv, 0, 0, 32, NULL, cells));
    CHECK(kv.pools[0].n_cached == 2);
    CHECK(em_kv_reuse(&kv, 1, b, 17) == 0 && em_kv_reuse(&kv, 2, cc, 17) == 0);
    CHECK(em_kv_reuse(&kv, 3, a, 33) == 32);
    CHECK(kv.prefix_hits == 2 + 1 + 2 && kv.pools[0].n_cached == 0 && kv.pools[0].n_free == 0);
    em_kv_free(&kv);
}

/* ------------------------------------------------ layer groups alone */

/* The value stored for (layer, position): element e of its key row. */
static float kv_val(int l, int p, int e) { return (float)(l * 100000 + p * 10 + e); }

/* Places [p0, p1) of sequence s with tokens tok, writes every layer's
 * rows with kv_val, and settles (as em_decode does). */
static em_status place_write(em_kv *kv, em_seq_id s, em_pos p0, em_pos p1, const em_token *tok) {
    int32_t cells[64];
    em_status st = place_run(kv, s, p0, p1, tok, cells);
    if (st != EM_OK) return st;
    float k[4], v[4];
    for (em_pos p = p0; p < p1; p++)
        for (int l = 0; l < kv->n_layer; l++) {
            for (int e = 0; e < 4; e++) k[e] = v[e] = kv_val(l, p, e);
            em_kv_write(kv, l, em_kv_layer_cell(kv, l, s, p), 0, 1, k, v, NULL);
        }
    em_seq_id one = s;
    em_kv_settle(kv, 1, &one);
    return EM_OK;
}

/* Every position that the next row of s sees, in every layer, holds the
 * values written for it; lo_of gives the first visible position. */
static int visible_ok(const em_kv *kv, em_seq_id s, const int32_t *window, const int32_t *chunk) {
    const em_pos len = kv->seqs[s].len;
    int ok = 1;
    for (int l = 0; l < kv->n_layer; l++) {
        em_pos lo = 0;
        if (window[l] > 0) lo = len - window[l] + 1 > 0 ? len - window[l] + 1 : 0;
        if (chunk[l] > 0) lo = len - len % chunk[l];
        for (em_pos p = lo; p < len; p++) {
            const float *row = (const float *)kv->k[l] + (size_t)em_kv_layer_cell(kv, l, s, p) * 4;
            ok &= row[0] == kv_val(l, p, 0) && row[3] == kv_val(l, p, 3);
        }
    }
    return ok;
}

/* Blocks a group of sequence s holds. */
static int held(const em_kv *kv, em_seq_id s, int g) {
    int n = 0;
    for (int i = 0; i < (kv->seqs[s].len + EM_KV_BLOCK - 1) / EM_KV_BLOCK; i++) n += kv->seqs[s].blocks[g][i] >= 0;
    return n;
}

static void test_groups(void) {
    /* Layer 0 windowed (32), 1 global, 2 chunked (48), 3 windowed. */
    const int32_t window[4] = {32, 0, 0, 32}, chunk[4] = {0, 0, 48, 0};
    const em_kv_layout lo = {.window = window, .chunk = chunk, .n_batch = 16};
    em_kv kv;
    CHECK_OK(em_kv_init_layout(&kv, 512, 2, 4, 4, 4, EM_TYPE_F32, 4, 4, &lo));
    CHECK(kv.n_groups == 3 && kv.pools[0].span == EM_KV_GLOBAL && kv.pools[0].n_layer == 1);
    CHECK(kv.group[0] == kv.group[3] && kv.group[0] != kv.group[2] && kv.group[1] == 0);
    const int gw = kv.group[0], gc = kv.group[2];
    CHECK(kv.pools[gw].span == EM_KV_WINDOW && kv.pools[gw].size == 32 && kv.pools[gw].n_layer == 2);
    CHECK(kv.pools[gc].span == EM_KV_CHUNK && kv.pools[gc].size == 48);
    /* Pool sizes: 32 blocks for the context; a window of 32 needs 3 blocks
     * per sequence, plus a batch's 1, plus min(n_seq, n_batch) = 2. */
    CHECK(kv.pools[0].n_blocks == 32 && kv.pools[gw].n_blocks == 2 * 3 + 1 + 2);
    CHECK(kv.pools[gc].n_blocks == 2 * 4 + 1 + 2);

    em_token a[512];
    for (int i = 0; i < 512; i++) a[i] = 1000 + i;
    /* 200 positions, 16 at a time: the global group holds all 13 blocks,
     * the window (positions 169..199) 3, the chunk (192..199) 1. */
    int ok = 1;
    for (em_pos p = 0; p < 200; p += 16) ok &= place_write(&kv, 0, p, EM_MIN(p + 16, 200), a) == EM_OK;
    CHECK(ok && kv.seqs[0].len == 200);
        CHECK(held(&kv, 0, 0) == 13 && held(&kv, 0, gw) == 3 && held(&kv, 0, gc) == 1);
    CHECK(em_kv_pool_used(&kv, gw) == 3 && em_kv_pool_used(&kv, gc) == 1);
    CHECK(visible_ok(&kv, 0, window, chunk));
    /* Blocks that left the window stay cached (they are hashed). */
    CHECK(kv.pools[gw].n_cached > 0);

    /* Copy: seq 1 shares what seq 0 holds; its own rows copy the partial
     * block in every group and leave seq 0's rows alone. */
    CHECK_OK(em_kv_share(&kv, 0, 1, 0, -1));
    CHECK(kv.seqs[1].len == 200 && held(&kv, 1, gw) == 3 && em_kv_pool_used(&kv, gw) == 3);
    em_token b[512];
    memcpy(b, a, sizeof b);
    for (int i = 200; i < 512; i++) b[i] = 5000 + i;
    CHECK_OK(place_write(&kv, 1, 200, 210, b));
    CHECK(visible_ok(&kv, 0, window, chunk) && visible_ok(&kv, 1, window, chunk));
    CHECK(em_kv_layer_cell(&kv, 0, 0, 199) != em_kv_layer_cell(&kv, 0, 1, 199));
    CHECK(em_kv_layer_cell(&kv, 0, 0, 180) == em_kv_layer_cell(&kv, 0, 1, 180));

    /* Trimming back past the window finds the given-back blocks again by
     * their hashes: the sequence is exactly 150 long and sees its rows. */
    CHECK_OK(em_kv_drop(&kv, 0, 150, -1));
    CHECK(kv.seqs[0].len == 150 && visible_ok(&kv, 0, window, chunk));
    CHECK(held(&kv, 0, gw) == 3 && held(&kv, 0, gc) == 1); /* 119..149; 144..149 */

    /* Prefix reuse.  The trim of seq 0 to 150 took the hash of its cut
     * block 9 in the groups where it owned it alone (it will be written
     * over), so a new sequence with a's first 180 tokens gets 144
     * positions (9 blocks): the windowed group holds only the blocks its
     * next row sees (113..143: blocks 7 and 8), the chunked group none
     * (144 starts a chunk). */
    CHECK_OK(em_kv_drop(&kv, 1, 0, -1));
    CHECK(em_kv_reuse(&kv, 1, a, 181) == 144);
    CHECK(held(&kv, 1, 0) == 9 && held(&kv, 1, gw) == 2 && held(&kv, 1, gc) == 0);
    CHECK(visible_ok(&kv, 1, window, chunk));
    CHECK_OK(place_write(&kv, 1, 144, 150, a));
    CHECK(visible_ok(&kv, 1, window, chunk));

    /* Once the window's blocks are evicted, reuse stops where every group
     * can serve, and a trim cuts back further than asked. */
    CHECK_OK(em_kv_drop(&kv, -1, 0, -1));
    CHECK(em_kv_pool_used(&kv, 0) == 0 && em_kv_pool_used(&kv, gw) == 0 && em_kv_pool_used(&kv, gc) == 0);
    em_token c[512];
    for (int i = 0; i < 512; i++) c[i] = 9000 + i;
    ok = 1;
    for (em_pos p = 0; p < 320; p += 16) ok &= place_write(&kv, 0, p, p + 16, c) == EM_OK;
    CHECK(ok && held(&kv, 0, gw) == 2);
    /* The window pool has 9 blocks: a's blocks and c's early ones are gone. */
    CHECK(em_kv_reuse(&kv, 1, a, 181) == 0);
    CHECK_OK(em_kv_drop(&kv, 0, 40, -1));
    CHECK(kv.seqs[0].len < 40 && visible_ok(&kv, 0, window, chunk));
    /* The global group still has c's blocks: a reuse of c's first 100
     * tokens gets only what the window group can serve. */
    CHECK_OK(em_kv_drop(&kv, -1, 0, -1));
    CHECK(em_kv_reuse(&kv, 1, c, 101) == 0);
    em_kv_free(&kv);

    /* A layer with a window and chunks keeps the smaller; bad layouts are
     * refused. */
    const int32_t w64[1] = {64}, c32[1] = {32}, neg[1] = {-1};
    em_kv_layout wc = {.window = w64, .chunk = c32, .n_batch = 16};
    CHECK_OK(em_kv_init_layout(&kv, 256, 1, 1, 4, 4, EM_TYPE_F32, 4, 4, &wc));
    CHECK(kv.n_groups == 1 && kv.pools[0].span == EM_KV_CHUNK && kv.pools[0].size == 32);
    em_kv_free(&kv);
    em_kv_layout bad = {.window = neg, .n_batch = 16};
    CHECK(em_kv_init_layout(&kv, 64, 1, 1, 4, 4, EM_TYPE_F32, 4, 4, &bad) == EM_ERR_INVALID_ARG);
    /* A layer reading another's rows (Gemma 4) is in its source's group,
     * which keeps what both see. */
    const em_kv_layer shl[3] = {{4, 4, 0}, {4, 4, 1}, {4, 4, 0}};
    const int32_t w_same[3] = {32, 0, 32}, w_wider[3] = {32, 0, 0};
    em_kv_layout sl = {.window = w_same, .n_batch = 16, .layers = shl};
    CHECK_OK(em_kv_init_layout(&kv, 256, 1, 3, 4, 4, EM_TYPE_F32, 0, 0, &sl));
    CHECK(kv.n_groups == 2 && kv.group[2] == kv.group[0] && kv.group[0] != 0 && kv.k[2] == kv.k[0]);
    CHECK(kv.pools[kv.group[0]].n_layer == 1 && kv.pools[0].n_layer == 1);
    em_kv_free(&kv);
    sl.window = w_wider;
    CHECK_OK(em_kv_init_layout(&kv, 256, 1, 3, 4, 4, EM_TYPE_F32, 0, 0, &sl));
    CHECK(kv.n_groups == 1 && kv.group[0] == 0 && kv.group[2] == 0 && kv.pools[0].n_layer == 2);
    em_kv_free(&kv);
    /* Every layer windowed: group 0 is the window, sized by it. */
    const int32_t all[2] = {32, 32};
    const em_kv_layout wl = {.window = all, .n_batch = 16};
    CHECK_OK(em_kv_init_layout(&kv, 1024, 1, 2, 4, 4, EM_TYPE_F32, 4, 4, &wl));
    CHECK(kv.n_groups == 1 && kv.pools[0].span == EM_KV_WINDOW && kv.pools[0].n_blocks == 3 + 1 + 1);
    ok = 1;
    for (em_pos p = 0; p < 1024; p += 16) ok &= place_write(&kv, 0, p, p + 16, NULL) == EM_OK;
    CHECK(ok && em_kv_n_used(&kv) == 2 && kv.seqs[0].len == 1024);
    em_kv_free(&kv);
}

/* ------------------------------------------------------ on a model */

/* The token at position p of test sequence s. */
static em_token tok_of(int s, int p) { return p == 0 ? 1 : (em_token)(3 + (s * 131 + p * 29 + (s % 7) * p) % 500); }

/* Decodes sequence s alone (seq id 0 of a cleared context): positions
 * [0, n) as one batch, then one more row; the last two rows' logits. */
static void decode_alone(em_context *c, em_batch *b, int s, int n, float *prompt_last, float *next, int nv) {
    em_kv_clear(c);
    em_batch_clear(b);
    for (int p = 0; p < n; p++) em_batch_add(b, tok_of(s, p), p, 0, p == n - 1);
    CHECK_OK(em_decode(c, b));
    const float *l = em_get_logits(c, n - 1);
    if (l) memcpy(prompt_last, l, (size_t)nv * sizeof *l);
    em_batch_clear(b);
    em_batch_add(b, tok_of(s, n), n, 0, true);
    CHECK_OK(em_decode(c, b));
    l = em_get_logits(c, 0);
    if (l) memcpy(next, l, (size_t)nv * sizeof *l);
}

/* More sequences than the old 64-bit mask allowed, interleaved in one
 * batch, prompts crossing block boundaries: the same logits as each one
 * decoded alone. */
static void test_many_sequences(const em_model *m) {
    enum { NS = 70 };
    const int nv = em_model_n_vocab(m);
    em_context_params cp = em_context_default_params();
    cp.n_ctx = 2048;
    cp.n_batch = 2048;
    cp.n_threads = 2;
    cp.kv_type = EM_TYPE_F32;
    cp.n_seq_max = NS;
    em_context *c = NULL;
    CHECK_OK(em_context_init(&c, m, &cp));
    if (!c) return;
    em_batch b;
    CHECK_OK(em_batch_init(&b, 2048));
    static float together[NS][2][512], alone[2][512];
    int len[NS], maxlen = 0;
    for (int s = 0; s < NS; s++) {
        len[s] = 3 + s % 19; /* 3 .. 21 positions */
        if (len[s] > maxlen) maxlen = len[s];
    }
    /* Round-robin rows: position p of every sequence that has one. */
    int last_row[NS];
    for (int p = 0; p < maxlen; p++)
        for (int s = 0; s < NS; s++)
            if (p < len[s]) {
                em_batch_add(&b, tok_of(s, p), p, s, p == len[s] - 1);
                if (p == len[s] - 1) last_row[s] = b.n_tokens - 1;
            }
    CHECK_OK(em_decode(c, &b));
    int all_ok = 1;
    for (int i = 0; i < b.n_tokens; i++) all_ok &= b.status[i] == EM_OK;
    CHECK(all_ok);
    for (int s = 0; s < NS; s++) {
        const float *l = em_get_logits(c, last_row[s]);
        CHECK(l != NULL);
        if (l) memcpy(together[s][0], l, sizeof together[s][0]);
    }
    /* One generation step of every sequence, one batch. */
    em_batch_clear(&b);
    for (int s = NS - 1; s >= 0; s--) em_batch_add(&b, tok_of(s, len[s]), len[s], s, true);
    CHECK_OK(em_decode(c, &b));
    for (int s = 0; s < NS; s++) {
        const float *l = em_get_logits(c, NS - 1 - s);
        CHECK(l != NULL && em_kv_seq_pos_max(c, s) == len[s] + 1);
        if (l) memcpy(together[s][1], l, sizeof together[s][1]);
    }
    float worst = 0;
    for (int s = 0; s < NS; s++) {
        decode_alone(c, &b, s, len[s], alone[0], alone[1], nv);
        worst = fmaxf(worst, max_rel_diff(together[s][0], alone[0], nv));
        worst = fmaxf(worst, max_rel_diff(together[s][1], alone[1], nv));
    }
    CHECK_MSG(worst < 1e-5f, "%d interleaved sequences vs one at a time: %g", NS, worst);
    em_batch_free(&b);
    em_context_free(c);
}

/* A prompt step of several sequences that asks for the logits of each
 * one's last row: the last layer then computes only those rows
 * (keep_output_rows in forward.c).  Their logits must be the bits that the
 * same batch gives when every row asks, for the types whose Wo input
 * attention may quantize itself (Q8_0, and Q4_0 whose activations are
 * Q8_0): once they were the layer before's quants, and wrong. */
static void test_output_rows(void) {
    static const char *names[2] = {"models/tiny-256/tiny-256-Q8_0.gguf", "models/tiny-256/tiny-256-Q4_0.gguf"};
    enum { NS = 4, LEN = 5 };
    for (int k = 0; k < 2; k++) {
        char path[1024];
        if (!test_data_path(path, sizeof path, names[k])) return;
        em_model *m = NULL;
        CHECK_OK(em_model_load(&m, path, NULL));
        if (!m) continue;
        const int nv = em_model_n_vocab(m);
        float *want = malloc(sizeof(float) * NS * nv), *got = malloc(sizeof(float) * NS * nv);
        for (int all = 1; all >= 0; all--) {
            em_context_params cp = em_context_default_params();
            cp.n_ctx = 256;
            cp.n_batch = 64;
            cp.n_threads = 2;
            cp.n_seq_max = NS;
            em_context *c = NULL;
            em_batch b;
            CHECK_OK(em_context_init(&c, m, &cp));
            CHECK_OK(em_batch_init(&b, 64));
            for (int s = 0; s < NS; s++)
                for (int p = 0; p < LEN; p++) em_batch_add(&b, tok_of(s, p) % nv, p, s, all || p == LEN - 1);
            CHECK_OK(em_decode(c, &b));
            for (int s = 0; s < NS; s++) {
                const float *l = em_get_logits(c, s * LEN + LEN - 1);
                CHECK(l != NULL);
                if (l) memcpy((all ? want : got) + (size_t)s * nv, l, sizeof(float) * nv);
            }
            em_batch_free(&b);
            em_context_free(c);
        }
        CHECK_MSG(!memcmp(want, got, sizeof(float) * NS * nv), "%s: last-row logits of %d sequences differ from "
                  "those of the same batch with every row's", names[k], NS);
        free(want);
        free(got);
        em_model_free(m);
    }
}

/* The pages of each layer's keys and values are brought in ahead of the
 * blocks taken, a different distance ahead per array (pool_touch in
 * kv.c), and that writing never reaches a block in use: rows written as
 * 600 blocks are taken one by one (more than 2 MiB of each array) read
 * back unchanged, and after every block the page at the array's distance
 * ahead is resident. */
static void test_touch_ahead(void) {
    enum { NL = 3, HD = 64, NPOS = 16384, NB = 600 };
    em_kv kv;
    CHECK_OK(em_kv_init(&kv, NPOS, 1, NL, HD, HD, EM_TYPE_F32, HD, HD));
    const size_t page = (size_t)sysconf(_SC_PAGESIZE), huge = (size_t)2 << 20;
    const size_t bb = (size_t)EM_KV_BLOCK * HD * sizeof(float);
    float k[HD], v[HD];
    int resident_ok = 1, same = 1;
    for (int32_t b = 0; b < NB; b++) {
        int32_t cells[EM_KV_BLOCK];
        CHECK_OK(place_run(&kv, 0, b * EM_KV_BLOCK, (b + 1) * EM_KV_BLOCK, NULL, cells));
        for (int l = 0; l < NL; l++)
            for (int i = 0; i < EM_KV_BLOCK; i++) {
                for (int d = 0; d < HD; d++) {
                    k[d] = (float)(b * 131 + l * 17 + i * 3 + d + 1);
                    v[d] = -k[d];
                }
                em_kv_write(&kv, l, cells[i], 0, 1, k, v, NULL);
            }
        for (int r = 0; r < 2 * NL; r++) {
            const uint8_t *base = (const uint8_t *)(r & 1 ? kv.v[r / 2] : kv.k[r / 2]);
            size_t ahead = (size_t)(b + 1) * bb + (size_t)(r + 1) * huge / (2 * NL) - 1;
            if (ahead >= (size_t)NPOS * HD * sizeof(float)) continue;
            uintptr_t a = (uintptr_t)(base + ahead) & ~(uintptr_t)(page - 1);
            unsigned char in = 0;
            if (mincore((void *)a, page, &in) != 0 || !(in & 1)) resident_ok = 0;
        }
    }
    for (int32_t b = 0; b < NB && same; b++)
        for (int l = 0; l < NL; l++)
            for (int i = 0; i < EM_KV_BLOCK; i++) {
                const int32_t cell = em_kv_layer_cell(&kv, l, 0, b * EM_KV_BLOCK + i);
                const float *kr = em_kv_read(&kv, l, false, cell, 0, k), *vr = em_kv_read(&kv, l, true, cell, 0, v);
                for (int d = 0; d < HD; d++)
                    if (kr[d] != (float)(b * 131 + l * 17 + i * 3 + d + 1) || vr[d] != -kr[d]) same = 0;
            }
    CHECK_MSG(same, "rows changed after later blocks were taken");
    CHECK_MSG(resident_ok, "the pages ahead of the blocks taken are not resident");
    em_kv_free(&kv);
}

/* Prefix reuse: a cached prompt taken over by a new sequence gives the
 * logits a fresh decode gives, and shows in the stats. */
static void test_prefix_reuse(const em_model *m) {
    enum { N = 40 };
    const int nv = em_model_n_vocab(m);
    em_context_params cp = em_context_default_params();
    cp.n_ctx = 256;
    cp.n_threads = 2;
    cp.kv_type = EM_TYPE_F16;
    cp.n_seq_max = 4;
    em_context *c = NULL;
    CHECK_OK(em_context_init(&c, m, &cp));
    if (!c) return;
    em_batch b;
    CHECK_OK(em_batch_init(&b, 64));
    em_token toks[N];
    for (int p = 0; p < N; p++) toks[p] = tok_of(3, p);
    static float fresh[512], reused[512];

    /* Fresh: 32 rows, then 8 with the last one's logits. */
    for (int p = 0; p < 32; p++) em_batch_add(&b, toks[p], p, 0, false);
    CHECK_OK(em_decode(c, &b));
    em_batch_clear(&b);
    for (int p = 32; p < N; p++) em_batch_add(&b, toks[p], p, 0, p == N - 1);
    CHECK_OK(em_decode(c, &b));
    memcpy(fresh, em_get_logits(c, N - 1 - 32), sizeof fresh);
    CHECK_OK(em_kv_remove(c, 0, 0, -1));
    em_kv_stats ks;
    em_kv_get_stats(c, &ks);
    CHECK(ks.block_size == EM_KV_BLOCK && ks.n_blocks == 16 && ks.n_used == 0);
    CHECK(ks.n_cached == 2 && ks.n_free == 14); /* two full blocks stay cached */

    /* Reused: the 32 positions come from the cache, the 8 rows are
     * decoded again: bit for bit the same logits. */
    CHECK(em_kv_seq_reuse_prefix(c, 1, toks, N) == 32);
    em_kv_get_stats(c, &ks);
    CHECK(ks.prefix_lookups == 1 && ks.prefix_hits == 2 && ks.n_used == 2 && ks.n_cached == 0);
    em_batch_clear(&b);
    for (int p = 32; p < N; p++) em_batch_add(&b, toks[p], p, 1, p == N - 1);
    CHECK_OK(em_decode(c, &b));
    memcpy(reused, em_get_logits(c, N - 1 - 32), sizeof reused);
    CHECK_MSG(memcmp(reused, fresh, sizeof fresh) == 0, "reused prefix: logits differ from a fresh decode by %g",
              max_rel_diff(reused, fresh, nv));
    /* A second sequence reuses the same two blocks, shared with the
     * first; a sequence that is not empty, or a bad id, is refused. */
    CHECK(em_kv_seq_reuse_prefix(c, 3, toks, N) == 32);
    CHECK(em_kv_seq_reuse_prefix(c, 3, toks, N) == -1);
    CHECK(em_kv_seq_reuse_prefix(c, 9, toks, N) == -1);
    em_kv_get_stats(c, &ks);
    CHECK(ks.prefix_lookups == 2 && ks.prefix_hits == 4);
    em_batch_free(&b);
    em_context_free(c);
}

/* A full cache fails the rows of the sequences that need a block, and the
 * others are computed, correctly. */
static void test_row_status(const em_model *m) {
    const int nv = em_model_n_vocab(m);
    em_context_params cp = em_context_default_params();
    cp.n_ctx = 64; /* four blocks */
    cp.n_threads = 2;
    cp.kv_type = EM_TYPE_F32;
    cp.n_seq_max = 3;
    em_context *c = NULL, *ref = NULL;
    CHECK_OK(em_context_init(&c, m, &cp));
    CHECK_OK(em_context_init(&ref, m, &cp));
    if (!c || !ref) goto out;
    em_batch b;
    CHECK_OK(em_batch_init(&b, 64));
    static float want1[512], want2[512];
    /* References: seq 1's first 16 rows, and seq 2's first row, alone. */
    for (int p = 0; p < 16; p++) em_batch_add(&b, tok_of(1, p), p, 0, p == 15);
    CHECK_OK(em_decode(ref, &b));
    memcpy(want1, em_get_logits(ref, 15), sizeof want1);
    em_kv_clear(ref);
    em_batch_clear(&b);
    em_batch_add(&b, tok_of(2, 0), 0, 0, true);
    CHECK_OK(em_decode(ref, &b));
    memcpy(want2, em_get_logits(ref, 0), sizeof want2);

    /* Seq 0 holds two blocks. */
    em_batch_clear(&b);
    for (int p = 0; p < 32; p++) em_batch_add(&b, tok_of(0, p), p, 0, false);
    CHECK_OK(em_decode(c, &b));
    /* One batch: seq 2's first row (a block), seq 1's 20 rows (one block
     * left: 16 fit), seq 0's next row (no block), then a bad token in
     * seq 2 and a row after it. */
    em_batch_clear(&b);
    em_batch_add(&b, tok_of(2, 0), 0, 2, true);
    for (int p = 0; p < 20; p++) em_batch_add(&b, tok_of(1, p), p, 1, p == 15 || p == 19);
    em_batch_add(&b, tok_of(0, 32), 32, 0, true);
    em_batch_add(&b, 99999, 1, 2, true);
    em_batch_add(&b, tok_of(2, 2), 2, 2, true);
    CHECK_OK(em_decode(c, &b));
    CHECK(b.status[0] == EM_OK);
    int ok16 = 1, full4 = 1;
    for (int p = 0; p < 16; p++) ok16 &= b.status[1 + p] == EM_OK;
    for (int p = 16; p < 20; p++) full4 &= b.status[1 + p] == EM_ERR_CONTEXT_FULL;
    CHECK(ok16 && full4);
    CHECK(b.status[21] == EM_ERR_CONTEXT_FULL);
    CHECK(b.status[22] == EM_ERR_INVALID_ARG && b.status[23] == EM_ERR_INVALID_ARG);
    CHECK(em_get_logits(c, 20) == NULL && em_get_logits(c, 21) == NULL && em_get_logits(c, 23) == NULL);
    const float *l0 = em_get_logits(c, 0), *l15 = em_get_logits(c, 16);
    CHECK(l0 && l15);
    if (l0) CHECK_MSG(max_rel_diff(l0, want2, nv) < 1e-5f, "seq 2 next to failed rows: %g", max_rel_diff(l0, want2, nv));
    if (l15) CHECK_MSG(max_rel_diff(l15, want1, nv) < 1e-5f, "seq 1 next to failed rows: %g", max_rel_diff(l15, want1, nv));
    CHECK(em_kv_seq_pos_max(c, 0) == 32 && em_kv_seq_pos_max(c, 1) == 16 && em_kv_seq_pos_max(c, 2) == 1);
    /* When no row can be computed, em_decode says so. */
    em_batch_clear(&b);
    em_batch_add(&b, tok_of(0, 32), 32, 0, true);
    CHECK(em_decode(c, &b) == EM_ERR_CONTEXT_FULL && b.status[0] == EM_ERR_CONTEXT_FULL);
    /* A hand-built batch without status is all or nothing. */
    em_batch_clear(&b);
    em_batch_add(&b, tok_of(2, 1), 1, 2, true);
    em_batch_add(&b, tok_of(0, 32), 32, 0, true);
    em_status *keep = b.status;
    b.status = NULL;
    CHECK(em_decode(c, &b) == EM_ERR_CONTEXT_FULL);
    CHECK(em_kv_seq_pos_max(c, 2) == 1);
    b.status = keep;
    /* Bad ids in the cache edits are reported. */
    CHECK(em_kv_remove(c, 3, 0, -1) == EM_ERR_INVALID_ARG);
    CHECK(em_kv_seq_cp(c, 0, 3, 0, -1) == EM_ERR_INVALID_ARG);
    CHECK(em_kv_seq_cp(c, -2, 1, 0, -1) == EM_ERR_INVALID_ARG);
    CHECK(em_kv_remove(c, 0, 4, 8) == EM_ERR_UNSUPPORTED);
    CHECK_OK(em_kv_seq_cp(c, 0, 2, 0, 20));
    CHECK(em_kv_seq_pos_max(c, 2) == 20);
    em_batch_free(&b);
out:
    em_context_free(c);
    em_context_free(ref);
}

/* Sequence ids up to 4096: no 64-bit mask any more. */
static void test_seq_limit(const em_model *m) {
    em_context_params cp = em_context_default_params();
    cp.n_ctx = 64;
    cp.n_threads = 1;
    cp.n_seq_max = EM_KV_MAX_SEQ + 1;
    em_context *c = NULL;
    CHECK(em_context_init(&c, m, &cp) == EM_ERR_INVALID_ARG && c == NULL);
    cp.n_seq_max = EM_KV_MAX_SEQ;
    CHECK_OK(em_context_init(&c, m, &cp));
    if (!c) return;
    em_batch b;
    CHECK_OK(em_batch_init(&b, 4));
    em_batch_add(&b, 1, 0, EM_KV_MAX_SEQ - 1, true);
    em_batch_add(&b, 1, 0, EM_KV_MAX_SEQ, true);
    em_batch_add(&b, 1, 0, 64, true);
    CHECK_OK(em_decode(c, &b));
    CHECK(b.status[0] == EM_OK && b.status[1] == EM_ERR_INVALID_ARG && b.status[2] == EM_OK);
    CHECK(em_kv_seq_pos_max(c, EM_KV_MAX_SEQ - 1) == 1 && em_kv_seq_pos_max(c, 64) == 1);
    const float *l0 = em_get_logits(c, 0), *l2 = em_get_logits(c, 2);
    CHECK(l0 && l2);
    if (l0 && l2) CHECK(max_rel_diff(l0, l2, em_model_n_vocab(m)) < 1e-5f);
    em_batch_free(&b);
    em_context_free(c);
}

/* Hidden states: the final-norm rows of the rows that asked for logits,
 * the same from the one-row path as from a batch. */
static void test_embeddings(const em_model *m) {
    const int nd = em_model_n_embd(m);
    em_context_params cp = em_context_default_params();
    cp.n_ctx = 64;
    cp.n_threads = 2;
    cp.kv_type = EM_TYPE_F32;
    cp.embeddings = true;
    em_context *c = NULL;
    CHECK_OK(em_context_init(&c, m, &cp));
    if (!c) return;
    em_batch b;
    CHECK_OK(em_batch_init(&b, 16));
    for (int p = 0; p < 5; p++) em_batch_add(&b, tok_of(5, p), p, 0, p >= 3);
    CHECK_OK(em_decode(c, &b));
    CHECK(em_get_embeddings(c, 0) == NULL && em_get_embeddings(c, 3) != NULL);
    static float last[4096];
    const float *e4 = em_get_embeddings(c, 4);
    CHECK(e4 != NULL && nd <= 4096);
    if (!e4 || nd > 4096) goto out;
    memcpy(last, e4, (size_t)nd * sizeof(float));
    double norm = 0;
    int finite = 1;
    for (int i = 0; i < nd; i++) {
        finite &= isfinite(last[i]);
        norm += (double)last[i] * last[i];
    }
    CHECK(finite && norm > 0);
    /* Row by row: the last row through the one-row path. */
    em_kv_remove(c, 0, 4, -1);
    em_batch_clear(&b);
    em_batch_add(&b, tok_of(5, 4), 4, 0, true);
    CHECK_OK(em_decode(c, &b));
    const float *e = em_get_embeddings(c, 0);
    CHECK(e != NULL);
    if (e) CHECK_MSG(max_rel_diff(e, last, nd) < 1e-5f, "hidden state, one row vs batch: %g", max_rel_diff(e, last, nd));
out:
    em_batch_free(&b);
    em_context_free(c);
    /* Without the parameter there are none. */
    cp.embeddings = false;
    CHECK_OK(em_context_init(&c, m, &cp));
    if (!c) return;
    CHECK_OK(em_batch_init(&b, 4));
    em_batch_add(&b, 1, 0, 0, true);
    CHECK_OK(em_decode(c, &b));
    CHECK(em_get_logits(c, 0) != NULL && em_get_embeddings(c, 0) == NULL);
    em_batch_free(&b);
    em_context_free(c);
}

/* ------------------------------------------- layer groups on models */

/* The same calls on a context with layer groups and one that keeps every
 * position in every layer (kv_full); every logits row must be the same
 * bit for bit. */
typedef struct pair {
    em_context *full, *grp;
    em_batch b;
    int nv;
    int compared, differ;
    em_token tok[3][640]; /* the tokens of each sequence, by position */
} pair;

static void pair_decode(pair *pr) {
    CHECK_OK(em_decode(pr->full, &pr->b));
    CHECK_OK(em_decode(pr->grp, &pr->b));
    for (int i = 0; i < pr->b.n_tokens; i++) {
        if (!pr->b.logits[i]) continue;
        const float *lf = em_get_logits(pr->full, i), *lg = em_get_logits(pr->grp, i);
        pr->compared++;
        if (!lf || !lg || memcmp(lf, lg, (size_t)pr->nv * sizeof *lf) != 0) pr->differ++;
    }
    em_batch_clear(&pr->b);
}

/* Rows [p0, p1) of sequence s in batches of `split`, logits on every row. */
static void pair_rows(pair *pr, em_seq_id s, em_pos p0, em_pos p1, int split) {
    for (em_pos p = p0; p < p1;) {
        for (int i = 0; i < split && p < p1; i++, p++) em_batch_add(&pr->b, pr->tok[s][p], p, s, true);
        pair_decode(pr);
    }
}

/* A long prompt in batches of `split`, generation, a copy continued by
 * two sequences at once, a trim back past the window, and prefix reuse:
 * the logits of a cache with layer groups equal those of the full cache;
 * and the windowed groups hold a few blocks per sequence. */
static void check_hybrid(em_model *m, const char *label, int split, em_type kv_type) {
    pair *pr = calloc(1, sizeof *pr);
    if (!pr) return;
    pr->nv = em_model_n_vocab(m);
    em_context_params cp = em_context_default_params();
    cp.n_ctx = 1024;
    cp.n_batch = 320;
    cp.n_threads = 1;
    cp.kv_type = kv_type;
    cp.n_seq_max = 3;
    CHECK_OK(em_context_init(&pr->grp, m, &cp));
    cp.kv_full = true;
    CHECK_OK(em_context_init(&pr->full, m, &cp));
    CHECK_OK(em_batch_init(&pr->b, 320));
    if (!pr->grp || !pr->full) goto out;
    for (int s = 0; s < 3; s++)
        for (int p = 0; p < 640; p++) pr->tok[s][p] = tok_of(s == 2 ? 0 : s, p);
    em_kv_stats sg, sf;
    em_kv_get_stats(pr->grp, &sg);
    em_kv_get_stats(pr->full, &sf);
    CHECK(sf.n_groups == 1 && sg.n_groups == 2 && sg.groups[1].window + sg.groups[1].chunk > 0);
    const int span = sg.groups[1].window + sg.groups[1].chunk;
    /* The prompt, then generation one row at a time. */
    pair_rows(pr, 0, 0, 300, split);
    pair_rows(pr, 0, 300, 324, 1);
    em_kv_get_stats(pr->grp, &sg);
    em_kv_get_stats(pr->full, &sf);
    const int per_seq = (span + EM_KV_BLOCK - 1) / EM_KV_BLOCK + 1;
    CHECK_MSG(sg.groups[1].n_used <= per_seq && sg.n_used == sf.n_used && sg.bytes_used < sf.bytes_used,
              "%s: windowed blocks used %d (at most %d), bytes %llu of the full cache's %llu", label,
              sg.groups[1].n_used, per_seq, (unsigned long long)sg.bytes_used, (unsigned long long)sf.bytes_used);
    /* seq_cp, then both sequences on in one batch (copy-on-write). */
    CHECK_OK(em_kv_seq_cp(pr->grp, 0, 1, 0, -1));
    CHECK_OK(em_kv_seq_cp(pr->full, 0, 1, 0, -1));
    for (int p = 0; p < 324; p++) pr->tok[1][p] = pr->tok[0][p];
    for (em_pos p = 324; p < 340; p++) {
        em_batch_add(&pr->b, pr->tok[0][p], p, 0, true);
        em_batch_add(&pr->b, pr->tok[1][p], p, 1, true);
        pair_decode(pr);
    }
    /* Back to 250, past the window: the given-back blocks are found again
     * in the cache (the sequence may only end shorter if they were
     * evicted; then the full cache is cut back alike). */
    CHECK_OK(em_kv_remove(pr->grp, 0, 250, -1));
    const em_pos back = em_kv_seq_pos_max(pr->grp, 0);
    CHECK_MSG(back == 250, "%s: trimmed to %d, not 250", label, back);
    CHECK_OK(em_kv_remove(pr->full, 0, back, -1));
    for (int p = back; p < 640; p++) pr->tok[0][p] = (em_token)(7 + (p * 13) % 480);
    pair_rows(pr, 0, back, back + 20, 20);
    /* Prefix reuse of seq 1's tokens by seq 2. */
    for (int p = 0; p < 640; p++) pr->tok[2][p] = pr->tok[1][p];
    const int32_t got = em_kv_seq_reuse_prefix(pr->grp, 2, pr->tok[2], 330);
    const int32_t got_full = em_kv_seq_reuse_prefix(pr->full, 2, pr->tok[2], 330);
    CHECK_MSG(got > 0 && got <= got_full, "%s: reused %d positions (full cache %d)", label, got, got_full);
    CHECK_OK(em_kv_remove(pr->full, 2, got, -1));
    pair_rows(pr, 2, got, 340, 64);
    em_kv_get_stats(pr->grp, &sg);
    CHECK(sg.groups[1].n_used <= 3 * per_seq);
    CHECK_MSG(pr->differ == 0 && pr->compared > 350, "%s, batches of %d, %s cache: %d of %d logits rows differ",
              label, split, em_type_name(kv_type), pr->differ, pr->compared);
out:
    em_batch_free(&pr->b);
    em_context_free(pr->grp);
    em_context_free(pr->full);
    free(pr);
}

static void test_hybrid_models(void) {
    static const char *names[3] = {"models/arch/tiny-gemma2.gguf", "models/arch/tiny-gemma3.gguf",
                                   "models/arch/tiny-llama4.gguf"};
    char path[1024];
    for (int i = 0; i < 3; i++) {
        if (!test_data_path(path, sizeof path, names[i])) continue;
        em_model *m = NULL;
        CHECK_OK(em_model_load(&m, path, NULL));
        if (!m) continue;
        if (i == 2) {
            /* Llama 4: NoPE global layers and chunked ones, whose chunk of
             * 8192 positions is made 48 to cross it often. */
            int n_chunked = 0;
            for (int l = 0; l < m->hp.n_layer; l++)
                if (m->layers[l].n_chunk > 0) {
                    m->layers[l].n_chunk = 48;
                    n_chunked++;
                }
            CHECK(n_chunked > 0);
            check_hybrid(m, "tiny-llama4, chunks of 48", 64, EM_TYPE_F16);
            check_hybrid(m, "tiny-llama4, chunks of 48", 7, EM_TYPE_F32);
            em_model_free(m);
            continue;
        }
        check_hybrid(m, names[i], 300, EM_TYPE_F16);
        check_hybrid(m, names[i], 7, EM_TYPE_F32);
        check_hybrid(m, names[i], 64, EM_TYPE_Q8_0);
        if (i == 1) {
            /* Chunked attention: gemma3's local layers attend within
             * chunks of 48 positions instead of a window. */
            int n_local = 0;
            for (int l = 0; l < m->hp.n_layer; l++)
                if (m->layers[l].n_swa > 0) {
                    m->layers[l].n_swa = 0;
                    m->layers[l].n_chunk = 48;
                    n_local++;
                }
            CHECK(n_local > 0);
            check_hybrid(m, "tiny-gemma3 chunked", 64, EM_TYPE_F16);
            check_hybrid(m, "tiny-gemma3 chunked", 5, EM_TYPE_F32);
        }
        em_model_free(m);
    }
}

/* Element e of KV head h of position p of layer l (a key, or a value),
 * as written. */
static float head_val(int l, int p, int h, int e, int value) {
    return (float)(((l * 7 + p * 5 + h * 3 + e + value * 11) % 255) - 127) / 8.0f;
}

/* The n floats x as a cache of this type gives them back: converted to
 * the type and back, one head's slice at a time, independently of kv.c. */
static void round_trip(em_type type, float *x, int n) {
    if (type == EM_TYPE_F16) {
        for (int i = 0; i < n; i++) x[i] = em_fp16_to_fp32(em_fp32_to_fp16(x[i]));
    } else if (type != EM_TYPE_F32) {
        uint8_t q[512];
        em_quantize_row(type, x, q, n, NULL);
        em_dequantize_row(type, q, x, n);
    }
}

/* Head h of position p of layer l, as the cache gives it back. */
static void head_want(em_type type, int l, int p, int h, int value, float *x, int n) {
    for (int e = 0; e < n; e++) x[e] = head_val(l, p, h, e, value);
    round_trip(type, x, n);
}

/* Several KV heads per row: every head's key and value slice reads back
 * what was written (em_kv_read, em_kv_key / em_kv_value), a head-major
 * cache keeps one head's slices of a block side by side, a write of some
 * heads leaves the others alone, and copy-on-write of a partial block
 * copies every head's rows before the write and no later ones. */
static void test_heads(em_type type) {
    enum { NL = 2, NH = 4, HD = 32, NP = 40 };
    em_kv kv;
    CHECK_OK(em_kv_init(&kv, 64, 2, NL, NH * HD, NH * HD, type, HD, HD));
    const size_t slice = em_row_size(type, HD);
    CHECK(kv.k_slice[0] == slice && kv.v_slice[1] == slice);
    int32_t cells[NP];
    CHECK_OK(place_run(&kv, 0, 0, NP, NULL, cells));
    float k[NH * HD], v[NH * HD], tmp[HD], want[HD];
    for (int p = 0; p < NP; p++)
        for (int l = 0; l < NL; l++) {
            for (int h = 0; h < NH; h++)
                for (int e = 0; e < HD; e++) {
                    k[h * HD + e] = head_val(l, p, h, e, 0);
                    v[h * HD + e] = head_val(l, p, h, e, 1);
                }
            /* Heads 1..3 first, then head 0: a write touches its heads only. */
            em_kv_write(&kv, l, cells[p], 1, NH, k, v, NULL);
            em_kv_write(&kv, l, cells[p], 0, 1, k, v, NULL);
        }
    int bad = 0, apart = 0;
    for (int p = 0; p < NP; p++)
        for (int l = 0; l < NL; l++)
            for (int h = 0; h < NH; h++) {
                const float *kr = em_kv_read(&kv, l, false, cells[p], h, tmp);
                head_want(type, l, p, h, 0, want, HD);
                bad += memcmp(kr, want, sizeof want) != 0;
                const float *vr = em_kv_read(&kv, l, true, cells[p], h, tmp);
                head_want(type, l, p, h, 1, want, HD);
                bad += memcmp(vr, want, sizeof want) != 0;
                /* The next position of the same block: a slice on. */
                if (p % EM_KV_BLOCK != EM_KV_BLOCK - 1 && p + 1 < NP) {
                    const size_t step = slice;
                    apart += (const char *)em_kv_key(&kv, l, cells[p + 1], h) !=
                             (const char *)em_kv_key(&kv, l, cells[p], h) + step;
                    apart += (const char *)em_kv_value(&kv, l, cells[p + 1], h) !=
                             (const char *)em_kv_value(&kv, l, cells[p], h) + step;
                }
            }
    CHECK_MSG(bad == 0 && apart == 0, "kv heads %s: %d slices read back wrong, %d slices misplaced",
              em_type_name(type), bad, apart);

    /* Sequence 1 shares 37 positions and writes its own 38th (position
     * 37, in the third block): that block is copied, positions 32..36 of
     * every head and layer with it. */
    CHECK_OK(em_kv_share(&kv, 0, 1, 0, 37));
    int32_t c;
    CHECK_OK(place_run(&kv, 1, 37, 38, NULL, &c));
    CHECK(em_kv_cell(&kv, 1, 36) != em_kv_cell(&kv, 0, 36) && c == em_kv_cell(&kv, 1, 37));
    for (int l = 0; l < NL; l++) {
        for (int i = 0; i < NH * HD; i++) k[i] = v[i] = 0.5f;
        em_kv_write(&kv, l, c, 0, NH, k, v, NULL);
    }
    bad = 0;
    for (int l = 0; l < NL; l++)
        for (int h = 0; h < NH; h++) {
            for (int p = 32; p < 37; p++) {
                const float *kr = em_kv_read(&kv, l, false, em_kv_cell(&kv, 1, p), h, tmp);
                head_want(type, l, p, h, 0, want, HD);
                bad += memcmp(kr, want, sizeof want) != 0;
                const float *vr = em_kv_read(&kv, l, true, em_kv_cell(&kv, 1, p), h, tmp);
                head_want(type, l, p, h, 1, want, HD);
                bad += memcmp(vr, want, sizeof want) != 0;
            }
            /* The source keeps its own position 37. */
            const float *kr = em_kv_read(&kv, l, false, cells[37], h, tmp);
            head_want(type, l, 37, h, 0, want, HD);
            bad += memcmp(kr, want, sizeof want) != 0;
            const float *kc = em_kv_read(&kv, l, false, c, h, tmp);
            for (int e = 0; e < HD; e++) want[e] = 0.5f;
            round_trip(type, want, HD);
            bad += memcmp(kc, want, sizeof want) != 0;
        }
    CHECK_MSG(bad == 0, "kv heads %s: copy-on-write: %d slices wrong", em_type_name(type), bad);
    em_kv_free(&kv);
}

int main(void) {
    test_blocks();
    test_bad_ids();
    test_cow();
    test_heads(EM_TYPE_F32);
    test_heads(EM_TYPE_F16);
    test_heads(EM_TYPE_Q8_0);
    test_reuse_and_eviction();
    test_groups();
    test_output_rows();
    test_touch_ahead();
    char path[1024];
    if (!test_data_path(path, sizeof path, "models/stories260K.gguf")) {
        printf("model tests skipped: EMBER_TEST_DATA is not set\n");
        TEST_END();
    }
    em_model *m = NULL;
    CHECK_OK(em_model_load(&m, path, NULL));
    if (m) {
        test_many_sequences(m);
        test_prefix_reuse(m);
        test_row_status(m);
        test_seq_limit(m);
        test_embeddings(m);
    }
    em_model_free(m);
    test_hybrid_models();
    TEST_END();
}
