/*
 * fxrelay.h - the no-filter data pump between two connected TCP sockets.
 *
 * Owns: both fds from fx_relay_start on, one bounded buffer (or one pipe
 * borrowed from the loop's pool, with FX_RELAY_SPLICE) per direction,
 * half-close and abort propagation; and the per-loop pipe pools.
 *
 *  - Backpressure: a side is not read while its direction's buffer is
 *    full, so a slow receiver slows the sender instead of growing memory.
 *  - Half-close: EOF from one side becomes shutdown(SHUT_WR) on the other
 *    once everything read before it has been written; the other direction
 *    keeps flowing.  The relay ends when both directions have ended.
 *  - Abort: a reset or any error on either side resets the other side
 *    (fx_close_abort), so a client sees the server's RST and vice versa.
 *  - Idle relays hold no buffer: it is freed whenever it drains.  With
 *    FX_RELAY_SPLICE a direction borrows a pipe from its loop's pool
 *    while bytes sit in it and gives it back once it is empty, so an idle
 *    relay holds its two sockets and nothing else.  The pool keeps at most
 *    FX_RELAY_PIPE_POOL_CAP pipes per loop (idle + lent); when none is
 *    free, that chunk is copied through the buffer instead.
 */
#ifndef FX_RELAY_H
#define FX_RELAY_H

#include <stddef.h>

#include "fxloop.h"

#define FX_RELAY_SPLICE 1u           /* move bytes with splice(2) through a pipe */
#define FX_RELAY_NONBLOCKING 2u      /* both fds are O_NONBLOCK already (as
                                        fxnet makes them): no fcntl */
#define FX_RELAY_DEFAULT_BUFSIZE 65536
#define FX_RELAY_PIPE_POOL_CAP 64    /* pipes per loop (2 fds each) */
/* With a splice_min: this many shorter splices in a row send a direction
 * back to copying (one short read ends most bursts; a run of them is
 * request/response traffic). */
#define FX_RELAY_SHORT_SPLICES 8

typedef struct fx_relay fx_relay;

typedef struct fx_relay_stats {
    unsigned long long bytes_ab;     /* written to b, read from a */
    unsigned long long bytes_ba;     /* written to a, read from b */
    int aborted;                     /* ended with RST on both sides */
    int error;                       /* errno that caused the abort; 0 when
                                        clean or ended by fx_relay_abort */
} fx_relay_stats;

typedef void (*fx_relay_done_cb)(void *arg, const fx_relay_stats *stats);

/* A recording tap (fwxhost --record): side 0 is a (fd_a), 1 is b.  n > 0:
 * bytes read from that side; 0: its EOF; < 0: -errno of a reset or error
 * on that side (read, write or a socket error), data NULL. */
typedef void (*fx_relay_tap_cb)(void *arg, int side, const void *data, long n);

typedef struct fx_relay_opts {
    unsigned flags;                  /* FX_RELAY_SPLICE */
    size_t bufsize;                  /* per direction; 0 = FX_RELAY_DEFAULT_BUFSIZE */
    fx_relay_tap_cb tap;             /* non-NULL: sees every read; turns splice off */
    void *tap_arg;
    /* FX_RELAY_SPLICE: 0 splices every chunk.  Otherwise a direction
     * copies (recv/send) until one read brings at least this many bytes
     * (or fills the buffer), then splices until FX_RELAY_SHORT_SPLICES
     * splices in a row bring fewer.  Moving a small chunk through a pipe
     * costs the kernel more than copying it. */
    size_t splice_min;
    /* FX_RELAY_SPLICE: pipe size to ask for (F_SETPIPE_SZ, at most 1 MiB);
     * 0 = bufsize.  Larger pipes move more per splice(2).  A direction
     * splices at most bufsize per chunk until a splice out of its pipe has
     * worked once (before that, a refusal must fit the copy buffer). */
    size_t pipesize;
} fx_relay_opts;

/* Loop thread.  fd_a and fd_b must be connected stream sockets, not
 * duplicated (the relay closes them without an epoll_ctl) and either not
 * registered on the loop or registered by a watch the relay may take over
 * (fx_loop_take_fd: a connect watch whose callback is running now); they are made non-blocking unless FX_RELAY_NONBLOCKING
 * says they are (even if the call then fails).  From a non-NULL return on, the relay owns both fds
 * and calls done exactly once, from the loop (never from inside
 * fx_relay_start or fx_relay_abort), after both are closed; the handle is
 * invalid once done has been called.  NULL (errno set) leaves the fds to
 * the caller.  Splice falls back to read/write per direction when the
 * kernel refuses it (EINVAL), and per chunk when the pool has no pipe. */
fx_relay *fx_relay_start(fx_loop *loop, int fd_a, int fd_b, unsigned flags,
                         fx_relay_done_cb done, void *arg);
fx_relay *fx_relay_start_opts(fx_loop *loop, int fd_a, int fd_b,
                              const fx_relay_opts *opts,
                              fx_relay_done_cb done, void *arg);

/* The loop's pipe pool, created on first use.  Loop thread (or while the
 * loop is not running).  set_cap: 0 or -ENOMEM; a lower cap closes idle
 * pipes now and lent ones as they come back; 0 turns splicing off. */
typedef struct fx_relay_pool_stats {
    unsigned cap;
    unsigned pipes;                  /* in existence: idle + lent */
    unsigned idle;
    unsigned lent;                   /* held by relays, with bytes in flight */
    unsigned long long takes;        /* pipes lent */
    unsigned long long made;         /* pipe2 calls that succeeded */
    unsigned long long misses;       /* chunks copied because no pipe was free */
} fx_relay_pool_stats;
int fx_relay_pool_set_cap(fx_loop *loop, unsigned cap);
void fx_relay_pool_get_stats(fx_loop *loop, fx_relay_pool_stats *stats);

/* Loop thread.  Resets both sides and ends the relay (done follows, with
 * aborted = 1, error = 0).  A no-op if the relay is already ending. */
void fx_relay_abort(fx_relay *relay);

/* Bytes moved so far in each direction (a to b, b to a); loop thread. */
void fx_relay_bytes(const fx_relay *relay, unsigned long long *ab, unsigned long long *ba);

#endif /* FX_RELAY_H */
