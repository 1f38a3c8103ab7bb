#!/bin/bash
# supervisor.sh - fwxhost's native supervisor (shim/bin/supervisor.c), for
# each flavour in FWX_FLAVOURS. Prints TAP, exits 0 iff all passed.
#
#   a. a listening port in use: one line on stderr, exit status 2, and no
#      Wine worker is started (the supervisor binds before it forks)
#   b. the hanger filter makes every worker thread stuck: the worker exits
#      3, the supervisor starts a new one; the listening port never refuses
#      a connection meanwhile (a connect every 50 ms), clients that queued
#      in the backlog are served by the new worker, and a normal session on
#      the same port then passes its bytes; --stats answers from the new one
#   c. SIGTERM of the supervisor: exit status 0, every worker pid it started
#      is gone, no child of it is left, the control socket file is removed,
#      and no process (Wine's own included) still listens on the port
#   d. restart-limit: a worker killed (SIGKILL) is restarted; killed again
#      within the minute with restart-limit = 1, the supervisor gives up
#      with a log line and exit status 1
#   e. --no-supervisor: one process, SIGHUP is logged and survived
#   f. the supervisor killed with SIGKILL: its worker stops by itself
#   g. the worker's own options that take a value (--trace, --abi) leave
#      the command line supervised: the worker is the launcher's child and
#      serves a session
#
# Environment (set by make check): FWX_BUILDDIR, FWX_SRCDIR, FWX_FLAVOURS,
# WINEPREFIX. Directly:
#   cd build && WINEPREFIX=$PWD/wineprefix FWX_BUILDDIR=$PWD FWX_SRCDIR=/work/main \
#     FWX_FLAVOURS=x64 bash ../tests/supervisor.sh
set -u

TL_TAIL=30
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tl_setup fwxsup
tl_fxpeer

start_host() { start_fwxhost "$@"; }    # LOG ARGS...: fwxhost with ARGS

# ---------------------------------------------------------------- a. port in use
test_port_in_use() {
    local fl=$1 lp tp why="" rc holder
    free_port; lp=$PORT; free_port; tp=$PORT
    "$FXPEER" sink --listen 127.0.0.1:$lp --out /dev/null > "$T/holder.log" 2>&1 &
    holder=$!
    pids+=("$holder")
    wait_for "$T/holder.log" '^ready' $holder 10
    printf '[filter p]\npath = %s\n[rule web]\nlisten = 127.0.0.1:%s\ntarget = 127.0.0.1:%s\n' \
        "$B/filters/$fl/passthrough.dll" $lp $tp > "$T/inuse.ini"
    local t0=$(date +%s%N)
    timeout 30 "$FWXHOST" --config "$T/inuse.ini" --log-level info > "$T/inuse.out" 2> "$T/inuse.err"
    rc=$?
    local ms=$((($(date +%s%N) - t0) / 1000000))
    kill -TERM $holder; wait $holder 2> /dev/null; forget_pid $holder
    [ $rc -eq 2 ] || add "exit status $rc, expected 2"
    [ "$(wc -l < "$T/inuse.err")" -eq 1 ] || add "$(wc -l < "$T/inuse.err") lines on stderr, expected 1"
    grep -q "^fwxhost: $T/inuse.ini:4: rule web: .*127\.0\.0\.1:$lp.*in use" "$T/inuse.err" ||
        add "no line 'fwxhost: FILE:4: rule web: ... in use'"
    grep -q 'started worker' "$T/inuse.err" && add "a worker was started"
    result "$fl port in use: exit 2 after $ms ms, no worker: $(head -n 1 "$T/inuse.err")" "$why" "$T/inuse.err"
}

# ---------------------------------------------------------------- b, c. restart
# connect_loop PORT OUT: a connect (then close) every 50 ms until killed;
# one line per attempt: "ok" or "refused".
connect_loop() {
    while :; do
        if timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2> /dev/null; then echo ok; else echo refused; fi
        sleep 0.05
    done > "$2"
}

test_restart() {
    local fl=$1 lp tp why="" conf hlog
    conf=$T/hang-$fl.ini hlog=$T/hang-$fl-host.log
    free_port; lp=$PORT; free_port; tp=$PORT
    printf '[host]\nworkers = 2\nhang-timeout = 1\nrestart-delay = 1\nlog-level = info\ncontrol = %s\n[filter hanger]\npath = %s\n[rule r]\nlisten = 127.0.0.1:%s\ntarget = 127.0.0.1:%s\n' \
        "$T/ctl-$fl.sock" "$B/filters/$fl/hanger.dll" $lp $tp > "$conf"
    "$FXPEER" server --listen 127.0.0.1:$tp --send 262144 --seed 91 > "$T/hang-$fl-server.log" 2>&1 &
    local srv=$!
    pids+=("$srv")
    wait_for "$T/hang-$fl-server.log" '^ready' $srv 10
    if ! start_host "$hlog" --config "$conf"; then
        not_ok "$fl restart" "fwxhost did not become ready" "$hlog"
        stop_host $HOST_PID; return
    fi
    local sup=$HOST_PID first
    first=$(worker_pids "$hlog" | head -n 1)

    connect_loop $lp "$T/connects-$fl.log" &
    local cl=$!
    pids+=("$cl")
    # One HANG per worker: the second only once the first worker is stuck
    # (a stuck worker does not accept, so the other one takes it). Exactly
    # two: a third would wait in the backlog and hang the next worker.
    local probes=() i k
    for i in 1 2; do
        "$FXPEER" probe --connect 127.0.0.1:$lp --data HANG --timeout 30 > "$T/probe-$fl-$i.log" 2>&1 &
        probes+=($!); pids+=($!)
        [ $i = 2 ] && break
        for ((k = 0; k < 50; k++)); do
            grep -q 'watchdog: filter hanger has not returned' "$hlog" && break
            sleep 0.1
        done
    done
    if ! wait_for "$hlog" "all 2 worker(s) are stuck" $sup 10; then
        not_ok "$fl restart: all workers stuck" "no 'all 2 worker(s) are stuck' line" "$hlog"
    fi
    # Clients that connect while no worker runs: they wait in the backlog.
    "$FXPEER" client --connect 127.0.0.1:$lp --conns 4 --send 65536 --recv 262144 --seed 91 \
        --timeout 60 > "$T/queued-$fl.log" 2>&1 &
    local queued=$!
    pids+=("$queued")
    local t0=$SECONDS
    wait_for "$hlog" "supervisor: worker pid [0-9]* serves again" $sup 40
    local restart_s=$((SECONDS - t0))
    wait $queued; local qrc=$?; forget_pid $queued
    sleep 0.5
    kill $cl; wait $cl 2> /dev/null; forget_pid $cl
    for i in "${probes[@]}"; do kill $i 2> /dev/null; wait $i 2> /dev/null; forget_pid $i; done

    local second okc refused
    second=$(worker_pids "$hlog" | sed -n 2p)
    okc=$(grep -c '^ok' "$T/connects-$fl.log")
    refused=$(grep -c '^refused' "$T/connects-$fl.log")
    grep -q "supervisor: worker pid $first exited with status 3 (all its workers stuck in filter code)" "$hlog" ||
        add "no line 'worker pid $first exited with status 3'"
    [ -n "$second" ] && [ "$second" != "$first" ] || add "no second worker was started"
    kill -0 "$first" 2> /dev/null && add "the stuck worker pid $first is still alive"
    grep -q 'serves again' "$hlog" || add "the new worker never served"
    [ "$refused" -eq 0 ] || add "$refused of $((okc + refused)) connects were refused"
    [ "$okc" -ge 10 ] || add "only $okc connects were tried"
    [ $qrc -eq 0 ] || add "clients queued during the restart: fxpeer exit $qrc ($(tail -n 1 "$T/queued-$fl.log"))"
    result "$fl restart: stuck worker $first exited 3, worker $second serves after ${restart_s} s; $okc connects, none refused; 4 queued clients served byte-identical" \
        "$why" "$hlog" "$T/queued-$fl.log"

    why=""
    "$FXPEER" client --connect 127.0.0.1:$lp --conns 8 --send 262144 --recv 262144 --seed 91 \
        --timeout 30 > "$T/after-$fl.log" 2>&1 || add "fxpeer: $(tail -n 1 "$T/after-$fl.log")"
    "$FWXHOST" --stats --control "$T/ctl-$fl.sock" > "$T/stats-$fl.txt" 2>&1 || add "--stats failed"
    # The new worker counts from its start: the 4 queued, these 8 and the
    # connect loop's closes.
    local total
    total=$(sed -n 's/^host: connections \([0-9]*\) total.*/\1/p' "$T/stats-$fl.txt")
    [ "${total:-0}" -ge 12 ] || add "--stats: ${total:-no} connections total, expected >= 12"
    result "$fl restart: 8 sessions byte-identical on the same port after the restart; --stats answers from the new worker ($total connections)" \
        "$why" "$T/after-$fl.log" "$T/stats-$fl.txt" "$hlog"

    # c. SIGTERM: everything ends
    why=""
    local kids all p
    kids=$(ps -o pid= --ppid $sup | tr -d ' ' | tr '\n' ' ')
    all=$(worker_pids "$hlog" | tr '\n' ' ')
    stop_host $sup 30
    [ "$HOST_RC" = 0 ] || add "exit status $HOST_RC, expected 0"
    for p in $all $kids; do kill -0 $p 2> /dev/null && add "pid $p still alive"; done
    [ -e "$T/ctl-$fl.sock" ] && add "the control socket file is left"
    # Nobody else holds the port: not Wine's own processes either (HOST-500).
    if command -v ss > /dev/null && ss -ltnH "sport = :$lp" | grep -q .; then
        add "127.0.0.1:$lp still listening after the stop: $(ss -ltnpH "sport = :$lp")"
    fi
    grep -q 'supervisor: signal 15: stopping' "$hlog" || add "no 'signal 15: stopping' line"
    result "$fl SIGTERM: supervisor exit 0 in $STOP_S s; worker pids ${all% } and children (${kids% }) gone" \
        "$why" "$hlog"
    kill $srv; wait $srv 2> /dev/null; forget_pid $srv
}

# ---------------------------------------------------------------- d. limit
test_limit() {
    local fl=$1 lp tp why="" conf hlog w1 w2
    conf=$T/limit-$fl.ini hlog=$T/limit-$fl-host.log
    free_port; lp=$PORT; free_port; tp=$PORT
    printf '[host]\nworkers = 1\nrestart-limit = 1\nrestart-delay = 0\nlog-level = info\ncontrol = %s\n[filter p]\npath = %s\n[rule r]\nlisten = 127.0.0.1:%s\ntarget = 127.0.0.1:%s\n' \
        "$T/ctl-limit-$fl.sock" "$B/filters/$fl/passthrough.dll" $lp $tp > "$conf"
    if ! start_host "$hlog" --config "$conf"; then
        not_ok "$fl restart-limit" "fwxhost did not become ready" "$hlog"
        stop_host $HOST_PID; return
    fi
    local sup=$HOST_PID
    w1=$(worker_pids "$hlog" | head -n 1)
    kill -KILL $w1
    wait_for "$hlog" 'serves again' $sup 30 || add "no restart after SIGKILL of worker $w1"
    w2=$(worker_pids "$hlog" | sed -n 2p)
    grep -q "supervisor: worker pid $w1 was killed by signal 9" "$hlog" || add "no 'killed by signal 9' line"
    [ -n "$w2" ] && kill -KILL $w2
    local i
    for ((i = 0; i < 100; i++)); do kill -0 $sup 2> /dev/null || break; sleep 0.1; done
    if kill -0 $sup 2> /dev/null; then
        add "the supervisor is still running after the second kill"
        stop_host $sup
    else
        wait $sup; HOST_RC=$?; forget_pid $sup
        [ "$HOST_RC" = 1 ] || add "exit status $HOST_RC, expected 1"
    fi
    grep -q 'supervisor: giving up: 1 restart(s) within a minute (\[host\] restart-limit = 1)' "$hlog" ||
        add "no 'giving up' line"
    result "$fl restart-limit: worker $w1 killed, restarted as $w2; killed again, the supervisor gives up (exit $HOST_RC)" \
        "$why" "$hlog"
}


# ---------------------------------------------------------------- e, f.
# e. --no-supervisor: the Wine host alone, SIGHUP only logged
# f. the supervisor killed outright (SIGKILL): its worker stops by itself
test_alone_and_orphan() {
    local fl=$1 lp tp why="" hlog w
    hlog=$T/alone-$fl-host.log
    free_port; lp=$PORT; free_port; tp=$PORT
    if ! start_host "$hlog" --filter "$B/filters/$fl/passthrough.dll" --listen 127.0.0.1:$lp \
            --target 127.0.0.1:$tp --control "$T/alone.sock" --log-level info --no-supervisor; then
        not_ok "$fl --no-supervisor" "fwxhost did not become ready" "$hlog"
        stop_host $HOST_PID; return
    fi
    local sup=$HOST_PID
    grep -q 'supervisor: started worker' "$hlog" && add "a supervisor started a worker"
    [ -z "$(ps -o pid= --ppid $sup)" ] || add "the host has child processes: $(ps -o pid=,args= --ppid $sup)"
    kill -HUP $sup
    wait_for "$hlog" 'SIGHUP: this host runs without a supervisor' $sup 10 || add "no SIGHUP log line"
    kill -0 $sup 2> /dev/null || add "SIGHUP ended the host"
    stop_host $sup
    [ "$HOST_RC" = 0 ] || add "exit status $HOST_RC"
    result "$fl --no-supervisor: one process, SIGHUP logged and survived, exit $HOST_RC" "$why" "$hlog"

    why=""
    hlog=$T/orphan-$fl-host.log
    if ! start_host "$hlog" --filter "$B/filters/$fl/passthrough.dll" --listen 127.0.0.1:$lp \
            --target 127.0.0.1:$tp --control "$T/orphan.sock" --log-level info --drain 1; then
        not_ok "$fl supervisor killed" "fwxhost did not become ready" "$hlog"
        stop_host $HOST_PID; return
    fi
    sup=$HOST_PID
    w=$(worker_pids "$hlog" | head -n 1)
    kill -KILL $sup; wait $sup 2> /dev/null; forget_pid $sup
    local i
    for ((i = 0; i < 200; i++)); do kill -0 $w 2> /dev/null || break; sleep 0.1; done
    if kill -0 $w 2> /dev/null; then
        add "worker $w still alive 20 s after its supervisor was killed"
        kill -KILL $w
    fi
    grep -q 'supervisor gone (its socket closed): stopping\|signal 15: stopping' "$hlog" ||
        add "the worker did not log why it stopped"
    result "$fl supervisor killed (SIGKILL): worker $w stopped by itself in $((i / 10)).$((i % 10)) s" "$why" "$hlog"
}

# ---------------------------------------------------------------- g. worker options
test_worker_options() {
    local fl=$1 lp tp why="" hlog w srv
    hlog=$T/opts-$fl-host.log
    free_port; lp=$PORT; free_port; tp=$PORT
    : > "$T/empty-abi.ini"
    "$FXPEER" server --listen 127.0.0.1:$tp --send 4000 --seed 93 > "$T/opts-$fl-server.log" 2>&1 &
    srv=$!
    pids+=("$srv")
    wait_for "$T/opts-$fl-server.log" '^ready' $srv 10
    if ! start_host "$hlog" --filter "$B/filters/$fl/passthrough.dll" --listen 127.0.0.1:$lp \
            --target 127.0.0.1:$tp --control "$T/opts.sock" --trace "$T/opts-$fl.trace" \
            --abi "$T/empty-abi.ini"; then
        not_ok "$fl --trace/--abi supervised" "fwxhost did not become ready" "$hlog"
        stop_host $HOST_PID; stop_peer $srv; return
    fi
    w=$(worker_of $HOST_PID) || add "no worker process under the launcher: not supervised"
    "$FXPEER" client --connect 127.0.0.1:$lp --conns 1 --send 1000 --recv 4000 --seed 93 --timeout 20 \
        > "$T/opts-$fl-client.log" 2>&1 || add "client: $(tail -n 1 "$T/opts-$fl-client.log")"
    grep -q 'CompleteAsyncIO' "$T/opts-$fl.trace" 2> /dev/null || add "the worker wrote no trace"
    stop_host $HOST_PID; stop_peer $srv
    result "$fl --trace and --abi: supervised (worker ${w:-?}), one session passed, traced" "$why" "$hlog"
}

for fl in $FLAVOURS; do
    if [ ! -f "$B/filters/$fl/hanger.dll" ] || [ ! -f "$B/filters/$fl/passthrough.dll" ]; then
        not_ok "$fl supervisor" "test filters not built in $B/filters/$fl"
        continue
    fi
    test_port_in_use $fl
    test_restart $fl
    test_limit $fl
    test_alone_and_orphan $fl
    test_worker_options $fl
done

tl_done
