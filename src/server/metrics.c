/*
 * metrics.c - GET /metrics in Prometheus's text format (version 0.0.4):
 * the server's request counts and durations, the engine's token counts,
 * queue, sequences, cache blocks and latency histograms.
 */
#include "server/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void em_metrics_count(em_server *s, int status, double seconds, bool generation) {
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < EM_STATUS_SLOTS; i++) {
        if (s->status_code[i] == status || s->status_code[i] == 0) {
            s->status_code[i] = status;
            s->status_count[i]++;
            break;
        }
    }
    if (generation) {
        em_histogram_observe(&s->duration, seconds);
        s->n_inflight--;
        pthread_cond_broadcast(&s->idle);
    }
    pthread_mutex_unlock(&s->mu);
}

static void family(em_strbuf *b, const char *name, const char *type, const char *help) {
    em_strbuf_appendf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void histogram(em_strbuf *b, const char *name, const char *help, const em_histogram *h) {
    family(b, name, "histogram", help);
    uint64_t cum = 0;
    for (int i = 0; i < EM_HIST_BUCKETS; i++) {
        cum += h->bucket[i];
        em_strbuf_appendf(b, "%s_bucket{le=\"%g\"} %llu\n", name, em_hist_bounds[i], (unsigned long long)cum);
    }
    em_strbuf_appendf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
                      (unsigned long long)h->count, name, h->sum, name, (unsigned long long)h->count);
}

enum MHD_Result em_metrics_handle(em_server *s, struct MHD_Connection *c, em_conn *cs) {
    em_engine_stats st;
    em_engine_get_stats(s->engine, &st);
    int codes[EM_STATUS_SLOTS];
    uint64_t counts[EM_STATUS_SLOTS];
    em_histogram dur;
    pthread_mutex_lock(&s->mu);
    memcpy(codes, s->status_code, sizeof codes);
    memcpy(counts, s->status_count, sizeof counts);
    dur = s->duration;
    pthread_mutex_unlock(&s->mu);

    em_strbuf b = {0};
    family(&b, "ember_requests_total", "counter", "HTTP requests answered, by status.");
    for (int i = 0; i < EM_STATUS_SLOTS && codes[i]; i++)
        em_strbuf_appendf(&b, "ember_requests_total{status=\"%d\"} %llu\n", codes[i], (unsigned long long)counts[i]);
    family(&b, "ember_prompt_tokens_total", "counter", "Prompt tokens of completed requests.");
    em_strbuf_appendf(&b, "ember_prompt_tokens_total %llu\n", (unsigned long long)st.prompt_tokens);
    family(&b, "ember_generated_tokens_total", "counter", "Generated tokens.");
    em_strbuf_appendf(&b, "ember_generated_tokens_total %llu\n", (unsigned long long)st.generated_tokens);
    family(&b, "ember_queue_depth", "gauge", "Requests waiting for a sequence.");
    em_strbuf_appendf(&b, "ember_queue_depth %d\n", st.queued);
    family(&b, "ember_active_sequences", "gauge", "Sequences running in the batch.");
    em_strbuf_appendf(&b, "ember_active_sequences %d\n", st.active_sequences);
    family(&b, "ember_kv_blocks_used", "gauge", "KV cache blocks held by live sequences.");
    em_strbuf_appendf(&b, "ember_kv_blocks_used %d\n", st.kv_blocks_used);
    family(&b, "ember_kv_blocks_free", "gauge", "KV cache blocks no live sequence holds (cached prefix blocks included).");
    em_strbuf_appendf(&b, "ember_kv_blocks_free %d\n", st.kv_blocks_free + st.kv_blocks_cached);
    family(&b, "ember_kv_bytes", "gauge", "KV cache memory allocated, every layer group (sliding-window layers hold a pool of their own).");
    em_strbuf_appendf(&b, "ember_kv_bytes %llu\n", (unsigned long long)st.kv_bytes);
    family(&b, "ember_kv_bytes_used", "gauge", "KV cache memory in blocks held by live sequences, every layer group.");
    em_strbuf_appendf(&b, "ember_kv_bytes_used %llu\n", (unsigned long long)st.kv_bytes_used);
    family(&b, "ember_prefix_cache_hits_total", "counter", "KV blocks reused from the prefix cache.");
    em_strbuf_appendf(&b, "ember_prefix_cache_hits_total %llu\n", (unsigned long long)st.prefix_hits);
    family(&b, "ember_engine_steps_total", "counter", "Batches the engine computed.");
    em_strbuf_appendf(&b, "ember_engine_steps_total %llu\n", (unsigned long long)st.steps);
    family(&b, "ember_engine_step_rows_total", "counter", "Rows of those batches (prompt tokens and generated ones).");
    em_strbuf_appendf(&b, "ember_engine_step_rows_total %llu\n", (unsigned long long)st.step_rows);
    family(&b, "ember_engine_compute_seconds_total", "counter", "Seconds the engine spent computing the model (em_decode).");
    em_strbuf_appendf(&b, "ember_engine_compute_seconds_total %.6f\n", st.compute_s);
    family(&b, "ember_engine_host_seconds_total", "counter",
           "Seconds the engine's steps spent outside the model: building batches, sampling, text and events.");
    em_strbuf_appendf(&b, "ember_engine_host_seconds_total %.6f\n", st.host_s);
    em_conn_stats cst;
    em_conn_guard_stats(s->guard, &cst);
    family(&b, "ember_connections_open", "gauge", "HTTP connections open (the table --max-connections bounds).");
    em_strbuf_appendf(&b, "ember_connections_open %d\n", cst.open);
    family(&b, "ember_connections_clients", "gauge",
           "Client addresses (an IPv6 client: its /64) with HTTP connections open.");
    em_strbuf_appendf(&b, "ember_connections_clients %d\n", cst.clients);
    family(&b, "ember_connections_closed_total", "counter",
           "HTTP connections closed, by reason: header_timeout and body_timeout (the request deadline), evicted "
           "(the table was full, or its client at --max-connections-per-client, and it was waiting for a request: "
           "the longest waiting of the client that held the most), refused (the table was full of requests in "
           "progress), per_client (a new connection beyond its client's share: its client at "
           "--max-connections-per-client with none of its own waiting, or the table full and its client holding "
           "no fewer than any other with one waiting), other (the client, an answer, or the idle timeout).");
    for (int i = 0; i < EM_CONN_N_REASONS; i++)
        em_strbuf_appendf(&b, "ember_connections_closed_total{reason=\"%s\"} %llu\n", em_conn_reason_name(i),
                          (unsigned long long)cst.closed[i]);
    histogram(&b, "ember_time_to_first_token_seconds", "From a request's arrival to its first generated token.",
              &st.ttft);
    histogram(&b, "ember_inter_token_latency_seconds", "Between consecutive generated tokens of a sequence.", &st.itl);
    histogram(&b, "ember_request_duration_seconds", "From a request's arrival to the last byte of its answer.", &dur);
    if (!b.p) {
        em_api_error err;
        em_api_fail(&err, 500, NULL, "out of memory");
        return em_http_error(s, c, cs, &err);
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(b.n, b.p, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(b.p);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4");
    return em_http_queue(s, c, cs, 200, r);
}
