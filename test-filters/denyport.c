/*
 * denyport.c - a test filter that refuses connections by port and never touches data.
 * On fwx_Connect_Tcp (an outbound connect, checked on its destination port) and on
 * fwx_AcceptedConnection (an inbound connection to a published port, checked on the
 * local port) it calls IFWXConnection::Deny(0) when the port is listed; otherwise it
 * does nothing and attaches no data filter, so the host pumps the data itself.
 *   FWX_DENYPORT_PORTS   comma-separated ports, default "23"; read at FilterInit
 *
 * This file owns the filter object and the session filter, and the port list. Unlike
 * passthrough.c it gets its per-session hook events from
 * IFWXFirewall::DuplicateFilterHookEvents rather than from CoTaskMemAlloc, which is the
 * other way ISA 2000 allows, so the host's implementation of it gets exercised.
 */
#define COBJMACROS
#define CONST_VTABLE
#include "fltbase.h"

#include <stdlib.h>

/* {F0E309D6-6740-4796-BD69-0766A525EF79} */
const CLSID fwx_filter_clsid =
    { 0xf0e309d6, 0x6740, 0x4796, { 0xbd, 0x69, 0x07, 0x66, 0xa5, 0x25, 0xef, 0x79 } };
const char fwx_filter_name[] = "denyport";

#define DENYPORT_EVENTS (fwx_Connect_Tcp | fwx_AcceptedConnection | FWX_ALL_SOURCES)
#define MAX_DENIED_PORTS 64

/* Set by FilterInit before any traffic and only read afterwards. */
static USHORT denied_ports[MAX_DENIED_PORTS];
static int denied_count;

static HRESULT session_filter_create(IFWXSession *session, IFWXSessionFilter **out);

/* ==================================================================== the port list */

/* Parses "23, 80,8080". Entries that are not ports are skipped with a trace rather than
 * failing the filter: FilterInit has no way to report a bad setting. */
static void load_ports(void)
{
    char *list = fwx_getenv("FWX_DENYPORT_PORTS", "23");
    char *item, *next;

    denied_count = 0;
    for (item = list; item && *item; item = next) {
        char *end;
        unsigned long port = strtoul(item, &end, 10);

        while (*end == ' ' || *end == '\t')
            end++;
        next = end;
        while (*next && *next != ',')
            next++;
        if (end == item || end != next || port == 0 || port > 65535)
            fwx_trace("FWX_DENYPORT_PORTS: ignoring \"%.*s\"", (int)(next - item), item);
        else if (denied_count == MAX_DENIED_PORTS)
            fwx_trace("FWX_DENYPORT_PORTS: more than %d ports; ignoring %lu", MAX_DENIED_PORTS, port);
        else
            denied_ports[denied_count++] = (USHORT)port;
        if (*next == ',')
            next++;
    }
    fwx_free(list);
    fwx_trace("denying %d port(s)", denied_count);
}

static BOOL port_denied(int port)
{
    int i;

    for (i = 0; i < denied_count; i++)
        if (denied_ports[i] == port)
            return TRUE;
    return FALSE;
}

/* The port of a Win32 socket address (network order inside), or -1. */
static int address_port(const SOCKADDR *address, DWORD length)
{
    if (!address)
        return -1;
    if (address->sa_family == AF_INET && length >= sizeof(SOCKADDR_IN))
        return ntohs(((const SOCKADDR_IN *)address)->sin_port);
    if (address->sa_family == AF_INET6 && length >= sizeof(SOCKADDR_IN6))
        return ntohs(((const SOCKADDR_IN6 *)address)->sin6_port);
    return -1;
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

static HRESULT STDMETHODCALLTYPE Filter_FilterInit(IFWXFilter *iface, IFWXFirewall *firewall,
                                                   PFwxFilterHookEvents *ppHooks)
{
    Filter *filter = impl_from_IFWXFilter(iface);

    load_ports();
    IFWXFirewall_AddRef(firewall);
    filter->firewall = firewall;
    filter->hooks.dwGlobalEvents = DENYPORT_EVENTS;
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

/* The firewall makes the CoTaskMem copy of our hook events that the host will free. A
 * failure here is returned as is: it fails the triggering request, loudly. */
static HRESULT STDMETHODCALLTYPE Filter_AttachToSession(IFWXFilter *iface, IFWXSession *session,
                                                        IFWXSessionFilter **ppSessionFilter,
                                                        PFwxFilterHookEvents *ppHooks)
{
    Filter *filter = impl_from_IFWXFilter(iface);
    HRESULT hr;

    *ppSessionFilter = NULL;
    *ppHooks = NULL;
    if (!filter->firewall)
        return FWX_E_TERMINATING;
    hr = IFWXFirewall_DuplicateFilterHookEvents(filter->firewall, &filter->hooks, ppHooks);
    if (FAILED(hr)) {
        fwx_trace("DuplicateFilterHookEvents failed: 0x%08lx", (unsigned long)hr);
        *ppHooks = NULL;
        return hr;
    }
    hr = session_filter_create(session, ppSessionFilter);
    if (FAILED(hr)) {
        CoTaskMemFree(*ppHooks);
        *ppHooks = NULL;
    }
    return hr;
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
        if (sf->session)
            IFWXSession_Release(sf->session);
        fwx_free(sf);
        fwx_object_destroyed();
    }
    return refs;
}

/* Deny is only valid inside the event handler, which is where we are. */
static void check_port(IFWXConnection *connection, const SOCKADDR *address, DWORD length,
                       const char *what)
{
    int port = address_port(address, length);
    HRESULT hr;

    if (!connection || !port_denied(port))
        return;
    hr = IFWXConnection_Deny(connection, 0);
    fwx_trace("denied %s port %d: 0x%08lx", what, port, (unsigned long)hr);
}

static HRESULT STDMETHODCALLTYPE SessionFilter_FirewallEventHandler(IFWXSessionFilter *iface,
                                                                    const FirewallEvent *event)
{
    const FwxFirewallEventParameters *p = &event->Parameters;

    switch (event->EventType) {
    case fwx_Connect_Tcp:
        check_port(p->Connect.piConnection, p->Connect.Address, p->Connect.AddressLength,
                   "outbound connect to");
        break;
    case fwx_AcceptedConnection:
        check_port(p->Accept.piConnectionAccepted, p->Accept.LocalAddress,
                   p->Accept.LocalAddressLength, "inbound connection to");
        break;
    default:
        break;
    }
    return S_OK;
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
