/*
 * test_net.c - unit tests for shim/core/fxnet: address text parsing and
 * formatting (round trips and exact error messages), real loopback
 * listen/connect/accept/send/recv, half-close, RST via fx_close_abort,
 * EADDRINUSE text, SO_REUSEPORT, Linux <-> Win32 sockaddr conversion and
 * the errno -> WSA map.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include "fxinherit.h"
#include "fxnet.h"

#define HINT "expected ADDR:PORT, e.g. 127.0.0.1:8080, [::1]:80 or *:80"

static void roundtrip(const char *in, const char *expect_out, int expect_len)
{
    fx_sockaddr sa;
    int len = sizeof(sa);
    char err[256] = "", out[FX_ADDRSTRLEN];

    if (fx_addr_parse(in, &sa, &len, err, sizeof(err)) != 0)
        fail_msg("parse '%s' failed: %s", in, err);
    assert_int_equal(len, expect_len);
    assert_int_equal(fx_addr_format(&sa, len, out, sizeof(out)), (int)strlen(expect_out));
    assert_string_equal(out, expect_out);
}

static void test_parse_format_roundtrip(void **state)
{
    (void)state;
    roundtrip("127.0.0.1:8080", "127.0.0.1:8080", 16);
    roundtrip("10.1.2.3:0", "10.1.2.3:0", 16);
    roundtrip("*:80", "0.0.0.0:80", 16);
    roundtrip("0.0.0.0:65535", "0.0.0.0:65535", 16);
    roundtrip("[::1]:80", "[::1]:80", 28);
    roundtrip("[::]:443", "[::]:443", 28);
    roundtrip("[2001:DB8::A:1]:8443", "[2001:db8::a:1]:8443", 28);
    roundtrip("[fe80::1%2]:80", "[fe80::1%2]:80", 28);
    roundtrip("[fe80::1%lo]:22", "[fe80::1%1]:22", 28);   /* lo is ifindex 1 */
}

static void test_parse_fields(void **state)
{
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
    int len = sizeof(sin);
    char err[128];
    (void)state;

    assert_int_equal(fx_addr_parse("192.168.7.9:1234", &sin, &len, err, sizeof(err)), 0);
    assert_int_equal(sin.sin_family, AF_INET);
    assert_int_equal(ntohs(sin.sin_port), 1234);
    assert_int_equal(ntohl(sin.sin_addr.s_addr), 0xC0A80709u);

    len = sizeof(sin6);
    assert_int_equal(fx_addr_parse("[::1]:80", &sin6, &len, err, sizeof(err)), 0);
    assert_int_equal(sin6.sin6_family, AF_INET6);
    assert_int_equal(ntohs(sin6.sin6_port), 80);
    assert_true(IN6_IS_ADDR_LOOPBACK(&sin6.sin6_addr));
    assert_int_equal(sin6.sin6_scope_id, 0);
    assert_int_equal(sin6.sin6_flowinfo, 0);
}

static void parse_err(const char *in, const char *expect)
{
    fx_sockaddr sa;
    int len = sizeof(sa);
    char err[256] = "";
    assert_int_equal(fx_addr_parse(in, &sa, &len, err, sizeof(err)), -1);
    assert_string_equal(err, expect);
}

static void test_parse_errors(void **state)
{
    (void)state;
    parse_err("", "empty address (" HINT ")");
    parse_err(NULL, "empty address (" HINT ")");
    parse_err("127.0.0.1", "missing port in '127.0.0.1' (" HINT ")");
    parse_err("127.0.0.1:", "missing port in '127.0.0.1:' (" HINT ")");
    parse_err("127.0.0.1:http",
              "bad port 'http' in '127.0.0.1:http' (expected a number from 0 to 65535)");
    parse_err("127.0.0.1:65536",
              "bad port '65536' in '127.0.0.1:65536' (expected a number from 0 to 65535)");
    parse_err("127.0.0.1:-1",
              "bad port '-1' in '127.0.0.1:-1' (expected a number from 0 to 65535)");
    parse_err("127.0.0.1:080808",
              "bad port '080808' in '127.0.0.1:080808' (expected a number from 0 to 65535)");
    parse_err("::1:80",
              "IPv6 address without brackets in '::1:80' (write it as [ADDR]:PORT, e.g. [::1]:80)");
    parse_err("[::1]", "missing port in '[::1]' (" HINT ")");
    parse_err("[::1]80", "missing port in '[::1]80' (" HINT ")");
    parse_err("[::1:80", "missing ']' in '[::1:80' (" HINT ")");
    parse_err("localhost:80",
              "bad IPv4 address 'localhost' in 'localhost:80' (expected a dotted quad like 127.0.0.1; names are not resolved)");
    parse_err("256.1.1.1:80",
              "bad IPv4 address '256.1.1.1' in '256.1.1.1:80' (expected a dotted quad like 127.0.0.1; names are not resolved)");
    parse_err("[::g]:80", "bad IPv6 address '::g' in '[::g]:80'");
    parse_err("[127.0.0.1]:80", "bad IPv6 address '127.0.0.1' in '[127.0.0.1]:80'");
    parse_err(":80", "missing address in ':80' (use *:80 for any IPv4 address)");
    parse_err("[fe80::1%nosuchif0]:80", "unknown interface 'nosuchif0' in '[fe80::1%nosuchif0]:80'");

    /* Output buffer too small for the family. */
    {
        unsigned char small[16];
        int len = sizeof(small);
        char err[128];
        assert_int_equal(fx_addr_parse("[::1]:80", small, &len, err, sizeof(err)), -1);
        assert_string_equal(err, "address buffer too small for '[::1]:80'");
        /* No err buffer: still fails cleanly. */
        len = sizeof(small);
        assert_int_equal(fx_addr_parse("nonsense", small, &len, NULL, 0), -1);
    }
}

static void test_format_errors(void **state)
{
    struct sockaddr_un sun;
    fx_sockaddr sa;
    int len = sizeof(sa);
    char out[FX_ADDRSTRLEN], tiny[8];
    (void)state;

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    assert_int_equal(fx_addr_format(&sun, sizeof(sun), out, sizeof(out)), -1);
    assert_string_equal(out, "?");

    assert_int_equal(fx_addr_parse("127.0.0.1:8080", &sa, &len, NULL, 0), 0);
    assert_int_equal(fx_addr_format(&sa, 8, out, sizeof(out)), -1);      /* short */
    assert_int_equal(fx_addr_format(&sa, len, tiny, sizeof(tiny)), -1);  /* small buf */
    assert_string_equal(tiny, "?");
    assert_int_equal(fx_addr_format(&sa, len, out, 15), 14);           /* exactly fits */
    assert_string_equal(out, "127.0.0.1:8080");
}

/* ---- real sockets ----------------------------------------------------- */

static int wait_fd(int fd, short ev)
{
    struct pollfd p = { fd, ev, 0 };
    return poll(&p, 1, 5000);
}

static int listen_any(char *name, size_t namelen, int *port)
{
    fx_sockaddr sa;
    int len = sizeof(sa), lfd;
    char err[256];

    assert_int_equal(fx_addr_parse("127.0.0.1:0", &sa, &len, err, sizeof(err)), 0);
    lfd = fx_tcp_listen(&sa, len, 16, 0, err, sizeof(err));
    if (lfd < 0)
        fail_msg("listen: %s", err);
    len = sizeof(sa);
    assert_int_equal(fx_getsockname(lfd, &sa, &len), 0);
    assert_int_equal(len, 16);
    fx_addr_format(&sa, len, name, namelen);
    *port = ntohs(((struct sockaddr_in *)&sa)->sin_port);
    return lfd;
}

static void connect_pair(int lfd, const char *name, int *c, int *s)
{
    fx_sockaddr sa, peer, local;
    int len = sizeof(sa), plen = sizeof(peer), llen = sizeof(local), inprog;
    char pname[FX_ADDRSTRLEN], lname[FX_ADDRSTRLEN];

    assert_int_equal(fx_addr_parse(name, &sa, &len, NULL, 0), 0);
    *c = fx_tcp_connect(&sa, len, &inprog);
    assert_true(*c >= 0);
    if (inprog) {
        assert_int_equal(wait_fd(*c, POLLOUT), 1);
        assert_int_equal(fx_sock_error(*c), 0);
    }
    assert_int_equal(wait_fd(lfd, POLLIN), 1);
    *s = fx_tcp_accept(lfd, &peer, &plen);
    assert_true(*s >= 0);
    /* The accepted peer address is the client's local address. */
    assert_int_equal(fx_getsockname(*c, &local, &llen), 0);
    fx_addr_format(&peer, plen, pname, sizeof(pname));
    fx_addr_format(&local, llen, lname, sizeof(lname));
    assert_string_equal(pname, lname);
    plen = sizeof(peer);
    assert_int_equal(fx_getpeername(*c, &peer, &plen), 0);
    fx_addr_format(&peer, plen, pname, sizeof(pname));
    assert_string_equal(pname, name);
}

static void test_tcp_basic(void **state)
{
    char name[FX_ADDRSTRLEN], buf[64];
    int port, lfd, c, s, one = 0;
    socklen_t ol = sizeof(one);
    (void)state;

    lfd = listen_any(name, sizeof(name), &port);
    assert_true(port > 0);
    assert_int_equal(fx_tcp_accept(lfd, NULL, NULL), -EAGAIN);
    connect_pair(lfd, name, &c, &s);

    assert_int_equal(fx_set_nodelay(c), 0);
    assert_int_equal(getsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, &ol), 0);
    assert_int_equal(one, 1);

    assert_int_equal(fx_recv(s, buf, sizeof(buf)), -EAGAIN);
    assert_int_equal(fx_send(c, "ping", 4), 4);
    assert_int_equal(wait_fd(s, POLLIN), 1);
    assert_int_equal(fx_recv(s, buf, sizeof(buf)), 4);
    assert_memory_equal(buf, "ping", 4);

    /* Half-close: the server sees EOF but can still answer. */
    assert_int_equal(fx_shutdown_write(c), 0);
    assert_int_equal(wait_fd(s, POLLIN), 1);
    assert_int_equal(fx_recv(s, buf, sizeof(buf)), 0);
    assert_int_equal(fx_send(s, "pong", 4), 4);
    assert_int_equal(wait_fd(c, POLLIN), 1);
    assert_int_equal(fx_recv(c, buf, sizeof(buf)), 4);
    assert_memory_equal(buf, "pong", 4);

    /* Abort: the peer gets a reset, and a send to the dead peer is an
     * error code, not a SIGPIPE that would kill this process. */
    fx_close_abort(s);
    assert_int_equal(wait_fd(c, POLLIN), 1);
    assert_int_equal(fx_recv(c, buf, sizeof(buf)), -ECONNRESET);
    long r = fx_send(c, "x", 1);
    assert_true(r == -EPIPE || r == -ECONNRESET);
    close(c);
    close(lfd);
}

static void test_listen_errors(void **state)
{
    char name[FX_ADDRSTRLEN], err[256], expect[128];
    fx_sockaddr sa;
    int len = sizeof(sa), port, lfd, l2;
    (void)state;

    lfd = listen_any(name, sizeof(name), &port);
    assert_int_equal(fx_addr_parse(name, &sa, &len, NULL, 0), 0);
    l2 = fx_tcp_listen(&sa, len, 16, 0, err, sizeof(err));
    assert_int_equal(l2, -EADDRINUSE);
    snprintf(expect, sizeof(expect), "bind %s: Address already in use", name);
    assert_string_equal(err, expect);
    close(lfd);

    /* With SO_REUSEPORT on both, two listeners share the port. */
    assert_int_equal(fx_addr_parse("127.0.0.1:0", &sa, &len, NULL, 0), 0);
    lfd = fx_tcp_listen(&sa, len, 16, 1, err, sizeof(err));
    assert_true(lfd >= 0);
    len = sizeof(sa);
    assert_int_equal(fx_getsockname(lfd, &sa, &len), 0);
    l2 = fx_tcp_listen(&sa, len, 16, 1, err, sizeof(err));
    assert_true(l2 >= 0);
    close(l2);
    close(lfd);

    /* Unsupported family. */
    {
        struct sockaddr_un sun = { .sun_family = AF_UNIX };
        assert_int_equal(fx_tcp_listen(&sun, sizeof(sun), 16, 0, err, sizeof(err)), -EAFNOSUPPORT);
        assert_string_equal(err, "listen: unsupported address (only IPv4 and IPv6)");
    }
}

static void test_connect_refused(void **state)
{
    char name[FX_ADDRSTRLEN];
    fx_sockaddr sa;
    int len = sizeof(sa), port, lfd, c, inprog;
    (void)state;

    lfd = listen_any(name, sizeof(name), &port);
    close(lfd);   /* nobody listens there now */
    assert_int_equal(fx_addr_parse(name, &sa, &len, NULL, 0), 0);
    c = fx_tcp_connect(&sa, len, &inprog);
    if (c >= 0) {
        assert_true(inprog);
        assert_int_equal(wait_fd(c, POLLOUT), 1);
        assert_int_equal(fx_sock_error(c), ECONNREFUSED);
        close(c);
    } else {
        assert_int_equal(c, -ECONNREFUSED);
    }
}

static void test_ipv6_loopback(void **state)
{
    fx_sockaddr sa;
    int len = sizeof(sa), lfd, c, s;
    char err[256], name[FX_ADDRSTRLEN];
    (void)state;

    assert_int_equal(fx_addr_parse("[::1]:0", &sa, &len, NULL, 0), 0);
    lfd = fx_tcp_listen(&sa, len, 16, 0, err, sizeof(err));
    if (lfd == -EADDRNOTAVAIL || lfd == -EAFNOSUPPORT) {
        skip();   /* no IPv6 loopback in this sandbox */
    }
    assert_true(lfd >= 0);
    len = sizeof(sa);
    assert_int_equal(fx_getsockname(lfd, &sa, &len), 0);
    assert_int_equal(len, 28);
    fx_addr_format(&sa, len, name, sizeof(name));
    assert_memory_equal(name, "[::1]:", 6);
    connect_pair(lfd, name, &c, &s);
    close(c);
    close(s);
    close(lfd);
}

/* ---- sockets that filters own (fx_tcp_socket and friends) -------------- */

static void test_filter_socket_steps(void **state)
{
    fx_sockaddr sa, la;
    int len = sizeof(sa), llen = sizeof(la), lfd, c, s, v, rc;
    char name[FX_ADDRSTRLEN], buf[8];
    (void)state;

    /* Winsock order: socket, options, bind, listen; connect separately. */
    lfd = fx_tcp_socket(NULL, 0);
    assert_true(lfd >= 0);
    assert_int_equal(fx_sockopt_get(lfd, FX_SO_REUSEADDR, &v), 0);
    assert_int_equal(v, 1);                 /* Windows' default bind semantics */
    assert_int_equal(fx_sockopt_get(lfd, FX_SO_TYPE, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(fx_addr_parse("127.0.0.1:0", &sa, &len, NULL, 0), 0);
    assert_int_equal(fx_bind(lfd, &sa, len), 0);
    assert_int_equal(fx_listen(lfd, 0), 0); /* backlog 0 becomes 1 */
    assert_int_equal(fx_sockopt_get(lfd, FX_SO_ACCEPTCONN, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(fx_getsockname(lfd, &la, &llen), 0);
    fx_addr_format(&la, llen, name, sizeof(name));

    c = fx_tcp_socket(&la, llen);
    assert_true(c >= 0);
    assert_int_equal(fx_sockopt_set(c, FX_TCP_NODELAY, 1), 0);
    assert_int_equal(fx_sockopt_get(c, FX_TCP_NODELAY, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(fx_sockopt_set(c, FX_SO_KEEPALIVE, 1), 0);
    assert_int_equal(fx_sockopt_get(c, FX_SO_KEEPALIVE, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(fx_sockopt_set(c, FX_SO_ERROR, 0), -EINVAL);    /* read only */
    assert_int_equal(fx_sockopt_get(c, 999, &v), -ENOPROTOOPT);
    rc = fx_connect(c, &la, llen);
    assert_true(rc == 0 || rc == 1);
    assert_int_equal(wait_fd(c, POLLOUT), 1);
    assert_int_equal(fx_sockopt_get(c, FX_SO_ERROR, &v), 0);
    assert_int_equal(v, 0);
    /* Linux reports the finished non-blocking connect once, then EISCONN. */
    rc = fx_connect(c, &la, llen);
    assert_true(rc == 0 || rc == -EISCONN);
    assert_int_equal(fx_connect(c, &la, llen), -EISCONN);
    assert_int_equal(wait_fd(lfd, POLLIN), 1);
    s = fx_tcp_accept(lfd, NULL, NULL);
    assert_true(s >= 0);
    assert_int_equal(fx_send(c, "hi", 2), 2);
    assert_int_equal(wait_fd(s, POLLIN), 1);
    assert_int_equal(fx_recv(s, buf, sizeof(buf)), 2);

    /* A second bind of the same socket, and a bind to a listening port. */
    assert_int_equal(fx_bind(lfd, &sa, len), -EINVAL);
    v = fx_tcp_socket(NULL, 0);
    assert_int_equal(fx_bind(v, &la, llen), -EADDRINUSE);
    close(v);
    close(c);
    close(s);
    close(lfd);
}

static void test_filter_socket_family(void **state)
{
    fx_sockaddr sa;
    int len = sizeof(sa), fd, v, rc;
    (void)state;

    fd = fx_tcp_socket(NULL, 0);
    assert_true(fd >= 0);
    assert_int_equal(fx_sockopt_set(fd, FX_TCP_NODELAY, 1), 0);
    assert_int_equal(fx_addr_parse("[::1]:0", &sa, &len, NULL, 0), 0);
    rc = fx_tcp_match_family(fd, &sa, len);
    if (rc == -EAFNOSUPPORT)
        skip();    /* no IPv6 here */
    assert_int_equal(rc, 0);
    /* Same fd number, now IPv6, the option carried over, still non-blocking. */
    assert_int_equal(fx_sockopt_get(fd, FX_TCP_NODELAY, &v), 0);
    assert_int_equal(v, 1);
    rc = fx_bind(fd, &sa, len);
    if (rc == -EADDRNOTAVAIL) {
        close(fd);
        skip();    /* no IPv6 loopback */
    }
    assert_int_equal(rc, 0);
    assert_int_equal(fx_listen(fd, 4), 0);
    assert_int_equal(fx_tcp_accept(fd, NULL, NULL), -EAGAIN);
    assert_int_equal(fx_tcp_match_family(fd, &sa, len), 0);   /* already IPv6: nothing to do */
    close(fd);
}

/* ---- Linux <-> Win32 -------------------------------------------------- */

static void test_sa_win32(void **state)
{
    fx_sockaddr lin, back;
    unsigned char win[32];
    int len = sizeof(lin), wlen, blen;
    uint16_t fam;
    (void)state;

    /* IPv4: identical bytes, family 2. */
    assert_int_equal(fx_addr_parse("10.0.0.1:8080", &lin, &len, NULL, 0), 0);
    wlen = sizeof(win);
    assert_int_equal(fx_sa_to_win32(&lin, len, win, &wlen), 0);
    assert_int_equal(wlen, 16);
    assert_memory_equal(win, lin.bytes, 16);
    memcpy(&fam, win, 2);
    assert_int_equal(fam, 2);
    blen = sizeof(back);
    assert_int_equal(fx_sa_from_win32(win, wlen, &back, &blen), 0);
    assert_int_equal(blen, 16);
    assert_memory_equal(back.bytes, lin.bytes, 16);

    /* IPv6: family 10 -> 23, every other byte unchanged, 28 bytes. */
    len = sizeof(lin);
    assert_int_equal(fx_addr_parse("[2001:db8::1%7]:443", &lin, &len, NULL, 0), 0);
    ((struct sockaddr_in6 *)&lin)->sin6_flowinfo = htonl(0x12345);
    wlen = sizeof(win);
    assert_int_equal(fx_sa_to_win32(&lin, len, win, &wlen), 0);
    assert_int_equal(wlen, 28);
    memcpy(&fam, win, 2);
    assert_int_equal(fam, 23);
    assert_memory_equal(win + 2, lin.bytes + 2, 26);
    blen = sizeof(back);
    assert_int_equal(fx_sa_from_win32(win, wlen, &back, &blen), 0);
    assert_int_equal(blen, 28);
    assert_memory_equal(back.bytes, lin.bytes, 28);
    /* A Win32 family-23 address is not a Linux one, and vice versa. */
    blen = sizeof(back);
    assert_int_equal(fx_sa_from_win32(&lin, len, &back, &blen), -1);
    wlen = sizeof(win);
    assert_int_equal(fx_sa_to_win32(win, 28, win, &wlen), -1);

    /* Short input, small output, other families: -1. */
    wlen = sizeof(win);
    assert_int_equal(fx_sa_to_win32(&lin, 27, win, &wlen), -1);
    wlen = 16;
    assert_int_equal(fx_sa_to_win32(&lin, 28, win, &wlen), -1);
    {
        struct sockaddr_un sun = { .sun_family = AF_UNIX };
        wlen = sizeof(win);
        assert_int_equal(fx_sa_to_win32(&sun, sizeof(sun), win, &wlen), -1);
        unsigned char w[16] = { 6, 0 };   /* AF_IPX on Windows */
        blen = sizeof(back);
        assert_int_equal(fx_sa_from_win32(w, 16, &back, &blen), -1);
    }
    wlen = sizeof(win);
    assert_int_equal(fx_sa_to_win32(NULL, 16, win, &wlen), -1);
}

static void test_errno_to_wsa(void **state)
{
    (void)state;
    assert_int_equal(fx_errno_to_wsa(0), 0);
    assert_int_equal(fx_errno_to_wsa(ECONNRESET), 10054);
    assert_int_equal(fx_errno_to_wsa(-ECONNRESET), 10054);
    assert_int_equal(fx_errno_to_wsa(ECONNREFUSED), 10061);
    assert_int_equal(fx_errno_to_wsa(ETIMEDOUT), 10060);
    assert_int_equal(fx_errno_to_wsa(EPIPE), 10058);
    assert_int_equal(fx_errno_to_wsa(ECONNABORTED), 10053);
    assert_int_equal(fx_errno_to_wsa(ENETUNREACH), 10051);
    assert_int_equal(fx_errno_to_wsa(EHOSTUNREACH), 10065);
    assert_int_equal(fx_errno_to_wsa(EADDRINUSE), 10048);
    assert_int_equal(fx_errno_to_wsa(EADDRNOTAVAIL), 10049);
    assert_int_equal(fx_errno_to_wsa(EINVAL), 10022);
    assert_int_equal(fx_errno_to_wsa(ENOTCONN), 10057);
    assert_int_equal(fx_errno_to_wsa(EMSGSIZE), 10040);
    assert_int_equal(fx_errno_to_wsa(EAGAIN), 10035);
    assert_int_equal(fx_errno_to_wsa(EINPROGRESS), 10036);
    assert_int_equal(fx_errno_to_wsa(ENOMEM), 10055);
    assert_int_equal(fx_errno_to_wsa(EIO), 10053);      /* default */
    assert_int_equal(fx_errno_to_wsa(ENOENT), 10053);
}


/* The supervisor's handoff (fxinherit.h): fds with their keys over a
 * SOCK_SEQPACKET pair, received close-on-exec. */
static void test_inherit_handoff(void **state)
{
    int sv[2], p1[2], p2[2];
    char err[256], buf[8];
    (void)state;

    assert_false(fx_inherited());
    assert_int_equal(fx_inherited_fd("127.0.0.1:80"), -1);
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(pipe(p1), 0);
    assert_int_equal(pipe(p2), 0);
    const char *keys[2] = { "127.0.0.1:80", "@control" };
    int fds[2] = { p1[1], p2[1] };
    assert_int_equal(fx_inherit_send(sv[0], keys, fds, 2), 0);
    assert_int_equal(fx_inherit_receive(sv[1], 1000, err, sizeof(err)), 0);
    assert_true(fx_inherited());
    int a = fx_inherited_fd("127.0.0.1:80"), b = fx_inherited_fd("@control");
    assert_true(a >= 0 && a != p1[1]);
    assert_true(b >= 0 && b != p2[1]);
    assert_int_equal(fcntl(a, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    assert_int_equal(fx_inherited_fd("127.0.0.1:8"), -1);   /* a prefix is not a key */
    assert_int_equal(fx_inherited_fd("@metrics"), -1);
    /* the same pipes */
    assert_int_equal(write(a, "A", 1), 1);
    assert_int_equal(write(b, "B", 1), 1);
    assert_int_equal(read(p1[0], buf, 1), 1);
    assert_int_equal(buf[0], 'A');
    assert_int_equal(read(p2[0], buf, 1), 1);
    assert_int_equal(buf[0], 'B');
    /* nothing more comes: a timeout, one line */
    assert_int_equal(fx_inherit_receive(sv[1], 10, err, sizeof(err)), -1);
    assert_string_equal(err, "no sockets from the supervisor within 10 ms");
    /* the peer gone */
    close(sv[0]);
    assert_int_equal(fx_inherit_receive(sv[1], 10, err, sizeof(err)), -1);
    assert_string_equal(err, "receiving the supervisor's sockets: end of file");
    close(a);
    close(b);
    close(sv[1]);
    for (int i = 0; i < 2; i++) {
        close(p1[i]);
        close(p2[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_format_roundtrip),
        cmocka_unit_test(test_inherit_handoff),
        cmocka_unit_test(test_parse_fields),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_format_errors),
        cmocka_unit_test(test_tcp_basic),
        cmocka_unit_test(test_listen_errors),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_ipv6_loopback),
        cmocka_unit_test(test_filter_socket_steps),
        cmocka_unit_test(test_filter_socket_family),
        cmocka_unit_test(test_sa_win32),
        cmocka_unit_test(test_errno_to_wsa),
    };
    return cmocka_run_group_tests_name("fxnet", tests, NULL, NULL);
}
