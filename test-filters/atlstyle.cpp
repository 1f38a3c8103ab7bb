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
 * The pump and the C++ plumbing are cxxpass.cpp's.
 */
#include "fltbase.h"

#include <new>

// {D1A7C0DE-5B3E-4F6A-8E21-7C9B0A4D3E52}: also in atlstyle.idl and atlstyle.rgs
const CLSID fwx_filter_clsid =
    { 0xd1a7c0de, 0x5b3e, 0x4f6a, { 0x8e, 0x21, 0x7c, 0x9b, 0x0a, 0x4d, 0x3e, 0x52 } };
const char fwx_filter_name[] = "atlstyle";

namespace {

const DWORD kEvents = fwx_Connect_Tcp | fwx_AcceptedConnection | FWX_ALL_SOURCES;

// ====================================================================== C++ plumbing

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

// A critical section (ATL's CComAutoCriticalSection) and its scoped lock.
class CritSec {
public:
    CritSec() { InitializeCriticalSection(&m_cs); }
    ~CritSec() { DeleteCriticalSection(&m_cs); }
    void Lock() { EnterCriticalSection(&m_cs); }
    void Unlock() { LeaveCriticalSection(&m_cs); }

private:
    CritSec(const CritSec &) = delete;
    CritSec &operator=(const CritSec &) = delete;
    CRITICAL_SECTION m_cs;
};

class AutoLock {
public:
    explicit AutoLock(CritSec &cs) : m_cs(cs) { m_cs.Lock(); }
    ~AutoLock() { m_cs.Unlock(); }

private:
    AutoLock(const AutoLock &) = delete;
    AutoLock &operator=(const AutoLock &) = delete;
    CritSec &m_cs;
};

// An interface pointer that owns one reference (ATL's CComPtr).
template <class T>
class ComPtr {
public:
    ComPtr() : m_p(nullptr) {}
    ComPtr(T *p) : m_p(p) { if (m_p) m_p->AddRef(); }
    ComPtr(const ComPtr &other) : ComPtr(other.m_p) {}
    ~ComPtr() { if (m_p) m_p->Release(); }

    ComPtr &operator=(const ComPtr &other) { Reset(other.m_p); return *this; }
    ComPtr &operator=(T *p) { Reset(p); return *this; }
    T *operator->() const { return m_p; }
    operator T *() const { return m_p; }

    // Exchanges the pointers, references and all; no AddRef, no Release.
    void Swap(ComPtr &other) { T *p = m_p; m_p = other.m_p; other.m_p = p; }

private:
    void Reset(T *p)
    {
        if (p)
            p->AddRef();
        T *old = m_p;
        m_p = p;
        if (old)
            old->Release();
    }
    T *m_p;
};

// The state every COM object of the DLL shares: its reference count and its share of the
// DLL-wide object count (ATL's CComObjectRootEx). The destructor is virtual so that the
// last Release deletes the most derived object.
class ComObjectRoot {
protected:
    ComObjectRoot() : m_refs(1) { fwx_object_created(); }
    virtual ~ComObjectRoot() { fwx_object_destroyed(); }

    ULONG InternalAddRef() { return InterlockedIncrement(&m_refs); }
    ULONG InternalRelease()
    {
        LONG refs = InterlockedDecrement(&m_refs);
        if (refs == 0)
            delete this;
        return refs;
    }

private:
    LONG m_refs;
};

// Completes a class T into a COM object (ATL's CComObject<T>). T derives from
// ComObjectRoot and from one or more interfaces, and maps IIDs to interface pointers in
// T::GetInterface. These three methods override IUnknown in every interface base of T at
// once; for the bases after the first, g++ reaches them through this-adjusting thunks.
template <class T>
class ComObject : public T {
public:
    static ComObject *Create() { return new (std::nothrow) ComObject; }

    STDMETHODIMP QueryInterface(REFIID riid, void **ppv) override
    {
        if (!ppv)
            return E_POINTER;
        *ppv = T::GetInterface(riid);
        if (!*ppv)
            return E_NOINTERFACE;
        this->InternalAddRef();
        return S_OK;
    }
    STDMETHODIMP_(ULONG) AddRef() override { return this->InternalAddRef(); }
    STDMETHODIMP_(ULONG) Release() override { return this->InternalRelease(); }
};

// ====================================================================== the filter's classes

class PassFilter : public ComObjectRoot, public IFWXFilter {
public:
    STDMETHODIMP FilterInit(IFWXFirewall *firewall, PFwxFilterHookEvents *ppHooks) override;
    STDMETHODIMP FilterShutdown() override;
    STDMETHODIMP AttachToSession(IFWXSession *session, IFWXSessionFilter **ppSessionFilter,
                                 PFwxFilterHookEvents *ppHooks) override;

protected:
    void *GetInterface(REFIID riid);

private:
    ComPtr<IFWXFirewall> m_firewall;   // from FilterInit until FilterShutdown
    FwxFilterHookEvents m_hooks = {};  // FilterInit hands the host this member's address
};

class PassSessionFilter : public ComObjectRoot, public IFWXSessionFilter {
public:
    void Init(IFWXSession *session) { m_session = session; }

    STDMETHODIMP FirewallEventHandler(const FirewallEvent *event) override;
    STDMETHODIMP Detach() override;

protected:
    void *GetInterface(REFIID riid);

private:
    static HRESULT AttachPump(IFWXConnection *connection);

    CritSec m_lock;                    // events race Detach
    ComPtr<IFWXSession> m_session;     // until Detach
};

// One object, two interfaces: the host holds it as IFWXDataFilter (the connection) and as
// IFWXIOCompletion (each pending operation), two different pointers into it.
class PassDataFilter : public ComObjectRoot, public IFWXDataFilter, public IFWXIOCompletion {
public:
    // IFWXDataFilter
    STDMETHODIMP SetSockets(IFWXSocket *internal, IFWXSocket *external, IFWXConnection *connection,
                            IUnknown *context) override;
    STDMETHODIMP Detach() override;
    // IFWXIOCompletion
    STDMETHODIMP CompleteAsyncIO(BOOL fSuccess, DWORD Win32ErrorCode, IFWXIOBuffer *pIOBuffer,
                                 UserContextType UserData, LPSOCKADDR ExternalAddress,
                                 INT ExternalAddressLength) override;

protected:
    void *GetInterface(REFIID riid);

private:
    enum Side { Internal = 0, External = 1 };
    static Side Other(Side side) { return side == Internal ? External : Internal; }

    // UserData: the side the bytes were read from, plus kSend for the Send of them.
    static constexpr UserContextType kSend = 2;
    static UserContextType Tag(Side from, UserContextType op) { return from | op; }

    ComPtr<IFWXSocket> Socket(Side side);
    IFWXIOCompletion *Completion() { return static_cast<IFWXIOCompletion *>(this); }
    void PostRecv(Side from);
    void PostSend(Side from, IFWXIOBuffer *buffer);
    void ShutdownSide(Side side);
    void AbortSide(Side side);
    void OnReceived(Side from, BOOL ok, DWORD error, IFWXIOBuffer *buffer);
    void OnSent(Side from, BOOL ok, DWORD error);

    CritSec m_lock;                    // guards the members below: Detach races completions
    bool m_detached = false;
    ComPtr<IFWXSocket> m_sockets[2];   // by Side
    ComPtr<IFWXConnection> m_connection;
};

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
    m_firewall = firewall;
    m_hooks.dwGlobalEvents = kEvents;
    m_hooks.dwNumPortRanges = 0;
    m_hooks.PortRangeEvents = nullptr;
    *ppHooks = &m_hooks;
    return S_OK;
}

STDMETHODIMP PassFilter::FilterShutdown()
{
    m_firewall = nullptr;
    return S_OK;
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

    // The host frees the per-session hook events with CoTaskMemFree.
    FwxFilterHookEvents *hooks = static_cast<FwxFilterHookEvents *>(CoTaskMemAlloc(sizeof(*hooks)));
    ComObject<PassSessionFilter> *sf = ComObject<PassSessionFilter>::Create();
    if (!hooks || !sf) {
        CoTaskMemFree(hooks);
        if (sf)
            sf->Release();
        return E_OUTOFMEMORY;
    }
    *hooks = m_hooks;
    sf->Init(session);

    *ppSessionFilter = sf;   // our creation reference goes to the host
    *ppHooks = hooks;
    return S_OK;
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

HRESULT PassSessionFilter::AttachPump(IFWXConnection *connection)
{
    if (!connection)
        return S_OK;
    ComObject<PassDataFilter> *df = ComObject<PassDataFilter>::Create();
    if (!df)
        return E_OUTOFMEMORY;
    HRESULT hr = connection->AttachDataFilter(df, fwx_dfpc_Middle, nullptr);
    if (FAILED(hr))
        fwx_trace("AttachDataFilter failed: 0x%08lx", static_cast<unsigned long>(hr));
    df->Release();
    return S_OK;
}

STDMETHODIMP PassSessionFilter::FirewallEventHandler(const FirewallEvent *event)
{
    switch (event->EventType) {
    case fwx_Connect_Tcp:
        return AttachPump(event->Parameters.Connect.piConnection);
    case fwx_AcceptedConnection:
        return AttachPump(event->Parameters.Accept.piConnectionAccepted);
    default:
        return S_OK;
    }
}

STDMETHODIMP PassSessionFilter::Detach()
{
    ComPtr<IFWXSession> session;   // released when we return, after the lock
    {
        AutoLock lock(m_lock);
        session.Swap(m_session);
    }
    return S_OK;
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

// A copy with its own reference, so that the socket outlives a racing Detach while we
// call it without the lock. Its AddRef is the one host call made under the lock: it
// cannot call back into us.
ComPtr<IFWXSocket> PassDataFilter::Socket(Side side)
{
    AutoLock lock(m_lock);
    return m_sockets[side];
}

void PassDataFilter::AbortSide(Side side)
{
    if (ComPtr<IFWXSocket> socket = Socket(side))
        socket->Close(TRUE);
}

void PassDataFilter::ShutdownSide(Side side)
{
    if (ComPtr<IFWXSocket> socket = Socket(side))
        socket->Shutdown(FALSE);
}

void PassDataFilter::PostRecv(Side from)
{
    ComPtr<IFWXSocket> socket = Socket(from);
    if (!socket)
        return;
    HRESULT hr = socket->Recv(nullptr, Completion(), Tag(from, 0));
    if (FAILED(hr)) {
        fwx_trace("Recv failed: 0x%08lx", static_cast<unsigned long>(hr));
        AbortSide(Other(from));
    }
}

void PassDataFilter::PostSend(Side from, IFWXIOBuffer *buffer)
{
    ComPtr<IFWXSocket> socket = Socket(Other(from));
    if (!socket)
        return;
    HRESULT hr = socket->Send(buffer, Completion(), Tag(from, kSend));
    if (FAILED(hr)) {
        fwx_trace("Send failed: 0x%08lx", static_cast<unsigned long>(hr));
        AbortSide(from);
    }
}

void PassDataFilter::OnReceived(Side from, BOOL ok, DWORD error, IFWXIOBuffer *buffer)
{
    DWORD allocated, size;

    if (!ok || !buffer || FAILED(buffer->GetBufferSizes(&allocated, &size))) {
        if (!ok && error != ERROR_OPERATION_ABORTED)
            fwx_trace("receive failed: error %lu", static_cast<unsigned long>(error));
        AbortSide(Other(from));
    }
    else if (size == 0)
        ShutdownSide(Other(from));
    else
        PostSend(from, buffer);
}

void PassDataFilter::OnSent(Side from, BOOL ok, DWORD error)
{
    if (!ok) {
        if (error != ERROR_OPERATION_ABORTED)
            fwx_trace("send failed: error %lu", static_cast<unsigned long>(error));
        AbortSide(from);
    }
    else
        PostRecv(from);
}

STDMETHODIMP PassDataFilter::SetSockets(IFWXSocket *internal, IFWXSocket *external,
                                        IFWXConnection *connection, IUnknown *context)
{
    if (!internal || !external)
        return E_INVALIDARG;
    {
        AutoLock lock(m_lock);
        if (m_detached || m_sockets[Internal])
            return FWX_E_TERMINATING;
        m_sockets[Internal] = internal;
        m_sockets[External] = external;
        m_connection = connection;
    }
    PostRecv(Internal);
    PostRecv(External);
    return S_OK;
}

STDMETHODIMP PassDataFilter::Detach()
{
    // Swapped out under the lock, released when we return, after it: Release is a call
    // into the host.
    ComPtr<IFWXSocket> internal, external;
    ComPtr<IFWXConnection> connection;
    {
        AutoLock lock(m_lock);
        m_detached = true;
        internal.Swap(m_sockets[Internal]);
        external.Swap(m_sockets[External]);
        connection.Swap(m_connection);
    }
    return S_OK;
}

STDMETHODIMP PassDataFilter::CompleteAsyncIO(BOOL fSuccess, DWORD Win32ErrorCode, IFWXIOBuffer *pIOBuffer,
                                             UserContextType UserData, LPSOCKADDR ExternalAddress,
                                             INT ExternalAddressLength)
{
    Side from = (UserData & 1) ? External : Internal;

    if (UserData & kSend)
        OnSent(from, fSuccess, Win32ErrorCode);
    else
        OnReceived(from, fSuccess, Win32ErrorCode, pIOBuffer);
    return S_OK;
}

}  // namespace

HRESULT fwx_filter_create(REFIID riid, void **ppv)
{
    ComObject<PassFilter> *filter = ComObject<PassFilter>::Create();
    if (!filter)
        return E_OUTOFMEMORY;
    HRESULT hr = filter->QueryInterface(riid, ppv);
    filter->Release();
    return hr;
}
