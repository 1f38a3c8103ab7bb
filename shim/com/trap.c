/*
 * trap.c — the trap entries after every host vtable, and the registry of
 * host vtables (see trap.h, docs ABI-300).
 *
 * Each trap knows its interface and its index after the known methods, so
 * it can name the slot the filter called. It reads nothing but `This`
 * (the first argument of every COM method in both conventions) and its
 * own return address, logs, and raises FX_EXC_TRAP: the innermost
 * GUARDED_CALL unwinds past the filter's frames and reports the fault,
 * and its caller ends the session the call belonged to.
 */
#include "fwxhost.h" /* first: Winsock before any libc header */
#include "guard.h"
#include "loader.h"
#include "trap.h"

static LONG trap_hits;

LONG fx_trap_total(void)
{
    return trap_hits;
}

static void __attribute__((noreturn, noinline))
trap_hit(const char *iface, unsigned nknown, unsigned k, void *This, void *ret)
{
    struct fx_filter *f = guard_current_filter();
    unsigned slot = nknown + k;

    InterlockedIncrement(&trap_hits);
    if (!guard_in_call()) {
        /* A filter's own thread: nobody to unwind to; returning would
         * corrupt its stack. End the thread, keep the host. */
        fx_log(FX_LOG_ERROR, "trap: a filter called %s slot %u (offset %u), beyond the %u "
               "methods the host implements, on its own thread %04lx (object %p, return "
               "address %p); ending that thread",
               iface, slot, slot * (unsigned)sizeof(void *), nknown,
               (unsigned long)GetCurrentThreadId(), This, ret);
        ExitThread(FX_EXC_TRAP);
    }
    fx_log(FX_LOG_ERROR, "trap: filter %s called %s slot %u (offset %u), beyond the %u "
           "methods the host implements (object %p, return address %p); ending its session",
           fx_filter_name(f), iface, slot, slot * (unsigned)sizeof(void *), nknown, This, ret);
    for (;;)
        RaiseException(FX_EXC_TRAP, EXCEPTION_NONCONTINUABLE, 0, NULL);
}

#define FX_TRAP_DEFINE_ONE(I, k)                                                    \
    FX_TRAP_PROTO(I, k)                                                             \
    {                                                                               \
        trap_hit(#I, sizeof(I##Vtbl) / sizeof(void *), k, This,                     \
                 __builtin_return_address(0));                                      \
    }
#define FX_TRAP_DEFINE(I)                                                           \
    FX_TRAP_DEFINE_ONE(I, 0) FX_TRAP_DEFINE_ONE(I, 1) FX_TRAP_DEFINE_ONE(I, 2)       \
    FX_TRAP_DEFINE_ONE(I, 3) FX_TRAP_DEFINE_ONE(I, 4) FX_TRAP_DEFINE_ONE(I, 5)       \
    FX_TRAP_DEFINE_ONE(I, 6) FX_TRAP_DEFINE_ONE(I, 7) FX_TRAP_DEFINE_ONE(I, 8)       \
    FX_TRAP_DEFINE_ONE(I, 9) FX_TRAP_DEFINE_ONE(I, 10) FX_TRAP_DEFINE_ONE(I, 11)     \
    FX_TRAP_DEFINE_ONE(I, 12) FX_TRAP_DEFINE_ONE(I, 13) FX_TRAP_DEFINE_ONE(I, 14)    \
    FX_TRAP_DEFINE_ONE(I, 15)

FX_TRAP_DEFINE(IFWXFirewall)
FX_TRAP_DEFINE(IFWXSession)
FX_TRAP_DEFINE(IFWXConnection)
FX_TRAP_DEFINE(IFWXSocket)
FX_TRAP_DEFINE(IFWXNetworkSocket)
FX_TRAP_DEFINE(IFWXIOBuffer)
FX_TRAP_DEFINE(IFWXFirewallAction)
FX_TRAP_DEFINE(IFWXFilterAdmin)
FX_TRAP_DEFINE(IFWXUdpDestination)

/* ------------------------------------------------------------ registry */

#define MAX_VTBLS 32
static struct fx_vtbl_entry vtbls[MAX_VTBLS];
static int nvtbls;

/* ELF constructors run one at a time before main: no lock needed. */
void fx_vtbl_register(const char *iface, void *vtbl, unsigned nknown)
{
    if (nvtbls == MAX_VTBLS)
        return;
    vtbls[nvtbls].iface = iface;
    vtbls[nvtbls].slots = vtbl;
    vtbls[nvtbls].nknown = nknown;
    nvtbls++;
}

const struct fx_vtbl_entry *fx_vtbl_list(int *n)
{
    *n = nvtbls;
    return vtbls;
}
