/*
 * test_loop.c - unit tests for shim/core/fxloop: defer/post ordering,
 * cross-thread posting, timers (order, cancel, self-cancel, re-arm), fd
 * removal inside a batch (no stale callbacks, even when the fd number is
 * reused), parking with events 0, taking over a registration, stop from
 * another thread, the bounded poll before sleeping.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "fxloop.h"

/* ---- a tiny trace of what ran, in order ------------------------------- */

struct trace {
    fx_loop *loop;
    char buf[256];
};

static void trace_add(struct trace *t, const char *what)
{
    size_t l = strlen(t->buf);
    snprintf(t->buf + l, sizeof(t->buf) - l, "%s%s", l ? " " : "", what);
}

struct step {
    struct trace *t;
    const char *name;
};

static struct trace *g_order;   /* test_defer_post_order only */

static void task_d3(void *arg) { trace_add(arg, "D3"); }
static void task_d4(void *arg) { trace_add(arg, "D4"); }
static void task_p3(void *arg) { trace_add(arg, "P3"); }
static void task_stop(void *arg)
{
    struct trace *t = arg;
    trace_add(t, "STOP");
    fx_loop_stop(t->loop);
}
static void task_d1(void *arg)
{
    struct trace *t = arg;
    trace_add(t, "D1");
    fx_loop_defer(t->loop, task_d3, t);   /* same drain, after D2 */
}
static void task_d2(void *arg) { trace_add(arg, "D2"); }
static void task_p1(void *arg)
{
    struct trace *t = arg;
    trace_add(t, "P1");
    fx_loop_defer(t->loop, task_d4, t);   /* right after P1, before P2 */
    fx_loop_post(t->loop, task_p3, t);    /* a later iteration, after P2 */
    fx_loop_post(t->loop, task_stop, t);
}
static void task_p2(void *arg) { trace_add(arg, "P2"); }

static void order_io(fx_loop *loop, int fd, unsigned events, void *data)
{
    struct trace *t = data;
    char c;
    assert_true(events & FX_READ);
    assert_int_equal(read(fd, &c, 1), 1);
    fx_loop_del_fd(loop, fd);
    trace_add(t, "IO");
    fx_loop_post(loop, task_p1, t);
    fx_loop_defer(loop, task_d1, t);
    fx_loop_post(loop, task_p2, t);
    fx_loop_defer(loop, task_d2, t);
    trace_add(t, "IO-END");
}

static void test_defer_post_order(void **state)
{
    struct trace t = { 0 };
    int p[2];
    (void)state;

    t.loop = fx_loop_new();
    assert_non_null(t.loop);
    g_order = &t;
    assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    assert_int_equal(write(p[1], "x", 1), 1);
    assert_int_equal(fx_loop_add_fd(t.loop, p[0], FX_READ, order_io, &t), 0);
    assert_int_equal(fx_loop_run(t.loop), 0);
    assert_string_equal(t.buf, "IO IO-END D1 D2 D3 P1 D4 P2 P3 STOP");
    close(p[0]);
    close(p[1]);
    fx_loop_free(t.loop);
}

/* Defer before the loop runs: first thing in fx_loop_run, before posts. */
static void test_defer_before_run(void **state)
{
    struct trace t = { 0 };
    (void)state;
    t.loop = fx_loop_new();
    fx_loop_post(t.loop, task_p2, &t);
    fx_loop_post(t.loop, task_stop, &t);
    fx_loop_defer(t.loop, task_d2, &t);
    assert_int_equal(fx_loop_run(t.loop), 0);
    assert_string_equal(t.buf, "D2 P2 STOP");
    fx_loop_free(t.loop);
}

/* ---- cross-thread posting --------------------------------------------- */

#define PRODUCERS 4
#define PER_PRODUCER 20000

struct xpost {
    fx_loop *loop;
    int next[PRODUCERS];       /* loop thread only */
    int total;
    int bad_order;
    int not_in_loop_thread;
    int producer_saw_in_thread;
};

struct xmsg {
    struct xpost *x;
    int producer;
    int seq;
};

static void xpost_task(void *arg)
{
    struct xmsg *m = arg;
    struct xpost *x = m->x;
    if (!fx_loop_in_thread(x->loop))
        x->not_in_loop_thread++;
    if (m->seq != x->next[m->producer])
        x->bad_order++;
    x->next[m->producer] = m->seq + 1;
    if (++x->total == PRODUCERS * PER_PRODUCER)
        fx_loop_stop(x->loop);
    free(m);
}

struct producer_arg {
    struct xpost *x;
    int id;
};

static void *producer(void *arg)
{
    struct producer_arg *pa = arg;
    if (fx_loop_in_thread(pa->x->loop))
        __atomic_add_fetch(&pa->x->producer_saw_in_thread, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < PER_PRODUCER; i++) {
        struct xmsg *m = malloc(sizeof(*m));
        m->x = pa->x;
        m->producer = pa->id;
        m->seq = i;
        fx_loop_post(pa->x->loop, xpost_task, m);
        if (i % 1000 == 0)
            usleep(100);   /* let the loop drain mid-stream too */
    }
    return NULL;
}

static void test_cross_thread_post(void **state)
{
    struct xpost x = { 0 };
    struct producer_arg pa[PRODUCERS];
    pthread_t th[PRODUCERS];
    (void)state;

    x.loop = fx_loop_new();
    assert_false(fx_loop_in_thread(x.loop));
    for (int i = 0; i < PRODUCERS; i++) {
        pa[i].x = &x;
        pa[i].id = i;
        assert_int_equal(pthread_create(&th[i], NULL, producer, &pa[i]), 0);
    }
    assert_int_equal(fx_loop_run(x.loop), 0);
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(x.total, PRODUCERS * PER_PRODUCER);
    assert_int_equal(x.bad_order, 0);
    assert_int_equal(x.not_in_loop_thread, 0);
    assert_int_equal(x.producer_saw_in_thread, 0);
    for (int i = 0; i < PRODUCERS; i++)
        assert_int_equal(x.next[i], PER_PRODUCER);
    fx_loop_free(x.loop);
}

/* ---- stop ------------------------------------------------------------- */

static void *run_thread(void *arg)
{
    fx_loop *loop = arg;
    intptr_t rc = fx_loop_run(loop);
    return (void *)rc;
}

static void test_stop_from_other_thread(void **state)
{
    fx_loop *loop = fx_loop_new();
    pthread_t th;
    void *rc;
    uint64_t t0;
    (void)state;

    /* A stop issued before run starts is not lost. */
    fx_loop_stop(loop);
    t0 = fx_now_ms();
    assert_int_equal(fx_loop_run(loop), 0);
    assert_true(fx_now_ms() - t0 < 1000);

    assert_int_equal(pthread_create(&th, NULL, run_thread, loop), 0);
    usleep(50 * 1000);
    assert_false(fx_loop_in_thread(loop));
    fx_loop_stop(loop);
    pthread_join(th, &rc);
    assert_int_equal((intptr_t)rc, 0);
    fx_loop_free(loop);
}

/* ---- timers ----------------------------------------------------------- */

struct tstate {
    fx_loop *loop;
    struct trace tr;
    uint64_t start;
    uint64_t fired_at[8];
    fx_timer *victim;
    fx_timer *self;
    int rearms;
};

struct tnamed {
    struct tstate *ts;
    const char *name;
    int slot;
};

static void timer_cb(void *arg)
{
    struct tnamed *n = arg;
    n->ts->fired_at[n->slot] = fx_now_ms();
    trace_add(&n->ts->tr, n->name);
}

static void timer_cancel_victim(void *arg)
{
    struct tnamed *n = arg;
    timer_cb(arg);
    fx_timer_cancel(n->ts->loop, n->ts->victim);
}

static void timer_self_cancel(void *arg)
{
    struct tnamed *n = arg;
    timer_cb(arg);
    fx_timer_cancel(n->ts->loop, n->ts->self);   /* must be a no-op */
}

static void timer_stop(void *arg)
{
    struct tnamed *n = arg;
    trace_add(&n->ts->tr, n->name);
    fx_loop_stop(n->ts->loop);
}

static void test_timers_order_and_cancel(void **state)
{
    struct tstate ts = { 0 };
    struct tnamed a = { &ts, "A40", 0 }, b = { &ts, "B40", 1 }, c = { &ts, "C80", 2 },
                  d = { &ts, "D120", 3 }, e = { &ts, "E160", 4 }, f = { &ts, "F100", 5 },
                  s = { &ts, "STOP", 6 }, g = { &ts, "G20", 7 };
    (void)state;

    ts.loop = fx_loop_new();
    ts.start = fx_now_ms();
    /* Started out of order; same deadline (A, B) must keep start order.
     * Deadlines are 20 ms apart so the order holds even when starting
     * the timers takes a while (valgrind: make memcheck). */
    assert_non_null(fx_timer_start(ts.loop, 120, timer_cb, &d));
    assert_non_null(fx_timer_start(ts.loop, 40, timer_cb, &a));
    assert_non_null(fx_timer_start(ts.loop, 80, timer_cancel_victim, &c));
    assert_non_null(fx_timer_start(ts.loop, 40, timer_cb, &b));
    ts.victim = fx_timer_start(ts.loop, 160, timer_cb, &e);   /* cancelled by C80 */
    fx_timer *gone = fx_timer_start(ts.loop, 20, timer_cb, &g);
    ts.self = fx_timer_start(ts.loop, 100, timer_self_cancel, &f);
    assert_non_null(fx_timer_start(ts.loop, 320, timer_stop, &s));
    fx_timer_cancel(ts.loop, gone);                           /* never fires */

    assert_int_equal(fx_loop_run(ts.loop), 0);
    assert_string_equal(ts.tr.buf, "A40 B40 C80 F100 D120 STOP");
    assert_true(ts.fired_at[0] - ts.start >= 40);
    assert_true(ts.fired_at[2] - ts.start >= 80);
    assert_true(ts.fired_at[3] - ts.start >= 120);
    assert_true(ts.fired_at[5] - ts.start >= 100);
    fx_loop_free(ts.loop);
}

/* A timer re-arming itself with 0 ms must not starve posted tasks. */
static void rearm_cb(void *arg)
{
    struct tstate *ts = arg;
    ts->rearms++;
    if (ts->tr.buf[0] == '\0')
        fx_timer_start(ts->loop, 0, rearm_cb, ts);
}

static void rearm_post(void *arg)
{
    struct tstate *ts = arg;
    trace_add(&ts->tr, "POSTED");
    fx_loop_stop(ts->loop);
}

static void test_timer_rearm_zero(void **state)
{
    struct tstate ts = { 0 };
    (void)state;
    ts.loop = fx_loop_new();
    fx_timer_start(ts.loop, 0, rearm_cb, &ts);
    fx_loop_post(ts.loop, rearm_post, &ts);
    assert_int_equal(fx_loop_run(ts.loop), 0);
    assert_string_equal(ts.tr.buf, "POSTED");
    assert_true(ts.rearms >= 1);
    assert_true(ts.rearms < 100);
    fx_loop_free(ts.loop);   /* frees the still-pending re-armed timer */
}

static void stop_task(void *arg)
{
    fx_loop_stop(arg);
}

/* ---- fd removal inside a batch ---------------------------------------- */

struct delstate {
    fx_loop *loop;
    int fd[2];        /* read ends, both readable */
    int wfd[2];
    int calls[2];
    int replaced;     /* fd number reused by an empty pipe */
    int stale_calls;
    int spare_w;
};

static void stale_cb(fx_loop *loop, int fd, unsigned events, void *data)
{
    struct delstate *d = data;
    (void)loop; (void)fd; (void)events;
    d->stale_calls++;
}

static void del_cb(fx_loop *loop, int fd, unsigned events, void *data)
{
    struct delstate *d = data;
    int me = (fd == d->fd[0]) ? 0 : 1, other = 1 - me;
    int p[2];
    (void)events;

    d->calls[me]++;
    fx_loop_del_fd(loop, fd);
    /* Kill the other fd, then put a fresh, empty pipe on the same number:
     * the other's event already fetched in this batch must reach nobody. */
    fx_loop_del_fd(loop, d->fd[other]);
    close(d->fd[other]);
    assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    if (p[0] != d->fd[other]) {   /* usually the kernel reuses it already */
        assert_int_equal(dup2(p[0], d->fd[other]), d->fd[other]);
        close(p[0]);
    }
    d->spare_w = p[1];
    assert_int_equal(fx_loop_add_fd(loop, d->fd[other], FX_READ, stale_cb, d), 0);
    d->replaced = 1;
    fx_timer_start(loop, 30, stop_task, loop);
}

static void test_del_in_batch(void **state)
{
    struct delstate d = { 0 };
    int p[2];
    (void)state;

    d.loop = fx_loop_new();
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
        d.fd[i] = p[0];
        d.wfd[i] = p[1];
        assert_int_equal(write(p[1], "x", 1), 1);
        assert_int_equal(fx_loop_add_fd(d.loop, p[0], FX_READ, del_cb, &d), 0);
    }
    assert_int_equal(fx_loop_run(d.loop), 0);
    assert_int_equal(d.calls[0] + d.calls[1], 1);
    assert_true(d.replaced);
    assert_int_equal(d.stale_calls, 0);
    for (int i = 0; i < 2; i++) {
        fx_loop_del_fd(d.loop, d.fd[i]);
        close(d.fd[i]);
        close(d.wfd[i]);
    }
    close(d.spare_w);
    fx_loop_free(d.loop);
}

/* ---- interest changes and parking ------------------------------------- */

struct parkstate {
    int calls;
    unsigned first_events;
    unsigned write_events;
    int write_calls;
};

static void park_cb(fx_loop *loop, int fd, unsigned events, void *data)
{
    struct parkstate *ps = data;
    if (ps->calls++ == 0)
        ps->first_events = events;
    /* Parked: the peer's hang-up must not spin the loop. */
    assert_int_equal(fx_loop_mod_fd(loop, fd, 0), 0);
}

static void write_cb(fx_loop *loop, int fd, unsigned events, void *data)
{
    struct parkstate *ps = data;
    ps->write_events |= events;
    ps->write_calls++;
    fx_loop_mod_fd(loop, fd, FX_READ);   /* nothing to read: quiet */
}

static void test_mod_and_park(void **state)
{
    fx_loop *loop = fx_loop_new();
    struct parkstate ps = { 0 }, ws = { 0 };
    int sv[2], sv2[2];
    (void)state;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    close(sv[1]);   /* peer gone: READ|HUP, level-triggered forever */
    assert_int_equal(fx_loop_add_fd(loop, sv[0], FX_READ, park_cb, &ps), 0);

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv2), 0);
    assert_int_equal(fx_loop_add_fd(loop, sv2[0], FX_WRITE, write_cb, &ws), 0);

    /* Error cases. */
    assert_int_equal(fx_loop_add_fd(loop, sv[0], FX_READ, park_cb, &ps), -EEXIST);
    assert_int_equal(fx_loop_mod_fd(loop, 1000, FX_READ), -ENOENT);
    assert_int_equal(fx_loop_add_fd(loop, -1, FX_READ, park_cb, &ps), -EINVAL);
    {
        int p[2];
        assert_int_equal(pipe(p), 0);
        close(p[0]);
        close(p[1]);
        assert_int_equal(fx_loop_add_fd(loop, p[0], FX_READ, park_cb, &ps), -EBADF);
        /* The failed add left nothing registered. */
        assert_int_equal(fx_loop_mod_fd(loop, p[0], FX_READ), -ENOENT);
    }

    fx_timer_start(loop, 50, stop_task, loop);
    assert_int_equal(fx_loop_run(loop), 0);
    assert_int_equal(ps.calls, 1);
    assert_true(ps.first_events & FX_READ);
    assert_true(ps.first_events & FX_HUP);
    assert_int_equal(ws.write_calls, 1);
    assert_int_equal(ws.write_events, FX_WRITE);

    /* Re-arming a parked fd brings its events back. */
    assert_int_equal(fx_loop_mod_fd(loop, sv[0], FX_READ), 0);
    fx_timer_start(loop, 20, stop_task, loop);
    assert_int_equal(fx_loop_run(loop), 0);
    assert_int_equal(ps.calls, 2);

    fx_loop_del_fd(loop, sv[0]);
    fx_loop_del_fd(loop, sv[0]);      /* twice: ignored */
    fx_loop_del_fd(loop, sv2[0]);
    close(sv[0]);
    close(sv2[0]);
    close(sv2[1]);
    fx_loop_free(loop);
}

/* ---- taking over a registration (connect watch -> data path) --------- */

struct takestate {
    int watch_calls, data_calls;
    unsigned data_events;
    int sv1;                        /* the data path's end of the pair */
};

static void data_cb(fx_loop *loop, int fd, unsigned events, void *data)
{
    struct takestate *ts = data;
    char b[8];
    ts->data_calls++;
    ts->data_events |= events;
    assert_int_equal(read(fd, b, sizeof(b)), 1);
    fx_loop_stop(loop);
}

static void watch_cb(fx_loop *loop, int fd, unsigned events, void *data)
{
    struct takestate *ts = data;
    ts->watch_calls++;
    assert_true(events & FX_WRITE);
    /* Hand the fd to the data path inside the watch's own callback, as
     * on_connected does; the stale WRITE interest must not reach it. */
    assert_int_equal(fx_loop_take_fd(loop, fd, FX_READ, data_cb, ts), 0);
    assert_int_equal(write(ts->sv1, "y", 1), 1);
}

static void test_take_over(void **state)
{
    fx_loop *loop = fx_loop_new();
    struct takestate ts = { 0 };
    int sv[2], p[2], lfd;
    (void)state;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    ts.sv1 = sv[1];
    assert_int_equal(fx_loop_add_fd(loop, sv[0], FX_WRITE, watch_cb, &ts), 0);
    fx_timer_start(loop, 2000, stop_task, loop);   /* bound, if it went wrong */
    assert_int_equal(fx_loop_run(loop), 0);
    assert_int_equal(ts.watch_calls, 1);
    assert_int_equal(ts.data_calls, 1);
    assert_int_equal(ts.data_events & FX_WRITE, 0);
    assert_true(ts.data_events & FX_READ);

    /* Taking with the same interest still moves events to the new owner
     * (the kernel's copy of the generation is rewritten). */
    struct takestate ts2 = { 0 };
    assert_int_equal(fx_loop_take_fd(loop, sv[0], FX_READ, data_cb, &ts2), 0);
    assert_int_equal(write(sv[1], "z", 1), 1);
    fx_timer_start(loop, 2000, stop_task, loop);
    assert_int_equal(fx_loop_run(loop), 0);
    assert_int_equal(ts.data_calls, 1);
    assert_int_equal(ts2.data_calls, 1);

    /* An fd nobody registered: take is add. */
    assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    struct takestate ts3 = { 0 };
    assert_int_equal(fx_loop_take_fd(loop, p[0], FX_READ, data_cb, &ts3), 0);
    assert_int_equal(fx_loop_add_fd(loop, p[0], FX_READ, data_cb, &ts3), -EEXIST);
    assert_int_equal(write(p[1], "w", 1), 1);
    fx_timer_start(loop, 2000, stop_task, loop);
    assert_int_equal(fx_loop_run(loop), 0);
    assert_int_equal(ts3.data_calls, 1);

    /* A shared (exclusive) listener cannot be taken over. */
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(lfd >= 0);
    assert_int_equal(listen(lfd, 4), 0);
    assert_int_equal(fx_loop_add_fd(loop, lfd, FX_READ | FX_EXCLUSIVE, data_cb, &ts3), 0);
    assert_int_equal(fx_loop_take_fd(loop, lfd, FX_READ, data_cb, &ts3), -EINVAL);

    fx_loop_del_fd(loop, lfd);
    fx_loop_del_fd(loop, p[0]);
    fx_loop_del_fd(loop, sv[0]);
    close(lfd);
    close(p[0]);
    close(p[1]);
    close(sv[0]);
    close(sv[1]);
    fx_loop_free(loop);
}

static void test_now_monotonic(void **state)
{
    (void)state;
    uint64_t a = fx_now_ms();
    usleep(20 * 1000);
    uint64_t b = fx_now_ms();
    assert_true(b >= a + 19);
    assert_true(b < a + 2000);
}


/* ---- a listening socket shared by two loops (FX_EXCLUSIVE) ------------ */

struct sharestate {
    int accepted[2];
    int total_wanted;
    volatile int total;
    fx_loop *loops[2];
};

struct sharefd {
    struct sharestate *st;
    int which;
};

static void share_accept_cb(fx_loop *loop, int fd, unsigned events, void *data)
{
    struct sharefd *sf = data;
    int c;
    (void)loop;
    (void)events;
    while ((c = accept4(fd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
        close(c);
        sf->st->accepted[sf->which]++;
        if (__atomic_add_fetch(&sf->st->total, 1, __ATOMIC_SEQ_CST) == sf->st->total_wanted) {
            fx_loop_stop(sf->st->loops[0]);
            fx_loop_stop(sf->st->loops[1]);
        }
    }
}

static void *share_run(void *arg)
{
    fx_loop_run(arg);
    return NULL;
}

/* What the supervisor's worker threads do (HOST-500): each loop has its own
 * dup of one listening socket, added with EPOLLEXCLUSIVE; every connection
 * is accepted exactly once, and the fd cannot be modified afterwards. */
static void test_exclusive_shared_listener(void **state)
{
    struct sharestate st = { .total_wanted = 40 };
    struct sharefd sf[2] = { { &st, 0 }, { &st, 1 } };
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sa);
    pthread_t th[2];
    int lfd, fds[2];
    (void)state;

    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(lfd >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 64), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
    for (int i = 0; i < 2; i++) {
        st.loops[i] = fx_loop_new();
        fds[i] = fcntl(lfd, F_DUPFD_CLOEXEC, 3);
        assert_int_equal(fx_loop_add_fd(st.loops[i], fds[i], FX_READ | FX_EXCLUSIVE,
                                        share_accept_cb, &sf[i]), 0);
    }
    assert_int_equal(fx_loop_mod_fd(st.loops[0], fds[0], FX_READ | FX_WRITE), -EINVAL);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, share_run, st.loops[i]), 0);
    int cs[40];
    for (int i = 0; i < 40; i++) {
        cs[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_int_equal(connect(cs[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(st.accepted[0] + st.accepted[1], 40);
    for (int i = 0; i < 40; i++)
        close(cs[i]);
    for (int i = 0; i < 2; i++) {
        fx_loop_del_fd(st.loops[i], fds[i]);
        close(fds[i]);
        fx_loop_free(st.loops[i]);
    }
    close(lfd);
}

/* ---- poll spin --------------------------------------------------------- */

/* The first byte arrives at once; its callback starts a thread that writes
 * the second byte delay_ms later.  The counters are read in each callback. */
struct spinrun {
    fx_loop *loop;
    int pfd[2];
    unsigned delay_ms;
    int seen;
    uint64_t sleeps[2], hits[2];
    pthread_t writer;
};

static void *spin_writer(void *arg)
{
    struct spinrun *r = arg;
    usleep(r->delay_ms * 1000);
    assert_int_equal(write(r->pfd[1], "b", 1), 1);
    return NULL;
}

static void spin_read_cb(fx_loop *loop, int fd, unsigned events, void *data)
{
    struct spinrun *r = data;
    char c;
    (void)events;

    assert_int_equal(read(fd, &c, 1), 1);
    fx_loop_counters(loop, &r->sleeps[r->seen], &r->hits[r->seen]);
    if (r->seen++ == 0)
        assert_int_equal(pthread_create(&r->writer, NULL, spin_writer, r), 0);
    else
        fx_loop_stop(loop);
}

static void spin_run(struct spinrun *r, unsigned spin_us, unsigned delay_ms)
{
    memset(r, 0, sizeof(*r));
    r->delay_ms = delay_ms;
    r->loop = fx_loop_new();
    assert_int_equal(pipe2(r->pfd, O_CLOEXEC | O_NONBLOCK), 0);
    fx_loop_set_poll_spin(r->loop, spin_us);
    assert_int_equal(fx_loop_add_fd(r->loop, r->pfd[0], FX_READ, spin_read_cb, r), 0);
    assert_int_equal(write(r->pfd[1], "a", 1), 1);
    assert_int_equal(fx_loop_run(r->loop), 0);
    pthread_join(r->writer, NULL);
    assert_int_equal(r->seen, 2);
    fx_loop_del_fd(r->loop, r->pfd[0]);
    close(r->pfd[0]);
    close(r->pfd[1]);
    fx_loop_free(r->loop);
}

/* An event due within the spin is caught without sleeping; one due after
 * it is waited for asleep (the spin ends); without a spin the loop sleeps
 * at once. */
static void test_poll_spin(void **state)
{
    struct spinrun r;
    (void)state;

    spin_run(&r, 2000000, 20);       /* 2 s spin, byte after 20 ms */
    assert_int_equal(r.sleeps[1], r.sleeps[0]);
    assert_int_equal(r.hits[1], r.hits[0] + 1);

    spin_run(&r, 10000, 200);        /* 10 ms spin, byte after 200 ms */
    assert_int_equal(r.sleeps[1], r.sleeps[0] + 1);
    assert_int_equal(r.hits[1], r.hits[0]);

    spin_run(&r, 0, 20);
    assert_int_equal(r.sleeps[1], r.sleeps[0] + 1);
    assert_int_equal(r.hits[1], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defer_post_order),
        cmocka_unit_test(test_defer_before_run),
        cmocka_unit_test(test_cross_thread_post),
        cmocka_unit_test(test_stop_from_other_thread),
        cmocka_unit_test(test_timers_order_and_cancel),
        cmocka_unit_test(test_timer_rearm_zero),
        cmocka_unit_test(test_del_in_batch),
        cmocka_unit_test(test_mod_and_park),
        cmocka_unit_test(test_take_over),
        cmocka_unit_test(test_now_monotonic),
        cmocka_unit_test(test_exclusive_shared_listener),
        cmocka_unit_test(test_poll_spin),
    };
    return cmocka_run_group_tests_name("fxloop", tests, NULL, NULL);
}
