/*
 * fxload.c - the small native load tools of bench/run (not part of the
 * build; bench/run compiles it with plain gcc).  Loopback only, every loop
 * bounded in count and in time.
 *
 *   fxload echo     --listen 127.0.0.1:PORT [--max-seconds S]
 *       epoll echo server: sends back what it reads, closes on EOF.
 *       Prints "ready" once listening.  Exits on SIGTERM/SIGINT or after S
 *       seconds (default 3600).
 *
 *   fxload connrate --connect 127.0.0.1:PORT [--seconds S] [--conc C] [--size N]
 *       short connections: connect, send N bytes (default 64), read the N
 *       echoed bytes, close; C in flight (default 32) for S seconds
 *       (default 3).  Prints "connrate CONNS_PER_S ok=K errors=E".
 *
 *   fxload latency  --connect 127.0.0.1:PORT [--connect ...] [--rate R]
 *                   [--seconds S] [--conns C] [--size N]
 *       request/response at a fixed rate of R per second (default 2000) to
 *       each target, open loop on one timer whose ticks go to the targets in
 *       turn (all targets share the same time window); C persistent
 *       connections per target (default 8), one request outstanding per
 *       connection.  Latency counts from the scheduled send time (no
 *       coordinated omission).  Prints per target, in the order given,
 *       "latency INDEX p50_us=.. p99_us=.. p999_us=.. max_us=.. n=.." and
 *       then "late L of N" (requests sent more than 1 ms after schedule).
 *
 *   fxload idle     --connect 127.0.0.1:PORT --conns N [--hold S]
 *       opens N connections (at most 256 connecting at once), sends one byte
 *       on each and waits for it to come back, so every session exists end
 *       to end; prints "held N" (or "held K of N, E errors") and holds them
 *       until SIGTERM/SIGINT or S seconds (default 120).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_signal(int s) { (void)s; stop = 1; }

static void die(const char *what)
{
    fprintf(stderr, "fxload: %s: %s\n", what, strerror(errno));
    exit(2);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static struct sockaddr_in parse_addr(const char *s)
{
    struct sockaddr_in a;
    char host[64];
    const char *colon = strrchr(s, ':');
    memset(&a, 0, sizeof a);
    if (!colon || (size_t)(colon - s) >= sizeof host) {
        fprintf(stderr, "fxload: bad address %s (want 127.0.0.1:PORT)\n", s);
        exit(2);
    }
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        fprintf(stderr, "fxload: bad address %s\n", s);
        exit(2);
    }
    return a;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int nb_connect(const struct sockaddr_in *a)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0) return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (const struct sockaddr *)a, sizeof *a) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ------------------------------------------------------------------ echo */

struct econn { int fd; unsigned len, off; char buf[4096]; };

static int cmd_echo(const char *listen_at, int max_seconds)
{
    struct sockaddr_in a = parse_addr(listen_at);
    int one = 1, lfd, ep;
    struct epoll_event ev, evs[256];
    uint64_t deadline = now_ns() + (uint64_t)max_seconds * 1000000000ull;

    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) die("socket");
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(lfd, 4096) < 0) die("listen");
    ep = epoll_create1(EPOLL_CLOEXEC);
    ev.events = EPOLLIN;
    ev.data.ptr = NULL;
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    printf("ready\n");
    fflush(stdout);

    while (!stop && now_ns() < deadline) {
        int n = epoll_wait(ep, evs, 256, 500), i;
        for (i = 0; i < n; i++) {
            struct econn *c = evs[i].data.ptr;
            if (!c) {
                int k;
                for (k = 0; k < 256; k++) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = calloc(1, sizeof *c);
                    if (!c) { close(fd); continue; }
                    c->fd = fd;
                    ev.events = EPOLLIN;
                    ev.data.ptr = c;
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            for (;;) {
                ssize_t r;
                if (c->off < c->len) {
                    ssize_t w = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
                    if (w < 0 && errno == EAGAIN) {
                        ev.events = EPOLLOUT;
                        ev.data.ptr = c;
                        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                        break;
                    }
                    if (w < 0) goto drop;
                    c->off += (unsigned)w;
                    continue;
                }
                if (evs[i].events & EPOLLOUT) {
                    ev.events = EPOLLIN;
                    ev.data.ptr = c;
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                    evs[i].events = EPOLLIN;
                }
                r = recv(c->fd, c->buf, sizeof c->buf, 0);
                if (r > 0) { c->len = (unsigned)r; c->off = 0; continue; }
                if (r < 0 && errno == EAGAIN) break;
            drop:
                close(c->fd);
                free(c);
                break;
            }
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ connrate */

struct cconn { int fd; unsigned sent, got; };

static int cmd_connrate(const char *to, int seconds, int conc, unsigned size)
{
    struct sockaddr_in a = parse_addr(to);
    int ep = epoll_create1(EPOLL_CLOEXEC), i, active = 0;
    struct cconn *cs = calloc((size_t)conc, sizeof *cs);
    char *req = malloc(size), rbuf[65536];
    struct epoll_event ev, evs[256];
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)seconds * 1000000000ull, t1;
    unsigned long ok = 0, errors = 0;

    memset(req, 'c', size);
    for (i = 0; i < conc; i++) cs[i].fd = -1;
    while (!stop) {
        int n;
        uint64_t t = now_ns();
        if (t < end) {
            for (i = 0; i < conc; i++) {
                if (cs[i].fd >= 0) continue;
                cs[i].fd = nb_connect(&a);
                cs[i].sent = cs[i].got = 0;
                if (cs[i].fd < 0) { errors++; continue; }
                ev.events = EPOLLOUT | EPOLLIN;
                ev.data.u32 = (uint32_t)i;
                epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
                active++;
            }
        } else if (active == 0 || t > end + 5000000000ull) {
            break;
        }
        if (errors > 100000) break;
        n = epoll_wait(ep, evs, 256, 100);
        for (i = 0; i < n; i++) {
            struct cconn *c = &cs[evs[i].data.u32];
            int done = 0, bad = 0;
            if (c->fd < 0) continue;
            if (evs[i].events & (EPOLLERR | EPOLLHUP) && !(evs[i].events & EPOLLIN)) bad = 1;
            if (!bad && c->sent < size && (evs[i].events & EPOLLOUT)) {
                ssize_t w = send(c->fd, req + c->sent, size - c->sent, MSG_NOSIGNAL);
                if (w > 0) c->sent += (unsigned)w;
                else if (w < 0 && errno != EAGAIN) bad = 1;
                if (c->sent == size) {
                    ev.events = EPOLLIN;
                    ev.data.u32 = evs[i].data.u32;
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                }
            }
            if (!bad && (evs[i].events & EPOLLIN)) {
                ssize_t r = recv(c->fd, rbuf, sizeof rbuf, 0);
                if (r > 0) { c->got += (unsigned)r; if (c->got >= size) done = 1; }
                else if (r == 0 || errno != EAGAIN) bad = 1;
            }
            if (done || bad) {
                close(c->fd);
                c->fd = -1;
                active--;
                if (done) ok++; else errors++;
            }
        }
    }
    t1 = now_ns();
    printf("connrate %.0f ok=%lu errors=%lu\n", ok / ((t1 - t0) / 1e9), ok, errors);
    return ok ? 0 : 1;
}

/* ------------------------------------------------------------------ latency */

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

struct lconn { int fd; int busy; int target; uint64_t sched; unsigned got; };

/* ntarget targets, each at `rate` requests/s over nconn connections; the
 * targets take turns on one timer (tick t goes to target t % ntarget), so
 * every target is sampled across the same time window and shares the same
 * machine hiccups. */
static int cmd_latency(const char **to, int ntarget, int rate, int seconds, int nconn, unsigned size)
{
    int ep = epoll_create1(EPOLL_CLOEXEC), tfd, i, t, n_all = nconn * ntarget;
    struct lconn *cs = calloc((size_t)n_all, sizeof *cs);
    size_t per = (size_t)rate * (size_t)seconds, total = per * (size_t)ntarget;
    size_t nsched = 0, ndone_all = 0, late = 0;
    size_t *ndone = calloc((size_t)ntarget, sizeof *ndone), *qhead = calloc((size_t)ntarget, sizeof *qhead);
    size_t *nsch = calloc((size_t)ntarget, sizeof *nsch);
    uint64_t **sched = calloc((size_t)ntarget, sizeof *sched), **lat = calloc((size_t)ntarget, sizeof *lat);
    char *req = malloc(size), rbuf[65536];
    struct epoll_event ev, evs[64];
    struct itimerspec its;
    uint64_t period = 1000000000ull / ((uint64_t)rate * (uint64_t)ntarget), start, hard_end;
    int rc = 0;

    memset(req, 'l', size);
    for (t = 0; t < ntarget; t++) {
        sched[t] = calloc(per + 1, sizeof **sched);
        lat[t] = calloc(per + 1, sizeof **lat);
    }
    for (i = 0; i < n_all; i++) {
        struct sockaddr_in a = parse_addr(to[i / nconn]);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        cs[i].fd = fd;
        cs[i].target = i / nconn;
    }
    /* warm up every connection once (the proxies set up lazily) */
    for (i = 0; i < n_all; i++) {
        unsigned got = 0;
        if (send(cs[i].fd, req, size, MSG_NOSIGNAL) != (ssize_t)size) die("warm-up send");
        while (got < size) {
            struct timeval tv = { 5, 0 };
            ssize_t r;
            setsockopt(cs[i].fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            r = recv(cs[i].fd, rbuf, sizeof rbuf, 0);
            if (r <= 0) { fprintf(stderr, "fxload: warm-up of %s failed\n", to[cs[i].target]); return 2; }
            got += (unsigned)r;
        }
        fcntl(cs[i].fd, F_SETFL, O_NONBLOCK);
        ev.events = EPOLLIN;
        ev.data.u32 = (uint32_t)i;
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
    }
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    start = now_ns() + 1000000;
    its.it_value.tv_sec = (time_t)(start / 1000000000ull);
    its.it_value.tv_nsec = (long)(start % 1000000000ull);
    its.it_interval.tv_sec = 0;
    its.it_interval.tv_nsec = (long)period;
    timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
    ev.events = EPOLLIN;
    ev.data.u32 = 0xffffffffu;
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
    hard_end = start + (uint64_t)seconds * 1000000000ull + 5000000000ull;

    while (!stop && ndone_all < total && now_ns() < hard_end) {
        int n = epoll_wait(ep, evs, 64, 100), j;
        for (j = 0; j < n; j++) {
            if (evs[j].data.u32 == 0xffffffffu) {
                uint64_t k = 0;
                if (read(tfd, &k, sizeof k) == sizeof k)
                    while (k-- > 0 && nsched < total) {
                        t = (int)(nsched % (size_t)ntarget);
                        sched[t][nsch[t]++] = start + nsched * period;
                        nsched++;
                    }
                continue;
            }
            {
                struct lconn *c = &cs[evs[j].data.u32];
                ssize_t r = recv(c->fd, rbuf, sizeof rbuf, 0);
                if (r == 0 || (r < 0 && errno != EAGAIN)) {
                    fprintf(stderr, "fxload: latency: connection to %s lost\n", to[c->target]);
                    return 2;
                }
                if (r > 0 && c->busy) {
                    c->got += (unsigned)r;
                    if (c->got >= size) {
                        lat[c->target][ndone[c->target]++] = now_ns() - c->sched;
                        ndone_all++;
                        c->busy = 0;
                    }
                }
            }
        }
        /* send every due request on a free connection of its target */
        for (i = 0; i < n_all; i++) {
            t = cs[i].target;
            if (cs[i].busy || qhead[t] >= nsch[t]) continue;
            if (send(cs[i].fd, req, size, MSG_NOSIGNAL) != (ssize_t)size) die("send");
            cs[i].busy = 1;
            cs[i].got = 0;
            cs[i].sched = sched[t][qhead[t]];
            if (now_ns() - cs[i].sched > 1000000) late++;
            qhead[t]++;
        }
    }
    for (t = 0; t < ntarget; t++) {
        size_t nd = ndone[t];
        if (nd == 0) { printf("latency %d none\n", t); rc = 2; continue; }
        qsort(lat[t], nd, sizeof **lat, cmp_u64);
        printf("latency %d p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f n=%zu\n", t,
               lat[t][nd / 2] / 1e3, lat[t][(size_t)(nd * 0.99)] / 1e3,
               lat[t][(size_t)(nd * 0.999)] / 1e3, lat[t][nd - 1] / 1e3, nd);
        if (nd != per) rc = 1;
    }
    printf("late %zu of %zu\n", late, total);
    return rc;
}

/* ------------------------------------------------------------------ idle */

static int cmd_idle(const char *to, int n, int hold)
{
    struct sockaddr_in a = parse_addr(to);
    int ep = epoll_create1(EPOLL_CLOEXEC), *fds = calloc((size_t)n, sizeof(int));
    unsigned char *state = calloc((size_t)n, 1);   /* 0 none, 1 connecting, 2 sent, 3 held, 4 error */
    int opened = 0, inflight = 0, held = 0, errs = 0, i;
    struct epoll_event ev, evs[256];
    uint64_t end_open = now_ns() + 60000000000ull, end, last_progress = now_ns();
    int last_count = 0;

    /* stops opening after 60 s, or 3 s without any session completing
     * (e.g. the proxy ran out of file descriptors and stopped accepting) */
    while (!stop && held + errs < n && now_ns() < end_open) {
        int k;
        if (held + errs != last_count) {
            last_count = held + errs;
            last_progress = now_ns();
        } else if (now_ns() - last_progress > 3000000000ull) {
            break;
        }
        while (opened < n && inflight < 256) {
            int fd = nb_connect(&a);
            if (fd < 0) { errs++; opened++; continue; }
            fds[opened] = fd;
            state[opened] = 1;
            ev.events = EPOLLOUT;
            ev.data.u32 = (uint32_t)opened;
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
            opened++;
            inflight++;
        }
        k = epoll_wait(ep, evs, 256, 100);
        for (i = 0; i < k; i++) {
            int id = (int)evs[i].data.u32;
            char b = 'i';
            if (state[id] == 1) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(fds[id], SOL_SOCKET, SO_ERROR, &err, &el);
                if (err || send(fds[id], &b, 1, MSG_NOSIGNAL) != 1) goto bad;
                state[id] = 2;
                ev.events = EPOLLIN;
                ev.data.u32 = (uint32_t)id;
                epoll_ctl(ep, EPOLL_CTL_MOD, fds[id], &ev);
            } else if (state[id] == 2) {
                ssize_t r = recv(fds[id], &b, 1, 0);
                if (r < 0 && errno == EAGAIN) continue;
                if (r != 1) goto bad;
                state[id] = 3;
                held++;
                inflight--;
                epoll_ctl(ep, EPOLL_CTL_DEL, fds[id], NULL);
            }
            continue;
        bad:
            epoll_ctl(ep, EPOLL_CTL_DEL, fds[id], NULL);
            close(fds[id]);
            state[id] = 4;
            errs++;
            inflight--;
        }
    }
    if (held == n) printf("held %d\n", held);
    else printf("held %d of %d, %d errors\n", held, n, errs);
    fflush(stdout);
    end = now_ns() + (uint64_t)hold * 1000000000ull;
    while (!stop && now_ns() < end) usleep(50000);
    return held == n ? 0 : 1;
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : "", *addr = NULL, *addrs[64];
    int naddr = 0;
    int seconds = -1, conc = 32, rate = 2000, conns = -1, hold = 120, i;
    unsigned size = 64;
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    for (i = 2; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--listen") || !strcmp(k, "--connect")) {
            addr = v;
            if (naddr < 64) addrs[naddr++] = v;
        }
        else if (!strcmp(k, "--seconds") || !strcmp(k, "--max-seconds")) seconds = atoi(v);
        else if (!strcmp(k, "--conc")) conc = atoi(v);
        else if (!strcmp(k, "--rate")) rate = atoi(v);
        else if (!strcmp(k, "--conns")) conns = atoi(v);
        else if (!strcmp(k, "--size")) size = (unsigned)atoi(v);
        else if (!strcmp(k, "--hold")) hold = atoi(v);
        else { fprintf(stderr, "fxload: unknown option %s\n", k); return 2; }
    }
    if (!addr || size == 0 || size > 65536 || conc < 1 || rate < 1) {
        fprintf(stderr, "usage: see the comment at the top of bench/fxload.c\n");
        return 2;
    }
    if (!strcmp(cmd, "echo")) return cmd_echo(addr, seconds > 0 ? seconds : 3600);
    if (!strcmp(cmd, "connrate")) return cmd_connrate(addr, seconds > 0 ? seconds : 3, conc, size);
    if (!strcmp(cmd, "latency"))
        return cmd_latency(addrs, naddr, rate, seconds > 0 ? seconds : 5, conns > 0 ? conns : 8, size);
    if (!strcmp(cmd, "idle")) return cmd_idle(addr, conns > 0 ? conns : 10000, hold);
    fprintf(stderr, "fxload: unknown command '%s' (echo, connrate, latency, idle)\n", cmd);
    return 2;
}
