/*
 * install.h — fwxhost --install DLL: runs the filter's own registration
 * (DllRegisterServer, else DllInstall) with the host's IFWXFilterAdmin standing in for
 * ISA's Wspadmin.dll, and prints the [filter NAME] section it registered (install.c,
 * docs HOST-302).
 */
#ifndef FWX_INSTALL_H
#define FWX_INSTALL_H

#include <stdio.h>

/* 0 with the section written to out, or -1 with one line in err. */
int install_filter(const char *dll, FILE *out, char *err, size_t errlen);

#endif /* FWX_INSTALL_H */
