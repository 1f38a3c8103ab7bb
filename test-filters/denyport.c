/*
 * denyport.c - a test filter that refuses connections by port and never touches data.
 * On fwx_Connect_Tcp (an outbound connect, checked on its destination port) and on
 * fwx_AcceptedConnection (an inbound connection to a published port, checked on the
 * local port) it calls IFWXConnection::Deny(0) when the port is listed; otherwise it
 * does nothing and attaches no data filter, so the host pumps the data itself.
 *   FWX_DENYPORT_PORTS   comma-separated ports, default "23"; read at FilterInit
 *
 * This file owns the port list and the event handler; the objects are the filter kit's
 * (fltkit.h). Unlike passthrough.c it gets its per-session hook events from
 * IFWXFirewall::DuplicateFilterHookEvents rather than from CoTaskMemAlloc, which is the
 * other way ISA 2000 allows, so the host's implementation of it gets exercised.
 */
#include "fltkit.h"

#include <stdlib.h>

/* {F0E309D6-6740-4796-BD69-0766A525EF79} */
const CLSID fwx_filter_clsid =
    { 0xf0e309d6, 0x6740, 0x4796, { 0xbd, 0x69, 0x07, 0x66, 0xa5, 0x25, 0xef, 0x79 } };
const char fwx_filter_name[] = "denyport";

#define MAX_DENIED_PORTS 64

/* Set by FilterInit before any traffic and only read afterwards. */
static USHORT denied_ports[MAX_DENIED_PORTS];
static int denied_count;

/* ==================================================================== the port list */

/* Parses "23, 80,8080". Entries that are not ports are skipped with a trace rather than
 * failing the filter: FilterInit has no way to report a bad setting. */
static BOOL load_ports(KitFilter *filter, IFWXFirewall *firewall)
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
    return TRUE;
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

/* ==================================================================== the session filter */

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

/* No data filter: the host pumps the bytes of a connection we let through itself. */
static HRESULT denyport_event(KitSession *session, const FirewallEvent *event)
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

static const KitClass denyport_class = {
    .events = fwx_Connect_Tcp | fwx_AcceptedConnection | FWX_ALL_SOURCES,
    .session_hooks = KIT_HOOKS_DUPLICATE,
    .init = load_ports,
    .event = denyport_event,
};

HRESULT fwx_filter_create(REFIID riid, void **ppv)
{
    return kit_filter_create(&denyport_class, riid, ppv);
}
