#!/bin/bash
# connector.sh - a protocol with secondary connections on random ports in both directions
# (tests/peers/connpeer.c, like the ISA 2000 SDK's Connector application) through fwxhost
# and the connector test filter, between network namespaces:
#
#   client ns (10.202.1.2) --- gateway ns, fwxhost (10.202.1.1 | 10.202.2.1) --- server ns,
#   connpeer server (10.202.2.2:7000)
#
# The gateway does not forward (net.ipv4.ip_forward = 0). Published (client to
# 10.202.1.1:7070) and as SecureNAT (client to 10.202.2.2:7000, iptables REDIRECT to an
# outbound rule; every other port to a secondary-only rule), the client asks for 12
# inbound secondary connections (BIND: BindForClient, RetroactiveAllowBind) and 12
# outbound ones (OPEN: RedirectConnections or AllowFutureConnect), all at once, 256 KiB
# each way on each. Then: cancelled OPEN actions refuse their connections, and a
# BindForClient bind that nobody used within [host] secondary-timeout refuses the late
# connection. Session expiry (HOST-1000): a SecureNAT client's session that has had no
# connection for [host] session-timeout ends; its session filters are detached
# (sessionlog), its BindForClient bind is cancelled and refuses the server's late
# connection, and the client's next connection gets a new session (AttachToSession).
#
# Needs root, ip and iptables; otherwise prints a visible SKIP.
# Environment as for tests/fwxhost.sh (FWX_BUILDDIR, FWX_FLAVOURS, WINEPREFIX).
set -u

TL_WHAT="connector protocol through fwxhost in network namespaces"
TL_KEEP=${CONNECTOR_TEST_KEEP:-}
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tl_setup fwx-connector
PEER=$B/tests/peers/connpeer
K=12 BYTES=262144
tl_require root ip iptables timeout
[ -x "$PEER" ] || { echo "not ok 1 - tests/peers/connpeer is not built"; echo "1..1"; exit 1; }
chmod 755 "$T"
tl_topology fxk 10.202 2> "$T/netns.err" || skip_all "cannot build the namespaces ($(tr '\n' ' ' < "$T/netns.err"))"
if ! ip netns exec "$ng" iptables -t nat -A PREROUTING -i fxkg$$ -p tcp -d $SERVER --dport 7000 \
        -j REDIRECT --to-ports 2221 2> "$T/ipt.err" ||
   ! ip netns exec "$ng" iptables -t nat -A PREROUTING -i fxkg$$ -p tcp -d $SERVER --dport 7002 \
        -j REDIRECT --to-ports 2221 2>> "$T/ipt.err" ||
   ! ip netns exec "$ng" iptables -t nat -A PREROUTING -i fxkg$$ -p tcp -d $SERVER \
        -j REDIRECT --to-ports 2222 2>> "$T/ipt.err"; then
    skip_all "iptables NAT unavailable in the gateway namespace ($(tr '\n' ' ' < "$T/ipt.err"))"
fi

# Three servers: 7000 answers at once, 7001 waits 2.5 s before it connects for a BIND,
# 7002 (SecureNAT only, session expiry) 6 s.
ip netns exec "$nsv" "$PEER" server --listen $SERVER:7000 > "$T/server.log" 2>&1 &
pids+=($!)
ip netns exec "$nsv" "$PEER" server --listen $SERVER:7001 --delay-ms 2500 > "$T/server-slow.log" 2>&1 &
pids+=($!)
ip netns exec "$nsv" "$PEER" server --listen $SERVER:7002 --delay-ms 6000 > "$T/server-late.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do
    [ "$(cat "$T/server.log" "$T/server-slow.log" "$T/server-late.log" | grep -c ready)" = 3 ] && break
    sleep 0.1
done

HOST_PID=
start_host() {  # FLAVOUR LOG [ENV=VALUE...] (extra [host] lines in $HOST_EXTRA)
    local f=$1 log=$2
    shift 2
    cat > "$T/conn-$f.ini" << EOF
[host]
workers = 2
log-level = info
control = $T/ctl-$f.sock
${HOST_EXTRA:-}

[filter connector]
path = $B/filters/$f/connector.dll
${FILTER_EXTRA:-}

[rule connector]
listen = $GW_IN:7070
target = $SERVER:7000

[rule connector-slow]
listen = $GW_IN:7071
target = $SERVER:7001

[rule ctl-out]
type = outbound
listen = *:2221

[rule data-out]
type = outbound
listen = *:2222
secondary-only = yes
EOF
    ns_host "$ng" "$T/conn-$f.ini" "$log" 4 "$@"
}
client() {  # OUT ADDR:PORT [connpeer options]
    local out=$1 addr=$2
    shift 2
    ip netns exec "$nc" "$PEER" client --connect "$addr" "$@" > "$out" 2>&1
}

for f in $FLAVOURS; do
    log=$T/host-$f.log
    if ! start_host $f "$log"; then
        fail "$f: fwxhost with the connector filter starts in the gateway namespace" "$log"
        continue
    fi
    for setup in publish securenat; do
        [ $setup = publish ] && addr=$GW_IN:7070 || addr=$SERVER:7000
        out=$T/client-$f-$setup.out
        if client "$out" $addr --inbound $K --outbound $K --bytes $BYTES --seed 11 --timeout 20; then
            ok "$f $setup: $K inbound + $K outbound secondary connections at once, $BYTES bytes each way, intact"
        else
            fail "$f $setup: $K inbound + $K outbound secondary connections intact" "$out" "$log"
        fi
    done
    stop_host
    est=$(grep -c 'connector: established data connection .*: context [0-9]* ok' "$log")
    bad=$(grep -c 'is NOT ours' "$log")
    retro_none=$(grep -c 'RetroactiveAllowBind 0\.0\.0\.0:[0-9]*: 0x80072741' "$log")
    retro_ours=$(grep -c 'RetroactiveAllowBind 10\.202\.2\.1:[0-9]*: 0x800700b7' "$log")
    binds=$(grep -c 'BindForClient #[0-9]*: .* -> ' "$log")
    if [ "$est" -ge $((4 * K)) ] && [ "$bad" = 0 ] && [ "$binds" -ge $((2 * K)) ] &&
       [ "$retro_none" -ge $((2 * K)) ] && [ "$retro_ours" -ge $((2 * K)) ] && [ "$HOST_RC" = 0 ]; then
        ok "$f: $est fwx_EstablishedConnection with the filter's context, $binds binds; RetroactiveAllowBind fails without a bind and finds BindForClient's; clean exit"
    else
        fail "$f: events and binds (established $est, foreign $bad, binds $binds, retroactive without bind $retro_none, on ours $retro_ours, exit $HOST_RC)" "$log"
    fi

    # Cancelled OPEN actions: the client's connections are refused, in both set-ups.
    log=$T/host-$f-cancel.log
    if start_host $f "$log" CONNECTOR_CANCEL=1; then
        for setup in publish securenat; do
            [ $setup = publish ] && addr=$GW_IN:7070 || addr=$SERVER:7000
            out=$T/cancel-$f-$setup.out
            client "$out" $addr --inbound 0 --outbound 2 --bytes 1000 --seed 3 --timeout 5
            rc=$?
            if [ $rc = 2 ] && grep -q 'OPEN seed' "$out" &&
               [ "$(grep -c 'cancelled by the filter' "$log")" -ge 2 ]; then
                ok "$f $setup: cancelled OPEN actions refuse the connections ($(grep -m1 'OPEN seed' "$out" | cut -c1-90))"
            else
                fail "$f $setup: cancelled OPEN actions refuse the connections (client exit $rc)" "$out" "$log"
            fi
        done
        stop_host
        if ! grep -q 'established data connection' "$log"; then
            ok "$f: no fwx_EstablishedConnection for cancelled actions"
        else
            fail "$f: no fwx_EstablishedConnection for cancelled actions" "$log"
        fi
    else
        fail "$f: fwxhost starts (cancel run)" "$log"
    fi

    # A bind unused for secondary-timeout (1 s) refuses the server's late connection.
    log=$T/host-$f-expire.log
    HOST_EXTRA="secondary-timeout = 1"
    if start_host $f "$log"; then
        out=$T/expire-$f.out
        client "$out" $GW_IN:7071 --inbound 1 --outbound 0 --bytes 1000 --seed 5 --timeout 6
        rc=$?
        stop_host
        if [ $rc = 2 ] && grep -q 'BindForClient #[0-9]* .*expired (secondary-timeout)' "$log" &&
           ! grep -q 'established data connection' "$log"; then
            ok "$f: a BindForClient bind unused for secondary-timeout refuses the late connection"
        else
            fail "$f: a BindForClient bind unused for secondary-timeout refuses the late connection (client exit $rc)" "$out" "$log"
        fi
    else
        fail "$f: fwxhost starts (expiry run)" "$log"
    fi
    HOST_EXTRA=

    # Session expiry: the client's session (SecureNAT, to 7002) ends 1-2 s after its
    # control connection closed; the server connects for its BIND after 6 s.
    log=$T/host-$f-session.log slf=$T/sessionlog-$f.txt
    HOST_EXTRA="session-timeout = 1"
    FILTER_EXTRA="[filter sessionlog]
path = $B/filters/$f/sessionlog.dll"
    : > "$slf"
    if start_host $f "$log" FWX_SESSIONLOG_FILE="$slf"; then
        out=$T/session-$f.out
        client "$out" $SERVER:7002 --inbound 1 --outbound 0 --bytes 1000 --seed 7 --timeout 9 --close-early
        rc=$?
        est1=$(grep -c 'established data connection' "$log")
        for _ in $(seq 1 50); do
            grep -q 'session client 10.202.1.2: ended after 1 s without a connection' "$log" && break
            sleep 0.1
        done
        out2=$T/session-again-$f.out
        client "$out2" $SERVER:7000 --inbound 0 --outbound 1 --bytes 1000 --seed 9 --timeout 9
        rc2=$?
        stop_host
        # sessionlog: a SessionFilter::Detach after the first connection's fwx_Connect_Tcp,
        # then a fresh AttachToSession before the second one's.
        order=$(grep -nE '^(AttachToSession|SessionFilter::Detach|FirewallEventHandler fwx_Connect_Tcp)$' "$slf" |
                awk -F: '/fwx_Connect_Tcp/ { c++; if (c == 1) s = 1; else if (c == 2 && s == 3) ok = 1; next }
                         s == 1 && /SessionFilter::Detach/ { s = 2; next }
                         s == 2 && /AttachToSession/ { s = 3 }
                         END { print ok ? "yes" : "no" }')
        if [ $rc = 2 ] && grep -q 'BindForClient #[0-9]* .*cancelled: its session ended' "$log" &&
           [ "$est1" = 0 ] && grep -q 'nothing connected' "$out"; then
            ok "$f: a BindForClient bind of a session that expired (session-timeout = 1) refuses the server's late connection"
        else
            fail "$f: a BindForClient bind of an expired session refuses the late connection (client exit $rc, established $est1)" "$out" "$log"
        fi
        if [ $rc2 = 0 ] && [ "$order" = yes ]; then
            ok "$f: the expired session's filters got Detach; the client's next connection got a new session (AttachToSession) and worked"
        else
            fail "$f: Detach then a fresh AttachToSession after expiry (client exit $rc2, order $order)" "$out2" "$slf" "$log"
        fi
    else
        fail "$f: fwxhost starts (session expiry run)" "$log"
    fi
    HOST_EXTRA= FILTER_EXTRA=
done
tl_done
