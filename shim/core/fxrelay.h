/*
 * fxrelay.h - the no-filter data pump between two connected TCP sockets.
 *
 * Owns: both fds from fx_relay_start on, one bounded buffer (or one pipe,
 * with FX_RELAY_SPLICE) per direction, half-close and abort propagation.
 *
 *  - Backpressure: a side is not read while its direction's buffer is
 *    full, so a slow receiver slows the sender instead of growing memory.
 *  - Half-close: EOF from one side becomes shutdown(SHUT_WR) on the other
 *    once everything read before it has been written; the other direction
 *    keeps flowing.  The relay ends when both directions have ended.
 *  - Abort: a reset or any error on either side resets the other side
 *    (fx_close_abort), so a client sees the server's RST and vice versa.
 *  - Idle relays hold no buffer: it is freed whenever it drains.  With
 *    FX_RELAY_SPLICE a relay holds two pipes (four fds) for its lifetime.
 */
#ifndef FX_RELAY_H
#define FX_RELAY_H

#include <stddef.h>

#include "fxloop.h"

#define FX_RELAY_SPLICE 1u           /* move bytes with splice(2) through a pipe */
#define FX_RELAY_DEFAULT_BUFSIZE 65536

typedef struct fx_relay fx_relay;

typedef struct fx_relay_stats {
    unsigned long long bytes_ab;     /* written to b, read from a */
    unsigned long long bytes_ba;     /* written to a, read from b */
    int aborted;                     /* ended with RST on both sides */
    int error;                       /* errno that caused the abort; 0 when
                                        clean or ended by fx_relay_abort */
} fx_relay_stats;

typedef void (*fx_relay_done_cb)(void *arg, const fx_relay_stats *stats);

typedef struct fx_relay_opts {
    unsigned flags;                  /* FX_RELAY_SPLICE */
    size_t bufsize;                  /* per direction; 0 = FX_RELAY_DEFAULT_BUFSIZE */
} fx_relay_opts;

/* Loop thread.  fd_a and fd_b must be connected stream sockets; they are
 * made non-blocking (even if the call then fails).  From a non-NULL return on, the relay owns both fds
 * and calls done exactly once, from the loop (never from inside
 * fx_relay_start or fx_relay_abort), after both are closed; the handle is
 * invalid once done has been called.  NULL (errno set) leaves the fds to
 * the caller.  Splice falls back to read/write per direction when the
 * kernel refuses it (EINVAL) or no pipe can be made. */
fx_relay *fx_relay_start(fx_loop *loop, int fd_a, int fd_b, unsigned flags,
                         fx_relay_done_cb done, void *arg);
fx_relay *fx_relay_start_opts(fx_loop *loop, int fd_a, int fd_b,
                              const fx_relay_opts *opts,
                              fx_relay_done_cb done, void *arg);

/* Loop thread.  Resets both sides and ends the relay (done follows, with
 * aborted = 1, error = 0).  A no-op if the relay is already ending. */
void fx_relay_abort(fx_relay *relay);

#endif /* FX_RELAY_H */
