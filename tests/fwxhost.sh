#!/bin/bash
# fwxhost.sh - end-to-end tests of fwxhost: real TCP traffic through the
# test filters, for each flavour in FWX_FLAVOURS. Run by automake through
# tests/wine-run (or directly, see below); prints TAP, exits 0 iff all passed.
#
#   a. 50 MiB each way over 100 concurrent connections, byte-identical:
#      passthrough, cxxpass, a chain of 4 passthroughs, and no filter
#   b. rewrite: longer and shorter replacement, 1-, 7- and 65536-byte writes
#   c. denyport: the denied rule's client is closed at once, the log names
#      the filter, the config's other rule keeps working
#   d. sessionlog: the documented order of filter calls
#   e. curl fetches 20 MiB from nginx through passthrough (SKIP w/o nginx)
#   f. bad input: one line on stderr and exit status 2; at run time a
#      refusing target closes the client and the host serves the next one
#
# Environment (set by make check): FWX_BUILDDIR, FWX_SRCDIR, FWX_FLAVOURS,
# WINEPREFIX, WINEDEBUG; optional FWX_WINE32/FWX_WINE64 (else taken from
# the build's Makefile), FWX_HOST_TESTS (groups to run, default all:
# "bulk rewrite denyport sessionlog nginx bad"). Directly:
#   cd build && WINEPREFIX=$PWD/wineprefix WINEDEBUG=-all FWX_BUILDDIR=$PWD \
#     FWX_SRCDIR=/work/main FWX_FLAVOURS="x86 x64" bash ../tests/fwxhost.sh
set -u

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tl_setup fwxhost
tl_fxpeer

# host_argv FLAVOUR: the direct winelib command of a flavour (no launcher),
# for runs without any filter DLL the launcher could pick the flavour by.
host_argv() {
    if [ "$1" = x86 ]; then HOST_ARGV=("$WINE32" "$B/bin/fwxhost-x86.exe.so")
    else HOST_ARGV=("$WINE64" "$B/bin/fwxhost-x64.exe.so"); fi
}
# FLAVOUR NAME: sets DLL; 1 (and a message in MISSING) if absent
need_filter() { DLL=$B/filters/$1/$2.dll; need_filters "$1" "$2"; }

# ---------------------------------------------------------------- a. bulk
BULK_CONNS=100
BULK_BYTES=524288       # per connection and direction: 100 x 512 KiB = 50 MiB each way
seed=$((($$ % 1000) * 1000))

# bulk FLAVOUR DESC HOSTCMD...: the host command gets --listen/--target appended.
bulk() {
    local fl=$1 desc=$2 why="" lp tp t0 ms
    shift 2
    seed=$((seed + 1))
    free_port; tp=$PORT
    free_port; lp=$PORT
    local slog=$T/bulk-$fl-$n-server.log hlog=$T/bulk-$fl-$n-host.log clog=$T/bulk-$fl-$n-client.log
    if ! start_server "$slog" $tp $BULK_BYTES $seed; then
        not_ok "$fl $desc" "fxpeer server did not start" "$slog"; return
    fi
    if ! start_host "$hlog" "$@" --listen 127.0.0.1:$lp --target 127.0.0.1:$tp --log-level info; then
        stop_host $HOST_PID
        stop_peer $SRV_PID
        not_ok "$fl $desc" "fwxhost did not become ready (exit $HOST_RC)" "$hlog"; return
    fi
    t0=$(date +%s%N)
    "$FXPEER" client --connect 127.0.0.1:$lp --conns $BULK_CONNS --send $BULK_BYTES --recv $BULK_BYTES \
        --seed $seed --timeout 90 > "$clog" 2>&1
    local crc=$?
    ms=$((($(date +%s%N) - t0) / 1000000))
    stop_host $HOST_PID
    stop_peer $SRV_PID
    [ $crc -eq 0 ] || why="fxpeer client exit $crc: $(tail -n 1 "$clog")"
    [ "$HOST_RC" = 0 ] || why="${why:+$why; }fwxhost exit status $HOST_RC after SIGTERM (expected 0)"
    local bits=64
    [ $fl = x86 ] && bits=32
    grep -q "($bits-bit host)" "$hlog" || why="${why:+$why; }the host that ran is not the $bits-bit one"
    local good
    good=$(grep -c ' identical, down .* trailer sent' "$slog")
    [ "$good" -eq $BULK_CONNS ] || why="${why:+$why; }server saw $good/$BULK_CONNS intact uploads"
    if [ -z "$why" ]; then
        ok "$fl $desc: $BULK_CONNS conns, $((BULK_CONNS * BULK_BYTES)) bytes each way identical ($ms ms)"
    else
        grep -v '^server conn .* identical, down .* trailer sent' "$slog" > "$slog.bad"
        not_ok "$fl $desc" "$why" "$clog" "$slog.bad" "$hlog"
    fi
}

test_bulk() {
    local fl=$1 p
    if need_filter $fl passthrough; then
        bulk $fl "passthrough" "$FWXHOST" --filter "$DLL"
        p=$DLL
        bulk $fl "chain of 4 passthrough" "$FWXHOST" --filter "$p" --filter "$p" --filter "$p" --filter "$p"
    else
        not_ok "$fl passthrough" "$MISSING"
        not_ok "$fl chain of 4 passthrough" "$MISSING"
    fi
    if need_filter $fl cxxpass; then
        bulk $fl "cxxpass" "$FWXHOST" --filter "$DLL"
    else
        not_ok "$fl cxxpass" "$MISSING"
    fi
    host_argv $fl
    bulk $fl "no filter (fx_relay)" "${HOST_ARGV[@]}"
}

# ---------------------------------------------------------------- b. rewrite
make_rewrite_inputs() {
    # Small input for the 1- and 7-byte writes: tokens at both ends, glued,
    # overlapping false starts, near misses, and a partial token at the very
    # end that must come out unchanged at the half-close.
    printf '%s' "ISA2000 starts; ISA2000ISA2000 glued; ISAISA2000 restart; ISA2ISA2000; IISA2000;" \
        " ISA200 near miss; ISA20000 longer; isa2000 lower case; I S A 2000;" \
        $'\nline two: (ISA2000) [ISA2000] ISA2000\nISA2000\n\nISAISAISA2000 ISA2000ISA2000ISA2000' \
        " end ISA2000ISA20" > "$T/rw-small.txt"
    # Large input for the 65536-byte writes: tokens across the first write
    # boundaries, then dense lines whose length (61) shifts every boundary.
    {
        head -c 65533 /dev/zero | tr '\0' 'x'
        printf 'ISA2000'
        head -c $((65536 - 3 - 3)) /dev/zero | tr '\0' 'y'
        printf 'ISA2000\n'
        awk 'BEGIN { for (i = 0; i < 17000; i++)
            printf "%06d ISA2000 a ISA2000ISA2000 ISAISA2000 ISA200 IISA2000\n", i }'
        printf 'ISA2000'
    } > "$T/rw-large.txt"
}

# rewrite_run FLAVOUR TO: one host, three transfers (1, 7, 65536-byte writes).
rewrite_run() {
    local fl=$1 to=$2 lp sp hlog
    hlog=$T/rw-$fl-$to-host.log
    local cases=("1 small 3" "7 small 2" "65536 large 0")
    if ! need_filter $fl rewrite; then
        local c
        for c in "${cases[@]}"; do
            set -- $c
            not_ok "$fl rewrite ISA2000->$to, $1-byte writes" "$MISSING"
        done
        return
    fi
    free_port; sp=$PORT
    free_port; lp=$PORT
    if ! start_host "$hlog" env FWX_REWRITE_FROM=ISA2000 FWX_REWRITE_TO="$to" \
            "$FWXHOST" --filter "$DLL" --listen 127.0.0.1:$lp --target 127.0.0.1:$sp --log-level info; then
        stop_host $HOST_PID
        not_ok "$fl rewrite ISA2000->$to" "fwxhost did not become ready (exit $HOST_RC)" "$hlog"
        return
    fi
    local c chunk input delay
    for c in "${cases[@]}"; do
        set -- $c
        chunk=$1 input=$T/rw-$2.txt delay=$3
        local desc="$fl rewrite ISA2000->$to, $chunk-byte writes"
        local out=$T/rw-$fl-$to-$chunk.out exp=$T/rw-$fl-$to-$chunk.exp slog=$T/rw-$fl-$to-$chunk.sink
        local why=""
        sed "s/ISA2000/$to/g" "$input" > "$exp"
        "$FXPEER" sink --listen 127.0.0.1:$sp --out "$out" --count 1 > "$slog" 2>&1 &
        local sink=$!
        pids+=("$sink")
        if ! wait_for "$slog" '^ready' $sink 10; then
            stop_peer $sink
            not_ok "$desc" "fxpeer sink did not start" "$slog"
            continue
        fi
        if ! "$FXPEER" send --connect 127.0.0.1:$lp --file "$input" --chunk $chunk --delay-ms $delay \
                --timeout 20 > "$slog.send" 2>&1; then
            why="fxpeer send failed: $(tail -n 1 "$slog.send")"
        fi
        for _ in $(seq 1 50); do kill -0 $sink 2> /dev/null || break; sleep 0.1; done
        stop_peer $sink
        if [ -n "$why" ]; then
            why="$why; the sink got $(wc -c < "$out") of the $(wc -c < "$exp") expected bytes"
        elif ! cmp -s "$exp" "$out"; then
            why="sink got $(wc -c < "$out") bytes, expected $(wc -c < "$exp"): $(cmp "$exp" "$out" 2>&1 | head -n 1)"
            local off
            off=$(cmp "$exp" "$out" 2>&1 | sed -n 's/.*byte \([0-9]*\).*/\1/p' | head -n 1)
            if [ -n "$off" ]; then
                why="$why"$'\n'"expected: $(tail -c +$((off > 30 ? off - 30 : 1)) "$exp" | head -c 80 | tr '\n' '|')"
                why="$why"$'\n'"got:      $(tail -c +$((off > 30 ? off - 30 : 1)) "$out" | head -c 80 | tr '\n' '|')"
            fi
        fi
        if [ -z "$why" ]; then
            ok "$desc: $(wc -c < "$input") bytes in, $(wc -c < "$out") out as expected ($(sed -n 's/.*in \([0-9]*\) reads/\1/p' "$slog") reads at the sink)"
        else
            not_ok "$desc" "$why" "$slog.send" "$slog" "$hlog"
        fi
    done
    stop_host $HOST_PID
    result "$fl rewrite ISA2000->$to: host exits 0 on SIGTERM" \
        "$([ "$HOST_RC" = 0 ] || echo "fwxhost exit status $HOST_RC")" "$hlog"
}

test_rewrite() {
    rewrite_run $1 fwxshim-on-linux
    rewrite_run $1 X
}

# ---------------------------------------------------------------- c. denyport
test_denyport() {
    local fl=$1 pa pb ta tb why="" conf hlog
    conf=$T/deny-$fl.ini hlog=$T/deny-$fl-host.log
    if ! need_filter $fl denyport; then
        not_ok "$fl denyport" "$MISSING"; return
    fi
    local sa sb
    two_rules_conf "$conf" "two publishing rules; the denyport filter is told to deny rule a's port" \
        'log-level = info' deny="$DLL"
    if ! two_rules_start "$T/deny-$fl" 65536 11 262144 12 "$conf" "$hlog" FWX_DENYPORT_PORTS=$pa; then
        not_ok "$fl denyport" "fwxhost --config did not become ready (exit $HOST_RC)" "$hlog"; return
    fi
    "$FXPEER" probe --connect 127.0.0.1:$pa --data "hello" --timeout 10 > "$T/deny-$fl-probe.log" 2>&1
    local prc=$? probe
    probe=$(cat "$T/deny-$fl-probe.log")
    if [ $prc -ne 0 ]; then
        why="denied client not closed: $probe"
    elif ! grep -q 'received 0 bytes' <<< "$probe"; then
        why="denied client got bytes: $probe"
    else
        local ms
        ms=$(sed -n 's/.* after \([0-9]*\) ms/\1/p' <<< "$probe")
        [ "${ms:-99999}" -le 3000 ] || why="denied client closed only after $ms ms"
    fi
    sleep 0.3
    grep -q 'denied by filter deny' "$hlog" ||
        why="${why:+$why; }host log does not name the denying filter ('denied by filter deny')"
    result "$fl denyport: rule a's client closed at once, no bytes, log names filter 'deny' (${probe#fxpeer probe: })" \
        "$why" "$hlog"
    why=""
    "$FXPEER" client --connect 127.0.0.1:$pb --conns 10 --send 262144 --recv 262144 --seed 12 \
        --timeout 60 > "$T/deny-$fl-client.log" 2>&1 || why="rule b: $(tail -n 1 "$T/deny-$fl-client.log")"
    stop_host $HOST_PID
    stop_peer $sa
    stop_peer $sb
    grep -q '^server conn' "$T/deny-$fl-a.log" &&
        why="${why:+$why; }rule a's target got a connection: $(grep '^server conn' "$T/deny-$fl-a.log" | head -n 1)"
    [ "$HOST_RC" = 0 ] || why="${why:+$why; }fwxhost exit status $HOST_RC after SIGTERM"
    result "$fl denyport: the config's other rule (b) still works: $(tail -n 1 "$T/deny-$fl-client.log" | sed 's/^fxpeer: //')" \
        "$why" "$T/deny-$fl-client.log" "$hlog"
}

# ---------------------------------------------------------------- d. sessionlog
test_sessionlog() {
    local fl=$1 lp tp why="" slf hlog
    slf=$T/sessionlog-$fl.txt hlog=$T/sl-$fl-host.log
    if ! need_filter $fl sessionlog; then
        not_ok "$fl sessionlog" "$MISSING"; return
    fi
    free_port; tp=$PORT; free_port; lp=$PORT
    start_server "$T/sl-$fl-server.log" $tp 4096 21
    if ! start_host "$hlog" env FWX_SESSIONLOG_FILE="$slf" "$FWXHOST" --filter "$DLL" \
            --listen 127.0.0.1:$lp --target 127.0.0.1:$tp --log-level info; then
        stop_host $HOST_PID; stop_peer $SRV_PID
        not_ok "$fl sessionlog" "fwxhost did not become ready (exit $HOST_RC)" "$hlog"; return
    fi
    "$FXPEER" client --connect 127.0.0.1:$lp --conns 1 --send 4096 --recv 4096 --seed 21 \
        --timeout 30 > "$T/sl-$fl-client.log" 2>&1 || why="client: $(tail -n 1 "$T/sl-$fl-client.log")"
    stop_host $HOST_PID
    stop_peer $SRV_PID
    [ "$HOST_RC" = 0 ] || why="${why:+$why; }fwxhost exit status $HOST_RC after SIGTERM"
    local steps=("FilterInit" "AttachToSession" "FirewallEventHandler.*fwx_AcceptedConnection" "SetSockets"
                 "CompleteAsyncIO" "FirewallEventHandler.*fwx_ConnectionTerminating" "DataFilter::Detach"
                 "SessionFilter::Detach" "FilterShutdown")
    local prev=0 prevname="" s line
    if [ ! -s "$slf" ]; then
        why="${why:+$why; }no session log written to \$FWX_SESSIONLOG_FILE"
    else
        for s in "${steps[@]}"; do
            line=$(grep -n -m 1 -E -- "$s" "$slf" | cut -d: -f1)
            if [ -z "$line" ]; then
                why="${why:+$why; }no line matching '$s'"
            elif [ "$line" -le "$prev" ]; then
                why="${why:+$why; }first '$s' (line $line) is not after first '$prevname' (line $prev)"
            fi
            [ -n "$line" ] && prev=$line prevname=$s
        done
    fi
    result "$fl sessionlog: FilterInit .. FilterShutdown in the documented order ($(wc -l < "$slf" 2> /dev/null || echo 0) lines)" \
        "$why" "$slf" "$hlog"
}

# ---------------------------------------------------------------- e. nginx + curl
NGINX_PORT=
start_nginx() {
    command -v nginx > /dev/null && command -v curl > /dev/null || return 1
    mkdir -p "$T/nginx/www"
    head -c $((20 * 1024 * 1024)) /dev/urandom > "$T/nginx/www/big.bin"
    # nginx's workers run as nobody when we are root: let them read the files.
    chmod a+rx "$T" "$T/nginx" "$T/nginx/www" && chmod a+r "$T/nginx/www/big.bin"
    tl_nginx / || return 2
}

test_nginx() {
    local fl=$1 lp why="" hlog got
    hlog=$T/nginx-$fl-host.log got=$T/nginx-$fl.bin
    if [ -z "$NGINX_PORT" ]; then
        skip "$NGINX_WHY: $fl curl through fwxhost"; return
    fi
    if ! need_filter $fl passthrough; then
        not_ok "$fl curl through passthrough" "$MISSING"; return
    fi
    free_port; lp=$PORT
    if ! start_host "$hlog" "$FWXHOST" --filter "$DLL" --listen 127.0.0.1:$lp \
            --target 127.0.0.1:$NGINX_PORT --log-level info; then
        stop_host $HOST_PID
        not_ok "$fl curl through passthrough" "fwxhost did not become ready (exit $HOST_RC)" "$hlog"; return
    fi
    local res
    res=$(curl -s -m 60 -o "$got" -w '%{http_code} %{size_download} %{time_total}' "http://127.0.0.1:$lp/big.bin")
    stop_host $HOST_PID
    set -- $res
    [ "${1:-}" = 200 ] || why="HTTP status '${1:-none}' (curl: $res)"
    [ -z "$why" ] && ! cmp -s "$got" "$T/nginx/www/big.bin" &&
        why="body differs: $(cmp "$got" "$T/nginx/www/big.bin" 2>&1 | head -n 1)"
    [ "$HOST_RC" = 0 ] || why="${why:+$why; }fwxhost exit status $HOST_RC after SIGTERM"
    result "$fl curl GET 20 MiB from nginx through passthrough: HTTP ${1:-?}, ${2:-0} bytes identical in ${3:-?} s" \
        "$why" "$hlog" "$T/nginx/logs/error.log"
    rm -f "$got"
}

# ---------------------------------------------------------------- f. bad input
# expect_fail DESC REGEX CMD...: exit status 2, exactly one line on stderr
# matching REGEX, nothing on stdout, within 60 s.
expect_fail() {
    local desc=$1 re=$2 why="" rc lines
    shift 2
    timeout "${EXPECT_TIMEOUT:-60}" "$@" > "$T/fail.out" 2> "$T/fail.err" < /dev/null
    rc=$?
    lines=$(wc -l < "$T/fail.err")
    [ $rc -eq 2 ] || why="exit status $rc, expected 2"
    [ "$lines" -eq 1 ] || why="${why:+$why; }$lines lines on stderr, expected 1"
    grep -q -E -- "$re" "$T/fail.err" || why="${why:+$why; }no line matching /$re/"
    [ -s "$T/fail.out" ] && why="${why:+$why; }unexpected output on stdout"
    if [ -z "$why" ]; then
        ok "$desc: $(head -n 1 "$T/fail.err")"
    else
        cp "$T/fail.err" "$T/fail.stderr"
        not_ok "$desc" "$why" "$T/fail.stderr" "$T/fail.out"
    fi
}

test_bad_common() {     # flavour-independent: the launcher refuses these
    local lp tp
    free_port; lp=$PORT; free_port; tp=$PORT
    expect_fail "missing filter DLL" "^fwxhost: .*$T/nope/missing\.dll.*(No such file|not found|cannot)" \
        "$FWXHOST" --filter "$T/nope/missing.dll" --listen 127.0.0.1:$lp --target 127.0.0.1:$tp
    expect_fail "--filter without a value" "^fwxhost: --filter needs a value" \
        "$FWXHOST" --listen 127.0.0.1:$lp --target 127.0.0.1:$tp --filter
    expect_fail "non-PE file as a filter" "^fwxhost: .*README\.md.*(PE|MZ)" \
        "$FWXHOST" --filter "$S/README.md" --listen 127.0.0.1:$lp --target 127.0.0.1:$tp
    printf 'just some text\n' > "$T/text.dll"
    expect_fail "text file named .dll as a filter" "^fwxhost: .*text\.dll.*(PE|MZ)" \
        "$FWXHOST" --filter "$T/text.dll" --listen 127.0.0.1:$lp --target 127.0.0.1:$tp
    local p=$B/filters/x64/passthrough.dll
    [ -f "$p" ] || p=$B/filters/x86/passthrough.dll
    printf '[filter p]\npath = %s\n\n[rule web]\nlisten = 127.0.0.1:%s\ntargt = 127.0.0.1:%s\n' \
        "$p" $lp $tp > "$T/typo.ini"
    expect_fail "config with a typo'd key" "^fwxhost: $T/typo\.ini:6: .*'targt'.*did you mean 'target'" \
        "$FWXHOST" --config "$T/typo.ini"
}

test_bad_flavour() {
    local fl=$1 lp tp cc
    free_port; lp=$PORT; free_port; tp=$PORT
    if [ $fl = x86 ]; then cc=$(makevar MINGW32_CC); : "${cc:=i686-w64-mingw32-gcc}"
    else cc=$(makevar MINGW64_CC); : "${cc:=x86_64-w64-mingw32-gcc}"; fi
    printf 'int nothing_here(void) { return 0; }\n' > "$T/nocom.c"
    if "$cc" -shared -o "$T/nocom-$fl.dll" "$T/nocom.c" 2> "$T/nocom-$fl.build"; then
        expect_fail "$fl DLL without DllGetClassObject" "^fwxhost: .*nocom-$fl\.dll.*DllGetClassObject" \
            "$FWXHOST" --filter "$T/nocom-$fl.dll" --listen 127.0.0.1:$lp --target 127.0.0.1:$tp
    else
        not_ok "$fl DLL without DllGetClassObject" "cannot build the test DLL with $cc" "$T/nocom-$fl.build"
    fi
    if need_filter $fl passthrough; then
        expect_fail "$fl unknown CLSID" "^fwxhost: .*\{00000000-1111-2222-3333-444444444444\}" \
            "$FWXHOST" --filter "$DLL={00000000-1111-2222-3333-444444444444}" \
            --listen 127.0.0.1:$lp --target 127.0.0.1:$tp

        # A port an fxpeer (SO_REUSEADDR only) already holds.
        "$FXPEER" sink --listen 127.0.0.1:$lp --out /dev/null > "$T/holder.log" 2>&1 &
        local holder=$!
        pids+=("$holder")
        wait_for "$T/holder.log" '^ready' $holder 10
        expect_fail "$fl listen port already in use (by another program)" "^fwxhost: .*127\.0\.0\.1:$lp.*in use" \
            "$FWXHOST" --filter "$DLL" --listen 127.0.0.1:$lp --target 127.0.0.1:$tp
        stop_peer $holder

        # Two fwxhosts on one port: with several workers the host uses
        # SO_REUSEPORT, which must not let a second host share the port.
        local hlog=$T/twice-$fl-host.log first
        if start_host "$hlog" "$FWXHOST" --filter "$DLL" --listen 127.0.0.1:$lp --target 127.0.0.1:$tp \
                --workers 2; then
            first=$HOST_PID
            EXPECT_TIMEOUT=15 expect_fail "$fl listen port already in use (by another fwxhost, --workers 2)" \
                "^fwxhost: .*127\.0\.0\.1:$lp.*in use" \
                "$FWXHOST" --filter "$DLL" --listen 127.0.0.1:$lp --target 127.0.0.1:$tp --workers 2
            stop_host $first
        else
            stop_host $HOST_PID
            not_ok "$fl listen port already in use (by another fwxhost)" "first fwxhost did not start" "$hlog"
        fi
        test_refused_target $fl
    else
        not_ok "$fl unknown CLSID" "$MISSING"
    fi
}

# A target that refuses: the client is closed, the host stays up and
# serves the next connection once the target is there.
test_refused_target() {
    local fl=$1 lp tp why="" hlog
    hlog=$T/refused-$fl-host.log
    free_port; lp=$PORT; free_port; tp=$PORT
    if ! start_host "$hlog" "$FWXHOST" --filter "$DLL" --listen 127.0.0.1:$lp --target 127.0.0.1:$tp \
            --log-level info; then
        stop_host $HOST_PID
        not_ok "$fl refusing target" "fwxhost did not become ready (exit $HOST_RC)" "$hlog"; return
    fi
    "$FXPEER" probe --connect 127.0.0.1:$lp --data "hello" --timeout 15 > "$T/refused-$fl-probe.log" 2>&1
    local prc=$? probe
    probe=$(cat "$T/refused-$fl-probe.log")
    [ $prc -eq 0 ] || why="client not closed: $probe"
    grep -q 'received 0 bytes' <<< "$probe" || why="${why:+$why; }$probe"
    sleep 0.3
    kill -0 $HOST_PID 2> /dev/null || why="${why:+$why; }fwxhost died"
    grep -q "connect to target 127.0.0.1:$tp failed" "$hlog" ||
        why="${why:+$why; }host log does not say the connect to the target failed"
    result "$fl refusing target: client closed (${probe#fxpeer probe: }), host logs it and stays up" \
        "$why" "$hlog"
    why=""
    start_server "$T/refused-$fl-server.log" $tp 100000 31
    "$FXPEER" client --connect 127.0.0.1:$lp --conns 5 --send 100000 --recv 100000 --seed 31 \
        --timeout 30 > "$T/refused-$fl-client.log" 2>&1 || why="$(tail -n 1 "$T/refused-$fl-client.log")"
    stop_host $HOST_PID
    stop_peer $SRV_PID
    [ "$HOST_RC" = 0 ] || why="${why:+$why; }fwxhost exit status $HOST_RC after SIGTERM"
    result "$fl refusing target: the next connections are served ($(tail -n 1 "$T/refused-$fl-client.log" | sed 's/^fxpeer: //'))" \
        "$why" "$T/refused-$fl-client.log" "$hlog"
}

# ---------------------------------------------------------------- main
note "fwxhost end-to-end tests; flavours: $FLAVOURS; fxpeer: $FXPEER; temp: $T"
tl_groups "${FWX_HOST_TESTS:-bulk rewrite denyport sessionlog nginx bad}"
make_rewrite_inputs
NGINX_WHY="not run"
want nginx && start_nginx
case $? in
    1) NGINX_WHY="nginx not installed"
       command -v curl > /dev/null || NGINX_WHY="curl not installed" ;;
    2) NGINX_WHY="nginx did not start: $(tail -n 2 "$T/nginx/logs/error.log" "$T/nginx/logs/stderr" 2> /dev/null | tr '\n' ' ')" ;;
esac
want bad && test_bad_common
for fl in $FLAVOURS; do
    t0=$SECONDS
    note "---- flavour $fl"
    fwxhost_built $fl || continue
    want bulk && test_bulk $fl
    want rewrite && test_rewrite $fl
    want denyport && test_denyport $fl
    want sessionlog && test_sessionlog $fl
    want nginx && test_nginx $fl
    want bad && test_bad_flavour $fl
    note "flavour $fl: $((SECONDS - t0)) s"
done
[ -n "${NGINX_PID:-}" ] && stop_peer $NGINX_PID
tl_done
