#!/bin/bash
# A cached chroot to build initramfs images in: the e2e root filesystem (Debian bookworm,
# made by tests/e2e/setup.sh, which this runs first) plus Debian packages installed into
# it with apt-get, made once and kept as $VFIO_BIND_VM_CACHE/NAME-<hash> (the hash covers
# the root filesystem and the package list). Prints the chroot's directory; without
# packages, the root filesystem itself. Callers work on a hard-linked copy (cp -al) and
# never write into its files.
#
#   tests/e2e/chroot.sh NAME [PACKAGE...]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ $# -ge 1 ] || { echo "usage: $0 NAME [PACKAGE...]" >&2; exit 2; }
name="$1"
shift
log() { echo "chroot: $*" >&2; }

"$here/setup.sh" >/dev/null
cache="${VFIO_BIND_VM_CACHE:-$HOME/.cache/vfio-bind-vm}"
rootfs=""
for r in "$cache"/rootfs-*; do
    [ -f "$r/.complete" ] && { [ -z "$rootfs" ] || [ "$r" -nt "$rootfs" ]; } && rootfs="$r"
done
[ -n "$rootfs" ] || { log "no e2e root filesystem in $cache"; exit 1; }
if [ $# -eq 0 ]; then
    echo "$rootfs"
    exit 0
fi

packages="$*"
chash="$( { basename "$rootfs"; echo "$packages"; } | sha256sum | cut -c1-12)"
dir="$cache/$name-$chash"
exec 9>"$cache/$name.lock"
flock 9
if [ ! -f "$dir/.complete" ]; then
    log "building the $name chroot $dir ($packages; about 1 minute)"
    rm -rf "$dir" "$dir.tmp"
    cp -a "$rootfs" "$dir.tmp"
    rm -f "$dir.tmp/.complete"
    cp /etc/resolv.conf "$dir.tmp/etc/resolv.conf"
    # Package scripts start no services in the chroot (libvirt's, say): invoke-rc.d asks
    # policy-rc.d, and 101 means "not allowed". Removed again afterwards.
    printf '#!/bin/sh\nexit 101\n' >"$dir.tmp/usr/sbin/policy-rc.d"
    chmod 755 "$dir.tmp/usr/sbin/policy-rc.d"
    mount -t proc proc "$dir.tmp/proc"
    ok=0
    (chroot "$dir.tmp" apt-get update -q &&
        DEBIAN_FRONTEND=noninteractive chroot "$dir.tmp" \
            apt-get install -y -q --no-install-recommends "$@") \
        >"$cache/$name-$chash.log" 2>&1 && ok=1
    umount "$dir.tmp/proc"
    rm -f "$dir.tmp/usr/sbin/policy-rc.d"
    [ $ok = 1 ] || { tail -n 20 "$cache/$name-$chash.log" >&2; log "apt-get failed"; exit 1; }
    rm -rf "$dir.tmp"/var/cache/apt/archives/*.deb
    touch "$dir.tmp/.complete"
    mv "$dir.tmp" "$dir"
fi
echo "$dir"
