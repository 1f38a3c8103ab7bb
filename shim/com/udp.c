/*
 * udp.c — UDP rules (protocol = udp): the rule's socket, one connection per
 * client address (source ip:port; outbound: per client address and
 * original destination), its events, its datagram path and its expiry
 * (docs/configuration.md; HOST-200..205).
 *
 * Publishing rules bind listen and send to target. Outbound rules serve
 * datagrams iptables TPROXY sent to listen: the original destination comes
 * with each datagram (IP_ORIGDSTADDR); answers go back through a socket
 * bound to that destination and connected to the client (IP_TRANSPARENT),
 * on which the kernel also delivers the client's further datagrams. This
 * file reads that socket, filters or not, and checks each datagram's
 * source: around the time such a socket is connected, the kernel can hand
 * it another client's datagram (seen in tests; most likely its lockless
 * lookup sees the peer address set and the port not yet), which then goes
 * where the rule's socket would have sent it.
 *
 *   rule start   fwx_Bind_Udp on the rule's listening connection
 *                (connection.c): Deny stops the rule.
 *   new client   a connection for that source address, then
 *                fwx_Udp_Destination for its destination, the rule's
 *                target, with an IFWXUdpDestination (udpdest.c): filters
 *                Deny, SetProtocol, AttachDataFilter(WithDestination).
 *   datagrams    no data filter: forwarded here, socket to socket. With
 *                data filters: the chain of socket.c with datagram ends
 *                (sock_create_dgram); the client end is fed from the
 *                rule's socket by sock_dgram_push.
 *   expiry       a client address silent for udp-timeout seconds (both
 *                directions) ends: its destination leaves the cache, the
 *                data filters are detached, fwx_ConnectionTerminating.
 *                A denied destination stays cached (its datagrams dropped)
 *                for the same time, then is asked about again.
 *
 * Everything here runs on the loop thread of the rule's worker (worker 0);
 * the table of client addresses is touched by nothing else.
 */
#include "fwxhost.h" /* first: Winsock before any libc header */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fxinherit.h"
#include "fxudp.h"
#include "guard.h"
#include "hostobj.h"

#define UDP_BUCKETS 4096
#define UDP_MAX_CLIENTS 65536          /* per rule; more are dropped and logged */
#define UDP_BATCH 256                  /* datagrams per readiness callback */
#define UDP_DGRAM_MAX 65536

/* fx_udp_* return -errno; Linux EAGAIN (errno.h is Wine's here). */
#define LINUX_EAGAIN 11

struct udp_conn {
    struct udp_conn *next;             /* hash chain */
    struct udp_rule *ur;
    struct connection *c;              /* until udp_conn_ended */
    unsigned char src[28];             /* the client address, Linux layout */
    int srclen;
    unsigned char dst[28];             /* outbound: the original destination */
    int dstlen;
    int peer_fd;                       /* outbound: bound to dst, connected to src; -1 */
    unsigned hash;
    BOOL direct;                       /* no data filter: forwarded by this file */
    BOOL denied;                       /* cached denial: datagrams dropped */
    struct sock *client_end;           /* with data filters */
    fx_timer *timer;
    unsigned long long mark;           /* activity seen at the last check */
    uint64_t last_change;              /* ms when it last changed */
    unsigned long long datagrams;      /* forwarded either way */
};

struct udp_rule {
    struct rule *rule;
    struct worker *w;
    int fd;
    unsigned nclients;
    unsigned long long dropped;
    unsigned long long strays;         /* datagrams of another client on a client's socket */
    BOOL full_logged;
    BOOL max_logged;               /* max-sessions reached: logged once until it is not */
    BOOL outbound;
    BOOL loop_logged;
    unsigned listen_port;              /* host order */
    struct udp_conn *buckets[UDP_BUCKETS];
};

/* fwxreplay: the socket towards the target comes from the driver
 * (udp_set_connect_hook; HOST-800). */
static int (*connect_hook)(const void *client, int client_len, const void *target, int target_len,
                           void *arg);
static void *connect_hook_arg;
static int (*peer_hook)(const void *local, int local_len, const void *peer, int peer_len, void *arg);

void udp_set_connect_hook(int (*hook)(const void *client, int client_len, const void *target,
                                      int target_len, void *arg), void *arg)
{
    connect_hook = hook;
    connect_hook_arg = arg;
}

void udp_set_peer_hook(int (*hook)(const void *local, int local_len, const void *peer,
                                   int peer_len, void *arg))
{
    peer_hook = hook;
}

static const char *rname(struct udp_rule *ur)
{
    return ur->rule->conf->name;
}

static unsigned addr_hash(const unsigned char *sa, int len, const unsigned char *dst, int dstlen)
{
    unsigned h = 2166136261u;
    /* Port and address: bytes 2.. of both sockaddr_in and sockaddr_in6
     * (sin_zero is zero in what recvfrom fills in). */
    for (int i = 2; i < len && i < 24; i++)
        h = (h ^ sa[i]) * 16777619u;
    for (int i = 2; i < dstlen && i < 24; i++)
        h = (h ^ dst[i]) * 16777619u;
    return h;
}

static struct udp_conn *lookup(struct udp_rule *ur, const unsigned char *sa, int len,
                               const unsigned char *dst, int dstlen, unsigned h)
{
    for (struct udp_conn *uc = ur->buckets[h % UDP_BUCKETS]; uc; uc = uc->next)
        if (uc->hash == h && fx_sa_equal(uc->src, uc->srclen, sa, len) &&
            (!ur->outbound || fx_sa_equal(uc->dst, uc->dstlen, dst, dstlen)))
            return uc;
    return NULL;
}

/* ------------------------------------------------------------ expiry */

static unsigned long long activity(struct udp_conn *uc)
{
    struct connection *c = uc->c;
    return c->bytes_in + c->bytes_out + uc->datagrams;
}

static unsigned check_period_ms(struct udp_rule *ur)
{
    unsigned ms = ur->rule->conf->udp_timeout * 1000 / 4;
    return ms < 100 ? 100 : ms;
}

/* Checks four times per udp-timeout: a destination expires between
 * udp-timeout and 1.25 udp-timeout after its last datagram. */
static void idle_check(void *arg)
{
    struct udp_conn *uc = arg;
    struct udp_rule *ur = uc->ur;
    struct connection *c = uc->c;
    unsigned long long now_act = activity(uc);
    uint64_t now = fx_now_ms();
    char who[64];

    uc->timer = NULL;
    if (now_act != uc->mark && !uc->denied) {
        uc->mark = now_act;
        uc->last_change = now;
    }
    if (now - uc->last_change < (uint64_t)ur->rule->conf->udp_timeout * 1000) {
        uc->timer = fx_timer_start(ur->w->loop, check_period_ms(ur), idle_check, uc);
        return;
    }
    fx_addr_format(uc->src, uc->srclen, who, sizeof(who));
    fx_log(FX_LOG_INFO, "conn %lu rule %s: UDP client %s %s for %u s: destination expired", c->id,
           rname(ur), who, uc->denied ? "denied" : "idle", ur->rule->conf->udp_timeout);
    connection_teardown(c);     /* udp_conn_ended frees uc */
}

void udp_conn_ended(struct connection *c)
{
    struct udp_conn *uc = c->udp, **pp;
    if (!uc)
        return;
    struct udp_rule *ur = uc->ur;
    for (pp = &ur->buckets[uc->hash % UDP_BUCKETS]; *pp; pp = &(*pp)->next)
        if (*pp == uc) {
            *pp = uc->next;
            ur->nclients--;
            break;
        }
    if (uc->timer)
        fx_timer_cancel(ur->w->loop, uc->timer);
    if (c->client_fd == ur->fd)
        c->client_fd = -1;      /* the rule's socket: never closed by a connection */
    if (uc->peer_fd >= 0) {
        fx_loop_del_fd(ur->w->loop, uc->peer_fd);
        fx_udp_close(uc->peer_fd);      /* fwxreplay emulates it (peer_hook) */
        if (c->client_fd == uc->peer_fd)
            c->client_fd = -1;
    }
    c->udp = NULL;
    free(uc);
}

BOOL udp_addr_allowed(struct connection *c, const SOCKADDR *addr, int len)
{
    unsigned char sa[28];
    int salen = sizeof(sa);
    if (fx_sa_from_win32(addr, len, sa, &salen) != 0)
        return FALSE;
    return fx_sa_equal(sa, salen, c->target_addr, c->target_len);
}

/* ------------------------------------------------------------ direct path */

/* No data filter: the target's datagrams go straight back to the client. */
static void server_io(fx_loop *loop, int fd, unsigned events, void *data)
{
    host_note_pump_pass();
    struct udp_conn *uc = data;
    struct connection *c = uc->c;
    unsigned char buf[UDP_DGRAM_MAX];

    for (int i = 0; i < UDP_BATCH; i++) {
        long n = fx_udp_recvfrom(fd, buf, sizeof(buf), NULL, NULL);
        if (n == -LINUX_EAGAIN)
            return;
        if (n < 0)
            continue;           /* an ICMP error of an earlier send: nothing to forward */
        long m = uc->peer_fd >= 0
                     ? fx_udp_sendto(uc->peer_fd, buf, (unsigned long)n, NULL, 0)
                     : fx_udp_sendto(uc->ur->fd, buf, (unsigned long)n, c->client_addr, c->client_len);
        if (m < 0) {
            uc->ur->dropped++;
            continue;
        }
        c->bytes_out += (unsigned long long)n;
        uc->datagrams++;
    }
}

static void dispatch(struct udp_rule *ur, const unsigned char *buf, long n,
                     const unsigned char *from, int fromlen, const unsigned char *dst, int dstlen);

/* A client datagram for uc: to the target, or to the chain's client end. */
static void from_client(struct udp_conn *uc, const unsigned char *buf, long n)
{
    struct connection *c = uc->c;

    if (uc->direct) {
        if (fx_udp_sendto(c->server_fd, buf, (unsigned long)n, NULL, 0) < 0) {
            uc->ur->dropped++;
            return;
        }
        c->bytes_in += (unsigned long long)n;
        uc->datagrams++;
    } else if (!uc->client_end ||
               !sock_dgram_push(uc->client_end, buf, (DWORD)n, &c->win_target,
                                c->win_target_len)) {
        uc->ur->dropped++;
    } else {
        uc->datagrams++;
    }
}

/* Outbound: the client's datagrams that the kernel delivers on its own
 * transparent socket. One from another source arrived in the connect race
 * (top of file): it is that source's, and goes where the rule's socket
 * would send it. */
static void peer_io(fx_loop *loop, int fd, unsigned events, void *data)
{
    host_note_pump_pass();
    struct udp_conn *uc = data;
    struct udp_rule *ur = uc->ur;
    unsigned char buf[UDP_DGRAM_MAX];

    for (int i = 0; i < UDP_BATCH; i++) {
        unsigned char from[28];
        int fromlen = sizeof(from);
        long n = fx_udp_recvfrom(fd, buf, sizeof(buf), from, &fromlen);
        if (n == -LINUX_EAGAIN)
            return;
        if (n < 0)
            continue;
        if (!fx_sa_equal(from, fromlen, uc->src, uc->srclen)) {
            ur->strays++;
            dispatch(ur, buf, n, from, fromlen, uc->dst, uc->dstlen);
            return;     /* dispatch may have run filters: uc is looked at again next time */
        }
        from_client(uc, buf, n);
    }
}

/* ------------------------------------------------------------ new clients */

static struct udp_conn *client_new(struct udp_rule *ur, const unsigned char *src, int srclen,
                                   const unsigned char *dst, int dstlen, unsigned h)
{
    struct rule *rule = ur->rule;
    struct worker *w = ur->w;
    struct connection *c;
    struct udp_conn *uc;
    FwxFirewallEvent ev;
    IFWXUdpDestination *dest = NULL;
    unsigned char local[28];
    int local_len = sizeof(local);
    char who[64];
    HRESULT hr;

    fx_addr_format(src, srclen, who, sizeof(who));
    if (ur->nclients >= UDP_MAX_CLIENTS) {
        if (!ur->full_logged)
            fx_log(FX_LOG_WARN, "rule %s: %u UDP clients at once; datagrams of new ones (%s) "
                   "are dropped until some expire", rname(ur), ur->nclients, who);
        ur->full_logged = TRUE;
        return NULL;
    }
    ur->full_logged = FALSE;
    /* [host] max-sessions counts UDP clients too (HOST-901): a flood of
     * source addresses would otherwise make connections without bound. */
    unsigned max = the_host->config->host.max_sessions;
    if ((unsigned)InterlockedCompareExchange(&the_host->live_connections, 0, 0) >= max) {
        if (!ur->max_logged)
            fx_log(FX_LOG_WARN, "rule %s: max-sessions (%u) reached; datagrams of new UDP "
                   "clients (%s) are dropped until some sessions end", rname(ur), max, who);
        ur->max_logged = TRUE;
        return NULL;
    }
    ur->max_logged = FALSE;
    /* Publishing: the published server's session. Outbound: the client's
     * own, one per client IP address, as for TCP (HOST-001). */
    struct session *s = rule->session;
    if (ur->outbound) {
        SOCKADDR_STORAGE win;
        int wlen = sizeof(win);
        s = fx_sa_to_win32(src, srclen, &win, &wlen) == 0 ? host_client_session(&win, wlen, TRUE) : NULL;
    }
    uc = s ? calloc(1, sizeof(*uc)) : NULL;
    c = uc ? connection_create(w, rule, s) : NULL;
    if (ur->outbound && s)
        connection_keep_client_session(c, s);
    if (!c) {
        free(uc);
        fx_log(FX_LOG_WARN, "rule %s: out of memory for UDP client %s", rname(ur), who);
        return NULL;
    }
    uc->peer_fd = -1;
    if (ur->outbound) {
        memcpy(uc->dst, dst, dstlen);
        uc->dstlen = dstlen;
    }
    c->dgram = TRUE;
    c->udp = uc;
    uc->ur = ur;
    uc->c = c;
    memcpy(uc->src, src, srclen);
    uc->srclen = srclen;
    uc->hash = h;
    uc->next = ur->buckets[h % UDP_BUCKETS];
    ur->buckets[h % UDP_BUCKETS] = uc;
    ur->nclients++;

    connection_set_addr(c->client_addr, &c->client_len, &c->win_remote, &c->win_remote_len, src,
                        srclen);
    if (ur->outbound)
        memcpy(local, dst, local_len = dstlen);      /* where the client thinks it sends */
    else if (fx_sa_is_any(&rule->conf->listen, rule->conf->listen_len))
        fx_udp_getsockname(ur->fd, local, &local_len);
    else
        memcpy(local, &rule->conf->listen, local_len = rule->conf->listen_len);
    connection_set_addr(c->local_addr, &c->local_len, &c->win_local, &c->win_local_len, local,
                        local_len);
    if (ur->outbound)
        connection_set_addr(c->target_addr, &c->target_len, &c->win_target, &c->win_target_len,
                            dst, dstlen);
    else
        connection_set_addr(c->target_addr, &c->target_len, &c->win_target, &c->win_target_len,
                            &rule->conf->target, rule->conf->target_len);
    InterlockedIncrement(&w->connections);
    InterlockedIncrement(&the_host->live_connections);
    InterlockedIncrement(&the_host->total_connections);
    InterlockedIncrement(&rule->connections);
    InterlockedIncrement(&rule->live);
    if (ur->outbound) {
        char text[64];
        fx_addr_format(dst, dstlen, text, sizeof(text));
        fx_log(FX_LOG_INFO, "conn %lu rule %s: new UDP client %s to %s", c->id, rname(ur), who, text);
    } else {
        fx_log(FX_LOG_INFO, "conn %lu rule %s: new UDP client %s", c->id, rname(ur), who);
    }

    /* The one destination of a publishing rule's client: its target. */
    memset(&ev, 0, sizeof(ev));
    hr = udpdest_create(c, &dest);
    if (SUCCEEDED(hr)) {
        ev.EventType = fwx_Udp_Destination;   /* its one destination (HOST-200) */
        ev.Parameters.UdpDest.Address = (LPSOCKADDR)&c->win_target;
        ev.Parameters.UdpDest.AddressLength = c->win_target_len;
        ev.Parameters.UdpDest.piConnection = connection_iface(c);
        ev.Parameters.UdpDest.piUdpDestination = dest;
        ev.Parameters.UdpDest.FilterAccess = FWX_PASS;
        /* Port ranges: the listening port (publish), the destination's (outbound). */
        unsigned port = ntohs(((SOCKADDR_IN *)&c->win_local)->sin_port);
        hr = session_raise(c->session, &ev, port, c);
        session_apply_factories(c->session, fwx_Udp_Destination, &c->win_target,
                                c->win_target_len, c);
        IFWXUdpDestination_Release(dest);   /* ours; a filter may keep its own */
    }
    uc->last_change = fx_now_ms();
    uc->timer = fx_timer_start(w->loop, check_period_ms(ur), idle_check, uc);

    if (c->denied || FAILED(hr)) {
        InterlockedIncrement(c->denied ? &rule->denials : &rule->refused);
        if (c->denied) {
            InterlockedIncrement(&the_host->denied_connections);
            fx_log(FX_LOG_NOTICE, "conn %lu rule %s: UDP client %s denied by filter %s; its "
                   "datagrams are dropped for %u s", c->id, rname(ur), who, c->denied_by,
                   rule->conf->udp_timeout);
        } else if (hr != FX_E_FILTER_DISABLED) {
            fx_log(FX_LOG_WARN, "conn %lu rule %s: UDP client %s refused: %s (0x%08lx); its "
                   "datagrams are dropped for %u s", c->id, rname(ur), who,
                   hr == FX_E_FILTER_FAULT ? "a filter faulted handling the event"
                                           : "a filter failed the event",
                   (unsigned long)hr, rule->conf->udp_timeout);
        }
        uc->denied = TRUE;
        c->state = CONN_DONE;
        return uc;
    }

    int fd = connect_hook ? connect_hook(c->client_addr, c->client_len, c->target_addr,
                                         c->target_len, connect_hook_arg)
                          : fx_udp_connect(c->target_addr, c->target_len);
    if (fd < 0) {
        char text[64];
        fx_addr_format(c->target_addr, c->target_len, text, sizeof(text));
        fx_log(FX_LOG_WARN, "conn %lu rule %s: UDP socket to target %s failed: %s", c->id,
               rname(ur), text, strerror(-fd));
        InterlockedIncrement(&rule->refused);
        c->aborted = TRUE;
        connection_teardown(c);
        return NULL;
    }
    c->server_fd = fd;
    /* GetExternalSocketName: our address towards the target. */
    unsigned char ext[28];
    int ext_len = sizeof(ext);
    c->win_ext_len = sizeof(c->win_ext);
    if (fx_udp_getsockname(fd, ext, &ext_len) != 0 ||
        fx_sa_to_win32(ext, ext_len, &c->win_ext, &c->win_ext_len) != 0)
        c->win_ext_len = 0;
    if (ur->outbound) {
        /* Answers must come from the destination the client sent to. */
        int pfd = peer_hook ? peer_hook(dst, dstlen, src, srclen, connect_hook_arg)
                            : fx_udp_transparent_peer(dst, dstlen, src, srclen);
        if (pfd < 0) {
            fx_log(FX_LOG_WARN, "conn %lu rule %s: transparent UDP socket for client %s failed: %s",
                   c->id, rname(ur), who, strerror(-pfd));
            InterlockedIncrement(&rule->refused);
            c->aborted = TRUE;
            connection_teardown(c);
            return NULL;
        }
        uc->peer_fd = pfd;
    }
    if (uc->peer_fd >= 0 && fx_loop_add_fd(w->loop, uc->peer_fd, FX_READ, peer_io, uc) != 0) {
        c->aborted = TRUE;
        connection_teardown(c);
        return NULL;
    }
    if (c->nchain == 0) {
        uc->direct = TRUE;
        c->state = CONN_PUMPING;
        if (fx_loop_add_fd(w->loop, fd, FX_READ, server_io, uc) != 0) {
            c->aborted = TRUE;
            connection_teardown(c);
            return NULL;
        }
        if (uc->peer_fd >= 0)
            c->client_fd = uc->peer_fd;     /* closed by udp_conn_ended */
        return uc;
    }
    /* The client end sends through the rule's socket, or outbound through
     * the client's transparent socket; this file reads both and feeds it. */
    c->client_fd = uc->peer_fd >= 0 ? uc->peer_fd : ur->fd;
    connection_start_pump(c);
    EnterCriticalSection(&c->lock);
    /* connection_start_pump puts the client end first. */
    if (!c->terminated && c->nsocks > 0)
        uc->client_end = c->socks[0];
    LeaveCriticalSection(&c->lock);
    return uc;
}

/* ------------------------------------------------------------ the rule's socket */

static void rule_io(fx_loop *loop, int fd, unsigned events, void *data)
{
    host_note_pump_pass();
    struct udp_rule *ur = data;
    unsigned char buf[UDP_DGRAM_MAX];

    for (int i = 0; i < UDP_BATCH && ur->fd >= 0; i++) {
        unsigned char from[28];
        int fromlen = sizeof(from);
        unsigned char dst[28];
        int dstlen = sizeof(dst);
        long n = ur->outbound ? fx_udp_recvorig(fd, buf, sizeof(buf), from, &fromlen, dst, &dstlen)
                              : fx_udp_recvfrom(fd, buf, sizeof(buf), from, &fromlen);
        if (n == -LINUX_EAGAIN)
            return;
        if (n < 0)
            continue;
        if (!ur->outbound) {
            dstlen = 0;
        } else if (dstlen < 4 || ((unsigned)dst[2] << 8 | dst[3]) == ur->listen_port) {
            /* Not redirected, or sent to the rule's own port: no destination
             * but ourselves, and forwarding it would loop. */
            if (!ur->loop_logged) {
                char who[64];
                fx_addr_format(from, fromlen, who, sizeof(who));
                fx_log(FX_LOG_WARN, "rule %s: datagram from %s was not redirected by iptables "
                       "TPROXY (or its destination is the rule's own port); dropped (logged once)",
                       rname(ur), who);
            }
            ur->loop_logged = TRUE;
            ur->dropped++;
            continue;
        }
        dispatch(ur, buf, n, from, fromlen, dst, dstlen);
    }
}

/* A client datagram to its client's connection, made on the first one. */
static void dispatch(struct udp_rule *ur, const unsigned char *buf, long n,
                     const unsigned char *from, int fromlen, const unsigned char *dst, int dstlen)
{
    unsigned h = addr_hash(from, fromlen, dst, dstlen);
    struct udp_conn *uc = lookup(ur, from, fromlen, dst, dstlen, h);

    if (!uc && !(uc = client_new(ur, from, fromlen, dst, dstlen, h))) {
        ur->dropped++;
        return;
    }
    if (uc->denied) {
        ur->dropped++;
        return;
    }
    from_client(uc, buf, n);
}

int udp_rule_open(struct rule *rule, struct worker *w, char *err, size_t errlen)
{
    return udp_rule_open_fd(rule, w, -1, err, errlen);
}

int udp_rule_open_fd(struct rule *rule, struct worker *w, int fd, char *err, size_t errlen)
{
    struct udp_rule *ur = calloc(1, sizeof(*ur));
    if (!ur) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    ur->rule = rule;
    ur->w = w;
    ur->outbound = rule->conf->type == FX_RULE_OUTBOUND;
    ur->listen_port = (unsigned)((const unsigned char *)&rule->conf->listen)[2] << 8 |
                      ((const unsigned char *)&rule->conf->listen)[3];
    if (fd >= 0) {
        ur->fd = fd;            /* fwxreplay's in-memory socket (HOST-800) */
    } else if (fx_inherited()) {
        /* Under the supervisor: the socket it bound ("udp ADDR:PORT",
         * fxinherit.h); a reload's old worker closes its copy on drain. */
        char key[FX_INHERIT_KEYLEN];
        fx_inherit_rule_key(rule->conf, key);
        ur->fd = fx_inherited_fd(key);
        if (ur->fd < 0)
            snprintf(err, errlen, "the supervisor handed down no UDP socket for this address");
    } else {
        ur->fd = ur->outbound
                     ? fx_udp_bind_transparent(&rule->conf->listen, rule->conf->listen_len, err, errlen)
                     : fx_udp_bind(&rule->conf->listen, rule->conf->listen_len, err, errlen);
    }
    if (ur->fd < 0 || fx_loop_add_fd(w->loop, ur->fd, FX_READ, rule_io, ur) != 0) {
        if (ur->fd >= 0) {
            close(ur->fd);
            snprintf(err, errlen, "cannot watch the UDP socket");
        }
        free(ur);
        return -1;
    }
    rule->udp = ur;
    char text[64];
    fx_addr_format(&rule->conf->listen, rule->conf->listen_len, text, sizeof(text));
    fx_log(FX_LOG_INFO, "rule %s: %sUDP on %s, destinations expire after %u s", rule->conf->name,
           ur->outbound ? "transparent (TPROXY) " : "", text, rule->conf->udp_timeout);
    return 0;
}

void udp_rule_stop(struct rule *rule)
{
    struct udp_rule *ur = rule->udp;
    struct connection **all;
    unsigned n = 0;

    if (!ur || ur->fd < 0)
        return;
    fx_loop_del_fd(ur->w->loop, ur->fd);
    fx_udp_close(ur->fd);
    ur->fd = -1;
    if (ur->dropped)
        fx_log(FX_LOG_INFO, "rule %s: %llu datagrams dropped (denied, unknown or queue full)",
               rname(ur), ur->dropped);
    if (ur->strays)
        fx_log(FX_LOG_INFO, "rule %s: %llu datagrams of one client reached another's socket while "
               "it was being connected; passed on to their own client", rname(ur), ur->strays);
    if (!(all = calloc(ur->nclients + 1, sizeof(*all))))
        return;
    for (unsigned b = 0; b < UDP_BUCKETS; b++)
        for (struct udp_conn *uc = ur->buckets[b]; uc; uc = uc->next)
            all[n++] = uc->c;
    for (unsigned i = 0; i < n; i++)
        connection_teardown(all[i]);
    free(all);
}
