#!/bin/bash
# udp.sh - UDP publish rules (protocol = udp) end to end, per flavour, against dnsmasq on
# loopback:
#   - dig through fwxhost + dnsguard gets dnsmasq's answer;
#   - CompleteAsyncIO's ExternalAddress is what the seed says: on a UDP connection the
#     target (dnsmasq) for receives from both sides of a publishing rule, NULL for TCP;
#   - malformed queries (5 kinds) are dropped and logged with their reason, and the same
#     source's next valid query is answered (a drop does not stall the path);
#   - a silent client address expires after udp-timeout (destination cache);
#   - fwx_Bind_Udp at rule start (AttachDataFilter refused there), and
#     IFWXUdpDestination::Deny drops a client's datagrams until it expires;
#   - two filters in a chain: datagrams and their ExternalAddress cross the in-memory link;
#   - 10 000 queries from 50 concurrent sources, no retries, lose none (with dnsguard, and
#     without any filter: the host's own datagram path);
#   - one connection per client address (50 sources, 50 connections);
#   - [host] max-sessions applies to UDP clients: over it, a new client address's
#     datagrams are dropped (logged once) until some sessions end.
# TAP; environment as for tests/fwxhost.sh.
set -u
TL_TAIL=15
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
peer=$B/tests/peers/udppeer
for tool in dnsmasq dig; do
    if ! command -v $tool > /dev/null; then
        echo "1..0 # SKIP $tool is not installed"
        exit 77
    fi
done
tl_setup fwx-udp
start_host() {  # NAME: config $T/NAME.ini, log $T/NAME.log; sets HOST_PID
    run_host "$T/$1.log" "$FWXHOST" --config "$T/$1.ini"
}
# udp_host_stops NAME: stops the host; a check that it stopped cleanly,
# every buffer and connection released.
udp_host_stops() {
    stop_host
    if [ "$HOST_RC" = 0 ] && ! grep -q 'still referenced\|released more often' "$T/$1.log" &&
       grep -q 'NOTICE: stopped:' "$T/$1.log"; then
        ok "$1: fwxhost stops cleanly with UDP connections open (exit 0, no buffer left referenced)"
    else
        fail "$1: fwxhost stops cleanly with UDP connections open (exit $HOST_RC)" "$T/$1.log"
    fi
}

free_port; dns=$PORT
tl_dnsmasq 127.0.0.1 $dns

for flavour in ${FWX_FLAVOURS:-x64}; do
    dll=$B/filters/$flavour/dnsguard.dll
    # ---- features: dnsguard with its ExternalAddress log, a UDP and a TCP rule
    free_port; uport=$PORT; free_port; tport=$PORT
    glog=$T/guard-$flavour.txt
    cat > "$T/feat-$flavour.ini" << EOF
[host]
log-level = info
control = $T/ctl-$flavour.sock

[filter guard]
path = $dll

[rule dns-udp]
protocol = udp
listen = 127.0.0.1:$uport
target = 127.0.0.1:$dns
udp-timeout = 1

[rule dns-tcp]
listen = 127.0.0.1:$tport
target = 127.0.0.1:$dns
EOF
    export FWX_DNSGUARD_LOG=$glog FWX_DNSGUARD_EXTADDR=1 FWX_DNSGUARD_TCP=1
    if ! start_host feat-$flavour; then
        fail "$flavour: fwxhost starts with a UDP rule" "$T/feat-$flavour.log"
        continue
    fi
    unset FWX_DNSGUARD_LOG FWX_DNSGUARD_EXTADDR FWX_DNSGUARD_TCP
    got=$(dig @127.0.0.1 -p $uport example.test +short +time=3 +tries=1 2>&1)
    if [ "$got" = 10.1.2.3 ] && grep -q 'rule dns-udp: new UDP client' "$T/feat-$flavour.log"; then
        ok "$flavour: dig through fwxhost + dnsguard (UDP) gets 10.1.2.3"
    else
        fail "$flavour: dig through fwxhost + dnsguard (UDP) gets 10.1.2.3 (got '$got')" \
            "$T/feat-$flavour.log" "$glog"
    fi
    if grep -qx "bind 127.0.0.1:$uport attach=0x80004001" "$glog"; then
        ok "$flavour: fwx_Bind_Udp at rule start for the listening address; AttachDataFilter there is E_NOTIMPL"
    else
        fail "$flavour: fwx_Bind_Udp at rule start for the listening address" "$glog"
    fi
    # The seed: the source when receiving from the external side, the target when
    # receiving from the internal side. Both are dnsmasq here.
    if grep -qx "recv internal ext=127.0.0.1:$dns" "$glog" &&
       grep -qx "recv external ext=127.0.0.1:$dns" "$glog" &&
       ! grep '^recv ' "$glog" | grep -vqx "recv \(internal\|external\) ext=127.0.0.1:$dns"; then
        ok "$flavour: UDP ExternalAddress is the target (internal side) and the source (external side)"
    else
        fail "$flavour: UDP ExternalAddress is the target (internal side) and the source (external side)" "$glog"
    fi
    got=$(dig @127.0.0.1 -p $tport example.test +tcp +short +time=3 +tries=1 2>&1)
    if [ "$got" = 10.1.2.3 ] && grep -qx 'recv internal ext=NULL' "$glog" &&
       grep -qx 'recv external ext=NULL' "$glog"; then
        ok "$flavour: TCP receives get a NULL ExternalAddress"
    else
        fail "$flavour: TCP receives get a NULL ExternalAddress (dig: '$got')" "$glog"
    fi
    for kind in short response longname pointer qdcount; do
        case $kind in
            short) why=short ;; response) why=response ;; longname) why=name-too-long ;;
            pointer) why=label ;; qdcount) why=qdcount ;;
        esac
        out=$("$peer" raw --connect 127.0.0.1:$uport --kind $kind --timeout-ms 700 \
              --follow example.test 2>&1)
        if [ "$out" = "no reply
then answer 10.1.2.3" ] && grep -q "^drop $why len=" "$glog"; then
            ok "$flavour: malformed query ($kind) dropped and logged ($why); the next query passes"
        else
            fail "$flavour: malformed query ($kind) dropped and logged ($why); the next query passes ($out)" "$glog"
        fi
    done
    # Every client address above has been silent for > udp-timeout (1 s) after this.
    sleep 2
    clients=$(grep -c 'rule dns-udp: new UDP client' "$T/feat-$flavour.log")
    expired=$(grep -c 'idle for 1 s: destination expired' "$T/feat-$flavour.log")
    if [ "$clients" -ge 6 ] && [ "$expired" = "$clients" ]; then
        ok "$flavour: $clients UDP client addresses expired after udp-timeout"
    else
        fail "$flavour: UDP client addresses expire after udp-timeout ($expired of $clients)" \
            "$T/feat-$flavour.log"
    fi
    udp_host_stops feat-$flavour

    # ---- deny: IFWXUdpDestination::Deny for every destination
    free_port; uport=$PORT
    glog=$T/guard-deny-$flavour.txt
    printf '[host]\nlog-level = info\ncontrol = %s\n\n[filter guard]\npath = %s\n\n' \
        "$T/ctl-$flavour.sock" "$dll" > "$T/deny-$flavour.ini"
    printf '[rule dns]\nprotocol = udp\nlisten = 127.0.0.1:%s\ntarget = 127.0.0.1:%s\nudp-timeout = 1\n' \
        $uport $dns >> "$T/deny-$flavour.ini"
    export FWX_DNSGUARD_LOG=$glog FWX_DNSGUARD_DENY=1
    if start_host deny-$flavour; then
        unset FWX_DNSGUARD_LOG FWX_DNSGUARD_DENY
        a=$("$peer" query --connect 127.0.0.1:$uport --name example.test --timeout-ms 700 2>&1)
        b=$("$peer" raw --connect 127.0.0.1:$uport --kind short --timeout-ms 300 \
            --follow example.test 2>&1)
        sleep 2
        hlog=$T/deny-$flavour.log
        if [ "$a" = "no answer" ] && [ "$b" = "no reply
then no answer" ] && [ "$(grep -c '^deny 0x00000000' "$glog")" = 2 ] &&
           [ "$(grep -c 'denied by filter guard' "$hlog")" = 2 ] &&
           [ "$(grep -c 'denied for 1 s: destination expired' "$hlog")" = 2 ]; then
            ok "$flavour: a denied destination gets no datagram and expires after udp-timeout"
        else
            fail "$flavour: a denied destination gets no datagram and expires ($a / $b)" "$glog" "$hlog"
        fi
        udp_host_stops deny-$flavour
    else
        unset FWX_DNSGUARD_LOG FWX_DNSGUARD_DENY
        fail "$flavour: fwxhost starts (deny)" "$T/deny-$flavour.log"
    fi

    # ---- chain: two data filters (dnsguard and a copy) on each connection; the
    # datagrams and their addresses cross an in-memory link (SendTo -> Recv)
    free_port; uport=$PORT
    cp "$dll" "$T/dnsguard2-$flavour.dll"
    glog=$T/guard-chain-$flavour.txt
    printf '[host]\nlog-level = info\ncontrol = %s\n\n[filter guard]\npath = %s\n\n[filter guard2]\npath = %s\n\n' \
        "$T/ctl-$flavour.sock" "$dll" "$T/dnsguard2-$flavour.dll" > "$T/chain-$flavour.ini"
    printf '[rule dns]\nprotocol = udp\nlisten = 127.0.0.1:%s\ntarget = 127.0.0.1:%s\n' \
        $uport $dns >> "$T/chain-$flavour.ini"
    export FWX_DNSGUARD_LOG=$glog FWX_DNSGUARD_EXTADDR=1
    if start_host chain-$flavour; then
        unset FWX_DNSGUARD_LOG FWX_DNSGUARD_EXTADDR
        out=$("$peer" flood --connect 127.0.0.1:$uport --name example.test --expect 10.1.2.3 \
              --sources 20 --queries 2000 --window 2 --timeout-ms 5000 2>&1)
        sleep 0.5
        in=$(grep -cx "recv internal ext=127.0.0.1:$dns" "$glog")
        ex=$(grep -cx "recv external ext=127.0.0.1:$dns" "$glog")
        other=$(grep '^recv ' "$glog" | grep -cvx "recv \(internal\|external\) ext=127.0.0.1:$dns")
        if [ "${out#sent 2000 answered 2000 lost 0 bad 0 }" != "$out" ] && [ "$in" = 4000 ] &&
           [ "$ex" = 4000 ] && [ "$other" = 0 ]; then
            ok "$flavour/chain: two filters, 2000 queries none lost; every Recv of both saw ExternalAddress = the target ($in + $ex)"
        else
            fail "$flavour/chain: two filters ($out; internal $in, external $ex, other $other)" \
                "$T/chain-$flavour.log" "$glog"
        fi
        udp_host_stops chain-$flavour
    else
        unset FWX_DNSGUARD_LOG FWX_DNSGUARD_EXTADDR
        fail "$flavour/chain: fwxhost starts" "$T/chain-$flavour.log"
    fi

    # ---- load: 10 000 queries from 50 sources, with dnsguard and with no filter
    for mode in guard direct; do
        free_port; uport=$PORT
        {
            printf '[host]\nlog-level = info\ncontrol = %s\n\n' "$T/ctl-$flavour.sock"
            [ $mode = guard ] && printf '[filter guard]\npath = %s\n\n' "$dll"
            printf '[rule dns]\nprotocol = udp\nlisten = 127.0.0.1:%s\ntarget = 127.0.0.1:%s\n' \
                $uport $dns
        } > "$T/$mode-$flavour.ini"
        export FWX_DNSGUARD_LOG=$T/guard-load-$flavour.txt
        if ! start_host $mode-$flavour; then
            fail "$flavour/$mode: fwxhost starts" "$T/$mode-$flavour.log"
            continue
        fi
        unset FWX_DNSGUARD_LOG
        # A window of 2 per source: dnsmasq's own socket drops beyond ~100 queued
        # queries (UdpRcvbufErrors), which would be its loss, not ours.
        out=$("$peer" flood --connect 127.0.0.1:$uport --name example.test --expect 10.1.2.3 \
              --sources 50 --queries 10000 --window 2 --timeout-ms 5000 2>&1)
        conns=$(grep -c 'rule dns: new UDP client' "$T/$mode-$flavour.log")
        if [ "${out#sent 10000 answered 10000 lost 0 bad 0 }" != "$out" ] &&
           [ "$conns" = 50 ]; then
            ok "$flavour/$mode: 10000 queries from 50 sources, none lost, one connection per source ($out)"
        else
            fail "$flavour/$mode: 10000 queries from 50 sources, none lost ($out; $conns connections)" \
                "$T/$mode-$flavour.log"
        fi
        udp_host_stops $mode-$flavour
    done

    # ---- [host] max-sessions counts UDP clients (HOST-901): with 2, a third client
    # address gets nothing (logged once) until the first two expire.
    free_port; uport=$PORT
    printf '[host]\nlog-level = info\nmax-sessions = 2\ncontrol = %s\n\n' "$T/ctl-$flavour.sock" \
        > "$T/max-$flavour.ini"
    printf '[rule dns]\nprotocol = udp\nlisten = 127.0.0.1:%s\ntarget = 127.0.0.1:%s\nudp-timeout = 2\n' \
        $uport $dns >> "$T/max-$flavour.ini"
    if start_host max-$flavour; then
        q() { "$peer" query --connect 127.0.0.1:$uport --name example.test --expect 10.1.2.3 \
              --timeout-ms ${1:-1000} 2>&1; }
        a1=$(q) a2=$(q) a3=$(q 700) a3b=$(q 700)
        sleep 3.5       # clients 1 and 2 expire (udp-timeout 2 s, checked every second)
        a4=$(q)
        hlog=$T/max-$flavour.log
        nlog=$(grep -c 'rule dns: max-sessions (2) reached; datagrams of new UDP clients' "$hlog")
        nconn=$(grep -c 'rule dns: new UDP client' "$hlog")
        if [ "$a1" = "answer 10.1.2.3" ] && [ "$a2" = "answer 10.1.2.3" ] && [ "$a3" = "no answer" ] &&
           [ "$a3b" = "no answer" ] && [ "$a4" = "answer 10.1.2.3" ] && [ "$nlog" = 1 ] && [ "$nconn" = 3 ]; then
            ok "$flavour: max-sessions 2 holds for UDP clients: the 3rd and 4th get nothing (logged once), a 5th is served once 2 expired"
        else
            fail "$flavour: max-sessions 2 holds for UDP clients ($a1 / $a2 / $a3 / $a3b / $a4; $nlog log lines, $nconn connections)" "$hlog"
        fi
        udp_host_stops max-$flavour
    else
        fail "$flavour/max-sessions: fwxhost starts" "$T/max-$flavour.log"
    fi
done
tl_done
