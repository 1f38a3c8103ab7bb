/*
 * rewrite.c - a test filter that edits the stream: in the client-to-server direction it
 * replaces every occurrence of the token FROM by TO; server-to-client bytes pass
 * unchanged. FROM and TO come from the environment at FilterInit:
 *   FWX_REWRITE_FROM   default "ISA2000"            (empty: rewrite nothing)
 *   FWX_REWRITE_TO     default "fwxshim-on-linux"   (may be empty, shorter or longer)
 *
 * This file owns the settings and the rewriting: the filter is passthrough.c (the filter
 * kit, fltkit.h) plus a data callback and an end-of-stream callback for the client side.
 *
 * A token may be split across two reads, so the outbound direction keeps a carry: the
 * longest tail of what it has seen that could still be the start of FROM (at most
 * len(FROM)-1 bytes). The carry is prepended to the next read, and sent as it is when
 * the client half-closes. A buffer received with Recv(NULL) belongs to the host and must
 * not be modified, so the rewritten bytes go into a new buffer from
 * IFWXFirewall::CreateBuffer, filled with Append.
 */
#include "fltkit.h"

#include <string.h>

/* {99B051EE-0EFE-4E39-9206-1FF00C65CF3F} */
const CLSID fwx_filter_clsid =
    { 0x99b051ee, 0x0efe, 0x4e39, { 0x92, 0x06, 0x1f, 0xf0, 0x0c, 0x65, 0xcf, 0x3f } };
const char fwx_filter_name[] = "rewrite";

/* The token and its replacement. Set by FilterInit before any traffic can arrive and only
 * read afterwards; kept past FilterShutdown because data filters may outlive it. */
static char *rewrite_from, *rewrite_to;
static DWORD from_len, to_len;

/* A pump's outbound state (KitPump.state). Only outbound completions touch it, one at a
 * time, so no lock. */
typedef struct {
    DWORD carry_len;
    BYTE  carry[];   /* from_len bytes: a tail that may begin FROM */
} Carry;

/* ==================================================================== configuration */

/* A filter that cannot initialise still answers S_OK, registering no events, so that it
 * does not stop the service (the kit does that when this returns FALSE). */
static BOOL load_settings(KitFilter *filter, IFWXFirewall *firewall)
{
    char *from = fwx_getenv("FWX_REWRITE_FROM", "ISA2000");
    char *to = fwx_getenv("FWX_REWRITE_TO", "fwxshim-on-linux");

    if (!from || !to) {
        fwx_free(from);
        fwx_free(to);
        fwx_trace("out of memory reading the settings: filter disabled");
        return FALSE;
    }
    fwx_free(rewrite_from);
    fwx_free(rewrite_to);
    rewrite_from = from;
    rewrite_to = to;
    from_len = (DWORD)strlen(from);
    to_len = (DWORD)strlen(to);
    fwx_trace("rewriting \"%s\" to \"%s\" client-to-server", from, to);
    return TRUE;
}

/* ==================================================================== rewriting */

static HRESULT emit(IFWXIOBuffer *out, const BYTE *bytes, DWORD count, DWORD *total)
{
    ULONG written;

    *total += count;
    if (!out || count == 0)
        return S_OK;
    return IFWXIOBuffer_Append(out, bytes, count, &written);
}

/* Rewrites IN (N bytes) into OUT, or with OUT NULL only measures. *out_len gets the size
 * of the output, *consumed how much of IN it covers: the rest is a possible start of FROM
 * that must wait for more input. Literal bytes are appended in runs, not one by one. */
static HRESULT rewrite_scan(const BYTE *in, DWORD n, IFWXIOBuffer *out, DWORD *out_len, DWORD *consumed)
{
    DWORD i = 0, run = 0;
    HRESULT hr = S_OK;

    *out_len = 0;
    while (i < n && SUCCEEDED(hr)) {
        DWORD left = n - i;

        if (left >= from_len && memcmp(in + i, rewrite_from, from_len) == 0) {
            hr = emit(out, in + run, i - run, out_len);
            if (SUCCEEDED(hr))
                hr = emit(out, (const BYTE *)rewrite_to, to_len, out_len);
            i += from_len;
            run = i;
        }
        else if (left < from_len && memcmp(in + i, rewrite_from, left) == 0)
            break;
        else
            i++;
    }
    if (SUCCEEDED(hr))
        hr = emit(out, in + run, i - run, out_len);
    *consumed = i;
    return hr;
}

/* Rewrites the carry plus DATA into a new buffer (*out, NULL when all of it must wait)
 * and keeps the new carry. */
static HRESULT rewrite_chunk(KitPump *pump, Carry *c, const BYTE *data, DWORD size, IFWXIOBuffer **out)
{
    DWORD n = c->carry_len + size, out_len, consumed;
    BYTE *work = fwx_alloc(n);
    HRESULT hr;

    *out = NULL;
    if (!work)
        return E_OUTOFMEMORY;
    memcpy(work, c->carry, c->carry_len);
    memcpy(work + c->carry_len, data, size);

    rewrite_scan(work, n, NULL, &out_len, &consumed);
    hr = S_OK;
    if (out_len > 0) {
        hr = kit_pump_create_buffer(pump, out_len, out);
        if (SUCCEEDED(hr))
            hr = rewrite_scan(work, n, *out, &out_len, &consumed);
    }
    if (SUCCEEDED(hr)) {
        c->carry_len = n - consumed;
        memcpy(c->carry, work + consumed, c->carry_len);
    }
    else if (*out) {
        IFWXIOBuffer_Release(*out);
        *out = NULL;
    }
    fwx_free(work);
    return hr;
}

/* Our own trouble (no memory for a buffer): the connection cannot go on correctly. */
static KitVerdict rewrite_failed(HRESULT hr)
{
    fwx_trace("rewriting failed: 0x%08lx; aborting the connection", (unsigned long)hr);
    return KIT_ABORT;
}

/* Client bytes: rewrite and send. If everything went into the carry there is nothing to
 * send, so read on at once. Server bytes pass unchanged. */
static KitVerdict rewrite_data(KitPump *pump, enum kit_side from, IFWXIOBuffer *buffer, DWORD size,
                               IFWXIOBuffer **out)
{
    BYTE *data;
    HRESULT hr;

    if (from != KIT_INTERNAL || from_len == 0)   /* nothing to look for */
        return KIT_PASS;
    hr = IFWXIOBuffer_GetBufferAndSize(buffer, &data, &size);
    if (SUCCEEDED(hr))
        hr = rewrite_chunk(pump, pump->state, data, size, out);
    if (FAILED(hr))
        return rewrite_failed(hr);
    return *out ? KIT_SEND : KIT_HOLD;
}

/* The client half-closed: whatever is in the carry was not FROM after all. Send it; the
 * kit passes the half-close on once it has gone. */
static KitVerdict rewrite_eof(KitPump *pump, enum kit_side from, IFWXIOBuffer **out)
{
    Carry *c = pump->state;
    ULONG written;
    HRESULT hr;

    if (from != KIT_INTERNAL || c->carry_len == 0)
        return KIT_PASS;
    hr = kit_pump_create_buffer(pump, c->carry_len, out);
    if (FAILED(hr))
        return rewrite_failed(hr);
    hr = IFWXIOBuffer_Append(*out, c->carry, c->carry_len, &written);
    if (FAILED(hr))
        return rewrite_failed(hr);   /* the kit releases *out */
    c->carry_len = 0;
    return KIT_SEND;
}

static HRESULT rewrite_pump_create(KitPump *pump)
{
    pump->state = fwx_alloc(sizeof(Carry) + (from_len ? from_len : 1));
    return pump->state ? S_OK : E_OUTOFMEMORY;
}

static void rewrite_pump_destroy(KitPump *pump)
{
    fwx_free(pump->state);
}

static const KitClass rewrite_class = {
    .events = fwx_Connect_Tcp | fwx_AcceptedConnection | FWX_ALL_SOURCES,
    .session_hooks = KIT_HOOKS_COPY,
    .init = load_settings,
    .pump_create = rewrite_pump_create,
    .pump_destroy = rewrite_pump_destroy,
    .data = rewrite_data,
    .eof = rewrite_eof,
};

HRESULT fwx_filter_create(REFIID riid, void **ppv)
{
    return kit_filter_create(&rewrite_class, riid, ppv);
}
