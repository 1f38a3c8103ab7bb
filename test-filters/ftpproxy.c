/*
 * ftpproxy.c - a test filter in the spirit of ISA Server's FTP access filter: a data
 * filter on the FTP control channel that makes every data connection go through the
 * host, through its anticipated actions (reference 2.8):
 *
 *   client "PORT h,h,h,h,p,p" / "EPRT |1|ip|port|"  -> IFWXSession::BindForClient on the
 *       host's external address (GetExternalSocketName), the command rewritten to it;
 *   server "227 ... (h,h,h,h,p,p)" / "229 ... (|||port|)" -> IFWXSession::RedirectConnections
 *       to the server's data port, the reply rewritten to the host's client-facing address
 *       (publishing), or IFWXSession::AllowFutureConnect and no rewrite (outbound rules,
 *       where the client reaches the server's own address through the host).
 *
 * Every action is registered with this filter's session filter and a context object;
 * fwx_EstablishedConnection is checked against that context and traced. The actions of a
 * control connection are cancelled when it ends (Detach). The data connections
 * themselves carry no data filter: the host relays them.
 *
 * Settings (environment, read at FilterInit):
 *   FTPPROXY_FLAGS     comma list of timeout, multiple, address, nokernel: the FWX_FLAG_*
 *                      passed with each action (default: none, one-shot)
 *   FTPPROXY_CANCEL    1: cancel each RedirectConnections/AllowFutureConnect action right
 *                      after registering it (tests: the data connection must be refused)
 *
 * Trace lines ("fwx-filter ftpproxy: ...", on stderr with FWX_FILTER_TRACE=1) say what
 * was rewritten, which action was used, and each fwx_EstablishedConnection.
 *
 * The filter's objects, its line splitting and its calls into the host are
 * test-filters/lineproxy.h, shared with the connector filter; this file owns the FTP
 * grammar (lp_client_line, lp_server_line).
 */
#define COBJMACROS
#define CONST_VTABLE
#include "fltbase.h"


/* {2B1F6C0E-7A53-4C1B-9E0A-5D7C3F0A9E21} */
const CLSID fwx_filter_clsid =
    { 0x2b1f6c0e, 0x7a53, 0x4c1b, { 0x9e, 0x0a, 0x5d, 0x7c, 0x3f, 0x0a, 0x9e, 0x21 } };
const char fwx_filter_name[] = "ftpproxy";

/* The protocol the actions are registered for: our own "FTP data" GUID. */
/* {6E0C3D55-1B2A-4F7E-8C61-0D9B7A4E3F12} */
static const GUID lp_protocol =
    { 0x6e0c3d55, 0x1b2a, 0x4f7e, { 0x8c, 0x61, 0x0d, 0x9b, 0x7a, 0x4e, 0x3f, 0x12 } };

#define LP_ENV_PREFIX "FTPPROXY_"
#include "lineproxy.h"

/* ==================================================================== the FTP lines */

static BOOL parse_eprt(const char *p, SOCKADDR_IN *sa)
{
    char d = *p, ip[64];
    unsigned proto, port, v[4];
    const char *q;
    if (!d)
        return FALSE;
    if (sscanf(p + 1, "%u", &proto) != 1 || proto != 1)
        return FALSE;
    if (!(q = strchr(p + 1, d)) || !(q = q + 1))
        return FALSE;
    size_t n = strcspn(q, (char[]){ d, 0 });
    if (n == 0 || n >= sizeof(ip))
        return FALSE;
    memcpy(ip, q, n);
    ip[n] = 0;
    if (q[n] != d || sscanf(q + n + 1, "%u", &port) != 1 || port == 0 || port > 65535)
        return FALSE;
    if (sscanf(ip, "%u.%u.%u.%u", &v[0], &v[1], &v[2], &v[3]) != 4 || v[0] > 255 || v[1] > 255 ||
        v[2] > 255 || v[3] > 255)
        return FALSE;
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    BYTE *b = (BYTE *)&sa->sin_addr;
    b[0] = v[0]; b[1] = v[1]; b[2] = v[2]; b[3] = v[3];
    sa->sin_port = htons((u_short)port);
    return TRUE;
}

/* One complete line (with its end) from the client: written to out, rewritten or not.
 * Returns the bytes written. out has room for len + 128. */

static DWORD lp_client_line(LineProxy *lp, const char *line, DWORD len, char *out)
{
    char cmd[8], text[LINE_MAX_LEN + 1];
    SOCKADDR_IN client, proxy;
    DWORD n = len < LINE_MAX_LEN ? len : LINE_MAX_LEN;

    memcpy(text, line, n);
    text[n] = 0;
    for (int i = 0; i < 5; i++)
        cmd[i] = (char)toupper((unsigned char)text[i]);
    cmd[5] = 0;
    if (len > 5 && memcmp(cmd, "PORT ", 5) == 0 && parse_h6(text + 5, &client)) {
        if (SUCCEEDED(bind_for_client(lp, &client, &proxy))) {
            int k = snprintf(out, 16, "PORT ");
            k += fmt_h6(out + k, 64, &proxy);
            k += snprintf(out + k, 8, "\r\n");
            return (DWORD)k;
        }
    } else if (len > 5 && memcmp(cmd, "EPRT ", 5) == 0 && parse_eprt(text + 5, &client)) {
        if (SUCCEEDED(bind_for_client(lp, &client, &proxy))) {
            const BYTE *b = (const BYTE *)&proxy.sin_addr;
            return (DWORD)snprintf(out, 96, "EPRT |1|%u.%u.%u.%u|%u|\r\n", b[0], b[1], b[2], b[3],
                                   ntohs(proxy.sin_port));
        }
    }
    memcpy(out, line, len);
    return len;
}

/* One complete line from the server. */
static DWORD lp_server_line(LineProxy *lp, const char *line, DWORD len, char *out)
{
    char text[LINE_MAX_LEN + 1];
    SOCKADDR_IN target, shown;
    DWORD n = len < LINE_MAX_LEN ? len : LINE_MAX_LEN;
    const char *open;

    memcpy(text, line, n);
    text[n] = 0;
    if (len > 4 && memcmp(text, "227 ", 4) == 0 && (open = strchr(text, '(')) &&
        parse_h6(open + 1, &target)) {
        if (SUCCEEDED(redirect_for_client(lp, &target, &shown))) {
            int k = (int)(open + 1 - text);
            memcpy(out, text, k);
            k += fmt_h6(out + k, 64, &shown);
            k += snprintf(out + k, 8, ").\r\n");
            return (DWORD)k;
        }
    } else if (len > 4 && memcmp(text, "229 ", 4) == 0 && (open = strstr(text, "(|||")) &&
               lp->server.sin_family == AF_INET) {
        unsigned port;
        if (sscanf(open + 4, "%u", &port) == 1 && port > 0 && port < 65536) {
            target = lp->server;
            target.sin_port = htons((u_short)port);
            if (SUCCEEDED(redirect_for_client(lp, &target, &shown))) {
                int k = (int)(open - text);
                memcpy(out, text, k);
                k += snprintf(out + k, 32, "(|||%u|)\r\n", ntohs(shown.sin_port));
                return (DWORD)k;
            }
        }
    }
    memcpy(out, line, len);
    return len;
}
