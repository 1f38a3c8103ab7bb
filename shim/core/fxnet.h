/*
 * fxnet.h - native socket helpers and Linux <-> Win32 address conversion.
 *
 * Owns every direct socket system call of the host, so that files which
 * include <windows.h> (and so Wine's winsock headers) never need
 * <sys/socket.h>.  For the same reason this header includes no socket
 * header: addresses cross it as (const void *sa, int salen) in Linux
 * layout, stored in an fx_sockaddr when the caller needs a buffer.
 *
 * Conventions: functions returning an fd or a count return -errno on
 * failure; fds are created non-blocking and close-on-exec.
 */
#ifndef FX_NET_H
#define FX_NET_H

#include <stddef.h>
#include <stdint.h>

/* sizeof(struct sockaddr_in6) on Linux, and of SOCKADDR_IN6 on Win32: big
 * enough for every address family we accept. */
#define FX_SOCKADDR_MAX 28

/* Longest text fx_addr_format writes, NUL included:
 * "[" + IPv6 (45) + "%" + scope (10) + "]:" + port (5) + NUL. */
#define FX_ADDRSTRLEN 66

typedef union fx_sockaddr {
    unsigned char bytes[FX_SOCKADDR_MAX];
    uint64_t align_;
} fx_sockaddr;

/* "127.0.0.1:8080", "[::1]:80", "[fe80::1%eth0]:80", "*:80" (any IPv4),
 * "[::]:80" (any IPv6).  The port is required (0..65535; 0 = any free
 * port).  Names are not resolved.  *salen: in = size of sa, out = length
 * of the address.  Returns 0, or -1 with a one-line reason in err. */
int fx_addr_parse(const char *text, void *sa, int *salen, char *err, size_t errlen);

/* Inverse of fx_addr_parse for AF_INET/AF_INET6 (0.0.0.0 stays 0.0.0.0).
 * Returns the text length, or -1 (unknown family, bad length, or buf too
 * small; buf then holds "?" if it has room). */
int fx_addr_format(const void *sa, int salen, char *buf, size_t len);

/* socket + SO_REUSEADDR (+ SO_REUSEPORT) + bind + listen.  IPv6 listeners
 * are IPV6_V6ONLY so "*:80" and "[::]:80" can be separate rules.  The
 * listener has TCP_NODELAY, which accepted sockets inherit.
 * Returns the fd, or -errno with e.g. "bind 127.0.0.1:80: Address already
 * in use" in err. */
int fx_tcp_listen(const void *sa, int salen, int backlog, int reuseport,
                  char *err, size_t errlen);

/* accept4(NONBLOCK|CLOEXEC).  sa/salen may be NULL; *salen in/out.
 * Returns the fd or -errno (-EAGAIN when nothing is pending). */
int fx_tcp_accept(int lfd, void *sa, int *salen);

/* Non-blocking connect.  Returns the fd with *in_progress = 1 (wait for
 * FX_WRITE, then check fx_sock_error) or 0 (already connected, as happens
 * on loopback), or -errno. */
int fx_tcp_connect(const void *sa, int salen, int *in_progress);

/* Pending SO_ERROR as a positive errno (0 = none), or -errno if the
 * getsockopt itself fails. */
int fx_sock_error(int fd);

/* MSG_NOSIGNAL, EINTR retried.  Bytes moved, 0 = EOF (recv only), or
 * -errno (-EAGAIN when it would block). */
long fx_recv(int fd, void *buf, unsigned long len);
long fx_send(int fd, const void *buf, unsigned long len);

/* shutdown(SHUT_WR): our FIN.  0 or -errno. */
int fx_shutdown_write(int fd);

/* SO_LINGER {1, 0} then close: the peer gets a RST instead of a FIN,
 * which is how an aborted connection is propagated. */
void fx_close_abort(int fd);

/* fwxreplay: hook(fd, arg) runs inside every fx_close_abort, before the
 * close, on the closing thread (AF_UNIX ends cannot carry a RST, so the
 * driver learns of resets this way).  NULL removes it. */
void fx_set_close_abort_hook(void (*hook)(int fd, void *arg), void *arg);

/* fwxreplay's in-memory ends: socketpair(AF_UNIX, SOCK_STREAM), both
 * non-blocking and close-on-exec.  0 or -errno. */
int fx_socketpair_stream(int fds[2]);

/* *salen in/out as for getsockname(2).  0 or -errno. */
int fx_getsockname(int fd, void *sa, int *salen);
int fx_getpeername(int fd, void *sa, int *salen);

/* The destination a connection had before an iptables REDIRECT/DNAT sent
 * it to us (SO_ORIGINAL_DST, IPv4; IP6T_SO_ORIGINAL_DST for IPv6).
 * 0, or -errno (-ENOENT: the connection was not translated). */
int fx_original_dst(int fd, void *sa, int *salen);

/* Same address and port?  Compares AF_INET/AF_INET6 sockaddrs. */
int fx_sa_equal(const void *a, int alen, const void *b, int blen);

/* 1 if sa is 0.0.0.0 or :: (a wildcard listener: the local address of an
 * accepted connection must then be asked with fx_getsockname), else 0. */
int fx_sa_is_any(const void *sa, int salen);

/* 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104?  0 for anything else. */
int fx_addr_is_loopback(const void *sa, int salen);

/* TCP_NODELAY.  0 or -errno. */
int fx_set_nodelay(int fd);

/* Linux <-> Win32 sockaddr.  AF_INET is laid out identically (family 2);
 * AF_INET6 is 10 on Linux and 23 on Windows, 28 bytes in both with the
 * same field layout.  *win_len / *linux_len: in = size of the output
 * buffer, out = bytes written.  Returns 0, or -1 for any other family, a
 * short input or a small output buffer. */
int fx_sa_to_win32(const void *linux_sa, int len, void *win_sa, int *win_len);
int fx_sa_from_win32(const void *win_sa, int len, void *linux_sa, int *linux_len);

/* errno (either sign) -> WSA error code, for the COM layer's HRESULTs and
 * WSAGetLastError-style results:
 *   0 -> 0                          EINTR -> 10004 WSAEINTR
 *   EBADF -> 10009 WSAEBADF         EACCES/EPERM -> 10013 WSAEACCES
 *   EFAULT -> 10014 WSAEFAULT       EINVAL -> 10022 WSAEINVAL
 *   EMFILE/ENFILE -> 10024 WSAEMFILE
 *   EAGAIN -> 10035 WSAEWOULDBLOCK  EINPROGRESS -> 10036 WSAEINPROGRESS
 *   EALREADY -> 10037 WSAEALREADY   ENOTSOCK -> 10038 WSAENOTSOCK
 *   EDESTADDRREQ -> 10039           EMSGSIZE -> 10040 WSAEMSGSIZE
 *   EPROTOTYPE -> 10041             ENOPROTOOPT -> 10042
 *   EPROTONOSUPPORT -> 10043        EOPNOTSUPP -> 10045 WSAEOPNOTSUPP
 *   EAFNOSUPPORT -> 10047           EADDRINUSE -> 10048 WSAEADDRINUSE
 *   EADDRNOTAVAIL -> 10049          ENETDOWN -> 10050 WSAENETDOWN
 *   ENETUNREACH -> 10051            ENETRESET -> 10052 WSAENETRESET
 *   ECONNABORTED -> 10053           ECONNRESET -> 10054 WSAECONNRESET
 *   ENOBUFS/ENOMEM -> 10055 WSAENOBUFS
 *   EISCONN -> 10056 WSAEISCONN     ENOTCONN -> 10057 WSAENOTCONN
 *   EPIPE/ESHUTDOWN -> 10058 WSAESHUTDOWN
 *   ETIMEDOUT -> 10060 WSAETIMEDOUT ECONNREFUSED -> 10061 WSAECONNREFUSED
 *   EHOSTDOWN -> 10064              EHOSTUNREACH -> 10065 WSAEHOSTUNREACH
 *   anything else -> 10053 WSAECONNABORTED: to a filter, an unexplained
 *   failure of a connection is best treated as the connection ending. */
int fx_errno_to_wsa(int err);

/* ---- sockets that filters own (IFWXNetworkSocket, shim/com/netsocket.c) ----
 * These follow Winsock's model: the socket exists before it is bound or
 * connected, and every step is a separate call. */

/* A non-blocking TCP socket of sa's family (AF_INET when sa is NULL), with
 * SO_REUSEADDR set: on Linux that only allows binding over TIME_WAIT
 * connections, which is what Windows does by default.  AF_INET6 sockets
 * are IPV6_V6ONLY, the Windows default.  Returns the fd or -errno. */
int fx_tcp_socket(const void *sa, int salen);

/* If fd's family is not sa's, replaces the socket behind fd (same fd
 * number) with a fresh one of sa's family, carrying over the options of
 * enum fx_sockopt.  Only for a socket that is not bound, connected or in an
 * event loop.  0 or -errno (-EAFNOSUPPORT for a family we do not know). */
int fx_tcp_match_family(int fd, const void *sa, int salen);

/* bind(2) and listen(2).  0 or -errno.  A backlog below 1 becomes 1. */
int fx_bind(int fd, const void *sa, int salen);
int fx_listen(int fd, int backlog);

/* Non-blocking connect(2) on an existing socket: 0 connected, 1 in
 * progress (wait for FX_WRITE, then fx_sock_error), or -errno. */
int fx_connect(int fd, const void *sa, int salen);

/* Socket options by a host-neutral name, mapped to the Linux level and
 * option here.  Values are ints; FX_SO_ERROR reads a positive errno (and
 * clears it, as SO_ERROR does); FX_SO_TYPE reads 1 for a stream socket,
 * 2 for a datagram one.  0, or -errno (-ENOPROTOOPT for an unknown name,
 * -EINVAL for setting a read-only option). */
enum fx_sockopt {
    FX_SO_REUSEADDR = 1,
    FX_SO_KEEPALIVE,
    FX_SO_SNDBUF,
    FX_SO_RCVBUF,
    FX_SO_ERROR,        /* read only */
    FX_SO_TYPE,         /* read only */
    FX_SO_ACCEPTCONN,   /* read only */
    FX_TCP_NODELAY
};
int fx_sockopt_get(int fd, int opt, int *value);
int fx_sockopt_set(int fd, int opt, int value);

#endif /* FX_NET_H */
