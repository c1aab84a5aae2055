# A broken config exits 2, names file:line:column, and touches nothing: every driver
# and override is as it was, and vfio-pci is not even loaded.
. /lib/vm-lib.sh

snapshot_drivers /tmp/before
cat >/etc/vfio-bind.toml <<TOML
[[device]]
address = "02:00.0"
allow_boot_gva = true
TOML
vfio-bind apply 2>/tmp/err1
expect_eq "typo'd key exits 2" $? 2
cat /tmp/err1
check "error names file:line:column" grep -q "/etc/vfio-bind.toml:3:1: " /tmp/err1

cat >/etc/vfio-bind.toml <<TOML
user = "bob"
[[device]]
id = "8086:10d3"
TOML
vfio-bind apply 2>/tmp/err2
expect_eq "unknown user exits 2" $? 2
cat /tmp/err2
check "unknown user named with its position" grep -q '/etc/vfio-bind.toml:1:8: unknown user "bob"' /tmp/err2

# A valid main file with a broken drop-in is still a config error.
cat >/etc/vfio-bind.toml <<TOML
[[device]]
id = "8086:10d3"
TOML
mkdir -p /etc/vfio-bind.d
printf '[[device]]\nid = "8086:10d3"\nmode = "0999"\n' >/etc/vfio-bind.d/10-bad.toml
vfio-bind apply 2>/tmp/err3
expect_eq "bad mode in a drop-in exits 2" $? 2
cat /tmp/err3
check "drop-in error names its file" grep -q "/etc/vfio-bind.d/10-bad.toml:3:8: " /tmp/err3
vfio-bind check >/dev/null 2>&1
expect_eq "check exits 2 too" $? 2

snapshot_drivers /tmp/after
unchanged "every driver and override as before" /tmp/before /tmp/after
check "vfio-pci was not loaded" [ ! -d /sys/bus/pci/drivers/vfio-pci ]
finish
