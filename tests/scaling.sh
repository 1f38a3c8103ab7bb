#!/bin/bash
# scaling.sh - two fwxhost instances behind HAProxy (an existing L4
# balancer, as in docs/scaling.md): both serve; one is stopped; new
# sessions go to the other and nothing a client sent is lost.
# TAP; uses the x64 flavour (the balancer does not care which).
#
# Environment as for tests/fwxhost.sh (FWX_BUILDDIR, WINEPREFIX). Needs
# haproxy (./fwx deps installs it); otherwise a visible SKIP.
set -u

TL_WHAT="two fwxhost instances behind HAProxy"
TL_TAIL=15
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tl_setup fwx-scaling
haproxy=$(command -v haproxy || echo /usr/sbin/haproxy)
[ -x "$haproxy" ] || skip_all "haproxy not installed"
flavour=x64
case " ${FWX_FLAVOURS:-x64} " in *" x64 "*) ;; *) flavour=x86 ;; esac
tl_fxpeer
peer=$FXPEER
filter=$B/filters/$flavour/passthrough.dll
served() { grep -c 'accepted from' "$1"; }

free_port; target=$PORT; free_port; front=$PORT; free_port; a=$PORT; free_port; b=$PORT
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
    fail "both fwxhost instances start" "$T/host-a.log" "$T/host-b.log"
    echo "1..$n"; exit 1
fi
"$haproxy" -f "$T/haproxy.cfg" -db > "$T/haproxy.log" 2>&1 &
pids+=($!)
sleep 1

if "$peer" client --connect 127.0.0.1:$front --conns 20 --send 50000 --recv 100000 --seed 3 \
        > "$T/client1.log" 2>&1 && [ "$(served "$T/host-a.log")" -gt 0 ] && [ "$(served "$T/host-b.log")" -gt 0 ]; then
    ok "20 sessions through HAProxy, both instances served ($(served "$T/host-a.log") + $(served "$T/host-b.log")), all byte-identical"
else
    fail "20 sessions through HAProxy reach both instances intact" "$T/client1.log" "$T/haproxy.log"
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
        fail "after stopping a, b serves every new session (b served $((after_b - before_b)))" "$T/haproxy.log"
    fi
else
    fail "after stopping a, new sessions still succeed" "$T/client2.log" "$T/haproxy.log" "$T/host-b.log"
fi
[ $rc = 0 ] && ok "the stopped instance drained and exited 0" || fail "the stopped instance exited 0 (was $rc)" "$T/host-a.log"
tl_done
