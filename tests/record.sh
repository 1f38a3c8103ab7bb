#!/bin/bash
# record.sh - fwxhost --record DIR end to end, for each flavour in FWX_FLAVOURS
# (through tests/wine-run like fwxhost.sh); prints TAP, exits 0 iff all passed.
#
#   a. curl fetches a 300 KiB text page and a 200 KiB binary file from nginx
#      through fwxhost --record with passthrough: one script per connection,
#      named RULE-TIME-cID.fwxs; the recorded server: bytes are exactly what
#      curl received (headers + the file nginx served), the client: bytes
#      the request; fwxreplay --update then fwxreplay passes (also with
#      --chunking random), and the golden file's received bytes are the
#      same as in the live session
#   b. the same without a filter (the relay's tap, no splice)
#   c. record-max-bytes: a session larger than the cap is cut with a log
#      line and a "# TRUNCATED" comment, and the script still parses and
#      replays
#   d. rewrite: the script holds the client's bytes before the filter, the
#      golden file what the filter made of them (what nginx received)
#   e. a client that resets the connection: client-abort is recorded, and
#      the script replays (golden: the client side aborted by the script)
#   f. a bad record directory stops the start with exit 2
#
# Needs nginx and curl (SKIP otherwise). Environment as tests/fwxhost.sh.
set -u

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tl_setup fwxrecord
R=$B/bin/fwxreplay


# ---------------------------------------------------------------- nginx
NGINX_PORT= NGINX_WHY=
start_nginx() {
    command -v nginx > /dev/null && command -v curl > /dev/null || { NGINX_WHY="nginx or curl not installed"; return 1; }
    mkdir -p "$T/nginx/www"
    # 300 KiB of text (lines of different lengths) and 200 KiB of binary.
    seq 1 40000 | awk '{ printf "line %d %s\n", $1, substr("abcdefghijklmnopqrstuvwxyz<>&\"\\", 1, $1 % 31) }' |
        head -c 307200 > "$T/nginx/www/page.html"
    head -c 204800 /dev/urandom > "$T/nginx/www/blob.bin"
    echo "rewritten path reached nginx" > "$T/nginx/www/fwxshim-on-linux.html"
    chmod a+rx "$T" "$T/nginx" "$T/nginx/www" && chmod a+r "$T/nginx/www/"*
    tl_nginx /page.html || { NGINX_WHY="nginx did not start"; return 1; }
}

# check_session DESC SCRIPT FILE HEADERS BODY: the recording of one GET.
check_session() {
    local desc=$1 s=$2 file=$3 hdr=$4 body=$5 why=""
    script_bytes 'server: ' "$s" > "$s.server"
    script_bytes 'client: ' "$s" > "$s.client"
    cat "$hdr" "$body" > "$s.live"
    cmp -s "$s.server" "$s.live" || why="recorded server: bytes differ from what curl received ($(stat -c %s "$s.server") vs $(stat -c %s "$s.live") bytes)"
    [ -z "$why" ] && { tail -c "$(stat -c %s "$file")" "$s.server" | cmp -s - "$file" ||
        why="the recorded body is not the file nginx served"; }
    [ -z "$why" ] && { head -n 1 "$s.client" | grep -q "^GET /$(basename "$file") HTTP/1.1"$'\r'"\$" ||
        why="recorded client: bytes are not the request: $(head -c 60 "$s.client" | od -c | head -n 2)"; }
    [ -z "$why" ] && { grep -qx 'client-shutdown\|server-shutdown' "$s" || why="no half-close recorded"; }
    # Replay: golden from the recording, then a pass, also re-chunked.
    if [ -z "$why" ]; then
        "$R" --update "$s" > "$s.upd" 2>&1 || why="fwxreplay --update exit $?"
    fi
    if [ -z "$why" ]; then
        "$R" "$s" > "$s.rep" 2>&1 || why="fwxreplay of the recording exit $? (expected 0)"
    fi
    if [ -z "$why" ]; then
        "$R" --chunking random:7 "$s" > "$s.rep2" 2>&1 || why="fwxreplay --chunking random:7 exit $?"
    fi
    if [ -z "$why" ]; then
        script_bytes 'client received: ' "$s.golden" > "$s.grx"
        script_bytes 'server received: ' "$s.golden" > "$s.gsx"
        cmp -s "$s.grx" "$s.live" || why="replayed client received other bytes than curl did live"
        [ -z "$why" ] && { cmp -s "$s.gsx" "$s.client" || why="replayed server received other bytes than the recorded request"; }
    fi
    result "$desc" "$why" "$s.upd" "$s.rep" "$s.rep2"
}

record_run() {  # FLAVOUR LABEL HOSTCMD...: two GETs through a recording host
    local fl=$1 label=$2 lp why="" dir=$T/rec-$1-$2 hlog=$T/host-$1-$2.log
    shift 2
    mkdir -p "$dir"
    free_port; lp=$PORT
    if ! start_host "$hlog" "$@" --record "$dir" --listen 127.0.0.1:$lp \
            --target 127.0.0.1:$NGINX_PORT --log-level info; then
        stop_host $HOST_PID
        not_ok "$fl $label: fwxhost --record starts" "fwxhost did not become ready" "$hlog"; return
    fi
    local f
    for f in page.html blob.bin; do
        curl -s -m 30 -D "$T/$fl-$label-$f.hdr" -o "$T/$fl-$label-$f.body" "http://127.0.0.1:$lp/$f" ||
            why="curl $f failed"
    done
    stop_host $HOST_PID
    local scripts=("$dir"/*.fwxs)
    [ ${#scripts[@]} = 2 ] && [ -f "${scripts[0]}" ] || why="${why:+$why; }expected 2 scripts in the record directory, found: $(ls -A "$dir" | tr '\n' ' ')"
    ls -A "$dir" | grep -v '^cmdline-[0-9]\{8\}T[0-9]\{6\}Z-c[0-9]*\.fwxs$' | grep -q . &&
        why="${why:+$why; }unexpected names in the record directory: $(ls -A "$dir" | tr '\n' ' ')"
    grep -q 'recorded [0-9]* bytes to' "$hlog" || why="${why:+$why; }no 'recorded' log line"
    result "$fl $label: one script per connection, RULE-TIME-cID.fwxs, written atomically" "$why" "$hlog"
    [ -z "$why" ] || return
    local s
    for s in "${scripts[@]}"; do
        if grep -q '^client: "GET /page.html' "$s"; then f=page.html; else f=blob.bin; fi
        check_session "$fl $label: the recorded $f session ($(stat -c %s "$T/nginx/www/$f") bytes) matches nginx and replays identically" \
            "$s" "$T/nginx/www/$f" "$T/$fl-$label-$f.hdr" "$T/$fl-$label-$f.body"
    done
}

start_nginx
for fl in $FLAVOURS; do
    if [ -z "$NGINX_PORT" ]; then
        skip "$NGINX_WHY: $fl recording"; continue
    fi
    DLL=$B/filters/$fl/passthrough.dll
    record_run $fl passthrough "$FWXHOST" --filter "$DLL"
    if [ $fl = x86 ]; then argv=("$WINE32" "$B/bin/fwxhost-x86.exe.so"); else argv=("$WINE64" "$B/bin/fwxhost-x64.exe.so"); fi
    record_run $fl relay "${argv[@]}"

    # c. the cap
    dir=$T/cap-$fl; mkdir -p "$dir"
    free_port; lp=$PORT
    cat > "$T/cap-$fl.conf" << EOF
[host]
record = $dir
record-max-bytes = 64k
[filter passthrough]
path = $DLL
[rule web]
type = publish
listen = 127.0.0.1:$lp
target = 127.0.0.1:$NGINX_PORT
EOF
    why=""
    hlog=$T/cap-$fl.log
    if start_host "$hlog" "$FWXHOST" --config "$T/cap-$fl.conf" --log-level info; then
        curl -s -m 30 -o "$T/cap-$fl.body" "http://127.0.0.1:$lp/page.html" || why="curl failed"
        cmp -s "$T/cap-$fl.body" "$T/nginx/www/page.html" || why="the live session was changed by the cap"
    else
        why="fwxhost --config with record did not start"
    fi
    stop_host $HOST_PID
    s=$(ls "$dir"/web-*.fwxs 2> /dev/null | head -n 1)
    if [ -z "$why" ]; then
        if [ -z "$s" ]; then why="no script written"
        elif [ "$(stat -c %s "$s")" -gt 65536 ]; then why="script is $(stat -c %s "$s") bytes, over the 64k cap"
        elif ! grep -q '^# TRUNCATED' "$s"; then why="no # TRUNCATED comment"
        elif ! grep -q 'recording truncated' "$hlog"; then why="no log line about the truncation"
        elif ! "$R" --update "$s" > "$T/cap-$fl.rep" 2>&1; then why="the truncated script does not replay: exit $?"
        fi
    fi
    result "$fl record-max-bytes 64k: a 300 KiB session is cut ($( [ -n "$s" ] && stat -c %s "$s") bytes) with a log line and replays" \
        "$why" "$hlog" "$T/cap-$fl.rep"
done

# d. rewrite: input recorded, output in the golden file
rst_client() {  # PORT: sends a request, reads a little, then resets (SO_LINGER 0)
    perl -MIO::Socket::INET -MSocket -e '
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$ARGV[0]", Timeout => 10) or die "connect: $!";
        print $s "GET /page.html HTTP/1.1\r\nHost: x\r\n\r\n";
        my $buf; sysread($s, $buf, 100) or die "nothing read";
        setsockopt($s, SOL_SOCKET, SO_LINGER, pack("ii", 1, 0)) or die "linger: $!";
        close $s;' "$1"
}
for fl in $FLAVOURS; do
    [ -n "$NGINX_PORT" ] || break
    dir=$T/rw-$fl; mkdir -p "$dir"
    free_port; lp=$PORT
    why=""
    hlog=$T/rw-$fl.log
    if start_host "$hlog" "$FWXHOST" --record "$dir" --filter "$B/filters/$fl/rewrite.dll" \
            --listen 127.0.0.1:$lp --target 127.0.0.1:$NGINX_PORT --log-level info; then
        got=$(curl -s -m 10 "http://127.0.0.1:$lp/ISA2000.html")
        [ "$got" = "rewritten path reached nginx" ] || why="curl got '$got'"
        rst_client $lp 2> "$T/rst-$fl.err" || why="${why:+$why; }the resetting client failed: $(cat "$T/rst-$fl.err")"
        sleep 0.3
    else
        why="fwxhost did not start"
    fi
    stop_host $HOST_PID
    s=$(grep -l '^client: "GET /ISA2000.html' "$dir"/*.fwxs 2> /dev/null | head -n 1)
    if [ -z "$why" ] && [ -z "$s" ]; then why="no script with the client's original request"; fi
    if [ -z "$why" ]; then
        if ! "$R" --update "$s" > "$s.upd" 2>&1; then why="--update exit $?"
        elif ! "$R" "$s" > "$s.rep" 2>&1; then why="replay exit $?"
        elif ! grep -q '^server received: "GET /fwxshim-on-linux.html HTTP/1.1\\r\\n"$' "$s.golden"; then
            why="the golden file does not show the rewritten request"
        elif ! grep -q '^client received: "rewritten path reached nginx\\n"$' "$s.golden"; then
            why="the golden file does not show the page curl got"
        fi
    fi
    result "$fl rewrite: the recording holds the client's GET /ISA2000.html, its replay the rewritten request nginx saw" \
        "$why" "$hlog" "$s.upd" "$s.rep"
    # e. the reset
    why=""
    s=$(grep -l '^client: "GET /page.html HTTP/1.1\\r\\nHost: x' "$dir"/*.fwxs 2> /dev/null | head -n 1)
    if [ -z "$s" ]; then why="no script of the resetting client: $(ls "$dir")"
    elif ! grep -qx 'client-abort' "$s"; then why="no client-abort in the script"
    elif grep -qx 'client-shutdown' "$s"; then why="a client-shutdown was recorded for a reset"
    elif ! "$R" --update "$s" > "$s.upd" 2>&1; then why="--update exit $?"
    elif ! grep -q '^client saw: aborted by the script' "$s.golden"; then why="golden: the client was not aborted"
    elif ! "$R" "$s" > "$s.rep" 2>&1; then why="replay exit $?"
    fi
    result "$fl a client reset is recorded as client-abort and replays" "$why" "$hlog" ${s:+"$s"} ${s:+"$s.upd"}
done

# f. a record directory that does not exist
"$FWXHOST" --record "$T/missing/dir" --listen 127.0.0.1:1 --target 127.0.0.1:2 > "$T/bad.log" 2>&1
rc=$?
if [ $rc = 2 ] && grep -q 'record directory .*missing/dir' "$T/bad.log"; then
    ok "a missing record directory: exit 2 with a message"
else
    not_ok "a missing record directory: exit 2 with a message" "exit $rc" "$T/bad.log"
fi

tl_done
