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
check "shared group explained" grep -q "\[warn\] device group: group [0-9]* of $XHCI also holds: .*$E_SIB" /tmp/doctor.flat
check "no FAIL line" sh -c '! grep -q "^\[FAIL\]" /tmp/doctor.out'
finish
