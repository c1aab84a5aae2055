# A group behind a PCIe-to-PCI bridge: naming one e1000 binds both, and the bridge
# (header type 1) gets no write at all.
. /lib/vm-lib.sh

snapshot_drivers /tmp/before
bridge_drv="$(drv $BRIDGE)"
cat >/etc/vfio-bind.toml <<TOML
[[device]]
address = "0000:04:01.0"
TOML
vfio-bind apply
expect_eq "apply exits 0" $? 0
expect_eq "e1000 #1 on vfio-pci" "$(drv $E1)" vfio-pci
expect_eq "e1000 #2 on vfio-pci" "$(drv $E2)" vfio-pci
expect_eq "bridge driver_override untouched" "$(ovr $BRIDGE)" "(null)"
expect_eq "bridge driver unchanged" "$(drv $BRIDGE)" "$bridge_drv"
snapshot_drivers /tmp/after
unchanged "only the e1000s changed" /tmp/before /tmp/after $E1 $E2
vfio-bind status
finish
