/*
 * emulator.c - a test filter for outbound emulation (reference 2.9): it answers every
 * outbound TCP connect itself, so the destination is never contacted. In the
 * fwx_Connect_Tcp handler it calls IFWXConnection::SetProtocol with
 * FWX_FLAG_EMULATE_PROTOCOL and attaches a data filter of class fwx_dfpc_Emulation; it
 * then tries both a second time, which must fail with FWX_E_ALREADY_EMULATED. The data
 * filter sets the connection's socket name (SetSocketName, twice: the second must fail
 * with FWX_E_ALREADY_EXISTS), reads it back with GetExternalSocketName, and answers each
 * piece the client sends with "emulated:" and the piece; the client's half-close is
 * answered with ours. Every result is traced ("fwx-filter emulator: ...", on stderr with
 * FWX_FILTER_TRACE=1); tests/emulation.sh checks them.
 *
 * Inbound emulation (HOST-1001): on a publishing rule's fwx_AcceptedConnection it calls
 * IFWXConnection::EmulateConnection with its data filter instead (the target is never
 * contacted), then a second time and an Emulation-class AttachDataFilter, both of which
 * must fail with FWX_E_ALREADY_EMULATED; the data filter answers as above.
 */
#define COBJMACROS
#define CONST_VTABLE
#include "fltbase.h"

#include <string.h>

/* {5C2E7A19-3B84-4F06-9D1A-6E8B0C4F2A73} */
const CLSID fwx_filter_clsid =
    { 0x5c2e7a19, 0x3b84, 0x4f06, { 0x9d, 0x1a, 0x6e, 0x8b, 0x0c, 0x4f, 0x2a, 0x73 } };
const char fwx_filter_name[] = "emulator";

/* {0B7D4E21-9C36-4A58-8F12-3D6E9A0B1C24}: the "emulated" protocol. */
static const GUID emulated_protocol =
    { 0x0b7d4e21, 0x9c36, 0x4a58, { 0x8f, 0x12, 0x3d, 0x6e, 0x9a, 0x0b, 0x1c, 0x24 } };

#define EMULATOR_EVENTS (fwx_Connect_Tcp | fwx_AcceptedConnection | FWX_ALL_SOURCES)

static HRESULT session_filter_create(IFWXSession *session, IFWXFirewall *firewall, IFWXSessionFilter **out);
static HRESULT data_filter_create(IFWXFirewall *firewall, IFWXDataFilter **out);

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
    IFWXFirewall_AddRef(firewall);
    filter->firewall = firewall;
    filter->hooks.dwGlobalEvents = EMULATOR_EVENTS;
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

/* Holds the firewall as well as the session: its data filters need CreateBuffer. */
typedef struct {
    IFWXSessionFilter IFWXSessionFilter_iface;
    LONG              refs;
    CRITICAL_SECTION  lock;       /* events race Detach */
    IFWXSession      *session;    /* until Detach */
    IFWXFirewall     *firewall;   /* until Detach */
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

static HRESULT emulate(SessionFilter *sf, IFWXConnection *connection)
{
    IFWXFirewall *firewall;
    IFWXDataFilter *df, *second;
    HRESULT hr;

    if (!connection)
        return S_OK;
    EnterCriticalSection(&sf->lock);
    firewall = sf->firewall;
    if (firewall)
        IFWXFirewall_AddRef(firewall);
    LeaveCriticalSection(&sf->lock);
    if (!firewall)
        return FWX_E_TERMINATING;

    hr = IFWXConnection_SetProtocol(connection, &emulated_protocol, FWX_FLAG_EMULATE_PROTOCOL);
    fwx_trace("SetProtocol(FWX_FLAG_EMULATE_PROTOCOL): 0x%08lx", (unsigned long)hr);
    hr = IFWXConnection_SetProtocol(connection, &emulated_protocol, FWX_FLAG_EMULATE_PROTOCOL);
    fwx_trace("second SetProtocol(FWX_FLAG_EMULATE_PROTOCOL): 0x%08lx", (unsigned long)hr);
    if (SUCCEEDED(hr = data_filter_create(firewall, &df))) {
        hr = IFWXConnection_AttachDataFilter(connection, df, fwx_dfpc_Emulation, NULL);
        fwx_trace("AttachDataFilter(fwx_dfpc_Emulation): 0x%08lx", (unsigned long)hr);
        IFWXDataFilter_Release(df);
    }
    if (SUCCEEDED(data_filter_create(firewall, &second))) {
        hr = IFWXConnection_AttachDataFilter(connection, second, fwx_dfpc_Emulation, NULL);
        fwx_trace("second AttachDataFilter(fwx_dfpc_Emulation): 0x%08lx", (unsigned long)hr);
        IFWXDataFilter_Release(second);
    }
    IFWXFirewall_Release(firewall);
    return S_OK;
}

static HRESULT emulate_inbound(SessionFilter *sf, IFWXConnection *connection)
{
    IFWXFirewall *firewall;
    IFWXDataFilter *df;
    IFWXConnection *made = NULL;
    HRESULT hr;

    if (!connection)
        return S_OK;
    EnterCriticalSection(&sf->lock);
    firewall = sf->firewall;
    if (firewall)
        IFWXFirewall_AddRef(firewall);
    LeaveCriticalSection(&sf->lock);
    if (!firewall)
        return FWX_E_TERMINATING;
    if (SUCCEEDED(hr = data_filter_create(firewall, &df))) {
        hr = IFWXConnection_EmulateConnection(connection, df, NULL, 0, NULL, 0, &made);
        fwx_trace("EmulateConnection: 0x%08lx, connection %s", (unsigned long)hr,
                  !made ? "NULL" : made == connection ? "the accepted one" : "another");
        if (made)
            IFWXConnection_Release(made);
        hr = IFWXConnection_EmulateConnection(connection, df, NULL, 0, NULL, 0, NULL);
        fwx_trace("second EmulateConnection: 0x%08lx", (unsigned long)hr);
        hr = IFWXConnection_AttachDataFilter(connection, df, fwx_dfpc_Emulation, NULL);
        fwx_trace("AttachDataFilter(fwx_dfpc_Emulation) after EmulateConnection: 0x%08lx",
                  (unsigned long)hr);
        IFWXDataFilter_Release(df);
    }
    IFWXFirewall_Release(firewall);
    return S_OK;
}

static HRESULT STDMETHODCALLTYPE SessionFilter_FirewallEventHandler(IFWXSessionFilter *iface,
                                                                    const FirewallEvent *event)
{
    SessionFilter *sf = impl_from_IFWXSessionFilter(iface);
    if (event->EventType == fwx_Connect_Tcp)
        return emulate(sf, event->Parameters.Connect.piConnection);
    if (event->EventType == fwx_AcceptedConnection)
        return emulate_inbound(sf, event->Parameters.Accept.piConnectionAccepted);
    return S_OK;
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

typedef struct {
    IFWXDataFilter   IFWXDataFilter_iface;
    IFWXIOCompletion IFWXIOCompletion_iface;
    LONG             refs;
    CRITICAL_SECTION lock;         /* Detach races completions */
    BOOL             detached;
    IFWXSocket      *client;       /* the internal socket: towards the client */
    IFWXFirewall    *firewall;     /* for CreateBuffer; until Detach */
} DataFilter;

#define IO_RECV 1
#define IO_SEND 2
#define IO_FIN  3

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
        if (df->client)
            IFWXSocket_Release(df->client);
        if (df->firewall)
            IFWXFirewall_Release(df->firewall);
        DeleteCriticalSection(&df->lock);
        fwx_free(df);
        fwx_object_destroyed();
    }
    return refs;
}

static IFWXSocket *client_socket(DataFilter *df)
{
    IFWXSocket *s;
    EnterCriticalSection(&df->lock);
    s = df->client;
    if (s)
        IFWXSocket_AddRef(s);
    LeaveCriticalSection(&df->lock);
    return s;
}

static void client_recv(DataFilter *df)
{
    IFWXSocket *s = client_socket(df);
    if (!s)
        return;
    if (FAILED(IFWXSocket_Recv(s, NULL, &df->IFWXIOCompletion_iface, IO_RECV)))
        IFWXSocket_Close(s, TRUE);
    IFWXSocket_Release(s);
}

/* The answer to one piece: "emulated:" and the piece. */
static void answer(DataFilter *df, IFWXIOBuffer *in)
{
    static const char prefix[] = "emulated:";
    IFWXSocket *s = client_socket(df);
    IFWXFirewall *firewall;
    IFWXIOBuffer *out = NULL;
    BYTE *data;
    DWORD size;
    ULONG written;
    HRESULT hr;

    if (!s)
        return;
    EnterCriticalSection(&df->lock);
    firewall = df->firewall;
    if (firewall)
        IFWXFirewall_AddRef(firewall);
    LeaveCriticalSection(&df->lock);
    hr = firewall ? IFWXIOBuffer_GetBufferAndSize(in, &data, &size) : FWX_E_TERMINATING;
    if (SUCCEEDED(hr))
        hr = IFWXFirewall_CreateBuffer(firewall, size + sizeof(prefix), &out);
    if (SUCCEEDED(hr))
        hr = IFWXIOBuffer_Append(out, (const BYTE *)prefix, sizeof(prefix) - 1, &written);
    if (SUCCEEDED(hr))
        hr = IFWXIOBuffer_Append(out, data, size, &written);
    if (SUCCEEDED(hr))
        hr = IFWXSocket_Send(s, out, &df->IFWXIOCompletion_iface, IO_SEND);
    if (FAILED(hr))
        IFWXSocket_Close(s, TRUE);
    if (out)
        IFWXIOBuffer_Release(out);
    if (firewall)
        IFWXFirewall_Release(firewall);
    IFWXSocket_Release(s);
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
    SOCKADDR_IN name, got;
    INT len = sizeof(got);
    HRESULT hr;
    BOOL usable;

    fwx_trace("SetSockets: internal %s, external %s", internal ? "set" : "NULL",
              external ? "set" : "NULL");
    if (!internal)
        return E_INVALIDARG;
    if (connection) {
        memset(&name, 0, sizeof(name));
        name.sin_family = AF_INET;
        name.sin_port = htons(8080);
        name.sin_addr.s_addr = htonl(0xc0000250);   /* 192.0.2.80 */
        hr = IFWXConnection_SetSocketName(connection, (LPSOCKADDR)&name, sizeof(name));
        fwx_trace("SetSocketName: 0x%08lx", (unsigned long)hr);
        hr = IFWXConnection_SetSocketName(connection, (LPSOCKADDR)&name, sizeof(name));
        fwx_trace("second SetSocketName: 0x%08lx", (unsigned long)hr);
        memset(&got, 0, sizeof(got));
        hr = IFWXConnection_GetExternalSocketName(connection, (LPSOCKADDR)&got, &len);
        {
            const BYTE *b = (const BYTE *)&got.sin_addr;
            fwx_trace("GetExternalSocketName: 0x%08lx %u.%u.%u.%u:%u", (unsigned long)hr, b[0], b[1],
                      b[2], b[3], ntohs(got.sin_port));
        }
    }
    EnterCriticalSection(&df->lock);
    usable = !df->detached && !df->client;
    if (usable) {
        IFWXSocket_AddRef(internal);
        df->client = internal;
    }
    LeaveCriticalSection(&df->lock);
    if (!usable)
        return FWX_E_TERMINATING;
    client_recv(df);
    return S_OK;
}

static HRESULT STDMETHODCALLTYPE DataFilter_Detach(IFWXDataFilter *iface)
{
    DataFilter *df = impl_from_IFWXDataFilter(iface);
    IFWXSocket *client;
    IFWXFirewall *firewall;

    EnterCriticalSection(&df->lock);
    df->detached = TRUE;
    client = df->client;
    firewall = df->firewall;
    df->client = NULL;
    df->firewall = NULL;
    LeaveCriticalSection(&df->lock);
    if (client)
        IFWXSocket_Release(client);
    if (firewall)
        IFWXFirewall_Release(firewall);
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
    DWORD allocated, size;
    IFWXSocket *s;

    if (!fSuccess)
        return S_OK;    /* the connection is ending: nothing more to answer */
    if (UserData == IO_SEND) {
        client_recv(df);
    } else if (UserData == IO_RECV) {
        if (!pIOBuffer || FAILED(IFWXIOBuffer_GetBufferSizes(pIOBuffer, &allocated, &size)))
            return S_OK;
        if (size > 0) {
            answer(df, pIOBuffer);
        } else if ((s = client_socket(df))) {   /* the client is done: so are we */
            IFWXSocket_Shutdown(s, FALSE);
            IFWXSocket_Release(s);
        }
    }
    return S_OK;
}

static const IFWXIOCompletionVtbl completion_vtbl = {
    Completion_QueryInterface,
    Completion_AddRef,
    Completion_Release,
    Completion_CompleteAsyncIO,
};

static HRESULT data_filter_create(IFWXFirewall *firewall, IFWXDataFilter **out)
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
    fwx_object_created();
    *out = &df->IFWXDataFilter_iface;
    return S_OK;
}
