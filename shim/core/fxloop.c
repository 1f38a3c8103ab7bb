/*
 * fxloop.c - the epoll event loop (see fxloop.h).
 *
 * Owns per-loop state only: the epoll fd, the wake-up eventfd, the fd table,
 * the timer heap, the two task queues and the module slots (whose contents
 * belong to their modules; fx_loop_free calls their free function).
 * Nothing here is global.
 *
 * Stale events: every registration gets a generation number that travels in
 * epoll_event.data next to the fd.  An event fetched in a batch is dropped
 * if the fd has since been removed, or removed and re-added (new
 * generation), so a callback that closes another connection never causes a
 * call on a dead or recycled fd.
 */
#define _GNU_SOURCE
#include "fxloop.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define FX_LOOP_BATCH      128
#define FX_TASKQ_MIN       64
#define FX_WAKE_TOKEN      UINT64_MAX   /* epoll data of the eventfd */

struct fx_task {
    fx_task_cb cb;
    void *arg;
};

/* Growable ring: grows by doubling, never shrinks, so a steady state does
 * no allocation per task. */
struct fx_taskq {
    struct fx_task *v;
    size_t cap;     /* power of two, or 0 */
    size_t head;
    size_t n;
};

struct fx_io {
    fx_io_cb cb;
    void *data;
    uint32_t gen;
    unsigned events;      /* FX_READ|FX_WRITE wanted */
    unsigned char registered;
    unsigned char armed;  /* currently in the epoll set */
    unsigned char exclusive;  /* added with EPOLLEXCLUSIVE (FX_EXCLUSIVE) */
};

enum { FX_TIMER_FREE, FX_TIMER_ACTIVE, FX_TIMER_FIRING };

struct fx_timer {
    uint64_t due;
    uint64_t seq;         /* start order: ties on due fire FIFO */
    fx_task_cb cb;
    void *arg;
    size_t idx;           /* position in the heap while active */
    int state;
    fx_timer *next_free;
};

struct fx_loop {
    int epfd;
    int evfd;

    struct fx_io *io;     /* indexed by fd */
    int nio;
    uint32_t gen;

    struct fx_taskq deferq;

    pthread_mutex_t postlock;
    struct fx_taskq postq;     /* guarded by postlock */
    struct fx_taskq postrun;   /* loop thread: the batch being run */
    int wake_pending;          /* guarded by postlock */

    fx_timer **heap;
    size_t nheap;
    size_t capheap;
    uint64_t timer_seq;
    fx_timer *timer_free;

    atomic_int stop_req;
    atomic_int running;
    _Atomic pthread_t owner;

    uint64_t spin_ns;          /* fx_loop_set_poll_spin */
    /* fx_loop_counters: written by the loop thread only, read by any
     * (the statistics), so plain relaxed stores, no locked increments. */
    _Atomic uint64_t sleeps;
    _Atomic uint64_t spin_hits;

    void *slot[FX_LOOP_NSLOTS];            /* fx_loop_slot_set */
    void (*slot_free[FX_LOOP_NSLOTS])(void *);

    struct epoll_event events[FX_LOOP_BATCH];
};

/* ---- task queues ------------------------------------------------------ */

static int fx_taskq_push(struct fx_taskq *q, fx_task_cb cb, void *arg)
{
    if (q->n == q->cap) {
        size_t ncap = q->cap ? q->cap * 2 : FX_TASKQ_MIN;
        struct fx_task *nv = malloc(ncap * sizeof(*nv));
        if (nv == NULL)
            return -1;
        for (size_t i = 0; i < q->n; i++)
            nv[i] = q->v[(q->head + i) & (q->cap - 1)];
        free(q->v);
        q->v = nv;
        q->cap = ncap;
        q->head = 0;
    }
    q->v[(q->head + q->n) & (q->cap - 1)] = (struct fx_task){ cb, arg };
    q->n++;
    return 0;
}

static int fx_taskq_pop(struct fx_taskq *q, struct fx_task *out)
{
    if (q->n == 0)
        return 0;
    *out = q->v[q->head];
    q->head = (q->head + 1) & (q->cap - 1);
    q->n--;
    return 1;
}

static void fx_oom_abort(const char *what)
{
    /* No fx_log here: fxloop must stay usable without the logger. */
    static const char msg[] = "fxloop: out of memory in ";
    if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0 ||
        write(STDERR_FILENO, what, strlen(what)) < 0 ||
        write(STDERR_FILENO, "\n", 1) < 0) {
        /* nothing more we can do */
    }
    abort();
}

static void fx_loop_run_deferred(fx_loop *loop)
{
    struct fx_task t;
    while (fx_taskq_pop(&loop->deferq, &t))
        t.cb(t.arg);
}

/* ---- time and timers -------------------------------------------------- */

static uint64_t fx_clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t fx_now_ms(void)
{
    return fx_clock_ns(CLOCK_MONOTONIC) / 1000000u;
}

uint64_t fx_now_coarse_ms(void)
{
    return fx_clock_ns(CLOCK_MONOTONIC_COARSE) / 1000000u;
}

static int fx_timer_less(const fx_timer *a, const fx_timer *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void fx_heap_set(fx_loop *loop, size_t i, fx_timer *t)
{
    loop->heap[i] = t;
    t->idx = i;
}

static void fx_heap_up(fx_loop *loop, size_t i)
{
    fx_timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!fx_timer_less(t, loop->heap[parent]))
            break;
        fx_heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    fx_heap_set(loop, i, t);
}

static void fx_heap_down(fx_loop *loop, size_t i)
{
    fx_timer *t = loop->heap[i];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const fx_timer *best = t;
        if (l < loop->nheap && fx_timer_less(loop->heap[l], best)) {
            m = l;
            best = loop->heap[l];
        }
        if (r < loop->nheap && fx_timer_less(loop->heap[r], best))
            m = r;
        if (m == i)
            break;
        fx_heap_set(loop, i, loop->heap[m]);
        i = m;
    }
    fx_heap_set(loop, i, t);
}

static void fx_heap_remove(fx_loop *loop, size_t i)
{
    fx_timer *last = loop->heap[--loop->nheap];
    if (i == loop->nheap)
        return;
    fx_heap_set(loop, i, last);
    fx_heap_down(loop, i);
    fx_heap_up(loop, last->idx);
}

static void fx_timer_release(fx_loop *loop, fx_timer *t)
{
    t->state = FX_TIMER_FREE;
    t->cb = NULL;
    t->arg = NULL;
    t->next_free = loop->timer_free;
    loop->timer_free = t;
}

fx_timer *fx_timer_start(fx_loop *loop, uint64_t ms, fx_task_cb cb, void *arg)
{
    fx_timer *t;

    if (loop->nheap == loop->capheap) {
        size_t ncap = loop->capheap ? loop->capheap * 2 : 64;
        fx_timer **nh = realloc(loop->heap, ncap * sizeof(*nh));
        if (nh == NULL)
            return NULL;
        loop->heap = nh;
        loop->capheap = ncap;
    }
    t = loop->timer_free;
    if (t != NULL) {
        loop->timer_free = t->next_free;
    } else {
        t = malloc(sizeof(*t));
        if (t == NULL)
            return NULL;
    }
    uint64_t now = fx_now_ms();
    t->due = ms > UINT64_MAX - now ? UINT64_MAX : now + ms;
    t->seq = loop->timer_seq++;
    t->cb = cb;
    t->arg = arg;
    t->state = FX_TIMER_ACTIVE;
    t->next_free = NULL;
    loop->heap[loop->nheap] = t;
    t->idx = loop->nheap++;
    fx_heap_up(loop, t->idx);
    return t;
}

void fx_timer_cancel(fx_loop *loop, fx_timer *t)
{
    if (t == NULL || t->state != FX_TIMER_ACTIVE)
        return;
    fx_heap_remove(loop, t->idx);
    fx_timer_release(loop, t);
}

static int fx_loop_timeout(const fx_loop *loop)
{
    if (loop->deferq.n > 0)
        return 0;
    if (loop->nheap == 0)
        return -1;
    uint64_t now = fx_now_ms(), due = loop->heap[0]->due;
    if (due <= now)
        return 0;
    return due - now > INT_MAX ? INT_MAX : (int)(due - now);
}

static void fx_loop_run_timers(fx_loop *loop)
{
    uint64_t now = fx_now_ms();
    /* Timers started by the timers of this pass wait for the next one, so a
     * timer re-arming itself with 0 ms cannot starve I/O. */
    uint64_t limit = loop->timer_seq;

    while (loop->nheap > 0) {
        fx_timer *t = loop->heap[0];
        if (t->due > now || t->seq >= limit)
            break;
        fx_heap_remove(loop, 0);
        t->state = FX_TIMER_FIRING;
        t->cb(t->arg);
        fx_timer_release(loop, t);
        fx_loop_run_deferred(loop);
    }
}

/* ---- fds -------------------------------------------------------------- */

static uint32_t fx_to_epoll(unsigned events)
{
    return ((events & FX_READ) ? EPOLLIN : 0u) | ((events & FX_WRITE) ? EPOLLOUT : 0u);
}

static unsigned fx_from_epoll(uint32_t ev)
{
    return ((ev & (EPOLLIN | EPOLLPRI)) ? FX_READ : 0u) |
           ((ev & EPOLLOUT) ? FX_WRITE : 0u) |
           ((ev & EPOLLHUP) ? FX_HUP : 0u) |
           ((ev & EPOLLERR) ? FX_ERR : 0u);
}

static int fx_loop_grow_io(fx_loop *loop, int fd)
{
    int n = loop->nio ? loop->nio : 64;
    while (n <= fd) {
        if (n > INT_MAX / 2)
            return -ENOMEM;
        n *= 2;
    }
    struct fx_io *nio = realloc(loop->io, (size_t)n * sizeof(*nio));
    if (nio == NULL)
        return -ENOMEM;
    memset(nio + loop->nio, 0, (size_t)(n - loop->nio) * sizeof(*nio));
    loop->io = nio;
    loop->nio = n;
    return 0;
}

static int fx_loop_arm(fx_loop *loop, int fd, struct fx_io *io, unsigned events)
{
    struct epoll_event ev;
    int op;

    events &= FX_READ | FX_WRITE;
    if (events == 0) {
        if (io->armed) {
            /* ENOENT/EBADF only mean the kernel already forgot the fd. */
            epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
            io->armed = 0;
        }
        io->events = 0;
        return 0;
    }
    if (io->armed && io->events == events)
        return 0;
    op = io->armed ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    memset(&ev, 0, sizeof(ev));
    ev.events = fx_to_epoll(events);
    if (io->exclusive) {
        if (op != EPOLL_CTL_ADD)
            return -EINVAL;     /* the kernel refuses MOD of an exclusive fd */
        ev.events |= EPOLLEXCLUSIVE;
    }
    ev.data.u64 = ((uint64_t)io->gen << 32) | (uint32_t)fd;
    if (epoll_ctl(loop->epfd, op, fd, &ev) < 0)
        return -errno;
    io->armed = 1;
    io->events = events;
    return 0;
}

int fx_loop_add_fd(fx_loop *loop, int fd, unsigned events, fx_io_cb cb, void *data)
{
    int rc;

    if (fd < 0 || cb == NULL)
        return -EINVAL;
    if (fd >= loop->nio && (rc = fx_loop_grow_io(loop, fd)) < 0)
        return rc;
    struct fx_io *io = &loop->io[fd];
    if (io->registered)
        return -EEXIST;
    io->cb = cb;
    io->data = data;
    io->gen = ++loop->gen;
    io->events = 0;
    io->armed = 0;
    io->exclusive = (events & FX_EXCLUSIVE) && (events & FX_READ);
    rc = fx_loop_arm(loop, fd, io, events);
    if (rc < 0) {
        io->exclusive = 0;
        return rc;
    }
    io->registered = 1;
    return 0;
}

int fx_loop_mod_fd(fx_loop *loop, int fd, unsigned events)
{
    if (fd < 0 || fd >= loop->nio || !loop->io[fd].registered)
        return -ENOENT;
    return fx_loop_arm(loop, fd, &loop->io[fd], events);
}

int fx_loop_take_fd(fx_loop *loop, int fd, unsigned events, fx_io_cb cb, void *data)
{
    if (fd < 0 || fd >= loop->nio || !loop->io[fd].registered)
        return fx_loop_add_fd(loop, fd, events, cb, data);
    struct fx_io *io = &loop->io[fd];
    if (cb == NULL || io->exclusive || (events & FX_EXCLUSIVE))
        return -EINVAL;
    io->cb = cb;
    io->data = data;
    io->gen = ++loop->gen;
    /* The kernel holds the old generation in its event data: make the arm
     * below rewrite it even when the interest does not change. */
    io->events = 0;
    return fx_loop_arm(loop, fd, io, events);
}

void fx_loop_del_fd(fx_loop *loop, int fd)
{
    if (fd < 0 || fd >= loop->nio || !loop->io[fd].registered)
        return;
    fx_loop_arm(loop, fd, &loop->io[fd], 0);
    loop->io[fd] = (struct fx_io){ 0 };
}

void fx_loop_forget_fd(fx_loop *loop, int fd)
{
    if (fd < 0 || fd >= loop->nio || !loop->io[fd].registered)
        return;
    loop->io[fd] = (struct fx_io){ 0 };
}

/* ---- posting ---------------------------------------------------------- */

static void fx_loop_wake(fx_loop *loop)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is already huge: the loop is awake anyway. */
    while (write(loop->evfd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

void fx_loop_post(fx_loop *loop, fx_task_cb cb, void *arg)
{
    int wake;

    pthread_mutex_lock(&loop->postlock);
    if (fx_taskq_push(&loop->postq, cb, arg) < 0) {
        pthread_mutex_unlock(&loop->postlock);
        fx_oom_abort("fx_loop_post");
    }
    wake = !loop->wake_pending;
    loop->wake_pending = 1;
    pthread_mutex_unlock(&loop->postlock);
    if (wake)
        fx_loop_wake(loop);
}

void fx_loop_defer(fx_loop *loop, fx_task_cb cb, void *arg)
{
    if (fx_taskq_push(&loop->deferq, cb, arg) < 0)
        fx_oom_abort("fx_loop_defer");
}

static void fx_loop_run_posted(fx_loop *loop)
{
    uint64_t cnt;
    struct fx_task t;
    struct fx_taskq tmp;

    while (read(loop->evfd, &cnt, sizeof(cnt)) < 0 && errno == EINTR)
        ;
    /* Swap the queues so tasks run without the lock; tasks they post land
     * in the fresh queue and run on the next iteration, keeping FIFO. */
    pthread_mutex_lock(&loop->postlock);
    tmp = loop->postrun;
    loop->postrun = loop->postq;
    loop->postq = tmp;
    loop->wake_pending = 0;
    pthread_mutex_unlock(&loop->postlock);

    while (fx_taskq_pop(&loop->postrun, &t)) {
        t.cb(t.arg);
        fx_loop_run_deferred(loop);
    }
}

/* ---- life cycle ------------------------------------------------------- */

fx_loop *fx_loop_new(void)
{
    struct epoll_event ev;
    int saved;
    fx_loop *loop = calloc(1, sizeof(*loop));

    if (loop == NULL)
        return NULL;
    loop->epfd = -1;
    loop->evfd = -1;
    if (pthread_mutex_init(&loop->postlock, NULL) != 0) {
        free(loop);
        errno = ENOMEM;
        return NULL;
    }
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0)
        goto fail;
    loop->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->evfd < 0)
        goto fail;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.u64 = FX_WAKE_TOKEN;
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->evfd, &ev) < 0)
        goto fail;
    atomic_init(&loop->stop_req, 0);
    atomic_init(&loop->running, 0);
    return loop;

fail:
    saved = errno;
    fx_loop_free(loop);
    errno = saved;
    return NULL;
}

void fx_loop_free(fx_loop *loop)
{
    if (loop == NULL)
        return;
    if (loop->epfd >= 0)
        close(loop->epfd);
    if (loop->evfd >= 0)
        close(loop->evfd);
    for (size_t i = 0; i < loop->nheap; i++)
        free(loop->heap[i]);
    while (loop->timer_free != NULL) {
        fx_timer *t = loop->timer_free;
        loop->timer_free = t->next_free;
        free(t);
    }
    for (int i = 0; i < FX_LOOP_NSLOTS; i++)
        if (loop->slot[i] != NULL && loop->slot_free[i] != NULL)
            loop->slot_free[i](loop->slot[i]);
    free(loop->heap);
    free(loop->io);
    free(loop->deferq.v);
    free(loop->postq.v);
    free(loop->postrun.v);
    pthread_mutex_destroy(&loop->postlock);
    free(loop);
}

static void fx_loop_dispatch(fx_loop *loop, const struct epoll_event *e)
{
    int fd;
    uint32_t gen;
    unsigned ev;
    struct fx_io *io;

    if (e->data.u64 == FX_WAKE_TOKEN) {
        fx_loop_run_posted(loop);
        return;
    }
    fd = (int)(uint32_t)e->data.u64;
    gen = (uint32_t)(e->data.u64 >> 32);
    if (fd >= loop->nio)
        return;
    io = &loop->io[fd];
    if (!io->registered || !io->armed || io->gen != gen)
        return;
    /* Interest may have shrunk earlier in this batch. */
    ev = fx_from_epoll(e->events) & (io->events | FX_HUP | FX_ERR);
    if (ev == 0)
        return;
    io->cb(loop, fd, ev, io->data);
    fx_loop_run_deferred(loop);
}

static void fx_counter_bump(_Atomic uint64_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* After a batch that had work, the next event is usually microseconds
 * away: the peer's answer to what the batch just sent.  Blocking for it
 * costs a context switch and, when the CPU then idles, a wake-up
 * interrupt (a VM exit under a hypervisor), which on a loaded machine is
 * idle time nobody gets.  So poll without sleeping for at most spin_ns
 * first.  sched_yield between polls hands the CPU to any thread that can
 * run here, so the spin only takes time nobody else wants.  Returns what
 * epoll_wait returned, 0 if the spin found nothing. */
static int fx_loop_spin(fx_loop *loop)
{
    uint64_t start = fx_clock_ns(CLOCK_MONOTONIC);

    for (;;) {
        int n = epoll_wait(loop->epfd, loop->events, FX_LOOP_BATCH, 0);
        if (n != 0) {
            if (n > 0)
                fx_counter_bump(&loop->spin_hits);
            return n;
        }
        if (fx_clock_ns(CLOCK_MONOTONIC) - start >= loop->spin_ns)
            return 0;
        sched_yield();
    }
}

int fx_loop_run(fx_loop *loop)
{
    int rc = 0, busy = 0;

    atomic_store(&loop->owner, pthread_self());
    atomic_store(&loop->running, 1);

    fx_loop_run_deferred(loop);
    while (!atomic_load(&loop->stop_req)) {
        int timeout = fx_loop_timeout(loop), n = 0;
        if (busy && loop->spin_ns && timeout != 0 && (n = fx_loop_spin(loop)) == 0)
            timeout = fx_loop_timeout(loop);    /* the spin took some of it */
        if (n == 0) {
            if (timeout != 0)
                fx_counter_bump(&loop->sleeps);
            n = epoll_wait(loop->epfd, loop->events, FX_LOOP_BATCH, timeout);
        }
        busy = n > 0;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            break;
        }
        for (int i = 0; i < n; i++)
            fx_loop_dispatch(loop, &loop->events[i]);
        fx_loop_run_timers(loop);
    }

    atomic_store(&loop->stop_req, 0);
    atomic_store(&loop->running, 0);
    return rc;
}

void fx_loop_set_poll_spin(fx_loop *loop, unsigned usec)
{
    loop->spin_ns = (uint64_t)usec * 1000u;
}

void fx_loop_counters(const fx_loop *loop, uint64_t *sleeps, uint64_t *spin_hits)
{
    *sleeps = atomic_load_explicit(&loop->sleeps, memory_order_relaxed);
    *spin_hits = atomic_load_explicit(&loop->spin_hits, memory_order_relaxed);
}

void fx_loop_stop(fx_loop *loop)
{
    atomic_store(&loop->stop_req, 1);
    fx_loop_wake(loop);
}

void *fx_loop_slot_get(const fx_loop *loop, int slot)
{
    return slot >= 0 && slot < FX_LOOP_NSLOTS ? loop->slot[slot] : NULL;
}

void fx_loop_slot_set(fx_loop *loop, int slot, void *ptr, void (*free_fn)(void *))
{
    if (slot < 0 || slot >= FX_LOOP_NSLOTS)
        return;
    loop->slot[slot] = ptr;
    loop->slot_free[slot] = free_fn;
}

int fx_loop_in_thread(const fx_loop *loop)
{
    return atomic_load(&loop->running) && pthread_equal(atomic_load(&loop->owner), pthread_self());
}
