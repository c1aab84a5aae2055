# Helper library for VM scenario scripts (busybox sh). Installed in the guest as
# /lib/vm-lib.sh; a scenario starts with `. /lib/vm-lib.sh` and ends with `finish`.
#
#   drv BDF                     current driver of the device, or "none"
#   ovr BDF                     content of driver_override ("(null)" when unset)
#   group_of BDF                IOMMU group number, or "none"
#   bdf_of VENDOR:DEVICE [N]    BDF of the Nth (1-based, default 1) device with that id
#   snapshot_drivers FILE       one line "bdf driver override" per PCI device
#   expect_eq NAME ACTUAL WANT  prints "ok - NAME" or "not ok - NAME (got X, want Y)"
#   check NAME CMD...           ok when CMD succeeds
#   unchanged NAME BEFORE AFTER [BDF...]  ok when two snapshots agree on every device
#                               except the BDFs listed
#   finish                      prints "VM-CHECKS passed=P failed=F"; exit 1 if F > 0
#   state_files                 every state file of vfio-bind (one per group), in group order
#   state_addrs                 the PCI addresses recorded there, sorted, on one line
#   apply_signalled SIG BDF     `vfio-bind apply` of three groups (the xhci's by its ID,
#                               the bridge's, the lone e1000e), its stderr in /tmp/log,
#                               sent SIG as soon as BDF is logged bound; returns its exit
#                               status

# The fixed guest topology (see run-guest.sh).
VGA=0000:00:01.0      # std VGA, boot_vga=1
XHCI=0000:01:00.0     # qemu-xhci, shares a group with E_SIB
E_SIB=0000:01:00.1    # e1000e, second function of the xhci's slot
E_LONE=0000:02:00.0   # e1000e alone in its group
BRIDGE=0000:03:00.0   # pcie-pci-bridge, in a group with E1 and E2
E1=0000:04:01.0       # e1000 behind the bridge
E2=0000:04:02.0       # e1000 behind the bridge
BLK=0000:05:00.0      # virtio-blk (/dev/vda), alone

VM_PASSED=0
VM_FAILED=0
PCI=/sys/bus/pci/devices

drv() {
    if [ -e "$PCI/$1/driver" ]; then
        basename "$(readlink "$PCI/$1/driver")"
    else
        echo none
    fi
}

ovr() {
    cat "$PCI/$1/driver_override" 2>/dev/null || echo none
}

group_of() {
    if [ -e "$PCI/$1/iommu_group" ]; then
        basename "$(readlink "$PCI/$1/iommu_group")"
    else
        echo none
    fi
}

bdf_of() {
    _want_v="0x${1%%:*}"
    _want_d="0x${1##*:}"
    _n="${2:-1}"
    for _d in "$PCI"/*; do
        [ "$(cat "$_d/vendor")" = "$_want_v" ] || continue
        [ "$(cat "$_d/device")" = "$_want_d" ] || continue
        _n=$((_n - 1))
        if [ "$_n" -eq 0 ]; then
            basename "$_d"
            return 0
        fi
    done
    echo none
    return 1
}

snapshot_drivers() {
    : >"$1"
    for _d in "$PCI"/*; do
        _b="$(basename "$_d")"
        echo "$_b $(drv "$_b") $(ovr "$_b")" >>"$1"
    done
}

_vm_ok() {
    VM_PASSED=$((VM_PASSED + 1))
    echo "ok - $1"
}

_vm_not_ok() {
    VM_FAILED=$((VM_FAILED + 1))
    echo "not ok - $1${2:+ ($2)}"
}

expect_eq() {
    if [ "$2" = "$3" ]; then
        _vm_ok "$1"
    else
        _vm_not_ok "$1" "got $2, want $3"
    fi
}

check() {
    _name="$1"
    shift
    if "$@"; then
        _vm_ok "$_name"
    else
        _vm_not_ok "$_name" "failed: $*"
    fi
}

finish() {
    echo "VM-CHECKS passed=$VM_PASSED failed=$VM_FAILED"
    [ "$VM_FAILED" -eq 0 ] || exit 1
    exit 0
}

unchanged() {
    _name="$1" _a="$2" _b="$3"
    shift 3
    _pat='^$'
    for _x in "$@"; do _pat="$_pat|^$_x "; done
    if grep -Ev "$_pat" "$_a" >/tmp/.u1 && grep -Ev "$_pat" "$_b" >/tmp/.u2 && cmp -s /tmp/.u1 /tmp/.u2; then
        _vm_ok "$_name"
    else
        _vm_not_ok "$_name" "drivers changed: $(diff /tmp/.u1 /tmp/.u2 | grep '^[-+]0' | tr '\n' ' ')"
    fi
}

# Everything vfio-bind has recorded: its state files, one per IOMMU group, in group order.
state_files() { for f in $(ls /run/vfio-bind/groups/ 2>/dev/null | sort -n); do cat "/run/vfio-bind/groups/$f"; done; }
# The recorded PCI addresses, sorted, on one line.
state_addrs() { state_files | grep -o '"0000:[^"]*"' | sort | tr '\n' ' '; }

apply_signalled() {
    cat >/etc/vfio-bind.toml <<TOML
[[device]]
id = "1b36:000d"

[[device]]
address = "04:01.0"

[[device]]
address = "02:00.0"
TOML
    vfio-bind apply 2>/tmp/log &
    _pid=$!
    _i=0
    while ! grep -q "$2: bound to vfio-pci" /tmp/log 2>/dev/null; do
        _i=$((_i + 1))
        [ $_i -lt 200000 ] || break
    done
    kill -"$1" $_pid
    wait $_pid
}
