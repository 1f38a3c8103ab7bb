/*
 * dnsguard.c - a UDP test filter: a DNS query guard in the spirit of ISA's DNS intrusion
 * detection filter. For every new UDP destination (fwx_Udp_Destination) it attaches a data
 * filter bound to that destination (AttachDataFilterWithDestination). The data filter
 * reads each datagram from the client side, parses it as a DNS query and either passes it
 * on unchanged or drops it (completes the Recv without sending, and reads the next one):
 *
 *   short       fewer than the 12 header bytes
 *   response    the QR bit is set: a client sends queries, not answers
 *   qdcount     not exactly one question
 *   records     answer, authority or additional records in a query other than one OPT
 *               record in the additional section (EDNS, as dig sends)
 *   label       a label longer than 63 bytes, a compression pointer, or a label
 *               running past the end of the datagram
 *   name-too-long  a question name longer than FWX_DNSGUARD_MAXNAME bytes (text form)
 *   truncated   the question's type and class do not fit
 *
 * Datagrams from the server side (the answers) pass unchanged. Each drop appends one line
 * to the log file:  "drop REASON len=N"  and a line is traced as well. With
 * FWX_DNSGUARD_EXTADDR=1 every completed Recv also logs the ExternalAddress the host
 * passed:  "recv internal|external ext=IP:PORT"  or  "... ext=NULL".
 *
 * With FWX_DNSGUARD_TCP=1 it also attaches the same data filter, without the query
 * checks, to accepted TCP connections (fwx_AcceptedConnection), so that a test can see
 * the ExternalAddress of TCP receives, which must be NULL.
 *
 * It also hooks fwx_Bind_Udp and logs "bind ADDR attach=HRESULT": the bound address and
 * what an AttachDataFilter in that event returned. With FWX_DNSGUARD_DENY=1 it denies
 * every destination (IFWXUdpDestination::Deny) and logs "deny HRESULT" instead of
 * attaching a data filter.
 *
 * Environment: FWX_DNSGUARD_LOG (default dnsguard.txt), FWX_DNSGUARD_MAXNAME (default
 * 253), FWX_DNSGUARD_EXTADDR, FWX_DNSGUARD_TCP, FWX_DNSGUARD_DENY (default unset).
 *
 * The pump: each direction has one Recv in flight; a passed datagram is sent (SendTo with
 * the ExternalAddress it came with; Send for TCP) out of the
 * other socket and the next Recv is posted when the Send completes; a dropped one posts
 * the next Recv at once. Datagram boundaries are the host's: one Recv, one datagram.
 * That pump is the filter kit's (fltkit.h) in datagram mode (KitPump.datagrams); the TCP
 * one is the kit's ordinary pump. This file owns the settings, the checks and the log.
 */
#include "fltkit.h"

/* {3E9A7C21-6D4B-4F0E-A2C8-5B1D9E7F4A63} */
const CLSID fwx_filter_clsid =
    { 0x3e9a7c21, 0x6d4b, 0x4f0e, { 0xa2, 0xc8, 0x5b, 0x1d, 0x9e, 0x7f, 0x4a, 0x63 } };
const char fwx_filter_name[] = "dnsguard";

#define DNSGUARD_EVENTS (fwx_Udp_Destination | fwx_Bind_Udp | FWX_ALL_SOURCES)

static CRITICAL_SECTION log_lock;
static char *log_path;
static unsigned max_name = 253;
static BOOL log_extaddr;
static BOOL hook_tcp;
static BOOL deny_all;

static void log_line(const char *fmt, ...) __attribute__((format(__MINGW_PRINTF_FORMAT, 1, 2)));
static void log_line(const char *fmt, ...)
{
    char line[256];
    va_list ap;
    HANDLE file;
    DWORD written;
    int len;

    va_start(ap, fmt);
    len = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (len < 0 || len > (int)sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    if (!log_path)
        return;
    /* One appending write per line: several instances (two copies of this DLL in one
     * chain) may share the file. */
    EnterCriticalSection(&log_lock);
    file = CreateFileA(log_path, FILE_APPEND_DATA, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL,
                       OPEN_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
    if (file != INVALID_HANDLE_VALUE) {
        WriteFile(file, line, (DWORD)len, &written, NULL);
        CloseHandle(file);
    }
    LeaveCriticalSection(&log_lock);
}

/* ==================================================================== DNS */

static unsigned get16(const BYTE *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

/* NULL if the query may pass, else the reason to drop it. */
static const char *check_query(const BYTE *p, DWORD len)
{
    DWORD off = 12, name_len = 0;
    unsigned qd, an, ns, ar;

    if (len < 12)
        return "short";
    if (p[2] & 0x80)
        return "response";
    qd = get16(p + 4);
    an = get16(p + 6);
    ns = get16(p + 8);
    ar = get16(p + 10);
    if (qd != 1)
        return "qdcount";
    if (an || ns || ar > 1)
        return "records";
    for (;;) {
        if (off >= len)
            return "label";
        BYTE l = p[off++];
        if (l == 0)
            break;
        if (l & 0xc0)
            return "label";       /* compression pointer or reserved label type */
        if (off + l > len)
            return "label";
        /* Text form: labels plus the dots between them. */
        name_len += l + (name_len ? 1 : 0);
        if (name_len > max_name)
            return "name-too-long";
        off += l;
    }
    if (off + 4 > len)
        return "truncated";
    return NULL;
}

static void format_addr(const SOCKADDR *sa, INT len, char *buf, size_t size)
{
    if (!sa) {
        snprintf(buf, size, "NULL");
    } else if (sa->sa_family == AF_INET && len >= (INT)sizeof(SOCKADDR_IN)) {
        const SOCKADDR_IN *in = (const SOCKADDR_IN *)sa;
        const BYTE *a = (const BYTE *)&in->sin_addr;
        snprintf(buf, size, "%u.%u.%u.%u:%u", a[0], a[1], a[2], a[3], ntohs(in->sin_port));
    } else {
        snprintf(buf, size, "family%u/len%d", (unsigned)sa->sa_family, len);
    }
}

/* ==================================================================== the filter */

static BOOL dnsguard_init(KitFilter *filter, IFWXFirewall *firewall)
{
    char *v;

    InitializeCriticalSection(&log_lock);
    log_path = fwx_getenv("FWX_DNSGUARD_LOG", "dnsguard.txt");
    if ((v = fwx_getenv("FWX_DNSGUARD_MAXNAME", "253"))) {
        int n = atoi(v);
        if (n > 0 && n <= 255)
            max_name = (unsigned)n;
        fwx_free(v);
    }
    if ((v = fwx_getenv("FWX_DNSGUARD_EXTADDR", ""))) {
        log_extaddr = v[0] == '1';
        fwx_free(v);
    }
    if ((v = fwx_getenv("FWX_DNSGUARD_DENY", ""))) {
        deny_all = v[0] == '1';
        fwx_free(v);
    }
    if ((v = fwx_getenv("FWX_DNSGUARD_TCP", ""))) {
        hook_tcp = v[0] == '1';
        fwx_free(v);
    }
    if (hook_tcp)
        filter->hooks.dwGlobalEvents |= fwx_AcceptedConnection;
    log_line("init maxname=%u", max_name);
    return TRUE;
}

/* ==================================================================== the session filter */

/* A new pump for CONNECTION (a datagram one unless TCP), attached with DEST when given. */
static HRESULT attach_guard(KitSession *sf, IFWXConnection *connection, BOOL tcp,
                            const FwxUdpDestination *dest, HRESULT *attached)
{
    IFWXDataFilter *df;
    HRESULT hr;

    if (FAILED(hr = kit_session_create_pump(sf, &df)))
        return hr;
    KIT_PUMP(df)->datagrams = !tcp;
    if (dest)
        *attached = IFWXConnection_AttachDataFilterWithDestination(connection, df, fwx_dfpc_Middle,
                                                                   NULL, dest->Address,
                                                                   (INT)dest->AddressLength);
    else
        *attached = IFWXConnection_AttachDataFilter(connection, df, fwx_dfpc_Middle, NULL);
    IFWXDataFilter_Release(df);
    return S_OK;
}

/* A new destination: a guard bound to it, which goes when the destination expires. */
static HRESULT dnsguard_event(KitSession *sf, const FirewallEvent *event)
{
    const FwxUdpDestination *d = &event->Parameters.UdpDest;
    HRESULT hr, attached;

    if (event->EventType == fwx_AcceptedConnection && event->Parameters.Accept.piConnectionAccepted)
        return attach_guard(sf, event->Parameters.Accept.piConnectionAccepted, TRUE, NULL, &attached);
    if (event->EventType == fwx_Bind_Udp && event->Parameters.Bind.piConnection) {
        char text[64];
        if (FAILED(hr = attach_guard(sf, event->Parameters.Bind.piConnection, FALSE, NULL, &attached)))
            return hr;
        format_addr(event->Parameters.Bind.Address, (INT)event->Parameters.Bind.AddressLength,
                    text, sizeof(text));
        log_line("bind %s attach=0x%08lx", text, (unsigned long)attached);
        return S_OK;
    }
    if (event->EventType != fwx_Udp_Destination || !d->piConnection)
        return S_OK;
    if (deny_all) {
        hr = d->piUdpDestination ? IFWXUdpDestination_Deny(d->piUdpDestination, 0) : E_POINTER;
        log_line("deny 0x%08lx", (unsigned long)hr);
        return S_OK;
    }
    if (FAILED(hr = attach_guard(sf, d->piConnection, FALSE, d, &attached)))
        return hr;
    if (FAILED(attached)) {
        fwx_trace("AttachDataFilterWithDestination failed: 0x%08lx", (unsigned long)attached);
        log_line("attach failed 0x%08lx", (unsigned long)attached);
    }
    return S_OK;
}

/* ==================================================================== the pump's callbacks */

static void dnsguard_received(KitPump *pump, enum kit_side from, const SOCKADDR *ext, INT ext_len)
{
    char text[64];

    if (!log_extaddr)
        return;
    format_addr(ext, ext_len, text, sizeof(text));
    log_line("recv %s ext=%s", from == KIT_INTERNAL ? "internal" : "external", text);
}

/* A query from the client that fails a check is dropped: the Recv completes without a
 * send and the next one is posted. Answers, and TCP, pass. */
static KitVerdict dnsguard_data(KitPump *pump, enum kit_side from, IFWXIOBuffer *buffer, DWORD size,
                                IFWXIOBuffer **out)
{
    BYTE *data = NULL;
    DWORD len = 0;
    const char *why;

    if (!pump->datagrams || from != KIT_INTERNAL)
        return KIT_PASS;
    if (FAILED(IFWXIOBuffer_GetBufferAndSize(buffer, &data, &len)))
        return KIT_HOLD;
    if ((why = check_query(data, len))) {
        fwx_trace("dropped a query: %s", why);
        log_line("drop %s len=%lu", why, (unsigned long)len);
        return KIT_HOLD;
    }
    return KIT_PASS;
}

static const KitClass dnsguard_class = {
    .events = DNSGUARD_EVENTS,
    .session_hooks = KIT_HOOKS_GLOBAL,
    .init = dnsguard_init,
    .event = dnsguard_event,
    .data = dnsguard_data,
    .received = dnsguard_received,
};

HRESULT fwx_filter_create(REFIID riid, void **ppv)
{
    return kit_filter_create(&dnsguard_class, riid, ppv);
}
