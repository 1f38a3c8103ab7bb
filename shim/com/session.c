/*
 * session.c — IFWXSession, the session filters attached to a session, and
 * event dispatch into them (reference §2.4–§2.7):
 *
 *   - which filters an event reaches (hook masks: event bit, source bit,
 *     port ranges; the per-session set replaces the global one once a
 *     session filter exists);
 *   - AttachToSession on the first matching event (CoTaskMem hook events
 *     become ours and are freed here);
 *   - FirewallEventHandler with a per-thread event context, which the
 *     context-restricted calls check (FWX_E_BAD_CONTEXT outside it);
 *   - data-filter factories (SetDataFilterFactory).
 *
 * The anticipated actions (AllowFutureConnect, BindForClient, ...) live in
 * anticipate.c; the methods here forward to it.
 *
 * Two threads may attach the same filter to one session at once (a busy
 * publishing rule). Rather than hold a lock across filter code, both
 * attach; the loser's session filter is detached and released at once.
 */
#include "fwxhost.h" /* first: Winsock before any libc header */
#include "trap.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anticipate.h"
#include "guard.h"
#include "hostobj.h"

static struct fx_tls ctx_tls = FX_TLS_INIT;

struct event_ctx *event_ctx_current(void)
{
    return fx_tls_get(&ctx_tls);
}

static void event_ctx_enter(struct event_ctx *ctx)
{
    ctx->outer = fx_tls_get(&ctx_tls);
    fx_tls_set(&ctx_tls, ctx);
}

static void event_ctx_leave(struct event_ctx *ctx)
{
    fx_tls_set(&ctx_tls, ctx->outer);
}

static inline struct session *impl_from_IFWXSession(IFWXSession *iface)
{
    return CONTAINING_RECORD(iface, struct session, IFWXSession_iface);
}

static HRESULT WINAPI session_QueryInterface(IFWXSession *iface, REFIID riid, void **out)
{
    if (!out)
        return E_POINTER;
    if (IsEqualIID(riid, &IID_IUnknown) || IsEqualIID(riid, &IID_IFWXSession)) {
        *out = iface;
        IFWXSession_AddRef(iface);
        return S_OK;
    }
    fx_log_unknown_iid("IFWXSession", riid);
    *out = NULL;
    return E_NOINTERFACE;
}

static ULONG WINAPI session_AddRef(IFWXSession *iface)
{
    return InterlockedIncrement(&impl_from_IFWXSession(iface)->ref);
}

static void free_factories(struct session *s)
{
    struct data_factory *f, *next;
    for (f = s->factories; f; f = next) {
        next = f->next;
        if (f->action) {
            action_detach(f->action);
            IFWXFirewallAction_Release(f->action);
        }
        GUARDED_VOID(NULL, "IClassFactory", "Release", IClassFactory_Release(f->factory));
        if (f->context)
            GUARDED_VOID(NULL, "IUnknown", "Release", IUnknown_Release(f->context));
        free(f);
    }
    s->factories = NULL;
}

static ULONG WINAPI session_Release(IFWXSession *iface)
{
    struct session *s = impl_from_IFWXSession(iface);
    LONG ref = InterlockedDecrement(&s->ref);
    if (ref == 0) {
        free_factories(s);
        if (s->impersonator)
            GUARDED_VOID(NULL, "IFWXImpersonator", "Release",
                         IFWXImpersonator_Release(s->impersonator));
        DeleteCriticalSection(&s->lock);
        if (the_host)
            InterlockedDecrement(&the_host->live_sessions);
        free(s);
    } else if (ref < 0) {
        fx_log(FX_LOG_ERROR, "session %s released more often than referenced", s->name);
        InterlockedExchange(&s->ref, 0x40000000);
        ref = 0;
    }
    return (ULONG)ref;
}

static HRESULT WINAPI session_GetClientAddress(IFWXSession *iface, LPSOCKADDR address, LPDWORD len)
{
    struct session *s = impl_from_IFWXSession(iface);
    if (!address || !len)
        return E_POINTER;
    if (*len < (DWORD)s->client_len) {
        *len = s->client_len;
        return HRESULT_FROM_WIN32(WSAEFAULT);
    }
    memcpy(address, &s->client, s->client_len);
    ((SOCKADDR_IN *)address)->sin_port = 0;    /* documented: the port is 0 */
    *len = s->client_len;
    return S_OK;
}

static HRESULT WINAPI session_GetClientMachineName(IFWXSession *iface, LPSTR *name)
{
    if (name)
        *name = NULL;
    /* Only Firewall (WSP) clients report a machine name; ours are SecureNAT. */
    return FWX_E_NOT_SUPPORTED;
}

/* Only a private session with a filter's impersonator knows a user; the
 * host itself authenticates nobody (SecureNAT clients). */
static HRESULT WINAPI session_ImpersonateClient(IFWXSession *iface)
{
    struct session *s = impl_from_IFWXSession(iface);
    HRESULT hr;
    if (!s->impersonator)
        return FWX_E_NOT_AUTHENTICATED;
    GUARDED_CALL(hr, NULL, "IFWXImpersonator", "Impersonate",
                 IFWXImpersonator_Impersonate(s->impersonator));
    return hr;
}

static HRESULT WINAPI session_RevertToSelf(IFWXSession *iface)
{
    struct session *s = impl_from_IFWXSession(iface);
    HRESULT hr = S_OK;
    if (s->impersonator)
        GUARDED_CALL(hr, NULL, "IFWXImpersonator", "RevertToSelf",
                     IFWXImpersonator_RevertToSelf(s->impersonator));
    return hr;
}

void session_make_private(struct session *s, IFWXImpersonator *imp)
{
    s->is_private = TRUE;
    if (imp) {
        GUARDED_VOID(NULL, "IFWXImpersonator", "AddRef", IFWXImpersonator_AddRef(imp));
        s->impersonator = imp;
    }
}

static HRESULT WINAPI session_AccessCheck(IFWXSession *iface, REFGUID filter, REFGUID protocol)
{
    return FX_NOTIMPL("IFWXSession", "AccessCheck");
}

static HRESULT WINAPI session_HostAccessCheck(IFWXSession *iface, REFGUID filter, REFGUID protocol,
                                              LPHOSTENT hostent, USHORT port, LPCSTR path,
                                              LPCSTR mime, DWORD flags, IUnknown **data)
{
    return FX_NOTIMPL("IFWXSession", "HostAccessCheck");
}

static HRESULT WINAPI session_AllowFutureConnect(IFWXSession *iface, LPSOCKADDR addr, DWORD len,
                                                 LPSOCKADDR ext, DWORD ext_len, INT protocol,
                                                 DWORD flags, REFGUID guid,
                                                 IFWXSessionFilter *sf, IUnknown *ctx,
                                                 IFWXFirewallAction **action)
{
    return anticipate_allow_connect(impl_from_IFWXSession(iface), addr, len, protocol, flags, guid,
                                    sf, ctx, action);
}

static HRESULT WINAPI session_BindForClient(IFWXSession *iface, LPSOCKADDR *clients, DWORD len,
                                            LPSOCKADDR proxy, DWORD proxy_len, INT protocol,
                                            DWORD count, DWORD flags, INT backlog, REFGUID guid,
                                            IFWXSessionFilter *sf, IUnknown *ctx,
                                            IFWXIpFilter *ipf, IFWXConnection **conns)
{
    return anticipate_bind_for_client(impl_from_IFWXSession(iface), clients, len, proxy, proxy_len,
                                      protocol, count, flags, backlog, guid, sf, ctx, ipf, conns);
}

static HRESULT WINAPI session_EmulateClientBind(IFWXSession *iface, LPSOCKADDR client, DWORD len,
                                                LPSOCKADDR proxy, DWORD proxy_len, INT protocol,
                                                REFGUID guid, IFWXConnection **conn)
{
    return anticipate_emulate_client_bind(impl_from_IFWXSession(iface), client, len, proxy,
                                          proxy_len, protocol, guid, conn);
}

static HRESULT WINAPI session_GetSessionFlags(IFWXSession *iface, LPDWORD flags)
{
    struct session *s = impl_from_IFWXSession(iface);
    if (!flags)
        return E_POINTER;
    *flags = (s->is_private ? FWX_SESSION_PRIVATE : FWX_SESSION_NAT) |
             (s->impersonator ? FWX_SESSION_AUTHENTICATED : 0) |
             (s->ended ? FWX_SESSION_TERMINATED : 0);
    return S_OK;
}

static HRESULT WINAPI session_RedirectConnections(IFWXSession *iface, LPSOCKADDR *addrs, DWORD len,
                                                  DWORD count, LPSOCKADDR internal,
                                                  LPDWORD internal_len, LPSOCKADDR ext,
                                                  DWORD ext_len, INT protocol, DWORD flags,
                                                  REFGUID guid, IFWXSessionFilter *sf,
                                                  IUnknown *ctx, IFWXFirewallAction **actions)
{
    return anticipate_redirect(impl_from_IFWXSession(iface), addrs, len, count, internal,
                               internal_len, protocol, flags, guid, sf, ctx, actions);
}

static struct session_filter *find_session_filter(struct session *s, struct fx_filter *f)
{
    for (int i = 0; i < s->nsfs; i++)
        if (s->sfs[i].filter == f && !s->sfs[i].detached)
            return &s->sfs[i];
    return NULL;
}

/* Detach and release one session filter; no lock held. */
static void detach_session_filter(struct fx_filter *f, IFWXSessionFilter *sf,
                                  FwxFilterHookEvents *hooks)
{
    HRESULT hr;
    GUARDED_CALL(hr, f, "IFWXSessionFilter", "Detach", IFWXSessionFilter_Detach(sf));
    if (hr != S_OK)
        fx_log(FX_LOG_WARN, "filter %s: IFWXSessionFilter::Detach returned 0x%08lx",
               fx_filter_name(f), (unsigned long)hr);
    GUARDED_VOID(f, "IFWXSessionFilter", "Release", IFWXSessionFilter_Release(sf));
    CoTaskMemFree(hooks);
}

/* A session filter in use is pinned by a host count taken under the lock,
 * not by AddRef: AddRef is filter code, which never runs under our locks.
 * session_end leaves Detach to the last caller still inside it. */
static IFWXSessionFilter *entry_acquire(struct session *s, struct session_filter *e)
{
    IFWXSessionFilter *sf = NULL;
    EnterCriticalSection(&s->lock);
    if (!e->detached) {
        e->busy++;
        sf = e->sf;
    }
    LeaveCriticalSection(&s->lock);
    return sf;
}

static void entry_release(struct session *s, struct session_filter *e)
{
    BOOL detach = FALSE;
    EnterCriticalSection(&s->lock);
    if (--e->busy == 0 && e->detach_pending) {
        e->detach_pending = FALSE;
        detach = TRUE;
    }
    LeaveCriticalSection(&s->lock);
    if (detach) {
        InterlockedDecrement(&e->filter->live_sessions);
        detach_session_filter(e->filter, e->sf, e->hooks);
    }
}

/* Our own copy of per-session hook events a filter returned, read without
 * trusting the pointer: S_OK, E_OUTOFMEMORY, or E_POINTER when the
 * structure or its port ranges cannot be read or are corrupt. */
static HRESULT copy_session_hooks(const FwxFilterHookEvents *src, FwxFilterHookEvents **out)
{
    FwxFilterHookEvents h;
    FwxPortRangeEvents *ranges = NULL;
    DWORD n;
    HRESULT hr;

    *out = NULL;
    if (!guard_copy(&h, src, sizeof(h)))
        return E_POINTER;
    n = h.PortRangeEvents ? h.dwNumPortRanges : 0;
    if (n > 65536)
        return E_POINTER;
    if (n) {
        if (!(ranges = malloc(n * sizeof(*ranges))))
            return E_OUTOFMEMORY;
        if (!guard_copy(ranges, h.PortRangeEvents, n * sizeof(*ranges))) {
            free(ranges);
            return E_POINTER;
        }
    }
    h.PortRangeEvents = ranges;
    h.dwNumPortRanges = n;
    hr = hooks_duplicate(&h, out);
    free(ranges);
    return hr == E_INVALIDARG ? E_POINTER : hr;
}

/* AttachToSession for f unless the session already has a session filter of
 * it. Returns the entry, or NULL (the filter declined, faulted, or the
 * session ended meanwhile). */
static struct session_filter *attach(struct session *s, struct fx_filter *f, HRESULT *result)
{
    struct session_filter *entry;
    IFWXSessionFilter *sf = NULL;
    PFwxFilterHookEvents hooks = NULL;
    HRESULT hr;

    *result = S_OK;
    EnterCriticalSection(&s->lock);
    entry = find_session_filter(s, f);
    LeaveCriticalSection(&s->lock);
    if (entry)
        return entry;

    if (f->profile == FX_PROFILE_TMG) {
        /* tmg (ABI-303): the host owns the hook events and the filter fills
         * them; CoTaskMem, so the rest goes as for an ISA 2000 filter's. */
        PFwxFilterHookEvents block = CoTaskMemAlloc(sizeof(*block));
        if (!block) {
            *result = E_OUTOFMEMORY;
            return NULL;
        }
        memset(block, 0, sizeof(*block));
        GUARDED_CALL(hr, f, "IFWXFilter", "AttachToSession",
                     IFWXFilter_AttachToSession(f->filter, session_iface(s), &sf,
                                                (PFwxFilterHookEvents *)block));
        if (hr != FX_E_FILTER_FAULT && !FAILED(hr) && block->dwGlobalEvents) {
            block->dwNumPortRanges = 0;
            block->PortRangeEvents = NULL;
            hooks = block;
        } else {
            CoTaskMemFree(block);
        }
    } else {
        GUARDED_CALL(hr, f, "IFWXFilter", "AttachToSession",
                     IFWXFilter_AttachToSession(f->filter, session_iface(s), &sf, &hooks));
    }
    if (hr == FX_E_FILTER_FAULT) {
        *result = hr;     /* the out-parameters are not trustworthy: leak them */
        return NULL;
    }
    if (FAILED(hr) || !sf) {
        if (hr != E_OUTOFMEMORY)
            fx_log(FX_LOG_WARN, "filter %s: AttachToSession returned 0x%08lx%s", fx_filter_name(f),
                   (unsigned long)hr, sf ? "" : " and no session filter");
        *result = FAILED(hr) ? hr : E_POINTER;
        /* COM wants NULL out-parameters on failure; many filters leave
         * whatever was there. Touch them only if they look real. */
        if (sf && guard_check_iface(sf, 5))
            GUARDED_VOID(f, "IFWXSessionFilter", "Release", IFWXSessionFilter_Release(sf));
        guard_free_cotaskmem(hooks);
        return NULL;
    }
    /* Success, but nothing it handed back is used unchecked (HOST-022). */
    if (!guard_check_iface(sf, 5)) {
        *result = guard_blame(f, "IFWXFilter", "AttachToSession",
                              "returned 0x%08lx with an unusable session-filter pointer %p",
                              (unsigned long)hr, (void *)sf);
        guard_free_cotaskmem(hooks);
        return NULL;
    }
    if (hooks) {
        FwxFilterHookEvents *copy = NULL;
        HRESULT chr = copy_session_hooks(hooks, &copy);
        if (FAILED(chr)) {
            *result = chr == E_OUTOFMEMORY ? chr
                    : guard_blame(f, "IFWXFilter", "AttachToSession",
                                  "returned unreadable or corrupt per-session hook events at %p",
                                  (void *)hooks);
            detach_session_filter(f, sf, NULL);
            return NULL;
        }
        if (!guard_free_cotaskmem(hooks))
            fx_log(FX_LOG_WARN, "filter %s: AttachToSession returned hook events at %p that are "
                   "not CoTaskMem memory; not freed", fx_filter_name(f), (void *)hooks);
        hooks = copy;
    }
    EnterCriticalSection(&s->lock);
    entry = find_session_filter(s, f);
    if (!entry && !s->ended && s->nsfs < HOST_MAX_FILTERS) {
        entry = &s->sfs[s->nsfs++];
        entry->filter = f;
        entry->sf = sf;
        entry->hooks = hooks;
        entry->detached = FALSE;
        sf = NULL;
        InterlockedIncrement(&f->sessions);
        InterlockedIncrement(&f->live_sessions);
    }
    LeaveCriticalSection(&s->lock);
    if (sf)    /* lost the race, or the session ended: undo ours */
        detach_session_filter(f, sf, hooks);
    return entry;
}

static BOOL port_in_ranges(const FwxFilterHookEvents *h, DWORD type, unsigned port)
{
    for (DWORD i = 0; h->PortRangeEvents && i < h->dwNumPortRanges; i++) {
        const FwxPortRangeEvents *r = &h->PortRangeEvents[i];
        if ((r->dwEvents & type) && port >= r->dwLowPort && port <= r->dwHighPort)
            return TRUE;
    }
    return FALSE;
}

/* One event into one session filter: the guarded FirewallEventHandler
 * call, inside the event's context (what AttachDataFilter and friends
 * check, event_ctx_current). */
static HRESULT call_handler(struct fx_filter *f, IFWXSessionFilter *sf, FwxFirewallEvent *ev,
                            struct connection *conn)
{
    HRESULT hr;
    struct event_ctx ctx = { ev->EventType, conn, f, NULL };
    event_ctx_enter(&ctx);
    GUARDED_CALL(hr, f, "IFWXSessionFilter", "FirewallEventHandler",
                 IFWXSessionFilter_FirewallEventHandler(sf, ev));
    event_ctx_leave(&ctx);
    return hr;
}

/* Does a hook set ask for this event? A mask without any source bit is
 * read as "all sources" (reference 9.1.9 leaves it open; ABI decision). */
static BOOL hooks_match(const FwxFilterHookEvents *h, DWORD type, DWORD source, unsigned port)
{
    DWORD global = h->dwGlobalEvents;
    DWORD sources = global & FWX_ALL_SOURCES;
    if (sources && !(sources & source))
        return FALSE;
    return (global & type) || port_in_ranges(h, type, port);
}

HRESULT session_raise(struct session *s, FwxFirewallEvent *ev, unsigned port,
                      struct connection *conn)
{
    struct host *h = the_host;
    HRESULT first_error = S_OK;
    DWORD type = ev->EventType;

    ev->EventSource = s->source;
    /* A disabled filter gets no events; with on-disabled-filter = refuse,
     * a request it would have seen is refused before any filter sees it
     * (HOST-022). */
    if (h && h->config && h->config->host.on_disabled == FX_DISABLED_REFUSE &&
        (type & (fwx_Connect_Tcp | fwx_Bind_Tcp | fwx_Bind_Udp | fwx_AcceptedConnection))) {
        for (int i = 0; i < h->nfilters; i++) {
            struct fx_filter *f = &h->filters[i];
            if (!f->filter || !f->disabled)
                continue;
            EnterCriticalSection(&s->lock);
            struct session_filter *entry = find_session_filter(s, f);
            BOOL match = entry ? entry->hooks && hooks_match(entry->hooks, type, s->source, port)
                               : hooks_match(&f->hooks, type, s->source, port);
            LeaveCriticalSection(&s->lock);
            if (!match)
                continue;
            if (conn)
                fx_log(FX_LOG_NOTICE, "conn %lu rule %s: refused: filter %s is disabled "
                       "(on-disabled-filter = refuse)", conn->id,
                       conn->rule && conn->rule->conf ? conn->rule->conf->name : "?",
                       fx_filter_name(f));
            return FX_E_FILTER_DISABLED;
        }
    }
    for (int i = 0; h && i < h->nfilters; i++) {
        struct fx_filter *f = &h->filters[i];
        struct session_filter *entry;
        IFWXSessionFilter *sf;
        HRESULT hr;

        if (!f->filter || f->disabled)
            continue;
        EnterCriticalSection(&s->lock);
        entry = find_session_filter(s, f);
        /* NULL per-session hooks mean "the same as the global ones" (HOST-003). */
        BOOL match = entry && entry->hooks ? hooks_match(entry->hooks, type, s->source, port)
                                           : hooks_match(&f->hooks, type, s->source, port);
        LeaveCriticalSection(&s->lock);
        if (!match)
            continue;
        if (!entry) {
            entry = attach(s, f, &hr);
            if (!entry) {
                if (FAILED(hr) && first_error == S_OK)
                    first_error = hr;
                continue;
            }
            /* The triggering event goes to the new session filter only if
             * its per-session hooks still want it (reference 2.4, [I]). */
            EnterCriticalSection(&s->lock);
            match = entry->hooks ? hooks_match(entry->hooks, type, s->source, port) : TRUE;
            LeaveCriticalSection(&s->lock);
            if (!match)
                continue;
        }
        if (!(sf = entry_acquire(s, entry)))
            continue;

        hr = call_handler(f, sf, ev, conn);
        entry_release(s, entry);
        if (hr == FX_E_FILTER_FAULT || hr == E_OUTOFMEMORY) {
            if (first_error == S_OK)
                first_error = hr;
        } else if (FAILED(hr) && hr != FWX_E_TERMINATING) {
            fx_log(FX_LOG_INFO, "filter %s: FirewallEventHandler returned 0x%08lx",
                   fx_filter_name(f), (unsigned long)hr);
        }
    }
    return first_error;
}

void session_raise_terminating(struct session *s, struct connection *conn)
{
    FwxFirewallEvent ev;
    struct session_filter *targets[HOST_MAX_FILTERS];
    IFWXSessionFilter *sfs[HOST_MAX_FILTERS];
    int n = 0, count;
    HRESULT hr;

    memset(&ev, 0, sizeof(ev));
    ev.EventType = fwx_ConnectionTerminating;
    ev.EventSource = s->source;
    ev.Parameters.EndConnect.piConnection = connection_iface(conn);

    /* Every session filter may hold the connection (reference 8.1.3): no
     * hook check, no attach. */
    EnterCriticalSection(&s->lock);
    count = s->nsfs;
    LeaveCriticalSection(&s->lock);
    for (int i = 0; i < count; i++) {
        if (s->sfs[i].filter->disabled)
            continue;     /* a disabled filter gets no more events (HOST-022) */
        if ((sfs[n] = entry_acquire(s, &s->sfs[i])))
            targets[n++] = &s->sfs[i];
    }
    for (int i = 0; i < n; i++) {
        struct fx_filter *f = targets[i]->filter;
        hr = call_handler(f, sfs[i], &ev, conn);
        if (FAILED(hr) && hr != FWX_E_TERMINATING && hr != FX_E_FILTER_FAULT)
            fx_log(FX_LOG_INFO, "filter %s: fwx_ConnectionTerminating handler returned 0x%08lx",
                   fx_filter_name(f), (unsigned long)hr);
        entry_release(s, targets[i]);
    }
}

HRESULT session_raise_one(struct session *s, IFWXSessionFilter *sf, struct fx_filter *owner,
                          FwxFirewallEvent *ev, struct connection *conn)
{
    HRESULT hr;
    if (s->ended || (owner && owner->disabled))
        return FWX_E_TERMINATING;
    ev->EventSource = s->source;
    hr = call_handler(owner, sf, ev, conn);
    if (FAILED(hr) && hr != FWX_E_TERMINATING && hr != FX_E_FILTER_FAULT)
        fx_log(FX_LOG_INFO, "filter %s: FirewallEventHandler (event 0x%lx) returned 0x%08lx",
               fx_filter_name(owner), (unsigned long)ev->EventType, (unsigned long)hr);
    return hr;
}

struct fx_filter *session_filter_owner(struct session *s, IFWXSessionFilter *sf)
{
    struct fx_filter *f = NULL;
    EnterCriticalSection(&s->lock);
    for (int i = 0; i < s->nsfs; i++)
        if (s->sfs[i].sf == sf) {
            f = s->sfs[i].filter;
            break;
        }
    LeaveCriticalSection(&s->lock);
    return f;
}

static HRESULT WINAPI session_AttachFilter(IFWXSession *iface, REFCLSID clsid)
{
    struct session *s = impl_from_IFWXSession(iface);
    struct host *h = the_host;
    HRESULT hr;

    if (!clsid)
        return E_POINTER;
    for (int i = 0; h && i < h->nfilters; i++) {
        if (h->filters[i].filter && IsEqualGUID(&h->filters[i].clsid, clsid))
            return attach(s, &h->filters[i], &hr) ? S_OK : hr;
    }
    return REGDB_E_CLASSNOTREG;
}

static void factory_cancel(void *arg)
{
    struct data_factory *f = arg;
    f->cancelled = TRUE;
}

static HRESULT WINAPI session_SetDataFilterFactory(IFWXSession *iface, ProxyEventType event,
                                                   LPSOCKADDR address, DWORD len,
                                                   IClassFactory *factory,
                                                   DataFilterPriorityClass priority,
                                                   IUnknown *context, DWORD flags,
                                                   IFWXFirewallAction **action)
{
    struct session *s = impl_from_IFWXSession(iface);
    struct data_factory *f;
    HRESULT hr;

    if (action)
        *action = NULL;
    if (!factory || !address)
        return E_POINTER;
    if (event != fwx_Connect_Tcp && event != fwx_Bind_Udp && event != fwx_AcceptedConnection &&
        event != fwx_Udp_Destination)
        return E_INVALIDARG;
    if (len < sizeof(SOCKADDR_IN) || len > sizeof(f->addr) || address->sa_family != AF_INET)
        return E_INVALIDARG;
    if ((unsigned)priority > fwx_dfpc_Emulation)
        return E_INVALIDARG;
    if (!(f = calloc(1, sizeof(*f))))
        return E_OUTOFMEMORY;
    f->event = event;
    memcpy(f->addr, address, len);
    f->addrlen = len;
    f->factory = factory;
    f->priority = priority;
    f->context = context;
    GUARDED_VOID(NULL, "IClassFactory", "AddRef", IClassFactory_AddRef(factory));
    if (context)
        GUARDED_VOID(NULL, "IUnknown", "AddRef", IUnknown_AddRef(context));
    if (action) {
        if (FAILED(hr = action_create(factory_cancel, f, action))) {
            GUARDED_VOID(NULL, "IClassFactory", "Release", IClassFactory_Release(factory));
            if (context)
                GUARDED_VOID(NULL, "IUnknown", "Release", IUnknown_Release(context));
            free(f);
            return hr;
        }
        /* Ours too, so that freeing the factory can detach it (the filter
         * may keep its reference past the session's end). */
        f->action = *action;
        IFWXFirewallAction_AddRef(f->action);
    }
    EnterCriticalSection(&s->lock);
    f->next = s->factories;
    s->factories = f;
    LeaveCriticalSection(&s->lock);
    return S_OK;
}

/* INADDR_ANY in a registration matches any address; the port must match
 * unless it is 0. */
static BOOL factory_matches(const struct data_factory *f, DWORD event, const void *win_addr, int len)
{
    const SOCKADDR_IN *want = (const SOCKADDR_IN *)f->addr, *have = win_addr;
    if (f->cancelled || f->event != event || len < (int)sizeof(SOCKADDR_IN) ||
        have->sin_family != AF_INET)
        return FALSE;
    if (want->sin_addr.s_addr != INADDR_ANY && want->sin_addr.s_addr != have->sin_addr.s_addr)
        return FALSE;
    return want->sin_port == 0 || want->sin_port == have->sin_port;
}

void session_apply_factories(struct session *s, DWORD event, const void *win_addr, int len,
                             struct connection *conn)
{
    struct data_factory *f;
    IClassFactory *todo[CHAIN_MAX];
    FwxDataFilterPriorityClass prio[CHAIN_MAX];
    IUnknown *ctxs[CHAIN_MAX];
    int n = 0;
    HRESULT hr;

    EnterCriticalSection(&s->lock);
    for (f = s->factories; f && n < CHAIN_MAX; f = f->next) {
        if (!factory_matches(f, event, win_addr, len))
            continue;
        /* No AddRef (filter code) under our lock: the factory entry and its
         * reference live until the session is freed, and the connection
         * holds the session. */
        todo[n] = f->factory;
        prio[n] = f->priority;
        ctxs[n] = f->context;
        n++;
    }
    LeaveCriticalSection(&s->lock);
    for (int i = 0; i < n; i++) {
        IFWXDataFilter *df = NULL;
        GUARDED_CALL(hr, NULL, "IClassFactory", "CreateInstance",
                     IClassFactory_CreateInstance(todo[i], NULL, &IID_IFWXDataFilter, (void **)&df));
        if (SUCCEEDED(hr) && df) {
            struct event_ctx ctx = { event, conn, NULL, NULL };
            event_ctx_enter(&ctx);
            IFWXConnection_AttachDataFilter(connection_iface(conn), df, prio[i], ctxs[i]);
            event_ctx_leave(&ctx);
            GUARDED_VOID(NULL, "IFWXDataFilter", "Release", IFWXDataFilter_Release(df));
        } else {
            fx_log(FX_LOG_WARN, "session %s: data-filter factory CreateInstance returned 0x%08lx",
                   s->name, (unsigned long)hr);
        }
    }
}

static HRESULT WINAPI session_RetroactiveAllowBind(IFWXSession *iface, INT protocol,
                                                   LPSOCKADDR addr, DWORD len, REFGUID guid,
                                                   DWORD flags, IFWXIpFilter *ipf)
{
    return anticipate_retroactive_allow_bind(impl_from_IFWXSession(iface), protocol, addr, len,
                                             guid, flags, ipf);
}

static HRESULT WINAPI session_EnableInternalAddressTranslation(IFWXSession *iface, BOOL enable)
{
    return FX_NOTIMPL("IFWXSession", "EnableInternalAddressTranslation");
}

static HRESULT WINAPI session_CreateNetworkSocket(IFWXSession *iface, INT protocol,
                                                  IFWXNetworkSocket **out)
{
    return netsock_create(impl_from_IFWXSession(iface), protocol, out);    /* netsocket.c */
}

static HRESULT WINAPI session_GetHostByName(IFWXSession *iface, const char *name, char *buf,
                                            int *buflen)
{
    return FX_NOTIMPL("IFWXSession", "GetHostByName");
}

static HRESULT WINAPI session_GetHostByAddr(IFWXSession *iface, const char *addr, int len, int type,
                                            char *buf, int *buflen)
{
    return FX_NOTIMPL("IFWXSession", "GetHostByAddr");
}

FX_HOST_VTBL(IFWXSession, session_vtbl) = {
    {
        session_QueryInterface,
        session_AddRef,
        session_Release,
        session_GetClientAddress,
        session_GetClientMachineName,
        session_ImpersonateClient,
        session_RevertToSelf,
        session_AccessCheck,
        session_HostAccessCheck,
        session_AllowFutureConnect,
        session_BindForClient,
        session_EmulateClientBind,
        session_GetSessionFlags,
        session_RedirectConnections,
        session_AttachFilter,
        session_SetDataFilterFactory,
        session_RetroactiveAllowBind,
        session_EnableInternalAddressTranslation,
        session_CreateNetworkSocket,
        session_GetHostByName,
        session_GetHostByAddr,
    },
    FX_TRAPS(IFWXSession)
};

struct session *session_create(const void *win_client, int len, const char *name)
{
    struct session *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->IFWXSession_iface.lpVtbl = &session_vtbl.vtbl;
    s->ref = 1;
    InitializeCriticalSection(&s->lock);
    if (len > (int)sizeof(s->client))
        len = sizeof(s->client);
    memcpy(&s->client, win_client, len);
    s->client_len = len;
    s->source = fwxSourceNAT;
    s->idle_since = (LONG64)fx_now_ms();
    snprintf(s->name, sizeof(s->name), "%s", name);
    if (the_host)
        InterlockedIncrement(&the_host->live_sessions);
    return s;
}

void session_pin(struct session *s)
{
    InterlockedIncrement(&s->active);
}

void session_unpin(struct session *s)
{
    __atomic_store_n(&s->idle_since, (LONG64)fx_now_ms(), __ATOMIC_RELAXED);
    InterlockedDecrement(&s->active);
}

void session_end(struct session *s)
{
    struct session_filter sfs[HOST_MAX_FILTERS];
    int n;

    EnterCriticalSection(&s->lock);
    s->ended = TRUE;
    n = 0;
    for (int i = 0; i < s->nsfs; i++) {
        struct session_filter *e = &s->sfs[i];
        if (e->detached)
            continue;
        e->detached = TRUE;
        if (e->busy)
            e->detach_pending = TRUE;    /* the last caller out detaches */
        else
            sfs[n++] = *e;
    }
    LeaveCriticalSection(&s->lock);
    /* Its anticipated actions go first: they hold the session filters. */
    anticipate_session_end(s);
    for (int i = 0; i < n; i++) {
        InterlockedDecrement(&sfs[i].filter->live_sessions);
        detach_session_filter(sfs[i].filter, sfs[i].sf, sfs[i].hooks);
    }
}
