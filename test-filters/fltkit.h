/*
 * fltkit.h - the filter kit our C test filters are built on: one generic implementation
 * of each FWX object a filter writes, driven by a table of callbacks (KitClass) that
 * says only what is particular to the filter. fltkit.c owns the objects:
 *   KitFilter   IFWXFilter         FilterInit, FilterShutdown, AttachToSession
 *   KitSession  IFWXSessionFilter  FirewallEventHandler, Detach
 *   KitPump     IFWXDataFilter +   the bidirectional data pump (passthrough.c's):
 *               IFWXIOCompletion   Recv(NULL) on one side, Send on the other, the next
 *                                  Recv on the Send's completion; a 0-byte Recv is
 *                                  passed on as Shutdown(FALSE), a failure as Close(TRUE)
 * fltbase.c still owns the DLL plumbing; a filter source defines fwx_filter_clsid,
 * fwx_filter_name, a static const KitClass and
 *     HRESULT fwx_filter_create(REFIID riid, void **ppv)
 *     { return kit_filter_create(&my_class, riid, ppv); }
 * A filter with no callbacks at all is passthrough.c.
 *
 * Lifetimes: the host may detach session and data filters after FilterShutdown and
 * after its last Release of the filter, so KitSession and KitPump keep the KitFilter
 * struct (its class and context, not its COM identity) alive with an internal hold.
 * Each object holds the host objects it was given until its Detach (the filter: until
 * FilterShutdown), and then releases them; every host call is made with no kit lock held.
 *
 * The fault filters (crasher, hanger, leaker, garbage, trapper) are kit filters too: their
 * misbehaviour goes through the answer hook and keep_at_detach, and faultkit.h holds what
 * they share beyond the kit.
 *
 * C only: the C++ filters (cxxpass.cpp, atlstyle.cpp) keep their own classes, on
 * purpose (cxxkit.h). The example kit for outside authors (examples/filter-kit/) stays
 * standalone.
 */
#ifndef FWX_FLTKIT_H
#define FWX_FLTKIT_H

/* A filter source includes only this header: C macros for the interfaces' methods
 * (IFWXSocket_Recv(s, ...)), const vtables. */
#ifndef COBJMACROS
#define COBJMACROS
#endif
#ifndef CONST_VTABLE
#define CONST_VTABLE
#endif
#include "fltbase.h"

typedef struct KitFilter KitFilter;
typedef struct KitSession KitSession;
typedef struct KitPump KitPump;
typedef struct KitClass KitClass;

/* The internal socket faces the client (or the previous filter of the chain), the
 * external one the server (or the next filter). */
enum kit_side { KIT_INTERNAL = 0, KIT_EXTERNAL = 1 };
#define KIT_OTHER(s) ((enum kit_side)(1 - (s)))

/* What the pump does with a buffer received from one side (KitClass.data), or with the
 * end of that side's stream (KitClass.eof). */
typedef enum {
    KIT_PASS,    /* data: send the received buffer on; eof: Shutdown(FALSE) the other side */
    KIT_SEND,    /* send *out instead (the kit releases it); after eof the half-close
                    follows once *out has gone */
    KIT_HOLD,    /* data: send nothing and read on from the same side; eof: do not pass
                    the half-close on */
    KIT_ABORT,   /* Close(TRUE) both sides: the connection cannot go on correctly */
    KIT_REPLY,   /* data: send *out back to FROM (the kit releases it), then read on from
                    FROM; eof: send *out back if there is one, then Shutdown(FALSE) FROM
                    (an emulator answering its client) */
} KitVerdict;

/* The FWX calls the kit receives, as told to KitClass.observe. */
typedef enum {
    KIT_CALL_FILTER_INIT,         /* reported once KitClass.init has succeeded */
    KIT_CALL_ATTACH_TO_SESSION,
    KIT_CALL_EVENT,               /* FirewallEventHandler: event */
    KIT_CALL_SET_SOCKETS,
    KIT_CALL_COMPLETION,          /* CompleteAsyncIO: send, side, ok, error, buffer, size */
    KIT_CALL_PUMP_DETACH,         /* IFWXDataFilter::Detach */
    KIT_CALL_SESSION_DETACH,      /* IFWXSessionFilter::Detach */
    KIT_CALL_FILTER_SHUTDOWN,
} KitCallType;

typedef struct {
    KitCallType          type;
    const FirewallEvent *event;    /* KIT_CALL_EVENT */
    /* KIT_CALL_COMPLETION: */
    BOOL                 send;     /* a Send completed, else a Recv */
    enum kit_side        side;     /* the socket the operation was posted on */
    BOOL                 ok;       /* fSuccess */
    DWORD                error;    /* Win32ErrorCode, when !ok */
    BOOL                 buffer;   /* recv, ok: a buffer came whose size could be read */
    DWORD                size;     /* recv, ok, buffer: its size (0: the peer half-closed) */
} KitCall;

/* What the kit is about to answer the host, as told to KitClass.answer. */
typedef struct {
    KitCallType            type;     /* KIT_CALL_FILTER_INIT, _ATTACH_TO_SESSION, _SET_SOCKETS
                                        or _COMPLETION */
    HRESULT                hr;       /* the kit's answer */
    PFwxFilterHookEvents  *hooks;    /* FILTER_INIT, ATTACH_TO_SESSION: the hook-event
                                        out-parameter (the ISA 2000 layout) */
    IFWXSessionFilter    **session_filter;  /* ATTACH_TO_SESSION: the out-parameter */
    KitPump               *pump;     /* SET_SOCKETS, COMPLETION */
} KitAnswer;

/* How AttachToSession answers the per-session hook events. */
typedef enum {
    KIT_HOOKS_COPY,        /* a CoTaskMemAlloc copy of the global ones | session_events */
    KIT_HOOKS_DUPLICATE,   /* IFWXFirewall::DuplicateFilterHookEvents of the global ones */
    KIT_HOOKS_GLOBAL,      /* NULL: the host uses the global ones */
} KitSessionHooks;

/* Everything optional is NULL (or 0) when the filter needs nothing there. */
struct KitClass {
    /* ---- IFWXFilter */
    DWORD events;                  /* the global hook events (dwGlobalEvents) */
    KitSessionHooks session_hooks;
    DWORD session_events;          /* KIT_HOOKS_COPY: events added for each session */
    /* FilterInit, first: read the settings, set filter->context, may change
     * filter->hooks. FALSE disables the filter: FilterInit answers S_OK with no hook
     * events (the SDK asks for S_OK) and keeps no firewall; init traces why. */
    BOOL (*init)(KitFilter *filter, IFWXFirewall *firewall);
    void (*shutdown)(KitFilter *filter);   /* FilterShutdown, before the firewall goes */
    void (*free_context)(void *context);  /* when the last kit object is gone */
    /* Every call the kit receives, on arrival (IUnknown calls excepted). With an observer
     * the kit does not trace failed completions itself. */
    void (*observe)(KitFilter *filter, const KitCall *call);

    /* ---- IFWXSessionFilter */
    /* fwx_Connect_Tcp, fwx_AcceptedConnection and any other event hooked. NULL:
     * kit_session_default_event (a pump on every TCP connection). */
    HRESULT (*event)(KitSession *session, const FirewallEvent *event);

    /* ---- IFWXDataFilter: the pump */
    HRESULT (*pump_create)(KitPump *pump);   /* set pump->state; a failure refuses the pump */
    void (*pump_destroy)(KitPump *pump);     /* free pump->state */
    /* A buffer of SIZE > 0 bytes from FROM. NULL: KIT_PASS. Runs on a host thread with
     * no lock held; one call per direction at a time, the two directions concurrently. */
    KitVerdict (*data)(KitPump *pump, enum kit_side from, IFWXIOBuffer *buffer, DWORD size,
                       IFWXIOBuffer **out);
    /* FROM half-closed. NULL: KIT_PASS. */
    KitVerdict (*eof)(KitPump *pump, enum kit_side from, IFWXIOBuffer **out);
    /* The pump is an emulator (kit_session_emulate_pump): SetSockets may give it no
     * external socket; it reads the internal side only until the class hands it one
     * with kit_pump_set_external. Until then a KIT_PASS or KIT_SEND from the internal
     * side has nowhere to go: the class answers KIT_HOLD or KIT_ABORT. */
    BOOL emulator;

    /* ---- added callbacks (appended; NULL when unused) */
    /* IFWXDataFilter::SetSockets, on arrival, before the kit checks the sockets: what the
     * class does with the connection first (emulator: SetSocketName). */
    void (*set_sockets)(KitPump *pump, IFWXSocket *internal, IFWXSocket *external,
                        IFWXConnection *connection);
    /* IFWXDataFilter::Detach, before the kit drops its references: what the class holds
     * for the connection goes (lineproxy: its anticipated actions are cancelled). */
    void (*pump_detach)(KitPump *pump);
    /* Every Recv that completed successfully, before the kit looks at the buffer, with
     * the ExternalAddress the host passed (NULL for TCP): dnsguard's log. */
    void (*received)(KitPump *pump, enum kit_side from, const SOCKADDR *ext, INT ext_len);
    /* The fault filters (faultkit.h): FilterInit, AttachToSession, SetSockets and
     * CompleteAsyncIO, on every path, once the kit's work is done (the session filter
     * made, the pump started), hand the kit's answer here; the class returns the one the
     * host gets, and may replace the out-parameters (garbage), or fault and never return
     * (crasher, trapper). */
    HRESULT (*answer)(KitFilter *filter, const KitAnswer *answer);
    /* IFWXDataFilter::Detach keeps the sockets, connection and firewall it should release
     * (they go at the last Release): a leak the host must survive (leaker). */
    BOOL keep_at_detach;
};

struct KitFilter {
    IFWXFilter          IFWXFilter_iface;
    LONG                refs;       /* COM references */
    LONG                holds;      /* this struct: 1 while COM refs remain, + 1 per kit object */
    const KitClass     *cls;
    IFWXFirewall       *firewall;   /* from FilterInit until FilterShutdown */
    FwxFilterHookEvents hooks;      /* FilterInit hands the host this member's address */
    void               *context;    /* the filter's own, for all its objects */
};

struct KitSession {
    IFWXSessionFilter IFWXSessionFilter_iface;
    LONG              refs;
    KitFilter        *filter;     /* held */
    CRITICAL_SECTION  lock;       /* events race Detach */
    IFWXSession      *session;    /* until Detach */
    IFWXFirewall     *firewall;   /* until Detach */
    LONG              counter;    /* the class's own (lineproxy: established connections) */
};

struct KitPump {
    IFWXDataFilter   IFWXDataFilter_iface;
    IFWXIOCompletion IFWXIOCompletion_iface;
    LONG             refs;
    KitFilter       *filter;       /* held */
    CRITICAL_SECTION lock;         /* guards the fields up to connection: Detach races completions */
    BOOL             detached;
    IFWXSocket      *sockets[2];   /* by enum kit_side; from SetSockets until Detach */
    IFWXFirewall    *firewall;     /* for kit_pump_create_buffer; until Detach */
    IFWXConnection  *connection;
    BOOL             flushing[2];  /* by the side read from: its eof's KIT_SEND is in flight */
    BOOL             own_external; /* set by kit_pump_set_external: closed at Detach */
    void            *state;        /* the filter's own, per connection */
    /* Appended. Datagram mode, set by the class before the pump is attached (UDP): each
     * Recv is one datagram, 0 bytes included, given to KitClass.data (never eof); a
     * passed or sent datagram goes out with SendTo and the ExternalAddress it came with
     * (Send when that is NULL). Failures end nothing: a failed Recv or completion is
     * traced and that direction stops, a failed Send is traced and the datagram lost. */
    BOOL             datagrams;
    /* Appended: the class's own, as KitSession.counter (the fault filters: data buffers
     * seen, the connection's number, a mark the client set). */
    LONG             counter;
    LONG             flags;
};

/* The filter object, for fwx_filter_create. */
HRESULT kit_filter_create(const KitClass *cls, REFIID riid, void **ppv);

/* The default event handler: a pump on every fwx_Connect_Tcp and fwx_AcceptedConnection
 * connection, S_OK for anything else. */
HRESULT kit_session_default_event(KitSession *session, const FirewallEvent *event);

/* Attaches a new pump (fwx_dfpc_Middle) to CONNECTION (NULL: nothing to do, S_OK). A
 * failed AttachDataFilter is traced and S_OK; a failure to create the pump is returned. */
HRESULT kit_session_attach_pump(KitSession *session, IFWXConnection *connection);

/* Inbound emulation (IFWXConnection::EmulateConnection, inside fwx_AcceptedConnection):
 * a new pump becomes CONNECTION's emulator. The failure is traced and returned. */
HRESULT kit_session_emulate_pump(KitSession *session, IFWXConnection *connection);

/* An emulator pump's external socket, made by the class (say an IFWXNetworkSocket it
 * connected): referenced, read from now on, and closed at Detach. */
HRESULT kit_pump_set_external(KitPump *pump, IFWXSocket *external);

/* The session's IFWXSession and IFWXFirewall (either out-pointer may be NULL), each with
 * a reference of the caller's; FALSE, and NULLs, once the session filter is detached. */
BOOL kit_session_get(KitSession *session, IFWXSession **fwx_session, IFWXFirewall **firewall);

/* IFWXFirewall::CreateBuffer for a pump; FWX_E_TERMINATING once it is detached. *buffer
 * is NULL whenever the result is a failure. */
HRESULT kit_pump_create_buffer(KitPump *pump, DWORD size, IFWXIOBuffer **buffer);

/* A new pump of the session's, not attached to anything: the class attaches it itself
 * (AttachDataFilter with another class, EmulateConnection with an out-connection, or
 * twice on purpose). *out holds the caller's reference. FWX_E_TERMINATING once the
 * session filter is detached. */
HRESULT kit_session_create_pump(KitSession *session, IFWXDataFilter **out);

/* The pump behind an IFWXDataFilter of kit_session_create_pump's. */
#define KIT_PUMP(df) CONTAINING_RECORD((df), KitPump, IFWXDataFilter_iface)

/* The connection of a connection event (fwx_Connect_Tcp, fwx_AcceptedConnection) in
 * *connection (NULL if it has none); FALSE for any other event. */
BOOL kit_event_connection(const FirewallEvent *event, IFWXConnection **connection);

/* The connection SetSockets gave the pump, with a reference of the caller's; NULL before
 * SetSockets and once the pump is detached. */
IFWXConnection *kit_pump_get_connection(KitPump *pump);

#endif /* FWX_FLTKIT_H */
