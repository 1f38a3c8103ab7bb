/*
 * fxsec.h - the host's own defences: refusing files anyone could have
 * replaced, and dropping root once the listeners are bound.
 *
 * Owns two checks and nothing else (docs/security.md):
 *  - fx_path_check_safe: a config file or filter DLL is refused when it,
 *    or any directory on its path (as given and as resolved), is writable
 *    by every user; a world-writable directory with the sticky bit (/tmp)
 *    is accepted, as only a file's owner may replace it there.
 *  - fx_drop_privileges: setgroups (initgroups), setgid, setuid to a user,
 *    then proves it stuck: real, effective and saved ids of every thread
 *    of the process (from /proc/self/task) and setuid(0) failing.
 */
#ifndef FX_SEC_H
#define FX_SEC_H

#include <stddef.h>

/* 0 if path is safe to load; -1 with "refusing WHAT PATH: why; how to fix"
 * (or "cannot check WHAT PATH: ...") in err. */
int fx_path_check_safe(const char *path, const char *what, char *err, size_t errlen);

/* Become user (a name from the user database) for good.  0, or -1 with a
 * message; on -1 the process may be half-changed and must exit. */
int fx_drop_privileges(const char *user, char *err, size_t errlen);

/* Checks every thread of this process runs with real, effective and saved
 * uid and gid equal to uid/gid.  0, or -1 with the first thread that does
 * not in err. */
int fx_check_ids(unsigned uid, unsigned gid, char *err, size_t errlen);

#endif /* FX_SEC_H */
