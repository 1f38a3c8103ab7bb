/*
 * test_relay.c - unit tests for shim/core/fxrelay over real loopback TCP:
 * 8 MiB each way at once, byte-identical (copy and splice, several buffer
 * sizes), half-close in both orders, RST propagation from either side,
 * fx_relay_abort, and backpressure (a receiver that does not read stops
 * the sender after a bounded amount, then everything arrives intact).
 * The per-loop pipe pool: 1000 idle spliced relays hold no pipe (fds
 * counted in /proc/self/fd), relays sharing one pool stay byte-identical,
 * a cap of 1 or 0 pipes makes chunks fall back to copying without
 * reordering, and a pipe with bytes in it is closed, never pooled.
 *
 * The relay runs on an fx_loop in its own pthread; the test drives the two
 * outer sockets with ordinary blocking I/O from other threads.
 */
#define _GNU_SOURCE
#include <dirent.h>
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
#include <semaphore.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
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
    fx_relay_pool_stats pool_at_done;   /* the loop's pool when done ran */
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

/* The inode behind each relay-side fd the tests made, so that "closed" can
 * be told apart from "closed, then the number reused": the relay's pipe
 * pool may open a pipe on the same number once another relay has closed
 * its fds (seen in test_pool_shared under load). */
#define MAX_TRACKED_FD 4096
static ino_t relay_fd_ino[MAX_TRACKED_FD];

static void remember_relay_fd(int fd)
{
    struct stat st;
    assert_true(fd < MAX_TRACKED_FD);
    assert_int_equal(fstat(fd, &st), 0);
    relay_fd_ino[fd] = st.st_ino;
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
    remember_relay_fd(*s);
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
    fx_relay_pool_get_stats(h->loop, &h->pool_at_done);
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

/* harness_setup passes these on (test_splice_only_bulk, big pipes) */
static size_t g_splice_min, g_pipesize;

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
    h->opts.splice_min = g_splice_min;
    h->opts.pipesize = g_pipesize;
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
    struct stat st;
    if (fcntl(fd, F_GETFD) == -1) {
        assert_int_equal(errno, EBADF);
        return;
    }
    /* Open again: only acceptable as another file on a reused number. */
    assert_int_equal(fstat(fd, &st), 0);
    assert_true(st.st_ino != relay_fd_ino[fd]);
}

/* The loop's pool, read on the loop thread. */
struct pool_req {
    fx_loop *loop;
    fx_relay_pool_stats st;
    sem_t sem;
};

static void pool_stats_task(void *arg)
{
    struct pool_req *q = arg;
    fx_relay_pool_get_stats(q->loop, &q->st);
    sem_post(&q->sem);
}

static fx_relay_pool_stats pool_stats(fx_loop *loop)
{
    struct pool_req q = { .loop = loop };
    struct timespec ts;
    sem_init(&q.sem, 0, 0);
    fx_loop_post(loop, pool_stats_task, &q);
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 20;
    assert_int_equal(sem_timedwait(&q.sem, &ts), 0);
    sem_destroy(&q.sem);
    return q.st;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;
    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;     /* the directory's own fd */
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
    int keep_open;       /* writer: no shutdown at the end; reader: stop at total */
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
    if (!p->keep_open && fx_shutdown_write(p->fd) < 0)
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
        size_t want = sizeof(buf);
        if (p->keep_open && p->done >= p->total)
            return NULL;
        if (p->keep_open && p->total - p->done < want)
            want = p->total - p->done;
        long n = fx_recv(p->fd, buf, want);
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
    /* Every pipe lent to the relay came back (empty) before done. */
    assert_int_equal(h.pool_at_done.lent, 0);
    if (flags & FX_RELAY_SPLICE)
        assert_true(h.pool_at_done.takes >= 2);
    else
        assert_true(h.pool_at_done.takes == 0 && h.pool_at_done.pipes == 0);
    harness_teardown(&h);
}

static void test_bulk_copy(void **state)        { (void)state; bulk(0, 0); }
static void test_bulk_copy_small(void **state)  { (void)state; bulk(0, 4096); }
static void test_bulk_copy_large(void **state)  { (void)state; bulk(0, 262144); }
static void test_bulk_splice(void **state)      { (void)state; bulk(FX_RELAY_SPLICE, 0); }
static void test_bulk_splice_large(void **state){ (void)state; bulk(FX_RELAY_SPLICE, 262144); }
/* Pipes larger than the copy buffer, as fwxhost uses them. */
static void test_bulk_splice_bigpipe(void **state)
{
    (void)state;
    g_pipesize = 262144;
    bulk(FX_RELAY_SPLICE, 0);
    g_pipesize = 0;
}

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

/* ---- splice_min: copy small chunks, splice bulk ones ------------------ */

static void ping_pong(struct harness *h, int rounds)
{
    for (int i = 0; i < rounds; i++) {
        assert_int_equal(fx_send(h->c1, "ping", 4), 4);
        recv_exact(h->c2, "ping");
        assert_int_equal(fx_send(h->c2, "pong", 4), 4);
        recv_exact(h->c1, "pong");
    }
}

static void test_splice_only_bulk(void **state)
{
    struct harness h;
    struct pump w = { 0 }, r = { 0 };
    pthread_t t[2];
    fx_relay_pool_stats st0, st1, st2, st3;
    const size_t total = 4 * MIB;
    (void)state;

    g_splice_min = 16384;
    harness_setup(&h, FX_RELAY_SPLICE, 0, 0);
    g_splice_min = 0;

    ping_pong(&h, 20);
    st0 = pool_stats(h.loop);
    assert_int_equal(st0.takes, 0);        /* request/response: copied */

    /* Bulk b -> a goes through pipes, byte-identical. */
    w = (struct pump){ .fd = h.c2, .seed = 7, .total = total, .keep_open = 1 };
    r = (struct pump){ .fd = h.c1, .seed = 7, .total = total, .keep_open = 1 };
    pthread_create(&t[0], NULL, writer, &w);
    pthread_create(&t[1], NULL, reader, &r);
    pthread_join(t[0], NULL);
    pthread_join(t[1], NULL);
    assert_int_equal(w.err, 0);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.done, total);
    assert_int_equal(r.bad, 0);
    assert_true(r.sum == w.sum);
    st1 = pool_stats(h.loop);
    print_message("bulk 4 MiB: %llu pipe loans\n", st1.takes);
    assert_true(st1.takes > st0.takes);

    /* Small exchanges again: after FX_RELAY_SHORT_SPLICES short splices
     * the direction copies, so the pool lends nothing more. */
    ping_pong(&h, 2 * FX_RELAY_SHORT_SPLICES);
    st2 = pool_stats(h.loop);
    ping_pong(&h, 20);
    st3 = pool_stats(h.loop);
    assert_true(st3.takes == st2.takes);
    assert_int_equal(st3.lent, 0);

    close(h.c1);
    close(h.c2);
    h.c1 = h.c2 = -1;
    harness_wait_done(&h);
    assert_int_equal(h.stats.aborted, 0);
    assert_true(h.stats.bytes_ab == 4 * (size_t)(20 + 2 * FX_RELAY_SHORT_SPLICES + 20));
    assert_true(h.stats.bytes_ba == total + 4 * (size_t)(20 + 2 * FX_RELAY_SHORT_SPLICES + 20));
    harness_teardown(&h);
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

/* ---- the pipe pool ---------------------------------------------------- */

/* Several relays on one loop, so they share its pipe pool. */
struct mpair {
    struct multi *m;
    int c1, c2, s1, s2;
    fx_relay *relay;
    fx_relay_stats stats;
};

struct multi {
    fx_loop *loop;
    pthread_t loop_thread;
    int lfd;
    int n;
    struct mpair *p;
    fx_relay_opts opts;
    long cap;                 /* < 0: the default */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started, start_failed, ndone, all_done;
};

static void multi_done(void *arg, const fx_relay_stats *st)
{
    struct mpair *p = arg;
    struct multi *m = p->m;
    pthread_mutex_lock(&m->mu);
    p->stats = *st;
    if (++m->ndone == m->n)
        m->all_done = 1;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
}

static void multi_start_task(void *arg)
{
    struct multi *m = arg;
    int failed = 0;
    if (m->cap >= 0 && fx_relay_pool_set_cap(m->loop, (unsigned)m->cap) != 0)
        failed++;
    for (int i = 0; i < m->n; i++) {
        struct mpair *p = &m->p[i];
        p->relay = fx_relay_start_opts(m->loop, p->s1, p->s2, &m->opts, multi_done, p);
        if (p->relay == NULL)
            failed++;
    }
    pthread_mutex_lock(&m->mu);
    m->start_failed = failed;
    m->started = 1;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
}

static void multi_wait(struct multi *m, int *flag)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 60;
    pthread_mutex_lock(&m->mu);
    while (!*flag && pthread_cond_timedwait(&m->cv, &m->mu, &ts) == 0)
        ;
    int ok = *flag;
    pthread_mutex_unlock(&m->mu);
    assert_true(ok);
}

static void *multi_loop_main(void *arg)
{
    struct multi *m = arg;
    fx_loop_run(m->loop);
    return NULL;
}

static void multi_setup(struct multi *m, int n, unsigned flags, long cap, int small_buffers)
{
    fx_sockaddr sa;
    int len = sizeof(sa);
    char err[256];
    struct harness h;     /* make_pair only needs lfd */

    memset(m, 0, sizeof(*m));
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    m->n = n;
    m->opts.flags = flags;
    m->cap = cap;
    m->p = calloc((size_t)n, sizeof(*m->p));
    assert_non_null(m->p);
    m->loop = fx_loop_new();
    assert_non_null(m->loop);
    assert_int_equal(fx_addr_parse("127.0.0.1:0", &sa, &len, NULL, 0), 0);
    m->lfd = fx_tcp_listen(&sa, len, 128, 0, err, sizeof(err));
    assert_true(m->lfd >= 0);
    if (small_buffers) {
        int sz = 16384;
        setsockopt(m->lfd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
        setsockopt(m->lfd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    }
    memset(&h, 0, sizeof(h));
    h.lfd = m->lfd;
    for (int i = 0; i < n; i++) {
        m->p[i].m = m;
        make_pair(&h, &m->p[i].c1, &m->p[i].s1);
        make_pair(&h, &m->p[i].c2, &m->p[i].s2);
    }
    assert_int_equal(pthread_create(&m->loop_thread, NULL, multi_loop_main, m), 0);
    fx_loop_post(m->loop, multi_start_task, m);
    multi_wait(m, &m->started);
    assert_int_equal(m->start_failed, 0);
}

static void multi_teardown(struct multi *m)
{
    fx_loop_stop(m->loop);
    pthread_join(m->loop_thread, NULL);
    fx_loop_free(m->loop);
    close(m->lfd);
    for (int i = 0; i < m->n; i++) {
        if (m->p[i].c1 >= 0)
            close(m->p[i].c1);
        if (m->p[i].c2 >= 0)
            close(m->p[i].c2);
    }
    free(m->p);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cv);
}

/* n relays on one loop, total bytes each way on each at once; returns the
 * pool once every relay has ended. */
static fx_relay_pool_stats multi_bulk(int n, long cap, size_t total)
{
    struct multi m;
    struct pump *pp = calloc((size_t)n * 4, sizeof(*pp));
    pthread_t *t = calloc((size_t)n * 4, sizeof(*t));
    fx_relay_pool_stats st;

    assert_true(pp != NULL && t != NULL);
    multi_setup(&m, n, FX_RELAY_SPLICE, cap, 0);
    for (int i = 0; i < n; i++) {
        uint64_t seed = 100 + 2 * (uint64_t)i;
        pp[4 * i + 0] = (struct pump){ .fd = m.p[i].c1, .seed = seed, .total = total };
        pp[4 * i + 1] = (struct pump){ .fd = m.p[i].c2, .seed = seed };
        pp[4 * i + 2] = (struct pump){ .fd = m.p[i].c2, .seed = seed + 1, .total = total };
        pp[4 * i + 3] = (struct pump){ .fd = m.p[i].c1, .seed = seed + 1 };
        for (int k = 0; k < 4; k++)
            pthread_create(&t[4 * i + k], NULL, (k & 1) ? reader : writer, &pp[4 * i + k]);
    }
    for (int i = 0; i < 4 * n; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < n; i++) {
        struct pump *w1 = &pp[4 * i], *r2 = w1 + 1, *w2 = w1 + 2, *r1 = w1 + 3;
        assert_int_equal(w1->err, 0);
        assert_int_equal(w2->err, 0);
        assert_int_equal(r1->err, 0);
        assert_int_equal(r2->err, 0);
        assert_true(r2->done == total && r1->done == total);
        assert_int_equal(r2->bad, 0);
        assert_int_equal(r1->bad, 0);
        assert_true(r1->eof && r2->eof);
        assert_true(r2->sum == w1->sum && r1->sum == w2->sum);
    }
    multi_wait(&m, &m.all_done);
    for (int i = 0; i < n; i++) {
        assert_int_equal(m.p[i].stats.aborted, 0);
        assert_true(m.p[i].stats.bytes_ab == total && m.p[i].stats.bytes_ba == total);
        assert_closed(m.p[i].s1);
        assert_closed(m.p[i].s2);
    }
    st = pool_stats(m.loop);
    multi_teardown(&m);
    free(pp);
    free(t);
    print_message("pool (cap %u): %u pipes (%u idle), %llu loans, %llu made, %llu copied chunks\n",
                  st.cap, st.pipes, st.idle, st.takes, st.made, st.misses);
    assert_int_equal(st.lent, 0);
    assert_true(st.pipes <= st.cap);
    return st;
}

/* Four relays share one pool: byte-identical, and far fewer pipes made
 * than lent (they are reused). */
static void test_pool_shared(void **state)
{
    (void)state;
    fx_relay_pool_stats st = multi_bulk(4, -1, 4 * MIB);
    assert_int_equal(st.cap, FX_RELAY_PIPE_POOL_CAP);
    assert_true(st.takes >= 8);
    assert_true(st.made <= 8);
}

/* One pipe for three relays (six directions): directions switch between
 * the pipe and their buffer from chunk to chunk (how often depends on
 * timing) without losing or reordering a byte. */
static void test_pool_cap1_shared(void **state)
{
    (void)state;
    fx_relay_pool_stats st = multi_bulk(3, 1, 4 * MIB);
    assert_int_equal(st.made, 1);
    assert_true(st.takes >= 1);
}

/* Send a stream from fd until the relay stops taking it (300 ms without
 * progress); returns the bytes sent. */
static size_t send_until_stalled(int fd, struct stream *st)
{
    unsigned char buf[16384];
    size_t sent = 0;
    uint64_t last = fx_now_ms();

    while (sent < 32 * MIB && fx_now_ms() - last < 300) {
        size_t off = 0;
        for (size_t i = 0; i < sizeof(buf); i++)
            buf[i] = stream_next(st);
        while (off < sizeof(buf) && fx_now_ms() - last < 300) {
            ssize_t w = send(fd, buf + off, sizeof(buf) - off, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w > 0) {
                off += (size_t)w;
                last = fx_now_ms();
            } else {
                assert_int_equal(errno, EAGAIN);
                usleep(5000);
            }
        }
        sent += off;
        if (off < sizeof(buf))
            break;
    }
    return sent;
}

/* Cap 1, and relay 0's only pipe is stuck full (its receiver does not
 * read): relay 1 must copy every chunk, correctly; then relay 0 drains
 * intact and its pipe comes back. */
static void test_pool_cap1_falls_back(void **state)
{
    struct multi m;
    struct stream wst, rst;
    struct pump w1, r2, w2, r1;
    pthread_t t[4];
    fx_relay_pool_stats st0, st1;
    unsigned char buf[16384];
    size_t sent, got = 0;
    (void)state;

    multi_setup(&m, 2, FX_RELAY_SPLICE, 1, 1);
    stream_init(&wst, 77);
    stream_init(&rst, 77);
    sent = send_until_stalled(m.p[0].c1, &wst);
    st0 = pool_stats(m.loop);
    assert_int_equal(st0.pipes, 1);
    assert_int_equal(st0.lent, 1);          /* relay 0 holds it, bytes in it */

    w1 = (struct pump){ .fd = m.p[1].c1, .seed = 5, .total = 2 * MIB };
    r2 = (struct pump){ .fd = m.p[1].c2, .seed = 5 };
    w2 = (struct pump){ .fd = m.p[1].c2, .seed = 6, .total = 2 * MIB };
    r1 = (struct pump){ .fd = m.p[1].c1, .seed = 6 };
    pthread_create(&t[0], NULL, writer, &w1);
    pthread_create(&t[1], NULL, reader, &r2);
    pthread_create(&t[2], NULL, writer, &w2);
    pthread_create(&t[3], NULL, reader, &r1);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_true(w1.err == 0 && w2.err == 0 && r1.err == 0 && r2.err == 0);
    assert_true(r2.done == 2 * MIB && r1.done == 2 * MIB);
    assert_true(r2.bad == 0 && r1.bad == 0 && r2.sum == w1.sum && r1.sum == w2.sum);
    st1 = pool_stats(m.loop);
    print_message("cap 1, pipe held: relay 1 copied %llu chunks, %llu loans\n",
                  st1.misses - st0.misses, st1.takes - st0.takes);
    assert_true(st1.misses > st0.misses);
    assert_true(st1.takes == st0.takes);    /* nothing to lend */
    assert_int_equal(st1.made, 1);

    /* Relay 0 drains: every byte it accepted arrives, in order. */
    assert_int_equal(fx_shutdown_write(m.p[0].c1), 0);
    for (;;) {
        long n = fx_recv(m.p[0].c2, buf, sizeof(buf));
        assert_true(n >= 0);
        if (n == 0)
            break;
        for (long i = 0; i < n; i++)
            assert_int_equal(buf[i], stream_next(&rst));
        got += (size_t)n;
    }
    assert_true(got == sent);
    close(m.p[0].c2);
    m.p[0].c2 = -1;
    multi_wait(&m, &m.all_done);
    st1 = pool_stats(m.loop);
    assert_int_equal(st1.lent, 0);
    assert_int_equal(st1.pipes, 1);          /* drained, so pooled again */
    multi_teardown(&m);
}

/* Cap 0: splice is off, every chunk is copied. */
static void test_pool_cap0_copies(void **state)
{
    (void)state;
    fx_relay_pool_stats st = multi_bulk(2, 0, 2 * MIB);
    assert_true(st.made == 0 && st.takes == 0 && st.pipes == 0);
    assert_true(st.misses > 0);
}

/* 1000 relayed connections that each moved a byte both ways, then sit
 * idle: the process holds their sockets (the test's two ends and the
 * relay's two, 4 fds) and the pool's idle pipes, nothing more.  Before the
 * pool, each relay held 2 pipes = 4 more fds for its whole life. */
static void test_idle_relays_hold_no_pipes(void **state)
{
    enum { N = 1000 };
    struct multi m;
    struct rlimit rl;
    fx_relay_pool_stats st;
    int fds0, fds1, fds2;
    (void)state;

    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 4 * N + 1024) {
        rl.rlim_cur = (rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 4 * N + 1024)
                          ? 4 * N + 1024 : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 4 * N + 512) {
        print_message("open-file limit %llu is below %d: skipped\n",
                      (unsigned long long)rl.rlim_cur, 4 * N + 512);
        skip();
    }

    fds0 = count_fds();
    multi_setup(&m, N, FX_RELAY_SPLICE, -1, 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(fx_send(m.p[i].c1, "a", 1), 1);
        assert_int_equal(fx_send(m.p[i].c2, "b", 1), 1);
    }
    for (int i = 0; i < N; i++) {
        recv_exact(m.p[i].c2, "a");
        recv_exact(m.p[i].c1, "b");
    }
    /* The pipe goes back at the end of the pass that emptied it, which may
     * finish just after the byte arrived. */
    for (int k = 0; k < 200; k++) {
        st = pool_stats(m.loop);
        if (st.lent == 0)
            break;
        usleep(10 * 1000);
    }
    fds1 = count_fds();
    print_message("%d idle relays: %d fds (%d before), pool %u pipes, %llu loans, %llu made\n",
                  N, fds1, fds0, st.pipes, st.takes, st.made);
    assert_int_equal(st.lent, 0);
    assert_true(st.takes >= 2 * N);            /* every direction spliced */
    assert_true(st.pipes <= FX_RELAY_PIPE_POOL_CAP);
    /* + the loop's epoll fd and eventfd and the listener */
    assert_int_equal(fds1 - fds0, 4 * N + 2 * (int)st.pipes + 3);

    /* Close everything: the relays close their sockets, nothing leaks. */
    for (int i = 0; i < N; i++) {
        close(m.p[i].c1);
        close(m.p[i].c2);
        m.p[i].c1 = m.p[i].c2 = -1;
    }
    multi_wait(&m, &m.all_done);
    st = pool_stats(m.loop);
    fds2 = count_fds();
    assert_int_equal(st.lent, 0);
    assert_int_equal(fds2 - fds0, 2 * (int)st.pipes + 3);
    multi_teardown(&m);
    assert_int_equal(count_fds(), fds0);
}

/* A relay that ends with bytes sitting in its pipe closes that pipe: it
 * never goes back to the pool, where another connection would read them. */
static void test_pool_never_takes_a_full_pipe(void **state)
{
    struct harness h;
    unsigned char buf[16384];
    size_t sent = 0;
    uint64_t last = fx_now_ms();
    fx_relay_pool_stats before;
    (void)state;

    harness_setup(&h, FX_RELAY_SPLICE, 65536, 1);
    memset(buf, 'x', sizeof(buf));
    /* c2 never reads: the pipe of a -> b fills and stays full. */
    while (sent < 32 * MIB && fx_now_ms() - last < 300) {
        ssize_t w = send(h.c1, buf, sizeof(buf), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            sent += (size_t)w;
            last = fx_now_ms();
        } else {
            assert_int_equal(errno, EAGAIN);
            usleep(5000);
        }
    }
    before = pool_stats(h.loop);
    assert_int_equal(before.lent, 1);
    fx_loop_post(h.loop, abort_task, &h);
    harness_wait_done(&h);
    assert_int_equal(h.stats.aborted, 1);
    assert_int_equal(h.pool_at_done.lent, 0);
    assert_int_equal(h.pool_at_done.pipes, before.idle);   /* the full one was closed */
    assert_int_equal(h.pool_at_done.idle, before.idle);
    harness_teardown(&h);
}

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
        cmocka_unit_test(test_bulk_splice_bigpipe),
        cmocka_unit_test(test_splice_only_bulk),
        cmocka_unit_test(test_half_close_a),
        cmocka_unit_test(test_half_close_b),
        cmocka_unit_test(test_half_close_splice),
        cmocka_unit_test(test_rst_from_b),
        cmocka_unit_test(test_rst_from_a),
        cmocka_unit_test(test_rst_from_b_splice),
        cmocka_unit_test(test_abort),
        cmocka_unit_test(test_backpressure_copy),
        cmocka_unit_test(test_backpressure_splice),
        cmocka_unit_test(test_pool_shared),
        cmocka_unit_test(test_pool_cap1_shared),
        cmocka_unit_test(test_pool_cap1_falls_back),
        cmocka_unit_test(test_pool_cap0_copies),
        cmocka_unit_test(test_idle_relays_hold_no_pipes),
        cmocka_unit_test(test_pool_never_takes_a_full_pipe),
        cmocka_unit_test(test_start_errors),
    };
    return cmocka_run_group_tests_name("fxrelay", tests, NULL, NULL);
}
