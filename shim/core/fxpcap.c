/*
 * fxpcap.c - classic pcap captures to fwxreplay scripts (see fxpcap.h).
 *
 * Owns the record walk (every length checked against the bytes left),
 * the link, IP, TCP and UDP decoders, the flow table, and TCP reassembly:
 * per direction the next expected sequence number; a segment at or
 * before it is trimmed to its new bytes (retransmissions and overlaps),
 * one after it is held until the bytes before it arrive; a FIN counts
 * once every byte before it has; a RST aborts the sender's side.  At the
 * end of the capture, held segments behind a hole are delivered in order
 * and the hole is counted as gap bytes.
 */
#define _GNU_SOURCE
#include "fxpcap.h"

#include "fxlog.h"
#include "fxrecord.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#define LINK_NULL 0
#define LINK_ETHERNET 1
#define LINK_RAW_OLD 12      /* DLT_RAW on OpenBSD and some Linux builds */
#define LINK_RAW 101
#define LINK_LOOP 108
#define LINK_SLL 113
#define LINK_IPV4 228
#define LINK_IPV6 229
#define LINK_SLL2 276

struct seg {
    struct seg *next;
    uint32_t seq;
    size_t len;
    int fin;
    unsigned char data[];
};

struct tcp_dir {
    int have;                  /* next is known */
    uint32_t next;
    int fin_seen;
    uint32_t fin_seq;
    int ended;
    struct seg *held;          /* sorted by seq relative to next */
    size_t held_bytes;
};

struct tcp_state {
    struct tcp_dir d[2];
    int closed;                /* RST, or both FINs: a SYN starts a new flow */
};

struct parse {
    fx_pcap *p;
    char *err;
    size_t errlen;
    int failed;
};

static void perr(struct parse *ps, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void perr(struct parse *ps, size_t off, const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    if (ps->failed)
        return;
    ps->failed = 1;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (ps->err && ps->errlen)
        snprintf(ps->err, ps->errlen, "offset %zu: %s", off, msg);
}

static uint16_t be16(const uint8_t *b) { return (uint16_t)(b[0] << 8 | b[1]); }
static uint32_t be32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}
static uint32_t rd32(const uint8_t *b, int swap)
{
    return swap ? be32(b) : (uint32_t)b[3] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[1] << 8 | b[0];
}

/* ------------------------------------------------------------ flows */

static void make_addr(fx_sockaddr *sa, int *len, int v6, const uint8_t *ip, uint16_t port)
{
    memset(sa, 0, sizeof(*sa));
    if (v6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        memcpy(&s6->sin6_addr, ip, 16);
        *len = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        memcpy(&s4->sin_addr, ip, 4);
        *len = sizeof(*s4);
    }
}

/* The live flow of this address pair (dir set), or NULL. */
static fx_pcap_flow *find_flow(fx_pcap *p, int proto, const fx_sockaddr *src, int srclen,
                               const fx_sockaddr *dst, int dstlen, int *dir)
{
    for (size_t i = p->nflows; i-- > 0;) {
        fx_pcap_flow *f = &p->flows[i];
        if (f->proto != proto)
            continue;
        if (fx_sa_equal(&f->client, f->client_len, src, srclen) &&
            fx_sa_equal(&f->server, f->server_len, dst, dstlen)) {
            *dir = 0;
            return f;
        }
        if (fx_sa_equal(&f->client, f->client_len, dst, dstlen) &&
            fx_sa_equal(&f->server, f->server_len, src, srclen)) {
            *dir = 1;
            return f;
        }
    }
    return NULL;
}

static fx_pcap_flow *new_flow(struct parse *ps, size_t off, int proto, const fx_sockaddr *client,
                              int clen, const fx_sockaddr *server, int slen)
{
    fx_pcap *p = ps->p;
    if (p->nflows >= FX_PCAP_MAX_FLOWS) {
        perr(ps, off, "more than %d TCP/UDP flows in one capture", FX_PCAP_MAX_FLOWS);
        return NULL;
    }
    if ((p->nflows & (p->nflows - 1)) == 0) {
        size_t cap = p->nflows ? p->nflows * 2 : 4;
        fx_pcap_flow *n = realloc(p->flows, cap * sizeof(*n));
        if (!n) {
            perr(ps, off, "out of memory");
            return NULL;
        }
        p->flows = n;
    }
    fx_pcap_flow *f = &p->flows[p->nflows];
    memset(f, 0, sizeof(*f));
    f->proto = proto;
    f->client = *client;
    f->client_len = clen;
    f->server = *server;
    f->server_len = slen;
    if (proto == 6 && !(f->tcp = calloc(1, sizeof(struct tcp_state)))) {
        perr(ps, off, "out of memory");
        return NULL;
    }
    p->nflows++;
    return f;
}

static int add_event(struct parse *ps, size_t off, fx_pcap_flow *f, enum fx_pcap_ev type, int dir,
                     const uint8_t *data, size_t len)
{
    /* Adjacent TCP data of one direction is one event. */
    if (type == FX_PCAP_DATA && f->nev && f->ev[f->nev - 1].type == FX_PCAP_DATA &&
        f->ev[f->nev - 1].dir == dir && f->ev[f->nev - 1].off + f->ev[f->nev - 1].len == f->datalen) {
        /* extended below */
    } else {
        if (f->nev == f->evcap) {
            size_t cap = f->evcap ? f->evcap * 2 : 16;
            fx_pcap_event *n = realloc(f->ev, cap * sizeof(*n));
            if (!n) {
                perr(ps, off, "out of memory");
                return -1;
            }
            f->ev = n;
            f->evcap = cap;
        }
        f->ev[f->nev++] = (fx_pcap_event){ type, dir, f->datalen, 0 };
    }
    if (len) {
        if (f->datalen + len > f->datacap) {
            size_t cap = f->datacap ? f->datacap : 4096;
            while (cap < f->datalen + len)
                cap *= 2;
            unsigned char *n = realloc(f->data, cap);
            if (!n) {
                perr(ps, off, "out of memory");
                return -1;
            }
            f->data = n;
            f->datacap = cap;
        }
        memcpy(f->data + f->datalen, data, len);
        f->datalen += len;
        f->ev[f->nev - 1].len += len;
    }
    return 0;
}

/* ------------------------------------------------------------ TCP */

/* Delivers what is in order: held segments that reach next, then a FIN. */
static int tcp_drain(struct parse *ps, size_t off, fx_pcap_flow *f, int dir)
{
    struct tcp_state *t = f->tcp;
    struct tcp_dir *d = &t->d[dir];
    struct seg *s;
    while ((s = d->held) && (int32_t)(s->seq - d->next) <= 0) {
        d->held = s->next;
        d->held_bytes -= s->len;
        int32_t skip = (int32_t)(d->next - s->seq);
        if ((size_t)skip < s->len) {
            if (add_event(ps, off, f, FX_PCAP_DATA, dir, s->data + skip, s->len - (size_t)skip) != 0) {
                free(s);
                return -1;
            }
            f->retransmitted += (size_t)skip;
            d->next += (uint32_t)(s->len - (size_t)skip);
        } else {
            f->retransmitted += s->len;
        }
        free(s);
    }
    if (d->fin_seen && !d->ended && d->next == d->fin_seq) {
        d->ended = 1;
        d->next++;
        if (add_event(ps, off, f, FX_PCAP_FIN, dir, NULL, 0) != 0)
            return -1;
        if (t->d[1 - dir].ended)
            t->closed = 1;
    }
    return 0;
}

static int tcp_segment(struct parse *ps, size_t off, fx_pcap_flow *f, int dir, uint32_t seq,
                       unsigned flags, const uint8_t *data, size_t len, size_t missing)
{
    struct tcp_state *t = f->tcp;
    struct tcp_dir *d = &t->d[dir];
    const unsigned FIN = 0x01, SYN = 0x02, RST = 0x04;

    if (flags & SYN) {
        d->have = 1;
        d->next = seq + 1;
        seq++;                  /* data on a SYN follows the SYN's number */
        if (!dir)
            f->saw_syn = 1;
    } else if (!d->have) {
        d->have = 1;            /* a capture that starts mid-stream */
        d->next = seq;
    }
    if (t->closed)
        return 0;               /* after a RST, or both FINs: stray ACKs, late data */
    if (flags & RST) {
        /* Bytes in order before the RST still count; then the sender's side aborts. */
        if (tcp_drain(ps, off, f, dir) != 0)
            return -1;
        d->ended = 1;
        t->closed = 1;
        return add_event(ps, off, f, FX_PCAP_RST, dir, NULL, 0);
    }
    if (d->ended)
        return 0;
    /* Bytes the snap length cut off: a hole that never fills. */
    size_t total = len + missing;
    if (total) {
        int32_t rel = (int32_t)(seq - d->next);
        if (rel > (int32_t)FX_PCAP_MAX_HELD || rel < -(int32_t)FX_PCAP_MAX_HELD) {
            f->gap_bytes += len;   /* nowhere near the stream: ignored */
        } else if (len) {
            struct seg *s = malloc(sizeof(*s) + len);
            if (!s) {
                perr(ps, off, "out of memory");
                return -1;
            }
            if (d->held_bytes + len > FX_PCAP_MAX_HELD) {
                free(s);
                perr(ps, off, "more than %u bytes of one TCP direction held out of order",
                     FX_PCAP_MAX_HELD);
                return -1;
            }
            s->seq = seq;
            s->len = len;
            s->fin = 0;
            memcpy(s->data, data, len);
            struct seg **at = &d->held;
            while (*at && (int32_t)((*at)->seq - d->next) <= rel)
                at = &(*at)->next;
            s->next = *at;
            *at = s;
            d->held_bytes += len;
        }
    }
    if (flags & FIN) {
        d->fin_seen = 1;
        d->fin_seq = seq + (uint32_t)total;
    }
    if (tcp_drain(ps, off, f, dir) != 0)
        return -1;
    if (missing && d->next == seq + (uint32_t)len && !d->ended) {
        /* The snap length cut this segment: its rest never comes. */
        f->gap_bytes += missing;
        d->next += (uint32_t)missing;
        return tcp_drain(ps, off, f, dir);
    }
    return 0;
}

/* End of the capture: whatever is held goes out in order, across holes. */
static int tcp_finish(struct parse *ps, size_t off, fx_pcap_flow *f)
{
    struct tcp_state *t = f->tcp;
    for (int dir = 0; dir < 2; dir++) {
        struct tcp_dir *d = &t->d[dir];
        while (d->held && !d->ended) {
            int32_t hole = (int32_t)(d->held->seq - d->next);
            if (hole > 0) {
                f->gap_bytes += (unsigned long long)hole;
                d->next = d->held->seq;
            }
            if (tcp_drain(ps, off, f, dir) != 0)
                return -1;
        }
        if (d->fin_seen && !d->ended) {        /* the FIN was behind a hole */
            if ((int32_t)(d->fin_seq - d->next) > 0)
                f->gap_bytes += (uint32_t)(d->fin_seq - d->next);
            d->next = d->fin_seq;
            if (tcp_drain(ps, off, f, dir) != 0)
                return -1;
        }
    }
    return 0;
}

static void tcp_free(fx_pcap_flow *f)
{
    struct tcp_state *t = f->tcp;
    if (!t)
        return;
    for (int dir = 0; dir < 2; dir++)
        while (t->d[dir].held) {
            struct seg *s = t->d[dir].held;
            t->d[dir].held = s->next;
            free(s);
        }
    free(t);
    f->tcp = NULL;
}

/* ------------------------------------------------------------ packets */

/* One IP packet (pkt, caplen bytes captured of wirelen). 0, or -1 on a
 * fatal error (out of memory, limits); contents we do not read are
 * counted as skipped. */
static int ip_packet(struct parse *ps, size_t off, const uint8_t *pkt, size_t caplen, size_t wirelen)
{
    fx_pcap *p = ps->p;
    int v6;
    const uint8_t *src, *dst, *l4;
    size_t l4cap, l4len;
    unsigned proto;

    if (caplen < 1)
        goto skip;
    if ((pkt[0] >> 4) == 4) {
        if (caplen < 20)
            goto skip;
        size_t ihl = (size_t)(pkt[0] & 15) * 4, tot = be16(pkt + 2);
        if (tot == 0)
            tot = caplen;       /* segmentation offload: the length was never filled in */
        if (ihl < 20 || ihl > caplen || tot < ihl)
            goto skip;
        if ((be16(pkt + 6) & 0x3fff) != 0)
            goto skip;          /* a fragment: not reassembled */
        v6 = 0;
        proto = pkt[9];
        src = pkt + 12;
        dst = pkt + 16;
        l4 = pkt + ihl;
        l4len = tot - ihl;      /* what was sent */
        l4cap = (caplen < tot ? caplen : tot) - ihl;
        (void)wirelen;
    } else if ((pkt[0] >> 4) == 6) {
        if (caplen < 40)
            goto skip;
        v6 = 1;
        proto = pkt[6];         /* extension headers are not followed */
        src = pkt + 8;
        dst = pkt + 24;
        l4 = pkt + 40;
        l4len = be16(pkt + 4);
        l4cap = caplen - 40 < l4len ? caplen - 40 : l4len;
    } else {
        goto skip;
    }
    if (proto == 6) {
        if (l4cap < 20)
            goto skip;
        size_t doff = (size_t)(l4[12] >> 4) * 4;
        if (doff < 20 || doff > l4cap || doff > l4len)
            goto skip;
        unsigned flags = l4[13];
        uint32_t seq = be32(l4 + 4);
        fx_sockaddr a, b;
        int alen, blen, dir;
        make_addr(&a, &alen, v6, src, be16(l4));
        make_addr(&b, &blen, v6, dst, be16(l4 + 2));
        fx_pcap_flow *f = find_flow(p, 6, &a, alen, &b, blen, &dir);
        /* A SYN (without ACK) on a finished flow, or on none, opens a new one. */
        if ((!f || ((struct tcp_state *)f->tcp)->closed) && (flags & 0x12) == 0x02) {
            if (!(f = new_flow(ps, off, 6, &a, alen, &b, blen)))
                return -1;
            dir = 0;
        } else if (!f) {
            /* Mid-stream: the lower port is taken as the server's. */
            int a_server = be16(l4) < be16(l4 + 2);
            if (!(f = a_server ? new_flow(ps, off, 6, &b, blen, &a, alen)
                               : new_flow(ps, off, 6, &a, alen, &b, blen)))
                return -1;
            dir = a_server ? 1 : 0;
        }
        f->packets++;
        return tcp_segment(ps, off, f, dir, seq, flags, l4 + doff, l4cap - doff,
                           l4len - doff - (l4cap - doff));
    }
    if (proto == 17) {
        if (l4cap < 8)
            goto skip;
        size_t ulen = be16(l4 + 4);
        if (ulen < 8 || ulen > l4len || ulen > l4cap)
            goto skip;          /* cut by the snap length: the datagram is incomplete */
        fx_sockaddr a, b;
        int alen, blen, dir;
        make_addr(&a, &alen, v6, src, be16(l4));
        make_addr(&b, &blen, v6, dst, be16(l4 + 2));
        fx_pcap_flow *f = find_flow(p, 17, &a, alen, &b, blen, &dir);
        if (!f) {
            if (!(f = new_flow(ps, off, 17, &a, alen, &b, blen)))
                return -1;
            dir = 0;
        }
        f->packets++;
        return add_event(ps, off, f, FX_PCAP_DGRAM, dir, l4 + 8, ulen - 8);
    }
skip:
    p->skipped++;
    return 0;
}

static int link_packet(struct parse *ps, size_t off, const uint8_t *pkt, size_t caplen,
                       size_t wirelen, int swap)
{
    size_t hdr = 0;
    unsigned ethertype = 0;
    switch (ps->p->linktype) {
    case LINK_ETHERNET:
        if (caplen < 14)
            break;
        hdr = 14;
        ethertype = be16(pkt + 12);
        while ((ethertype == 0x8100 || ethertype == 0x88a8) && caplen >= hdr + 4) {
            ethertype = be16(pkt + hdr + 2);      /* VLAN tags */
            hdr += 4;
        }
        break;
    case LINK_SLL:
        if (caplen < 16)
            break;
        hdr = 16;
        ethertype = be16(pkt + 14);
        break;
    case LINK_SLL2:
        if (caplen < 20)
            break;
        hdr = 20;
        ethertype = be16(pkt);
        break;
    case LINK_NULL:
    case LINK_LOOP: {
        if (caplen < 4)
            break;
        /* NULL: the family in the capturing host's order; LOOP: network order. */
        uint32_t fam = ps->p->linktype == LINK_LOOP ? be32(pkt) : rd32(pkt, swap);
        hdr = 4;
        ethertype = fam == 2 ? 0x0800 : (fam == 10 || fam == 24 || fam == 28 || fam == 30) ? 0x86dd : 0;
        break;
    }
    case LINK_RAW:
    case LINK_RAW_OLD:
    case LINK_IPV4:
    case LINK_IPV6:
        return ip_packet(ps, off, pkt, caplen, wirelen);
    }
    if (!hdr || (ethertype != 0x0800 && ethertype != 0x86dd)) {
        ps->p->skipped++;
        return 0;
    }
    return ip_packet(ps, off, pkt + hdr, caplen - hdr, wirelen >= hdr ? wirelen - hdr : 0);
}

/* ------------------------------------------------------------ file */

int fx_pcap_parse_buffer(const uint8_t *buf, size_t len, fx_pcap **out, char *err, size_t errlen)
{
    struct parse ps = { NULL, err, errlen, 0 };
    int swap;
    uint32_t magic, snaplen;

    *out = NULL;
    if (err && errlen)
        err[0] = 0;
    if (len < 24) {
        perr(&ps, 0, "not a pcap capture: %zu bytes, shorter than the 24-byte file header", len);
        return -1;
    }
    magic = rd32(buf, 0);
    if (magic == 0xa1b2c3d4 || magic == 0xa1b23c4d)
        swap = 0;
    else if (magic == 0xd4c3b2a1 || magic == 0x4d3cb2a1)
        swap = 1;
    else if (magic == 0x0a0d0d0a) {
        perr(&ps, 0, "a pcapng capture: only classic pcap is read (tcpdump -w writes it; "
             "convert with: editcap -F pcap IN OUT)");
        return -1;
    } else {
        perr(&ps, 0, "not a pcap capture: magic 0x%08x", magic);
        return -1;
    }
    if (!(ps.p = calloc(1, sizeof(*ps.p)))) {
        perr(&ps, 0, "out of memory");
        return -1;
    }
    uint32_t m = swap ? be32(buf) : magic;
    ps.p->nsec = m == 0xa1b23c4d || m == 0x4d3cb2a1;
    unsigned major = swap ? be16(buf + 4) : (unsigned)(buf[4] | buf[5] << 8);
    if (major != 2) {
        perr(&ps, 4, "pcap version %u: only version 2 is read", major);
        goto fail;
    }
    snaplen = rd32(buf + 16, swap);
    ps.p->linktype = (int)(rd32(buf + 20, swap) & 0x0fffffff);   /* upper bits: FCS info */
    switch (ps.p->linktype) {
    case LINK_NULL: case LINK_ETHERNET: case LINK_RAW_OLD: case LINK_RAW: case LINK_LOOP:
    case LINK_SLL: case LINK_IPV4: case LINK_IPV6: case LINK_SLL2:
        break;
    default:
        perr(&ps, 20, "link type %d is not read (Ethernet, Linux cooked SLL/SLL2, raw IP and "
             "loopback are)", ps.p->linktype);
        goto fail;
    }
    (void)snaplen;      /* some writers put 0 or garbage here: each record is checked instead */

    size_t off = 24;
    while (off < len && !ps.failed) {
        if (len - off < 16) {
            perr(&ps, off, "truncated packet record header: %zu of 16 bytes", len - off);
            break;
        }
        uint32_t incl = rd32(buf + off + 8, swap), orig = rd32(buf + off + 12, swap);
        if (incl > FX_PCAP_MAX_PACKET) {
            perr(&ps, off, "packet record %zu: captured length %u is larger than %u",
                 ps.p->packets + 1, incl, FX_PCAP_MAX_PACKET);
            break;
        }
        if (incl > len - off - 16) {
            perr(&ps, off, "packet record %zu: truncated: %u bytes captured, %zu left in the file",
                 ps.p->packets + 1, incl, len - off - 16);
            break;
        }
        ps.p->packets++;
        if (link_packet(&ps, off, buf + off + 16, incl, orig > incl ? orig : incl, swap) != 0)
            break;
        off += 16 + (size_t)incl;
    }
    for (size_t i = 0; i < ps.p->nflows && !ps.failed; i++)
        if (ps.p->flows[i].tcp)
            tcp_finish(&ps, len, &ps.p->flows[i]);
    for (size_t i = 0; i < ps.p->nflows; i++)
        tcp_free(&ps.p->flows[i]);
    if (ps.failed)
        goto fail;
    *out = ps.p;
    return 0;
fail:
    fx_pcap_free(ps.p);
    return -1;
}

int fx_pcap_load(const char *path, fx_pcap **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    char inner[400];
    *out = NULL;
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        fclose(f);
        return -1;
    }
    if ((unsigned long long)st.st_size > FX_PCAP_MAX_FILE) {
        snprintf(err, errlen, "%s: the capture is larger than %u bytes", path, FX_PCAP_MAX_FILE);
        fclose(f);
        return -1;
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        snprintf(err, errlen, "%s: out of memory", path);
        fclose(f);
        return -1;
    }
    size_t got = fread(buf, 1, len, f);
    fclose(f);
    int rc = fx_pcap_parse_buffer(buf, got, out, inner, sizeof(inner));
    if (rc != 0)
        snprintf(err, errlen, "%s: %s", path, inner);
    free(buf);
    return rc;
}

void fx_pcap_free(fx_pcap *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nflows; i++) {
        tcp_free(&p->flows[i]);
        free(p->flows[i].ev);
        free(p->flows[i].data);
    }
    free(p->flows);
    free(p);
}

void fx_pcap_describe(const fx_pcap *p, fx_text *out)
{
    for (size_t i = 0; i < p->nflows; i++) {
        const fx_pcap_flow *f = &p->flows[i];
        char c[FX_ADDRSTRLEN], s[FX_ADDRSTRLEN];
        fx_addr_format(&f->client, f->client_len, c, sizeof(c));
        fx_addr_format(&f->server, f->server_len, s, sizeof(s));
        fx_text_printf(out, "%zu: %s %s -> %s, %zu packets, %zu bytes%s\n", i + 1,
                       f->proto == 6 ? "tcp" : "udp", c, s, f->packets, f->datalen,
                       f->proto == 6 && !f->saw_syn ? " (no SYN: started before the capture)" : "");
    }
}

/* ------------------------------------------------------------ scripts */

static int push_step(fx_script *s, enum fx_step_op op, const unsigned char *data, size_t len)
{
    if (s->nsteps >= FX_SCRIPT_MAX_STEPS)
        return -1;
    if ((s->nsteps & (s->nsteps - 1)) == 0) {
        size_t cap = s->nsteps ? s->nsteps * 2 : 8;
        fx_script_step *n = realloc(s->steps, cap * sizeof(*n));
        if (!n)
            return -1;
        s->steps = n;
    }
    fx_script_step *st = &s->steps[s->nsteps];
    memset(st, 0, sizeof(*st));
    st->op = op;
    st->len = len;
    if (!(st->data = malloc(len ? len : 1)))
        return -1;
    if (len)
        memcpy(st->data, data, len);
    s->nsteps++;
    return 0;
}

fx_script *fx_pcap_to_script(const fx_pcap *p, size_t n, const char *name, char *err, size_t errlen)
{
    if (n < 1 || n > p->nflows) {
        snprintf(err, errlen, "%s: no flow %zu: the capture has %zu TCP/UDP flow(s)%s", name, n,
                 p->nflows, p->nflows ? " (see --list)" : "");
        return NULL;
    }
    const fx_pcap_flow *f = &p->flows[n - 1];
    fx_script *s = calloc(1, sizeof(*s));
    if (!s || !(s->path = strdup(name)))
        goto oom;
    s->rule = FX_RULE_PUBLISH;
    s->protocol = f->proto == 17 ? FX_PROTO_UDP : FX_PROTO_TCP;
    s->listen = s->target = f->server;
    s->listen_len = s->target_len = f->server_len;
    s->client = f->client;
    s->client_len = f->client_len;
    for (size_t i = 0; i < f->nev; i++) {
        const fx_pcap_event *e = &f->ev[i];
        int rc = 0;
        if (e->type == FX_PCAP_DATA) {
            /* Lines as fwxhost --record writes them. */
            const unsigned char *d = f->data ? f->data + e->off : NULL;
            size_t pos = 0;
            while (pos < e->len && !rc) {
                size_t cut = fx_rec_line_end(d, pos, e->len);
                rc = push_step(s, e->dir ? FX_STEP_SERVER_SEND : FX_STEP_CLIENT_SEND, d + pos,
                               cut - pos);
                pos = cut;
            }
        } else if (e->type == FX_PCAP_DGRAM) {
            /* An empty datagram of a flow without data has no buffer:
             * NULL + 0 is undefined (found by tests/fuzz/fuzz_pcap.c). */
            rc = push_step(s, e->dir ? FX_STEP_SERVER_DGRAM : FX_STEP_CLIENT_DGRAM,
                           f->data ? f->data + e->off : NULL, e->len);
        } else {
            enum fx_step_op op = e->type == FX_PCAP_FIN
                ? (e->dir ? FX_STEP_SERVER_SHUTDOWN : FX_STEP_CLIENT_SHUTDOWN)
                : (e->dir ? FX_STEP_SERVER_ABORT : FX_STEP_CLIENT_ABORT);
            rc = push_step(s, op, NULL, 0);
        }
        if (rc) {
            snprintf(err, errlen, "%s: flow %zu has more than %d actions or memory ran out", name,
                     n, FX_SCRIPT_MAX_STEPS);
            fx_script_free(s);
            return NULL;
        }
    }
    if (!s->nsteps && push_step(s, FX_STEP_PAUSE, NULL, 0) != 0)
        goto oom;
    return s;
oom:
    snprintf(err, errlen, "%s: out of memory", name);
    fx_script_free(s);
    return NULL;
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

/* ------------------------------------------------------------ command line */

fx_script *fx_pcap_cli(const char *path, unsigned long stream, int list,
                              const char *to_script, int argc, char **argv, int *status)
{
    char err[1024];
    fx_pcap *p = NULL;
    fx_script *s = NULL;
    fx_text t = { 0 };

    *status = 2;
    if (fx_pcap_load(path, &p, err, sizeof(err)) != 0) {
        fprintf(stderr, "fwxreplay: %s\n", err);
        return NULL;
    }
    if (list) {
        fx_pcap_describe(p, &t);
        printf("%s: %zu packets, %zu not TCP/UDP over IP (skipped), %zu flow(s)\n%s", path,
               p->packets, p->skipped, p->nflows, t.p ? t.p : "");
        *status = 0;
        goto done;
    }
    if (!(s = fx_pcap_to_script(p, stream ? stream : 1, path, err, sizeof(err)))) {
        fx_pcap_describe(p, &t);
        fprintf(stderr, "fwxreplay: %s\n%s", err, t.p ? t.p : "");
        goto done;
    }
    const fx_pcap_flow *f = &p->flows[(stream ? stream : 1) - 1];
    if (f->gap_bytes)
        fprintf(stderr, "fwxreplay: %s: flow %lu: %llu bytes were not in the capture (lost or cut "
                "by the snap length); the script goes on after the hole\n", path,
                stream ? stream : 1, f->gap_bytes);
    if (!stream && p->nflows > 1)
        fx_log(FX_LOG_NOTICE, "%s has %zu flows; flow 1 is used (--stream N, --list)", path,
               p->nflows);
    /* --filter lines go into the script, so --to-script gives a complete test. */
    if (!s->filters && !(s->filters = calloc(FX_SCRIPT_MAX_FILTERS, sizeof(*s->filters))))
        goto fail;
    for (int i = 1; i + 1 < argc && s->nfilters < FX_SCRIPT_MAX_FILTERS; i++) {
        if (strcmp(argv[i], "--filter"))
            continue;
        char *spec = argv[++i], *eq = strchr(spec, '=');
        fx_script_filter *sf = &s->filters[s->nfilters++];
        sf->path = dup_n(spec, eq ? (size_t)(eq - spec) : strlen(spec));
        sf->clsid = eq ? strdup(eq + 1) : NULL;
        if (!sf->path || (eq && !sf->clsid))
            goto fail;
    }
    if (!to_script) {
        *status = 0;
        goto done;
    }
    fx_text_printf(&t, "# flow %lu of %s (fwxreplay --pcap --to-script)\n", stream ? stream : 1,
                   path);
    if (f->gap_bytes)
        fx_text_printf(&t, "# %llu bytes of this flow were not in the capture\n", f->gap_bytes);
    fx_script_format(s, &t);
    if (t.oom)
        goto fail;
    FILE *out = strcmp(to_script, "-") ? fopen(to_script, "w") : stdout;
    if (!out || fwrite(t.p, 1, t.len, out) != t.len || (out != stdout && fclose(out) != 0)) {
        fprintf(stderr, "fwxreplay: %s: %s\n", to_script, strerror(errno));
    } else {
        fflush(stdout);
        if (out != stdout)
            fprintf(stderr, "fwxreplay: wrote %s (%zu actions)\n", to_script, s->nsteps);
        *status = 0;
    }
    fx_script_free(s);
    s = NULL;
    goto done;
fail:
    fprintf(stderr, "fwxreplay: out of memory\n");
    fx_script_free(s);
    s = NULL;
done:
    fx_text_free(&t);
    fx_pcap_free(p);
    return s;
}

