/*
 * splitter.c - a test filter in the spirit of the ISA 2000 SDK's ServerSplit sample: one
 * public port shared by several internal servers, through inbound emulation (reference
 * 2.9, HOST-1001). On a publishing rule's fwx_AcceptedConnection it makes its data filter
 * the connection's emulator (IFWXConnection::EmulateConnection), so the host never
 * connects to the rule's target. The data filter reads the client's first line,
 *
 *     HOST name\r\n   (or \n; at most 255 bytes)
 *
 * looks NAME up in its routes, connects an IFWXNetworkSocket (IFWXFirewall::
 * CreateNetworkSocket) to that server, sends it everything the client sent so far, the
 * line included, and from then on pumps bytes both ways between the client and that
 * socket (the kit's pump, fltkit.h, with the network socket as its external side). A
 * first line that is not a HOST line, or names no route, resets the client's connection;
 * nothing reaches any server.
 *
 *   SPLITTER_ROUTES   "name=a.b.c.d:port,name2=a.b.c.d:port"; read at FilterInit
 *
 * Traces ("fwx-filter splitter: ...", stderr with FWX_FILTER_TRACE=1): the routes loaded,
 * "route NAME -> ADDR" per connection, "unknown HOST 'NAME': refused", and failures.
 * tests/splitter.sh reads them.
 *
 * This file owns the routes and the first-line state of each connection; the objects are
 * the filter kit's.
 */
#include "fltkit.h"

#include <stdlib.h>
#include <string.h>

/* {6A2F8C41-0D37-4B95-A1E6-7C3B9D2E5F18} */
const CLSID fwx_filter_clsid =
    { 0x6a2f8c41, 0x0d37, 0x4b95, { 0xa1, 0xe6, 0x7c, 0x3b, 0x9d, 0x2e, 0x5f, 0x18 } };
const char fwx_filter_name[] = "splitter";

#define MAX_ROUTES 16
#define LINE_MAX 256

struct route {
    char name[64];
    SOCKADDR_IN addr;
};

/* Set by FilterInit before any traffic and only read afterwards. */
static struct route routes[MAX_ROUTES];
static int nroutes;

/* ==================================================================== the routes */

/* "a.b.c.d:port" into a Win32 IPv4 address (network order inside). */
static BOOL parse_addr(const char *text, size_t len, SOCKADDR_IN *sa)
{
    unsigned long part[5];
    const char *p = text, *end = text + len;
    char *stop;

    for (int i = 0; i < 5; i++) {
        if (p >= end || *p < '0' || *p > '9')
            return FALSE;
        part[i] = strtoul(p, &stop, 10);
        if (stop > end || part[i] > (i < 4 ? 255ul : 65535ul) || (i == 4 && part[i] == 0))
            return FALSE;
        p = stop;
        if (i < 3 ? *p != '.' : i == 3 ? *p != ':' : p != end)
            return FALSE;
        p++;
    }
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((u_short)part[4]);
    sa->sin_addr.s_addr = htonl((part[0] << 24) | (part[1] << 16) | (part[2] << 8) | part[3]);
    return TRUE;
}

static void format_addr(const SOCKADDR_IN *sa, char *out, size_t len)
{
    unsigned long a = ntohl(sa->sin_addr.s_addr);
    snprintf(out, len, "%lu.%lu.%lu.%lu:%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255,
             ntohs(sa->sin_port));
}

/* Entries that do not parse are skipped with a trace: FilterInit cannot report them. */
static BOOL load_routes(KitFilter *filter, IFWXFirewall *firewall)
{
    char *list = fwx_getenv("SPLITTER_ROUTES", "");
    char *item, *next;

    nroutes = 0;
    for (item = list; item && *item; item = next) {
        char *eq, *stop;
        next = item + strcspn(item, ",");
        stop = next;
        if (*next == ',')
            next++;
        eq = memchr(item, '=', (size_t)(stop - item));
        if (!eq || eq == item || eq - item >= (ptrdiff_t)sizeof(routes[0].name) ||
            nroutes == MAX_ROUTES ||
            !parse_addr(eq + 1, (size_t)(stop - eq - 1), &routes[nroutes].addr)) {
            fwx_trace("SPLITTER_ROUTES: ignoring \"%.*s\"", (int)(stop - item), item);
            continue;
        }
        memcpy(routes[nroutes].name, item, (size_t)(eq - item));
        routes[nroutes].name[eq - item] = '\0';
        nroutes++;
    }
    fwx_free(list);
    fwx_trace("%d route(s)", nroutes);
    return TRUE;
}

static const struct route *find_route(const char *name)
{
    for (int i = 0; i < nroutes; i++)
        if (!strcmp(routes[i].name, name))
            return &routes[i];
    return NULL;
}

/* ==================================================================== the session filter */

static HRESULT splitter_event(KitSession *session, const FirewallEvent *event)
{
    if (event->EventType != fwx_AcceptedConnection)
        return S_OK;
    /* Refused by the host if this fails: an emulated-nothing connection cannot go on. */
    return kit_session_emulate_pump(session, event->Parameters.Accept.piConnectionAccepted);
}

/* ==================================================================== the data filter */

struct split_state {
    BOOL routed;           /* the external side exists; from now on, plain pumping */
    DWORD have;
    char head[LINE_MAX];   /* what the client sent before its first line ended */
};

static HRESULT split_pump_create(KitPump *pump)
{
    return (pump->state = fwx_alloc(sizeof(struct split_state))) ? S_OK : E_OUTOFMEMORY;
}

static void split_pump_destroy(KitPump *pump)
{
    fwx_free(pump->state);
    pump->state = NULL;
}

static IFWXFirewall *pump_firewall(KitPump *pump)
{
    IFWXFirewall *firewall;
    EnterCriticalSection(&pump->lock);
    firewall = pump->firewall;
    if (firewall)
        IFWXFirewall_AddRef(firewall);
    LeaveCriticalSection(&pump->lock);
    return firewall;
}

/* The first line is complete in st->head (st->have bytes, its end included): connect to
 * its server and hand the pump the socket. *out is what to send it first: the PREV bytes
 * of head read before this buffer, then all LEN bytes of DATA. */
static KitVerdict route(KitPump *pump, struct split_state *st, DWORD prev, const BYTE *data,
                        DWORD len, IFWXIOBuffer **out)
{
    char name[LINE_MAX];
    const struct route *r;
    IFWXFirewall *firewall = NULL;
    IFWXNetworkSocket *ns = NULL;
    IFWXIOBuffer *buf = NULL;
    DWORD n = st->have, written;
    char text[32];
    HRESULT hr;

    while (n && (st->head[n - 1] == '\n' || st->head[n - 1] == '\r'))
        n--;
    if (n <= 5 || memcmp(st->head, "HOST ", 5) != 0) {
        fwx_trace("first line is not \"HOST name\": refused");
        return KIT_ABORT;
    }
    memcpy(name, st->head + 5, n - 5);
    name[n - 5] = '\0';
    if (!(r = find_route(name))) {
        fwx_trace("unknown HOST '%s': refused", name);
        return KIT_ABORT;
    }
    format_addr(&r->addr, text, sizeof(text));
    /* The host queues what we post until the connect is done (HOST-007). */
    hr = (firewall = pump_firewall(pump)) ? S_OK : FWX_E_TERMINATING;
    if (FAILED(hr) ||
        FAILED(hr = IFWXFirewall_CreateNetworkSocket(firewall, FWX_PROTOCOL_TCP, &ns)) ||
        FAILED(hr = IFWXNetworkSocket_Connect(ns, (LPSOCKADDR)&r->addr, sizeof(r->addr))) ||
        FAILED(hr = kit_pump_create_buffer(pump, prev + len, &buf)) ||
        (prev && FAILED(hr = IFWXIOBuffer_Append(buf, st->head, prev, &written))) ||
        FAILED(hr = IFWXIOBuffer_Append(buf, data, len, &written)) ||
        FAILED(hr = kit_pump_set_external(pump, (IFWXSocket *)ns))) {
        fwx_trace("route %s -> %s failed: 0x%08lx", name, text, (unsigned long)hr);
        if (buf)
            IFWXIOBuffer_Release(buf);
        if (ns) {
            IFWXNetworkSocket_Close(ns, TRUE);
            IFWXNetworkSocket_Release(ns);
        }
        if (firewall)
            IFWXFirewall_Release(firewall);
        return KIT_ABORT;
    }
    IFWXNetworkSocket_Release(ns);     /* the pump holds it now */
    IFWXFirewall_Release(firewall);
    st->routed = TRUE;
    fwx_trace("route %s -> %s", name, text);
    *out = buf;
    return KIT_SEND;
}

static KitVerdict split_data(KitPump *pump, enum kit_side from, IFWXIOBuffer *buffer, DWORD size,
                             IFWXIOBuffer **out)
{
    struct split_state *st = pump->state;
    BYTE *data = NULL, *nl;
    DWORD len = 0, prev = st->have, take;

    if (st->routed || from != KIT_INTERNAL)
        return KIT_PASS;
    if (FAILED(IFWXIOBuffer_GetBufferAndSize(buffer, &data, &len)) || !data)
        return KIT_ABORT;
    nl = memchr(data, '\n', len);
    take = nl ? (DWORD)(nl - data + 1) : len;
    if (take > sizeof(st->head) - st->have) {
        fwx_trace("no first line within %u bytes: refused", (unsigned)sizeof(st->head));
        return KIT_ABORT;
    }
    memcpy(st->head + st->have, data, take);
    st->have += take;
    if (!nl)
        return KIT_HOLD;     /* read on */
    return route(pump, st, prev, data, len, out);
}

static KitVerdict split_eof(KitPump *pump, enum kit_side from, IFWXIOBuffer **out)
{
    struct split_state *st = pump->state;
    if (!st->routed) {
        fwx_trace("client ended before its first line: refused");
        return KIT_ABORT;
    }
    return KIT_PASS;
}

static const KitClass splitter_class = {
    .events = fwx_AcceptedConnection | FWX_ALL_SOURCES,
    .session_hooks = KIT_HOOKS_GLOBAL,
    .init = load_routes,
    .event = splitter_event,
    .pump_create = split_pump_create,
    .pump_destroy = split_pump_destroy,
    .data = split_data,
    .eof = split_eof,
    .emulator = TRUE,
};

HRESULT fwx_filter_create(REFIID riid, void **ppv)
{
    return kit_filter_create(&splitter_class, riid, ppv);
}
