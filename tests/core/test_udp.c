/*
 * test_udp.c - unit tests for shim/core/fxudp: a bound socket and a
 * connected one exchange datagrams with their boundaries kept and the
 * sender's address reported; EAGAIN on an empty socket; a second bind of
 * the same port is refused with a message; the original destination of a
 * datagram (IP_ORIGDSTADDR on a transparent socket; needs CAP_NET_ADMIN,
 * skipped otherwise) is the address it was sent to, and a socket can be
 * bound to a foreign destination for each of its clients.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "fxudp.h"

static struct sockaddr_in loopback(uint16_t port)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sa;
}

static void wait_readable(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    assert_int_equal(poll(&p, 1, 2000), 1);
}

/* A bound socket on a kernel-chosen loopback port; its address in *sa. */
static int bound(struct sockaddr_in *sa, int transparent)
{
    char err[256] = "";
    socklen_t sl = sizeof(*sa);
    *sa = loopback(0);
    int fd = transparent ? fx_udp_bind_transparent(sa, sizeof(*sa), err, sizeof(err))
                         : fx_udp_bind(sa, sizeof(*sa), err, sizeof(err));
    if (fd < 0)
        return -1;
    assert_int_equal(getsockname(fd, (struct sockaddr *)sa, &sl), 0);
    return fd;
}

static void test_exchange(void **state)
{
    struct sockaddr_in srv, from, me;
    int fromlen = sizeof(from);
    socklen_t ml = sizeof(me);
    unsigned char buf[100];
    int s = bound(&srv, 0);
    assert_true(s >= 0);
    int c = fx_udp_connect(&srv, sizeof(srv));
    assert_true(c >= 0);
    assert_int_equal(getsockname(c, (struct sockaddr *)&me, &ml), 0);

    assert_int_equal(fx_udp_recvfrom(s, buf, sizeof(buf), &from, &fromlen), -EAGAIN);
    assert_int_equal(fx_udp_sendto(c, "first", 5, NULL, 0), 5);
    assert_int_equal(fx_udp_sendto(c, "second!", 7, NULL, 0), 7);
    wait_readable(s);
    /* One call, one datagram: the boundaries are the sender's. */
    assert_int_equal(fx_udp_recvfrom(s, buf, sizeof(buf), &from, &fromlen), 5);
    assert_memory_equal(buf, "first", 5);
    assert_int_equal(fromlen, (int)sizeof(from));
    assert_int_equal(from.sin_port, me.sin_port);
    assert_int_equal(fx_udp_recvfrom(s, buf, 3, NULL, NULL), 3);   /* cut to the buffer */
    assert_memory_equal(buf, "sec", 3);
    assert_int_equal(fx_udp_recvfrom(s, buf, sizeof(buf), NULL, NULL), -EAGAIN);
    /* And back, to the address the datagram came from. */
    assert_int_equal(fx_udp_sendto(s, "answer", 6, &from, fromlen), 6);
    wait_readable(c);
    assert_int_equal(fx_udp_recvfrom(c, buf, sizeof(buf), NULL, NULL), 6);
    assert_memory_equal(buf, "answer", 6);
    close(c);
    close(s);
}

static void test_bind_busy(void **state)
{
    struct sockaddr_in srv;
    char err[256] = "";
    int s = bound(&srv, 0);
    assert_true(s >= 0);
    assert_int_equal(fx_udp_bind(&srv, sizeof(srv), err, sizeof(err)), -1);
    assert_string_equal(err, "bind: Address already in use");
    struct sockaddr sa = { .sa_family = AF_UNIX };
    assert_int_equal(fx_udp_bind(&sa, sizeof(sa), err, sizeof(err)), -1);
    assert_string_equal(err, "not an IPv4 or IPv6 address");
    close(s);
}

static void test_original_destination(void **state)
{
    struct sockaddr_in srv, from, dst;
    int fromlen = sizeof(from), dstlen = sizeof(dst);
    unsigned char buf[16];
    int s = bound(&srv, 1);
    if (s < 0)
        skip();     /* no CAP_NET_ADMIN */
    int c = fx_udp_connect(&srv, sizeof(srv));
    assert_true(c >= 0);
    assert_int_equal(fx_udp_sendto(c, "q", 1, NULL, 0), 1);
    wait_readable(s);
    assert_int_equal(fx_udp_recvorig(s, buf, sizeof(buf), &from, &fromlen, &dst, &dstlen), 1);
    assert_int_equal(dstlen, (int)sizeof(dst));
    assert_int_equal(dst.sin_port, srv.sin_port);
    assert_int_equal(dst.sin_addr.s_addr, srv.sin_addr.s_addr);
    /* Answers come from a socket bound to the (foreign) destination and
     * connected to the client; two clients of one destination each get one. */
    struct sockaddr_in foreign = loopback(53), other = from;
    foreign.sin_addr.s_addr = htonl(0xc0000201);        /* 192.0.2.1, TEST-NET-1 */
    other.sin_port = htons(ntohs(from.sin_port) ^ 1);
    int p = fx_udp_transparent_peer(&foreign, sizeof(foreign), &from, fromlen);
    assert_true(p >= 0);
    int q = fx_udp_transparent_peer(&foreign, sizeof(foreign), &other, sizeof(other));
    assert_true(q >= 0);
    struct sockaddr_in got;
    socklen_t gl = sizeof(got);
    assert_int_equal(getsockname(p, (struct sockaddr *)&got, &gl), 0);
    assert_int_equal(got.sin_addr.s_addr, foreign.sin_addr.s_addr);
    assert_int_equal(got.sin_port, foreign.sin_port);
    close(q);
    close(p);
    close(c);
    close(s);
}

static struct sockaddr_in label(const char *ip, uint16_t port)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    inet_pton(AF_INET, ip, &sa.sin_addr);
    return sa;
}

/* fwxreplay's in-memory UDP sockets (HOST-800): boundaries, the frame's
 * addresses, a connected socket's peer filter, the emulated local name. */
static void test_emulated(void **state)
{
    int sv[2];
    unsigned char buf[70000], big[65507];
    struct sockaddr_in listen = label("192.0.2.1", 53), client = label("192.0.2.10", 40000);
    struct sockaddr_in target = label("10.0.0.53", 53), other = label("10.0.0.99", 53);
    struct sockaddr_in from, dst, name;
    int fromlen, dstlen, namelen = sizeof(name);
    (void)state;

    assert_int_equal(fx_udp_socketpair(sv), 0);
    assert_int_equal(fx_udp_emulate(sv[1], &listen, sizeof(listen), NULL, 0), 0);
    assert_int_equal(fx_udp_getsockname(sv[1], &name, &namelen), 0);
    assert_memory_equal(&name, &listen, sizeof(listen));
    /* Two datagrams stay two, with their addresses; the biggest fits. */
    memset(big, 'b', sizeof(big));
    assert_int_equal(fx_udp_frame_send(sv[0], &client, sizeof(client), &target, sizeof(target),
                                       "abc", 3), 3);
    assert_int_equal(fx_udp_frame_send(sv[0], &other, sizeof(other), &listen, sizeof(listen), big,
                                       sizeof(big)), (long)sizeof(big));
    fromlen = sizeof(from), dstlen = sizeof(dst);
    assert_int_equal(fx_udp_recvorig(sv[1], buf, sizeof(buf), &from, &fromlen, &dst, &dstlen), 3);
    assert_memory_equal(buf, "abc", 3);
    assert_int_equal(fromlen, sizeof(client));
    assert_memory_equal(&from, &client, sizeof(client));
    assert_memory_equal(&dst, &target, sizeof(target));
    fromlen = sizeof(from);
    assert_int_equal(fx_udp_recvfrom(sv[1], buf, sizeof(buf), &from, &fromlen), (long)sizeof(big));
    assert_memory_equal(&from, &other, sizeof(other));
    assert_int_equal(fx_udp_recvfrom(sv[1], buf, sizeof(buf), NULL, NULL), -EAGAIN);
    /* sendto: our address as source, sa as destination. */
    assert_int_equal(fx_udp_sendto(sv[1], "xy", 2, &client, sizeof(client)), 2);
    fromlen = sizeof(from), dstlen = sizeof(dst);
    assert_int_equal(fx_udp_frame_recv(sv[0], buf, sizeof(buf), &from, &fromlen, &dst, &dstlen), 2);
    assert_memory_equal(&from, &listen, sizeof(listen));
    assert_memory_equal(&dst, &client, sizeof(client));
    fx_udp_emulate_end(sv[1]);
    close(sv[0]);
    close(sv[1]);

    /* Connected to target: strangers are dropped, sendto(NULL) goes to target. */
    assert_int_equal(fx_udp_socketpair(sv), 0);
    assert_int_equal(fx_udp_emulate(sv[1], &listen, sizeof(listen), &target, sizeof(target)), 0);
    assert_int_equal(fx_udp_frame_send(sv[0], &other, sizeof(other), &listen, sizeof(listen), "no", 2), 2);
    assert_int_equal(fx_udp_frame_send(sv[0], &target, sizeof(target), &listen, sizeof(listen), "yes", 3), 3);
    fromlen = sizeof(from);
    assert_int_equal(fx_udp_recvfrom(sv[1], buf, sizeof(buf), &from, &fromlen), 3);
    assert_memory_equal(buf, "yes", 3);
    assert_int_equal(fx_udp_recvfrom(sv[1], buf, sizeof(buf), &from, &fromlen), -EAGAIN);
    assert_int_equal(fx_udp_sendto(sv[1], "q", 1, NULL, 0), 1);
    dstlen = sizeof(dst);
    assert_int_equal(fx_udp_frame_recv(sv[0], buf, sizeof(buf), NULL, NULL, &dst, &dstlen), 1);
    assert_memory_equal(&dst, &target, sizeof(target));
    fx_udp_emulate_end(sv[1]);
    close(sv[0]);
    close(sv[1]);
    /* Out of range: refused, never a write past the table. */
    assert_int_equal(fx_udp_emulate(FX_UDP_EMU_MAX_FD, NULL, 0, NULL, 0), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exchange),
        cmocka_unit_test(test_bind_busy),
        cmocka_unit_test(test_original_destination),
        cmocka_unit_test(test_emulated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
