#!/bin/bash
# Per-VM passthrough through a real libvirtd: Debian bookworm's libvirt 9.0 and QEMU 7.2
# installed in the guest's root (a cached chroot, tests/e2e/chroot.sh), vfio-bind
# `make install`ed into it (so libvirt finds its hook at /etc/libvirt/hooks/qemu.d/vfio-bind
# when it starts), booted once with systemd as PID 1 (tests/e2e/run-systemd.sh --rootfs
# --tree). In that one boot, tests/e2e/libvirt-hook.sh starts (paused) and destroys three
# domains: a control without a [[vm]] profile that libvirt must refuse, the same domain
# under a profiled name whose whole IOMMU group the hook binds and gives back, and a
# managed='yes' one. The guest kernel gets vfio_iommu_type1.allow_unsafe_interrupts=1:
# the emulated IOMMU has no interrupt remapping (intremap=off), and without it the nested
# QEMU cannot set up the group's container.
#
#   tests/e2e/libvirt.sh BINARY LOGDIR
#
# Prints the guest's check lines ("[libvirt] ok - ...") and exits 0 only when all pass.
# Cache: $VFIO_BIND_VM_CACHE/libvirt-<hash> (the chroot) and image-<hash>.img (its disk
# image); each run writes into a copy of the image.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/initramfs-lib.sh"
ir_init libvirt "$@"
t0=$(date +%s)

# 1. The root filesystem with libvirt (cached; a policy-rc.d keeps the package scripts
# from starting anything while it is built).
chroot_dir="$("$here/chroot.sh" libvirt libvirt-daemon-system libvirt-clients qemu-system-x86)"

# 2. What the guest gets on top: vfio-bind as `make install` lays it out, the config, and a
# trace hook that runs after vfio-bind's (alphabetical order) and logs each call.
work="$(mktemp -d "${TMPDIR:-/tmp}/vfio-bind-libvirt.XXXXXX")"
trap 'rm -rf "$work"' EXIT
w="$work/tree"
mkdir -p "$w"
ir_install "$here/libvirt.toml"
[ -x "$w/etc/libvirt/hooks/qemu.d/vfio-bind" ] ||
    { log "make install put no executable hook at /etc/libvirt/hooks/qemu.d/vfio-bind"; exit 1; }
install -Dm755 "$here/libvirt-trace-hook" "$w/etc/libvirt/hooks/qemu.d/zz-e2e-trace"
# Stand-ins for the handover's units: a display manager the test starts, and a unit it
# leaves inactive.
for u in display-manager e2e-idle; do
    printf '[Unit]\nDescription=e2e stand-in %s\n[Service]\nExecStart=/bin/sleep infinity\n' "$u" \
        >"$work/$u.service"
    install -Dm644 "$work/$u.service" "$w/etc/systemd/system/$u.service"
done
log "setup took $(($(date +%s) - t0)) s"

# 3. One boot. The nested QEMU needs ~110 MB next to libvirtd.
log "boot (about 2 minutes)"
VFIO_BIND_E2E_TIMEOUT="${VFIO_BIND_E2E_TIMEOUT:-600}" \
    "$here/run-systemd.sh" --rootfs "$chroot_dir" --tree "$w" --config "$here/libvirt.toml" \
    --append "vfio_iommu_type1.allow_unsafe_interrupts=1" \
    - "$here/libvirt-hook.sh" "$logdir/guest" || fail=1
grep -a '^ok - \|^FAIL - ' "$logdir/guest/test.log" 2>/dev/null | sed 's/^/[libvirt] /' || true
cat "$logdir/guest/timing.txt" "$logdir/guest/times.txt" >&2 2>/dev/null || true
log "total $(($(date +%s) - t0)) s"
exit $fail
