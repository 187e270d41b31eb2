#!/bin/sh
# Build the rig's guest kernel (bzImage + `make headers`) from a linux source tarball or tree.
#
#   build-kernel.sh SRC_TARBALL_OR_DIR
#       allnoconfig + config/base.config + config/vfio.config, out of tree, cached in
#       ${PASSTHRU_CACHE:-$HOME/.cache/passthru}/kernels/<version>-<fragment hash>/
#       (bzImage, config, include/, build.log).  A cached kernel is not rebuilt.
#   build-kernel.sh --in-tree DIR
#       merge the fragments into DIR's own .config (allnoconfig when it has none), then build in
#       DIR (bzImage at DIR/arch/x86/boot/bzImage, headers at DIR/usr/include).
#   build-kernel.sh --check CONFIG VERSION
#       only check CONFIG against config/required.tsv for kernel VERSION (e.g. 6.12.117).
#
# After `make olddefconfig` every option of config/required.tsv that applies to the kernel
# version is checked by name; a missing one fails the build, naming it and why it matters.
# The last line of stdout is the directory holding bzImage (or the check result).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
cfgdir=$here/config
cache=${PASSTHRU_CACHE:-$HOME/.cache/passthru}
jobs=${JOBS:-$(nproc)}

log() { echo "build-kernel: $*" >&2; }
. "$(dirname "$0")/progress.sh"
die() { echo "build-kernel: ERROR: $*" >&2; exit 1; }

# version_applies KVER RANGE: is kernel KVER (X.Y[.Z]) inside RANGE (all, <X.Y, >=X.Y)?
version_applies() {
    kver=$1 range=$2
    case "$range" in
    all) return 0 ;;
    '>='*) bound=${range#>=}
           [ "$(printf '%s\n%s\n' "$bound" "$kver" | sort -V | head -n1)" = "$bound" ] ;;
    '<'*)  bound=${range#<}
           [ "$(printf '%s\n%s\n' "$bound" "$kver" | sort -V | head -n1)" = "$kver" ] \
               && [ "$kver" != "$bound" ] ;;
    *) die "bad kernels range '$range' in required.tsv" ;;
    esac
}

# check_config CONFIG KVER: fail loudly, naming every required option that is wrong.
check_config() {
    config=$1 kver=$2 bad=0
    while read -r opt val range why; do
        case "$opt" in ''|'#'*) continue ;; esac
        version_applies "$kver" "$range" || continue
        case "$val" in
        y) if ! grep -q "^$opt=y\$" "$config"; then
               echo "build-kernel: MISSING $opt=y (kernel $kver): $why" >&2; bad=1
           fi ;;
        n) if grep -q "^$opt=[ym]\$" "$config"; then
               echo "build-kernel: FORBIDDEN $opt is set (kernel $kver): $why" >&2; bad=1
           fi ;;
        *) die "bad value '$val' for $opt in required.tsv" ;;
        esac
    done < "$cfgdir/required.tsv"
    [ "$bad" = 0 ] || die "required kernel options missing in $config (see above)"
    log "all required options present in $config (kernel $kver)"
}

fragment() { cat "$cfgdir/base.config" "$cfgdir/vfio.config"; }

if [ "${1:-}" = "--check" ]; then
    [ $# = 3 ] || die "usage: $0 --check CONFIG VERSION"
    check_config "$2" "$3"
    echo ok
    exit 0
fi

if [ "${1:-}" = "--in-tree" ]; then
    [ $# = 2 ] || die "usage: $0 --in-tree DIR"
    src=$(cd "$2" && pwd)
    [ -f "$src/Makefile" ] || die "$src is not a kernel tree"
    kver=$(make -s -C "$src" kernelversion)
    fragment > "$src/.passthru-fragment.config"
    if [ -f "$src/.config" ]; then
        # Keep the tree's own configuration; the fragment's values win where they differ.
        "$src/scripts/kconfig/merge_config.sh" -m -O "$src" "$src/.config" \
            "$src/.passthru-fragment.config" >&2
        make -C "$src" olddefconfig >&2
    else
        # No configuration yet: the same minimal guest as the cached builds.
        make -C "$src" KCONFIG_ALLCONFIG="$src/.passthru-fragment.config" allnoconfig >&2
        make -C "$src" olddefconfig >&2
    fi
    check_config "$src/.config" "$kver"
    make -C "$src" -j"$jobs" bzImage >&2
    make -C "$src" headers >&2
    echo "$src/arch/x86/boot"
    exit 0
fi

[ $# = 1 ] || die "usage: $0 SRC_TARBALL_OR_DIR | --in-tree DIR | --check CONFIG VERSION"
input=$1

# Unpack a tarball once, into the cache.
if [ -f "$input" ]; then
    name=$(basename "$input"); name=${name%.tar.xz}; name=${name%.tar.gz}; name=${name%.tar}
    unpacked=$cache/src/$name
    if [ ! -f "$unpacked/.unpacked" ]; then
        log "unpacking $input"
        rm -rf "$unpacked"; mkdir -p "$unpacked"
        tar -C "$unpacked" -xf "$input"
        touch "$unpacked/.unpacked"
    fi
    src=$(dirname "$(ls "$unpacked"/*/Makefile | head -n1)")
elif [ -d "$input" ]; then
    src=$(cd "$input" && pwd)
else
    die "no such tarball or directory: $input"
fi
[ -f "$src/Makefile" ] || die "$src is not a kernel tree"

kver=$(make -s -C "$src" kernelversion)
hash=$(fragment | sha256sum | cut -c1-12)
out=$cache/kernels/$kver-$hash
if [ -f "$out/bzImage" ] && [ -f "$out/config" ] && [ -f "$out/.done" ]; then
    check_config "$out/config" "$kver"
    log "cached kernel $kver ($hash): $out"
    echo "$out"
    exit 0
fi

log "building kernel $kver with fragment $hash in $out (logs: $out/build.log)"
start=$(date +%s)
mkdir -p "$out/obj"
fragment > "$out/fragment.config"
{
    make -C "$src" O="$out/obj" KCONFIG_ALLCONFIG="$out/fragment.config" allnoconfig
    make -C "$src" O="$out/obj" olddefconfig
} > "$out/build.log" 2>&1 || { tail -n 30 "$out/build.log" >&2; die "config step failed"; }
check_config "$out/obj/.config" "$kver"
if ! with_progress "building $kver" "$out/obj" "$out/build.log" sh -c \
        'make -C "$1" O="$2" -j"$3" bzImage && make -C "$1" O="$2" headers' \
        sh "$src" "$out/obj" "$jobs"; then
    tail -n 40 "$out/build.log" >&2
    die "kernel build failed (full log: $out/build.log)"
fi
cp "$out/obj/arch/x86/boot/bzImage" "$out/bzImage"
cp "$out/obj/.config" "$out/config"
rm -rf "$out/include"
cp -r "$out/obj/usr/include" "$out/include"
echo "$kver" > "$out/version"
touch "$out/.done"
log "built kernel $kver in $(( $(date +%s) - start )) s: $out"
echo "$out"
