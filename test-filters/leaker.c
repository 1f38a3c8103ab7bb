/*
 * leaker.c - a passthrough that leaks: it takes a reference on every buffer it
 * receives and never gives it back, and its IFWXDataFilter::Detach keeps the sockets
 * and the connection it should release. The host must keep serving and stop cleanly
 * all the same (tests/faults.sh). The pump itself is faultkit.h's.
 */
#define COBJMACROS
#define CONST_VTABLE
#include "fltbase.h"
#include "faultkit.h"

/* {7E1D3C55-1F0B-4B7E-9A51-0C4F2C8B6A10} */
const CLSID fwx_filter_clsid =
    { 0x7e1d3c55, 0x1f0b, 0x4b7e, { 0x9a, 0x51, 0x0c, 0x4f, 0x2c, 0x8b, 0x6a, 0x10 } };
const char fwx_filter_name[] = "leaker";

static DWORD fk_hook_events(void)
{
    return fwx_Connect_Tcp | fwx_AcceptedConnection | FWX_ALL_SOURCES;
}

/* FWX_LEAKER_TOUCH=1: keep a raw pointer (GetBufferAndSize) into the first buffer
 * received, and write through it once, when the next connection's first buffer
 * arrives: a use of a leaked buffer after its session ended, which the host
 * reclaimed (docs/abi-decisions.md HOST-900) and must turn into a fault of this
 * filter's call, ending that connection only. */
static BOOL touch_mode;
static BYTE *kept_data;
static LONG kept_owner;            /* the DataFilter's number (flags), 0: none */
static LONG data_filters;
static LONG touched;

static HRESULT fk_filter_init(PFwxFilterHookEvents *hooks, HRESULT hr)
{
    touch_mode = fk_env_ulong("FWX_LEAKER_TOUCH", 0) != 0;
    return hr;
}

static HRESULT fk_attach_to_session(IFWXSessionFilter **sf, PFwxFilterHookEvents *hooks, HRESULT hr)
{
    return hr;
}

static HRESULT fk_event(const FirewallEvent *event, IFWXConnection *connection, BOOL *attach)
{
    return S_OK;
}

static void fk_data_filter_created(DataFilter *df)
{
    df->flags = InterlockedIncrement(&data_filters);
}

static HRESULT fk_set_sockets(DataFilter *df, HRESULT hr)
{
    return hr;
}

static void fk_received(DataFilter *df, enum side from, IFWXIOBuffer *buffer, DWORD size)
{
    IFWXIOBuffer_AddRef(buffer);    /* never released */
    if (!touch_mode)
        return;
    if (!kept_owner) {
        DWORD n;
        if (SUCCEEDED(IFWXIOBuffer_GetBufferAndSize(buffer, &kept_data, &n)) && kept_data) {
            kept_owner = df->flags;
            fwx_trace("leaker: kept a pointer into a buffer of this connection");
        }
    } else if (kept_owner != df->flags && !InterlockedExchange(&touched, 1)) {
        fwx_trace("leaker: writing through the pointer kept from an ended connection");
        kept_data[0] ^= 0x5A;       /* faults if the host reclaimed it */
        fwx_trace("leaker: the write went through");
    }
}

static HRESULT fk_completion_result(DataFilter *df, HRESULT hr)
{
    return hr;
}

static BOOL fk_detach_releases(void)
{
    return FALSE;
}
