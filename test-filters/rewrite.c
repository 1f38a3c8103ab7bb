/*
 * rewrite.c - a test filter that edits the stream: in the client-to-server direction it
 * replaces every occurrence of the token FROM by TO; server-to-client bytes pass
 * unchanged. FROM and TO come from the environment at FilterInit:
 *   FWX_REWRITE_FROM   default "ISA2000"            (empty: rewrite nothing)
 *   FWX_REWRITE_TO     default "fwxshim-on-linux"   (may be empty, shorter or longer)
 *
 * This file owns the filter's three objects (Filter, SessionFilter, DataFilter) and the
 * rewriting. It is passthrough.c plus the edit: read that file first; the comments here
 * are about what differs.
 *
 * A token may be split across two reads, so the outbound direction keeps a carry: the
 * longest tail of what it has seen that could still be the start of FROM (at most
 * len(FROM)-1 bytes). The carry is prepended to the next read, and sent as it is when
 * the client half-closes. A buffer received with Recv(NULL) belongs to the host and must
 * not be modified, so the rewritten bytes go into a new buffer from
 * IFWXFirewall::CreateBuffer, filled with Append.
 */
#define COBJMACROS
#define CONST_VTABLE
#include "fltbase.h"

#include <string.h>

/* {99B051EE-0EFE-4E39-9206-1FF00C65CF3F} */
const CLSID fwx_filter_clsid =
    { 0x99b051ee, 0x0efe, 0x4e39, { 0x92, 0x06, 0x1f, 0xf0, 0x0c, 0x65, 0xcf, 0x3f } };
const char fwx_filter_name[] = "rewrite";

#define REWRITE_EVENTS (fwx_Connect_Tcp | fwx_AcceptedConnection | FWX_ALL_SOURCES)

/* The token and its replacement. Set by FilterInit before any traffic can arrive and only
 * read afterwards; kept past FilterShutdown because data filters may outlive it. */
static char *rewrite_from, *rewrite_to;
static DWORD from_len, to_len;

static HRESULT session_filter_create(IFWXSession *session, IFWXFirewall *firewall, IFWXSessionFilter **out);
static HRESULT data_filter_create(IFWXFirewall *firewall, IFWXDataFilter **out);

/* ==================================================================== configuration */

static BOOL load_settings(void)
{
    char *from = fwx_getenv("FWX_REWRITE_FROM", "ISA2000");
    char *to = fwx_getenv("FWX_REWRITE_TO", "fwxshim-on-linux");

    if (!from || !to) {
        fwx_free(from);
        fwx_free(to);
        return FALSE;
    }
    fwx_free(rewrite_from);
    fwx_free(rewrite_to);
    rewrite_from = from;
    rewrite_to = to;
    from_len = (DWORD)strlen(from);
    to_len = (DWORD)strlen(to);
    fwx_trace("rewriting \"%s\" to \"%s\" client-to-server", from, to);
    return TRUE;
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
        fwx_trace("out of memory reading the settings: filter disabled");
        return S_OK;
    }
    IFWXFirewall_AddRef(firewall);
    filter->firewall = firewall;
    filter->hooks.dwGlobalEvents = REWRITE_EVENTS;
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

static HRESULT attach_rewriter(SessionFilter *sf, IFWXConnection *connection)
{
    IFWXFirewall *firewall;
    IFWXDataFilter *df;
    HRESULT hr;

    if (!connection)
        return S_OK;
    /* Our own reference, in case Detach runs meanwhile on another thread. */
    EnterCriticalSection(&sf->lock);
    firewall = sf->firewall;
    if (firewall)
        IFWXFirewall_AddRef(firewall);
    LeaveCriticalSection(&sf->lock);
    if (!firewall)
        return FWX_E_TERMINATING;

    hr = data_filter_create(firewall, &df);
    IFWXFirewall_Release(firewall);
    if (FAILED(hr))
        return hr;
    hr = IFWXConnection_AttachDataFilter(connection, df, fwx_dfpc_Middle, NULL);
    if (FAILED(hr))
        fwx_trace("AttachDataFilter failed: 0x%08lx", (unsigned long)hr);
    IFWXDataFilter_Release(df);
    return S_OK;
}

static HRESULT STDMETHODCALLTYPE SessionFilter_FirewallEventHandler(IFWXSessionFilter *iface,
                                                                    const FirewallEvent *event)
{
    SessionFilter *sf = impl_from_IFWXSessionFilter(iface);

    switch (event->EventType) {
    case fwx_Connect_Tcp:
        return attach_rewriter(sf, event->Parameters.Connect.piConnection);
    case fwx_AcceptedConnection:
        return attach_rewriter(sf, event->Parameters.Accept.piConnectionAccepted);
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
    CRITICAL_SECTION lock;         /* guards the fields up to connection: Detach races completions */
    BOOL             detached;
    IFWXSocket      *sockets[2];
    IFWXFirewall    *firewall;     /* for CreateBuffer; until Detach */
    IFWXConnection  *connection;
    /* Outbound state. Only outbound completions touch it, one at a time, so no lock. */
    BYTE            *carry;        /* from_len bytes: a tail that may begin FROM */
    DWORD            carry_len;
    BOOL             flushing;     /* the client half-closed; the last send is the carry */
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

static ULONG data_filter_release(DataFilter *df)
{
    LONG refs = InterlockedDecrement(&df->refs);

    if (refs == 0) {
        if (df->sockets[SIDE_INTERNAL])
            IFWXSocket_Release(df->sockets[SIDE_INTERNAL]);
        if (df->sockets[SIDE_EXTERNAL])
            IFWXSocket_Release(df->sockets[SIDE_EXTERNAL]);
        if (df->firewall)
            IFWXFirewall_Release(df->firewall);
        if (df->connection)
            IFWXConnection_Release(df->connection);
        DeleteCriticalSection(&df->lock);
        fwx_free(df->carry);
        fwx_free(df);
        fwx_object_destroyed();
    }
    return refs;
}

/* ---------------------------------------------------------------- the pump (as in passthrough.c) */

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

/* Our own trouble (no memory for a buffer): the connection cannot go on correctly. */
static void pump_fail(DataFilter *df, HRESULT hr)
{
    fwx_trace("rewriting failed: 0x%08lx; aborting the connection", (unsigned long)hr);
    pump_abort(df, SIDE_INTERNAL);
    pump_abort(df, SIDE_EXTERNAL);
}

/* ---------------------------------------------------------------- rewriting */

static HRESULT emit(IFWXIOBuffer *out, const BYTE *bytes, DWORD count, DWORD *total)
{
    ULONG written;

    *total += count;
    if (!out || count == 0)
        return S_OK;
    return IFWXIOBuffer_Append(out, bytes, count, &written);
}

/* Rewrites IN (N bytes) into OUT, or with OUT NULL only measures. *out_len gets the size
 * of the output, *consumed how much of IN it covers: the rest is a possible start of FROM
 * that must wait for more input. Literal bytes are appended in runs, not one by one. */
static HRESULT rewrite_scan(const BYTE *in, DWORD n, IFWXIOBuffer *out, DWORD *out_len, DWORD *consumed)
{
    DWORD i = 0, run = 0;
    HRESULT hr = S_OK;

    *out_len = 0;
    while (i < n && SUCCEEDED(hr)) {
        DWORD left = n - i;

        if (left >= from_len && memcmp(in + i, rewrite_from, from_len) == 0) {
            hr = emit(out, in + run, i - run, out_len);
            if (SUCCEEDED(hr))
                hr = emit(out, (const BYTE *)rewrite_to, to_len, out_len);
            i += from_len;
            run = i;
        }
        else if (left < from_len && memcmp(in + i, rewrite_from, left) == 0)
            break;
        else
            i++;
    }
    if (SUCCEEDED(hr))
        hr = emit(out, in + run, i - run, out_len);
    *consumed = i;
    return hr;
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

/* Rewrites the carry plus DATA into a new buffer (*out, NULL when all of it must wait)
 * and keeps the new carry. */
static HRESULT rewrite_chunk(DataFilter *df, const BYTE *data, DWORD size, IFWXIOBuffer **out)
{
    DWORD n = df->carry_len + size, out_len, consumed;
    BYTE *work = fwx_alloc(n);
    HRESULT hr;

    *out = NULL;
    if (!work)
        return E_OUTOFMEMORY;
    memcpy(work, df->carry, df->carry_len);
    memcpy(work + df->carry_len, data, size);

    rewrite_scan(work, n, NULL, &out_len, &consumed);
    hr = S_OK;
    if (out_len > 0) {
        hr = create_buffer(df, out_len, out);
        if (SUCCEEDED(hr))
            hr = rewrite_scan(work, n, *out, &out_len, &consumed);
    }
    if (SUCCEEDED(hr)) {
        df->carry_len = n - consumed;
        memcpy(df->carry, work + consumed, df->carry_len);
    }
    else if (*out) {
        IFWXIOBuffer_Release(*out);
        *out = NULL;
    }
    fwx_free(work);
    return hr;
}

/* Client bytes: rewrite and send. If everything went into the carry there is nothing to
 * send, so read on at once. */
static void outbound_data(DataFilter *df, IFWXIOBuffer *buffer)
{
    IFWXIOBuffer *out;
    BYTE *data;
    DWORD size;
    HRESULT hr;

    if (from_len == 0) {   /* nothing to look for */
        pump_send(df, SIDE_INTERNAL, buffer);
        return;
    }
    hr = IFWXIOBuffer_GetBufferAndSize(buffer, &data, &size);
    if (SUCCEEDED(hr))
        hr = rewrite_chunk(df, data, size, &out);
    if (FAILED(hr))
        pump_fail(df, hr);
    else if (out) {
        pump_send(df, SIDE_INTERNAL, out);
        IFWXIOBuffer_Release(out);
    }
    else
        pump_recv(df, SIDE_INTERNAL);
}

/* The client half-closed: whatever is in the carry was not FROM after all. Send it, and
 * pass the half-close on once it has gone. */
static void outbound_eof(DataFilter *df)
{
    IFWXIOBuffer *out;
    ULONG written;
    HRESULT hr;

    if (df->carry_len == 0) {
        pump_shutdown(df, SIDE_EXTERNAL);
        return;
    }
    hr = create_buffer(df, df->carry_len, &out);
    if (FAILED(hr)) {
        pump_fail(df, hr);
        return;
    }
    hr = IFWXIOBuffer_Append(out, df->carry, df->carry_len, &written);
    if (SUCCEEDED(hr)) {
        df->carry_len = 0;
        df->flushing = TRUE;
        pump_send(df, SIDE_INTERNAL, out);
    }
    else
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
    }
    else if (from == SIDE_INTERNAL && size == 0)
        outbound_eof(df);
    else if (from == SIDE_INTERNAL)
        outbound_data(df, buffer);
    else if (size == 0)
        pump_shutdown(df, SIDE_INTERNAL);
    else
        pump_send(df, SIDE_EXTERNAL, buffer);
}

static void on_sent(DataFilter *df, enum side from, BOOL ok, DWORD error)
{
    if (!ok) {
        if (error != ERROR_OPERATION_ABORTED)
            fwx_trace("send failed: error %lu", (unsigned long)error);
        pump_abort(df, from);
    }
    else if (from == SIDE_INTERNAL && df->flushing)
        pump_shutdown(df, SIDE_EXTERNAL);
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

static HRESULT STDMETHODCALLTYPE DataFilter_Detach(IFWXDataFilter *iface)
{
    DataFilter *df = impl_from_IFWXDataFilter(iface);
    IFWXSocket *internal, *external;
    IFWXFirewall *firewall;
    IFWXConnection *connection;

    EnterCriticalSection(&df->lock);
    df->detached = TRUE;
    internal = df->sockets[SIDE_INTERNAL];
    external = df->sockets[SIDE_EXTERNAL];
    firewall = df->firewall;
    connection = df->connection;
    df->sockets[SIDE_INTERNAL] = df->sockets[SIDE_EXTERNAL] = NULL;
    df->firewall = NULL;
    df->connection = NULL;
    LeaveCriticalSection(&df->lock);

    if (internal)
        IFWXSocket_Release(internal);
    if (external)
        IFWXSocket_Release(external);
    if (firewall)
        IFWXFirewall_Release(firewall);
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

static HRESULT data_filter_create(IFWXFirewall *firewall, IFWXDataFilter **out)
{
    DataFilter *df = fwx_alloc(sizeof(*df));

    if (!df)
        return E_OUTOFMEMORY;
    df->carry = fwx_alloc(from_len ? from_len : 1);
    if (!df->carry) {
        fwx_free(df);
        return E_OUTOFMEMORY;
    }
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
