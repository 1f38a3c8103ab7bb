#!/bin/bash
# emulation.sh - outbound emulation (reference 2.9) end to end: the emulator test filter
# answers an outbound connect itself (SetProtocol with FWX_FLAG_EMULATE_PROTOCOL and a
# data filter of class fwx_dfpc_Emulation), so the client gets an answer although
# nothing listens at its destination. A second emulation attempt on one connection gets
# FWX_E_ALREADY_EMULATED, SetSocketName works once (FWX_E_ALREADY_EXISTS after) and
# GetExternalSocketName reports it. Inbound emulation (HOST-1001): on a publishing rule
# whose target is closed, EmulateConnection makes the emulator answer the client; a second
# EmulateConnection and an Emulation-class AttachDataFilter get FWX_E_ALREADY_EMULATED.
#
# As tests/outbound.sh: a network namespace, iptables REDIRECT of uid 65534's connections
# to 127.0.0.3:8080 (where nothing listens) to the host's outbound rule. Needs root, ip,
# iptables and setpriv; otherwise prints a visible SKIP.
# Environment as for tests/fwxhost.sh (FWX_BUILDDIR, FWX_FLAVOURS, WINEPREFIX).
set -u

TL_WHAT="outbound emulation in a network namespace"
TL_TAIL=20
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tl_setup fwx-emulation
tl_outbound_ns fwxemu
tl_fxpeer
peer=$FXPEER

for f in $FLAVOURS; do
    log=$T/host-$f.log
    cat > "$T/emu-$f.ini" << EOF
[host]
workers = 2
log-level = info
control = $T/ctl-$f.sock

[filter emulator]
path = $B/filters/$f/emulator.dll

[rule out]
type = outbound
listen = 127.0.0.1:3128

[rule in]
listen = 127.0.0.1:3129
target = 127.0.0.1:9
EOF
    ns_host "$ns" "$T/emu-$f.ini" "$log" 2 || fail "$f: fwxhost starts with both rules ready" "$log"
    # Without the host nothing answers there: the client would be refused.
    out=$T/reply-$f.txt
    : > "$out"
    chown 65534 "$out"   # the client runs as uid 65534
    if inns setpriv --reuid=65534 --regid=65534 --clear-groups \
            "$peer" send --connect 127.0.0.3:8080 --data "hello emulator" --out "$out" --timeout 10 \
            > "$T/client-$f.log" 2>&1 && [ "$(cat "$out")" = "emulated:hello emulator" ]; then
        ok "$f: the emulator answered a connect to a closed port ($(cat "$out"))"
    else
        fail "$f: the emulator answers a connect to a closed port" "$T/client-$f.log" "$out" "$log"
    fi
    # Inbound: a publishing rule whose target (port 9) nothing serves.
    out=$T/reply-in-$f.txt
    if inns "$peer" send --connect 127.0.0.1:3129 --data "hello inbound" --out "$out" --timeout 10 \
            > "$T/client-in-$f.log" 2>&1 && [ "$(cat "$out")" = "emulated:hello inbound" ]; then
        ok "$f: inbound emulation (EmulateConnection) answered a client of a publishing rule ($(cat "$out"))"
    else
        fail "$f: inbound emulation answers a client of a publishing rule" "$T/client-in-$f.log" "$out" "$log"
    fi
    stop_host
    rc=$HOST_RC
    inchecks=(
        "EmulateConnection: 0x00000000, connection the accepted one"
        "second EmulateConnection: 0xc0040009"
        "AttachDataFilter(fwx_dfpc_Emulation) after EmulateConnection: 0xc0040009"
    )
    missing_in=""
    for c in "${inchecks[@]}"; do
        grep -qF "fwx-filter emulator: $c" "$log" || missing_in="$missing_in [$c]"
    done
    if [ -z "$missing_in" ] && grep -q 'rule in: emulated by filter emulator (EmulateConnection)' "$log" &&
       ! grep -q 'connect to target' "$log"; then
        ok "$f: inbound emulation: one emulator per connection (FWX_E_ALREADY_EMULATED), no connect to the target"
    else
        fail "$f: inbound emulation calls (missing:$missing_in)" "$log"
    fi
    checks=(
        "SetProtocol(FWX_FLAG_EMULATE_PROTOCOL): 0x00000000"
        "second SetProtocol(FWX_FLAG_EMULATE_PROTOCOL): 0xc0040009"
        "AttachDataFilter(fwx_dfpc_Emulation): 0x00000000"
        "second AttachDataFilter(fwx_dfpc_Emulation): 0xc0040009"
        "SetSockets: internal set, external NULL"
        "SetSocketName: 0x00000000"
        "second SetSocketName: 0x800700b7"
        "GetExternalSocketName: 0x00000000 192.0.2.80:8080"
    )
    missing_lines=""
    for c in "${checks[@]}"; do
        grep -qF "fwx-filter emulator: $c" "$log" || missing_lines="$missing_lines [$c]"
    done
    if [ -z "$missing_lines" ] && [ "$(grep -c 'fwx-filter emulator: SetSockets' "$log")" = 2 ] &&
       ! grep -q 'connect to target' "$log" && [ $rc = 0 ]; then
        ok "$f: one emulator per connection (FWX_E_ALREADY_EMULATED), SetSocketName once, no connect to the destination, clean exit"
    else
        fail "$f: emulation calls (missing:$missing_lines; exit $rc)" "$log"
    fi
done
tl_done
