#!/bin/bash
# security.sh - the host's own defences (docs/security.md), for each
# flavour in FWX_FLAVOURS where it matters. Prints TAP; exits 0 iff all
# passed.
#
#  - --user NAME: fwxhost binds its listener (on a port below 1024, which
#    only root may bind), then runs as NAME: every thread's real, effective
#    and saved uid and gid are NAME's (/proc/PID/task/*/status), and a
#    client is still served byte-exact afterwards. The same from the
#    config key [host] user. An unknown user is refused at start.
#  - a world-writable config file, a world-writable filter DLL and a DLL
#    in a world-writable directory without the sticky bit are refused with
#    a message naming the file (or directory); the sticky-bit directory is
#    accepted.
#  - no shell-outs: no program or library of ours links system, popen,
#    the exec*p family or posix_spawn, nor calls CreateProcess,
#    ShellExecute or WinExec; the launcher's single execv starts the Wine
#    loader directly.
#  - ExternalAddress: no host source reads it (only declarations), so it
#    can decide nothing.
#
# Environment as tests/fwxhost.sh (set by make check).
set -u
TL_TAIL=15
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tl_setup fwxsec
tl_fxpeer
low_port=$((600 + $$ % 300))
free_low_port() { while :; do low_port=$((low_port + 1)); [ $low_port -ge 1000 ] && low_port=600; port_busy $low_port || break; done; PORT=$low_port; }
stop() { stop_host "$1" 20; }    # PID: SIGTERM and reap
run_refused() {
    local log=$1 rc
    shift
    timeout 60 "$@" > "$log" 2>&1
    rc=$?
    [ $rc -eq 2 ] && ! grep -q '^fwxhost: ready' "$log"
}

# ---------------------------------------------------------------- --user
RUN_USER=nobody
RUN_UID=$(id -u $RUN_USER 2> /dev/null)
RUN_GID=$(id -g $RUN_USER 2> /dev/null)

# check_user FLAVOUR MODE: starts a host that drops to nobody (MODE cmdline:
# --user; config: [host] user) on a low port, checks every thread's ids and
# serves clients through it.
check_user() {
    local fl=$1 mode=$2 hlog=$T/user-$1-$2.log why= pid t ids nthreads=0 tp lp srv host desc
    local flt=$B/filters/$fl/passthrough.dll
    free_port; tp=$PORT
    free_low_port; lp=$PORT
    "$FXPEER" server --listen 127.0.0.1:$tp --send 5000 --seed 11 > "$T/srv-$fl.log" 2>&1 &
    srv=$!; pids+=($srv)
    wait_for "$T/srv-$fl.log" '^ready' $srv 10 || { not_ok "$fl $desc" "fxpeer server did not start"; return; }
    if [ $mode = cmdline ]; then
        desc="--user $RUN_USER"
        "$B/bin/fwxhost" --filter "$flt" --listen 127.0.0.1:$lp --target 127.0.0.1:$tp \
            --control "$T/ctl-$fl.sock" --user $RUN_USER > "$hlog" 2>&1 &
    else
        desc="[host] user = $RUN_USER"
        printf '[host]\nuser = %s\ncontrol = %s\n[filter p]\npath = %s\n[rule r]\nlisten = 127.0.0.1:%s\ntarget = 127.0.0.1:%s\n' \
            $RUN_USER "$T/ctl-$fl-c.sock" "$flt" $lp $tp > "$T/user-$fl.conf"
        "$B/bin/fwxhost" --config "$T/user-$fl.conf" > "$hlog" 2>&1 &
    fi
    host=$!; pids+=($host)
    if ! wait_for "$hlog" '^fwxhost: ready' $host 60; then
        not_ok "$fl $desc" "fwxhost did not become ready" "$hlog"; stop $host; stop $srv; return
    fi
    pid=$(sed -n 's/.*fwxhost\[\([0-9]*\)\]: NOTICE: running as user.*/\1/p' "$hlog" | head -1)
    if [ -z "$pid" ] || [ ! -d /proc/$pid ]; then
        why="no 'running as user' line with a live pid in the log"
    else
        for t in /proc/$pid/task/*; do
            ids=$(awk '/^Uid:/ {u=$2" "$3" "$4" "$5} /^Gid:/ {g=$2" "$3" "$4" "$5} END {print u" / "g}' $t/status 2> /dev/null) || continue
            [ -n "$ids" ] || continue
            nthreads=$((nthreads + 1))
            [ "$ids" = "$RUN_UID $RUN_UID $RUN_UID $RUN_UID / $RUN_GID $RUN_GID $RUN_GID $RUN_GID" ] || {
                why="thread ${t##*/}: uid/gid $ids"; }
        done
        [ $nthreads -ge 2 ] || why="${why:+$why; }only $nthreads thread(s) seen"
        grep -q "^Groups:[[:space:]]*0\b" /proc/$pid/status && why="${why:+$why; }still in group 0"
    fi
    if [ -z "$why" ]; then
        "$FXPEER" client --connect 127.0.0.1:$lp --conns 4 --send 3000 --recv 5000 --seed 11 \
            --timeout 30 > "$T/cli-$fl.log" 2>&1 || why="client through the host: $(tail -n 1 "$T/cli-$fl.log")"
    fi
    stop $host; stop $srv
    result "$fl $desc: listening on port $lp, $nthreads threads all uid $RUN_UID gid $RUN_GID, 4 clients byte-exact" "$why" "$hlog"
}

if [ "$(id -u)" != 0 ]; then
    skip "--user tests need root (they bind a port below 1024 and drop to $RUN_USER)"
elif [ -z "$RUN_UID" ]; then
    skip "--user tests: no user '$RUN_USER' on this system"
else
    for fl in $FLAVOURS; do
        check_user $fl cmdline
    done
    check_user x64 config
fi

# An unknown user: refused before serving, the message names it.
free_port
if run_refused "$T/nouser.log" "$B/bin/fwxhost" --filter "$B/filters/x64/passthrough.dll" \
        --listen 127.0.0.1:$PORT --target 127.0.0.1:1 --control "$T/ctl-nouser.sock" --user fwx-no-such-user-$$ &&
   grep -q "fwx-no-such-user-$$.*no such user" "$T/nouser.log"; then
    ok "--user with an unknown user: exit 2, '$(grep -m1 no-such "$T/nouser.log")'"
else
    not_ok "--user with an unknown user is refused" "not refused as expected" "$T/nouser.log"
fi

# ---------------------------------------------------------------- world-writable files
flt=$B/filters/x64/passthrough.dll
free_port; lp=$PORT
conf=$T/ww.conf
printf '[host]\ncontrol = %s\n[filter p]\npath = %s\n[rule r]\nlisten = 127.0.0.1:%s\ntarget = 127.0.0.1:1\n' \
    "$T/ctl-ww.sock" "$flt" $lp > "$conf"
chmod 0666 "$conf"
if run_refused "$T/wwconf.log" "$B/bin/fwxhost" --config "$conf" &&
   grep -q "refusing configuration file $conf: it is writable by every user" "$T/wwconf.log"; then
    ok "world-writable config refused: '$(head -n 1 "$T/wwconf.log")'"
else
    not_ok "world-writable config refused" "not refused as expected" "$T/wwconf.log"
fi

cp "$flt" "$T/ww.dll"; chmod 0666 "$T/ww.dll"
free_port
if run_refused "$T/wwdll.log" "$B/bin/fwxhost" --filter "$T/ww.dll" --listen 127.0.0.1:$PORT \
        --target 127.0.0.1:1 --control "$T/ctl-wwdll.sock" &&
   grep -q "refusing filter DLL $T/ww.dll: it is writable by every user" "$T/wwdll.log"; then
    ok "world-writable filter DLL refused: '$(head -n 1 "$T/wwdll.log")'"
else
    not_ok "world-writable filter DLL refused" "not refused as expected" "$T/wwdll.log"
fi

mkdir "$T/open"; chmod 0777 "$T/open"; cp "$flt" "$T/open/p.dll"; chmod 0644 "$T/open/p.dll"
free_port
if run_refused "$T/wwdir.log" "$B/bin/fwxhost" --filter "$T/open/p.dll" --listen 127.0.0.1:$PORT \
        --target 127.0.0.1:1 --control "$T/ctl-wwdir.sock" &&
   grep -q "refusing filter DLL $T/open/p.dll: directory $T/open is writable by every user without the sticky bit" "$T/wwdir.log"; then
    ok "filter DLL in a world-writable directory refused: '$(head -n 1 "$T/wwdir.log")'"
else
    not_ok "filter DLL in a world-writable directory refused" "not refused as expected" "$T/wwdir.log"
fi

# The same through a symbolic link from a safe directory: the resolved
# file's directory counts too.
mkdir "$T/safe"; ln -s "$T/open/p.dll" "$T/safe/p.dll"
free_port
if run_refused "$T/wwlink.log" "$B/bin/fwxhost" --filter "$T/safe/p.dll" --listen 127.0.0.1:$PORT \
        --target 127.0.0.1:1 --control "$T/ctl-wwlink.sock" &&
   grep -q "directory $T/open is writable by every user" "$T/wwlink.log"; then
    ok "symlink to a DLL in a world-writable directory refused"
else
    not_ok "symlink to a DLL in a world-writable directory refused" "not refused as expected" "$T/wwlink.log"
fi

# With the sticky bit (like /tmp) only the owner may replace the file: accepted.
chmod 1777 "$T/open"
free_port
"$B/bin/fwxhost" --filter "$T/open/p.dll" --listen 127.0.0.1:$PORT --target 127.0.0.1:1 \
    --control "$T/ctl-sticky.sock" > "$T/sticky.log" 2>&1 &
h=$!; pids+=($h)
if wait_for "$T/sticky.log" '^fwxhost: ready' $h 60; then
    ok "filter DLL in a sticky world-writable directory accepted"
else
    not_ok "filter DLL in a sticky world-writable directory accepted" "host did not start" "$T/sticky.log"
fi
stop $h

# ---------------------------------------------------------------- no shell-outs
why=
for f in "$B"/bin/fwxhost "$B"/bin/fwxinfo "$B"/bin/fwxreplay "$B"/bin/*.exe.so "$B"/libfxcore.a; do
    [ -e "$f" ] || continue
    syms=$(nm -u "$f" 2> /dev/null; nm -D --undefined-only "$f" 2> /dev/null)
    bad=$(printf '%s\n' "$syms" | awk '{print $NF}' | sed 's/@.*//' |
          grep -xE 'system|popen|execlp|execvp|execvpe|execl|execle|posix_spawnp?|wordexp' | sort -u | tr '\n' ' ')
    [ -n "$bad" ] && why="$why ${f#"$B"/}: $bad;"
done
src=$(grep -nE '\b(system|popen|CreateProcess[AW]?|ShellExecute[A-Za-z]*|WinExec|_popen|_wsystem)[[:space:]]*\(' \
      "$S"/shim/core/*.c "$S"/shim/com/*.c "$S"/shim/bin/*.c 2> /dev/null)
[ -n "$src" ] && why="$why sources: $src"
execs=$(grep -nE '\bexec[lv]p?e?[[:space:]]*\(' "$S"/shim/core/*.c "$S"/shim/com/*.c "$S"/shim/bin/*.c)
[ "$(printf '%s\n' "$execs" | grep -c .)" = 1 ] && printf '%s' "$execs" | grep -q 'launcher.c:.*execv(loader' ||
    why="$why exec calls other than the launcher's execv(loader, ...): $execs"
result "no shell-outs: no system/popen/exec*p/posix_spawn in our binaries or sources; one execv (the Wine loader)" "$why"

# ---------------------------------------------------------------- ExternalAddress
# Declarations and comments are not uses.
uses=$(grep -n 'ExternalAddress' "$S"/shim/com/*.c "$S"/shim/core/*.c "$S"/shim/bin/*.c |
       grep -vE '^[^:]*:[0-9]+:[[:space:]]*(LPSOCKADDR|SOCKADDR|INT|DWORD|const)[^;]*ExternalAddress[A-Za-z]*[,)]' |
       grep -vE '^[^:]*:[0-9]+:[[:space:]]*(\*|/\*|//)' )
result "ExternalAddress is never read by the host (no trust decision can use it)" \
    "${uses:+used outside declarations: $uses}"

tl_done
