/*
 * loader.c — loading a filter DLL and driving its filter object through
 * start-up and shut-down (reference §2.3, §2.10). See loader.h.
 *
 * All calls into the DLL go through GUARDED_CALL. Errors name the file and
 * the reason in one line, because that is what an operator with a broken
 * config needs to read.
 */
#include "fwxhost.h" /* first: Winsock before any libc header */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fxpe.h"
#include "guard.h"
#include "loader.h"
#include "hostobj.h"


typedef HRESULT (WINAPI *get_class_object_fn)(REFCLSID, REFIID, void **);

const char *fx_filter_name(const struct fx_filter *f)
{
    if (!f)
        return "(unknown)";
    return f->name ? f->name : f->path ? f->path : "(unnamed)";
}

static const char *hr_text(HRESULT hr, char *buf, size_t len)
{
    switch (hr) {
    case CLASS_E_CLASSNOTAVAILABLE: return "CLASS_E_CLASSNOTAVAILABLE";
    case E_NOINTERFACE: return "E_NOINTERFACE";
    case E_OUTOFMEMORY: return "E_OUTOFMEMORY";
    case E_INVALIDARG: return "E_INVALIDARG";
    case E_FAIL: return "E_FAIL";
    case E_NOTIMPL: return "E_NOTIMPL";
    case E_POINTER: return "E_POINTER (no usable object)";
    case CLASS_E_NOAGGREGATION: return "CLASS_E_NOAGGREGATION";
    case FX_E_FILTER_FAULT: return "the filter faulted";
    }
    snprintf(buf, len, "0x%08lx", (unsigned long)hr);
    return buf;
}

/* Wine maps a Linux path to a DOS one ("Z:\..."); LoadLibrary needs that. */
static WCHAR *dos_path(const char *unix_path);

WCHAR *fx_dos_path(const char *unix_path)
{
    return dos_path(unix_path);
}

static WCHAR *dos_path(const char *unix_path)
{
    static WCHAR *(CDECL *to_dos)(const char *);
    if (!to_dos)
        to_dos = (void *)GetProcAddress(GetModuleHandleA("kernel32.dll"), "wine_get_dos_file_name");
    if (to_dos)
        return to_dos(unix_path);
    /* Not under Wine?  Hand the path over as it is. */
    int n = MultiByteToWideChar(CP_UTF8, 0, unix_path, -1, NULL, 0);
    WCHAR *w = HeapAlloc(GetProcessHeap(), 0, n * sizeof(WCHAR));
    if (w)
        MultiByteToWideChar(CP_UTF8, 0, unix_path, -1, w, n);
    return w;
}

static const char *win32_error_text(DWORD code, char *buf, size_t len)
{
    switch (code) {
    case ERROR_MOD_NOT_FOUND: return "a DLL it depends on was not found (ERROR_MOD_NOT_FOUND)";
    case ERROR_BAD_EXE_FORMAT: return "not a valid Win32 DLL for this architecture (ERROR_BAD_EXE_FORMAT)";
    case ERROR_DLL_INIT_FAILED: return "its DllMain failed (ERROR_DLL_INIT_FAILED)";
    case ERROR_FILE_NOT_FOUND: return "file not found";
    case ERROR_ACCESS_DENIED: return "access denied";
    }
    snprintf(buf, len, "Win32 error %lu", (unsigned long)code);
    return buf;
}

static HRESULT get_factory(struct fx_filter *f, get_class_object_fn fn, const GUID *clsid,
                           IClassFactory **factory)
{
    HRESULT hr;
    *factory = NULL;
    GUARDED_CALL(hr, f, "DLL", "DllGetClassObject",
                 fn(clsid, &IID_IClassFactory, (void **)factory));
    if (SUCCEEDED(hr) && !*factory)
        hr = E_POINTER;
    return hr;
}

static void release_factory(struct fx_filter *f, IClassFactory *factory)
{
    GUARDED_VOID(f, "IClassFactory", "Release", IClassFactory_Release(factory));
}

int fx_filter_probe_classes(struct fx_filter *f, GUID *out, int max)
{
    const BYTE *base = (const BYTE *)f->module;
    const IMAGE_DOS_HEADER *dos = (const IMAGE_DOS_HEADER *)base;
    const IMAGE_NT_HEADERS *nt;
    const IMAGE_SECTION_HEADER *sec;
    get_class_object_fn fn;
    int found = 0;

    if (!base || !(fn = (get_class_object_fn)GetProcAddress(f->module, "DllGetClassObject")))
        return 0;
    nt = (const IMAGE_NT_HEADERS *)(base + dos->e_lfanew);
    sec = IMAGE_FIRST_SECTION(nt);
    for (unsigned i = 0; i < nt->FileHeader.NumberOfSections; i++, sec++) {
        DWORD ch = sec->Characteristics;
        if ((ch & IMAGE_SCN_MEM_EXECUTE) || !(ch & IMAGE_SCN_CNT_INITIALIZED_DATA))
            continue;
        DWORD size = sec->Misc.VirtualSize < sec->SizeOfRawData ? sec->Misc.VirtualSize
                                                                : sec->SizeOfRawData;
        const BYTE *p = base + sec->VirtualAddress;
        for (DWORD off = 0; off + sizeof(GUID) <= size; off += 4) {
            GUID g;
            IClassFactory *factory;
            memcpy(&g, p + off, sizeof(g));
            /* Skip the obvious non-GUIDs: zeros, and the variant bits every
             * RFC 4122 / Microsoft GUID carries in Data4[0]. */
            if (!g.Data1 && !g.Data2 && !g.Data3)
                continue;
            if ((g.Data4[0] & 0x80) != 0x80)
                continue;
            if (FAILED(get_factory(f, fn, &g, &factory)))
                continue;
            release_factory(f, factory);
            int dup = 0;
            for (int k = 0; k < found && k < max; k++)
                dup |= IsEqualGUID(&out[k], &g);
            if (dup)
                continue;
            if (found < max)
                out[found] = g;
            found++;
        }
    }
    return found;
}

int fx_filter_load(struct fx_filter *f, GUID *classes, int max_classes, int *n_classes,
                   char *err, size_t errlen)
{
    fx_pe_info pe;
    char pe_err[256], tmp[64], text[39];
    WCHAR *wpath = NULL;
    get_class_object_fn fn;
    IClassFactory *factory = NULL;
    int rc = -1, has_export = 0;
    HRESULT hr;

    GUID local[16];
    if (!classes || max_classes <= 0) {
        classes = local;
        max_classes = 16;
    }
    if (n_classes)
        *n_classes = 0;
    /* Our own PE reader gives precise reasons that LoadLibrary does not. */
    if (fx_pe_read_file(f->path, &pe, pe_err, sizeof(pe_err)) != 0) {
        snprintf(err, errlen, "%s", pe_err);
        return -1;
    }
    for (size_t i = 0; i < pe.nexports; i++)
        has_export |= pe.exports[i].name && !strcmp(pe.exports[i].name, "DllGetClassObject");
    unsigned machine = pe.machine;
    if (f->profile == FX_PROFILE_AUTO) {
        /* ABI-303: PE32 filters are ISA 2000's, PE32+ ones ISA 2004/2006/TMG's. */
        f->profile = pe.is_pe32plus ? FX_PROFILE_TMG : FX_PROFILE_ISA2000;
        f->profile_auto = TRUE;
    }
    fx_pe_info_free(&pe);
    if (!has_export) {
        snprintf(err, errlen, "%s: does not export DllGetClassObject, so it is not a COM filter DLL",
                 f->path);
        return -1;
    }
    if (machine != (sizeof(void *) == 8 ? 0x8664 : 0x14c)) {
        snprintf(err, errlen, "%s: is a %s DLL but this host process is %s", f->path,
                 fx_pe_machine_name(machine), sizeof(void *) == 8 ? "x64" : "x86");
        return -1;
    }
    if (!(wpath = dos_path(f->path))) {
        snprintf(err, errlen, "%s: cannot map the path for Wine", f->path);
        return -1;
    }
    f->module = LoadLibraryExW(wpath, NULL, LOAD_WITH_ALTERED_SEARCH_PATH);
    if (!f->module) {
        snprintf(err, errlen, "%s: LoadLibrary failed: %s", f->path,
                 win32_error_text(GetLastError(), tmp, sizeof(tmp)));
        goto out;
    }
    fn = (get_class_object_fn)GetProcAddress(f->module, "DllGetClassObject");
    if (!fn) {
        snprintf(err, errlen, "%s: does not export DllGetClassObject", f->path);
        goto out;
    }
    int found = fx_filter_probe_classes(f, classes, max_classes);
    if (n_classes)
        *n_classes = found;
    if (!f->has_clsid) {
        if (found == 0) {
            snprintf(err, errlen, "%s: DllGetClassObject serves none of the GUIDs in the DLL's data; "
                     "name the CLSID (DLL=CLSID or clsid= in the config)", f->path);
            goto out;
        }
        f->clsid = classes[0];
        f->has_clsid = TRUE;
    }
    hr = get_factory(f, fn, &f->clsid, &factory);
    if (FAILED(hr)) {
        snprintf(err, errlen, "%s: CLSID %s is not served by this DLL (DllGetClassObject: %s)",
                 f->path, fx_guid_str(&f->clsid, text), hr_text(hr, tmp, sizeof(tmp)));
        goto out;
    }
    GUARDED_CALL(hr, f, "IClassFactory", "CreateInstance",
                 IClassFactory_CreateInstance(factory, NULL, &IID_IFWXFilter, (void **)&f->filter));
    if (SUCCEEDED(hr) && (!f->filter || !guard_check_iface(f->filter, 6)))
        hr = E_POINTER;     /* NULL, or not an object the host could call */
    if (FAILED(hr)) {
        f->filter = NULL;
        snprintf(err, errlen, "%s: class %s does not give an IFWXFilter (CreateInstance: %s)",
                 f->path, fx_guid_str(&f->clsid, text), hr_text(hr, tmp, sizeof(tmp)));
        goto out;
    }
    rc = 0;
out:
    if (factory)
        release_factory(f, factory);
    if (rc != 0 && f->module) {
        FreeLibrary(f->module);
        f->module = NULL;
        guard_forget_code();
    }
    HeapFree(GetProcessHeap(), 0, wpath);
    return rc;
}

int fx_filter_init(struct fx_filter *f, IFWXFirewall *firewall, HRESULT *init_hr,
                   char *err, size_t errlen)
{
    PFwxFilterHookEvents hooks = NULL;
    HRESULT hr;
    int rc = 0;
    /* tmg: the host owns the structure and the filter fills it (reference 4);
     * zeroed, and as large as the ISA 2000 one, which starts the same way. */
    FwxFilterHookEvents tmg_hooks;
    memset(&tmg_hooks, 0, sizeof(tmg_hooks));

    if (f->profile == FX_PROFILE_TMG) {
        f->profile_tentative = f->profile_auto;
        GUARDED_CALL(hr, f, "IFWXFilter", "FilterInit",
                     IFWXFilter_FilterInit(f->filter, firewall, (PFwxFilterHookEvents *)&tmg_hooks));
        f->profile_tentative = FALSE;
        if (hr != FX_E_FILTER_FAULT && !FAILED(hr)) {
            /* An ISA 2000-style filter stores a pointer where a TMG one writes
             * event bits: the value then has bits no event mask has, or (a low
             * address) no source bit, which every TMG mask with events carries;
             * on x64 the pointer's upper half lands in dwNumPortRanges. */
            const DWORD valid = 0x3ff | 0xC0000000 | 0x03000000;
            DWORD ev = tmg_hooks.dwGlobalEvents;
            BOOL tmg_like = !(ev & ~valid) && (!ev || (ev & 0xC3000000)) &&
                            !tmg_hooks.dwNumPortRanges && !tmg_hooks.PortRangeEvents;
            if (tmg_like) {
                netsock_settle_profile(f);
                memset(&f->hooks, 0, sizeof(f->hooks));
                f->hooks.dwGlobalEvents = tmg_hooks.dwGlobalEvents;
                f->ranges = NULL;
                f->initialized = TRUE;
                if (init_hr)
                    *init_hr = hr;
                return 0;
            }
            memcpy(&hooks, &tmg_hooks, sizeof(hooks));
            if (!f->profile_auto) {
                if (init_hr)
                    *init_hr = hr;
                f->initialized = TRUE;
                snprintf(err, errlen, "%s: profile tmg, but FilterInit left 0x%08lx in the hook "
                         "events it should fill (a pointer, as ISA 2000 filters return?); "
                         "try profile = isa2000", f->path, (unsigned long)tmg_hooks.dwGlobalEvents);
                return -1;
            }
            /* Info, not notice: 64-bit builds of ISA 2000 sources are common. */
            fx_log(FX_LOG_INFO, "filter %s: FilterInit returned a hook-event pointer, the ISA "
                   "2000 way: profile isa2000 instead of tmg (PE32+)", fx_filter_name(f));
            f->profile = FX_PROFILE_ISA2000;
            netsock_settle_profile(f);
        }
    } else {
        GUARDED_CALL(hr, f, "IFWXFilter", "FilterInit", IFWXFilter_FilterInit(f->filter, firewall, &hooks));
    }
    if (init_hr)
        *init_hr = hr;
    f->initialized = hr != FX_E_FILTER_FAULT;
    memset(&f->hooks, 0, sizeof(f->hooks));
    f->ranges = NULL;
    if (hr == FX_E_FILTER_FAULT) {
        snprintf(err, errlen, "%s: FilterInit faulted", f->path);
        return -1;
    }
    if (FAILED(hr)) {
        /* The SDK asks filters to return S_OK even on failure; one that
         * does not is disabled, not fatal for the host (reference 8.6). */
        fx_log(FX_LOG_WARN, "filter %s: FilterInit returned 0x%08lx; it will receive no events",
               fx_filter_name(f), (unsigned long)hr);
        return 0;
    }
    if (!hooks)
        return 0;
    /* The structure may be a member of the filter object: copy, never free
     * (reference 3.1). Reading it may fault if the pointer is garbage. */
    struct guard_frame gf_;
    guard_begin(&gf_, f, "IFWXFilter", "FilterInit (reading hook events)");
    __TRY {
        f->hooks = *hooks;
        DWORD n = hooks->PortRangeEvents ? hooks->dwNumPortRanges : 0;
        if (n > 65536) {
            rc = -2;
        } else if (n) {
            f->ranges = calloc(n, sizeof(*f->ranges));
            if (f->ranges)
                memcpy(f->ranges, hooks->PortRangeEvents, n * sizeof(*f->ranges));
            else
                n = 0;
        }
        f->hooks.dwNumPortRanges = n;
        f->hooks.PortRangeEvents = f->ranges;
    } __EXCEPT(guard_exception_filter) {
        guard_fault(&gf_);
        rc = -1;
    } __ENDTRY
    guard_end(&gf_);
    if (rc == -2) {
        snprintf(err, errlen, "%s: FilterInit returned %lu port ranges; refusing a corrupt structure",
                 f->path, (unsigned long)hooks->dwNumPortRanges);
        memset(&f->hooks, 0, sizeof(f->hooks));
        return -1;
    }
    if (rc) {
        snprintf(err, errlen, "%s: FilterInit returned an unreadable hook-event pointer %p",
                 f->path, (void *)hooks);
        memset(&f->hooks, 0, sizeof(f->hooks));
        return -1;
    }
    return 0;
}

void fx_filter_unload(struct fx_filter *f)
{
    HRESULT hr;
    if (f->filter) {
        if (f->initialized) {
            GUARDED_CALL(hr, f, "IFWXFilter", "FilterShutdown", IFWXFilter_FilterShutdown(f->filter));
            if (hr != S_OK)
                fx_log(FX_LOG_WARN, "filter %s: FilterShutdown returned 0x%08lx", fx_filter_name(f),
                       (unsigned long)hr);
        }
        GUARDED_VOID(f, "IFWXFilter", "Release", IFWXFilter_Release(f->filter));
        f->filter = NULL;
    }
    if (f->module) {
        FreeLibrary(f->module);
        f->module = NULL;
        guard_forget_code();
    }
    free(f->ranges);
    f->ranges = NULL;
    f->initialized = FALSE;
}

const char *fx_event_mask_str(DWORD mask, char *buf, size_t len)
{
    static const struct { DWORD bit; const char *name; } names[] = {
        { fwx_Connect_Tcp, "fwx_Connect_Tcp" },
        { fwx_Udp_Destination, "fwx_Udp_Destination" },
        { fwx_Bind_Tcp, "fwx_Bind_Tcp" },
        { fwx_Bind_Udp, "fwx_Bind_Udp" },
        { fwx_Listen, "fwx_Listen" },
        { fwx_AcceptedConnection, "fwx_AcceptedConnection" },
        { fwx_GetHostByName, "fwx_GetHostByName" },
        { fwx_GetHostByAddr, "fwx_GetHostByAddr" },
        { fwx_ConnectionTerminating, "fwx_ConnectionTerminating" },
        { fwx_EstablishedConnection, "fwx_EstablishedConnection" },
        { 0x40000000, "fwxSourceWSP" },
        { 0x80000000, "fwxSourceNAT" },
    };
    size_t used = 0;
    DWORD rest = mask;

    buf[0] = 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (!(mask & names[i].bit))
            continue;
        rest &= ~names[i].bit;
        used += snprintf(buf + used, used < len ? len - used : 0, "%s%s", used ? "|" : "",
                         names[i].name);
    }
    if (rest)
        used += snprintf(buf + used, used < len ? len - used : 0, "%s0x%08lx", used ? "|" : "",
                         (unsigned long)rest);
    if (!used)
        snprintf(buf, len, "none");
    return buf;
}
