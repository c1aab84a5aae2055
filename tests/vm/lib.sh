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
#   finish                      prints "VM-CHECKS passed=P failed=F"; exit 1 if F > 0

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
