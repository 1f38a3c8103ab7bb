/*
 * fltbase.c - the COM in-process-server plumbing shared by every fwxshim test filter:
 * DllMain, the four exports (DllGetClassObject, DllCanUnloadNow, DllRegisterServer,
 * DllUnregisterServer), a static class factory for the filter's one class, the DLL-wide
 * object count, and the small helpers declared in fltbase.h.
 *
 * The filter itself lives in its own source file, which supplies fwx_filter_clsid,
 * fwx_filter_name and fwx_filter_create.
 *
 * The C++ filters are linked with g++, which compiles this .c file as C++ too. So the
 * file is written in the common subset: CINTERFACE keeps the C vtable layout for the
 * class factory, and GUID arguments go through GUID_PTR because REFIID and REFCLSID are
 * references in C++ and pointers in C.
 */
#define CINTERFACE
#define COBJMACROS
#define CONST_VTABLE
#include "fltbase.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#ifdef __cplusplus
#define GUID_PTR(ref) (&(ref))
#else
#define GUID_PTR(ref) (ref)
#endif

HINSTANCE fwx_module;

static LONG object_count;  /* live COM objects of this DLL, the class factory excepted */
static LONG lock_count;    /* IClassFactory::LockServer(TRUE) calls not yet undone */
static BOOL trace_to_stderr;

/* ---------------------------------------------------------------- helpers */

static BOOL guid_equal(const GUID *a, const GUID *b)
{
    return memcmp(a, b, sizeof(GUID)) == 0;
}

void fwx_object_created(void)
{
    InterlockedIncrement(&object_count);
}

void fwx_object_destroyed(void)
{
    InterlockedDecrement(&object_count);
}

void *fwx_alloc(SIZE_T size)
{
    return HeapAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, size);
}

void fwx_free(void *p)
{
    if (p)
        HeapFree(GetProcessHeap(), 0, p);
}

void fwx_trace(const char *fmt, ...)
{
    char line[512];
    va_list args;
    int prefix;

    prefix = snprintf(line, sizeof(line), "fwx-filter %s: ", fwx_filter_name);
    if (prefix < 0 || prefix >= (int)sizeof(line) - 2)
        return;
    va_start(args, fmt);
    vsnprintf(line + prefix, sizeof(line) - prefix - 1, fmt, args);
    va_end(args);
    line[sizeof(line) - 2] = '\0';
    strcat(line, "\n");

    OutputDebugStringA(line);
    if (trace_to_stderr) {
        fputs(line, stderr);
        fflush(stderr);
    }
}

HRESULT fwx_query_single(void *iface, const IID *iid, const IID *riid, void **ppv)
{
    IUnknown *unknown = (IUnknown *)iface;   /* every interface starts with IUnknown's slots */

    if (!ppv)
        return E_POINTER;
    if (!guid_equal(riid, &IID_IUnknown) && !guid_equal(riid, iid)) {
        *ppv = NULL;
        return E_NOINTERFACE;
    }
    *ppv = iface;
    unknown->lpVtbl->AddRef(unknown);
    return S_OK;
}

char *fwx_getenv(const char *name, const char *defval)
{
    DWORD size, got;
    char *value;

    /* GetEnvironmentVariableA returns 0 both for "not set" and for an empty value;
     * only the last error tells them apart. */
    SetLastError(ERROR_SUCCESS);
    size = GetEnvironmentVariableA(name, NULL, 0);
    if (size == 0 && GetLastError() == ERROR_ENVVAR_NOT_FOUND) {
        size = (DWORD)strlen(defval) + 1;
        value = (char *)fwx_alloc(size);
        if (value)
            memcpy(value, defval, size);
        return value;
    }
    if (size == 0)
        size = 1;
    value = (char *)fwx_alloc(size);
    if (!value)
        return NULL;
    got = GetEnvironmentVariableA(name, value, size);
    if (got >= size)        /* changed under us: keep what fits, stay terminated */
        value[size - 1] = '\0';
    return value;
}

/* ---------------------------------------------------------------- class factory */

/* One static factory serves the DLL's one class. It is not counted as an object:
 * COM's rule is that only LockServer keeps a DLL loaded on the factory's behalf. */

static HRESULT STDMETHODCALLTYPE factory_QueryInterface(IClassFactory *iface, REFIID riid, void **ppv)
{
    if (!ppv)
        return E_POINTER;
    if (guid_equal(GUID_PTR(riid), &IID_IUnknown) || guid_equal(GUID_PTR(riid), &IID_IClassFactory)) {
        *ppv = iface;
        return S_OK;
    }
    *ppv = NULL;
    return E_NOINTERFACE;
}

static ULONG STDMETHODCALLTYPE factory_AddRef(IClassFactory *iface)
{
    return 2;
}

static ULONG STDMETHODCALLTYPE factory_Release(IClassFactory *iface)
{
    return 1;
}

static HRESULT STDMETHODCALLTYPE factory_CreateInstance(IClassFactory *iface, IUnknown *outer,
                                                        REFIID riid, void **ppv)
{
    if (!ppv)
        return E_POINTER;
    *ppv = NULL;
    if (outer)
        return CLASS_E_NOAGGREGATION;
    return fwx_filter_create(riid, ppv);
}

static HRESULT STDMETHODCALLTYPE factory_LockServer(IClassFactory *iface, BOOL lock)
{
    if (lock)
        InterlockedIncrement(&lock_count);
    else
        InterlockedDecrement(&lock_count);
    return S_OK;
}

static const IClassFactoryVtbl factory_vtbl = {
    factory_QueryInterface,
    factory_AddRef,
    factory_Release,
    factory_CreateInstance,
    factory_LockServer,
};

static IClassFactory factory = { &factory_vtbl };

/* ---------------------------------------------------------------- DLL entry points */

EXTERN_C BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    if (reason == DLL_PROCESS_ATTACH) {
        char flag[8];

        fwx_module = instance;
        DisableThreadLibraryCalls(instance);
        trace_to_stderr = GetEnvironmentVariableA("FWX_FILTER_TRACE", flag, sizeof(flag)) > 0;
    }
    return TRUE;
}

STDAPI DllGetClassObject(REFCLSID rclsid, REFIID riid, LPVOID *ppv)
{
    if (!ppv)
        return E_POINTER;
    *ppv = NULL;
    if (!guid_equal(GUID_PTR(rclsid), &fwx_filter_clsid))
        return CLASS_E_CLASSNOTAVAILABLE;
    return IClassFactory_QueryInterface(&factory, riid, ppv);
}

STDAPI DllCanUnloadNow(void)
{
    return (object_count == 0 && lock_count == 0) ? S_OK : S_FALSE;
}

/* fwxshim loads filters by path and CLSID from its own configuration, so nothing needs
 * registering yet. A filter for the real ISA 2000 would write HKCR\CLSID\{clsid} here and
 * call IFWXFilterAdmin::InstallFilter from DllInstall; that is future work for these test
 * filters, and S_OK keeps regsvr32-style tooling content meanwhile. */
STDAPI DllRegisterServer(void)
{
#ifdef FWX_SELF_REGISTER
    return fwx_self_register();
#else
    return S_OK;
#endif
}

STDAPI DllUnregisterServer(void)
{
    return S_OK;
}
