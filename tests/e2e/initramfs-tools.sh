#!/bin/bash
# The early claim in a real initramfs-tools initramfs (Debian's, built by mkinitramfs in
# a bookworm chroot with vfio-bind installed by `make install`), booted with systemd as
# PID 1 in the real root (tests/e2e/run-systemd.sh --initrd):
#
#   1. claim boot: the initramfs force-loads e1000e (/etc/initramfs-tools/modules, as a
#      user's MODULES would), yet 0000:02:00.0, which the config names, is matched by
#      vfio-pci only; the state marks it early; the boot-time unit sets the node's
#      ownership; status says "claimed early" (tests/e2e/early-claim.sh);
#   2. control boot, same image, with vfio-bind=off: e1000e takes 0000:02:00.0, the unit
#      is skipped, nothing is recorded — the check of boot 1 can fail.
#
# Also checks the image itself: vfio-bind, the config and vfio-pci are in it, and
# scripts/init-top/ORDER runs 00-vfio-bind before udev.
#
#   tests/e2e/initramfs-tools.sh BINARY LOGDIR
#
# Cache: the chroot (the e2e root filesystem plus initramfs-tools) is kept in
# $VFIO_BIND_VM_CACHE/itools-<hash>; each run works on a hard-linked copy.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
[ $# -eq 2 ] || { echo "usage: $0 BINARY LOGDIR" >&2; exit 2; }
binary="$(realpath "$1")"
logdir="$(realpath -m "$2")"
mkdir -p "$logdir"
log() { echo "initramfs-tools: $*" >&2; }

eval "$("$here/setup.sh")"   # kernel=, kver=, image=
cache="${VFIO_BIND_VM_CACHE:-$HOME/.cache/vfio-bind-vm}"
rootfs="$(ls -d "$cache"/rootfs-* | head -n 1)"
for r in "$cache"/rootfs-*; do [ -f "$r/.complete" ] && [ "$r" -nt "$rootfs" ] && rootfs="$r"; done

# 1. The chroot: the e2e root filesystem + initramfs-tools (cached).
packages="initramfs-tools busybox"
chash="$( { basename "$rootfs"; echo "$packages"; } | sha256sum | cut -c1-12)"
chroot_dir="$cache/itools-$chash"
exec 9>"$cache/itools.lock"
flock 9
if [ ! -f "$chroot_dir/.complete" ]; then
    log "building the initramfs-tools chroot $chroot_dir (about 1 minute)"
    rm -rf "$chroot_dir" "$chroot_dir.tmp"
    cp -a "$rootfs" "$chroot_dir.tmp"
    rm -f "$chroot_dir.tmp/.complete"
    cp /etc/resolv.conf "$chroot_dir.tmp/etc/resolv.conf"
    mount -t proc proc "$chroot_dir.tmp/proc"
    ok=0
    (chroot "$chroot_dir.tmp" apt-get update -q &&
        DEBIAN_FRONTEND=noninteractive chroot "$chroot_dir.tmp" \
            apt-get install -y -q --no-install-recommends $packages) \
        >"$cache/itools-$chash.log" 2>&1 && ok=1
    umount "$chroot_dir.tmp/proc"
    [ $ok = 1 ] || { tail -n 20 "$cache/itools-$chash.log" >&2; log "apt-get failed"; exit 1; }
    rm -rf "$chroot_dir.tmp"/var/cache/apt/archives/*.deb
    touch "$chroot_dir.tmp/.complete"
    mv "$chroot_dir.tmp" "$chroot_dir"
fi
flock -u 9

# 2. This run's chroot: hard links (nothing below writes into an existing file), vfio-bind
# installed, the config, e1000e forced into the initramfs, the kernel's modules.
work="$(mktemp -d "${TMPDIR:-/tmp}/vfio-bind-itools.XXXXXX")"
trap 'umount "$work/root/proc" 2>/dev/null || true; rm -rf "$work"' EXIT
w="$work/root"
cp -al "$chroot_dir" "$w"
make -C "$repo" -s install DESTDIR="$w" PREFIX=/usr VFIO_BIND_BIN="$binary" \
    COMPDIR="$work/completions" PKG_CONFIG=false >/dev/null
rm -f "$w/etc/vfio-bind.toml"
cp "$here/early-claim.toml" "$w/etc/vfio-bind.toml"
rm -f "$w/etc/initramfs-tools/modules"
printf '# force the host driver into the initramfs, loaded at load_modules\ne1000e\n' \
    >"$w/etc/initramfs-tools/modules"
mkdir -p "$w/etc/initramfs-tools/conf.d"
echo "COMPRESS=gzip" >"$w/etc/initramfs-tools/conf.d/compress"
mkdir -p "$w/lib/modules"
rm -rf "${w:?}/lib/modules/$kver"
cp -al "$kernel/lib/modules/$kver" "$w/lib/modules/$kver"
# mkinitramfs reads the kernel's config (which compressions it can unpack).
mkdir -p "$w/boot"
cp "$kernel/boot/config-$kver" "$w/boot/"
mount -t proc proc "$w/proc"
log "mkinitramfs $kver (about 1 minute)"
t0=$(date +%s)
chroot "$w" mkinitramfs -o "/boot/initrd.img-$kver" "$kver" >"$logdir/mkinitramfs.log" 2>&1 ||
    { tail -n 30 "$logdir/mkinitramfs.log" >&2; log "mkinitramfs failed"; exit 1; }
umount "$w/proc"
log "mkinitramfs took $(($(date +%s) - t0)) s"
initrd="$work/initrd.img"
cp "$w/boot/initrd.img-$kver" "$initrd"

# 3. The image's content.
fail=0
check() { # DESCRIPTION CMD...
    local d="$1"; shift
    if "$@"; then echo "ok - $d"; else echo "FAIL - $d"; fail=1; fi
}
mkdir -p "$work/unpacked"
(cd "$work/unpacked" && zcat "$initrd" | cpio -id --quiet 2>/dev/null) ||
    { log "cannot unpack $initrd"; exit 1; }
u="$work/unpacked"
{
    check "image has /usr/sbin/vfio-bind" test -x "$u/usr/sbin/vfio-bind"
    check "image has /etc/vfio-bind.toml" cmp -s "$u/etc/vfio-bind.toml" "$here/early-claim.toml"
    check "image has vfio-pci.ko" sh -c "find '$u/lib/modules' '$u/usr/lib/modules' -name 'vfio-pci.ko*' 2>/dev/null | grep -q ."
    order="$u/scripts/init-top/ORDER"
    check "init-top ORDER runs 00-vfio-bind" grep -q '^/scripts/init-top/00-vfio-bind ' "$order"
    check "init-top ORDER runs 00-vfio-bind before udev" sh -c \
        "[ \$(grep -n '^/scripts/init-top/00-vfio-bind ' '$order' | cut -d: -f1) -lt \$(grep -n '^/scripts/init-top/udev ' '$order' | cut -d: -f1) ]"
} | tee "$logdir/image-checks.txt"
grep -q '^FAIL' "$logdir/image-checks.txt" && fail=1

# 4. The two boots, one after the other (one core each under TCG).
debug='ignore_loglevel log_buf_len=4M dyndbg="file drivers/base/dd.c +p"'
for mode in claim off; do
    append="$debug"
    [ $mode = off ] && append="$append vfio-bind=off"
    log "boot: $mode"
    if ! "$here/run-systemd.sh" --initrd "$initrd" --config "$here/early-claim.toml" \
        --append "$append" "$binary" "$here/early-claim.sh" "$logdir/$mode"; then
        log "boot $mode: checks failed (see $logdir/$mode)"
        fail=1
    fi
    grep -a '^ok - \|^FAIL - ' "$logdir/$mode/console.log" | tr -d '\r' || true
done
exit $fail
