/*
 * garbage.c - a filter that answers the host with garbage: random HRESULTs, and bad
 * pointers in its out-parameters. The host must check everything it gets back and
 * survive (tests/faults.sh). What it does, each time drawn from a seeded generator:
 *
 *   AttachToSession      3/8 a correct session filter and per-session hook events;
 *                        1/8 S_OK with a garbage session-filter pointer;
 *                        1/8 S_OK, a correct session filter, a garbage hook-event pointer;
 *                        1/8 S_OK, hook events whose port ranges point to garbage;
 *                        1/8 a random failure, garbage in both out-parameters;
 *                        1/8 S_OK with an object whose every method faults
 *   FirewallEventHandler a data filter on 1/2 of the connections, Deny on 1/8, and a
 *                        random result (S_OK, S_FALSE, E_FAIL, E_INVALIDARG,
 *                        FWX_E_TERMINATING, E_OUTOFMEMORY or any 32-bit value)
 *   SetSockets           starts the pump, then returns a random result
 *   CompleteAsyncIO      pumps correctly, returns a random value
 *
 * Garbage pointers: a low address (0x10), 0xdeadbeef..., random readable bytes, a
 * misaligned object, an object whose vtable points at data, code taken for an
 * object, and a freed heap block.
 *
 * Environment, read in FilterInit:
 *   FWX_GARBAGE_SEED  the generator's seed (default 1). The draws follow the order of
 *                     the calls, so a run is repeatable with one worker and one client
 *                     connection at a time.
 *   FWX_GARBAGE_ATTACH  comma-separated kinds (0-7, numbered as the list above, 0-2
 *                     meaning correct) for the first AttachToSession calls, in order;
 *                     later calls draw. Scripted garbage hook events and port ranges
 *                     are always unreadable, so a test knows what the host must see.
 *   FWX_GARBAGE_INIT  when non-empty, FilterInit itself returns S_OK with a garbage
 *                     hook-event pointer (the host must refuse to start, naming us)
 */
#include "faultkit.h"

/* {2B9F6E84-5C3A-4D1E-8F07-93A1B5C4D2E6} */
const CLSID fwx_filter_clsid =
    { 0x2b9f6e84, 0x5c3a, 0x4d1e, { 0x8f, 0x07, 0x93, 0xa1, 0xb5, 0xc4, 0xd2, 0xe6 } };
const char fwx_filter_name[] = "garbage";

static unsigned long long seed = 1;
static LONG draws;
static unsigned char attach_script[32];
static LONG attach_scripted, attach_calls;

/* One draw: thread-safe, a pure function of the seed and the draw's number. */
static unsigned long long draw(void)
{
    unsigned long long state = seed * 0xD1342543DE82EF95ULL + (unsigned long long)InterlockedIncrement(&draws);
    return fk_next(&state);
}

/* ---------------------------------------------------------------- garbage pointers */

static unsigned char random_bytes[256];            /* filled in FilterInit */
static struct { unsigned char pad; void *vtbl; } misaligned_object;
static void *data_vtable[8] = { random_bytes, random_bytes, random_bytes, random_bytes,
                                random_bytes, random_bytes, random_bytes, random_bytes };
static struct { void *const *vtbl; } data_vtable_object = { data_vtable };

/* The first two kinds are never readable. */
#define ANY_GARBAGE 7
#define UNREADABLE_GARBAGE 2
static void *garbage_pointer(unsigned kinds)
{
    switch (draw() % kinds) {
    case 0: return (void *)(ULONG_PTR)0x10;
    case 1: return (void *)(ULONG_PTR)(sizeof(void *) == 8 ? 0xdeadbeefdeadbeefULL : 0xdeadbeefUL);
    case 2: return random_bytes + 8 * (draw() % 16);
    case 3: return (unsigned char *)&misaligned_object + 1;
    case 4: return &data_vtable_object;
    case 5: return (void *)(ULONG_PTR)&garbage_pointer;    /* code, taken for an object */
    default: {
        void *p = HeapAlloc(GetProcessHeap(), 0, 64);
        HeapFree(GetProcessHeap(), 0, p);
        return p;                                          /* freed */
    }
    }
}

/* An object whose every method faults: it passes any check a host can make without
 * calling it. */
static HRESULT STDMETHODCALLTYPE faulting_method(void *self)
{
    fwx_trace("a method of the faulting object was called");
    fk_crash();
    return E_FAIL;
}
typedef HRESULT (STDMETHODCALLTYPE *any_method)(void *);
static const any_method faulting_vtable[8] = {
    faulting_method, faulting_method, faulting_method, faulting_method,
    faulting_method, faulting_method, faulting_method, faulting_method,
};
static struct { const any_method *vtbl; } faulting_object = { faulting_vtable };

static HRESULT garbage_result(void)
{
    static const HRESULT results[] = { S_OK, S_FALSE, E_FAIL, E_INVALIDARG, FWX_E_TERMINATING,
                                       E_OUTOFMEMORY };
    unsigned long long r = draw();
    if (r % 4 == 0)
        return (HRESULT)(r >> 32);                         /* any 32-bit value */
    r >>= 8;
    /* E_OUTOFMEMORY fails the request: keep it rare (1 in 16 of the rest). */
    if (r % 16 == 0)
        return E_OUTOFMEMORY;
    return results[(r >> 4) % 5];
}

/* ---------------------------------------------------------------- the kit's callbacks */

static BOOL garbage_init(KitFilter *filter, IFWXFirewall *firewall)
{
    seed = fk_env_ulong("FWX_GARBAGE_SEED", 1);
    for (unsigned i = 0; i < sizeof(random_bytes); i += 8) {
        unsigned long long r = draw();
        memcpy(random_bytes + i, &r, 8);
    }
    misaligned_object.vtbl = data_vtable;
    char *script = fwx_getenv("FWX_GARBAGE_ATTACH", "");
    attach_scripted = 0;
    for (const char *p = script; p && *p && attach_scripted < 32; p++)
        if (*p >= '0' && *p <= '7')
            attach_script[attach_scripted++] = (unsigned char)(*p - '0');
    fwx_free(script);
    return TRUE;
}

/* FWX_GARBAGE_INIT: the hook-event pointer FilterInit returns is garbage. */
static HRESULT garbage_filter_init(const KitAnswer *answer)
{
    char *init = fwx_getenv("FWX_GARBAGE_INIT", "");

    if (init && *init) {
        /* Always unreadable, so the host's refusal is repeatable. */
        *answer->hooks = (PFwxFilterHookEvents)(ULONG_PTR)0x10;
        fwx_trace("FilterInit: returning a garbage hook-event pointer %p", (void *)*answer->hooks);
    }
    fwx_free(init);
    fwx_trace("seed %llu", seed);
    return answer->hr;
}

static HRESULT garbage_attach(IFWXSessionFilter **sf, PFwxFilterHookEvents *hooks, HRESULT hr)
{
    LONG call = InterlockedIncrement(&attach_calls) - 1;
    BOOL scripted = call < attach_scripted;
    unsigned kind = scripted ? attach_script[call] : (unsigned)(draw() % 8);
    unsigned hook_garbage = scripted ? UNREADABLE_GARBAGE : ANY_GARBAGE;
    if (FAILED(hr))
        return hr;
    switch (kind) {
    case 3:
        IFWXSessionFilter_Release(*sf);    /* the real one goes; the host gets garbage */
        *sf = garbage_pointer(ANY_GARBAGE);
        fwx_trace("AttachToSession: S_OK, garbage session filter %p", (void *)*sf);
        return S_OK;
    case 4:
        CoTaskMemFree(*hooks);
        *hooks = garbage_pointer(hook_garbage);
        fwx_trace("AttachToSession: S_OK, garbage hook events %p", (void *)*hooks);
        return S_OK;
    case 5:
        (*hooks)->dwNumPortRanges = 1 + (DWORD)(draw() % 64);
        (*hooks)->PortRangeEvents = garbage_pointer(hook_garbage);
        fwx_trace("AttachToSession: S_OK, %lu port ranges at garbage %p",
                  (unsigned long)(*hooks)->dwNumPortRanges, (void *)(*hooks)->PortRangeEvents);
        return S_OK;
    case 6:
        IFWXSessionFilter_Release(*sf);
        CoTaskMemFree(*hooks);
        *sf = garbage_pointer(ANY_GARBAGE);
        *hooks = garbage_pointer(ANY_GARBAGE);
        hr = (HRESULT)(0x80000000UL | (ULONG)(draw() & 0x7fffffff));
        fwx_trace("AttachToSession: failure 0x%08lx with garbage out-parameters", (unsigned long)hr);
        return hr;
    case 7:
        IFWXSessionFilter_Release(*sf);
        *sf = (IFWXSessionFilter *)&faulting_object;
        fwx_trace("AttachToSession: S_OK, an object whose methods fault");
        return S_OK;
    default:
        return hr;
    }
}

/* A pump on half of the connections, a Deny on an eighth, a random result. */
static HRESULT garbage_event(KitSession *session, const FirewallEvent *event)
{
    IFWXConnection *connection;
    unsigned long long r;
    HRESULT hr;

    if (!kit_event_connection(event, &connection))
        return S_OK;
    r = draw();
    if (connection && (r >> 1) % 8 == 0)
        IFWXConnection_Deny(connection, 0);
    hr = garbage_result();
    if (r & 1)
        kit_session_attach_pump(session, connection);
    return hr;
}

/* The pump works; what the host is told about it is garbage. */
static HRESULT garbage_answer(KitFilter *filter, const KitAnswer *answer)
{
    switch (answer->type) {
    case KIT_CALL_FILTER_INIT:
        return garbage_filter_init(answer);
    case KIT_CALL_ATTACH_TO_SESSION:
        return garbage_attach(answer->session_filter, answer->hooks, answer->hr);
    case KIT_CALL_SET_SOCKETS:
        return garbage_result();
    case KIT_CALL_COMPLETION:
        return (HRESULT)(draw() >> 32);
    default:
        return answer->hr;
    }
}

static const KitClass garbage_class = {
    .events = FK_EVENTS,
    .init = garbage_init,
    .event = garbage_event,
    .answer = garbage_answer,
};

HRESULT fwx_filter_create(REFIID riid, void **ppv)
{
    return kit_filter_create(&garbage_class, riid, ppv);
}
