/*
 * udppeer.c - native UDP/DNS test peer for tests/udp.sh. Plain C and POSIX, no Wine.
 *
 *   udppeer query --connect ADDR:PORT --name NAME [--expect A.B.C.D] [--timeout-ms T]
 *       One A query for NAME from one socket; prints "answer A.B.C.D" (exit 0) or
 *       "no answer" (exit 1). With --expect, a different address is exit 1 too.
 *   udppeer raw --connect ADDR:PORT --kind KIND [--timeout-ms T]
 *       Sends one datagram of a kind the guard must drop and waits for any reply:
 *       prints "no reply" (exit 0) or "reply N bytes" (exit 1). KIND: short (5 bytes of
 *       text), response (a well-formed answer-shaped datagram, QR set), longname (a
 *       query whose name has 4 labels of 63 bytes: 255 characters), pointer (a query
 *       whose name is a compression pointer), qdcount (a header with 0 questions).
 *       With --follow NAME, then sends a valid query for NAME from the same socket: the
 *       drop must not stall the path; prints "then answer A.B.C.D" or "then no answer"
 *       (exit 1).
 *   udppeer flood --connect ADDR:PORT --name NAME --expect A.B.C.D --sources S
 *                 --queries Q [--window W] [--timeout-ms T]
 *       S sockets (S source ports) send Q queries in total, each socket keeping at most
 *       W unanswered. No retries: a query not answered within T ms of being sent is
 *       lost (answers already waiting are read first, so a stall of this process is
 *       not counted as loss). Every answer is checked (ID outstanding on that socket,
 *       QR, RCODE 0, an A record equal to --expect). Prints one line
 *         "sent N answered M lost L bad B late X elapsed MS"
 *       and exits 0 when every query was answered correctly. Each lost query and
 *       each late answer is also named on stderr (source port, ID, why).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void die(const char *msg)
{
    fprintf(stderr, "udppeer: %s\n", msg);
    exit(2);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct sockaddr_in target;

static void parse_target(const char *s)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (!colon || colon - s >= (long)sizeof(host))
        die("--connect wants IPV4:PORT");
    memcpy(host, s, colon - s);
    host[colon - s] = 0;
    memset(&target, 0, sizeof(target));
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &target.sin_addr) != 1)
        die("bad address");
}

static int udp_socket(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), size = 1 << 20;
    if (fd < 0)
        die("socket");
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    if (connect(fd, (struct sockaddr *)&target, sizeof(target)) != 0)
        die("connect");
    return fd;
}

/* A standard A/IN query with recursion desired. Returns its length. */
static size_t build_query(uint8_t *p, uint16_t id, const char *name)
{
    size_t off = 12;
    memset(p, 0, 12);
    p[0] = id >> 8;
    p[1] = id & 0xff;
    p[2] = 0x01;              /* RD */
    p[5] = 1;                 /* QDCOUNT */
    while (*name) {
        const char *dot = strchr(name, '.');
        size_t l = dot ? (size_t)(dot - name) : strlen(name);
        p[off++] = (uint8_t)l;
        memcpy(p + off, name, l);
        off += l;
        name += l + (dot ? 1 : 0);
    }
    p[off++] = 0;
    p[off++] = 0; p[off++] = 1;   /* A */
    p[off++] = 0; p[off++] = 1;   /* IN */
    return off;
}

/* The first A record's address of a valid answer to id, or -1. */
static int parse_answer(const uint8_t *p, size_t len, uint16_t *id, uint32_t *addr)
{
    size_t off = 12;
    if (len < 12 || !(p[2] & 0x80) || (p[3] & 0x0f) != 0)
        return -1;
    *id = (uint16_t)(p[0] << 8 | p[1]);
    unsigned qd = p[4] << 8 | p[5], an = p[6] << 8 | p[7];
    for (unsigned q = 0; q < qd; q++) {
        while (off < len && p[off] && !(p[off] & 0xc0))
            off += p[off] + 1;
        off += off < len && (p[off] & 0xc0) ? 2 : 1;
        off += 4;
    }
    for (unsigned a = 0; a < an && off < len; a++) {
        while (off < len && p[off] && !(p[off] & 0xc0))
            off += p[off] + 1;
        off += off < len && (p[off] & 0xc0) ? 2 : 1;
        if (off + 10 > len)
            return -1;
        unsigned type = p[off] << 8 | p[off + 1], rdlen = p[off + 8] << 8 | p[off + 9];
        off += 10;
        if (off + rdlen > len)
            return -1;
        if (type == 1 && rdlen == 4) {
            memcpy(addr, p + off, 4);
            return 0;
        }
        off += rdlen;
    }
    return -1;
}

static int wait_reply(int fd, uint8_t *buf, size_t cap, int timeout_ms)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    if (poll(&pfd, 1, timeout_ms) <= 0)
        return -1;
    return (int)recv(fd, buf, cap, 0);
}

struct opts {
    const char *connect, *name, *expect, *kind, *follow;
    int sources, queries, window, timeout_ms;
};

static int run_query(const struct opts *o)
{
    uint8_t q[512], r[4096];
    int fd = udp_socket();
    size_t n = build_query(q, 0x1234, o->name);
    uint16_t id;
    uint32_t addr;
    char text[32];

    if (send(fd, q, n, 0) < 0)
        die("send");
    int got = wait_reply(fd, r, sizeof(r), o->timeout_ms);
    if (got < 0 || parse_answer(r, (size_t)got, &id, &addr) != 0 || id != 0x1234) {
        printf("no answer\n");
        return 1;
    }
    inet_ntop(AF_INET, &addr, text, sizeof(text));
    printf("answer %s\n", text);
    return o->expect && strcmp(o->expect, text) ? 1 : 0;
}

static int run_raw(const struct opts *o)
{
    uint8_t q[512], r[4096];
    size_t n;
    int fd = udp_socket();

    if (!o->kind)
        die("raw needs --kind");
    if (!strcmp(o->kind, "short")) {
        memcpy(q, "hello", 5);
        n = 5;
    } else if (!strcmp(o->kind, "response")) {
        n = build_query(q, 0x4242, "example.test");
        q[2] |= 0x80;
    } else if (!strcmp(o->kind, "longname")) {
        char name[300];
        size_t k = 0;
        for (int l = 0; l < 4; l++) {
            if (l)
                name[k++] = '.';
            memset(name + k, 'a' + l, 63);
            k += 63;
        }
        name[k] = 0;
        n = build_query(q, 0x4343, name);
    } else if (!strcmp(o->kind, "pointer")) {
        n = build_query(q, 0x4444, "x");
        q[12] = 0xc0;           /* a pointer where the name should start */
        q[13] = 0x0c;
    } else if (!strcmp(o->kind, "qdcount")) {
        n = build_query(q, 0x4545, "example.test");
        q[5] = 0;
    } else {
        die("unknown --kind");
    }
    if (send(fd, q, n, 0) < 0)
        die("send");
    int got = wait_reply(fd, r, sizeof(r), o->timeout_ms);
    if (got >= 0) {
        printf("reply %d bytes\n", got);
        return 1;
    }
    printf("no reply\n");
    if (!o->follow)
        return 0;
    uint16_t id;
    uint32_t addr;
    char text[32];
    n = build_query(q, 0x5151, o->follow);
    if (send(fd, q, n, 0) < 0)
        die("send");
    got = wait_reply(fd, r, sizeof(r), o->timeout_ms);
    if (got < 0 || parse_answer(r, (size_t)got, &id, &addr) != 0 || id != 0x5151) {
        printf("then no answer\n");
        return 1;
    }
    inet_ntop(AF_INET, &addr, text, sizeof(text));
    printf("then answer %s\n", text);
    return 0;
}

struct src {
    int fd;
    unsigned port;                  /* its source port, for the diagnostics */
    int sent, answered;
    uint16_t next_id;
    uint64_t sent_at[65536 / 64];   /* by id (ids are 0..quota-1 < 1024) */
    uint8_t pending[65536 / 64];
    uint8_t settled[65536 / 64];    /* by id: SETTLED_* once not pending */
    int outstanding;
};
enum { SETTLED_ANSWERED = 1, SETTLED_EXPIRED };

struct flood_tally {
    long answered, bad, late;
};

/* Read every answer waiting on x's socket. */
static void drain_answers(struct src *x, const struct in_addr *want, struct flood_tally *t)
{
    uint8_t r[4096];
    int got;
    while ((got = (int)recv(x->fd, r, sizeof(r), MSG_DONTWAIT)) >= 0) {
        uint16_t id;
        uint32_t addr;
        if (parse_answer(r, (size_t)got, &id, &addr) != 0 || addr != want->s_addr) {
            t->bad++;
            continue;
        }
        if (id >= x->next_id || !x->pending[id]) {
            t->late++;     /* after its time-out, or not ours */
            /* Which: a failed run names each (stderr). */
            fprintf(stderr, "udppeer: late answer on source port %u: id %u %s\n", x->port, id,
                    id >= x->next_id ? "not sent yet"
                    : x->settled[id] == SETTLED_EXPIRED ? "expired" : "answered twice");
            continue;
        }
        x->pending[id] = 0;
        x->settled[id] = SETTLED_ANSWERED;
        x->outstanding--;
        t->answered++;
    }
}

static int run_flood(const struct opts *o)
{
    struct in_addr want;
    if (!o->expect || inet_pton(AF_INET, o->expect, &want) != 1)
        die("flood needs --expect A.B.C.D");
    if (o->sources < 1 || o->sources > 1000 || o->queries < 1)
        die("bad --sources/--queries");
    int quota = (o->queries + o->sources - 1) / o->sources;
    if (quota > 1024)
        die("at most 1024 queries per source");
    struct src *s = calloc(o->sources, sizeof(*s));
    struct pollfd *pfd = calloc(o->sources, sizeof(*pfd));
    if (!s || !pfd)
        die("out of memory");
    int total_left = o->queries;
    long sent = 0, lost = 0;
    struct flood_tally tally = { 0, 0, 0 };
    uint64_t start = now_ms();

    for (int i = 0; i < o->sources; i++) {
        struct sockaddr_in self;
        socklen_t self_len = sizeof(self);
        s[i].fd = udp_socket();
        if (getsockname(s[i].fd, (struct sockaddr *)&self, &self_len) == 0)
            s[i].port = ntohs(self.sin_port);
        pfd[i].fd = s[i].fd;
        pfd[i].events = POLLIN;
    }
    for (;;) {
        uint64_t t = now_ms();
        int active = 0;
        for (int i = 0; i < o->sources; i++) {
            struct src *x = &s[i];
            /* Expire, after reading what has arrived: this process may have
             * been descheduled for longer than the time-out (a loaded
             * machine), and an answer already waiting is not lost. */
            if (x->outstanding > 0)
                drain_answers(x, &want, &tally);
            for (int id = 0; id < x->next_id; id++)
                if (x->pending[id] && t - x->sent_at[id] > (uint64_t)o->timeout_ms) {
                    fprintf(stderr, "udppeer: lost on source port %u: id %u, sent %llu ms "
                            "into the flood\n", x->port, id,
                            (unsigned long long)(x->sent_at[id] - start));
                    x->pending[id] = 0;
                    x->settled[id] = SETTLED_EXPIRED;
                    x->outstanding--;
                    lost++;
                }
            /* send up to the window */
            while (x->outstanding < o->window && x->sent < quota && total_left > 0) {
                uint8_t q[512];
                uint16_t id = x->next_id++;
                size_t n = build_query(q, id, o->name);
                if (send(x->fd, q, n, 0) < 0) {
                    lost++;
                } else {
                    x->pending[id] = 1;
                    x->sent_at[id] = t;
                    x->outstanding++;
                }
                x->sent++;
                sent++;
                total_left--;
            }
            if (x->outstanding > 0 || (x->sent < quota && total_left > 0))
                active = 1;
        }
        if (!active)
            break;
        if (poll(pfd, o->sources, 50) < 0 && errno != EINTR)
            die("poll");
        for (int i = 0; i < o->sources; i++)
            if (pfd[i].revents & (POLLIN | POLLERR))
                drain_answers(&s[i], &want, &tally);
    }
    printf("sent %ld answered %ld lost %ld bad %ld late %ld elapsed %llu\n", sent, tally.answered,
           lost, tally.bad, tally.late, (unsigned long long)(now_ms() - start));
    return tally.answered == o->queries && lost == 0 && tally.bad == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    struct opts o = { .window = 4, .timeout_ms = 2000, .sources = 1, .queries = 1 };
    if (argc < 2)
        die("usage: udppeer query|raw|flood --connect ADDR:PORT ...");
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            die("option without a value");
        i++;
        if (!strcmp(k, "--connect")) o.connect = v;
        else if (!strcmp(k, "--name")) o.name = v;
        else if (!strcmp(k, "--expect")) o.expect = v;
        else if (!strcmp(k, "--kind")) o.kind = v;
        else if (!strcmp(k, "--follow")) o.follow = v;
        else if (!strcmp(k, "--sources")) o.sources = atoi(v);
        else if (!strcmp(k, "--queries")) o.queries = atoi(v);
        else if (!strcmp(k, "--window")) o.window = atoi(v);
        else if (!strcmp(k, "--timeout-ms")) o.timeout_ms = atoi(v);
        else die("unknown option");
    }
    if (!o.connect)
        die("--connect is required");
    parse_target(o.connect);
    if (!strcmp(argv[1], "query")) {
        if (!o.name)
            die("query needs --name");
        return run_query(&o);
    }
    if (!strcmp(argv[1], "raw"))
        return run_raw(&o);
    if (!strcmp(argv[1], "flood")) {
        if (!o.name)
            die("flood needs --name");
        return run_flood(&o);
    }
    die("unknown mode");
}
