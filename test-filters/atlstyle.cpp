/*
 * atlstyle.cpp - cxxpass.cpp built the way an ATL wizard project is, and with IIDs and a
 * CLSID the host does not know by default, so that the host can run it only with what
 * `fwxinfo --discover` finds (tests/abi.sh, docs ABI-302):
 *   - every FWX IID comes from the IDL rekeyed by tools/rekey-idl.py (gen/atlstyle/);
 *   - each class answers QueryInterface through an ATL-shaped interface map
 *     (_ATL_INTMAP_ENTRY arrays: IID pointer, offset of the interface in the object,
 *     _ATL_SIMPLEMAPENTRY), walked as AtlInternalQueryInterface does;
 *   - the DLL carries a type library (atlstyle.idl, widl -t) and an ATL registration
 *     script as a REGISTRY resource (atlstyle.rgs), both naming the CLSID;
 *   - FilterInit asks the firewall for IID_IFWXFirewall and AttachToSession asks the
 *     session for IID_IFWXSession, and give up (E_NOINTERFACE) when the host does not
 *     answer: the host must answer the IIDs this filter was built with.
 * The pump, the C++ plumbing and the rest of the objects are cxxkit.h's (shared with
 * cxxpass.cpp); this file owns the identity, the interface maps and the IID checks.
 */
#include "cxxkit.h"

// {D1A7C0DE-5B3E-4F6A-8E21-7C9B0A4D3E52}: also in atlstyle.idl and atlstyle.rgs
const CLSID fwx_filter_clsid =
    { 0xd1a7c0de, 0x5b3e, 0x4f6a, { 0x8e, 0x21, 0x7c, 0x9b, 0x0a, 0x4d, 0x3e, 0x52 } };
const char fwx_filter_name[] = "atlstyle";

namespace {

// ATL's interface map: one entry per interface, ended by a NULL entry.
struct AtlIntmapEntry {
    const IID *piid;
    DWORD_PTR dw;          // offset of the interface pointer in the object
    void *pFunc;           // _ATL_SIMPLEMAPENTRY: dw is an offset
};
#define ATL_SIMPLEMAPENTRY reinterpret_cast<void *>(1)
// ATL's offsetofclass: where base B sits inside an object of class D.
#define OFFSETOFCLASS(B, D) \
    (reinterpret_cast<DWORD_PTR>(static_cast<B *>(reinterpret_cast<D *>(8))) - 8)

// AtlInternalQueryInterface: IUnknown is the first entry's interface.
static void *InternalQueryInterface(void *object, const AtlIntmapEntry *map, REFIID riid)
{
    if (IsEqualIID(riid, IID_IUnknown))
        return static_cast<BYTE *>(object) + map[0].dw;
    for (; map->piid; map++)
        if (map->pFunc == ATL_SIMPLEMAPENTRY && IsEqualIID(riid, *map->piid))
            return static_cast<BYTE *>(object) + map->dw;
    return nullptr;
}

// ====================================================================== PassFilter

void *PassFilter::GetInterface(REFIID riid)
{
    static const AtlIntmapEntry map[] = {   // BEGIN_COM_MAP(PassFilter)
        { &IID_IFWXFilter, OFFSETOFCLASS(IFWXFilter, PassFilter), ATL_SIMPLEMAPENTRY },
        { nullptr, 0, nullptr },             // END_COM_MAP()
    };
    return InternalQueryInterface(this, map, riid);
}

STDMETHODIMP PassFilter::FilterInit(IFWXFirewall *firewall, PFwxFilterHookEvents *ppHooks)
{
    // The firewall as the interface this DLL was built with: a host that does not
    // answer our IID_IFWXFirewall is not one we can work with.
    IFWXFirewall *checked = nullptr;
    HRESULT hr = firewall->QueryInterface(IID_IFWXFirewall, reinterpret_cast<void **>(&checked));
    if (FAILED(hr) || !checked) {
        fwx_trace("the firewall does not answer our IID_IFWXFirewall: 0x%08lx", static_cast<unsigned long>(hr));
        *ppHooks = nullptr;
        return E_NOINTERFACE;
    }
    checked->Release();
    return Init(firewall, ppHooks);
}

STDMETHODIMP PassFilter::AttachToSession(IFWXSession *session, IFWXSessionFilter **ppSessionFilter,
                                         PFwxFilterHookEvents *ppHooks)
{
    *ppSessionFilter = nullptr;
    *ppHooks = nullptr;

    IFWXSession *checked = nullptr;
    HRESULT hr = session->QueryInterface(IID_IFWXSession, reinterpret_cast<void **>(&checked));
    if (FAILED(hr) || !checked) {
        fwx_trace("the session does not answer our IID_IFWXSession: 0x%08lx", static_cast<unsigned long>(hr));
        return E_NOINTERFACE;
    }
    checked->Release();
    return Attach(session, ppSessionFilter, ppHooks);
}

// ====================================================================== PassSessionFilter

void *PassSessionFilter::GetInterface(REFIID riid)
{
    static const AtlIntmapEntry map[] = {
        { &IID_IFWXSessionFilter, OFFSETOFCLASS(IFWXSessionFilter, PassSessionFilter), ATL_SIMPLEMAPENTRY },
        { nullptr, 0, nullptr },
    };
    return InternalQueryInterface(this, map, riid);
}

// ====================================================================== PassDataFilter

void *PassDataFilter::GetInterface(REFIID riid)
{
    static const AtlIntmapEntry map[] = {
        { &IID_IFWXDataFilter, OFFSETOFCLASS(IFWXDataFilter, PassDataFilter), ATL_SIMPLEMAPENTRY },
        { &IID_IFWXIOCompletion, OFFSETOFCLASS(IFWXIOCompletion, PassDataFilter), ATL_SIMPLEMAPENTRY },
        { nullptr, 0, nullptr },
    };
    return InternalQueryInterface(this, map, riid);
}

}  // namespace
