/*
 * fxinherit.h - what the fwxhost supervisor (shim/bin/supervisor.c) hands
 * its Wine worker process: the listening sockets and the configuration
 * text it validated.
 *
 * Owns: the handoff. The worker inherits one end of a SOCK_SEQPACKET
 * socket pair, named by FWX_SUPERVISOR_FD. The first message on it carries
 * every fd as SCM_RIGHTS, with their keys as the payload, one per line, in
 * the same order: a listening address as fx_addr_format writes it
 * ("127.0.0.1:8080", "[::1]:80") for a TCP rule's socket, "udp ADDR:PORT"
 * for a UDP rule's (one socket, used by worker 0), "@control" for the
 * control socket, "@metrics" for the Prometheus port, "@config" for a
 * memfd holding the configuration text. Keys are addresses, not rule
 * names: a reload may rename a rule and keep its socket.
 *
 * Why not plain inheritance across exec: Wine starts the wineserver and
 * its system processes (services.exe, explorer.exe, ...) from the first
 * process of a prefix, before our main() runs; they would inherit every
 * non-close-on-exec fd and keep the ports bound for as long as they live.
 * fds received with MSG_CMSG_CLOEXEC never leak that way; only the socket
 * pair's end does, which binds nothing.
 *
 * Afterwards the same socket carries the control messages: the worker
 * sends "ready" once it serves; the supervisor sends "drain" (a newer
 * worker serves; stop accepting, finish live sessions, exit). End of file
 * means the supervisor is gone.
 */
#ifndef FX_INHERIT_H
#define FX_INHERIT_H

#include <stddef.h>

#define FX_SUPERVISOR_ENV "FWX_SUPERVISOR_FD"
#define FX_INHERIT_MAX 200

struct fx_config;

/* Supervisor side: sends n fds with their keys. 0 or -1 (errno set). */
int fx_inherit_send(int sock, const char *const *keys, const int *fds, int n);

/* Worker side: the socket named by FWX_SUPERVISOR_FD (the variable is
 * removed), or -1 when not under a supervisor. */
int fx_supervisor_socket(void);

/* Worker side: waits up to timeout_ms for the handoff and keeps the fds
 * (close-on-exec) for fx_inherited_fd. 0, or -1 with one line in err. */
int fx_inherit_receive(int sock, unsigned timeout_ms, char *err, size_t errlen);

/* Records one fd as if received (the launcher's child, before exec). */
void fx_inherit_set(const char *key, int fd);

/* 1 once a handoff was received (the worker runs under a supervisor). */
int fx_inherited(void);

/* The fd handed down for key, or -1. */
int fx_inherited_fd(const char *key);

/* The key of a rule's listening socket ("ADDR:PORT", "udp ADDR:PORT"), for
 * both sides of the handoff. */
#define FX_INHERIT_KEYLEN 80      /* "udp " + FX_ADDRSTRLEN, rounded up */
struct fx_rule_conf;
void fx_inherit_rule_key(const struct fx_rule_conf *rule, char key[FX_INHERIT_KEYLEN]);

/* fx_config_load(path), or from the "@config" copy when there is one. */
struct fx_config *fx_config_load_as_handed(const char *path, char *err, size_t errlen);

#endif
