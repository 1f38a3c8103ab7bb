/*
 * crasher.c - a passthrough that faults: it writes through a NULL pointer, the bug the
 * host must survive by ending only the connection it happened in (tests/faults.sh).
 *
 * Environment, read in FilterInit:
 *   FWX_CRASHER_WHERE  completion (default): in CompleteAsyncIO, on the Nth data buffer
 *                      of each connection (both directions counted);
 *                      event: in FirewallEventHandler, on every Nth connection event;
 *                      setsockets: in IFWXDataFilter::SetSockets, on every Nth call,
 *                      after the pump has started;
 *                      attach: in AttachToSession, on the Nth call only (a publishing
 *                      rule's session is attached once, so "every Nth" would never
 *                      come again), after the session filter was made
 *   FWX_CRASHER_N      N, default 3 (0 is read as 1)
 *   FWX_CRASHER_PORTS  comma-separated ports (at most 16): the filter hooks its events
 *                      through port ranges for these ports only (the local port of an
 *                      accepted connection, the destination of an outbound one), so the
 *                      host knows which rules it applies to; unset or empty: global hooks
 * Nothing is held locked when it faults. The pump is the kit's (faultkit.h).
 */
#include "faultkit.h"

/* {410F21F4-A8AB-48F4-9C5A-E6199B52139C} */
const CLSID fwx_filter_clsid =
    { 0x410f21f4, 0xa8ab, 0x48f4, { 0x9c, 0x5a, 0xe6, 0x19, 0x9b, 0x52, 0x13, 0x9c } };
const char fwx_filter_name[] = "crasher";

enum where { WHERE_COMPLETION, WHERE_EVENT, WHERE_SETSOCKETS, WHERE_ATTACH };
static enum where where = WHERE_COMPLETION;
static LONG crash_n = 3;
static char *ports;
static LONG events_seen, setsockets_seen, attach_seen;
static FwxPortRangeEvents ranges[FK_MAX_PORTS];

static BOOL crasher_init(KitFilter *filter, IFWXFirewall *firewall)
{
    char *text = fwx_getenv("FWX_CRASHER_WHERE", "completion");

    if (text && !strcmp(text, "event"))
        where = WHERE_EVENT;
    else if (text && !strcmp(text, "setsockets"))
        where = WHERE_SETSOCKETS;
    else if (text && !strcmp(text, "attach"))
        where = WHERE_ATTACH;
    else if (text && strcmp(text, "completion"))
        fwx_trace("FWX_CRASHER_WHERE=%s is not event, setsockets, attach or completion; "
                  "using completion", text);
    fwx_free(text);
    crash_n = (LONG)fk_env_ulong("FWX_CRASHER_N", 3);
    if (crash_n < 1)
        crash_n = 1;
    fwx_free(ports);
    ports = fwx_getenv("FWX_CRASHER_PORTS", "");
    fk_hook_ports(filter, ports, ranges);
    fwx_trace("faults in %s on the %ldth %s; ports %s",
              where == WHERE_EVENT ? "FirewallEventHandler" :
              where == WHERE_SETSOCKETS ? "SetSockets" :
              where == WHERE_ATTACH ? "AttachToSession" : "CompleteAsyncIO", (long)crash_n,
              where == WHERE_COMPLETION ? "buffer of each connection" : "call",
              ports && *ports ? ports : "all");
    return TRUE;
}

/* Connections on other ports than the listed ones pass without a pump. */
static HRESULT crasher_event(KitSession *session, const FirewallEvent *event)
{
    IFWXConnection *connection;

    if (!kit_event_connection(event, &connection) || !fk_port_listed(ports, fk_event_port(event)))
        return S_OK;
    if (where == WHERE_EVENT && InterlockedIncrement(&events_seen) % crash_n == 0) {
        fwx_trace("faulting in FirewallEventHandler");
        fk_crash();
    }
    kit_session_attach_pump(session, connection);
    return S_OK;
}

static KitVerdict crasher_data(KitPump *pump, enum kit_side from, IFWXIOBuffer *buffer, DWORD size,
                               IFWXIOBuffer **out)
{
    if (where == WHERE_COMPLETION && InterlockedIncrement(&pump->counter) == crash_n) {
        fwx_trace("faulting in CompleteAsyncIO (buffer %ld of the connection)", (long)crash_n);
        fk_crash();
    }
    return KIT_PASS;
}

/* AttachToSession after the session filter was made; SetSockets after the pump started. */
static HRESULT crasher_answer(KitFilter *filter, const KitAnswer *answer)
{
    if (answer->type == KIT_CALL_ATTACH_TO_SESSION && where == WHERE_ATTACH &&
        InterlockedIncrement(&attach_seen) == crash_n) {
        fwx_trace("faulting in AttachToSession");
        fk_crash();
    }
    if (answer->type == KIT_CALL_SET_SOCKETS && where == WHERE_SETSOCKETS &&
        InterlockedIncrement(&setsockets_seen) % crash_n == 0) {
        fwx_trace("faulting in SetSockets");
        fk_crash();
    }
    return answer->hr;
}

static const KitClass crasher_class = {
    .events = FK_EVENTS,
    .init = crasher_init,
    .event = crasher_event,
    .data = crasher_data,
    .answer = crasher_answer,
};

HRESULT fwx_filter_create(REFIID riid, void **ppv)
{
    return kit_filter_create(&crasher_class, riid, ppv);
}
