#!/bin/bash
# scaling.sh - two fwxhost instances behind HAProxy (an existing L4
# balancer, as in docs/scaling.md): both serve; one is stopped; new
# sessions go to the other and nothing a client sent is lost.
# TAP; uses the x64 flavour (the balancer does not care which).
#
# Environment as for tests/fwxhost.sh (FWX_BUILDDIR, WINEPREFIX). Needs
# haproxy (./fwx deps installs it); otherwise a visible SKIP.
set -u

B=$(cd "${FWX_BUILDDIR:?FWX_BUILDDIR not set}" && pwd)
: "${WINEPREFIX:?WINEPREFIX not set}"
export WINEPREFIX WINEDEBUG=${WINEDEBUG:--all}
haproxy=$(command -v haproxy || echo /usr/sbin/haproxy)
if [ ! -x "$haproxy" ]; then
    echo "ok 1 # SKIP two fwxhost instances behind HAProxy: haproxy not installed"
    echo "1..1"
    exit 0
fi
flavour=x64
case " ${FWX_FLAVOURS:-x64} " in *" x64 "*) ;; *) flavour=x86 ;; esac
peer=$B/tests/peers/fxpeer
filter=$B/filters/$flavour/passthrough.dll

T=$(mktemp -d /tmp/fwx-scaling.XXXXXX) || exit 99
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2> /dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2> /dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 99' INT TERM HUP

n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; shift;
           for f in "$@"; do [ -f "$f" ] && tail -n 15 "$f" | sed 's/^/#   | /'; done; }

free_port() {
    local p
    # Below the ephemeral range (32768+): a client socket of a test running
    # in parallel could hold a port above it, and the bind would fail.
    for p in $(shuf -i 20000-32000 -n 100); do
        (exec 3<> /dev/tcp/127.0.0.1/$p) 2> /dev/null && continue
        case " ${used:-} " in *" $p "*) continue ;; esac
        used="${used:-} $p"
        echo "$p"
        return
    done
}
wait_ready() {  # LOG PID
    for _ in $(seq 1 150); do
        grep -q 'fwxhost: ready' "$1" && return 0
        kill -0 "$2" 2> /dev/null || return 1
        sleep 0.1
    done
    return 1
}
served() { grep -c 'accepted from' "$1"; }

target=$(free_port) front=$(free_port) a=$(free_port) b=$(free_port)
"$peer" server --listen 127.0.0.1:$target --send 100000 --seed 3 > "$T/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do grep -q '^ready' "$T/server.log" && break; sleep 0.1; done
for h in a b; do
    port=${!h}
    "$B/bin/fwxhost" --filter "$filter" --listen 127.0.0.1:$port --target 127.0.0.1:$target \
        --workers 1 --log-level info 2> "$T/host-$h.log" &
    eval "pid_$h=$!"
    pids+=($!)
done
cat > "$T/haproxy.cfg" << EOF
global
    maxconn 1000
defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 2
    option redispatch
frontend gateways
    bind 127.0.0.1:$front
    default_backend fwxhosts
backend fwxhosts
    balance roundrobin
    server a 127.0.0.1:$a check inter 200 fall 1 rise 1
    server b 127.0.0.1:$b check inter 200 fall 1 rise 1
EOF
if ! wait_ready "$T/host-a.log" "$pid_a" || ! wait_ready "$T/host-b.log" "$pid_b"; then
    not_ok "both fwxhost instances start" "$T/host-a.log" "$T/host-b.log"
    echo "1..$n"; exit 1
fi
"$haproxy" -f "$T/haproxy.cfg" -db > "$T/haproxy.log" 2>&1 &
pids+=($!)
sleep 1

if "$peer" client --connect 127.0.0.1:$front --conns 20 --send 50000 --recv 100000 --seed 3 \
        > "$T/client1.log" 2>&1 && [ "$(served "$T/host-a.log")" -gt 0 ] && [ "$(served "$T/host-b.log")" -gt 0 ]; then
    ok "20 sessions through HAProxy, both instances served ($(served "$T/host-a.log") + $(served "$T/host-b.log")), all byte-identical"
else
    not_ok "20 sessions through HAProxy reach both instances intact" "$T/client1.log" "$T/haproxy.log"
fi

kill -TERM "$pid_a"
wait "$pid_a"
rc=$?
sleep 1    # HAProxy's health check (every 200 ms) notices
before_b=$(served "$T/host-b.log")
before_a=$(served "$T/host-a.log")
if "$peer" client --connect 127.0.0.1:$front --conns 20 --send 50000 --recv 100000 --seed 3 --index-base 100 \
        > "$T/client2.log" 2>&1; then
    after_b=$(served "$T/host-b.log")
    if [ $((after_b - before_b)) -ge 20 ] && [ "$(served "$T/host-a.log")" = "$before_a" ]; then
        ok "instance a stopped (exit $rc): 20 new sessions all served by b, byte-identical"
    else
        not_ok "after stopping a, b serves every new session (b served $((after_b - before_b)))" "$T/haproxy.log"
    fi
else
    not_ok "after stopping a, new sessions still succeed" "$T/client2.log" "$T/haproxy.log" "$T/host-b.log"
fi
[ $rc = 0 ] && ok "the stopped instance drained and exited 0" || not_ok "the stopped instance exited 0 (was $rc)" "$T/host-a.log"
echo "1..$n"
[ $failed = 0 ]
