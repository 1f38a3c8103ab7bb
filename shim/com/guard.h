/*
 * guard.h — the one path by which host code calls into filter code.
 *
 * Every call into a filter DLL runs inside GUARDED_CALL: an access
 * violation or any other exception raised in filter code is caught by
 * Wine's SEH (__TRY/__EXCEPT), logged with the filter, interface, method,
 * exception code and address, counted against the filter, and turned into
 * an HRESULT (FX_E_FILTER_FAULT) for the caller to act on — normally by
 * ending only the session the call belonged to.
 *
 * Rules for callers: never hold a host lock across GUARDED_CALL; never
 * 'return' or 'goto' out of the expression.
 */
#ifndef FWX_GUARD_H
#define FWX_GUARD_H

#include "fwxhost.h"
#include <wine/exception.h>

struct fx_filter;

/* Returned when the filter faulted; distinct from anything filters return. */
#define FX_E_FILTER_FAULT ((HRESULT)0xA0F70001L)

struct guard_frame {
    const struct fx_filter *filter;
    const char *iface;
    const char *method;
    struct guard_frame *outer;    /* nesting: filter -> host -> filter */
    DWORD code;                   /* exception code, once caught */
    void *address;                /* where it was raised */
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

#endif /* FWX_GUARD_H */
