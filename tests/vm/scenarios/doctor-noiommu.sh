# doctor in a guest booted without the IOMMU device: fails, with the reason and the fix.
. /lib/vm-lib.sh

vfio-bind doctor >/tmp/doctor.out 2>&1
expect_eq "doctor exits 1" $? 1
cat /tmp/doctor.out
check "IOMMU FAIL" grep -q '^\[FAIL\] IOMMU: no IOMMU groups' /tmp/doctor.out
tr -s ' \n' ' ' </tmp/doctor.out >/tmp/doctor.flat
check "fix names the firmware setting" grep -q 'fix: enable VT-d (Intel) or AMD-Vi' /tmp/doctor.flat
check "fix names the kernel option" grep -q 'intel_iommu=on' /tmp/doctor.flat
vfio-bind list 2>/tmp/list.err
expect_eq "list exits 1" $? 1
cat /tmp/list.err
finish
