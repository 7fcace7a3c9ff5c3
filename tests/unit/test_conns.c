/*
 * test_conns.c - the connection guard (src/server/conns.c) on a real
 * libmicrohttpd daemon in thread-per-connection mode, driven by raw
 * loopback sockets: a full table gives the slot of the connection idle
 * longest to a new one; trickled headers and bodies are closed at the
 * deadline; a request in progress outlives the deadline; a table full of
 * requests in progress refuses a new connection.  Each wait is bounded.
 */
#include "test.h"

#include "core/core.h"
#include "server/conns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#define TABLE 3
#define DEADLINE_S 1.0
/* How long a test waits for something that must happen (the machine may
 * be loaded); nothing is asserted about the time itself. */
#define WAIT_MS 8000

static em_conn_guard *guard;
static int port;

/* The request handler, reporting the phases as src/server/http.c does;
 * GET /hold answers after 2.5 s, past the deadline. */
static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)cls, (void)method, (void)version, (void)upload;
    uint64_t *received = *con_cls;
    if (!received) {
        if (!(received = calloc(1, sizeof *received))) return MHD_NO;
        *con_cls = received;
        em_conn_guard_headers_done(guard, c);
        return MHD_YES;
    }
    if (*upload_size) {
        *received += *upload_size;
        em_conn_guard_body_bytes(guard, c, *received);
        *upload_size = 0;
        return MHD_YES;
    }
    em_conn_guard_request_started(guard, c);
    if (!strcmp(url, "/hold")) usleep(2500 * 1000);
    struct MHD_Response *r = MHD_create_response_from_buffer(2, (char *)"ok", MHD_RESPMEM_PERSISTENT);
    enum MHD_Result res = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return res;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)toe;
    em_conn_guard_request_done(guard, c);
    free(*con_cls);
    *con_cls = NULL;
}

static int dial(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void say(int fd, const char *text) { CHECK(send(fd, text, strlen(text), MSG_NOSIGNAL) == (ssize_t)strlen(text)); }

/* Reads until the server closes the connection (or resets it) or the
 * wait ends: true when it closed; what it sent goes to buf. */
static bool read_to_close(int fd, char *buf, size_t size, int wait_ms) {
    size_t n = 0;
    double until = em_time_s() + wait_ms * 1e-3;
    for (;;) {
        int left = (int)((until - em_time_s()) * 1e3);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left) <= 0) break;
        char tmp[512];
        ssize_t got = recv(fd, tmp, sizeof tmp, 0);
        if (got <= 0) {
            if (buf && size) buf[n] = '\0';
            return got == 0 || errno == ECONNRESET;
        }
        for (ssize_t i = 0; i < got && buf && n + 1 < size; i++) buf[n++] = tmp[i];
    }
    if (buf && size) buf[n] = '\0';
    return false;
}

/* True when fd is still open: nothing to read, no end of stream, within ms. */
static bool still_open(int fd, int ms) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, ms) == 0;
}

static em_conn_stats stats(void) {
    em_conn_stats st;
    em_conn_guard_stats(guard, &st);
    return st;
}

/* Waits until the table holds n connections. */
static bool wait_open(int n) {
    for (int i = 0; i < WAIT_MS / 10; i++) {
        if (stats().open == n) return true;
        usleep(10 * 1000);
    }
    return false;
}

static const char GET[] = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

static void test_evict_oldest_waiting(void) {
    int idle[TABLE];
    for (int i = 0; i < TABLE; i++) {
        idle[i] = dial();
        CHECK(idle[i] >= 0);
        CHECK(wait_open(i + 1));
        usleep(20 * 1000); /* distinct waiting times: idle[0] waited longest */
    }
    int fresh = dial();
    CHECK(fresh >= 0);
    say(fresh, GET);
    char buf[1024];
    CHECK(read_to_close(fresh, buf, sizeof buf, WAIT_MS));
    CHECK_MSG(strstr(buf, " 200 ") != NULL, "the new connection got: %.80s", buf);
    CHECK_MSG(read_to_close(idle[0], NULL, 0, WAIT_MS), "the connection idle longest was not closed");
    CHECK(still_open(idle[1], 0) && still_open(idle[2], 0));
    CHECK(stats().closed[EM_CONN_EVICTED] == 1);
    /* The others reach the headers' deadline. */
    CHECK(read_to_close(idle[1], NULL, 0, WAIT_MS));
    CHECK(read_to_close(idle[2], NULL, 0, WAIT_MS));
    CHECK(stats().closed[EM_CONN_HEADER_TIMEOUT] == 2);
    close(fresh);
    for (int i = 0; i < TABLE; i++) close(idle[i]);
    CHECK(wait_open(0));
}

static void test_trickles_time_out(void) {
    em_conn_stats before = stats();
    int head = dial(), body = dial();
    CHECK(head >= 0 && body >= 0);
    /* Headers a byte at a time, faster than any idle timeout. */
    say(body, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789");
    const char *line = "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    double t0 = em_time_s();
    bool closed = false;
    for (int i = 0; !closed && em_time_s() - t0 < WAIT_MS * 1e-3; i++) {
        char ch[2] = {line[i % (int)strlen(line)], 0};
        /* A send that fails finds the connection closed too. */
        if (send(head, i < (int)strlen(line) ? ch : "a", 1, MSG_NOSIGNAL) != 1) closed = true;
        else closed = read_to_close(head, NULL, 0, 50);
    }
    CHECK_MSG(closed, "trickled headers were not closed");
    CHECK_MSG(em_time_s() - t0 >= DEADLINE_S * 0.9, "closed after %.2f s, before the deadline", em_time_s() - t0);
    CHECK(read_to_close(body, NULL, 0, WAIT_MS));
    em_conn_stats after = stats();
    CHECK(after.closed[EM_CONN_HEADER_TIMEOUT] == before.closed[EM_CONN_HEADER_TIMEOUT] + 1);
    CHECK(after.closed[EM_CONN_BODY_TIMEOUT] == before.closed[EM_CONN_BODY_TIMEOUT] + 1);
    close(head);
    close(body);
    CHECK(wait_open(0));
}

static void test_busy_kept_then_refused(void) {
    em_conn_stats before = stats();
    int hold[TABLE];
    for (int i = 0; i < TABLE; i++) {
        hold[i] = dial();
        CHECK(hold[i] >= 0);
        say(hold[i], "GET /hold HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    }
    CHECK(wait_open(TABLE));
    usleep(200 * 1000); /* every request has reached its handler */
    /* Every slot holds a request in progress: a new connection is refused. */
    int extra = dial();
    if (extra >= 0) {
        CHECK_MSG(read_to_close(extra, NULL, 0, WAIT_MS), "a connection beyond a busy table was kept");
        close(extra);
    }
    CHECK(stats().closed[EM_CONN_REFUSED] == before.closed[EM_CONN_REFUSED] + 1);
    /* The requests, longer than the deadline, are answered. */
    for (int i = 0; i < TABLE; i++) {
        char buf[1024];
        CHECK(read_to_close(hold[i], buf, sizeof buf, WAIT_MS));
        CHECK_MSG(strstr(buf, " 200 ") && strstr(buf, "ok"), "a request in progress was cut: %.80s", buf);
        close(hold[i]);
    }
    CHECK(stats().closed[EM_CONN_HEADER_TIMEOUT] == before.closed[EM_CONN_HEADER_TIMEOUT]);
    CHECK(wait_open(0));
}

int main(void) {
    em_conn_limits lim = {.max_connections = TABLE, .request_timeout_s = DEADLINE_S, .body_min_rate = 16384};
    CHECK_OK(em_conn_guard_start(&guard, &lim));
    if (!guard) TEST_END();
    struct MHD_Daemon *d =
        MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_POLL,
                         0, em_conn_guard_accept, guard, handler, NULL, MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
                         MHD_OPTION_NOTIFY_CONNECTION, em_conn_guard_notify, guard, MHD_OPTION_CONNECTION_LIMIT,
                         em_conn_guard_mhd_limit(guard), MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
    CHECK(d != NULL);
    if (d) {
        const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
        port = di ? di->port : 0;
        test_evict_oldest_waiting();
        test_trickles_time_out();
        test_busy_kept_then_refused();
        em_conn_guard_stop(guard);
        MHD_stop_daemon(d);
    }
    em_conn_guard_free(guard);
    TEST_END();
}
