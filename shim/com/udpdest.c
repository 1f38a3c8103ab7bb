/*
 * udpdest.c — IFWXUdpDestination (reference §3.17): the object a filter
 * gets in fwx_Udp_Destination for the one new destination of a UDP
 * connection. SetProtocol records the protocol; Deny refuses the
 * destination: every datagram between the client and it is dropped until
 * the destination expires (udp.c). Both are valid only inside the handler
 * of that event for that connection (FWX_E_BAD_CONTEXT otherwise). The
 * vtable order SetProtocol, Deny is the project's (ABI-007).
 */
#include "fwxhost.h" /* first: Winsock before any libc header */
#include <stdio.h>
#include <stdlib.h>

#include "hostobj.h"
#include "trap.h"

struct udpdest {
    IFWXUdpDestination IFWXUdpDestination_iface;
    LONG ref;
    struct connection *conn;       /* referenced */
};

static inline struct udpdest *impl_from_IFWXUdpDestination(IFWXUdpDestination *iface)
{
    return CONTAINING_RECORD(iface, struct udpdest, IFWXUdpDestination_iface);
}

static HRESULT WINAPI udpdest_QueryInterface(IFWXUdpDestination *iface, REFIID riid, void **out)
{
    if (!out)
        return E_POINTER;
    if (IsEqualIID(riid, &IID_IUnknown) || IsEqualIID(riid, &IID_IFWXUdpDestination)) {
        *out = iface;
        IFWXUdpDestination_AddRef(iface);
        return S_OK;
    }
    fx_log_unknown_iid("IFWXUdpDestination", riid);
    *out = NULL;
    return E_NOINTERFACE;
}

static ULONG WINAPI udpdest_AddRef(IFWXUdpDestination *iface)
{
    return InterlockedIncrement(&impl_from_IFWXUdpDestination(iface)->ref);
}

static ULONG WINAPI udpdest_Release(IFWXUdpDestination *iface)
{
    struct udpdest *d = impl_from_IFWXUdpDestination(iface);
    LONG ref = InterlockedDecrement(&d->ref);
    if (ref == 0) {
        IFWXConnection_Release(connection_iface(d->conn));
        free(d);
    } else if (ref < 0) {
        fx_log(FX_LOG_ERROR, "IFWXUdpDestination %p released more often than referenced",
               (void *)iface);
        InterlockedExchange(&d->ref, 0x40000000);
        ref = 0;
    }
    return (ULONG)ref;
}

static struct event_ctx *in_event(struct udpdest *d)
{
    struct event_ctx *ctx = event_ctx_current();
    return ctx && ctx->conn == d->conn && ctx->type == fwx_Udp_Destination ? ctx : NULL;
}

static HRESULT WINAPI udpdest_SetProtocol(IFWXUdpDestination *iface, REFGUID guid, DWORD flags)
{
    struct udpdest *d = impl_from_IFWXUdpDestination(iface);
    if (!in_event(d))
        return FWX_E_BAD_CONTEXT;
    if (!guid)
        return E_INVALIDARG;
    if (flags & FWX_FLAG_EMULATE_PROTOCOL)
        return FX_NOTIMPL("IFWXUdpDestination", "SetProtocol(FWX_FLAG_EMULATE_PROTOCOL)");
    d->conn->protocol = *guid;
    return S_OK;
}

static HRESULT WINAPI udpdest_Deny(IFWXUdpDestination *iface, DWORD reserved)
{
    struct udpdest *d = impl_from_IFWXUdpDestination(iface);
    struct event_ctx *ctx = in_event(d);
    struct connection *c = d->conn;

    if (!ctx)
        return FWX_E_BAD_CONTEXT;
    if (reserved)
        return E_INVALIDARG;
    EnterCriticalSection(&c->lock);
    if (!c->denied) {
        snprintf(c->denied_by, sizeof(c->denied_by), "%s", fx_filter_name(ctx->filter));
        if (ctx->filter)
            InterlockedIncrement(&ctx->filter->denials);
    }
    c->denied = TRUE;
    LeaveCriticalSection(&c->lock);
    return S_OK;
}

/* Order [?] (reference 3.17): trap slots follow (ABI-300). */
FX_HOST_VTBL(IFWXUdpDestination, udpdest_vtbl) = {
    {
        udpdest_QueryInterface,
        udpdest_AddRef,
        udpdest_Release,
        udpdest_SetProtocol,
        udpdest_Deny,
    },
    FX_TRAPS(IFWXUdpDestination)
};

HRESULT udpdest_create(struct connection *c, IFWXUdpDestination **out)
{
    struct udpdest *d = calloc(1, sizeof(*d));
    *out = NULL;
    if (!d)
        return E_OUTOFMEMORY;
    d->IFWXUdpDestination_iface.lpVtbl = &udpdest_vtbl.vtbl;
    d->ref = 1;
    d->conn = c;
    IFWXConnection_AddRef(connection_iface(c));
    *out = &d->IFWXUdpDestination_iface;
    return S_OK;
}
