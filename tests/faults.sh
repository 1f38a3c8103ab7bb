#!/bin/bash
# faults.sh - end-to-end tests of the host's fault handling: misbehaving
# filters (test-filters/crasher, hanger, leaker, garbage) must never take
# the gateway down. For each flavour in FWX_FLAVOURS; run by automake
# through tests/wine-run; prints TAP, exits 0 iff all passed.
#
#   a. crasher faults in CompleteAsyncIO on rule a: that connection is reset,
#      the log names filter, interface, method and exception code, and rule
#      b's concurrent connections (passthrough only) come through
#      byte-identical; after max-faults the filter is disabled, rule a
#      refuses new connections, rule b still works
#   b. on-disabled-filter = bypass: after the fault, connections go on
#      without the filter, byte-identical
#   c. crasher faults in AttachToSession, FirewallEventHandler, SetSockets:
#      that connection is closed, the log names the method, the others pass
#   d. hanger blocks a worker: the watchdog names filter, interface, method
#      and thread within hang-timeout + 2 s; the other workers keep serving;
#      SIGTERM stops the host without the stuck worker (exit status 3)
#   e. leaker: 200 connections pass, the host stays up, exits 0 on SIGTERM
#   f. garbage: the host survives 100 connections of garbage answers and
#      pointers, and a session filter whose methods all fault; exits 0.
#      Garbage hook events from FilterInit: the host refuses to start
#
# Environment (set by make check): FWX_BUILDDIR, FWX_SRCDIR, FWX_FLAVOURS,
# WINEPREFIX, WINEDEBUG; optional FWX_WINE32/FWX_WINE64, FWX_FAULT_TESTS
# (groups to run, default all: "crasher bypass where hanger leaker
# garbage"), FWX_KEEP (non-empty: keep the temporary directory). Directly:
#   cd build && WINEPREFIX=$PWD/wineprefix WINEDEBUG=-all FWX_BUILDDIR=$PWD \
#     FWX_SRCDIR=/work/main FWX_FLAVOURS="x86 x64" bash ../tests/faults.sh
set -u

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tl_setup fwxfaults
tl_fxpeer

# probe PORT: connect, send a line, wait for the close; sets PROBE (its output), PROBE_RC.
probe() {
    PROBE=$("$FXPEER" probe --connect 127.0.0.1:$1 --data "hello" --timeout "${2:-10}" 2>&1)
    PROBE_RC=$?
}
closed_at_once() {  # PROBE text: empty if closed without bytes within 3 s, else why
    if [ $PROBE_RC -ne 0 ]; then echo "client not closed: $PROBE"; return; fi
    grep -q 'received 0 bytes' <<< "$PROBE" || { echo "client got bytes: $PROBE"; return; }
    local ms
    ms=$(sed -n 's/.* after \([0-9]*\) ms/\1/p' <<< "$PROBE")
    [ "${ms:-99999}" -le 3000 ] || echo "client closed only after $ms ms"
}

EXC='exception 0xc0000005'      # EXCEPTION_ACCESS_VIOLATION: crasher writes through NULL

# ---------------------------------------------------------------- a. crasher, max-faults, refuse
test_crasher() {
    local fl=$1 pa pb ta tb conf hlog why sa sb
    conf=$T/crasher-$fl.ini hlog=$T/crasher-$fl-host.log
    if ! need_filters $fl passthrough crasher; then
        not_ok "$fl crasher" "$MISSING"; return
    fi
    two_rules_conf "$conf" "crasher hooks rule a's port only (FWX_CRASHER_PORTS); passthrough is on both rules" \
        $'workers = 2\nmax-faults = 3\nlog-level = info' pass="$DLL_passthrough" crasher="$DLL_crasher"
    if ! two_rules_start "$T/crasher-$fl" 262144 41 524288 42 "$conf" "$hlog" \
            FWX_CRASHER_PORTS=$pa FWX_CRASHER_N=3; then
        not_ok "$fl crasher" "fwxhost --config did not become ready (exit $HOST_RC)" "$hlog"; return
    fi
    # Rule b's clients run while rule a's connections fault, on the same workers.
    "$FXPEER" client --connect 127.0.0.1:$pb --conns 40 --send 524288 --recv 524288 --seed 42 \
        --timeout 60 > "$T/crasher-$fl-b-client.log" 2>&1 &
    local bclient=$!
    pids+=("$bclient")
    local i rc resets=0
    why=""
    for i in 1 2 3; do
        "$FXPEER" client --connect 127.0.0.1:$pa --conns 1 --send 262144 --recv 262144 --seed 41 \
            --timeout 10 > "$T/crasher-$fl-a$i.log" 2>&1
        rc=$?
        if [ $rc -eq 2 ] && grep -q 'reset\|closed\|read after' "$T/crasher-$fl-a$i.log"; then
            resets=$((resets + 1))
        else
            add "rule a connection $i: fxpeer exit $rc: $(head -n 1 "$T/crasher-$fl-a$i.log")"
        fi
    done
    sleep 0.3
    local faults
    faults=$(count "ERROR: filter crasher faulted in IFWXIOCompletion::CompleteAsyncIO: $EXC at 0x" "$hlog")
    [ "$faults" -eq 3 ] || add "$faults log lines 'filter crasher faulted in IFWXIOCompletion::CompleteAsyncIO: $EXC', expected 3"
    [ "$(count 'aborting: a filter faulted in a completion' "$hlog")" -ge 3 ] ||
        add "the log does not say the connections were aborted"
    # The abort reaches the server side too.
    [ "$(count '^server conn .*reset by peer' "$T/crasher-$fl-a.log")" -eq 3 ] ||
        add "rule a's server saw $(count '^server conn .*reset by peer' "$T/crasher-$fl-a.log") of 3 connections reset"
    result "$fl crasher: each faulting connection is reset on both sides ($resets/3), the log names filter, interface, method and exception code" \
        "$why" "$hlog" "$T/crasher-$fl-a.log"

    why=""
    [ "$(count 'ERROR: filter crasher disabled after 3 faults; new connections it applies to are refused' "$hlog")" -eq 1 ] ||
        add "no single line 'filter crasher disabled after 3 faults; ... refused'"
    probe $pa
    add "$(closed_at_once)"
    sleep 0.2
    grep -q "rule a: refused: filter crasher is disabled (on-disabled-filter = refuse)" "$hlog" ||
        add "the log does not say rule a's connection was refused because crasher is disabled"
    result "$fl crasher: disabled after max-faults (3), one log line; rule a then refuses at once (${PROBE#fxpeer probe: })" \
        "$why" "$hlog"

    why=""
    wait $bclient
    rc=$?
    forget_pid $bclient
    [ $rc -eq 0 ] || add "rule b client: exit $rc: $(tail -n 1 "$T/crasher-$fl-b-client.log")"
    result "$fl crasher: rule b's 40 concurrent connections (passthrough) byte-identical meanwhile: $(tail -n 1 "$T/crasher-$fl-b-client.log" | sed 's/^fxpeer: //')" \
        "$why" "$T/crasher-$fl-b-client.log" "$hlog"

    why=""
    "$FXPEER" client --connect 127.0.0.1:$pb --conns 5 --send 524288 --recv 524288 --seed 42 \
        --index-base 100 --timeout 30 > "$T/crasher-$fl-b2.log" 2>&1 || add "$(tail -n 1 "$T/crasher-$fl-b2.log")"
    stop_host $HOST_PID
    stop_peer $sa
    stop_peer $sb
    [ "$HOST_RC" = 0 ] || add "fwxhost exit status $HOST_RC after SIGTERM (expected 0)"
    result "$fl crasher: rule b still works after the disable, host exits 0 on SIGTERM" "$why" \
        "$T/crasher-$fl-b2.log" "$hlog"
}

# ---------------------------------------------------------------- b. bypass
test_bypass() {
    local fl=$1 lp tp conf hlog why=""
    conf=$T/bypass-$fl.ini hlog=$T/bypass-$fl-host.log
    if ! need_filters $fl passthrough crasher; then
        not_ok "$fl on-disabled-filter = bypass" "$MISSING"; return
    fi
    free_port; lp=$PORT; free_port; tp=$PORT
    printf '[host]\nmax-faults = 1\non-disabled-filter = bypass\nlog-level = info\n[filter pass]\npath = %s\n[filter crasher]\npath = %s\n[rule a]\nlisten = 127.0.0.1:%s\ntarget = 127.0.0.1:%s\n' \
        "$DLL_passthrough" "$DLL_crasher" $lp $tp > "$conf"
    start_server "$T/bypass-$fl-server.log" $tp 262144 51
    if ! start_host "$hlog" env FWX_CRASHER_N=2 "$FWXHOST" --config "$conf"; then
        stop_host $HOST_PID; stop_peer $SRV_PID
        not_ok "$fl on-disabled-filter = bypass" "fwxhost did not become ready (exit $HOST_RC)" "$hlog"; return
    fi
    "$FXPEER" client --connect 127.0.0.1:$lp --conns 1 --send 262144 --recv 262144 --seed 51 \
        --timeout 10 > "$T/bypass-$fl-1.log" 2>&1 && add "the faulting connection was not reset"
    sleep 0.2
    grep -q 'filter crasher disabled after 1 faults; new connections bypass it' "$hlog" ||
        add "no line 'filter crasher disabled after 1 faults; new connections bypass it'"
    "$FXPEER" client --connect 127.0.0.1:$lp --conns 10 --send 262144 --recv 262144 --seed 51 \
        --timeout 30 > "$T/bypass-$fl-2.log" 2>&1 || add "after the disable: $(tail -n 1 "$T/bypass-$fl-2.log")"
    stop_host $HOST_PID
    stop_peer $SRV_PID
    [ "$(count 'ERROR: filter .* faulted in' "$hlog")" -eq 1 ] || add "$(count 'ERROR: filter .* faulted in' "$hlog") faults logged, expected 1"
    [ "$HOST_RC" = 0 ] || add "fwxhost exit status $HOST_RC after SIGTERM (expected 0)"
    result "$fl on-disabled-filter = bypass: one fault disables crasher, the next 10 connections skip it, byte-identical" \
        "$why" "$T/bypass-$fl-2.log" "$hlog"
}

# ---------------------------------------------------------------- c. where = event, setsockets
test_where() {
    local fl=$1 where method lp tp hlog why nth
    if ! need_filters $fl crasher; then
        not_ok "$fl crasher in AttachToSession, FirewallEventHandler and SetSockets" "$MISSING"; return
    fi
    for where in attach event setsockets; do
        # N = 2: the first connection passes, the second faults, the third
        # passes. AttachToSession runs once per session: N = 1 (it faults on
        # the first connection, the next one attaches).
        nth=2
        case $where in
            attach) method="IFWXFilter::AttachToSession" nth=1 ;;
            event) method="IFWXSessionFilter::FirewallEventHandler" ;;
            setsockets) method="IFWXDataFilter::SetSockets" ;;
        esac
        why="" hlog=$T/where-$fl-$where-host.log
        free_port; lp=$PORT; free_port; tp=$PORT
        start_server "$T/where-$fl-$where-server.log" $tp 65536 61
        if ! start_host "$hlog" env FWX_CRASHER_WHERE=$where FWX_CRASHER_N=$nth "$FWXHOST" \
                --filter "$DLL_crasher" --listen 127.0.0.1:$lp --target 127.0.0.1:$tp --log-level info; then
            stop_host $HOST_PID; stop_peer $SRV_PID
            not_ok "$fl crasher in $method" "fwxhost did not become ready (exit $HOST_RC)" "$hlog"; continue
        fi
        if [ $nth = 2 ]; then
            "$FXPEER" client --connect 127.0.0.1:$lp --conns 1 --send 65536 --recv 65536 --seed 61 \
                --timeout 10 > "$T/where-$fl-$where-1.log" 2>&1 ||
                add "connection 1: $(tail -n 1 "$T/where-$fl-$where-1.log")"
        fi
        probe $lp
        add "$(closed_at_once)"
        "$FXPEER" client --connect 127.0.0.1:$lp --conns 1 --send 65536 --recv 65536 --seed 61 \
            --timeout 10 > "$T/where-$fl-$where-3.log" 2>&1 || add "connection 3: $(tail -n 1 "$T/where-$fl-$where-3.log")"
        stop_host $HOST_PID
        stop_peer $SRV_PID
        grep -q "ERROR: filter crasher faulted in $method: $EXC" "$hlog" ||
            add "no log line 'filter crasher faulted in $method: $EXC'"
        [ "$(count 'ERROR: filter .* faulted in' "$hlog")" -eq 1 ] || add "$(count 'ERROR: filter .* faulted in' "$hlog") faults logged, expected 1"
        [ "$HOST_RC" = 0 ] || add "fwxhost exit status $HOST_RC after SIGTERM (expected 0)"
        result "$fl crasher in $method: that connection closed at once (${PROBE#fxpeer probe: }), the others served" \
            "$why" "$hlog"
    done
}

# ---------------------------------------------------------------- d. hanger, watchdog
test_hanger() {
    local fl=$1 lp tp conf hlog why="" t0 hang
    conf=$T/hanger-$fl.ini hlog=$T/hanger-$fl-host.log
    if ! need_filters $fl hanger; then
        not_ok "$fl hanger" "$MISSING"; return
    fi
    free_port; lp=$PORT; free_port; tp=$PORT
    printf '[host]\nworkers = 4\nhang-timeout = 2\nlog-level = info\n[filter hanger]\npath = %s\n[rule r]\nlisten = 127.0.0.1:%s\ntarget = 127.0.0.1:%s\n' \
        "$DLL_hanger" $lp $tp > "$conf"
    start_server "$T/hanger-$fl-server.log" $tp 65536 71
    if ! start_host "$hlog" "$FWXHOST" --config "$conf" --drain 1; then
        stop_host $HOST_PID; stop_peer $SRV_PID
        not_ok "$fl hanger" "fwxhost did not become ready (exit $HOST_RC)" "$hlog"; return
    fi
    t0=$(date +%s%N)
    "$FXPEER" probe --connect 127.0.0.1:$lp --data "HANG" --timeout 15 > "$T/hanger-$fl-probe.log" 2>&1 &
    hang=$!
    pids+=("$hang")
    local ms=-1 line
    if wait_for "$hlog" 'watchdog: filter hanger has not returned' $HOST_PID 6; then
        ms=$((($(date +%s%N) - t0) / 1000000))
    fi
    line=$(grep -m 1 'watchdog: filter hanger has not returned' "$hlog")
    if [ $ms -lt 0 ]; then
        add "no watchdog line within 6 s"
    else
        [ $ms -le 4000 ] || add "the watchdog line came after $ms ms (hang-timeout 2 s + 2 s allowed)"
        grep -q 'from IFWXIOCompletion::CompleteAsyncIO after [0-9]* s (thread [0-9a-f]*, worker [0-3])' <<< "$line" ||
            add "the watchdog line does not name interface, method, thread and worker: $line"
    fi
    result "$fl hanger: watchdog reports the stuck call after $ms ms: ${line#*: }" "$why" "$hlog"

    # SO_REUSEPORT spreads new connections over the 4 workers: about 1 in 4
    # lands on the stuck one and waits for ever; the others are served.
    why=""
    "$FXPEER" client --connect 127.0.0.1:$lp --conns 16 --send 65536 --recv 65536 --seed 71 \
        --timeout 4 > "$T/hanger-$fl-client.log" 2>&1
    local bad good other
    bad=$(sed -n 's/.* \([0-9]*\) bad.*/\1/p' "$T/hanger-$fl-client.log" | tail -n 1)
    bad=${bad:-0}
    good=$((16 - bad))
    other=$(grep '^fxpeer: connection' "$T/hanger-$fl-client.log" | grep -v 'received 0/' |
        grep -vc 'still running at the timeout\|stopped (timeout)')
    [ $good -ge 4 ] || add "only $good of 16 connections were served"
    [ "$other" -eq 0 ] || add "$other connections failed otherwise than by waiting on the stuck worker"
    kill -0 $HOST_PID 2> /dev/null || add "fwxhost died"
    result "$fl hanger: the other workers keep serving ($good of 16 connections byte-identical, $bad waited on the stuck worker)" \
        "$why" "$T/hanger-$fl-client.log" "$hlog"

    why=""
    t0=$SECONDS
    stop_host $HOST_PID 20
    stop_peer $hang
    stop_peer $SRV_PID
    [ "$HOST_RC" = 3 ] || add "fwxhost exit status $HOST_RC after SIGTERM (expected 3: stopped with a stuck worker)"
    grep -q 'ERROR: worker [0-3] is stuck (filter hanger in IFWXIOCompletion::CompleteAsyncIO for [0-9]* s); stopping without it' "$hlog" ||
        add "no log line 'worker N is stuck (filter hanger in IFWXIOCompletion::CompleteAsyncIO ...)'"
    result "$fl hanger: SIGTERM stops the host without the stuck worker in $((SECONDS - t0)) s, exit status 3" \
        "$why" "$hlog"
}

# ---------------------------------------------------------------- e. leaker
test_leaker() {
    local fl=$1 lp tp hlog why=""
    hlog=$T/leaker-$fl-host.log
    if ! need_filters $fl leaker; then
        not_ok "$fl leaker" "$MISSING"; return
    fi
    free_port; lp=$PORT; free_port; tp=$PORT
    start_server "$T/leaker-$fl-server.log" $tp 16384 81
    if ! start_host "$hlog" "$FWXHOST" --filter "$DLL_leaker" --listen 127.0.0.1:$lp \
            --target 127.0.0.1:$tp --log-level notice; then
        stop_host $HOST_PID; stop_peer $SRV_PID
        not_ok "$fl leaker" "fwxhost did not become ready (exit $HOST_RC)" "$hlog"; return
    fi
    "$FXPEER" client --connect 127.0.0.1:$lp --conns 200 --send 16384 --recv 16384 --seed 81 \
        --timeout 60 > "$T/leaker-$fl-client.log" 2>&1 || add "$(tail -n 1 "$T/leaker-$fl-client.log")"
    kill -0 $HOST_PID 2> /dev/null || add "fwxhost died"
    stop_host $HOST_PID
    stop_peer $SRV_PID
    [ "$HOST_RC" = 0 ] || add "fwxhost exit status $HOST_RC after SIGTERM (expected 0)"
    local leaked
    leaked=$(sed -n 's/.*NOTICE: \([0-9]*\) host buffers are still referenced.*/\1/p' "$hlog")
    [ -n "$leaked" ] || add "the host did not report the leaked buffers at stop"
    result "$fl leaker: 200 connections byte-identical, host up, exits 0 on SIGTERM (${leaked:-?} buffers leaked): $(tail -n 1 "$T/leaker-$fl-client.log" | sed 's/^fxpeer: //')" \
        "$why" "$T/leaker-$fl-client.log" "$hlog"
}

# ---------------------------------------------------------------- f. garbage
test_garbage() {
    local fl=$1 lp tp conf hlog why="" rc
    conf=$T/garbage-$fl.ini hlog=$T/garbage-$fl-host.log
    if ! need_filters $fl garbage; then
        not_ok "$fl garbage" "$MISSING"; return
    fi
    free_port; lp=$PORT; free_port; tp=$PORT
    # max-faults = 0: never disabled, so every answer stays garbage.
    printf '[host]\nworkers = 2\nmax-faults = 0\nlog-level = info\n[filter garbage]\npath = %s\n[rule g]\nlisten = 127.0.0.1:%s\ntarget = 127.0.0.1:%s\n' \
        "$DLL_garbage" $lp $tp > "$conf"
    start_server "$T/garbage-$fl-server.log" $tp 32768 91
    if ! start_host "$hlog" env FWX_GARBAGE_SEED=91 FWX_GARBAGE_ATTACH=3,4,5,6,0 "$FWXHOST" --config "$conf"; then
        stop_host $HOST_PID; stop_peer $SRV_PID
        not_ok "$fl garbage" "fwxhost did not become ready (exit $HOST_RC)" "$hlog"; return
    fi
    # The first five connections meet the scripted AttachToSession answers
    # one at a time; then 95 at once meet the seeded random ones.
    local i
    for i in 1 2 3 4 5; do
        "$FXPEER" client --connect 127.0.0.1:$lp --conns 1 --send 32768 --recv 32768 --seed 91 \
            --index-base $((1000 + i)) --timeout 5 > /dev/null 2>&1
    done
    "$FXPEER" client --connect 127.0.0.1:$lp --conns 95 --send 32768 --recv 32768 --seed 91 \
        --timeout 30 > "$T/garbage-$fl-client.log" 2>&1
    kill -0 $HOST_PID 2> /dev/null || add "fwxhost died"
    local good bad
    bad=$(sed -n 's/.* \([0-9]*\) bad.*/\1/p' "$T/garbage-$fl-client.log" | tail -n 1)
    good=$((95 - ${bad:-0}))
    grep -q 'AttachToSession returned 0x00000000 with an unusable session-filter pointer' "$hlog" ||
        add "no log line for the garbage session-filter pointer"
    grep -q 'AttachToSession returned unreadable or corrupt per-session hook events' "$hlog" ||
        add "no log line for the garbage hook events"
    [ "$(count 'unreadable or corrupt per-session hook events' "$hlog")" -ge 2 ] ||
        add "garbage port ranges were not refused"
    grep -q 'filter garbage: AttachToSession returned 0x[89a-f]' "$hlog" ||
        add "no log line for the failed AttachToSession"
    stop_host $HOST_PID
    stop_peer $SRV_PID
    [ "$HOST_RC" = 0 ] || add "fwxhost exit status $HOST_RC after SIGTERM (expected 0)"
    result "$fl garbage: host survives 100 connections of garbage answers ($good of the last 95 served), exits 0" \
        "$why" "$hlog"

    # A session filter whose every method faults: faults are counted (two per
    # connection: the event, then fwx_ConnectionTerminating), the filter is
    # disabled, the rule goes on without it.
    why=""
    conf=$T/garbage2-$fl.ini hlog=$T/garbage2-$fl-host.log
    free_port; lp=$PORT
    printf '[host]\nmax-faults = 4\non-disabled-filter = bypass\nlog-level = info\n[filter garbage]\npath = %s\n[rule g]\nlisten = 127.0.0.1:%s\ntarget = 127.0.0.1:%s\n' \
        "$DLL_garbage" $lp $tp > "$conf"
    start_server "$T/garbage2-$fl-server.log" $tp 32768 92
    if ! start_host "$hlog" env FWX_GARBAGE_SEED=92 FWX_GARBAGE_ATTACH=7 "$FWXHOST" --config "$conf"; then
        stop_host $HOST_PID; stop_peer $SRV_PID
        not_ok "$fl garbage: faulting session filter" "fwxhost did not become ready (exit $HOST_RC)" "$hlog"; return
    fi
    for i in 1 2; do
        probe $lp 5
        [ -n "$(closed_at_once)" ] && add "connection $i: $(closed_at_once)"
    done
    "$FXPEER" client --connect 127.0.0.1:$lp --conns 10 --send 32768 --recv 32768 --seed 92 \
        --timeout 20 > "$T/garbage2-$fl-client.log" 2>&1 || add "after the disable: $(tail -n 1 "$T/garbage2-$fl-client.log")"
    stop_host $HOST_PID
    stop_peer $SRV_PID
    [ "$(count 'filter garbage faulted in IFWXSessionFilter::FirewallEventHandler' "$hlog")" -eq 4 ] ||
        add "$(count 'filter garbage faulted in IFWXSessionFilter::FirewallEventHandler' "$hlog") faults in FirewallEventHandler logged, expected 4"
    grep -q 'filter garbage disabled after 4 faults; new connections bypass it' "$hlog" ||
        add "no 'disabled after 4 faults; new connections bypass it' line"
    [ "$HOST_RC" = 0 ] || add "fwxhost exit status $HOST_RC after SIGTERM (expected 0)"
    result "$fl garbage: a session filter whose methods all fault: 2 connections refused, filter disabled, 10 more bypass it" \
        "$why" "$T/garbage2-$fl-client.log" "$hlog"

    # Garbage from FilterInit: refuse to start, naming the filter.
    why=""
    free_port; lp=$PORT
    FWX_GARBAGE_INIT=1 timeout 60 "$FWXHOST" --filter "$DLL_garbage" --listen 127.0.0.1:$lp \
        --target 127.0.0.1:$tp > "$T/garbage-init.out" 2> "$T/garbage-init.err" < /dev/null
    rc=$?
    [ $rc -eq 2 ] || add "exit status $rc, expected 2"
    # The fault's own log line, then the one fatal line.
    grep -q 'ERROR: filter garbage faulted in IFWXFilter::FilterInit (reading hook events): exception 0xc0000005' \
        "$T/garbage-init.err" || add "the fault reading the hook events is not logged"
    tail -n 1 "$T/garbage-init.err" |
        grep -q '^fwxhost: filter garbage: .*garbage\.dll: FilterInit returned an unreadable hook-event pointer' ||
        add "unexpected last line: $(tail -n 1 "$T/garbage-init.err")"
    [ "$(wc -l < "$T/garbage-init.err")" -eq 2 ] || add "$(wc -l < "$T/garbage-init.err") lines on stderr, expected 2"
    result "$fl garbage hook events from FilterInit: the host refuses to start: $(tail -n 1 "$T/garbage-init.err")" \
        "$why" "$T/garbage-init.err"
}

# ---------------------------------------------------------------- main
note "fault-handling tests; flavours: $FLAVOURS; temp: $T"
ALL_GROUPS="crasher bypass where hanger leaker garbage"
tl_groups "${FWX_FAULT_TESTS:-$ALL_GROUPS}"
tl_run_groups $ALL_GROUPS
tl_done
