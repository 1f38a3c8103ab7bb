/*
 * fxinherit.c - the supervisor's handoff of sockets and configuration to
 * its worker (see fxinherit.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fxconf.h"
#include "fxinherit.h"
#include "fxnet.h"

static struct {
    char key[80];
    int fd;
} table[FX_INHERIT_MAX];
static int ntable;
static int received;

int fx_inherit_send(int sock, const char *const *keys, const int *fds, int n)
{
    char payload[FX_INHERIT_MAX * 81];
    size_t len = 0;
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int) * FX_INHERIT_MAX)];
    } c;

    if (n < 0 || n > FX_INHERIT_MAX) {
        errno = EINVAL;
        return -1;
    }
    for (int i = 0; i < n; i++) {
        int k = snprintf(payload + len, sizeof(payload) - len, "%s\n", keys[i]);
        if (k < 0 || (size_t)k >= sizeof(payload) - len) {
            errno = E2BIG;
            return -1;
        }
        len += (size_t)k;
    }
    if (len == 0)
        payload[len++] = '\n';      /* a message even with nothing to hand down */
    struct iovec iov = { payload, len };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (n > 0) {
        memset(&c, 0, sizeof(c));
        m.msg_control = c.buf;
        m.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
        struct cmsghdr *h = CMSG_FIRSTHDR(&m);
        h->cmsg_level = SOL_SOCKET;
        h->cmsg_type = SCM_RIGHTS;
        h->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
        memcpy(CMSG_DATA(h), fds, sizeof(int) * (size_t)n);
    }
    ssize_t r;
    do
        r = sendmsg(sock, &m, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -1 : 0;
}

int fx_supervisor_socket(void)
{
    const char *v = getenv(FX_SUPERVISOR_ENV);
    char *end;
    long fd = v ? strtol(v, &end, 10) : -1;
    if (!v || *end || fd < 0 || fd >= 1 << 20)
        return -1;
    unsetenv(FX_SUPERVISOR_ENV);    /* not for any process a filter starts */
    return (int)fd;
}

void fx_inherit_set(const char *key, int fd)
{
    for (int i = 0; i < ntable; i++)
        if (!strcmp(table[i].key, key)) {
            table[i].fd = fd;
            return;
        }
    if (ntable < FX_INHERIT_MAX) {
        snprintf(table[ntable].key, sizeof(table[ntable].key), "%s", key);
        table[ntable++].fd = fd;
    }
}

int fx_inherit_receive(int sock, unsigned timeout_ms, char *err, size_t errlen)
{
    char payload[FX_INHERIT_MAX * 81 + 1];
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int) * FX_INHERIT_MAX)];
    } c;
    struct iovec iov = { payload, sizeof(payload) - 1 };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf,
                        .msg_controllen = sizeof(c.buf) };
    struct pollfd p = { sock, POLLIN, 0 };
    int fds[FX_INHERIT_MAX], nfds = 0;
    ssize_t r;

    if (poll(&p, 1, (int)timeout_ms) <= 0) {
        snprintf(err, errlen, "no sockets from the supervisor within %u ms", timeout_ms);
        return -1;
    }
    do
        r = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
    while (r < 0 && errno == EINTR);
    if (r <= 0) {
        snprintf(err, errlen, "receiving the supervisor's sockets: %s",
                 r == 0 ? "end of file" : strerror(errno));
        return -1;
    }
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h))
        if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS) {
            int k = (int)((h->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            if (k > FX_INHERIT_MAX - nfds)
                k = FX_INHERIT_MAX - nfds;
            memcpy(fds + nfds, CMSG_DATA(h), sizeof(int) * (size_t)k);
            nfds += k;
        }
    payload[r] = 0;
    int i = 0;
    for (char *line = payload, *nl; *line && (nl = strchr(line, '\n')); line = nl + 1) {
        *nl = 0;
        if (!*line)
            continue;
        if (i >= nfds) {
            snprintf(err, errlen, "the supervisor named more sockets than it sent (%d)", nfds);
            return -1;
        }
        fx_inherit_set(line, fds[i++]);
    }
    if ((m.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) || i != nfds) {
        snprintf(err, errlen, "the supervisor's handoff is malformed (%d names, %d fds)", i, nfds);
        return -1;
    }
    received = 1;
    return 0;
}

int fx_inherited(void)
{
    return received;
}

int fx_inherited_fd(const char *key)
{
    for (int i = 0; i < ntable; i++)
        if (!strcmp(table[i].key, key))
            return table[i].fd;
    return -1;
}

struct fx_config *fx_config_load_as_handed(const char *path, char *err, size_t errlen)
{
    int fd = fx_inherited_fd("@config");
    if (fd >= 0)
        return fx_config_load_fd(fd, path, err, errlen);
    return fx_config_load(path, err, errlen);
}

void fx_inherit_rule_key(const struct fx_rule_conf *rule, char key[FX_INHERIT_KEYLEN])
{
    size_t pre = rule->protocol == FX_PROTO_UDP ? 4 : 0;
    memcpy(key, "udp ", pre);
    fx_addr_format(&rule->listen, rule->listen_len, key + pre, FX_INHERIT_KEYLEN - pre);
}
