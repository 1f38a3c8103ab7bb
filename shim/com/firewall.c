/*
 * firewall.c — the host's IFWXFirewall, one per process, handed to every
 * filter in FilterInit: buffers, network sockets (netsocket.c), SecureNAT
 * and private sessions, heavy-blocking accounting and hook-event
 * duplication. Services of later issues (DNS, IP filters, completion-port
 * hooking) answer E_NOTIMPL, logged once each, until they exist.
 *
 * Also home of the small helpers every COM file uses (GUID text, logging an
 * unknown IID).
 */
#include "fwxhost.h" /* first: Winsock before any libc header */
#include "trap.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostobj.h"


struct firewall {
    IFWXFirewall IFWXFirewall_iface;
    LONG ref;
    LONG blocked_threads;          /* threads inside a heavy-blocking operation */
};

/* Per thread, as the reference requires (section 8.4). */
static struct fx_tls in_blocking_op = FX_TLS_INIT;

/* The values live in ELF TLS, which costs a few instructions where Win32
 * TlsGetValue/TlsSetValue cost ~20 each (they were 5 % of the worker's user
 * space per filtered connection).  Only these two functions touch the array,
 * and they are never inlined into a caller: a WINAPI (ms_abi) function must
 * not access __thread itself (fwxhost.h).  Every thread, Wine's CreateThread
 * ones included, is a pthread, so a new thread's values start at NULL, as
 * with TlsAlloc. */
#define FX_TLS_SLOTS 16    /* 128 bytes of static TLS: see the model below */
static __thread void *fx_tls_values[FX_TLS_SLOTS] __attribute__((tls_model("initial-exec")));
static LONG fx_tls_used;

__attribute__((noinline)) void *fx_tls_get(struct fx_tls *t)
{
    LONG index = *(volatile LONG *)&t->index;
    return index ? fx_tls_values[index - 1] : NULL;
}

__attribute__((noinline)) void fx_tls_set(struct fx_tls *t, void *value)
{
    if (!*(volatile LONG *)&t->index) {
        LONG index = InterlockedIncrement(&fx_tls_used);
        if (index > FX_TLS_SLOTS) {
            fx_log(FX_LOG_ERROR, "out of per-thread slots (%d); raise FX_TLS_SLOTS", FX_TLS_SLOTS);
            abort();
        }
        /* Two threads may race to allocate: the loser's slot stays unused. */
        InterlockedCompareExchange(&t->index, index, 0);
    }
    fx_tls_values[t->index - 1] = value;
}

/* The address of this thread's slot array: distinct for every live thread,
 * and cheaper to read than a thread id through Wine. */
__attribute__((noinline)) const void *fx_thread_token(void)
{
    return fx_tls_values;
}

static inline struct firewall *impl_from_IFWXFirewall(IFWXFirewall *iface)
{
    return CONTAINING_RECORD(iface, struct firewall, IFWXFirewall_iface);
}

const char *fx_guid_str(const GUID *g, char buf[39])
{
    snprintf(buf, 39, "{%08lX-%04X-%04X-%02X%02X-%02X%02X%02X%02X%02X%02X}",
             (unsigned long)g->Data1, g->Data2, g->Data3, g->Data4[0], g->Data4[1],
             g->Data4[2], g->Data4[3], g->Data4[4], g->Data4[5], g->Data4[6], g->Data4[7]);
    return buf;
}

void (*fx_unknown_iid_hook)(const char *object, REFIID riid);

void fx_log_unknown_iid(const char *object, REFIID riid)
{
    char text[39];
    if (!riid)
        return;
    if (fx_unknown_iid_hook)
        fx_unknown_iid_hook(object, riid);
    /* Debug, not warning: COM callers probe for optional interfaces all
     * the time. fwxinfo --discover (ABI work) reads these lines. */
    fx_log(FX_LOG_DEBUG, "%s: QueryInterface for unknown IID %s -> E_NOINTERFACE", object,
           fx_guid_str(riid, text));
}

static HRESULT WINAPI firewall_QueryInterface(IFWXFirewall *iface, REFIID riid, void **out)
{
    if (!out)
        return E_POINTER;
    if (IsEqualIID(riid, &IID_IUnknown) || IsEqualIID(riid, &IID_IFWXFirewall)) {
        *out = iface;
        IFWXFirewall_AddRef(iface);
        return S_OK;
    }
    fx_log_unknown_iid("IFWXFirewall", riid);
    *out = NULL;
    return E_NOINTERFACE;
}

static ULONG WINAPI firewall_AddRef(IFWXFirewall *iface)
{
    return InterlockedIncrement(&impl_from_IFWXFirewall(iface)->ref);
}

/* The firewall object lives as long as the process; the count is kept
 * only so that unbalanced filters show up in the logs. */
static ULONG WINAPI firewall_Release(IFWXFirewall *iface)
{
    LONG ref = InterlockedDecrement(&impl_from_IFWXFirewall(iface)->ref);
    if (ref < 1) {
        fx_log(FX_LOG_WARN, "IFWXFirewall released more often than referenced");
        InterlockedExchange(&impl_from_IFWXFirewall(iface)->ref, 1);
        ref = 1;
    }
    return (ULONG)ref;
}

static HRESULT WINAPI firewall_HookToCompletionPort(IFWXFirewall *iface, DWORD handle)
{
    return FX_NOTIMPL("IFWXFirewall", "HookToCompletionPort");
}

static HRESULT WINAPI firewall_CreateOverlapped(IFWXFirewall *iface, IFWXOverlapped **out)
{
    if (out)
        *out = NULL;
    return FX_NOTIMPL("IFWXFirewall", "CreateOverlapped");
}

static HRESULT WINAPI firewall_CreateNetworkSocket(IFWXFirewall *iface, INT protocol,
                                                   IFWXNetworkSocket **out)
{
    return netsock_create(NULL, protocol, out);    /* netsocket.c */
}

static HRESULT WINAPI firewall_CreateConstBuffer(IFWXFirewall *iface, BYTE *data, DWORD length,
                                                 IFWXIOBuffer **out)
{
    return iobuffer_create_const(data, length, out);
}

static HRESULT WINAPI firewall_CreateBuffer(IFWXFirewall *iface, DWORD length, IFWXIOBuffer **out)
{
    return iobuffer_create(length, out);
}

static HRESULT WINAPI firewall_CreateWindowBuffer(IFWXFirewall *iface, IFWXIOBuffer *original,
                                                  DWORD offset, DWORD length, IFWXIOBuffer **out)
{
    return iobuffer_create_window(original, offset, length, out);
}

static HRESULT WINAPI firewall_CreateIpFilter(IFWXFirewall *iface, IFWXIpFilter **out)
{
    if (out)
        *out = NULL;
    return FX_NOTIMPL("IFWXFirewall", "CreateIpFilter");
}

static HRESULT WINAPI firewall_StartHeavyBlockingOperation(IFWXFirewall *iface)
{
    if (fx_tls_get(&in_blocking_op))
        return FWX_E_ALREADY_IN_BLOCKING_OP;
    fx_tls_set(&in_blocking_op, (void *)1);
    InterlockedIncrement(&impl_from_IFWXFirewall(iface)->blocked_threads);
    return S_OK;
}

static HRESULT WINAPI firewall_EndHeavyBlockingOperation(IFWXFirewall *iface)
{
    if (!fx_tls_get(&in_blocking_op))
        return FWX_E_NOT_IN_BLOCKING_OP;
    fx_tls_set(&in_blocking_op, NULL);
    InterlockedDecrement(&impl_from_IFWXFirewall(iface)->blocked_threads);
    return S_OK;
}

static HRESULT WINAPI firewall_GetNATSession(IFWXFirewall *iface, LPSOCKADDR address,
                                             DWORD length, IFWXSession **out)
{
    struct session *session;

    if (!out)
        return E_POINTER;
    *out = NULL;
    if (!address)
        return E_POINTER;
    if (!the_host)
        return FX_NOTIMPL("IFWXFirewall", "GetNATSession (no host running)");
    if (address->sa_family != AF_INET || length < sizeof(SOCKADDR_IN))
        return E_INVALIDARG;
    if (!(session = host_client_session(address, (int)length, FALSE)))
        return E_OUTOFMEMORY;
    *out = session_iface(session);
    return S_OK;
}

static HRESULT WINAPI firewall_CreatePrivateSession(IFWXFirewall *iface, LPSOCKADDR client,
                                                    DWORD client_len, LPSOCKADDR proxy,
                                                    DWORD proxy_len, IFWXImpersonator *imp,
                                                    IFWXSession **out)
{
    struct session *s;
    char name[64];
    static LONG count;

    if (!out)
        return E_POINTER;
    *out = NULL;
    if (!client)
        return E_POINTER;
    if (client_len < sizeof(SOCKADDR_IN) || client_len > sizeof(SOCKADDR_STORAGE) ||
        (client->sa_family != AF_INET && client->sa_family != AF_INET6))
        return E_INVALIDARG;
    /* proxy (the internal interface) is advisory: we have one host address. */
    snprintf(name, sizeof(name), "private #%ld", (long)InterlockedIncrement(&count));
    if (!(s = session_create(client, (int)client_len, name)))
        return E_OUTOFMEMORY;
    session_make_private(s, imp);
    *out = session_iface(s);
    return S_OK;
}

static HRESULT WINAPI firewall_GetHostByName(IFWXFirewall *iface, const char *name, char *buf,
                                             int *buflen)
{
    return FX_NOTIMPL("IFWXFirewall", "GetHostByName");
}

static HRESULT WINAPI firewall_GetHostByAddr(IFWXFirewall *iface, const char *addr, int len,
                                             int type, char *buf, int *buflen)
{
    return FX_NOTIMPL("IFWXFirewall", "GetHostByAddr");
}

/* Port-range arrays larger than this are a corrupt structure, not a filter
 * that cares about 100 000 distinct ranges. */
#define HOOKS_MAX_RANGES 65536

HRESULT hooks_duplicate(const FwxFilterHookEvents *src, FwxFilterHookEvents **out)
{
    FwxFilterHookEvents *copy;
    DWORD n;

    if (!out)
        return E_POINTER;
    *out = NULL;
    if (!src)
        return E_POINTER;
    n = src->PortRangeEvents ? src->dwNumPortRanges : 0;
    if (n > HOOKS_MAX_RANGES)
        return E_INVALIDARG;
    /* One block: CoTaskMemFree of the structure frees the ranges too. */
    copy = CoTaskMemAlloc(sizeof(*copy) + n * sizeof(FwxPortRangeEvents));
    if (!copy)
        return E_OUTOFMEMORY;
    copy->dwGlobalEvents = src->dwGlobalEvents;
    copy->dwNumPortRanges = n;
    copy->PortRangeEvents = n ? (FwxPortRangeEvents *)(copy + 1) : NULL;
    if (n)
        memcpy(copy->PortRangeEvents, src->PortRangeEvents, n * sizeof(FwxPortRangeEvents));
    *out = copy;
    return S_OK;
}

static HRESULT WINAPI firewall_DuplicateFilterHookEvents(IFWXFirewall *iface,
                                                         PFwxFilterHookEvents src,
                                                         PFwxFilterHookEvents *out)
{
    return hooks_duplicate(src, out);
}

FX_HOST_VTBL(IFWXFirewall, firewall_vtbl) = {
    {
        firewall_QueryInterface,
        firewall_AddRef,
        firewall_Release,
        firewall_HookToCompletionPort,
        firewall_CreateOverlapped,
        firewall_CreateNetworkSocket,
        firewall_CreateConstBuffer,
        firewall_CreateBuffer,
        firewall_CreateWindowBuffer,
        firewall_CreateIpFilter,
        firewall_StartHeavyBlockingOperation,
        firewall_EndHeavyBlockingOperation,
        firewall_GetNATSession,
        firewall_CreatePrivateSession,
        firewall_GetHostByName,
        firewall_GetHostByAddr,
        firewall_DuplicateFilterHookEvents,
    },
    FX_TRAPS(IFWXFirewall)
};

static struct firewall the_firewall = { { &firewall_vtbl.vtbl }, 1, 0 };

IFWXFirewall *firewall_get(void)
{
    IFWXFirewall_AddRef(&the_firewall.IFWXFirewall_iface);
    return &the_firewall.IFWXFirewall_iface;
}
