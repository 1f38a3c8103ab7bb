/*
 * discover.c — `fwxinfo --discover DLL`: what IIDs and CLSIDs a filter DLL was built
 * with (docs ABI-302), printed as an [abi] override file the host reads as it is.
 *
 *   CLSIDs       coclasses of the DLL's type library (LoadTypeLibEx), GUIDs in its ATL
 *                REGISTRY resources, and every GUID-shaped constant in its data that
 *                DllGetClassObject serves; a class counts only if DllGetClassObject
 *                serves it.
 *   answered     each class object (CreateInstance(IID_IUnknown)) is asked with
 *                QueryInterface for every GUID-shaped constant in the DLL's data; ATL
 *                interface maps (_ATL_INTMAP_ENTRY arrays) are found in the data and
 *                checked against the live object. The one non-standard IID the filter
 *                class answers is IID_IFWXFilter; type-library interfaces named IFWX*
 *                name themselves.
 *   asked        a dry run (CreateInstance with the found IID_IFWXFilter, FilterInit with
 *                our firewall, AttachToSession with a session of ours) records every IID
 *                the filter asks our objects for and we do not know: the first unknown
 *                IID asked of our IFWXFoo object is taken as IID_IFWXFoo, applied, and
 *                the dry run repeated (up to 8 rounds), so a filter that gives up on a
 *                failed QueryInterface gets further each round. The session filter's IID
 *                is the candidate whose QueryInterface returns the pointer
 *                AttachToSession gave.
 *
 * Nothing here is trusted: every call into the DLL is guarded.
 */
#include "fwxhost.h" /* first: Winsock before any libc header */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <oleauto.h>
#include "discover.h"
#include "fxpe.h"
#include "guard.h"
#include "hostobj.h"
#include "loader.h"

typedef HRESULT (WINAPI *get_class_object_fn)(REFCLSID, REFIID, void **);

#define MAX_CANDS 8192
#define MAX_CLASSES 16
#define MAX_FOUND 64
#define MAX_MAPS 16
#define MAX_MAP_ENTRIES 16

struct found {
    char name[48];          /* IID_IFWXFilter ..., or "" when not identified */
    GUID g;
    char how[200];
};

struct clsid {
    GUID g;
    char name[64];          /* from the type library */
    unsigned from;          /* FROM_* */
};
enum { FROM_TLB = 1, FROM_REGISTRY = 2, FROM_PROBE = 4 };

struct atl_map {
    DWORD rva;
    int n;
    GUID iid[MAX_MAP_ENTRIES];
    ULONG_PTR dw[MAX_MAP_ENTRIES];
};

struct discovery {
    struct fx_filter f;
    get_class_object_fn dgco;
    GUID cands[MAX_CANDS];
    int ncands;
    struct clsid classes[MAX_CLASSES];
    int nclasses;
    struct found found[MAX_FOUND];
    int nfound;
    struct atl_map maps[MAX_MAPS];
    int nmaps;
    GUID libid;
    BOOL has_libid;
    /* dry run: unknown IIDs asked of our objects this round */
    struct { char object[32]; GUID g; } asked[32];
    int nasked;
};

static struct discovery *active;   /* for the unknown-IID hook: one discovery at a time */

/* ------------------------------------------------------------ helpers */

static BOOL guid_shaped(const GUID *g)
{
    /* Zeros and all-ones are not GUIDs. RFC 4122 GUIDs carry variant 10x in
     * Data4[0] and a version 1-5 in Data3's top nibble; Microsoft's own (COM's
     * IIDs) variant 110. */
    unsigned version = g->Data3 >> 12;
    if (!g->Data1 && !g->Data2 && !g->Data3)
        return FALSE;
    if (g->Data1 == 0xffffffff && g->Data2 == 0xffff)
        return FALSE;
    if ((g->Data4[0] & 0xe0) == 0xc0)
        return TRUE;
    return (g->Data4[0] & 0xc0) == 0x80 && version >= 1 && version <= 5;
}

static BOOL is_standard(const GUID *g)
{
    static const GUID *const std[] = { &IID_IUnknown, &IID_IClassFactory, &IID_IDispatch,
                                       &IID_ISupportErrorInfo, &IID_IMarshal,
                                       &IID_IPersist };
    for (size_t i = 0; i < sizeof(std) / sizeof(std[0]); i++)
        if (IsEqualGUID(g, std[i]))
            return TRUE;
    return FALSE;
}

static struct found *find_name(struct discovery *d, const char *name)
{
    for (int i = 0; i < d->nfound; i++)
        if (!strcmp(d->found[i].name, name))
            return &d->found[i];
    return NULL;
}

static struct found *find_guid(struct discovery *d, const GUID *g)
{
    for (int i = 0; i < d->nfound; i++)
        if (IsEqualGUID(&d->found[i].g, g))
            return &d->found[i];
    return NULL;
}

/* Records name = g unless name or g is known already. */
static struct found *note(struct discovery *d, const char *name, const GUID *g, const char *how)
{
    struct found *e = find_guid(d, g);
    if (e && (!*e->name || !strcmp(e->name, name))) {
        if (!*e->name) {
            snprintf(e->name, sizeof(e->name), "%s", name);
            snprintf(e->how, sizeof(e->how), "%s", how);
        }
        return e;
    }
    if (e || (*name && find_name(d, name)) || d->nfound == MAX_FOUND)
        return NULL;
    e = &d->found[d->nfound++];
    snprintf(e->name, sizeof(e->name), "%s", name);
    e->g = *g;
    snprintf(e->how, sizeof(e->how), "%s", how);
    return e;
}

static struct clsid *add_class(struct discovery *d, const GUID *g, unsigned from, const char *name)
{
    for (int i = 0; i < d->nclasses; i++)
        if (IsEqualGUID(&d->classes[i].g, g)) {
            d->classes[i].from |= from;
            if (name && !*d->classes[i].name)
                snprintf(d->classes[i].name, sizeof(d->classes[i].name), "%s", name);
            return &d->classes[i];
        }
    if (d->nclasses == MAX_CLASSES)
        return NULL;
    struct clsid *c = &d->classes[d->nclasses++];
    c->g = *g;
    c->from = from;
    snprintf(c->name, sizeof(c->name), "%s", name ? name : "");
    return c;
}

static BOOL served(struct discovery *d, const GUID *g)
{
    IClassFactory *factory = NULL;
    HRESULT hr;
    GUARDED_CALL(hr, &d->f, "DLL", "DllGetClassObject",
                 d->dgco(g, &IID_IClassFactory, (void **)&factory));
    if (FAILED(hr) || !factory)
        return FALSE;
    GUARDED_VOID(&d->f, "IClassFactory", "Release", IClassFactory_Release(factory));
    return TRUE;
}

static const IMAGE_NT_HEADERS *nt_headers(HMODULE m)
{
    const BYTE *base = (const BYTE *)m;
    return (const IMAGE_NT_HEADERS *)(base + ((const IMAGE_DOS_HEADER *)base)->e_lfanew);
}

/* Every GUID-shaped 16-byte value at a 4-byte boundary of the initialized data. */
static void collect_candidates(struct discovery *d)
{
    const BYTE *base = (const BYTE *)d->f.module;
    const IMAGE_NT_HEADERS *nt = nt_headers(d->f.module);
    const IMAGE_SECTION_HEADER *sec = IMAGE_FIRST_SECTION(nt);

    for (unsigned i = 0; i < nt->FileHeader.NumberOfSections; i++, sec++) {
        DWORD ch = sec->Characteristics;
        if ((ch & IMAGE_SCN_MEM_EXECUTE) || !(ch & IMAGE_SCN_CNT_INITIALIZED_DATA))
            continue;
        DWORD size = sec->Misc.VirtualSize < sec->SizeOfRawData ? sec->Misc.VirtualSize
                                                                : sec->SizeOfRawData;
        for (DWORD off = 0; off + sizeof(GUID) <= size && d->ncands < MAX_CANDS; off += 4) {
            GUID g;
            int dup = 0;
            memcpy(&g, base + sec->VirtualAddress + off, sizeof(g));
            if (!guid_shaped(&g) || is_standard(&g))
                continue;
            for (int k = 0; k < d->ncands && !dup; k++)
                dup = IsEqualGUID(&d->cands[k], &g);
            if (!dup)
                d->cands[d->ncands++] = g;
        }
    }
}

/* ------------------------------------------------------------ CLSIDs */

static void from_typelib(struct discovery *d)
{
    WCHAR *wpath = fx_dos_path(d->f.path);
    ITypeLib *tl = NULL;
    HRESULT hr = wpath ? LoadTypeLibEx(wpath, REGKIND_NONE, &tl) : E_OUTOFMEMORY;
    char text[39];

    HeapFree(GetProcessHeap(), 0, wpath);
    if (FAILED(hr) || !tl) {
        printf("; type library: none (LoadTypeLibEx 0x%08lx)\n", (unsigned long)(ULONG)hr);
        return;
    }
    TLIBATTR *la;
    if (SUCCEEDED(ITypeLib_GetLibAttr(tl, &la))) {
        d->libid = la->guid;
        d->has_libid = TRUE;
        printf("; type library: LIBID %s\n", fx_guid_str(&la->guid, text));
        ITypeLib_ReleaseTLibAttr(tl, la);
    }
    UINT n = ITypeLib_GetTypeInfoCount(tl);
    for (UINT i = 0; i < n; i++) {
        ITypeInfo *ti;
        TYPEATTR *ta;
        BSTR bname = NULL;
        char name[64] = "";
        if (FAILED(ITypeLib_GetTypeInfo(tl, i, &ti)))
            continue;
        if (SUCCEEDED(ITypeLib_GetDocumentation(tl, i, &bname, NULL, NULL, NULL)) && bname) {
            WideCharToMultiByte(CP_UTF8, 0, bname, -1, name, sizeof(name), NULL, NULL);
            SysFreeString(bname);
        }
        if (SUCCEEDED(ITypeInfo_GetTypeAttr(ti, &ta))) {
            if (ta->typekind == TKIND_COCLASS) {
                add_class(d, &ta->guid, FROM_TLB, name);
            } else if ((ta->typekind == TKIND_INTERFACE || ta->typekind == TKIND_DISPATCH) &&
                       !strncmp(name, "IFWX", 4)) {
                char iid[48], how[200];
                snprintf(iid, sizeof(iid), "IID_%s", name);
                snprintf(how, sizeof(how), "interface %s in the type library", name);
                note(d, iid, &ta->guid, how);
            }
            ITypeInfo_ReleaseTypeAttr(ti, ta);
        }
        ITypeInfo_Release(ti);
    }
    ITypeLib_Release(tl);
}

static BOOL CALLBACK registry_resource(HMODULE m, LPCSTR type, LPSTR name, LONG_PTR arg)
{
    struct discovery *d = (struct discovery *)arg;
    HRSRC r = FindResourceA(m, name, type);
    HGLOBAL h = r ? LoadResource(m, r) : NULL;
    const char *text = h ? LockResource(h) : NULL;
    DWORD size = r ? SizeofResource(m, r) : 0;

    for (DWORD i = 0; text && i + 38 <= size; i++) {
        char buf[39];
        fx_guid g;
        if (text[i] != '{' || text[i + 37] != '}')
            continue;
        memcpy(buf, text + i, 38);
        buf[38] = 0;
        if (fx_guid_parse(buf, &g) != 0)
            continue;
        GUID wg;
        memcpy(&wg, &g, sizeof(wg));
        if (served(d, &wg))
            add_class(d, &wg, FROM_REGISTRY, NULL);
    }
    return TRUE;
}

static void from_probing(struct discovery *d)
{
    for (int i = 0; i < d->ncands; i++)
        if (served(d, &d->cands[i]))
            add_class(d, &d->cands[i], FROM_PROBE, NULL);
}

/* ------------------------------------------------------------ ATL interface maps */

/* _ATL_INTMAP_ENTRY { const IID *piid; DWORD_PTR dw; _ATL_CREATORARGFUNC *pFunc; },
 * ended by an all-NULL entry; pFunc is 1 (_ATL_SIMPLEMAPENTRY) or code. */
static void find_atl_maps(struct discovery *d)
{
    const BYTE *base = (const BYTE *)d->f.module;
    const IMAGE_NT_HEADERS *nt = nt_headers(d->f.module);
    const IMAGE_SECTION_HEADER *sec = IMAGE_FIRST_SECTION(nt);
    ULONG_PTR lo = (ULONG_PTR)base, hi = lo + nt->OptionalHeader.SizeOfImage;
    const size_t P = sizeof(void *);

    for (unsigned s = 0; s < nt->FileHeader.NumberOfSections; s++, sec++) {
        /* Uninitialized data too: a map a compiler builds at run time (a function's
         * static) is there once the class has answered a QueryInterface. */
        DWORD ch = sec->Characteristics;
        if ((ch & IMAGE_SCN_MEM_EXECUTE) ||
            !(ch & (IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_CNT_UNINITIALIZED_DATA)))
            continue;
        DWORD size = sec->Misc.VirtualSize;
        const BYTE *p = base + sec->VirtualAddress;
        for (DWORD off = 0; off + 3 * P <= size && d->nmaps < MAX_MAPS; off += P) {
            struct atl_map m = { .rva = sec->VirtualAddress + off };
            DWORD o = off;
            while (o + 3 * P <= size && m.n < MAX_MAP_ENTRIES) {
                ULONG_PTR e[3];
                memcpy(e, p + o, sizeof(e));
                if (!e[0])
                    break;
                if (e[0] < lo || e[0] > hi - 16 || e[1] > 0x10000 ||
                    !(e[2] == 1 || (e[2] >= lo && e[2] < hi)))
                    break;
                if (!guard_copy(&m.iid[m.n], (const void *)e[0], sizeof(GUID)))
                    break;
                if (!guid_shaped(&m.iid[m.n]) && !IsEqualGUID(&m.iid[m.n], &IID_IUnknown))
                    break;
                m.dw[m.n++] = e[1];
                o += 3 * P;
            }
            ULONG_PTR end[3] = { 1, 1, 1 };
            if (m.n >= 1 && o + 3 * P <= size)
                memcpy(end, p + o, sizeof(end));
            if (m.n >= 1 && !end[0] && !end[1] && !end[2]) {
                d->maps[d->nmaps++] = m;
                off = o;      /* past this map */
            }
        }
    }
}

/* ------------------------------------------------------------ live objects */

/* The candidates obj answers: FWX-looking IIDs into out (pointer it returned). */
static int answered(struct discovery *d, IUnknown *obj, GUID *out, void **ptrs, int max)
{
    int n = 0;
    for (int i = 0; i < d->ncands && n < max; i++) {
        void *p = NULL;
        HRESULT hr;
        BOOL is_class = FALSE;
        for (int k = 0; k < d->nclasses; k++)
            is_class |= IsEqualGUID(&d->classes[k].g, &d->cands[i]);
        if (is_class || (d->has_libid && IsEqualGUID(&d->libid, &d->cands[i])))
            continue;
        GUARDED_CALL(hr, &d->f, "IUnknown", "QueryInterface",
                     IUnknown_QueryInterface(obj, &d->cands[i], &p));
        if (hr != S_OK || !p)
            continue;
        out[n] = d->cands[i];
        ptrs[n++] = p;
        GUARDED_VOID(&d->f, "IUnknown", "Release", IUnknown_Release((IUnknown *)p));
    }
    return n;
}

static void unknown_iid(const char *object, REFIID riid)
{
    struct discovery *d = active;
    if (!d || d->nasked == (int)(sizeof(d->asked) / sizeof(d->asked[0])))
        return;
    for (int i = 0; i < d->nasked; i++)
        if (IsEqualGUID(&d->asked[i].g, riid) && !strcmp(d->asked[i].object, object))
            return;
    snprintf(d->asked[d->nasked].object, sizeof(d->asked[0].object), "%s", object);
    d->asked[d->nasked++].g = *riid;
}

/* Applies what was found to the host's run-time IIDs (abi.h), for the next round. */
static void apply(struct discovery *d)
{
    struct { const char *name; GUID *var; } vars[] = {
#define V(n) { #n, (GUID *)&n }
        V(IID_IFWXFilter), V(IID_IFWXSessionFilter), V(IID_IFWXDataFilter),
        V(IID_IFWXIOCompletion), V(IID_IFWXFirewall), V(IID_IFWXSession),
        V(IID_IFWXConnection), V(IID_IFWXSocket), V(IID_IFWXNetworkSocket),
        V(IID_IFWXIOBuffer), V(IID_IFWXFirewallAction), V(IID_IFWXOverlapped),
        V(IID_IFWXGetXByY), V(IID_IFWXUdpDestination), V(IID_IFWXIpFilter),
        V(IID_IFWXFilterAdmin),
#undef V
    };
    for (int i = 0; i < d->nfound; i++)
        for (size_t k = 0; k < sizeof(vars) / sizeof(vars[0]); k++)
            if (!strcmp(d->found[i].name, vars[k].name))
                *vars[k].var = d->found[i].g;
}

/* One dry run: returns the number of new IIDs learnt from the filter's questions. */
static int dry_run(struct discovery *d, const GUID *clsid, int round)
{
    IClassFactory *factory = NULL;
    IFWXFilter *filter = NULL;
    IFWXSessionFilter *sf = NULL;
    PFwxFilterHookEvents hooks = NULL, shooks = NULL;
    IFWXFirewall *fw = firewall_get();
    struct session *s = NULL;
    HRESULT hr;
    int learnt = 0;
    char how[200];

    d->nasked = 0;
    apply(d);
    GUARDED_CALL(hr, &d->f, "DLL", "DllGetClassObject",
                 d->dgco(clsid, &IID_IClassFactory, (void **)&factory));
    if (FAILED(hr) || !factory)
        goto out;
    GUARDED_CALL(hr, &d->f, "IClassFactory", "CreateInstance",
                 IClassFactory_CreateInstance(factory, NULL, &IID_IFWXFilter, (void **)&filter));
    if (FAILED(hr) || !filter)
        goto out;
    GUARDED_CALL(hr, &d->f, "IFWXFilter", "FilterInit", IFWXFilter_FilterInit(filter, fw, &hooks));
    printf("; dry run %d: FilterInit 0x%08lx", round, (unsigned long)(ULONG)hr);
    if (hr == S_OK) {
        SOCKADDR_IN sin = { .sin_family = AF_INET, .sin_port = 0 };
        sin.sin_addr.s_addr = htonl(0x7f000001);
        s = session_create(&sin, sizeof(sin), "discover");
        if (s) {
            GUARDED_CALL(hr, &d->f, "IFWXFilter", "AttachToSession",
                         IFWXFilter_AttachToSession(filter, session_iface(s), &sf, &shooks));
            printf(", AttachToSession 0x%08lx", (unsigned long)(ULONG)hr);
            if (hr == S_OK && sf && guard_check_iface(sf, 5)) {
                GUID iids[16];
                void *ptrs[16];
                int n = answered(d, (IUnknown *)sf, iids, ptrs, 16);
                for (int i = 0; i < n; i++)
                    if (ptrs[i] == (void *)sf && note(d, "IID_IFWXSessionFilter", &iids[i],
                                                      "answered by the session filter AttachToSession returned, with that pointer"))
                        break;
                GUARDED_CALL(hr, &d->f, "IFWXSessionFilter", "Detach", IFWXSessionFilter_Detach(sf));
                GUARDED_VOID(&d->f, "IFWXSessionFilter", "Release", IFWXSessionFilter_Release(sf));
            }
            if (shooks)
                guard_free_cotaskmem(shooks);
        }
        GUARDED_CALL(hr, &d->f, "IFWXFilter", "FilterShutdown", IFWXFilter_FilterShutdown(filter));
    }
    printf("\n");
    for (int i = 0; i < d->nasked; i++) {
        char name[48], text[39];
        snprintf(name, sizeof(name), "IID_%s", d->asked[i].object);
        snprintf(how, sizeof(how), "asked of our %s object in dry run %d (assumed to be its IID)",
                 d->asked[i].object, round);
        if (note(d, name, &d->asked[i].g, how))
            learnt++;
        else if (!find_guid(d, &d->asked[i].g))
            printf("; also asked of our %s object: %s\n", d->asked[i].object,
                   fx_guid_str(&d->asked[i].g, text));
    }
out:
    if (filter)
        GUARDED_VOID(&d->f, "IFWXFilter", "Release", IFWXFilter_Release(filter));
    if (factory)
        GUARDED_VOID(&d->f, "IClassFactory", "Release", IClassFactory_Release(factory));
    if (s)
        IFWXSession_Release(session_iface(s));
    IFWXFirewall_Release(fw);
    return learnt;
}

/* ------------------------------------------------------------ the whole */

int discover_dll(const char *path, char *err, size_t errlen)
{
    struct discovery *d = calloc(1, sizeof(*d));
    fx_pe_info pe;
    char pe_err[256], text[39], how[200];
    WCHAR *wpath = NULL;
    int rc = -1;

    if (!d) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    d->f.path = d->f.name = (char *)path;
    if (fx_pe_read_file(path, &pe, pe_err, sizeof(pe_err)) != 0) {
        snprintf(err, errlen, "%s", pe_err);
        goto out;
    }
    unsigned machine = pe.machine;
    BOOL plus = pe.is_pe32plus;
    fx_pe_info_free(&pe);
    if (machine != (sizeof(void *) == 8 ? 0x8664 : 0x14c)) {
        snprintf(err, errlen, "%s: is a %s DLL but this process is %s", path,
                 fx_pe_machine_name(machine), sizeof(void *) == 8 ? "x64" : "x86");
        goto out;
    }
    wpath = fx_dos_path(path);
    d->f.module = wpath ? LoadLibraryExW(wpath, NULL, LOAD_WITH_ALTERED_SEARCH_PATH) : NULL;
    if (!d->f.module) {
        snprintf(err, errlen, "%s: LoadLibrary failed (error %lu)", path, (unsigned long)GetLastError());
        goto out;
    }
    d->dgco = (get_class_object_fn)GetProcAddress(d->f.module, "DllGetClassObject");
    if (!d->dgco) {
        snprintf(err, errlen, "%s: does not export DllGetClassObject", path);
        goto out;
    }
    printf("; fwxinfo --discover %s (%s)\n", path, plus ? "PE32+" : "PE32");
    printf("; Usable as an override file: fwxhost --abi FILE, or include = FILE in [abi].\n");
    collect_candidates(d);
    printf("; %d GUID-shaped constants in the DLL's data%s\n", d->ncands,
           d->ncands == MAX_CANDS ? " (the first ones only)" : "");
    from_typelib(d);
    EnumResourceNamesA(d->f.module, "REGISTRY", registry_resource, (LONG_PTR)d);
    from_probing(d);
    for (int i = 0; i < d->nclasses; i++) {
        struct clsid *c = &d->classes[i];
        if (!(c->from & FROM_PROBE) && !served(d, &c->g))
            continue;
        printf("; class %s%s%s:%s%s%s\n", fx_guid_str(&c->g, text), *c->name ? " " : "", c->name,
               c->from & FROM_TLB ? " type library coclass;" : "",
               c->from & FROM_REGISTRY ? " REGISTRY resource;" : "",
               " served by DllGetClassObject");
    }
    /* IIDs the class objects answer. */
    GUID filter_clsid = GUID_NULL;
    for (int i = 0; i < d->nclasses; i++) {
        IClassFactory *factory = NULL;
        IUnknown *unk = NULL;
        HRESULT hr;
        GUID iids[32];
        void *ptrs[32];
        int n;
        if (!served(d, &d->classes[i].g))
            continue;
        GUARDED_CALL(hr, &d->f, "DLL", "DllGetClassObject",
                     d->dgco(&d->classes[i].g, &IID_IClassFactory, (void **)&factory));
        if (FAILED(hr) || !factory)
            continue;
        GUARDED_CALL(hr, &d->f, "IClassFactory", "CreateInstance",
                     IClassFactory_CreateInstance(factory, NULL, &IID_IUnknown, (void **)&unk));
        GUARDED_VOID(&d->f, "IClassFactory", "Release", IClassFactory_Release(factory));
        if (FAILED(hr) || !unk)
            continue;
        n = answered(d, unk, iids, ptrs, 32);
        printf("; class %s answers %d non-standard IID%s:", fx_guid_str(&d->classes[i].g, text), n,
               n == 1 ? "" : "s");
        for (int k = 0; k < n; k++)
            printf(" %s", fx_guid_str(&iids[k], text));
        printf("\n");
        if (n >= 1 && IsEqualGUID(&filter_clsid, &GUID_NULL)) {
            /* The filter class: the first FWX-looking IID it answers (an ATL map
             * lists IFWXFilter first). */
            struct found *known = find_name(d, "IID_IFWXFilter");
            int pick = 0;
            for (int k = 0; known && k < n; k++)
                if (IsEqualGUID(&iids[k], &known->g))
                    pick = k;
            snprintf(how, sizeof(how), "answered by class %s (QueryInterface)%s",
                     fx_guid_str(&d->classes[i].g, text), n > 1 ? "; first of several" : "");
            if (known || note(d, "IID_IFWXFilter", &iids[pick], how))
                filter_clsid = d->classes[i].g;
        }
        GUARDED_VOID(&d->f, "IUnknown", "Release", IUnknown_Release(unk));
    }
    find_atl_maps(d);
    for (int m = 0; m < d->nmaps; m++) {
        printf("; ATL interface map at RVA 0x%lx:", (unsigned long)d->maps[m].rva);
        for (int e = 0; e < d->maps[m].n; e++)
            printf(" %s+%lu", fx_guid_str(&d->maps[m].iid[e], text), (unsigned long)d->maps[m].dw[e]);
        printf("\n");
    }

    /* What the filter asks of our objects. */
    if (!IsEqualGUID(&filter_clsid, &GUID_NULL)) {
        active = d;
        fx_unknown_iid_hook = unknown_iid;
        for (int round = 1; round <= 8; round++)
            if (!dry_run(d, &filter_clsid, round))
                break;
        fx_unknown_iid_hook = NULL;
        active = NULL;
    } else {
        printf("; no class answered an FWX-looking IID: no dry run\n");
    }
    /* IIDs in ATL maps nobody identified. */
    for (int m = 0; m < d->nmaps; m++)
        for (int e = 0; e < d->maps[m].n; e++)
            if (!IsEqualGUID(&d->maps[m].iid[e], &IID_IUnknown) && !find_guid(d, &d->maps[m].iid[e]))
                printf("; unidentified IID in an ATL map: %s\n", fx_guid_str(&d->maps[m].iid[e], text));

    printf("\n[abi]\n");
    for (int i = 0; i < d->nfound; i++) {
        if (!*d->found[i].name)
            continue;
        printf("; %s\n%s = %s\n", d->found[i].how, d->found[i].name, fx_guid_str(&d->found[i].g, text));
    }
    rc = 0;
out:
    if (d->f.module)
        FreeLibrary(d->f.module);
    HeapFree(GetProcessHeap(), 0, wpath);
    free(d);
    return rc;
}
