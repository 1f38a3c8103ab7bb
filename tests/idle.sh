#!/bin/bash
# idle.sh - [host] idle-timeout: a connection that moves no byte for that
# long is aborted (both sides reset) and logged; one that keeps moving
# bytes is not. With and without a data filter (relay and chain paths).
# TAP; environment as for tests/fwxhost.sh.
set -u
B=$(cd "${FWX_BUILDDIR:?FWX_BUILDDIR not set}" && pwd)
: "${WINEPREFIX:?WINEPREFIX not set}"
export WINEPREFIX WINEDEBUG=${WINEDEBUG:--all}
flavour=x64
case " ${FWX_FLAVOURS:-x64} " in *" x64 "*) ;; *) flavour=x86 ;; esac
peer=$B/tests/peers/fxpeer
T=$(mktemp -d /tmp/fwx-idle.XXXXXX) || exit 99
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
    for p in $(shuf -i 20000-32000 -n 100); do
        (exec 3<> /dev/tcp/127.0.0.1/$p) 2> /dev/null && continue
        case " ${used:-} " in *" $p "*) continue ;; esac
        used="${used:-} $p"; echo "$p"; return
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

target=$(free_port)
"$peer" sink --listen 127.0.0.1:$target --out "$T/sink.bin" > "$T/sink.log" 2>&1 &
pids+=($!)
for mode in relay chain; do
    port=$(free_port)
    {
        printf '[host]\nidle-timeout = 1\nlog-level = info\n\n'
        [ $mode = chain ] && printf '[filter p]\npath = %s\n\n' "$B/filters/$flavour/passthrough.dll"
        printf '[rule r]\nlisten = 127.0.0.1:%s\ntarget = 127.0.0.1:%s\n' "$port" "$target"
    } > "$T/$mode.ini"
    "$B/bin/fwxhost" --config "$T/$mode.ini" 2> "$T/host-$mode.log" &
    hp=$!
    pids+=($hp)
    if ! wait_ready "$T/host-$mode.log" $hp; then
        not_ok "$mode: fwxhost starts" "$T/host-$mode.log"
        continue
    fi
    start=$SECONDS
    "$peer" probe --connect 127.0.0.1:$port --timeout 6 > "$T/probe-$mode.log" 2>&1
    took=$((SECONDS - start))
    if grep -q 'closed by peer' "$T/probe-$mode.log" && [ $took -le 4 ] &&
       grep -q 'idle for 1 s (idle-timeout)' "$T/host-$mode.log"; then
        ok "$mode: a silent connection is aborted after idle-timeout ($(tail -n 1 "$T/probe-$mode.log"))"
    else
        not_ok "$mode: a silent connection is aborted after idle-timeout (took ${took}s)" \
            "$T/probe-$mode.log" "$T/host-$mode.log"
    fi
    # A connection that keeps sending, a line every 300 ms for 2.4 s, survives.
    if { for i in 1 2 3 4 5 6 7 8; do echo "line $i"; sleep 0.3; done; } |
           timeout 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port; cat >&3; sleep 0.2" 2> "$T/busy-$mode.err" &&
       sleep 0.3 && grep ': closed' "$T/host-$mode.log" | tail -n 1 | grep -q 'closed, 56 bytes from client'; then
        ok "$mode: a connection that keeps moving bytes outlives idle-timeout"
    else
        not_ok "$mode: a connection that keeps moving bytes outlives idle-timeout" \
            "$T/busy-$mode.err" "$T/host-$mode.log"
    fi
    kill -TERM $hp
    wait $hp
done
echo "1..$n"
[ $failed = 0 ]
