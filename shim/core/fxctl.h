/*
 * fxctl.h - the host's control server: a local Unix socket that answers
 * `fwxhost --stats`, and an optional loopback HTTP port that serves
 * Prometheus text on GET /metrics.
 *
 * Owns: the listening sockets, the clients' requests (bounded in size and
 * in time), writing the answers.  It runs on its own fx_loop, on a thread
 * the caller makes (fwxhost: Wine's CreateThread), so a slow or hostile
 * client never touches the workers.  What is said comes from a render
 * callback, called on that thread.
 *
 * Unix socket protocol: the client sends one line, "stats" or "metrics",
 * and reads the answer until the server closes.  Anything else gets one
 * "error: ..." line.  HTTP: GET /metrics answers 200 with the metrics;
 * any other method or path 404; a request line that is not HTTP 400.
 * A request longer than its bound (FX_CTL_MAX_LINE for the Unix socket,
 * FX_CTL_MAX_HTTP for HTTP headers), or not complete within
 * FX_CTL_TIMEOUT_MS, is dropped without an answer.
 */
#ifndef FX_CTL_H
#define FX_CTL_H

#include <stddef.h>

#include "fxloop.h"

#define FX_CTL_MAX_LINE 256
#define FX_CTL_MAX_HTTP 8192
#define FX_CTL_TIMEOUT_MS 5000
#define FX_CTL_MAX_CLIENTS 64

enum fx_ctl_kind { FX_CTL_STATS = 0, FX_CTL_METRICS = 1 };

/* Returns a malloc'd NUL-terminated text (freed by fxctl), or NULL on out
 * of memory (the client is then dropped).  Runs on the control thread. */
typedef char *(*fx_ctl_render_fn)(enum fx_ctl_kind kind, void *arg);

typedef struct fx_ctl fx_ctl;

/* The default control socket: /run/fwxshim/fwxhost.sock for root, else
 * $XDG_RUNTIME_DIR/fwxhost.sock, else /tmp/fwxhost-UID.sock. */
void fx_ctl_default_path(char *buf, size_t len);

/* Creates the loop and the listeners.  path: the Unix socket (required);
 * a stale socket file (nobody answering) is replaced; one a live server
 * answers on is an error ("... is in use by another fwxhost").  With
 * is_default, /run/fwxshim is created if missing.  metrics_sa: a loopback
 * address for HTTP, or NULL.  The socket file is made mode 0600.
 * NULL with one line in err. */
fx_ctl *fx_ctl_new(const char *path, int is_default, const void *metrics_sa, int metrics_len,
                   fx_ctl_render_fn render, void *arg, char *err, size_t errlen);

/* As fx_ctl_new, adopting listening sockets someone else bound (the
 * supervisor, fwxhost(8)): unix_fd / http_fd >= 0 are used as they are
 * instead of binding path / metrics_sa, and closed by fx_ctl_free, which
 * then leaves the socket file alone (it is the binder's). */
fx_ctl *fx_ctl_new_fds(const char *path, int is_default, int unix_fd, const void *metrics_sa,
                       int metrics_len, int http_fd, fx_ctl_render_fn render, void *arg,
                       char *err, size_t errlen);

/* Binds and listens on the control socket path, as fx_ctl_new does (a
 * stale file is replaced, a live one is an error, mode 0600).  The fd
 * (non-blocking, close-on-exec) or -1 with one line in err. */
int fx_ctl_bind_unix(const char *path, int is_default, char *err, size_t errlen);

/* The socket file a binder owns: noted right after binding, removed at the
 * end only if it is still that file (another host may have replaced it). */
struct fx_ctl_file {
    unsigned long long dev, ino;
};
void fx_ctl_file_note(const char *path, struct fx_ctl_file *f);
void fx_ctl_file_unlink(const char *path, const struct fx_ctl_file *f);

/* The HTTP address actually bound ("127.0.0.1:9469"), or "" without one. */
const char *fx_ctl_metrics_addr(const fx_ctl *ctl);

/* Runs the loop on the calling thread until fx_ctl_stop (any thread). */
int fx_ctl_run(fx_ctl *ctl);
void fx_ctl_stop(fx_ctl *ctl);

/* After the run returned: closes everything, removes the socket file if it
 * is still the one we made. */
void fx_ctl_free(fx_ctl *ctl);

/* Client: connect to path, send request ("stats\n"), copy the answer to
 * out_fd.  0, or -1 with one line in err (for a socket nobody listens on:
 * "no fwxhost is listening on PATH (...)").  Waits at most timeout_ms for
 * the answer. */
int fx_ctl_query(const char *path, const char *request, int out_fd, unsigned timeout_ms,
                 char *err, size_t errlen);

#endif /* FX_CTL_H */
