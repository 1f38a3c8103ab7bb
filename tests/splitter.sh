#!/bin/bash
# splitter.sh - one public port shared by two internal servers through inbound emulation
# (reference 2.9, HOST-1001) and the splitter test filter (the SDK's ServerSplit idea),
# between network namespaces:
#
#   client ns (10.203.1.2) --- gateway ns, fwxhost (10.203.1.1 | 10.203.2.1) --- server ns:
#       alpha 10.203.2.2:8001, beta 10.203.2.3:8002 (fxpeer sinks), and the rule's own
#       target 10.203.2.2:8009 (a sink that must stay unused: the host never connects there)
#
# The gateway does not forward (net.ipv4.ip_forward = 0), so the servers are reachable
# from the client only through the filter's network socket. Each client sends a first
# line "HOST name" and a payload to 10.203.1.1:8000; the splitter connects to that
# server and pumps. Checked: each server received exactly the bytes of the clients routed
# to it (first line included), each client got its server's reply, an unknown name and a
# first line that is not a HOST line are refused (reset, nothing reaches a server), the
# rule's target is never contacted.
#
# Needs root and ip; otherwise prints a visible SKIP.
# Environment as for tests/fwxhost.sh (FWX_BUILDDIR, FWX_FLAVOURS, WINEPREFIX).
set -u

TL_WHAT="splitter (inbound emulation) in network namespaces"
TL_KEEP=${SPLITTER_TEST_KEEP:-}
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tl_setup fwx-splitter
PEER=$B/tests/peers/fxpeer
tl_require root ip timeout cmp head
[ -x "$PEER" ] || { echo "not ok 1 - tests/peers/fxpeer is not built"; echo "1..1"; exit 1; }
chmod 755 "$T"
tl_topology fxp 10.203 10.203.2.3 2> "$T/netns.err" || skip_all "cannot build the namespaces ($(tr '\n' ' ' < "$T/netns.err"))"
ALPHA=$SERVER BETA=10.203.2.3

# The requests: a first line, then a payload of random bytes.
mkreq() {  # FILE FIRSTLINE KIB
    { printf '%s' "$2"; head -c $(($3 * 1024)) /dev/urandom; } > "$1"
}
mkreq "$T/alpha1.req" $'HOST alpha\r\n' 300
mkreq "$T/beta1.req" $'HOST beta\n' 200
mkreq "$T/alpha2.req" $'HOST alpha\n' 100
mkreq "$T/gamma.req" $'HOST gamma\n' 1
mkreq "$T/junk.req" $'GET / HTTP/1.0\r\n' 1

send() {  # REQ OUT
    ip netns exec "$nc" "$PEER" send --connect $GW_IN:8000 --file "$1" --out "$2" --timeout 15 \
        > "$2.log" 2>&1
}

for f in $FLAVOURS; do
    d=$T/$f
    mkdir -p "$d"
    spids=()
    for s in alpha:$ALPHA:8001 beta:$BETA:8002 target:$ALPHA:8009; do
        IFS=: read -r name addr port <<< "$s"
        ip netns exec "$nsv" "$PEER" sink --listen $addr:$port --out "$d/$name.got" \
            --reply "$name:ok" > "$d/$name.log" 2>&1 &
        spids+=($!)
        pids+=($!)
    done
    for _ in $(seq 1 50); do
        [ "$(cat "$d"/alpha.log "$d"/beta.log "$d"/target.log | grep -c ready)" = 3 ] && break
        sleep 0.1
    done
    cat > "$d/split.ini" << EOF
[host]
workers = 2
log-level = info
control = $d/ctl.sock

[filter splitter]
path = $B/filters/$f/splitter.dll

[rule split]
listen = $GW_IN:8000
target = $ALPHA:8009
EOF
    log=$d/host.log
    if ! ns_host "$ng" "$d/split.ini" "$log" 1 SPLITTER_ROUTES="alpha=$ALPHA:8001,beta=$BETA:8002,bad=1.2.3"; then
        fail "$f: fwxhost with the splitter filter starts in the gateway namespace" "$log"
        stop_host
        for p in "${spids[@]}"; do kill -TERM $p; wait $p; done
        continue
    fi

    # Sequential, so that each sink's file is the concatenation in order.
    for r in alpha1 beta1 alpha2; do
        send "$T/$r.req" "$d/$r.reply"
        echo $? > "$d/$r.rc"
    done
    for r in gamma junk; do
        send "$T/$r.req" "$d/$r.reply"
        echo $? > "$d/$r.rc"
    done
    stop_host
    hrc=$HOST_RC
    for p in "${spids[@]}"; do kill -TERM $p; wait $p; done

    # Routed clients: replies, and the servers' bytes.
    cat "$T/alpha1.req" "$T/alpha2.req" > "$d/alpha.want"
    if [ "$(cat "$d/alpha1.rc" "$d/beta1.rc" "$d/alpha2.rc" | tr -d '\n')" = 000 ] &&
       [ "$(cat "$d/alpha1.reply")" = alpha:ok ] && [ "$(cat "$d/alpha2.reply")" = alpha:ok ] &&
       [ "$(cat "$d/beta1.reply")" = beta:ok ]; then
        ok "$f: three clients on one public port routed by their first line (alpha, beta, alpha) got their server's reply"
    else
        fail "$f: clients routed by their first line get their server's reply" "$d/alpha1.reply.log" "$d/beta1.reply.log" "$d/alpha2.reply.log" "$log"
    fi
    if cmp -s "$d/alpha.want" "$d/alpha.got" && cmp -s "$T/beta1.req" "$d/beta.got" &&
       grep -q 'sink: connection 2:' "$d/alpha.log" && ! grep -q 'sink: connection 3:' "$d/alpha.log" &&
       grep -q 'sink: connection 1:' "$d/beta.log" && ! grep -q 'sink: connection 2:' "$d/beta.log"; then
        ok "$f: alpha received exactly its two clients' $(stat -c %s "$d/alpha.got") bytes, beta its one client's $(stat -c %s "$d/beta.got") (first lines included)"
    else
        fail "$f: each server receives exactly its clients' bytes (alpha $(stat -c %s "$d/alpha.got" 2> /dev/null), beta $(stat -c %s "$d/beta.got" 2> /dev/null))" "$d/alpha.log" "$d/beta.log" "$log"
    fi
    # Refused clients: no reply, nothing at any server, the filter's reason traced.
    if [ ! -s "$d/gamma.reply" ] && [ ! -s "$d/junk.reply" ] &&
       grep -q "fwx-filter splitter: unknown HOST 'gamma': refused" "$log" &&
       grep -q 'fwx-filter splitter: first line is not "HOST name": refused' "$log"; then
        ok "$f: an unknown HOST name and a non-HOST first line are refused, nothing reaches a server"
    else
        fail "$f: an unknown name and a bad first line are refused" "$d/gamma.reply.log" "$d/junk.reply.log" "$log"
    fi
    if [ ! -s "$d/target.got" ] && ! grep -q 'sink: connection' "$d/target.log" &&
       [ "$(grep -c 'emulated by filter splitter (EmulateConnection)' "$log")" = 5 ] &&
       grep -q 'SPLITTER_ROUTES: ignoring "bad=1.2.3"' "$log" && [ $hrc = 0 ]; then
        ok "$f: all 5 connections emulated (EmulateConnection), the rule's target never contacted, bad route entry ignored, clean exit"
    else
        fail "$f: connections emulated, target never contacted, clean exit (exit $hrc)" "$d/target.log" "$log"
    fi
done
tl_done
