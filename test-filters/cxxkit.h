/*
 * cxxkit.h - what the two C++ filters, cxxpass.cpp and atlstyle.cpp, share: the C++
 * plumbing in the spirit of ATL (CritSec, AutoLock, ComPtr, ComObjectRoot, ComObject)
 * and the passthrough's three objects:
 *   PassFilter         IFWXFilter
 *   PassSessionFilter  IFWXSessionFilter
 *   PassDataFilter     IFWXDataFilter + IFWXIOCompletion (multiple inheritance)
 * and fwx_filter_create. Each filter source includes it once and defines what differs:
 * PassFilter::FilterInit and AttachToSession (ending with Init and Attach) and the three
 * classes' GetInterface (cxxpass: static_casts; atlstyle: ATL interface maps), with its
 * own IIDs (atlstyle is built against a rekeyed IDL).
 *
 * The behaviour, and the reasons behind it, are those of passthrough.c, whose objects are
 * the C filter kit's (fltkit.c has the commented original); this code does not use the
 * kit, on purpose (it proves that the host calls g++'s vtables correctly), and its
 * comments are about the C++. The COM DLL plumbing is fltbase.c, which g++ compiles as
 * C++.
 */
#ifndef FWX_CXXKIT_H
#define FWX_CXXKIT_H

#include "fltbase.h"

#include <new>

namespace {

const DWORD kEvents = fwx_Connect_Tcp | fwx_AcceptedConnection | FWX_ALL_SOURCES;

// ====================================================================== C++ plumbing

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

// FilterInit, AttachToSession and the three GetInterface are each filter's own (how it
// answers QueryInterface, what it checks first); the rest is shared, below.
class PassFilter : public ComObjectRoot, public IFWXFilter {
public:
    STDMETHODIMP FilterInit(IFWXFirewall *firewall, PFwxFilterHookEvents *ppHooks) override;
    STDMETHODIMP FilterShutdown() override;
    STDMETHODIMP AttachToSession(IFWXSession *session, IFWXSessionFilter **ppSessionFilter,
                                 PFwxFilterHookEvents *ppHooks) override;

protected:
    void *GetInterface(REFIID riid);
    // The passthrough's FilterInit and AttachToSession, for the filter's own to end with.
    HRESULT Init(IFWXFirewall *firewall, PFwxFilterHookEvents *ppHooks);
    HRESULT Attach(IFWXSession *session, IFWXSessionFilter **ppSessionFilter,
                   PFwxFilterHookEvents *ppHooks);

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

HRESULT PassFilter::Init(IFWXFirewall *firewall, PFwxFilterHookEvents *ppHooks)
{
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

HRESULT PassFilter::Attach(IFWXSession *session, IFWXSessionFilter **ppSessionFilter,
                           PFwxFilterHookEvents *ppHooks)
{
    *ppSessionFilter = nullptr;
    *ppHooks = nullptr;

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

#endif /* FWX_CXXKIT_H */
