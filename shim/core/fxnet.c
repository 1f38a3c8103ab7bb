/*
 * fxnet.c - native socket helpers and address conversion (see fxnet.h).
 *
 * Owns the Linux socket calls and the Linux/Win32 sockaddr mapping.  No
 * state: every function works on the fd or buffers it is given, except the
 * one optional observer of abortive closes that fwxreplay installs.
 */
#define _GNU_SOURCE
#include "fxnet.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

_Static_assert(sizeof(struct sockaddr_in6) == FX_SOCKADDR_MAX, "sockaddr_in6 size");
_Static_assert(sizeof(struct sockaddr_in) <= FX_SOCKADDR_MAX, "sockaddr_in size");

#define FX_WIN_AF_INET   2
#define FX_WIN_AF_INET6  23
#define FX_WIN_SIN_LEN   16
#define FX_WIN_SIN6_LEN  28

static const char fx_addr_hint[] = "expected ADDR:PORT, e.g. 127.0.0.1:8080, [::1]:80 or *:80";

static void fx_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fx_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- text <-> address ------------------------------------------------- */

static int fx_parse_port(const char *p, unsigned *port)
{
    unsigned v = 0;
    size_t n = 0;
    for (; p[n] != '\0'; n++) {
        if (p[n] < '0' || p[n] > '9' || n >= 5)
            return -1;
        v = v * 10 + (unsigned)(p[n] - '0');
    }
    if (n == 0 || v > 65535)
        return -1;
    *port = v;
    return 0;
}

int fx_addr_parse(const char *text, void *sa, int *salen, char *err, size_t errlen)
{
    char host[80];
    const char *portp, *hend;
    size_t hlen;
    unsigned port;
    int is6;

    if (text == NULL || *text == '\0') {
        fx_seterr(err, errlen, "empty address (%s)", fx_addr_hint);
        return -1;
    }

    if (text[0] == '[') {
        hend = strchr(text, ']');
        if (hend == NULL) {
            fx_seterr(err, errlen, "missing ']' in '%s' (%s)", text, fx_addr_hint);
            return -1;
        }
        if (hend[1] != ':' || hend[2] == '\0') {
            fx_seterr(err, errlen, "missing port in '%s' (%s)", text, fx_addr_hint);
            return -1;
        }
        is6 = 1;
        portp = hend + 2;
        hlen = (size_t)(hend - (text + 1));
        if (hlen >= sizeof(host)) {
            fx_seterr(err, errlen, "bad IPv6 address in '%s'", text);
            return -1;
        }
        memcpy(host, text + 1, hlen);
    } else {
        const char *colon = strrchr(text, ':');
        if (colon == NULL || colon[1] == '\0') {
            fx_seterr(err, errlen, "missing port in '%s' (%s)", text, fx_addr_hint);
            return -1;
        }
        if (strchr(text, ':') != colon) {
            fx_seterr(err, errlen, "IPv6 address without brackets in '%s' (write it as [ADDR]:PORT, e.g. [::1]:80)",
                      text);
            return -1;
        }
        is6 = 0;
        portp = colon + 1;
        hlen = (size_t)(colon - text);
        if (hlen == 0) {
            fx_seterr(err, errlen, "missing address in '%s' (use *:%s for any IPv4 address)", text, portp);
            return -1;
        }
        if (hlen >= sizeof(host)) {
            fx_seterr(err, errlen, "bad IPv4 address in '%s'", text);
            return -1;
        }
        memcpy(host, text, hlen);
    }
    host[hlen] = '\0';

    if (fx_parse_port(portp, &port) < 0) {
        fx_seterr(err, errlen, "bad port '%s' in '%s' (expected a number from 0 to 65535)", portp, text);
        return -1;
    }

    if (!is6) {
        struct sockaddr_in sin;
        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        sin.sin_port = htons((uint16_t)port);
        if (strcmp(host, "*") == 0) {
            sin.sin_addr.s_addr = htonl(INADDR_ANY);
        } else if (inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
            fx_seterr(err, errlen, "bad IPv4 address '%s' in '%s' (expected a dotted quad like 127.0.0.1; names are not resolved)",
                      host, text);
            return -1;
        }
        if (*salen < (int)sizeof(sin)) {
            fx_seterr(err, errlen, "address buffer too small for '%s'", text);
            return -1;
        }
        memcpy(sa, &sin, sizeof(sin));
        *salen = (int)sizeof(sin);
    } else {
        struct sockaddr_in6 sin6;
        char *pct = strchr(host, '%');
        memset(&sin6, 0, sizeof(sin6));
        sin6.sin6_family = AF_INET6;
        sin6.sin6_port = htons((uint16_t)port);
        if (pct != NULL) {
            char *end;
            unsigned long scope;
            *pct++ = '\0';
            errno = 0;
            scope = strtoul(pct, &end, 10);
            if (*pct >= '0' && *pct <= '9' && *end == '\0' && errno == 0 && scope <= UINT32_MAX) {
                sin6.sin6_scope_id = (uint32_t)scope;
            } else {
                unsigned idx = if_nametoindex(pct);
                if (idx == 0) {
                    fx_seterr(err, errlen, "unknown interface '%s' in '%s'", pct, text);
                    return -1;
                }
                sin6.sin6_scope_id = idx;
            }
        }
        if (inet_pton(AF_INET6, host, &sin6.sin6_addr) != 1) {
            fx_seterr(err, errlen, "bad IPv6 address '%s' in '%s'", host, text);
            return -1;
        }
        if (*salen < (int)sizeof(sin6)) {
            fx_seterr(err, errlen, "address buffer too small for '%s'", text);
            return -1;
        }
        memcpy(sa, &sin6, sizeof(sin6));
        *salen = (int)sizeof(sin6);
    }
    return 0;
}

static sa_family_t fx_family(const void *sa)
{
    sa_family_t f;
    memcpy(&f, sa, sizeof(f));
    return f;
}

int fx_addr_format(const void *sa, int salen, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN];
    int n = -1;

    if (sa == NULL || salen < (int)sizeof(sa_family_t))
        goto fail;
    if (fx_family(sa) == AF_INET && salen >= (int)sizeof(struct sockaddr_in)) {
        struct sockaddr_in sin;
        memcpy(&sin, sa, sizeof(sin));
        if (inet_ntop(AF_INET, &sin.sin_addr, ip, sizeof(ip)) == NULL)
            goto fail;
        n = snprintf(buf, len, "%s:%u", ip, (unsigned)ntohs(sin.sin_port));
    } else if (fx_family(sa) == AF_INET6 && salen >= (int)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 sin6;
        memcpy(&sin6, sa, sizeof(sin6));
        if (inet_ntop(AF_INET6, &sin6.sin6_addr, ip, sizeof(ip)) == NULL)
            goto fail;
        if (sin6.sin6_scope_id != 0)
            n = snprintf(buf, len, "[%s%%%u]:%u", ip, (unsigned)sin6.sin6_scope_id,
                         (unsigned)ntohs(sin6.sin6_port));
        else
            n = snprintf(buf, len, "[%s]:%u", ip, (unsigned)ntohs(sin6.sin6_port));
    }
    if (n >= 0 && (size_t)n < len)
        return n;
fail:
    if (buf != NULL && len >= 2)
        memcpy(buf, "?", 2);
    else if (buf != NULL && len == 1)
        buf[0] = '\0';
    return -1;
}

/* ---- sockets ---------------------------------------------------------- */

static int fx_check_sa(const void *sa, int salen)
{
    if (sa == NULL || salen < (int)sizeof(sa_family_t))
        return -EINVAL;
    if (fx_family(sa) == AF_INET && salen >= (int)sizeof(struct sockaddr_in))
        return AF_INET;
    if (fx_family(sa) == AF_INET6 && salen >= (int)sizeof(struct sockaddr_in6))
        return AF_INET6;
    return -EAFNOSUPPORT;
}

int fx_tcp_listen(const void *sa, int salen, int backlog, int reuseport,
                  char *err, size_t errlen)
{
    char name[FX_ADDRSTRLEN];
    int one = 1, fd = -1, rc, family;

    family = fx_check_sa(sa, salen);
    if (family < 0) {
        fx_seterr(err, errlen, "listen: unsupported address (only IPv4 and IPv6)");
        return family;
    }
    fx_addr_format(sa, salen, name, sizeof(name));

    fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        fx_seterr(err, errlen, "socket for %s: %s", name, strerror(errno));
        goto fail;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) {
        rc = -errno;
        fx_seterr(err, errlen, "setsockopt SO_REUSEADDR on %s: %s", name, strerror(errno));
        goto fail;
    }
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
        rc = -errno;
        fx_seterr(err, errlen, "setsockopt SO_REUSEPORT on %s: %s", name, strerror(errno));
        goto fail;
    }
    if (family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) {
        rc = -errno;
        fx_seterr(err, errlen, "setsockopt IPV6_V6ONLY on %s: %s", name, strerror(errno));
        goto fail;
    }
    /* Accepted sockets inherit it: one setsockopt per listener instead of
     * one per connection.  Not fatal: it only costs latency. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)sa, (socklen_t)salen) < 0) {
        rc = -errno;
        fx_seterr(err, errlen, "bind %s: %s", name, strerror(errno));
        goto fail;
    }
    if (listen(fd, backlog > 0 ? backlog : SOMAXCONN) < 0) {
        rc = -errno;
        fx_seterr(err, errlen, "listen %s: %s", name, strerror(errno));
        goto fail;
    }
    return fd;

fail:
    if (fd >= 0)
        close(fd);
    return rc;
}

int fx_tcp_accept(int lfd, void *sa, int *salen)
{
    socklen_t sl = (sa != NULL && salen != NULL) ? (socklen_t)*salen : 0;
    int fd;

    do {
        fd = accept4(lfd, sa != NULL ? (struct sockaddr *)sa : NULL,
                     sa != NULL ? &sl : NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return -errno;
    if (sa != NULL && salen != NULL)
        *salen = (int)sl;
    return fd;
}

int fx_tcp_connect(const void *sa, int salen, int *in_progress)
{
    int family = fx_check_sa(sa, salen), fd, rc;

    *in_progress = 0;
    if (family < 0)
        return family;
    fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* A non-blocking connect interrupted by a signal carries on in the
     * background, exactly like EINPROGRESS. */
    if (connect(fd, (const struct sockaddr *)sa, (socklen_t)salen) == 0)
        return fd;
    if (errno == EINPROGRESS || errno == EINTR) {
        *in_progress = 1;
        return fd;
    }
    rc = -errno;
    close(fd);
    return rc;
}

int fx_sock_error(int fd)
{
    int e = 0;
    socklen_t sl = sizeof(e);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &sl) < 0)
        return -errno;
    return e;
}

long fx_recv(int fd, void *buf, unsigned long len)
{
    ssize_t n;
    do {
        n = recv(fd, buf, len, 0);
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -(long)errno : (long)n;
}

long fx_send(int fd, const void *buf, unsigned long len)
{
    ssize_t n;
    do {
        n = send(fd, buf, len, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -(long)errno : (long)n;
}

int fx_shutdown_write(int fd)
{
    return shutdown(fd, SHUT_WR) < 0 ? -errno : 0;
}

/* fwxreplay's observer of abortive closes (fx_set_close_abort_hook). */
static void (*volatile fx_abort_hook)(int fd, void *arg);
static void *volatile fx_abort_hook_arg;

void fx_set_close_abort_hook(void (*hook)(int fd, void *arg), void *arg)
{
    fx_abort_hook_arg = arg;
    __atomic_store_n(&fx_abort_hook, hook, __ATOMIC_RELEASE);
}

void fx_close_abort(int fd)
{
    struct linger lg = { 1, 0 };
    if (fd < 0)
        return;
    void (*hook)(int, void *) = __atomic_load_n(&fx_abort_hook, __ATOMIC_ACQUIRE);
    if (hook)
        hook(fd, fx_abort_hook_arg);
    /* Fails on a non-socket; close still does the rest. */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

int fx_getsockname(int fd, void *sa, int *salen)
{
    socklen_t sl = (socklen_t)*salen;
    if (getsockname(fd, (struct sockaddr *)sa, &sl) < 0)
        return -errno;
    *salen = (int)sl;
    return 0;
}

int fx_original_dst(int fd, void *sa, int *salen)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    int family;
    socklen_t fl = sizeof(family);

    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &fl) < 0)
        return -errno;
    /* SO_ORIGINAL_DST (80) is the same number for IPv4 and, at level
     * SOL_IPV6, for IPv6; linux/netfilter_ipv4.h clashes with netinet/in.h. */
    /* The kernel copies exactly this much and may leave the length as given. */
    sl = family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    memset(&ss, 0, sizeof(ss));
    if (getsockopt(fd, family == AF_INET6 ? SOL_IPV6 : SOL_IP, 80, &ss, &sl) < 0)
        return -errno;
    if ((int)sl > *salen)
        return -ENOSPC;
    memcpy(sa, &ss, sl);
    *salen = (int)sl;
    return 0;
}

int fx_sa_equal(const void *a, int alen, const void *b, int blen)
{
    const struct sockaddr *x = a, *y = b;
    if (alen < (int)sizeof(sa_family_t) || blen < (int)sizeof(sa_family_t) ||
        x->sa_family != y->sa_family)
        return 0;
    if (x->sa_family == AF_INET) {
        const struct sockaddr_in *p = a, *q = b;
        return alen >= (int)sizeof(*p) && blen >= (int)sizeof(*q) &&
               p->sin_port == q->sin_port && p->sin_addr.s_addr == q->sin_addr.s_addr;
    }
    if (x->sa_family == AF_INET6) {
        const struct sockaddr_in6 *p = a, *q = b;
        return alen >= (int)sizeof(*p) && blen >= (int)sizeof(*q) &&
               p->sin6_port == q->sin6_port &&
               !memcmp(&p->sin6_addr, &q->sin6_addr, sizeof(p->sin6_addr));
    }
    return 0;
}

int fx_getpeername(int fd, void *sa, int *salen)
{
    socklen_t sl = (socklen_t)*salen;
    if (getpeername(fd, (struct sockaddr *)sa, &sl) < 0)
        return -errno;
    *salen = (int)sl;
    return 0;
}

int fx_sa_is_any(const void *sa, int salen)
{
    if (fx_check_sa(sa, salen) == AF_INET)
        return ((const struct sockaddr_in *)sa)->sin_addr.s_addr == htonl(INADDR_ANY);
    if (fx_check_sa(sa, salen) == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return 0;
}

int fx_set_nodelay(int fd)
{
    int one = 1;
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ? -errno : 0;
}

/* ---- Linux <-> Win32 -------------------------------------------------- */

/* The family is a native-endian 16-bit field at offset 0 in both ABIs
 * (Linux has no BSD sin_len byte), and the rest of the layout matches, so
 * conversion is a copy plus a family rewrite. */
static int fx_sa_convert(const void *in, int inlen, void *out, int *outlen,
                         uint16_t in4, uint16_t in6, uint16_t out4, uint16_t out6)
{
    uint16_t fam, nfam;
    int n;

    if (in == NULL || out == NULL || outlen == NULL || inlen < 2)
        return -1;
    memcpy(&fam, in, sizeof(fam));
    if (fam == in4) {
        n = FX_WIN_SIN_LEN;
        nfam = out4;
    } else if (fam == in6) {
        n = FX_WIN_SIN6_LEN;
        nfam = out6;
    } else {
        return -1;
    }
    if (inlen < n || *outlen < n)
        return -1;
    memmove(out, in, (size_t)n);
    memcpy(out, &nfam, sizeof(nfam));
    *outlen = n;
    return 0;
}

int fx_sa_to_win32(const void *linux_sa, int len, void *win_sa, int *win_len)
{
    return fx_sa_convert(linux_sa, len, win_sa, win_len,
                         AF_INET, AF_INET6, FX_WIN_AF_INET, FX_WIN_AF_INET6);
}

int fx_sa_from_win32(const void *win_sa, int len, void *linux_sa, int *linux_len)
{
    return fx_sa_convert(win_sa, len, linux_sa, linux_len,
                         FX_WIN_AF_INET, FX_WIN_AF_INET6, AF_INET, AF_INET6);
}

int fx_errno_to_wsa(int err)
{
    if (err < 0)
        err = -err;
    switch (err) {
    case 0:               return 0;
    case EINTR:           return 10004;
    case EBADF:           return 10009;
    case EACCES:
    case EPERM:           return 10013;
    case EFAULT:          return 10014;
    case EINVAL:          return 10022;
    case EMFILE:
    case ENFILE:          return 10024;
    case EAGAIN:          return 10035;
    case EINPROGRESS:     return 10036;
    case EALREADY:        return 10037;
    case ENOTSOCK:        return 10038;
    case EDESTADDRREQ:    return 10039;
    case EMSGSIZE:        return 10040;
    case EPROTOTYPE:      return 10041;
    case ENOPROTOOPT:     return 10042;
    case EPROTONOSUPPORT: return 10043;
    case EOPNOTSUPP:      return 10045;
    case EAFNOSUPPORT:    return 10047;
    case EADDRINUSE:      return 10048;
    case EADDRNOTAVAIL:   return 10049;
    case ENETDOWN:        return 10050;
    case ENETUNREACH:     return 10051;
    case ENETRESET:       return 10052;
    case ECONNABORTED:    return 10053;
    case ECONNRESET:      return 10054;
    case ENOBUFS:
    case ENOMEM:          return 10055;
    case EISCONN:         return 10056;
    case ENOTCONN:        return 10057;
    case EPIPE:
    case ESHUTDOWN:       return 10058;
    case ETIMEDOUT:       return 10060;
    case ECONNREFUSED:    return 10061;
    case EHOSTDOWN:       return 10064;
    case EHOSTUNREACH:    return 10065;
    default:              return 10053;
    }
}

/* ---- sockets that filters own ----------------------------------------- */

static int fx_tcp_socket_family(int family)
{
    int one = 1, fd;

    fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* Windows lets a socket bind over TIME_WAIT connections by default;
     * Linux needs SO_REUSEADDR for that (and never allows more). */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    return fd;
}

int fx_tcp_socket(const void *sa, int salen)
{
    int family = sa ? fx_check_sa(sa, salen) : AF_INET;
    if (family < 0)
        return family;
    return fx_tcp_socket_family(family);
}

/* The options fx_tcp_match_family carries over, as (level, name) pairs. */
static const struct { int level, name; } fx_carried_opts[] = {
    { SOL_SOCKET, SO_KEEPALIVE },
    { IPPROTO_TCP, TCP_NODELAY },
};

int fx_tcp_match_family(int fd, const void *sa, int salen)
{
    int family = fx_check_sa(sa, salen), cur, nfd, rc = 0;
    socklen_t sl = sizeof(cur);

    if (family < 0)
        return family;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &cur, &sl) < 0)
        return -errno;
    if (cur == family)
        return 0;
    nfd = fx_tcp_socket_family(family);
    if (nfd < 0)
        return nfd;
    for (size_t i = 0; i < sizeof(fx_carried_opts) / sizeof(fx_carried_opts[0]); i++) {
        int v = 0;
        sl = sizeof(v);
        if (getsockopt(fd, fx_carried_opts[i].level, fx_carried_opts[i].name, &v, &sl) == 0)
            setsockopt(nfd, fx_carried_opts[i].level, fx_carried_opts[i].name, &v, sizeof(v));
    }
    /* The kernel doubles what is set; set half of what it reports. */
    static const int bufs[] = { SO_SNDBUF, SO_RCVBUF };
    for (size_t i = 0; i < 2; i++) {
        int v = 0, dflt = 0;
        socklen_t l1 = sizeof(v), l2 = sizeof(dflt);
        if (getsockopt(fd, SOL_SOCKET, bufs[i], &v, &l1) == 0 &&
            getsockopt(nfd, SOL_SOCKET, bufs[i], &dflt, &l2) == 0 && v != dflt) {
            v /= 2;
            setsockopt(nfd, SOL_SOCKET, bufs[i], &v, sizeof(v));
        }
    }
    if (dup3(nfd, fd, O_CLOEXEC) < 0)
        rc = -errno;
    /* fd now names the new open file description, O_NONBLOCK included. */
    close(nfd);
    return rc;
}

int fx_bind(int fd, const void *sa, int salen)
{
    if (fx_check_sa(sa, salen) < 0)
        return fx_check_sa(sa, salen);
    return bind(fd, (const struct sockaddr *)sa, (socklen_t)salen) < 0 ? -errno : 0;
}

int fx_listen(int fd, int backlog)
{
    return listen(fd, backlog < 1 ? 1 : backlog) < 0 ? -errno : 0;
}

int fx_connect(int fd, const void *sa, int salen)
{
    int family = fx_check_sa(sa, salen);

    if (family < 0)
        return family;
    if (connect(fd, (const struct sockaddr *)sa, (socklen_t)salen) == 0)
        return 0;
    /* Interrupted by a signal, a non-blocking connect carries on. */
    if (errno == EINPROGRESS || errno == EINTR)
        return 1;
    return -errno;
}

static int fx_sockopt_map(int opt, int *level, int *name)
{
    switch (opt) {
    case FX_SO_REUSEADDR:  *level = SOL_SOCKET;  *name = SO_REUSEADDR;  return 0;
    case FX_SO_KEEPALIVE:  *level = SOL_SOCKET;  *name = SO_KEEPALIVE;  return 0;
    case FX_SO_SNDBUF:     *level = SOL_SOCKET;  *name = SO_SNDBUF;     return 0;
    case FX_SO_RCVBUF:     *level = SOL_SOCKET;  *name = SO_RCVBUF;     return 0;
    case FX_SO_ERROR:      *level = SOL_SOCKET;  *name = SO_ERROR;      return 1;
    case FX_SO_TYPE:       *level = SOL_SOCKET;  *name = SO_TYPE;       return 1;
    case FX_SO_ACCEPTCONN: *level = SOL_SOCKET;  *name = SO_ACCEPTCONN; return 1;
    case FX_TCP_NODELAY:   *level = IPPROTO_TCP; *name = TCP_NODELAY;   return 0;
    default:               return -ENOPROTOOPT;
    }
}

int fx_sockopt_get(int fd, int opt, int *value)
{
    int level, name, v = 0, rc = fx_sockopt_map(opt, &level, &name);
    socklen_t sl = sizeof(v);

    if (rc < 0)
        return rc;
    if (getsockopt(fd, level, name, &v, &sl) < 0)
        return -errno;
    if (opt == FX_SO_TYPE)
        v = v == SOCK_STREAM ? 1 : v == SOCK_DGRAM ? 2 : v;
    else if (opt != FX_SO_ERROR && opt != FX_SO_SNDBUF && opt != FX_SO_RCVBUF)
        v = v != 0;
    *value = v;
    return 0;
}

int fx_sockopt_set(int fd, int opt, int value)
{
    int level, name, rc = fx_sockopt_map(opt, &level, &name);

    if (rc < 0)
        return rc;
    if (rc > 0)
        return -EINVAL;
    return setsockopt(fd, level, name, &value, sizeof(value)) < 0 ? -errno : 0;
}

int fx_socketpair_stream(int fds[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0)
        return -errno;
    return 0;
}

int fx_addr_is_loopback(const void *sa, int salen)
{
    const struct sockaddr *a = sa;
    if (!sa || salen < (int)sizeof(sa_family_t))
        return 0;
    if (a->sa_family == AF_INET && salen >= (int)sizeof(struct sockaddr_in))
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (a->sa_family == AF_INET6 && salen >= (int)sizeof(struct sockaddr_in6)) {
        const struct in6_addr *x = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(x) || (IN6_IS_ADDR_V4MAPPED(x) && x->s6_addr[12] == 127);
    }
    return 0;
}
