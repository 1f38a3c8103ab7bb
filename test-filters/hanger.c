/*
 * hanger.c - a passthrough that blocks in a callback: in CompleteAsyncIO it calls
 * Sleep(INFINITE) on the Nth data buffer of a connection whose client sent "HANG".
 * The worker thread that delivered the completion never comes back; the host's
 * watchdog must report it and the other workers keep serving (tests/faults.sh).
 *
 * Environment, read in FilterInit:
 *   FWX_HANGER_N      N, default 1: count the connection's data buffers (both
 *                     directions); hang on the first one, from the buffer that carried
 *                     "HANG" on, whose number is at least N
 * Any client buffer that contains the four bytes HANG marks its connection. Nothing is
 * held locked while it sleeps. The pump is the kit's (faultkit.h).
 */
#include "faultkit.h"

/* {CCD0D296-B8A5-415D-85D7-8AD4FD7E50F9} */
const CLSID fwx_filter_clsid =
    { 0xccd0d296, 0xb8a5, 0x415d, { 0x85, 0xd7, 0x8a, 0xd4, 0xfd, 0x7e, 0x50, 0xf9 } };
const char fwx_filter_name[] = "hanger";

#define FLAG_HANG 1     /* KitPump.flags: the client said HANG */
static LONG hang_n = 1;

static BOOL hanger_init(KitFilter *filter, IFWXFirewall *firewall)
{
    hang_n = (LONG)fk_env_ulong("FWX_HANGER_N", 1);
    return TRUE;
}

static BOOL contains_hang(IFWXIOBuffer *buffer)
{
    BYTE *data;
    DWORD size;
    if (FAILED(IFWXIOBuffer_GetBufferAndSize(buffer, &data, &size)) || !data)
        return FALSE;
    for (DWORD i = 0; i + 4 <= size; i++)
        if (!memcmp(data + i, "HANG", 4))
            return TRUE;
    return FALSE;
}

/* KitPump.counter: the connection's data buffers so far, both directions. */
static KitVerdict hanger_data(KitPump *pump, enum kit_side from, IFWXIOBuffer *buffer, DWORD size,
                              IFWXIOBuffer **out)
{
    LONG n = InterlockedIncrement(&pump->counter);
    if (from == KIT_INTERNAL && contains_hang(buffer))
        InterlockedOr(&pump->flags, FLAG_HANG);
    if ((pump->flags & FLAG_HANG) && n >= hang_n) {
        fwx_trace("the client said HANG: blocking in CompleteAsyncIO for ever (buffer %ld)", (long)n);
        Sleep(INFINITE);
    }
    return KIT_PASS;
}

static const KitClass hanger_class = {
    .events = FK_EVENTS,
    .init = hanger_init,
    .data = hanger_data,
};

HRESULT fwx_filter_create(REFIID riid, void **ppv)
{
    return kit_filter_create(&hanger_class, riid, ppv);
}
