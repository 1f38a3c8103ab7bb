/*
 * bytecount.c - a minimal, complete ISA Server 2000 application filter for fwxshim.
 *
 * It hooks every outbound TCP connect (fwx_Connect_Tcp) and every accepted connection
 * of a publishing rule (fwx_AcceptedConnection), attaches a data filter to each, passes
 * the bytes through unchanged, and when the connection is over traces how many bytes
 * went each way:
 *
 *   fwx-filter bytecount: connection done: 78 bytes client->server, 612 server->client
 *
 * Trace lines go to OutputDebugString (shown by Wine with WINEDEBUG=+debugstr) and, when
 * the environment variable FWX_FILTER_TRACE is non-empty, to stderr as well.
 *
 * One file, no helper library: the COM plumbing (DllGetClassObject, the class factory,
 * DllCanUnloadNow) is at the end. docs/writing-filters.md explains every rule this file
 * follows; build it with the Makefile next to it.
 *
 * The objects, in lifecycle order:
 *   Filter         IFWXFilter         one per DLL: FilterInit, AttachToSession
 *   SessionFilter  IFWXSessionFilter  one per session: attaches a DataFilter per connection
 *   DataFilter     IFWXDataFilter +   one per connection: the pump
 *                  IFWXIOCompletion
 */
#define COBJMACROS
#define CONST_VTABLE           /* our vtables are const, as the host never changes them */
#define WIN32_LEAN_AND_MEAN
#include <winsock2.h>          /* Winsock 2 before <windows.h>, then the FWX header */
#include <windows.h>
#include <objbase.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "wspfwext.h"

/* Our class. Make a new GUID for a filter of your own (uuidgen). */
/* {81890CB5-BA1B-4B99-A011-536CDCF48D34} */
static const CLSID CLSID_ByteCount =
    { 0x81890cb5, 0xba1b, 0x4b99, { 0xa0, 0x11, 0x53, 0x6c, 0xdc, 0xf4, 0x8d, 0x34 } };

#define BYTECOUNT_EVENTS (fwx_Connect_Tcp | fwx_AcceptedConnection | FWX_ALL_SOURCES)

static LONG object_count;      /* live objects, for DllCanUnloadNow */

static void trace(const char *fmt, ...)
{
    char line[256];
    char flag[2];
    va_list args;
    int n = snprintf(line, sizeof(line), "fwx-filter bytecount: ");

    va_start(args, fmt);
    vsnprintf(line + n, sizeof(line) - n - 1, fmt, args);
    va_end(args);
    strcat(line, "\n");
    OutputDebugStringA(line);
    if (GetEnvironmentVariableA("FWX_FILTER_TRACE", flag, sizeof(flag)) > 0) {
        fputs(line, stderr);
        fflush(stderr);
    }
}

static void *alloc_zeroed(SIZE_T size)
{
    return HeapAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, size);
}

static HRESULT session_filter_create(IFWXSessionFilter **out);
static HRESULT data_filter_create(IFWXDataFilter **out);

/* ============================================================================= Filter */

typedef struct {
    IFWXFilter          IFWXFilter_iface;
    LONG                refs;
    FwxFilterHookEvents hooks;   /* FilterInit hands the host this member's address */
} Filter;

static Filter *impl_from_IFWXFilter(IFWXFilter *iface)
{
    return CONTAINING_RECORD(iface, Filter, IFWXFilter_iface);
}

static HRESULT STDMETHODCALLTYPE Filter_QueryInterface(IFWXFilter *iface, REFIID riid, void **ppv)
{
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
        HeapFree(GetProcessHeap(), 0, filter);
        InterlockedDecrement(&object_count);
    }
    return refs;
}

/* The global hook events: the host copies the structure, and never frees it. */
static HRESULT STDMETHODCALLTYPE Filter_FilterInit(IFWXFilter *iface, IFWXFirewall *firewall,
                                                   PFwxFilterHookEvents *ppHooks)
{
    Filter *filter = impl_from_IFWXFilter(iface);

    filter->hooks.dwGlobalEvents = BYTECOUNT_EVENTS;
    filter->hooks.dwNumPortRanges = 0;
    filter->hooks.PortRangeEvents = NULL;
    *ppHooks = &filter->hooks;
    trace("FilterInit");
    return S_OK;
}

static HRESULT STDMETHODCALLTYPE Filter_FilterShutdown(IFWXFilter *iface)
{
    trace("FilterShutdown");
    return S_OK;
}

/* The per-session hook events must come from CoTaskMemAlloc: the host frees them with
 * CoTaskMemFree. (Returning NULL would also do: it means "the global ones".) */
static HRESULT STDMETHODCALLTYPE Filter_AttachToSession(IFWXFilter *iface, IFWXSession *session,
                                                        IFWXSessionFilter **ppSessionFilter,
                                                        PFwxFilterHookEvents *ppHooks)
{
    Filter *filter = impl_from_IFWXFilter(iface);
    FwxFilterHookEvents *hooks = CoTaskMemAlloc(sizeof(*hooks));
    HRESULT hr;

    *ppSessionFilter = NULL;
    *ppHooks = NULL;
    if (!hooks)
        return E_OUTOFMEMORY;
    *hooks = filter->hooks;
    hr = session_filter_create(ppSessionFilter);
    if (FAILED(hr)) {
        CoTaskMemFree(hooks);
        return hr;
    }
    *ppHooks = hooks;
    return S_OK;
}

static const IFWXFilterVtbl filter_vtbl = {
    Filter_QueryInterface, Filter_AddRef, Filter_Release,
    Filter_FilterInit, Filter_FilterShutdown, Filter_AttachToSession,
};

/* ============================================================================= SessionFilter */

typedef struct {
    IFWXSessionFilter IFWXSessionFilter_iface;
    LONG              refs;
} SessionFilter;

static SessionFilter *impl_from_IFWXSessionFilter(IFWXSessionFilter *iface)
{
    return CONTAINING_RECORD(iface, SessionFilter, IFWXSessionFilter_iface);
}

static HRESULT STDMETHODCALLTYPE SessionFilter_QueryInterface(IFWXSessionFilter *iface, REFIID riid,
                                                              void **ppv)
{
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
        HeapFree(GetProcessHeap(), 0, sf);
        InterlockedDecrement(&object_count);
    }
    return refs;
}

/* Runs on any worker thread, possibly on two at once for one session. The connection
 * keeps the data filter alive once attached, so our own reference goes at once. */
static HRESULT STDMETHODCALLTYPE SessionFilter_FirewallEventHandler(IFWXSessionFilter *iface,
                                                                    const FirewallEvent *event)
{
    IFWXConnection *connection = NULL;
    IFWXDataFilter *df;
    HRESULT hr;

    if (event->EventType == fwx_Connect_Tcp)
        connection = event->Parameters.Connect.piConnection;
    else if (event->EventType == fwx_AcceptedConnection)
        connection = event->Parameters.Accept.piConnectionAccepted;
    if (!connection)
        return S_OK;   /* other events (fwx_ConnectionTerminating, ...) need nothing */

    hr = data_filter_create(&df);
    if (FAILED(hr))
        return hr;     /* failing the event fails the connection: better than unfiltered */
    hr = IFWXConnection_AttachDataFilter(connection, df, fwx_dfpc_Middle, NULL);
    if (FAILED(hr))
        trace("AttachDataFilter failed: 0x%08lx", (unsigned long)hr);
    IFWXDataFilter_Release(df);
    return S_OK;
}

static HRESULT STDMETHODCALLTYPE SessionFilter_Detach(IFWXSessionFilter *iface)
{
    return S_OK;       /* we hold nothing of the session */
}

static const IFWXSessionFilterVtbl session_filter_vtbl = {
    SessionFilter_QueryInterface, SessionFilter_AddRef, SessionFilter_Release,
    SessionFilter_FirewallEventHandler, SessionFilter_Detach,
};

static HRESULT session_filter_create(IFWXSessionFilter **out)
{
    SessionFilter *sf = alloc_zeroed(sizeof(*sf));

    if (!sf)
        return E_OUTOFMEMORY;
    sf->IFWXSessionFilter_iface.lpVtbl = &session_filter_vtbl;
    sf->refs = 1;
    InterlockedIncrement(&object_count);
    *out = &sf->IFWXSessionFilter_iface;
    return S_OK;
}

/* ============================================================================= DataFilter */

/* The internal socket faces the client (or the previous filter of the chain), the
 * external one the server (or the next filter). UserData of each operation: the side the
 * bytes were read from, plus IO_SEND for the Send of those bytes to the other side. */
enum { INTERNAL = 0, EXTERNAL = 1, IO_SEND = 2 };

typedef struct {
    IFWXDataFilter   IFWXDataFilter_iface;
    IFWXIOCompletion IFWXIOCompletion_iface;
    LONG             refs;
    CRITICAL_SECTION lock;        /* guards sockets[]: Detach races the completions */
    IFWXSocket      *sockets[2];  /* from SetSockets until Detach */
    ULONGLONG        bytes[2];    /* read from each side; each written by one chain only */
} DataFilter;

static DataFilter *impl_from_IFWXDataFilter(IFWXDataFilter *iface)
{
    return CONTAINING_RECORD(iface, DataFilter, IFWXDataFilter_iface);
}

static DataFilter *impl_from_IFWXIOCompletion(IFWXIOCompletion *iface)
{
    return CONTAINING_RECORD(iface, DataFilter, IFWXIOCompletion_iface);
}

static HRESULT df_query(DataFilter *df, REFIID riid, void **ppv)
{
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

static ULONG df_release(DataFilter *df)
{
    LONG refs = InterlockedDecrement(&df->refs);

    if (refs == 0) {
        /* Every operation has completed (each held a reference): the counts are final. */
        trace("connection done: %I64u bytes client->server, %I64u server->client",
              df->bytes[INTERNAL], df->bytes[EXTERNAL]);
        if (df->sockets[INTERNAL])      /* only if the host never called Detach */
            IFWXSocket_Release(df->sockets[INTERNAL]);
        if (df->sockets[EXTERNAL])
            IFWXSocket_Release(df->sockets[EXTERNAL]);
        DeleteCriticalSection(&df->lock);
        HeapFree(GetProcessHeap(), 0, df);
        InterlockedDecrement(&object_count);
    }
    return refs;
}

/* The socket on SIDE with a reference of our own, or NULL after Detach. Never call the
 * host while holding our lock (AddRef excepted): keep the reference instead. */
static IFWXSocket *df_socket(DataFilter *df, int side)
{
    IFWXSocket *socket;

    EnterCriticalSection(&df->lock);
    socket = df->sockets[side];
    if (socket)
        IFWXSocket_AddRef(socket);
    LeaveCriticalSection(&df->lock);
    return socket;
}

/* Reads from FROM. A NULL buffer lets the host supply one: usually the very buffer the
 * previous stage sent, so nothing is copied. The completion comes later, never inside
 * this call, on a worker thread. */
static void pump_recv(DataFilter *df, int from)
{
    IFWXSocket *socket = df_socket(df, from);

    if (socket) {
        if (FAILED(IFWXSocket_Recv(socket, NULL, &df->IFWXIOCompletion_iface, from)))
            IFWXSocket_Close(socket, TRUE);   /* no completion will come: abort */
        IFWXSocket_Release(socket);
    }
}

/* Ends the other side's direction: after a half-close (abort = FALSE) or a failure. */
static void pump_close(DataFilter *df, int side, BOOL abort)
{
    IFWXSocket *socket = df_socket(df, side);

    if (socket) {
        if (abort)
            IFWXSocket_Close(socket, TRUE);
        else
            IFWXSocket_Shutdown(socket, FALSE);
        IFWXSocket_Release(socket);
    }
}

static HRESULT STDMETHODCALLTYPE Completion_CompleteAsyncIO(IFWXIOCompletion *iface, BOOL fSuccess,
                                                            DWORD Win32ErrorCode, IFWXIOBuffer *pIOBuffer,
                                                            UserContextType UserData,
                                                            LPSOCKADDR ExternalAddress,
                                                            INT ExternalAddressLength)
{
    DataFilter *df = impl_from_IFWXIOCompletion(iface);
    int from = (int)(UserData & 1), to = 1 - from;
    DWORD allocated, size;
    IFWXSocket *socket;

    if (UserData & IO_SEND) {
        /* The other side took the bytes: only now read more (one read in flight per
         * direction is the flow control). A failure aborts the connection. */
        if (fSuccess)
            pump_recv(df, from);
        else
            pump_close(df, from, TRUE);
        return S_OK;
    }
    if (!fSuccess || !pIOBuffer || FAILED(IFWXIOBuffer_GetBufferSizes(pIOBuffer, &allocated, &size))) {
        pump_close(df, to, TRUE);         /* reset, or the host is tearing down */
        return S_OK;
    }
    if (size == 0) {                      /* 0 bytes: FROM half-closed; pass it on */
        pump_close(df, to, FALSE);
        return S_OK;
    }
    df->bytes[from] += size;
    socket = df_socket(df, to);
    if (socket) {
        /* Send takes its own reference on the buffer; we need none. */
        if (FAILED(IFWXSocket_Send(socket, pIOBuffer, &df->IFWXIOCompletion_iface, from | IO_SEND)))
            IFWXSocket_Close(socket, TRUE);
        IFWXSocket_Release(socket);
    }
    return S_OK;
}

/* SetSockets is the signal to start: one Recv on each side. */
static HRESULT STDMETHODCALLTYPE DataFilter_SetSockets(IFWXDataFilter *iface, IFWXSocket *internal,
                                                       IFWXSocket *external, IFWXConnection *connection,
                                                       IUnknown *context)
{
    DataFilter *df = impl_from_IFWXDataFilter(iface);

    if (!internal || !external)
        return E_INVALIDARG;
    IFWXSocket_AddRef(internal);
    IFWXSocket_AddRef(external);
    EnterCriticalSection(&df->lock);
    df->sockets[INTERNAL] = internal;
    df->sockets[EXTERNAL] = external;
    LeaveCriticalSection(&df->lock);
    pump_recv(df, INTERNAL);
    pump_recv(df, EXTERNAL);
    return S_OK;
}

/* The connection is over: drop every reference we hold, or the sockets (which hold us
 * through pending operations) and we would keep each other alive. Pending operations
 * then complete with fSuccess = FALSE and find no sockets left. */
static HRESULT STDMETHODCALLTYPE DataFilter_Detach(IFWXDataFilter *iface)
{
    DataFilter *df = impl_from_IFWXDataFilter(iface);
    IFWXSocket *internal, *external;

    EnterCriticalSection(&df->lock);
    internal = df->sockets[INTERNAL];
    external = df->sockets[EXTERNAL];
    df->sockets[INTERNAL] = df->sockets[EXTERNAL] = NULL;
    LeaveCriticalSection(&df->lock);
    if (internal)
        IFWXSocket_Release(internal);
    if (external)
        IFWXSocket_Release(external);
    return S_OK;
}

static HRESULT STDMETHODCALLTYPE DataFilter_QueryInterface(IFWXDataFilter *iface, REFIID riid, void **ppv)
{
    return df_query(impl_from_IFWXDataFilter(iface), riid, ppv);
}

static ULONG STDMETHODCALLTYPE DataFilter_AddRef(IFWXDataFilter *iface)
{
    return InterlockedIncrement(&impl_from_IFWXDataFilter(iface)->refs);
}

static ULONG STDMETHODCALLTYPE DataFilter_Release(IFWXDataFilter *iface)
{
    return df_release(impl_from_IFWXDataFilter(iface));
}

static HRESULT STDMETHODCALLTYPE Completion_QueryInterface(IFWXIOCompletion *iface, REFIID riid, void **ppv)
{
    return df_query(impl_from_IFWXIOCompletion(iface), riid, ppv);
}

static ULONG STDMETHODCALLTYPE Completion_AddRef(IFWXIOCompletion *iface)
{
    return InterlockedIncrement(&impl_from_IFWXIOCompletion(iface)->refs);
}

static ULONG STDMETHODCALLTYPE Completion_Release(IFWXIOCompletion *iface)
{
    return df_release(impl_from_IFWXIOCompletion(iface));
}

static const IFWXDataFilterVtbl data_filter_vtbl = {
    DataFilter_QueryInterface, DataFilter_AddRef, DataFilter_Release,
    DataFilter_SetSockets, DataFilter_Detach,
};

static const IFWXIOCompletionVtbl completion_vtbl = {
    Completion_QueryInterface, Completion_AddRef, Completion_Release,
    Completion_CompleteAsyncIO,
};

static HRESULT data_filter_create(IFWXDataFilter **out)
{
    DataFilter *df = alloc_zeroed(sizeof(*df));

    if (!df)
        return E_OUTOFMEMORY;
    df->IFWXDataFilter_iface.lpVtbl = &data_filter_vtbl;
    df->IFWXIOCompletion_iface.lpVtbl = &completion_vtbl;
    df->refs = 1;
    InitializeCriticalSection(&df->lock);
    InterlockedIncrement(&object_count);
    *out = &df->IFWXDataFilter_iface;
    return S_OK;
}

/* ============================================================================= COM plumbing */

/* One static class factory for our one class; it is not counted as an object. */
static HRESULT STDMETHODCALLTYPE Factory_QueryInterface(IClassFactory *iface, REFIID riid, void **ppv)
{
    if (IsEqualIID(riid, &IID_IUnknown) || IsEqualIID(riid, &IID_IClassFactory)) {
        *ppv = iface;
        return S_OK;
    }
    *ppv = NULL;
    return E_NOINTERFACE;
}

static ULONG STDMETHODCALLTYPE Factory_AddRef(IClassFactory *iface)
{
    return 2;
}

static ULONG STDMETHODCALLTYPE Factory_Release(IClassFactory *iface)
{
    return 1;
}

static HRESULT STDMETHODCALLTYPE Factory_CreateInstance(IClassFactory *iface, IUnknown *outer,
                                                        REFIID riid, void **ppv)
{
    Filter *filter;
    HRESULT hr;

    *ppv = NULL;
    if (outer)
        return CLASS_E_NOAGGREGATION;
    if (!(filter = alloc_zeroed(sizeof(*filter))))
        return E_OUTOFMEMORY;
    filter->IFWXFilter_iface.lpVtbl = &filter_vtbl;
    filter->refs = 1;
    InterlockedIncrement(&object_count);
    hr = IFWXFilter_QueryInterface(&filter->IFWXFilter_iface, riid, ppv);
    IFWXFilter_Release(&filter->IFWXFilter_iface);
    return hr;
}

static HRESULT STDMETHODCALLTYPE Factory_LockServer(IClassFactory *iface, BOOL lock)
{
    if (lock)
        InterlockedIncrement(&object_count);
    else
        InterlockedDecrement(&object_count);
    return S_OK;
}

static const IClassFactoryVtbl factory_vtbl = {
    Factory_QueryInterface, Factory_AddRef, Factory_Release,
    Factory_CreateInstance, Factory_LockServer,
};
static IClassFactory factory = { &factory_vtbl };

/* The two exports the host uses, named in bytecount.def. */
STDAPI DllGetClassObject(REFCLSID rclsid, REFIID riid, LPVOID *ppv)
{
    *ppv = NULL;
    if (!IsEqualCLSID(rclsid, &CLSID_ByteCount))
        return CLASS_E_CLASSNOTAVAILABLE;
    return IClassFactory_QueryInterface(&factory, riid, ppv);
}

STDAPI DllCanUnloadNow(void)
{
    return object_count == 0 ? S_OK : S_FALSE;
}
