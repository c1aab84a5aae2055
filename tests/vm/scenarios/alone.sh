# A device alone in its IOMMU group, by PCI address: apply binds it, loading vfio-pci;
# a second apply changes nothing; status reports it bound.
. /lib/vm-lib.sh

snapshot_drivers /tmp/before
check "vfio-pci not loaded yet" [ ! -d /sys/bus/pci/drivers/vfio-pci ]
cat >/etc/vfio-bind.toml <<TOML
[[device]]
address = "02:00.0"
TOML
vfio-bind apply 2>/tmp/apply1.err
expect_eq "apply exits 0" $? 0
cat /tmp/apply1.err
expect_eq "lone e1000e on vfio-pci" "$(drv $E_LONE)" vfio-pci
expect_eq "driver_override stays vfio-pci" "$(ovr $E_LONE)" vfio-pci
g="$(group_of $E_LONE)"
check "/dev/vfio/$g exists" [ -c /dev/vfio/$g ]
check "apply logged the bind" grep -q "$E_LONE: bound to vfio-pci (was e1000e)" /tmp/apply1.err
snapshot_drivers /tmp/after1
unchanged "no other device touched" /tmp/before /tmp/after1 $E_LONE

vfio-bind apply 2>/tmp/apply2.err
expect_eq "second apply exits 0" $? 0
cat /tmp/apply2.err
check "second apply says nothing changed" grep -q "nothing changed" /tmp/apply2.err
check "second apply binds nothing" sh -c '! grep -q "bound to" /tmp/apply2.err'
snapshot_drivers /tmp/after2
unchanged "second apply is a no-op" /tmp/after1 /tmp/after2

vfio-bind status >/tmp/status.out
expect_eq "status exits 0" $? 0
cat /tmp/status.out
check "status shows the group bound" grep -q "IOMMU group $g: bound" /tmp/status.out
finish
