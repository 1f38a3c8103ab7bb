/*
 * fxpeer.c - native TCP test peer for the fwxhost end-to-end tests
 * (tests/fwxhost.sh). Plain C and POSIX, no Wine: it stands on both sides
 * of a running fwxhost and checks that every byte came through intact.
 *
 *   fxpeer server --listen ADDR:PORT --send BYTES --seed S [--chunk C]
 *   fxpeer client --connect ADDR:PORT --conns N --send BYTES --recv BYTES
 *                 --seed S [--chunk C] [--index-base B] [--timeout SECONDS]
 *   fxpeer send   --connect ADDR:PORT (--data STRING | --file F) [--chunk C]
 *                 [--delay-ms D] [--out FILE] [--timeout SECONDS]
 *   fxpeer sink   --listen ADDR:PORT --out FILE [--count N] [--reply STRING]
 *   fxpeer probe  --connect ADDR:PORT [--data STRING] [--timeout SECONDS]
 *   fxpeer hold   --connect ADDR:PORT --conns N [--trickle-ms M] | --listen ADDR:PORT
 *   fxpeer iserver / iclient: the integrity mode (many sessions, random
 *                 chunking and half-close order; see "integrity mode")
 *
 * The deterministic streams. Every byte is a function of (seed, index,
 * direction, offset): byte p of a stream is byte p%8 of
 * splitmix64(key + p/8), so any chunking of the stream gives the same
 * bytes and a receiver can check each piece the moment it arrives.
 *
 * The client/server protocol, per connection:
 *   client -> server: 8-byte index (little endian), then BYTES of the
 *                     index's upload stream, then half-close;
 *   server -> client: BYTES of the index's download stream, then (once the
 *                     client's half-close has arrived) a 12-byte trailer:
 *                     the number of upload bytes it received (8, LE) and
 *                     their FNV-1a 32 (4, LE); then half-close.
 * The client checks the download stream byte by byte and the trailer
 * against what it sent, so its exit status covers both directions:
 * 0 every connection byte-identical, 1 a mismatch, 2 an error (connect
 * failure, reset, timeout, bad arguments). The server prints one line per
 * connection (what it received against the expected stream) for the log.
 *
 * server, sink: print "ready" on stdout once listening; stop on SIGTERM
 * or SIGINT (exit 0). Addresses are IPv4 ADDR:PORT or [IPv6]:PORT.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TRAILER_LEN 12
#define HEADER_LEN 8
#define RBUF_SIZE 65536
#define DIR_UP 0x5550ULL     /* client -> server */
#define DIR_DOWN 0x444fULL   /* server -> client */

/* ------------------------------------------------------------ small helpers */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    fputs("fxpeer: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t parse_size(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || s[0] == '-')
        die("%s: bad number '%s'", opt, s);
    if (*end == 'k' || *end == 'K')
        v <<= 10, end++;
    else if (*end == 'm' || *end == 'M')
        v <<= 20, end++;
    else if (*end == 'g' || *end == 'G')
        v <<= 30, end++;
    if (*end)
        die("%s: bad number '%s'", opt, s);
    return (uint64_t)v;
}

static socklen_t parse_addr(const char *s, struct sockaddr_storage *ss)
{
    char host[128];
    const char *colon;
    memset(ss, 0, sizeof(*ss));
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':' || (size_t)(close - s - 1) >= sizeof(host))
            die("bad address '%s' (expected ADDR:PORT or [ADDR6]:PORT)", s);
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = 0;
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof(host))
            die("bad address '%s' (expected ADDR:PORT)", s);
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = 0;
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port < 0 || port > 65535)
        die("bad port in '%s'", s);
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        return sizeof(*a4);
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        return sizeof(*a6);
    }
    die("bad address '%s' (numeric IPv4 or [IPv6] only)", s);
}

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        die("fcntl: %s", strerror(errno));
}

static int listen_on(const char *spec)
{
    struct sockaddr_storage ss;
    socklen_t len = parse_addr(spec, &ss);
    int one = 1;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket: %s", strerror(errno));
    /* SO_REUSEADDR only (never SO_REUSEPORT): a second listener on the same
     * port must fail, which the tests rely on. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) < 0)
        die("bind %s: %s", spec, strerror(errno));
    if (listen(fd, 1024) < 0)
        die("listen %s: %s", spec, strerror(errno));
    return fd;
}

/* Blocking connect; returns the fd or -1 with errno. */
static int connect_to(const struct sockaddr_storage *ss, socklen_t len)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    while (connect(fd, (const struct sockaddr *)ss, len) < 0) {
        if (errno == EINTR)
            continue;
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* ------------------------------------------------------------ streams, checksum */

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t stream_key(uint64_t seed, uint64_t index, uint64_t dir)
{
    return mix64(mix64(seed) ^ mix64(index * 0x100000001b3ULL + dir));
}

/* Bytes [off, off+n) of the stream KEY into buf. */
static void stream_fill(uint64_t key, uint64_t off, uint8_t *buf, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint64_t w = mix64(key + (off >> 3));
        unsigned b = (unsigned)(off & 7);
        if (b == 0 && n - i >= 8) {
            for (unsigned k = 0; k < 8; k++)
                buf[i + k] = (uint8_t)(w >> (8 * k));
            i += 8;
            off += 8;
            continue;
        }
        for (; b < 8 && i < n; b++, i++, off++)
            buf[i] = (uint8_t)(w >> (8 * b));
    }
}

#define FNV_INIT 0x811c9dc5u
static uint32_t fnv1a(uint32_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x01000193u;
    }
    return h;
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* A receiver's check of one stream: byte-by-byte against the expected
 * bytes, plus the FNV-1a of what arrived and of what was expected. */
struct verifier {
    uint64_t key;
    uint64_t count;          /* bytes seen */
    uint32_t fnv_got, fnv_exp;
    int64_t mismatch;        /* first differing offset, -1 = none */
    uint8_t got, exp;        /* the bytes at that offset */
    uint8_t ebuf[RBUF_SIZE];
};

static void verifier_init(struct verifier *v, uint64_t key)
{
    v->key = key;
    v->count = 0;
    v->fnv_got = v->fnv_exp = FNV_INIT;
    v->mismatch = -1;
}

static void verifier_feed(struct verifier *v, const uint8_t *p, size_t n)
{
    while (n) {
        size_t k = n < sizeof(v->ebuf) ? n : sizeof(v->ebuf);
        stream_fill(v->key, v->count, v->ebuf, k);
        v->fnv_got = fnv1a(v->fnv_got, p, k);
        v->fnv_exp = fnv1a(v->fnv_exp, v->ebuf, k);
        if (v->mismatch < 0 && memcmp(p, v->ebuf, k) != 0) {
            size_t i = 0;
            while (p[i] == v->ebuf[i])
                i++;
            v->mismatch = (int64_t)(v->count + i);
            v->got = p[i];
            v->exp = v->ebuf[i];
        }
        v->count += k;
        p += k;
        n -= k;
    }
}

/* ------------------------------------------------------------ signals */

static int sig_pipe[2] = { -1, -1 };

static void on_signal(int sig)
{
    char c = (char)sig;
    if (write(sig_pipe[1], &c, 1) < 0) {
        /* the main loop is already waking up */
    }
}

static void install_stop_signals(void)
{
    if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        die("pipe: %s", strerror(errno));
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

/* Waits until fd is readable (1) or a stop signal arrived (0). */
static int wait_readable_or_stop(int fd)
{
    struct pollfd p[2] = { { fd, POLLIN, 0 }, { sig_pipe[0], POLLIN, 0 } };
    for (;;) {
        int r = poll(p, 2, -1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            die("poll: %s", strerror(errno));
        if (p[1].revents)
            return 0;
        if (p[0].revents)
            return 1;
    }
}

/* ------------------------------------------------------------ options */

struct opts {
    const char *listen, *connect, *data, *file, *out, *reply;
    uint64_t send, recv, seed, chunk, conns, index_base, count;
    uint64_t sessions, parallel, max_bytes;   /* iclient / iserver */
    unsigned delay_ms, timeout;
    int have_send, have_recv, have_seed, have_conns;
};

static void usage(void)
{
    fputs("usage: fxpeer server --listen ADDR:PORT --send BYTES --seed S [--chunk C]\n"
          "       fxpeer client --connect ADDR:PORT --conns N --send BYTES --recv BYTES --seed S\n"
          "                     [--chunk C] [--index-base B] [--timeout SECONDS]\n"
          "       fxpeer send   --connect ADDR:PORT (--data STRING | --file F) [--chunk C]\n"
          "                     [--delay-ms D] [--out FILE] [--timeout SECONDS]\n"
          "       fxpeer sink   --listen ADDR:PORT --out FILE [--count N] [--reply STRING]\n"
          "       fxpeer probe  --connect ADDR:PORT [--data STRING] [--timeout SECONDS]\n"
          "       fxpeer hold   --connect ADDR:PORT --conns N [--trickle-ms M] [--parallel P]\n"
          "       fxpeer hold   --listen ADDR:PORT\n"
          "       fxpeer iserver --listen ADDR:PORT --seed S [--max-bytes M]\n"
          "       fxpeer iclient --connect ADDR:PORT --seed S --sessions N [--parallel P]\n"
          "                     [--max-bytes M] [--timeout SECONDS]\n"
          "BYTES and C accept suffixes k, m, g (binary).\n",
          stderr);
    exit(2);
}

static void parse_opts(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof(*o));
    o->chunk = 65536;
    o->conns = 1;
    o->timeout = 120;
    o->parallel = 16;
    o->max_bytes = 65536;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            die("%s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--listen"))
            o->listen = v;
        else if (!strcmp(a, "--connect"))
            o->connect = v;
        else if (!strcmp(a, "--data"))
            o->data = v;
        else if (!strcmp(a, "--file"))
            o->file = v;
        else if (!strcmp(a, "--out"))
            o->out = v;
        else if (!strcmp(a, "--reply"))
            o->reply = v;
        else if (!strcmp(a, "--send"))
            o->send = parse_size(a, v), o->have_send = 1;
        else if (!strcmp(a, "--recv"))
            o->recv = parse_size(a, v), o->have_recv = 1;
        else if (!strcmp(a, "--seed"))
            o->seed = parse_size(a, v), o->have_seed = 1;
        else if (!strcmp(a, "--chunk"))
            o->chunk = parse_size(a, v);
        else if (!strcmp(a, "--conns"))
            o->conns = parse_size(a, v), o->have_conns = 1;
        else if (!strcmp(a, "--trickle-ms"))
            o->delay_ms = (unsigned)parse_size(a, v);
        else if (!strcmp(a, "--index-base"))
            o->index_base = parse_size(a, v);
        else if (!strcmp(a, "--count"))
            o->count = parse_size(a, v);
        else if (!strcmp(a, "--delay-ms"))
            o->delay_ms = (unsigned)parse_size(a, v);
        else if (!strcmp(a, "--sessions"))
            o->sessions = parse_size(a, v);
        else if (!strcmp(a, "--parallel"))
            o->parallel = parse_size(a, v);
        else if (!strcmp(a, "--max-bytes"))
            o->max_bytes = parse_size(a, v);
        else if (!strcmp(a, "--timeout"))
            o->timeout = (unsigned)parse_size(a, v);
        else
            die("unknown option '%s'", a);
    }
    if (o->chunk == 0 || o->chunk > (64u << 20))
        die("--chunk must be 1 .. 64m");
    if (o->conns == 0 || o->conns > 100000)
        die("--conns must be 1 .. 100000");
    if (o->conns > 10000 && strcmp(argv[1], "hold"))
        die("--conns must be 1 .. 10000 (up to 100000 with hold)");
    if (o->timeout == 0)
        die("--timeout must be at least 1");
    if (o->parallel == 0 || o->parallel > 1024)
        die("--parallel must be 1 .. 1024");
    if (o->max_bytes > (1u << 30))
        die("--max-bytes must be at most 1g");
}

/* ------------------------------------------------------------ server */

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t srv_conns, srv_up, srv_down, srv_bad;
static int srv_active;   /* connection threads still running */

struct srv_conn {
    int fd;
    uint64_t serial;
    uint64_t send, seed, chunk;
};

static void *server_conn(void *arg)
{
    struct srv_conn *c = arg;
    uint8_t hdr[HEADER_LEN], trailer[TRAILER_LEN];
    unsigned hdr_got = 0;
    uint64_t index = 0, key_down = 0, sent = 0;
    uint8_t *rbuf = malloc(RBUF_SIZE), *sbuf = malloc(c->chunk > TRAILER_LEN ? c->chunk : TRAILER_LEN);
    struct verifier *v = malloc(sizeof(*v));
    size_t slen = 0, spos = 0;
    int rd_done = 0, wr_done = 0, trailer_queued = 0;
    char err[160] = "";

    if (!rbuf || !sbuf || !v)
        die("out of memory");
    set_nonblock(c->fd);
    while (!(rd_done && wr_done)) {
        /* Queue the next piece to send: the stream once the index is known,
         * the trailer once the stream is out and the upload has ended. */
        if (spos == slen && hdr_got == HEADER_LEN && !wr_done) {
            spos = slen = 0;
            if (sent < c->send) {
                slen = (size_t)(c->send - sent < c->chunk ? c->send - sent : c->chunk);
                stream_fill(key_down, sent, sbuf, slen);
                sent += slen;
            } else if (rd_done && !trailer_queued) {
                put_le(trailer, v->count, 8);
                put_le(trailer + 8, v->fnv_got, 4);
                memcpy(sbuf, trailer, TRAILER_LEN);
                slen = TRAILER_LEN;
                trailer_queued = 1;
            } else if (trailer_queued) {
                shutdown(c->fd, SHUT_WR);
                wr_done = 1;
                continue;
            }
        }
        struct pollfd p = { c->fd, 0, 0 };
        if (!rd_done)
            p.events |= POLLIN;
        if (spos < slen)
            p.events |= POLLOUT;
        if (!p.events)
            break;   /* closed before the header: nothing more to do */
        int r = poll(&p, 1, -1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            snprintf(err, sizeof(err), "poll: %s", strerror(errno));
            break;
        }
        if ((p.revents & (POLLIN | POLLHUP | POLLERR)) && !rd_done) {
            ssize_t n = read(c->fd, rbuf, RBUF_SIZE);
            if (n == 0) {
                rd_done = 1;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                snprintf(err, sizeof(err), "read: %s", strerror(errno));
                break;
            } else if (n > 0) {
                uint8_t *q = rbuf;
                while (n > 0 && hdr_got < HEADER_LEN) {
                    hdr[hdr_got++] = *q++;
                    n--;
                    if (hdr_got == HEADER_LEN) {
                        index = get_le(hdr, 8);
                        key_down = stream_key(c->seed, index, DIR_DOWN);
                        verifier_init(v, stream_key(c->seed, index, DIR_UP));
                    }
                }
                if (n > 0)
                    verifier_feed(v, q, (size_t)n);
            }
        }
        if ((p.revents & (POLLOUT | POLLERR | POLLHUP)) && spos < slen) {
            size_t want = slen - spos < c->chunk ? slen - spos : (size_t)c->chunk;
            ssize_t n = send(c->fd, sbuf + spos, want, MSG_NOSIGNAL);
            if (n < 0 && errno != EAGAIN && errno != EINTR) {
                snprintf(err, sizeof(err), "send: %s", strerror(errno));
                break;
            }
            if (n > 0)
                spos += (size_t)n;
        }
    }
    close(c->fd);

    pthread_mutex_lock(&out_lock);
    srv_conns++;
    if (hdr_got < HEADER_LEN) {
        srv_bad++;
        printf("server conn %" PRIu64 ": closed after %u header bytes%s%s\n", c->serial, hdr_got,
               *err ? ": " : "", err);
    } else {
        srv_up += v->count;
        srv_down += sent;
        if (*err || v->mismatch >= 0)
            srv_bad++;
        printf("server conn %" PRIu64 " index %" PRIu64 ": up %" PRIu64 " bytes fnv %08x (expected %08x), ",
               c->serial, index, v->count, v->fnv_got, v->fnv_exp);
        if (v->mismatch >= 0)
            printf("MISMATCH at offset %" PRId64 " (got 0x%02x, expected 0x%02x)", v->mismatch, v->got,
                   v->exp);
        else
            printf("identical");
        printf(", down %" PRIu64 "/%" PRIu64 " bytes%s%s%s\n", sent, c->send,
               wr_done ? ", trailer sent" : "", *err ? ", error: " : "", err);
    }
    fflush(stdout);
    srv_active--;
    pthread_mutex_unlock(&out_lock);
    free(rbuf);
    free(sbuf);
    free(v);
    free(c);
    return NULL;
}

static int run_server(const struct opts *o)
{
    if (!o->listen || !o->have_send || !o->have_seed)
        die("server needs --listen, --send and --seed");
    int lfd = listen_on(o->listen);
    install_stop_signals();
    set_nonblock(lfd);
    printf("ready\n");
    fflush(stdout);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    uint64_t serial = 0;
    while (wait_readable_or_stop(lfd)) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        struct srv_conn *c = calloc(1, sizeof(*c));
        if (!c)
            die("out of memory");
        c->fd = fd;
        c->serial = ++serial;
        c->send = o->send;
        c->seed = o->seed;
        c->chunk = o->chunk;
        pthread_t t;
        pthread_mutex_lock(&out_lock);
        srv_active++;
        pthread_mutex_unlock(&out_lock);
        if (pthread_create(&t, &attr, server_conn, c) != 0)
            die("pthread_create failed");
    }
    close(lfd);
    /* Let connections that are just finishing report; hung ones do not hold us up. */
    for (int i = 0; i < 100; i++) {
        pthread_mutex_lock(&out_lock);
        int active = srv_active;
        pthread_mutex_unlock(&out_lock);
        if (!active)
            break;
        usleep(20000);
    }
    pthread_mutex_lock(&out_lock);
    printf("fxpeer server: %" PRIu64 " connections accepted, %" PRIu64 " finished, %" PRIu64
           " bytes up, %" PRIu64 " bytes down, %" PRIu64 " bad, %d still open\n",
           serial, srv_conns, srv_up, srv_down, srv_bad, srv_active);
    fflush(stdout);
    _exit(0);   /* connection threads may still be blocked: do not wait */
}

/* ------------------------------------------------------------ client */

struct cli_conn {
    pthread_t thread;
    uint64_t index;
    const struct opts *o;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    volatile int finished;
    /* results */
    uint64_t sent;               /* stream bytes written */
    uint32_t fnv_up;             /* of the whole upload stream */
    uint64_t received;           /* all bytes read */
    uint8_t trailer[TRAILER_LEN];
    unsigned trailer_len;
    int wr_done, rd_done;
    char err[160];
    struct verifier v;           /* download stream */
};

static volatile int client_stop;
static pthread_barrier_t start_barrier;

static void *client_conn(void *arg)
{
    struct cli_conn *c = arg;
    const struct opts *o = c->o;
    uint8_t *rbuf = malloc(RBUF_SIZE), *sbuf = malloc(o->chunk > HEADER_LEN ? o->chunk : HEADER_LEN);
    size_t slen = 0, spos = 0;
    int hdr_queued = 0;

    if (!rbuf || !sbuf)
        die("out of memory");
    verifier_init(&c->v, stream_key(o->seed, c->index, DIR_DOWN));
    c->fnv_up = FNV_INIT;
    pthread_barrier_wait(&start_barrier);

    int fd = connect_to(&c->addr, c->addrlen);
    if (fd < 0) {
        snprintf(c->err, sizeof(c->err), "connect: %s", strerror(errno));
        goto out;
    }
    set_nonblock(fd);
    while (!(c->wr_done && c->rd_done) && !client_stop) {
        if (spos == slen && !c->wr_done) {
            spos = slen = 0;
            if (!hdr_queued) {
                /* The header is one write of its own; a tiny --chunk splits it too. */
                put_le(sbuf, c->index, 8);
                slen = HEADER_LEN;
                hdr_queued = 1;
            } else if (c->sent < o->send) {
                slen = (size_t)(o->send - c->sent < o->chunk ? o->send - c->sent : o->chunk);
                stream_fill(stream_key(o->seed, c->index, DIR_UP), c->sent, sbuf, slen);
                c->fnv_up = fnv1a(c->fnv_up, sbuf, slen);
                c->sent += slen;
            } else {
                shutdown(fd, SHUT_WR);
                c->wr_done = 1;
                continue;
            }
        }
        struct pollfd p = { fd, 0, 0 };
        if (!c->rd_done)
            p.events |= POLLIN;
        if (spos < slen)
            p.events |= POLLOUT;
        int r = poll(&p, 1, 200);
        if (r < 0 && errno != EINTR) {
            snprintf(c->err, sizeof(c->err), "poll: %s", strerror(errno));
            break;
        }
        if (r <= 0)
            continue;
        if ((p.revents & (POLLIN | POLLHUP | POLLERR)) && !c->rd_done) {
            ssize_t n = read(fd, rbuf, RBUF_SIZE);
            if (n == 0) {
                c->rd_done = 1;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                snprintf(c->err, sizeof(c->err), "read after %" PRIu64 " bytes: %s", c->received,
                         strerror(errno));
                break;
            } else if (n > 0) {
                c->received += (uint64_t)n;
                uint8_t *q = rbuf;
                if (c->v.count < o->recv) {
                    size_t k = (size_t)(o->recv - c->v.count < (uint64_t)n ? o->recv - c->v.count : (uint64_t)n);
                    verifier_feed(&c->v, q, k);
                    q += k;
                    n -= (ssize_t)k;
                }
                while (n > 0 && c->trailer_len < TRAILER_LEN) {
                    c->trailer[c->trailer_len++] = *q++;
                    n--;
                }
                /* anything past the trailer only shows in c->received */
            }
        }
        if ((p.revents & (POLLOUT | POLLERR | POLLHUP)) && spos < slen) {
            size_t want = slen - spos;
            if (want > o->chunk)
                want = (size_t)o->chunk;
            ssize_t n = send(fd, sbuf + spos, want, MSG_NOSIGNAL);
            if (n < 0 && errno != EAGAIN && errno != EINTR) {
                snprintf(c->err, sizeof(c->err), "send after %" PRIu64 " stream bytes: %s",
                         c->sent - (slen - spos), strerror(errno));
                break;
            }
            if (n > 0)
                spos += (size_t)n;
        }
    }
    if (!*c->err && !(c->wr_done && c->rd_done))
        snprintf(c->err, sizeof(c->err), "stopped (timeout)");
    close(fd);
out:
    free(rbuf);
    free(sbuf);
    __atomic_store_n(&c->finished, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* 0 identical, 1 mismatch, 2 error; describes the problem in why. */
static int client_verdict(const struct cli_conn *c, const struct opts *o, char *why, size_t len)
{
    if (!c->finished) {
        snprintf(why, len, "still running at the timeout: sent %" PRIu64 "/%" PRIu64 "%s, received %"
                 PRIu64 "/%" PRIu64 " bytes", c->sent, o->send, c->wr_done ? " (half-closed)" : "",
                 c->received, o->recv + TRAILER_LEN);
        return 2;
    }
    if (*c->err) {
        snprintf(why, len, "%s (sent %" PRIu64 "/%" PRIu64 ", received %" PRIu64 "/%" PRIu64 ")", c->err,
                 c->sent, o->send, c->received, o->recv + TRAILER_LEN);
        return 2;
    }
    if (c->v.mismatch >= 0) {
        snprintf(why, len, "download differs at offset %" PRId64 " (got 0x%02x, expected 0x%02x)",
                 c->v.mismatch, c->v.got, c->v.exp);
        return 1;
    }
    if (c->received != o->recv + TRAILER_LEN) {
        snprintf(why, len, "received %" PRIu64 " bytes, expected %" PRIu64 " + %d-byte trailer%s",
                 c->received, o->recv, TRAILER_LEN,
                 c->received < o->recv ? " (download truncated)" : "");
        return 1;
    }
    uint64_t up_len = get_le(c->trailer, 8);
    uint32_t up_fnv = (uint32_t)get_le(c->trailer + 8, 4);
    if (up_len != o->send || up_fnv != c->fnv_up) {
        snprintf(why, len, "server received %" PRIu64 " bytes fnv %08x, sent %" PRIu64 " bytes fnv %08x",
                 up_len, up_fnv, o->send, c->fnv_up);
        return 1;
    }
    return 0;
}

static int run_client(const struct opts *o)
{
    if (!o->connect || !o->have_send || !o->have_recv || !o->have_seed)
        die("client needs --connect, --send, --recv and --seed");
    struct sockaddr_storage addr;
    socklen_t addrlen = parse_addr(o->connect, &addr);
    struct cli_conn *cs = calloc((size_t)o->conns, sizeof(*cs));
    if (!cs)
        die("out of memory");
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_barrier_init(&start_barrier, NULL, (unsigned)o->conns);
    uint64_t t0 = now_ms();
    for (uint64_t i = 0; i < o->conns; i++) {
        cs[i].index = o->index_base + i;
        cs[i].o = o;
        cs[i].addr = addr;
        cs[i].addrlen = addrlen;
        if (pthread_create(&cs[i].thread, &attr, client_conn, &cs[i]) != 0)
            die("pthread_create failed for connection %" PRIu64, i);
    }
    uint64_t deadline = t0 + (uint64_t)o->timeout * 1000;
    int timed_out = 0;
    for (;;) {
        uint64_t done = 0;
        for (uint64_t i = 0; i < o->conns; i++)
            done += __atomic_load_n(&cs[i].finished, __ATOMIC_ACQUIRE) != 0;
        if (done == o->conns)
            break;
        if (now_ms() >= deadline) {
            timed_out = 1;
            break;
        }
        usleep(20000);
    }
    if (timed_out) {
        client_stop = 1;
        usleep(500000);   /* let the threads notice; stragglers are reported as running */
    } else {
        for (uint64_t i = 0; i < o->conns; i++)
            pthread_join(cs[i].thread, NULL);
    }
    uint64_t ms = now_ms() - t0;

    int worst = 0;
    uint64_t bad = 0, up = 0, down = 0;
    for (uint64_t i = 0; i < o->conns; i++) {
        char why[320];
        int v = client_verdict(&cs[i], o, why, sizeof(why));
        up += cs[i].sent;
        down += cs[i].v.count;
        if (v) {
            bad++;
            if (v > worst)
                worst = v;
            if (bad <= 20)
                fprintf(stdout, "fxpeer: connection %" PRIu64 " (index %" PRIu64 "): %s\n", i, cs[i].index, why);
        }
    }
    if (bad > 20)
        printf("fxpeer: ... and %" PRIu64 " more bad connections\n", bad - 20);
    if (timed_out)
        worst = 2;
    if (!bad && !timed_out)
        printf("fxpeer: %" PRIu64 " connections, %" PRIu64 " bytes up, %" PRIu64
               " bytes down, all identical (%" PRIu64 " ms)\n", o->conns, up, down, ms);
    else
        printf("fxpeer: %" PRIu64 " connections, %" PRIu64 " bytes up, %" PRIu64 " bytes down, %" PRIu64
               " bad%s (%" PRIu64 " ms)\n", o->conns, up, down, bad,
               timed_out ? ", timed out" : "", ms);
    fflush(stdout);
    _exit(worst);   /* timed-out threads may still be running */
}

/* ------------------------------------------------------------ send */

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die("%s: %s", path, strerror(errno));
    size_t cap = 65536, n = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (!buf)
            die("out of memory");
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (n < cap)
            break;
        cap *= 2;
        buf = realloc(buf, cap);
    }
    if (ferror(f))
        die("%s: read error", path);
    fclose(f);
    *len = n;
    return buf;
}

static int open_out(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        die("%s: %s", path, strerror(errno));
    return fd;
}

static void write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            die("write: %s", strerror(errno));
        p += w;
        n -= (size_t)w;
    }
}

/* Reads what is available without blocking; returns 0 at EOF, 1 otherwise. */
static int drain(int sfd, int outfd, uint64_t *got, int wait_ms)
{
    uint8_t buf[65536];
    struct pollfd p = { sfd, POLLIN, 0 };
    if (poll(&p, 1, wait_ms) <= 0)
        return 1;
    for (;;) {
        ssize_t r = recv(sfd, buf, sizeof(buf), MSG_DONTWAIT);
        if (r == 0)
            return 0;
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return 1;
            die("recv after %" PRIu64 " bytes: %s", *got, strerror(errno));
        }
        *got += (uint64_t)r;
        if (outfd >= 0)
            write_all(outfd, buf, (size_t)r);
    }
}

static int run_send(const struct opts *o)
{
    if (!o->connect || (!o->data == !o->file))
        die("send needs --connect and one of --data or --file");
    struct sockaddr_storage addr;
    socklen_t addrlen = parse_addr(o->connect, &addr);
    size_t len;
    uint8_t *data = o->file ? read_file(o->file, &len) : (uint8_t *)strdup(o->data);
    if (o->data)
        len = strlen(o->data);
    int outfd = o->out ? open_out(o->out) : -1;
    int fd = connect_to(&addr, addrlen);
    if (fd < 0)
        die("connect %s: %s", o->connect, strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    uint64_t got = 0, writes = 0, deadline = now_ms() + (uint64_t)o->timeout * 1000;
    int eof = 0;
    for (size_t off = 0; off < len;) {
        size_t k = len - off < o->chunk ? len - off : (size_t)o->chunk;
        /* One send() per chunk; blocking, so a partial send only happens on a
         * signal, and then the rest goes out as the next write. */
        ssize_t w = send(fd, data + off, k, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            die("send after %zu bytes: %s", off, strerror(errno));
        off += (size_t)w;
        writes++;
        if (!eof)
            eof = !drain(fd, outfd, &got, 0);
        if (o->delay_ms && off < len)
            usleep(o->delay_ms * 1000u);
        if (now_ms() > deadline)
            die("timeout after sending %zu of %zu bytes", off, len);
    }
    shutdown(fd, SHUT_WR);
    while (!eof) {
        if (now_ms() > deadline)
            die("timeout waiting for the peer to close (%" PRIu64 " bytes back so far)", got);
        eof = !drain(fd, outfd, &got, 200);
    }
    close(fd);
    if (outfd >= 0)
        close(outfd);
    fprintf(stderr, "fxpeer send: %zu bytes in %" PRIu64 " writes, %" PRIu64 " bytes back\n", len, writes, got);
    free(data);
    return 0;
}

/* ------------------------------------------------------------ sink */

static int run_sink(const struct opts *o)
{
    if (!o->listen || !o->out)
        die("sink needs --listen and --out");
    int outfd = open_out(o->out);
    int lfd = listen_on(o->listen);
    install_stop_signals();
    printf("ready\n");
    fflush(stdout);
    uint64_t n = 0;
    while ((!o->count || n < o->count) && wait_readable_or_stop(lfd)) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        uint64_t got = 0, reads = 0;
        uint8_t buf[65536];
        int stopped = 0;
        for (;;) {
            if (!wait_readable_or_stop(fd)) {
                stopped = 1;
                break;
            }
            ssize_t r = read(fd, buf, sizeof(buf));
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0) {
                printf("sink: connection %" PRIu64 ": read after %" PRIu64 " bytes: %s\n", n + 1, got,
                       strerror(errno));
                break;
            }
            if (r == 0) {
                /* --reply: the answer to a client that half-closed. */
                if (o->reply && send(fd, o->reply, strlen(o->reply), MSG_NOSIGNAL) < 0)
                    printf("sink: connection %" PRIu64 ": reply: %s\n", n + 1, strerror(errno));
                break;
            }
            write_all(outfd, buf, (size_t)r);
            got += (uint64_t)r;
            reads++;
        }
        /* The file is complete before the peer sees our close. */
        fsync(outfd);
        close(fd);
        n++;
        printf("sink: connection %" PRIu64 ": %" PRIu64 " bytes in %" PRIu64 " reads\n", n, got, reads);
        fflush(stdout);
        if (stopped)
            break;
    }
    close(outfd);
    return 0;
}

/* ------------------------------------------------------------ probe */

static int run_probe(const struct opts *o)
{
    if (!o->connect)
        die("probe needs --connect");
    struct sockaddr_storage addr;
    socklen_t addrlen = parse_addr(o->connect, &addr);
    uint64_t t0 = now_ms();
    int fd = connect_to(&addr, addrlen);
    if (fd < 0) {
        printf("fxpeer probe: connect %s: %s\n", o->connect, strerror(errno));
        return 2;
    }
    if (o->data && send(fd, o->data, strlen(o->data), MSG_NOSIGNAL) < 0) {
        /* the peer may have closed already: that is what we are probing */
    }
    uint64_t got = 0, deadline = t0 + (uint64_t)o->timeout * 1000;
    const char *how = NULL;
    uint8_t buf[65536];
    while (!how) {
        uint64_t now = now_ms();
        if (now >= deadline)
            break;
        struct pollfd p = { fd, POLLIN, 0 };
        int r = poll(&p, 1, (int)(deadline - now));
        if (r <= 0)
            continue;
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n == 0)
            how = "eof";
        else if (n < 0 && (errno == ECONNRESET || errno == EPIPE))
            how = "reset";
        else if (n < 0 && errno != EINTR && errno != EAGAIN)
            how = strerror(errno);
        else if (n > 0)
            got += (uint64_t)n;
    }
    close(fd);
    uint64_t ms = now_ms() - t0;
    if (how) {
        printf("fxpeer probe: connected; received %" PRIu64 " bytes; closed by peer (%s) after %" PRIu64
               " ms\n", got, how, ms);
        return 0;
    }
    printf("fxpeer probe: connected; received %" PRIu64 " bytes; still open after %" PRIu64 " ms\n", got, ms);
    return 1;
}

/* ------------------------------------------------------------ main */

/* ------------------------------------------------------------ integrity mode
 *
 *   fxpeer iserver --listen ADDR:PORT --seed S [--max-bytes M]
 *   fxpeer iclient --connect ADDR:PORT --seed S --sessions N [--parallel P]
 *                  [--max-bytes M] [--timeout SECONDS]
 *
 * Many short sessions, each with its own plan derived from (seed, index):
 * the upload and download lengths (0 .. M, mostly below M/16), the size of
 * every write (1 byte to 16 KiB, drawn per write) and the order of the
 * half-closes:
 *   client-first: the client sends and half-closes; the server reads to
 *                 EOF, only then sends and half-closes;
 *   server-first: the server sends and half-closes as soon as it has the
 *                 index; the client reads to EOF, only then sends;
 *   both:         both send at once and half-close when done.
 * The client always opens with the 8-byte index. Each side checks every
 * byte it receives against the seeded stream and the length at EOF, and
 * classifies a session: ok, short (bytes lost), long (bytes duplicated),
 * corrupt (a byte differs: reordered or changed), error (reset, timeout).
 * iclient prints its counts and exits 0 iff every session was ok both
 * ways as far as it can see; iserver prints its counts on SIGTERM
 * ("iserver: sessions N ok ...") and exits 0 iff all its sessions were ok.
 */
enum { PLAN_CLIENT_FIRST = 0, PLAN_SERVER_FIRST, PLAN_BOTH };
static const char *const plan_names[] = { "client-first", "server-first", "both" };

struct plan {
    uint64_t up, down;
    int mode;
};

static void make_plan(uint64_t seed, uint64_t index, uint64_t maxb, struct plan *p)
{
    uint64_t r = mix64(mix64(seed ^ 0x494e54454752ULL) ^ index);
    uint64_t small = maxb / 16 + 1;
    p->up = mix64(r + 1) % 8 == 0 ? mix64(r + 2) % (maxb + 1) : mix64(r + 2) % small;
    p->down = mix64(r + 3) % 8 == 0 ? mix64(r + 4) % (maxb + 1) : mix64(r + 4) % small;
    p->mode = (int)(mix64(r + 5) % 3);
}

/* Per-write sizes: a private generator per session and side. */
static size_t next_chunk(uint64_t *rng)
{
    static const size_t caps[] = { 1, 3, 64, 1460, 4096, 16384 };
    *rng = mix64(*rng);
    return 1 + (size_t)((*rng >> 8) % caps[*rng % 6]);
}

enum ivs { IV_OK = 0, IV_SHORT, IV_LONG, IV_CORRUPT, IV_ERROR, IV_N };
static const char *const iv_names[] = { "ok", "short", "long", "corrupt", "errors" };

struct iside {
    int fd;
    const uint8_t *prefix;      /* client: the index, sent before the stream */
    size_t prefix_len, prefix_sent;
    uint64_t key_out, len_out, sent;
    int may_send, shut;
    struct verifier *v;         /* incoming stream (NULL until known) */
    uint64_t len_in;
    int eof;
    uint64_t rng;
    char err[128];
};

/* One step of a session: waits (up to wait_ms) and moves what it can.
 * 0 = progress or nothing yet, -1 = error (in s->err). */
static int iside_step(struct iside *s, int wait_ms, uint8_t *buf, size_t buflen)
{
    struct pollfd pfd = { .fd = s->fd, .events = 0 };
    int want_out = (s->prefix_sent < s->prefix_len) ||
                   (s->may_send && s->sent < s->len_out);

    if (s->may_send && !want_out && !s->shut && s->prefix_sent == s->prefix_len) {
        if (shutdown(s->fd, SHUT_WR) != 0) {
            snprintf(s->err, sizeof(s->err), "shutdown: %s", strerror(errno));
            return -1;
        }
        s->shut = 1;
    }
    if (want_out)
        pfd.events |= POLLOUT;
    if (!s->eof)
        pfd.events |= POLLIN;
    if (!pfd.events)
        return 0;
    int n = poll(&pfd, 1, wait_ms);
    if (n < 0 && errno != EINTR) {
        snprintf(s->err, sizeof(s->err), "poll: %s", strerror(errno));
        return -1;
    }
    if (n <= 0)
        return 0;
    if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
        size_t k = 1 + (size_t)(mix64(s->rng ^ 0x52) % buflen);
        ssize_t r = read(s->fd, buf, k);
        if (r < 0 && errno != EAGAIN && errno != EINTR) {
            snprintf(s->err, sizeof(s->err), "read: %s", strerror(errno));
            return -1;
        }
        if (r == 0)
            s->eof = 1;
        else if (r > 0 && s->v)
            verifier_feed(s->v, buf, (size_t)r);
        s->rng = mix64(s->rng);
        if (r >= 0 || errno == EAGAIN || errno == EINTR)
            return 0;
    }
    if (pfd.revents & POLLOUT) {
        uint8_t out[16384];
        size_t k = next_chunk(&s->rng);
        ssize_t w;
        if (s->prefix_sent < s->prefix_len) {
            if (k > s->prefix_len - s->prefix_sent)
                k = s->prefix_len - s->prefix_sent;
            w = write(s->fd, s->prefix + s->prefix_sent, k);
            if (w > 0)
                s->prefix_sent += (size_t)w;
        } else {
            if (k > s->len_out - s->sent)
                k = (size_t)(s->len_out - s->sent);
            stream_fill(s->key_out, s->sent, out, k);
            w = write(s->fd, out, k);
            if (w > 0)
                s->sent += (uint64_t)w;
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            snprintf(s->err, sizeof(s->err), "write: %s", strerror(errno));
            return -1;
        }
    }
    return 0;
}

static enum ivs iverdict(const struct iside *s)
{
    if (*s->err)
        return IV_ERROR;
    if (s->v->mismatch >= 0)
        return IV_CORRUPT;
    if (s->v->count < s->len_in)
        return IV_SHORT;
    if (s->v->count > s->len_in)
        return IV_LONG;
    return IV_OK;
}

static uint64_t iv_count[IV_N], iv_modes[3], iv_bytes_in, iv_bytes_out, iv_sessions;
static pthread_mutex_t iv_lock = PTHREAD_MUTEX_INITIALIZER;
static int iv_verbose_left = 10;

static void iv_record(const char *who, uint64_t index, const struct plan *p, const struct iside *s)
{
    enum ivs v = iverdict(s);
    pthread_mutex_lock(&iv_lock);
    iv_count[v]++;
    iv_modes[p->mode]++;
    iv_sessions++;
    iv_bytes_in += s->v->count;
    iv_bytes_out += s->sent;
    if (v != IV_OK && iv_verbose_left > 0) {
        iv_verbose_left--;
        fprintf(stderr, "fxpeer %s: session %" PRIu64 " (%s, up %" PRIu64 ", down %" PRIu64
                "): %s: received %" PRIu64 "/%" PRIu64 ", sent %" PRIu64 "/%" PRIu64 "%s%s",
                who, index, plan_names[p->mode], p->up, p->down, iv_names[v], s->v->count,
                s->len_in, s->sent, s->len_out, *s->err ? ", " : "", s->err);
        if (v == IV_CORRUPT)
            fprintf(stderr, " (first difference at offset %" PRId64 ")", s->v->mismatch);
        fputc('\n', stderr);
    }
    pthread_mutex_unlock(&iv_lock);
}

static void iv_print(const char *who, uint64_t ms)
{
    pthread_mutex_lock(&iv_lock);
    printf("%s: sessions %" PRIu64 " ok %" PRIu64 " short %" PRIu64 " long %" PRIu64
           " corrupt %" PRIu64 " errors %" PRIu64 "; bytes in %" PRIu64 " out %" PRIu64
           "; client-first %" PRIu64 " server-first %" PRIu64 " both %" PRIu64 "; %" PRIu64 " ms\n",
           who, iv_sessions, iv_count[IV_OK], iv_count[IV_SHORT], iv_count[IV_LONG],
           iv_count[IV_CORRUPT], iv_count[IV_ERROR], iv_bytes_in, iv_bytes_out,
           iv_modes[0], iv_modes[1], iv_modes[2], ms);
    fflush(stdout);
    pthread_mutex_unlock(&iv_lock);
}

struct iconn {
    const struct opts *o;
    int fd;
};

#define IV_STEP_MS 200

static void *iserver_conn(void *arg)
{
    struct iconn *c = arg;
    const struct opts *o = c->o;
    struct verifier *v = malloc(sizeof(*v));
    uint8_t hdr[HEADER_LEN], buf[16384];
    size_t got = 0;
    struct plan p = { 0, 0, 0 };
    struct iside s;
    uint64_t index = 0, deadline = now_ms() + (uint64_t)o->timeout * 1000;

    memset(&s, 0, sizeof(s));
    s.fd = c->fd;
    set_nonblock(s.fd);
    if (!v)
        die("out of memory");
    /* The index first: it names the plan. */
    while (got < HEADER_LEN) {
        struct pollfd pfd = { .fd = s.fd, .events = POLLIN };
        if (poll(&pfd, 1, IV_STEP_MS) < 0 && errno != EINTR)
            break;
        ssize_t r = read(s.fd, hdr + got, HEADER_LEN - got);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR) || now_ms() > deadline)
            break;
        if (r > 0)
            got += (size_t)r;
    }
    if (got == HEADER_LEN) {
        index = get_le(hdr, 8);
        make_plan(o->seed, index, o->max_bytes, &p);
        verifier_init(v, stream_key(o->seed, index, DIR_UP));
        s.v = v;
        s.len_in = p.up;
        s.key_out = stream_key(o->seed, index, DIR_DOWN);
        s.len_out = p.down;
        s.rng = mix64(o->seed ^ mix64(index) ^ 0x53525652ULL);
        s.may_send = p.mode != PLAN_CLIENT_FIRST;
        while (!(s.shut && s.eof)) {
            if (now_ms() > deadline) {
                snprintf(s.err, sizeof(s.err), "timed out");
                break;
            }
            if (iside_step(&s, IV_STEP_MS, buf, sizeof(buf)) != 0)
                break;
            if (s.eof && p.mode == PLAN_CLIENT_FIRST)
                s.may_send = 1;
        }
    } else {
        verifier_init(v, 0);
        s.v = v;
        snprintf(s.err, sizeof(s.err), "no index (%zu of %d bytes)", got, HEADER_LEN);
    }
    iv_record("iserver", index, &p, &s);
    close(s.fd);
    free(v);
    free(c);
    __atomic_sub_fetch(&srv_active, 1, __ATOMIC_ACQ_REL);
    return NULL;
}

static int run_iserver(const struct opts *o)
{
    if (!o->listen || !o->have_seed)
        die("iserver needs --listen and --seed");
    int lfd = listen_on(o->listen);
    uint64_t t0 = now_ms();
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    install_stop_signals();
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        if (!wait_readable_or_stop(lfd))
            break;
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        struct iconn *c = malloc(sizeof(*c));
        pthread_t t;
        if (!c)
            die("out of memory");
        c->o = o;
        c->fd = fd;
        __atomic_add_fetch(&srv_active, 1, __ATOMIC_ACQ_REL);
        if (pthread_create(&t, &attr, iserver_conn, c) != 0)
            die("pthread_create failed");
    }
    /* Let running sessions finish (they end on EOF or their time-out). */
    for (int i = 0; i < 100 && __atomic_load_n(&srv_active, __ATOMIC_ACQUIRE) > 0; i++)
        usleep(50000);
    iv_print("iserver", now_ms() - t0);
    return iv_count[IV_OK] == iv_sessions ? 0 : 1;
}

static uint64_t ic_next;

struct iclient_arg {
    const struct opts *o;
    struct sockaddr_storage addr;
    socklen_t addrlen;
};

static void *iclient_thread(void *arg)
{
    struct iclient_arg *a = arg;
    const struct opts *o = a->o;
    struct verifier *v = malloc(sizeof(*v));
    uint8_t buf[16384], hdr[HEADER_LEN];

    if (!v)
        die("out of memory");
    for (;;) {
        uint64_t i = __atomic_fetch_add(&ic_next, 1, __ATOMIC_ACQ_REL);
        if (i >= o->sessions)
            break;
        uint64_t index = o->index_base + i;
        uint64_t deadline = now_ms() + (uint64_t)o->timeout * 1000;
        struct plan p;
        struct iside s;

        make_plan(o->seed, index, o->max_bytes, &p);
        memset(&s, 0, sizeof(s));
        put_le(hdr, index, 8);
        verifier_init(v, stream_key(o->seed, index, DIR_DOWN));
        s.v = v;
        s.len_in = p.down;
        s.key_out = stream_key(o->seed, index, DIR_UP);
        s.len_out = p.up;
        s.prefix = hdr;
        s.prefix_len = HEADER_LEN;
        s.rng = mix64(o->seed ^ mix64(index) ^ 0x434c4e54ULL);
        s.may_send = p.mode != PLAN_SERVER_FIRST;
        s.fd = connect_to(&a->addr, a->addrlen);
        if (s.fd < 0) {
            snprintf(s.err, sizeof(s.err), "connect: %s", strerror(errno));
        } else {
            set_nonblock(s.fd);
            while (!(s.shut && s.eof)) {
                if (now_ms() > deadline) {
                    snprintf(s.err, sizeof(s.err), "timed out");
                    break;
                }
                if (iside_step(&s, IV_STEP_MS, buf, sizeof(buf)) != 0)
                    break;
                if (s.eof && p.mode == PLAN_SERVER_FIRST)
                    s.may_send = 1;
            }
            close(s.fd);
        }
        iv_record("iclient", index, &p, &s);
    }
    free(v);
    return NULL;
}

static int run_iclient(const struct opts *o)
{
    if (!o->connect || !o->have_seed || !o->sessions)
        die("iclient needs --connect, --seed and --sessions");
    struct iclient_arg a = { .o = o };
    a.addrlen = parse_addr(o->connect, &a.addr);
    pthread_t *ts = calloc(o->parallel, sizeof(*ts));
    uint64_t t0 = now_ms();
    if (!ts)
        die("out of memory");
    for (uint64_t k = 0; k < o->parallel; k++)
        if (pthread_create(&ts[k], NULL, iclient_thread, &a) != 0)
            die("pthread_create failed");
    for (uint64_t k = 0; k < o->parallel; k++)
        pthread_join(ts[k], NULL);
    iv_print("iclient", now_ms() - t0);
    free(ts);
    return iv_count[IV_OK] == o->sessions ? 0 : 1;
}

/* ------------------------------------------------------------ hold mode
 *
 *   fxpeer hold --connect ADDR:PORT --conns N [--trickle-ms M] [--parallel P]
 *   fxpeer hold --listen ADDR:PORT
 *
 * Many idle or trickling connections from one thread (epoll), for the
 * limits tests. As a client it opens N connections (at most P connecting
 * at once), prints "held K of N" once every attempt settled, then, with
 * --trickle-ms, sends one byte on each connection every M ms (a
 * slowloris); without it the connections stay silent. It prints
 * "hold: open K, closed by peer C, failed F, sent B bytes" and exits on
 * SIGTERM/SIGINT. As a server it accepts everything, reads and discards,
 * and prints "hold: accepted A, open K, bytes B" on SIGTERM. The
 * raised fd limit is the caller's business (ulimit -n).
 */
#include <sys/epoll.h>

static int run_hold(const struct opts *o)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event evs[256];
    uint64_t open_n = 0, closed = 0, failed = 0, accepted = 0, bytes = 0, started = 0, settled = 0;
    int lfd = -1, reported = 0;
    uint8_t *state = NULL;   /* per fd: 0 unused, 1 connecting, 2 open */
    size_t nstate = 0;
    struct sockaddr_storage addr;
    socklen_t addrlen = 0;
    uint64_t next_trickle = 0;

    if (ep < 0)
        die("epoll_create1: %s", strerror(errno));
    if (!o->listen && !(o->connect && o->have_conns))
        die("hold needs --listen, or --connect and --conns");
    install_stop_signals();
    struct epoll_event sev = { .events = EPOLLIN, .data.fd = sig_pipe[0] };
    epoll_ctl(ep, EPOLL_CTL_ADD, sig_pipe[0], &sev);
    if (o->listen) {
        lfd = listen_on(o->listen);
        set_nonblock(lfd);
        struct epoll_event lev = { .events = EPOLLIN, .data.fd = lfd };
        epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
        printf("ready\n");
        fflush(stdout);
    } else {
        addrlen = parse_addr(o->connect, &addr);
    }
    for (;;) {
        /* Client: keep up to --parallel connects in flight. */
        while (!o->listen && started < o->conns && started - settled < o->parallel) {
            int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
            started++;
            if (fd < 0) {
                failed++, settled++;
                continue;
            }
            if ((size_t)fd >= nstate) {
                size_t nn = (size_t)fd * 2 + 64;
                uint8_t *ns = realloc(state, nn);
                if (!ns)
                    die("out of memory");
                memset(ns + nstate, 0, nn - nstate);
                state = ns, nstate = nn;
            }
            if (connect(fd, (struct sockaddr *)&addr, addrlen) < 0 && errno != EINPROGRESS) {
                close(fd);
                failed++, settled++;
                continue;
            }
            state[fd] = 1;
            struct epoll_event cev = { .events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.fd = fd };
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
        }
        if (!o->listen && !reported && settled == o->conns) {
            printf("held %" PRIu64 " of %" PRIu64 "\n", open_n, o->conns);
            fflush(stdout);
            reported = 1;
            next_trickle = now_ms() + o->delay_ms;
        }
        int timeout = -1;
        if (reported && o->delay_ms) {
            uint64_t now = now_ms();
            if (now >= next_trickle) {
                for (size_t fd = 0; fd < nstate; fd++)
                    if (state[fd] == 2 && write((int)fd, "x", 1) == 1)
                        bytes++;
                next_trickle = now + o->delay_ms;
            }
            timeout = (int)(next_trickle - now_ms());
            if (timeout < 0)
                timeout = 0;
        }
        int n = epoll_wait(ep, evs, 256, timeout);
        if (n < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == sig_pipe[0])
                goto done;
            if (fd == lfd) {
                int c;
                while ((c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
                    struct epoll_event aev = { .events = EPOLLIN | EPOLLRDHUP, .data.fd = c };
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &aev);
                    accepted++, open_n++;
                }
                continue;
            }
            if (!o->listen && state[fd] == 1) {
                int err = 0;
                socklen_t el = sizeof(err);
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
                settled++;
                if (err) {
                    failed++;
                    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                    close(fd);
                    state[fd] = 0;
                    continue;
                }
                state[fd] = 2;
                open_n++;
                struct epoll_event mev = { .events = EPOLLIN | EPOLLRDHUP, .data.fd = fd };
                epoll_ctl(ep, EPOLL_CTL_MOD, fd, &mev);
                continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                char buf[4096];
                ssize_t r = read(fd, buf, sizeof(buf));
                if (r > 0) {
                    bytes += (uint64_t)r;
                } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                    close(fd);
                    if (!o->listen)
                        state[fd] = 0;
                    open_n--, closed++;
                }
            }
        }
    }
done:
    if (o->listen)
        printf("hold: accepted %" PRIu64 ", open %" PRIu64 ", bytes %" PRIu64 "\n", accepted, open_n, bytes);
    else
        printf("hold: open %" PRIu64 ", closed by peer %" PRIu64 ", failed %" PRIu64 ", sent %" PRIu64 " bytes\n",
               open_n, closed, failed, bytes);
    fflush(stdout);
    return 0;
}

/* The modes, by their name (argv[1]). */
static const struct mode {
    const char *name;
    int (*run)(const struct opts *o);
} modes[] = {
    { "server", run_server }, { "client", run_client }, { "send", run_send },
    { "sink", run_sink }, { "probe", run_probe }, { "hold", run_hold },
    { "iserver", run_iserver }, { "iclient", run_iclient },
};

int main(int argc, char **argv)
{
    struct opts o;
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2)
        usage();
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))
        usage();
    parse_opts(argc, argv, &o);
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
        if (!strcmp(argv[1], modes[i].name))
            return modes[i].run(&o);
    fprintf(stderr, "fxpeer: unknown mode '%s'\n", argv[1]);
    usage();
}
