/*
 * passthrough.c - the reference fwxshim test filter: it hooks outbound TCP connects and
 * accepted (published) connections, attaches a data filter to each, and pumps the bytes
 * in both directions unchanged. Written as an ISA Server 2000 filter author would write
 * it in C; read it as the example of how a filter drives the FWX API.
 *
 * This file owns the three objects of the filter, in lifecycle order:
 *   Filter         IFWXFilter         one per DLL; FilterInit, AttachToSession
 *   SessionFilter  IFWXSessionFilter  one per client session; attaches data filters
 *   DataFilter     IFWXDataFilter,    one per connection; the data pump
 *                  IFWXIOCompletion
 * The COM DLL plumbing (exports, class factory) is in fltbase.c.
 * Built three times: passthrough.dll (ISA 2000 conventions), passreg.dll
 * (-DFWX_SELF_REGISTER: DllRegisterServer registers the filter and a protocol through
 * IFWXFilterAdmin, as the ISA 2000 SDK tutorial shows) and passtmg.dll (-DFWX_PROFILE_TMG:
 * FilterInit and AttachToSession fill the hook events the host passes in, as ISA
 * 2004/2006/TMG filters do; tests/abi.sh profiles).
 *
 * The pump, per direction: Recv(NULL) on the source socket (the host supplies the
 * buffer); on completion Send that same buffer, untouched, out of the other socket; on
 * the Send's completion post the next Recv. So each direction has one operation in
 * flight, and a slow receiver slows the sender: that is the flow control. A Recv that
 * completes with 0 bytes is the peer's half-close and becomes Shutdown(FALSE) on the
 * other socket; a failed operation becomes Close(TRUE) (abort) on the other socket.
 */
#define COBJMACROS
#define CONST_VTABLE
#ifdef FWX_SELF_REGISTER
#define FWX_DEFINE_CLSID_FWXFILTERADMIN   /* this DLL asks for the admin object */
#endif
#include "fltbase.h"

/* {C5B86DA9-D567-4E36-8A60-144A781CB066} */
const CLSID fwx_filter_clsid =
    { 0xc5b86da9, 0xd567, 0x4e36, { 0x8a, 0x60, 0x14, 0x4a, 0x78, 0x1c, 0xb0, 0x66 } };
const char fwx_filter_name[] = "passthrough";

/* Outbound connections (access rules) and inbound ones (publishing rules), from
 * Firewall clients and SecureNAT clients alike. */
#define PASSTHROUGH_EVENTS (fwx_Connect_Tcp | fwx_AcceptedConnection | FWX_ALL_SOURCES)

static HRESULT session_filter_create(IFWXSession *session, IFWXSessionFilter **out);
static HRESULT data_filter_create(IFWXDataFilter **out);

/* ==================================================================== Filter */

typedef struct {
    IFWXFilter          IFWXFilter_iface;
    LONG                refs;
    IFWXFirewall       *firewall;   /* from FilterInit until FilterShutdown */
    FwxFilterHookEvents hooks;      /* FilterInit hands the host this member's address */
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
        if (filter->firewall)   /* the host released us without FilterShutdown */
            IFWXFirewall_Release(filter->firewall);
        fwx_free(filter);
        fwx_object_destroyed();
    }
    return refs;
}

/* The host treats the filter as ready as soon as this returns, so everything is set up
 * first. The hook events are a member: the host copies them and never frees them. */
static HRESULT STDMETHODCALLTYPE Filter_FilterInit(IFWXFilter *iface, IFWXFirewall *firewall,
                                                   PFwxFilterHookEvents *ppHooks)
{
    Filter *filter = impl_from_IFWXFilter(iface);

    IFWXFirewall_AddRef(firewall);
    filter->firewall = firewall;
    filter->hooks.dwGlobalEvents = PASSTHROUGH_EVENTS;
    filter->hooks.dwNumPortRanges = 0;
    filter->hooks.PortRangeEvents = NULL;
#ifdef FWX_PROFILE_TMG
    /* ISA 2004/2006/TMG: the host owns the structure ({dwGlobalEvents}); we fill it. */
    ((FwxFilterHookEvents *)ppHooks)->dwGlobalEvents = PASSTHROUGH_EVENTS;
#else
    *ppHooks = &filter->hooks;
#endif
    return S_OK;
}

/* Session and data filters may still be detached after this (the order is undefined),
 * which is why they hold nothing of the filter object. */
static HRESULT STDMETHODCALLTYPE Filter_FilterShutdown(IFWXFilter *iface)
{
    Filter *filter = impl_from_IFWXFilter(iface);
    IFWXFirewall *firewall = (IFWXFirewall *)InterlockedExchangePointer((void **)&filter->firewall, NULL);

    if (firewall)
        IFWXFirewall_Release(firewall);
    return S_OK;
}

/* The per-session hook events must be CoTaskMem memory: the host frees them. We want the
 * same events in every session, so they are a copy of the global ones. */
static HRESULT STDMETHODCALLTYPE Filter_AttachToSession(IFWXFilter *iface, IFWXSession *session,
                                                        IFWXSessionFilter **ppSessionFilter,
                                                        PFwxFilterHookEvents *ppHooks)
{
    Filter *filter = impl_from_IFWXFilter(iface);
    FwxFilterHookEvents *hooks;
    HRESULT hr;

    *ppSessionFilter = NULL;
#ifdef FWX_PROFILE_TMG
    /* ISA 2004/2006/TMG: the host's structure, which we fill. */
    (void)hooks;
    ((FwxFilterHookEvents *)ppHooks)->dwGlobalEvents = filter->hooks.dwGlobalEvents;
    return session_filter_create(session, ppSessionFilter);
#endif
    *ppHooks = NULL;
    hooks = CoTaskMemAlloc(sizeof(*hooks));
    if (!hooks)
        return E_OUTOFMEMORY;
    *hooks = filter->hooks;

    hr = session_filter_create(session, ppSessionFilter);
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
    IFWXSession      *session;   /* until Detach */
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
        if (sf->session)   /* released without Detach */
            IFWXSession_Release(sf->session);
        fwx_free(sf);
        fwx_object_destroyed();
    }
    return refs;
}

/* Gives the connection a pump of its own. The connection keeps the data filter alive;
 * our creation reference is not needed past the attach. */
static HRESULT attach_pump(IFWXConnection *connection)
{
    IFWXDataFilter *df;
    HRESULT hr;

    if (!connection)
        return S_OK;
    hr = data_filter_create(&df);
    if (FAILED(hr))
        return hr;   /* E_OUTOFMEMORY fails the request: better than an unfiltered one */
    hr = IFWXConnection_AttachDataFilter(connection, df, fwx_dfpc_Middle, NULL);
    if (FAILED(hr))
        fwx_trace("AttachDataFilter failed: 0x%08lx", (unsigned long)hr);
    IFWXDataFilter_Release(df);
    return S_OK;
}

static HRESULT STDMETHODCALLTYPE SessionFilter_FirewallEventHandler(IFWXSessionFilter *iface,
                                                                    const FirewallEvent *event)
{
    switch (event->EventType) {
    case fwx_Connect_Tcp:
        return attach_pump(event->Parameters.Connect.piConnection);
    case fwx_AcceptedConnection:
        return attach_pump(event->Parameters.Accept.piConnectionAccepted);
    default:
        return S_OK;   /* fwx_ConnectionTerminating included: we keep no connection */
    }
}

/* Detach can race an event on another thread, hence the exchange. */
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

/* The internal socket faces the client (or the previous filter of the chain), the
 * external one the server (or the next filter). */
enum side { SIDE_INTERNAL = 0, SIDE_EXTERNAL = 1 };
#define OTHER_SIDE(s) ((enum side)(1 - (s)))

/* UserData of our I/O: the side the bytes were read from, plus IO_SEND when the
 * operation is the Send of those bytes out of the other side. */
#define IO_SEND        2
#define IO_TAG(from, op) ((UserContextType)((from) | (op)))
#define IO_FROM(tag)   ((enum side)((tag) & 1))

typedef struct {
    IFWXDataFilter   IFWXDataFilter_iface;
    IFWXIOCompletion IFWXIOCompletion_iface;
    LONG             refs;
    CRITICAL_SECTION lock;         /* guards the fields below: Detach races completions */
    BOOL             detached;
    IFWXSocket      *sockets[2];   /* by enum side; set by SetSockets, cleared by Detach */
    IFWXConnection  *connection;
} DataFilter;

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

/* Releases whatever Detach did not (a host that never called it). */
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

/* ---------------------------------------------------------------- the pump */

/* The socket on SIDE with a reference of the caller's own, or NULL once detached. The
 * lock is not held while we call the socket (the host may call us back), so the extra
 * reference is what keeps the socket alive if Detach runs meanwhile. AddRef is the one
 * host call made under the lock: it cannot call back into us. */
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

/* Aborts the connection from SIDE: a reset towards that peer, which makes the host fail
 * whatever is pending there and so stops the other direction too. */
static void pump_abort(DataFilter *df, enum side side)
{
    IFWXSocket *socket = pump_socket(df, side);

    if (socket) {
        IFWXSocket_Close(socket, TRUE);
        IFWXSocket_Release(socket);
    }
}

/* Forwards a half-close: no more data will come from the other side. */
static void pump_shutdown(DataFilter *df, enum side side)
{
    IFWXSocket *socket = pump_socket(df, side);

    if (socket) {
        IFWXSocket_Shutdown(socket, FALSE);
        IFWXSocket_Release(socket);
    }
}

/* Asks for the next bytes from FROM. A NULL buffer lets the host supply one, usually the
 * very buffer the previous link sent, so no data is copied. */
static void pump_recv(DataFilter *df, enum side from)
{
    IFWXSocket *socket = pump_socket(df, from);
    HRESULT hr;

    if (!socket)
        return;
    hr = IFWXSocket_Recv(socket, NULL, &df->IFWXIOCompletion_iface, IO_TAG(from, 0));
    IFWXSocket_Release(socket);
    if (FAILED(hr)) {   /* no completion will come: this direction is dead */
        fwx_trace("Recv failed: 0x%08lx", (unsigned long)hr);
        pump_abort(df, OTHER_SIDE(from));
    }
}

/* Passes a buffer read from FROM on to the other side. Send takes its own reference on
 * the buffer, so we need none beyond this call. */
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

static void on_received(DataFilter *df, enum side from, BOOL ok, DWORD error, IFWXIOBuffer *buffer)
{
    DWORD allocated, size;

    if (!ok || !buffer || FAILED(IFWXIOBuffer_GetBufferSizes(buffer, &allocated, &size))) {
        if (!ok && error != ERROR_OPERATION_ABORTED)
            fwx_trace("receive failed: error %lu", (unsigned long)error);
        pump_abort(df, OTHER_SIDE(from));
    }
    else if (size == 0)
        pump_shutdown(df, OTHER_SIDE(from));
    else
        pump_send(df, from, buffer);
}

/* The other side accepted the bytes from FROM: now, and only now, read more from FROM. */
static void on_sent(DataFilter *df, enum side from, BOOL ok, DWORD error)
{
    if (!ok) {
        if (error != ERROR_OPERATION_ABORTED)
            fwx_trace("send failed: error %lu", (unsigned long)error);
        pump_abort(df, from);
    }
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

/* The signal to start pumping: both directions begin with a Recv. */
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

/* The connection is over (or was never set up): drop every reference we hold. Pending
 * operations complete with an error and find no sockets left. */
static HRESULT STDMETHODCALLTYPE DataFilter_Detach(IFWXDataFilter *iface)
{
    DataFilter *df = impl_from_IFWXDataFilter(iface);
    IFWXSocket *internal, *external;
    IFWXConnection *connection;

    EnterCriticalSection(&df->lock);
    df->detached = TRUE;
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

/* Runs on a host thread; the two directions may complete at the same time on two threads,
 * but each direction has only one operation in flight, so its steps never overlap. */
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
    *out = &df->IFWXDataFilter_iface;
    return S_OK;
}

#ifdef FWX_SELF_REGISTER
/* {7A3C1E55-0B2D-4C8E-9F16-2D4B6A8C0E13}: the protocol this filter registers. */
static const GUID passreg_protocol =
    { 0x7a3c1e55, 0x0b2d, 0x4c8e, { 0x9f, 0x16, 0x2d, 0x4b, 0x6a, 0x8c, 0x0e, 0x13 } };

/* What the ISA 2000 tutorial's DllRegisterServer does: the admin object, InstallFilter,
 * one protocol. */
HRESULT fwx_self_register(void)
{
    IFWXFilterAdmin *admin = NULL;
    HRESULT hr = CoCreateInstance(&CLSID_FWXFilterAdmin, NULL, CLSCTX_SERVER, &IID_IFWXFilterAdmin,
                                  (void **)&admin);
    if (FAILED(hr))
        return hr;
    hr = IFWXFilterAdmin_InstallFilter(admin, &fwx_filter_clsid, "PassReg",
                                       "Passthrough that registers itself", "fwxshim tests", "1.0",
                                       NULL, fwx_ArrayScope);
    if (SUCCEEDED(hr))
        hr = IFWXFilterAdmin_RegisterProtocolForFilter(admin, &fwx_filter_clsid, &passreg_protocol,
                                                       "PassReg TCP", "the passreg test protocol",
                                                       NULL, fwx_ArrayScope);
    IFWXFilterAdmin_Release(admin);
    return hr;
}
#endif
