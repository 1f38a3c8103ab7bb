/*
 * passthrough.c - the reference fwxshim test filter: it hooks outbound TCP connects and
 * accepted (published) connections, attaches a data filter to each, and pumps the bytes
 * in both directions unchanged.
 *
 * It is the filter kit (fltkit.h) with no callbacks: the kit's IFWXFilter answers
 * FilterInit with the events below and copies them for every session, its session
 * filter attaches a pump to every connection of those events, and its pump passes every
 * buffer on as it came, half-closes and aborts included. Read fltkit.c for how a filter
 * drives the FWX API; the other test filters are this file plus the callbacks they need.
 * The COM DLL plumbing (exports, class factory) is in fltbase.c.
 *
 * Built three times: passthrough.dll (ISA 2000 conventions), passreg.dll
 * (-DFWX_SELF_REGISTER: DllRegisterServer registers the filter and a protocol through
 * IFWXFilterAdmin, as the ISA 2000 SDK tutorial shows) and passtmg.dll (-DFWX_PROFILE_TMG:
 * the kit fills the hook events the host passes in, as ISA 2004/2006/TMG filters do);
 * tests/abi.sh.
 */
#ifdef FWX_SELF_REGISTER
#define FWX_DEFINE_CLSID_FWXFILTERADMIN   /* this DLL asks for the admin object */
#endif
#include "fltkit.h"

/* {C5B86DA9-D567-4E36-8A60-144A781CB066} */
const CLSID fwx_filter_clsid =
    { 0xc5b86da9, 0xd567, 0x4e36, { 0x8a, 0x60, 0x14, 0x4a, 0x78, 0x1c, 0xb0, 0x66 } };
const char fwx_filter_name[] = "passthrough";

/* Outbound connections (access rules) and inbound ones (publishing rules), from
 * Firewall clients and SecureNAT clients alike. */
static const KitClass passthrough_class = {
    .events = fwx_Connect_Tcp | fwx_AcceptedConnection | FWX_ALL_SOURCES,
    .session_hooks = KIT_HOOKS_COPY,
};

HRESULT fwx_filter_create(REFIID riid, void **ppv)
{
    return kit_filter_create(&passthrough_class, riid, ppv);
}

#ifdef FWX_SELF_REGISTER
/* {7A3C1E55-0B2D-4C8E-9F16-2D4B6A8C0E13}: the protocol this filter registers. */
static const GUID passreg_protocol =
    { 0x7a3c1e55, 0x0b2d, 0x4c8e, { 0x9f, 0x16, 0x2d, 0x4b, 0x6a, 0x8c, 0x0e, 0x13 } };

/* What the ISA 2000 tutorial's DllRegisterServer does: the admin object, InstallFilter,
 * one protocol. */
HRESULT fwx_self_register(void)
{
    IFWXFilterAdmin *admin = NULL;
    HRESULT hr = CoCreateInstance(&CLSID_FWXFilterAdmin, NULL, CLSCTX_SERVER, &IID_IFWXFilterAdmin,
                                  (void **)&admin);
    if (FAILED(hr))
        return hr;
    hr = IFWXFilterAdmin_InstallFilter(admin, &fwx_filter_clsid, "PassReg",
                                       "Passthrough that registers itself", "fwxshim tests", "1.0",
                                       NULL, fwx_ArrayScope);
    if (SUCCEEDED(hr))
        hr = IFWXFilterAdmin_RegisterProtocolForFilter(admin, &fwx_filter_clsid, &passreg_protocol,
                                                       "PassReg TCP", "the passreg test protocol",
                                                       NULL, fwx_ArrayScope);
    IFWXFilterAdmin_Release(admin);
    return hr;
}
#endif
