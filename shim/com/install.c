/*
 * install.c — fwxhost --install DLL (see install.h, docs HOST-302): the host's
 * IFWXFilterAdmin (the object ISA's Wspadmin.dll provides), registered as the class
 * object of CLSID_FWXFilterAdmin for the time of the filter's DllRegisterServer (or
 * DllInstall), records what the filter installs; then the filter's [filter NAME]
 * section is printed: path, CLSID, and the protocols it registered as comments.
 * Nothing is written to any ISA store: the configuration is the store.
 */
#include "fwxhost.h" /* first: Winsock before any libc header */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "guard.h"
#include "install.h"
#include "loader.h"
#include "trap.h"

struct install_record {
    BOOL installed;
    GUID clsid;
    char name[128], description[256], vendor[128], version[64];
    long scope;
    int nprotocols;
    struct { GUID g; char name[128], description[256]; } protocols[16];
};

static struct install_record *record;     /* one installation at a time */

struct admin {
    IFWXFilterAdmin IFWXFilterAdmin_iface;
    LONG ref;
};

static inline struct admin *impl_from_IFWXFilterAdmin(IFWXFilterAdmin *iface)
{
    return CONTAINING_RECORD(iface, struct admin, IFWXFilterAdmin_iface);
}

/* A string from the filter: copied through guard_copy, NULL as "". */
static void copy_str(char *dst, size_t len, LPCSTR src)
{
    size_t i = 0;
    if (src)
        for (; i + 1 < len; i++)
            if (!guard_copy(&dst[i], src + i, 1) || !dst[i])
                break;
    dst[i] = 0;
}

static HRESULT WINAPI admin_QueryInterface(IFWXFilterAdmin *iface, REFIID riid, void **out)
{
    if (!out)
        return E_POINTER;
    if (IsEqualIID(riid, &IID_IUnknown) || IsEqualIID(riid, &IID_IFWXFilterAdmin)) {
        *out = iface;
        IFWXFilterAdmin_AddRef(iface);
        return S_OK;
    }
    *out = NULL;
    fx_log_unknown_iid("IFWXFilterAdmin", riid);
    return E_NOINTERFACE;
}

static ULONG WINAPI admin_AddRef(IFWXFilterAdmin *iface)
{
    return InterlockedIncrement(&impl_from_IFWXFilterAdmin(iface)->ref);
}

static ULONG WINAPI admin_Release(IFWXFilterAdmin *iface)
{
    struct admin *a = impl_from_IFWXFilterAdmin(iface);
    LONG ref = InterlockedDecrement(&a->ref);
    if (!ref)
        free(a);
    return ref;
}

static HRESULT WINAPI admin_InstallFilter(IFWXFilterAdmin *iface, REFCLSID clsid, LPCSTR name,
                                          LPCSTR description, LPCSTR vendor, LPCSTR version,
                                          LPCSTR reserved, FwxScope scope)
{
    char text[39];
    if (!record || !clsid || !guard_copy(&record->clsid, clsid, sizeof(GUID)))
        return E_INVALIDARG;
    if (record->installed)
        return HRESULT_FROM_WIN32(ERROR_ALREADY_EXISTS);
    record->installed = TRUE;
    copy_str(record->name, sizeof(record->name), name);
    copy_str(record->description, sizeof(record->description), description);
    copy_str(record->vendor, sizeof(record->vendor), vendor);
    copy_str(record->version, sizeof(record->version), version);
    record->scope = scope;
    fx_log(FX_LOG_NOTICE, "install: InstallFilter %s \"%s\" (%s, %s %s), scope %ld",
           fx_guid_str(&record->clsid, text), record->name, record->description, record->vendor,
           record->version, (long)scope);
    return S_OK;
}

static HRESULT WINAPI admin_UninstallFilter(IFWXFilterAdmin *iface, REFCLSID clsid, FwxScope scope)
{
    return FX_NOTIMPL("IFWXFilterAdmin", "UninstallFilter");
}

static HRESULT WINAPI admin_RegisterProtocolForFilter(IFWXFilterAdmin *iface, REFCLSID clsid,
                                                      REFGUID protocol, LPCSTR name,
                                                      LPCSTR description, LPCSTR reserved,
                                                      FwxScope scope)
{
    char text[39];
    if (!record || !protocol)
        return E_INVALIDARG;
    if (record->nprotocols == (int)(sizeof(record->protocols) / sizeof(record->protocols[0])))
        return E_OUTOFMEMORY;
    int n = record->nprotocols;
    if (!guard_copy(&record->protocols[n].g, protocol, sizeof(GUID)))
        return E_INVALIDARG;
    for (int i = 0; i < n; i++)
        if (IsEqualGUID(&record->protocols[i].g, &record->protocols[n].g))
            return HRESULT_FROM_WIN32(ERROR_ALREADY_EXISTS);
    copy_str(record->protocols[n].name, sizeof(record->protocols[n].name), name);
    copy_str(record->protocols[n].description, sizeof(record->protocols[n].description), description);
    record->nprotocols++;
    fx_log(FX_LOG_NOTICE, "install: RegisterProtocolForFilter %s \"%s\"",
           fx_guid_str(&record->protocols[n].g, text), record->protocols[n].name);
    return S_OK;
}

static HRESULT WINAPI admin_UnregisterProtocolForFilter(IFWXFilterAdmin *iface, REFCLSID clsid,
                                                        REFGUID protocol, FwxScope scope)
{
    return FX_NOTIMPL("IFWXFilterAdmin", "UnregisterProtocolForFilter");
}

static HRESULT WINAPI admin_GetFilterParameterSet(IFWXFilterAdmin *iface, REFCLSID clsid,
                                                  FwxScope scope, IUnknown **out)
{
    if (out)
        *out = NULL;
    return FX_NOTIMPL("IFWXFilterAdmin", "GetFilterParameterSet");
}

static HRESULT WINAPI admin_GetProtocol(IFWXFilterAdmin *iface, REFGUID protocol, FwxScope scope,
                                        IUnknown **out)
{
    if (out)
        *out = NULL;
    return FX_NOTIMPL("IFWXFilterAdmin", "GetProtocol");
}

FX_HOST_VTBL(IFWXFilterAdmin, admin_vtbl) = {
    {
        admin_QueryInterface,
        admin_AddRef,
        admin_Release,
        admin_InstallFilter,
        admin_UninstallFilter,
        admin_RegisterProtocolForFilter,
        admin_UnregisterProtocolForFilter,
        admin_GetFilterParameterSet,
        admin_GetProtocol,
    },
    FX_TRAPS(IFWXFilterAdmin)
};

/* ------------------------------------------------------------ class object */

static HRESULT WINAPI cf_QueryInterface(IClassFactory *iface, REFIID riid, void **out)
{
    if (IsEqualIID(riid, &IID_IUnknown) || IsEqualIID(riid, &IID_IClassFactory)) {
        *out = iface;
        return S_OK;
    }
    *out = NULL;
    return E_NOINTERFACE;
}

static ULONG WINAPI cf_AddRef(IClassFactory *iface) { return 2; }
static ULONG WINAPI cf_Release(IClassFactory *iface) { return 1; }

static HRESULT WINAPI cf_CreateInstance(IClassFactory *iface, IUnknown *outer, REFIID riid, void **out)
{
    struct admin *a;
    HRESULT hr;
    if (!out)
        return E_POINTER;
    *out = NULL;
    if (outer)
        return CLASS_E_NOAGGREGATION;
    if (!(a = calloc(1, sizeof(*a))))
        return E_OUTOFMEMORY;
    a->IFWXFilterAdmin_iface.lpVtbl = &admin_vtbl.vtbl;
    a->ref = 1;
    hr = admin_QueryInterface(&a->IFWXFilterAdmin_iface, riid, out);
    admin_Release(&a->IFWXFilterAdmin_iface);
    return hr;
}

static HRESULT WINAPI cf_LockServer(IClassFactory *iface, BOOL lock) { return S_OK; }

static const IClassFactoryVtbl cf_vtbl = {
    cf_QueryInterface, cf_AddRef, cf_Release, cf_CreateInstance, cf_LockServer,
};
static IClassFactory admin_factory = { &cf_vtbl };

/* ------------------------------------------------------------ install */

/* The section name: the installed name's letters, digits, '-' and '_', else the
 * DLL's base name. */
static void section_name(const char *from, const char *dll, char *out, size_t len)
{
    size_t n = 0;
    const char *base = strrchr(dll, '/');
    for (const char *p = from; *p && n + 1 < len; p++)
        if (isalnum((unsigned char)*p) || *p == '-' || *p == '_')
            out[n++] = (char)tolower((unsigned char)*p);
    out[n] = 0;
    if (n)
        return;
    base = base ? base + 1 : dll;
    for (const char *p = base; *p && *p != '.' && n + 1 < len; p++)
        out[n++] = *p;
    out[n] = 0;
}

int install_filter(const char *dll, FILE *out, char *err, size_t errlen)
{
    typedef HRESULT (WINAPI *reg_fn)(void);
    typedef HRESULT (WINAPI *install_fn)(BOOL, LPCWSTR);
    struct install_record rec;
    struct fx_filter f;
    WCHAR *wpath = NULL;
    DWORD cookie = 0;
    HRESULT hr;
    char text[39], name[64], abs[4096];
    int rc = -1;
    const char *how;

    memset(&rec, 0, sizeof(rec));
    memset(&f, 0, sizeof(f));
    if (!realpath(dll, abs))
        snprintf(abs, sizeof(abs), "%s", dll);
    f.path = f.name = abs;
    wpath = fx_dos_path(abs);
    f.module = wpath ? LoadLibraryExW(wpath, NULL, LOAD_WITH_ALTERED_SEARCH_PATH) : NULL;
    if (!f.module) {
        snprintf(err, errlen, "%s: LoadLibrary failed (error %lu)", abs, (unsigned long)GetLastError());
        goto out;
    }
    hr = CoRegisterClassObject(&CLSID_FWXFilterAdmin, (IUnknown *)&admin_factory,
                               CLSCTX_INPROC_SERVER | CLSCTX_LOCAL_SERVER, REGCLS_MULTIPLEUSE, &cookie);
    if (FAILED(hr)) {
        snprintf(err, errlen, "cannot register the IFWXFilterAdmin class object: 0x%08lx",
                 (unsigned long)(ULONG)hr);
        goto out;
    }
    record = &rec;
    reg_fn reg = (reg_fn)GetProcAddress(f.module, "DllRegisterServer");
    install_fn inst = (install_fn)GetProcAddress(f.module, "DllInstall");
    if (reg) {
        how = "DllRegisterServer";
        GUARDED_CALL(hr, &f, "DLL", "DllRegisterServer", reg());
    } else if (inst) {
        how = "DllInstall";
        GUARDED_CALL(hr, &f, "DLL", "DllInstall", inst(TRUE, L""));
    } else {
        how = NULL;
        hr = S_OK;
    }
    record = NULL;
    CoRevokeClassObject(cookie);
    if (how && FAILED(hr)) {
        snprintf(err, errlen, "%s: %s failed: 0x%08lx", abs, how, (unsigned long)(ULONG)hr);
        goto out;
    }
    if (!rec.installed) {
        /* No InstallFilter: the class DllGetClassObject serves, as fx_filter_load finds it. */
        GUID classes[4];
        if (fx_filter_probe_classes(&f, classes, 4) < 1) {
            snprintf(err, errlen, "%s: %s did not call IFWXFilterAdmin::InstallFilter and "
                     "DllGetClassObject serves none of the GUIDs in its data", abs,
                     how ? how : "(no DllRegisterServer or DllInstall)");
            goto out;
        }
        rec.clsid = classes[0];
    }
    section_name(rec.name, abs, name, sizeof(name));
    fprintf(out, "; written by fwxhost --install %s (%s%s)\n", abs, how ? how : "no registration export",
            rec.installed ? ", IFWXFilterAdmin::InstallFilter" : "; the class found by probing");
    if (rec.installed)
        fprintf(out, "; %s: %s; vendor %s, version %s, scope %ld\n", rec.name, rec.description,
                rec.vendor, rec.version, rec.scope);
    for (int i = 0; i < rec.nprotocols; i++)
        fprintf(out, "; protocol %s \"%s\": %s\n", fx_guid_str(&rec.protocols[i].g, text),
                rec.protocols[i].name, rec.protocols[i].description);
    fprintf(out, "[filter %s]\npath = %s\nclsid = %s\n", name, abs, fx_guid_str(&rec.clsid, text));
    rc = 0;
out:
    if (f.module)
        FreeLibrary(f.module);
    HeapFree(GetProcessHeap(), 0, wpath);
    return rc;
}
