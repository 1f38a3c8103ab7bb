/*
 * fxabi_names.h - the names of every FWX value the configuration may override
 * ([abi] section, docs/abi-decisions.md ABI-301), as an X-macro list shared by the
 * parser (fxconf.c: which names exist, which take a GUID) and the host (abi.c: where
 * each value lives). No other content: include it after defining FX_ABI_GUID(name)
 * and FX_ABI_NUM(name) (a DWORD), FX_ABI_INT(name) (an INT: compared with INT
 * parameters).
 *
 * The event-type bits (fwx_Connect_Tcp, ...) are not listed: the 2004 documentation
 * gives their values and calls them single bits in 2000 too (ABI-016), and the host
 * switches on them.
 */
FX_ABI_GUID(IID_IFWXFilter)
FX_ABI_GUID(IID_IFWXSessionFilter)
FX_ABI_GUID(IID_IFWXDataFilter)
FX_ABI_GUID(IID_IFWXIOCompletion)
FX_ABI_GUID(IID_IFWXAcceptCompletion)
FX_ABI_GUID(IID_IFWXExternalIOCompletion)
FX_ABI_GUID(IID_IFWXImpersonator)
FX_ABI_GUID(IID_IFWXFirewall)
FX_ABI_GUID(IID_IFWXSession)
FX_ABI_GUID(IID_IFWXConnection)
FX_ABI_GUID(IID_IFWXSocket)
FX_ABI_GUID(IID_IFWXNetworkSocket)
FX_ABI_GUID(IID_IFWXIOBuffer)
FX_ABI_GUID(IID_IFWXOverlapped)
FX_ABI_GUID(IID_IFWXFirewallAction)
FX_ABI_GUID(IID_IFWXGetXByY)
FX_ABI_GUID(IID_IFWXUdpDestination)
FX_ABI_GUID(IID_IFWXIpFilter)
FX_ABI_GUID(IID_IFWXFilterAdmin)
FX_ABI_GUID(CLSID_FWXFilterAdmin)
FX_ABI_INT(FWX_PROTOCOL_TCP)
FX_ABI_INT(FWX_PROTOCOL_UDP)
FX_ABI_NUM(FWX_FLAG_ADDRESS_BASED)
FX_ABI_NUM(FWX_FLAG_ALLOW_MULTIPLE)
FX_ABI_NUM(FWX_FLAG_TIMEOUT)
FX_ABI_NUM(FWX_FLAG_NO_KERNEL_MODE)
FX_ABI_NUM(FWX_FLAG_EMULATE_PROTOCOL)
FX_ABI_NUM(FWX_FLAG_BIDIRECTIONAL)
FX_ABI_NUM(FWX_FLAG_USE_MIME)
FX_ABI_NUM(FWX_FLAG_USE_EXTENTION)
FX_ABI_NUM(FWX_FLAG_CHECK_PUBLISHING)
FX_ABI_NUM(FWX_FLAG_BYPASS_ALLOW_ACCESS)
FX_ABI_NUM(FWX_FLAG_PROXY_MODE)
FX_ABI_NUM(FWX_SESSION_NAT)
FX_ABI_NUM(FWX_SESSION_PRIVATE)
FX_ABI_NUM(FWX_SESSION_AUTHENTICATED)
FX_ABI_NUM(FWX_SESSION_TERMINATED)
FX_ABI_NUM(fwxSourceWSP)
FX_ABI_NUM(fwxSourceNAT)
FX_ABI_NUM(fwx_ArrayScope)
FX_ABI_NUM(fwx_EnterpriseScope)
