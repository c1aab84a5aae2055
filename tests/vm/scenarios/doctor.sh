# doctor in a guest with the emulated Intel IOMMU: every blocking check passes.
. /lib/vm-lib.sh

cat >/etc/vfio-bind.toml <<TOML
[[device]]
id = "1b36:000d"
TOML
vfio-bind doctor >/tmp/doctor.out 2>&1
expect_eq "doctor exits 0" $? 0
cat /tmp/doctor.out
check "IOMMU ok" grep -q '^\[ ok \] IOMMU: ' /tmp/doctor.out
check "module available" grep -q '^\[ ok \] vfio modules: vfio-pci available' /tmp/doctor.out
tr -s ' \n' ' ' </tmp/doctor.out >/tmp/doctor.flat
# The xhci's sibling is another function of its own slot: no stranger.
check "own slot's functions are no strangers" grep -q "\[ ok \] device group: group [0-9]* of $XHCI: with its own functions only ($E_SIB" /tmp/doctor.flat
check "no FAIL line" sh -c '! grep -q "^\[FAIL\]" /tmp/doctor.out'

# A device of another slot in the group (behind the PCIe-to-PCI bridge) is explained.
cat >/etc/vfio-bind.toml <<TOML
[[device]]
address = "$E1"
TOML
vfio-bind doctor >/tmp/doctor2.out 2>&1
expect_eq "doctor exits 0 with a shared group" $? 0
tr -s ' \n' ' ' </tmp/doctor2.out >/tmp/doctor2.flat
check "shared group explained" grep -q "\[warn\] device group: group [0-9]* of $E1 also holds: $E2" /tmp/doctor2.flat
finish
