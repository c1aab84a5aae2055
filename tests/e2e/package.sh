#!/bin/bash
# The way users meet vfio-bind, with systemd as PID 1: the package's files installed and
# its unit enabled as its postinst does (tests/e2e/run-systemd.sh --deb), the config
# tests/e2e/package.toml, then a boot. Checks, in order:
#   - the configured devices are on vfio-pci, `systemctl status` shows the STATUS= line,
#     /dev/vfio/<group> ownership is intact after the boot finished;
#   - the unit ran before udev's coldplug, and the host drivers never touched the devices
#     (no probe messages of theirs in the kernel log);
#   - ownership survives `udevadm trigger --action=change` and a replayed coldplug;
#   - `journalctl -u vfio-bind VFIO_BIND_GROUP=<n>` returns that group's entries;
#   - an edited config + `systemctl reload` binds the added device and releases the
#     removed ones;
#   - a broken config makes the reload fail with file:line:column in the journal, and
#     the bound devices stay as they were;
#   - `systemd-analyze security` of the shipped unit (and of the unhardened first unit).
set -u
# shellcheck source=tests/e2e/lib.sh
. "$E2E_LIB"
cd "$E2E_RESULTS" || exit 1

XHCI=0000:01:00.0 SIB=0000:01:00.1 LONE=0000:02:00.0 E1=0000:04:01.0 E2=0000:04:02.0
drivers() { for b in $XHCI $SIB $LONE $E1 $E2 0000:05:00.0 0000:00:1f.2; do echo "$b $(e2e_driver $b) $(cat /sys/bus/pci/devices/$b/driver_override)"; done; }
node() { stat -c '%u:%g %a' "/dev/vfio/$1"; }
KVM="$(getent group kvm | cut -d: -f3)"

e2e_section "boot"
timeout 120 systemctl is-system-running --wait >/dev/null 2>&1 || true
e2e_run failed-units systemctl list-units --failed --no-legend --plain
e2e_check "unit enabled by its package (sysinit.target.wants)" test -L /etc/systemd/system/sysinit.target.wants/vfio-bind.service
e2e_check "vfio-bind.service active (exited)" test "$(systemctl show -P SubState vfio-bind.service)" = exited
for b in $XHCI $SIB $LONE; do
    e2e_check "$b on vfio-pci" test "$(e2e_driver $b)" = vfio-pci
done
e2e_check "e1000 behind the bridge untouched" test "$(e2e_driver $E1)" = e1000
G7="$(e2e_group $XHCI)" G8="$(e2e_group $LONE)"
status="$(systemctl show -P StatusText vfio-bind.service)"
echo "StatusText: $status"
e2e_check "STATUS= says what was bound" test "$status" = "3 devices in 2 IOMMU groups on vfio-pci"
e2e_run systemctl-status env SYSTEMD_COLORS=0 systemctl status --no-pager -l vfio-bind.service || true
e2e_check "systemctl status shows the STATUS= line" grep -q 'Status: "3 devices in 2 IOMMU groups on vfio-pci"' systemctl-status.txt
e2e_check "/dev/vfio/$G7 alice:kvm 0660 after boot" test "$(node $G7)" = "1000:$KVM 660"
e2e_check "/dev/vfio/$G8 alice:kvm 0660 after boot" test "$(node $G8)" = "1000:$KVM 660"

e2e_section "boot ordering"
mono() { systemctl show -P "$2" "$1"; }
start_us="$(mono vfio-bind.service ExecMainStartTimestampMonotonic)"
done_us="$(mono vfio-bind.service ActiveEnterTimestampMonotonic)"
trig_us="$(mono systemd-udev-trigger.service ExecMainStartTimestampMonotonic)"
echo "vfio-bind start $start_us, active $done_us; udev coldplug start $trig_us (us since boot)"
e2e_check "vfio-bind finished before udev's coldplug started" test "$done_us" -lt "$trig_us"
e2e_check "/var/tmp is mounted from the disk that appears at coldplug" \
    sh -c "findmnt -n -o SOURCE /var/tmp | grep -q '^/dev/vda'"
e2e_check "var-tmp.mount is active, no emergency or rescue mode" \
    sh -c "systemctl -q is-active var-tmp.mount && ! systemctl -q is-active emergency.target && ! systemctl -q is-active rescue.target"
systemctl show -p After -p Wants -p Requires -p RequiresMountsFor vfio-bind.service >unit-deps.txt
cat unit-deps.txt
e2e_check "the unit pulls in no mount and waits for no file system" \
    sh -c "! grep -E 'tmp.mount|var-tmp.mount|local-fs.target|systemd-tmpfiles-setup.service' unit-deps.txt && ! grep -E '^RequiresMountsFor=.*(/tmp|/var)' unit-deps.txt"
e2e_check "the unit ran before systemd-modules-load" \
    test "$done_us" -le "$(mono systemd-modules-load.service ExecMainStartTimestampMonotonic)"
journalctl -k -b --no-pager -o short-monotonic >kernel.txt
for b in $XHCI $SIB $LONE; do
    e2e_check "no host driver message for $b in the kernel log" \
        sh -c "! grep -E '(xhci_hcd|e1000e) $b' kernel.txt"
done
e2e_check "the host drivers did load (coldplug ran, for other devices)" \
    sh -c "grep -q 'e1000 $E1' kernel.txt"

e2e_section "ownership survives udev"
udevadm trigger --action=change --subsystem-match=vfio && udevadm settle
e2e_check "after udevadm trigger --action=change: /dev/vfio/$G7 alice:kvm 0660" test "$(node $G7)" = "1000:$KVM 660"
udevadm trigger --action=add && udevadm settle
e2e_check "after a replayed coldplug: /dev/vfio/$G8 alice:kvm 0660" test "$(node $G8)" = "1000:$KVM 660"
e2e_run udev-rules cat /run/udev/rules.d/70-vfio-bind.rules || true

e2e_section "journal"
e2e_run journal-group journalctl -b -u vfio-bind.service --no-pager -o cat VFIO_BIND_GROUP="$G7"
e2e_check "journalctl VFIO_BIND_GROUP=$G7 returns the group's binds" \
    sh -c "grep -q '$XHCI: bound to vfio-pci' journal-group.txt && grep -q '$SIB: bound to vfio-pci' journal-group.txt"
e2e_check "and nothing of group $G8" sh -c "! grep -q '$LONE' journal-group.txt"
journalctl -b -u vfio-bind.service -o json --no-pager VFIO_BIND_ADDRESS=$LONE >journal-lone.json
e2e_check "structured fields on the bind entry" \
    grep -q '"VFIO_BIND_ACTION":"bind".*\|"VFIO_BIND_DRIVER":"vfio-pci"' journal-lone.json

e2e_section "reload after an edit"
# Something mounts over /tmp and /var/tmp late: a reload must not care.
mount -t tmpfs tmpfs /tmp && mount -t tmpfs tmpfs /var/tmp
cat >/etc/vfio-bind.toml <<TOML
user = "alice"
group = "kvm"
mode = "0660"

[[device]]
address = "0000:02:00.0"

[[device]]
address = "0000:04:01.0"
TOML
e2e_check "systemctl reload vfio-bind succeeds" systemctl reload vfio-bind.service
e2e_check "released: xhci back on xhci_hcd" test "$(e2e_driver $XHCI)" = xhci_hcd
e2e_check "released: its sibling back on e1000e" test "$(e2e_driver $SIB)" = e1000e
e2e_check "override cleared on release" test "$(cat /sys/bus/pci/devices/$XHCI/driver_override)" = "(null)"
e2e_check "kept: $LONE on vfio-pci" test "$(e2e_driver $LONE)" = vfio-pci
e2e_check "added: $E1 on vfio-pci" test "$(e2e_driver $E1)" = vfio-pci
e2e_check "added: its group peer $E2 on vfio-pci" test "$(e2e_driver $E2)" = vfio-pci
status="$(systemctl show -P StatusText vfio-bind.service)"
echo "StatusText: $status"
e2e_check "STATUS= follows the reload" test "$status" = "3 devices in 2 IOMMU groups on vfio-pci; 2 devices released"
e2e_check "the released group's udev rule is gone, the new one is there" \
    sh -c "! grep -q 'KERNEL==\"$G7\"' /run/udev/rules.d/70-vfio-bind.rules && grep -q 'KERNEL==\"$(e2e_group $E1)\"' /run/udev/rules.d/70-vfio-bind.rules"

e2e_section "broken config"
drivers >drivers-before.txt
cp /etc/vfio-bind.toml /root/good.toml
printf '\n[[device]]\naddress = "0000:04:02.0"\nallow_boot_gva = true\n' >>/etc/vfio-bind.toml
e2e_check "systemctl reload fails" sh -c '! systemctl reload vfio-bind.service'
journalctl -b -u vfio-bind.service --no-pager -o cat >journal-after-broken.txt
e2e_check "journal names file:line:column" grep -q '/etc/vfio-bind.toml:13:1: unknown field `allow_boot_gva`' journal-after-broken.txt
e2e_check "STATUS= says the reload failed" sh -c 'systemctl show -P StatusText vfio-bind.service | grep -q "^failed: invalid configuration: /etc/vfio-bind.toml:13:1"'
drivers >drivers-after.txt
e2e_check "bound devices stay as they were" cmp drivers-before.txt drivers-after.txt
e2e_check "unit still active" test "$(systemctl is-active vfio-bind.service)" = active
cp /root/good.toml /etc/vfio-bind.toml

e2e_section "sandbox"
e2e_run security-shipped systemd-analyze security --no-pager vfio-bind.service || true
e2e_run security-unhardened systemd-analyze security --no-pager --offline=yes /root/vfio-bind-unhardened.service || true
e2e_check "shipped unit scores better than the unhardened one" sh -c '
    a=$(sed -n "s/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p" security-shipped.txt)
    b=$(sed -n "s/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p" security-unhardened.txt)
    echo "shipped $a, unhardened $b"; [ -n "$a" ] && [ -n "$b" ] && awk "BEGIN{exit !($a < $b)}"'

e2e_finish
