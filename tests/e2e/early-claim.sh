#!/bin/bash
# Inside the guests of tests/e2e/initramfs-tools.sh and tests/e2e/dracut.sh (systemd as
# PID 1, booted from a real initramfs image that loads e1000e there). Without vfio-bind=off on the command
# line: the initramfs claimed 0000:02:00.0 before e1000e could probe it, and the real
# root's unit owned its node. With it (the control): e1000e has it and nothing ran.
set -u
# shellcheck source=tests/e2e/lib.sh
. "$E2E_LIB"
cd "$E2E_RESULTS" || exit 1
dev=0000:02:00.0
group="$(e2e_group $dev)"

timeout 120 systemctl is-system-running --wait >/dev/null 2>&1 || true
e2e_run dmesg dmesg
e2e_run status vfio-bind status || true
e2e_run unit systemctl status vfio-bind.service --no-pager || true
e2e_run state sh -c 'cat /run/vfio-bind/groups/*.toml' || true
journalctl -b -o cat --no-pager >journal-all.txt 2>&1 || true
matched() { grep -a "__driver_probe_device: matched device $1 with driver $2" dmesg.txt; }
# A line vfio-bind logged in the initramfs: to the kernel log (initramfs-tools, dracut's
# shell hook) or, from the initrd unit, to the journal.
logged() { grep -aq "$1" dmesg.txt || grep -aq "$1" journal-all.txt; }

e2e_section "the host driver was in the initramfs"
e2e_check "e1000e took 0000:01:00.1 (the same driver, another device)" matched 0000:01:00.1 e1000e

if grep -qw 'vfio-bind=off' /proc/cmdline; then
    e2e_section "control: vfio-bind=off"
    e2e_check "e1000e matched $dev" matched $dev e1000e
    e2e_check "$dev is on e1000e" test "$(e2e_driver $dev)" = e1000e
    e2e_check "the initramfs claim skipped" sh -c "grep -aq 'vfio-bind=off on the kernel command line: not claiming' dmesg.txt || grep -aq 'vfio-bind-initrd.service.*ConditionKernelCommandLine=!vfio-bind=off' journal-all.txt"
    e2e_check "the unit's condition failed" test "$(systemctl show -P ConditionResult vfio-bind.service)" = no
    e2e_check "nothing recorded" sh -c '! ls /run/vfio-bind/groups/*.toml 2>/dev/null'
    e2e_finish
fi

e2e_section "claimed in the initramfs"
e2e_check "vfio-pci matched $dev" matched $dev vfio-pci
e2e_check "e1000e never matched $dev" sh -c "! grep -a '__driver_probe_device: matched device $dev with driver e1000e' dmesg.txt"
e2e_check "$dev is on vfio-pci" test "$(e2e_driver $dev)" = vfio-pci
e2e_check "the claim logged" logged 'claimed early: 1 device in 1 IOMMU group on vfio-pci'
e2e_check "the state marks it early" grep -q 'early = true' "/run/vfio-bind/groups/$group.toml"

e2e_section "the real root reconciled"
e2e_check "vfio-bind.service is active" systemctl is-active -q vfio-bind.service
e2e_check "/dev/vfio/$group is group kvm, mode 0660" test "$(stat -c %G:%a /dev/vfio/$group)" = kvm:660
e2e_check "status says claimed early" grep -q 'claimed early (in the initramfs)' status.txt
e2e_check "status exits 0 (all as configured)" vfio-bind status
e2e_finish
