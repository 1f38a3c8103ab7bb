/*
 * test_relay.c - unit tests for shim/core/fxrelay over real loopback TCP:
 * 8 MiB each way at once, byte-identical (copy and splice, several buffer
 * sizes), half-close in both orders, RST propagation from either side,
 * fx_relay_abort, and backpressure (a receiver that does not read stops
 * the sender after a bounded amount, then everything arrives intact).
 *
 * The relay runs on an fx_loop in its own pthread; the test drives the two
 * outer sockets with ordinary blocking I/O from other threads.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "fxloop.h"
#include "fxnet.h"
#include "fxrelay.h"

#define MIB (1024ul * 1024ul)

/* ---- deterministic byte streams --------------------------------------- */

struct stream {
    uint64_t s;
    uint64_t word;
    int left;
};

static void stream_init(struct stream *st, uint64_t seed)
{
    st->s = seed * 0x9E3779B97F4A7C15ull + 1;
    st->left = 0;
}

static unsigned char stream_next(struct stream *st)
{
    if (st->left == 0) {
        /* xorshift64* */
        st->s ^= st->s >> 12;
        st->s ^= st->s << 25;
        st->s ^= st->s >> 27;
        st->word = st->s * 0x2545F4914F6CDD1Dull;
        st->left = 8;
    }
    unsigned char b = (unsigned char)st->word;
    st->word >>= 8;
    st->left--;
    return b;
}

static uint64_t fnv1a(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001B3ull;
    }
    return h;
}

/* ---- harness ---------------------------------------------------------- */

struct harness {
    fx_loop *loop;
    pthread_t loop_thread;
    int lfd;
    int c1, c2;          /* test ends: c1 <-> [s1 relay s2] <-> c2 */
    int s1, s2;
    fx_relay *relay;
    fx_relay_opts opts;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done_calls;
    int started;
    int start_errno;
    fx_relay_stats stats;
    int done_in_loop_thread;
};

static void *loop_main(void *arg)
{
    struct harness *h = arg;
    fx_loop_run(h->loop);
    return NULL;
}

static void set_blocking_with_timeout(int fd)
{
    struct timeval tv = { 10, 0 };
    int fl = fcntl(fd, F_GETFL);
    assert_int_equal(fcntl(fd, F_SETFL, fl & ~O_NONBLOCK), 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static void make_pair(struct harness *h, int *c, int *s)
{
    fx_sockaddr sa;
    int len = sizeof(sa), inprog;
    struct pollfd p;

    assert_int_equal(fx_getsockname(h->lfd, &sa, &len), 0);
    *c = fx_tcp_connect(&sa, len, &inprog);
    assert_true(*c >= 0);
    p = (struct pollfd){ h->lfd, POLLIN, 0 };
    assert_int_equal(poll(&p, 1, 5000), 1);
    *s = fx_tcp_accept(h->lfd, NULL, NULL);
    assert_true(*s >= 0);
    if (inprog) {
        p = (struct pollfd){ *c, POLLOUT, 0 };
        assert_int_equal(poll(&p, 1, 5000), 1);
        assert_int_equal(fx_sock_error(*c), 0);
    }
    set_blocking_with_timeout(*c);
}

static void relay_done(void *arg, const fx_relay_stats *st)
{
    struct harness *h = arg;
    int in_thread = fx_loop_in_thread(h->loop);
    pthread_mutex_lock(&h->mu);
    h->stats = *st;
    h->done_calls++;
    h->done_in_loop_thread = in_thread;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

static void start_task(void *arg)
{
    struct harness *h = arg;
    fx_relay *r = fx_relay_start_opts(h->loop, h->s1, h->s2, &h->opts, relay_done, h);
    pthread_mutex_lock(&h->mu);
    h->relay = r;
    h->start_errno = r ? 0 : errno;
    h->started = 1;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

static void abort_task(void *arg)
{
    struct harness *h = arg;
    fx_relay_abort(h->relay);
    fx_relay_abort(h->relay);   /* second call while ending: no-op */
}

static void wait_flag(struct harness *h, int *flag)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 20;
    pthread_mutex_lock(&h->mu);
    while (!*flag) {
        if (pthread_cond_timedwait(&h->cv, &h->mu, &ts) != 0)
            break;
    }
    int ok = *flag;
    pthread_mutex_unlock(&h->mu);
    assert_true(ok);
}

/* small_buffers: shrink kernel socket buffers so backpressure is measurable */
static void harness_setup(struct harness *h, unsigned flags, size_t bufsize, int small_buffers)
{
    fx_sockaddr sa;
    int len = sizeof(sa);
    char err[256];

    memset(h, 0, sizeof(*h));
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    h->opts.flags = flags;
    h->opts.bufsize = bufsize;
    h->loop = fx_loop_new();
    assert_non_null(h->loop);
    assert_int_equal(fx_addr_parse("127.0.0.1:0", &sa, &len, NULL, 0), 0);
    h->lfd = fx_tcp_listen(&sa, len, 16, 0, err, sizeof(err));
    assert_true(h->lfd >= 0);
    if (small_buffers) {
        int sz = 16384;
        /* Inherited by accepted sockets. */
        setsockopt(h->lfd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
        setsockopt(h->lfd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    }
    make_pair(h, &h->c1, &h->s1);
    make_pair(h, &h->c2, &h->s2);
    if (small_buffers) {
        int sz = 16384;
        setsockopt(h->c1, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
        setsockopt(h->c2, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    }
    assert_int_equal(pthread_create(&h->loop_thread, NULL, loop_main, h), 0);
    fx_loop_post(h->loop, start_task, h);
    wait_flag(h, &h->started);
    assert_non_null(h->relay);
}

static void harness_wait_done(struct harness *h)
{
    wait_flag(h, &h->done_calls);
    /* Let the loop run a little longer: done must not be called twice. */
    usleep(20 * 1000);
    assert_int_equal(h->done_calls, 1);
    assert_true(h->done_in_loop_thread);
}

static void harness_teardown(struct harness *h)
{
    fx_loop_stop(h->loop);
    pthread_join(h->loop_thread, NULL);
    fx_loop_free(h->loop);
    close(h->lfd);
    if (h->c1 >= 0)
        close(h->c1);
    if (h->c2 >= 0)
        close(h->c2);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
}

/* Both relay-side fds must really be closed once done was called. */
static void assert_closed(int fd)
{
    assert_int_equal(fcntl(fd, F_GETFD), -1);
    assert_int_equal(errno, EBADF);
}

/* ---- bulk transfer ---------------------------------------------------- */

struct pump {
    int fd;
    uint64_t seed;
    size_t total;
    size_t done;
    uint64_t sum;
    int bad;             /* reader: first mismatch offset + 1 */
    int err;
    int eof;
};

static void *writer(void *arg)
{
    struct pump *p = arg;
    struct stream st;
    unsigned char buf[65536];
    stream_init(&st, p->seed);
    p->sum = 0xCBF29CE484222325ull;
    while (p->done < p->total) {
        size_t n = p->total - p->done;
        /* Vary write sizes so segment boundaries differ from the reads. */
        size_t chunk = 1 + (p->done * 7919) % sizeof(buf);
        if (n > chunk)
            n = chunk;
        for (size_t i = 0; i < n; i++)
            buf[i] = stream_next(&st);
        p->sum = fnv1a(p->sum, buf, n);
        size_t off = 0;
        while (off < n) {
            long w = fx_send(p->fd, buf + off, n - off);
            if (w < 0) {
                p->err = (int)-w;
                return NULL;
            }
            off += (size_t)w;
        }
        p->done += n;
    }
    if (fx_shutdown_write(p->fd) < 0)
        p->err = errno;
    return NULL;
}

static void *reader(void *arg)
{
    struct pump *p = arg;
    struct stream st;
    unsigned char buf[50000];
    stream_init(&st, p->seed);
    p->sum = 0xCBF29CE484222325ull;
    for (;;) {
        long n = fx_recv(p->fd, buf, sizeof(buf));
        if (n < 0) {
            p->err = (int)-n;
            return NULL;
        }
        if (n == 0) {
            p->eof = 1;
            return NULL;
        }
        for (long i = 0; i < n; i++) {
            if (buf[i] != stream_next(&st) && !p->bad)
                p->bad = (int)(p->done + (size_t)i) + 1;
        }
        p->sum = fnv1a(p->sum, buf, (size_t)n);
        p->done += (size_t)n;
    }
}

static void bulk(unsigned flags, size_t bufsize)
{
    struct harness h;
    struct pump w1 = { 0 }, r2 = { 0 }, w2 = { 0 }, r1 = { 0 };
    pthread_t t[4];
    const size_t total = 8 * MIB;

    harness_setup(&h, flags, bufsize, 0);
    w1 = (struct pump){ .fd = h.c1, .seed = 1, .total = total };
    r2 = (struct pump){ .fd = h.c2, .seed = 1 };
    w2 = (struct pump){ .fd = h.c2, .seed = 2, .total = total };
    r1 = (struct pump){ .fd = h.c1, .seed = 2 };
    pthread_create(&t[0], NULL, writer, &w1);
    pthread_create(&t[1], NULL, reader, &r2);
    pthread_create(&t[2], NULL, writer, &w2);
    pthread_create(&t[3], NULL, reader, &r1);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);

    assert_int_equal(w1.err, 0);
    assert_int_equal(w2.err, 0);
    assert_int_equal(r1.err, 0);
    assert_int_equal(r2.err, 0);
    assert_int_equal(r2.done, total);
    assert_int_equal(r1.done, total);
    assert_int_equal(r2.bad, 0);
    assert_int_equal(r1.bad, 0);
    assert_true(r1.eof && r2.eof);
    assert_true(r2.sum == w1.sum);
    assert_true(r1.sum == w2.sum);

    harness_wait_done(&h);
    assert_int_equal(h.stats.aborted, 0);
    assert_int_equal(h.stats.error, 0);
    assert_true(h.stats.bytes_ab == total);
    assert_true(h.stats.bytes_ba == total);
    assert_closed(h.s1);
    assert_closed(h.s2);
    harness_teardown(&h);
}

static void test_bulk_copy(void **state)        { (void)state; bulk(0, 0); }
static void test_bulk_copy_small(void **state)  { (void)state; bulk(0, 4096); }
static void test_bulk_copy_large(void **state)  { (void)state; bulk(0, 262144); }
static void test_bulk_splice(void **state)      { (void)state; bulk(FX_RELAY_SPLICE, 0); }
static void test_bulk_splice_large(void **state){ (void)state; bulk(FX_RELAY_SPLICE, 262144); }

/* ---- half-close ------------------------------------------------------- */

static void recv_exact(int fd, const char *expect)
{
    char buf[64];
    size_t n = strlen(expect), got = 0;
    while (got < n) {
        long r = fx_recv(fd, buf + got, n - got);
        if (r <= 0)
            fail_msg("recv returned %ld while waiting for '%s'", r, expect);
        got += (size_t)r;
    }
    assert_memory_equal(buf, expect, n);
}

static void half_close(unsigned flags, int a_first)
{
    struct harness h;
    int first, second;
    char c;

    harness_setup(&h, flags, 0, 0);
    first = a_first ? h.c1 : h.c2;
    second = a_first ? h.c2 : h.c1;

    /* One side says its piece and closes its sending half... */
    assert_int_equal(fx_send(first, "hello", 5), 5);
    assert_int_equal(fx_shutdown_write(first), 0);
    recv_exact(second, "hello");
    assert_int_equal(fx_recv(second, &c, 1), 0);       /* FIN arrived */

    /* ...and the other direction still works, in pieces, afterwards. */
    usleep(20 * 1000);
    assert_int_equal(fx_send(second, "wor", 3), 3);
    usleep(20 * 1000);
    assert_int_equal(fx_send(second, "ld", 2), 2);
    recv_exact(first, "world");
    pthread_mutex_lock(&h.mu);
    int early = h.done_calls;
    pthread_mutex_unlock(&h.mu);
    assert_int_equal(early, 0);                       /* one direction still open */
    assert_int_equal(fx_shutdown_write(second), 0);
    assert_int_equal(fx_recv(first, &c, 1), 0);

    harness_wait_done(&h);
    assert_int_equal(h.stats.aborted, 0);
    assert_int_equal(h.stats.error, 0);
    assert_true(h.stats.bytes_ab == 5);
    assert_true(h.stats.bytes_ba == 5);
    harness_teardown(&h);
}

static void test_half_close_a(void **state)        { (void)state; half_close(0, 1); }
static void test_half_close_b(void **state)        { (void)state; half_close(0, 0); }
static void test_half_close_splice(void **state)   { (void)state; half_close(FX_RELAY_SPLICE, 1); }

/* ---- resets ----------------------------------------------------------- */

static void rst_propagates(unsigned flags, int reset_b)
{
    struct harness h;
    char buf[16];
    int victim, survivor;

    harness_setup(&h, flags, 0, 0);
    victim = reset_b ? h.c2 : h.c1;
    survivor = reset_b ? h.c1 : h.c2;

    assert_int_equal(fx_send(survivor, "abc", 3), 3);
    recv_exact(victim, "abc");
    fx_close_abort(victim);
    if (reset_b)
        h.c2 = -1;
    else
        h.c1 = -1;

    /* The survivor sees a reset, not an orderly EOF. */
    long r = fx_recv(survivor, buf, sizeof(buf));
    assert_int_equal(r, -ECONNRESET);

    harness_wait_done(&h);
    assert_int_equal(h.stats.aborted, 1);
    assert_true(h.stats.error == ECONNRESET || h.stats.error == EPIPE);
    assert_closed(h.s1);
    assert_closed(h.s2);
    harness_teardown(&h);
}

static void test_rst_from_b(void **state)        { (void)state; rst_propagates(0, 1); }
static void test_rst_from_a(void **state)        { (void)state; rst_propagates(0, 0); }
static void test_rst_from_b_splice(void **state) { (void)state; rst_propagates(FX_RELAY_SPLICE, 1); }

static void test_abort(void **state)
{
    struct harness h;
    char buf[16];
    (void)state;

    harness_setup(&h, 0, 0, 0);
    assert_int_equal(fx_send(h.c1, "xyz", 3), 3);
    recv_exact(h.c2, "xyz");
    fx_loop_post(h.loop, abort_task, &h);
    assert_int_equal(fx_recv(h.c1, buf, sizeof(buf)), -ECONNRESET);
    assert_int_equal(fx_recv(h.c2, buf, sizeof(buf)), -ECONNRESET);
    harness_wait_done(&h);
    assert_int_equal(h.stats.aborted, 1);
    assert_int_equal(h.stats.error, 0);
    assert_true(h.stats.bytes_ab == 3);
    assert_true(h.stats.bytes_ba == 0);
    harness_teardown(&h);
}

/* ---- backpressure ----------------------------------------------------- */

static void backpressure(unsigned flags)
{
    struct harness h;
    struct stream wst, rst;
    unsigned char buf[16384];
    size_t sent = 0, got = 0;
    uint64_t last_progress;
    char c;

    harness_setup(&h, flags, 65536, 1);
    stream_init(&wst, 7);
    stream_init(&rst, 7);

    /* c2 never reads: c1 must stall after a bounded amount. */
    last_progress = fx_now_ms();
    while (sent < 32 * MIB && fx_now_ms() - last_progress < 300) {
        size_t n = sizeof(buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = stream_next(&wst);
        size_t off = 0;
        while (off < n && fx_now_ms() - last_progress < 300) {
            ssize_t w = send(h.c1, buf + off, n - off, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w > 0) {
                off += (size_t)w;
                last_progress = fx_now_ms();
            } else {
                assert_int_equal(errno, EAGAIN);
                usleep(5000);
            }
        }
        sent += off;
        if (off < n)
            break;
    }
    /* Kernel buffers (shrunk to ~16 KiB each, doubled by the kernel, plus
     * loopback slack) plus one 64 KiB relay buffer: far below 32 MiB. */
    print_message("backpressure: %zu bytes accepted before the sender stalled\n", sent);
    assert_true(sent < 1 * MIB);
    assert_true(sent >= 16384);

    /* Now drain: everything that was accepted arrives, in order. */
    assert_int_equal(fx_shutdown_write(h.c1), 0);
    for (;;) {
        long n = fx_recv(h.c2, buf, sizeof(buf));
        assert_true(n >= 0);
        if (n == 0)
            break;
        for (long i = 0; i < n; i++)
            assert_int_equal(buf[i], stream_next(&rst));
        got += (size_t)n;
    }
    assert_true(got == sent);
    assert_int_equal(fx_shutdown_write(h.c2), 0);
    assert_int_equal(fx_recv(h.c1, &c, 1), 0);
    harness_wait_done(&h);
    assert_int_equal(h.stats.aborted, 0);
    assert_true(h.stats.bytes_ab == sent);
    harness_teardown(&h);
}

static void test_backpressure_copy(void **state)   { (void)state; backpressure(0); }
static void test_backpressure_splice(void **state) { (void)state; backpressure(FX_RELAY_SPLICE); }

static void test_start_errors(void **state)
{
    fx_loop *loop = fx_loop_new();
    int sv[2];
    (void)state;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    errno = 0;
    assert_null(fx_relay_start(loop, sv[0], sv[0], 0, relay_done, NULL));
    assert_int_equal(errno, EINVAL);
    assert_null(fx_relay_start(loop, sv[0], sv[1], 0, NULL, NULL));
    assert_null(fx_relay_start(loop, sv[0], 9999, 0, relay_done, NULL));
    /* Failures leave the fds to the caller: still open. */
    assert_true(fcntl(sv[0], F_GETFD) >= 0);
    assert_true(fcntl(sv[1], F_GETFD) >= 0);
    close(sv[0]);
    close(sv[1]);
    fx_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bulk_copy),
        cmocka_unit_test(test_bulk_copy_small),
        cmocka_unit_test(test_bulk_copy_large),
        cmocka_unit_test(test_bulk_splice),
        cmocka_unit_test(test_bulk_splice_large),
        cmocka_unit_test(test_half_close_a),
        cmocka_unit_test(test_half_close_b),
        cmocka_unit_test(test_half_close_splice),
        cmocka_unit_test(test_rst_from_b),
        cmocka_unit_test(test_rst_from_a),
        cmocka_unit_test(test_rst_from_b_splice),
        cmocka_unit_test(test_abort),
        cmocka_unit_test(test_backpressure_copy),
        cmocka_unit_test(test_backpressure_splice),
        cmocka_unit_test(test_start_errors),
    };
    return cmocka_run_group_tests_name("fxrelay", tests, NULL, NULL);
}
