/*
 * fxudp.h - native UDP sockets for UDP rules (shim/com/udp.c): a bound
 * socket for a rule's listening address, a connected one per destination,
 * datagram send and receive. Plain C, no Wine. Every call returns a
 * negative errno on failure, never touches errno for the caller.
 */
#ifndef FX_UDP_H
#define FX_UDP_H

/* Kernel buffer size asked for on every UDP socket made here: large, so
 * that a burst of datagrams on loopback is queued, not dropped. */
#define FX_UDP_SOCKBUF (4 * 1024 * 1024)

/* A nonblocking UDP socket bound to sa (SO_REUSEADDR off: a second host on
 * the same port is an error). fd, or -1 with a message in err. */
int fx_udp_bind(const void *sa, int salen, char *err, unsigned long errlen);
/* A nonblocking UDP socket connected to sa (the kernel picks our address
 * and port). fd or -errno. */
int fx_udp_connect(const void *sa, int salen);
/* One datagram. Bytes received (the datagram is cut to len), -EAGAIN when
 * there is none, or -errno. from/fromlen may be NULL. */
long fx_udp_recvfrom(int fd, void *buf, unsigned long len, void *from, int *fromlen);
/* One datagram to sa (NULL: the connected peer). Bytes sent or -errno. */
long fx_udp_sendto(int fd, const void *buf, unsigned long len, const void *sa, int salen);

/* Transparent proxying (outbound UDP rules, iptables TPROXY; needs
 * CAP_NET_ADMIN). A socket bound to sa that receives datagrams TPROXY sent
 * to it with their original destination (fx_udp_recvorig). fd, or -1 with
 * a message in err. */
int fx_udp_bind_transparent(const void *sa, int salen, char *err, unsigned long errlen);
/* One datagram and its original destination (dst, *dstlen = 0 if the
 * kernel gave none). As fx_udp_recvfrom otherwise. */
long fx_udp_recvorig(int fd, void *buf, unsigned long len, void *from, int *fromlen, void *dst,
                     int *dstlen);
/* A socket bound to the foreign address local (the client's original
 * destination) and connected to peer (the client): what it sends appears
 * to come from local, and TPROXY delivers the client's further datagrams
 * to local on it. fd or -errno. */
int fx_udp_transparent_peer(const void *local, int locallen, const void *peer, int peerlen);

/* ---- In-memory UDP sockets (fwxreplay, HOST-800) ----
 * fx_udp_emulate marks fd, one end of a socketpair(AF_UNIX, SOCK_DGRAM),
 * as a UDP socket whose address is local and, if peer is given, which is
 * connected to peer. Each AF_UNIX datagram then carries a frame header
 * (fx_udp_frame): its source and destination address. fx_udp_recvfrom and
 * fx_udp_recvorig on it return the frame's source (and destination); a
 * connected one drops datagrams from anyone but its peer, as the kernel
 * does. fx_udp_sendto writes local as the source and sa (NULL: the peer)
 * as the destination. The other end of the pair is the driver's: it talks
 * frames with fx_udp_frame_send/recv. Datagram boundaries are kept, and
 * the bytes are never split. 0 or -errno. */
#define FX_UDP_EMU_MAX_FD 4096
/* socketpair(AF_UNIX, SOCK_DGRAM), nonblocking, big buffers. 0 or -errno. */
int fx_udp_socketpair(int fds[2]);
int fx_udp_emulate(int fd, const void *local, int locallen, const void *peer, int peerlen);
void fx_udp_emulate_end(int fd);
/* close(fd), ending its emulation first: the next socket that gets the
 * same number must not inherit fake addresses. */
void fx_udp_close(int fd);
/* The local address: the emulated one, else getsockname. 0 or -errno. */
int fx_udp_getsockname(int fd, void *sa, int *salen);

typedef struct fx_udp_frame {
    unsigned char srclen, dstlen, pad[2];
    unsigned char src[28], dst[28];
} fx_udp_frame;
long fx_udp_frame_send(int fd, const void *src, int srclen, const void *dst, int dstlen,
                       const void *buf, unsigned long len);
/* One frame: bytes of payload, -EAGAIN, or -errno; src/dst: 28 bytes each. */
long fx_udp_frame_recv(int fd, void *buf, unsigned long len, void *src, int *srclen, void *dst,
                       int *dstlen);

#endif /* FX_UDP_H */
