/*
 * stats.h — the host's counters as text (stats.c): a table for
 * `fwxhost --stats` and Prometheus text for GET /metrics, served by the
 * control server (shim/core/fxctl.h) on its own thread.
 */
#ifndef FWX_STATS_H
#define FWX_STATS_H

#include <stddef.h>

struct host;

/* After host_start: opens the control socket (control_path, else [host]
 * control, else fx_ctl_default_path) and, with [host] metrics, the HTTP
 * port; starts the control thread (CreateThread).  With the default path
 * taken by another live host, logs a warning and runs without a control
 * socket.  0, or -1 with one line in err. */
int stats_server_start(struct host *h, const char *control_path, char *err, size_t errlen);

/* Before host_stop: stops the thread, closes, removes the socket file. */
void stats_server_stop(void);

/* Render now (any thread): malloc'd text, or NULL on out of memory.
 * prometheus: 0 for the --stats table. */
char *stats_render(struct host *h, int prometheus);

#endif
