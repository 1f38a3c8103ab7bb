/*
 * fxinherit.h - listening sockets handed down by the fwxhost supervisor
 * (shim/bin/supervisor.c) to the Wine worker process it starts.
 *
 * Owns: the FWX_LISTEN_FDS environment format, read and written.  The
 * value is a comma-separated list of KEY=FD, where KEY is a listening
 * address as fx_addr_format writes it ("127.0.0.1:8080", "[::1]:80") for
 * a rule's socket, "@control" for the control socket and "@metrics" for
 * the Prometheus port.  Keys are addresses, not rule names, because an
 * address is what a socket is: a reload may rename a rule and keep its
 * socket.  With the variable set, the worker binds nothing itself.
 */
#ifndef FX_INHERIT_H
#define FX_INHERIT_H

#include <stddef.h>

#define FX_INHERIT_ENV "FWX_LISTEN_FDS"
/* The write end of a pipe: the worker writes "ready\n" once it serves. */
#define FX_READY_ENV "FWX_READY_FD"
/* The read end of a pipe from the supervisor: "drain\n" means a newer
 * worker serves; stop accepting, finish live sessions, exit.  End of file
 * means the supervisor is gone: stop. */
#define FX_CONTROL_ENV "FWX_CONTROL_FD"

/* An open file holding the configuration text the supervisor validated:
 * a restarted worker runs that, not whatever the file says by then (a
 * changed file takes effect on SIGHUP only). */
#define FX_CONFIG_ENV "FWX_CONFIG_FD"

struct fx_config;

/* fx_config_load(path), or from FWX_CONFIG_FD's copy when it is set. */
struct fx_config *fx_config_load_as_handed(const char *path, char *err, size_t errlen);

/* 1 when FWX_LISTEN_FDS is set (the worker runs under a supervisor). */
int fx_inherited(void);

/* The fd handed down for key, or -1 (not set, not listed, not a number). */
int fx_inherited_fd(const char *key);

/* Appends ",KEY=FD" (no comma when buf is empty).  0, or -1 when it does
 * not fit. */
int fx_inherit_add(char *buf, size_t len, const char *key, int fd);

#endif
