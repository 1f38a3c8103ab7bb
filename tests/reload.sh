#!/bin/bash
# reload.sh - SIGHUP reload through fwxhost's supervisor, for each flavour
# in FWX_FLAVOURS. Prints TAP, exits 0 iff all passed.
#
# The rule's target is an echo server, so what a client gets back is what
# the server received. Filter f starts as passthrough; the reload makes it
# rewrite (ISA2000 -> fwxshim-on-linux, client to server) and adds a rule
# on a new port.
#
#   a. under load: three long sessions (about 6 s each, a token every
#      150 ms) and 16 bulk ones (16 MiB each way, another rule) stream
#      through the old configuration while the reload happens: every byte
#      arrives, the long ones unrewritten (they finish on the old filter);
#      the old worker exits 0 once they are done
#   b. new sessions after the reload are rewritten, on the old port and on
#      the new rule's port; --stats answers from the new worker and counts
#      exactly the new sessions
#   c. a broken configuration on SIGHUP: refused with FILE:LINE in the log,
#      the same worker keeps serving the previous configuration
#   d. a reload refused for a new address in use, and one whose worker fails
#      (a missing filter DLL): the listening sockets survive both, so the
#      worker killed afterwards is replaced on the same ports, and runs the
#      configuration last accepted, not the file as edited since
#
# Environment (set by make check): FWX_BUILDDIR, FWX_SRCDIR, FWX_FLAVOURS,
# WINEPREFIX. Directly:
#   cd build && WINEPREFIX=$PWD/wineprefix FWX_BUILDDIR=$PWD FWX_SRCDIR=/work/main \
#     FWX_FLAVOURS=x64 bash ../tests/reload.sh
set -u

TL_TAIL=30
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tl_setup fwxreload
tl_fxpeer

start_host() { start_fwxhost "$@"; }    # LOG ARGS...: fwxhost with ARGS


# echo_server PORT LOG: a threaded echo server; sets ECHO_PID
echo_server() {
    python3 -u -c '
import socket, socketserver, sys
class H(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            d = self.request.recv(65536)
            if not d:
                break
            self.request.sendall(d)
        self.request.shutdown(socket.SHUT_WR)
class S(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
class U(socketserver.BaseRequestHandler):
    def handle(self):
        self.request[1].sendto(self.request[0], self.client_address)
import threading
u = socketserver.ThreadingUDPServer(("127.0.0.1", int(sys.argv[1])), U)
threading.Thread(target=u.serve_forever, daemon=True).start()
s = S(("127.0.0.1", int(sys.argv[1])), H)
print("ready", flush=True)
s.serve_forever()
' "$1" > "$2" 2>&1 &
    ECHO_PID=$!
    pids+=("$ECHO_PID")
    wait_for "$2" '^ready' $ECHO_PID 10
}

# udp_ask PORT TEXT: one datagram to the host's UDP rule; prints the reply
udp_ask() {
    python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(sys.argv[2].encode(), ("127.0.0.1", int(sys.argv[1])))
print(s.recvfrom(65536)[0].decode())
' "$1" "$2" 2>&1
}

write_conf() {  # FILE DLL PORT TARGET [EXTRA-RULE-PORT]
    {
        printf '[host]\nworkers = 2\nlog-level = info\nreload-drain = 60\ncontrol = %s\n' "$T/ctl.sock"
        printf '[filter f]\npath = %s\n' "$2"
        printf '[rule web]\nlisten = 127.0.0.1:%s\ntarget = 127.0.0.1:%s\n' $3 $4
        [ -n "${5:-}" ] && printf '[rule extra]\nlisten = 127.0.0.1:%s\ntarget = 127.0.0.1:%s\n' $5 $4
        printf '[rule bulk]\nlisten = 127.0.0.1:%s\ntarget = 127.0.0.1:%s\n' $BULK_LP $BULK_TP
        printf '[rule dgram]\nprotocol = udp\nlisten = 127.0.0.1:%s\ntarget = 127.0.0.1:%s\n' $UDP_LP $4
    } > "$1"
}

test_reload() {
    local fl=$1 lp lp2 tp why="" conf hlog i
    conf=$T/r-$fl.ini hlog=$T/r-$fl-host.log
    free_port; lp=$PORT; free_port; lp2=$PORT; free_port; tp=$PORT
    echo_server $tp "$T/echo-$fl.log" || { not_ok "$fl reload" "echo server did not start" "$T/echo-$fl.log"; return; }
    local echo=$ECHO_PID
    free_port; BULK_LP=$PORT; free_port; BULK_TP=$PORT; free_port; UDP_LP=$PORT
    "$FXPEER" server --listen 127.0.0.1:$BULK_TP --send 16m --seed 77 > "$T/bulk-$fl-server.log" 2>&1 &
    local bsrv=$!
    pids+=("$bsrv")
    wait_for "$T/bulk-$fl-server.log" '^ready' $bsrv 10
    write_conf "$conf" "$B/filters/$fl/passthrough.dll" $lp $tp
    if ! start_host "$hlog" --config "$conf"; then
        not_ok "$fl reload" "fwxhost did not become ready" "$hlog"
        stop_host $HOST_PID; return
    fi
    local sup=$HOST_PID old new
    old=$(worker_pids "$hlog" | head -n 1)

    local ureply
    ureply=$(udp_ask $UDP_LP "datagram before")
    # a. long sessions through the old configuration, and bulk traffic
    "$FXPEER" client --connect 127.0.0.1:$BULK_LP --conns 16 --send 16m --recv 16m --seed 77 \
        --timeout 120 > "$T/bulk-$fl.log" 2>&1 &
    local bulk=$!
    pids+=("$bulk")
    local data=""
    for i in $(seq 1 40); do data+="ISA2000-$i "; done
    local longs=()
    for i in 1 2 3; do
        "$FXPEER" send --connect 127.0.0.1:$lp --data "$data" --chunk 10 --delay-ms 150 \
            --out "$T/long-$fl-$i.out" --timeout 60 > "$T/long-$fl-$i.log" 2>&1 &
        longs+=($!); pids+=($!)
    done
    sleep 1.5
    write_conf "$conf" "$B/filters/$fl/rewrite.dll" $lp $tp $lp2
    kill -HUP $sup
    local t0=$SECONDS
    wait_for "$hlog" "no longer accepting" $sup 60 || add "the old worker was never told to drain"
    local switch_s=$((SECONDS - t0))
    new=$(worker_pids "$hlog" | sed -n 2p)
    local live
    live=$(sed -n 's/.*no longer accepting, \([0-9]*\) live connection.*/\1/p' "$hlog" | head -n 1)
    local bad=0 rc
    for i in 1 2 3; do
        wait ${longs[$((i - 1))]}; rc=$?; forget_pid ${longs[$((i - 1))]}
        if [ $rc -ne 0 ] || [ "$(cat "$T/long-$fl-$i.out" 2> /dev/null)" != "$data" ]; then
            bad=$((bad + 1))
            add "long session $i: exit $rc, $(wc -c < "$T/long-$fl-$i.out" 2> /dev/null || echo 0) of ${#data} bytes back, $(grep -c fwxshim-on-linux "$T/long-$fl-$i.out" 2> /dev/null) rewritten"
        fi
    done
    wait $bulk; local brc=$?; forget_pid $bulk
    [ $brc -eq 0 ] || add "bulk: fxpeer exit $brc: $(tail -n 1 "$T/bulk-$fl.log")"
    [ "$ureply" = "datagram before" ] || add "UDP rule before the reload: '$ureply'"
    [ "${live:-0}" -ge 3 ] || add "the old worker had ${live:-no} live connections at the switch (expected the 3 long ones: reload too late?)"
    wait_for "$hlog" "supervisor: old worker pid $old exited with status 0" $sup 30 ||
        add "no 'old worker pid $old exited with status 0' line"
    result "$fl reload: worker $new took over after ${switch_s} s; $live connections live at the switch; 3 long sessions finished on the old filter, ${#data} bytes each, and 16 bulk ones 16 MiB each way, all byte-identical; old worker $old exited 0" \
        "$why" "$hlog" "$T/long-$fl-1.log" "$T/bulk-$fl.log"

    # b. new sessions: the new filter, the new rule
    why=""
    "$FXPEER" send --connect 127.0.0.1:$lp --data "hello ISA2000" --out "$T/new-$fl.out" --timeout 20 \
        > "$T/new-$fl.log" 2>&1 || add "send on the old port failed: $(tail -n 1 "$T/new-$fl.log")"
    [ "$(cat "$T/new-$fl.out" 2> /dev/null)" = "hello fwxshim-on-linux" ] ||
        add "old port got back '$(cat "$T/new-$fl.out" 2> /dev/null)', expected 'hello fwxshim-on-linux'"
    "$FXPEER" send --connect 127.0.0.1:$lp2 --data "new rule ISA2000" --out "$T/new2-$fl.out" --timeout 20 \
        > "$T/new2-$fl.log" 2>&1 || add "send on the new rule's port failed: $(tail -n 1 "$T/new2-$fl.log")"
    [ "$(cat "$T/new2-$fl.out" 2> /dev/null)" = "new rule fwxshim-on-linux" ] ||
        add "new port got back '$(cat "$T/new2-$fl.out" 2> /dev/null)'"
    "$FWXHOST" --stats --control "$T/ctl.sock" > "$T/stats-$fl.txt" 2>&1 || add "--stats failed"
    local web extra
    web=$(awk '$1 == "web" {print $3}' "$T/stats-$fl.txt")
    extra=$(awk '$1 == "extra" {print $3}' "$T/stats-$fl.txt")
    [ "$web" = 1 ] && [ "$extra" = 1 ] || add "--stats: web $web, extra $extra connections (expected 1 and 1: the new worker's)"
    # UDP: the rule's socket came from the supervisor; the new worker has it
    local reply
    reply=$(udp_ask $UDP_LP "datagram after the reload")
    [ "$reply" = "datagram after the reload" ] || add "UDP rule after the reload: '$reply'"
    result "$fl reload: new sessions rewritten on the old port and on the new rule's port; a UDP rule answers; --stats from the new worker (web $web, extra $extra)" \
        "$why" "$hlog" "$T/stats-$fl.txt"

    # c. a broken configuration
    why=""
    cp "$conf" "$T/good.ini"
    printf '[rule broken]\nlisten = 127.0.0.1:%s\ntargt = 127.0.0.1:%s\n' $lp2 $tp >> "$conf"
    local line=$(grep -n targt "$conf" | cut -d: -f1)
    kill -HUP $sup
    wait_for "$hlog" "supervisor: SIGHUP: $conf:$line: .*targt.*keeping the running configuration" $sup 10 ||
        add "no log line 'supervisor: SIGHUP: $conf:$line: ... keeping the running configuration'"
    sleep 1
    [ "$(worker_pids "$hlog" | wc -l)" -eq 2 ] || add "a worker was started for the broken configuration"
    kill -0 $new 2> /dev/null || add "worker $new died"
    "$FXPEER" send --connect 127.0.0.1:$lp --data "still ISA2000" --out "$T/after-$fl.out" --timeout 20 \
        > "$T/after-$fl.log" 2>&1 || add "send after the refused reload failed"
    [ "$(cat "$T/after-$fl.out" 2> /dev/null)" = "still fwxshim-on-linux" ] || add "after the refused reload: '$(cat "$T/after-$fl.out" 2> /dev/null)'"
    result "$fl reload: broken configuration refused ($(grep -o "SIGHUP: $conf:$line: [^;]*" "$hlog" | head -n 1 | sed "s|$T/||")), worker $new serves on" \
        "$why" "$hlog"

    # d. refused after the file parsed: a new address in use, then a new
    # worker that cannot start. The listening sockets must survive both: a
    # worker killed afterwards is restarted on them.
    why=""
    free_port; local lp3=$PORT
    "$FXPEER" sink --listen 127.0.0.1:$lp3 --out /dev/null > "$T/holder-$fl.log" 2>&1 &
    local holder=$!
    pids+=("$holder")
    wait_for "$T/holder-$fl.log" '^ready' $holder 10
    cp "$T/good.ini" "$conf"
    printf '[rule taken]\nlisten = 127.0.0.1:%s\ntarget = 127.0.0.1:%s\n' $lp3 $tp >> "$conf"
    line=$(grep -n "listen = 127.0.0.1:$lp3" "$conf" | cut -d: -f1)
    kill -HUP $sup
    wait_for "$hlog" "supervisor: SIGHUP: $conf:$line: rule taken: .*in use; keeping the running configuration" $sup 10 ||
        add "no log line 'SIGHUP: $conf:$line: rule taken: ... in use; keeping the running configuration'"
    kill $holder; wait $holder 2> /dev/null; forget_pid $holder
    write_conf "$conf" "$T/no-such-filter.dll" $lp $tp $lp2
    kill -HUP $sup
    wait_for "$hlog" "supervisor: reload failed: the new worker exited with status 2" $sup 30 ||
        add "no 'reload failed' line for a missing filter DLL"
    grep -q "no-such-filter.dll" "$hlog" || add "the missing DLL is not named in the log"
    kill -0 $new 2> /dev/null || add "worker $new died"
    kill -KILL $new
    wait_for "$hlog" "serves again" $sup 30 || add "the killed worker $new was not replaced"
    local third
    third=$(worker_pids "$hlog" | tail -n 1)
    for p in $lp $lp2; do
        "$FXPEER" send --connect 127.0.0.1:$p --data "restarted ISA2000" --out "$T/restarted-$fl-$p.out" \
            --timeout 20 > "$T/restarted-$fl-$p.log" 2>&1 || add "port $p after the restart: $(tail -n 1 "$T/restarted-$fl-$p.log")"
        [ "$(cat "$T/restarted-$fl-$p.out" 2> /dev/null)" = "restarted fwxshim-on-linux" ] ||
            add "port $p after the restart: '$(cat "$T/restarted-$fl-$p.out" 2> /dev/null)'"
    done
    result "$fl reload: refused for an address in use and for a filter that does not load; the sockets survived: worker $third, after a kill, serves both ports with the configuration last accepted (not the edited file)" \
        "$why" "$hlog"

    stop_host $sup 30
    why=""
    [ "$HOST_RC" = 0 ] || add "exit status $HOST_RC"
    for p in $(worker_pids "$hlog"); do kill -0 $p 2> /dev/null && add "worker $p still alive"; done
    result "$fl reload: SIGTERM stops supervisor and workers (exit $HOST_RC)" "$why" "$hlog"
    kill $echo; wait $echo 2> /dev/null; forget_pid $echo
    kill $bsrv; wait $bsrv 2> /dev/null; forget_pid $bsrv
}

command -v python3 > /dev/null || { echo "1..0 # SKIP python3 (the echo server) not found"; exit 0; }
for fl in $FLAVOURS; do
    if [ ! -f "$B/filters/$fl/rewrite.dll" ] || [ ! -f "$B/filters/$fl/passthrough.dll" ]; then
        not_ok "$fl reload" "test filters not built in $B/filters/$fl"
        continue
    fi
    test_reload $fl
done

tl_done
