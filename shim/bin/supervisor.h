/*
 * supervisor.h — fwxhost's native supervisor (supervisor.c): binds the
 * listening sockets, runs the Wine worker process, restarts it, reloads.
 */
#ifndef FWX_SUPERVISOR_H
#define FWX_SUPERVISOR_H

/* 0 for command lines that do not run a service (--stats, --help,
 * --version) or ask for none (--no-supervisor). */
int fwx_supervise_wanted(int argc, char **argv);

/* Runs the service; launch(argc, argv) execs the worker (in a child).
 * Returns the exit status. */
int fwx_supervise(int argc, char **argv, int (*launch)(int, char **));

#endif
