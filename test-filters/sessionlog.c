/*
 * sessionlog.c - a passthrough filter that writes down every FWX call it receives, so
 * that tests can check the order in which the host drives a filter. The filter is
 * passthrough.c (the filter kit, fltkit.h) plus an observer of every call the kit
 * receives; this file owns the log.
 *
 * The log The log file is named by the environment variable FWX_SESSIONLOG_FILE (default
 * "sessionlog.txt", relative to the host's working directory), read at FilterInit. It is
 * opened in append mode for each line, so every line is on disk before the call that
 * produced it goes on, and lines from concurrent calls never interleave.
 *
 * Log format: one line per call, LF-terminated, written when the call arrives (before
 * the filter acts on it), in arrival order. IUnknown calls are not logged.
 *   FilterInit
 *   AttachToSession
 *   FirewallEventHandler EVENT     EVENT: fwx_Connect_Tcp, fwx_AcceptedConnection,
 *                                  fwx_ConnectionTerminating, or any other event's
 *                                  fwx_ name; 0xXXXXXXXX for a value we do not know
 *   SetSockets
 *   CompleteAsyncIO OP SIDE RESULT OP: recv or send; SIDE: internal or external, the
 *                                  socket the operation was posted on; RESULT:
 *                                    ok N       recv of N > 0 data bytes
 *                                    eof        recv of 0 bytes (peer half-closed)
 *                                    ok         send
 *                                    error N    fSuccess FALSE, N = Win32 error (decimal)
 *                                    nobuffer   recv reported success without a buffer
 *   DataFilter::Detach
 *   SessionFilter::Detach
 *   FilterShutdown
 * For example, one published connection:
 *   FilterInit / AttachToSession / FirewallEventHandler fwx_AcceptedConnection /
 *   SetSockets / CompleteAsyncIO recv internal ok 18 / CompleteAsyncIO send external ok /
 *   ... / CompleteAsyncIO recv internal eof / ... / FirewallEventHandler
 *   fwx_ConnectionTerminating / DataFilter::Detach / SessionFilter::Detach / FilterShutdown
 *
 * The per-session hook events add fwx_ConnectionTerminating to the global ones, so that
 * the session filter hears about it whatever the host's delivery rule.
 */
#include "fltkit.h"

#include <stdarg.h>
#include <string.h>

/* {6CEF27C7-D56E-46BD-8850-17B6D178E6D0} */
const CLSID fwx_filter_clsid =
    { 0x6cef27c7, 0xd56e, 0x46bd, { 0x88, 0x50, 0x17, 0xb6, 0xd1, 0x78, 0xe6, 0xd0 } };
const char fwx_filter_name[] = "sessionlog";

/* ==================================================================== the log */

/* Shared by every object of the filter: it is the filter's kit context, which the kit
 * keeps while session and data filters may still be detached (and log it) after the
 * filter object is gone. */
typedef struct {
    CRITICAL_SECTION lock;   /* one line at a time; never held while calling the host */
    char            *path;
} SessionLog;

static SessionLog *log_create(void)
{
    SessionLog *log = fwx_alloc(sizeof(*log));

    if (!log)
        return NULL;
    log->path = fwx_getenv("FWX_SESSIONLOG_FILE", "sessionlog.txt");
    if (!log->path) {
        fwx_free(log);
        return NULL;
    }
    InitializeCriticalSection(&log->lock);
    return log;
}

static void log_free(void *context)
{
    SessionLog *log = context;

    DeleteCriticalSection(&log->lock);
    fwx_free(log->path);
    fwx_free(log);
}

static void log_line(SessionLog *log, const char *fmt, ...) __attribute__((format(__MINGW_PRINTF_FORMAT, 2, 3)));

static void log_line(SessionLog *log, const char *fmt, ...)
{
    char line[256];
    va_list args;
    HANDLE file;
    DWORD written;
    int len;

    va_start(args, fmt);
    len = vsnprintf(line, sizeof(line) - 1, fmt, args);
    va_end(args);
    if (len < 0 || len > (int)sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';

    EnterCriticalSection(&log->lock);
    file = CreateFileA(log->path, FILE_APPEND_DATA, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL,
                       OPEN_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
    if (file != INVALID_HANDLE_VALUE) {
        WriteFile(file, line, (DWORD)len, &written, NULL);
        CloseHandle(file);
    }
    LeaveCriticalSection(&log->lock);
    if (file == INVALID_HANDLE_VALUE)
        fwx_trace("cannot open %s: error %lu", log->path, (unsigned long)GetLastError());
}

static const char *event_name(FwxFirewallEventType type)
{
    switch (type) {
    case fwx_Connect_Tcp:           return "fwx_Connect_Tcp";
    case fwx_Udp_Destination:       return "fwx_Udp_Destination";
    case fwx_Bind_Tcp:              return "fwx_Bind_Tcp";
    case fwx_Bind_Udp:              return "fwx_Bind_Udp";
    case fwx_Listen:                return "fwx_Listen";
    case fwx_AcceptedConnection:    return "fwx_AcceptedConnection";
    case fwx_GetHostByName:         return "fwx_GetHostByName";
    case fwx_GetHostByAddr:         return "fwx_GetHostByAddr";
    case fwx_ConnectionTerminating: return "fwx_ConnectionTerminating";
    case fwx_EstablishedConnection: return "fwx_EstablishedConnection";
    }
    return NULL;
}

/* ==================================================================== the filter */

/* FilterInit: the log is the filter's context, so the kit keeps it until the last
 * session and data filter are gone. */
static BOOL sessionlog_init(KitFilter *filter, IFWXFirewall *firewall)
{
    if (!filter->context)
        filter->context = log_create();
    if (!filter->context) {
        fwx_trace("out of memory: filter disabled");
        return FALSE;
    }
    return TRUE;
}

static void log_event(SessionLog *log, const FirewallEvent *event)
{
    const char *name = event_name(event->EventType);

    if (name)
        log_line(log, "FirewallEventHandler %s", name);
    else
        log_line(log, "FirewallEventHandler 0x%08lx", (unsigned long)event->EventType);
}

static const char *const side_name[] = { "internal", "external" };

static void log_completion(SessionLog *log, const KitCall *call)
{
    const char *op = call->send ? "send" : "recv", *side = side_name[call->side];

    if (!call->ok)
        log_line(log, "CompleteAsyncIO %s %s error %lu", op, side, (unsigned long)call->error);
    else if (call->send)
        log_line(log, "CompleteAsyncIO send %s ok", side);
    else if (!call->buffer)
        log_line(log, "CompleteAsyncIO recv %s nobuffer", side);
    else if (call->size == 0)
        log_line(log, "CompleteAsyncIO recv %s eof", side);
    else
        log_line(log, "CompleteAsyncIO recv %s ok %lu", side, (unsigned long)call->size);
}

/* One line per call, on arrival, before the kit acts on it. Only FilterShutdown can
 * come without a log (FilterInit failed). */
static void sessionlog_observe(KitFilter *filter, const KitCall *call)
{
    SessionLog *log = filter->context;

    if (!log)
        return;
    switch (call->type) {
    case KIT_CALL_FILTER_INIT:      log_line(log, "FilterInit"); break;
    case KIT_CALL_ATTACH_TO_SESSION: log_line(log, "AttachToSession"); break;
    case KIT_CALL_EVENT:            log_event(log, call->event); break;
    case KIT_CALL_SET_SOCKETS:      log_line(log, "SetSockets"); break;
    case KIT_CALL_COMPLETION:       log_completion(log, call); break;
    case KIT_CALL_PUMP_DETACH:      log_line(log, "DataFilter::Detach"); break;
    case KIT_CALL_SESSION_DETACH:   log_line(log, "SessionFilter::Detach"); break;
    case KIT_CALL_FILTER_SHUTDOWN:  log_line(log, "FilterShutdown"); break;
    }
}

static const KitClass sessionlog_class = {
    .events = fwx_Connect_Tcp | fwx_AcceptedConnection | FWX_ALL_SOURCES,
    .session_hooks = KIT_HOOKS_COPY,
    .session_events = fwx_ConnectionTerminating,
    .init = sessionlog_init,
    .free_context = log_free,
    .observe = sessionlog_observe,
};

HRESULT fwx_filter_create(REFIID riid, void **ppv)
{
    return kit_filter_create(&sessionlog_class, riid, ppv);
}
