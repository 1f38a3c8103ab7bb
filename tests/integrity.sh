#!/bin/bash
# integrity.sh - no byte lost, duplicated or reordered: SESSIONS (default
# 10000) sessions per flavour through a chain of three data filters
# (passthrough, cxxpass, passthrough: two implementations, C and C++), with
# fxpeer's integrity mode on both sides (tests/peers/fxpeer.c, "integrity
# mode"): per session a seeded plan of upload/download lengths (0..64 KiB,
# mostly below 4 KiB), a random size for every write (1 byte .. 16 KiB) and
# read, and a random half-close order (client first, server first before
# the client sent anything, or both at once). Both peers check every byte
# against the seeded stream and the length at EOF; the test asserts both
# report SESSIONS ok sessions, zero short/long/corrupt/errors, the same
# byte totals on both sides, and every half-close order used.
# Runtime: about 5 s per flavour on x64 (2 cores); the same count on x86.
# Prints TAP; exits 0 iff all passed.
set -u
B=${FWX_BUILDDIR:?FWX_BUILDDIR not set}
FLAVOURS=${FWX_FLAVOURS:-x64}
SESSIONS=${FWX_INTEGRITY_SESSIONS:-10000}
: "${WINEPREFIX:?WINEPREFIX not set}"
export WINEPREFIX WINEDEBUG=${WINEDEBUG:--all}
B=$(cd "$B" && pwd)
FXPEER=$B/tests/peers/fxpeer

T=$(mktemp -d /tmp/fwxinteg-test.XXXXXX) || exit 99
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2> /dev/null; done
    for p in "${pids[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$p" 2> /dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2> /dev/null; wait "$p" 2> /dev/null
    done
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 99' INT TERM HUP

n=0 failed=0
result() {
    n=$((n + 1))
    if [ -z "$2" ]; then echo "ok $n - $1"; return; fi
    failed=$((failed + 1)); echo "not ok $n - $1"; echo "#   $2"
    local f; shift 2
    for f in "$@"; do [ -s "$f" ] && tail -n 15 "$f" | sed 's/^/#   | /'; done
}
port_busy() { grep -q "$(printf ':%04X ' "$1")" /proc/net/tcp /proc/net/tcp6 2> /dev/null; }
next_port=$((20000 + ($$ * 7919 % 1200) * 10 + 3))
free_port() { while :; do next_port=$((next_port + 1)); port_busy $next_port || break; done; PORT=$next_port; }
wait_for() {
    local i
    for ((i = 0; i < $4 * 10; i++)); do
        grep -q -- "$2" "$1" 2> /dev/null && return 0
        kill -0 "$3" 2> /dev/null || { grep -q -- "$2" "$1" 2> /dev/null; return; }
        sleep 0.1
    done
    return 1
}
stop() {
    local i
    kill -TERM "$1" 2> /dev/null
    for ((i = 0; i < 300; i++)); do kill -0 "$1" 2> /dev/null || break; sleep 0.1; done
    kill -KILL "$1" 2> /dev/null
    wait "$1" 2> /dev/null
}
field() { sed -n "s/.* $2 \([0-9]*\).*/\1/p" "$1" | tail -n 1; }   # FILE NAME

for fl in $FLAVOURS; do
    seed=$(( ($$ * 31 + ${#fl}) % 100000 ))
    free_port; sp=$PORT; free_port; lp=$PORT
    slog=$T/srv-$fl.log hlog=$T/host-$fl.log clog=$T/cli-$fl.log
    "$FXPEER" iserver --listen 127.0.0.1:$sp --seed $seed --timeout 60 > "$slog" 2>&1 &
    srv=$!; pids+=($srv)
    wait_for "$slog" '^ready' $srv 10 || { result "$fl integrity" "iserver did not start" "$slog"; continue; }
    f=$B/filters/$fl
    "$B/bin/fwxhost" --filter "$f/passthrough.dll" --filter "$f/cxxpass.dll" --filter "$f/passthrough.dll" \
        --listen 127.0.0.1:$lp --target 127.0.0.1:$sp --control "$T/ctl-$fl.sock" > "$hlog" 2>&1 &
    host=$!; pids+=($host)
    if ! wait_for "$hlog" '^fwxhost: ready.*3 filter(s)' $host 60; then
        result "$fl integrity" "fwxhost did not become ready with 3 filters" "$hlog"; stop $host; stop $srv; continue
    fi
    "$FXPEER" iclient --connect 127.0.0.1:$lp --seed $seed --sessions $SESSIONS --parallel 16 \
        --timeout 60 > "$clog" 2>&1
    crc=$?
    stop $srv; src=$(wait $srv 2> /dev/null; echo $?)
    stop $host
    why=
    [ $crc -eq 0 ] || why="iclient exit $crc"
    for side in "$clog" "$slog"; do
        line=$(grep -E '^i(client|server): sessions' "$side" | tail -n 1)
        [ -n "$line" ] || { why="$why; no summary in ${side##*/}"; continue; }
        [ "$(field "$side" sessions)" = $SESSIONS ] && [ "$(field "$side" ok)" = $SESSIONS ] ||
            why="$why; ${line%%;*}"
        for k in client-first server-first both; do
            [ "$(field "$side" $k)" -gt 0 ] 2> /dev/null || why="$why; no $k session"
        done
    done
    [ "$(field "$clog" out)" = "$(field "$slog" in)" ] && [ "$(field "$slog" out)" = "$(field "$clog" in)" ] ||
        why="$why; byte totals differ: client out $(field "$clog" out) in $(field "$clog" in), server in $(field "$slog" in) out $(field "$slog" out)"
    summary=$(grep '^iclient: sessions' "$clog" | sed 's/^iclient: //')
    result "$fl $SESSIONS sessions through passthrough+cxxpass+passthrough, random chunks and half-closes: ${summary:-?}" \
        "${why#; }" "$clog" "$slog" "$hlog"
done
echo "1..$n"
[ $failed -eq 0 ]
