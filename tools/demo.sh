#!/bin/bash
# The demo behind `./fwx demo`: real servers and clients, traffic through
# sample filters, and what the filters did. Run by ./fwx after a build.
#   usage: tools/demo.sh BUILDDIR
set -uo pipefail

build=${1:?usage: demo.sh BUILDDIR}
build=$(cd "$build" && pwd)
work=$(mktemp -d /tmp/fwx-demo.XXXXXX)
chmod 755 "$work"    # nginx workers run as an unprivileged user
export WINEPREFIX=${WINEPREFIX:-$build/wineprefix} WINEDEBUG=${WINEDEBUG:--all}
pids=()

cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2> /dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2> /dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

free_port() {   # a loopback TCP port nobody listens on
    local p
    for p in $(shuf -i 20000-40000 -n 50); do
        (exec 3<> /dev/tcp/127.0.0.1/$p) 2> /dev/null || { echo "$p"; return; }
    done
    echo 24680
}

wait_ready() {  # LOGFILE PID: wait for fwxhost's ready line
    for _ in $(seq 1 100); do
        grep -q 'fwxhost: ready' "$1" && return 0
        kill -0 "$2" 2> /dev/null || { cat "$1"; return 1; }
        sleep 0.1
    done
    cat "$1"; return 1
}

flavours="x64"
[ -f "$build/bin/fwxhost-x86.exe.so" ] && flavours="x86 x64"

step "fwxinfo: what is in an old filter DLL"
for f in $flavours; do
    "$build/bin/fwxinfo" "$build/filters/$f/passthrough.dll" || exit 1
    echo
done

if ! command -v nginx > /dev/null || ! command -v curl > /dev/null; then
    echo "nginx or curl is missing: run ./fwx deps for the traffic part of the demo"
    exit 0
fi

step "a real web server (nginx) on loopback"
web=$(free_port)
mkdir -p "$work/www" "$work/nginx"
head -c $((8 * 1024 * 1024)) /dev/urandom > "$work/www/file.bin"
chmod -R a+rX "$work/www"
echo "Hello from nginx behind an ISA 2000 filter" > "$work/www/index.html"
cat > "$work/nginx/nginx.conf" << EOF
daemon off;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 256; }
http {
    access_log off;
    server { listen 127.0.0.1:$web; root $work/www; }
}
EOF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
pids+=($!)
sleep 0.5
echo "nginx serving $work/www on 127.0.0.1:$web"

for f in $flavours; do
    step "fwxhost ($f) publishing nginx through the passthrough filter"
    port=$(free_port)
    "$build/bin/fwxhost" --filter "$build/filters/$f/passthrough.dll" \
        --listen 127.0.0.1:$port --target 127.0.0.1:$web --log-level info 2> "$work/host-$f.log" &
    hp=$!
    pids+=($hp)
    wait_ready "$work/host-$f.log" $hp || exit 1
    curl -s "http://127.0.0.1:$port/index.html"
    curl -s -o "$work/got.bin" -w 'curl: HTTP %{http_code}, %{size_download} bytes in %{time_total} s\n' \
        "http://127.0.0.1:$port/file.bin"
    if cmp -s "$work/got.bin" "$work/www/file.bin"; then
        echo "body identical to the file nginx served (8 MiB through the filter's data pump)"
    else
        echo "BODY DIFFERS"; exit 1
    fi
    kill -TERM $hp; wait $hp
    echo "what the host logged:"
    sed 's/^/  /' "$work/host-$f.log"
done

if [ -f "$build/filters/x64/denyport.dll" ]; then
    step "fwxhost with the denyport filter: the filter denies the connection"
    port=$(free_port)
    FWX_DENYPORT_PORTS=$port "$build/bin/fwxhost" --filter "$build/filters/x64/denyport.dll" \
        --listen 127.0.0.1:$port --target 127.0.0.1:$web 2> "$work/deny.log" &
    hp=$!
    pids+=($hp)
    wait_ready "$work/deny.log" $hp || exit 1
    curl -s -m 5 "http://127.0.0.1:$port/" > /dev/null
    echo "curl exit status: $? (connection reset by the gateway)"
    kill -TERM $hp; wait $hp
    grep -E 'denied|ready' "$work/deny.log" | sed 's/^/  /'
fi
VSFTPD=/usr/sbin/vsftpd
if [ -f "$build/filters/x64/ftpproxy.dll" ] && [ -x "$VSFTPD" ] && [ "$(id -u)" = 0 ] &&
   getent passwd ftp > /dev/null; then
    step "FTP through the ftpproxy filter: the data connection is a secondary connection"
    ftp=$(free_port) gw=$(free_port)
    mkdir -p "$work/ftp/root" "$work/ftp/empty"
    chmod 755 "$work/ftp" "$work/ftp/root" "$work/ftp/empty"
    head -c $((4 * 1024 * 1024)) /dev/urandom > "$work/ftp/root/data.bin"
    chmod 644 "$work/ftp/root/data.bin"
    cat > "$work/ftp/vsftpd.conf" << EOF
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=$ftp
background=NO
anonymous_enable=YES
local_enable=NO
no_anon_password=YES
anon_root=$work/ftp/root
ftp_username=ftp
pasv_enable=YES
pasv_address=127.0.0.1
pasv_min_port=41000
pasv_max_port=41999
secure_chroot_dir=$work/ftp/empty
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
EOF
    "$VSFTPD" "$work/ftp/vsftpd.conf" > "$work/ftp/vsftpd.out" 2>&1 &
    pids+=($!)
    cat > "$work/ftp.ini" << EOF
[host]
log-level = info
control = $work/ftp.sock

[filter ftpproxy]
path = $build/filters/x64/ftpproxy.dll

[rule ftp]
listen = 127.0.0.1:$gw
target = 127.0.0.1:$ftp
EOF
    "$build/bin/fwxhost" --config "$work/ftp.ini" 2> "$work/ftp.log" &
    hp=$!
    pids+=($hp)
    wait_ready "$work/ftp.log" $hp || exit 1
    sleep 0.3   # vsftpd starts in parallel
    echo "vsftpd on 127.0.0.1:$ftp, published by fwxhost on 127.0.0.1:$gw"
    echo "\$ curl --ftp-pasv ftp://127.0.0.1:$gw/data.bin     (the 227 reply is rewritten to the gateway)"
    curl -sS --ftp-pasv -u anonymous:x@ -o "$work/ftp/got.bin" \
        -w 'curl: %{size_download} bytes in %{time_total} s\n' "ftp://127.0.0.1:$gw/data.bin"
    if cmp -s "$work/ftp/got.bin" "$work/ftp/root/data.bin"; then
        echo "file identical to the one vsftpd served (4 MiB over a data connection the filter arranged)"
    else
        echo "FILE DIFFERS"; exit 1
    fi
    echo "what the filter arranged, from the host's log:"
    grep -E 'RedirectConnections|rule \(secondary\)' "$work/ftp.log" | head -n 6 | sed 's/^/  /'
    step "the host's counters (fwxhost --stats on its control socket)"
    "$build/bin/fwxhost" --stats --control "$work/ftp.sock" | sed 's/^/  /'
    kill -TERM $hp; wait $hp
fi
if [ -f "$build/filters/x64/rewrite.dll" ]; then
    step "the regression workflow: record a live session, replay it, break the expectation"
    rec=$work/recordings
    mkdir -p "$rec"
    echo "the page behind the rewrite filter" > "$work/www/fwxshim-on-linux.html"
    chmod a+r "$work/www/fwxshim-on-linux.html"
    port=$(free_port)
    "$build/bin/fwxhost" --record "$rec" --filter "$build/filters/x64/rewrite.dll" \
        --listen 127.0.0.1:$port --target 127.0.0.1:$web --log-level info 2> "$work/rec.log" &
    hp=$!
    pids+=($hp)
    wait_ready "$work/rec.log" $hp || exit 1
    echo "\$ curl http://127.0.0.1:$port/ISA2000.html     (rewrite turns ISA2000 into fwxshim-on-linux)"
    curl -s "http://127.0.0.1:$port/ISA2000.html"
    kill -TERM $hp; wait $hp
    grep -o 'recorded .*' "$work/rec.log" | sed 's/^/  fwxhost: /'
    script=$(ls "$rec"/*.fwxs | head -n 1)
    echo "the recording, a fwxreplay script (what the client and nginx sent, before the filter):"
    grep -v '^#' "$script" | sed 's/^/  | /' | cut -c1-110
    echo "\$ fwxreplay --update $(basename "$script")     (the golden file: what the filter made of it)"
    "$build/bin/fwxreplay" --update "$script" | sed 's/^/  /'
    grep '^server received' "$script.golden" | head -n 1 | sed 's/^/  golden | /'
    echo "\$ fwxreplay $(basename "$script")"
    "$build/bin/fwxreplay" "$script" | sed 's/^/  /'
    echo "  exit status: ${PIPESTATUS[0]}"
    echo "break the expectation: the golden file now says the path reached nginx unchanged"
    sed -i 's|^server received: "GET /fwxshim-on-linux.html|server received: "GET /ISA2000.html|' "$script.golden"
    echo "\$ fwxreplay $(basename "$script")"
    "$build/bin/fwxreplay" "$script" | sed 's/^/  /'
    echo "  exit status: ${PIPESTATUS[0]} (1: the filter's behaviour differs from the golden file)"
fi
step "done"
