# With allow_boot_vga = true on its entry, the boot VGA device is bound.
. /lib/vm-lib.sh

cat >/etc/vfio-bind.toml <<TOML
[[device]]
address = "00:01.0"
allow_boot_vga = true
TOML
vfio-bind apply
expect_eq "apply exits 0" $? 0
expect_eq "boot VGA on vfio-pci" "$(drv $VGA)" vfio-pci
expect_eq "its override" "$(ovr $VGA)" vfio-pci
finish
