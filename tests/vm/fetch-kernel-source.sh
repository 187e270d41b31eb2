#!/bin/sh
# Fetch a Debian linux-source tarball without installing it or touching the system's apt sources.
#
#   fetch-kernel-source.sh lts      linux-source-6.12 (bookworm-security carries the newest 6.12)
#   fetch-kernel-source.sh newest   the newest linux-source-7.* found in trixie-backports or sid,
#                                   resolved now (these suites move; nothing is pinned)
#
# Prints the path of the .tar.xz on the last line of stdout.  Everything lives under
# ${PASSTHRU_CACHE:-$HOME/.cache/passthru}/src/.  For `newest` a private apt state directory
# (its own sources, lists and cache) is used, so /etc/apt and /var/lib/apt/lists are unchanged.
set -eu

which=${1:-}
cache=${PASSTHRU_CACHE:-$HOME/.cache/passthru}
srcdir=$cache/src
mkdir -p "$srcdir"

log() { echo "fetch-kernel-source: $*" >&2; }

# The Debian mirror the system already uses (deb822 first, then one-line format).
system_mirror() {
    uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
          | awk '{print $2}' | grep -v security | head -n1 || true)
    if [ -z "$uri" ]; then
        uri=$(grep -hs '^deb ' /etc/apt/sources.list 2>/dev/null \
              | awk '$2 !~ /security/ {print $2}' | head -n1 || true)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

# download_and_extract APT_OPTS... -- PACKAGE: apt-get download into a work dir, unpack the .deb,
# move its /usr/src/*.tar.xz to $srcdir, print that path.
download_and_extract() {
    # Every step checks its status: callers use `download_and_extract ... || offline ...`,
    # where `set -e` does not apply.
    pkg=$1; shift
    work=$(mktemp -d "$srcdir/dl.XXXXXX") || return 1
    # apt-get download as root in a root-owned dir prints a harmless _apt sandbox warning.
    (cd "$work" && apt-get "$@" download "$pkg" >&2) || { rm -rf "$work"; return 1; }
    deb=$(ls "$work"/*.deb) || { rm -rf "$work"; return 1; }
    dpkg-deb -x "$deb" "$work/root" || { rm -rf "$work"; return 1; }
    tarball=$(ls "$work"/root/usr/src/linux-source-*.tar.xz) || { rm -rf "$work"; return 1; }
    debver=$(dpkg-deb -f "$deb" Version) || { rm -rf "$work"; return 1; }
    dest="$srcdir/$(basename "$tarball" .tar.xz)_$debver.tar.xz"
    mv "$tarball" "$dest" || { rm -rf "$work"; return 1; }
    rm -rf "$work"
    log "got $pkg $debver"
    echo "$dest"
}

# newest_cached PATTERN: the highest-versioned tarball already in the cache (offline fallback).
newest_cached() {
    ls "$srcdir"/$1 2>/dev/null | sort -V | tail -n1
}

# offline PATTERN WHAT: fall back to a cached tarball when apt cannot resolve WHAT.
offline() {
    cached=$(newest_cached "$1")
    if [ -z "$cached" ]; then log "cannot resolve $2 and nothing cached"; exit 1; fi
    log "cannot resolve $2 (offline?); using cached $(basename "$cached")"
    echo "$cached"
    exit 0
}

case "$which" in
lts)
    set --   # apt options for download_and_extract: none unless the private state below is used
    apt-get update >&2 || log "apt-get update failed; using the lists already present"
    ver=$(apt-cache policy linux-source-6.12 | awk '/Candidate:/ {print $2}')
    if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then
        # The system's sources lack bookworm-security: use a private apt state that has it.
        log "no linux-source-6.12 in the system's apt sources; trying bookworm-security privately"
        state=$cache/apt-lts
        mkdir -p "$state/sources" "$state/lists/partial" "$state/cache/archives/partial"
        cat > "$state/sources/lts.sources" <<SRC
Types: deb
URIs: ${PASSTHRU_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
        set -- -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$state/sources" \
            -o Dir::State::Lists="$state/lists" -o Dir::Cache="$state/cache" \
            -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts="$state/sources"
        apt-get "$@" update >&2 || log "apt-get update (bookworm-security) failed"
        ver=$(apt-cache "$@" policy linux-source-6.12 | awk '/Candidate:/ {print $2}')
        if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then
            log "no linux-source-6.12 candidate in bookworm-security either"
            offline 'linux-source-6.12_*.tar.xz' linux-source-6.12
        fi
    fi
    cached=$(ls "$srcdir"/linux-source-6.12_"$ver".tar.xz 2>/dev/null || true)
    if [ -n "$cached" ]; then log "cached linux-source-6.12 $ver"; echo "$cached"; exit 0; fi
    download_and_extract linux-source-6.12 "$@" || offline 'linux-source-6.12_*.tar.xz' linux-source-6.12
    ;;
newest)
    state=$cache/apt-newer
    mkdir -p "$state/sources" "$state/lists/partial" "$state/cache/archives/partial"
    cat > "$state/sources/newer.sources" <<SRC
Types: deb
URIs: $(system_mirror)
Suites: sid trixie-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    set -- -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$state/sources" \
        -o Dir::State::Lists="$state/lists" -o Dir::Cache="$state/cache" \
        -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts="$state/sources"
    apt-get "$@" update >&2 || log "apt-get update failed; using the lists already present"
    # Highest 7.x series first, then the candidate version of that package.
    pkg=$(apt-cache "$@" pkgnames linux-source-7. 2>/dev/null | sort -V | tail -n1)
    if [ -z "$pkg" ]; then offline 'linux-source-7.*.tar.xz' 'linux-source-7.*'; fi
    ver=$(apt-cache "$@" policy "$pkg" | awk '/Candidate:/ {print $2}')
    cached=$(ls "$srcdir/${pkg}_$ver.tar.xz" 2>/dev/null || true)
    if [ -n "$cached" ]; then log "cached $pkg $ver"; echo "$cached"; exit 0; fi
    download_and_extract "$pkg" "$@" || offline 'linux-source-7.*.tar.xz' "$pkg"
    ;;
*)
    echo "usage: $0 {lts|newest}" >&2
    exit 2
    ;;
esac
