/*
 * guard.c — catching exceptions raised inside filter code, counting them
 * against the filter, checking what filters hand back, and the watchdog
 * that reports filter calls that do not return (see guard.h).
 *
 * The frame stack is per thread: a filter may call the host, which may call
 * another filter, and the exception filter must blame the innermost one.
 * Each thread that ever makes a guarded call owns a slot, found through
 * per-thread storage (fx_tls_get) and kept on a global list for the
 * watchdog. The slot mirrors the innermost guarded call (frame, filter,
 * interface, method, start) so that the watchdog never reads a worker's
 * stack, where a frame may be gone (a thread can even die inside a call).
 * The owning thread is the only writer; it updates the mirror as a
 * sequence lock (gen odd while it writes), and the watchdog believes a
 * read only if gen was even and did not change. What the fields point to
 * (static strings, the host's filter table) lives as long as the process.
 */
#include "fwxhost.h" /* first: Winsock before any libc header */
#include <stdarg.h>
#include <stdio.h>
#include "fxloop.h"
#include "guard.h"
#include "hostobj.h"
#include "loader.h"
#include "trap.h"

struct guard_slot {
    struct guard_slot *next;          /* the list of every thread's slot */
    struct guard_frame *frame;        /* innermost call; the owning thread's */
    volatile LONG gen;                /* sequence lock over the mirror below */
    const struct fx_filter *volatile filter;
    const char *volatile iface, *volatile method;
    volatile unsigned long long start;
    volatile BOOL busy;               /* inside a guarded call */
    DWORD tid;
    /* the watchdog's own: the call it reported, to report it once */
    BOOL reported;
    LONG reported_gen;
    const struct fx_filter *reported_filter;
    const char *reported_iface, *reported_method;
    unsigned long long reported_start;
};

static struct fx_tls slot_tls = FX_TLS_INIT;   /* this thread's struct guard_slot */
static struct guard_slot *slots;               /* all of them; never freed */
static SRWLOCK slots_lock = SRWLOCK_INIT;
static struct guard_slot fallback_slot;        /* when a slot cannot be allocated */
static LONG guard_faults;
static LONG max_faults = 5;
static BOOL policy_bypass;

#define compiler_barrier() __asm__ __volatile__("" ::: "memory")

/* The owning thread makes frame (or no call) the one the watchdog sees. */
static void slot_publish(struct guard_slot *slot, struct guard_frame *frame)
{
    slot->frame = frame;
    if (slot == &fallback_slot)
        return;
    slot->gen++;                  /* odd: being written */
    compiler_barrier();
    slot->busy = frame != NULL;
    if (frame) {
        slot->filter = frame->filter;
        slot->iface = frame->iface;
        slot->method = frame->method;
        slot->start = frame->start;
    }
    compiler_barrier();
    slot->gen++;                  /* even: consistent */
}

static struct guard_slot *slot_get(void)
{
    struct guard_slot *slot = fx_tls_get(&slot_tls);
    if (slot)
        return slot;
    slot = HeapAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, sizeof(*slot));
    if (!slot)
        return &fallback_slot;   /* shared, so the watchdog cannot trust it: never listed */
    slot->tid = GetCurrentThreadId();
    AcquireSRWLockExclusive(&slots_lock);
    slot->next = slots;
    slots = slot;
    ReleaseSRWLockExclusive(&slots_lock);
    fx_tls_set(&slot_tls, slot);
    return slot;
}

void guard_begin(struct guard_frame *frame, const struct fx_filter *filter,
                 const char *iface, const char *method)
{
    struct guard_slot *slot = slot_get();
    frame->filter = filter;
    frame->iface = iface;
    frame->method = method;
    frame->code = 0;
    frame->address = NULL;
    frame->start = fx_now_coarse_ms();   /* ~24 calls per connection */
    frame->slot = slot;
    frame->outer = slot->frame;
    slot_publish(slot, frame);
}

void guard_end(struct guard_frame *frame)
{
    slot_publish(frame->slot, frame->outer);
}

/* Runs on the faulting thread before unwinding: record, then unwind to the
 * innermost guarded call. */
LONG CALLBACK guard_exception_filter(EXCEPTION_POINTERS *ptrs)
{
    struct guard_slot *slot = fx_tls_get(&slot_tls);
    struct guard_frame *frame = slot ? slot->frame : NULL;
    if (frame && ptrs && ptrs->ExceptionRecord) {
        frame->code = ptrs->ExceptionRecord->ExceptionCode;
        frame->address = ptrs->ExceptionRecord->ExceptionAddress;
    }
    return EXCEPTION_EXECUTE_HANDLER;
}

HRESULT guard_fault(struct guard_frame *frame)
{
    /* The __EXCEPT block runs after unwinding, in the frame of the caller
     * of GUARDED_CALL: frames pushed by deeper guarded calls are gone. */
    slot_publish(frame->slot, frame);
    InterlockedIncrement(&guard_faults);
    fx_log(FX_LOG_ERROR, "filter %s faulted in %s::%s: exception 0x%08lx at %p%s",
           fx_filter_name(frame->filter), frame->iface, frame->method,
           (unsigned long)frame->code, frame->address,
           frame->code == FX_EXC_TRAP ? " (a trap slot, see above)" : "");
    fxt_fault(frame->iface, frame->method, frame->code, frame->address);
    guard_count_fault((struct fx_filter *)frame->filter);
    return FX_E_FILTER_FAULT;
}

BOOL guard_in_call(void)
{
    struct guard_slot *slot = fx_tls_get(&slot_tls);
    return slot && slot->frame;
}

void *guard_frame_current(void)
{
    struct guard_slot *slot = fx_tls_get(&slot_tls);
    return slot ? slot->frame : NULL;
}

LONG guard_fault_total(void)
{
    return guard_faults;
}

struct fx_filter *guard_current_filter(void)
{
    struct guard_slot *slot = fx_tls_get(&slot_tls);
    struct guard_frame *frame = slot ? slot->frame : NULL;
    return frame ? (struct fx_filter *)frame->filter : NULL;
}

/* ------------------------------------------------------------ fault accounting */

void guard_configure(unsigned faults, BOOL bypass)
{
    InterlockedExchange(&max_faults, (LONG)faults);
    policy_bypass = bypass;
}

void guard_count_fault(struct fx_filter *f)
{
    LONG n, limit = max_faults;
    if (!f)
        return;
    n = InterlockedIncrement(&f->faults);
    if (limit <= 0 || n < limit)
        return;
    if (InterlockedExchange((LONG *)&f->disabled, TRUE))
        return;     /* already disabled: said once */
    fx_log(FX_LOG_ERROR, "filter %s disabled after %ld faults; %s", fx_filter_name(f), (long)n,
           policy_bypass ? "new connections bypass it (on-disabled-filter = bypass)"
                         : "new connections it applies to are refused (on-disabled-filter = refuse)");
}

HRESULT guard_blame(struct fx_filter *f, const char *iface, const char *method,
                    const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    InterlockedIncrement(&guard_faults);
    fx_log(FX_LOG_ERROR, "filter %s: %s::%s %s", fx_filter_name(f), iface, method, what);
    guard_count_fault(f);
    return FX_E_FILTER_FAULT;
}

/* ------------------------------------------------------------ pointer checks */

static LONG CALLBACK quiet_filter(EXCEPTION_POINTERS *ptrs)
{
    return EXCEPTION_EXECUTE_HANDLER;
}

BOOL guard_copy(void *dst, const void *src, SIZE_T len)
{
    BOOL ok = FALSE;
    if (!src)
        return FALSE;
    __TRY {
        /* One volatile load at a time: memcpy may be inlined or vectorised
         * across the fault.  Aligned words (a vtable, a pointer) where
         * possible: they cannot straddle a page, and are 8 times fewer. */
        if (((ULONG_PTR)src | (ULONG_PTR)dst | len) % sizeof(ULONG_PTR) == 0) {
            volatile const ULONG_PTR *s = src;
            ULONG_PTR *d = dst;
            for (SIZE_T i = 0; i < len / sizeof(ULONG_PTR); i++)
                d[i] = s[i];
        } else {
            volatile const unsigned char *s = src;
            unsigned char *d = dst;
            for (SIZE_T i = 0; i < len; i++)
                d[i] = s[i];
        }
        ok = TRUE;
    } __EXCEPT(quiet_filter) {
        ok = FALSE;
    } __ENDTRY
    return ok;
}

/* Executable regions VirtualQuery already vouched for. Every data filter
 * a filter hands us is checked, once per connection; VirtualQuery is a
 * Wine syscall pair (signal mask) plus a view lookup, and was most of the
 * per-connection cost of a filtered rule (docs/BENCHMARKS.md, finding 11).
 * Filter code lives in a handful of regions (one .text per module), so a
 * small append-only table answers nearly every check without a syscall.
 * Readers take no lock: an entry is complete before the count covers it.
 * The table is emptied when a filter module is unloaded. */
#define CODE_RANGES_MAX 64
static struct { ULONG_PTR lo, hi; } code_ranges[CODE_RANGES_MAX];
static volatile LONG code_range_count;
static SRWLOCK code_range_lock = SRWLOCK_INIT;

static BOOL known_code(const void *p)
{
    LONG n = code_range_count;
    compiler_barrier();
    for (LONG i = 0; i < n; i++)
        if ((ULONG_PTR)p >= code_ranges[i].lo && (ULONG_PTR)p < code_ranges[i].hi)
            return TRUE;
    return FALSE;
}

static void remember_code(const MEMORY_BASIC_INFORMATION *mbi)
{
    AcquireSRWLockExclusive(&code_range_lock);
    LONG n = code_range_count;
    if (n < CODE_RANGES_MAX) {
        code_ranges[n].lo = (ULONG_PTR)mbi->BaseAddress;
        code_ranges[n].hi = (ULONG_PTR)mbi->BaseAddress + mbi->RegionSize;
        compiler_barrier();
        InterlockedExchange(&code_range_count, n + 1);
    }
    ReleaseSRWLockExclusive(&code_range_lock);
}

void guard_forget_code(void)
{
    AcquireSRWLockExclusive(&code_range_lock);
    InterlockedExchange(&code_range_count, 0);
    ReleaseSRWLockExclusive(&code_range_lock);
}

/* Could p be a method? PE modules and winelib modules are views Wine
 * knows: committed and executable. Free or non-executable memory is not
 * code. Ranges Wine only reserved, or cannot describe (ELF mappings of
 * the 32-bit loader), get the benefit of the doubt: the call is guarded. */
static BOOL maybe_code(const void *p)
{
    MEMORY_BASIC_INFORMATION mbi;
    if (!p)
        return FALSE;
    if (known_code(p))
        return TRUE;
    if (!VirtualQuery(p, &mbi, sizeof(mbi)))
        return TRUE;
    if (mbi.State == MEM_FREE)
        return FALSE;
    if (mbi.State != MEM_COMMIT)
        return TRUE;
    if (mbi.Protect & (PAGE_GUARD | PAGE_NOACCESS))
        return FALSE;
    if (!(mbi.Protect & (PAGE_EXECUTE | PAGE_EXECUTE_READ | PAGE_EXECUTE_READWRITE |
                         PAGE_EXECUTE_WRITECOPY)))
        return FALSE;
    remember_code(&mbi);
    return TRUE;
}

BOOL guard_check_iface(const void *obj, unsigned nmethods)
{
    void *vtbl;
    void *methods[32];

    if (!obj || ((ULONG_PTR)obj % sizeof(void *)) || nmethods > 32)
        return FALSE;
    if (!guard_copy(&vtbl, obj, sizeof(vtbl)) || !vtbl || ((ULONG_PTR)vtbl % sizeof(void *)))
        return FALSE;
    if (!guard_copy(methods, vtbl, nmethods * sizeof(void *)))
        return FALSE;
    for (unsigned i = 0; i < nmethods; i++)
        if (!maybe_code(methods[i]))
            return FALSE;
    return TRUE;
}

BOOL guard_free_cotaskmem(void *p)
{
    BOOL valid = FALSE;
    if (!p)
        return TRUE;
    __TRY {
        valid = HeapValidate(GetProcessHeap(), 0, p);
    } __EXCEPT(quiet_filter) {
        valid = FALSE;
    } __ENDTRY
    if (valid)
        CoTaskMemFree(p);
    return valid;
}

/* ------------------------------------------------------------ watchdog */

static HANDLE watchdog_thread;
static HANDLE watchdog_wake;
static volatile LONG watchdog_stop_flag;
static unsigned watchdog_timeout;       /* seconds; 0 = off */

/* A consistent view of a slot's current call: FALSE if the thread is in no
 * guarded call, or was writing (then it is not stuck either). gen tells
 * calls apart: it changes whenever a call starts or ends. */
static BOOL slot_snapshot(struct guard_slot *slot, LONG *gen, const struct fx_filter **filter,
                          const char **iface, const char **method, unsigned long long *start)
{
    LONG g1 = slot->gen;
    BOOL busy;
    if (g1 & 1)
        return FALSE;
    compiler_barrier();
    busy = slot->busy;
    *filter = slot->filter;
    *iface = slot->iface;
    *method = slot->method;
    *start = slot->start;
    compiler_barrier();
    if (slot->gen != g1 || !busy)
        return FALSE;
    *gen = g1;
    return TRUE;
}

static const char *thread_text(DWORD tid, char *buf, size_t len)
{
    struct host *h = the_host;
    for (int i = 0; h && h->workers && i < h->nworkers; i++)
        if (h->workers[i].thread && h->workers[i].thread_id == tid) {
            snprintf(buf, len, "thread %04lx, worker %d", (unsigned long)tid, i);
            return buf;
        }
    snprintf(buf, len, "thread %04lx", (unsigned long)tid);
    return buf;
}

static void watchdog_scan(void)
{
    unsigned long long now = fx_now_coarse_ms(), limit = (unsigned long long)watchdog_timeout * 1000;
    struct guard_slot *slot;
    char who[64];

    AcquireSRWLockShared(&slots_lock);
    for (slot = slots; slot; slot = slot->next) {
        const struct fx_filter *filter;
        const char *iface, *method;
        unsigned long long start;
        LONG gen, g = slot->gen;
        BOOL busy = slot_snapshot(slot, &gen, &filter, &iface, &method, &start);

        /* A reported call is over once gen moved (a torn read shows as odd). */
        if (slot->reported && g != slot->reported_gen) {
            fx_log(FX_LOG_NOTICE, "watchdog: filter %s returned from %s::%s after about %llu s (%s)",
                   fx_filter_name(slot->reported_filter), slot->reported_iface,
                   slot->reported_method, (now - slot->reported_start + 500) / 1000,
                   thread_text(slot->tid, who, sizeof(who)));
            slot->reported = FALSE;
        }
        if (!busy || slot->reported || now < start || now - start < limit)
            continue;
        fx_log(FX_LOG_ERROR, "watchdog: filter %s has not returned from %s::%s after %llu s (%s)",
               fx_filter_name(filter), iface, method, (now - start) / 1000,
               thread_text(slot->tid, who, sizeof(who)));
        slot->reported = TRUE;
        slot->reported_gen = gen;
        slot->reported_filter = filter;
        slot->reported_iface = iface;
        slot->reported_method = method;
        slot->reported_start = start;
    }
    ReleaseSRWLockShared(&slots_lock);
}

static DWORD WINAPI watchdog_main(void *arg)
{
    /* A quarter of the timeout, between 100 ms and 1 s: a hang is reported
     * at most that late. */
    DWORD period = watchdog_timeout * 250;
    if (period > 1000)
        period = 1000;
    if (period < 100)
        period = 100;
    while (!watchdog_stop_flag) {
        WaitForSingleObject(watchdog_wake, period);
        if (!watchdog_stop_flag)
            watchdog_scan();
    }
    return 0;
}

int guard_watchdog_start(unsigned hang_timeout)
{
    watchdog_timeout = hang_timeout;
    if (!hang_timeout || watchdog_thread)
        return 0;
    watchdog_stop_flag = 0;
    watchdog_wake = CreateEventW(NULL, FALSE, FALSE, NULL);
    watchdog_thread = watchdog_wake ? CreateThread(NULL, 0, watchdog_main, NULL, 0, NULL) : NULL;
    if (!watchdog_thread) {
        fx_log(FX_LOG_ERROR, "cannot start the watchdog thread (error %lu); hung filter calls "
               "will not be reported", (unsigned long)GetLastError());
        if (watchdog_wake)
            CloseHandle(watchdog_wake);
        watchdog_wake = NULL;
        watchdog_timeout = 0;
        return -1;
    }
    return 0;
}

void guard_watchdog_stop(void)
{
    if (!watchdog_thread)
        return;
    InterlockedExchange(&watchdog_stop_flag, 1);
    SetEvent(watchdog_wake);
    WaitForSingleObject(watchdog_thread, INFINITE);
    CloseHandle(watchdog_thread);
    CloseHandle(watchdog_wake);
    watchdog_thread = watchdog_wake = NULL;
}

BOOL guard_thread_hung(DWORD tid, char *what, size_t len)
{
    unsigned long long now = fx_now_coarse_ms(), limit = (unsigned long long)watchdog_timeout * 1000;
    struct guard_slot *slot;
    BOOL hung = FALSE;

    if (!watchdog_timeout)
        return FALSE;
    AcquireSRWLockShared(&slots_lock);
    for (slot = slots; slot && !hung; slot = slot->next) {
        const struct fx_filter *filter;
        const char *iface, *method;
        unsigned long long start;
        LONG gen;
        if (slot->tid != tid || !slot_snapshot(slot, &gen, &filter, &iface, &method, &start))
            continue;
        if (now >= start && now - start >= limit) {
            hung = TRUE;
            if (what)
                snprintf(what, len, "filter %s in %s::%s for %llu s", fx_filter_name(filter),
                         iface, method, (now - start) / 1000);
        }
    }
    ReleaseSRWLockShared(&slots_lock);
    return hung;
}
