/*
 * fxreplay.h - the fwxreplay driver: plays a script's client and server
 * on the driver's ends of two socketpairs whose other ends the host pumps,
 * records what each side received and how each saw the connection end,
 * and formats that record as a golden file (docs/replay-format.md).
 *
 * Owns the driver's ends while it runs, the chunking of payloads, and the
 * fx_close_abort observer (fxnet.h) that tells it which end the host
 * reset: one replay at a time per process.
 */
#ifndef FX_REPLAY_H
#define FX_REPLAY_H

#include <stdint.h>

#include "fxscript.h"


typedef struct fx_chunking {
    int random;                /* 0: fixed */
    unsigned fixed;            /* bytes per write (fixed) */
    uint64_t seed;             /* random: sizes 1..512 from this seed */
} fx_chunking;

/* "fixed:N" (1 <= N <= 1048576) or "random:SEED" (0 <= SEED < 2^64).
 * 0, or -1 with a message. */
int fx_chunking_parse(const char *text, fx_chunking *out, char *err, size_t errlen);

typedef struct fx_replay_opts {
    fx_chunking chunking;
    unsigned timeout_ms;       /* bound of every wait (0: 5000) */
    unsigned settle_ms;        /* quiet time before an open end is recorded (0: 300) */
    int (*ready)(void *arg);   /* the host has run the events (1) */
    int (*done)(void *arg);    /* the host has torn the connection down (1) */
    void *arg;
} fx_replay_opts;

enum fx_end_state { FX_END_OPEN = 0, FX_END_CLOSED, FX_END_RESET, FX_END_ABORTED };

typedef struct fx_replay_side {
    fx_text rx;                /* every byte this side received */
    enum fx_end_state state;
} fx_replay_side;

typedef struct fx_replay_result {
    fx_replay_side client, server;
    int denied;                /* set by the caller */
    fx_text notes;             /* one "note: ..." line each */
    int expect_failed;         /* an expect-closed did not hold */
    int udp;                   /* a UDP script: the record is udp_log */
    fx_text udp_log;           /* per datagram step: what each side received */
    long denied_destinations;  /* UDP: set by the caller */
} fx_replay_result;

/* Plays s.  client_fd/server_fd are the driver's ends (closed on return);
 * host_client_fd/host_server_fd the host's ends of the same pairs (only
 * identified, never read).  Returns 0, or -1 with a message in err when
 * the replay could not run (the host never took the connection). */
int fx_replay_run(const fx_script *s, int client_fd, int host_client_fd, int server_fd,
                  int host_server_fd, const fx_replay_opts *o, fx_replay_result *r,
                  char *err, size_t errlen);
void fx_replay_result_free(fx_replay_result *r);


/* The golden-file text of a result.  name: the script, for the comment. */
void fx_replay_format(const fx_replay_result *r, const char *name, fx_text *out);

#endif /* FX_REPLAY_H */
