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

#endif /* FX_UDP_H */
