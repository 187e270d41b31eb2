#!/bin/sh
# Pack the rig's initramfs: static busybox, /init, /rig/plan, /bin/rig_sanity and the given
# static test programs in /bin.  Fails if a program is not statically linked (the guest has no
# libc).
#
#   mkinitramfs.sh OUT.cpio.gz PLAN [PROGRAM...]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 2 ] || { echo "usage: $0 OUT.cpio.gz PLAN [PROGRAM...]" >&2; exit 2; }
out=$1 plan=$2; shift 2
busybox=${BUSYBOX:-/bin/busybox}

is_static() { file -L "$1" | grep -Eq 'statically linked|static-pie linked'; }

is_static "$busybox" || { echo "mkinitramfs: $busybox is not static (install busybox-static)" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/rig" "$root/dev" "$root/proc" "$root/sys" "$root/tmp"
cp "$busybox" "$root/bin/busybox"
cp "$here/init" "$root/init"
cp "$here/rig_sanity" "$root/bin/rig_sanity"
cp "$plan" "$root/rig/plan"
for p in "$@"; do
    if ! is_static "$p"; then
        echo "mkinitramfs: $p is not statically linked: $(file -L "$p")" >&2
        exit 1
    fi
    cp "$p" "$root/bin/"
    # Debug info only inflates the image (and the guest's RAM); symbols stay for backtraces.
    if command -v strip >/dev/null; then strip --strip-debug "$root/bin/$(basename "$p")"; fi
done
chmod 755 "$root/init" "$root/bin/"*
out_abs=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
(cd "$root" && find . | sort | cpio -o -H newc --quiet | gzip -1 > "$out_abs")
