/*
 * netsock.c - a test filter that owns network sockets: it creates them with
 * IFWXFirewall::CreateNetworkSocket instead of filtering other people's
 * connections, as an ISA 2000 filter with a protocol of its own (a proxy that
 * connects out, a service that listens) would. It hooks no events.
 * Built twice: netsock.dll (ISA 2000) and netsocktmg.dll (-DFWX_PROFILE_TMG, against
 * gen/tmg/wspfwext.h, where SetSockOpt comes before GetSockOpt as in TMG).
 *
 * Behaviour, set by the environment once, in FilterInit:
 *
 *   FWX_NETSOCK_LISTEN=PORT
 *       An echo service on 127.0.0.1:PORT: Bind, Listen, and Accept again after
 *       every accepted connection. Each accepted socket sends every buffer it
 *       receives back in a new buffer (CreateBuffer + Append) prefixed by "echo:",
 *       one buffer at a time, and half-closes (Shutdown(FALSE), then Close) once
 *       the peer has.
 *
 *   FWX_NETSOCK_CONNECT=IP:PORT and FWX_NETSOCK_OUT=FILE
 *       A client, started from FilterInit itself: it checks a few calls on the
 *       unconnected socket, then Connect, Send "hello from a filter\n",
 *       Shutdown(FALSE) and Recv until the end of the stream, all issued at once
 *       (the host makes them wait for the connect). When both the Send and the
 *       receiving have ended it writes FILE: one line per call with its HRESULT
 *       or outcome, GetSockName/GetPeerName, then the bytes received. The format
 *       is below (write_report); tests/netsock.sh reads it.
 *
 *   FWX_NETSOCK_SESSION_CONNECT=IP:PORT and FWX_NETSOCK_SESSION_OUT=FILE
 *       The same client once more, on a socket made by IFWXSession::
 *       CreateNetworkSocket while handling the first fwx_AcceptedConnection (so
 *       on a host worker thread); only then does the filter hook that event.
 *
 * Objects: the filter and session filter are the filter kit's (fltkit.h), with the
 * settings, listener and client as the kit context; this file owns Listener
 * (IFWXAcceptCompletion), Echo and Client (IFWXIOCompletion). Completions run on
 * host worker threads; each Echo and the Client have their own lock, never held
 * while calling the host.
 */
#include "fltkit.h"

#include <stdarg.h>
#include <string.h>

/* {5EE35F61-913F-4996-B1E8-A28F8951C259} */
const CLSID fwx_filter_clsid =
    { 0x5ee35f61, 0x913f, 0x4996, { 0xb1, 0xe8, 0xa2, 0x8f, 0x89, 0x51, 0xc2, 0x59 } };
const char fwx_filter_name[] = "netsock";

#define HELLO "hello from a filter\n"
#define ECHO_PREFIX "echo:"
#define ECHO_PREFIX_LEN 5

/* UserData of the client's and the echoes' I/O. */
#define IO_RECV 1
#define IO_SEND 2

static HRESULT listener_start(IFWXFirewall *firewall, const char *port_text, IUnknown **out);
static void listener_stop(IUnknown *listener);
static HRESULT client_start(IFWXFirewall *firewall, IFWXSession *session, const char *target,
                            const char *path, IUnknown **out);
static void client_stop(IUnknown *client);

/* "a.b.c.d" or "a.b.c.d:port" (port required when want_port) into a SOCKADDR_IN. */
static BOOL parse_ipv4(const char *text, BOOL want_port, SOCKADDR_IN *sin)
{
    unsigned v[5] = { 0, 0, 0, 0, 0 };
    int part = 0, digits = 0;
    const char *p;

    memset(sin, 0, sizeof(*sin));
    for (p = text; *p; p++) {
        if (*p >= '0' && *p <= '9') {
            v[part] = v[part] * 10 + (unsigned)(*p - '0');
            if (++digits > 5 || v[part] > 65535)
                return FALSE;
        } else if ((*p == '.' && part < 3) || (*p == ':' && part == 3)) {
            if (!digits)
                return FALSE;
            part++;
            digits = 0;
        } else {
            return FALSE;
        }
    }
    if (!digits || part != (want_port ? 4 : 3) || v[0] > 255 || v[1] > 255 || v[2] > 255 || v[3] > 255)
        return FALSE;
    sin->sin_family = AF_INET;
    sin->sin_port = htons((u_short)v[4]);
    sin->sin_addr.s_addr = htonl((v[0] << 24) | (v[1] << 16) | (v[2] << 8) | v[3]);
    return TRUE;
}

/* "a.b.c.d:port" of a Win32 IPv4 sockaddr (no Winsock call needed). */
static const char *format_sin(const SOCKADDR *sa, int len, char *buf, size_t size)
{
    const SOCKADDR_IN *sin = (const SOCKADDR_IN *)sa;
    const unsigned char *b = (const unsigned char *)&sin->sin_addr;

    if (len < (int)sizeof(*sin) || sin->sin_family != AF_INET)
        snprintf(buf, size, "family %d, %d bytes", len >= 2 ? sa->sa_family : -1, len);
    else
        snprintf(buf, size, "%u.%u.%u.%u:%u", b[0], b[1], b[2], b[3], ntohs(sin->sin_port));
    return buf;
}

/* ==================================================================== the filter */

/* The filter's kit context: the kit keeps it until the last session filter is gone. */
typedef struct {
    IUnknown *listener;                       /* FWX_NETSOCK_LISTEN */
    IUnknown *client;                         /* FWX_NETSOCK_CONNECT */
    char     *session_target, *session_out;   /* FWX_NETSOCK_SESSION_* */
    LONG      session_started;                /* the session client ran */
} Netsock;

static void netsock_free(void *context)
{
    Netsock *ns = context;

    listener_stop(ns->listener);
    client_stop(ns->client);
    fwx_free(ns->session_target);
    fwx_free(ns->session_out);
    fwx_free(ns);
}

static BOOL netsock_init(KitFilter *filter, IFWXFirewall *firewall)
{
    Netsock *ns = filter->context ? filter->context : fwx_alloc(sizeof(*ns));
    char *listen = fwx_getenv("FWX_NETSOCK_LISTEN", "");
    char *connect = fwx_getenv("FWX_NETSOCK_CONNECT", "");
    char *out = fwx_getenv("FWX_NETSOCK_OUT", "netsock.txt");
    HRESULT hr;

    if (!ns) {
        fwx_trace("out of memory: filter disabled");
        fwx_free(listen);
        fwx_free(connect);
        fwx_free(out);
        return FALSE;
    }
    filter->context = ns;
    ns->session_target = fwx_getenv("FWX_NETSOCK_SESSION_CONNECT", "");
    ns->session_out = fwx_getenv("FWX_NETSOCK_SESSION_OUT", "");
    /* Events only for the session client. */
    filter->hooks.dwGlobalEvents =
        ns->session_target && *ns->session_target && ns->session_out && *ns->session_out
            ? fwx_AcceptedConnection | FWX_ALL_SOURCES : 0;

    if (listen && *listen && FAILED(hr = listener_start(firewall, listen, &ns->listener)))
        fwx_trace("echo service on port %s not started: 0x%08lx", listen, (unsigned long)hr);
    if (connect && *connect && out &&
        FAILED(hr = client_start(firewall, NULL, connect, out, &ns->client)))
        fwx_trace("client to %s not started: 0x%08lx", connect, (unsigned long)hr);
    fwx_free(listen);
    fwx_free(connect);
    fwx_free(out);
    return TRUE;   /* failures are traced; the filter stays up */
}

static void netsock_shutdown(KitFilter *filter)
{
    Netsock *ns = filter->context;

    if (!ns)
        return;
    listener_stop((IUnknown *)InterlockedExchangePointer((void **)&ns->listener, NULL));
    client_stop((IUnknown *)InterlockedExchangePointer((void **)&ns->client, NULL));
}

/* Only with FWX_NETSOCK_SESSION_*. The first accepted connection of any session starts
 * the session client; the client keeps its own socket, so the session is not needed
 * afterwards. */
static HRESULT netsock_event(KitSession *sf, const FirewallEvent *event)
{
    Netsock *ns = sf->filter->context;
    IFWXFirewall *firewall;
    IFWXSession *session;
    IUnknown *client;
    HRESULT hr;

    if (event->EventType != fwx_AcceptedConnection || InterlockedExchange(&ns->session_started, 1))
        return S_OK;
    if (!kit_session_get(sf, &session, &firewall) || !session) {
        if (firewall)
            IFWXFirewall_Release(firewall);
        return S_OK;
    }
    hr = client_start(firewall, session, ns->session_target, ns->session_out, &client);
    if (FAILED(hr))
        fwx_trace("session client to %s not started: 0x%08lx", ns->session_target, (unsigned long)hr);
    else
        client_stop(client);   /* the host's pending operations keep it alive */
    IFWXSession_Release(session);
    IFWXFirewall_Release(firewall);
    return S_OK;
}

/* No hooks per session (NULL: the global ones), no data filter. */
static const KitClass netsock_class = {
    .session_hooks = KIT_HOOKS_GLOBAL,
    .init = netsock_init,
    .shutdown = netsock_shutdown,
    .free_context = netsock_free,
    .event = netsock_event,
};

HRESULT fwx_filter_create(REFIID riid, void **ppv)
{
    return kit_filter_create(&netsock_class, riid, ppv);
}

/* ==================================================================== Echo */

/* One accepted connection. One operation in flight at a time (Recv, then the
 * Send of what arrived, then the next Recv), so its steps never overlap. */
typedef struct {
    IFWXIOCompletion   IFWXIOCompletion_iface;
    LONG               refs;
    IFWXFirewall      *firewall;
    CRITICAL_SECTION   lock;
    IFWXNetworkSocket *socket;   /* until the end of the conversation */
} Echo;

static Echo *impl_from_echo(IFWXIOCompletion *iface)
{
    return CONTAINING_RECORD(iface, Echo, IFWXIOCompletion_iface);
}

static HRESULT STDMETHODCALLTYPE Echo_QueryInterface(IFWXIOCompletion *iface, REFIID riid, void **ppv)
{
    return fwx_query_single(iface, &IID_IFWXIOCompletion, riid, ppv);
}

static ULONG STDMETHODCALLTYPE Echo_AddRef(IFWXIOCompletion *iface)
{
    return InterlockedIncrement(&impl_from_echo(iface)->refs);
}

static ULONG STDMETHODCALLTYPE Echo_Release(IFWXIOCompletion *iface)
{
    Echo *echo = impl_from_echo(iface);
    LONG refs = InterlockedDecrement(&echo->refs);

    if (refs == 0) {
        if (echo->socket) {   /* never reached the end: the host still gets a Close */
            IFWXNetworkSocket_Close(echo->socket, TRUE);
            IFWXNetworkSocket_Release(echo->socket);
        }
        IFWXFirewall_Release(echo->firewall);
        DeleteCriticalSection(&echo->lock);
        fwx_free(echo);
        fwx_object_destroyed();
    }
    return refs;
}

/* The socket with a reference of the caller's, or NULL once finished. */
static IFWXNetworkSocket *echo_socket(Echo *echo)
{
    IFWXNetworkSocket *socket;

    EnterCriticalSection(&echo->lock);
    socket = echo->socket;
    if (socket)
        IFWXNetworkSocket_AddRef(socket);
    LeaveCriticalSection(&echo->lock);
    return socket;
}

/* Ends the conversation: half-close (graceful) or reset, Close, and drop the socket. */
static void echo_finish(Echo *echo, BOOL graceful)
{
    IFWXNetworkSocket *socket;

    EnterCriticalSection(&echo->lock);
    socket = echo->socket;
    echo->socket = NULL;
    LeaveCriticalSection(&echo->lock);
    if (!socket)
        return;
    if (graceful)
        IFWXNetworkSocket_Shutdown(socket, FALSE);
    IFWXNetworkSocket_Close(socket, !graceful);
    IFWXNetworkSocket_Release(socket);
}

static void echo_recv(Echo *echo)
{
    IFWXNetworkSocket *socket = echo_socket(echo);
    HRESULT hr;

    if (!socket)
        return;
    hr = IFWXNetworkSocket_Recv(socket, NULL, &echo->IFWXIOCompletion_iface, IO_RECV);
    IFWXNetworkSocket_Release(socket);
    if (FAILED(hr)) {
        fwx_trace("echo: Recv failed: 0x%08lx", (unsigned long)hr);
        echo_finish(echo, FALSE);
    }
}

/* The received buffer belongs to the host: a new one carries the answer. */
static void echo_answer(Echo *echo, IFWXIOBuffer *received)
{
    IFWXNetworkSocket *socket;
    IFWXIOBuffer *answer = NULL;
    BYTE *data;
    DWORD size;
    ULONG written;
    HRESULT hr;

    hr = IFWXIOBuffer_GetBufferAndSize(received, &data, &size);
    if (SUCCEEDED(hr))
        hr = IFWXFirewall_CreateBuffer(echo->firewall, size + ECHO_PREFIX_LEN, &answer);
    if (SUCCEEDED(hr))
        hr = IFWXIOBuffer_Append(answer, ECHO_PREFIX, ECHO_PREFIX_LEN, &written);
    if (SUCCEEDED(hr))
        hr = IFWXIOBuffer_Append(answer, data, size, &written);
    if (SUCCEEDED(hr) && (socket = echo_socket(echo))) {
        hr = IFWXNetworkSocket_Send(socket, answer, &echo->IFWXIOCompletion_iface, IO_SEND);
        IFWXNetworkSocket_Release(socket);
    }
    if (answer)
        IFWXIOBuffer_Release(answer);   /* Send holds its own reference */
    if (FAILED(hr)) {
        fwx_trace("echo: answering failed: 0x%08lx", (unsigned long)hr);
        echo_finish(echo, FALSE);
    }
}

static HRESULT STDMETHODCALLTYPE Echo_CompleteAsyncIO(IFWXIOCompletion *iface, BOOL fSuccess,
                                                      DWORD Win32ErrorCode, IFWXIOBuffer *pIOBuffer,
                                                      UserContextType UserData,
                                                      LPSOCKADDR ExternalAddress,
                                                      INT ExternalAddressLength)
{
    Echo *echo = impl_from_echo(iface);
    DWORD allocated, size;

    if (!fSuccess) {
        if (Win32ErrorCode != ERROR_OPERATION_ABORTED)
            fwx_trace("echo: %s failed: error %lu", UserData == IO_SEND ? "send" : "receive",
                      (unsigned long)Win32ErrorCode);
        echo_finish(echo, FALSE);
    } else if (UserData == IO_SEND) {
        echo_recv(echo);
    } else if (!pIOBuffer || FAILED(IFWXIOBuffer_GetBufferSizes(pIOBuffer, &allocated, &size))) {
        echo_finish(echo, FALSE);
    } else if (size == 0) {
        echo_finish(echo, TRUE);   /* the peer half-closed: so do we */
    } else {
        echo_answer(echo, pIOBuffer);
    }
    return S_OK;
}

static const IFWXIOCompletionVtbl echo_vtbl = {
    Echo_QueryInterface,
    Echo_AddRef,
    Echo_Release,
    Echo_CompleteAsyncIO,
};

/* Takes over the caller's reference to socket. */
static void echo_start(IFWXFirewall *firewall, IFWXNetworkSocket *socket)
{
    Echo *echo = fwx_alloc(sizeof(*echo));

    if (!echo) {
        IFWXNetworkSocket_Close(socket, TRUE);
        IFWXNetworkSocket_Release(socket);
        return;
    }
    echo->IFWXIOCompletion_iface.lpVtbl = &echo_vtbl;
    echo->refs = 1;
    IFWXFirewall_AddRef(firewall);
    echo->firewall = firewall;
    InitializeCriticalSection(&echo->lock);
    echo->socket = socket;
    fwx_object_created();
    echo_recv(echo);
    /* The host holds the echo through its pending operation from here on. */
    IFWXIOCompletion_Release(&echo->IFWXIOCompletion_iface);
}

/* ==================================================================== Listener */

typedef struct {
    IFWXAcceptCompletion IFWXAcceptCompletion_iface;
    LONG                 refs;
    IFWXFirewall        *firewall;
    IFWXNetworkSocket   *socket;   /* the listening socket, until listener_stop */
    LONG                 accepted;
} Listener;

static Listener *impl_from_listener(IFWXAcceptCompletion *iface)
{
    return CONTAINING_RECORD(iface, Listener, IFWXAcceptCompletion_iface);
}

static HRESULT STDMETHODCALLTYPE Listener_QueryInterface(IFWXAcceptCompletion *iface, REFIID riid,
                                                         void **ppv)
{
    return fwx_query_single(iface, &IID_IFWXAcceptCompletion, riid, ppv);
}

static ULONG STDMETHODCALLTYPE Listener_AddRef(IFWXAcceptCompletion *iface)
{
    return InterlockedIncrement(&impl_from_listener(iface)->refs);
}

static ULONG STDMETHODCALLTYPE Listener_Release(IFWXAcceptCompletion *iface)
{
    Listener *listener = impl_from_listener(iface);
    LONG refs = InterlockedDecrement(&listener->refs);

    if (refs == 0) {
        if (listener->socket) {
            IFWXNetworkSocket_Close(listener->socket, FALSE);
            IFWXNetworkSocket_Release(listener->socket);
        }
        IFWXFirewall_Release(listener->firewall);
        fwx_free(listener);
        fwx_object_destroyed();
    }
    return refs;
}

/* The next connection, please. pListeningSocket is the socket the Accept was
 * issued on: the host passes it to every completion. */
static HRESULT STDMETHODCALLTYPE Listener_CompleteAsyncAccept(
    IFWXAcceptCompletion *iface, BOOL fSuccess, DWORD Win32ErrorCode,
    IFWXNetworkSocket *pListeningSocket, IFWXNetworkSocket *pAcceptSocket, LPSOCKADDR RemoteAddress,
    DWORD RemoteAddressLength, LPSOCKADDR LocalAddress, DWORD LocalAddressLength,
    UserContextType UserData)
{
    Listener *listener = impl_from_listener(iface);
    char remote[64], local[64];
    HRESULT hr;

    if (!fSuccess) {
        if (Win32ErrorCode != ERROR_OPERATION_ABORTED)
            fwx_trace("accept failed: error %lu; no more connections", (unsigned long)Win32ErrorCode);
        return S_OK;
    }
    fwx_trace("accepted connection %ld from %s on %s", InterlockedIncrement(&listener->accepted),
              format_sin(RemoteAddress, (int)RemoteAddressLength, remote, sizeof(remote)),
              format_sin(LocalAddress, (int)LocalAddressLength, local, sizeof(local)));
    if (pAcceptSocket)
        echo_start(listener->firewall, pAcceptSocket);   /* our one reference goes to the echo */
    hr = IFWXNetworkSocket_Accept(pListeningSocket, iface, UserData);
    if (FAILED(hr) && hr != FWX_E_TERMINATING)
        fwx_trace("Accept failed: 0x%08lx; no more connections", (unsigned long)hr);
    return S_OK;
}

static const IFWXAcceptCompletionVtbl listener_vtbl = {
    Listener_QueryInterface,
    Listener_AddRef,
    Listener_Release,
    Listener_CompleteAsyncAccept,
};

static HRESULT listener_start(IFWXFirewall *firewall, const char *port_text, IUnknown **out)
{
    Listener *listener;
    SOCKADDR_IN sin;
    char address[32];
    BOOL on = TRUE;
    HRESULT hr;

    *out = NULL;
    snprintf(address, sizeof(address), "127.0.0.1:%s", port_text);
    if (!parse_ipv4(address, TRUE, &sin))
        return E_INVALIDARG;
    if (!(listener = fwx_alloc(sizeof(*listener))))
        return E_OUTOFMEMORY;
    listener->IFWXAcceptCompletion_iface.lpVtbl = &listener_vtbl;
    listener->refs = 1;
    IFWXFirewall_AddRef(firewall);
    listener->firewall = firewall;
    fwx_object_created();

    hr = IFWXFirewall_CreateNetworkSocket(firewall, FWX_PROTOCOL_TCP, &listener->socket);
    if (SUCCEEDED(hr))
        hr = IFWXNetworkSocket_SetSockOpt(listener->socket, SOL_SOCKET, SO_REUSEADDR, (char *)&on,
                                          sizeof(on));
    if (SUCCEEDED(hr))
        hr = IFWXNetworkSocket_Bind(listener->socket, (LPSOCKADDR)&sin, sizeof(sin));
    if (SUCCEEDED(hr))
        hr = IFWXNetworkSocket_Listen(listener->socket, SOMAXCONN);
    if (SUCCEEDED(hr))
        hr = IFWXNetworkSocket_Accept(listener->socket, &listener->IFWXAcceptCompletion_iface, 0);
    if (FAILED(hr)) {
        IFWXAcceptCompletion_Release(&listener->IFWXAcceptCompletion_iface);
        return hr;
    }
    fwx_trace("echo service listening on %s", address);
    *out = (IUnknown *)&listener->IFWXAcceptCompletion_iface;
    return S_OK;
}

/* FilterShutdown: close the listening socket (a pending Accept then completes
 * with ERROR_OPERATION_ABORTED, if the host has not ended it already). */
static void listener_stop(IUnknown *unknown)
{
    Listener *listener;
    IFWXNetworkSocket *socket;

    if (!unknown)
        return;
    listener = impl_from_listener((IFWXAcceptCompletion *)unknown);
    socket = (IFWXNetworkSocket *)InterlockedExchangePointer((void **)&listener->socket, NULL);
    if (socket) {
        IFWXNetworkSocket_Close(socket, FALSE);
        IFWXNetworkSocket_Release(socket);
    }
    IFWXAcceptCompletion_Release(&listener->IFWXAcceptCompletion_iface);
}

/* ==================================================================== Client */

typedef struct {
    IFWXIOCompletion   IFWXIOCompletion_iface;
    LONG               refs;
    CRITICAL_SECTION   lock;        /* everything below */
    IFWXNetworkSocket *socket;      /* until the report is written */
    IFWXIOBuffer      *first;       /* our own buffer for the first Recv (the others use NULL) */
    char              *path;
    char               lines[2048]; /* the report so far */
    int                used;
    char               data[4096];  /* the bytes received */
    DWORD              got;
    int                ended;       /* the Send completed, the receiving ended: 2 = report */
} Client;

static Client *impl_from_client(IFWXIOCompletion *iface)
{
    return CONTAINING_RECORD(iface, Client, IFWXIOCompletion_iface);
}

static void client_line(Client *client, const char *fmt, ...) __attribute__((format(__MINGW_PRINTF_FORMAT, 2, 3)));

static void client_line(Client *client, const char *fmt, ...)
{
    va_list args;
    int room, n;

    EnterCriticalSection(&client->lock);
    room = (int)sizeof(client->lines) - client->used - 1;
    if (room > 1) {
        va_start(args, fmt);
        n = vsnprintf(client->lines + client->used, room, fmt, args);
        va_end(args);
        if (n >= room)
            n = room - 1;
        if (n > 0)
            client->used += n;
        client->lines[client->used++] = '\n';
    }
    LeaveCriticalSection(&client->lock);
}

static HRESULT STDMETHODCALLTYPE Client_QueryInterface(IFWXIOCompletion *iface, REFIID riid, void **ppv)
{
    return fwx_query_single(iface, &IID_IFWXIOCompletion, riid, ppv);
}

static ULONG STDMETHODCALLTYPE Client_AddRef(IFWXIOCompletion *iface)
{
    return InterlockedIncrement(&impl_from_client(iface)->refs);
}

static ULONG STDMETHODCALLTYPE Client_Release(IFWXIOCompletion *iface)
{
    Client *client = impl_from_client(iface);
    LONG refs = InterlockedDecrement(&client->refs);

    if (refs == 0) {
        if (client->socket) {
            IFWXNetworkSocket_Close(client->socket, TRUE);
            IFWXNetworkSocket_Release(client->socket);
        }
        if (client->first)
            IFWXIOBuffer_Release(client->first);
        DeleteCriticalSection(&client->lock);
        fwx_free(client->path);
        fwx_free(client);
        fwx_object_destroyed();
    }
    return refs;
}

/* GetSockName or GetPeerName, as a report line "NAME 0xHRESULT ADDRESS". */
static void client_name_line(Client *client, IFWXNetworkSocket *socket, const char *name, BOOL peer)
{
    SOCKADDR_STORAGE ss;
    INT len = sizeof(ss);
    char text[64] = "-";
    HRESULT hr;

    memset(&ss, 0, sizeof(ss));
    hr = peer ? IFWXNetworkSocket_GetPeerName(socket, (LPSOCKADDR)&ss, &len)
              : IFWXNetworkSocket_GetSockName(socket, (LPSOCKADDR)&ss, &len);
    if (SUCCEEDED(hr))
        format_sin((LPSOCKADDR)&ss, len, text, sizeof(text));
    client_line(client, "%s 0x%08lx %s", name, (unsigned long)hr, text);
}

/* The report, written to a temporary file and renamed, so that a reader never
 * sees half of it:
 *     <call> 0x<HRESULT> [details]     one line per call, in the order made
 *     send-completion ok | failed <error>
 *     recv-end eof | failed <error>
 *     sockname 0x<HRESULT> a.b.c.d:port
 *     sockname-short 0x<HRESULT> needed <bytes>
 *     peername 0x<HRESULT> a.b.c.d:port
 *     received <n> bytes
 *     data:
 *     <the bytes>
 */
static void write_report(Client *client)
{
    IFWXNetworkSocket *socket;
    SOCKADDR_STORAGE ss;
    INT len = 4;
    HANDLE file;
    DWORD written;
    char tmp[MAX_PATH + 8];
    HRESULT hr;

    EnterCriticalSection(&client->lock);
    socket = client->socket;
    client->socket = NULL;
    LeaveCriticalSection(&client->lock);
    if (socket) {
        client_name_line(client, socket, "sockname", FALSE);
        hr = IFWXNetworkSocket_GetSockName(socket, (LPSOCKADDR)&ss, &len);
        client_line(client, "sockname-short 0x%08lx needed %d", (unsigned long)hr, len);
        client_name_line(client, socket, "peername", TRUE);
        client_line(client, "close 0x%08lx", (unsigned long)IFWXNetworkSocket_Close(socket, FALSE));
        client_line(client, "after-close-recv 0x%08lx",
                    (unsigned long)IFWXNetworkSocket_Recv(socket, NULL, &client->IFWXIOCompletion_iface, 0));
        IFWXNetworkSocket_Release(socket);
    }
    client_line(client, "received %lu bytes", (unsigned long)client->got);
    client_line(client, "data:");

    snprintf(tmp, sizeof(tmp), "%s.tmp", client->path);
    file = CreateFileA(tmp, GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
    if (file == INVALID_HANDLE_VALUE) {
        fwx_trace("cannot create %s: error %lu", tmp, (unsigned long)GetLastError());
        return;
    }
    WriteFile(file, client->lines, (DWORD)client->used, &written, NULL);
    WriteFile(file, client->data, client->got, &written, NULL);
    CloseHandle(file);
    if (!MoveFileExA(tmp, client->path, MOVEFILE_REPLACE_EXISTING))
        fwx_trace("cannot rename %s: error %lu", tmp, (unsigned long)GetLastError());
    fwx_trace("client report written to %s", client->path);
}

/* One of the two endings (the Send's, the receiving's) has happened. */
static void client_ended(Client *client)
{
    int ended;

    EnterCriticalSection(&client->lock);
    ended = ++client->ended;
    LeaveCriticalSection(&client->lock);
    if (ended == 2)
        write_report(client);
}

static void client_recv(Client *client)
{
    IFWXNetworkSocket *socket;
    HRESULT hr = FWX_E_TERMINATING;

    EnterCriticalSection(&client->lock);
    socket = client->socket;
    if (socket)
        IFWXNetworkSocket_AddRef(socket);
    LeaveCriticalSection(&client->lock);
    if (socket) {
        hr = IFWXNetworkSocket_Recv(socket, NULL, &client->IFWXIOCompletion_iface, IO_RECV);
        IFWXNetworkSocket_Release(socket);
    }
    if (FAILED(hr)) {
        client_line(client, "recv-end call 0x%08lx", (unsigned long)hr);
        client_ended(client);
    }
}

static HRESULT STDMETHODCALLTYPE Client_CompleteAsyncIO(IFWXIOCompletion *iface, BOOL fSuccess,
                                                        DWORD Win32ErrorCode, IFWXIOBuffer *pIOBuffer,
                                                        UserContextType UserData,
                                                        LPSOCKADDR ExternalAddress,
                                                        INT ExternalAddressLength)
{
    Client *client = impl_from_client(iface);
    BYTE *data;
    DWORD size;

    if (UserData == IO_SEND) {
        if (fSuccess)
            client_line(client, "send-completion ok");
        else
            client_line(client, "send-completion failed %lu", (unsigned long)Win32ErrorCode);
        client_ended(client);
        return S_OK;
    }
    if (UserData != IO_RECV)
        return S_OK;   /* the Recv after Close must not complete: the report would say so */
    if (!fSuccess) {
        client_line(client, "recv-end failed %lu", (unsigned long)Win32ErrorCode);
        client_ended(client);
    } else if (!pIOBuffer || FAILED(IFWXIOBuffer_GetBufferAndSize(pIOBuffer, &data, &size))) {
        client_line(client, "recv-end no buffer");
        client_ended(client);
    } else if (size == 0) {
        client_line(client, "recv-end eof");
        client_ended(client);
    } else {
        EnterCriticalSection(&client->lock);
        if (client->got + size > sizeof(client->data))
            size = sizeof(client->data) - client->got;
        memcpy(client->data + client->got, data, size);
        client->got += size;
        LeaveCriticalSection(&client->lock);
        client_recv(client);
    }
    return S_OK;
}

static const IFWXIOCompletionVtbl client_vtbl = {
    Client_QueryInterface,
    Client_AddRef,
    Client_Release,
    Client_CompleteAsyncIO,
};

/* The socket comes from the session when one is given, else from the firewall;
 * buffers always from the firewall. */
static HRESULT client_start(IFWXFirewall *firewall, IFWXSession *session, const char *target,
                            const char *path, IUnknown **out)
{
    IFWXIOCompletion *sink;
    IFWXNetworkSocket *socket;
    IFWXIOBuffer *hello = NULL;
    Client *client;
    SOCKADDR_IN sin;
    SOCKADDR_STORAGE ss;
    INT len, value;
    int one = 1;
    HRESULT hr;

    *out = NULL;
    if (!parse_ipv4(target, TRUE, &sin))
        return E_INVALIDARG;
    if (!(client = fwx_alloc(sizeof(*client))))
        return E_OUTOFMEMORY;
    client->IFWXIOCompletion_iface.lpVtbl = &client_vtbl;
    client->refs = 1;
    InitializeCriticalSection(&client->lock);
    fwx_object_created();
    sink = &client->IFWXIOCompletion_iface;
    if (!(client->path = fwx_alloc(strlen(path) + 1))) {
        IFWXIOCompletion_Release(sink);
        return E_OUTOFMEMORY;
    }
    memcpy(client->path, path, strlen(path) + 1);

    if (session)
        hr = IFWXSession_CreateNetworkSocket(session, FWX_PROTOCOL_TCP, &socket);
    else
        hr = IFWXFirewall_CreateNetworkSocket(firewall, FWX_PROTOCOL_TCP, &socket);
    client_line(client, "create 0x%08lx %s", (unsigned long)hr, session ? "session" : "firewall");
    if (FAILED(hr)) {
        client->ended = 1;
        client_ended(client);
        IFWXIOCompletion_Release(sink);
        return hr;
    }
    client->socket = socket;

    /* UDP is not there yet; a listener released without Close is closed by the host. */
    if (!session) {
        IFWXNetworkSocket *other = NULL;
        SOCKADDR_IN any;
        char text[64] = "-";

        hr = IFWXFirewall_CreateNetworkSocket(firewall, FWX_PROTOCOL_UDP, &other);
        client_line(client, "udp 0x%08lx %s", (unsigned long)hr, other ? "socket" : "null");
        if (other)
            IFWXNetworkSocket_Release(other);
        other = NULL;
        parse_ipv4("127.0.0.1:0", TRUE, &any);
        hr = IFWXFirewall_CreateNetworkSocket(firewall, FWX_PROTOCOL_TCP, &other);
        if (SUCCEEDED(hr))
            hr = IFWXNetworkSocket_Bind(other, (LPSOCKADDR)&any, sizeof(any));
        if (SUCCEEDED(hr))
            hr = IFWXNetworkSocket_Listen(other, 5);
        len = sizeof(ss);
        if (SUCCEEDED(hr))
            hr = IFWXNetworkSocket_GetSockName(other, (LPSOCKADDR)&ss, &len);
        if (SUCCEEDED(hr))
            format_sin((LPSOCKADDR)&ss, len, text, sizeof(text));
        client_line(client, "unclosed-listener 0x%08lx %s", (unsigned long)hr, text);
        if (other)
            IFWXNetworkSocket_Release(other);   /* no Close: the host must close it */
    }

    /* Calls on the fresh socket, before it has an address. */
    len = sizeof(ss);
    client_line(client, "unbound-sockname 0x%08lx",
                (unsigned long)IFWXNetworkSocket_GetSockName(socket, (LPSOCKADDR)&ss, &len));
    len = sizeof(ss);
    client_line(client, "unconnected-peername 0x%08lx",
                (unsigned long)IFWXNetworkSocket_GetPeerName(socket, (LPSOCKADDR)&ss, &len));
    client_line(client, "unconnected-recv 0x%08lx",
                (unsigned long)IFWXNetworkSocket_Recv(socket, NULL, sink, 0));
    client_line(client, "set-nodelay 0x%08lx",
                (unsigned long)IFWXNetworkSocket_SetSockOpt(socket, IPPROTO_TCP, TCP_NODELAY,
                                                            (char *)&one, sizeof(one)));
    value = -1;
    len = sizeof(value);
    hr = IFWXNetworkSocket_GetSockOpt(socket, IPPROTO_TCP, TCP_NODELAY, (char *)&value, &len);
    client_line(client, "get-nodelay 0x%08lx value %d", (unsigned long)hr, value);
    value = -1;
    len = sizeof(value);
    hr = IFWXNetworkSocket_GetSockOpt(socket, SOL_SOCKET, SO_TYPE, (char *)&value, &len);
    client_line(client, "get-type 0x%08lx value %d", (unsigned long)hr, value);
    len = sizeof(value);
    client_line(client, "get-unknown 0x%08lx",
                (unsigned long)IFWXNetworkSocket_GetSockOpt(socket, SOL_SOCKET, 0x7777, (char *)&value, &len));
    client_line(client, "packet-filter-options 0x%08lx",
                (unsigned long)IFWXNetworkSocket_SetPacketFilterOptions(socket, 0));

    /* Everything at once: the host holds the I/O until the connect is done. */
    client_line(client, "connect 0x%08lx",
                (unsigned long)IFWXNetworkSocket_Connect(socket, (LPSOCKADDR)&sin, sizeof(sin)));
    hr = IFWXFirewall_CreateConstBuffer(firewall, (BYTE *)HELLO, sizeof(HELLO) - 1, &hello);
    if (SUCCEEDED(hr)) {
        hr = IFWXNetworkSocket_Send(socket, hello, sink, IO_SEND);
        IFWXIOBuffer_Release(hello);
    }
    client_line(client, "send 0x%08lx", (unsigned long)hr);
    if (FAILED(hr))
        client_ended(client);
    client_line(client, "shutdown 0x%08lx", (unsigned long)IFWXNetworkSocket_Shutdown(socket, FALSE));
    /* The first Recv into a small buffer of our own; the rest let the host choose. */
    hr = IFWXFirewall_CreateBuffer(firewall, 8, &client->first);
    if (SUCCEEDED(hr))
        hr = IFWXNetworkSocket_Recv(socket, client->first, sink, IO_RECV);
    client_line(client, "recv 0x%08lx", (unsigned long)hr);
    if (FAILED(hr))
        client_ended(client);
    *out = (IUnknown *)sink;   /* our creation reference */
    return S_OK;
}

/* FilterShutdown: by now the host has ended every network socket, so the report
 * is written; this only drops our reference. */
static void client_stop(IUnknown *unknown)
{
    if (unknown)
        IFWXIOCompletion_Release((IFWXIOCompletion *)unknown);
}
