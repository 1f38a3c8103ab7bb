/*
 * loader.h — one loaded filter DLL: its module, its filter object, the
 * hook events it registered, and the bookkeeping the host keeps about it
 * (faults). Owns loading (LoadLibrary -> DllGetClassObject ->
 * IClassFactory::CreateInstance), FilterInit, FilterShutdown and unload.
 */
#ifndef FWX_LOADER_H
#define FWX_LOADER_H

#include "fwxhost.h"
#include "fxconf.h"

struct fx_filter {
    char *name;                    /* from the config, or the DLL's base name */
    char *path;                    /* as given (Linux path) */
    GUID clsid;
    BOOL has_clsid;                /* FALSE until given or discovered */
    HMODULE module;
    IFWXFilter *filter;
    BOOL initialized;              /* FilterInit returned */
    FwxFilterHookEvents hooks;     /* our copy of FilterInit's hook events */
    FwxPortRangeEvents *ranges;    /* our copy of its port ranges */
    LONG faults;                   /* exceptions caught in this filter's code */
    LONG sessions;                 /* AttachToSession that gave a session filter (stats.c) */
    LONG denials;                  /* connections or binds it denied first (stats.c) */
    BOOL disabled;                 /* gets no more events */
    /* Host objects this filter holds right now (stats.c): host buffers
     * created by its calls or for its Recv(NULL), network sockets it
     * created, sessions it is attached to. A count that only grows names
     * a filter that leaks. */
    LONG live_buffers;
    LONG live_sockets;
    LONG live_sessions;
    /* Host buffers it still referenced when their connection ended, whose
     * memory the host took back (HOST-900): a total, not a gauge. */
    LONG reclaimed_buffers;
    /* ABI profile (docs ABI-303): set before fx_filter_load (AUTO: by PE type);
     * fx_filter_load resolves AUTO, fx_filter_init may settle it. */
    enum fx_profile profile;
    BOOL profile_auto;             /* chosen by PE type, not by the config */
    BOOL profile_tentative;        /* auto tmg during FilterInit: not settled yet */
};

/* Filter name used in logs when the caller has no filter at hand. */
const char *fx_filter_name(const struct fx_filter *f);

/* LoadLibrary and resolve the class: with f->has_clsid the CLSID must be
 * served by the DLL; without it, the DLL's data sections are probed for a
 * class it serves (first match wins; all matches go to *classes).
 * Returns 0, or -1 with one line in err naming the file and the reason. */
int fx_filter_load(struct fx_filter *f, GUID *classes, int max_classes, int *n_classes,
                   char *err, size_t errlen);

/* IClassFactory::CreateInstance(IID_IFWXFilter) and FilterInit; copies
 * the hook events. 0 or -1 with err. */
int fx_filter_init(struct fx_filter *f, IFWXFirewall *firewall, HRESULT *init_hr,
                   char *err, size_t errlen);

/* FilterShutdown (if initialized), Release, FreeLibrary. */
void fx_filter_unload(struct fx_filter *f);

/* Probes every 4-byte-aligned 16-byte value in the module's initialized,
 * non-executable sections with DllGetClassObject(value, IID_IClassFactory). */
int fx_filter_probe_classes(struct fx_filter *f, GUID *out, int max);

/* The DOS path Wine gives a Linux path (HeapFree it), for LoadLibrary and
 * LoadTypeLibEx. */
WCHAR *fx_dos_path(const char *unix_path);

/* Text form of an event mask: "fwx_Connect_Tcp|fwx_AcceptedConnection|fwxSourceWSP|...". */
const char *fx_event_mask_str(DWORD mask, char *buf, size_t len);

#endif /* FWX_LOADER_H */
