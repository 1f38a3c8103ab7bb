#!/bin/bash
# udptproxy.sh - outbound (transparent) UDP rules, per flavour, in a three-namespace
# topology: client -- gateway (fwxhost) -- server (dnsmasq). The gateway does not
# forward; iptables TPROXY hands the client's DNS datagrams to fwxhost, which is the
# only path to the server. Checks: dig in the client namespace gets dnsmasq's answer
# from the server's own address; dnsguard sees ExternalAddress = the server for both
# directions; a malformed query is dropped and logged; 2000 queries from 20 client
# sources lose none; without the rule nothing gets through. Root only (visible SKIP).
# TAP; environment as for tests/fwxhost.sh.
set -u
TL_TAIL=15
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tl_setup fwx-udptp
peer=$B/tests/peers/udppeer
if [ "$(id -u)" != 0 ]; then
    echo "1..0 # SKIP needs root (network namespaces, iptables TPROXY)"
    exit 77
fi
for tool in dnsmasq dig ip iptables; do
    if ! command -v $tool > /dev/null; then
        echo "1..0 # SKIP $tool is not installed"
        exit 77
    fi
done
setup() {
    tl_topology fxu 10.201 &&
    # TPROXY: the client's DNS datagrams go to the rule's port on the gateway.
    ip netns exec $ng iptables -t mangle -A PREROUTING -i fxug$$ -p udp --dport 53 \
        -j TPROXY --on-port 5300 --on-ip 0.0.0.0 --tproxy-mark 0x1/0x1 &&
    ip -n $ng rule add fwmark 0x1/0x1 lookup 100 &&
    ip -n $ng route add local 0.0.0.0/0 dev lo table 100
}
if ! setup > "$T/setup.log" 2>&1; then
    echo "1..0 # SKIP cannot build the namespace topology: $(tail -n 1 "$T/setup.log")"
    exit 77
fi
C=$nc G=$ng

# UdpRcvbufErrors of a namespace: datagrams its kernel dropped at a full
# receive buffer (the peer's loss when it is the server's namespace).
udp_rcvbuf_errors() {
    ip netns exec "$1" awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "RcvbufErrors") c = i; h = 1 } else print $c }' /proc/net/snmp
}
# flood_judged NS_SRV ARGS...: runs a flood from the client namespace and
# prints its summary line plus " server-drops N gateway-drops N"; a loss
# is fwxhost's unless the server's kernel dropped at least as many.
flood_judged() {
    local s0 g0 out
    s0=$(udp_rcvbuf_errors $nsv) g0=$(udp_rcvbuf_errors $G)
    out=$(ip netns exec $C "$peer" flood "$@" 2>&1)
    echo "$out server-drops $(( $(udp_rcvbuf_errors $nsv) - s0 )) gateway-drops $(( $(udp_rcvbuf_errors $G) - g0 ))"
}
# none_lost_by_host "SUMMARY": true when nothing was lost, or every loss is
# one the server namespace's kernel counted at dnsmasq's full socket.
none_lost_by_host() {
    local lost sd
    lost=$(sed -n 's/.* lost \([0-9]*\) bad 0 .*/\1/p' <<< "$1")
    sd=$(sed -n 's/.* server-drops \([0-9]*\) .*/\1/p' <<< "$1")
    [ -n "$lost" ] && [ -n "$sd" ] && [ "$lost" -le "$sd" ]
}
tl_dnsmasq 10.201.2.2 53 $nsv
got=$(ip netns exec $C dig @10.201.2.2 example.test +short +time=1 +tries=1 2>&1)
if [ "$got" != 10.1.2.3 ]; then
    ok "without fwxhost the client cannot reach the server (the gateway is the only path)"
else
    fail "without fwxhost the client cannot reach the server (got '$got')"
fi

# The Wine server of the shared prefix must live in the default namespace, not in the
# gateway's (other tests' Winsock calls would land there): make sure one runs, here.
"${FWX_WINESERVER:-wineserver}" -p60 2> /dev/null
for flavour in ${FWX_FLAVOURS:-x64}; do
    glog=$T/guard-$flavour.txt
    hlog=$T/host-$flavour.log
    cat > "$T/$flavour.ini" << EOF
[host]
log-level = info
control = $T/ctl-$flavour.sock

[filter guard]
path = $B/filters/$flavour/dnsguard.dll

[rule lan-dns]
type = outbound
protocol = udp
listen = 0.0.0.0:5300
udp-timeout = 5
EOF
    FWX_DNSGUARD_LOG=$glog FWX_DNSGUARD_EXTADDR=1 \
        ip netns exec $G "$B/bin/fwxhost" --config "$T/$flavour.ini" 2> "$hlog" &
    hp=$!
    pids+=($hp)
    if ! wait_ready "$hlog" $hp 30; then
        fail "$flavour: fwxhost starts with an outbound UDP rule" "$hlog"
        continue
    fi
    got=$(ip netns exec $C dig @10.201.2.2 example.test +short +time=3 +tries=1 2>&1)
    if [ "$got" = 10.1.2.3 ] && grep -q 'new UDP client 10.201.1.2:[0-9]* to 10.201.2.2:53' "$hlog"; then
        ok "$flavour: dig in the client namespace gets 10.1.2.3 through the transparent rule"
    else
        fail "$flavour: dig in the client namespace gets 10.1.2.3 through the transparent rule ('$got')" \
            "$hlog" "$glog"
    fi
    if grep -qx 'recv internal ext=10.201.2.2:53' "$glog" &&
       grep -qx 'recv external ext=10.201.2.2:53' "$glog" &&
       ! grep '^recv ' "$glog" | grep -vqx 'recv \(internal\|external\) ext=10.201.2.2:53'; then
        ok "$flavour: ExternalAddress is the original destination (internal side) and the source (external side)"
    else
        fail "$flavour: ExternalAddress is the original destination and the source" "$glog"
    fi
    out=$(ip netns exec $C "$peer" raw --connect 10.201.2.2:53 --kind longname --timeout-ms 700 \
          --follow example.test 2>&1)
    if [ "$out" = "no reply
then answer 10.1.2.3" ] && grep -q '^drop name-too-long' "$glog"; then
        ok "$flavour: an over-long name is dropped and logged; the next query passes"
    else
        fail "$flavour: an over-long name is dropped and logged; the next query passes ($out)" "$glog"
    fi
    out=$(flood_judged --connect 10.201.2.2:53 --name example.test \
          --expect 10.1.2.3 --sources 20 --queries 2000 --window 2 --timeout-ms 5000)
    if none_lost_by_host "$out"; then
        ok "$flavour: 2000 queries from 20 client sources, none lost by fwxhost ($out)"
    else
        fail "$flavour: 2000 queries from 20 client sources, none lost ($out)" "$hlog"
    fi
    kill -TERM $hp
    wait $hp 2> /dev/null

    # The same rule without any filter: the host's own datagram path.
    sed '/^\[filter guard\]/,/^$/d' "$T/$flavour.ini" > "$T/direct-$flavour.ini"
    ip netns exec $G "$B/bin/fwxhost" --config "$T/direct-$flavour.ini" 2> "$T/direct-$flavour.log" &
    hp=$!
    pids+=($hp)
    if ! wait_ready "$T/direct-$flavour.log" $hp 30; then
        fail "$flavour/direct: fwxhost starts" "$T/direct-$flavour.log"
        continue
    fi
    got=$(ip netns exec $C dig @10.201.2.2 example.test +short +time=3 +tries=1 2>&1)
    out=$(flood_judged --connect 10.201.2.2:53 --name example.test \
          --expect 10.1.2.3 --sources 20 --queries 2000 --window 2 --timeout-ms 5000)
    if [ "$got" = 10.1.2.3 ] && none_lost_by_host "$out" &&
       ! grep -q 'filter' "$T/direct-$flavour.ini"; then
        ok "$flavour/direct: no filter: dig answered, 2000 queries from 20 sources, none lost by fwxhost ($out)"
    else
        fail "$flavour/direct: no filter: dig ('$got') and 2000 queries ($out)" "$T/direct-$flavour.log"
    fi
    kill -TERM $hp
    wait $hp 2> /dev/null
done
tl_done
