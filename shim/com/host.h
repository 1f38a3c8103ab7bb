/*
 * host.h — starting and stopping the Firewall service (host.c).
 */
#ifndef FWX_HOST_START_H
#define FWX_HOST_START_H

#include "fxconf.h"

struct host;

/* Loads and initializes the filters, opens every rule's listeners, starts
 * the workers. 0, or -1 with one line in err naming file:line, filter or
 * rule at fault. */
int host_start(struct host *h, fx_config *cfg, char *err, size_t errlen);

/* Stops accepting, waits up to drain_seconds for live connections, stops
 * the workers, detaches sessions, FilterShutdown, unloads. */
void host_stop(struct host *h, unsigned drain_seconds);

#endif
