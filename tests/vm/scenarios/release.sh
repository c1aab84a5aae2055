# release --all gives every device vfio-bind bound back to the driver it had (xhci to
# xhci_hcd, e1000e to e1000e), verified; a device vfio-bind did not bind is left alone
# unless named.
. /lib/vm-lib.sh

snapshot_drivers /tmp/before
cat >/etc/vfio-bind.toml <<TOML
[[device]]
id = "1b36:000d"

[[device]]
address = "02:00.0"
TOML
vfio-bind apply
expect_eq "apply exits 0" $? 0
state_files | tee /tmp/state
check "state records the xhci and its previous driver" grep -A3 "\"$XHCI\"" /tmp/state
check "state has previous_driver xhci_hcd" grep -q 'previous_driver = "xhci_hcd"' /tmp/state

# A device bound by hand, not by vfio-bind.
echo vfio-pci >/sys/bus/pci/devices/$E1/driver_override
echo $E1 >/sys/bus/pci/devices/$E1/driver/unbind
echo $E1 >/sys/bus/pci/drivers_probe
expect_eq "hand-bound e1000 on vfio-pci" "$(drv $E1)" vfio-pci

vfio-bind release --all 2>/tmp/rel
expect_eq "release --all exits 0" $? 0
cat /tmp/rel
expect_eq "xhci back on xhci_hcd" "$(drv $XHCI)" xhci_hcd
expect_eq "sibling back on e1000e" "$(drv $E_SIB)" e1000e
expect_eq "lone e1000e back on e1000e" "$(drv $E_LONE)" e1000e
expect_eq "override cleared" "$(ovr $XHCI)" "(null)"
expect_eq "hand-bound device left alone" "$(drv $E1)" vfio-pci
expect_eq "state is empty" "$(state_addrs)" ""

vfio-bind release $E1 2>/tmp/rel2
expect_eq "release of a named device exits 0" $? 0
cat /tmp/rel2
expect_eq "named device back on e1000" "$(drv $E1)" e1000
snapshot_drivers /tmp/after
unchanged "every driver and override as before" /tmp/before /tmp/after
finish
