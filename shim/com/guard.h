/*
 * guard.h — the one path by which host code calls into filter code.
 *
 * Every call into a filter DLL runs inside GUARDED_CALL: an access
 * violation or any other exception raised in filter code is caught by
 * Wine's SEH (__TRY/__EXCEPT), logged with the filter, interface, method,
 * exception code and address, counted against the filter, and turned into
 * an HRESULT (FX_E_FILTER_FAULT) for the caller to act on — normally by
 * ending only the connection the call belonged to.
 *
 * Fault accounting: a filter that reaches [host] max-faults faults (caught
 * exceptions, and pointers it handed back that the host could not use,
 * guard_blame) is disabled, with one log line (docs HOST-022).
 *
 * Watchdog: guard_begin records the call and its start time in a per-thread
 * slot (two stores and a clock read); a monitor thread scans the slots and
 * logs any filter call that has run for [host] hang-timeout seconds, naming
 * the filter, interface, method and thread (HOST-023).
 *
 * Rules for callers: never hold a host lock across GUARDED_CALL; never
 * 'return' or 'goto' out of the expression.
 */
#ifndef FWX_GUARD_H
#define FWX_GUARD_H

#include "fwxhost.h"
#include <wine/exception.h>

struct fx_filter;
struct guard_slot;

/* Returned when the filter faulted; distinct from anything filters return. */
#define FX_E_FILTER_FAULT ((HRESULT)0xA0F70001L)
/* session_raise: a disabled filter would have seen the event and
 * [host] on-disabled-filter = refuse. */
#define FX_E_FILTER_DISABLED ((HRESULT)0xA0F70002L)

struct guard_frame {
    const struct fx_filter *filter;
    const char *iface;
    const char *method;
    struct guard_frame *outer;    /* nesting: filter -> host -> filter */
    DWORD code;                   /* exception code, once caught */
    void *address;                /* where it was raised */
    unsigned long long start;     /* fx_now_coarse_ms() at guard_begin, for the watchdog */
    struct guard_slot *slot;      /* this thread's */
};

void guard_begin(struct guard_frame *frame, const struct fx_filter *filter,
                 const char *iface, const char *method);
void guard_end(struct guard_frame *frame);
LONG CALLBACK guard_exception_filter(EXCEPTION_POINTERS *ptrs);
HRESULT guard_fault(struct guard_frame *frame);

/* Number of faults recorded by this thread's calls since start, for tests. */
LONG guard_fault_total(void);

/* The filter whose code is running on this thread (the innermost guarded
 * call), or NULL: the filter that is calling the host right now. */
struct fx_filter *guard_current_filter(void);
/* Is this thread inside a guarded call (any filter, or none named)? */
BOOL guard_in_call(void);
/* The innermost guarded call's frame on this thread, or NULL (trace.c). */
void *guard_frame_current(void);

#define GUARDED_CALL(hr, filter, iface, method, expr)                 \
    do {                                                              \
        struct guard_frame gf_;                                       \
        guard_begin(&gf_, (filter), (iface), (method));               \
        __TRY { (hr) = (expr); }                                      \
        __EXCEPT(guard_exception_filter) { (hr) = guard_fault(&gf_); } \
        __ENDTRY                                                      \
        guard_end(&gf_);                                              \
    } while (0)

/* For calls returning ULONG (AddRef/Release) or nothing. */
#define GUARDED_VOID(filter, iface, method, expr)                     \
    do {                                                              \
        struct guard_frame gf_;                                       \
        guard_begin(&gf_, (filter), (iface), (method));               \
        __TRY { (void)(expr); }                                       \
        __EXCEPT(guard_exception_filter) { (void)guard_fault(&gf_); } \
        __ENDTRY                                                      \
        guard_end(&gf_);                                              \
    } while (0)

/* ---- policy (host_start sets it before any filter runs) ---- */

/* max_faults 0: never disable. bypass: only changes the wording of the
 * "disabled" line; session.c applies the policy. */
void guard_configure(unsigned max_faults, BOOL bypass);

/* One fault against f (NULL: nobody to blame); disables f when it reaches
 * max-faults, logging "filter X disabled after N faults" once. */
void guard_count_fault(struct fx_filter *f);

/* A call into f returned something the host cannot use (a garbage out
 * pointer, a corrupt structure): logs "filter F: IFACE::METHOD WHAT" at
 * error level and counts a fault. Returns FX_E_FILTER_FAULT. */
HRESULT guard_blame(struct fx_filter *f, const char *iface, const char *method,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* ---- pointers handed back by filters: checked, never trusted ---- */

/* Copies len bytes from src; FALSE (nothing logged) if src is NULL or any
 * byte of it cannot be read. */
BOOL guard_copy(void *dst, const void *src, SIZE_T len);

/* Could obj be a COM object with nmethods methods? Aligned, readable,
 * with a readable vtable whose first nmethods entries are non-NULL and do
 * not point into memory Wine knows is not executable. No filter code runs. */
BOOL guard_check_iface(const void *obj, unsigned nmethods);
/* Empties the cache of code regions guard_check_iface trusts; called when
 * a filter module is unloaded, since its pages may be reused. */
void guard_forget_code(void);

/* CoTaskMemFree for a block a filter handed over, only if it is one
 * (HeapValidate); otherwise it is left alone and FALSE returned. */
BOOL guard_free_cotaskmem(void *p);

/* ---- watchdog ---- */

/* Starts the monitor thread (hang_timeout 0: none). 0, or -1 if
 * CreateThread failed (logged; the host runs without a watchdog). */
int guard_watchdog_start(unsigned hang_timeout);
void guard_watchdog_stop(void);

/* Is thread tid inside a filter call that has run for at least
 * hang-timeout (only with the watchdog on)? If so, describes the call in
 * what ("filter F in IFACE::METHOD for N s"). */
BOOL guard_thread_hung(DWORD tid, char *what, size_t len);

#endif /* FWX_GUARD_H */
