/*
 * trap.h — host vtables padded with trap slots, and the registry of every
 * host vtable (reference 9.2 "Trap vtables as a safety net", docs ABI-300).
 *
 * The ISA 2000 order of IFWXFirewall and IFWXConnection (and the slots of
 * IFWXNetworkSocket after 16, and the 2004/TMG layouts of the others) is
 * not known, so a filter built against the real SDK may call a slot past
 * the methods we declare. Every host vtable is therefore followed by
 * FX_TRAP_SLOTS trap entries. A trap never returns into the filter (the
 * callee pops an argument count it does not know): it logs the interface,
 * the slot, the object and the return address, then raises FX_EXC_TRAP,
 * which the innermost GUARDED_CALL catches like any fault, so the caller
 * ends the session/connection the call belonged to and the host goes on.
 * A trap hit on a thread that is in no guarded call (a filter's own
 * thread) ends that thread.
 *
 * Defining a host vtable:
 *
 *     FX_HOST_VTBL(IFWXConnection, connection_vtbl) = {
 *         { connection_QueryInterface, ... },   // IFWXConnectionVtbl
 *         FX_TRAPS(IFWXConnection)
 *     };
 *     obj->IFWXConnection_iface.lpVtbl = &connection_vtbl.vtbl;
 *
 * FX_HOST_VTBL also registers the vtable (an ELF constructor, no Win32
 * call) so that the trace (trace.h) can find every host method.
 * Interfaces: FX_TRAP_IFACES below; adding one means adding it there.
 */
#ifndef FWX_TRAP_H
#define FWX_TRAP_H

#include "fwxhost.h"

#define FX_TRAP_SLOTS 16
/* The exception code a trap raises (customer bit set, distinct from
 * anything Windows raises). */
#define FX_EXC_TRAP 0xE0F70001UL

#define FX_TRAP_PROTO(I, k) void WINAPI fx_trap_##I##_##k(void *This)
#define FX_TRAP_DECLARE(I)                                                              \
    FX_TRAP_PROTO(I, 0); FX_TRAP_PROTO(I, 1); FX_TRAP_PROTO(I, 2); FX_TRAP_PROTO(I, 3);    \
    FX_TRAP_PROTO(I, 4); FX_TRAP_PROTO(I, 5); FX_TRAP_PROTO(I, 6); FX_TRAP_PROTO(I, 7);    \
    FX_TRAP_PROTO(I, 8); FX_TRAP_PROTO(I, 9); FX_TRAP_PROTO(I, 10); FX_TRAP_PROTO(I, 11);  \
    FX_TRAP_PROTO(I, 12); FX_TRAP_PROTO(I, 13); FX_TRAP_PROTO(I, 14); FX_TRAP_PROTO(I, 15); \
    struct fx_vtbl_##I { I##Vtbl vtbl; void *traps[FX_TRAP_SLOTS]; }

#define FX_TRAP_ENTRY(I, k) ((void *)fx_trap_##I##_##k)
#define FX_TRAPS(I)                                                                      \
    { FX_TRAP_ENTRY(I, 0), FX_TRAP_ENTRY(I, 1), FX_TRAP_ENTRY(I, 2), FX_TRAP_ENTRY(I, 3),       \
      FX_TRAP_ENTRY(I, 4), FX_TRAP_ENTRY(I, 5), FX_TRAP_ENTRY(I, 6), FX_TRAP_ENTRY(I, 7),       \
      FX_TRAP_ENTRY(I, 8), FX_TRAP_ENTRY(I, 9), FX_TRAP_ENTRY(I, 10), FX_TRAP_ENTRY(I, 11),     \
      FX_TRAP_ENTRY(I, 12), FX_TRAP_ENTRY(I, 13), FX_TRAP_ENTRY(I, 14), FX_TRAP_ENTRY(I, 15) }

/* The host-implemented interfaces that get trap slots. */
FX_TRAP_DECLARE(IFWXFirewall);
FX_TRAP_DECLARE(IFWXSession);
FX_TRAP_DECLARE(IFWXConnection);
FX_TRAP_DECLARE(IFWXSocket);
FX_TRAP_DECLARE(IFWXNetworkSocket);
FX_TRAP_DECLARE(IFWXIOBuffer);
FX_TRAP_DECLARE(IFWXFirewallAction);
FX_TRAP_DECLARE(IFWXFilterAdmin);
FX_TRAP_DECLARE(IFWXUdpDestination);

/* Registry of host vtables (for the trace). */
struct fx_vtbl_entry {
    const char *iface;
    void **slots;        /* the vtable: nknown methods, then the traps */
    unsigned nknown;     /* methods including IUnknown's 3 */
};
void fx_vtbl_register(const char *iface, void *vtbl, unsigned nknown);
/* The registered vtables; *n gets their count. */
const struct fx_vtbl_entry *fx_vtbl_list(int *n);

#define FX_HOST_VTBL(I, var) FX_HOST_VTBL_NAMED(I, var, #I)
/* A second layout of interface I (an ABI profile's, ABI-303): registered under
 * its own name, so the trace, whose wrappers follow our IDL, leaves it alone. */
#define FX_HOST_VTBL_NAMED(I, var, name)                                         \
    static struct fx_vtbl_##I var;                                               \
    static void __attribute__((constructor)) var##_register(void)                \
    {                                                                            \
        fx_vtbl_register(name, &var.vtbl, sizeof(I##Vtbl) / sizeof(void *));     \
    }                                                                            \
    static struct fx_vtbl_##I var

/* Trap hits so far (for tests and stats). */
LONG fx_trap_total(void);

#endif /* FWX_TRAP_H */
