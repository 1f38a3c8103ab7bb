#!/bin/bash
# stats.sh - end-to-end test of the host's counters: `fwxhost --stats`
# over the control socket and Prometheus text on the loopback metrics port,
# for each flavour in FWX_FLAVOURS. Prints TAP, exits 0 iff all passed.
#
# A known session: 3 connections x N bytes each way through rule "web",
# one connection denied by the denyport filter ("deny") on rule "blocked".
# fxpeer adds an 8-byte index upstream and a 12-byte trailer downstream
# per connection, so the byte counts are 3*(N+8) from and 3*(N+12) to
# clients. Then bad requests (HTTP 404/400, garbage and vanishing clients
# on both sockets) and the host keeps serving; --stats without a host
# exits 2; a non-loopback metrics address is refused.
#
# Environment as tests/fwxhost.sh (set by make check): FWX_BUILDDIR,
# FWX_SRCDIR, FWX_FLAVOURS, WINEPREFIX.
set -u

TL_TAIL=30
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tl_setup fwxstats
tl_fxpeer
stop_pid() { stop_host "$1" 20; RC=$HOST_RC; }   # PID: SIGTERM, wait up to 20 s; sets RC

# field FILE ROW COLUMN: column (1-based) of the --stats row starting with ROW
field() { awk -v r="$2" -v c="$3" '$1 == r { print $c; exit }' "$1"; }
# expect_metric FILE LINE: an exact line of the Prometheus text
expect_metric() { grep -qxF -- "$2" "$1" || why="${why:+$why; }missing '$2'"; }

N=40000
test_flavour() {
    local fl=$1 dll=$B/filters/$1/denyport.dll why="" sock conf hlog pw pb tw tb mp
    if [ ! -f "$dll" ]; then not_ok "$fl stats" "filter not built: $dll"; return; fi
    sock=$T/$fl-ctl.sock conf=$T/$fl.ini hlog=$T/$fl-host.log
    free_port; pw=$PORT; free_port; pb=$PORT; free_port; tw=$PORT; free_port; tb=$PORT
    free_port; mp=$PORT
    cat > "$conf" << EOF
[host]
log-level = info
workers = 2
control = $sock
metrics = 127.0.0.1:$mp

[filter deny]
path = $dll

[rule web]
listen = 127.0.0.1:$pw
target = 127.0.0.1:$tw

[rule blocked]
listen = 127.0.0.1:$pb
target = 127.0.0.1:$tb
EOF
    "$FXPEER" server --listen 127.0.0.1:$tw --send $N --seed 7 > "$T/$fl-srv.log" 2>&1 &
    local srv=$!; pids+=("$srv")
    wait_for "$T/$fl-srv.log" '^ready' $srv 10
    env FWX_DENYPORT_PORTS=$pb "$FWXHOST" --config "$conf" > "$hlog" 2>&1 &
    local host=$!; pids+=("$host")
    if ! wait_for "$hlog" '^fwxhost: ready: rule blocked' $host 30; then
        not_ok "$fl: fwxhost with control and metrics becomes ready" "not ready" "$hlog"
        stop_pid $srv; stop_pid $host; return
    fi
    "$FXPEER" client --connect 127.0.0.1:$pw --conns 3 --send $N --recv $N --seed 7 --timeout 10 \
        > "$T/$fl-client.log" 2>&1 || why="client: $(tail -n 1 "$T/$fl-client.log")"
    "$FXPEER" probe --connect 127.0.0.1:$pb --data hello --timeout 5 > /dev/null 2>&1
    # Teardown runs on the workers just after the peers see the close.
    local i out=$T/$fl-stats.txt
    for ((i = 0; i < 50; i++)); do
        "$FWXHOST" --stats --control "$sock" > "$out" 2> "$T/$fl-stats.err" || break
        [ "$(field "$out" web 4)" = 0 ] && [ "$(field "$out" blocked 3)" = 1 ] &&
            [ "$(field "$out" blocked 4)" = 0 ] && break
        sleep 0.1
    done
    local up=$((3 * (N + 8))) down=$((3 * (N + 12)))
    [ "$(field "$out" web 3)" = 3 ] || why="${why:+$why; }web connections $(field "$out" web 3), expected 3"
    [ "$(field "$out" web 4)" = 0 ] || why="${why:+$why; }web live $(field "$out" web 4), expected 0"
    [ "$(field "$out" web 5)" = 0 ] || why="${why:+$why; }web denials $(field "$out" web 5), expected 0"
    [ "$(field "$out" web 7)" = $up ] || why="${why:+$why; }web bytes from clients $(field "$out" web 7), expected $up"
    [ "$(field "$out" web 8)" = $down ] || why="${why:+$why; }web bytes to clients $(field "$out" web 8), expected $down"
    [ "$(field "$out" blocked 3)" = 1 ] || why="${why:+$why; }blocked connections $(field "$out" blocked 3), expected 1"
    [ "$(field "$out" blocked 5)" = 1 ] || why="${why:+$why; }blocked denials $(field "$out" blocked 5), expected 1"
    [ "$(field "$out" blocked 7)" = 0 ] || why="${why:+$why; }blocked bytes $(field "$out" blocked 7), expected 0"
    [ "$(field "$out" deny 3)" = 1 ] || why="${why:+$why; }filter deny denials $(field "$out" deny 3), expected 1"
    [ "$(field "$out" deny 4)" = 0 ] || why="${why:+$why; }filter deny faults $(field "$out" deny 4), expected 0"
    [ "$(field "$out" deny 5)" = enabled ] || why="${why:+$why; }filter deny state $(field "$out" deny 5)"
    grep -q '^host: connections 4 total, 0 live, 1 denied;.*host buffers [0-9]* live' "$out" ||
        why="${why:+$why; }host line: $(grep '^host:' "$out")"
    # Two workers, no live connection left; each has blocked in epoll_wait
    # at least once by now, so a sleep count of 0 means the counter is not wired.
    local wl
    wl=$(grep '^workers: ' "$out")
    if [[ $wl =~ ^workers:\ live\ 0\ /\ 0\;\ sleeps\ ([0-9]+)\ /\ ([0-9]+)\;\ spin\ catches\ ([0-9]+)\ /\ ([0-9]+)$ ]]; then
        (( BASH_REMATCH[1] > 0 && BASH_REMATCH[2] > 0 )) ||
            why="${why:+$why; }a worker never slept: $wl"
    else
        why="${why:+$why; }workers line: '$wl'"
    fi
    result "$fl: fwxhost --stats: web 3 connections, $up/$down bytes; blocked 1 denial; filter deny 1 denial" \
        "$why" "$out" "$T/$fl-stats.err" "$hlog"

    why=""
    local m=$T/$fl-metrics.txt code
    code=$(curl -s -m 5 -o "$m" -w '%{http_code}' "http://127.0.0.1:$mp/metrics")
    [ "$code" = 200 ] || why="GET /metrics: HTTP $code"
    expect_metric "$m" "# TYPE fwxshim_connections_total counter"
    expect_metric "$m" "fwxshim_connections_total{rule=\"web\"} 3"
    expect_metric "$m" "fwxshim_connections_total{rule=\"blocked\"} 1"
    expect_metric "$m" "fwxshim_connections_live{rule=\"web\"} 0"
    expect_metric "$m" "fwxshim_bytes_from_clients_total{rule=\"web\"} $up"
    expect_metric "$m" "fwxshim_bytes_to_clients_total{rule=\"web\"} $down"
    expect_metric "$m" "fwxshim_denials_total{rule=\"web\"} 0"
    expect_metric "$m" "fwxshim_denials_total{rule=\"blocked\"} 1"
    expect_metric "$m" "fwxshim_filter_denials_total{filter=\"deny\"} 1"
    expect_metric "$m" "fwxshim_filter_faults_total{filter=\"deny\"} 0"
    expect_metric "$m" "fwxshim_host_connections_live 0"
    grep -q '^# HELP fwxshim_host_buffers_live ' "$m" || why="${why:+$why; }no HELP for host_buffers_live"
    grep -q '^fwxshim_host_buffers_live [0-9]*$' "$m" || why="${why:+$why; }no fwxshim_host_buffers_live"
    for w in 0 1; do
        grep -q "^fwxshim_worker_connections_live{worker=\"$w\"} 0\$" "$m" ||
            why="${why:+$why; }no fwxshim_worker_connections_live 0 for worker $w"
        grep -q "^fwxshim_worker_sleeps_total{worker=\"$w\"} [0-9]*\$" "$m" ||
            why="${why:+$why; }no fwxshim_worker_sleeps_total for worker $w"
        grep -q "^fwxshim_worker_spin_catches_total{worker=\"$w\"} [0-9]*\$" "$m" ||
            why="${why:+$why; }no fwxshim_worker_spin_catches_total for worker $w"
    done
    grep -v '^#' "$m" | grep -v '^fwxshim_[a-z_]*\({[a-z]*="[^"]*"}\)\? -\?[0-9]*$' > "$T/$fl-badlines.txt"
    [ -s "$T/$fl-badlines.txt" ] && why="${why:+$why; }lines not in Prometheus form: $(head -n 1 "$T/$fl-badlines.txt")"
    result "$fl: GET /metrics: the same numbers in Prometheus text" "$why" "$m"

    why=""
    code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$mp/")
    [ "$code" = 404 ] || why="GET /: HTTP $code, expected 404"
    code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$mp/metrics")
    [ "$code" = 404 ] || why="${why:+$why; }POST /metrics: HTTP $code, expected 404"
    local reply
    reply=$(exec 3<> "/dev/tcp/127.0.0.1/$mp" && printf 'garbage\r\n\r\n' >&3 && timeout 5 head -n 1 <&3)
    [[ $reply == "HTTP/1.0 400"* ]] || why="${why:+$why; }garbage request line: '$reply', expected 400"
    (exec 3<> "/dev/tcp/127.0.0.1/$mp") 2> /dev/null               # connects and vanishes
    head -c 20000 /dev/urandom | timeout 5 curl -s -m 3 --data-binary @- "http://127.0.0.1:$mp/metrics" -o /dev/null
    timeout 5 curl -s -m 3 --http0.9 --unix-socket "$sock" http://x/stats -o "$T/$fl-unix-garbage.txt"
    grep -q '^error: unknown request' "$T/$fl-unix-garbage.txt" || why="${why:+$why; }HTTP on the control socket: '$(head -c 80 "$T/$fl-unix-garbage.txt")'"
    code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$mp/metrics")
    [ "$code" = 200 ] || why="${why:+$why; }GET /metrics after the bad requests: HTTP $code"
    "$FWXHOST" --stats --control "$sock" > /dev/null 2>&1 || why="${why:+$why; }--stats after the bad requests failed"
    kill -0 $host 2> /dev/null || why="${why:+$why; }the host died"
    result "$fl: bad requests get 404/400 or are dropped; the host keeps serving" "$why" "$hlog"

    why=""
    stop_pid $host
    [ "$RC" = 0 ] || why="fwxhost exit status $RC after SIGTERM"
    [ -e "$sock" ] && why="${why:+$why; }control socket $sock left behind"
    stop_pid $srv
    result "$fl: clean stop removes the control socket" "$why" "$hlog"
}

echo "# stats tests; flavours: $FLAVOURS; temp: $T"
t0=$SECONDS
for fl in $FLAVOURS; do
    test_flavour "$fl"
done

why=""
"$FWXHOST" --stats --control "$T/nobody.sock" > "$T/nobody.out" 2> "$T/nobody.err"
rc=$?
[ $rc = 2 ] || why="exit status $rc, expected 2"
grep -q "^fwxhost: --stats: no fwxhost is listening on $T/nobody.sock" "$T/nobody.err" ||
    why="${why:+$why; }message: $(cat "$T/nobody.err")"
result "--stats without a host: exit 2, '$(cat "$T/nobody.err")'" "$why"

why=""
free_port
printf '[host]\nmetrics = 0.0.0.0:%s\n[rule r]\nlisten = 127.0.0.1:%s\ntarget = 127.0.0.1:1\n' $PORT $PORT > "$T/bad.ini"
timeout 30 "$FWXHOST" --config "$T/bad.ini" > "$T/bad.out" 2> "$T/bad.err" < /dev/null
rc=$?
[ $rc = 2 ] || why="exit status $rc, expected 2"
grep -q "bad.ini:2: bad value '0.0.0.0:$PORT' for 'metrics' (.*loopback" "$T/bad.err" ||
    why="${why:+$why; }message: $(cat "$T/bad.err")"
result "non-loopback metrics address refused: $(head -n 1 "$T/bad.err")" "$why"

echo "# $((SECONDS - t0)) s"
tl_done
