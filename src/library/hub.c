/*
 * hub.c - `ember pull`: from a Hugging Face style hub into the library.
 *
 * 1. The repository's files come from GET {endpoint}/api/models/{repo}/
 *    tree/main?recursive=true: a JSON array of {type, path, size, lfs:
 *    {oid, size}} where lfs.oid is the file's sha256.
 * 2. The GGUF for the asked quantization is picked by its file name (see
 *    em_quant_from_filename); with none asked, Q4_K_M or the nearest in
 *    the preference order of models.c.  A split model brings all parts.
 * 3. Each file downloads from {endpoint}/{repo}/resolve/main/{path} into
 *    FILE.part, resumed with a Range request after a cut connection (a few
 *    times within one pull, and across pulls), then its sha256 is checked
 *    and it is renamed into place.  Only then is the model indexed.
 *
 * This file is the only place in ember that opens a network connection.
 */
#include "library/library.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define RETRIES 4                     /* resumed attempts per file within one pull */
#define JSON_MAX ((size_t)64 << 20)   /* bytes of API answer we accept             */

typedef struct hub {
    char endpoint[512];     /* no trailing '/' */
    struct curl_slist *headers;
} hub;

/* --------------------------------------------------------------- helpers */

static void human_size(double b, char *out, size_t size) {
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) {
        b /= 1024;
        u++;
    }
    snprintf(out, size, u ? "%.1f %s" : "%.0f %s", b, units[u]);
}

static void human_time(double s, char *out, size_t size) {
    if (!(s >= 0) || s > 359999) snprintf(out, size, "--:--");
    else if (s >= 3600) snprintf(out, size, "%d:%02d:%02d", (int)s / 3600, (int)s / 60 % 60, (int)s % 60);
    else snprintf(out, size, "%d:%02d", (int)s / 60, (int)s % 60);
}

static CURL *new_handle(const hub *h, const char *url) {
    CURL *c = curl_easy_init();
    if (!c) return NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "ember/" EMBER_VERSION);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h->headers);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    /* A connection that moves nothing for a minute is dead. */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    return c;
}

/* The message for an HTTP status that ends a request. */
static em_status http_error(long code, const char *url, const char *repo) {
    if (code == 401 || code == 403)
        return em_error(EM_ERR_IO, "the hub refused %s (HTTP %ld): the repository %s may be gated or private; "
                        "set HF_TOKEN to a token that has access", url, code, repo);
    if (code == 404) return em_error(EM_ERR_NOT_FOUND, "not found on the hub (HTTP 404): %s", url);
    return em_error(EM_ERR_IO, "the hub answered HTTP %ld for %s", code, url);
}

/* ------------------------------------------------------------ API (JSON) */

typedef struct membuf {
    char *p;
    size_t n, cap;
    bool too_big;
} membuf;

static size_t mem_write(char *data, size_t one, size_t n, void *ud) {
    membuf *b = ud;
    size_t len = one * n;
    if (b->n + len + 1 > JSON_MAX) {
        b->too_big = true;
        return 0;
    }
    if (b->n + len + 1 > b->cap) {
        size_t cap = EM_MAX(b->cap * 2, b->n + len + 1);
        char *p = realloc(b->p, cap);
        if (!p) return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, len);
    b->n += len;
    b->p[b->n] = '\0';
    return len;
}

/* Keeps the URL of a `Link: <URL>; rel="next"` header (the hub pages long
 * listings) in ud, a buffer of LINK_MAX bytes. */
#define LINK_MAX 2048
static size_t link_header(char *data, size_t one, size_t n, void *ud) {
    char *next = ud;
    size_t len = one * n;
    if (len >= 5 && !strncmp(data, "HTTP/", 5)) next[0] = '\0'; /* a new response (after a redirect) */
    if (len < 5 || strncasecmp(data, "link:", 5)) return len;
    char line[LINK_MAX + 64];
    snprintf(line, sizeof line, "%.*s", (int)EM_MIN(len, sizeof line - 1), data);
    char *rel = strstr(line, "rel=\"next\"");
    if (!rel) return len;
    *rel = '\0';
    char *lt = strrchr(line, '<'), *gt = lt ? strchr(lt, '>') : NULL;
    if (lt && gt && gt - lt - 1 < LINK_MAX) snprintf(next, LINK_MAX, "%.*s", (int)(gt - lt - 1), lt + 1);
    return len;
}

/* GETs url as JSON; next (LINK_MAX bytes, may be NULL) gets the next
 * page's URL, or "". */
static em_status get_json(const hub *h, const char *url, const char *repo, json_t **out, char *next) {
    CURL *c = new_handle(h, url);
    if (!c) return em_error(EM_ERR_NOMEM, "pull: cannot start libcurl");
    membuf b = {0};
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, mem_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    if (next) {
        next[0] = '\0';
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, link_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, next);
    }
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    CURLcode res = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    em_status st = EM_OK;
    if (b.too_big) st = em_error(EM_ERR_FORMAT, "pull: the hub's answer for %s is over 64 MiB", url);
    else if (res != CURLE_OK) st = em_error(EM_ERR_IO, "pull: cannot reach %s: %s", url, curl_easy_strerror(res));
    else if (code != 200) st = http_error(code, url, repo);
    if (!st) {
        json_error_t jerr;
        *out = json_loadb(b.p ? b.p : "", b.n, 0, &jerr);
        if (!*out) st = em_error(EM_ERR_FORMAT, "pull: the hub's answer for %s is not JSON: %s", url, jerr.text);
    }
    free(b.p);
    return st;
}

/* ------------------------------------------------------------- download */

typedef struct transfer {
    CURL *curl;
    FILE *f;
    const char *part;
    uint64_t base;     /* bytes in the .part file when this request began */
    uint64_t total;    /* the whole file's size                           */
    bool started;      /* the status line has been checked                */
    bool refused;      /* a status other than 200/206: body not written   */
    long code;
    /* progress */
    const char *label;
    bool tty;
    bool drawn;        /* a terminal line is open (no newline yet)        */
    double t0, last;
    int last_decile;
} transfer;

static size_t file_write(char *data, size_t one, size_t n, void *ud) {
    transfer *t = ud;
    if (!t->started) {
        t->started = true;
        curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &t->code);
        if (t->code == 200 && t->base > 0) {
            /* The server ignored the Range: start over. */
            if (ftruncate(fileno(t->f), 0) != 0 || fseeko(t->f, 0, SEEK_SET) != 0) return 0;
            t->base = 0;
        } else if (t->code != 200 && t->code != 206) {
            t->refused = true;
            return 0;
        }
    }
    return fwrite(data, one, n, t->f) == n ? one * n : 0;
}

static void show_progress(transfer *t, uint64_t done, bool final) {
    double now = em_time_s(), el = now - t->t0;
    if (!final && t->tty && now - t->last < 0.2) return;
    uint64_t got = done > t->base ? done - t->base : 0;
    double rate = el > 0 ? (double)got / el : 0;
    double eta = rate > 0 ? (double)(t->total - EM_MIN(done, t->total)) / rate : -1;
    int decile = t->total ? (int)(10 * done / t->total) : 10;
    if (!t->tty && !final && decile == t->last_decile) return;
    t->last = now;
    t->last_decile = decile;
    char a[32], b[32], r[32], e[32];
    human_size((double)done, a, sizeof a);
    human_size((double)t->total, b, sizeof b);
    human_size(rate, r, sizeof r);
    human_time(eta, e, sizeof e);
    double pct = t->total ? 100.0 * (double)done / (double)t->total : 100;
    if (t->tty) {
        fprintf(stderr, "\r%-32.32s %5.1f%%  %s / %s  %s/s  ETA %s\033[K%s", t->label, pct, a, b, r, e,
                final ? "\n" : "");
        t->drawn = !final;
    }
    else
        fprintf(stderr, "%s: %.0f%%  %s / %s  %s/s  ETA %s\n", t->label, pct, a, b, r, e);
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
    (void)dltotal;
    (void)ultotal;
    (void)ulnow;
    transfer *t = ud;
    if (t->started && !t->refused) show_progress(t, t->base + (uint64_t)dlnow, false);
    return 0;
}

static uint64_t file_size_or_zero(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

/* One request for the bytes the .part file lacks.  *gone is set when the
 * failure is final (HTTP error) rather than a connection worth resuming. */
static em_status fetch_once(const hub *h, const char *url, const char *repo, transfer *t, bool *final) {
    *final = false;
    t->base = file_size_or_zero(t->part);
    if (t->base > t->total) {
        if (truncate(t->part, 0) != 0) return em_error(EM_ERR_IO, "pull: cannot reset %s", t->part);
        t->base = 0;
    }
    if (t->base == t->total && t->total > 0) return EM_OK;
    t->f = fopen(t->part, "ab");
    if (!t->f) {
        *final = true;
        return em_error(EM_ERR_IO, "pull: cannot write %s: %s", t->part, strerror(errno));
    }
    t->curl = new_handle(h, url);
    if (!t->curl) {
        fclose(t->f);
        *final = true;
        return em_error(EM_ERR_NOMEM, "pull: cannot start libcurl");
    }
    char range[48];
    snprintf(range, sizeof range, "%llu-", (unsigned long long)t->base);
    if (t->base) curl_easy_setopt(t->curl, CURLOPT_RANGE, range);
    curl_easy_setopt(t->curl, CURLOPT_WRITEFUNCTION, file_write);
    curl_easy_setopt(t->curl, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(t->curl, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(t->curl, CURLOPT_XFERINFODATA, t);
    curl_easy_setopt(t->curl, CURLOPT_NOPROGRESS, 0L);
    t->started = t->refused = false;
    t->code = 0;
    t->t0 = t->last = em_time_s();
    t->last_decile = -1;
    CURLcode res = curl_easy_perform(t->curl);
    if (!t->started) curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &t->code);
    curl_easy_cleanup(t->curl);
    bool closed = fclose(t->f) == 0;
    uint64_t have = file_size_or_zero(t->part);
    if (t->code == 416) {
        /* Our .part is not a prefix the server recognises: start over. */
        if (truncate(t->part, 0) != 0) *final = true;
        return em_error(EM_ERR_IO, "pull: the hub refused to resume %s (HTTP 416)", url);
    }
    if (t->refused || (t->code && t->code != 200 && t->code != 206)) {
        *final = true;
        return http_error(t->code, url, repo);
    }
    if (!closed) {
        *final = true;
        return em_error(EM_ERR_IO, "pull: cannot write %s: %s", t->part, strerror(errno));
    }
    if (res != CURLE_OK)
        return em_error(EM_ERR_IO, "pull: the download of %s stopped after %llu of %llu bytes: %s", url,
                        (unsigned long long)have, (unsigned long long)t->total, curl_easy_strerror(res));
    if (have != t->total)
        return em_error(EM_ERR_IO, "pull: %s gave %llu bytes, the hub's listing says %llu", url,
                        (unsigned long long)have, (unsigned long long)t->total);
    return EM_OK;
}

static em_status fetch_locked(const hub *h, const char *url, const char *repo, const char *dest, const char *part,
                              const char *label, uint64_t size, const char *sha);

/* Downloads url to dest (via dest.part, locked), resuming, and checks it. */
static em_status fetch_file(const hub *h, const char *url, const char *repo, const char *dest, const char *label,
                            uint64_t size, const char *sha) {
    char part[EM_LIB_PATH_MAX * 2 + 16];
    snprintf(part, sizeof part, "%s.part", dest);
    em_status st = em_mkdir_parents(dest);
    if (st) return st;
    /* Two pulls appending to one .part would corrupt it: the second fails
     * at once and says so. */
    int lock_fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd < 0) return em_error(EM_ERR_IO, "pull: cannot create %s: %s", part, strerror(errno));
    if (flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
        close(lock_fd);
        return em_error(EM_ERR_IO, "pull: another ember pull is downloading %s", dest);
    }
    st = fetch_locked(h, url, repo, dest, part, label, size, sha);
    if (st && file_size_or_zero(part) == 0) unlink(part); /* nothing worth resuming */
    close(lock_fd);
    return st;
}

static em_status fetch_locked(const hub *h, const char *url, const char *repo, const char *dest, const char *part,
                              const char *label, uint64_t size, const char *sha) {
    em_status st;
    transfer t = {.part = part, .total = size, .label = label, .tty = isatty(STDERR_FILENO) == 1};
    uint64_t before = file_size_or_zero(part);
    if (before > 0 && before < size) {
        char a[32];
        human_size((double)before, a, sizeof a);
        fprintf(stderr, "%s: resuming after %s\n", label, a);
    }
    for (int attempt = 0;; attempt++) {
        bool final;
        st = fetch_once(h, url, repo, &t, &final);
        if (!st || final) break;
        if (attempt + 1 >= RETRIES) {
            if (t.drawn) fputc('\n', stderr);
            char why[512];
            snprintf(why, sizeof why, "%s", em_last_error());
            return em_error(st, "%s (the partial file stays: run ember pull again to resume)", why);
        }
        if (t.drawn) fputc('\n', stderr);
        t.drawn = false;
        fprintf(stderr, "%s: %s; resuming (attempt %d of %d)\n", label, em_last_error(), attempt + 2, RETRIES);
    }
    if (t.drawn && st) fputc('\n', stderr);
    if (st) return st;
    if (t.tty || t.last_decile != 10) show_progress(&t, size, true);
    if (sha[0]) {
        char got[65];
        if ((st = em_sha256_file(part, got, NULL)) != EM_OK) return st;
        if (strcasecmp(got, sha)) {
            unlink(part);
            return em_error(EM_ERR_FORMAT,
                            "pull: %s failed its checksum: sha256 %s, the hub says %s; the download was "
                            "deleted (run ember pull again; if it persists, the mirror serves a bad file)",
                            label, got, sha);
        }
    }
    if (rename(part, dest) != 0) return em_error(EM_ERR_IO, "pull: cannot rename %s: %s", part, strerror(errno));
    return EM_OK;
}

/* ------------------------------------------------------------- choosing */

typedef struct hub_file {
    const char *path; /* inside the repository, points into the JSON */
    uint64_t size;
    const char *sha;  /* lfs.oid, or "" when the hub gives none */
} hub_file;

/* Part k of n when path ends in -0000k-of-0000n.gguf, else 0. */
static int split_part(const char *path, int *n) {
    size_t len = strlen(path);
    int k, cnt, used = 0;
    if (len < 20) return 0;
    const char *tail = path + len - 20;
    if (sscanf(tail, "-%5d-of-%5d.gguf%n", &k, &cnt, &used) == 2 && used == 20 && k >= 1 && k <= cnt) {
        *n = cnt;
        return k;
    }
    return 0;
}

static bool is_gguf(const char *path) {
    size_t n = strlen(path);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    return n > 5 && !strcasecmp(path + n - 5, ".gguf") && strncasecmp(base, "mmproj", 6);
}

/* The files of the model whose first file is files[first]: that file, or
 * every part of its split. */
static em_status collect_parts(const hub_file *files, int n_files, int first, int *out, int *n_out) {
    int count;
    int k = split_part(files[first].path, &count);
    if (!k) {
        out[0] = first;
        *n_out = 1;
        return EM_OK;
    }
    if (k != 1) return em_error(EM_ERR_INVALID_ARG, "pull: %s is part %d of a split model: ask for part 1",
                                files[first].path, k);
    if (count > EM_LIB_MAX_FILES) return em_error(EM_ERR_UNSUPPORTED, "pull: %d parts are too many", count);
    size_t stem = strlen(files[first].path) - 20;
    for (int p = 1; p <= count; p++) {
        char want[EM_LIB_PATH_MAX];
        snprintf(want, sizeof want, "%.*s-%05d-of-%05d.gguf", (int)stem, files[first].path, p, count);
        int found = -1;
        for (int i = 0; i < n_files && found < 0; i++)
            if (!strcmp(files[i].path, want)) found = i;
        if (found < 0) return em_error(EM_ERR_NOT_FOUND, "pull: split model part %s is missing on the hub", want);
        out[p - 1] = found;
    }
    *n_out = count;
    return EM_OK;
}

/* Picks the first file of the model to pull: the asked quantization, or
 * with none asked, Q4_K_M or the nearest in rank. */
static em_status choose(const hub_file *files, int n, const char *repo, const char *want, int *first, char *quant,
                        size_t qsize) {
    bool asked = want[0] != '\0';
    const char *target = asked ? want : "Q4_K_M";
    int target_rank = em_quant_rank(target);
    int best = -1, best_dist = 1 << 30, n_models = 0, only = -1;
    char avail[512] = "";
    for (int i = 0; i < n; i++) {
        int cnt;
        int k = split_part(files[i].path, &cnt);
        if (k > 1) continue;
        n_models++;
        only = i;
        char q[32];
        if (!em_quant_from_filename(files[i].path, q, sizeof q)) continue;
        if (!strstr(avail, q) && strlen(avail) + strlen(q) + 3 < sizeof avail) {
            if (avail[0]) strcat(avail, ", ");
            strcat(avail, q);
        }
        int r = em_quant_rank(q);
        int dist = !strcasecmp(q, target) ? 0 : (target_rank < 0 || r < 0) ? (1 << 20) : 2 * abs(r - target_rank) + (r > target_rank);
        if (dist < best_dist) {
            best_dist = dist;
            best = i;
        }
    }
    if (n_models == 0) return em_error(EM_ERR_NOT_FOUND, "pull: the repository %s holds no GGUF file", repo);
    if (asked && best_dist != 0) {
        /* A tag outside the table (UD-Q4_K_XL, Q4_0_4_4...): the file whose
         * name holds it as a word. */
        size_t wl = strlen(want);
        for (int i = 0; i < n; i++) {
            int cnt;
            if (split_part(files[i].path, &cnt) > 1) continue;
            for (const char *p = files[i].path; *p; p++)
                if (!strncasecmp(p, want, wl) && (p == files[i].path || !isalnum((unsigned char)p[-1])) &&
                    !isalnum((unsigned char)p[wl]) && p[wl] != '_') {
                    *first = i;
                    for (size_t c = 0; c < wl && c + 1 < qsize; c++) quant[c] = (char)toupper((unsigned char)want[c]);
                    quant[EM_MIN(wl, qsize - 1)] = '\0';
                    return EM_OK;
                }
        }
    }
    if (asked && best_dist != 0)
        return em_error(EM_ERR_NOT_FOUND, "pull: %s has no %s file (it has: %s)", repo, want,
                        avail[0] ? avail : "no file named by quantization");
    if (best < 0) {
        if (n_models > 1)
            return em_error(EM_ERR_INVALID_ARG, "pull: %s holds %d GGUF files and none names its quantization: "
                            "pull ORG/REPO/FILE.gguf", repo, n_models);
        best = only;
    }
    *first = best;
    if (!em_quant_from_filename(files[best].path, quant, qsize)) {
        /* No quantization in the name: the file's stem names the model. */
        const char *base = strrchr(files[best].path, '/');
        base = base ? base + 1 : files[best].path;
        snprintf(quant, qsize, "%.*s", (int)(strlen(base) - 5), base);
    }
    return EM_OK;
}

/* ---------------------------------------------------------------- pull */

/* Splits spec into repo, quant and file; false when it is no spec. */
static bool parse_spec(const char *spec, char *repo, char *quant, char *file) {
    static const char *const prefixes[] = {"https://huggingface.co/", "https://hf.co/", "huggingface.co/", "hf.co/"};
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++)
        if (!strncmp(spec, prefixes[i], strlen(prefixes[i]))) {
            spec += strlen(prefixes[i]);
            break;
        }
    quant[0] = file[0] = '\0';
    const char *s1 = strchr(spec, '/');
    if (!s1) return false;
    const char *s2 = strchr(s1 + 1, '/');
    const char *colon = strchr(s1 + 1, ':');
    size_t rlen = s2 ? (size_t)(s2 - spec) : colon ? (size_t)(colon - spec) : strlen(spec);
    if (rlen >= EM_LIB_NAME_MAX || rlen <= (size_t)(s1 - spec) + 1 || s1 == spec) return false;
    memcpy(repo, spec, rlen);
    repo[rlen] = '\0';
    for (const char *p = repo; *p; p++)
        if (!(*p == '/' || *p == '.' || *p == '_' || *p == '-' || (*p >= '0' && *p <= '9') ||
              (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
            return false;
    if (s2) {
        if (strlen(s2 + 1) >= EM_LIB_PATH_MAX - rlen - 16 || !is_gguf(s2 + 1)) return false;
        strcpy(file, s2 + 1);
    } else if (colon) {
        if (strlen(colon + 1) == 0 || strlen(colon + 1) >= 32) return false;
        strcpy(quant, colon + 1);
    }
    return true;
}

static em_status pull(hub *h, const char *spec, char *name_out, size_t size) {
    char repo[EM_LIB_NAME_MAX], quant[32], file[EM_LIB_PATH_MAX], url[2048];
    if (!parse_spec(spec, repo, quant, file))
        return em_error(EM_ERR_INVALID_ARG, "pull: '%s' is not hf.co/ORG/REPO[:QUANT] or ORG/REPO/FILE.gguf", spec);
    /* The listing, page after page as the hub's Link headers lead. */
    json_t *tree = json_array();
    if (!tree) return em_error(EM_ERR_NOMEM, "pull: out of memory");
    char next[LINK_MAX];
    snprintf(next, sizeof next, "%s/api/models/%s/tree/main?recursive=true", h->endpoint, repo);
    em_status st = EM_OK;
    for (int page = 0; !st && next[0]; page++) {
        json_t *part = NULL;
        snprintf(url, sizeof url, "%s", next);
        if (page == 10000) st = em_error(EM_ERR_FORMAT, "pull: the listing of %s goes on past 10000 pages", repo);
        if (!st) st = get_json(h, url, repo, &part, next);
        if (!st && (!json_is_array(part) || json_array_extend(tree, part) != 0))
            st = em_error(EM_ERR_FORMAT, "pull: %s did not answer a list of files", url);
        json_decref(part);
    }
    if (st) {
        json_decref(tree);
        return st;
    }
    size_t n_tree = json_array_size(tree);
    hub_file *files = calloc(n_tree ? n_tree : 1, sizeof *files);
    int n = 0;
    for (size_t i = 0; files && i < n_tree; i++) {
        json_t *e = json_array_get(tree, i);
        json_t *p = json_object_get(e, "path"), *sz = json_object_get(e, "size"), *lfs = json_object_get(e, "lfs");
        json_t *oid = json_object_get(lfs, "oid");
        const char *type = json_string_value(json_object_get(e, "type"));
        if (!json_is_string(p) || !json_is_integer(sz) || json_integer_value(sz) < 0 || (type && strcmp(type, "file")))
            continue;
        if (!is_gguf(json_string_value(p))) continue;
        files[n].path = json_string_value(p);
        files[n].size = (uint64_t)json_integer_value(sz);
        files[n].sha = json_is_string(oid) && em_sha256_hex_ok(json_string_value(oid)) ? json_string_value(oid) : "";
        n++;
    }
    int first = -1, parts[EM_LIB_MAX_FILES], n_parts = 0;
    em_lib_model m = {0};
    if (!files) {
        st = em_error(EM_ERR_NOMEM, "pull: out of memory");
    } else if (file[0]) {
        for (int i = 0; i < n && first < 0; i++)
            if (!strcmp(files[i].path, file)) first = i;
        if (first < 0) st = em_error(EM_ERR_NOT_FOUND, "pull: %s has no file %s", repo, file);
        else if (!em_quant_from_filename(file, m.quant, sizeof m.quant)) {
            const char *base = strrchr(file, '/');
            base = base ? base + 1 : file;
            snprintf(m.quant, sizeof m.quant, "%.*s", (int)EM_MIN(strlen(base) - 5, sizeof m.quant - 1), base);
        }
    } else {
        st = choose(files, n, repo, quant, &first, m.quant, sizeof m.quant);
    }
    if (!st) st = collect_parts(files, n, first, parts, &n_parts);
    em_library *lib = NULL;
    if (!st) {
        if (snprintf(m.name, sizeof m.name, "%s:%s", repo, m.quant) >= (int)sizeof m.name)
            st = em_error(EM_ERR_INVALID_ARG, "pull: the repository name %s is too long", repo);
        snprintf(m.repo, sizeof m.repo, "%s", repo);
        if (snprintf(m.source, sizeof m.source, "%s/%s", h->endpoint, repo) >= (int)sizeof m.source && !st)
            st = em_error(EM_ERR_INVALID_ARG, "pull: the source URL %s/%s is too long", h->endpoint, repo);
        m.n_files = n_parts;
        m.files = calloc((size_t)n_parts, sizeof *m.files);
        if (!st && !m.files) st = em_error(EM_ERR_NOMEM, "pull: out of memory");
        if (!st && quant[0] == '\0' && !file[0] && strcasecmp(m.quant, "Q4_K_M"))
            fprintf(stderr, "pull: %s has no Q4_K_M file; taking %s, the nearest\n", repo, m.quant);
        if (!st) st = em_library_open(&lib, false); /* only for its folder */
    }
    for (int k = 0; !st && k < n_parts; k++) {
        const hub_file *hf = &files[parts[k]];
        em_lib_file *lf = &m.files[k];
        if (snprintf(lf->path, sizeof lf->path, "models/%s/%s", repo, hf->path) >= (int)sizeof lf->path ||
            !em_tar_path_ok(lf->path)) {
            st = em_error(EM_ERR_UNSUPPORTED, "pull: the file name %s holds characters ember does not store", hf->path);
            break;
        }
        lf->size = hf->size;
        char dest[EM_LIB_PATH_MAX * 2];
        em_library_path(lib, lf->path, dest, sizeof dest);
        const char *base = strrchr(hf->path, '/');
        base = base ? base + 1 : hf->path;
        /* A file already in place is kept when its digest is right. */
        char have[65] = "";
        uint64_t have_size = 0;
        if (em_sha256_file(dest, have, &have_size) == EM_OK && have_size == hf->size &&
            (!hf->sha[0] || !strcasecmp(have, hf->sha))) {
            fprintf(stderr, "%s: already in the library\n", base);
            snprintf(lf->sha256, sizeof lf->sha256, "%s", have);
            continue;
        }
        snprintf(url, sizeof url, "%s/%s/resolve/main/%s", h->endpoint, repo, hf->path);
        st = fetch_file(h, url, repo, dest, base, hf->size, hf->sha);
        if (!st && hf->sha[0]) {
            for (int c = 0; c < 64; c++) lf->sha256[c] = (char)(hf->sha[c] | 0x20); /* lower case */
            lf->sha256[64] = '\0';
        } else if (!st) {
            st = em_sha256_file(dest, lf->sha256, NULL); /* the hub gave none: record ours */
        }
    }
    em_library_free(lib);
    lib = NULL;
    if (!st) st = em_library_open(&lib, true);
    if (!st) st = em_library_add(lib, &m);
    if (!st) snprintf(name_out, size, "%s", m.name);
    em_library_free(lib);
    em_lib_model_free(&m);
    free(files);
    json_decref(tree);
    return st;
}

em_status em_hub_pull(const char *spec, char *name_out, size_t size) {
    const char *off = getenv("EMBER_OFFLINE");
    if (off && *off && strcmp(off, "0"))
        return em_error(EM_ERR_UNSUPPORTED,
                        "pull: EMBER_OFFLINE=%s: ember does not touch the network. Unset EMBER_OFFLINE to pull, "
                        "or carry models in with `ember bundle import`", off);
    hub h = {0};
    const char *ep = getenv("HF_ENDPOINT");
    snprintf(h.endpoint, sizeof h.endpoint, "%s", ep && *ep ? ep : "https://huggingface.co");
    size_t el = strlen(h.endpoint);
    while (el > 0 && h.endpoint[el - 1] == '/') h.endpoint[--el] = '\0';
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return em_error(EM_ERR_IO, "pull: cannot start libcurl");
    const char *token = getenv("HF_TOKEN");
    em_status st = EM_OK;
    if (token && *token) {
        char auth[4096];
        if (snprintf(auth, sizeof auth, "Authorization: Bearer %s", token) >= (int)sizeof auth)
            st = em_error(EM_ERR_INVALID_ARG, "pull: HF_TOKEN is too long");
        else if (!(h.headers = curl_slist_append(NULL, auth)))
            st = em_error(EM_ERR_NOMEM, "pull: out of memory");
        sodium_memzero(auth, sizeof auth);
    }
    if (!st) st = pull(&h, spec, name_out, size);
    curl_slist_free_all(h.headers);
    curl_global_cleanup();
    return st;
}
