/*
 * connection.c — IFWXConnection and the life of one proxied TCP connection:
 * events and FilterAccess arbitration, the connect to the target, building
 * the data-filter chain (ordered by priority class, SetSockets on each),
 * pump passes on the worker's loop, and teardown (pending operations fail,
 * IFWXDataFilter::Detach, fwx_ConnectionTerminating, release).
 *
 * Without data filters, bytes move through fx_relay (core), never entering
 * filter code.
 */
#include "fwxhost.h" /* first: Winsock before any libc header */
#include "trap.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "anticipate.h"
#include "fxrelay.h"
#include "fxudp.h"
#include "guard.h"
#include "hostobj.h"

static struct fx_vtbl_IFWXConnection connection_vtbl;
static LONG next_connection_id;

static inline struct connection *impl_from_IFWXConnection(IFWXConnection *iface)
{
    return CONTAINING_RECORD(iface, struct connection, IFWXConnection_iface);
}

struct connection *connection_from_iface(IFWXConnection *iface)
{
    return iface && iface->lpVtbl == &connection_vtbl.vtbl ? impl_from_IFWXConnection(iface) : NULL;
}

static const char *rule_name(struct connection *c)
{
    return c->rule && c->rule->conf ? c->rule->conf->name : c->secondary ? "(secondary)" : "?";
}

/* ------------------------------------------------------------ completions */

void completion_push(struct connection *c, struct completion *cp)
{
    cp->next = NULL;
    *c->pending_tail = cp;
    c->pending_tail = &cp->next;
}

static struct completion *take_completions(struct connection *c)
{
    struct completion *list = c->pending;
    c->pending = NULL;
    c->pending_tail = &c->pending;
    return list;
}

/* No lock held. Returns FALSE if a filter faulted. */
static BOOL deliver(struct connection *c, struct completion *list)
{
    BOOL healthy = TRUE;
    struct completion *cp, *next;
    HRESULT hr;
    /* Buffers a filter creates in its completion are the connection's. */
    struct iobuffer_charge *outer = list ? iobuffer_charge_enter(&c->charge) : NULL;

    for (cp = list; cp; cp = next) {
        next = cp->next;
        iobuffer_pin(cp->pinned, -1);
        if (cp->buffer && cp->set_size >= 0)
            iobuffer_set_size(cp->buffer, (DWORD)cp->set_size);
        if (cp->sink) {
            GUARDED_CALL(hr, cp->owner, "IFWXIOCompletion", "CompleteAsyncIO",
                         IFWXIOCompletion_CompleteAsyncIO(cp->sink, cp->success, cp->error,
                                                          cp->buffer, cp->user,
                                                          cp->ext_len ? (LPSOCKADDR)cp->ext : NULL,
                                                          cp->ext_len));
            if (hr == FX_E_FILTER_FAULT)
                healthy = FALSE;
            GUARDED_VOID(cp->owner, "IFWXIOCompletion", "Release",
                         IFWXIOCompletion_Release(cp->sink));
        }
        iobuffer_ref(cp->buffer, -1);
        iobuffer_ref(cp->hold, -1);
        completion_free(cp);
    }
    if (list)
        iobuffer_charge_enter(outer);
    return healthy;
}

/* ------------------------------------------------------------ teardown */

void connection_teardown(struct connection *c)
{
    struct completion *list;
    struct sock *socks[2 * CHAIN_MAX];
    int nsocks;

    EnterCriticalSection(&c->lock);
    if (c->terminated) {
        LeaveCriticalSection(&c->lock);
        return;
    }
    c->terminated = TRUE;
    c->state = CONN_DONE;
    if (c->dgram)
        udp_conn_ended(c);     /* out of the rule's table: no new datagram reaches it */
    DWORD err = c->aborted ? WSAECONNABORTED : ERROR_OPERATION_ABORTED;
    for (int i = 0; i < c->nsocks; i++)
        sock_abort_all(c->socks[i], err);
    nsocks = c->nsocks;
    memcpy(socks, c->socks, nsocks * sizeof(socks[0]));
    c->nsocks = 0;
    list = take_completions(c);
    LeaveCriticalSection(&c->lock);

    /* Fds that never got a socket object (events, connecting). */
    if (c->client_fd >= 0) {
        if (c->aborted || c->denied)
            fx_close_abort(c->client_fd);
        else
            close(c->client_fd);
        c->client_fd = -1;
    }
    if (c->server_fd >= 0) {
        fx_loop_del_fd(c->worker->loop, c->server_fd);
        if (c->dgram)
            fx_udp_emulate_end(c->server_fd);
        fx_close_abort(c->server_fd);
        c->server_fd = -1;
    }
    if (c->connect_timer) {
        fx_timer_cancel(c->worker->loop, c->connect_timer);
        c->connect_timer = NULL;
    }
    if (c->idle_timer) {
        fx_timer_cancel(c->worker->loop, c->idle_timer);
        c->idle_timer = NULL;
    }
    deliver(c, list);
    if (c->established) {      /* never connected: nothing was established */
        anticipate_release(c->established);
        c->established = NULL;
    }

    /* fwx_ConnectionTerminating first, then the data filters' Detach: the
     * order ISA documented and filters (sessionlog) record. */
    session_raise_terminating(c->session, c);
    for (int i = 0; i < c->nchain; i++) {
        struct chain_link *l = &c->chain[i];
        HRESULT hr;
        GUARDED_CALL(hr, l->owner, "IFWXDataFilter", "Detach", IFWXDataFilter_Detach(l->df));
        if (hr != S_OK && hr != FX_E_FILTER_FAULT)
            fx_log(FX_LOG_WARN, "filter %s: IFWXDataFilter::Detach returned 0x%08lx",
                   fx_filter_name(l->owner), (unsigned long)hr);
        GUARDED_VOID(l->owner, "IFWXDataFilter", "Release", IFWXDataFilter_Release(l->df));
        if (l->context)
            GUARDED_VOID(l->owner, "IUnknown", "Release", IUnknown_Release(l->context));
    }
    c->nchain = 0;
    for (int i = 0; i < nsocks; i++)
        sock_release(socks[i]);

    /* What the connection's filters still hold of its buffers now is a
     * leak: take the memory back (HOST-900). */
    if (iobuffer_charge_close(&c->charge)) {
        char what[96];
        snprintf(what, sizeof(what), "conn %lu rule %s", c->id, rule_name(c));
        iobuffer_reclaim(&c->charge, what, the_host->config->host.reclaim_leaks);
    }

    record_finish(c);
    fx_log(FX_LOG_INFO, "conn %lu rule %s: closed%s, %llu bytes from client, %llu to client",
           c->id, rule_name(c), c->aborted ? " (aborted)" : "", c->bytes_in, c->bytes_out);
    InterlockedDecrement(&c->worker->connections);
    InterlockedDecrement(&the_host->live_connections);
    if (c->pins_session) {
        c->pins_session = FALSE;
        session_unpin(c->session);
    }
    if (c->rule) {
        InterlockedDecrement(&c->rule->live);
        InterlockedExchangeAdd64(&c->rule->bytes_in, (LONG64)c->bytes_in);
        InterlockedExchangeAdd64(&c->rule->bytes_out, (LONG64)c->bytes_out);
    }
    IFWXConnection_Release(connection_iface(c));    /* the connection's life reference */
}

/* ------------------------------------------------------------ pump passes */

/* The connection stays open after this pump pass: send the FINs and drop
 * the read interests its sockets deferred in the hope of closing instead.
 * Under c->lock. */
static void end_pass(struct connection *c)
{
    for (int i = 0; i < c->nsocks; i++)
        sock_end_pass(c->socks[i]);
}

void connection_run_now(struct connection *c)
{
    struct completion *list;
    BOOL finished;

    host_note_pump_pass();
    for (int round = 0; round < 64; round++) {
        EnterCriticalSection(&c->lock);
        c->kick_pending = FALSE;
        if (c->terminated) {
            LeaveCriticalSection(&c->lock);
            return;
        }
        for (int i = 0; i < c->nsocks; i++)
            sock_pump(c->socks[i]);
        finished = c->aborted;
        if (!finished && c->nsocks) {
            finished = TRUE;
            for (int i = 0; i < c->nsocks; i++)
                finished &= sock_is_finished(c->socks[i]);
        }
        list = take_completions(c);
        if (!list && !finished) {
            end_pass(c);
            LeaveCriticalSection(&c->lock);
            return;
        }
        LeaveCriticalSection(&c->lock);
        if (!deliver(c, list)) {
            connection_abort(c, "a filter faulted in a completion");
            finished = TRUE;
            c->aborted = TRUE;
        }
        if (finished) {
            connection_teardown(c);
            return;
        }
    }
    EnterCriticalSection(&c->lock);
    if (!c->terminated)
        end_pass(c);
    LeaveCriticalSection(&c->lock);
    connection_kick(c);     /* a busy connection yields to the others on its loop */
}

static void run_task(void *arg)
{
    struct connection *c = arg;
    /* Most kicks come from a filter's Send or Recv inside a completion the
     * running pass delivers; that pass goes round again and clears
     * kick_pending, doing the work this task was queued for. Then there is
     * nothing left but an empty pass (a third of the passes per short
     * connection). A stale TRUE only costs that pass; a kick that sets it
     * after our read queues its own task. */
    if (*(volatile BOOL *)&c->kick_pending)
        connection_run_now(c);
    IFWXConnection_Release(connection_iface(c));
}

void connection_kick(struct connection *c)
{
    fx_loop *loop = c->worker->loop;
    EnterCriticalSection(&c->lock);
    if (c->kick_pending || c->terminated) {
        LeaveCriticalSection(&c->lock);
        return;
    }
    c->kick_pending = TRUE;
    LeaveCriticalSection(&c->lock);
    IFWXConnection_AddRef(connection_iface(c));
    if (fx_loop_in_thread(loop))
        fx_loop_defer(loop, run_task, c);
    else
        fx_loop_post(loop, run_task, c);
}

static void abort_task(void *arg)
{
    struct connection *c = arg;
    if (c->relay) {
        fx_relay_abort(c->relay);
    } else {
        connection_teardown(c);
    }
    IFWXConnection_Release(connection_iface(c));
}

void connection_abort(struct connection *c, const char *why)
{
    EnterCriticalSection(&c->lock);
    BOOL first = !c->aborted && !c->terminated;
    c->aborted = TRUE;
    LeaveCriticalSection(&c->lock);
    if (!first)
        return;
    fx_log(FX_LOG_NOTICE, "conn %lu rule %s: aborting: %s", c->id, rule_name(c), why);
    IFWXConnection_AddRef(connection_iface(c));
    if (fx_loop_in_thread(c->worker->loop))
        fx_loop_defer(c->worker->loop, abort_task, c);
    else
        fx_loop_post(c->worker->loop, abort_task, c);
}

/* ------------------------------------------------------------ chain */

/* No-filter relays copy small chunks and splice bulk ones: a 64-byte
 * request through a pipe costs the kernel more than recv + send
 * (docs/BENCHMARKS.md, finding 16). */
#define RELAY_SPLICE_MIN 16384
/* 256 KiB pipes: a quarter of the splice calls per byte of 64 KiB ones,
 * the best of 64 KiB..1 MiB on loopback (finding 17). */
#define RELAY_PIPE_SIZE 262144

static void relay_done(void *arg, const fx_relay_stats *st)
{
    struct connection *c = arg;
    c->relay = NULL;
    c->client_fd = c->server_fd = -1;    /* the relay closed them */
    c->bytes_in = st->bytes_ab;
    c->bytes_out = st->bytes_ba;
    if (st->aborted)
        c->aborted = TRUE;
    connection_teardown(c);
}

static int by_priority(const void *a, const void *b)
{
    const struct chain_link *x = a, *y = b;
    return (int)x->priority - (int)y->priority;
}

/* Bytes moved either way so far (client end, or the relay). Loop thread. */
static unsigned long long bytes_moved(struct connection *c)
{
    unsigned long long ab = 0, ba = 0;
    if (c->relay)
        fx_relay_bytes(c->relay, &ab, &ba);
    return c->bytes_in + c->bytes_out + ab + ba;
}

/* [host] idle-timeout: a connection that moved no byte for that long is
 * aborted. The timer re-arms itself while bytes move, so a busy connection
 * costs one timer expiry per period, not one per read. */
static void idle_check(void *arg)
{
    struct connection *c = arg;
    unsigned secs = the_host->config->host.idle_timeout;
    unsigned long long moved = bytes_moved(c);

    c->idle_timer = NULL;
    if (c->terminated)
        return;
    if (moved != c->idle_mark) {
        c->idle_mark = moved;
        c->idle_timer = fx_timer_start(c->worker->loop, (uint64_t)secs * 1000, idle_check, c);
        return;
    }
    char why[64];
    snprintf(why, sizeof(why), "idle for %u s (idle-timeout)", secs);
    connection_abort(c, why);
}

static void start_idle_timer(struct connection *c)
{
    unsigned secs = the_host && the_host->config ? the_host->config->host.idle_timeout : 0;
    if (!secs)
        return;
    c->idle_mark = (unsigned long long)-1;    /* the first check only arms */
    c->idle_timer = fx_timer_start(c->worker->loop, 0, idle_check, c);
}

void connection_start_pump(struct connection *c)
{
    int n = c->nchain;

    c->state = CONN_PUMPING;
    if (!c->dgram)
        start_idle_timer(c);     /* UDP: udp-timeout instead (udp.c) */
    if (n == 0) {
        fx_relay_opts ro = { FX_RELAY_SPLICE | FX_RELAY_NONBLOCKING,   /* fxnet's fds */
                             0, c->rec ? record_relay_tap : NULL, c, RELAY_SPLICE_MIN,
                             RELAY_PIPE_SIZE };
        c->relay = fx_relay_start_opts(c->worker->loop, c->client_fd, c->server_fd, &ro,
                                       relay_done, c);
        if (!c->relay) {
            connection_abort(c, "out of memory starting the relay");
            return;
        }
        return;
    }
    /* Stable order inside a class is not promised by ISA; ours is attach order. */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && by_priority(&c->chain[j - 1], &c->chain[j]) > 0; j--) {
            struct chain_link t = c->chain[j];
            c->chain[j] = c->chain[j - 1];
            c->chain[j - 1] = t;
        }

    struct sock *internal[CHAIN_MAX], *external[CHAIN_MAX];
    EnterCriticalSection(&c->lock);
    if (c->dgram) {
        /* UDP: the client end sends through the rule's socket or the
         * client's transparent one; udp.c reads both and feeds it. */
        internal[0] = sock_create_dgram(c, c->client_fd, 0);
        external[n - 1] = sock_create_dgram(c, c->server_fd, 1);
    } else {
        internal[0] = sock_create_net(c, c->client_fd, 0);
        /* Emulated: the emulator, last in the chain, is the far end (HOST-105). */
        external[n - 1] = c->emulated ? NULL : sock_create_net(c, c->server_fd, 1);
    }
    BOOL ok = internal[0] && (external[n - 1] || c->emulated);
    for (int k = 0; ok && k + 1 < n; k++) {
        external[k] = sock_create_pipe(c, 0);
        internal[k + 1] = sock_create_pipe(c, 1);
        ok = external[k] && internal[k + 1];
        if (ok)
            sock_pair(external[k], internal[k + 1]);
    }
    if (internal[0])
        c->socks[c->nsocks++] = internal[0];
    for (int k = 0; k + 1 < n; k++) {
        if (ok || external[k])
            c->socks[c->nsocks++] = external[k];
        if (ok || internal[k + 1])
            c->socks[c->nsocks++] = internal[k + 1];
    }
    if (external[n - 1])
        c->socks[c->nsocks++] = external[n - 1];
    /* The sockets own the fds now. */
    if (internal[0])
        c->client_fd = -1;
    if (external[n - 1])
        c->server_fd = -1;
    LeaveCriticalSection(&c->lock);
    if (!ok) {
        connection_abort(c, "out of memory building the data-filter chain");
        return;
    }
    for (int k = 0; k < n; k++) {
        struct chain_link *l = &c->chain[k];
        HRESULT hr;
        struct iobuffer_charge *outer = iobuffer_charge_enter(&c->charge);
        GUARDED_CALL(hr, l->owner, "IFWXDataFilter", "SetSockets",
                     IFWXDataFilter_SetSockets(l->df, sock_iface(internal[k]),
                                               external[k] ? sock_iface(external[k]) : NULL,
                                               connection_iface(c), l->context));
        iobuffer_charge_enter(outer);
        l->sockets_set = TRUE;
        if (hr == FX_E_FILTER_FAULT) {
            connection_abort(c, "a data filter faulted in SetSockets");
            return;
        }
        if (FAILED(hr))
            fx_log(FX_LOG_WARN, "filter %s: SetSockets returned 0x%08lx", fx_filter_name(l->owner),
                   (unsigned long)hr);
    }
    connection_kick(c);
}

static void connect_timeout(void *arg)
{
    struct connection *c = arg;
    char text[64];
    c->connect_timer = NULL;
    fx_addr_format(c->target_addr, c->target_len, text, sizeof(text));
    fx_log(FX_LOG_WARN, "conn %lu rule %s: target %s did not answer within %u s", c->id,
           rule_name(c), text, the_host->config->host.connect_timeout);
    c->aborted = TRUE;
    connection_teardown(c);
}

static void on_connected(fx_loop *loop, int fd, unsigned events, void *data)
{
    struct connection *c = data;
    /* Writable without an error or hang-up is a connect that succeeded:
     * SO_ERROR is only worth a syscall when something went wrong. */
    int err = (events & (FX_ERR | FX_HUP)) ? fx_sock_error(fd) : 0;
    char text[64];

    /* The fd stays registered (armed for writing) until the data path
     * takes it over with fx_loop_take_fd in this same callback, or the
     * teardown below deletes it: one EPOLL_CTL_MOD instead of a del + add. */
    if (c->connect_timer) {
        fx_timer_cancel(loop, c->connect_timer);
        c->connect_timer = NULL;
    }
    if (err) {
        fx_addr_format(c->target_addr, c->target_len, text, sizeof(text));
        fx_log(FX_LOG_WARN, "conn %lu rule %s: connect to target %s failed: %s", c->id,
               rule_name(c), text, strerror(err));
        c->aborted = TRUE;
        connection_teardown(c);
        return;
    }
    fx_set_nodelay(fd);
    unsigned char sa[28];
    int salen = sizeof(sa);
    c->win_ext_len = sizeof(c->win_ext);
    /* Only a filter can ask for it (GetExternalSocketName). */
    if (the_host->nfilters == 0 || fx_getsockname(fd, sa, &salen) != 0 ||
        fx_sa_to_win32(sa, salen, &c->win_ext, &c->win_ext_len) != 0)
        c->win_ext_len = 0;
    if (c->win_ext_len && !c->secondary) {
        EnterCriticalSection(&c->session->lock);
        memcpy(&c->session->last_ext, &c->win_ext, c->win_ext_len);
        c->session->last_ext_len = c->win_ext_len;
        LeaveCriticalSection(&c->session->lock);
    }
    if (c->established) {
        struct anticipation *a = c->established;
        c->established = NULL;
        anticipate_established(a, c);
        anticipate_release(a);
        if (c->terminated)
            return;
    }
    connection_start_pump(c);
}

static void start_connect(struct connection *c)
{
    int in_progress = 0;
    char text[64];

    c->state = CONN_CONNECTING;
    c->server_fd = fx_tcp_connect(c->target_addr, c->target_len, &in_progress);
    if (c->server_fd < 0) {
        fx_addr_format(c->target_addr, c->target_len, text, sizeof(text));
        fx_log(FX_LOG_WARN, "conn %lu rule %s: connect to target %s failed: %s", c->id,
               rule_name(c), text, strerror(-c->server_fd));
        c->server_fd = -1;
        c->aborted = TRUE;
        connection_teardown(c);
        return;
    }
    fx_loop_add_fd(c->worker->loop, c->server_fd, FX_WRITE, on_connected, c);
    c->connect_timer = fx_timer_start(c->worker->loop,
                                      (uint64_t)the_host->config->host.connect_timeout * 1000,
                                      connect_timeout, c);
}

/* host_client_session gave s pinned and referenced: the pin goes to c
 * until its teardown (or is dropped when c could not be made), the
 * reference is dropped (c holds its own). */
void connection_keep_client_session(struct connection *c, struct session *s)
{
    if (c)
        c->pins_session = TRUE;
    else
        session_unpin(s);
    IFWXSession_Release(session_iface(s));
}

struct connection *connection_create(struct worker *w, struct rule *rule, struct session *s)
{
    struct connection *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->IFWXConnection_iface.lpVtbl = &connection_vtbl.vtbl;
    c->ref = 1;
    InitializeCriticalSection(&c->lock);
    c->pending_tail = &c->pending;
    c->session = s;
    IFWXSession_AddRef(session_iface(s));
    c->worker = w;
    c->rule = rule;
    c->id = (unsigned long)InterlockedIncrement(&next_connection_id);
    c->client_fd = c->server_fd = -1;
    c->state = CONN_EVENTS;
    iobuffer_charge_init(&c->charge);
    return c;
}

void connection_set_addr(unsigned char *lin, int *lin_len, SOCKADDR_STORAGE *win, int *win_len,
                         const void *sa, int len)
{
    memcpy(lin, sa, len);
    *lin_len = len;
    *win_len = sizeof(*win);
    if (fx_sa_to_win32(sa, len, win, win_len) != 0)
        *win_len = 0;
}

/* An address as text, formatted on first use: only log lines read it,
 * and most connections log nothing (formatting every client's address was
 * 8 % of the worker's own instructions per connection, by callgrind). */
struct addr_text {
    const void *sa;
    int len;
    char text[64];
};

static const char *addr_text(struct addr_text *t)
{
    if (!t->text[0] && fx_addr_format(t->sa, t->len, t->text, sizeof(t->text)) < 0)
        snprintf(t->text, sizeof(t->text), "?");
    return t->text;
}

/* Outbound rules: where the client meant to go, before iptables sent the
 * connection to us. 0, or -1 after logging why the connection is refused. */
static int outbound_target(struct connection *c, struct addr_text *who)
{
    unsigned char sa[28];
    int len = sizeof(sa);
    char text[64];
    int rc = fx_original_dst(c->client_fd, sa, &len);

    if (rc != 0 || fx_sa_equal(sa, len, c->local_addr, c->local_len)) {
        fx_addr_format(c->local_addr, c->local_len, text, sizeof(text));
        fx_log(FX_LOG_WARN, "conn %lu rule %s: connection from %s to %s was not redirected "
               "(%s; outbound rules serve traffic sent here by iptables REDIRECT/DNAT); refused",
               c->id, rule_name(c), addr_text(who), text,
               rc ? strerror(-rc) : "its original destination is this host's own port");
        return -1;
    }
    connection_set_addr(c->target_addr, &c->target_len, &c->win_target, &c->win_target_len, sa, len);
    return 0;
}

/* What connection_accept and connection_accept_ends share: the session,
 * the connection object, its addresses (local_sa: our address as the
 * client sees it; target_sa: NULL to take the rule's target, or for
 * outbound rules the connection's original destination), the events and
 * their arbitration. Returns the connection, allowed and ready to reach
 * its target, or NULL when it was refused (client_fd is then closed). */
static struct connection *accept_events(struct worker *w, struct rule *rule, int client_fd,
                                        const void *client_sa, int client_len,
                                        const void *local_sa, int local_len,
                                        const void *target_sa, int target_len)
{
    struct connection *c;
    struct session *s;
    FwxFirewallEvent ev;
    HRESULT hr;
    struct addr_text who = { client_sa, client_len, "" };
    BOOL outbound = rule->conf->type == FX_RULE_OUTBOUND;
    SOCKADDR_STORAGE win_client;
    int win_client_len = sizeof(win_client);

    /* Publishing: the published server's session. Outbound: the client's
     * own session, one per client address, as for SecureNAT (HOST-001). */
    if (fx_sa_to_win32(client_sa, client_len, &win_client, &win_client_len) != 0 ||
        !(s = outbound ? host_client_session(&win_client, win_client_len, TRUE) : rule->session)) {
        fx_log(FX_LOG_WARN, "rule %s: cannot make a session for %s; connection refused",
               rule->conf->name, addr_text(&who));
        fx_close_abort(client_fd);
        return NULL;
    }
    c = connection_create(w, rule, s);
    if (outbound)
        connection_keep_client_session(c, s);
    if (!c) {
        fx_close_abort(client_fd);
        return NULL;
    }
    c->client_fd = client_fd;
    connection_set_addr(c->client_addr, &c->client_len, &c->win_remote, &c->win_remote_len, client_sa,
             client_len);
    connection_set_addr(c->local_addr, &c->local_len, &c->win_local, &c->win_local_len, local_sa, local_len);
    InterlockedIncrement(&w->connections);
    InterlockedIncrement(&the_host->live_connections);
    InterlockedIncrement(&the_host->total_connections);
    InterlockedIncrement(&rule->connections);
    InterlockedIncrement(&rule->live);
    /* TCP_NODELAY: inherited from the listener (fx_tcp_listen). */
    if (fx_log_enabled(FX_LOG_INFO))
        fx_log(FX_LOG_INFO, "conn %lu rule %s: accepted from %s", c->id, rule_name(c),
               addr_text(&who));
    if (c->win_local_len) {
        EnterCriticalSection(&s->lock);
        memcpy(&s->last_local, &c->win_local, c->win_local_len);
        s->last_local_len = c->win_local_len;
        LeaveCriticalSection(&s->lock);
    }

    memset(&ev, 0, sizeof(ev));
    if (outbound) {
        if (target_sa)
            connection_set_addr(c->target_addr, &c->target_len, &c->win_target, &c->win_target_len,
                     target_sa, target_len);
        if (!target_sa && outbound_target(c, &who) != 0) {
            InterlockedIncrement(&rule->refused);
            c->aborted = TRUE;
            connection_teardown(c);
            return NULL;
        }
        /* A connection a filter anticipated (AllowFutureConnect) is its
         * secondary connection: no fwx_Connect_Tcp, and the registering
         * filter hears fwx_EstablishedConnection once it exists (HOST-101). */
        c->established = anticipate_take_connect(c->session, &c->win_target, c->win_target_len);
        if (c->established) {
            c->secondary = TRUE;
            hr = S_OK;
        } else if (rule->conf->secondary_only) {
            char text[64];
            fx_addr_format(c->target_addr, c->target_len, text, sizeof(text));
            fx_log(FX_LOG_NOTICE, "conn %lu rule %s: connection from %s to %s refused: no filter "
                   "anticipated it (secondary-only)", c->id, rule_name(c), addr_text(&who), text);
            InterlockedIncrement(&rule->refused);
            c->aborted = TRUE;
            connection_teardown(c);
            return NULL;
        } else {
            ev.EventType = fwx_Connect_Tcp;
            ev.Parameters.Connect.Address = (LPSOCKADDR)&c->win_target;
            ev.Parameters.Connect.AddressLength = c->win_target_len;
            ev.Parameters.Connect.piConnection = connection_iface(c);
            ev.Parameters.Connect.FilterAccess = FWX_PASS;
            unsigned port = ntohs(((SOCKADDR_IN *)&c->win_target)->sin_port);
            hr = session_raise(c->session, &ev, port, c);
            session_apply_factories(c->session, fwx_Connect_Tcp, &c->win_target,
                                    c->win_target_len, c);
        }
    } else {
        if (target_sa)
            connection_set_addr(c->target_addr, &c->target_len, &c->win_target, &c->win_target_len,
                     target_sa, target_len);
        else
            connection_set_addr(c->target_addr, &c->target_len, &c->win_target, &c->win_target_len,
                     &rule->conf->target, rule->conf->target_len);
        ev.EventType = fwx_AcceptedConnection;
        ev.Parameters.Accept.RemoteAddress = (LPSOCKADDR)&c->win_remote;
        ev.Parameters.Accept.RemoteAddressLength = c->win_remote_len;
        ev.Parameters.Accept.LocalAddress = (LPSOCKADDR)&c->win_local;
        ev.Parameters.Accept.LocalAddressLength = c->win_local_len;
        ev.Parameters.Accept.piConnectionAccepted = connection_iface(c);
        ev.Parameters.Accept.FilterAccess = FWX_PASS;
        unsigned port = ntohs(((SOCKADDR_IN *)&c->win_local)->sin_port);
        hr = session_raise(c->session, &ev, port, c);
        session_apply_factories(c->session, fwx_AcceptedConnection, &c->win_local,
                                c->win_local_len, c);
    }

    if (!c->denied && SUCCEEDED(hr) && c->emulated && !c->has_emulator) {
        fx_log(FX_LOG_WARN, "conn %lu rule %s: a filter emulates the connection from %s "
               "(SetProtocol with FWX_FLAG_EMULATE_PROTOCOL) but attached no data filter of "
               "class fwx_dfpc_Emulation; refused", c->id, rule_name(c), addr_text(&who));
        hr = E_FAIL;
    }
    record_start(c);
    if (c->denied || FAILED(hr)) {
        InterlockedIncrement(c->denied ? &rule->denials : &rule->refused);
        if (c->denied) {
            InterlockedIncrement(&the_host->denied_connections);
            fx_log(FX_LOG_NOTICE, "conn %lu rule %s: connection from %s denied by filter %s",
                   c->id, rule_name(c), addr_text(&who), c->denied_by);
        } else if (hr != FX_E_FILTER_DISABLED) {   /* that one is logged by session_raise */
            fx_log(FX_LOG_WARN, "conn %lu rule %s: connection from %s refused: %s (0x%08lx)",
                   c->id, rule_name(c), addr_text(&who),
                   hr == FX_E_FILTER_FAULT ? "a filter faulted handling the event"
                                           : "a filter failed the event", (unsigned long)hr);
        }
        c->aborted = TRUE;
        connection_teardown(c);
        return NULL;
    }
    return c;
}

void connection_accept(struct worker *w, struct rule *rule, int client_fd,
                       const void *client_sa, int client_len)
{
    unsigned char local[28];
    int local_len = sizeof(local);
    const void *lsa = local;
    /* A listener on one address: that is the local address, no syscall. */
    if (!fx_sa_is_any(&rule->conf->listen, rule->conf->listen_len)) {
        lsa = &rule->conf->listen;
        local_len = rule->conf->listen_len;
    } else {
        fx_getsockname(client_fd, local, &local_len);
    }
    struct connection *c = accept_events(w, rule, client_fd, client_sa, client_len, lsa,
                                         local_len, NULL, 0);
    if (c && c->emulated)
        connection_start_pump(c);     /* the emulator answers: no connect */
    else if (c)
        start_connect(c);
}

void connection_accept_ends(struct worker *w, struct rule *rule, int client_fd, int server_fd,
                            const void *client_sa, int client_len,
                            const void *target_sa, int target_len)
{
    /* AF_UNIX ends have no address: ours is the rule's listening one. */
    struct connection *c = accept_events(w, rule, client_fd, client_sa, client_len,
                                         &rule->conf->listen, rule->conf->listen_len,
                                         target_sa, target_len);
    if (!c) {
        close(server_fd);     /* as in fwxhost: the target is never reached */
        return;
    }
    /* As on_connected, without a connect: the end towards the target exists
     * already; our address towards it is the listening address too. */
    c->win_ext_len = sizeof(c->win_ext);
    if (fx_sa_to_win32(&rule->conf->listen, rule->conf->listen_len, &c->win_ext, &c->win_ext_len) != 0)
        c->win_ext_len = 0;
    if (c->emulated) {
        close(server_fd);  /* the emulator answers in place of the target */
        server_fd = -1;
    }
    c->server_fd = server_fd;
    connection_start_pump(c);
}

/* The listening side of a publishing rule, as ISA's listening remote
 * socket: fwx_Bind_Tcp then fwx_Listen once when the rule starts. A filter
 * that denies the bind stops the rule from starting. */
int connection_rule_listen_events(struct rule *rule, struct worker *w, char *err, size_t errlen)
{
    struct connection *c = connection_create(w, rule, rule->session);
    FwxFirewallEvent ev;
    HRESULT hr;

    if (!c) {
        snprintf(err, errlen, "rule %s: out of memory", rule->conf->name);
        return -1;
    }
    connection_set_addr(c->local_addr, &c->local_len, &c->win_local, &c->win_local_len,
             &rule->conf->listen, rule->conf->listen_len);
    connection_set_addr(c->target_addr, &c->target_len, &c->win_target, &c->win_target_len,
             &rule->conf->target, rule->conf->target_len);
    unsigned port = ntohs(((SOCKADDR_IN *)&c->win_local)->sin_port);

    /* UDP rules: fwx_Bind_Udp once at rule start, no fwx_Listen (HOST-200). */
    BOOL udp = rule->conf->protocol == FX_PROTO_UDP;
    memset(&ev, 0, sizeof(ev));
    ev.EventType = udp ? fwx_Bind_Udp : fwx_Bind_Tcp;
    ev.Parameters.Bind.Address = (LPSOCKADDR)&c->win_local;
    ev.Parameters.Bind.AddressLength = c->win_local_len;
    ev.Parameters.Bind.piConnection = connection_iface(c);
    ev.Parameters.Bind.FilterAccess = FWX_PASS;
    hr = session_raise(rule->session, &ev, port, c);
    if (c->denied || FAILED(hr)) {
        snprintf(err, errlen, "rule %s: %s%s", rule->conf->name,
                 c->denied ? "the bind was denied by filter "
                           : udp ? "a filter failed fwx_Bind_Udp" : "a filter failed fwx_Bind_Tcp",
                 c->denied ? c->denied_by : "");
        session_raise_terminating(rule->session, c);
        IFWXConnection_Release(connection_iface(c));
        return -1;
    }
    if (udp)
        goto listening;
    memset(&ev, 0, sizeof(ev));
    ev.EventType = fwx_Listen;
    ev.Parameters.Listen.Address = (LPSOCKADDR)&c->win_local;
    ev.Parameters.Listen.AddressLength = c->win_local_len;
    ev.Parameters.Listen.piConnection = connection_iface(c);
    session_raise(rule->session, &ev, port, c);   /* informational: cannot fail the rule */
listening:
    c->state = CONN_DONE;
    rule->listener = c;
    return 0;
}

void connection_rule_listen_end(struct rule *rule)
{
    struct connection *c = rule->listener;
    if (!c)
        return;
    rule->listener = NULL;
    c->terminated = TRUE;
    session_raise_terminating(rule->session, c);
    IFWXConnection_Release(connection_iface(c));
}

/* ------------------------------------------------------------ secondary connections */

void connection_accept_secondary(struct worker *w, struct session *s, struct anticipation *a,
                                 int fd, const void *peer_sa, int peer_len,
                                 const void *local_sa, int local_len,
                                 const void *target_sa, int target_len)
{
    struct connection *c = connection_create(w, NULL, s);
    if (!c) {
        fx_close_abort(fd);
        return;
    }
    c->secondary = TRUE;
    c->pins_session = TRUE;   /* a secondary connection keeps its session alive too */
    session_pin(s);
    c->client_fd = fd;
    connection_set_addr(c->client_addr, &c->client_len, &c->win_remote, &c->win_remote_len, peer_sa, peer_len);
    connection_set_addr(c->local_addr, &c->local_len, &c->win_local, &c->win_local_len, local_sa, local_len);
    connection_set_addr(c->target_addr, &c->target_len, &c->win_target, &c->win_target_len, target_sa,
             target_len);
    InterlockedIncrement(&w->connections);
    InterlockedIncrement(&the_host->live_connections);
    InterlockedIncrement(&the_host->total_connections);
    c->established = a;
    anticipate_addref(a);
    start_connect(c);
}

HRESULT connection_bind_object(struct worker *w, struct session *s, struct anticipation *a,
                               const void *local_sa, int local_len, BOOL listen,
                               struct connection **out)
{
    struct connection *c = connection_create(w, NULL, s);
    FwxFirewallEvent ev;
    HRESULT hr;

    *out = NULL;
    if (!c)
        return E_OUTOFMEMORY;
    c->secondary = TRUE;
    c->ant = a;
    c->state = CONN_DONE;     /* no data: AttachDataFilter has no place here */
    connection_set_addr(c->local_addr, &c->local_len, &c->win_local, &c->win_local_len, local_sa, local_len);
    unsigned port = ntohs(((SOCKADDR_IN *)&c->win_local)->sin_port);

    memset(&ev, 0, sizeof(ev));
    ev.EventType = fwx_Bind_Tcp;
    ev.Parameters.Bind.Address = (LPSOCKADDR)&c->win_local;
    ev.Parameters.Bind.AddressLength = c->win_local_len;
    ev.Parameters.Bind.piConnection = connection_iface(c);
    ev.Parameters.Bind.FilterAccess = FWX_PASS;
    hr = session_raise(s, &ev, port, c);
    if (c->denied || FAILED(hr)) {
        fx_log(FX_LOG_NOTICE, "session %s: a bind for a client %s%s", s->name,
               c->denied ? "was denied by filter " : "failed: a filter failed fwx_Bind_Tcp",
               c->denied ? c->denied_by : "");
        BOOL denied = c->denied;
        c->ant = NULL;
        connection_bind_object_end(c);
        return denied ? FWX_E_POLICY_RULES_DENIED : hr;
    }
    if (listen) {
        memset(&ev, 0, sizeof(ev));
        ev.EventType = fwx_Listen;
        ev.Parameters.Listen.Address = (LPSOCKADDR)&c->win_local;
        ev.Parameters.Listen.AddressLength = c->win_local_len;
        ev.Parameters.Listen.piConnection = connection_iface(c);
        session_raise(s, &ev, port, c);
    }
    *out = c;
    return S_OK;
}

void connection_bind_object_end(struct connection *c)
{
    EnterCriticalSection(&c->lock);
    c->terminated = TRUE;
    c->ant = NULL;
    LeaveCriticalSection(&c->lock);
    session_raise_terminating(c->session, c);
    IFWXConnection_Release(connection_iface(c));
}

/* ------------------------------------------------------------ IFWXConnection */

static HRESULT WINAPI connection_QueryInterface(IFWXConnection *iface, REFIID riid, void **out)
{
    if (!out)
        return E_POINTER;
    if (IsEqualIID(riid, &IID_IUnknown) || IsEqualIID(riid, &IID_IFWXConnection)) {
        *out = iface;
        IFWXConnection_AddRef(iface);
        return S_OK;
    }
    fx_log_unknown_iid("IFWXConnection", riid);
    *out = NULL;
    return E_NOINTERFACE;
}

static ULONG WINAPI connection_AddRef(IFWXConnection *iface)
{
    return InterlockedIncrement(&impl_from_IFWXConnection(iface)->ref);
}

static ULONG WINAPI connection_Release(IFWXConnection *iface)
{
    struct connection *c = impl_from_IFWXConnection(iface);
    LONG ref = InterlockedDecrement(&c->ref);
    if (ref == 0) {
        /* Normally empty: teardown, on the worker, reclaimed it before
         * dropping the life reference. A connection freed without one has
         * no pump left to touch its buffers, so any thread may walk them
         * here. Nothing may point at the charge after free. */
        iobuffer_reclaim(&c->charge, "connection freed",
                         !the_host || !the_host->config || the_host->config->host.reclaim_leaks);
        IFWXSession_Release(session_iface(c->session));
        DeleteCriticalSection(&c->lock);
        free(c);
    } else if (ref < 0) {
        fx_log(FX_LOG_ERROR, "IFWXConnection %p released more often than referenced", (void *)iface);
        InterlockedExchange(&c->ref, 0x40000000);
        ref = 0;
    }
    return (ULONG)ref;
}

/* Is the calling thread inside the handler of one of these events for c? */
static struct event_ctx *in_context(struct connection *c, DWORD allowed)
{
    struct event_ctx *ctx = event_ctx_current();
    return ctx && ctx->conn == c && (ctx->type & allowed) ? ctx : NULL;
}

static HRESULT attach_link(struct connection *c, struct event_ctx *ctx, IFWXDataFilter *df,
                           FwxDataFilterPriorityClass priority, IUnknown *context)
{
    HRESULT hr = S_OK;

    if (!df || (unsigned)priority > fwx_dfpc_Emulation)
        return E_INVALIDARG;
    /* Interface pointers from filters are checked before use (HOST-022). */
    if (!guard_check_iface(df, 5) || (context && !guard_check_iface(context, 3)))
        return E_POINTER;
    /* References first: AddRef is filter code and never runs under our lock. */
    GUARDED_CALL(hr, ctx->filter, "IFWXDataFilter", "AddRef", (HRESULT)IFWXDataFilter_AddRef(df));
    if (context)
        GUARDED_VOID(ctx->filter, "IUnknown", "AddRef", IUnknown_AddRef(context));
    hr = S_OK;
    EnterCriticalSection(&c->lock);
    if (c->terminated || c->state != CONN_EVENTS) {
        hr = FWX_E_TERMINATING;
    } else if (c->nchain >= CHAIN_MAX) {
        hr = E_OUTOFMEMORY;
    } else if (priority == fwx_dfpc_Emulation && c->emulated && c->has_emulator) {
        hr = FWX_E_ALREADY_EMULATED;     /* one emulator per connection (reference 2.9) */
    } else {
        if (priority == fwx_dfpc_Emulation && c->emulated)
            c->has_emulator = TRUE;
        struct chain_link *l = &c->chain[c->nchain++];
        l->df = df;
        l->priority = priority;
        l->context = context;
        l->owner = ctx->filter;
        l->sockets_set = FALSE;
    }
    LeaveCriticalSection(&c->lock);
    if (FAILED(hr)) {
        GUARDED_VOID(ctx->filter, "IFWXDataFilter", "Release", IFWXDataFilter_Release(df));
        if (context)
            GUARDED_VOID(ctx->filter, "IUnknown", "Release", IUnknown_Release(context));
    }
    return hr;
}

static HRESULT WINAPI connection_AttachDataFilter(IFWXConnection *iface, IFWXDataFilter *df,
                                                  FwxDataFilterPriorityClass priority,
                                                  IUnknown *context)
{
    struct connection *c = impl_from_IFWXConnection(iface);
    struct event_ctx *ctx = in_context(c, fwx_Connect_Tcp | fwx_Bind_Udp | fwx_AcceptedConnection |
                                              fwx_Udp_Destination);

    if (!ctx)
        return FWX_E_BAD_CONTEXT;
    /* A UDP rule's fwx_Bind_Udp comes once, at rule start, on the rule's
     * listening connection, which never carries datagrams: each client
     * address gets its own connection and fwx_Udp_Destination (HOST-200). */
    if (ctx->type == fwx_Bind_Udp && !c->dgram)
        return FX_NOTIMPL("IFWXConnection", "AttachDataFilter in a rule's fwx_Bind_Udp "
                          "(attach in fwx_Udp_Destination)");
    return attach_link(c, ctx, df, priority, context);
}

/* The data filter is bound to this destination and goes when it expires.
 * A UDP connection has one destination, its target, so the data filter
 * lives as long as the connection (HOST-201). */
static HRESULT WINAPI connection_AttachDataFilterWithDestination(IFWXConnection *iface,
                                                                 IFWXDataFilter *df,
                                                                 FwxDataFilterPriorityClass prio,
                                                                 IUnknown *context,
                                                                 LPSOCKADDR addr, INT len)
{
    struct connection *c = impl_from_IFWXConnection(iface);
    struct event_ctx *ctx = in_context(c, fwx_Udp_Destination);

    if (!ctx)
        return FWX_E_BAD_CONTEXT;
    if (!addr || len < (INT)sizeof(SOCKADDR_IN) || !udp_addr_allowed(c, addr, len))
        return E_INVALIDARG;
    return attach_link(c, ctx, df, prio, context);
}

/* An address EmulateConnection was given: NULL, or a readable IPv4/IPv6 one. */
static BOOL emulate_addr_ok(const SOCKADDR *a, DWORD len)
{
    SOCKADDR_STORAGE copy;
    if (!a)
        return TRUE;
    if (len < sizeof(SOCKADDR_IN) || len > sizeof(copy) || !guard_copy(&copy, a, len))
        return FALSE;
    return copy.ss_family == AF_INET || (copy.ss_family == AF_INET6 && len >= 28);
}

/* Inbound emulation (reference 2.9, HOST-1001): inside fwx_AcceptedConnection
 * of a publishing rule, df becomes the connection's emulator: the client-facing
 * connection is this one (*out, referenced), df is last in the chain with
 * SetSockets(internal, NULL), and the host does not connect to the rule's target.
 * The filter reaches whatever servers it chooses itself (IFWXNetworkSocket).
 * LocalAddress, if given, is the name GetExternalSocketName reports (as
 * SetSocketName); RemoteAddress is checked, not used: the client is real. */
static HRESULT WINAPI connection_EmulateConnection(IFWXConnection *iface, IFWXDataFilter *df,
                                                   LPSOCKADDR remote, DWORD remote_len,
                                                   LPSOCKADDR local, DWORD local_len,
                                                   IFWXConnection **out)
{
    struct connection *c = impl_from_IFWXConnection(iface);
    struct event_ctx *ctx = in_context(c, fwx_AcceptedConnection);
    HRESULT hr = S_OK;

    if (out)
        *out = NULL;
    /* Only an accepted TCP connection can be emulated inbound; outbound
     * connections use SetProtocol(FWX_FLAG_EMULATE_PROTOCOL) (HOST-105). */
    if (!ctx || c->dgram)
        return HRESULT_FROM_WIN32(WSAEINVAL);
    if (!df)
        return E_INVALIDARG;
    if (!emulate_addr_ok(remote, remote_len) || !emulate_addr_ok(local, local_len))
        return HRESULT_FROM_WIN32(WSAEINVAL);
    EnterCriticalSection(&c->lock);
    if (c->emulated)
        hr = FWX_E_ALREADY_EMULATED;     /* one emulator per connection (reference 2.9) */
    else if (c->terminated || c->state != CONN_EVENTS)
        hr = FWX_E_TERMINATING;
    else
        c->emulated = TRUE;
    LeaveCriticalSection(&c->lock);
    if (FAILED(hr))
        return hr;
    if (FAILED(hr = attach_link(c, ctx, df, fwx_dfpc_Emulation, NULL))) {
        EnterCriticalSection(&c->lock);
        c->emulated = FALSE;
        LeaveCriticalSection(&c->lock);
        return hr;
    }
    if (local) {
        EnterCriticalSection(&c->lock);
        guard_copy(&c->win_ext, local, local_len);
        c->win_ext_len = (int)local_len;
        c->name_set = TRUE;
        LeaveCriticalSection(&c->lock);
    }
    fx_log(FX_LOG_INFO, "conn %lu rule %s: emulated by filter %s (EmulateConnection): no "
           "connect to the target", c->id, rule_name(c), fx_filter_name(ctx->filter));
    if (out) {
        IFWXConnection_AddRef(iface);
        *out = iface;
    }
    return S_OK;
}

/* Emulated connections: the local name the filter chose, which
 * GetExternalSocketName then reports (reference 2.9, HOST-105). */
static HRESULT WINAPI connection_SetSocketName(IFWXConnection *iface, LPSOCKADDR addr, DWORD len)
{
    struct connection *c = impl_from_IFWXConnection(iface);
    HRESULT hr = S_OK;
    if (!addr || len < sizeof(SOCKADDR_IN) || len > sizeof(c->win_ext) ||
        (addr->sa_family != AF_INET && addr->sa_family != AF_INET6))
        return FWX_E_INVALID_ARG;
    EnterCriticalSection(&c->lock);
    if (c->terminated)
        hr = FWX_E_TERMINATING;
    else if (!c->emulated)
        hr = FWX_E_INVALID_ARG;
    else if (c->name_set)
        hr = FWX_E_ALREADY_EXISTS;
    else {
        memcpy(&c->win_ext, addr, len);
        c->win_ext_len = (int)len;
        c->name_set = TRUE;
    }
    LeaveCriticalSection(&c->lock);
    return hr;
}

static HRESULT WINAPI connection_GetExternalSocketName(IFWXConnection *iface, LPSOCKADDR addr,
                                                       LPINT len)
{
    struct connection *c = impl_from_IFWXConnection(iface);

    if (!addr || !len)
        return HRESULT_FROM_WIN32(WSAEFAULT);
    if (c->terminated)
        return FWX_E_TERMINATING;
    /* Known once the connection to the target exists (reference 3.10). */
    if (!c->win_ext_len)
        return HRESULT_FROM_WIN32(WSAEINVAL);
    if (*len < c->win_ext_len)
        return HRESULT_FROM_WIN32(WSAEFAULT);
    memcpy(addr, &c->win_ext, c->win_ext_len);
    *len = c->win_ext_len;
    return S_OK;
}

static HRESULT WINAPI connection_SetClientAddress(IFWXConnection *iface, LPSOCKADDR addr, DWORD len)
{
    struct connection *c = impl_from_IFWXConnection(iface);
    struct anticipation *a;
    HRESULT hr;
    /* Only the connection objects of BindForClient have a client address to set. */
    EnterCriticalSection(&c->lock);
    a = c->ant;
    if (a)
        anticipate_addref(a);
    LeaveCriticalSection(&c->lock);
    if (!a)
        return c->terminated ? FWX_E_TERMINATING : E_INVALIDARG;
    hr = anticipate_set_client_address(a, addr, len);
    anticipate_release(a);
    return hr;
}

static HRESULT WINAPI connection_Deny(IFWXConnection *iface, DWORD reserved)
{
    struct connection *c = impl_from_IFWXConnection(iface);
    struct event_ctx *ctx = in_context(c, fwx_Connect_Tcp | fwx_Bind_Tcp | fwx_Bind_Udp |
                                              fwx_AcceptedConnection);
    if (!ctx)
        return FWX_E_BAD_CONTEXT;
    if (reserved)
        return E_INVALIDARG;
    EnterCriticalSection(&c->lock);
    if (!c->denied) {
        snprintf(c->denied_by, sizeof(c->denied_by), "%s", fx_filter_name(ctx->filter));
        if (ctx->filter)
            InterlockedIncrement(&ctx->filter->denials);
    }
    c->denied = TRUE;     /* deny wins over any allow (reference 2.6) */
    LeaveCriticalSection(&c->lock);
    return S_OK;
}

static HRESULT WINAPI connection_SetProtocol(IFWXConnection *iface, REFGUID guid, DWORD flags)
{
    struct connection *c = impl_from_IFWXConnection(iface);
    if (!in_context(c, fwx_Connect_Tcp | fwx_Bind_Tcp | fwx_Bind_Udp))
        return FWX_E_BAD_CONTEXT;
    if (!guid)
        return E_INVALIDARG;
    if (flags & FWX_FLAG_EMULATE_PROTOCOL) {
        HRESULT hr = S_OK;
        /* Outbound emulation (reference 2.9): the filter answers a client's connect
         * itself; only fwx_Connect_Tcp has a connect to stand in for here. */
        if (!in_context(c, fwx_Connect_Tcp))
            return FX_NOTIMPL("IFWXConnection", "SetProtocol(FWX_FLAG_EMULATE_PROTOCOL) on a bind");
        EnterCriticalSection(&c->lock);
        if (c->emulated)
            hr = FWX_E_ALREADY_EMULATED;
        else if (c->state != CONN_EVENTS || c->terminated)
            hr = FWX_E_TERMINATING;
        else {
            c->emulated = TRUE;
            c->protocol = *guid;
        }
        LeaveCriticalSection(&c->lock);
        return hr;
    }
    c->protocol = *guid;
    return S_OK;
}

FX_HOST_VTBL(IFWXConnection, connection_vtbl) = {
    {
        connection_QueryInterface,
        connection_AddRef,
        connection_Release,
        connection_AttachDataFilter,
        connection_AttachDataFilterWithDestination,
        connection_EmulateConnection,
        connection_SetSocketName,
        connection_GetExternalSocketName,
        connection_SetClientAddress,
        connection_Deny,
        connection_SetProtocol,
    },
    FX_TRAPS(IFWXConnection)
};
