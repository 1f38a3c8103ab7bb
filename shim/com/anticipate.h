/*
 * anticipate.h — anticipated actions (reference §2.8, §3.9, §3.15): the
 * secondary connections a filter arranges in advance through IFWXSession
 * (AllowFutureConnect, RedirectConnections, BindForClient, EmulateClientBind,
 * RetroactiveAllowBind), their IFWXFirewallAction handles, expiry, and the
 * fwx_EstablishedConnection each one raises in the registering session
 * filter only. Host decisions: docs/abi-decisions.md HOST-100..HOST-104.
 */
#ifndef FWX_ANTICIPATE_H
#define FWX_ANTICIPATE_H

#include "hostobj.h"

struct anticipation;

/* The IFWXSession methods (session.c forwards to these). */
HRESULT anticipate_allow_connect(struct session *s, LPSOCKADDR addr, DWORD len, INT protocol,
                                 DWORD flags, REFGUID guid, IFWXSessionFilter *sf,
                                 IUnknown *ctx, IFWXFirewallAction **action);
HRESULT anticipate_redirect(struct session *s, LPSOCKADDR *addrs, DWORD len, DWORD count,
                            LPSOCKADDR internal, LPDWORD internal_len, INT protocol,
                            DWORD flags, REFGUID guid, IFWXSessionFilter *sf, IUnknown *ctx,
                            IFWXFirewallAction **actions);
HRESULT anticipate_bind_for_client(struct session *s, LPSOCKADDR *clients, DWORD len,
                                   LPSOCKADDR proxy, DWORD proxy_len, INT protocol, DWORD count,
                                   DWORD flags, INT backlog, REFGUID guid,
                                   IFWXSessionFilter *sf, IUnknown *ctx, IFWXIpFilter *ipf,
                                   IFWXConnection **conns);
HRESULT anticipate_emulate_client_bind(struct session *s, LPSOCKADDR client, DWORD len,
                                       LPSOCKADDR proxy, DWORD proxy_len, INT protocol,
                                       REFGUID guid, IFWXConnection **conn);
HRESULT anticipate_retroactive_allow_bind(struct session *s, INT protocol, LPSOCKADDR addr,
                                          DWORD len, REFGUID guid, DWORD flags,
                                          IFWXIpFilter *ipf);

/* Outbound rules (connection.c): is a connection from this session's client
 * to win_target (Win32 layout) anticipated by AllowFutureConnect? Returns
 * the action with a reference (a one-shot one is used up), or NULL. */
struct anticipation *anticipate_take_connect(struct session *s, const void *win_target, int len);
/* fwx_EstablishedConnection for c, to the registering session filter only,
 * with its punkContext as UserContext. No lock held; loop thread. */
void anticipate_established(struct anticipation *a, struct connection *c);
void anticipate_addref(struct anticipation *a);
void anticipate_release(struct anticipation *a);

/* IFWXConnection::SetClientAddress on a BindForClient connection object:
 * the address accepted connections are forwarded to, if it was zero. */
HRESULT anticipate_set_client_address(struct anticipation *a, LPSOCKADDR addr, DWORD len);

/* The session ends (session_end): its actions are cancelled. */
void anticipate_session_end(struct session *s);
/* host_stop: every action is cancelled; waits up to timeout_ms for the
 * listeners to close on their loops. */
void anticipate_stop_all(unsigned timeout_ms);

#endif /* FWX_ANTICIPATE_H */
