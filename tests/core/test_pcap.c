/*
 * test_pcap.c - unit tests for shim/core/fxpcap (fwxreplay --pcap): crafted
 * captures in every byte order, timestamp precision and link type we
 * read; TCP reassembly (retransmission, overlap, reordering, FIN, RST,
 * snap-length cuts); UDP; and broken files (truncated, garbage, huge
 * lengths) that must give an error with the file offset, never a crash.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fxpcap.h"
#include "fxscript.h"

/* ---- a capture writer ---------------------------------------------- */

struct cap {
    uint8_t b[1 << 16];
    size_t len;
    int swap, linktype, v6;
};

static void put32(struct cap *c, uint32_t v)
{
    uint8_t *p = c->b + c->len;
    if (c->swap) {
        p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
    } else {
        p[3] = v >> 24; p[2] = v >> 16; p[1] = v >> 8; p[0] = v;
    }
    c->len += 4;
}

static void put16(struct cap *c, uint16_t v)
{
    uint8_t *p = c->b + c->len;
    if (c->swap) {
        p[0] = v >> 8; p[1] = v;
    } else {
        p[1] = v >> 8; p[0] = v;
    }
    c->len += 2;
}

static void cap_init(struct cap *c, int swap, int nsec, int linktype, int v6)
{
    memset(c, 0, sizeof(*c));
    c->swap = swap;
    c->linktype = linktype;
    c->v6 = v6;
    put32(c, nsec ? 0xa1b23c4d : 0xa1b2c3d4);
    put16(c, 2);
    put16(c, 4);
    put32(c, 0);
    put32(c, 0);
    put32(c, 262144);
    put32(c, (uint32_t)linktype);
}

/* One TCP or UDP packet from the client (dir 0) or the server (dir 1);
 * cut: bytes of payload left out of the capture (snap length). */
static void cap_pkt(struct cap *c, int proto, int dir, uint32_t seq, unsigned flags,
                    const char *data, size_t len, size_t cut)
{
    uint8_t pkt[2048], *l4;
    size_t hl = 0;
    memset(pkt, 0, sizeof(pkt));
    switch (c->linktype) {
    case 1:   hl = 14; pkt[12] = c->v6 ? 0x86 : 0x08; pkt[13] = c->v6 ? 0xdd : 0x00; break;
    case 113: hl = 16; pkt[14] = c->v6 ? 0x86 : 0x08; pkt[15] = c->v6 ? 0xdd : 0x00; break;
    case 276: hl = 20; pkt[0] = c->v6 ? 0x86 : 0x08; pkt[1] = c->v6 ? 0xdd : 0x00; break;
    case 0: {  /* the family in the writer's byte order */
        uint32_t fam = c->v6 ? 10 : 2;
        hl = 4;
        if (c->swap) { pkt[3] = (uint8_t)fam; } else { pkt[0] = (uint8_t)fam; }
        break;
    }
    default:  hl = 0;
    }
    uint8_t ca[16] = { 192, 0, 2, 10 }, sa[16] = { 10, 0, 0, 1 };
    if (c->v6) {
        memset(ca, 0, 16); ca[0] = 0x20; ca[1] = 0x01; ca[15] = 10;
        memset(sa, 0, 16); sa[0] = 0x20; sa[1] = 0x01; sa[15] = 1;
    }
    const uint8_t *src = dir ? sa : ca, *dst = dir ? ca : sa;
    uint16_t sport = dir ? 80 : 40000, dport = dir ? 40000 : 80;
    size_t l4h = proto == 6 ? 20 : 8, iph = c->v6 ? 40 : 20;
    uint8_t *ip = pkt + hl;
    if (c->v6) {
        ip[0] = 0x60;
        ip[4] = (uint8_t)((l4h + len) >> 8); ip[5] = (uint8_t)(l4h + len);
        ip[6] = (uint8_t)proto;
        memcpy(ip + 8, src, 16);
        memcpy(ip + 24, dst, 16);
    } else {
        ip[0] = 0x45;
        ip[2] = (uint8_t)((iph + l4h + len) >> 8); ip[3] = (uint8_t)(iph + l4h + len);
        ip[9] = (uint8_t)proto;
        memcpy(ip + 12, src, 4);
        memcpy(ip + 16, dst, 4);
    }
    l4 = ip + iph;
    l4[0] = sport >> 8; l4[1] = (uint8_t)sport; l4[2] = dport >> 8; l4[3] = (uint8_t)dport;
    if (proto == 6) {
        l4[4] = seq >> 24; l4[5] = seq >> 16; l4[6] = seq >> 8; l4[7] = (uint8_t)seq;
        l4[12] = 0x50;
        l4[13] = (uint8_t)flags;
    } else {
        l4[4] = (uint8_t)((8 + len) >> 8); l4[5] = (uint8_t)(8 + len);
    }
    memcpy(l4 + l4h, data, len);
    size_t wire = hl + iph + l4h + len, incl = wire - cut;
    put32(c, 1700000000);
    put32(c, 0);
    put32(c, (uint32_t)incl);
    put32(c, (uint32_t)wire);
    memcpy(c->b + c->len, pkt, incl);
    c->len += incl;
}

#define SYN 0x02
#define ACK 0x10
#define FIN 0x01
#define RST 0x04
#define PSH 0x08

/* A conversation with everything reassembly must handle. */
static void conversation(struct cap *c)
{
    uint32_t ci = 1000, si = 0xfffffff8;    /* the server's numbers wrap around 2^32 */
    cap_pkt(c, 6, 0, ci, SYN, "", 0, 0);
    cap_pkt(c, 6, 1, si, SYN | ACK, "", 0, 0);
    cap_pkt(c, 6, 0, ci + 1, ACK, "", 0, 0);
    cap_pkt(c, 6, 0, ci + 1, ACK | PSH, "GET / HTTP/1.0\r\n", 16, 0);
    cap_pkt(c, 6, 0, ci + 1, ACK | PSH, "GET / HTTP/1.0\r\n", 16, 0);     /* retransmission */
    cap_pkt(c, 6, 0, ci + 12, ACK | PSH, "1.0\r\nHost: a\r\n\r\n", 16, 0); /* overlap: 11 new */
    cap_pkt(c, 6, 1, si + 1 + 6, ACK | PSH, "world", 5, 0);               /* early */
    cap_pkt(c, 6, 1, si + 1, ACK | PSH, "hello ", 6, 0);                  /* fills the hole */
    cap_pkt(c, 6, 1, si + 1 + 11, ACK | FIN, "!", 1, 0);
    cap_pkt(c, 6, 0, ci + 28, ACK | FIN, "", 0, 0);
    cap_pkt(c, 6, 1, si + 1 + 13, ACK, "", 0, 0);                          /* stray ACK */
}

static fx_script *script_of(struct cap *c, size_t flow)
{
    fx_pcap *p = NULL;
    char err[512];
    if (fx_pcap_parse_buffer(c->b, c->len, &p, err, sizeof(err)) != 0)
        fail_msg("parse failed: %s", err);
    fx_script *s = fx_pcap_to_script(p, flow, "cap", err, sizeof(err));
    if (!s)
        fail_msg("to_script failed: %s", err);
    fx_pcap_free(p);
    return s;
}

static void check_conversation(fx_script *s, int v6)
{
    char a[80];
    assert_int_equal(s->nsteps, 4);
    assert_int_equal(s->steps[0].op, FX_STEP_CLIENT_SEND);
    assert_int_equal(s->steps[0].len, 27);
    assert_memory_equal(s->steps[0].data, "GET / HTTP/1.0\r\nHost: a\r\n\r\n", 27);
    assert_int_equal(s->steps[1].op, FX_STEP_SERVER_SEND);
    assert_int_equal(s->steps[1].len, 12);
    assert_memory_equal(s->steps[1].data, "hello world!", 12);
    assert_int_equal(s->steps[2].op, FX_STEP_SERVER_SHUTDOWN);
    assert_int_equal(s->steps[3].op, FX_STEP_CLIENT_SHUTDOWN);
    fx_addr_format(&s->target, s->target_len, a, sizeof(a));
    assert_string_equal(a, v6 ? "[2001::1]:80" : "10.0.0.1:80");
    fx_addr_format(&s->client, s->client_len, a, sizeof(a));
    assert_string_equal(a, v6 ? "[2001::a]:40000" : "192.0.2.10:40000");
}

static void test_formats(void **state)
{
    static const int links[] = { 1, 113, 276, 101, 0, 12 };
    static struct cap c;
    for (int swap = 0; swap < 2; swap++)
        for (int nsec = 0; nsec < 2; nsec++)
            for (size_t l = 0; l < sizeof(links) / sizeof(links[0]); l++)
                for (int v6 = 0; v6 < 2; v6++) {
                    cap_init(&c, swap, nsec, links[l], v6);
                    conversation(&c);
                    fx_script *s = script_of(&c, 1);
                    check_conversation(s, v6);
                    fx_script_free(s);
                }
}

static void test_text_roundtrip(void **state)
{
    static struct cap c;
    char err[512];
    cap_init(&c, 0, 0, 1, 0);
    conversation(&c);
    fx_script *s = script_of(&c, 1);
    fx_text t = { 0 };
    fx_script_format(s, &t);
    fx_script *s2 = fx_script_parse("printed", NULL, t.p, t.len, err, sizeof(err));
    if (!s2)
        fail_msg("%s\n%s", err, t.p);
    check_conversation(s2, 0);
    assert_non_null(strstr(t.p, "client: \"GET / HTTP/1.0\\r\\nHost: a\\r\\n\\r\\n\"\n"));
    fx_text_free(&t);
    fx_script_free(s2);
    fx_script_free(s);
}

static void test_rst_udp_snaplen(void **state)
{
    static struct cap c;
    fx_pcap *p;
    char err[512];
    cap_init(&c, 1, 0, 1, 0);
    cap_pkt(&c, 6, 0, 5, SYN, "", 0, 0);
    cap_pkt(&c, 6, 1, 9, SYN | ACK, "", 0, 0);
    cap_pkt(&c, 6, 0, 6, ACK | PSH, "abcdefgh", 8, 3);         /* 3 bytes cut by the snap length */
    cap_pkt(&c, 6, 0, 14, ACK | PSH, "ij", 2, 0);
    cap_pkt(&c, 6, 1, 10, RST, "", 0, 0);
    cap_pkt(&c, 6, 0, 16, ACK | PSH, "late", 4, 0);            /* after the RST: ignored */
    cap_pkt(&c, 17, 0, 0, 0, "q1", 2, 0);
    cap_pkt(&c, 17, 1, 0, 0, "answer", 6, 0);
    cap_pkt(&c, 17, 0, 0, 0, "", 0, 0);
    /* garbage: an IPv4 header with IHL 2, counted as skipped */
    size_t at = c.len;
    cap_pkt(&c, 6, 0, 1, ACK, "x", 1, 0);
    c.b[at + 16 + 14] = 0x42;
    assert_int_equal(fx_pcap_parse_buffer(c.b, c.len, &p, err, sizeof(err)), 0);
    assert_int_equal(p->packets, 10);
    assert_int_equal(p->skipped, 1);
    assert_int_equal(p->nflows, 2);
    assert_int_equal(p->flows[0].gap_bytes, 3);
    fx_text d = { 0 };
    fx_pcap_describe(p, &d);
    assert_string_equal(d.p, "1: tcp 192.0.2.10:40000 -> 10.0.0.1:80, 6 packets, 7 bytes\n"
                             "2: udp 192.0.2.10:40000 -> 10.0.0.1:80, 3 packets, 8 bytes\n");
    fx_text_free(&d);
    fx_script *s = fx_pcap_to_script(p, 1, "cap", err, sizeof(err));
    assert_non_null(s);
    assert_int_equal(s->nsteps, 2);
    assert_int_equal(s->steps[0].len, 7);
    assert_memory_equal(s->steps[0].data, "abcdeij", 7);
    assert_int_equal(s->steps[1].op, FX_STEP_SERVER_ABORT);
    fx_script_free(s);
    s = fx_pcap_to_script(p, 2, "cap", err, sizeof(err));
    assert_non_null(s);
    assert_int_equal(s->protocol, FX_PROTO_UDP);
    assert_int_equal(s->nsteps, 3);
    assert_int_equal(s->steps[0].op, FX_STEP_CLIENT_DGRAM);
    assert_int_equal(s->steps[1].op, FX_STEP_SERVER_DGRAM);
    assert_memory_equal(s->steps[1].data, "answer", 6);
    assert_int_equal(s->steps[2].len, 0);
    fx_script_free(s);
    assert_null(fx_pcap_to_script(p, 3, "cap", err, sizeof(err)));
    assert_string_equal(err, "cap: no flow 3: the capture has 2 TCP/UDP flow(s) (see --list)");
    fx_pcap_free(p);
}

static void expect_fail(const uint8_t *b, size_t len, const char *msg)
{
    fx_pcap *p = (fx_pcap *)1;
    char err[512];
    assert_int_equal(fx_pcap_parse_buffer(b, len, &p, err, sizeof(err)), -1);
    assert_null(p);
    if (strcmp(err, msg))
        fail_msg("got  \"%s\"\nwant \"%s\"", err, msg);
}

static void test_broken(void **state)
{
    static struct cap c;
    cap_init(&c, 0, 0, 1, 0);
    conversation(&c);
    expect_fail(c.b, 10, "offset 0: not a pcap capture: 10 bytes, shorter than the 24-byte file header");
    expect_fail((const uint8_t *)"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27,
                "offset 0: not a pcap capture: magic 0x20544547");
    expect_fail((const uint8_t *)"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x4d\x3c\x2b\x1a\x01\x00\x00\x00"
                "\xff\xff\xff\xff\xff\xff\xff\xff\x1c\x00\x00\x00", 28,
                "offset 0: a pcapng capture: only classic pcap is read (tcpdump -w writes it; "
                "convert with: editcap -F pcap IN OUT)");
    /* The first record is at 24, 16 + 74 bytes (SYN); cut inside the next one. */
    expect_fail(c.b, 24 + 16 + 54 + 10, "offset 94: truncated packet record header: 10 of 16 bytes");
    expect_fail(c.b, 24 + 16 + 54 + 16 + 20,
                "offset 94: packet record 2: truncated: 54 bytes captured, 20 left in the file");
    static struct cap h;
    memcpy(&h, &c, sizeof(h));
    h.b[24 + 8] = 0xff; h.b[24 + 9] = 0xff; h.b[24 + 10] = 0xff; h.b[24 + 11] = 0x7f;
    expect_fail(h.b, h.len, "offset 24: packet record 1: captured length 2147483647 is larger than 262144");
    memcpy(&h, &c, sizeof(h));
    h.b[20] = 147;
    expect_fail(h.b, h.len, "offset 20: link type 147 is not read (Ethernet, Linux cooked "
                "SLL/SLL2, raw IP and loopback are)");
    memcpy(&h, &c, sizeof(h));
    h.b[4] = 3;
    expect_fail(h.b, h.len, "offset 4: pcap version 3: only version 2 is read");
    /* An empty capture is not an error: it has no flows. */
    fx_pcap *p;
    char err[256];
    assert_int_equal(fx_pcap_parse_buffer(c.b, 24, &p, err, sizeof(err)), 0);
    assert_int_equal(p->nflows, 0);
    assert_null(fx_pcap_to_script(p, 1, "empty", err, sizeof(err)));
    assert_string_equal(err, "empty: no flow 1: the capture has 0 TCP/UDP flow(s)");
    fx_pcap_free(p);
}

/* Mutations of a valid capture: every outcome is a result or an error
 * with an offset, never a crash (valgrind/ASan builds see the reads). */
static void test_mutations(void **state)
{
    static struct cap c;
    static uint8_t m[sizeof(c.b)];
    uint64_t x = 88172645463325252ull;
    cap_init(&c, 0, 0, 1, 0);
    conversation(&c);
    for (int round = 0; round < 3000; round++) {
        memcpy(m, c.b, c.len);
        size_t len = c.len;
        for (int k = 0; k < 1 + round % 8; k++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            m[24 + x % (len - 24)] = (uint8_t)(x >> 32);
        }
        if (round % 5 == 0)
            len = 24 + (size_t)(x >> 40) % (len - 24);
        fx_pcap *p = NULL;
        char err[256];
        if (fx_pcap_parse_buffer(m, len, &p, err, sizeof(err)) == 0) {
            for (size_t f = 1; f <= p->nflows; f++)
                fx_script_free(fx_pcap_to_script(p, f, "m", err, sizeof(err)));
            fx_pcap_free(p);
        } else {
            assert_true(!strncmp(err, "offset ", 7));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_text_roundtrip),
        cmocka_unit_test(test_rst_udp_snaplen),
        cmocka_unit_test(test_broken),
        cmocka_unit_test(test_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
