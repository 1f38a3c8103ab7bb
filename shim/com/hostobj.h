/*
 * hostobj.h — the host's run-time objects and how they refer to each other:
 * the host (filters, rules, workers), sessions, connections, sockets.
 *
 *   host ── filters[]          (loaded DLLs, loader.h)
 *        ── rules[] ── session (publishing: the published server's session)
 *        ── workers[] ── fx_loop (one epoll loop per Wine thread)
 *   connection ── session, worker, data-filter chain, sockets[]
 *
 * Locking: a connection's mutex guards its chain and every socket queue of
 * it; a session's mutex guards its session-filter list. No host lock is
 * ever held while filter code runs (guard.h).
 */
#ifndef FWX_HOSTOBJ_H
#define FWX_HOSTOBJ_H

#include "fwxhost.h"
#include "fxconf.h"
#include "fxloop.h"
#include "fxnet.h"
#include "fxrecord.h"
#include "loader.h"

#define HOST_MAX_FILTERS 32
#define CHAIN_MAX 16

struct connection;
struct session;
struct sock;

struct worker {
    int index;
    fx_loop *loop;
    HANDLE thread;
    DWORD thread_id;
    LONG connections;              /* live on this worker */
};

struct rule {
    fx_rule_conf *conf;
    struct session *session;       /* publishing: the published server's */
    struct connection *listener;   /* publishing: the listening side, for its events */
    int listen_fds[64];            /* one per worker: dups of one socket (host.c) */
    struct udp_rule *udp;          /* UDP rules: udp.c's state */
    /* Counters for stats.c: Interlocked*, read by the control thread. */
    LONG connections;              /* accepted (denied and refused ones too) */
    LONG live;                     /* not yet torn down */
    LONG denials;                  /* denied by a filter (Deny) */
    LONG refused;                  /* refused otherwise: a filter failed or faulted, ... */
    LONG64 bytes_in, bytes_out;    /* from / to clients, of closed connections */
};

struct host {
    fx_config *config;
    struct fx_filter filters[HOST_MAX_FILTERS];
    int nfilters;
    struct rule *rules;
    int nrules;
    struct worker *workers;
    int nworkers;
    IFWXFirewall *firewall;
    volatile LONG stopping;
    LONG live_connections;
    LONG pump_passes;              /* pump passes and UDP readiness callbacks run: fwxreplay's
                                    * quiescence signal (HOST-801) */
    volatile BOOL count_pump_passes; /* set by fwxreplay only: fwxhost's workers would
                                    * otherwise share this cache line on every pass */
    LONG total_connections;
    LONG denied_connections;
    LONG live_sessions;
    int stuck_workers;             /* host_stop: workers left running filter code (guard.h watchdog) */
};

extern struct host *the_host;

/* Counts a pump pass for fwxreplay's quiescence check; free when nobody counts. */
static inline void host_note_pump_pass(void)
{
    if (the_host->count_pump_passes)
        InterlockedIncrement(&the_host->pump_passes);
}

/* ---- session.c ---- */
struct session_filter {
    struct fx_filter *filter;
    IFWXSessionFilter *sf;
    FwxFilterHookEvents *hooks;    /* from AttachToSession, CoTaskMem, ours */
    BOOL detached;                 /* no new calls; Detach done or pending */
    LONG busy;                     /* calls in progress (host count: no AddRef under a lock) */
    BOOL detach_pending;           /* the last caller out runs Detach */
};

struct data_factory {
    struct data_factory *next;
    DWORD event;
    unsigned char addr[28];
    int addrlen;
    IClassFactory *factory;
    FwxDataFilterPriorityClass priority;
    IUnknown *context;
    IFWXFirewallAction *action;
    BOOL cancelled;
};

struct session {
    IFWXSession IFWXSession_iface;
    LONG ref;
    CRITICAL_SECTION lock;
    SOCKADDR_STORAGE client;       /* Win32 layout */
    int client_len;
    DWORD source;                  /* fwxSourceNAT for everything we host */
    struct session_filter sfs[HOST_MAX_FILTERS];
    int nsfs;
    struct data_factory *factories;
    BOOL ended;
    BOOL is_private;               /* CreatePrivateSession */
    IFWXImpersonator *impersonator;   /* private sessions: the filter's, referenced */
    char name[64];                 /* for logs */
    /* Our addresses on the latest connection of the session (Win32 layout,
     * under lock): towards its client, and towards its target. The
     * defaults of RedirectConnections and BindForClient (HOST-100). */
    SOCKADDR_STORAGE last_local, last_ext;
    int last_local_len, last_ext_len;
    /* Client sessions expire after [host] session-timeout seconds without
     * a connection (HOST-1000): live connections that pin it, and since
     * when (fx_now_ms) it has had none. Interlocked; host.c's sweep reads
     * them under its list lock. */
    LONG active;
    volatile LONG64 idle_since;
};

struct session *session_create(const void *win_client, int len, const char *name);
void session_end(struct session *s);      /* Detach every session filter */
/* A connection of the session starts / ends (HOST-1000: expiry counts them). */
void session_pin(struct session *s);
void session_unpin(struct session *s);
/* CreatePrivateSession: flags, and the impersonator ImpersonateClient uses. */
void session_make_private(struct session *s, IFWXImpersonator *imp);
static inline IFWXSession *session_iface(struct session *s) { return &s->IFWXSession_iface; }

/* Raises one event in a session (reference 2.4-2.6): for every filter whose
 * hook events match (event bit, source bit, port), AttachToSession if needed,
 * then FirewallEventHandler with this thread's event context set to conn.
 * Returns S_OK, or the first FX_E_FILTER_FAULT / E_OUTOFMEMORY seen. */
HRESULT session_raise(struct session *s, FwxFirewallEvent *ev, unsigned port,
                      struct connection *conn);
/* fwx_ConnectionTerminating goes to every session filter of the session. */
void session_raise_terminating(struct session *s, struct connection *conn);
/* One event to one session filter (fwx_EstablishedConnection goes to the
 * filter that registered the anticipated action, reference 2.8); owner is
 * its filter, for fault accounting. No lock held. */
HRESULT session_raise_one(struct session *s, IFWXSessionFilter *sf, struct fx_filter *owner,
                          FwxFirewallEvent *ev, struct connection *conn);
/* The filter a session filter of s belongs to, or NULL. */
struct fx_filter *session_filter_owner(struct session *s, IFWXSessionFilter *sf);
/* Data-filter factories registered for this event and address. */
void session_apply_factories(struct session *s, DWORD event, const void *win_addr, int len,
                             struct connection *conn);

/* ---- event context (session.c): per thread, for FWX_E_BAD_CONTEXT ---- */
struct event_ctx {
    DWORD type;
    struct connection *conn;
    struct fx_filter *filter;
    struct event_ctx *outer;
};
struct event_ctx *event_ctx_current(void);

/* ---- action.c ---- */
HRESULT action_create(void (*cancel)(void *arg), void *arg, IFWXFirewallAction **out);
/* The same, and release(arg) when the action's last reference goes: the
 * action then owns a reference on whatever arg is. */
HRESULT action_create_owned(void (*cancel)(void *arg), void (*release)(void *arg), void *arg,
                            IFWXFirewallAction **out);
/* The action's owner is freed: later Cancel calls do nothing. Only our
 * own action objects may be passed. */
void action_detach(IFWXFirewallAction *action);

/* ---- connection.c ---- */
struct sock;

struct chain_link {
    IFWXDataFilter *df;
    FwxDataFilterPriorityClass priority;
    IUnknown *context;
    struct fx_filter *owner;       /* for logs and fault accounting */
    BOOL sockets_set;
};

enum conn_state { CONN_EVENTS, CONN_CONNECTING, CONN_PUMPING, CONN_CLOSING, CONN_DONE };

struct connection {
    IFWXConnection IFWXConnection_iface;
    LONG ref;
    CRITICAL_SECTION lock;
    struct session *session;
    struct worker *worker;
    struct rule *rule;
    unsigned long id;
    enum conn_state state;
    int client_fd, server_fd;
    unsigned char client_addr[28], local_addr[28], target_addr[28];   /* Linux layout */
    int client_len, local_len, target_len;
    SOCKADDR_STORAGE win_remote, win_local, win_target;               /* Win32 layout */
    int win_remote_len, win_local_len, win_target_len;
    SOCKADDR_STORAGE win_ext;      /* our address towards the target, once connected */
    int win_ext_len;
    struct chain_link chain[CHAIN_MAX];
    int nchain;
    struct sock *socks[2 * CHAIN_MAX];
    int nsocks;
    BOOL denied;
    char denied_by[64];
    GUID protocol;
    BOOL kick_pending;             /* a pump pass is queued on the loop */
    BOOL aborted;
    BOOL terminated;               /* teardown ran */
    fx_timer *connect_timer;
    fx_timer *idle_timer;          /* [host] idle-timeout */
    unsigned long long idle_mark;  /* bytes moved when the timer was last armed */
    unsigned long long bytes_in, bytes_out;
    size_t inflight[2];            /* bytes queued by the host per direction (0: to the server) */
    struct completion *pending;    /* queued under the lock, delivered without it */
    struct completion **pending_tail;
    struct fx_relay *relay;        /* no data filters: the kernel-side pump */
    struct anticipation *ant;      /* BindForClient's connection object: its bind (anticipate.c) */
    BOOL secondary;                /* made by an anticipated action */
    BOOL pins_session;             /* holds a session_pin until teardown (HOST-1000) */
    BOOL emulated;                 /* SetProtocol(FWX_FLAG_EMULATE_PROTOCOL): no connect */
    BOOL has_emulator;             /* its data filter of class Emulation is attached */
    BOOL name_set;                 /* SetSocketName done (emulated connections) */
    struct anticipation *established;  /* referenced: raise fwx_EstablishedConnection once connected */
    BOOL dgram;                    /* a UDP connection (udp.c): datagram ends, ExternalAddress */
    void *udp;                     /* udp.c's per-connection state; loop thread only */
    fx_rec *rec;                   /* [host] record: this connection's script (record.c) */
    struct iobuffer_charge charge; /* host buffers made for it (HOST-900) */
};

static inline IFWXConnection *connection_iface(struct connection *c) { return &c->IFWXConnection_iface; }
struct connection *connection_from_iface(IFWXConnection *iface);   /* NULL if not ours */

/* Publishing: a client connected to rule's listener on worker w. Runs the
 * events, then connects to the target and starts the pump. */
void connection_accept(struct worker *w, struct rule *rule, int client_fd,
                       const void *client_sa, int client_len);

/* fwxreplay: the same, on ends that exist already (socketpairs): the same
 * events with the rule's listening address as local address and target_sa
 * as the target (publish) or original destination (outbound), then the
 * pump on server_fd instead of a connect. Loop thread of w. Both fds
 * belong to the host from the call on. */
void connection_accept_ends(struct worker *w, struct rule *rule, int client_fd, int server_fd,
                            const void *client_sa, int client_len,
                            const void *target_sa, int target_len);

/* anticipate.c: a secondary connection accepted on an anticipated
 * action's listener (RedirectConnections, BindForClient). fd is the
 * accepted end (the connection's client end); the host connects to target
 * and pumps, after fwx_EstablishedConnection (anticipate_established).
 * Loop thread of w; fd belongs to the host from the call on. */
struct anticipation;
void connection_accept_secondary(struct worker *w, struct session *s, struct anticipation *a,
                                 int fd, const void *peer_sa, int peer_len,
                                 const void *local_sa, int local_len,
                                 const void *target_sa, int target_len);
/* A connection object for a bind made for a client (BindForClient,
 * EmulateClientBind): fwx_Bind_Tcp, then fwx_Listen if listen, in s.
 * S_OK with *out (one reference, the caller's), FWX_E_POLICY_RULES_DENIED
 * if a filter denied the bind, or the failure. Any thread, no lock held. */
HRESULT connection_bind_object(struct worker *w, struct session *s, struct anticipation *a,
                               const void *local_sa, int local_len, BOOL listen,
                               struct connection **out);
/* Its end: fwx_ConnectionTerminating, then our reference goes. */
void connection_bind_object_end(struct connection *c);
/* For udp.c: a new connection object (life reference; events state),
 * its addresses (Linux layout in, both layouts stored), the chain start
 * (ends of a dgram connection are sock_create_dgram; c->socks[0] is then
 * the client end) and the teardown (loop thread). */
struct connection *connection_create(struct worker *w, struct rule *rule, struct session *s);
/* Outbound: the pinned, referenced session host_client_session returned
 * now belongs to c (c may be NULL: the pin is dropped). */
void connection_keep_client_session(struct connection *c, struct session *s);
void connection_set_addr(unsigned char *lin, int *lin_len, SOCKADDR_STORAGE *win, int *win_len,
                         const void *sa, int len);
void connection_start_pump(struct connection *c);
void connection_teardown(struct connection *c);

/* Run a pump pass now (loop thread, no lock held). */
void connection_run_now(struct connection *c);
/* Publishing rules: fwx_Bind_Tcp and fwx_Listen at start (0, or -1 with
 * err if a filter denied the bind); fwx_ConnectionTerminating at stop. */
int connection_rule_listen_events(struct rule *rule, struct worker *w, char *err, size_t errlen);
void connection_rule_listen_end(struct rule *rule);

/* ---- record.c: [host] record (fwxhost --record DIR) ---- */
void record_start(struct connection *c);          /* after the events; no-op when off */
/* side 0 client, 1 server: n > 0 bytes read from it, 0 its EOF, < 0 a reset. */
void record_io(struct connection *c, int side, const void *data, long n);
void record_relay_tap(void *arg, int side, const void *data, long n);   /* fx_relay_tap_cb */
void record_finish(struct connection *c);         /* teardown: write the script */

/* ---- host.c ---- */
/* The session of a SecureNAT-style client address (port ignored): found
 * or created, returned with a reference. NULL on out of memory. pin: also
 * with a session_pin taken under the list lock, so that the idle sweep
 * cannot end it before the caller's connection exists (HOST-1000). */
struct session *host_client_session(const void *win_addr, int len, BOOL pin);

/* Schedule a pump pass on the connection's loop (any thread). */
void connection_kick(struct connection *c);
/* Ends the connection: abort both ends. Any thread. */
void connection_abort(struct connection *c, const char *why);

/* ---- socket.c ---- */
enum sock_kind { SOCK_NET, SOCK_PIPE, SOCK_DATAGRAM };

struct sock *sock_create_net(struct connection *c, int fd, int end);   /* end 0 client, 1 server */
/* dir: where this socket's sends go: 0 towards the server, 1 towards the client. */
struct sock *sock_create_pipe(struct connection *c, int dir);
void sock_pair(struct sock *a, struct sock *b);
/* A datagram end of a UDP chain (udp.c). end 0: the client side; sends go
 * to c->client_addr through fd (the rule's shared socket or the client's
 * transparent one, not owned: udp.c reads both and feeds this end through
 * sock_dgram_push). end 1: the target side; fd is the connection's own
 * connected socket (owned, read by the pump); sends go to the op's address. */
struct sock *sock_create_dgram(struct connection *c, int fd, int end);
/* A datagram from the client for a client end (loop thread, no lock held):
 * copied, queued for the filter's Recv with ExternalAddress win_ext.
 * FALSE if it was dropped (queue full, out of memory). */
BOOL sock_dgram_push(struct sock *s, const void *data, DWORD len, const void *win_ext, int ext_len);
IFWXSocket *sock_iface(struct sock *s);
/* Loop thread, connection lock held: progress every queue; completions are
 * appended to the connection's pending list for delivery without the lock. */
void sock_pump(struct sock *s);
/* Loop thread: fail every pending operation (teardown). */
void sock_abort_all(struct sock *s, DWORD error);
int sock_is_finished(struct sock *s);    /* net end: both directions done */
/* A pump pass that leaves the connection open sends the FIN and drops the
 * read interest it deferred in the hope that the connection would close
 * (net_pump). Under the connection lock. */
void sock_end_pass(struct sock *s);
void sock_release(struct sock *s);

/* Completions collected under the lock, delivered after unlocking. All
 * reference counting of filter objects (sink, a filter's own buffers)
 * happens at delivery, outside the lock. */
struct completion {
    struct completion *next;
    IFWXIOCompletion *sink;        /* referenced; NULL: nothing to call */
    struct fx_filter *owner;
    BOOL success;
    DWORD error;
    IFWXIOBuffer *buffer;          /* referenced; handed to the sink */
    UserContextType user;
    IFWXIOBuffer *hold;            /* referenced; released after delivery */
    long set_size;                 /* >= 0: SetDataSize(buffer) before delivery */
    int ext_len;                   /* > 0: CompleteAsyncIO's ExternalAddress (UDP receives) */
    unsigned char ext[28];         /* Win32 layout */
    IFWXIOBuffer *pinned;          /* iobuffer_pin'ed by the operation; unpinned at delivery */
};
/* Appends cp (connection lock held). Delivery frees it with
 * completion_free: a record is the first member of the operation it
 * completes, so the operation becomes its own completion record and the
 * data path allocates nothing extra per buffer. */
void completion_push(struct connection *c, struct completion *cp);
void completion_free(struct completion *cp);
/* Per-thread cache of operation records (socket.c), like
 * iobuffer_thread_cache_init: on a worker thread, before its loop runs. */
void sock_thread_cache_init(void);
void sock_thread_cache_free(void);

/* ---- netsocket.c: IFWXNetworkSocket, the sockets filters create ---- */
/* IFWXFirewall/IFWXSession::CreateNetworkSocket (session NULL for the
 * firewall's). TCP only; UDP answers E_NOTIMPL. */
HRESULT netsock_create(struct session *session, INT protocol, IFWXNetworkSocket **out);
/* host_stop, after the drain and before the workers stop: every network
 * socket is closed abortively, its pending operations complete with
 * ERROR_OPERATION_ABORTED (delivered on its loop), and no new socket can
 * be created. Waits up to timeout_ms for those deliveries. */
void netsock_stop_all(unsigned timeout_ms);
/* The sockets f created while its ABI profile was not settled (during FilterInit)
 * get the vtable of the profile it has now (ABI-303). */
void netsock_settle_profile(struct fx_filter *f);

/* ---- udp.c: UDP rules (docs/configuration.md, HOST-200..) ---- */
struct udp_rule;
/* Rule start, after fwx_Bind_Udp: binds the rule's address, its datagrams
 * served on worker w. 0, or -1 with one line in err. */
int udp_rule_open(struct rule *rule, struct worker *w, char *err, size_t errlen);
/* Loop thread of the rule's worker: stop receiving, end every connection. */
void udp_rule_stop(struct rule *rule);
/* fwxreplay (HOST-800): as udp_rule_open on fd, an in-memory socket
 * (fx_udp_emulate), which the rule then owns; and the hook that makes each
 * client's socket towards the target instead of fx_udp_connect (NULL: the
 * real one). Loop thread of worker 0. */
int udp_rule_open_fd(struct rule *rule, struct worker *w, int fd, char *err, size_t errlen);
void udp_set_connect_hook(int (*hook)(const void *client, int client_len, const void *target,
                                      int target_len, void *arg), void *arg);
/* Outbound rules: the client's transparent socket (bound to local, the
 * original destination, connected to peer, the client) instead of
 * fx_udp_transparent_peer; called with the connect hook's arg. */
void udp_set_peer_hook(int (*hook)(const void *local, int local_len, const void *peer,
                                   int peer_len, void *arg));
/* May a filter's SendTo on c name this address (Win32 layout)? */
BOOL udp_addr_allowed(struct connection *c, const SOCKADDR *addr, int len);
/* connection_teardown of a UDP connection (loop thread). */
void udp_conn_ended(struct connection *c);
/* ---- udpdest.c: IFWXUdpDestination for one fwx_Udp_Destination ---- */
HRESULT udpdest_create(struct connection *c, IFWXUdpDestination **out);

/* ---- host.c: the worker whose loop runs on the calling thread, or NULL ---- */
struct worker *host_current_worker(void);

#endif /* FWX_HOSTOBJ_H */
