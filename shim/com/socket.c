/*
 * socket.c — IFWXSocket, the endpoints handed to data filters, and the
 * byte pump between them (reference §2.7, §8.2, §8.3; the seed).
 *
 * Two kinds of socket make up a chain  client ↔ f1 ↔ … ↔ fN ↔ server:
 *   SOCK_NET   an end of the chain, backed by a native nonblocking fd;
 *   SOCK_PIPE  one side of an in-memory link between two filters: a Send
 *              on it lands in its peer's receive queue and completes when
 *              a Recv of the peer has taken the buffer ("the next link
 *              accepted it"); buffers pass by reference.
 *
 *   SOCK_DATAGRAM an end of a UDP chain (udp.c): whole datagrams, each with
 *              its external address, which Recv completions hand to the
 *              filter as CompleteAsyncIO's ExternalAddress (the seed: the
 *              source when receiving from the external side, the target
 *              when receiving from the internal side; NULL for TCP).
 *
 * Filter calls (Send/Recv/Shutdown/Close) only queue work under the
 * connection lock and kick the connection; the loop thread does the work
 * in sock_pump and the completions are delivered after the lock is
 * dropped — never inside the call that started the I/O.
 */
#include "fwxhost.h" /* first: Winsock before any libc header */
#include "trap.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fxudp.h"
#include "guard.h"
#include "hostobj.h"

/* fx_recv/fx_send return -errno; Linux EAGAIN (errno.h is Wine's here). */
#define LINUX_EAGAIN 11

/* Read size for host-supplied buffers: the size the workers' buffer caches
 * hold (64 KiB: half the syscalls per byte of 32 KiB). */
#define SOCK_READ_SIZE IOBUFFER_POOL_SIZE

struct op {
    struct completion record;      /* first: becomes the completion record */
    struct op *next;
    IFWXIOBuffer *buf;             /* referenced; NULL for Recv(NULL) */
    BYTE *data;                    /* buf's memory, read when the op was queued */
    DWORD len;                     /* Send: data size; Recv: capacity */
    IFWXIOCompletion *sink;        /* referenced; may be NULL for sends */
    UserContextType user;
    struct fx_filter *owner;
    DWORD done;                    /* net sends: bytes already written */
    BOOL is_send_op;               /* Send/SendTo, or a datagram the host received */
    int addr_len;                  /* UDP: the datagram's external address (Win32 layout) */
    unsigned char addr[28];
};

struct opq {
    struct op *head, **tail;
};

struct sock {
    IFWXSocket IFWXSocket_iface;
    LONG ref;
    struct connection *conn;       /* referenced */
    enum sock_kind kind;
    int end;                       /* SOCK_NET: 0 client side, 1 server side */
    int dir;                       /* direction of what we send: 0 towards the server, 1 towards the client */
    int fd;
    unsigned armed;                /* FX_READ|FX_WRITE currently registered */
    struct sock *peer;             /* SOCK_PIPE */
    struct opq recvs;              /* pending Recv */
    struct opq rx;                 /* SOCK_PIPE: the peer's sends, waiting for a Recv */
    DWORD rx_offset;               /* bytes of rx.head already copied out */
    struct opq sends;              /* SOCK_NET: waiting to be written */
    BOOL rx_eof;                   /* SOCK_PIPE: the peer shut down its sending side */
    BOOL rx_reset;                 /* SOCK_PIPE: the peer aborted */
    BOOL read_eof;                 /* SOCK_NET: the remote end finished sending */
    BOOL drained;                  /* SOCK_NET: the last read was short; wait for FX_READ
                                      instead of paying for a read that says EAGAIN */
    BOOL shut_pending, shut_done;  /* our sending side: requested, done */
    BOOL fin_deferred;             /* shut_done, FIN not sent yet: close will send it
                                      unless the pass ends without closing (sock_end_pass) */
    BOOL disarm_deferred;          /* finished but still armed: as fin_deferred */
    BOOL closed;                   /* Close called: no more Recv */
    BOOL dead;                     /* torn down: every call answers FWX_E_TERMINATING */
    BOOL owns_fd;                  /* SOCK_DATAGRAM: fd is ours to read and close */
    unsigned rx_count;             /* SOCK_DATAGRAM: datagrams queued in rx */
};

/* SOCK_DATAGRAM: datagrams queued per end before new ones are dropped. */
#define DGRAM_RX_MAX 1024
#define DGRAM_MAX 65536

static struct fx_vtbl_IFWXSocket sock_vtbl;

static inline struct sock *impl_from_IFWXSocket(IFWXSocket *iface)
{
    return CONTAINING_RECORD(iface, struct sock, IFWXSocket_iface);
}

IFWXSocket *sock_iface(struct sock *s)
{
    return &s->IFWXSocket_iface;
}

static void opq_init(struct opq *q)
{
    q->head = NULL;
    q->tail = &q->head;
}

static void opq_push(struct opq *q, struct op *op)
{
    op->next = NULL;
    *q->tail = op;
    q->tail = &op->next;
}

static struct op *opq_pop(struct opq *q)
{
    struct op *op = q->head;
    if (op && !(q->head = op->next))
        q->tail = &q->head;
    return op;
}

/* Operation records are the data path's only allocation per buffer. The
 * threads that make and free them (the workers: filters post their next
 * Recv/Send from the completion we deliver there) keep up to OP_CACHE_MAX
 * released ones: callgrind put 6 calloc/free pairs per filtered
 * connection at ~6 % of the worker's own instructions. */
#define OP_CACHE_MAX 256

struct op_cache {
    struct op *free;               /* linked through ->next */
    unsigned count;
};

static struct fx_tls op_cache_tls = FX_TLS_INIT;

void sock_thread_cache_init(void)
{
    if (!fx_tls_get(&op_cache_tls))
        fx_tls_set(&op_cache_tls, calloc(1, sizeof(struct op_cache)));
}

void sock_thread_cache_free(void)
{
    struct op_cache *oc = fx_tls_get(&op_cache_tls);
    if (!oc)
        return;
    while (oc->free) {
        struct op *op = oc->free;
        oc->free = op->next;
        free(op);
    }
    free(oc);
    fx_tls_set(&op_cache_tls, NULL);
}

static struct op *op_alloc(void)
{
    struct op_cache *oc = fx_tls_get(&op_cache_tls);
    struct op *op;
    if (oc && (op = oc->free)) {
        oc->free = op->next;
        oc->count--;
        memset(op, 0, sizeof(*op));
        return op;
    }
    return calloc(1, sizeof(*op));
}

static void op_free(struct op *op)
{
    struct op_cache *oc = fx_tls_get(&op_cache_tls);
    if (oc && oc->count < OP_CACHE_MAX) {
        op->next = oc->free;
        oc->free = op;
        oc->count++;
        return;
    }
    free(op);
}

void completion_free(struct completion *cp)
{
    op_free(CONTAINING_RECORD(cp, struct op, record));
}

/* Queue op's completion. result (a reference, ours to give) goes to the
 * sink; the op's own buffer reference travels with the completion and is
 * dropped after delivery, unless it is the result itself. set_size >= 0:
 * the result's data size, set at delivery (a filter's buffer class is filter
 * code, which never runs under the connection lock). */
static void op_complete(struct connection *c, struct op *op, BOOL ok, DWORD err,
                        IFWXIOBuffer *result, long set_size)
{
    struct completion *cp = &op->record;
    cp->sink = op->sink;
    cp->owner = op->owner;
    cp->success = ok;
    cp->error = ok ? 0 : err;
    cp->buffer = result;
    cp->user = op->user;
    cp->hold = op->buf == result ? NULL : op->buf;
    cp->set_size = set_size;
    /* Receives of a UDP connection carry the datagram's external address. */
    cp->ext_len = 0;
    if (ok && result && !op->is_send_op && op->addr_len > 0) {
        memcpy(cp->ext, op->addr, op->addr_len);
        cp->ext_len = op->addr_len;
    }
    completion_push(c, cp);     /* freed after delivery, with the op around it */
}

/* A host buffer holding a copy of len bytes, charged to c. NULL on out of
 * memory. */
static IFWXIOBuffer *host_copy(struct connection *c, const BYTE *data, DWORD len)
{
    IFWXIOBuffer *buf;
    BYTE *dst;
    DWORD size, cap;
    if (FAILED(iobuffer_create(len, &buf)))
        return NULL;
    iobuffer_charge(buf, &c->charge);
    iobuffer_data(buf, &dst, &size, &cap);
    memcpy(dst, data, len);
    IFWXIOBuffer_SetDataSize(buf, len);
    return buf;
}

static void fail_queue(struct connection *c, struct opq *q, DWORD err)
{
    struct op *op;
    while ((op = opq_pop(q)))
        op_complete(c, op, FALSE, err, NULL, -1);
}

/* ------------------------------------------------------------ net ends */

static void net_set_interest(struct sock *s, unsigned want)
{
    if (s->fd < 0 || want == s->armed)
        return;
    if (fx_loop_mod_fd(s->conn->worker->loop, s->fd, want) == 0)
        s->armed = want;
}

static BOOL read_gate_open(struct sock *s)
{
    struct connection *c = s->conn;
    size_t limit = the_host ? the_host->config->host.max_buffer : 262144;
    return c->inflight[s->end] < limit;
}

static void net_pump_sends(struct sock *s)
{
    struct connection *c = s->conn;
    struct op *op;

    while ((op = s->sends.head)) {
        while (op->done < op->len) {
            long n = fx_send(s->fd, op->data + op->done, op->len - op->done);
            if (n == -LINUX_EAGAIN)
                return;
            if (n < 0) {
                DWORD err = fx_errno_to_wsa((int)-n);
                record_io(c, s->end, NULL, n);
                fail_queue(c, &s->sends, err);
                c->aborted = TRUE;
                return;
            }
            op->done += (DWORD)n;
            if (s->end == 0)
                c->bytes_out += (unsigned long long)n;    /* to the client */
            size_t *inflight = &c->inflight[s->dir];
            *inflight = *inflight > (size_t)n ? *inflight - (size_t)n : 0;
        }
        opq_pop(&s->sends);
        op_complete(c, op, TRUE, 0, NULL, -1);
    }
    if (s->shut_pending && !s->shut_done) {
        /* When the peer has finished too, this usually ends the connection
         * in this very pass, and close() sends the FIN: shutdown() would be
         * a syscall for nothing.  connection_run_now sends it if the pass
         * ends without closing. */
        if (s->read_eof)
            s->fin_deferred = TRUE;
        else
            fx_shutdown_write(s->fd);
        s->shut_done = TRUE;
    }
}

void sock_end_pass(struct sock *s)
{
    if (s->fin_deferred) {
        s->fin_deferred = FALSE;
        if (s->fd >= 0)
            fx_shutdown_write(s->fd);
    }
    if (s->disarm_deferred) {
        s->disarm_deferred = FALSE;
        net_set_interest(s, 0);
    }
}

static void net_pump_recvs(struct sock *s)
{
    struct connection *c = s->conn;
    struct op *op;

    while ((op = s->recvs.head)) {
        IFWXIOBuffer *buf = op->buf;
        BYTE *data = op->data;
        DWORD cap = op->len, size;
        long n = 0;

        if (!s->read_eof && (!read_gate_open(s) || s->drained))
            return;
        if (!buf) {
            if (FAILED(iobuffer_create(SOCK_READ_SIZE, &buf)))
                return;    /* out of memory: retry on the next pass */
            iobuffer_set_owner(buf, op->owner);
            iobuffer_charge(buf, &c->charge);
            iobuffer_data(buf, &data, &size, &cap);
        }
        if (!s->read_eof) {
            n = fx_recv(s->fd, data, cap);
            if (n != -LINUX_EAGAIN)
                record_io(c, s->end, data, n);
            if (n == -LINUX_EAGAIN || n < 0) {
                if (buf != op->buf)
                    IFWXIOBuffer_Release(buf);     /* ours: no filter code */
                if (n == -LINUX_EAGAIN)
                    return;
                opq_pop(&s->recvs);
                op_complete(c, op, FALSE, fx_errno_to_wsa((int)-n), NULL, -1);
                c->aborted = TRUE;
                continue;
            }
            if (n == 0)
                s->read_eof = TRUE;
            else if ((DWORD)n < cap)
                s->drained = TRUE;
        }
        /* 0 bytes in a successful completion is the end of the stream. */
        if (s->end == 0)
            c->bytes_in += (unsigned long long)n;         /* from the client */
        opq_pop(&s->recvs);
        op_complete(c, op, TRUE, 0, buf, n);
    }
}

static void net_pump(struct sock *s)
{
    unsigned want = 0;

    if (s->fd < 0)
        return;
    net_pump_sends(s);
    if (s->closed)
        fail_queue(s->conn, &s->recvs, ERROR_OPERATION_ABORTED);
    else
        net_pump_recvs(s);
    if (s->sends.head)
        want |= FX_WRITE;
    if (!s->read_eof && read_gate_open(s)) {
        if (s->recvs.head)
            want |= FX_READ;
        else if ((s->armed & FX_READ) && s->drained && !s->closed)
            /* Lazy disarm: the completion we are about to deliver usually
             * makes the filter post its next Recv, which would re-arm at
             * once (an epoll_ctl pair per exchange). The socket is empty,
             * so staying armed costs nothing; if the kernel reports data
             * nobody asked for, sock_io clears drained and this pass
             * disarms for real. */
            want |= FX_READ;
    }
    /* A finished end whose connection closes at the end of this pass
     * needs no EPOLL_CTL_DEL: close() removes it (sock_end_pass disarms
     * it if the connection stays open, or its EOF would spin the loop). */
    if (!want && s->armed && s->read_eof && s->shut_done && !s->sends.head) {
        s->disarm_deferred = TRUE;
        return;
    }
    net_set_interest(s, want);
}

/* ------------------------------------------------------------ pipe links */

static void pipe_pump(struct sock *s)
{
    struct connection *c = s->conn;
    struct op *recv, *send;

    while ((recv = s->recvs.head)) {
        if (s->closed || s->rx_reset) {
            opq_pop(&s->recvs);
            op_complete(c, recv, FALSE, s->closed ? ERROR_OPERATION_ABORTED : WSAECONNRESET,
                        NULL, -1);
            continue;
        }
        if (!(send = s->rx.head)) {
            if (!s->rx_eof)
                return;
            IFWXIOBuffer *empty = recv->buf;
            if (!empty && FAILED(iobuffer_create(0, &empty)))
                return;
            if (!recv->buf)
                iobuffer_charge(empty, &c->charge);
            opq_pop(&s->recvs);
            op_complete(c, recv, TRUE, 0, empty, 0);
            continue;
        }
        DWORD size = send->len;
        if (size == 0) {
            /* An empty Send moves nothing; completing it keeps the sender
             * going without faking an end of stream to the receiver. */
            opq_pop(&s->rx);
            op_complete(c, send, TRUE, 0, NULL, -1);
            continue;
        }
        IFWXIOBuffer *out;
        long out_size = -1;
        if (!recv->buf) {
            if (s->rx_offset == 0) {
                /* The common case: the sender's buffer itself, by reference:
                 * the send op's reference moves to the receiver. */
                out = send->buf;
                send->buf = NULL;
            } else if (!(out = host_copy(c, send->data + s->rx_offset, size - s->rx_offset))) {
                return;
            }
            s->rx_offset = size;
        } else {
            DWORD n = size - s->rx_offset < recv->len ? size - s->rx_offset : recv->len;
            memcpy(recv->data, send->data + s->rx_offset, n);
            out = recv->buf;
            out_size = n;
            /* A datagram never continues in the next Recv: what did not
             * fit is cut, as Winsock's recv cuts it. */
            s->rx_offset = c->dgram ? size : s->rx_offset + n;
        }
        recv->addr_len = send->addr_len;
        memcpy(recv->addr, send->addr, sizeof(recv->addr));
        opq_pop(&s->recvs);
        op_complete(c, recv, TRUE, 0, out, out_size);
        if (s->rx_offset >= size) {
            opq_pop(&s->rx);
            s->rx_offset = 0;
            size_t *inflight = &c->inflight[s->peer ? s->peer->dir : 0];
            *inflight = *inflight > size ? *inflight - size : 0;
            op_complete(c, send, TRUE, 0, NULL, -1);
        }
    }
}

/* ------------------------------------------------------------ datagram ends */

/* A host-made op holding one received datagram, from win_ext. */
static struct op *dgram_op(struct connection *c, const void *data, DWORD len,
                           const void *win_ext, int ext_len)
{
    struct op *op = op_alloc();
    if (!op)
        return NULL;
    if (!(op->buf = host_copy(c, data, len))) {
        op_free(op);
        return NULL;
    }
    DWORD size, cap;
    iobuffer_data(op->buf, &op->data, &size, &cap);
    op->len = len;
    op->is_send_op = TRUE;
    if (win_ext && ext_len > 0 && ext_len <= (int)sizeof(op->addr)) {
        memcpy(op->addr, win_ext, ext_len);
        op->addr_len = ext_len;
    }
    return op;
}

static void dgram_pump_sends(struct sock *s)
{
    struct connection *c = s->conn;
    struct op *op;
    unsigned char sa[28];
    int salen;

    while ((op = s->sends.head)) {
        long n;
        if (s->end == 0) {
            n = fx_udp_sendto(s->fd, op->data, op->len, c->client_addr, c->client_len);
        } else {
            salen = sizeof(sa);
            /* The connected target needs no address; others were checked
             * by SendTo (udp.c's rule: a publish rule reaches its target only). */
            if (op->addr_len > 0 && fx_sa_from_win32(op->addr, op->addr_len, sa, &salen) == 0 &&
                !fx_sa_equal(sa, salen, c->target_addr, c->target_len))
                n = fx_udp_sendto(s->fd, op->data, op->len, sa, salen);
            else
                n = fx_udp_sendto(s->fd, op->data, op->len, NULL, 0);
        }
        if (n == -LINUX_EAGAIN && s->owns_fd)
            return;                           /* FX_WRITE will bring us back */
        opq_pop(&s->sends);
        size_t *inflight = &c->inflight[s->dir];
        *inflight = *inflight > op->len ? *inflight - op->len : 0;
        if (n >= 0) {
            if (s->end == 0)
                c->bytes_out += (unsigned long long)n;
        } else {
            /* UDP promises nothing: a datagram the kernel refused is lost,
             * as it would be on the wire. The sender hears success
             * (HOST-203); the log says why. */
            fx_log(FX_LOG_DEBUG, "conn %lu: a datagram of %lu bytes to the %s was lost: %s", c->id,
                   (unsigned long)op->len, s->end ? "target" : "client", strerror((int)-n));
        }
        op_complete(c, op, TRUE, 0, NULL, -1);
    }
}

/* The target end's own socket (the client end is fed by udp.c). */
static void dgram_pump_reads(struct sock *s)
{
    struct connection *c = s->conn;
    unsigned char buf[DGRAM_MAX];

    while (s->rx_count < DGRAM_RX_MAX) {
        unsigned char from[28];
        int fromlen = sizeof(from);
        SOCKADDR_STORAGE win;
        int winlen = sizeof(win);
        long n = fx_udp_recvfrom(s->fd, buf, sizeof(buf), from, &fromlen);
        if (n == -LINUX_EAGAIN)
            return;
        if (n < 0)
            continue;       /* ICMP errors of earlier sends surface here: not ours to report */
        /* The datagram's external address is its source. */
        if (fx_sa_to_win32(from, fromlen, &win, &winlen) != 0)
            winlen = 0;
        struct op *op = dgram_op(c, buf, (DWORD)n, &win, winlen);
        if (!op)
            return;
        opq_push(&s->rx, op);
        s->rx_count++;
    }
}

static void dgram_pump(struct sock *s)
{
    struct connection *c = s->conn;
    struct op *recv, *dg;
    unsigned want = 0;

    dgram_pump_sends(s);
    if (s->owns_fd && s->fd >= 0 && !s->closed)
        dgram_pump_reads(s);
    while ((recv = s->recvs.head)) {
        if (s->closed) {
            opq_pop(&s->recvs);
            op_complete(c, recv, FALSE, ERROR_OPERATION_ABORTED, NULL, -1);
            continue;
        }
        if (!(dg = opq_pop(&s->rx)))
            break;
        s->rx_count--;
        IFWXIOBuffer *out;
        long out_size = -1;
        if (!recv->buf) {
            out = dg->buf;            /* the host buffer moves to the receiver */
            dg->buf = NULL;
        } else {
            DWORD n = dg->len < recv->len ? dg->len : recv->len;   /* cut, as Winsock */
            memcpy(recv->data, dg->data, n);
            out = recv->buf;
            out_size = n;
        }
        recv->addr_len = dg->addr_len;
        memcpy(recv->addr, dg->addr, sizeof(recv->addr));
        opq_pop(&s->recvs);
        op_complete(c, recv, TRUE, 0, out, out_size);
        iobuffer_ref(dg->buf, -1);    /* host buffer: no filter code */
        free(dg);
    }
    if (s->owns_fd && s->fd >= 0) {
        if (s->sends.head)
            want |= FX_WRITE;
        if (!s->closed && s->rx_count < DGRAM_RX_MAX)
            want |= FX_READ;
        net_set_interest(s, want);
    }
}

BOOL sock_dgram_push(struct sock *s, const void *data, DWORD len, const void *win_ext, int ext_len)
{
    struct connection *c = s->conn;
    struct op *op = NULL;
    BOOL queued = FALSE;

    EnterCriticalSection(&c->lock);
    if (!s->dead && !s->closed && s->rx_count < DGRAM_RX_MAX &&
        (op = dgram_op(c, data, len, win_ext, ext_len))) {
        opq_push(&s->rx, op);
        s->rx_count++;
        c->bytes_in += len;
        queued = TRUE;
    }
    LeaveCriticalSection(&c->lock);
    if (queued)
        connection_kick(c);
    return queued;
}

void sock_pump(struct sock *s)
{
    if (s->dead)
        return;
    if (s->kind == SOCK_NET)
        net_pump(s);
    else if (s->kind == SOCK_DATAGRAM)
        dgram_pump(s);
    else
        pipe_pump(s);
}

void sock_abort_all(struct sock *s, DWORD error)
{
    struct connection *c = s->conn;
    fail_queue(c, &s->recvs, error);
    fail_queue(c, &s->rx, error);
    fail_queue(c, &s->sends, error);
    s->rx_count = 0;
    if (s->kind == SOCK_DATAGRAM && s->fd >= 0) {
        if (s->owns_fd) {
            fx_loop_del_fd(c->worker->loop, s->fd);
            fx_udp_close(s->fd);
        }
        s->fd = -1;
    }
    if (s->fd >= 0) {
        /* Closed right below, never duplicated: closing takes it out of
         * the epoll set without an EPOLL_CTL_DEL. */
        fx_loop_forget_fd(c->worker->loop, s->fd);
        if (c->aborted || !s->shut_done || !s->read_eof)
            fx_close_abort(s->fd);
        else
            close(s->fd);
        s->fd = -1;
    }
    s->dead = TRUE;
}

int sock_is_finished(struct sock *s)
{
    /* A datagram end has no end of stream: it lasts until a filter closes
     * it or the destination expires (udp.c). */
    if (s->kind == SOCK_DATAGRAM)
        return s->dead || s->closed;
    if (s->kind != SOCK_NET || s->dead)
        return 1;
    return s->read_eof && s->shut_done && !s->sends.head;
}

/* ------------------------------------------------------------ IFWXSocket */

static HRESULT WINAPI sock_QueryInterface(IFWXSocket *iface, REFIID riid, void **out)
{
    if (!out)
        return E_POINTER;
    if (IsEqualIID(riid, &IID_IUnknown) || IsEqualIID(riid, &IID_IFWXSocket)) {
        *out = iface;
        IFWXSocket_AddRef(iface);
        return S_OK;
    }
    fx_log_unknown_iid("IFWXSocket", riid);
    *out = NULL;
    return E_NOINTERFACE;
}

static ULONG WINAPI sock_AddRef(IFWXSocket *iface)
{
    return InterlockedIncrement(&impl_from_IFWXSocket(iface)->ref);
}

static ULONG WINAPI sock_Release(IFWXSocket *iface)
{
    struct sock *s = impl_from_IFWXSocket(iface);
    LONG ref = InterlockedDecrement(&s->ref);
    if (ref == 0) {
        /* Teardown emptied the queues; the connection outlives its sockets. */
        IFWXConnection_Release(connection_iface(s->conn));
        free(s);
    } else if (ref < 0) {
        fx_log(FX_LOG_ERROR, "IFWXSocket %p released more often than referenced", (void *)iface);
        InterlockedExchange(&s->ref, 0x40000000);
        ref = 0;
    }
    return (ULONG)ref;
}

void sock_release(struct sock *s)
{
    sock_Release(&s->IFWXSocket_iface);
}

/* Current filter, for blaming faults in completions on the right DLL: the
 * filter whose guarded call is running on this thread (SetSockets, a
 * completion, an event handler), else the event's. */
static struct fx_filter *caller_filter(struct sock *s)
{
    struct fx_filter *f = guard_current_filter();
    struct event_ctx *ctx;
    (void)s;
    if (f)
        return f;
    ctx = event_ctx_current();
    return ctx ? ctx->filter : NULL;
}

/* A new op with its references taken and its buffer read: all of it is
 * filter code for a filter's own buffer class or sink, so it happens
 * before the connection lock is taken (op_discard undoes it, also without
 * the lock). For a Send, len is the data size; for a Recv, the capacity. */
static HRESULT op_prepare(struct sock *s, IFWXIOBuffer *buf, IFWXIOCompletion *sink,
                          UserContextType user, BOOL is_send, struct op **out)
{
    struct op *op;
    DWORD size = 0, cap = 0;
    HRESULT hr;

    *out = NULL;
    if (!(op = op_alloc()))
        return E_OUTOFMEMORY;
    if (buf && FAILED(hr = iobuffer_data(buf, &op->data, &size, &cap))) {
        op_free(op);
        return hr == E_UNEXPECTED ? E_INVALIDARG : hr;
    }
    op->len = is_send ? size : cap;
    op->is_send_op = is_send;
    /* A datagram sent without an address goes to the connection's external
     * peer (the target): the address Send implies on a UDP connection. */
    if (is_send && s->conn->dgram && s->conn->win_target_len > 0) {
        memcpy(op->addr, &s->conn->win_target, s->conn->win_target_len);
        op->addr_len = s->conn->win_target_len;
    }
    op->buf = buf;
    op->sink = sink;
    op->user = user;
    op->owner = caller_filter(s);
    iobuffer_ref(buf, +1);
    /* The op keeps op->data: the buffer must stay whole until delivery. */
    iobuffer_pin(buf, +1);
    op->record.pinned = buf;
    if (sink)
        GUARDED_VOID(op->owner, "IFWXIOCompletion", "AddRef", IFWXIOCompletion_AddRef(sink));
    *out = op;
    return S_OK;
}

static void op_discard(struct op *op)
{
    iobuffer_pin(op->record.pinned, -1);
    iobuffer_ref(op->buf, -1);
    if (op->sink)
        GUARDED_VOID(op->owner, "IFWXIOCompletion", "Release", IFWXIOCompletion_Release(op->sink));
    op_free(op);
}

/* Queues a prepared op under the connection lock, or refuses it (the op is
 * then undone without the lock), and kicks the connection. */
static HRESULT sock_submit(struct sock *s, struct op *op, BOOL is_send)
{
    struct connection *c = s->conn;
    struct opq *q = NULL;
    HRESULT hr = S_OK;

    EnterCriticalSection(&c->lock);
    if (s->dead || c->terminated)
        hr = FWX_E_TERMINATING;
    else if (s->closed || (is_send && s->shut_pending))
        hr = HRESULT_FROM_WIN32(WSAESHUTDOWN);
    else if (!is_send)
        q = &s->recvs;
    else if (s->kind != SOCK_PIPE)
        q = &s->sends;
    else if (!s->peer || s->peer->closed || s->peer->dead)
        hr = HRESULT_FROM_WIN32(WSAECONNRESET);
    else
        q = &s->peer->rx;
    if (q) {
        opq_push(q, op);
        /* Flow control counts what the host itself queues in each
         * direction: counting reads against writes stalled filters that
         * shrink the stream. Filters that hold data answer for it. */
        if (is_send)
            c->inflight[s->dir] += op->len;
    }
    LeaveCriticalSection(&c->lock);
    if (FAILED(hr))
        op_discard(op);
    else
        connection_kick(c);
    return hr;
}

static HRESULT WINAPI sock_Send(IFWXSocket *iface, IFWXIOBuffer *buf, IFWXIOCompletion *sink,
                                UserContextType user)
{
    struct sock *s = impl_from_IFWXSocket(iface);
    struct op *op;
    HRESULT hr;

    if (!buf)
        return E_POINTER;
    if (FAILED(hr = op_prepare(s, buf, sink, user, TRUE, &op)))
        return hr;
    return sock_submit(s, op, TRUE);
}

static HRESULT WINAPI sock_SendTo(IFWXSocket *iface, IFWXIOBuffer *buf, SOCKADDR *addr, INT len,
                                  IFWXIOCompletion *sink, UserContextType user)
{
    struct sock *s = impl_from_IFWXSocket(iface);
    struct op *op;
    HRESULT hr;

    /* TCP sockets ignore the address, as Winsock's sendto does. */
    if (!s->conn->dgram || !addr)
        return sock_Send(iface, buf, sink, user);
    if (!buf)
        return E_POINTER;
    /* Reference 3.11: on the external side the target, on the internal
     * side the source the datagram should appear to come from. Both are
     * the connection's external peer; a UDP publish rule has exactly one,
     * its target (HOST-202): another address is refused. */
    if (len < (INT)sizeof(SOCKADDR_IN) || len > 28 ||
        (addr->sa_family != AF_INET && addr->sa_family != AF_INET6))
        return HRESULT_FROM_WIN32(WSAEFAULT);
    if (!udp_addr_allowed(s->conn, addr, len))
        return HRESULT_FROM_WIN32(WSAEACCES);
    if (FAILED(hr = op_prepare(s, buf, sink, user, TRUE, &op)))
        return hr;
    memcpy(op->addr, addr, len);
    op->addr_len = len;
    return sock_submit(s, op, TRUE);
}

static HRESULT WINAPI sock_Recv(IFWXSocket *iface, IFWXIOBuffer *buf, IFWXIOCompletion *sink,
                                UserContextType user)
{
    struct sock *s = impl_from_IFWXSocket(iface);
    struct op *op;
    HRESULT hr;

    if (!sink)
        return E_POINTER;
    if (FAILED(hr = op_prepare(s, buf, sink, user, FALSE, &op)))
        return hr;
    return sock_submit(s, op, FALSE);
}

static HRESULT sock_end(struct sock *s, BOOLEAN abortive, BOOL close_too)
{
    struct connection *c = s->conn;
    BOOL abort_conn = FALSE;

    EnterCriticalSection(&c->lock);
    if (s->dead || c->terminated) {
        LeaveCriticalSection(&c->lock);
        return close_too ? S_OK : FWX_E_TERMINATING;
    }
    if (abortive) {
        if (s->kind == SOCK_PIPE && s->peer)
            s->peer->rx_reset = TRUE;
        abort_conn = s->kind != SOCK_PIPE;
        s->closed = TRUE;
    } else {
        if (s->kind == SOCK_PIPE && s->peer)
            s->peer->rx_eof = TRUE;
        else
            s->shut_pending = TRUE;
        if (close_too)
            s->closed = TRUE;
    }
    LeaveCriticalSection(&c->lock);
    if (abort_conn)
        connection_abort(c, "a data filter closed a network socket abortively");
    else
        connection_kick(c);
    return S_OK;
}

static HRESULT WINAPI sock_Shutdown(IFWXSocket *iface, BOOLEAN abortive)
{
    return sock_end(impl_from_IFWXSocket(iface), abortive, FALSE);
}

static HRESULT WINAPI sock_Close(IFWXSocket *iface, BOOLEAN abortive)
{
    return sock_end(impl_from_IFWXSocket(iface), abortive, TRUE);
}

FX_HOST_VTBL(IFWXSocket, sock_vtbl) = {
    {
        sock_QueryInterface,
        sock_AddRef,
        sock_Release,
        sock_Send,
        sock_SendTo,
        sock_Recv,
        sock_Shutdown,
        sock_Close,
    },
    FX_TRAPS(IFWXSocket)
};

static void sock_io(fx_loop *loop, int fd, unsigned events, void *data)
{
    struct sock *s = data;
    if (events & (FX_READ | FX_HUP | FX_ERR))
        s->drained = FALSE;     /* the kernel says there is something to read */
    connection_run_now(s->conn);
}

static struct sock *sock_new(struct connection *c, enum sock_kind kind)
{
    struct sock *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->IFWXSocket_iface.lpVtbl = &sock_vtbl.vtbl;
    s->ref = 1;
    s->conn = c;
    s->kind = kind;
    s->fd = -1;
    opq_init(&s->recvs);
    opq_init(&s->rx);
    opq_init(&s->sends);
    IFWXConnection_AddRef(connection_iface(c));
    return s;
}

struct sock *sock_create_net(struct connection *c, int fd, int end)
{
    struct sock *s = sock_new(c, SOCK_NET);
    if (!s)
        return NULL;
    s->end = end;
    s->dir = 1 - end;
    s->fd = fd;
    /* A server we just connected to has rarely sent anything yet: wait for
     * the loop to say so instead of a read that would fail with EAGAIN.
     * (Level-triggered: data that is already there is reported at once.)
     * Its connect watch still holds the registration: taking it over armed
     * for reading is one EPOLL_CTL_MOD, and the lazy disarm in net_pump
     * drops the interest if nobody posts a Recv there. */
    s->drained = end == 1;
    unsigned want = end == 1 ? FX_READ : 0;
    if (fx_loop_take_fd(c->worker->loop, fd, want, sock_io, s) != 0) {
        s->fd = -1;
        sock_release(s);
        return NULL;
    }
    s->armed = want;
    return s;
}

struct sock *sock_create_pipe(struct connection *c, int dir)
{
    struct sock *s = sock_new(c, SOCK_PIPE);
    if (s)
        s->dir = dir;
    return s;
}

struct sock *sock_create_dgram(struct connection *c, int fd, int end)
{
    struct sock *s = sock_new(c, SOCK_DATAGRAM);
    if (!s)
        return NULL;
    s->end = end;
    s->dir = 1 - end;
    s->fd = fd;
    s->owns_fd = end == 1;      /* the client end's socket is udp.c's (hostobj.h) */
    if (s->owns_fd && fx_loop_add_fd(c->worker->loop, fd, FX_READ, sock_io, s) != 0) {
        s->fd = -1;
        sock_release(s);
        return NULL;
    }
    s->armed = s->owns_fd ? FX_READ : 0;
    return s;
}

void sock_pair(struct sock *a, struct sock *b)
{
    a->peer = b;
    b->peer = a;
}
