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
TL_TAIL=15
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tl_setup fwxinteg
SESSIONS=${FWX_INTEGRITY_SESSIONS:-10000}
tl_fxpeer
stop() { stop_host "$1"; }    # PID: SIGTERM and reap
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
tl_done
