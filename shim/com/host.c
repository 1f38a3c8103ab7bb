/*
 * host.c — the Firewall service's start and stop: load and FilterInit
 * every enabled filter, create each rule's session and listening sockets,
 * run one epoll loop per worker on threads made by Wine's CreateThread,
 * and on stop drain connections, detach sessions, FilterShutdown, unload.
 */
#include "fwxhost.h" /* first: Winsock before any libc header */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fxinherit.h"
#include "guard.h"
#include "host.h"
#include "anticipate.h"
#include "hostobj.h"

struct host *the_host;

/* SecureNAT-style sessions: one per client address. One that has had no
 * connection for [host] session-timeout seconds ends (HOST-1000): a sweep
 * on worker 0 takes it off the list, so the next connection from that
 * client makes a new session. */
struct client_session {
    struct client_session *next;
    struct session *session;
};
static struct client_session *client_sessions;
static CRITICAL_SECTION client_sessions_lock;
static LONG client_sessions_init;

static void client_sessions_setup(void)
{
    if (!InterlockedExchange(&client_sessions_init, 1))
        InitializeCriticalSection(&client_sessions_lock);
}

static BOOL same_client(const struct session *s, const SOCKADDR_STORAGE *a, int len)
{
    const SOCKADDR *x = (const SOCKADDR *)&s->client, *y = (const SOCKADDR *)a;
    if (x->sa_family != y->sa_family)
        return FALSE;
    if (x->sa_family == AF_INET)
        return ((const SOCKADDR_IN *)x)->sin_addr.s_addr == ((const SOCKADDR_IN *)y)->sin_addr.s_addr;
    return len == s->client_len && !memcmp(((const char *)x) + 4, ((const char *)y) + 4, len - 4);
}

struct session *host_client_session(const void *win_addr, int len, BOOL pin)
{
    SOCKADDR_STORAGE key;
    struct client_session *cs;
    struct session *found = NULL;
    char name[80], text[64];

    if (!win_addr || len < (int)sizeof(SOCKADDR_IN) || len > (int)sizeof(key))
        return NULL;
    memset(&key, 0, sizeof(key));
    memcpy(&key, win_addr, len);
    ((SOCKADDR_IN *)&key)->sin_port = 0;     /* the port is ignored (reference 3.8) */
    client_sessions_setup();
    EnterCriticalSection(&client_sessions_lock);
    for (cs = client_sessions; cs && !found; cs = cs->next)
        if (same_client(cs->session, &key, len))
            found = cs->session;
    if (!found && (cs = calloc(1, sizeof(*cs)))) {
        unsigned char lin[28];
        int lin_len = sizeof(lin);
        if (fx_sa_from_win32(&key, len, lin, &lin_len) != 0 ||
            fx_addr_format(lin, lin_len, text, sizeof(text)) < 0)
            snprintf(text, sizeof(text), "?");
        snprintf(name, sizeof(name), "client %s", text);
        if ((cs->session = session_create(&key, len, name))) {
            cs->next = client_sessions;
            client_sessions = cs;
            found = cs->session;
        } else {
            free(cs);
        }
    }
    if (found) {
        IFWXSession_AddRef(session_iface(found));
        if (pin)
            session_pin(found);
        else    /* GetNATSession: a fresh look counts as use */
            __atomic_store_n(&found->idle_since, (LONG64)fx_now_ms(), __ATOMIC_RELAXED);
    }
    LeaveCriticalSection(&client_sessions_lock);
    return found;
}

/* Worker 0, once a second while session-timeout is set: end the client
 * sessions idle for that long. Off the list under the lock (a pin is only
 * taken under it), then session_end without it: Detach runs filter code. */
#define SWEEP_MS 1000

static void sweep_client_sessions(void *arg)
{
    struct worker *w = arg;
    struct host *h = the_host;
    struct client_session *cs, **link, *expired = NULL;
    uint64_t now = fx_now_ms();
    uint64_t limit = (uint64_t)h->config->host.session_timeout * 1000;

    if (h->stopping)
        return;
    client_sessions_setup();
    EnterCriticalSection(&client_sessions_lock);
    for (link = &client_sessions; (cs = *link);) {
        struct session *s = cs->session;
        if (s->active == 0 && now - (uint64_t)__atomic_load_n(&s->idle_since, __ATOMIC_RELAXED) >= limit) {
            *link = cs->next;
            cs->next = expired;
            expired = cs;
        } else {
            link = &cs->next;
        }
    }
    LeaveCriticalSection(&client_sessions_lock);
    for (cs = expired; cs; cs = expired) {
        expired = cs->next;
        fx_log(FX_LOG_INFO, "session %s: ended after %u s without a connection "
               "(session-timeout)", cs->session->name, h->config->host.session_timeout);
        session_end(cs->session);
        IFWXSession_Release(session_iface(cs->session));
        free(cs);
    }
    fx_timer_start(w->loop, SWEEP_MS, sweep_client_sessions, w);
}

static void end_client_sessions(void)
{
    struct client_session *cs, *next;
    client_sessions_setup();
    EnterCriticalSection(&client_sessions_lock);
    cs = client_sessions;
    client_sessions = NULL;
    LeaveCriticalSection(&client_sessions_lock);
    for (; cs; cs = next) {
        next = cs->next;
        session_end(cs->session);
        IFWXSession_Release(session_iface(cs->session));
        free(cs);
    }
}

/* A listening fd belongs to one worker; it carries both in its callback. */
struct listener {
    struct worker *worker;
    struct rule *rule;
    int fd;
};

static void on_accept(fx_loop *loop, int fd, unsigned events, void *data)
{
    struct listener *l = data;
    struct host *h = the_host;

    for (int i = 0; i < 64; i++) {
        unsigned char sa[28];
        int salen = sizeof(sa);
        /* Stopping: leave the backlog alone. Under the supervisor the
         * socket is shared, and a newer worker serves what waits in it;
         * close_listeners_task, already posted, takes the fd out. */
        if (h->stopping)
            return;
        int cfd = fx_tcp_accept(fd, sa, &salen);
        if (cfd < 0)
            return;     /* EAGAIN, or a connection that died in the backlog */
        if ((unsigned)h->live_connections >= h->config->host.max_sessions) {
            static LONG warned;
            if (!InterlockedExchange(&warned, 1))
                fx_log(FX_LOG_WARN, "rule %s: max-sessions (%u) reached; refusing new connections",
                       l->rule->conf->name, h->config->host.max_sessions);
            fx_close_abort(cfd);
            continue;
        }
        connection_accept(l->worker, l->rule, cfd, sa, salen);
    }
}

static DWORD WINAPI worker_main(void *arg)
{
    struct worker *w = arg;
    /* Filters are free-threaded and expect callers in the MTA. */
    CoInitializeEx(NULL, COINIT_MULTITHREADED);
    iobuffer_thread_cache_init();
    sock_thread_cache_init();
    fx_loop_run(w->loop);
    sock_thread_cache_free();
    iobuffer_thread_cache_free();
    CoUninitialize();
    return 0;
}

static int load_filters(struct host *h, char *err, size_t errlen)
{
    fx_config *cfg = h->config;
    for (size_t i = 0; i < cfg->nfilters; i++) {
        fx_filter_conf *fc = &cfg->filters[i];
        struct fx_filter *f;
        char why[1024];
        HRESULT init_hr;

        if (!fc->enabled)
            continue;
        if (h->nfilters >= HOST_MAX_FILTERS) {
            snprintf(err, errlen, "too many filters (at most %d)", HOST_MAX_FILTERS);
            return -1;
        }
        f = &h->filters[h->nfilters];
        memset(f, 0, sizeof(*f));
        f->name = fc->name;
        f->path = fc->path;
        if (fc->has_clsid) {
            memcpy(&f->clsid, &fc->clsid, sizeof(GUID));
            f->has_clsid = TRUE;
        }
        f->profile = fc->profile;
        if (fx_filter_load(f, NULL, 0, NULL, why, sizeof(why)) != 0 ||
            fx_filter_init(f, h->firewall, &init_hr, why, sizeof(why)) != 0) {
            if (cfg->path && fc->line)
                snprintf(err, errlen, "%s:%d: filter %s: %s", cfg->path, fc->line, fc->name, why);
            else
                snprintf(err, errlen, "filter %s: %s", fc->name, why);
            fx_filter_unload(f);
            return -1;
        }
        h->nfilters++;
        char text[39], mask[256];
        fx_log(FX_LOG_INFO, "filter %s: %s, class %s, %s-bit, profile %s%s, hook events %s, %lu port ranges",
               f->name, f->path, fx_guid_str(&f->clsid, text), sizeof(void *) == 8 ? "64" : "32",
               fx_profile_name(f->profile), f->profile_auto ? " (by PE type)" : "",
               fx_event_mask_str(f->hooks.dwGlobalEvents, mask, sizeof(mask)),
               (unsigned long)f->hooks.dwNumPortRanges);
    }
    return 0;
}

static int listen_error(struct host *h, struct rule *rule, const char *why, char *err, size_t errlen)
{
    if (h->config->path && rule->conf->listen_line)
        snprintf(err, errlen, "%s:%d: rule %s: %s", h->config->path, rule->conf->listen_line,
                 rule->conf->name, why);
    else
        snprintf(err, errlen, "rule %s: %s", rule->conf->name, why);
    return -1;
}

static int add_listener(struct host *h, struct rule *rule, int w, int fd, unsigned flags,
                        char *err, size_t errlen)
{
    struct listener *l = calloc(1, sizeof(*l));
    if (!l) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    rule->listen_fds[w] = fd;
    l->worker = &h->workers[w];
    l->rule = rule;
    l->fd = fd;
    fx_loop_add_fd(h->workers[w].loop, fd, FX_READ | flags, on_accept, l);
    return 0;
}

/* One listening socket per rule, shared by every worker through its own
 * dup registered with EPOLLEXCLUSIVE: one waiting worker wakes per
 * connection, and a busy or stuck one leaves it to the next that polls
 * (HOST-500).  Per-worker SO_REUSEPORT sockets, used before without the
 * supervisor, hashed each connection to a worker whatever its state, so a
 * stuck worker's share waited.  Takes fd. */
static int share_listener(struct host *h, struct rule *rule, int fd, char *err, size_t errlen)
{
    int rc = 0;

    for (int w = 0; w < h->nworkers && rc == 0; w++) {
        int mine = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (mine < 0) {
            char why[128];
            snprintf(why, sizeof(why), "dup of the listening socket: %s", strerror(errno));
            rc = listen_error(h, rule, why, err, errlen);
        } else {
            rc = add_listener(h, rule, w, mine, FX_EXCLUSIVE, err, errlen);
        }
    }
    close(fd);      /* the workers' dups keep the socket */
    return rc;
}

/* Under the supervisor (fwxhost(8)): the socket it bound for the rule's
 * address; the supervisor keeps its own copy. */
static int adopt_listeners(struct host *h, struct rule *rule, char *err, size_t errlen)
{
    char key[FX_INHERIT_KEYLEN];
    fx_inherit_rule_key(rule->conf, key);
    int fd = fx_inherited_fd(key);
    if (fd < 0)
        return listen_error(h, rule, "the supervisor handed down no listening socket for "
                            "this address (was the configuration changed while it started?)",
                            err, errlen);
    return share_listener(h, rule, fd, err, errlen);
}

static int open_listeners(struct host *h, char *err, size_t errlen)
{
    for (int r = 0; r < h->nrules; r++) {
        struct rule *rule = &h->rules[r];
        char why[256];
        if (rule->conf->protocol == FX_PROTO_UDP) {
            /* One socket on worker 0 serves the rule's datagrams (udp.c);
             * under the supervisor, the one it bound (udp_rule_open). */
            if (udp_rule_open(rule, &h->workers[0], why, sizeof(why)) != 0)
                return listen_error(h, rule, why, err, errlen);
            continue;
        }
        if (fx_inherited()) {
            if (adopt_listeners(h, rule, err, errlen) != 0)
                return -1;
            continue;
        }
        /* Without SO_REUSEPORT: a second host on the same address fails
         * here instead of sharing it silently. */
        int fd = fx_tcp_listen(&rule->conf->listen, rule->conf->listen_len, 1024, 0, why, sizeof(why));
        if (fd < 0)
            return listen_error(h, rule, why, err, errlen);
        if (share_listener(h, rule, fd, err, errlen) != 0)
            return -1;
    }
    return 0;
}

int host_start(struct host *h, fx_config *cfg, char *err, size_t errlen)
{
    memset(h, 0, sizeof(*h));
    h->config = cfg;
    the_host = h;
    /* Before any filter code runs: FilterInit is guarded and watched too. */
    guard_configure(cfg->host.max_faults, cfg->host.on_disabled == FX_DISABLED_BYPASS);
    guard_watchdog_start(cfg->host.hang_timeout);
    /* Before any filter is loaded: the IIDs and flags it will see, and the
     * trace, which patches the host vtables. */
    if (abi_apply(cfg, err, errlen) != 0)
        return -1;
    if (cfg->host.trace && !fxt_on && trace_open(cfg->host.trace, err, errlen) != 0)
        return -1;
    h->firewall = firewall_get();

    h->nworkers = cfg->host.workers > 0 ? cfg->host.workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (h->nworkers < 1)
        h->nworkers = 1;
    if (h->nworkers > 64)
        h->nworkers = 64;
    h->workers = calloc(h->nworkers, sizeof(*h->workers));
    h->rules = calloc(cfg->nrules ? cfg->nrules : 1, sizeof(*h->rules));
    if (!h->workers || !h->rules) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int w = 0; w < h->nworkers; w++) {
        h->workers[w].index = w;
        if (!(h->workers[w].loop = fx_loop_new())) {
            snprintf(err, errlen, "cannot create the event loop of worker %d", w);
            return -1;
        }
        fx_loop_set_poll_spin(h->workers[w].loop, cfg->host.poll_spin);
    }
    /* After the loops exist: filters may create network sockets in
     * FilterInit; their work waits on the loops until the workers start. */
    if (load_filters(h, err, errlen) != 0)
        return -1;
    for (size_t r = 0; r < cfg->nrules; r++) {
        struct rule *rule = &h->rules[h->nrules];
        fx_rule_conf *rc = &cfg->rules[r];
        SOCKADDR_STORAGE win;
        int wlen = sizeof(win);
        char name[64];

        rule->conf = rc;
        for (int w = 0; w < 64; w++)
            rule->listen_fds[w] = -1;
        h->nrules++;
        if (rc->type == FX_RULE_OUTBOUND)
            continue;   /* sessions come per client (host_client_session) */
        fx_sa_to_win32(&rc->target, rc->target_len, &win, &wlen);
        snprintf(name, sizeof(name), "rule %s", rc->name);
        /* Publishing: the published server's session (docs/abi-decisions.md). */
        if (!(rule->session = session_create(&win, wlen, name))) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        if (connection_rule_listen_events(rule, &h->workers[0], err, errlen) != 0)
            return -1;
    }
    if (open_listeners(h, err, errlen) != 0)
        return -1;
    if (cfg->host.session_timeout)      /* before the loop runs: allowed */
        fx_timer_start(h->workers[0].loop, SWEEP_MS, sweep_client_sessions, &h->workers[0]);
    for (int w = 0; w < h->nworkers; w++) {
        h->workers[w].thread = CreateThread(NULL, 0, worker_main, &h->workers[w], 0,
                                            &h->workers[w].thread_id);
        if (!h->workers[w].thread) {
            snprintf(err, errlen, "CreateThread failed for worker %d (error %lu)", w,
                     (unsigned long)GetLastError());
            return -1;
        }
    }
    return 0;
}

static void close_listeners_task(void *arg)
{
    struct worker *w = arg;
    struct host *h = the_host;
    for (int r = 0; r < h->nrules; r++) {
        if (h->rules[r].udp && w->index == 0)
            udp_rule_stop(&h->rules[r]);
        int fd = h->rules[r].listen_fds[w->index];
        if (fd >= 0) {
            fx_loop_del_fd(w->loop, fd);
            close(fd);
            h->rules[r].listen_fds[w->index] = -1;
        }
    }
}

/* A deadline the drain may not pass (0: none); set from a signal handler. */
static volatile uint64_t drain_cut_ms;

void host_cut_drain(unsigned seconds)
{
    uint64_t at = fx_now_ms() + (uint64_t)seconds * 1000;
    if (!drain_cut_ms || at < drain_cut_ms)
        drain_cut_ms = at;
}

int host_all_workers_stuck(struct host *h, char *what, size_t len)
{
    int stuck = 0;
    if (!h->workers)
        return 0;
    for (int w = 0; w < h->nworkers; w++)
        if (h->workers[w].thread && guard_thread_hung(h->workers[w].thread_id, what, len))
            stuck++;
    return h->nworkers > 0 && stuck == h->nworkers;
}

void host_stop_accepting(struct host *h)
{
    if (InterlockedExchange(&h->stopping, 1))
        return;
    for (int w = 0; w < h->nworkers; w++)
        if (h->workers[w].loop && h->workers[w].thread)
            fx_loop_post(h->workers[w].loop, close_listeners_task, &h->workers[w]);
}

void host_stop(struct host *h, unsigned drain_seconds)
{
    host_stop_accepting(h);
    /* Drain: live connections finish on their own; past the deadline the
     * rest are left to FilterShutdown's order-undefined Detach. */
    uint64_t deadline = fx_now_ms() + (uint64_t)drain_seconds * 1000;
    while (h->live_connections > 0 && fx_now_ms() < deadline &&
           (!drain_cut_ms || fx_now_ms() < drain_cut_ms))
        Sleep(50);
    if (h->live_connections > 0)
        fx_log(FX_LOG_WARN, "stopping with %ld connections still open", (long)h->live_connections);
    /* Filters' network sockets end while the loops still run to deliver
     * their last completions (not waited for if the workers never ran). */
    anticipate_stop_all(h->workers && h->workers[0].thread ? 2000 : 0);
    netsock_stop_all(h->workers && h->workers[0].thread ? 5000 : 0);
    for (int w = 0; w < h->nworkers; w++)
        if (h->workers[w].loop)
            fx_loop_stop(h->workers[w].loop);
    /* A worker stuck in filter code never comes back: once the watchdog
     * calls its call hung, stop without it (HOST-023). */
    for (int w = 0; w < h->nworkers; w++) {
        struct worker *wk = &h->workers[w];
        char what[256];
        if (!wk->thread)
            continue;
        while (WaitForSingleObject(wk->thread, 200) == WAIT_TIMEOUT) {
            if (guard_thread_hung(wk->thread_id, what, sizeof(what))) {
                fx_log(FX_LOG_ERROR, "worker %d is stuck (%s); stopping without it", w, what);
                h->stuck_workers++;
                break;
            }
        }
    }
    if (h->stuck_workers) {
        /* Its filter may hold its own locks, and FreeLibrary would pull the
         * code from under the thread: no Detach, no FilterShutdown. */
        fx_log(FX_LOG_ERROR, "not shutting the filters down: %d worker(s) still inside filter code",
               h->stuck_workers);
        guard_watchdog_stop();
        return;
    }
    for (int w = 0; w < h->nworkers; w++)
        if (h->workers[w].thread)
            CloseHandle(h->workers[w].thread);
    for (int r = 0; r < h->nrules; r++) {
        if (!h->rules[r].session)
            continue;
        connection_rule_listen_end(&h->rules[r]);
        session_end(h->rules[r].session);
        IFWXSession_Release(session_iface(h->rules[r].session));
    }
    end_client_sessions();
    for (int i = 0; i < h->nfilters; i++)
        fx_filter_unload(&h->filters[i]);
    if (h->firewall)
        IFWXFirewall_Release(h->firewall);
    guard_watchdog_stop();
    LONG held = iobuffer_reclaimed_held(NULL);
    if (iobuffer_live_count() + held > 0)
        fx_log(FX_LOG_NOTICE, "%ld host buffers are still referenced after the filters were "
               "unloaded (leaked by a filter; %ld of them reclaimed when their connection ended)",
               (long)(iobuffer_live_count() + held), (long)held);
}

/* The worker whose loop runs on the calling thread, or NULL (the main
 * thread, a filter's own thread). Cached per thread with fx_tls_get: __thread
 * is unsafe in code called from WINAPI functions (fwxhost.h). */
static struct fx_tls current_worker_tls = FX_TLS_INIT;

struct worker *host_current_worker(void)
{
    struct host *h = the_host;
    struct worker *w;

    if (!h || !h->workers)
        return NULL;
    if ((w = fx_tls_get(&current_worker_tls)))
        return w;
    for (int i = 0; i < h->nworkers; i++)
        if (h->workers[i].loop && fx_loop_in_thread(h->workers[i].loop)) {
            fx_tls_set(&current_worker_tls, &h->workers[i]);
            return &h->workers[i];
        }
    return NULL;
}
