/*
 * fxloop.h - the epoll event loop: one per worker thread.
 *
 * Owns: fd readiness dispatch (level-triggered), one-shot timers, the
 * deferred-task queue (loop thread only), the posted-task queue (any
 * thread) and a few per-loop slots for other core modules' state.  The loop never creates a thread: the host runs fx_loop_run on
 * threads made by Wine's CreateThread, because only those have a TEB and
 * may call into filter code.
 *
 * Ordering guarantees, which the COM layer relies on to deliver
 * completions "from the loop, never from inside the call":
 *   - a deferred task runs after the callback that deferred it returns and
 *     before the loop next waits; deferred tasks run FIFO, and tasks
 *     deferred by a deferred task run in the same drain;
 *   - a posted task runs on a later loop iteration (after at least one
 *     epoll_wait), FIFO among posted tasks;
 *   - after fx_loop_del_fd returns, the fd's callback is never called
 *     again, even for events already fetched in the current batch.
 */
#ifndef FX_LOOP_H
#define FX_LOOP_H

#include <stdint.h>

typedef struct fx_loop fx_loop;
typedef struct fx_timer fx_timer;

enum {
    FX_READ  = 1,
    FX_WRITE = 2,
    FX_HUP   = 4,   /* reported only: peer closed both directions */
    FX_ERR   = 8,   /* reported only: pending socket error (see fx_sock_error) */
    /* fx_loop_add_fd only, with FX_READ: EPOLLEXCLUSIVE, for a listening
     * socket that several loops share (one wakes per connection).  The fd
     * cannot be parked or modified afterwards, only deleted. */
    FX_EXCLUSIVE = 16
};

typedef void (*fx_io_cb)(fx_loop *loop, int fd, unsigned events, void *data);
typedef void (*fx_task_cb)(void *arg);

/* NULL with errno set on failure. */
fx_loop *fx_loop_new(void);

/* Not while fx_loop_run is running.  Registered fds are not closed (they
 * belong to whoever added them); pending timers and tasks are dropped
 * without being called. */
void fx_loop_free(fx_loop *loop);

/* Loop thread (or before the loop runs).  events is FX_READ|FX_WRITE or 0;
 * FX_HUP/FX_ERR may be reported whenever the fd is armed.  With events 0
 * the fd stays registered but is "parked": no callbacks at all, not even
 * for hang-ups, which keeps a peer's reset from spinning a level-triggered
 * loop while its owner is not interested.
 * Return 0 or -errno (-EEXIST if already registered). */
int  fx_loop_add_fd(fx_loop *loop, int fd, unsigned events, fx_io_cb cb, void *data);
int  fx_loop_mod_fd(fx_loop *loop, int fd, unsigned events);
/* As fx_loop_add_fd, but an fd another owner registered on this loop (a
 * connect watch handing its socket to the data path) is taken over: new
 * callback and data, events already fetched for the old owner dropped, and
 * the interest changed with one EPOLL_CTL_MOD where a del + add would cost
 * two syscalls.  Not for FX_EXCLUSIVE fds (-EINVAL). */
int  fx_loop_take_fd(fx_loop *loop, int fd, unsigned events, fx_io_cb cb, void *data);
/* Unknown fds are ignored.  Call before close(fd). */
void fx_loop_del_fd(fx_loop *loop, int fd);
/* As fx_loop_del_fd, without the epoll_ctl, for an fd the caller closes
 * right after and has never duplicated (no dup, no fork without
 * CLOEXEC-exec in between): closing the last reference to the file takes
 * it out of the epoll set.  Saves one syscall per connection. */
void fx_loop_forget_fd(fx_loop *loop, int fd);

/* Any thread.  Wakes the loop.  Aborts the process if memory runs out (a
 * lost completion would hang a connection forever, which is worse). */
void fx_loop_post(fx_loop *loop, fx_task_cb cb, void *arg);

/* Loop thread only (or before the loop runs: the task then runs first
 * thing in fx_loop_run).  Aborts on out of memory, as fx_loop_post. */
void fx_loop_defer(fx_loop *loop, fx_task_cb cb, void *arg);

/* Loop thread.  One-shot, fires no earlier than ms from now; timers with
 * the same deadline fire in start order.  NULL on out of memory.  The
 * handle is valid until its callback has returned or it is cancelled;
 * cancelling from inside its own callback is a harmless no-op. */
fx_timer *fx_timer_start(fx_loop *loop, uint64_t ms, fx_task_cb cb, void *arg);
void fx_timer_cancel(fx_loop *loop, fx_timer *timer);

/* Runs on the calling thread until fx_loop_stop.  Returns 0, or -errno if
 * epoll_wait fails.  A stop requested before run starts is not lost: run
 * then returns as soon as it has drained the deferred tasks.  The stop
 * request is consumed on return, so the loop can be run again; posted
 * tasks still queued then run in that next run. */
int  fx_loop_run(fx_loop *loop);
/* Before fx_loop_run (or on the loop thread).  After an epoll batch that
 * had events, poll without sleeping for up to usec microseconds (yielding
 * the CPU between polls) before blocking: the answer to what the batch
 * sent usually arrives within a few microseconds, and catching it awake
 * saves a sleep and a wake-up.  0, the default, blocks at once.  An idle
 * loop spins once after its last event, then sleeps. */
void fx_loop_set_poll_spin(fx_loop *loop, unsigned usec);
/* Any thread: how many times the loop blocked in epoll_wait, and how many
 * spins found an event before it had to (fwxhost --stats, /metrics). */
void fx_loop_counters(const fx_loop *loop, uint64_t *sleeps, uint64_t *spin_hits);
/* Any thread; the loop returns after finishing its current iteration. */
void fx_loop_stop(fx_loop *loop);
/* Nonzero when the calling thread is the one inside fx_loop_run. */
int  fx_loop_in_thread(const fx_loop *loop);

/* Per-loop state of other core modules, created lazily by them: one
 * pointer per slot, free_fn called from fx_loop_free (after the fds and
 * before the loop's memory goes).  Loop thread (or before the loop runs /
 * after it stopped).  Set replaces the pointer without freeing the old. */
enum { FX_LOOP_SLOT_RELAY, FX_LOOP_NSLOTS };   /* fxrelay.c: its pipe pool */
void *fx_loop_slot_get(const fx_loop *loop, int slot);
void fx_loop_slot_set(fx_loop *loop, int slot, void *ptr, void (*free_fn)(void *));

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t fx_now_ms(void);
/* CLOCK_MONOTONIC_COARSE in milliseconds: up to one clock tick (1-10 ms)
 * behind fx_now_ms, and a quarter of its cost (no clock hardware read).
 * For timestamps compared at second scale, such as the watchdog's. */
uint64_t fx_now_coarse_ms(void);

#endif /* FX_LOOP_H */
