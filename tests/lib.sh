# tests/lib.sh - the harness the shell tests share (sourced, never run):
# environment (B, S, FLAVOURS, WINE32/WINE64), the temporary directory and
# the cleanup trap (every pid in `pids` is stopped), TAP output (ok, not_ok,
# skip, result, tl_done), fxpeer, port picking (free_port), waiting for a
# log line (wait_for, count), test groups (tl_groups, want, tl_run_groups),
# the test filters a test needs (need_filters),
# starting and stopping fwxhost, nginx and dnsmasq servers, and the network
# namespace helpers of the netns tests (tl_require, tl_netns,
# tl_outbound_ns, tl_topology).
#
# A test does, after `set -u`:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   tl_setup NAME          # T=/tmp/NAME-test.XXXXXX, traps, counters
#   ... ok / not_ok / result ...
#   tl_done                # 1..N, summary, exit status 0 iff nothing failed
#
# Cleanup: the EXIT trap SIGTERMs every pid in `pids` (SIGKILL after 5 s),
# runs the commands in TL_CLEANUP (netns deletion, ...) and removes $T
# (kept when FWX_KEEP, KEEP or the test's TL_KEEP is non-empty). It does NOT
# run `wineserver -k`: tests/wine-run gives every test of a build tree the
# same WINEPREFIX, so killing its wineserver would kill the Wine processes
# of the tests running in parallel. Hosts are stopped by pid instead.

B=${FWX_BUILDDIR:?FWX_BUILDDIR not set}
S=${FWX_SRCDIR:-$(dirname "${BASH_SOURCE[0]}")/..}
FLAVOURS=${FWX_FLAVOURS:-x64}
: "${WINEPREFIX:?WINEPREFIX not set}"
export WINEPREFIX WINEDEBUG=${WINEDEBUG:--all}
B=$(cd "$B" && pwd)
S=$(cd "$S" && pwd)

makevar() { sed -n "s/^$1 = //p" "$B/Makefile" 2> /dev/null | head -n 1; }
WINE32=${FWX_WINE32:-$(makevar WINE32)}
WINE64=${FWX_WINE64:-$(makevar WINE64)}
: "${WINE32:=$(command -v wine || echo wine)}"
: "${WINE64:=$(command -v wine64 || echo wine64)}"
FWXHOST=$B/bin/fwxhost

# ---------------------------------------------------------------- setup, cleanup
pids=()          # every background process we started and have not reaped
TL_CLEANUP=()    # commands (eval'd) the EXIT trap runs after stopping pids
n=0 failed=0 skipped=0
t_start=$SECONDS

tl_setup() {    # NAME: makes $T, sets the traps
    T=$(mktemp -d "/tmp/$1-test.XXXXXX") || exit 99
    trap tl_cleanup EXIT
    trap 'exit 99' INT TERM HUP
}

tl_cleanup() {
    local p c
    for p in "${pids[@]}"; do kill -TERM "$p" 2> /dev/null; done
    for p in "${pids[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$p" 2> /dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2> /dev/null
        wait "$p" 2> /dev/null
    done
    pids=()
    for c in "${TL_CLEANUP[@]}"; do eval "$c"; done
    if [ -n "${FWX_KEEP:-${KEEP:-${TL_KEEP:-}}}" ]; then echo "# kept $T"; else rm -rf "$T"; fi
}

forget_pid() {  # PID: reaped by the caller
    local keep=() p
    for p in "${pids[@]}"; do [ "$p" != "$1" ] && keep+=("$p"); done
    pids=("${keep[@]}")
}

# ---------------------------------------------------------------- TAP
TL_TAIL=${TL_TAIL:-25}  # lines of each diagnostic file not_ok shows
ok() { n=$((n + 1)); echo "ok $n - $1"; }
skip() { n=$((n + 1)); skipped=$((skipped + 1)); echo "ok $n # SKIP $1"; }
not_ok() {  # DESC WHY [FILE...]: WHY (if any) and the files' tails as diagnostics
    local desc=$1 why=$2 f
    shift 2
    n=$((n + 1)); failed=$((failed + 1))
    echo "not ok $n - $desc"
    [ -n "$why" ] && echo "#   $why" | sed '2,$s/^/#   /'
    for f in "$@"; do
        [ -s "$f" ] || continue
        echo "#   --- ${f#"$T"/} (last $TL_TAIL lines)"
        grep -v 'INFO: conn [0-9]* rule [^:]*: \(accepted\|closed,\)' "$f" | tail -n "$TL_TAIL" | sed 's/^/#   | /'
    done
}
fail() { not_ok "$1" "" "${@:2}"; }    # DESC [FILE...]: not_ok without a WHY
result() {  # DESC WHY [FILE...]: ok when WHY is empty
    if [ -z "$2" ]; then ok "$1"; else not_ok "$@"; fi
}
note() { echo "# $*"; }
add() { why="${why:+$why; }$*"; }    # appends to the caller's $why
skip_all() {    # WHY: the whole test is skipped (one SKIP line), exit 0
    echo "ok 1 # SKIP ${TL_WHAT:-$(basename "$0")}: $1"
    echo "1..1"
    exit 0
}
tl_done() {     # plan, summary; the exit status is 0 iff nothing failed
    echo "1..$n"
    note "$((n - failed)) passed ($skipped skipped), $failed failed, $((SECONDS - t_start)) s"
    [ $failed -eq 0 ]
}

# ---------------------------------------------------------------- test groups
# A test made of groups (test_GROUP FLAVOUR functions) runs the ones its
# environment variable selects: tl_groups SELECTED (space-separated, the
# default being all), then want GROUP is 0 when GROUP is to run, and
# tl_run_groups GROUP... runs the wanted ones for each flavour built, timed.
tl_groups() { GROUPS_RUN=" $1 "; }
want() { [[ ${GROUPS_RUN:-} == *" $1 "* ]]; }
tl_run_groups() {
    local fl g t0 tg
    for fl in $FLAVOURS; do
        t0=$SECONDS
        note "---- flavour $fl"
        fwxhost_built $fl || continue
        for g in "$@"; do
            want $g || continue
            tg=$SECONDS
            test_$g $fl
            note "$fl $g: $((SECONDS - tg)) s"
        done
        note "flavour $fl: $((SECONDS - t0)) s"
    done
}

# ---------------------------------------------------------------- fxpeer
tl_fxpeer() {   # sets FXPEER (built into $T when the build tree has none)
    FXPEER=$B/tests/peers/fxpeer
    [ -x "$FXPEER" ] && return 0
    FXPEER=$T/fxpeer
    gcc -O2 -Wall -Wextra -o "$FXPEER" "$S/tests/peers/fxpeer.c" -lpthread 2> "$T/fxpeer.build" && return 0
    echo "Bail out! cannot build fxpeer:"; cat "$T/fxpeer.build"; exit 99
}

# ---------------------------------------------------------------- ports
# Ports come from one counter shared by every test on this machine (all
# build trees), under flock: each free_port takes the next port after the
# last one any test took, so two tests running in parallel never get the
# same port, which the old per-test pid-seeded scan could give (a port
# found free by two tests, bound by the first: "Address already in use" in
# the second). We chose the counter over retrying a host start on
# EADDRINUSE because the ports are written into each test's configs and
# argv: a generic retry in start_host cannot re-pick them, a counter makes
# the race go away for every caller at once. Ports held by anything else
# (a test not on this library, a TIME_WAIT socket) are still skipped by the
# /proc scan. Range 20000-31999: below the ephemeral range (32768+), so no
# client socket can hold them. FWX_PORT_COUNTER moves the counter file.
TL_PORT_COUNTER=${FWX_PORT_COUNTER:-/tmp/fwx-test-ports.counter}
port_busy() {   # PORT: 0 when a TCP socket has it
    grep -q "$(printf ':%04X ' "$1")" /proc/net/tcp /proc/net/tcp6 2> /dev/null
}
udp_busy() { grep -q "$(printf ':%04X ' "$1")" /proc/net/udp /proc/net/udp6 2> /dev/null; }
free_port() {   # sets PORT (free for TCP and UDP)
    local fd p=""
    exec {fd}<> "$TL_PORT_COUNTER" || { echo "Bail out! cannot open $TL_PORT_COUNTER"; exit 99; }
    flock "$fd"
    read -r -u "$fd" p
    [[ $p =~ ^[0-9]+$ ]] || p=$((20000 + $$ % 12000))
    while :; do
        p=$((p + 1))
        [ "$p" -ge 32000 ] && p=20000
        port_busy "$p" || udp_busy "$p" || break
    done
    echo "$p" > "$TL_PORT_COUNTER"
    exec {fd}>&-       # closing the descriptor releases the lock
    PORT=$p
}

# ---------------------------------------------------------------- processes
wait_for() {    # FILE PATTERN PID SECONDS: 0 when PATTERN shows up in FILE
    local i
    for ((i = 0; i < $4 * 10; i++)); do
        grep -q -- "$2" "$1" 2> /dev/null && return 0
        kill -0 "$3" 2> /dev/null || { grep -q -- "$2" "$1" 2> /dev/null; return; }
        sleep 0.1
    done
    return 1
}

wait_ready() {  # LOG PID [SECONDS]: 0 once fwxhost printed ready (default 15 s)
    wait_for "$1" 'fwxhost: ready' "$2" "${3:-15}"
}

start_server() {    # LOG PORT SENDBYTES SEED: fxpeer server; sets SRV_PID
    "$FXPEER" server --listen "127.0.0.1:$2" --send "$3" --seed "$4" > "$1" 2>&1 &
    SRV_PID=$!
    pids+=("$SRV_PID")
    wait_for "$1" '^ready' $SRV_PID 10
}

stop_peer() {   # PID: SIGTERM a peer and reap it
    kill -TERM "$1" 2> /dev/null
    wait "$1" 2> /dev/null
    forget_pid "$1"
}

# run_host LOG CMD...: runs fwxhost (any command line, env VAR=.. allowed
# in front) with stdout and stderr in LOG; sets HOST_PID; 0 once it printed
# ready (within 60 s). start_host is the same; a test whose start_host
# takes only fwxhost's arguments redefines it on top of run_host.
run_host() {
    local log=$1
    shift
    "$@" > "$log" 2>&1 &
    HOST_PID=$!
    pids+=("$HOST_PID")
    wait_for "$log" '^fwxhost: ready' $HOST_PID 60
}
start_host() { run_host "$@"; }

# stop_host [PID [SECONDS]]: SIGTERM, wait (default 30 s, then SIGKILL)
# and reap PID (default $HOST_PID); sets HOST_RC (exit status or
# "killed"), STOP_S, HOST_STOP_MS.
stop_host() {
    set -- "${1:-$HOST_PID}" "${2:-30}"
    local i t0=$SECONDS t0ns
    t0ns=$(date +%s%N)
    kill -TERM "$1" 2> /dev/null
    for ((i = 0; i < ${2:-30} * 20; i++)); do kill -0 "$1" 2> /dev/null || break; sleep 0.05; done
    if kill -0 "$1" 2> /dev/null; then
        kill -KILL "$1" 2> /dev/null
        wait "$1" 2> /dev/null
        HOST_RC=killed
    else
        wait "$1"
        HOST_RC=$?
    fi
    STOP_S=$((SECONDS - t0))
    HOST_STOP_MS=$((($(date +%s%N) - t0ns) / 1000000))
    forget_pid "$1"
}

# fwxhost_built FLAVOUR: 0 if bin/fwxhost-FLAVOUR.exe.so exists, else a
# not_ok ("FLAVOUR flavour built") and 1.
fwxhost_built() {
    [ -f "$B/bin/fwxhost-$1.exe.so" ] && return 0
    not_ok "$1 flavour built" "$B/bin/fwxhost-$1.exe.so is missing"
    return 1
}
# start_fwxhost LOG ARGS...: run_host with bin/fwxhost (the launcher) and ARGS.
start_fwxhost() {
    local log=$1
    shift
    run_host "$log" "$FWXHOST" "$@"
}
# need_filters FLAVOUR NAME...: sets DLL_<name> to each test filter's
# path; 1 (and every absent one in MISSING) if one is not built.
need_filters() {
    local fl=$1 f
    shift
    MISSING=
    for f in "$@"; do
        printf -v "DLL_$f" '%s' "$B/filters/$fl/$f.dll"
        [ -f "$B/filters/$fl/$f.dll" ] ||
            MISSING="${MISSING:+$MISSING; }filter not built: $B/filters/$fl/$f.dll (is $f in C_FILTERS or CXX_FILTERS, and was 'make' run?)"
    done
    [ -z "$MISSING" ]
}
count() { grep -c -- "$1" "$2" 2> /dev/null; }   # PATTERN FILE: matching lines (0 if none)
rss_kb() { awk '/^VmRSS:/ {print $2}' /proc/$1/status 2> /dev/null; }   # PID: resident KiB
# two_rules_conf CONF COMMENT HOSTLINES NAME=DLL...: picks the ports pa, pb
# (listening) and ta, tb (targets) and writes CONF: the ";" COMMENT, [host]
# with HOSTLINES (newline-separated), a [filter NAME] per NAME=DLL, and the
# publishing rules a (pa -> ta) and b (pb -> tb), every filter on both.
two_rules_conf() {
    local conf=$1 comment=$2 hostlines=$3 f
    shift 3
    free_port; pa=$PORT; free_port; pb=$PORT; free_port; ta=$PORT; free_port; tb=$PORT
    {
        printf '; %s\n[host]\n%s\n' "$comment" "$hostlines"
        for f in "$@"; do printf '\n[filter %s]\npath = %s\n' "${f%%=*}" "${f#*=}"; done
        printf '\n[rule a]\nlisten = 127.0.0.1:%s\ntarget = 127.0.0.1:%s\n' "$pa" "$ta"
        printf '\n[rule b]\nlisten = 127.0.0.1:%s\ntarget = 127.0.0.1:%s\n' "$pb" "$tb"
    } > "$conf"
}
# two_rules_start PREFIX ABYTES ASEED BBYTES BSEED CONF LOG [VAR=VALUE...]:
# fxpeer servers on ta and tb (logs PREFIX-a.log, PREFIX-b.log; pids sa,
# sb) sending ABYTES/BBYTES with seeds ASEED/BSEED, then fwxhost --config
# CONF with the VARs in its environment (HOST_PID, log LOG); 0 once it is
# ready, else 1 with the host and both servers stopped (HOST_RC set).
two_rules_start() {
    local prefix=$1 conf=$6 log=$7
    start_server "$prefix-a.log" "$ta" "$2" "$3"; sa=$SRV_PID
    start_server "$prefix-b.log" "$tb" "$4" "$5"; sb=$SRV_PID
    shift 7
    run_host "$log" env "$@" "$FWXHOST" --config "$conf" && return 0
    stop_host "$HOST_PID"; stop_peer "$sa"; stop_peer "$sb"
    return 1
}
# worker_pids LOG: the worker pids fwxhost's supervisor logged it started
# (log-level info or debug only).
worker_pids() { sed -n 's/.*supervisor: started worker pid \([0-9]*\).*/\1/p' "$1"; }
# worker_of PID: prints the Wine worker process under supervisor PID (its
# child; HOST-500), waiting up to 5 s for it; 1 if there is none.
worker_of() {
    local w
    for _ in $(seq 1 50); do
        w=$(pgrep -P "$1" | head -n 1)
        [ -n "$w" ] && { echo "$w"; return 0; }
        sleep 0.1
    done
    return 1
}

# ns_host NS CONF LOG READY [VAR=VALUE...]: fwxhost --config CONF in
# namespace NS (environment FWX_FILTER_TRACE=1 and the VARs), stderr in LOG;
# sets HOST_PID; 0 once LOG has READY "fwxhost: ready" lines (one per rule)
# within 15 s. stop_host (no argument) stops it.
ns_host() {
    local ns=$1 conf=$2 log=$3 ready=$4
    shift 4
    : > "$log"
    env FWX_FILTER_TRACE=1 "$@" ip netns exec "$ns" "$FWXHOST" --config "$conf" 2> "$log" &
    HOST_PID=$!
    pids+=($HOST_PID)
    for _ in $(seq 1 150); do
        [ "$(grep -c 'fwxhost: ready' "$log")" = "$ready" ] && return 0
        kill -0 $HOST_PID 2> /dev/null || return 1
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------- nginx
# tl_nginx PATH: nginx serving $T/nginx/www (the caller fills it, readable
# by nobody) on a free port; sets NGINX_PORT, NGINX_PID; 0 once a GET of
# PATH answers, else 1 with NGINX_PORT empty. Logs in $T/nginx/logs.
tl_nginx() {
    local i eopt=()
    mkdir -p "$T/nginx/logs"
    free_port; NGINX_PORT=$PORT
    nginx -h 2>&1 | grep -q -- '^ *-e ' && eopt=(-e "$T/nginx/logs/error.log")
    cat > "$T/nginx/nginx.conf" << EOF
daemon off;
worker_processes 1;
pid $T/nginx/nginx.pid;
error_log $T/nginx/logs/error.log;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $T/nginx/tmp-body;
    proxy_temp_path $T/nginx/tmp-proxy;
    fastcgi_temp_path $T/nginx/tmp-fcgi;
    uwsgi_temp_path $T/nginx/tmp-uwsgi;
    scgi_temp_path $T/nginx/tmp-scgi;
    server { listen 127.0.0.1:$NGINX_PORT; root $T/nginx/www; }
}
EOF
    nginx -p "$T/nginx" -c "$T/nginx/nginx.conf" "${eopt[@]}" > "$T/nginx/logs/stderr" 2>&1 &
    NGINX_PID=$!
    pids+=("$NGINX_PID")
    for ((i = 0; i < 50; i++)); do
        curl -s -o /dev/null "http://127.0.0.1:$NGINX_PORT$1" && return 0
        kill -0 $NGINX_PID 2> /dev/null || break
        sleep 0.1
    done
    NGINX_PORT=
    return 1
}

# ---------------------------------------------------------------- dnsmasq
# tl_dnsmasq ADDR PORT [NS]: dnsmasq (in namespace NS, if given) answering
# example.test with 10.1.2.3 on ADDR:PORT, log $T/dnsmasq.log; sets
# DNSMASQ_PID; 0 once a dig from the same namespace gets that answer
# (within about 5 s), else 1.
tl_dnsmasq() {
    local run=()
    [ -n "${3:-}" ] && run=(ip netns exec "$3")
    "${run[@]}" dnsmasq --no-daemon --conf-file=/dev/null --port="$2" --listen-address="$1" \
        --bind-interfaces --address=/example.test/10.1.2.3 --no-resolv --pid-file= \
        > "$T/dnsmasq.log" 2>&1 &
    DNSMASQ_PID=$!
    pids+=("$DNSMASQ_PID")
    for _ in $(seq 1 50); do
        [ "$("${run[@]}" dig @"$1" -p "$2" example.test +short +time=1 +tries=1 2> /dev/null)" = 10.1.2.3 ] &&
            return 0
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------- replay scripts
# script_bytes PREFIX FILE: the bytes of every line of an fwxreplay script
# starting with PREFIX ("server: ", "client received: ", ...), its quoted
# strings joined and unescaped.
script_bytes() {
    P=$1 perl -ne 'BEGIN { binmode STDOUT; %e = (n => "\n", r => "\r", t => "\t", "0" => "\0",
                   "\\" => "\\", "\"" => "\"") }
        next unless /^\Q$ENV{P}\E(.*)$/;
        my $r = $1;
        while ($r =~ /"((?:[^"\\]|\\.)*)"/g) {
            (my $s = $1) =~ s/\\(?:x([0-9A-Fa-f]{2})|(.))/defined $1 ? chr(hex $1) : $e{$2}/ge;
            print $s;
        }' "$2"
}

# ---------------------------------------------------------------- netns
# Names carry a test prefix and our pid, so parallel tests never collide;
# every namespace made here is deleted by the EXIT trap (after the
# processes in `pids` are stopped).
tl_missing() {  # [root] TOOL...: appends what is absent to $missing
    local t
    for t in "$@"; do
        if [ "$t" = root ]; then [ "$(id -u)" = 0 ] || missing="${missing:-} root"
        else command -v "$t" > /dev/null || missing="${missing:-} $t"; fi
    done
}
tl_require() {  # [root] TOOL...: skip_all "needs ..." unless all are there
    missing=""
    tl_missing "$@"
    [ -z "$missing" ] || skip_all "needs$missing"
}

tl_netns() {    # NAME...: creates the namespaces (lo up); deleted at exit
    local ns
    for ns in "$@"; do
        ip netns add "$ns" || return 1
        TL_CLEANUP+=("ip netns del $ns 2> /dev/null")
        ip -n "$ns" link set lo up || return 1
    done
}

# tl_outbound_ns PREFIX: one namespace ns=PREFIX$$ (inns runs a command in
# it) where uid 65534's TCP connections to 127.0.0.3:8080 are redirected
# (iptables REDIRECT) to port 3128, an outbound rule's port; skip_all
# unless root, ip, iptables and setpriv (the client runs as uid 65534) are
# there, or if the namespace or the NAT rule cannot be made. $T becomes
# readable to that client.
inns() { ip netns exec "$ns" "$@"; }
tl_outbound_ns() {
    tl_require root ip iptables setpriv
    chmod 755 "$T"
    ns=$1$$
    tl_netns "$ns" 2> "$T/netns.err" ||
        skip_all "cannot create a network namespace ($(tr '\n' ' ' < "$T/netns.err"))"
    inns iptables -t nat -A OUTPUT -p tcp -d 127.0.0.3 --dport 8080 \
        -m owner --uid-owner 65534 -j REDIRECT --to-ports 3128 2> "$T/ipt.err" ||
        skip_all "iptables NAT unavailable here ($(tr '\n' ' ' < "$T/ipt.err"))"
}

# tl_topology PREFIX NET [ADDR...]: client -- gateway -- server in three
# namespaces nc=PREFIXc$$, ng=PREFIXg$$, nsv=PREFIXs$$. Veth PREFIXc$$
# (client, CLIENT=NET.1.2/24, default route via GW_IN) to PREFIXg$$
# (gateway, GW_IN=NET.1.1); veth PREFIXt$$ (gateway, GW_OUT=NET.2.1) to
# PREFIXs$$ (server, SERVER=NET.2.2 and each ADDR, default route via
# GW_OUT). The gateway does not forward: only a process there (fwxhost)
# joins the two sides. 1 (errors on stderr) if a step fails.
tl_topology() {
    local p=$1 net=$2 a
    shift 2
    nc=${p}c$$ ng=${p}g$$ nsv=${p}s$$
    CLIENT=$net.1.2 GW_IN=$net.1.1 GW_OUT=$net.2.1 SERVER=$net.2.2
    tl_netns "$nc" "$ng" "$nsv" || return 1
    ip link add "${p}c$$" netns "$nc" type veth peer name "${p}g$$" netns "$ng" || return 1
    ip link add "${p}t$$" netns "$ng" type veth peer name "${p}s$$" netns "$nsv" || return 1
    ip -n "$nc" addr add $CLIENT/24 dev "${p}c$$" && ip -n "$nc" link set "${p}c$$" up &&
        ip -n "$nc" route add default via $GW_IN || return 1
    ip -n "$ng" addr add $GW_IN/24 dev "${p}g$$" && ip -n "$ng" link set "${p}g$$" up &&
        ip -n "$ng" addr add $GW_OUT/24 dev "${p}t$$" && ip -n "$ng" link set "${p}t$$" up || return 1
    ip -n "$nsv" addr add $SERVER/24 dev "${p}s$$" || return 1
    for a in "$@"; do ip -n "$nsv" addr add "$a/24" dev "${p}s$$" || return 1; done
    ip -n "$nsv" link set "${p}s$$" up && ip -n "$nsv" route add default via $GW_OUT || return 1
    ip netns exec "$ng" sysctl -qw net.ipv4.ip_forward=0
}
