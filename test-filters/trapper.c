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
#define COBJMACROS
#define CONST_VTABLE
#include "fltbase.h"
#include "faultkit.h"

/* {C3E1A0F2-7B44-4E19-A6D3-5F0B2C8E9D71} */
const CLSID fwx_filter_clsid =
    { 0xc3e1a0f2, 0x7b44, 0x4e19, { 0xa6, 0xd3, 0x5f, 0x0b, 0x2c, 0x8e, 0x9d, 0x71 } };
const char fwx_filter_name[] = "trapper";

enum which { TRAP_CONNECTION, TRAP_FIREWALL, TRAP_SOCKET };
static enum which which = TRAP_CONNECTION;
static unsigned extra = 1;
static char *ports;
static FwxPortRangeEvents ranges[16];

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

static DWORD fk_hook_events(void)
{
    return fwx_Connect_Tcp | fwx_AcceptedConnection | FWX_ALL_SOURCES;
}

static HRESULT fk_filter_init(PFwxFilterHookEvents *hooks, HRESULT hr)
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
    if (ports && *ports) {
        DWORD n = 0;
        for (const char *p = ports; *p && n < 16; p = *p ? p + 1 : p) {
            char *end;
            unsigned long port = strtoul(p, &end, 10);
            if (end != p && port && port < 65536) {
                ranges[n].dwEvents = fwx_Connect_Tcp | fwx_AcceptedConnection;
                ranges[n].dwLowPort = ranges[n].dwHighPort = port;
                n++;
            }
            p = end;
            while (*p && *p != ',')
                p++;
        }
        (*hooks)->dwGlobalEvents = FWX_ALL_SOURCES;
        (*hooks)->dwNumPortRanges = n;
        (*hooks)->PortRangeEvents = ranges;
    }
    return hr;
}

static HRESULT fk_attach_to_session(IFWXSessionFilter **sf, PFwxFilterHookEvents *hooks, HRESULT hr)
{
    return hr;
}

static HRESULT fk_event(const FirewallEvent *event, IFWXConnection *connection, BOOL *attach)
{
    if (!fk_port_listed(ports, fk_event_port(event))) {
        *attach = FALSE;
        return S_OK;
    }
    if (which == TRAP_CONNECTION)
        return call_beyond(connection, sizeof(IFWXConnectionVtbl) / sizeof(void *), "IFWXConnection");
    if (which == TRAP_FIREWALL && fk_firewall)
        return call_beyond(fk_firewall, sizeof(IFWXFirewallVtbl) / sizeof(void *), "IFWXFirewall");
    return S_OK;
}

static void fk_data_filter_created(DataFilter *df)
{
}

static HRESULT fk_set_sockets(DataFilter *df, HRESULT hr)
{
    if (which == TRAP_SOCKET && df->sockets[SIDE_INTERNAL])
        return call_beyond(df->sockets[SIDE_INTERNAL], sizeof(IFWXSocketVtbl) / sizeof(void *),
                           "IFWXSocket");
    return hr;
}

static void fk_received(DataFilter *df, enum side from, IFWXIOBuffer *buffer, DWORD size)
{
}

static HRESULT fk_completion_result(DataFilter *df, HRESULT hr)
{
    return hr;
}

static BOOL fk_detach_releases(void)
{
    return TRUE;
}
