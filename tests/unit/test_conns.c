/*
 * test_conns.c - the connection guard (src/server/conns.c) on a real
 * libmicrohttpd daemon in thread-per-connection mode, driven by raw
 * loopback sockets: a full table gives the slot of the connection idle
 * longest to a new one; trickled headers and bodies are closed at the
 * deadline; a request in progress outlives the deadline; a table full of
 * requests in progress refuses a new connection.  Fairness among client
 * addresses, with clients bound to 127.0.0.1, 127.0.0.2 and 127.0.0.3 (all
 * loopback on Linux): a flood from one address evicts its own idle
 * connections, not another's kept-alive one; a client that holds as many
 * slots as any other with an idle one is refused rather than evict it; the
 * per-client cap trades a client's own idle slot or closes the new
 * connection; the table of clients does not grow with the addresses seen.
 * Each wait is bounded.
 */
#include "test.h"

#include "core/core.h"
#include "server/conns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#define TABLE 3
#define DEADLINE_S 1.0
/* How long a test waits for something that must happen (the machine may
 * be loaded); nothing is asserted about the time itself. */
#define WAIT_MS 8000

static em_conn_guard *guard;
static struct MHD_Daemon *daemon_;
static int port;

/* GET /hold requests inside the handler now: the tests wait for them to
 * get there rather than sleep a guessed time. */
static atomic_int holding;

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
    if (!strcmp(url, "/hold")) {
        atomic_fetch_add(&holding, 1);
        usleep(2500 * 1000);
        atomic_fetch_sub(&holding, 1);
    }
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

/* A connection to the daemon (on 127.0.0.1) from the loopback address
 * 127.0.0.`host`. */
static int dial_from(int host) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in src = {.sin_family = AF_INET}, a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    src.sin_addr.s_addr = htonl(INADDR_LOOPBACK + (uint32_t)host - 1u);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int dial(void) { return dial_from(1); }

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

/* Waits until n /hold requests are inside the handler. */
static bool wait_holding(int n) {
    for (int i = 0; i < WAIT_MS / 10; i++) {
        if (atomic_load(&holding) == n) return true;
        usleep(10 * 1000);
    }
    return false;
}

static const char GET[] = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
static const char GET_KEEP[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
static const char HOLD[] = "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n";

/* A new connection from 127.0.0.`host` is served: a GET answered with a
 * 200 and closed.  Returns the connection for the caller to close. */
static int served_from(int host) {
    int fd = dial_from(host);
    CHECK(fd >= 0);
    say(fd, GET);
    char buf[1024];
    CHECK(read_to_close(fd, buf, sizeof buf, WAIT_MS));
    CHECK_MSG(strstr(buf, " 200 ") != NULL, "a new client from 127.0.0.%d got: %.80s", host, buf);
    return fd;
}

/* Reads one answer of a kept-alive connection: true when it is a 200
 * whose body ("ok") has arrived. */
static bool read_answer(int fd) {
    char buf[1024];
    size_t n = 0;
    double until = em_time_s() + WAIT_MS * 1e-3;
    while (n + 1 < sizeof buf) {
        int left = (int)((until - em_time_s()) * 1e3);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left) <= 0) break;
        ssize_t got = recv(fd, buf + n, sizeof buf - 1 - n, 0);
        if (got <= 0) break;
        n += (size_t)got;
        buf[n] = '\0';
        if (strstr(buf, "\r\n\r\nok")) return strstr(buf, " 200 ") != NULL;
    }
    return false;
}

/* A kept-alive connection from 127.0.0.`host`, idle after one answer. */
static int kept_alive(int host) {
    int fd = dial_from(host);
    if (fd < 0) return -1;
    say(fd, GET_KEEP);
    CHECK_MSG(read_answer(fd), "the kept-alive connection got no answer");
    /* The library reports the request done just after its last byte. */
    usleep(100 * 1000);
    return fd;
}

/* Starts a daemon on a guard with these limits (the tests' globals). */
static bool serve(const em_conn_limits *lim) {
    CHECK_OK(em_conn_guard_start(&guard, lim));
    if (!guard) return false;
    daemon_ =
        MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_POLL,
                         0, em_conn_guard_accept, guard, handler, NULL, MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
                         MHD_OPTION_NOTIFY_CONNECTION, em_conn_guard_notify, guard, MHD_OPTION_CONNECTION_LIMIT,
                         em_conn_guard_mhd_limit(guard), MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
    CHECK(daemon_ != NULL);
    if (!daemon_) {
        em_conn_guard_free(guard);
        guard = NULL;
        return false;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_BIND_PORT);
    port = di ? di->port : 0;
    return true;
}

static void unserve(void) {
    em_conn_guard_stop(guard);
    MHD_stop_daemon(daemon_);
    em_conn_guard_free(guard);
    guard = NULL;
    daemon_ = NULL;
}

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
    CHECK(wait_holding(TABLE)); /* every request has reached its handler */
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

/* The client keys: an IPv4-mapped IPv6 address is its IPv4 address, an
 * IPv6 address is its /64. */
static void test_client_keys(void) {
    struct sockaddr_in v4 = {.sin_family = AF_INET};
    struct sockaddr_in6 mapped = {.sin6_family = AF_INET6}, a = {.sin6_family = AF_INET6}, b = a, c = a, lo = a;
    inet_pton(AF_INET, "127.0.0.1", &v4.sin_addr);
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &mapped.sin6_addr);
    inet_pton(AF_INET6, "2001:db8:0:7:1::1", &a.sin6_addr);
    inet_pton(AF_INET6, "2001:db8:0:7:ffff::2", &b.sin6_addr);
    inet_pton(AF_INET6, "2001:db8:0:8:1::1", &c.sin6_addr);
    inet_pton(AF_INET6, "::1", &lo.sin6_addr);
    em_conn_client_key k4, km, ka, kb, kc, kl, kx;
    CHECK(em_conn_client_key_of((struct sockaddr *)&v4, &k4));
    CHECK(em_conn_client_key_of((struct sockaddr *)&mapped, &km));
    CHECK(em_conn_client_key_of((struct sockaddr *)&a, &ka));
    CHECK(em_conn_client_key_of((struct sockaddr *)&b, &kb));
    CHECK(em_conn_client_key_of((struct sockaddr *)&c, &kc));
    CHECK(em_conn_client_key_of((struct sockaddr *)&lo, &kl));
    CHECK_MSG(!memcmp(&k4, &km, sizeof k4), "::ffff:127.0.0.1 is not 127.0.0.1");
    CHECK_MSG(!memcmp(&ka, &kb, sizeof ka), "two addresses of one /64 are two clients");
    CHECK(memcmp(&ka, &kc, sizeof ka) != 0);
    CHECK(memcmp(&kl, &k4, sizeof kl) != 0);
    v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1);
    CHECK(em_conn_client_key_of((struct sockaddr *)&v4, &kx));
    CHECK(memcmp(&kx, &k4, sizeof kx) != 0);
    struct sockaddr unix_like = {.sa_family = AF_UNIX};
    CHECK(!em_conn_client_key_of(&unix_like, &kx));
    CHECK(!em_conn_client_key_of(NULL, &kx));
}

/* A flood of new connections from 127.0.0.2 into a full table evicts its
 * own idle connections, the oldest first, and never the kept-alive
 * connection of 127.0.0.1, although that one has waited longest. */
static void test_flood_evicts_its_own(void) {
    em_conn_stats before = stats();
    int one = kept_alive(1);
    CHECK(one >= 0);
    int flood[TABLE + 4];
    for (int i = 0; i < TABLE + 4; i++) {
        flood[i] = dial_from(2);
        CHECK(flood[i] >= 0);
        if (i < TABLE - 1) CHECK(wait_open(i + 2));
        else CHECK_MSG(read_to_close(flood[i - (TABLE - 1)], NULL, 0, WAIT_MS),
                       "the oldest idle connection of the flood was not evicted");
        usleep(20 * 1000);
    }
    CHECK_MSG(still_open(one, 0), "the flood evicted the kept-alive connection of another client");
    em_conn_stats st = stats();
    CHECK_MSG(st.closed[EM_CONN_EVICTED] == before.closed[EM_CONN_EVICTED] + 5, "evicted %llu",
              (unsigned long long)(st.closed[EM_CONN_EVICTED] - before.closed[EM_CONN_EVICTED]));
    CHECK(st.clients == 2);
    /* The kept-alive connection is still served. */
    say(one, GET_KEEP);
    CHECK(read_answer(one));
    close(one);
    for (int i = 0; i < TABLE + 4; i++) close(flood[i]);
    CHECK(wait_open(0));
    CHECK(stats().clients == 0);
}

/* A client whose requests are in progress in most of a full table is
 * refused a new connection rather than evict the only idle connection of
 * a client with fewer slots; a new client does take that slot. */
static void test_no_slot_from_a_smaller_client(void) {
    em_conn_stats before = stats();
    int one = kept_alive(1);
    CHECK(one >= 0);
    int hold[TABLE - 1];
    for (int i = 0; i < TABLE - 1; i++) {
        hold[i] = dial_from(2);
        CHECK(hold[i] >= 0);
        say(hold[i], HOLD);
    }
    CHECK(wait_open(TABLE));
    CHECK(wait_holding(TABLE - 1)); /* every request has reached its handler */
    int more = dial_from(2);
    if (more >= 0) {
        CHECK_MSG(read_to_close(more, NULL, 0, WAIT_MS), "a client with most of the table took another's slot");
        close(more);
    }
    CHECK(still_open(one, 0));
    em_conn_stats st = stats();
    CHECK(st.closed[EM_CONN_PER_CLIENT] == before.closed[EM_CONN_PER_CLIENT] + 1);
    CHECK(st.closed[EM_CONN_EVICTED] == before.closed[EM_CONN_EVICTED]);
    /* A new client holds fewer slots than 127.0.0.1: it gets that slot. */
    int three = served_from(3);
    CHECK(read_to_close(one, NULL, 0, WAIT_MS));
    CHECK(stats().closed[EM_CONN_EVICTED] == before.closed[EM_CONN_EVICTED] + 1);
    for (int i = 0; i < TABLE - 1; i++) {
        CHECK(read_answer(hold[i]));
        close(hold[i]);
    }
    close(one);
    close(three);
    CHECK(wait_open(0));
}

/* Many client addresses in turn through a full table: every one is
 * served, and the table of clients holds only those with a connection. */
static void test_many_clients(void) {
    int fds[40];
    for (int i = 0; i < 40; i++) {
        fds[i] = dial_from(10 + i);
        CHECK(fds[i] >= 0);
        if (i >= TABLE) CHECK(read_to_close(fds[i - TABLE], NULL, 0, WAIT_MS));
        else CHECK(wait_open(i + 1));
    }
    CHECK(wait_open(TABLE));
    CHECK_MSG(stats().clients == TABLE, "%d clients", stats().clients);
    for (int i = 0; i < 40; i++) close(fds[i]);
    CHECK(wait_open(0));
    CHECK(stats().clients == 0);
}

/* --max-connections-per-client 2 in a table of 8: the third connection
 * of a client takes the slot of its own idle one; with none idle it is
 * closed at once, counted as per_client; another client is unaffected. */
static void test_per_client_cap(void) {
    em_conn_stats before = stats();
    int a = dial_from(2), b = dial_from(2);
    CHECK(a >= 0 && b >= 0);
    CHECK(wait_open(2));
    usleep(20 * 1000);
    int c = dial_from(2);
    CHECK(c >= 0);
    CHECK_MSG(read_to_close(a, NULL, 0, WAIT_MS), "the client's oldest idle connection was not given up");
    CHECK(still_open(b, 0));
    CHECK(stats().closed[EM_CONN_EVICTED] == before.closed[EM_CONN_EVICTED] + 1);
    say(b, HOLD);
    say(c, HOLD);
    CHECK(wait_holding(2)); /* both requests have reached their handler */
    int d = dial_from(2);
    if (d >= 0) {
        CHECK_MSG(read_to_close(d, NULL, 0, WAIT_MS), "a connection beyond the client's cap was kept");
        close(d);
    }
    em_conn_stats st = stats();
    CHECK(st.closed[EM_CONN_PER_CLIENT] == before.closed[EM_CONN_PER_CLIENT] + 1);
    CHECK(st.closed[EM_CONN_REFUSED] == before.closed[EM_CONN_REFUSED]);
    int other = served_from(1);
    CHECK(read_answer(b) && read_answer(c));
    close(a);
    close(b);
    close(c);
    close(other);
    CHECK(wait_open(0));
}

int main(void) {
    test_client_keys();
    em_conn_limits lim = {.max_connections = TABLE, .request_timeout_s = DEADLINE_S, .body_min_rate = 16384};
    if (serve(&lim)) {
        test_evict_oldest_waiting();
        test_trickles_time_out();
        test_busy_kept_then_refused();
        unserve();
    }
    /* The fairness tests need connections to wait for seconds. */
    lim.request_timeout_s = 20;
    if (serve(&lim)) {
        test_flood_evicts_its_own();
        test_no_slot_from_a_smaller_client();
        test_many_clients();
        unserve();
    }
    lim.max_connections = 8;
    lim.max_per_client = 2;
    if (serve(&lim)) {
        test_per_client_cap();
        unserve();
    }
    TEST_END();
}
