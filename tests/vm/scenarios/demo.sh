# The demo: what a user sees on a machine with passthrough hardware. Run it with
# tests/vm/demo.sh to watch; tests/vm.rs runs it too (with the host's pci.ids in the
# guest, run-guest.sh --pci-ids) and reads the checks at the end.
. /lib/vm-lib.sh
show() {
    echo
    echo "# $*"
    "$@" >/tmp/show.out 2>&1
    code=$?
    cat /tmp/show.out
    echo "# (exit $code)"
}
cat >/etc/vfio-bind.toml <<TOML
user = "alice"
group = "kvm"
mode = "0660"

[[device]]
id = "1b36:000d"          # the USB controller; its e1000e sibling comes along

[[device]]
address = "0000:04:01.0"  # an e1000 behind a PCIe-to-PCI bridge
TOML
echo "# cat /etc/vfio-bind.toml"
cat /etc/vfio-bind.toml
show vfio-bind list
cp /tmp/show.out /tmp/list.out
show vfio-bind check
show vfio-bind apply
show vfio-bind status
show ls -l /dev/vfio
show vfio-bind apply

# What the demo is for (tests/vm/demo.sh hides the passing lines): `list` names the
# devices from pci.ids, vendor and device, under each address.
check "list names the xhci (Red Hat, Inc. QEMU XHCI Host Controller)" \
    grep -qx '      Red Hat, Inc\. QEMU XHCI Host Controller' /tmp/list.out
check "list names the e1000e (Intel Corporation 82574L Gigabit Network Connection)" \
    grep -qx '      Intel Corporation 82574L Gigabit Network Connection' /tmp/list.out
check "list names the host bridge (Intel Corporation 82G33/G31/P35/P31 Express DRAM Controller)" \
    grep -qx '      Intel Corporation 82G33/G31/P35/P31 Express DRAM Controller' /tmp/list.out
check "the devices end on vfio-pci" \
    [ "$(drv $XHCI) $(drv $E_SIB) $(drv $E1)" = "vfio-pci vfio-pci vfio-pci" ]
finish
