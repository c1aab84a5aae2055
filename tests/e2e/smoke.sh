#!/bin/bash
# Smoke test for tests/e2e/run-systemd.sh (runs inside the guest, as root, after boot):
# a fair systemd boot in a VM, the PCI topology and IOMMU groups, udev coldplug, and
# vfio-bind.service having bound 0000:02:00.0 (the default tests/e2e/vfio-bind.toml) at
# boot, with its status line and structured journal fields.
#
#   tests/e2e/run-systemd.sh target/release/vfio-bind tests/e2e/smoke.sh /tmp/e2e-smoke
set -u
# shellcheck source=tests/e2e/lib.sh
. "$E2E_LIB"
cd "$E2E_RESULTS" || exit 1

e2e_section "virtualization and PID 1"
e2e_run detect-virt systemd-detect-virt
e2e_check "systemd-detect-virt is qemu" test "$(systemd-detect-virt)" = qemu
e2e_check "not a container" test "$(systemd-detect-virt --container)" = none
e2e_check "PID 1 is systemd" test "$(cat /proc/1/comm)" = systemd
e2e_run uname uname -a

e2e_section "boot result"
state="$(timeout 120 systemctl is-system-running --wait 2>&1)"
echo "is-system-running: $state"
echo "$state" >is-system-running.txt
e2e_run failed-units systemctl list-units --failed --no-legend --plain
e2e_check "boot finished (running, or degraded with the failed units listed above)" \
    test "$state" = running -o "$state" = degraded
e2e_run startup systemd-analyze time

e2e_section "root disk"
e2e_run findmnt-root findmnt -n -o SOURCE,FSTYPE,OPTIONS /
e2e_check "root is /dev/sda" test "$(findmnt -n -o SOURCE /)" = /dev/sda
e2e_check "sda sits behind AHCI 0000:00:1f.2" sh -c 'readlink -f /sys/block/sda/device | grep -q /0000:00:1f.2/'
e2e_check "ahci bound to 0000:00:1f.2" test "$(e2e_driver 0000:00:1f.2)" = ahci

e2e_section "IOMMU groups"
same_group() { # BDF...: all in one IOMMU group
    local g
    g="$(e2e_group "$1")" || return 1
    for b in "$@"; do [ "$(e2e_group "$b")" = "$g" ] || return 1; done
}
{
    for g in $(ls /sys/kernel/iommu_groups | sort -n); do
        printf 'group %s:' "$g"
        for d in /sys/kernel/iommu_groups/"$g"/devices/*; do printf ' %s' "${d##*/}"; done
        echo
    done
} >iommu-groups.txt
cat iommu-groups.txt
e2e_check "11 IOMMU groups (0-10)" test "$(ls /sys/kernel/iommu_groups | wc -l)" = 11
e2e_check "01:00.0 and 01:00.1 share a group" same_group 0000:01:00.0 0000:01:00.1
e2e_check "bridge 03:00.0 and both e1000 share a group" \
    same_group 0000:03:00.0 0000:04:01.0 0000:04:02.0
e2e_check "02:00.0 is alone in its group" \
    test "$(ls /sys/bus/pci/devices/0000:02:00.0/iommu_group/devices | wc -l)" = 1

e2e_section "PCI devices (sysfs)"
{
    printf '%-13s %-9s %-8s %-6s %s\n' BDF ID CLASS GROUP DRIVER
    for d in /sys/bus/pci/devices/*; do
        b="${d##*/}"
        printf '%-13s %-9s %-8s %-6s %s\n' "$b" \
            "$(sed 's/^0x//' "$d/vendor"):$(sed 's/^0x//' "$d/device")" \
            "$(sed 's/^0x//' "$d/class")" "$(e2e_group "$b" || echo -)" "$(e2e_driver "$b")"
    done
} >bdf-list.txt
cat bdf-list.txt
e2e_run lspci lspci -nnk
expected="0000:00:00.0 0000:00:01.0 0000:00:02.0 0000:00:03.0 0000:00:04.0 0000:00:05.0
0000:00:1f.0 0000:00:1f.2 0000:00:1f.3 0000:01:00.0 0000:01:00.1 0000:02:00.0 0000:03:00.0
0000:04:01.0 0000:04:02.0 0000:05:00.0"
e2e_check "BDFs are exactly tests/vm/run-guest.sh's" \
    test "$(cd /sys/bus/pci/devices && echo *)" = "$(echo "$expected" | tr '\n' ' ' | sed 's/ $//')"

e2e_section "udev coldplug"
e2e_run lsmod lsmod
for m in xhci_pci xhci_hcd e1000e e1000 virtio_blk vfio_pci; do
    e2e_check "module $m loaded" grep -q "^$m " /proc/modules
done
e2e_check "01:00.0 on xhci_hcd" test "$(e2e_driver 0000:01:00.0)" = xhci_hcd
e2e_check "01:00.1 on e1000e" test "$(e2e_driver 0000:01:00.1)" = e1000e
e2e_check "04:01.0 on e1000" test "$(e2e_driver 0000:04:01.0)" = e1000
e2e_check "04:02.0 on e1000" test "$(e2e_driver 0000:04:02.0)" = e1000
e2e_check "05:00.0 on virtio-pci" test "$(e2e_driver 0000:05:00.0)" = virtio-pci
e2e_run udev-trigger systemctl status --no-pager systemd-udev-trigger.service || true

e2e_section "vfio-bind.service"
e2e_check "vfio-bind is enabled" test "$(systemctl is-enabled vfio-bind.service)" = enabled
e2e_check "vfio-bind is active" test "$(systemctl is-active vfio-bind.service)" = active
e2e_run vfio-bind-status env SYSTEMD_COLORS=0 systemctl status --no-pager -l vfio-bind.service || true
e2e_run vfio-bind-show systemctl show vfio-bind.service -p ActiveState -p SubState -p Result \
    -p ExecMainStatus -p StatusText -p ExecMainStartTimestampMonotonic \
    -p ExecMainExitTimestampMonotonic
status_text="$(systemctl show -P StatusText vfio-bind.service)"
echo "StatusText: $status_text"
e2e_check "vfio-bind sent STATUS= (systemctl status shows a Status: line)" test -n "$status_text"
e2e_run vfio-bind-journal journalctl -b -u vfio-bind.service --no-pager -o short-monotonic || true
e2e_run vfio-bind-journal-verbose journalctl -b -u vfio-bind.service --no-pager -o verbose || true
e2e_run vfio-bind-journal-0000-02-00.0 journalctl -b -u vfio-bind.service --no-pager \
    VFIO_BIND_ADDRESS=0000:02:00.0 || true
e2e_check "journal has entries with VFIO_BIND_ADDRESS=0000:02:00.0" \
    test -n "$(journalctl -b -u vfio-bind.service -q -o cat VFIO_BIND_ADDRESS=0000:02:00.0)"
e2e_run vfio-bind-journal-fields sh -c \
    'journalctl -b -u vfio-bind.service -o export | grep -ao "^VFIO_BIND_[A-Z_]*=.*" | sort | uniq -c' || true
e2e_check "02:00.0 is on vfio-pci" test "$(e2e_driver 0000:02:00.0)" = vfio-pci
g="$(e2e_group 0000:02:00.0)"
e2e_check "/dev/vfio/$g exists" test -c "/dev/vfio/$g"
e2e_run dev-vfio ls -l /dev/vfio || true
e2e_run vfio-bind-status-cli vfio-bind status || true
e2e_run vfio-bind-list-cli vfio-bind list || true

e2e_section "ordering: coldplug vs vfio-bind"
# Did e1000e claim 02:00.0 before vfio-bind.service took it (unbind), or did vfio-bind
# get there first (driverless)? Both end on vfio-pci; this records which happened.
e2e_run ordering sh -c 'journalctl -b --no-pager -o short-monotonic _TRANSPORT=kernel + \
    _SYSTEMD_UNIT=vfio-bind.service + _PID=1 |
    grep -aE "0000:02:00\.0|vfio-bind|udev-trigger|systemd-udevd.service|e1000e: Intel" | head -n 40' || true

e2e_finish
