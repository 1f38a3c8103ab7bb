/*
 * abi.h — the FWX values the host uses at run time instead of the IDL's compile-time
 * constants, so that [abi] overrides (docs ABI-301) take effect everywhere:
 *
 *   IIDs, CLSID_FWXFilterAdmin  the IID_IFWX* variables themselves are writable
 *                               (gen/fxabi_guids.c, linked instead of widl's _i.c);
 *   flags and constants         FWX_FLAG_*, FWX_PROTOCOL_*, FWX_SESSION_*, the event
 *                               sources and FwxScope are redefined below to read
 *                               fx_abi_NAME, so host code keeps writing FWX_FLAG_TIMEOUT.
 *
 * Consequence for host code: these names are not constant expressions (no case
 * labels, no static initializers). fwxhost.h includes this file.
 */
#ifndef FWX_ABI_H
#define FWX_ABI_H

#define FX_ABI_GUID(n)
#define FX_ABI_NUM(n) extern DWORD fx_abi_##n;
#define FX_ABI_INT(n) extern INT fx_abi_##n;
#include "fxabi_names.h"
#undef FX_ABI_GUID
#undef FX_ABI_NUM
#undef FX_ABI_INT

#ifndef FX_ABI_DEFAULTS      /* abi.c reads the IDL's values as defaults */
#undef FWX_PROTOCOL_TCP
#define FWX_PROTOCOL_TCP fx_abi_FWX_PROTOCOL_TCP
#undef FWX_PROTOCOL_UDP
#define FWX_PROTOCOL_UDP fx_abi_FWX_PROTOCOL_UDP
#undef FWX_FLAG_ADDRESS_BASED
#define FWX_FLAG_ADDRESS_BASED fx_abi_FWX_FLAG_ADDRESS_BASED
#undef FWX_FLAG_ALLOW_MULTIPLE
#define FWX_FLAG_ALLOW_MULTIPLE fx_abi_FWX_FLAG_ALLOW_MULTIPLE
#undef FWX_FLAG_TIMEOUT
#define FWX_FLAG_TIMEOUT fx_abi_FWX_FLAG_TIMEOUT
#undef FWX_FLAG_NO_KERNEL_MODE
#define FWX_FLAG_NO_KERNEL_MODE fx_abi_FWX_FLAG_NO_KERNEL_MODE
#undef FWX_FLAG_EMULATE_PROTOCOL
#define FWX_FLAG_EMULATE_PROTOCOL fx_abi_FWX_FLAG_EMULATE_PROTOCOL
#undef FWX_FLAG_BIDIRECTIONAL
#define FWX_FLAG_BIDIRECTIONAL fx_abi_FWX_FLAG_BIDIRECTIONAL
#undef FWX_FLAG_USE_MIME
#define FWX_FLAG_USE_MIME fx_abi_FWX_FLAG_USE_MIME
#undef FWX_FLAG_USE_EXTENTION
#define FWX_FLAG_USE_EXTENTION fx_abi_FWX_FLAG_USE_EXTENTION
#undef FWX_FLAG_CHECK_PUBLISHING
#define FWX_FLAG_CHECK_PUBLISHING fx_abi_FWX_FLAG_CHECK_PUBLISHING
#undef FWX_FLAG_BYPASS_ALLOW_ACCESS
#define FWX_FLAG_BYPASS_ALLOW_ACCESS fx_abi_FWX_FLAG_BYPASS_ALLOW_ACCESS
#undef FWX_FLAG_PROXY_MODE
#define FWX_FLAG_PROXY_MODE fx_abi_FWX_FLAG_PROXY_MODE
#undef FWX_SESSION_NAT
#define FWX_SESSION_NAT fx_abi_FWX_SESSION_NAT
#undef FWX_SESSION_PRIVATE
#define FWX_SESSION_PRIVATE fx_abi_FWX_SESSION_PRIVATE
#undef FWX_SESSION_AUTHENTICATED
#define FWX_SESSION_AUTHENTICATED fx_abi_FWX_SESSION_AUTHENTICATED
#undef FWX_SESSION_TERMINATED
#define FWX_SESSION_TERMINATED fx_abi_FWX_SESSION_TERMINATED
#define fwxSourceWSP fx_abi_fwxSourceWSP
#define fwxSourceNAT fx_abi_fwxSourceNAT
#undef FWX_ALL_SOURCES
#define FWX_ALL_SOURCES (fx_abi_fwxSourceWSP | fx_abi_fwxSourceNAT)
#define fwx_ArrayScope fx_abi_fwx_ArrayScope
#define fwx_EnterpriseScope fx_abi_fwx_EnterpriseScope
#endif

struct fx_config;

/* Applies cfg's [abi] overrides (before any filter is loaded), logging each, and
 * checks that the values still tell interfaces and flags apart. 0, or -1 with
 * "FILE:LINE: message" in err. */
int abi_apply(const struct fx_config *cfg, char *err, size_t errlen);

/* "IID_IFWXSocket" for a GUID that is one of the FWX values now, else NULL. */
const char *abi_guid_name(const GUID *g);

#endif /* FWX_ABI_H */
