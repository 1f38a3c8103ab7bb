/*
 * replaysuite.h — fwxreplay DIR: runs every *.fwxs script of a directory,
 * one fwxreplay process each, prints TAP and optionally writes JUnit XML.
 * Part of the fwxreplay launcher only (native, no Wine).
 */
#ifndef FWX_REPLAYSUITE_H
#define FWX_REPLAYSUITE_H

/* Does the command line name a directory (and so ask for a suite)? */
int fwx_replay_suite_wanted(int argc, char **argv);

/* Runs the suite; launch(argc, argv) runs one script (it execs, in a
 * child). Exit status: 0 all pass, 1 some golden file differs, 2 an error. */
int fwx_replay_suite(int argc, char **argv, int (*launch)(int argc, char **argv));

#endif
