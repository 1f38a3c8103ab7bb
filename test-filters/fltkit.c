/*
 * fltkit.c - the generic FWX objects of the test-filter kit (fltkit.h): KitFilter
 * (IFWXFilter), KitSession (IFWXSessionFilter) and KitPump (IFWXDataFilter and
 * IFWXIOCompletion, the bidirectional data pump), each calling its KitClass where a
 * filter differs. Read fltkit.h for the callbacks; passthrough.c is a filter with none.
 *
 * The pump, per direction: Recv(NULL) on the source socket (the host supplies the
 * buffer); on completion ask the class what to do with it, Send that buffer (or the
 * class's new one) out of the other socket, and on the Send's completion post the next
 * Recv. So each direction has one operation in flight, and a slow receiver slows the
 * sender: that is the flow control. A Recv that completes with 0 bytes is the peer's
 * half-close and becomes Shutdown(FALSE) on the other socket; a failed operation becomes
 * Close(TRUE) (abort) on the other socket.
 */
#include "fltkit.h"

static HRESULT pump_create(KitFilter *filter, IFWXFirewall *firewall, IFWXDataFilter **out);

static void observe(KitFilter *filter, const KitCall *call)
{
    if (filter->cls->observe)
        filter->cls->observe(filter, call);
}

static void observe_simple(KitFilter *filter, KitCallType type)
{
    KitCall call = { .type = type };

    observe(filter, &call);
}

/* The class has the last word on what the host gets back (KitClass.answer): the fault
 * filters' way in, so that they need no objects of their own. */
static HRESULT answer(KitFilter *filter, KitCallType type, HRESULT hr, PFwxFilterHookEvents *hooks,
                      IFWXSessionFilter **session_filter, KitPump *pump)
{
    KitAnswer a = { .type = type, .hr = hr, .hooks = hooks, .session_filter = session_filter,
                    .pump = pump };

    return filter->cls->answer ? filter->cls->answer(filter, &a) : hr;
}

/* ==================================================================== KitFilter */

static KitFilter *filter_hold(KitFilter *filter)
{
    InterlockedIncrement(&filter->holds);
    return filter;
}

/* The struct outlives the filter's COM identity while sessions or pumps use it. */
static void filter_drop(KitFilter *filter)
{
    if (InterlockedDecrement(&filter->holds) == 0) {
        if (filter->cls->free_context && filter->context)
            filter->cls->free_context(filter->context);
        fwx_free(filter);
    }
}

static KitFilter *impl_from_IFWXFilter(IFWXFilter *iface)
{
    return CONTAINING_RECORD(iface, KitFilter, IFWXFilter_iface);
}

static HRESULT STDMETHODCALLTYPE Filter_QueryInterface(IFWXFilter *iface, REFIID riid, void **ppv)
{
    return fwx_query_single(iface, &IID_IFWXFilter, riid, ppv);
}

static ULONG STDMETHODCALLTYPE Filter_AddRef(IFWXFilter *iface)
{
    return InterlockedIncrement(&impl_from_IFWXFilter(iface)->refs);
}

static ULONG STDMETHODCALLTYPE Filter_Release(IFWXFilter *iface)
{
    KitFilter *filter = impl_from_IFWXFilter(iface);
    LONG refs = InterlockedDecrement(&filter->refs);

    if (refs == 0) {
        IFWXFirewall *firewall = (IFWXFirewall *)InterlockedExchangePointer((void **)&filter->firewall, NULL);

        if (firewall)   /* the host released us without FilterShutdown */
            IFWXFirewall_Release(firewall);
        fwx_object_destroyed();
        filter_drop(filter);
    }
    return refs;
}

/* The host treats the filter as ready as soon as this returns, so everything is set up
 * first. The hook events are a member: the host copies them and never frees them. */
static HRESULT filter_init(KitFilter *filter, IFWXFirewall *firewall, PFwxFilterHookEvents *ppHooks)
{
#ifdef FWX_PROFILE_TMG
    /* ISA 2004/2006/TMG (-DFWX_PROFILE_TMG, tests/abi.sh profiles): ppHooks points to the
     * host's structure ({dwGlobalEvents}), which we fill; untouched it means none. */
    FwxFilterHookEvents *host_hooks = (FwxFilterHookEvents *)ppHooks;
#else
    *ppHooks = NULL;
#endif
    filter->hooks.dwGlobalEvents = filter->cls->events;
    filter->hooks.dwNumPortRanges = 0;
    filter->hooks.PortRangeEvents = NULL;
    if (filter->cls->init && !filter->cls->init(filter, firewall))
        return S_OK;   /* disabled: no events, and the service goes on */
    observe_simple(filter, KIT_CALL_FILTER_INIT);

    IFWXFirewall_AddRef(firewall);
    filter->firewall = firewall;
#ifdef FWX_PROFILE_TMG
    host_hooks->dwGlobalEvents = filter->hooks.dwGlobalEvents;
#else
    *ppHooks = &filter->hooks;
#endif
    return S_OK;
}

static HRESULT STDMETHODCALLTYPE Filter_FilterInit(IFWXFilter *iface, IFWXFirewall *firewall,
                                                   PFwxFilterHookEvents *ppHooks)
{
    KitFilter *filter = impl_from_IFWXFilter(iface);

    return answer(filter, KIT_CALL_FILTER_INIT, filter_init(filter, firewall, ppHooks), ppHooks,
                  NULL, NULL);
}

/* Session and data filters may still be detached after this (the order is undefined):
 * they hold their own references. */
static HRESULT STDMETHODCALLTYPE Filter_FilterShutdown(IFWXFilter *iface)
{
    KitFilter *filter = impl_from_IFWXFilter(iface);
    IFWXFirewall *firewall;

    observe_simple(filter, KIT_CALL_FILTER_SHUTDOWN);
    if (filter->cls->shutdown)
        filter->cls->shutdown(filter);
    firewall = (IFWXFirewall *)InterlockedExchangePointer((void **)&filter->firewall, NULL);
    if (firewall)
        IFWXFirewall_Release(firewall);
    return S_OK;
}

static HRESULT session_create(KitFilter *filter, IFWXSession *session, IFWXFirewall *firewall,
                              IFWXSessionFilter **out);

/* The per-session hook events, as the class asks: copied into CoTaskMem memory (the host
 * frees it), duplicated by the firewall (which is the other way ISA 2000 allows; a
 * failure there fails the triggering request, loudly), or NULL for the global ones. */
static HRESULT attach_to_session(KitFilter *filter, IFWXSession *session,
                                 IFWXSessionFilter **ppSessionFilter, PFwxFilterHookEvents *ppHooks)
{
    IFWXFirewall *firewall = filter->firewall;
    FwxFilterHookEvents *hooks = NULL;
    HRESULT hr;

    *ppSessionFilter = NULL;
#ifndef FWX_PROFILE_TMG
    *ppHooks = NULL;   /* tmg: the host's structure, filled below */
#endif
    if (!firewall)   /* shut down, disabled, or never initialised */
        return FWX_E_TERMINATING;
    observe_simple(filter, KIT_CALL_ATTACH_TO_SESSION);

    switch (filter->cls->session_hooks) {
    case KIT_HOOKS_COPY:
        hooks = CoTaskMemAlloc(sizeof(*hooks));
        if (!hooks)
            return E_OUTOFMEMORY;
        *hooks = filter->hooks;
        hooks->dwGlobalEvents |= filter->cls->session_events;
        break;
    case KIT_HOOKS_DUPLICATE:
        hr = IFWXFirewall_DuplicateFilterHookEvents(firewall, &filter->hooks, &hooks);
        if (FAILED(hr)) {
            fwx_trace("DuplicateFilterHookEvents failed: 0x%08lx", (unsigned long)hr);
            return hr;
        }
        break;
    case KIT_HOOKS_GLOBAL:
        break;
    }

    hr = session_create(filter, session, firewall, ppSessionFilter);
    if (FAILED(hr)) {
        CoTaskMemFree(hooks);
        return hr;
    }
#ifdef FWX_PROFILE_TMG
    if (hooks) {
        ((FwxFilterHookEvents *)ppHooks)->dwGlobalEvents = hooks->dwGlobalEvents;
        CoTaskMemFree(hooks);
    }
#else
    *ppHooks = hooks;
#endif
    return S_OK;
}

static HRESULT STDMETHODCALLTYPE Filter_AttachToSession(IFWXFilter *iface, IFWXSession *session,
                                                        IFWXSessionFilter **ppSessionFilter,
                                                        PFwxFilterHookEvents *ppHooks)
{
    KitFilter *filter = impl_from_IFWXFilter(iface);

    return answer(filter, KIT_CALL_ATTACH_TO_SESSION,
                  attach_to_session(filter, session, ppSessionFilter, ppHooks), ppHooks,
                  ppSessionFilter, NULL);
}

static const IFWXFilterVtbl filter_vtbl = {
    Filter_QueryInterface,
    Filter_AddRef,
    Filter_Release,
    Filter_FilterInit,
    Filter_FilterShutdown,
    Filter_AttachToSession,
};

HRESULT kit_filter_create(const KitClass *cls, REFIID riid, void **ppv)
{
    KitFilter *filter = fwx_alloc(sizeof(*filter));
    HRESULT hr;

    if (!filter)
        return E_OUTOFMEMORY;
    filter->IFWXFilter_iface.lpVtbl = &filter_vtbl;
    filter->refs = 1;
    filter->holds = 1;
    filter->cls = cls;
    fwx_object_created();

    hr = IFWXFilter_QueryInterface(&filter->IFWXFilter_iface, riid, ppv);
    IFWXFilter_Release(&filter->IFWXFilter_iface);
    return hr;
}

/* ==================================================================== KitSession */

static KitSession *impl_from_IFWXSessionFilter(IFWXSessionFilter *iface)
{
    return CONTAINING_RECORD(iface, KitSession, IFWXSessionFilter_iface);
}

static HRESULT STDMETHODCALLTYPE Session_QueryInterface(IFWXSessionFilter *iface, REFIID riid, void **ppv)
{
    return fwx_query_single(iface, &IID_IFWXSessionFilter, riid, ppv);
}

static ULONG STDMETHODCALLTYPE Session_AddRef(IFWXSessionFilter *iface)
{
    return InterlockedIncrement(&impl_from_IFWXSessionFilter(iface)->refs);
}

/* Detach can race an event on another thread, hence the lock. */
static void session_drop(KitSession *sf)
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

static ULONG STDMETHODCALLTYPE Session_Release(IFWXSessionFilter *iface)
{
    KitSession *sf = impl_from_IFWXSessionFilter(iface);
    LONG refs = InterlockedDecrement(&sf->refs);

    if (refs == 0) {
        session_drop(sf);   /* released without Detach */
        DeleteCriticalSection(&sf->lock);
        filter_drop(sf->filter);
        fwx_free(sf);
        fwx_object_destroyed();
    }
    return refs;
}

static HRESULT STDMETHODCALLTYPE Session_FirewallEventHandler(IFWXSessionFilter *iface,
                                                              const FirewallEvent *event)
{
    KitSession *sf = impl_from_IFWXSessionFilter(iface);
    KitCall call = { .type = KIT_CALL_EVENT };

    call.event = event;
    observe(sf->filter, &call);
    if (sf->filter->cls->event)
        return sf->filter->cls->event(sf, event);
    return kit_session_default_event(sf, event);
}

static HRESULT STDMETHODCALLTYPE Session_Detach(IFWXSessionFilter *iface)
{
    KitSession *sf = impl_from_IFWXSessionFilter(iface);

    observe_simple(sf->filter, KIT_CALL_SESSION_DETACH);
    session_drop(sf);
    return S_OK;
}

static const IFWXSessionFilterVtbl session_vtbl = {
    Session_QueryInterface,
    Session_AddRef,
    Session_Release,
    Session_FirewallEventHandler,
    Session_Detach,
};

static HRESULT session_create(KitFilter *filter, IFWXSession *session, IFWXFirewall *firewall,
                              IFWXSessionFilter **out)
{
    KitSession *sf = fwx_alloc(sizeof(*sf));

    if (!sf)
        return E_OUTOFMEMORY;
    sf->IFWXSessionFilter_iface.lpVtbl = &session_vtbl;
    sf->refs = 1;
    sf->filter = filter_hold(filter);
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

BOOL kit_session_get(KitSession *sf, IFWXSession **session, IFWXFirewall **firewall)
{
    BOOL attached;

    EnterCriticalSection(&sf->lock);
    attached = sf->firewall != NULL;
    if (session) {
        *session = attached ? sf->session : NULL;
        if (*session)
            IFWXSession_AddRef(*session);
    }
    if (firewall) {
        *firewall = attached ? sf->firewall : NULL;
        if (*firewall)
            IFWXFirewall_AddRef(*firewall);
    }
    LeaveCriticalSection(&sf->lock);
    return attached;
}

/* The connection keeps the pump alive; our creation reference is not needed past the
 * attach. A pump we cannot create fails the request: better than an unfiltered one. */
HRESULT kit_session_attach_pump(KitSession *sf, IFWXConnection *connection)
{
    IFWXDataFilter *df;
    HRESULT hr;

    if (!connection)
        return S_OK;
    if (FAILED(hr = kit_session_create_pump(sf, &df)))
        return hr;
    hr = IFWXConnection_AttachDataFilter(connection, df, fwx_dfpc_Middle, NULL);
    if (FAILED(hr))
        fwx_trace("AttachDataFilter failed: 0x%08lx", (unsigned long)hr);
    IFWXDataFilter_Release(df);
    return S_OK;
}

HRESULT kit_session_emulate_pump(KitSession *sf, IFWXConnection *connection)
{
    IFWXDataFilter *df;
    HRESULT hr;

    if (!connection)
        return S_OK;
    if (FAILED(hr = kit_session_create_pump(sf, &df)))
        return hr;
    hr = IFWXConnection_EmulateConnection(connection, df, NULL, 0, NULL, 0, NULL);
    if (FAILED(hr))
        fwx_trace("EmulateConnection failed: 0x%08lx", (unsigned long)hr);
    IFWXDataFilter_Release(df);
    return hr;
}

BOOL kit_event_connection(const FirewallEvent *event, IFWXConnection **connection)
{
    switch (event->EventType) {
    case fwx_Connect_Tcp:
        *connection = event->Parameters.Connect.piConnection;
        return TRUE;
    case fwx_AcceptedConnection:
        *connection = event->Parameters.Accept.piConnectionAccepted;
        return TRUE;
    default:
        *connection = NULL;
        return FALSE;
    }
}

HRESULT kit_session_default_event(KitSession *sf, const FirewallEvent *event)
{
    IFWXConnection *connection;

    if (!kit_event_connection(event, &connection))
        return S_OK;   /* fwx_ConnectionTerminating included: we keep no connection */
    return kit_session_attach_pump(sf, connection);
}

/* ==================================================================== KitPump */

/* UserData of our I/O: the side the bytes were read from, plus IO_SEND when the
 * operation is the Send of those bytes out of the other side. */
#define IO_SEND          2
#define IO_TAG(from, op) ((UserContextType)((from) | (op)))
#define IO_FROM(tag)     ((enum kit_side)((tag) & 1))

/* Added for KIT_REPLY: the Send goes back out of FROM itself; with IO_REPLY_FIN it is
 * the last one, and FROM is half-closed once it completes. */
#define IO_REPLY         4
#define IO_REPLY_FIN     8

static void on_replied(KitPump *pump, enum kit_side from, BOOL fin, BOOL ok, DWORD error);
static void on_datagram(KitPump *pump, enum kit_side from, const KitCall *call,
                        IFWXIOBuffer *buffer, SOCKADDR *ext, INT ext_len);

static KitPump *impl_from_IFWXDataFilter(IFWXDataFilter *iface)
{
    return CONTAINING_RECORD(iface, KitPump, IFWXDataFilter_iface);
}

static KitPump *impl_from_IFWXIOCompletion(IFWXIOCompletion *iface)
{
    return CONTAINING_RECORD(iface, KitPump, IFWXIOCompletion_iface);
}

/* ---------------------------------------------------------------- IUnknown, shared by both interfaces */

static HRESULT pump_query(KitPump *pump, REFIID riid, void **ppv)
{
    if (!ppv)
        return E_POINTER;
    if (IsEqualIID(riid, &IID_IUnknown) || IsEqualIID(riid, &IID_IFWXDataFilter))
        *ppv = &pump->IFWXDataFilter_iface;
    else if (IsEqualIID(riid, &IID_IFWXIOCompletion))
        *ppv = &pump->IFWXIOCompletion_iface;
    else {
        *ppv = NULL;
        return E_NOINTERFACE;
    }
    InterlockedIncrement(&pump->refs);
    return S_OK;
}

static ULONG pump_addref(KitPump *pump)
{
    return InterlockedIncrement(&pump->refs);
}

/* Releases whatever Detach did not (a host that never called it). */
static ULONG pump_release(KitPump *pump)
{
    LONG refs = InterlockedDecrement(&pump->refs);

    if (refs == 0) {
        if (pump->sockets[KIT_INTERNAL])
            IFWXSocket_Release(pump->sockets[KIT_INTERNAL]);
        if (pump->sockets[KIT_EXTERNAL])
            IFWXSocket_Release(pump->sockets[KIT_EXTERNAL]);
        if (pump->firewall)
            IFWXFirewall_Release(pump->firewall);
        if (pump->connection)
            IFWXConnection_Release(pump->connection);
        DeleteCriticalSection(&pump->lock);
        if (pump->filter->cls->pump_destroy)
            pump->filter->cls->pump_destroy(pump);
        filter_drop(pump->filter);
        fwx_free(pump);
        fwx_object_destroyed();
    }
    return refs;
}

/* ---------------------------------------------------------------- the pump */

/* The socket on SIDE with a reference of the caller's own, or NULL once detached (a
 * keep_at_detach pump still holds it then). The lock is not held while we call the
 * socket (the host may call us back), so the extra reference is what keeps the socket
 * alive if Detach runs meanwhile. AddRef is the one host call made under the lock: it
 * cannot call back into us. */
static IFWXSocket *pump_socket(KitPump *pump, enum kit_side side)
{
    IFWXSocket *socket;

    EnterCriticalSection(&pump->lock);
    socket = pump->detached ? NULL : pump->sockets[side];
    if (socket)
        IFWXSocket_AddRef(socket);
    LeaveCriticalSection(&pump->lock);
    return socket;
}

/* Aborts the connection from SIDE: a reset towards that peer, which makes the host fail
 * whatever is pending there and so stops the other direction too. */
static void pump_abort(KitPump *pump, enum kit_side side)
{
    IFWXSocket *socket = pump_socket(pump, side);

    if (socket) {
        IFWXSocket_Close(socket, TRUE);
        IFWXSocket_Release(socket);
    }
}

/* Forwards a half-close: no more data will come from the other side. */
static void pump_shutdown(KitPump *pump, enum kit_side side)
{
    IFWXSocket *socket = pump_socket(pump, side);

    if (socket) {
        IFWXSocket_Shutdown(socket, FALSE);
        IFWXSocket_Release(socket);
    }
}

/* Asks for the next bytes from FROM. A NULL buffer lets the host supply one, usually the
 * very buffer the previous link sent, so no data is copied. */
static void pump_recv(KitPump *pump, enum kit_side from)
{
    IFWXSocket *socket = pump_socket(pump, from);
    HRESULT hr;

    if (!socket)
        return;
    hr = IFWXSocket_Recv(socket, NULL, &pump->IFWXIOCompletion_iface, IO_TAG(from, 0));
    IFWXSocket_Release(socket);
    if (FAILED(hr)) {   /* no completion will come: this direction is dead */
        fwx_trace("Recv failed: 0x%08lx", (unsigned long)hr);
        pump_abort(pump, KIT_OTHER(from));
    }
}

/* Passes a buffer read from FROM on to the other side. Send takes its own reference on
 * the buffer, so we need none beyond this call. */
static void pump_send(KitPump *pump, enum kit_side from, IFWXIOBuffer *buffer)
{
    IFWXSocket *socket = pump_socket(pump, KIT_OTHER(from));
    HRESULT hr;

    if (!socket)
        return;
    hr = IFWXSocket_Send(socket, buffer, &pump->IFWXIOCompletion_iface, IO_TAG(from, IO_SEND));
    IFWXSocket_Release(socket);
    if (FAILED(hr)) {
        fwx_trace("Send failed: 0x%08lx", (unsigned long)hr);
        pump_abort(pump, from);
    }
}

static void pump_reply(KitPump *pump, enum kit_side from, BOOL eof, IFWXIOBuffer *out);

/* Carries out the class's verdict on what came from FROM (BUFFER, or the end of the
 * stream when EOF). */
static void pump_apply(KitPump *pump, enum kit_side from, BOOL eof, KitVerdict verdict,
                       IFWXIOBuffer *buffer, IFWXIOBuffer *out)
{
    if ((verdict == KIT_SEND || (verdict == KIT_REPLY && !eof)) && !out) {
        fwx_trace("KIT_SEND without a buffer: aborting the connection");
        verdict = KIT_ABORT;
    }
    switch (verdict) {
    case KIT_PASS:
        if (eof)
            pump_shutdown(pump, KIT_OTHER(from));
        else
            pump_send(pump, from, buffer);
        break;
    case KIT_SEND:
        if (eof)
            pump->flushing[from] = TRUE;
        pump_send(pump, from, out);
        break;
    case KIT_HOLD:
        if (!eof)
            pump_recv(pump, from);
        break;
    case KIT_ABORT:
        pump_abort(pump, KIT_INTERNAL);
        pump_abort(pump, KIT_EXTERNAL);
        break;
    case KIT_REPLY:
        pump_reply(pump, from, eof, out);
        break;
    }
    if (out)
        IFWXIOBuffer_Release(out);
}

static void on_received(KitPump *pump, enum kit_side from, const KitCall *call, IFWXIOBuffer *buffer)
{
    const KitClass *cls = pump->filter->cls;
    IFWXIOBuffer *out = NULL;
    KitVerdict verdict;

    if (!call->ok || !call->buffer) {
        if (!call->ok && call->error != ERROR_OPERATION_ABORTED && !cls->observe)
            fwx_trace("receive failed: error %lu", (unsigned long)call->error);
        pump_abort(pump, KIT_OTHER(from));
    }
    else if (call->size == 0) {
        verdict = cls->eof ? cls->eof(pump, from, &out) : KIT_PASS;
        pump_apply(pump, from, TRUE, verdict, NULL, out);
    }
    else {
        verdict = cls->data ? cls->data(pump, from, buffer, call->size, &out) : KIT_PASS;
        pump_apply(pump, from, FALSE, verdict, buffer, out);
    }
}

/* The other side accepted the bytes from FROM: now, and only now, read more from FROM;
 * or, when they were the last ones (an eof's KIT_SEND), pass the half-close on. A failed
 * completion is traced here and in on_received unless the class observes: it saw it. */
static void on_sent(KitPump *pump, enum kit_side from, BOOL ok, DWORD error)
{
    if (!ok) {
        if (error != ERROR_OPERATION_ABORTED && !pump->filter->cls->observe)
            fwx_trace("send failed: error %lu", (unsigned long)error);
        pump_abort(pump, from);
    }
    else if (pump->flushing[from])
        pump_shutdown(pump, KIT_OTHER(from));
    else
        pump_recv(pump, from);
}

/* ---------------------------------------------------------------- IFWXDataFilter */

static HRESULT STDMETHODCALLTYPE DataFilter_QueryInterface(IFWXDataFilter *iface, REFIID riid, void **ppv)
{
    return pump_query(impl_from_IFWXDataFilter(iface), riid, ppv);
}

static ULONG STDMETHODCALLTYPE DataFilter_AddRef(IFWXDataFilter *iface)
{
    return pump_addref(impl_from_IFWXDataFilter(iface));
}

static ULONG STDMETHODCALLTYPE DataFilter_Release(IFWXDataFilter *iface)
{
    return pump_release(impl_from_IFWXDataFilter(iface));
}

/* The signal to start pumping: both directions begin with a Recv. */
static HRESULT set_sockets(KitPump *pump, IFWXSocket *internal, IFWXSocket *external,
                           IFWXConnection *connection)
{
    BOOL usable;

    observe_simple(pump->filter, KIT_CALL_SET_SOCKETS);
    if (pump->filter->cls->set_sockets)
        pump->filter->cls->set_sockets(pump, internal, external, connection);
    /* An emulator (KitClass.emulator) has no external socket until it makes one. */
    if (!internal || (!external && !pump->filter->cls->emulator))
        return E_INVALIDARG;

    EnterCriticalSection(&pump->lock);
    usable = !pump->detached && !pump->sockets[KIT_INTERNAL];
    if (usable) {
        IFWXSocket_AddRef(internal);
        if (external)
            IFWXSocket_AddRef(external);
        if (connection)
            IFWXConnection_AddRef(connection);
        pump->sockets[KIT_INTERNAL] = internal;
        pump->sockets[KIT_EXTERNAL] = external;
        pump->connection = connection;
    }
    LeaveCriticalSection(&pump->lock);
    if (!usable)
        return FWX_E_TERMINATING;

    pump_recv(pump, KIT_INTERNAL);
    if (external)
        pump_recv(pump, KIT_EXTERNAL);
    return S_OK;
}

static HRESULT STDMETHODCALLTYPE DataFilter_SetSockets(IFWXDataFilter *iface, IFWXSocket *internal,
                                                       IFWXSocket *external, IFWXConnection *connection,
                                                       IUnknown *context)
{
    KitPump *pump = impl_from_IFWXDataFilter(iface);

    return answer(pump->filter, KIT_CALL_SET_SOCKETS, set_sockets(pump, internal, external, connection),
                  NULL, NULL, pump);
}

HRESULT kit_pump_set_external(KitPump *pump, IFWXSocket *external)
{
    HRESULT hr = S_OK;

    if (!external)
        return E_INVALIDARG;
    EnterCriticalSection(&pump->lock);
    if (pump->detached)
        hr = FWX_E_TERMINATING;
    else if (pump->sockets[KIT_EXTERNAL])
        hr = FWX_E_ALREADY_EXISTS;
    else {
        IFWXSocket_AddRef(external);
        pump->sockets[KIT_EXTERNAL] = external;
        pump->own_external = TRUE;
    }
    LeaveCriticalSection(&pump->lock);
    if (SUCCEEDED(hr))
        pump_recv(pump, KIT_EXTERNAL);
    return hr;
}

/* The connection is over (or was never set up): drop every reference we hold. Pending
 * operations complete with an error and find no sockets left. */
static HRESULT STDMETHODCALLTYPE DataFilter_Detach(IFWXDataFilter *iface)
{
    KitPump *pump = impl_from_IFWXDataFilter(iface);
    IFWXSocket *internal, *external;
    IFWXFirewall *firewall;
    IFWXConnection *connection;
    BOOL own_external;

    observe_simple(pump->filter, KIT_CALL_PUMP_DETACH);
    if (pump->filter->cls->pump_detach)
        pump->filter->cls->pump_detach(pump);
    EnterCriticalSection(&pump->lock);
    pump->detached = TRUE;
    if (pump->filter->cls->keep_at_detach) {   /* the leak pump_release undoes */
        LeaveCriticalSection(&pump->lock);
        return S_OK;
    }
    own_external = pump->own_external;
    internal = pump->sockets[KIT_INTERNAL];
    external = pump->sockets[KIT_EXTERNAL];
    firewall = pump->firewall;
    connection = pump->connection;
    pump->sockets[KIT_INTERNAL] = pump->sockets[KIT_EXTERNAL] = NULL;
    pump->firewall = NULL;
    pump->connection = NULL;
    LeaveCriticalSection(&pump->lock);

    if (internal)
        IFWXSocket_Release(internal);
    if (external && own_external)
        IFWXSocket_Close(external, FALSE);   /* ours (a network socket): it ends with us */
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
    return pump_query(impl_from_IFWXIOCompletion(iface), riid, ppv);
}

static ULONG STDMETHODCALLTYPE Completion_AddRef(IFWXIOCompletion *iface)
{
    return pump_addref(impl_from_IFWXIOCompletion(iface));
}

static ULONG STDMETHODCALLTYPE Completion_Release(IFWXIOCompletion *iface)
{
    return pump_release(impl_from_IFWXIOCompletion(iface));
}

/* Runs on a host thread; the two directions may complete at the same time on two threads,
 * but each direction has only one operation in flight, so its steps never overlap. */
static HRESULT STDMETHODCALLTYPE Completion_CompleteAsyncIO(IFWXIOCompletion *iface, BOOL fSuccess,
                                                            DWORD Win32ErrorCode, IFWXIOBuffer *pIOBuffer,
                                                            UserContextType UserData,
                                                            LPSOCKADDR ExternalAddress,
                                                            INT ExternalAddressLength)
{
    KitPump *pump = impl_from_IFWXIOCompletion(iface);
    enum kit_side from = IO_FROM(UserData);
    KitCall call = { .type = KIT_CALL_COMPLETION };
    DWORD allocated;

    call.send = (UserData & IO_SEND) != 0;
    call.side = call.send && !(UserData & IO_REPLY) ? KIT_OTHER(from) : from;
    call.ok = fSuccess;
    call.error = Win32ErrorCode;
    if (!call.send && fSuccess && pIOBuffer)
        call.buffer = SUCCEEDED(IFWXIOBuffer_GetBufferSizes(pIOBuffer, &allocated, &call.size));
    observe(pump->filter, &call);
    if (!call.send && fSuccess && pump->filter->cls->received)
        pump->filter->cls->received(pump, from, ExternalAddress, ExternalAddressLength);

    if (pump->datagrams)
        on_datagram(pump, from, &call, pIOBuffer, ExternalAddress, ExternalAddressLength);
    else if (UserData & IO_REPLY)
        on_replied(pump, from, (UserData & IO_REPLY_FIN) != 0, fSuccess, Win32ErrorCode);
    else if (call.send)
        on_sent(pump, from, fSuccess, Win32ErrorCode);
    else
        on_received(pump, from, &call, pIOBuffer);
    return answer(pump->filter, KIT_CALL_COMPLETION, S_OK, NULL, NULL, pump);
}

static const IFWXIOCompletionVtbl completion_vtbl = {
    Completion_QueryInterface,
    Completion_AddRef,
    Completion_Release,
    Completion_CompleteAsyncIO,
};

static HRESULT pump_create(KitFilter *filter, IFWXFirewall *firewall, IFWXDataFilter **out)
{
    KitPump *pump = fwx_alloc(sizeof(*pump));
    HRESULT hr;

    if (!pump)
        return E_OUTOFMEMORY;
    pump->filter = filter;
    if (filter->cls->pump_create && FAILED(hr = filter->cls->pump_create(pump))) {
        fwx_free(pump);
        return hr;
    }
    pump->IFWXDataFilter_iface.lpVtbl = &data_filter_vtbl;
    pump->IFWXIOCompletion_iface.lpVtbl = &completion_vtbl;
    pump->refs = 1;
    filter_hold(filter);
    InitializeCriticalSection(&pump->lock);
    IFWXFirewall_AddRef(firewall);
    pump->firewall = firewall;
    fwx_object_created();
    *out = &pump->IFWXDataFilter_iface;
    return S_OK;
}

HRESULT kit_pump_create_buffer(KitPump *pump, DWORD size, IFWXIOBuffer **buffer)
{
    IFWXFirewall *firewall;
    HRESULT hr;

    *buffer = NULL;
    EnterCriticalSection(&pump->lock);
    firewall = pump->firewall;
    if (firewall)
        IFWXFirewall_AddRef(firewall);
    LeaveCriticalSection(&pump->lock);
    if (!firewall)
        return FWX_E_TERMINATING;
    hr = IFWXFirewall_CreateBuffer(firewall, size, buffer);
    IFWXFirewall_Release(firewall);
    if (FAILED(hr))
        *buffer = NULL;
    return hr;
}

/* ==================================================================== added */

HRESULT kit_session_create_pump(KitSession *sf, IFWXDataFilter **out)
{
    IFWXFirewall *firewall;
    HRESULT hr;

    *out = NULL;
    /* Our own reference, in case Detach runs meanwhile on another thread. */
    if (!kit_session_get(sf, NULL, &firewall))
        return FWX_E_TERMINATING;
    hr = pump_create(sf->filter, firewall, out);
    IFWXFirewall_Release(firewall);
    return hr;
}

/* KIT_REPLY: OUT goes back to FROM; the next Recv from FROM waits for its completion
 * (on_replied). At eof with nothing to send, FROM is half-closed at once. */
static void pump_reply(KitPump *pump, enum kit_side from, BOOL eof, IFWXIOBuffer *out)
{
    IFWXSocket *socket;
    HRESULT hr;

    if (!out) {
        pump_shutdown(pump, from);
        return;
    }
    socket = pump_socket(pump, from);
    if (!socket)
        return;
    hr = IFWXSocket_Send(socket, out, &pump->IFWXIOCompletion_iface,
                         IO_TAG(from, IO_SEND | IO_REPLY | (eof ? IO_REPLY_FIN : 0)));
    if (FAILED(hr)) {
        fwx_trace("Send failed: 0x%08lx", (unsigned long)hr);
        IFWXSocket_Close(socket, TRUE);
    }
    IFWXSocket_Release(socket);
}

static void on_replied(KitPump *pump, enum kit_side from, BOOL fin, BOOL ok, DWORD error)
{
    if (!ok) {
        if (error != ERROR_OPERATION_ABORTED && !pump->filter->cls->observe)
            fwx_trace("send failed: error %lu", (unsigned long)error);
        pump_abort(pump, from);
    }
    else if (fin)
        pump_shutdown(pump, from);
    else
        pump_recv(pump, from);
}

IFWXConnection *kit_pump_get_connection(KitPump *pump)
{
    IFWXConnection *connection;

    EnterCriticalSection(&pump->lock);
    connection = pump->detached ? NULL : pump->connection;
    if (connection)
        IFWXConnection_AddRef(connection);
    LeaveCriticalSection(&pump->lock);
    return connection;
}

/* ---------------------------------------------------------------- datagram mode (KitPump.datagrams) */

static void dgram_recv(KitPump *pump, enum kit_side from)
{
    IFWXSocket *socket = pump_socket(pump, from);
    HRESULT hr;

    if (!socket)
        return;
    hr = IFWXSocket_Recv(socket, NULL, &pump->IFWXIOCompletion_iface, IO_TAG(from, 0));
    IFWXSocket_Release(socket);
    if (FAILED(hr))
        fwx_trace("Recv failed: 0x%08lx", (unsigned long)hr);
}

/* A datagram goes on with SendTo and the external address it came with: on the external
 * socket that is its target, on the internal socket the source it should appear to come
 * from (reference 3.11). A stream (no address) goes on with Send. */
static void dgram_send(KitPump *pump, enum kit_side from, IFWXIOBuffer *buffer, SOCKADDR *ext,
                       INT ext_len)
{
    IFWXSocket *socket = pump_socket(pump, KIT_OTHER(from));
    HRESULT hr;

    if (!socket)
        return;
    if (ext)
        hr = IFWXSocket_SendTo(socket, buffer, ext, ext_len, &pump->IFWXIOCompletion_iface,
                               IO_TAG(from, IO_SEND));
    else
        hr = IFWXSocket_Send(socket, buffer, &pump->IFWXIOCompletion_iface, IO_TAG(from, IO_SEND));
    IFWXSocket_Release(socket);
    if (FAILED(hr)) {
        fwx_trace("Send failed: 0x%08lx", (unsigned long)hr);
        dgram_recv(pump, from);   /* the datagram is lost; the path goes on */
    }
}

static void on_datagram(KitPump *pump, enum kit_side from, const KitCall *call,
                        IFWXIOBuffer *buffer, SOCKADDR *ext, INT ext_len)
{
    const KitClass *cls = pump->filter->cls;
    IFWXIOBuffer *out = NULL;
    KitVerdict verdict;

    if (!call->ok) {
        if (call->error != ERROR_OPERATION_ABORTED && call->error != WSAECONNABORTED)
            fwx_trace("%s failed: error %lu", call->send ? "send" : "receive",
                      (unsigned long)call->error);
        return;   /* the path is ending: nothing more to post */
    }
    if (call->send || !call->buffer) {
        dgram_recv(pump, from);
        return;
    }
    verdict = cls->data ? cls->data(pump, from, buffer, call->size, &out) : KIT_PASS;
    if (verdict == KIT_SEND && !out)
        verdict = KIT_HOLD;   /* nothing to send: the datagram is dropped */
    switch (verdict) {
    case KIT_PASS:
        dgram_send(pump, from, buffer, ext, ext_len);
        break;
    case KIT_SEND:
        dgram_send(pump, from, out, ext, ext_len);
        break;
    case KIT_ABORT:
        pump_abort(pump, KIT_INTERNAL);
        pump_abort(pump, KIT_EXTERNAL);
        break;
    default:   /* KIT_HOLD; KIT_REPLY has no datagram meaning */
        dgram_recv(pump, from);
        break;
    }
    if (out)
        IFWXIOBuffer_Release(out);
}
