#!/bin/bash
# ftp.sh - FTP through fwxhost and the ftpproxy test filter, with secondary (data)
# connections made by the host's anticipated actions (reference 2.8):
#
#   client ns (10.201.1.2) --- gateway ns, fwxhost (10.201.1.1 | 10.201.2.1) --- server ns,
#   vsftpd (10.201.2.2)
#
# The gateway does not forward (net.ipv4.ip_forward = 0), so the only way between client
# and server is through fwxhost: the control connection through a publishing rule, every
# data connection through RedirectConnections (PASV/EPSV) or BindForClient (PORT/EPRT).
# curl downloads and uploads 10 MiB in passive and active mode, byte-identical (sha256).
# The same again as SecureNAT (outbound rules, transparent): the client talks to the
# server's own address, iptables REDIRECT in the gateway sends the control connection to
# one outbound rule and every other connection to a "secondary-only" one, which passes
# only what ftpproxy anticipated with AllowFutureConnect (PASV/EPSV); PORT/EPRT still go
# through BindForClient. Then: a cancelled action (FTPPROXY_CANCEL=1) and an expired one
# (FWX_FLAG_TIMEOUT, [host] secondary-timeout = 1) refuse the data connection they would
# have allowed, in both set-ups.
#
# Needs root, ip, vsftpd and curl; otherwise prints a visible SKIP.
# Environment as for tests/fwxhost.sh (FWX_BUILDDIR, FWX_FLAVOURS, WINEPREFIX).
set -u

TL_WHAT="FTP through fwxhost in network namespaces"
TL_KEEP=${FTP_TEST_KEEP:-}
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tl_setup fwx-ftp
VSFTPD=${VSFTPD:-/usr/sbin/vsftpd}
SIZE_MB=${FTP_TEST_MB:-10}
missing=""
tl_missing root ip iptables curl sha256sum timeout
[ -x "$VSFTPD" ] || missing="$missing vsftpd"
# vsftpd enters its anonymous user's home first: the Debian package's "ftp" user has one.
FTP_USER=${FTP_USER:-ftp}
id "$FTP_USER" > /dev/null 2>&1 || missing="$missing user-$FTP_USER"
[ -n "$missing" ] && skip_all "needs$missing"
chmod 755 "$T"

# ---------------------------------------------------------------- topology
tl_topology fxf 10.201 2> "$T/netns.err" || skip_all "cannot build the namespaces ($(tr '\n' ' ' < "$T/netns.err"))"

# ---------------------------------------------------------------- vsftpd
mkdir -p "$T/root/pub" "$T/empty"
chmod 755 "$T/root" "$T/empty"
chown "$FTP_USER" "$T/root/pub"
head -c $((SIZE_MB * 1048576)) /dev/urandom > "$T/root/down.bin"
head -c $((SIZE_MB * 1048576)) /dev/urandom > "$T/up.bin"
head -c 1048576 /dev/urandom > "$T/root/small.bin"
chmod 644 "$T/root/down.bin" "$T/root/small.bin"
want_small=$(sha256sum < "$T/root/small.bin" | cut -d' ' -f1)
want_down=$(sha256sum < "$T/root/down.bin" | cut -d' ' -f1)
want_up=$(sha256sum < "$T/up.bin" | cut -d' ' -f1)
cat > "$T/vsftpd.conf" << EOF
listen=YES
listen_ipv6=NO
listen_address=$SERVER
listen_port=21
background=NO
anonymous_enable=YES
local_enable=NO
no_anon_password=YES
anon_root=$T/root
ftp_username=$FTP_USER
write_enable=YES
anon_upload_enable=YES
anon_umask=022
pasv_enable=YES
pasv_min_port=30000
pasv_max_port=30999
port_enable=YES
connect_from_port_20=NO
secure_chroot_dir=$T/empty
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
accept_timeout=5
xferlog_enable=YES
vsftpd_log_file=$T/vsftpd.log
EOF
ip netns exec "$nsv" "$VSFTPD" "$T/vsftpd.conf" > "$T/vsftpd.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do
    ip netns exec "$nsv" timeout 1 bash -c "exec 3<>/dev/tcp/$SERVER/21" 2> /dev/null && break
    sleep 0.1
done

# The gateway really is the only path: without fwxhost the client reaches nothing.
if ip netns exec "$nc" timeout 3 bash -c "exec 3<>/dev/tcp/$SERVER/21" 2> /dev/null; then
    fail "topology: the client cannot reach the server except through fwxhost"
else
    ok "topology: the client cannot reach the server directly (gateway forwards nothing)"
fi

# SecureNAT: from the client side, port 21 of the server goes to the control rule, any
# other port of it to the secondary-only rule. ip_forward stays 0: REDIRECT is local.
if ! ip netns exec "$ng" iptables -t nat -A PREROUTING -i fxfg$$ -p tcp -d $SERVER --dport 21 \
        -j REDIRECT --to-ports 2221 2> "$T/ipt.err" ||
   ! ip netns exec "$ng" iptables -t nat -A PREROUTING -i fxfg$$ -p tcp -d $SERVER \
        -j REDIRECT --to-ports 2222 2>> "$T/ipt.err"; then
    skip_all "iptables NAT unavailable in the gateway namespace ($(tr '\n' ' ' < "$T/ipt.err"))"
fi

# ---------------------------------------------------------------- fwxhost
HOST_PID=
start_host() {  # FLAVOUR LOG [ENV=VALUE...] (extra [host] lines in $HOST_EXTRA)
    local f=$1 log=$2
    shift 2
    cat > "$T/ftp-$f.ini" << EOF
[host]
workers = 2
log-level = info
control = $T/ctl-$f.sock
${HOST_EXTRA:-}

[filter ftpproxy]
path = $B/filters/$f/ftpproxy.dll

[rule ftp]
listen = $GW_IN:2121
target = $SERVER:21

[rule ftp-out]
type = outbound
listen = *:2221

[rule data-out]
type = outbound
listen = *:2222
secondary-only = yes
EOF
    ns_host "$ng" "$T/ftp-$f.ini" "$log" 3 "$@"
}

incl() { ip netns exec "$nc" "$@"; }
CURL=(curl -sS --connect-timeout 10 --max-time 120 -u anonymous:x@)

# A bare FTP client in bash: log in at HOST:PORT, PASV, wait DELAY seconds, connect to
# the address the reply names; "first: connected" if the connection is up a second later
# (the host reached the server for it), "first: refused" if it was refused or reset.
# Then PASV and connect at once ("second").
probe() {   # HOST PORT DELAY
    incl timeout 40 bash -c '
        exec 3<>/dev/tcp/'$1'/'$2' || exit 10
        reply() { local l; while IFS= read -r -t 10 l <&3; do l=${l%$'"'"'\r'"'"'}; echo "< $l"
                  [[ $l =~ ^[0-9][0-9][0-9]\  ]] && { R=$l; return 0; }; done; return 1; }
        cmd() { echo "> $1"; printf "%s\r\n" "$1" >&3; reply; }
        pasv() { cmd PASV || return 1
                 [[ $R =~ \(([0-9]+),([0-9]+),([0-9]+),([0-9]+),([0-9]+),([0-9]+)\) ]] || return 1
                 IP=${BASH_REMATCH[1]}.${BASH_REMATCH[2]}.${BASH_REMATCH[3]}.${BASH_REMATCH[4]}
                 PORT=$((BASH_REMATCH[5] * 256 + BASH_REMATCH[6])); }
        try() { if ! exec 4<>/dev/tcp/$IP/$PORT; then echo "$1: refused"; return; fi
                read -r -t 1 -u 4 x; rc=$?
                if [ $rc -gt 128 ]; then echo "$1: connected"; else echo "$1: refused (reset, read $rc)"; fi
                exec 4>&-; }
        reply; cmd "USER anonymous"; [[ $R == 230* ]] || cmd "PASS x@"
        pasv || exit 11
        sleep '$3'
        try first
        pasv || exit 12
        try second
        cmd QUIT'
}

# check_actions RUN SECOND PATTERN DESC: for the publishing and the SecureNAT
# set-up, $T/RUN-$f-SETUP.out (from probe) shows the first data connection
# refused and the second SECOND, and $log names the set-up's action
# (RedirectConnections or AllowFutureConnect, ACTION in DESC) with PATTERN.
check_actions() {
    local run=$1 second=$2 pattern=$3 setup o action desc
    for setup in publish securenat; do
        o=$T/$run-$f-$setup.out
        action=RedirectConnections
        [ $setup = securenat ] && action=AllowFutureConnect
        desc="$f $setup: ${4//ACTION/$action}"
        if grep -q '^first: refused' "$o" && grep -q "^second: $second" "$o" &&
           grep -q "$action #[0-9]* .*$pattern" "$log"; then
            ok "$desc"
        else
            fail "$desc" "$o" "$log"
        fi
    done
}

# Four transfers in one set-up: passive (EPSV down, PASV up), active (EPRT down, PORT up).
transfers() {   # FLAVOUR SETUP URL LOG
    local f=$1 setup=$2 url=$3 log=$4 mode down up what ms t0 dest
    for mode in pasv act; do
        if [ $mode = pasv ]; then down=(--ftp-pasv) up=(--ftp-pasv --disable-epsv) what="passive (EPSV down, PASV up)"
        else down=(--ftp-port -) up=(--ftp-port - --disable-eprt) what="active (EPRT down, PORT up)"; fi
        rm -f "$T/got.bin"
        t0=$(date +%s%N)
        if incl "${CURL[@]}" "${down[@]}" "$url/down.bin" -o "$T/got.bin" 2> "$T/curl-$f-$setup-$mode-down.err" &&
           [ "$(sha256sum < "$T/got.bin" | cut -d' ' -f1)" = "$want_down" ]; then
            ms=$((($(date +%s%N) - t0) / 1000000))
            ok "$f $setup $what: $SIZE_MB MiB download byte-identical ($ms ms)"
        else
            fail "$f $setup $what: $SIZE_MB MiB download byte-identical" "$T/curl-$f-$setup-$mode-down.err" "$log"
        fi
        dest=pub/up-$f-$setup-$mode.bin
        t0=$(date +%s%N)
        if incl "${CURL[@]}" "${up[@]}" -T "$T/up.bin" "$url/$dest" 2> "$T/curl-$f-$setup-$mode-up.err" &&
           [ "$(sha256sum < "$T/root/$dest" | cut -d' ' -f1)" = "$want_up" ]; then
            ms=$((($(date +%s%N) - t0) / 1000000))
            ok "$f $setup $what: $SIZE_MB MiB upload byte-identical ($ms ms)"
        else
            fail "$f $setup $what: $SIZE_MB MiB upload byte-identical" "$T/curl-$f-$setup-$mode-up.err" "$log"
        fi
    done
}

for f in $FLAVOURS; do
    log=$T/host-$f.log
    if ! start_host $f "$log"; then
        fail "$f: fwxhost with ftpproxy starts in the gateway namespace" "$log"
        continue
    fi
    transfers $f publish ftp://$GW_IN:2121 "$log"
    transfers $f securenat ftp://$SERVER "$log"
    # Many at once: 8 passive and 8 active downloads in parallel, each set-up.
    for setup in publish securenat; do
        [ $setup = publish ] && url=ftp://$GW_IN:2121 || url=ftp://$SERVER
        cpids=()
        for i in $(seq 1 16); do
            [ $i -le 8 ] && m=(--ftp-pasv) || m=(--ftp-port -)
            incl "${CURL[@]}" "${m[@]}" "$url/small.bin" -o "$T/par-$f-$setup-$i.bin" \
                2> "$T/par-$f-$setup-$i.err" &
            cpids+=($!)
        done
        good=0
        for i in $(seq 1 16); do
            wait ${cpids[$((i - 1))]} &&
                [ "$(sha256sum < "$T/par-$f-$setup-$i.bin" | cut -d' ' -f1)" = "$want_small" ] &&
                good=$((good + 1))
        done
        if [ $good = 16 ]; then
            ok "$f $setup: 16 parallel downloads (8 passive, 8 active) byte-identical"
        else
            fail "$f $setup: 16 parallel downloads byte-identical ($good good)" "$T/par-$f-$setup-1.err" "$log"
        fi
    done
    # A connection nobody anticipated does not pass the secondary-only rule.
    incl timeout 5 bash -c "exec 4<>/dev/tcp/$SERVER/4444 && read -r -t 2 -u 4 x; echo \$?" > "$T/stray-$f.out" 2>&1
    stop_host
    redirects=$(grep -c 'RedirectConnections #[0-9]*: .* -> ' "$log")
    binds=$(grep -c 'BindForClient #[0-9]*: .* -> ' "$log")
    allows=$(grep -c 'AllowFutureConnect #[0-9]* to ' "$log")
    est=$(grep -c 'ftpproxy: established data connection .*: context [0-9]* ok' "$log")
    bad=$(grep -c 'is NOT ours' "$log")
    if [ "$redirects" -ge 2 ] && [ "$binds" -ge 4 ] && [ "$allows" -ge 2 ] && [ "$est" -ge 40 ] &&
       [ "$bad" = 0 ] && [ "$HOST_RC" = 0 ]; then
        ok "$f: $redirects redirects, $allows allowed connects, $binds binds, $est fwx_EstablishedConnection with the filter's own context, clean exit"
    else
        fail "$f: actions registered and fwx_EstablishedConnection delivered with the context (redirects $redirects, allows $allows, binds $binds, established $est, foreign $bad, exit $HOST_RC)" "$log"
    fi
    if grep -q "to $SERVER:4444 refused: no filter anticipated it (secondary-only)" "$log" &&
       ! grep -q '^1[3-9][0-9]$' "$T/stray-$f.out"; then
        ok "$f: a connection no filter anticipated is refused by the secondary-only rule"
    else
        fail "$f: a connection no filter anticipated is refused by the secondary-only rule" "$T/stray-$f.out" "$log"
    fi

    # ---- a cancelled action refuses its connection
    log=$T/host-$f-cancel.log
    if start_host $f "$log" FTPPROXY_CANCEL=1; then
        rm -f "$T/got.bin"
        probe $GW_IN 2121 0 > "$T/cancel-$f-publish.out" 2>&1
        probe $SERVER 21 0 > "$T/cancel-$f-securenat.out" 2>&1
        incl "${CURL[@]}" --ftp-pasv "ftp://$GW_IN:2121/down.bin" -o "$T/got.bin" 2> "$T/curl-$f-cancel.err"
        rc=$?
        stop_host
        check_actions cancel refused 'cancelled by the filter' \
            'a cancelled ACTION refuses the data connection (twice)'
        if [ $rc != 0 ] && [ ! -s "$T/got.bin" ] && ! grep -q 'established data connection' "$log"; then
            ok "$f: curl through a cancelling ftpproxy gets no data (curl exit $rc), no connection established"
        else
            fail "$f: curl through a cancelling ftpproxy gets no data (curl exit $rc)" "$T/curl-$f-cancel.err" "$log"
        fi
    else
        fail "$f: fwxhost starts (cancel run)" "$log"
    fi

    # ---- an expired action refuses its connection; a fresh one still works
    log=$T/host-$f-expire.log
    HOST_EXTRA="secondary-timeout = 1"
    if start_host $f "$log" FTPPROXY_FLAGS=timeout; then
        probe $GW_IN 2121 2.5 > "$T/expire-$f-publish.out" 2>&1
        probe $SERVER 21 2.5 > "$T/expire-$f-securenat.out" 2>&1
        stop_host
        check_actions expire connected 'expired (secondary-timeout)' \
            'an expired ACTION (FWX_FLAG_TIMEOUT, 1 s) refuses the late data connection; a fresh one is accepted'
    else
        fail "$f: fwxhost starts (expiry run)" "$log"
    fi
    HOST_EXTRA=
done
tl_done
