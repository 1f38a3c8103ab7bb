#!/bin/bash
# netsock.sh - end-to-end tests of IFWXNetworkSocket (shim/com/netsocket.c)
# through the netsock test filter (test-filters/netsock.c), for each flavour
# in FWX_FLAVOURS. Run by automake through tests/wine-run; prints TAP, exits
# 0 iff all passed.
#
#   a. client: from FilterInit the filter connects to an fxpeer sink, sends
#      "hello from a filter\n", half-closes and reads the sink's reply until
#      the end; its report (FWX_NETSOCK_OUT) shows every call's HRESULT,
#      GetSockName/GetPeerName, the socket options and the bytes received
#   b. echo: the filter listens (Bind, Listen, Accept again and again) and
#      answers every buffer with "echo:" + the buffer; one short write, then
#      three concurrent clients with 120 KB each in 1000-byte writes
#   c. session: a connection to the dummy rule raises fwx_AcceptedConnection;
#      while handling it (on a worker thread) the filter runs the same client
#      on a socket from IFWXSession::CreateNetworkSocket, against its own echo
#      service; the socket lands on the caller's worker
#   d. stop: a connection still open at SIGTERM is closed, the listening
#      socket's pending Accept ends, and the host exits 0
#   e. connect failure: a refusing target fails the pending Send and Recv
#      with WSAECONNREFUSED (10061), and Connect itself returned S_OK
#
# Each host also has a dummy publishing rule (fwxhost needs one) on free
# ports; only test c connects to it, and its target refuses. Environment as for tests/fwxhost.sh (FWX_BUILDDIR,
# FWX_SRCDIR, FWX_FLAVOURS, WINEPREFIX, WINEDEBUG). Directly:
#   cd build && WINEPREFIX=$PWD/wineprefix WINEDEBUG=-all FWX_BUILDDIR=$PWD \
#     FWX_SRCDIR=/work/main FWX_FLAVOURS="x86 x64" bash ../tests/netsock.sh
set -u

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tl_setup fwx-netsock
tl_fxpeer

wait_file() {   # FILE PID SECONDS: 0 once FILE exists
    local i
    for ((i = 0; i < $3 * 20; i++)); do
        [ -f "$1" ] && return 0
        kill -0 "$2" 2> /dev/null || { [ -f "$1" ]; return; }
        sleep 0.05
    done
    return 1
}

# expect_lines FILE LINE...: WHY names every line (a grep -x pattern) missing from FILE
expect_lines() {
    local f=$1 l miss=""
    shift
    for l in "$@"; do
        grep -q -x -- "$l" "$f" 2> /dev/null || miss="${miss:+$miss; }no line '$l'"
    done
    WHY=$miss
}

# The report's data: everything after the "data:" line.
report_data() { sed -n '/^data:$/,$p' "$1" | tail -n +2; }

# ---------------------------------------------------------------- inputs
HELLO="hello from a filter"
REPLY="hello from fxpeer, the sink"
awk 'BEGIN { for (i = 0; i < 3000; i++) printf "line %05d of the netsock echo test: 0123456789\n", i }' \
    > "$T/echo-input.txt"      # about 150 KB, no "echo:" in it

# ---------------------------------------------------------------- a-d: one host
test_client_and_echo() {
    local fl=$1 dll=$B/filters/$1/netsock.dll lp tp sp ep why
    local hlog=$T/$fl-host.log report=$T/$fl-client.txt sink_out=$T/$fl-sink.out slog=$T/$fl-sink.log
    local sreport=$T/$fl-session.txt
    free_port; lp=$PORT; free_port; tp=$PORT; free_port; sp=$PORT; free_port; ep=$PORT
    if [ ! -f "$dll" ]; then
        not_ok "$fl netsock filter built" "missing $dll (is netsock in C_FILTERS?)"; return
    fi
    "$FXPEER" sink --listen 127.0.0.1:$sp --out "$sink_out" --count 1 --reply "$REPLY" > "$slog" 2>&1 &
    local sink=$!
    pids+=("$sink")
    if ! wait_for "$slog" '^ready' $sink 10; then
        stop_peer $sink
        not_ok "$fl fxpeer sink" "did not start" "$slog"; return
    fi
    if ! start_host "$hlog" env FWX_NETSOCK_LISTEN=$ep FWX_NETSOCK_CONNECT=127.0.0.1:$sp \
            FWX_NETSOCK_OUT="$report" FWX_FILTER_TRACE=1 \
            FWX_NETSOCK_SESSION_CONNECT=127.0.0.1:$ep FWX_NETSOCK_SESSION_OUT="$sreport" \
            "$B/bin/fwxhost" --filter "$dll" --listen 127.0.0.1:$lp --target 127.0.0.1:$tp --log-level info; then
        stop_host $HOST_PID; stop_peer $sink
        not_ok "$fl fwxhost with netsock" "did not become ready (exit $HOST_RC)" "$hlog"; return
    fi

    # a. the client
    why=""
    wait_file "$report" $HOST_PID 15 || why="no report in \$FWX_NETSOCK_OUT after 15 s"
    for _ in $(seq 1 50); do kill -0 $sink 2> /dev/null || break; sleep 0.1; done
    stop_peer $sink
    if [ -z "$why" ]; then
        expect_lines "$report" "create 0x00000000 firewall" "connect 0x00000000" "send 0x00000000" \
            "shutdown 0x00000000" "recv 0x00000000" "send-completion ok" "recv-end eof" \
            "received ${#REPLY} bytes"
        why=$WHY
        [ "$(report_data "$report")" = "$REPLY" ] ||
            why="${why:+$why; }data received: '$(report_data "$report" | head -c 80)', expected '$REPLY'"
        [ "$(cat "$sink_out" 2> /dev/null)" = "$HELLO" ] ||
            why="${why:+$why; }the sink got '$(head -c 80 "$sink_out" 2> /dev/null)', expected '$HELLO'"
    fi
    result "$fl client from FilterInit: Connect, Send, Shutdown(FALSE) and Recv issued at once; the sink got the hello, the filter the reply" \
        "$why" "$report" "$slog" "$hlog"
    if [ -f "$report" ]; then
        expect_lines "$report" "unbound-sockname 0x80072726" "unconnected-peername 0x80072749" \
            "unconnected-recv 0x80072749" "sockname 0x00000000 127\.0\.0\.1:[1-9][0-9]*" \
            "sockname-short 0x8007271e needed 16" "peername 0x00000000 127\.0\.0\.1:$sp"
        result "$fl client: GetSockName/GetPeerName: WSAEINVAL unbound, WSAENOTCONN unconnected, WSAEFAULT with the size needed, then the addresses" \
            "$WHY" "$report"
        expect_lines "$report" "set-nodelay 0x00000000" "get-nodelay 0x00000000 value 1" \
            "get-type 0x00000000 value 1" "get-unknown 0x8007273a" "packet-filter-options 0x00000000" \
            "close 0x00000000" "after-close-recv 0xc0040001"
        result "$fl client: TCP_NODELAY, SO_TYPE, WSAENOPROTOOPT, SetPacketFilterOptions; after Close FWX_E_TERMINATING" \
            "$WHY" "$report"
        # A listener the filter released without Close: the host closed it.
        why=""
        local uport
        expect_lines "$report" "udp 0x80004001 null" "unclosed-listener 0x00000000 127\.0\.0\.1:[1-9][0-9]*"
        why=$WHY
        uport=$(sed -n 's/^unclosed-listener 0x00000000 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$report")
        if [ -n "$uport" ]; then
            for _ in $(seq 1 20); do port_busy "$uport" || break; sleep 0.1; done
            port_busy "$uport" && why="${why:+$why; }port $uport still in use after the filter's final Release"
        fi
        grep -q 'released without Close; closing it' "$hlog" ||
            why="${why:+$why; }the host log does not mention the missing Close"
        result "$fl UDP answers E_NOTIMPL; a listening socket released without Close is closed by the host (port ${uport:-?} free)" \
            "$why" "$report" "$hlog"
    else
        not_ok "$fl client: names" "no report"
        not_ok "$fl client: options" "no report"
        not_ok "$fl client: UDP, release without Close" "no report"
    fi

    # b. echo
    why=""
    "$FXPEER" send --connect 127.0.0.1:$ep --data "ping" --out "$T/$fl-echo1.out" --timeout 10 \
        > "$T/$fl-echo1.log" 2>&1 || why="fxpeer send: $(tail -n 1 "$T/$fl-echo1.log")"
    [ -z "$why" ] && [ "$(cat "$T/$fl-echo1.out")" != "echo:ping" ] &&
        why="got '$(head -c 80 "$T/$fl-echo1.out")', expected 'echo:ping'"
    result "$fl echo service (Bind, Listen, Accept): 'ping' comes back as 'echo:ping', then the end of the stream" \
        "$why" "$T/$fl-echo1.log" "$hlog"
    why=""
    local i cl=()
    for i in 1 2 3; do
        "$FXPEER" send --connect 127.0.0.1:$ep --file "$T/echo-input.txt" --chunk 1000 \
            --out "$T/$fl-echo-$i.out" --timeout 20 > "$T/$fl-echo-$i.log" 2>&1 &
        cl+=($!)
    done
    for i in 1 2 3; do
        wait "${cl[$((i - 1))]}" || why="${why:+$why; }client $i: $(tail -n 1 "$T/$fl-echo-$i.log")"
        local out=$T/$fl-echo-$i.out
        if ! head -c 5 "$out" | grep -q '^echo:$'; then
            why="${why:+$why; }client $i: the answer does not start with 'echo:'"
        elif ! sed 's/echo://g' "$out" | cmp -s - "$T/echo-input.txt"; then
            why="${why:+$why; }client $i: without the prefixes the answer differs from what was sent ($(wc -c < "$out") bytes back)"
        fi
    done
    local answers
    answers=$(grep -o 'echo:' "$T/$fl-echo-1.out" 2> /dev/null | wc -l)
    result "$fl echo: 3 concurrent clients, $(wc -c < "$T/echo-input.txt") bytes each in 1000-byte writes, every buffer answered in order ($answers buffers for client 1)" \
        "$why" "$T/$fl-echo-1.log" "$hlog"

    # c. a session's socket, created on a worker thread
    why=""
    "$FXPEER" probe --connect 127.0.0.1:$lp --timeout 10 > "$T/$fl-rule.log" 2>&1
    wait_file "$sreport" $HOST_PID 15 || why="no report in \$FWX_NETSOCK_SESSION_OUT after 15 s"
    if [ -z "$why" ]; then
        expect_lines "$sreport" "create 0x00000000 session" "connect 0x00000000" "send-completion ok" \
            "recv-end eof" "peername 0x00000000 127\.0\.0\.1:$ep" "set-nodelay 0x00000000"
        why=$WHY
        local got
        got=$(report_data "$sreport")
        [ "${got:0:5}" = "echo:" ] && [ "${got//echo:/}" = "$HELLO" ] ||
            why="${why:+$why; }data received: '${got:0:80}', expected 'echo:$HELLO'"
    fi
    grep -q "created by filter netsock through IFWXSession (worker [0-9]*, the caller's)" "$hlog" ||
        why="${why:+$why; }the host log does not show the session's socket on the caller's worker"
    result "$fl IFWXSession::CreateNetworkSocket from an event handler: on the caller's worker; the client gets 'echo:$HELLO' from the filter's own echo service" \
        "$why" "$sreport" "$T/$fl-rule.log" "$hlog"

    # d. stop with an echo connection open (a pending Recv) and a pending Accept
    "$FXPEER" probe --connect 127.0.0.1:$ep --timeout 15 > "$T/$fl-probe.log" 2>&1 &
    local probe=$!
    pids+=("$probe")
    sleep 0.5
    stop_host $HOST_PID
    wait $probe
    forget_pid $probe
    why=""
    [ "$HOST_RC" = 0 ] || why="fwxhost exit status $HOST_RC after SIGTERM"
    grep -q 'closed by peer' "$T/$fl-probe.log" || why="${why:+$why; }open client: $(cat "$T/$fl-probe.log")"
    grep -q 'closing [0-9]* network socket(s) of filters' "$hlog" ||
        why="${why:+$why; }the host log does not show the network sockets being closed"
    grep -E -q 'faulted|ERROR|released more often|did not finish closing' "$hlog" &&
        why="${why:+$why; }$(grep -E 'faulted|ERROR|released more often|did not finish closing' "$hlog" | head -n 1)"
    local bits=64
    [ $fl = x86 ] && bits=32
    grep -q "($bits-bit host)" "$hlog" || why="${why:+$why; }the host that ran is not the $bits-bit one"
    result "$fl stop: the open echo connection is closed ($(sed 's/^fxpeer probe: //' "$T/$fl-probe.log")), the host exits 0 in $HOST_STOP_MS ms" \
        "$why" "$hlog"
}

# ---------------------------------------------------------------- e. refused
test_refused() {
    local fl=$1 dll=$B/filters/$1/netsock.dll lp tp dead why hlog=$T/$fl-refused-host.log report=$T/$fl-refused.txt
    [ -f "$dll" ] || return
    free_port; lp=$PORT; free_port; tp=$PORT; free_port; dead=$PORT
    if ! start_host "$hlog" env FWX_NETSOCK_CONNECT=127.0.0.1:$dead FWX_NETSOCK_OUT="$report" \
            "$B/bin/fwxhost" --filter "$dll" --listen 127.0.0.1:$lp --target 127.0.0.1:$tp --log-level info; then
        stop_host $HOST_PID
        not_ok "$fl connect to a refusing port" "fwxhost did not become ready (exit $HOST_RC)" "$hlog"; return
    fi
    why=""
    wait_file "$report" $HOST_PID 15 || why="no report after 15 s"
    stop_host $HOST_PID
    if [ -z "$why" ]; then
        expect_lines "$report" "connect 0x00000000" "send 0x00000000" "shutdown 0x00000000" "recv 0x00000000" \
            "send-completion failed 10061" "recv-end failed 10061" "peername 0x80072749 -" "received 0 bytes"
        why=$WHY
    fi
    [ "$HOST_RC" = 0 ] || why="${why:+$why; }fwxhost exit status $HOST_RC after SIGTERM"
    result "$fl connect to a refusing port: Connect returns S_OK, the waiting Send and Recv complete with WSAECONNREFUSED" \
        "$why" "$report" "$hlog"
}

# ---------------------------------------------------------------- main
note "IFWXNetworkSocket end-to-end tests; flavours: $FLAVOURS; temp: $T"
for fl in $FLAVOURS; do
    t0=$SECONDS
    note "---- flavour $fl"
    fwxhost_built $fl || continue
    test_client_and_echo $fl
    test_refused $fl
    note "flavour $fl: $((SECONDS - t0)) s"
done
tl_done
