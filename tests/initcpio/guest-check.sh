# In the busybox guest of tests/initcpio/test.sh, after mkinitcpio's early hooks
# (tests/initcpio/early-init.sh) and MODULES=(e1000e) ran, then the host drivers loaded:
# the configured lone e1000e 02:00.0 is on vfio-pci, claimed early; with vfio-bind=off
# (the control) e1000e has it.
. /lib/vm-lib.sh
dmesg >/tmp/dmesg.txt
check "e1000e is loaded and took 01:00.1" [ "$(drv $E_SIB)" = e1000e ]
if grep -qw vfio-bind=off /proc/cmdline; then
    expect_eq "control: e1000e took the lone e1000e" "$(drv $E_LONE)" e1000e
    check "control: the early hook said it skipped" grep -q "vfio-bind=off on the kernel command line" /tmp/dmesg.txt
    check "control: nothing recorded" sh -c '! ls /run/vfio-bind/groups/*.toml 2>/dev/null'
    finish
fi
expect_eq "the early hook claimed the lone e1000e" "$(drv $E_LONE)" vfio-pci
check "its state is marked early" grep -q "early = true" "/run/vfio-bind/groups/$(group_of $E_LONE).toml"
check "the claim logged to the kernel log" grep -q "vfio-bind: claimed early: 1 device in 1 IOMMU group on vfio-pci" /tmp/dmesg.txt
vfio-bind status >/tmp/status.out 2>&1
cat /tmp/status.out
check "status says claimed early" grep -q "claimed early (in the initramfs)" /tmp/status.out
finish
