#!/bin/bash
# idle.sh - [host] idle-timeout: a connection that moves no byte for that
# long is aborted (both sides reset) and logged; one that keeps moving
# bytes is not. With and without a data filter (relay and chain paths).
# TAP; environment as for tests/fwxhost.sh.
set -u
TL_TAIL=15
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tl_setup fwx-idle
flavour=x64
case " ${FWX_FLAVOURS:-x64} " in *" x64 "*) ;; *) flavour=x86 ;; esac
tl_fxpeer
peer=$FXPEER

free_port; target=$PORT
"$peer" sink --listen 127.0.0.1:$target --out "$T/sink.bin" > "$T/sink.log" 2>&1 &
pids+=($!)
for mode in relay chain; do
    free_port; port=$PORT
    {
        printf '[host]\nidle-timeout = 1\nlog-level = info\n\n'
        [ $mode = chain ] && printf '[filter p]\npath = %s\n\n' "$B/filters/$flavour/passthrough.dll"
        printf '[rule r]\nlisten = 127.0.0.1:%s\ntarget = 127.0.0.1:%s\n' "$port" "$target"
    } > "$T/$mode.ini"
    "$B/bin/fwxhost" --config "$T/$mode.ini" 2> "$T/host-$mode.log" &
    hp=$!
    pids+=($hp)
    if ! wait_ready "$T/host-$mode.log" $hp; then
        fail "$mode: fwxhost starts" "$T/host-$mode.log"
        continue
    fi
    start=$SECONDS
    "$peer" probe --connect 127.0.0.1:$port --timeout 6 > "$T/probe-$mode.log" 2>&1
    took=$((SECONDS - start))
    if grep -q 'closed by peer' "$T/probe-$mode.log" && [ $took -le 4 ] &&
       grep -q 'idle for 1 s (idle-timeout)' "$T/host-$mode.log"; then
        ok "$mode: a silent connection is aborted after idle-timeout ($(tail -n 1 "$T/probe-$mode.log"))"
    else
        fail "$mode: a silent connection is aborted after idle-timeout (took ${took}s)" \
            "$T/probe-$mode.log" "$T/host-$mode.log"
    fi
    # A connection that keeps sending, a line every 300 ms for 2.4 s, survives.
    if { for i in 1 2 3 4 5 6 7 8; do echo "line $i"; sleep 0.3; done; } |
           timeout 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port; cat >&3; sleep 0.2" 2> "$T/busy-$mode.err" &&
       sleep 0.3 && grep ': closed' "$T/host-$mode.log" | tail -n 1 | grep -q 'closed, 56 bytes from client'; then
        ok "$mode: a connection that keeps moving bytes outlives idle-timeout"
    else
        fail "$mode: a connection that keeps moving bytes outlives idle-timeout" \
            "$T/busy-$mode.err" "$T/host-$mode.log"
    fi
    kill -TERM $hp
    wait $hp
done
tl_done
