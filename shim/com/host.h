/*
 * host.h — starting and stopping the Firewall service (host.c).
 */
#ifndef FWX_HOST_START_H
#define FWX_HOST_START_H

#include <stddef.h>
#include "fxconf.h"

struct host;

/* Loads and initializes the filters, opens every rule's listeners, starts
 * the workers. 0, or -1 with one line in err naming file:line, filter or
 * rule at fault. */
int host_start(struct host *h, fx_config *cfg, char *err, size_t errlen);

/* Stops accepting: each worker takes its listening sockets out of its
 * loop and closes them (under the supervisor, the supervisor's and a newer
 * worker's copies stay open and keep accepting).  Live connections go on.
 * Idempotent; host_stop starts with it. */
void host_stop_accepting(struct host *h);

/* Async-signal-safe: a drain in progress (or to come) ends at the latest
 * seconds from now (SIGTERM during a long reload drain). */
void host_cut_drain(unsigned seconds);

/* 1 when every worker is inside a filter call past the hang timeout
 * (then the process serves nothing); what describes the last one. */
int host_all_workers_stuck(struct host *h, char *what, size_t len);

/* Stops accepting, waits up to drain_seconds for live connections, stops
 * the workers, detaches sessions, FilterShutdown, unloads. */
void host_stop(struct host *h, unsigned drain_seconds);

#endif
