/*
 * dnsguard.c - a UDP test filter: a DNS query guard in the spirit of ISA's DNS intrusion
 * detection filter. For every new UDP destination (fwx_Udp_Destination) it attaches a data
 * filter bound to that destination (AttachDataFilterWithDestination). The data filter
 * reads each datagram from the client side, parses it as a DNS query and either passes it
 * on unchanged or drops it (completes the Recv without sending, and reads the next one):
 *
 *   short       fewer than the 12 header bytes
 *   response    the QR bit is set: a client sends queries, not answers
 *   qdcount     not exactly one question
 *   records     answer, authority or additional records in a query other than one OPT
 *               record in the additional section (EDNS, as dig sends)
 *   label       a label longer than 63 bytes, a compression pointer, or a label
 *               running past the end of the datagram
 *   name-too-long  a question name longer than FWX_DNSGUARD_MAXNAME bytes (text form)
 *   truncated   the question's type and class do not fit
 *
 * Datagrams from the server side (the answers) pass unchanged. Each drop appends one line
 * to the log file:  "drop REASON len=N"  and a line is traced as well. With
 * FWX_DNSGUARD_EXTADDR=1 every completed Recv also logs the ExternalAddress the host
 * passed:  "recv internal|external ext=IP:PORT"  or  "... ext=NULL".
 *
 * With FWX_DNSGUARD_TCP=1 it also attaches the same data filter, without the query
 * checks, to accepted TCP connections (fwx_AcceptedConnection), so that a test can see
 * the ExternalAddress of TCP receives, which must be NULL.
 *
 * It also hooks fwx_Bind_Udp and logs "bind ADDR attach=HRESULT": the bound address and
 * what an AttachDataFilter in that event returned. With FWX_DNSGUARD_DENY=1 it denies
 * every destination (IFWXUdpDestination::Deny) and logs "deny HRESULT" instead of
 * attaching a data filter.
 *
 * Environment: FWX_DNSGUARD_LOG (default dnsguard.txt), FWX_DNSGUARD_MAXNAME (default
 * 253), FWX_DNSGUARD_EXTADDR, FWX_DNSGUARD_TCP, FWX_DNSGUARD_DENY (default unset).
 *
 * The pump: each direction has one Recv in flight; a passed datagram is sent (SendTo with
 * the ExternalAddress it came with; Send for TCP) out of the
 * other socket and the next Recv is posted when the Send completes; a dropped one posts
 * the next Recv at once. Datagram boundaries are the host's: one Recv, one datagram.
 */
#define COBJMACROS
#define CONST_VTABLE
#include "fltbase.h"

/* {3E9A7C21-6D4B-4F0E-A2C8-5B1D9E7F4A63} */
const CLSID fwx_filter_clsid =
    { 0x3e9a7c21, 0x6d4b, 0x4f0e, { 0xa2, 0xc8, 0x5b, 0x1d, 0x9e, 0x7f, 0x4a, 0x63 } };
const char fwx_filter_name[] = "dnsguard";

#define DNSGUARD_EVENTS (fwx_Udp_Destination | fwx_Bind_Udp | FWX_ALL_SOURCES)

static CRITICAL_SECTION log_lock;
static char *log_path;
static unsigned max_name = 253;
static BOOL log_extaddr;
static BOOL hook_tcp;
static BOOL deny_all;

static void log_line(const char *fmt, ...) __attribute__((format(__MINGW_PRINTF_FORMAT, 1, 2)));
static void log_line(const char *fmt, ...)
{
    char line[256];
    va_list ap;
    HANDLE file;
    DWORD written;
    int len;

    va_start(ap, fmt);
    len = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (len < 0 || len > (int)sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    if (!log_path)
        return;
    /* One appending write per line: several instances (two copies of this DLL in one
     * chain) may share the file. */
    EnterCriticalSection(&log_lock);
    file = CreateFileA(log_path, FILE_APPEND_DATA, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL,
                       OPEN_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
    if (file != INVALID_HANDLE_VALUE) {
        WriteFile(file, line, (DWORD)len, &written, NULL);
        CloseHandle(file);
    }
    LeaveCriticalSection(&log_lock);
}

/* ==================================================================== DNS */

static unsigned get16(const BYTE *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

/* NULL if the query may pass, else the reason to drop it. */
static const char *check_query(const BYTE *p, DWORD len)
{
    DWORD off = 12, name_len = 0;
    unsigned qd, an, ns, ar;

    if (len < 12)
        return "short";
    if (p[2] & 0x80)
        return "response";
    qd = get16(p + 4);
    an = get16(p + 6);
    ns = get16(p + 8);
    ar = get16(p + 10);
    if (qd != 1)
        return "qdcount";
    if (an || ns || ar > 1)
        return "records";
    for (;;) {
        if (off >= len)
            return "label";
        BYTE l = p[off++];
        if (l == 0)
            break;
        if (l & 0xc0)
            return "label";       /* compression pointer or reserved label type */
        if (off + l > len)
            return "label";
        /* Text form: labels plus the dots between them. */
        name_len += l + (name_len ? 1 : 0);
        if (name_len > max_name)
            return "name-too-long";
        off += l;
    }
    if (off + 4 > len)
        return "truncated";
    return NULL;
}

static void format_addr(const SOCKADDR *sa, INT len, char *buf, size_t size)
{
    if (!sa) {
        snprintf(buf, size, "NULL");
    } else if (sa->sa_family == AF_INET && len >= (INT)sizeof(SOCKADDR_IN)) {
        const SOCKADDR_IN *in = (const SOCKADDR_IN *)sa;
        const BYTE *a = (const BYTE *)&in->sin_addr;
        snprintf(buf, size, "%u.%u.%u.%u:%u", a[0], a[1], a[2], a[3], ntohs(in->sin_port));
    } else {
        snprintf(buf, size, "family%u/len%d", (unsigned)sa->sa_family, len);
    }
}

/* ==================================================================== Filter */

typedef struct {
    IFWXFilter          IFWXFilter_iface;
    LONG                refs;
    FwxFilterHookEvents hooks;
} Filter;

static HRESULT session_filter_create(IFWXSessionFilter **out);
static HRESULT data_filter_create(IFWXDataFilter **out, BOOL tcp);

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
        fwx_free(filter);
        fwx_object_destroyed();
    }
    return refs;
}

static HRESULT STDMETHODCALLTYPE Filter_FilterInit(IFWXFilter *iface, IFWXFirewall *firewall,
                                                   PFwxFilterHookEvents *ppHooks)
{
    Filter *filter = impl_from_IFWXFilter(iface);
    char *v;

    InitializeCriticalSection(&log_lock);
    log_path = fwx_getenv("FWX_DNSGUARD_LOG", "dnsguard.txt");
    if ((v = fwx_getenv("FWX_DNSGUARD_MAXNAME", "253"))) {
        int n = atoi(v);
        if (n > 0 && n <= 255)
            max_name = (unsigned)n;
        fwx_free(v);
    }
    if ((v = fwx_getenv("FWX_DNSGUARD_EXTADDR", ""))) {
        log_extaddr = v[0] == '1';
        fwx_free(v);
    }
    if ((v = fwx_getenv("FWX_DNSGUARD_DENY", ""))) {
        deny_all = v[0] == '1';
        fwx_free(v);
    }
    if ((v = fwx_getenv("FWX_DNSGUARD_TCP", ""))) {
        hook_tcp = v[0] == '1';
        fwx_free(v);
    }
    filter->hooks.dwGlobalEvents = DNSGUARD_EVENTS | (hook_tcp ? fwx_AcceptedConnection : 0);
    filter->hooks.dwNumPortRanges = 0;
    filter->hooks.PortRangeEvents = NULL;
    *ppHooks = &filter->hooks;
    log_line("init maxname=%u", max_name);
    return S_OK;
}

static HRESULT STDMETHODCALLTYPE Filter_FilterShutdown(IFWXFilter *iface)
{
    return S_OK;
}

static HRESULT STDMETHODCALLTYPE Filter_AttachToSession(IFWXFilter *iface, IFWXSession *session,
                                                        IFWXSessionFilter **ppSessionFilter,
                                                        PFwxFilterHookEvents *ppHooks)
{
    *ppHooks = NULL;    /* the global hook events */
    return session_filter_create(ppSessionFilter);
}

static const IFWXFilterVtbl filter_vtbl = {
    Filter_QueryInterface, Filter_AddRef, Filter_Release,
    Filter_FilterInit, Filter_FilterShutdown, Filter_AttachToSession,
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
        fwx_free(sf);
        fwx_object_destroyed();
    }
    return refs;
}

/* A new destination: a guard bound to it, which goes when the destination expires. */
static HRESULT STDMETHODCALLTYPE SessionFilter_FirewallEventHandler(IFWXSessionFilter *iface,
                                                                    const FirewallEvent *event)
{
    const FwxUdpDestination *d = &event->Parameters.UdpDest;
    IFWXDataFilter *df;
    HRESULT hr;

    if (event->EventType == fwx_AcceptedConnection && event->Parameters.Accept.piConnectionAccepted) {
        if (FAILED(hr = data_filter_create(&df, TRUE)))
            return hr;
        hr = IFWXConnection_AttachDataFilter(event->Parameters.Accept.piConnectionAccepted, df,
                                             fwx_dfpc_Middle, NULL);
        IFWXDataFilter_Release(df);
        return S_OK;
    }
    if (event->EventType == fwx_Bind_Udp && event->Parameters.Bind.piConnection) {
        char text[64];
        if (FAILED(hr = data_filter_create(&df, FALSE)))
            return hr;
        hr = IFWXConnection_AttachDataFilter(event->Parameters.Bind.piConnection, df,
                                             fwx_dfpc_Middle, NULL);
        IFWXDataFilter_Release(df);
        format_addr(event->Parameters.Bind.Address, (INT)event->Parameters.Bind.AddressLength,
                    text, sizeof(text));
        log_line("bind %s attach=0x%08lx", text, (unsigned long)hr);
        return S_OK;
    }
    if (event->EventType != fwx_Udp_Destination || !d->piConnection)
        return S_OK;
    if (deny_all) {
        hr = d->piUdpDestination ? IFWXUdpDestination_Deny(d->piUdpDestination, 0) : E_POINTER;
        log_line("deny 0x%08lx", (unsigned long)hr);
        return S_OK;
    }
    if (FAILED(hr = data_filter_create(&df, FALSE)))
        return hr;
    hr = IFWXConnection_AttachDataFilterWithDestination(d->piConnection, df, fwx_dfpc_Middle, NULL,
                                                        d->Address, (INT)d->AddressLength);
    if (FAILED(hr)) {
        fwx_trace("AttachDataFilterWithDestination failed: 0x%08lx", (unsigned long)hr);
        log_line("attach failed 0x%08lx", (unsigned long)hr);
    }
    IFWXDataFilter_Release(df);
    return S_OK;
}

static HRESULT STDMETHODCALLTYPE SessionFilter_Detach(IFWXSessionFilter *iface)
{
    return S_OK;
}

static const IFWXSessionFilterVtbl session_filter_vtbl = {
    SessionFilter_QueryInterface, SessionFilter_AddRef, SessionFilter_Release,
    SessionFilter_FirewallEventHandler, SessionFilter_Detach,
};

static HRESULT session_filter_create(IFWXSessionFilter **out)
{
    SessionFilter *sf = fwx_alloc(sizeof(*sf));
    if (!sf)
        return E_OUTOFMEMORY;
    sf->IFWXSessionFilter_iface.lpVtbl = &session_filter_vtbl;
    sf->refs = 1;
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
    CRITICAL_SECTION lock;
    BOOL             detached;
    BOOL             tcp;           /* a stream: no checks; 0 bytes is the end */
    IFWXSocket      *sockets[2];
} DataFilter;

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
        for (int i = 0; i < 2; i++)
            if (df->sockets[i])
                IFWXSocket_Release(df->sockets[i]);
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
    socket = df->sockets[side];
    if (socket)
        IFWXSocket_AddRef(socket);
    LeaveCriticalSection(&df->lock);
    return socket;
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
        fwx_trace("Recv failed: 0x%08lx", (unsigned long)hr);
}

/* A datagram goes on with SendTo and the external address it came with: on the external
 * socket that is its target, on the internal socket the source it should appear to come
 * from (reference 3.11). A stream (no address) goes on with Send. */
static void pump_send(DataFilter *df, enum side from, IFWXIOBuffer *buffer, SOCKADDR *ext,
                      INT ext_len)
{
    IFWXSocket *socket = pump_socket(df, OTHER_SIDE(from));
    HRESULT hr;
    if (!socket)
        return;
    if (ext)
        hr = IFWXSocket_SendTo(socket, buffer, ext, ext_len, &df->IFWXIOCompletion_iface,
                               IO_TAG(from, IO_SEND));
    else
        hr = IFWXSocket_Send(socket, buffer, &df->IFWXIOCompletion_iface, IO_TAG(from, IO_SEND));
    IFWXSocket_Release(socket);
    if (FAILED(hr)) {
        fwx_trace("Send failed: 0x%08lx", (unsigned long)hr);
        pump_recv(df, from);      /* the datagram is lost; the path goes on */
    }
}

static void on_received(DataFilter *df, enum side from, IFWXIOBuffer *buffer,
                        SOCKADDR *ext, INT ext_len)
{
    BYTE *data = NULL;
    DWORD size = 0;
    const char *why;

    if (log_extaddr) {
        char text[64];
        format_addr(ext, ext_len, text, sizeof(text));
        log_line("recv %s ext=%s", from == SIDE_INTERNAL ? "internal" : "external", text);
    }
    if (!buffer || FAILED(IFWXIOBuffer_GetBufferAndSize(buffer, &data, &size))) {
        pump_recv(df, from);
        return;
    }
    if (df->tcp && size == 0) {
        IFWXSocket *other = pump_socket(df, OTHER_SIDE(from));
        if (other) {
            IFWXSocket_Shutdown(other, FALSE);
            IFWXSocket_Release(other);
        }
        return;
    }
    if (!df->tcp && from == SIDE_INTERNAL && (why = check_query(data, size))) {
        fwx_trace("dropped a query: %s", why);
        log_line("drop %s len=%lu", why, (unsigned long)size);
        pump_recv(df, from);      /* dropped: complete without sending, read the next */
        return;
    }
    pump_send(df, from, buffer, ext, ext_len);
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
        return E_INVALIDARG;
    EnterCriticalSection(&df->lock);
    usable = !df->detached && !df->sockets[SIDE_INTERNAL];
    if (usable) {
        IFWXSocket_AddRef(internal);
        IFWXSocket_AddRef(external);
        df->sockets[SIDE_INTERNAL] = internal;
        df->sockets[SIDE_EXTERNAL] = external;
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
    IFWXSocket *s[2];

    EnterCriticalSection(&df->lock);
    df->detached = TRUE;
    s[0] = df->sockets[0];
    s[1] = df->sockets[1];
    df->sockets[0] = df->sockets[1] = NULL;
    LeaveCriticalSection(&df->lock);
    for (int i = 0; i < 2; i++)
        if (s[i])
            IFWXSocket_Release(s[i]);
    return S_OK;
}

static const IFWXDataFilterVtbl data_filter_vtbl = {
    DataFilter_QueryInterface, DataFilter_AddRef, DataFilter_Release,
    DataFilter_SetSockets, DataFilter_Detach,
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

    if (!fSuccess) {
        if (Win32ErrorCode != ERROR_OPERATION_ABORTED && Win32ErrorCode != WSAECONNABORTED)
            fwx_trace("%s failed: error %lu", UserData & IO_SEND ? "send" : "receive",
                      (unsigned long)Win32ErrorCode);
        return S_OK;              /* the connection is ending: nothing more to post */
    }
    if (UserData & IO_SEND)
        pump_recv(df, from);
    else
        on_received(df, from, pIOBuffer, ExternalAddress, ExternalAddressLength);
    return S_OK;
}

static const IFWXIOCompletionVtbl completion_vtbl = {
    Completion_QueryInterface, Completion_AddRef, Completion_Release,
    Completion_CompleteAsyncIO,
};

static HRESULT data_filter_create(IFWXDataFilter **out, BOOL tcp)
{
    DataFilter *df = fwx_alloc(sizeof(*df));
    if (!df)
        return E_OUTOFMEMORY;
    df->tcp = tcp;
    df->IFWXDataFilter_iface.lpVtbl = &data_filter_vtbl;
    df->IFWXIOCompletion_iface.lpVtbl = &completion_vtbl;
    df->refs = 1;
    InitializeCriticalSection(&df->lock);
    fwx_object_created();
    *out = &df->IFWXDataFilter_iface;
    return S_OK;
}
