/*
 * netsocket.c — IFWXNetworkSocket: real TCP sockets that filters create
 * with IFWXFirewall/IFWXSession::CreateNetworkSocket (reference §2.11,
 * §3.5, §3.11–§3.12, §8.1–§8.3; decisions in docs/abi-decisions.md
 * HOST-007).
 *
 * Winsock's model on a native nonblocking fd: the socket exists from
 * creation (an AF_INET fd; re-made as AF_INET6 if the first Bind or
 * Connect asks for it), Bind/Listen/Get*Name/Get/SetSockOpt are
 * synchronous system calls, and Connect starts a nonblocking connect and
 * returns. Send, Recv and Accept queue an operation; the socket's worker
 * loop does the I/O and delivers the completions.
 *
 * Every socket belongs to one worker: the caller's if the caller runs on
 * a worker, else the next in turn; accepted sockets share their listening
 * socket's. Filter calls (any thread) only change state under the
 * socket's lock and kick the loop (fx_loop_post, or fx_loop_defer when
 * already on it). On the loop, ns_run pumps under the lock, collects the
 * finished operations and delivers them after dropping it, through
 * GUARDED_CALL: never inside the call that started the operation, never
 * with a host lock held.
 *
 * Lifetime: 'ref' counts COM references; 'holds' counts what keeps the
 * memory: one for the COM references together, one per queued loop task,
 * one for the loop registration of the fd and one for a running connect
 * timer. The final Release closes the socket as Close(FALSE) would.
 */
#include "fwxhost.h" /* first: Winsock before any libc header */
#include "trap.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "guard.h"
#include "hostobj.h"

/* fx_recv/fx_send/fx_tcp_accept return -errno; Linux EAGAIN. */
#define LINUX_EAGAIN 11

/* Read size for host-supplied buffers (Recv with a NULL buffer). */
#define NS_READ_SIZE (32 * 1024)

/* Accepts per pump pass, so that a flood cannot starve the loop. */
#define NS_ACCEPT_BATCH 64

/* Win32 socket-option names (winsock2.h values, spelled out so that they
 * cannot pick up Linux values from any header). */
#define WIN_SOL_SOCKET      0xffff
#define WIN_IPPROTO_TCP     6
#define WIN_SO_ACCEPTCONN   0x0002
#define WIN_SO_REUSEADDR    0x0004
#define WIN_SO_KEEPALIVE    0x0008
#define WIN_SO_LINGER       0x0080
#define WIN_SO_DONTLINGER   ((int)(~0x0080u))
#define WIN_SO_SNDBUF       0x1001
#define WIN_SO_RCVBUF       0x1002
#define WIN_SO_ERROR        0x1007
#define WIN_SO_TYPE         0x1008
#define WIN_TCP_NODELAY     0x0001

struct win_linger {                /* Win32 struct linger: two u_shorts */
    USHORT l_onoff;
    USHORT l_linger;
};

enum ns_state {
    NS_OPEN,                       /* created; maybe bound */
    NS_CONNECTING,
    NS_CONNECTED,                  /* connected or accepted */
    NS_LISTENING,
    NS_FAILED,                     /* the connect failed or the connection broke: see error */
};

static const char *const state_names[] = { "open", "connecting", "connected", "listening", "failed" };

enum op_kind { OP_SEND, OP_RECV, OP_ACCEPT };

struct nsop {
    struct nsop *next;
    enum op_kind kind;
    IFWXIOBuffer *buf;             /* referenced: the filter's buffer (NULL for Recv(NULL), Accept) */
    BYTE *data;                    /* send: the bytes; recv into buf: where they go */
    DWORD size;                    /* send: byte count; recv into buf: capacity */
    DWORD done;                    /* send: bytes written so far */
    IFWXIOCompletion *sink;        /* referenced; may be NULL for sends */
    IFWXAcceptCompletion *asink;   /* referenced (Accept) */
    UserContextType user;
    struct fx_filter *owner;       /* the filter that issued it: blamed for faults */
    /* the outcome */
    BOOL ok;
    DWORD error;
    IFWXIOBuffer *result;          /* recv: the buffer handed to the filter (referenced) */
    DWORD nbytes;                  /* recv: bytes that arrived */
    struct netsock *accepted;      /* accept: the new socket; its one COM reference goes to the filter */
    SOCKADDR_STORAGE remote, local;
    int remote_len, local_len;
};

struct opq {
    struct nsop *head, **tail;
};

struct netsock {
    IFWXNetworkSocket IFWXNetworkSocket_iface;
    LONG ref;                      /* COM references */
    LONG holds;                    /* memory; see the top of the file */
    CRITICAL_SECTION lock;         /* everything below */
    unsigned long id;
    struct worker *worker;
    struct fx_filter *owner;       /* the creating filter, for logs */
    BOOL from_session;             /* IFWXSession::CreateNetworkSocket */
    struct netsock *live_next, **live_prev;   /* live list (live_lock) */

    int fd;                        /* -1 once closed */
    enum ns_state state;
    DWORD error;                   /* NS_FAILED: the WSA error */
    BOOL bound;                    /* Bind, Connect or accept gave it a local address */
    BOOL registered;               /* fd in the loop (loop thread only) */
    unsigned armed;                /* FX_READ|FX_WRITE registered */
    unsigned io_events;            /* reported by the loop, not yet looked at */
    fx_timer *connect_timer;       /* loop thread */
    BOOL timed_out;
    unsigned char peer[FX_SOCKADDR_MAX];      /* Linux layout: what Connect was given */
    int peer_len;

    struct opq sends, recvs, accepts;
    struct nsop *done, **done_tail;           /* finished, to deliver without the lock */
    BOOL read_eof;                 /* the peer finished sending */
    BOOL shut_pending, shut_done;  /* Shutdown(FALSE): requested, our FIN sent */
    BOOL closed;                   /* Close or the final Release: no new calls */
    BOOL abortive;                 /* close with a RST, failing queued sends */
    BOOL finished;                 /* closed, fd gone, queues empty: nothing more will happen */
    BOOL kick_pending;             /* an ns_task is queued on the loop */
    LONG drop_holds;               /* holds to drop once the lock is released */

    /* Options kept by the host rather than the kernel. */
    BOOL reuseaddr;                /* SO_REUSEADDR as the filter set it (the fd always has Linux's) */
    BOOL linger_on;                /* SO_LINGER; a graceful close never blocks the loop */
    USHORT linger_secs;

    unsigned long long bytes_in, bytes_out;
};

static struct fx_vtbl_IFWXNetworkSocket netsock_vtbl, netsock_vtbl_tmg;

/* ABI-303: a tmg filter's IFWXNetworkSocket has SetSockOpt before GetSockOpt.
 * While an auto profile is not settled (FilterInit), the ISA 2000 order. */
static const IFWXNetworkSocketVtbl *ns_vtbl_for(const struct fx_filter *f)
{
    return f && f->profile == FX_PROFILE_TMG && !f->profile_tentative ? &netsock_vtbl_tmg.vtbl
                                                                      : &netsock_vtbl.vtbl;
}
static LONG next_id;
static LONG next_worker;

/* Every socket whose memory is alive, for netsock_stop_all. */
static SRWLOCK live_lock = SRWLOCK_INIT;
static struct netsock *live_head;
static BOOL live_stopping;
static LONG stop_pending;

static inline struct netsock *impl_from_IFWXNetworkSocket(IFWXNetworkSocket *iface)
{
    return CONTAINING_RECORD(iface, struct netsock, IFWXNetworkSocket_iface);
}

static void ns_run(struct netsock *s);

/* ------------------------------------------------------------ small helpers */

static void opq_init(struct opq *q)
{
    q->head = NULL;
    q->tail = &q->head;
}

static void opq_push(struct opq *q, struct nsop *op)
{
    op->next = NULL;
    *q->tail = op;
    q->tail = &op->next;
}

static struct nsop *opq_pop(struct opq *q)
{
    struct nsop *op = q->head;
    if (op && !(q->head = op->next))
        q->tail = &q->head;
    return op;
}

static const char *owner_name(struct netsock *s)
{
    return fx_filter_name(s->owner);
}

static HRESULT wsa_hr(DWORD wsa)
{
    return HRESULT_FROM_WIN32(wsa);
}

static HRESULT errno_hr(int negerr)
{
    return HRESULT_FROM_WIN32(fx_errno_to_wsa(negerr));
}

/* A Win32 sockaddr from a filter into Linux layout. S_OK or a WSA HRESULT. */
static HRESULT addr_from_filter(const SOCKADDR *addr, DWORD len, void *lin, int *lin_len)
{
    USHORT family;

    if (!addr || len < sizeof(USHORT))
        return wsa_hr(WSAEFAULT);
    memcpy(&family, addr, sizeof(family));
    if (family != AF_INET && family != AF_INET6)
        return wsa_hr(WSAEAFNOSUPPORT);
    *lin_len = FX_SOCKADDR_MAX;
    if (fx_sa_from_win32(addr, (int)(len > 128 ? 128 : len), lin, lin_len) != 0)
        return wsa_hr(WSAEFAULT);
    return S_OK;
}

/* Linux sockaddr to the filter's Win32 buffer; *len in/out. */
static HRESULT addr_to_filter(const void *lin, int lin_len, SOCKADDR *addr, INT *len)
{
    SOCKADDR_STORAGE win;
    int wlen = sizeof(win);

    if (fx_sa_to_win32(lin, lin_len, &win, &wlen) != 0)
        return wsa_hr(WSAEAFNOSUPPORT);
    if (*len < wlen) {
        *len = wlen;               /* the size needed */
        return wsa_hr(WSAEFAULT);
    }
    memcpy(addr, &win, wlen);
    *len = wlen;
    return S_OK;
}

static const char *format_addr(const void *lin, int len, char *buf, size_t size)
{
    if (fx_addr_format(lin, len, buf, size) < 0)
        snprintf(buf, size, "?");
    return buf;
}

/* ------------------------------------------------------------ memory */

static void ns_hold(struct netsock *s)
{
    InterlockedIncrement(&s->holds);
}

/* A hold on a socket found in the live list, unless its memory is already
 * on its way out (holds at 0: ns_free waits for live_lock to unlink it). */
static BOOL ns_try_hold(struct netsock *s)
{
    LONG h;
    while ((h = s->holds) > 0)
        if (InterlockedCompareExchange(&s->holds, h + 1, h) == h)
            return TRUE;
    return FALSE;
}

static void ns_free(struct netsock *s)
{
    AcquireSRWLockExclusive(&live_lock);
    if ((*s->live_prev = s->live_next))
        s->live_next->live_prev = s->live_prev;
    ReleaseSRWLockExclusive(&live_lock);
    if (s->fd >= 0)                /* never registered, so no loop knows it */
        fx_close_abort(s->fd);
    if (s->owner)
        InterlockedDecrement(&s->owner->live_sockets);
    DeleteCriticalSection(&s->lock);
    free(s);
}

static void ns_unhold(struct netsock *s)
{
    if (InterlockedDecrement(&s->holds) == 0)
        ns_free(s);
}

/* A new socket on worker w owning fd, with one COM reference. NULL with
 * *hr set (FWX_E_TERMINATING once the host is stopping); fd is then the
 * caller's to close. */
static struct netsock *ns_new(struct worker *w, struct fx_filter *owner, BOOL from_session, int fd,
                              HRESULT *hr)
{
    struct netsock *s = calloc(1, sizeof(*s));

    if (!s) {
        *hr = E_OUTOFMEMORY;
        return NULL;
    }
    s->IFWXNetworkSocket_iface.lpVtbl = ns_vtbl_for(owner);
    s->ref = 1;
    s->holds = 1;
    InitializeCriticalSection(&s->lock);
    s->worker = w;
    s->owner = owner;
    s->from_session = from_session;
    s->fd = fd;
    s->state = NS_OPEN;
    opq_init(&s->sends);
    opq_init(&s->recvs);
    opq_init(&s->accepts);
    s->done = NULL;
    s->done_tail = &s->done;

    AcquireSRWLockExclusive(&live_lock);
    if (live_stopping) {
        ReleaseSRWLockExclusive(&live_lock);
        DeleteCriticalSection(&s->lock);
        free(s);
        *hr = FWX_E_TERMINATING;
        return NULL;
    }
    s->id = (unsigned long)InterlockedIncrement(&next_id);
    if ((s->live_next = live_head))
        live_head->live_prev = &s->live_next;
    s->live_prev = &live_head;
    live_head = s;
    ReleaseSRWLockExclusive(&live_lock);
    if (owner)
        InterlockedIncrement(&owner->live_sockets);
    *hr = S_OK;
    return s;
}

/* ------------------------------------------------------------ operations */

/* Takes references on buf and the sink; calls filter code (AddRef), so
 * never under the lock. */
static struct nsop *op_new(enum op_kind kind, IFWXIOBuffer *buf, IFWXIOCompletion *sink,
                           IFWXAcceptCompletion *asink, UserContextType user)
{
    struct nsop *op = calloc(1, sizeof(*op));
    if (!op)
        return NULL;
    op->kind = kind;
    op->user = user;
    op->owner = guard_current_filter();
    if ((op->buf = buf))
        GUARDED_VOID(op->owner, "IFWXIOBuffer", "AddRef", IFWXIOBuffer_AddRef(buf));
    if ((op->sink = sink))
        GUARDED_VOID(op->owner, "IFWXIOCompletion", "AddRef", IFWXIOCompletion_AddRef(sink));
    if ((op->asink = asink))
        GUARDED_VOID(op->owner, "IFWXAcceptCompletion", "AddRef", IFWXAcceptCompletion_AddRef(asink));
    return op;
}

/* Drops an operation's references without a completion; no lock held. */
static void op_discard(struct nsop *op)
{
    if (op->buf)
        GUARDED_VOID(op->owner, "IFWXIOBuffer", "Release", IFWXIOBuffer_Release(op->buf));
    if (op->result)
        GUARDED_VOID(op->owner, "IFWXIOBuffer", "Release", IFWXIOBuffer_Release(op->result));
    if (op->sink)
        GUARDED_VOID(op->owner, "IFWXIOCompletion", "Release", IFWXIOCompletion_Release(op->sink));
    if (op->asink)
        GUARDED_VOID(op->owner, "IFWXAcceptCompletion", "Release",
                     IFWXAcceptCompletion_Release(op->asink));
    free(op);
}

/* Lock held: the operation is over; it is delivered after the unlock. */
static void op_finish(struct netsock *s, struct nsop *op, BOOL ok, DWORD error)
{
    op->ok = ok;
    op->error = ok ? 0 : error;
    op->next = NULL;
    *s->done_tail = op;
    s->done_tail = &op->next;
}

static void fail_queue(struct netsock *s, struct opq *q, DWORD error)
{
    struct nsop *op;
    while ((op = opq_pop(q)))
        op_finish(s, op, FALSE, error);
}

/* No lock held. Returns FALSE if the filter faulted in a completion. */
static BOOL ns_deliver(struct netsock *s, struct nsop *list)
{
    BOOL healthy = TRUE;
    struct nsop *op, *next;
    HRESULT hr;

    for (op = list; op; op = next) {
        next = op->next;
        if (op->kind == OP_ACCEPT) {
            struct netsock *a = op->accepted;
            GUARDED_CALL(hr, op->owner, "IFWXAcceptCompletion", "CompleteAsyncAccept",
                         IFWXAcceptCompletion_CompleteAsyncAccept(
                             op->asink, op->ok, op->error, &s->IFWXNetworkSocket_iface,
                             a ? &a->IFWXNetworkSocket_iface : NULL,
                             a ? (LPSOCKADDR)&op->remote : NULL, a ? op->remote_len : 0,
                             a ? (LPSOCKADDR)&op->local : NULL, a ? op->local_len : 0, op->user));
            if (hr == FX_E_FILTER_FAULT && a)
                fx_log(FX_LOG_WARN, "netsock %lu: the accepted socket %lu may be leaked (fault)",
                       s->id, a->id);
        } else {
            IFWXIOBuffer *buf = op->ok ? op->result : NULL;
            hr = S_OK;
            if (buf)
                GUARDED_CALL(hr, op->owner, "IFWXIOBuffer", "SetDataSize",
                             IFWXIOBuffer_SetDataSize(buf, op->nbytes));
            if (hr != FX_E_FILTER_FAULT && op->sink)
                GUARDED_CALL(hr, op->owner, "IFWXIOCompletion", "CompleteAsyncIO",
                             IFWXIOCompletion_CompleteAsyncIO(op->sink, op->ok, op->error, buf,
                                                              op->user, NULL, 0));
        }
        if (hr == FX_E_FILTER_FAULT)
            healthy = FALSE;
        op_discard(op);
    }
    return healthy;
}

/* ------------------------------------------------------------ the loop side */

static void ns_task(void *arg)
{
    struct netsock *s = arg;
    ns_run(s);
    ns_unhold(s);
}

/* Any thread, no lock held: a pump pass soon, on the socket's loop. */
static void ns_kick(struct netsock *s)
{
    fx_loop *loop = s->worker->loop;

    EnterCriticalSection(&s->lock);
    if (s->kick_pending || s->finished) {
        LeaveCriticalSection(&s->lock);
        return;
    }
    s->kick_pending = TRUE;
    ns_hold(s);
    LeaveCriticalSection(&s->lock);
    if (fx_loop_in_thread(loop))
        fx_loop_defer(loop, ns_task, s);
    else
        fx_loop_post(loop, ns_task, s);
}

static void ns_io(fx_loop *loop, int fd, unsigned events, void *data)
{
    struct netsock *s = data;
    /* The registration holds s, but ns_run may end the registration: a
     * hold of our own keeps s until ns_run is done with it. */
    ns_hold(s);
    EnterCriticalSection(&s->lock);
    s->io_events |= events;
    LeaveCriticalSection(&s->lock);
    ns_run(s);
    ns_unhold(s);
}

static void ns_connect_timeout(void *arg)
{
    struct netsock *s = arg;
    EnterCriticalSection(&s->lock);
    s->connect_timer = NULL;
    if (s->state == NS_CONNECTING)
        s->timed_out = TRUE;
    LeaveCriticalSection(&s->lock);
    ns_run(s);
    ns_unhold(s);                  /* the timer's */
}

/* Lock held, loop thread. */
static void cancel_connect_timer(struct netsock *s)
{
    if (s->connect_timer) {
        fx_timer_cancel(s->worker->loop, s->connect_timer);
        s->connect_timer = NULL;
        s->drop_holds++;
    }
}

/* The connection is unusable: every pending and later Send/Recv fails with error. */
static void ns_break(struct netsock *s, DWORD error)
{
    if (s->state != NS_FAILED)
        fx_log(FX_LOG_INFO, "netsock %lu (filter %s): %s: WSA error %lu", s->id, owner_name(s),
               s->state == NS_CONNECTING ? "connect failed" : "connection broken",
               (unsigned long)error);
    cancel_connect_timer(s);
    s->state = NS_FAILED;
    s->error = error;
    fail_queue(s, &s->sends, error);
    fail_queue(s, &s->recvs, error);
}

static void pump_connecting(struct netsock *s, unsigned events)
{
    if (s->timed_out) {
        ns_break(s, WSAETIMEDOUT);
        return;
    }
    if (events & (FX_WRITE | FX_ERR | FX_HUP)) {
        int err = fx_sock_error(s->fd);
        if (err) {
            ns_break(s, fx_errno_to_wsa(err));
            return;
        }
        cancel_connect_timer(s);
        s->state = NS_CONNECTED;
        char text[FX_ADDRSTRLEN];
        fx_log(FX_LOG_INFO, "netsock %lu (filter %s): connected to %s", s->id, owner_name(s),
               format_addr(s->peer, s->peer_len, text, sizeof(text)));
        return;
    }
    if (!s->connect_timer && s->registered && the_host && the_host->config) {
        uint64_t ms = (uint64_t)the_host->config->host.connect_timeout * 1000;
        if (ms && (s->connect_timer = fx_timer_start(s->worker->loop, ms, ns_connect_timeout, s)))
            ns_hold(s);
    }
}

static void pump_sends(struct netsock *s)
{
    struct nsop *op;

    while ((op = s->sends.head)) {
        while (op->done < op->size) {
            long n = fx_send(s->fd, op->data + op->done, op->size - op->done);
            if (n == -LINUX_EAGAIN)
                return;
            if (n < 0) {
                ns_break(s, fx_errno_to_wsa((int)-n));
                return;
            }
            op->done += (DWORD)n;
            s->bytes_out += (unsigned long long)n;
        }
        opq_pop(&s->sends);
        op_finish(s, op, TRUE, 0);
    }
    if (s->shut_pending && !s->shut_done) {
        fx_shutdown_write(s->fd);
        s->shut_done = TRUE;
    }
}

static void pump_recvs(struct netsock *s)
{
    struct nsop *op;

    while ((op = s->recvs.head)) {
        BYTE *data = op->data;
        DWORD cap = op->size, size;
        long n = 0;

        if (!op->buf && !op->result) {
            /* The host supplies the buffer, sized for what may arrive. */
            if (FAILED(iobuffer_create(s->read_eof ? 0 : NS_READ_SIZE, &op->result)))
                return;            /* out of memory: retry on the next pass */
            iobuffer_set_owner(op->result, op->owner);
        }
        if (!op->buf && FAILED(iobuffer_data(op->result, &data, &size, &cap)))
            return;
        if (!s->read_eof) {
            n = fx_recv(s->fd, data, cap);
            if (n == -LINUX_EAGAIN)
                return;
            if (n < 0) {
                ns_break(s, fx_errno_to_wsa((int)-n));
                return;
            }
            if (n == 0)
                s->read_eof = TRUE;
            s->bytes_in += (unsigned long long)n;
        }
        /* 0 bytes in a successful completion: the peer's graceful close. */
        op->nbytes = (DWORD)n;
        if (op->buf) {
            op->result = op->buf;
            op->buf = NULL;
        }
        opq_pop(&s->recvs);
        op_finish(s, op, TRUE, 0);
    }
}

static void pump_accepts(struct netsock *s)
{
    struct nsop *op;

    for (int i = 0; i < NS_ACCEPT_BATCH && (op = s->accepts.head); i++) {
        unsigned char sa[FX_SOCKADDR_MAX], la[FX_SOCKADDR_MAX];
        int salen = sizeof(sa), lalen = sizeof(la);
        int fd = fx_tcp_accept(s->fd, sa, &salen);
        struct netsock *a;
        HRESULT hr;

        if (fd == -LINUX_EAGAIN)
            return;
        if (fd < 0) {
            DWORD error = fx_errno_to_wsa(-fd);
            if (error == WSAEMFILE || error == WSAENOBUFS) {
                opq_pop(&s->accepts);
                op_finish(s, op, FALSE, error);
            }
            continue;              /* otherwise: it died in the backlog; take the next */
        }
        if (!(a = ns_new(s->worker, s->owner, s->from_session, fd, &hr))) {
            fx_close_abort(fd);
            opq_pop(&s->accepts);
            op_finish(s, op, FALSE, hr == FWX_E_TERMINATING ? ERROR_OPERATION_ABORTED : WSAENOBUFS);
            continue;
        }
        a->state = NS_CONNECTED;
        a->bound = TRUE;
        memcpy(a->peer, sa, salen);
        a->peer_len = salen;
        op->remote_len = sizeof(op->remote);
        if (fx_sa_to_win32(sa, salen, &op->remote, &op->remote_len) != 0)
            op->remote_len = 0;
        op->local_len = sizeof(op->local);
        if (fx_getsockname(fd, la, &lalen) != 0 ||
            fx_sa_to_win32(la, lalen, &op->local, &op->local_len) != 0)
            op->local_len = 0;
        op->accepted = a;
        char text[FX_ADDRSTRLEN];
        fx_log(FX_LOG_INFO, "netsock %lu (filter %s): accepted netsock %lu from %s", s->id,
               owner_name(s), a->id, format_addr(sa, salen, text, sizeof(text)));
        opq_pop(&s->accepts);
        op_finish(s, op, TRUE, 0);
    }
}

/* Lock held, loop thread: closes the fd once Close's work is done. */
static void pump_close(struct netsock *s)
{
    fail_queue(s, &s->recvs, ERROR_OPERATION_ABORTED);
    fail_queue(s, &s->accepts, ERROR_OPERATION_ABORTED);
    if (s->abortive || s->state != NS_CONNECTED)
        fail_queue(s, &s->sends, ERROR_OPERATION_ABORTED);
    if (s->sends.head || s->fd < 0)
        return;                    /* a graceful close lets the queued sends finish first */
    cancel_connect_timer(s);
    if (s->registered) {
        fx_loop_del_fd(s->worker->loop, s->fd);
        s->registered = FALSE;
        s->armed = 0;
        s->drop_holds++;
    }
    if (s->abortive || s->state == NS_CONNECTING)
        fx_close_abort(s->fd);
    else
        close(s->fd);              /* a FIN if Shutdown did not send one already */
    s->fd = -1;
    fx_log(FX_LOG_INFO, "netsock %lu (filter %s): closed%s (%s), %llu bytes in, %llu out", s->id,
           owner_name(s), s->abortive ? " abortively" : "", state_names[s->state], s->bytes_in,
           s->bytes_out);
}

/* Lock held, loop thread: everything that can progress, progresses. */
static void ns_pump(struct netsock *s)
{
    unsigned events = s->io_events, want = 0;

    s->io_events = 0;
    if (s->finished)
        return;
    if (s->fd >= 0 && !s->registered && !s->closed &&
        (s->state == NS_CONNECTING || s->state == NS_CONNECTED || s->state == NS_LISTENING)) {
        if (fx_loop_add_fd(s->worker->loop, s->fd, 0, ns_io, s) == 0) {
            s->registered = TRUE;
            s->armed = 0;
            ns_hold(s);            /* the registration's */
        }
    }
    if (s->state == NS_CONNECTING && !s->closed)
        pump_connecting(s, events);
    if (s->state == NS_FAILED) {
        fail_queue(s, &s->sends, s->error);
        fail_queue(s, &s->recvs, s->error);
    }
    if (s->state == NS_CONNECTED) {
        if (!s->closed || !s->abortive)
            pump_sends(s);
        if (!s->closed && s->state == NS_CONNECTED)
            pump_recvs(s);
    }
    if (s->state == NS_LISTENING && !s->closed)
        pump_accepts(s);
    if (s->closed)
        pump_close(s);
    if (s->closed && s->fd < 0 && !s->sends.head && !s->recvs.head && !s->accepts.head) {
        s->finished = TRUE;
        return;
    }

    if (s->fd < 0 || !s->registered)
        return;
    switch (s->state) {
    case NS_CONNECTING:
        want = FX_WRITE;
        break;
    case NS_CONNECTED:
        if (s->sends.head)
            want |= FX_WRITE;
        if (s->recvs.head && !s->read_eof && !s->closed)
            want |= FX_READ;
        break;
    case NS_LISTENING:
        if (s->accepts.head && !s->closed)
            want = FX_READ;
        break;
    default:
        break;
    }
    if (want != s->armed && fx_loop_mod_fd(s->worker->loop, s->fd, want) == 0)
        s->armed = want;
}

/* Loop thread, no lock held; the caller keeps s alive (a hold). */
static void ns_run(struct netsock *s)
{
    for (int round = 0; round < 64; round++) {
        struct nsop *list;
        LONG drops;

        EnterCriticalSection(&s->lock);
        s->kick_pending = FALSE;
        ns_pump(s);
        list = s->done;
        s->done = NULL;
        s->done_tail = &s->done;
        drops = s->drop_holds;
        s->drop_holds = 0;
        LeaveCriticalSection(&s->lock);
        while (drops-- > 0)
            ns_unhold(s);          /* never the last: the caller holds one */
        if (!list)
            return;
        if (!ns_deliver(s, list)) {
            fx_log(FX_LOG_NOTICE, "netsock %lu (filter %s): aborting: a filter faulted in a completion",
                   s->id, owner_name(s));
            EnterCriticalSection(&s->lock);
            s->closed = TRUE;
            s->abortive = TRUE;
            LeaveCriticalSection(&s->lock);
        }
    }
    ns_kick(s);                    /* a busy socket yields to the others on its loop */
}

/* ------------------------------------------------------------ IFWXNetworkSocket */

static HRESULT WINAPI netsock_QueryInterface(IFWXNetworkSocket *iface, REFIID riid, void **out)
{
    if (!out)
        return E_POINTER;
    if (IsEqualIID(riid, &IID_IUnknown) || IsEqualIID(riid, &IID_IFWXSocket) ||
        IsEqualIID(riid, &IID_IFWXNetworkSocket)) {
        *out = iface;
        IFWXNetworkSocket_AddRef(iface);
        return S_OK;
    }
    fx_log_unknown_iid("IFWXNetworkSocket", riid);
    *out = NULL;
    return E_NOINTERFACE;
}

static ULONG WINAPI netsock_AddRef(IFWXNetworkSocket *iface)
{
    return InterlockedIncrement(&impl_from_IFWXNetworkSocket(iface)->ref);
}

static ULONG WINAPI netsock_Release(IFWXNetworkSocket *iface)
{
    struct netsock *s = impl_from_IFWXNetworkSocket(iface);
    LONG ref = InterlockedDecrement(&s->ref);

    if (ref == 0) {
        /* ISA asks filters to Close first (reference 8.1.5); tolerate it. */
        EnterCriticalSection(&s->lock);
        BOOL was_open = !s->closed;
        s->closed = TRUE;
        LeaveCriticalSection(&s->lock);
        if (was_open)
            fx_log(FX_LOG_INFO, "netsock %lu (filter %s): released without Close; closing it",
                   s->id, owner_name(s));
        ns_kick(s);
        ns_unhold(s);              /* the COM references' hold */
    } else if (ref < 0) {
        fx_log(FX_LOG_ERROR, "IFWXNetworkSocket %p released more often than referenced", (void *)iface);
        InterlockedExchange(&s->ref, 0x40000000);
        ref = 0;
    }
    return (ULONG)ref;
}

/* Queues a Send or Recv (op is consumed). */
static HRESULT queue_io(struct netsock *s, struct nsop *op)
{
    HRESULT hr = S_OK;

    EnterCriticalSection(&s->lock);
    if (s->closed)
        hr = FWX_E_TERMINATING;
    else if (op->kind == OP_SEND && s->shut_pending)
        hr = wsa_hr(WSAESHUTDOWN);
    else if (s->state == NS_OPEN || s->state == NS_LISTENING)
        hr = wsa_hr(WSAENOTCONN);
    else
        /* Connecting: it waits. Failed: the pump fails it with the error. */
        opq_push(op->kind == OP_SEND ? &s->sends : &s->recvs, op);
    LeaveCriticalSection(&s->lock);
    if (FAILED(hr))
        op_discard(op);
    else
        ns_kick(s);
    return hr;
}

static HRESULT WINAPI netsock_Send(IFWXNetworkSocket *iface, IFWXIOBuffer *buf,
                                   IFWXIOCompletion *sink, UserContextType user)
{
    struct netsock *s = impl_from_IFWXNetworkSocket(iface);
    struct nsop *op;
    BYTE *data;
    DWORD size, cap;
    HRESULT hr;

    if (!buf)
        return E_POINTER;
    /* Filter buffers are asked here, outside any lock; a sent buffer must
     * not change until it is released (reference 8.2.4). */
    if (FAILED(hr = iobuffer_data(buf, &data, &size, &cap)))
        return hr;
    if (!(op = op_new(OP_SEND, buf, sink, NULL, user)))
        return E_OUTOFMEMORY;
    op->data = data;
    op->size = size;
    return queue_io(s, op);
}

static HRESULT WINAPI netsock_SendTo(IFWXNetworkSocket *iface, IFWXIOBuffer *buf, SOCKADDR *addr,
                                     INT len, IFWXIOCompletion *sink, UserContextType user)
{
    /* TCP ignores the address, as Winsock's sendto does. */
    return netsock_Send(iface, buf, sink, user);
}

static HRESULT WINAPI netsock_Recv(IFWXNetworkSocket *iface, IFWXIOBuffer *buf,
                                   IFWXIOCompletion *sink, UserContextType user)
{
    struct netsock *s = impl_from_IFWXNetworkSocket(iface);
    struct nsop *op;
    BYTE *data = NULL;
    DWORD size, cap = 0;
    HRESULT hr;

    if (!sink)
        return E_POINTER;
    if (buf) {
        if (FAILED(hr = iobuffer_data(buf, &data, &size, &cap)))
            return hr;
        if (!cap)
            return E_INVALIDARG;   /* a 0-byte read would look like the end of the stream */
    }
    if (!(op = op_new(OP_RECV, buf, sink, NULL, user)))
        return E_OUTOFMEMORY;
    op->data = data;
    op->size = cap;
    return queue_io(s, op);
}

static HRESULT netsock_end(struct netsock *s, BOOLEAN abortive, BOOL close_too)
{
    HRESULT hr = S_OK;

    EnterCriticalSection(&s->lock);
    if (s->closed) {
        hr = close_too ? S_OK : FWX_E_TERMINATING;
    } else if (abortive || close_too) {
        s->closed = TRUE;
        s->abortive = abortive || (s->linger_on && s->linger_secs == 0);
    } else if (s->state == NS_OPEN || s->state == NS_LISTENING) {
        hr = wsa_hr(WSAENOTCONN);
    } else {
        s->shut_pending = TRUE;    /* sent after the queued sends, once connected */
    }
    LeaveCriticalSection(&s->lock);
    if (hr == S_OK)
        ns_kick(s);
    return hr;
}

static HRESULT WINAPI netsock_Shutdown(IFWXNetworkSocket *iface, BOOLEAN abortive)
{
    /* Shutdown(TRUE) resets the connection, which leaves nothing to use:
     * it is Close(TRUE) (HOST-007). */
    return netsock_end(impl_from_IFWXNetworkSocket(iface), abortive, FALSE);
}

static HRESULT WINAPI netsock_Close(IFWXNetworkSocket *iface, BOOLEAN abortive)
{
    return netsock_end(impl_from_IFWXNetworkSocket(iface), abortive, TRUE);
}

/* Async failures: the connect itself was started but the network said no. */
static BOOL is_network_error(DWORD wsa)
{
    switch (wsa) {
    case WSAECONNREFUSED:
    case WSAENETUNREACH:
    case WSAEHOSTUNREACH:
    case WSAETIMEDOUT:
    case WSAECONNRESET:
    case WSAECONNABORTED:
    case WSAENETDOWN:
        return TRUE;
    default:
        return FALSE;
    }
}

static HRESULT WINAPI netsock_Connect(IFWXNetworkSocket *iface, LPSOCKADDR addr, DWORD len)
{
    struct netsock *s = impl_from_IFWXNetworkSocket(iface);
    unsigned char lin[FX_SOCKADDR_MAX];
    int lin_len, rc;
    char text[FX_ADDRSTRLEN];
    HRESULT hr;

    if (FAILED(hr = addr_from_filter(addr, len, lin, &lin_len)))
        return hr;
    EnterCriticalSection(&s->lock);
    if (s->closed)
        hr = FWX_E_TERMINATING;
    else if (s->state == NS_LISTENING || s->state == NS_FAILED)
        hr = wsa_hr(WSAEINVAL);
    else if (s->state == NS_CONNECTING)
        hr = wsa_hr(WSAEALREADY);
    else if (s->state == NS_CONNECTED)
        hr = wsa_hr(WSAEISCONN);
    else if (!s->bound && (rc = fx_tcp_match_family(s->fd, lin, lin_len)) < 0)
        hr = errno_hr(rc);
    if (SUCCEEDED(hr)) {
        memcpy(s->peer, lin, lin_len);
        s->peer_len = lin_len;
        rc = fx_connect(s->fd, lin, lin_len);
        if (rc >= 0) {
            s->state = rc == 0 ? NS_CONNECTED : NS_CONNECTING;
            s->bound = TRUE;
            fx_log(FX_LOG_INFO, "netsock %lu (filter %s): %s %s", s->id, owner_name(s),
                   rc == 0 ? "connected to" : "connecting to",
                   format_addr(lin, lin_len, text, sizeof(text)));
        } else if (is_network_error(fx_errno_to_wsa(rc))) {
            /* The same outcome as a connect that fails later (HOST-007). */
            s->state = NS_CONNECTING;
            s->bound = TRUE;
            ns_break(s, fx_errno_to_wsa(rc));
        } else {
            hr = errno_hr(rc);
        }
    }
    LeaveCriticalSection(&s->lock);
    if (SUCCEEDED(hr))
        ns_kick(s);
    return hr;
}

static HRESULT WINAPI netsock_Bind(IFWXNetworkSocket *iface, LPSOCKADDR addr, DWORD len)
{
    struct netsock *s = impl_from_IFWXNetworkSocket(iface);
    unsigned char lin[FX_SOCKADDR_MAX];
    int lin_len, rc;
    char text[FX_ADDRSTRLEN];
    HRESULT hr;

    if (FAILED(hr = addr_from_filter(addr, len, lin, &lin_len)))
        return hr;
    EnterCriticalSection(&s->lock);
    if (s->closed)
        hr = FWX_E_TERMINATING;
    else if (s->bound || s->state != NS_OPEN)
        hr = wsa_hr(WSAEINVAL);
    else if ((rc = fx_tcp_match_family(s->fd, lin, lin_len)) < 0 ||
             (rc = fx_bind(s->fd, lin, lin_len)) < 0)
        hr = errno_hr(rc);
    else
        s->bound = TRUE;
    LeaveCriticalSection(&s->lock);
    fx_log(SUCCEEDED(hr) ? FX_LOG_DEBUG : FX_LOG_INFO, "netsock %lu (filter %s): bind %s: 0x%08lx",
           s->id, owner_name(s), format_addr(lin, lin_len, text, sizeof(text)), (unsigned long)hr);
    return hr;
}

static HRESULT get_name(struct netsock *s, SOCKADDR *addr, INT *len, BOOL peer)
{
    unsigned char lin[FX_SOCKADDR_MAX];
    int lin_len = sizeof(lin), rc;
    HRESULT hr = S_OK;

    if (!addr || !len)
        return wsa_hr(WSAEFAULT);
    EnterCriticalSection(&s->lock);
    if (s->closed)
        hr = FWX_E_TERMINATING;
    else if (peer && s->state != NS_CONNECTED)
        hr = wsa_hr(WSAENOTCONN);
    else if (!peer && !s->bound)
        hr = wsa_hr(WSAEINVAL);    /* reference 3.12: not bound */
    else if (peer && s->peer_len) {
        /* Kept from Connect or accept: Linux forgets it once both sides
         * have closed, Winsock answers until closesocket. */
        memcpy(lin, s->peer, s->peer_len);
        lin_len = s->peer_len;
    } else if ((rc = peer ? fx_getpeername(s->fd, lin, &lin_len) : fx_getsockname(s->fd, lin, &lin_len)) < 0)
        hr = errno_hr(rc);
    LeaveCriticalSection(&s->lock);
    if (FAILED(hr))
        return hr;
    return addr_to_filter(lin, lin_len, addr, len);
}

static HRESULT WINAPI netsock_GetSockName(IFWXNetworkSocket *iface, LPSOCKADDR addr, LPINT len)
{
    return get_name(impl_from_IFWXNetworkSocket(iface), addr, len, FALSE);
}

static HRESULT WINAPI netsock_GetPeerName(IFWXNetworkSocket *iface, LPSOCKADDR addr, LPINT len)
{
    return get_name(impl_from_IFWXNetworkSocket(iface), addr, len, TRUE);
}

static HRESULT WINAPI netsock_Listen(IFWXNetworkSocket *iface, INT backlog)
{
    struct netsock *s = impl_from_IFWXNetworkSocket(iface);
    unsigned char lin[FX_SOCKADDR_MAX];
    int lin_len = sizeof(lin), rc;
    char text[FX_ADDRSTRLEN] = "?";
    HRESULT hr = S_OK;

    EnterCriticalSection(&s->lock);
    if (s->closed)
        hr = FWX_E_TERMINATING;
    else if (s->state == NS_CONNECTING || s->state == NS_CONNECTED || s->state == NS_FAILED)
        hr = wsa_hr(WSAEISCONN);
    else if (!s->bound)
        hr = wsa_hr(WSAEINVAL);    /* Winsock: listen needs bind */
    else if ((rc = fx_listen(s->fd, backlog)) < 0)
        hr = errno_hr(rc);
    else {
        if (s->state != NS_LISTENING && fx_getsockname(s->fd, lin, &lin_len) == 0)
            fx_log(FX_LOG_INFO, "netsock %lu (filter %s): listening on %s", s->id, owner_name(s),
                   format_addr(lin, lin_len, text, sizeof(text)));
        s->state = NS_LISTENING;
    }
    LeaveCriticalSection(&s->lock);
    return hr;
}

static HRESULT WINAPI netsock_Accept(IFWXNetworkSocket *iface, IFWXAcceptCompletion *sink,
                                     UserContextType user)
{
    struct netsock *s = impl_from_IFWXNetworkSocket(iface);
    struct nsop *op;
    HRESULT hr = S_OK;

    if (!sink)
        return E_POINTER;
    if (!(op = op_new(OP_ACCEPT, NULL, NULL, sink, user)))
        return E_OUTOFMEMORY;
    EnterCriticalSection(&s->lock);
    if (s->closed)
        hr = FWX_E_TERMINATING;
    else if (s->state != NS_LISTENING)
        hr = wsa_hr(WSAEINVAL);
    else
        opq_push(&s->accepts, op);
    LeaveCriticalSection(&s->lock);
    if (FAILED(hr))
        op_discard(op);
    else
        ns_kick(s);
    return hr;
}

/* Win32 option -> enum fx_sockopt, or 0 for options the host keeps itself
 * (*kept set) or does not know (-1). */
static int map_option(int level, int name, BOOL *kept)
{
    *kept = FALSE;
    if (level == WIN_SOL_SOCKET) {
        switch (name) {
        case WIN_SO_REUSEADDR:
        case WIN_SO_LINGER:
        case WIN_SO_DONTLINGER:
            *kept = TRUE;
            return 0;
        case WIN_SO_KEEPALIVE:  return FX_SO_KEEPALIVE;
        case WIN_SO_SNDBUF:     return FX_SO_SNDBUF;
        case WIN_SO_RCVBUF:     return FX_SO_RCVBUF;
        case WIN_SO_ERROR:      return FX_SO_ERROR;
        case WIN_SO_TYPE:       return FX_SO_TYPE;
        case WIN_SO_ACCEPTCONN: return FX_SO_ACCEPTCONN;
        }
    } else if (level == WIN_IPPROTO_TCP && name == WIN_TCP_NODELAY) {
        return FX_TCP_NODELAY;
    }
    return -1;
}

static HRESULT WINAPI netsock_GetSockOpt(IFWXNetworkSocket *iface, int level, int name,
                                         char *optval, int *optlen)
{
    struct netsock *s = impl_from_IFWXNetworkSocket(iface);
    BOOL kept;
    int opt = map_option(level, name, &kept), value = 0, rc;
    HRESULT hr = S_OK;

    if (opt < 0)
        return wsa_hr(WSAENOPROTOOPT);
    if (!optval || !optlen || *optlen < (int)sizeof(int))
        return wsa_hr(WSAEFAULT);
    EnterCriticalSection(&s->lock);
    if (s->closed) {
        hr = FWX_E_TERMINATING;
    } else if (kept && name == WIN_SO_LINGER) {
        struct win_linger l = { (USHORT)(s->linger_on ? 1 : 0), s->linger_secs };
        memcpy(&value, &l, sizeof(l));
    } else if (kept) {
        value = name == WIN_SO_REUSEADDR ? s->reuseaddr : !s->linger_on;
    } else if (opt == FX_SO_ERROR && s->state == NS_FAILED) {
        value = (int)s->error;     /* what the failed connect or the broken connection said */
    } else if (opt == FX_SO_ERROR && s->state == NS_CONNECTING) {
        value = 0;                 /* reading SO_ERROR would take the connect's result from the loop */
    } else if ((rc = fx_sockopt_get(s->fd, opt, &value)) < 0) {
        hr = errno_hr(rc);
    } else if (opt == FX_SO_ERROR) {
        value = fx_errno_to_wsa(value);
    }
    LeaveCriticalSection(&s->lock);
    if (SUCCEEDED(hr)) {
        memcpy(optval, &value, sizeof(int));
        *optlen = sizeof(int);
    }
    return hr;
}

static HRESULT WINAPI netsock_SetSockOpt(IFWXNetworkSocket *iface, int level, int name,
                                         char *optval, int optlen)
{
    struct netsock *s = impl_from_IFWXNetworkSocket(iface);
    BOOL kept;
    int opt = map_option(level, name, &kept), value = 0, rc;
    HRESULT hr = S_OK;

    if (opt < 0 || opt == FX_SO_ERROR || opt == FX_SO_TYPE || opt == FX_SO_ACCEPTCONN)
        return wsa_hr(WSAENOPROTOOPT);
    if (!optval || optlen < 1)
        return wsa_hr(WSAEFAULT);
    if (name == WIN_SO_LINGER && level == WIN_SOL_SOCKET) {
        if (optlen < (int)sizeof(struct win_linger))
            return wsa_hr(WSAEFAULT);
    } else if (optlen >= (int)sizeof(int)) {
        memcpy(&value, optval, sizeof(int));
    } else if (opt == FX_SO_SNDBUF || opt == FX_SO_RCVBUF) {
        return wsa_hr(WSAEFAULT);
    } else {
        value = (unsigned char)optval[0];     /* a one-byte BOOL, as Winsock accepts */
    }
    EnterCriticalSection(&s->lock);
    if (s->closed) {
        hr = FWX_E_TERMINATING;
    } else if (kept && name == WIN_SO_LINGER) {
        struct win_linger l;
        memcpy(&l, optval, sizeof(l));
        s->linger_on = l.l_onoff != 0;
        s->linger_secs = l.l_linger;
    } else if (kept && name == WIN_SO_DONTLINGER) {
        s->linger_on = value == 0;
    } else if (kept) {
        s->reuseaddr = value != 0;
    } else if ((rc = fx_sockopt_set(s->fd, opt, value)) < 0) {
        hr = errno_hr(rc);
    }
    LeaveCriticalSection(&s->lock);
    return hr;
}

static HRESULT WINAPI netsock_SetPacketFilterOptions(IFWXNetworkSocket *iface, DWORD options)
{
    static LONG once;
    struct netsock *s = impl_from_IFWXNetworkSocket(iface);

    if (!InterlockedExchange(&once, 1))
        fx_log(FX_LOG_DEBUG, "IFWXNetworkSocket::SetPacketFilterOptions(0x%08lx): no packet filter "
               "on Linux; ignored (ABI-006)", (unsigned long)options);
    return s->closed ? FWX_E_TERMINATING : S_OK;
}

FX_HOST_VTBL(IFWXNetworkSocket, netsock_vtbl) = {
    {
        netsock_QueryInterface,
        netsock_AddRef,
        netsock_Release,
        netsock_Send,
        netsock_SendTo,
        netsock_Recv,
        netsock_Shutdown,
        netsock_Close,
        netsock_Connect,
        netsock_Bind,
        netsock_GetSockName,
        netsock_GetPeerName,
        netsock_Listen,
        netsock_GetSockOpt,
        netsock_SetSockOpt,
        netsock_Accept,
        netsock_SetPacketFilterOptions,
    },
    FX_TRAPS(IFWXNetworkSocket)
};

/* ------------------------------------------------------------ creation and stop */

HRESULT netsock_create(struct session *session, INT protocol, IFWXNetworkSocket **out)
{
    const char *iface = session ? "IFWXSession" : "IFWXFirewall";
    struct host *h = the_host;
    struct worker *w;
    struct netsock *s;
    HRESULT hr;
    int fd;

    if (!out)
        return E_POINTER;
    *out = NULL;
    /* FWX_PROTOCOL_* or IPPROTO_* (ABI-018). */
    if (protocol == FWX_PROTOCOL_UDP || protocol == 17) {
        if (session)
            return FX_NOTIMPL("IFWXSession", "CreateNetworkSocket(UDP)");
        return FX_NOTIMPL("IFWXFirewall", "CreateNetworkSocket(UDP)");
    }
    if (protocol != FWX_PROTOCOL_TCP && protocol != 6)
        return E_INVALIDARG;
    if (!h || !h->workers || h->nworkers < 1) {
        static LONG once;
        if (!InterlockedExchange(&once, 1))
            fx_log(FX_LOG_WARN, "%s::CreateNetworkSocket: no Firewall service runs in this process "
                   "(network sockets need fwxhost's workers); returning E_NOTIMPL", iface);
        return E_NOTIMPL;
    }
    BOOL callers = (w = host_current_worker()) != NULL;
    if (!callers)
        w = &h->workers[(unsigned long)InterlockedIncrement(&next_worker) % (unsigned)h->nworkers];
    if ((fd = fx_tcp_socket(NULL, 0)) < 0)
        return errno_hr(fd);
    if (!(s = ns_new(w, guard_current_filter(), session != NULL, fd, &hr))) {
        fx_close_abort(fd);
        return hr;
    }
    fx_log(FX_LOG_INFO, "netsock %lu: created by filter %s through %s (worker %d, %s)", s->id,
           owner_name(s), iface, w->index, callers ? "the caller's" : "in turn");
    *out = &s->IFWXNetworkSocket_iface;
    return S_OK;
}

static void ns_stop_task(void *arg)
{
    struct netsock *s = arg;
    EnterCriticalSection(&s->lock);
    s->closed = TRUE;
    s->abortive = TRUE;
    LeaveCriticalSection(&s->lock);
    ns_run(s);
    InterlockedDecrement(&stop_pending);
    ns_unhold(s);
}

void netsock_settle_profile(struct fx_filter *f)
{
    AcquireSRWLockExclusive(&live_lock);
    for (struct netsock *s = live_head; s; s = s->live_next)
        if (s->owner == f)
            s->IFWXNetworkSocket_iface.lpVtbl = ns_vtbl_for(f);
    ReleaseSRWLockExclusive(&live_lock);
}

void netsock_stop_all(unsigned timeout_ms)
{
    struct netsock *s, **all = NULL;
    size_t n = 0, cap = 0;

    AcquireSRWLockExclusive(&live_lock);
    live_stopping = TRUE;
    for (s = live_head; s; s = s->live_next) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            struct netsock **v = realloc(all, ncap * sizeof(*v));
            if (!v)
                break;
            all = v;
            cap = ncap;
        }
        if (ns_try_hold(s))
            all[n++] = s;
    }
    ReleaseSRWLockExclusive(&live_lock);
    if (!n) {
        free(all);
        return;
    }
    if (!timeout_ms) {
        /* The loops never ran: nothing would deliver. Filters' Close and
         * Release still work; the fds go with the process. */
        for (size_t i = 0; i < n; i++)
            ns_unhold(all[i]);
        free(all);
        return;
    }
    fx_log(FX_LOG_INFO, "closing %lu network socket(s) of filters", (unsigned long)n);
    InterlockedExchange(&stop_pending, (LONG)n);
    for (size_t i = 0; i < n; i++)
        fx_loop_post(all[i]->worker->loop, ns_stop_task, all[i]);
    free(all);
    uint64_t deadline = fx_now_ms() + timeout_ms;
    while (stop_pending > 0 && fx_now_ms() < deadline)
        Sleep(5);
    if (stop_pending > 0)
        fx_log(FX_LOG_WARN, "%ld network socket(s) did not finish closing within %u ms",
               (long)stop_pending, timeout_ms);
}

/* The tmg profile's layout (reference 3.12, 4): SetSockOpt then GetSockOpt. Slot 16 is
 * SetIpFilter in TMG; it keeps SetPacketFilterOptions here, which ignores its argument
 * (ABI-303). */
#define NS_SLOT(field) typeof(((IFWXNetworkSocketVtbl *)0)->field)
FX_HOST_VTBL_NAMED(IFWXNetworkSocket, netsock_vtbl_tmg, "IFWXNetworkSocket(tmg)") = {
    {
        netsock_QueryInterface,
        netsock_AddRef,
        netsock_Release,
        netsock_Send,
        netsock_SendTo,
        netsock_Recv,
        netsock_Shutdown,
        netsock_Close,
        netsock_Connect,
        netsock_Bind,
        netsock_GetSockName,
        netsock_GetPeerName,
        netsock_Listen,
        (NS_SLOT(GetSockOpt))netsock_SetSockOpt,
        (NS_SLOT(SetSockOpt))netsock_GetSockOpt,
        netsock_Accept,
        netsock_SetPacketFilterOptions,
    },
    FX_TRAPS(IFWXNetworkSocket)
};
