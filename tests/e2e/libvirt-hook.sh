#!/bin/bash
# In the guest of tests/e2e/libvirt.sh: a real libvirtd (Debian's 9.0, socket-activated)
# with vfio-bind `make install`ed, so its hook is /etc/libvirt/hooks/qemu.d/vfio-bind
# from before libvirtd started; config tests/e2e/libvirt.toml ([[vm]] e2e and
# e2e-managed, no [[device]]). A trace hook that runs after it (zz-e2e-trace) logs every
# call with the drivers of the devices below at that moment.
#
#   plain        control: no [[vm]] profile, <hostdev managed='no'> on 0000:01:00.1 (an
#                e1000e sharing IOMMU group 7 with the xhci at 01:00.0). libvirt must
#                refuse the start (nobody put the device on a stub driver) and nothing
#                may change.
#   e2e          the same domain XML under the profiled name: `virsh start` succeeds
#                only if the hook bound the whole group (libvirt touches no managed='no'
#                device and QEMU refuses a group that is not viable); QEMU holds
#                /dev/vfio/7 and a vfio-device fd; a `systemctl reload vfio-bind` (apply)
#                and a libvirtd restart (`reconnect begin`, where a failing hook kills
#                QEMU) leave the VM and its group alone; `virsh destroy` gives both
#                functions back.
#   e2e-managed  managed='yes' on 0000:02:00.0 (group 8, alone), `virsh start --paused`:
#                the hook binds in prepare, libvirt leaves a device already on vfio-pci
#                alone, the hook's release gives it back to e1000e. handover = true: the
#                display-manager.service stand-in (active) is stopped while the VM runs
#                and started after it; e2e-idle.service (inactive) is left alone; the
#                framebuffer console (on the boot VGA, not the VM's) stays bound.
#   e2e-refused  a profile whose hostdev (the SMBus at 00:1f.3) shares group 6 with the
#                AHCI controller holding the mounted root: the hook must refuse (exit
#                non-zero), libvirt abort the start, and nothing in the group move.
set -u
# shellcheck source=tests/e2e/lib.sh
. "$E2E_LIB"
cd "$E2E_RESULTS" || exit 1
xhci=0000:01:00.0 nic=0000:01:00.1 lone=0000:02:00.0 smbus=0000:00:1f.3 ahci=0000:00:1f.2
trace=/run/vfio-bind-e2e/hooks.log

now() { date +%s.%N; }
# elapsed NAME T0: seconds since T0, printed and appended to times.txt
elapsed() { awk -v a="$2" -v b="$(now)" -v n="$1" 'BEGIN { printf "%s %.1f s\n", n, b - a }' | tee -a times.txt; }

# domain NAME BDF MANAGED: the smallest domain QEMU starts: no disk, no NIC, no balloon,
# one PCI hostdev.
domain() {
    local bus slot fn
    IFS=':.' read -r _ bus slot fn <<<"$2"
    cat <<EOF
<domain type='qemu'>
  <name>$1</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <on_poweroff>destroy</on_poweroff>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
    <hostdev mode='subsystem' type='pci' managed='$3'>
      <source><address domain='0x0000' bus='0x$bus' slot='0x$slot' function='0x$fn'/></source>
    </hostdev>
  </devices>
</domain>
EOF
}

# within SECONDS CMD...: CMD succeeds within SECONDS (polled every 0.2 s)
within() {
    local n=$(($1 * 5))
    shift
    while ! "$@" >/dev/null 2>&1; do
        n=$((n - 1))
        [ $n -gt 0 ] || return 1
        sleep 0.2
    done
}

# qemu_holds NAME NODE: the QEMU of domain NAME has NODE open.
qemu_holds() {
    local pid
    pid="$(cat "/run/libvirt/qemu/$1.pid" 2>/dev/null)" || return 1
    ls -l "/proc/$pid/fd" | tee "fds-$1.txt" | grep -q " -> $2\$"
}

timeout 120 systemctl is-system-running --wait >/dev/null 2>&1 || true
e2e_section "before"
t=$(now)
e2e_run virsh-version virsh version || true
elapsed "first virsh call (libvirtd socket-activated, probes QEMU)" "$t"
e2e_check "libvirtd is running" systemctl is-active -q libvirtd.service
e2e_check "vfio-bind's hook is installed (make install), executable" \
    test -x /etc/libvirt/hooks/qemu.d/vfio-bind
e2e_run hook-file cat /etc/libvirt/hooks/qemu.d/vfio-bind || true
e2e_check "vfio-bind.service is active (a config with only [[vm]] binds nothing at boot)" \
    systemctl is-active -q vfio-bind.service
e2e_check "$xhci on xhci_hcd" test "$(e2e_driver $xhci)" = xhci_hcd
e2e_check "$nic on e1000e" test "$(e2e_driver $nic)" = e1000e
e2e_check "$lone on e1000e" test "$(e2e_driver $lone)" = e1000e
g="$(e2e_group $nic)"
gl="$(e2e_group $lone)"
e2e_check "$xhci and $nic share IOMMU group $g" test "$(e2e_group $xhci)" = "$g"
e2e_check "vfio-bind check accepts the config" vfio-bind check
e2e_run doctor vfio-bind doctor || true
e2e_check "vfio-bind doctor sees the hook and the profiles" \
    grep -q "libvirt hook: /etc/libvirt/hooks/qemu.d/vfio-bind installed for 3" doctor.txt

for d in plain e2e; do domain $d $nic no >"$d.xml"; done
domain e2e-managed $lone yes >e2e-managed.xml
domain e2e-refused $smbus no >e2e-refused.xml
for d in plain e2e e2e-managed e2e-refused; do virsh define "$d.xml" >/dev/null || echo "cannot define $d"; done

e2e_section "control: plain (no [[vm]] profile, managed='no')"
t=$(now)
rc=0
virsh start --paused plain >start-plain.txt 2>&1 || rc=$?
elapsed "virsh start --paused plain (refused)" "$t"
cat start-plain.txt
e2e_check "virsh start plain fails" test $rc != 0
e2e_check "libvirt refused the unmanaged device" \
    grep -q "Unmanaged PCI device $nic must be manually detached from the host" start-plain.txt
e2e_check "the hooks ran for plain (prepare begin)" grep -q '^plain prepare begin ' $trace
e2e_check "not because of a hook: vfio-bind's hook exits 0 for a VM it has no profile for" \
    sh -c "! grep -q 'Hook script execution failed' start-plain.txt"
e2e_check "$nic still on e1000e" test "$(e2e_driver $nic)" = e1000e
e2e_check "$xhci still on xhci_hcd" test "$(e2e_driver $xhci)" = xhci_hcd
e2e_check "no record for group $g" test ! -e "/run/vfio-bind/groups/$g.toml"
e2e_check "plain is shut off" sh -c "virsh domstate plain | grep -qx 'shut off'"

e2e_section "e2e: the same domain under a profiled name"
t=$(now)
rc=0
virsh start e2e >start-e2e.txt 2>&1 || rc=$?
elapsed "virsh start e2e" "$t"
cat start-e2e.txt
e2e_check "virsh start e2e succeeds" test $rc = 0
e2e_check "e2e is running" sh -c "virsh domstate e2e | grep -qx running"
e2e_check "after vfio-bind's hook at prepare begin, $nic was on vfio-pci" \
    grep -q "^e2e prepare begin - .*$nic=vfio-pci" $trace
e2e_check "$nic on vfio-pci" test "$(e2e_driver $nic)" = vfio-pci
e2e_check "$xhci on vfio-pci too (the whole group; libvirt binds only listed functions)" \
    test "$(e2e_driver $xhci)" = vfio-pci
e2e_check "$lone untouched (e1000e)" test "$(e2e_driver $lone)" = e1000e
e2e_run record-e2e cat "/run/vfio-bind/groups/$g.toml" || true
e2e_check "group $g recorded for vm e2e" grep -q '^vm = "e2e"' "/run/vfio-bind/groups/$g.toml"
e2e_check "QEMU holds /dev/vfio/$g" qemu_holds e2e "/dev/vfio/$g"
e2e_check "QEMU holds /dev/vfio/vfio" qemu_holds e2e /dev/vfio/vfio
e2e_check "QEMU holds a vfio-device fd (it opened the device in the group)" \
    qemu_holds e2e 'anon_inode:\[vfio-device\]'
e2e_run status-running vfio-bind status || true
e2e_check "vfio-bind status: e2e attached, group $g" grep -q "^VM e2e: attached, IOMMU group $g\$" status-running.txt
e2e_run reload systemctl reload vfio-bind.service || true
e2e_check "after systemctl reload vfio-bind: $nic still on vfio-pci" test "$(e2e_driver $nic)" = vfio-pci
e2e_check "after the reload: $xhci still on vfio-pci" test "$(e2e_driver $xhci)" = vfio-pci
e2e_check "after the reload: group $g still recorded for e2e" grep -q '^vm = "e2e"' "/run/vfio-bind/groups/$g.toml"
e2e_check "after the reload: e2e still running" sh -c "virsh domstate e2e | grep -qx running"
t=$(now)
e2e_run restart-libvirtd systemctl restart libvirtd.service || true
# The daemon reconnects to its QEMUs in a thread of its own, after it answers.
e2e_check "the hooks ran at reconnect begin" within 30 grep -q '^e2e reconnect begin ' $trace
elapsed "libvirtd restart and its reconnect hook" "$t"
e2e_check "after a libvirtd restart: e2e still running" sh -c "virsh domstate e2e | grep -qx running"
e2e_check "and QEMU still holds /dev/vfio/$g" qemu_holds e2e "/dev/vfio/$g"
e2e_check "after the restart: $nic still on vfio-pci" test "$(e2e_driver $nic)" = vfio-pci
t=$(now)
e2e_check "virsh destroy e2e" virsh destroy e2e
elapsed "virsh destroy e2e" "$t"
e2e_check "the hook ran at release end and gave $nic back" \
    grep -q "^e2e release end .*$nic=e1000e" $trace
e2e_check "$nic back on e1000e" test "$(e2e_driver $nic)" = e1000e
e2e_check "$xhci back on xhci_hcd" test "$(e2e_driver $xhci)" = xhci_hcd
e2e_check "$nic driver_override cleared" grep -qx '(null)' /sys/bus/pci/devices/$nic/driver_override
e2e_check "no record for group $g" test ! -e "/run/vfio-bind/groups/$g.toml"
e2e_check "/dev/vfio/$g is gone" test ! -e "/dev/vfio/$g"

e2e_section "e2e-managed: managed='yes', the hook first"
systemctl start display-manager.service
e2e_check "the display manager stand-in is active" systemctl is-active --quiet display-manager.service
e2e_check "e2e-idle.service is not" test "$(systemctl is-active e2e-idle.service)" != active
vtcons_before="$(cat /sys/class/vtconsole/vtcon*/bind | tr '\n' ' ')"
t=$(now)
rc=0
virsh start --paused e2e-managed >start-e2e-managed.txt 2>&1 || rc=$?
elapsed "virsh start --paused e2e-managed" "$t"
cat start-e2e-managed.txt
e2e_check "virsh start --paused e2e-managed succeeds" test $rc = 0
e2e_check "the hook had bound $lone at prepare begin (before libvirt's own detach)" \
    grep -q "^e2e-managed prepare begin - .*$lone=vfio-pci" $trace
e2e_check "group $gl recorded for vm e2e-managed" grep -q '^vm = "e2e-managed"' "/run/vfio-bind/groups/$gl.toml"
e2e_check "QEMU holds /dev/vfio/$gl" qemu_holds e2e-managed "/dev/vfio/$gl"
e2e_check "handover: display-manager.service stopped while the VM runs" \
    test "$(systemctl is-active display-manager.service)" = inactive
e2e_check "handover: the stop is recorded" grep -q 'name = "display-manager.service"' /run/vfio-bind/vms/e2e-managed.toml
e2e_check "handover: e2e-idle.service (inactive) not recorded" \
    sh -c '! grep -q e2e-idle /run/vfio-bind/vms/e2e-managed.toml'
e2e_check "handover: the vtconsoles (not on this VM's device) untouched" \
    test "$(cat /sys/class/vtconsole/vtcon*/bind | tr '\n' ' ')" = "$vtcons_before"
t=$(now)
e2e_check "virsh destroy e2e-managed" virsh destroy e2e-managed
elapsed "virsh destroy e2e-managed" "$t"
e2e_check "$lone back on e1000e" test "$(e2e_driver $lone)" = e1000e
e2e_check "no record for group $gl" test ! -e "/run/vfio-bind/groups/$gl.toml"
e2e_check "handover undone: display-manager.service active again" systemctl is-active --quiet display-manager.service
e2e_check "handover undone: e2e-idle.service still not started" test "$(systemctl is-active e2e-idle.service)" != active
e2e_check "handover undone: no VM record left" test ! -e /run/vfio-bind/vms/e2e-managed.toml

e2e_section "e2e-refused: the group holds the mounted root"
g6="$(e2e_group $smbus)"
before="$(e2e_driver $ahci) $(e2e_driver $smbus)"
t=$(now)
rc=0
virsh start --paused e2e-refused >start-e2e-refused.txt 2>&1 || rc=$?
elapsed "virsh start --paused e2e-refused (refused)" "$t"
cat start-e2e-refused.txt
e2e_check "virsh start e2e-refused fails" test $rc != 0
e2e_check "because vfio-bind's hook failed at prepare" \
    grep -q "Hook script execution failed.*qemu.d/vfio-bind e2e-refused prepare begin" start-e2e-refused.txt
e2e_check "virsh shows vfio-bind's reason (the mounted root)" \
    grep -q "vfio-bind: VM e2e-refused: .*$ahci has /dev/[a-z]* mounted on /" start-e2e-refused.txt
e2e_check "$ahci and $smbus kept their drivers ($before)" \
    test "$(e2e_driver $ahci) $(e2e_driver $smbus)" = "$before"
e2e_check "no record for group $g6" test ! -e "/run/vfio-bind/groups/$g6.toml"
e2e_check "the root file system is still writable" touch /root/still-writable

e2e_section "afterwards"
cp $trace hooks.log
cat hooks.log
e2e_run status-after vfio-bind status || true
e2e_check "vfio-bind status: e2e not attached" grep -qx "VM e2e: not attached" status-after.txt
journalctl -b -o cat --no-pager >journal-all.txt 2>&1
cp /var/log/libvirt/qemu/*.log . 2>/dev/null || true
e2e_check "the hook logged the attach to the journal" grep -q "^VM e2e: attached: 2 device(s) in IOMMU group(s) $g" journal-all.txt
e2e_check "and the detach" grep -q "^VM e2e: detached: IOMMU group(s) $g given back" journal-all.txt
# libvirt reattaches a managed='yes' device only when it detached it itself: it found
# $lone on vfio-pci already, so vfio-bind's release end is what gave it back.
e2e_check "e2e-managed: the hook, not libvirt, gave $lone back" \
    grep -q "^$lone: released to e1000e" journal-all.txt
e2e_check "no hook failure in libvirtd's journal but e2e-refused's" \
    sh -c "! grep 'Hook script execution failed' journal-all.txt | grep -v ' e2e-refused '"
e2e_finish
