/*
 * cxxpass.cpp - passthrough.c again, written in C++ the way ATL-era ISA filters were:
 * classes deriving from the widl-generated interface classes, one of them from two
 * interfaces at once, and a templated IUnknown implementation in the spirit of ATL's
 * CComObjectRootEx/CComObject. It proves that the host calls g++'s vtables correctly,
 * including the this-adjusting thunks of a second base class (IFWXIOCompletion here).
 *
 * This file owns the filter's identity and its plain C++ QueryInterface (a static_cast
 * per interface); the plumbing and the three objects are cxxkit.h's, which atlstyle.cpp
 * shares.
 */
#include "cxxkit.h"

// {A4121AA1-1BCE-4F72-807A-3B4B0DE1543B}
const CLSID fwx_filter_clsid =
    { 0xa4121aa1, 0x1bce, 0x4f72, { 0x80, 0x7a, 0x3b, 0x4b, 0x0d, 0xe1, 0x54, 0x3b } };
const char fwx_filter_name[] = "cxxpass";

namespace {

void *PassFilter::GetInterface(REFIID riid)
{
    if (IsEqualIID(riid, IID_IUnknown) || IsEqualIID(riid, IID_IFWXFilter))
        return static_cast<IFWXFilter *>(this);
    return nullptr;
}

STDMETHODIMP PassFilter::FilterInit(IFWXFirewall *firewall, PFwxFilterHookEvents *ppHooks)
{
    return Init(firewall, ppHooks);
}

STDMETHODIMP PassFilter::AttachToSession(IFWXSession *session, IFWXSessionFilter **ppSessionFilter,
                                         PFwxFilterHookEvents *ppHooks)
{
    return Attach(session, ppSessionFilter, ppHooks);
}

void *PassSessionFilter::GetInterface(REFIID riid)
{
    if (IsEqualIID(riid, IID_IUnknown) || IsEqualIID(riid, IID_IFWXSessionFilter))
        return static_cast<IFWXSessionFilter *>(this);
    return nullptr;
}

void *PassDataFilter::GetInterface(REFIID riid)
{
    if (IsEqualIID(riid, IID_IUnknown) || IsEqualIID(riid, IID_IFWXDataFilter))
        return static_cast<IFWXDataFilter *>(this);
    if (IsEqualIID(riid, IID_IFWXIOCompletion))
        return static_cast<IFWXIOCompletion *>(this);
    return nullptr;
}

}  // namespace
