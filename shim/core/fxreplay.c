/*
 * fxreplay.c - the fwxreplay driver (see fxreplay.h).
 *
 * Owns the driver's two socket ends while a script plays.  Every payload
 * is written chunk by chunk, and the next chunk waits until the host has
 * read the previous one completely (SIOCOUTQ of our end back to 0: on an
 * AF_UNIX stream the sender's queue counts the bytes its peer has not read
 * yet), so filters see the read boundaries the chunking asks for.  Our
 * own end is polled rather than FIONREAD on the host's: the host may close
 * and reuse that fd number at any time, ours stays valid.
 *
 * AF_UNIX has no RST.  Resets towards the driver are seen through the
 * fx_close_abort observer (the host resets an end only through it) and
 * through ECONNRESET.  A script's client-abort/server-abort resets the
 * host's end the way Linux does for AF_UNIX: our end is closed with
 * unread bytes in its receive queue (one byte the driver sends itself
 * through the host's fd), which makes the host's next read fail with
 * ECONNRESET, as a TCP RST would.
 */
#define _GNU_SOURCE
#include "fxreplay.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef SIOCOUTQ
#define SIOCOUTQ TIOCOUTQ       /* linux/sockios.h */
#endif

#define CHUNK_MAX (1u << 20)
#define RANDOM_MAX 512

int fx_chunking_parse(const char *text, fx_chunking *out, char *err, size_t errlen)
{
    unsigned long long v = 0;
    const char *d;
    int random;

    memset(out, 0, sizeof(*out));
    if (!strncmp(text, "fixed:", 6))
        random = 0, d = text + 6;
    else if (!strncmp(text, "random:", 7))
        random = 1, d = text + 7;
    else {
        snprintf(err, errlen, "--chunking is fixed:N or random:SEED, not '%s'", text);
        return -1;
    }
    if (!*d)
        goto bad;
    for (; *d; d++) {
        if (*d < '0' || *d > '9' || v > (~0ULL - 9) / 10)
            goto bad;
        v = v * 10 + (unsigned)(*d - '0');
    }
    if (!random && (v < 1 || v > CHUNK_MAX))
        goto bad;
    out->random = random;
    out->fixed = random ? 0 : (unsigned)v;
    out->seed = v;
    return 0;
bad:
    snprintf(err, errlen, "--chunking %s: %s", text,
             random ? "SEED is a decimal number" : "N is 1 to 1048576 bytes");
    return -1;
}

/* ------------------------------------------------------------ reset observer */

struct watched {
    int fd;
    dev_t dev;
    ino_t ino;
    volatile int reset;
};
static struct watched watch[2];   /* 0: host's client end, 1: host's server end */

static void abort_hook(int fd, void *arg)
{
    struct stat st;
    (void)arg;
    if (fstat(fd, &st) != 0)
        return;
    for (int i = 0; i < 2; i++)
        if (watch[i].fd == fd && watch[i].ino == st.st_ino && watch[i].dev == st.st_dev)
            __atomic_store_n(&watch[i].reset, 1, __ATOMIC_RELEASE);
}

static void watch_fd(int i, int fd)
{
    struct stat st;
    watch[i].fd = -1;
    watch[i].reset = 0;
    if (fstat(fd, &st) == 0) {
        watch[i].dev = st.st_dev;
        watch[i].ino = st.st_ino;
        watch[i].fd = fd;
    }
}

/* The host's end fd is still the socket we gave it? */
static int watch_still(int i)
{
    struct stat st;
    return watch[i].fd >= 0 && fstat(watch[i].fd, &st) == 0 && st.st_ino == watch[i].ino &&
           st.st_dev == watch[i].dev;
}

/* ------------------------------------------------------------ the driver */

struct end {
    const char *name;
    int fd;
    int eof, reset;            /* what we saw */
    int shut, aborted;         /* what the script did */
    fx_replay_side *side;
};

struct drv {
    struct end e[2];           /* 0 client, 1 server */
    const fx_replay_opts *o;
    fx_replay_result *r;
    uint64_t last_activity;
    uint64_t rng;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int end_over(const struct end *e)
{
    return e->fd < 0 || e->eof || e->reset;
}

static void drain(struct drv *d, struct end *e)
{
    unsigned char buf[65536];
    while (!end_over(e)) {
        ssize_t n = recv(e->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0) {
            fx_text_add(&e->side->rx, (const char *)buf, (size_t)n);
            d->last_activity = now_ms();
        } else if (n == 0) {
            e->eof = 1;
            d->last_activity = now_ms();
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN) {
            return;
        } else {
            e->reset = 1;      /* ECONNRESET, or anything else that ends it */
            d->last_activity = now_ms();
        }
    }
}

/* Reads both ends for up to ms (0: one non-blocking pass). */
static void pump(struct drv *d, unsigned ms)
{
    struct pollfd p[2];
    int n = 0;
    for (int i = 0; i < 2; i++)
        if (!end_over(&d->e[i])) {
            p[n].fd = d->e[i].fd;
            p[n].events = POLLIN | POLLRDHUP;
            p[n].revents = 0;
            n++;
        }
    if (n)
        poll(p, (nfds_t)n, (int)ms);
    else if (ms)
        usleep(ms * 1000);
    drain(d, &d->e[0]);
    drain(d, &d->e[1]);
}

static unsigned timeout(const struct drv *d)
{
    return d->o->timeout_ms ? d->o->timeout_ms : 5000;
}

static void note(struct drv *d, int line, const char *what)
{
    fx_text_printf(&d->r->notes, "note: line %d: %s\n", line, what);
}

static size_t next_chunk(struct drv *d, size_t left)
{
    size_t n;
    if (d->o->chunking.random) {
        /* xorshift64*: the same sizes for the same seed everywhere */
        uint64_t x = d->rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        d->rng = x;
        n = (size_t)((x * 0x2545F4914F6CDD1DULL) >> 33) % RANDOM_MAX + 1;
    } else {
        n = d->o->chunking.fixed ? d->o->chunking.fixed : 65536;
    }
    return n < left ? n : left;
}

/* Bytes of ours the host has not read yet; 0 when its end is gone. */
static int unread(int fd)
{
    int q = 0;
    if (ioctl(fd, SIOCOUTQ, &q) != 0)
        return 0;
    return q;
}

static void send_payload(struct drv *d, struct end *e, const fx_script_step *st)
{
    size_t off = 0;
    char msg[160];

    if (e->fd < 0 || e->shut)
        return;                    /* the script already ended this side */
    while (off < st->len) {
        size_t n = next_chunk(d, st->len - off), done = 0;
        uint64_t deadline = now_ms() + timeout(d);
        while (done < n) {
            ssize_t w = send(e->fd, st->data + off + done, n - done, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0) {
                done += (size_t)w;
                continue;
            }
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0 && errno == EAGAIN && now_ms() < deadline) {
                pump(d, 5);
                continue;
            }
            if (w < 0 && errno == EAGAIN) {
                snprintf(msg, sizeof(msg), "the host stopped reading %s data after %zu of %zu bytes",
                         e->name, off + done, st->len);
                note(d, st->line, msg);
            }
            return;                /* EPIPE/ECONNRESET: the host's end is gone */
        }
        off += n;
        /* The host reads this chunk completely before the next one goes out. */
        while (unread(e->fd) > 0) {
            if (now_ms() >= deadline) {
                snprintf(msg, sizeof(msg), "the host stopped reading %s data after %zu of %zu bytes",
                         e->name, off, st->len);
                note(d, st->line, msg);
                return;
            }
            pump(d, 1);
        }
        pump(d, 0);
    }
}

static void do_abort(struct drv *d, struct end *e, int idx)
{
    if (e->fd < 0)
        return;
    /* Unread bytes in our queue at close: the host's end gets ECONNRESET. */
    if (!end_over(e) && watch_still(idx)) {
        drain(d, e);
        char x = 'R';
        send(watch[idx].fd, &x, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    close(e->fd);
    e->fd = -1;
    e->aborted = 1;
}

static int both_over(struct drv *d)
{
    return end_over(&d->e[0]) && end_over(&d->e[1]);
}

int fx_replay_run(const fx_script *s, int client_fd, int host_client_fd, int server_fd,
                  int host_server_fd, const fx_replay_opts *o, fx_replay_result *r,
                  char *err, size_t errlen)
{
    struct drv d;
    int rc = 0;

    memset(&d, 0, sizeof(d));
    d.o = o;
    d.r = r;
    d.rng = o->chunking.seed * 0x9E3779B97F4A7C15ULL + 0x2545F4914F6CDD1DULL;
    if (!d.rng)
        d.rng = 1;
    d.e[0] = (struct end){ "client", client_fd, 0, 0, 0, 0, &r->client };
    d.e[1] = (struct end){ "server", server_fd, 0, 0, 0, 0, &r->server };
    watch_fd(0, host_client_fd);
    watch_fd(1, host_server_fd);
    fx_set_close_abort_hook(abort_hook, NULL);

    uint64_t deadline = now_ms() + timeout(&d);
    if (s->protocol == FX_PROTO_UDP) {
        snprintf(err, errlen, "a UDP script: fx_replay_run_udp plays it");
        rc = -1;
        goto out;
    }
    while (o->ready && !o->ready(o->arg)) {
        if (now_ms() >= deadline) {
            snprintf(err, errlen, "the host did not take the connection within %u ms", timeout(&d));
            rc = -1;
            goto out;
        }
        usleep(1000);
    }
    for (size_t i = 0; i < s->nsteps; i++) {
        const fx_script_step *st = &s->steps[i];
        struct end *c = &d.e[0], *sv = &d.e[1];
        switch (st->op) {
        case FX_STEP_CLIENT_SEND: send_payload(&d, c, st); break;
        case FX_STEP_SERVER_SEND: send_payload(&d, sv, st); break;
        case FX_STEP_CLIENT_SHUTDOWN:
        case FX_STEP_SERVER_SHUTDOWN: {
            struct end *e = st->op == FX_STEP_CLIENT_SHUTDOWN ? c : sv;
            if (e->fd >= 0 && !e->shut)
                shutdown(e->fd, SHUT_WR);
            e->shut = 1;
            pump(&d, 0);
            break;
        }
        case FX_STEP_CLIENT_ABORT: do_abort(&d, c, 0); break;
        case FX_STEP_SERVER_ABORT: do_abort(&d, sv, 1); break;
        case FX_STEP_PAUSE: {
            uint64_t until = now_ms() + st->ms;
            for (uint64_t t; (t = now_ms()) < until;)
                pump(&d, (unsigned)(until - t));
            pump(&d, 0);
            break;
        }
        case FX_STEP_EXPECT_CLOSED: {
            uint64_t until = now_ms() + timeout(&d);
            while (!both_over(&d) && now_ms() < until)
                pump(&d, 5);
            if (!both_over(&d)) {
                char msg[160];
                snprintf(msg, sizeof(msg), "expect-closed: the %s still open after %u ms",
                         !end_over(&d.e[0]) && !end_over(&d.e[1]) ? "client and server ends are"
                         : !end_over(&d.e[0]) ? "client end is" : "server end is", timeout(&d));
                note(&d, st->line, msg);
                r->expect_failed = 1;
            }
            break;
        }
        default:       /* datagrams: refused before the loop */
            break;
        }
    }
    /* The end: until both ends are over, the host is done, or nothing has
     * happened for settle_ms. */
    {
        unsigned settle = o->settle_ms ? o->settle_ms : 300;
        uint64_t until = now_ms() + timeout(&d);
        d.last_activity = now_ms();
        while (!both_over(&d) && now_ms() < until && now_ms() < d.last_activity + settle &&
               !(o->done && o->done(o->arg)))
            pump(&d, 5);
        pump(&d, 0);
    }
out:
    for (int i = 0; i < 2; i++) {
        struct end *e = &d.e[i];
        e->side->state = e->aborted ? FX_END_ABORTED
                         : e->reset || __atomic_load_n(&watch[i].reset, __ATOMIC_ACQUIRE) ? FX_END_RESET
                         : e->eof ? FX_END_CLOSED : FX_END_OPEN;
        if (e->fd >= 0)
            close(e->fd);
        e->fd = -1;
    }
    /* Our ends are closed: the host sees both ends finish and tears down. */
    if (o->done) {
        uint64_t until = now_ms() + timeout(&d);
        while (!o->done(o->arg) && now_ms() < until)
            usleep(1000);
        if (!o->done(o->arg) && rc == 0) {
            snprintf(err, errlen, "the host did not end the connection within %u ms of the "
                     "script's end", timeout(&d));
            rc = -1;
        }
    }
    fx_set_close_abort_hook(NULL, NULL);
    watch[0].fd = watch[1].fd = -1;
    return rc;
}

void fx_replay_result_free(fx_replay_result *r)
{
    fx_text_free(&r->client.rx);
    fx_text_free(&r->server.rx);
    fx_text_free(&r->notes);
    fx_text_free(&r->udp_log);
}

static void format_rx(fx_text *out, const char *who, const fx_text *rx)
{
    const unsigned char *p = (const unsigned char *)rx->p;
    size_t len = rx->len;
    if (!len) {
        fx_text_printf(out, "%s received nothing\n", who);
        return;
    }
    /* One line per received line, at most 64 bytes each. */
    while (len) {
        size_t n = 0;
        while (n < len && n < 64 && (n == 0 || p[n - 1] != '\n'))
            n++;
        fx_text_printf(out, "%s received: \"", who);
        fx_escape(out, p, n);
        fx_text_add(out, "\"\n", 2);
        p += n;
        len -= n;
    }
}

static const char *state_name(enum fx_end_state s)
{
    switch (s) {
    case FX_END_CLOSED: return "closed";
    case FX_END_RESET: return "reset";
    case FX_END_ABORTED: return "aborted by the script";
    default: return "open";
    }
}

void fx_replay_format(const fx_replay_result *r, const char *name, fx_text *out)
{
    const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
    fx_text_printf(out, "# fwxreplay golden file of %s (fwxreplay --update rewrites it)\n", base);
    if (r->udp) {
        fx_text_printf(out, "protocol: udp\n");
        fx_text_printf(out, "destinations denied: %ld\n", r->denied_destinations);
        if (r->notes.len)
            fx_text_add(out, r->notes.p, r->notes.len);
        if (r->udp_log.len)
            fx_text_add(out, r->udp_log.p, r->udp_log.len);
        return;
    }
    fx_text_printf(out, "connection: %s\n", r->denied ? "denied" : "allowed");
    if (r->notes.len)
        fx_text_add(out, r->notes.p, r->notes.len);
    format_rx(out, "server", &r->server.rx);
    fx_text_printf(out, "server saw: %s\n", state_name(r->server.state));
    format_rx(out, "client", &r->client.rx);
    fx_text_printf(out, "client saw: %s\n", state_name(r->client.state));
}
