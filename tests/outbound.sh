#!/bin/bash
# outbound.sh - end-to-end test of an outbound rule: a client connects to
# its own destination, iptables REDIRECT sends the connection to fwxhost,
# and the host raises fwx_Connect_Tcp in the client's session, connects to
# the original destination (SO_ORIGINAL_DST) and pumps through the filter.
#
# Runs inside a network namespace this test creates (ip netns), so the NAT
# rule touches nothing outside it. The client runs as uid 65534 and the
# REDIRECT matches that uid only, so the host's own connection to the real
# destination is not redirected back to itself. Needs root, ip, iptables
# and setpriv; otherwise prints a visible SKIP.
#
# Environment as for tests/fwxhost.sh (FWX_BUILDDIR, FWX_FLAVOURS, WINEPREFIX).
set -u

TL_WHAT="outbound rule in a network namespace"
TL_TAIL=20
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tl_setup fwx-outbound
# Connections by uid 65534 to 127.0.0.3:8080 go to the host on 127.0.0.1:3128.
tl_outbound_ns fwxout
tl_fxpeer
peer=$FXPEER

ip netns exec "$ns" "$peer" server --listen 127.0.0.3:8080 --send 300000 --seed 7 > "$T/server.log" 2>&1 &
pids+=($!)

for f in $FLAVOURS; do
    log=$T/host-$f.log slog=$T/sessionlog-$f.txt
    cat > "$T/out-$f.ini" << EOF
[host]
workers = 2
log-level = info

[filter sessionlog]
path = $B/filters/$f/sessionlog.dll

[rule out]
type = outbound
listen = 127.0.0.1:3128
EOF
    FWX_SESSIONLOG_FILE=$slog ip netns exec "$ns" "$B/bin/fwxhost" --config "$T/out-$f.ini" 2> "$log" &
    hp=$!
    pids+=($hp)
    if ! wait_ready "$log" $hp; then
        fail "$f outbound: fwxhost starts in the namespace" "$log"
        continue
    fi
    if inns setpriv --reuid=65534 --regid=65534 --clear-groups \
            "$peer" client --connect 127.0.0.3:8080 --conns 20 --send 200000 --recv 300000 --seed 7 \
            > "$T/client-$f.log" 2>&1; then
        ok "$f outbound: 20 redirected connections through sessionlog, byte-identical both ways ($(tail -n 1 "$T/client-$f.log"))"
    else
        fail "$f outbound: redirected connections arrive intact" "$T/client-$f.log" "$log"
    fi
    # A connection straight to the host's port was not redirected: refused.
    inns "$peer" probe --connect 127.0.0.1:3128 --timeout 5 > "$T/probe-$f.log" 2>&1
    if grep -q 'received 0 bytes; closed' "$T/probe-$f.log" && grep -q 'was not redirected' "$log"; then
        ok "$f outbound: a connection that was not redirected is refused and logged"
    else
        fail "$f outbound: a connection that was not redirected is refused and logged" "$T/probe-$f.log" "$log"
    fi
    kill -TERM $hp
    wait $hp
    rc=$?
    if grep -q 'FirewallEventHandler fwx_Connect_Tcp' "$slog" 2> /dev/null &&
       attaches=$(grep -c '^AttachToSession' "$slog") && [ "$attaches" -le 2 ] && [ $rc = 0 ]; then
        # One session for the client address: a session per connection would
        # attach 20 times. Two workers may attach at once; the loser is
        # detached at once (HOST-003), hence at most 2.
        ok "$f outbound: fwx_Connect_Tcp in one client session for 20 connections, clean exit"
    else
        fail "$f outbound: fwx_Connect_Tcp raised in one client session, exit 0 (was $rc)" "$slog" "$log"
    fi
done
tl_done
