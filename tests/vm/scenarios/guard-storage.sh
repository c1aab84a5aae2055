# A disk controller with a mounted filesystem is refused and stays on its driver; the
# config's other groups are still bound. Unmounted, it can be bound.
. /lib/vm-lib.sh

modprobe ext4
mkdir -p /mnt/data
mount -t ext4 /dev/vda /mnt/data
check "disk mounted" grep -q ' /mnt/data ' /proc/mounts
snapshot_drivers /tmp/before
cat >/etc/vfio-bind.toml <<TOML
[[device]]
address = "05:00.0"

[[device]]
address = "02:00.0"
TOML
vfio-bind apply 2>/tmp/err
expect_eq "apply exits 1" $? 1
cat /tmp/err
check "refusal names the member and the mount" grep -q "refused: $BLK has /dev/vda mounted on /mnt/data" /tmp/err
expect_eq "disk controller still on virtio-pci" "$(drv $BLK)" virtio-pci
expect_eq "its driver_override untouched" "$(ovr $BLK)" "(null)"
check "filesystem still mounted" grep -q ' /mnt/data ' /proc/mounts
expect_eq "the other group is bound" "$(drv $E_LONE)" vfio-pci
snapshot_drivers /tmp/after
unchanged "nothing else changed" /tmp/before /tmp/after $E_LONE

umount /mnt/data
vfio-bind apply
expect_eq "unmounted: apply exits 0" $? 0
expect_eq "disk controller bound" "$(drv $BLK)" vfio-pci
finish
