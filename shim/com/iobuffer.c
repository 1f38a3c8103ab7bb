/*
 * iobuffer.c — the host's IFWXIOBuffer: a reference-counted block with a
 * capacity ("allocated size") and a fill level ("data size").
 *
 * Three kinds: heap buffers (data follows the object in one allocation),
 * const buffers (wrap caller memory that we neither copy, write nor free)
 * and window buffers (a view of part of another buffer, which they keep
 * alive). Every method checks its offsets and sizes against the buffer and
 * answers E_INVALIDARG / E_POINTER / FWX_E_BUFFERFULL instead of touching
 * memory out of range: filters are old code and hand us nonsense.
 *
 * Heap buffers of the socket read size come from a per-thread cache on the
 * threads that ask for one (the workers): the data path then neither
 * allocates nor frees per read (issue 6).
 *
 * Reclaiming (HOST-900): heap buffers of IOBUFFER_POOL_SIZE bytes or more
 * keep their data in whole pages of their own (fxpages.h). Host buffers
 * are charged to the connection they were made for; when it has ended,
 * what filter code still references is reclaimed: the object stays (its
 * header, so a late Release or method call is safe and answers
 * FWX_E_TERMINATING) but its pages go back to the system and fault when
 * touched, and are never reused. Smaller heap buffers live inline and are
 * only marked (their memory stays: freeing it could corrupt the heap).
 *
 * Charging takes no lock (issue 6): a charge's list belongs to its thread
 * (fwxhost.h). Each charged buffer has a state word, changed atomically
 * only where two threads can meet: a last Release on another thread
 * (LINKED -> BUSY -> RELEASED_ELSEWHERE, left in the list for the charge's
 * thread to free) against the reclaim (LINKED -> BUSY -> NONE). Whoever
 * finds BUSY waits for the other's few instructions. A last Release on the
 * charge's own thread, the data path's case, unlinks with plain stores.
 */
#include "fwxhost.h" /* first: Winsock before any libc header */
#include "trap.h"
#include <stdlib.h>
#include <string.h>
#include "fxpages.h"
#include "guard.h"
#include "loader.h"


enum iobuffer_kind { IOBUF_HEAP, IOBUF_CONST, IOBUF_WINDOW };

struct iobuffer {
    IFWXIOBuffer IFWXIOBuffer_iface;
    LONG ref;
    enum iobuffer_kind kind;
    BYTE *data;
    DWORD capacity;
    DWORD size;
    IFWXIOBuffer *original;       /* window buffers: the buffer viewed */
    struct fx_filter *owner;      /* counted in owner->live_buffers, or NULL */
    BYTE *block;                  /* page-backed heap buffers: data's pages (fxpages.h) */
    /* Charge: the connection's list, linked by the charge's thread. */
    struct iobuffer_charge *charge;
    struct iobuffer *cnext, **cpprev;
    const void *charger;          /* the charge's thread; NULL: never charged */
    volatile LONG cstate;         /* enum charge_state */
    LONG pins;                    /* host operations holding a raw pointer into data */
    volatile LONG reclaimed;      /* set once, by the reclaim, while BUSY */
    BYTE inline_data[];           /* small heap buffers */
};

enum charge_state {
    CHARGE_NONE,                  /* in no list (never charged, or reclaimed) */
    CHARGE_LINKED,                /* in its charge's list, referenced */
    CHARGE_BUSY,                  /* another thread is moving it: wait */
    CHARGE_RELEASED_ELSEWHERE,    /* in the list, unreferenced: the charge's thread frees it */
};

static LONG iobuffer_live;
static LONG reclaimed_total, reclaimed_held, reclaimed_held_bytes;
static struct fx_tls charge_tls = FX_TLS_INIT;
static BOOL cache_put(struct iobuffer *b);

/* The shared pool's leaf spin lock: nothing but list work runs under it. */
static void spin_enter(LONG *lock)
{
    for (int spins = 0; InterlockedCompareExchange(lock, 1, 0); spins++)
        if (spins > 64)
            SwitchToThread();
}

static void spin_leave(LONG *lock)
{
    InterlockedExchange(lock, 0);
}

static void iobuffer_destroy(struct iobuffer *b)
{
    if (b->block)
        fx_pages_free(b->block, b->capacity);
    free(b);
}

/* Its last reference went and it was never reclaimed: out of the gauges,
 * back to this thread's cache or freed. */
static void iobuffer_free(struct iobuffer *b)
{
    InterlockedDecrement(&iobuffer_live);
    if (b->owner)
        InterlockedDecrement(&b->owner->live_buffers);
    if (!cache_put(b))
        iobuffer_destroy(b);
}

/* The charge's thread: out of the list (plain stores, nobody else links). */
static void unlink_charged(struct iobuffer *b)
{
    if (b->cnext)
        b->cnext->cpprev = b->cpprev;
    *b->cpprev = b->cnext;
    b->charge = NULL;
    b->cnext = NULL;
    b->cpprev = NULL;
}

/* Wait out another thread's BUSY (a few instructions, unless it was
 * preempted): take LINKED to BUSY, or return the other state found. */
static LONG charge_claim(struct iobuffer *b)
{
    for (int spins = 0;; spins++) {
        LONG state = b->cstate;
        if (state == CHARGE_LINKED &&
            InterlockedCompareExchange(&b->cstate, CHARGE_BUSY, CHARGE_LINKED) == CHARGE_LINKED)
            return CHARGE_BUSY;
        if (state == CHARGE_NONE || state == CHARGE_RELEASED_ELSEWHERE)
            return state;
        if (spins > 64)
            SwitchToThread();
    }
}

enum release_fate { FREE_IT, RECLAIMED_DESTROY_IT, LEFT_TO_CHARGE };

/* The last reference to b went: take it out of its charge, if in one. */
static enum release_fate uncharge(struct iobuffer *b)
{
    struct iobuffer_charge *ch;

    if (!b->charger)
        return FREE_IT;
    if (b->charger == fx_thread_token()) {
        /* The charge's thread, which alone links and reclaims: no other
         * thread changes a LINKED buffer nobody references. */
        if (b->cstate == CHARGE_LINKED) {
            unlink_charged(b);
            b->cstate = CHARGE_NONE;
            return FREE_IT;
        }
        return b->reclaimed ? RECLAIMED_DESTROY_IT : FREE_IT;
    }
    if (charge_claim(b) == CHARGE_NONE)
        return b->reclaimed ? RECLAIMED_DESTROY_IT : FREE_IT;
    /* BUSY is ours: the reclaim waits for it, so the charge is still there. */
    ch = b->charge;
    InterlockedIncrement(&ch->released_elsewhere);
    InterlockedExchange(&b->cstate, CHARGE_RELEASED_ELSEWHERE);
    return LEFT_TO_CHARGE;
}

/* The charge's thread: b, released on another thread, is out of the list
 * now; free it. */
static void free_released(struct iobuffer_charge *ch, struct iobuffer *b)
{
    b->cstate = CHARGE_NONE;
    InterlockedDecrement(&ch->released_elsewhere);
    iobuffer_free(b);
}

/* The charge's thread: free what other threads released. */
static void sweep_released(struct iobuffer_charge *ch)
{
    struct iobuffer *b, *next;
    for (b = ch->head; b; b = next) {
        next = b->cnext;
        if (b->cstate != CHARGE_RELEASED_ELSEWHERE)
            continue;
        unlink_charged(b);
        free_released(ch, b);
    }
}

static struct fx_vtbl_IFWXIOBuffer iobuffer_vtbl;

static inline struct iobuffer *impl_from_IFWXIOBuffer(IFWXIOBuffer *iface)
{
    return CONTAINING_RECORD(iface, struct iobuffer, IFWXIOBuffer_iface);
}

static struct iobuffer *unsafe_impl(IFWXIOBuffer *iface)
{
    return iface && iface->lpVtbl == &iobuffer_vtbl.vtbl ? impl_from_IFWXIOBuffer(iface) : NULL;
}

static HRESULT WINAPI iobuffer_QueryInterface(IFWXIOBuffer *iface, REFIID riid, void **out)
{
    if (!out)
        return E_POINTER;
    if (IsEqualIID(riid, &IID_IUnknown) || IsEqualIID(riid, &IID_IFWXIOBuffer)) {
        *out = iface;
        IFWXIOBuffer_AddRef(iface);
        return S_OK;
    }
    fx_log_unknown_iid("IFWXIOBuffer", riid);
    *out = NULL;
    return E_NOINTERFACE;
}

static ULONG WINAPI iobuffer_AddRef(IFWXIOBuffer *iface)
{
    return InterlockedIncrement(&impl_from_IFWXIOBuffer(iface)->ref);
}

static ULONG WINAPI iobuffer_Release(IFWXIOBuffer *iface)
{
    struct iobuffer *buf = impl_from_IFWXIOBuffer(iface);
    LONG ref = InterlockedDecrement(&buf->ref);

    if (ref == 0) {
        if (buf->original)
            GUARDED_VOID(NULL, "IFWXIOBuffer", "Release", IFWXIOBuffer_Release(buf->original));
        switch (uncharge(buf)) {
        case RECLAIMED_DESTROY_IT:
            /* Counted out of the live gauges when it was reclaimed. */
            InterlockedDecrement(&reclaimed_held);
            InterlockedExchangeAdd(&reclaimed_held_bytes, -(LONG)sizeof(*buf));
            iobuffer_destroy(buf);     /* its pages are never reused */
            break;
        case FREE_IT:
            iobuffer_free(buf);
            break;
        case LEFT_TO_CHARGE:
            break;
        }
    } else if (ref < 0) {
        /* A filter released more than it owned. Keep the object (leaking
         * it) rather than free it twice. */
        fx_log(FX_LOG_ERROR, "IFWXIOBuffer %p released more often than referenced", (void *)iface);
        InterlockedExchange(&buf->ref, 0x40000000);
    }
    return ref < 0 ? 0 : (ULONG)ref;
}

static HRESULT WINAPI iobuffer_GetBufferAndSize(IFWXIOBuffer *iface, BYTE **data, DWORD *size)
{
    struct iobuffer *buf = impl_from_IFWXIOBuffer(iface);
    if (!data || !size)
        return E_POINTER;
    if (buf->reclaimed) {
        *data = NULL;
        *size = 0;
        return FWX_E_TERMINATING;
    }
    *data = buf->data;
    *size = buf->size;
    return S_OK;
}

static HRESULT WINAPI iobuffer_SetDataSize(IFWXIOBuffer *iface, DWORD size)
{
    struct iobuffer *buf = impl_from_IFWXIOBuffer(iface);
    if (buf->reclaimed)
        return FWX_E_TERMINATING;
    if (size > buf->capacity)
        return E_INVALIDARG;
    buf->size = size;
    return S_OK;
}

static HRESULT WINAPI iobuffer_Append(IFWXIOBuffer *iface, const void *src, ULONG count,
                                      ULONG *written)
{
    struct iobuffer *buf = impl_from_IFWXIOBuffer(iface);
    ULONG room, n;

    if (written)
        *written = 0;
    if (!src && count)
        return E_POINTER;
    if (buf->reclaimed)
        return FWX_E_TERMINATING;
    /* Const memory is the caller's; a window shows another buffer's data,
     * which only that buffer's allocator may change (reference 8.2.4). */
    if (buf->kind != IOBUF_HEAP)
        return E_ACCESSDENIED;
    room = buf->capacity - buf->size;
    n = count < room ? count : room;
    if (n)
        memmove(buf->data + buf->size, src, n);
    buf->size += n;
    if (written)
        *written = n;
    return n < count ? FWX_E_BUFFERFULL : S_OK;
}

static HRESULT WINAPI iobuffer_ReadAt(IFWXIOBuffer *iface, ULONG offset, void *dst, ULONG count,
                                      ULONG *read)
{
    struct iobuffer *buf = impl_from_IFWXIOBuffer(iface);
    ULONG n;

    if (read)
        *read = 0;
    if (!dst && count)
        return E_POINTER;
    if (buf->reclaimed)
        return FWX_E_TERMINATING;
    if (offset > buf->size)
        return E_INVALIDARG;
    n = buf->size - offset;
    if (count < n)
        n = count;
    if (n)
        memcpy(dst, buf->data + offset, n);
    if (read)
        *read = n;
    return S_OK;
}

static HRESULT WINAPI iobuffer_SendToBuffer(IFWXIOBuffer *iface, IFWXIOBuffer *dest, ULONG offset,
                                            ULONG count, ULONG *copied)
{
    struct iobuffer *buf = impl_from_IFWXIOBuffer(iface);
    ULONG n, done = 0;
    const BYTE *src;
    HRESULT hr;

    if (copied)
        *copied = 0;
    if (!dest)
        return E_POINTER;
    if (buf->reclaimed)
        return FWX_E_TERMINATING;
    if (offset > buf->size || count > buf->size - offset)
        return E_INVALIDARG;
    n = count;
    /* An empty const buffer may have no memory at all: NULL + 0 is
     * undefined behaviour in C (found by tests/fuzz/fuzz_iobuf.c). */
    src = buf->data ? buf->data + offset : NULL;
    /* A filter's own buffer class gets the bytes through its Append. */
    if (unsafe_impl(dest))
        hr = iobuffer_Append(dest, src, n, &done);
    else
        GUARDED_CALL(hr, NULL, "IFWXIOBuffer", "Append",
                     IFWXIOBuffer_Append(dest, src, n, &done));
    if (copied)
        *copied = done;
    return hr;
}

static HRESULT WINAPI iobuffer_GetBufferSizes(IFWXIOBuffer *iface, DWORD *allocated, DWORD *actual)
{
    struct iobuffer *buf = impl_from_IFWXIOBuffer(iface);
    if (!allocated || !actual)
        return E_POINTER;
    if (buf->reclaimed) {
        *allocated = *actual = 0;
        return FWX_E_TERMINATING;
    }
    *allocated = buf->capacity;
    *actual = buf->size;
    return S_OK;
}

FX_HOST_VTBL(IFWXIOBuffer, iobuffer_vtbl) = {
    {
        iobuffer_QueryInterface,
        iobuffer_AddRef,
        iobuffer_Release,
        iobuffer_GetBufferAndSize,
        iobuffer_SetDataSize,
        iobuffer_Append,
        iobuffer_ReadAt,
        iobuffer_SendToBuffer,
        iobuffer_GetBufferSizes,
    },
    FX_TRAPS(IFWXIOBuffer)
};

/* Filters ask for buffers by the size they want; refuse absurd requests
 * (a garbage DWORD) instead of trying to allocate gigabytes. */
#define IOBUFFER_MAX (64u << 20)

/* ------------------------------------------------------------ thread cache */

/* A worker keeps up to CACHE_MAX released read-size buffers (1 MiB) for its
 * next reads, header and data block together, reused as they are. Buffers
 * released on other threads (a filter's own), or beyond a full cache, go to
 * the shared pool below (or are unmapped when it is full); a buffer
 * allocated by one worker and released by another moves to that worker's
 * cache, which is fine: the cache is per thread, not per owner. Cached
 * buffers are not "live" (the leak counters ignore them) and never
 * reclaimed ones (HOST-900). */
#define CACHE_MAX 16
/* Beyond that, up to SHARED_MAX more wait in one pool for every thread (8
 * MiB): with many connections in flight a worker's 16 run out, and a fresh
 * 64 KiB block costs an mmap, a munmap and a page fault per page. */
#define SHARED_MAX 128

static struct {
    LONG lock;
    struct iobuffer *free;      /* linked through ->original */
    unsigned count;
} shared;


struct thread_cache {
    struct iobuffer *free;      /* linked through ->original */
    unsigned count;
};

static struct fx_tls cache_tls = FX_TLS_INIT;

void iobuffer_thread_cache_init(void)
{
    if (!fx_tls_get(&cache_tls))
        fx_tls_set(&cache_tls, calloc(1, sizeof(struct thread_cache)));
}

void iobuffer_thread_cache_free(void)
{
    struct thread_cache *tc = fx_tls_get(&cache_tls);
    if (!tc)
        return;
    while (tc->free) {
        struct iobuffer *b = tc->free;
        tc->free = (struct iobuffer *)b->original;
        iobuffer_destroy(b);
    }
    free(tc);
    fx_tls_set(&cache_tls, NULL);
}

static struct iobuffer *cache_take(size_t inline_size)
{
    struct thread_cache *tc;
    struct iobuffer *b = NULL;
    if (inline_size != IOBUFFER_POOL_SIZE)
        return NULL;
    if ((tc = fx_tls_get(&cache_tls)) && (b = tc->free)) {
        tc->free = (struct iobuffer *)b->original;
        tc->count--;
        return b;
    }
    if (!shared.free)           /* a racy peek: an empty pool costs no lock */
        return NULL;
    spin_enter(&shared.lock);
    if ((b = shared.free)) {
        shared.free = (struct iobuffer *)b->original;
        shared.count--;
    }
    spin_leave(&shared.lock);
    return b;
}

static BOOL cache_put(struct iobuffer *b)
{
    struct thread_cache *tc;
    BOOL kept = FALSE;
    if (b->kind != IOBUF_HEAP || !b->block || b->capacity != IOBUFFER_POOL_SIZE || b->reclaimed)
        return FALSE;
    if ((tc = fx_tls_get(&cache_tls)) && tc->count < CACHE_MAX) {
        b->original = (IFWXIOBuffer *)tc->free;
        tc->free = b;
        tc->count++;
        return TRUE;
    }
    spin_enter(&shared.lock);
    if (shared.count < SHARED_MAX) {
        b->original = (IFWXIOBuffer *)shared.free;
        shared.free = b;
        shared.count++;
        kept = TRUE;
    }
    spin_leave(&shared.lock);
    return kept;
}

/* Heap buffers this large get pages of their own (reclaimable); smaller
 * ones live inline, after the header. */
#define PAGED_MIN IOBUFFER_POOL_SIZE

static struct iobuffer *iobuffer_alloc(enum iobuffer_kind kind, size_t size)
{
    BOOL paged = kind == IOBUF_HEAP && size >= PAGED_MIN;
    struct iobuffer *buf = kind == IOBUF_HEAP ? cache_take(size) : NULL;
    struct iobuffer_charge *ch;

    if (!buf) {
        if (!(buf = malloc(sizeof(*buf) + (paged ? 0 : size))))
            return NULL;
        buf->block = NULL;
        if (paged && !(buf->block = fx_pages_alloc(size))) {
            free(buf);
            return NULL;
        }
    }
    /* A cached block is reused as it is: its old bytes stay until
     * overwritten, as with the heap (size 0 hides them). */
    buf->IFWXIOBuffer_iface.lpVtbl = &iobuffer_vtbl.vtbl;
    buf->ref = 1;
    buf->kind = kind;
    buf->data = buf->block ? buf->block : buf->inline_data;
    buf->capacity = (DWORD)size;
    buf->size = 0;
    buf->original = NULL;
    buf->charge = NULL;
    buf->cnext = NULL;
    buf->cpprev = NULL;
    buf->charger = NULL;
    buf->cstate = CHARGE_NONE;
    buf->pins = 0;
    buf->reclaimed = 0;
    /* Made inside a filter's call (CreateBuffer, ...): that filter's. */
    if ((buf->owner = guard_current_filter()))
        InterlockedIncrement(&buf->owner->live_buffers);
    InterlockedIncrement(&iobuffer_live);
    /* ... and, inside a connection's call, that connection's. */
    if ((ch = fx_tls_get(&charge_tls)))
        iobuffer_charge(&buf->IFWXIOBuffer_iface, ch);
    return buf;
}

HRESULT iobuffer_create(DWORD capacity, IFWXIOBuffer **out)
{
    struct iobuffer *buf;

    if (!out)
        return E_POINTER;
    *out = NULL;
    if (capacity > IOBUFFER_MAX)
        return E_INVALIDARG;
    if (!(buf = iobuffer_alloc(IOBUF_HEAP, capacity)))
        return E_OUTOFMEMORY;
    *out = &buf->IFWXIOBuffer_iface;
    return S_OK;
}

HRESULT iobuffer_create_const(BYTE *data, DWORD length, IFWXIOBuffer **out)
{
    struct iobuffer *buf;

    if (!out)
        return E_POINTER;
    *out = NULL;
    if (!data && length)
        return E_POINTER;
    if (!(buf = iobuffer_alloc(IOBUF_CONST, 0)))
        return E_OUTOFMEMORY;
    buf->data = data;
    buf->capacity = buf->size = length;
    *out = &buf->IFWXIOBuffer_iface;
    return S_OK;
}

HRESULT iobuffer_create_window(IFWXIOBuffer *original, DWORD offset, DWORD length,
                               IFWXIOBuffer **out)
{
    struct iobuffer *buf;
    BYTE *data;
    DWORD size, capacity;
    HRESULT hr;

    if (!out)
        return E_POINTER;
    *out = NULL;
    if (!original)
        return E_POINTER;
    if (FAILED(hr = iobuffer_data(original, &data, &size, &capacity)))
        return hr;
    /* The window covers data the original already holds. */
    if (offset > size || length > size - offset)
        return E_INVALIDARG;
    if (!(buf = iobuffer_alloc(IOBUF_WINDOW, 0)))
        return E_OUTOFMEMORY;
    /* An empty original may have no memory (then offset is 0). */
    buf->data = data ? data + offset : NULL;
    buf->capacity = buf->size = length;
    buf->original = original;
    GUARDED_VOID(NULL, "IFWXIOBuffer", "AddRef", IFWXIOBuffer_AddRef(original));
    *out = &buf->IFWXIOBuffer_iface;
    return S_OK;
}

HRESULT iobuffer_data(IFWXIOBuffer *iface, BYTE **data, DWORD *size, DWORD *capacity)
{
    struct iobuffer *buf = unsafe_impl(iface);
    HRESULT hr;

    if (buf) {
        if (buf->reclaimed)
            return FWX_E_TERMINATING;
        *data = buf->data;
        *size = buf->size;
        *capacity = buf->capacity;
        return S_OK;
    }
    /* A filter-implemented buffer: ask it, and do not trust the answer. */
    if (!iface)
        return E_POINTER;
    GUARDED_CALL(hr, NULL, "IFWXIOBuffer", "GetBufferSizes",
                 IFWXIOBuffer_GetBufferSizes(iface, capacity, size));
    if (FAILED(hr))
        return hr;
    GUARDED_CALL(hr, NULL, "IFWXIOBuffer", "GetBufferAndSize",
                 IFWXIOBuffer_GetBufferAndSize(iface, data, size));
    if (FAILED(hr))
        return hr;
    if (*size > *capacity || (!*data && *capacity))
        return E_UNEXPECTED;
    return S_OK;
}

void iobuffer_set_owner(IFWXIOBuffer *iface, struct fx_filter *owner)
{
    struct iobuffer *buf = unsafe_impl(iface);

    if (!buf || !owner || buf->owner)
        return;
    buf->owner = owner;
    InterlockedIncrement(&owner->live_buffers);
}

LONG iobuffer_live_count(void)
{
    return iobuffer_live;
}

BOOL iobuffer_is_host(IFWXIOBuffer *buf)
{
    return unsafe_impl(buf) != NULL;
}

void iobuffer_ref(IFWXIOBuffer *buf, int delta)
{
    if (!buf)
        return;
    if (unsafe_impl(buf)) {
        if (delta > 0)
            iobuffer_AddRef(buf);
        else
            iobuffer_Release(buf);
    } else if (delta > 0) {
        GUARDED_VOID(NULL, "IFWXIOBuffer", "AddRef", IFWXIOBuffer_AddRef(buf));
    } else {
        GUARDED_VOID(NULL, "IFWXIOBuffer", "Release", IFWXIOBuffer_Release(buf));
    }
}

HRESULT iobuffer_set_size(IFWXIOBuffer *buf, DWORD size)
{
    HRESULT hr;
    if (unsafe_impl(buf))
        return iobuffer_SetDataSize(buf, size);
    GUARDED_CALL(hr, NULL, "IFWXIOBuffer", "SetDataSize", IFWXIOBuffer_SetDataSize(buf, size));
    return hr;
}

/* ------------------------------------------------------------ charging */

void iobuffer_charge_init(struct iobuffer_charge *ch)
{
    ch->head = NULL;
    ch->thread = NULL;
    ch->released_elsewhere = 0;
    ch->closed = FALSE;
}

void iobuffer_charge(IFWXIOBuffer *iface, struct iobuffer_charge *ch)
{
    struct iobuffer *b = unsafe_impl(iface);
    const void *self;

    if (!b || !ch || b->charger || ch->closed)
        return;
    self = fx_thread_token();
    if (!ch->thread)
        ch->thread = self;
    else if (ch->thread != self)
        return;        /* the list is one thread's: this buffer stays uncharged */
    if (*(volatile LONG *)&ch->released_elsewhere)
        sweep_released(ch);
    b->charger = self;
    b->charge = ch;
    b->cnext = ch->head;
    b->cpprev = &ch->head;
    if (ch->head)
        ch->head->cpprev = &b->cnext;
    ch->head = b;
    b->cstate = CHARGE_LINKED;
}

BOOL iobuffer_charge_close(struct iobuffer_charge *ch)
{
    ch->closed = TRUE;
    return ch->head != NULL;
}

struct iobuffer_charge *iobuffer_charge_enter(struct iobuffer_charge *ch)
{
    struct iobuffer_charge *old = fx_tls_get(&charge_tls);
    fx_tls_set(&charge_tls, ch);
    return old;
}

void iobuffer_pin(IFWXIOBuffer *iface, int delta)
{
    /* A window's data is its original's: pin down the chain of host
     * buffers (the window holds a reference on each, so they stay). */
    for (struct iobuffer *b = unsafe_impl(iface); b; b = unsafe_impl(b->original))
        InterlockedExchangeAdd(&b->pins, delta);
}

struct reclaim_tally {
    struct fx_filter *owner;
    unsigned buffers, kept;        /* reclaimed; of them, small ones whose memory stays */
    unsigned long long bytes;      /* data bytes returned to the system */
};
#define TALLY_SLOTS 8              /* filters named apart in one reclaim's log */

/* b is still referenced after its connection ended: take its pages,
 * counted in the tally of its filter. */
static void reclaim_one(struct iobuffer *b, struct reclaim_tally *tally, unsigned *ntally)
{
    struct reclaim_tally *t = NULL;

    b->reclaimed = 1;
    for (unsigned i = 0; i < *ntally && !t; i++)
        if (tally[i].owner == b->owner)
            t = &tally[i];
    if (!t && *ntally < TALLY_SLOTS) {
        t = &tally[(*ntally)++];
        t->owner = b->owner;
    }
    if (!t) {               /* more filters than slots: the last one sums them */
        t = &tally[TALLY_SLOTS - 1];
        t->owner = NULL;
    }
    t->buffers++;
    if (b->block && fx_pages_reclaim(b->block, b->capacity) == 0)
        t->bytes += fx_pages_round(b->capacity);
    else
        t->kept++;
    /* Out of the live gauges: the leak is now only its header. */
    InterlockedDecrement(&iobuffer_live);
    if (b->owner) {
        InterlockedDecrement(&b->owner->live_buffers);
        InterlockedIncrement(&b->owner->reclaimed_buffers);
    }
    InterlockedIncrement(&reclaimed_total);
    InterlockedIncrement(&reclaimed_held);
    InterlockedExchangeAdd(&reclaimed_held_bytes, (LONG)sizeof(*b));
}

void iobuffer_reclaim(struct iobuffer_charge *ch, const char *what, BOOL reclaim)
{
    struct reclaim_tally tally[TALLY_SLOTS];
    unsigned ntally = 0, pinned = 0;
    struct iobuffer *b, *next;

    ch->closed = TRUE;
    memset(tally, 0, sizeof(tally));
    /* The whole list goes: each entry is only cut loose (an unlink would
     * write into the one before, which another thread may have freed once
     * it left BUSY). */
    for (b = ch->head; b; b = next) {
        LONG state = charge_claim(b);
        next = b->cnext;
        b->charge = NULL;
        b->cnext = NULL;
        b->cpprev = NULL;
        if (state == CHARGE_RELEASED_ELSEWHERE) {
            free_released(ch, b);
            continue;
        }
        if (state != CHARGE_BUSY)
            continue;          /* not a list state: nothing to decide */
        /* ref 0: a Release on another thread is on its way to free it (it
         * waits for BUSY to end and finds it uncharged). Pinned: another
         * connection's queued operation reads it; it stays whole. */
        if (reclaim && InterlockedCompareExchange(&b->ref, 0, 0) > 0 && !b->reclaimed) {
            if (b->pins > 0)
                pinned++;
            else
                reclaim_one(b, tally, &ntally);
        }
        InterlockedExchange(&b->cstate, CHARGE_NONE);
    }
    ch->head = NULL;

    for (unsigned i = 0; i < ntally; i++)
        fx_log(FX_LOG_NOTICE, "%s: reclaimed %u buffer(s) filter %s still held after its session "
               "ended (%llu bytes returned%s; %u-byte headers kept until released)",
               what, tally[i].buffers, fx_filter_name(tally[i].owner),
               tally[i].bytes, tally[i].kept ? ", small buffers' memory kept" : "",
               (unsigned)sizeof(*b));
    if (pinned)
        fx_log(FX_LOG_NOTICE, "%s: %u buffer(s) still queued on another connection were not "
               "reclaimed", what, pinned);
}

LONG iobuffer_reclaimed_count(void)
{
    return InterlockedCompareExchange(&reclaimed_total, 0, 0);
}

LONG iobuffer_reclaimed_held(LONG *bytes)
{
    if (bytes)
        *bytes = InterlockedCompareExchange(&reclaimed_held_bytes, 0, 0);
    return InterlockedCompareExchange(&reclaimed_held, 0, 0);
}
