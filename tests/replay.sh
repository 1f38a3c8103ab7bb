#!/bin/bash
# replay.sh - end-to-end tests of fwxreplay, for each flavour in FWX_FLAVOURS
# (through tests/wine-run like fwxhost.sh); prints TAP, exits 0 iff all passed.
#
#   a. the suite tests/replay/ passes (TAP from the launcher, JUnit XML written),
#      with the flavour picked from the scripts' own filter lines
#   b. passthrough gives the same golden file with --chunking fixed:1 and random:42
#   c. a mutated golden file fails with a diff and exit 1
#   d. malformed scripts (truncated, garbage, huge lengths) exit 2 with a
#      FILE:LINE:COL message, never a crash
#   e. UDP (protocol udp) through dnsguard: the suite's dnsguard-*.fwxs (publish and
#      outbound: TPROXY sockets emulated) ran the
#      filter (its drop log), --chunking never splits a datagram, a mutated UDP
#      golden fails with a diff, the ExternalAddress of receives (the seed),
#      a datagram from a stranger to the host's socket towards the server is
#      not delivered (that socket is connected to the target)
#
# Environment (set by make check): FWX_BUILDDIR, FWX_SRCDIR, FWX_FLAVOURS,
# WINEPREFIX, WINEDEBUG. Directly:
#   cd build && WINEPREFIX=$PWD/wineprefix WINEDEBUG=-all FWX_BUILDDIR=$PWD \
#     FWX_SRCDIR=/work/main FWX_FLAVOURS="x86 x64" bash ../tests/replay.sh
set -u

TL_TAIL=30
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tl_setup fwxreplay
R=$B/bin/fwxreplay

for fl in $FLAVOURS; do
    F=$B/filters/$fl
    export FWX_FILTERS=$F
    # The suite runs on a copy, so that the goldens can be mutated below.
    D=$T/$fl
    mkdir -p "$D"
    cp "$S"/tests/replay/*.fwxs "$S"/tests/replay/*.golden "$D"/
    export FWX_DNSGUARD_LOG=$T/$fl.guard
    export FWX_SESSIONLOG_FILE=$T/$fl.sessionlog

    # a. the suite
    "$R" --junit "$T/$fl.xml" "$D" > "$T/$fl.suite" 2>&1
    rc=$?
    if [ $rc -eq 0 ] && grep -q '^1\.\.[1-9]' "$T/$fl.suite" && ! grep -q '^not ok' "$T/$fl.suite" &&
       grep -q 'failures="0" errors="0"' "$T/$fl.xml"; then
        ok "$fl: the tests/replay suite passes ($(grep -c '^ok' "$T/$fl.suite") scripts), JUnit written"
    else
        not_ok "$fl: the tests/replay suite passes" "exit $rc" "$T/$fl.suite" "$T/$fl.xml"
    fi
    # The flavour came from the scripts: the host that ran is the x86/x64 one.
    if FWX_FILTERS=$F "$R" --log-level info "$D/passthrough.fwxs" 2> "$T/$fl.log" > /dev/null &&
       grep -q "$([ "$fl" = x86 ] && echo 32 || echo 64)-bit" "$T/$fl.log"; then
        ok "$fl: the launcher picks the $fl host from the script's filter lines"
    else
        not_ok "$fl: the launcher picks the $fl host from the script's filter lines" "see log" "$T/$fl.log"
    fi

    # b. chunking does not change passthrough's golden file
    for c in fixed:1 random:42 fixed:3; do
        if "$R" --chunking "$c" --filter "$F/passthrough.dll" "$D/passthrough.fwxs" > "$T/out" 2>&1; then
            ok "$fl: passthrough with --chunking $c matches the golden file"
        else
            not_ok "$fl: passthrough with --chunking $c matches the golden file" "exit $?" "$T/out"
        fi
    done
    if "$R" --chunking random:7 --filter "$F/rewrite.dll" "$D/rewrite.fwxs" > "$T/out" 2>&1; then
        ok "$fl: rewrite with --chunking random:7 (tokens split across reads) matches"
    else
        not_ok "$fl: rewrite with --chunking random:7 matches" "exit $?" "$T/out"
    fi

    # c. a mutated golden file
    sed -i 's/HTTP\/1.0 200 OK/HTTP\/1.0 404 Not Found/' "$D/passthrough.fwxs.golden"
    "$R" "$D/passthrough.fwxs" > "$T/out" 2>&1
    rc=$?
    if [ $rc -eq 1 ] && grep -q '^-client received: "HTTP/1.0 404 Not Found\\r\\n"$' "$T/out" &&
       grep -q '^+client received: "HTTP/1.0 200 OK\\r\\n"$' "$T/out" && grep -q '^@@ ' "$T/out"; then
        ok "$fl: a mutated golden file fails with a diff and exit 1"
    else
        not_ok "$fl: a mutated golden file fails with a diff and exit 1" "exit $rc" "$T/out"
    fi
    "$R" "$D" > "$T/out" 2>&1
    rc=$?
    if [ $rc -eq 1 ] && grep -q '^not ok [0-9]* - passthrough.fwxs (differs from its golden file)' "$T/out"; then
        ok "$fl: the suite reports the mutated golden file as not ok, exit 1"
    else
        not_ok "$fl: the suite reports the mutated golden file" "exit $rc" "$T/out"
    fi
    # --update repairs it.
    if "$R" --update "$D/passthrough.fwxs" > /dev/null 2>&1 &&
       cmp -s "$D/passthrough.fwxs.golden" "$S/tests/replay/passthrough.fwxs.golden"; then
        ok "$fl: --update rewrites the golden file as it was"
    else
        not_ok "$fl: --update rewrites the golden file as it was" "differs" "$D/passthrough.fwxs.golden"
    fi

    # e. UDP through dnsguard
    if grep -q '^drop response len=29$' "$T/$fl.guard" && grep -q '^drop short len=5$' "$T/$fl.guard" &&
       grep -q '^drop name-too-long len=337$' "$T/$fl.guard"; then
        ok "$fl: the suite's UDP scripts ran dnsguard: it dropped the QR query, the 5-byte one and the long name"
    else
        not_ok "$fl: the suite's UDP scripts ran dnsguard (its drop log)" "drops missing" "$T/$fl.guard"
    fi
    for c in fixed:1 random:5; do
        if "$R" --chunking "$c" "$D/dnsguard-valid.fwxs" > "$T/out" 2>&1; then
            ok "$fl: dnsguard-valid with --chunking $c matches (datagrams are never split)"
        else
            not_ok "$fl: dnsguard-valid with --chunking $c matches" "exit $?" "$T/out"
        fi
    done
    sed -i '0,/client received from/s/example/exbmple/' "$D/dnsguard-valid.fwxs.golden"
    "$R" "$D/dnsguard-valid.fwxs" > "$T/out" 2>&1
    rc=$?
    if [ $rc -eq 1 ] && grep -q '^-  client received from 192.0.2.1:53 to 192.0.2.10:40000, 45 bytes: .*exbmple' "$T/out" &&
       grep -q '^+  client received from 192.0.2.1:53 to 192.0.2.10:40000, 45 bytes: .*example' "$T/out"; then
        ok "$fl: a mutated UDP golden file fails with a diff and exit 1"
    else
        not_ok "$fl: a mutated UDP golden file fails with a diff and exit 1" "exit $rc" "$T/out"
    fi
    sed -i 's/^  server received \(.*\)$/  not delivered to the server/' "$D/dnsguard-malformed.fwxs.golden"
    "$R" "$D/dnsguard-malformed.fwxs" > "$T/out" 2>&1
    rc=$?
    if [ $rc -eq 1 ] && grep -q '^+  server received from' "$T/out" && grep -q '^-  not delivered to the server' "$T/out"; then
        ok "$fl: a golden that says the valid query was dropped fails with exit 1"
    else
        not_ok "$fl: a golden that says the valid query was dropped fails" "exit $rc" "$T/out"
    fi
    cp "$S"/tests/replay/dnsguard-*.golden "$D"/
    # ExternalAddress (the seed): the target when receiving from the internal
    # side, the source when receiving from the external side; a datagram the
    # server sends from another address never reaches the filter.
    U=$T/$fl-udp.fwxs
    { sed -n '/^protocol/,/^filter/p' "$S/tests/replay/dnsguard-valid.fwxs"
      grep -m1 '^client-datagram:' "$S/tests/replay/dnsguard-valid.fwxs"
      grep -m1 '^server-datagram:' "$S/tests/replay/dnsguard-valid.fwxs" | sed 's/^server-datagram: /server-datagram: from 10.0.0.99:53 /'
      grep -m1 '^server-datagram:' "$S/tests/replay/dnsguard-valid.fwxs"
      echo 'server-datagram: to 192.0.2.99:40000 "x"'; } > "$U"
    FWX_DNSGUARD_LOG=$T/$fl.ext FWX_DNSGUARD_EXTADDR=1 "$R" --update "$U" > "$T/out" 2>&1
    rc=$?
    G=$U.golden
    if [ $rc -eq 0 ] && [ "$(grep -c '^recv internal ext=10.0.0.53:53$' "$T/$fl.ext")" = 1 ] &&
       [ "$(grep -c '^recv external ext=10.0.0.53:53$' "$T/$fl.ext")" = 1 ] && ! grep -q 'ext=NULL\|ext=10.0.0.99' "$T/$fl.ext" &&
       [ "$(sed -n '/server-datagram: from 10.0.0.99:53/{n;p}' "$G")" = '  not delivered to the client' ] &&
       grep -q '^  not delivered: the host has no socket towards the server for client 192.0.2.99:40000$' "$G" &&
       grep -q '^client received 1 datagrams, server received 1$' "$G"; then
        ok "$fl: ExternalAddress = target (internal) / source (external); a stranger's datagram and one for an unknown client are not delivered"
    else
        not_ok "$fl: ExternalAddress and undeliverable server datagrams" "exit $rc" "$T/out" "$T/$fl.ext" "$G"
    fi

    # A destination a filter denies: counted, its datagrams dropped by the host.
    FWX_DNSGUARD_LOG=$T/$fl.deny FWX_DNSGUARD_DENY=1 "$R" --update "$D/dnsguard-valid.fwxs" > "$T/out" 2>&1
    rc=$?
    G=$D/dnsguard-valid.fwxs.golden
    if [ $rc -eq 0 ] && grep -q '^destinations denied: 2$' "$G" && [ "$(grep -c '^  not delivered' "$G")" = 4 ] &&
       grep -q '^client received 0 datagrams, server received 0$' "$G" && [ "$(grep -c '^deny 0x00000000$' "$T/$fl.deny")" = 2 ]; then
        ok "$fl: destinations dnsguard denies (FWX_DNSGUARD_DENY): 2 denied, none of their 4 datagrams delivered"
    else
        not_ok "$fl: denied destinations" "exit $rc" "$T/out" "$G" "$T/$fl.deny"
    fi
    cp "$S"/tests/replay/dnsguard-*.golden "$D"/

    # d. malformed scripts: exit 2, FILE:LINE:COL, no crash
    M=$T/$fl-bad
    mkdir -p "$M"
    # cut in the middle of the first action's string
    sed -n '1,/^client:/p' "$S/tests/replay/passthrough.fwxs" | head -c -12 > "$M/truncated.fwxs"
    head -c 3000 /dev/urandom > "$M/garbage.fwxs"
    { printf 'client: "'; head -c 1100000 /dev/zero | tr '\0' A; printf '"\n'; } > "$M/hugeline.fwxs"
    printf 'pause 99999999999999999999\n' > "$M/hugepause.fwxs"
    printf 'client: "\\xZZ"\n' > "$M/badescape.fwxs"
    printf 'client-datagram: "x"\n' > "$M/udp.fwxs"
    for s in truncated garbage hugeline hugepause badescape udp; do
        "$R" --filter "$F/passthrough.dll" "$M/$s.fwxs" > "$T/out" 2>&1
        rc=$?
        if [ $rc -eq 2 ] && grep -q "^fwxreplay: $M/$s.fwxs:[0-9]*:[0-9]*: " "$T/out"; then
            ok "$fl: malformed script ($s): exit 2, $(sed -n 's/.*fwxs:[0-9]*:[0-9]*: //p' "$T/out" | head -c 60)"
        else
            not_ok "$fl: malformed script ($s): exit 2 with FILE:LINE:COL" "exit $rc" "$T/out"
        fi
    done
    "$R" --filter "$F/passthrough.dll" "$T/no-such.fwxs" > "$T/out" 2>&1
    rc=$?
    if [ $rc -eq 2 ] && grep -q 'No such file' "$T/out"; then
        ok "$fl: a missing script exits 2"
    else
        not_ok "$fl: a missing script exits 2" "exit $rc" "$T/out"
    fi
    cp "$S/tests/replay/nofilter.fwxs" "$M/nogolden.fwxs"
    "$R" --filter "$F/passthrough.dll" "$M/nogolden.fwxs" > "$T/out" 2>&1
    rc=$?
    if [ $rc -eq 2 ] && grep -q 'run with --update to create it' "$T/out"; then
        ok "$fl: a script without a golden file exits 2 and says how to make one"
    else
        not_ok "$fl: a script without a golden file exits 2" "exit $rc" "$T/out"
    fi
done

tl_done
