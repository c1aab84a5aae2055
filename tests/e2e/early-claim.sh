#!/bin/bash
# Inside the guests of tests/e2e/initramfs-tools.sh and tests/e2e/dracut.sh: systemd as
# PID 1, booted (run-systemd.sh --gpu --initrd) from a real initramfs image that loads
# e1000e and bochs-drm (early KMS) itself. Configured: the lone e1000e 0000:02:00.0 and the
# second std VGA 0000:06:00.0. The mode comes from the kernel command line:
#   (none)          claim: vfio-pci, never a host driver, matched both in the initramfs;
#                   the real root owned the nodes; status says "claimed early"; a reload
#                   keeps it all;
#   vfio-bind=off   control: the host drivers took them; nothing ran, nothing recorded;
#   e2e.mode=plain  control: an image built without vfio-bind: the host drivers matched
#                   them first, and the real root's unit bound them later;
#   e2e.mode=edited the real root's config was edited after the image was built
#                   (early-claim-edited.toml): the unit releases 02:00.0, binds the
#                   xhci's group, and doctor says to rebuild the initramfs.
set -u
# shellcheck source=tests/e2e/lib.sh
. "$E2E_LIB"
cd "$E2E_RESULTS" || exit 1
nic=0000:02:00.0 gpu=0000:06:00.0 xhci=0000:01:00.0 sib=0000:01:00.1

timeout 120 systemctl is-system-running --wait >/dev/null 2>&1 || true
e2e_run dmesg dmesg
e2e_run status vfio-bind status || true
e2e_run unit systemctl status vfio-bind.service --no-pager || true
e2e_run state sh -c 'cat /run/vfio-bind/groups/*.toml' || true
journalctl -b -o cat --no-pager >journal-all.txt 2>&1 || true
matched() { grep -aq "__driver_probe_device: matched device $1 with driver $2" dmesg.txt; }
# A line vfio-bind logged in the initramfs: to the kernel log (initramfs-tools, dracut's
# shell hook) or, from the initrd unit, to the journal.
logged() { grep -aq "$1" dmesg.txt || grep -aq "$1" journal-all.txt; }
early() { grep -A4 "\"$1\"" "/run/vfio-bind/groups/$(e2e_group "$1").toml" 2>/dev/null | grep -q 'early = true'; }
mode=claim
grep -qw 'vfio-bind=off' /proc/cmdline && mode=off
grep -qw 'e2e.mode=plain' /proc/cmdline && mode=plain
grep -qw 'e2e.mode=edited' /proc/cmdline && mode=edited
echo "mode: $mode"

e2e_section "the host drivers were in the initramfs"
e2e_check "e1000e took 0000:01:00.1 (another device)" matched $sib e1000e
e2e_check "bochs-drm took the boot VGA 0000:00:01.0" matched 0000:00:01.0 bochs-drm

case $mode in
off)
    e2e_section "control: vfio-bind=off"
    e2e_check "e1000e matched $nic" matched $nic e1000e
    e2e_check "bochs-drm matched $gpu" matched $gpu bochs-drm
    e2e_check "$nic is on e1000e" test "$(e2e_driver $nic)" = e1000e
    e2e_check "the initramfs claim skipped" sh -c "grep -aq 'vfio-bind=off on the kernel command line: not claiming' dmesg.txt || grep -aq 'vfio-bind-initrd.service.*ConditionKernelCommandLine=!vfio-bind=off' journal-all.txt"
    e2e_check "the unit's condition failed" test "$(systemctl show -P ConditionResult vfio-bind.service)" = no
    e2e_check "nothing recorded" sh -c '! ls /run/vfio-bind/groups/*.toml 2>/dev/null'
    e2e_finish
    ;;
plain)
    e2e_section "control: an initramfs without vfio-bind"
    e2e_check "e1000e matched $nic (in the initramfs)" matched $nic e1000e
    e2e_check "bochs-drm matched $gpu (in the initramfs)" matched $gpu bochs-drm
    e2e_check "the real root's unit bound $nic later" test "$(e2e_driver $nic)" = vfio-pci
    e2e_check "... not early" sh -c "! grep -q 'early = true' /run/vfio-bind/groups/*.toml"
    e2e_finish
    ;;
esac

e2e_section "claimed in the initramfs"
for d in $nic $gpu; do
    e2e_check "vfio-pci matched $d" matched $d vfio-pci
    # Edited: the real root's config no longer names $nic, so the unit gave it to e1000e.
    [ $mode = edited ] && [ $d = $nic ] && continue
    e2e_check "no host driver ever matched $d" sh -c "! grep -a '__driver_probe_device: matched device $d with driver' dmesg.txt | grep -v 'with driver vfio-pci'"
    e2e_check "$d is recorded as claimed early" early $d
done
e2e_check "the claim logged" logged 'claimed early: 2 devices in 2 IOMMU groups on vfio-pci'

if [ $mode = edited ]; then
    e2e_section "the config was edited after the image was built"
    e2e_check "the unit released $nic (no longer named) to e1000e" test "$(e2e_driver $nic)" = e1000e
    e2e_check "... and forgot it" sh -c "! grep -qs '\"$nic\"' /run/vfio-bind/groups/*.toml"
    e2e_check "the unit bound the xhci's group: $xhci" test "$(e2e_driver $xhci)" = vfio-pci
    e2e_check "the unit bound the xhci's group: $sib" test "$(e2e_driver $sib)" = vfio-pci
    e2e_check "$gpu stays, early" early $gpu
    e2e_check "vfio-bind status exits 0 (converged)" vfio-bind status
    # The timeline: hook installed 3 hours ago, image built 2 hours ago, config edited now.
    touch -d '3 hours ago' /usr/share/initramfs-tools/hooks/vfio-bind
    touch -d '2 hours ago' "/boot/initrd.img-$(uname -r)"
    e2e_run doctor vfio-bind doctor || true
    e2e_check "doctor says the initramfs is older than the config" \
        grep -q "early boot: the initramfs /boot/initrd.img-$(uname -r) is older than" doctor.txt
    e2e_check "doctor gives the command" grep -q 'update-initramfs -u' doctor.txt
    e2e_finish
fi

e2e_section "the real root reconciled"
e2e_check "vfio-bind.service is active" systemctl is-active -q vfio-bind.service
for d in $nic $gpu; do
    g="$(e2e_group $d)"
    e2e_check "/dev/vfio/$g is group kvm, mode 0660" test "$(stat -c %G:%a /dev/vfio/$g)" = kvm:660
done
e2e_check "status says claimed early" grep -q 'claimed early (in the initramfs)' status.txt
e2e_check "the coldplug ran no hotplug helper (synthetic events are left out)" \
    sh -c "! grep -aq 'added; claiming IOMMU group\|vfio-bind hotplug' journal-all.txt"
e2e_check "status exits 0 (all as configured)" vfio-bind status
e2e_section "reload"
e2e_check "systemctl reload vfio-bind succeeds" systemctl reload vfio-bind
for d in $nic $gpu; do
    e2e_check "$d still on vfio-pci and early after the reload" sh -c "[ \"\$(basename \"\$(readlink /sys/bus/pci/devices/$d/driver)\")\" = vfio-pci ] && grep -q 'early = true' /run/vfio-bind/groups/$(e2e_group $d).toml"
done
e2e_finish
