/*
 * test_anticipate.c - the anticipated-action registry of shim/com/anticipate.c
 * (reference 2.8, 3.9, 3.15) through IFWXSession, without a running host:
 *
 *   AllowFutureConnect   one-shot use, FWX_FLAG_ALLOW_MULTIPLE, port and
 *                        address wildcards, FWX_FLAG_ADDRESS_BASED across
 *                        sessions of one client, Cancel, session end;
 *   events               fwx_EstablishedConnection reaches the registering
 *                        session filter only, with its punkContext, and the
 *                        host's references on both go when the action does;
 *   arguments            the errors each method gives bad input, and what a
 *                        method needs a running host for.
 *
 * The listener paths (RedirectConnections, BindForClient) need worker loops:
 * tests/ftp.sh runs them end to end.
 */
#include "fwxhost.h" /* first: Winsock must precede every libc header */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "anticipate.h"
#include "fxlog.h"
#include "hostobj.h"

static SOCKADDR_IN addr4(unsigned a, unsigned b, unsigned c, unsigned d, unsigned port)
{
    SOCKADDR_IN sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((u_short)port);
    sa.sin_addr.s_addr = htonl((a << 24) | (b << 16) | (c << 8) | d);
    return sa;
}

static struct session *new_session(unsigned client_port)
{
    SOCKADDR_IN client = addr4(10, 0, 0, 5, client_port);
    struct session *s = session_create(&client, sizeof(client), "test");
    assert_non_null(s);
    return s;
}

/* True if an outbound connection of s to target would be let through (and
 * uses the action up if it is one-shot). */
static BOOL allowed(struct session *s, SOCKADDR_IN target)
{
    struct anticipation *a = anticipate_take_connect(s, &target, sizeof(target));
    anticipate_release(a);
    return a != NULL;
}

static IFWXFirewallAction *allow(struct session *s, SOCKADDR_IN target, DWORD flags)
{
    IFWXFirewallAction *action = NULL;
    assert_int_equal(IFWXSession_AllowFutureConnect(session_iface(s), (LPSOCKADDR)&target,
                                                    sizeof(target), NULL, 0, FWX_PROTOCOL_TCP,
                                                    flags, &GUID_NULL, NULL, NULL, &action), S_OK);
    assert_non_null(action);
    return action;
}

static void test_one_shot(void **state)
{
    struct session *s = new_session(1000);
    IFWXFirewallAction *action = allow(s, addr4(192, 0, 2, 1, 2000), 0);
    (void)state;

    assert_false(allowed(s, addr4(192, 0, 2, 1, 2001)));    /* another port */
    assert_false(allowed(s, addr4(192, 0, 2, 2, 2000)));    /* another address */
    assert_true(allowed(s, addr4(192, 0, 2, 1, 2000)));
    assert_false(allowed(s, addr4(192, 0, 2, 1, 2000)));    /* used up */
    assert_int_equal(IFWXFirewallAction_Cancel(action), S_OK);   /* harmless now */
    assert_int_equal(IFWXFirewallAction_Release(action), 0);
    session_end(s);
    IFWXSession_Release(session_iface(s));
}

static void test_multiple_then_cancel(void **state)
{
    struct session *s = new_session(1000);
    IFWXFirewallAction *action = allow(s, addr4(192, 0, 2, 1, 0), FWX_FLAG_ALLOW_MULTIPLE);
    (void)state;

    /* Port 0: any port of that address, as often as it comes. */
    assert_true(allowed(s, addr4(192, 0, 2, 1, 2000)));
    assert_true(allowed(s, addr4(192, 0, 2, 1, 2001)));
    assert_true(allowed(s, addr4(192, 0, 2, 1, 2000)));
    assert_int_equal(IFWXFirewallAction_Cancel(action), S_OK);
    assert_false(allowed(s, addr4(192, 0, 2, 1, 2000)));
    assert_int_equal(IFWXFirewallAction_Cancel(action), S_OK);   /* twice is harmless */
    assert_int_equal(IFWXFirewallAction_Release(action), 0);
    session_end(s);
    IFWXSession_Release(session_iface(s));
}

static void test_address_based(void **state)
{
    struct session *s = new_session(1000), *same_client = new_session(1001);
    IFWXFirewallAction *plain = allow(s, addr4(192, 0, 2, 1, 2000), FWX_FLAG_ALLOW_MULTIPLE);
    IFWXFirewallAction *by_addr = NULL;
    (void)state;

    /* Tied to the session: another session of the same client gets nothing. */
    assert_false(allowed(same_client, addr4(192, 0, 2, 1, 2000)));
    by_addr = allow(s, addr4(192, 0, 2, 9, 0), FWX_FLAG_ADDRESS_BASED | FWX_FLAG_ALLOW_MULTIPLE);
    assert_true(allowed(same_client, addr4(192, 0, 2, 9, 21)));
    assert_true(allowed(s, addr4(192, 0, 2, 9, 21)));
    IFWXFirewallAction_Release(plain);
    IFWXFirewallAction_Release(by_addr);
    session_end(s);
    session_end(same_client);
    IFWXSession_Release(session_iface(s));
    IFWXSession_Release(session_iface(same_client));
}

static void test_session_end_cancels(void **state)
{
    struct session *s = new_session(1000);
    IFWXFirewallAction *action = allow(s, addr4(192, 0, 2, 1, 2000), FWX_FLAG_ALLOW_MULTIPLE);
    SOCKADDR_IN target = addr4(192, 0, 2, 1, 2000);
    IFWXFirewallAction *late = (IFWXFirewallAction *)(ULONG_PTR)1;
    (void)state;

    assert_true(allowed(s, target));
    session_end(s);
    assert_false(allowed(s, target));
    assert_int_equal(IFWXFirewallAction_Cancel(action), S_OK);   /* after the end: harmless */
    assert_int_equal(IFWXFirewallAction_Release(action), 0);
    assert_int_equal(IFWXSession_AllowFutureConnect(session_iface(s), (LPSOCKADDR)&target,
                                                    sizeof(target), NULL, 0, FWX_PROTOCOL_TCP, 0,
                                                    &GUID_NULL, NULL, NULL, &late),
                     FWX_E_TERMINATING);
    assert_null(late);
    IFWXSession_Release(session_iface(s));
}

/* ---------------------------------------------------------------- a session filter that records */

struct recorder {
    IFWXSessionFilter IFWXSessionFilter_iface;
    LONG ref;
    int events;
    DWORD type;
    UserContextType context;
    IFWXConnection *connection;
};

static struct recorder *rec_from(IFWXSessionFilter *iface)
{
    return CONTAINING_RECORD(iface, struct recorder, IFWXSessionFilter_iface);
}

static HRESULT WINAPI rec_QueryInterface(IFWXSessionFilter *iface, REFIID riid, void **out)
{
    *out = NULL;
    return E_NOINTERFACE;
}

static ULONG WINAPI rec_AddRef(IFWXSessionFilter *iface)
{
    return InterlockedIncrement(&rec_from(iface)->ref);
}

static ULONG WINAPI rec_Release(IFWXSessionFilter *iface)
{
    return InterlockedDecrement(&rec_from(iface)->ref);
}

static HRESULT WINAPI rec_FirewallEventHandler(IFWXSessionFilter *iface, const FwxFirewallEvent *ev)
{
    struct recorder *r = rec_from(iface);
    r->events++;
    r->type = ev->EventType;
    r->context = ev->Parameters.EstablishedConnection.UserContext;
    r->connection = ev->Parameters.EstablishedConnection.piConnection;
    return S_OK;
}

static HRESULT WINAPI rec_Detach(IFWXSessionFilter *iface)
{
    return S_OK;
}

static const IFWXSessionFilterVtbl rec_vtbl = {
    rec_QueryInterface, rec_AddRef, rec_Release, rec_FirewallEventHandler, rec_Detach,
};

struct context {
    IUnknown IUnknown_iface;
    LONG ref;
};

static HRESULT WINAPI ctx_QueryInterface(IUnknown *iface, REFIID riid, void **out)
{
    *out = NULL;
    return E_NOINTERFACE;
}

static ULONG WINAPI ctx_AddRef(IUnknown *iface)
{
    return InterlockedIncrement(&CONTAINING_RECORD(iface, struct context, IUnknown_iface)->ref);
}

static ULONG WINAPI ctx_Release(IUnknown *iface)
{
    return InterlockedDecrement(&CONTAINING_RECORD(iface, struct context, IUnknown_iface)->ref);
}

static const IUnknownVtbl ctx_vtbl = { ctx_QueryInterface, ctx_AddRef, ctx_Release };

static void test_established_goes_to_the_registering_filter(void **state)
{
    struct session *s = new_session(1000);
    struct recorder mine = { { &rec_vtbl }, 1, 0, 0, 0, NULL };
    struct context ctx = { { &ctx_vtbl }, 1 };
    SOCKADDR_IN target = addr4(192, 0, 2, 1, 2000), proxy = addr4(0, 0, 0, 0, 0);
    IFWXFirewallAction *action = NULL;
    IFWXConnection *conn = NULL;
    struct anticipation *a;
    (void)state;

    assert_int_equal(IFWXSession_AllowFutureConnect(session_iface(s), (LPSOCKADDR)&target,
                                                    sizeof(target), NULL, 0, FWX_PROTOCOL_TCP, 0,
                                                    &GUID_NULL, &mine.IFWXSessionFilter_iface,
                                                    &ctx.IUnknown_iface, &action), S_OK);
    /* The host keeps both for as long as the action lives. */
    assert_int_equal(mine.ref, 2);
    assert_int_equal(ctx.ref, 2);

    /* A connection object to hand over: EmulateClientBind makes one. */
    assert_int_equal(IFWXSession_EmulateClientBind(session_iface(s), NULL, 0, (LPSOCKADDR)&proxy,
                                                   sizeof(proxy), FWX_PROTOCOL_TCP, &GUID_NULL,
                                                   &conn), S_OK);
    assert_non_null(conn);
    a = anticipate_take_connect(s, &target, sizeof(target));
    assert_non_null(a);
    anticipate_established(a, connection_from_iface(conn));
    anticipate_release(a);
    assert_int_equal(mine.events, 1);
    assert_int_equal(mine.type, fwx_EstablishedConnection);
    assert_true(mine.context == (UserContextType)&ctx.IUnknown_iface);
    assert_true(mine.connection == conn);

    /* Used (one-shot) and released by the filter: the references go back. */
    assert_int_equal(IFWXFirewallAction_Release(action), 0);
    assert_int_equal(mine.ref, 1);
    assert_int_equal(ctx.ref, 1);
    IFWXConnection_Release(conn);
    session_end(s);
    IFWXSession_Release(session_iface(s));
}

static void test_bad_arguments(void **state)
{
    struct session *s = new_session(1000);
    IFWXSession *is = session_iface(s);
    SOCKADDR_IN target = addr4(192, 0, 2, 1, 2000), internal = addr4(10, 0, 0, 1, 0);
    LPSOCKADDR targets[1] = { (LPSOCKADDR)&target };
    IFWXFirewallAction *action = (IFWXFirewallAction *)(ULONG_PTR)1, *actions[1];
    IFWXConnection *conns[2], *conn;
    DWORD len = sizeof(internal);
    (void)state;

    assert_int_equal(IFWXSession_AllowFutureConnect(is, NULL, sizeof(target), NULL, 0,
                                                    FWX_PROTOCOL_TCP, 0, &GUID_NULL, NULL, NULL,
                                                    &action), E_POINTER);
    assert_null(action);
    assert_int_equal(IFWXSession_AllowFutureConnect(is, (LPSOCKADDR)&target, 3, NULL, 0,
                                                    FWX_PROTOCOL_TCP, 0, &GUID_NULL, NULL, NULL,
                                                    &action), E_INVALIDARG);
    assert_int_equal(IFWXSession_AllowFutureConnect(is, (LPSOCKADDR)&target, sizeof(target), NULL,
                                                    0, 99, 0, &GUID_NULL, NULL, NULL, &action),
                     E_INVALIDARG);
    assert_int_equal(IFWXSession_AllowFutureConnect(is, (LPSOCKADDR)&target, sizeof(target), NULL,
                                                    0, FWX_PROTOCOL_UDP, 0, &GUID_NULL, NULL, NULL,
                                                    &action), E_NOTIMPL);
    /* IPPROTO_TCP is read as TCP too (ABI-018); no action asked for is fine. */
    assert_int_equal(IFWXSession_AllowFutureConnect(is, (LPSOCKADDR)&target, sizeof(target), NULL,
                                                    0, 6, 0, &GUID_NULL, NULL, NULL, NULL), S_OK);
    assert_true(allowed(s, target));

    /* The listening actions need the host's worker loops. */
    assert_int_equal(IFWXSession_RedirectConnections(is, targets, sizeof(target), 0,
                                                     (LPSOCKADDR)&internal, &len, NULL, 0,
                                                     FWX_PROTOCOL_TCP, 0, &GUID_NULL, NULL, NULL,
                                                     actions), E_INVALIDARG);
    assert_int_equal(IFWXSession_RedirectConnections(is, targets, sizeof(target), 1,
                                                     (LPSOCKADDR)&internal, &len, NULL, 0,
                                                     FWX_PROTOCOL_TCP, 0, &GUID_NULL, NULL, NULL,
                                                     actions), FWX_E_TERMINATING);
    assert_int_equal(IFWXSession_BindForClient(is, targets, sizeof(target), (LPSOCKADDR)&internal,
                                               sizeof(internal), FWX_PROTOCOL_TCP, 2, 0, 1,
                                               &GUID_NULL, NULL, NULL, NULL, conns), E_INVALIDARG);
    assert_int_equal(IFWXSession_BindForClient(is, targets, sizeof(target), (LPSOCKADDR)&internal,
                                               sizeof(internal), FWX_PROTOCOL_TCP, 1, 0, 1,
                                               &GUID_NULL, NULL, NULL, NULL, conns),
                     FWX_E_TERMINATING);

    /* RetroactiveAllowBind: no bind on the host has that address. */
    assert_int_equal(IFWXSession_RetroactiveAllowBind(is, FWX_PROTOCOL_TCP, (LPSOCKADDR)&target,
                                                      sizeof(target), &GUID_NULL, 0, NULL),
                     HRESULT_FROM_WIN32(WSAEADDRNOTAVAIL));
    assert_int_equal(IFWXSession_RetroactiveAllowBind(is, FWX_PROTOCOL_TCP, (LPSOCKADDR)&internal,
                                                      sizeof(internal), &GUID_NULL, 0, NULL),
                     E_INVALIDARG);    /* port 0 */

    assert_int_equal(IFWXSession_EmulateClientBind(is, NULL, 0, NULL, 0, FWX_PROTOCOL_TCP,
                                                   &GUID_NULL, &conn), E_POINTER);
    assert_int_equal(IFWXSession_EmulateClientBind(is, NULL, 0, (LPSOCKADDR)&internal, 2,
                                                   FWX_PROTOCOL_TCP, &GUID_NULL, &conn),
                     E_INVALIDARG);
    /* SetClientAddress: only BindForClient's connection objects have one to set. */
    assert_int_equal(IFWXSession_EmulateClientBind(is, NULL, 0, (LPSOCKADDR)&internal,
                                                   sizeof(internal), FWX_PROTOCOL_TCP,
                                                   &GUID_NULL, &conn), S_OK);
    assert_int_equal(IFWXConnection_SetClientAddress(conn, (LPSOCKADDR)&target, sizeof(target)),
                     E_INVALIDARG);
    IFWXConnection_Release(conn);
    session_end(s);
    IFWXSession_Release(session_iface(s));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_shot),
        cmocka_unit_test(test_multiple_then_cancel),
        cmocka_unit_test(test_address_based),
        cmocka_unit_test(test_session_end_cancels),
        cmocka_unit_test(test_established_goes_to_the_registering_filter),
        cmocka_unit_test(test_bad_arguments),
    };
    int failed;

    fx_log_init("test_anticipate", FX_LOG_ERROR);
    CoInitializeEx(NULL, COINIT_MULTITHREADED);
#ifdef _WIN64
    failed = cmocka_run_group_tests_name("anticipate-x86_64", tests, NULL, NULL);
#else
    failed = cmocka_run_group_tests_name("anticipate-i386", tests, NULL, NULL);
#endif
    CoUninitialize();
    return failed ? 1 : 0;
}
