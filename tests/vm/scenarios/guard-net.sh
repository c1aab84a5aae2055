# A NIC whose interface is up with an address is refused; with the link down and no
# address, the same NIC is bound.
. /lib/vm-lib.sh

ifc="$(ls /sys/bus/pci/devices/$E_LONE/net/)"
echo "# interface of $E_LONE: $ifc"
ip link set "$ifc" up
ip addr add 192.0.2.10/24 dev "$ifc"
ip addr show dev "$ifc"
cat >/etc/vfio-bind.toml <<TOML
[[device]]
address = "02:00.0"
TOML
vfio-bind apply 2>/tmp/err
expect_eq "apply exits 1" $? 1
cat /tmp/err
check "refusal names the interface" grep -q "refused: $E_LONE has network interface $ifc up with IPv4 routes" /tmp/err
expect_eq "NIC still on e1000e" "$(drv $E_LONE)" e1000e
check "address still there" sh -c "ip addr show dev $ifc | grep -q 192.0.2.10"

ip addr flush dev "$ifc"
ip link set "$ifc" down
vfio-bind apply 2>/tmp/err2
expect_eq "link down, no address: apply exits 0" $? 0
cat /tmp/err2
expect_eq "NIC bound" "$(drv $E_LONE)" vfio-pci
finish
