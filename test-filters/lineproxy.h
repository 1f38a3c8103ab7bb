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
 *
 * The COM objects are the filter kit's (fltkit.h): this file owns the settings, the
 * action contexts, the line splitting (a pump's data and eof callbacks) and each control
 * connection's state (LineProxy: the session it acts for, its actions, the carries).
 */
#ifndef FWX_LINEPROXY_H
#define FWX_LINEPROXY_H

#include "fltkit.h"

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


/* ==================================================================== LineProxy */

/* A control connection's state: a kit pump's state. */
typedef struct {
    KitPump          *pump;
    CRITICAL_SECTION  lock;        /* guards detached..nactions: Detach races the lines */
    BOOL              detached;
    IFWXSession      *session;     /* the anticipated actions' */
    IFWXSessionFilter *sf;         /* receives fwx_EstablishedConnection */
    IFWXFirewallAction *actions[MAX_ACTIONS];
    int               nactions;
    SOCKADDR_IN       local;       /* our client-facing address; family 0 on outbound rules */
    SOCKADDR_IN       server;      /* the FTP server */
    /* Per direction: the start of a line not complete yet. Only that direction's
     * completions touch it, one at a time, so no lock. */
    char              carry[2][LINE_MAX_LEN];
    DWORD             carry_len[2];
} LineProxy;

/* Supplied by the includer: one complete line (with its end) from the client
 * (lp_client_line) or from the server (lp_server_line) is written to out, rewritten or
 * not; returns the bytes written. out has room for len + 128. */
static DWORD lp_client_line(LineProxy *lp, const char *line, DWORD len, char *out);
static DWORD lp_server_line(LineProxy *lp, const char *line, DWORD len, char *out);

static HRESULT lp_pump_create(KitPump *pump)
{
    LineProxy *lp = fwx_alloc(sizeof(*lp));

    if (!lp)
        return E_OUTOFMEMORY;
    lp->pump = pump;
    InitializeCriticalSection(&lp->lock);
    pump->state = lp;
    return S_OK;
}

/* Everything we hold goes; the actions of this control connection are withdrawn. */
static void lp_pump_detach(KitPump *pump)
{
    LineProxy *lp = pump->state;
    IFWXSession *session;
    IFWXSessionFilter *sf;
    IFWXFirewallAction *actions[MAX_ACTIONS];
    int nactions;

    EnterCriticalSection(&lp->lock);
    lp->detached = TRUE;
    session = lp->session;
    sf = lp->sf;
    nactions = lp->nactions;
    memcpy(actions, lp->actions, nactions * sizeof(actions[0]));
    lp->nactions = 0;
    lp->session = NULL;
    lp->sf = NULL;
    LeaveCriticalSection(&lp->lock);

    for (int i = 0; i < nactions; i++) {
        IFWXFirewallAction_Cancel(actions[i]);
        IFWXFirewallAction_Release(actions[i]);
    }
    if (session)
        IFWXSession_Release(session);
    if (sf)
        IFWXSessionFilter_Release(sf);
}

static void lp_pump_destroy(KitPump *pump)
{
    LineProxy *lp = pump->state;

    lp_pump_detach(pump);   /* released without Detach */
    DeleteCriticalSection(&lp->lock);
    fwx_free(lp);
}

/* ==================================================================== the session filter */

/* A control connection: our pump on it, class NAT. local is our address as the client
 * sees it (publishing) or NULL (outbound); server is the FTP server's address. */
static HRESULT attach_proxy(KitSession *sf, IFWXConnection *connection, const SOCKADDR *local,
                            DWORD local_len, const SOCKADDR *server, DWORD server_len)
{
    IFWXSession *session;
    IFWXDataFilter *df;
    LineProxy *lp;
    SOCKADDR_IN l = { 0 }, s = { 0 };
    HRESULT hr;

    if (!connection)
        return S_OK;
    if (local && local_len >= sizeof(l) && local->sa_family == AF_INET)
        memcpy(&l, local, sizeof(l));
    if (server && server_len >= sizeof(s) && server->sa_family == AF_INET)
        memcpy(&s, server, sizeof(s));
    if (!kit_session_get(sf, &session, NULL) || !session) {
        if (session)
            IFWXSession_Release(session);
        return FWX_E_TERMINATING;
    }
    if (!s.sin_family) {    /* publishing: the session is the published server's */
        DWORD len = sizeof(s);
        if (FAILED(IFWXSession_GetClientAddress(session, (LPSOCKADDR)&s, &len)))
            memset(&s, 0, sizeof(s));
    }
    hr = kit_session_create_pump(sf, &df);
    if (FAILED(hr)) {
        IFWXSession_Release(session);
        return hr;
    }
    lp = KIT_PUMP(df)->state;
    lp->session = session;   /* our reference */
    IFWXSessionFilter_AddRef(&sf->IFWXSessionFilter_iface);
    lp->sf = &sf->IFWXSessionFilter_iface;
    lp->local = l;
    lp->server = s;
    /* NAT class: an address editor sees the client's bytes first (reference 2.7). */
    hr = IFWXConnection_AttachDataFilter(connection, df, fwx_dfpc_NAT, NULL);
    if (FAILED(hr))
        fwx_trace("AttachDataFilter failed: 0x%08lx", (unsigned long)hr);
    IFWXDataFilter_Release(df);
    return S_OK;
}

static void on_established(KitSession *sf, const FwxEstablishedConnectionEvent *e)
{
    Context *c = (Context *)e->UserContext;
    char where[64] = "?";
    LONG n = InterlockedIncrement(&sf->counter);

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

static HRESULT lp_event(KitSession *sf, const FirewallEvent *event)
{
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

/* ==================================================================== the data filter */

/* ---------------------------------------------------------------- anticipated actions */

/* The session, session filter and connection, referenced, for a call into the host
 * without our lock. FALSE once detached. */
static BOOL grab(LineProxy *lp, IFWXSession **session, IFWXSessionFilter **sf, IFWXConnection **conn)
{
    BOOL ok;

    *conn = kit_pump_get_connection(lp->pump);
    if (!*conn)
        return FALSE;
    EnterCriticalSection(&lp->lock);
    ok = !lp->detached && lp->session && lp->sf;
    if (ok) {
        *session = lp->session;
        *sf = lp->sf;
        IFWXSession_AddRef(*session);
        IFWXSessionFilter_AddRef(*sf);
    }
    LeaveCriticalSection(&lp->lock);
    if (!ok)
        IFWXConnection_Release(*conn);
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
static void keep_action(LineProxy *lp, IFWXFirewallAction *action)
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
    EnterCriticalSection(&lp->lock);
    if (!lp->detached && lp->nactions < MAX_ACTIONS) {
        lp->actions[lp->nactions++] = action;
        kept = TRUE;
    }
    LeaveCriticalSection(&lp->lock);
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
static HRESULT bind_for_client(LineProxy *lp, const SOCKADDR_IN *client, SOCKADDR_IN *proxy)
{
    IFWXSession *session;
    IFWXSessionFilter *sf;
    IFWXConnection *conn, *bound[1] = { NULL };
    LPSOCKADDR clients[1] = { (LPSOCKADDR)client };
    IUnknown *ctx;
    INT len = sizeof(*proxy);
    HRESULT hr;
    char a[32], b[32];

    if (!grab(lp, &session, &sf, &conn))
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
static HRESULT redirect_for_client(LineProxy *lp, const SOCKADDR_IN *target, SOCKADDR_IN *shown)
{
    IFWXSession *session;
    IFWXSessionFilter *sf;
    IFWXConnection *conn;
    IFWXFirewallAction *actions[1] = { NULL };
    LPSOCKADDR targets[1] = { (LPSOCKADDR)target };
    IUnknown *ctx;
    HRESULT hr;
    char a[32], b[32];

    if (!grab(lp, &session, &sf, &conn))
        return FWX_E_TERMINATING;
    if (!(ctx = context_create())) {
        ungrab(session, sf, conn);
        return E_OUTOFMEMORY;
    }
    fmt_addr(target, a, sizeof(a));
    if (lp->local.sin_family == AF_INET) {
        DWORD len = sizeof(*shown);
        *shown = lp->local;
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
        keep_action(lp, actions[0]);
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
static HRESULT process(LineProxy *lp, enum kit_side from, const BYTE *data, DWORD size, IFWXIOBuffer **out)
{
    DWORD n = lp->carry_len[from] + size, start = 0, w = 0;
    char *work = fwx_alloc(n + 1), *result;
    HRESULT hr = S_OK;

    *out = NULL;
    if (!work)
        return E_OUTOFMEMORY;
    memcpy(work, lp->carry[from], lp->carry_len[from]);
    memcpy(work + lp->carry_len[from], data, size);
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
        DWORD k = from == KIT_INTERNAL ? lp_client_line(lp, work + start, len, result + w)
                                        : lp_server_line(lp, work + start, len, result + w);
        w += k;
        start = i + 1;
    }
    if (n - start >= LINE_MAX_LEN) {     /* not a control line: pass it on as it is */
        memcpy(result + w, work + start, n - start);
        w += n - start;
        start = n;
    }
    lp->carry_len[from] = n - start;
    memcpy(lp->carry[from], work + start, n - start);
    if (w > 0) {
        ULONG written;
        hr = kit_pump_create_buffer(lp->pump, w, out);
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

/* ---------------------------------------------------------------- the pump's callbacks */

static KitVerdict lp_data(KitPump *pump, enum kit_side from, IFWXIOBuffer *buffer, DWORD size,
                          IFWXIOBuffer **out)
{
    BYTE *data;
    DWORD len;
    HRESULT hr;

    hr = IFWXIOBuffer_GetBufferAndSize(buffer, &data, &len);
    if (SUCCEEDED(hr))
        hr = process(pump->state, from, data, len, out);
    if (FAILED(hr)) {
        fwx_trace("control channel failed: 0x%08lx; aborting the connection", (unsigned long)hr);
        return KIT_ABORT;
    }
    return *out ? KIT_SEND : KIT_HOLD;
}

/* End of stream from one side: an incomplete last line goes as it is, then the
 * half-close. */
static KitVerdict lp_eof(KitPump *pump, enum kit_side from, IFWXIOBuffer **out)
{
    LineProxy *lp = pump->state;
    ULONG written;
    HRESULT hr;

    if (lp->carry_len[from] == 0)
        return KIT_PASS;
    hr = kit_pump_create_buffer(pump, lp->carry_len[from], out);
    if (SUCCEEDED(hr))
        hr = IFWXIOBuffer_Append(*out, (const BYTE *)lp->carry[from], lp->carry_len[from], &written);
    if (FAILED(hr)) {
        fwx_trace("control channel failed: 0x%08lx; aborting the connection", (unsigned long)hr);
        return KIT_ABORT;   /* the kit releases *out */
    }
    lp->carry_len[from] = 0;
    return KIT_SEND;
}

/* ==================================================================== the filter */

/* A filter that cannot initialise still answers S_OK, registering no events, so that it
 * does not stop the service. */
static BOOL lp_init(KitFilter *filter, IFWXFirewall *firewall)
{
    if (!load_settings()) {
        fwx_trace("bad or missing settings: filter disabled");
        return FALSE;
    }
    return TRUE;
}

static const KitClass lp_class = {
    .events = LP_EVENTS,
    .session_hooks = KIT_HOOKS_COPY,
    .init = lp_init,
    .event = lp_event,
    .pump_create = lp_pump_create,
    .pump_destroy = lp_pump_destroy,
    .data = lp_data,
    .eof = lp_eof,
    .pump_detach = lp_pump_detach,
};

HRESULT fwx_filter_create(REFIID riid, void **ppv)
{
    return kit_filter_create(&lp_class, riid, ppv);
}

#endif /* FWX_LINEPROXY_H */
