# The boot VGA device is refused (exit 1, group untouched), while the other groups of
# the same config are still bound.
. /lib/vm-lib.sh

snapshot_drivers /tmp/before
cat >/etc/vfio-bind.toml <<TOML
[[device]]
address = "00:01.0"

[[device]]
address = "02:00.0"
TOML
vfio-bind apply 2>/tmp/err
expect_eq "apply exits 1" $? 1
cat /tmp/err
check "refusal names the device and the reason" grep -q "refused: $VGA is the boot VGA device" /tmp/err
check "refusal says how to allow it" grep -q "allow_boot_vga = true" /tmp/err
expect_eq "boot VGA driver_override untouched" "$(ovr $VGA)" "(null)"
expect_eq "the other group is still bound" "$(drv $E_LONE)" vfio-pci
snapshot_drivers /tmp/after
unchanged "nothing else changed" /tmp/before /tmp/after $E_LONE
vfio-bind check >/tmp/check.out
expect_eq "check exits 1 on a refusal" $? 1
cat /tmp/check.out
finish
