/*
 * guard.c — catching exceptions raised inside filter code (see guard.h).
 *
 * The frame stack is per thread: a filter may call the host, which may call
 * another filter, and the exception filter must blame the innermost one.
 */
#include "fwxhost.h" /* first: Winsock before any libc header */
#include <stdio.h>
#include "guard.h"
#include "loader.h"


static struct fx_tls guard_tls = FX_TLS_INIT;   /* innermost struct guard_frame */
static LONG guard_faults;

void guard_begin(struct guard_frame *frame, const struct fx_filter *filter,
                 const char *iface, const char *method)
{
    frame->filter = filter;
    frame->iface = iface;
    frame->method = method;
    frame->code = 0;
    frame->address = NULL;
    frame->outer = fx_tls_get(&guard_tls);
    fx_tls_set(&guard_tls, frame);
}

void guard_end(struct guard_frame *frame)
{
    fx_tls_set(&guard_tls, frame->outer);
}

/* Runs on the faulting thread before unwinding: record, then unwind to the
 * innermost guarded call. */
LONG CALLBACK guard_exception_filter(EXCEPTION_POINTERS *ptrs)
{
    struct guard_frame *frame = fx_tls_get(&guard_tls);
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
    fx_tls_set(&guard_tls, frame);
    InterlockedIncrement(&guard_faults);
    if (frame->filter)
        InterlockedIncrement((LONG *)&((struct fx_filter *)frame->filter)->faults);
    fx_log(FX_LOG_ERROR, "filter %s faulted in %s::%s: exception 0x%08lx at %p",
           fx_filter_name(frame->filter), frame->iface, frame->method,
           (unsigned long)frame->code, frame->address);
    return FX_E_FILTER_FAULT;
}

LONG guard_fault_total(void)
{
    return guard_faults;
}

struct fx_filter *guard_current_filter(void)
{
    struct guard_frame *frame = fx_tls_get(&guard_tls);
    return frame ? (struct fx_filter *)frame->filter : NULL;
}
