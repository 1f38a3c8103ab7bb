/*
 * sessionlog.c - a passthrough filter that writes down every FWX call it receives, so
 * that tests can check the order in which the host drives a filter. The data pump is the
 * one of passthrough.c (read that file first); this file adds the log.
 *
 * This file owns the filter's three objects (Filter, SessionFilter, DataFilter) and the
 * log. The log file is named by the environment variable FWX_SESSIONLOG_FILE (default
 * "sessionlog.txt", relative to the host's working directory), read at FilterInit. It is
 * opened in append mode for each line, so every line is on disk before the call that
 * produced it goes on, and lines from concurrent calls never interleave.
 *
 * Log format: one line per call, LF-terminated, written when the call arrives (before
 * the filter acts on it), in arrival order. IUnknown calls are not logged.
 *   FilterInit
 *   AttachToSession
 *   FirewallEventHandler EVENT     EVENT: fwx_Connect_Tcp, fwx_AcceptedConnection,
 *                                  fwx_ConnectionTerminating, or any other event's
 *                                  fwx_ name; 0xXXXXXXXX for a value we do not know
 *   SetSockets
 *   CompleteAsyncIO OP SIDE RESULT OP: recv or send; SIDE: internal or external, the
 *                                  socket the operation was posted on; RESULT:
 *                                    ok N       recv of N > 0 data bytes
 *                                    eof        recv of 0 bytes (peer half-closed)
 *                                    ok         send
 *                                    error N    fSuccess FALSE, N = Win32 error (decimal)
 *                                    nobuffer   recv reported success without a buffer
 *   DataFilter::Detach
 *   SessionFilter::Detach
 *   FilterShutdown
 * For example, one published connection:
 *   FilterInit / AttachToSession / FirewallEventHandler fwx_AcceptedConnection /
 *   SetSockets / CompleteAsyncIO recv internal ok 18 / CompleteAsyncIO send external ok /
 *   ... / CompleteAsyncIO recv internal eof / ... / FirewallEventHandler
 *   fwx_ConnectionTerminating / DataFilter::Detach / SessionFilter::Detach / FilterShutdown
 *
 * The per-session hook events add fwx_ConnectionTerminating to the global ones, so that
 * the session filter hears about it whatever the host's delivery rule.
 */
#define COBJMACROS
#define CONST_VTABLE
#include "fltbase.h"

#include <stdarg.h>
#include <string.h>

/* {6CEF27C7-D56E-46BD-8850-17B6D178E6D0} */
const CLSID fwx_filter_clsid =
    { 0x6cef27c7, 0xd56e, 0x46bd, { 0x88, 0x50, 0x17, 0xb6, 0xd1, 0x78, 0xe6, 0xd0 } };
const char fwx_filter_name[] = "sessionlog";

#define SESSIONLOG_EVENTS (fwx_Connect_Tcp | fwx_AcceptedConnection | FWX_ALL_SOURCES)
#define SESSIONLOG_SESSION_EVENTS (SESSIONLOG_EVENTS | fwx_ConnectionTerminating)

/* ==================================================================== the log */

/* Shared by every object of the filter. Reference-counted, because session and data
 * filters may still be detached (and log it) after the filter object is gone. */
typedef struct {
    LONG             refs;
    CRITICAL_SECTION lock;   /* one line at a time; never held while calling the host */
    char            *path;
} SessionLog;

static SessionLog *log_create(void)
{
    SessionLog *log = fwx_alloc(sizeof(*log));

    if (!log)
        return NULL;
    log->path = fwx_getenv("FWX_SESSIONLOG_FILE", "sessionlog.txt");
    if (!log->path) {
        fwx_free(log);
        return NULL;
    }
    log->refs = 1;
    InitializeCriticalSection(&log->lock);
    return log;
}

static SessionLog *log_addref(SessionLog *log)
{
    InterlockedIncrement(&log->refs);
    return log;
}

static void log_release(SessionLog *log)
{
    if (log && InterlockedDecrement(&log->refs) == 0) {
        DeleteCriticalSection(&log->lock);
        fwx_free(log->path);
        fwx_free(log);
    }
}

static void log_line(SessionLog *log, const char *fmt, ...) __attribute__((format(__MINGW_PRINTF_FORMAT, 2, 3)));

static void log_line(SessionLog *log, const char *fmt, ...)
{
    char line[256];
    va_list args;
    HANDLE file;
    DWORD written;
    int len;

    va_start(args, fmt);
    len = vsnprintf(line, sizeof(line) - 1, fmt, args);
    va_end(args);
    if (len < 0 || len > (int)sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';

    EnterCriticalSection(&log->lock);
    file = CreateFileA(log->path, FILE_APPEND_DATA, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL,
                       OPEN_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
    if (file != INVALID_HANDLE_VALUE) {
        WriteFile(file, line, (DWORD)len, &written, NULL);
        CloseHandle(file);
    }
    LeaveCriticalSection(&log->lock);
    if (file == INVALID_HANDLE_VALUE)
        fwx_trace("cannot open %s: error %lu", log->path, (unsigned long)GetLastError());
}

static const char *event_name(FwxFirewallEventType type)
{
    switch (type) {
    case fwx_Connect_Tcp:           return "fwx_Connect_Tcp";
    case fwx_Udp_Destination:       return "fwx_Udp_Destination";
    case fwx_Bind_Tcp:              return "fwx_Bind_Tcp";
    case fwx_Bind_Udp:              return "fwx_Bind_Udp";
    case fwx_Listen:                return "fwx_Listen";
    case fwx_AcceptedConnection:    return "fwx_AcceptedConnection";
    case fwx_GetHostByName:         return "fwx_GetHostByName";
    case fwx_GetHostByAddr:         return "fwx_GetHostByAddr";
    case fwx_ConnectionTerminating: return "fwx_ConnectionTerminating";
    case fwx_EstablishedConnection: return "fwx_EstablishedConnection";
    }
    return NULL;
}

static HRESULT session_filter_create(SessionLog *log, IFWXSession *session, IFWXSessionFilter **out);
static HRESULT data_filter_create(SessionLog *log, IFWXDataFilter **out);

/* ==================================================================== Filter */

typedef struct {
    IFWXFilter          IFWXFilter_iface;
    LONG                refs;
    SessionLog         *log;        /* from FilterInit until the last Release */
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
        log_release(filter->log);
        fwx_free(filter);
        fwx_object_destroyed();
    }
    return refs;
}

static HRESULT STDMETHODCALLTYPE Filter_FilterInit(IFWXFilter *iface, IFWXFirewall *firewall,
                                                   PFwxFilterHookEvents *ppHooks)
{
    Filter *filter = impl_from_IFWXFilter(iface);

    *ppHooks = NULL;
    if (!filter->log)
        filter->log = log_create();
    if (!filter->log) {
        fwx_trace("out of memory: filter disabled");
        return S_OK;
    }
    log_line(filter->log, "FilterInit");

    IFWXFirewall_AddRef(firewall);
    filter->firewall = firewall;
    filter->hooks.dwGlobalEvents = SESSIONLOG_EVENTS;
    filter->hooks.dwNumPortRanges = 0;
    filter->hooks.PortRangeEvents = NULL;
    *ppHooks = &filter->hooks;
    return S_OK;
}

static HRESULT STDMETHODCALLTYPE Filter_FilterShutdown(IFWXFilter *iface)
{
    Filter *filter = impl_from_IFWXFilter(iface);
    IFWXFirewall *firewall = (IFWXFirewall *)InterlockedExchangePointer((void **)&filter->firewall, NULL);

    if (filter->log)
        log_line(filter->log, "FilterShutdown");
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
    if (!filter->log)   /* FilterInit failed: we registered no events */
        return E_UNEXPECTED;
    log_line(filter->log, "AttachToSession");

    hooks = CoTaskMemAlloc(sizeof(*hooks));
    if (!hooks)
        return E_OUTOFMEMORY;
    *hooks = filter->hooks;
    hooks->dwGlobalEvents = SESSIONLOG_SESSION_EVENTS;

    hr = session_filter_create(filter->log, session, ppSessionFilter);
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
    SessionLog       *log;
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
        if (sf->session)
            IFWXSession_Release(sf->session);
        log_release(sf->log);
        fwx_free(sf);
        fwx_object_destroyed();
    }
    return refs;
}

static HRESULT attach_pump(SessionFilter *sf, IFWXConnection *connection)
{
    IFWXDataFilter *df;
    HRESULT hr;

    if (!connection)
        return S_OK;
    hr = data_filter_create(sf->log, &df);
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
    const char *name = event_name(event->EventType);

    if (name)
        log_line(sf->log, "FirewallEventHandler %s", name);
    else
        log_line(sf->log, "FirewallEventHandler 0x%08lx", (unsigned long)event->EventType);

    switch (event->EventType) {
    case fwx_Connect_Tcp:
        return attach_pump(sf, event->Parameters.Connect.piConnection);
    case fwx_AcceptedConnection:
        return attach_pump(sf, event->Parameters.Accept.piConnectionAccepted);
    default:
        return S_OK;
    }
}

static HRESULT STDMETHODCALLTYPE SessionFilter_Detach(IFWXSessionFilter *iface)
{
    SessionFilter *sf = impl_from_IFWXSessionFilter(iface);
    IFWXSession *session;

    log_line(sf->log, "SessionFilter::Detach");
    session = (IFWXSession *)InterlockedExchangePointer((void **)&sf->session, NULL);
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

static HRESULT session_filter_create(SessionLog *log, IFWXSession *session, IFWXSessionFilter **out)
{
    SessionFilter *sf = fwx_alloc(sizeof(*sf));

    if (!sf)
        return E_OUTOFMEMORY;
    sf->IFWXSessionFilter_iface.lpVtbl = &session_filter_vtbl;
    sf->refs = 1;
    sf->log = log_addref(log);
    if (session)
        IFWXSession_AddRef(session);
    sf->session = session;
    fwx_object_created();
    *out = &sf->IFWXSessionFilter_iface;
    return S_OK;
}

/* ==================================================================== DataFilter */

enum side { SIDE_INTERNAL = 0, SIDE_EXTERNAL = 1 };
#define OTHER_SIDE(s) ((enum side)(1 - (s)))
static const char *const side_name[] = { "internal", "external" };

#define IO_SEND        2
#define IO_TAG(from, op) ((UserContextType)((from) | (op)))
#define IO_FROM(tag)   ((enum side)((tag) & 1))

typedef struct {
    IFWXDataFilter   IFWXDataFilter_iface;
    IFWXIOCompletion IFWXIOCompletion_iface;
    LONG             refs;
    SessionLog      *log;
    CRITICAL_SECTION lock;         /* guards the fields below: Detach races completions */
    BOOL             detached;
    IFWXSocket      *sockets[2];
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
        log_release(df->log);
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

static void on_received(DataFilter *df, enum side from, BOOL ok, DWORD error, IFWXIOBuffer *buffer)
{
    const char *side = side_name[from];
    DWORD allocated, size;

    if (!ok) {
        log_line(df->log, "CompleteAsyncIO recv %s error %lu", side, (unsigned long)error);
        pump_abort(df, OTHER_SIDE(from));
    }
    else if (!buffer || FAILED(IFWXIOBuffer_GetBufferSizes(buffer, &allocated, &size))) {
        log_line(df->log, "CompleteAsyncIO recv %s nobuffer", side);
        pump_abort(df, OTHER_SIDE(from));
    }
    else if (size == 0) {
        log_line(df->log, "CompleteAsyncIO recv %s eof", side);
        pump_shutdown(df, OTHER_SIDE(from));
    }
    else {
        log_line(df->log, "CompleteAsyncIO recv %s ok %lu", side, (unsigned long)size);
        pump_send(df, from, buffer);
    }
}

/* A send completion is reported for the socket it was posted on: the other side. */
static void on_sent(DataFilter *df, enum side from, BOOL ok, DWORD error)
{
    const char *side = side_name[OTHER_SIDE(from)];

    if (!ok) {
        log_line(df->log, "CompleteAsyncIO send %s error %lu", side, (unsigned long)error);
        pump_abort(df, from);
    }
    else {
        log_line(df->log, "CompleteAsyncIO send %s ok", side);
        pump_recv(df, from);
    }
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

    log_line(df->log, "SetSockets");
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
    IFWXConnection *connection;

    log_line(df->log, "DataFilter::Detach");
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

static HRESULT data_filter_create(SessionLog *log, IFWXDataFilter **out)
{
    DataFilter *df = fwx_alloc(sizeof(*df));

    if (!df)
        return E_OUTOFMEMORY;
    df->IFWXDataFilter_iface.lpVtbl = &data_filter_vtbl;
    df->IFWXIOCompletion_iface.lpVtbl = &completion_vtbl;
    df->refs = 1;
    df->log = log_addref(log);
    InitializeCriticalSection(&df->lock);
    fwx_object_created();
    *out = &df->IFWXDataFilter_iface;
    return S_OK;
}
