/*
 * test_abi.c - the ISA 2000 ABI of idl/wspfwext.idl as the compiler sees it,
 * for the flavour this program is built for (x86 = i386, x64 = x86_64), and
 * the behaviour of the host's IFWXIOBuffer and IFWXFirewall helpers.
 *
 *   layout     every IDL structure: size and each member's offset. i386
 *              values are those of reference 6.3 (ISA 2000); x86_64 values
 *              are the natural-alignment layout, written out by hand below
 *              (never "sizeof of itself"), so a change to the IDL shows up
 *              as a difference here. Plus the Win32 types the structures
 *              point at (SOCKADDR_IN, hostent) and UserContextType.
 *   vtables    the slot of every method of each interface whose ISA 2000
 *              order is confirmed [C] (reference section 3), and the vtable
 *              length (so that nothing is inserted or appended unnoticed).
 *   constants  enum values, event and source bits, FWX_ALL_SOURCES,
 *              FWX_PROTOCOL_*, FWX_FLAG_*, FWX_SESSION_*, FWX_E_* codes and
 *              the project-assigned GUIDs (docs/abi-decisions.md ABI-001).
 *   behaviour  shim/com/iobuffer.c and firewall.c through their COM
 *              vtables (reference 3.8, 3.13, 8.2): Append/ReadAt/SetDataSize/
 *              SendToBuffer limits and errors, const and window buffers,
 *              filter-implemented buffers, CreateBuffer limits, per-thread
 *              heavy-blocking nesting, DuplicateFilterHookEvents.
 *   callconv   every IFWXIOBuffer and IFWXFirewall method, called through an
 *              assembler thunk the way MSVC-compiled filter code calls it,
 *              preserves the registers the Microsoft conventions require
 *              (x86_64: RBX RSI RDI R12-R15 XMM6-15; i386 stdcall: EBX ESI
 *              EDI, and pops exactly its own arguments).
 *
 * Per-arch expectations use A(i386, x86_64); test_arch_is_consistent checks
 * that _WIN64 and sizeof(void *) agree, so the two cannot drift apart.
 */
/* CLSID_FWXFilterAdmin is defined, writable, in gen/fxabi_guids.c (abi.h). */
/* The IDL's compile-time constants, not the run-time [abi] values (abi.h). */
#define FX_ABI_DEFAULTS
#include "fwxhost.h" /* first: Winsock must precede every libc header */
#include <winsock2.h>
#include <windows.h>
#include "wspfwext.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h> /* uintptr_t: -D_UINTPTR_T stops cmocka.h from defining it */
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "fxlog.h"

#ifdef _WIN64
#define A(i386, x86_64) ((size_t)(x86_64))
#define ARCH_NAME "x86_64"
#else
#define A(i386, x86_64) ((size_t)(i386))
#define ARCH_NAME "i386"
#endif

/* ------------------------------------------------------------------------
 * Table checks: report every mismatch of a group, then fail once.
 * ------------------------------------------------------------------------ */

static int check_failures;

static void check_eq(const char *what, size_t got, size_t want, const char *file, int line)
{
    if (got != want) {
        print_error("%s:%d: %s is %lu on " ARCH_NAME ", expected %lu\n", file, line, what,
                    (unsigned long)got, (unsigned long)want);
        check_failures++;
    }
}

#define CHECK(expr, want) check_eq(#expr, (size_t)(expr), (size_t)(want), __FILE__, __LINE__)
#define SIZE(type, i386, x64) CHECK(sizeof(type), A(i386, x64))
#define OFF(type, member, i386, x64) CHECK(offsetof(type, member), A(i386, x64))
#define CHECKS_BEGIN() (check_failures = 0)
#define CHECKS_END() assert_int_equal(check_failures, 0)

static void test_arch_is_consistent(void **state)
{
    (void)state;
#ifdef _WIN64
    assert_int_equal(sizeof(void *), 8);
#else
    assert_int_equal(sizeof(void *), 4);
#endif
    assert_int_equal(sizeof(DWORD), 4);
    assert_int_equal(sizeof(LONG), 4);
    assert_int_equal(sizeof(BOOL), 4);
    assert_int_equal(sizeof(INT), 4);
    assert_int_equal(sizeof(BOOLEAN), 1);
    assert_int_equal(sizeof(GUID), 16);
    assert_int_equal(sizeof(HRESULT), 4);
}

/* ------------------------------------------------------------------------
 * Structure layouts (reference 6.3; x86_64 by natural alignment)
 * ------------------------------------------------------------------------ */

static void test_layout_hook_events(void **state)
{
    (void)state;
    CHECKS_BEGIN();
    SIZE(FwxPortRangeEvents, 12, 12);
    OFF(FwxPortRangeEvents, dwEvents, 0, 0);
    OFF(FwxPortRangeEvents, dwLowPort, 4, 4);
    OFF(FwxPortRangeEvents, dwHighPort, 8, 8);

    SIZE(FwxFilterHookEvents, 12, 16);
    OFF(FwxFilterHookEvents, dwGlobalEvents, 0, 0);
    OFF(FwxFilterHookEvents, dwNumPortRanges, 4, 4);
    OFF(FwxFilterHookEvents, PortRangeEvents, 8, 8);
    CHECK(sizeof(PFwxFilterHookEvents), sizeof(void *));
    CHECK(sizeof(*(PFilterHookEvents)0), A(12, 16));
    CHECKS_END();
}

static void test_layout_event_structs(void **state)
{
    (void)state;
    CHECKS_BEGIN();
    /* fwx_Connect_Tcp */
    SIZE(FwxConnectEvent, 16, 32);
    OFF(FwxConnectEvent, Address, 0, 0);
    OFF(FwxConnectEvent, AddressLength, 4, 8);
    OFF(FwxConnectEvent, piConnection, 8, 16);
    OFF(FwxConnectEvent, FilterAccess, 12, 24);

    /* fwx_Udp_Destination */
    SIZE(FwxUdpDestination, 20, 40);
    OFF(FwxUdpDestination, Address, 0, 0);
    OFF(FwxUdpDestination, AddressLength, 4, 8);
    OFF(FwxUdpDestination, piConnection, 8, 16);
    OFF(FwxUdpDestination, piUdpDestination, 12, 24);
    OFF(FwxUdpDestination, FilterAccess, 16, 32);

    /* fwx_Bind_Tcp / fwx_Bind_Udp: the GUID is 4-aligned, so on x86_64 it
     * follows FilterAccess directly (28) and the size rounds up to 48. */
    SIZE(FwxBindEvent, 32, 48);
    OFF(FwxBindEvent, Address, 0, 0);
    OFF(FwxBindEvent, AddressLength, 4, 8);
    OFF(FwxBindEvent, piConnection, 8, 16);
    OFF(FwxBindEvent, FilterAccess, 12, 24);
    OFF(FwxBindEvent, ProtocolGuid, 16, 28);

    /* fwx_Listen */
    SIZE(FwxListenEvent, 12, 24);
    OFF(FwxListenEvent, Address, 0, 0);
    OFF(FwxListenEvent, AddressLength, 4, 8);
    OFF(FwxListenEvent, piConnection, 8, 16);

    /* fwx_AcceptedConnection */
    SIZE(FwxAcceptEvent, 24, 48);
    OFF(FwxAcceptEvent, RemoteAddress, 0, 0);
    OFF(FwxAcceptEvent, RemoteAddressLength, 4, 8);
    OFF(FwxAcceptEvent, LocalAddress, 8, 16);
    OFF(FwxAcceptEvent, LocalAddressLength, 12, 24);
    OFF(FwxAcceptEvent, piConnectionAccepted, 16, 32);
    OFF(FwxAcceptEvent, FilterAccess, 20, 40);

    /* fwx_GetHostByName */
    SIZE(FwxGetHostByNameEvent, 24, 40);
    OFF(FwxGetHostByNameEvent, Hostname, 0, 0);
    OFF(FwxGetHostByNameEvent, Hostent, 4, 8);
    OFF(FwxGetHostByNameEvent, HostentLength, 8, 16);
    OFF(FwxGetHostByNameEvent, fBeforeAction, 12, 20);
    OFF(FwxGetHostByNameEvent, FilterAccess, 16, 24);
    OFF(FwxGetHostByNameEvent, piGetXByY, 20, 32);

    /* fwx_GetHostByAddr */
    SIZE(FwxGetHostByAddrEvent, 32, 48);
    OFF(FwxGetHostByAddrEvent, Address, 0, 0);
    OFF(FwxGetHostByAddrEvent, AddressLength, 4, 8);
    OFF(FwxGetHostByAddrEvent, AddressType, 8, 12);
    OFF(FwxGetHostByAddrEvent, Hostent, 12, 16);
    OFF(FwxGetHostByAddrEvent, HostentLength, 16, 24);
    OFF(FwxGetHostByAddrEvent, fBeforeAction, 20, 28);
    OFF(FwxGetHostByAddrEvent, FilterAccess, 24, 32);
    OFF(FwxGetHostByAddrEvent, piGetXByY, 28, 40);

    /* fwx_ConnectionTerminating (2000 layout [?], ABI-016) */
    SIZE(FwxEndConnectionEvent, 4, 8);
    OFF(FwxEndConnectionEvent, piConnection, 0, 0);

    /* fwx_EstablishedConnection */
    SIZE(FwxEstablishedConnectionEvent, 20, 40);
    OFF(FwxEstablishedConnectionEvent, Protocol, 0, 0);
    OFF(FwxEstablishedConnectionEvent, Address, 4, 8);
    OFF(FwxEstablishedConnectionEvent, AddressLength, 8, 16);
    OFF(FwxEstablishedConnectionEvent, piConnection, 12, 24);
    OFF(FwxEstablishedConnectionEvent, UserContext, 16, 32);
    CHECKS_END();
}

static void test_layout_firewall_event(void **state)
{
    (void)state;
    CHECKS_BEGIN();
    /* The union is as large as its largest members (Bind, GetHostByAddr;
     * on x86_64 also Accept) and every member starts at 0. */
    SIZE(FwxFirewallEventParameters, 32, 48);
    OFF(FwxFirewallEventParameters, Connect, 0, 0);
    OFF(FwxFirewallEventParameters, UdpDest, 0, 0);
    OFF(FwxFirewallEventParameters, Bind, 0, 0);
    OFF(FwxFirewallEventParameters, Listen, 0, 0);
    OFF(FwxFirewallEventParameters, Accept, 0, 0);
    OFF(FwxFirewallEventParameters, GetHostByAddr, 0, 0);
    OFF(FwxFirewallEventParameters, GetHostByName, 0, 0);
    OFF(FwxFirewallEventParameters, EndConnect, 0, 0);
    OFF(FwxFirewallEventParameters, EstablishedConnection, 0, 0);

    /* EventSource at +4 and Parameters at +8 are [I] for 2000 (ABI-015). */
    SIZE(FwxFirewallEvent, 40, 56);
    SIZE(FirewallEvent, 40, 56);
    OFF(FwxFirewallEvent, EventType, 0, 0);
    OFF(FwxFirewallEvent, EventSource, 4, 4);
    OFF(FwxFirewallEvent, Parameters, 8, 8);
    /* A few absolute offsets as a filter compiled for 2000 reads them. */
    OFF(FwxFirewallEvent, Parameters.Connect.piConnection, 16, 24);
    OFF(FwxFirewallEvent, Parameters.Connect.FilterAccess, 20, 32);
    OFF(FwxFirewallEvent, Parameters.Bind.ProtocolGuid, 24, 36);
    OFF(FwxFirewallEvent, Parameters.Accept.piConnectionAccepted, 24, 40);
    OFF(FwxFirewallEvent, Parameters.GetHostByAddr.piGetXByY, 36, 48);
    OFF(FwxFirewallEvent, Parameters.EstablishedConnection.UserContext, 24, 40);
    CHECKS_END();
}

static void test_layout_win32_types(void **state)
{
    (void)state;
    CHECKS_BEGIN();
    /* The Win32 layouts (reference 1.6), not the Linux ones. */
    SIZE(SOCKADDR_IN, 16, 16);
    OFF(SOCKADDR_IN, sin_family, 0, 0);
    OFF(SOCKADDR_IN, sin_port, 2, 2);
    OFF(SOCKADDR_IN, sin_addr, 4, 4);
    OFF(SOCKADDR_IN, sin_zero, 8, 8);
    SIZE(SOCKADDR, 16, 16);
    SIZE(IN_ADDR, 4, 4);

    SIZE(HOSTENT, 16, 32);
    OFF(HOSTENT, h_name, 0, 0);
    OFF(HOSTENT, h_aliases, 4, 8);
    OFF(HOSTENT, h_addrtype, 8, 16);
    OFF(HOSTENT, h_length, 10, 18);
    OFF(HOSTENT, h_addr_list, 12, 24);
    CHECK(sizeof(struct hostent), sizeof(HOSTENT));

    /* UserContextType is pointer-sized (ABI-017): 4 on i386, 8 on x86_64. */
    SIZE(UserContextType, 4, 8);
    CHECK(sizeof(UserContextType), sizeof(void *));

    /* Enumerations are 4 bytes, as with MSVC. */
    SIZE(FwxFirewallEventType, 4, 4);
    SIZE(FwxFirewallEventSource, 4, 4);
    SIZE(FwxFilterAccess, 4, 4);
    SIZE(FwxDataFilterPriorityClass, 4, 4);
    SIZE(FwxScope, 4, 4);
    SIZE(ProxyEventType, 4, 4);
    SIZE(DataFilterPriorityClass, 4, 4);
    SIZE(PFWXICONNECTION, 4, 8);
    CHECKS_END();
}

/* ------------------------------------------------------------------------
 * Vtable slots of the interfaces whose ISA 2000 order is [C]
 * ------------------------------------------------------------------------ */

#define AT(vtbl, method, slot)                                                 \
    do {                                                                       \
        CHECK(offsetof(vtbl, method) % sizeof(void *), 0);                     \
        check_eq("slot of " #vtbl "::" #method,                                \
                 offsetof(vtbl, method) / sizeof(void *), (slot), __FILE__, __LINE__); \
    } while (0)
#define IUNKNOWN_AT(vtbl)                                                      \
    do {                                                                       \
        AT(vtbl, QueryInterface, 0);                                           \
        AT(vtbl, AddRef, 1);                                                   \
        AT(vtbl, Release, 2);                                                  \
    } while (0)
#define NSLOTS(vtbl, n)                                                        \
    check_eq("number of slots in " #vtbl, sizeof(vtbl) / sizeof(void *), (n), __FILE__, __LINE__)

static void test_vtables_filter_side(void **state)
{
    (void)state;
    CHECKS_BEGIN();
    IUNKNOWN_AT(IFWXFilterVtbl);
    AT(IFWXFilterVtbl, FilterInit, 3);
    AT(IFWXFilterVtbl, FilterShutdown, 4);
    AT(IFWXFilterVtbl, AttachToSession, 5);
    NSLOTS(IFWXFilterVtbl, 6);

    IUNKNOWN_AT(IFWXSessionFilterVtbl);
    AT(IFWXSessionFilterVtbl, FirewallEventHandler, 3);
    AT(IFWXSessionFilterVtbl, Detach, 4);
    NSLOTS(IFWXSessionFilterVtbl, 5);

    IUNKNOWN_AT(IFWXDataFilterVtbl);
    AT(IFWXDataFilterVtbl, SetSockets, 3);
    AT(IFWXDataFilterVtbl, Detach, 4);
    NSLOTS(IFWXDataFilterVtbl, 5);

    IUNKNOWN_AT(IFWXIOCompletionVtbl);
    AT(IFWXIOCompletionVtbl, CompleteAsyncIO, 3);
    NSLOTS(IFWXIOCompletionVtbl, 4);

    IUNKNOWN_AT(IFWXAcceptCompletionVtbl);
    AT(IFWXAcceptCompletionVtbl, CompleteAsyncAccept, 3);
    NSLOTS(IFWXAcceptCompletionVtbl, 4);

    IUNKNOWN_AT(IFWXExternalIOCompletionVtbl);
    AT(IFWXExternalIOCompletionVtbl, CompleteAsyncIO, 3);
    NSLOTS(IFWXExternalIOCompletionVtbl, 4);

    IUNKNOWN_AT(IFWXImpersonatorVtbl);
    AT(IFWXImpersonatorVtbl, Impersonate, 3);
    AT(IFWXImpersonatorVtbl, RevertToSelf, 4);
    NSLOTS(IFWXImpersonatorVtbl, 5);
    CHECKS_END();
}

static void test_vtables_session(void **state)
{
    (void)state;
    CHECKS_BEGIN();
    /* 18 methods, slots 3..20, from the 2000 SDK's vtable listing. */
    IUNKNOWN_AT(IFWXSessionVtbl);
    AT(IFWXSessionVtbl, GetClientAddress, 3);
    AT(IFWXSessionVtbl, GetClientMachineName, 4);
    AT(IFWXSessionVtbl, ImpersonateClient, 5);
    AT(IFWXSessionVtbl, RevertToSelf, 6);
    AT(IFWXSessionVtbl, AccessCheck, 7);
    AT(IFWXSessionVtbl, HostAccessCheck, 8);
    AT(IFWXSessionVtbl, AllowFutureConnect, 9);
    AT(IFWXSessionVtbl, BindForClient, 10);
    AT(IFWXSessionVtbl, EmulateClientBind, 11);
    AT(IFWXSessionVtbl, GetSessionFlags, 12);
    AT(IFWXSessionVtbl, RedirectConnections, 13);
    AT(IFWXSessionVtbl, AttachFilter, 14);
    AT(IFWXSessionVtbl, SetDataFilterFactory, 15);
    AT(IFWXSessionVtbl, RetroactiveAllowBind, 16);
    AT(IFWXSessionVtbl, EnableInternalAddressTranslation, 17);
    AT(IFWXSessionVtbl, CreateNetworkSocket, 18);
    AT(IFWXSessionVtbl, GetHostByName, 19);
    AT(IFWXSessionVtbl, GetHostByAddr, 20);
    NSLOTS(IFWXSessionVtbl, 21);
    CHECKS_END();
}

static void test_vtables_sockets(void **state)
{
    (void)state;
    CHECKS_BEGIN();
    IUNKNOWN_AT(IFWXSocketVtbl);
    AT(IFWXSocketVtbl, Send, 3);
    AT(IFWXSocketVtbl, SendTo, 4);
    AT(IFWXSocketVtbl, Recv, 5);
    AT(IFWXSocketVtbl, Shutdown, 6);
    AT(IFWXSocketVtbl, Close, 7);
    NSLOTS(IFWXSocketVtbl, 8);

    /* IFWXSocket's slots, then 8..16; 2000 has GetSockOpt before SetSockOpt.
     * Nothing is declared after slot 16 (ABI-006). */
    IUNKNOWN_AT(IFWXNetworkSocketVtbl);
    AT(IFWXNetworkSocketVtbl, Send, 3);
    AT(IFWXNetworkSocketVtbl, SendTo, 4);
    AT(IFWXNetworkSocketVtbl, Recv, 5);
    AT(IFWXNetworkSocketVtbl, Shutdown, 6);
    AT(IFWXNetworkSocketVtbl, Close, 7);
    AT(IFWXNetworkSocketVtbl, Connect, 8);
    AT(IFWXNetworkSocketVtbl, Bind, 9);
    AT(IFWXNetworkSocketVtbl, GetSockName, 10);
    AT(IFWXNetworkSocketVtbl, GetPeerName, 11);
    AT(IFWXNetworkSocketVtbl, Listen, 12);
    AT(IFWXNetworkSocketVtbl, GetSockOpt, 13);
    AT(IFWXNetworkSocketVtbl, SetSockOpt, 14);
    AT(IFWXNetworkSocketVtbl, Accept, 15);
    AT(IFWXNetworkSocketVtbl, SetPacketFilterOptions, 16);
    NSLOTS(IFWXNetworkSocketVtbl, 17);
    CHECKS_END();
}

static void test_vtables_host_misc(void **state)
{
    (void)state;
    CHECKS_BEGIN();
    IUNKNOWN_AT(IFWXIOBufferVtbl);
    AT(IFWXIOBufferVtbl, GetBufferAndSize, 3);
    AT(IFWXIOBufferVtbl, SetDataSize, 4);
    AT(IFWXIOBufferVtbl, Append, 5);
    AT(IFWXIOBufferVtbl, ReadAt, 6);
    AT(IFWXIOBufferVtbl, SendToBuffer, 7);
    AT(IFWXIOBufferVtbl, GetBufferSizes, 8);
    NSLOTS(IFWXIOBufferVtbl, 9);

    IUNKNOWN_AT(IFWXOverlappedVtbl);
    AT(IFWXOverlappedVtbl, GetOverlapped, 3);
    AT(IFWXOverlappedVtbl, SetNotificationInterface, 4);
    NSLOTS(IFWXOverlappedVtbl, 5);

    IUNKNOWN_AT(IFWXFirewallActionVtbl);
    AT(IFWXFirewallActionVtbl, Cancel, 3);
    NSLOTS(IFWXFirewallActionVtbl, 4);

    IUNKNOWN_AT(IFWXGetXByYVtbl);
    AT(IFWXGetXByYVtbl, Deny, 3);
    AT(IFWXGetXByYVtbl, SetResult, 4);
    NSLOTS(IFWXGetXByYVtbl, 5);

    IUNKNOWN_AT(IFWXIpFilterVtbl);
    AT(IFWXIpFilterVtbl, IncludeRange, 3);
    AT(IFWXIpFilterVtbl, ExcludeRange, 4);
    AT(IFWXIpFilterVtbl, IncludeFilter, 5);
    AT(IFWXIpFilterVtbl, ExcludeFilter, 6);
    AT(IFWXIpFilterVtbl, IsIncluded, 7);
    AT(IFWXIpFilterVtbl, Compare, 8);
    AT(IFWXIpFilterVtbl, Clone, 9);
    NSLOTS(IFWXIpFilterVtbl, 10);
    CHECKS_END();
}

/* ------------------------------------------------------------------------
 * Enumerations and constants (reference sections 5 and 7)
 * ------------------------------------------------------------------------ */

static void test_enums(void **state)
{
    (void)state;
    CHECKS_BEGIN();
    CHECK(fwx_Connect_Tcp, 0x00000001);
    CHECK(fwx_Udp_Destination, 0x00000002);
    CHECK(fwx_Bind_Tcp, 0x00000004);
    CHECK(fwx_Bind_Udp, 0x00000008);
    CHECK(fwx_Listen, 0x00000010);
    CHECK(fwx_AcceptedConnection, 0x00000020);
    CHECK(fwx_GetHostByName, 0x00000040);
    CHECK(fwx_GetHostByAddr, 0x00000080);
    CHECK(fwx_ConnectionTerminating, 0x00000100);
    CHECK(fwx_EstablishedConnection, 0x00000200);

    CHECK((DWORD)fwxSourceWSP, 0x40000000u);
    CHECK((DWORD)fwxSourceNAT, 0x80000000u);
    CHECK(FWX_ALL_SOURCES, 0xC0000000u);
    CHECK(FWX_ALL_SOURCES, (DWORD)fwxSourceWSP | (DWORD)fwxSourceNAT);
    CHECK(sizeof(FWX_ALL_SOURCES), 4);
    /* Source bits and event-type bits never overlap. */
    CHECK(FWX_ALL_SOURCES & 0x3ffu, 0);

    CHECK(FWX_ALLOW, 0);
    CHECK(FWX_DENY, 1);
    CHECK(FWX_PASS, 2);
    CHECK(FWX_EMULATE, 3);

    CHECK(fwx_dfpc_NAT, 0);
    CHECK(fwx_dfpc_Internal, 1);
    CHECK(fwx_dfpc_PostTrust, 2);
    CHECK(fwx_dfpc_Middle, 3);
    CHECK(fwx_dfpc_PreTrust, 4);
    CHECK(fwx_dfpc_External, 5);
    CHECK(fwx_dfpc_Emulation, 6);

    CHECK(fwx_ArrayScope, 0);
    CHECK(fwx_EnterpriseScope, 1);
    CHECKS_END();
}

static void test_flag_constants(void **state)
{
    static const DWORD flags[] = {
        FWX_FLAG_ADDRESS_BASED, FWX_FLAG_ALLOW_MULTIPLE, FWX_FLAG_TIMEOUT,
        FWX_FLAG_NO_KERNEL_MODE, FWX_FLAG_EMULATE_PROTOCOL, FWX_FLAG_BIDIRECTIONAL,
        FWX_FLAG_USE_MIME, FWX_FLAG_USE_EXTENTION, FWX_FLAG_CHECK_PUBLISHING,
        FWX_FLAG_BYPASS_ALLOW_ACCESS, FWX_FLAG_PROXY_MODE,
    };
    DWORD seen = 0;
    (void)state;
    CHECKS_BEGIN();
    /* Values [?] (ABI-018..020): our choices, one bit each. */
    CHECK(FWX_PROTOCOL_TCP, 1);
    CHECK(FWX_PROTOCOL_UDP, 2);
    CHECK(FWX_FLAG_ADDRESS_BASED, 0x001);
    CHECK(FWX_FLAG_ALLOW_MULTIPLE, 0x002);
    CHECK(FWX_FLAG_TIMEOUT, 0x004);
    CHECK(FWX_FLAG_NO_KERNEL_MODE, 0x008);
    CHECK(FWX_FLAG_EMULATE_PROTOCOL, 0x010);
    CHECK(FWX_FLAG_BIDIRECTIONAL, 0x020);
    CHECK(FWX_FLAG_USE_MIME, 0x040);
    CHECK(FWX_FLAG_USE_EXTENTION, 0x080);
    CHECK(FWX_FLAG_CHECK_PUBLISHING, 0x100);
    CHECK(FWX_FLAG_BYPASS_ALLOW_ACCESS, 0x200);
    CHECK(FWX_FLAG_PROXY_MODE, 0x400);
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        CHECK(flags[i] & (flags[i] - 1), 0); /* a single bit */
        CHECK(seen & flags[i], 0);           /* not shared with another flag */
        seen |= flags[i];
    }
    CHECK(FWX_SESSION_NAT, 1);
    CHECK(FWX_SESSION_PRIVATE, 2);
    CHECK(FWX_SESSION_AUTHENTICATED, 4);
    CHECK(FWX_SESSION_TERMINATED, 8);
    CHECKS_END();
}

static void test_hresults(void **state)
{
    static const HRESULT itf_codes[] = {
        FWX_E_TERMINATING, FWX_E_INVALID_ARG, FWX_E_ALREADY_IN_BLOCKING_OP,
        FWX_E_NOT_IN_BLOCKING_OP, FWX_E_FILTER_NOT_REGISTERED, FWX_E_BUFFERFULL,
        FWX_E_ALREADY_EMULATED, FWX_E_BAD_CONTEXT, FWX_E_NOT_SUPPORTED,
        FWX_E_NOT_AUTHENTICATED, FWX_E_POLICY_RULES_DENIED, FWX_E_MIME_NEEDED,
        FWX_E_MUST_USE_DS, FWX_E_NOT_EMULATED, FWX_E_IS_BUSY,
    };
    (void)state;
    CHECKS_BEGIN();
    CHECK((DWORD)FWX_E_TERMINATING, 0xC0040001u);
    CHECK((DWORD)FWX_E_INVALID_ARG, 0xC0040002u);
    CHECK((DWORD)FWX_E_ALREADY_IN_BLOCKING_OP, 0xC0040003u);
    CHECK((DWORD)FWX_E_NOT_IN_BLOCKING_OP, 0xC0040004u);
    CHECK((DWORD)FWX_E_FILTER_NOT_REGISTERED, 0xC0040005u);
    CHECK((DWORD)FWX_E_ALREADY_EXISTS, 0x800700B7u);
    CHECK(FWX_E_ALREADY_EXISTS, HRESULT_FROM_WIN32(ERROR_ALREADY_EXISTS));
    CHECK((DWORD)FWX_E_BUFFERFULL, 0xC0040007u);
    CHECK((DWORD)FWX_E_ALREADY_EMULATED, 0xC0040009u);
    CHECK((DWORD)FWX_E_BAD_CONTEXT, 0xC004000Au);
    CHECK((DWORD)FWX_E_NOT_SUPPORTED, 0xC004000Bu);
    CHECK((DWORD)FWX_E_NOT_AUTHENTICATED, 0xC004000Cu);
    CHECK((DWORD)FWX_E_POLICY_RULES_DENIED, 0xC004000Du);
    CHECK(FWX_E_PROTOCOL_RULES_DENIED, FWX_E_POLICY_RULES_DENIED);
    CHECK((DWORD)FWX_E_MIME_NEEDED, 0xC004000Eu);
    CHECK((DWORD)FWX_E_MUST_USE_DS, 0xC004000Fu);
    CHECK((DWORD)FWX_E_NOT_EMULATED, 0xC0040010u);
    CHECK((DWORD)FWX_E_IS_BUSY, 0xC0040011u);
    for (size_t i = 0; i < sizeof(itf_codes) / sizeof(itf_codes[0]); i++) {
        CHECK(FAILED(itf_codes[i]), 1);
        CHECK(HRESULT_FACILITY(itf_codes[i]), FACILITY_ITF);
    }
    CHECK(FAILED(FWX_E_ALREADY_EXISTS), 1);
    CHECKS_END();
}

/* The project-assigned GUIDs (ABI-001); a changed IDL uuid shows up here. */
static void test_guids(void **state)
{
    static const struct {
        const char *name;
        const GUID *have;
        const char *want;
    } guids[] = {
        { "IID_IFWXFilter", &IID_IFWXFilter, "{AFC5350C-C365-43CC-B8FA-F99431E1693F}" },
        { "IID_IFWXSessionFilter", &IID_IFWXSessionFilter, "{97A3A3E1-2398-4D3B-83B7-A196A87EA898}" },
        { "IID_IFWXDataFilter", &IID_IFWXDataFilter, "{DC97C189-7077-4B5B-8BFB-7136FFB0737B}" },
        { "IID_IFWXIOCompletion", &IID_IFWXIOCompletion, "{26FFE492-6F65-4020-A024-AB6C902FD561}" },
        { "IID_IFWXAcceptCompletion", &IID_IFWXAcceptCompletion, "{3A661A3F-E69E-4453-8C7A-406966967EF4}" },
        { "IID_IFWXExternalIOCompletion", &IID_IFWXExternalIOCompletion, "{FDD9F961-DF64-4BE8-842A-FD4B7C06C389}" },
        { "IID_IFWXImpersonator", &IID_IFWXImpersonator, "{65C55FA1-9FF5-4037-BB1E-35B5889092CF}" },
        { "IID_IFWXFirewall", &IID_IFWXFirewall, "{A5D5E7FF-7316-4AC8-9C24-2E5C57074E81}" },
        { "IID_IFWXSession", &IID_IFWXSession, "{3716F5A5-4028-4808-8E0C-40A4B4F7F76E}" },
        { "IID_IFWXConnection", &IID_IFWXConnection, "{AEFC6EAA-9542-438B-99C2-D710B12F22A7}" },
        { "IID_IFWXSocket", &IID_IFWXSocket, "{76B86A21-4B30-40A2-904F-973FB29B185D}" },
        { "IID_IFWXNetworkSocket", &IID_IFWXNetworkSocket, "{8D827C6A-2E00-407B-A110-BB7BC4EC6EE9}" },
        { "IID_IFWXIOBuffer", &IID_IFWXIOBuffer, "{4C08473B-BD56-4F17-9EDB-A866E4B4242B}" },
        { "IID_IFWXOverlapped", &IID_IFWXOverlapped, "{5B3428B5-9D66-46F4-9B44-BEDAE0AB6F34}" },
        { "IID_IFWXFirewallAction", &IID_IFWXFirewallAction, "{328C0AC0-FEE7-451C-B0EF-88A1CD25FF15}" },
        { "IID_IFWXGetXByY", &IID_IFWXGetXByY, "{0919B08F-01BA-430B-A1FF-1910318BE333}" },
        { "IID_IFWXUdpDestination", &IID_IFWXUdpDestination, "{810AC9AF-E6F5-4B8F-9CE1-A5D0F0641177}" },
        { "IID_IFWXIpFilter", &IID_IFWXIpFilter, "{5DEC481E-8006-4351-B53E-D8D48C96C69D}" },
        { "IID_IFWXFilterAdmin", &IID_IFWXFilterAdmin, "{4E1A361D-1B48-4E0E-A4A2-41A704854A2B}" },
        { "CLSID_FWXFilterAdmin", &CLSID_FWXFilterAdmin, "{CF40835B-D212-41BD-A1EE-DDFEFA2DD45D}" },
    };
    int bad = 0;
    (void)state;
    for (size_t i = 0; i < sizeof(guids) / sizeof(guids[0]); i++) {
        char text[39];
        fx_guid_str(guids[i].have, text);
        if (strcmp(text, guids[i].want) != 0) {
            print_error("%s is %s, expected %s\n", guids[i].name, text, guids[i].want);
            bad++;
        }
        for (size_t j = 0; j < i; j++)
            if (IsEqualGUID(guids[i].have, guids[j].have)) {
                print_error("%s equals %s\n", guids[i].name, guids[j].name);
                bad++;
            }
    }
    assert_int_equal(bad, 0);
}

/* ------------------------------------------------------------------------
 * IFWXIOBuffer behaviour (reference 3.13, 8.2)
 * ------------------------------------------------------------------------ */

static LONG live_at_start;

static int buffers_setup(void **state)
{
    (void)state;
    live_at_start = iobuffer_live_count();
    return 0;
}

/* Every test releases what it created: no buffer may outlive it. */
static int buffers_teardown(void **state)
{
    (void)state;
    if (iobuffer_live_count() != live_at_start) {
        print_error("%ld IFWXIOBuffer object(s) leaked\n",
                    (long)(iobuffer_live_count() - live_at_start));
        return -1;
    }
    return 0;
}

static void expect_contents(IFWXIOBuffer *buf, const char *want, DWORD want_capacity)
{
    BYTE *data = NULL;
    DWORD size = 12345, allocated = 12345, actual = 12345;

    assert_int_equal(IFWXIOBuffer_GetBufferAndSize(buf, &data, &size), S_OK);
    assert_int_equal(size, strlen(want));
    if (size)
        assert_memory_equal(data, want, size);
    assert_int_equal(IFWXIOBuffer_GetBufferSizes(buf, &allocated, &actual), S_OK);
    assert_int_equal(allocated, want_capacity);
    assert_int_equal(actual, size);
}

static void test_buffer_create_empty(void **state)
{
    IFWXIOBuffer *buf = NULL;
    IFWXFirewall *fw = firewall_get();
    (void)state;

    /* CreateBuffer: an empty buffer with the given capacity. */
    assert_int_equal(IFWXFirewall_CreateBuffer(fw, 16, &buf), S_OK);
    assert_non_null(buf);
    expect_contents(buf, "", 16);
    assert_int_equal(IFWXIOBuffer_Release(buf), 0);

    assert_int_equal(iobuffer_create(0, &buf), S_OK);
    expect_contents(buf, "", 0);
    assert_int_equal(IFWXIOBuffer_Release(buf), 0);

    assert_int_equal(iobuffer_create(8, NULL), E_POINTER);
    assert_int_equal(IFWXFirewall_CreateBuffer(fw, 8, NULL), E_POINTER);
    IFWXFirewall_Release(fw);
}

/* The worker buffer cache: a read-size buffer released on a thread with a
 * cache is the next one that thread gets, arrives empty and is not counted
 * live while cached; other sizes, and threads without a cache, use the heap.
 * At most 16 are kept, the rest are freed. */
static void test_buffer_thread_cache(void **state)
{
    IFWXIOBuffer *a = NULL, *b = NULL, *little = NULL, *many[20];
    BYTE *data;
    DWORD size;
    LONG live;
    (void)state;

    iobuffer_thread_cache_init();
    assert_int_equal(iobuffer_create(IOBUFFER_POOL_SIZE, &a), S_OK);
    assert_int_equal(IFWXIOBuffer_Append(a, "abc", 3, NULL), S_OK);
    live = iobuffer_live_count();
    assert_int_equal(IFWXIOBuffer_Release(a), 0);
    assert_int_equal(iobuffer_live_count(), live - 1);
    assert_int_equal(iobuffer_create(IOBUFFER_POOL_SIZE, &b), S_OK);
    assert_ptr_equal(a, b);                        /* reused, not reallocated */
    assert_int_equal(IFWXIOBuffer_GetBufferAndSize(b, &data, &size), S_OK);
    assert_int_equal(size, 0);                     /* ... and reset */
    expect_contents(b, "", IOBUFFER_POOL_SIZE);
    assert_int_equal(iobuffer_live_count(), live);
    assert_int_equal(IFWXIOBuffer_Release(b), 0);

    assert_int_equal(iobuffer_create(100, &little), S_OK);
    assert_ptr_not_equal(little, b);                /* other sizes never come from the cache */
    assert_int_equal(IFWXIOBuffer_Release(little), 0);

    for (int i = 0; i < 20; i++)
        assert_int_equal(iobuffer_create(IOBUFFER_POOL_SIZE, &many[i]), S_OK);
    for (int i = 0; i < 20; i++)
        IFWXIOBuffer_Release(many[i]);
    iobuffer_thread_cache_free();

    /* No cache on this thread any more: a released buffer is freed. */
    assert_int_equal(iobuffer_create(IOBUFFER_POOL_SIZE, &a), S_OK);
    assert_int_equal(IFWXIOBuffer_Release(a), 0);
}

/* The protection of the mapping holding addr, from /proc/self/maps ("rw-p",
 * "---p"; "" if none): cmocka owns SIGSEGV here, so probing by touching is out. */
static const char *page_perms(const void *addr, char out[8])
{
    char line[512];
    FILE *f = fopen("/proc/self/maps", "r");
    out[0] = 0;
    while (f && fgets(line, sizeof(line), f)) {
        unsigned long long lo, hi;
        char perms[8];
        if (sscanf(line, "%llx-%llx %7s", &lo, &hi, perms) == 3 &&
            (uintptr_t)addr >= lo && (uintptr_t)addr < hi) {
            strcpy(out, perms);
            break;
        }
    }
    if (f)
        fclose(f);
    return out;
}

/* HOST-900: a buffer still referenced when its charge (connection) is
 * reclaimed answers FWX_E_TERMINATING from every method, leaves the live
 * count, and its page-backed data can no longer be read; its header goes
 * when the last reference does. A pinned buffer (a queued host operation)
 * and one released before the walk are left alone; a small one is marked
 * but keeps its memory. */
static void test_buffer_reclaim(void **state)
{
    struct iobuffer_charge ch;
    IFWXIOBuffer *big = NULL, *little = NULL, *pinned = NULL, *gone = NULL, *win = NULL;
    BYTE *data = NULL, *big_data = NULL, *little_data = NULL, *pinned_data = NULL, byte;
    DWORD size, cap, alloc;
    LONG live, reclaimed, held, held_bytes, bytes_after;
    char perms[8];
    ULONG n;
    (void)state;

    iobuffer_charge_init(&ch);
    assert_int_equal(iobuffer_create(IOBUFFER_POOL_SIZE, &big), S_OK);
    assert_int_equal(iobuffer_create(100, &little), S_OK);
    assert_int_equal(iobuffer_create(IOBUFFER_POOL_SIZE, &pinned), S_OK);
    assert_int_equal(iobuffer_create(IOBUFFER_POOL_SIZE, &gone), S_OK);
    iobuffer_charge(big, &ch);
    iobuffer_charge(little, &ch);
    iobuffer_charge(pinned, &ch);
    iobuffer_charge(gone, &ch);
    /* Windows made while the charge is this thread's are charged too. */
    assert_ptr_equal(iobuffer_charge_enter(&ch), NULL);
    assert_int_equal(IFWXIOBuffer_Append(big, "abc", 3, NULL), S_OK);
    assert_int_equal(iobuffer_create_window(big, 0, 3, &win), S_OK);
    assert_ptr_equal(iobuffer_charge_enter(NULL), &ch);
    assert_int_equal(IFWXIOBuffer_GetBufferAndSize(big, &big_data, &size), S_OK);
    assert_string_equal(page_perms(big_data, perms), "rw-p");
    assert_int_equal(IFWXIOBuffer_GetBufferAndSize(little, &little_data, &size), S_OK);
    assert_int_equal(IFWXIOBuffer_GetBufferAndSize(pinned, &pinned_data, &size), S_OK);
    iobuffer_pin(pinned, +1);
    assert_int_equal(IFWXIOBuffer_Release(gone), 0);
    {
        /* Pinning a window pins its original too (its data lives there). */
        struct iobuffer_charge ch2;
        IFWXIOBuffer *orig = NULL, *view = NULL;
        BYTE *orig_data;
        LONG before = iobuffer_reclaimed_count();
        iobuffer_charge_init(&ch2);
        assert_int_equal(iobuffer_create(IOBUFFER_POOL_SIZE, &orig), S_OK);
        assert_int_equal(IFWXIOBuffer_Append(orig, "xyz", 3, NULL), S_OK);
        assert_int_equal(iobuffer_create_window(orig, 1, 2, &view), S_OK);
        iobuffer_charge(orig, &ch2);
        assert_int_equal(IFWXIOBuffer_GetBufferAndSize(orig, &orig_data, &size), S_OK);
        iobuffer_pin(view, +1);
        iobuffer_reclaim(&ch2, "test_buffer_reclaim (window)", TRUE);
        assert_int_equal(iobuffer_reclaimed_count(), before);
        assert_string_equal(page_perms(orig_data, perms), "rw-p");
        iobuffer_pin(view, -1);
        assert_int_equal(IFWXIOBuffer_Release(view), 0);
        assert_int_equal(IFWXIOBuffer_Release(orig), 0);
    }

    live = iobuffer_live_count();
    reclaimed = iobuffer_reclaimed_count();
    held = iobuffer_reclaimed_held(&held_bytes);
    iobuffer_reclaim(&ch, "test_buffer_reclaim", TRUE);
    assert_ptr_equal(ch.head, NULL);
    /* big, little and the window; not the pinned one. */
    assert_int_equal(iobuffer_reclaimed_count(), reclaimed + 3);
    assert_int_equal(iobuffer_live_count(), live - 3);
    assert_int_equal(iobuffer_reclaimed_held(&bytes_after), held + 3);
    assert_true(bytes_after > held_bytes);

    assert_int_equal(IFWXIOBuffer_GetBufferAndSize(big, &data, &size), FWX_E_TERMINATING);
    assert_ptr_equal(data, NULL);
    assert_int_equal(IFWXIOBuffer_GetBufferSizes(big, &alloc, &size), FWX_E_TERMINATING);
    assert_int_equal(IFWXIOBuffer_Append(big, "x", 1, &n), FWX_E_TERMINATING);
    assert_int_equal(IFWXIOBuffer_ReadAt(big, 0, &byte, 1, &n), FWX_E_TERMINATING);
    assert_int_equal(IFWXIOBuffer_SetDataSize(big, 1), FWX_E_TERMINATING);
    assert_int_equal(iobuffer_data(big, &data, &size, &cap), FWX_E_TERMINATING);
    assert_int_equal(IFWXIOBuffer_GetBufferAndSize(win, &data, &size), FWX_E_TERMINATING);
    assert_int_equal(IFWXIOBuffer_GetBufferAndSize(little, &data, &size), FWX_E_TERMINATING);
    /* The raw pointers: the big one's pages are gone, the little one's memory stays. */
    assert_int_equal(IFWXIOBuffer_GetBufferAndSize(pinned, &data, &size), S_OK);
    assert_string_equal(page_perms(pinned_data, perms), "rw-p");
    byte = little_data[0];                                  /* readable: memory kept */
    assert_string_equal(page_perms(big_data, perms), "---p");
    assert_string_equal(page_perms(big_data + IOBUFFER_POOL_SIZE - 1, perms), "---p");

    assert_int_equal(IFWXIOBuffer_Release(win), 0);
    assert_int_equal(IFWXIOBuffer_Release(big), 0);
    assert_int_equal(IFWXIOBuffer_Release(little), 0);
    assert_int_equal(iobuffer_reclaimed_held(NULL), held);
    iobuffer_pin(pinned, -1);
    assert_int_equal(IFWXIOBuffer_Release(pinned), 0);
    assert_int_equal(iobuffer_live_count(), live - 4);
}

/* A thread that releases (or charges) buffers it did not charge. */
struct elsewhere_job {
    IFWXIOBuffer **bufs;
    int n;
    struct iobuffer_charge *charge;     /* set: charge bufs to it instead */
    volatile LONG *go;                  /* set: say ready (1), wait for 2 */
};

static DWORD WINAPI elsewhere_thread(void *arg)
{
    struct elsewhere_job *job = arg;
    if (job->go) {
        InterlockedExchange((LONG *)job->go, 1);
        while (*job->go != 2)
            ;
    }
    for (int i = 0; i < job->n; i++) {
        if (job->charge)
            iobuffer_charge(job->bufs[i], job->charge);
        else
            IFWXIOBuffer_Release(job->bufs[i]);
    }
    return 0;
}

static void run_elsewhere(IFWXIOBuffer **bufs, int n, struct iobuffer_charge *charge)
{
    struct elsewhere_job job = { bufs, n, charge, NULL };
    HANDLE thread = CreateThread(NULL, 0, elsewhere_thread, &job, 0, NULL);
    assert_non_null(thread);
    assert_int_equal(WaitForSingleObject(thread, 10000), WAIT_OBJECT_0);
    CloseHandle(thread);
}

/* Charging takes no lock (issue 6): the charge's thread links and unlinks;
 * a buffer whose last reference goes on another thread stays in the list,
 * marked, until the charge's thread frees it on its next charge or at the
 * reclaim; another thread cannot charge to the list, and a closed charge
 * takes nothing. */
static void test_buffer_charge_threads(void **state)
{
    struct iobuffer_charge ch;
    IFWXIOBuffer *a = NULL, *b = NULL, *c = NULL, *d = NULL, *stranger = NULL, *late = NULL;
    BYTE *data;
    DWORD size;
    LONG live, reclaimed;
    (void)state;

    iobuffer_charge_init(&ch);
    assert_int_equal(iobuffer_create(IOBUFFER_POOL_SIZE, &a), S_OK);
    assert_int_equal(iobuffer_create(IOBUFFER_POOL_SIZE, &b), S_OK);
    assert_int_equal(iobuffer_create(100, &c), S_OK);
    iobuffer_charge(a, &ch);
    iobuffer_charge(b, &ch);
    iobuffer_charge(c, &ch);
    live = iobuffer_live_count();

    /* b's last reference goes elsewhere: marked, still in the list. */
    run_elsewhere(&b, 1, NULL);
    assert_int_equal(iobuffer_live_count(), live);
    assert_int_equal(ch.released_elsewhere, 1);
    /* The next charge on this thread frees it. */
    assert_int_equal(iobuffer_create(IOBUFFER_POOL_SIZE, &d), S_OK);
    iobuffer_charge(d, &ch);
    assert_int_equal(ch.released_elsewhere, 0);
    assert_int_equal(iobuffer_live_count(), live);          /* +d, -b */
    /* On this thread a release unlinks at once. */
    assert_int_equal(IFWXIOBuffer_Release(a), 0);
    assert_int_equal(iobuffer_live_count(), live - 1);

    /* Another thread cannot charge to this list. */
    assert_int_equal(iobuffer_create(IOBUFFER_POOL_SIZE, &stranger), S_OK);
    run_elsewhere(&stranger, 1, &ch);

    /* c released elsewhere, then the reclaim: it frees c, reclaims d. */
    run_elsewhere(&c, 1, NULL);
    assert_int_equal(ch.released_elsewhere, 1);
    live = iobuffer_live_count();
    reclaimed = iobuffer_reclaimed_count();
    iobuffer_reclaim(&ch, "test_buffer_charge_threads", TRUE);
    assert_ptr_equal(ch.head, NULL);
    assert_int_equal(ch.released_elsewhere, 0);
    assert_int_equal(iobuffer_reclaimed_count(), reclaimed + 1);
    assert_int_equal(iobuffer_live_count(), live - 2);       /* c freed, d reclaimed */
    assert_int_equal(IFWXIOBuffer_GetBufferAndSize(d, &data, &size), FWX_E_TERMINATING);
    assert_int_equal(IFWXIOBuffer_GetBufferAndSize(stranger, &data, &size), S_OK);

    /* Closed: charges nothing more, and a second reclaim finds nothing. */
    assert_int_equal(iobuffer_create(IOBUFFER_POOL_SIZE, &late), S_OK);
    iobuffer_charge(late, &ch);
    assert_ptr_equal(ch.head, NULL);
    assert_false(iobuffer_charge_close(&ch));
    iobuffer_reclaim(&ch, "test_buffer_charge_threads (again)", TRUE);
    assert_int_equal(IFWXIOBuffer_GetBufferAndSize(late, &data, &size), S_OK);

    assert_int_equal(IFWXIOBuffer_Release(d), 0);
    assert_int_equal(IFWXIOBuffer_Release(stranger), 0);
    assert_int_equal(IFWXIOBuffer_Release(late), 0);
}

/* Releases on another thread racing the reclaim on the charge's thread:
 * every buffer is freed exactly once, whichever side comes first (the
 * teardown checks the live count; a double free or a lost buffer breaks
 * it, and a reclaimed header left behind shows in reclaimed_held). */
static void test_buffer_charge_release_races_reclaim(void **state)
{
    enum { ROUNDS = 300, PER_ROUND = 8 };
    LONG held = iobuffer_reclaimed_held(NULL);
    (void)state;

    for (int round = 0; round < ROUNDS; round++) {
        struct iobuffer_charge ch;
        IFWXIOBuffer *bufs[PER_ROUND];
        volatile LONG go = 0;
        struct elsewhere_job job = { bufs, PER_ROUND, NULL, &go };
        HANDLE thread;

        iobuffer_charge_init(&ch);
        for (int i = 0; i < PER_ROUND; i++) {
            assert_int_equal(iobuffer_create(i % 2 ? 100 : IOBUFFER_POOL_SIZE, &bufs[i]), S_OK);
            iobuffer_charge(bufs[i], &ch);
        }
        thread = CreateThread(NULL, 0, elsewhere_thread, &job, 0, NULL);
        assert_non_null(thread);
        /* Both sides start together; the reclaim waits a little longer
         * each round, so its walk meets the releases at varying points. */
        while (go != 1)
            ;
        InterlockedExchange((LONG *)&go, 2);
        for (int spin = 0; spin < (round % 16) * 100; spin++)
            __asm__ volatile("" ::: "memory");
        iobuffer_reclaim(&ch, "test_buffer_charge_release_races_reclaim", round % 4 != 0);
        assert_int_equal(WaitForSingleObject(thread, 10000), WAIT_OBJECT_0);
        CloseHandle(thread);
        assert_ptr_equal(ch.head, NULL);
        assert_int_equal(ch.released_elsewhere, 0);
    }
    assert_int_equal(iobuffer_reclaimed_held(NULL), held);
}

static void test_buffer_create_huge_fails_cleanly(void **state)
{
    static const DWORD sizes[] = { 0xFFFFFFFFu, 0x80000000u, 0x7FFFFFFFu, 0x40000001u,
                                   (64u << 20) + 1 };
    IFWXFirewall *fw = firewall_get();
    (void)state;

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        IFWXIOBuffer *buf = (IFWXIOBuffer *)(ULONG_PTR)0xdeadbeef;
        HRESULT hr = IFWXFirewall_CreateBuffer(fw, sizes[i], &buf);
        if (!FAILED(hr) || buf != NULL)
            print_error("CreateBuffer(0x%lx): hr 0x%08lx, buffer %p\n", (unsigned long)sizes[i],
                        (unsigned long)hr, (void *)buf);
        assert_true(FAILED(hr));
        assert_null(buf);
    }
    IFWXFirewall_Release(fw);
}

static void test_buffer_append_partial(void **state)
{
    IFWXIOBuffer *buf;
    ULONG written = 999;
    (void)state;

    assert_int_equal(iobuffer_create(8, &buf), S_OK);
    assert_int_equal(IFWXIOBuffer_Append(buf, "hello", 5, &written), S_OK);
    assert_int_equal(written, 5);
    expect_contents(buf, "hello", 8);

    /* Never grows: a partial write reports the count and FWX_E_BUFFERFULL. */
    written = 999;
    assert_int_equal(IFWXIOBuffer_Append(buf, "world", 5, &written), FWX_E_BUFFERFULL);
    assert_int_equal(written, 3);
    expect_contents(buf, "hellowor", 8);

    written = 999;
    assert_int_equal(IFWXIOBuffer_Append(buf, "x", 1, &written), FWX_E_BUFFERFULL);
    assert_int_equal(written, 0);
    expect_contents(buf, "hellowor", 8);

    /* An empty append of a full buffer is not an error. */
    written = 999;
    assert_int_equal(IFWXIOBuffer_Append(buf, "", 0, &written), S_OK);
    assert_int_equal(written, 0);

    /* pcbWritten may be NULL. */
    assert_int_equal(IFWXIOBuffer_SetDataSize(buf, 6), S_OK);
    assert_int_equal(IFWXIOBuffer_Append(buf, "XYZ", 3, NULL), FWX_E_BUFFERFULL);
    expect_contents(buf, "hellowXY", 8);
    assert_int_equal(IFWXIOBuffer_Release(buf), 0);
}

static void test_buffer_null_pointers(void **state)
{
    IFWXIOBuffer *buf;
    BYTE *data;
    DWORD size, allocated;
    ULONG n = 999;
    char out[4];
    (void)state;

    assert_int_equal(iobuffer_create(8, &buf), S_OK);
    assert_int_equal(IFWXIOBuffer_Append(buf, "abc", 3, NULL), S_OK);

    assert_int_equal(IFWXIOBuffer_Append(buf, NULL, 2, &n), E_POINTER);
    assert_int_equal(n, 0);
    assert_int_equal(IFWXIOBuffer_ReadAt(buf, 0, NULL, 2, &n), E_POINTER);
    assert_int_equal(IFWXIOBuffer_GetBufferAndSize(buf, NULL, &size), E_POINTER);
    assert_int_equal(IFWXIOBuffer_GetBufferAndSize(buf, &data, NULL), E_POINTER);
    assert_int_equal(IFWXIOBuffer_GetBufferSizes(buf, NULL, &size), E_POINTER);
    assert_int_equal(IFWXIOBuffer_GetBufferSizes(buf, &allocated, NULL), E_POINTER);
    assert_int_equal(IFWXIOBuffer_SendToBuffer(buf, NULL, 0, 1, &n), E_POINTER);
    assert_int_equal(IFWXIOBuffer_QueryInterface(buf, &IID_IUnknown, NULL), E_POINTER);
    /* pcbRead may be NULL. */
    assert_int_equal(IFWXIOBuffer_ReadAt(buf, 1, out, 2, NULL), S_OK);
    assert_memory_equal(out, "bc", 2);
    expect_contents(buf, "abc", 8);
    assert_int_equal(IFWXIOBuffer_Release(buf), 0);
}

static void test_buffer_read_at(void **state)
{
    IFWXIOBuffer *buf;
    ULONG n;
    char out[16];
    (void)state;

    assert_int_equal(iobuffer_create(16, &buf), S_OK);
    assert_int_equal(IFWXIOBuffer_Append(buf, "0123456789", 10, NULL), S_OK);

    memset(out, 0, sizeof(out));
    n = 999;
    assert_int_equal(IFWXIOBuffer_ReadAt(buf, 2, out, 3, &n), S_OK);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "234", 3);

    /* A read past the data is cut at the data size, not the capacity. */
    n = 999;
    assert_int_equal(IFWXIOBuffer_ReadAt(buf, 7, out, sizeof(out), &n), S_OK);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "789", 3);

    n = 999;
    assert_int_equal(IFWXIOBuffer_ReadAt(buf, 10, out, 4, &n), S_OK);
    assert_int_equal(n, 0);

    /* Offsets beyond the data size (inside or beyond the capacity). */
    n = 999;
    assert_int_equal(IFWXIOBuffer_ReadAt(buf, 11, out, 1, &n), E_INVALIDARG);
    assert_int_equal(n, 0);
    assert_int_equal(IFWXIOBuffer_ReadAt(buf, 100, out, 1, &n), E_INVALIDARG);
    assert_int_equal(IFWXIOBuffer_ReadAt(buf, 0xFFFFFFFFu, out, 1, &n), E_INVALIDARG);
    assert_int_equal(IFWXIOBuffer_Release(buf), 0);
}

static void test_buffer_set_data_size(void **state)
{
    IFWXIOBuffer *buf;
    (void)state;

    assert_int_equal(iobuffer_create(8, &buf), S_OK);
    assert_int_equal(IFWXIOBuffer_Append(buf, "abcd", 4, NULL), S_OK);
    assert_int_equal(IFWXIOBuffer_SetDataSize(buf, 9), E_INVALIDARG);
    assert_int_equal(IFWXIOBuffer_SetDataSize(buf, 0xFFFFFFFFu), E_INVALIDARG);
    expect_contents(buf, "abcd", 8);          /* unchanged by the failures */
    assert_int_equal(IFWXIOBuffer_SetDataSize(buf, 8), S_OK);
    assert_int_equal(IFWXIOBuffer_SetDataSize(buf, 2), S_OK);
    expect_contents(buf, "ab", 8);
    assert_int_equal(IFWXIOBuffer_Append(buf, "Z", 1, NULL), S_OK);
    expect_contents(buf, "abZ", 8);
    assert_int_equal(IFWXIOBuffer_Release(buf), 0);
}

static void test_buffer_send_to_buffer(void **state)
{
    IFWXIOBuffer *src, *dst;
    BYTE *data;
    DWORD size;
    ULONG n;
    (void)state;

    assert_int_equal(iobuffer_create(16, &src), S_OK);
    assert_int_equal(iobuffer_create(8, &dst), S_OK);
    assert_int_equal(IFWXIOBuffer_Append(src, "abcdef", 6, NULL), S_OK);
    assert_int_equal(IFWXIOBuffer_Append(dst, "X", 1, NULL), S_OK);

    /* Appends a range of the source to the destination's data. */
    n = 999;
    assert_int_equal(IFWXIOBuffer_SendToBuffer(src, dst, 1, 3, &n), S_OK);
    assert_int_equal(n, 3);
    expect_contents(dst, "Xbcd", 8);
    expect_contents(src, "abcdef", 16);

    /* A copy: later changes to the source do not reach the destination. */
    assert_int_equal(IFWXIOBuffer_GetBufferAndSize(src, &data, &size), S_OK);
    data[1] = 'B';
    expect_contents(dst, "Xbcd", 8);

    /* Too much for the destination: partial copy and FWX_E_BUFFERFULL. */
    n = 999;
    assert_int_equal(IFWXIOBuffer_SendToBuffer(src, dst, 0, 6, &n), FWX_E_BUFFERFULL);
    assert_int_equal(n, 4);
    expect_contents(dst, "XbcdaBcd", 8);

    /* The range must lie inside the source's data; no wrap-around. */
    assert_int_equal(IFWXIOBuffer_SetDataSize(dst, 0), S_OK);
    assert_int_equal(IFWXIOBuffer_SendToBuffer(src, dst, 7, 0, &n), E_INVALIDARG);
    assert_int_equal(IFWXIOBuffer_SendToBuffer(src, dst, 4, 3, &n), E_INVALIDARG);
    assert_int_equal(IFWXIOBuffer_SendToBuffer(src, dst, 2, 0xFFFFFFFFu, &n), E_INVALIDARG);
    assert_int_equal(IFWXIOBuffer_SendToBuffer(src, dst, 0xFFFFFFFFu, 2, &n), E_INVALIDARG);
    expect_contents(dst, "", 8);

    assert_int_equal(IFWXIOBuffer_Release(dst), 0);
    assert_int_equal(IFWXIOBuffer_Release(src), 0);
}

static void test_buffer_const(void **state)
{
    BYTE mem[6] = { 'c', 'o', 'n', 's', 't', '!' };
    IFWXIOBuffer *buf, *dst;
    IFWXFirewall *fw = firewall_get();
    BYTE *data;
    DWORD size;
    char out[8];
    ULONG n;
    (void)state;

    assert_int_equal(IFWXFirewall_CreateConstBuffer(fw, mem, 5, &buf), S_OK);
    /* Wraps the caller's memory: no copy, full of data. */
    assert_int_equal(IFWXIOBuffer_GetBufferAndSize(buf, &data, &size), S_OK);
    assert_ptr_equal(data, mem);
    expect_contents(buf, "const", 5);
    assert_int_equal(IFWXIOBuffer_ReadAt(buf, 1, out, 3, &n), S_OK);
    assert_memory_equal(out, "ons", 3);

    /* Never written by the host. */
    assert_int_equal(IFWXIOBuffer_SetDataSize(buf, 2), S_OK);
    assert_true(FAILED(IFWXIOBuffer_Append(buf, "ZZ", 2, &n)));
    assert_int_equal(n, 0);
    assert_memory_equal(mem, "const!", 6);

    /* It can be a source. */
    assert_int_equal(IFWXIOBuffer_SetDataSize(buf, 5), S_OK);
    assert_int_equal(iobuffer_create(8, &dst), S_OK);
    assert_int_equal(IFWXIOBuffer_SendToBuffer(buf, dst, 0, 5, &n), S_OK);
    expect_contents(dst, "const", 8);
    assert_int_equal(IFWXIOBuffer_Release(dst), 0);
    assert_int_equal(IFWXIOBuffer_Release(buf), 0);

    assert_int_equal(IFWXFirewall_CreateConstBuffer(fw, NULL, 4, &buf), E_POINTER);
    assert_int_equal(IFWXFirewall_CreateConstBuffer(fw, mem, 4, NULL), E_POINTER);
    IFWXFirewall_Release(fw);
}

static void test_buffer_window(void **state)
{
    IFWXIOBuffer *orig, *win, *win2;
    IFWXFirewall *fw = firewall_get();
    LONG live = iobuffer_live_count();
    BYTE *odata, *wdata;
    DWORD size;
    char out[8];
    ULONG n;
    (void)state;

    assert_int_equal(iobuffer_create(32, &orig), S_OK);
    assert_int_equal(IFWXIOBuffer_Append(orig, "hello world", 11, NULL), S_OK);
    assert_int_equal(IFWXFirewall_CreateWindowBuffer(fw, orig, 6, 5, &win), S_OK);
    assert_int_equal(iobuffer_live_count(), live + 2);

    /* A view of the original's bytes, not a copy. */
    expect_contents(win, "world", 5);
    assert_int_equal(IFWXIOBuffer_GetBufferAndSize(orig, &odata, &size), S_OK);
    assert_int_equal(IFWXIOBuffer_GetBufferAndSize(win, &wdata, &size), S_OK);
    assert_ptr_equal(wdata, odata + 6);
    odata[6] = 'W';
    assert_int_equal(IFWXIOBuffer_ReadAt(win, 0, out, 5, &n), S_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(out, "World", 5);

    /* Read-only: only the original's allocator changes those bytes. */
    assert_int_equal(IFWXIOBuffer_SetDataSize(win, 0), S_OK);
    assert_true(FAILED(IFWXIOBuffer_Append(win, "XY", 2, &n)));
    assert_int_equal(n, 0);
    assert_int_equal(IFWXIOBuffer_SetDataSize(win, 5), S_OK);
    expect_contents(orig, "hello World", 32);

    /* A window of a window. */
    assert_int_equal(iobuffer_create_window(win, 1, 3, &win2), S_OK);
    expect_contents(win2, "orl", 3);

    /* The window keeps the original alive. */
    assert_int_equal(IFWXIOBuffer_Release(orig), 1 /* held by win */);
    assert_int_equal(iobuffer_live_count(), live + 3);
    expect_contents(win, "World", 5);
    assert_int_equal(IFWXIOBuffer_Release(win), 1 /* held by win2 */);
    expect_contents(win2, "orl", 3);
    assert_int_equal(IFWXIOBuffer_Release(win2), 0);
    assert_int_equal(iobuffer_live_count(), live);

    /* The window must lie inside the original's data. */
    assert_int_equal(iobuffer_create(8, &orig), S_OK);
    assert_int_equal(IFWXIOBuffer_Append(orig, "abcd", 4, NULL), S_OK);
    win = (IFWXIOBuffer *)(ULONG_PTR)0xdeadbeef;
    assert_int_equal(iobuffer_create_window(orig, 2, 3, &win), E_INVALIDARG);
    assert_null(win);
    assert_int_equal(iobuffer_create_window(orig, 5, 0, &win), E_INVALIDARG);
    assert_int_equal(iobuffer_create_window(orig, 1, 0xFFFFFFFFu, &win), E_INVALIDARG);
    assert_int_equal(iobuffer_create_window(orig, 4, 0, &win), S_OK);
    expect_contents(win, "", 0);
    assert_int_equal(IFWXIOBuffer_Release(win), 0);
    assert_int_equal(iobuffer_create_window(NULL, 0, 0, &win), E_POINTER);
    assert_int_equal(iobuffer_create_window(orig, 0, 0, NULL), E_POINTER);
    assert_int_equal(IFWXIOBuffer_Release(orig), 0);
    IFWXFirewall_Release(fw);
}

/* A window shows a const buffer's memory: writing through the window
 * (shrink it, then Append) must not write into that memory (reference 8.2
 * item 5: the host neither copies nor frees it, and it may be read-only). */
static void test_buffer_window_of_const_is_not_writable(void **state)
{
    BYTE mem[8] = { 'r', 'e', 'a', 'd', 'o', 'n', 'l', 'y' };
    IFWXIOBuffer *cbuf, *win;
    ULONG n = 999;
    HRESULT hr;
    int changed;
    (void)state;

    assert_int_equal(iobuffer_create_const(mem, 8, &cbuf), S_OK);
    assert_int_equal(iobuffer_create_window(cbuf, 2, 4, &win), S_OK);
    assert_int_equal(IFWXIOBuffer_SetDataSize(win, 0), S_OK);
    hr = IFWXIOBuffer_Append(win, "XXXX", 4, &n);
    changed = memcmp(mem, "readonly", 8) != 0;
    if (changed)
        print_error("Append to a window of a const buffer returned 0x%08lx (%lu written) "
                    "and changed the const memory to \"%.8s\"\n",
                    (unsigned long)hr, (unsigned long)n, (const char *)mem);
    assert_int_equal(IFWXIOBuffer_Release(win), 0);
    assert_int_equal(IFWXIOBuffer_Release(cbuf), 0);
    assert_false(changed);
    assert_true(FAILED(hr));
    assert_int_equal(n, 0);
}

/* A filter's own IFWXIOBuffer (reference 3.13: the host must work purely
 * through the interface). capacity/size may be made to lie. */
struct fake_buffer {
    IFWXIOBuffer iface;
    LONG ref;
    BYTE data[16];
    DWORD capacity, size;
    int appends;
};

static struct fake_buffer *fake_from(IFWXIOBuffer *iface)
{
    return CONTAINING_RECORD(iface, struct fake_buffer, iface);
}

static HRESULT WINAPI fake_QueryInterface(IFWXIOBuffer *iface, REFIID riid, void **out)
{
    if (IsEqualIID(riid, &IID_IUnknown) || IsEqualIID(riid, &IID_IFWXIOBuffer)) {
        *out = iface;
        IFWXIOBuffer_AddRef(iface);
        return S_OK;
    }
    *out = NULL;
    return E_NOINTERFACE;
}
static ULONG WINAPI fake_AddRef(IFWXIOBuffer *iface) { return ++fake_from(iface)->ref; }
static ULONG WINAPI fake_Release(IFWXIOBuffer *iface) { return --fake_from(iface)->ref; }
static HRESULT WINAPI fake_GetBufferAndSize(IFWXIOBuffer *iface, BYTE **data, DWORD *size)
{
    *data = fake_from(iface)->data;
    *size = fake_from(iface)->size;
    return S_OK;
}
static HRESULT WINAPI fake_SetDataSize(IFWXIOBuffer *iface, DWORD size)
{
    return E_NOTIMPL;
}
static HRESULT WINAPI fake_Append(IFWXIOBuffer *iface, const void *pv, ULONG cb, ULONG *written)
{
    struct fake_buffer *f = fake_from(iface);
    ULONG room = f->capacity - f->size, n = cb < room ? cb : room;
    f->appends++;
    memcpy(f->data + f->size, pv, n);
    f->size += n;
    *written = n;
    return n < cb ? FWX_E_BUFFERFULL : S_OK;
}
static HRESULT WINAPI fake_ReadAt(IFWXIOBuffer *iface, ULONG off, void *pv, ULONG cb, ULONG *read)
{
    return E_NOTIMPL;
}
static HRESULT WINAPI fake_SendToBuffer(IFWXIOBuffer *iface, IFWXIOBuffer *dst, ULONG off, ULONG cb,
                                        ULONG *copied)
{
    return E_NOTIMPL;
}
static HRESULT WINAPI fake_GetBufferSizes(IFWXIOBuffer *iface, DWORD *allocated, DWORD *actual)
{
    *allocated = fake_from(iface)->capacity;
    *actual = fake_from(iface)->size;
    return S_OK;
}
static const IFWXIOBufferVtbl fake_vtbl = {
    fake_QueryInterface, fake_AddRef, fake_Release, fake_GetBufferAndSize, fake_SetDataSize,
    fake_Append, fake_ReadAt, fake_SendToBuffer, fake_GetBufferSizes,
};

static void test_buffer_filter_implemented(void **state)
{
    struct fake_buffer fake = { { &fake_vtbl }, 1, { 0 }, 6, 0, 0 };
    IFWXIOBuffer *src, *win;
    ULONG n = 999;
    (void)state;

    /* SendToBuffer into a filter's buffer goes through its Append. */
    assert_int_equal(iobuffer_create(16, &src), S_OK);
    assert_int_equal(IFWXIOBuffer_Append(src, "abcdefgh", 8, NULL), S_OK);
    assert_int_equal(IFWXIOBuffer_SendToBuffer(src, &fake.iface, 0, 8, &n), FWX_E_BUFFERFULL);
    assert_int_equal(fake.appends, 1);
    assert_int_equal(n, 6);
    assert_memory_equal(fake.data, "abcdef", 6);

    /* A window of a filter's buffer holds a reference to it. */
    assert_int_equal(iobuffer_create_window(&fake.iface, 2, 3, &win), S_OK);
    assert_int_equal(fake.ref, 2);
    expect_contents(win, "cde", 3);
    assert_int_equal(IFWXIOBuffer_Release(win), 0);
    assert_int_equal(fake.ref, 1);

    /* One that reports more data than capacity is not trusted. */
    fake.size = 10;
    win = (IFWXIOBuffer *)(ULONG_PTR)0xdeadbeef;
    assert_true(FAILED(iobuffer_create_window(&fake.iface, 0, 2, &win)));
    assert_null(win);
    assert_int_equal(fake.ref, 1);
    assert_int_equal(IFWXIOBuffer_Release(src), 0);
}

static void test_buffer_query_interface(void **state)
{
    IFWXIOBuffer *buf;
    void *p = (void *)(ULONG_PTR)0xdeadbeef;
    (void)state;

    assert_int_equal(iobuffer_create(4, &buf), S_OK);
    assert_int_equal(IFWXIOBuffer_QueryInterface(buf, &IID_IFWXIOBuffer, &p), S_OK);
    assert_ptr_equal(p, buf);
    assert_int_equal(IFWXIOBuffer_Release(buf), 1);
    assert_int_equal(IFWXIOBuffer_QueryInterface(buf, &IID_IUnknown, &p), S_OK);
    assert_ptr_equal(p, buf);
    assert_int_equal(IFWXIOBuffer_Release(buf), 1);
    assert_int_equal(IFWXIOBuffer_QueryInterface(buf, &IID_IFWXFirewall, &p), E_NOINTERFACE);
    assert_null(p);
    assert_int_equal(IFWXIOBuffer_AddRef(buf), 2);
    assert_int_equal(IFWXIOBuffer_Release(buf), 1);
    assert_int_equal(IFWXIOBuffer_Release(buf), 0);
}

/* ------------------------------------------------------------------------
 * IFWXFirewall (reference 3.8, 8.4)
 * ------------------------------------------------------------------------ */

static void test_firewall_query_interface(void **state)
{
    IFWXFirewall *fw = firewall_get();
    void *p = (void *)(ULONG_PTR)0xdeadbeef;
    (void)state;

    assert_int_equal(IFWXFirewall_QueryInterface(fw, &IID_IFWXFirewall, &p), S_OK);
    assert_ptr_equal(p, fw);
    IFWXFirewall_Release(fw);
    assert_int_equal(IFWXFirewall_QueryInterface(fw, &IID_IUnknown, &p), S_OK);
    assert_ptr_equal(p, fw);
    IFWXFirewall_Release(fw);
    assert_int_equal(IFWXFirewall_QueryInterface(fw, &IID_IFWXSession, &p), E_NOINTERFACE);
    assert_null(p);
    /* One process-wide object. */
    IFWXFirewall *again = firewall_get();
    assert_ptr_equal(again, fw);
    IFWXFirewall_Release(again);
    IFWXFirewall_Release(fw);
}

static DWORD WINAPI blocking_thread(void *arg)
{
    IFWXFirewall *fw = arg;
    HRESULT results[4];

    results[0] = IFWXFirewall_EndHeavyBlockingOperation(fw);
    results[1] = IFWXFirewall_StartHeavyBlockingOperation(fw);
    results[2] = IFWXFirewall_StartHeavyBlockingOperation(fw);
    results[3] = IFWXFirewall_EndHeavyBlockingOperation(fw);
    if (results[0] == FWX_E_NOT_IN_BLOCKING_OP && results[1] == S_OK &&
        results[2] == FWX_E_ALREADY_IN_BLOCKING_OP && results[3] == S_OK)
        return 1;
    print_error("second thread: End 0x%08lx, Start 0x%08lx, Start 0x%08lx, End 0x%08lx; "
                "expected NOT_IN, S_OK, ALREADY_IN, S_OK\n", (unsigned long)(DWORD)results[0],
                (unsigned long)(DWORD)results[1], (unsigned long)(DWORD)results[2], (unsigned long)(DWORD)results[3]);
    return 0;
}

static void test_firewall_heavy_blocking(void **state)
{
    IFWXFirewall *fw = firewall_get();
    HANDLE thread;
    DWORD ok = 0;
    (void)state;

    assert_int_equal(IFWXFirewall_EndHeavyBlockingOperation(fw), FWX_E_NOT_IN_BLOCKING_OP);
    assert_int_equal(IFWXFirewall_StartHeavyBlockingOperation(fw), S_OK);
    assert_int_equal(IFWXFirewall_StartHeavyBlockingOperation(fw), FWX_E_ALREADY_IN_BLOCKING_OP);

    /* Per thread (reference 8.4): another thread is not "in" this one's. */
    thread = CreateThread(NULL, 0, blocking_thread, fw, 0, NULL);
    assert_non_null(thread);
    assert_int_equal(WaitForSingleObject(thread, 10000), WAIT_OBJECT_0);
    assert_true(GetExitCodeThread(thread, &ok));
    CloseHandle(thread);
    assert_int_equal(ok, 1);

    /* Still in ours after the other thread ended its own. */
    assert_int_equal(IFWXFirewall_StartHeavyBlockingOperation(fw), FWX_E_ALREADY_IN_BLOCKING_OP);
    assert_int_equal(IFWXFirewall_EndHeavyBlockingOperation(fw), S_OK);
    assert_int_equal(IFWXFirewall_EndHeavyBlockingOperation(fw), FWX_E_NOT_IN_BLOCKING_OP);
    /* And usable again. */
    assert_int_equal(IFWXFirewall_StartHeavyBlockingOperation(fw), S_OK);
    assert_int_equal(IFWXFirewall_EndHeavyBlockingOperation(fw), S_OK);
    IFWXFirewall_Release(fw);
}

/* CreatePrivateSession: a session of the given client, flagged private,
 * unauthenticated without an impersonator, that hands its address back
 * with port 0 and checks its arguments. */
static void test_firewall_private_session(void **state)
{
    IFWXFirewall *fw = firewall_get();
    IFWXSession *session = NULL;
    SOCKADDR_IN client, got;
    DWORD flags = 0, len = sizeof(got);
    (void)state;

    memset(&client, 0, sizeof(client));
    client.sin_family = AF_INET;
    client.sin_port = htons(4321);
    client.sin_addr.s_addr = htonl(0x7f000009);
    assert_int_equal(IFWXFirewall_CreatePrivateSession(fw, NULL, sizeof(client), NULL, 0, NULL,
                                                       &session), E_POINTER);
    assert_int_equal(IFWXFirewall_CreatePrivateSession(fw, (LPSOCKADDR)&client, 3, NULL, 0, NULL,
                                                       &session), E_INVALIDARG);
    assert_null(session);
    assert_int_equal(IFWXFirewall_CreatePrivateSession(fw, (LPSOCKADDR)&client, sizeof(client),
                                                       NULL, 0, NULL, &session), S_OK);
    assert_non_null(session);
    assert_int_equal(IFWXSession_GetSessionFlags(session, &flags), S_OK);
    assert_true(flags & FWX_SESSION_PRIVATE);
    assert_false(flags & (FWX_SESSION_NAT | FWX_SESSION_AUTHENTICATED));
    assert_int_equal(IFWXSession_GetClientAddress(session, (LPSOCKADDR)&got, &len), S_OK);
    assert_int_equal(len, sizeof(got));
    assert_int_equal(got.sin_addr.s_addr, client.sin_addr.s_addr);
    assert_int_equal(got.sin_port, 0);
    assert_int_equal(IFWXSession_ImpersonateClient(session), FWX_E_NOT_AUTHENTICATED);
    assert_int_equal(IFWXSession_Release(session), 0);
    IFWXFirewall_Release(fw);
}

static void test_firewall_duplicate_hook_events(void **state)
{
    FwxPortRangeEvents ranges[3] = {
        { fwx_Connect_Tcp | fwxSourceWSP, 21, 21 },
        { fwx_Bind_Udp | FWX_ALL_SOURCES, 1000, 2000 },
        { fwx_Listen | (DWORD)fwxSourceNAT, 80, 81 },
    };
    FwxFilterHookEvents src = { fwx_GetHostByName | FWX_ALL_SOURCES, 3, ranges };
    FwxFilterHookEvents *copy = (FwxFilterHookEvents *)(ULONG_PTR)0xdeadbeef;
    IFWXFirewall *fw = firewall_get();
    IMalloc *malloc_iface = NULL;
    SIZE_T block;
    (void)state;

    assert_int_equal(IFWXFirewall_DuplicateFilterHookEvents(fw, &src, &copy), S_OK);
    assert_non_null(copy);
    assert_ptr_not_equal(copy, &src);
    assert_int_equal(copy->dwGlobalEvents, src.dwGlobalEvents);
    assert_int_equal(copy->dwNumPortRanges, 3);
    assert_non_null(copy->PortRangeEvents);
    assert_ptr_not_equal(copy->PortRangeEvents, ranges);
    assert_memory_equal(copy->PortRangeEvents, ranges, sizeof(ranges));

    /* One CoTaskMem block holds the structure and its ranges, so that the
     * host's single CoTaskMemFree after AttachToSession frees everything. */
    assert_int_equal(CoGetMalloc(1, &malloc_iface), S_OK);
    assert_int_equal(IMalloc_DidAlloc(malloc_iface, copy), 1);
    block = IMalloc_GetSize(malloc_iface, copy);
    assert_true(block >= sizeof(*copy) + sizeof(ranges));
    assert_true((BYTE *)copy->PortRangeEvents >= (BYTE *)copy + sizeof(*copy));
    assert_true((BYTE *)(copy->PortRangeEvents + 3) <= (BYTE *)copy + block);
    assert_int_equal((ULONG_PTR)copy->PortRangeEvents % __alignof__(FwxPortRangeEvents), 0);

    /* A copy: the filter may change or free its own afterwards. */
    ranges[0].dwLowPort = 9999;
    src.dwGlobalEvents = 0;
    assert_int_equal(copy->PortRangeEvents[0].dwLowPort, 21);
    assert_int_equal(copy->dwGlobalEvents, fwx_GetHostByName | FWX_ALL_SOURCES);
    CoTaskMemFree(copy);

    /* No ranges: no array. */
    src.dwNumPortRanges = 0;
    assert_int_equal(hooks_duplicate(&src, &copy), S_OK);
    assert_int_equal(copy->dwNumPortRanges, 0);
    assert_null(copy->PortRangeEvents);
    CoTaskMemFree(copy);

    /* A count without an array is not followed. */
    src.dwNumPortRanges = 5;
    src.PortRangeEvents = NULL;
    assert_int_equal(hooks_duplicate(&src, &copy), S_OK);
    assert_int_equal(copy->dwNumPortRanges, 0);
    assert_null(copy->PortRangeEvents);
    CoTaskMemFree(copy);

    /* Garbage and NULLs fail cleanly. */
    src.dwNumPortRanges = 0x40000000u;
    src.PortRangeEvents = ranges;
    copy = (FwxFilterHookEvents *)(ULONG_PTR)0xdeadbeef;
    assert_true(FAILED(IFWXFirewall_DuplicateFilterHookEvents(fw, &src, &copy)));
    assert_null(copy);
    copy = (FwxFilterHookEvents *)(ULONG_PTR)0xdeadbeef;
    assert_int_equal(IFWXFirewall_DuplicateFilterHookEvents(fw, NULL, &copy), E_POINTER);
    assert_null(copy);
    assert_int_equal(IFWXFirewall_DuplicateFilterHookEvents(fw, &src, NULL), E_POINTER);

    IMalloc_Release(malloc_iface);
    IFWXFirewall_Release(fw);
}

/* ------------------------------------------------------------------------
 * Calling convention of the host's methods, as a Microsoft compiler's
 * caller sees it (reference 1): on x86_64 the callee must preserve RBX, RSI,
 * RDI, R12-R15 and XMM6-XMM15 (RSI, RDI and XMM6-15 are scratch in the
 * System V ABI that the rest of the host uses); on i386 stdcall, EBX, ESI,
 * EDI, and the callee pops its own arguments.
 *
 * fx_abi_call(fn, args[8], &hr) loads sentinels into every register the
 * callee must preserve, calls fn(args...) as the filter would, stores the
 * HRESULT, and returns a mask of the registers that came back changed:
 * bits 0-6 RBX RSI RDI R12 R13 R14 R15 (EBX ESI EDI), 8-17 XMM6-XMM15,
 * 18 the stack pointer.
 * ------------------------------------------------------------------------ */

#define ABI_NARGS 8
#define ABI_BIT_SP 18

#if defined(__x86_64__)
__asm__(
    ".text\n"
    ".globl fx_abi_call\n"
    ".hidden fx_abi_call\n"
    ".type fx_abi_call,@function\n"
    "fx_abi_call:\n"                       /* System V: rdi fn, rsi args, rdx hr */
    "    push %rbp\n"
    "    mov %rsp, %rbp\n"
    "    push %rbx\n"
    "    push %r12\n"
    "    push %r13\n"
    "    push %r14\n"
    "    push %r15\n"
    "    sub $88, %rsp\n"                  /* rsp = rbp - 128, 16-aligned */
    "    mov %rdi, -48(%rbp)\n"
    "    mov %rdx, -56(%rbp)\n"
    "    mov %rsi, %rax\n"
    "    .irp i, 4, 5, 6, 7\n"             /* arguments 5-8 above the shadow space */
    "    mov \\i*8(%rax), %r10\n"
    "    mov %r10, \\i*8(%rsp)\n"
    "    .endr\n"
    "    mov 0(%rax), %rcx\n"
    "    mov 8(%rax), %rdx\n"
    "    mov 16(%rax), %r8\n"
    "    mov 24(%rax), %r9\n"
    "    .set fx_k, 1\n"
    "    .irp r, rbx, rsi, rdi, r12, r13, r14, r15\n"
    "    movabs $(0x0101010101010101 * fx_k), %\\r\n"
    "    .set fx_k, fx_k + 1\n"
    "    .endr\n"
    "    .irp x, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15\n"
    "    movabs $(0x0101010101010101 * (0x10 + \\x)), %r11\n"
    "    movq %r11, %xmm\\x\n"
    "    .endr\n"
    "    call *-48(%rbp)\n"
    "    mov -56(%rbp), %r10\n"
    "    mov %eax, (%r10)\n"
    "    xor %eax, %eax\n"
    "    lea -128(%rbp), %r10\n"
    "    cmp %r10, %rsp\n"
    "    je 1f\n"
    "    or $(1 << 18), %eax\n"
    "1:\n"
    "    .set fx_k, 1\n"
    "    .irp r, rbx, rsi, rdi, r12, r13, r14, r15\n"
    "    movabs $(0x0101010101010101 * fx_k), %r10\n"
    "    cmp %r10, %\\r\n"
    "    je 1f\n"
    "    or $(1 << (fx_k - 1)), %eax\n"
    "1:\n"
    "    .set fx_k, fx_k + 1\n"
    "    .endr\n"
    "    .irp x, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15\n"
    "    movq %xmm\\x, %r11\n"
    "    movabs $(0x0101010101010101 * (0x10 + \\x)), %r10\n"
    "    cmp %r10, %r11\n"
    "    je 1f\n"
    "    or $(1 << (\\x + 2)), %eax\n"
    "1:\n"
    "    .endr\n"
    "    lea -40(%rbp), %rsp\n"
    "    pop %r15\n"
    "    pop %r14\n"
    "    pop %r13\n"
    "    pop %r12\n"
    "    pop %rbx\n"
    "    pop %rbp\n"
    "    ret\n"
    ".size fx_abi_call, . - fx_abi_call\n"
    /* A broken callee for the self-test: clobbers RSI and XMM9. */
    ".globl fx_abi_bad\n"
    ".hidden fx_abi_bad\n"
    "fx_abi_bad:\n"
    "    xor %esi, %esi\n"
    "    pxor %xmm9, %xmm9\n"
    "    xor %eax, %eax\n"
    "    ret\n");
#define ABI_BAD_MASK ((1u << 1) | (1u << 11))
unsigned int __attribute__((__sysv_abi__)) fx_abi_call(const void *fn, const ULONG_PTR *args,
                                                   HRESULT *hr);
static const char *const abi_reg_names[] = { "RBX", "RSI", "RDI", "R12", "R13", "R14", "R15", "",
    "XMM6", "XMM7", "XMM8", "XMM9", "XMM10", "XMM11", "XMM12", "XMM13", "XMM14", "XMM15", "RSP" };
#elif defined(__i386__)
__asm__(
    ".text\n"
    ".globl fx_abi_call_n\n"
    ".hidden fx_abi_call_n\n"
    ".type fx_abi_call_n,@function\n"
    "fx_abi_call_n:\n"                     /* cdecl: fn, nargs, args, hr */
    "    push %ebp\n"
    "    mov %esp, %ebp\n"
    "    push %ebx\n"
    "    push %esi\n"
    "    push %edi\n"
    "    sub $4, %esp\n"                   /* -16(%ebp): esp expected after the call */
    "    mov 12(%ebp), %ecx\n"
    "    lea (,%ecx,4), %eax\n"
    "    mov %esp, %edx\n"
    "    sub %eax, %edx\n"
    "    and $15, %edx\n"
    "    sub %edx, %esp\n"                 /* 16-aligned once the arguments are pushed */
    "    mov %esp, -16(%ebp)\n"
    "    mov 16(%ebp), %edx\n"
    "1:  test %ecx, %ecx\n"
    "    jz 2f\n"
    "    dec %ecx\n"
    "    push (%edx,%ecx,4)\n"
    "    jmp 1b\n"
    "2:  mov 8(%ebp), %eax\n"
    "    mov $0x01010101, %ebx\n"
    "    mov $0x02020202, %esi\n"
    "    mov $0x03030303, %edi\n"
    "    call *%eax\n"                     /* stdcall: the callee pops the arguments */
    "    mov 20(%ebp), %ecx\n"
    "    mov %eax, (%ecx)\n"
    "    xor %eax, %eax\n"
    "    cmp -16(%ebp), %esp\n"
    "    je 1f\n"
    "    or $(1 << 18), %eax\n"
    "1:  cmp $0x01010101, %ebx\n"
    "    je 1f\n"
    "    or $1, %eax\n"
    "1:  cmp $0x02020202, %esi\n"
    "    je 1f\n"
    "    or $2, %eax\n"
    "1:  cmp $0x03030303, %edi\n"
    "    je 1f\n"
    "    or $4, %eax\n"
    "1:  lea -12(%ebp), %esp\n"
    "    pop %edi\n"
    "    pop %esi\n"
    "    pop %ebx\n"
    "    pop %ebp\n"
    "    ret\n"
    ".size fx_abi_call_n, . - fx_abi_call_n\n"
    /* A broken callee for the self-test: clobbers EDI and does not pop its
     * arguments (cdecl where stdcall is due). */
    ".globl fx_abi_bad\n"
    ".hidden fx_abi_bad\n"
    "fx_abi_bad:\n"
    "    xor %edi, %edi\n"
    "    xor %eax, %eax\n"
    "    ret\n");
#define ABI_BAD_MASK ((1u << 2) | (1u << ABI_BIT_SP))
unsigned int __attribute__((__cdecl__)) fx_abi_call_n(const void *fn, int nargs, const ULONG_PTR *args,
                                                  HRESULT *hr);
static const char *const abi_reg_names[] = { "EBX", "ESI", "EDI", "", "", "", "", "",
    "", "", "", "", "", "", "", "", "", "", "ESP (wrong stdcall argument size)" };
#else
#error "test_abi.c knows the calling conventions of i386 and x86_64 only"
#endif

void fx_abi_bad(void);

static int abi_call_failures;
static unsigned int abi_last_bad;
static int abi_quiet;            /* the self-test's deliberate failure */

/* Calls method fn with nargs arguments (this first) like a filter would;
 * reports every register the call did not preserve. */
static HRESULT abi_call(const char *what, const void *fn, int nargs, ...)
{
    ULONG_PTR args[ABI_NARGS] = { 0 };
    HRESULT hr = E_UNEXPECTED;
    unsigned int bad;
    va_list ap;

    assert_true(nargs >= 1 && nargs <= ABI_NARGS);
    va_start(ap, nargs);
    for (int i = 0; i < nargs; i++)
        args[i] = va_arg(ap, ULONG_PTR);
    va_end(ap);
#ifdef __x86_64__
    bad = fx_abi_call(fn, args, &hr);
#else
    bad = fx_abi_call_n(fn, nargs, args, &hr);
#endif
    abi_last_bad = bad;
    if (bad && !abi_quiet) {
        char names[160] = "";
        for (int b = 0; b <= ABI_BIT_SP; b++)
            if (bad & (1u << b)) {
                strncat(names, " ", sizeof(names) - strlen(names) - 1);
                strncat(names, abi_reg_names[b], sizeof(names) - strlen(names) - 1);
            }
        print_error("%s (returned 0x%08lx) did not preserve:%s\n", what, (unsigned long)(DWORD)hr,
                    names);
        abi_call_failures++;
    }
    return hr;
}

#define P(x) ((ULONG_PTR)(x))
#define CALL(iface, method, nargs, ...) \
    abi_call(#method, (const void *)(iface)->lpVtbl->method, (nargs), P(iface), ##__VA_ARGS__)

/* The sentinel mechanism itself: a well-behaved WINAPI function passes, and
 * the arguments arrive in the right order. */
static HRESULT WINAPI abi_probe(ULONG_PTR a, ULONG_PTR b, ULONG_PTR c, ULONG_PTR d,
                                ULONG_PTR e, ULONG_PTR f, ULONG_PTR g, ULONG_PTR h)
{
    return (HRESULT)(a + 2 * b + 3 * c + 4 * d + 5 * e + 6 * f + 7 * g + 8 * h);
}

static void test_callconv_probe(void **state)
{
    (void)state;
    abi_call_failures = 0;
    assert_int_equal(abi_call("probe", (const void *)abi_probe, 8, P(1), P(10), P(100), P(1000),
                              P(10000), P(100000), P(1000000), P(10000000)),
                     1 + 20 + 300 + 4000 + 50000 + 600000 + 7000000 + 80000000);
    assert_int_equal(abi_call_failures, 0);
    assert_int_equal(abi_last_bad, 0);

    /* And it sees a callee that breaks the convention. */
    abi_quiet = 1;
    abi_call("deliberately broken callee", (const void *)fx_abi_bad, 2, P(1), P(2));
    abi_quiet = 0;
    assert_int_equal(abi_last_bad, ABI_BAD_MASK);
}

static void test_callconv_iobuffer(void **state)
{
    IFWXIOBuffer *buf, *dst, *win = NULL, *cbuf = NULL;
    BYTE mem[4] = { 1, 2, 3, 4 }, *data;
    DWORD size, allocated;
    ULONG n;
    char out[8];
    void *p;
    (void)state;

    abi_call_failures = 0;
    assert_int_equal(iobuffer_create(8, &buf), S_OK);
    assert_int_equal(iobuffer_create(8, &dst), S_OK);
    assert_int_equal(CALL(buf, QueryInterface, 3, P(&IID_IFWXIOBuffer), P(&p)), S_OK);
    CALL(buf, AddRef, 1);
    CALL(buf, Release, 1);
    CALL(buf, Release, 1);
    assert_int_equal(CALL(buf, Append, 4, P("abcdefghij"), P(10), P(&n)), FWX_E_BUFFERFULL);
    assert_int_equal(CALL(buf, SetDataSize, 2, P(4)), S_OK);
    assert_int_equal(CALL(buf, SetDataSize, 2, P(9)), E_INVALIDARG);
    assert_int_equal(CALL(buf, GetBufferAndSize, 3, P(&data), P(&size)), S_OK);
    assert_int_equal(CALL(buf, GetBufferSizes, 3, P(&allocated), P(&size)), S_OK);
    assert_int_equal(CALL(buf, ReadAt, 5, P(1), P(out), P(2), P(&n)), S_OK);
    assert_int_equal(CALL(buf, ReadAt, 5, P(9), P(out), P(2), P(&n)), E_INVALIDARG);
    assert_int_equal(CALL(buf, SendToBuffer, 5, P(dst), P(0), P(4), P(&n)), S_OK);
    assert_memory_equal(out, "bc", 2);
    expect_contents(dst, "abcd", 8);

    IFWXFirewall *fw = firewall_get();
    assert_int_equal(CALL(fw, CreateConstBuffer, 4, P(mem), P(4), P(&cbuf)), S_OK);
    assert_int_equal(CALL(fw, CreateWindowBuffer, 5, P(buf), P(1), P(2), P(&win)), S_OK);
    expect_contents(win, "bc", 2);
    CALL(win, Release, 1);
    CALL(cbuf, Release, 1);
    IFWXFirewall_Release(fw);
    IFWXIOBuffer_Release(dst);
    IFWXIOBuffer_Release(buf);
    assert_int_equal(abi_call_failures, 0);
}

static void release_out(HRESULT hr, void **p)
{
    if (SUCCEEDED(hr) && *p)
        IUnknown_Release((IUnknown *)*p);
    *p = NULL;
}

static void test_callconv_firewall(void **state)
{
    IFWXFirewall *fw = firewall_get();
    IFWXIOBuffer *buf = NULL;
    FwxFilterHookEvents src = { fwx_Connect_Tcp | FWX_ALL_SOURCES, 0, NULL }, *copy = NULL;
    SOCKADDR_IN sin = { AF_INET };
    char hostbuf[64];
    int hostlen = sizeof(hostbuf);
    void *p = NULL;
    (void)state;

    abi_call_failures = 0;
    assert_int_equal(CALL(fw, QueryInterface, 3, P(&IID_IFWXFirewall), P(&p)), S_OK);
    CALL(fw, AddRef, 1);
    CALL(fw, Release, 1);
    CALL(fw, Release, 1);
    assert_int_equal(CALL(fw, StartHeavyBlockingOperation, 1), S_OK);
    assert_int_equal(CALL(fw, StartHeavyBlockingOperation, 1), FWX_E_ALREADY_IN_BLOCKING_OP);
    assert_int_equal(CALL(fw, EndHeavyBlockingOperation, 1), S_OK);
    assert_int_equal(CALL(fw, EndHeavyBlockingOperation, 1), FWX_E_NOT_IN_BLOCKING_OP);
    assert_int_equal(CALL(fw, CreateBuffer, 3, P(16), P(&buf)), S_OK);
    assert_true(FAILED(CALL(fw, CreateBuffer, 3, P(0xFFFFFFFFu), P(&p))));
    assert_int_equal(CALL(fw, DuplicateFilterHookEvents, 3, P(&src), P(&copy)), S_OK);
    CoTaskMemFree(copy);
    /* The rest, whatever they return (some are not implemented yet);
     * objects they hand out are released. */
    CALL(fw, HookToCompletionPort, 2, P(0));
    p = NULL;
    release_out(CALL(fw, CreateOverlapped, 2, P(&p)), &p);
    release_out(CALL(fw, CreateNetworkSocket, 3, P(FWX_PROTOCOL_TCP), P(&p)), &p);
    release_out(CALL(fw, CreateIpFilter, 2, P(&p)), &p);
    release_out(CALL(fw, GetNATSession, 4, P(&sin), P(sizeof(sin)), P(&p)), &p);
    release_out(CALL(fw, CreatePrivateSession, 7, P(&sin), P(sizeof(sin)), P(NULL), P(0), P(NULL),
                     P(&p)), &p);
    CALL(fw, GetHostByName, 4, P("localhost"), P(hostbuf), P(&hostlen));
    hostlen = sizeof(hostbuf);
    CALL(fw, GetHostByAddr, 6, P("\x7f\0\0\x01"), P(4), P(AF_INET), P(hostbuf), P(&hostlen));
    IFWXIOBuffer_Release(buf);
    IFWXFirewall_Release(fw);
    assert_int_equal(abi_call_failures, 0);
}

int main(void)
{
    const struct CMUnitTest abi[] = {
        cmocka_unit_test(test_arch_is_consistent),
        cmocka_unit_test(test_layout_hook_events),
        cmocka_unit_test(test_layout_event_structs),
        cmocka_unit_test(test_layout_firewall_event),
        cmocka_unit_test(test_layout_win32_types),
        cmocka_unit_test(test_vtables_filter_side),
        cmocka_unit_test(test_vtables_session),
        cmocka_unit_test(test_vtables_sockets),
        cmocka_unit_test(test_vtables_host_misc),
        cmocka_unit_test(test_enums),
        cmocka_unit_test(test_flag_constants),
        cmocka_unit_test(test_hresults),
        cmocka_unit_test(test_guids),
    };
#define BUF_TEST(f) cmocka_unit_test_setup_teardown(f, buffers_setup, buffers_teardown)
    const struct CMUnitTest host[] = {
        BUF_TEST(test_buffer_create_empty),
        BUF_TEST(test_buffer_create_huge_fails_cleanly),
        BUF_TEST(test_buffer_thread_cache),
        BUF_TEST(test_buffer_reclaim),
        BUF_TEST(test_buffer_charge_threads),
        BUF_TEST(test_buffer_charge_release_races_reclaim),
        BUF_TEST(test_buffer_append_partial),
        BUF_TEST(test_buffer_null_pointers),
        BUF_TEST(test_buffer_read_at),
        BUF_TEST(test_buffer_set_data_size),
        BUF_TEST(test_buffer_send_to_buffer),
        BUF_TEST(test_buffer_const),
        BUF_TEST(test_buffer_window),
        BUF_TEST(test_buffer_window_of_const_is_not_writable),
        BUF_TEST(test_buffer_filter_implemented),
        BUF_TEST(test_buffer_query_interface),
        cmocka_unit_test(test_callconv_probe),
        BUF_TEST(test_callconv_iobuffer),
        cmocka_unit_test(test_callconv_firewall),
        cmocka_unit_test(test_firewall_query_interface),
        cmocka_unit_test(test_firewall_heavy_blocking),
        cmocka_unit_test(test_firewall_duplicate_hook_events),
        cmocka_unit_test(test_firewall_private_session),
    };
    int failed;

    fx_log_init("test_abi", FX_LOG_WARN);
    CoInitializeEx(NULL, COINIT_MULTITHREADED);
    failed = cmocka_run_group_tests_name("abi-" ARCH_NAME, abi, NULL, NULL);
    failed += cmocka_run_group_tests_name("host-" ARCH_NAME, host, NULL, NULL);
    CoUninitialize();
    return failed ? 1 : 0;
}
