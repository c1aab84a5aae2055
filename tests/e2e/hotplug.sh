#!/bin/bash
# Hotplug under systemd and udev (tests/e2e/run-systemd.sh --hotplug, config
# tests/e2e/hotplug.toml naming 0000:06:00.0, which is absent at boot). An e1000e is
# hot-added there (QEMU device_add through the relay); e1000e, loaded for the other
# e1000e, probes it synchronously before udev sees it; the rule vfio-bind's apply wrote
# runs `vfio-bind hotplug`, which must unbind it and bind it to vfio-pci within 5 s, with
# its node owned as configured and the device recorded. Then it is removed (device_del)
# and its record must go.
set -u
# shellcheck source=tests/e2e/lib.sh
. "$E2E_LIB"
cd "$E2E_RESULTS" || exit 1
dev=0000:06:00.0
rules=/run/udev/rules.d/70-vfio-bind.rules

timeout 120 systemctl is-system-running --wait >/dev/null 2>&1 || true
e2e_section "before"
e2e_run rules cat $rules || true
e2e_check "the boot-time apply wrote the hotplug rule for $dev" \
    grep -q "ACTION==\"add|remove\", SUBSYSTEM==\"pci\", ENV{SYNTH_UUID}==\"\", KERNEL==\"$dev\", RUN+=\"/usr/sbin/vfio-bind hotplug --action \$env{ACTION} \$kernel\"" $rules
e2e_check "$dev is absent at boot" test ! -e /sys/bus/pci/devices/$dev
e2e_check "vfio-bind.service is active (an entry matching nothing is a warning)" systemctl is-active -q vfio-bind.service

e2e_section "hot-add"
t0=$(date +%s%N)
echo "E2E-QEMU device_add e1000e,bus=rphp,id=hp1,netdev=nhp"
ms=""
for _ in $(seq 600); do
    if [ "$(e2e_driver $dev)" = vfio-pci ]; then
        ms=$((($(date +%s%N) - t0) / 1000000))
        break
    fi
    sleep 0.1
done
echo "device_add to vfio-pci: ${ms:-never} ms" | tee hotplug-ms.txt
e2e_check "$dev appeared and ended on vfio-pci" test -n "$ms"
e2e_check "within 5 s of the device_add" test "${ms:-999999}" -le 5000
dmesg >dmesg.txt
e2e_check "e1000e had probed it first (the race the helper undoes)" \
    grep -aq "__driver_probe_device: matched device $dev with driver e1000e" dmesg.txt
g="$(e2e_group $dev)"
owned=""
for _ in $(seq 50); do
    [ "$(stat -c %G:%a /dev/vfio/$g 2>/dev/null)" = kvm:660 ] && { owned=1; break; }
    sleep 0.1
done
e2e_check "/dev/vfio/$g is group kvm, mode 0660" test -n "$owned"
e2e_check "recorded in /run/vfio-bind/groups/$g.toml" grep -q "\"$dev\"" "/run/vfio-bind/groups/$g.toml"
journalctl -b -o cat --no-pager >journal-all.txt 2>&1
e2e_check "the helper logged to the journal" grep -q "$dev: added; claiming IOMMU group $g" journal-all.txt
e2e_run status vfio-bind status || true
e2e_check "status: bound" grep -q "IOMMU group $g: bound" status.txt

e2e_section "hot-remove"
echo "E2E-QEMU device_del hp1"
gone=""
for _ in $(seq 300); do
    if [ ! -e /sys/bus/pci/devices/$dev ] && ! grep -qs "\"$dev\"" "/run/vfio-bind/groups/$g.toml"; then
        gone=1
        break
    fi
    sleep 0.1
done
e2e_check "$dev removed and its record forgotten" test -n "$gone"
journalctl -b -o cat --no-pager >journal-all.txt 2>&1
e2e_check "the helper logged the removal" grep -q "$dev: removed; forgot its record" journal-all.txt
e2e_finish
