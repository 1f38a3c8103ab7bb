/*
 * fwxhost.h — what every Firewall-side COM object of the host shares: the
 * include order that keeps Wine's Winsock and Windows headers consistent,
 * the generated FWX interfaces, and the constructors of the host objects.
 *
 * Files in shim/com/ are winelib C (winegcc); Linux socket code stays in
 * shim/core/, reached only through its plain-C headers.
 */
#ifndef FWX_HOST_H
#define FWX_HOST_H

#define COBJMACROS
#define CONST_VTABLE   /* our vtables are static const, as in Wine */
#define NONAMELESSUNION
#include <winsock2.h>
#include <windows.h>
#include <objbase.h>

#include "wspfwext.h"
#include "fxlog.h"
/* The call trace's wrappers (generated, trace.h): host->filter calls through the
 * COBJMACROS names are traced where the host makes them. */
#include "fxtrace.h"
/* Run-time IIDs and flag values ([abi] overrides). */
#include "abi.h"

/* Wine's CONTAINING_RECORD idiom for impl_from_*(). */
#ifndef CONTAINING_RECORD
#define CONTAINING_RECORD(address, type, field) \
    ((type *)((char *)(address) - offsetof(type, field)))
#endif

/* Logs "IFACE::METHOD is not implemented" the first time a call site is
 * reached, then stays quiet; evaluates to E_NOTIMPL. */
#define FX_NOTIMPL(iface, method)                                              \
    ({ static LONG once_;                                                      \
       if (!InterlockedExchange(&once_, 1))                                    \
           fx_log(FX_LOG_WARN, "%s::%s is not implemented; returning E_NOTIMPL", \
                  (iface), (method));                                          \
       E_NOTIMPL; })

/* Per-thread pointers. Reading an ELF __thread variable directly inside a
 * WINAPI (ms_abi) function makes gcc 12 emit a call to __tls_get_addr that
 * clobbers RDI/RSI, which the Microsoft convention says the callee
 * preserves (caught by tests/host/test_abi.c). These helpers are ordinary,
 * never-inlined functions that keep the values in ELF TLS, so they are
 * safe to call from WINAPI methods. */
struct fx_tls { LONG index; };      /* zero-initialised: not allocated yet */
#define FX_TLS_INIT { 0 }
void *fx_tls_get(struct fx_tls *t);
void fx_tls_set(struct fx_tls *t, void *value);
/* Names the calling thread: equal only for calls on the same live thread. */
const void *fx_thread_token(void);

/* Compares two IIDs and logs an unknown one once per object kind. */
void fx_log_unknown_iid(const char *object, REFIID riid);
/* fwxinfo --discover: told of every unknown IID a filter asks our objects for. */
extern void (*fx_unknown_iid_hook)(const char *object, REFIID riid);

/* "{XXXXXXXX-...}" into buf (39 bytes). */
const char *fx_guid_str(const GUID *g, char buf[39]);

/* ---- iobuffer.c ---- */
HRESULT iobuffer_create(DWORD capacity, IFWXIOBuffer **out);
/* The size socket reads use; buffers of exactly this capacity are cached
 * per worker thread (iobuffer_thread_cache_init on the thread first). */
#define IOBUFFER_POOL_SIZE (64 * 1024)
void iobuffer_thread_cache_init(void);
void iobuffer_thread_cache_free(void);
HRESULT iobuffer_create_const(BYTE *data, DWORD length, IFWXIOBuffer **out);
HRESULT iobuffer_create_window(IFWXIOBuffer *original, DWORD offset, DWORD length,
                               IFWXIOBuffer **out);
/* Fast access for host code; works for any IFWXIOBuffer (filter-supplied
 * ones go through their vtable). */
HRESULT iobuffer_data(IFWXIOBuffer *buf, BYTE **data, DWORD *size, DWORD *capacity);
LONG iobuffer_live_count(void);
/* Counts a host buffer the host made on a filter's behalf (the result of
 * its Recv(NULL)) against that filter, if not counted yet. */
struct fx_filter;
void iobuffer_set_owner(IFWXIOBuffer *buf, struct fx_filter *owner);
/* Our own buffer class?  Then AddRef/Release/SetDataSize run no filter code. */
BOOL iobuffer_is_host(IFWXIOBuffer *buf);
/* AddRef (+1) or Release (-1) any buffer; a filter's own buffer class is
 * called through the guarded path. Never call with a host lock held unless
 * iobuffer_is_host(). */
void iobuffer_ref(IFWXIOBuffer *buf, int delta);
/* SetDataSize on any buffer, guarded for a filter's own class. */
HRESULT iobuffer_set_size(IFWXIOBuffer *buf, DWORD size);

/* Charging (HOST-900): every host buffer made for a connection is charged
 * to it; when the connection ends, iobuffer_reclaim takes back the memory
 * of those a filter still references. A charge is embedded in its owner
 * (struct connection) and lives until iobuffer_reclaim ran on it.
 *
 * No lock: one thread, the charge's (the connection's worker, the first
 * to charge), links and unlinks its buffers and runs its reclaim. A buffer
 * whose last reference goes on another thread is only marked (a
 * compare-and-swap on its state), and the charge's thread frees it on its
 * next charge or at the reclaim. */
struct iobuffer;
struct iobuffer_charge {
    struct iobuffer *head;         /* charged buffers: the charge's thread only */
    const void *thread;            /* fx_thread_token() of that thread, once it charged */
    LONG released_elsewhere;       /* marked buffers in the list, waiting to be freed */
    BOOL closed;                   /* reclaimed: charges no more */
};
void iobuffer_charge_init(struct iobuffer_charge *ch);
/* Charge a host buffer that is not charged yet (other buffers: nothing).
 * On the charge's thread only; a call from another thread, or after the
 * reclaim, charges nothing. */
void iobuffer_charge(IFWXIOBuffer *buf, struct iobuffer_charge *ch);
/* Charge nothing more to ch (the connection is ending); returns whether
 * buffers are still charged, for iobuffer_reclaim. The charge's thread. */
BOOL iobuffer_charge_close(struct iobuffer_charge *ch);
/* The charge buffers created on this thread go to (CreateBuffer inside a
 * completion or SetSockets); returns the previous one, to restore. */
struct iobuffer_charge *iobuffer_charge_enter(struct iobuffer_charge *ch);
/* Host code keeps a raw pointer into buf's data (a queued operation):
 * while pinned, a buffer is never reclaimed. +1 / -1; host buffers only. */
void iobuffer_pin(IFWXIOBuffer *buf, int delta);
/* The connection ended and released what it held: every buffer still
 * charged to ch is uncharged, and ch charges no more; with reclaim, those
 * still referenced (by filter code) are reclaimed: methods answer
 * FWX_E_TERMINATING, page-backed data returns to the system and faults
 * when touched. Logs one line per filter with what was reclaimed (what
 * names the connection). Without reclaim ([host] reclaim-leaks = no) they
 * are only uncharged and stay whole. Closes ch. Runs on the charge's
 * thread, or once nothing else can touch its buffers (the last reference
 * to the connection went); on an emptied charge it does nothing. */
void iobuffer_reclaim(struct iobuffer_charge *ch, const char *what, BOOL reclaim);
/* Totals since start: buffers reclaimed, and headers of reclaimed buffers
 * still referenced (with their bytes). */
LONG iobuffer_reclaimed_count(void);
LONG iobuffer_reclaimed_held(LONG *bytes);

/* ---- firewall.c ---- */
/* The process's one IFWXFirewall; returned with a reference. */
IFWXFirewall *firewall_get(void);
/* Copies hooks (and its port ranges) into one CoTaskMem block. */
HRESULT hooks_duplicate(const FwxFilterHookEvents *src, FwxFilterHookEvents **out);

#endif /* FWX_HOST_H */
