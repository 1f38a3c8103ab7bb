/*
 * discover.h — fwxinfo --discover: the CLSIDs and IIDs a filter DLL was built with,
 * printed on stdout as an [abi] override file (discover.c, docs ABI-302).
 */
#ifndef FWX_DISCOVER_H
#define FWX_DISCOVER_H

/* 0, or -1 with one line in err (the DLL could not be loaded). */
int discover_dll(const char *path, char *err, size_t errlen);

#endif /* FWX_DISCOVER_H */
