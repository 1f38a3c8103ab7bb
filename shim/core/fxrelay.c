/*
 * fxrelay.c - the no-filter data pump (see fxrelay.h).
 *
 * Owns one fx_relay per proxied connection: the two fds, their loop
 * registrations, and per direction a heap buffer or a pipe borrowed from
 * the loop's pipe pool, never both holding bytes at once; and per loop
 * that pool (fx_pipe_pool, in the loop's FX_LOOP_SLOT_RELAY).
 * Direction 0 moves a -> b, direction 1 moves b -> a; fd[i] is the source
 * of direction i and the destination of direction 1 - i.
 *
 * Pipe pool: a direction takes a pipe just before it splices in (only when
 * its copy buffer is empty) and gives it back at the end of the pump pass
 * that emptied it, so an idle relay holds no pipe.  At most cap pipes exist
 * per loop (idle + lent); past that, or when pipe2 fails (fd limit), the
 * chunk goes through the copy buffer instead.  A pipe that still holds
 * bytes is never given back: when a relay ends with bytes in flight, the
 * pipe is closed.  The pool also keeps up to FX_RELAY_BUF_CACHE drained
 * copy buffers of the default size.  Loop thread only, so no lock.
 */
#define _GNU_SOURCE
#include "fxrelay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fxnet.h"

/* Rounds of read+write per callback before yielding to other fds; the
 * loop is level-triggered, so unfinished work simply comes back. */
#define FX_RELAY_ROUNDS 16
/* Copy buffers kept per loop (1 MiB at the default size). */
#define FX_RELAY_BUF_CACHE 16

struct fx_pool_pipe {
    int r, w;
    unsigned size;        /* F_GETPIPE_SZ, kept to spare a syscall per take */
};

typedef struct fx_pipe_pool {
    unsigned cap;         /* most pipes in existence: idle + lent */
    unsigned total;       /* in existence */
    unsigned nidle;
    unsigned idle_alloc;
    struct fx_pool_pipe *idle;
    unsigned long long takes, made, misses;
    /* Copy buffers of FX_RELAY_DEFAULT_BUFSIZE given back by drained
     * directions: a request/response relay copies (splice_min), and a
     * 64 KiB malloc + free per exchange was a quarter of the worker's own
     * instructions per short connection (callgrind). */
    char *bufs[FX_RELAY_BUF_CACHE];
    unsigned nbufs;
} fx_pipe_pool;

struct fx_dir {
    int src;
    int dst;
    /* copy mode */
    char *buf;
    size_t off;
    size_t len;
    /* splice mode: a pool pipe is held (pipe_r >= 0) */
    int want_splice;  /* FX_RELAY_SPLICE and the kernel has not refused it */
    int splice;
    int pipe_r;
    int pipe_w;
    unsigned pipesize;
    size_t piped;
    size_t pipecap;
    int out_proven;   /* a splice out of the pipe into dst has worked */
    int stalled;      /* splice-in said EAGAIN with data in the pipe: the
                         pipe may be full before pipecap (it counts pages,
                         not bytes), so wait for output progress */
    int bulk;         /* splice the next chunk (see fx_relay_opts.splice_min) */
    unsigned short_splices;   /* in a row, fewer than splice_min bytes */
    int eof;          /* src gave EOF */
    int done;         /* EOF passed on: dst is shut for writing */
    unsigned long long bytes;
};

struct fx_relay {
    fx_loop *loop;
    fx_pipe_pool *pool;   /* the loop's; NULL only if it could not be made */
    fx_pipe_pool *bufcache;   /* pool, when bufsize is the size it caches; else NULL */
    int splice;           /* FX_RELAY_SPLICE, no tap, and a pool */
    int fd[2];
    unsigned interest[2];
    struct fx_dir dir[2];
    size_t bufsize;
    size_t pipesize;  /* wanted; pipes get min(this, 1 MiB, what the kernel grants) */
    size_t splice_min;
    fx_relay_done_cb done;
    void *arg;
    fx_relay_tap_cb tap;
    void *tap_arg;
    int ending;
    fx_relay_stats stats;
};

/* ---- the per-loop pipe pool ------------------------------------------ */

static void fx_pool_close(int r, int w)
{
    close(r);
    close(w);
}

static void fx_pipe_pool_free(void *arg)
{
    fx_pipe_pool *pool = arg;
    /* Lent pipes belong to their relays, which cannot outlive the loop. */
    for (unsigned i = 0; i < pool->nidle; i++)
        fx_pool_close(pool->idle[i].r, pool->idle[i].w);
    for (unsigned i = 0; i < pool->nbufs; i++)
        free(pool->bufs[i]);
    free(pool->idle);
    free(pool);
}

static int fx_pipe_pool_reserve(fx_pipe_pool *pool, unsigned n)
{
    if (n <= pool->idle_alloc)
        return 0;
    struct fx_pool_pipe *v = realloc(pool->idle, (size_t)n * sizeof(*v));
    if (v == NULL)
        return -ENOMEM;
    pool->idle = v;
    pool->idle_alloc = n;
    return 0;
}

static fx_pipe_pool *fx_pipe_pool_of(fx_loop *loop)
{
    fx_pipe_pool *pool = fx_loop_slot_get(loop, FX_LOOP_SLOT_RELAY);
    if (pool != NULL)
        return pool;
    if ((pool = calloc(1, sizeof(*pool))) == NULL)
        return NULL;
    pool->cap = FX_RELAY_PIPE_POOL_CAP;
    if (fx_pipe_pool_reserve(pool, pool->cap) < 0) {
        free(pool);
        return NULL;
    }
    fx_loop_slot_set(loop, FX_LOOP_SLOT_RELAY, pool, fx_pipe_pool_free);
    return pool;
}

int fx_relay_pool_set_cap(fx_loop *loop, unsigned cap)
{
    fx_pipe_pool *pool = fx_pipe_pool_of(loop);
    if (pool == NULL || fx_pipe_pool_reserve(pool, cap) < 0)
        return -ENOMEM;
    pool->cap = cap;
    while (pool->nidle > 0 && pool->total > cap) {
        pool->nidle--;
        fx_pool_close(pool->idle[pool->nidle].r, pool->idle[pool->nidle].w);
        pool->total--;
    }
    return 0;
}

void fx_relay_pool_get_stats(fx_loop *loop, fx_relay_pool_stats *st)
{
    const fx_pipe_pool *pool = fx_loop_slot_get(loop, FX_LOOP_SLOT_RELAY);
    memset(st, 0, sizeof(*st));
    if (pool == NULL) {
        st->cap = FX_RELAY_PIPE_POOL_CAP;
        return;
    }
    st->cap = pool->cap;
    st->pipes = pool->total;
    st->idle = pool->nidle;
    st->lent = pool->total - pool->nidle;
    st->takes = pool->takes;
    st->made = pool->made;
    st->misses = pool->misses;
}

/* Until dst has taken a splice, keep the pipe within bufsize so that an
 * unsplice (the kernel refusing splice into dst) always fits the buffer. */
static void fx_dir_set_pipecap(const fx_relay *r, struct fx_dir *d)
{
    size_t cap = d->out_proven ? r->pipesize : r->bufsize;
    d->pipecap = d->pipesize < cap ? d->pipesize : cap;
}

/* Lend d an empty pipe: an idle one, else a new one while under the cap.
 * 0, or -1: none (copy mode for this chunk). */
static int fx_dir_take_pipe(fx_relay *r, struct fx_dir *d)
{
    fx_pipe_pool *pool = r->pool;
    struct fx_pool_pipe p;

    if (pool->nidle > 0) {
        p = pool->idle[--pool->nidle];
    } else {
        int fds[2], sz;
        if (pool->total >= pool->cap || pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
            pool->misses++;
            return -1;
        }
        sz = fcntl(fds[1], F_GETPIPE_SZ);
        p = (struct fx_pool_pipe){ fds[0], fds[1], sz > 0 ? (unsigned)sz : 4096u };
        pool->total++;
        pool->made++;
    }
    pool->takes++;
    if (r->pipesize > p.size && p.size < (1u << 20)) {
        /* Up to 1 MiB, the default pipe-max-size; the pipe keeps its size
         * in the pool.  Refused (pipe-user-pages limits): the size it has. */
        int sz = fcntl(p.w, F_SETPIPE_SZ, (int)(r->pipesize > (1u << 20) ? (1u << 20) : r->pipesize));
        if (sz > 0)
            p.size = (unsigned)sz;
    }
    d->pipe_r = p.r;
    d->pipe_w = p.w;
    d->pipesize = p.size;
    fx_dir_set_pipecap(r, d);
    d->piped = 0;
    d->stalled = 0;
    d->splice = 1;
    return 0;
}

/* Give d's pipe back, or close it if it may hold bytes (or its state is
 * unknown after an error): bytes of one connection must never reach
 * another. */
static void fx_dir_release_pipe(fx_relay *r, struct fx_dir *d, int reusable)
{
    fx_pipe_pool *pool = r->pool;

    if (d->pipe_r < 0)
        return;
    if (reusable && d->piped == 0 && pool->total <= pool->cap && pool->nidle < pool->idle_alloc) {
        pool->idle[pool->nidle++] = (struct fx_pool_pipe){ d->pipe_r, d->pipe_w, d->pipesize };
    } else {
        fx_pool_close(d->pipe_r, d->pipe_w);
        pool->total--;
    }
    d->pipe_r = d->pipe_w = -1;
    d->piped = 0;
    d->splice = 0;
    d->stalled = 0;
}

/* A copy buffer of r->bufsize bytes: from the loop's cache when it is the
 * default size. Its old bytes are never read: only what recv puts there
 * is sent. */
static char *fx_buf_get(fx_relay *r)
{
    fx_pipe_pool *pool = r->bufcache;
    if (pool != NULL && pool->nbufs > 0)
        return pool->bufs[--pool->nbufs];
    return malloc(r->bufsize);
}

static void fx_buf_put(fx_relay *r, char *buf)
{
    fx_pipe_pool *pool = r->bufcache;
    if (pool != NULL && buf != NULL && pool->nbufs < FX_RELAY_BUF_CACHE) {
        pool->bufs[pool->nbufs++] = buf;
        return;
    }
    free(buf);
}

/* ---- directions ------------------------------------------------------- */

static int fx_dir_pending(const struct fx_dir *d)
{
    return d->len > 0 || d->piped > 0;
}

static int fx_dir_room(const fx_relay *r, const struct fx_dir *d)
{
    if (d->splice)
        return !d->stalled && d->piped < d->pipecap;
    return d->len < r->bufsize;
}

/* The kernel refused splice for this direction: switch it to copy mode
 * for good, keeping the bytes already in the pipe (until dst has taken a
 * splice, pipecap <= bufsize, so they fit; the buffer is empty while a
 * pipe is held). */
static int fx_dir_unsplice(fx_relay *r, struct fx_dir *d)
{
    d->want_splice = 0;
    if (d->piped > r->bufsize) {
        /* Only after dst took splices (pipecap grew past bufsize) and then
         * refused one: no kernel does that for a socket; end the relay
         * rather than drop or reorder bytes. */
        fx_dir_release_pipe(r, d, 0);
        return -EIO;
    }
    if (d->piped > 0) {
        if (d->buf == NULL && (d->buf = fx_buf_get(r)) == NULL) {
            fx_dir_release_pipe(r, d, 0);
            return -ENOMEM;
        }
        d->off = 0;
        d->len = 0;
        while (d->piped > 0) {
            ssize_t n = read(d->pipe_r, d->buf + d->len, d->piped);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                int rc = n < 0 ? -errno : -EIO;
                fx_dir_release_pipe(r, d, 0);
                return rc;
            }
            d->len += (size_t)n;
            d->piped -= (size_t)n;
        }
    }
    fx_dir_release_pipe(r, d, 1);
    return 0;
}

/* 1: moved bytes, 0: would block, <0: -errno. */
static int fx_dir_flush(fx_relay *r, struct fx_dir *d)
{
    if (d->splice && d->piped > 0) {
        ssize_t n;
        do {
            n = splice(d->pipe_r, NULL, d->dst, NULL, d->piped,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        } while (n < 0 && errno == EINTR);
        if (n > 0) {
            d->piped -= (size_t)n;
            d->bytes += (unsigned long long)n;
            d->stalled = 0;
            if (!d->out_proven) {
                d->out_proven = 1;      /* dst takes splices: the whole pipe may be used */
                fx_dir_set_pipecap(r, d);
            }
            return 1;
        }
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n == 0 || errno == EINVAL) {
            int rc = fx_dir_unsplice(r, d);
            if (rc < 0)
                return rc;
            /* fall through to copy mode */
        } else {
            return -errno;
        }
    }
    if (d->len > 0) {
        long n = fx_send(d->dst, d->buf + d->off, d->len);
        if (n == -EAGAIN)
            return 0;
        if (n < 0 && r->tap)
            r->tap(r->tap_arg, 1 - (int)(d - r->dir), NULL, n);
        if (n < 0)
            return (int)n;
        d->off += (size_t)n;
        d->len -= (size_t)n;
        d->bytes += (unsigned long long)n;
        if (d->len == 0)
            d->off = 0;
        return 1;
    }
    return 0;
}

/* 1: read bytes or EOF, 2: read fewer bytes than asked (the socket had no
 * more a moment ago), 0: would block, <0: -errno. */
static int fx_dir_fill(fx_relay *r, struct fx_dir *d)
{
    /* Only with an empty copy buffer: bytes leave in the order they came. */
    if (!d->splice && d->want_splice && d->bulk && d->len == 0)
        fx_dir_take_pipe(r, d);     /* none: this chunk is copied */
    if (d->splice) {
        ssize_t n;
        size_t want = d->pipecap - d->piped;
        do {
            n = splice(d->src, NULL, d->pipe_w, NULL, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        } while (n < 0 && errno == EINTR);
        if (n > 0) {
            d->piped += (size_t)n;
            if (r->splice_min && (size_t)n < r->splice_min) {
                /* Copy again once the pipe is empty and given back. */
                if (++d->short_splices >= FX_RELAY_SHORT_SPLICES)
                    d->bulk = 0;
            } else {
                d->short_splices = 0;
            }
            return (size_t)n < want ? 2 : 1;
        }
        if (n == 0) {
            d->eof = 1;
            return 1;
        }
        if (errno == EAGAIN) {
            if (d->piped > 0)
                d->stalled = 1;
            return 0;
        }
        if (errno != EINVAL)
            return -errno;
        int rc = fx_dir_unsplice(r, d);
        if (rc < 0)
            return rc;
    }

    if (d->buf == NULL) {
        d->buf = fx_buf_get(r);
        if (d->buf == NULL)
            return -ENOMEM;
        d->off = d->len = 0;
    }
    if (d->off + d->len == r->bufsize && d->off > 0) {
        memmove(d->buf, d->buf + d->off, d->len);
        d->off = 0;
    }
    size_t room = r->bufsize - (d->off + d->len);
    if (room == 0)
        return 0;
    long n = fx_recv(d->src, d->buf + d->off + d->len, room);
    if (n == -EAGAIN)
        return 0;
    if (r->tap)
        r->tap(r->tap_arg, (int)(d - r->dir), n > 0 ? d->buf + d->off + d->len : NULL, n);
    if (n < 0)
        return (int)n;
    if (n == 0)
        d->eof = 1;
    d->len += (size_t)n;
    if (n > 0 && ((size_t)n >= r->splice_min || (size_t)n == room)) {
        d->bulk = 1;     /* bulk traffic: the next chunk goes through a pipe */
        d->short_splices = 0;
    }
    return n > 0 && (size_t)n < room ? 2 : 1;
}

/* other: the opposite direction.  A short read ends the reading of this
 * pass: the socket was empty a moment ago, and as the loop is
 * level-triggered, bytes (or EOF) that come later bring us back; this
 * spares the read that would only say EAGAIN, one syscall per chunk. */
static int fx_dir_pump(fx_relay *r, struct fx_dir *d, const struct fx_dir *other)
{
    int drained = 0;

    for (int round = 0; round < FX_RELAY_ROUNDS; round++) {
        int progress = 0, rc;
        if (fx_dir_pending(d)) {
            if ((rc = fx_dir_flush(r, d)) < 0)
                return rc;
            progress |= rc;
        }
        if (!d->eof && !drained && fx_dir_room(r, d)) {
            if ((rc = fx_dir_fill(r, d)) < 0)
                return rc;
            if (rc == 2)
                drained = 1;
            progress |= rc != 0;
        }
        if (!progress)
            break;
    }
    if (d->eof && !fx_dir_pending(d) && !d->done) {
        /* If the other direction has ended too, the relay ends now and
         * its close() sends the FIN (nothing is left unread on dst: its
         * EOF was read), so no shutdown is needed. */
        if (!other->done) {
            int rc = fx_shutdown_write(d->dst);
            if (rc < 0)
                return rc;
        }
        d->done = 1;
    }
    /* An idle connection should cost no buffer memory, and no pipe. */
    if (d->splice && d->piped == 0)
        fx_dir_release_pipe(r, d, 1);
    if (d->buf != NULL && d->len == 0) {
        fx_buf_put(r, d->buf);
        d->buf = NULL;
        d->off = 0;
    }
    return 0;
}

static void fx_relay_finish_cb(void *arg)
{
    fx_relay *r = arg;
    r->stats.bytes_ab = r->dir[0].bytes;
    r->stats.bytes_ba = r->dir[1].bytes;
    r->done(r->arg, &r->stats);
    free(r);
}

/* The single exit of a relay: frees everything but the struct, which lives
 * until the deferred done callback, so fx_relay_abort stays a safe no-op
 * in between. */
static void fx_relay_end(fx_relay *r, int abort, int err)
{
    if (r->ending)
        return;
    r->ending = 1;
    r->stats.aborted = abort;
    r->stats.error = err;
    for (int i = 0; i < 2; i++) {
        /* Closed right below and never duplicated: the close takes it out
         * of the epoll set, no epoll_ctl needed. */
        fx_loop_forget_fd(r->loop, r->fd[i]);
        if (abort)
            fx_close_abort(r->fd[i]);
        else
            close(r->fd[i]);
        r->fd[i] = -1;
        fx_dir_release_pipe(r, &r->dir[i], 1);   /* closed if not empty */
        fx_buf_put(r, r->dir[i].buf);
        r->dir[i].buf = NULL;
    }
    fx_loop_defer(r->loop, fx_relay_finish_cb, r);
}

static int fx_relay_update(fx_relay *r)
{
    for (int i = 0; i < 2; i++) {
        const struct fx_dir *out = &r->dir[i], *in = &r->dir[1 - i];
        unsigned ev = 0;
        if (!out->eof && fx_dir_room(r, out))
            ev |= FX_READ;
        if (fx_dir_pending(in))
            ev |= FX_WRITE;
        if (ev != r->interest[i]) {
            int rc = fx_loop_mod_fd(r->loop, r->fd[i], ev);
            if (rc < 0)
                return rc;
            r->interest[i] = ev;
        }
    }
    return 0;
}

static void fx_relay_io(fx_loop *loop, int fd, unsigned events, void *data)
{
    fx_relay *r = data;
    int i = (fd == r->fd[0]) ? 0 : 1;
    int rc;

    (void)loop;
    if (events & FX_ERR) {
        rc = fx_sock_error(fd);
        if (rc != 0) {
            if (r->tap)
                r->tap(r->tap_arg, i, NULL, rc > 0 ? -rc : rc);
            fx_relay_end(r, 1, rc > 0 ? rc : -rc);
            return;
        }
    }
    if (events & (FX_READ | FX_HUP | FX_ERR)) {
        if ((rc = fx_dir_pump(r, &r->dir[i], &r->dir[1 - i])) < 0)
            goto fail;
    }
    if (events & (FX_WRITE | FX_HUP | FX_ERR)) {
        if ((rc = fx_dir_pump(r, &r->dir[1 - i], &r->dir[i])) < 0)
            goto fail;
    }
    if (r->dir[0].done && r->dir[1].done) {
        fx_relay_end(r, 0, 0);
        return;
    }
    if ((rc = fx_relay_update(r)) < 0)
        goto fail;
    return;

fail:
    fx_relay_end(r, 1, -rc);
}

/* No pipe yet: fx_dir_fill borrows one from the pool when bytes come. */
static void fx_dir_init(fx_relay *r, struct fx_dir *d, int src, int dst)
{
    memset(d, 0, sizeof(*d));
    d->src = src;
    d->dst = dst;
    d->pipe_r = d->pipe_w = -1;
    d->want_splice = r->splice;
    d->bulk = r->splice_min == 0;
}

static int fx_set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0))
        return -1;
    return 0;
}

fx_relay *fx_relay_start_opts(fx_loop *loop, int fd_a, int fd_b,
                              const fx_relay_opts *opts,
                              fx_relay_done_cb done, void *arg)
{
    fx_relay *r = NULL;
    int saved, added = 0;
    /* A tap sees every byte: no splice, which would keep them in the kernel. */
    int want_splice = opts != NULL && (opts->flags & FX_RELAY_SPLICE) && !opts->tap;

    if (loop == NULL || done == NULL || fd_a < 0 || fd_b < 0 || fd_a == fd_b) {
        errno = EINVAL;
        return NULL;
    }
    if (!(opts != NULL && (opts->flags & FX_RELAY_NONBLOCKING)) &&
        (fx_set_nonblock(fd_a) < 0 || fx_set_nonblock(fd_b) < 0))
        return NULL;
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->loop = loop;
    r->fd[0] = fd_a;
    r->fd[1] = fd_b;
    r->bufsize = (opts != NULL && opts->bufsize > 0) ? opts->bufsize : FX_RELAY_DEFAULT_BUFSIZE;
    r->splice_min = opts != NULL ? opts->splice_min : 0;
    r->pipesize = (opts != NULL && opts->pipesize > 0) ? opts->pipesize : r->bufsize;
    r->done = done;
    r->arg = arg;
    r->tap = opts != NULL ? opts->tap : NULL;
    r->tap_arg = opts != NULL ? opts->tap_arg : NULL;
    /* The loop's pool also caches copy buffers, so every relay uses it.
     * No pool (out of memory): copy mode with malloc still works. */
    r->pool = fx_pipe_pool_of(loop);
    r->splice = want_splice && r->pool != NULL;
    r->bufcache = r->bufsize == FX_RELAY_DEFAULT_BUFSIZE ? r->pool : NULL;
    fx_dir_init(r, &r->dir[0], fd_a, fd_b);
    fx_dir_init(r, &r->dir[1], fd_b, fd_a);

    for (added = 0; added < 2; added++) {
        /* take, not add: the connecting side may still be registered by
         * its connect watch (one MOD instead of a del + add). */
        int rc = fx_loop_take_fd(loop, r->fd[added], FX_READ, fx_relay_io, r);
        if (rc < 0) {
            errno = -rc;
            goto fail;
        }
        r->interest[added] = FX_READ;
    }
    return r;

fail:
    saved = errno;
    while (added-- > 0)
        fx_loop_del_fd(loop, r->fd[added]);
    free(r);
    errno = saved;
    return NULL;
}

fx_relay *fx_relay_start(fx_loop *loop, int fd_a, int fd_b, unsigned flags,
                         fx_relay_done_cb done, void *arg)
{
    fx_relay_opts opts = { .flags = flags };
    return fx_relay_start_opts(loop, fd_a, fd_b, &opts, done, arg);
}

void fx_relay_abort(fx_relay *r)
{
    if (r != NULL)
        fx_relay_end(r, 1, 0);
}

void fx_relay_bytes(const fx_relay *relay, unsigned long long *ab, unsigned long long *ba)
{
    *ab = relay->dir[0].bytes;
    *ba = relay->dir[1].bytes;
}
