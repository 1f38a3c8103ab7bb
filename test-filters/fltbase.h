/*
 * fltbase.h - what every fwxshim test filter shares: the COM in-process-server
 * plumbing in fltbase.c (DllMain, DllGetClassObject, DllCanUnloadNow, the class
 * factory, the DLL-wide object count) and small helpers (tracing, environment).
 *
 * Each filter DLL is one filter source plus fltbase.c. The filter source supplies
 * the three definitions under "Supplied by each filter" below; fltbase.c supplies
 * everything else. Usable from C and from C++ (the C++ filters include it too).
 *
 * Include order matters: Winsock 2 must come before <windows.h>, and the generated
 * wspfwext.h (from idl/wspfwext.idl) comes last.
 */
#ifndef FWX_FLTBASE_H
#define FWX_FLTBASE_H

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
#include <objbase.h>
#include <stdio.h>   /* __MINGW_PRINTF_FORMAT: the printf flavour vsnprintf has */
#include "wspfwext.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- supplied by each filter */

/* The filter's class: the host passes it to DllGetClassObject. */
extern const CLSID fwx_filter_clsid;

/* Short name used as the prefix of trace lines, e.g. "passthrough". */
extern const char fwx_filter_name[];

/* Creates the filter object (the one that implements IFWXFilter) and returns the
 * interface riid on it. Called by the class factory; aggregation is already refused. */
HRESULT fwx_filter_create(REFIID riid, void **ppv);

#ifdef FWX_SELF_REGISTER
/* Built with -DFWX_SELF_REGISTER: DllRegisterServer calls this, which registers the
 * filter through IFWXFilterAdmin as ISA 2000 filters do (passreg, tests/abi.sh). */
HRESULT fwx_self_register(void);
#endif

/* ---------------------------------------------------------------- provided by fltbase.c */

/* The DLL's module handle, set in DllMain. */
extern HINSTANCE fwx_module;

/* Every COM object a filter creates calls fwx_object_created in its constructor and
 * fwx_object_destroyed when its last reference goes; DllCanUnloadNow answers S_OK only
 * when no object is alive and no IClassFactory::LockServer lock is held. */
void fwx_object_created(void);
void fwx_object_destroyed(void);

/* Trace line "fwx-filter NAME: ..." to the debugger (OutputDebugString, visible in Wine
 * with WINEDEBUG=+debugstr), and to stderr when the environment variable
 * FWX_FILTER_TRACE is set to a non-empty value. A newline is added. */
void fwx_trace(const char *fmt, ...) __attribute__((format(__MINGW_PRINTF_FORMAT, 1, 2)));

/* Returns a HeapAlloc'ed copy of environment variable NAME, or of DEFVAL when the
 * variable is not set (a variable set to the empty string gives ""). NULL only when out
 * of memory. Free with fwx_free. */
char *fwx_getenv(const char *name, const char *defval);

/* QueryInterface of an object with one interface besides IUnknown: IFACE, which is an
 * IID one, into *ppv with a reference when RIID is IID or IUnknown, else E_NOINTERFACE
 * (and NULL). RIID is the method's riid (pass &riid from C++, where REFIID is a
 * reference). */
HRESULT fwx_query_single(void *iface, const IID *iid, const IID *riid, void **ppv);

/* Zero-filled allocation from the process heap, and its release (NULL is fine). */
void *fwx_alloc(SIZE_T size);
void fwx_free(void *p);

/* The COM exports, listed in filter.def. */
STDAPI DllGetClassObject(REFCLSID rclsid, REFIID riid, LPVOID *ppv);
STDAPI DllCanUnloadNow(void);
STDAPI DllRegisterServer(void);
STDAPI DllUnregisterServer(void);

#ifdef __cplusplus
}
#endif

#endif /* FWX_FLTBASE_H */
