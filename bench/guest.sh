# Real-kernel benchmark, run in the guest by bench/realkernel.sh (which prepends R=, NS=).
# 33 e1000e, all on e1000e at start: one alone in its IOMMU group, four groups of 8 (the
# functions of one slot). N=1 is the lone one, N=8 one group, N=32 the four groups: whole
# groups, so every method binds the same devices. For each N and each of R rounds
# (methods interleaved, order rotating), time:
#   floor     the bare sysfs writes per device: driver_override, unbind, drivers_probe
#   script    what VFIO guides have people paste: per configured device, a header-type
#             check with setpci (skip bridges), then each member of its IOMMU group
#             (header-checked too) gets the same writes
#   driverctl `driverctl set-override <dev> vfio-pci` per device (Debian's driverctl, the
#             tool a user would pick: it knows no IOMMU groups, so it is given every member,
#             as the floor is; it saves each override under /etc/driverctl.d as it does by
#             default)
#   vfio-bind `vfio-bind apply` with a config naming one device per group by address
# and restore the host drivers (untimed) after each. Prints "BENCH method N ms".
set -u
P=/sys/bus/pci/devices
DEVS="$(for d in $P/*; do b=${d##*/}; [ "$(cat $d/device)" = 0x10d3 ] && echo $b; done)"
gsize() { ls $P/$1/iommu_group/devices | wc -l; }
LONE="$(for b in $DEVS; do [ "$(gsize $b)" = 1 ] && echo $b; done | head -n 1)"
# The first function of each 8-function slot, in order.
HEADS="$(for b in $DEVS; do [ "$(gsize $b)" = 8 ] && [ "${b##*.}" = 0 ] && echo $b; done)"
members() { for h in "$@"; do ls $P/$h/iommu_group/devices; done | tr '\n' ' '; }
modprobe vfio-pci
# driverctl is a bash script (#!/bin/bash); bash came in as /usr/bin/bash.
ln -sf /usr/bin/bash /bin/bash
# GNU date by path (busybox sh would run its own applet, which has no %N).
now() { /usr/bin/date +%s%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e6 }'; }

floor() {
    for b in $1; do
        echo vfio-pci >$P/$b/driver_override
        echo $b >$P/$b/driver/unbind
        echo $b >/sys/bus/pci/drivers_probe
    done
}

script() {
    for b in $1; do
        [ -e $P/$b ] || { echo "no device $b"; continue; }
        hdr=$(/usr/bin/setpci -s $b HEADER_TYPE)
        [ $((0x$hdr & 0x7f)) = 0 ] || continue  # bridges are left alone
        for mem in $(ls $P/$b/iommu_group/devices); do
            hdr=$(/usr/bin/setpci -s $mem HEADER_TYPE)
            [ $((0x$hdr & 0x7f)) = 0 ] || continue
            echo vfio-pci >$P/$mem/driver_override
            [ -e $P/$mem/driver ] && echo $mem >$P/$mem/driver/unbind
            echo $mem >/sys/bus/pci/drivers_probe
        done
    done
}

drvctl() {
    for b in $1; do
        driverctl set-override $b vfio-pci || return 1
    done
}

vfiobind() {
    vfio-bind -q apply
}

restore() {
    for b in $DEVS; do
        echo >$P/$b/driver_override
        [ -e $P/$b/driver ] && [ "$(readlink $P/$b/driver | sed 's|.*/||')" != e1000e ] && echo $b >$P/$b/driver/unbind
        [ -e $P/$b/driver ] || echo $b >/sys/bus/pci/drivers_probe
    done
    rm -rf /run/vfio-bind /etc/driverctl.d
}

check_bound() { # N list: all on vfio-pci?
    for b in $1; do
        [ "$(readlink $P/$b/driver | sed 's|.*/||')" = vfio-pci ] || { echo "BENCH-ERROR $b not bound"; return 1; }
    done
}

echo "BENCH-INFO devices $(echo $DEVS | wc -w), clock $(now)"
# Process start-up alone, for the breakdown: the floor runs in the shell and starts no
# process; vfio-bind is one process, and under TCG exec + dynamic linking is expensive.
r=0
while [ $r -lt $R ]; do
    t0=$(now); vfio-bind --version >/dev/null; t1=$(now)
    echo "BENCH startup 0 $(ms $t0 $t1)"
    r=$((r + 1))
done
for n in $NS; do
    case $n in
    1) heads="$LONE" ;;
    8) heads="$(echo $HEADS | cut -d' ' -f1)" ;;
    32) heads="$HEADS" ;;
    esac
    list="$(members $heads)"
    [ "$(echo $list | wc -w)" = $n ] || { echo "BENCH-ERROR N=$n gives $(echo $list | wc -w) devices"; continue; }
    {
        for b in $heads; do printf '[[device]]\naddress = "%s"\n' $b; done
    } >/etc/vfio-bind.toml
    r=0
    while [ $r -lt $R ]; do
        case $((r % 4)) in
        0) order="floor script drvctl vfiobind" ;;
        1) order="script drvctl vfiobind floor" ;;
        2) order="drvctl vfiobind floor script" ;;
        3) order="vfiobind floor script drvctl" ;;
        esac
        for meth in $order; do
            restore
            if [ $meth = script ]; then arg="$heads"; else arg="$list"; fi
            t0=$(now)
            $meth "$arg" >/dev/null 2>&1
            t1=$(now)
            check_bound "$list" && echo "BENCH $meth $n $(ms $t0 $t1)"
            if [ $meth = vfiobind ]; then
                # For the breakdown: the same command once all is bound (no write at all).
                t0=$(now); vfio-bind -q apply; t1=$(now)
                echo "BENCH noop $n $(ms $t0 $t1)"
            fi
        done
        r=$((r + 1))
    done
done
restore
echo "BENCH-DONE"
