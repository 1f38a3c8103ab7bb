/*
 * fxpcap.h - `fwxreplay --pcap FILE`: our own reader of classic libpcap
 * captures (tcpdump -w), turning TCP streams and UDP datagrams into
 * fwxreplay scripts (docs/replay-format.md, "Captures").
 *
 * Owns: the file format (both byte orders, microsecond and nanosecond
 * magic), link layers (Ethernet with VLAN tags, Linux cooked SLL and
 * SLL2, raw IP, BSD loopback NULL/LOOP), IPv4 and IPv6, TCP reassembly
 * per direction (ordered by sequence number, retransmissions and overlaps
 * trimmed, out-of-order segments held until the gap fills, SYN/FIN/RST),
 * UDP datagrams, and the conversion of one flow into an fx_script.
 *
 * Every length in the file is checked against what is left of it: a
 * broken capture gives "offset N: message", never a read out of bounds.
 * Contents that are not ours (ARP, ICMP, fragments, bad IP headers) are
 * skipped and counted.  Pure C, no Wine; fx_pcap_parse_buffer is the
 * entry point of the fuzzer.
 */
#ifndef FX_PCAP_H
#define FX_PCAP_H

#include <stddef.h>
#include <stdint.h>

#include "fxnet.h"
#include "fxscript.h"

#define FX_PCAP_MAX_FILE   (256u << 20)   /* bytes of capture read */
#define FX_PCAP_MAX_PACKET (256u << 10)   /* captured bytes of one packet */
#define FX_PCAP_MAX_FLOWS  4096
#define FX_PCAP_MAX_HELD   (16u << 20)    /* out-of-order bytes held per flow */

enum fx_pcap_ev { FX_PCAP_DATA = 0, FX_PCAP_FIN, FX_PCAP_RST, FX_PCAP_DGRAM };

typedef struct fx_pcap_event {
    enum fx_pcap_ev type;
    int dir;                   /* 0 client -> server, 1 server -> client */
    size_t off, len;           /* DATA/DGRAM: bytes in the flow's data */
} fx_pcap_event;

typedef struct fx_pcap_flow {
    int proto;                 /* 6 TCP, 17 UDP */
    fx_sockaddr client, server;   /* TCP: the SYN's sender is the client; else the first sender */
    int client_len, server_len;
    int saw_syn;
    fx_pcap_event *ev;
    size_t nev, evcap;
    unsigned char *data;
    size_t datalen, datacap;
    unsigned long long gap_bytes;      /* TCP bytes never captured (lost or cut by snaplen) */
    unsigned long long retransmitted;  /* TCP bytes seen twice, dropped */
    size_t packets;
    void *tcp;                 /* reassembly state while parsing */
} fx_pcap_flow;

typedef struct fx_pcap {
    int linktype;
    int nsec;                  /* nanosecond timestamps */
    size_t packets;            /* records in the file */
    size_t skipped;            /* records that were not TCP/UDP over IP we read */
    fx_pcap_flow *flows;       /* in order of their first packet */
    size_t nflows;
} fx_pcap;

/* Parses a whole capture in memory.  0 with *out, or -1 with "offset N:
 * message" (or a whole-file message) in err.  Never reads outside buf. */
int fx_pcap_parse_buffer(const uint8_t *buf, size_t len, fx_pcap **out, char *err, size_t errlen);
/* Reads and parses path (at most FX_PCAP_MAX_FILE bytes); errors start
 * with the path. */
int fx_pcap_load(const char *path, fx_pcap **out, char *err, size_t errlen);
void fx_pcap_free(fx_pcap *p);

/* One line per flow, "N: tcp 10.0.0.1:40000 -> 10.0.0.2:21, 12 packets,
 * 300 bytes" (N from 1), for error messages and --list. */
void fx_pcap_describe(const fx_pcap *p, fx_text *out);

/* Flow number n (1-based) as a script: rule publish, listen and target
 * the server's address, client-address the client's; TCP data coalesced
 * per direction into lines as fwxhost --record does; FIN -> *-shutdown,
 * RST -> *-abort; UDP flows give protocol udp and datagram actions.
 * NULL with a message on a bad n or out of memory. */
fx_script *fx_pcap_to_script(const fx_pcap *p, size_t n, const char *name, char *err,
                             size_t errlen);

/* fwxreplay --pcap PATH [--stream N] [--list | --to-script OUT]: the
 * capture's flow (stream 0: the first) as a script, with the --filter
 * arguments of argv as its filter lines.  NULL when the run ends here:
 * --list and --to-script done (*status 0), or an error printed on stderr
 * (*status 2).  The native launcher runs --list and --to-script itself,
 * without Wine. */
fx_script *fx_pcap_cli(const char *path, unsigned long stream, int list, const char *to_script,
                       int argc, char **argv, int *status);

#endif /* FX_PCAP_H */
