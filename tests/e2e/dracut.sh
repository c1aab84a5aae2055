#!/bin/bash
# The early claim in real dracut images (dracut -N in a bookworm chroot with vfio-bind
# installed by `make install`, e1000e and bochs (early KMS) forced in with
# --force-drivers), booted with systemd as PID 1 in the real root (tests/e2e/run-systemd.sh
# --gpu --initrd; the config names the lone e1000e 0000:02:00.0 and the second std VGA
# 0000:06:00.0):
#
#   - the systemd flavour (systemd in the initramfs): the module installs the initrd unit
#     vfio-bind-initrd.service, enabled in sysinit.target;
#   - the shell flavour (--omit systemd): the module installs its cmdline hook 00, which
#     runs before dracut loads the rd.driver.pre= (force_drivers) modules;
#   - each is booted and must show both matched by vfio-pci only, although e1000e and
#     bochs-drm are loaded in the initramfs (tests/e2e/early-claim.sh); the systemd
#     flavour is booted again with vfio-bind=off as the control (the host drivers take
#     them).
#
# The module is included without any flag: its check() sees the config name devices.
#
#   tests/e2e/dracut.sh BINARY LOGDIR
#
# Cache: the chroot (the e2e root filesystem plus dracut, tests/e2e/chroot.sh) in
# $VFIO_BIND_VM_CACHE/dracut-<hash>.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/initramfs-lib.sh"
ir_init dracut "$@"
# 1. The chroot: the e2e root filesystem + dracut (cached). dracut needs systemd-sysv
# (the root filesystem has it) and /proc.
chroot_dir="$("$here/chroot.sh" dracut dracut busybox)"

# 2. This run's chroot (hard links), vfio-bind installed.
ir_workroot "$chroot_dir"
ir_install "$here/early-claim.toml"
mount -t proc proc "$w/proc"
for flavour in systemd shell; do
    omit=()
    [ $flavour = shell ] && omit=(--omit "systemd systemd-initrd systemd-networkd dracut-systemd")
    log "dracut -N ($flavour flavour) $kver (about 1 minute)"
    t0=$(date +%s)
    chroot "$w" dracut -f -N --gzip --force-drivers "e1000e bochs" ${omit[@]+"${omit[@]}"} \
        --kver "$kver" "/boot/initrd-$flavour.img" >"$logdir/dracut-$flavour.log" 2>&1 ||
        { tail -n 30 "$logdir/dracut-$flavour.log" >&2; log "dracut failed"; exit 1; }
    log "dracut took $(($(date +%s) - t0)) s"
    chroot "$w" lsinitrd "/boot/initrd-$flavour.img" >"$logdir/lsinitrd-$flavour.txt" 2>&1 || true
    cp "$w/boot/initrd-$flavour.img" "$work/initrd-$flavour.img"
done
umount "$w/proc"

# 3. The images' content.
{
    for flavour in systemd shell; do
        l="$logdir/lsinitrd-$flavour.txt"
        check "$flavour: image has usr/sbin/vfio-bind" grep -q ' usr/sbin/vfio-bind$' "$l"
        check "$flavour: image has etc/vfio-bind.toml" grep -q ' etc/vfio-bind.toml$' "$l"
        check "$flavour: image has vfio-pci.ko" grep -q 'vfio-pci.ko' "$l"
    done
    check "systemd: the initrd unit is in sysinit.target.wants" \
        grep -q 'sysinit.target.wants/vfio-bind-initrd.service' "$logdir/lsinitrd-systemd.txt"
    check "shell: the cmdline hook 00 is in" grep -q 'cmdline/00-vfio-bind-cmdline.sh' "$logdir/lsinitrd-shell.txt"
    check "shell: no initrd unit" sh -c "! grep -q 'vfio-bind-initrd.service' '$logdir/lsinitrd-shell.txt'"
} | tee "$logdir/image-checks.txt"
grep -q '^FAIL' "$logdir/image-checks.txt" && fail=1

# 4. The boots, one after the other.
debug='ignore_loglevel log_buf_len=4M dyndbg="file drivers/base/dd.c +p"'
for run in systemd:claim shell:claim systemd:off; do
    flavour="${run%%:*}" mode="${run#*:}"
    append="$debug"
    [ "$mode" = off ] && append="$append vfio-bind=off"
    log "boot: $flavour flavour, $mode"
    if ! "$here/run-systemd.sh" --gpu --initrd "$work/initrd-$flavour.img" --config "$here/early-claim.toml" \
        --append "$append" "$binary" "$here/early-claim.sh" "$logdir/$flavour-$mode"; then
        log "boot $flavour $mode: checks failed (see $logdir/$flavour-$mode)"
        fail=1
    fi
    grep -a '^ok - \|^FAIL - ' "$logdir/$flavour-$mode/test.log" 2>/dev/null | sed "s/^/[$flavour $mode] /" || true
done
exit $fail
