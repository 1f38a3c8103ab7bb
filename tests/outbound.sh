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

B=$(cd "${FWX_BUILDDIR:?FWX_BUILDDIR not set}" && pwd)
FLAVOURS=${FWX_FLAVOURS:-x64}
: "${WINEPREFIX:?WINEPREFIX not set}"
export WINEPREFIX WINEDEBUG=${WINEDEBUG:--all}

n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; shift; for f in "$@"; do [ -f "$f" ] && tail -n 20 "$f" | sed 's/^/#   | /'; done; }

missing=""
[ "$(id -u)" = 0 ] || missing="root"
for tool in ip iptables setpriv; do
    command -v $tool > /dev/null || missing="$missing $tool"
done
if [ -n "$missing" ]; then
    echo "ok 1 # SKIP outbound rule in a network namespace: needs$missing"
    echo "1..1"
    exit 0
fi

T=$(mktemp -d /tmp/fwx-outbound.XXXXXX) || exit 99
chmod 755 "$T"
ns=fwxout$$
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2> /dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2> /dev/null; done
    ip netns del "$ns" 2> /dev/null
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 99' INT TERM HUP

# Foreground only: a backgrounded function is a subshell, and its pid is not
# the process to signal.
inns() { ip netns exec "$ns" "$@"; }

if ! ip netns add "$ns" 2> "$T/netns.err" || ! inns ip link set lo up; then
    echo "ok 1 # SKIP outbound rule: cannot create a network namespace ($(cat "$T/netns.err"))"
    echo "1..1"
    exit 0
fi
# Connections by uid 65534 to 127.0.0.3:8080 go to the host on 127.0.0.1:3128.
if ! inns iptables -t nat -A OUTPUT -p tcp -d 127.0.0.3 --dport 8080 \
        -m owner --uid-owner 65534 -j REDIRECT --to-ports 3128 2> "$T/ipt.err"; then
    echo "ok 1 # SKIP outbound rule: iptables NAT unavailable here ($(cat "$T/ipt.err"))"
    echo "1..1"
    exit 0
fi

peer=$B/tests/peers/fxpeer
[ -x "$peer" ] || { echo "not ok 1 - tests/peers/fxpeer is not built"; exit 1; }

wait_ready() {  # LOG PID
    for _ in $(seq 1 150); do
        grep -q 'fwxhost: ready' "$1" && return 0
        kill -0 "$2" 2> /dev/null || return 1
        sleep 0.1
    done
    return 1
}

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
        not_ok "$f outbound: fwxhost starts in the namespace" "$log"
        continue
    fi
    if inns setpriv --reuid=65534 --regid=65534 --clear-groups \
            "$peer" client --connect 127.0.0.3:8080 --conns 20 --send 200000 --recv 300000 --seed 7 \
            > "$T/client-$f.log" 2>&1; then
        ok "$f outbound: 20 redirected connections through sessionlog, byte-identical both ways ($(tail -n 1 "$T/client-$f.log"))"
    else
        not_ok "$f outbound: redirected connections arrive intact" "$T/client-$f.log" "$log"
    fi
    # A connection straight to the host's port was not redirected: refused.
    inns "$peer" probe --connect 127.0.0.1:3128 --timeout 5 > "$T/probe-$f.log" 2>&1
    if grep -q 'received 0 bytes; closed' "$T/probe-$f.log" && grep -q 'was not redirected' "$log"; then
        ok "$f outbound: a connection that was not redirected is refused and logged"
    else
        not_ok "$f outbound: a connection that was not redirected is refused and logged" "$T/probe-$f.log" "$log"
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
        not_ok "$f outbound: fwx_Connect_Tcp raised in one client session, exit 0 (was $rc)" "$slog" "$log"
    fi
done
echo "1..$n"
[ $failed = 0 ]
