# Smoke scenario: show the guest's PCI devices, check the topology's IOMMU-group
# shapes, and bind the lone e1000e to vfio-pci by hand through sysfs.
. /lib/vm-lib.sh

echo "# bdf vendor:device driver group boot_vga"
for d in /sys/bus/pci/devices/*; do
    b="$(basename "$d")"
    v="$(cat "$d/vendor")"
    i="$(cat "$d/device")"
    echo "pci $b ${v#0x}:${i#0x} $(drv "$b") $(group_of "$b") $(cat "$d/boot_vga" 2>/dev/null || echo -)"
done
echo "# kernel $(uname -r), modules: $(cut -d' ' -f1 /proc/modules | tr '\n' ' ')"

vfio-bind --help || true

check "IOMMU groups present" [ -d /sys/kernel/iommu_groups/0 ]

vga="$(bdf_of 1234:1111)"
expect_eq "std VGA is boot_vga" "$(cat /sys/bus/pci/devices/$vga/boot_vga)" 1

xhci="$(bdf_of 1b36:000d)"
expect_eq "xhci on xhci_hcd" "$(drv "$xhci")" xhci_hcd
# The e1000e sharing the xhci's slot, and the lone one.
e1="$(bdf_of 8086:10d3 1)"
e2="$(bdf_of 8086:10d3 2)"
if [ "$(group_of "$e1")" = "$(group_of "$xhci")" ]; then
    shared="$e1" lone="$e2"
else
    shared="$e2" lone="$e1"
fi
expect_eq "xhci and e1000e share a group" "$(group_of "$shared")" "$(group_of "$xhci")"
check "lone e1000e has its own group" \
    [ "$(ls /sys/kernel/iommu_groups/$(group_of "$lone")/devices)" = "$lone" ]

bridge="$(bdf_of 1b36:000e)"
expect_eq "bridge and e1000 #1 share a group" "$(group_of "$(bdf_of 8086:100e 1)")" "$(group_of "$bridge")"
expect_eq "bridge and e1000 #2 share a group" "$(group_of "$(bdf_of 8086:100e 2)")" "$(group_of "$bridge")"
echo "# bridge $bridge driver: $(drv "$bridge")"

blk="$(bdf_of 1af4:1042)"
expect_eq "virtio-blk on virtio-pci" "$(drv "$blk")" virtio-pci
check "virtio disk present" [ -b /dev/vda ]

# Bind the lone e1000e to vfio-pci with raw sysfs writes (busybox modprobe, dashed name).
modprobe vfio-pci
check "modprobe vfio-pci made the driver" [ -d /sys/bus/pci/drivers/vfio-pci ]
echo "# after modprobe vfio-pci: $(cut -d' ' -f1 /proc/modules | grep vfio | tr '\n' ' ')"
echo vfio-pci >/sys/bus/pci/devices/$lone/driver_override
echo "$lone" >/sys/bus/pci/devices/$lone/driver/unbind
echo "$lone" >/sys/bus/pci/drivers_probe
expect_eq "lone e1000e on vfio-pci" "$(drv "$lone")" vfio-pci
expect_eq "driver_override set" "$(ovr "$lone")" vfio-pci
check "/dev/vfio/<group> exists" [ -c "/dev/vfio/$(group_of "$lone")" ]
ls -l /dev/vfio

snapshot_drivers /tmp/snap
cat /tmp/snap
finish
