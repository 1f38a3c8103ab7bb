#!/bin/bash
# fwxinfo.sh - end-to-end test of bin/fwxinfo (the native launcher and the
# winelib flavour it picks) on the test filters.
#
# For every flavour in FWX_FLAVOURS ("x86 x64" or "x64"):
#   - filters/$arch/passthrough.dll is described: machine (x86 PE32 /
#     x64 PE32+), the COM exports, the class {C5B86DA9-...} found by probing
#     and obtained as IFWXFilter, FilterInit S_OK, hook events including
#     fwx_AcceptedConnection, and a clean FilterShutdown/unload; exit 0;
#   - file(1) agrees on PE32 / PE32+ (skipped with a note without file);
#   - bad inputs exit 2 with exactly one line on stderr naming the file and
#     the reason: a text file (README.md), a missing path, a PE DLL that does
#     not export DllGetClassObject (built here with mingw), a CLSID the DLL
#     does not serve, a malformed CLSID; and, with both flavours, an x86 and
#     an x64 DLL in one invocation.
#
# Run by automake through tests/wine-run (FWX_BUILDDIR, FWX_SRCDIR,
# FWX_FLAVOURS and WINEPREFIX set). Prints "ok N - ..." / "not ok N - ..."
# lines; exits 1 if any check failed.
set -u

: "${FWX_BUILDDIR:?run through make check (FWX_BUILDDIR not set)}"
: "${FWX_SRCDIR:?run through make check (FWX_SRCDIR not set)}"
FWX_FLAVOURS=${FWX_FLAVOURS:-x64}
export WINEDEBUG=${WINEDEBUG:--all}

FWXINFO=$FWX_BUILDDIR/bin/fwxinfo
CLSID='{C5B86DA9-D567-4E36-8A60-144A781CB066}'
WRONG_CLSID='{00000000-1111-2222-3333-444444444444}'
EXPORTS='DllCanUnloadNow DllGetClassObject DllRegisterServer DllUnregisterServer'
RUN_TIMEOUT=120

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fwxinfo-test.XXXXXX") || { echo "not ok 1 - mktemp -d failed"; exit 1; }
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

n=0
failures=0
ok()     { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failures=$((failures + 1)); echo "not ok $n - $*"; }
skip()   { n=$((n + 1)); echo "ok $n - # SKIP $*"; }
note()   { echo "# $*"; }
# Shows a captured file in the log, each line prefixed with "#   ".
show()   { [ -s "$2" ] && { echo "# $1:"; sed 's/^/#   /' "$2"; }; return 0; }

# run NAME ARGS...: runs fwxinfo, leaving $tmp/NAME.out, $tmp/NAME.err and
# the exit status in $rc.
run() {
    local name=$1
    shift
    if command -v timeout > /dev/null; then
        timeout "$RUN_TIMEOUT" "$FWXINFO" "$@" > "$tmp/$name.out" 2> "$tmp/$name.err"
    else
        "$FWXINFO" "$@" > "$tmp/$name.out" 2> "$tmp/$name.err"
    fi
    rc=$?
    [ "$rc" = 124 ] && note "fwxinfo $* timed out after ${RUN_TIMEOUT}s"
    return 0
}

# field NAME KEY: the value of the "KEY: value" line of $tmp/NAME.out.
field() {
    sed -n "s/^$2:[[:space:]]*//p" "$tmp/$1.out" | head -n 1
}

# expect_good NAME ARCH DLL: checks a successful description.
expect_good() {
    local name=$1 arch=$2 dll=$3 what pe machine exports classes class init hooks mask
    case $arch in
        x86) pe='PE32' ;;
        x64) pe='PE32+' ;;
    esac
    what="$arch passthrough.dll"
    if [ "$rc" = 0 ]; then ok "$what: fwxinfo exits 0"
    else not_ok "$what: fwxinfo exits 0 (got $rc)"; show stdout "$tmp/$name.out"; show stderr "$tmp/$name.err"; fi

    [ "$(field "$name" file)" = "$dll" ] && ok "$what: file line names the DLL" \
        || not_ok "$what: file line names the DLL (got '$(field "$name" file)')"

    machine=$(field "$name" machine)
    [ "$machine" = "$arch ($pe DLL)" ] && ok "$what: machine is '$arch ($pe DLL)'" \
        || not_ok "$what: machine is '$arch ($pe DLL)' (got '$machine')"

    exports=" $(field "$name" exports) "
    local e missing=
    for e in $EXPORTS; do
        case $exports in *" $e "*) ;; *) missing="$missing $e" ;; esac
    done
    [ -z "$missing" ] && ok "$what: exports $EXPORTS" \
        || not_ok "$what: exports $EXPORTS (missing:$missing; got '$exports')"

    classes=$(field "$name" classes)
    case $classes in
        *"$CLSID"*"(found by probing DllGetClassObject)") ok "$what: probing finds $CLSID" ;;
        *) not_ok "$what: probing finds $CLSID (got '$classes')" ;;
    esac

    class=$(field "$name" class)
    [ "$class" = "$CLSID (IFWXFilter obtained)" ] && ok "$what: IFWXFilter obtained from $CLSID" \
        || not_ok "$what: IFWXFilter obtained from $CLSID (got '$class')"

    init=$(field "$name" FilterInit)
    [ "$init" = "0x00000000 (S_OK)" ] && ok "$what: FilterInit returns S_OK" \
        || not_ok "$what: FilterInit returns S_OK (got '$init')"

    # "0xc0000021 fwx_Connect_Tcp|fwx_AcceptedConnection|fwxSourceWSP|fwxSourceNAT"
    hooks=$(field "$name" 'hook events')
    mask=${hooks%% *}
    if [[ $mask =~ ^0x[0-9a-fA-F]{8}$ ]] && (( mask & 0x20 )) \
        && [[ "|${hooks#* }|" == *"|fwx_AcceptedConnection|"* ]]; then
        ok "$what: hook events include fwx_AcceptedConnection ($hooks)"
    else
        not_ok "$what: hook events include fwx_AcceptedConnection (got '$hooks')"
    fi
    if [[ $mask =~ ^0x[0-9a-fA-F]{8}$ ]] && (( mask & 0xC0000000 )); then
        ok "$what: hook events name an event source"
    else
        not_ok "$what: hook events name an event source (got '$hooks')"
    fi

    [[ $(field "$name" 'port ranges') =~ ^[0-9]+$ ]] && ok "$what: port ranges counted" \
        || not_ok "$what: port ranges counted (got '$(field "$name" 'port ranges')')"

    grep -qx 'FilterShutdown: done; DLL unloaded' "$tmp/$name.out" \
        && ok "$what: FilterShutdown and unload reported" \
        || not_ok "$what: FilterShutdown and unload reported"

    if command -v file > /dev/null; then
        local desc
        desc=$(file -b "$dll")
        case $pe:$desc in
            PE32:"PE32 "*|PE32+:"PE32+ "*) ok "$what: file(1) says $pe ($desc)" ;;
            *) not_ok "$what: file(1) says $pe (got '$desc')" ;;
        esac
    else
        skip "$what: file(1) says $pe: file is not installed"
    fi
}

# expect_bad NAME WHAT FILE REASON: exit 2 and exactly one stderr line that
# names FILE and contains REASON.
expect_bad() {
    local name=$1 what=$2 file=$3 reason=$4 lines line
    lines=$(grep -c '' "$tmp/$name.err")
    line=$(head -n 1 "$tmp/$name.err")
    if [ "$rc" = 2 ] && [ "$lines" = 1 ] && [[ $line == *"$file"* ]] && [[ $line == *"$reason"* ]]; then
        ok "$what: exit 2, one line: $line"
    else
        not_ok "$what: expected exit 2 and one stderr line naming '$file' with '$reason'" \
            "(got exit $rc, $lines line(s))"
        show stdout "$tmp/$name.out"
        show stderr "$tmp/$name.err"
    fi
}

# ---------------------------------------------------------------- prerequisites
if [ ! -x "$FWXINFO" ]; then
    not_ok "bin/fwxinfo is built ($FWXINFO missing)"
    echo "1..$n"
    exit 1
fi

# ---------------------------------------------------------------- good inputs
for arch in $FWX_FLAVOURS; do
    dll=$FWX_BUILDDIR/filters/$arch/passthrough.dll
    if [ ! -f "$dll" ]; then
        not_ok "$arch passthrough.dll is built ($dll missing)"
        continue
    fi
    run "good-$arch" "$dll"
    expect_good "good-$arch" "$arch" "$dll"
done

# ---------------------------------------------------------------- bad inputs
# A text file. README.md is the one the brief names; any non-PE file will do.
text=$FWX_SRCDIR/README.md
if [ ! -f "$text" ]; then
    note "$text is missing; using a text file made here instead"
    text=$tmp/README.md
    printf '# not a DLL\n' > "$text"
fi
run text "$text"
expect_bad text "text file (README.md)" "$text" "not a PE file"

missing=$tmp/no-such-dir/missing.dll
run missing "$missing"
expect_bad missing "missing path" "$missing" "No such file or directory"

printf 'int fwxinfo_test_function(void) { return 42; }\n' > "$tmp/t.c"
for arch in $FWX_FLAVOURS; do
    case $arch in
        x86) cc=i686-w64-mingw32-gcc ;;
        x64) cc=x86_64-w64-mingw32-gcc ;;
    esac
    if ! command -v "$cc" > /dev/null; then
        skip "$arch DLL without DllGetClassObject: $cc is not installed"
        continue
    fi
    plain=$tmp/t-$arch.dll
    if ! "$cc" -shared -o "$plain" "$tmp/t.c" 2> "$tmp/cc-$arch.err"; then
        not_ok "$arch DLL without DllGetClassObject: $cc -shared failed"
        show stderr "$tmp/cc-$arch.err"
        continue
    fi
    run "plain-$arch" "$plain"
    expect_bad "plain-$arch" "$arch DLL without DllGetClassObject" "$plain" \
        "does not export DllGetClassObject"
done

for arch in $FWX_FLAVOURS; do
    dll=$FWX_BUILDDIR/filters/$arch/passthrough.dll
    [ -f "$dll" ] || continue
    run "wrong-$arch" "$dll=$WRONG_CLSID"
    expect_bad "wrong-$arch" "$arch wrong CLSID" "$dll" "$WRONG_CLSID is not served"
    run "garbage-$arch" "$dll={not-a-clsid}"
    expect_bad "garbage-$arch" "$arch malformed CLSID" "$dll" "is not a CLSID"
done

x86_dll=$FWX_BUILDDIR/filters/x86/passthrough.dll
x64_dll=$FWX_BUILDDIR/filters/x64/passthrough.dll
case " $FWX_FLAVOURS " in
    *" x86 "*)
        if [ -f "$x86_dll" ] && [ -f "$x64_dll" ]; then
            run mixed "$x86_dll" "$x64_dll"
            expect_bad mixed "x86 and x64 DLLs together" "$x64_dll" "one architecture"
        fi ;;
    *) note "x86 flavour not configured: the mixed-architecture check does not apply" ;;
esac

echo "1..$n"
if [ "$failures" -gt 0 ]; then
    echo "# $failures of $n check(s) failed"
    exit 1
fi
exit 0
