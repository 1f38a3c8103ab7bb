/*
 * fxreplayudp.c - the fwxreplay driver for UDP scripts (fxreplay.h,
 * docs/replay-format.md "UDP scripts", HOST-800/801).
 *
 * Owns the driver's end of the rule's in-memory socket and the table of
 * server ends (one per client address, registered by the host's connect
 * hook on its loop thread). Every datagram is one AF_UNIX datagram with an
 * fx_udp_frame header (fxudp.h): boundaries are kept and never split.
 *
 * One step at a time: send the datagram, wait until the host has read it
 * (SIOCOUTQ of our end back to 0) and until the pump reports quiet
 * (o->quiet: no pump pass between two loop barriers), then read whatever
 * reached either side. What arrived is recorded under the step that caused
 * it; a step after which the side it was meant for received nothing is
 * "not delivered". No step waits on a clock except the bound --timeout.
 */
#define _GNU_SOURCE
#include "fxreplayudp.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fxloop.h"

#include "fxudp.h"

#ifndef SIOCOUTQ
#define SIOCOUTQ TIOCOUTQ
#endif

#define MAX_SERVERS 1024
#define DGRAM_MAX 65536

/* An end the host opened: towards the server for a client (kind 0), or
 * outbound, the client's transparent socket for a destination (kind 1). */
struct host_end {
    int kind;
    unsigned char client[28], dst[28];
    int client_len, dst_len;
    int fd;
};

static pthread_mutex_t servers_lock = PTHREAD_MUTEX_INITIALIZER;
static struct host_end servers[MAX_SERVERS];
static int nservers;

static int add_end(int kind, const void *client, int client_len, const void *dst, int dst_len,
                   int fd)
{
    int rc = -1;
    if (client_len < 0 || client_len > 28 || dst_len < 0 || dst_len > 28)
        return -1;
    pthread_mutex_lock(&servers_lock);
    if (nservers < MAX_SERVERS) {
        struct host_end *e = &servers[nservers];
        memset(e, 0, sizeof(*e));
        e->kind = kind;
        memcpy(e->client, client, client_len);
        e->client_len = client_len;
        if (dst)
            memcpy(e->dst, dst, dst_len);
        e->dst_len = dst_len;
        e->fd = fd;
        nservers++;
        rc = 0;
    }
    pthread_mutex_unlock(&servers_lock);
    return rc;
}

int fx_replay_udp_add_server(const void *client, int client_len, const void *target,
                             int target_len, int fd)
{
    return add_end(0, client, client_len, target, target_len, fd);
}

int fx_replay_udp_add_client(const void *client, int client_len, const void *dst, int dst_len,
                             int fd)
{
    return add_end(1, client, client_len, dst, dst_len, fd);
}

/* The newest end of that kind for client (and dst unless NULL): a destination
 * that expired and came back has a newer one; -1 if the host opened none. */
static int end_of(int kind, const void *client, int client_len, const void *dst, int dst_len)
{
    int fd = -1;
    pthread_mutex_lock(&servers_lock);
    for (int i = nservers - 1; i >= 0 && fd < 0; i--)
        if (servers[i].kind == kind &&
            fx_sa_equal(servers[i].client, servers[i].client_len, client, client_len) &&
            (!dst || fx_sa_equal(servers[i].dst, servers[i].dst_len, dst, dst_len)))
            fd = servers[i].fd;
    pthread_mutex_unlock(&servers_lock);
    return fd;
}

/* The host's socket towards the server for client: the one connected to
 * from (outbound rules have one per destination), else the newest. */
static int server_fd_of(const void *client, int client_len, const void *from, int from_len)
{
    int fd = end_of(0, client, client_len, from, from_len);
    return fd >= 0 ? fd : end_of(0, client, client_len, NULL, 0);
}

static int unread(int fd)
{
    int n = 0;
    return ioctl(fd, SIOCOUTQ, &n) == 0 ? n : 0;
}

static void addr_text(const void *sa, int len, char *buf, size_t cap)
{
    if (len <= 0 || fx_addr_format(sa, len, buf, cap) < 0)
        snprintf(buf, cap, "(none)");
}

/* "  WHO received from A to B: "..." with continuation lines of 64 bytes. */
static void record(fx_text *log, const char *who, const unsigned char *src, int srclen,
                   const unsigned char *dst, int dstlen, const unsigned char *p, size_t len)
{
    char a[64], b[64];
    addr_text(src, srclen, a, sizeof(a));
    addr_text(dst, dstlen, b, sizeof(b));
    fx_text_printf(log, "  %s received from %s to %s, %zu bytes:", who, a, b, len);
    if (!len)
        fx_text_add(log, " \"\"", 3);
    for (size_t off = 0; off < len; off += 64) {
        size_t n = len - off < 64 ? len - off : 64;
        fx_text_add(log, off ? "\n    \"" : " \"", off ? 6 : 2);
        fx_escape(log, p + off, n);
        fx_text_add(log, "\"", 1);
    }
    fx_text_add(log, "\n", 1);
}

/* Everything that reached the driver: datagrams per side. */
static void collect(int rule_fd, fx_text *log, unsigned *to_client, unsigned *to_server)
{
    static unsigned char buf[DGRAM_MAX];
    unsigned char src[28], dst[28];
    int sl, dl;
    long n;

    while ((n = fx_udp_frame_recv(rule_fd, buf, sizeof(buf), src, &sl, dst, &dl)) >= 0 ||
           n == -EPROTO) {
        if (n >= 0) {
            record(log, "client", src, sl, dst, dl, buf, (size_t)n);
            (*to_client)++;
        }
    }
    pthread_mutex_lock(&servers_lock);
    int count = nservers;
    pthread_mutex_unlock(&servers_lock);
    for (int i = 0; i < count; i++) {
        int fd = servers[i].fd;      /* entries below count never change */
        int client = servers[i].kind == 1;
        while ((n = fx_udp_frame_recv(fd, buf, sizeof(buf), src, &sl, dst, &dl)) >= 0 ||
               n == -EPROTO) {
            if (n >= 0) {
                record(log, client ? "client" : "server", src, sl, dst, dl, buf, (size_t)n);
                (*(client ? to_client : to_server))++;
            }
        }
    }
}

/* Until the host has read what we sent on fd and its pump is quiet. */
static int settle(int fd, const fx_replay_udp_opts *o, unsigned bound, fx_replay_result *r,
                  int line)
{
    uint64_t until = fx_now_ms() + bound;
    while (fd >= 0 && unread(fd) > 0 && fx_now_ms() < until)
        usleep(200);
    if (fd >= 0 && unread(fd) > 0) {
        fx_text_printf(&r->notes, "note: line %d: the host did not read the datagram within "
                       "%u ms\n", line, bound);
        return -1;
    }
    if (o->quiet && o->quiet(o->arg, bound) != 0) {
        fx_text_printf(&r->notes, "note: line %d: the host's pump did not go quiet within "
                       "%u ms\n", line, bound);
        return -1;
    }
    return 0;
}

int fx_replay_run_udp(const fx_script *s, int rule_fd, const fx_replay_udp_opts *o,
                      fx_replay_result *r, char *err, size_t errlen)
{
    unsigned bound = o->timeout_ms ? o->timeout_ms : 5000;
    fx_text *log = &r->udp_log;
    unsigned to_client = 0, to_server = 0;
    char a[64], b[64];

    r->udp = 1;
    (void)err;
    (void)errlen;
    for (size_t i = 0; i < s->nsteps; i++) {
        const fx_script_step *st = &s->steps[i];
        const void *from, *to;
        int from_len, to_len, fd;
        long n;

        switch (st->op) {
        case FX_STEP_CLIENT_DGRAM:
        case FX_STEP_SERVER_DGRAM: {
            int client_side = st->op == FX_STEP_CLIENT_DGRAM;
            from = st->from_len ? (const void *)&st->from : client_side ? (const void *)&s->client
                                                                        : (const void *)&s->target;
            from_len = st->from_len ? st->from_len : client_side ? s->client_len : s->target_len;
            to = st->to_len ? (const void *)&st->to : client_side ? (const void *)&s->target
                                                                : (const void *)&s->client;
            to_len = st->to_len ? st->to_len : client_side ? s->target_len : s->client_len;
            addr_text(from, from_len, a, sizeof(a));
            addr_text(to, to_len, b, sizeof(b));
            fx_text_printf(log, "line %d: %s from %s to %s, %zu bytes\n", st->line,
                           fx_step_name(st->op), a, b, st->len);
            if (client_side) {
                /* Outbound: once the host has the client's transparent socket
                 * for that destination, the kernel delivers there. */
                if ((fd = end_of(1, from, from_len, to, to_len)) < 0)
                    fd = rule_fd;
                n = fx_udp_frame_send(fd, from, from_len, to, to_len, st->data, st->len);
            } else if ((fd = server_fd_of(to, to_len, from, from_len)) < 0) {
                /* The host never opened a socket towards the server for that
                 * client: on the wire, nobody would be listening. */
                fx_text_printf(log, "  not delivered: the host has no socket towards the server "
                               "for client %s\n", b);
                continue;
            } else {
                /* To the host's socket for that client: its address is the
                 * frame's destination as the host sees it. */
                unsigned char ext[28];
                int ext_len = sizeof(ext);
                if (fx_udp_getsockname(fd, ext, &ext_len) != 0)
                    ext_len = 0;
                n = fx_udp_frame_send(fd, from, from_len, ext_len ? ext : NULL, ext_len, st->data,
                                      st->len);
            }
            if (n < 0) {
                fx_text_printf(log, "  not delivered: the host's socket refused it (%s)\n",
                               strerror((int)-n));
                continue;
            }
            unsigned before_c = to_client, before_s = to_server;
            settle(fd, o, bound, r, st->line);
            collect(rule_fd, log, &to_client, &to_server);
            if (client_side ? to_server == before_s : to_client == before_c)
                fx_text_printf(log, "  not delivered to the %s\n", client_side ? "server" : "client");
            break;
        }
        case FX_STEP_PAUSE:
            usleep(st->ms * 1000u);
            settle(-1, o, bound, r, st->line);
            collect(rule_fd, log, &to_client, &to_server);
            break;
        case FX_STEP_EXPECT_CLOSED:
            /* UDP has no end of connection: nothing to wait for. */
            settle(-1, o, bound, r, st->line);
            collect(rule_fd, log, &to_client, &to_server);
            break;
        default:
            break;      /* the parser refuses stream actions in UDP scripts */
        }
    }
    fx_text_printf(log, "client received %u datagrams, server received %u\n", to_client,
                   to_server);
    close(rule_fd);
    pthread_mutex_lock(&servers_lock);
    for (int i = 0; i < nservers; i++)
        close(servers[i].fd);
    nservers = 0;
    pthread_mutex_unlock(&servers_lock);
    return 0;
}
