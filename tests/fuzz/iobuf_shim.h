/*
 * iobuf_shim.h - just enough of the Win32/COM world to compile
 * shim/com/iobuffer.c natively (gcc or clang, no Wine), for the
 * IFWXIOBuffer fuzz harness.
 *
 * Why a shim and not winegcc+clang: libFuzzer and ASan want to own the
 * process (main, malloc, signals), which a winelib .exe.so under the Wine
 * loader does not allow, and iobuffer.c's bounds checks are plain C over
 * DWORDs.  So the harness defines the include guards of fwxhost.h and
 * guard.h, provides the types, HRESULTs and the IFWXIOBuffer vtable with
 * the same method order as idl/wspfwext.idl, and #includes iobuffer.c.
 * Differences from the real build (documented in tests/fuzz/README.md):
 * no ms_abi calling convention, GUARDED_CALL is a plain call (no SEH),
 * DWORD/ULONG are uint32_t as in Wine.
 */
#ifndef FX_IOBUF_SHIM_H
#define FX_IOBUF_SHIM_H

#define FWX_HOST_H   /* keep shim/com/fwxhost.h out */
#define FWX_GUARD_H  /* and shim/com/guard.h */
#define FWX_LOADER_H /* and shim/com/loader.h */
#define FWX_TRAP_H   /* and shim/com/trap.h: no trap slots natively (see below) */

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fxlog.h"

#define WINAPI
typedef uint32_t DWORD;
typedef uint32_t ULONG;
typedef int32_t LONG;
typedef int32_t HRESULT;
typedef uint8_t BYTE;
typedef int BOOL;
#define TRUE 1
#define FALSE 0
typedef struct { uint32_t d1; uint16_t d2, d3; uint8_t d4[8]; } GUID, IID;
typedef const IID *REFIID;

#define S_OK             ((HRESULT)0)
#define E_NOTIMPL        ((HRESULT)0x80004001u)
#define E_NOINTERFACE    ((HRESULT)0x80004002u)
#define E_POINTER        ((HRESULT)0x80004003u)
#define E_UNEXPECTED     ((HRESULT)0x8000FFFFu)
#define E_ACCESSDENIED   ((HRESULT)0x80070005u)
#define E_OUTOFMEMORY    ((HRESULT)0x8007000Eu)
#define E_INVALIDARG     ((HRESULT)0x80070057u)
#define FWX_E_BUFFERFULL ((HRESULT)0xC0040007u)
#define FAILED(hr)       ((HRESULT)(hr) < 0)

#define CONTAINING_RECORD(address, type, field) \
    ((type *)((char *)(address) - offsetof(type, field)))
#define IsEqualIID(a, b) (memcmp((a), (b), sizeof(IID)) == 0)
#define InterlockedIncrement(p) __atomic_add_fetch((p), 1, __ATOMIC_SEQ_CST)
#define InterlockedDecrement(p) __atomic_sub_fetch((p), 1, __ATOMIC_SEQ_CST)
#define InterlockedExchange(p, v) __atomic_exchange_n((p), (v), __ATOMIC_SEQ_CST)
#define InterlockedExchangeAdd(p, v) __atomic_fetch_add((p), (v), __ATOMIC_SEQ_CST)
static inline LONG InterlockedCompareExchange(volatile LONG *p, LONG v, LONG cmp)
{
    __atomic_compare_exchange_n(p, &cmp, v, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return cmp;
}
#define SwitchToThread() ((void)0)
#define ARRAYSIZE(a) (sizeof(a) / sizeof((a)[0]))
#define FWX_E_TERMINATING ((HRESULT)0xC0040001u)

static const IID IID_IUnknown = {0x00000000, 0, 0, {0xC0, 0, 0, 0, 0, 0, 0, 0x46}};
static const IID IID_IFWXIOBuffer = {0x0f0ed5e1, 0xf1f1, 0x4f1b, {1, 2, 3, 4, 5, 6, 7, 8}};

typedef struct IFWXIOBuffer IFWXIOBuffer;
typedef struct IFWXIOBufferVtbl {
    HRESULT (WINAPI *QueryInterface)(IFWXIOBuffer *, REFIID, void **);
    ULONG (WINAPI *AddRef)(IFWXIOBuffer *);
    ULONG (WINAPI *Release)(IFWXIOBuffer *);
    HRESULT (WINAPI *GetBufferAndSize)(IFWXIOBuffer *, BYTE **, DWORD *);
    HRESULT (WINAPI *SetDataSize)(IFWXIOBuffer *, DWORD);
    HRESULT (WINAPI *Append)(IFWXIOBuffer *, const void *, ULONG, ULONG *);
    HRESULT (WINAPI *ReadAt)(IFWXIOBuffer *, ULONG, void *, ULONG, ULONG *);
    HRESULT (WINAPI *SendToBuffer)(IFWXIOBuffer *, IFWXIOBuffer *, ULONG, ULONG, ULONG *);
    HRESULT (WINAPI *GetBufferSizes)(IFWXIOBuffer *, DWORD *, DWORD *);
} IFWXIOBufferVtbl;
struct IFWXIOBuffer { const IFWXIOBufferVtbl *lpVtbl; };

/* trap.h's vtable wrapper, without the trap slots and the registry (ABI-300). */
struct fx_vtbl_IFWXIOBuffer { IFWXIOBufferVtbl vtbl; };
#define FX_HOST_VTBL(I, var) static struct fx_vtbl_##I var
#define FX_TRAPS(I)

#define IFWXIOBuffer_QueryInterface(p, a, b) (p)->lpVtbl->QueryInterface(p, a, b)
#define IFWXIOBuffer_AddRef(p) (p)->lpVtbl->AddRef(p)
#define IFWXIOBuffer_Release(p) (p)->lpVtbl->Release(p)
#define IFWXIOBuffer_GetBufferAndSize(p, a, b) (p)->lpVtbl->GetBufferAndSize(p, a, b)
#define IFWXIOBuffer_SetDataSize(p, a) (p)->lpVtbl->SetDataSize(p, a)
#define IFWXIOBuffer_Append(p, a, b, c) (p)->lpVtbl->Append(p, a, b, c)
#define IFWXIOBuffer_ReadAt(p, a, b, c, d) (p)->lpVtbl->ReadAt(p, a, b, c, d)
#define IFWXIOBuffer_SendToBuffer(p, a, b, c, d) (p)->lpVtbl->SendToBuffer(p, a, b, c, d)
#define IFWXIOBuffer_GetBufferSizes(p, a, b) (p)->lpVtbl->GetBufferSizes(p, a, b)

/* No SEH natively: a fault in the (harness's own) foreign buffer is a
 * harness bug and should crash loudly. */
#define GUARDED_CALL(hr, filter, iface, method, expr) ((hr) = (expr))
#define GUARDED_VOID(filter, iface, method, expr) ((void)(expr))

/* Win32 TLS, for the per-thread buffer cache: the harness is one thread. */
struct fx_tls { void *value; };
#define FX_TLS_INIT { 0 }
static inline void *fx_tls_get(struct fx_tls *t) { return t->value; }
static inline void fx_tls_set(struct fx_tls *t, void *value) { t->value = value; }
static inline const void *fx_thread_token(void)
{
    static char the_thread;
    return &the_thread;
}
#define IOBUFFER_POOL_SIZE (64 * 1024)   /* as shim/com/fwxhost.h */
void iobuffer_thread_cache_init(void);
void iobuffer_thread_cache_free(void);

/* The filter whose call is running: the harness plays one filter. */
struct fx_filter { LONG live_buffers, reclaimed_buffers; };
static inline const char *fx_filter_name(const struct fx_filter *f)
{
    (void)f;
    return "harness";
}
static struct fx_filter *shim_current_filter;
static inline struct fx_filter *guard_current_filter(void)
{
    return shim_current_filter;
}

static inline void fx_log_unknown_iid(const char *object, REFIID riid)
{
    (void)object;
    (void)riid;
}

HRESULT iobuffer_create(DWORD capacity, IFWXIOBuffer **out);
HRESULT iobuffer_create_const(BYTE *data, DWORD length, IFWXIOBuffer **out);
HRESULT iobuffer_create_window(IFWXIOBuffer *original, DWORD offset, DWORD length,
                               IFWXIOBuffer **out);
HRESULT iobuffer_data(IFWXIOBuffer *buf, BYTE **data, DWORD *size, DWORD *capacity);
LONG iobuffer_live_count(void);
BOOL iobuffer_is_host(IFWXIOBuffer *buf);
void iobuffer_ref(IFWXIOBuffer *buf, int delta);
HRESULT iobuffer_set_size(IFWXIOBuffer *buf, DWORD size);
void iobuffer_set_owner(IFWXIOBuffer *buf, struct fx_filter *owner);
struct iobuffer;
struct iobuffer_charge {           /* as shim/com/fwxhost.h */
    struct iobuffer *head;
    const void *thread;
    LONG released_elsewhere;
    BOOL closed;
};
void iobuffer_charge_init(struct iobuffer_charge *ch);
BOOL iobuffer_charge_close(struct iobuffer_charge *ch);
void iobuffer_charge(IFWXIOBuffer *buf, struct iobuffer_charge *ch);
struct iobuffer_charge *iobuffer_charge_enter(struct iobuffer_charge *ch);
void iobuffer_pin(IFWXIOBuffer *buf, int delta);
void iobuffer_reclaim(struct iobuffer_charge *ch, const char *what, BOOL reclaim);
LONG iobuffer_reclaimed_count(void);
LONG iobuffer_reclaimed_held(LONG *bytes);

#endif /* FX_IOBUF_SHIM_H */
