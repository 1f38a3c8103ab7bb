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
 * held locked while it sleeps. The pump itself is faultkit.h's.
 */
#define COBJMACROS
#define CONST_VTABLE
#include "fltbase.h"
#include "faultkit.h"

/* {CCD0D296-B8A5-415D-85D7-8AD4FD7E50F9} */
const CLSID fwx_filter_clsid =
    { 0xccd0d296, 0xb8a5, 0x415d, { 0x85, 0xd7, 0x8a, 0xd4, 0xfd, 0x7e, 0x50, 0xf9 } };
const char fwx_filter_name[] = "hanger";

#define FLAG_HANG 1
static LONG hang_n = 1;

static DWORD fk_hook_events(void)
{
    return fwx_Connect_Tcp | fwx_AcceptedConnection | FWX_ALL_SOURCES;
}

static HRESULT fk_filter_init(PFwxFilterHookEvents *hooks, HRESULT hr)
{
    hang_n = (LONG)fk_env_ulong("FWX_HANGER_N", 1);
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
}

static HRESULT fk_set_sockets(DataFilter *df, HRESULT hr)
{
    return hr;
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

static void fk_received(DataFilter *df, enum side from, IFWXIOBuffer *buffer, DWORD size)
{
    LONG n = InterlockedIncrement(&df->buffers);
    if (from == SIDE_INTERNAL && contains_hang(buffer))
        InterlockedOr(&df->flags, FLAG_HANG);
    if ((df->flags & FLAG_HANG) && n >= hang_n) {
        fwx_trace("the client said HANG: blocking in CompleteAsyncIO for ever (buffer %ld)", (long)n);
        Sleep(INFINITE);
    }
}

static HRESULT fk_completion_result(DataFilter *df, HRESULT hr)
{
    return hr;
}

static BOOL fk_detach_releases(void)
{
    return TRUE;
}
