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
 */
#include "fwxhost.h" /* first: Winsock before any libc header */
#include "trap.h"
#include <stdlib.h>
#include <string.h>
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
    BYTE inline_data[];           /* heap buffers */
};

static LONG iobuffer_live;
static BOOL cache_put(struct iobuffer *b);

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
        InterlockedDecrement(&iobuffer_live);
        if (buf->owner)
            InterlockedDecrement(&buf->owner->live_buffers);
        if (!cache_put(buf))
            free(buf);
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
    *data = buf->data;
    *size = buf->size;
    return S_OK;
}

static HRESULT WINAPI iobuffer_SetDataSize(IFWXIOBuffer *iface, DWORD size)
{
    struct iobuffer *buf = impl_from_IFWXIOBuffer(iface);
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
 * next reads. Buffers released on other threads (a filter's own) go back to
 * the heap; a buffer allocated by one worker and released by another moves
 * to that worker's cache, which is fine: the cache is per thread, not per
 * owner. Cached buffers are not "live" (the leak counters ignore them). */
#define CACHE_MAX 16

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
        free(b);
    }
    free(tc);
    fx_tls_set(&cache_tls, NULL);
}

static struct iobuffer *cache_take(size_t inline_size)
{
    struct thread_cache *tc;
    struct iobuffer *b;
    if (inline_size != IOBUFFER_POOL_SIZE || !(tc = fx_tls_get(&cache_tls)) || !(b = tc->free))
        return NULL;
    tc->free = (struct iobuffer *)b->original;
    tc->count--;
    return b;
}

static BOOL cache_put(struct iobuffer *b)
{
    struct thread_cache *tc;
    if (b->kind != IOBUF_HEAP || b->data != b->inline_data || b->capacity != IOBUFFER_POOL_SIZE ||
        !(tc = fx_tls_get(&cache_tls)) || tc->count >= CACHE_MAX)
        return FALSE;
    b->original = (IFWXIOBuffer *)tc->free;
    tc->free = b;
    tc->count++;
    return TRUE;
}

static struct iobuffer *iobuffer_alloc(enum iobuffer_kind kind, size_t inline_size)
{
    struct iobuffer *buf = kind == IOBUF_HEAP ? cache_take(inline_size) : NULL;
    if (!buf && !(buf = malloc(sizeof(*buf) + inline_size)))
        return NULL;
    buf->IFWXIOBuffer_iface.lpVtbl = &iobuffer_vtbl.vtbl;
    buf->ref = 1;
    buf->kind = kind;
    buf->data = buf->inline_data;
    buf->capacity = (DWORD)inline_size;
    buf->size = 0;
    buf->original = NULL;
    /* Made inside a filter's call (CreateBuffer, ...): that filter's. */
    if ((buf->owner = guard_current_filter()))
        InterlockedIncrement(&buf->owner->live_buffers);
    InterlockedIncrement(&iobuffer_live);
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
