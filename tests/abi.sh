#!/bin/bash
# abi.sh - end-to-end tests of the ABI safety net and tools (issue 4). For each
# flavour in FWX_FLAVOURS; run by automake through tests/wine-run; prints TAP,
# exits 0 iff all passed.
#
#   trap   test-filters/trapper calls a slot past the declared methods of
#          IFWXConnection, IFWXFirewall (from FirewallEventHandler) and
#          IFWXSocket (from SetSockets): the log names the filter, interface
#          and slot, that connection ends without data, the host keeps running
#          and rule b's concurrent passthrough connections come through
#          byte-identical
#   trace  fwxhost --trace FILE on one passthrough connection: the trace lists
#          the calls in both directions (SetSockets, Recv, CompleteAsyncIO,
#          Send ...) with decoded arguments, results and threads
#   overrides  [abi] errors with FILE:LINE; an IID override changes what the host asks
#   discover   fwxinfo --discover atlstyle.dll finds its CLSID and IIDs; fwxhost --abi
#          with that output pumps traffic through it
#   profiles   passthrough and netsock built for isa2000 and for tmg, run under each
#          profile (auto by PE type, explicit), mismatches refused
#   install    fwxhost --install on passreg (DllRegisterServer through IFWXFilterAdmin)
#          prints a [filter] section that then runs
#
# Environment (set by make check): FWX_BUILDDIR, FWX_SRCDIR, FWX_FLAVOURS,
# WINEPREFIX, WINEDEBUG; optional FWX_ABI_TESTS (groups, default all),
# FWX_KEEP (non-empty: keep the temporary directory).
set -u

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tl_setup fwxabi
tl_fxpeer

# Methods (IUnknown's 3 included) an interface declares in our IDL: where the
# trap slots start.
idl_methods() {
    awk -v i="$1" '$0 ~ "^interface " i " " { on = 1; n = 3; next }
        on && /^}/ { print n; exit }
        on && /^ *(HRESULT|ULONG) [A-Za-z]+\(/ { n++ }' "$S/idl/wspfwext.idl"
}

# ---------------------------------------------------------------- trap slots
test_trap() {
    local fl=$1 pa pb ta tb conf hlog why sa sb iface label nknown slot bclient rc i
    if ! need_filters $fl passthrough trapper; then
        not_ok "$fl trap slots" "$MISSING"; return
    fi
    for iface in connection firewall socket; do
        case $iface in
            connection) label=IFWXConnection method="IFWXSessionFilter::FirewallEventHandler" ;;
            firewall) label=IFWXFirewall method="IFWXSessionFilter::FirewallEventHandler" ;;
            socket) label=IFWXSocket method="IFWXDataFilter::SetSockets" ;;
        esac
        nknown=$(idl_methods $label)
        slot=$((nknown + 2))          # FWX_TRAPPER_EXTRA=2
        conf=$T/trap-$fl-$iface.ini hlog=$T/trap-$fl-$iface-host.log
        two_rules_conf "$conf" "trapper hooks rule a's port only; passthrough is on both rules" \
            $'workers = 2\nmax-faults = 0\nlog-level = info' pass="$DLL_passthrough" trapper="$DLL_trapper"
        if ! two_rules_start "$T/trap-$fl-$iface" 65536 71 524288 72 "$conf" "$hlog" \
                FWX_TRAPPER_IFACE=$iface FWX_TRAPPER_EXTRA=2 FWX_TRAPPER_PORTS=$pa; then
            not_ok "$fl trap $label" "fwxhost --config did not become ready (exit $HOST_RC)" "$hlog"; continue
        fi
        "$FXPEER" client --connect 127.0.0.1:$pb --conns 20 --send 524288 --recv 524288 --seed 72 \
            --timeout 60 > "$T/trap-$fl-$iface-b-client.log" 2>&1 &
        bclient=$!
        pids+=("$bclient")
        why=""
        for i in 1 2 3; do
            "$FXPEER" client --connect 127.0.0.1:$pa --conns 1 --send 65536 --recv 65536 --seed 71 \
                --timeout 10 > "$T/trap-$fl-$iface-a$i.log" 2>&1
            rc=$?
            [ $rc -eq 2 ] || add "rule a connection $i: fxpeer exit $rc (expected 2, the connection ended): $(head -n 1 "$T/trap-$fl-$iface-a$i.log")"
        done
        wait $bclient
        rc=$?
        forget_pid $bclient
        [ $rc -eq 0 ] || add "rule b client: exit $rc: $(tail -n 1 "$T/trap-$fl-$iface-b-client.log")"
        # The host is still serving after the traps.
        "$FXPEER" client --connect 127.0.0.1:$pb --conns 2 --send 524288 --recv 524288 --seed 72 \
            --index-base 100 --timeout 20 > "$T/trap-$fl-$iface-b2.log" 2>&1 ||
            add "rule b after the traps: $(tail -n 1 "$T/trap-$fl-$iface-b2.log")"
        stop_host $HOST_PID
        stop_peer $sa; stop_peer $sb
        [ "$(count "ERROR: trap: filter trapper called $label slot $slot (offset [0-9]*), beyond the $nknown methods the host implements (object 0x[0-9a-f]*, return address 0x[0-9a-f]*); ending its session" "$hlog")" -eq 3 ] ||
            add "$(count "trap: filter trapper called $label slot $slot" "$hlog") log lines 'trap: filter trapper called $label slot $slot ... ending its session', expected 3"
        [ "$(count "ERROR: filter trapper faulted in $method: exception 0xe0f70001 .*(a trap slot" "$hlog")" -eq 3 ] ||
            add "$(count "faulted in $method: exception 0xe0f70001" "$hlog") lines 'filter trapper faulted in $method: exception 0xe0f70001', expected 3"
        grep -q 'the host let a trap return' "$hlog" && add "a trap returned into the filter"
        [ "$HOST_RC" = 0 ] || add "fwxhost exit status $HOST_RC after SIGTERM (expected 0)"
        result "$fl trap $label slot $slot (from $method): 3 connections ended with a log line naming interface and slot; rule b meanwhile: $(tail -n 1 "$T/trap-$fl-$iface-b-client.log" | sed 's/^fxpeer: //')" \
            "$why" "$hlog" "$T/trap-$fl-$iface-b-client.log"
    done
}

# ---------------------------------------------------------------- call trace
# sum_sends TRACE SOCKET: bytes the filter sent on SOCKET (IFWXSocket::Send of
# host buffers, "(data N of M)").
sum_sends() {
    grep " call filter->host IFWXSocket::Send slot 3 this=$2 " "$1" |
        sed -n 's/.* pIOBuffer=0x[0-9a-f]*(data \([0-9]*\) of [0-9]*).*/\1/p' |
        awk '{ s += $1 } END { print s + 0 }'
}

test_trace() {
    local fl=$1 lp tp hlog tr why int ext calls rets up down
    if ! need_filters $fl passthrough; then
        not_ok "$fl trace" "$MISSING"; return
    fi
    why="" hlog=$T/trace-$fl-host.log tr=$T/trace-$fl.txt
    free_port; lp=$PORT; free_port; tp=$PORT
    start_server "$T/trace-$fl-server.log" $tp 150000 81
    if ! start_host "$hlog" "$FWXHOST" --filter "$DLL_passthrough" --listen 127.0.0.1:$lp \
            --target 127.0.0.1:$tp --workers 1 --trace "$tr" --log-level info; then
        stop_host $HOST_PID; stop_peer $SRV_PID
        not_ok "$fl fwxhost --trace" "fwxhost did not become ready (exit $HOST_RC)" "$hlog"; return
    fi
    "$FXPEER" client --connect 127.0.0.1:$lp --conns 1 --send 120000 --recv 150000 --seed 81 \
        --timeout 10 > "$T/trace-$fl-client.log" 2>&1 || add "client: $(tail -n 1 "$T/trace-$fl-client.log")"
    sleep 0.3
    stop_host $HOST_PID
    stop_peer $SRV_PID
    [ "$HOST_RC" = 0 ] || add "fwxhost exit status $HOST_RC (expected 0)"
    # Every line: time, thread, call/ret, direction, IFACE::METHOD, slot.
    grep -Evq '^[0-9]+\.[0-9]{6} tid [0-9a-f]{4,} (call|ret |fault) (host->filter|filter->host) IFWX[A-Za-z]*::[A-Za-z]* slot -?[0-9]+' "$tr" &&
        add "malformed line: $(grep -Ev '^[0-9]+\.[0-9]{6} tid [0-9a-f]{4,} (call|ret |fault) (host->filter|filter->host) IFWX' "$tr" | head -n 1)"
    grep -q ' call host->filter IFWXFilter::FilterInit slot 3 this=0x[0-9a-f]* pIFWXFirewall=0x[0-9a-f]* ' "$tr" ||
        add "no FilterInit call with its firewall argument"
    grep -q ' call host->filter IFWXSessionFilter::FirewallEventHandler slot 3 this=0x[0-9a-f]* pFirewallEvent=0x[0-9a-f]*(fwx_AcceptedConnection, source 0x80000000)' "$tr" ||
        add "no FirewallEventHandler call with a decoded fwx_AcceptedConnection event"
    grep -q ' call filter->host IFWXConnection::AttachDataFilter slot 3 this=0x[0-9a-f]* piDataFilter=0x[0-9a-f]* PriorityClass=[0-9] ' "$tr" ||
        add "no AttachDataFilter call with its arguments"
    local ss
    ss=$(grep -m 1 ' call host->filter IFWXDataFilter::SetSockets slot 3 ' "$tr")
    int=$(sed -n 's/.* piInternalSocket=\(0x[0-9a-f]*\) .*/\1/p' <<< "$ss")
    ext=$(sed -n 's/.* piExternalSocket=\(0x[0-9a-f]*\) .*/\1/p' <<< "$ss")
    if [ -z "$int" ] || [ -z "$ext" ]; then
        add "no SetSockets call with both sockets: '$ss'"
    else
        grep -q " call filter->host IFWXSocket::Recv slot 5 this=$int pIOBuffer=NULL pIFWXIOCompletion=0x[0-9a-f]* UserData=0x" "$tr" ||
            add "no Recv on the internal socket $int with its arguments"
        grep -q " call filter->host IFWXSocket::Recv slot 5 this=$ext " "$tr" || add "no Recv on the external socket $ext"
        grep -q ' call host->filter IFWXIOCompletion::CompleteAsyncIO slot 3 this=0x[0-9a-f]* fSuccess=1 Win32ErrorCode=0 pIOBuffer=0x[0-9a-f]*(data [0-9]* of [0-9]*) UserData=0x' "$tr" ||
            add "no CompleteAsyncIO call with a decoded buffer"
        # What the trace says was sent is what went through.
        up=$(sum_sends "$tr" "$ext"); down=$(sum_sends "$tr" "$int")
        # fxpeer: 8-byte index + 120000 up; 150000 + 12-byte trailer down.
        [ "$up" = 120008 ] || add "Sends on the external socket carry $up bytes, the client sent 120008"
        [ "$down" = 150012 ] || add "Sends on the internal socket carry $down bytes, the server sent 150012"
        grep -q " call filter->host IFWXSocket::Shutdown slot 6 this=$ext fAbortive=0" "$tr" ||
            add "no Shutdown(fAbortive=0) of the external socket"
    fi
    grep -q ' ret  host->filter IFWXIOCompletion::CompleteAsyncIO slot 3 = S_OK' "$tr" || add "no CompleteAsyncIO result"
    grep -q ' ret  filter->host IFWXIOBuffer::GetBufferSizes slot 8 = S_OK pdwAllocatedSize=\*[0-9]* pdwActualSize=\*[0-9]*' "$tr" ||
        add "no GetBufferSizes result with its out values"
    calls=$(count ' call ' "$tr"); rets=$(count ' ret  ' "$tr")
    [ "$calls" = "$rets" ] || add "$calls calls but $rets results"
    result "$fl fwxhost --trace: one passthrough session, $calls calls both ways with decoded arguments; Sends carry ${up:-?}/${down:-?} bytes" \
        "$why" "$tr" "$hlog"

    # fwxreplay --trace: the same for a scripted session.
    why="" tr=$T/trace-$fl-replay.txt
    FWX_FILTERS=$B/filters/$fl "$B/bin/fwxreplay" --trace "$tr" "$S/tests/replay/passthrough.fwxs" \
        > "$T/trace-$fl-replay.log" 2>&1 || add "fwxreplay exit $?"
    for m in "host->filter IFWXDataFilter::SetSockets" "filter->host IFWXSocket::Recv" \
             "host->filter IFWXIOCompletion::CompleteAsyncIO" "filter->host IFWXSocket::Send"; do
        grep -q " call $m " "$tr" 2> /dev/null || add "no '$m' in the replay trace"
    done
    result "$fl fwxreplay --trace: $(count ' call ' "$tr") calls traced" "$why" "$tr" "$T/trace-$fl-replay.log"
}

# ---------------------------------------------------------------- [abi] overrides
# idl_uuid IFACE: the IID our IDL assigns to IFACE, braced, upper case.
idl_uuid() {
    awk -v i="$1" '/uuid\(/ { u = $0 } $0 ~ "^interface " i " " { print u; exit }' "$S/idl/wspfwext.idl" |
        sed 's/.*uuid(\([0-9A-Fa-f-]*\)).*/{\1}/' | tr a-f A-F
}

# conf_error NAME EXPECTED-REGEX: fwxhost --config $T/ov/NAME.conf must exit 2 with
# a last stderr line matching EXPECTED-REGEX.
conf_error() {
    local out rc
    out=$("$FWXHOST" --config "$T/ov/$1.conf" 2>&1)
    rc=$?
    if [ $rc -ne 2 ]; then
        add "$1: exit $rc (expected 2): $(tail -n 1 <<< "$out")"
    elif ! tail -n 1 <<< "$out" | grep -Eq -- "$2"; then
        add "$1: '$(tail -n 1 <<< "$out")' does not match '$2'"
    fi
}

test_overrides() {
    local fl=$1 lp tp why conn sess hlog
    if ! need_filters $fl passthrough; then
        not_ok "$fl [abi] overrides" "$MISSING"; return
    fi
    conn=$(idl_uuid IFWXConnection); sess=$(idl_uuid IFWXSession)
    [ -n "$conn" ] && [ -n "$sess" ] || { not_ok "$fl [abi] overrides" "no IID for IFWXConnection/IFWXSession in the IDL"; return; }
    mkdir -p "$T/ov/inc"
    free_port; lp=$PORT; free_port; tp=$PORT
    base="[filter pass]
path = $DLL_passthrough

[rule r]
listen = 127.0.0.1:$lp
target = 127.0.0.1:$tp
"
    why=""
    printf '%s\n[abi]\ninclude = inc/typo.conf\n' "$base" > "$T/ov/typo.conf"
    printf '; discovered\n[abi]\nIID_IFWXFiltr = {11111111-2222-3333-4444-555555555555}\n' > "$T/ov/inc/typo.conf"
    conf_error typo "^fwxhost: .*/ov/inc/typo\.conf:3: unknown key 'IID_IFWXFiltr' in \[abi\] \(did you mean 'IID_IFWXFilter'\?\)$"
    printf '%s\n[abi]\niid_ifwxfilter = {11111111-2222-3333-4444-555555555555}\n' "$base" > "$T/ov/case.conf"
    conf_error case "^fwxhost: .*/ov/case\.conf:9: unknown name 'iid_ifwxfilter' in \[abi\] \(names are case-sensitive: did you mean 'IID_IFWXFilter'\?\)$"
    printf '%s\n[abi]\nIID_IFWXFilter = {1111111-2222-3333-4444-555555555555}\n' "$base" > "$T/ov/guid.conf"
    conf_error guid "^fwxhost: .*/ov/guid\.conf:9: IID_IFWXFilter: '\{1111111-2222-3333-4444-555555555555\}' is not a GUID"
    printf '%s\n[abi]\nFWX_FLAG_TIMEOUT = 0x1g\n' "$base" > "$T/ov/num.conf"
    conf_error num "^fwxhost: .*/ov/num\.conf:9: FWX_FLAG_TIMEOUT: '0x1g' is not a 32-bit number"
    printf '%s\n[abi]\nFWX_FLAG_TIMEOUT = 0x100000000\n' "$base" > "$T/ov/big.conf"
    conf_error big "^fwxhost: .*/ov/big\.conf:9: FWX_FLAG_TIMEOUT: '0x100000000' is not a 32-bit number"
    printf '%s\n[abi]\nFWX_FLAG_TIMEOUT = 0x40\ninclude = inc/dup.conf\n' "$base" > "$T/ov/dup.conf"
    printf '[abi]\n\nFWX_FLAG_TIMEOUT = 0x80\n' > "$T/ov/inc/dup.conf"
    conf_error dup "^fwxhost: .*/ov/inc/dup\.conf:3: FWX_FLAG_TIMEOUT is already set \(at .*/ov/dup\.conf:9\)$"
    printf '%s\n[abi]\ninclude = inc/missing.conf\n' "$base" > "$T/ov/missing.conf"
    conf_error missing "^fwxhost: .*/ov/missing\.conf:9: include: cannot open .*/ov/inc/missing\.conf: No such file or directory$"
    printf '%s\n[abi]\ninclude = inc/self.conf\n' "$base" > "$T/ov/loop.conf"
    printf '[abi]\ninclude = self.conf\n' > "$T/ov/inc/self.conf"
    conf_error loop "^fwxhost: .*/ov/inc/self\.conf:2: include self\.conf: nested more than 8 deep \(does it include itself\?\)$"
    printf '%s\n[abi]\nIID_IFWXSession = %s\n' "$base" "$conn" > "$T/ov/clash.conf"
    conf_error clash "^fwxhost: .*/ov/clash\.conf:9: \[abi\] IID_IFWXSession and IID_IFWXConnection would both be \{${conn:1:36}\} \(IID_IFWXSession is set at .*/ov/clash\.conf:9\)$"
    printf '%s\n[abi]\nFWX_FLAG_TIMEOUT = 2\n' "$base" > "$T/ov/flag.conf"
    conf_error flag "^fwxhost: .*/ov/flag\.conf:9: \[abi\] FWX_FLAG_ALLOW_MULTIPLE and FWX_FLAG_TIMEOUT would both be 0x2"
    printf '%s\n[abi]\nFWX_FLAG_PROXY_MODE = 0\n' "$base" > "$T/ov/zero.conf"
    conf_error zero "^fwxhost: .*/ov/zero\.conf:9: \[abi\] FWX_FLAG_PROXY_MODE = 0: a flag needs a bit$"
    result "$fl [abi] errors: unknown names (with the nearest), bad GUIDs and numbers, duplicates across includes, missing and recursive includes, values two names would share; each with FILE:LINE" "$why"

    # The host asks for the IID at run time: a changed IID_IFWXFilter no longer
    # matches what passthrough was built with.
    why="" hlog=$T/ov-$fl-iid.log
    printf '[abi]\nIID_IFWXFilter = {0BADF00D-1111-2222-3333-444455556666}\n' > "$T/ov/iid.abi"
    "$FWXHOST" --abi "$T/ov/iid.abi" --filter "$DLL_passthrough" --listen 127.0.0.1:$lp \
        --target 127.0.0.1:$tp --log-level info > "$hlog" 2>&1
    rc=$?
    [ $rc -eq 2 ] || add "exit $rc, expected 2"
    grep -q "NOTICE: abi: IID_IFWXFilter = {0BADF00D-1111-2222-3333-444455556666} (.*/ov/iid.abi:2; was $(idl_uuid IFWXFilter))" "$hlog" ||
        add "no log line 'abi: IID_IFWXFilter = {0BADF00D-...} (FILE:2; was the IDL value)'"
    grep -q "E_NOINTERFACE\|0x80004002\|does not implement" "$hlog" || add "the refusal does not say the filter lacks the interface: $(tail -n 1 "$hlog")"
    result "$fl [abi] IID_IFWXFilter override: logged, and the host asks the filter for it (passthrough, built with the IDL's value, is refused: $(tail -n 1 "$hlog" | cut -c1-160))" \
        "$why" "$hlog"
}

# ---------------------------------------------------------------- discovery
# uuid_in IDL IFACE: the IID IDL gives IFACE, braced, upper case.
uuid_in() {
    awk -v i="$2" '/uuid\(/ { u = $0 } $0 ~ "^interface " i " " { print u; exit }' "$1" |
        sed 's/.*uuid(\([0-9A-Fa-f-]*\)).*/{\1}/' | tr a-f A-F
}

test_discover() {
    local fl=$1 out why lp tp hlog tr alt i name want def rc
    if ! need_filters $fl atlstyle passthrough; then
        not_ok "$fl fwxinfo --discover" "$MISSING"; return
    fi
    alt=$B/gen/atlstyle/wspfwext.idl     # what atlstyle was built with
    out=$T/discover-$fl.conf why=""
    "$B/bin/fwxinfo" --discover "$DLL_atlstyle" > "$out" 2> "$T/discover-$fl.err"
    rc=$?
    [ $rc -eq 0 ] || add "fwxinfo --discover exit $rc: $(tail -n 1 "$T/discover-$fl.err")"
    grep -q '^; class {D1A7C0DE-5B3E-4F6A-8E21-7C9B0A4D3E52} AtlStyleFilter: type library coclass; REGISTRY resource; served by DllGetClassObject$' "$out" ||
        add "the CLSID is not reported from the type library, the REGISTRY resource and DllGetClassObject"
    grep -q '^; ATL interface map at RVA 0x[0-9a-f]*: {' "$out" || add "no ATL interface map found"
    for name in IFWXFilter IFWXFirewall IFWXSession IFWXSessionFilter; do
        want=$(uuid_in "$alt" $name); def=$(idl_uuid $name)
        [ -n "$want" ] && [ "$want" != "$def" ] || { add "$name: atlstyle's IID '$want' is not different from the default '$def'"; continue; }
        grep -qx "IID_$name = $want" "$out" || add "no line 'IID_$name = $want' (atlstyle's)"
    done
    [ "$(sed -n '/^\[abi\]/,$p' "$out" | grep -c '^IID_')" -eq 4 ] || add "$(sed -n '/^\[abi\]/,$p' "$out" | grep -c '^IID_') IIDs in [abi], expected 4"
    result "$fl fwxinfo --discover atlstyle.dll: CLSID from type library, REGISTRY and probing; IID_IFWXFilter, IID_IFWXSessionFilter (answered), IID_IFWXFirewall, IID_IFWXSession (asked in dry runs), all atlstyle's" \
        "$why" "$out" "$T/discover-$fl.err"

    # Without the overrides the host cannot use the filter; with them, traffic flows
    # through its data filter.
    why="" hlog=$T/discover-$fl-host.log tr=$T/discover-$fl-trace.txt
    free_port; lp=$PORT; free_port; tp=$PORT
    "$FWXHOST" --filter "$DLL_atlstyle" --listen 127.0.0.1:$lp --target 127.0.0.1:$tp > "$T/discover-$fl-plain.log" 2>&1
    rc=$?
    [ $rc -eq 2 ] && grep -q "does not give an IFWXFilter" "$T/discover-$fl-plain.log" ||
        add "without overrides: exit $rc, $(tail -n 1 "$T/discover-$fl-plain.log") (expected the host to refuse: no IFWXFilter)"
    start_server "$T/discover-$fl-server.log" $tp 262144 91
    if ! start_host "$hlog" "$FWXHOST" --abi "$out" --filter "$DLL_atlstyle" --listen 127.0.0.1:$lp \
            --target 127.0.0.1:$tp --workers 2 --trace "$tr" --log-level info; then
        stop_host $HOST_PID; stop_peer $SRV_PID
        not_ok "$fl fwxhost runs atlstyle with the discovered overrides" "fwxhost did not become ready (exit $HOST_RC)" "$hlog" "$out"
        return
    fi
    "$FXPEER" client --connect 127.0.0.1:$lp --conns 10 --send 262144 --recv 262144 --seed 91 \
        --timeout 30 > "$T/discover-$fl-client.log" 2>&1 || add "client: $(tail -n 1 "$T/discover-$fl-client.log")"
    sleep 0.3
    stop_host $HOST_PID
    stop_peer $SRV_PID
    [ "$HOST_RC" = 0 ] || add "fwxhost exit $HOST_RC"
    grep -q 'WARN: .*FilterInit returned' "$hlog" && add "$(grep -m 1 'WARN: .*FilterInit returned' "$hlog")"
    [ "$(count 'NOTICE: abi: IID_' "$hlog")" -eq 4 ] || add "$(count 'NOTICE: abi: IID_' "$hlog") 'abi:' override lines, expected 4"
    [ "$(count ' call host->filter IFWXDataFilter::SetSockets ' "$tr")" -eq 10 ] ||
        add "$(count ' call host->filter IFWXDataFilter::SetSockets ' "$tr") SetSockets calls into atlstyle's data filter, expected 10"
    grep -q ' ret  filter->host IFWXFirewall::QueryInterface slot 0 = S_OK' "$tr" ||
        add "the host did not answer atlstyle's IID_IFWXFirewall"
    grep -q ' ret  filter->host IFWXSession::QueryInterface slot 0 = S_OK' "$tr" ||
        add "the host did not answer atlstyle's IID_IFWXSession"
    result "$fl fwxhost --abi (discovered) runs atlstyle: $(tail -n 1 "$T/discover-$fl-client.log" | sed 's/^fxpeer: //'), through its data filter" \
        "$why" "$hlog" "$T/discover-$fl-client.log"

    # A filter built with the defaults: discovery finds the defaults.
    why="" out=$T/discover-$fl-pass.conf
    "$B/bin/fwxinfo" --discover "$DLL_passthrough" > "$out" 2>&1 || add "exit $?"
    for name in IFWXFilter IFWXSessionFilter; do
        grep -qx "IID_$name = $(idl_uuid $name)" "$out" || add "no line 'IID_$name = $(idl_uuid $name)'"
    done
    result "$fl fwxinfo --discover passthrough.dll: the project's default IIDs" "$why" "$out"
}

# ---------------------------------------------------------------- ABI profiles
# profile_conf FILE DLL PROFILE LISTEN TARGET: a config with one filter (profile
# PROFILE, or none for "auto") and one publishing rule.
profile_conf() {
    {
        echo "[host]"; echo "workers = 2"; echo "log-level = info"; echo
        echo "[filter f]"; echo "path = $2"
        [ "$3" = auto ] || echo "profile = $3"
        echo; echo "[rule r]"; echo "listen = 127.0.0.1:$4"; echo "target = 127.0.0.1:$5"
    } > "$1"
}

# run_pass NAME DLL PROFILE EXPECT-LOG: fwxhost with that filter; 10 connections must pass
# byte-identical, and the log must have a line matching EXPECT-LOG. Sets why.
run_pass() {
    local name=$1 lp tp conf=$T/prof-$1.ini hlog=$T/prof-$1.log
    free_port; lp=$PORT; free_port; tp=$PORT
    profile_conf "$conf" "$2" "$3" $lp $tp
    start_server "$T/prof-$name-server.log" $tp 131072 95
    if ! start_host "$hlog" "$FWXHOST" --config "$conf"; then
        stop_host $HOST_PID; stop_peer $SRV_PID
        add "$name: fwxhost did not become ready (exit $HOST_RC): $(tail -n 1 "$hlog")"; return
    fi
    "$FXPEER" client --connect 127.0.0.1:$lp --conns 10 --send 131072 --recv 131072 --seed 95 \
        --timeout 30 > "$T/prof-$name-client.log" 2>&1 || add "$name: client: $(tail -n 1 "$T/prof-$name-client.log")"
    stop_host $HOST_PID
    stop_peer $SRV_PID
    grep -Eq -- "$4" "$hlog" || add "$name: no log line matching '$4'"
    grep -q 'WARN: .*\(FilterInit\|AttachToSession\) returned' "$hlog" && add "$name: $(grep -m 1 'WARN: .* returned' "$hlog")"
}

# refused NAME DLL PROFILE EXPECT: fwxhost must refuse to start with EXPECT in its last line.
refused() {
    local lp tp conf=$T/prof-$1.ini out rc
    free_port; lp=$PORT; free_port; tp=$PORT
    profile_conf "$conf" "$2" "$3" $lp $tp
    out=$("$FWXHOST" --config "$conf" 2>&1)
    rc=$?
    [ $rc -eq 2 ] && tail -n 1 <<< "$out" | grep -Eq -- "$4" ||
        add "$1: exit $rc, '$(tail -n 1 <<< "$out")' (expected exit 2 and '$4')"
}

test_profiles() {
    local fl=$1 why pe_default other lp tp sp report slog hlog conf
    if ! need_filters $fl passthrough passtmg netsocktmg; then
        not_ok "$fl ABI profiles" "$MISSING"; return
    fi
    [ $fl = x86 ] && pe_default=isa2000 || pe_default=tmg
    why=""
    # The ISA 2000 build: runs as isa2000 whatever the PE type says by default.
    if [ $fl = x86 ]; then
        run_pass $fl-2000-auto "$DLL_passthrough" auto "INFO: filter f: .*profile isa2000 \(by PE type\)"
    else
        run_pass $fl-2000-auto "$DLL_passthrough" auto \
            "INFO: filter f: FilterInit returned a hook-event pointer, the ISA 2000 way: profile isa2000 instead of tmg"
    fi
    run_pass $fl-2000-isa2000 "$DLL_passthrough" isa2000 "INFO: filter f: .*profile isa2000,"
    refused $fl-2000-tmg "$DLL_passthrough" tmg "passthrough\.dll: profile tmg, but FilterInit left 0x[0-9a-f]* in the hook events it should fill .*try profile = isa2000"
    # The TMG build.
    run_pass $fl-tmg-tmg "$DLL_passtmg" tmg "INFO: filter f: .*profile tmg, hook events fwx_Connect_Tcp\|fwx_AcceptedConnection\|fwxSourceWSP\|fwxSourceNAT"
    if [ $fl = x64 ]; then
        run_pass $fl-tmg-auto "$DLL_passtmg" auto "INFO: filter f: .*profile tmg \(by PE type\)"
    else
        refused $fl-tmg-auto "$DLL_passtmg" auto "passtmg\.dll: FilterInit returned an unreadable hook-event pointer"
    fi
    refused $fl-tmg-isa2000 "$DLL_passtmg" isa2000 "passtmg\.dll: FilterInit returned an unreadable hook-event pointer"
    result "$fl profiles with passthrough built both ways: PE default $pe_default; the ISA 2000 build runs as isa2000 (auto, explicit), the TMG build as tmg (explicit$( [ $fl = x64 ] && echo ', auto')); mismatches refused with the reason" \
        "$why" "$T"/prof-$fl-*.log

    # netsock built for tmg: SetSockOpt/GetSockOpt in TMG order reach the right methods.
    why="" report=$T/prof-$fl-netsock.txt slog=$T/prof-$fl-sink.log hlog=$T/prof-$fl-netsock-host.log
    conf=$T/prof-$fl-netsock.ini
    free_port; lp=$PORT; free_port; tp=$PORT; free_port; sp=$PORT
    "$FXPEER" sink --listen 127.0.0.1:$sp --out "$T/prof-$fl-sink.out" --count 1 --reply "hi" > "$slog" 2>&1 &
    local sink=$!
    pids+=("$sink")
    wait_for "$slog" '^ready' $sink 10 || add "fxpeer sink did not start"
    # Explicit: netsock calls Set/GetSockOpt inside FilterInit, before an auto profile
    # is settled (ABI-303).
    profile_conf "$conf" "$DLL_netsocktmg" tmg $lp $tp
    if start_host "$hlog" env FWX_NETSOCK_CONNECT=127.0.0.1:$sp FWX_NETSOCK_OUT="$report" \
            "$FWXHOST" --config "$conf"; then
        for _ in $(seq 1 150); do grep -q '^received' "$report" 2> /dev/null && break; sleep 0.1; done
        stop_host $HOST_PID
    else
        stop_host $HOST_PID
        add "fwxhost did not become ready: $(tail -n 1 "$hlog")"
    fi
    stop_peer $sink
    for line in "set-nodelay 0x00000000" "get-nodelay 0x00000000 value 1" "get-type 0x00000000 value 1" \
                "get-unknown 0x8007273a" "connect 0x00000000"; do
        grep -qx "$line" "$report" 2> /dev/null || add "no line '$line' in the report"
    done
    grep -q 'INFO: filter f: .*profile tmg' "$hlog" || add "the filter did not run as tmg"
    result "$fl profile tmg: netsock built in the TMG order calls SetSockOpt(TCP_NODELAY) and GetSockOpt (value 1, SO_TYPE 1, WSAENOPROTOOPT) through the swapped slots" \
        "$why" "$report" "$hlog"
}

# ---------------------------------------------------------------- fwxhost --install
test_install() {
    local fl=$1 why sec conf lp tp hlog rc
    if ! need_filters $fl passreg passthrough; then
        not_ok "$fl fwxhost --install" "$MISSING"; return
    fi
    why="" sec=$T/install-$fl.conf conf=$T/install-$fl-full.conf hlog=$T/install-$fl-host.log
    "$FWXHOST" --install "$DLL_passreg" > "$sec" 2> "$T/install-$fl.err"
    rc=$?
    [ $rc -eq 0 ] || add "exit $rc: $(tail -n 1 "$T/install-$fl.err")"
    grep -qx '\[filter passreg\]' "$sec" || add "no [filter passreg] section"
    grep -qx "path = $DLL_passreg" "$sec" || add "no 'path = $DLL_passreg'"
    grep -qx 'clsid = {C5B86DA9-D567-4E36-8A60-144A781CB066}' "$sec" || add "not the CLSID passreg installed"
    grep -qx '; protocol {7A3C1E55-0B2D-4C8E-9F16-2D4B6A8C0E13} "PassReg TCP": the passreg test protocol' "$sec" ||
        add "the registered protocol is not listed"
    grep -q 'NOTICE: install: InstallFilter {C5B86DA9-D567-4E36-8A60-144A781CB066} "PassReg"' "$T/install-$fl.err" ||
        add "no log line of the InstallFilter call"
    # The section, with a rule, runs.
    free_port; lp=$PORT; free_port; tp=$PORT
    { printf '[host]\nworkers = 2\nlog-level = info\n\n'; cat "$sec"; printf '\n[rule r]\nlisten = 127.0.0.1:%s\ntarget = 127.0.0.1:%s\n' $lp $tp; } > "$conf"
    start_server "$T/install-$fl-server.log" $tp 131072 97
    if start_host "$hlog" "$FWXHOST" --config "$conf"; then
        "$FXPEER" client --connect 127.0.0.1:$lp --conns 10 --send 131072 --recv 131072 --seed 97 \
            --timeout 30 > "$T/install-$fl-client.log" 2>&1 || add "client: $(tail -n 1 "$T/install-$fl-client.log")"
        stop_host $HOST_PID
        grep -q "INFO: filter passreg: .*passreg.dll, class {C5B86DA9-D567-4E36-8A60-144A781CB066}" "$hlog" ||
            add "the host did not load passreg from the section"
    else
        stop_host $HOST_PID
        add "fwxhost --config (installed section) did not become ready: $(tail -n 1 "$hlog")"
    fi
    stop_peer $SRV_PID
    result "$fl fwxhost --install passreg.dll: DllRegisterServer through IFWXFilterAdmin gives [filter passreg] with its CLSID and protocol; that section runs: $(tail -n 1 "$T/install-$fl-client.log" 2> /dev/null | sed 's/^fxpeer: //')" \
        "$why" "$sec" "$T/install-$fl.err" "$hlog"

    # A DLL whose DllRegisterServer does not use IFWXFilterAdmin: the class by probing.
    why="" sec=$T/install-$fl-plain.conf
    "$FWXHOST" --install "$DLL_passthrough" > "$sec" 2> "$T/install-$fl-plain.err" || add "exit $?: $(tail -n 1 "$T/install-$fl-plain.err")"
    grep -qx '\[filter passthrough\]' "$sec" && grep -qx 'clsid = {C5B86DA9-D567-4E36-8A60-144A781CB066}' "$sec" &&
        grep -q 'the class found by probing' "$sec" || add "unexpected section: $(tr '\n' '|' < "$sec")"
    result "$fl fwxhost --install passthrough.dll (no InstallFilter): the section names the class found by probing" "$why" "$sec"
}

# ---------------------------------------------------------------- main
note "ABI tests; flavours: $FLAVOURS; temp: $T"
ALL_GROUPS="trap trace overrides discover profiles install"
tl_groups "${FWX_ABI_TESTS:-$ALL_GROUPS}"
tl_run_groups $ALL_GROUPS
tl_done
