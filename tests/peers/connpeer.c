/*
 * connpeer.c - client and server of the "connector" protocol, a protocol with secondary
 * connections on random ports in both directions (like the ISA 2000 SDK's Connector test
 * application), for tests/connector.sh and the connector test filter. Native C, POSIX
 * threads, blocking sockets; IPv4 only.
 *
 *   connpeer server --listen ADDR:PORT [--delay-ms D]
 *   connpeer client --connect ADDR:PORT --inbound K --outbound K --bytes N --seed S
 *                   [--timeout SECONDS] [--close-early]
 *
 * Control connection, lines ending in "\n" (h,h,h,h,p,p is an IPv4 address and port as
 * in FTP's PORT command):
 *   client -> server  "BIND h,h,h,h,p,p N SEED"  the client listens there; the server
 *                                                 connects to it (inbound secondary);
 *   client -> server  "WANT N SEED"               the server is to listen for the client;
 *   server -> client  "OPEN h,h,h,h,p,p N SEED"   it does, there; the client connects
 *                                                 (outbound secondary).
 * On every secondary connection the side that accepted sends N bytes of stream SEED, the
 * side that connected checks them and answers N bytes of stream SEED+1, which the
 * accepting side checks; both then close. Each byte of stream s at offset p is byte p%8
 * of splitmix64(s + p/8).
 *
 * The client runs K inbound and K outbound secondary connections at once, each with its
 * own listening port (chosen by the kernel) and seed S+2i, and exits 0 if all 2K carried
 * their bytes intact both ways, 1 on a mismatch, 2 on an error or time-out (the first
 * failure is printed). The server prints "ready" once listening and serves until killed;
 * with --delay-ms it waits that long before it connects for a BIND (tests: expiry). It
 * closes a control connection once the client has closed it. With --close-early the
 * client closes its control connection as soon as its lines are sent and its OPEN lines
 * read, then waits for the secondary connections (tests: session expiry, HOST-1000).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int timeout_s = 30;
static int delay_ms;          /* server: wait this long before connecting for a BIND */
static int close_early;       /* client: close the control connection before waiting */

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void stream_fill(uint64_t seed, uint64_t off, unsigned char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t p = off + i;
        buf[i] = (unsigned char)(mix64(seed + p / 8) >> (8 * (p % 8)));
    }
}

/* ---------------------------------------------------------------- sockets */

static int parse_addr(const char *text, struct sockaddr_in *sa)
{
    char host[64];
    const char *colon = strrchr(text, ':');
    if (!colon || (size_t)(colon - text) >= sizeof(host))
        return -1;
    memcpy(host, text, colon - text);
    host[colon - text] = 0;
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)atoi(colon + 1));
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

static int parse_h6(const char *p, struct sockaddr_in *sa)
{
    unsigned v[6];
    if (sscanf(p, "%u,%u,%u,%u,%u,%u", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6)
        return -1;
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_addr.s_addr = htonl((v[0] << 24) | (v[1] << 16) | (v[2] << 8) | v[3]);
    sa->sin_port = htons((uint16_t)(v[4] * 256 + v[5]));
    return 0;
}

static void fmt_h6(char *out, size_t n, const struct sockaddr_in *sa)
{
    uint32_t a = ntohl(sa->sin_addr.s_addr);
    unsigned p = ntohs(sa->sin_port);
    snprintf(out, n, "%u,%u,%u,%u,%u,%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255,
             p >> 8, p & 255);
}

static void set_timeouts(int fd)
{
    struct timeval tv = { timeout_s, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* A listener on ip, port from the kernel; its address in *bound. */
static int listen_on(struct in_addr ip, struct sockaddr_in *bound)
{
    socklen_t len = sizeof(*bound);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    memset(bound, 0, sizeof(*bound));
    bound->sin_family = AF_INET;
    bound->sin_addr = ip;
    if (fd < 0 || bind(fd, (struct sockaddr *)bound, sizeof(*bound)) < 0 || listen(fd, 4) < 0 ||
        getsockname(fd, (struct sockaddr *)bound, &len) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static int accept_timed(int lfd)
{
    struct pollfd p = { lfd, POLLIN, 0 };
    if (poll(&p, 1, timeout_s * 1000) != 1)
        return -1;
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0)
        set_timeouts(fd);
    return fd;
}

static int connect_to(const struct sockaddr_in *sa)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    set_timeouts(fd);
    if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ---------------------------------------------------------------- the secondary exchange */

static int send_stream(int fd, uint64_t seed, uint64_t n)
{
    unsigned char buf[16384];
    for (uint64_t off = 0; off < n;) {
        size_t k = n - off < sizeof(buf) ? (size_t)(n - off) : sizeof(buf);
        stream_fill(seed, off, buf, k);
        for (size_t w = 0; w < k;) {
            ssize_t r = send(fd, buf + w, k - w, MSG_NOSIGNAL);
            if (r <= 0)
                return 2;
            w += (size_t)r;
        }
        off += k;
    }
    return 0;
}

static int recv_stream(int fd, uint64_t seed, uint64_t n)
{
    unsigned char buf[16384], want[16384];
    for (uint64_t off = 0; off < n;) {
        size_t k = n - off < sizeof(buf) ? (size_t)(n - off) : sizeof(buf);
        ssize_t r = recv(fd, buf, k, 0);
        if (r <= 0)
            return 2;
        stream_fill(seed, off, want, (size_t)r);
        if (memcmp(buf, want, (size_t)r) != 0)
            return 1;
        off += (uint64_t)r;
    }
    return 0;
}

/* 0 intact, 1 mismatch, 2 error. */
static int exchange(int fd, int accepted, uint64_t n, uint64_t seed)
{
    int rc = accepted ? send_stream(fd, seed, n) : recv_stream(fd, seed, n);
    if (!rc)
        rc = accepted ? recv_stream(fd, seed + 1, n) : send_stream(fd, seed + 1, n);
    close(fd);
    return rc;
}

/* ---------------------------------------------------------------- control lines */

struct control {
    int fd;
    pthread_mutex_t lock;     /* writers */
    char buf[4096];
    size_t len;
};

static int control_send(struct control *c, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&c->lock);
    ssize_t r = send(c->fd, line, (size_t)n, MSG_NOSIGNAL);
    pthread_mutex_unlock(&c->lock);
    return r == n ? 0 : -1;
}

/* One line without its end into out; 0, or -1 at the end or on an error. One reader. */
static int control_line(struct control *c, char *out, size_t size)
{
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->len);
        if (nl) {
            size_t k = (size_t)(nl - c->buf);
            size_t m = k < size - 1 ? k : size - 1;
            memcpy(out, c->buf, m);
            out[m] = 0;
            if (m && out[m - 1] == '\r')
                out[m - 1] = 0;
            memmove(c->buf, nl + 1, c->len - k - 1);
            c->len -= k + 1;
            return 0;
        }
        if (c->len == sizeof(c->buf))
            return -1;
        ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
        if (r <= 0)
            return -1;
        c->len += (size_t)r;
    }
}

/* ---------------------------------------------------------------- tasks */

struct task {
    struct control *control;
    int lfd;                  /* accept here, or -1: connect to addr */
    struct sockaddr_in addr;
    uint64_t bytes, seed;
    int rc;
    const char *what;
    pthread_t thread;
};

static void *accept_task(void *arg)
{
    struct task *t = arg;
    int fd = accept_timed(t->lfd);
    close(t->lfd);
    t->rc = fd < 0 ? 2 : exchange(fd, 1, t->bytes, t->seed);
    if (fd >= 0 && t->rc)
        fprintf(stderr, "connpeer: %s seed %" PRIu64 ": accepted connection %s\n", t->what, t->seed,
                t->rc == 1 ? "carried wrong bytes" : "was reset or cut short");
    if (fd < 0)
        fprintf(stderr, "connpeer: %s seed %" PRIu64 ": nothing connected in %d s\n", t->what,
                t->seed, timeout_s);
    return NULL;
}

static void *connect_task(void *arg)
{
    struct task *t = arg;
    if (delay_ms && !strcmp(t->what, "BIND"))
        usleep((useconds_t)delay_ms * 1000);
    int fd = connect_to(&t->addr);
    char a[64];
    fmt_h6(a, sizeof(a), &t->addr);
    t->rc = fd < 0 ? 2 : exchange(fd, 0, t->bytes, t->seed);
    if (fd < 0)
        fprintf(stderr, "connpeer: %s seed %" PRIu64 ": connect to %s failed: %s\n", t->what,
                t->seed, a, strerror(errno));
    else if (t->rc)
        fprintf(stderr, "connpeer: %s seed %" PRIu64 ": connection to %s %s\n", t->what, t->seed,
                a, t->rc == 1 ? "carried wrong bytes" : "was reset or cut short");
    return NULL;
}

/* ---------------------------------------------------------------- server */

static void *serve_control(void *arg)
{
    struct control *c = arg;
    struct sockaddr_in me;
    socklen_t len = sizeof(me);
    char line[512];

    getsockname(c->fd, (struct sockaddr *)&me, &len);
    while (control_line(c, line, sizeof(line)) == 0) {
        struct task *t = calloc(1, sizeof(*t));
        unsigned long long n, seed;
        char h6[64];
        if (!t)
            break;
        t->control = c;
        if (sscanf(line, "BIND %63s %llu %llu", h6, &n, &seed) == 3 && parse_h6(h6, &t->addr) == 0) {
            t->bytes = n;
            t->seed = seed;
            t->what = "BIND";
            pthread_create(&t->thread, NULL, connect_task, t);
            pthread_detach(t->thread);
        } else if (sscanf(line, "WANT %llu %llu", &n, &seed) == 2) {
            t->bytes = n;
            t->seed = seed;
            t->what = "OPEN";
            if ((t->lfd = listen_on(me.sin_addr, &t->addr)) < 0) {
                free(t);
                continue;
            }
            fmt_h6(h6, sizeof(h6), &t->addr);
            control_send(c, "OPEN %s %llu %llu\n", h6, n, seed);
            pthread_create(&t->thread, NULL, accept_task, t);
            pthread_detach(t->thread);
        } else {
            fprintf(stderr, "connpeer server: bad line '%s'\n", line);
            free(t);
        }
    }
    /* Tasks may still run; the control object is only used for OPEN lines, which are
     * sent before their task starts. Its fd closes (the client closed its end); the
     * object is leaked on purpose: the server runs until killed. */
    close(c->fd);
    return NULL;
}

static int run_server(const char *listen_addr)
{
    struct sockaddr_in sa;
    int one = 1, lfd;
    if (parse_addr(listen_addr, &sa) != 0)
        return 2;
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 64) < 0) {
        fprintf(stderr, "connpeer server: cannot listen on %s: %s\n", listen_addr, strerror(errno));
        return 2;
    }
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        struct control *c = calloc(1, sizeof(*c));
        pthread_t th;
        c->fd = fd;
        pthread_mutex_init(&c->lock, NULL);
        pthread_create(&th, NULL, serve_control, c);
        pthread_detach(th);
    }
}

/* ---------------------------------------------------------------- client */

static int run_client(const char *server, int inbound, int outbound, uint64_t bytes, uint64_t seed)
{
    struct sockaddr_in sa, me;
    socklen_t len = sizeof(me);
    struct control c = { .fd = -1 };
    struct task *in = calloc((size_t)inbound + 1, sizeof(*in));
    struct task *out = calloc((size_t)outbound + 1, sizeof(*out));
    char line[512], h6[64];
    int rc = 0, opened = 0;

    if (parse_addr(server, &sa) != 0 || !in || !out)
        return 2;
    pthread_mutex_init(&c.lock, NULL);
    if ((c.fd = connect_to(&sa)) < 0) {
        fprintf(stderr, "connpeer: control connection to %s failed: %s\n", server, strerror(errno));
        return 2;
    }
    getsockname(c.fd, (struct sockaddr *)&me, &len);
    for (int i = 0; i < inbound; i++) {
        struct task *t = &in[i];
        t->bytes = bytes;
        t->seed = seed + 2 * (uint64_t)i;
        t->what = "BIND";
        if ((t->lfd = listen_on(me.sin_addr, &t->addr)) < 0)
            return 2;
        fmt_h6(h6, sizeof(h6), &t->addr);
        pthread_create(&t->thread, NULL, accept_task, t);
        control_send(&c, "BIND %s %" PRIu64 " %" PRIu64 "\n", h6, bytes, t->seed);
    }
    for (int i = 0; i < outbound; i++)
        control_send(&c, "WANT %" PRIu64 " %" PRIu64 "\n", bytes, seed + 2 * (uint64_t)(inbound + i));
    while (opened < outbound && control_line(&c, line, sizeof(line)) == 0) {
        unsigned long long n, s;
        struct task *t = &out[opened];
        if (sscanf(line, "OPEN %63s %llu %llu", h6, &n, &s) != 3 || parse_h6(h6, &t->addr) != 0) {
            fprintf(stderr, "connpeer: bad line from the server: '%s'\n", line);
            return 2;
        }
        t->bytes = n;
        t->seed = s;
        t->what = "OPEN";
        t->lfd = -1;
        pthread_create(&t->thread, NULL, connect_task, t);
        opened++;
    }
    if (opened < outbound) {
        fprintf(stderr, "connpeer: the control connection ended after %d of %d OPEN lines\n",
                opened, outbound);
        rc = 2;
    }
    if (close_early) {
        close(c.fd);
        c.fd = -1;
    }
    for (int i = 0; i < inbound; i++) {
        pthread_join(in[i].thread, NULL);
        if (in[i].rc && !rc)
            rc = in[i].rc;
    }
    for (int i = 0; i < opened; i++) {
        pthread_join(out[i].thread, NULL);
        if (out[i].rc && !rc)
            rc = out[i].rc;
    }
    if (c.fd >= 0)
        close(c.fd);
    if (!rc)
        printf("connpeer: %d inbound + %d outbound secondary connections, %" PRIu64
               " bytes each way, all intact\n", inbound, outbound, bytes);
    else
        fprintf(stderr, "connpeer: %s\n", rc == 1 ? "data mismatch" : "failed");
    return rc;
}

int main(int argc, char **argv)
{
    const char *listen_addr = NULL, *connect_addr = NULL;
    int inbound = 4, outbound = 4;
    uint64_t bytes = 65536, seed = 1;

    signal(SIGPIPE, SIG_IGN);
    if (argc < 2)
        goto usage;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--close-early")) {
            close_early = 1;
            continue;
        }
        if (i + 1 >= argc)
            goto usage;
        v = argv[++i];
        if (!strcmp(a, "--listen"))
            listen_addr = v;
        else if (!strcmp(a, "--connect"))
            connect_addr = v;
        else if (!strcmp(a, "--inbound"))
            inbound = atoi(v);
        else if (!strcmp(a, "--outbound"))
            outbound = atoi(v);
        else if (!strcmp(a, "--bytes"))
            bytes = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--seed"))
            seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--timeout"))
            timeout_s = atoi(v);
        else if (!strcmp(a, "--delay-ms"))
            delay_ms = atoi(v);
        else
            goto usage;
    }
    if (!strcmp(argv[1], "server") && listen_addr)
        return run_server(listen_addr);
    if (!strcmp(argv[1], "client") && connect_addr && inbound >= 0 && outbound >= 0 &&
        inbound <= 512 && outbound <= 512)
        return run_client(connect_addr, inbound, outbound, bytes, seed);
usage:
    fputs("usage: connpeer server --listen ADDR:PORT [--delay-ms D]\n"
          "       connpeer client --connect ADDR:PORT [--inbound K] [--outbound K] [--bytes N]\n"
          "                       [--seed S] [--timeout SECONDS] [--close-early]\n", stderr);
    return 2;
}
