/*
 * fxreplayudp.h - the fwxreplay driver for UDP scripts (fxreplayudp.c):
 * datagram steps through the host's UDP rule on in-memory sockets
 * (fxudp.h fx_udp_emulate), recorded per step (docs/replay-format.md).
 */
#ifndef FX_REPLAYUDP_H
#define FX_REPLAYUDP_H

#include "fxreplay.h"

/* HOST-800/801.
 * The driver holds one end of the rule's in-memory socket (rule_fd; the
 * host's end is emulated UDP, fx_udp_emulate) and, per client address, the
 * end of that client's socket towards the server, which the host's
 * connect hook registers with fx_replay_udp_add_server (any thread).
 * After each datagram it waits until the host has read it (SIOCOUTQ of
 * our end back to 0) and the pump is quiet (o->quiet), then records what
 * each side received; a step after which the other side received nothing
 * is recorded as "not delivered". */
typedef struct fx_replay_udp_opts {
    unsigned timeout_ms;       /* bound of every wait (0: 5000) */
    /* 0 when the host's pump has run out of work, -1 if it did not within ms */
    int (*quiet)(void *arg, unsigned ms);
    void *arg;
} fx_replay_udp_opts;

int fx_replay_udp_add_server(const void *client, int client_len, const void *target,
                             int target_len, int fd);
/* Outbound rules: the driver's end of the host's transparent socket for
 * client and its original destination dst. The driver sends that client's
 * datagrams to dst through it (as TPROXY does once the host has it), and
 * reads what the host answers there. */
int fx_replay_udp_add_client(const void *client, int client_len, const void *dst, int dst_len,
                             int fd);
/* Plays s (protocol udp). rule_fd is closed on return, and so are the
 * registered server ends. 0, or -1 with a message in err. */
int fx_replay_run_udp(const fx_script *s, int rule_fd, const fx_replay_udp_opts *o,
                      fx_replay_result *r, char *err, size_t errlen);

#endif /* FX_REPLAYUDP_H */
