#!/bin/bash
# Installs Debian i386 packages next to their amd64 twins when the mirror's
# i386 lists lag its amd64 lists (README.md, "Two commands": ./fwx deps runs it).
#
# A Multi-Arch: same library must have one version on both architectures.
# When the i386 list offers an older (or newer) version than the installed
# amd64 one, apt refuses with "... but it is not going to be installed".
# We resolve that by asking for such a library on both architectures at the
# i386 candidate version, learning the names from the simulated install's
# own complaints, until the simulation succeeds.
#
# usage: apt-i386-skew.sh PKG:i386 [PKG ...]     (root; apt lists updated)
set -u

log() { printf 'fwx deps: %s\n' "$*" >&2; }

candidate() {   # candidate version of $1 (name:arch), empty if none
    apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2; exit}'
}

has_version() { # does name:arch $1 offer version $2?
    apt-cache madison "$1" 2>/dev/null | awk -F'|' '{gsub(/ /,"",$2); print $2}' |
        grep -qxF -- "$2"
}

want=("$@")
declare -A pinned=()
extra=()

for round in $(seq 1 40); do
    sim=$(DEBIAN_FRONTEND=noninteractive apt-get install -s -y --no-install-recommends \
          --allow-downgrades "${want[@]}" "${extra[@]}" 2>&1)
    if [ $? -eq 0 ]; then
        [ ${#extra[@]} -gt 0 ] && log "version skew resolved with: ${extra[*]}"
        [ -n "${FWX_DRYRUN:-}" ] && { echo "would install: ${want[*]} ${extra[*]}"; exit 0; }
        exec env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
             --no-install-recommends --allow-downgrades "${want[@]}" "${extra[@]}"
    fi
    # Names apt could not place: "Depends: libfoo:i386 (>= 1) but it is not going
    # to be installed", and twins held at another version: "Breaks: libfoo (!= V)".
    names=$(printf '%s\n' "$sim" |
        grep -oE '(Depends|PreDepends|Breaks): [a-z0-9.+-]+:i386( \([^)]*\))? but (it is not going to be installed|it is not installable|[^ ]+ is to be installed)' |
        awk '{print $2}' | sed 's/:.*//' | sort -u)
    progress=0; log "round $round: pinned so far: ${extra[*]:-none}"
    for n in $names; do
        [ -n "${pinned[$n]:-}" ] && continue
        pinned[$n]=1
        vi=$(candidate "$n:i386")
        [ -z "$vi" ] && continue
        if dpkg-query -W -f='${Status}' "$n:amd64" 2>/dev/null | grep -q 'install ok installed' ||
           has_version "$n:amd64" "$vi" && [ "$(dpkg-query -W -f='${Multi-Arch}' "$n:amd64" 2>/dev/null)" = same ]; then
            if has_version "$n:amd64" "$vi"; then
                extra+=("$n:amd64=$vi" "$n:i386=$vi")
            else
                extra+=("$n:i386")
            fi
        else
            extra+=("$n:i386")
        fi
        progress=1
    done
    if [ $progress -eq 0 ]; then
        log "cannot resolve the i386 package set; apt said:"
        printf '%s\n' "$sim" | tail -25 >&2
        exit 1
    fi
done
log "gave up after 40 rounds of version-skew resolution"
exit 1
