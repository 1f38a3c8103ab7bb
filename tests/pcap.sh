#!/bin/bash
# pcap.sh - fwxreplay --pcap with captures this test takes itself, for each
# flavour in FWX_FLAVOURS (through tests/wine-run); prints TAP.
#
#   a. tcpdump -i lo -w: an fxpeer client/server conversation (8 KiB up,
#      24 KiB down, half-closes) on loopback; --list shows one TCP flow,
#      --to-script gives a script whose client:/server: bytes are the
#      streams fxpeer checked; replayed through passthrough, --update then a
#      pass (also --chunking random), and the golden file shows the server
#      received the client's stream and the client the server's
#   b. a tcpdump capture of an FTP control session against vsftpd (login,
#      SYST, PWD, QUIT) replays through passthrough; through ftpproxy
#      (filters/FLAVOUR/ftpproxy.dll) when it is built, SKIP otherwise
#   c. broken captures: exit 2 with "offset N:", never a crash
#   d. a UDP script without filters (the host's direct datagram path) replays
#   e. a tcpdump capture of dig <-> dnsmasq (two UDP flows) replays through
#      dnsguard: the query and the answer pass byte for byte; the second
#      query's name is longer than FWX_DNSGUARD_MAXNAME: not delivered
#
# Needs tcpdump (SKIP otherwise); b needs vsftpd, e dnsmasq and dig. Environment as tests/fwxhost.sh.
set -u

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tl_setup fwxpcap
R=$B/bin/fwxreplay
tl_fxpeer

# capture FILE FILTER CMD...: runs CMD while tcpdump writes FILE (loopback,
# packet-buffered); 0 when both went well. Sets CAP_WHY.
capture() {
    local file=$1 filter=$2 tpid
    shift 2
    CAP_WHY=
    tcpdump -i lo -U --immediate-mode -s 0 -w "$file" "$filter" > "$file.log" 2>&1 &
    tpid=$!
    pids+=($tpid)
    if ! wait_for "$file.log" 'listening on' $tpid 10; then
        CAP_WHY="tcpdump did not start: $(tail -n 2 "$file.log" | tr '\n' ' ')"
        kill -TERM $tpid 2> /dev/null; wait $tpid 2> /dev/null; forget_pid $tpid
        return 1
    fi
    "$@" || CAP_WHY="the captured command failed (exit $?)"
    sleep 0.3     # the last ACKs
    kill -INT $tpid 2> /dev/null
    wait $tpid 2> /dev/null
    forget_pid $tpid
    [ -z "$CAP_WHY" ]
}

# replay_check FLAVOUR DESC PCAP FILTERDLL: --update, a pass, a re-chunked
# pass, and the golden's bytes against the capture's.
replay_check() {
    local fl=$1 desc=$2 pc=$3 dll=$4 why="" base
    base=$T/$(basename "$pc")-$(basename "$dll" .dll)-$fl
    cp "$pc" "$base.pcap"
    "$R" --filter "$dll" --pcap "$base.pcap" --to-script "$base.fwxs" > "$base.ts" 2>&1 ||
        why="--to-script exit $?"
    [ -z "$why" ] && { "$R" --filter "$dll" --pcap "$base.pcap" --update > "$base.upd" 2>&1 || why="--update exit $?"; }
    [ -z "$why" ] && { "$R" --filter "$dll" --pcap "$base.pcap" > "$base.rep" 2>&1 || why="replay exit $? (expected 0)"; }
    [ -z "$why" ] && { "$R" --filter "$dll" --chunking random:3 --pcap "$base.pcap" > "$base.rep2" 2>&1 ||
        why="replay --chunking random:3 exit $?"; }
    # The script from --to-script replays to the same golden file.
    [ -z "$why" ] && { cp "$base.pcap.golden" "$base.fwxs.golden" && "$R" "$base.fwxs" > "$base.rep3" 2>&1 ||
        why="the --to-script script does not replay like the capture: exit $?"; }
    if [ -z "$why" ] && [ "${5:-}" = identity ]; then
        script_bytes 'client: ' "$base.fwxs" > "$base.up"
        script_bytes 'server: ' "$base.fwxs" > "$base.down"
        script_bytes 'server received: ' "$base.pcap.golden" > "$base.srx"
        script_bytes 'client received: ' "$base.pcap.golden" > "$base.crx"
        cmp -s "$base.up" "$base.srx" || why="the server received other bytes than the captured client sent"
        [ -z "$why" ] && { cmp -s "$base.down" "$base.crx" || why="the client received other bytes than the captured server sent"; }
        [ -z "$why" ] && { grep -q '^server saw: closed' "$base.pcap.golden" && grep -q '^client saw: closed' "$base.pcap.golden" ||
            why="the half-closes did not come through"; }
        UP_BYTES=$(stat -c %s "$base.up") DOWN_BYTES=$(stat -c %s "$base.down")
    fi
    result "$desc" "$why" "$base.ts" "$base.upd" "$base.rep" "$base.rep2" "$base.rep3"
}

HAVE_TCPDUMP=1
command -v tcpdump > /dev/null || HAVE_TCPDUMP=

# ---------------------------------------------------------------- a. fxpeer
CAP=$T/peer.pcap
if [ -n "$HAVE_TCPDUMP" ]; then
    free_port; sp=$PORT
    "$FXPEER" server --listen 127.0.0.1:$sp --send 24576 --seed 77 > "$T/srv.log" 2>&1 &
    spid=$!; pids+=($spid)
    if wait_for "$T/srv.log" '^ready' $spid 10 &&
       capture "$CAP" "tcp port $sp" "$FXPEER" client --connect 127.0.0.1:$sp --conns 1 --send 8192 \
           --recv 24576 --seed 77 --timeout 20 > "$T/cli.log" 2>&1; then
        "$R" --pcap "$CAP" --list > "$T/list" 2>&1
        if grep -q '1 flow(s)' "$T/list" && grep -q "^1: tcp 127.0.0.1:[0-9]* -> 127.0.0.1:$sp, [0-9]* packets, $((8 + 8192 + 24576 + 12)) bytes\$" "$T/list"; then
            ok "tcpdump capture of an fxpeer conversation: --list shows the one TCP flow with all $((8 + 8192 + 24576 + 12)) bytes"
        else
            not_ok "tcpdump capture of an fxpeer conversation: --list" "unexpected listing" "$T/list" "$T/cli.log"
        fi
    else
        not_ok "tcpdump capture of an fxpeer conversation" "${CAP_WHY:-fxpeer server did not start}" "$T/srv.log" "$T/cli.log" "$CAP.log"
        CAP=
    fi
    kill -TERM $spid 2> /dev/null; wait $spid 2> /dev/null; forget_pid $spid
else
    skip "tcpdump not installed: captures"
    CAP=
fi
for fl in $FLAVOURS; do
    [ -n "$CAP" ] || { skip "no capture: $fl --pcap replay"; continue; }
    UP_BYTES=0 DOWN_BYTES=0
    replay_check $fl "$fl fwxreplay --pcap (fxpeer over loopback) through passthrough: golden, pass, re-chunked pass, same bytes as captured" \
        "$CAP" "$B/filters/$fl/passthrough.dll" identity
    echo "#   $fl: $UP_BYTES bytes up, $DOWN_BYTES down"
done

# ---------------------------------------------------------------- b. FTP
FTPCAP=
ftp_session() {     # PORT: login, SYST, PWD, QUIT on the control connection
    perl -MIO::Socket::INET -e '
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$ARGV[0]", Timeout => 10) or die "connect: $!";
        sub reply { my $l; do { $l = <$s>; defined $l or die "eof"; } while ($l !~ /^\d{3} /); return $l; }
        reply();
        for my $c ("USER anonymous", "PASS fwx\@example.org", "SYST", "PWD", "QUIT") {
            print $s "$c\r\n"; my $r = reply(); $r =~ /^[23]/ or die "$c: $r";
        }
        shutdown($s, 1); 1 while <$s>; close $s;' "$1"
}
if [ -n "$HAVE_TCPDUMP" ] && command -v vsftpd > /dev/null; then
    free_port; fp=$PORT
    mkdir -p "$T/ftproot" && chmod 755 "$T" "$T/ftproot"
    cat > "$T/vsftpd.conf" << EOF
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=$fp
background=NO
anonymous_enable=YES
no_anon_password=YES
anon_root=$T/ftproot
local_enable=NO
write_enable=NO
secure_chroot_dir=/var/run/vsftpd/empty
seccomp_sandbox=NO
xferlog_enable=NO
vsftpd_log_file=$T/vsftpd.xfer
EOF
    vsftpd "$T/vsftpd.conf" > "$T/vsftpd.log" 2>&1 &
    vpid=$!; pids+=($vpid)
    for _ in $(seq 1 50); do grep -q "$(printf ':%04X ' $fp)" /proc/net/tcp && break; sleep 0.1; done
    if capture "$T/ftp.pcap" "tcp port $fp" ftp_session $fp > "$T/ftp.log" 2>&1; then
        FTPCAP=$T/ftp.pcap
    else
        skip "vsftpd FTP session could not be captured (${CAP_WHY}): FTP capture replay"
        cat "$T/ftp.log" "$T/vsftpd.log" 2> /dev/null | sed 's/^/#   | /' | tail -n 5
    fi
    kill -TERM $vpid 2> /dev/null; wait $vpid 2> /dev/null; forget_pid $vpid
else
    skip "tcpdump or vsftpd not installed: FTP capture replay"
fi
for fl in $FLAVOURS; do
    [ -n "$FTPCAP" ] || continue
    replay_check $fl "$fl tcpdump capture of an FTP control session (vsftpd) replays through passthrough" \
        "$FTPCAP" "$B/filters/$fl/passthrough.dll" identity
    if [ -f "$B/filters/$fl/ftpproxy.dll" ]; then
        replay_check $fl "$fl tcpdump capture of an FTP control session (vsftpd) replays through ftpproxy" \
            "$FTPCAP" "$B/filters/$fl/ftpproxy.dll"
    else
        skip "filters/$fl/ftpproxy.dll not built (the FTP filter): $fl FTP capture through ftpproxy"
    fi
done

# ---------------------------------------------------------------- c. broken
if [ -n "$CAP" ]; then
    sz=$(stat -c %s "$CAP")
    head -c $((sz - 7)) "$CAP" > "$T/trunc.pcap"
    head -c 2000 /dev/urandom > "$T/garbage.pcap"
    { head -c 24 "$CAP"; printf '\0\0\0\0\0\0\0\0\377\377\377\177\377\377\377\177'; } > "$T/huge.pcap"
    : > "$T/empty.pcap"
    why=""
    for f in trunc garbage huge empty; do
        "$R" --pcap "$T/$f.pcap" --list > "$T/$f.out" 2>&1
        rc=$?
        if [ $rc != 2 ] || ! grep -q "$T/$f.pcap: offset [0-9]*: " "$T/$f.out"; then
            why="$f.pcap: exit $rc: $(head -n 2 "$T/$f.out" | tr '\n' ' ')"; break
        fi
    done
    result "broken captures (truncated, garbage, huge length, empty): exit 2 with the file offset" "$why"
    [ -z "$why" ] && for f in trunc huge; do echo "#   $(head -n 1 "$T/$f.out")"; done
fi

# d. a UDP script without filters: the host's direct path (no data filter).
printf 'protocol udp\ntarget 10.0.0.53:53\nclient-datagram: "q1"\nserver-datagram: "a1"\nclient-datagram: from 192.0.2.7:9 "q2"\nserver-datagram: to 192.0.2.7:9 "a2"\n' > "$T/udp.fwxs"
"$R" --update "$T/udp.fwxs" > "$T/udp.out" 2>&1
rc=$?
if [ $rc = 0 ] && [ "$(grep -c '^  server received from 127.0.0.1:8080 to 10.0.0.53:53, 2 bytes: "q[12]"$' "$T/udp.fwxs.golden")" = 2 ] &&
   grep -q '^  client received from 127.0.0.1:8080 to 192.0.2.10:50000, 2 bytes: "a1"$' "$T/udp.fwxs.golden" &&
   grep -q '^  client received from 127.0.0.1:8080 to 192.0.2.7:9, 2 bytes: "a2"$' "$T/udp.fwxs.golden" &&
   ! grep -q 'not delivered' "$T/udp.fwxs.golden"; then
    ok "a UDP script without filters (direct path): each datagram reaches its side, two clients apart"
else
    not_ok "a UDP script without filters (direct path)" "exit $rc" "$T/udp.out" "$T/udp.fwxs.golden"
fi

# e. dig <-> dnsmasq on loopback: UDP flows replayed through dnsguard.
# udp_bytes PREFIX FILE: the bytes of the lines starting with PREFIX and of
# their continuation lines ('    "...') in golden files.
udp_bytes() {
    P=$1 perl -ne 'BEGIN { binmode STDOUT; %e = (n => "\n", r => "\r", t => "\t", "0" => "\0",
                   "\\" => "\\", "\"" => "\"") }
        if (/^\Q$ENV{P}\E/) { $on = 1 } elsif (!/^    "/) { $on = 0 }
        next unless $on;
        s/^[^"]*//;
        while (/"((?:[^"\\]|\\.)*)"/g) {
            (my $s = $1) =~ s/\\(?:x([0-9A-Fa-f]{2})|(.))/defined $1 ? chr(hex $1) : $e{$2}/ge;
            print $s;
        }' "$2"
}
DNSCAP=
if [ -n "$HAVE_TCPDUMP" ] && command -v dnsmasq > /dev/null && command -v dig > /dev/null; then
    free_port; dp=$PORT     # free for UDP too
    tl_dnsmasq 127.0.0.1 $dp
    two_digs() {    # a short name, then a long one (two flows: dig's ports differ)
        [ "$(dig @127.0.0.1 -p $dp example.test +short +time=2 +tries=1)" = 10.1.2.3 ] &&
            [ "$(dig @127.0.0.1 -p $dp a-rather-long-host-name.example.test +short +time=2 +tries=1)" = 10.1.2.3 ]
    }
    if capture "$T/dns.pcap" "udp port $dp" two_digs > "$T/dig.log" 2>&1; then
        DNSCAP=$T/dns.pcap
    else
        not_ok "tcpdump capture of dig <-> dnsmasq" "${CAP_WHY}" "$T/dig.log" "$T/dnsmasq.log" "$T/dns.pcap.log"
    fi
    stop_peer $DNSMASQ_PID
else
    skip "tcpdump, dnsmasq or dig not installed: DNS capture replay"
fi
if [ -n "$DNSCAP" ]; then
    "$R" --pcap "$DNSCAP" --list > "$T/dns.list" 2>&1
    if [ "$(grep -c "^[12]: udp 127.0.0.1:[0-9]* -> 127.0.0.1:$dp, 2 packets" "$T/dns.list")" = 2 ]; then
        ok "dig <-> dnsmasq capture: --list shows two UDP flows of a query and an answer"
    else
        not_ok "dig <-> dnsmasq capture: --list shows two UDP flows" "unexpected listing" "$T/dns.list"
    fi
fi
for fl in $FLAVOURS; do
    [ -n "$DNSCAP" ] || continue
    dll=$B/filters/$fl/dnsguard.dll
    base=$T/dns-$fl
    cp "$DNSCAP" "$base.pcap"
    # Names longer than 30 bytes are dropped: the second query.
    export FWX_DNSGUARD_LOG=$base.guard FWX_DNSGUARD_MAXNAME=30
    why=""
    for st in 1 2; do
        "$R" --filter "$dll" --pcap "$base.pcap" --stream $st --to-script "$base.$st.fwxs" > "$base.$st.ts" 2>&1 ||
            { why="stream $st: --to-script exit $?"; break; }
        "$R" --filter "$dll" --pcap "$base.pcap" --stream $st --update > "$base.$st.upd" 2>&1 ||
            { why="stream $st: --update exit $?"; break; }
        "$R" --filter "$dll" --pcap "$base.pcap" --stream $st > "$base.$st.rep" 2>&1 ||
            { why="stream $st: replay exit $? (expected 0)"; break; }
    done
    g1=$base.pcap.1.golden g2=$base.pcap.2.golden
    if [ -z "$why" ]; then
        udp_bytes 'client-datagram: ' "$base.1.fwxs" > "$base.q1"
        udp_bytes 'server-datagram: ' "$base.1.fwxs" > "$base.a1"
        udp_bytes '  server received ' "$g1" > "$base.srx1"
        udp_bytes '  client received ' "$g1" > "$base.crx1"
        if [ ! -s "$base.q1" ] || ! cmp -s "$base.q1" "$base.srx1"; then
            why="stream 1: the server did not receive dig's query as captured"
        elif [ ! -s "$base.a1" ] || ! cmp -s "$base.a1" "$base.crx1"; then
            why="stream 1: the client did not receive dnsmasq's answer as captured"
        elif grep -q 'not delivered' "$g1"; then
            why="stream 1: a datagram was not delivered"
        elif ! grep -q '^  not delivered to the server$' "$g2" || grep -q '^  server received' "$g2"; then
            why="stream 2: the long name's query was not dropped"
        elif ! grep -q '^drop name-too-long len=' "$base.guard"; then
            why="dnsguard did not log the drop"
        fi
    fi
    result "$fl fwxreplay --pcap of dig <-> dnsmasq through dnsguard: the query and answer pass byte for byte, the long name is not delivered" \
        "$why" "$base.1.ts" "$base.1.upd" "$base.1.rep" "$base.2.upd" "$base.2.rep" "$g1" "$g2"
    [ -z "$why" ] && echo "#   $fl: query $(stat -c %s "$base.q1") bytes, answer $(stat -c %s "$base.a1") bytes"
    unset FWX_DNSGUARD_LOG FWX_DNSGUARD_MAXNAME
done

tl_done
