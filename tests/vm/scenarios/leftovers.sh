# The guides' leftovers on a real kernel (run with run-guest.sh --kernel 6.12: Debian's
# bookworm-backports kernel, where vfio_virqfd no longer exists: it was merged into vfio
# in Linux 6.2, so a modules-load.d list naming it fails there). No device is configured;
# the host carries what a guide left:
#   /etc/modprobe.d/vfio.conf       options vfio-pci ids=1b36:000d   (the qemu-xhci)
#   /etc/modules-load.d/vfio.conf   vfio, vfio_iommu_type1, vfio_pci, vfio_virqfd
# doctor names both with file:line (and not the three modules the kernel has), apply with
# the empty config binds nothing, import turns the ids= line into a [[device]] entry
# (printed, then written as the drop-in /etc/vfio-bind.d/50-imported.toml) without
# editing what it read, check shows the group, and apply binds the whole group (the xhci
# and its e1000e sibling 01:00.1) to vfio-pci through driver_override.
#
# Does the ids= option bind anything by itself here? The guest's busybox modprobe is the
# full one: it reads /etc/modprobe.d, and when vfio-bind apply runs `modprobe vfio-pci` it
# passes ids=1b36:000d, which vfio-pci turns into a dynamic ID ("vfio_pci: add
# [1b36:000d…]" in the kernel log; checked below). That claims no device: a driver that
# registers probes only devices without a driver, and the xhci is on xhci_hcd from /init
# (and vfio-pci is loaded only by the second apply). What moves both functions is
# vfio-bind: driver_override = vfio-pci on each, and the e1000e 8086:10d3 is in no ids=.
. /lib/vm-lib.sh

echo "# kernel $(uname -r)"
kv="$(uname -r | cut -d. -f1,2)"
check "kernel $kv is 6.2 or later (no vfio_virqfd)" [ $((${kv%.*} * 1000 + ${kv#*.})) -ge 6002 ]
G="$(group_of "$XHCI")"
expect_eq "xhci and its e1000e sibling share a group" "$(group_of "$E_SIB")" "$G"
expect_eq "xhci starts on xhci_hcd" "$(drv "$XHCI")" xhci_hcd
expect_eq "sibling starts on e1000e" "$(drv "$E_SIB")" e1000e
check "vfio-pci not loaded at start" sh -c '! grep -q "^vfio_pci " /proc/modules'

# No bindings: an empty config. The guide's leftovers.
: >/etc/vfio-bind.toml
mkdir -p /etc/modprobe.d /etc/modules-load.d
printf 'options vfio-pci ids=1b36:000d\n' >/etc/modprobe.d/vfio.conf
printf 'vfio\nvfio_iommu_type1\nvfio_pci\nvfio_virqfd\n' >/etc/modules-load.d/vfio.conf
cp /etc/modprobe.d/vfio.conf /tmp/orig-modprobe
cp /etc/modules-load.d/vfio.conf /tmp/orig-modules

# 1. doctor names both leftovers, with file:line.
vfio-bind doctor >/tmp/doctor.out 2>&1
echo "# doctor exit $?"
cat /tmp/doctor.out
tr -s ' \n' ' ' </tmp/doctor.out >/tmp/doctor.flat
check "doctor: the ids= line" grep -qF \
    '[warn] leftover: /etc/modprobe.d/vfio.conf:1: `options vfio-pci ids=` binds every 1b36:000d device, which the config does not name fix: `vfio-bind import` turns it into a [[device]] entry' \
    /tmp/doctor.flat
check "doctor: vfio_virqfd" grep -qF \
    "[warn] leftover: /etc/modules-load.d/vfio.conf:4: module vfio_virqfd does not exist on kernel $(uname -r) (merged into vfio in Linux 6.2): systemd-modules-load fails on it" \
    /tmp/doctor.flat
for m in vfio vfio_iommu_type1 vfio_pci; do
    check "doctor: $m exists on $(uname -r), not flagged" sh -c "! grep -q 'module $m does not' /tmp/doctor.flat"
done
check "doctor: vfio_virqfd flagged once" [ "$(grep -o 'module [a-z_0-9]* does not exist' /tmp/doctor.flat | tr '\n' ' ')" = "module vfio_virqfd does not exist " ]

# 4 (control). apply with the empty config binds nothing, ids= or not.
snapshot_drivers /tmp/snap0
vfio-bind apply >/tmp/apply0.out 2>&1
expect_eq "apply with the empty config exits 0" $? 0
cat /tmp/apply0.out
snapshot_drivers /tmp/snap1
unchanged "empty config: no device changed" /tmp/snap0 /tmp/snap1
expect_eq "empty config: xhci still on xhci_hcd" "$(drv "$XHCI")" xhci_hcd
expect_eq "empty config: sibling still on e1000e" "$(drv "$E_SIB")" e1000e
check "empty config: vfio-pci not loaded" sh -c '! grep -q "^vfio_pci " /proc/modules'

# 2. import prints the entry, --write makes the drop-in, nothing read is edited.
vfio-bind import >/tmp/import.out 2>/tmp/import.err
expect_eq "import exits 0" $? 0
cat /tmp/import.out /tmp/import.err
check "import: a [[device]] with the xhci's ID" sh -c \
    'grep -A2 "^# from /etc/modprobe.d/vfio.conf:1\$" /tmp/import.out | tr "\n" " " | grep -qF "[[device]] id = \"1b36:000d\""'
expect_eq "import: one entry" "$(grep -c '^\[\[' /tmp/import.out)" 1
check "import: removable ids= line listed" grep -qF '/etc/modprobe.d/vfio.conf:1  (options vfio-pci ids=)' /tmp/import.err
check "import: removable vfio_virqfd line listed" grep -qF '/etc/modules-load.d/vfio.conf:4  (a vfio module to load' /tmp/import.err
check "import wrote nothing" [ ! -e /etc/vfio-bind.d/50-imported.toml ]
vfio-bind import --write >/tmp/importw.out 2>&1
expect_eq "import --write exits 0" $? 0
cat /tmp/importw.out
check "import --write made the drop-in" [ -f /etc/vfio-bind.d/50-imported.toml ]
check "the drop-in is what import printed" cmp /etc/vfio-bind.d/50-imported.toml /tmp/import.out
check "modprobe.d file unchanged" cmp /etc/modprobe.d/vfio.conf /tmp/orig-modprobe
check "modules-load.d file unchanged" cmp /etc/modules-load.d/vfio.conf /tmp/orig-modules
check "main config unchanged (empty)" [ ! -s /etc/vfio-bind.toml ]
vfio-bind check >/tmp/check.out 2>&1
expect_eq "check exits 0" $? 0
cat /tmp/check.out
check "check reads the drop-in" grep -qx 'config: /etc/vfio-bind.d/50-imported.toml' /tmp/check.out
check "check shows the group" grep -q "^IOMMU group $G: " /tmp/check.out
check "check: xhci to vfio-pci by the entry" grep -q "$XHCI \[1b36:000d\].*xhci_hcd -> vfio-pci *(device\[1\])" /tmp/check.out
check "check: sibling to vfio-pci with the group" grep -q "$E_SIB \[8086:10d3\].*e1000e -> vfio-pci" /tmp/check.out
check "still nothing bound after check" [ "$(drv "$XHCI") $(drv "$E_SIB")" = "xhci_hcd e1000e" ]

# 3. apply binds the whole group, through driver_override.
dmesg -c >/dev/null
vfio-bind apply >/tmp/apply.out 2>&1
expect_eq "apply exits 0" $? 0
cat /tmp/apply.out
snapshot_drivers /tmp/snap2
expect_eq "xhci on vfio-pci" "$(drv "$XHCI")" vfio-pci
expect_eq "sibling on vfio-pci" "$(drv "$E_SIB")" vfio-pci
expect_eq "xhci driver_override" "$(ovr "$XHCI")" vfio-pci
expect_eq "sibling driver_override" "$(ovr "$E_SIB")" vfio-pci
check "/dev/vfio/$G exists" [ -c "/dev/vfio/$G" ]
unchanged "no other device changed" /tmp/snap0 /tmp/snap2 "$XHCI" "$E_SIB"
check "apply loaded vfio-pci" grep -q '^vfio_pci ' /proc/modules
dmesg | grep -i 'vfio' || true
# busybox modprobe passed the modprobe.d option to vfio-pci (see the header).
check "modprobe applied ids= (vfio_pci: add [1b36:000d...)" sh -c 'dmesg | grep -qF "vfio_pci: add [1b36:000d["'

# Afterwards: doctor calls the ids= line a second owner; a second import finds nothing.
vfio-bind doctor >/tmp/doctor2.out 2>&1
tr -s ' \n' ' ' </tmp/doctor2.out >/tmp/doctor2.flat
check "doctor after import: ids= is a second owner" grep -qF \
    '/etc/modprobe.d/vfio.conf:1: `options vfio-pci ids=` binds every 1b36:000d device, which the config binds too (device[1]): two owners' \
    /tmp/doctor2.flat
vfio-bind import >/tmp/import2.out 2>/dev/null
expect_eq "second import: no entry" "$(grep -c '^\[\[' /tmp/import2.out)" 0
finish
