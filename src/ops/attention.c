/*
 * attention.c - online-softmax attention, one task per (row, KV head).
 *
 * For a query q and keys k_j the output is sum_j softmax(q.k_j * scale) v_j.
 * Visiting the keys once, we keep the running maximum m, the running sum of
 * exp(s_j - m) and the running weighted sum of values; when m grows, both
 * sums are rescaled by exp(m_old - m_new).  This needs O(head_dim) memory
 * per head whatever the context length.
 */
#include "ops/attention.h"

#include <math.h>

size_t em_attention_scratch(int32_t n_head, int32_t n_head_kv, int32_t head_dim, int32_t head_dim_v) {
    int32_t group = n_head / n_head_kv;
    /* acc[group][head_dim_v], m[group], l[group], k row, v row as floats. */
    return (size_t)group * (size_t)(head_dim_v + 2) + (size_t)head_dim + (size_t)head_dim_v;
}

static void attention_worker(void *arg, int ith, int nth) {
    const em_attn_args *a = arg;
    const em_kv *kv = a->kv;
    int32_t group = a->n_head / a->n_head_kv;
    int32_t hd = a->head_dim, hdv = a->head_dim_v;
    float *scratch = a->scratch + (size_t)ith * em_attention_scratch(a->n_head, a->n_head_kv, hd, hdv);
    float *acc = scratch;                           /* [group][hdv] */
    float *mx = acc + (size_t)group * hdv;          /* [group]      */
    float *sum = mx + group;                        /* [group]      */
    float *ktmp = sum + group;                      /* [hd]         */
    float *vtmp = ktmp + hd;                        /* [hdv]        */
    const void *kbase = kv->k[a->layer];
    const void *vbase = kv->v[a->layer];

    int64_t n_tasks = (int64_t)a->n_rows * a->n_head_kv;
    for (int64_t task = ith; task < n_tasks; task += nth) {
        int32_t r = (int32_t)(task / a->n_head_kv);
        int32_t g = (int32_t)(task % a->n_head_kv);
        em_seq_id s = a->seq[r];
        em_pos p = a->pos[r];
        const float *q = a->q + ((int64_t)r * a->n_head + (int64_t)g * group) * hd;
        for (int32_t h = 0; h < group; h++) {
            mx[h] = -INFINITY;
            sum[h] = 0;
        }
        memset(acc, 0, (size_t)group * hdv * sizeof(float));

        for (int32_t j = 0; j < kv->hi; j++) {
            em_pos pj = kv->pos[j];
            if (pj < 0 || pj > p || !em_kv_sees(kv, j, s)) continue;
            if (a->n_swa > 0 && pj <= p - a->n_swa) continue;
            const float *k = em_kv_read(kv, kbase, kv->k_row_bytes, j, (int64_t)g * hd, hd, ktmp);
            const float *v = em_kv_read(kv, vbase, kv->v_row_bytes, j, (int64_t)g * hdv, hdv, vtmp);
            for (int32_t h = 0; h < group; h++) {
                const float *qh = q + (int64_t)h * hd;
                float sc = 0;
                for (int32_t i = 0; i < hd; i++) sc += qh[i] * k[i];
                sc *= a->scale;
                float *acc_h = acc + (int64_t)h * hdv;
                if (sc > mx[h]) {
                    /* A new maximum: rescale what was accumulated so far. */
                    float c = expf(mx[h] - sc);
                    mx[h] = sc;
                    sum[h] = sum[h] * c + 1.0f;
                    for (int32_t i = 0; i < hdv; i++) acc_h[i] = acc_h[i] * c + v[i];
                } else {
                    float w = expf(sc - mx[h]);
                    sum[h] += w;
                    for (int32_t i = 0; i < hdv; i++) acc_h[i] += w * v[i];
                }
            }
        }
        for (int32_t h = 0; h < group; h++) {
            float *o = a->out + ((int64_t)r * a->n_head + (int64_t)g * group + h) * hdv;
            /* A row with no visible key (impossible when its own key is
             * stored) yields zeros rather than NaN. */
            float inv = sum[h] > 0 ? 1.0f / sum[h] : 0.0f;
            for (int32_t i = 0; i < hdv; i++) o[i] = acc[(int64_t)h * hdv + i] * inv;
        }
    }
}

void em_attention(em_threadpool *tp, const em_attn_args *a) {
    em_threadpool_run(tp, attention_worker, (void *)a);
}
