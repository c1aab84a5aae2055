# A multifunction slot: one `id` (the xhci) expands to its whole IOMMU group, so the
# e1000e function sharing the slot is bound too; the other e1000e is left alone.
. /lib/vm-lib.sh

snapshot_drivers /tmp/before
cat >/etc/vfio-bind.toml <<TOML
[[device]]
id = "1b36:000d"
TOML
vfio-bind check
vfio-bind apply
expect_eq "apply exits 0" $? 0
expect_eq "xhci on vfio-pci" "$(drv $XHCI)" vfio-pci
expect_eq "its sibling e1000e on vfio-pci" "$(drv $E_SIB)" vfio-pci
expect_eq "sibling driver_override" "$(ovr $E_SIB)" vfio-pci
expect_eq "the other e1000e untouched" "$(drv $E_LONE)" e1000e
check "/dev/vfio/<group> exists" [ -c /dev/vfio/$(group_of $XHCI) ]
snapshot_drivers /tmp/after
unchanged "only the group changed" /tmp/before /tmp/after $XHCI $E_SIB
finish
