#!/bin/bash
# mkinitcpio integration (Arch), which Debian does not package: the install hooks
# dist/initcpio/install/{vfio-bind,sd-vfio-bind} are run against a stand-in of
# mkinitcpio's build API (tests/initcpio/functions.sh) in a bookworm chroot with
# vfio-bind `make install`ed, and the image tree they build is checked; then the runtime
# hook runs in a QEMU guest as mkinitcpio's busybox init runs it (early hooks, then
# MODULES=(e1000e)), before any host driver: the configured e1000e must end on vfio-pci.
# A control boot with vfio-bind=off shows e1000e taking it.
#
#   tests/initcpio/test.sh BINARY LOGDIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
. "$repo/tests/e2e/initramfs-lib.sh"
ir_init initcpio "$@"
# The e2e root filesystem itself, vfio-bind installed into a hard-linked copy.
ir_workroot "$("$repo/tests/e2e/chroot.sh" base)"
ir_install "$here/vfio-bind.toml"
mkdir -p "$w/standin"
cp "$here/functions.sh" "$w/standin/functions.sh"

# 1. Build: the busybox flavour (MODULES=(e1000e), HOOKS=(... vfio-bind ...)), the
# systemd flavour, and a config that names no device.
cat >"$w/standin/build.sh" <<'BUILD'
set -u
. /standin/functions.sh
KERNELVERSION="$1"
build_one() { # BUILDROOT HOOK
    BUILDROOT="$1" MODULES="e1000e"
    mkdir -p "$BUILDROOT"
    run_build_hook "$2"
    write_config
    finish_modules
    echo "errors=$_errors warnings=$_warnings" >"$BUILDROOT.result"
}
build_one /tmp/br-busybox vfio-bind
_runhooks=() _errors=0 _warnings=0
build_one /tmp/br-systemd sd-vfio-bind
printf '# nothing configured\n' >/etc/vfio-bind.toml
_runhooks=() _errors=0 _warnings=0
build_one /tmp/br-empty vfio-bind 2>/tmp/br-empty.stderr
BUILD
chroot "$w" bash /standin/build.sh "$kver" >"$logdir/build.log" 2>&1 ||
    { cat "$logdir/build.log" >&2; log "the stand-in build failed"; exit 1; }

b="$w/tmp/br-busybox" s="$w/tmp/br-systemd" e="$w/tmp/br-empty"
{
    check "busybox build: no error, no warning" grep -qx 'errors=0 warnings=0' "$b.result"
    check "image has /usr/sbin/vfio-bind" cmp -s "$b/usr/sbin/vfio-bind" "$binary"
    check "image has its libraries (libc)" sh -c "ls '$b'/lib/x86_64-linux-gnu/libc.so.6 '$b'/usr/lib/x86_64-linux-gnu/libc.so.6 2>/dev/null | grep -q ."
    check "image has /etc/vfio-bind.toml" test -f "$b/etc/vfio-bind.toml"
    check "image has the runtime hook, executable" test -x "$b/hooks/vfio-bind"
    check "the hook is an early hook" grep -q '^EARLYHOOKS=" vfio-bind"$' "$b/config"
    check "image has vfio-pci.ko and its modules.dep" sh -c "find '$b/usr/lib/modules' -name 'vfio-pci.ko*' | grep -q . && grep -q 'vfio-pci.ko' '$b/usr/lib/modules/$kver/modules.dep'"
    check "systemd build: no error, no warning" grep -qx 'errors=0 warnings=0' "$s.result"
    check "systemd image has the initrd unit" test -f "$s/usr/lib/systemd/system/vfio-bind-initrd.service"
    check "systemd image enables it in sysinit.target" test -L "$s/usr/lib/systemd/system/sysinit.target.wants/vfio-bind-initrd.service"
    check "systemd image has no runtime hook" test ! -e "$s/hooks/vfio-bind"
    check "nothing configured: a warning" grep -q 'WARNING: vfio-bind: the config names no device' "$w/tmp/br-empty.stderr"
    check "nothing configured: nothing of vfio-bind in the image" test ! -e "$e/usr/sbin/vfio-bind" -a ! -e "$e/hooks/vfio-bind"
} | tee "$logdir/build-checks.txt"
grep -q '^FAIL' "$logdir/build-checks.txt" && fail=1

# 2. Run: the image's hooks, config and vfio-bind over the test guest's root (its kernel
# modules stay the guest's own), mkinitcpio's early init before the host drivers.
overlay="$work/overlay"
mkdir -p "$overlay"
cp -a "$b/hooks" "$b/config" "$overlay/"
mkdir -p "$overlay/usr/sbin" "$overlay/etc"
cp -a "$b/usr/sbin/vfio-bind" "$overlay/usr/sbin/"
cp -a "$b/etc/vfio-bind.toml" "$overlay/etc/"
for mode in claim off; do
    extra=()
    [ $mode = off ] && extra=(--append vfio-bind=off)
    if "$repo/tests/vm/run-guest.sh" --overlay "$overlay" --preinit "$here/early-init.sh" \
        ${extra[@]+"${extra[@]}"} "$binary" "$here/guest-check.sh" "$logdir/$mode.log" >/dev/null 2>&1; then
        :
    else
        fail=1
    fi
    tr -d '\r' <"$logdir/$mode.log" | grep -a '^ok - \|^not ok - ' | sed "s/^/[$mode] /" || true
done
exit $fail
