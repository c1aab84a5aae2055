# apply killed with SIGKILL between two groups, then run again: the final state is the
# configured one and /run/vfio-bind/ is consistent (release --all restores everything).
. /lib/vm-lib.sh

snapshot_drivers /tmp/before
# Kill as soon as the first group is done (its last member logged as bound).
apply_signalled 9 $E_SIB
echo "# killed apply (exit $?); its log:"
cat /tmp/log
echo "# drivers at the kill: xhci $(drv $XHCI) e1 $(drv $E1) e2 $(drv $E2) lone $(drv $E_LONE)"
state_files
for f in /run/vfio-bind/groups/*.toml; do
    check "$f is whole as written (no torn file)" grep -q "^# Devices of IOMMU group" "$f"
done

vfio-bind apply 2>/tmp/log2
expect_eq "second apply exits 0" $? 0
cat /tmp/log2
for d in $XHCI $E_SIB $E1 $E2 $E_LONE; do
    expect_eq "$d on vfio-pci" "$(drv $d)" vfio-pci
done
state_files
expect_eq "state lists every bound device" \
    "$(state_addrs)" \
    "\"$XHCI\" \"$E_SIB\" \"$E_LONE\" \"$E1\" \"$E2\" "
vfio-bind release --all
expect_eq "release --all exits 0" $? 0
snapshot_drivers /tmp/after
unchanged "release --all restores every original driver" /tmp/before /tmp/after
finish
