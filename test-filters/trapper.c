/*
 * trapper.c - a passthrough that calls a host method slot beyond the ones the host
 * declares, as a filter built against a different vtable layout would (the ISA 2000
 * order of IFWXFirewall and IFWXConnection is unknown, reference 9.1). The host's trap
 * slot must log the interface and slot and end only that session (tests/abi.sh).
 *
 * Environment, read in FilterInit:
 *   FWX_TRAPPER_IFACE  connection (default): IFWXConnection, from FirewallEventHandler;
 *                      firewall: IFWXFirewall, from FirewallEventHandler;
 *                      socket: IFWXSocket (the internal one), from SetSockets, after
 *                      the pump has started
 *   FWX_TRAPPER_EXTRA  how far past the last declared method, default 1 (0 = the first
 *                      slot after them)
 *   FWX_TRAPPER_PORTS  comma-separated ports (at most 16) whose connections trap; the
 *                      filter hooks only these (as crasher.c); unset or empty: all
 * The call passes three arguments the host cannot know the count of.
 */
#include "faultkit.h"

/* {C3E1A0F2-7B44-4E19-A6D3-5F0B2C8E9D71} */
const CLSID fwx_filter_clsid =
    { 0xc3e1a0f2, 0x7b44, 0x4e19, { 0xa6, 0xd3, 0x5f, 0x0b, 0x2c, 0x8e, 0x9d, 0x71 } };
const char fwx_filter_name[] = "trapper";

enum which { TRAP_CONNECTION, TRAP_FIREWALL, TRAP_SOCKET };
static enum which which = TRAP_CONNECTION;
static unsigned extra = 1;
static char *ports;
static FwxPortRangeEvents ranges[FK_MAX_PORTS];

typedef HRESULT (STDMETHODCALLTYPE *unknown_method)(void *This, DWORD a, DWORD b, DWORD c);

/* Calls slot nknown + extra of obj's vtable; the host must not return here. */
static HRESULT call_beyond(void *obj, unsigned nknown, const char *iface)
{
    void **vtbl = *(void ***)obj;
    unsigned slot = nknown + extra;
    HRESULT hr;
    fwx_trace("calling %s slot %u", iface, slot);
    hr = ((unknown_method)vtbl[slot])(obj, 0x11111111, 0x22222222, 0x33333333);
    fwx_trace("%s slot %u returned 0x%08lx: the host let a trap return", iface, slot,
              (unsigned long)hr);
    return hr;
}

static BOOL trapper_init(KitFilter *filter, IFWXFirewall *firewall)
{
    char *text = fwx_getenv("FWX_TRAPPER_IFACE", "connection");
    if (text && !strcmp(text, "firewall"))
        which = TRAP_FIREWALL;
    else if (text && !strcmp(text, "socket"))
        which = TRAP_SOCKET;
    fwx_free(text);
    extra = (unsigned)fk_env_ulong("FWX_TRAPPER_EXTRA", 1);
    fwx_free(ports);
    ports = fwx_getenv("FWX_TRAPPER_PORTS", "");
    fk_hook_ports(filter, ports, ranges);
    return TRUE;
}

/* The connection and firewall traps, before the pump goes on the connection (the
 * firewall is FilterInit's, which the filter object holds). */
static HRESULT trapper_event(KitSession *session, const FirewallEvent *event)
{
    IFWXFirewall *firewall = session->filter->firewall;
    IFWXConnection *connection;
    HRESULT hr = S_OK;

    if (!kit_event_connection(event, &connection) || !fk_port_listed(ports, fk_event_port(event)))
        return S_OK;
    if (which == TRAP_CONNECTION)
        hr = call_beyond(connection, sizeof(IFWXConnectionVtbl) / sizeof(void *), "IFWXConnection");
    else if (which == TRAP_FIREWALL && firewall)
        hr = call_beyond(firewall, sizeof(IFWXFirewallVtbl) / sizeof(void *), "IFWXFirewall");
    kit_session_attach_pump(session, connection);
    return hr;
}

/* The socket trap, once the pump has started. */
static HRESULT trapper_answer(KitFilter *filter, const KitAnswer *answer)
{
    IFWXSocket *internal = answer->pump ? answer->pump->sockets[KIT_INTERNAL] : NULL;

    if (answer->type == KIT_CALL_SET_SOCKETS && which == TRAP_SOCKET && internal)
        return call_beyond(internal, sizeof(IFWXSocketVtbl) / sizeof(void *), "IFWXSocket");
    return answer->hr;
}

static const KitClass trapper_class = {
    .events = FK_EVENTS,
    .init = trapper_init,
    .event = trapper_event,
    .answer = trapper_answer,
};

HRESULT fwx_filter_create(REFIID riid, void **ppv)
{
    return kit_filter_create(&trapper_class, riid, ppv);
}
