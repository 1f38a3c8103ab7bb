/*
 * fxrecord.h - `fwxhost --record DIR`: turns one live connection into a
 * fwxreplay script (docs/replay-format.md, "Recording").
 *
 * Owns one recording per connection: the script header (rule, addresses,
 * filters), the actions in the order the host saw them at its two outer
 * sockets (bytes read from the client = client:, from the server =
 * server:, EOF = *-shutdown, a reset = *-abort), the coalescing of
 * adjacent reads of one direction into lines, the size cap, and the
 * atomic write of the file (temporary file, then link(2) to a name that
 * does not exist yet).  Pure C, no Wine: the host calls it from the
 * connection's loop thread only, so it has no lock.
 */
#ifndef FX_RECORD_H
#define FX_RECORD_H

#include <stddef.h>
#include <time.h>

#include "fxconf.h"

#define FX_RECORD_DEFAULT_MAX (4u << 20)    /* script bytes */
#define FX_RECORD_MIN_MAX     4096u

typedef struct fx_rec fx_rec;

enum fx_rec_side { FX_REC_CLIENT = 0, FX_REC_SERVER = 1 };

typedef struct fx_rec_info {
    const char *dir;               /* where the script goes */
    const char *rule;              /* rule name: header comment and file name */
    enum fx_rule_type type;
    const void *listen; int listen_len;    /* Linux sockaddrs */
    const void *target; int target_len;    /* publish: the server; outbound: original dest */
    const void *client; int client_len;
    const char *const *filters;    /* "PATH" or "PATH=CLSID", chain order */
    size_t nfilters;
    unsigned long id;              /* the connection id of the host's logs */
    size_t max_bytes;              /* size cap of the script (0: FX_RECORD_DEFAULT_MAX) */
    time_t start;                  /* 0: now */
} fx_rec_info;

/* NULL on out of memory. */
fx_rec *fx_rec_new(const fx_rec_info *info);

/* The host read len bytes (len > 0) from that side's socket. */
void fx_rec_data(fx_rec *r, enum fx_rec_side side, const void *data, size_t len);
/* That side ended: EOF (reset 0, a half-close) or a reset/error (1).
 * Only the first end of a side counts. */
void fx_rec_end(fx_rec *r, enum fx_rec_side side, int reset);

int fx_rec_truncated(const fx_rec *r);          /* the cap was reached */
size_t fx_rec_payload(const fx_rec *r);         /* bytes recorded (both sides) */

/* Writes the script: DIR/RULE-YYYYmmddTHHMMSSZ-cID.fwxs (-2, -3, ... if
 * taken), through a temporary file in DIR.  0 with the path in path, or
 * -1 with a message in err. */
int fx_rec_write(fx_rec *r, char *path, size_t pathlen, char *err, size_t errlen);
void fx_rec_free(fx_rec *r);

/* Where the script line starting at pos of data[0..len) ends: after a '\n'
 * once it holds 1024 bytes, at 4096 bytes in any case. fwxhost --record and
 * fwxreplay --pcap cut their send lines the same way. */
size_t fx_rec_line_end(const unsigned char *data, size_t pos, size_t len);

#endif /* FX_RECORD_H */
