/*
 * fxrelay.c - the no-filter data pump (see fxrelay.h).
 *
 * Owns one fx_relay per proxied connection: the two fds, their loop
 * registrations, and per direction either a heap buffer or a pipe.
 * Direction 0 moves a -> b, direction 1 moves b -> a; fd[i] is the source
 * of direction i and the destination of direction 1 - i.
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

struct fx_dir {
    int src;
    int dst;
    /* copy mode */
    char *buf;
    size_t off;
    size_t len;
    /* splice mode */
    int splice;
    int pipe_r;
    int pipe_w;
    size_t piped;
    size_t pipecap;
    int stalled;      /* splice-in said EAGAIN with data in the pipe: the
                         pipe may be full before pipecap (it counts pages,
                         not bytes), so wait for output progress */
    int eof;          /* src gave EOF */
    int done;         /* EOF passed on: dst is shut for writing */
    unsigned long long bytes;
};

struct fx_relay {
    fx_loop *loop;
    int fd[2];
    unsigned interest[2];
    struct fx_dir dir[2];
    size_t bufsize;
    fx_relay_done_cb done;
    void *arg;
    int ending;
    fx_relay_stats stats;
};

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

static void fx_dir_close_pipe(struct fx_dir *d)
{
    if (d->pipe_r >= 0)
        close(d->pipe_r);
    if (d->pipe_w >= 0)
        close(d->pipe_w);
    d->pipe_r = d->pipe_w = -1;
    d->splice = 0;
    d->stalled = 0;
}

/* Switch a direction from splice to copy mode, keeping the bytes already
 * in the pipe (pipecap <= bufsize, so they fit). */
static int fx_dir_unsplice(fx_relay *r, struct fx_dir *d)
{
    if (d->piped > 0) {
        if (d->buf == NULL && (d->buf = malloc(r->bufsize)) == NULL)
            return -ENOMEM;
        d->off = 0;
        d->len = 0;
        while (d->piped > 0) {
            ssize_t n = read(d->pipe_r, d->buf + d->len, d->piped);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return n < 0 ? -errno : -EIO;
            d->len += (size_t)n;
            d->piped -= (size_t)n;
        }
    }
    fx_dir_close_pipe(d);
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

/* 1: read bytes or EOF, 0: would block, <0: -errno. */
static int fx_dir_fill(fx_relay *r, struct fx_dir *d)
{
    if (d->splice) {
        ssize_t n;
        do {
            n = splice(d->src, NULL, d->pipe_w, NULL, d->pipecap - d->piped,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        } while (n < 0 && errno == EINTR);
        if (n > 0) {
            d->piped += (size_t)n;
            return 1;
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
        d->buf = malloc(r->bufsize);
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
    if (n < 0)
        return (int)n;
    if (n == 0)
        d->eof = 1;
    d->len += (size_t)n;
    return 1;
}

static int fx_dir_pump(fx_relay *r, struct fx_dir *d)
{
    for (int round = 0; round < FX_RELAY_ROUNDS; round++) {
        int progress = 0, rc;
        if (fx_dir_pending(d)) {
            if ((rc = fx_dir_flush(r, d)) < 0)
                return rc;
            progress |= rc;
        }
        if (!d->eof && fx_dir_room(r, d)) {
            if ((rc = fx_dir_fill(r, d)) < 0)
                return rc;
            progress |= rc;
        }
        if (!progress)
            break;
    }
    if (d->eof && !fx_dir_pending(d) && !d->done) {
        int rc = fx_shutdown_write(d->dst);
        if (rc < 0)
            return rc;
        d->done = 1;
    }
    /* An idle connection should cost no buffer memory. */
    if (d->buf != NULL && d->len == 0) {
        free(d->buf);
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
        fx_loop_del_fd(r->loop, r->fd[i]);
        if (abort)
            fx_close_abort(r->fd[i]);
        else
            close(r->fd[i]);
        r->fd[i] = -1;
        fx_dir_close_pipe(&r->dir[i]);
        free(r->dir[i].buf);
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
            fx_relay_end(r, 1, rc > 0 ? rc : -rc);
            return;
        }
    }
    if (events & (FX_READ | FX_HUP | FX_ERR)) {
        if ((rc = fx_dir_pump(r, &r->dir[i])) < 0)
            goto fail;
    }
    if (events & (FX_WRITE | FX_HUP | FX_ERR)) {
        if ((rc = fx_dir_pump(r, &r->dir[1 - i])) < 0)
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

static void fx_dir_init(fx_relay *r, struct fx_dir *d, int src, int dst, int want_splice)
{
    int p[2];

    memset(d, 0, sizeof(*d));
    d->src = src;
    d->dst = dst;
    d->pipe_r = d->pipe_w = -1;
    if (!want_splice || pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0)
        return;   /* no pipe (fd limit?): copy mode still works */
    d->pipe_r = p[0];
    d->pipe_w = p[1];
    if (r->bufsize > 65536)
        fcntl(p[1], F_SETPIPE_SZ, (int)(r->bufsize > (1u << 20) ? (1u << 20) : r->bufsize));
    int sz = fcntl(p[1], F_GETPIPE_SZ);
    d->pipecap = sz > 0 ? (size_t)sz : 65536;
    /* Keep the pipe within bufsize so an unsplice always fits the buffer. */
    if (d->pipecap > r->bufsize)
        d->pipecap = r->bufsize;
    d->splice = 1;
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
    int want_splice = opts != NULL && (opts->flags & FX_RELAY_SPLICE);

    if (loop == NULL || done == NULL || fd_a < 0 || fd_b < 0 || fd_a == fd_b) {
        errno = EINVAL;
        return NULL;
    }
    if (fx_set_nonblock(fd_a) < 0 || fx_set_nonblock(fd_b) < 0)
        return NULL;
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->loop = loop;
    r->fd[0] = fd_a;
    r->fd[1] = fd_b;
    r->bufsize = (opts != NULL && opts->bufsize > 0) ? opts->bufsize : FX_RELAY_DEFAULT_BUFSIZE;
    r->done = done;
    r->arg = arg;
    fx_dir_init(r, &r->dir[0], fd_a, fd_b, want_splice);
    fx_dir_init(r, &r->dir[1], fd_b, fd_a, want_splice);

    for (added = 0; added < 2; added++) {
        int rc = fx_loop_add_fd(loop, r->fd[added], FX_READ, fx_relay_io, r);
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
    fx_dir_close_pipe(&r->dir[0]);
    fx_dir_close_pipe(&r->dir[1]);
    free(r);
    errno = saved;
    return NULL;
}

fx_relay *fx_relay_start(fx_loop *loop, int fd_a, int fd_b, unsigned flags,
                         fx_relay_done_cb done, void *arg)
{
    fx_relay_opts opts = { flags, 0 };
    return fx_relay_start_opts(loop, fd_a, fd_b, &opts, done, arg);
}

void fx_relay_abort(fx_relay *r)
{
    if (r != NULL)
        fx_relay_end(r, 1, 0);
}
