#!/bin/bash
# fuzzcorpus.sh - replays every fuzz corpus (tests/fuzz/TARGET/: the seeds
# and each input a fuzzer once crashed on) through its harness, built
# without libFuzzer (tests/fuzz/replay_TARGET). A crash, sanitizer report
# (with --enable-asan) or failed harness check fails the test.
# Prints TAP; exits 0 iff all passed.
set -u
B=${FWX_BUILDDIR:?FWX_BUILDDIR not set}
S=${FWX_SRCDIR:?FWX_SRCDIR not set}

n=0 fails=0
ok()  { n=$((n + 1)); echo "ok $n $*"; }
bad() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n $*"; }

for t in conf script pe iobuf pcap; do
    dir=$S/tests/fuzz/$t
    count=$(find "$dir" -maxdepth 1 -type f | wc -l)
    crashes=$(find "$dir" -maxdepth 1 -type f -name 'crash-*' | wc -l)
    out=$("$B/tests/fuzz/replay_$t" "$dir" 2>&1)
    rc=$?
    replayed=$(printf '%s\n' "$out" | grep -c '^ok ')
    if [ $rc -eq 0 ] && [ "$replayed" -eq "$count" ] && [ "$count" -gt 0 ]; then
        ok "$t: $replayed inputs replayed ($crashes former crashes)"
    else
        bad "$t: rc=$rc, $replayed of $count inputs replayed"
        printf '%s\n' "$out" | tail -20 | sed 's/^/#   /'
    fi
done

# The PE harness on the seed DLL: it parses (the harness reaches the
# success path, not only the error path).
out=$("$B/tests/fuzz/replay_pe" "$S/tests/fuzz/pe/seed-passthrough-x64.dll" 2>&1)
[ $? -eq 0 ] && ok "pe: seed DLL replays" || bad "pe: seed DLL: $out"

# The config harness really checks: an accepted config is one with a rule.
printf '[rule r]\nlisten = 127.0.0.1:1\ntarget = 127.0.0.1:2\n' > "${TMPDIR:-/tmp}/fwxfz-$$.conf"
out=$("$B/tests/fuzz/replay_conf" "${TMPDIR:-/tmp}/fwxfz-$$.conf" 2>&1)
rc=$?
rm -f "${TMPDIR:-/tmp}/fwxfz-$$.conf"
[ $rc -eq 0 ] && ok "conf: a valid config replays" || bad "conf: valid config: rc=$rc $out"

echo "1..$n"
[ $fails -eq 0 ]
