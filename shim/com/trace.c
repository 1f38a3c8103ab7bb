/*
 * trace.c — the call trace (see trace.h, docs HOST-300): the trace file, line
 * building and argument decoding, the per-thread marker that tells a filter's
 * call into the host from the host's own calls, and patching the host vtables
 * with the generated wrappers.
 *
 * Decoding never calls filter code and reads what a filter hands over only through
 * guard_copy: a garbage pointer shows as its value.
 */
#include "fwxhost.h" /* first: Winsock before any libc header */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "guard.h"
#include "trace.h"
#include "trap.h"

volatile int fxt_on;
static FILE *trace_file;
static struct timespec trace_t0;
static struct fx_tls host_marker = FX_TLS_INIT;   /* guard frame of the traced host call */

/* The host vtables before patching: one saved copy per registered vtable. */
struct saved_vtbl {
    const void *vtbl;
    void **orig;
};
static struct saved_vtbl saved[32];
static int nsaved;

/* ------------------------------------------------------------ output */

static void add(struct fxt_call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(struct fxt_call *c, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (c->len >= sizeof(c->line) - 1)
        return;
    va_start(ap, fmt);
    n = vsnprintf(c->line + c->len, sizeof(c->line) - c->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        c->len += (size_t)n < sizeof(c->line) - c->len ? (size_t)n : sizeof(c->line) - c->len - 1;
}

static void head(struct fxt_call *c, const char *what)
{
    struct timespec now;
    long long us;
    clock_gettime(CLOCK_MONOTONIC, &now);
    us = (now.tv_sec - trace_t0.tv_sec) * 1000000LL + (now.tv_nsec - trace_t0.tv_nsec) / 1000;
    c->len = 0;
    add(c, "%lld.%06lld tid %04lx %-4s %s %s::%s slot %d", us / 1000000, us % 1000000,
        (unsigned long)GetCurrentThreadId(), what,
        c->dir == FXT_INTO_FILTER ? "host->filter" : "filter->host", c->iface, c->method, c->slot);
}

static void emit(struct fxt_call *c)
{
    FILE *f = trace_file;
    if (!f)
        return;
    add(c, "\n");
    fputs(c->line, f);       /* one call: stdio locks the stream, lines never mix */
    fflush(f);
}

int trace_open(const char *path, char *err, size_t errlen)
{
    int n;
    const struct fx_vtbl_entry *v = fx_vtbl_list(&n);

    trace_file = fopen(path, "w");
    if (!trace_file) {
        snprintf(err, errlen, "trace file %s: %s", path, strerror(errno));
        return -1;
    }
    clock_gettime(CLOCK_MONOTONIC, &trace_t0);
    /* Before any filter is loaded: nobody calls through the vtables yet. */
    for (int i = 0; i < n && nsaved < (int)(sizeof(saved) / sizeof(saved[0])); i++) {
        const struct fxt_wrappers *w;
        for (w = fxt_host_wrappers; w->iface; w++)
            if (!strcmp(w->iface, v[i].iface) && w->n == v[i].nknown)
                break;
        if (!w->iface) {
            fx_log(FX_LOG_NOTICE, "trace: no wrappers for %s; its calls are not traced", v[i].iface);
            continue;
        }
        void **orig = HeapAlloc(GetProcessHeap(), 0, w->n * sizeof(void *));
        if (!orig)
            continue;
        memcpy(orig, v[i].slots, w->n * sizeof(void *));
        saved[nsaved].vtbl = v[i].slots;
        saved[nsaved].orig = orig;
        nsaved++;
        for (unsigned k = 0; k < w->n; k++)
            v[i].slots[k] = w->slots[k];
    }
    fxt_on = 1;
    fx_log(FX_LOG_NOTICE, "tracing every filter/host call to %s", path);
    return 0;
}

void trace_close(void)
{
    fxt_on = 0;
    if (trace_file)
        fflush(trace_file);
    /* The file stays open and the wrappers stay in place: a late call
     * (a filter's own thread) must not find a closed stream. */
}

void *fxt_original(const void *This, int slot)
{
    const void *vtbl = *(const void *const *)This;
    for (int i = 0; i < nsaved; i++)
        if (saved[i].vtbl == vtbl)
            return saved[i].orig[slot];
    return NULL;   /* cannot happen: only patched vtables reach a wrapper */
}

/* ------------------------------------------------------------ calls */

BOOL fxt_begin(struct fxt_call *c, enum fxt_dir dir, const char *iface, const char *method,
               int slot, const void *This)
{
    if (!trace_file)
        return FALSE;
    c->dir = dir;
    c->iface = iface;
    c->method = method;
    c->slot = slot;
    c->saved_host = NULL;
    if (dir == FXT_INTO_HOST) {
        /* From filter code: inside a guarded call, and not from a host method
         * already traced under that same call (host code using its own objects). */
        void *frame = guard_frame_current();
        if (!frame || fx_tls_get(&host_marker) == frame)
            return FALSE;
        c->saved_host = fx_tls_get(&host_marker);
        fx_tls_set(&host_marker, frame);
    }
    head(c, "call");
    add(c, " this=%p", This);
    return TRUE;
}

void fxt_emit_call(struct fxt_call *c)
{
    emit(c);
}

void fxt_end(struct fxt_call *c)
{
    emit(c);
    if (c->dir == FXT_INTO_HOST)
        fx_tls_set(&host_marker, c->saved_host);
}

void fxt_fault(const char *iface, const char *method, DWORD code, void *address)
{
    struct fxt_call c;
    if (!fxt_on || !trace_file)
        return;
    c.dir = FXT_INTO_FILTER;
    c.iface = iface;
    c.method = method;
    c.slot = -1;
    head(&c, "fault");
    add(&c, " exception 0x%08lx at %p", (unsigned long)code, address);
    emit(&c);
}

/* ------------------------------------------------------------ decoding */

static const struct { HRESULT hr; const char *name; } hr_names[] = {
    { S_OK, "S_OK" }, { S_FALSE, "S_FALSE" }, { E_NOTIMPL, "E_NOTIMPL" },
    { E_NOINTERFACE, "E_NOINTERFACE" }, { E_POINTER, "E_POINTER" }, { E_FAIL, "E_FAIL" },
    { E_INVALIDARG, "E_INVALIDARG" }, { E_OUTOFMEMORY, "E_OUTOFMEMORY" },
    { E_UNEXPECTED, "E_UNEXPECTED" }, { E_ACCESSDENIED, "E_ACCESSDENIED" },
    { CLASS_E_NOAGGREGATION, "CLASS_E_NOAGGREGATION" },
    { CLASS_E_CLASSNOTAVAILABLE, "CLASS_E_CLASSNOTAVAILABLE" },
    { REGDB_E_CLASSNOTREG, "REGDB_E_CLASSNOTREG" },
    { FX_E_FILTER_FAULT, "FX_E_FILTER_FAULT" }, { FX_E_FILTER_DISABLED, "FX_E_FILTER_DISABLED" },
#define N(x) { x, #x }
    N(FWX_E_ALREADY_EMULATED), N(FWX_E_ALREADY_EXISTS), N(FWX_E_ALREADY_IN_BLOCKING_OP),
    N(FWX_E_BAD_CONTEXT), N(FWX_E_BUFFERFULL), N(FWX_E_FILTER_NOT_REGISTERED),
    N(FWX_E_INVALID_ARG), N(FWX_E_IS_BUSY), N(FWX_E_MIME_NEEDED), N(FWX_E_MUST_USE_DS),
    N(FWX_E_NOT_AUTHENTICATED), N(FWX_E_NOT_EMULATED), N(FWX_E_NOT_IN_BLOCKING_OP),
    N(FWX_E_NOT_SUPPORTED), N(FWX_E_POLICY_RULES_DENIED), N(FWX_E_PROTOCOL_RULES_DENIED),
    N(FWX_E_TERMINATING),
#undef N
};

void fxt_ret_hr(struct fxt_call *c, HRESULT hr)
{
    head(c, "ret");
    for (size_t i = 0; i < sizeof(hr_names) / sizeof(hr_names[0]); i++)
        if (hr_names[i].hr == hr) {
            add(c, " = %s", hr_names[i].name);
            return;
        }
    add(c, " = 0x%08lx", (unsigned long)hr);
}

void fxt_ret_ulong(struct fxt_call *c, ULONG v)
{
    head(c, "ret");
    add(c, " = %lu", (unsigned long)v);
}

static const struct { const GUID *g; const char *name; } guid_names[] = {
#define G(x) { &x, #x }
    G(IID_IUnknown), G(IID_IClassFactory), G(IID_IFWXFilter), G(IID_IFWXSessionFilter),
    G(IID_IFWXDataFilter), G(IID_IFWXIOCompletion), G(IID_IFWXAcceptCompletion),
    G(IID_IFWXExternalIOCompletion), G(IID_IFWXImpersonator), G(IID_IFWXFirewall),
    G(IID_IFWXSession), G(IID_IFWXConnection), G(IID_IFWXSocket), G(IID_IFWXNetworkSocket),
    G(IID_IFWXIOBuffer), G(IID_IFWXOverlapped), G(IID_IFWXFirewallAction),
    G(IID_IFWXGetXByY), G(IID_IFWXUdpDestination), G(IID_IFWXIpFilter),
    G(IID_IFWXFilterAdmin),
#undef G
};

void fxt_arg_guid(struct fxt_call *c, const char *name, const void *p)
{
    GUID g;
    char text[39];
    if (!guard_copy(&g, p, sizeof(g))) {
        add(c, " %s=%p", name, p);
        return;
    }
    add(c, " %s=%s", name, fx_guid_str(&g, text));
    for (size_t i = 0; i < sizeof(guid_names) / sizeof(guid_names[0]); i++)
        if (IsEqualGUID(&g, guid_names[i].g)) {
            add(c, "(%s)", guid_names[i].name);
            break;
        }
}

void fxt_arg_sockaddr(struct fxt_call *c, const char *name, const void *p)
{
    SOCKADDR_STORAGE ss;
    if (!p) {
        add(c, " %s=NULL", name);
        return;
    }
    if (!guard_copy(&ss, p, sizeof(struct sockaddr_in))) {
        add(c, " %s=%p(unreadable)", name, p);
        return;
    }
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
        const unsigned char *a = (const unsigned char *)&in->sin_addr;
        add(c, " %s=%u.%u.%u.%u:%u", name, a[0], a[1], a[2], a[3],
            (unsigned)ntohs(in->sin_port));
    } else if (ss.ss_family == AF_INET6 && guard_copy(&ss, p, 28)) {
        /* Win32 sockaddr_in6: family, port, flow info, then the address at 8. */
        const unsigned char *b = (const unsigned char *)&ss, *a = b + 8;
        add(c, " %s=[", name);
        for (int i = 0; i < 16; i += 2)
            add(c, "%s%x", i ? ":" : "", (a[i] << 8) | a[i + 1]);
        add(c, "]:%u", (unsigned)((b[2] << 8) | b[3]));
    } else {
        add(c, " %s=%p(family %u)", name, p, (unsigned)ss.ss_family);
    }
}

void fxt_arg_ulong(struct fxt_call *c, const char *name, unsigned long v)
{
    add(c, " %s=%lu", name, v);
}

void fxt_arg_long(struct fxt_call *c, const char *name, long v)
{
    add(c, " %s=%ld", name, v);
}

static const char *const event_names[] = {
    "fwx_Connect_Tcp", "fwx_Udp_Destination", "fwx_Bind_Tcp", "fwx_Bind_Udp", "fwx_Listen",
    "fwx_AcceptedConnection", "fwx_GetHostByName", "fwx_GetHostByAddr",
    "fwx_ConnectionTerminating", "fwx_EstablishedConnection",
};

static void add_event_bits(struct fxt_call *c, unsigned long v)
{
    const char *sep = "";
    for (unsigned i = 0; i < sizeof(event_names) / sizeof(event_names[0]); i++)
        if (v & (1UL << i)) {
            add(c, "%s%s", sep, event_names[i]);
            sep = "|";
        }
    if (v & ~((1UL << 10) - 1))
        add(c, "%s0x%lx", sep, v & ~((1UL << 10) - 1));
    else if (!*sep)
        add(c, "0");
}

void fxt_arg_evtype(struct fxt_call *c, const char *name, long v)
{
    add(c, " %s=", name);
    add_event_bits(c, (unsigned long)v);
}

void fxt_arg_uptr(struct fxt_call *c, const char *name, ULONG_PTR v)
{
    add(c, " %s=0x%lx", name, (unsigned long)v);
}

void fxt_arg_iobuffer(struct fxt_call *c, const char *name, const void *p)
{
    const void *vtbl = NULL;
    int n;
    const struct fx_vtbl_entry *v = fx_vtbl_list(&n);

    fxt_arg_ptr(c, name, p);
    if (!p || !guard_copy(&vtbl, p, sizeof(vtbl)))
        return;
    for (int i = 0; i < n; i++)
        if (v[i].slots == vtbl && !strcmp(v[i].iface, "IFWXIOBuffer")) {
            BYTE *data;
            DWORD size, cap;
            if (iobuffer_data((IFWXIOBuffer *)p, &data, &size, &cap) == S_OK)
                add(c, "(data %lu of %lu)", (unsigned long)size, (unsigned long)cap);
            return;
        }
    add(c, "(filter's own)");
}

void fxt_arg_event(struct fxt_call *c, const char *name, const void *p)
{
    DWORD head2[2];
    fxt_arg_ptr(c, name, p);
    if (!guard_copy(head2, p, sizeof(head2)))
        return;
    add(c, "(");
    add_event_bits(c, head2[0]);
    add(c, ", source 0x%08lx)", (unsigned long)head2[1]);
}

void fxt_arg_str(struct fxt_call *c, const char *name, const void *p)
{
    char s[81];
    size_t i;
    if (!p) {
        add(c, " %s=NULL", name);
        return;
    }
    for (i = 0; i < sizeof(s) - 1; i++)
        if (!guard_copy(&s[i], (const char *)p + i, 1) || !s[i])
            break;
    s[i] = 0;
    add(c, " %s=\"%s\"%s", name, s, i == sizeof(s) - 1 ? "..." : "");
}

void fxt_arg_inaddr(struct fxt_call *c, const char *name, const void *p)
{
    const unsigned char *a = p;
    add(c, " %s=%u.%u.%u.%u", name, a[0], a[1], a[2], a[3]);
}

void fxt_arg_ptr(struct fxt_call *c, const char *name, const void *p)
{
    if (p)
        add(c, " %s=%p", name, p);
    else
        add(c, " %s=NULL", name);
}

/* In, out or both: the header does not say; the value is shown on return. */
void fxt_arg_inoutint(struct fxt_call *c, const char *name, const void *p)
{
    fxt_arg_ptr(c, name, p);
}

void fxt_out_ptr(struct fxt_call *c, const char *name, void *const *p)
{
    void *v;
    if (p && guard_copy(&v, p, sizeof(v)))
        add(c, " %s=*%p", name, v);
}

void fxt_out_int(struct fxt_call *c, const char *name, const void *p)
{
    LONG v;
    if (p && guard_copy(&v, p, sizeof(v)))
        add(c, " %s=*%ld", name, (long)v);
}
