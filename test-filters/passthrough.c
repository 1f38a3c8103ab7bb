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
 */
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
