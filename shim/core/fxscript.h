/*
 * fxscript.h - fwxreplay scripts (docs/replay-format.md): the parser, the
 * C-like byte escapes shared with golden files, and the line diff that
 * fwxreplay prints on a mismatch.
 *
 * Owns the fx_script model: the header (rule, addresses, filters) and the
 * list of actions, every one checked.  Errors are one line,
 * "FILE:LINE:COL: message".  Input is bounded (FX_SCRIPT_MAX_SIZE bytes,
 * FX_SCRIPT_MAX_LINE per line, FX_SCRIPT_MAX_STEPS actions), so hostile
 * files give an error, never unbounded memory.
 */
#ifndef FX_SCRIPT_H
#define FX_SCRIPT_H

#include <stddef.h>
#include <stdio.h>

#include "fxconf.h"
#include "fxnet.h"

#define FX_SCRIPT_MAX_SIZE  (16u << 20)   /* whole file */
#define FX_SCRIPT_MAX_LINE  (1u << 20)    /* one line, escapes included */
#define FX_SCRIPT_MAX_STEPS 100000
#define FX_SCRIPT_MAX_FILTERS 16
#define FX_SCRIPT_MAX_PAUSE 60000         /* ms */

enum fx_step_op {
    FX_STEP_CLIENT_SEND = 0,   /* client: "bytes" */
    FX_STEP_SERVER_SEND,       /* server: "bytes" */
    FX_STEP_CLIENT_SHUTDOWN,   /* client-shutdown: half-close */
    FX_STEP_SERVER_SHUTDOWN,
    FX_STEP_CLIENT_ABORT,      /* client-abort: reset */
    FX_STEP_SERVER_ABORT,
    FX_STEP_PAUSE,             /* pause MS */
    FX_STEP_EXPECT_CLOSED,     /* both ends see the connection end */
    FX_STEP_CLIENT_DGRAM,      /* client-datagram: [from A] [to A] "bytes" (protocol udp) */
    FX_STEP_SERVER_DGRAM       /* server-datagram: ... */
};

typedef struct fx_script_step {
    enum fx_step_op op;
    int line;
    unsigned char *data;       /* sends: the bytes (len may be 0) */
    size_t len;
    unsigned ms;               /* pause */
    fx_sockaddr from, to;      /* datagrams: from_len/to_len 0 = the header's addresses */
    int from_len, to_len;
} fx_script_step;

typedef struct fx_script_filter {
    char *path;                /* resolved against the script's directory */
    char *clsid;               /* text after '=', or NULL */
    int line;
} fx_script_filter;

typedef struct fx_script {
    char *path;                /* as given */
    enum fx_rule_type rule;    /* default publish */
    enum fx_proto protocol;    /* protocol tcp (default) | udp */
    fx_sockaddr listen, target, client;   /* labels only: nothing is bound */
    int listen_len, target_len, client_len;
    fx_script_filter *filters;
    size_t nfilters;
    fx_script_step *steps;
    size_t nsteps;
} fx_script;

/* Reads and parses path.  NULL with "FILE:LINE:COL: message" (or "FILE:
 * message" for whole-file problems) in err. */
fx_script *fx_script_load(const char *path, char *err, size_t errlen);
/* The same from memory; name is used in messages, dir resolves relative
 * filter paths (NULL: as written). */
fx_script *fx_script_parse(const char *name, const char *dir, const char *text, size_t len,
                           char *err, size_t errlen);
void fx_script_free(fx_script *s);

const char *fx_step_name(enum fx_step_op op);

struct fx_text;
/* The script as text that fx_script_parse reads back to the same model:
 * header (rule, protocol, addresses, filters), then one action a line. */
void fx_script_format(const fx_script *s, struct fx_text *out);

/* ---- growable text ---------------------------------------------------- */
typedef struct fx_text {
    char *p;                   /* NUL-terminated once anything was added */
    size_t len, cap;
    int oom;                   /* an append failed: the text is incomplete */
} fx_text;

void fx_text_add(fx_text *t, const char *s, size_t n);
void fx_text_printf(fx_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fx_text_free(fx_text *t);

/* Appends data as the inside of a C string: printable ASCII as is, \n \r
 * \t \\ \" and \xHH for every other byte.  fx_unescape is the inverse. */
void fx_escape(fx_text *t, const unsigned char *data, size_t len);

/* Unified-style line diff of two texts; lines starting with '#' are
 * ignored on both sides.  Returns 0 if equal (nothing written), 1 if not
 * (the diff written to out, which may be NULL). */
int fx_text_diff(const char *a_name, const char *a, const char *b_name, const char *b,
                 FILE *out);

#endif /* FX_SCRIPT_H */
