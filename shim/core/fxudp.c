/*
 * fxudp.c - native UDP sockets for UDP rules (fxudp.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fxudp.h"

static int family_of(const void *sa, int salen)
{
    const struct sockaddr *s = sa;
    if (!sa || salen < (int)sizeof(sa_family_t))
        return -EINVAL;
    if (s->sa_family == AF_INET && salen >= (int)sizeof(struct sockaddr_in))
        return AF_INET;
    if (s->sa_family == AF_INET6 && salen >= (int)sizeof(struct sockaddr_in6))
        return AF_INET6;
    return -EAFNOSUPPORT;
}

/* Big buffers: SO_*BUFFORCE works for root past net.core.[rw]mem_max;
 * everyone else gets what the plain option allows. */
static void size_buffers(int fd)
{
    int size = FX_UDP_SOCKBUF;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) != 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) != 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
}

static int udp_socket(int family)
{
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (family == AF_INET6) {
        int one = 1;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    size_buffers(fd);
    return fd;
}

int fx_udp_bind(const void *sa, int salen, char *err, unsigned long errlen)
{
    int family = family_of(sa, salen), fd;

    if (family < 0) {
        snprintf(err, errlen, "not an IPv4 or IPv6 address");
        return -1;
    }
    if ((fd = udp_socket(family)) < 0) {
        snprintf(err, errlen, "socket: %s", strerror(-fd));
        return -1;
    }
    if (bind(fd, (const struct sockaddr *)sa, (socklen_t)salen) != 0) {
        snprintf(err, errlen, "bind: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int fx_udp_connect(const void *sa, int salen)
{
    int family = family_of(sa, salen), fd, rc;

    if (family < 0)
        return family;
    if ((fd = udp_socket(family)) < 0)
        return fd;
    if (connect(fd, (const struct sockaddr *)sa, (socklen_t)salen) != 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

/* ------------------------------------------------------------ in-memory sockets */

struct emu {
    unsigned char on, locallen, peerlen;
    unsigned char local[28], peer[28];
};
static struct emu emus[FX_UDP_EMU_MAX_FD];   /* set before the fd is used by the loop */

static struct emu *emu_of(int fd)
{
    return fd >= 0 && fd < FX_UDP_EMU_MAX_FD && emus[fd].on ? &emus[fd] : NULL;
}

int fx_udp_socketpair(int fds[2])
{
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0)
        return -errno;
    size_buffers(fds[0]);
    size_buffers(fds[1]);
    return 0;
}

int fx_udp_emulate(int fd, const void *local, int locallen, const void *peer, int peerlen)
{
    if (fd < 0 || fd >= FX_UDP_EMU_MAX_FD || locallen < 0 || locallen > 28 || peerlen < 0 ||
        peerlen > 28)
        return -EINVAL;
    struct emu *e = &emus[fd];
    memset(e, 0, sizeof(*e));
    if (local)
        memcpy(e->local, local, e->locallen = (unsigned char)locallen);
    if (peer)
        memcpy(e->peer, peer, e->peerlen = (unsigned char)peerlen);
    e->on = 1;
    return 0;
}

void fx_udp_emulate_end(int fd)
{
    if (fd >= 0 && fd < FX_UDP_EMU_MAX_FD)
        emus[fd].on = 0;
}

void fx_udp_close(int fd)
{
    fx_udp_emulate_end(fd);
    close(fd);
}

int fx_udp_getsockname(int fd, void *sa, int *salen)
{
    struct emu *e = emu_of(fd);
    if (e) {
        if (*salen < e->locallen)
            return -EINVAL;
        memcpy(sa, e->local, *salen = e->locallen);
        return e->locallen ? 0 : -ENOTCONN;
    }
    socklen_t sl = (socklen_t)*salen;
    if (getsockname(fd, (struct sockaddr *)sa, &sl) != 0)
        return -errno;
    *salen = (int)sl;
    return 0;
}

long fx_udp_frame_send(int fd, const void *src, int srclen, const void *dst, int dstlen,
                       const void *buf, unsigned long len)
{
    fx_udp_frame h;
    memset(&h, 0, sizeof(h));
    if (srclen < 0 || srclen > 28 || dstlen < 0 || dstlen > 28)
        return -EINVAL;
    if (src)
        memcpy(h.src, src, h.srclen = (unsigned char)srclen);
    if (dst)
        memcpy(h.dst, dst, h.dstlen = (unsigned char)dstlen);
    struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)buf, len } };
    struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2 };
    ssize_t n;
    do
        n = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return n >= (ssize_t)sizeof(h) ? (long)(n - (ssize_t)sizeof(h)) : -EPROTO;
}

long fx_udp_frame_recv(int fd, void *buf, unsigned long len, void *src, int *srclen, void *dst,
                       int *dstlen)
{
    fx_udp_frame h;
    struct iovec iov[2] = { { &h, sizeof(h) }, { buf, len } };
    struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2 };
    ssize_t n;
    do
        n = recvmsg(fd, &msg, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    if (n < (ssize_t)sizeof(h) || h.srclen > 28 || h.dstlen > 28)
        return -EPROTO;
    if (src && srclen) {
        memcpy(src, h.src, h.srclen);
        *srclen = h.srclen;
    }
    if (dst && dstlen) {
        memcpy(dst, h.dst, h.dstlen);
        *dstlen = h.dstlen;
    }
    return (long)(n - (ssize_t)sizeof(h));
}

/* A datagram of an emulated socket; a connected one drops strangers. */
static long emu_recv(struct emu *e, int fd, void *buf, unsigned long len, void *from, int *fromlen,
                     void *dst, int *dstlen)
{
    unsigned char src[28], d[28];
    int sl, dl;
    for (;;) {
        long n = fx_udp_frame_recv(fd, buf, len, src, &sl, d, &dl);
        if (n == -EPROTO)
            continue;
        if (n < 0)
            return n;
        if (e->peerlen && (sl != e->peerlen || memcmp(src, e->peer, sl)))
            continue;
        if (from && fromlen) {
            int l = sl < *fromlen ? sl : *fromlen;
            memcpy(from, src, l);
            *fromlen = l;
        }
        if (dst && dstlen) {
            int l = dl <= *dstlen ? dl : 0;
            memcpy(dst, d, l);
            *dstlen = l;
        }
        return n;
    }
}

long fx_udp_recvfrom(int fd, void *buf, unsigned long len, void *from, int *fromlen)
{
    socklen_t sl = from && fromlen ? (socklen_t)*fromlen : 0;
    ssize_t n;
    struct emu *e = emu_of(fd);

    if (e)
        return emu_recv(e, fd, buf, len, from, fromlen, NULL, NULL);
    do
        n = recvfrom(fd, buf, len, MSG_DONTWAIT, from && fromlen ? (struct sockaddr *)from : NULL,
                     from && fromlen ? &sl : NULL);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    if (from && fromlen)
        *fromlen = (int)sl;
    return (long)n;
}

long fx_udp_sendto(int fd, const void *buf, unsigned long len, const void *sa, int salen)
{
    ssize_t n;
    struct emu *e = emu_of(fd);

    if (e)      /* no address: the emulated connected peer */
        return fx_udp_frame_send(fd, e->local, e->locallen, sa ? sa : e->peer,
                                 sa ? salen : e->peerlen, buf, len);
    do
        n = sendto(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL, (const struct sockaddr *)sa,
                   sa ? (socklen_t)salen : 0);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return (long)n;
}

/* ------------------------------------------------------------ transparent */

static int set_transparent(int fd, int family, int recv_orig)
{
    int one = 1;
    if (family == AF_INET6) {
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_TRANSPARENT, &one, sizeof(one)) != 0)
            return -errno;
        if (recv_orig && setsockopt(fd, IPPROTO_IPV6, IPV6_RECVORIGDSTADDR, &one, sizeof(one)) != 0)
            return -errno;
        return 0;
    }
    if (setsockopt(fd, IPPROTO_IP, IP_TRANSPARENT, &one, sizeof(one)) != 0)
        return -errno;
    if (recv_orig && setsockopt(fd, IPPROTO_IP, IP_RECVORIGDSTADDR, &one, sizeof(one)) != 0)
        return -errno;
    return 0;
}

int fx_udp_bind_transparent(const void *sa, int salen, char *err, unsigned long errlen)
{
    int family = family_of(sa, salen), fd, rc;

    if (family < 0) {
        snprintf(err, errlen, "not an IPv4 or IPv6 address");
        return -1;
    }
    if ((fd = udp_socket(family)) < 0) {
        snprintf(err, errlen, "socket: %s", strerror(-fd));
        return -1;
    }
    if ((rc = set_transparent(fd, family, 1)) != 0) {
        snprintf(err, errlen, "IP_TRANSPARENT: %s (outbound UDP rules need CAP_NET_ADMIN)",
                 strerror(-rc));
        close(fd);
        return -1;
    }
    if (bind(fd, (const struct sockaddr *)sa, (socklen_t)salen) != 0) {
        snprintf(err, errlen, "bind: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

long fx_udp_recvorig(int fd, void *buf, unsigned long len, void *from, int *fromlen, void *dst,
                     int *dstlen)
{
    struct sockaddr_storage src;
    char control[256];
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    struct msghdr msg = {
        .msg_name = &src, .msg_namelen = sizeof(src),
        .msg_iov = &iov, .msg_iovlen = 1,
        .msg_control = control, .msg_controllen = sizeof(control),
    };
    ssize_t n;
    struct emu *e = emu_of(fd);

    if (e)
        return emu_recv(e, fd, buf, len, from, fromlen, dst, dstlen);
    do
        n = recvmsg(fd, &msg, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    if (from && fromlen) {
        int l = (int)msg.msg_namelen < *fromlen ? (int)msg.msg_namelen : *fromlen;
        memcpy(from, &src, l);
        *fromlen = l;
    }
    if (dst && dstlen) {
        int cap = *dstlen;
        *dstlen = 0;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
            int l = 0;
            if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_ORIGDSTADDR)
                l = sizeof(struct sockaddr_in);
            else if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_ORIGDSTADDR)
                l = sizeof(struct sockaddr_in6);
            if (l && l <= cap) {
                memcpy(dst, CMSG_DATA(cm), l);
                *dstlen = l;
            }
        }
    }
    return (long)n;
}

int fx_udp_transparent_peer(const void *local, int locallen, const void *peer, int peerlen)
{
    int family = family_of(local, locallen), fd, rc, one = 1;

    if (family < 0)
        return family;
    if ((fd = udp_socket(family)) < 0)
        return fd;
    /* Several clients may talk to one destination: each has its own socket
     * bound to it, told apart by the connected peer. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if ((rc = set_transparent(fd, family, 0)) != 0)
        goto fail;
    if (bind(fd, (const struct sockaddr *)local, (socklen_t)locallen) != 0 ||
        connect(fd, (const struct sockaddr *)peer, (socklen_t)peerlen) != 0) {
        rc = -errno;
        goto fail;
    }
    return fd;
fail:
    close(fd);
    return rc;
}
