#!/bin/bash
# Prepare everything the systemd-as-PID-1 guest tests (tests/e2e/run-systemd.sh) need on a
# Debian 12 machine. Idempotent and safe to run before every test run; the slow steps
# (~1-2 min) happen once and are cached.
#
#   - Debian packages: qemu-system-x86, debootstrap, e2fsprogs (mkfs.ext4 -d, debugfs,
#     e2fsck), busybox-static and cpio (the tiny initramfs), kmod (depmod).
#   - The guest kernel: the one tests/vm/setup.sh downloads and caches (Debian's 6.1).
#   - A Debian bookworm root filesystem made by debootstrap (minbase + systemd, udev, ...),
#     customised for the tests: cached as a directory, rootfs-<hash>.
#   - A raw ext4 disk image of that root filesystem plus the kernel's modules
#     (depmod'ed), cached as image-<hash>.img. Each test run copies it (sparse) and
#     writes its own files into the copy, so runs never contaminate each other or the
#     cache.
#
# The hashes cover the package list, the suite and the customisation code below, so
# editing any of them builds a new rootfs/image (old ones are left behind; delete them
# by hand: rm -rf "$cache"/rootfs-* "$cache"/image-*).
#
# Cache: $VFIO_BIND_VM_CACHE (default ~/.cache/vfio-bind-vm), shared with tests/vm.
#
#   tests/e2e/setup.sh [--rootfs DIR]
#
# --rootfs DIR: the disk image is made of DIR (a cached chroot from tests/e2e/chroot.sh,
# whose name carries its own hash, e.g. libvirt-<hash>) instead of the plain root
# filesystem; it is cached as image-<hash>.img too, the hash covering DIR's name.
# Prints three lines on stdout:
#   kernel=<dir of the unpacked kernel package>   (boot/vmlinuz-*, lib/modules/<ver>)
#   kver=<kernel version>
#   image=<cached root disk image; never write to it, copy it>
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
image_root=""
if [ "${1:-}" = --rootfs ]; then
    [ $# -eq 2 ] && [ -d "$2" ] || { echo "e2e-setup: --rootfs needs a directory" >&2; exit 2; }
    image_root="$(realpath "$2")"
fi
cache="${VFIO_BIND_VM_CACHE:-$HOME/.cache/vfio-bind-vm}"
mkdir -p "$cache"

log() { echo "e2e-setup: $*" >&2; }

# 1. Debian packages.
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v mkfs.ext4 >/dev/null && command -v debugfs >/dev/null || need+=(e2fsprogs)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v depmod >/dev/null || need+=(kmod)
command -v cpio >/dev/null || need+=(cpio)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    if [ "$(id -u)" != 0 ]; then
        log "need root to install ${need[*]}"
        exit 1
    fi
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2
fi
if [ "$(id -u)" != 0 ]; then
    # debootstrap, chroot and root-owned files in the image need root.
    log "must run as root"
    exit 1
fi

# 2. The kernel (shared with tests/vm).
kdir="$("$here/../vm/setup.sh")" || { log "tests/vm/setup.sh failed"; exit 1; }
kver="$(ls "$kdir/lib/modules")"
[ -f "$kdir/lib/modules/$kver/modules.dep" ] || depmod -b "$kdir" "$kver"

# 3. The root filesystem.
suite=bookworm
# systemd/systemd-sysv/udev/kmod: PID 1, coldplug, module loading. dbus: systemctl and
# logind without noise. iproute2/procps/pciutils/e2fsprogs: what test scripts use.
packages="systemd,systemd-sysv,udev,kmod,dbus,iproute2,procps,pciutils,e2fsprogs"

# Everything done to the fresh debootstrap tree. Its text is part of the cache key.
customize_rootfs() {
    local d="$1"
    echo e2e-guest >"$d/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 e2e-guest\n' >"$d/etc/hosts"
    # Root is mounted read-write by the initramfs; nothing else to mount.
    printf '# root (/dev/sda, AHCI at 0000:00:1f.2) is mounted rw by the initramfs\n' >"$d/etc/fstab"
    # Root without a password on the serial getty, for interactive debugging.
    chroot "$d" passwd -d root >/dev/null
    # Test users and groups, like tests/vm (alice = 1000; kvm comes from systemd).
    chroot "$d" groupadd -g 994 vfio
    chroot "$d" useradd -m -u 1000 -U -s /bin/bash alice
    # A persistent journal: survives in the disk image for post-mortems.
    mkdir -p "$d/var/log/journal"
    # Every boot is a normal (not first) boot with a fixed machine id.
    echo 0123456789abcdef0123456789abcdef >"$d/etc/machine-id"
    ln -sf /lib/systemd/system/multi-user.target "$d/etc/systemd/system/default.target"
    # Nothing waits for a network in this guest; apt's timers are noise.
    rm -f "$d"/etc/systemd/system/timers.target.wants/apt-daily*.timer
    # Where test scripts put their results (read back from the image after poweroff).
    mkdir -p "$d/var/lib/vfio-bind-e2e/results"
    # debootstrap's apt caches are of no use in the guest.
    rm -rf "$d"/var/cache/apt/*.bin "$d"/var/cache/apt/archives/*.deb "$d"/var/lib/apt/lists/*_Packages
}

mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
[ -n "$mirror" ] || mirror="http://deb.debian.org/debian"

rhash="$( { echo "$suite"; echo "$packages"; declare -f customize_rootfs; } | sha256sum | cut -c1-12)"
rootfs="$cache/rootfs-$rhash"

exec 9>"$cache/e2e.lock"
flock 9

if [ ! -f "$rootfs/.complete" ]; then
    log "debootstrap $suite ($packages) from $mirror into $rootfs (about 1 minute)"
    rm -rf "$rootfs" "$rootfs.tmp"
    debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs.tmp" "$mirror" \
        >"$cache/debootstrap-$rhash.log" 2>&1 ||
        { log "debootstrap failed; see $cache/debootstrap-$rhash.log"; tail -n 20 "$cache/debootstrap-$rhash.log" >&2; exit 1; }
    customize_rootfs "$rootfs.tmp"
    touch "$rootfs.tmp/.complete"
    mv "$rootfs.tmp" "$rootfs"
fi

# 4. The disk image: rootfs + kernel modules. Large module trees nothing in the guest
# uses (sound, media, wireless, infiniband, big GPU drivers) are left out to keep the
# per-run copy small; everything else (PCI, USB, net, virtio, block, vfio) is there, so
# udev coldplug loads the same drivers a full install would.
prune="sound drivers/media drivers/net/wireless drivers/infiniband drivers/staging
drivers/gpu/drm/amd drivers/gpu/drm/nouveau drivers/gpu/drm/i915 drivers/gpu/drm/radeon"
ihash="$( { echo "$rhash"; echo "$kver"; echo "$prune"; } | sha256sum | cut -c1-12)"
if [ -n "$image_root" ]; then
    [ -f "$image_root/.complete" ] || { log "$image_root is not a complete chroot"; exit 1; }
    rootfs="$image_root"
    ihash="$( { basename "$image_root"; echo "$kver"; echo "$prune"; } | sha256sum | cut -c1-12)"
fi
image="$cache/image-$ihash.img"

if [ ! -f "$image" ]; then
    log "building root disk image $image"
    stage="$cache/stage-$ihash"
    rm -rf "$stage" "$image.tmp"
    # Hard links: mkfs.ext4 -d only reads the tree; nothing below writes through a link
    # (depmod and the .complete removal replace names, they do not modify inodes).
    cp -al "$rootfs" "$stage"
    rm -f "$stage/.complete"
    # A chroot's apt lists and the host's resolv.conf (chroot.sh) are no use in the guest.
    [ -z "$image_root" ] || rm -rf "$stage/etc/resolv.conf" "$stage"/var/lib/apt/lists/*
    mods="$stage/lib/modules/$kver"
    mkdir -p "$stage/lib/modules"
    cp -al "$kdir/lib/modules/$kver" "$mods"
    for p in $prune; do rm -rf "${mods:?}/kernel/$p"; done
    rm -f "$mods"/modules.*.bin "$mods"/modules.dep "$mods"/modules.alias \
        "$mods"/modules.symbols "$mods"/modules.devname "$mods"/modules.softdep
    depmod -b "$stage" "$kver"
    # The kernel image too, for completeness (not used to boot: QEMU's -kernel is).
    mkdir -p "$stage/boot"
    cp -l "$kdir"/boot/* "$stage/boot/" 2>/dev/null || true
    used_mb="$(du -sm "$stage" | cut -f1)"
    size_mb=$((used_mb + used_mb / 4 + 256))
    truncate -s "${size_mb}M" "$image.tmp"
    mkfs.ext4 -q -F -L e2e-root -d "$stage" "$image.tmp"
    rm -rf "$stage"
    mv "$image.tmp" "$image"
fi

echo "kernel=$kdir"
echo "kver=$kver"
echo "image=$image"
