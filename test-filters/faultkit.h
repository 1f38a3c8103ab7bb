/*
 * faultkit.h - the passthrough pump that the fault-injection test filters (crasher,
 * hanger, leaker, garbage) share, with hook points where each one misbehaves. It is
 * the pump of passthrough.c, condensed; read passthrough.c for the commented original.
 *
 * A filter source includes this file once, after fltbase.h, and defines every hook
 * below (most are one line). The three objects, as in passthrough.c:
 *   Filter         IFWXFilter         FilterInit, AttachToSession
 *   SessionFilter  IFWXSessionFilter  FirewallEventHandler attaches a DataFilter
 *   DataFilter     IFWXDataFilter +   Recv(NULL) on one side, Send of that buffer on the
 *                  IFWXIOCompletion   other, next Recv on the Send's completion
 *
 * Every misbehaviour is driven by the environment, read once in FilterInit, and any
 * randomness comes from a seed in the environment, so a test run can be repeated.
 */
#ifndef FWX_FAULTKIT_H
#define FWX_FAULTKIT_H

#include <stdlib.h>
#include <string.h>

enum side { SIDE_INTERNAL = 0, SIDE_EXTERNAL = 1 };
#define OTHER_SIDE(s) ((enum side)(1 - (s)))
#define IO_SEND        2
#define IO_TAG(from, op) ((UserContextType)((from) | (op)))
#define IO_FROM(tag)   ((enum side)((tag) & 1))

typedef struct {
    IFWXDataFilter   IFWXDataFilter_iface;
    IFWXIOCompletion IFWXIOCompletion_iface;
    LONG             refs;
    CRITICAL_SECTION lock;
    BOOL             detached;
    IFWXSocket      *sockets[2];
    IFWXConnection  *connection;
    LONG             buffers;      /* data buffers received so far, both directions */
    LONG             flags;        /* the filter's own */
    unsigned long long rng;        /* the filter's own */
} DataFilter;

/* ---------------------------------------------------------------- hooks: each filter defines these */

/* The global hook events FilterInit returns. */
static DWORD fk_hook_events(void);
/* FilterInit, after the hook events are set up: read the environment; may replace
 * *hooks or the result. */
static HRESULT fk_filter_init(PFwxFilterHookEvents *hooks, HRESULT hr);
/* AttachToSession, after a correct session filter and hooks were made (hr S_OK) or
 * not (hr failed): may replace the out-parameters and the result. */
static HRESULT fk_attach_to_session(IFWXSessionFilter **sf, PFwxFilterHookEvents *hooks, HRESULT hr);
/* FirewallEventHandler for fwx_Connect_Tcp and fwx_AcceptedConnection: *attach says
 * whether a DataFilter goes on the connection (TRUE on entry); returns the result. */
static HRESULT fk_event(const FirewallEvent *event, IFWXConnection *connection, BOOL *attach);
/* A new DataFilter (its rng, flags). */
static void fk_data_filter_created(DataFilter *df);
/* SetSockets, after the pump started (hr S_OK) or not: returns the result. */
static HRESULT fk_set_sockets(DataFilter *df, HRESULT hr);
/* A buffer with data arrived from FROM; called before it is sent on, with no lock
 * held. */
static void fk_received(DataFilter *df, enum side from, IFWXIOBuffer *buffer, DWORD size);
/* What CompleteAsyncIO returns. */
static HRESULT fk_completion_result(DataFilter *df, HRESULT hr);
/* FALSE: Detach keeps the sockets and connection it should release. */
static BOOL fk_detach_releases(void);

/* ---------------------------------------------------------------- helpers for the hooks */

/* Unsigned value of an environment variable, or def when unset or not a number. */
static inline unsigned long fk_env_ulong(const char *name, unsigned long def)
{
    char *text = fwx_getenv(name, ""), *end;
    unsigned long v = def;
    if (text && *text) {
        v = strtoul(text, &end, 0);
        if (*end)
            v = def;
    }
    fwx_free(text);
    return v;
}

/* The port an event is about: the local (listening) port of an accepted connection,
 * the destination port of an outbound connect, 0 for anything else. */
static inline unsigned fk_event_port(const FirewallEvent *event)
{
    const SOCKADDR *sa = NULL;
    if (event->EventType == fwx_AcceptedConnection)
        sa = event->Parameters.Accept.LocalAddress;
    else if (event->EventType == fwx_Connect_Tcp)
        sa = event->Parameters.Connect.Address;
    if (!sa || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
        return 0;
    return ntohs(((const SOCKADDR_IN *)sa)->sin_port);   /* same offset in SOCKADDR_IN6 */
}

/* Is port in the comma-separated list? An empty or unset list means every port. */
static inline BOOL fk_port_listed(const char *list, unsigned port)
{
    const char *p = list;
    if (!list || !*list)
        return TRUE;
    while (*p) {
        char *end;
        unsigned long v = strtoul(p, &end, 10);
        if (end != p && v == port)
            return TRUE;
        p = *end ? end + 1 : end;
    }
    return FALSE;
}

/* The fault every misbehaving filter commits: a write through a NULL pointer that the
 * compiler cannot see is NULL (it would otherwise emit a trap instruction instead). */
static int *volatile fk_null_pointer;
static inline void fk_crash(void)
{
    *fk_null_pointer = 0x0BAD;
}

/* splitmix64: a small deterministic generator for the seeded filters. */
static inline unsigned long long fk_next(unsigned long long *state)
{
    unsigned long long z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* ==================================================================== Filter */

typedef struct {
    IFWXFilter          IFWXFilter_iface;
    LONG                refs;
    IFWXFirewall       *firewall;
    FwxFilterHookEvents hooks;
} Filter;

/* The firewall FilterInit received (the Filter object holds the reference). */
static IFWXFirewall *fk_firewall;

static HRESULT session_filter_create(IFWXSession *session, IFWXSessionFilter **out);
static HRESULT data_filter_create(IFWXDataFilter **out);

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

static HRESULT STDMETHODCALLTYPE Filter_FilterInit(IFWXFilter *iface, IFWXFirewall *firewall,
                                                   PFwxFilterHookEvents *ppHooks)
{
    Filter *filter = impl_from_IFWXFilter(iface);

    IFWXFirewall_AddRef(firewall);
    filter->firewall = firewall;
    fk_firewall = firewall;
    filter->hooks.dwGlobalEvents = fk_hook_events();
    filter->hooks.dwNumPortRanges = 0;
    filter->hooks.PortRangeEvents = NULL;
    *ppHooks = &filter->hooks;
    return fk_filter_init(ppHooks, S_OK);
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
    HRESULT hr;

    *ppSessionFilter = NULL;
    *ppHooks = NULL;
    hooks = CoTaskMemAlloc(sizeof(*hooks));
    if (!hooks)
        return fk_attach_to_session(ppSessionFilter, ppHooks, E_OUTOFMEMORY);
    *hooks = filter->hooks;
    hr = session_filter_create(session, ppSessionFilter);
    if (FAILED(hr))
        CoTaskMemFree(hooks);
    else
        *ppHooks = hooks;
    return fk_attach_to_session(ppSessionFilter, ppHooks, hr);
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
    IFWXSession      *session;
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

static ULONG STDMETHODCALLTYPE SessionFilter_Release(IFWXSessionFilter *iface)
{
    SessionFilter *sf = impl_from_IFWXSessionFilter(iface);
    LONG refs = InterlockedDecrement(&sf->refs);
    if (refs == 0) {
        if (sf->session)
            IFWXSession_Release(sf->session);
        fwx_free(sf);
        fwx_object_destroyed();
    }
    return refs;
}

static HRESULT STDMETHODCALLTYPE SessionFilter_FirewallEventHandler(IFWXSessionFilter *iface,
                                                                    const FirewallEvent *event)
{
    IFWXConnection *connection;
    IFWXDataFilter *df;
    BOOL attach = TRUE;
    HRESULT hr;

    if (event->EventType == fwx_Connect_Tcp)
        connection = event->Parameters.Connect.piConnection;
    else if (event->EventType == fwx_AcceptedConnection)
        connection = event->Parameters.Accept.piConnectionAccepted;
    else
        return S_OK;
    hr = fk_event(event, connection, &attach);
    if (!attach || !connection || FAILED(data_filter_create(&df)))
        return hr;
    if (FAILED(IFWXConnection_AttachDataFilter(connection, df, fwx_dfpc_Middle, NULL)))
        fwx_trace("AttachDataFilter failed");
    IFWXDataFilter_Release(df);
    return hr;
}

static HRESULT STDMETHODCALLTYPE SessionFilter_Detach(IFWXSessionFilter *iface)
{
    SessionFilter *sf = impl_from_IFWXSessionFilter(iface);
    IFWXSession *session = (IFWXSession *)InterlockedExchangePointer((void **)&sf->session, NULL);
    if (session)
        IFWXSession_Release(session);
    return S_OK;
}

static const IFWXSessionFilterVtbl session_filter_vtbl = {
    SessionFilter_QueryInterface,
    SessionFilter_AddRef,
    SessionFilter_Release,
    SessionFilter_FirewallEventHandler,
    SessionFilter_Detach,
};

static HRESULT session_filter_create(IFWXSession *session, IFWXSessionFilter **out)
{
    SessionFilter *sf = fwx_alloc(sizeof(*sf));
    if (!sf)
        return E_OUTOFMEMORY;
    sf->IFWXSessionFilter_iface.lpVtbl = &session_filter_vtbl;
    sf->refs = 1;
    if (session)
        IFWXSession_AddRef(session);
    sf->session = session;
    fwx_object_created();
    *out = &sf->IFWXSessionFilter_iface;
    return S_OK;
}

/* ==================================================================== DataFilter */

static DataFilter *impl_from_IFWXDataFilter(IFWXDataFilter *iface)
{
    return CONTAINING_RECORD(iface, DataFilter, IFWXDataFilter_iface);
}

static DataFilter *impl_from_IFWXIOCompletion(IFWXIOCompletion *iface)
{
    return CONTAINING_RECORD(iface, DataFilter, IFWXIOCompletion_iface);
}

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

static ULONG data_filter_release(DataFilter *df)
{
    LONG refs = InterlockedDecrement(&df->refs);
    if (refs == 0) {
        if (df->sockets[SIDE_INTERNAL])
            IFWXSocket_Release(df->sockets[SIDE_INTERNAL]);
        if (df->sockets[SIDE_EXTERNAL])
            IFWXSocket_Release(df->sockets[SIDE_EXTERNAL]);
        if (df->connection)
            IFWXConnection_Release(df->connection);
        DeleteCriticalSection(&df->lock);
        fwx_free(df);
        fwx_object_destroyed();
    }
    return refs;
}

static IFWXSocket *pump_socket(DataFilter *df, enum side side)
{
    IFWXSocket *socket;
    EnterCriticalSection(&df->lock);
    socket = df->detached ? NULL : df->sockets[side];
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
    if (FAILED(hr))
        pump_abort(df, OTHER_SIDE(from));
}

static void pump_send(DataFilter *df, enum side from, IFWXIOBuffer *buffer)
{
    IFWXSocket *socket = pump_socket(df, OTHER_SIDE(from));
    HRESULT hr;
    if (!socket)
        return;
    hr = IFWXSocket_Send(socket, buffer, &df->IFWXIOCompletion_iface, IO_TAG(from, IO_SEND));
    IFWXSocket_Release(socket);
    if (FAILED(hr))
        pump_abort(df, from);
}

static HRESULT STDMETHODCALLTYPE DataFilter_QueryInterface(IFWXDataFilter *iface, REFIID riid, void **ppv)
{
    return data_filter_query(impl_from_IFWXDataFilter(iface), riid, ppv);
}

static ULONG STDMETHODCALLTYPE DataFilter_AddRef(IFWXDataFilter *iface)
{
    return InterlockedIncrement(&impl_from_IFWXDataFilter(iface)->refs);
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
        return fk_set_sockets(df, E_INVALIDARG);
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
        return fk_set_sockets(df, FWX_E_TERMINATING);
    pump_recv(df, SIDE_INTERNAL);
    pump_recv(df, SIDE_EXTERNAL);
    return fk_set_sockets(df, S_OK);
}

static HRESULT STDMETHODCALLTYPE DataFilter_Detach(IFWXDataFilter *iface)
{
    DataFilter *df = impl_from_IFWXDataFilter(iface);
    IFWXSocket *internal, *external;
    IFWXConnection *connection;

    EnterCriticalSection(&df->lock);
    df->detached = TRUE;
    if (!fk_detach_releases()) {    /* keep them: a leak the host must survive */
        LeaveCriticalSection(&df->lock);
        return S_OK;
    }
    internal = df->sockets[SIDE_INTERNAL];
    external = df->sockets[SIDE_EXTERNAL];
    connection = df->connection;
    df->sockets[SIDE_INTERNAL] = df->sockets[SIDE_EXTERNAL] = NULL;
    df->connection = NULL;
    LeaveCriticalSection(&df->lock);
    if (internal)
        IFWXSocket_Release(internal);
    if (external)
        IFWXSocket_Release(external);
    if (connection)
        IFWXConnection_Release(connection);
    return S_OK;
}

static const IFWXDataFilterVtbl data_filter_vtbl = {
    DataFilter_QueryInterface,
    DataFilter_AddRef,
    DataFilter_Release,
    DataFilter_SetSockets,
    DataFilter_Detach,
};

static HRESULT STDMETHODCALLTYPE Completion_QueryInterface(IFWXIOCompletion *iface, REFIID riid, void **ppv)
{
    return data_filter_query(impl_from_IFWXIOCompletion(iface), riid, ppv);
}

static ULONG STDMETHODCALLTYPE Completion_AddRef(IFWXIOCompletion *iface)
{
    return InterlockedIncrement(&impl_from_IFWXIOCompletion(iface)->refs);
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
    enum side from = IO_FROM(UserData);
    DWORD allocated, size;

    if (UserData & IO_SEND) {
        if (fSuccess)
            pump_recv(df, from);
        else
            pump_abort(df, from);
    } else if (!fSuccess || !pIOBuffer ||
               FAILED(IFWXIOBuffer_GetBufferSizes(pIOBuffer, &allocated, &size))) {
        pump_abort(df, OTHER_SIDE(from));
    } else if (size == 0) {
        pump_shutdown(df, OTHER_SIDE(from));
    } else {
        fk_received(df, from, pIOBuffer, size);
        pump_send(df, from, pIOBuffer);
    }
    return fk_completion_result(df, S_OK);
}

static const IFWXIOCompletionVtbl completion_vtbl = {
    Completion_QueryInterface,
    Completion_AddRef,
    Completion_Release,
    Completion_CompleteAsyncIO,
};

static HRESULT data_filter_create(IFWXDataFilter **out)
{
    DataFilter *df = fwx_alloc(sizeof(*df));
    if (!df)
        return E_OUTOFMEMORY;
    df->IFWXDataFilter_iface.lpVtbl = &data_filter_vtbl;
    df->IFWXIOCompletion_iface.lpVtbl = &completion_vtbl;
    df->refs = 1;
    InitializeCriticalSection(&df->lock);
    fwx_object_created();
    fk_data_filter_created(df);
    *out = &df->IFWXDataFilter_iface;
    return S_OK;
}

#endif /* FWX_FAULTKIT_H */
