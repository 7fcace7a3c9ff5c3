/*
 * upstream.c - libcurl calls pumped from the caller's thread, and the
 * mapping of every way a call can fail to an outcome.
 */
#include "router/upstream.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

const char *em_up_outcome_name(em_up_outcome o) {
    static const char *names[] = {"ok",          "connect",       "timeout",      "http_5xx",
                                  "http_429",    "context_length", "bad_response", "broken_stream",
                                  "client_error", "unavailable",   "client_gone"};
    return (unsigned)o < sizeof names / sizeof *names ? names[o] : "unknown";
}

bool em_up_retryable(em_up_outcome o) {
    return o != EM_UP_OK && o != EM_UP_CLIENT_ERROR && o != EM_UP_CLIENT_GONE;
}

/* Case-insensitive substring search within the first len bytes. */
static bool contains(const char *s, size_t len, const char *needle) {
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++) {
        size_t j = 0;
        while (j < n && tolower((unsigned char)s[i + j]) == needle[j]) j++;
        if (j == n) return true;
    }
    return false;
}

em_up_outcome em_up_classify(long status, const char *body, size_t len) {
    if (status >= 200 && status < 300) return EM_UP_OK;
    if (status == 429) return EM_UP_HTTP_429;
    if (status >= 500) return EM_UP_HTTP_5XX;
    if (status == 400 || status == 413 || status == 422) {
        /* How OpenAI, Anthropic-compatible gateways, vLLM, llama.cpp and
         * ember word a prompt that does not fit. */
        static const char *phrases[] = {"context_length_exceeded", "context length", "context window",
                                        "maximum context", "context size", "too many tokens",
                                        "prompt is too long", "input is too long", "reduce the length",
                                        "exceeds the context", "context holds", "token limit",
                                        "maximum number of tokens", "max_model_len", "exceed_context_size"};
        if (len > 65536) len = 65536;
        for (size_t i = 0; i < sizeof phrases / sizeof *phrases; i++)
            if (contains(body, len, phrases[i])) return EM_UP_CONTEXT;
    }
    if (status >= 400) return EM_UP_CLIENT_ERROR;
    return EM_UP_BAD_RESPONSE; /* 1xx leftovers, 3xx redirects */
}

int em_up_client_status(em_up_outcome o, const char **code) {
    switch (o) {
    case EM_UP_CONNECT: *code = "upstream_unreachable"; return 502;
    case EM_UP_TIMEOUT: *code = "upstream_timeout"; return 504;
    case EM_UP_HTTP_5XX: *code = "upstream_error"; return 502;
    case EM_UP_HTTP_429: *code = "upstream_rate_limited"; return 429;
    case EM_UP_CONTEXT: *code = "context_length_exceeded"; return 400;
    case EM_UP_BAD_RESPONSE: *code = "upstream_bad_response"; return 502;
    case EM_UP_BROKEN_STREAM: *code = "upstream_stream_broken"; return 502;
    case EM_UP_UNAVAILABLE: *code = "no_backend_available"; return 503;
    case EM_UP_CLIENT_GONE: *code = "client_closed_request"; return 499;
    default: *code = ""; return 500;
    }
}

size_t em_sse_event_len(const char *buf, size_t n) {
    bool line_empty = true; /* nothing yet on the line being read */
    for (size_t i = 0; i < n;) {
        if (buf[i] != '\n' && buf[i] != '\r') {
            line_empty = false;
            i++;
            continue;
        }
        /* A "\r" that ends the buffer may be half of a "\r\n": it still
         * ends its line, and a "\n" after it becomes an empty event. */
        size_t end = i + 1 + (buf[i] == '\r' && i + 1 < n && buf[i + 1] == '\n');
        if (line_empty) return end;
        line_empty = true;
        i = end;
    }
    return 0;
}

bool em_sse_event_data(const char *ev, size_t len, const char **data, size_t *dlen) {
    *data = NULL;
    *dlen = 0;
    for (size_t i = 0; i < len;) {
        size_t ll = 0;
        while (i + ll < len && ev[i + ll] != '\n' && ev[i + ll] != '\r') ll++;
        if (ll >= 5 && !memcmp(ev + i, "data:", 5)) {
            const char *d = ev + i + 5;
            size_t dl = ll - 5;
            while (dl && *d == ' ') d++, dl--;
            *data = d;
            *dlen = dl;
        }
        i += ll;
        if (i < len) i += 1 + (ev[i] == '\r' && i + 1 < len && ev[i + 1] == '\n');
    }
    return *data != NULL;
}

static size_t on_write(char *p, size_t size, size_t n, void *ud) {
    em_xfer *x = ud;
    size_t len = size * n;
    if (em_xfer_avail(x) + len > x->max_in) {
        x->overflow = true;
        return 0; /* curl aborts the transfer */
    }
    if (x->off && x->off == x->in.n) x->in.n = x->off = 0;
    return em_strbuf_append(&x->in, p, len) ? len : 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
    em_xfer *x = ud;
    size_t len = size * n;
    if (len >= 4 && !memcmp(p, "HTTP", 4)) x->headers_done = false; /* a new block (after 1xx) */
    size_t nl = x->capture ? strlen(x->capture) : 0;
    if (nl && len > nl && p[nl] == ':' && !strncasecmp(p, x->capture, nl)) {
        const char *v = p + nl + 1, *end = p + len;
        while (v < end && (*v == ' ' || *v == '\t')) v++;
        while (end > v && isspace((unsigned char)end[-1])) end--;
        snprintf(x->captured, sizeof x->captured, "%.*s", (int)(end - v), v);
    }
    if ((len == 2 && p[0] == '\r') || (len == 1 && p[0] == '\n')) {
        long st = 0;
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &st);
        if (st >= 200) {
            x->headers_done = true;
            x->status = st;
        }
    }
    return len;
}

bool em_upstream_global_init(void) { return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK; }

/*
 * The connection pool.  With curl's multi interface the open connections
 * live in the multi handle, so a transfer's (multi, easy) pair goes back
 * to this stack when it ends, and the next transfer takes a pair whose
 * multi may hold a live keep-alive connection to its upstream: no new TCP
 * connection, TLS handshake or DNS lookup per request.  Each pair serves
 * one thread at a time, so no curl state is shared between threads (curl
 * 7.88 does not support one connection cache used by concurrent threads).
 * A transfer takes the pair that last served its origin (scheme, host and
 * port) when there is one, and otherwise a new pair, so that calls to many
 * upstreams (and the health checks between them) do not take each other's
 * connections; so the pool holds about as many pairs per origin as it had
 * calls to that origin at once.  curl itself drops idle connections that the
 * peer closed or that idled too long (CURLOPT_MAXAGE_CONN, 118 s).
 */
#define POOL_MAX 128 /* idle pairs kept; more are freed */
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    CURLM *multi;
    CURL *easy;
    char origin[160]; /* of its last transfer */
} pool[POOL_MAX];
static int pool_n;

/* "https://host:port" of a URL: up to the first '/' after "://". */
static void origin_of(const char *url, char *out, size_t n) {
    const char *s = strstr(url, "://");
    s = s ? s + 3 : url;
    size_t len = strcspn(s, "/?#") + (size_t)(s - url);
    snprintf(out, n, "%.*s", (int)len, url);
}

static bool pool_take(em_xfer *x, const char *url) {
    origin_of(url, x->origin, sizeof x->origin);
    pthread_mutex_lock(&pool_mu);
    /* Another origin's pair only when the pool is full: taking it would
     * cost that origin its connection. */
    int pick = pool_n == POOL_MAX ? 0 : -1;
    for (int i = pool_n - 1; i >= 0; i--)
        if (!strcmp(pool[i].origin, x->origin)) {
            pick = i;
            break;
        }
    if (pick >= 0) {
        x->multi = pool[pick].multi;
        x->easy = pool[pick].easy;
        pool[pick] = pool[--pool_n];
    }
    pthread_mutex_unlock(&pool_mu);
    if (x->easy) {
        curl_easy_reset(x->easy);
        return true;
    }
    x->multi = curl_multi_init();
    x->easy = curl_easy_init();
    /* Two idle connections a pair (its origin's, and one more while the
     * pair moves to another origin); 128 pairs stay well under the
     * process's descriptor limit. */
    if (x->multi) curl_multi_setopt(x->multi, CURLMOPT_MAXCONNECTS, 2L);
    return x->multi && x->easy;
}

/* Returns a pair whose easy handle is out of its multi. */
static void pool_give(CURLM *multi, CURL *easy, const char *origin) {
    pthread_mutex_lock(&pool_mu);
    bool kept = pool_n < POOL_MAX;
    if (kept) {
        pool[pool_n].multi = multi;
        pool[pool_n].easy = easy;
        snprintf(pool[pool_n].origin, sizeof pool[pool_n].origin, "%s", origin);
        pool_n++;
    }
    pthread_mutex_unlock(&pool_mu);
    if (!kept) {
        curl_easy_cleanup(easy);
        curl_multi_cleanup(multi);
    }
}

bool em_xfer_start(em_xfer *x, const em_xfer_params *p) {
    memset(x, 0, sizeof *x);
    x->max_in = 32u << 20;
    x->capture = p->capture_header;
    if (!pool_take(x, p->url)) return false;
    CURL *e = x->easy;
    curl_easy_setopt(e, CURLOPT_URL, p->url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(p->timeout_s * 1000));
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(p->connect_timeout_s * 1000));
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    x->headers = curl_slist_append(x->headers, "Expect:");
    if (p->body) {
        x->headers = curl_slist_append(x->headers, "Content-Type: application/json");
        x->headers = curl_slist_append(x->headers, "Accept: application/json, text/event-stream");
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, p->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(p->body));
    }
    if (p->api_key && p->api_key[0]) {
        char auth[1100];
        snprintf(auth, sizeof auth, "Authorization: Bearer %.1024s", p->api_key);
        x->headers = curl_slist_append(x->headers, auth);
    }
    if (!x->headers) return false;
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    return curl_multi_add_handle(x->multi, e) == CURLM_OK;
}

static void collect(em_xfer *x) {
    int left;
    CURLMsg *m;
    while ((m = curl_multi_info_read(x->multi, &left)))
        if (m->msg == CURLMSG_DONE) {
            x->done = true;
            x->result = m->data.result;
            if (!x->headers_done) curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->status);
        }
}

void em_xfer_pump(em_xfer *x, int ms) {
    if (x->done) return;
    int running = 0;
    size_t before = x->in.n;
    curl_multi_perform(x->multi, &running);
    collect(x);
    if (x->done || x->in.n != before) return;
    curl_multi_poll(x->multi, NULL, 0, ms, NULL);
    curl_multi_perform(x->multi, &running);
    collect(x);
}

void em_xfer_consume(em_xfer *x, size_t n) {
    x->off += n;
    if (x->off >= x->in.n) x->off = x->in.n = 0;
    else if (x->off > 65536 && x->off * 2 > x->in.n) {
        memmove(x->in.p, x->in.p + x->off, x->in.n - x->off);
        x->in.n -= x->off;
        x->off = 0;
    }
}

em_up_outcome em_xfer_outcome(const em_xfer *x) {
    if (x->overflow) return EM_UP_BAD_RESPONSE;
    switch (x->result) {
    case CURLE_OK: return em_up_classify(x->status, em_xfer_data(x), em_xfer_avail(x));
    case CURLE_OPERATION_TIMEDOUT: return EM_UP_TIMEOUT;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SEND_ERROR:
        return x->headers_done ? EM_UP_BROKEN_STREAM : EM_UP_CONNECT;
    case CURLE_GOT_NOTHING: return EM_UP_CONNECT;
    default: return x->headers_done ? EM_UP_BROKEN_STREAM : EM_UP_CONNECT;
    }
}

void em_xfer_free(em_xfer *x) {
    if (x->multi && x->easy) {
        /* Removing an unfinished transfer closes its connection; a finished
         * one leaves it open in the multi for the next user of the pair. */
        curl_multi_remove_handle(x->multi, x->easy);
        pool_give(x->multi, x->easy, x->origin);
    } else {
        if (x->easy) curl_easy_cleanup(x->easy);
        if (x->multi) curl_multi_cleanup(x->multi);
    }
    curl_slist_free_all(x->headers);
    em_strbuf_free(&x->in);
    memset(x, 0, sizeof *x);
}
