#!/bin/bash
# The early claim in a real initramfs-tools initramfs (Debian's, built by mkinitramfs in
# a bookworm chroot with vfio-bind installed by `make install`), booted with systemd as
# PID 1 in the real root (tests/e2e/run-systemd.sh --gpu --initrd). The initramfs loads
# e1000e and bochs-drm itself (/etc/initramfs-tools/modules, as early-KMS setups do);
# the config (tests/e2e/early-claim.toml) names the lone e1000e 0000:02:00.0 and the
# second std VGA 0000:06:00.0. Four boots (checks in tests/e2e/early-claim.sh):
#
#   claim   vfio-pci, never a host driver, matched both; the unit owned the nodes;
#           status says "claimed early"; a reload keeps it;
#   off     the same image with vfio-bind=off: the host drivers took them (control);
#   plain   an image built before vfio-bind was installed: the host drivers matched
#           them in the initramfs (control: the claim boot's checks can fail);
#   edited  the real root's config edited after the image was built: the unit
#           converges (releases, binds), doctor says to run update-initramfs.
#
# Also checks the image itself: vfio-bind, the config and vfio-pci are in it, and
# scripts/init-top/ORDER runs 00-vfio-bind before udev.
#
#   tests/e2e/initramfs-tools.sh BINARY LOGDIR
#
# Cache: the chroot (the e2e root filesystem plus initramfs-tools, tests/e2e/chroot.sh)
# is kept in $VFIO_BIND_VM_CACHE/itools-<hash>; each run works on a hard-linked copy.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/initramfs-lib.sh"
ir_init initramfs-tools "$@"
# 1. The chroot: the e2e root filesystem + initramfs-tools (cached).
chroot_dir="$("$here/chroot.sh" itools initramfs-tools busybox)"

# 2. This run's chroot: hard links (nothing below writes into an existing file), e1000e and
# bochs forced into the initramfs, the kernel's modules; one image built before vfio-bind
# is installed, one after.
ir_workroot "$chroot_dir"
rm -f "$w/etc/initramfs-tools/modules"
printf '# host drivers in the initramfs, loaded at load_modules (early KMS: bochs)\ne1000e\nbochs\n' \
    >"$w/etc/initramfs-tools/modules"
mkdir -p "$w/etc/initramfs-tools/conf.d"
echo "COMPRESS=gzip" >"$w/etc/initramfs-tools/conf.d/compress"
mount -t proc proc "$w/proc"
build() { # NAME: /boot/initrd.img-$kver -> $work/initrd-NAME.img
    log "mkinitramfs $kver ($1; about 30 s)"
    local t0; t0=$(date +%s)
    chroot "$w" mkinitramfs -o "/boot/initrd.img-$kver" "$kver" >"$logdir/mkinitramfs-$1.log" 2>&1 ||
        { tail -n 30 "$logdir/mkinitramfs-$1.log" >&2; log "mkinitramfs failed"; exit 1; }
    log "mkinitramfs took $(($(date +%s) - t0)) s"
    mv "$w/boot/initrd.img-$kver" "$work/initrd-$1.img"
}
build plain
ir_install "$here/early-claim.toml"
build vfio
umount "$w/proc"
initrd="$work/initrd-vfio.img"

# 3. The image's content.
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

check "the plain image has no vfio-bind" sh -c "zcat '$work/initrd-plain.img' | cpio -t --quiet 2>/dev/null | grep -c vfio-bind | grep -qx 0" |
    tee -a "$logdir/image-checks.txt"
grep -q '^FAIL' "$logdir/image-checks.txt" && fail=1

# 4. The boots, one after the other (one core each under TCG).
debug='ignore_loglevel log_buf_len=4M dyndbg="file drivers/base/dd.c +p"'
for mode in claim off plain edited; do
    append="$debug" img="$initrd" config="$here/early-claim.toml" files=()
    case $mode in
    off) append="$append vfio-bind=off" ;;
    plain) append="$append e2e.mode=plain" img="$work/initrd-plain.img" ;;
    edited)
        append="$append e2e.mode=edited" config="$here/early-claim-edited.toml"
        # What doctor looks at in the real root: the generator, vfio-bind's hook, and
        # the image of the running kernel.
        files=(--file "$w/usr/sbin/mkinitramfs:/usr/sbin/mkinitramfs"
            --file "$w/usr/share/initramfs-tools/hooks/vfio-bind:/usr/share/initramfs-tools/hooks/vfio-bind"
            --file "$initrd:/boot/initrd.img-$kver")
        ;;
    esac
    log "boot: $mode"
    if ! "$here/run-systemd.sh" --gpu --initrd "$img" --config "$config" ${files[@]+"${files[@]}"} \
        --append "$append" "$binary" "$here/early-claim.sh" "$logdir/$mode"; then
        log "boot $mode: checks failed (see $logdir/$mode)"
        fail=1
    fi
    grep -a '^ok - \|^FAIL - ' "$logdir/$mode/test.log" 2>/dev/null | sed "s/^/[$mode] /" || true
done
exit $fail
