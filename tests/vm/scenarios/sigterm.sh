# apply stopped with SIGTERM (systemctl stop, shutdown, the unit's start timeout) as soon
# as the first device is bound: the group in progress is finished or rolled back, never
# left half-bound; no later group is started; the run says so and exits 1. Control: the
# same config applied without a signal binds every group.
. /lib/vm-lib.sh

snapshot_drivers /tmp/before
apply_signalled TERM $XHCI
rc=$?
cat /tmp/log
expect_eq "apply stopped by SIGTERM exits 1" $rc 1
check "it says it was stopped and what was not applied" grep -q "stopped by SIGTERM" /tmp/log
same() { [ "$(drv $1)" = "$(drv $2)" ]; }
check "group of $XHCI not half-bound" same $XHCI $E_SIB
check "group of $E1 not half-bound" same $E1 $E2
expect_eq "no later group started: $E_LONE still on e1000e" "$(drv $E_LONE)" e1000e
state_files
vfio-bind release --all
expect_eq "release --all exits 0" $? 0
snapshot_drivers /tmp/after
unchanged "everything back as it was" /tmp/before /tmp/after

# Control: without the signal, every group is bound.
vfio-bind apply 2>/tmp/log2
expect_eq "apply without a signal exits 0" $? 0
for d in $XHCI $E_SIB $E1 $E2 $E_LONE; do
    expect_eq "$d on vfio-pci" "$(drv $d)" vfio-pci
done
finish
