/*
 * leaker.c - a passthrough that leaks: it takes a reference on every buffer it
 * receives and never gives it back, and its IFWXDataFilter::Detach keeps the sockets
 * and the connection it should release. The host must keep serving and stop cleanly
 * all the same (tests/faults.sh). The pump is the kit's (faultkit.h); KitClass.keep_at_detach
 * is the Detach that keeps them.
 */
#include "faultkit.h"

/* {7E1D3C55-1F0B-4B7E-9A51-0C4F2C8B6A10} */
const CLSID fwx_filter_clsid =
    { 0x7e1d3c55, 0x1f0b, 0x4b7e, { 0x9a, 0x51, 0x0c, 0x4f, 0x2c, 0x8b, 0x6a, 0x10 } };
const char fwx_filter_name[] = "leaker";

/* FWX_LEAKER_TOUCH=1: keep a raw pointer (GetBufferAndSize) into the first buffer
 * received, and write through it once, when the next connection's first buffer
 * arrives: a use of a leaked buffer after its session ended, which the host
 * reclaimed (docs/abi-decisions.md HOST-900) and must turn into a fault of this
 * filter's call, ending that connection only. */
static BOOL touch_mode;
static BYTE *kept_data;
static LONG kept_owner;            /* the pump's number (KitPump.counter), 0: none */
static LONG data_filters;
static LONG touched;

static BOOL leaker_init(KitFilter *filter, IFWXFirewall *firewall)
{
    touch_mode = fk_env_ulong("FWX_LEAKER_TOUCH", 0) != 0;
    return TRUE;
}

/* Each pump is numbered, so that a later connection knows it is not the kept one's. */
static HRESULT leaker_pump_create(KitPump *pump)
{
    pump->counter = InterlockedIncrement(&data_filters);
    return S_OK;
}

static KitVerdict leaker_data(KitPump *pump, enum kit_side from, IFWXIOBuffer *buffer, DWORD size,
                              IFWXIOBuffer **out)
{
    IFWXIOBuffer_AddRef(buffer);    /* never released */
    if (!touch_mode)
        return KIT_PASS;
    if (!kept_owner) {
        DWORD n;
        if (SUCCEEDED(IFWXIOBuffer_GetBufferAndSize(buffer, &kept_data, &n)) && kept_data) {
            kept_owner = pump->counter;
            fwx_trace("leaker: kept a pointer into a buffer of this connection");
        }
    } else if (kept_owner != pump->counter && !InterlockedExchange(&touched, 1)) {
        fwx_trace("leaker: writing through the pointer kept from an ended connection");
        kept_data[0] ^= 0x5A;       /* faults if the host reclaimed it */
        fwx_trace("leaker: the write went through");
    }
    return KIT_PASS;
}

static const KitClass leaker_class = {
    .events = FK_EVENTS,
    .init = leaker_init,
    .pump_create = leaker_pump_create,
    .data = leaker_data,
    .keep_at_detach = TRUE,
};

HRESULT fwx_filter_create(REFIID riid, void **ppv)
{
    return kit_filter_create(&leaker_class, riid, ppv);
}
