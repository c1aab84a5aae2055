# Reload converges: after an edit, one apply binds what was added and releases what
# vfio-bind bound earlier but the config no longer names; re-running is a no-op.
. /lib/vm-lib.sh

cat >/etc/vfio-bind.toml <<TOML
[[device]]
id = "1b36:000d"

[[device]]
address = "02:00.0"
TOML
vfio-bind apply
expect_eq "first apply exits 0" $? 0
expect_eq "xhci bound" "$(drv $XHCI)" vfio-pci

cat >/etc/vfio-bind.toml <<TOML
[[device]]
address = "02:00.0"

[[device]]
address = "04:01.0"
TOML
vfio-bind apply --dry-run
vfio-bind apply 2>/tmp/err
expect_eq "apply after the edit exits 0" $? 0
cat /tmp/err
expect_eq "removed xhci released to xhci_hcd" "$(drv $XHCI)" xhci_hcd
expect_eq "its sibling released to e1000e" "$(drv $E_SIB)" e1000e
expect_eq "kept device still bound" "$(drv $E_LONE)" vfio-pci
expect_eq "added e1000 bound" "$(drv $E1)" vfio-pci
expect_eq "its group peer bound" "$(drv $E2)" vfio-pci
state_files
expect_eq "state lists exactly the configured devices" \
    "$(state_addrs)" \
    "\"$E_LONE\" \"$E1\" \"$E2\" "
snapshot_drivers /tmp/s1
vfio-bind apply 2>/tmp/err2
expect_eq "re-run exits 0" $? 0
check "re-run changes nothing" grep -q "nothing changed" /tmp/err2
snapshot_drivers /tmp/s2
unchanged "re-run is a no-op" /tmp/s1 /tmp/s2
vfio-bind status
expect_eq "status exits 0" $? 0
finish
