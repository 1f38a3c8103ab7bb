/*
 * anticipate.c — anticipated actions (reference §2.8): the secondary
 * connections a filter arranges in advance, and their end.
 *
 *   AllowFutureConnect   an outbound connection of the session's client to
 *                        an address passes (outbound rules) and is reported;
 *   RedirectConnections  the host listens on an internal address and
 *                        forwards each connection there to the real target;
 *   BindForClient        the host listens on its external side and forwards
 *                        each connection there to the client;
 *   EmulateClientBind    only raises fwx_Bind_Tcp (no socket);
 *   RetroactiveAllowBind approves a bind that exists (one of ours).
 *
 * An action ends when it is cancelled (IFWXFirewallAction::Cancel), used
 * (one-shot unless FWX_FLAG_ALLOW_MULTIPLE), expired (FWX_FLAG_TIMEOUT:
 * [host] secondary-timeout; binds always expire), or when its session ends
 * or the host stops. An ended action refuses the connection it would have
 * allowed: its listener is closed (connection refused), a connection
 * accepted before the close is reset, an outbound connection is no longer
 * matched. Each connection an action lets through raises
 * fwx_EstablishedConnection in the registering session filter only, with
 * the registration's punkContext.
 *
 * Threads: the registry is a list under one lock; a listener and its timer
 * belong to one worker's loop, and every change to them runs there.
 */
#include "fwxhost.h" /* first: Winsock before any libc header */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "anticipate.h"
#include "guard.h"
#include "hostobj.h"

/* Win32 sockaddr_in6 (ws2tcpip.h is not ours to include, fwxhost.h). */
typedef struct { USHORT sin6_family, sin6_port; ULONG sin6_flowinfo; BYTE sin6_addr[16];
                 ULONG sin6_scope_id; } SOCKADDR_IN6;

enum ant_kind { ANT_CONNECT, ANT_REDIRECT, ANT_BIND };

static const char *const kind_names[] = { "AllowFutureConnect", "RedirectConnections",
                                          "BindForClient" };

struct anticipation {
    LONG ref;
    struct anticipation *next;     /* registry, under reg_lock */
    BOOL listed;
    enum ant_kind kind;
    unsigned long id;
    struct session *session;       /* referenced */
    IFWXSessionFilter *sf;         /* referenced; NULL: nobody to tell */
    struct fx_filter *owner;       /* sf's filter (guard accounting); may be NULL */
    IUnknown *ctx;                 /* referenced */
    IFWXIpFilter *ipf;             /* referenced: who may connect (binds) */
    GUID protocol;
    DWORD flags;
    SOCKADDR_STORAGE win_match;    /* connect: the destination allowed */
    int win_match_len;
    unsigned char target[28];      /* redirect: the real target; bind: the client (Linux) */
    int target_len;
    unsigned char local[28];       /* the listening address (Linux) */
    int local_len;
    struct worker *worker;         /* owns the listener and the timer */
    int lfd;                       /* loop thread only once posted */
    BOOL registered, closed;       /* loop thread only */
    fx_timer *timer;               /* loop thread only */
    LONG ended;                    /* cancelled, used up, expired */
    LONG uses;
    unsigned accepted;             /* loop thread: which client address next (binds) */
    struct connection *bind_conn;  /* BindForClient: the connection object handed out */
};

static CRITICAL_SECTION reg_lock;
static LONG reg_init;
static struct anticipation *registry;
static LONG live_listeners;
static LONG next_id;

static void reg_setup(void)
{
    if (InterlockedCompareExchange(&reg_init, 1, 0) == 0) {
        InitializeCriticalSection(&reg_lock);
        InterlockedExchange(&reg_init, 2);
    }
    while (reg_init != 2)
        Sleep(0);
}

void anticipate_addref(struct anticipation *a)
{
    InterlockedIncrement(&a->ref);
}

void anticipate_release(struct anticipation *a)
{
    if (!a || InterlockedDecrement(&a->ref) != 0)
        return;
    /* Filter code (Release) runs here: never under a lock. */
    if (a->sf)
        GUARDED_VOID(a->owner, "IFWXSessionFilter", "Release", IFWXSessionFilter_Release(a->sf));
    if (a->ctx)
        GUARDED_VOID(a->owner, "IUnknown", "Release", IUnknown_Release(a->ctx));
    if (a->ipf)
        GUARDED_VOID(a->owner, "IFWXIpFilter", "Release", IFWXIpFilter_Release(a->ipf));
    if (a->bind_conn)
        connection_bind_object_end(a->bind_conn);
    IFWXSession_Release(session_iface(a->session));
    free(a);
}

static const char *addr_text(const void *sa, int len, char *buf, size_t size)
{
    if (len <= 0 || fx_addr_format(sa, len, buf, size) < 0)
        snprintf(buf, size, "?");
    return buf;
}

/* ------------------------------------------------------------ ending */

/* Loop thread: the listener and the timer go. */
static void close_on_loop(struct anticipation *a)
{
    if (a->timer) {
        fx_timer_cancel(a->worker->loop, a->timer);
        a->timer = NULL;
    }
    if (a->closed)
        return;
    a->closed = TRUE;
    if (a->lfd >= 0) {
        if (a->registered)
            fx_loop_del_fd(a->worker->loop, a->lfd);
        close(a->lfd);
        a->lfd = -1;
        InterlockedDecrement(&live_listeners);
    }
}

static void close_task(void *arg)
{
    struct anticipation *a = arg;
    close_on_loop(a);
    anticipate_release(a);     /* the reference the post took */
}

static void unlist(struct anticipation *a)
{
    BOOL was = FALSE;
    reg_setup();
    EnterCriticalSection(&reg_lock);
    for (struct anticipation **p = &registry; *p; p = &(*p)->next)
        if (*p == a) {
            *p = a->next;
            was = a->listed;
            a->listed = FALSE;
            break;
        }
    LeaveCriticalSection(&reg_lock);
    if (was)
        anticipate_release(a);     /* the registry's reference */
}

/* Any thread, no lock held: the action ends once; why is logged. */
static void end_action(struct anticipation *a, const char *why)
{
    char text[64];
    unsigned char lin[28];
    int llen = sizeof(lin);
    if (InterlockedExchange(&a->ended, 1))
        return;
    if (a->kind == ANT_CONNECT &&
        fx_sa_from_win32(&a->win_match, a->win_match_len, lin, &llen) != 0)
        llen = 0;
    fx_log(FX_LOG_INFO, "session %s: %s #%lu %s %s %s", a->session->name, kind_names[a->kind],
           a->id, a->kind == ANT_CONNECT ? "to" : "on",
           a->kind == ANT_CONNECT ? addr_text(lin, llen, text, sizeof(text))
                                  : addr_text(a->local, a->local_len, text, sizeof(text)),
           why);
    if (a->worker) {     /* the listener and the timer close on their loop */
        anticipate_addref(a);
        if (fx_loop_in_thread(a->worker->loop))
            fx_loop_defer(a->worker->loop, close_task, a);
        else
            fx_loop_post(a->worker->loop, close_task, a);
    }
    unlist(a);
}

static void action_cancelled(void *arg)
{
    end_action(arg, "cancelled by the filter");
}

static void expire_task(void *arg)
{
    struct anticipation *a = arg;
    a->timer = NULL;
    if (a->uses == 0 || !(a->flags & FWX_FLAG_ALLOW_MULTIPLE) || a->kind == ANT_BIND)
        end_action(a, "expired (secondary-timeout)");
}

/* ------------------------------------------------------------ registry */

static struct anticipation *ant_new(struct session *s, enum ant_kind kind, DWORD flags,
                                    REFGUID guid, IFWXSessionFilter *sf, IUnknown *ctx)
{
    struct anticipation *a = calloc(1, sizeof(*a));
    struct fx_filter *caller = guard_current_filter();
    if (!a)
        return NULL;
    a->ref = 1;
    a->kind = kind;
    a->id = (unsigned long)InterlockedIncrement(&next_id);
    a->session = s;
    IFWXSession_AddRef(session_iface(s));
    a->flags = flags;
    if (guid)
        a->protocol = *guid;
    a->lfd = -1;
    a->owner = sf ? session_filter_owner(s, sf) : caller;
    if (!a->owner)
        a->owner = caller;
    /* Pointers from filters are checked before use (HOST-022); AddRef is
     * filter code, and no lock is held here. */
    if (sf && guard_check_iface(sf, 5)) {
        a->sf = sf;
        GUARDED_VOID(a->owner, "IFWXSessionFilter", "AddRef", IFWXSessionFilter_AddRef(sf));
    }
    if (ctx && guard_check_iface(ctx, 3)) {
        a->ctx = ctx;
        GUARDED_VOID(a->owner, "IUnknown", "AddRef", IUnknown_AddRef(ctx));
    }
    return a;
}

static void ant_list(struct anticipation *a)
{
    reg_setup();
    anticipate_addref(a);
    EnterCriticalSection(&reg_lock);
    a->listed = TRUE;
    a->next = registry;
    registry = a;
    LeaveCriticalSection(&reg_lock);
}

static void action_released(void *arg)
{
    anticipate_release(arg);
}

/* The action owns a reference on a: Cancel always reaches a live object. */
static HRESULT ant_action(struct anticipation *a, IFWXFirewallAction **out)
{
    HRESULT hr;
    if (!out)
        return S_OK;
    anticipate_addref(a);
    if (FAILED(hr = action_create_owned(action_cancelled, action_released, a, out)))
        anticipate_release(a);
    return hr;
}

static struct worker *pick_worker(void)
{
    static LONG rr;
    struct worker *w = host_current_worker();
    struct host *h = the_host;
    if (w)
        return w;
    if (!h || !h->workers || h->nworkers <= 0)
        return NULL;
    return &h->workers[(unsigned)InterlockedIncrement(&rr) % (unsigned)h->nworkers];
}

static BOOL is_tcp(INT protocol)
{
    return protocol == FWX_PROTOCOL_TCP || protocol == 6;    /* ABI-018: both decoded */
}

static BOOL is_udp(INT protocol)
{
    return protocol == FWX_PROTOCOL_UDP || protocol == 17;
}

/* ------------------------------------------------------------ listeners */

static void on_ant_accept(fx_loop *loop, int fd, unsigned events, void *data);

static void start_task(void *arg)
{
    struct anticipation *a = arg;
    if (a->ended || a->closed) {
        close_on_loop(a);
    } else {
        if (a->lfd >= 0) {
            if (fx_loop_add_fd(a->worker->loop, a->lfd, FX_READ, on_ant_accept, a) == 0)
                a->registered = TRUE;
            else
                end_action(a, "could not be watched (loop)");
        }
        if ((a->flags & FWX_FLAG_TIMEOUT) || a->kind == ANT_BIND) {
            unsigned secs = the_host && the_host->config ? the_host->config->host.secondary_timeout : 60;
            a->timer = fx_timer_start(a->worker->loop, (uint64_t)secs * 1000, expire_task, a);
        }
    }
    anticipate_release(a);
}

/* A listening socket on sa (Linux layout, port as given); the bound
 * address is written back. fd or -errno. */
static int open_listener(struct anticipation *a, const void *sa, int len, int backlog)
{
    char err[160];
    int fd = fx_tcp_listen(sa, len, backlog > 0 ? backlog : 8, 0, err, sizeof(err));
    if (fd < 0)
        return fd;
    a->local_len = sizeof(a->local);
    if (fx_getsockname(fd, a->local, &a->local_len) != 0) {
        close(fd);
        return -EINVAL;
    }
    a->lfd = fd;
    InterlockedIncrement(&live_listeners);
    return fd;
}

static void start_listener(struct anticipation *a)
{
    anticipate_addref(a);
    if (fx_loop_in_thread(a->worker->loop))
        fx_loop_defer(a->worker->loop, start_task, a);
    else
        fx_loop_post(a->worker->loop, start_task, a);
}

/* May this peer connect (a bind's IFWXIpFilter)? */
static BOOL peer_allowed(struct anticipation *a, const void *peer, int len)
{
    SOCKADDR_STORAGE w;
    int wlen = sizeof(w);
    HRESULT hr;
    if (!a->ipf)
        return TRUE;
    if (fx_sa_to_win32(peer, len, &w, &wlen) != 0 || ((SOCKADDR *)&w)->sa_family != AF_INET)
        return FALSE;
    GUARDED_CALL(hr, a->owner, "IFWXIpFilter", "IsIncluded",
                 IFWXIpFilter_IsIncluded(a->ipf, ((SOCKADDR_IN *)&w)->sin_addr));
    return hr == S_OK;
}

static void on_ant_accept(fx_loop *loop, int fd, unsigned events, void *data)
{
    struct anticipation *a = data;
    char who[64], where[64];

    for (int i = 0; i < 16 && !a->closed; i++) {
        unsigned char sa[28];
        int salen = sizeof(sa);
        int cfd = fx_tcp_accept(fd, sa, &salen);
        if (cfd < 0)
            return;
        addr_text(sa, salen, who, sizeof(who));
        if (a->ended || (the_host && the_host->stopping)) {
            fx_log(FX_LOG_NOTICE, "session %s: %s #%lu: connection from %s refused: the action "
                   "has ended", a->session->name, kind_names[a->kind], a->id, who);
            fx_close_abort(cfd);
            continue;
        }
        if (the_host && the_host->config &&
            (unsigned)the_host->live_connections >= the_host->config->host.max_sessions) {
            fx_log(FX_LOG_WARN, "session %s: %s #%lu: connection from %s refused: max-sessions "
                   "(%u) reached", a->session->name, kind_names[a->kind], a->id, who,
                   the_host->config->host.max_sessions);
            fx_close_abort(cfd);
            continue;
        }
        if (!peer_allowed(a, sa, salen)) {
            fx_log(FX_LOG_NOTICE, "session %s: %s #%lu: connection from %s refused by the "
                   "IFWXIpFilter", a->session->name, kind_names[a->kind], a->id, who);
            fx_close_abort(cfd);
            continue;
        }
        const unsigned char *target = a->target;
        int target_len = a->target_len;
        if (a->kind == ANT_BIND && fx_sa_is_any(target, target_len)) {
            fx_log(FX_LOG_NOTICE, "session %s: BindForClient #%lu: connection from %s refused: "
                   "the client address was never set (SetClientAddress)", a->session->name,
                   a->id, who);
            fx_close_abort(cfd);
            continue;
        }
        InterlockedIncrement(&a->uses);
        a->accepted++;
        fx_log(FX_LOG_INFO, "session %s: %s #%lu: connection from %s, forwarded to %s",
               a->session->name, kind_names[a->kind], a->id, who,
               addr_text(target, target_len, where, sizeof(where)));
        anticipate_addref(a);
        if (!(a->flags & FWX_FLAG_ALLOW_MULTIPLE))
            end_action(a, "used (one-shot)");
        connection_accept_secondary(a->worker, a->session, a, cfd, sa, salen, a->local,
                                    a->local_len, target, target_len);
        anticipate_release(a);
    }
}

/* ------------------------------------------------------------ events */

void anticipate_established(struct anticipation *a, struct connection *c)
{
    FwxFirewallEvent ev;
    if (!a->sf)
        return;
    memset(&ev, 0, sizeof(ev));
    ev.EventType = fwx_EstablishedConnection;
    ev.Parameters.EstablishedConnection.Protocol = FWX_PROTOCOL_TCP;
    /* The party outside the client (HOST-101): the target for connects and
     * redirects, the peer that connected for binds. */
    if (a->kind == ANT_BIND) {
        ev.Parameters.EstablishedConnection.Address = (LPSOCKADDR)&c->win_remote;
        ev.Parameters.EstablishedConnection.AddressLength = c->win_remote_len;
    } else {
        ev.Parameters.EstablishedConnection.Address = (LPSOCKADDR)&c->win_target;
        ev.Parameters.EstablishedConnection.AddressLength = c->win_target_len;
    }
    ev.Parameters.EstablishedConnection.piConnection = connection_iface(c);
    ev.Parameters.EstablishedConnection.UserContext = (UserContextType)a->ctx;
    session_raise_one(a->session, a->sf, a->owner, &ev, c);
}

/* ------------------------------------------------------------ AllowFutureConnect */

HRESULT anticipate_allow_connect(struct session *s, LPSOCKADDR addr, DWORD len, INT protocol,
                                 DWORD flags, REFGUID guid, IFWXSessionFilter *sf,
                                 IUnknown *ctx, IFWXFirewallAction **action)
{
    struct anticipation *a;
    HRESULT hr;
    char text[64];

    if (action)
        *action = NULL;
    if (!addr)
        return E_POINTER;
    if (len < sizeof(SOCKADDR_IN) || len > sizeof(SOCKADDR_STORAGE) ||
        (addr->sa_family != AF_INET && addr->sa_family != AF_INET6))
        return E_INVALIDARG;
    if (is_udp(protocol))
        return FX_NOTIMPL("IFWXSession", "AllowFutureConnect(FWX_PROTOCOL_UDP)");
    if (!is_tcp(protocol))
        return E_INVALIDARG;
    if (s->ended)
        return FWX_E_TERMINATING;
    if (!(a = ant_new(s, ANT_CONNECT, flags, guid, sf, ctx)))
        return E_OUTOFMEMORY;
    memcpy(&a->win_match, addr, len);
    a->win_match_len = len;
    if (FAILED(hr = ant_action(a, action))) {
        anticipate_release(a);
        return hr;
    }
    ant_list(a);
    if (flags & FWX_FLAG_TIMEOUT) {
        a->worker = pick_worker();
        if (a->worker) {
            /* The timer lives on a loop: start it there. */
            anticipate_addref(a);
            fx_loop_post(a->worker->loop, start_task, a);
        }
    }
    {
        unsigned char lin[28];
        int llen = sizeof(lin);
        if (fx_sa_from_win32(addr, len, lin, &llen) == 0)
            addr_text(lin, llen, text, sizeof(text));
        else
            snprintf(text, sizeof(text), "?");
    }
    fx_log(FX_LOG_INFO, "session %s: AllowFutureConnect #%lu to %s (flags 0x%lx)", s->name,
           a->id, text, (unsigned long)flags);
    anticipate_release(a);
    return S_OK;
}

static BOOL connect_matches(const struct anticipation *a, const struct session *s,
                            const void *win_target, int len)
{
    const SOCKADDR_IN *want = (const SOCKADDR_IN *)&a->win_match, *have = win_target;
    if (a->kind != ANT_CONNECT || a->ended)
        return FALSE;
    if (a->session != s) {
        /* Address-based: any session of the same client address. */
        if (!(a->flags & FWX_FLAG_ADDRESS_BASED) || a->session->client_len != s->client_len ||
            ((const SOCKADDR *)&s->client)->sa_family != AF_INET ||
            ((const SOCKADDR_IN *)&a->session->client)->sin_addr.s_addr !=
                ((const SOCKADDR_IN *)&s->client)->sin_addr.s_addr)
            return FALSE;
    }
    if (len < (int)sizeof(SOCKADDR_IN) || have->sin_family != want->sin_family)
        return FALSE;
    if (want->sin_family == AF_INET6) {
        const SOCKADDR_IN6 *w6 = (const SOCKADDR_IN6 *)want, *h6 = win_target;
        if (len < (int)sizeof(SOCKADDR_IN6))
            return FALSE;
        return (w6->sin6_port == 0 || w6->sin6_port == h6->sin6_port) &&
               memcmp(&w6->sin6_addr, &h6->sin6_addr, sizeof(w6->sin6_addr)) == 0;
    }
    return (want->sin_addr.s_addr == INADDR_ANY || want->sin_addr.s_addr == have->sin_addr.s_addr) &&
           (want->sin_port == 0 || want->sin_port == have->sin_port);
}

struct anticipation *anticipate_take_connect(struct session *s, const void *win_target, int len)
{
    struct anticipation *found = NULL;
    /* Every outbound connection asks; almost always nothing is registered,
     * so skip the global lock then. A filter registers before its client
     * can learn the port (the syscalls in between order the store). */
    if (!*(struct anticipation *volatile *)&registry)
        return NULL;
    reg_setup();
    EnterCriticalSection(&reg_lock);
    for (struct anticipation *a = registry; a; a = a->next)
        if (connect_matches(a, s, win_target, len)) {
            found = a;
            anticipate_addref(a);
            break;
        }
    LeaveCriticalSection(&reg_lock);
    if (!found)
        return NULL;
    InterlockedIncrement(&found->uses);
    if (!(found->flags & FWX_FLAG_ALLOW_MULTIPLE))
        end_action(found, "used (one-shot)");
    return found;
}

/* ------------------------------------------------------------ RedirectConnections */

/* The caller's address IN when it names one (a specific IPv4 address, or an IPv6
 * one): copied to *W, *GIVEN set. Else the session's *SAVED address of *SAVED_LEN
 * bytes, read under its lock. Win32 layout; returns the length, <= 0 when there is
 * none. Shared by RedirectConnections' and BindForClient's defaults (HOST-100). */
static int given_or_saved(struct session *s, LPSOCKADDR in, DWORD in_len,
                          const SOCKADDR_STORAGE *saved, const int *saved_len,
                          SOCKADDR_STORAGE *w, BOOL *given)
{
    int wlen;

    *given = in && in_len >= sizeof(SOCKADDR_IN) && in_len <= sizeof(*w) &&
             ((in->sa_family == AF_INET && ((SOCKADDR_IN *)in)->sin_addr.s_addr != INADDR_ANY) ||
              (in->sa_family == AF_INET6 && in_len >= sizeof(SOCKADDR_IN6)));
    if (*given) {
        memcpy(w, in, in_len);
        return in_len;
    }
    EnterCriticalSection(&s->lock);
    wlen = *saved_len;
    memcpy(w, saved, sizeof(*w));
    LeaveCriticalSection(&s->lock);
    return wlen;
}

/* The internal address the client is told: the caller's IP if it gave one
 * (in,out), else the local address of the session's latest client
 * connection (HOST-100). Linux layout, port 0. */
static int internal_address(struct session *s, LPSOCKADDR in, DWORD in_len, void *out, int *out_len)
{
    SOCKADDR_STORAGE w;
    BOOL given;
    int wlen = given_or_saved(s, in, in_len, &s->last_local, &s->last_local_len, &w, &given);

    if (wlen <= 0 || fx_sa_from_win32(&w, wlen, out, out_len) != 0)
        return -1;
    ((struct sockaddr_in *)out)->sin_port = 0;    /* same offset for IPv6 */
    return 0;
}

static void set_port(void *sa, unsigned port)
{
    ((struct sockaddr_in *)sa)->sin_port = htons((unsigned short)port);
}

static unsigned get_port(const void *sa)
{
    return ntohs(((const struct sockaddr_in *)sa)->sin_port);
}

HRESULT anticipate_redirect(struct session *s, LPSOCKADDR *addrs, DWORD len, DWORD count,
                            LPSOCKADDR internal, LPDWORD internal_len, INT protocol,
                            DWORD flags, REFGUID guid, IFWXSessionFilter *sf, IUnknown *ctx,
                            IFWXFirewallAction **actions)
{
    struct anticipation *list[16];
    unsigned char base[28];
    int base_len = sizeof(base);
    HRESULT hr = S_OK;
    DWORD n = 0;
    char where[64], to[64];

    if (actions)
        for (DWORD i = 0; i < count && i < 16; i++)
            actions[i] = NULL;
    if (!addrs || !internal || !internal_len)
        return E_POINTER;
    if (count == 0 || count > 16 || len < sizeof(SOCKADDR_IN) || len > sizeof(SOCKADDR_STORAGE))
        return E_INVALIDARG;
    if (is_udp(protocol))
        return FX_NOTIMPL("IFWXSession", "RedirectConnections(FWX_PROTOCOL_UDP)");
    if (!is_tcp(protocol))
        return E_INVALIDARG;
    if (s->ended)
        return FWX_E_TERMINATING;
    if (internal_address(s, internal, *internal_len, base, &base_len) != 0) {
        fx_log(FX_LOG_WARN, "session %s: RedirectConnections: no internal address to listen on "
               "(pass one in InternalAddress)", s->name);
        return E_INVALIDARG;
    }
    for (DWORD i = 0; i < count; i++) {
        unsigned char lin[28];
        int llen = sizeof(lin);
        if (!addrs[i] || fx_sa_from_win32(addrs[i], len, lin, &llen) != 0 || get_port(lin) == 0)
            return E_INVALIDARG;
    }
    struct worker *w = pick_worker();
    if (!w)
        return FWX_E_TERMINATING;

    /* Consecutive ports when several targets are given (reference 2.8):
     * the first from the kernel, the others after it; a few tries. */
    for (int attempt = 0; attempt < 8 && n < count; attempt++) {
        unsigned first = 0;
        n = 0;
        hr = S_OK;
        for (DWORD i = 0; i < count; i++) {
            struct anticipation *a = ant_new(s, ANT_REDIRECT, flags, guid, sf, ctx);
            unsigned char sa[28];
            if (!a) {
                hr = E_OUTOFMEMORY;
                break;
            }
            a->worker = w;
            a->target_len = sizeof(a->target);
            fx_sa_from_win32(addrs[i], len, a->target, &a->target_len);
            memcpy(sa, base, base_len);
            set_port(sa, i == 0 ? 0 : first + i);
            int fd = open_listener(a, sa, base_len, 8);
            if (fd < 0) {
                hr = HRESULT_FROM_WIN32(fx_errno_to_wsa(-fd));
                anticipate_release(a);
                break;
            }
            if (i == 0)
                first = get_port(a->local);
            list[n++] = a;
        }
        if (n == count)
            break;
        for (DWORD i = 0; i < n; i++) {     /* try again from another first port */
            close(list[i]->lfd);
            list[i]->lfd = -1;
            InterlockedDecrement(&live_listeners);
            anticipate_release(list[i]);
        }
        n = 0;
        if (hr == E_OUTOFMEMORY)
            return hr;
    }
    if (n < count)
        return FAILED(hr) ? hr : E_FAIL;

    for (DWORD i = 0; i < n; i++) {
        struct anticipation *a = list[i];
        if (FAILED(ant_action(a, actions ? &actions[i] : NULL)))
            hr = E_OUTOFMEMORY;
    }
    if (FAILED(hr)) {
        for (DWORD i = 0; i < n; i++) {
            if (actions && actions[i]) {
                IFWXFirewallAction_Release(actions[i]);
                actions[i] = NULL;
            }
            close(list[i]->lfd);
            list[i]->lfd = -1;
            InterlockedDecrement(&live_listeners);
            anticipate_release(list[i]);
        }
        return hr;
    }
    {
        SOCKADDR_STORAGE win;
        int wlen = sizeof(win);
        fx_sa_to_win32(list[0]->local, list[0]->local_len, &win, &wlen);
        if (*internal_len < (DWORD)wlen) {
            hr = HRESULT_FROM_WIN32(WSAEFAULT);
        } else {
            memcpy(internal, &win, wlen);
            *internal_len = wlen;
        }
    }
    for (DWORD i = 0; i < n; i++) {
        struct anticipation *a = list[i];
        if (FAILED(hr)) {
            end_action(a, "not handed out");
        } else {
            ant_list(a);
            start_listener(a);
            fx_log(FX_LOG_INFO, "session %s: RedirectConnections #%lu: %s -> %s (flags 0x%lx)",
                   s->name, a->id, addr_text(a->local, a->local_len, where, sizeof(where)),
                   addr_text(a->target, a->target_len, to, sizeof(to)), (unsigned long)flags);
        }
        if (FAILED(hr) && actions && actions[i]) {
            IFWXFirewallAction_Release(actions[i]);
            actions[i] = NULL;
        }
        anticipate_release(a);
    }
    return hr;
}

/* ------------------------------------------------------------ BindForClient */

/* The external address to bind when the caller gave none: our address
 * towards the session's latest target (HOST-100). */
static int external_address(struct session *s, LPSOCKADDR in, DWORD in_len, void *out, int *out_len)
{
    SOCKADDR_STORAGE w;
    BOOL given;
    int wlen = given_or_saved(s, in, in_len, &s->last_ext, &s->last_ext_len, &w, &given);

    /* Our saved address, with the port of the caller's wildcard address if it gave one. */
    if (!given && wlen > 0)
        ((SOCKADDR_IN *)&w)->sin_port =
            in && in_len >= sizeof(SOCKADDR_IN) ? ((SOCKADDR_IN *)in)->sin_port : 0;
    if (wlen <= 0 || fx_sa_from_win32(&w, wlen, out, out_len) != 0)
        return -1;
    return 0;
}

HRESULT anticipate_bind_for_client(struct session *s, LPSOCKADDR *clients, DWORD len,
                                   LPSOCKADDR proxy, DWORD proxy_len, INT protocol, DWORD count,
                                   DWORD flags, INT backlog, REFGUID guid,
                                   IFWXSessionFilter *sf, IUnknown *ctx, IFWXIpFilter *ipf,
                                   IFWXConnection **conns)
{
    struct anticipation *a;
    unsigned char sa[28];
    int salen = sizeof(sa);
    struct connection *c = NULL;
    HRESULT hr;
    char where[64], to[64];

    if (conns)
        for (DWORD i = 0; i < count && i < 64; i++)
            conns[i] = NULL;
    if (!proxy || (count && !clients))
        return E_POINTER;
    /* One client address is what a bind forwards to (HOST-102). */
    if (count != 1 || len < sizeof(SOCKADDR_IN) || len > sizeof(SOCKADDR_STORAGE) ||
        proxy_len < sizeof(SOCKADDR_IN) || proxy_len > sizeof(SOCKADDR_STORAGE) || !clients[0])
        return E_INVALIDARG;
    if (is_udp(protocol))
        return FX_NOTIMPL("IFWXSession", "BindForClient(FWX_PROTOCOL_UDP)");
    if (!is_tcp(protocol))
        return E_INVALIDARG;
    if (s->ended)
        return FWX_E_TERMINATING;
    if (external_address(s, proxy, proxy_len, sa, &salen) != 0) {
        fx_log(FX_LOG_WARN, "session %s: BindForClient: no external address to bind (pass one "
               "in ProxyAddress)", s->name);
        return E_INVALIDARG;
    }
    struct worker *w = pick_worker();
    if (!w)
        return FWX_E_TERMINATING;
    if (!(a = ant_new(s, ANT_BIND, flags, guid, sf, ctx)))
        return E_OUTOFMEMORY;
    a->worker = w;
    a->target_len = sizeof(a->target);
    if (fx_sa_from_win32(clients[0], len, a->target, &a->target_len) != 0) {
        anticipate_release(a);
        return E_INVALIDARG;
    }
    if (ipf && guard_check_iface(ipf, 10)) {
        a->ipf = ipf;
        GUARDED_VOID(a->owner, "IFWXIpFilter", "AddRef", IFWXIpFilter_AddRef(ipf));
    }
    int fd = open_listener(a, sa, salen, backlog);
    if (fd < 0) {
        hr = HRESULT_FROM_WIN32(fx_errno_to_wsa(-fd));
        fx_log(FX_LOG_NOTICE, "session %s: BindForClient on %s failed: %s", s->name,
               addr_text(sa, salen, where, sizeof(where)), strerror(-fd));
        anticipate_release(a);
        return hr;
    }
    /* The connection object: fwx_Bind_Tcp and fwx_Listen in the session;
     * a filter that denies the bind fails the call. */
    hr = connection_bind_object(w, s, a, a->local, a->local_len, TRUE, &c);
    if (FAILED(hr)) {
        close(a->lfd);
        a->lfd = -1;
        InterlockedDecrement(&live_listeners);
        anticipate_release(a);
        return hr;
    }
    a->bind_conn = c;
    {
        SOCKADDR_STORAGE win;
        int wlen = sizeof(win);
        fx_sa_to_win32(a->local, a->local_len, &win, &wlen);
        if (proxy_len < (DWORD)wlen) {
            end_action(a, "not handed out");
            anticipate_release(a);
            return HRESULT_FROM_WIN32(WSAEFAULT);
        }
        memcpy(proxy, &win, wlen);
    }
    if (conns) {
        IFWXConnection_AddRef(connection_iface(c));
        conns[0] = connection_iface(c);
    }
    ant_list(a);
    start_listener(a);
    fx_log(FX_LOG_INFO, "session %s: BindForClient #%lu: %s -> %s (flags 0x%lx)", s->name, a->id,
           addr_text(a->local, a->local_len, where, sizeof(where)),
           addr_text(a->target, a->target_len, to, sizeof(to)), (unsigned long)flags);
    anticipate_release(a);
    return S_OK;
}

HRESULT anticipate_set_client_address(struct anticipation *a, LPSOCKADDR addr, DWORD len)
{
    unsigned char lin[28];
    int llen = sizeof(lin);
    HRESULT hr = S_OK;
    if (!addr || len > sizeof(SOCKADDR_STORAGE) || fx_sa_from_win32(addr, len, lin, &llen) != 0 ||
        fx_sa_is_any(lin, llen) || get_port(lin) == 0)
        return E_INVALIDARG;
    reg_setup();
    EnterCriticalSection(&reg_lock);
    if (a->ended)
        hr = FWX_E_TERMINATING;
    else if (!fx_sa_is_any(a->target, a->target_len))
        hr = E_INVALIDARG;     /* already set (reference 3.10) */
    else {
        memcpy(a->target, lin, llen);
        a->target_len = llen;
    }
    LeaveCriticalSection(&reg_lock);
    return hr;
}

/* ------------------------------------------------------------ EmulateClientBind, RetroactiveAllowBind */

HRESULT anticipate_emulate_client_bind(struct session *s, LPSOCKADDR client, DWORD len,
                                       LPSOCKADDR proxy, DWORD proxy_len, INT protocol,
                                       REFGUID guid, IFWXConnection **conn)
{
    unsigned char sa[28];
    int salen = sizeof(sa);
    struct connection *c = NULL;
    HRESULT hr;

    if (conn)
        *conn = NULL;
    if (!proxy || !conn)
        return E_POINTER;
    if (proxy_len < sizeof(SOCKADDR_IN) || proxy_len > sizeof(SOCKADDR_STORAGE) ||
        fx_sa_from_win32(proxy, proxy_len, sa, &salen) != 0)
        return E_INVALIDARG;
    if (!is_tcp(protocol) && !is_udp(protocol))
        return E_INVALIDARG;
    if (s->ended)
        return FWX_E_TERMINATING;
    /* No socket, so no loop: only the bind event (reference 2.8). */
    hr = connection_bind_object(host_current_worker(), s, NULL, sa, salen, FALSE, &c);
    if (FAILED(hr))
        return hr;
    if (guid)
        c->protocol = *guid;
    *conn = connection_iface(c);     /* the creation reference is the caller's */
    return S_OK;
}

HRESULT anticipate_retroactive_allow_bind(struct session *s, INT protocol, LPSOCKADDR addr,
                                          DWORD len, REFGUID guid, DWORD flags,
                                          IFWXIpFilter *ipf)
{
    unsigned char lin[28];
    int llen = sizeof(lin);
    HRESULT hr = HRESULT_FROM_WIN32(WSAEADDRNOTAVAIL);

    if (!addr)
        return E_POINTER;
    if (len > sizeof(SOCKADDR_STORAGE) || fx_sa_from_win32(addr, len, lin, &llen) != 0 ||
        get_port(lin) == 0 || (!is_tcp(protocol) && !is_udp(protocol)))
        return E_INVALIDARG;
    /* Our clients are SecureNAT clients: the only binds on the host are the
     * ones BindForClient made (HOST-103). */
    reg_setup();
    EnterCriticalSection(&reg_lock);
    for (struct anticipation *a = registry; a; a = a->next) {
        if (a->kind != ANT_BIND || a->session != s || get_port(a->local) != get_port(lin))
            continue;
        if (!fx_sa_is_any(lin, llen) && !fx_sa_equal(lin, llen, a->local, a->local_len))
            continue;
        if (a->ended) {
            hr = FWX_E_TERMINATING;
        } else if (guid && IsEqualGUID(&a->protocol, guid)) {
            hr = FWX_E_ALREADY_EXISTS;
        } else {
            if (guid)
                a->protocol = *guid;
            hr = S_OK;
        }
        break;
    }
    LeaveCriticalSection(&reg_lock);
    return hr;
}

/* ------------------------------------------------------------ session end, host stop */

static void end_matching(struct session *s, const char *why)
{
    for (;;) {
        struct anticipation *a = NULL;
        reg_setup();
        EnterCriticalSection(&reg_lock);
        for (struct anticipation *p = registry; p; p = p->next)
            if (!s || p->session == s) {
                a = p;
                anticipate_addref(a);
                break;
            }
        LeaveCriticalSection(&reg_lock);
        if (!a)
            return;
        end_action(a, why);      /* no-op if it ended meanwhile; unlist makes sure */
        unlist(a);
        anticipate_release(a);
    }
}

void anticipate_session_end(struct session *s)
{
    end_matching(s, "cancelled: its session ended");
}

void anticipate_stop_all(unsigned timeout_ms)
{
    end_matching(NULL, "cancelled: the host stops");
    uint64_t deadline = fx_now_ms() + timeout_ms;
    while (live_listeners > 0 && fx_now_ms() < deadline)
        Sleep(20);
}
