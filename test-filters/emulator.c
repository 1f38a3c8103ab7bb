/*
 * emulator.c - a test filter for outbound emulation (reference 2.9): it answers every
 * outbound TCP connect itself, so the destination is never contacted. In the
 * fwx_Connect_Tcp handler it calls IFWXConnection::SetProtocol with
 * FWX_FLAG_EMULATE_PROTOCOL and attaches a data filter of class fwx_dfpc_Emulation; it
 * then tries both a second time, which must fail with FWX_E_ALREADY_EMULATED. The data
 * filter sets the connection's socket name (SetSocketName, twice: the second must fail
 * with FWX_E_ALREADY_EXISTS), reads it back with GetExternalSocketName, and answers each
 * piece the client sends with "emulated:" and the piece; the client's half-close is
 * answered with ours. Every result is traced ("fwx-filter emulator: ...", on stderr with
 * FWX_FILTER_TRACE=1); tests/emulation.sh checks them.
 *
 * Inbound emulation (HOST-1001): on a publishing rule's fwx_AcceptedConnection it calls
 * IFWXConnection::EmulateConnection with its data filter instead (the target is never
 * contacted), then a second time and an Emulation-class AttachDataFilter, both of which
 * must fail with FWX_E_ALREADY_EMULATED; the data filter answers as above.
 *
 * This file owns the emulation calls and the answer; the objects are the filter kit's
 * (fltkit.h): an emulator pump with no external socket whose data and eof callbacks
 * answer the client (KIT_REPLY).
 */
#include "fltkit.h"

#include <string.h>

/* {5C2E7A19-3B84-4F06-9D1A-6E8B0C4F2A73} */
const CLSID fwx_filter_clsid =
    { 0x5c2e7a19, 0x3b84, 0x4f06, { 0x9d, 0x1a, 0x6e, 0x8b, 0x0c, 0x4f, 0x2a, 0x73 } };
const char fwx_filter_name[] = "emulator";

/* {0B7D4E21-9C36-4A58-8F12-3D6E9A0B1C24}: the "emulated" protocol. */
static const GUID emulated_protocol =
    { 0x0b7d4e21, 0x9c36, 0x4a58, { 0x8f, 0x12, 0x3d, 0x6e, 0x9a, 0x0b, 0x1c, 0x24 } };

#define EMULATOR_EVENTS (fwx_Connect_Tcp | fwx_AcceptedConnection | FWX_ALL_SOURCES)

/* ==================================================================== the session filter */

static HRESULT emulate(KitSession *sf, IFWXConnection *connection)
{
    IFWXDataFilter *df, *second;
    HRESULT hr;

    if (!connection)
        return S_OK;
    if (!kit_session_get(sf, NULL, NULL))
        return FWX_E_TERMINATING;

    hr = IFWXConnection_SetProtocol(connection, &emulated_protocol, FWX_FLAG_EMULATE_PROTOCOL);
    fwx_trace("SetProtocol(FWX_FLAG_EMULATE_PROTOCOL): 0x%08lx", (unsigned long)hr);
    hr = IFWXConnection_SetProtocol(connection, &emulated_protocol, FWX_FLAG_EMULATE_PROTOCOL);
    fwx_trace("second SetProtocol(FWX_FLAG_EMULATE_PROTOCOL): 0x%08lx", (unsigned long)hr);
    if (SUCCEEDED(hr = kit_session_create_pump(sf, &df))) {
        hr = IFWXConnection_AttachDataFilter(connection, df, fwx_dfpc_Emulation, NULL);
        fwx_trace("AttachDataFilter(fwx_dfpc_Emulation): 0x%08lx", (unsigned long)hr);
        IFWXDataFilter_Release(df);
    }
    if (SUCCEEDED(kit_session_create_pump(sf, &second))) {
        hr = IFWXConnection_AttachDataFilter(connection, second, fwx_dfpc_Emulation, NULL);
        fwx_trace("second AttachDataFilter(fwx_dfpc_Emulation): 0x%08lx", (unsigned long)hr);
        IFWXDataFilter_Release(second);
    }
    return S_OK;
}

static HRESULT emulate_inbound(KitSession *sf, IFWXConnection *connection)
{
    IFWXDataFilter *df;
    IFWXConnection *made = NULL;
    HRESULT hr;

    if (!connection)
        return S_OK;
    if (!kit_session_get(sf, NULL, NULL))
        return FWX_E_TERMINATING;
    if (SUCCEEDED(hr = kit_session_create_pump(sf, &df))) {
        hr = IFWXConnection_EmulateConnection(connection, df, NULL, 0, NULL, 0, &made);
        fwx_trace("EmulateConnection: 0x%08lx, connection %s", (unsigned long)hr,
                  !made ? "NULL" : made == connection ? "the accepted one" : "another");
        if (made)
            IFWXConnection_Release(made);
        hr = IFWXConnection_EmulateConnection(connection, df, NULL, 0, NULL, 0, NULL);
        fwx_trace("second EmulateConnection: 0x%08lx", (unsigned long)hr);
        hr = IFWXConnection_AttachDataFilter(connection, df, fwx_dfpc_Emulation, NULL);
        fwx_trace("AttachDataFilter(fwx_dfpc_Emulation) after EmulateConnection: 0x%08lx",
                  (unsigned long)hr);
        IFWXDataFilter_Release(df);
    }
    return S_OK;
}

static HRESULT emulator_event(KitSession *sf, const FirewallEvent *event)
{
    if (event->EventType == fwx_Connect_Tcp)
        return emulate(sf, event->Parameters.Connect.piConnection);
    if (event->EventType == fwx_AcceptedConnection)
        return emulate_inbound(sf, event->Parameters.Accept.piConnectionAccepted);
    return S_OK;
}

/* ==================================================================== the data filter */

/* Sets the connection's socket name twice (the second must fail) and reads it back. */
static void emulator_set_sockets(KitPump *pump, IFWXSocket *internal, IFWXSocket *external,
                                 IFWXConnection *connection)
{
    SOCKADDR_IN name, got;
    INT len = sizeof(got);
    HRESULT hr;

    fwx_trace("SetSockets: internal %s, external %s", internal ? "set" : "NULL",
              external ? "set" : "NULL");
    if (!internal || !connection)
        return;
    memset(&name, 0, sizeof(name));
    name.sin_family = AF_INET;
    name.sin_port = htons(8080);
    name.sin_addr.s_addr = htonl(0xc0000250);   /* 192.0.2.80 */
    hr = IFWXConnection_SetSocketName(connection, (LPSOCKADDR)&name, sizeof(name));
    fwx_trace("SetSocketName: 0x%08lx", (unsigned long)hr);
    hr = IFWXConnection_SetSocketName(connection, (LPSOCKADDR)&name, sizeof(name));
    fwx_trace("second SetSocketName: 0x%08lx", (unsigned long)hr);
    memset(&got, 0, sizeof(got));
    hr = IFWXConnection_GetExternalSocketName(connection, (LPSOCKADDR)&got, &len);
    {
        const BYTE *b = (const BYTE *)&got.sin_addr;
        fwx_trace("GetExternalSocketName: 0x%08lx %u.%u.%u.%u:%u", (unsigned long)hr, b[0], b[1],
                  b[2], b[3], ntohs(got.sin_port));
    }
}

/* The answer to one piece: "emulated:" and the piece, back to the client. */
static KitVerdict emulator_data(KitPump *pump, enum kit_side from, IFWXIOBuffer *in, DWORD size,
                                IFWXIOBuffer **out)
{
    static const char prefix[] = "emulated:";
    BYTE *data;
    DWORD len;
    ULONG written;
    HRESULT hr;

    if (from != KIT_INTERNAL)
        return KIT_HOLD;   /* an emulator has no other side */
    hr = IFWXIOBuffer_GetBufferAndSize(in, &data, &len);
    if (SUCCEEDED(hr))
        hr = kit_pump_create_buffer(pump, len + sizeof(prefix), out);
    if (SUCCEEDED(hr))
        hr = IFWXIOBuffer_Append(*out, (const BYTE *)prefix, sizeof(prefix) - 1, &written);
    if (SUCCEEDED(hr))
        hr = IFWXIOBuffer_Append(*out, data, len, &written);
    return SUCCEEDED(hr) ? KIT_REPLY : KIT_ABORT;   /* the kit releases *out either way */
}

/* The client is done: so are we. */
static KitVerdict emulator_eof(KitPump *pump, enum kit_side from, IFWXIOBuffer **out)
{
    return KIT_REPLY;
}

static const KitClass emulator_class = {
    .events = EMULATOR_EVENTS,
    .session_hooks = KIT_HOOKS_COPY,
    .event = emulator_event,
    .data = emulator_data,
    .eof = emulator_eof,
    .emulator = TRUE,
    .set_sockets = emulator_set_sockets,
};

HRESULT fwx_filter_create(REFIID riid, void **ppv)
{
    return kit_filter_create(&emulator_class, riid, ppv);
}
