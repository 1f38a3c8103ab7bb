/*
 * lineproxy.h - the body of a test filter that proxies a line-oriented control channel
 * whose lines announce secondary connections (FTP's PORT and 227, connector's BIND and
 * OPEN): the filter object, a session filter, and a data filter (class NAT) that splits
 * both directions into lines, hands each complete line to the includer's rewrite
 * function, and opens the secondary connections through the host's anticipated actions
 * (reference 2.8):
 *
 *   bind_for_client      the client will listen: IFWXSession::BindForClient on the host's
 *                        external address (GetExternalSocketName); rewrite to *proxy;
 *   redirect_for_client  the server will listen: RedirectConnections to it and rewrite to
 *                        *shown (publishing rules: the host's client-facing address is
 *                        known), or AllowFutureConnect and no rewrite (outbound rules).
 *
 * Every action is registered with the session filter and a context object;
 * fwx_EstablishedConnection is checked against that context and traced ("established
 * data connection N (...): context M ok"). A control connection's actions are cancelled
 * when it ends (Detach).
 *
 * The includer defines, before including this file: fwx_filter_clsid, fwx_filter_name,
 * lp_protocol (the GUID the actions are registered for) and LP_ENV_PREFIX (the prefix of
 * its environment settings, e.g. "FTPPROXY_"); after it, lp_client_line and
 * lp_server_line (one complete line in, the line to send out, see below).
 *
 * Settings (environment, read at FilterInit):
 *   <PREFIX>FLAGS    comma list of timeout, multiple, address, nokernel: the FWX_FLAG_*
 *                    passed with each action (default: none, one-shot)
 *   <PREFIX>CANCEL   1: cancel each RedirectConnections/AllowFutureConnect action right
 *                    after registering it (tests: the data connection must be refused)
 */
#ifndef FWX_LINEPROXY_H
#define FWX_LINEPROXY_H

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define LP_EVENTS (fwx_Connect_Tcp | fwx_AcceptedConnection | fwx_EstablishedConnection | \
                         FWX_ALL_SOURCES)

#define LINE_MAX_LEN 2048     /* a longer "line" is passed on as it is */
#define MAX_ACTIONS 64        /* per control connection */

static DWORD action_flags;
static BOOL cancel_at_once;
static LONG next_context_id;

static HRESULT session_filter_create(IFWXSession *session, IFWXFirewall *firewall, IFWXSessionFilter **out);
static HRESULT data_filter_create(IFWXFirewall *firewall, IFWXSession *session,
                                  IFWXSessionFilter *sf, const SOCKADDR_IN *local,
                                  const SOCKADDR_IN *server, IFWXDataFilter **out);

/* ==================================================================== configuration */

static BOOL load_settings(void)
{
    char *flags = fwx_getenv(LP_ENV_PREFIX "FLAGS", "");
    char *cancel = fwx_getenv(LP_ENV_PREFIX "CANCEL", "");
    BOOL ok = flags && cancel;

    action_flags = 0;
    if (ok) {
        char *p = flags;
        while (*p) {
            size_t n = strcspn(p, ",");
            if (n == 7 && strncmp(p, "timeout", 7) == 0)
                action_flags |= FWX_FLAG_TIMEOUT;
            else if (n == 8 && strncmp(p, "multiple", 8) == 0)
                action_flags |= FWX_FLAG_ALLOW_MULTIPLE;
            else if (n == 7 && strncmp(p, "address", 7) == 0)
                action_flags |= FWX_FLAG_ADDRESS_BASED;
            else if (n == 8 && strncmp(p, "nokernel", 8) == 0)
                action_flags |= FWX_FLAG_NO_KERNEL_MODE;
            else if (n) {
                fwx_trace(LP_ENV_PREFIX "FLAGS: unknown flag '%.*s'", (int)n, p);
                ok = FALSE;
            }
            p += n;
            if (*p == ',')
                p++;
        }
        cancel_at_once = strcmp(cancel, "1") == 0;
        fwx_trace("action flags 0x%lx%s", (unsigned long)action_flags,
                  cancel_at_once ? ", cancelling each action at once" : "");
    }
    fwx_free(flags);
    fwx_free(cancel);
    return ok;
}

/* ==================================================================== Context */

/* The punkContext of every action: fwx_EstablishedConnection must bring it back. */
#define CONTEXT_MAGIC 0x4c505843u   /* "LPXC" */

typedef struct {
    IUnknown IUnknown_iface;
    LONG     refs;
    DWORD    magic;
    LONG     id;
} Context;

static HRESULT STDMETHODCALLTYPE Context_QueryInterface(IUnknown *iface, REFIID riid, void **ppv)
{
    if (!ppv)
        return E_POINTER;
    if (IsEqualIID(riid, &IID_IUnknown)) {
        *ppv = iface;
        IUnknown_AddRef(iface);
        return S_OK;
    }
    *ppv = NULL;
    return E_NOINTERFACE;
}

static ULONG STDMETHODCALLTYPE Context_AddRef(IUnknown *iface)
{
    return InterlockedIncrement(&CONTAINING_RECORD(iface, Context, IUnknown_iface)->refs);
}

static ULONG STDMETHODCALLTYPE Context_Release(IUnknown *iface)
{
    Context *c = CONTAINING_RECORD(iface, Context, IUnknown_iface);
    LONG refs = InterlockedDecrement(&c->refs);
    if (refs == 0) {
        c->magic = 0;
        fwx_free(c);
        fwx_object_destroyed();
    }
    return refs;
}

static const IUnknownVtbl context_vtbl = { Context_QueryInterface, Context_AddRef, Context_Release };

static IUnknown *context_create(void)
{
    Context *c = fwx_alloc(sizeof(*c));
    if (!c)
        return NULL;
    c->IUnknown_iface.lpVtbl = &context_vtbl;
    c->refs = 1;
    c->magic = CONTEXT_MAGIC;
    c->id = InterlockedIncrement(&next_context_id);
    fwx_object_created();
    return &c->IUnknown_iface;
}

/* ==================================================================== Filter */

typedef struct {
    IFWXFilter          IFWXFilter_iface;
    LONG                refs;
    IFWXFirewall       *firewall;   /* from FilterInit until FilterShutdown */
    FwxFilterHookEvents hooks;
} Filter;

static Filter *impl_from_IFWXFilter(IFWXFilter *iface)
{
    return CONTAINING_RECORD(iface, Filter, IFWXFilter_iface);
}

static HRESULT STDMETHODCALLTYPE Filter_QueryInterface(IFWXFilter *iface, REFIID riid, void **ppv)
{
    if (!ppv)
        return E_POINTER;
    if (IsEqualIID(riid, &IID_IUnknown) || IsEqualIID(riid, &IID_IFWXFilter)) {
        *ppv = iface;
        IFWXFilter_AddRef(iface);
        return S_OK;
    }
    *ppv = NULL;
    return E_NOINTERFACE;
}

static ULONG STDMETHODCALLTYPE Filter_AddRef(IFWXFilter *iface)
{
    return InterlockedIncrement(&impl_from_IFWXFilter(iface)->refs);
}

static ULONG STDMETHODCALLTYPE Filter_Release(IFWXFilter *iface)
{
    Filter *filter = impl_from_IFWXFilter(iface);
    LONG refs = InterlockedDecrement(&filter->refs);

    if (refs == 0) {
        if (filter->firewall)
            IFWXFirewall_Release(filter->firewall);
        fwx_free(filter);
        fwx_object_destroyed();
    }
    return refs;
}

/* A filter that cannot initialise still answers S_OK, registering no events, so that it
 * does not stop the service. */
static HRESULT STDMETHODCALLTYPE Filter_FilterInit(IFWXFilter *iface, IFWXFirewall *firewall,
                                                   PFwxFilterHookEvents *ppHooks)
{
    Filter *filter = impl_from_IFWXFilter(iface);

    *ppHooks = NULL;
    if (!load_settings()) {
        fwx_trace("bad or missing settings: filter disabled");
        return S_OK;
    }
    IFWXFirewall_AddRef(firewall);
    filter->firewall = firewall;
    filter->hooks.dwGlobalEvents = LP_EVENTS;
    filter->hooks.dwNumPortRanges = 0;
    filter->hooks.PortRangeEvents = NULL;
    *ppHooks = &filter->hooks;
    return S_OK;
}

static HRESULT STDMETHODCALLTYPE Filter_FilterShutdown(IFWXFilter *iface)
{
    Filter *filter = impl_from_IFWXFilter(iface);
    IFWXFirewall *firewall = (IFWXFirewall *)InterlockedExchangePointer((void **)&filter->firewall, NULL);

    if (firewall)
        IFWXFirewall_Release(firewall);
    return S_OK;
}

static HRESULT STDMETHODCALLTYPE Filter_AttachToSession(IFWXFilter *iface, IFWXSession *session,
                                                        IFWXSessionFilter **ppSessionFilter,
                                                        PFwxFilterHookEvents *ppHooks)
{
    Filter *filter = impl_from_IFWXFilter(iface);
    FwxFilterHookEvents *hooks;
    IFWXFirewall *firewall = filter->firewall;
    HRESULT hr;

    *ppSessionFilter = NULL;
    *ppHooks = NULL;
    if (!firewall)   /* shut down, or never initialised */
        return FWX_E_TERMINATING;
    hooks = CoTaskMemAlloc(sizeof(*hooks));
    if (!hooks)
        return E_OUTOFMEMORY;
    *hooks = filter->hooks;

    hr = session_filter_create(session, firewall, ppSessionFilter);
    if (FAILED(hr)) {
        CoTaskMemFree(hooks);
        return hr;
    }
    *ppHooks = hooks;
    return S_OK;
}

static const IFWXFilterVtbl filter_vtbl = {
    Filter_QueryInterface,
    Filter_AddRef,
    Filter_Release,
    Filter_FilterInit,
    Filter_FilterShutdown,
    Filter_AttachToSession,
};

HRESULT fwx_filter_create(REFIID riid, void **ppv)
{
    Filter *filter = fwx_alloc(sizeof(*filter));
    HRESULT hr;

    if (!filter)
        return E_OUTOFMEMORY;
    filter->IFWXFilter_iface.lpVtbl = &filter_vtbl;
    filter->refs = 1;
    fwx_object_created();

    hr = IFWXFilter_QueryInterface(&filter->IFWXFilter_iface, riid, ppv);
    IFWXFilter_Release(&filter->IFWXFilter_iface);
    return hr;
}

/* ==================================================================== SessionFilter */

typedef struct {
    IFWXSessionFilter IFWXSessionFilter_iface;
    LONG              refs;
    CRITICAL_SECTION  lock;       /* events race Detach */
    IFWXSession      *session;    /* until Detach */
    IFWXFirewall     *firewall;   /* until Detach */
    LONG              established;
} SessionFilter;

static SessionFilter *impl_from_IFWXSessionFilter(IFWXSessionFilter *iface)
{
    return CONTAINING_RECORD(iface, SessionFilter, IFWXSessionFilter_iface);
}

static HRESULT STDMETHODCALLTYPE SessionFilter_QueryInterface(IFWXSessionFilter *iface, REFIID riid,
                                                              void **ppv)
{
    if (!ppv)
        return E_POINTER;
    if (IsEqualIID(riid, &IID_IUnknown) || IsEqualIID(riid, &IID_IFWXSessionFilter)) {
        *ppv = iface;
        IFWXSessionFilter_AddRef(iface);
        return S_OK;
    }
    *ppv = NULL;
    return E_NOINTERFACE;
}

static ULONG STDMETHODCALLTYPE SessionFilter_AddRef(IFWXSessionFilter *iface)
{
    return InterlockedIncrement(&impl_from_IFWXSessionFilter(iface)->refs);
}

static void session_filter_drop(SessionFilter *sf)
{
    IFWXSession *session;
    IFWXFirewall *firewall;

    EnterCriticalSection(&sf->lock);
    session = sf->session;
    firewall = sf->firewall;
    sf->session = NULL;
    sf->firewall = NULL;
    LeaveCriticalSection(&sf->lock);

    if (session)
        IFWXSession_Release(session);
    if (firewall)
        IFWXFirewall_Release(firewall);
}

static ULONG STDMETHODCALLTYPE SessionFilter_Release(IFWXSessionFilter *iface)
{
    SessionFilter *sf = impl_from_IFWXSessionFilter(iface);
    LONG refs = InterlockedDecrement(&sf->refs);

    if (refs == 0) {
        session_filter_drop(sf);
        DeleteCriticalSection(&sf->lock);
        fwx_free(sf);
        fwx_object_destroyed();
    }
    return refs;
}

/* A control connection: our data filter on it. local is our address as the client sees
 * it (publishing) or NULL (outbound); server is the FTP server's address. */
static HRESULT attach_proxy(SessionFilter *sf, IFWXConnection *connection, const SOCKADDR *local,
                            DWORD local_len, const SOCKADDR *server, DWORD server_len)
{
    IFWXFirewall *firewall;
    IFWXSession *session;
    IFWXDataFilter *df;
    SOCKADDR_IN l = { 0 }, s = { 0 };
    HRESULT hr;

    if (!connection)
        return S_OK;
    if (local && local_len >= sizeof(l) && local->sa_family == AF_INET)
        memcpy(&l, local, sizeof(l));
    if (server && server_len >= sizeof(s) && server->sa_family == AF_INET)
        memcpy(&s, server, sizeof(s));
    EnterCriticalSection(&sf->lock);
    firewall = sf->firewall;
    session = sf->session;
    if (firewall)
        IFWXFirewall_AddRef(firewall);
    if (session)
        IFWXSession_AddRef(session);
    LeaveCriticalSection(&sf->lock);
    if (!firewall || !session) {
        if (firewall)
            IFWXFirewall_Release(firewall);
        if (session)
            IFWXSession_Release(session);
        return FWX_E_TERMINATING;
    }
    if (!s.sin_family) {    /* publishing: the session is the published server's */
        DWORD len = sizeof(s);
        if (FAILED(IFWXSession_GetClientAddress(session, (LPSOCKADDR)&s, &len)))
            memset(&s, 0, sizeof(s));
    }
    hr = data_filter_create(firewall, session, &sf->IFWXSessionFilter_iface, &l, &s, &df);
    IFWXFirewall_Release(firewall);
    IFWXSession_Release(session);
    if (FAILED(hr))
        return hr;
    /* NAT class: an address editor sees the client's bytes first (reference 2.7). */
    hr = IFWXConnection_AttachDataFilter(connection, df, fwx_dfpc_NAT, NULL);
    if (FAILED(hr))
        fwx_trace("AttachDataFilter failed: 0x%08lx", (unsigned long)hr);
    IFWXDataFilter_Release(df);
    return S_OK;
}

static void on_established(SessionFilter *sf, const FwxEstablishedConnectionEvent *e)
{
    Context *c = (Context *)e->UserContext;
    char where[64] = "?";
    LONG n = InterlockedIncrement(&sf->established);

    if (e->Address && e->AddressLength >= sizeof(SOCKADDR_IN) && e->Address->sa_family == AF_INET) {
        const SOCKADDR_IN *a = (const SOCKADDR_IN *)e->Address;
        const BYTE *b = (const BYTE *)&a->sin_addr;
        snprintf(where, sizeof(where), "%u.%u.%u.%u:%u", b[0], b[1], b[2], b[3], ntohs(a->sin_port));
    }
    if (c && c->magic == CONTEXT_MAGIC)
        fwx_trace("established data connection %ld (%s, protocol %d, connection %p): context %ld ok",
                  (long)n, where, e->Protocol, (void *)e->piConnection, (long)c->id);
    else
        fwx_trace("established data connection %ld (%s): context %p is NOT ours", (long)n, where,
                  (void *)c);
}

static HRESULT STDMETHODCALLTYPE SessionFilter_FirewallEventHandler(IFWXSessionFilter *iface,
                                                                    const FirewallEvent *event)
{
    SessionFilter *sf = impl_from_IFWXSessionFilter(iface);

    switch (event->EventType) {
    case fwx_Connect_Tcp:
        return attach_proxy(sf, event->Parameters.Connect.piConnection, NULL, 0,
                            event->Parameters.Connect.Address,
                            event->Parameters.Connect.AddressLength);
    case fwx_AcceptedConnection:
        return attach_proxy(sf, event->Parameters.Accept.piConnectionAccepted,
                            event->Parameters.Accept.LocalAddress,
                            event->Parameters.Accept.LocalAddressLength, NULL, 0);
    case fwx_EstablishedConnection:
        on_established(sf, &event->Parameters.EstablishedConnection);
        return S_OK;
    default:
        return S_OK;
    }
}

static HRESULT STDMETHODCALLTYPE SessionFilter_Detach(IFWXSessionFilter *iface)
{
    session_filter_drop(impl_from_IFWXSessionFilter(iface));
    return S_OK;
}

static const IFWXSessionFilterVtbl session_filter_vtbl = {
    SessionFilter_QueryInterface,
    SessionFilter_AddRef,
    SessionFilter_Release,
    SessionFilter_FirewallEventHandler,
    SessionFilter_Detach,
};

static HRESULT session_filter_create(IFWXSession *session, IFWXFirewall *firewall, IFWXSessionFilter **out)
{
    SessionFilter *sf = fwx_alloc(sizeof(*sf));

    if (!sf)
        return E_OUTOFMEMORY;
    sf->IFWXSessionFilter_iface.lpVtbl = &session_filter_vtbl;
    sf->refs = 1;
    InitializeCriticalSection(&sf->lock);
    if (session)
        IFWXSession_AddRef(session);
    sf->session = session;
    IFWXFirewall_AddRef(firewall);
    sf->firewall = firewall;
    fwx_object_created();
    *out = &sf->IFWXSessionFilter_iface;
    return S_OK;
}

/* ==================================================================== DataFilter */

enum side { SIDE_INTERNAL = 0, SIDE_EXTERNAL = 1 };
#define OTHER_SIDE(s) ((enum side)(1 - (s)))

#define IO_SEND        2
#define IO_TAG(from, op) ((UserContextType)((from) | (op)))
#define IO_FROM(tag)   ((enum side)((tag) & 1))

typedef struct {
    IFWXDataFilter   IFWXDataFilter_iface;
    IFWXIOCompletion IFWXIOCompletion_iface;
    LONG             refs;
    CRITICAL_SECTION lock;         /* guards sockets..actions: Detach races completions */
    BOOL             detached;
    IFWXSocket      *sockets[2];
    IFWXFirewall    *firewall;     /* for CreateBuffer; until Detach */
    IFWXConnection  *connection;
    IFWXSession     *session;      /* the anticipated actions' */
    IFWXSessionFilter *sf;         /* receives fwx_EstablishedConnection */
    IFWXFirewallAction *actions[MAX_ACTIONS];
    int              nactions;
    SOCKADDR_IN      local;        /* our client-facing address; family 0 on outbound rules */
    SOCKADDR_IN      server;       /* the FTP server */
    /* Per direction: the start of a line not complete yet. Only that direction's
     * completions touch it, one at a time, so no lock. */
    char             carry[2][LINE_MAX_LEN];
    DWORD            carry_len[2];
    BOOL             flushing[2];  /* end of stream: the last send is the carry */
} DataFilter;

/* Supplied by the includer: one complete line (with its end) from the client
 * (lp_client_line) or from the server (lp_server_line) is written to out, rewritten or
 * not; returns the bytes written. out has room for len + 128. */
static DWORD lp_client_line(DataFilter *df, const char *line, DWORD len, char *out);
static DWORD lp_server_line(DataFilter *df, const char *line, DWORD len, char *out);

static DataFilter *impl_from_IFWXDataFilter(IFWXDataFilter *iface)
{
    return CONTAINING_RECORD(iface, DataFilter, IFWXDataFilter_iface);
}

static DataFilter *impl_from_IFWXIOCompletion(IFWXIOCompletion *iface)
{
    return CONTAINING_RECORD(iface, DataFilter, IFWXIOCompletion_iface);
}

/* ---------------------------------------------------------------- IUnknown, shared by both interfaces */

static HRESULT data_filter_query(DataFilter *df, REFIID riid, void **ppv)
{
    if (!ppv)
        return E_POINTER;
    if (IsEqualIID(riid, &IID_IUnknown) || IsEqualIID(riid, &IID_IFWXDataFilter))
        *ppv = &df->IFWXDataFilter_iface;
    else if (IsEqualIID(riid, &IID_IFWXIOCompletion))
        *ppv = &df->IFWXIOCompletion_iface;
    else {
        *ppv = NULL;
        return E_NOINTERFACE;
    }
    InterlockedIncrement(&df->refs);
    return S_OK;
}

static ULONG data_filter_addref(DataFilter *df)
{
    return InterlockedIncrement(&df->refs);
}

static void drop_references(DataFilter *df);

static ULONG data_filter_release(DataFilter *df)
{
    LONG refs = InterlockedDecrement(&df->refs);

    if (refs == 0) {
        drop_references(df);
        DeleteCriticalSection(&df->lock);
        fwx_free(df);
        fwx_object_destroyed();
    }
    return refs;
}

/* ---------------------------------------------------------------- the pump (as in rewrite.c) */

static IFWXSocket *pump_socket(DataFilter *df, enum side side)
{
    IFWXSocket *socket;

    EnterCriticalSection(&df->lock);
    socket = df->sockets[side];
    if (socket)
        IFWXSocket_AddRef(socket);
    LeaveCriticalSection(&df->lock);
    return socket;
}

static void pump_abort(DataFilter *df, enum side side)
{
    IFWXSocket *socket = pump_socket(df, side);

    if (socket) {
        IFWXSocket_Close(socket, TRUE);
        IFWXSocket_Release(socket);
    }
}

static void pump_shutdown(DataFilter *df, enum side side)
{
    IFWXSocket *socket = pump_socket(df, side);

    if (socket) {
        IFWXSocket_Shutdown(socket, FALSE);
        IFWXSocket_Release(socket);
    }
}

static void pump_recv(DataFilter *df, enum side from)
{
    IFWXSocket *socket = pump_socket(df, from);
    HRESULT hr;

    if (!socket)
        return;
    hr = IFWXSocket_Recv(socket, NULL, &df->IFWXIOCompletion_iface, IO_TAG(from, 0));
    IFWXSocket_Release(socket);
    if (FAILED(hr)) {
        fwx_trace("Recv failed: 0x%08lx", (unsigned long)hr);
        pump_abort(df, OTHER_SIDE(from));
    }
}

static void pump_send(DataFilter *df, enum side from, IFWXIOBuffer *buffer)
{
    IFWXSocket *socket = pump_socket(df, OTHER_SIDE(from));
    HRESULT hr;

    if (!socket)
        return;
    hr = IFWXSocket_Send(socket, buffer, &df->IFWXIOCompletion_iface, IO_TAG(from, IO_SEND));
    IFWXSocket_Release(socket);
    if (FAILED(hr)) {
        fwx_trace("Send failed: 0x%08lx", (unsigned long)hr);
        pump_abort(df, from);
    }
}

static void pump_fail(DataFilter *df, HRESULT hr)
{
    fwx_trace("control channel failed: 0x%08lx; aborting the connection", (unsigned long)hr);
    pump_abort(df, SIDE_INTERNAL);
    pump_abort(df, SIDE_EXTERNAL);
}

static HRESULT create_buffer(DataFilter *df, DWORD size, IFWXIOBuffer **buffer)
{
    IFWXFirewall *firewall;
    HRESULT hr;

    EnterCriticalSection(&df->lock);
    firewall = df->firewall;
    if (firewall)
        IFWXFirewall_AddRef(firewall);
    LeaveCriticalSection(&df->lock);
    if (!firewall)
        return FWX_E_TERMINATING;
    hr = IFWXFirewall_CreateBuffer(firewall, size, buffer);
    IFWXFirewall_Release(firewall);
    return hr;
}

/* ---------------------------------------------------------------- anticipated actions */

/* The session, session filter and connection, referenced, for a call into the host
 * without our lock. FALSE once detached. */
static BOOL grab(DataFilter *df, IFWXSession **session, IFWXSessionFilter **sf, IFWXConnection **conn)
{
    BOOL ok;
    EnterCriticalSection(&df->lock);
    ok = !df->detached && df->session && df->sf && df->connection;
    if (ok) {
        *session = df->session;
        *sf = df->sf;
        *conn = df->connection;
        IFWXSession_AddRef(*session);
        IFWXSessionFilter_AddRef(*sf);
        IFWXConnection_AddRef(*conn);
    }
    LeaveCriticalSection(&df->lock);
    return ok;
}

static void ungrab(IFWXSession *session, IFWXSessionFilter *sf, IFWXConnection *conn)
{
    IFWXSession_Release(session);
    IFWXSessionFilter_Release(sf);
    IFWXConnection_Release(conn);
}

/* Keeps the action to cancel when the control connection ends; or cancels it now when the
 * tests ask for that, or when we are detached already. */
static void keep_action(DataFilter *df, IFWXFirewallAction *action)
{
    BOOL kept = FALSE;
    if (!action)
        return;
    if (cancel_at_once) {
        HRESULT hr = IFWXFirewallAction_Cancel(action);
        fwx_trace("cancelled the action at once (" LP_ENV_PREFIX "CANCEL): 0x%08lx", (unsigned long)hr);
        IFWXFirewallAction_Release(action);
        return;
    }
    EnterCriticalSection(&df->lock);
    if (!df->detached && df->nactions < MAX_ACTIONS) {
        df->actions[df->nactions++] = action;
        kept = TRUE;
    }
    LeaveCriticalSection(&df->lock);
    if (!kept) {
        IFWXFirewallAction_Cancel(action);
        IFWXFirewallAction_Release(action);
    }
}

static void fmt_addr(const SOCKADDR_IN *a, char *buf, size_t size)
{
    const BYTE *b = (const BYTE *)&a->sin_addr;
    snprintf(buf, size, "%u.%u.%u.%u:%u", b[0], b[1], b[2], b[3], ntohs(a->sin_port));
}

/* The client will listen at client (PORT/EPRT): the host binds on its external side for
 * it. *proxy gets the bound address. */
static HRESULT bind_for_client(DataFilter *df, const SOCKADDR_IN *client, SOCKADDR_IN *proxy)
{
    IFWXSession *session;
    IFWXSessionFilter *sf;
    IFWXConnection *conn, *bound[1] = { NULL };
    LPSOCKADDR clients[1] = { (LPSOCKADDR)client };
    IUnknown *ctx;
    INT len = sizeof(*proxy);
    HRESULT hr;
    char a[32], b[32];

    if (!grab(df, &session, &sf, &conn))
        return FWX_E_TERMINATING;
    memset(proxy, 0, sizeof(*proxy));
    hr = IFWXConnection_GetExternalSocketName(conn, (LPSOCKADDR)proxy, &len);
    if (FAILED(hr) || proxy->sin_family != AF_INET) {
        fwx_trace("GetExternalSocketName failed: 0x%08lx", (unsigned long)hr);
        ungrab(session, sf, conn);
        return FAILED(hr) ? hr : E_FAIL;
    }
    proxy->sin_port = 0;
    if (!(ctx = context_create())) {
        ungrab(session, sf, conn);
        return E_OUTOFMEMORY;
    }
    hr = IFWXSession_BindForClient(session, clients, sizeof(*client), (LPSOCKADDR)proxy,
                                   sizeof(*proxy), FWX_PROTOCOL_TCP, 1, action_flags, 1,
                                   &lp_protocol, sf, ctx, NULL, bound);
    IUnknown_Release(ctx);
    if (SUCCEEDED(hr) && bound[0])
        IFWXConnection_Release(bound[0]);   /* the host keeps its own */
    fmt_addr(client, a, sizeof(a));
    fmt_addr(proxy, b, sizeof(b));
    fwx_trace("BindForClient for %s: 0x%08lx, bound %s", a, (unsigned long)hr, b);
    ungrab(session, sf, conn);
    return hr;
}

/* The server listens at target (227/229): the client is sent to an address of ours
 * that the host forwards to it (publishing), or allowed to reach it (outbound). *shown
 * gets the address to give the client. */
static HRESULT redirect_for_client(DataFilter *df, const SOCKADDR_IN *target, SOCKADDR_IN *shown)
{
    IFWXSession *session;
    IFWXSessionFilter *sf;
    IFWXConnection *conn;
    IFWXFirewallAction *actions[1] = { NULL };
    LPSOCKADDR targets[1] = { (LPSOCKADDR)target };
    IUnknown *ctx;
    HRESULT hr;
    char a[32], b[32];

    if (!grab(df, &session, &sf, &conn))
        return FWX_E_TERMINATING;
    if (!(ctx = context_create())) {
        ungrab(session, sf, conn);
        return E_OUTOFMEMORY;
    }
    fmt_addr(target, a, sizeof(a));
    if (df->local.sin_family == AF_INET) {
        DWORD len = sizeof(*shown);
        *shown = df->local;
        shown->sin_port = 0;
        hr = IFWXSession_RedirectConnections(session, targets, sizeof(*target), 1,
                                             (LPSOCKADDR)shown, &len, NULL, 0, FWX_PROTOCOL_TCP,
                                             action_flags, &lp_protocol, sf, ctx, actions);
        fmt_addr(shown, b, sizeof(b));
        fwx_trace("RedirectConnections to %s: 0x%08lx, client told %s", a, (unsigned long)hr, b);
    } else {
        *shown = *target;
        hr = IFWXSession_AllowFutureConnect(session, (LPSOCKADDR)target, sizeof(*target), NULL, 0,
                                            FWX_PROTOCOL_TCP, action_flags, &lp_protocol,
                                            sf, ctx, &actions[0]);
        fwx_trace("AllowFutureConnect to %s: 0x%08lx", a, (unsigned long)hr);
    }
    IUnknown_Release(ctx);
    ungrab(session, sf, conn);
    if (SUCCEEDED(hr))
        keep_action(df, actions[0]);
    return hr;
}

/* ---------------------------------------------------------------- the FTP lines */
/* ---------------------------------------------------------------- h1,h2,h3,h4,p1,p2 addresses */

static BOOL parse_h6(const char *p, SOCKADDR_IN *sa)
{
    unsigned v[6];
    BYTE *b = (BYTE *)&sa->sin_addr;
    while (*p && !isdigit((unsigned char)*p))
        p++;
    if (sscanf(p, "%u,%u,%u,%u,%u,%u", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6)
        return FALSE;
    for (int i = 0; i < 6; i++)
        if (v[i] > 255)
            return FALSE;
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    b[0] = v[0]; b[1] = v[1]; b[2] = v[2]; b[3] = v[3];
    sa->sin_port = htons((u_short)(v[4] * 256 + v[5]));
    return TRUE;
}

static int fmt_h6(char *out, size_t size, const SOCKADDR_IN *sa)
{
    const BYTE *b = (const BYTE *)&sa->sin_addr;
    unsigned port = ntohs(sa->sin_port);
    return snprintf(out, size, "%u,%u,%u,%u,%u,%u", b[0], b[1], b[2], b[3], port >> 8, port & 255);
}

/* "EPRT |1|10.0.0.2|4000|" (any delimiter): IPv4 only. */
/* The carry plus new bytes, line by line, into one new buffer (*out NULL when nothing is
 * complete yet). */
static HRESULT process(DataFilter *df, enum side from, const BYTE *data, DWORD size, IFWXIOBuffer **out)
{
    DWORD n = df->carry_len[from] + size, start = 0, w = 0;
    char *work = fwx_alloc(n + 1), *result;
    HRESULT hr = S_OK;

    *out = NULL;
    if (!work)
        return E_OUTOFMEMORY;
    memcpy(work, df->carry[from], df->carry_len[from]);
    memcpy(work + df->carry_len[from], data, size);
    /* Every line may grow by at most 128 bytes. */
    result = fwx_alloc(n + 128 * (n / 2 + 1));
    if (!result) {
        fwx_free(work);
        return E_OUTOFMEMORY;
    }
    for (DWORD i = 0; i < n; i++) {
        if (work[i] != '\n')
            continue;
        DWORD len = i + 1 - start;
        DWORD k = from == SIDE_INTERNAL ? lp_client_line(df, work + start, len, result + w)
                                        : lp_server_line(df, work + start, len, result + w);
        w += k;
        start = i + 1;
    }
    if (n - start >= LINE_MAX_LEN) {     /* not a control line: pass it on as it is */
        memcpy(result + w, work + start, n - start);
        w += n - start;
        start = n;
    }
    df->carry_len[from] = n - start;
    memcpy(df->carry[from], work + start, n - start);
    if (w > 0) {
        ULONG written;
        hr = create_buffer(df, w, out);
        if (SUCCEEDED(hr))
            hr = IFWXIOBuffer_Append(*out, (const BYTE *)result, w, &written);
        if (FAILED(hr) && *out) {
            IFWXIOBuffer_Release(*out);
            *out = NULL;
        }
    }
    fwx_free(work);
    fwx_free(result);
    return hr;
}

static void on_data(DataFilter *df, enum side from, IFWXIOBuffer *buffer)
{
    IFWXIOBuffer *out;
    BYTE *data;
    DWORD size;
    HRESULT hr;

    hr = IFWXIOBuffer_GetBufferAndSize(buffer, &data, &size);
    if (SUCCEEDED(hr))
        hr = process(df, from, data, size, &out);
    if (FAILED(hr))
        pump_fail(df, hr);
    else if (out) {
        pump_send(df, from, out);
        IFWXIOBuffer_Release(out);
    } else
        pump_recv(df, from);
}

/* End of stream from one side: an incomplete last line goes as it is, then the
 * half-close. */
static void on_eof(DataFilter *df, enum side from)
{
    IFWXIOBuffer *out;
    ULONG written;
    HRESULT hr;

    if (df->carry_len[from] == 0) {
        pump_shutdown(df, OTHER_SIDE(from));
        return;
    }
    hr = create_buffer(df, df->carry_len[from], &out);
    if (FAILED(hr)) {
        pump_fail(df, hr);
        return;
    }
    hr = IFWXIOBuffer_Append(out, (const BYTE *)df->carry[from], df->carry_len[from], &written);
    if (SUCCEEDED(hr)) {
        df->carry_len[from] = 0;
        df->flushing[from] = TRUE;
        pump_send(df, from, out);
    } else
        pump_fail(df, hr);
    IFWXIOBuffer_Release(out);
}

/* ---------------------------------------------------------------- completions */

static void on_received(DataFilter *df, enum side from, BOOL ok, DWORD error, IFWXIOBuffer *buffer)
{
    DWORD allocated, size;

    if (!ok || !buffer || FAILED(IFWXIOBuffer_GetBufferSizes(buffer, &allocated, &size))) {
        if (!ok && error != ERROR_OPERATION_ABORTED)
            fwx_trace("receive failed: error %lu", (unsigned long)error);
        pump_abort(df, OTHER_SIDE(from));
    } else if (size == 0)
        on_eof(df, from);
    else
        on_data(df, from, buffer);
}

static void on_sent(DataFilter *df, enum side from, BOOL ok, DWORD error)
{
    if (!ok) {
        if (error != ERROR_OPERATION_ABORTED)
            fwx_trace("send failed: error %lu", (unsigned long)error);
        pump_abort(df, from);
    } else if (df->flushing[from])
        pump_shutdown(df, OTHER_SIDE(from));
    else
        pump_recv(df, from);
}

/* ---------------------------------------------------------------- IFWXDataFilter */

static HRESULT STDMETHODCALLTYPE DataFilter_QueryInterface(IFWXDataFilter *iface, REFIID riid, void **ppv)
{
    return data_filter_query(impl_from_IFWXDataFilter(iface), riid, ppv);
}

static ULONG STDMETHODCALLTYPE DataFilter_AddRef(IFWXDataFilter *iface)
{
    return data_filter_addref(impl_from_IFWXDataFilter(iface));
}

static ULONG STDMETHODCALLTYPE DataFilter_Release(IFWXDataFilter *iface)
{
    return data_filter_release(impl_from_IFWXDataFilter(iface));
}

static HRESULT STDMETHODCALLTYPE DataFilter_SetSockets(IFWXDataFilter *iface, IFWXSocket *internal,
                                                       IFWXSocket *external, IFWXConnection *connection,
                                                       IUnknown *context)
{
    DataFilter *df = impl_from_IFWXDataFilter(iface);
    BOOL usable;

    if (!internal || !external)
        return E_INVALIDARG;

    EnterCriticalSection(&df->lock);
    usable = !df->detached && !df->sockets[SIDE_INTERNAL];
    if (usable) {
        IFWXSocket_AddRef(internal);
        IFWXSocket_AddRef(external);
        if (connection)
            IFWXConnection_AddRef(connection);
        df->sockets[SIDE_INTERNAL] = internal;
        df->sockets[SIDE_EXTERNAL] = external;
        df->connection = connection;
    }
    LeaveCriticalSection(&df->lock);
    if (!usable)
        return FWX_E_TERMINATING;

    pump_recv(df, SIDE_INTERNAL);
    pump_recv(df, SIDE_EXTERNAL);
    return S_OK;
}

/* Everything we hold goes; the actions of this control connection are withdrawn. */
static void drop_references(DataFilter *df)
{
    IFWXSocket *internal, *external;
    IFWXFirewall *firewall;
    IFWXConnection *connection;
    IFWXSession *session;
    IFWXSessionFilter *sf;
    IFWXFirewallAction *actions[MAX_ACTIONS];
    int nactions;

    EnterCriticalSection(&df->lock);
    df->detached = TRUE;
    internal = df->sockets[SIDE_INTERNAL];
    external = df->sockets[SIDE_EXTERNAL];
    firewall = df->firewall;
    connection = df->connection;
    session = df->session;
    sf = df->sf;
    nactions = df->nactions;
    memcpy(actions, df->actions, nactions * sizeof(actions[0]));
    df->nactions = 0;
    df->sockets[SIDE_INTERNAL] = df->sockets[SIDE_EXTERNAL] = NULL;
    df->firewall = NULL;
    df->connection = NULL;
    df->session = NULL;
    df->sf = NULL;
    LeaveCriticalSection(&df->lock);

    for (int i = 0; i < nactions; i++) {
        IFWXFirewallAction_Cancel(actions[i]);
        IFWXFirewallAction_Release(actions[i]);
    }
    if (internal)
        IFWXSocket_Release(internal);
    if (external)
        IFWXSocket_Release(external);
    if (firewall)
        IFWXFirewall_Release(firewall);
    if (connection)
        IFWXConnection_Release(connection);
    if (session)
        IFWXSession_Release(session);
    if (sf)
        IFWXSessionFilter_Release(sf);
}

static HRESULT STDMETHODCALLTYPE DataFilter_Detach(IFWXDataFilter *iface)
{
    drop_references(impl_from_IFWXDataFilter(iface));
    return S_OK;
}

static const IFWXDataFilterVtbl data_filter_vtbl = {
    DataFilter_QueryInterface,
    DataFilter_AddRef,
    DataFilter_Release,
    DataFilter_SetSockets,
    DataFilter_Detach,
};

/* ---------------------------------------------------------------- IFWXIOCompletion */

static HRESULT STDMETHODCALLTYPE Completion_QueryInterface(IFWXIOCompletion *iface, REFIID riid, void **ppv)
{
    return data_filter_query(impl_from_IFWXIOCompletion(iface), riid, ppv);
}

static ULONG STDMETHODCALLTYPE Completion_AddRef(IFWXIOCompletion *iface)
{
    return data_filter_addref(impl_from_IFWXIOCompletion(iface));
}

static ULONG STDMETHODCALLTYPE Completion_Release(IFWXIOCompletion *iface)
{
    return data_filter_release(impl_from_IFWXIOCompletion(iface));
}

static HRESULT STDMETHODCALLTYPE Completion_CompleteAsyncIO(IFWXIOCompletion *iface, BOOL fSuccess,
                                                            DWORD Win32ErrorCode, IFWXIOBuffer *pIOBuffer,
                                                            UserContextType UserData,
                                                            LPSOCKADDR ExternalAddress,
                                                            INT ExternalAddressLength)
{
    DataFilter *df = impl_from_IFWXIOCompletion(iface);

    if (UserData & IO_SEND)
        on_sent(df, IO_FROM(UserData), fSuccess, Win32ErrorCode);
    else
        on_received(df, IO_FROM(UserData), fSuccess, Win32ErrorCode, pIOBuffer);
    return S_OK;
}

static const IFWXIOCompletionVtbl completion_vtbl = {
    Completion_QueryInterface,
    Completion_AddRef,
    Completion_Release,
    Completion_CompleteAsyncIO,
};

static HRESULT data_filter_create(IFWXFirewall *firewall, IFWXSession *session,
                                  IFWXSessionFilter *sf, const SOCKADDR_IN *local,
                                  const SOCKADDR_IN *server, IFWXDataFilter **out)
{
    DataFilter *df = fwx_alloc(sizeof(*df));

    if (!df)
        return E_OUTOFMEMORY;
    df->IFWXDataFilter_iface.lpVtbl = &data_filter_vtbl;
    df->IFWXIOCompletion_iface.lpVtbl = &completion_vtbl;
    df->refs = 1;
    InitializeCriticalSection(&df->lock);
    IFWXFirewall_AddRef(firewall);
    df->firewall = firewall;
    IFWXSession_AddRef(session);
    df->session = session;
    IFWXSessionFilter_AddRef(sf);
    df->sf = sf;
    df->local = *local;
    df->server = *server;
    fwx_object_created();
    *out = &df->IFWXDataFilter_iface;
    return S_OK;
}

#endif /* FWX_LINEPROXY_H */
