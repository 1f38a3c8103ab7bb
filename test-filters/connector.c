/*
 * connector.c - a test filter in the spirit of the ISA 2000 SDK's ConnectorFilter: a
 * protocol whose control connection announces secondary connections on random ports, in
 * both directions (tests/peers/connpeer.c speaks it):
 *
 *   client "BIND h,h,h,h,p,p N SEED"  the client listens there; the server is to connect
 *       -> RetroactiveAllowBind (fails: no such bind on the host), BindForClient on the
 *          host's external address, RetroactiveAllowBind again on the bound address
 *          (succeeds), and the line rewritten to the bound address;
 *   server "OPEN h,h,h,h,p,p N SEED"  the server listens there; the client is to connect
 *       -> RedirectConnections and the line rewritten (publishing rules), or
 *          AllowFutureConnect and no rewrite (outbound rules).
 *
 * The filter's objects, its line splitting and the actions are test-filters/lineproxy.h,
 * shared with ftpproxy; this file owns the connector grammar. Settings: CONNECTOR_FLAGS
 * and CONNECTOR_CANCEL, as FTPPROXY_* in ftpproxy.c.
 */
#define COBJMACROS
#define CONST_VTABLE
#include "fltbase.h"

/* {8D3A51F2-6C0B-4E7A-B1D4-2F9E0C7A5B36} */
const CLSID fwx_filter_clsid =
    { 0x8d3a51f2, 0x6c0b, 0x4e7a, { 0xb1, 0xd4, 0x2f, 0x9e, 0x0c, 0x7a, 0x5b, 0x36 } };
const char fwx_filter_name[] = "connector";

/* {4F1B2C3D-5E6F-4A7B-8C9D-0E1F2A3B4C5D}: the "connector data" protocol. */
static const GUID lp_protocol =
    { 0x4f1b2c3d, 0x5e6f, 0x4a7b, { 0x8c, 0x9d, 0x0e, 0x1f, 0x2a, 0x3b, 0x4c, 0x5d } };

#define LP_ENV_PREFIX "CONNECTOR_"
#include "lineproxy.h"

/* ==================================================================== the connector lines */

static HRESULT retroactive(LineProxy *lp, const SOCKADDR_IN *addr)
{
    IFWXSession *session;
    IFWXSessionFilter *sf;
    IFWXConnection *conn;
    HRESULT hr;
    char text[32];

    if (!grab(lp, &session, &sf, &conn))
        return FWX_E_TERMINATING;
    hr = IFWXSession_RetroactiveAllowBind(session, FWX_PROTOCOL_TCP, (LPSOCKADDR)addr,
                                          sizeof(*addr), &lp_protocol, 0, NULL);
    fmt_addr(addr, text, sizeof(text));
    fwx_trace("RetroactiveAllowBind %s: 0x%08lx", text, (unsigned long)hr);
    ungrab(session, sf, conn);
    return hr;
}

/* "WORD h,h,h,h,p,p REST": the address and where REST starts, or FALSE. */
static BOOL parse_line(const char *text, const char *word, SOCKADDR_IN *sa, const char **rest)
{
    size_t n = strlen(word);
    const char *p;
    if (strncmp(text, word, n) != 0 || text[n] != ' ' || !parse_h6(text + n + 1, sa))
        return FALSE;
    p = strchr(text + n + 1, ' ');
    *rest = p ? p : text + strcspn(text, "\r\n");
    return TRUE;
}

static DWORD rewrite(const char *word, const SOCKADDR_IN *sa, const char *rest, char *out)
{
    int k = snprintf(out, 16, "%s ", word);
    k += fmt_h6(out + k, 64, sa);
    size_t r = strlen(rest);
    memcpy(out + k, rest, r);
    return (DWORD)(k + r);
}

static DWORD lp_client_line(LineProxy *lp, const char *line, DWORD len, char *out)
{
    char text[LINE_MAX_LEN + 1];
    SOCKADDR_IN client, proxy;
    const char *rest;
    DWORD n = len < LINE_MAX_LEN ? len : LINE_MAX_LEN;

    memcpy(text, line, n);
    text[n] = 0;
    if (parse_line(text, "BIND", &client, &rest)) {
        SOCKADDR_IN any = client;
        any.sin_addr.s_addr = INADDR_ANY;
        /* As the SDK sample: approve a Firewall client's own bind if there is one; there
         * never is for SecureNAT clients, so bind for the client. */
        retroactive(lp, &any);
        if (SUCCEEDED(bind_for_client(lp, &client, &proxy))) {
            retroactive(lp, &proxy);
            return rewrite("BIND", &proxy, rest, out);
        }
    }
    memcpy(out, line, len);
    return len;
}

static DWORD lp_server_line(LineProxy *lp, const char *line, DWORD len, char *out)
{
    char text[LINE_MAX_LEN + 1];
    SOCKADDR_IN target, shown;
    const char *rest;
    DWORD n = len < LINE_MAX_LEN ? len : LINE_MAX_LEN;

    memcpy(text, line, n);
    text[n] = 0;
    if (parse_line(text, "OPEN", &target, &rest) &&
        SUCCEEDED(redirect_for_client(lp, &target, &shown)))
        return rewrite("OPEN", &shown, rest, out);
    memcpy(out, line, len);
    return len;
}
