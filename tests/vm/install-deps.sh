#!/bin/sh
# Install what the QEMU rig needs on a Debian 12 (bookworm) host, as root.
#
#   qemu-system-x86 10.x from bookworm-backports (bookworm itself ships 7.2), without
#   recommends (no gui/spice/opengl modules); busybox-static (the guest userland; it replaces
#   the dynamic `busybox` package); the kernel build dependencies; `file` for the static-link
#   check.  bookworm-backports is added to the apt sources only when no source lists it yet,
#   using the same mirror URI as the system's own Debian source.
#
# Kernel sources are fetched separately by fetch-kernel-source.sh.
set -eu

if [ "$(id -u)" != 0 ]; then
    echo "install-deps.sh: must run as root" >&2
    exit 1
fi

if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    # Reuse the mirror the system already uses for bookworm (deb822 or one-line format).
    uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
          | awk '{print $2}' | grep -v security | head -n1 || true)
    if [ -z "$uri" ]; then
        uri=$(grep -hs '^deb ' /etc/apt/sources.list 2>/dev/null \
              | awk '$3 == "bookworm" {print $2}' | head -n1 || true)
    fi
    uri=${uri:-http://deb.debian.org/debian}
    echo "install-deps.sh: adding bookworm-backports ($uri) to /etc/apt/sources.list.d/"
    cat > /etc/apt/sources.list.d/bookworm-backports.sources <<SRC
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends -t bookworm-backports qemu-system-x86
apt-get install -y --no-install-recommends \
    busybox-static cpio kmod gcc make bc flex bison libelf-dev libssl-dev \
    xz-utils zstd gzip file ca-certificates

qemu-system-x86_64 --version | head -n1
busybox | head -n1
