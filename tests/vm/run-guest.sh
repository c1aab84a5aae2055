#!/bin/bash
# Boot a throwaway QEMU guest (TCG, Debian's kernel, busybox initramfs) and run one
# scenario script in it as root.
#
#   tests/vm/run-guest.sh [--no-iommu] [--topology T] [--bin PATH]... [--overlay DIR]
#                         [--preinit FILE] [--append ARGS] [--pci-ids]
#                         BINARY SCENARIO_SCRIPT LOGFILE
#
# --overlay DIR copies DIR's tree over the guest's root last (an initramfs image built by
# another tool); --preinit FILE runs (sourced by /init's sh) before /init loads the host
# drivers, as an initramfs's early hooks would; --append adds kernel command-line words;
# --pci-ids copies the host's PCI ID database (pci.ids, from the pci.ids or hwdata
# package) to the guest's /usr/share/misc/pci.ids, so that vfio-bind shows device names
# (without it the guest has none).
#
# BINARY becomes /usr/bin/vfio-bind in the guest (with the shared libraries ldd names),
# SCENARIO_SCRIPT becomes /scenario.sh (run with `sh /scenario.sh`), tests/vm/lib.sh
# becomes /lib/vm-lib.sh. All console output goes to LOGFILE. Exits 0 only when the log
# holds "VM-SCENARIO-EXIT 0".
#
# Guest PCI topology (q35 + intel-iommu; the scenarios depend on it, keep it as is).
# BDFs, IOMMU groups and start drivers as measured with Debian's 6.1 kernel:
#   00:00.0       q35 host bridge 8086:29c0                 group 0   (no driver)
#   00:01.0       std VGA 1234:1111, boot_vga=1             group 1   (no driver)
#   00:02.0 rp1   pcie-root-port 1b36:000c chassis=1        group 2   pcieport
#     01:00.0       qemu-xhci 1b36:000d, multifunction   } group 7: two functions of
#     01:00.1       e1000e 8086:10d3                     } one slot share a group
#   00:03.0 rp2   pcie-root-port chassis=2                  group 3
#     02:00.0       e1000e 8086:10d3, alone                 group 8
#   00:04.0 rp3   pcie-root-port chassis=3                  group 4
#     03:00.0       pcie-pci-bridge br1 1b36:000e        } group 9: the bridge (no
#     04:01.0       e1000 8086:100e                      } driver; shpchp fails at
#     04:02.0       e1000 8086:100e                      } boot) and both e1000
#   00:05.0 rp4   pcie-root-port chassis=4                  group 5
#     05:00.0       virtio-blk-pci 1af4:1042 (16 MiB ext4 = /dev/vda), alone  group 10
#   00:1f.0/2/3   ICH9 LPC, SATA, SMBus                     group 6   (no drivers)
# /init loads xhci_pci, e1000e, e1000, virtio_pci, virtio_blk; vfio modules are in the
# initramfs but NOT loaded (the tool runs `modprobe vfio-pci`; busybox modprobe ignores
# modules.softdep, so vfio_iommu_type1 is not pulled in with it).
# With --no-iommu: no intel-iommu device, no IOMMU groups, and vfio-pci cannot bind
# (the kernel has no CONFIG_VFIO_NOIOMMU).
#
# --topology gpu: a single-GPU host stand-in instead, booted through UEFI (OVMF, fetched
# by setup.sh --ovmf) so the kernel has an EFI framebuffer (efifb) on the VGA's BAR:
#   00:00.0       q35 host bridge                            (no driver)
#   00:02.0       std VGA 1234:1111, boot_vga=1 (the only VGA) } one IOMMU group, like a
#   00:02.1       ich9-intel-hda 8086:293e + hda-duplex codec  } GPU and its HDMI audio
#   00:1f.0/2/3   ICH9 LPC, SATA, SMBus                      (no drivers)
# /init loads snd-hda-intel only (+ snd-hda-codec-generic for the codec, on request) and
# waits for it to bind: the VGA starts with no driver, the firmware's framebuffer
# (efi-framebuffer.0 under /sys/devices/platform, efifb) holds fbcon (vtcon1). bochs
# (bochs-drm) is in the initramfs for the scenario to load: it removes efi-framebuffer.0 for
# good and fbcon moves to its fbdev emulation (fb0 under 00:02.0), as on a host whose DRM
# driver loads after the firmware console.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"

iommu=1
topology=default
bins=()
overlay=""
preinit=""
more_append=""
pci_ids=0
while [ $# -gt 0 ]; do
    case "$1" in
    --no-iommu) iommu=0; shift ;;
    # --kernel 6.12: boot Debian's bookworm-backports kernel (fetched by setup.sh --kernel
    # 6.12) instead of the default 6.1, with the same modules and topology (not with
    # --topology gpu). BDFs and drivers are as above; group numbers may differ.
    --kernel) kernel_series="$2"; shift 2 ;;
    # bench: 33 e1000e for the real-kernel benchmark (bench/realkernel.sh): one alone in
    # its IOMMU group, four 8-function slots (four groups of 8); nothing else.
    # gpu: a VGA and an HDA function in one slot, UEFI boot (see above).
    --topology) topology="$2"; shift 2 ;;
    # Another host binary (with its libraries) for the guest's /usr/bin.
    --bin) bins+=("$2"); shift 2 ;;
    --overlay) overlay="$(realpath "$2")"; shift 2 ;;
    --preinit) preinit="$(realpath "$2")"; shift 2 ;;
    --append) more_append="$more_append $2"; shift 2 ;;
    --pci-ids) pci_ids=1; shift ;;
    *) break ;;
    esac
done
if [ $# -ne 3 ]; then
    echo "usage: $0 [--no-iommu] [--topology default|bench|gpu] [--bin PATH]... [--pci-ids] BINARY SCENARIO_SCRIPT LOGFILE" >&2
    exit 2
fi
binary="$(realpath "$1")"
scenario="$(realpath "$2")"
logfile="$(realpath -m "$3")"
[ -f "$binary" ] || { echo "run-guest: no binary $binary" >&2; exit 2; }
[ -f "$scenario" ] || { echo "run-guest: no scenario $scenario" >&2; exit 2; }

# 1. Packages and the cached kernel.
case "$topology" in default|bench|gpu) ;; *) echo "run-guest: unknown topology $topology" >&2; exit 2 ;; esac
if [ "$topology" = gpu ]; then
    [ -z "${kernel_series:-}" ] || { echo "run-guest: --kernel is not for --topology gpu" >&2; exit 2; }
    setup_out="$("$here/setup.sh" --ovmf)" || { echo "run-guest: setup.sh failed" >&2; exit 1; }
    kdir="$(echo "$setup_out" | sed -n 1p)"
    ovmf="$(echo "$setup_out" | sed -n 2p)"
    [ -f "$ovmf/OVMF_CODE_4M.fd" ] || { echo "run-guest: no OVMF_CODE_4M.fd in $ovmf" >&2; exit 1; }
else
    kdir="$("$here/setup.sh" ${kernel_series:+--kernel "$kernel_series"})" || { echo "run-guest: setup.sh failed" >&2; exit 1; }
fi
kver="$(ls "$kdir/lib/modules")"
vmlinuz="$(echo "$kdir"/boot/vmlinuz-*)"
[ -f "$vmlinuz" ] || { echo "run-guest: no vmlinuz in $kdir/boot" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/vfio-bind-vm.XXXXXX")"
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,run,tmp,root,home/alice,lib}

# 2a. Busybox and its applets (at the paths busybox itself names, e.g. sbin/modprobe).
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list-full); do
    [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done

# 2b. The binary under test and its shared libraries, at the same absolute paths.
cp "$binary" "$root/usr/bin/vfio-bind"
chmod 755 "$root/usr/bin/vfio-bind"
for lib in $(ldd "$binary" 2>/dev/null | grep -o '/[^ ]*' || true); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done

for b in ${bins[@]+"${bins[@]}"}; do
    rm -f "$root/usr/bin/$(basename "$b")"  # never write through a busybox link
    cp "$b" "$root/usr/bin/$(basename "$b")"
    for lib in $(ldd "$b" 2>/dev/null | grep -o '/[^ ]*' || true); do
        mkdir -p "$root$(dirname "$lib")"
        [ -e "$root$lib" ] || cp -L "$lib" "$root$lib"
    done
done

# The host's PCI ID database, where vfio-bind looks for it (src/names.rs), on request.
if [ $pci_ids = 1 ]; then
    ids=""
    for f in /usr/share/hwdata/pci.ids /usr/share/misc/pci.ids; do
        if [ -f "$f" ]; then ids="$f"; break; fi
    done
    [ -n "$ids" ] || { echo "run-guest: --pci-ids: no pci.ids on this host (tests/vm/setup.sh installs it)" >&2; exit 1; }
    mkdir -p "$root/usr/share/misc"
    cp "$ids" "$root/usr/share/misc/pci.ids"
fi

# The dynamic linker's cache, as every real host has (without it, ld.so probes a dozen
# tls/ and hwcap directories per library at every exec, which under TCG costs ~15 ms).
printf '/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n' >"$root/etc/ld.so.conf"
ldconfig -r "$root"

# 2c. Users and groups (glibc >= 2.34 has the files NSS module built in).
cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
alice:x:1000:1000:alice:/home/alice:/bin/sh
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
alice:x:1000:
kvm:x:993:
vfio:x:994:
EOF
printf 'passwd: files\ngroup: files\n' >"$root/etc/nsswitch.conf"
chown 1000:1000 "$root/home/alice"

# 2d. Kernel modules plus dependencies, then a modules.dep for the initramfs tree.
mods="$root/lib/modules/$kver"
mkdir -p "$mods"
modlist="vfio-pci vfio_iommu_type1 xhci_pci e1000e e1000 virtio_pci virtio_blk ext4"
[ "$topology" = gpu ] && modlist="vfio-pci vfio_iommu_type1 bochs snd-hda-intel snd-hda-codec-generic"
for m in $modlist; do
    deps="$(modprobe -d "$kdir" -S "$kver" --show-depends "$m")" ||
        { echo "run-guest: cannot resolve module $m" >&2; exit 1; }
    for ko in $(echo "$deps" | awk '$1 == "insmod" {print $2}'); do
        rel="${ko#"$kdir/lib/modules/$kver/"}"
        mkdir -p "$mods/$(dirname "$rel")"
        cp "$ko" "$mods/$rel"
    done
done
for f in modules.order modules.builtin modules.builtin.modinfo; do
    [ -f "$kdir/lib/modules/$kver/$f" ] && cp "$kdir/lib/modules/$kver/$f" "$mods/"
done
depmod -b "$root" "$kver"

# 2e. /init, the scenario and the helper library.
cp "$scenario" "$root/scenario.sh"
cp "$here/lib.sh" "$root/lib/vm-lib.sh"
cat >"$root/init" <<'EOF'
#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t devtmpfs devtmpfs /dev
exec </dev/null >/dev/console 2>&1
echo VM-GUEST-START
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp

# An initramfs's early hooks (run-guest.sh --preinit), before any host driver loads.
[ -f /preinit.sh ] && . /preinit.sh
# The drivers the devices start on (vm.modules= on the command line overrides them).
modules="xhci_pci e1000e e1000 virtio_pci virtio_blk"
for a in $(cat /proc/cmdline); do
    case "$a" in vm.modules=*) modules="$(echo "${a#vm.modules=}" | tr , ' ')" ;; esac
done
for m in $modules; do
    modprobe "$m" || echo "init: modprobe $m failed"
done
# Wait (at most ~10 s) until each of them has bound at least one device (the drivers
# this topology has devices for: vm.drivers= on the command line).
drivers="xhci_hcd e1000e e1000 virtio-pci"
for a in $(cat /proc/cmdline); do
    case "$a" in vm.drivers=*) drivers="$(echo "${a#vm.drivers=}" | tr , ' ')" ;; esac
done
want=$(echo $drivers | wc -w)
i=0
while [ $i -lt 50 ]; do
    n=0
    for d in $drivers; do
        ls /sys/bus/pci/drivers/$d 2>/dev/null | grep -q '^0000:' && n=$((n + 1))
    done
    [ $n -eq $want ] && break
    sleep 0.2
    i=$((i + 1))
done
[ $n -eq $want ] || echo "init: only $n of $want host drivers bound"

cd /
code=0
sh /scenario.sh || code=$?
echo "VM-SCENARIO-EXIT $code"
sync
poweroff -f
EOF
chmod 755 "$root/init" "$root/scenario.sh"
[ -z "$preinit" ] || cp "$preinit" "$root/preinit.sh"
[ -z "$overlay" ] || cp -a "$overlay/." "$root/"
(cd "$root" && find . | cpio --quiet -o -H newc -R 0:0) >"$work/initramfs.cpio"

# 3. The disk for virtio-blk, and the guest.
truncate -s 16M "$work/disk.img"
mkfs.ext4 -q -F "$work/disk.img"

append="console=ttyS0 panic=-1 quiet"
iommu_dev=()
if [ $iommu = 1 ]; then
    append="console=ttyS0 intel_iommu=on panic=-1 quiet"
    iommu_dev=(-device intel-iommu,intremap=off)
fi
# The gpu topology's start drivers, before --append's words (the last vm.* word wins).
[ "$topology" = gpu ] && append="$append vm.modules=snd-hda-intel vm.drivers=snd_hda_intel"
append="$append$more_append"

devices=()
if [ "$topology" = bench ]; then
    # One e1000e alone behind a root port (a group of 1), and four 8-function e1000e
    # slots, each behind its own root port (four groups of 8): 33 devices. (32 root
    # ports with one device each made SeaBIOS stall for minutes under TCG.)
    devices+=(-device pcie-root-port,id=b0,chassis=10,slot=10 -device e1000e,bus=b0,romfile=)
    for p in 1 2 3 4; do
        devices+=(-device "pcie-root-port,id=b$p,chassis=$((10 + p)),slot=$((10 + p))")
        for f in 0 1 2 3 4 5 6 7; do
            mf=""
            [ $f = 0 ] && mf=",multifunction=on"
            devices+=(-device "e1000e,bus=b$p,addr=0.$f$mf,romfile=")
        done
    done
    append="$append vm.drivers=e1000e"
elif [ "$topology" = gpu ]; then
    cp "$ovmf/OVMF_VARS_4M.fd" "$work/vars.fd"
fi

rc=0
if [ "$topology" = gpu ]; then
    # -vga none: the VGA at 00:02.0 is the only one (the boot VGA, efifb on its BAR 0).
    timeout 300 qemu-system-x86_64 -accel tcg -M q35 -m 768 -smp 1 -nographic -no-reboot \
        -drive if=pflash,format=raw,unit=0,readonly=on,file="$ovmf/OVMF_CODE_4M.fd" \
        -drive if=pflash,format=raw,unit=1,file="$work/vars.fd" \
        -kernel "$vmlinuz" -initrd "$work/initramfs.cpio" -append "$append" \
        "${iommu_dev[@]}" -nic none -vga none \
        -device VGA,bus=pcie.0,addr=0x2,multifunction=on \
        -device ich9-intel-hda,bus=pcie.0,addr=0x2.0x1 \
        -audiodev none,id=a0 -device hda-duplex,audiodev=a0 \
        </dev/null >"$logfile" 2>&1 || rc=$?
elif [ "$topology" = bench ]; then
    timeout 600 qemu-system-x86_64 -accel tcg -M q35 -m 768 -smp 1 -nographic -no-reboot \
        -kernel "$vmlinuz" -initrd "$work/initramfs.cpio" -append "$append" \
        "${iommu_dev[@]}" -nic none "${devices[@]}" </dev/null >"$logfile" 2>&1 || rc=$?
else
timeout 300 qemu-system-x86_64 -accel tcg -M q35 -m 768 -smp 1 -nographic -no-reboot \
    -kernel "$vmlinuz" -initrd "$work/initramfs.cpio" -append "$append" \
    "${iommu_dev[@]}" \
    -device pcie-root-port,id=rp1,chassis=1,slot=1 \
    -device qemu-xhci,bus=rp1,addr=0.0,multifunction=on \
    -netdev user,id=n0,restrict=on -device e1000e,bus=rp1,addr=0.1,netdev=n0 \
    -device pcie-root-port,id=rp2,chassis=2,slot=2 \
    -netdev user,id=n1,restrict=on -device e1000e,bus=rp2,netdev=n1 \
    -device pcie-root-port,id=rp3,chassis=3,slot=3 \
    -device pcie-pci-bridge,id=br1,bus=rp3 \
    -netdev user,id=n2,restrict=on -device e1000,bus=br1,addr=1.0,netdev=n2 \
    -netdev user,id=n3,restrict=on -device e1000,bus=br1,addr=2.0,netdev=n3 \
    -device pcie-root-port,id=rp4,chassis=4,slot=4 \
    -drive file="$work/disk.img",if=none,format=raw,id=d0 \
    -device virtio-blk-pci,bus=rp4,drive=d0,disable-legacy=on \
    </dev/null >"$logfile" 2>&1 || rc=$?
fi

# 4. Verdict.
if [ $rc = 124 ]; then
    echo "run-guest: qemu timed out after 300 s" >&2
elif grep -aqE 'VM-SCENARIO-EXIT 0[[:space:]]*$' "$logfile"; then
    exit 0
fi
grep -aq 'VM-SCENARIO-EXIT' "$logfile" || echo "run-guest: no VM-SCENARIO-EXIT line (qemu rc $rc)" >&2
echo "run-guest: scenario failed; last lines of $logfile:" >&2
tail -n 40 "$logfile" >&2
exit 1
