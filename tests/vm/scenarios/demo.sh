# The demo: what a user sees on a machine with passthrough hardware. Not a test; run it
# with tests/vm/demo.sh.
show() {
    echo
    echo "# $*"
    "$@" 2>&1
    echo "# (exit $?)"
}
cat >/etc/vfio-bind.toml <<TOML
user = "alice"
group = "kvm"
mode = "0660"

[[device]]
id = "1b36:000d"          # the USB controller; its e1000e sibling comes along

[[device]]
address = "0000:04:01.0"  # an e1000 behind a PCIe-to-PCI bridge
TOML
echo "# cat /etc/vfio-bind.toml"
cat /etc/vfio-bind.toml
show vfio-bind list
show vfio-bind check
show vfio-bind apply
show vfio-bind status
show ls -l /dev/vfio
show vfio-bind apply
