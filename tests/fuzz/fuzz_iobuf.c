/*
 * fuzz_iobuf.c - libFuzzer harness for the host's IFWXIOBuffer
 * (shim/com/iobuffer.c, compiled natively through iobuf_shim.h; see
 * tests/fuzz/README.md for why).
 *
 * The input is a program: each byte picks an operation a filter could
 * perform (create heap / const / window buffers, Append, ReadAt,
 * SetDataSize, SendToBuffer, write through the GetBufferAndSize pointer,
 * AddRef/Release, QueryInterface), followed by its arguments, read as 8-,
 * 16- or 32-bit values so that both small and absurd offsets come up.
 * One slot holds a "foreign" buffer (a filter's own IFWXIOBuffer) that
 * answers inconsistently: size above capacity, a NULL data pointer,
 * failure codes; the host must refuse those, never trust them.
 *
 * Checked after every step, beyond ASan/UBSan: the documented results
 * (E_INVALIDARG for an out-of-range offset or size, FWX_E_BUFFERFULL and
 * the count written for a short Append, E_ACCESSDENIED for Append to a
 * const or window buffer), data actually copied, size <= capacity, and
 * at the end no live buffer is left once the harness released its own.
 */
#include "iobuf_shim.h"
#include "../../shim/com/iobuffer.c"

#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NSLOTS 6

static const IID iid_other = {1, 2, 3, {4, 5, 6, 7, 8, 9, 10, 11}};
#define CHECK(c) do { if (!(c)) { fprintf(stderr, "fuzz_iobuf: %s (line %d)\n", #c, __LINE__); abort(); } } while (0)

struct input { const uint8_t *p; size_t n; };

static uint32_t take(struct input *in)
{
    uint32_t v = 0;
    unsigned width;

    if (!in->n)
        return 0;
    width = *in->p % 4;   /* 0: 8 bit, 1: 16 bit, 2: 32 bit, 3: small (0..15) */
    in->p++, in->n--;
    if (width == 3) {
        if (!in->n)
            return 0;
        v = *in->p & 15;
        in->p++, in->n--;
        return v;
    }
    for (unsigned i = 0; i < (1u << width) && in->n; i++, in->p++, in->n--)
        v = (v << 8) | *in->p;
    return v;
}

/* ---- a filter's own buffer, which lies about itself -------------------- */
struct foreign {
    IFWXIOBuffer iface;
    LONG ref;
    BYTE *mem;          /* real memory: memcap bytes */
    DWORD memcap;
    DWORD say_cap, say_size;
    int null_data, fail;
};

static struct foreign *foreign_from(IFWXIOBuffer *i) { return CONTAINING_RECORD(i, struct foreign, iface); }
static HRESULT WINAPI f_qi(IFWXIOBuffer *i, REFIID r, void **o) { *o = NULL; return E_NOINTERFACE; }
static ULONG WINAPI f_addref(IFWXIOBuffer *i) { return ++foreign_from(i)->ref; }
static ULONG WINAPI f_release(IFWXIOBuffer *i)
{
    struct foreign *f = foreign_from(i);
    LONG r = --f->ref;
    CHECK(r >= 0);   /* the host never releases more than it took */
    if (!r) {
        free(f->mem);
        free(f);
    }
    return r;
}
static HRESULT WINAPI f_getbuf(IFWXIOBuffer *i, BYTE **d, DWORD *s)
{
    struct foreign *f = foreign_from(i);
    if (f->fail)
        return E_UNEXPECTED;
    *d = f->null_data ? NULL : f->mem;
    *s = f->say_size;
    return S_OK;
}
static HRESULT WINAPI f_setsize(IFWXIOBuffer *i, DWORD s) { return E_NOTIMPL; }
static HRESULT WINAPI f_append(IFWXIOBuffer *i, const void *src, ULONG n, ULONG *w)
{
    struct foreign *f = foreign_from(i);
    ULONG room = f->memcap - (f->say_size < f->memcap ? f->say_size : f->memcap);
    ULONG k = n < room ? n : room;
    if (k)
        memcpy(f->mem + f->memcap - room, src, k);
    if (w)
        *w = k;
    return k < n ? FWX_E_BUFFERFULL : S_OK;
}
static HRESULT WINAPI f_readat(IFWXIOBuffer *i, ULONG o, void *d, ULONG n, ULONG *r) { return E_NOTIMPL; }
static HRESULT WINAPI f_send(IFWXIOBuffer *i, IFWXIOBuffer *d, ULONG o, ULONG n, ULONG *c) { return E_NOTIMPL; }
static HRESULT WINAPI f_sizes(IFWXIOBuffer *i, DWORD *a, DWORD *s)
{
    struct foreign *f = foreign_from(i);
    if (f->fail)
        return E_UNEXPECTED;
    *a = f->say_cap;
    *s = f->say_size;
    return S_OK;
}
static const IFWXIOBufferVtbl foreign_vtbl = {
    f_qi, f_addref, f_release, f_getbuf, f_setsize, f_append, f_readat, f_send, f_sizes,
};

static IFWXIOBuffer *foreign_new(struct input *in)
{
    struct foreign *f = calloc(1, sizeof(*f));
    CHECK(f);
    f->iface.lpVtbl = &foreign_vtbl;
    f->ref = 1;
    f->memcap = take(in) % 4096;
    f->mem = calloc(1, f->memcap ? f->memcap : 1);
    CHECK(f->mem);
    /* Honest about its memory (capacity <= what it has), but the size
     * may exceed the capacity, the pointer may be NULL, calls may fail. */
    f->say_cap = f->memcap ? take(in) % (f->memcap + 1) : 0;
    f->say_size = take(in);
    f->null_data = take(in) & 1;
    f->fail = (take(in) & 7) == 0;
    return &f->iface;
}

/* ---- checks on host buffers ------------------------------------------- */
/* p + off and memcmp/memcpy without undefined behaviour on a NULL, empty
 * buffer. */
static const BYTE *at(const BYTE *p, size_t off) { return p ? p + off : NULL; }
static int same(const void *a, const void *b, size_t n) { return n == 0 || memcmp(a, b, n) == 0; }

static void sizes(IFWXIOBuffer *b, DWORD *cap, DWORD *size, BYTE **data)
{
    DWORD s2;
    CHECK(IFWXIOBuffer_GetBufferSizes(b, cap, size) == S_OK);
    CHECK(*size <= *cap);
    CHECK(IFWXIOBuffer_GetBufferAndSize(b, data, &s2) == S_OK);
    CHECK(s2 == *size);
    CHECK(*data != NULL || *cap == 0);
}

static void op_append(IFWXIOBuffer *b, struct input *in, int is_heap)
{
    DWORD cap, size, cap2, size2;
    BYTE *d, *d2;
    ULONG n = take(in) % 8192, written = 12345, want;
    BYTE *src = malloc(n ? n : 1);
    HRESULT hr;

    CHECK(src);
    for (ULONG i = 0; i < n; i++)
        src[i] = (BYTE)(i * 7 + n);
    sizes(b, &cap, &size, &d);
    hr = IFWXIOBuffer_Append(b, (take(in) & 15) ? src : (n ? NULL : src), n, &written);
    sizes(b, &cap2, &size2, &d2);
    CHECK(cap2 == cap && d2 == d);
    if (!is_heap) {
        CHECK(hr == E_ACCESSDENIED || hr == E_POINTER);
        CHECK(written == 0 && size2 == size);
    } else if (hr == E_POINTER) {
        CHECK(n && written == 0 && size2 == size);
    } else {
        want = n < cap - size ? n : cap - size;
        CHECK(written == want && size2 == size + want);
        CHECK(hr == (want < n ? FWX_E_BUFFERFULL : S_OK));
        CHECK(same(at(d, size), src, want));
    }
    free(src);
}

static void op_readat(IFWXIOBuffer *b, struct input *in)
{
    DWORD cap, size;
    BYTE *d, *dst;
    ULONG off = take(in), n = take(in), got = 777, cnt = n % 16384;
    HRESULT hr;

    sizes(b, &cap, &size, &d);
    dst = malloc(cnt ? cnt : 1);
    CHECK(dst);
    hr = IFWXIOBuffer_ReadAt(b, off, dst, cnt, &got);
    if (off > size) {
        CHECK(hr == E_INVALIDARG && got == 0);
    } else {
        ULONG want = size - off < cnt ? size - off : cnt;
        CHECK(hr == S_OK && got == want);
        CHECK(same(dst, at(d, off), want));
    }
    free(dst);
}

static void op_setsize(IFWXIOBuffer *b, struct input *in)
{
    DWORD cap, size, cap2, size2, want = take(in);
    BYTE *d;
    HRESULT hr;

    sizes(b, &cap, &size, &d);
    hr = IFWXIOBuffer_SetDataSize(b, want);
    sizes(b, &cap2, &size2, &d);
    if (want > cap)
        CHECK(hr == E_INVALIDARG && size2 == size);
    else
        CHECK(hr == S_OK && size2 == want);
}

static void op_poke(IFWXIOBuffer *b, struct input *in)
{
    DWORD cap, size;
    BYTE *d;

    sizes(b, &cap, &size, &d);
    if (cap)
        memset(d, (int)take(in), cap);   /* a filter filling its buffer */
}

static void op_send(IFWXIOBuffer *src, IFWXIOBuffer *dst, struct input *in, int dst_heap)
{
    DWORD cap, size, dcap, dsize, dsize2;
    BYTE *d, *dd, *copy;
    ULONG off = take(in), n = take(in), copied = 999;
    HRESULT hr;

    sizes(src, &cap, &size, &d);
    sizes(dst, &dcap, &dsize, &dd);
    /* What should arrive, taken before (src and dst may be the same). */
    copy = malloc(size ? size : 1);
    CHECK(copy);
    if (size)
        memcpy(copy, d, size);
    hr = IFWXIOBuffer_SendToBuffer(src, dst, off, n, &copied);
    sizes(dst, &dcap, &dsize2, &dd);
    if (off > size || n > size - off) {
        CHECK(hr == E_INVALIDARG && copied == 0 && dsize2 == dsize);
    } else if (!dst_heap) {
        CHECK(hr == E_ACCESSDENIED && copied == 0);
    } else {
        ULONG want = n < dcap - dsize ? n : dcap - dsize;
        CHECK(copied == want && dsize2 == dsize + want);
        CHECK(hr == (want < n ? FWX_E_BUFFERFULL : S_OK));
        CHECK(same(at(dd, dsize), copy + off, want));
    }
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = { data, size };
    IFWXIOBuffer *slot[NSLOTS] = {0};
    int heap[NSLOTS] = {0};
    IFWXIOBuffer *foreign = NULL;
    BYTE constmem[256];
    LONG live0 = iobuffer_live_count();
    unsigned steps = 0;
    static struct fx_filter filt;   /* buffers made "inside its calls" count against it */

    filt.live_buffers = 0;
    iobuffer_thread_cache_init();   /* as a worker thread: read-size buffers are reused */

    memset(constmem, 0xA5, sizeof(constmem));
    while (in.n && steps++ < 64) {
        unsigned op = *in.p % 12, s = (*in.p / 12) % NSLOTS, t;
        IFWXIOBuffer *nb = NULL;
        HRESULT hr;

        in.p++, in.n--;
        t = take(&in) % NSLOTS;
        shim_current_filter = ((op + s) & 1) ? &filt : NULL;
        switch (op) {
        case 0: {                                        /* CreateBuffer */
            DWORD cap = take(&in);
            /* Above IOBUFFER_MAX: refused. Below: at most 64 KiB, as a
             * filter's real buffers are, so runs stay fast. */
            if (cap <= IOBUFFER_MAX)
                cap %= 65536;
            hr = iobuffer_create(cap, &nb);
            CHECK(cap > IOBUFFER_MAX ? hr == E_INVALIDARG && !nb : hr == S_OK && nb);
            if (nb) {
                if (slot[s])
                    IFWXIOBuffer_Release(slot[s]);
                slot[s] = nb, heap[s] = 1;
            }
            break;
        }
        case 1: {                                        /* a const buffer */
            DWORD len = take(&in) % (sizeof(constmem) + 1);
            hr = iobuffer_create_const(constmem, len, &nb);
            CHECK(hr == S_OK && nb);
            if (slot[s])
                IFWXIOBuffer_Release(slot[s]);
            slot[s] = nb, heap[s] = 0;
            break;
        }
        case 2: {                                        /* CreateWindowBuffer */
            IFWXIOBuffer *orig = (take(&in) & 3) == 0 ? foreign : slot[t];
            DWORD off = take(&in), len = take(&in), ocap = 0, osize = 0;
            BYTE *od = NULL, *wd;
            DWORD wcap, wsize;
            HRESULT dhr = orig ? iobuffer_data(orig, &od, &osize, &ocap) : E_POINTER;

            hr = iobuffer_create_window(orig, off, len, &nb);
            if (FAILED(dhr)) {
                CHECK(FAILED(hr) && !nb);
                break;
            }
            if (off > osize || len > osize - off) {
                CHECK(hr == E_INVALIDARG && !nb);
                break;
            }
            CHECK(hr == S_OK && nb);
            sizes(nb, &wcap, &wsize, &wd);
            CHECK(wd == at(od, off) && wcap == len && wsize == len);
            if (slot[s])
                IFWXIOBuffer_Release(slot[s]);
            slot[s] = nb, heap[s] = 0;
            break;
        }
        case 3:                                          /* a filter's buffer */
            if (foreign)
                IFWXIOBuffer_Release(foreign);
            foreign = foreign_new(&in);
            break;
        case 4:
            if (slot[s])
                op_append(slot[s], &in, heap[s]);
            break;
        case 5:
            if (slot[s])
                op_readat(slot[s], &in);
            break;
        case 6:
            if (slot[s])
                op_setsize(slot[s], &in);
            break;
        case 7:
            if (slot[s] && heap[s])
                op_poke(slot[s], &in);
            break;
        case 8:
            if (slot[s] && slot[t])
                op_send(slot[s], slot[t], &in, heap[t]);
            else if (slot[s] && foreign) {
                ULONG copied;
                DWORD cap, sz;
                BYTE *d;
                sizes(slot[s], &cap, &sz, &d);
                hr = IFWXIOBuffer_SendToBuffer(slot[s], foreign, 0, sz, &copied);
                CHECK(copied <= sz);
            }
            break;
        case 9:                                          /* Release */
            if (slot[s]) {
                IFWXIOBuffer_Release(slot[s]);
                slot[s] = NULL;
            }
            break;
        case 10:                                         /* AddRef + hand over */
            if (slot[s] && s != t) {
                IFWXIOBuffer_AddRef(slot[s]);
                if (slot[t])
                    IFWXIOBuffer_Release(slot[t]);
                slot[t] = slot[s], heap[t] = heap[s];
            }
            break;
        case 11: {                                       /* QueryInterface */
            void *out = (void *)1;
            if (!slot[s])
                break;
            hr = IFWXIOBuffer_QueryInterface(slot[s], (take(&in) & 1) ? &IID_IFWXIOBuffer
                                             : &IID_IUnknown, &out);
            CHECK(hr == S_OK && out == slot[s]);
            IFWXIOBuffer_Release(slot[s]);
            CHECK(IFWXIOBuffer_QueryInterface(slot[s], &iid_other, &out) == E_NOINTERFACE &&
                  out == NULL);
            CHECK(IFWXIOBuffer_QueryInterface(slot[s], &IID_IUnknown, NULL) == E_POINTER);
            break;
        }
        }
    }
    for (int i = 0; i < NSLOTS; i++)
        if (slot[i])
            IFWXIOBuffer_Release(slot[i]);
    if (foreign)
        IFWXIOBuffer_Release(foreign);
    CHECK(iobuffer_live_count() == live0);   /* windows released their originals */
    CHECK(filt.live_buffers == 0);           /* per-filter count back to zero */
    shim_current_filter = NULL;
    return 0;
}
