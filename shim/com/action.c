/*
 * action.c — IFWXFirewallAction: the handle a filter gets for something it
 * arranged in advance (data-filter factory registrations, anticipated
 * actions), whose Cancel withdraws it. The owner supplies what Cancel does,
 * and optionally what the last Release does (the action then keeps its
 * argument alive: no action_detach needed).
 */
#include "fwxhost.h" /* first: Winsock before any libc header */
#include "trap.h"
#include <stdlib.h>

#include "hostobj.h"

struct action {
    IFWXFirewallAction IFWXFirewallAction_iface;
    LONG ref;
    LONG cancelled;
    void (*cancel)(void *arg);
    void (*release)(void *arg);    /* the last reference went: the owner lets go of arg */
    void *arg;
};

static inline struct action *impl_from_IFWXFirewallAction(IFWXFirewallAction *iface)
{
    return CONTAINING_RECORD(iface, struct action, IFWXFirewallAction_iface);
}

static HRESULT WINAPI action_QueryInterface(IFWXFirewallAction *iface, REFIID riid, void **out)
{
    if (!out)
        return E_POINTER;
    if (IsEqualIID(riid, &IID_IUnknown) || IsEqualIID(riid, &IID_IFWXFirewallAction)) {
        *out = iface;
        IFWXFirewallAction_AddRef(iface);
        return S_OK;
    }
    fx_log_unknown_iid("IFWXFirewallAction", riid);
    *out = NULL;
    return E_NOINTERFACE;
}

static ULONG WINAPI action_AddRef(IFWXFirewallAction *iface)
{
    return InterlockedIncrement(&impl_from_IFWXFirewallAction(iface)->ref);
}

static ULONG WINAPI action_Release(IFWXFirewallAction *iface)
{
    struct action *a = impl_from_IFWXFirewallAction(iface);
    LONG ref = InterlockedDecrement(&a->ref);
    if (ref == 0) {
        if (a->release)
            a->release(a->arg);
        free(a);
    }
    return ref < 0 ? 0 : (ULONG)ref;
}

static HRESULT WINAPI action_Cancel(IFWXFirewallAction *iface)
{
    struct action *a = impl_from_IFWXFirewallAction(iface);
    if (InterlockedExchange(&a->cancelled, 1))
        return S_OK;     /* cancelling twice is harmless */
    if (a->cancel)
        a->cancel(a->arg);
    return S_OK;
}

FX_HOST_VTBL(IFWXFirewallAction, action_vtbl) = {
    {
        action_QueryInterface,
        action_AddRef,
        action_Release,
        action_Cancel,
    },
    FX_TRAPS(IFWXFirewallAction)
};

void action_detach(IFWXFirewallAction *iface)
{
    struct action *a = impl_from_IFWXFirewallAction(iface);
    /* The owner is going away: Cancel must no longer reach it. */
    InterlockedExchange(&a->cancelled, 1);
    a->cancel = NULL;
    a->arg = NULL;
}

HRESULT action_create(void (*cancel)(void *arg), void *arg, IFWXFirewallAction **out)
{
    return action_create_owned(cancel, NULL, arg, out);
}

HRESULT action_create_owned(void (*cancel)(void *arg), void (*release)(void *arg), void *arg,
                            IFWXFirewallAction **out)
{
    struct action *a;
    if (!out)
        return E_POINTER;
    if (!(a = calloc(1, sizeof(*a))))
        return E_OUTOFMEMORY;
    a->IFWXFirewallAction_iface.lpVtbl = &action_vtbl.vtbl;
    a->ref = 1;
    a->cancel = cancel;
    a->release = release;
    a->arg = arg;
    *out = &a->IFWXFirewallAction_iface;
    return S_OK;
}
